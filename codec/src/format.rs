//! The wire grammar: ULEB128 lengths (size, writer, reader) and the writer that appends
//! `zrun nzrun` pairs (`docs/format.md`).

/// Most ULEB128 bytes a `u32` length can take.
pub(crate) const MAX_ULEB128_LEN: usize = 5;

/// Number of bytes `value` takes in ULEB128.
#[inline]
pub(crate) const fn uleb128_len(value: u32) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Writes `value` as ULEB128 at the start of `out`, returning the number of bytes written,
/// or `None` (writing nothing) when it does not fit.
#[inline]
pub(crate) fn write_uleb128(out: &mut [u8], value: u32) -> Option<usize> {
    let len = uleb128_len(value);
    let dst = out.get_mut(..len)?;
    let mut rest = value;
    for (i, byte) in dst.iter_mut().enumerate() {
        let more = if i + 1 < len { 0x80 } else { 0 };
        *byte = (rest & 0x7f) as u8 | more;
        rest >>= 7;
    }
    Some(len)
}

/// Why [`read_uleb128`] found no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The bytes end before the value's last byte.
    Truncated,
    /// The first `max_bytes` bytes all have the continuation bit set.
    TooLong,
}

/// Reads a ULEB128 value of at most `max_bytes` bytes (at most [`MAX_ULEB128_LEN`]) from
/// the start of `bytes`: its value and its size in bytes. The plain reader: the decoder's
/// fast path reads its short lengths without it.
#[inline]
pub(crate) fn read_uleb128(bytes: &[u8], max_bytes: usize) -> Result<(u64, usize), ReadError> {
    debug_assert!(max_bytes <= MAX_ULEB128_LEN);
    let mut value = 0u64;
    for (n, &byte) in bytes.iter().take(max_bytes).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * n);
        if byte & 0x80 == 0 {
            return Ok((value, n + 1));
        }
    }
    if bytes.len() < max_bytes {
        Err(ReadError::Truncated)
    } else {
        Err(ReadError::TooLong)
    }
}

/// Appends `zrun nzrun` pairs to a caller's buffer with an exact capacity check: a pair is
/// written only if it fits entirely, and nothing is ever written past the buffer.
#[derive(Debug)]
pub(crate) struct DeltaWriter<'a> {
    out: &'a mut [u8],
    len: usize,
}

/// The delta does not fit in the output buffer (inside the encoders; they report it as
/// [`Encoded::Overflow`](crate::Encoded::Overflow)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

impl<'a> DeltaWriter<'a> {
    /// Starts an empty delta in `out`.
    #[inline]
    pub(crate) fn new(out: &'a mut [u8]) -> Self {
        Self { out, len: 0 }
    }

    /// Bytes written so far.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when no pair has been written.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a pair: skip `zrun` bytes, then `changed` literal bytes (must not be empty).
    ///
    /// # Panics
    /// If a length does not fit in `u32` (pages are at most `u32::MAX` bytes).
    #[inline]
    pub(crate) fn push(&mut self, zrun: usize, changed: &[u8]) -> Result<(), Overflow> {
        debug_assert!(!changed.is_empty());
        let zrun = u32::try_from(zrun).expect("run length fits in u32");
        let nzrun = u32::try_from(changed.len()).expect("run length fits in u32");
        let need = uleb128_len(zrun) + uleb128_len(nzrun) + changed.len();
        let dst = self
            .out
            .get_mut(self.len..)
            .and_then(|rest| rest.get_mut(..need))
            .ok_or(Overflow)?;
        let z = write_uleb128(dst, zrun).ok_or(Overflow)?;
        let n = write_uleb128(&mut dst[z..], nzrun).ok_or(Overflow)?;
        dst[z + n..].copy_from_slice(changed);
        self.len += need;
        Ok(())
    }
}
