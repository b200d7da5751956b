//! The invariant that matters most: whatever the guest writes, whatever the passes,
//! resizes and last stage, under every cache and admission policy, a receiver applying
//! every record ends with the sender's memory. Also checks the cache memory bound after
//! every step. The caller sometimes ends the bulk stage itself (in the middle of the bulk
//! pass, or later, where it has no effect) and sometimes detects zero pages itself
//! (`save_zero_page`).

mod common;

use common::cache_kinds;
use proptest::prelude::*;
use xbzrle_policy::{
    Action, Admission, AdmissionPolicy, CacheKind, Receiver, Sender, SenderConfig, Stage,
};

const MAX_PAGES: usize = 12;

#[derive(Clone, Debug)]
enum Op {
    /// The guest writes `bytes` into `page` at `at` (wrapping inside the page).
    Write {
        page: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    /// The guest zeroes `page`.
    Zero { page: usize },
    /// The guest rewrites `page` completely (an overflow when cached).
    Scramble { page: usize, seed: u8 },
    /// The guest writes back what `page` held `back` passes ago (stale cache copies
    /// would go unnoticed without this: a delta against them would look empty).
    Revert { page: usize, back: usize },
    /// Dirty sync, then every dirty page is sent.
    Pass,
    /// Send one page again, dirty or not (a legitimate resend).
    Resend { page: usize },
    /// Resize the cache to this many pages.
    Resize { pages: u64 },
    /// `end_bulk_stage` (an effect only while the bulk stage lasts: before the first
    /// `Pass` op).
    EndBulk,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..MAX_PAGES, 0..4096usize, prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(page, at, bytes)| Op::Write { page, at, bytes }),
        1 => (0..MAX_PAGES).prop_map(|page| Op::Zero { page }),
        1 => (0..MAX_PAGES, any::<u8>()).prop_map(|(page, seed)| Op::Scramble { page, seed }),
        3 => (0..MAX_PAGES, 1..4usize).prop_map(|(page, back)| Op::Revert { page, back }),
        3 => Just(Op::Pass),
        1 => (0..MAX_PAGES).prop_map(|page| Op::Resend { page }),
        1 => (1..20u64).prop_map(|pages| Op::Resize { pages }),
        1 => Just(Op::EndBulk),
    ]
}

/// A custom policy that admits at random, in every stage (bulk included): exercises the
/// paths no built-in policy reaches, such as a bulk-stage page that is cached but not
/// admitted.
struct Coin(u64);

impl AdmissionPolicy for Coin {
    fn observe(&mut self, _page: u64, _stage: Stage) {}

    fn admit(&mut self, _page: u64, _stage: Stage) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 & 1 == 0
    }
}

#[derive(Clone, Copy)]
enum Policy {
    Builtin(Admission),
    Coin,
}

fn policies() -> [Policy; 4] {
    [
        Policy::Builtin(Admission::Always),
        Policy::Builtin(Admission::AfterBulk),
        Policy::Builtin(Admission::Frequency {
            min_passes: 2,
            counters: 16,
        }),
        Policy::Coin,
    ]
}

#[derive(Clone, Debug)]
struct Scenario {
    page_size: usize,
    pages: usize,
    cache_pages: u64,
    shards: usize,
    threads: usize,
    initial_seed: u8,
    /// Where the caller ends the bulk stage inside the bulk pass (pages sent before it),
    /// if it does.
    bulk_split: Option<usize>,
    /// Bit `p mod 8` set: the caller detects zero pages of page `p` itself and calls
    /// `save_zero_page` for them.
    zero_by_caller: u8,
    ops: Vec<Op>,
    /// Ops after the last stage has started (a pass there only sends the dirty pages).
    last_ops: Vec<Op>,
}

fn scenario(threads: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Scenario> {
    (
        prop::sample::select(vec![8usize, 64, 100]),
        2..=MAX_PAGES,
        1..16u64,
        prop::sample::select(vec![1usize, 2, 4]),
        threads,
        any::<u8>(),
        prop::option::of(0..=MAX_PAGES),
        any::<u8>(),
        prop::collection::vec(op(), 0..60),
        prop::collection::vec(op(), 0..12),
    )
        .prop_map(
            |(
                page_size,
                pages,
                cache_pages,
                shards,
                threads,
                initial_seed,
                bulk_split,
                zero_by_caller,
                ops,
                last_ops,
            )| {
                Scenario {
                    page_size,
                    pages,
                    cache_pages,
                    shards,
                    threads,
                    initial_seed,
                    bulk_split,
                    zero_by_caller,
                    ops,
                    last_ops,
                }
            },
        )
}

/// How the pages are sent: by how many threads, and which zero pages the caller detects
/// itself.
#[derive(Clone, Copy)]
struct Channels {
    threads: usize,
    /// See [`Scenario::zero_by_caller`].
    zero_by_caller: u8,
}

/// Sends `dirty` pages (ascending) from `threads` threads, each owning the pages
/// `i mod threads`, and applies every record to `dest`. A zero page the caller detects
/// (see [`Channels`]) goes through `save_zero_page`, any other through `save_page`.
fn save_pages(
    sender: &Sender,
    receiver: &Receiver,
    guest: &[u8],
    dest: &mut [u8],
    dirty: &[usize],
    channels: Channels,
) {
    let Channels {
        threads,
        zero_by_caller,
    } = channels;
    let page_size = sender.page_size();
    let records: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut out = vec![0; sender.max_record_len()];
                    let mut records = Vec::new();
                    for &page in dirty.iter().filter(|&&p| p % threads == t) {
                        let data = &guest[page * page_size..][..page_size];
                        let caller_zero =
                            zero_by_caller >> (page % 8) & 1 == 1 && data.iter().all(|&b| b == 0);
                        let sent = if caller_zero {
                            sender.save_zero_page(page as u64, &mut out).unwrap()
                        } else {
                            sender.save_page(page as u64, data, &mut out).unwrap()
                        };
                        if caller_zero {
                            assert_eq!(sent.action, Action::Zero);
                        }
                        records.push(out[..sent.record_len].to_vec());
                    }
                    records
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Each page belongs to one thread, so only the order within a thread matters.
    for record in records.iter().flatten().filter(|r| !r.is_empty()) {
        let applied = receiver.apply_record(record, dest).unwrap();
        assert_eq!(applied.consumed, record.len());
    }
}

fn run(sc: &Scenario, cache: CacheKind, policy: Policy) {
    let ps = sc.page_size;
    let mut cache_bytes = sc.cache_pages * ps as u64;
    let mut config = SenderConfig::default()
        .with_page_size(ps)
        .with_cache_bytes(cache_bytes)
        .with_cache(cache)
        .with_admission(Admission::AfterBulk)
        .with_shards(sc.shards);
    let sender = match policy {
        Policy::Builtin(admission) => {
            config.admission = admission;
            Sender::new(config)
        }
        Policy::Coin => Sender::with_admission(config, |shard| {
            Box::new(Coin(
                0x9e37_79b9 + shard as u64 + u64::from(sc.initial_seed),
            ))
        }),
    }
    .unwrap();
    let receiver = Receiver::new(ps).unwrap();
    let mut guest: Vec<u8> = (0..sc.pages * ps)
        .map(|i| (i as u8).wrapping_mul(sc.initial_seed) ^ (i >> 3) as u8)
        .collect();
    let mut dest = vec![0u8; guest.len()];
    let all: Vec<usize> = (0..sc.pages).collect();
    let mut dirty = vec![false; sc.pages];
    // Guest memory at the start of every pass, newest last.
    let mut history = vec![guest.clone()];
    let check_memory = |sender: &Sender, budget: u64| {
        assert!(sender.cache_allocated_bytes() as u64 <= budget);
        assert_eq!(
            sender.stats().cache_allocated_bytes,
            sender.cache_allocated_bytes()
        );
    };

    let channels = Channels {
        threads: sc.threads,
        zero_by_caller: sc.zero_by_caller,
    };
    let one = Channels {
        threads: 1,
        ..channels
    };
    // Bulk stage: every page, the caller perhaps ending it part-way.
    sender.start_pass();
    let split = sc.bulk_split.map_or(all.len(), |k| k.min(all.len()));
    save_pages(
        &sender,
        &receiver,
        &guest,
        &mut dest,
        &all[..split],
        channels,
    );
    if sc.bulk_split.is_some() {
        sender.end_bulk_stage();
        assert_eq!(sender.stage(), Stage::Iterative);
        assert_eq!(sender.generation(), 1);
    }
    save_pages(
        &sender,
        &receiver,
        &guest,
        &mut dest,
        &all[split..],
        channels,
    );
    // `None` enters the last stage; later passes only send the dirty pages.
    let steps = sc.ops.iter().map(Some).chain([None]);
    for step in steps.chain(sc.last_ops.iter().map(Some)) {
        let Some(op) = step else {
            history.push(guest.clone());
            sender.start_last_stage();
            let pages: Vec<usize> = (0..sc.pages).filter(|&p| dirty[p]).collect();
            save_pages(&sender, &receiver, &guest, &mut dest, &pages, channels);
            dirty.fill(false);
            continue;
        };
        match op {
            Op::Write { page, at, bytes } => {
                let page = page % sc.pages;
                for (i, &b) in bytes.iter().enumerate() {
                    guest[page * ps + (at + i) % ps] = b;
                }
                dirty[page] = true;
            }
            Op::Zero { page } => {
                let page = page % sc.pages;
                guest[page * ps..][..ps].fill(0);
                dirty[page] = true;
            }
            Op::Scramble { page, seed } => {
                let page = page % sc.pages;
                for (i, b) in guest[page * ps..][..ps].iter_mut().enumerate() {
                    *b = !*b ^ (i as u8).wrapping_mul(*seed | 1);
                }
                dirty[page] = true;
            }
            Op::Revert { page, back } => {
                let page = page % sc.pages;
                let old = &history[history.len().saturating_sub(*back)];
                guest[page * ps..][..ps].copy_from_slice(&old[page * ps..][..ps]);
                dirty[page] = true;
            }
            Op::Pass => {
                history.push(guest.clone());
                sender.start_pass();
                let pages: Vec<usize> = (0..sc.pages).filter(|&p| dirty[p]).collect();
                save_pages(&sender, &receiver, &guest, &mut dest, &pages, channels);
                dirty.fill(false);
            }
            Op::Resend { page } => {
                let page = page % sc.pages;
                save_pages(&sender, &receiver, &guest, &mut dest, &[page], one);
                dirty[page] = false;
            }
            Op::Resize { pages } => {
                cache_bytes = pages * ps as u64;
                sender.resize_cache(cache_bytes).unwrap();
            }
            Op::EndBulk => {
                let before = (sender.stage(), sender.generation());
                sender.end_bulk_stage();
                let expected = match before.0 {
                    Stage::Bulk => Stage::Iterative,
                    stage => stage,
                };
                assert_eq!((sender.stage(), sender.generation()), (expected, before.1));
            }
        }
        check_memory(&sender, cache_bytes);
    }
    let pages: Vec<usize> = (0..sc.pages).filter(|&p| dirty[p]).collect();
    save_pages(&sender, &receiver, &guest, &mut dest, &pages, channels);
    assert!(guest == dest, "receiver memory differs from the sender's");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn receiver_ends_identical_single_thread(sc in scenario(1..=1)) {
        for cache in cache_kinds() {
            for admission in policies() {
                run(&sc, cache, admission);
            }
        }
    }

    #[test]
    fn receiver_ends_identical_several_threads(sc in scenario(2..=4)) {
        for cache in cache_kinds() {
            for admission in policies() {
                run(&sc, cache, admission);
            }
        }
    }
}
