//! A global allocator for tests of allocation failure: it refuses, on the thread that asks
//! it to, every request of at least a given size, and forwards everything else to
//! [`System`]. A test crate installs it with
//! `#[global_allocator] static ALLOCATOR: LimitedAllocator = LimitedAllocator;` and runs the
//! code under test inside [`with_limit`].
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Requests of at least this many bytes fail on this thread.
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Runs `body` with allocations of `limit` bytes or more failing on this thread (when
/// [`LimitedAllocator`] is the global allocator).
pub fn with_limit<T>(limit: usize, body: impl FnOnce() -> T) -> T {
    LIMIT.with(|l| l.set(limit));
    let result = body();
    LIMIT.with(|l| l.set(usize::MAX));
    result
}

fn refused(size: usize) -> bool {
    size >= LIMIT.try_with(Cell::get).unwrap_or(usize::MAX)
}

/// The allocator: [`System`], except for what [`with_limit`] refuses.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitedAllocator;

// SAFETY: every method forwards to `System` unchanged, or returns null (a valid "refused"
// answer for all four methods).
unsafe impl GlobalAlloc for LimitedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refused(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
