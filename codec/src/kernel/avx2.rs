//! AVX2 kernel: two 32-byte vectors per block, two `movemask`s per mask.

use super::generic::Block;
use core::arch::x86_64::{
    __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
    _mm256_setzero_si256, _mm256_storeu_si256, _mm256_testz_si256, _mm256_xor_si256,
};

simd_entry_points!(Avx2, ["avx2", "popcnt"], x86_has);

/// A block in two AVX2 registers.
#[derive(Clone, Copy)]
struct Avx2([__m256i; 2]);

impl Block for Avx2 {
    #[inline(always)]
    unsafe fn load(src: *const u8) -> Self {
        let load = |k: usize| {
            // SAFETY: `src` is valid for 64 bytes and `k < 2` (caller's contract); AVX2
            // is available (caller's contract).
            unsafe { _mm256_loadu_si256(src.wrapping_add(32 * k).cast()) }
        };
        Avx2([load(0), load(1)])
    }

    #[inline(always)]
    unsafe fn store(self, dst: *mut u8) {
        let store = |k: usize| {
            // SAFETY: `dst` is valid for 64 bytes and `k < 2` (caller's contract); AVX2
            // is available (a block exists).
            unsafe { _mm256_storeu_si256(dst.wrapping_add(32 * k).cast(), self.0[k]) };
        };
        store(0);
        store(1);
    }

    #[inline(always)]
    fn xor(self, other: Self) -> Self {
        // SAFETY: AVX2 is available (a block exists).
        let xor = |k: usize| unsafe { _mm256_xor_si256(self.0[k], other.0[k]) };
        Avx2([xor(0), xor(1)])
    }

    #[inline(always)]
    fn or(self, other: Self) -> Self {
        // SAFETY: AVX2 is available (a block exists).
        let or = |k: usize| unsafe { _mm256_or_si256(self.0[k], other.0[k]) };
        Avx2([or(0), or(1)])
    }

    #[inline(always)]
    fn is_zero(self) -> bool {
        // SAFETY: AVX2 is available (a block exists).
        let any = unsafe { _mm256_or_si256(self.0[0], self.0[1]) };
        // SAFETY: as above.
        unsafe { _mm256_testz_si256(any, any) != 0 }
    }

    #[inline(always)]
    fn zero_mask(self) -> u64 {
        let bits = |k: usize| {
            // SAFETY: AVX2 is available (a block exists).
            let zero = unsafe { _mm256_setzero_si256() };
            // SAFETY: as above.
            let equal = unsafe { _mm256_cmpeq_epi8(self.0[k], zero) };
            // SAFETY: as above.
            u64::from(unsafe { _mm256_movemask_epi8(equal) } as u32)
        };
        bits(0) | bits(1) << 32
    }
}
