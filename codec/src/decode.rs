//! The hardened decoder: QEMU's verdict on every input, safe on any input.

use core::fmt;

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

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// Applies `delta` to `page` in place and returns the offset just past the last changed
/// run (0 for the empty delta), like QEMU's `xbzrle_decode_buffer`.
///
/// On error, the runs before the faulty field have already been written (as in QEMU); use
/// [`validate`] first to keep the page untouched on bad input.
pub fn decode(delta: &[u8], page: &mut [u8]) -> Result<usize, DecodeError> {
    walk(delta, page.len(), |at, data| {
        page[at..at + data.len()].copy_from_slice(data)
    })
}

/// Checks `delta` against a page of `page_len` bytes without writing anything; returns
/// what [`decode`] would return.
pub fn validate(delta: &[u8], page_len: usize) -> Result<usize, DecodeError> {
    walk(delta, page_len, |_, _| {})
}

/// Parses the delta, calling `apply(page_offset, data)` for each changed run after it has
/// been checked to lie inside the page.
fn walk(
    delta: &[u8],
    page_len: usize,
    mut apply: impl FnMut(usize, &[u8]),
) -> Result<usize, DecodeError> {
    let max_len_bytes = if page_len <= crate::QEMU_MAX_LEN {
        2
    } else {
        crate::format::MAX_ULEB128_LEN
    };
    let mut i = 0;
    let mut d = 0usize;
    while i < delta.len() {
        let (zrun, used) = read_len(delta, i, max_len_bytes)?;
        if zrun == 0 && i != 0 {
            return Err(DecodeError::new(DecodeErrorKind::ZeroUnchangedRun, i));
        }
        let zrun_at = i;
        i += used;
        d = d
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
        i += nzrun;
        d = end;
    }
    Ok(d)
}

/// Reads a ULEB128 length at `at`. Like QEMU, at least 2 bytes must remain (every length
/// is followed by at least one more byte in a valid delta).
fn read_len(delta: &[u8], at: usize, max_bytes: usize) -> Result<(usize, usize), DecodeError> {
    let rest = &delta[at..];
    if rest.len() < 2 {
        return Err(DecodeError::new(DecodeErrorKind::Truncated, at));
    }
    let mut value: u64 = 0;
    for (n, &byte) in rest.iter().take(max_bytes).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * n);
        if byte & 0x80 == 0 {
            return u32::try_from(value)
                .map(|v| (v as usize, n + 1))
                .map_err(|_| DecodeError::new(DecodeErrorKind::OverlongLength, at));
        }
    }
    if rest.len() < max_bytes {
        Err(DecodeError::new(DecodeErrorKind::Truncated, at))
    } else {
        Err(DecodeError::new(DecodeErrorKind::OverlongLength, at))
    }
}
