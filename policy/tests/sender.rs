//! Sender contract: errors, configuration checks, large pages, threads.

mod common;

use common::cache_kinds;
use xbzrle_policy::{
    Action, Admission, AdmissionPolicy, CacheKind, ConfigError, RawReason, Receiver, Replacement,
    SaveError, Sender, SenderConfig, Stage,
};

fn small(page_size: usize, pages: u64) -> SenderConfig {
    SenderConfig::default()
        .with_page_size(page_size)
        .with_cache_bytes(pages * page_size as u64)
}

#[test]
fn sender_and_receiver_are_thread_safe_types() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Sender>();
    send_sync::<Receiver>();
}

#[test]
fn defaults_are_qemus() {
    let c = SenderConfig::default();
    assert_eq!((c.page_size, c.cache_bytes, c.shards), (4096, 64 << 20, 1));
    assert_eq!(
        (c.cache, c.admission),
        (CacheKind::DirectMapped, Admission::AfterBulk)
    );
    let sender = Sender::new(c).unwrap();
    assert_eq!((sender.stage(), sender.generation()), (Stage::Bulk, 0));
    let s = sender.stats();
    assert_eq!((s.cache_capacity, s.cache_allocated_bytes), (16384, 0));
    assert_eq!(s.xbzrle_cache.cache_size, 64 << 20);
}

#[test]
fn stages_follow_dirty_syncs() {
    let sender = Sender::new(small(64, 4)).unwrap();
    let mut seen = vec![(sender.stage(), sender.generation())];
    for _ in 0..3 {
        sender.start_pass();
        seen.push((sender.stage(), sender.generation()));
    }
    sender.start_last_stage();
    seen.push((sender.stage(), sender.generation()));
    sender.start_pass();
    seen.push((sender.stage(), sender.generation()));
    use Stage::*;
    let expected = [
        (Bulk, 0),
        (Bulk, 1),
        (Iterative, 2),
        (Iterative, 3),
        (Last, 4),
        (Last, 5),
    ];
    assert_eq!(seen, expected);
}

/// `end_bulk_stage` moves from the bulk to the iterative stage without a dirty sync, and
/// changes nothing anywhere else.
#[test]
fn end_bulk_stage_switches_the_stage_only() {
    use Stage::*;
    // (dirty syncs before, then `end_bulk_stage`: stage and generation after it)
    let cases = [
        (&[][..], (Iterative, 0)),
        (&[false][..], (Iterative, 1)),
        (&[false, false][..], (Iterative, 2)),
        (&[false, true][..], (Last, 2)),
        (&[true][..], (Last, 1)),
        (&[false, false, true, false][..], (Last, 4)),
    ];
    for (syncs, expected) in cases {
        let sender = Sender::new(small(64, 4)).unwrap();
        for &last in syncs {
            if last {
                sender.start_last_stage();
            } else {
                sender.start_pass();
            }
        }
        for _ in 0..3 {
            sender.end_bulk_stage();
            assert_eq!((sender.stage(), sender.generation()), expected, "{syncs:?}");
        }
        // Later dirty syncs count generations as always.
        sender.start_pass();
        let after = if expected.0 == Last { Last } else { Iterative };
        assert_eq!(
            (sender.stage(), sender.generation()),
            (after, expected.1 + 1),
            "{syncs:?}"
        );
    }
}

#[test]
fn bad_configurations_are_rejected() {
    let base = small(64, 4);
    let cases = [
        (base.clone().with_page_size(0), ConfigError::PageSize(0)),
        (
            base.clone().with_cache_bytes(63),
            ConfigError::CacheBytes {
                cache_bytes: 63,
                page_size: 64,
            },
        ),
        (base.clone().with_shards(3), ConfigError::Shards(3)),
        (base.clone().with_shards(0), ConfigError::Shards(0)),
        (
            base.clone().with_cache(CacheKind::SetAssociative {
                ways: 0,
                replacement: Replacement::Lru,
            }),
            ConfigError::Ways(0),
        ),
        (
            base.clone().with_admission(Admission::Frequency {
                min_passes: 0,
                counters: 8,
            }),
            ConfigError::Frequency {
                min_passes: 0,
                counters: 8,
            },
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(Sender::new(config).err(), Some(expected));
    }
    let sender = Sender::new(base).unwrap();
    assert_eq!(
        sender.resize_cache(10),
        Err(ConfigError::CacheBytes {
            cache_bytes: 10,
            page_size: 64
        })
    );
    assert_eq!(sender.stats().xbzrle_cache.cache_size, 256);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let sender = Sender::new(small(64, 4)).unwrap();
    let mut out = vec![0u8; sender.max_record_len()];
    assert_eq!(sender.max_record_len(), 9 + 3 + 64);
    assert_eq!(
        sender.save_page(0, &[1; 63], &mut out),
        Err(SaveError::WrongPageSize {
            len: 63,
            page_size: 64
        })
    );
    assert_eq!(
        sender.save_page(0, &[1; 64], &mut out[..75]),
        Err(SaveError::OutputTooSmall {
            len: 75,
            needed: 76
        })
    );
    assert_eq!(
        sender.save_zero_page(0, &mut out[..9]),
        Err(SaveError::OutputTooSmall { len: 9, needed: 10 })
    );
    assert_eq!(sender.stats().pages_processed, 0);
    assert!(sender.save_zero_page(0, &mut out[..10]).is_ok());
}

struct Panics;

impl AdmissionPolicy for Panics {
    fn observe(&mut self, page: u64, _stage: Stage) {
        assert!(page != 1, "policy failure");
    }

    fn admit(&mut self, _page: u64, _stage: Stage) -> bool {
        true
    }
}

#[test]
fn a_panic_inside_a_shard_poisons_only_that_shard() {
    let config = small(64, 4).with_shards(2);
    let sender = Sender::with_admission(config, |_| Box::new(Panics)).unwrap();
    let mut out = vec![0u8; sender.max_record_len()];
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = sender.save_page(1, &[1; 64], &mut [0; 76]);
    }));
    assert!(caught.is_err());
    assert_eq!(
        sender.save_page(3, &[1; 64], &mut out),
        Err(SaveError::Poisoned)
    );
    assert_eq!(sender.save_zero_page(3, &mut out), Err(SaveError::Poisoned));
    assert!(sender.save_page(2, &[1; 64], &mut out).is_ok());
    assert!(sender.save_zero_page(2, &mut out).is_ok());
    sender.end_bulk_stage(); // touches no shard: fine with a poisoned one
    assert_eq!(sender.stage(), Stage::Iterative);
}

/// Pages above 65535 bytes: a delta longer than a u16 length goes raw.
#[test]
fn large_pages_cap_the_delta_at_u16() {
    const BIG: usize = 70_000;
    let sender = Sender::new(small(BIG, 2)).unwrap();
    let receiver = Receiver::new(BIG).unwrap();
    assert_eq!(sender.max_record_len(), 9 + BIG);
    let mut out = vec![0u8; sender.max_record_len()];
    let mut page = vec![1u8; BIG];
    let mut dest = vec![0u8; BIG];
    let mut send = |page: &[u8], dest: &mut [u8]| {
        let sent = sender.save_page(0, page, &mut out).unwrap();
        if sent.record_len > 0 {
            receiver
                .apply_record(&out[..sent.record_len], dest)
                .unwrap();
        }
        sent.action
    };
    sender.start_pass();
    sender.start_pass();
    assert_eq!(send(&page, &mut dest), Action::Raw(RawReason::Miss));
    page[BIG - 1] = 2;
    assert_eq!(send(&page, &mut dest), Action::Xbzrle);
    // Every other byte changes: the delta is 2 + 35000 * 2 bytes long at least.
    for b in page.iter_mut().step_by(2) {
        *b = 9;
    }
    assert_eq!(send(&page, &mut dest), Action::Raw(RawReason::Overflow));
    assert_eq!(dest, page);
}

/// Several channels at once: each thread owns the pages `p mod threads`, the shards are
/// shared between threads, the cache is small enough to evict all the time.
#[test]
fn several_threads_keep_the_receiver_identical() {
    const PAGE: usize = 64;
    const PAGES: usize = 256;
    const THREADS: usize = 4;
    for cache in cache_kinds() {
        let sender = Sender::new(
            SenderConfig::default()
                .with_page_size(PAGE)
                .with_cache_bytes(40 * PAGE as u64)
                .with_cache(cache)
                .with_admission(Admission::AfterBulk)
                .with_shards(2),
        )
        .unwrap();
        let receiver = Receiver::new(PAGE).unwrap();
        let mut guest: Vec<u8> = (0..PAGES * PAGE).map(|i| (i % 251) as u8).collect();
        let mut dest = vec![0u8; PAGES * PAGE];
        for pass in 0..10usize {
            // The guest writes a few bytes in a moving window of pages; the bulk pass
            // sends everything, later passes the window.
            let mut dirty = vec![pass == 0; PAGES];
            for p in (pass * 7..pass * 7 + 120).map(|p| p % PAGES) {
                dirty[p] = true;
                guest[p * PAGE + (p + pass) % PAGE] ^= (pass as u8) | 1;
                if p % 17 == 0 {
                    guest[p * PAGE..][..PAGE].fill(0);
                }
            }
            if pass == 5 {
                sender.resize_cache(20 * PAGE as u64).unwrap();
            }
            if pass == 9 {
                sender.start_last_stage();
            } else {
                sender.start_pass();
            }
            let (guest, sender, dirty) = (&guest, &sender, &dirty);
            let records: Vec<Vec<u8>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|t| {
                        s.spawn(move || {
                            let mut out = vec![0u8; sender.max_record_len()];
                            let mut records = Vec::new();
                            for p in (t..PAGES).step_by(THREADS).filter(|&p| dirty[p]) {
                                let data = &guest[p * PAGE..][..PAGE];
                                let sent = sender.save_page(p as u64, data, &mut out).unwrap();
                                records.extend_from_slice(&out[..sent.record_len]);
                            }
                            records
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for stream in records {
                let mut at = 0;
                while at < stream.len() {
                    at += receiver
                        .apply_record(&stream[at..], &mut dest)
                        .unwrap()
                        .consumed;
                }
            }
            assert!(sender.cache_allocated_bytes() <= 40 * PAGE);
        }
        assert!(guest == dest, "{cache:?}");
        let s = sender.stats();
        assert_eq!(s.pages_processed, (PAGES + 9 * 120) as u64);
        assert!(s.xbzrle_pages > 0 && s.xbzrle_cache.cache_miss > 0, "{s:?}");
        assert!(s.cache_allocated_bytes <= 20 * PAGE);
    }
}
