//! QEMU's direct-mapped page cache.

use super::slots::{Placement, Slots, Tag};
use super::{CACHED_PAGE_LIFETIME, pages_in, pow2_floor};
use crate::error::{ConfigError, check_page_size};
use crate::fallible;

/// QEMU-compatible direct-mapped cache: `2^n` slots (the largest power of two of pages that
/// fits the budget), page `p` in slot `p mod 2^n`. An insertion does not evict another page
/// used within [`CACHED_PAGE_LIFETIME`] generations; a hit refreshes the age.
#[derive(Debug)]
pub struct DirectMappedCache {
    slots: Slots<Tag>,
}

impl DirectMappedCache {
    /// An empty cache for pages of `page_size` bytes with a budget of `bytes` (below one
    /// page: a cache that holds nothing).
    ///
    /// The metadata (24 bytes per slot) is allocated and initialised now; the page data is
    /// only reserved and released (to find out whether the allocator could provide it,
    /// without committing memory) and allocated, zeroed, at the first insertion.
    ///
    /// # Errors
    /// [`ConfigError::PageSize`] for a page size of 0 or above `u32::MAX`;
    /// [`ConfigError::OutOfMemory`] when the metadata or the page-data reservation cannot
    /// be allocated (the page data is tried first, so an impossible budget never commits
    /// its metadata).
    pub fn new(page_size: usize, bytes: u64) -> Result<Self, ConfigError> {
        check_page_size(page_size)?;
        Ok(Self {
            slots: Slots::new(page_size, bytes, Self::slots_for(bytes, page_size))?,
        })
    }

    fn slots_for(bytes: u64, page_size: usize) -> usize {
        pow2_floor(pages_in(bytes, page_size)) as usize
    }

    /// The one slot `page` may live in (none when the capacity is 0).
    fn slot(&self, page: u64) -> Option<usize> {
        let slots = self.slots.entries.len() as u64;
        // `slots` is a power of two or 0.
        (slots != 0).then(|| (page & (slots - 1)) as usize)
    }
}

impl Placement for DirectMappedCache {
    type Entry = Tag;

    fn slots(&self) -> &Slots<Tag> {
        &self.slots
    }

    fn slots_mut(&mut self) -> &mut Slots<Tag> {
        &mut self.slots
    }

    fn find(&self, page: u64) -> Option<usize> {
        self.slot(page).filter(|&s| self.slots.holds(s, page))
    }

    fn prefetch_find(&self, page: u64) {
        if let Some(slot) = self.slot(page) {
            xbzrle::prefetch_slice(&self.slots.entries[slot..=slot]);
        }
    }

    fn record_hit(&mut self, slot: usize, generation: u64) {
        self.slots.entries[slot].age = generation;
    }

    fn store(&mut self, page: u64, generation: u64, write: impl FnOnce(&mut [u8])) -> bool {
        let Some(slot) = self.slot(page) else {
            return false;
        };
        let tag = self.slots.entries[slot];
        if tag.valid
            && tag.page != page
            && tag.age.saturating_add(CACHED_PAGE_LIFETIME) > generation
        {
            return false;
        }
        let Some(copy) = self.slots.pages.page_mut(slot) else {
            // The page data could not be allocated: not cached, the page goes raw.
            return false;
        };
        write(copy);
        if !tag.valid {
            self.slots.len += 1;
        }
        self.slots.entries[slot] = Tag::new(page, generation);
        true
    }

    fn relayout(&mut self, bytes: u64) -> Result<(), ConfigError> {
        let new_slots = Self::slots_for(bytes, self.slots.pages.page_size());
        if new_slots == self.slots.entries.len() {
            self.slots.configured = bytes;
            return Ok(());
        }
        // Every allocation first (page data, then metadata), so that a failure changes
        // nothing.
        let (mut tags, plan) = self.slots.prepare(new_slots)?;
        let mut sources = fallible::filled(new_slots, usize::MAX)?;
        let mut moves = fallible::with_capacity(self.slots.len.min(new_slots))?;
        // Old slots in ascending order; on a collision keep the most recently used, the
        // earlier slot on a tie (QEMU's cache_resize keeps the entry already placed).
        if new_slots != 0 {
            let mask = new_slots as u64 - 1;
            for (src, &tag) in self.slots.entries.iter().enumerate() {
                if !tag.valid {
                    continue;
                }
                let dst = (tag.page & mask) as usize;
                if !tags[dst].valid || tags[dst].age < tag.age {
                    tags[dst] = tag;
                    sources[dst] = src;
                }
            }
        }
        moves.extend(
            sources
                .iter()
                .enumerate()
                .filter(|&(_, &src)| src != usize::MAX)
                .map(|(dst, &src)| (src, dst)),
        );
        self.slots.commit(bytes, tags, plan, &moves);
        Ok(())
    }
}
