#!/usr/bin/env bash
# The project's test command: every workspace test (unit, property, golden vectors, C
# tests, CLI), plus the replay of every committed fuzz corpus file on stable Rust (the fuzz
# crate is its own workspace, so it is tested separately).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
cargo test --manifest-path fuzz/Cargo.toml --locked
