#!/usr/bin/env bash
# Runs the codec tests (crate `xbzrle`) for aarch64 under qemu-user, so that the NEON kernel
# is tested for real on an x86-64 machine.
#
# Uses Debian's Rust toolchain (its aarch64 standard library is a Debian package) and links
# statically: dynamically linked aarch64 test binaries hang in the emulator when they start
# a thread. Installs the Debian packages it needs when they are missing (needs root).
#
# Environment: CARGO_TARGET_DIR (default: target/aarch64-qemu, kept apart from the host
# builds of the other toolchain). Extra arguments go to `cargo test`, e.g.
#   scripts/test-aarch64.sh --test kernels
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu
    libc6-dev-arm64-cross qemu-user-static)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export RUSTC=/usr/bin/rustc
export RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/aarch64-qemu}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
# No rustup proxy may pick another toolchain.
unset RUSTUP_TOOLCHAIN

echo "aarch64 tests with $(/usr/bin/rustc --version), under $(qemu-aarch64-static --version | head -n1)" >&2
exec /usr/bin/cargo test -p xbzrle --target aarch64-unknown-linux-gnu --locked "$@"
