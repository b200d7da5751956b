//! `xbzrle stream verify FILE [--dump-ram DIR]`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use xbzrle::Encoded;
use xbzrle_stream::{Event, Extent, PageBody, Ram};

use super::{StreamOptions, TailCollector, Tally, group};
use crate::files::{self, Output};

/// Arguments of `xbzrle stream verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// A migration stream file (plain, or zstd-compressed).
    file: PathBuf,
    /// Write every rebuilt RAM block to DIR, one raw file per block named after the block
    /// with `%` and `/` written `%25` and `%2F` (`DIR/pc.ram` is guest RAM on a PC
    /// machine). Memory the stream never wrote is left as holes in the files.
    #[arg(long, value_name = "DIR")]
    dump_ram: Option<PathBuf>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The limits and --force.
    #[command(flatten)]
    options: StreamOptions,
}

/// An XBZRLE record whose delta is not the canonical encoding of its pages.
#[derive(Debug, Serialize)]
struct Difference {
    offset: u64,
    block: String,
    page_offset: u64,
    /// Length in the stream.
    stream_len: usize,
    /// Length of the canonical encoding (`None` if it overflows a page).
    canonical_len: Option<usize>,
}

/// A rebuilt block.
#[derive(Debug, Serialize)]
struct BlockDigest {
    name: String,
    bytes: u64,
    sha256: String,
    file: Option<String>,
}

/// Everything `verify` reports.
#[derive(Debug, Serialize)]
struct Verification {
    file: String,
    stream_bytes: u64,
    records: Tally,
    xbzrle_identical: u64,
    xbzrle_different: u64,
    first_differences: Vec<Difference>,
    blocks: Vec<BlockDigest>,
    device_state: super::TailSummary,
}

/// Differences listed at most.
const SHOWN_DIFFERENCES: usize = 10;

/// Runs `xbzrle stream verify`.
pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let force = args.options.force;
    if let Some(path) = &args.json {
        files::check_output_path(path, "--json", force)?;
    }
    if let Some(dir) = &args.dump_ram {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut reader = super::open(&args.file, &args.options)?;
    let mut records = Tally::default();
    let (mut identical, mut different) = (0u64, 0u64);
    let mut differences = Vec::new();
    let mut canonical = Vec::new();
    let mut tail = TailCollector::default();
    super::for_each_event(&mut reader, &args.file, |event| {
        match event {
            Event::Page(record) => {
                records.add(&record.body, record.len);
                if let PageBody::Xbzrle { delta, before } = record.body {
                    canonical.resize(record.page.len(), 0);
                    let encoded = xbzrle::encode(before, record.page, &mut canonical);
                    let canonical_len = match encoded {
                        Encoded::Delta(n) => Some(n),
                        Encoded::Unchanged => Some(0),
                        Encoded::Overflow => None,
                    };
                    if canonical_len.is_some_and(|n| canonical[..n] == *delta) {
                        identical += 1;
                    } else {
                        different += 1;
                        if differences.len() < SHOWN_DIFFERENCES {
                            differences.push(Difference {
                                offset: record.offset,
                                block: record.block_name.to_owned(),
                                page_offset: record.page_offset,
                                stream_len: delta.len(),
                                canonical_len,
                            });
                        }
                    }
                }
            }
            // Before the long part: the dump files must be writable.
            Event::MemSize { blocks, .. } => {
                if let Some(dir) = &args.dump_ram {
                    for block in blocks {
                        files::check_output_path(
                            &dir.join(dump_name(&block.name)),
                            "--dump-ram",
                            force,
                        )?;
                    }
                }
            }
            Event::Tail(chunk) => tail.push(chunk),
            _ => {}
        }
        Ok(())
    })?;
    let stream_bytes = reader.offset();
    let footers = reader.footers().unwrap_or(false);
    let Some(ram) = reader.into_ram() else {
        bail!("{} has no RAM (no MEM_SIZE record)", args.file.display());
    };
    let blocks = digest_blocks(&ram, args.dump_ram.as_deref(), force)?;
    let verification = Verification {
        file: args.file.display().to_string(),
        stream_bytes,
        records,
        xbzrle_identical: identical,
        xbzrle_different: different,
        first_differences: differences,
        blocks,
        device_state: tail.summary(footers),
    };
    print_report(&verification);
    if let Some(path) = &args.json {
        files::write_json(path, force, &verification)?;
    }
    if verification.xbzrle_different > 0 {
        bail!(
            "{} of {} XBZRLE records are not the canonical encoding of their pages",
            group(verification.xbzrle_different),
            group(verification.records.xbzrle)
        );
    }
    // A device state that has a VMDESCRIPTION must walk with it.
    let tail = &verification.device_state;
    if let Some(err) = tail.error.as_ref().filter(|_| tail.vmdescription) {
        bail!("the device state does not match its VMDESCRIPTION: {err}");
    }
    Ok(())
}

/// SHA-256 of every block, and its file under `dump` if given (replacing a file only if
/// `force`).
fn digest_blocks(ram: &Ram, dump: Option<&Path>, force: bool) -> anyhow::Result<Vec<BlockDigest>> {
    let mut digests = Vec::new();
    for (index, block) in ram.blocks().iter().enumerate() {
        let mut hasher = Sha256::new();
        let mut out = dump
            .map(|dir| Output::create(&dir.join(dump_name(&block.name)), force))
            .transpose()?;
        for extent in ram.extents(index) {
            hasher.update(extent.bytes());
            match (&mut out, extent) {
                (Some(out), Extent::Data(data)) => out.write_all(data)?,
                (Some(out), Extent::Zeros(zeros)) => out.write_zeros(zeros.len() as u64)?,
                (None, _) => {}
            }
        }
        let file = match out {
            Some(out) => {
                let name = out.name().to_owned();
                out.finish()?;
                Some(name)
            }
            None => None,
        };
        digests.push(BlockDigest {
            name: block.name.clone(),
            bytes: block.len,
            sha256: hex(&hasher.finalize()),
            file,
        });
    }
    Ok(digests)
}

/// The file name of a block's dump: the block name with `%` and `/` written `%25` and
/// `%2F`, and a name of dots only (`.`, `..`) with its dots written `%2E`; different
/// blocks never share a file.
fn dump_name(block: &str) -> String {
    if block.bytes().all(|b| b == b'.') {
        return block.replace('.', "%2E");
    }
    block.replace('%', "%25").replace('/', "%2F")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_report(v: &Verification) {
    println!("{}: {} bytes", v.file, group(v.stream_bytes));
    println!(
        "records: {} ZERO, {} PAGE, {} XBZRLE",
        group(v.records.zero),
        group(v.records.page),
        group(v.records.xbzrle)
    );
    println!(
        "XBZRLE records identical to the canonical encoding of (page before, page after): {} / {}",
        group(v.xbzrle_identical),
        group(v.records.xbzrle)
    );
    for d in &v.first_differences {
        println!(
            "  differs: record at byte {}, block {} offset {:#x}: {} bytes in the stream, canonical {}",
            d.offset,
            d.block,
            d.page_offset,
            d.stream_len,
            d.canonical_len
                .map_or("overflows".into(), |n| format!("{n} bytes"))
        );
    }
    println!("RAM blocks rebuilt:");
    for b in &v.blocks {
        println!(
            "  {:<28} {:>15} bytes  sha256 {}{}",
            b.name,
            group(b.bytes),
            b.sha256,
            b.file
                .as_ref()
                .map_or(String::new(), |f| format!("  -> {f}"))
        );
    }
    println!("after the RAM: {}", v.device_state.describe());
}
