#!/usr/bin/env bash
# System calls per echoed message of an echo server under the peers' echoload (64 connections,
# 64 B, the server on CPU 0 and the client on CPU 1), counted with perf's syscall tracepoints over
# 2 s of a 4 s run. Prints one line:
#   syscalls name=<NAME> msgs=<n> per_msg=<total> epoll_ctl=<x> epoll_wait=<x> fcntl=<x>
#     newfstatat=<x> recvfrom=<x> sendto=<x> read=<x> write=<x>
# (each per message).
#
#   bench/echo_syscalls.sh NAME PORT SERVER [ARGS...]   (the server must take --port P)
#   e.g. bench/echo_syscalls.sh ours 19500 bazel-bin/bench/sock_echo_server
#        bench/echo_syscalls.sh floor 19501 /tmp/peers-build/floor
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 NAME PORT SERVER [ARGS...]" >&2; exit 2; }
NAME=$1 PORT=$2; shift 2
PEERS=${PEERS_DIR:-/work/shared/peers}
BUILD=$("$PEERS/build.sh" echoload)
taskset -c 0 "$@" --port "$PORT" >/dev/null 2>&1 &
SPID=$!
trap 'kill "$SPID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
taskset -c 1 "$BUILD/echoload" -p "$PORT" -c 64 -s 64 -d 4 >/tmp/echo_syscalls.$$ &
LPID=$!
sleep 1
CALLS="epoll_ctl epoll_wait fcntl newfstatat recvfrom sendto read write"
EV=raw_syscalls:sys_enter
for c in $CALLS; do EV+=",syscalls:sys_enter_$c"; done
STAT=$(perf stat -x, -e "$EV" -p "$SPID" -- sleep 2 2>&1 >/dev/null)
wait "$LPID"
RATE=$(sed -nE 's/.*msgs_per_s=([0-9.]+).*/\1/p' /tmp/echo_syscalls.$$)
rm -f /tmp/echo_syscalls.$$
MSGS=$(awk -v r="$RATE" 'BEGIN { printf "%.0f", r * 2 }')
count() { awk -F, -v e="$1" '$3 == e { print $1 }' <<<"$STAT"; }
line="syscalls name=$NAME msgs=$MSGS per_msg=$(awk -v a="$(count raw_syscalls:sys_enter)" -v m="$MSGS" 'BEGIN { printf "%.2f", a / m }')"
for c in $CALLS; do
  line+=" $c=$(awk -v a="$(count "syscalls:sys_enter_$c")" -v m="$MSGS" 'BEGIN { printf "%.2f", a / m }')"
done
echo "$line"
