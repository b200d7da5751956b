//! `xbzrle simulate`: a pre-copy live migration, modelled pass by pass, with the real
//! [`Sender`](xbzrle_policy::Sender), wire records and
//! [`Receiver`](xbzrle_policy::Receiver) under several cache policies side by side.
//!
//! The model ([`engine`]):
//!
//! 1. The first pass sends every page of guest RAM (the bulk stage) while the guest runs.
//! 2. At each dirty sync the pages the guest wrote since the last one form the next pass.
//!    Before sending it, both convergence rules are checked; the one chosen with
//!    `--converge` (or `--max-passes` / `--max-time`) stops the guest.
//! 3. The last stage sends the final dirty set with the guest stopped; its duration plus
//!    the final sync is the downtime.
//!
//! Simulated time advances by the bytes each record puts on the wire divided by the
//! bandwidth, plus a fixed time per dirty sync; the guest writes in proportion to it. Every
//! record is written by the sender into a wire buffer and parsed back and applied by the
//! receiver to the destination's own lazily allocated RAM, which is compared page by page
//! with the source at the end.
//!
//! [`settings`] holds what a run is given, [`result`] what each policy's run produces,
//! [`report`] turns the results into the table and the JSON, [`plot`] into the SVG.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use xbzrle_workloads::snapshots::SnapshotSeries;

mod engine;
mod guest;
mod memory;
mod plot;
mod report;
mod result;
mod settings;

use crate::policy;
use guest::{DocConfig, DocGuest, Guest, ZipfConfig, ZipfGuest};
use report::{Report, WorkloadInfo};
use result::PolicyResult;
use settings::{Rule, Settings};

/// Page size of the simulated guests (x86-64).
const PAGE_SIZE: usize = 4096;

/// Arguments of `xbzrle simulate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  xbzrle simulate                                    (QEMU's docs/xbzrle.txt experiment)
  xbzrle simulate --cache-size 32M --json run.json --plot run.svg zipf
  xbzrle simulate --policies qemu,sa8-lru,sa8-frequency/freq2 replay snapshots/")]
pub(crate) struct SimulateArgs {
    /// The workload [default: xbzrle-doc].
    #[command(subcommand)]
    workload: Option<WorkloadCommand>,
    /// XBZRLE cache size per policy (QEMU's default: 64 MiB).
    #[arg(long, global = true, value_name = "SIZE", default_value = "64M", value_parser = crate::units::parse_size)]
    cache_size: u64,
    /// Bandwidth limit in bytes per second (QEMU's default max-bandwidth: 32 MiB/s).
    #[arg(long, global = true, value_name = "BYTES_PER_SEC", default_value = "32M", value_parser = crate::units::parse_size)]
    bandwidth: u64,
    /// Downtime limit in milliseconds (QEMU's default: 300).
    #[arg(long, global = true, value_name = "MS", default_value_t = 300)]
    downtime_limit: u64,
    /// The rule that stops the guest; both rules are evaluated and reported at every sync.
    #[arg(long, global = true, value_name = "RULE", value_enum, default_value_t = Rule::Qemu)]
    converge: Rule,
    /// Stop the guest anyway after this many passes after the first (synthetic workloads).
    #[arg(long, global = true, value_name = "N", default_value_t = 30)]
    max_passes: usize,
    /// Stop the guest anyway after this many simulated seconds (synthetic workloads).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 300.0)]
    max_time: f64,
    /// Simulated milliseconds per dirty sync (QEMU 7.2 under TCG spent about 10 ms per
    /// iteration when there was almost nothing to send, in the recorded migrations of the
    /// dirty1024 guest).
    #[arg(long, global = true, value_name = "MS", default_value_t = 10.0)]
    sync_time: f64,
    /// Comma-separated policies, one column each: names (qemu-pre-5cc11c46, qemu, ours)
    /// or specs CACHE[/ADMISSION] such as sa8-lru/after-bulk (see the README).
    #[arg(long, global = true, value_name = "LIST", default_value = policy::DEFAULT_POLICIES)]
    policies: String,
    /// Also write the results as JSON to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also draw bytes and dirty pages per pass into FILE (SVG).
    #[arg(long, global = true, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Replace the --json and --plot files if they exist.
    #[arg(short, long, global = true)]
    force: bool,
}

/// The workloads.
#[derive(Debug, Subcommand)]
enum WorkloadCommand {
    /// QEMU's docs/xbzrle.txt test program in a 1 GiB guest, as in QEMU commit 5cc11c46.
    #[command(
        name = "xbzrle-doc",
        after_help = "Examples:\n  xbzrle simulate xbzrle-doc --guest-size 256M --buffer-size 4M"
    )]
    XbzrleDoc(DocCommand),
    /// 64-byte records updated with Zipf popularity over a heap larger than the cache.
    #[command(after_help = "Examples:\n  xbzrle simulate --cache-size 32M zipf --exponent 1.2")]
    Zipf(ZipfCommand),
    /// Replay consecutive raw RAM snapshots (snap-NN.raw, or the zstd delta chain
    /// snap-00.raw.zst + snap-NN.raw.patch.zst of the recorded guest-RAM snapshots).
    #[command(
        after_help = "Examples:\n  xbzrle simulate --cache-size 32M replay guest-ram/dirty1024"
    )]
    Replay(ReplayCommand),
}

/// `xbzrle simulate xbzrle-doc`.
#[derive(Debug, Parser)]
struct DocCommand {
    /// The guest's settings.
    #[command(flatten)]
    config: DocConfig,
}

/// `xbzrle simulate zipf`.
#[derive(Debug, Parser)]
struct ZipfCommand {
    /// The guest's settings.
    #[command(flatten)]
    config: ZipfConfig,
}

/// `xbzrle simulate replay DIR`.
#[derive(Debug, Parser)]
struct ReplayCommand {
    /// Folder of snapshots: snap-00.raw, snap-01.raw, ... or snap-00.raw.zst followed by
    /// snap-NN.raw.patch.zst (file offset = guest-physical address).
    dir: PathBuf,
}

/// Runs `xbzrle simulate`.
pub(crate) fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let policies = policy::parse_list(&args.policies)?;
    if let Some(path) = &args.json {
        crate::files::check_output_path(path, "--json", args.force)?;
    }
    if let Some(path) = &args.plot {
        plot::check_path(path, args.force)?;
    }
    if args.bandwidth == 0 {
        bail!("--bandwidth must be positive");
    }
    if !((0.0..=60_000.0).contains(&args.sync_time) && args.max_time >= 0.0) {
        bail!("--sync-time must be between 0 and 60000 ms and --max-time not negative");
    }
    if args.cache_size > guest::MAX_GUEST_SIZE {
        bail!(
            "--cache-size {} is above the {} bytes the simulator models",
            args.cache_size,
            guest::MAX_GUEST_SIZE
        );
    }
    let settings = Settings {
        page_size: PAGE_SIZE,
        cache_size: args.cache_size,
        bandwidth: args.bandwidth,
        downtime_limit_ms: args.downtime_limit,
        converge: args.converge,
        max_passes: args.max_passes,
        max_time_s: args.max_time,
        sync_time_ms: args.sync_time,
    };
    let workload = match args.workload {
        Some(workload) => workload,
        None => WorkloadCommand::XbzrleDoc(
            DocCommand::try_parse_from(["xbzrle-doc"]).context("default workload")?,
        ),
    };
    let started = Instant::now();
    let (info, results) = match workload {
        WorkloadCommand::XbzrleDoc(DocCommand { config }) => {
            let info = WorkloadInfo {
                name: "xbzrle-doc".to_owned(),
                description: format!(
                    "{} guest, docs/xbzrle.txt program on a {} buffer at {} sweeps/s, {:.0}% of \
                     the other pages zero",
                    crate::units::format_size(config.guest_size),
                    crate::units::format_size(config.buffer_size),
                    config.sweeps_per_sec,
                    config.zero_fraction * 100.0
                ),
                parameters: serde_json::to_value(&config)?,
            };
            let results = run_synthetic(&policies, &settings, || {
                DocGuest::new(&config, PAGE_SIZE).map(|g| Box::new(g) as Box<dyn Guest>)
            })?;
            (info, results)
        }
        WorkloadCommand::Zipf(ZipfCommand { config }) => {
            let info = WorkloadInfo {
                name: "zipf".to_owned(),
                description: format!(
                    "{} guest, {} heap of 64-byte records, {} updates/s, Zipf exponent {}",
                    crate::units::format_size(config.guest_size),
                    crate::units::format_size(config.heap_size),
                    config.ops_per_sec,
                    config.exponent
                ),
                parameters: serde_json::to_value(&config)?,
            };
            let results = run_synthetic(&policies, &settings, || {
                ZipfGuest::new(&config, PAGE_SIZE).map(|g| Box::new(g) as Box<dyn Guest>)
            })?;
            (info, results)
        }
        WorkloadCommand::Replay(ReplayCommand { dir }) => {
            let series = SnapshotSeries::open(&dir)
                .with_context(|| format!("opening snapshots in {}", dir.display()))?;
            let info = WorkloadInfo {
                name: "replay".to_owned(),
                description: format!(
                    "{} snapshots of {}; pass k sends the pages that differ from snapshot k-1",
                    series.len(),
                    dir.display()
                ),
                parameters: serde_json::json!({ "dir": dir, "snapshots": series.len() }),
            };
            let progress = bar(series.len() as u64, "replay");
            let results = engine::replay(&policies, &series, &settings, &progress)?;
            progress.finish_and_clear();
            (info, results)
        }
    };
    let report = Report::new(info, settings, results, started.elapsed().as_secs_f64());
    print!("{}", report.render());
    if let Some(path) = &args.json {
        crate::files::write_json(path, args.force, &report)?;
    }
    if let Some(path) = &args.plot {
        let title = format!("xbzrle simulate {}", report.workload.name);
        let threshold = report.settings.threshold();
        plot::draw(path, args.force, &title, &report.policies, threshold)?;
    }
    eprintln!("simulated in {:.1} s", report.wall_time_s);
    let failed: Vec<String> = report
        .failures()
        .map(|p| {
            format!(
                "{}: {} of {} pages differ (first: {:?})",
                p.policy,
                p.destination.mismatched_pages,
                p.destination.pages_compared,
                p.destination.first_mismatches
            )
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "DESTINATION RAM DIFFERS FROM THE SOURCE: {}",
            failed.join("; ")
        );
    }
    Ok(())
}

/// Migrates a fresh guest from `build` under each policy in turn.
fn run_synthetic(
    policies: &[policy::Policy],
    settings: &Settings,
    build: impl Fn() -> anyhow::Result<Box<dyn Guest>>,
) -> anyhow::Result<Vec<PolicyResult>> {
    policies
        .iter()
        .map(|policy| {
            let mut guest = build()?;
            let progress = bar(settings.max_passes as u64 + 2, &policy.name);
            let result = engine::migrate_guest(policy, guest.as_mut(), settings, &progress);
            progress.finish_and_clear();
            result
        })
        .collect()
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
fn bar(len: u64, prefix: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} passes {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(prefix.to_owned())
}
