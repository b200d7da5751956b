//! Wire records: how the sender's decisions travel to the receiver.
//!
//! # Byte layout
//!
//! Every record starts with a 9-byte header: one flag byte, then the page number
//! (address / page size) as a big-endian `u64`. The page size is not on the wire: both
//! ends are configured with it. The body depends on the flag (values are QEMU's
//! `RAM_SAVE_FLAG_*`):
//!
//! | flag   | meaning | body |
//! |--------|---------|------|
//! | `0x02` | zero page (`RAM_SAVE_FLAG_ZERO`) | 1 fill byte; the page becomes that byte everywhere (the sender always writes 0) |
//! | `0x08` | raw page (`RAM_SAVE_FLAG_PAGE`) | exactly one page of bytes |
//! | `0x40` | XBZRLE page (`RAM_SAVE_FLAG_XBZRLE`) | the XBZRLE payload below |
//!
//! The XBZRLE payload is QEMU's, byte for byte: `0x01` (`ENCODING_FLAG_XBZRLE`), the delta
//! length as a big-endian `u16`, then the delta. A length above the page size is rejected,
//! as QEMU's receiver does.
//!
//! QEMU packs the flags into the low bits of a page-aligned 64-bit offset and may follow
//! it with a RAM block name; this crate keeps the flag in its own byte so that any page
//! size works, and has no RAM blocks.

use core::fmt;

/// Header flag of a zero page.
pub const FLAG_ZERO: u8 = 0x02;
/// Header flag of a raw page.
pub const FLAG_PAGE: u8 = 0x08;
/// Header flag of an XBZRLE page.
pub const FLAG_XBZRLE: u8 = 0x40;
/// First byte of the XBZRLE payload.
pub const ENCODING_FLAG_XBZRLE: u8 = 0x01;
/// Bytes of the record header (flag + page number).
pub const HEADER_LEN: usize = 9;
/// Bytes of the XBZRLE payload before the delta (encoding flag + length).
pub const XBZRLE_PAYLOAD_HEADER_LEN: usize = 3;
/// Longest delta an XBZRLE payload can carry.
pub const MAX_DELTA_LEN: usize = u16::MAX as usize;
/// Bytes of a zero-page record (header + fill byte), whatever the page size: what
/// [`Sender::save_zero_page`](crate::Sender::save_zero_page) needs in its output.
pub const ZERO_RECORD_LEN: usize = HEADER_LEN + 1;

/// What a record carries for its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body<'a> {
    /// The page is `fill` in every byte.
    Zero {
        /// Fill byte (QEMU and this crate's sender send 0).
        fill: u8,
    },
    /// The whole page.
    Raw(&'a [u8]),
    /// An XBZRLE delta against the receiver's current copy of the page (not yet
    /// validated: the [`Receiver`](crate::Receiver) does that).
    Xbzrle(&'a [u8]),
}

/// One record: a page number and what to do with that page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record<'a> {
    /// Page number (address / page size).
    pub page: u64,
    /// What the page becomes.
    pub body: Body<'a>,
}

impl<'a> Record<'a> {
    /// Bytes [`Record::write`] produces.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self.body {
                Body::Zero { .. } => 1,
                Body::Raw(page) => page.len(),
                Body::Xbzrle(delta) => XBZRLE_PAYLOAD_HEADER_LEN + delta.len(),
            }
    }

    /// Writes the record at the start of `out`; returns its length, or `None` (writing
    /// nothing) if `out` is too short or an XBZRLE delta is longer than [`MAX_DELTA_LEN`].
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.encoded_len();
        let out = out.get_mut(..len)?;
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let flag = match self.body {
            Body::Zero { fill } => {
                body[0] = fill;
                FLAG_ZERO
            }
            Body::Raw(page) => {
                body.copy_from_slice(page);
                FLAG_PAGE
            }
            Body::Xbzrle(delta) => {
                write_xbzrle_payload(delta, body)?;
                FLAG_XBZRLE
            }
        };
        write_header(header, flag, self.page);
        Some(len)
    }

    /// Parses the record at the start of `bytes` for pages of `page_size` bytes; returns
    /// it and its length. Never panics; the delta is checked later, when applied.
    pub fn parse(bytes: &'a [u8], page_size: usize) -> Result<(Self, usize), RecordError> {
        let header = bytes.get(..HEADER_LEN).ok_or(RecordError::Truncated {
            needed: HEADER_LEN,
            available: bytes.len(),
        })?;
        let flag = header[0];
        let mut page = [0; 8];
        page.copy_from_slice(&header[1..]);
        let page = u64::from_be_bytes(page);
        let rest = &bytes[HEADER_LEN..];
        let truncated = |needed: usize| RecordError::Truncated {
            needed: HEADER_LEN.saturating_add(needed),
            available: bytes.len(),
        };
        let (body, body_len) = match flag {
            FLAG_ZERO => {
                let fill = *rest.first().ok_or_else(|| truncated(1))?;
                (Body::Zero { fill }, 1)
            }
            FLAG_PAGE => {
                let data = rest.get(..page_size).ok_or_else(|| truncated(page_size))?;
                (Body::Raw(data), page_size)
            }
            FLAG_XBZRLE => {
                let (delta, len) = parse_xbzrle_payload(rest, page_size).map_err(|e| match e {
                    RecordError::Truncated { needed, .. } => truncated(needed),
                    other => other,
                })?;
                (Body::Xbzrle(delta), len)
            }
            other => return Err(RecordError::UnknownFlag(other)),
        };
        Ok((Self { page, body }, HEADER_LEN + body_len))
    }
}

/// Writes QEMU's XBZRLE payload (`0x01`, big-endian u16 length, delta) at the start of
/// `out`; returns its length, or `None` (writing nothing) if it does not fit or the delta
/// is longer than [`MAX_DELTA_LEN`].
pub fn write_xbzrle_payload(delta: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = u16::try_from(delta.len()).ok()?;
    let total = XBZRLE_PAYLOAD_HEADER_LEN + delta.len();
    let out = out.get_mut(..total)?;
    write_payload_header(out, len);
    out[XBZRLE_PAYLOAD_HEADER_LEN..].copy_from_slice(delta);
    Some(total)
}

/// Writes the record header into `out[..HEADER_LEN]`.
pub(crate) fn write_header(out: &mut [u8], flag: u8, page: u64) {
    out[0] = flag;
    out[1..HEADER_LEN].copy_from_slice(&page.to_be_bytes());
}

/// Writes the XBZRLE payload header into `out[..XBZRLE_PAYLOAD_HEADER_LEN]`.
pub(crate) fn write_payload_header(out: &mut [u8], delta_len: u16) {
    out[0] = ENCODING_FLAG_XBZRLE;
    out[1..XBZRLE_PAYLOAD_HEADER_LEN].copy_from_slice(&delta_len.to_be_bytes());
}

/// Parses QEMU's XBZRLE payload at the start of `bytes`; returns the delta and the payload
/// length. Rejects a wrong encoding flag, a length above `page_size` and a short input.
pub fn parse_xbzrle_payload(bytes: &[u8], page_size: usize) -> Result<(&[u8], usize), RecordError> {
    let header = bytes
        .get(..XBZRLE_PAYLOAD_HEADER_LEN)
        .ok_or(RecordError::Truncated {
            needed: XBZRLE_PAYLOAD_HEADER_LEN,
            available: bytes.len(),
        })?;
    if header[0] != ENCODING_FLAG_XBZRLE {
        return Err(RecordError::WrongEncodingFlag(header[0]));
    }
    let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
    if len > page_size {
        return Err(RecordError::DeltaLongerThanPage { len, page_size });
    }
    let total = XBZRLE_PAYLOAD_HEADER_LEN + len;
    let delta = bytes
        .get(XBZRLE_PAYLOAD_HEADER_LEN..total)
        .ok_or(RecordError::Truncated {
            needed: total,
            available: bytes.len(),
        })?;
    Ok((delta, total))
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordError {
    /// The input ends before the record does.
    Truncated {
        /// Bytes the record needs (as far as could be told).
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// The header flag is none of [`FLAG_ZERO`], [`FLAG_PAGE`], [`FLAG_XBZRLE`].
    UnknownFlag(u8),
    /// The XBZRLE payload does not start with [`ENCODING_FLAG_XBZRLE`].
    WrongEncodingFlag(u8),
    /// The XBZRLE delta length exceeds the page size.
    DeltaLongerThanPage {
        /// Length announced.
        len: usize,
        /// Page size.
        page_size: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "record truncated: needs {needed} bytes, {available} available"
                )
            }
            Self::UnknownFlag(flag) => write!(f, "unknown record flag {flag:#04x}"),
            Self::WrongEncodingFlag(flag) => {
                write!(f, "XBZRLE payload starts with {flag:#04x}, expected 0x01")
            }
            Self::DeltaLongerThanPage { len, page_size } => write!(
                f,
                "XBZRLE delta length {len} exceeds the page size {page_size}"
            ),
        }
    }
}

impl std::error::Error for RecordError {}
