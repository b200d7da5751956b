//! `Sender::save_pages` saves a batch exactly as `save_page` one page after the other (same
//! records, statistics and cache), stops when the sink says so, and stops at the first error
//! with the pages before it saved.

mod common;

use std::ops::ControlFlow;

use common::{admissions, cache_kinds};
use xbzrle_policy::{SaveError, Sender, SenderConfig};
use xbzrle_workloads::SplitMix64;

const PAGE: usize = 256;
const PAGES: u64 = 40;

fn config(
    cache: xbzrle_policy::CacheKind,
    admission: xbzrle_policy::Admission,
    shards: usize,
) -> SenderConfig {
    SenderConfig::default()
        .with_page_size(PAGE)
        .with_cache_bytes(12 * PAGE as u64)
        .with_cache(cache)
        .with_admission(admission)
        .with_shards(shards)
}

#[test]
fn a_batch_saves_what_single_saves_save() {
    for cache in cache_kinds() {
        for admission in admissions() {
            for shards in [1, 4] {
                let (batch, single) = (
                    Sender::new(config(cache, admission, shards)).unwrap(),
                    Sender::new(config(cache, admission, shards)).unwrap(),
                );
                let mut rng = SplitMix64::new(shards as u64);
                let mut ram = vec![0u8; PAGES as usize * PAGE];
                rng.fill(&mut ram);
                let (mut out, mut single_out) =
                    (vec![0; batch.max_record_len()], vec![0; PAGE + 16]);
                for pass in 0..6 {
                    for _ in 0..30 {
                        let at = rng.below(ram.len() as u64) as usize;
                        ram[at] = ram[at].wrapping_add(1);
                    }
                    ram[3 * PAGE..4 * PAGE].fill(0);
                    batch.start_pass();
                    single.start_pass();
                    let dirty: Vec<u64> = (0..PAGES).filter(|p| (p + pass) % 3 != 0).collect();
                    let pages = dirty
                        .iter()
                        .map(|&p| (p, &ram[p as usize * PAGE..][..PAGE]));
                    let mut expected = dirty.iter();
                    let saved = batch.save_pages(pages, &mut out, |page, sent, record| {
                        let &want = expected.next().expect("no more pages than given");
                        assert_eq!(page, want);
                        let single_sent = single
                            .save_page(page, &ram[page as usize * PAGE..][..PAGE], &mut single_out)
                            .unwrap();
                        assert_eq!(sent, single_sent, "{cache:?} {admission:?} page {page}");
                        assert_eq!(record, &single_out[..single_sent.record_len]);
                        ControlFlow::Continue(())
                    });
                    assert_eq!(saved, Ok(dirty.len()));
                }
                assert_eq!(batch.stats(), single.stats(), "{cache:?} {admission:?}");
                for p in 0..PAGES {
                    assert_eq!(batch.cached_page(p), single.cached_page(p), "page {p}");
                }
            }
        }
    }
}

#[test]
fn the_sink_stops_a_batch() {
    let sender = Sender::new(
        SenderConfig::default()
            .with_page_size(PAGE)
            .with_cache_bytes(8 * PAGE as u64),
    )
    .unwrap();
    let ram = vec![7u8; PAGES as usize * PAGE];
    let mut out = vec![0; sender.max_record_len()];
    sender.start_pass();
    let pages = (0..PAGES).map(|p| (p, &ram[p as usize * PAGE..][..PAGE]));
    let mut seen = 0;
    let saved = sender.save_pages(pages, &mut out, |_, _, _| {
        seen += 1;
        if seen == 5 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(saved, Ok(5));
    assert_eq!(sender.stats().pages_processed, 5);
}

#[test]
fn a_batch_stops_at_the_first_bad_page() {
    let sender = Sender::new(
        SenderConfig::default()
            .with_page_size(PAGE)
            .with_cache_bytes(8 * PAGE as u64),
    )
    .unwrap();
    let ram = vec![7u8; 4 * PAGE];
    let mut out = vec![0; sender.max_record_len()];
    sender.start_pass();
    let pages = [
        (0, &ram[..PAGE]),
        (1, &ram[PAGE..2 * PAGE]),
        (2, &ram[2 * PAGE..2 * PAGE + 9]),
        (3, &ram[3 * PAGE..]),
    ];
    let mut seen = Vec::new();
    let saved = sender.save_pages(pages, &mut out, |page, _, _| {
        seen.push(page);
        ControlFlow::Continue(())
    });
    assert_eq!(
        saved,
        Err(SaveError::WrongPageSize {
            len: 9,
            page_size: PAGE
        })
    );
    assert_eq!(seen, [0, 1]);
    assert_eq!(sender.stats().pages_processed, 2);
}
