//! `xbzrle stream rewrite IN OUT [--policy P] [--cache-size SIZE]`: the same migration,
//! re-sent through the project's [`Sender`] under a cache policy.
//!
//! The page versions IN carries go, in stream order, through the sender configured as
//! `xbzrle simulate` configures the policy; its records come out in QEMU's framing, in the
//! same sections as IN (so every page is sent in the same pass and section as QEMU sent
//! it, or not at all when the sender finds it unchanged). Header, configuration, commands
//! and everything after the RAM END section are copied.
//!
//! The stages follow IN: the bulk stage ends where QEMU's page search first wrapped around
//! RAM (round 1, where QEMU starts XBZRLE); a dirty sync is made wherever the reader
//! proves one ([`xbzrle_stream::PageRecord::dirty_sync`]); the END section is the last
//! stage.
//!
//! OUT is written to a temporary file renamed into place at the end, after IN has been
//! read to its end: `rewrite IN IN --force` replaces IN safely.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use xbzrle_policy::wire::{Body, Record};
use xbzrle_policy::{Action, Sender, SenderStats};
use xbzrle_stream::{Event, SectionKind, StreamWriter};

use super::{StreamOptions, Tally, change, group};
use crate::files::{self, Output};
use crate::policy::Policy;

/// Arguments of `xbzrle stream rewrite`.
#[derive(Debug, clap::Args)]
pub(crate) struct RewriteArgs {
    /// The migration stream to re-send (plain, or zstd-compressed).
    input: PathBuf,
    /// Where to write the new stream (zstd-compressed if the name ends in `.zst`).
    output: PathBuf,
    /// The cache policy: qemu-pre-5cc11c46, qemu, ours, or a spec CACHE[/ADMISSION] as in
    /// `xbzrle simulate --policies`.
    #[arg(long, value_name = "POLICY", default_value = "ours")]
    policy: String,
    /// XBZRLE cache size (give the source's `xbzrle-cache-size`; QEMU's default: 64 MiB).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = crate::units::parse_size)]
    cache_size: u64,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The limits and --force.
    #[command(flatten)]
    options: StreamOptions,
}

/// Records in and out of one pass.
#[derive(Debug, Default, Serialize)]
struct Pass {
    pass: u64,
    #[serde(rename = "in")]
    input: Tally,
    out: Tally,
    /// Records of IN for which the sender sent nothing (unchanged against its cache).
    skipped: u64,
}

/// Everything `rewrite` reports.
#[derive(Debug, Serialize)]
struct Rewrite {
    input: String,
    output: String,
    policy: String,
    policy_description: String,
    cache_size: u64,
    stream_bytes_in: u64,
    stream_bytes_out: u64,
    passes: Vec<Pass>,
    total_in: Tally,
    total_out: Tally,
    after_first_pass_in: Tally,
    after_first_pass_out: Tally,
    skipped: u64,
    dirty_syncs: u64,
    sender: SenderSummary,
}

/// The sender's counters at the end (QEMU's `xbzrle-cache` names where they exist).
#[derive(Debug, Serialize)]
struct SenderSummary {
    zero_pages: u64,
    raw_pages: u64,
    xbzrle_pages: u64,
    skipped_pages: u64,
    /// Cache hits (QEMU's `xbzrle-cache.pages`).
    cache_hits: u64,
    cache_miss: u64,
    overflow: u64,
}

impl From<SenderStats> for SenderSummary {
    fn from(s: SenderStats) -> Self {
        Self {
            zero_pages: s.zero_pages,
            raw_pages: s.raw_pages,
            xbzrle_pages: s.xbzrle_pages,
            skipped_pages: s.skipped_pages,
            cache_hits: s.xbzrle_cache.pages,
            cache_miss: s.xbzrle_cache.cache_miss,
            overflow: s.xbzrle_cache.overflow,
        }
    }
}

/// Runs `xbzrle stream rewrite`.
pub(crate) fn run(args: &RewriteArgs) -> anyhow::Result<()> {
    let policy: Policy = args.policy.parse()?;
    let force = args.options.force;
    if files::is_stdio(&args.output) {
        bail!("OUT cannot be `-`: the report goes to standard output");
    }
    if let Some(path) = &args.json {
        files::check_output_path(path, "--json", force)?;
    }
    let mut reader = super::open(&args.input, &args.options)?;
    let sink = Sink::create(&args.output, force)?;
    let mut writer = StreamWriter::new(sink);
    let mut sender: Option<Sender> = None;
    let mut record = Vec::new();
    let mut passes: Vec<Pass> = Vec::new();
    let mut syncs_done = 0u64;
    let mut bulk_ended = false;
    let mut last_stage = false;
    let output = args.output.display().to_string();
    let write_error = |e: io::Error| anyhow!(e).context(format!("cannot write {output}"));
    super::for_each_event(&mut reader, &args.input, |event| {
        match event {
            Event::Header { .. } => writer.header(),
            Event::Configuration(configuration) => writer.configuration(configuration),
            Event::Command { command, data } => writer.command(command, data),
            Event::SectionStart(section) => {
                if section.kind == SectionKind::End
                    && let Some(sender) = &sender
                {
                    sender.start_last_stage();
                    last_stage = true;
                }
                writer.begin_section(section)
            }
            Event::MemSize {
                blocks, page_size, ..
            } => {
                let pages: u64 = blocks
                    .iter()
                    .map(|b| b.len.div_ceil(page_size as u64))
                    .sum();
                let config = policy.config(
                    page_size,
                    args.cache_size,
                    usize::try_from(pages).unwrap_or(usize::MAX),
                );
                let new =
                    Sender::new(config).map_err(|e| anyhow!("policy {}: {e}", policy.name))?;
                policy.first_sync(&new);
                syncs_done = 1;
                record = vec![0; new.max_record_len()];
                sender = Some(new);
                writer.mem_size(page_size, blocks)
            }
            Event::Page(page) => {
                let sender = sender
                    .as_ref()
                    .ok_or_else(|| anyhow!("page before MEM_SIZE"))?;
                if !last_stage {
                    if page.round >= 1 && !bulk_ended {
                        // Where QEMU's search first wraps, it starts XBZRLE.
                        sender.end_bulk_stage();
                        bulk_ended = true;
                    }
                    while syncs_done < page.dirty_sync {
                        sender.start_pass();
                        syncs_done += 1;
                    }
                }
                let pass = super::pass_row(&mut passes, page.round, || Pass {
                    pass: page.round,
                    ..Pass::default()
                });
                pass.input.add(&page.body, page.len);
                let sent = sender
                    .save_page(page.page_number, page.page, &mut record)
                    .map_err(|e| anyhow!("sender: {e}"))?;
                if sent.action == Action::Skipped {
                    pass.skipped += 1;
                    return Ok(());
                }
                let (wire, _) = Record::parse(&record[..sent.record_len], page.page.len())
                    .map_err(|e| anyhow!("sender wrote an unreadable record: {e}"))?;
                let (body, len) = match wire.body {
                    Body::Zero { fill } => (
                        xbzrle_stream::PageBody::Zero { fill },
                        writer.zero_page(page.block, page.page_offset, fill),
                    ),
                    Body::Raw(data) => (
                        xbzrle_stream::PageBody::Page,
                        writer.page(page.block, page.page_offset, data),
                    ),
                    Body::Xbzrle(delta) => (
                        xbzrle_stream::PageBody::Xbzrle { delta, before: &[] },
                        writer.xbzrle_page(page.block, page.page_offset, delta),
                    ),
                };
                pass.out.add(&body, len.map_err(write_error)?);
                Ok(())
            }
            Event::SectionEnd { footer } => writer.end_section(footer),
            Event::Tail(bytes) => writer.raw(bytes),
        }
        .map_err(write_error)
    })?;
    let stream_bytes_out = writer.bytes_written();
    writer.finish().map_err(write_error)?.finish()?;
    let sender = sender.ok_or_else(|| anyhow!("{} has no RAM", args.input.display()))?;
    let sum = |skip: usize, side: fn(&Pass) -> &Tally| {
        passes
            .iter()
            .skip(skip)
            .fold(Tally::default(), |t, p| t.plus(side(p)))
    };
    let result = Rewrite {
        input: args.input.display().to_string(),
        output,
        policy: policy.name.clone(),
        policy_description: policy.describe(),
        cache_size: args.cache_size,
        stream_bytes_in: reader.offset(),
        stream_bytes_out,
        total_in: sum(0, |p| &p.input),
        total_out: sum(0, |p| &p.out),
        after_first_pass_in: sum(1, |p| &p.input),
        after_first_pass_out: sum(1, |p| &p.out),
        skipped: passes.iter().map(|p| p.skipped).sum(),
        dirty_syncs: reader.dirty_syncs(),
        passes,
        sender: sender.stats().into(),
    };
    print_report(&result);
    if let Some(path) = &args.json {
        files::write_json(path, force, &result)?;
    }
    Ok(())
}

fn print_report(r: &Rewrite) {
    println!(
        "{} -> {}: policy {} ({}), cache {}",
        r.input,
        r.output,
        r.policy,
        r.policy_description,
        crate::units::format_size(r.cache_size)
    );
    println!(
        "\n{:>5} {:>10} {:>14} | {:>8} {:>8} {:>8} {:>8} {:>14} {:>9}",
        "pass", "records", "bytes in", "zero", "page", "xbzrle", "skipped", "bytes out", "change"
    );
    for p in &r.passes {
        println!(
            "{:>5} {:>10} {:>14} | {:>8} {:>8} {:>8} {:>8} {:>14} {:>9}",
            p.pass,
            group(p.input.records()),
            group(p.input.record_bytes),
            group(p.out.zero),
            group(p.out.page),
            group(p.out.xbzrle),
            group(p.skipped),
            group(p.out.record_bytes),
            change(p.input.record_bytes, p.out.record_bytes)
        );
    }
    let line = |label: &str, input: &Tally, out: &Tally| {
        println!(
            "{label}: RAM records {} bytes in, {} bytes out ({})",
            group(input.record_bytes),
            group(out.record_bytes),
            change(input.record_bytes, out.record_bytes)
        );
    };
    println!();
    line("total", &r.total_in, &r.total_out);
    line(
        "after the first pass",
        &r.after_first_pass_in,
        &r.after_first_pass_out,
    );
    println!(
        "stream: {} bytes in, {} bytes out ({}); dirty syncs {}",
        group(r.stream_bytes_in),
        group(r.stream_bytes_out),
        change(r.stream_bytes_in, r.stream_bytes_out),
        r.dirty_syncs
    );
    let s = &r.sender;
    println!(
        "sender: {} zero, {} raw, {} XBZRLE, {} skipped; cache hits {}, cache-miss {}, overflow {}",
        group(s.zero_pages),
        group(s.raw_pages),
        group(s.xbzrle_pages),
        group(s.skipped_pages),
        group(s.cache_hits),
        group(s.cache_miss),
        group(s.overflow)
    );
}

/// The output file, plain or zstd-compressed.
enum Sink {
    Plain(Output),
    Zstd(zstd::Encoder<'static, Output>),
}

impl Sink {
    /// Prepares to write `path` ([`Output::create`]), compressed if its name ends in `.zst`.
    fn create(path: &Path, force: bool) -> anyhow::Result<Self> {
        let out = Output::create(path, force)?;
        Ok(if path.extension().is_some_and(|e| e == "zst") {
            Sink::Zstd(zstd::Encoder::new(out, 3)?)
        } else {
            Sink::Plain(out)
        })
    }

    /// Ends the zstd frame if any, then [`Output::finish`].
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Plain(out) => out.finish(),
            Sink::Zstd(encoder) => {
                let name = encoder.get_ref().name().to_owned();
                let out = encoder
                    .finish()
                    .with_context(|| format!("writing {name}"))?;
                out.finish()
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(file) => file.write(bytes),
            Sink::Zstd(encoder) => encoder.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(file) => file.flush(),
            Sink::Zstd(encoder) => encoder.flush(),
        }
    }
}
