#!/usr/bin/env bash
# Real QEMU migration streams, read and written, checked against Debian's QEMU (7.2 on
# Debian 12). For each recorded QEMU migration stream (docs/data.md) in $QEMU_STREAMS
# (default: their default location, ../shared/qemu-streams):
#  1. the compressed stream and the guest files match the folder's SHA256SUMS;
#  2. `xbzrle stream verify` finds every XBZRLE record identical to the canonical encoding
#     and rebuilds pc.ram with the sha256 listed in the recording's README.md;
#  3. QEMU loads the stream into a paused destination (the recorded `dst_cmd`:
#     -incoming "exec:cat FILE" -S); its guest RAM (QMP pmemsave) has that sha256;
#  4. for each policy (qemu-pre-5cc11c46, qemu, ours), `xbzrle stream rewrite` re-sends it at
#     the recorded cache size; `verify` of the rewrite and QEMU's load of it give the same
#     sha256 again.
# Also the release-mode tests of stream/tests/real_streams.rs (ignored by `cargo test`).
# Negative control: QEMU must refuse a truncated stream, or the loader proves nothing.
# Installs qemu-system-x86 and zstd with apt when missing (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."

streams="${QEMU_STREAMS:-../shared/qemu-streams}"
policies="qemu-pre-5cc11c46 qemu ours"
if [ ! -f "$streams/README.md" ]; then
    echo "no recorded streams in $streams (set QEMU_STREAMS)" >&2
    exit 1
fi
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v zstd >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq qemu-system-x86 zstd >/dev/null
fi
qemu-system-x86_64 --version | head -n 1
start=$SECONDS
cargo build --release --locked -q -p xbzrle-cli
xbzrle="$PWD/target/release/xbzrle"
loader="$PWD/scripts/qemu-stream-load.py"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$streams" && sha256sum --quiet -c SHA256SUMS)
echo "== $streams: SHA256SUMS ok"
# The library's own checks on the real streams (counts, re-encoding, RAM, writer copy).
if ! QEMU_STREAMS="$(cd "$streams" && pwd)" cargo test --release --locked -q -p xbzrle-stream \
    --test real_streams -- --ignored >"$work/real_streams.log" 2>&1; then
    cat "$work/real_streams.log" >&2
    exit 1
fi
grep -E '^test result' "$work/real_streams.log" | sed 's/^/   real_streams.rs: /'

# check FILE EXPECTED_SHA256 WHAT
check() {
    local got
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    if [ "$got" != "$2" ]; then
        echo "FAILED: $3: sha256 $got, expected $2" >&2
        exit 1
    fi
    echo "   ok: $3"
}

# load NAME STREAM: QEMU loads STREAM; its guest RAM must have NAME's sha256.
load() {
    python3 "$loader" "$streams/$1/params.json" "$streams/guest" "$2" "$work/ram.raw" | sed 's/^/   /'
    check "$work/ram.raw" "$expected" "QEMU's guest RAM after loading $(basename "$2")"
    rm -f "$work/ram.raw"
}

# verify NAME STREAM: our rebuild of STREAM must have NAME's sha256.
verify() {
    "$xbzrle" stream verify "$2" --dump-ram "$work/rebuild" >"$work/verify.log" ||
        { cat "$work/verify.log"; exit 1; }
    grep '^XBZRLE records identical' "$work/verify.log" | sed 's/^/   /'
    check "$work/rebuild/pc.ram" "$expected" "our rebuild of $(basename "$2")"
    rm -rf "$work/rebuild"
}

for zst in "$streams"/*.stream.zst; do
    name="$(basename "$zst" .stream.zst)"
    expected="$(grep -F "\`$name.stream.zst\`" "$streams/README.md" | grep -oE '[0-9a-f]{64}' | head -n 1)"
    if [ -z "$expected" ]; then
        echo "no sha256 for $name in $streams/README.md" >&2
        exit 1
    fi
    cache="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["args"]["cache_size"])' \
        "$streams/$name/params.json")"
    echo "== $name (pc.ram sha256 $expected, cache $cache bytes)"
    verify "$name" "$zst"
    zstd -d -q -f "$zst" -o "$work/$name.stream"
    load "$name" "$work/$name.stream"
    rm -f "$work/$name.stream"
    for policy in $policies; do
        out="$work/$name-$policy.stream"
        "$xbzrle" stream rewrite "$zst" "$out" --policy "$policy" --cache-size "$cache" \
            --json "$work/rewrite.json" --force >/dev/null
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1]));
print("   rewrite --policy %s: %d bytes (QEMU: %d), after the first pass %d (QEMU: %d)" % (
    r["policy"], r["stream_bytes_out"], r["stream_bytes_in"],
    r["after_first_pass_out"]["record_bytes"], r["after_first_pass_in"]["record_bytes"]))' \
            "$work/rewrite.json"
        verify "$name" "$out"
        load "$name" "$out"
        rm -f "$out"
    done
    echo "   ($((SECONDS - start)) s so far)"
done

# Negative control: the first half of a stream has no EOF marker; QEMU must fail the load.
zst="$(ls "$streams"/*.stream.zst | head -n 1)"
name="$(basename "$zst" .stream.zst)"
zstd -d -q -c "$zst" | head -c 100000000 >"$work/truncated.stream" || true
if python3 "$loader" "$streams/$name/params.json" "$streams/guest" "$work/truncated.stream" \
    "$work/ram.raw" --timeout 60 >"$work/negative.log" 2>&1; then
    echo "FAILED: QEMU loaded a truncated stream; the load check proves nothing" >&2
    exit 1
fi
if ! grep -q 'load of migration failed' "$work/negative.log"; then
    cat "$work/negative.log" >&2
    echo "FAILED: the truncated stream did not fail for the expected reason" >&2
    exit 1
fi
echo "== negative control: QEMU refuses a truncated stream:"
sed 's/^/   /' "$work/negative.log"
echo "qemu stream test passed in $((SECONDS - start)) s"
