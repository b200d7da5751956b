//! QEMU's direct-mapped page cache.

use super::buffer::PageBuffer;
use super::{CACHED_PAGE_LIFETIME, PageCache, pages_in, pow2_floor};
use crate::config::{ConfigError, check_page_size};
use crate::fallible;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    page: u64,
    age: u64,
    valid: bool,
}

/// QEMU-compatible direct-mapped cache: `2^n` slots (the largest power of two of pages that
/// fits the budget), page `p` in slot `p mod 2^n`. An insertion does not evict another page
/// used within [`CACHED_PAGE_LIFETIME`] generations; a hit refreshes the age.
#[derive(Debug)]
pub struct DirectMappedCache {
    configured: u64,
    entries: Vec<Entry>,
    pages: PageBuffer,
    len: usize,
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
        let slots = Self::slots_for(bytes, page_size);
        let pages = PageBuffer::new(page_size, slots)?;
        Ok(Self {
            configured: bytes,
            entries: fallible::filled(slots, Entry::default())?,
            pages,
            len: 0,
        })
    }

    fn slots_for(bytes: u64, page_size: usize) -> usize {
        pow2_floor(pages_in(bytes, page_size)) as usize
    }

    fn slot(&self, page: u64) -> Option<usize> {
        let slots = self.entries.len() as u64;
        // `slots` is a power of two or 0.
        (slots != 0).then(|| (page & (slots - 1)) as usize)
    }

    fn find(&self, page: u64) -> Option<usize> {
        self.slot(page)
            .filter(|&s| self.entries[s].valid && self.entries[s].page == page)
    }

    /// [`PageCache::insert`] with the new content written by `write` into the slot.
    fn store(&mut self, page: u64, generation: u64, write: impl FnOnce(&mut [u8])) -> bool {
        let Some(slot) = self.slot(page) else {
            return false;
        };
        let entry = self.entries[slot];
        if entry.valid
            && entry.page != page
            && entry.age.saturating_add(CACHED_PAGE_LIFETIME) > generation
        {
            return false;
        }
        let Some(copy) = self.pages.page_mut(slot) else {
            // The page data could not be allocated: not cached, the page goes raw.
            return false;
        };
        write(copy);
        if !entry.valid {
            self.len += 1;
        }
        self.entries[slot] = Entry {
            page,
            age: generation,
            valid: true,
        };
        true
    }
}

impl PageCache for DirectMappedCache {
    fn page_size(&self) -> usize {
        self.pages.page_size()
    }

    fn configured_bytes(&self) -> u64 {
        self.configured
    }

    fn capacity(&self) -> usize {
        self.entries.len()
    }

    fn allocated_bytes(&self) -> usize {
        self.pages.allocated_bytes()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, page: u64) -> Option<&[u8]> {
        self.find(page).map(|s| self.pages.page(s))
    }

    fn age(&self, page: u64) -> Option<u64> {
        self.find(page).map(|s| self.entries[s].age)
    }

    fn hit(&mut self, page: u64, generation: u64) -> Option<&mut [u8]> {
        let slot = self.find(page)?;
        self.entries[slot].age = generation;
        // A valid entry implies the buffer is allocated, so this is always `Some`.
        self.pages.page_mut(slot)
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
        self.entries[slot].valid = false;
        self.len -= 1;
        true
    }

    fn resize(&mut self, bytes: u64) -> Result<(), ConfigError> {
        let new_slots = Self::slots_for(bytes, self.page_size());
        if new_slots == self.entries.len() {
            self.configured = bytes;
            return Ok(());
        }
        // Every allocation first (page data, then metadata), so that a failure changes
        // nothing.
        let plan = self.pages.prepare(new_slots)?;
        let mut entries = fallible::filled(new_slots, Entry::default())?;
        let mut sources = fallible::filled(new_slots, usize::MAX)?;
        let mut moves = fallible::with_capacity(self.len.min(new_slots))?;
        // Old slots in ascending order; on a collision keep the most recently used, the
        // earlier slot on a tie (QEMU's cache_resize keeps the entry already placed).
        if new_slots != 0 {
            let mask = new_slots as u64 - 1;
            for (src, &entry) in self.entries.iter().enumerate() {
                if !entry.valid {
                    continue;
                }
                let dst = (entry.page & mask) as usize;
                if !entries[dst].valid || entries[dst].age < entry.age {
                    entries[dst] = entry;
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
        self.pages.relayout(plan, &moves);
        self.entries = entries;
        self.len = moves.len();
        self.configured = bytes;
        Ok(())
    }
}
