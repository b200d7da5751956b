//! `xbzrle stream`: real QEMU migration streams, read with [`xbzrle_stream`].
//!
//! * `inspect FILE`: sections, RAM blocks, records per pass as QEMU's `query-migrate`
//!   counts them, XBZRLE delta lengths, the device state ([`inspect`]).
//! * `verify FILE`: rebuilds every RAM block and re-encodes every XBZRLE record from the
//!   page before and after with the canonical encoder ([`verify`]).
//! * `rewrite IN OUT`: re-sends the migration through the project's sender under a cache
//!   policy and writes it in QEMU's framing ([`rewrite`]).
//!
//! Outputs go through [`crate::files::Output`]: an existing file is replaced only with
//! `--force`, and a new file appears only when the command succeeds.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use xbzrle_stream::tail::{DeviceState, locate_vmdescription};
use xbzrle_stream::{ErrorKind, Event, PageBody, ReaderOptions, StreamReader};

mod inspect;
mod rewrite;
mod verify;

/// Subcommands of `xbzrle stream`.
#[derive(Debug, Subcommand)]
pub(crate) enum StreamCommand {
    /// Sections, RAM blocks, records and bytes per pass, XBZRLE delta lengths.
    Inspect(inspect::InspectArgs),
    /// Rebuild RAM and check that every XBZRLE record is the canonical encoding.
    Verify(verify::VerifyArgs),
    /// Re-send a migration through the project's sender under a cache policy.
    Rewrite(rewrite::RewriteArgs),
}

/// Options of every `xbzrle stream` command.
#[derive(Debug, clap::Args)]
struct StreamOptions {
    /// Refuse a stream whose MEM_SIZE announces more RAM than SIZE. A few bytes can announce
    /// any size; `verify` hashes all of it (and `--dump-ram` writes it, sparsely), written
    /// or not, and the tables take a bit per page.
    #[arg(long, value_name = "SIZE", default_value = "64G", value_parser = crate::units::parse_size)]
    max_ram: u64,
    /// Replace output files that exist.
    #[arg(short, long)]
    force: bool,
}

/// Runs `xbzrle stream ...`.
pub(crate) fn run(command: StreamCommand) -> anyhow::Result<()> {
    match command {
        StreamCommand::Inspect(args) => inspect::run(&args),
        StreamCommand::Verify(args) => verify::run(&args),
        StreamCommand::Rewrite(args) => rewrite::run(&args),
    }
}

/// Opens a stream file (plain or zstd) with the limits of `options`.
fn open(
    path: &Path,
    options: &StreamOptions,
) -> anyhow::Result<StreamReader<Box<dyn std::io::Read + Send>>> {
    let limits = ReaderOptions {
        max_ram_bytes: options.max_ram,
    };
    StreamReader::open_with(path, limits).with_context(|| format!("cannot open {}", path.display()))
}

/// Reads `path` to the end, calling `each` on every event; the error names the file.
fn for_each_event(
    reader: &mut StreamReader<impl std::io::Read>,
    path: &Path,
    mut each: impl FnMut(Event<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    loop {
        let event = match reader.next_event() {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(err) => {
                let what = match err.kind() {
                    ErrorKind::RamTooLarge { .. } => "announces more RAM than --max-ram allows",
                    ErrorKind::OutOfMemory(_) => "cannot be read in the memory available",
                    _ => "is not a valid migration stream",
                };
                return Err(err).with_context(|| format!("{} {what}", path.display()));
            }
        };
        each(event)?;
    }
}

/// Page records and their bytes, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
struct Tally {
    /// ZERO records (QEMU's `duplicate`).
    zero: u64,
    /// PAGE records (QEMU's `normal`).
    page: u64,
    /// XBZRLE records.
    xbzrle: u64,
    /// Bytes of all these records: headers, block names, payloads.
    record_bytes: u64,
    /// Σ (XBZRLE record length − 8), as QEMU 7.2's `save_xbzrle_page` counts
    /// `xbzrle-cache.bytes` (the block name, flag, length and delta; not the be64 header):
    /// that counter without the page size it adds for each overflow.
    xbzrle_bytes: u64,
}

impl Tally {
    /// Counts a record of `len` bytes whose body is `body`.
    fn add(&mut self, body: &PageBody<'_>, len: u64) {
        self.record_bytes += len;
        match body {
            PageBody::Zero { .. } => self.zero += 1,
            PageBody::Page => self.page += 1,
            PageBody::Xbzrle { .. } => {
                self.xbzrle += 1;
                self.xbzrle_bytes += len.saturating_sub(8);
            }
        }
    }

    fn records(&self) -> u64 {
        self.zero + self.page + self.xbzrle
    }

    fn plus(mut self, other: &Self) -> Self {
        self.zero += other.zero;
        self.page += other.page;
        self.xbzrle += other.xbzrle;
        self.record_bytes += other.record_bytes;
        self.xbzrle_bytes += other.xbzrle_bytes;
        self
    }
}

/// Most passes listed one by one; the records of later passes are counted in the last row
/// (a crafted stream can start a new round at every record).
const MAX_PASSES: usize = 100_000;

/// The row of `passes` that counts a record of round `round`, made by `new` if it is the
/// round's first record (rounds grow by one at a time).
fn pass_row<T>(passes: &mut Vec<T>, round: u64, new: impl FnOnce() -> T) -> &mut T {
    if passes.is_empty() || (passes.len() as u64 <= round && passes.len() < MAX_PASSES) {
        passes.push(new());
    }
    passes.last_mut().expect("pushed above")
}

/// Collects the tail (device state) up to a limit, then walks it.
#[derive(Debug, Default)]
struct TailCollector {
    bytes: Vec<u8>,
    len: u64,
}

/// Most tail bytes kept to walk the device state (real ones are about 100 KB).
const MAX_TAIL: usize = 64 << 20;

/// What the walk of the tail found.
#[derive(Debug, Serialize)]
struct TailSummary {
    /// Bytes after the RAM END section.
    bytes: u64,
    /// Whether they end with an EOF marker and a VMDESCRIPTION.
    vmdescription: bool,
    /// Device sections walked with the VMDESCRIPTION's sizes.
    device_sections: Option<usize>,
    /// Bytes of device state (up to the EOF marker).
    device_state_bytes: Option<usize>,
    /// Bytes of the VMDESCRIPTION JSON.
    vmdescription_bytes: Option<usize>,
    /// Why the walk failed, if it did.
    error: Option<String>,
}

impl TailCollector {
    fn push(&mut self, chunk: &[u8]) {
        self.len += chunk.len() as u64;
        if self.bytes.len() + chunk.len() <= MAX_TAIL {
            self.bytes.extend_from_slice(chunk);
        }
    }

    fn summary(&self, footers: bool) -> TailSummary {
        let mut summary = TailSummary {
            bytes: self.len,
            vmdescription: false,
            device_sections: None,
            device_state_bytes: None,
            vmdescription_bytes: None,
            error: None,
        };
        if self.len > self.bytes.len() as u64 {
            summary.error = Some(format!("not walked: longer than {MAX_TAIL} bytes"));
            return summary;
        }
        summary.vmdescription = locate_vmdescription(&self.bytes).is_some();
        match DeviceState::parse(&self.bytes, footers) {
            Ok(state) => {
                summary.device_sections = Some(state.sections.len());
                summary.device_state_bytes = Some(state.eof_offset);
                summary.vmdescription_bytes = Some(state.vmdescription_len);
            }
            Err(err) => summary.error = Some(err.to_string()),
        }
        summary
    }
}

impl TailSummary {
    /// One line for people.
    fn describe(&self) -> String {
        match (self.device_sections, self.device_state_bytes, &self.error) {
            (Some(sections), Some(state), _) => format!(
                "{} bytes: {sections} device sections ({} bytes), EOF, VMDESCRIPTION ({} bytes)",
                group(self.bytes),
                group(state as u64),
                group(self.vmdescription_bytes.unwrap_or(0) as u64)
            ),
            (_, _, Some(err)) => format!("{} bytes, not walked: {err}", group(self.bytes)),
            _ => format!("{} bytes", group(self.bytes)),
        }
    }
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Relative change `new` against `old`, in percent, for people.
fn change(old: u64, new: u64) -> String {
    if old == 0 {
        return "-".into();
    }
    format!("{:+.1} %", (new as f64 - old as f64) * 100.0 / old as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_change() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(292_527_188), "292,527,188");
        assert_eq!(change(200, 150), "-25.0 %");
        assert_eq!(change(0, 5), "-");
    }

    #[test]
    fn one_row_per_pass_up_to_the_limit() {
        let mut rows: Vec<u64> = Vec::new();
        for round in [0, 0, 1, 1, 1, 2] {
            *pass_row(&mut rows, round, || 0) += 1;
        }
        assert_eq!(rows, [2, 3, 1]);
        let mut rows: Vec<u64> = Vec::new();
        for round in 0..MAX_PASSES as u64 + 10 {
            *pass_row(&mut rows, round, || 0) += 1;
        }
        assert_eq!(rows.len(), MAX_PASSES);
        assert_eq!(
            rows[MAX_PASSES - 1],
            11,
            "later passes counted in the last row"
        );
    }

    #[test]
    fn tally_adds_up() {
        let mut tally = Tally::default();
        tally.add(&PageBody::Zero { fill: 0 }, 10);
        tally.add(&PageBody::Page, 4104);
        let xbzrle = PageBody::Xbzrle {
            delta: b"ab",
            before: &[],
        };
        // With CONTINUE: header 8, flag 1, length 2, delta 2.
        tally.add(&xbzrle, 13);
        // Naming `pc.ram`: QEMU counts the name (1 + 6 bytes) too.
        tally.add(&xbzrle, 20);
        assert_eq!(tally.records(), 4);
        assert_eq!(tally.record_bytes, 4147);
        assert_eq!(tally.xbzrle_bytes, 5 + 12);
        assert_eq!(tally.plus(&tally).records(), 8);
    }
}
