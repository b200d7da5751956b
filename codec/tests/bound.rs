//! `max_delta_len` bounds every delta: exactly reached by alternating changed and unchanged
//! bytes (after a first run of two bytes on even lengths), never exceeded by the canonical
//! or the compact encoder on any page.

use proptest::prelude::*;
use xbzrle::{Encoded, encode, encode_compact, max_delta_len};

/// The length of the delta `encode` writes with ample room (0 when unchanged).
fn canonical_len(old: &[u8], new: &[u8]) -> usize {
    let mut out = vec![0; 2 * old.len() + 16];
    match encode(old, new, &mut out) {
        Encoded::Delta(len) => len,
        Encoded::Unchanged => 0,
        Encoded::Overflow => unreachable!("twice the page plus 16 always fits"),
    }
}

#[test]
fn alternating_bytes_reach_the_bound() {
    for len in (0..300).chain([4095, 4096, 16383, 16384, 65537]) {
        let old = vec![0u8; len];
        // Changed, unchanged, changed, ...: one-byte runs, the first at offset 0 and the last
        // ending the page; on an even length the first run takes two bytes.
        let changed = |i: usize| {
            if len.is_multiple_of(2) {
                i == 0 || !i.is_multiple_of(2)
            } else {
                i.is_multiple_of(2)
            }
        };
        let new: Vec<u8> = (0..len).map(|i| u8::from(changed(i))).collect();
        assert_eq!(canonical_len(&old, &new), max_delta_len(len), "len {len}");
        let mut out = vec![0; max_delta_len(len)];
        let expected = if len == 0 {
            Encoded::Unchanged
        } else {
            Encoded::Delta(max_delta_len(len))
        };
        assert_eq!(encode(&old, &new, &mut out), expected, "len {len}");
    }
}

#[test]
fn the_bound_saturates() {
    assert_eq!(max_delta_len(0), 0);
    assert_eq!(max_delta_len(1), 3);
    assert_eq!(max_delta_len(2), 4);
    // The formula in wider arithmetic, capped at `usize::MAX`.
    let wide = |n: usize| ((3 * n as u128 + 3) / 2).min(usize::MAX as u128) as usize;
    let third = usize::MAX / 3;
    for n in [
        third - 1,
        third,
        third + 1,
        usize::MAX / 3 * 2,
        usize::MAX - 1,
        usize::MAX,
    ] {
        assert_eq!(max_delta_len(n), wide(n), "len {n}");
    }
    assert_eq!(max_delta_len(usize::MAX), usize::MAX);
}

proptest! {
    #[test]
    fn no_delta_exceeds_the_bound(
        pair in (0..600usize).prop_flat_map(|len| (
            prop::collection::vec(any::<u8>(), len),
            prop::collection::vec(0..4u8, len),
        )),
    ) {
        let (old, changes) = pair;
        // Changes of a few patterns: runs of every length, isolated bytes, long stretches.
        let new: Vec<u8> = old.iter().zip(&changes).map(|(&b, &c)| if c == 0 { b } else { b ^ c }).collect();
        let len = canonical_len(&old, &new);
        prop_assert!(len <= max_delta_len(old.len()));
        let mut out = vec![0; max_delta_len(old.len())];
        prop_assert_ne!(encode(&old, &new, &mut out), Encoded::Overflow);
        prop_assert_ne!(encode_compact(&old, &new, &mut out), Encoded::Overflow);
    }
}
