//! What the policy tests share: the cache and admission configurations every test runs
//! under, and a test double of guest memory that changes while it is read.
#![allow(dead_code)] // Each test file uses a part.

use std::cell::RefCell;

use xbzrle::PageSource;
use xbzrle_policy::{Admission, CacheKind, Replacement};
use xbzrle_testkit::ReadLog;
use xbzrle_workloads::SplitMix64;

/// Every cache organisation and victim rule, with few ways so that small caches evict.
pub(crate) fn cache_kinds() -> [CacheKind; 4] {
    [
        CacheKind::DirectMapped,
        CacheKind::SetAssociative {
            ways: 2,
            replacement: Replacement::Lru,
        },
        CacheKind::SetAssociative {
            ways: 4,
            replacement: Replacement::Lifetime,
        },
        CacheKind::SetAssociative {
            ways: 3,
            replacement: Replacement::Frequency,
        },
    ]
}

/// Every built-in admission policy; the frequency ones with tiny sketches (collisions).
pub(crate) fn admissions() -> [Admission; 4] {
    [
        Admission::Always,
        Admission::AfterBulk,
        Admission::Frequency {
            min_passes: 2,
            counters: 64,
        },
        Admission::Frequency {
            min_passes: 1,
            counters: 64,
        },
    ]
}

/// How the guest writes a page while the sender reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestWrites {
    /// Nothing: the guest is stopped.
    None,
    /// After every read: a few random bytes anywhere, and every byte just read (so that a
    /// second read of it would see another value).
    Scatter,
    /// After every read: the whole page becomes zeros or a random page, at random (zero
    /// detection and overflows racing with the read).
    Rewrite,
}

/// A page of guest memory, borrowed, that the "guest" writes between any two reads
/// ([`GuestWrites`]). It records how often each byte was read and the value its first read
/// returned, and keeps the writes in the memory (as a vCPU's writes stay).
pub(crate) struct ChangingPage<'m> {
    state: RefCell<State<'m>>,
}

struct State<'m> {
    memory: &'m mut [u8],
    writes: GuestWrites,
    rng: SplitMix64,
    log: ReadLog,
}

impl<'m> ChangingPage<'m> {
    /// The guest page `memory`, written as `writes` says, with random choices from `seed`.
    pub(crate) fn new(memory: &'m mut [u8], writes: GuestWrites, seed: u64) -> Self {
        Self {
            state: RefCell::new(State {
                log: ReadLog::new(memory),
                memory,
                writes,
                rng: SplitMix64::new(seed),
            }),
        }
    }

    /// What was read: each byte's read count and the value its first read returned.
    pub(crate) fn finish(self) -> ReadLog {
        self.state.into_inner().log
    }
}

impl PageSource for ChangingPage<'_> {
    fn len(&self) -> usize {
        self.state.borrow().memory.len()
    }

    fn read(&self, at: usize, dst: &mut [u8]) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        dst.copy_from_slice(&state.memory[at..at + dst.len()]);
        state.log.record(at, dst);
        let len = state.memory.len() as u64;
        match state.writes {
            GuestWrites::None => {}
            GuestWrites::Scatter => {
                for _ in 0..3 {
                    let i = state.rng.below(len) as usize;
                    state.memory[i] ^= 1 + state.rng.below(255) as u8;
                }
                for byte in &mut state.memory[at..at + dst.len()] {
                    *byte = byte.wrapping_add(1);
                }
            }
            GuestWrites::Rewrite => match state.rng.below(3) {
                0 => state.memory.fill(0),
                1 => state.rng.fill(state.memory),
                _ => {}
            },
        }
    }
}
