//! Gives `libxbzrle.so` a versioned soname and tells the tests which target to build C for.

fn main() {
    let major: u64 = env_number("CARGO_PKG_VERSION_MAJOR");
    let minor: u64 = env_number("CARGO_PKG_VERSION_MINOR");
    // Semver: before 1.0 every minor release may break the ABI, so it is part of the soname.
    let soname = if major == 0 {
        format!("libxbzrle.so.0.{minor}")
    } else {
        format!("libxbzrle.so.{major}")
    };
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    if target.contains("linux") || target.contains("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rustc-env=XBZRLE_SONAME={soname}");
    println!("cargo:rustc-env=XBZRLE_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}

fn env_number(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cargo sets {name} to a number"))
}
