#!/usr/bin/env bash
# scripts/fuzz.sh [NAME [SECONDS]]
#
# Builds the libFuzzer harnesses (tests/fuzz/<name>_fuzz.c) with clang and the fuzzer, address and
# undefined-behaviour sanitizers, then runs each for a bounded time on a copy of its seed corpus
# (tests/fuzz/corpus/<name minus _fuzz>/; the tree is never written). One line per harness:
#   PASS fuzz NAME (N runs, S s)
#   FAIL fuzz NAME: <crash file>
# and a closing "N passed, N failed" line; "1 0" / "0 1" per harness is appended to
# $LC_SUMMARY_FILE when it is set (as scripts/summarize.sh does). Exit status 1 if any failed.
#
#   scripts/fuzz.sh                          every harness, FUZZ_SECONDS each
#   scripts/fuzz.sh transport_read_fuzz 600  one harness, 10 minutes
#
# Environment:
#   FUZZ_SECONDS    seconds per harness (default: 240 s shared out among the harnesses, so a whole
#                   run, builds included, stays under 5 minutes)
#   FUZZ_BUILD_DIR  where the binaries go (default build/fuzz, ignored by git); a binary is rebuilt
#                   when a source, or this script, is newer
#   FUZZ_ARTIFACTS  where a crashing input is kept, with the run's log beside it (default
#                   /tmp/loopcore-fuzz/crashes): <FUZZ_ARTIFACTS>/<name>/crash-<sha1>
#   FUZZ_TIMEOUT    seconds one input may run before it counts as a hang (default 25)
#   FUZZ_FLAGS      extra libFuzzer flags (e.g. "-jobs=2" or "-dict=...")
#   CC              the compiler (default clang)
#
# Reproduce a crash: build/fuzz/<name> <crash file> (runs that one input and prints the report).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CC=${CC:-clang}
build=${FUZZ_BUILD_DIR:-$root/build/fuzz}
artifacts=${FUZZ_ARTIFACTS:-/tmp/loopcore-fuzz/crashes}
input_timeout=${FUZZ_TIMEOUT:-25}

CFLAGS=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror
    -Wno-unused-parameter -I"$root" -I"$root/include")

# Source sets (paths relative to the repository root; globs are expanded there).
ENGINE="engine/*.c engine/fiber_switch.S threadsafe/mpsc.c"
LOOPCORE="$ENGINE threadsafe/group*.c executor/*.c"
LLHTTP="/usr/share/llhttp/llhttp.c /usr/share/llhttp/api.c /usr/share/llhttp/http.c"
LLHTTP_FLAGS="-I/usr/share/include/llhttp"
LIBS="-luv -lssl -lcrypto -lpthread -lm"
LCBENCH="bench/lcbench/args.c bench/lcbench/echo.c bench/lcbench/http.c bench/lcbench/report.c bench/lcbench/udp.c
    bench/lcbench/run.c bench/lcbench/hdr.c"

# One row per harness: name | sources | extra flags (include paths, libraries).
HARNESSES=(
    "lcbench_http_fuzz | tests/fuzz/lcbench_http_fuzz.c bench/lcbench/http.c bench/lcbench/hdr.c
        bench/lcbench/args.c $LLHTTP | $LLHTTP_FLAGS -lm"
    "lcbench_args_fuzz | tests/fuzz/lcbench_args_fuzz.c $LCBENCH $LOOPCORE $LLHTTP
        | $LLHTTP_FLAGS $LIBS"
    "transport_read_fuzz | tests/fuzz/transport_read_fuzz.c $ENGINE | $LIBS"
    "tls_read_fuzz | tests/fuzz/tls_read_fuzz.c $ENGINE | $LIBS"
    "http_request_fuzz | tests/fuzz/http_request_fuzz.c bench/http_proto.c $LLHTTP
        | $LLHTTP_FLAGS"
)

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

names=()
for row in "${HARNESSES[@]}"; do
    names+=("$(trim "${row%%|*}")")
done

only=""
if [ $# -ge 1 ]; then
    only=$1
    found=0
    for n in "${names[@]}"; do [ "$n" = "$only" ] && found=1; done
    if [ $found -eq 0 ]; then
        echo "fuzz.sh: no harness named $only (harnesses: ${names[*]})" >&2
        exit 2
    fi
fi
if [ $# -ge 2 ]; then
    seconds=$2
elif [ -n "${FUZZ_SECONDS:-}" ]; then
    seconds=$FUZZ_SECONDS
elif [ -n "$only" ]; then
    seconds=60
else
    seconds=$((240 / ${#names[@]}))
fi
case $seconds in '' | *[!0-9]*)
    echo "fuzz.sh: SECONDS must be a whole number of seconds, not '$seconds'" >&2
    exit 2
    ;;
esac

if ! command -v "$CC" > /dev/null; then
    echo "fuzz.sh: $CC not found (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2
    exit 1
fi

mkdir -p "$build" "$artifacts"
passed=0
failed=0

record() { # record PASS|FAIL line
    echo "$2"
    if [ "$1" = PASS ]; then
        passed=$((passed + 1))
        [ -n "${LC_SUMMARY_FILE:-}" ] && echo "1 0" >> "$LC_SUMMARY_FILE"
    else
        failed=$((failed + 1))
        [ -n "${LC_SUMMARY_FILE:-}" ] && echo "0 1" >> "$LC_SUMMARY_FILE"
    fi
    return 0
}

# build NAME "SOURCES" "FLAGS": compiles build/fuzz/NAME if it is missing or out of date.
build_one() {
    local name=$1 bin=$build/$1
    local -a srcs flags
    read -r -a srcs <<< "$(cd "$root" && echo $2)" # expand the globs at the root
    read -r -a flags <<< "$3"
    local stale=0
    [ -x "$bin" ] || stale=1
    if [ $stale -eq 0 ]; then
        for f in "${srcs[@]}" scripts/fuzz.sh tests/fuzz/*.h include/loopcore/*.h engine/*.h \
            bench/lcbench/*.h; do
            [ "$f" -nt "$bin" ] && stale=1 && break
        done
    fi
    [ $stale -eq 0 ] && return 0
    echo "fuzz: building $name"
    "$CC" "${CFLAGS[@]}" "${srcs[@]}" "${flags[@]}" -o "$bin.tmp" > "$build/$name.build.log" 2>&1 ||
        return 1
    mv "$bin.tmp" "$bin"
}

for row in "${HARNESSES[@]}"; do
    IFS='|' read -r name srcs flags <<< "$(tr '\n' ' ' <<< "$row")"
    name=$(trim "$name")
    [ -n "$only" ] && [ "$name" != "$only" ] && continue
    if ! build_one "$name" "$srcs" "$flags"; then
        tail -30 "$build/$name.build.log"
        record FAIL "FAIL fuzz $name: did not build (log: $build/$name.build.log)"
        continue
    fi

    # A copy of the seed corpus: what libFuzzer adds to it stays out of the tree.
    work=$(mktemp -d "${TMPDIR:-/tmp}/loopcore-fuzz-$name.XXXXXX")
    mkdir -p "$work/corpus" "$work/artifacts"
    corpus=tests/fuzz/corpus/${name%_fuzz}
    [ -d "$corpus" ] && cp -R "$corpus/." "$work/corpus/"
    log=$work/log
    start=$(date +%s)
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 $((seconds + input_timeout + 120)) \
        "$build/$name" -max_total_time="$seconds" -timeout="$input_timeout" -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" ${FUZZ_FLAGS:-} \
        "$work/corpus" > "$log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(sed -nE 's/^Done ([0-9]+) runs.*/\1/p' "$log" | tail -1)
    crash=$(find "$work/artifacts" -maxdepth 1 -type f \
        \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | head -1)
    if [ "$rc" -eq 0 ] && [ -z "$crash" ]; then
        record PASS "PASS fuzz $name (${runs:-0} runs, $elapsed s)"
        rm -rf "$work"
        continue
    fi
    # Keep the input and the log; show the report.
    mkdir -p "$artifacts/$name"
    if [ -n "$crash" ]; then
        kept=$artifacts/$name/$(basename "$crash")
        cp "$crash" "$kept"
    else
        kept=$artifacts/$name/no-input-$(date +%Y%m%d-%H%M%S)
        [ "$rc" -eq 124 ] && kept="$kept-killed"
    fi
    cp "$log" "$kept.log"
    grep -E -v '^#[0-9]+|^INFO: |^\s*$' "$log" | head -60
    echo "  (reproduce: $build/$name $kept; full log: $kept.log)"
    record FAIL "FAIL fuzz $name: $kept"
    rm -rf "$work"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
