#!/usr/bin/env bash
# Soak (issue 11): a group http_server on every core for SOAK_SECONDS (default 600) under a mix of
# well-behaved and hostile clients, sampled every second. A benchmark, not a CI test.
#
#   bench/soak.sh                     # 10 minutes
#   SOAK_SECONDS=60 bench/soak.sh     # a short run
#
# Load, all at once for the whole run:
#   keep-alive  lcbench -t1 -c32, GET /plaintext on persistent connections
#   churn       lcbench -t1 -c8 with "Connection: close": a new connection per request
#   hostile     bench/soak_clients.py: 4 clients that reset mid-request, 2 that send pipelined
#               requests and never read, 8 that trickle a head one byte a second (slowloris), 2
#               that send garbage
# Every second: the server's RSS (kB), open fds, and established connections on its port, into
# bench/results/soak-<date>.csv (t,rss_kb,fds,conns). After the load: 75 s for the server to
# reclaim what the hostile clients left (its header, idle and send timeouts are 60 s).
# Pass: the server never died; RSS at the end of the load within 10 % of its value after the
# first minute (or of the first sample, for runs shorter than 2 minutes); fds back to the
# baseline once the load is gone; every well-behaved request answered (lcbench: no socket
# errors, no non-2xx, no timeouts). Prints "soak: PASS" or "soak: FAIL (<why>)" and exits 0 / 1.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${SOAK_SECONDS:-600}
port=${SOAK_PORT:-18480}
drain=${SOAK_DRAIN_SECONDS:-75}
cpus=$(nproc)
mkdir -p bench/results
csv=${SOAK_CSV:-bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ).csv}
tmp=$(mktemp -d)

bazel build -c opt //bench:http_server //bench:lcbench >/dev/null 2>&1 || {
    echo "soak: build failed" >&2
    exit 1
}
# Private copies: a build elsewhere during the run must not replace the binaries.
cp bazel-bin/bench/http_server "$tmp/http_server"
cp bazel-bin/bench/lcbench/lcbench "$tmp/lcbench"

"$tmp/http_server" --loops "$cpus" --port "$port" --quiet &
server=$!
cleanup() {
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    kill $(jobs -p) 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
sleep 0.5

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null; }
fds() { ls "/proc/$server/fd" 2>/dev/null | wc -l; }
conns() { ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l; }
base_fds=$(fds)
echo "soak: http_server --loops $cpus (pid $server), ${seconds}s of load, baseline fds $base_fds"
echo "t,rss_kb,fds,conns" >"$csv"

"$tmp/lcbench" -t1 -c32 -d"${seconds}s" -T 5s --max-errors 0 --no-progress \
    "http://127.0.0.1:$port/plaintext" >"$tmp/keepalive.txt" 2>&1 &
ka=$!
"$tmp/lcbench" -t1 -c8 -d"${seconds}s" -T 5s --max-errors 0 --no-progress \
    -H "Connection: close" "http://127.0.0.1:$port/plaintext" >"$tmp/churn.txt" 2>&1 &
churn=$!
/usr/bin/python3 bench/soak_clients.py 127.0.0.1 "$port" "$seconds" >"$tmp/hostile.txt" 2>&1 &
hostile=$!

start=$(date +%s)
t=0
dead=0
while [ "$t" -lt $((seconds + drain)) ]; do
    sleep 1
    t=$(($(date +%s) - start))
    if ! kill -0 "$server" 2>/dev/null; then
        dead=1
        break
    fi
    echo "$t,$(rss),$(fds),$(conns)" >>"$csv"
done

wait "$ka"
ka_rc=$?
wait "$churn"
churn_rc=$?
wait "$hostile"

echo "--- keep-alive load"
cat "$tmp/keepalive.txt"
echo "--- churn load"
cat "$tmp/churn.txt"
echo "--- hostile clients"
cat "$tmp/hostile.txt"
echo "--- samples: $csv ($(($(wc -l <"$csv") - 1)) rows)"

why=()
[ "$dead" -eq 0 ] || why+=("the server died")
[ "$ka_rc" -eq 0 ] || why+=("keep-alive load had errors (lcbench exit $ka_rc)")
[ "$churn_rc" -eq 0 ] || why+=("churn load had errors (lcbench exit $churn_rc)")
# RSS: the sample at 60 s (or the first one) against the last sample under load.
ref_t=60
[ "$seconds" -ge 120 ] || ref_t=1
read -r rss_ref rss_end fds_end < <(awk -F, -v r="$ref_t" -v e="$seconds" '
    NR > 1 && $1 >= r && ref == "" { ref = $2 }
    NR > 1 && $1 <= e { end = $2 }
    NR > 1 { lastfd = $3 }
    END { print ref + 0, end + 0, lastfd + 0 }' "$csv")
rss_max=$(awk -F, 'NR > 1 && $2 > m { m = $2 } END { print m + 0 }' "$csv")
echo "soak: rss ${rss_ref} kB at ${ref_t}s, ${rss_end} kB at the end of the load, max ${rss_max} kB;" \
    "fds ${base_fds} at the start, ${fds_end} after the drain"
if [ "$rss_ref" -gt 0 ]; then
    awk -v a="$rss_ref" -v b="$rss_end" 'BEGIN { exit !(b <= a * 1.10) }' ||
        why+=("RSS grew more than 10 % (${rss_ref} -> ${rss_end} kB)")
fi
[ "$fds_end" -le "$base_fds" ] || why+=("fds not back to the baseline ($base_fds -> $fds_end)")

if [ ${#why[@]} -eq 0 ]; then
    echo "soak: PASS"
    exit 0
fi
printf 'soak: FAIL (%s)\n' "$(
    IFS=';'
    echo "${why[*]}"
)"
exit 1
