//! The receiver in C: parses wire records and applies them to destination pages.

use xbzrle_policy::{ReceiveError, Receiver, Record};

use crate::ffi::{self, Status};
use crate::kinds::unknown_variant;
use crate::status::xbzrle_status::{self, *};

/// An opaque receiver: applies the sender's records to destination pages. Stateless apart
/// from the page size. Create with `xbzrle_receiver_new`, destroy with
/// `xbzrle_receiver_free`.
#[allow(non_camel_case_types)]
pub struct xbzrle_receiver(Receiver);

impl From<ReceiveError> for xbzrle_status {
    fn from(e: ReceiveError) -> Self {
        match e {
            ReceiveError::Record(_) => XBZRLE_ERR_INVALID_RECORD,
            ReceiveError::Delta(_) => XBZRLE_ERR_INVALID_DELTA,
            ReceiveError::WrongPageSize { .. } => XBZRLE_ERR_INVALID_ARGUMENT,
            ReceiveError::PageOutOfRange { .. } => XBZRLE_ERR_PAGE_OUT_OF_RANGE,
            other => unknown_variant(other),
        }
    }
}

/// Creates a receiver for pages of `page_size` bytes (1 ..= UINT32_MAX, and at most
/// PTRDIFF_MAX). The receiver allocates no page-sized memory, so a large page size costs
/// nothing. On `XBZRLE_OK`, `*out` is a new handle the caller owns and must release with
/// `xbzrle_receiver_free`; on error `*out` is NULL. Errors: `XBZRLE_ERR_NULL`,
/// `XBZRLE_ERR_INVALID_ARGUMENT` (e.g. `page_size` 0 or SIZE_MAX). Thread-safe.
///
/// # Safety
/// `out` must be NULL or valid for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_receiver_new(
    page_size: usize,
    out: *mut *mut xbzrle_receiver,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: the caller guarantees `out` is NULL or writable.
        unsafe { ffi::write(out, std::ptr::null_mut()) }?;
        let receiver = Receiver::new(page_size)?;
        let handle = Box::into_raw(Box::new(xbzrle_receiver(receiver)));
        // SAFETY: as above.
        unsafe { ffi::write(out, handle) }
    })
}

/// Destroys a receiver. NULL does nothing. No other call may use the handle during or after
/// this one.
///
/// # Safety
/// `receiver` must be NULL or a handle from `xbzrle_receiver_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_receiver_free(receiver: *mut xbzrle_receiver) {
    ffi::call(|| {
        if !receiver.is_null() {
            // SAFETY: the caller guarantees `receiver` came from `Box::into_raw` in
            // `xbzrle_receiver_new` and is freed once, with no other use outstanding.
            drop(unsafe { Box::from_raw(receiver) });
        }
        Ok(())
    });
}

/// Borrows the receiver and the record bytes.
///
/// # Safety
/// `receiver` must be NULL or a live handle; `record` NULL or readable for `record_len`.
unsafe fn inputs<'a>(
    receiver: *const xbzrle_receiver,
    record: *const u8,
    record_len: usize,
) -> Status<(&'a Receiver, &'a [u8])> {
    // SAFETY: the caller's contract.
    let receiver = unsafe { ffi::handle(receiver) }?;
    // SAFETY: the caller's contract.
    Ok((&receiver.0, unsafe { ffi::borrow(record, record_len) }?))
}

/// Reads the header of the record at the start of `record` (`record_len` bytes available)
/// without applying it: `*page` (optional) is its page number and `*consumed` (optional)
/// its length in bytes. Use it to find the destination page before
/// `xbzrle_receiver_apply_page`. Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_RECORD`.
/// Thread-safe.
///
/// # Safety
/// `receiver` must be NULL or a live handle; `record` readable for `record_len` bytes;
/// `page` and `consumed` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_receiver_peek(
    receiver: *const xbzrle_receiver,
    record: *const u8,
    record_len: usize,
    page: *mut u64,
    consumed: *mut usize,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: forwarded contract.
        let (receiver, bytes) = unsafe { inputs(receiver, record, record_len) }?;
        let (record, len) =
            Record::parse(bytes, receiver.page_size()).map_err(|_| XBZRLE_ERR_INVALID_RECORD)?;
        // SAFETY: the caller guarantees `page` is NULL or writable.
        unsafe { ffi::write_optional(page, record.page) };
        // SAFETY: the caller guarantees `consumed` is NULL or writable.
        unsafe { ffi::write_optional(consumed, len) };
        Ok(())
    })
}

/// Applies the record at the start of `record` to `dest`, the one page it is for
/// (`dest_len` = the page size; find it with `xbzrle_receiver_peek`). `*consumed`
/// (optional) is the record's length. On any error `dest` is left exactly as it was.
/// Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_ARGUMENT` (`dest_len` is not the page
/// size), `XBZRLE_ERR_INVALID_RECORD`, `XBZRLE_ERR_INVALID_DELTA`.
///
/// Thread-safe: several threads may apply records at once to different pages.
///
/// # Safety
/// `receiver` must be NULL or a live handle; `record` readable for `record_len` bytes;
/// `dest` readable and writable for `dest_len` bytes, not overlapping `record`; `consumed`
/// NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_receiver_apply_page(
    receiver: *const xbzrle_receiver,
    record: *const u8,
    record_len: usize,
    dest: *mut u8,
    dest_len: usize,
    consumed: *mut usize,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: forwarded contract.
        let (receiver, bytes) = unsafe { inputs(receiver, record, record_len) }?;
        // SAFETY: the caller guarantees `dest` is NULL or readable and writable for
        // `dest_len` bytes, not overlapping `record`.
        let dest = unsafe { ffi::borrow_mut(dest, dest_len) }?;
        let (parsed, len) =
            Record::parse(bytes, receiver.page_size()).map_err(|_| XBZRLE_ERR_INVALID_RECORD)?;
        receiver.apply(&parsed.body, dest)?;
        // SAFETY: the caller guarantees `consumed` is NULL or writable.
        unsafe { ffi::write_optional(consumed, len) };
        Ok(())
    })
}

/// Applies the record at the start of `record` to guest memory `memory` (`memory_len`
/// bytes; page `p` is at `memory + p * page_size`). `*page` and `*consumed` (optional) are
/// the record's page number and length. On any error `memory` is left exactly as it was.
/// Errors: `XBZRLE_ERR_NULL`, `XBZRLE_ERR_INVALID_RECORD`, `XBZRLE_ERR_INVALID_DELTA`,
/// `XBZRLE_ERR_PAGE_OUT_OF_RANGE`.
///
/// Thread-safe: several threads may apply records at once to different pages of one
/// memory, provided no two calls are for the same page.
///
/// # Safety
/// `receiver` must be NULL or a live handle; `record` readable for `record_len` bytes;
/// `memory` readable and writable for `memory_len` bytes, not overlapping `record`;
/// `page` and `consumed` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xbzrle_receiver_apply_record(
    receiver: *const xbzrle_receiver,
    record: *const u8,
    record_len: usize,
    memory: *mut u8,
    memory_len: usize,
    page: *mut u64,
    consumed: *mut usize,
) -> xbzrle_status {
    ffi::call(|| {
        // SAFETY: forwarded contract.
        let (receiver, bytes) = unsafe { inputs(receiver, record, record_len) }?;
        ffi::non_null(memory)?;
        let (parsed, len) =
            Record::parse(bytes, receiver.page_size()).map_err(|_| XBZRLE_ERR_INVALID_RECORD)?;
        // Only the record's page is borrowed: other threads may be writing other pages of
        // the same memory.
        let start = receiver.page_offset(parsed.page, memory_len)?;
        // SAFETY: `start + page_size <= memory_len` (checked above), so the pointer stays
        // inside the caller's `memory_len` bytes.
        let dest = unsafe { memory.add(start) };
        // SAFETY: these `page_size` bytes are readable and writable (caller's contract) and no
        // other call accesses this page meanwhile (the thread-safety rule above).
        let dest = unsafe { ffi::borrow_mut(dest, receiver.page_size()) }?;
        receiver.apply(&parsed.body, dest)?;
        // SAFETY: the caller guarantees `page` is NULL or writable.
        unsafe { ffi::write_optional(page, parsed.page) };
        // SAFETY: the caller guarantees `consumed` is NULL or writable.
        unsafe { ffi::write_optional(consumed, len) };
        Ok(())
    })
}
