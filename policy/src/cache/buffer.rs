//! One lazily made allocation holding every page slot of a cache.

use crate::error::ConfigError;
use crate::fallible;

/// Where slot 0 starts: at a 4 KiB boundary, so that a slot of a 4 KiB page fills one
/// memory page and 64 cache lines, and the kernels' 64-byte loads never split a line.
/// A large allocation from `malloc` starts 16 bytes past a page boundary, which made every
/// cached copy span two memory pages and 65 lines.
const SLOT_ALIGN: usize = 4096;

/// Zeroed bytes from an allocation `SLOT_ALIGN - 1` bytes longer, starting at its first
/// `SLOT_ALIGN` boundary (the unused head and tail are never written, so never committed).
#[derive(Debug, Default)]
pub(super) struct AlignedBytes {
    data: Vec<u8>,
    /// Offset of the first aligned byte in `data`.
    start: usize,
}

impl AlignedBytes {
    /// `len` zeroed bytes, committed only where written (see [`fallible::zeroed`]).
    fn zeroed(len: usize) -> Result<Self, ConfigError> {
        let room = len
            .checked_add(SLOT_ALIGN - 1)
            .ok_or(ConfigError::OutOfMemory { bytes: u64::MAX })?;
        let mut data = fallible::zeroed(room)?;
        // `align_offset` may give up (`usize::MAX`): the bytes then start unaligned, which
        // is only slower.
        let start = Some(data.as_ptr().align_offset(SLOT_ALIGN))
            .filter(|&s| s < SLOT_ALIGN)
            .unwrap_or(0);
        data.truncate(start + len);
        Ok(Self { data, start })
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..]
    }

    /// Keeps the first `len` bytes and releases the rest of the allocation. Shrinking in
    /// place does not fail in practice (glibc `realloc` to a smaller size splits the chunk
    /// or `mremap`s it); if the allocator moves the bytes, they stay correct but may lose
    /// their alignment.
    fn shrink_to(&mut self, len: usize) {
        self.data.truncate(self.start + len);
        self.data.shrink_to_fit();
    }
}

/// Page slots `0..slots`, each `page_size` bytes, in one allocation made on first write,
/// slot 0 at a [`SLOT_ALIGN`] boundary.
///
/// The size `slots * page_size` is checked when the buffer is made or re-laid out, and
/// the allocator is asked then whether it could provide it ([`fallible::probe`]: reserved
/// and released without being written, so no memory is committed). The zeroed allocation
/// itself is made at the first write; if the allocator refuses it then, the write is
/// refused (the caller does not cache the page) instead of aborting.
#[derive(Debug)]
pub(super) struct PageBuffer {
    page_size: usize,
    slots: usize,
    data: AlignedBytes,
}

const NO_MOVE: usize = usize::MAX;

/// Bytes of `slots` pages of `page_size` bytes, if that is a possible allocation size.
fn span_bytes(page_size: usize, slots: usize) -> Result<usize, ConfigError> {
    slots
        .checked_mul(page_size)
        .filter(|&b| isize::try_from(b).is_ok())
        .ok_or(ConfigError::OutOfMemory { bytes: u64::MAX })
}

/// Everything a re-layout allocates, made before the cache changes anything, so that a
/// failed allocation leaves the cache as it was.
#[derive(Debug)]
pub(super) enum Relayout {
    /// The buffer is not allocated: only the slot count changes.
    Unallocated { slots: usize },
    /// The slot count goes to 0: the buffer is released.
    Release,
    /// Fewer slots: pages move in place with a one-page scratch, then the tail is released.
    Shrink {
        slots: usize,
        dst_of: Vec<usize>,
        carried: Vec<u8>,
    },
    /// More slots: a new zeroed buffer (committed only where written) receives the kept
    /// pages, then the old one is released.
    Grow { slots: usize, data: AlignedBytes },
}

impl PageBuffer {
    /// An unallocated buffer of `slots` pages. Fails if `slots * page_size` is not a
    /// possible allocation size or the allocator could not provide it now.
    ///
    /// # Panics
    /// If `page_size` is 0 (the caches check it first).
    pub(super) fn new(page_size: usize, slots: usize) -> Result<Self, ConfigError> {
        assert!(page_size > 0, "page size must not be 0");
        fallible::probe(span_bytes(page_size, slots)?)?;
        Ok(Self {
            page_size,
            slots,
            data: AlignedBytes::default(),
        })
    }

    pub(super) fn page_size(&self) -> usize {
        self.page_size
    }

    /// Bytes of the slots once allocated (the allocation itself is up to
    /// `SLOT_ALIGN - 1` bytes longer, never committed).
    pub(super) fn allocated_bytes(&self) -> usize {
        self.data.bytes().len()
    }

    /// Slot contents. Only called for slots holding a valid entry, which implies the
    /// buffer was allocated.
    pub(super) fn page(&self, slot: usize) -> &[u8] {
        &self.data.bytes()[slot * self.page_size..][..self.page_size]
    }

    /// Makes the zeroed allocation of every slot if it is not made yet. `false` when that
    /// allocation fails or there is no slot (QEMU's `cache_insert` likewise fails when
    /// `g_try_malloc` does, and the page is sent raw).
    pub(super) fn allocate(&mut self) -> bool {
        if self.data.is_empty() {
            if self.slots == 0 {
                return false;
            }
            // `slots * page_size` was checked when the slot count was set. Zeroed
            // (`calloc`): the OS commits pages only when written.
            match span_bytes(self.page_size, self.slots).and_then(AlignedBytes::zeroed) {
                Ok(data) => self.data = data,
                Err(_) => return false,
            }
        }
        true
    }

    /// Slot contents for writing; allocates the buffer on first use (`None` if that fails,
    /// see [`Self::allocate`]).
    pub(super) fn page_mut(&mut self, slot: usize) -> Option<&mut [u8]> {
        if !self.allocate() {
            return None;
        }
        self.data
            .bytes_mut()
            .get_mut(slot * self.page_size..)?
            .get_mut(..self.page_size)
    }

    /// Allocates what [`Self::relayout`] to `new_slots` slots needs, changing nothing.
    pub(super) fn prepare(&self, new_slots: usize) -> Result<Relayout, ConfigError> {
        let bytes = span_bytes(self.page_size, new_slots)?;
        Ok(if self.data.is_empty() {
            fallible::probe(bytes)?;
            Relayout::Unallocated { slots: new_slots }
        } else if new_slots == 0 {
            Relayout::Release
        } else if new_slots <= self.slots {
            Relayout::Shrink {
                slots: new_slots,
                dst_of: fallible::filled(self.slots, NO_MOVE)?,
                carried: fallible::filled(self.page_size, 0)?,
            }
        } else {
            Relayout::Grow {
                slots: new_slots,
                data: AlignedBytes::zeroed(bytes)?,
            }
        })
    }

    /// Changes the slot count as prepared and moves page `src` to `dst` for every
    /// `(src, dst)` in `moves` (destinations distinct, all below the new count; sources
    /// below the old count). Slots not named as a destination hold unspecified bytes
    /// afterwards.
    ///
    /// Page data held: shrinking works in place with one page of scratch (at most the old
    /// buffer plus one page); growing copies the kept pages into the new zeroed buffer, so
    /// until the old one is released the memory committed is the old buffer plus the kept
    /// pages, each at most the old slot count.
    pub(super) fn relayout(&mut self, plan: Relayout, moves: &[(usize, usize)]) {
        let page_size = self.page_size;
        match plan {
            Relayout::Unallocated { slots } => self.slots = slots,
            Relayout::Release => {
                self.data = AlignedBytes::default();
                self.slots = 0;
            }
            Relayout::Grow { slots, mut data } => {
                for &(src, dst) in moves {
                    data.bytes_mut()[dst * page_size..][..page_size]
                        .copy_from_slice(&self.data.bytes()[src * page_size..][..page_size]);
                }
                self.data = data;
                self.slots = slots;
            }
            Relayout::Shrink {
                slots,
                mut dst_of,
                mut carried,
            } => {
                for &(src, dst) in moves {
                    if src != dst {
                        dst_of[src] = dst;
                    }
                }
                for src in 0..self.slots {
                    let mut dst = core::mem::replace(&mut dst_of[src], NO_MOVE);
                    if dst == NO_MOVE {
                        continue;
                    }
                    carried.copy_from_slice(&self.data.bytes()[src * page_size..][..page_size]);
                    loop {
                        let slot = &mut self.data.bytes_mut()[dst * page_size..][..page_size];
                        let next = core::mem::replace(&mut dst_of[dst], NO_MOVE);
                        if next == NO_MOVE {
                            slot.copy_from_slice(&carried);
                            break;
                        }
                        // `dst` still holds a page bound elsewhere: swap it out and carry
                        // it on.
                        carried.swap_with_slice(slot);
                        dst = next;
                    }
                }
                self.data.shrink_to(slots * page_size);
                self.slots = slots;
            }
        }
    }
}
