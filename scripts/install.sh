#!/usr/bin/env bash
# scripts/install.sh [PREFIX]
#
# Builds loopcore with -c opt and installs it under PREFIX (default /usr/local), or under
# $DESTDIR$PREFIX for packagers: lib/libloopcore.so.MAJOR.MINOR.PATCH and its soname links,
# lib/libloopcore.a, include/loopcore.h and include/loopcore/*.h, lib/pkgconfig/loopcore.pc
# (libuv and OpenSSL as private requirements), bin/lcbench and its man page. Runs the set-up step
# first (scripts/setup.sh: the Debian packages the build needs). scripts/uninstall.sh [PREFIX]
# removes exactly what this installed. Then, from any C project:
#   cc app.c $(pkg-config --cflags --libs loopcore)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
scripts/setup.sh
bazel build -c opt //:libloopcore.so //:libloopcore_a //bench/lcbench:lcbench
bin=$(bazel info -c opt bazel-bin 2> /dev/null)
scripts/install_files.sh "$prefix" "$bin/libloopcore.so" "$bin/libloopcore.a" \
    "$bin/bench/lcbench/lcbench"
if [ -z "${DESTDIR:-}" ] && [ "$(id -u)" -eq 0 ] && command -v ldconfig > /dev/null; then
    ldconfig
fi
