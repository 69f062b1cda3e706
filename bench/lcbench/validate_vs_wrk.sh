#!/usr/bin/env bash
# lcbench against wrk on the same server, same -t/-c: alternating pairs of runs, the load client
# pinned to the last CPU and the server to CPU 0 (as ../../shared/peers/run.sh's split pinning).
#
#   bench/lcbench/validate_vs_wrk.sh [--rounds R] [--duration S] [--configs "A B C"]
#                                    [--url URL --server-pids "PIDS"] [--lcbench PATH]
#
# Without --url, starts nginx (1 worker, `return 200 "Hello, World!"`, the peers' config) on
# 127.0.0.1:18080 and stops it at the end. Configurations: A = -t1 -c64, B = -t2 -c64,
# C = -t1 -c64 with 16 requests pipelined (wrk: the peers' pipeline.lua).
# One line per run: cfg tool req_per_s requests client_cpu_s client_us_per_req
# server_us_per_req others_pct (CPU taken by unrelated processes, % of one CPU), then per
# configuration the medians and the median of the per-pair ratios lcbench/wrk.
set -euo pipefail
ROUNDS=6 DUR=5 CONFIGS="A B C" URL='' SPIDS='' LCBENCH=''
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2 ;; --duration) DUR=$2 ;; --configs) CONFIGS=$2 ;;
    --url) URL=$2 ;; --server-pids) SPIDS=$2 ;; --lcbench) LCBENCH=$2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
cd "$(dirname "$0")/../.."
if [ -z "$LCBENCH" ]; then
  bazel build -c opt //bench:lcbench >/dev/null 2>&1
  LCBENCH=$(mktemp /tmp/lcbench.XXXXXX)
  cp -f "$(bazel info -c opt bazel-bin 2>/dev/null)/bench/lcbench/lcbench" "$LCBENCH"
fi
WORK=$(mktemp -d /tmp/lcbench-validate.XXXXXX)
NGINX_PID=''
cleanup() {
  [ -z "$NGINX_PID" ] || kill -TERM -- "-$NGINX_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
CCPU=$(($(nproc) - 1))
if [ -z "$URL" ]; then
  mkdir -p "$WORK/tmp"
  cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/tmp/body; proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fastcgi; uwsgi_temp_path $WORK/tmp/uwsgi; scgi_temp_path $WORK/tmp/scgi;
  server {
    listen 127.0.0.1:18080 reuseport backlog=4096;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
EOF
  taskset -c 0 setsid nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" &
  NGINX_PID=$!
  sleep 1
  URL=http://127.0.0.1:18080/
  SPIDS="$(cat "$WORK/nginx.pid") $(pgrep -P "$(cat "$WORK/nginx.pid")")"
fi
printf '%s\n' 'init = function(args)' '  local r = {}' \
  '  for i = 1, tonumber(args[1]) do r[i] = wrk.format() end' \
  '  req = table.concat(r)' 'end' 'request = function() return req end' >"$WORK/pipeline.lua"

HZ=$(getconf CLK_TCK)
busy() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }
srvcpu() { local s=0 p; for p in $SPIDS; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $s; }
one() { # cfg tool command...
  local cfg=$1 tool=$2; shift 2
  local b0 n0 out b1 n1
  b0=$(busy) n0=$(srvcpu)
  out=$(/usr/bin/time -f "%U %S" -o "$WORK/time" taskset -c "$CCPU" "$@")
  b1=$(busy) n1=$(srvcpu)
  awk -v cfg="$cfg" -v tool="$tool" -v b=$((b1 - b0)) -v ng=$((n1 - n0)) -v hz="$HZ" -v d="$DUR" \
      -v cpu="$(awk '{print $1 + $2}' "$WORK/time")" '
    /^Requests\/sec:/ { rps = $2 }  / (requests|messages) in / { n = $1 }
    END { others = (b / hz - cpu - ng / hz) / d * 100; if (others < 0) others = 0
          printf "%s %s %.0f %d %.2f %.3f %.3f %.0f\n", cfg, tool, rps, n, cpu, cpu * 1e6 / n,
                 ng / hz * 1e6 / n, others }' <<<"$out"
}
for r in $(seq "$ROUNDS"); do
  for cfg in $CONFIGS; do
    case $cfg in
      A) L=(-t1 -c64) W=(-t1 -c64) WT=() ;;
      B) L=(-t2 -c64) W=(-t2 -c64) WT=() ;;
      C) L=(-t1 -c64 --pipeline 16) W=(-t1 -c64 -s "$WORK/pipeline.lua") WT=(-- 16) ;;
      *) echo "unknown configuration $cfg" >&2; exit 2 ;;
    esac
    if [ $((r % 2)) = 1 ]; then
      one "$cfg" lcbench "$LCBENCH" "${L[@]}" -d "${DUR}s" "$URL"
      one "$cfg" wrk wrk "${W[@]}" -d "${DUR}s" "$URL" "${WT[@]}"
    else
      one "$cfg" wrk wrk "${W[@]}" -d "${DUR}s" "$URL" "${WT[@]}"
      one "$cfg" lcbench "$LCBENCH" "${L[@]}" -d "${DUR}s" "$URL"
    fi
  done
done | tee "$WORK/runs"
echo "# cfg: median lcbench/wrk req/s (median of pair ratios), client us/req (median of ratios)"
for cfg in $CONFIGS; do
  awk -v cfg="$cfg" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    $1 == cfg && $2 == "lcbench" { lr[++nl] = $3; lc[nl] = $6 }
    $1 == cfg && $2 == "wrk" { wr[++nw] = $3; wc[nw] = $6 }
    END { n = nl < nw ? nl : nw
          for (i = 1; i <= n; i++) { rr[i] = lr[i] / wr[i]; cr[i] = lc[i] / wc[i] }
          printf "%s: req/s %.0f / %.0f (ratio %.3f), us/req %.3f / %.3f (ratio %.3f), %d pairs\n",
                 cfg, median(lr, n), median(wr, n), median(rr, n), median(lc, n), median(wc, n),
                 median(cr, n), n }' "$WORK/runs"
done
