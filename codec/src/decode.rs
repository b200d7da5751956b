//! The hardened decoder: QEMU's verdict on every input, safe on any input. Safe code only.
#![forbid(unsafe_code)]

use core::fmt;

use crate::format::{MAX_ULEB128_LEN, ReadError, read_uleb128};

/// What was wrong with a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended where a length or run data was expected.
    Truncated,
    /// An unchanged run of length 0 other than the very first field.
    ZeroUnchangedRun,
    /// A changed run of length 0.
    ZeroChangedRun,
    /// A length uses more ULEB128 bytes than allowed (2 for pages of at most 16383 bytes,
    /// as in QEMU; 5 otherwise) or does not fit in `u32`.
    OverlongLength,
    /// A run reaches past the end of the page.
    RunPastPage,
}

/// A rejected delta: what was wrong and at which byte offset of the delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    offset: usize,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }

    /// What was wrong.
    pub fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// Offset in the delta of the field that was rejected.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DecodeErrorKind::Truncated => "delta ends in the middle of a pair",
            DecodeErrorKind::ZeroUnchangedRun => "unchanged run of length 0 after the first pair",
            DecodeErrorKind::ZeroChangedRun => "changed run of length 0",
            DecodeErrorKind::OverlongLength => "length uses too many ULEB128 bytes",
            DecodeErrorKind::RunPastPage => "run reaches past the end of the page",
        };
        write!(
            f,
            "invalid XBZRLE delta: {what} (at delta byte {})",
            self.offset
        )
    }
}

impl core::error::Error for DecodeError {}

/// Applies `delta` to `page` in place, all or nothing: returns the offset just past the last
/// changed run (0 for the empty delta), or an error with the page untouched. The delta is
/// checked in full first ([`validate`]), then applied with [`decode_partial`].
pub fn decode(delta: &[u8], page: &mut [u8]) -> Result<usize, DecodeError> {
    validate(delta, page.len())?;
    decode_partial(delta, page)
}

/// Applies `delta` to `page` in place in one pass, exactly like QEMU's
/// `xbzrle_decode_buffer`: returns the offset just past the last changed run (0 for the
/// empty delta); on error, the runs before the faulty field have already been written, as in
/// QEMU. [`decode`] leaves the page untouched instead.
///
/// Short pairs (a 1- or 2-byte unchanged-run length and a changed run of 1 to 127 bytes)
/// take a fast path: the lengths are read without the general ULEB128 loop, three bytes at
/// once, and runs of up to 16 bytes are written with two overlapping fixed-size moves
/// instead of a `memcpy` call. A pair the fast path does not prove valid goes through the
/// general path, so the verdict, the error and the page are those of the plain decoder.
pub fn decode_partial(delta: &[u8], page: &mut [u8]) -> Result<usize, DecodeError> {
    let (mut i, mut d) = fast_pairs(delta, 0, 0, page);
    while i < delta.len() {
        (i, d) = general_pair(delta, i, d, page)?;
        (i, d) = fast_pairs(delta, i, d, page);
    }
    Ok(d)
}

/// One pair through the general path, written to `page`.
#[inline(never)]
fn general_pair(
    delta: &[u8],
    i: usize,
    d: usize,
    page: &mut [u8],
) -> Result<(usize, usize), DecodeError> {
    let max_len_bytes = max_len_bytes(page.len());
    pair(delta, i, d, page.len(), max_len_bytes, |at, data| {
        page[at..at + data.len()].copy_from_slice(data)
    })
}

/// The fast path: applies the pairs from delta offset `i` (page offset `d`) up to the end
/// of the delta or the first pair it declines, and returns the offsets after the last pair
/// applied.
///
/// It accepts a pair only when the pair is valid and short: a 1- or 2-byte unchanged-run
/// length (0 only at delta offset 0), a 1-byte changed-run length of 1 to 127, the run
/// inside the page and its data inside the delta. Each field then reads exactly as in
/// [`pair`] (which also wants 2 bytes left at each length: implied by the data byte that
/// follows), for any page length. A declined pair has not been written; the general path
/// then gives the verdict.
///
/// One loop, one bounds check per field: the three bytes that can hold both lengths are
/// read at once, and the offset of the next pair is one add of the loaded length.
#[inline(always)]
fn fast_pairs(delta: &[u8], mut i: usize, mut d: usize, page: &mut [u8]) -> (usize, usize) {
    let page_len = page.len();
    // Where the next run may start: anywhere for the first pair of the delta, past the end
    // of the run before otherwise (only the first pair may have an unchanged run of 0; every
    // pair before has a changed run of at least 1 byte, so `d > 0` when `i > 0`).
    let mut min_at = if i == 0 { 0 } else { d + 1 };
    while let Some(&[b0, b1, b2]) = delta.get(i..).and_then(<[u8]>::first_chunk) {
        let (zrun, n, data_at) = if b0 < 0x80 {
            (usize::from(b0), usize::from(b1), i + 2)
        } else if b1 < 0x80 {
            let zrun = usize::from(b0 & 0x7f) | usize::from(b1) << 7;
            (zrun, usize::from(b2), i + 3)
        } else {
            break;
        };
        // `d <= page_len`, `zrun < 2^14`, `n < 2^8`, `i < delta.len()`: no overflow.
        let (at, data_end) = (d + zrun, data_at + n);
        if at < min_at || n.wrapping_sub(1) >= 0x7f || at + n > page_len || data_end > delta.len() {
            break;
        }
        copy_run(&mut page[at..at + n], &delta[data_at..data_end]);
        (i, d) = (data_end, at + n);
        min_at = d + 1;
    }
    (i, d)
}

/// `dst.copy_from_slice(src)` (same length, at least 1): up to 16 bytes with two
/// overlapping fixed-size moves (one for a single byte), which write nothing but the run
/// (the page is not read, so a page out of cache costs no load), longer runs with
/// `copy_from_slice`.
#[inline(always)]
fn copy_run(dst: &mut [u8], src: &[u8]) {
    /// Copies the first and the last `N` bytes, if both slices are at least `N` long.
    #[inline(always)]
    fn ends<const N: usize>(dst: &mut [u8], src: &[u8]) -> bool {
        match (
            dst.first_chunk_mut::<N>(),
            src.first_chunk::<N>(),
            src.last_chunk::<N>(),
        ) {
            (Some(head), Some(first), Some(last)) => {
                *head = *first;
                if let Some(tail) = dst.last_chunk_mut::<N>() {
                    *tail = *last;
                }
                true
            }
            _ => false,
        }
    }
    let n = dst.len();
    let done = match n {
        8..=16 => ends::<8>(dst, src),
        4..=7 => ends::<4>(dst, src),
        2..=3 => ends::<2>(dst, src),
        1 => ends::<1>(dst, src),
        _ => false,
    };
    if !done {
        dst.copy_from_slice(src);
    }
}

/// Checks `delta` against a page of `page_len` bytes without writing anything; returns
/// what [`decode`] and [`decode_partial`] would return.
pub fn validate(delta: &[u8], page_len: usize) -> Result<usize, DecodeError> {
    let max_len_bytes = max_len_bytes(page_len);
    let (mut i, mut d) = (0, 0);
    while i < delta.len() {
        (i, d) = pair(delta, i, d, page_len, max_len_bytes, |_, _| {})?;
    }
    Ok(d)
}

/// Most ULEB128 bytes of a length for a page of `page_len` bytes: 2 up to QEMU's limit (as
/// QEMU), 5 above.
fn max_len_bytes(page_len: usize) -> usize {
    if page_len <= crate::QEMU_MAX_LEN {
        2
    } else {
        MAX_ULEB128_LEN
    }
}

/// The general path: parses the pair at delta offset `i` (page offset `d`) with every check
/// of QEMU's decoder, calls `apply(page_offset, data)` for its changed run once it has been
/// checked to lie inside the page, and returns the offsets after the pair.
fn pair(
    delta: &[u8],
    mut i: usize,
    d: usize,
    page_len: usize,
    max_len_bytes: usize,
    apply: impl FnOnce(usize, &[u8]),
) -> Result<(usize, usize), DecodeError> {
    let (zrun, used) = read_len(delta, i, max_len_bytes)?;
    if zrun == 0 && i != 0 {
        return Err(DecodeError::new(DecodeErrorKind::ZeroUnchangedRun, i));
    }
    let zrun_at = i;
    i += used;
    let d = d
        .checked_add(zrun)
        .filter(|&end| end <= page_len)
        .ok_or(DecodeError::new(DecodeErrorKind::RunPastPage, zrun_at))?;
    let (nzrun, used) = read_len(delta, i, max_len_bytes)?;
    if nzrun == 0 {
        return Err(DecodeError::new(DecodeErrorKind::ZeroChangedRun, i));
    }
    let nzrun_at = i;
    i += used;
    let end = d
        .checked_add(nzrun)
        .filter(|&end| end <= page_len)
        .ok_or(DecodeError::new(DecodeErrorKind::RunPastPage, nzrun_at))?;
    let data = delta
        .get(i..)
        .and_then(|rest| rest.get(..nzrun))
        .ok_or(DecodeError::new(DecodeErrorKind::Truncated, i))?;
    apply(d, data);
    Ok((i + nzrun, end))
}

/// Reads a ULEB128 length at `at`. Like QEMU, at least 2 bytes must remain (every length
/// is followed by at least one more byte in a valid delta); the value must fit in `u32`.
fn read_len(delta: &[u8], at: usize, max_bytes: usize) -> Result<(usize, usize), DecodeError> {
    let rest = &delta[at..];
    if rest.len() < 2 {
        return Err(DecodeError::new(DecodeErrorKind::Truncated, at));
    }
    let kind = match read_uleb128(rest, max_bytes) {
        Ok((value, used)) => match u32::try_from(value) {
            Ok(value) => return Ok((value as usize, used)),
            Err(_) => DecodeErrorKind::OverlongLength,
        },
        Err(ReadError::Truncated) => DecodeErrorKind::Truncated,
        Err(ReadError::TooLong) => DecodeErrorKind::OverlongLength,
    };
    Err(DecodeError::new(kind, at))
}
