//! `xbzrle bench`: the hardware benchmark. For every kernel the CPU supports and every
//! page pattern (plus real snapshot pages), it measures encode and decode speed and puts it
//! next to the word-at-a-time kernel (QEMU's scalar method), QEMU's AVX-512 encoder method,
//! QEMU's decoder method and memcmp / memcpy of the same pages, all measured in the same
//! run: the ratios are what compares across machines.
//!
//! Method: each case runs batches of page operations cycling over its page pairs; the
//! repetitions of all cases are interleaved (so a noisy moment hits every case alike) and
//! the median batch gives the time per page.

mod pipeline;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use xbzrle::{Encoded, Kernel};
use xbzrle_benches::qemu_avx512;
use xbzrle_benches::run_by_run_decode;
use xbzrle_workloads::patterns::{PAGE_SIZE, PageSet, Pattern};

/// Arguments of `xbzrle bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  xbzrle bench --quick
  xbzrle bench --snapshots guest-ram/kvstore --json bench.json
  xbzrle bench --pipeline --ram 512M --dirty 128M --cache-size 256M")]
pub(crate) struct BenchArgs {
    /// Short run (about 10 s): fewer repetitions and shorter batches.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to FILE (for comparing machines).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Replace the --json file if it exists.
    #[arg(short, long)]
    force: bool,
    /// Add real page pairs: the pages that changed between the first two snapshots in DIR
    /// (`snap-NN.raw`, or the zstd delta chain of the recorded guest-RAM snapshots).
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
    /// Milliseconds of each timed batch [default: 20 with --quick, else 60].
    #[arg(long, value_name = "MS")]
    batch_ms: Option<u64>,
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
    if let Some(path) = &args.json {
        crate::files::check_output_path(path, "--json", args.force)?;
    }
    if args.pipeline {
        return pipeline::run(pipeline::PipelineArgs {
            ram: args.ram,
            dirty: args.dirty,
            cache: args.cache_size,
            passes: args.passes,
            json: args.json,
            force: args.force,
        });
    }
    if args.working_set == 0 || args.snapshot_pages == 0 {
        bail!("--working-set and --snapshot-pages must be at least 1");
    }
    let repetitions = args.repetitions.unwrap_or(if args.quick { 7 } else { 11 });
    if repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let batch_ms = args.batch_ms.unwrap_or(if args.quick { 20 } else { 60 });
    if batch_ms == 0 {
        bail!("--batch-ms must be at least 1");
    }
    let batch = Duration::from_millis(batch_ms);

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

    let settings = Settings {
        page_size: PAGE_SIZE,
        working_set_pairs: args.working_set,
        repetitions,
        batch_ms,
        quick: args.quick,
        statistic: "median ns per page over repetitions",
    };
    let report = Report::new(&workloads, &summaries, &cases, &medians, baseline, settings);
    print!("{}", report.table());
    if let Some(path) = &args.json {
        crate::files::write_json(path, args.force, &report)?;
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
    /// QEMU's AVX-512 encoder method (`xbzrle_benches::qemu_avx512`), where the CPU has
    /// AVX-512BW: the baseline of the best kernel.
    QemuAvx512Encode,
    /// `xbzrle::decode_partial` in place (QEMU's single pass).
    Decode,
    /// QEMU's decoder method: one `memcpy` per changed run
    /// (`xbzrle_benches::run_by_run_decode`), the baseline of the decoder.
    QemuDecode,
    /// `==` of a page with an equal copy: the floor for encoding identical pages.
    Memcmp,
    /// `copy_from_slice` of a page: the floor for decoding.
    Memcpy,
}

impl Operation {
    /// `encode`, `qemu-avx512-encode`, `decode`, `qemu-decode`, `memcmp` or `memcpy`.
    fn name(self) -> &'static str {
        match self {
            Operation::Encode(_) => "encode",
            Operation::QemuAvx512Encode => "qemu-avx512-encode",
            Operation::Decode => "decode",
            Operation::QemuDecode => "qemu-decode",
            Operation::Memcmp => "memcmp",
            Operation::Memcpy => "memcpy",
        }
    }

    /// The kernel of an encode.
    fn kernel(self) -> Option<Kernel> {
        match self {
            Operation::Encode(kernel) => Some(kernel),
            _ => None,
        }
    }
}

/// In the JSON: `"operation": NAME, "kernel": KERNEL or null`.
impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("Operation", 2)?;
        fields.serialize_field("operation", self.name())?;
        fields.serialize_field("kernel", &self.kernel().map(Kernel::name))?;
        fields.end()
    }
}

/// One timed case: `run(n)` performs `n` page operations.
struct Case<'a> {
    workload: usize,
    operation: Operation,
    run: Box<dyn FnMut(u64) + 'a>,
}

/// The case of `decode` applying every pair's delta in place to its old page (a copy of
/// `set`); a generic `decode`, so that the call is as direct as in a caller's code.
fn decode_case<'a>(
    index: usize,
    set: &'a PageSet,
    deltas: &[Vec<u8>],
    operation: Operation,
    decode: impl Fn(&[u8], &mut [u8]) -> Option<usize> + 'a,
) -> Case<'a> {
    let (mut pages, deltas) = (set.clone(), deltas.to_vec());
    Case {
        workload: index,
        operation,
        run: Box::new(move |n| {
            let pages = pages.old_pages_mut();
            cycle(set, n, |i| {
                let page = &mut pages[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
                black_box(decode(black_box(&deltas[i]), page));
            })
        }),
    }
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
    let mut out = vec![0u8; PAGE_SIZE];
    if qemu_avx512::encode(set.old_page(0), set.new_page(0), &mut out).is_some() {
        cases.push(Case {
            workload: index,
            operation: Operation::QemuAvx512Encode,
            run: Box::new(move |n| {
                cycle(set, n, |i| {
                    let result = qemu_avx512::encode(
                        black_box(set.old_page(i)),
                        black_box(set.new_page(i)),
                        &mut out,
                    );
                    black_box(result);
                })
            }),
        });
    }
    if let Some(deltas) = &summary.deltas {
        cases.push(decode_case(
            index,
            set,
            deltas,
            Operation::Decode,
            |delta, page| xbzrle::decode_partial(delta, page).ok(),
        ));
        cases.push(decode_case(
            index,
            set,
            deltas,
            Operation::QemuDecode,
            run_by_run_decode,
        ));
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
#[derive(Debug, Serialize)]
struct CpuInfo {
    /// As `/proc/cpuinfo` names it.
    model: String,
    /// `x86_64`, `aarch64`, ...
    arch: &'static str,
    /// The SIMD features relevant to the kernels that this CPU has.
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
        arch: std::env::consts::ARCH,
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

/// Everything `xbzrle bench` measured: the table it prints and the JSON of `--json`.
#[derive(Debug, Serialize)]
struct Report {
    /// [`crate::JSON_SCHEMA_VERSION`].
    schema_version: u32,
    /// The machine.
    cpu: CpuInfo,
    /// Names of the kernels this CPU runs.
    kernels_available: Vec<&'static str>,
    /// The kernel the free functions use.
    best_kernel: &'static str,
    /// The kernel the encoders' speed-ups are relative to.
    baseline_kernel: &'static str,
    /// How the run measured.
    settings: Settings,
    /// What the time ratios are relative to.
    floors: Floors,
    /// One entry per workload, in column order.
    workloads: Vec<WorkloadResult>,
}

/// How a run measured.
#[derive(Debug, Serialize)]
struct Settings {
    /// Bytes per page.
    page_size: usize,
    /// Page pairs each synthetic case cycles over.
    working_set_pairs: usize,
    /// Timed rounds of every case.
    repetitions: usize,
    /// Milliseconds per timed batch.
    batch_ms: u64,
    /// Whether `--quick` was given.
    quick: bool,
    /// What a time is.
    statistic: &'static str,
}

/// The operations the time ratios are relative to.
#[derive(Debug, Serialize)]
struct Floors {
    /// For encoders.
    encode: &'static str,
    /// For the decoder.
    decode: &'static str,
}

/// The floors of every run.
const FLOORS: Floors = Floors {
    encode: "memcmp: == of the page with an equal copy",
    decode: "memcpy: copy_from_slice of the page",
};

/// One workload's results.
#[derive(Debug, Serialize)]
struct WorkloadResult {
    /// Pattern name, or the snapshot folder's name.
    name: String,
    /// One line for people.
    description: String,
    /// Page pairs.
    pairs: usize,
    /// Mean delta bytes per pair (overflowing pairs count a full page).
    mean_delta_bytes: f64,
    /// Pairs whose delta overflows a page.
    overflows: usize,
    /// Identical pairs.
    unchanged: usize,
    /// One row per case, in measuring order.
    results: Vec<Row>,
}

/// One case's result.
#[derive(Debug, Serialize)]
struct Row {
    /// What was timed (`operation` and `kernel` in the JSON).
    #[serde(flatten)]
    operation: Operation,
    /// Median nanoseconds per page.
    ns_per_page: f64,
    /// Page bytes per nanosecond.
    gb_per_s: f64,
    /// Encoders: the baseline kernel's time over this one's.
    speedup_vs_baseline_kernel: Option<f64>,
    /// Encoders and decoder: this time over the floor's.
    time_vs_floor: Option<f64>,
}

impl Report {
    /// The report of `cases` measured at `medians` ns per page.
    fn new(
        workloads: &[Workload],
        summaries: &[Summary],
        cases: &[Case<'_>],
        medians: &[f64],
        baseline: Kernel,
        settings: Settings,
    ) -> Self {
        let workloads = workloads
            .iter()
            .zip(summaries)
            .enumerate()
            .map(|(index, (workload, summary))| {
                let timed: Vec<(Operation, f64)> = cases
                    .iter()
                    .zip(medians)
                    .filter(|(case, _)| case.workload == index)
                    .map(|(case, &ns)| (case.operation, ns))
                    .collect();
                WorkloadResult {
                    name: workload.name.clone(),
                    description: workload.description.clone(),
                    pairs: workload.set.len(),
                    mean_delta_bytes: summary.mean_delta,
                    overflows: summary.overflows,
                    unchanged: summary.unchanged,
                    results: rows(&timed, baseline),
                }
            })
            .collect();
        Report {
            schema_version: crate::JSON_SCHEMA_VERSION,
            cpu: cpu_info(),
            kernels_available: Kernel::available().map(Kernel::name).collect(),
            best_kernel: Kernel::best().name(),
            baseline_kernel: baseline.name(),
            settings,
            floors: FLOORS,
            workloads,
        }
    }

    /// The table: a row per kernel and floor, a column per workload.
    fn table(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out += &text;
            out.push('\n');
        };
        let settings = &self.settings;
        line(format!("CPU: {} ({})", self.cpu.model, self.cpu.arch));
        line(format!("features: {}", self.cpu.features.join(" ")));
        line(format!(
            "kernels: {} (best: {}); {}-byte pages, {} synthetic pair(s) per case, median of {} repetitions",
            self.kernels_available.join(" "),
            self.best_kernel,
            settings.page_size,
            settings.working_set_pairs,
            settings.repetitions
        ));
        line(format!(
            "cells: GB/s, and for encoders (xN) = speedup over the {} kernel; ratios: time / floor \
             time; vs: QEMU's method's time / ours",
            self.baseline_kernel
        ));
        line(String::new());
        let mut header = format!("{:<22}", "");
        for workload in &self.workloads {
            header += &format!(" {:>13}", workload.name);
        }
        line(header);
        let mut row = |label: String, cell: &dyn Fn(&WorkloadResult) -> Option<String>| {
            let mut text = format!("{label:<22}");
            for workload in &self.workloads {
                text += &format!(" {:>13}", cell(workload).unwrap_or_else(|| "-".to_owned()));
            }
            line(text);
        };
        let best = Kernel::best();
        for kernel in Kernel::available() {
            row(format!("encode {kernel}"), &|w| {
                let timed = w.find(Operation::Encode(kernel))?;
                let speedup = timed
                    .speedup_vs_baseline_kernel
                    .map_or_else(String::new, |s| format!(" x{s:.2}"));
                Some(format!("{:.2}{speedup}", timed.gb_per_s))
            });
        }
        row("encode qemu-avx512".to_owned(), &|w| {
            let timed = w.find(Operation::QemuAvx512Encode)?;
            let speedup = timed
                .speedup_vs_baseline_kernel
                .map_or_else(String::new, |s| format!(" x{s:.2}"));
            Some(format!("{:.2}{speedup}", timed.gb_per_s))
        });
        // How many times faster than QEMU's method: its time over ours.
        let versus = |ours, qemu| {
            move |w: &WorkloadResult| {
                let ratio = w.find(qemu)?.ns_per_page / w.find(ours)?.ns_per_page;
                Some(format!("{ratio:.2}"))
            }
        };
        row(
            format!("{best} vs qemu-avx512"),
            &versus(Operation::Encode(best), Operation::QemuAvx512Encode),
        );
        let speed = |operation| {
            move |w: &WorkloadResult| w.find(operation).map(|r| format!("{:.2}", r.gb_per_s))
        };
        let floor = |operation| {
            move |w: &WorkloadResult| {
                let ratio = w.find(operation)?.time_vs_floor?;
                Some(format!("{ratio:.2}"))
            }
        };
        row("memcmp (floor)".to_owned(), &speed(Operation::Memcmp));
        row(format!("{best} / memcmp"), &floor(Operation::Encode(best)));
        row("decode".to_owned(), &speed(Operation::Decode));
        row(
            "decode qemu method".to_owned(),
            &speed(Operation::QemuDecode),
        );
        row(
            "decode vs qemu method".to_owned(),
            &versus(Operation::Decode, Operation::QemuDecode),
        );
        row("memcpy (floor)".to_owned(), &speed(Operation::Memcpy));
        row("decode / memcpy".to_owned(), &floor(Operation::Decode));
        row("mean delta bytes".to_owned(), &|w| {
            Some(format!("{:.0}", w.mean_delta_bytes))
        });
        out
    }
}

impl WorkloadResult {
    /// The row of `operation`, if it was timed.
    fn find(&self, operation: Operation) -> Option<&Row> {
        self.results.iter().find(|row| row.operation == operation)
    }
}

/// The rows of one workload's `timed` cases: speed-ups over the `baseline` kernel's encode,
/// times over the floors (memcmp for encoders, memcpy for the decoder).
fn rows(timed: &[(Operation, f64)], baseline: Kernel) -> Vec<Row> {
    let ns = |operation: Operation| {
        timed
            .iter()
            .find(|(o, _)| *o == operation)
            .map(|&(_, ns)| ns)
    };
    let memcmp = ns(Operation::Memcmp);
    let memcpy = ns(Operation::Memcpy);
    let baseline = ns(Operation::Encode(baseline));
    timed
        .iter()
        .map(|&(operation, ns)| {
            let (speedup, floor) = match operation {
                Operation::Encode(_) | Operation::QemuAvx512Encode => {
                    (baseline.map(|b| b / ns), memcmp.map(|f| ns / f))
                }
                Operation::Decode | Operation::QemuDecode => (None, memcpy.map(|f| ns / f)),
                Operation::Memcmp | Operation::Memcpy => (None, None),
            };
            Row {
                operation,
                ns_per_page: ns,
                gb_per_s: gb_per_s(ns),
                speedup_vs_baseline_kernel: speedup,
                time_vs_floor: floor,
            }
        })
        .collect()
}

/// Page bytes per nanosecond = GB/s (10^9 bytes).
fn gb_per_s(ns: f64) -> f64 {
    PAGE_SIZE as f64 / ns
}
