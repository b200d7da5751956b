//! Stable numeric status codes and their descriptions.

use std::ffi::{CStr, c_char, c_int};

use xbzrle_policy::ConfigError;

/// Result of a native (non-QEMU) entry point: `XBZRLE_OK` (0) or a negative error code.
///
/// The values are stable: codes are only ever added, never renumbered.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum xbzrle_status {
    /// Success.
    XBZRLE_OK = 0,
    /// A required pointer argument (handle, buffer or out-parameter) is NULL.
    XBZRLE_ERR_NULL = -1,
    /// A length, size or configuration value is out of range.
    XBZRLE_ERR_INVALID_ARGUMENT = -2,
    /// The output buffer is too small: for an encode, the delta does not fit (send the page raw).
    XBZRLE_ERR_OVERFLOW = -3,
    /// The delta is malformed or does not fit the page; the page was not modified.
    XBZRLE_ERR_INVALID_DELTA = -4,
    /// The wire record is malformed; the page was not modified.
    XBZRLE_ERR_INVALID_RECORD = -5,
    /// An internal error (a caught panic). A handle involved may now report
    /// `XBZRLE_ERR_POISONED`; it can still be freed.
    XBZRLE_ERR_PANIC = -6,
    /// A cache was left inconsistent by an earlier internal error: the page cache, or the
    /// sender's cache shard of this page. The migration must restart with a new object (free
    /// this one).
    XBZRLE_ERR_POISONED = -7,
    /// The record's page lies outside the destination memory; nothing was written.
    XBZRLE_ERR_PAGE_OUT_OF_RANGE = -8,
    /// The sizes asked for are valid but the memory they need cannot be allocated (cache
    /// metadata, the cache's page-data reservation, admission counters, resize space).
    /// Nothing was created or changed; try smaller sizes. (A size that cannot be
    /// represented at all, such as a cache above `PTRDIFF_MAX` bytes, is
    /// `XBZRLE_ERR_INVALID_ARGUMENT` instead.)
    XBZRLE_ERR_NO_MEMORY = -9,
}

use xbzrle_status::*;

impl xbzrle_status {
    /// Every status, for the description table and its test.
    const ALL: [xbzrle_status; 10] = [
        XBZRLE_OK,
        XBZRLE_ERR_NULL,
        XBZRLE_ERR_INVALID_ARGUMENT,
        XBZRLE_ERR_OVERFLOW,
        XBZRLE_ERR_INVALID_DELTA,
        XBZRLE_ERR_INVALID_RECORD,
        XBZRLE_ERR_PANIC,
        XBZRLE_ERR_POISONED,
        XBZRLE_ERR_PAGE_OUT_OF_RANGE,
        XBZRLE_ERR_NO_MEMORY,
    ];

    fn describe(self) -> &'static CStr {
        match self {
            XBZRLE_OK => c"success",
            XBZRLE_ERR_NULL => c"a required pointer argument is NULL",
            XBZRLE_ERR_INVALID_ARGUMENT => c"a length, size or configuration value is out of range",
            XBZRLE_ERR_OVERFLOW => c"the output does not fit in the buffer",
            XBZRLE_ERR_INVALID_DELTA => c"the delta is malformed or does not fit the page",
            XBZRLE_ERR_INVALID_RECORD => c"the wire record is malformed",
            XBZRLE_ERR_PANIC => c"internal error (caught panic)",
            XBZRLE_ERR_POISONED => {
                c"a cache is unusable after an internal error; free its sender or page cache"
            }
            XBZRLE_ERR_PAGE_OUT_OF_RANGE => {
                c"the record's page lies outside the destination memory"
            }
            XBZRLE_ERR_NO_MEMORY => c"not enough memory for the requested sizes",
        }
    }
}

/// A configuration the policy crate refused: out of memory, or an invalid argument (every other
/// variant is a value outside its range).
impl From<ConfigError> for xbzrle_status {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::OutOfMemory { .. } => XBZRLE_ERR_NO_MEMORY,
            _ => XBZRLE_ERR_INVALID_ARGUMENT,
        }
    }
}

/// Describes a status code.
///
/// Returns a static NUL-terminated English string (never NULL, never to be freed); an
/// unknown code gives a generic description. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn xbzrle_strerror(code: c_int) -> *const c_char {
    const UNKNOWN: &CStr = c"unknown xbzrle status code";
    // Nothing here can panic: no panic boundary is needed.
    xbzrle_status::ALL
        .iter()
        .find(|s| **s as c_int == code)
        .map_or(UNKNOWN, |s| s.describe())
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_description() {
        let mut seen = std::collections::HashSet::new();
        for s in xbzrle_status::ALL {
            // SAFETY: xbzrle_strerror returns a pointer to a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(xbzrle_strerror(s as c_int)) };
            assert_eq!(text, s.describe());
            assert!(seen.insert(text), "{s:?} shares its description");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(xbzrle_strerror(12345)) };
        assert!(!seen.contains(unknown));
    }
}
