//! Shared by the integration tests: where the C library cargo built for this run is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The crate directory (`c-api/`).
pub(crate) fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Directory holding the shared and static libraries, built for this test run under cargo's
/// names (`libxbzrle_capi.so`, `.a`; `scripts/capi-install.sh` installs them as `libxbzrle`).
///
/// Cargo does not build a cdylib/staticlib-only library for integration tests, so it is
/// built here with a nested `cargo build` into its own target directory (the outer cargo
/// holds a lock on the usual one). Later runs only check that it is fresh.
pub(crate) fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = env!("XBZRLE_TARGET");
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi-lib");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--lib",
                "-p",
                "xbzrle-capi",
                "--target",
                target,
            ])
            .arg("--manifest-path")
            .arg(crate_dir().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("run cargo build for the C library");
        assert!(status.success(), "cargo build -p xbzrle-capi failed");
        target_dir.join(target).join("debug")
    })
}
