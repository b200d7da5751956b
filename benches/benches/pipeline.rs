//! Criterion benchmark of the sender pipeline at guest-RAM scale (see
//! `xbzrle_benches::pipeline`): every dirty page of a pass saved by QEMU's method (word
//! encoder, and this project's encoder) and by the sender, one page per call and as one
//! batch, for QEMU's direct-mapped cache and the recommended 16-way one; one iteration is
//! one pass. Throughput is page bytes saved.
//!
//! `xbzrle bench --pipeline` runs the same methods interleaved pass by pass (steadier ratios
//! on a shared machine) and with two saving threads.
//!
//! Run: `cargo bench -p xbzrle-benches --bench pipeline` (a few minutes). Sizes: guest
//! `$XBZRLE_PIPELINE_RAM_MIB` (512), dirty set `$XBZRLE_PIPELINE_DIRTY_MIB` (128), cache
//! `$XBZRLE_PIPELINE_CACHE_MIB` (256).

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use xbzrle_benches::pipeline::{
    Calls, Guest, Method, QemuEncoder, QemuMethod, Workers, measure_pass, setups, warm_up,
};
use xbzrle_policy::Sender;

/// A size in MiB from the environment, or `default`.
fn mib(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        << 20
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let ram = mib("XBZRLE_PIPELINE_RAM_MIB", 512);
    let dirty = mib("XBZRLE_PIPELINE_DIRTY_MIB", 128);
    let cache = mib("XBZRLE_PIPELINE_CACHE_MIB", 256);
    for (setup, config) in setups(cache, 1) {
        let mut named: Vec<(&str, Method)> = Vec::new();
        if setup == "direct-mapped" {
            named.push((
                "qemu-word",
                Method::Qemu(QemuMethod::new(cache, QemuEncoder::Word)),
            ));
            named.push((
                "qemu-xbzrle-encode",
                Method::Qemu(QemuMethod::new(cache, QemuEncoder::Library)),
            ));
        }
        for (name, calls) in [("sender", Calls::OnePage), ("sender-batch", Calls::Batch)] {
            named.push((
                name,
                Method::Sender {
                    sender: Arc::new(Sender::new(config.clone()).expect("valid")),
                    workers: Workers::new(1),
                    calls,
                },
            ));
        }
        let mut group = c.benchmark_group(format!("pipeline/{setup}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5))
            .throughput(Throughput::Bytes(dirty as u64));
        for (name, method) in named {
            // Every method gets its own guest, so that each pass dirties the pages once for it.
            let mut guest = Guest::new(ram, dirty, 0x9e57);
            let mut methods = [method];
            warm_up(&mut methods, &mut guest);
            group.bench_function(name, |b| {
                b.iter_custom(|passes| {
                    (0..passes)
                        .map(|_| measure_pass(&mut methods, &mut guest, 0)[0].0)
                        .sum()
                })
            });
        }
        group.finish();
    }
    c.final_summary();
}
