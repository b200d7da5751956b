//! `xbzrle bench` end to end, with the shortest timing settings: the table and the JSON
//! have their layout, the figures that do not depend on timing are right, and in the
//! pipeline benchmark QEMU's method and the sender write the same records.

mod common;

use common::{assert_stderr_contains, read_json, text, xbzrle};
use std::collections::BTreeSet;

use serde_json::Value;
use xbzrle_workloads::patterns::{PAGE_SIZE, PageSet, Pattern};

/// Panics unless `object` has exactly the fields `names`.
fn assert_fields(object: &Value, names: &[&str]) {
    let got: BTreeSet<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(got, want, "fields of {object}");
}

/// Whether this CPU runs QEMU's AVX-512 encoder method.
fn has_avx512bw() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512bw");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The seed of the bench's synthetic page pairs.
const SEED: u64 = 0x5eed;

#[test]
fn quick_run_prints_the_table_and_writes_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let json_arg = json.to_str().unwrap();
    let out = xbzrle(&[
        "bench",
        "--quick",
        "--repetitions",
        "1",
        "--batch-ms",
        "1",
        "--json",
        json_arg,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let report = read_json(&json);

    assert_fields(
        &report,
        &[
            "schema_version",
            "cpu",
            "kernels_available",
            "best_kernel",
            "baseline_kernel",
            "settings",
            "floors",
            "workloads",
        ],
    );
    assert_eq!(report["schema_version"], 1);
    assert_fields(&report["cpu"], &["model", "arch", "features"]);
    assert_eq!(report["cpu"]["arch"], std::env::consts::ARCH);
    assert_fields(
        &report["settings"],
        &[
            "page_size",
            "working_set_pairs",
            "repetitions",
            "batch_ms",
            "quick",
            "statistic",
        ],
    );
    let settings = &report["settings"];
    assert_eq!(settings["page_size"], PAGE_SIZE);
    assert_eq!(settings["working_set_pairs"], 1);
    assert_eq!(settings["repetitions"], 1);
    assert_eq!(settings["batch_ms"], 1);
    assert_eq!(settings["quick"], true);
    assert_fields(&report["floors"], &["encode", "decode"]);
    assert_eq!(report["baseline_kernel"], "word");
    let kernels: Vec<&str> = report["kernels_available"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(kernels.contains(&"reference") && kernels.contains(&"word"));
    assert!(kernels.contains(&report["best_kernel"].as_str().unwrap()));

    // One workload per synthetic pattern, in order, with the mean delta length of the
    // canonical deltas of its page pairs (computed here by the naive oracle).
    let workloads = report["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), Pattern::ALL.len());
    for (workload, &pattern) in workloads.iter().zip(Pattern::ALL) {
        assert_fields(
            workload,
            &[
                "name",
                "description",
                "pairs",
                "mean_delta_bytes",
                "overflows",
                "unchanged",
                "results",
            ],
        );
        let name = pattern.name();
        assert_eq!(workload["name"], name);
        assert_eq!(workload["pairs"], 1);
        let set = PageSet::synthetic(pattern, PAGE_SIZE, 1, SEED);
        let delta = xbzrle_testkit::canonical_delta(set.old_page(0), set.new_page(0));
        let (overflows, unchanged) = (delta.len() > PAGE_SIZE, delta.is_empty());
        let mean = if overflows { PAGE_SIZE } else { delta.len() };
        assert_eq!(workload["mean_delta_bytes"], mean as f64, "{name}");
        assert_eq!(workload["overflows"], u64::from(overflows), "{name}");
        assert_eq!(workload["unchanged"], u64::from(unchanged), "{name}");

        // A row per kernel, QEMU's AVX-512 encoder method where the CPU runs it, then the
        // decoder and QEMU's decoder method (timed only when every pair has a delta), memcmp
        // and memcpy.
        let rows = workload["results"].as_array().unwrap();
        let mut want: Vec<(&str, Option<&str>)> =
            kernels.iter().map(|&k| ("encode", Some(k))).collect();
        if has_avx512bw() {
            want.push(("qemu-avx512-encode", None));
        }
        if !overflows && !unchanged {
            want.extend([("decode", None), ("qemu-decode", None)]);
        }
        want.extend([("memcmp", None), ("memcpy", None)]);
        let got: Vec<(&str, Option<&str>)> = rows
            .iter()
            .map(|row| (row["operation"].as_str().unwrap(), row["kernel"].as_str()))
            .collect();
        assert_eq!(got, want, "{name}");
        for row in rows {
            assert_fields(
                row,
                &[
                    "operation",
                    "kernel",
                    "ns_per_page",
                    "gb_per_s",
                    "speedup_vs_baseline_kernel",
                    "time_vs_floor",
                ],
            );
            let ns = row["ns_per_page"].as_f64().unwrap();
            assert!(ns > 0.0, "{row}");
            let gb_per_s = row["gb_per_s"].as_f64().unwrap();
            assert!(
                (gb_per_s * ns / PAGE_SIZE as f64 - 1.0).abs() < 1e-9,
                "{row}"
            );
            let operation = row["operation"].as_str().unwrap();
            let is_encode = operation.ends_with("encode");
            assert_eq!(row["speedup_vs_baseline_kernel"].is_number(), is_encode);
            assert_eq!(
                row["time_vs_floor"].is_number(),
                is_encode || operation.ends_with("decode")
            );
            if row["kernel"] == "word" {
                assert_eq!(row["speedup_vs_baseline_kernel"], 1.0);
            }
        }
    }

    // The table: a header, a column per workload, a line per kernel and floor.
    let lines: Vec<&str> = table.lines().collect();
    let model = report["cpu"]["model"].as_str().unwrap();
    assert_eq!(
        lines[0],
        format!("CPU: {model} ({})", std::env::consts::ARCH)
    );
    let header: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with(' '))
        .unwrap()
        .split_whitespace()
        .collect();
    let names: Vec<&str> = Pattern::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(header, names);
    let best = report["best_kernel"].as_str().unwrap();
    let mut labels: Vec<String> = kernels.iter().map(|k| format!("encode {k}")).collect();
    labels.extend(
        [
            "encode qemu-avx512",
            &format!("{best} vs qemu-avx512"),
            "memcmp (floor)",
            &format!("{best} / memcmp"),
            "decode",
            "decode qemu method",
            "decode vs qemu method",
            "memcpy (floor)",
            "decode / memcpy",
            "mean delta bytes",
        ]
        .map(String::from),
    );
    for label in &labels {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{label:<22} ")))
            .unwrap_or_else(|| panic!("no line {label:?} in\n{table}"));
        // A cell per workload ("-" where not timed); an encoder's cell is "GB/s xN".
        let cells: Vec<&str> = line[22..].split_whitespace().collect();
        let timed = cells.iter().filter(|&&c| c != "-").count();
        let per_cell = if label.starts_with("encode") { 2 } else { 1 };
        assert_eq!(
            cells.len() - timed + timed / per_cell,
            names.len(),
            "{line}"
        );
        // Every cell of a line that compares with QEMU's method is its time over ours.
        if label.ends_with(" vs qemu-avx512") || label.ends_with(" vs qemu method") {
            let (ours, qemu) = if label.starts_with("decode") {
                (("decode", None), ("qemu-decode", None))
            } else {
                (("encode", Some(best)), ("qemu-avx512-encode", None))
            };
            for (cell, workload) in cells.iter().zip(workloads) {
                let ns = |(operation, kernel): (&str, Option<&str>)| {
                    let rows = workload["results"].as_array().unwrap();
                    let row = rows
                        .iter()
                        .find(|r| r["operation"] == operation && r["kernel"].as_str() == kernel);
                    row.map(|r| r["ns_per_page"].as_f64().unwrap())
                };
                let want = match (ns(ours), ns(qemu)) {
                    (Some(ours), Some(qemu)) => format!("{:.2}", qemu / ours),
                    _ => "-".to_owned(),
                };
                assert_eq!(*cell, want, "{line}");
            }
        }
    }
    let means: Vec<String> = workloads
        .iter()
        .map(|w| format!("{:.0}", w["mean_delta_bytes"].as_f64().unwrap()))
        .collect();
    let mean_line = lines
        .iter()
        .find(|l| l.starts_with("mean delta bytes"))
        .unwrap();
    assert_eq!(
        mean_line[22..].split_whitespace().collect::<Vec<_>>(),
        means
    );
}

#[test]
fn pipeline_run_on_tiny_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("pipeline.json");
    // An existing file is replaced with --force.
    std::fs::write(&json, "old").unwrap();
    let out = xbzrle(&[
        "bench",
        "--pipeline",
        "--ram",
        "8M",
        "--dirty",
        "2M",
        "--cache-size",
        "4M",
        "--passes",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--force",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let report = read_json(&json);

    assert_fields(
        &report,
        &["schema_version", "benchmark", "settings", "setups"],
    );
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["benchmark"], "pipeline");
    let settings = &report["settings"];
    assert_eq!(settings["page_size"], 4096);
    assert_eq!(settings["ram_bytes"], 8 << 20);
    assert_eq!(settings["dirty_bytes_per_pass"], 2 << 20);
    assert_eq!(settings["cache_bytes"], 4 << 20);
    assert_eq!(settings["passes"], 1);

    let setups = report["setups"].as_array().unwrap();
    let senders = [
        "sender",
        "sender, batch",
        "sender, batch, 2 shards",
        "sender, batch, 2 threads",
    ];
    let qemu = [
        "QEMU's method, word encoder",
        "QEMU's method, xbzrle::encode",
    ];
    let floors = [
        "memory floor (reads only)",
        "memory floor, 2 threads",
        "CPU check (hot pairs)",
        "CPU check, 2 threads",
    ];
    let expected: [(&str, Vec<&str>); 2] = [
        (
            "direct-mapped",
            qemu.iter()
                .chain(&floors)
                .chain(&senders)
                .copied()
                .collect(),
        ),
        ("16-way", senders.to_vec()),
    ];
    assert_eq!(setups.len(), expected.len());
    for (setup, (cache, names)) in setups.iter().zip(&expected) {
        assert_fields(setup, &["cache", "methods"]);
        assert_eq!(setup["cache"], *cache);
        let methods = setup["methods"].as_array().unwrap();
        let got: Vec<&str> = methods
            .iter()
            .map(|m| m["method"].as_str().unwrap())
            .collect();
        assert_eq!(&got, names, "{cache}");
        for method in methods {
            assert_fields(
                method,
                &[
                    "method",
                    "ns_per_page",
                    "speedup_vs_qemu_word",
                    "speedup_vs_qemu_library",
                    "record_bytes",
                    "cache_misses",
                ],
            );
            let name = method["method"].as_str().unwrap();
            let ns = method["ns_per_page"].as_f64().unwrap();
            assert!(ns > 0.0, "{method}");
            // Only the floor writes no record.
            let is_floor = floors.contains(&name);
            assert_eq!(method["record_bytes"] == 0, is_floor, "{method}");
            // Every ratio is QEMU's time over this one's, from the same passes.
            let qemu_ns = |i: usize| setups[0]["methods"][i]["ns_per_page"].as_f64().unwrap();
            for (field, i) in [("speedup_vs_qemu_word", 0), ("speedup_vs_qemu_library", 1)] {
                let ratio = method[field].as_f64().unwrap();
                assert!(
                    (ratio - qemu_ns(i) / ns).abs() < 1e-9,
                    "{field} of {method}"
                );
            }
            assert_eq!(method["cache_misses"].is_u64(), senders.contains(&name));
        }
        // The table of the setup lists the same methods with the same record bytes.
        let section = table
            .split(&format!("\n{cache} cache\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {cache} table in\n{table}"));
        for method in methods {
            let name = method["method"].as_str().unwrap();
            let line = section
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("no line for {name} in\n{section}"));
            let bytes = method["record_bytes"].to_string();
            assert!(line.split_whitespace().any(|w| w == bytes), "{line}");
        }
    }
    // On QEMU's cache, QEMU's method (with either encoder) and the sender make the same
    // decisions and frame records alike: the same record bytes.
    let direct = setups[0]["methods"].as_array().unwrap();
    let bytes = |name: &str| {
        let method = direct.iter().find(|m| m["method"] == name);
        method.unwrap()["record_bytes"].as_u64().unwrap()
    };
    assert_eq!(
        bytes(qemu[0]),
        bytes(qemu[1]),
        "QEMU's method with its two encoders"
    );
    assert_eq!(
        bytes(qemu[0]),
        bytes("sender"),
        "QEMU's method and the sender"
    );
    assert_eq!(
        bytes("sender"),
        bytes("sender, batch"),
        "the sender, one page at a time and in a batch"
    );
    // Two shards keep QEMU's mapping, from one thread or two.
    for name in &senders[2..] {
        assert_eq!(bytes("sender"), bytes(name), "{name}");
    }
    // The last line: one thread's time over two threads', from the JSON's times.
    let ns = |setup: usize, name: &str| {
        let methods = setups[setup]["methods"].as_array().unwrap();
        let method = methods.iter().find(|m| m["method"] == name).unwrap();
        method["ns_per_page"].as_f64().unwrap()
    };
    let gain = |setup, one, two| format!("{:.2}x", ns(setup, one) / ns(setup, two));
    let expected = format!(
        "two threads ÷ one: memory floor {}, CPU check {}, sender (direct-mapped) {}, \
         sender (16-way) {}",
        gain(0, floors[0], floors[1]),
        gain(0, floors[2], floors[3]),
        gain(0, senders[2], senders[3]),
        gain(1, senders[2], senders[3]),
    );
    assert_eq!(table.lines().last(), Some(expected.as_str()), "{table}");
}

#[test]
fn bad_settings_fail_before_measuring() {
    let out = xbzrle(&["bench", "--quick", "--batch-ms", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_stderr_contains(&out, "--batch-ms");
    let out = xbzrle(&["bench", "--pipeline", "--ram", "8M", "--dirty", "16M"]);
    assert_eq!(out.status.code(), Some(1));
    assert_stderr_contains(&out, "--dirty");
    // The JSON's folder is checked before the run, with --pipeline too.
    let out = xbzrle(&[
        "bench",
        "--pipeline",
        "--json",
        "/nonexistent-folder/p.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_stderr_contains(&out, "--json");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}
