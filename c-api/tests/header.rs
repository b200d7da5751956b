//! The committed header matches the Rust exports: cbindgen's output, the symbols the shared
//! library exports, and the version in Cargo.toml.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{crate_dir, library_dir};

/// The shared library as cargo names it (installed as `libxbzrle.so`).
const SHARED_LIBRARY: &str = "libxbzrle_capi.so";

fn committed_header() -> String {
    std::fs::read_to_string(crate_dir().join("include/xbzrle.h")).expect("read include/xbzrle.h")
}

/// The version macros, derived from Cargo.toml.
fn version_macros() -> String {
    format!(
        "\n#define XBZRLE_VERSION_MAJOR {}\n#define XBZRLE_VERSION_MINOR {}\n\
         #define XBZRLE_VERSION_PATCH {}\n#define XBZRLE_VERSION_STRING \"{}\"\n\
         /** (MAJOR << 16) | (MINOR << 8) | PATCH, as returned by xbzrle_version_number(). */\n\
         #define XBZRLE_VERSION_NUMBER \
         ((XBZRLE_VERSION_MAJOR << 16) | (XBZRLE_VERSION_MINOR << 8) | XBZRLE_VERSION_PATCH)\n",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    )
}

fn generate_header() -> String {
    let mut config =
        cbindgen::Config::from_file(crate_dir().join("cbindgen.toml")).expect("read cbindgen.toml");
    config.after_includes = Some(version_macros());
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir())
        .with_config(config)
        .generate()
        .expect("cbindgen parses src/")
        .write(&mut out);
    String::from_utf8(out).expect("cbindgen writes UTF-8")
}

#[test]
fn committed_header_is_what_cbindgen_generates() {
    let generated = generate_header();
    if std::env::var_os("XBZRLE_BLESS").is_some() {
        std::fs::write(crate_dir().join("include/xbzrle.h"), &generated).expect("write header");
        return;
    }
    assert!(
        committed_header() == generated,
        "c-api/include/xbzrle.h is stale: run `XBZRLE_BLESS=1 cargo test -p xbzrle-capi --test \
         header` and commit the result"
    );
}

#[test]
fn version_macros_match_cargo_toml() {
    let header = committed_header();
    let define = |name: &str| -> String {
        let prefix = format!("#define {name} ");
        header
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} is not defined in the header"))
            .trim()
            .to_owned()
    };
    assert_eq!(
        define("XBZRLE_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        define("XBZRLE_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        define("XBZRLE_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    assert_eq!(
        define("XBZRLE_VERSION_STRING"),
        format!("\"{}\"", env!("CARGO_PKG_VERSION"))
    );
}

/// Names of the functions the header declares: every `xbzrle_name(` outside comments and
/// preprocessor lines that is not a macro.
fn declared_functions(header: &str) -> BTreeSet<String> {
    let mut code = String::new();
    let mut rest = header;
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    code.push_str(rest);
    code.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| {
            // The identifier just before each '('.
            line.split('(')
                .rev()
                .skip(1)
                .filter_map(|before| {
                    before
                        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .next()
                })
                .filter(|name| name.starts_with("xbzrle_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn shared_library_exports_exactly_the_header_functions() {
    let lib = library_dir().join(SHARED_LIBRARY);
    let output = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("run nm (binutils)");
    assert!(output.status.success(), "nm failed on {}", lib.display());
    let exported: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [_, "T", name] => Some(name.to_owned()),
                _ => None,
            },
        )
        .collect();
    let declared = declared_functions(&committed_header());
    assert!(declared.len() >= 10, "header parse found only {declared:?}");
    assert_eq!(exported, declared, "exports of {} vs header", lib.display());
}

#[test]
fn shared_library_has_the_versioned_soname() {
    let lib = library_dir().join(SHARED_LIBRARY);
    let output = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("run readelf (binutils)");
    let dynamic = String::from_utf8_lossy(&output.stdout);
    let expected = format!("Library soname: [{}]", env!("XBZRLE_SONAME"));
    assert!(dynamic.contains(&expected), "{expected} not in:\n{dynamic}");
}
