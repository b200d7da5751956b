//! The codec in C: QEMU's two drop-in functions, the size_t API, the kernel and the version.

use std::ffi::{CStr, CString, c_char, c_int};
use std::sync::OnceLock;

use xbzrle::Encoded;

use crate::ffi::{self, Status};
use crate::status::xbzrle_status::{self, *};

/// Drop-in for QEMU's `xbzrle_encode_buffer`: writes the canonical delta from `old_buf` to
/// `new_buf` (both `slen` bytes) into `dst` (capacity `dlen`).
///
/// Returns 0 when the pages are identical, -1 when the delta does not fit in `dlen` bytes
/// (send the page raw) or an argument is NULL or negative, otherwise the delta length.
/// The delta is byte-identical to QEMU's. Differences: any `slen` and any alignment are
/// accepted, and the overflow rule is exact (QEMU also gives -1 when the delta fits with
/// fewer than 2 spare bytes before an unchanged run); identical pages give 0 for any
/// `dlen`. Nothing is written at or past `dst + dlen`; on -1, bytes before it may have been.
///
/// Ownership: borrows all buffers for the duration of the call. Thread-safe; the buffers
/// must not be modified by another thread during the call.
///
/// # Safety
/// `old_buf` and `new_buf` must be valid for reads of `slen` bytes, `dst` valid for writes
/// of `dlen` bytes, and `dst` must not overlap `old_buf` or `new_buf`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_encode_buffer(
    old_buf: *mut u8,
    new_buf: *mut u8,
    slen: c_int,
    dst: *mut u8,
    dlen: c_int,
) -> c_int {
    ffi::call_or(-1, || {
        let (slen, dlen) = (qemu_len(slen)?, qemu_len(dlen)?);
        // SAFETY: the caller guarantees `old_buf` is NULL or readable for `slen` bytes.
        let old = unsafe { ffi::borrow(old_buf.cast_const(), slen) }?;
        // SAFETY: the same for `new_buf`.
        let new = unsafe { ffi::borrow(new_buf.cast_const(), slen) }?;
        // SAFETY: the caller guarantees `dst` is NULL or writable for `dlen` bytes,
        // overlapping neither page.
        let out = unsafe { ffi::borrow_mut(dst, dlen) }?;
        match xbzrle::encode(old, new, out) {
            Encoded::Unchanged => Ok(0),
            Encoded::Delta(len) => c_int::try_from(len).map_err(|_| XBZRLE_ERR_OVERFLOW),
            Encoded::Overflow => Err(XBZRLE_ERR_OVERFLOW),
        }
    })
}

/// Drop-in for QEMU's `xbzrle_decode_buffer`: applies the delta `src` (`slen` bytes) in
/// place to the page `dst` (`dlen` bytes).
///
/// Returns -1 when the delta is invalid for this page (QEMU's verdict on every input) or an
/// argument is NULL or negative, otherwise the offset just past the last changed run (0 for
/// the empty delta). As in QEMU, when -1 is returned for a malformed delta the runs before
/// the fault have already been written; use `xbzrle_decode` to leave the page untouched.
/// Never reads past `src + slen` nor writes past `dst + dlen`.
///
/// Ownership: borrows both buffers for the duration of the call. Thread-safe; the buffers
/// must not be modified by another thread during the call.
///
/// # Safety
/// `src` must be valid for reads of `slen` bytes, `dst` valid for reads and writes of
/// `dlen` bytes, and they must not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_decode_buffer(
    src: *mut u8,
    slen: c_int,
    dst: *mut u8,
    dlen: c_int,
) -> c_int {
    ffi::call_or(-1, || {
        let (slen, dlen) = (qemu_len(slen)?, qemu_len(dlen)?);
        // SAFETY: the caller guarantees `src` is NULL or readable for `slen` bytes.
        let delta = unsafe { ffi::borrow(src.cast_const(), slen) }?;
        // SAFETY: the caller guarantees `dst` is NULL or readable and writable for `dlen`
        // bytes, not overlapping `src`.
        let page = unsafe { ffi::borrow_mut(dst, dlen) }?;
        let end = xbzrle::decode_partial(delta, page).map_err(|_| XBZRLE_ERR_INVALID_DELTA)?;
        c_int::try_from(end).map_err(|_| XBZRLE_ERR_INVALID_DELTA)
    })
}

/// A QEMU drop-in length: -1 for a negative one.
fn qemu_len(len: c_int) -> Status<usize> {
    usize::try_from(len).map_err(|_| XBZRLE_ERR_INVALID_ARGUMENT)
}

/// The frame of the three `size_t` encoders: zeroes `*out_len`, checks the page length
/// (pages are at most `UINT32_MAX` bytes) and the output buffer, runs `encode` on the output
/// and reports its result (`*out_len` = the delta length; `XBZRLE_ERR_OVERFLOW`).
///
/// # Safety
/// `out` must be NULL or valid for writes of `out_cap` bytes, overlapping no page `encode`
/// reads; `out_len` NULL or valid for a write.
unsafe fn encode_into(
    page_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    encode: impl FnOnce(&mut [u8]) -> Status<Encoded>,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `out_len` is NULL or writable.
        unsafe { ffi::write(out_len, 0) }?;
        if u32::try_from(page_len).is_err() {
            return Err(XBZRLE_ERR_INVALID_ARGUMENT);
        }
        // SAFETY: the caller guarantees `out` is NULL or writable for `out_cap` bytes.
        let out = unsafe { ffi::borrow_mut(out, out_cap) }?;
        let written = match encode(out)? {
            Encoded::Unchanged => 0,
            Encoded::Delta(len) => len,
            Encoded::Overflow => return Err(XBZRLE_ERR_OVERFLOW),
        };
        // SAFETY: as above.
        unsafe { ffi::write(out_len, written) }
    })
}

/// Writes the canonical delta (byte-identical to QEMU) from `old_page` to `new_page` (both
/// `page_len` bytes, at most `UINT32_MAX`) into `out` (capacity `out_cap`).
///
/// On `XBZRLE_OK`, `*out_len` is the delta length (0 = identical pages, nothing to send).
/// `XBZRLE_ERR_OVERFLOW` (exact: the delta really needs more than `out_cap` bytes) means
/// send the page raw; `*out_len` is then 0 and `out` may have been partly written, never
/// past `out + out_cap`. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT`.
///
/// Ownership: borrows all buffers for the call. Thread-safe.
///
/// # Safety
/// `old_page` and `new_page` must be valid for reads of `page_len` bytes, `out` valid for
/// writes of `out_cap` bytes without overlapping them, `out_len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_encode(
    old_page: *const u8,
    new_page: *const u8,
    page_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> xbzrle_status {
    let encode = |out: &mut [u8]| {
        // SAFETY: the caller guarantees both pages are NULL or readable for `page_len` bytes,
        // overlapping no output.
        let old = unsafe { ffi::borrow(old_page, page_len) }?;
        // SAFETY: as above.
        let new = unsafe { ffi::borrow(new_page, page_len) }?;
        Ok(xbzrle::encode(old, new, out))
    };
    // SAFETY: the caller upholds `encode_into`'s contract for `out` and `out_len`.
    unsafe { encode_into(page_len, out, out_cap, out_len, encode) }
}

/// Like `xbzrle_encode`, but writes the smallest delta in the same grammar (unchanged gaps
/// are copied inside a changed run when that is cheaper) from `old_page` to `new_page`
/// (both `page_len` bytes, at most `UINT32_MAX`) into `out` (capacity `out_cap`). Never
/// longer than the canonical delta; QEMU's decoder accepts it.
///
/// On `XBZRLE_OK`, `*out_len` is the delta length (0 = identical pages, nothing to send).
/// `XBZRLE_ERR_OVERFLOW` (exact: even the smallest delta needs more than `out_cap` bytes)
/// means send the page raw; `*out_len` is then 0 and `out` may have been partly written,
/// never past `out + out_cap`. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT`.
///
/// Ownership: borrows all buffers for the duration of the call and keeps no pointer to
/// them. Thread-safe; no other thread may write `old_page` or `new_page`, or access `out`,
/// during the call.
///
/// # Safety
/// `old_page` and `new_page` must be valid for reads of `page_len` bytes, `out` valid for
/// writes of `out_cap` bytes without overlapping them, `out_len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_encode_compact(
    old_page: *const u8,
    new_page: *const u8,
    page_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> xbzrle_status {
    let encode = |out: &mut [u8]| {
        // SAFETY: the caller guarantees both pages are NULL or readable for `page_len` bytes,
        // overlapping no output.
        let old = unsafe { ffi::borrow(old_page, page_len) }?;
        // SAFETY: as above.
        let new = unsafe { ffi::borrow(new_page, page_len) }?;
        Ok(xbzrle::encode_compact(old, new, out))
    };
    // SAFETY: the caller upholds `encode_into`'s contract for `out` and `out_len`.
    unsafe { encode_into(page_len, out, out_cap, out_len, encode) }
}

/// Like `xbzrle_encode` (canonical delta from `cached` to `new_page` into `out`), and
/// leaves `cached` equal to `new_page`, in one pass over both pages: the sender's cache
/// refresh without a separate copy. `cached` is refreshed on `XBZRLE_ERR_OVERFLOW` too;
/// on any other error it is untouched.
///
/// `new_page` may be guest memory that vCPUs or other threads write during the call: each
/// of its bytes is read exactly once, and the delta's bytes are taken from the refreshed
/// `cached`, so the delta always turns the old `cached` into the new `cached` (each byte is
/// one value `new_page` held during the call). No private copy of the page is needed.
///
/// Ownership: borrows all buffers for the call. Thread-safe; no other thread may access
/// `cached` or `out` during the call.
///
/// # Safety
/// `cached` must be valid for reads and writes of `page_len` bytes, `new_page` valid for
/// reads of `page_len` bytes (it may be written concurrently), `out` valid for writes of
/// `out_cap` bytes, none of them overlapping; `out_len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_encode_update(
    cached: *mut u8,
    new_page: *const u8,
    page_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> xbzrle_status {
    let encode = |out: &mut [u8]| {
        // SAFETY: the caller guarantees `cached` is NULL or readable and writable for
        // `page_len` bytes and `new_page` NULL or readable for them (other threads may write
        // it), none overlapping.
        let cached = unsafe { ffi::borrow_mut(cached, page_len) }?;
        // SAFETY: as above.
        let new = unsafe { ffi::borrow_live(new_page, page_len) }?;
        Ok(xbzrle::encode_update(cached, &new, out))
    };
    // SAFETY: the caller upholds `encode_into`'s contract for `out` and `out_len`.
    unsafe { encode_into(page_len, out, out_cap, out_len, encode) }
}

/// Checks the delta `delta` (`delta_len` bytes) against a page of `page_len` bytes without
/// touching any page. On `XBZRLE_OK`, `*end` (if `end` is not NULL) is the offset just past
/// the last changed run. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_DELTA`.
///
/// Ownership: borrows `delta` for the call. Thread-safe.
///
/// # Safety
/// `delta` must be valid for reads of `delta_len` bytes; `end` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_validate(
    delta: *const u8,
    delta_len: usize,
    page_len: usize,
    end: *mut usize,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `delta` is NULL or readable for `delta_len` bytes.
        let delta = unsafe { ffi::borrow(delta, delta_len) }?;
        let at = xbzrle::validate(delta, page_len).map_err(|_| XBZRLE_ERR_INVALID_DELTA)?;
        // SAFETY: the caller guarantees `end` is NULL or writable.
        unsafe { ffi::write_optional(end, at) };
        Ok(())
    })
}

/// Applies the delta `delta` (`delta_len` bytes) in place to `page` (`page_len` bytes).
/// The delta is validated first: on any error the page is left untouched. On `XBZRLE_OK`,
/// `*end` (if `end` is not NULL) is the offset just past the last changed run.
/// Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT`, `XBZRLE_ERR_INVALID_DELTA`.
///
/// Ownership: borrows both buffers for the call. Thread-safe.
///
/// # Safety
/// `delta` must be valid for reads of `delta_len` bytes, `page` valid for reads and writes
/// of `page_len` bytes without overlapping `delta`; `end` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_decode(
    delta: *const u8,
    delta_len: usize,
    page: *mut u8,
    page_len: usize,
    end: *mut usize,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `delta` is NULL or readable for `delta_len` bytes
        // and `page` NULL or readable and writable for `page_len` bytes, not overlapping it.
        let delta = unsafe { ffi::borrow(delta, delta_len) }?;
        // SAFETY: as above.
        let page = unsafe { ffi::borrow_mut(page, page_len) }?;
        let at = xbzrle::decode(delta, page).map_err(|_| XBZRLE_ERR_INVALID_DELTA)?;
        // SAFETY: the caller guarantees `end` is NULL or writable.
        unsafe { ffi::write_optional(end, at) };
        Ok(())
    })
}

/// The longest delta (canonical or compact) of a page of `page_len` bytes,
/// `(3 * page_len + 3) / 2` (0 for an empty page; saturates at `SIZE_MAX`): an output
/// buffer of this size never gives `XBZRLE_ERR_OVERFLOW` from `xbzrle_encode`,
/// `xbzrle_encode_compact` or `xbzrle_encode_update`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn xbzrle_max_delta_len(page_len: usize) -> usize {
    xbzrle::max_delta_len(page_len)
}

/// Name of the encoding kernel this CPU runs (`"reference"`, `"avx2"`, …), detected once.
///
/// Returns a static NUL-terminated string (never NULL, never to be freed). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn xbzrle_kernel_name() -> *const c_char {
    static NAME: OnceLock<CString> = OnceLock::new();
    ffi::call_or(c"unknown".as_ptr(), || {
        Ok(NAME
            .get_or_init(|| {
                CString::new(xbzrle::Kernel::best().name()).unwrap_or_else(|_| c"unknown".into())
            })
            .as_ptr())
    })
}

/// The library's version, `"MAJOR.MINOR.PATCH"`, as built (compare with
/// `XBZRLE_VERSION_STRING` from the header you compiled against).
///
/// Returns a static NUL-terminated string (never NULL, never to be freed). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn xbzrle_version_string() -> *const c_char {
    VERSION.as_ptr()
}

/// The library's version as `(MAJOR << 16) | (MINOR << 8) | PATCH`, comparable with
/// `XBZRLE_VERSION_NUMBER` from the header. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn xbzrle_version_number() -> u32 {
    (VERSION_MAJOR << 16) | (VERSION_MINOR << 8) | VERSION_PATCH
}

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the package version contains a NUL byte"),
    };
const VERSION_MAJOR: u32 = parse_decimal(env!("CARGO_PKG_VERSION_MAJOR"));
const VERSION_MINOR: u32 = parse_decimal(env!("CARGO_PKG_VERSION_MINOR"));
const VERSION_PATCH: u32 = parse_decimal(env!("CARGO_PKG_VERSION_PATCH"));

/// Parses a version component at compile time (cargo guarantees decimal digits).
const fn parse_decimal(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i].is_ascii_digit(),
            "version component is not decimal"
        );
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}
