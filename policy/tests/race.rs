//! The sender on guest memory that other threads write while it is read, with real
//! threads: "vCPU" threads keep writing the pages (single bytes, whole half-page rewrites
//! that overflow, zeroed pages) while migration threads save them straight from guest
//! memory through [`LivePage`], and each record is applied to the destination at once.
//! Small caches (misses, evictions), every cache kind and admission policy, one shard with
//! one saving thread and two shards with two. After every record the cached copy must
//! equal the destination, and once the writers stop, the last stage must leave the
//! destination equal to the source, in every run.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::{admissions, cache_kinds};
use xbzrle::LivePage;
use xbzrle_policy::{Admission, CacheKind, Receiver, Sender, SenderConfig};
use xbzrle_workloads::SplitMix64;

const PAGE: usize = 4096;
const PAGES: usize = 32;
const PASSES: usize = 12;

/// Guest RAM that threads write through raw pointers, as vCPUs do (never through a Rust
/// reference while shared).
struct GuestRam {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the memory is only accessed through raw pointers, with volatile writes by the
// writers and `LivePage` reads by the savers: the concurrent access the sender is built for.
unsafe impl Sync for GuestRam {}

impl GuestRam {
    /// The `LivePage` of page `p`.
    fn page(&self, p: usize) -> LivePage<'_> {
        assert!(p < PAGES);
        // SAFETY: page `p` lies inside the allocation, which outlives `self`; other threads
        // write it only through raw pointers.
        unsafe { LivePage::from_raw_parts(self.ptr.wrapping_add(p * PAGE), PAGE) }
    }

    /// A vCPU's write of `byte` at offset `at` of the RAM.
    fn write(&self, at: usize, byte: u8) {
        assert!(at < self.len);
        // SAFETY: `at` is inside the allocation; the write goes through the raw pointer.
        unsafe { self.ptr.wrapping_add(at).write_volatile(byte) };
    }
}

/// One vCPU: writes until `stop`, mostly single bytes, sometimes half a page of random
/// bytes (a delta that overflows), sometimes zeros over a whole page.
fn vcpu(ram: &GuestRam, stop: &AtomicBool, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    while !stop.load(Ordering::Relaxed) {
        let page = rng.below(PAGES as u64) as usize * PAGE;
        match rng.below(64) {
            0 => {
                for at in page..page + PAGE / 2 {
                    ram.write(at, rng.next_u64() as u8);
                }
            }
            1 => {
                for at in page..page + PAGE {
                    ram.write(at, 0);
                }
            }
            _ => {
                let at = page + rng.below(PAGE as u64) as usize;
                ram.write(at, rng.next_u64() as u8);
            }
        }
    }
}

/// A migration channel: saves the pages `p` with `p % channels == channel`, pass after
/// pass, applying each record to its own copy of those destination pages at once; then,
/// once `stopped` says the writers are done, the last stage. Returns the destination pages.
fn channel(
    sender: &Sender,
    ram: &GuestRam,
    channel: usize,
    channels: usize,
    context: &str,
) -> Vec<(usize, Vec<u8>)> {
    let receiver = Receiver::new(PAGE).expect("valid page size");
    let mine: Vec<usize> = (channel..PAGES).step_by(channels).collect();
    let mut destination = vec![0u8; PAGES * PAGE];
    let mut out = vec![0; sender.max_record_len()];
    let mut save = |p: usize, step: &str| {
        let sent = sender
            .save_page(p as u64, &ram.page(p), &mut out)
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        if sent.record_len > 0 {
            receiver
                .apply_record(&out[..sent.record_len], &mut destination)
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        if let Some((cached, _)) = sender.cached_page(p as u64) {
            assert!(
                cached == destination[p * PAGE..][..PAGE],
                "{step}: {sent:?} left cache and destination apart"
            );
        }
    };
    for pass in 0..PASSES {
        for &p in &mine {
            save(
                p,
                &format!("{context} channel {channel} pass {pass} page {p}"),
            );
        }
        // Every channel's passes are separated by dirty syncs made by channel 0 (the
        // sender tolerates a sync that overlaps saves).
        if channel == 0 {
            sender.start_pass();
        }
    }
    mine.iter()
        .map(|&p| (p, destination[p * PAGE..][..PAGE].to_vec()))
        .collect()
}

fn migrate(cache: CacheKind, admission: Admission, shards: usize, seed: u64) {
    let context = format!("{cache:?} {admission:?} shards={shards} seed={seed}");
    let sender = Sender::new(
        SenderConfig::default()
            .with_page_size(PAGE)
            .with_cache_bytes(12 * PAGE as u64)
            .with_cache(cache)
            .with_admission(admission)
            .with_shards(shards),
    )
    .expect("valid config");
    let mut memory = vec![0u8; PAGES * PAGE];
    SplitMix64::new(seed).fill(&mut memory);
    let ram = GuestRam {
        ptr: memory.as_mut_ptr(),
        len: memory.len(),
    };
    let stop = AtomicBool::new(false);
    sender.start_pass();
    let live_pages = thread::scope(|s| {
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (ram, stop) = (&ram, &stop);
                s.spawn(move || vcpu(ram, stop, seed ^ (w + 1)))
            })
            .collect();
        let channels: Vec<_> = (0..shards)
            .map(|c| {
                let (sender, ram, context) = (&sender, &ram, &context);
                s.spawn(move || channel(sender, ram, c, shards, context))
            })
            .collect();
        // Joined before the writers are stopped and their failures raised after, so that a
        // failing channel does not leave the writers running forever.
        let pages: Vec<_> = channels.into_iter().map(|c| c.join()).collect();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().expect("writer thread");
        }
        pages
            .into_iter()
            .flat_map(|pages| pages.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect::<Vec<_>>()
    });
    // The guest is stopped: the last stage resends every page.
    sender.start_last_stage();
    let receiver = Receiver::new(PAGE).expect("valid page size");
    let mut destination = vec![0u8; PAGES * PAGE];
    for (p, page) in live_pages {
        destination[p * PAGE..][..PAGE].copy_from_slice(&page);
    }
    let mut out = vec![0; sender.max_record_len()];
    for p in 0..PAGES {
        let sent = sender
            .save_page(p as u64, &ram.page(p), &mut out)
            .expect("valid send");
        if sent.record_len > 0 {
            receiver
                .apply_record(&out[..sent.record_len], &mut destination)
                .unwrap_or_else(|e| panic!("{context} last stage page {p}: {e}"));
        }
    }
    let differing: Vec<usize> = (0..PAGES)
        .filter(|&p| destination[p * PAGE..][..PAGE] != memory[p * PAGE..][..PAGE])
        .collect();
    assert!(
        differing.is_empty(),
        "{context}: pages {differing:?} differ"
    );
    let stats = sender.stats();
    assert!(stats.xbzrle_cache.pages > 0, "{context}: no hit: {stats:?}");
}

#[test]
fn pages_written_by_vcpus_during_the_saves_reach_the_destination() {
    for cache in cache_kinds() {
        for admission in admissions() {
            for shards in [1, 2] {
                for seed in 0..2 {
                    migrate(cache, admission, shards, seed);
                }
            }
        }
    }
}
