//! Page caches on their own: memory bound, lazy allocation, resize, replacement details.

use proptest::prelude::*;
use xbzrle_policy::{CacheKind, DirectMappedCache, PageCache, Replacement, SetAssociativeCache};

const PAGE: usize = 32;

fn page(fill: u8) -> Vec<u8> {
    vec![fill; PAGE]
}

fn all_kinds() -> Vec<CacheKind> {
    let mut kinds = vec![CacheKind::DirectMapped];
    for ways in [1, 2, 3, 8] {
        for replacement in [
            Replacement::Lru,
            Replacement::Lifetime,
            Replacement::Frequency,
        ] {
            kinds.push(CacheKind::SetAssociative { ways, replacement });
        }
    }
    kinds
}

#[test]
fn allocation_is_lazy_and_single() {
    for kind in all_kinds() {
        let mut cache = kind.build(PAGE, 100 * PAGE as u64 + 7).unwrap();
        assert_eq!(cache.allocated_bytes(), 0, "{kind:?}");
        assert!(cache.insert(5, &page(1), 0));
        // One allocation of every slot at once, never above the budget.
        assert_eq!(cache.allocated_bytes(), cache.capacity() * PAGE, "{kind:?}");
        assert!(cache.allocated_bytes() <= 100 * PAGE + 7);
        assert!(
            cache.capacity() >= 50,
            "{kind:?}: capacity {}",
            cache.capacity()
        );
    }
}

#[test]
fn direct_mapped_uses_a_power_of_two_of_slots() {
    for (pages, slots) in [(1, 1), (3, 2), (4, 4), (100, 64), (1023, 512), (1024, 1024)] {
        let cache = DirectMappedCache::new(PAGE, pages * PAGE as u64 + PAGE as u64 - 1).unwrap();
        assert_eq!(cache.capacity(), slots, "{pages} pages");
    }
    // Below one page: nothing fits, nothing is ever cached.
    let mut cache = DirectMappedCache::new(PAGE, PAGE as u64 - 1).unwrap();
    assert!(!cache.insert(0, &page(1), 0));
    assert_eq!((cache.capacity(), cache.allocated_bytes()), (0, 0));
}

#[test]
fn set_associative_layout() {
    let cache =
        SetAssociativeCache::new(PAGE, 100 * PAGE as u64, 8, Replacement::Frequency).unwrap();
    // 100 pages / 8 ways = 12 sets, rounded down to 8.
    assert_eq!((cache.sets(), cache.ways(), cache.capacity()), (8, 8, 64));
    let tiny = SetAssociativeCache::new(PAGE, 3 * PAGE as u64, 8, Replacement::Lru).unwrap();
    assert_eq!((tiny.sets(), tiny.ways()), (1, 3));
}

#[test]
fn lru_evicts_least_recent_and_ignores_lifetime() {
    let mut c = SetAssociativeCache::new(PAGE, 2 * PAGE as u64, 2, Replacement::Lru).unwrap();
    assert!(c.insert(1, &page(1), 5));
    assert!(c.insert(2, &page(2), 5));
    assert!(c.hit(1, 5).is_some());
    assert!(c.insert(3, &page(3), 5)); // evicts 2, used this generation
    assert_eq!(
        (c.get(1), c.get(2), c.get(3)),
        (Some(&page(1)[..]), None, Some(&page(3)[..]))
    );
}

#[test]
fn frequency_evicts_the_least_hit_unprotected_entry() {
    let mut c = SetAssociativeCache::new(PAGE, 3 * PAGE as u64, 3, Replacement::Frequency).unwrap();
    for p in 1..=3 {
        assert!(c.insert(p, &page(p as u8), 0));
    }
    // Page 1 is hit in generations 1..=3, page 3 once in 3, page 2 never.
    for g in 1..=3 {
        assert!(c.hit(1, g).is_some());
    }
    assert!(c.hit(3, 3).is_some());
    // Generation 4: pages 1 and 3 protected; 2 (idle since 0) goes.
    assert!(c.insert(4, &page(4), 4));
    assert_eq!(c.get(2), None);
    // Generation 6: nothing is protected. Scores: page 1 has 3 hits halved for 2 idle
    // generations (4 and 5) = 0; page 3: 1 >> 2 = 0; page 4: 0 hits. A tie: the least
    // recently used goes, page 1 (its last hit came before page 3's).
    assert!(c.insert(5, &page(5), 6));
    assert_eq!(c.get(1), None);
    assert!(c.get(3).is_some() && c.get(4).is_some());
}

#[test]
fn frequency_prefers_keeping_hot_pages_over_recent_ones() {
    let mut c = SetAssociativeCache::new(PAGE, 2 * PAGE as u64, 2, Replacement::Frequency).unwrap();
    assert!(c.insert(1, &page(1), 0));
    for g in 1..=4 {
        assert!(c.hit(1, g).is_some()); // 4 hits, last in generation 4
    }
    assert!(c.insert(2, &page(2), 4)); // 0 hits, used after page 1
    // Generation 6: both unprotected; page 1 scores 4 >> 1 = 2, page 2 scores 0.
    assert!(c.insert(3, &page(3), 6));
    assert!(c.get(1).is_some() && c.get(2).is_none());
    // LRU would have evicted page 1.
    let mut l = SetAssociativeCache::new(PAGE, 2 * PAGE as u64, 2, Replacement::Lifetime).unwrap();
    assert!(l.insert(1, &page(1), 0));
    for g in 1..=4 {
        assert!(l.hit(1, g).is_some());
    }
    assert!(l.insert(2, &page(2), 4));
    assert!(l.insert(3, &page(3), 6));
    assert!(l.get(1).is_none() && l.get(2).is_some());
}

#[test]
fn set_associative_resize_keeps_the_most_valuable() {
    let mut c = SetAssociativeCache::new(PAGE, 8 * PAGE as u64, 2, Replacement::Lifetime).unwrap();
    for p in 0..8u64 {
        assert!(c.insert(p, &page(p as u8 + 1), 0));
    }
    // 4 sets of 2; touch the odd pages later.
    for p in (1..8u64).step_by(2) {
        assert!(c.hit(p, 1).is_some());
    }
    c.resize(2 * PAGE as u64).unwrap(); // 1 set of 2: the two most recently used odd pages
    assert_eq!(c.len(), 2);
    assert_eq!(c.get(7), Some(&page(8)[..]));
    assert_eq!(c.get(5), Some(&page(6)[..]));
    assert_eq!(c.allocated_bytes(), 2 * PAGE);
    c.resize(16 * PAGE as u64).unwrap();
    assert_eq!((c.sets(), c.ways(), c.len()), (8, 2, 2));
    assert_eq!(c.get(7), Some(&page(8)[..]));
    assert_eq!(c.get(5), Some(&page(6)[..]));
    c.resize(PAGE as u64 / 2).unwrap();
    assert_eq!((c.capacity(), c.len(), c.allocated_bytes()), (0, 0, 0));
    // The requested associativity comes back with the budget.
    c.resize(8 * PAGE as u64).unwrap();
    assert_eq!((c.sets(), c.ways()), (4, 2));
}

#[derive(Clone, Debug)]
enum CacheOp {
    Insert(u64, u8),
    Hit(u64, u8),
    Remove(u64),
    Resize(u64),
    NextGeneration,
}

fn cache_op() -> impl Strategy<Value = CacheOp> {
    prop_oneof![
        4 => (0..64u64, any::<u8>()).prop_map(|(p, f)| CacheOp::Insert(p, f)),
        3 => (0..64u64, any::<u8>()).prop_map(|(p, f)| CacheOp::Hit(p, f)),
        1 => (0..64u64).prop_map(CacheOp::Remove),
        1 => (0..40 * PAGE as u64).prop_map(CacheOp::Resize),
        2 => Just(CacheOp::NextGeneration),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Against a model (page → content): a cached page always holds what was last stored
    /// in it, the page data never exceeds the budget, and `len` counts the entries.
    #[test]
    fn caches_hold_what_was_stored_within_budget(
        bytes in 0..40 * PAGE as u64,
        ops in prop::collection::vec(cache_op(), 1..120),
    ) {
        for kind in all_kinds() {
            let mut cache = kind.build(PAGE, bytes).unwrap();
            let mut budget = bytes;
            let mut model = std::collections::HashMap::new();
            let mut generation = 0;
            for op in &ops {
                match *op {
                    CacheOp::Insert(p, f) => {
                        if cache.insert(p, &page(f), generation) {
                            model.insert(p, f);
                        }
                    }
                    CacheOp::Hit(p, f) => {
                        if let Some(copy) = cache.hit(p, generation) {
                            copy.fill(f);
                            model.insert(p, f);
                            prop_assert_eq!(cache.age(p), Some(generation));
                        }
                    }
                    CacheOp::Remove(p) => {
                        cache.remove(p);
                    }
                    CacheOp::Resize(b) => {
                        cache.resize(b).unwrap();
                        budget = b;
                    }
                    CacheOp::NextGeneration => generation += 1,
                }
                prop_assert!(cache.allocated_bytes() as u64 <= budget);
                prop_assert!(cache.capacity() as u64 * PAGE as u64 <= budget);
                let cached: Vec<u64> = (0..64).filter(|&p| cache.get(p).is_some()).collect();
                prop_assert_eq!(cached.len(), cache.len());
                prop_assert!(cache.len() <= cache.capacity());
                for p in cached {
                    prop_assert_eq!(cache.get(p), Some(&page(model[&p])[..]), "{:?} page {}", kind, p);
                }
            }
        }
    }

    /// One way with QEMU's lifetime rule is QEMU's direct-mapped cache.
    #[test]
    fn one_way_lifetime_is_direct_mapped(
        pages in 1..20u64,
        ops in prop::collection::vec(cache_op(), 1..200),
    ) {
        let mut direct = DirectMappedCache::new(PAGE, pages * PAGE as u64).unwrap();
        let mut assoc = SetAssociativeCache::new(PAGE, pages * PAGE as u64, 1, Replacement::Lifetime).unwrap();
        let mut generation = 0;
        for op in &ops {
            match *op {
                CacheOp::Insert(p, f) => prop_assert_eq!(
                    direct.insert(p, &page(f), generation),
                    assoc.insert(p, &page(f), generation)
                ),
                CacheOp::Hit(p, f) => {
                    let (d, a) = (direct.hit(p, generation), assoc.hit(p, generation));
                    prop_assert_eq!(d.is_some(), a.is_some());
                    if let (Some(d), Some(a)) = (d, a) {
                        d.fill(f);
                        a.fill(f);
                    }
                }
                CacheOp::Remove(p) => prop_assert_eq!(direct.remove(p), assoc.remove(p)),
                CacheOp::Resize(_) | CacheOp::NextGeneration => generation += 1,
            }
            for p in 0..64 {
                prop_assert_eq!(direct.get(p), assoc.get(p));
                prop_assert_eq!(direct.age(p), assoc.age(p));
            }
        }
    }
}

#[test]
fn get_mut_writes_the_copy_without_touching_its_age_and_the_copy_stays_put() {
    for kind in all_kinds() {
        let mut c = kind.build(PAGE, 8 * PAGE as u64).unwrap();
        assert!(c.get_mut(1).is_none(), "{kind:?}: nothing cached yet");
        assert!(c.insert(1, &page(1), 3));
        let copy = c.get_mut(1).expect("cached");
        copy.fill(9);
        let address = copy.as_ptr();
        assert_eq!(c.get(1), Some(&page(9)[..]), "{kind:?}");
        assert_eq!(c.age(1), Some(3), "{kind:?}: get_mut is not a use");
        // Other pages come (and may evict each other) while page 1 stays in use: its copy
        // does not move.
        for p in 2..=7 {
            assert!(c.hit(1, 3).is_some(), "{kind:?}: page 1 stays cached");
            c.insert(p, &page(p as u8), 3);
            assert_eq!(c.get_mut(1).map(|d| d.as_ptr()), Some(address), "{kind:?}");
        }
        assert!(c.get_mut(1000).is_none(), "{kind:?}");
    }
}

#[test]
fn set_associative_copies_lie_in_the_order_their_slots_were_first_filled() {
    // 16 sets of 4 ways: neighbouring pages go to neighbouring sets.
    let mut cache = SetAssociativeCache::new(PAGE, 64 * PAGE as u64, 4, Replacement::Lru).unwrap();
    assert_eq!(cache.sets(), 16);
    let address =
        |cache: &SetAssociativeCache, page: u64| cache.get(page).unwrap().as_ptr() as usize;
    // Any order, any sets (two pages of set 5): each copy right after the one cached before.
    let first = [9u64, 10, 5, 21, 40, 3, 63, 4];
    for (i, &p) in first.iter().enumerate() {
        assert!(cache.insert(p, &page(i as u8), 0));
        if i > 0 {
            assert_eq!(
                address(&cache, p),
                address(&cache, first[i - 1]) + PAGE,
                "page {p}"
            );
        }
    }
    // A slot keeps its copy's place: page 26 takes the slot page 10 leaves in set 10, and a
    // page evicted from a full set leaves its place to its successor.
    let of_10 = address(&cache, 10);
    assert!(cache.remove(10));
    assert!(cache.insert(26, &page(26), 0));
    assert_eq!(address(&cache, 26), of_10);
    let of_5 = address(&cache, 5);
    for p in [37, 53] {
        assert!(
            cache.insert(p, &page(p as u8), 0),
            "set 5 has room for page {p}"
        );
    }
    assert!(
        cache.insert(69, &page(69), 0),
        "LRU evicts page 5, the oldest of set 5"
    );
    assert!(cache.get(5).is_none());
    assert_eq!(address(&cache, 69), of_5);
    // Slots filled for the first time continue the sequence.
    assert_eq!(address(&cache, 37), address(&cache, 4) + PAGE);
    assert_eq!(address(&cache, 53), address(&cache, 37) + PAGE);
    for (i, &p) in first
        .iter()
        .enumerate()
        .filter(|&(_, &p)| p != 10 && p != 5)
    {
        assert_eq!(cache.get(p), Some(&page(i as u8)[..]), "page {p}");
    }
}

#[test]
fn slots_of_4k_pages_start_at_page_boundaries() {
    const SIZE: usize = 4096;
    let at_boundary = |cache: &dyn PageCache, page: u64| {
        let copy = cache.get(page).expect("cached");
        (copy.as_ptr() as usize).is_multiple_of(SIZE)
    };
    for kind in all_kinds() {
        let mut cache = kind.build(SIZE, 64 * SIZE as u64).unwrap();
        for page in 0..8 {
            assert!(cache.insert(page, &[page as u8 + 1; SIZE], 0), "{kind:?}");
            assert!(at_boundary(cache.as_ref(), page), "{kind:?}, page {page}");
        }
        // A larger buffer, then a smaller one: the kept copies still start at boundaries.
        for bytes in [256 * SIZE as u64, 32 * SIZE as u64] {
            cache.resize(bytes).unwrap();
            for page in 0..8 {
                if cache.get(page).is_some() {
                    assert!(at_boundary(cache.as_ref(), page), "{kind:?}, page {page}");
                }
            }
        }
    }
}
