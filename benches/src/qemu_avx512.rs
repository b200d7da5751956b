//! QEMU's AVX-512 encoder method, written here from its description (no QEMU code), as the
//! baseline the codec's kernels are judged against on CPUs with AVX-512BW.
//!
//! The method: the page is compared 64 bytes at a time (the last block with masked loads)
//! into a 64-bit equality mask. An unchanged run and a changed run are carried across
//! blocks; a block that is all equal, or all different, extends the current run by 64 at
//! once; otherwise the run boundaries inside the block are found with trailing-zero counts
//! of the mask, one run at a time. A length is written when its run ends, a changed run's
//! bytes are copied from the new page with `memcpy` (`copy_from_slice`), and the output
//! capacity is checked before every write. The result is the canonical delta, the same
//! bytes as [`xbzrle::encode`] (checked in the tests below).

use xbzrle::Encoded;

/// Encodes `new` against `old` into `out` with QEMU's AVX-512 method; `None` when the CPU
/// has no AVX-512BW.
///
/// # Panics
/// If the pages differ in length or are longer than 16383 bytes (QEMU's 2-byte lengths).
pub fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Option<Encoded> {
    assert_eq!(old.len(), new.len(), "pages of different lengths");
    assert!(old.len() < 1 << 14, "QEMU's lengths have at most 2 bytes");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512BW (and so AVX-512F), checked just above.
        return Some(unsafe { encode_avx512(old, new, out) });
    }
    let _ = (old, new, out);
    None
}

/// The delta being written; `None` from a write that does not fit.
#[cfg(target_arch = "x86_64")]
struct Output<'a> {
    out: &'a mut [u8],
    len: usize,
}

#[cfg(target_arch = "x86_64")]
impl Output<'_> {
    /// Writes `value` (below 2^14) as a 1- or 2-byte ULEB128 length.
    #[inline(always)]
    fn length(&mut self, value: usize) -> Option<()> {
        if value < 0x80 {
            *self.out.get_mut(self.len)? = value as u8;
            self.len += 1;
        } else {
            let [low, high] = self.out.get_mut(self.len..)?.first_chunk_mut()?;
            (*low, *high) = (value as u8 | 0x80, (value >> 7) as u8);
            self.len += 2;
        }
        Some(())
    }

    /// Writes the changed run `bytes`: its length, then the bytes.
    #[inline(always)]
    fn changed_run(&mut self, bytes: &[u8]) -> Option<()> {
        self.length(bytes.len())?;
        let dst = self.out.get_mut(self.len..self.len + bytes.len())?;
        dst.copy_from_slice(bytes);
        self.len += bytes.len();
        Some(())
    }
}

/// QEMU's method (see the module documentation).
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn encode_avx512(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    // SAFETY: the caller guarantees the CPU features this function enables.
    match unsafe { delta_avx512(old, new, out) } {
        None => Encoded::Overflow,
        Some(0) => Encoded::Unchanged,
        Some(len) => Encoded::Delta(len),
    }
}

/// The delta's length, or `None` when it does not fit in `out`.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn delta_avx512(old: &[u8], new: &[u8], out: &mut [u8]) -> Option<usize> {
    use std::arch::x86_64::{_mm512_cmpeq_epi8_mask, _mm512_maskz_loadu_epi8};

    let len = old.len();
    let mut output = Output { out, len: 0 };
    // The unchanged run and the changed run in progress: at most one is non-zero. A changed
    // run that starts writes the unchanged run before it, 0 at the start of the page.
    let (mut zrun, mut nzrun) = (0usize, 0usize);
    let mut at = 0;
    while at < len {
        let n = (len - at).min(64);
        let valid = if n == 64 { u64::MAX } else { (1 << n) - 1 };
        // SAFETY: AVX-512BW is enabled for this function; the masked loads read only the
        // `n` bytes at `at` of each page, which lie inside the pages.
        let a = unsafe { _mm512_maskz_loadu_epi8(valid, old[at..].as_ptr().cast()) };
        // SAFETY: as above, for the new page.
        let b = unsafe { _mm512_maskz_loadu_epi8(valid, new[at..].as_ptr().cast()) };
        let equal = _mm512_cmpeq_epi8_mask(a, b) & valid;
        if equal == valid && nzrun == 0 {
            zrun += n;
        } else if equal == 0 && nzrun > 0 {
            nzrun += n;
        } else {
            // Run by run inside the block.
            let mut pos = 0;
            while pos < n {
                let rest = equal >> pos;
                if rest & 1 == 1 {
                    if nzrun > 0 {
                        output.changed_run(&new[at + pos - nzrun..at + pos])?;
                        nzrun = 0;
                    }
                    let k = (rest.trailing_ones() as usize).min(n - pos);
                    zrun += k;
                    pos += k;
                } else {
                    if nzrun == 0 {
                        output.length(zrun)?;
                        zrun = 0;
                    }
                    let k = (rest.trailing_zeros() as usize).min(n - pos);
                    nzrun += k;
                    pos += k;
                }
            }
        }
        at += n;
    }
    if nzrun > 0 {
        output.changed_run(&new[len - nzrun..])?;
    }
    Some(output.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xbzrle::Kernel;
    use xbzrle_workloads::SplitMix64;
    use xbzrle_workloads::patterns::{PAGE_SIZE, PageSet, Pattern};

    /// The method writes what the reference kernel writes, on every pattern and on pages
    /// of every length up to 200 bytes with random changed runs.
    #[test]
    fn writes_the_reference_kernels_delta() {
        if encode(&[1], &[2], &mut [0; 8]).is_none() {
            // The method runs only where the CPU has AVX-512BW.
            #[cfg(target_arch = "x86_64")]
            assert!(!std::arch::is_x86_feature_detected!("avx512bw"));
            return;
        }
        let check = |old: &[u8], new: &[u8], cap: usize| {
            let (mut ours, mut reference) = (vec![0; cap], vec![0; cap]);
            let got = encode(old, new, &mut ours).expect("AVX-512BW");
            let want = Kernel::Reference.encode(old, new, &mut reference).unwrap();
            assert_eq!(got, want);
            if let Encoded::Delta(n) = want {
                assert_eq!(ours[..n], reference[..n]);
            }
        };
        for &pattern in Pattern::ALL {
            let set = PageSet::synthetic(pattern, PAGE_SIZE, 4, 7);
            for i in 0..set.len() {
                check(set.old_page(i), set.new_page(i), PAGE_SIZE);
            }
        }
        let mut rng = SplitMix64::new(3);
        for len in 0..200 {
            for _ in 0..20 {
                let mut old = vec![0; len];
                rng.fill(&mut old);
                let mut new = old.clone();
                for _ in 0..rng.below(6) {
                    let start = rng.below(len as u64 + 1) as usize;
                    let end = (start + rng.below(70) as usize).min(len);
                    for byte in &mut new[start..end] {
                        *byte = byte.wrapping_add(1 + rng.below(255) as u8);
                    }
                }
                check(&old, &new, 2 * len + 8);
                check(&old, &new, len / 2);
            }
        }
    }
}
