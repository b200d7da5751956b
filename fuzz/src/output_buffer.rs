//! Target `output_buffer`: results do not depend on what the output buffer held before.
//!
//! Checks, on arbitrary page pairs, alignments and capacities (input layout: [`PagePair`]):
//! every encoder (each available kernel's `encode` and `encode_update`, the dispatched
//! `encode` and `encode_update`, and `encode_compact`) returns the same result and the
//! same delta bytes into a buffer filled with 0x00 and into one filled with 0xFF.

use crate::EncodeUpdateFn;
use crate::input::{OffsetBuf, PagePair};
use crate::kernels::written;
use xbzrle::{Encoded, Kernel};
use xbzrle_testkit::canonical_delta;

/// Runs the checks on one input; panics on a finding.
pub fn check(data: &[u8]) {
    let pair = PagePair::parse(data);
    let (old, new) = (pair.old.as_slice(), pair.new.as_slice());
    let capacity = pair.capacity_bytes(canonical_delta(old, new).len());
    let compare = |name: &str, encode: &dyn Fn(&mut [u8]) -> Encoded| {
        let mut zeros = OffsetBuf::filled(pair.out_offset, capacity, 0x00);
        let mut ones = OffsetBuf::filled(pair.out_offset, capacity, 0xff);
        let from_zeros = encode(zeros.as_mut_slice());
        let from_ones = encode(ones.as_mut_slice());
        assert_eq!(
            from_zeros, from_ones,
            "{name}: result depends on the buffer"
        );
        assert!(
            written(from_zeros, &zeros) == written(from_ones, &ones),
            "{name}: delta depends on the buffer"
        );
    };
    let update = |f: EncodeUpdateFn<'_>, out: &mut [u8]| {
        let mut cached = pair.old.clone();
        f(cached.as_mut_slice(), new, out)
    };
    for kernel in Kernel::available() {
        compare(&format!("{kernel} encode"), &|out| {
            kernel.encode(old, new, out).expect("available")
        });
        compare(&format!("{kernel} encode_update"), &|out| {
            update(
                &|cached, new, out| kernel.encode_update(cached, new, out).expect("available"),
                out,
            )
        });
    }
    compare("encode", &|out| xbzrle::encode(old, new, out));
    compare("encode_update", &|out| update(&xbzrle::encode_update, out));
    compare("encode_compact", &|out| {
        xbzrle::encode_compact(old, new, out)
    });
}
