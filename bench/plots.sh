#!/usr/bin/env bash
# bench/plots.sh: the latency plots of bench/RESULTS.md, regenerated into bench/results/.
#
#   demo-latency.png   the demo's run (scripts/main.sh): http_server on every core, lcbench
#                      closed loop, -c64, PLOTS_SECONDS (default 10) after 1 s of warm-up
#   rate-latency.png   the same server at fixed rates, wrk2-style (lcbench -R: latency from each
#                      request's intended send time, so queueing shows), at 25%, 50%, 75% and
#                      90% of the closed-loop throughput just measured, beside the closed loop
# Each run's percentile distribution is kept beside its plot (*.hgrm, HdrHistogram's format), and
# one summary line per run is printed: "plot=<run> rps=<x> p50_ms=<x> p99_ms=<x> p999_ms=<x>".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh > /dev/null
seconds=${PLOTS_SECONDS:-10}
port=${PLOTS_PORT:-18090}
cpus=$(nproc)
out=bench/results
mkdir -p "$out"
bazel build -c opt //bench:http_server //bench/lcbench:lcbench 2> /dev/null
bin=$(bazel info -c opt bazel-bin 2> /dev/null)
"$bin/bench/http_server" --loops "$cpus" --port "$port" --quiet &
server=$!
trap 'kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true' EXIT
for _ in $(seq 1 100); do
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
    sleep 0.1
done
url=http://127.0.0.1:$port/plaintext
lcbench=$bin/bench/lcbench/lcbench

# run NAME ARGS...: one lcbench run, its percentiles in $out/NAME.hgrm, its summary line.
run() {
    local name=$1 json
    shift
    json=$("$lcbench" -t"$cpus" -c64 -d"${seconds}s" --warmup 1 --json --max-errors 1 \
        --percentiles "$out/$name.hgrm" "$@" "$url")
    python3 - "$name" "$json" << 'PY'
import json, sys
j = json.loads(sys.argv[2])
lat = j["latency_us"]
print("plot=%s rps=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f" % (sys.argv[1], j["requests_per_s"],
      lat["p50"] / 1e3, lat["p99"] / 1e3, lat["p99_9"] / 1e3))
PY
}

run demo
line=$(run closed)
echo "$line"
rps=$(sed 's/.* rps=\([0-9]*\) .*/\1/' <<< "$line")
files=("$out/closed.hgrm=closed loop ($rps req/s)")
for pct in 25 50 75 90; do
    rate=$((rps * pct / 100))
    run "rate$pct" -R "$rate"
    files+=("$out/rate$pct.hgrm=-R $rate ($pct%)")
done
"$bin/bench/lcbench/lcbench-plot" "$out/demo-latency.png" "$out/demo.hgrm=demo" -- \
    "Demo: http_server on $cpus loops, lcbench -t$cpus -c64 closed loop"
"$bin/bench/lcbench/lcbench-plot" --log-y "$out/rate-latency.png" "${files[@]}" -- \
    "http_server on $cpus loops: closed loop and fixed rates (lcbench -R)"
