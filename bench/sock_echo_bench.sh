#!/usr/bin/env bash
# The sock_* echo benchmark (issue 15): bench/sock_echo_server (lc_loop_sock_recv_into /
# sock_sendall in tasks) against the peers' raw-epoll floor (/work/shared/peers/floor.c) and
# asyncio's and uvloop's sock_* echo (bench/sock_echo.py), all loaded by the peers' echoload in
# the same invocation, servers on CPU 0 and the client on CPU 1. Prints, per message size,
#   bench=sock_echo_<size>B ours=<msgs/s> floor=<msgs/s> asyncio=<msgs/s> uvloop=<msgs/s>
#     ours_cpu=<us/msg> floor_cpu=<us/msg> asyncio_cpu=<us/msg> uvloop_cpu=<us/msg>
#     unit=msgs_per_s cpu_ratio_vs_floor=<x> cpu_ratio_vs_asyncio=<x> cpu_ratio_vs_uvloop=<x>
# (one line). CPU per message is the server's user+system time over the messages echoed. With
# --repeat R the floor and ours are measured R times, alternating, and each figure is the
# median of its R runs (this VM's noise moves single runs by 10-20 %); the line then also has
# runs=R and cpu_ratio_vs_floor_best=<x>, the lowest CPU per message ours had in its R runs
# over the floor's lowest (best of R, the usual answer to a noisy neighbour).
#
#   bazel build -c opt //bench:sock_echo_server
#   bench/sock_echo_bench.sh [--sizes "64 1024"] [--duration S] [--conns C] [--repeat R] [--no-python]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS=${PEERS_DIR:-/work/shared/peers}
SIZES="64 1024 16384" DURATION=5 CONNS=64 PYTHON=1 REPEAT=1 PORT=${PORT:-19400}
while [ $# -gt 0 ]; do
  case $1 in
    --sizes) SIZES=$2; shift ;; --duration) DURATION=$2; shift ;; --conns) CONNS=$2; shift ;;
    --repeat) REPEAT=$2; shift ;; --no-python) PYTHON=0 ;;
    *) echo "usage: $0 [--sizes \"L\"] [--duration S] [--conns C] [--repeat R] [--no-python]" >&2; exit 2 ;;
  esac
  shift
done
OURS=$ROOT/bazel-bin/bench/sock_echo_server
[ -x "$OURS" ] || { echo "build it first: bazel build -c opt //bench:sock_echo_server" >&2; exit 1; }
BUILD=$("$PEERS/build.sh" echoload floor)
SPID=
stop() { [ -z "$SPID" ] || { kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null || true; SPID=; }; }
trap stop EXIT

ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# measure NAME CMD... -> "msgs_per_s cpu_us_per_msg" for each size, appended to RES[NAME,size]
# (one line per run)
declare -A RES
measure() {
  local name=$1; shift
  PORT=$((PORT + 1))
  taskset -c 0 "$@" --port "$PORT" >/dev/null 2>&1 &
  SPID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  local s out t0 t1 rate secs
  for s in $SIZES; do
    taskset -c 1 "$BUILD/echoload" -p "$PORT" -c "$CONNS" -s "$s" -d 1 >/dev/null
    t0=$(ticks "$SPID")
    out=$(taskset -c 1 "$BUILD/echoload" -p "$PORT" -c "$CONNS" -s "$s" -d "$DURATION")
    t1=$(ticks "$SPID")
    rate=$(sed -nE 's/.*msgs_per_s=([0-9.]+).*/\1/p' <<<"$out")
    secs=$(sed -nE 's/.*secs=([0-9.]+).*/\1/p' <<<"$out")
    RES[$name,$s]+="$rate $(awk -v d="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v r="$rate" \
      -v s="$secs" 'BEGIN { printf "%.2f", d / hz * 1e6 / (r * s) }')
"
  done
  stop
}

for _ in $(seq "$REPEAT"); do
  measure floor "$BUILD/floor"
  measure ours "$OURS"
done
if [ "$PYTHON" = 1 ]; then
  measure asyncio /usr/bin/python3 "$HERE/sock_echo.py" --loop asyncio
  measure uvloop /usr/bin/python3 "$HERE/sock_echo.py" --loop uvloop
fi
# median NAME SIZE -> "msgs_per_s cpu_us_per_msg", each the median of its runs
median() {
  local col
  for col in 1 2; do
    printf '%s\n' "${RES[$1,$2]}" | awk -v c=$col 'NF { print $c }' | sort -g |
      awk -v c=$col '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
             printf (c == 1 ? "%.0f" : "%.2f"), m }'
    [ $col = 1 ] && printf ' '
  done
  echo
}
for s in $SIZES; do
  read -r o_r o_c <<<"$(median ours "$s")"
  read -r f_r f_c <<<"$(median floor "$s")"
  line="bench=sock_echo_${s}B ours=$o_r floor=$f_r"
  tail=" ours_cpu=$o_c floor_cpu=$f_c"
  ratios=" unit=msgs_per_s cpu_ratio_vs_floor=$(awk -v a="$o_c" -v b="$f_c" 'BEGIN { printf "%.2f", a / b }')"
  if [ "$REPEAT" -gt 1 ]; then
    best() { printf '%s\n' "${RES[$1,$s]}" | awk 'NF { print $2 }' | sort -g | head -1; }
    ratios+=" runs=$REPEAT cpu_ratio_vs_floor_best=$(awk -v a="$(best ours)" -v b="$(best floor)" 'BEGIN { printf "%.2f", a / b }')"
  fi
  if [ "$PYTHON" = 1 ]; then
    read -r a_r a_c <<<"$(median asyncio "$s")"
    read -r u_r u_c <<<"$(median uvloop "$s")"
    line+=" asyncio=$a_r uvloop=$u_r"
    tail+=" asyncio_cpu=$a_c uvloop_cpu=$u_c"
    ratios+=" cpu_ratio_vs_asyncio=$(awk -v a="$o_c" -v b="$a_c" 'BEGIN { printf "%.2f", a / b }')"
    ratios+=" cpu_ratio_vs_uvloop=$(awk -v a="$o_c" -v b="$u_c" 'BEGIN { printf "%.2f", a / b }')"
  fi
  echo "$line$tail$ratios"
done
