//! One lazily made allocation holding every page slot of a cache.

/// Page slots `0..slots`, each `page_size` bytes, in one `Vec` made on first write.
#[derive(Debug)]
pub(super) struct PageBuffer {
    page_size: usize,
    slots: usize,
    data: Vec<u8>,
}

const NO_MOVE: usize = usize::MAX;

impl PageBuffer {
    pub(super) fn new(page_size: usize, slots: usize) -> Self {
        assert!(page_size > 0, "page size must not be 0");
        Self {
            page_size,
            slots,
            data: Vec::new(),
        }
    }

    pub(super) fn page_size(&self) -> usize {
        self.page_size
    }

    pub(super) fn allocated_bytes(&self) -> usize {
        self.data.len()
    }

    /// Slot contents. Only called for slots holding a valid entry, which implies the
    /// buffer was allocated.
    pub(super) fn page(&self, slot: usize) -> &[u8] {
        &self.data[slot * self.page_size..][..self.page_size]
    }

    /// Slot contents for writing; allocates the buffer on first use.
    pub(super) fn page_mut(&mut self, slot: usize) -> &mut [u8] {
        if self.data.is_empty() {
            // `vec![0; n]` uses a zeroed allocation: the OS commits pages only when written.
            self.data = vec![0; self.slots * self.page_size];
        }
        &mut self.data[slot * self.page_size..][..self.page_size]
    }

    /// Changes the slot count to `new_slots` and moves page `src` to `dst` for every
    /// `(src, dst)` in `moves` (destinations distinct, all below `new_slots`; sources below
    /// the old count). Slots not named as a destination hold unspecified bytes afterwards.
    /// Works in place with one page of scratch, so the page data held never exceeds
    /// `max(old, new)` slots plus one page.
    pub(super) fn relayout(&mut self, new_slots: usize, moves: &[(usize, usize)]) {
        if self.data.is_empty() {
            self.slots = new_slots;
            return;
        }
        let page_size = self.page_size;
        if new_slots > self.slots {
            self.data.resize(new_slots * page_size, 0);
        }
        let span = self.slots.max(new_slots);
        let mut dst_of = vec![NO_MOVE; span];
        for &(src, dst) in moves {
            if src != dst {
                dst_of[src] = dst;
            }
        }
        let mut carried = vec![0; page_size];
        for src in 0..span {
            let mut dst = core::mem::replace(&mut dst_of[src], NO_MOVE);
            if dst == NO_MOVE {
                continue;
            }
            carried.copy_from_slice(&self.data[src * page_size..][..page_size]);
            loop {
                let slot = &mut self.data[dst * page_size..][..page_size];
                let next = core::mem::replace(&mut dst_of[dst], NO_MOVE);
                if next == NO_MOVE {
                    slot.copy_from_slice(&carried);
                    break;
                }
                // `dst` still holds a page bound elsewhere: swap it out and carry it on.
                carried.swap_with_slice(slot);
                dst = next;
            }
        }
        if new_slots < self.slots {
            self.data.truncate(new_slots * page_size);
            self.data.shrink_to_fit();
        }
        self.slots = new_slots;
    }
}
