//! The one SIMD encoding algorithm, written once over a 64-byte [`Block`] and instantiated
//! by each ISA module (`sse2`, `avx2`, `avx512`, `neon`), whose thin `#[target_feature]`
//! entry points inline everything below.
//!
//! The page is walked in 64-byte blocks. Each block yields a 64-bit mask with bit `j` set
//! when byte `j` of the old and new block are equal. An all-equal block only extends the
//! current unchanged run, an all-different block only extends the changed run, and a mixed
//! block is walked with `trailing_zeros` of the mask and of its complement. Four blocks at a
//! time are first tested for "all equal" with one reduction, which keeps identical pages
//! close to `memcmp` speed; in a group with changes, an unchanged block outside a changed
//! run costs one test (no mask). The tail (`len % 64` bytes) is copied into zero-padded
//! stack blocks, so nothing is read outside the pages.
//!
//! A changed run is written when it ends: its two ULEB128 lengths, then its bytes. A run of
//! at most 64 bytes after an unchanged run shorter than 2^14 bytes (the common case) takes a
//! fast path: both lengths stored without the general ULEB128 writer and the bytes copied
//! with one 16- or 64-byte move when the output and the page have room for it; other runs
//! are written exactly, out of line. For `encode_update`, each changed block of the new
//! page is stored into the cached copy from the registers it was compared in, and changed
//! bytes are copied out of the cached copy (or, with AVX-512, stored from those registers
//! with a byte-masked store, which avoids reading back what was just stored), so the delta
//! and the refreshed copy agree even if the new page changes meanwhile.
//!
//! A page whose first changed group is changed so densely that the page, changed alike,
//! could not fit (a rewritten page, or one changed in many short runs) is counted before
//! runs are written: its changed bytes and runs give a least delta length, from the masks
//! alone. `encode` counts the rest of the page and reports the overflow if it is surely too
//! long; `encode_update`, which must not read the new page twice, refreshes and counts a
//! window of up to 4 KiB first and writes its runs only if they can fit.

use crate::encoded::Encoded;
use crate::format::{Overflow, uleb128_len, write_uleb128};
use crate::source::PageSource;
use core::ptr;

/// Bytes per block: one bit of the equality mask per byte.
pub(super) const BLOCK: usize = 64;

/// Blocks tested together for "all equal" before looking at single blocks.
const GROUP: usize = 4;

/// Longest changed run written by the fast path, with one fixed-size copy.
const SHORT_RUN: usize = 64;

/// Blocks `encode_update` refreshes and counts before writing runs, from the first changed
/// group of a page whose changes look too dense to fit (see [`Pages::dense_window`]).
const WINDOW_BLOCKS: usize = 64;

/// 64 bytes held in vector registers.
///
/// A value of an implementing type exists only after [`Block::load`], whose contract
/// requires the CPU features of the implementation; the other methods rely on that.
pub(super) trait Block: Copy {
    /// Loads 64 bytes from `src` (any alignment).
    ///
    /// # Safety
    /// The CPU supports the implementation's features and `src` is valid for reading
    /// 64 bytes.
    unsafe fn load(src: *const u8) -> Self;

    /// Stores the 64 bytes at `dst` (any alignment).
    ///
    /// # Safety
    /// `dst` is valid for writing 64 bytes.
    unsafe fn store(self, dst: *mut u8);

    /// Byte-wise XOR: zero where the two blocks are equal.
    fn xor(self, other: Self) -> Self;

    /// Byte-wise OR.
    fn or(self, other: Self) -> Self;

    /// Whether all 64 bytes are zero.
    fn is_zero(self) -> bool;

    /// Bit `j` set when byte `j` is zero.
    fn zero_mask(self) -> u64;

    /// Whether [`Block::store_selected`] is one masked store (AVX-512BW). `encode_update`
    /// then writes short changed runs from the registers the block was compared in,
    /// instead of reading back the cached copy just refreshed (a store-to-load forwarding
    /// stall).
    const STORES_SELECTED: bool = false;

    /// Stores byte `j` of the block at `base + j` for every bit `j` set in `selected`, and
    /// nothing else.
    ///
    /// # Safety
    /// `base + j` is valid for writing for every bit `j` set in `selected` (`base` itself
    /// need not point into the same allocation).
    #[inline(always)]
    unsafe fn store_selected(self, base: *mut u8, selected: u64) {
        let mut bytes = [0u8; BLOCK];
        // SAFETY: `bytes` is 64 bytes long.
        unsafe { self.store(bytes.as_mut_ptr()) };
        let mut rest = selected;
        while rest != 0 {
            let j = rest.trailing_zeros() as usize;
            // SAFETY: `base + j` is writable (caller's contract); `j < 64`.
            unsafe { base.wrapping_add(j).write(bytes[j]) };
            rest &= rest - 1;
        }
    }
}

/// Canonical encode with block type `B`.
///
/// # Safety
/// The CPU supports `B`'s features. `old` and `new` have the same length, at most
/// `u32::MAX`.
#[inline(always)]
pub(super) unsafe fn encode<B: Block>(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    let pages = Pages::<[u8], false> {
        old: old.as_ptr(),
        new,
        cached: ptr::null_mut(),
        src: new.as_ptr(),
        len: new.len(),
    };
    // SAFETY: the caller guarantees `B`'s CPU features and the lengths; `old` and `src`
    // point to live slices of `len` bytes, and `cached` is unused when `UPDATE` is false.
    match unsafe { pages.run::<B>(out) } {
        Ok(0) => Encoded::Unchanged,
        Ok(written) => Encoded::Delta(written),
        Err(_) => Encoded::Overflow,
    }
}

/// Single-pass encode and refresh with block type `B`, reading each byte of `new` once.
///
/// # Safety
/// The CPU supports `B`'s features. `cached` and `new` have the same length, at most
/// `u32::MAX`.
#[inline(always)]
pub(super) unsafe fn encode_update<B: Block, S: PageSource + ?Sized>(
    cached: &mut [u8],
    new: &S,
    out: &mut [u8],
) -> Encoded {
    let cached_ptr = cached.as_mut_ptr();
    let pages = Pages::<S, true> {
        old: cached_ptr.cast_const(),
        new,
        cached: cached_ptr,
        // Changed bytes are copied from the refreshed copy: what is sent is what is cached.
        src: cached_ptr.cast_const(),
        len: cached.len(),
    };
    // SAFETY: as in `encode`; `cached` is a live exclusive slice of `len` bytes, reached
    // only through `cached_ptr` (and `old` and `src`, derived from it) until `run` returns.
    match unsafe { pages.run::<B>(out) } {
        Ok(0) => Encoded::Unchanged,
        Ok(written) => Encoded::Delta(written),
        Err(Overflowed { refreshed }) => {
            new.read(refreshed, &mut cached[refreshed..]);
            Encoded::Overflow
        }
    }
}

/// The least length of the delta of the blocks counted so far: their changed bytes and two
/// length bytes for each changed run (the least a run's `zrun nzrun` lengths take). Counted
/// from equality masks only, at the speed of a comparison.
#[derive(Default)]
struct LeastDelta {
    changed: usize,
    runs: usize,
    /// Whether the last byte counted was changed (1) or not (0).
    carry: u64,
}

impl LeastDelta {
    /// Counts the next block, with equality mask `mask`.
    #[inline(always)]
    fn count(&mut self, mask: u64) {
        let bytes = !mask;
        // A run starts at a changed byte whose predecessor is unchanged.
        let starts = bytes & !((bytes << 1) | self.carry);
        self.changed += bytes.count_ones() as usize;
        self.runs += starts.count_ones() as usize;
        self.carry = bytes >> 63;
    }

    /// The least length of the delta of the blocks counted.
    fn bytes(&self) -> usize {
        self.changed + 2 * self.runs
    }
}

/// Whether a delta with changes as dense as the group's, whose XORs are `diff`, over `groups`
/// groups, would be longer than `cap` bytes.
#[inline(always)]
fn dense<B: Block>(diff: &[B; GROUP], groups: usize, cap: usize) -> bool {
    let mut least = LeastDelta::default();
    for d in diff {
        least.count(d.zero_mask());
    }
    least.bytes().saturating_mul(groups) > cap
}

/// Whether any byte of the group's XORs is nonzero.
#[inline(always)]
fn any_changed<B: Block>(diff: &[B; GROUP]) -> bool {
    !diff[0].or(diff[1]).or(diff[2].or(diff[3])).is_zero()
}

/// The delta does not fit; `cached[..refreshed]` already holds the new bytes, and the new
/// page has not been read from `refreshed` on.
struct Overflowed {
    refreshed: usize,
}

/// The pages of one encode. With `UPDATE`, `old == cached == src` and every block is
/// refreshed from the registers it was compared in.
struct Pages<'a, S: ?Sized, const UPDATE: bool> {
    old: *const u8,
    /// Read once per byte, block by block.
    new: &'a S,
    cached: *mut u8,
    /// Where the bytes of changed runs are copied from: `new`'s memory (a slice) when not
    /// updating, else the refreshed cached copy.
    src: *const u8,
    len: usize,
}

impl<S: PageSource + ?Sized, const UPDATE: bool> Pages<'_, S, UPDATE> {
    /// Compares the pages block by block and writes the delta into `out`.
    ///
    /// # Safety
    /// The CPU supports `B`'s features; `old` and `src` are valid for reading `len` bytes,
    /// and with `UPDATE` `cached` (equal to `old` and `src`) is valid for writing them, none
    /// of them overlapping `out`; `new` is `len` bytes long; `len <= u32::MAX`.
    #[inline(always)]
    unsafe fn run<B: Block>(&self, out: &mut [u8]) -> Result<usize, Overflowed> {
        let len = self.len;
        let mut runs = Runs {
            out: out.as_mut_ptr(),
            cap: out.len(),
            written: 0,
            src: self.src,
            len,
            in_changed: false,
            run_start: 0,
            zrun: 0,
            fast_written_max: out.len() as isize - (3 + SHORT_RUN) as isize,
            fast_start_max: len as isize - SHORT_RUN as isize,
        };
        let mut at = 0;
        'groups: while len - at >= GROUP * BLOCK {
            // SAFETY: the `GROUP` blocks from `at` are inside the pages (loop condition).
            let (mut new, mut diff) = unsafe { self.compare_group::<B>(at) };
            if !any_changed(&diff) {
                if runs.in_changed {
                    // Nothing of this group needs refreshing: as read, it equals the copy.
                    runs.close(at).map_err(|Overflow| Overflowed {
                        refreshed: at + GROUP * BLOCK,
                    })?;
                }
                // The hot loop of unchanged pages: skip equal groups.
                loop {
                    at += GROUP * BLOCK;
                    if len - at < GROUP * BLOCK {
                        break 'groups;
                    }
                    // SAFETY: as above.
                    (new, diff) = unsafe { self.compare_group::<B>(at) };
                    if any_changed(&diff) {
                        break;
                    }
                }
            }
            // The first group with changes: if the rest of the page were changed as densely, the
            // delta would not fit (a rewritten page, or one changed in many short runs). Then
            // count the changed bytes and runs of the rest first, at the speed of a comparison,
            // instead of writing most of a delta that is thrown away.
            if runs.written == 0
                && !runs.in_changed
                && dense(&diff, (len - at) / (GROUP * BLOCK), runs.cap)
            {
                if UPDATE {
                    // Counting ahead would read the new page a second time: refresh and count
                    // a window first, then write its runs if they can fit.
                    // SAFETY: as for `run`; the group at `at` is inside the pages.
                    at = unsafe { self.dense_window(&mut runs, at, &new, &diff) }?;
                    continue;
                }
                // SAFETY: as for `run`; `at <= len`.
                if unsafe { self.delta_surely_longer_than::<B>(at, runs.cap) } {
                    return Err(Overflowed { refreshed: 0 });
                }
            }
            // SAFETY: the `GROUP` blocks from `at` are inside the pages (loop condition).
            if let Err(Overflow) = unsafe { self.group_blocks(&mut runs, at, &new, &diff) } {
                if UPDATE {
                    // The group was read once: refresh all of it from the registers.
                    for (k, block) in new.iter().enumerate() {
                        // SAFETY: the group is inside `cached` (loop condition).
                        unsafe { block.store(self.cached.wrapping_add(at + k * BLOCK)) };
                    }
                }
                return Err(Overflowed {
                    refreshed: at + GROUP * BLOCK,
                });
            }
            at += GROUP * BLOCK;
        }
        while len - at >= BLOCK {
            // SAFETY: the block at `at` is inside the pages (loop condition).
            let (new, mask) = unsafe { self.compare_block::<B>(at) };
            // SAFETY: as above.
            unsafe { self.block(&mut runs, at, new, mask) }.map_err(
                |Overflow| Overflowed {
                    refreshed: at + BLOCK,
                },
            )?;
            at += BLOCK;
        }
        if at < len {
            // SAFETY: `at < len`, and `at + BLOCK > len`.
            unsafe { self.tail::<B>(&mut runs, at) }
                .map_err(|Overflow| Overflowed { refreshed: len })?;
        }
        runs.finish()
            .map_err(|Overflow| Overflowed { refreshed: len })
    }

    /// With `UPDATE`, from the first changed group of a page, at `at`, whose new blocks are
    /// `new` and XORs with the old ones `diff`, when its changes look too dense to fit: stores
    /// the changed blocks of up to [`WINDOW_BLOCKS`] full blocks from `at` into the cached copy
    /// (each new block read once, as everywhere), keeping their equality masks and counting
    /// their [`LeastDelta`]. If that proves the delta longer than the output, reports the
    /// overflow without having written a run (an alternating page: one count instead of
    /// about 1365 runs written); otherwise writes the window's runs from the masks and the
    /// refreshed copy, as the blocks would have written them. Returns where the window ends.
    ///
    /// # Safety
    /// As for [`Pages::run`]; the group at `at` is inside the pages, and nothing before `at`
    /// was changed (no pair written, no run open).
    #[inline(always)]
    unsafe fn dense_window<B: Block>(
        &self,
        runs: &mut Runs,
        at: usize,
        new: &[B; GROUP],
        diff: &[B; GROUP],
    ) -> Result<usize, Overflowed> {
        let mut masks = [0u64; WINDOW_BLOCKS];
        let mut least = LeastDelta::default();
        let mut refresh = |k: usize, new: B, mask: u64| {
            if mask != !0 {
                // SAFETY: block `k` of the window is inside the pages (caller's contract and
                // the loop below), so inside `cached`.
                unsafe { new.store(self.cached.wrapping_add(at + k * BLOCK)) };
            }
            masks[k] = mask;
            least.count(mask);
        };
        for (k, (&new, diff)) in new.iter().zip(diff).enumerate() {
            refresh(k, new, diff.zero_mask());
        }
        let blocks = ((self.len - at) / BLOCK).min(WINDOW_BLOCKS);
        for k in GROUP..blocks {
            let block_at = at + k * BLOCK;
            // SAFETY: `k < blocks`, so the block is inside the pages.
            let (new, mask) = unsafe { self.compare_block::<B>(block_at) };
            refresh(k, new, mask);
        }
        let end = at + blocks * BLOCK;
        if least.bytes() > runs.cap {
            return Err(Overflowed { refreshed: end });
        }
        for (k, &mask) in masks[..blocks].iter().enumerate() {
            let block_at = at + k * BLOCK;
            // SAFETY: the block is inside `cached` (above), which now holds its new bytes.
            let new = unsafe { B::load(self.cached.wrapping_add(block_at)) };
            runs.block::<B, UPDATE>(block_at, mask, new)
                .map_err(|Overflow| Overflowed { refreshed: end })?;
        }
        Ok(end)
    }

    /// Whether the delta of a page unchanged before `from` is surely longer than `cap` bytes:
    /// the [`LeastDelta`] of its bytes from `from` on is.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `from <= len`.
    #[inline(always)]
    unsafe fn delta_surely_longer_than<B: Block>(&self, from: usize, cap: usize) -> bool {
        let mut least = LeastDelta::default();
        let mut at = from;
        while self.len - at >= BLOCK {
            // SAFETY: the block at `at` is inside the pages (loop condition).
            let (_, mask) = unsafe { self.compare_block::<B>(at) };
            least.count(mask);
            at += BLOCK;
        }
        if at < self.len {
            let rest = self.len - at;
            let (mut old, mut new) = ([0u8; BLOCK], [0u8; BLOCK]);
            // SAFETY: `rest` bytes from `at` are inside the old page; the buffer holds 64.
            unsafe { ptr::copy_nonoverlapping(self.old.wrapping_add(at), old.as_mut_ptr(), rest) };
            self.new.read(at, &mut new[..rest]);
            // SAFETY: the buffer is 64 bytes; the CPU supports `B` (caller's contract).
            let old = unsafe { B::load(old.as_ptr()) };
            // SAFETY: as above.
            let new = unsafe { B::load(new.as_ptr()) };
            least.count(old.xor(new).zero_mask() | (!0u64 << rest));
        }
        least.bytes() > cap
    }

    /// Reads the block at `at` of the new page into registers (the only read of its bytes).
    /// Without `UPDATE` the new page is an ordinary slice, `src`, loaded from directly: its
    /// [`PageSource::read`] would check the range of every block again.
    ///
    /// # Safety
    /// The CPU supports `B`'s features; `at + BLOCK <= len`.
    #[inline(always)]
    unsafe fn load_new<B: Block>(&self, at: usize) -> B {
        if !UPDATE {
            // SAFETY: without `UPDATE`, `src` is the new page, valid for reading `len` bytes
            // (`run`'s contract), and `at + BLOCK <= len`; the CPU supports `B`.
            return unsafe { B::load(self.src.wrapping_add(at)) };
        }
        let mut bytes = [0u8; BLOCK];
        self.new.read(at, &mut bytes);
        // SAFETY: `bytes` holds 64 bytes; the CPU supports `B` (caller's contract).
        unsafe { B::load(bytes.as_ptr()) }
    }

    /// Loads the block at `at` of both pages: the new block and its equality mask.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `at + BLOCK <= len`.
    #[inline(always)]
    unsafe fn compare_block<B: Block>(&self, at: usize) -> (B, u64) {
        // SAFETY: the block is inside the old page (caller's contract); the CPU supports `B`.
        let old = unsafe { B::load(self.old.wrapping_add(at)) };
        // SAFETY: as above, for the new page.
        let new = unsafe { self.load_new::<B>(at) };
        (new, old.xor(new).zero_mask())
    }

    /// Loads the `GROUP` blocks at `at` of both pages: the new blocks and their XOR with
    /// the old ones.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `at + GROUP * BLOCK <= len`.
    #[inline(always)]
    unsafe fn compare_group<B: Block>(&self, at: usize) -> ([B; GROUP], [B; GROUP]) {
        let load_old = |k: usize| {
            // SAFETY: block `k < GROUP` at `at` is inside the page (caller's contract), and
            // the CPU supports `B` (caller's contract).
            unsafe { B::load(self.old.wrapping_add(at + k * BLOCK)) }
        };
        // SAFETY: as above.
        let load_new = |k: usize| unsafe { self.load_new::<B>(at + k * BLOCK) };
        // Written out: `array::from_fn` and `array::map` are not reliably inlined into the
        // `#[target_feature]` entry points.
        let new = [load_new(0), load_new(1), load_new(2), load_new(3)];
        let old = [load_old(0), load_old(1), load_old(2), load_old(3)];
        let diff = [
            old[0].xor(new[0]),
            old[1].xor(new[1]),
            old[2].xor(new[2]),
            old[3].xor(new[3]),
        ];
        (new, diff)
    }

    /// Handles the `GROUP` blocks at `at` whose new bytes are `new` and XORs with the old
    /// ones `diff`. An unchanged block outside a changed run needs nothing, not even its
    /// mask.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `at + GROUP * BLOCK <= len`.
    #[inline(always)]
    unsafe fn group_blocks<B: Block>(
        &self,
        runs: &mut Runs,
        at: usize,
        new: &[B; GROUP],
        diff: &[B; GROUP],
    ) -> Result<(), Overflow> {
        // Written out: a loop over the blocks is not unrolled and keeps them in memory.
        // SAFETY: the four blocks from `at` are inside the pages (caller's contract).
        unsafe { self.group_block(runs, at, new[0], diff[0]) }?;
        // SAFETY: as above.
        unsafe { self.group_block(runs, at + BLOCK, new[1], diff[1]) }?;
        // SAFETY: as above.
        unsafe { self.group_block(runs, at + 2 * BLOCK, new[2], diff[2]) }?;
        // SAFETY: as above.
        unsafe { self.group_block(runs, at + 3 * BLOCK, new[3], diff[3]) }
    }

    /// Handles one full block of a group whose new bytes are `new` and XOR with the old
    /// ones `diff`.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `at + BLOCK <= len`.
    #[inline(always)]
    unsafe fn group_block<B: Block>(
        &self,
        runs: &mut Runs,
        at: usize,
        new: B,
        diff: B,
    ) -> Result<(), Overflow> {
        if diff.is_zero() {
            if runs.in_changed {
                runs.close(at)?;
            }
            return Ok(());
        }
        // SAFETY: the caller's contract.
        unsafe { self.block(runs, at, new, diff.zero_mask()) }
    }

    /// Handles one full block whose new bytes are `new` and equality mask is `mask`; with
    /// `UPDATE`, a changed block is stored into the cached copy first.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `at + BLOCK <= len`.
    #[inline(always)]
    unsafe fn block<B: Block>(
        &self,
        runs: &mut Runs,
        at: usize,
        new: B,
        mask: u64,
    ) -> Result<(), Overflow> {
        if UPDATE && mask != !0 {
            // SAFETY: the block is inside `cached` (caller's contract).
            unsafe { new.store(self.cached.wrapping_add(at)) };
        }
        runs.block::<B, UPDATE>(at, mask, new)
    }

    /// Handles the last `len - at` (< 64) bytes through zero-padded stack blocks.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `at < len < at + BLOCK`.
    #[inline(always)]
    unsafe fn tail<B: Block>(&self, runs: &mut Runs, at: usize) -> Result<(), Overflow> {
        let rest = self.len - at;
        let mut old_buf = [0u8; BLOCK];
        let mut new_buf = [0u8; BLOCK];
        // SAFETY: `rest` bytes from `at` are inside the old page; the buffer holds 64 > rest.
        unsafe { ptr::copy_nonoverlapping(self.old.wrapping_add(at), old_buf.as_mut_ptr(), rest) };
        self.new.read(at, &mut new_buf[..rest]);
        // SAFETY: the buffers are 64 bytes; the CPU supports `B` (caller's contract).
        let old = unsafe { B::load(old_buf.as_ptr()) };
        // SAFETY: as above.
        let new = unsafe { B::load(new_buf.as_ptr()) };
        // Bytes past the page count as equal: the trailing unchanged run is not encoded.
        let mask = old.xor(new).zero_mask() | (!0u64 << rest);
        if UPDATE {
            // SAFETY: `rest` bytes from `at` are inside `cached`, which does not overlap
            // the stack buffer.
            unsafe {
                ptr::copy_nonoverlapping(new_buf.as_ptr(), self.cached.wrapping_add(at), rest)
            };
        }
        runs.block::<B, UPDATE>(at, mask, new)
    }
}

/// The run state and the delta written so far.
struct Runs {
    /// Start of the output buffer, valid for writing `cap` bytes.
    out: *mut u8,
    cap: usize,
    /// Bytes of complete pairs written.
    written: usize,
    /// Where changed bytes are copied from: valid for reading `len` bytes, and holding the
    /// new bytes of every block already handled.
    src: *const u8,
    len: usize,
    /// Whether the current run is a changed one.
    in_changed: bool,
    /// Start of the current run.
    run_start: usize,
    /// Length of the unchanged run before the current changed run.
    zrun: usize,
    /// `cap - (3 + SHORT_RUN)` and `len - SHORT_RUN` (negative when smaller): the limits of
    /// the fast path of [`Runs::close`] for `written` and for the run start.
    fast_written_max: isize,
    fast_start_max: isize,
}

impl Runs {
    /// Extends the runs over the block at `at` with equality mask `mask` (bits past the
    /// page set).
    ///
    /// `new` holds the new bytes of the block: with `UPDATE` and a kernel that stores
    /// selected bytes, short runs are written from it (see [`Block::STORES_SELECTED`]).
    #[inline(always)]
    fn block<B: Block, const UPDATE: bool>(
        &mut self,
        at: usize,
        mask: u64,
        new: B,
    ) -> Result<(), Overflow> {
        if mask == !0 {
            if self.in_changed {
                self.close(at)?;
            }
            return Ok(());
        }
        if mask == 0 {
            if !self.in_changed {
                self.open(at);
            }
            // The open run already has this many bytes; its pair needs at least two
            // length bytes more, so the delta surely overflows when they do not fit.
            let changed = at + BLOCK - self.run_start;
            if changed > (self.cap - self.written).saturating_sub(2) {
                return Err(Overflow);
            }
            return Ok(());
        }
        // The changed bytes not yet walked. `x & y.wrapping_neg()` keeps the bits of `x` at
        // and above the lowest set bit of `y`.
        let (equal, mut changed) = (mask, !mask);
        if self.in_changed {
            // `equal != 0`: the mask is not all changed.
            let end = equal.trailing_zeros();
            self.close(at + end as usize)?;
            changed &= equal.wrapping_neg();
        }
        while changed != 0 {
            let start = at + changed.trailing_zeros() as usize;
            // The equal bytes after the start.
            let after = equal & changed.wrapping_neg();
            if after == 0 {
                self.open(start);
                return Ok(());
            }
            let end = at + after.trailing_zeros() as usize;
            if UPDATE && B::STORES_SELECTED {
                // The run's bits: `changed` has none below it.
                let selected = changed & !after.wrapping_neg();
                self.short_run_from_block(start, end, new, at, selected)?;
            } else {
                self.short_run(start, end)?;
            }
            changed &= after.wrapping_neg();
        }
        Ok(())
    }

    /// Writes the pair of the changed run `start..end` that starts after the current
    /// unchanged run and ends in the same block (`end - start < 64`).
    #[inline(always)]
    fn short_run(&mut self, start: usize, end: usize) -> Result<(), Overflow> {
        let zrun = start - self.run_start;
        if zrun < 0x4000
            && self.written as isize <= self.fast_written_max
            && start as isize <= self.fast_start_max
        {
            // SAFETY: as in the fast path of `close`, whose conditions hold (`end - start`
            // is at most 63).
            unsafe { self.write_short(zrun, start, end - start) };
            self.run_start = end;
            return Ok(());
        }
        self.open(start);
        self.close(end)
    }

    /// [`Runs::short_run`] with the run's bytes stored from `new`, the block at `at`, whose
    /// bits `selected` are the run.
    #[inline(always)]
    fn short_run_from_block<B: Block>(
        &mut self,
        start: usize,
        end: usize,
        new: B,
        at: usize,
        selected: u64,
    ) -> Result<(), Overflow> {
        let zrun = start - self.run_start;
        if zrun < 0x4000 && self.written as isize <= self.fast_written_max {
            let out = self.out.wrapping_add(self.written);
            // SAFETY: 3 + 64 bytes from `written` are inside the output (checked above),
            // which no other reference reaches while encoding.
            let data_at = unsafe { write_short_lengths(out, zrun, end - start) };
            // Byte `j` of the block goes to `base + j`: the run's bytes to the `end - start`
            // bytes from `out + data_at`.
            let base = out.wrapping_add(data_at).wrapping_sub(start - at);
            // SAFETY: the selected bytes land in `out + data_at ..` `+ (end - start)`, inside
            // the output: 3 + 64 bytes from `written` are (checked above).
            unsafe { new.store_selected(base, selected) };
            self.written += data_at + (end - start);
            self.run_start = end;
            return Ok(());
        }
        self.open(start);
        self.close(end)
    }

    /// Writes the pair of a changed run of `n` (1 to 64) bytes from `start` after an
    /// unchanged run of `zrun` (< 2^14) bytes, with fixed-size stores.
    ///
    /// # Safety
    /// `written + 3 + SHORT_RUN <= cap` and `start + SHORT_RUN <= len`.
    #[inline(always)]
    unsafe fn write_short(&mut self, zrun: usize, start: usize, n: usize) {
        debug_assert!((1..=SHORT_RUN).contains(&n) && zrun < 0x4000);
        let at = self.written;
        let (out, src) = (self.out.wrapping_add(at), self.src.wrapping_add(start));
        // SAFETY: 3 + 64 bytes from `at` are inside the output (caller's contract).
        let data_at = unsafe { write_short_lengths(out, zrun, n) };
        let dst = out.wrapping_add(data_at);
        if n <= 16 {
            // SAFETY: 64 bytes from `start` are inside the source page and 64 bytes from
            // `dst` inside the output (caller's contract); the output does not overlap the
            // pages.
            unsafe { ptr::copy_nonoverlapping(src, dst, 16) };
        } else {
            // SAFETY: as above.
            unsafe { ptr::copy_nonoverlapping(src, dst, SHORT_RUN) };
        }
        self.written = at + data_at + n;
    }

    /// Starts a changed run at `at`.
    #[inline(always)]
    fn open(&mut self, at: usize) {
        self.zrun = at - self.run_start;
        self.run_start = at;
        self.in_changed = true;
    }

    /// Ends the changed run at `end` and writes its pair.
    #[inline(always)]
    fn close(&mut self, end: usize) -> Result<(), Overflow> {
        let start = self.run_start;
        let n = end - start;
        self.run_start = end;
        self.in_changed = false;
        let zrun = self.zrun;
        // Fast path: a short run (1..=64 bytes, so a 1-byte length) after an unchanged run
        // of less than 2^14 bytes (a 1- or 2-byte length), with room in the output for the
        // lengths and a 64-byte copy, and 64 source bytes from `start`. Page and output
        // lengths are at most `isize::MAX`.
        if ((n - 1) | (zrun >> 8)) < SHORT_RUN
            && self.written as isize <= self.fast_written_max
            && start as isize <= self.fast_start_max
        {
            // SAFETY: the room in the output and in the source page was checked above.
            unsafe { self.write_short(zrun, start, n) };
            return Ok(());
        }
        let data = self.src.wrapping_add(start);
        let out = self.out.wrapping_add(self.written);
        // SAFETY: `out` is valid for writing the `cap - written` bytes that remain of the
        // output, and `data` for reading the `n` bytes of the run; they do not overlap.
        self.written += unsafe { write_pair(out, self.cap - self.written, zrun, data, n) }?;
        Ok(())
    }

    /// Writes the last changed run, if any; returns the delta length.
    #[inline(always)]
    fn finish(mut self) -> Result<usize, Overflow> {
        if self.in_changed {
            self.close(self.len)?;
        }
        Ok(self.written)
    }
}

/// Writes the lengths of a pair with `zrun < 2^14` (1 or 2 ULEB128 bytes) and
/// `1 <= n < 128` (1 byte) at `out`, with one store; returns their size (2 or 3). The branch
/// on the size of `zrun` is cheaper than a branchless form on the synthetic patterns
/// (1.05–1.08× on `4-bytes`, `8x8` and `25pct-runs16`) and as fast on real pages of the
/// kvstore guest, whose lengths of both sizes mix (1.01–1.02×).
///
/// # Safety
/// `out` is valid for writing 4 bytes, and no other reference reaches them (with 3 bytes of
/// lengths, the fourth is written as 0 where the run's first byte goes next).
#[inline(always)]
unsafe fn write_short_lengths(out: *mut u8, zrun: usize, n: usize) -> usize {
    debug_assert!(zrun < 0x4000 && (1..0x80).contains(&n));
    if zrun < 0x80 {
        // SAFETY: 4 bytes from `out` are writable (caller's contract).
        unsafe { ptr::write_unaligned(out.cast::<u16>(), ((zrun | n << 8) as u16).to_le()) };
        return 2;
    }
    // The low 7 bits of `zrun` with the continuation bit, its high 7 bits, then `n`.
    let lengths = (zrun & 0x7f) | 0x80 | (zrun >> 7) << 8 | n << 16;
    // SAFETY: as above.
    unsafe { ptr::write_unaligned(out.cast::<u32>(), (lengths as u32).to_le()) };
    3
}

/// Writes the pair of a changed run of the `n` bytes at `data` after an unchanged run of
/// `zrun` bytes, any lengths, with an exact capacity check; returns the pair's length.
/// Not inlined, and taking no reference to the run state, which then stays in registers.
///
/// # Safety
/// `out` is valid for writing `room` bytes and `data` for reading `n` bytes, and the two do
/// not overlap.
#[inline(never)]
unsafe fn write_pair(
    out: *mut u8,
    room: usize,
    zrun: usize,
    data: *const u8,
    n: usize,
) -> Result<usize, Overflow> {
    // Both lengths are below the page length, at most `u32::MAX`.
    let (zrun, nzrun) = (zrun as u32, n as u32);
    let lengths = uleb128_len(zrun) + uleb128_len(nzrun);
    if room < lengths || room - lengths < n {
        return Err(Overflow);
    }
    // SAFETY: `lengths + n <= room` bytes from `out` are writable (caller's contract), and
    // no other reference reaches them.
    let pair = unsafe { core::slice::from_raw_parts_mut(out, lengths + n) };
    // Both fit: `pair` holds their two lengths and the data.
    let z = write_uleb128(pair, zrun).ok_or(Overflow)?;
    let lengths = z + write_uleb128(&mut pair[z..], nzrun).ok_or(Overflow)?;
    // SAFETY: `data` is readable for `n` bytes and does not overlap `out` (caller's
    // contract).
    let data = unsafe { core::slice::from_raw_parts(data, n) };
    pair[lengths..].copy_from_slice(data);
    Ok(lengths + n)
}
