//! The two operations a QEMU-like caller drives itself, checked against the sender's own
//! behaviour, table by table, for every cache kind and admission policy:
//!
//! * `save_zero_page(page)` (the caller found the page all zero) does exactly what
//!   `save_page(page, zeros)` does: same result, record bytes, statistics, cache contents
//!   and ages, and the same calls into the admission policy; then both senders go on
//!   identically.
//! * `end_bulk_stage` changes nothing once the bulk stage is over or in the last stage, and
//!   calling it several times is the same as calling it once.

mod common;

use std::sync::{Arc, Mutex};

use common::{admissions, cache_kinds};
use xbzrle_policy::wire::{FLAG_ZERO, ZERO_RECORD_LEN};
use xbzrle_policy::{
    Action, Admission, AdmissionPolicy, CacheKind, Receiver, SaveError, Sender, SenderConfig, Stage,
};

const PAGE: usize = 64;
/// The page every situation sends as a zero page.
const P: u64 = 1;
const GUEST_PAGES: usize = 24;

/// A busy page (every byte odd, so never zero), different for every seed.
fn busy(seed: u8) -> Vec<u8> {
    (0..PAGE)
        .map(|i| {
            seed.wrapping_mul(29)
                .wrapping_add((i as u8).wrapping_mul(5))
                | 1
        })
        .collect()
}

/// A zero page with one byte set: a tiny delta against a cached zero page.
fn zero_poke(at: usize) -> Vec<u8> {
    let mut page = vec![0; PAGE];
    page[at] = 0x5a;
    page
}

#[derive(Clone, Copy, Debug)]
enum Pre {
    Pass,
    Last,
    EndBulk,
    /// `save_page(page, busy(seed))`.
    Send(u64, u8),
}

use Pre::*;

struct Situation {
    name: &'static str,
    /// Steps before the zero page, on both senders.
    steps: &'static [Pre],
    /// The stage the zero page is sent in (checks the table itself).
    stage: Stage,
}

/// Pages `P + 4k` share `P`'s direct-mapped slot (4 slots) and its set (2 or 1 sets).
const CONFLICTS: [Pre; 4] = [
    Send(P + 4, 3),
    Send(P + 8, 4),
    Send(P + 12, 5),
    Send(P + 16, 6),
];

const SITUATIONS: &[Situation] = &[
    Situation {
        name: "bulk, before any pass",
        steps: &[],
        stage: Stage::Bulk,
    },
    Situation {
        name: "bulk, nothing sent",
        steps: &[Pass],
        stage: Stage::Bulk,
    },
    Situation {
        name: "bulk, page sent raw before (cached by admit-always)",
        steps: &[Pass, Send(P, 1)],
        stage: Stage::Bulk,
    },
    Situation {
        name: "bulk ended mid-pass, page sent in the bulk part",
        steps: &[Pass, Send(P, 1), EndBulk],
        stage: Stage::Iterative,
    },
    Situation {
        name: "bulk ended mid-pass, page looked up after it",
        steps: &[Pass, EndBulk, Send(P, 1)],
        stage: Stage::Iterative,
    },
    Situation {
        name: "iterative, not cached",
        steps: &[Pass, Pass],
        stage: Stage::Iterative,
    },
    Situation {
        name: "iterative, cached in this generation",
        steps: &[Pass, Pass, Send(P, 1)],
        stage: Stage::Iterative,
    },
    Situation {
        name: "iterative, cached in an earlier generation",
        steps: &[Pass, Pass, Send(P, 1), Pass],
        stage: Stage::Iterative,
    },
    Situation {
        name: "iterative, seen dirty in two passes (frequency admits)",
        steps: &[Pass, Pass, Send(P, 1), Pass, Send(P, 2), Pass],
        stage: Stage::Iterative,
    },
    Situation {
        name: "iterative, slot or set held by protected pages",
        steps: &[
            Pass,
            Pass,
            CONFLICTS[0],
            CONFLICTS[1],
            CONFLICTS[2],
            CONFLICTS[3],
        ],
        stage: Stage::Iterative,
    },
    Situation {
        name: "iterative, slot or set held by idle pages",
        steps: &[
            Pass,
            Pass,
            CONFLICTS[0],
            CONFLICTS[1],
            CONFLICTS[2],
            CONFLICTS[3],
            Pass,
            Pass,
        ],
        stage: Stage::Iterative,
    },
    Situation {
        name: "last, cached",
        steps: &[Pass, Pass, Send(P, 1), Last],
        stage: Stage::Last,
    },
    Situation {
        name: "last, not cached",
        steps: &[Pass, Pass, Last],
        stage: Stage::Last,
    },
    Situation {
        name: "last, entered from the bulk stage",
        steps: &[Pass, Send(P, 1), Last],
        stage: Stage::Last,
    },
];

/// A call the sender made into its admission policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Observe(u64, Stage),
    Admit(u64, Stage, bool),
}

/// A built-in policy that logs every call made to it.
struct Recorder {
    inner: Box<dyn AdmissionPolicy>,
    log: Arc<Mutex<Vec<Call>>>,
}

impl AdmissionPolicy for Recorder {
    fn observe(&mut self, page: u64, stage: Stage) {
        self.log.lock().unwrap().push(Call::Observe(page, stage));
        self.inner.observe(page, stage);
    }

    fn admit(&mut self, page: u64, stage: Stage) -> bool {
        let admitted = self.inner.admit(page, stage);
        self.log
            .lock()
            .unwrap()
            .push(Call::Admit(page, stage, admitted));
        admitted
    }
}

/// One sender with a receiver following it and the log of its admission calls.
struct Side {
    sender: Sender,
    receiver: Receiver,
    guest: Vec<u8>,
    dest: Vec<u8>,
    out: Vec<u8>,
    log: Arc<Mutex<Vec<Call>>>,
}

impl Side {
    fn new(cache: CacheKind, admission: Admission, shards: usize) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let config = SenderConfig::default()
            .with_page_size(PAGE)
            .with_cache_bytes(4 * PAGE as u64)
            .with_cache(cache)
            .with_admission(admission)
            .with_shards(shards);
        let shared = Arc::clone(&log);
        let sender = Sender::with_admission(config, move |_| {
            Box::new(Recorder {
                inner: admission.build(shards).unwrap(),
                log: Arc::clone(&shared),
            })
        })
        .unwrap();
        let out = vec![0xee; sender.max_record_len()];
        Self {
            sender,
            receiver: Receiver::new(PAGE).unwrap(),
            guest: vec![0; GUEST_PAGES * PAGE],
            dest: vec![0; GUEST_PAGES * PAGE],
            out,
            log,
        }
    }

    /// Sends `data` as page `page` (with `save_zero_page` when `caller_zero`) and applies
    /// the record; returns the result and the record bytes.
    fn send(&mut self, page: u64, data: &[u8], caller_zero: bool) -> (Action, Vec<u8>) {
        self.guest[page as usize * PAGE..][..PAGE].copy_from_slice(data);
        let sent = if caller_zero {
            self.sender.save_zero_page(page, &mut self.out).unwrap()
        } else {
            self.sender.save_page(page, data, &mut self.out).unwrap()
        };
        let record = self.out[..sent.record_len].to_vec();
        if !record.is_empty() {
            self.receiver.apply_record(&record, &mut self.dest).unwrap();
        }
        (sent.action, record)
    }

    fn step(&mut self, step: Pre) -> Option<(Action, Vec<u8>)> {
        match step {
            Pass => self.sender.start_pass(),
            Last => self.sender.start_last_stage(),
            EndBulk => self.sender.end_bulk_stage(),
            Send(page, seed) => return Some(self.send(page, &busy(seed), false)),
        }
        None
    }

    /// Everything observable about the sender: statistics, every cached page with its
    /// age, and the admission calls so far.
    fn state(&self) -> impl PartialEq + std::fmt::Debug {
        let cached: Vec<_> = (0..GUEST_PAGES as u64)
            .map(|p| self.sender.cached_page(p))
            .collect();
        (
            self.sender.stats(),
            cached,
            self.log.lock().unwrap().clone(),
        )
    }
}

/// What both senders do after the zero page: small writes into it (XBZRLE only if its
/// cache entry is zeros), passes, and conflicting pages.
fn after(side: &mut Side) -> Vec<(Action, Vec<u8>)> {
    let mut results = Vec::new();
    results.push(side.send(P, &zero_poke(3), false));
    side.sender.start_pass();
    results.push(side.send(P, &zero_poke(9), false));
    results.push(side.send(P + 4, &busy(7), false));
    side.sender.start_pass();
    results.push(side.send(P, &[0; PAGE], true));
    results.push(side.send(P, &zero_poke(1), false));
    results
}

#[test]
fn save_zero_page_is_save_page_on_a_zero_page() {
    let zero = vec![0u8; PAGE];
    let mut expected_record = vec![FLAG_ZERO];
    expected_record.extend_from_slice(&P.to_be_bytes());
    expected_record.push(0);
    let mut stages_seen = Vec::new();
    for cache in cache_kinds() {
        for admission in admissions() {
            for shards in [1, 2] {
                for situation in SITUATIONS {
                    let at = format!(
                        "{} / {cache:?} / {admission:?} / shards {shards}",
                        situation.name
                    );
                    let mut scans = Side::new(cache, admission, shards);
                    let mut told = Side::new(cache, admission, shards);
                    for &step in situation.steps {
                        assert_eq!(scans.step(step), told.step(step), "{at}: {step:?}");
                    }
                    assert_eq!(scans.sender.stage(), situation.stage, "{at}");
                    assert_eq!(scans.state(), told.state(), "{at}: before");

                    let by_scan = scans.send(P, &zero, false);
                    let by_caller = told.send(P, &zero, true);
                    assert_eq!(by_scan, (Action::Zero, expected_record.clone()), "{at}");
                    assert_eq!(by_caller, by_scan, "{at}");
                    assert_eq!(told.state(), scans.state(), "{at}: after the zero page");
                    stages_seen.push(situation.stage);

                    assert_eq!(after(&mut told), after(&mut scans), "{at}: afterwards");
                    assert_eq!(told.state(), scans.state(), "{at}: at the end");
                    for side in [&scans, &told] {
                        assert!(side.dest == side.guest, "{at}: receiver differs");
                    }
                }
            }
        }
    }
    for stage in [Stage::Bulk, Stage::Iterative, Stage::Last] {
        assert!(stages_seen.contains(&stage));
    }
}

/// The cache effect itself (not only its equality with `save_page`): the entry of `P`
/// right after the zero page, for the default cache.
#[test]
fn send_zero_page_cache_effect() {
    let zeros = Some(vec![0u8; PAGE]);
    // (situation, admission, expected cached copy of P and its age)
    let cases: &[(&str, Admission, Option<u64>)] = &[
        ("bulk, nothing sent", Admission::Always, None),
        (
            "bulk, page sent raw before (cached by admit-always)",
            Admission::Always,
            Some(1),
        ),
        (
            "bulk, page sent raw before (cached by admit-always)",
            Admission::AfterBulk,
            None,
        ),
        (
            "bulk ended mid-pass, page sent in the bulk part",
            Admission::AfterBulk,
            Some(1),
        ),
        ("iterative, not cached", Admission::AfterBulk, Some(2)),
        (
            "iterative, not cached",
            Admission::Frequency {
                min_passes: 2,
                counters: 64,
            },
            None,
        ),
        (
            "iterative, seen dirty in two passes (frequency admits)",
            Admission::Frequency {
                min_passes: 2,
                counters: 64,
            },
            Some(4),
        ),
        (
            "iterative, cached in an earlier generation",
            Admission::AfterBulk,
            Some(3),
        ),
        (
            "iterative, slot or set held by protected pages",
            Admission::AfterBulk,
            None,
        ),
        (
            "iterative, slot or set held by idle pages",
            Admission::AfterBulk,
            Some(4),
        ),
        ("last, cached", Admission::AfterBulk, None),
        ("last, not cached", Admission::Always, None),
    ];
    for &(name, admission, age) in cases {
        let situation = SITUATIONS.iter().find(|s| s.name == name).unwrap();
        let mut side = Side::new(CacheKind::DirectMapped, admission, 1);
        for &step in situation.steps {
            side.step(step);
        }
        let zero_pages = side.sender.stats().zero_pages;
        side.send(P, &[0; PAGE], true);
        let expected = age.map(|age| (zeros.clone().unwrap(), age));
        assert_eq!(
            side.sender.cached_page(P),
            expected,
            "{name} / {admission:?}"
        );
        let stats = side.sender.stats();
        assert_eq!(stats.zero_pages, zero_pages + 1, "{name}");
    }
}

#[test]
fn send_zero_page_errors_change_nothing() {
    let side = Side::new(CacheKind::DirectMapped, Admission::AfterBulk, 1);
    side.sender.start_pass();
    side.sender.start_pass();
    let before = side.state();
    let mut out = [0xee; ZERO_RECORD_LEN];
    assert_eq!(
        side.sender
            .save_zero_page(P, &mut out[..ZERO_RECORD_LEN - 1]),
        Err(SaveError::OutputTooSmall {
            len: ZERO_RECORD_LEN - 1,
            needed: ZERO_RECORD_LEN
        })
    );
    assert_eq!(
        side.sender.save_zero_page(P, &mut []),
        Err(SaveError::OutputTooSmall {
            len: 0,
            needed: ZERO_RECORD_LEN
        })
    );
    assert_eq!(out, [0xee; ZERO_RECORD_LEN]);
    assert_eq!(side.state(), before);
    // Exactly the record's length is enough; no byte past it is written.
    let mut out = [0xee; ZERO_RECORD_LEN + 4];
    let sent = side
        .sender
        .save_zero_page(P, &mut out[..ZERO_RECORD_LEN])
        .unwrap();
    assert_eq!(
        (sent.action, sent.record_len),
        (Action::Zero, ZERO_RECORD_LEN)
    );
    assert_eq!(out[ZERO_RECORD_LEN..], [0xee; 4]);
    assert_eq!(side.sender.cached_page(P), Some((vec![0; PAGE], 2)));
}

/// A fixed workload: misses, hits, a skip, an overflow, zero pages of both kinds, passes.
fn workload(side: &mut Side) -> Vec<(Action, Vec<u8>)> {
    let mut results = Vec::new();
    for round in 0..3u8 {
        for page in 0..6u64 {
            let data = match (page + u64::from(round)) % 4 {
                0 => busy(page as u8),
                1 => {
                    let mut p = busy(page as u8);
                    p[usize::from(round) * 7] ^= 0x40;
                    p
                }
                2 => vec![0; PAGE],
                _ => busy(page as u8).iter().map(|b| !b).collect(),
            };
            let caller_zero = data.iter().all(|&b| b == 0) && page % 2 == 0;
            results.push(side.send(page, &data, caller_zero));
        }
        side.sender.start_pass();
    }
    results
}

/// Points after which `end_bulk_stage` must change nothing.
const NO_EFFECT: &[(&str, &[Pre])] = &[
    ("after the second pass", &[Pass, Send(0, 1), Pass]),
    (
        "after the second pass, pages cached",
        &[Pass, Pass, Send(0, 1), Send(1, 2), Pass],
    ),
    (
        "after it was already called",
        &[Pass, Send(0, 1), EndBulk, Send(2, 3)],
    ),
    ("in the last stage", &[Pass, Pass, Send(0, 1), Last]),
    (
        "in a last stage entered from the bulk stage",
        &[Pass, Send(0, 1), Last],
    ),
];

#[test]
fn end_bulk_stage_has_no_effect_after_the_bulk_stage_or_in_the_last_stage() {
    for cache in cache_kinds() {
        for admission in admissions() {
            for &(name, steps) in NO_EFFECT {
                let at = format!("{name} / {cache:?} / {admission:?}");
                let mut plain = Side::new(cache, admission, 1);
                let mut ended = Side::new(cache, admission, 1);
                for &step in steps {
                    assert_eq!(plain.step(step), ended.step(step), "{at}");
                }
                let stage = plain.sender.stage();
                assert_ne!(stage, Stage::Bulk, "{at}");
                ended.sender.end_bulk_stage();
                ended.sender.end_bulk_stage();
                assert_eq!(ended.sender.stage(), stage, "{at}");
                assert_eq!(ended.state(), plain.state(), "{at}");
                assert_eq!(workload(&mut ended), workload(&mut plain), "{at}");
                assert_eq!(ended.state(), plain.state(), "{at}");
                assert!(ended.dest == ended.guest, "{at}: receiver differs");
            }
        }
    }
}

#[test]
fn end_bulk_stage_twice_is_once() {
    for cache in cache_kinds() {
        for admission in admissions() {
            for split in 0..4u64 {
                let at = format!("{cache:?} / {admission:?} / after {split} pages");
                let mut once = Side::new(cache, admission, 2);
                let mut thrice = Side::new(cache, admission, 2);
                for side in [&mut once, &mut thrice] {
                    side.sender.start_pass();
                    for page in 0..split {
                        side.send(page, &busy(page as u8), false);
                    }
                }
                once.sender.end_bulk_stage();
                for _ in 0..3 {
                    thrice.sender.end_bulk_stage();
                }
                assert_eq!(once.sender.stage(), Stage::Iterative, "{at}");
                assert_eq!(workload(&mut thrice), workload(&mut once), "{at}");
                thrice.sender.end_bulk_stage();
                assert_eq!(thrice.state(), once.state(), "{at}");
                assert!(thrice.dest == thrice.guest, "{at}: receiver differs");
            }
        }
    }
}
