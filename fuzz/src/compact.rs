//! Target `compact`: the smallest-delta encoder.
//!
//! Checks, on arbitrary page pairs and capacities (input layout: [`PagePair`]):
//! [`xbzrle::encode_compact`] reports `Unchanged` exactly for equal pages; its delta
//! decodes back to the new page (with both the codec's and the naive decoder, so QEMU's
//! decoder accepts it); it is never longer than the canonical delta and is as short as
//! the smallest delta found by [`smallest_delta_len`]; with a limited capacity it
//! overflows exactly when that delta does not fit, and otherwise writes the same bytes.

use crate::input::{OffsetBuf, PagePair};
use crate::kernels::written;
use xbzrle::Encoded;
use xbzrle_testkit::{canonical_delta, canonical_runs, decode, smallest_delta_len};

/// Most changed runs for which the quadratic smallest-length search runs.
const MAX_RUNS_FOR_OPTIMUM: usize = 1024;

/// Runs the checks on one input; panics on a finding.
pub fn check(data: &[u8]) {
    let pair = PagePair::parse(data);
    let (old, new) = (pair.old.as_slice(), pair.new.as_slice());
    let canonical = canonical_delta(old, new);

    let mut ample = vec![0u8; 2 * old.len() + 64];
    let result = xbzrle::encode_compact(old, new, &mut ample);
    let compact: &[u8] = match result {
        Encoded::Unchanged => {
            assert!(canonical.is_empty(), "Unchanged for different pages");
            &[]
        }
        Encoded::Delta(n) => &ample[..n],
        Encoded::Overflow => panic!("overflow with an ample buffer"),
    };
    assert_eq!(
        compact.is_empty(),
        canonical.is_empty(),
        "empty delta iff the pages are equal"
    );
    assert!(
        compact.len() <= canonical.len(),
        "compact delta ({} bytes) longer than canonical ({} bytes)",
        compact.len(),
        canonical.len()
    );

    let mut page = old.to_vec();
    xbzrle::decode(compact, &mut page).expect("the compact delta decodes");
    assert!(
        page == new,
        "the compact delta does not rebuild the new page"
    );
    let mut naive_page = old.to_vec();
    assert!(
        decode::decode(compact, &mut naive_page).is_ok() && naive_page == new,
        "the naive decoder rejects or misapplies the compact delta"
    );
    if canonical_runs(old, new).len() <= MAX_RUNS_FOR_OPTIMUM {
        let smallest = smallest_delta_len(old, new);
        assert_eq!(compact.len(), smallest, "compact delta is not the smallest");
    }

    let capacity = pair.capacity_bytes(canonical.len());
    let mut out = OffsetBuf::filled(pair.out_offset, capacity, 0);
    let limited = xbzrle::encode_compact(old, new, out.as_mut_slice());
    let expected = match result {
        Encoded::Delta(n) if n > capacity => Encoded::Overflow,
        other => other,
    };
    assert_eq!(
        limited,
        expected,
        "capacity {capacity}: wrong result for a {}-byte compact delta",
        compact.len()
    );
    if let Encoded::Delta(_) = limited {
        assert!(
            written(limited, &out) == compact,
            "capacity {capacity}: different delta bytes"
        );
    }
}
