//! Word-at-a-time scalar kernel, the speed baseline: like QEMU's C encoder, it compares
//! 8 bytes at a time (XOR of two 64-bit words), finds the end of an unchanged run with
//! `trailing_zeros` and the end of a changed run with the "has a zero byte" bit trick, and
//! copies each changed run with `copy_from_slice`. Any length and alignment; safe code.
#![forbid(unsafe_code)]

use crate::encode::Encoded;
use crate::format::DeltaWriter;
use core::ops::Range;

const WORD: usize = 8;
/// `0x01` in every byte.
const ONES: u64 = u64::from_ne_bytes([0x01; WORD]);
/// `0x80` in every byte.
const HIGHS: u64 = u64::from_ne_bytes([0x80; WORD]);

/// Canonical encode.
pub(super) fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    let mut old = old;
    run(&mut old, new, out)
}

/// Single-pass encode and refresh: the words of a changed run are stored into `cached` as
/// they are compared, and the run is copied out of `cached`.
pub(super) fn encode_update(cached: &mut [u8], new: &[u8], out: &mut [u8]) -> Encoded {
    let mut cached = cached;
    run(&mut cached, new, out)
}

/// The old page: read-only for `encode`, refreshed with the new bytes for `encode_update`.
trait OldPage {
    fn bytes(&self) -> &[u8];
    /// Stores the first `count` bytes of the new `word` at `at` (only when refreshing).
    fn refresh_word(&mut self, at: usize, word: u64, count: usize);
    /// Stores the new `byte` at `at` (only when refreshing).
    fn refresh_byte(&mut self, at: usize, byte: u8);
    /// Stores the new bytes from `at` to the end (only when refreshing).
    fn refresh_rest(&mut self, at: usize, new: &[u8]);
    /// The new bytes of a changed run: from the refreshed copy, or else from `new`.
    fn changed<'a>(&'a self, new: &'a [u8], run: Range<usize>) -> &'a [u8];
}

impl OldPage for &[u8] {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        self
    }
    #[inline(always)]
    fn refresh_word(&mut self, _: usize, _: u64, _: usize) {}
    #[inline(always)]
    fn refresh_byte(&mut self, _: usize, _: u8) {}
    #[inline(always)]
    fn refresh_rest(&mut self, _: usize, _: &[u8]) {}
    #[inline(always)]
    fn changed<'a>(&'a self, new: &'a [u8], run: Range<usize>) -> &'a [u8] {
        &new[run]
    }
}

impl OldPage for &mut [u8] {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        self
    }
    #[inline(always)]
    fn refresh_word(&mut self, at: usize, word: u64, count: usize) {
        self[at..at + count].copy_from_slice(&word.to_le_bytes()[..count]);
    }
    #[inline(always)]
    fn refresh_byte(&mut self, at: usize, byte: u8) {
        self[at] = byte;
    }
    #[inline(always)]
    fn refresh_rest(&mut self, at: usize, new: &[u8]) {
        self[at..].copy_from_slice(&new[at..]);
    }
    #[inline(always)]
    fn changed<'a>(&'a self, _: &'a [u8], run: Range<usize>) -> &'a [u8] {
        &self[run]
    }
}

#[inline(always)]
fn run(old: &mut impl OldPage, new: &[u8], out: &mut [u8]) -> Encoded {
    let mut writer = DeltaWriter::new(out);
    let mut at = 0;
    while let Some(start) = next_changed(old.bytes(), new, at) {
        let end = end_of_changed(old, new, start);
        if writer
            .push(start - at, old.changed(new, start..end))
            .is_err()
        {
            old.refresh_rest(end, new);
            return Encoded::Overflow;
        }
        at = end;
    }
    if writer.is_empty() {
        Encoded::Unchanged
    } else {
        Encoded::Delta(writer.len())
    }
}

/// The 8 bytes at `at` as a little-endian word, if they are inside `bytes`.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..)?.first_chunk::<WORD>()?;
    Some(u64::from_le_bytes(*chunk))
}

/// The first offset from `at` where the pages differ.
#[inline(always)]
fn next_changed(old: &[u8], new: &[u8], at: usize) -> Option<usize> {
    let (old_words, _) = old[at..].as_chunks::<WORD>();
    let (new_words, _) = new[at..].as_chunks::<WORD>();
    let mut offset = at;
    for (a, b) in old_words.iter().zip(new_words) {
        let diff = u64::from_le_bytes(*a) ^ u64::from_le_bytes(*b);
        if diff != 0 {
            return Some(offset + diff.trailing_zeros() as usize / WORD);
        }
        offset += WORD;
    }
    (offset..new.len()).find(|&i| old[i] != new[i])
}

/// The end of the changed run starting at `at`, refreshing each word or byte compared.
#[inline(always)]
fn end_of_changed(old: &mut impl OldPage, new: &[u8], mut at: usize) -> usize {
    while let (Some(a), Some(b)) = (word_at(old.bytes(), at), word_at(new, at)) {
        let diff = a ^ b;
        // The lowest flagged byte is the first zero byte of `diff` (higher flags may be
        // false positives of the borrow, but they are never looked at).
        let equal = diff.wrapping_sub(ONES) & !diff & HIGHS;
        if equal != 0 {
            // Only the changed bytes are refreshed: the rest is compared again later.
            let changed = equal.trailing_zeros() as usize / WORD;
            old.refresh_word(at, b, changed);
            return at + changed;
        }
        old.refresh_word(at, b, WORD);
        at += WORD;
    }
    while let (Some(&a), Some(&b)) = (old.bytes().get(at), new.get(at)) {
        if a == b {
            break;
        }
        old.refresh_byte(at, b);
        at += 1;
    }
    at
}
