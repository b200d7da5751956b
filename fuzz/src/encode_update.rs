//! Target `encode_update`: encode-and-refresh against plain encoding.
//!
//! Checks, on arbitrary page pairs, alignments and capacities (input layout: [`PagePair`]),
//! for every available kernel and for the dispatched free functions: `encode_update`
//! returns the same result and delta bytes as `encode`, and leaves the cached copy equal to
//! the new page, on overflow too.

use crate::input::{OffsetBuf, PagePair};
use crate::kernels::written;
use crate::{EncodeFn, EncodeUpdateFn};
use xbzrle::Kernel;
use xbzrle_testkit::canonical_delta;

/// Runs the checks on one input; panics on a finding.
pub fn check(data: &[u8]) {
    let pair = PagePair::parse(data);
    let new = pair.new.as_slice();
    let capacity = pair.capacity_bytes(canonical_delta(pair.old.as_slice(), new).len());
    let run = |name: &str, encode: EncodeFn<'_>, encode_update: EncodeUpdateFn<'_>| {
        let mut plain_out = OffsetBuf::filled(pair.out_offset, capacity, 0);
        let plain = encode(pair.old.as_slice(), new, plain_out.as_mut_slice());
        let mut cached = pair.old.clone();
        let mut out = OffsetBuf::filled(pair.out_offset, capacity, 0);
        let result = encode_update(cached.as_mut_slice(), new, out.as_mut_slice());
        assert_eq!(result, plain, "{name}: result differs from encode");
        assert!(
            written(result, &out) == written(plain, &plain_out),
            "{name}: delta differs from encode"
        );
        assert!(
            cached.as_slice() == new,
            "{name}: cached copy not refreshed (result {result:?})"
        );
    };
    for kernel in Kernel::available() {
        run(
            kernel.name(),
            &|old, new, out| kernel.encode(old, new, out).expect("available"),
            &|cached, new, out| kernel.encode_update(cached, new, out).expect("available"),
        );
    }
    run("dispatched", &xbzrle::encode, &xbzrle::encode_update);
}
