//! Word-at-a-time scalar kernel, the speed baseline. Any length and alignment; safe code.
//!
//! `encode` works like QEMU's C encoder: it compares 8 bytes at a time (XOR of two 64-bit
//! words), finds the end of an unchanged run with `trailing_zeros` and the end of a changed
//! run with the "has a zero byte" bit trick, and copies each changed run with
//! `copy_from_slice`.
//!
//! `encode_update` reads the new page once, on a fixed grid of 8-byte words: each word is
//! compared with the cached word, stored into the cached copy when it differs, and the
//! changed runs are copied out of the refreshed copy, so the delta and the cache agree even
//! if the new page changes during the call.
#![forbid(unsafe_code)]

use crate::encoded::Encoded;
use crate::format::{DeltaWriter, Overflow};
use crate::source::PageSource;

const WORD: usize = 8;
/// `0x01` in every byte.
const ONES: u64 = u64::from_ne_bytes([0x01; WORD]);
/// `0x7f` in every byte.
const LOWS: u64 = u64::from_ne_bytes([0x7f; WORD]);
/// `0x80` in every byte.
const HIGHS: u64 = u64::from_ne_bytes([0x80; WORD]);

/// Canonical encode.
pub(super) fn encode(old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
    let mut writer = DeltaWriter::new(out);
    let mut at = 0;
    while let Some(start) = next_changed(old, new, at) {
        let end = end_of_changed(old, new, start);
        if writer.push(start - at, &new[start..end]).is_err() {
            return Encoded::Overflow;
        }
        at = end;
    }
    finish(&writer)
}

/// Single-pass encode and refresh, reading each byte of `new` once.
pub(super) fn encode_update<S: PageSource + ?Sized>(
    cached: &mut [u8],
    new: &S,
    out: &mut [u8],
) -> Encoded {
    let mut runs = Runs {
        writer: DeltaWriter::new(out),
        run_start: 0,
        zrun: 0,
        changed: false,
    };
    let len = cached.len();
    let full = len - len % WORD;
    let mut at = 0;
    while at < full {
        let mut word = [0u8; WORD];
        new.read(at, &mut word);
        // `at + WORD <= full <= len`: always a word.
        let Some(slot) = cached[at..].first_chunk_mut::<WORD>() else {
            break;
        };
        let diff = u64::from_le_bytes(word) ^ u64::from_le_bytes(*slot);
        let walked = if diff == 0 {
            runs.equal(at, cached)
        } else {
            *slot = word;
            runs.word(at, changed_bytes(diff), WORD, cached)
        };
        at += WORD;
        if walked.is_err() {
            return overflow(cached, new, at);
        }
    }
    if at < len {
        // The last `len - at` (< 8) bytes; the bytes past the page count as equal.
        let n = len - at;
        let (mut word, mut old) = ([0u8; WORD], [0u8; WORD]);
        new.read(at, &mut word[..n]);
        old[..n].copy_from_slice(&cached[at..]);
        cached[at..].copy_from_slice(&word[..n]);
        let diff = u64::from_le_bytes(word) ^ u64::from_le_bytes(old);
        if runs.word(at, changed_bytes(diff), n, cached).is_err() {
            return overflow(cached, new, len);
        }
    }
    if runs.equal(len, cached).is_err() {
        return Encoded::Overflow;
    }
    finish(&runs.writer)
}

/// The delta does not fit: refreshes `cached[refreshed..]`, which was not read yet.
#[cold]
fn overflow<S: PageSource + ?Sized>(cached: &mut [u8], new: &S, refreshed: usize) -> Encoded {
    new.read(refreshed, &mut cached[refreshed..]);
    Encoded::Overflow
}

fn finish(writer: &DeltaWriter<'_>) -> Encoded {
    if writer.is_empty() {
        Encoded::Unchanged
    } else {
        Encoded::Delta(writer.len())
    }
}

/// Bit `j` set when byte `j` (little-endian order) of `diff` is nonzero.
#[inline(always)]
fn changed_bytes(diff: u64) -> u8 {
    // The high bit of each byte: set when the byte is nonzero (no carry between bytes).
    let high = (((diff & LOWS) + LOWS) | diff) & HIGHS;
    // Gathers the eight high bits into the top byte.
    ((high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// The run state of `encode_update`, over the refreshed cached copy.
struct Runs<'a> {
    writer: DeltaWriter<'a>,
    /// Start of the current run.
    run_start: usize,
    /// Length of the unchanged run before the current changed run.
    zrun: usize,
    /// Whether the current run is a changed one.
    changed: bool,
}

impl Runs<'_> {
    /// Byte `at` is unchanged: a changed run ends there and is written, its bytes taken
    /// from the refreshed copy `cached`.
    #[inline(always)]
    fn equal(&mut self, at: usize, cached: &[u8]) -> Result<(), Overflow> {
        if self.changed {
            self.close(at, cached)?;
        }
        Ok(())
    }

    /// Writes the changed run that ends at `at`.
    #[inline(never)]
    fn close(&mut self, at: usize, cached: &[u8]) -> Result<(), Overflow> {
        self.writer.push(self.zrun, &cached[self.run_start..at])?;
        self.run_start = at;
        self.changed = false;
        Ok(())
    }

    /// Byte `at` changed: a changed run starts there unless one is open.
    #[inline(always)]
    fn change(&mut self, at: usize) {
        if !self.changed {
            self.zrun = at - self.run_start;
            self.run_start = at;
            self.changed = true;
        }
    }

    /// The `n` bytes of the word at `at`, byte `j` changed when bit `j` of `changed` is set:
    /// walks the run boundaries with `trailing_zeros`.
    #[inline(always)]
    fn word(&mut self, at: usize, changed: u8, n: usize, cached: &[u8]) -> Result<(), Overflow> {
        let bytes = (1u32 << n) - 1;
        let changed = u32::from(changed) & bytes;
        let equal = !changed & bytes;
        // Boundaries below `from` are walked.
        let mut from = 0;
        loop {
            let next = if self.changed { equal } else { changed } & (!0 << from);
            if next == 0 {
                return Ok(());
            }
            from = next.trailing_zeros();
            let boundary = at + from as usize;
            if self.changed {
                self.close(boundary, cached)?;
            } else {
                self.change(boundary);
            }
        }
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

/// The end of the changed run starting at `at`.
#[inline(always)]
fn end_of_changed(old: &[u8], new: &[u8], mut at: usize) -> usize {
    while let (Some(a), Some(b)) = (word_at(old, at), word_at(new, at)) {
        let diff = a ^ b;
        // The lowest flagged byte is the first zero byte of `diff` (higher flags may be
        // false positives of the borrow, but they are never looked at).
        let equal = diff.wrapping_sub(ONES) & !diff & HIGHS;
        if equal != 0 {
            return at + equal.trailing_zeros() as usize / WORD;
        }
        at += WORD;
    }
    while at < new.len() && old[at] != new[at] {
        at += 1;
    }
    at
}
