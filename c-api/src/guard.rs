//! The panic boundary: no unwind ever crosses the C ABI.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `body`; if it panics, returns `on_panic` instead of unwinding into C.
///
/// `AssertUnwindSafe` is sound here: the only state that outlives a call is a handle, and
/// the sender keeps its cache shards behind mutexes that a panic poisons, after which it
/// reports [`super::status::xbzrle_status::XBZRLE_ERR_POISONED`] instead of using them.
pub(crate) fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

#[cfg(test)]
mod tests {
    use super::guard;

    #[test]
    fn a_panic_becomes_the_fallback_value() {
        assert_eq!(guard(-7, || -> i32 { panic!("boom") }), -7);
    }

    #[test]
    fn a_normal_return_passes_through() {
        assert_eq!(guard(-7, || 3), 3);
    }
}
