//! The checks behind the cargo-fuzz targets of the xbzrle toolkit.
//!
//! Each target is one module with a `check(&[u8])` function that panics on a finding.
//! The binaries in `fuzz_targets/` hand it to libFuzzer when built by cargo-fuzz (which
//! sets `--cfg fuzzing`), and replay files with it otherwise; `tests/corpus.rs` replays
//! every committed corpus file on stable Rust. So each check exists once.

pub mod capi;
pub mod compact;
pub mod decode;
pub mod encode_update;
pub mod input;
pub mod kernels;
pub mod output_buffer;
pub mod policy;
pub mod stream;

use std::path::{Path, PathBuf};
use xbzrle::Encoded;

/// A fuzz target: its name (also its corpus directory) and its check.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name of the cargo-fuzz target and of its directory under `corpus/`.
    pub name: &'static str,
    /// Runs every check on one input; panics on a finding.
    pub check: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "decode",
        check: decode::check,
    },
    Target {
        name: "kernels",
        check: kernels::check,
    },
    Target {
        name: "compact",
        check: compact::check,
    },
    Target {
        name: "encode_update",
        check: encode_update::check,
    },
    Target {
        name: "output_buffer",
        check: output_buffer::check,
    },
    Target {
        name: "policy",
        check: policy::check,
    },
    Target {
        name: "capi",
        check: capi::check,
    },
    Target {
        name: "stream",
        check: stream::check,
    },
];

/// An encoder: `(old, new, out)`.
pub(crate) type EncodeFn<'a> = &'a dyn Fn(&[u8], &[u8], &mut [u8]) -> Encoded;
/// An encode-and-refresh: `(cached, new, out)`.
pub(crate) type EncodeUpdateFn<'a> = &'a dyn Fn(&mut [u8], &[u8], &mut [u8]) -> Encoded;

/// The result a canonical encoder must return for a page pair whose canonical delta is
/// `canonical` (empty for equal pages) with `capacity` output bytes: exact overflow.
pub fn expected_encode(canonical: &[u8], capacity: usize) -> Encoded {
    if canonical.is_empty() {
        Encoded::Unchanged
    } else if canonical.len() > capacity {
        Encoded::Overflow
    } else {
        Encoded::Delta(canonical.len())
    }
}

/// The files under `path` (itself if it is a file), sorted.
pub fn input_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?.path();
        if entry.is_file() {
            files.push(entry);
        }
    }
    files.sort();
    Ok(files)
}

/// `main` of a target built without libFuzzer: runs `check` on every file or directory
/// named on the command line (to reproduce a crash on stable Rust).
pub fn replay_main(check: fn(&[u8])) {
    let mut count = 0;
    for arg in std::env::args_os().skip(1) {
        for file in input_files(Path::new(&arg)).expect("readable input path") {
            eprintln!("replaying {}", file.display());
            check(&std::fs::read(&file).expect("readable input file"));
            count += 1;
        }
    }
    eprintln!("{count} inputs passed");
}
