//! Page caches: the copies of sent pages that XBZRLE encodes against.
//!
//! Every cache implements [`PageCache`]. Keys are page numbers (address / page size).
//! Page data lives in one lazily made allocation per cache: nothing is allocated until the
//! first insertion, and the allocation is zero-initialised (`calloc`), so the operating
//! system commits memory only for the slots actually written. The page data never
//! exceeds the configured budget ([`PageCache::allocated_bytes`] `<=`
//! [`PageCache::configured_bytes`]); metadata (24 to 40 bytes per slot) is extra, as in QEMU.
//!
//! # Allocation failure
//! Nothing here aborts or panics on a size. Construction and [`PageCache::resize`] allocate
//! the metadata with fallible allocations and check that the page data could be allocated
//! (reserved and released at once, never written, so nothing is committed), returning
//! [`ConfigError::OutOfMemory`] otherwise. When the page data is then allocated at the first
//! insertion and the allocator refuses it after all, the insertion returns `false` (the
//! page is not cached and goes raw, as in QEMU when `g_try_malloc` fails in
//! `cache_insert`); later insertions try again.
//!
//! Remaining limits: safe Rust has no fallible *zeroed* allocation, so the zeroed
//! allocation is made right after a successful fallible reservation of the same size; only
//! if another thread takes that memory in between can it still fail, and that aborts. And
//! with the operating system's overcommit (Linux's default), an allocation that succeeds
//! may still find no RAM when its pages are first written; no allocator API can report that
//! (the kernel's OOM killer acts instead), and it concerns only pages actually written.

mod buffer;
mod direct;
mod set_assoc;
mod slots;

use crate::error::ConfigError;
use crate::fallible;

pub use direct::DirectMappedCache;
pub use set_assoc::SetAssociativeCache;

/// An entry used within this many dirty-sync generations is not evicted by another page
/// (QEMU's `CACHED_PAGE_LIFETIME`): with current generation `g`, entries of age `g` and
/// `g - 1` are protected.
pub const CACHED_PAGE_LIFETIME: u64 = 2;

/// A cache of page copies keyed by page number.
///
/// Generations are the sender's dirty-sync count; callers pass non-decreasing values.
pub trait PageCache: Send {
    /// Page size in bytes.
    fn page_size(&self) -> usize;
    /// Page-data budget in bytes, as configured.
    fn configured_bytes(&self) -> u64;
    /// How many pages fit (a power of two times the associativity, at most
    /// `configured_bytes / page_size`).
    fn capacity(&self) -> usize;
    /// Bytes of page data allocated right now: 0 before the first insertion, then
    /// `capacity() * page_size()`; never above [`Self::configured_bytes`].
    fn allocated_bytes(&self) -> usize;
    /// Number of pages cached.
    fn len(&self) -> usize;
    /// Whether no page is cached.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The cached copy of `page`, without touching its age.
    fn get(&self, page: u64) -> Option<&[u8]>;
    /// The cached copy of `page` for writing, without touching its age (QEMU's
    /// `get_cached_data`, through which QEMU refreshes a copy after encoding). The caller
    /// must leave it equal to what the receiver holds.
    ///
    /// Where the copy lives: the page data of a cache is one allocation, made at the first
    /// insertion and moved only by [`Self::resize`], so the copy's address stays the same
    /// until a resize or the cache's drop; its content is replaced when its slot is given
    /// to another page.
    fn get_mut(&mut self, page: u64) -> Option<&mut [u8]>;
    /// The generation in which `page` was last used, if cached.
    fn age(&self, page: u64) -> Option<u64>;
    /// Looks `page` up; on a hit its age becomes `generation` and its copy is returned for
    /// in-place refresh (the caller must leave it equal to what the receiver holds).
    fn hit(&mut self, page: u64, generation: u64) -> Option<&mut [u8]>;
    /// Stores `data` (exactly one page) as the copy of `page` with age `generation`,
    /// overwriting an existing copy of the same page. Returns `false`, changing nothing,
    /// when the replacement rule refuses (every candidate slot holds another page that
    /// is protected), the capacity is 0, or the page data (allocated at the first
    /// insertion) cannot be allocated.
    ///
    /// # Panics
    /// If `data.len() != self.page_size()`.
    fn insert(&mut self, page: u64, data: &[u8], generation: u64) -> bool;
    /// Like [`Self::insert`] with an all-zero page as `data`: what a zero-page record
    /// leaves on the receiver (QEMU's `xbzrle_cache_zero_page`), for a caller that knows
    /// the page is zero without holding its bytes. Same replacement rule, same result.
    ///
    /// The provided implementation allocates a zeroed page (returning `false` if that
    /// allocation fails) and calls [`Self::insert`]; the crate's caches override it to fill
    /// the slot in place, allocating nothing per call.
    fn insert_zero(&mut self, page: u64, generation: u64) -> bool {
        match fallible::zeroed(self.page_size()) {
            Ok(zeros) => self.insert(page, &zeros, generation),
            Err(_) => false,
        }
    }
    /// Drops the copy of `page`; returns whether there was one. Page data is not written.
    fn remove(&mut self, page: u64) -> bool;
    /// Asks the CPU to start loading the bytes `at..at + len` (clamped to the page) of the
    /// cached copy of `page`, if it is cached, into its caches, because they will be used
    /// soon: the sender calls it for the page it saves and, in a batch, for the next one.
    /// Finding the copy reads the lookup's metadata and the slot's (where the copy lies).
    /// Changes nothing; the provided implementation does nothing.
    fn prefetch(&self, page: u64, at: usize, len: usize) {
        let _ = (page, at, len);
    }
    /// Asks the CPU to start loading the metadata of the slot holding `page`, if it is
    /// cached, because [`PageCache::prefetch`] of `page` comes soon (it reads where the copy
    /// lies, and a hit writes the slot's age): a batch of saves calls it for the page after
    /// the next one. The lookup reads what [`PageCache::prefetch_lookup`] asked for earlier.
    /// Changes nothing; the provided implementation does nothing.
    fn prefetch_slot(&self, page: u64) {
        let _ = page;
    }
    /// Asks the CPU to start loading what a lookup of `page` reads (its slot's metadata, or
    /// its set's keys), because `page` is looked up soon: a batch of saves calls it for the
    /// third page ahead, so that [`PageCache::prefetch_slot`] and [`PageCache::prefetch`] of
    /// the pages before it do not wait for memory. Changes nothing; the provided
    /// implementation does nothing.
    fn prefetch_lookup(&self, page: u64) {
        let _ = page;
    }
    /// Changes the budget to `bytes`, keeping the cached pages that still fit (on a
    /// conflict, the one the replacement rule values most; for the direct-mapped cache the
    /// most recently used, like QEMU).
    ///
    /// Page data held during the call: when the capacity shrinks, pages move inside the
    /// single allocation with one page of scratch. When it grows and page data is already
    /// allocated, a new zeroed allocation (committed only where written) receives the kept
    /// pages before the old one is released, so the committed page data peaks at the old
    /// allocation plus the kept pages, at most twice the old allocation: within the new
    /// budget whenever the capacity at least doubles, which is always the case for the
    /// direct-mapped cache and for a set-associative cache that held at least `ways` pages
    /// (both have a power-of-two number of sets). After the call the new budget holds.
    ///
    /// # Errors
    /// [`ConfigError::OutOfMemory`] when the new metadata, the new page data (or its
    /// reservation, if not allocated yet) or the scratch space cannot be allocated. Every
    /// allocation is made before anything changes, so on error the cache is exactly as it
    /// was, its budget included.
    fn resize(&mut self, bytes: u64) -> Result<(), ConfigError>;
}

/// The victim choice of a [`SetAssociativeCache`] when its set is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Replacement {
    /// Evict the least recently used entry, whatever its age.
    Lru,
    /// QEMU's rule inside a set: entries used within [`CACHED_PAGE_LIFETIME`] generations
    /// are protected; evict the least recently used of the others, or refuse.
    Lifetime,
    /// Protect like [`Replacement::Lifetime`]; among the others evict the entry with the
    /// fewest hits, its hit count halved for every generation it went unused (ties: least
    /// recently used). The default: see the crate README for the measurements.
    #[default]
    Frequency,
}

/// Cache organisation, as chosen in [`SenderConfig`](crate::SenderConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CacheKind {
    /// QEMU's direct-mapped cache ([`DirectMappedCache`]).
    #[default]
    DirectMapped,
    /// A [`SetAssociativeCache`] with `ways` entries per set.
    SetAssociative {
        /// Entries per set (at least 1).
        ways: usize,
        /// Victim choice.
        replacement: Replacement,
    },
}

impl CacheKind {
    /// Builds an empty cache of this kind.
    ///
    /// # Errors
    /// As [`DirectMappedCache::new`] and [`SetAssociativeCache::new`]: a page size of 0 or
    /// above `u32::MAX`, 0 ways, or [`ConfigError::OutOfMemory`].
    pub fn build(self, page_size: usize, bytes: u64) -> Result<Box<dyn PageCache>, ConfigError> {
        Ok(match self {
            Self::DirectMapped => Box::new(DirectMappedCache::new(page_size, bytes)?),
            Self::SetAssociative { ways, replacement } => Box::new(SetAssociativeCache::new(
                page_size,
                bytes,
                ways,
                replacement,
            )?),
        })
    }
}

/// Largest power of two not above `n` (0 for 0).
fn pow2_floor(n: u64) -> u64 {
    if n == 0 { 0 } else { 1 << n.ilog2() }
}

/// Pages of `page_size` bytes that fit in `bytes`, at most `usize::MAX` (so that it
/// converts to `usize` losslessly).
fn pages_in(bytes: u64, page_size: usize) -> u64 {
    (bytes / page_size as u64).min(usize::MAX as u64)
}
