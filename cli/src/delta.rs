//! `xbzrle diff` and `xbzrle apply`: a delta file of page records between two files of
//! equal size, e.g. two RAM snapshots.
//!
//! # Delta file format (version 1)
//!
//! All integers are big-endian, as in the wire records.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `XBZDELT1` |
//! | 8 | 4 | page size |
//! | 12 | 8 | file length (of OLD and NEW) |
//! | 20 | 4 | CRC-32 of OLD |
//! | 24 | 4 | CRC-32 of NEW |
//! | 28 | 8 | number of records |
//! | 36 | … | the records, back to back |
//!
//! Each record is a wire record of [`xbzrle_policy::wire`]: its 9-byte header holds the
//! page number (file offset / page size) and the kind of body: a zero page, a raw page,
//! or an XBZRLE delta against the page of OLD (the smallest delta, from
//! [`xbzrle::encode_compact`]). Only changed pages have a record, in increasing page
//! order. A last page shorter than the page size is treated as if padded with zeros; a
//! record may not change the padding.
//!
//! `apply` checks everything before it writes a byte: the header, that OLD is the file
//! the delta was made from (length and CRC-32), every record, and the CRC-32 of the
//! result. Output goes to a temporary file in the destination folder that is renamed
//! over the destination only at the end, so a failure never leaves a partial file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use xbzrle::Encoded;
use xbzrle_policy::Receiver;
use xbzrle_policy::wire::{Body, MAX_DELTA_LEN, Record};

/// First bytes of every delta file (the last byte is the format version).
const MAGIC: &[u8; 8] = b"XBZDELT1";
/// Bytes of the header before the first record.
const HEADER_LEN: usize = 36;
/// Largest page size a delta file may use (bounds what `apply` allocates).
const MAX_PAGE_SIZE: usize = 1 << 24;

/// Arguments of `xbzrle diff`.
#[derive(Debug, clap::Args)]
pub(crate) struct DiffArgs {
    /// The old file.
    old: PathBuf,
    /// The new file (same size as OLD).
    new: PathBuf,
    /// Where to write the delta.
    #[arg(short, long, value_name = "DELTA")]
    output: PathBuf,
    /// Page size in bytes (1 to 16 MiB; suffixes K, M allowed).
    #[arg(long, default_value = "4096", value_parser = crate::units::parse_size)]
    page_size: u64,
}

/// Arguments of `xbzrle apply`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// The old file the delta was made from.
    old: PathBuf,
    /// The delta written by `xbzrle diff`.
    delta: PathBuf,
    /// Where to write the rebuilt new file.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
}

/// The fixed-size start of a delta file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// Page size in bytes (1 ..= `MAX_PAGE_SIZE`).
    page_size: usize,
    /// Length of OLD and NEW.
    file_len: u64,
    /// CRC-32 of OLD.
    old_crc: u32,
    /// CRC-32 of NEW.
    new_crc: u32,
    /// Number of records after the header.
    records: u64,
}

impl Header {
    /// Appends the header's `HEADER_LEN` bytes to `out`.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        // The page size was checked to fit in u32 (it is at most MAX_PAGE_SIZE).
        out.extend_from_slice(&(self.page_size as u32).to_be_bytes());
        out.extend_from_slice(&self.file_len.to_be_bytes());
        out.extend_from_slice(&self.old_crc.to_be_bytes());
        out.extend_from_slice(&self.new_crc.to_be_bytes());
        out.extend_from_slice(&self.records.to_be_bytes());
    }

    /// Reads the header at the start of a delta file.
    fn parse(bytes: &[u8]) -> anyhow::Result<Self> {
        ensure!(
            bytes.len() >= HEADER_LEN && bytes.starts_with(MAGIC),
            "not an xbzrle delta file (it does not start with the {HEADER_LEN}-byte `XBZDELT1` header)"
        );
        let field = |at: usize, len: usize| &bytes[at..at + len];
        let u32_at = |at| u32::from_be_bytes(field(at, 4).try_into().unwrap_or_default());
        let u64_at = |at| u64::from_be_bytes(field(at, 8).try_into().unwrap_or_default());
        let page_size = u32_at(8) as usize;
        check_page_size(page_size as u64).context("bad delta header")?;
        Ok(Self {
            page_size,
            file_len: u64_at(12),
            old_crc: u32_at(20),
            new_crc: u32_at(24),
            records: u64_at(28),
        })
    }
}

/// `page_size` as a usable page size, or why not.
fn check_page_size(page_size: u64) -> anyhow::Result<usize> {
    match usize::try_from(page_size) {
        Ok(size @ 1..=MAX_PAGE_SIZE) => Ok(size),
        _ => bail!("page size {page_size} is not in 1..={MAX_PAGE_SIZE}"),
    }
}

/// The whole file at `path`, with the path in the error.
fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Page `page` of `file` (the last one may be short).
fn page_of(file: &[u8], page: usize, page_size: usize) -> &[u8] {
    let start = page * page_size;
    &file[start..file.len().min(start + page_size)]
}

/// Runs `xbzrle diff`.
pub(crate) fn diff(args: &DiffArgs) -> anyhow::Result<()> {
    let page_size = check_page_size(args.page_size)?;
    let old = read(&args.old)?;
    let new = read(&args.new)?;
    ensure!(
        old.len() == new.len(),
        "{} has {} bytes and {} has {}: diff needs two files of equal size",
        args.old.display(),
        old.len(),
        args.new.display(),
        new.len()
    );
    let pages = old.len().div_ceil(page_size);
    let (mut old_page, mut new_page) = (vec![0u8; page_size], vec![0u8; page_size]);
    let mut delta = vec![0u8; page_size.min(MAX_DELTA_LEN)];
    let mut records = Vec::new();
    let (mut zero, mut xbzrle, mut raw) = (0u64, 0u64, 0u64);
    for page in 0..pages {
        let (old_bytes, new_bytes) = (
            page_of(&old, page, page_size),
            page_of(&new, page, page_size),
        );
        if old_bytes == new_bytes {
            continue;
        }
        // Full-size copies, zero-padded past the end of the file.
        old_page.fill(0);
        new_page.fill(0);
        old_page[..old_bytes.len()].copy_from_slice(old_bytes);
        new_page[..new_bytes.len()].copy_from_slice(new_bytes);
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
        let record = Record {
            page: page as u64,
            body,
        };
        let start = records.len();
        records.resize(start + record.encoded_len(), 0);
        record
            .write(&mut records[start..])
            .context("a record did not fit its own encoded length")?;
    }
    let header = Header {
        page_size,
        file_len: old.len() as u64,
        old_crc: crc32fast::hash(&old),
        new_crc: crc32fast::hash(&new),
        records: zero + xbzrle + raw,
    };
    let mut file = Vec::with_capacity(HEADER_LEN + records.len());
    header.write(&mut file);
    file.extend_from_slice(&records);
    write_atomically(&args.output, &file)?;
    eprintln!(
        "{} of {pages} pages changed ({zero} zero, {xbzrle} XBZRLE, {raw} raw); wrote {} bytes to {}",
        header.records,
        file.len(),
        args.output.display()
    );
    Ok(())
}

/// Runs `xbzrle apply`.
pub(crate) fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let old = read(&args.old)?;
    let delta = read(&args.delta)?;
    let rebuilt = rebuild(&old, &delta).with_context(|| {
        format!(
            "applying {} to {}",
            args.delta.display(),
            args.old.display()
        )
    })?;
    write_atomically(&args.output, &rebuilt)?;
    eprintln!("wrote {} bytes to {}", rebuilt.len(), args.output.display());
    Ok(())
}

/// The new file from `old` and a delta file; fails on any inconsistency.
fn rebuild(old: &[u8], delta: &[u8]) -> anyhow::Result<Vec<u8>> {
    let header = Header::parse(delta)?;
    let page_size = header.page_size;
    ensure!(
        old.len() as u64 == header.file_len,
        "the old file has {} bytes but the delta is for a file of {}",
        old.len(),
        header.file_len
    );
    ensure!(
        crc32fast::hash(old) == header.old_crc,
        "the old file is not the one the delta was made from (CRC-32 differs)"
    );
    let pages = old.len().div_ceil(page_size) as u64;
    let receiver = Receiver::new(page_size)?;
    let mut out = old.to_vec();
    let mut padded = vec![0u8; page_size];
    let mut offset = HEADER_LEN;
    let mut previous: Option<u64> = None;
    for index in 0..header.records {
        ensure!(
            offset < delta.len(),
            "the delta is truncated: it ends after {index} of {} records",
            header.records
        );
        let (record, consumed) = Record::parse(&delta[offset..], page_size)
            .with_context(|| format!("record {index} at byte {offset}"))?;
        ensure!(
            record.page < pages && previous.is_none_or(|p| record.page > p),
            "record {index} at byte {offset}: page {} is out of order or past the last page ({})",
            record.page,
            pages.saturating_sub(1)
        );
        previous = Some(record.page);
        // record.page < pages, which came from a usize.
        let start = record.page as usize * page_size;
        let end = out.len().min(start + page_size);
        let target = &mut out[start..end];
        if target.len() == page_size {
            receiver.apply(&record.body, target)
        } else {
            padded.fill(0);
            padded[..target.len()].copy_from_slice(target);
            let applied = receiver.apply(&record.body, &mut padded);
            ensure!(
                padded[target.len()..].iter().all(|&b| b == 0),
                "record {index} at byte {offset} writes past the end of the file"
            );
            target.copy_from_slice(&padded[..target.len()]);
            applied
        }
        .with_context(|| format!("record {index} at byte {offset} (page {})", record.page))?;
        offset += consumed;
    }
    ensure!(
        offset == delta.len(),
        "{} unexpected bytes after the last record",
        delta.len() - offset
    );
    ensure!(
        crc32fast::hash(&out) == header.new_crc,
        "the rebuilt file does not match the new file's CRC-32: the delta is corrupt"
    );
    Ok(out)
}

/// Writes `bytes` to a temporary file next to `path`, then renames it to `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".xbzrle-");
    #[cfg(unix)]
    {
        // Like any new file (temporary files default to owner-only); the umask applies.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut file = builder
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", file.path().display()))?;
    file.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the temporary file to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            page_size: 4096,
            file_len: 12345,
            old_crc: 0xdead_beef,
            new_crc: 7,
            records: 3,
        };
        let mut bytes = Vec::new();
        header.write(&mut bytes);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(Header::parse(&bytes).unwrap(), header);
    }

    #[test]
    fn header_rejects_bad_magic_and_page_size() {
        let mut bytes = Vec::new();
        Header {
            page_size: 4096,
            file_len: 1,
            old_crc: 0,
            new_crc: 0,
            records: 0,
        }
        .write(&mut bytes);
        let mut wrong = bytes.clone();
        wrong[0] = b'Y';
        assert!(Header::parse(&wrong).is_err());
        assert!(Header::parse(&bytes[..HEADER_LEN - 1]).is_err());
        let mut zero_page = bytes.clone();
        zero_page[8..12].fill(0);
        let err = Header::parse(&zero_page).unwrap_err();
        assert!(format!("{err:#}").contains("page size 0"), "{err:#}");
    }

    #[test]
    fn partial_last_page_cannot_write_padding() {
        // A 10-byte file with 8-byte pages: page 1 has 2 real bytes and 6 of padding.
        let old = vec![1u8; 10];
        let mut delta = Vec::new();
        let mut raw = [9u8; 8];
        raw[..2].copy_from_slice(&[5, 6]);
        let record = Record {
            page: 1,
            body: Body::Raw(&raw),
        };
        let mut new = old.clone();
        new[8..].copy_from_slice(&[5, 6]);
        Header {
            page_size: 8,
            file_len: 10,
            old_crc: crc32fast::hash(&old),
            new_crc: crc32fast::hash(&new),
            records: 1,
        }
        .write(&mut delta);
        let start = delta.len();
        delta.resize(start + record.encoded_len(), 0);
        record.write(&mut delta[start..]).unwrap();
        let err = rebuild(&old, &delta).unwrap_err();
        assert!(format!("{err:#}").contains("past the end"), "{err:#}");
    }
}
