#!/usr/bin/env bash
# End-to-end check of the C API as a C user sees it: install into a temporary prefix, build
# examples/migrate.c with pkg-config against the shared and the static library and run both,
# then build and run the C tests under AddressSanitizer + UBSan (gcc; instruments the C side)
# and under valgrind memcheck (instruments the Rust side too).
# Needs: cargo, gcc, g++, pkg-config, binutils (readelf), valgrind.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
capi="$root/c-api"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

"$root/scripts/capi-install.sh" "$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cflags=(-std=c99 -Wall -Wextra -Werror -pedantic -O2)

echo "== pkg-config: $(pkg-config --modversion xbzrle); cflags $(pkg-config --cflags xbzrle)"
# Libs.private is what rustc says the staticlib needs (an empty crate has the same needs:
# the library links no native code of its own).
probe_libs="$(echo | rustc --crate-type staticlib --crate-name probe --print native-static-libs \
    -o "$work/libprobe.a" - 2>&1 | sed -n 's/^note: native-static-libs: //p')"
pc_libs="$(sed -n 's/^Libs.private: //p' "$prefix/lib/pkgconfig/xbzrle.pc")"
if [[ -z $pc_libs || $pc_libs != "$probe_libs" ]]; then
    echo "Libs.private is '$pc_libs', rustc says '$probe_libs'" >&2
    exit 1
fi

echo "== migrate.c, shared library"
# shellcheck disable=SC2046 # pkg-config output is meant to be split into words
cc "${cflags[@]}" "$capi/examples/migrate.c" $(pkg-config --cflags --libs xbzrle) \
    -Wl,-rpath,"$(pkg-config --variable=libdir xbzrle)" -o "$work/migrate-shared"
readelf -d "$work/migrate-shared" | grep -q "NEEDED.*libxbzrle\.so\." \
    || { echo "migrate-shared does not depend on the versioned soname" >&2; exit 1; }
"$work/migrate-shared"

echo "== migrate.c, static library"
static_lib="$(pkg-config --variable=libdir xbzrle)/libxbzrle.a"
# shellcheck disable=SC2046
cc "${cflags[@]}" "$capi/examples/migrate.c" $(pkg-config --cflags xbzrle) "$static_lib" \
    $(pkg-config --static --libs-only-l xbzrle | sed 's/-lxbzrle//') -o "$work/migrate-static"
if readelf -d "$work/migrate-static" | grep -q "NEEDED.*libxbzrle"; then
    echo "migrate-static still needs libxbzrle.so" >&2
    exit 1
fi
"$work/migrate-static"

echo "== header as C++"
# shellcheck disable=SC2046
g++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only $(pkg-config --cflags xbzrle) \
    "$capi/tests/c/header_cpp.cpp"

echo "== C tests under AddressSanitizer + UndefinedBehaviorSanitizer"
asan=(-std=c99 -Wall -Wextra -Werror -pedantic -g -O1 -fno-omit-frame-pointer
    -fsanitize=address,undefined -fno-sanitize-recover=all)
# allocator_may_return_null=1: test_policy asks for 2^60-byte caches and checks that the
# library turns the allocator's NULL into XBZRLE_ERR_NO_MEMORY; by default ASan would report
# such a request as an error itself instead of returning NULL as malloc does.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1
for test in test_codec test_policy test_race migrate; do
    src="$capi/tests/c/$test.c"
    [[ $test == migrate ]] && src="$capi/examples/migrate.c"
    # shellcheck disable=SC2046
    gcc "${asan[@]}" -I"$capi/tests/c" "$src" $(pkg-config --cflags xbzrle) "$static_lib" \
        $(pkg-config --static --libs-only-l xbzrle | sed 's/-lxbzrle//') -o "$work/$test-asan"
done
data="$root/codec/tests/data"
"$work/test_codec-asan" "$data/qemu-encode.bin" "$data/qemu-decode.bin"
"$work/test_policy-asan"
"$work/test_race-asan" 2
"$work/migrate-asan" > /dev/null

echo "== C tests under valgrind memcheck (checks the library's own accesses as well)"
for test in test_codec test_policy; do
    # shellcheck disable=SC2046
    gcc -std=c99 -g -O1 -I"$capi/tests/c" "$capi/tests/c/$test.c" $(pkg-config --cflags xbzrle) \
        "$static_lib" $(pkg-config --static --libs-only-l xbzrle | sed 's/-lxbzrle//') \
        -o "$work/$test-plain"
done
memcheck=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite)
"${memcheck[@]}" "$work/test_codec-plain" "$data/qemu-encode.bin" "$data/qemu-decode.bin"
"${memcheck[@]}" "$work/test_policy-plain"
"${memcheck[@]}" "$work/migrate-static" > /dev/null
echo "== DESTDIR staging and uninstall"
stage="$work/stage"
staged_prefix="/opt/xbzrle-capi-test-$$"
DESTDIR="$stage" NO_BUILD=1 "$root/scripts/capi-install.sh" "$staged_prefix"
[[ ! -e $staged_prefix ]] || { echo "the staged install wrote outside DESTDIR" >&2; exit 1; }
staged_pc="$stage$staged_prefix/lib/pkgconfig/xbzrle.pc"
grep -qx "prefix=$staged_prefix" "$staged_pc" && grep -qx "libdir=$staged_prefix/lib" "$staged_pc" \
    || { echo "the staged xbzrle.pc does not name the final prefix:" >&2; cat "$staged_pc" >&2; exit 1; }
[[ $(find "$stage" \( -type f -o -type l \) | wc -l) -eq 6 ]] \
    || { echo "the staged install is not 6 files and links" >&2; find "$stage" >&2; exit 1; }
DESTDIR="$stage" "$root/scripts/capi-install.sh" --uninstall "$staged_prefix"
"$root/scripts/capi-install.sh" --uninstall "$prefix"
for dir in "$stage" "$prefix"; do
    left="$(find "$dir" \( -type f -o -type l \))"
    [[ -z $left ]] || { echo "uninstall left files behind: $left" >&2; exit 1; }
done
echo "capi-test: all passed"
