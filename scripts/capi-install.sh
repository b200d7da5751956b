#!/usr/bin/env bash
# Builds libxbzrle (release) and installs it the way C users expect:
#   PREFIX/include/xbzrle.h
#   PREFIX/lib/libxbzrle.so.X.Y.Z, libxbzrle.so.SONAME-VERSION -> it, libxbzrle.so -> it
#   PREFIX/lib/libxbzrle.a
#   PREFIX/lib/pkgconfig/xbzrle.pc
# Usage: scripts/capi-install.sh PREFIX        (LIBDIR=... overrides PREFIX/lib;
#                                                NO_BUILD=1 installs what is already built)
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$(mkdir -p "$1" && cd "$1" && pwd)"
libdir="${LIBDIR:-$prefix/lib}"
includedir="$prefix/include"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
built="$target_dir/release"

if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p xbzrle-capi --manifest-path "$root/Cargo.toml"
fi

header="$root/c-api/include/xbzrle.h"
# The header's version is checked against Cargo.toml by c-api/tests/header.rs.
version="$(sed -n 's/^#define XBZRLE_VERSION_STRING "\(.*\)"$/\1/p' "$header")"
soname="$(readelf -d "$built/libxbzrle.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
if [[ -z "$version" || -z "$soname" ]]; then
    echo "$0: cannot read the version from $header or the soname of $built/libxbzrle.so" >&2
    exit 1
fi

install -d "$includedir" "$libdir/pkgconfig"
install -m 644 "$header" "$includedir/xbzrle.h"
install -m 755 "$built/libxbzrle.so" "$libdir/libxbzrle.so.$version"
ln -sfn "libxbzrle.so.$version" "$libdir/$soname"
ln -sfn "$soname" "$libdir/libxbzrle.so"
install -m 644 "$built/libxbzrle.a" "$libdir/libxbzrle.a"

# Libs.private: what the Rust standard library needs when libxbzrle.a is linked
# statically (rustc --print native-static-libs).
cat > "$libdir/pkgconfig/xbzrle.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=$libdir
includedir=\${prefix}/include

Name: xbzrle
Description: QEMU-compatible XBZRLE delta codec, page cache and migration policy
URL: https://example.invalid/xbzrle
Version: $version
Libs: -L\${libdir} -lxbzrle
Libs.private: -lgcc_s -lutil -lrt -lpthread -lm -ldl
Cflags: -I\${includedir}
PC

echo "installed libxbzrle $version ($soname) under $prefix"
