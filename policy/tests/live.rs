//! The sender on guest memory that changes while it is read, deterministically (no
//! threads, no timing): a test double of guest memory ([`ChangingPage`]) is written by the
//! "guest" between any two reads. Under every cache kind, admission policy and stage:
//!
//! * every byte of the page is read exactly once per send;
//! * the end state is the one a single consistent read would give: a second sender, fed
//!   the values the first one's reads returned as a plain slice, writes byte-identical
//!   records and ends with the same statistics;
//! * after every record the destination page holds exactly the values that were read, and
//!   the cached copy (if any) equals the destination;
//! * once the guest stops, the last stage leaves the destination equal to the source.

mod common;

use common::{ChangingPage, GuestWrites, admissions, cache_kinds};
use xbzrle_policy::{Action, Admission, CacheKind, RawReason, Receiver, Sender, SenderConfig};
use xbzrle_workloads::SplitMix64;

const PAGE: usize = 320;
const PAGES: u64 = 24;

/// The guest's own writes between two sends of a page (the usual dirtying).
fn dirty(page: &mut [u8], rng: &mut SplitMix64) {
    match rng.below(8) {
        0 => page.fill(0),
        1 => rng.fill(page),
        _ => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(PAGE as u64) as usize;
                page[i] = page[i].wrapping_add(1 + rng.below(3) as u8);
            }
        }
    }
}

/// One migration; returns what the sender decided, page after page.
fn scenario(cache: CacheKind, admission: Admission, shards: usize, seed: u64) -> Vec<Action> {
    let config = SenderConfig::default()
        .with_page_size(PAGE)
        .with_cache_bytes(8 * PAGE as u64)
        .with_cache(cache)
        .with_admission(admission)
        .with_shards(shards);
    let context = format!("{cache:?} {admission:?} shards={shards} seed={seed}");
    let live = Sender::new(config.clone()).expect("valid config");
    let consistent = Sender::new(config).expect("valid config");
    let receiver = Receiver::new(PAGE).expect("valid page size");
    let mut rng = SplitMix64::new(seed);
    let mut memory: Vec<Vec<u8>> = (0..PAGES)
        .map(|p| {
            let mut page = vec![0; PAGE];
            if p % 5 != 0 {
                rng.fill(&mut page);
            }
            page
        })
        .collect();
    // The receiver's RAM: page `p` at `p * PAGE`.
    let mut destination = vec![0xEE; PAGES as usize * PAGE];
    let (mut out, mut out_consistent) = (
        vec![0; live.max_record_len()],
        vec![0; consistent.max_record_len()],
    );
    let mut actions = Vec::new();
    for pass in 0..10 {
        let last = pass == 9;
        if last {
            live.start_last_stage();
            consistent.start_last_stage();
        } else {
            live.start_pass();
            consistent.start_pass();
        }
        if pass == 0 && seed.is_multiple_of(3) {
            live.end_bulk_stage();
            consistent.end_bulk_stage();
        }
        for p in 0..PAGES {
            let memory = &mut memory[p as usize];
            if !last {
                if pass > 0 && rng.below(3) == 0 {
                    continue; // not dirty this pass
                }
                dirty(memory, &mut rng);
            }
            let writes = match (last, rng.below(3)) {
                (true, _) | (false, 0) => GuestWrites::None,
                (false, 1) => GuestWrites::Scatter,
                (false, _) => GuestWrites::Rewrite,
            };
            let page = ChangingPage::new(memory, writes, rng.next_u64());
            let sent = live.save_page(p, &page, &mut out).expect("valid send");
            let log = page.finish();
            let step = format!("{context} pass={pass} page={p} {writes:?}: {sent:?}");
            if let Some((i, n)) = log.not_read_once() {
                panic!("{step}: byte {i} read {n} times");
            }
            let returned = log.into_returned();
            let expected = consistent
                .save_page(p, &returned[..], &mut out_consistent)
                .expect("valid send");
            assert_eq!(sent, expected, "{step}");
            assert!(
                out[..sent.record_len] == out_consistent[..sent.record_len],
                "{step}"
            );
            actions.push(sent.action);
            if sent.record_len > 0 {
                receiver
                    .apply_record(&out[..sent.record_len], &mut destination)
                    .unwrap_or_else(|e| panic!("{step}: {e}"));
            }
            let dest = &destination[p as usize * PAGE..][..PAGE];
            assert!(dest == returned, "{step}: destination is not what was read");
            if let Some((cached, _)) = live.cached_page(p) {
                assert!(cached == dest, "{step}: cache and destination disagree");
            }
        }
    }
    assert!(
        memory.concat() == destination,
        "{context}: destination after the last stage"
    );
    assert_eq!(live.stats(), consistent.stats(), "{context}");
    actions
}

#[test]
fn a_page_written_during_the_read_is_read_once_and_sent_as_read() {
    for cache in cache_kinds() {
        for admission in admissions() {
            let mut actions = Vec::new();
            for shards in [1, 2] {
                for seed in 0..6 {
                    actions.extend(scenario(cache, admission, shards, seed));
                }
            }
            // Every path was taken.
            for action in [
                Action::Zero,
                Action::Xbzrle,
                Action::Skipped,
                Action::Raw(RawReason::Bulk),
                Action::Raw(RawReason::Miss),
                Action::Raw(RawReason::Overflow),
            ] {
                assert!(
                    actions.contains(&action),
                    "{cache:?} {admission:?}: never {action:?}"
                );
            }
        }
    }
}
