//! What can be wrong with a stream, and where.

use core::fmt;
use std::io;

/// A stream the reader rejects: what was wrong and at which byte offset of the (decompressed)
/// stream the offending field starts.
#[derive(Debug)]
pub struct StreamError {
    offset: u64,
    kind: ErrorKind,
}

impl StreamError {
    pub(crate) fn new(offset: u64, kind: ErrorKind) -> Self {
        Self { offset, kind }
    }

    /// Byte offset in the uncompressed stream of the field that was rejected.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(err) => Some(err),
            ErrorKind::BadDelta(err) => Some(err),
            _ => None,
        }
    }
}

/// Why a stream was rejected.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading the input failed (including a corrupt zstd frame).
    Io(io::Error),
    /// The input ends in the middle of a field.
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes that were left.
        available: u64,
    },
    /// The first four bytes are not `QEVM`.
    BadMagic(u32),
    /// A stream version other than 3 (QEMU's current one).
    UnsupportedVersion(u32),
    /// A top-level marker byte that no section type has.
    UnknownSectionType(u8),
    /// A marker that is valid QEMU but not where it stands (configuration after the first
    /// section, a second RAM START, a PART before START, device state before the RAM END, …).
    UnexpectedSection(String),
    /// A configuration subsection this reader does not know (its length cannot be told).
    UnknownConfigurationSubsection(String),
    /// A field whose value is outside what QEMU writes or this reader accepts.
    BadValue(String),
    /// A START or PART section of an iterable device other than RAM (block migration,
    /// dirty bitmaps): their payload has no length, so it cannot be skipped.
    UnsupportedSection(String),
    /// A `ram` section version other than 4.
    UnsupportedRamVersion(u32),
    /// A section footer is missing or names another section.
    BadFooter(String),
    /// RAM record flags this reader does not know or does not support.
    UnsupportedRamFlags(u64),
    /// RAM record flags that cannot go together (none or several record types, CONTINUE on a
    /// record without block).
    BadFlagCombination(u64),
    /// A RAM block name that is empty, not UTF-8, contains a NUL byte, or is given twice in
    /// MEM_SIZE.
    BadBlockName(String),
    /// A page record names a block that MEM_SIZE did not list.
    UnknownBlock(String),
    /// A page record with CONTINUE before any record named its block.
    ContinueWithoutBlock,
    /// A page record before MEM_SIZE, or a second MEM_SIZE.
    MemSizeOrder(&'static str),
    /// MEM_SIZE: the block lengths do not add up to the total, or a limit is exceeded.
    BadMemSize(String),
    /// The RAM the stream announces exceeds [`ReaderOptions::max_ram_bytes`](crate::ReaderOptions).
    RamTooLarge {
        /// Bytes announced by MEM_SIZE.
        announced: u64,
        /// The limit.
        limit: u64,
    },
    /// A page record whose page does not lie entirely inside its block.
    PageOutsideBlock {
        /// Block name.
        block: String,
        /// Offset of the page inside the block.
        page_offset: u64,
        /// Length of the block.
        block_len: u64,
    },
    /// An XBZRLE payload that does not start with the encoding flag `0x01`.
    BadXbzrleEncoding(u8),
    /// An XBZRLE delta longer than a page (QEMU's receiver rejects it too).
    DeltaTooLong {
        /// Length announced.
        len: usize,
        /// Page size.
        page_size: usize,
    },
    /// An XBZRLE delta that does not apply to the current page.
    BadDelta(xbzrle::DecodeError),
    /// Memory for the RAM tables or for a 2 MiB chunk of RAM contents could not be
    /// allocated (the bytes asked for).
    OutOfMemory(u64),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(err) => write!(f, "read error: {err}"),
            Self::Truncated {
                what,
                needed,
                available,
            } => write!(
                f,
                "stream truncated in {what}: {needed} bytes needed, {available} left"
            ),
            Self::BadMagic(magic) => write!(
                f,
                "not a QEMU migration stream (magic {magic:#010x}, expected 0x5145564d \"QEVM\")"
            ),
            Self::UnsupportedVersion(v) => {
                write!(f, "stream version {v} is not supported (only 3)")
            }
            Self::UnknownSectionType(t) => write!(f, "unknown section type {t:#04x}"),
            Self::UnexpectedSection(what) => write!(f, "unexpected {what}"),
            Self::UnknownConfigurationSubsection(name) => {
                write!(f, "unknown configuration subsection `{name}`")
            }
            Self::BadValue(what) => f.write_str(what),
            Self::UnsupportedSection(what) => write!(f, "unsupported section: {what}"),
            Self::UnsupportedRamVersion(v) => {
                write!(f, "`ram` section version {v} is not supported (only 4)")
            }
            Self::BadFooter(what) => write!(f, "bad section footer: {what}"),
            Self::UnsupportedRamFlags(flags) => {
                write!(f, "unsupported RAM record flags {flags:#x}")?;
                let known = [
                    (crate::flags::FULL, "the obsolete FULL flag"),
                    (crate::flags::HOOK, "RDMA HOOK"),
                    (
                        crate::flags::COMPRESS_PAGE,
                        "COMPRESS_PAGE (compress capability)",
                    ),
                    (
                        crate::flags::MULTIFD_FLUSH,
                        "MULTIFD_FLUSH (multifd: pages on other channels)",
                    ),
                ];
                for (flag, name) in known {
                    if flags & flag != 0 {
                        write!(f, ": {name}")?;
                    }
                }
                Ok(())
            }
            Self::BadFlagCombination(flags) => {
                write!(f, "invalid combination of RAM record flags {flags:#x}")
            }
            Self::BadBlockName(what) => write!(f, "bad RAM block name: {what}"),
            Self::UnknownBlock(name) => write!(f, "RAM block `{name}` is not in MEM_SIZE"),
            Self::ContinueWithoutBlock => {
                f.write_str("page record with CONTINUE but no block named before")
            }
            Self::MemSizeOrder(what) => f.write_str(what),
            Self::BadMemSize(what) => write!(f, "bad MEM_SIZE record: {what}"),
            Self::RamTooLarge { announced, limit } => write!(
                f,
                "MEM_SIZE announces {announced} bytes of RAM, above the limit of {limit} \
                 (ReaderOptions::max_ram_bytes)"
            ),
            Self::PageOutsideBlock {
                block,
                page_offset,
                block_len,
            } => write!(
                f,
                "page at offset {page_offset:#x} is outside RAM block `{block}` \
                 ({block_len} bytes)"
            ),
            Self::BadXbzrleEncoding(flag) => {
                write!(f, "XBZRLE payload starts with {flag:#04x}, expected 0x01")
            }
            Self::DeltaTooLong { len, page_size } => write!(
                f,
                "XBZRLE delta of {len} bytes is longer than the page size {page_size}"
            ),
            Self::BadDelta(err) => write!(f, "XBZRLE delta does not apply: {err}"),
            Self::OutOfMemory(bytes) => {
                write!(f, "out of memory: an allocation of {bytes} bytes failed")
            }
        }
    }
}
