//! What both caches share: their slot state, and the [`PageCache`] operations written once
//! on top of the one thing that differs, where a page may live.

use xbzrle::PageSource;

use super::PageCache;
use super::buffer::{PageBuffer, Relayout};
use crate::error::ConfigError;
use crate::fallible;

/// Which page a slot holds and when it was last used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tag {
    /// Page number.
    pub(super) page: u64,
    /// Generation of the last use.
    pub(super) age: u64,
    /// Whether the slot holds a page at all.
    pub(super) valid: bool,
}

// The size documented on `DirectMappedCache::new` (where `u64` is 8-byte aligned).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<Tag>() == 24);

impl Tag {
    /// The tag of `page`, just used in `generation`.
    pub(super) fn new(page: u64, generation: u64) -> Self {
        Self {
            page,
            age: generation,
            valid: true,
        }
    }

    /// Whether this slot holds `page`.
    pub(super) fn holds(&self, page: u64) -> bool {
        self.valid && self.page == page
    }
}

/// Per-slot metadata: a [`Tag`], perhaps with more.
pub trait SlotEntry: Copy + Default {
    /// The slot's tag.
    fn tag(&self) -> Tag;

    /// Marks the slot empty.
    fn invalidate(&mut self);
}

impl SlotEntry for Tag {
    fn tag(&self) -> Tag {
        *self
    }

    fn invalidate(&mut self) {
        self.valid = false;
    }
}

/// A cache's slots: its budget, per-slot metadata `E`, the page data and the number of
/// valid slots.
#[derive(Debug)]
pub struct Slots<E> {
    /// Page-data budget in bytes, as configured.
    pub(super) configured: u64,
    /// Metadata of slot `i` at index `i`.
    pub(super) entries: Vec<E>,
    /// Page data of slot `i` at slot `i`.
    pub(super) pages: PageBuffer,
    /// Valid slots.
    pub(super) len: usize,
}

impl<E: SlotEntry> Slots<E> {
    /// `count` empty slots of `page_size` bytes for a budget of `bytes`: the page data is
    /// checked first (reserved and released, see [`PageBuffer::new`]), then the metadata
    /// is allocated.
    pub(super) fn new(page_size: usize, bytes: u64, count: usize) -> Result<Self, ConfigError> {
        let pages = PageBuffer::new(page_size, count)?;
        Ok(Self {
            configured: bytes,
            entries: fallible::filled(count, E::default())?,
            pages,
            len: 0,
        })
    }

    /// Whether slot `slot` holds `page`.
    pub(super) fn holds(&self, slot: usize, page: u64) -> bool {
        self.entries[slot].tag().holds(page)
    }

    /// Fresh, all-empty metadata for `count` slots and the page-data plan to go with it:
    /// everything a resize allocates, made before anything changes.
    pub(super) fn prepare(&self, count: usize) -> Result<(Vec<E>, Relayout), ConfigError> {
        let plan = self.pages.prepare(count)?;
        Ok((fallible::filled(count, E::default())?, plan))
    }

    /// Ends a resize to `bytes`: `entries` (already filled for the kept pages) becomes the
    /// metadata, and the page data at page `src` of the buffer moves to page `dst` for every
    /// `(src, dst)` of `moves`, one per kept page.
    pub(super) fn commit(
        &mut self,
        bytes: u64,
        entries: Vec<E>,
        plan: Relayout,
        moves: &[(usize, usize)],
    ) {
        self.pages.relayout(plan, moves);
        self.entries = entries;
        self.len = moves.len();
        self.configured = bytes;
    }
}

/// Where a cache places pages; every [`PageCache`] operation that does not depend on it is
/// implemented once, below. Declared `pub` (as the blanket implementation of a public trait
/// requires) inside a private module, so no other crate can name or implement it; the same
/// holds for [`SlotEntry`], [`Slots`] and [`Tag`].
pub trait Placement: Send {
    /// Per-slot metadata.
    type Entry: SlotEntry;

    /// The slot state.
    fn slots(&self) -> &Slots<Self::Entry>;

    /// The slot state, mutably.
    fn slots_mut(&mut self) -> &mut Slots<Self::Entry>;

    /// The slot holding `page`, if it is cached.
    fn find(&self, page: u64) -> Option<usize>;

    /// Prefetches what [`Placement::find`] reads for `page` ([`PageCache::prefetch_lookup`]).
    fn prefetch_find(&self, page: u64);

    /// Where the page data of slot `slot` lies in the page buffer (in pages). The provided
    /// implementation: at the slot's own index.
    fn data_page(&self, slot: usize) -> usize {
        slot
    }

    /// Records a hit on the valid slot `slot` in `generation` (its tag's age included).
    fn record_hit(&mut self, slot: usize, generation: u64);

    /// Empties the valid slot `slot` (its page data is not written).
    fn forget(&mut self, slot: usize) {
        let slots = self.slots_mut();
        slots.entries[slot].invalidate();
        slots.len -= 1;
    }

    /// [`PageCache::insert`], with the new content written by `write` into the slot.
    fn store(&mut self, page: u64, generation: u64, write: impl FnOnce(&mut [u8])) -> bool;

    /// [`PageCache::resize`].
    fn relayout(&mut self, bytes: u64) -> Result<(), ConfigError>;
}

impl<C: Placement> PageCache for C {
    fn page_size(&self) -> usize {
        self.slots().pages.page_size()
    }

    fn configured_bytes(&self) -> u64 {
        self.slots().configured
    }

    fn capacity(&self) -> usize {
        self.slots().entries.len()
    }

    fn allocated_bytes(&self) -> usize {
        self.slots().pages.allocated_bytes()
    }

    fn len(&self) -> usize {
        self.slots().len
    }

    fn get(&self, page: u64) -> Option<&[u8]> {
        self.find(page)
            .map(|s| self.slots().pages.page(self.data_page(s)))
    }

    fn get_mut(&mut self, page: u64) -> Option<&mut [u8]> {
        let data = self.data_page(self.find(page)?);
        // A valid entry implies the buffer is allocated, so this is always `Some`.
        self.slots_mut().pages.page_mut(data)
    }

    fn age(&self, page: u64) -> Option<u64> {
        self.find(page).map(|s| self.slots().entries[s].tag().age)
    }

    fn hit(&mut self, page: u64, generation: u64) -> Option<&mut [u8]> {
        let slot = self.find(page)?;
        self.record_hit(slot, generation);
        let data = self.data_page(slot);
        // A valid entry implies the buffer is allocated, so this is always `Some`.
        self.slots_mut().pages.page_mut(data)
    }

    fn insert(&mut self, page: u64, data: &[u8], generation: u64) -> bool {
        assert_eq!(
            data.len(),
            self.page_size(),
            "insert needs exactly one page"
        );
        self.store(page, generation, |copy| copy.copy_from_slice(data))
    }

    fn insert_zero(&mut self, page: u64, generation: u64) -> bool {
        self.store(page, generation, |copy| copy.fill(0))
    }

    fn remove(&mut self, page: u64) -> bool {
        let Some(slot) = self.find(page) else {
            return false;
        };
        self.forget(slot);
        true
    }

    fn resize(&mut self, bytes: u64) -> Result<(), ConfigError> {
        self.relayout(bytes)
    }

    fn prefetch(&self, page: u64, at: usize, len: usize) {
        if let Some(slot) = self.find(page) {
            // Finding the data reads the slot's metadata (which a hit writes) if the lookup
            // has not.
            let data = self.data_page(slot);
            self.slots().pages.page(data).prefetch(at, len);
        }
    }

    fn prefetch_slot(&self, page: u64) {
        if let Some(slot) = self.find(page) {
            xbzrle::prefetch_slice(&self.slots().entries[slot..=slot]);
        }
    }

    fn prefetch_lookup(&self, page: u64) {
        self.prefetch_find(page);
    }
}
