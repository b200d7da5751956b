//! Wire records and the receiver: exact byte layout, and bad input leaves memory untouched.

use proptest::prelude::*;
use xbzrle::DecodeErrorKind;
use xbzrle_policy::wire::{self, Body, Record, RecordError};
use xbzrle_policy::{ReceiveError, Receiver};

const PAGE: usize = 64;
const PAGES: usize = 4;

fn header(flag: u8, page: u64) -> Vec<u8> {
    let mut h = vec![flag];
    h.extend_from_slice(&page.to_be_bytes());
    h
}

#[test]
fn byte_layout() {
    let page = 0x0102_0304_0506_0708;
    let page_bytes = [1, 2, 3, 4, 5, 6, 7, 8];
    let mut out = [0u8; 100];

    let n = Record {
        page,
        body: Body::Zero { fill: 0 },
    }
    .write(&mut out)
    .unwrap();
    assert_eq!(&out[..n], &[&[0x02][..], &page_bytes, &[0]].concat()[..]);

    let delta = [0x00, 0x01, 0xaa];
    let n = Record {
        page,
        body: Body::Xbzrle(&delta),
    }
    .write(&mut out)
    .unwrap();
    assert_eq!(
        &out[..n],
        &[&[0x40][..], &page_bytes, &[0x01, 0x00, 0x03], &delta].concat()[..]
    );

    let raw = [0x5a; PAGE];
    let n = Record {
        page,
        body: Body::Raw(&raw),
    }
    .write(&mut out)
    .unwrap();
    assert_eq!(&out[..n], &[&[0x08][..], &page_bytes, &raw].concat()[..]);

    // QEMU's payload on its own: flag, big-endian length, delta.
    let long = vec![7u8; 0x1234];
    let mut payload = vec![0u8; 0x1237];
    assert_eq!(
        wire::write_xbzrle_payload(&long, &mut payload),
        Some(0x1237)
    );
    assert_eq!(&payload[..3], &[0x01, 0x12, 0x34]);
    assert_eq!(
        wire::parse_xbzrle_payload(&payload, 0x1234),
        Ok((&long[..], 0x1237))
    );
    // Too long for a u16 length, or for the buffer: nothing written.
    let mut small = [0u8; 4];
    assert_eq!(wire::write_xbzrle_payload(&[1, 2], &mut small[..4]), None);
    assert_eq!(small, [0; 4]);
    assert_eq!(
        wire::write_xbzrle_payload(&vec![0; 70_000], &mut vec![0; 70_003]),
        None
    );
}

#[test]
fn records_parse_back() {
    let raw = [9u8; PAGE];
    let delta = [0x05, 0x02, 1, 2];
    for body in [
        Body::Zero { fill: 0 },
        Body::Zero { fill: 0xee },
        Body::Raw(&raw),
        Body::Xbzrle(&delta),
    ] {
        let record = Record { page: 3, body };
        let mut out = vec![0u8; record.encoded_len() + 5];
        let n = record.write(&mut out).unwrap();
        assert_eq!(n, record.encoded_len());
        assert_eq!(Record::parse(&out, PAGE), Ok((record, n)));
    }
}

/// A valid first run followed by an invalid field: QEMU's decoder would already have
/// written the first run.
const HALF_VALID: [u8; 7] = [0x00, 0x02, 0xaa, 0xbb, 0x00, 0x01, 0xcc];

#[test]
fn bad_records_leave_memory_unchanged() {
    let xbzrle = |delta: &[u8]| {
        let mut r = header(0x40, 1);
        r.push(0x01);
        r.extend_from_slice(&(delta.len() as u16).to_be_bytes());
        r.extend_from_slice(delta);
        r
    };
    let mut wrong_encoding = xbzrle(&[0x00, 0x01, 0xaa]);
    wrong_encoding[9] = 0x02;
    let mut too_long = header(0x40, 1);
    too_long.extend_from_slice(&[0x01, 0x00, PAGE as u8 + 1]);
    too_long.extend_from_slice(&[0x00; PAGE + 1]);
    let mut short_payload = xbzrle(&[0x00, 0x03, 1, 2, 3]);
    short_payload.pop();
    let mut short_raw = header(0x08, 0);
    short_raw.extend_from_slice(&[1; PAGE - 1]);
    let mut raw_far = header(0x08, PAGES as u64);
    raw_far.extend_from_slice(&[1; PAGE]);
    let mut huge_page = header(0x02, u64::MAX);
    huge_page.push(0);

    let cases: Vec<(&str, Vec<u8>, ReceiveError)> = vec![
        (
            "empty",
            vec![],
            RecordError::Truncated {
                needed: 9,
                available: 0,
            }
            .into(),
        ),
        (
            "short header",
            vec![0x02, 0, 0],
            RecordError::Truncated {
                needed: 9,
                available: 3,
            }
            .into(),
        ),
        (
            "unknown flag",
            [header(0x04, 0), vec![0]].concat(),
            RecordError::UnknownFlag(0x04).into(),
        ),
        (
            "two flags",
            [header(0x42, 0), vec![0]].concat(),
            RecordError::UnknownFlag(0x42).into(),
        ),
        (
            "zero without fill",
            header(0x02, 0),
            RecordError::Truncated {
                needed: 10,
                available: 9,
            }
            .into(),
        ),
        (
            "short raw",
            short_raw,
            RecordError::Truncated {
                needed: 9 + PAGE,
                available: 8 + PAGE,
            }
            .into(),
        ),
        (
            "wrong encoding flag",
            wrong_encoding,
            RecordError::WrongEncodingFlag(0x02).into(),
        ),
        (
            "length above page",
            too_long,
            RecordError::DeltaLongerThanPage {
                len: PAGE + 1,
                page_size: PAGE,
            }
            .into(),
        ),
        (
            "short payload header",
            [header(0x40, 1), vec![0x01, 0x00]].concat(),
            RecordError::Truncated {
                needed: 12,
                available: 11,
            }
            .into(),
        ),
        (
            "short delta",
            short_payload,
            RecordError::Truncated {
                needed: 17,
                available: 16,
            }
            .into(),
        ),
        (
            "page outside memory",
            raw_far,
            ReceiveError::PageOutOfRange { page: PAGES as u64 },
        ),
        (
            "page number overflows",
            huge_page,
            ReceiveError::PageOutOfRange { page: u64::MAX },
        ),
    ];
    let receiver = Receiver::new(PAGE).unwrap();
    let original: Vec<u8> = (0..PAGE * PAGES).map(|i| (i * 13) as u8).collect();
    for (name, bytes, expected) in cases {
        let mut memory = original.clone();
        assert_eq!(
            receiver.apply_record(&bytes, &mut memory),
            Err(expected),
            "{name}"
        );
        assert!(memory == original, "{name}: memory changed");
    }

    // Invalid deltas, including one whose first run is valid.
    let deltas: [(&[u8], DecodeErrorKind); 4] = [
        (&HALF_VALID, DecodeErrorKind::ZeroUnchangedRun),
        (&[0x00, 0x00, 0x00], DecodeErrorKind::ZeroChangedRun),
        (&[0x3f, 0x02, 1, 2], DecodeErrorKind::RunPastPage),
        (&[0x00, 0x03, 1, 2], DecodeErrorKind::Truncated),
    ];
    for (delta, kind) in deltas {
        let mut memory = original.clone();
        match receiver.apply_record(&xbzrle(delta), &mut memory) {
            Err(ReceiveError::Delta(e)) => assert_eq!(e.kind(), kind, "{delta:?}"),
            other => panic!("{delta:?}: {other:?}"),
        }
        assert!(memory == original, "{delta:?}: memory changed");
    }
    // The same half-valid delta does change the page through QEMU's single pass
    // (`decode_partial`): the receiver's guarantee comes from the all-or-nothing `decode`.
    let mut page = original[PAGE..2 * PAGE].to_vec();
    assert!(xbzrle::decode_partial(&HALF_VALID, &mut page).is_err());
    assert_ne!(page, original[PAGE..2 * PAGE]);
}

#[test]
fn apply_checks_page_lengths() {
    let receiver = Receiver::new(PAGE).unwrap();
    let mut short = vec![3u8; PAGE - 1];
    assert_eq!(
        receiver.apply(&Body::Zero { fill: 0 }, &mut short),
        Err(ReceiveError::WrongPageSize {
            len: PAGE - 1,
            page_size: PAGE
        })
    );
    assert_eq!(short, vec![3u8; PAGE - 1]);
    let mut dest = vec![3u8; PAGE];
    assert_eq!(
        receiver.apply(&Body::Raw(&[1; 5]), &mut dest),
        Err(ReceiveError::WrongPageSize {
            len: 5,
            page_size: PAGE
        })
    );
    assert_eq!(
        receiver.apply(&Body::Xbzrle(&[0; PAGE + 1]), &mut dest),
        Err(ReceiveError::Record(RecordError::DeltaLongerThanPage {
            len: PAGE + 1,
            page_size: PAGE
        }))
    );
    assert_eq!(dest, vec![3u8; PAGE]);
    receiver
        .apply(&Body::Zero { fill: 0x77 }, &mut dest)
        .unwrap();
    assert_eq!(dest, vec![0x77u8; PAGE]);
    receiver
        .apply(&Body::Xbzrle(&[0x02, 0x01, 0x10]), &mut dest)
        .unwrap();
    assert_eq!(&dest[..4], &[0x77, 0x77, 0x10, 0x77]);
    assert!(Receiver::new(0).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Untrusted bytes: never a panic; an error changes nothing; success changes only the
    /// record's page.
    #[test]
    fn arbitrary_bytes_are_safe(
        flag in prop::sample::select(vec![0x02u8, 0x08, 0x40, 0x00, 0xff]),
        page in 0..(PAGES as u64 + 2),
        body in prop::collection::vec(any::<u8>(), 0..PAGE + 8),
        tweak in any::<bool>(),
    ) {
        let mut bytes = header(flag, page);
        if tweak && flag == 0x40 && body.len() >= 3 {
            // Make the payload header plausible so the delta itself gets exercised.
            let len = ((body.len() - 3) as u16).to_be_bytes();
            bytes.extend_from_slice(&[0x01, len[0], len[1]]);
            bytes.extend_from_slice(&body[3..]);
        } else {
            bytes.extend_from_slice(&body);
        }
        let receiver = Receiver::new(PAGE).unwrap();
        let original: Vec<u8> = (0..PAGE * PAGES).map(|i| (i * 7) as u8).collect();
        let mut memory = original.clone();
        match receiver.apply_record(&bytes, &mut memory) {
            Err(_) => prop_assert!(memory == original),
            Ok(applied) => {
                prop_assert_eq!(applied.page, page);
                prop_assert!(applied.consumed <= bytes.len());
                let p = page as usize * PAGE;
                prop_assert!(memory[..p] == original[..p]);
                prop_assert!(memory[p + PAGE..] == original[p + PAGE..]);
            }
        }
    }
}

#[test]
fn receive_errors_print_their_cause_once() {
    use std::error::Error;
    let receiver = Receiver::new(PAGE).unwrap();
    let mut memory = vec![0u8; PAGE * PAGES];
    // A record error and a delta error: the message is the cause's, with no source to
    // print again after it.
    let mut zero_changed_run = header(0x40, 1);
    zero_changed_run.extend_from_slice(&[0x01, 0x00, 0x03, 0x00, 0x00, 0x00]);
    for bytes in [header(0x07, 0), zero_changed_run] {
        let err = receiver.apply_record(&bytes, &mut memory).unwrap_err();
        let cause = match err {
            ReceiveError::Record(e) => e.to_string(),
            ReceiveError::Delta(e) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(err.to_string(), cause);
        assert!(err.source().is_none(), "{err}");
    }
}

#[test]
fn a_page_is_inside_the_memory_only_if_all_of_it_is() {
    let receiver = Receiver::new(PAGE).unwrap();
    let len = PAGES * PAGE;
    assert_eq!(receiver.page_offset(0, len), Ok(0));
    assert_eq!(receiver.page_offset(PAGES as u64 - 1, len), Ok(len - PAGE));
    for (page, memory_len) in [
        (PAGES as u64 - 1, len - 1),
        (PAGES as u64, len),
        (0, PAGE - 1),
        (u64::MAX, usize::MAX),
        ((usize::MAX / PAGE) as u64, usize::MAX),
    ] {
        assert_eq!(
            receiver.page_offset(page, memory_len),
            Err(ReceiveError::PageOutOfRange { page }),
            "page {page} in {memory_len} bytes"
        );
    }
}
