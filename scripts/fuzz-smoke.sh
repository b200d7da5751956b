#!/usr/bin/env bash
# Fuzz smoke run: builds every cargo-fuzz target with nightly and runs each for a short
# time from its committed corpus, failing on the first crash. New inputs go to a scratch
# directory, so the committed corpora stay as they are.
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TARGETS   space-separated targets (default: all of `cargo fuzz list`)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cargo +nightly fuzz build
for target in $targets; do
    mkdir -p "$scratch/$target"
    echo "== fuzz $target for ${seconds}s"
    # The first corpus directory receives new inputs; the committed one seeds the run.
    if ! cargo +nightly fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$target.log" 2>&1; then
        tail -n 60 "$scratch/$target.log"
        echo "fuzz target $target FAILED; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$scratch/$target.log" |
        sed "s/^/    $target /"
done
echo "fuzz smoke run passed:" $targets
