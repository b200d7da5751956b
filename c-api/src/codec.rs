//! The codec in C: QEMU's two drop-in functions, the size_t API, the kernel and the version.

use std::ffi::{CStr, CString, c_char, c_int};
use std::slice;
use std::sync::OnceLock;

use xbzrle::{Encoded, LivePage};

use super::guard::guard;
use super::status::xbzrle_status::{self, *};

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
    guard(-1, || {
        if old_buf.is_null() || new_buf.is_null() || dst.is_null() {
            return -1;
        }
        let (Ok(slen), Ok(dlen)) = (usize::try_from(slen), usize::try_from(dlen)) else {
            return -1;
        };
        // SAFETY: the caller guarantees `old_buf` is readable for `slen` bytes; it is non-null.
        let old = unsafe { slice::from_raw_parts(old_buf.cast_const(), slen) };
        // SAFETY: the caller guarantees `new_buf` is readable for `slen` bytes; it is non-null.
        let new = unsafe { slice::from_raw_parts(new_buf.cast_const(), slen) };
        // SAFETY: the caller guarantees `dst` is writable for `dlen` bytes and overlaps
        // neither input; it is non-null.
        let out = unsafe { slice::from_raw_parts_mut(dst, dlen) };
        match xbzrle::encode(old, new, out) {
            Encoded::Unchanged => 0,
            Encoded::Delta(len) => c_int::try_from(len).unwrap_or(-1),
            Encoded::Overflow => -1,
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
    guard(-1, || {
        if src.is_null() || dst.is_null() {
            return -1;
        }
        let (Ok(slen), Ok(dlen)) = (usize::try_from(slen), usize::try_from(dlen)) else {
            return -1;
        };
        // SAFETY: the caller guarantees `src` is readable for `slen` bytes; it is non-null.
        let delta = unsafe { slice::from_raw_parts(src.cast_const(), slen) };
        // SAFETY: the caller guarantees `dst` is readable and writable for `dlen` bytes and
        // does not overlap `src`; it is non-null.
        let page = unsafe { slice::from_raw_parts_mut(dst, dlen) };
        match xbzrle::decode(delta, page) {
            Ok(end) => c_int::try_from(end).unwrap_or(-1),
            Err(_) => -1,
        }
    })
}

/// Checks that a buffer length is usable: slices are limited to `isize::MAX` bytes.
fn buffer_len(len: usize) -> Result<usize, xbzrle_status> {
    isize::try_from(len)
        .map(|_| len)
        .map_err(|_| XBZRLE_ERR_INVALID_ARGUMENT)
}

/// Checks the lengths of a size_t encode: pages are limited to `u32::MAX` bytes.
fn page_and_capacity(page_len: usize, out_cap: usize) -> Result<(usize, usize), xbzrle_status> {
    if u32::try_from(page_len).is_err() {
        return Err(XBZRLE_ERR_INVALID_ARGUMENT);
    }
    Ok((buffer_len(page_len)?, buffer_len(out_cap)?))
}

/// Turns an encode outcome into a status, storing the delta length in `*out_len`.
///
/// # Safety
/// `out_len` must be valid for a write.
unsafe fn report(encoded: Encoded, out_len: *mut usize) -> xbzrle_status {
    let written = match encoded {
        Encoded::Unchanged => 0,
        Encoded::Delta(len) => len,
        Encoded::Overflow => return XBZRLE_ERR_OVERFLOW,
    };
    // SAFETY: the caller guarantees `out_len` is writable.
    unsafe { out_len.write(written) };
    XBZRLE_OK
}

/// Shared body of the two size_t encoders.
///
/// # Safety
/// As for [`xbzrle_encode`].
unsafe fn encode_with(
    encoder: fn(&[u8], &[u8], &mut [u8]) -> Encoded,
    old_page: *const u8,
    new_page: *const u8,
    page_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> xbzrle_status {
    guard(XBZRLE_ERR_PANIC, || {
        if out_len.is_null() {
            return XBZRLE_ERR_NULL;
        }
        // SAFETY: `out_len` is non-null and the caller guarantees it is writable.
        unsafe { out_len.write(0) };
        if old_page.is_null() || new_page.is_null() || out.is_null() {
            return XBZRLE_ERR_NULL;
        }
        let (page_len, out_cap) = match page_and_capacity(page_len, out_cap) {
            Ok(lens) => lens,
            Err(e) => return e,
        };
        // SAFETY: the caller guarantees `old_page` is readable for `page_len` bytes; non-null.
        let old = unsafe { slice::from_raw_parts(old_page, page_len) };
        // SAFETY: the caller guarantees `new_page` is readable for `page_len` bytes; non-null.
        let new = unsafe { slice::from_raw_parts(new_page, page_len) };
        // SAFETY: the caller guarantees `out` is writable for `out_cap` bytes and overlaps
        // neither page; it is non-null.
        let out = unsafe { slice::from_raw_parts_mut(out, out_cap) };
        // SAFETY: `out_len` is non-null (checked above) and the caller guarantees it is writable.
        unsafe { report(encoder(old, new, out), out_len) }
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
    // SAFETY: the caller upholds this function's contract, which is `encode_with`'s.
    unsafe {
        encode_with(
            xbzrle::encode,
            old_page,
            new_page,
            page_len,
            out,
            out_cap,
            out_len,
        )
    }
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
    // SAFETY: the caller upholds this function's contract, which is `encode_with`'s.
    unsafe {
        encode_with(
            xbzrle::encode_compact,
            old_page,
            new_page,
            page_len,
            out,
            out_cap,
            out_len,
        )
    }
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
    guard(XBZRLE_ERR_PANIC, || {
        if out_len.is_null() {
            return XBZRLE_ERR_NULL;
        }
        // SAFETY: `out_len` is non-null and the caller guarantees it is writable.
        unsafe { out_len.write(0) };
        if cached.is_null() || new_page.is_null() || out.is_null() {
            return XBZRLE_ERR_NULL;
        }
        let (page_len, out_cap) = match page_and_capacity(page_len, out_cap) {
            Ok(lens) => lens,
            Err(e) => return e,
        };
        // SAFETY: the caller guarantees `cached` is readable and writable for `page_len`
        // bytes and overlaps neither other buffer; it is non-null.
        let cached = unsafe { slice::from_raw_parts_mut(cached, page_len) };
        // SAFETY: the caller guarantees `new_page` is readable for `page_len` bytes, which
        // other threads may write (read only through the live page); non-null.
        let new = unsafe { LivePage::from_raw_parts(new_page, page_len) };
        // SAFETY: the caller guarantees `out` is writable for `out_cap` bytes and overlaps
        // neither page; it is non-null.
        let out = unsafe { slice::from_raw_parts_mut(out, out_cap) };
        // SAFETY: `out_len` is non-null (checked above) and the caller guarantees it is writable.
        unsafe { report(xbzrle::encode_update(cached, &new, out), out_len) }
    })
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
    guard(XBZRLE_ERR_PANIC, || {
        if delta.is_null() {
            return XBZRLE_ERR_NULL;
        }
        let delta_len = match buffer_len(delta_len) {
            Ok(len) => len,
            Err(e) => return e,
        };
        // SAFETY: the caller guarantees `delta` is readable for `delta_len` bytes; non-null.
        let delta = unsafe { slice::from_raw_parts(delta, delta_len) };
        match xbzrle::validate(delta, page_len) {
            Ok(at) => {
                if !end.is_null() {
                    // SAFETY: `end` is non-null and the caller guarantees it is writable.
                    unsafe { end.write(at) };
                }
                XBZRLE_OK
            }
            Err(_) => XBZRLE_ERR_INVALID_DELTA,
        }
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
    guard(XBZRLE_ERR_PANIC, || {
        if delta.is_null() || page.is_null() {
            return XBZRLE_ERR_NULL;
        }
        let (delta_len, page_len) = match (buffer_len(delta_len), buffer_len(page_len)) {
            (Ok(d), Ok(p)) => (d, p),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        // SAFETY: the caller guarantees `delta` is readable for `delta_len` bytes; non-null.
        let delta = unsafe { slice::from_raw_parts(delta, delta_len) };
        if xbzrle::validate(delta, page_len).is_err() {
            return XBZRLE_ERR_INVALID_DELTA;
        }
        // SAFETY: the caller guarantees `page` is readable and writable for `page_len` bytes
        // and does not overlap `delta`; it is non-null.
        let page = unsafe { slice::from_raw_parts_mut(page, page_len) };
        match xbzrle::decode(delta, page) {
            Ok(at) => {
                if !end.is_null() {
                    // SAFETY: `end` is non-null and the caller guarantees it is writable.
                    unsafe { end.write(at) };
                }
                XBZRLE_OK
            }
            Err(_) => XBZRLE_ERR_INVALID_DELTA,
        }
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
    guard(c"unknown".as_ptr(), || {
        NAME.get_or_init(|| {
            CString::new(xbzrle::Kernel::best().name()).unwrap_or_else(|_| c"unknown".into())
        })
        .as_ptr()
    })
}

/// The library's version, `"MAJOR.MINOR.PATCH"`, as built (compare with
/// `XBZRLE_VERSION_STRING` from the header you compiled against).
///
/// Returns a static NUL-terminated string (never NULL, never to be freed). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn xbzrle_version_string() -> *const c_char {
    guard(c"unknown".as_ptr(), || VERSION.as_ptr())
}

/// The library's version as `(MAJOR << 16) | (MINOR << 8) | PATCH`, comparable with
/// `XBZRLE_VERSION_NUMBER` from the header. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn xbzrle_version_number() -> u32 {
    guard(0, || {
        (VERSION_MAJOR << 16) | (VERSION_MINOR << 8) | VERSION_PATCH
    })
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
