#!/usr/bin/env bash
# Live migrations of a running guest between stock QEMU 7.2 and QEMU 7.2 linked with libxbzrle
# (see interop/README.md). Builds (or reuses) the binaries with interop/qemu-build.sh, then runs
# each migration with interop/migrate.py, one at a time, writing interop/results/NAME.json.
#
# usage: interop/migrate.sh [WORKLOAD:SOURCE:DESTINATION ...]
#   WORKLOAD: dirty1024 | kvstore; SOURCE, DESTINATION: stock | codec | codec+cache (page cache
#   in set-associative mode) | codec+cache:direct (direct-mapped mode) | stock-trace.
#   Without arguments: the matrix of the README (12 migrations, about 8 minutes per round).
#   REPEAT=N (default 3) rounds over the list; round K > 1 writes NAME.runK.json.
# Needs the guest kernel and initramfs in ../shared/qemu-streams/guest and the tools in
# ../shared/tools/guest (GUEST=..., TOOLS=... override); installs seabios, qemu-system-data
# (firmware) and python3-numpy (RAM compare) when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XBZRLE_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xbzrle-interop}"
shared="$(dirname "$root")/shared"
guest="${GUEST:-$shared/qemu-streams/guest}"
tools="${TOOLS:-$shared/tools/guest}"

missing=()
for p in seabios qemu-system-data python3-numpy; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stock="$("$root/interop/qemu-build.sh" | awk '$1 == "stock" { print $2 }')"
bin_dir="$(dirname "$(dirname "$stock")")"

runs=("$@")
if ((${#runs[@]} == 0)); then
    for w in dirty1024 kvstore; do
        runs+=("$w:stock:stock" "$w:codec:stock" "$w:stock:codec" "$w:codec+cache:stock"
            "$w:codec+cache:codec" "$w:codec+cache:direct:stock")
    done
fi
mkdir -p "$root/interop/results"
for ((round = 1; round <= ${REPEAT:-3}; round++)); do
    for run in "${runs[@]}"; do
        workload="${run%%:*}"
        rest="${run#*:}"
        # The source may carry a mode (codec+cache:direct); the destination is the last field.
        destination="${rest##*:}"
        source="${rest%:*}"
        name="$workload-${source/:/-}-to-$destination"
        ((round == 1)) || name+=".run$round"
        /usr/bin/python3 "$root/interop/migrate.py" --bin-dir "$bin_dir" --workload "$workload" \
            --source "$source" --destination "$destination" --tools "$tools" --guest "$guest" \
            --out "$root/interop/results/$name.json" --work "$cache/runs/$name"
    done
done
/usr/bin/python3 "$root/interop/summarize.py" "$root"/interop/results/*.json
