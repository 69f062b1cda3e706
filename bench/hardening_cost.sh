#!/usr/bin/env bash
# hardening_cost.sh [--rounds R] [--n N] [--duration T] [--size B] [--conns C] [--port P]
# The cost of issue 11's hardening: builds the benchmarks with -c opt twice, hardened (the
# default) and with --config=nohardening (.bazelrc: each has its own output tree), then runs the
# two builds' binaries interleaved, round after round (hardened, unhardened, hardened, ...):
#   loop_bench --no-python --n N           call_soon, call_later, call_later_cancel (ops/s)
#   echo_server --loops 1 + lcbench --mode echo --size B -t1 -cC -dT
#                                          messages/s, the server's CPU per message, p99 latency
# The echo server is pinned to CPU 0 and lcbench (the hardened build's, for both servers) to
# CPU 1 when there are two CPUs; both servers stay up for the whole run, on ports P and P+1, and
# the server's CPU is read from /proc/<pid>/stat around each load.
# Prints one line per metric, with the medians over the rounds:
#   metric=<name> hardened=<v> unhardened=<v> ratio=<hardened/unhardened> unit=<u> better=<higher|lower> rounds=R
# and each round's figures on stderr. Defaults: 8 rounds, N 1000000, 5s loads of 1024 bytes over
# 32 connections, port 19600. Measure on a quiet machine; a short trial:
#   bench/hardening_cost.sh --rounds 1 --n 100000 --duration 1s
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/bench_lib.sh
. bench/bench_lib.sh

rounds=8
n=1000000
duration=5s
size=1024
conns=32
port=19600
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2 ;;
    --n) n=$2 ;;
    --duration) duration=$2 ;;
    --size) size=$2 ;;
    --conns) conns=$2 ;;
    --port) port=$2 ;;
    *)
        sed -n '2,3p' "$0" >&2
        exit 2
        ;;
    esac
    shift 2
done

targets=(//bench:loop_bench //bench:echo_server //bench:lcbench)
work=$(mktemp -d)
cleanup() {
    lc_stop_servers
    rm -rf "$work"
}
trap cleanup EXIT

# Build both, and copy the binaries out so that a later build cannot change them mid-run.
variants=(hardened unhardened)
declare -A opts=([hardened]="-c opt" [unhardened]="-c opt --config=nohardening")
for v in "${variants[@]}"; do
    # shellcheck disable=SC2086 # opts are words
    bazel build ${opts[$v]} "${targets[@]}" >&2
    # shellcheck disable=SC2086
    bin=$(bazel info ${opts[$v]} bazel-bin 2>/dev/null)
    mkdir -p "$work/$v"
    cp "$bin/bench/loop_bench" "$bin/bench/echo_server" "$bin/bench/lcbench/lcbench" "$work/$v/"
done
echo "hardening_cost: binaries in $work; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

lc_pin_cpus

# The two echo servers, on port and port + 1.
declare -A srv_port srv_pid
p=$port
for v in "${variants[@]}"; do
    if ! lc_echo_start "$work/$v/echo_server" "$p"; then
        echo "hardening_cost: no echo server on port $p (--port)" >&2
        exit 1
    fi
    srv_pid[$v]=$LC_ECHO_PID
    srv_port[$v]=$p
    p=$((p + 1))
done

# One figure per line in $work/<variant>.<metric>.
record() { echo "$3" >> "$work/$1.$2"; }

for r in $(seq 1 "$rounds"); do
    for v in "${variants[@]}"; do
        # loop_bench: its own best of 3 per workload.
        out=$($LC_SERVER_CPU "$work/$v/loop_bench" --no-python --n "$n" 2> /dev/null)
        for b in call_soon call_later call_later_cancel; do
            val=$(sed -nE "s/^bench=$b ours=([0-9.]+) .*/\1/p" <<< "$out")
            record "$v" "loop_bench_$b" "$val"
            echo "round $r $v loop_bench $b $val ops/s" >&2
        done

        # echo: the hardened lcbench against this variant's server.
        echo_out=$(lc_echo_round "$work/hardened/lcbench" "${srv_pid[$v]}" "${srv_port[$v]}" \
            "$size" "$conns" "$duration")
        read -r rps cpu p99 <<< "$echo_out"
        record "$v" echo_msgs_per_s "$rps"
        record "$v" echo_server_cpu_us_per_msg "$cpu"
        record "$v" echo_p99_us "$p99"
        echo "round $r $v echo ${rps} msgs/s, server ${cpu} us/msg, p99 ${p99} us" >&2
    done
done

while read -r metric unit better; do
    h=$(lc_median "$work/hardened.$metric")
    u=$(lc_median "$work/unhardened.$metric")
    ratio=$(awk -v h="$h" -v u="$u" 'BEGIN { if (u > 0) printf "%.3f", h / u; else print "NA" }')
    echo "metric=$metric hardened=$h unhardened=$u ratio=$ratio unit=$unit better=$better rounds=$rounds"
done << 'EOF'
loop_bench_call_soon ops_per_s higher
loop_bench_call_later ops_per_s higher
loop_bench_call_later_cancel ops_per_s higher
echo_msgs_per_s msgs_per_s higher
echo_server_cpu_us_per_msg us_per_msg lower
echo_p99_us us lower
EOF
echo "hardening_cost: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
