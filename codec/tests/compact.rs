//! The compact encoder: the smallest delta in the canonical grammar. It decodes to the new
//! page with the crate's decoder (QEMU's verdict), is never longer than the canonical
//! delta, is as short as an independent quadratic search finds, and overflows exactly.

mod common;

use common::{
    ALIGNMENTS, Encoder, PagePair, Pattern, all_capacities, check_capacities, check_encoder,
    pair_strategy,
};
use proptest::prelude::*;
use xbzrle::Encoded;
use xbzrle_testkit::{canonical_delta, smallest_delta_len};

/// The compact delta with ample room.
fn compact(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = vec![0; 2 * old.len() + 16];
    match xbzrle::encode_compact(old, new, &mut out) {
        Encoded::Unchanged => Vec::new(),
        Encoded::Delta(n) => out[..n].to_vec(),
        Encoded::Overflow => panic!("overflow with ample room"),
    }
}

/// Every property of the compact delta of `pair`, at an ample capacity and at `capacities`.
fn check_compact(pair: &PagePair, capacities: impl IntoIterator<Item = usize>, align: usize) {
    let delta = compact(&pair.old, &pair.new);
    let canonical = canonical_delta(&pair.old, &pair.new);
    assert!(
        delta.len() <= canonical.len(),
        "{pair:?}: longer than canonical"
    );
    assert_eq!(delta.is_empty(), pair.old == pair.new, "{pair:?}");
    assert_eq!(
        delta.len(),
        smallest_delta_len(&pair.old, &pair.new),
        "{pair:?}: not the smallest"
    );
    let mut page = pair.old.clone();
    xbzrle::decode(&delta, &mut page).unwrap_or_else(|e| panic!("{pair:?}: {e}"));
    assert!(page == pair.new, "{pair:?}: decodes to another page");
    check_encoder(Encoder::Compact, pair, &delta, align);
    check_capacities(Encoder::Compact, pair, &delta, capacities, align);
}

fn pair(old: Vec<u8>, new: Vec<u8>) -> PagePair {
    PagePair {
        name: "hand-made".into(),
        old,
        new,
    }
}

#[test]
fn a_one_byte_gap_is_copied() {
    // Bytes 2 and 4 changed: canonical 02 01 01 01 01 01 (6 bytes); copying byte 3 gives
    // zrun 2, nzrun 3 and the three new bytes (5 bytes).
    let old = vec![0u8; 16];
    let mut new = old.clone();
    new[2] = 1;
    new[4] = 1;
    assert_eq!(canonical_delta(&old, &new), [2, 1, 1, 1, 1, 1]);
    assert_eq!(compact(&old, &new), [2, 3, 1, 0, 1]);
}

#[test]
fn ties_keep_the_canonical_form() {
    // A 2-byte gap costs as much copied (2 data bytes) as skipped (2 length bytes).
    let old = vec![0u8; 16];
    let mut new = old.clone();
    new[2] = 1;
    new[5] = 1;
    assert_eq!(compact(&old, &new), canonical_delta(&old, &new));
}

#[test]
fn the_uleb128_step_at_128_decides() {
    // A 126-byte run, a 1-byte gap, a 1-byte run: separate 1+1+126 + 1+1+1 = 131 bytes;
    // merged the range is 128 bytes and its length takes 2 bytes: 1+2+128 = 131, a tie.
    let old = vec![0u8; 300];
    let mut new = old.clone();
    new[..126].fill(7);
    new[127] = 7;
    assert_eq!(compact(&old, &new), canonical_delta(&old, &new));
    // With a 125-byte first run (bytes 1..126) the merged range is 127 bytes:
    // 1+1+127 = 129 against 1+1+125 + 1+1+1 = 130.
    new[0] = 0;
    let delta = compact(&old, &new);
    assert_eq!(delta.len(), 129);
    assert_eq!(delta[..2], [1, 127]);
    assert_eq!(canonical_delta(&old, &new).len(), 130);
}

#[test]
fn compact_on_every_pattern_and_length() {
    for len in [
        0, 1, 2, 7, 8, 63, 64, 65, 127, 128, 129, 300, 1000, 4096, 16384,
    ] {
        for pattern in Pattern::for_len(len) {
            let pair = PagePair::new(pattern, len, 0xC0);
            let delta_len = compact(&pair.old, &pair.new).len();
            let capacities = if len <= 300 {
                all_capacities(delta_len).collect()
            } else {
                vec![0, 1, delta_len.saturating_sub(1), delta_len, delta_len + 1]
            };
            check_compact(&pair, capacities, len % ALIGNMENTS);
        }
    }
}

#[test]
fn a_large_page_with_long_ranges_uses_long_lengths() {
    // 1-byte gaps every 20000 bytes on a 100000-byte page: merging everything into one
    // 3-byte-length range is the smallest delta.
    let old = vec![0u8; 100_000];
    let mut new = vec![1u8; 100_000];
    for gap in (20_000..100_000).step_by(20_000) {
        new[gap] = 0;
    }
    let delta = compact(&old, &new);
    assert_eq!(delta.len(), 1 + 3 + 100_000);
    let mut page = old.clone();
    assert_eq!(xbzrle::decode(&delta, &mut page), Ok(100_000));
    assert!(page == new);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compact_on_structured_pairs(pair in pair_strategy(3000), align in 0..ALIGNMENTS) {
        let delta_len = compact(&pair.old, &pair.new).len();
        check_compact(&pair, [0, 1, 2, delta_len.saturating_sub(1), delta_len], align);
    }

    #[test]
    fn compact_at_every_capacity(pair in pair_strategy(200), align in 0..ALIGNMENTS) {
        let delta_len = compact(&pair.old, &pair.new).len();
        check_compact(&pair, all_capacities(delta_len), align);
    }

    /// Changes with short, random gaps: where merging matters most.
    #[test]
    fn compact_on_dense_short_gaps(
        old in prop::collection::vec(any::<u8>(), 1..600),
        changed in prop::collection::vec(prop::bool::weighted(0.6), 600),
    ) {
        let new: Vec<u8> = old.iter().zip(&changed).map(|(&b, &c)| if c { !b } else { b }).collect();
        check_compact(&pair(old, new), [0, 1], 0);
    }
}
