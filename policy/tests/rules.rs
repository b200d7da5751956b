//! Table-driven tests of the sender's rules (`docs/policy.md`). Every case also runs a
//! receiver on the records and checks that it ends with the sender's memory.

use xbzrle_policy::{
    Action, Admission, AdmissionPolicy, CacheKind, RawReason, Receiver, Replacement, Sender,
    SenderConfig, Stage,
};

const PAGE: usize = 64;
const GUEST_PAGES: usize = 32;

/// Page contents, built independently of the code under test.
#[derive(Clone, Copy, Debug)]
enum C {
    /// All zero.
    Zero,
    /// A busy page (every byte odd, so never zero).
    Base(u8),
    /// `Base(seed)` with one byte flipped: a tiny delta.
    Poke(u8, usize),
    /// Zero page with one byte set: a tiny delta against zeros.
    ZeroPoke(usize),
    /// Every byte of `Base(seed)` inverted: the delta cannot fit in a page.
    Inverse(u8),
}

fn bytes(c: C) -> Vec<u8> {
    let base = |seed: u8| -> Vec<u8> {
        (0..PAGE)
            .map(|i| {
                seed.wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(7))
                    | 1
            })
            .collect()
    };
    match c {
        C::Zero => vec![0; PAGE],
        C::Base(s) => base(s),
        C::Poke(s, i) => {
            let mut p = base(s);
            p[i] ^= 0x80;
            p
        }
        C::ZeroPoke(i) => {
            let mut p = vec![0; PAGE];
            p[i] = 1;
            p
        }
        C::Inverse(s) => base(s).iter().map(|b| !b).collect(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    /// `start_pass` (dirty sync).
    Pass,
    /// `start_last_stage`.
    Last,
    /// Resize the cache to this many pages.
    Resize(u64),
    /// Send `page` with content `C`, expecting this action.
    Send(u64, C, Action),
    /// `page` is cached with content `C` and age `u64`.
    Cached(u64, C, u64),
    /// `page` is not cached.
    NotCached(u64),
    /// `end_bulk_stage`.
    EndBulk,
    /// `save_zero_page(page)`: the caller knows the page is zero (expects [`Zero`]).
    SendZero(u64),
    /// The sender is in this stage and generation.
    Is(Stage, u64),
    /// `cache-miss` and `pages` (hits) so far.
    Lookups { misses: u64, hits: u64 },
}

use Action::{Skipped, Xbzrle, Zero};
use Stage::{Bulk, Iterative};
use Step::*;
const BULK: Action = Action::Raw(RawReason::Bulk);
const MISS: Action = Action::Raw(RawReason::Miss);
const OVERFLOW: Action = Action::Raw(RawReason::Overflow);

struct Case {
    name: &'static str,
    cache: CacheKind,
    admission: Admission,
    cache_pages: u64,
    steps: &'static [Step],
}

const SA2: CacheKind = CacheKind::SetAssociative {
    ways: 2,
    replacement: Replacement::Lifetime,
};

/// The setup of most cases: QEMU's (direct-mapped cache, nothing cached during the bulk
/// stage), 4 pages of cache. In the steps, `Pass, Pass` ends the bulk stage: generation 2,
/// XBZRLE started.
const QEMU: Case = Case {
    name: "",
    cache: CacheKind::DirectMapped,
    admission: Admission::AfterBulk,
    cache_pages: 4,
    steps: &[],
};

const CASES: &[Case] = &[
    Case {
        name: "no insertion during the bulk stage",
        steps: &[
            Send(0, C::Base(1), BULK),
            Pass,
            Send(1, C::Base(2), BULK),
            Send(2, C::Zero, Zero),
            NotCached(0),
            NotCached(1),
            NotCached(2),
        ],
        ..QEMU
    },
    Case {
        name: "admit-always inserts during the bulk stage",
        admission: Admission::Always,
        steps: &[
            Pass,
            Send(1, C::Base(2), BULK),
            Cached(1, C::Base(2), 1),
            Pass,
            Send(1, C::Poke(2, 5), Xbzrle),
        ],
        ..QEMU
    },
    Case {
        name: "insertion on the first miss after the bulk stage",
        steps: &[
            Pass,
            Pass,
            Send(3, C::Base(3), MISS),
            Cached(3, C::Base(3), 2),
            Pass,
            Send(3, C::Poke(3, 9), Xbzrle),
            Cached(3, C::Poke(3, 9), 3),
        ],
        ..QEMU
    },
    Case {
        name: "frequency admission waits for k dirty passes after the bulk stage",
        admission: Admission::Frequency {
            min_passes: 2,
            counters: 64,
        },
        steps: &[
            Pass,
            Send(3, C::Base(3), BULK),
            Pass,
            Send(3, C::Base(4), MISS),
            NotCached(3),
            Pass,
            Send(3, C::Base(5), MISS),
            Cached(3, C::Base(5), 3),
            Pass,
            Send(3, C::Poke(5, 0), Xbzrle),
        ],
        ..QEMU
    },
    Case {
        name: "lifetime protection: another page waits 2 generations",
        steps: &[
            Pass,
            Pass,
            Send(0, C::Base(1), MISS),
            Send(4, C::Base(2), MISS), // same slot, page 0 used this generation
            NotCached(4),
            Pass,
            Send(4, C::Base(2), MISS), // page 0 used in the previous generation
            NotCached(4),
            Cached(0, C::Base(1), 2),
            Pass,
            Send(4, C::Base(2), MISS), // page 0 idle for 2 generations: evicted
            Cached(4, C::Base(2), 4),
            NotCached(0),
        ],
        ..QEMU
    },
    Case {
        name: "a hit refreshes the age",
        steps: &[
            Pass,
            Pass,
            Send(0, C::Base(1), MISS),
            Pass,
            Send(0, C::Base(1), Skipped), // hit at generation 3
            Cached(0, C::Base(1), 3),
            Pass,
            Send(4, C::Base(2), MISS), // generation 4: page 0 still protected
            NotCached(4),
            Pass,
            Send(4, C::Base(2), MISS),
            Cached(4, C::Base(2), 5),
        ],
        ..QEMU
    },
    Case {
        name: "set-associative: the second way takes the conflicting page",
        cache: SA2,
        steps: &[
            Pass,
            Pass,
            Send(0, C::Base(1), MISS),
            Send(2, C::Base(2), MISS),
            Send(4, C::Base(3), MISS), // set 0 full of protected pages
            Cached(0, C::Base(1), 2),
            Cached(2, C::Base(2), 2),
            NotCached(4),
            Pass,
            Send(0, C::Base(1), Skipped),
            Pass,
            Send(4, C::Base(3), MISS), // page 2 idle 2 generations: the victim
            Cached(4, C::Base(3), 4),
            Cached(0, C::Base(1), 3),
            NotCached(2),
        ],
        ..QEMU
    },
    Case {
        name: "last stage: nothing inserted or refreshed; sent entries dropped",
        steps: &[
            Pass,
            Pass,
            Send(0, C::Base(1), MISS),
            Send(1, C::Base(2), MISS),
            Pass,
            Last,
            Send(0, C::Poke(1, 3), Xbzrle),
            NotCached(0),
            Send(0, C::Poke(1, 4), MISS), // a second send stays correct
            Send(1, C::Base(2), Skipped),
            Cached(1, C::Base(2), 4),
            Send(2, C::Base(7), MISS),
            NotCached(2),
            Send(1, C::Zero, Zero),
            NotCached(1),
        ],
        ..QEMU
    },
    Case {
        name: "zero page refreshes the cached copy once XBZRLE started",
        steps: &[
            Pass,
            Pass,
            Send(1, C::Base(1), MISS),
            Pass,
            Send(1, C::Zero, Zero),
            Cached(1, C::Zero, 3),
            Send(2, C::Zero, Zero), // missing: inserted as zeros
            Cached(2, C::Zero, 3),
            Pass,
            Send(1, C::ZeroPoke(7), Xbzrle),
            Send(2, C::ZeroPoke(8), Xbzrle),
        ],
        ..QEMU
    },
    Case {
        name: "overflow: raw, counted, cache refreshed",
        steps: &[
            Pass,
            Pass,
            Send(1, C::Base(1), MISS),
            Pass,
            Send(1, C::Inverse(1), OVERFLOW),
            Cached(1, C::Inverse(1), 3),
            Pass,
            Send(1, C::Base(1), OVERFLOW),
            Send(1, C::Poke(1, 0), Xbzrle),
        ],
        ..QEMU
    },
    Case {
        name: "skip: unchanged hit sends nothing",
        steps: &[
            Pass,
            Pass,
            Send(1, C::Base(1), MISS),
            Send(1, C::Base(1), Skipped),
            Pass,
            Send(1, C::Base(1), Skipped),
            Cached(1, C::Base(1), 3),
        ],
        ..QEMU
    },
    Case {
        name: "resize keeps what fits, the most recently used on a conflict",
        cache_pages: 8,
        steps: &[
            Pass,
            Pass,
            Send(0, C::Base(0), MISS),
            Send(1, C::Base(1), MISS),
            Send(4, C::Base(4), MISS),
            Send(5, C::Base(5), MISS),
            Send(6, C::Base(6), MISS),
            Pass,
            Send(5, C::Base(5), Skipped), // page 5 now newer than page 1
            Resize(5),                    // 4 slots
            Cached(0, C::Base(0), 2),     // tie with page 4: the lower slot stays
            NotCached(4),
            Cached(5, C::Base(5), 3),
            NotCached(1),
            Cached(6, C::Base(6), 2),
            Resize(16),
            Cached(0, C::Base(0), 2),
            Cached(5, C::Base(5), 3),
            Cached(6, C::Base(6), 2),
            Send(4, C::Base(4), MISS), // slot 4 of 16 is free now
            Cached(4, C::Base(4), 3),
            Pass,
            Send(5, C::Poke(5, 1), Xbzrle),
            Resize(1),
            Cached(5, C::Poke(5, 1), 4), // the most recent of all
            NotCached(0),
        ],
        ..QEMU
    },
    Case {
        name: "end_bulk_stage mid-pass: the next page is looked up, a miss, inserted",
        steps: &[
            Pass,
            Send(0, C::Base(1), BULK),
            Send(1, C::Base(2), BULK),
            Is(Bulk, 1),
            Lookups { misses: 0, hits: 0 },
            NotCached(0),
            EndBulk,
            Is(Iterative, 1), // not a dirty sync: same generation
            Send(2, C::Base(3), MISS),
            Lookups { misses: 1, hits: 0 },
            Cached(2, C::Base(3), 1),
            Send(0, C::Base(1), MISS), // sent raw in the bulk stage, not cached then
            Cached(0, C::Base(1), 1),
            Send(2, C::Poke(3, 4), Xbzrle), // a hit in the same pass
            Lookups { misses: 2, hits: 1 },
            Pass,
            Is(Iterative, 2), // the next dirty sync counts one generation as always
            Send(0, C::Poke(1, 2), Xbzrle),
            Cached(0, C::Poke(1, 2), 2),
            Send(1, C::Base(2), MISS),
        ],
        ..QEMU
    },
    Case {
        name: "end_bulk_stage mid-pass: ages of that pass protect through the next one",
        steps: &[
            Pass,
            EndBulk,
            Send(0, C::Base(1), MISS),
            Cached(0, C::Base(1), 1),
            Pass,
            Send(4, C::Base(2), MISS), // page 0 used in the previous generation
            NotCached(4),
            Pass,
            Send(4, C::Base(2), MISS), // idle for 2 generations: evicted
            Cached(4, C::Base(2), 3),
        ],
        ..QEMU
    },
    Case {
        name: "end_bulk_stage is idempotent",
        steps: &[
            Pass,
            EndBulk,
            EndBulk,
            Is(Iterative, 1),
            Send(0, C::Base(1), MISS),
            EndBulk,
            Is(Iterative, 1),
            Send(0, C::Poke(1, 0), Xbzrle),
            Lookups { misses: 1, hits: 1 },
            Pass,
            EndBulk,
            Is(Iterative, 2),
            Send(0, C::Poke(1, 0), Skipped),
            Pass,
            Is(Iterative, 3),
        ],
        ..QEMU
    },
    Case {
        name: "end_bulk_stage before the first pass: no bulk stage at all",
        steps: &[
            EndBulk,
            Is(Iterative, 0),
            Pass,
            Is(Iterative, 1),
            Send(0, C::Base(1), MISS),
            Cached(0, C::Base(1), 1),
            Send(0, C::Poke(1, 8), Xbzrle),
        ],
        ..QEMU
    },
    Case {
        name: "end_bulk_stage has no effect in the last stage",
        steps: &[
            Pass,
            Pass,
            Send(0, C::Base(1), MISS),
            Last,
            EndBulk,
            Is(Stage::Last, 3),
            Send(0, C::Poke(1, 5), Xbzrle),
            NotCached(0),
            Send(1, C::Base(2), MISS),
            NotCached(1),
            EndBulk,
            Pass,
            Is(Stage::Last, 4),
        ],
        ..QEMU
    },
    Case {
        name: "end_bulk_stage has no effect in a last stage entered from the bulk stage",
        steps: &[
            Pass,
            Send(0, C::Base(1), BULK),
            Last,
            Is(Stage::Last, 2),
            EndBulk,
            Is(Stage::Last, 2),
            Send(0, C::Poke(1, 5), MISS),
            NotCached(0),
        ],
        ..QEMU
    },
    Case {
        name: "save_zero_page: the entry becomes zeros once XBZRLE started",
        steps: &[
            Pass,
            SendZero(3), // bulk stage: nothing inserted
            NotCached(3),
            Send(1, C::Base(1), BULK),
            EndBulk,
            SendZero(2), // XBZRLE started mid-pass: inserted as zeros
            Cached(2, C::Zero, 1),
            Send(1, C::Base(1), MISS),
            Pass,
            SendZero(1), // cached copy set to zeros
            Cached(1, C::Zero, 2),
            Lookups { misses: 1, hits: 0 }, // a zero page is no lookup
            Pass,
            Send(1, C::ZeroPoke(7), Xbzrle),
            Send(2, C::ZeroPoke(8), Xbzrle),
            Send(3, C::ZeroPoke(9), MISS),
        ],
        ..QEMU
    },
    Case {
        name: "save_zero_page in the bulk stage refreshes a page admit-always cached",
        cache: SA2,
        admission: Admission::Always,
        steps: &[
            Pass,
            Send(1, C::Base(2), BULK),
            Cached(1, C::Base(2), 1),
            SendZero(1),
            Cached(1, C::Zero, 1),
            SendZero(2), // not cached: the bulk stage inserts no zero page
            NotCached(2),
            Pass,
            Send(1, C::ZeroPoke(5), Xbzrle),
        ],
        ..QEMU
    },
    Case {
        name: "save_zero_page: lifetime protection refuses the zero page too",
        steps: &[
            Pass,
            Pass,
            Send(0, C::Base(1), MISS),
            SendZero(4), // same slot, page 0 protected
            NotCached(4),
            Cached(0, C::Base(1), 2),
            Pass,
            Pass,
            SendZero(4),
            Cached(4, C::Zero, 4),
            NotCached(0),
        ],
        ..QEMU
    },
    Case {
        name: "save_zero_page in the last stage drops the entry and inserts nothing",
        steps: &[
            Pass,
            Pass,
            Send(1, C::Base(1), MISS),
            Last,
            SendZero(1),
            NotCached(1),
            SendZero(2),
            NotCached(2),
            Send(1, C::ZeroPoke(3), MISS),
        ],
        ..QEMU
    },
];

fn run(case: &Case, shards: usize) {
    let sender = Sender::new(
        SenderConfig::default()
            .with_page_size(PAGE)
            .with_cache_bytes(case.cache_pages * PAGE as u64)
            .with_cache(case.cache)
            .with_admission(case.admission)
            .with_shards(shards),
    )
    .unwrap();
    let receiver = Receiver::new(PAGE).unwrap();
    let mut guest = vec![0u8; GUEST_PAGES * PAGE];
    let mut dest = vec![0u8; GUEST_PAGES * PAGE];
    let mut out = vec![0u8; sender.max_record_len()];
    for (i, step) in case.steps.iter().enumerate() {
        let at = format!("{} (shards {shards}), step {i} {step:?}", case.name);
        match *step {
            Pass => sender.start_pass(),
            Last => sender.start_last_stage(),
            Resize(pages) => sender.resize_cache(pages * PAGE as u64).unwrap(),
            Send(page, content, expect) => {
                let data = bytes(content);
                guest[page as usize * PAGE..][..PAGE].copy_from_slice(&data);
                let sent = sender.save_page(page, &data, &mut out).unwrap();
                assert_eq!(sent.action, expect, "{at}");
                if sent.record_len > 0 {
                    receiver
                        .apply_record(&out[..sent.record_len], &mut dest)
                        .unwrap_or_else(|e| panic!("{at}: {e}"));
                }
            }
            Cached(page, content, age) => {
                assert_eq!(
                    sender.cached_page(page),
                    Some((bytes(content), age)),
                    "{at}"
                );
            }
            NotCached(page) => assert_eq!(sender.cached_page(page), None, "{at}"),
            EndBulk => sender.end_bulk_stage(),
            SendZero(page) => {
                guest[page as usize * PAGE..][..PAGE].fill(0);
                let sent = sender.save_zero_page(page, &mut out).unwrap();
                assert_eq!(sent.action, Zero, "{at}");
                receiver
                    .apply_record(&out[..sent.record_len], &mut dest)
                    .unwrap_or_else(|e| panic!("{at}: {e}"));
            }
            Is(stage, generation) => {
                assert_eq!(
                    (sender.stage(), sender.generation()),
                    (stage, generation),
                    "{at}"
                );
                let stats = sender.stats();
                assert_eq!((stats.stage, stats.generation), (stage, generation), "{at}");
            }
            Lookups { misses, hits } => {
                let x = sender.stats().xbzrle_cache;
                assert_eq!((x.cache_miss, x.pages), (misses, hits), "{at}");
            }
        }
    }
    assert_eq!(guest, dest, "{}: receiver differs", case.name);
}

#[test]
fn every_rule() {
    for case in CASES {
        run(case, 1);
    }
}

/// Sharding by page number keeps the direct-mapped layout exactly QEMU's, so the same
/// table holds with 2 shards wherever each shard still has at least one slot.
#[test]
fn every_rule_with_two_shards() {
    for case in CASES
        .iter()
        .filter(|c| c.name.starts_with("lifetime") || c.name.starts_with("a hit"))
    {
        run(case, 2);
    }
}

/// QEMU's defaults with [`PAGE`]-byte pages and a cache of 4 pages.
fn small_config() -> SenderConfig {
    SenderConfig::default()
        .with_page_size(PAGE)
        .with_cache_bytes(4 * PAGE as u64)
}

#[test]
fn statistics_follow_qemu() {
    let sender = Sender::new(small_config()).unwrap();
    let mut out = vec![0u8; sender.max_record_len()];
    let mut send = |page: u64, c: C| sender.save_page(page, &bytes(c), &mut out).unwrap();
    sender.start_pass();
    send(0, C::Base(1)); // bulk raw
    send(1, C::Zero); // zero
    sender.start_pass();
    send(0, C::Base(1)); // miss
    send(2, C::Base(2)); // miss
    sender.start_pass();
    let poke = send(0, C::Poke(1, 10)); // hit, delta
    send(2, C::Base(2)); // hit, skip
    send(3, C::Base(3)); // miss
    send(2, C::Inverse(2)); // hit, overflow
    let s = sender.stats();
    let x = s.xbzrle_cache;
    assert_eq!(poke.action, Xbzrle);
    // zrun 10 (1 byte), nzrun 1 (1 byte), 1 data byte = 3-byte delta, 12-byte record.
    assert_eq!(poke.record_len, 9 + 3 + 3);
    assert_eq!(x.cache_size, 4 * PAGE as u64);
    assert_eq!(x.pages, 3);
    assert_eq!(x.cache_miss, 3);
    assert_eq!(x.overflow, 1);
    assert_eq!(x.bytes, 3 + 3 + PAGE as u64);
    assert_eq!(s.pages_processed, 8);
    assert_eq!(
        (s.zero_pages, s.raw_pages, s.xbzrle_pages, s.skipped_pages),
        (1, 5, 1, 1)
    );
    let raw_record = (9 + PAGE) as u64;
    assert_eq!(s.wire_bytes, 10 + 5 * raw_record + 15);
    // Rates of the last completed period (the second pass: 2 misses out of 2 pages, no hit).
    assert_eq!((x.cache_miss_rate, x.encoding_rate), (1.0, 0.0));
    assert_eq!(sender.estimate_bytes(10), 10 * raw_record);
    sender.start_last_stage();
    let x = sender.stats().xbzrle_cache;
    // Third pass: 1 miss in 4 pages; 3 hits × 64 bytes over 3 + 3 + 64 bytes.
    assert_eq!(x.cache_miss_rate, 0.25);
    assert_eq!(x.encoding_rate, 3.0 * 64.0 / 70.0);
    // 15 + 0 + 73 + 73 wire bytes over 4 pages.
    assert_eq!(sender.estimate_bytes(8), 8 * (15 + 2 * raw_record) / 4);
}

/// `end_bulk_stage` is not a dirty sync: the period in progress goes on, and its rates
/// (computed at the next `start_pass`) cover its bulk pages and its looked-up pages together.
#[test]
fn end_bulk_stage_keeps_the_statistics_period() {
    let sender = Sender::new(small_config()).unwrap();
    let mut out = vec![0u8; sender.max_record_len()];
    let mut send = |page: u64, c: C| sender.save_page(page, &bytes(c), &mut out).unwrap();
    sender.start_pass();
    send(0, C::Base(1)); // bulk raw
    send(1, C::Base(2)); // bulk raw
    sender.end_bulk_stage();
    let before = sender.stats();
    assert_eq!(before.generation, 1);
    assert_eq!(sender.estimate_bytes(1), (9 + PAGE) as u64);
    send(2, C::Base(3)); // miss
    send(0, C::Base(1)); // miss
    send(2, C::Poke(3, 0)); // hit: 1-byte zrun 0, nzrun 1, 1 data byte
    let x = sender.stats().xbzrle_cache;
    // No period has ended yet: the rates are still the initial ones.
    assert_eq!((x.cache_miss, x.pages), (2, 1));
    assert_eq!(
        (x.cache_miss_rate, x.encoding_rate),
        (
            before.xbzrle_cache.cache_miss_rate,
            before.xbzrle_cache.encoding_rate
        )
    );
    sender.start_pass();
    let x = sender.stats().xbzrle_cache;
    // One period of 5 pages: 2 misses; 1 hit × 64 bytes over a 3 + 3-byte payload.
    assert_eq!(x.cache_miss_rate, 2.0 / 5.0);
    assert_eq!(x.encoding_rate, 64.0 / 6.0);
    assert_eq!(sender.generation(), 2);
}

/// Admits only the first page it is asked about.
struct FirstOnly(bool);

impl AdmissionPolicy for FirstOnly {
    fn observe(&mut self, _page: u64, _stage: Stage) {}

    fn admit(&mut self, _page: u64, _stage: Stage) -> bool {
        !std::mem::replace(&mut self.0, true)
    }
}

/// A custom policy may admit during the bulk stage; a cached page sent again in the bulk
/// stage is refreshed even when the policy says no, or a later delta would be wrong.
#[test]
fn bulk_resend_refreshes_a_cached_page_even_when_not_admitted() {
    let sender = Sender::with_admission(small_config(), |_| Box::new(FirstOnly(false))).unwrap();
    let mut out = vec![0u8; sender.max_record_len()];
    let mut send = |c: C| sender.save_page(2, &bytes(c), &mut out).unwrap().action;
    sender.start_pass();
    assert_eq!(send(C::Base(1)), BULK);
    assert_eq!(send(C::Base(2)), BULK);
    assert_eq!(sender.cached_page(2), Some((bytes(C::Base(2)), 1)));
    sender.start_pass();
    assert_eq!(send(C::Base(1)), OVERFLOW);
}
