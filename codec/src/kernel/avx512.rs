//! AVX-512BW kernel: one 64-byte vector per block; one test instruction gives the 64-bit
//! mask of equal bytes.

use super::generic::Block;
use core::arch::x86_64::{
    __m512i, _mm512_loadu_si512, _mm512_mask_storeu_epi8, _mm512_or_si512, _mm512_storeu_si512,
    _mm512_testn_epi8_mask, _mm512_xor_si512,
};

simd_entry_points!(Avx512, ["avx512bw", "popcnt"], x86_has);

/// A block in one AVX-512 register.
#[derive(Clone, Copy)]
struct Avx512(__m512i);

impl Block for Avx512 {
    #[inline(always)]
    unsafe fn load(src: *const u8) -> Self {
        // SAFETY: `src` is valid for 64 bytes; AVX-512BW is available (caller's contract).
        Avx512(unsafe { _mm512_loadu_si512(src.cast()) })
    }

    #[inline(always)]
    unsafe fn store(self, dst: *mut u8) {
        // SAFETY: `dst` is valid for 64 bytes (caller's contract); AVX-512BW is
        // available (a block exists).
        unsafe { _mm512_storeu_si512(dst.cast(), self.0) }
    }

    #[inline(always)]
    fn xor(self, other: Self) -> Self {
        // SAFETY: AVX-512BW is available (a block exists).
        Avx512(unsafe { _mm512_xor_si512(self.0, other.0) })
    }

    #[inline(always)]
    fn or(self, other: Self) -> Self {
        // SAFETY: AVX-512BW is available (a block exists).
        Avx512(unsafe { _mm512_or_si512(self.0, other.0) })
    }

    #[inline(always)]
    fn is_zero(self) -> bool {
        // The same test as `zero_mask`, so that a block's two results share it.
        self.zero_mask() == !0
    }

    #[inline(always)]
    fn zero_mask(self) -> u64 {
        // SAFETY: AVX-512BW is available (a block exists).
        unsafe { _mm512_testn_epi8_mask(self.0, self.0) }
    }

    const STORES_SELECTED: bool = true;

    #[inline(always)]
    unsafe fn store_selected(self, base: *mut u8, selected: u64) {
        // SAFETY: a masked store accesses only the bytes of the set mask bits, writable
        // (caller's contract); AVX-512BW is available (a block exists).
        unsafe { _mm512_mask_storeu_epi8(base.cast(), selected, self.0) }
    }
}
