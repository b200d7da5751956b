//! A RAM chunk the allocator refuses is an error, not an abort: simulated by a global
//! allocator that fails large requests on the thread that asks it to (as
//! policy/tests/alloc_failure.rs does; the library itself has no `unsafe`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{Bytes, PAGE, RAM_ID};
use xbzrle_stream::{ErrorKind, StreamReader};

thread_local! {
    /// Requests of at least this many bytes fail on this thread.
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn refused(size: usize) -> bool {
    size >= LIMIT.try_with(Cell::get).unwrap_or(usize::MAX)
}

struct Limited;

// SAFETY: every method forwards to `System` unchanged, or returns null (a valid "refused"
// answer for all four methods).
unsafe impl GlobalAlloc for Limited {
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

#[global_allocator]
static ALLOCATOR: Limited = Limited;

#[test]
fn a_refused_ram_chunk_is_an_out_of_memory_error() {
    // One block of 1 MiB: its chunk is one 1 MiB allocation, made at its first PAGE record.
    let pages = (1 << 20) / PAGE as u64;
    let (bytes, record_at) = {
        let before = Bytes::prologue(pages).part(RAM_ID);
        let at = before.0.len() as u64;
        (before.page(0, Some("pc.ram"), 7).eos(RAM_ID), at)
    };
    // Created before the limit: the reader's 256 KiB input buffer.
    let mut reader = StreamReader::new(&bytes.0[..]);
    LIMIT.with(|l| l.set(512 << 10));
    let result = loop {
        match reader.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    LIMIT.with(|l| l.set(usize::MAX));
    let err = result.expect_err("the chunk was refused");
    assert!(
        matches!(err.kind(), ErrorKind::OutOfMemory(bytes) if *bytes == 1 << 20),
        "{err}"
    );
    assert_eq!(err.offset(), record_at);
    assert!(err.to_string().contains("out of memory"), "{err}");
}
