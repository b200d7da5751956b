//! What the CLI's end-to-end tests share: running the binary and reading what it wrote.
#![allow(dead_code)] // Each test file uses a part.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `xbzrle` with `args` and returns what it did.
pub(crate) fn xbzrle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xbzrle"))
        .args(args)
        .output()
        .expect("the xbzrle binary runs")
}

/// Output bytes as text, lossily.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails unless the command's standard error contains `needle` (and shows it if not).
pub(crate) fn assert_stderr_contains(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

/// The JSON file at `path`.
pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
