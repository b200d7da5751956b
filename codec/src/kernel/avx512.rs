//! AVX-512BW kernel: one 64-byte vector per block; one test instruction gives the 64-bit
//! mask of equal bytes.

use super::generic::{self, Block};
use crate::encode::Encoded;
use core::arch::x86_64::{
    __m512i, _mm512_loadu_si512, _mm512_mask_storeu_epi8, _mm512_or_si512, _mm512_storeu_si512,
    _mm512_testn_epi8_mask, _mm512_xor_si512,
};

/// Whether the CPU supports this kernel.
#[inline]
pub(super) fn is_available() -> bool {
    x86_has!("avx512bw")
}

/// Canonical encode; `None` when the CPU lacks AVX-512BW.
#[inline]
pub(super) fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Option<Encoded> {
    // SAFETY: AVX-512BW is available (checked first).
    is_available().then(|| unsafe { encode_avx512(old, new, out) })
}

/// Single-pass encode and refresh; `None` when the CPU lacks AVX-512BW.
#[inline]
pub(super) fn encode_update(cached: &mut [u8], new: &[u8], out: &mut [u8]) -> Option<Encoded> {
    // SAFETY: AVX-512BW is available (checked first).
    is_available().then(|| unsafe { encode_update_avx512(cached, new, out) })
}

#[target_feature(enable = "avx512bw")]
fn encode_avx512(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    // SAFETY: this function runs only with AVX-512BW; the dispatcher checked the lengths.
    unsafe { generic::encode::<Avx512>(old, new, out) }
}

#[target_feature(enable = "avx512bw")]
fn encode_update_avx512(cached: &mut [u8], new: &[u8], out: &mut [u8]) -> Encoded {
    // SAFETY: this function runs only with AVX-512BW; the dispatcher checked the lengths.
    unsafe { generic::encode_update::<Avx512>(cached, new, out) }
}

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
