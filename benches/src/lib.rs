//! Baselines the codec benchmarks (`benches/codec.rs`) compare the `xbzrle` crate with.
//!
//! * [`run_by_run_decode`]: the plain decoder everyone writes first, one `copy_from_slice`
//!   per changed run; [`xbzrle::decode_partial`] should beat it on sparse deltas.
//! * [`copy_encode_copy`]: what QEMU does around its encoder (copy the guest page out,
//!   encode it against the cached copy, copy it into the cache);
//!   [`xbzrle::Kernel::encode_update`] does the same work in one pass.
//! * [`pipeline`]: the whole sender at guest-RAM scale against QEMU's method.
//! * [`qemu_avx512`]: QEMU's AVX-512 encoder method, which the kernels are judged against.

pub mod pipeline;
pub mod qemu_avx512;

use xbzrle::{Encoded, Kernel, KernelUnavailable};
use xbzrle_testkit::uleb128;

/// The Rust examples of the repository's top-level `README.md`, run as doctests (this is
/// the workspace's unpublished library crate, so the file outside the crate is fine here).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct TopLevelReadme;

/// Applies a delta to `page` in place, one `copy_from_slice` per changed run, and returns
/// the offset just past the last changed run; `None` if the delta is malformed (it stops
/// there, the runs before are already applied). Lengths are full ULEB128.
pub fn run_by_run_decode(delta: &[u8], page: &mut [u8]) -> Option<usize> {
    let mut at = 0;
    let mut end: usize = 0;
    while at < delta.len() {
        let (zrun, used) = uleb128::read_u32_len(&delta[at..])?;
        at += used;
        let (nzrun, used) = uleb128::read_u32_len(&delta[at..])?;
        at += used;
        let start = end.checked_add(zrun)?;
        end = start.checked_add(nzrun)?;
        let data = delta.get(at..at.checked_add(nzrun)?)?;
        page.get_mut(start..end)?.copy_from_slice(data);
        at += nzrun;
    }
    Some(end)
}

/// QEMU's three steps: copies `guest` into `scratch`, encodes `scratch` against `cached`
/// with `kernel` into `out`, then copies `scratch` into `cached` unless the pages were
/// identical (QEMU skips that copy when the delta is empty).
///
/// # Panics
/// If the three pages differ in length.
pub fn copy_encode_copy(
    kernel: Kernel,
    cached: &mut [u8],
    guest: &[u8],
    scratch: &mut [u8],
    out: &mut [u8],
) -> Result<Encoded, KernelUnavailable> {
    scratch.copy_from_slice(guest);
    let encoded = kernel.encode(cached, scratch, out)?;
    if encoded != Encoded::Unchanged {
        cached.copy_from_slice(scratch);
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_by_run_decode_matches_xbzrle_decode() {
        // old: 0..64; new: bytes 3..5 and 200 changed (two runs), page of 300 bytes.
        let old: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut new = old.clone();
        new[3] = 0xaa;
        new[4] = 0xbb;
        new[200] = 0xcc;
        // Hand-written canonical delta: zrun 3, nzrun 2 [aa bb], zrun 195 (c3 01), nzrun 1 [cc].
        let delta = [3, 2, 0xaa, 0xbb, 0xc3, 0x01, 1, 0xcc];

        let mut page = old.clone();
        assert_eq!(run_by_run_decode(&delta, &mut page), Some(201));
        assert_eq!(page, new);

        let mut reference = old.clone();
        assert_eq!(xbzrle::decode(&delta, &mut reference), Ok(201));
        assert_eq!(reference, page);
    }

    #[test]
    fn run_by_run_decode_rejects_bad_deltas() {
        let mut page = [0u8; 16];
        assert_eq!(run_by_run_decode(&[0, 17], &mut page), None); // run past the page
        assert_eq!(run_by_run_decode(&[0, 4, 1, 2], &mut page), None); // data missing
        assert_eq!(run_by_run_decode(&[0x80], &mut page), None); // truncated length
        assert_eq!(run_by_run_decode(&[0xff; 6], &mut page), None); // over-long length
        assert_eq!(run_by_run_decode(&[], &mut page), Some(0));
    }

    #[test]
    fn copy_encode_copy_refreshes_the_cache() {
        let guest: Vec<u8> = (0..256u32).map(|i| (i * 3) as u8).collect();
        let mut cached = guest.clone();
        cached[10] ^= 1;
        let mut scratch = vec![0; 256];
        let mut out = vec![0; 256];
        let got = copy_encode_copy(
            Kernel::Reference,
            &mut cached,
            &guest,
            &mut scratch,
            &mut out,
        );
        // zrun 10, nzrun 1, the new byte.
        assert_eq!(got, Ok(Encoded::Delta(3)));
        assert_eq!(out[..3], [10, 1, guest[10]]);
        assert_eq!(cached, guest);
    }
}
