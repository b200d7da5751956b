//! `xbzrle bench --pipeline`: the whole sender at guest-RAM scale against QEMU's method (see
//! `xbzrle_benches::pipeline`): for QEMU's cache setup and the recommended one, every dirty
//! page of a pass is saved by QEMU's method (word-at-a-time encoder, and this project's
//! encoder), by the sender from one thread, and by the sender with two shards from one and
//! from two threads. Passes are interleaved (each pass dirties the pages once, then every
//! method saves them, in a rotating order), and the median pass gives the time per page.

use anyhow::bail;
use xbzrle_benches::pipeline::{
    Guest, Method, PAGE, QemuEncoder, QemuMethod, measure_pass, setups, warm_up,
};
use xbzrle_policy::Sender;

use super::median;
use crate::units::format_size;

/// Sizes of the pipeline run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PipelineArgs {
    pub(crate) ram: u64,
    pub(crate) dirty: u64,
    pub(crate) cache: u64,
    pub(crate) passes: usize,
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
    for ((setup, config), (_, two_shards)) in setups(cache, 1).into_iter().zip(setups(cache, 2)) {
        let mut named: Vec<(&str, Method)> = Vec::new();
        if setup == "direct-mapped" {
            // QEMU's method only has QEMU's cache.
            named.push((
                QEMU_WORD,
                Method::Qemu(QemuMethod::new(cache, QemuEncoder::Word)),
            ));
            named.push((
                QEMU_LIBRARY,
                Method::Qemu(QemuMethod::new(cache, QemuEncoder::Library)),
            ));
        }
        named.push((
            "sender",
            Method::Sender {
                sender: Sender::new(config.clone())?,
                threads: 1,
            },
        ));
        named.push(("sender, batch", Method::SenderBatch(Sender::new(config)?)));
        named.push((
            "sender, 2 shards, 1 thread",
            Method::Sender {
                sender: Sender::new(two_shards.clone())?,
                threads: 1,
            },
        ));
        named.push((
            "sender, 2 shards, 2 threads",
            Method::Sender {
                sender: Sender::new(two_shards)?,
                threads: 2,
            },
        ));
        let (names, mut methods): (Vec<&str>, Vec<Method>) = named.into_iter().unzip();
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
        print_table(setup, &names, &medians, &bytes_per_pass, &methods);
    }
    Ok(())
}

/// Names of the two baselines.
const QEMU_WORD: &str = "QEMU's method, word encoder";
const QEMU_LIBRARY: &str = "QEMU's method, xbzrle::encode";

fn print_table(setup: &str, names: &[&str], medians: &[f64], bytes: &[u64], methods: &[Method]) {
    let baseline = |name: &str| names.iter().position(|n| *n == name).map(|i| medians[i]);
    let (word, library) = (baseline(QEMU_WORD), baseline(QEMU_LIBRARY));
    println!("\n{setup} cache");
    println!(
        "  {:<30} {:>8} {:>12} {:>11} {:>12}  cache misses",
        "method", "ns/page", "÷ QEMU word", "÷ QEMU lib", "record bytes"
    );
    for (i, name) in names.iter().enumerate() {
        let ratio = |base: Option<f64>| {
            base.map_or_else(|| "-".to_owned(), |b| format!("{:.2}x", b / medians[i]))
        };
        let misses = match &methods[i] {
            Method::Sender { sender, .. } | Method::SenderBatch(sender) => {
                sender.stats().xbzrle_cache.cache_miss.to_string()
            }
            Method::Qemu(_) => "-".to_owned(),
        };
        println!(
            "  {name:<30} {:>8.0} {:>12} {:>11} {:>12}  {misses}",
            medians[i],
            ratio(word),
            ratio(library),
            bytes[i]
        );
    }
}
