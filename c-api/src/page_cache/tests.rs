//! The page cache through its C entry points, against a model of QEMU 7.2's
//! `migration/page_cache.c` rules: on synthetic traces and on a trace recorded from QEMU's own
//! page cache during a real migration (`tests/data/qemu-page-cache-trace.txt`).

use std::{ptr, slice};

use super::*;

const PAGE: usize = 4096;

/// QEMU 7.2's page cache as a model, written from its rules, not from its code: `n` slots
/// (a power of two), the slot of an address is (address / page size) mod n; a slot holds an
/// address, an age and, once first written, page data. A lookup hits when the slot holds
/// the address (an empty slot holds UINT64_MAX) and then takes the current age; an insert
/// is refused when the slot has data for another address whose age + 2 exceeds the current
/// age (in wrapping u64 arithmetic, as in C), and otherwise overwrites the slot.
struct QemuModel {
    slots: Vec<ModelSlot>,
}

#[derive(Clone)]
struct ModelSlot {
    addr: u64,
    age: u64,
    data: Option<Vec<u8>>,
}

impl QemuModel {
    fn new(cache_bytes: u64) -> Self {
        let n = (cache_bytes / PAGE as u64) as usize;
        assert!(n.is_power_of_two(), "QEMU 7.2 accepts only powers of two");
        let empty = ModelSlot {
            addr: u64::MAX,
            age: 0,
            data: None,
        };
        Self {
            slots: vec![empty; n],
        }
    }

    fn slot(&mut self, addr: u64) -> &mut ModelSlot {
        let n = self.slots.len() as u64;
        &mut self.slots[((addr / PAGE as u64) & (n - 1)) as usize]
    }

    fn is_cached(&mut self, addr: u64, age: u64) -> bool {
        let slot = self.slot(addr);
        let hit = slot.addr == addr;
        if hit {
            slot.age = age;
        }
        hit
    }

    /// QEMU's `get_cached_data`: the slot's data, whichever address it holds.
    fn data(&mut self, addr: u64) -> Option<&mut Vec<u8>> {
        self.slot(addr).data.as_mut()
    }

    fn insert(&mut self, addr: u64, page: &[u8], age: u64) -> i32 {
        let slot = self.slot(addr);
        if slot.data.is_some() && slot.addr != addr && slot.age.wrapping_add(2) > age {
            return -1;
        }
        slot.data = Some(page.to_vec());
        slot.addr = addr;
        slot.age = age;
        0
    }
}

/// The C object, driven through its entry points.
struct Cache(*mut xbzrle_page_cache);

impl Cache {
    fn new(kind: xbzrle_cache_kind, bytes: u64) -> Self {
        let mut config = std::mem::MaybeUninit::uninit();
        // SAFETY: a valid out-pointer.
        let status = unsafe { xbzrle_page_cache_config_default(config.as_mut_ptr()) };
        assert_eq!(status, XBZRLE_OK);
        // SAFETY: initialised by the call above.
        let mut config = unsafe { config.assume_init() };
        config.cache_bytes = bytes;
        config.cache_kind = kind as u32;
        let mut cache = ptr::null_mut();
        // SAFETY: valid pointers.
        let status = unsafe { xbzrle_page_cache_new(&config, &mut cache) };
        assert_eq!(status, XBZRLE_OK);
        Self(cache)
    }

    fn is_cached(&self, addr: u64, age: u64) -> bool {
        let mut cached = -1;
        // SAFETY: a live handle and a valid out-pointer.
        let status = unsafe { xbzrle_page_cache_is_cached(self.0, addr, age, &mut cached) };
        assert_eq!(status, XBZRLE_OK);
        assert!(cached == 0 || cached == 1);
        cached == 1
    }

    /// The cached copy, borrowed from the cache.
    fn get(&mut self, addr: u64) -> Option<&mut [u8]> {
        let mut data = ptr::null_mut();
        // SAFETY: a live handle and a valid out-pointer.
        let status = unsafe { xbzrle_page_cache_get(self.0, addr, &mut data) };
        assert_eq!(status, XBZRLE_OK);
        // SAFETY: a non-null copy is one page, valid until the entry is replaced; the
        // tests drop the borrow before the next call.
        (!data.is_null()).then(|| unsafe { slice::from_raw_parts_mut(data, PAGE) })
    }

    /// QEMU's return value: 0 stored, -1 refused.
    fn insert(&mut self, addr: u64, page: &[u8], age: u64) -> i32 {
        let mut copy = ptr::null_mut();
        // SAFETY: a live handle, a page of `page.len()` bytes, a valid out-pointer.
        let status = unsafe {
            xbzrle_page_cache_insert(self.0, addr, page.as_ptr(), page.len(), age, &mut copy)
        };
        assert_eq!(status, XBZRLE_OK);
        if copy.is_null() {
            -1
        } else {
            assert_eq!(Some(copy), self.get(addr).map(|d| d.as_mut_ptr()));
            0
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once.
        unsafe { xbzrle_page_cache_free(self.0) };
    }
}

/// One call QEMU's `ram.c` makes, with QEMU's result where recorded.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// `cache_is_cached(addr, age)`; on a hit `ram.c` encodes against the copy and, unless
    /// in the last stage, refreshes it through `get_cached_data`.
    Lookup { addr: u64, age: u64 },
    /// `cache_insert(addr, page, age)`: a miss or a zero page.
    Insert { addr: u64, age: u64 },
}

/// Replays `calls` on the model and the direct-mapped C object, page contents included
/// (each insert and refresh writes a fresh pattern); `recorded` holds QEMU's own results
/// (1/0 for lookups, 0/-1 for inserts) when the trace comes from QEMU. Returns the
/// number of (hits, refused inserts).
fn replay(cache_bytes: u64, calls: &[Call], recorded: Option<&[i32]>) -> (usize, usize) {
    let mut model = QemuModel::new(cache_bytes);
    let mut cache = Cache::new(xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED, cache_bytes);
    let (mut hits, mut refused) = (0, 0);
    for (i, call) in calls.iter().enumerate() {
        let content = vec![(i % 251) as u8 + 1; PAGE];
        let (ours, theirs) = match *call {
            Call::Lookup { addr, age } => {
                let (ours, theirs) = (cache.is_cached(addr, age), model.is_cached(addr, age));
                if ours && theirs {
                    hits += 1;
                    let copy = cache.get(addr).expect("a hit has a copy");
                    let expected = model.data(addr).expect("a hit has data");
                    assert_eq!(copy, &expected[..], "call {i}: copies differ");
                    copy.copy_from_slice(&content);
                    expected.copy_from_slice(&content);
                }
                (i32::from(ours), i32::from(theirs))
            }
            Call::Insert { addr, age } => {
                let (ours, theirs) = (
                    cache.insert(addr, &content, age),
                    model.insert(addr, &content, age),
                );
                if ours == 0 && theirs == 0 {
                    assert_eq!(cache.get(addr).as_deref(), Some(&content[..]));
                }
                refused += usize::from(theirs != 0);
                (ours, theirs)
            }
        };
        assert_eq!(ours, theirs, "call {i} ({call:?}): object vs model");
        if let Some(recorded) = recorded {
            assert_eq!(theirs, recorded[i], "call {i} ({call:?}): model vs QEMU");
        }
    }
    (hits, refused)
}

/// Deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What `ram.c` does for a dirty page after the bulk stage, over a small address space that
/// collides often in a cache of 8 slots, with the age advancing now and then.
fn synthetic_calls(seed: u64, len: usize) -> Vec<Call> {
    let mut rng = Rng(seed);
    let mut age = 1;
    let mut calls = Vec::with_capacity(len);
    while calls.len() < len {
        if rng.below(10) == 0 {
            age += 1 + rng.below(3);
        }
        let addr = rng.below(40) * PAGE as u64;
        if rng.below(8) == 0 {
            calls.push(Call::Insert { addr, age }); // a zero page
        } else {
            calls.push(Call::Lookup { addr, age });
            // After a miss QEMU inserts; after a hit this overwrites the same page.
            calls.push(Call::Insert { addr, age });
        }
    }
    calls
}

#[test]
fn direct_mapped_takes_qemus_decisions_on_synthetic_traces() {
    for seed in 1..=20 {
        let calls = synthetic_calls(0x9e37_79b9_7f4a_7c15 ^ seed, 4000);
        let (hits, refused) = replay(8 * PAGE as u64, &calls, None);
        // The traces exercise every rule.
        assert!(
            hits > 100 && refused > 100,
            "seed {seed}: {hits} hits, {refused} refusals"
        );
    }
}

/// Parses the recorded trace: `a AGE` sets the age, `c PAGE R` is a lookup of page number
/// PAGE (hex) with QEMU's result R (1/0), `i PAGE R` an insert with result R (0/-1); `#`
/// starts a comment, `s BYTES` gives the cache size.
fn recorded_trace() -> (u64, Vec<Call>, Vec<i32>) {
    let text = include_str!("../../tests/data/qemu-page-cache-trace.txt");
    let (mut size, mut age) = (None, 0);
    let (mut calls, mut results) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            ["s", bytes] => size = Some(bytes.parse().expect("cache size")),
            ["a", value] => age = value.parse().expect("age"),
            [op @ ("c" | "i"), page, result] => {
                let addr = u64::from_str_radix(page, 16).expect("hex page") * PAGE as u64;
                calls.push(if op == "c" {
                    Call::Lookup { addr, age }
                } else {
                    Call::Insert { addr, age }
                });
                results.push(result.parse().expect("result"));
            }
            _ => panic!("bad trace line {line:?}"),
        }
    }
    (size.expect("an `s` line"), calls, results)
}

#[test]
fn direct_mapped_takes_qemus_decisions_on_a_trace_recorded_from_qemu() {
    let (size, calls, results) = recorded_trace();
    let (hits, refused) = replay(size, &calls, Some(&results));
    assert!(
        calls.len() > 10_000 && hits > 1000 && refused > 100,
        "{} calls, {hits} hits, {refused} refusals",
        calls.len()
    );
}

#[test]
fn set_associative_keeps_pages_that_collide_in_the_direct_mapped_cache() {
    // Pages 0 and 8 share a slot of an 8-slot direct-mapped cache; both are used in every
    // generation, so QEMU's rule keeps refusing the second.
    let mut direct = Cache::new(
        xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED,
        8 * PAGE as u64,
    );
    let mut assoc = Cache::new(
        xbzrle_cache_kind::XBZRLE_CACHE_SET_ASSOCIATIVE,
        8 * PAGE as u64,
    );
    let page = vec![7; PAGE];
    let (a, b) = (0, 8 * PAGE as u64);
    for (cache, expect_b) in [(&mut direct, -1), (&mut assoc, 0)] {
        assert_eq!(cache.insert(a, &page, 1), 0);
        for age in 1..5 {
            assert!(cache.is_cached(a, age));
            if !cache.is_cached(b, age) {
                assert_eq!(cache.insert(b, &page, age), expect_b, "age {age}");
            }
        }
    }
    assert!(assoc.is_cached(b, 5) && !direct.is_cached(b, 5));
}

#[test]
fn arguments_are_checked() {
    let cache = Cache::new(
        xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED,
        8 * PAGE as u64,
    );
    let page = [0u8; PAGE];
    let (mut out, mut flag) = (ptr::null_mut(), 0);
    let unaligned = |addr| {
        let mut flag = 0;
        // SAFETY: a live handle and a valid out-pointer.
        unsafe { xbzrle_page_cache_is_cached(cache.0, addr, 0, &mut flag) }
    };
    assert_eq!(unaligned(1), XBZRLE_ERR_INVALID_ARGUMENT);
    assert_eq!(unaligned(PAGE as u64 + 8), XBZRLE_ERR_INVALID_ARGUMENT);
    // SAFETY: a live handle and a valid out-pointer.
    let get = unsafe { xbzrle_page_cache_get(cache.0, PAGE as u64 + 1, &mut out) };
    assert_eq!(get, XBZRLE_ERR_INVALID_ARGUMENT);
    // SAFETY: a live handle, a readable page, a valid out-pointer.
    let short =
        unsafe { xbzrle_page_cache_insert(cache.0, 0, page.as_ptr(), PAGE - 1, 0, &mut out) };
    assert_eq!(short, XBZRLE_ERR_INVALID_ARGUMENT);
    // SAFETY: NULL handle, valid out-pointer.
    let null_cache = unsafe { xbzrle_page_cache_is_cached(ptr::null_mut(), 0, 0, &mut flag) };
    assert_eq!(null_cache, XBZRLE_ERR_NULL);
    // SAFETY: a live handle, NULL out-pointer.
    let null_flag = unsafe { xbzrle_page_cache_is_cached(cache.0, 0, 0, ptr::null_mut()) };
    assert_eq!(null_flag, XBZRLE_ERR_NULL);
    // SAFETY: a live handle, NULL out-pointer.
    let null_data = unsafe { xbzrle_page_cache_get(cache.0, 0, ptr::null_mut()) };
    assert_eq!(null_data, XBZRLE_ERR_NULL);
    // SAFETY: a live handle, NULL page, a valid out-pointer.
    let null_page = unsafe { xbzrle_page_cache_insert(cache.0, 0, ptr::null(), PAGE, 0, &mut out) };
    assert_eq!(null_page, XBZRLE_ERR_NULL);
}

#[test]
fn a_caught_panic_poisons_the_cache() {
    let cache = Cache::new(
        xbzrle_cache_kind::XBZRLE_CACHE_DIRECT_MAPPED,
        8 * PAGE as u64,
    );
    // SAFETY: a live handle.
    let status = unsafe { with_cache(cache.0, |_| panic!("injected")) };
    assert_eq!(status, XBZRLE_ERR_PANIC);
    let mut flag = 0;
    // SAFETY: a live handle and a valid out-pointer.
    let after = unsafe { xbzrle_page_cache_is_cached(cache.0, 0, 0, &mut flag) };
    assert_eq!(after, XBZRLE_ERR_POISONED);
}
