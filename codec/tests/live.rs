//! `encode_update` on a new page that changes while it is read: every kernel reads each
//! byte once, and the delta and the refreshed copy come from those reads.
//!
//! The new page is a test double of guest memory ([`ChangingPage`]): between any two reads
//! the "guest" rewrites part of it, so a kernel that read a byte twice could see two values.
//! Whatever happened, the end state must be the one a single consistent read of the values
//! actually returned would give: the cached copy equals them, and the result and delta are
//! the independent oracle's for (old copy, values returned).

mod common;

use std::cell::RefCell;

use common::{PagePair, alignments, edge_capacities, expected_result, page_pairs};
use xbzrle::{Encoded, Kernel, PageSource};
use xbzrle_testkit::{ReadLog, Rng, canonical_delta};

/// Guest memory that changes after every read, recording what each byte read returned.
struct ChangingPage {
    state: RefCell<State>,
}

struct State {
    memory: Vec<u8>,
    log: ReadLog,
    /// Decides what the guest writes between reads.
    rng: Rng,
    /// Bytes written anywhere in the page between two reads.
    random_writes: usize,
}

impl ChangingPage {
    fn new(initial: &[u8], seed: u64, random_writes: usize) -> Self {
        Self {
            state: RefCell::new(State {
                memory: initial.to_vec(),
                log: ReadLog::new(initial),
                rng: Rng::new(seed),
                random_writes,
            }),
        }
    }

    /// The values the reads returned, after checking that each byte was read exactly once.
    fn returned_once(self, context: &str) -> Vec<u8> {
        let log = self.state.into_inner().log;
        if let Some((i, n)) = log.not_read_once() {
            panic!("{context}: byte {i} read {n} times");
        }
        log.into_returned()
    }
}

impl PageSource for ChangingPage {
    fn len(&self) -> usize {
        self.state.borrow().memory.len()
    }

    fn read(&self, at: usize, dst: &mut [u8]) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        dst.copy_from_slice(&state.memory[at..at + dst.len()]);
        state.log.record(at, dst);
        // The guest writes between two reads: a few bytes anywhere, and the bytes just read
        // (so that a second read of them would see another value).
        let len = state.memory.len();
        for _ in 0..state.random_writes.min(len) {
            let i = state.rng.below(len);
            state.memory[i] ^= state.rng.flip();
        }
        for byte in &mut state.memory[at..at + dst.len()] {
            *byte = byte.wrapping_add(1);
        }
    }
}

/// One kernel on one pair at one capacity and alignment, against the oracle on the values
/// its reads returned.
fn check(kernel: Kernel, pair: &PagePair, capacity: usize, align: usize, writes: (u64, usize)) {
    let (cached_align, _, out_align) = alignments(align);
    let mut cached = common::Placed::new(&pair.old, cached_align);
    let mut out = common::Placed::filled(capacity, out_align, 0);
    let new = ChangingPage::new(&pair.new, writes.0, writes.1);
    let result = kernel
        .encode_update(cached.get_mut(), &new, out.get_mut())
        .expect("available");
    let context = format!("{kernel} on {pair:?} capacity={capacity} align={align}");
    let returned = new.returned_once(&context);
    cached.assert_guards(&format_args!("{context}: cached"));
    out.assert_guards(&format_args!("{context}: output"));
    assert!(
        cached.get() == returned,
        "{context}: cached copy is not what was read"
    );
    let expected = canonical_delta(&pair.old, &returned);
    assert_eq!(result, expected_result(&expected, capacity), "{context}");
    if let Encoded::Delta(len) = result {
        assert!(out.get()[..len] == expected, "{context}: delta differs");
    }
}

#[test]
fn every_kernel_reads_a_changing_page_once() {
    let mut rng = Rng::new(0x11fe);
    for len in [0, 1, 7, 8, 9, 63, 64, 65, 255, 256, 257, 1000, 4096, 4101] {
        for pair in page_pairs(len, 0xC0DE ^ len as u64) {
            let canonical = canonical_delta(&pair.old, &pair.new).len();
            for kernel in Kernel::available() {
                for capacity in edge_capacities(canonical, len)
                    .into_iter()
                    .chain([2 * len + 16])
                {
                    let align = rng.below(64);
                    check(kernel, &pair, capacity, align, (rng.next_u64(), 4));
                }
            }
        }
    }
}

/// Changed runs that end on block and group boundaries (where the kernels decide what is
/// refreshed on an overflow), at every capacity up to the whole delta.
#[test]
fn overflow_at_block_boundaries_reads_once() {
    let mut rng = Rng::new(0xb10c);
    for len in [512, 700, 1024] {
        for (start, end) in [
            (0, 256),
            (100, 256),
            (0, 64),
            (190, 320),
            (255, 512),
            (3, 448),
        ] {
            let mut old = vec![0; len];
            rng.fill(&mut old);
            let mut new = old.clone();
            for byte in &mut new[start..end] {
                *byte ^= rng.flip();
            }
            let pair = PagePair {
                name: format!("run {start}..{end} of {len}"),
                old,
                new,
            };
            let canonical = canonical_delta(&pair.old, &pair.new).len();
            for kernel in Kernel::available() {
                for capacity in 0..=canonical + 2 {
                    // Only the bytes just read change: the runs stay where they were.
                    check(kernel, &pair, capacity, rng.below(64), (rng.next_u64(), 0));
                }
            }
        }
    }
}
