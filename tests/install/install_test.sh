#!/usr/bin/env bash
# The installed library, used from outside the tree: scripts/install_files.sh (the copying half
# of scripts/install.sh) installs what the build made into a temporary prefix, first under a
# DESTDIR (then scripts/uninstall.sh must remove exactly what it put there), then for real; the
# spec's examples are built out of tree with only `cc $(pkg-config --cflags --libs loopcore)`,
# against the shared library and, with --static, the static one, and run; and a CMake project
# (pkg_check_modules) builds and runs them too.
# Args: install_files.sh uninstall.sh LIBSO LIBA LCBENCH CMAKELISTS EXAMPLE_SOURCES...
set -uo pipefail
. "$(dirname "$0")/cases.sh"
install_files=$1 uninstall=$2 so=$3 a=$4 lcbench=$5 cmakelists=$6
shift 6
examples=$(cd "$(dirname "$1")" && pwd)
tmp=${TEST_TMPDIR:-$(mktemp -d)}
prefix=$tmp/prefix
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig

destdir_install_then_uninstall() {
    local d=$tmp/stage
    DESTDIR=$d "$install_files" "$prefix" "$so" "$a" "$lcbench" || return 1
    [ ! -e "$prefix" ] || { echo "installed outside DESTDIR"; return 1; }
    local n
    n=$(find "$d" -type f -o -type l | wc -l)
    [ "$n" -ge 15 ] || { echo "only $n files installed"; return 1; }
    touch "$d$prefix/lib/not_ours"
    DESTDIR=$d "$uninstall" "$prefix" || return 1
    local left
    left=$(cd "$d$prefix" && find . -type f -o -type l | sort)
    [ "$left" = "./lib/not_ours" ] || { echo "left after uninstall: $left"; return 1; }
}

install_layout() {
    "$install_files" "$prefix" "$so" "$a" "$lcbench" || return 1
    local major minor patch
    read -r major minor patch <<< "$(pkg-config --modversion loopcore | tr . ' ')"
    [ -f "$prefix/lib/libloopcore.so.$major.$minor.$patch" ] &&
        [ "$(readlink "$prefix/lib/libloopcore.so.$major")" = "libloopcore.so.$major.$minor.$patch" ] &&
        [ "$(readlink "$prefix/lib/libloopcore.so")" = "libloopcore.so.$major" ] &&
        [ -f "$prefix/lib/libloopcore.a" ] && [ -f "$prefix/include/loopcore.h" ] &&
        [ -f "$prefix/include/loopcore/version.h" ] && [ -x "$prefix/bin/lcbench" ] && [ -x "$prefix/bin/lcbench-plot" ] &&
        [ "$(head -c 11 "$prefix/share/man/man1/lcbench.1")" = ".TH LCBENCH" ] &&
        grep -q -- '--connections' "$prefix/share/man/man1/lcbench.1" &&
        grep -q libuv <<< "$(pkg-config --print-requires-private loopcore)" &&
        "$prefix/bin/lcbench" --version > /dev/null
}

check_run() { # check_run BINARY EXAMPLE
    local out
    case $2 in
    hello_world) out=$("$1") && [ "$out" = "Hello World" ] ;;
    hello_world_task) out=$("$1") && [ "$out" = "Hello World!" ] ;;
    run_in_executor) out=$("$1") && [ "$(echo "$out" | wc -l)" -ge 3 ] ;;
    esac || { echo "$2 printed: $out"; return 1; }
}

shared() {
    local ex bin deps
    for ex in hello_world hello_world_task run_in_executor; do
        bin=$tmp/$ex.shared
        # shellcheck disable=SC2046
        cc -Wall -Wextra -Werror "$examples/$ex.c" -o "$bin" \
            $(pkg-config --cflags --libs loopcore) || return 1
        # (no "ldd | grep -q": grep's early exit would fail the pipeline under pipefail)
        deps=$(LD_LIBRARY_PATH=$prefix/lib ldd "$bin")
        grep -qF "=> $prefix/lib/libloopcore.so." <<< "$deps" ||
            { echo "$ex: not linked to the installed libloopcore.so: $deps"; return 1; }
        LD_LIBRARY_PATH=$prefix/lib check_run "$bin" "$ex" || return 1
    done
}

static() {
    local ex bin flags
    # --static: the static archive and every private requirement the .pc lists.
    flags=$(pkg-config --static --cflags --libs loopcore | sed 's/-lloopcore/-l:libloopcore.a/')
    for ex in hello_world hello_world_task run_in_executor; do
        bin=$tmp/$ex.static
        # shellcheck disable=SC2086
        cc -Wall -Wextra -Werror "$examples/$ex.c" -o "$bin" $flags || return 1
        grep -q libloopcore <<< "$(ldd "$bin")" && { echo "$ex: linked dynamically"; return 1; }
        check_run "$bin" "$ex" || return 1
    done
}

version_matches() {
    local bin=$tmp/version
    # shellcheck disable=SC2046
    cc -x c - -o "$bin" $(pkg-config --cflags --libs loopcore) << 'C' || return 1
#include <stdio.h>
#include <string.h>
#include "loopcore.h"
int main(void)
{
    if (lc_version() != LC_VERSION_HEX || strcmp(lc_version_string(), LC_VERSION_STRING) != 0)
        return 1;
    puts(lc_version_string());
    return 0;
}
C
    [ "$(LD_LIBRARY_PATH=$prefix/lib "$bin")" = "$(pkg-config --modversion loopcore)" ]
}

cmake_project() {
    local src=$tmp/cmake-src build=$tmp/cmake-build ex
    mkdir -p "$src" && cp "$cmakelists" "$src/CMakeLists.txt"
    cmake -S "$src" -B "$build" -DCMAKE_PREFIX_PATH="$prefix" -DLC_EXAMPLES="$examples" > /dev/null &&
        cmake --build "$build" > /dev/null || return 1
    for ex in hello_world hello_world_task run_in_executor; do
        LD_LIBRARY_PATH=$prefix/lib check_run "$build/$ex" "$ex" || return 1
    done
}

case_run destdir_install_then_uninstall destdir_install_then_uninstall
case_run install_layout install_layout
case_run version_of_headers_library_and_pc_agree version_matches
case_run examples_with_pkg_config_shared shared
case_run examples_with_pkg_config_static static
case_run examples_with_cmake_pkg_check_modules cmake_project
case_exit
