#!/usr/bin/env bash
# scripts/install_files.sh PREFIX LIBSO LIBA LCBENCH
#
# The file-copying half of scripts/install.sh, apart so that tests can install what a build made
# (tests/install): copies the shared library LIBSO as lib/libloopcore.so.MAJOR.MINOR.PATCH with its
# soname link (libloopcore.so.MAJOR) and development link (libloopcore.so), the static library
# LIBA, the public headers (include/loopcore.h, include/loopcore/*.h), lib/pkgconfig/loopcore.pc,
# bin/lcbench from LCBENCH with bin/lcbench-plot (its --plot) and its man page (share/man/man1/lcbench.1, made from lcbench --help),
# under $DESTDIR$PREFIX. Every path it installs is listed, one per line, without $DESTDIR, in
# share/loopcore/install_manifest.txt (itself included), then every folder it had to create,
# as "dir PATH", deepest first: scripts/uninstall.sh reads it.
set -euo pipefail
if [ $# -ne 4 ]; then
    echo "usage: install_files.sh PREFIX LIBSO LIBA LCBENCH" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1%/}
so=$2 a=$3 lcbench=$4
case $prefix in /*) ;; *)
    echo "install_files.sh: PREFIX must be an absolute path, not '$prefix'" >&2
    exit 2
    ;;
esac
dest=${DESTDIR:-}${prefix}

ver() { sed -n "s/^#define LC_VERSION_$1 \([0-9]*\)$/\1/p" "$root/include/loopcore/version.h"; }
major=$(ver MAJOR) minor=$(ver MINOR) patch=$(ver PATCH)
version=$major.$minor.$patch

manifest=() # files and links, then "dir PATH" for each folder this run created, deepest first
dirs=()
mkparents() { # mkparents RELDIR: creates $dest/RELDIR, remembering each folder it made
    local d=$1 made=()
    while [ "$d" != . ] && [ ! -d "$dest/$d" ]; do
        made=("$d" "${made[@]}")
        d=$(dirname "$d")
    done
    mkdir -p "$dest/$1"
    for d in "${made[@]}"; do dirs=("dir $prefix/$d" "${dirs[@]}"); done
}
put() { # put MODE SRC RELPATH
    mkparents "$(dirname "$3")"
    install -m "$1" "$2" "$dest/$3"
    manifest+=("$prefix/$3")
}
link() { # link TARGET RELPATH
    mkparents "$(dirname "$2")"
    ln -sfn "$1" "$dest/$2"
    manifest+=("$prefix/$2")
}

put 0755 "$so" "lib/libloopcore.so.$version"
link "libloopcore.so.$version" "lib/libloopcore.so.$major"
link "libloopcore.so.$major" "lib/libloopcore.so"
put 0644 "$a" lib/libloopcore.a
put 0644 "$root/include/loopcore.h" include/loopcore.h
for h in "$root"/include/loopcore/*.h; do
    put 0644 "$h" "include/loopcore/$(basename "$h")"
done

pc=$(mktemp)
trap 'rm -f "$pc" "${man:-}"' EXIT
cat > "$pc" << PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: loopcore
Description: The asyncio event-loop API in C on libuv, one loop per core
URL: https://github.com/loopcore/loopcore
Version: $version
Requires.private: libuv, libssl, libcrypto
Libs: -L\${libdir} -lloopcore
Libs.private: -lpthread -lm
Cflags: -I\${includedir}
PC
put 0644 "$pc" lib/pkgconfig/loopcore.pc

put 0755 "$lcbench" bin/lcbench
put 0755 "$root/bench/lcbench/lcbench-plot.sh" bin/lcbench-plot
man=$(mktemp)
{
    echo ".TH LCBENCH 1 \"\" \"loopcore $version\" \"User Commands\""
    echo ".SH NAME"
    echo "lcbench \\- HTTP, HTTPS, TCP and TLS echo load generator with wrk's options"
    echo ".SH SYNOPSIS"
    echo ".B lcbench"
    echo "[\\fIoptions\\fR] \\fIurl\\fR"
    echo ".SH DESCRIPTION"
    echo "lcbench loads a server with N connections from a few loops (threads), closed-loop or"
    echo "at a fixed rate (-R, latency from each request's intended send time), and prints"
    echo "throughput, errors and the latency distribution as wrk does. The options:"
    echo ".PP"
    echo ".nf"
    "$lcbench" --help | sed -e 's/\\/\\e/g' -e 's/^\([.'"'"']\)/\\\&\1/'
    echo ".fi"
    echo ".SH SEE ALSO"
    echo ".BR wrk (1)"
} > "$man"
put 0644 "$man" share/man/man1/lcbench.1

mkparents share/loopcore
manifest+=("$prefix/share/loopcore/install_manifest.txt")
printf '%s\n' "${manifest[@]}" "${dirs[@]}" > "$dest/share/loopcore/install_manifest.txt"
echo "installed loopcore $version under ${DESTDIR:-}$prefix (${#manifest[@]} files)"
