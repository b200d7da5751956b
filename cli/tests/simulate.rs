//! `xbzrle simulate` end to end, on small settings.

mod common;

use common::{assert_stderr_contains, read_json, text, xbzrle};

use serde_json::Value;

/// The fields every policy's JSON entry has, and the destination verified.
fn check_policy_entry(policy: &Value) {
    let table = &policy["table"];
    for row in [
        "total_time_ms",
        "downtime_ms",
        "transferred_ram_kib",
        "remaining_ram_kib",
        "total_ram_kib",
        "duplicate_pages",
        "normal_pages",
        "normal_bytes_kib",
        "cache_size_bytes",
        "xbzrle_transferred_kib",
        "xbzrle_pages",
        "xbzrle_cache_miss",
        "xbzrle_overflow",
        "cache_miss_rate",
        "encoding_rate",
    ] {
        assert!(table[row].is_number(), "{row} missing in {table}");
    }
    assert_eq!(policy["destination"]["verified"], true, "{policy}");
    assert_eq!(policy["destination"]["mismatched_pages"], 0);
    assert_eq!(table["remaining_ram_kib"], 0);
    // Bytes per pass add up to the total, and the last pass is the last stage.
    let passes = policy["passes"].as_array().unwrap();
    let sum: u64 = passes
        .iter()
        .map(|p| p["wire_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, policy["wire_bytes"].as_u64().unwrap());
    assert_eq!(passes.last().unwrap()["stage"], "last");
    assert!(policy["convergence"]["stopped_by"].is_string());
}

#[test]
fn small_xbzrle_doc_run_verifies_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let plot = dir.path().join("run.svg");
    let out = xbzrle(&[
        "simulate",
        "--cache-size",
        "2M",
        "--max-passes",
        "4",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "xbzrle-doc",
        "--guest-size",
        "16M",
        "--buffer-size",
        "1M",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for row in [
        "total time (ms)",
        "xbzrle cache miss",
        "cache-miss-rate",
        "encoding-rate",
        "qemu rule holds from",
        "estimate rule holds from",
    ] {
        assert!(stdout.contains(row), "no `{row}` in\n{stdout}");
    }
    assert!(!stdout.contains("DIFFER"), "{stdout}");

    let report = read_json(&json);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["workload"]["name"], "xbzrle-doc");
    assert_eq!(report["settings"]["cache_size"], 2 << 20);
    let policies = report["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["qemu-pre-5cc11c46", "qemu", "ours"]);
    for policy in policies {
        check_policy_entry(policy);
        assert_eq!(policy["table"]["total_ram_kib"], 16 * 1024);
        // 1 MiB of hot pages fits in 32 MiB/s x 300 ms: QEMU's rule holds at the first
        // sync, so the second pass is the last stage.
        assert_eq!(policy["iterative_passes"], 0);
        assert_eq!(policy["convergence"]["stopped_by"], "qemu-rule");
        assert_eq!(policy["convergence"]["qemu_rule"]["pass"], 1);
    }
    // Without a bulk stage every non-zero page of the first pass is a miss.
    let misses = |i: usize| policies[i]["table"]["xbzrle_cache_miss"].as_u64().unwrap();
    let normal = policies[0]["passes"][0]["raw_pages"].as_u64().unwrap();
    assert!(
        misses(0) >= normal && normal > 1000,
        "{} {normal}",
        misses(0)
    );
    assert!(misses(1) < misses(0) / 5, "{} vs {}", misses(1), misses(0));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("wire bytes per pass"));
}

#[test]
fn non_converging_run_stops_at_the_cap_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    // A 1 MiB hot buffer at 256 KiB/s with a 300 ms limit never passes QEMU's rule.
    let out = xbzrle(&[
        "simulate",
        "--bandwidth",
        "256K",
        "--cache-size",
        "2M",
        "--max-passes",
        "3",
        "--policies",
        "qemu,sa4-lru/freq2",
        "--json",
        json.to_str().unwrap(),
        "xbzrle-doc",
        "--guest-size",
        "2M",
        "--buffer-size",
        "1M",
        "--zero-fraction",
        "0.9",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("forced: --max-passes"));
    let report = read_json(&json);
    for policy in report["policies"].as_array().unwrap() {
        check_policy_entry(policy);
        assert_eq!(policy["convergence"]["stopped_by"], "max-passes");
        assert_eq!(policy["convergence"]["qemu_rule"], Value::Null);
        assert_eq!(policy["iterative_passes"], 3);
    }
}

#[test]
fn estimate_rule_stops_when_xbzrle_makes_the_last_stage_small() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let out = xbzrle(&[
        "simulate",
        "--bandwidth",
        "256K",
        "--cache-size",
        "2M",
        "--converge",
        "estimate",
        "--policies",
        "qemu",
        "--json",
        json.to_str().unwrap(),
        "xbzrle-doc",
        "--guest-size",
        "2M",
        "--buffer-size",
        "1M",
        "--zero-fraction",
        "0.9",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = read_json(&json);
    let policy = &report["policies"][0];
    check_policy_entry(policy);
    assert_eq!(policy["convergence"]["stopped_by"], "estimate-rule");
    // Pass 1 misses every hot page, pass 2 measures XBZRLE; the check before pass 3 holds.
    assert_eq!(policy["convergence"]["estimate_rule"]["pass"], 3);
    assert_eq!(policy["iterative_passes"], 2);
    // The last stage fits in 256 KiB/s x 300 ms: XBZRLE records, not raw pages.
    let last = policy["convergence"]["last_stage_bytes"].as_u64().unwrap();
    assert!(last < 256 * 1024 * 3 / 10, "last stage {last} bytes");
    assert_eq!(
        policy["passes"][3]["xbzrle_records"].as_u64().unwrap()
            + policy["passes"][3]["skipped_pages"].as_u64().unwrap(),
        policy["passes"][3]["dirty_pages"].as_u64().unwrap()
    );
}

#[test]
fn small_zipf_run_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let out = xbzrle(&[
        "simulate",
        "--bandwidth",
        "1M",
        "--json",
        json.to_str().unwrap(),
        "--cache-size",
        "1M",
        "--max-passes",
        "3",
        "--policies",
        "qemu,ours",
        "zipf",
        "--guest-size",
        "8M",
        "--heap-size",
        "2M",
        "--ops-per-sec",
        "20000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("workload: zipf"));
    let report = read_json(&json);
    for policy in report["policies"].as_array().unwrap() {
        check_policy_entry(policy);
        // The heap (2 MiB) is larger than the cache (1 MiB): both hits and misses.
        assert!(
            policy["table"]["xbzrle_pages"].as_u64().unwrap() > 0,
            "{policy}"
        );
        assert!(policy["table"]["cache_miss_rate"].as_f64().unwrap() > 0.0);
        assert_eq!(policy["iterative_passes"], 3);
    }
}

#[test]
fn replay_sends_the_changed_pages_of_each_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let pages = 64;
    let mut snapshot: Vec<u8> = (0..pages * 4096).map(|i| (i % 251) as u8).collect();
    snapshot[10 * 4096..20 * 4096].fill(0);
    let changes: [&[usize]; 3] = [&[], &[3, 40], &[3, 5, 12, 63]];
    for (index, changed) in changes.iter().enumerate() {
        for &page in *changed {
            snapshot[page * 4096 + 17] ^= 0x5a;
        }
        std::fs::write(dir.path().join(format!("snap-{index:02}.raw")), &snapshot).unwrap();
    }
    let json = dir.path().join("replay.json");
    let out = xbzrle(&[
        "simulate",
        "replay",
        dir.path().to_str().unwrap(),
        "--cache-size",
        "128K",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = read_json(&json);
    for policy in report["policies"].as_array().unwrap() {
        check_policy_entry(policy);
        let passes = policy["passes"].as_array().unwrap();
        let sent: Vec<u64> = passes
            .iter()
            .map(|p| p["dirty_pages"].as_u64().unwrap())
            .collect();
        assert_eq!(sent, [64, 2, 4]);
        assert_eq!(policy["table"]["duplicate_pages"], 10);
        assert_eq!(policy["convergence"]["stopped_by"], "last-snapshot");
    }
    // Page 3 changed twice: after the bulk stage it is a miss, then a hit for `qemu`.
    let qemu = &report["policies"][1];
    assert_eq!(qemu["policy"], "qemu");
    assert_eq!(qemu["passes"][1]["cache_misses"], 2);
    assert_eq!(qemu["passes"][2]["cache_hits"], 1);
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let out = xbzrle(&["simulate", "--policies", "qemu,fastest"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown policy `fastest`"));

    let out = xbzrle(&["simulate", "replay", "/nonexistent/snapshots"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/snapshots"));

    let out = xbzrle(&[
        "simulate",
        "xbzrle-doc",
        "--guest-size",
        "1M",
        "--buffer-size",
        "2M",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("fit in the guest"));

    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("plot.png");
    let out = xbzrle(&[
        "simulate",
        "--plot",
        plot.to_str().unwrap(),
        "--max-passes",
        "1",
        "xbzrle-doc",
        "--guest-size",
        "4M",
        "--buffer-size",
        "64K",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(".svg"));
    assert!(!plot.exists());
}

#[test]
fn json_paths_are_checked_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder").join("run.json");
    let folder = dir.path().to_str().unwrap();
    let existing = dir.path().join("old.json");
    std::fs::write(&existing, "old").unwrap();
    let existing = existing.to_str().unwrap();
    for (command, path, expected) in [
        ("simulate", missing.to_str().unwrap(), "does not exist"),
        ("simulate", folder, "is a folder"),
        ("simulate", existing, "already exists: add --force"),
        ("bench", missing.to_str().unwrap(), "does not exist"),
        ("bench", existing, "already exists: add --force"),
    ] {
        // The default simulation takes far longer than the test allows if it runs.
        let started = std::time::Instant::now();
        let out = xbzrle(&[command, "--json", path]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert_stderr_contains(&out, expected);
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert!(started.elapsed().as_secs() < 10);
    }
    assert_eq!(std::fs::read_to_string(existing).unwrap(), "old");
    let plot = dir.path().join("no-such-folder").join("run.svg");
    let out = xbzrle(&["simulate", "--plot", plot.to_str().unwrap()]);
    assert_stderr_contains(&out, "does not exist");
    let plot = dir.path().join("old.svg");
    std::fs::write(&plot, "old").unwrap();
    let out = xbzrle(&["simulate", "--plot", plot.to_str().unwrap()]);
    assert_stderr_contains(&out, "already exists: add --force");
}

#[test]
fn bench_json_carries_a_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = xbzrle(&[
        "bench",
        "--quick",
        "--repetitions",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = read_json(&json);
    assert_eq!(report["schema_version"], 1);
    assert!(
        report["workloads"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
    );
}
