#!/usr/bin/env bash
# Installs every Debian package loopcore needs (build, tests, benchmarks, peers). Idempotent:
# does nothing when all are present. Run as root on Debian 12.
set -euo pipefail

PKGS=(
    # build
    gcc g++ libc6-dev bazel-bootstrap bazel-rules-java
    # libraries
    libuv1-dev libssl-dev libjemalloc-dev libcmocka-dev node-llhttp liburcu-dev
    # peers for tests and benchmarks
    python3 python3-uvloop openssl curl wrk nginx h2o
    # used by the scripts
    procps util-linux
    # the installed library and its out-of-tree tests (scripts/install.sh, tests/install)
    pkg-config cmake
    # lcbench --plot and bench/plots.sh (lcbench-plot draws with gnuplot)
    gnuplot-nox
    # fuzzing (scripts/fuzz.sh): clang 14 and its libFuzzer/sanitizer runtimes
    clang libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
fi
# Keep package scripts (nginx, h2o) from starting system services.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "setup: installing ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
