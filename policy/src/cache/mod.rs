//! Page caches: the copies of sent pages that XBZRLE encodes against.
//!
//! Every cache implements [`PageCache`]. Keys are page numbers (address / page size).
//! Page data lives in one lazily made allocation per cache: nothing is allocated until the
//! first insertion, and the allocation is zero-initialised (`calloc`), so the operating
//! system commits memory only for the slots actually written. The page data never
//! exceeds the configured budget ([`PageCache::allocated_bytes`] `<=`
//! [`PageCache::configured_bytes`]); metadata (24 to 32 bytes per slot) is extra, as in QEMU.

mod buffer;
mod direct;
mod set_assoc;

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
    /// The generation in which `page` was last used, if cached.
    fn age(&self, page: u64) -> Option<u64>;
    /// Looks `page` up; on a hit its age becomes `generation` and its copy is returned for
    /// in-place refresh (the caller must leave it equal to what the receiver holds).
    fn hit(&mut self, page: u64, generation: u64) -> Option<&mut [u8]>;
    /// Stores `data` (exactly one page) as the copy of `page` with age `generation`,
    /// overwriting an existing copy of the same page. Returns `false`, changing nothing,
    /// when the replacement rule refuses (every candidate slot holds another page that
    /// is protected) or the capacity is 0.
    ///
    /// # Panics
    /// If `data.len() != self.page_size()`.
    fn insert(&mut self, page: u64, data: &[u8], generation: u64) -> bool;
    /// Drops the copy of `page`; returns whether there was one. Page data is not written.
    fn remove(&mut self, page: u64) -> bool;
    /// Changes the budget to `bytes`, keeping the cached pages that still fit (on a
    /// conflict, the one the replacement rule values most; for the direct-mapped cache the
    /// most recently used, like QEMU). Pages are moved inside the single allocation, so at
    /// most one extra page is held during the move.
    fn resize(&mut self, bytes: u64);
}

/// The victim choice of a [`SetAssociativeCache`] when its set is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
    /// # Panics
    /// If `page_size` is 0 or `ways` is 0.
    pub fn build(self, page_size: usize, bytes: u64) -> Box<dyn PageCache> {
        match self {
            Self::DirectMapped => Box::new(DirectMappedCache::new(page_size, bytes)),
            Self::SetAssociative { ways, replacement } => Box::new(SetAssociativeCache::new(
                page_size,
                bytes,
                ways,
                replacement,
            )),
        }
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
