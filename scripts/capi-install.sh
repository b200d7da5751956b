#!/usr/bin/env bash
# Builds libxbzrle (release) and installs it the way C users expect:
#   PREFIX/include/xbzrle.h
#   PREFIX/lib/libxbzrle.so.X.Y.Z, libxbzrle.so.SONAME-VERSION -> it, libxbzrle.so -> it
#   PREFIX/lib/libxbzrle.a
#   PREFIX/lib/pkgconfig/xbzrle.pc
# or removes exactly those files again.
#
# Usage: scripts/capi-install.sh PREFIX               build and install
#        scripts/capi-install.sh --uninstall PREFIX   remove what an install put there
# Environment:
#   DESTDIR=DIR  stage the files under DIR (DIR/PREFIX/...) while xbzrle.pc still says PREFIX,
#                as packagers expect; PREFIX must then be absolute
#   LIBDIR=DIR   libraries and pkgconfig/ in DIR instead of PREFIX/lib (absolute)
#   NO_BUILD=1   install what an earlier run of this script built (e.g. build as a user, then
#                install as root)
set -euo pipefail

usage() {
    echo "usage: $0 [--uninstall] PREFIX" >&2
    exit 2
}
mode=install
if [[ ${1:-} == --uninstall ]]; then
    mode=uninstall
    shift
fi
[[ $# -eq 1 && -n $1 ]] || usage
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
destdir="${DESTDIR:-}"
if [[ -n $destdir && $1 != /* ]]; then
    echo "$0: with DESTDIR, PREFIX must be an absolute path (not $1)" >&2
    exit 2
fi
# Absolute, without creating anything (the prefix may exist only on the target system).
prefix="$(realpath -m "$1")"
libdir="$(realpath -m "${LIBDIR:-$prefix/lib}")"
includedir="$prefix/include"
# Where the files go now: under DESTDIR when staging.
inc_dest="$destdir$includedir"
lib_dest="$destdir$libdir"

if [[ $mode == uninstall ]]; then
    # Follow the links the install made: libxbzrle.so -> soname -> libxbzrle.so.X.Y.Z.
    files=("$inc_dest/xbzrle.h" "$lib_dest/libxbzrle.a" "$lib_dest/pkgconfig/xbzrle.pc")
    if [[ -L $lib_dest/libxbzrle.so ]]; then
        soname="$(readlink "$lib_dest/libxbzrle.so")"
        files+=("$lib_dest/libxbzrle.so" "$lib_dest/$soname")
        if [[ -L $lib_dest/$soname ]]; then
            files+=("$lib_dest/$(readlink "$lib_dest/$soname")")
        fi
    fi
    removed=0
    for file in "${files[@]}"; do
        if [[ -e $file || -L $file ]]; then
            rm -f -- "$file"
            echo "removed $file"
            removed=$((removed + 1))
        fi
    done
    echo "uninstalled libxbzrle from $destdir$prefix ($removed files)"
    exit 0
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
built="$target_dir/release"
# The system libraries the Rust standard library needs when libxbzrle.a is linked
# statically, as rustc reports them for this build; kept next to the build for NO_BUILD.
native_libs_file="$built/xbzrle-native-static-libs.txt"

if [[ -z "${NO_BUILD:-}" ]]; then
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    # `cargo rustc` builds the same cdylib and staticlib as `cargo build`, and passes the
    # flag that makes rustc print the staticlib's native libraries (cargo replays the note
    # when nothing needs rebuilding).
    cargo rustc --release -p xbzrle-capi --lib --manifest-path "$root/Cargo.toml" \
        -- --print native-static-libs 2>&1 | tee "$log" >&2
    native_libs="$(sed -n 's/^note: native-static-libs: //p' "$log" | tail -n 1)"
    if [[ -z $native_libs ]]; then
        echo "$0: rustc did not report the native static libraries" >&2
        exit 1
    fi
    printf '%s\n' "$native_libs" > "$native_libs_file"
fi
if [[ ! -s $native_libs_file ]]; then
    echo "$0: $native_libs_file is missing: run this script once without NO_BUILD" >&2
    exit 1
fi
native_libs="$(cat "$native_libs_file")"

header="$root/c-api/include/xbzrle.h"
# The header's version is checked against Cargo.toml by c-api/tests/header.rs.
version="$(sed -n 's/^#define XBZRLE_VERSION_STRING "\(.*\)"$/\1/p' "$header")"
# Cargo names the files after the crate (xbzrle_capi); C users link -lxbzrle.
built_so="$built/libxbzrle_capi.so"
built_a="$built/libxbzrle_capi.a"
soname="$(readelf -d "$built_so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
if [[ -z "$version" || -z "$soname" ]]; then
    echo "$0: cannot read the version from $header or the soname of $built_so" >&2
    exit 1
fi

install -d "$inc_dest" "$lib_dest/pkgconfig"
install -m 644 "$header" "$inc_dest/xbzrle.h"
install -m 755 "$built_so" "$lib_dest/libxbzrle.so.$version"
ln -sfn "libxbzrle.so.$version" "$lib_dest/$soname"
ln -sfn "$soname" "$lib_dest/libxbzrle.so"
install -m 644 "$built_a" "$lib_dest/libxbzrle.a"

cat > "$lib_dest/pkgconfig/xbzrle.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=$libdir
includedir=\${prefix}/include

Name: xbzrle
Description: QEMU-compatible XBZRLE delta codec, page cache and migration policy
Version: $version
Libs: -L\${libdir} -lxbzrle
Libs.private: $native_libs
Cflags: -I\${includedir}
PC

echo "installed libxbzrle $version ($soname) under $destdir$prefix"
