//! Set-associative page cache with a choice of replacement rule.

use super::slots::{Placement, SlotEntry, Slots, Tag};
use super::{CACHED_PAGE_LIFETIME, Replacement, pages_in, pow2_floor};
use crate::error::{ConfigError, check_page_size};
use crate::fallible;

/// Hit counts saturate here; halving per idle generation brings them back down quickly.
const MAX_HITS: u8 = 15;

/// The key of an empty slot (page numbers are below `u64::MAX / page size`).
const NO_PAGE: u64 = u64::MAX;

/// The data page of a slot that never held a page.
const NO_DATA: u32 = u32::MAX;

/// Most slots of a cache: data pages are numbered below [`NO_DATA`] (a budget beyond
/// 2^32 − 1 pages, 16 TiB of 4 KiB pages, is not used).
const MAX_SLOTS: u64 = NO_DATA as u64;

/// One slot's metadata (32 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    page: u64,
    age: u64,
    /// Value of the cache's use counter at the last hit or insertion (recency order).
    last_use: u64,
    /// Where the slot's page data lies in the page buffer: given when the slot is first
    /// filled and kept by the slot (valid or not) until a resize, [`NO_DATA`] before.
    data: u32,
    hits: u8,
    valid: bool,
}

impl Default for Entry {
    fn default() -> Self {
        Self {
            page: NO_PAGE,
            age: 0,
            last_use: 0,
            data: NO_DATA,
            hits: 0,
            valid: false,
        }
    }
}

// The size documented on `SetAssociativeCache::new` (where `u64` is 8-byte aligned).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<Entry>() == 32);

impl SlotEntry for Entry {
    fn tag(&self) -> Tag {
        Tag {
            page: self.page,
            age: self.age,
            valid: self.valid,
        }
    }

    fn invalidate(&mut self) {
        self.valid = false;
    }
}

/// Set-associative cache: `2^n` sets of `ways` entries; page `p` may live in any way of set
/// `p mod 2^n`. When the set is full, the [`Replacement`] rule picks the victim (or
/// refuses). With `ways == 1` and [`Replacement::Lifetime`], lookups and insertions behave
/// like [`DirectMappedCache`](super::DirectMappedCache)'s (resize breaks ties differently).
///
/// A lookup reads only the page numbers of the set, which lie next to each other (16 ways:
/// two cache lines), then the metadata of the way it hits; the other metadata of the set is
/// read only to choose a victim.
///
/// Page copies lie in the order their slots were first filled, not in slot order: a slot's
/// entry holds where its copy is, and an empty slot that never held a page is given the next
/// unused page of the buffer. Neighbouring pages go to different sets, so in slot order
/// their copies would lie a set's worth of pages apart; filled in the order of a pass over
/// the dirty bitmap, the copies of neighbouring pages lie side by side, as they do in a
/// direct-mapped cache, and a later pass reads them in the order they lie (at guest-RAM
/// scale that made the sender 1.09–1.27× faster; BENCHMARKS.md). A slot keeps its copy's
/// place when its page is evicted or removed; a resize places the kept copies afresh, in
/// set order.
#[derive(Debug)]
pub struct SetAssociativeCache {
    slots: Slots<Entry>,
    /// The page number of every valid slot, [`NO_PAGE`] for an empty one: the lookup index.
    keys: Vec<u64>,
    /// Ways requested; `ways` is lower only when the budget holds fewer pages.
    requested_ways: usize,
    ways: usize,
    sets: usize,
    replacement: Replacement,
    uses: u64,
    generation: u64,
    /// Pages of the buffer given to slots so far: the next one filled gets this one.
    data_given: u32,
}

impl SetAssociativeCache {
    /// An empty cache for pages of `page_size` bytes, a budget of `bytes`, `ways` entries
    /// per set (fewer if the budget holds fewer pages) and the given victim choice.
    ///
    /// The metadata (40 bytes per entry: 32 of state and an 8-byte lookup key) is allocated
    /// and initialised now; the page data is only reserved and released (to find out whether
    /// the allocator could provide it, without committing memory) and allocated, zeroed, at
    /// the first insertion. At most 2^32 − 1 pages are used, whatever the budget.
    ///
    /// # Errors
    /// [`ConfigError::PageSize`] for a page size of 0 or above `u32::MAX`;
    /// [`ConfigError::Ways`] for 0 ways; [`ConfigError::OutOfMemory`] when the metadata or
    /// the page-data reservation cannot be allocated (the page data is tried first).
    pub fn new(
        page_size: usize,
        bytes: u64,
        ways: usize,
        replacement: Replacement,
    ) -> Result<Self, ConfigError> {
        check_page_size(page_size)?;
        if ways == 0 {
            return Err(ConfigError::Ways(ways));
        }
        let (sets, eff_ways) = Self::layout(bytes, page_size, ways);
        Ok(Self {
            slots: Slots::new(page_size, bytes, sets * eff_ways)?,
            keys: fallible::filled(sets * eff_ways, NO_PAGE)?,
            requested_ways: ways,
            ways: eff_ways,
            sets,
            replacement,
            uses: 0,
            generation: 0,
            data_given: 0,
        })
    }

    /// Entries per set actually used (the configured ways, or fewer for a tiny budget).
    pub fn ways(&self) -> usize {
        self.ways
    }

    /// Number of sets (a power of two, or 0 when not even one page fits).
    pub fn sets(&self) -> usize {
        self.sets
    }

    /// The victim choice.
    pub fn replacement(&self) -> Replacement {
        self.replacement
    }

    fn layout(bytes: u64, page_size: usize, ways: usize) -> (usize, usize) {
        let pages = pages_in(bytes, page_size).min(MAX_SLOTS);
        let ways = (ways as u64).min(pages);
        if ways == 0 {
            return (0, 0);
        }
        let sets = pow2_floor(pages / ways);
        // sets * ways <= pages <= usize::MAX: the product does not overflow.
        (sets as usize, ways as usize)
    }

    fn set_range(&self, page: u64) -> Option<core::ops::Range<usize>> {
        (self.sets != 0).then(|| {
            let set = (page & (self.sets as u64 - 1)) as usize;
            set * self.ways..(set + 1) * self.ways
        })
    }

    /// Marks a use: new age, most recent; `hit` also counts a hit.
    fn touch(&mut self, slot: usize, generation: u64, hit: bool) {
        self.uses += 1;
        self.generation = self.generation.max(generation);
        let entry = &mut self.slots.entries[slot];
        entry.age = generation;
        entry.last_use = self.uses;
        if hit {
            entry.hits = (entry.hits + 1).min(MAX_HITS);
        }
    }

    fn protected(&self, entry: &Entry, generation: u64) -> bool {
        match self.replacement {
            Replacement::Lru => false,
            Replacement::Lifetime | Replacement::Frequency => {
                entry.age.saturating_add(CACHED_PAGE_LIFETIME) > generation
            }
        }
    }

    /// Ordering key: the entry with the smallest key is evicted first.
    fn keep_key(&self, entry: &Entry, generation: u64) -> (u64, u64) {
        match self.replacement {
            Replacement::Lru | Replacement::Lifetime => (0, entry.last_use),
            Replacement::Frequency => {
                // A page last used in the previous generation is not idle.
                let idle = generation
                    .saturating_sub(entry.age.saturating_add(1))
                    .min(8);
                (u64::from(entry.hits) >> idle, entry.last_use)
            }
        }
    }

    fn victim(&self, set: core::ops::Range<usize>, generation: u64) -> Option<usize> {
        if let Some(free) = set.clone().find(|&i| !self.slots.entries[i].valid) {
            return Some(free);
        }
        let entries = &self.slots.entries;
        set.filter(|&i| !self.protected(&entries[i], generation))
            .min_by_key(|&i| self.keep_key(&entries[i], generation))
    }
}

impl Placement for SetAssociativeCache {
    type Entry = Entry;

    fn slots(&self) -> &Slots<Entry> {
        &self.slots
    }

    fn slots_mut(&mut self) -> &mut Slots<Entry> {
        &mut self.slots
    }

    fn find(&self, page: u64) -> Option<usize> {
        let set = self.set_range(page)?;
        let start = set.start;
        // A page number can never be `NO_PAGE`, so an empty slot never matches.
        self.keys[set]
            .iter()
            .position(|&key| key == page)
            .map(|way| start + way)
    }

    fn prefetch_find(&self, page: u64) {
        if let Some(set) = self.set_range(page) {
            xbzrle::prefetch_slice(&self.keys[set]);
        }
    }

    fn data_page(&self, slot: usize) -> usize {
        self.slots.entries[slot].data as usize
    }

    fn record_hit(&mut self, slot: usize, generation: u64) {
        self.touch(slot, generation, true);
    }

    fn forget(&mut self, slot: usize) {
        self.keys[slot] = NO_PAGE;
        self.slots.entries[slot].invalidate();
        self.slots.len -= 1;
    }

    fn store(&mut self, page: u64, generation: u64, write: impl FnOnce(&mut [u8])) -> bool {
        let slot = match self.find(page) {
            Some(slot) => {
                // Rewriting a cached page (zero page, bulk resend) is a use of it.
                self.touch(slot, generation, true);
                slot
            }
            None => {
                let Some(set) = self.set_range(page) else {
                    return false;
                };
                let Some(slot) = self.victim(set, generation) else {
                    return false;
                };
                if !self.slots.pages.allocate() {
                    // The page data could not be allocated: not cached, the page goes raw.
                    return false;
                }
                let old = self.slots.entries[slot];
                if !old.valid {
                    self.slots.len += 1;
                }
                let data = if old.data == NO_DATA {
                    // Fewer pages were given than there are slots (one per slot), and the
                    // slots number at most `MAX_SLOTS`: no overflow, and below `NO_DATA`.
                    self.data_given += 1;
                    self.data_given - 1
                } else {
                    old.data
                };
                self.slots.entries[slot] = Entry {
                    page,
                    data,
                    valid: true,
                    ..Entry::default()
                };
                self.keys[slot] = page;
                self.touch(slot, generation, false);
                slot
            }
        };
        // Allocated: a valid entry exists or `allocate` succeeded above.
        let data = self.data_page(slot);
        if let Some(copy) = self.slots.pages.page_mut(data) {
            write(copy);
        }
        true
    }

    fn relayout(&mut self, bytes: u64) -> Result<(), ConfigError> {
        let (sets, ways) = Self::layout(bytes, self.slots.pages.page_size(), self.requested_ways);
        if sets == self.sets && ways == self.ways {
            self.slots.configured = bytes;
            return Ok(());
        }
        // Every allocation first (page data, then metadata), so that a failure changes
        // nothing.
        let (mut entries, plan) = self.slots.prepare(sets * ways)?;
        let mut keys = fallible::filled(sets * ways, NO_PAGE)?;
        let mut filled = fallible::filled(sets, 0usize)?;
        let mut survivors: Vec<(usize, (u64, u64), usize)> =
            fallible::with_capacity(self.slots.len)?;
        let mut moves = fallible::with_capacity(self.slots.len.min(sets * ways))?;
        let generation = self.generation;
        // (new set, keep key, old slot) for every cached page; best first within a set.
        if sets != 0 {
            let mask = sets as u64 - 1;
            for (src, entry) in self
                .slots
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.valid)
            {
                let set = (entry.page & mask) as usize;
                survivors.push((set, self.keep_key(entry, generation), src));
            }
        }
        survivors.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        // The kept copies take the first pages of the buffer, in set order.
        let mut data_given = 0;
        for (set, _, src) in survivors {
            if filled[set] < ways {
                let dst = set * ways + filled[set];
                filled[set] += 1;
                let old = self.slots.entries[src];
                entries[dst] = Entry {
                    data: data_given,
                    ..old
                };
                keys[dst] = self.keys[src];
                moves.push((old.data as usize, data_given as usize));
                // At most one per new slot, below `MAX_SLOTS`.
                data_given += 1;
            }
        }
        self.slots.commit(bytes, entries, plan, &moves);
        self.data_given = data_given;
        self.keys = keys;
        self.sets = sets;
        self.ways = ways;
        Ok(())
    }
}
