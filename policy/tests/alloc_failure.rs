//! What happens when the allocator refuses memory at run time, simulated by a global
//! allocator that fails large requests on the thread that asks it to (the testkit's
//! `LimitedAllocator`).

use xbzrle_policy::{
    Action, Admission, CacheKind, ConfigError, PageCache, RawReason, Receiver, Replacement, Sender,
    SenderConfig,
};
use xbzrle_testkit::limited_alloc::{LimitedAllocator, with_limit};

#[global_allocator]
static ALLOCATOR: LimitedAllocator = LimitedAllocator;

const PAGE: usize = 4096;
/// 64 pages: the page data is one 256 KiB allocation, the metadata 2 KiB at most.
const CACHE: u64 = 64 * PAGE as u64;
const REFUSE_PAGE_DATA: usize = 128 * 1024;

/// A direct-mapped and a set-associative cache (with its frequency counters) whose ways
/// divide [`CACHE`] exactly, so the expected sizes are `CACHE` (not the shared
/// `cache_kinds()`, whose 3-way cache rounds the size down).
fn kinds() -> [CacheKind; 2] {
    [
        CacheKind::DirectMapped,
        CacheKind::SetAssociative {
            ways: 4,
            replacement: Replacement::Frequency,
        },
    ]
}

#[test]
fn construction_and_resize_report_out_of_memory() {
    for cache in kinds() {
        let config = SenderConfig::default()
            .with_page_size(PAGE)
            .with_cache_bytes(CACHE)
            .with_cache(cache);
        // The page data is reserved (and released) at construction: refused → error.
        let err = with_limit(REFUSE_PAGE_DATA, || Sender::new(config.clone())).unwrap_err();
        assert_eq!(err, ConfigError::OutOfMemory { bytes: CACHE });
        let err = with_limit(1024, || cache.build(PAGE, CACHE).map(drop)).unwrap_err();
        assert!(matches!(err, ConfigError::OutOfMemory { .. }), "{err:?}");
        // Frequency counters.
        let frequency = config.clone().with_admission(Admission::Frequency {
            min_passes: 2,
            counters: 1 << 20,
        });
        let err = with_limit(1 << 19, || Sender::new(frequency)).unwrap_err();
        assert_eq!(err, ConfigError::OutOfMemory { bytes: 1 << 20 });

        // Resize: growing an allocated cache needs a new buffer; refused → unchanged.
        let sender = Sender::new(config).unwrap();
        sender.start_pass();
        sender.start_pass();
        let mut out = vec![0; sender.max_record_len()];
        sender.save_page(3, &[9; PAGE], &mut out).unwrap();
        assert!(sender.cached_page(3).is_some());
        let err = with_limit(CACHE as usize + 1, || sender.resize_cache(4 * CACHE)).unwrap_err();
        assert!(matches!(err, ConfigError::OutOfMemory { .. }), "{err:?}");
        let stats = sender.stats();
        assert_eq!(stats.xbzrle_cache.cache_size, CACHE);
        assert_eq!(stats.cache_allocated_bytes, CACHE as usize);
        assert_eq!(sender.cached_page(3).unwrap().0, vec![9; PAGE]);
        sender.resize_cache(4 * CACHE).unwrap();
        assert_eq!(sender.cached_page(3).unwrap().0, vec![9; PAGE]);
    }
}

/// The page data is allocated at the first insertion. If the allocator refuses it then,
/// the page is simply not cached and goes raw (QEMU's `cache_insert` behaves the same when
/// `g_try_malloc` fails); the receiver stays identical, and a later insertion retries.
#[test]
fn a_refused_lazy_allocation_sends_the_page_raw() {
    for cache in kinds() {
        let sender = Sender::new(
            SenderConfig::default()
                .with_page_size(PAGE)
                .with_cache_bytes(CACHE)
                .with_cache(cache),
        )
        .unwrap();
        let receiver = Receiver::new(PAGE).unwrap();
        let mut guest = vec![1u8; 8 * PAGE];
        let mut dest = vec![0u8; 8 * PAGE];
        let mut out = vec![0; sender.max_record_len()];
        let mut send = |guest: &[u8], dest: &mut [u8], page: usize| {
            let sent = sender
                .save_page(page as u64, &guest[page * PAGE..][..PAGE], &mut out)
                .unwrap();
            if sent.record_len > 0 {
                receiver
                    .apply_record(&out[..sent.record_len], dest)
                    .unwrap();
            }
            sent.action
        };
        for p in 0..8 {
            assert_eq!(send(&guest, &mut dest, p), Action::Raw(RawReason::Bulk));
        }
        sender.start_pass();
        sender.start_pass();
        guest[2 * PAGE] = 7;
        let action = with_limit(REFUSE_PAGE_DATA, || send(&guest, &mut dest, 2));
        assert_eq!(action, Action::Raw(RawReason::Miss));
        assert_eq!(sender.cache_allocated_bytes(), 0, "{cache:?}");
        assert!(sender.cached_page(2).is_none());
        // Zero pages cannot be cached either; still sent correctly.
        guest[5 * PAGE..6 * PAGE].fill(0);
        assert_eq!(
            with_limit(REFUSE_PAGE_DATA, || send(&guest, &mut dest, 5)),
            Action::Zero
        );
        assert!(sender.cached_page(5).is_none());
        // Memory is back: the next miss inserts, the next change goes as XBZRLE.
        guest[2 * PAGE + 1] = 8;
        assert_eq!(send(&guest, &mut dest, 2), Action::Raw(RawReason::Miss));
        assert_eq!(sender.cache_allocated_bytes(), CACHE as usize);
        guest[2 * PAGE + 2] = 9;
        assert_eq!(send(&guest, &mut dest, 2), Action::Xbzrle);
        assert_eq!(guest, dest, "{cache:?}");
    }
}

#[test]
fn a_refused_lazy_allocation_fails_the_insertion_only() {
    for cache in kinds() {
        let mut c: Box<dyn PageCache> = cache.build(PAGE, CACHE).unwrap();
        assert!(!with_limit(REFUSE_PAGE_DATA, || c.insert(1, &[3; PAGE], 0)));
        assert_eq!((c.len(), c.allocated_bytes()), (0, 0));
        assert!(c.get(1).is_none() && c.hit(1, 0).is_none());
        assert!(c.insert(1, &[3; PAGE], 0));
        assert_eq!(c.get(1), Some(&[3; PAGE][..]));
    }
}
