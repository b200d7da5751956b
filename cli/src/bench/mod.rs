//! `xbzrle bench`: the hardware benchmark. For every kernel the CPU supports and every
//! page pattern (plus real snapshot pages), it measures encode and decode speed and puts it
//! next to the word-at-a-time kernel and to memcmp / memcpy of the same pages, all measured
//! in the same run: the ratios are what compares across machines.
//!
//! Method: each case runs batches of page operations cycling over its page pairs; the
//! repetitions of all cases are interleaved (so a noisy moment hits every case alike) and
//! the median batch gives the time per page.

mod pipeline;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xbzrle::{Encoded, Kernel};
use xbzrle_workloads::patterns::{PAGE_SIZE, PageSet, Pattern};

/// Arguments of `xbzrle bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  xbzrle bench --quick
  xbzrle bench --snapshots ../shared/guest-ram/kvstore --json bench.json
  xbzrle bench --pipeline --ram 512M --dirty 128M --cache-size 256M")]
pub(crate) struct BenchArgs {
    /// Short run (about 10 s): fewer repetitions and shorter batches.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to FILE (for comparing machines).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Add real page pairs: the pages that changed between the first two snapshots in DIR
    /// (`snap-NN.raw` or the compressed form of `shared/guest-ram/*`).
    #[arg(long, value_name = "DIR")]
    snapshots: Option<PathBuf>,
    /// Page pairs each synthetic case cycles over: 1 is one hot pair (in L1); 1024 is
    /// 2 x 4 MiB, beyond L2.
    #[arg(long, default_value_t = 1, value_name = "PAIRS")]
    working_set: usize,
    /// Most real page pairs taken from the snapshots, spread over guest RAM.
    #[arg(long, default_value_t = 1024, value_name = "PAIRS")]
    snapshot_pages: usize,
    /// Repetitions of every case (the median is reported) [default: 7 with --quick, else 11].
    #[arg(long, value_name = "N")]
    repetitions: Option<usize>,
    /// Instead of the kernels: the whole sender at guest-RAM scale against QEMU's method
    /// (cache lookup, encode, cache refresh and record for every dirty page of a pass).
    #[arg(long)]
    pipeline: bool,
    /// With --pipeline: guest RAM size.
    #[arg(long, default_value = "512M", value_name = "SIZE", value_parser = crate::units::parse_size)]
    ram: u64,
    /// With --pipeline: bytes of RAM dirtied (and saved) per pass.
    #[arg(long, default_value = "128M", value_name = "SIZE", value_parser = crate::units::parse_size)]
    dirty: u64,
    /// With --pipeline: XBZRLE cache size.
    #[arg(long, default_value = "256M", value_name = "SIZE", value_parser = crate::units::parse_size)]
    cache_size: u64,
    /// With --pipeline: measured passes (the median is reported).
    #[arg(long, default_value_t = 9, value_name = "N")]
    passes: usize,
}

/// Seed of the synthetic page sets.
const SEED: u64 = 0x5eed;

/// Name of the kernel the others are compared with (QEMU's word-at-a-time encoder).
const BASELINE_KERNEL: &str = "word";

/// Runs the benchmark and prints the table (and writes the JSON if asked).
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.pipeline {
        return pipeline::run(pipeline::PipelineArgs {
            ram: args.ram,
            dirty: args.dirty,
            cache: args.cache_size,
            passes: args.passes,
        });
    }
    if args.working_set == 0 || args.snapshot_pages == 0 {
        bail!("--working-set and --snapshot-pages must be at least 1");
    }
    let repetitions = args.repetitions.unwrap_or(if args.quick { 7 } else { 11 });
    if repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let batch = Duration::from_millis(if args.quick { 20 } else { 60 });
    if let Some(path) = &args.json {
        crate::files::check_output_path(path, "--json")?;
    }

    let mut workloads: Vec<Workload> = Pattern::ALL
        .iter()
        .map(|&pattern| Workload {
            name: pattern.name().to_owned(),
            description: pattern.description().to_owned(),
            set: PageSet::synthetic(pattern, PAGE_SIZE, args.working_set, SEED),
        })
        .collect();
    if let Some(dir) = &args.snapshots {
        let started = Instant::now();
        let set = PageSet::from_snapshots(dir, PAGE_SIZE, args.snapshot_pages)
            .with_context(|| format!("reading snapshots in {}", dir.display()))?;
        if set.is_empty() {
            bail!("{}: the first two snapshots are identical", dir.display());
        }
        let name = dir.file_name().map_or_else(
            || "snapshots".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        eprintln!(
            "loaded {} changed page pairs from {} in {:.1} s",
            set.len(),
            dir.display(),
            started.elapsed().as_secs_f64()
        );
        workloads.push(Workload {
            description: format!("real changed pages, snapshots 0 -> 1 of {name}"),
            name,
            set,
        });
    }

    let kernels: Vec<Kernel> = Kernel::available().collect();
    let baseline = Kernel::from_name(BASELINE_KERNEL)
        .filter(|k| k.is_available())
        .unwrap_or(Kernel::Reference);
    let summaries = workloads
        .iter()
        .map(|w| summarize(w, &kernels))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut cases = Vec::new();
    for (index, (workload, summary)) in workloads.iter().zip(&summaries).enumerate() {
        add_cases(&mut cases, index, workload, summary, &kernels);
    }
    eprintln!(
        "measuring {} cases x {repetitions} repetitions of {} ms...",
        cases.len(),
        batch.as_millis()
    );
    let medians = measure(&mut cases, repetitions, batch);

    let cpu = cpu_info();
    let report = Report {
        workloads: &workloads,
        summaries: &summaries,
        cases: &cases,
        medians: &medians,
        baseline,
    };
    print_table(&report, &cpu, &args, repetitions);
    if let Some(path) = &args.json {
        let value = report.to_json(&cpu, &args, repetitions, batch);
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A named set of page pairs.
struct Workload {
    name: String,
    description: String,
    set: PageSet,
}

/// What the encoders produce on a workload (checked identical for every kernel), and the
/// deltas the decoder is timed on.
struct Summary {
    /// Mean delta bytes per pair (overflowing pairs count a full page).
    mean_delta: f64,
    /// Pairs that overflow a page-sized output buffer.
    overflows: usize,
    /// Pairs that are identical.
    unchanged: usize,
    /// The delta of every pair, if every pair has one (else decode is not timed).
    deltas: Option<Vec<Vec<u8>>>,
}

/// Encodes every pair with every kernel, fails if any kernel's output differs from the
/// reference kernel's, and checks that the decoder rebuilds every new page.
fn summarize(workload: &Workload, kernels: &[Kernel]) -> anyhow::Result<Summary> {
    let set = &workload.set;
    let mut out = vec![0u8; PAGE_SIZE];
    let mut expected = vec![0u8; PAGE_SIZE];
    let mut total = 0usize;
    let (mut overflows, mut unchanged) = (0, 0);
    let mut deltas = Some(Vec::with_capacity(set.len()));
    for i in 0..set.len() {
        let (old, new) = (set.old_page(i), set.new_page(i));
        let reference = Kernel::Reference.encode(old, new, &mut expected)?;
        for &kernel in kernels {
            let got = kernel.encode(old, new, &mut out)?;
            let same = match (got, reference) {
                (Encoded::Delta(a), Encoded::Delta(b)) => out[..a] == expected[..b],
                (a, b) => a == b,
            };
            if !same {
                bail!(
                    "kernel {kernel} disagrees with the reference on {} pair {i}: {got:?} vs {reference:?}",
                    workload.name
                );
            }
        }
        match reference {
            Encoded::Delta(len) => {
                total += len;
                let mut page = old.to_vec();
                xbzrle::decode(&expected[..len], &mut page)
                    .with_context(|| format!("decoding {} pair {i}", workload.name))?;
                if page != new {
                    bail!(
                        "decoding {} pair {i} did not rebuild the page",
                        workload.name
                    );
                }
                if let Some(deltas) = &mut deltas {
                    deltas.push(expected[..len].to_vec());
                }
            }
            Encoded::Unchanged => {
                unchanged += 1;
                deltas = None;
            }
            Encoded::Overflow => {
                overflows += 1;
                total += PAGE_SIZE;
                deltas = None;
            }
        }
    }
    Ok(Summary {
        mean_delta: total as f64 / set.len() as f64,
        overflows,
        unchanged,
        deltas,
    })
}

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// Canonical encode with this kernel.
    Encode(Kernel),
    /// `xbzrle::decode` in place.
    Decode,
    /// `==` of a page with an equal copy: the floor for encoding identical pages.
    Memcmp,
    /// `copy_from_slice` of a page: the floor for decoding.
    Memcpy,
}

/// One timed case: `run(n)` performs `n` page operations.
struct Case<'a> {
    workload: usize,
    operation: Operation,
    run: Box<dyn FnMut(u64) + 'a>,
}

/// The encode (per kernel), decode and floor cases of one workload.
fn add_cases<'a>(
    cases: &mut Vec<Case<'a>>,
    index: usize,
    workload: &'a Workload,
    summary: &Summary,
    kernels: &[Kernel],
) {
    let set = &workload.set;
    for &kernel in kernels {
        let mut out = vec![0u8; PAGE_SIZE];
        cases.push(Case {
            workload: index,
            operation: Operation::Encode(kernel),
            run: Box::new(move |n| {
                cycle(set, n, |i| {
                    let result = kernel.encode(
                        black_box(set.old_page(i)),
                        black_box(set.new_page(i)),
                        &mut out,
                    );
                    black_box(result).ok();
                })
            }),
        });
    }
    if let Some(deltas) = summary.deltas.clone() {
        let mut pages = set.clone();
        cases.push(Case {
            workload: index,
            operation: Operation::Decode,
            run: Box::new(move |n| {
                let pages = pages.old_pages_mut();
                cycle(set, n, |i| {
                    let page = &mut pages[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
                    black_box(xbzrle::decode(black_box(&deltas[i]), page)).ok();
                })
            }),
        });
    }
    // An equal copy of the new pages, in its own buffer like the old pages.
    let mut copy = set.clone();
    copy.old_pages_mut().copy_from_slice(set.new_pages());
    cases.push(Case {
        workload: index,
        operation: Operation::Memcmp,
        run: Box::new(move |n| {
            cycle(set, n, |i| {
                black_box(black_box(copy.old_page(i)) == black_box(set.new_page(i)));
            })
        }),
    });
    let mut destination = set.clone();
    cases.push(Case {
        workload: index,
        operation: Operation::Memcpy,
        run: Box::new(move |n| {
            let destination = destination.old_pages_mut();
            cycle(set, n, |i| {
                destination[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]
                    .copy_from_slice(black_box(set.new_page(i)));
            })
        }),
    });
}

/// Calls `op` `n` times with page indices cycling over the set.
#[inline(always)]
fn cycle(set: &PageSet, n: u64, mut op: impl FnMut(usize)) {
    let mut i = 0;
    for _ in 0..n {
        op(i);
        i += 1;
        if i == set.len() {
            i = 0;
        }
    }
}

/// Calibrates every case to `batch`, then times `repetitions` interleaved rounds; returns
/// the median nanoseconds per page operation of each case.
fn measure(cases: &mut [Case<'_>], repetitions: usize, batch: Duration) -> Vec<f64> {
    let iterations: Vec<u64> = cases
        .iter_mut()
        .map(|case| {
            let mut n = 1u64;
            loop {
                let started = Instant::now();
                (case.run)(n);
                let elapsed = started.elapsed();
                if elapsed >= batch / 8 || n >= 1 << 40 {
                    let per_op = elapsed.as_secs_f64() / n as f64;
                    break ((batch.as_secs_f64() / per_op.max(1e-12)) as u64).max(1);
                }
                n *= 2;
            }
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(repetitions); cases.len()];
    for _ in 0..repetitions {
        for ((case, &n), times) in cases.iter_mut().zip(&iterations).zip(&mut samples) {
            let started = Instant::now();
            (case.run)(n);
            times.push(started.elapsed().as_secs_f64() * 1e9 / n as f64);
        }
    }
    samples.into_iter().map(median).collect()
}

/// Median of a non-empty sample.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// CPU model and the features the kernels care about.
struct CpuInfo {
    model: String,
    features: Vec<&'static str>,
}

fn cpu_info() -> CpuInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = ["model name", "Model", "Hardware", "cpu model"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key).then(|| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    CpuInfo {
        model,
        features: detected_features(),
    }
}

/// The SIMD features relevant to the kernels that this CPU has.
fn detected_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut features = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($name:tt),*) => {
                $(if std::is_x86_feature_detected!($name) { features.push($name); })*
            };
        }
        detect!(
            "sse2",
            "ssse3",
            "sse4.1",
            "sse4.2",
            "popcnt",
            "bmi1",
            "bmi2",
            "avx",
            "avx2",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vbmi2"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            features.push("neon");
        }
    }
    features
}

/// Everything measured, for the table and the JSON.
struct Report<'a> {
    workloads: &'a [Workload],
    summaries: &'a [Summary],
    cases: &'a [Case<'a>],
    medians: &'a [f64],
    baseline: Kernel,
}

impl Report<'_> {
    /// Median ns per page of `operation` on workload `index`.
    fn ns(&self, index: usize, operation: Operation) -> Option<f64> {
        self.cases
            .iter()
            .zip(self.medians)
            .find(|(case, _)| case.workload == index && case.operation == operation)
            .map(|(_, &ns)| ns)
    }

    /// Rows of one workload: (operation, ns, speedup vs baseline kernel, time / floor).
    fn rows(&self, index: usize) -> Vec<Row> {
        let memcmp = self.ns(index, Operation::Memcmp);
        let memcpy = self.ns(index, Operation::Memcpy);
        let baseline = self.ns(index, Operation::Encode(self.baseline));
        self.cases
            .iter()
            .zip(self.medians)
            .filter(|(case, _)| case.workload == index)
            .map(|(case, &ns)| {
                let (speedup, floor) = match case.operation {
                    Operation::Encode(_) => (baseline.map(|b| b / ns), memcmp.map(|f| ns / f)),
                    Operation::Decode => (None, memcpy.map(|f| ns / f)),
                    Operation::Memcmp | Operation::Memcpy => (None, None),
                };
                Row {
                    operation: case.operation,
                    ns,
                    speedup,
                    floor,
                }
            })
            .collect()
    }

    fn to_json(
        &self,
        cpu: &CpuInfo,
        args: &BenchArgs,
        repetitions: usize,
        batch: Duration,
    ) -> Value {
        let workloads: Vec<Value> = self
            .workloads
            .iter()
            .zip(self.summaries)
            .enumerate()
            .map(|(index, (workload, summary))| {
                let rows: Vec<Value> = self
                    .rows(index)
                    .iter()
                    .map(|row| {
                        json!({
                            "operation": row.operation_name(),
                            "kernel": row.kernel_name(),
                            "ns_per_page": row.ns,
                            "gb_per_s": gb_per_s(row.ns),
                            "speedup_vs_baseline_kernel": row.speedup,
                            "time_vs_floor": row.floor,
                        })
                    })
                    .collect();
                json!({
                    "name": workload.name,
                    "description": workload.description,
                    "pairs": workload.set.len(),
                    "mean_delta_bytes": summary.mean_delta,
                    "overflows": summary.overflows,
                    "unchanged": summary.unchanged,
                    "results": rows,
                })
            })
            .collect();
        json!({
            "schema_version": crate::JSON_SCHEMA_VERSION,
            "cpu": { "model": cpu.model, "arch": std::env::consts::ARCH, "features": cpu.features },
            "kernels_available": Kernel::available().map(Kernel::name).collect::<Vec<_>>(),
            "best_kernel": Kernel::best().name(),
            "baseline_kernel": self.baseline.name(),
            "settings": {
                "page_size": PAGE_SIZE,
                "working_set_pairs": args.working_set,
                "repetitions": repetitions,
                "batch_ms": batch.as_millis() as u64,
                "quick": args.quick,
                "statistic": "median ns per page over repetitions",
            },
            "floors": {
                "encode": "memcmp: == of the page with an equal copy",
                "decode": "memcpy: copy_from_slice of the page",
            },
            "workloads": workloads,
        })
    }
}

/// One line of the table.
struct Row {
    operation: Operation,
    ns: f64,
    speedup: Option<f64>,
    floor: Option<f64>,
}

impl Row {
    fn operation_name(&self) -> &'static str {
        match self.operation {
            Operation::Encode(_) => "encode",
            Operation::Decode => "decode",
            Operation::Memcmp => "memcmp",
            Operation::Memcpy => "memcpy",
        }
    }

    fn kernel_name(&self) -> Option<&'static str> {
        match self.operation {
            Operation::Encode(kernel) => Some(kernel.name()),
            _ => None,
        }
    }
}

/// Page bytes per nanosecond = GB/s (10^9 bytes).
fn gb_per_s(ns: f64) -> f64 {
    PAGE_SIZE as f64 / ns
}

/// Prints one matrix: a row per kernel and floor, a column per workload.
fn print_table(report: &Report<'_>, cpu: &CpuInfo, args: &BenchArgs, repetitions: usize) {
    println!("CPU: {} ({})", cpu.model, std::env::consts::ARCH);
    println!("features: {}", cpu.features.join(" "));
    println!(
        "kernels: {} (best: {}); {PAGE_SIZE}-byte pages, {} synthetic pair(s) per case, median of {repetitions} repetitions",
        Kernel::available()
            .map(Kernel::name)
            .collect::<Vec<_>>()
            .join(" "),
        Kernel::best(),
        args.working_set
    );
    println!(
        "cells: GB/s, and for encoders (xN) = speedup over the {} kernel; ratios: time / floor time",
        report.baseline
    );
    println!();
    let columns = report.workloads.len();
    let mut header = format!("{:<22}", "");
    for workload in report.workloads {
        header += &format!(" {:>13}", workload.name);
    }
    println!("{header}");
    let rows: Vec<Vec<Row>> = (0..columns).map(|index| report.rows(index)).collect();
    let find = |index: usize, operation: Operation| {
        rows[index].iter().find(|row| row.operation == operation)
    };
    let line = |label: String, cell: &dyn Fn(usize) -> Option<String>| {
        let mut text = format!("{label:<22}");
        for index in 0..columns {
            text += &format!(" {:>13}", cell(index).unwrap_or_else(|| "-".to_owned()));
        }
        println!("{text}");
    };
    for kernel in Kernel::available() {
        line(format!("encode {kernel}"), &|index| {
            let row = find(index, Operation::Encode(kernel))?;
            let speedup = row
                .speedup
                .map_or_else(String::new, |s| format!(" x{s:.2}"));
            Some(format!("{:.2}{speedup}", gb_per_s(row.ns)))
        });
    }
    line("memcmp (floor)".to_owned(), &|index| {
        find(index, Operation::Memcmp).map(|row| format!("{:.2}", gb_per_s(row.ns)))
    });
    line(format!("{} / memcmp", Kernel::best()), &|index| {
        let row = find(index, Operation::Encode(Kernel::best()))?;
        row.floor.map(|f| format!("{f:.2}"))
    });
    line("decode".to_owned(), &|index| {
        find(index, Operation::Decode).map(|row| format!("{:.2}", gb_per_s(row.ns)))
    });
    line("memcpy (floor)".to_owned(), &|index| {
        find(index, Operation::Memcpy).map(|row| format!("{:.2}", gb_per_s(row.ns)))
    });
    line("decode / memcpy".to_owned(), &|index| {
        find(index, Operation::Decode)?
            .floor
            .map(|f| format!("{f:.2}"))
    });
    line("mean delta bytes".to_owned(), &|index| {
        let summary = &report.summaries[index];
        Some(format!("{:.0}", summary.mean_delta))
    });
}
