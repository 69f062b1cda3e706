#!/usr/bin/env bash
# The main job (the demo): set-up, build, then the HTTP server on every core of this machine,
# loaded for about 10 seconds by loopcore's own load generator (live progress on a terminal),
# and its report. Environment: DEMO_SECONDS (10), DEMO_CONNECTIONS (64), DEMO_PORT (18080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

seconds=${DEMO_SECONDS:-10}
conns=${DEMO_CONNECTIONS:-64}
port=${DEMO_PORT:-18080}
cpus=$(nproc)

bazel build -c opt //bench:http_server //bench:lcbench
server=bazel-bin/bench/http_server
lcbench=bazel-bin/bench/lcbench/lcbench

echo "== loopcore demo: http_server on ${cpus} loop(s), one per core, SO_REUSEPORT"
"$server" --loops "$cpus" --port "$port" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
# Wait until it accepts connections.
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    sleep 0.1
done

plot=$PWD/build/demo/latency.png
mkdir -p "$(dirname "$plot")"
echo "== lcbench -t${cpus} -c${conns} -d${seconds}s --latency --plot ${plot#"$PWD"/} http://127.0.0.1:${port}/plaintext"
"$lcbench" -t"$cpus" -c"$conns" -d"${seconds}s" --warmup 1 --latency --plot "$plot" \
    "http://127.0.0.1:${port}/plaintext"
echo "== latency by percentile, drawn: $plot"

kill "$server_pid"
wait "$server_pid" || true
trap - EXIT
echo "== done: server stopped cleanly"
