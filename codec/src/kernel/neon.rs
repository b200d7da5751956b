//! NEON kernel (aarch64): four 16-byte vectors per block. NEON has no `movemask`. "All
//! equal" folds the OR of the four XORs with one pairwise maximum (`vpmaxq_u8`) into a
//! 64-bit word that is zero exactly when the block is. The 64-bit mask of a mixed block
//! keeps one weighted bit per equal byte (`vceqzq_u8`) and folds the four vectors with
//! three rounds of pairwise adds (`vpaddq_u8`): the `vshrn_n_u16(…, 4)` narrowing gives
//! 4 bits per byte, a 64-bit word per 16 bytes, which does not fit one 64-bit mask per
//! 64-byte block.

use super::generic::Block;
use core::arch::aarch64::{
    uint8x16_t, vandq_u8, vceqzq_u8, vdupq_n_u64, veorq_u8, vgetq_lane_u64, vld1q_u8, vorrq_u8,
    vpaddq_u8, vpmaxq_u8, vreinterpretq_u8_u64, vreinterpretq_u64_u8, vst1q_u8,
};

simd_entry_points!(Neon, ["neon"], aarch64_has);

/// A block in four NEON registers.
#[derive(Clone, Copy)]
struct Neon([uint8x16_t; 4]);

impl Block for Neon {
    #[inline(always)]
    unsafe fn load(src: *const u8) -> Self {
        let load = |k: usize| {
            // SAFETY: `src` is valid for 64 bytes and `k < 4` (caller's contract); NEON
            // is available (caller's contract).
            unsafe { vld1q_u8(src.wrapping_add(16 * k)) }
        };
        Neon([load(0), load(1), load(2), load(3)])
    }

    #[inline(always)]
    unsafe fn store(self, dst: *mut u8) {
        let store = |k: usize| {
            // SAFETY: `dst` is valid for 64 bytes and `k < 4` (caller's contract); NEON
            // is available (a block exists).
            unsafe { vst1q_u8(dst.wrapping_add(16 * k), self.0[k]) };
        };
        (store(0), store(1), store(2), store(3));
    }

    #[inline(always)]
    fn xor(self, other: Self) -> Self {
        // SAFETY: NEON is available (a block exists).
        let xor = |k: usize| unsafe { veorq_u8(self.0[k], other.0[k]) };
        Neon([xor(0), xor(1), xor(2), xor(3)])
    }

    #[inline(always)]
    fn or(self, other: Self) -> Self {
        // SAFETY: NEON is available (a block exists).
        let or = |k: usize| unsafe { vorrq_u8(self.0[k], other.0[k]) };
        Neon([or(0), or(1), or(2), or(3)])
    }

    #[inline(always)]
    fn is_zero(self) -> bool {
        // SAFETY: NEON is available (a block exists).
        let or = |a, b| unsafe { vorrq_u8(a, b) };
        let any = or(or(self.0[0], self.0[1]), or(self.0[2], self.0[3]));
        // Pairwise maxima: the low 8 bytes are nonzero exactly when a byte of `any` is.
        // SAFETY: as above.
        let maxima = unsafe { vreinterpretq_u64_u8(vpmaxq_u8(any, any)) };
        // SAFETY: as above.
        unsafe { vgetq_lane_u64::<0>(maxima) == 0 }
    }

    #[inline(always)]
    fn zero_mask(self) -> u64 {
        // Byte `j` of each 8-byte half keeps only bit `j`.
        // SAFETY: NEON is available (a block exists).
        let weights = unsafe { vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201)) };
        let bits = |k: usize| {
            // SAFETY: as above.
            let zero = unsafe { vceqzq_u8(self.0[k]) };
            // SAFETY: as above.
            unsafe { vandq_u8(zero, weights) }
        };
        // SAFETY: as above.
        let add = |a, b| unsafe { vpaddq_u8(a, b) };
        // Three rounds of pairwise adds turn each run of 8 bytes into one byte, in order.
        let quads = add(add(bits(0), bits(1)), add(bits(2), bits(3)));
        let octets = add(quads, quads);
        // SAFETY: as above.
        unsafe { vgetq_lane_u64::<0>(vreinterpretq_u64_u8(octets)) }
    }
}
