//! Criterion benchmarks of the xbzrle codec: encode per kernel × pattern (and QEMU's AVX-512
//! encoder method, `qemu-avx512`, where the CPU has AVX-512BW), decode against a run-by-run
//! decoder, `encode_update` against copy + encode + copy, and memcmp / memcpy of
//! the same pages as floors.
//!
//! `cache-alignment` times `encode_update` with the cached copy on and off a page boundary.
//!
//! Every other group runs twice: `hot` on one page pair (in L1), `ws` cycling over a working set
//! of [`WORKING_SET`] pairs (8 MiB, larger than L2). Throughput is page bytes per second.
//! Real page pairs (the changed pages between the first two guest-RAM snapshots of the
//! recorded `kvstore` guest, `docs/data.md`) join the `ws` groups when the snapshots are
//! found: `$XBZRLE_SNAPSHOTS`, else their default location next to the repository.
//!
//! Run: `cargo bench -p xbzrle-benches` (a few minutes); filter with e.g.
//! `cargo bench -p xbzrle-benches -- encode-hot/identical`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use xbzrle::{Encoded, Kernel};
use xbzrle_benches::{copy_encode_copy, qemu_avx512, run_by_run_decode};
use xbzrle_workloads::patterns::{PAGE_SIZE, PageSet, Pattern};

/// Page pairs cycled by the `ws` groups: 2 × 4 MiB.
const WORKING_SET: usize = 1024;

/// Seed of every synthetic set.
const SEED: u64 = 0x5eed;

/// A named set of page pairs.
struct Workload {
    name: String,
    set: PageSet,
}

/// Where the real snapshots are looked for.
fn snapshot_dir() -> PathBuf {
    std::env::var_os("XBZRLE_SNAPSHOTS").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/guest-ram/kvstore"
            ))
        },
        PathBuf::from,
    )
}

/// The synthetic patterns with `pages` pairs each, plus the real pairs when `real` is given.
fn workloads(pages: usize, real: Option<&PageSet>) -> Vec<Workload> {
    let mut all: Vec<Workload> = Pattern::ALL
        .iter()
        .map(|&pattern| Workload {
            name: pattern.name().to_owned(),
            set: PageSet::synthetic(pattern, PAGE_SIZE, pages, SEED),
        })
        .collect();
    if let Some(set) = real {
        all.push(Workload {
            name: "kvstore".to_owned(),
            set: set.clone(),
        });
    }
    all
}

/// Short measurements, so that the suite finishes in minutes; 30 samples of 2 s in all
/// per benchmark, so that the median rides out the bursts of a shared machine.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, page_size: usize) {
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .throughput(Throughput::Bytes(page_size as u64));
}

/// Advances a cyclic page index; returns true when it wrapped to 0.
fn next_page(index: &mut usize, len: usize) -> bool {
    *index += 1;
    if *index == len {
        *index = 0;
        true
    } else {
        false
    }
}

/// Encode per kernel × workload, and memcmp of identical pages (the floor).
fn encode(c: &mut Criterion, label: &str, workloads: &[Workload]) {
    let mut group = c.benchmark_group(format!("encode-{label}"));
    configure(&mut group, PAGE_SIZE);
    let mut out = vec![0u8; PAGE_SIZE];
    for workload in workloads {
        let set = &workload.set;
        for kernel in Kernel::available() {
            group.bench_function(format!("{}/{kernel}", workload.name), |b| {
                let mut i = 0;
                b.iter(|| {
                    let encoded = kernel.encode(set.old_page(i), set.new_page(i), &mut out);
                    next_page(&mut i, set.len());
                    encoded
                })
            });
        }
        // QEMU's AVX-512 encoder method, on CPUs that can run it.
        if qemu_avx512::encode(set.old_page(0), set.new_page(0), &mut out).is_some() {
            group.bench_function(format!("{}/qemu-avx512", workload.name), |b| {
                let mut i = 0;
                b.iter(|| {
                    let encoded = qemu_avx512::encode(set.old_page(i), set.new_page(i), &mut out);
                    next_page(&mut i, set.len());
                    encoded
                })
            });
        }
    }
    let identical = &workloads[0].set;
    group.bench_function("floor/memcmp", |b| {
        let mut i = 0;
        b.iter(|| {
            let equal = black_box(identical.old_page(i)) == black_box(identical.new_page(i));
            next_page(&mut i, identical.len());
            equal
        })
    });
    group.finish();
}

/// `xbzrle::decode_partial` (QEMU's single pass) against the run-by-run decoder on every workload whose pairs all have
/// a delta, and memcpy of a page (the floor).
fn decode(c: &mut Criterion, label: &str, workloads: &[Workload]) {
    let mut group = c.benchmark_group(format!("decode-{label}"));
    configure(&mut group, PAGE_SIZE);
    for workload in workloads {
        let set = &workload.set;
        let Some(deltas) = deltas(set) else { continue };
        let mut pages = set.clone();
        let pages = pages.old_pages_mut();
        group.bench_function(format!("{}/xbzrle", workload.name), |b| {
            let mut i = 0;
            b.iter(|| {
                let page = &mut pages[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
                let end = xbzrle::decode_partial(&deltas[i], page);
                next_page(&mut i, deltas.len());
                end
            })
        });
        group.bench_function(format!("{}/run-by-run", workload.name), |b| {
            let mut i = 0;
            b.iter(|| {
                let page = &mut pages[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
                let end = run_by_run_decode(&deltas[i], page);
                next_page(&mut i, deltas.len());
                end
            })
        });
    }
    let source = &workloads[0].set;
    let mut destination = source.clone();
    let destination = destination.old_pages_mut();
    group.bench_function("floor/memcpy", |b| {
        let mut i = 0;
        b.iter(|| {
            destination[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]
                .copy_from_slice(black_box(source.new_page(i)));
            next_page(&mut i, source.len());
        })
    });
    group.finish();
}

/// The canonical delta of every pair, checked against the run-by-run decoder; `None` when
/// some pair has no delta (identical or overflowing pages).
fn deltas(set: &PageSet) -> Option<Vec<Vec<u8>>> {
    let mut out = vec![0u8; PAGE_SIZE];
    (0..set.len())
        .map(
            |i| match xbzrle::encode(set.old_page(i), set.new_page(i), &mut out) {
                Encoded::Delta(len) => {
                    let delta = out[..len].to_vec();
                    let mut page = set.old_page(i).to_vec();
                    run_by_run_decode(&delta, &mut page).expect("our own delta decodes");
                    assert_eq!(page, set.new_page(i), "delta does not rebuild the page");
                    Some(delta)
                }
                Encoded::Unchanged | Encoded::Overflow => None,
            },
        )
        .collect()
}

/// `encode_update` against copy + encode + copy with the same kernel. The cache alternates
/// between the old and the new pages (every pass over the set swaps the target), so every
/// call sees the workload's changes.
fn encode_update(c: &mut Criterion, label: &str, workloads: &[Workload], kernels: &[Kernel]) {
    let mut group = c.benchmark_group(format!("encode_update-{label}"));
    configure(&mut group, PAGE_SIZE);
    let mut out = vec![0u8; PAGE_SIZE];
    let mut scratch = PageSet::synthetic(Pattern::Identical, PAGE_SIZE, 1, SEED);
    for workload in workloads {
        let set = &workload.set;
        let target = |i: usize, odd_pass: bool| {
            if odd_pass {
                set.old_page(i)
            } else {
                set.new_page(i)
            }
        };
        for &kernel in kernels {
            let mut cache = set.clone();
            let cache = cache.old_pages_mut();
            group.bench_function(format!("{}/{kernel}", workload.name), |b| {
                let (mut i, mut odd_pass) = (0, false);
                b.iter(|| {
                    let cached = &mut cache[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
                    let encoded = kernel.encode_update(cached, target(i, odd_pass), &mut out);
                    odd_pass ^= next_page(&mut i, set.len());
                    encoded
                })
            });
            let mut cache = set.clone();
            let cache = cache.old_pages_mut();
            let scratch = scratch.old_pages_mut();
            group.bench_function(
                format!("{}/{kernel}-copy-encode-copy", workload.name),
                |b| {
                    let (mut i, mut odd_pass) = (0, false);
                    b.iter(|| {
                        let cached = &mut cache[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
                        let encoded = copy_encode_copy(
                            kernel,
                            cached,
                            target(i, odd_pass),
                            scratch,
                            &mut out,
                        );
                        odd_pass ^= next_page(&mut i, set.len());
                        encoded
                    })
                },
            );
        }
    }
    group.finish();
}

/// `encode_update` of the hot pair with the best kernel, the cached copy at a page boundary
/// (as the policy's caches place every slot) and 16 bytes past one (where `malloc` places a
/// large allocation, and each of QEMU's separately allocated cached pages): the cost of
/// 64-byte loads and stores that split cache lines.
fn cache_alignment(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache-alignment");
    configure(&mut group, PAGE_SIZE);
    let mut out = vec![0u8; PAGE_SIZE];
    let kernel = Kernel::best();
    for pattern in [Pattern::Identical, Pattern::EightRunsOfEight] {
        let set = PageSet::synthetic(pattern, PAGE_SIZE, 1, SEED);
        let mut buffer = vec![0u8; 3 * PAGE_SIZE];
        let aligned = buffer.as_ptr().align_offset(PAGE_SIZE);
        for offset in [0, 16] {
            let at = aligned + offset;
            buffer[at..at + PAGE_SIZE].copy_from_slice(set.old_page(0));
            group.bench_function(format!("{}/offset-{offset}", pattern.name()), |b| {
                let mut odd_pass = false;
                b.iter(|| {
                    let target = if odd_pass {
                        set.old_page(0)
                    } else {
                        set.new_page(0)
                    };
                    odd_pass = !odd_pass;
                    kernel.encode_update(&mut buffer[at..at + PAGE_SIZE], target, &mut out)
                })
            });
        }
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let dir = snapshot_dir();
    let real = match PageSet::from_snapshots(&dir, PAGE_SIZE, WORKING_SET) {
        Ok(set) => Some(set),
        Err(err) => {
            eprintln!("no real page pairs ({err}); set XBZRLE_SNAPSHOTS to a snapshot folder");
            None
        }
    };
    // encode_update with the word-at-a-time kernel (QEMU's encoder) and the best one.
    let mut kernels: Vec<Kernel> = Kernel::from_name("word").into_iter().collect();
    if !kernels.contains(&Kernel::best()) {
        kernels.push(Kernel::best());
    }
    for (label, pages, real) in [("hot", 1, None), ("ws", WORKING_SET, real.as_ref())] {
        let workloads = workloads(pages, real);
        encode(&mut c, label, &workloads);
        decode(&mut c, label, &workloads);
        encode_update(&mut c, label, &workloads, &kernels);
    }
    cache_alignment(&mut c);
    c.final_summary();
}
