//! `xbzrle diff` and `xbzrle apply`: a delta file of page records between two files of
//! equal size, e.g. two RAM snapshots. Both stream page by page in memory bounded by a few
//! pages, whatever the size of the files.
//!
//! # Delta file format (version 2)
//!
//! All integers are big-endian, as in the wire records.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `XBZDELT2` (the last byte is the version) |
//! | 8 | 4 | page size |
//! | 12 | … | the records, back to back |
//! | then | 1 | `0x00`: end of the records (no record flag is 0) |
//! | +1 | 8 | file length (of OLD and NEW) |
//! | +9 | 4 | CRC-32 of OLD |
//! | +13 | 4 | CRC-32 of NEW |
//! | +17 | 8 | number of records |
//!
//! The summary comes last because `diff` knows it only at the end of its inputs (which may
//! be pipes). Each record is a wire record of [`xbzrle_policy::wire`]: its 9-byte header
//! holds the page number (file offset / page size) and the kind of body: a zero page, a raw
//! page, or an XBZRLE delta against the page of OLD (the smallest delta, from
//! [`xbzrle::encode_compact`]). Only changed pages have a record, in increasing page
//! order. A last page shorter than the page size is treated as if padded with zeros; a
//! record may not change the padding.
//!
//! Version 1 (`XBZDELT1`, written by earlier releases) is still read: its 36-byte header
//! holds the page size and the same summary (file length, CRC-32 of OLD and NEW, number of
//! records), followed by the records and nothing else.
//!
//! `apply` checks every record as it goes and, at the end, that OLD is the file the delta
//! was made from (length and CRC-32) and the CRC-32 of the result. A file output is
//! written to a temporary file that replaces the destination only once every check
//! passed (see [`crate::files`]); standard output, devices and FIFOs receive the pages as
//! they are rebuilt, so after an error they hold a partial result.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use xbzrle::Encoded;
use xbzrle_policy::Receiver;
use xbzrle_policy::wire::{Body, MAX_DELTA_LEN, Record, RecordError};

use crate::files::{Input, Output, is_stdio};

/// First bytes of every delta file; the version byte follows.
const MAGIC: &[u8; 7] = b"XBZDELT";
/// The version `diff` writes.
const VERSION: u8 = b'2';
/// The older version `apply` still reads.
const VERSION_1: u8 = b'1';
/// Bytes of the version 2 header: magic, version, page size.
const HEADER_LEN: usize = 12;
/// Bytes of the version 1 header: magic, version, page size, summary.
const HEADER_V1_LEN: usize = HEADER_LEN + SUMMARY_LEN;
/// Bytes of the summary: file length, two CRC-32, record count.
const SUMMARY_LEN: usize = 24;
/// The byte after the last record of a version 2 file (not a record flag).
const END_OF_RECORDS: u8 = 0x00;
/// Largest page size a delta file may use (bounds what `diff` and `apply` allocate).
const MAX_PAGE_SIZE: usize = 1 << 24;

/// Arguments of `xbzrle diff`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  xbzrle diff snap-00.raw snap-01.raw -o 01.xbzd
  xbzrle diff old.img - -o - < new.img > new.xbzd     (`-`: standard input / output)")]
pub(crate) struct DiffArgs {
    /// The old file (`-`: standard input).
    old: PathBuf,
    /// The new file, the same size as OLD (`-`: standard input).
    new: PathBuf,
    /// Where to write the delta (`-`: standard output).
    #[arg(short, long, value_name = "DELTA")]
    output: PathBuf,
    /// Replace DELTA if it is an existing file.
    #[arg(short, long)]
    force: bool,
    /// Page size in bytes (1 to 16 MiB; suffixes K, M allowed).
    #[arg(long, default_value = "4096", value_parser = parse_page_size)]
    page_size: usize,
}

/// Arguments of `xbzrle apply`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  xbzrle apply snap-00.raw 01.xbzd -o snap-01.raw
  xbzrle apply old.img - -o - < new.xbzd > new.img     (`-`: standard input / output)")]
pub(crate) struct ApplyArgs {
    /// The old file the delta was made from (`-`: standard input).
    old: PathBuf,
    /// The delta written by `xbzrle diff` (`-`: standard input).
    delta: PathBuf,
    /// Where to write the rebuilt new file (`-`: standard output).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Replace OUT if it is an existing file (its permissions are kept).
    #[arg(short, long)]
    force: bool,
}

/// What a delta file says about the files it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    /// Length of OLD and NEW.
    file_len: u64,
    /// CRC-32 of OLD.
    old_crc: u32,
    /// CRC-32 of NEW.
    new_crc: u32,
    /// Number of records.
    records: u64,
}

impl Summary {
    /// The summary's `SUMMARY_LEN` bytes.
    fn to_bytes(self) -> [u8; SUMMARY_LEN] {
        let mut bytes = [0; SUMMARY_LEN];
        bytes[..8].copy_from_slice(&self.file_len.to_be_bytes());
        bytes[8..12].copy_from_slice(&self.old_crc.to_be_bytes());
        bytes[12..16].copy_from_slice(&self.new_crc.to_be_bytes());
        bytes[16..].copy_from_slice(&self.records.to_be_bytes());
        bytes
    }

    /// Reads a summary written by [`Summary::to_bytes`].
    fn from_bytes(bytes: &[u8; SUMMARY_LEN]) -> Self {
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        Self {
            file_len: u64_at(0),
            old_crc: u32_at(8),
            new_crc: u32_at(12),
            records: u64_at(16),
        }
    }
}

/// The start of a delta file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// Page size in bytes (1 ..= `MAX_PAGE_SIZE`).
    page_size: usize,
    /// Version 1: the summary, at the start. Version 2: `None`, it follows the records.
    v1_summary: Option<Summary>,
}

impl Header {
    /// The version 2 header `diff` writes.
    fn to_bytes(page_size: usize) -> [u8; HEADER_LEN] {
        let mut bytes = [0; HEADER_LEN];
        bytes[..7].copy_from_slice(MAGIC);
        bytes[7] = VERSION;
        // page_size <= MAX_PAGE_SIZE fits in u32.
        bytes[8..].copy_from_slice(&(page_size as u32).to_be_bytes());
        bytes
    }

    /// Reads the header at the start of a delta file (version 1 or 2).
    fn read(input: &mut Input) -> anyhow::Result<Self> {
        let mut bytes = [0u8; HEADER_V1_LEN];
        let got = input.read_full(&mut bytes[..8])?;
        ensure!(
            got == 8 && bytes.starts_with(MAGIC),
            "not an xbzrle delta file (it does not start with `XBZDELT`)"
        );
        let len = match bytes[7] {
            VERSION => HEADER_LEN,
            VERSION_1 => HEADER_V1_LEN,
            other => bail!(
                "unsupported delta file version {} (this xbzrle reads versions 1 and 2)",
                if other.is_ascii_graphic() {
                    char::from(other).to_string()
                } else {
                    format!("byte {other:#04x}")
                }
            ),
        };
        ensure!(
            input.read_full(&mut bytes[8..len])? == len - 8,
            "the delta file is truncated in its {len}-byte header"
        );
        let page_size = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let page_size = check_page_size(page_size.into())
            .map_err(anyhow::Error::msg)
            .context("bad delta header")?;
        let v1_summary = (len == HEADER_V1_LEN).then(|| {
            let mut summary = [0; SUMMARY_LEN];
            summary.copy_from_slice(&bytes[HEADER_LEN..]);
            Summary::from_bytes(&summary)
        });
        Ok(Self {
            page_size,
            v1_summary,
        })
    }
}

/// Parses `--page-size` (a size in 1 ..= `MAX_PAGE_SIZE`).
fn parse_page_size(text: &str) -> Result<usize, String> {
    check_page_size(crate::units::parse_size(text)?)
}

/// `size` as a page size, or why not.
fn check_page_size(size: u64) -> Result<usize, String> {
    match usize::try_from(size) {
        Ok(size @ 1..=MAX_PAGE_SIZE) => Ok(size),
        _ => Err(format!("page size {size} is not in 1..={MAX_PAGE_SIZE}")),
    }
}

/// A usage error (exit status 2) when both inputs are standard input.
fn check_one_stdin(first: &Path, second: &Path) -> anyhow::Result<()> {
    if is_stdio(first) && is_stdio(second) {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "only one input can be `-` (standard input)",
        )
        .into());
    }
    Ok(())
}

/// Runs `xbzrle diff`.
pub(crate) fn diff(args: &DiffArgs) -> anyhow::Result<()> {
    check_one_stdin(&args.old, &args.new)?;
    let page_size = args.page_size;
    let mut old = Input::open(&args.old)?;
    let mut new = Input::open(&args.new)?;
    if let (Some(old_len), Some(new_len)) = (old.regular_len(), new.regular_len()) {
        ensure!(
            old_len == new_len,
            "{} has {old_len} bytes and {} has {new_len}: diff needs two files of equal size",
            old.name(),
            new.name(),
        );
    }
    let mut out = Output::create(&args.output, args.force)?;
    out.write_all(&Header::to_bytes(page_size))?;

    let (mut old_page, mut new_page) = (vec![0u8; page_size], vec![0u8; page_size]);
    let mut delta = vec![0u8; page_size.min(MAX_DELTA_LEN)];
    let mut record_bytes = Vec::new();
    let (mut old_crc, mut new_crc) = (crc32fast::Hasher::new(), crc32fast::Hasher::new());
    let (mut zero, mut xbzrle, mut raw) = (0u64, 0u64, 0u64);
    let mut file_len = 0u64;
    for page in 0u64.. {
        let old_len = old.read_full(&mut old_page)?;
        let new_len = new.read_full(&mut new_page)?;
        if old_len != new_len {
            let (short, long) = if old_len < new_len {
                (&old, &new)
            } else {
                (&new, &old)
            };
            bail!(
                "{} ends after {} bytes but {} is longer: diff needs two files of equal size",
                short.name(),
                file_len + old_len.min(new_len) as u64,
                long.name()
            );
        }
        if old_len == 0 {
            break;
        }
        file_len += old_len as u64;
        old_crc.update(&old_page[..old_len]);
        new_crc.update(&new_page[..new_len]);
        if old_page[..old_len] != new_page[..new_len] {
            // A short last page is compared and encoded as if padded with zeros.
            old_page[old_len..].fill(0);
            new_page[new_len..].fill(0);
            let body = if new_page.iter().all(|&b| b == 0) {
                zero += 1;
                Body::Zero { fill: 0 }
            } else {
                match xbzrle::encode_compact(&old_page, &new_page, &mut delta) {
                    Encoded::Delta(len) => {
                        xbzrle += 1;
                        Body::Xbzrle(&delta[..len])
                    }
                    // The pages differ, so the delta is never empty.
                    Encoded::Overflow | Encoded::Unchanged => {
                        raw += 1;
                        Body::Raw(&new_page)
                    }
                }
            };
            let record = Record { page, body };
            record_bytes.resize(record.encoded_len(), 0);
            record
                .write(&mut record_bytes)
                .context("a record did not fit its own encoded length")?;
            out.write_all(&record_bytes)?;
        }
        if old_len < page_size {
            break;
        }
    }
    let summary = Summary {
        file_len,
        old_crc: old_crc.finalize(),
        new_crc: new_crc.finalize(),
        records: zero + xbzrle + raw,
    };
    out.write_all(&[END_OF_RECORDS])?;
    out.write_all(&summary.to_bytes())?;
    let (written, name) = (out.written(), out.name().to_owned());
    out.finish()?;
    eprintln!(
        "{} of {} pages changed ({zero} zero, {xbzrle} XBZRLE, {raw} raw); wrote {written} bytes to {name}",
        summary.records,
        file_len.div_ceil(page_size as u64),
    );
    Ok(())
}

/// Runs `xbzrle apply`.
pub(crate) fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    check_one_stdin(&args.old, &args.delta)?;
    let mut old = Input::open(&args.old)?;
    let mut delta = Input::open(&args.delta)?;
    let mut out = Output::create(&args.output, args.force)?;
    rebuild(&mut old, &mut delta, &mut out)
        .with_context(|| format!("applying {} to {}", delta.name(), old.name()))?;
    let (written, name) = (out.written(), out.name().to_owned());
    out.finish()?;
    eprintln!("wrote {written} bytes to {name}");
    Ok(())
}

/// Writes the new file from `old` and a delta file to `out`, page by page; fails on any
/// inconsistency (`out` then holds a prefix of the result).
fn rebuild(old: &mut Input, delta: &mut Input, out: &mut Output) -> anyhow::Result<()> {
    let header = Header::read(delta)?;
    let page_size = header.page_size;
    let receiver = Receiver::new(page_size)?;
    let mut record_bytes = Vec::new();
    let mut copier = OldCopier {
        old,
        page: vec![0u8; page_size],
        old_crc: crc32fast::Hasher::new(),
        new_crc: crc32fast::Hasher::new(),
        next: 0,
        len: 0,
    };
    let mut records = 0u64;
    let summary = loop {
        if let Some(summary) = header.v1_summary
            && records == summary.records
        {
            break summary;
        }
        let mut first = [0u8; 1];
        if delta.read_full(&mut first)? == 0 {
            match header.v1_summary {
                Some(summary) => bail!(
                    "the delta is truncated: it ends after {records} of {} records",
                    summary.records
                ),
                None => bail!(
                    "the delta is truncated: it ends after {records} records, without its summary"
                ),
            }
        }
        if header.v1_summary.is_none() && first[0] == END_OF_RECORDS {
            let mut summary = [0u8; SUMMARY_LEN];
            ensure!(
                delta.read_full(&mut summary)? == SUMMARY_LEN,
                "the delta is truncated in its {SUMMARY_LEN}-byte summary"
            );
            break Summary::from_bytes(&summary);
        }
        record_bytes.clear();
        record_bytes.push(first[0]);
        let record = read_record(delta, &mut record_bytes, page_size)
            .with_context(|| format!("record {records}"))?;
        copier
            .apply(&record, &receiver, out)
            .with_context(|| format!("record {records} (page {})", record.page))?;
        records += 1;
    };
    copier.copy_rest(out)?;
    ensure!(
        delta.read_full(&mut [0u8; 1])? == 0,
        "unexpected bytes after the end of the delta"
    );
    ensure!(
        copier.len == summary.file_len,
        "the old file has {} bytes but the delta is for a file of {}",
        copier.len,
        summary.file_len
    );
    ensure!(
        records == summary.records,
        "the delta has {records} records but its summary says {}",
        summary.records
    );
    ensure!(
        copier.old_crc.finalize() == summary.old_crc,
        "the old file is not the one the delta was made from (CRC-32 differs)"
    );
    ensure!(
        copier.new_crc.finalize() == summary.new_crc,
        "the rebuilt file does not match the new file's CRC-32: the delta is corrupt"
    );
    Ok(())
}

/// Reads the rest of the record whose first bytes are in `bytes` (growing it to exactly
/// the record) and parses it.
fn read_record<'a>(
    delta: &mut Input,
    bytes: &'a mut Vec<u8>,
    page_size: usize,
) -> anyhow::Result<Record<'a>> {
    // The parser says how many bytes it needs; every step needs more, and a record is at
    // most a header, an XBZRLE payload header and a page.
    loop {
        match Record::parse(bytes, page_size) {
            Ok(_) => break,
            Err(RecordError::Truncated { needed, .. }) if needed > bytes.len() => {
                let have = bytes.len();
                bytes.resize(needed, 0);
                ensure!(
                    delta.read_full(&mut bytes[have..])? == needed - have,
                    "the delta is truncated in this record"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Record::parse(bytes, page_size)?.0)
}

/// Copies the pages of OLD to the output, in order, through the records.
struct OldCopier<'a> {
    /// The old file.
    old: &'a mut Input,
    /// One page of OLD, then of the result.
    page: Vec<u8>,
    /// CRC-32 of OLD so far.
    old_crc: crc32fast::Hasher,
    /// CRC-32 of the result so far.
    new_crc: crc32fast::Hasher,
    /// The next page of OLD to read.
    next: u64,
    /// Bytes of OLD read so far.
    len: u64,
}

impl OldCopier<'_> {
    /// Reads the next page of OLD into `self.page` (zero-padded); returns its length, 0
    /// at the end of OLD.
    fn read_page(&mut self) -> anyhow::Result<usize> {
        let len = self.old.read_full(&mut self.page)?;
        self.page[len..].fill(0);
        self.old_crc.update(&self.page[..len]);
        self.len += len as u64;
        self.next += 1;
        Ok(len)
    }

    /// Writes the first `len` bytes of `self.page` as a page of the result.
    fn emit(&mut self, len: usize, out: &mut Output) -> anyhow::Result<()> {
        self.new_crc.update(&self.page[..len]);
        out.write_all(&self.page[..len])
    }

    /// Copies the pages before the record's unchanged, then writes the record's page.
    fn apply(
        &mut self,
        record: &Record<'_>,
        receiver: &Receiver,
        out: &mut Output,
    ) -> anyhow::Result<()> {
        ensure!(
            record.page >= self.next,
            "out of order: the previous record was for a page at or after it"
        );
        loop {
            let index = self.next;
            let len = self.read_page()?;
            ensure!(len > 0, "past the end of the old file ({} bytes)", self.len);
            if index == record.page {
                receiver.apply(&record.body, &mut self.page)?;
                ensure!(
                    self.page[len..].iter().all(|&b| b == 0),
                    "writes past the end of the file"
                );
                return self.emit(len, out);
            }
            self.emit(len, out)?;
            ensure!(
                len == self.page.len(),
                "past the end of the old file ({} bytes)",
                self.len
            );
        }
    }

    /// Copies the rest of OLD unchanged.
    fn copy_rest(&mut self, out: &mut Output) -> anyhow::Result<()> {
        loop {
            let len = self.read_page()?;
            self.emit(len, out)?;
            if len < self.page.len() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_round_trips() {
        let summary = Summary {
            file_len: 12345,
            old_crc: 0xdead_beef,
            new_crc: 7,
            records: 3,
        };
        assert_eq!(Summary::from_bytes(&summary.to_bytes()), summary);
        assert_eq!(
            summary.to_bytes()[..12],
            [0, 0, 0, 0, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]
        );
    }

    #[test]
    fn header_is_magic_version_and_page_size() {
        assert_eq!(&Header::to_bytes(4096), b"XBZDELT2\0\0\x10\0");
    }

    #[test]
    fn page_sizes_outside_the_range_are_refused() {
        assert_eq!(parse_page_size("4K"), Ok(4096));
        assert_eq!(parse_page_size("16M"), Ok(MAX_PAGE_SIZE));
        for bad in ["0", "16777217", "1T", "x"] {
            assert!(parse_page_size(bad).is_err(), "{bad}");
        }
    }
}
