//! Target `kernels`: every kernel this CPU runs against the scalar reference.
//!
//! Checks, on arbitrary page pairs, alignments and output capacities (input layout:
//! [`PagePair`]): every kernel of [`Kernel::available`], and the dispatched
//! [`xbzrle::encode`], return the same result and the same bytes as [`Kernel::Reference`];
//! the reference gives the naive canonical delta with the exact overflow rule; the delta
//! decodes back to the new page.

use crate::expected_encode;
use crate::input::{OffsetBuf, PagePair};
use xbzrle::{Encoded, Kernel};
use xbzrle_testkit::canonical_delta;

/// Runs the checks on one input; panics on a finding.
pub fn check(data: &[u8]) {
    let pair = PagePair::parse(data);
    let (old, new) = (pair.old.as_slice(), pair.new.as_slice());
    let canonical = canonical_delta(old, new);
    let capacity = pair.capacity_bytes(canonical.len());

    let mut reference_out = OffsetBuf::filled(pair.out_offset, capacity, 0);
    let reference = Kernel::Reference
        .encode(old, new, reference_out.as_mut_slice())
        .expect("the reference kernel always runs");
    let reference_delta = written(reference, &reference_out);
    assert_eq!(
        reference,
        expected_encode(&canonical, capacity),
        "reference kernel: wrong result (capacity {capacity}, canonical length {})",
        canonical.len()
    );
    if let Encoded::Delta(_) = reference {
        assert!(
            reference_delta == canonical.as_slice(),
            "reference kernel: not the canonical delta"
        );
    }

    for kernel in Kernel::available().filter(|&k| k != Kernel::Reference) {
        let mut out = OffsetBuf::filled(pair.out_offset, capacity, 0);
        let result = kernel
            .encode(old, new, out.as_mut_slice())
            .expect("available kernels run");
        assert_eq!(result, reference, "kernel {kernel}: result differs");
        assert!(
            written(result, &out) == reference_delta,
            "kernel {kernel}: delta bytes differ"
        );
    }
    let mut out = OffsetBuf::filled(pair.out_offset, capacity, 0);
    let result = xbzrle::encode(old, new, out.as_mut_slice());
    assert_eq!(result, reference, "xbzrle::encode: result differs");
    assert!(
        written(result, &out) == reference_delta,
        "xbzrle::encode: delta bytes differ"
    );

    let mut page = old.to_vec();
    xbzrle::decode(&canonical, &mut page).expect("the canonical delta decodes");
    assert!(
        page == new,
        "the canonical delta does not rebuild the new page"
    );
}

/// The delta bytes an encode wrote (empty unless it returned a delta).
pub(crate) fn written(result: Encoded, out: &OffsetBuf) -> &[u8] {
    match result {
        Encoded::Delta(n) => &out.as_slice()[..n],
        Encoded::Unchanged | Encoded::Overflow => &[],
    }
}
