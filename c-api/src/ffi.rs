//! The one FFI layer of the C API: the panic boundary, and every check of a pointer, a
//! length, a handle, an out-parameter or a versioned struct, written once. Entry points are
//! closures returning [`Status`], so that `?` turns any failed check into its status code.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::slice;

use xbzrle::LivePage;

use crate::status::xbzrle_status::{self, *};

/// What an entry point's body returns: a value, or the status code of what went wrong.
pub(crate) type Status<T = ()> = Result<T, xbzrle_status>;

/// Runs `body` behind the panic boundary: `Ok` gives `XBZRLE_OK`, `Err(code)` gives `code`,
/// and a panic gives `XBZRLE_ERR_PANIC` instead of unwinding into C.
///
/// `AssertUnwindSafe` is sound here: the only state that outlives a call is a handle, and the
/// handles keep what a panic could leave half-changed behind a mutex that the panic poisons
/// (the sender's shards) or a poisoned flag (the page cache), after which they report
/// `XBZRLE_ERR_POISONED` instead of using it.
pub(crate) fn call(body: impl FnOnce() -> Status) -> xbzrle_status {
    catch_unwind(AssertUnwindSafe(body)).map_or(XBZRLE_ERR_PANIC, |result| match result {
        Ok(()) => XBZRLE_OK,
        Err(code) => code,
    })
}

/// Runs `body` behind the panic boundary, returning `on_error` if it fails or panics: for
/// the entry points that keep QEMU's `int` results.
pub(crate) fn call_or<T>(on_error: T, body: impl FnOnce() -> Status<T>) -> T {
    catch_unwind(AssertUnwindSafe(body))
        .map_or_else(|_| None, Result::ok)
        .unwrap_or(on_error)
}

/// Fails with `XBZRLE_ERR_NULL` when `ptr` is NULL.
pub(crate) fn non_null<T>(ptr: *const T) -> Status {
    if ptr.is_null() {
        Err(XBZRLE_ERR_NULL)
    } else {
        Ok(())
    }
}

/// `len` as a buffer length: slices hold at most `isize::MAX` bytes.
pub(crate) fn length(len: usize) -> Status<usize> {
    isize::try_from(len)
        .map(|_| len)
        .map_err(|_| XBZRLE_ERR_INVALID_ARGUMENT)
}

/// The `len` values at `ptr`.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` values for `'a`, which nothing writes meanwhile.
pub(crate) unsafe fn borrow<'a, T>(ptr: *const T, len: usize) -> Status<&'a [T]> {
    non_null(ptr)?;
    length(len.saturating_mul(size_of::<T>()))?;
    // SAFETY: non-null, at most `isize::MAX` bytes, and readable and unchanging for `'a`
    // (caller's contract).
    Ok(unsafe { slice::from_raw_parts(ptr, len) })
}

/// The `len` values at `ptr`, for writing.
///
/// # Safety
/// `ptr` is NULL or valid for reads and writes of `len` values for `'a`, which nothing else
/// accesses meanwhile.
pub(crate) unsafe fn borrow_mut<'a, T>(ptr: *mut T, len: usize) -> Status<&'a mut [T]> {
    non_null(ptr)?;
    length(len.saturating_mul(size_of::<T>()))?;
    // SAFETY: non-null, at most `isize::MAX` bytes, and exclusively ours for `'a` (caller's
    // contract).
    Ok(unsafe { slice::from_raw_parts_mut(ptr, len) })
}

/// The `len` bytes at `ptr` as guest memory that other threads may write meanwhile.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` bytes for `'a`; others may write them, but only
/// through raw pointers.
pub(crate) unsafe fn borrow_live<'a>(ptr: *const u8, len: usize) -> Status<LivePage<'a>> {
    non_null(ptr)?;
    length(len)?;
    // SAFETY: the caller's contract is `LivePage`'s; `len` is at most `isize::MAX`.
    Ok(unsafe { LivePage::from_raw_parts(ptr, len) })
}

/// The object behind a handle.
///
/// # Safety
/// `handle` is NULL or points to a live `T` for `'a`.
pub(crate) unsafe fn handle<'a, T>(handle: *const T) -> Status<&'a T> {
    // SAFETY: NULL or live (caller's contract).
    unsafe { handle.as_ref() }.ok_or(XBZRLE_ERR_NULL)
}

/// The object behind a handle, for changing.
///
/// # Safety
/// `handle` is NULL or points to a live `T` for `'a` that no other call uses meanwhile.
pub(crate) unsafe fn handle_mut<'a, T>(handle: *mut T) -> Status<&'a mut T> {
    // SAFETY: NULL or live and unshared (caller's contract).
    unsafe { handle.as_mut() }.ok_or(XBZRLE_ERR_NULL)
}

/// Writes a required out-parameter.
///
/// # Safety
/// `out` is NULL or valid for a write of one `T`.
pub(crate) unsafe fn write<T>(out: *mut T, value: T) -> Status {
    non_null(out)?;
    // SAFETY: non-null and writable (caller's contract).
    unsafe { out.write(value) };
    Ok(())
}

/// Writes an optional out-parameter (nothing when it is NULL).
///
/// # Safety
/// `out` is NULL or valid for a write of one `T`.
pub(crate) unsafe fn write_optional<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null and writable (caller's contract).
        unsafe { out.write(value) };
    }
}

/// A struct that starts with its own size (`size_t struct_size`), so that it can grow: the
/// caller says how large its version is and the library writes that much.
///
/// # Safety
/// Implementors are `#[repr(C)]` structs whose first field is `struct_size: usize`.
pub(crate) unsafe trait Versioned: Copy {
    /// The smallest size any version of the header declared (the first version's).
    const FIRST_SIZE: usize;
}

/// A [`Versioned`] struct the library also reads from the caller.
///
/// # Safety
/// Every byte pattern of every field is valid (integers only: no enums, `bool`s or
/// references), so that bytes copied from C make a valid value.
pub(crate) unsafe trait VersionedInput: Versioned {}

/// Reads the caller's versioned struct at `ptr` into the current layout: the fields its
/// version has, `defaults` for the later ones.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `(*ptr).struct_size` bytes (its first field).
pub(crate) unsafe fn read_versioned<T: VersionedInput>(ptr: *const T, defaults: T) -> Status<T> {
    non_null(ptr)?;
    // SAFETY: the first field is a `usize` (trait contract), readable (caller's contract).
    let declared = unsafe { ptr.cast::<usize>().read_unaligned() };
    if declared < T::FIRST_SIZE {
        return Err(XBZRLE_ERR_INVALID_ARGUMENT);
    }
    let mut value = defaults;
    let len = declared.min(size_of::<T>());
    // SAFETY: `len` bytes are readable at `ptr` (caller's contract) and fit in `value`; any
    // byte pattern is a valid `T` (`VersionedInput` contract).
    unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&raw mut value).cast::<u8>(), len) };
    Ok(value)
}

/// Writes `value` into the caller's versioned struct of `size` bytes at `ptr`: as much of it
/// as the caller's version has room for, `struct_size` set to what was written.
///
/// # Safety
/// `ptr` is NULL or valid for writes of `size` bytes.
pub(crate) unsafe fn write_versioned<T: Versioned>(ptr: *mut T, size: usize, value: T) -> Status {
    non_null(ptr)?;
    if size < T::FIRST_SIZE {
        return Err(XBZRLE_ERR_INVALID_ARGUMENT);
    }
    let len = size.min(size_of::<T>());
    let mut value = value;
    // SAFETY: the first field is a `usize` (trait contract).
    unsafe { (&raw mut value).cast::<usize>().write(len) };
    // SAFETY: `len` bytes are writable at `ptr` (caller's contract) and readable in `value`.
    unsafe {
        std::ptr::copy_nonoverlapping((&raw const value).cast::<u8>(), ptr.cast::<u8>(), len)
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_code() {
        assert_eq!(call(|| panic!("boom")), XBZRLE_ERR_PANIC);
        assert_eq!(call_or(-7, || -> Status<i32> { panic!("boom") }), -7);
    }

    #[test]
    fn results_pass_through() {
        assert_eq!(call(|| Ok(())), XBZRLE_OK);
        assert_eq!(call(|| Err(XBZRLE_ERR_OVERFLOW)), XBZRLE_ERR_OVERFLOW);
        assert_eq!(call_or(-1, || Ok(3)), 3);
        assert_eq!(call_or(-1, || Err(XBZRLE_ERR_NULL)), -1);
    }

    #[test]
    fn null_pointers_and_huge_lengths_are_refused() {
        // SAFETY: NULL is allowed by every contract here.
        let null = unsafe { borrow::<u8>(std::ptr::null(), 0) };
        assert_eq!(null.err(), Some(XBZRLE_ERR_NULL));
        // SAFETY: as above.
        let null = unsafe { write(std::ptr::null_mut::<u8>(), 1) };
        assert_eq!(null, Err(XBZRLE_ERR_NULL));
        // SAFETY: as above.
        unsafe { write_optional(std::ptr::null_mut::<u8>(), 1) };
        let byte = 0u8;
        // SAFETY: `byte` is readable for one byte; the length check refuses before any use.
        let huge = unsafe { borrow(&raw const byte, usize::MAX) };
        assert_eq!(huge.err(), Some(XBZRLE_ERR_INVALID_ARGUMENT));
    }

    #[derive(Debug, Clone, Copy, PartialEq, Default)]
    #[repr(C)]
    struct Grown {
        struct_size: usize,
        first: u32,
        later: u32,
    }

    // SAFETY: `#[repr(C)]`, `struct_size` first.
    unsafe impl Versioned for Grown {
        const FIRST_SIZE: usize = 12;
    }

    // SAFETY: integers only.
    unsafe impl VersionedInput for Grown {}

    #[test]
    fn a_versioned_struct_is_read_and_written_as_far_as_both_versions_go() {
        let defaults = Grown {
            struct_size: 16,
            first: 1,
            later: 2,
        };
        // An older caller: only `struct_size` and `first`.
        let old = Grown {
            struct_size: 12,
            first: 9,
            later: 77,
        };
        // SAFETY: `old` is readable for its declared 12 bytes.
        let read = unsafe { read_versioned(&raw const old, defaults) };
        assert_eq!(read.map(|g| (g.first, g.later)), Ok((9, 2)));
        let too_small = Grown {
            struct_size: 4,
            ..old
        };
        // SAFETY: as above.
        let refused = unsafe { read_versioned(&raw const too_small, defaults) };
        assert_eq!(refused.err(), Some(XBZRLE_ERR_INVALID_ARGUMENT));
        let mut out = Grown {
            struct_size: 0,
            first: 0,
            later: 55,
        };
        // SAFETY: `out` is writable for 12 bytes.
        let written = unsafe { write_versioned(&raw mut out, 12, defaults) };
        assert_eq!(written, Ok(()));
        assert_eq!((out.struct_size, out.first, out.later), (12, 1, 55));
        // SAFETY: as above.
        let refused = unsafe { write_versioned(&raw mut out, 8, defaults) };
        assert_eq!(refused, Err(XBZRLE_ERR_INVALID_ARGUMENT));
    }
}
