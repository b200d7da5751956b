//! A RAM chunk the allocator refuses is an error, not an abort: simulated by a global
//! allocator that fails large requests on the thread that asks it to (the testkit's
//! `LimitedAllocator`).

mod common;

use common::{Bytes, PAGE, RAM_ID};
use xbzrle_stream::{ErrorKind, StreamReader};
use xbzrle_testkit::limited_alloc::{LimitedAllocator, with_limit};

#[global_allocator]
static ALLOCATOR: LimitedAllocator = LimitedAllocator;

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
    let result = with_limit(512 << 10, || {
        loop {
            match reader.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        }
    });
    let err = result.expect_err("the chunk was refused");
    assert!(
        matches!(err.kind(), ErrorKind::OutOfMemory(bytes) if *bytes == 1 << 20),
        "{err}"
    );
    assert_eq!(err.offset(), record_at);
    assert!(err.to_string().contains("out of memory"), "{err}");
}
