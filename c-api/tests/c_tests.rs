//! Builds the C tests, the C++ header check and the example with the `cc` crate
//! (`-std=c99 -Wall -Wextra -Werror -pedantic`), links them against the static library cargo
//! built for this run, and runs them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{crate_dir, library_dir};

/// The static library as cargo names it (installed as `libxbzrle.a`).
const STATIC_LIBRARY: &str = "libxbzrle_capi.a";

/// Libraries the Rust standard library needs when linked statically
/// (`rustc --print native-static-libs`).
const NATIVE_STATIC_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"];

/// Compiles `sources` into an executable linked with the static library and returns its path.
fn build(name: &str, sources: &[&str], cpp: bool) -> PathBuf {
    let target = env!("XBZRLE_TARGET");
    let mut build = cc::Build::new();
    build
        .cargo_metadata(false)
        .target(target)
        .host(target)
        .opt_level(1)
        .debug(true)
        .cpp(cpp)
        .include(crate_dir().join("include"))
        .flag(if cpp { "-std=c++11" } else { "-std=c99" })
        .flags(["-Wall", "-Wextra", "-Werror", "-pedantic"]);
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut command = build.get_compiler().to_command();
    command.args(sources.iter().map(|s| crate_dir().join(s)));
    command.arg("-o").arg(&exe);
    command.arg(library_dir().join(STATIC_LIBRARY));
    command.args(NATIVE_STATIC_LIBS);
    let status = command.status().expect("run the C compiler");
    let args: Vec<_> = command.get_args().collect();
    assert!(
        status.success(),
        "compiling {name} failed: {:?} {args:?}",
        command.get_program()
    );
    exe
}

fn run(exe: &Path, args: &[PathBuf]) {
    let output = Command::new(exe)
        .args(args)
        .output()
        .expect("run test program");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "{} failed: {:?}",
        exe.display(),
        output.status
    );
}

#[test]
fn c_codec_tests_pass() {
    let data = crate_dir().join("../codec/tests/data");
    let exe = build("test_codec", &["tests/c/test_codec.c"], false);
    run(
        &exe,
        &[data.join("qemu-encode.bin"), data.join("qemu-decode.bin")],
    );
}

#[test]
fn c_policy_tests_pass() {
    let exe = build("test_policy", &["tests/c/test_policy.c"], false);
    run(&exe, &[]);
}

#[test]
fn c_race_tests_pass() {
    let exe = build("test_race", &["tests/c/test_race.c"], false);
    run(&exe, &[]);
}

#[test]
fn c_page_cache_tests_pass() {
    let exe = build("test_page_cache", &["tests/c/test_page_cache.c"], false);
    run(&exe, &[]);
}

#[test]
fn migrate_example_ends_with_identical_memory() {
    let exe = build("migrate", &["examples/migrate.c"], false);
    run(&exe, &[]);
}

#[test]
fn header_compiles_and_links_as_cpp() {
    let exe = build("header_cpp", &["tests/c/header_cpp.cpp"], true);
    run(&exe, &[]);
}
