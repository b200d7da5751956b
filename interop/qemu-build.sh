#!/usr/bin/env bash
# Builds Debian's QEMU 7.2 (qemu-system-x86_64) from the source package, fetched through apt at
# run time, and makes four binaries from that one build:
#   stock        Debian's source as is
#   codec        migration/xbzrle.c replaced by libxbzrle's drop-in codec
#   codec+cache  migration/page_cache.c replaced as well, by a shim over libxbzrle's page
#                cache (direct-mapped or set-associative: interop/shims/page_cache.c)
#   stock-trace  QEMU's own page cache, every decision written to a file (records the trace
#                that c-api's page-cache tests replay: interop/shims/page_cache_trace.c)
# No QEMU source is in this repository: what replaces QEMU's files are the project's shims in
# interop/shims/, compiled against QEMU's headers at build time.
#
# usage: interop/qemu-build.sh           build (or reuse) the binaries, print "NAME PATH" lines
#        interop/qemu-build.sh --check   (CI) no emulator: compile the shims against QEMU's
#                                        headers and run interop/shims/check.c, which drives
#                                        them and QEMU's own page_cache.c and xbzrle.c side by
#                                        side (linked with QEMU's util library and libxbzrle.a)
#
# Environment: XBZRLE_QEMU_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/xbzrle-interop)
# holds a private apt state (deb-src twins of this machine's Debian entries; the machine's apt
# configuration is not changed), per source version the unpacked source, the meson build and
# the binaries ($XBZRLE_QEMU_CACHE/qemu-VERSION/bin/NAME/qemu-system-x86_64), and the
# installed libxbzrle. Run the binaries with `-L /usr/share/seabios -L /usr/share/qemu`
# (Debian's seabios and qemu-system-data packages; the source package has no firmware).
#
# How the variants are made: QEMU's meson build compiles migration/xbzrle.c and page_cache.c
# twice (into libcommon, linked as objects, and into libmigration.fa, an archive). The stock
# emulator is built with ninja (5-15 min on 2 cores, once per source version). Each variant is
# then linked with ninja's own link command for it, the libcommon objects swapped for the
# shim objects (compiled with the compile command QEMU uses for the files they replace) and
# libxbzrle.a placed first in the link group, so that the archived copies in libmigration.fa
# are never pulled in. ld's --trace-symbol output proves it: the script fails unless every
# replaced function is defined exactly once, by the intended object. A change of the library
# or the shims costs a relink (seconds), not a build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XBZRLE_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xbzrle-interop}"
mode="${1:-build}"
case "$mode" in
    build | --check) ;;
    *)
        sed -n '2,/^set -euo pipefail/{/^set/d;p}' "$0" >&2
        exit 2
        ;;
esac
log() { printf '[qemu-build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Build dependencies of the configuration below (Debian names).
build_deps=(dpkg-dev meson ninja-build pkg-config gcc g++ python3 python3-venv flex bison
    libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev binutils)
install_deps() {
    local missing=()
    for p in "${build_deps[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing build dependencies: ${missing[*]}"
        if [[ $(id -u) -ne 0 ]]; then
            echo "$0: run as root or install: apt-get install ${missing[*]}" >&2
            exit 1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

# A private apt configuration whose only sources are deb-src twins of this machine's
# Debian entries (deb822 .sources and one-line .list files).
apt_dir="$cache/apt"
apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "APT::Sandbox::User=root")
private_apt() {
    mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    shopt -s nullglob
    local deb822=(/etc/apt/sources.list.d/*.sources) lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    shopt -u nullglob
    if ((${#deb822[@]})); then
        awk 'BEGIN { RS = ""; ORS = "\n\n" }
             /(^|\n)Types:[^\n]*deb/ && /(^|\n)URIs:[^\n]*debian/ { sub(/Types:[^\n]*/, "Types: deb-src"); print }' \
            "${deb822[@]}" >"$apt_dir/sources.list.d/deb-src.sources"
    fi
    : >"$apt_dir/sources.list"
    for f in "${lists[@]}"; do
        [[ -f $f ]] && sed -n 's/^deb \(.*debian.*\)/deb-src \1/p' "$f" >>"$apt_dir/sources.list"
    done
    if [[ ! -s $apt_dir/sources.list && ! -s $apt_dir/sources.list.d/deb-src.sources ]]; then
        echo "$0: no Debian apt source found in /etc/apt to derive deb-src entries from" >&2
        exit 1
    fi
    apt-get "${apt_opts[@]}" -qq update
}

# Newest QEMU 7.2 source version in the private lists, e.g. 1:7.2+dfsg-7+deb12u18.
source_version() {
    apt-cache "${apt_opts[@]}" showsrc qemu | sed -n 's/^Version: //p' | grep -E '^([0-9]+:)?7\.2[+.]' |
        sort -V | tail -n 1
}

fetch_source() {
    private_apt
    version="$(source_version)"
    if [[ -z $version ]]; then
        echo "$0: no QEMU 7.2 source package in this machine's Debian suites" >&2
        exit 1
    fi
    work="$cache/qemu-${version#*:}"
    if [[ ! -f $work/source.done ]]; then
        log "fetching QEMU source $version"
        rm -rf "$work"
        mkdir -p "$work/fetch"
        (cd "$work/fetch" && apt-get "${apt_opts[@]}" -qq source "qemu=$version" >/dev/null)
        mv "$work/fetch"/qemu-*/ "$work/src"
        rm -rf "$work/fetch"
        # The source package has no firmware blobs: meson would stop on edk2-*.fd.bz2.
        sed -i 's/^\( *unpack_edk2_blobs = \)bzip2\.found()$/\1false/' "$work/src/meson.build"
        grep -q '^ *unpack_edk2_blobs = false$' "$work/src/meson.build" || {
            echo "$0: could not turn off the edk2 unpacking in $work/src/meson.build" >&2
            exit 1
        }
        touch "$work/source.done"
    fi
    src="$work/src"
    build="$work/build"
    log "QEMU source $version in $src"
}

configure_qemu() {
    if [[ ! -f $build/build.ninja ]]; then
        log "configuring QEMU in $build"
        mkdir -p "$build"
        (cd "$build" && "$src/configure" --target-list=x86_64-softmmu --disable-docs \
            --disable-tools --disable-werror >configure.log 2>&1) || {
            tail -n 30 "$build/configure.log" >&2
            exit 1
        }
    fi
}

# Installs libxbzrle (release build) into $cache/prefix; sets lib_a and lib_private.
install_library() {
    local prefix="$cache/prefix"
    "$root/scripts/capi-install.sh" "$prefix" >/dev/null
    lib_a="$prefix/lib/libxbzrle.a"
    lib_include="$prefix/include"
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    read -r -a lib_private <<<"$(pkg-config --static --libs-only-l xbzrle | sed 's/-lxbzrle//')"
}

cmds="$root/interop/qemu_cmds.py"
renamed_cache_functions=(-Dcache_init=qemu_cache_init -Dcache_fini=qemu_cache_fini
    -Dcache_is_cached=qemu_cache_is_cached -Dget_cached_data=qemu_get_cached_data
    -Dcache_insert=qemu_cache_insert)

# Compiles SOURCE into OUT with the compile command QEMU uses for OBJECT (a path relative to
# the build directory), plus extra flags.
compile_like() {
    local object="$1" source="$2" out="$3"
    shift 3
    local cmd
    cmd="$(python3 "$cmds" compile "$build" "$object" "$source" "$out" "$@")"
    (cd "$build" && eval "$cmd")
}

# The shim objects, and QEMU's own page_cache.c with its functions renamed qemu_* (for the
# recording variant and the check), in DIR.
compile_shims() {
    local dir="$1" obj=libcommon.fa.p/migration
    mkdir -p "$dir"
    local strict=(-I"$lib_include" -Werror)
    compile_like "$obj"_xbzrle.c.o "$root/interop/shims/xbzrle.c" "$dir/xbzrle.o" "${strict[@]}"
    compile_like "$obj"_page_cache.c.o "$root/interop/shims/page_cache.c" "$dir/page_cache.o" "${strict[@]}"
    compile_like "$obj"_page_cache.c.o "$root/interop/shims/page_cache_trace.c" \
        "$dir/page_cache_trace.o" "${strict[@]}"
    compile_like "$obj"_page_cache.c.o "$src/migration/page_cache.c" "$dir/qemu_page_cache.o" \
        "${renamed_cache_functions[@]}"
}

# Links VARIANT from the stock link command and checks with ld's --trace-symbol output that
# every replaced function is defined by the intended object and nowhere else.
link_variant() {
    local variant="$1" objs="$work/shim-objs" out="$work/bin/$1"
    local obj=libcommon.fa.p/migration
    local -a args=() traced=() 
    local -A owner=()
    case "$variant" in
        codec | codec+cache)
            args+=(--replace "$obj"_xbzrle.c.o="$objs/xbzrle.o" --group-first "$lib_a")
            owner[xbzrle_encode_buffer]='libxbzrle\.a\('
            owner[xbzrle_decode_buffer]='libxbzrle\.a\('
            ;;&
        codec+cache)
            args+=(--replace "$obj"_page_cache.c.o="$objs/page_cache.o")
            for f in cache_init cache_fini cache_is_cached get_cached_data cache_insert; do
                owner[$f]='shim-objs/page_cache\.o'
            done
            owner[xbzrle_page_cache_insert]='libxbzrle\.a\('
            ;;
        stock-trace)
            args+=(--replace "$obj"_page_cache.c.o="$objs/page_cache_trace.o,$objs/qemu_page_cache.o")
            for f in cache_init cache_fini cache_is_cached get_cached_data cache_insert; do
                owner[$f]='shim-objs/page_cache_trace\.o'
                owner[qemu_$f]='shim-objs/qemu_page_cache\.o'
            done
            ;;
    esac
    local sym
    for sym in "${!owner[@]}"; do
        args+=(--trace "$sym")
    done
    mkdir -p "$out"
    python3 "$cmds" link "$build" "$out/qemu-system-x86_64" "${args[@]}" -- "${lib_private[@]}" >"$out/link.cmd"
    log "linking $variant"
    (cd "$build" && eval "$(cat "$out/link.cmd")") >"$out/trace-symbols.log" 2>&1 || {
        cat "$out/trace-symbols.log" >&2
        exit 1
    }
    # ld prints "FILE: definition of SYMBOL" for every file that defines a traced symbol.
    for sym in "${!owner[@]}"; do
        local defs
        defs="$(grep -E ": definition of $sym\$" "$out/trace-symbols.log" || true)"
        if [[ $(grep -c . <<<"$defs") -ne 1 ]] || ! grep -Eq "${owner[$sym]}" <<<"$defs"; then
            echo "$0: $variant: $sym must be defined once, by ${owner[$sym]}; ld says:" >&2
            echo "${defs:-(no definition)}" >&2
            exit 1
        fi
    done
}

stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }

build_all() {
    install_deps
    fetch_source
    configure_qemu
    if [[ ! -x $work/bin/stock/qemu-system-x86_64 ]]; then
        log "building stock qemu-system-x86_64 (5-15 min on 2 cores)"
        local t0=$SECONDS
        ninja -C "$build" qemu-system-x86_64 >"$work/ninja.log" 2>&1 || {
            tail -n 40 "$work/ninja.log" >&2
            exit 1
        }
        mkdir -p "$work/bin/stock"
        cp "$build/qemu-system-x86_64" "$work/bin/stock/"
        log "stock build took $((SECONDS - t0)) s"
    fi
    install_library
    local key
    key="$(stamp "$root"/interop/shims/*.c "$lib_a" "$0" "$cmds")"
    if [[ ! -f $work/bin/variants.stamp || $(cat "$work/bin/variants.stamp") != "$key" ]]; then
        compile_shims "$work/shim-objs"
        for v in codec codec+cache stock-trace; do
            link_variant "$v"
        done
        echo "$key" >"$work/bin/variants.stamp"
    fi
    for v in stock codec codec+cache stock-trace; do
        echo "$v $work/bin/$v/qemu-system-x86_64"
    done
}

check_shims() {
    install_deps
    fetch_source
    configure_qemu
    local t0=$SECONDS dir="$work/check"
    # Generated headers (config, QAPI, trace) and QEMU's util library.
    ninja -C "$build" libcommon.fa.p/migration_page_cache.c.o libqemuutil.a libqom.fa >"$work/ninja-check.log" 2>&1 || {
        tail -n 40 "$work/ninja-check.log" >&2
        exit 1
    }
    install_library
    compile_shims "$dir"
    compile_like libcommon.fa.p/migration_xbzrle.c.o "$src/migration/xbzrle.c" "$dir/qemu_xbzrle.o" \
        -Dxbzrle_encode_buffer=qemu_xbzrle_encode_buffer -Dxbzrle_decode_buffer=qemu_xbzrle_decode_buffer
    compile_like libcommon.fa.p/migration_page_cache.c.o "$root/interop/shims/check.c" "$dir/check.o" \
        -I"$lib_include" -Werror
    log "linking the shim check"
    (cd "$build" && c++ -o "$dir/check" "$dir/check.o" "$dir/page_cache.o" "$dir/xbzrle.o" \
        "$dir/qemu_page_cache.o" "$dir/qemu_xbzrle.o" -Wl,--start-group libqemuutil.a libqom.fa -Wl,--end-group "$lib_a" \
        $(pkg-config --libs glib-2.0 gmodule-2.0) "${lib_private[@]}")
    "$dir/check"
    log "shim check done in $((SECONDS - t0)) s"
}

if [[ $mode == --check ]]; then
    check_shims
else
    build_all
fi
