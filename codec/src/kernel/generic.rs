//! The one SIMD encoding algorithm, written once over a 64-byte [`Block`] and instantiated
//! by each ISA module (`sse2`, `avx2`, `avx512`, `neon`), whose thin `#[target_feature]`
//! entry points inline everything below.
//!
//! The page is walked in 64-byte blocks. Each block yields a 64-bit mask with bit `j` set
//! when byte `j` of the old and new block are equal. An all-equal block only extends the
//! current unchanged run, an all-different block only extends the changed run, and a mixed
//! block is walked with `trailing_zeros` of the mask and of its complement. Four blocks at a
//! time are first tested for "all equal" with one reduction, which keeps identical pages
//! close to `memcmp` speed. The tail (`len % 64` bytes) is copied into zero-padded stack
//! blocks, so nothing is read outside the pages.
//!
//! A changed run is written when it ends: its two ULEB128 lengths, then its bytes, copied in
//! 64- and 16-byte chunks when the output and the page have room for the rounded-up length,
//! exactly otherwise. For `encode_update`, each block of the new page is stored into the
//! cached copy from the registers it was compared in, and changed bytes are copied out of
//! the cached copy, so the delta and the refreshed copy agree even if the new page changes
//! meanwhile.

use crate::encode::Encoded;
use crate::format::{uleb128_len, write_uleb128};
use core::ptr;

/// Bytes per block: one bit of the equality mask per byte.
pub(super) const BLOCK: usize = 64;

/// Blocks tested together for "all equal" before looking at single blocks.
const GROUP: usize = 4;

/// Longest changed run written by the fast path, with one fixed-size copy.
const SHORT_RUN: usize = 64;

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
}

/// Canonical encode with block type `B`.
///
/// # Safety
/// The CPU supports `B`'s features. `old` and `new` have the same length, at most
/// `u32::MAX`.
#[inline(always)]
pub(super) unsafe fn encode<B: Block>(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    let pages = Pages::<false> {
        old: old.as_ptr(),
        new: new.as_ptr(),
        cached: ptr::null_mut(),
        len: new.len(),
    };
    // SAFETY: the caller guarantees `B`'s CPU features and the lengths; `pages` describes
    // two live slices of `len` bytes, and `cached` is unused when `UPDATE` is false.
    match unsafe { pages.run::<B>(out) } {
        Ok(0) => Encoded::Unchanged,
        Ok(written) => Encoded::Delta(written),
        Err(_) => Encoded::Overflow,
    }
}

/// Single-pass encode and refresh with block type `B`.
///
/// # Safety
/// The CPU supports `B`'s features. `cached` and `new` have the same length, at most
/// `u32::MAX`.
#[inline(always)]
pub(super) unsafe fn encode_update<B: Block>(
    cached: &mut [u8],
    new: &[u8],
    out: &mut [u8],
) -> Encoded {
    let cached_ptr = cached.as_mut_ptr();
    let pages = Pages::<true> {
        old: cached_ptr.cast_const(),
        new: new.as_ptr(),
        cached: cached_ptr,
        len: new.len(),
    };
    // SAFETY: as in `encode`; `cached` is a live exclusive slice of `len` bytes, reached
    // only through `cached_ptr` (and `old`, derived from it) until `run` returns.
    match unsafe { pages.run::<B>(out) } {
        Ok(0) => Encoded::Unchanged,
        Ok(written) => Encoded::Delta(written),
        Err(Overflowed { refreshed }) => {
            cached[refreshed..].copy_from_slice(&new[refreshed..]);
            Encoded::Overflow
        }
    }
}

/// Whether any byte of the group's XORs is nonzero.
#[inline(always)]
fn any_changed<B: Block>(diff: &[B; GROUP]) -> bool {
    !diff[0].or(diff[1]).or(diff[2].or(diff[3])).is_zero()
}

/// The delta does not fit; `cached[..refreshed]` already holds the new bytes.
struct Overflowed {
    refreshed: usize,
}

/// The delta does not fit.
struct Overflow;

/// The pages of one encode. With `UPDATE`, `old == cached` and every block is refreshed.
struct Pages<const UPDATE: bool> {
    old: *const u8,
    new: *const u8,
    cached: *mut u8,
    len: usize,
}

impl<const UPDATE: bool> Pages<UPDATE> {
    /// Compares the pages block by block and writes the delta into `out`.
    ///
    /// # Safety
    /// The CPU supports `B`'s features; `old` and `new` are valid for reading `len` bytes,
    /// and with `UPDATE` `cached` (equal to `old`) is valid for writing them, none of them
    /// overlapping `out`; `len <= u32::MAX`.
    #[inline(always)]
    unsafe fn run<B: Block>(&self, out: &mut [u8]) -> Result<usize, Overflowed> {
        let len = self.len;
        let mut runs = Runs {
            out: out.as_mut_ptr(),
            cap: out.len(),
            written: 0,
            // Changed bytes are copied from the refreshed copy when there is one.
            src: if UPDATE {
                self.cached.cast_const()
            } else {
                self.new
            },
            len,
            in_changed: false,
            run_start: 0,
            zrun: 0,
        };
        let mut at = 0;
        'groups: while len - at >= GROUP * BLOCK {
            // SAFETY: the `GROUP` blocks from `at` are inside the pages (loop condition).
            let (mut new, mut diff) = unsafe { self.compare_group::<B>(at) };
            if runs.in_changed {
                if !any_changed(&diff) {
                    // Nothing of this group needs refreshing.
                    runs.close(at)
                        .map_err(|Overflow| Overflowed { refreshed: at })?;
                    at += GROUP * BLOCK;
                    continue;
                }
            } else {
                // The hot loop of unchanged pages: skip equal groups.
                while !any_changed(&diff) {
                    at += GROUP * BLOCK;
                    if len - at < GROUP * BLOCK {
                        break 'groups;
                    }
                    // SAFETY: as above.
                    (new, diff) = unsafe { self.compare_group::<B>(at) };
                }
            }
            for k in 0..GROUP {
                let mask = diff[k].zero_mask();
                // SAFETY: the block is inside the pages.
                unsafe { self.block(&mut runs, at + k * BLOCK, new[k], mask) }?;
            }
            at += GROUP * BLOCK;
        }
        while len - at >= BLOCK {
            // SAFETY: the block at `at` is inside the pages (loop condition).
            let old = unsafe { B::load(self.old.wrapping_add(at)) };
            // SAFETY: as above.
            let new = unsafe { B::load(self.new.wrapping_add(at)) };
            // SAFETY: as above.
            unsafe { self.block(&mut runs, at, new, old.xor(new).zero_mask()) }?;
            at += BLOCK;
        }
        if at < len {
            // SAFETY: `at < len`, and `at + BLOCK > len`.
            unsafe { self.tail::<B>(&mut runs, at) }?;
        }
        runs.finish()
            .map_err(|Overflow| Overflowed { refreshed: len })
    }

    /// Loads the `GROUP` blocks at `at` of both pages: the new blocks and their XOR with
    /// the old ones.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `at + GROUP * BLOCK <= len`.
    #[inline(always)]
    unsafe fn compare_group<B: Block>(&self, at: usize) -> ([B; GROUP], [B; GROUP]) {
        let load = |page: *const u8, k: usize| {
            // SAFETY: block `k < GROUP` at `at` is inside the page (caller's contract), and
            // the CPU supports `B` (caller's contract).
            unsafe { B::load(page.wrapping_add(at + k * BLOCK)) }
        };
        // Written out: `array::from_fn` and `array::map` are not reliably inlined into the
        // `#[target_feature]` entry points.
        let new = [
            load(self.new, 0),
            load(self.new, 1),
            load(self.new, 2),
            load(self.new, 3),
        ];
        let old = [
            load(self.old, 0),
            load(self.old, 1),
            load(self.old, 2),
            load(self.old, 3),
        ];
        let diff = [
            old[0].xor(new[0]),
            old[1].xor(new[1]),
            old[2].xor(new[2]),
            old[3].xor(new[3]),
        ];
        (new, diff)
    }

    /// Handles one full block whose new bytes are `new` and equality mask is `mask`.
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
    ) -> Result<(), Overflowed> {
        if UPDATE && mask != !0 {
            // SAFETY: the block is inside `cached` (caller's contract).
            unsafe { new.store(self.cached.wrapping_add(at)) };
        }
        runs.block(at, mask).map_err(|Overflow| Overflowed {
            refreshed: at + BLOCK,
        })
    }

    /// Handles the last `len - at` (< 64) bytes through zero-padded stack blocks.
    ///
    /// # Safety
    /// As for [`Pages::run`], and `at < len < at + BLOCK`.
    #[inline(always)]
    unsafe fn tail<B: Block>(&self, runs: &mut Runs, at: usize) -> Result<(), Overflowed> {
        let rest = self.len - at;
        let mut old_buf = [0u8; BLOCK];
        let mut new_buf = [0u8; BLOCK];
        // SAFETY: `rest` bytes from `at` are inside the pages; the buffers hold 64 > rest.
        unsafe { ptr::copy_nonoverlapping(self.old.wrapping_add(at), old_buf.as_mut_ptr(), rest) };
        // SAFETY: as above.
        unsafe { ptr::copy_nonoverlapping(self.new.wrapping_add(at), new_buf.as_mut_ptr(), rest) };
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
        runs.block(at, mask).map_err(|Overflow| Overflowed {
            refreshed: self.len,
        })
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
}

impl Runs {
    /// Extends the runs over the block at `at` with equality mask `mask` (bits past the
    /// page set).
    #[inline(always)]
    fn block(&mut self, at: usize, mask: u64) -> Result<(), Overflow> {
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
        // The bits not yet walked, as equal and as changed bytes.
        let (mut equal, mut changed) = (mask, !mask);
        if self.in_changed {
            // `equal != 0`: the mask is not all changed.
            let end = equal.trailing_zeros();
            self.close(at + end as usize)?;
            changed &= !0 << end;
        }
        while changed != 0 {
            let start = changed.trailing_zeros();
            self.open(at + start as usize);
            equal &= !0 << start;
            if equal == 0 {
                return Ok(());
            }
            let end = equal.trailing_zeros();
            self.close(at + end as usize)?;
            changed &= !0 << end;
        }
        Ok(())
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
        // Fast path: a short run, lengths of at most 2 + 1 bytes, and room in the output
        // and in the source page for a whole 64-byte copy.
        if n <= SHORT_RUN
            && zrun < 0x4000
            && self.cap - self.written >= 3 + SHORT_RUN
            && self.len - start >= SHORT_RUN
        {
            let at = self.written;
            let (out, src) = (self.out.wrapping_add(at), self.src.wrapping_add(start));
            // SAFETY: 3 bytes from `at` are inside the output (room checked above), which no
            // other reference reaches while encoding.
            let header = unsafe { core::slice::from_raw_parts_mut(out, 3) };
            let data_at = if zrun < 0x80 {
                header[0] = zrun as u8;
                header[1] = n as u8;
                2
            } else {
                header[0] = zrun as u8 | 0x80;
                header[1] = (zrun >> 7) as u8;
                header[2] = n as u8;
                3
            };
            let dst = out.wrapping_add(data_at);
            if n <= 16 {
                // SAFETY: 64 bytes from `start` are inside the source page and 64 bytes
                // from `dst` inside the output (checked above); the output does not overlap
                // the pages.
                unsafe { ptr::copy_nonoverlapping(src, dst, 16) };
            } else {
                // SAFETY: as above.
                unsafe { ptr::copy_nonoverlapping(src, dst, SHORT_RUN) };
            }
            self.written = at + data_at + n;
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
