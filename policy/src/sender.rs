//! The sending side: QEMU's per-page decisions around the cache and the codec.

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use xbzrle::Encoded;

use crate::admission::AdmissionPolicy;
use crate::cache::PageCache;
use crate::config::{ConfigError, SenderConfig, Stage, check_cache_bytes};
use crate::fallible;
use crate::stats::{SenderStats, XbzrleCacheStats};
use crate::wire::{
    Body, FLAG_XBZRLE, HEADER_LEN, MAX_DELTA_LEN, Record, XBZRLE_PAYLOAD_HEADER_LEN,
    ZERO_RECORD_LEN, write_header, write_payload_header,
};

/// Why a page went raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawReason {
    /// Bulk stage: XBZRLE has not started.
    Bulk,
    /// The page was not cached.
    Miss,
    /// The delta did not fit in a page (or in [`MAX_DELTA_LEN`]).
    Overflow,
}

/// What the sender decided for a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// An all-zero page: zero-page record.
    Zero,
    /// Raw-page record.
    Raw(RawReason),
    /// XBZRLE record.
    Xbzrle,
    /// Cached and unchanged: nothing written.
    Skipped,
}

/// Result of [`Sender::send_page`] and [`Sender::send_zero_page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sent {
    /// The decision.
    pub outcome: Outcome,
    /// Bytes of the record written at the start of the output (0 when skipped).
    pub len: usize,
}

/// A page the sender could not process. Nothing was sent and no state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendError {
    /// The page is not exactly one page long.
    WrongPageSize {
        /// Length given.
        len: usize,
        /// Page size.
        page_size: usize,
    },
    /// The output buffer is shorter than the call needs: [`Sender::max_record_len`] for
    /// [`Sender::send_page`], [`ZERO_RECORD_LEN`] for [`Sender::send_zero_page`].
    OutputTooSmall {
        /// Length given.
        len: usize,
        /// Length needed.
        needed: usize,
    },
    /// A thread panicked while holding this page's shard; its cache may no longer match
    /// the receiver, so the shard refuses further work.
    Poisoned,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::WrongPageSize { len, page_size } => {
                write!(
                    f,
                    "got {len} bytes where a page of {page_size} was expected"
                )
            }
            Self::OutputTooSmall { len, needed } => {
                write!(
                    f,
                    "output buffer of {len} bytes is below the {needed} needed"
                )
            }
            Self::Poisoned => f.write_str("a thread panicked while using this cache shard"),
        }
    }
}

impl std::error::Error for SendError {}

/// One page being processed: where it lives and the state it is processed in (read once,
/// under its shard's lock, so that one call makes one consistent decision).
struct At {
    page: u64,
    /// Page number inside its shard.
    key: u64,
    stage: Stage,
    generation: u64,
}

struct Shard {
    cache: Box<dyn PageCache>,
    admission: Box<dyn AdmissionPolicy>,
}

#[derive(Default)]
struct Counters {
    processed: AtomicU64,
    zero: AtomicU64,
    raw: AtomicU64,
    xbzrle: AtomicU64,
    skipped: AtomicU64,
    wire_bytes: AtomicU64,
    xbzrle_bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    overflow: AtomicU64,
}

/// Totals at the end of the previous period, and the rates of the last completed one.
#[derive(Default)]
struct Period {
    processed: u64,
    misses: u64,
    hits: u64,
    xbzrle_bytes: u64,
    wire_bytes: u64,
    cache_miss_rate: f64,
    encoding_rate: f64,
    /// Pages and wire bytes of the last completed period (for the last-stage estimate).
    last_pages: u64,
    last_wire_bytes: u64,
}

/// Bit 0 of the state word: last stage.
const LAST_BIT: u64 = 1;
/// Bit 1 of the state word: [`Sender::end_bulk_stage`] was called.
const BULK_ENDED_BIT: u64 = 2;
/// Bits 2.. of the state word: the generation.
const GENERATION_SHIFT: u32 = 2;
/// One dirty sync in the state word.
const ONE_GENERATION: u64 = 1 << GENERATION_SHIFT;

/// QEMU's sender decisions, usable from several migration channels at once.
///
/// # Lifecycle
/// 1. [`Sender::start_pass`] before every pass over guest RAM; it is a dirty sync (the
///    generation goes up by one). The bulk stage is the first complete pass: it ends at
///    [`Sender::end_bulk_stage`] if the caller knows where that pass ends (QEMU sets
///    `xbzrle_started` when its page search wraps around the RAM blocks, possibly in the
///    middle of a pass), and otherwise at the *second* `start_pass`.
/// 2. [`Sender::send_page`] for every dirty page of the pass, or
///    [`Sender::send_zero_page`] for a page the caller already knows is all zeros.
/// 3. [`Sender::start_last_stage`] (also a dirty sync) once the guest is stopped, then the
///    remaining dirty pages. The last stage is final.
///
/// # Threads
/// All methods take `&self`; the sender is `Send + Sync`. The cache is split into shards by
/// page number, each behind its own lock with its own admission state, so channels working
/// on different pages rarely wait on each other. The contract:
/// * one page must not be given to two `send_page` calls at the same time, and the
///   receiver must apply the records of one page in the order their `send_page` calls
///   returned (true when each channel owns its pages, or each page goes to one channel per
///   pass and passes are separated by `start_pass`);
/// * call `start_pass`, `start_last_stage` and `resize_cache` between passes; calls that
///   overlap `send_page` are safe and keep the receiver consistent, but a page processed
///   at the same time may be counted in either generation. `end_bulk_stage` may be called
///   at any point of a pass; a page processed at the same time is processed in one stage
///   or the other (each call reads the stage once).
pub struct Sender {
    page_size: usize,
    shard_bits: u32,
    shards: Box<[Mutex<Shard>]>,
    state: AtomicU64,
    cache_size: AtomicU64,
    counters: Counters,
    period: Mutex<Period>,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("page_size", &self.page_size)
            .field("shards", &self.shards.len())
            .field("stage", &self.stage())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender in the bulk stage, generation 0, with an empty cache.
    ///
    /// Allocates the cache metadata and the admission counters now and checks that the
    /// page data could be allocated, without allocating it: the page data of each shard is
    /// one zeroed allocation made at its first insertion (see [`crate::cache`]).
    ///
    /// # Errors
    /// Any error of [`SenderConfig::validate`], or [`ConfigError::OutOfMemory`] when the
    /// sizes are valid but the allocator refuses the memory they need. Never panics or
    /// aborts on a configuration value.
    pub fn new(config: SenderConfig) -> Result<Self, ConfigError> {
        let admission = config.admission;
        let shards = config.shards;
        Self::build(config, |_| admission.build(shards))
    }

    /// Like [`Sender::new`] with a custom admission policy: `policy(shard)` is called once
    /// per shard (`config.admission` is ignored).
    ///
    /// # Errors
    /// As [`Sender::new`].
    pub fn with_admission(
        config: SenderConfig,
        mut policy: impl FnMut(usize) -> Box<dyn AdmissionPolicy>,
    ) -> Result<Self, ConfigError> {
        Self::build(config, |i| Ok(policy(i)))
    }

    fn build(
        config: SenderConfig,
        mut policy: impl FnMut(usize) -> Result<Box<dyn AdmissionPolicy>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let shard_bytes = config.cache_bytes / config.shards as u64;
        let mut shards = fallible::with_capacity(config.shards)?;
        for i in 0..config.shards {
            shards.push(Mutex::new(Shard {
                cache: config.cache.build(config.page_size, shard_bytes)?,
                admission: policy(i)?,
            }));
        }
        Ok(Self {
            page_size: config.page_size,
            shard_bits: config.shards.trailing_zeros(),
            shards: shards.into_boxed_slice(),
            state: AtomicU64::new(0),
            cache_size: AtomicU64::new(config.cache_bytes),
            counters: Counters::default(),
            period: Mutex::new(Period::default()),
        })
    }

    /// Page size in bytes.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Number of cache shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Output buffer length [`Sender::send_page`] requires: the longest record.
    pub fn max_record_len(&self) -> usize {
        HEADER_LEN
            + self
                .page_size
                .max(XBZRLE_PAYLOAD_HEADER_LEN + self.delta_capacity())
    }

    fn delta_capacity(&self) -> usize {
        self.page_size.min(MAX_DELTA_LEN)
    }

    /// Current generation: the number of dirty syncs so far.
    pub fn generation(&self) -> u64 {
        generation_of(self.state.load(Relaxed))
    }

    /// Current stage.
    pub fn stage(&self) -> Stage {
        stage_of(self.state.load(Relaxed))
    }

    /// Dirty sync at the start of a pass: the generation goes up by one and the rates of
    /// the period just ended are computed. The second call ends the bulk stage, unless
    /// [`Sender::end_bulk_stage`] already has. In the last stage this only counts a
    /// generation.
    pub fn start_pass(&self) {
        self.state.fetch_add(ONE_GENERATION, Relaxed);
        self.end_period();
    }

    /// Ends the bulk stage now: XBZRLE starts, so the next page processed is looked up in
    /// the cache (a miss is counted and, if admitted, inserted) instead of being sent raw
    /// as a bulk page. This is QEMU's `xbzrle_started = true` when its first complete pass
    /// over RAM finishes, which a caller may know in the middle of a pass (a pass that
    /// wraps around the RAM blocks). Callers that never call it get the same switch at the
    /// second [`Sender::start_pass`], which ends the bulk stage in any case: this call can
    /// only end it earlier (a caller whose first round over RAM spans a dirty sync has its
    /// bulk stage end at that sync, before QEMU would set `xbzrle_started`).
    ///
    /// It is not a dirty sync: the generation does not change (cache ages stay those of
    /// the current pass, and the next `start_pass` counts one generation as always), and
    /// no statistics period ends, so the period in progress counts its bulk pages and its
    /// first looked-up pages together (`cache-miss-rate` divides the misses by all of its
    /// pages), as QEMU's does when `xbzrle_started` flips between two rate updates. Called
    /// before the first `start_pass`, the sender skips the bulk stage altogether.
    ///
    /// Idempotent, and no effect once the bulk stage is over or in the last stage.
    /// Thread-safe: it may overlap [`Sender::send_page`] calls, each of which then sees
    /// one stage or the other.
    pub fn end_bulk_stage(&self) {
        self.state.fetch_or(BULK_ENDED_BIT, Relaxed);
    }

    /// Dirty sync that enters the last stage: from now on the cache's page data is never
    /// written and nothing is inserted.
    pub fn start_last_stage(&self) {
        // The closure always returns `Some`, so this cannot fail.
        let _ = self
            .state
            .fetch_update(Relaxed, Relaxed, |s| Some((s + ONE_GENERATION) | LAST_BIT));
        self.end_period();
    }

    /// Changes the cache budget, keeping the cached pages that still fit (see
    /// [`PageCache::resize`]); each shard gets `bytes / shards`.
    ///
    /// All shards are locked for the change (it waits for the `send_page` calls in
    /// progress).
    ///
    /// # Errors
    /// [`ConfigError::CacheBytes`] for a budget below one page or above `isize::MAX`, and
    /// [`ConfigError::OutOfMemory`] when the allocator refuses the memory the new size
    /// needs (see [`PageCache::resize`]). On error the budget is unchanged: the shards
    /// already resized are resized back (they may have dropped pages that no longer fit,
    /// which only costs future hits). Should even that fail, those shards keep the new
    /// budget; the cache still matches the receiver and never holds more than the larger
    /// of the two budgets.
    pub fn resize_cache(&self, bytes: u64) -> Result<(), ConfigError> {
        check_cache_bytes(bytes, self.page_size)?;
        let per_shard = bytes / self.shards.len() as u64;
        // A poisoned shard refuses all work anyway; resizing it is harmless. Locks are
        // taken in index order, so concurrent resizes cannot deadlock.
        let mut guards = fallible::with_capacity(self.shards.len())?;
        guards.extend(
            self.shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(|e| e.into_inner())),
        );
        let mut before = fallible::with_capacity(guards.len())?;
        before.extend(guards.iter().map(|g| g.cache.configured_bytes()));
        for i in 0..guards.len() {
            if let Err(e) = guards[i].cache.resize(per_shard) {
                for (done, &old) in guards[..i].iter_mut().zip(&before) {
                    // Best effort; see the documentation.
                    let _ = done.cache.resize(old);
                }
                return Err(e);
            }
        }
        self.cache_size.store(bytes, Relaxed);
        Ok(())
    }

    /// Decides how to send `data`, the current content of page `page`, writes the record
    /// (if any) at the start of `out` and updates the cache and statistics
    /// (DESIGN §2):
    ///
    /// * all zero → exactly [`Sender::send_zero_page`];
    /// * bulk stage → raw; a cached copy is refreshed, a missing one inserted if admitted;
    /// * not cached → cache miss, inserted if admitted (not in the last stage), raw;
    /// * cached (hit, age refreshed) → encoded against the copy, which becomes `data` in
    ///   one pass (not in the last stage): unchanged → skipped, overflow → raw, else
    ///   XBZRLE record.
    ///
    /// In the last stage a cached copy whose page is sent is dropped instead of written
    /// (QEMU leaves it stale; dropping costs nothing and keeps a second send of the same
    /// page correct).
    ///
    /// # Errors
    /// Nothing is sent and no state changes: [`SendError::WrongPageSize`] when `data` is
    /// not one page, [`SendError::OutputTooSmall`] when `out` is shorter than
    /// [`Sender::max_record_len`], [`SendError::Poisoned`] for a poisoned shard.
    pub fn send_page(&self, page: u64, data: &[u8], out: &mut [u8]) -> Result<Sent, SendError> {
        if data.len() != self.page_size {
            return Err(SendError::WrongPageSize {
                len: data.len(),
                page_size: self.page_size,
            });
        }
        self.process(page, out, self.max_record_len(), |shard, at, out| {
            if is_zero(data) {
                self.zero(shard, at, out)
            } else if at.stage == Stage::Bulk {
                if shard.cache.get(at.key).is_some() || shard.admission.admit(page, at.stage) {
                    shard.cache.insert(at.key, data, at.generation);
                }
                self.raw(out, page, data, RawReason::Bulk)
            } else {
                self.send_after_bulk(shard, at, data, out)
            }
        })
    }

    /// Sends page `page`, which the caller knows is all zeros (QEMU's caller checks with
    /// `buffer_is_zero` and then calls `xbzrle_cache_zero_page`), without being given or
    /// scanning its bytes: exactly what [`Sender::send_page`] does for an all-zero page,
    /// through the same code. It writes the zero-page record (flag `0x02`, fill byte 0;
    /// [`ZERO_RECORD_LEN`] bytes) at the start of `out` and returns [`Outcome::Zero`].
    /// The page is observed by the admission policy and counted as processed and as a
    /// zero page; the cache:
    ///
    /// * bulk stage → a cached copy (only a policy that admits during the bulk stage makes
    ///   one) becomes zeros and its age the current generation; nothing is inserted;
    /// * after the bulk stage → the cached copy becomes zeros, or a missing one is inserted
    ///   as zeros if admitted (subject to the replacement rule), so that a later small
    ///   write goes as XBZRLE; no lookup is counted (neither hit nor miss);
    /// * last stage → a cached copy is dropped; nothing is written or inserted.
    ///
    /// # Errors
    /// Nothing is sent and no state changes: [`SendError::OutputTooSmall`] when `out` is
    /// shorter than [`ZERO_RECORD_LEN`] (a buffer of [`Sender::max_record_len`] always
    /// suffices), [`SendError::Poisoned`] for a poisoned shard.
    pub fn send_zero_page(&self, page: u64, out: &mut [u8]) -> Result<Sent, SendError> {
        self.process(page, out, ZERO_RECORD_LEN, |shard, at, out| {
            self.zero(shard, at, out)
        })
    }

    /// The frame of every send: checks that `out` holds `needed` bytes, locks the page's
    /// shard, reads the stage and generation once, shows the page to the admission policy,
    /// lets `decide` write the record and touch the cache, and counts the result.
    fn process(
        &self,
        page: u64,
        out: &mut [u8],
        needed: usize,
        decide: impl FnOnce(&mut Shard, &At, &mut [u8]) -> Sent,
    ) -> Result<Sent, SendError> {
        if out.len() < needed {
            return Err(SendError::OutputTooSmall {
                len: out.len(),
                needed,
            });
        }
        let mut shard = self.lock_shard(page)?;
        let shard = &mut *shard;
        let state = self.state.load(Relaxed);
        let at = At {
            page,
            key: page >> self.shard_bits,
            stage: stage_of(state),
            generation: generation_of(state),
        };
        shard.admission.observe(page, at.stage);
        let sent = decide(shard, &at, out);
        self.counters.processed.fetch_add(1, Relaxed);
        self.counters.wire_bytes.fetch_add(sent.len as u64, Relaxed);
        Ok(sent)
    }

    /// Step 1 of DESIGN §2, the one place a zero page is handled (for both
    /// [`Sender::send_page`] and [`Sender::send_zero_page`]): the cache entry becomes a
    /// zero page as described at `send_zero_page`, and the zero record is written.
    fn zero(&self, shard: &mut Shard, at: &At, out: &mut [u8]) -> Sent {
        match at.stage {
            Stage::Last => {
                shard.cache.remove(at.key);
            }
            Stage::Bulk | Stage::Iterative => {
                let cached = shard.cache.get(at.key).is_some();
                if cached
                    || (at.stage == Stage::Iterative && shard.admission.admit(at.page, at.stage))
                {
                    shard.cache.insert_zero(at.key, at.generation);
                }
            }
        }
        let len = write(out, at.page, Body::Zero { fill: 0 });
        self.counters.zero.fetch_add(1, Relaxed);
        Sent {
            outcome: Outcome::Zero,
            len,
        }
    }

    /// Steps 3 to 5 of DESIGN §2: lookup, then miss or hit.
    fn send_after_bulk(&self, shard: &mut Shard, at: &At, data: &[u8], out: &mut [u8]) -> Sent {
        let &At {
            page,
            key,
            stage,
            generation,
        } = at;
        let last = stage == Stage::Last;
        let capacity = self.delta_capacity();
        let payload_start = HEADER_LEN + XBZRLE_PAYLOAD_HEADER_LEN;
        let delta_out = &mut out[payload_start..payload_start + capacity];
        let encoded = match shard.cache.hit(key, generation) {
            None => {
                self.counters.misses.fetch_add(1, Relaxed);
                if !last && shard.admission.admit(page, stage) {
                    shard.cache.insert(key, data, generation);
                }
                return self.raw(out, page, data, RawReason::Miss);
            }
            Some(cached) if last => xbzrle::encode(cached, data, delta_out),
            Some(cached) => xbzrle::encode_update(cached, data, delta_out),
        };
        self.counters.hits.fetch_add(1, Relaxed);
        if last && encoded != Encoded::Unchanged {
            shard.cache.remove(key);
        }
        match encoded {
            Encoded::Unchanged => {
                self.counters.skipped.fetch_add(1, Relaxed);
                Sent {
                    outcome: Outcome::Skipped,
                    len: 0,
                }
            }
            Encoded::Overflow => {
                self.counters.overflow.fetch_add(1, Relaxed);
                self.counters
                    .xbzrle_bytes
                    .fetch_add(self.page_size as u64, Relaxed);
                self.raw(out, page, data, RawReason::Overflow)
            }
            Encoded::Delta(n) => {
                // The delta is already in place after both headers; n <= capacity <= u16::MAX.
                write_header(out, FLAG_XBZRLE, page);
                write_payload_header(&mut out[HEADER_LEN..], u16::try_from(n).unwrap_or(u16::MAX));
                self.counters.xbzrle.fetch_add(1, Relaxed);
                self.counters
                    .xbzrle_bytes
                    .fetch_add((XBZRLE_PAYLOAD_HEADER_LEN + n) as u64, Relaxed);
                Sent {
                    outcome: Outcome::Xbzrle,
                    len: payload_start + n,
                }
            }
        }
    }

    fn raw(&self, out: &mut [u8], page: u64, data: &[u8], reason: RawReason) -> Sent {
        self.counters.raw.fetch_add(1, Relaxed);
        Sent {
            outcome: Outcome::Raw(reason),
            len: write(out, page, Body::Raw(data)),
        }
    }

    fn lock_shard(&self, page: u64) -> Result<MutexGuard<'_, Shard>, SendError> {
        let index = (page & (self.shards.len() as u64 - 1)) as usize;
        self.shards[index].lock().map_err(|_| SendError::Poisoned)
    }

    fn end_period(&self) {
        let c = &self.counters;
        let processed = c.processed.load(Relaxed);
        let mut p = self.period.lock().unwrap_or_else(|e| e.into_inner());
        let pages = processed - p.processed;
        if pages == 0 {
            return;
        }
        let misses = c.misses.load(Relaxed);
        let hits = c.hits.load(Relaxed);
        let xbzrle_bytes = c.xbzrle_bytes.load(Relaxed);
        let wire_bytes = c.wire_bytes.load(Relaxed);
        p.cache_miss_rate = (misses - p.misses) as f64 / pages as f64;
        let (dhits, dbytes) = (hits - p.hits, xbzrle_bytes - p.xbzrle_bytes);
        p.encoding_rate = if dhits == 0 || dbytes == 0 {
            0.0
        } else {
            (dhits * self.page_size as u64) as f64 / dbytes as f64
        };
        p.last_pages = pages;
        p.last_wire_bytes = wire_bytes - p.wire_bytes;
        p.processed = processed;
        p.misses = misses;
        p.hits = hits;
        p.xbzrle_bytes = xbzrle_bytes;
        p.wire_bytes = wire_bytes;
    }

    /// Estimated wire bytes to send `dirty_pages` pages now, for a convergence rule: the
    /// average wire bytes per processed page over the last completed period (which folds
    /// in the measured encoding rate, miss rate, zero and skipped pages), else over the
    /// current period, else a raw page per page.
    pub fn estimate_last_stage_bytes(&self, dirty_pages: u64) -> u64 {
        let p = self.period.lock().unwrap_or_else(|e| e.into_inner());
        let (pages, bytes) = if p.last_pages != 0 {
            (p.last_pages, p.last_wire_bytes)
        } else {
            let c = &self.counters;
            (
                c.processed.load(Relaxed) - p.processed,
                c.wire_bytes.load(Relaxed) - p.wire_bytes,
            )
        };
        if pages == 0 {
            return dirty_pages.saturating_mul((HEADER_LEN + self.page_size) as u64);
        }
        let estimate = u128::from(dirty_pages) * u128::from(bytes) / u128::from(pages);
        u64::try_from(estimate).unwrap_or(u64::MAX)
    }

    /// Statistics now.
    pub fn stats(&self) -> SenderStats {
        let c = &self.counters;
        let (cache_miss_rate, encoding_rate) = {
            let p = self.period.lock().unwrap_or_else(|e| e.into_inner());
            (p.cache_miss_rate, p.encoding_rate)
        };
        let (mut cache_pages, mut cache_capacity, mut cache_allocated_bytes) = (0, 0, 0);
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            cache_pages += shard.cache.len();
            cache_capacity += shard.cache.capacity();
            cache_allocated_bytes += shard.cache.allocated_bytes();
        }
        let state = self.state.load(Relaxed);
        SenderStats {
            xbzrle_cache: XbzrleCacheStats {
                cache_size: self.cache_size.load(Relaxed),
                bytes: c.xbzrle_bytes.load(Relaxed),
                pages: c.hits.load(Relaxed),
                cache_miss: c.misses.load(Relaxed),
                cache_miss_rate,
                encoding_rate,
                overflow: c.overflow.load(Relaxed),
            },
            stage: stage_of(state),
            generation: generation_of(state),
            pages_processed: c.processed.load(Relaxed),
            zero_pages: c.zero.load(Relaxed),
            raw_pages: c.raw.load(Relaxed),
            xbzrle_pages: c.xbzrle.load(Relaxed),
            skipped_pages: c.skipped.load(Relaxed),
            wire_bytes: c.wire_bytes.load(Relaxed),
            cache_pages,
            cache_capacity,
            cache_allocated_bytes,
        }
    }

    /// Bytes of page data all cache shards have allocated (never above the budget).
    pub fn cache_allocated_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .cache
                    .allocated_bytes()
            })
            .sum()
    }

    /// A copy of the cached page and its age, if `page` is cached (for inspection and
    /// tests; does not count as a use).
    pub fn cached_page(&self, page: u64) -> Option<(Vec<u8>, u64)> {
        let shard = self.shards[(page & (self.shards.len() as u64 - 1)) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = page >> self.shard_bits;
        Some((shard.cache.get(key)?.to_vec(), shard.cache.age(key)?))
    }
}

fn generation_of(state: u64) -> u64 {
    state >> GENERATION_SHIFT
}

/// Last stage once entered; else the bulk stage until `end_bulk_stage` or the second
/// dirty sync, whichever comes first.
fn stage_of(state: u64) -> Stage {
    if state & LAST_BIT != 0 {
        Stage::Last
    } else if state & BULK_ENDED_BIT != 0 || generation_of(state) >= 2 {
        Stage::Iterative
    } else {
        Stage::Bulk
    }
}

fn write(out: &mut [u8], page: u64, body: Body<'_>) -> usize {
    // `out` holds max_record_len() bytes, enough for any record of this page size.
    Record { page, body }.write(out).unwrap_or(0)
}

fn is_zero(data: &[u8]) -> bool {
    data.chunks(256)
        .all(|chunk| chunk.iter().fold(0, |acc, &b| acc | b) == 0)
}
