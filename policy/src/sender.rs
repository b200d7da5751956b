//! The sending side: QEMU's per-page decisions around the cache and the codec.

use core::fmt;
use core::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use xbzrle::{Encoded, PageSource};

use crate::admission::AdmissionPolicy;
use crate::cache::PageCache;
use crate::config::SenderConfig;
use crate::error::{ConfigError, check_cache_bytes};
use crate::fallible;
use crate::stage::{Progress, Snapshot, Stage};
use crate::stats::{Counters, Periods, SenderStats, XbzrleCacheStats};
use crate::wire::{
    FLAG_PAGE, FLAG_XBZRLE, FLAG_ZERO, HEADER_LEN, MAX_DELTA_LEN, XBZRLE_PAYLOAD_HEADER_LEN,
    ZERO_RECORD_LEN, write_header, write_payload_header,
};

/// Why a page went raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum Action {
    /// An all-zero page: zero-page record.
    Zero,
    /// Raw-page record.
    Raw(RawReason),
    /// XBZRLE record.
    Xbzrle,
    /// Cached and unchanged: nothing written.
    Skipped,
}

/// Result of [`Sender::save_page`] and [`Sender::save_zero_page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Sent {
    /// The decision.
    pub action: Action,
    /// Bytes of the record written at the start of the output (0 when skipped).
    pub record_len: usize,
}

/// A page the sender could not process. Nothing was sent and no state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaveError {
    /// The page is not exactly one page long.
    WrongPageSize {
        /// Length given.
        len: usize,
        /// Page size.
        page_size: usize,
    },
    /// The output buffer is shorter than the call needs: [`Sender::max_record_len`] for
    /// [`Sender::save_page`], [`ZERO_RECORD_LEN`] for [`Sender::save_zero_page`].
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

impl fmt::Display for SaveError {
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

impl std::error::Error for SaveError {}

/// One page being sent: which page, where it lives, and the stage and generation it is
/// sent in (read once, under its shard's lock, so that one call makes one consistent
/// decision).
struct SaveJob {
    page: u64,
    /// Page number inside its shard.
    key: u64,
    stage: Stage,
    generation: u64,
}

/// One cache shard and what its pages were counted as, behind one lock.
struct Shard {
    cache: Box<dyn PageCache>,
    admission: Box<dyn AdmissionPolicy>,
    counters: Counters,
}

/// Bytes of the next page, and of its cached copy, that a batch asks the CPU to load while
/// it works on the current page: three eighths of a page. The rest is not asked for: the
/// hardware prefetchers stream it as the encoder walks the page, and asking for it too (as
/// this sender did until 2026-12-02) made batches 1.06× slower. Chosen by linking the
/// sender built with each value into one process, every one saving the same passes at
/// guest-RAM scale (BENCHMARKS.md): 1024 and 2048 were 0.98–0.99× as fast as 1536, 512
/// 0.95–0.97×, 3072 0.92×, 4096 0.83×, nothing at all 0.88–0.93× (1536 was also the best
/// with the rest asked for, on the machine of the earlier measurements).
const PREFETCH_NEXT_BYTES: usize = 1536;

/// Bytes of a page saved by one call, and of its cached copy, asked for once the cache
/// lookup has been issued. The lookup comes first: its loads depend on each other (the
/// 16-way cache reads the set's keys, then the slot's metadata, then finds the copy), and
/// prefetches issued before them queue ahead of their misses in the CPU's few fill buffers
/// (asking for the whole page first made one-page calls 1.2–1.3× slower at guest-RAM
/// scale). In the same comparison as [`PREFETCH_NEXT_BYTES`], 256, 512 and 768 bytes were
/// as fast as each other, 1024 and 2048 slower, nothing at all 1.04–1.09× slower than 512.
const PREFETCH_START_BYTES: usize = 512;

/// What a batch has prefetched for the current page, and the pages it saves after it.
#[derive(Debug, Default, Clone, Copy)]
struct Ahead {
    /// Whether the first [`PREFETCH_NEXT_BYTES`] of the current page (and of its cached
    /// copy, unless its shard's lock was taken then) were asked for while the page before
    /// it was saved.
    started: bool,
    /// The next page: the start of its cached copy is asked for.
    next: Option<u64>,
    /// The page after it: its slot's metadata (where its copy lies) is asked for.
    second: Option<u64>,
    /// The third page ahead: its lookup keys are asked for.
    third: Option<u64>,
}

/// A value alone in its cache lines (128 bytes: adjacent-line prefetchers pair lines), so
/// that threads working on neighbouring shards do not share a line.
#[repr(align(128))]
struct CachePadded<T>(T);

/// QEMU's sender decisions, usable from several migration channels at once.
///
/// # Lifecycle
/// 1. [`Sender::start_pass`] before every pass over guest RAM; it is a dirty sync (the
///    generation goes up by one). The bulk stage is the first complete pass: it ends at
///    [`Sender::end_bulk_stage`] if the caller knows where that pass ends (QEMU sets
///    `xbzrle_started` when its page search wraps around the RAM blocks, possibly in the
///    middle of a pass), and otherwise at the *second* `start_pass`.
/// 2. [`Sender::save_page`] for every dirty page of the pass, or
///    [`Sender::save_zero_page`] for a page the caller already knows is all zeros.
/// 3. [`Sender::start_last_stage`] (also a dirty sync) once the guest is stopped, then the
///    remaining dirty pages. The last stage is final.
///
/// # Guest memory that vCPUs write meanwhile
/// [`Sender::save_page`] reads the page through [`PageSource`]: pass a
/// [`LivePage`](xbzrle::LivePage) (or, with the `vm-memory` feature, a `VolatileSlice`) for
/// guest memory that vCPUs keep writing during the call; no private copy is needed. Every
/// byte is read exactly once, and the record written and the cached copy left behind both
/// come from that one read: on a miss or in the bulk stage the page is read into the raw
/// record and cached from there, on a hit the kernel refreshes the cached copy from the
/// registers it compared and takes the delta from the refreshed copy, on an overflow the
/// refreshed copy is sent. The receiver therefore always holds what the cache holds, and
/// the destination converges once the page is sent again after the guest stops (the page
/// is dirty again, so a VMM's dirty log brings it back).
///
/// # Threads
/// All methods take `&self`; the sender is `Send + Sync`. The cache is split into shards by
/// page number, each behind its own lock with its own admission state and counters, so
/// channels working on different pages rarely wait on each other. The contract:
/// * one page must not be given to two `save_page` calls at the same time, and the
///   receiver must apply the records of one page in the order their `save_page` calls
///   returned (true when each channel owns its pages, or each page goes to one channel per
///   pass and passes are separated by `start_pass`);
/// * call `start_pass`, `start_last_stage` and `resize_cache` between passes; calls that
///   overlap `save_page` are safe and keep the receiver consistent, but a page processed
///   at the same time may be counted in either generation. `end_bulk_stage` may be called
///   at any point of a pass; a page processed at the same time is processed in one stage
///   or the other (each call reads the stage once).
pub struct Sender {
    page_size: usize,
    shard_bits: u32,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    progress: Progress,
    cache_size: AtomicU64,
    periods: Mutex<Periods>,
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
            shards.push(CachePadded(Mutex::new(Shard {
                cache: config.cache.build(config.page_size, shard_bytes)?,
                admission: policy(i)?,
                counters: Counters::default(),
            })));
        }
        Ok(Self {
            page_size: config.page_size,
            shard_bits: config.shards.trailing_zeros(),
            shards: shards.into_boxed_slice(),
            progress: Progress::default(),
            cache_size: AtomicU64::new(config.cache_bytes),
            periods: Mutex::new(Periods::default()),
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

    /// Output buffer length [`Sender::save_page`] requires: the longest record.
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
        self.progress.now().generation
    }

    /// Current stage.
    pub fn stage(&self) -> Stage {
        self.progress.now().stage
    }

    /// Dirty sync at the start of a pass: the generation goes up by one and the rates of
    /// the period just ended are computed. The second call ends the bulk stage, unless
    /// [`Sender::end_bulk_stage`] already has. In the last stage this only counts a
    /// generation.
    pub fn start_pass(&self) {
        self.progress.sync();
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
    /// Thread-safe: it may overlap [`Sender::save_page`] calls, each of which then sees
    /// one stage or the other.
    pub fn end_bulk_stage(&self) {
        self.progress.end_bulk_stage();
    }

    /// Dirty sync that enters the last stage: from now on nothing is inserted, and a cached
    /// copy whose page is sent is dropped (no later lookup sees it).
    pub fn start_last_stage(&self) {
        self.progress.sync_into_last_stage();
        self.end_period();
    }

    /// Changes the cache budget, keeping the cached pages that still fit (see
    /// [`PageCache::resize`]); each shard gets `bytes / shards`.
    ///
    /// All shards are locked for the change (it waits for the `save_page` calls in
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
        guards.extend(self.shards.iter().map(|s| lock_even_poisoned(&s.0)));
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

    /// Decides how to send the current content of page `page`, read from `data`, writes the
    /// record (if any) at the start of `out` and updates the cache and statistics (QEMU's
    /// `save_zero_page` and `save_xbzrle_page`):
    ///
    /// * all zero → exactly [`Sender::save_zero_page`];
    /// * bulk stage → raw; a cached copy is refreshed, a missing one inserted if admitted;
    /// * not cached → cache miss, inserted if admitted (not in the last stage), raw;
    /// * cached (hit, age refreshed) → encoded against the copy, which becomes the page in
    ///   the same pass (not in the last stage): unchanged → skipped, overflow → raw (the
    ///   refreshed copy), else XBZRLE record.
    ///
    /// In the last stage a cached copy whose page is sent is dropped instead of written
    /// (QEMU leaves it stale; dropping costs nothing and keeps a second send of the same
    /// page correct).
    ///
    /// `data` may be guest memory that other threads write during the call (a
    /// [`LivePage`](xbzrle::LivePage)): each of its bytes is read exactly once, and the
    /// record and the cache both come from that read (see the [type](Sender) documentation).
    /// The zero-page check runs on the copy, after the read.
    ///
    /// # Errors
    /// Nothing is sent and no state changes: [`SaveError::WrongPageSize`] when `data` is
    /// not one page, [`SaveError::OutputTooSmall`] when `out` is shorter than
    /// [`Sender::max_record_len`], [`SaveError::Poisoned`] for a poisoned shard.
    pub fn save_page<S: PageSource + ?Sized>(
        &self,
        page: u64,
        data: &S,
        out: &mut [u8],
    ) -> Result<Sent, SaveError> {
        self.save_page_ahead(page, data, out, Ahead::default())
    }

    /// Saves several pages in the order given (a pass's dirty pages, in the order of the
    /// dirty bitmap), exactly as [`Sender::save_page`] would one after the other, and hands
    /// each record to `sink` (page number, what was decided, the record: empty when
    /// skipped), which says whether to go on. While it encodes a page it asks the CPU to
    /// start loading the next page and its cached copy ([`PageSource::prefetch`],
    /// [`PageCache::prefetch`]), so that at guest-RAM scale the memory latency of one page
    /// overlaps the work on the one before. Returns how many pages were saved.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use xbzrle_policy::{Sender, SenderConfig};
    ///
    /// let sender = Sender::new(SenderConfig::default()).unwrap();
    /// let ram = vec![1u8; 8 * 4096];
    /// let dirty = [1u64, 2, 5];
    /// let pages = dirty.iter().map(|&p| (p, &ram[p as usize * 4096..][..4096]));
    /// let mut out = vec![0; sender.max_record_len()];
    /// sender.start_pass();
    /// let mut stream = Vec::new();
    /// let saved = sender.save_pages(pages, &mut out, |_page, _sent, record| {
    ///     stream.extend_from_slice(record);
    ///     ControlFlow::Continue(())
    /// });
    /// assert_eq!(saved, Ok(3));
    /// ```
    ///
    /// # Errors
    /// The first error of a page, as [`Sender::save_page`] reports it; the pages before it
    /// were saved and given to `sink` (count them there if needed), that page and those
    /// after it were not touched.
    pub fn save_pages<S, I, F>(
        &self,
        pages: I,
        out: &mut [u8],
        mut sink: F,
    ) -> Result<usize, SaveError>
    where
        S: PageSource,
        I: IntoIterator<Item = (u64, S)>,
        F: FnMut(u64, Sent, &[u8]) -> ControlFlow<()>,
    {
        let mut pages = pages.into_iter();
        let (mut next, mut second, mut third) = (pages.next(), pages.next(), pages.next());
        let mut saved = 0;
        // Whether the start of the current page and of its cached copy were asked for.
        let mut started = false;
        while let Some((page, data)) = next {
            (next, second, third) = (second, third, pages.next());
            let page_number = |item: &Option<(u64, S)>| item.as_ref().map(|(page, _)| *page);
            let ahead = Ahead {
                started,
                next: next.as_ref().map(|(next, next_data)| {
                    next_data.prefetch(0, PREFETCH_NEXT_BYTES);
                    *next
                }),
                second: page_number(&second),
                third: page_number(&third),
            };
            let sent = self.save_page_ahead(page, &data, out, ahead)?;
            saved += 1;
            started = true;
            if sink(page, sent, &out[..sent.record_len]).is_break() {
                break;
            }
        }
        Ok(saved)
    }

    /// [`Sender::save_page`]: asks the CPU to load the start of the page and of its cached
    /// copy, unless a batch already did ([`PREFETCH_START_BYTES`]), and for the pages of
    /// `ahead` one step of the lookup each: the start of the next one's cached copy, the
    /// slot metadata of the second (where its copy lies) and the lookup keys of the third,
    /// so that no step waits for memory on the one before. A page of another shard is
    /// prefetched only if that shard's lock is free.
    fn save_page_ahead<S: PageSource + ?Sized>(
        &self,
        page: u64,
        data: &S,
        out: &mut [u8],
        ahead: Ahead,
    ) -> Result<Sent, SaveError> {
        let len = data.len();
        if len != self.page_size {
            return Err(SaveError::WrongPageSize {
                len,
                page_size: self.page_size,
            });
        }
        self.process(page, out, self.max_record_len(), |shard, job, out| {
            if !ahead.started {
                if job.stage != Stage::Bulk {
                    // The bulk stage sends the page raw: the cached copy is not read.
                    shard.cache.prefetch(job.key, 0, PREFETCH_START_BYTES);
                }
                data.prefetch(0, PREFETCH_START_BYTES);
            }
            self.with_cache_of(ahead.third, page, shard, |cache, key| {
                cache.prefetch_lookup(key);
            });
            self.with_cache_of(ahead.second, page, shard, |cache, key| {
                cache.prefetch_slot(key);
            });
            self.with_cache_of(ahead.next, page, shard, |cache, key| {
                cache.prefetch(key, 0, PREFETCH_NEXT_BYTES);
            });
            if job.stage == Stage::Bulk {
                let cached = shard.cache.get(job.key).is_some();
                self.save_raw(shard, job, data, out, (cached, RawReason::Bulk))
            } else {
                self.save_after_bulk(shard, job, data, out)
            }
        })
    }

    /// Sends page `page`, which the caller knows is all zeros (QEMU's caller checks with
    /// `buffer_is_zero` and then calls `xbzrle_cache_zero_page`), without being given or
    /// scanning its bytes: exactly what [`Sender::save_page`] does for an all-zero page,
    /// through the same code. It writes the zero-page record (flag `0x02`, fill byte 0;
    /// [`ZERO_RECORD_LEN`] bytes) at the start of `out` and returns [`Action::Zero`].
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
    /// Nothing is sent and no state changes: [`SaveError::OutputTooSmall`] when `out` is
    /// shorter than [`ZERO_RECORD_LEN`] (a buffer of [`Sender::max_record_len`] always
    /// suffices), [`SaveError::Poisoned`] for a poisoned shard.
    pub fn save_zero_page(&self, page: u64, out: &mut [u8]) -> Result<Sent, SaveError> {
        self.process(page, out, ZERO_RECORD_LEN, |shard, job, out| {
            let cached = shard.cache.get(job.key).is_some();
            self.zero(shard, job, cached, out)
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
        decide: impl FnOnce(&mut Shard, &SaveJob, &mut [u8]) -> Sent,
    ) -> Result<Sent, SaveError> {
        if out.len() < needed {
            return Err(SaveError::OutputTooSmall {
                len: out.len(),
                needed,
            });
        }
        let mut shard = self.lock_shard(page)?;
        let shard = &mut *shard;
        let Snapshot { stage, generation } = self.progress.now();
        let job = SaveJob {
            page,
            key: self.shard_key(page),
            stage,
            generation,
        };
        shard.admission.observe(page, stage);
        let sent = decide(shard, &job, out);
        let counters = &mut shard.counters;
        counters.processed += 1;
        counters.wire_bytes += sent.record_len as u64;
        match sent.action {
            Action::Zero => counters.zero += 1,
            Action::Raw(_) => counters.raw += 1,
            Action::Xbzrle => counters.xbzrle += 1,
            Action::Skipped => counters.skipped += 1,
        }
        Ok(sent)
    }

    /// The one place a zero page's cache effect is decided (for [`Sender::save_zero_page`],
    /// and for [`Sender::save_page`] on a page it read as zeros and had not cached, or had
    /// in the last stage): as described at `save_zero_page`; then the zero record.
    fn zero(&self, shard: &mut Shard, job: &SaveJob, cached: bool, out: &mut [u8]) -> Sent {
        match job.stage {
            Stage::Last => {
                shard.cache.remove(job.key);
            }
            Stage::Bulk | Stage::Iterative => {
                if cached
                    || (job.stage == Stage::Iterative && shard.admission.admit(job.page, job.stage))
                {
                    shard.cache.insert_zero(job.key, job.generation);
                }
            }
        }
        zero_record(out, job.page)
    }

    /// Reads the page once, into the body of a raw record at the start of `out`, and
    /// returns that body: everything this send does with the page starts from it.
    fn read_into_raw_record<'o, S: PageSource + ?Sized>(
        &self,
        data: &S,
        out: &'o mut [u8],
    ) -> &'o [u8] {
        let body = &mut out[HEADER_LEN..HEADER_LEN + self.page_size];
        data.read(0, body);
        body
    }

    /// A page sent raw, in the bulk stage or on a miss (`cached`: whether the page is cached,
    /// which a miss is not): read once into the raw record; sent as a zero page if it read
    /// as zeros; else cached from the record when it is cached already or admitted (never in
    /// the last stage).
    fn save_raw<S: PageSource + ?Sized>(
        &self,
        shard: &mut Shard,
        job: &SaveJob,
        data: &S,
        out: &mut [u8],
        (cached, reason): (bool, RawReason),
    ) -> Sent {
        let body = self.read_into_raw_record(data, out);
        if is_zero(body) {
            return self.zero(shard, job, cached, out);
        }
        if reason == RawReason::Miss {
            shard.counters.misses += 1;
        }
        if job.stage != Stage::Last && (cached || shard.admission.admit(job.page, job.stage)) {
            shard.cache.insert(job.key, body, job.generation);
        }
        self.raw_record(out, job.page, reason)
    }

    /// After the bulk stage: lookup, then miss or hit.
    fn save_after_bulk<S: PageSource + ?Sized>(
        &self,
        shard: &mut Shard,
        job: &SaveJob,
        data: &S,
        out: &mut [u8],
    ) -> Sent {
        let last = job.stage == Stage::Last;
        let Some(cached) = shard.cache.hit(job.key, job.generation) else {
            return self.save_raw(shard, job, data, out, (false, RawReason::Miss));
        };
        // A hit: the kernel reads the page once, refreshes the cached copy from what it
        // read and takes the delta's bytes from the refreshed copy.
        let payload_start = HEADER_LEN + XBZRLE_PAYLOAD_HEADER_LEN;
        let delta_out = &mut out[payload_start..payload_start + self.delta_capacity()];
        let encoded = xbzrle::encode_update(cached, data, delta_out);
        // The refreshed copy is what was read.
        let sent = if is_zero(cached) {
            // What `zero` does to a cached page: the copy became zeros and its age (and,
            // for a set-associative cache, its hit count) was updated by the lookup. Not a
            // hit for the statistics, as in QEMU, which checks for zeros first.
            zero_record(out, job.page)
        } else {
            shard.counters.hits += 1;
            match encoded {
                Encoded::Unchanged => Sent {
                    action: Action::Skipped,
                    record_len: 0,
                },
                Encoded::Overflow => {
                    shard.counters.overflow += 1;
                    shard.counters.xbzrle_bytes += self.page_size as u64;
                    out[HEADER_LEN..HEADER_LEN + self.page_size].copy_from_slice(cached);
                    self.raw_record(out, job.page, RawReason::Overflow)
                }
                Encoded::Delta(n) => {
                    shard.counters.xbzrle_bytes += (XBZRLE_PAYLOAD_HEADER_LEN + n) as u64;
                    xbzrle_record(out, job.page, n)
                }
            }
        };
        if last && sent.action != Action::Skipped {
            // The copy was written in the last stage: drop it (see `save_page`).
            shard.cache.remove(job.key);
        }
        sent
    }

    /// Completes the raw record whose body (one page) is in place in `out`.
    fn raw_record(&self, out: &mut [u8], page: u64, reason: RawReason) -> Sent {
        write_header(out, FLAG_PAGE, page);
        Sent {
            action: Action::Raw(reason),
            record_len: HEADER_LEN + self.page_size,
        }
    }

    /// Calls `step` with the cache of page `other`'s shard and its key there, if `other` is
    /// a page: `locked`, the shard of page `page` whose lock the caller holds, or another
    /// shard if its lock is free at once (`step` only asks for prefetches, hints that are
    /// not worth waiting for).
    fn with_cache_of(
        &self,
        other: Option<u64>,
        page: u64,
        locked: &Shard,
        step: impl FnOnce(&dyn PageCache, u64),
    ) {
        let Some(other) = other else {
            return;
        };
        let key = self.shard_key(other);
        if self.shard_index(other) == self.shard_index(page) {
            step(locked.cache.as_ref(), key);
        } else if let Ok(shard) = self.shard_of(other).try_lock() {
            step(shard.cache.as_ref(), key);
        }
    }

    fn lock_shard(&self, page: u64) -> Result<MutexGuard<'_, Shard>, SaveError> {
        self.shard_of(page).lock().map_err(|_| SaveError::Poisoned)
    }

    fn shard_of(&self, page: u64) -> &Mutex<Shard> {
        &self.shards[self.shard_index(page)].0
    }

    fn shard_index(&self, page: u64) -> usize {
        (page & (self.shards.len() as u64 - 1)) as usize
    }

    /// The key of `page` in its shard's cache: shard `p mod n` holds page `p` as `p / n`.
    fn shard_key(&self, page: u64) -> u64 {
        page >> self.shard_bits
    }

    /// The counters of every shard, summed.
    fn totals(&self) -> Counters {
        let mut totals = Counters::default();
        for shard in self.shards.iter() {
            totals += lock_even_poisoned(&shard.0).counters;
        }
        totals
    }

    fn end_period(&self) {
        let totals = self.totals();
        lock_even_poisoned(&self.periods).end(totals, self.page_size);
    }

    /// Estimated wire bytes to send `dirty_pages` pages now, for a convergence rule: the
    /// average wire bytes per processed page over the last completed period (which folds
    /// in the measured encoding rate, miss rate, zero and skipped pages), else over the
    /// current period, else a raw page per page.
    pub fn estimate_bytes(&self, dirty_pages: u64) -> u64 {
        let totals = self.totals();
        let raw_record_len = (HEADER_LEN + self.page_size) as u64;
        lock_even_poisoned(&self.periods).estimate(totals, dirty_pages, raw_record_len)
    }

    /// Statistics now.
    pub fn stats(&self) -> SenderStats {
        let c = self.totals();
        let (cache_miss_rate, encoding_rate) = lock_even_poisoned(&self.periods).rates();
        let (mut cache_pages, mut cache_capacity, mut cache_allocated_bytes) = (0, 0, 0);
        for shard in self.shards.iter() {
            let shard = lock_even_poisoned(&shard.0);
            cache_pages += shard.cache.len();
            cache_capacity += shard.cache.capacity();
            cache_allocated_bytes += shard.cache.allocated_bytes();
        }
        let Snapshot { stage, generation } = self.progress.now();
        SenderStats {
            xbzrle_cache: XbzrleCacheStats {
                cache_size: self.cache_size.load(Relaxed),
                bytes: c.xbzrle_bytes,
                pages: c.hits,
                cache_miss: c.misses,
                cache_miss_rate,
                encoding_rate,
                overflow: c.overflow,
            },
            stage,
            generation,
            pages_processed: c.processed,
            zero_pages: c.zero,
            raw_pages: c.raw,
            xbzrle_pages: c.xbzrle,
            skipped_pages: c.skipped,
            wire_bytes: c.wire_bytes,
            cache_pages,
            cache_capacity,
            cache_allocated_bytes,
        }
    }

    /// Bytes of page data all cache shards have allocated (never above the budget).
    pub fn cache_allocated_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock_even_poisoned(&s.0).cache.allocated_bytes())
            .sum()
    }

    /// A copy of the cached page and its age, if `page` is cached (for inspection and
    /// tests; does not count as a use).
    pub fn cached_page(&self, page: u64) -> Option<(Vec<u8>, u64)> {
        let mut copy = vec![0; self.page_size];
        let age = self.copy_cached_page(page, &mut copy)?;
        Some((copy, age))
    }

    /// Copies the cached copy of `page` into `out` and returns its age, if `page` is cached
    /// (for inspection and tests, e.g. to check that the cache matches the receiver; does
    /// not count as a use). `out` is untouched when it is not cached.
    ///
    /// # Panics
    /// If `out` is not one page long.
    pub fn copy_cached_page(&self, page: u64, out: &mut [u8]) -> Option<u64> {
        assert_eq!(out.len(), self.page_size, "copy_cached_page needs one page");
        let shard = lock_even_poisoned(self.shard_of(page));
        let key = self.shard_key(page);
        out.copy_from_slice(shard.cache.get(key)?);
        shard.cache.age(key)
    }
}

/// Locks `mutex` even if a thread panicked while holding it: for reading counters and
/// sizes, which stay meaningful.
fn lock_even_poisoned<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes the zero-page record of `page` at the start of `out` (at least
/// [`ZERO_RECORD_LEN`] bytes).
fn zero_record(out: &mut [u8], page: u64) -> Sent {
    write_header(out, FLAG_ZERO, page);
    out[HEADER_LEN] = 0;
    Sent {
        action: Action::Zero,
        record_len: ZERO_RECORD_LEN,
    }
}

/// Completes the XBZRLE record of `page` whose delta of `n` bytes is in place after both
/// headers.
fn xbzrle_record(out: &mut [u8], page: u64, n: usize) -> Sent {
    write_header(out, FLAG_XBZRLE, page);
    // n <= the delta capacity <= u16::MAX.
    write_payload_header(&mut out[HEADER_LEN..], u16::try_from(n).unwrap_or(u16::MAX));
    Sent {
        action: Action::Xbzrle,
        record_len: HEADER_LEN + XBZRLE_PAYLOAD_HEADER_LEN + n,
    }
}

fn is_zero(data: &[u8]) -> bool {
    data.chunks(256)
        .all(|chunk| chunk.iter().fold(0, |acc, &b| acc | b) == 0)
}
