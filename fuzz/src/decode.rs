//! Target `decode`: an arbitrary delta applied to an arbitrary page.
//!
//! Checks: no crash; the same verdict, error kind and offset, and the same page (partial
//! writes included) as the naive decoder of [`xbzrle_testkit::decode`];
//! [`xbzrle::validate`] returns what [`xbzrle::decode`] returns; a rejection points inside
//! the delta.
//!
//! Input layout (little-endian): `u16` page length (low 14 bits), one flag byte (bit 0:
//! add 16384 to the page length, for pages where lengths may take up to 5 bytes; bits
//! 2-7: page start offset), `u16` pattern length `m`, `m` pattern bytes repeated over the
//! page, then the delta.

use crate::input::{OffsetBuf, Reader};
use xbzrle::DecodeErrorKind;
use xbzrle_testkit::decode::{self as naive, Defect};

/// Runs the checks on one input; panics on a finding.
pub fn check(data: &[u8]) {
    let mut r = Reader::new(data);
    let raw_len = usize::from(r.u16() & 0x3fff);
    let flags = r.u8();
    let page_len = raw_len + if flags & 1 != 0 { 16384 } else { 0 };
    let offset = usize::from(flags >> 2);
    let pattern_len = usize::from(r.u16());
    let pattern = r.take(pattern_len);
    let delta = r.rest();

    let mut before = vec![0u8; page_len];
    if !pattern.is_empty() {
        for (byte, &p) in before.iter_mut().zip(pattern.iter().cycle()) {
            *byte = p;
        }
    }
    let mut expected_page = before.clone();
    let expected = naive::decode(delta, &mut expected_page);

    let mut page = OffsetBuf::with_content(offset, &before);
    let got = xbzrle::decode_partial(delta, page.as_mut_slice());
    assert_eq!(
        got.map_err(|e| (defect(e.kind()), e.offset())),
        expected,
        "verdict differs from the naive decoder: {got:?}"
    );
    assert!(
        page.as_slice() == expected_page.as_slice(),
        "page differs from the naive decoder's (verdict {got:?})"
    );
    if let Err(error) = got {
        assert!(
            error.offset() <= delta.len(),
            "error offset {} past the delta ({} bytes)",
            error.offset(),
            delta.len()
        );
    }
    assert_eq!(xbzrle::validate(delta, page_len), got, "validate disagrees");
    let mut whole = before.clone();
    assert_eq!(xbzrle::decode(delta, &mut whole), got, "decode disagrees");
    let expected_whole = if got.is_ok() { &expected_page } else { &before };
    assert!(
        whole == *expected_whole,
        "decode changed the page of a rejected delta"
    );
}

/// The codec's error kinds in the oracle's vocabulary.
fn defect(kind: DecodeErrorKind) -> Defect {
    match kind {
        DecodeErrorKind::Truncated => Defect::Truncated,
        DecodeErrorKind::ZeroUnchangedRun => Defect::ZeroUnchangedRun,
        DecodeErrorKind::ZeroChangedRun => Defect::ZeroChangedRun,
        DecodeErrorKind::OverlongLength => Defect::OverlongLength,
        DecodeErrorKind::RunPastPage => Defect::RunPastPage,
        other => panic!("an error kind the oracle does not know: {other:?}"),
    }
}
