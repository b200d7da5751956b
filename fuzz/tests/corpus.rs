//! Replays every committed corpus file of every fuzz target through its check, on stable
//! Rust, so the normal test run exercises the seeds and every regression input.

use std::path::Path;

/// Runs target `name`'s check on each file of `corpus/<name>/`.
fn replay(name: &str) {
    let target = xbzrle_fuzz::TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let files = xbzrle_fuzz::input_files(&dir)
        .unwrap_or_else(|e| panic!("{} unreadable: {e}", dir.display()));
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("readable corpus file");
        if std::panic::catch_unwind(|| (target.check)(&data)).is_err() {
            panic!("target {name} fails on {}", file.display());
        }
    }
    println!("{name}: {} corpus files pass", files.len());
}

#[test]
fn every_target_has_a_replay_test_and_a_corpus() {
    let names: Vec<_> = xbzrle_fuzz::TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, REPLAYED);
}

/// The targets replayed below, in [`xbzrle_fuzz::TARGETS`] order.
const REPLAYED: &[&str] = &[
    "decode",
    "kernels",
    "compact",
    "encode_update",
    "output_buffer",
    "policy",
    "capi",
    "stream",
];

#[test]
fn decode_corpus() {
    replay("decode");
}

#[test]
fn kernels_corpus() {
    replay("kernels");
}

#[test]
fn compact_corpus() {
    replay("compact");
}

#[test]
fn encode_update_corpus() {
    replay("encode_update");
}

#[test]
fn output_buffer_corpus() {
    replay("output_buffer");
}

#[test]
fn policy_corpus() {
    replay("policy");
}

#[test]
fn capi_corpus() {
    replay("capi");
}

#[test]
fn stream_corpus() {
    replay("stream");
}
