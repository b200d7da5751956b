//! The receiving side: applies records to destination pages.

use core::fmt;

use xbzrle::DecodeError;

use crate::error::{ConfigError, check_page_size};
use crate::wire::{Body, Record, RecordError};

/// Applies records to destination pages. Stateless apart from the page size, so one
/// receiver can serve any number of threads (`&self` methods).
///
/// On any error the destination page is left exactly as it was: XBZRLE deltas are
/// validated in full before the first byte is written.
#[derive(Debug, Clone)]
pub struct Receiver {
    page_size: usize,
}

/// What [`Receiver::apply_record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Applied {
    /// The page the record was for.
    pub page: u64,
    /// Bytes of input the record took.
    pub consumed: usize,
}

impl Receiver {
    /// A receiver for pages of `page_size` bytes (1 ..= `u32::MAX`).
    pub fn new(page_size: usize) -> Result<Self, ConfigError> {
        check_page_size(page_size)?;
        Ok(Self { page_size })
    }

    /// Page size in bytes.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Makes `dest` (one page) what `body` says; on error `dest` is unchanged.
    pub fn apply(&self, body: &Body<'_>, dest: &mut [u8]) -> Result<(), ReceiveError> {
        if dest.len() != self.page_size {
            return Err(ReceiveError::WrongPageSize {
                len: dest.len(),
                page_size: self.page_size,
            });
        }
        match *body {
            Body::Zero { fill } => dest.fill(fill),
            Body::Raw(data) => {
                if data.len() != self.page_size {
                    return Err(ReceiveError::WrongPageSize {
                        len: data.len(),
                        page_size: self.page_size,
                    });
                }
                dest.copy_from_slice(data);
            }
            Body::Xbzrle(delta) => {
                if delta.len() > self.page_size {
                    return Err(ReceiveError::Record(RecordError::DeltaLongerThanPage {
                        len: delta.len(),
                        page_size: self.page_size,
                    }));
                }
                xbzrle::decode(delta, dest).map_err(ReceiveError::Delta)?;
            }
        }
        Ok(())
    }

    /// Parses the record at the start of `bytes` and applies it to its page of `memory`
    /// (page `p` is `memory[p * page_size..][..page_size]`). On error nothing in `memory`
    /// changes.
    pub fn apply_record(&self, bytes: &[u8], memory: &mut [u8]) -> Result<Applied, ReceiveError> {
        let (record, consumed) = Record::parse(bytes, self.page_size)?;
        let start = self.page_offset(record.page, memory.len())?;
        self.apply(&record.body, &mut memory[start..start + self.page_size])?;
        Ok(Applied {
            page: record.page,
            consumed,
        })
    }

    /// Where page `page` starts in a memory of `memory_len` bytes (`page * page_size`),
    /// when all of the page lies inside it.
    ///
    /// # Errors
    /// [`ReceiveError::PageOutOfRange`] otherwise.
    pub fn page_offset(&self, page: u64, memory_len: usize) -> Result<usize, ReceiveError> {
        usize::try_from(page)
            .ok()
            .and_then(|p| p.checked_mul(self.page_size))
            .filter(|start| {
                start
                    .checked_add(self.page_size)
                    .is_some_and(|end| end <= memory_len)
            })
            .ok_or(ReceiveError::PageOutOfRange { page })
    }
}

/// Why a record was not applied. The destination is unchanged in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The bytes are not a well-formed record.
    Record(RecordError),
    /// The XBZRLE delta is invalid for this page size.
    Delta(DecodeError),
    /// A destination or raw page is not exactly one page long.
    WrongPageSize {
        /// Length given.
        len: usize,
        /// Page size.
        page_size: usize,
    },
    /// The record's page lies outside the destination memory.
    PageOutOfRange {
        /// The page number in the record.
        page: u64,
    },
}

impl From<RecordError> for ReceiveError {
    fn from(e: RecordError) -> Self {
        Self::Record(e)
    }
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Record(e) => e.fmt(f),
            Self::Delta(e) => e.fmt(f),
            Self::WrongPageSize { len, page_size } => {
                write!(
                    f,
                    "got {len} bytes where a page of {page_size} was expected"
                )
            }
            Self::PageOutOfRange { page } => {
                write!(f, "page {page} lies outside the destination memory")
            }
        }
    }
}

/// `Record` and `Delta` are transparent: their message is the wrapped error's, so they have
/// no [`source`](std::error::Error::source) (an error report would print it twice).
impl std::error::Error for ReceiveError {}
