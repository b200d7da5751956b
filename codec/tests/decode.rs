//! The decoder against the naive one of `xbzrle-testkit`, written from the format
//! description (`docs/format.md`): same result, same error kind and offset, same page
//! afterwards (on error, the runs before the faulty field are written), and `validate`
//! agreeing with `decode`; on hand-made deltas, on every short delta over an alphabet of
//! interesting bytes, and on random and adversarial deltas near the end of the page and of
//! the input (where the fast path of `decode` hands over to the exact one).

use proptest::prelude::*;
use xbzrle::{DecodeErrorKind, QEMU_MAX_LEN};
use xbzrle_testkit::decode::{Defect, Outcome, decode as naive_decode};
use xbzrle_testkit::uleb128;

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

/// A codec result as an [`Outcome`]: `Ok(end)` or `Err((defect, offset))`.
fn outcome_of(result: Result<usize, xbzrle::DecodeError>) -> Outcome {
    result.map_err(|e| (defect(e.kind()), e.offset()))
}

/// Runs `xbzrle::decode_partial`, `xbzrle::decode`, `xbzrle::validate` and the naive decoder
/// on copies of `page`; panics unless they agree (result, error kind and offset; the page
/// afterwards: the naive decoder's for `decode_partial`, which writes as QEMU does, and for
/// `decode` the naive one's on success and the untouched page on error).
fn check(delta: &[u8], page: &[u8]) {
    let _ = outcome(delta, page);
}

/// [`check`], returning the agreed result.
fn outcome(delta: &[u8], page: &[u8]) -> Outcome {
    let mut want_page = page.to_vec();
    let want = naive_decode(delta, &mut want_page);
    let mut got_page = page.to_vec();
    let got = outcome_of(xbzrle::decode_partial(delta, &mut got_page));
    let context = || format!("delta {delta:02x?} on a page of {} bytes", page.len());
    assert_eq!(got, want, "decode_partial: {}", context());
    assert!(
        got_page == want_page,
        "decode_partial wrote a different page: {}",
        context()
    );
    let mut whole_page = page.to_vec();
    let whole = outcome_of(xbzrle::decode(delta, &mut whole_page));
    assert_eq!(whole, want, "decode: {}", context());
    let expected_page = if want.is_ok() { &want_page[..] } else { page };
    assert!(whole_page == expected_page, "decode: page {}", context());
    let validated = outcome_of(xbzrle::validate(delta, page.len()));
    assert_eq!(validated, want, "validate: {}", context());
    want
}

/// A page of `len` bytes of a recognisable pattern.
fn page_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn hand_made_deltas_and_their_errors() {
    use Defect::*;
    let page = page_of(64);
    let cases: &[(&[u8], Outcome)] = &[
        (&[], Ok(0)),
        (&[0, 1, 9], Ok(1)),
        (&[0x80, 0x00, 1, 9], Ok(1)),
        (&[5, 0x81, 0x00, 9], Ok(6)),
        (&[0, 1, 9, 0x85, 0x00, 2, 7, 7], Ok(8)),
        (&[63, 1, 9], Ok(64)),
        (&[0], Err((Truncated, 0))),
        (&[0, 1], Err((Truncated, 1))),
        (&[0, 2, 9], Err((Truncated, 2))),
        (&[0, 1, 9, 4], Err((Truncated, 3))),
        (&[0, 1, 9, 0x84, 0x00], Err((Truncated, 5))),
        (&[0, 1, 9, 0, 1, 9], Err((ZeroUnchangedRun, 3))),
        (&[0, 1, 9, 0x80, 0x00, 1, 9], Err((ZeroUnchangedRun, 3))),
        (&[3, 0, 9], Err((ZeroChangedRun, 1))),
        (&[3, 0x80, 0x00, 9], Err((ZeroChangedRun, 1))),
        (&[0x81, 0x80, 0x00, 1, 9], Err((OverlongLength, 0))),
        (&[1, 0x81, 0x80, 0x00, 9], Err((OverlongLength, 1))),
        (&[64, 1, 9], Err((RunPastPage, 1))),
        (&[65, 1, 9], Err((RunPastPage, 0))),
        (&[60, 5, 1, 2, 3, 4, 5], Err((RunPastPage, 1))),
        (&[60, 4, 1, 2, 3, 4], Ok(64)),
        // The first pair is applied before the second is rejected.
        (&[2, 3, 1, 2, 3, 0, 1, 9], Err((ZeroUnchangedRun, 5))),
    ];
    for &(delta, want) in cases {
        assert_eq!(outcome(delta, &page), want, "{delta:02x?}");
    }
    let mut written = page.clone();
    assert!(xbzrle::decode_partial(&[2, 3, 1, 2, 3, 0, 1, 9], &mut written).is_err());
    assert_eq!(written[2..5], [1, 2, 3]);
    let mut untouched = page.clone();
    assert!(xbzrle::decode(&[2, 3, 1, 2, 3, 0, 1, 9], &mut untouched).is_err());
    assert_eq!(untouched, page);
}

#[test]
fn error_messages_say_what_and_where() {
    let mut page = page_of(16);
    let err = xbzrle::decode(&[0, 1, 9, 0, 1, 9], &mut page).unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::ZeroUnchangedRun);
    assert_eq!(err.offset(), 3);
    let message = err.to_string();
    assert!(message.contains("unchanged run of length 0"), "{message}");
    assert!(message.contains("byte 3"), "{message}");
}

#[test]
fn longer_lengths_only_for_pages_above_qemu_limit() {
    // A 3-byte unchanged-run length (16384) then one changed byte.
    let delta = [0x80, 0x80, 0x01, 1, 0xaa];
    assert_eq!(
        outcome(&delta, &page_of(QEMU_MAX_LEN)),
        Err((Defect::OverlongLength, 0))
    );
    assert_eq!(outcome(&delta, &page_of(QEMU_MAX_LEN + 2)), Ok(16385));
    // Lengths that do not fit in u32 are over-long whatever the page.
    let huge = [0x80, 0x80, 0x80, 0x80, 0x10, 1, 0xaa];
    assert_eq!(
        outcome(&huge, &page_of(QEMU_MAX_LEN + 1)),
        Err((Defect::OverlongLength, 0))
    );
    // The largest 2-byte length on a 16384-byte page.
    assert_eq!(outcome(&[0xff, 0x7f, 1, 5], &page_of(16384)), Ok(16384));
}

/// Interesting bytes: lengths 0, 1, 2, small, 16, 17, the ULEB128 continuation bit.
const ALPHABET: [u8; 10] = [0x00, 0x01, 0x02, 0x03, 0x10, 0x11, 0x7f, 0x80, 0x81, 0xff];

/// Every delta of up to 5 bytes over [`ALPHABET`], on pages around the fast path's edges.
#[test]
fn every_short_delta_over_an_alphabet() {
    let pages: Vec<Vec<u8>> = [0, 1, 2, 3, 15, 16, 17, 19, 130, 200]
        .iter()
        .map(|&len| page_of(len))
        .collect();
    let mut delta = Vec::new();
    for len in 0..=5u32 {
        for code in 0..ALPHABET.len().pow(len) {
            delta.clear();
            let mut rest = code;
            for _ in 0..len {
                delta.push(ALPHABET[rest % ALPHABET.len()]);
                rest /= ALPHABET.len();
            }
            for page in &pages {
                check(&delta, page);
            }
        }
    }
}

/// Run lengths around the fast path's limits (8, 16, 127) and the ULEB128 steps.
fn run_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 1usize..=20,
        2 => prop::sample::select(vec![0usize, 1, 7, 8, 9, 15, 16, 17, 63, 64, 126, 127, 128, 129, 300]),
        1 => 0usize..3000,
        1 => prop::sample::select(vec![16382usize, 16383, 16384, 16385]),
    ]
}

/// A delta built from pairs (unchanged, changed) with some non-minimal lengths, on a page
/// whose length is the delta's extent plus `slack` (0 = the last run ends at the page end).
#[derive(Debug, Clone)]
struct Built {
    delta: Vec<u8>,
    page_len: usize,
}

fn built() -> impl Strategy<Value = Built> {
    (
        prop::collection::vec((run_len(), run_len(), 0usize..8, any::<u8>()), 0..12),
        prop_oneof![3 => 0usize..20, 1 => 0usize..5000],
        any::<bool>(),
    )
        .prop_map(|(pairs, slack, shrink)| {
            let mut delta = Vec::new();
            let mut extent = 0;
            for (zrun, nzrun, pad, seed) in pairs {
                // Mostly minimal lengths; sometimes one or two padding bytes.
                let (zpad, npad) = match pad {
                    6 => (1, 0),
                    7 => (0, 1),
                    _ => (0, 0),
                };
                uleb128::push_padded(&mut delta, zrun, zpad);
                uleb128::push_padded(&mut delta, nzrun, npad);
                delta.extend((0..nzrun).map(|k| seed.wrapping_add(k as u8).rotate_left(3)));
                extent += zrun + nzrun;
            }
            // Shrinking the page makes the last runs reach past it.
            let page_len = if shrink {
                extent.saturating_sub(slack)
            } else {
                extent + slack
            };
            Built { delta, page_len }
        })
}

/// How a built delta is damaged before decoding.
#[derive(Debug, Clone)]
enum Damage {
    None,
    /// Cut after this fraction of the delta (in 1/1000).
    Truncate(u16),
    /// XOR a byte (position in 1/1000 of the length) with a value.
    Flip(u16, u8),
    /// Insert a byte at a position.
    Insert(u16, u8),
    /// Remove the byte at a position.
    Remove(u16),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        2 => Just(Damage::None),
        1 => (0u16..1000).prop_map(Damage::Truncate),
        1 => (0u16..1000, 1u8..).prop_map(|(at, v)| Damage::Flip(at, v)),
        1 => (0u16..1000, any::<u8>()).prop_map(|(at, v)| Damage::Insert(at, v)),
        1 => (0u16..1000).prop_map(Damage::Remove),
    ]
}

fn apply(mut delta: Vec<u8>, damage: &Damage) -> Vec<u8> {
    let at = |per_mille: u16, len: usize| usize::from(per_mille) * len / 1000;
    match *damage {
        Damage::None => {}
        Damage::Truncate(p) => delta.truncate(at(p, delta.len())),
        Damage::Flip(p, v) => {
            if !delta.is_empty() {
                let i = at(p, delta.len());
                delta[i] ^= v;
            }
        }
        Damage::Insert(p, v) => {
            let i = at(p, delta.len() + 1);
            delta.insert(i, v);
        }
        Damage::Remove(p) => {
            if !delta.is_empty() {
                let i = at(p, delta.len());
                delta.remove(i);
            }
        }
    }
    delta
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Built deltas, intact or damaged, on pages ending at, just after or before the runs.
    #[test]
    fn built_deltas_decode_like_the_naive_decoder(built in built(), damage in damage()) {
        let delta = apply(built.delta, &damage);
        check(&delta, &page_of(built.page_len));
    }

    /// Arbitrary bytes, on small pages and on pages either side of QEMU's limit.
    #[test]
    fn arbitrary_bytes_decode_like_the_naive_decoder(
        delta in prop::collection::vec(any::<u8>(), 0..64),
        page_len in prop_oneof![0usize..300, (QEMU_MAX_LEN - 2)..(QEMU_MAX_LEN + 3)],
    ) {
        check(&delta, &page_of(page_len));
    }

    /// Bytes mostly below 0x80 and small: many valid short pairs, then trouble.
    #[test]
    fn small_bytes_decode_like_the_naive_decoder(
        delta in prop::collection::vec(prop_oneof![8 => 0u8..20, 1 => any::<u8>()], 0..120),
        page_len in 0usize..200,
    ) {
        check(&delta, &page_of(page_len));
    }
}

/// Valid deltas of real encodes: every prefix of a delta made of short pairs, on a page
/// that ends at the last run or a few bytes later (the fast path's windows at both ends).
#[test]
fn every_prefix_of_short_pair_deltas() {
    let mut rng = 0x1234_5678_u64;
    let mut next = move |n: usize| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize % n
    };
    for round in 0..200 {
        let page_len = 1 + next(400);
        let old = page_of(page_len);
        let mut new = old.clone();
        for _ in 0..1 + next(12) {
            let at = next(page_len);
            let run = 1 + next(if round % 2 == 0 { 8 } else { 24 });
            for b in new.iter_mut().skip(at).take(run) {
                *b ^= 0x5a;
            }
        }
        let mut out = vec![0; 2 * page_len + 16];
        let xbzrle::Encoded::Delta(n) = xbzrle::encode(&old, &new, &mut out) else {
            continue;
        };
        let delta = &out[..n];
        for cut in 0..=n {
            for extra in [0, 1, 15, 16, 17] {
                let mut page = old.clone();
                page.resize(page_len + extra, 0xee);
                check(&delta[..cut], &page);
            }
        }
        let mut page = old.clone();
        assert_eq!(xbzrle::decode(delta, &mut page).map(|_| ()), Ok(()));
        assert_eq!(page, new);
    }
}
