//! The `xbzrle` command line tool.
//!
//! * `xbzrle simulate`: a pre-copy live-migration model that runs the real sender, wire
//!   records and receiver under several cache policies side by side (see [`simulate`]).
//! * `xbzrle bench`: encode/decode speed of every kernel the CPU supports (see [`bench`](mod@bench)).
//! * `xbzrle diff` / `xbzrle apply`: a delta file between two equal-size files (see
//!   [`delta`]).
//! * `xbzrle stream inspect|verify|rewrite`: real QEMU migration streams (see [`stream`]).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod bench;
mod delta;
mod files;
mod policy;
mod simulate;
mod stream;
mod units;

/// Version of the layout of the JSON that `simulate --json` and `bench --json` write (the
/// `schema_version` field): raised when a field is renamed, removed or changes meaning, not
/// when one is added.
const JSON_SCHEMA_VERSION: u32 = 1;

/// XBZRLE toolkit: QEMU live-migration delta codec, cache policies and simulator.
#[derive(Debug, Parser)]
#[command(
    name = "xbzrle",
    version,
    about,
    propagate_version = true,
    after_help = "\
Examples:
  xbzrle simulate                                 (a simulated migration, three cache policies)
  xbzrle diff snap-00.raw snap-01.raw -o 01.xbzd  (then: xbzrle apply snap-00.raw 01.xbzd -o copy)"
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a pre-copy live migration under several cache policies side by side.
    Simulate(simulate::SimulateArgs),
    /// Measure encode and decode speed of every kernel this CPU supports.
    Bench(bench::BenchArgs),
    /// Write the delta between two files of equal size (e.g. RAM snapshots).
    Diff(delta::DiffArgs),
    /// Rebuild a file from its old version and a delta written by `xbzrle diff`.
    Apply(delta::ApplyArgs),
    /// Real QEMU migration streams: inspect, verify, re-send under a cache policy.
    #[command(subcommand)]
    Stream(stream::StreamCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Diff(args) => delta::diff(&args),
        Command::Apply(args) => delta::apply(&args),
        Command::Stream(command) => stream::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast::<clap::Error>() {
            // A usage error found after parsing: exit status 2, like clap's own.
            Ok(usage) => usage.format(&mut Cli::command()).exit(),
            Err(err) => {
                eprintln!("xbzrle: error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}
