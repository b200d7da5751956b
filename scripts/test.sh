#!/usr/bin/env bash
# The project's test command: every workspace test (unit, property, golden vectors, C tests,
# CLI, the sender on guest memory that threads write), plus the replay of every committed
# fuzz corpus file on stable Rust (the fuzz crate is its own workspace, so it is tested
# separately).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
# Feature-gated: the sender on rust-vmm guest memory.
cargo test -p xbzrle-policy --features vm-memory --test vm_memory --locked
cargo test --manifest-path fuzz/Cargo.toml --locked
