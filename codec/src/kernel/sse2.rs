//! SSE2 kernel (x86-64 baseline): four 16-byte vectors per block, four `movemask`s per mask.

use super::generic::Block;
use core::arch::x86_64::{
    __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_setzero_si128,
    _mm_storeu_si128, _mm_xor_si128,
};

simd_entry_points!(Sse2, ["sse2"], x86_has);

/// A block in four SSE2 registers.
#[derive(Clone, Copy)]
struct Sse2([__m128i; 4]);

impl Block for Sse2 {
    #[inline(always)]
    unsafe fn load(src: *const u8) -> Self {
        let load = |k: usize| {
            // SAFETY: `src` is valid for 64 bytes and `k < 4` (caller's contract); SSE2
            // is available (caller's contract).
            unsafe { _mm_loadu_si128(src.wrapping_add(16 * k).cast()) }
        };
        Sse2([load(0), load(1), load(2), load(3)])
    }

    #[inline(always)]
    unsafe fn store(self, dst: *mut u8) {
        let store = |k: usize| {
            // SAFETY: `dst` is valid for 64 bytes and `k < 4` (caller's contract); SSE2
            // is available (a block exists).
            unsafe { _mm_storeu_si128(dst.wrapping_add(16 * k).cast(), self.0[k]) };
        };
        store(0);
        store(1);
        store(2);
        store(3);
    }

    #[inline(always)]
    fn xor(self, other: Self) -> Self {
        // SAFETY: SSE2 is available (a block exists).
        let xor = |k: usize| unsafe { _mm_xor_si128(self.0[k], other.0[k]) };
        Sse2([xor(0), xor(1), xor(2), xor(3)])
    }

    #[inline(always)]
    fn or(self, other: Self) -> Self {
        // SAFETY: SSE2 is available (a block exists).
        let or = |k: usize| unsafe { _mm_or_si128(self.0[k], other.0[k]) };
        Sse2([or(0), or(1), or(2), or(3)])
    }

    #[inline(always)]
    fn is_zero(self) -> bool {
        // SAFETY: SSE2 is available (a block exists).
        let or = |a, b| unsafe { _mm_or_si128(a, b) };
        let any = or(or(self.0[0], self.0[1]), or(self.0[2], self.0[3]));
        zero_bits(any) == 0xFFFF
    }

    #[inline(always)]
    fn zero_mask(self) -> u64 {
        let bits = |k: usize| u64::from(zero_bits(self.0[k])) << (16 * k);
        bits(0) | bits(1) | bits(2) | bits(3)
    }
}

/// Bit `j` set when byte `j` of `v` is zero. Only called on vectors of a block.
#[inline(always)]
fn zero_bits(v: __m128i) -> u16 {
    // SAFETY: SSE2 is available (`v` belongs to a block).
    let zero = unsafe { _mm_setzero_si128() };
    // SAFETY: as above.
    let equal = unsafe { _mm_cmpeq_epi8(v, zero) };
    // SAFETY: as above.
    unsafe { _mm_movemask_epi8(equal) as u16 }
}
