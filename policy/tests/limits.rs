//! Sizes no allocator can provide or no address can hold: every constructor and resize
//! returns an error instead of aborting the process (an allocation failure is an abort in
//! Rust, not a panic) or panicking, and nothing is committed up front.

use xbzrle_policy::{
    Admission, CacheKind, ConfigError, DirectMappedCache, Frequency, MAX_SHARDS, PageCache,
    Receiver, Replacement, Sender, SenderConfig, SetAssociativeCache,
};

/// Far beyond any address space (x86-64 and AArch64 user space is at most 2^57 bytes).
const HUGE: u64 = 1 << 60;

/// One cache of each organisation, with extreme way counts (`usize::MAX` ways must be an
/// error, not an overflow): not the shared `cache_kinds()`, which are sized for small caches.
fn kinds() -> [CacheKind; 3] {
    [
        CacheKind::DirectMapped,
        CacheKind::SetAssociative {
            ways: 8,
            replacement: Replacement::Frequency,
        },
        CacheKind::SetAssociative {
            ways: usize::MAX,
            replacement: Replacement::Lru,
        },
    ]
}

fn config(cache: CacheKind, cache_bytes: u64) -> SenderConfig {
    SenderConfig::default()
        .with_cache(cache)
        .with_cache_bytes(cache_bytes)
}

fn is_out_of_memory<T>(result: Result<T, ConfigError>) -> bool {
    matches!(result, Err(ConfigError::OutOfMemory { .. }))
}

#[test]
fn huge_cache_bytes_is_an_error() {
    for cache in kinds() {
        for shards in [1, 4] {
            for bytes in [HUGE, isize::MAX as u64] {
                let c = config(cache, bytes).with_shards(shards);
                assert_eq!(c.validate(), Ok(()), "{c:?}");
                let result = Sender::new(c.clone());
                assert!(is_out_of_memory(result), "{c:?}");
            }
        }
        // Above isize::MAX no allocation can be made: not representable.
        for bytes in [isize::MAX as u64 + 1, u64::MAX] {
            assert_eq!(
                Sender::new(config(cache, bytes)).unwrap_err(),
                ConfigError::CacheBytes {
                    cache_bytes: bytes,
                    page_size: 4096
                }
            );
        }
    }
}

#[test]
fn huge_shard_counts_are_rejected() {
    for shards in [MAX_SHARDS * 2, 1 << 40, 1 << (usize::BITS - 1)] {
        let c = SenderConfig::default().with_shards(shards);
        assert_eq!(Sender::new(c).unwrap_err(), ConfigError::Shards(shards));
    }
    // The largest shard count is fine (here every shard is below one page: nothing cached).
    let sender = Sender::new(SenderConfig::default().with_shards(MAX_SHARDS)).unwrap();
    assert_eq!(sender.shards(), MAX_SHARDS);
}

#[test]
fn huge_admission_counters_are_an_error() {
    let with = |counters| {
        SenderConfig::default().with_admission(Admission::Frequency {
            min_passes: 2,
            counters,
        })
    };
    for counters in [1 << 60, isize::MAX as usize] {
        assert!(is_out_of_memory(Sender::new(with(counters))), "{counters}");
        assert!(is_out_of_memory(Frequency::new(2, counters)), "{counters}");
        assert!(is_out_of_memory(
            Admission::Frequency {
                min_passes: 2,
                counters
            }
            .build(1)
        ));
    }
    for counters in [isize::MAX as usize + 1, usize::MAX] {
        assert_eq!(
            Sender::new(with(counters)).unwrap_err(),
            ConfigError::Frequency {
                min_passes: 2,
                counters
            }
        );
        // The policy on its own cannot allocate that many either.
        assert!(is_out_of_memory(Frequency::new(2, counters)), "{counters}");
    }
    // A sane size is a zeroed allocation, usable at once.
    let f = Frequency::new(2, 1 << 20).unwrap();
    assert_eq!(f.count(12345), 0);
}

#[test]
fn huge_page_sizes_are_an_error() {
    for page_size in [u32::MAX as usize + 1, usize::MAX, 0] {
        let c = SenderConfig::default()
            .with_page_size(page_size)
            .with_cache_bytes(u64::from(u32::MAX) * 4);
        assert_eq!(
            Sender::new(c).unwrap_err(),
            ConfigError::PageSize(page_size)
        );
        assert_eq!(
            Receiver::new(page_size).unwrap_err(),
            ConfigError::PageSize(page_size)
        );
        assert_eq!(
            DirectMappedCache::new(page_size, 1 << 20).unwrap_err(),
            ConfigError::PageSize(page_size)
        );
        assert_eq!(
            SetAssociativeCache::new(page_size, 1 << 20, 4, Replacement::Lru).unwrap_err(),
            ConfigError::PageSize(page_size)
        );
    }
    // The largest page size: the receiver allocates nothing.
    let receiver = Receiver::new(u32::MAX as usize).unwrap();
    assert_eq!(receiver.page_size(), u32::MAX as usize);
    // 4 GiB pages with a budget no machine has: refused, not aborted.
    for cache in kinds() {
        let c = config(cache, HUGE).with_page_size(u32::MAX as usize);
        assert!(is_out_of_memory(Sender::new(c)), "{cache:?}");
    }
    // One 4 GiB page: the page data is only reserved and released, never committed (the
    // allocator may still refuse even that on a small machine).
    match Sender::new(
        config(CacheKind::DirectMapped, u64::from(u32::MAX)).with_page_size(u32::MAX as usize),
    ) {
        Ok(sender) => {
            assert_eq!(sender.stats().cache_capacity, 1);
            assert_eq!(sender.cache_allocated_bytes(), 0);
        }
        Err(e) => assert!(matches!(e, ConfigError::OutOfMemory { .. }), "{e:?}"),
    }
}

#[test]
fn caches_report_errors_instead_of_panicking() {
    assert_eq!(
        SetAssociativeCache::new(4096, 1 << 20, 0, Replacement::Lru).unwrap_err(),
        ConfigError::Ways(0)
    );
    for bytes in [HUGE, isize::MAX as u64, u64::MAX] {
        assert!(is_out_of_memory(DirectMappedCache::new(4096, bytes)));
        assert!(is_out_of_memory(DirectMappedCache::new(1, bytes)));
        for cache in kinds() {
            assert!(is_out_of_memory(cache.build(4096, bytes)), "{cache:?}");
        }
    }
}

/// A sender with pages 0..8 cached (page `p` filled with `p + 1`), past the bulk stage.
fn warm_sender(cache: CacheKind, shards: usize) -> Sender {
    let sender = Sender::new(
        SenderConfig::default()
            .with_page_size(64)
            .with_cache_bytes(64 * 64)
            .with_cache(cache)
            .with_shards(shards),
    )
    .unwrap();
    sender.start_pass();
    sender.start_pass();
    let mut out = vec![0; sender.max_record_len()];
    for p in 0..8u64 {
        sender.save_page(p, &[p as u8 + 1; 64], &mut out).unwrap();
    }
    sender
}

#[test]
fn resize_to_huge_is_an_error_and_changes_nothing() {
    for cache in kinds() {
        for shards in [1, 2] {
            for allocated in [false, true] {
                let sender = if allocated {
                    warm_sender(cache, shards)
                } else {
                    Sender::new(
                        SenderConfig::default()
                            .with_page_size(64)
                            .with_cache_bytes(64 * 64)
                            .with_cache(cache)
                            .with_shards(shards),
                    )
                    .unwrap()
                };
                let before = sender.stats();
                let pages: Vec<_> = (0..8).map(|p| sender.cached_page(p)).collect();
                for bytes in [HUGE, isize::MAX as u64] {
                    assert!(
                        is_out_of_memory(sender.resize_cache(bytes)),
                        "{cache:?} {shards} {allocated}"
                    );
                }
                for bytes in [isize::MAX as u64 + 1, u64::MAX] {
                    assert_eq!(
                        sender.resize_cache(bytes),
                        Err(ConfigError::CacheBytes {
                            cache_bytes: bytes,
                            page_size: 64
                        })
                    );
                }
                let after = sender.stats();
                assert_eq!(after.xbzrle_cache.cache_size, 64 * 64);
                assert_eq!(
                    (
                        after.cache_pages,
                        after.cache_capacity,
                        after.cache_allocated_bytes
                    ),
                    (
                        before.cache_pages,
                        before.cache_capacity,
                        before.cache_allocated_bytes
                    )
                );
                let still: Vec<_> = (0..8).map(|p| sender.cached_page(p)).collect();
                assert_eq!(pages, still);
                // And the sender keeps working: a resize that fits succeeds.
                sender.resize_cache(128 * 64).unwrap();
                assert_eq!(sender.stats().xbzrle_cache.cache_size, 128 * 64);
            }
        }
    }
}

#[test]
fn cache_resize_to_huge_leaves_the_cache_as_it_was() {
    for cache in kinds() {
        let mut c = cache.build(64, 16 * 64).unwrap();
        for p in 0..16u64 {
            c.insert(p, &[p as u8; 64], 0);
        }
        let snapshot = |c: &dyn PageCache| {
            (
                c.configured_bytes(),
                c.capacity(),
                c.len(),
                c.allocated_bytes(),
                (0..16u64)
                    .map(|p| c.get(p).map(<[u8]>::to_vec))
                    .collect::<Vec<_>>(),
            )
        };
        let before = snapshot(&*c);
        for bytes in [HUGE, isize::MAX as u64, u64::MAX] {
            assert!(is_out_of_memory(c.resize(bytes)), "{cache:?}");
            assert_eq!(snapshot(&*c), before, "{cache:?}");
        }
    }
}

#[test]
fn creation_commits_no_page_data() {
    // QEMU's default 64 MiB cache: metadata only until the first insertion.
    let sender = Sender::new(SenderConfig::default()).unwrap();
    assert_eq!(sender.cache_allocated_bytes(), 0);
    // Growing an empty cache still allocates nothing.
    sender.resize_cache(1 << 30).unwrap();
    assert_eq!(sender.cache_allocated_bytes(), 0);
    assert_eq!(sender.stats().cache_capacity, 1 << 18);
}

#[test]
fn growing_an_allocated_cache_keeps_its_pages_within_the_budget() {
    for cache in kinds() {
        let mut c = cache.build(64, 16 * 64).unwrap();
        for p in 0..16u64 {
            c.insert(p, &[p as u8 + 1; 64], 0);
        }
        let kept: Vec<_> = (0..16u64).filter(|&p| c.get(p).is_some()).collect();
        c.resize(1024 * 64).unwrap();
        assert_eq!(c.allocated_bytes(), c.capacity() * 64, "{cache:?}");
        assert!(c.allocated_bytes() <= 1024 * 64);
        for p in kept {
            assert_eq!(c.get(p), Some(&[p as u8 + 1; 64][..]), "{cache:?} page {p}");
        }
    }
}
