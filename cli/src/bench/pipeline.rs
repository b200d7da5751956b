//! `xbzrle bench --pipeline`: the whole sender at guest-RAM scale against QEMU's method (see
//! `xbzrle_benches::pipeline`): for QEMU's cache setup and the recommended one, every dirty
//! page of a pass is saved by QEMU's method (word-at-a-time encoder, and this project's
//! encoder), by the sender from one thread page by page and as one batch
//! (`Sender::save_pages`), and by the sender with two shards in batches from one and from
//! two threads. The memory floor (reading the guest page and a cached copy, nothing else)
//! shows how much of that time is waiting for memory, and with the CPU check (encoding a
//! pair held in the CPU cache, in a pass as long as a sender's) how far two threads can go:
//! both run from one and from two threads, and a last line gives what two threads gain on
//! each. Passes are
//! interleaved (each pass dirties the pages once, then every method saves them, in a
//! rotating order), and the median pass gives the time per page.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use serde::Serialize;
use xbzrle_benches::pipeline::{
    Calls, DIRECT_MAPPED, Guest, MemoryFloor, Method, PAGE, QemuEncoder, QemuMethod, Workers,
    measure_pass, setups, warm_up,
};
use xbzrle_policy::Sender;

use super::median;
use crate::units::format_size;

/// Sizes of the pipeline run.
#[derive(Debug, Clone)]
pub(crate) struct PipelineArgs {
    /// Guest RAM bytes.
    pub(crate) ram: u64,
    /// Bytes dirtied and saved per pass.
    pub(crate) dirty: u64,
    /// XBZRLE cache bytes.
    pub(crate) cache: u64,
    /// Measured passes.
    pub(crate) passes: usize,
    /// Where to write the JSON, if anywhere.
    pub(crate) json: Option<PathBuf>,
    /// Replace the JSON file if it exists.
    pub(crate) force: bool,
}

/// Everything `xbzrle bench --pipeline` measured (the JSON of `--json`).
#[derive(Debug, Serialize)]
struct PipelineReport {
    /// [`crate::JSON_SCHEMA_VERSION`].
    schema_version: u32,
    /// `pipeline` (the kernel benchmark's JSON has no such field).
    benchmark: &'static str,
    /// The sizes.
    settings: PipelineSettings,
    /// One entry per cache setup.
    setups: Vec<SetupResult>,
}

/// The sizes of a pipeline run.
#[derive(Debug, Serialize)]
struct PipelineSettings {
    /// Bytes per page.
    page_size: usize,
    /// Guest RAM bytes.
    ram_bytes: u64,
    /// Bytes dirtied and saved per pass.
    dirty_bytes_per_pass: u64,
    /// XBZRLE cache bytes.
    cache_bytes: u64,
    /// Measured passes.
    passes: usize,
    /// What a time is.
    statistic: &'static str,
}

/// The methods measured on one cache setup.
#[derive(Debug, Serialize)]
struct SetupResult {
    /// `direct-mapped` (QEMU's) or `16-way`.
    cache: &'static str,
    /// One entry per method, in table order.
    methods: Vec<MethodResult>,
}

/// One method's result.
#[derive(Debug, Serialize)]
struct MethodResult {
    /// What saved the pages.
    method: &'static str,
    /// Median nanoseconds per dirty page.
    ns_per_page: f64,
    /// QEMU's method with its word encoder: its time over this one's.
    speedup_vs_qemu_word: f64,
    /// QEMU's method with `xbzrle::encode`: its time over this one's.
    speedup_vs_qemu_library: f64,
    /// Bytes of the records of the last measured pass.
    record_bytes: u64,
    /// The sender's cache misses over the whole run (QEMU's method does not count them).
    cache_misses: Option<u64>,
}

/// Runs the pipeline benchmark and prints one table per cache setup.
pub(crate) fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let page = PAGE as u64;
    if !args.ram.is_multiple_of(page)
        || !args.dirty.is_multiple_of(page)
        || args.dirty == 0
        || args.dirty > args.ram
    {
        bail!("--ram and --dirty must be whole pages, with 0 < dirty <= ram");
    }
    if args.cache < page || args.passes == 0 {
        bail!("--cache-size must hold a page and --passes must be at least 1");
    }
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| anyhow::anyhow!("{v} is too large"));
    let (ram, dirty, cache) = (
        to_usize(args.ram)?,
        to_usize(args.dirty)?,
        to_usize(args.cache)?,
    );
    println!(
        "sender pipeline: guest {}, {} dirtied per pass (8 runs of 8 bytes per page), cache {}, \
         {} measured passes",
        format_size(args.ram),
        format_size(args.dirty),
        format_size(args.cache),
        args.passes
    );
    // Every method of both setups saves the same page versions in the same passes, so that
    // the 16-way rows have in-process ratios too. QEMU's method (which only has QEMU's
    // cache) and the floor are listed with the direct-mapped setup.
    let mut named: Vec<(&str, &str, Method)> = vec![
        (
            DIRECT_MAPPED,
            QEMU_WORD,
            Method::Qemu(QemuMethod::new(cache, QemuEncoder::Word)),
        ),
        (
            DIRECT_MAPPED,
            QEMU_LIBRARY,
            Method::Qemu(QemuMethod::new(cache, QemuEncoder::Library)),
        ),
    ];
    for (name, threads) in [(FLOOR, 1), (FLOOR_TWO_THREADS, 2)] {
        let floor = Arc::new(MemoryFloor::new(cache));
        let workers = Workers::new(threads);
        named.push((DIRECT_MAPPED, name, Method::Floor { floor, workers }));
    }
    for (name, threads) in [(CPU_CHECK, 1), (CPU_CHECK_TWO_THREADS, 2)] {
        let workers = Workers::new(threads);
        named.push((DIRECT_MAPPED, name, Method::CpuCheck { workers }));
    }
    for ((setup, config), (_, two_shards)) in setups(cache, 1).into_iter().zip(setups(cache, 2)) {
        let sender = |config, threads, calls| -> anyhow::Result<Method> {
            Ok(Method::Sender {
                sender: Arc::new(Sender::new(config)?),
                workers: Workers::new(threads),
                calls,
            })
        };
        named.extend([
            (setup, "sender", sender(config.clone(), 1, Calls::OnePage)?),
            (setup, BATCH, sender(config, 1, Calls::Batch)?),
            (
                setup,
                BATCH_TWO_SHARDS,
                sender(two_shards.clone(), 1, Calls::Batch)?,
            ),
            (
                setup,
                BATCH_TWO_THREADS,
                sender(two_shards, 2, Calls::Batch)?,
            ),
        ]);
    }
    let (labels, mut methods): (Vec<(&str, &str)>, Vec<Method>) = named
        .into_iter()
        .map(|(setup, name, method)| ((setup, name), method))
        .unzip();
    let mut guest = Guest::new(ram, dirty, 0x9e57);
    warm_up(&mut methods, &mut guest);
    let mut ns_per_page = vec![Vec::new(); methods.len()];
    let mut bytes_per_pass = vec![0; methods.len()];
    for pass in 0..args.passes {
        let results = measure_pass(&mut methods, &mut guest, pass);
        for (i, (time, bytes)) in results.into_iter().enumerate() {
            ns_per_page[i].push(time.as_nanos() as f64 / guest.dirty().len() as f64);
            bytes_per_pass[i] = bytes;
        }
    }
    let medians: Vec<f64> = ns_per_page.into_iter().map(median).collect();
    let baseline = |name: &str| {
        let i = labels.iter().position(|&(_, n)| n == name);
        medians[i.expect("the baselines are measured")]
    };
    let (word, library) = (baseline(QEMU_WORD), baseline(QEMU_LIBRARY));
    let mut results: Vec<SetupResult> = Vec::new();
    for (i, &(setup, method)) in labels.iter().enumerate() {
        let ns = medians[i];
        let result = MethodResult {
            method,
            ns_per_page: ns,
            speedup_vs_qemu_word: word / ns,
            speedup_vs_qemu_library: library / ns,
            record_bytes: bytes_per_pass[i],
            cache_misses: match &methods[i] {
                Method::Sender { sender, .. } => Some(sender.stats().xbzrle_cache.cache_miss),
                Method::Qemu(_) | Method::Floor { .. } | Method::CpuCheck { .. } => None,
            },
        };
        match results.last_mut() {
            Some(last) if last.cache == setup => last.methods.push(result),
            _ => results.push(SetupResult {
                cache: setup,
                methods: vec![result],
            }),
        }
    }
    for result in &results {
        print_table(result);
    }
    print_scaling(&results);
    if let Some(path) = &args.json {
        let report = PipelineReport {
            schema_version: crate::JSON_SCHEMA_VERSION,
            benchmark: "pipeline",
            settings: PipelineSettings {
                page_size: PAGE,
                ram_bytes: args.ram,
                dirty_bytes_per_pass: args.dirty,
                cache_bytes: args.cache,
                passes: args.passes,
                statistic: "median ns per dirty page over the measured passes",
            },
            setups: results,
        };
        crate::files::write_json(path, args.force, &report)?;
    }
    Ok(())
}

/// Names of the two baselines.
const QEMU_WORD: &str = "QEMU's method, word encoder";
const QEMU_LIBRARY: &str = "QEMU's method, xbzrle::encode";
/// Names of the floors' and the CPU check's rows.
const FLOOR: &str = "memory floor (reads only)";
const FLOOR_TWO_THREADS: &str = "memory floor, 2 threads";
const CPU_CHECK: &str = "CPU check (hot pairs)";
const CPU_CHECK_TWO_THREADS: &str = "CPU check, 2 threads";
/// Names of the batch rows of the sender.
const BATCH: &str = "sender, batch";
const BATCH_TWO_SHARDS: &str = "sender, batch, 2 shards";
const BATCH_TWO_THREADS: &str = "sender, batch, 2 threads";

/// Prints what two threads gain over one (one thread's time per page over two threads')
/// for the memory floor, the CPU check and the sender with two shards of each setup.
fn print_scaling(results: &[SetupResult]) {
    let ns = |result: &SetupResult, name: &str| {
        let method = result.methods.iter().find(|m| m.method == name);
        method.map(|m| m.ns_per_page)
    };
    let mut gains = Vec::new();
    let mut gain = |label: String, result: &SetupResult, one: &str, two: &str| {
        if let (Some(one), Some(two)) = (ns(result, one), ns(result, two)) {
            gains.push(format!("{label} {:.2}x", one / two));
        }
    };
    for result in results {
        if result.cache == DIRECT_MAPPED {
            gain("memory floor".to_owned(), result, FLOOR, FLOOR_TWO_THREADS);
            gain(
                "CPU check".to_owned(),
                result,
                CPU_CHECK,
                CPU_CHECK_TWO_THREADS,
            );
        }
        let label = format!("sender ({})", result.cache);
        gain(label, result, BATCH_TWO_SHARDS, BATCH_TWO_THREADS);
    }
    println!("\ntwo threads ÷ one: {}", gains.join(", "));
}

/// Prints the table of one cache setup.
fn print_table(result: &SetupResult) {
    println!("\n{} cache", result.cache);
    println!(
        "  {:<30} {:>8} {:>12} {:>11} {:>12}  cache misses",
        "method", "ns/page", "÷ QEMU word", "÷ QEMU lib", "record bytes"
    );
    let ratio = |r: f64| format!("{r:.2}x");
    let count = |c: Option<u64>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
    for m in &result.methods {
        println!(
            "  {:<30} {:>8.0} {:>12} {:>11} {:>12}  {}",
            m.method,
            m.ns_per_page,
            ratio(m.speedup_vs_qemu_word),
            ratio(m.speedup_vs_qemu_library),
            m.record_bytes,
            count(m.cache_misses)
        );
    }
}
