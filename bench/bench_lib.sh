# shellcheck shell=bash
# bench_lib.sh: shell functions shared by the benchmark scripts (hardening_cost.sh, compare.sh);
# source it from bash. The echo benchmark as those scripts run it: echo_server --loops 1 pinned to
# CPU 0, lcbench --mode echo pinned to CPU 1 (when there are two CPUs and taskset), the server's
# CPU time read from /proc/<pid>/stat around each load.
#
#   lc_pin_cpus                      sets LC_SERVER_CPU and LC_CLIENT_CPU ("taskset -c 0|1" or "")
#   lc_echo_start BIN PORT           starts BIN --loops 1 --port PORT on LC_SERVER_CPU, waits until
#                                    it accepts; its pid in LC_ECHO_PID (and in LC_SERVER_PIDS)
#   lc_echo_round LCBENCH PID PORT SIZE CONNS DURATION
#                                    one load: prints "<msgs/s> <server us of CPU/msg> <p99 us>"
#   lc_stop_servers                  stops every server lc_echo_start started
#   lc_median FILE                   the median of the numbers in FILE, one a line

LC_SERVER_CPU=""
LC_CLIENT_CPU=""
LC_SERVER_PIDS=()
LC_ECHO_PID=""

lc_pin_cpus() {
    LC_SERVER_CPU=""
    LC_CLIENT_CPU=""
    if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
        LC_SERVER_CPU="taskset -c 0"
        LC_CLIENT_CPU="taskset -c 1"
    fi
}

lc_echo_start() {
    local bin=$1 port=$2
    if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
        echo "port $port is in use" >&2
        return 1
    fi
    $LC_SERVER_CPU "$bin" --loops 1 --port "$port" > /dev/null 2>&1 &
    LC_ECHO_PID=$!
    LC_SERVER_PIDS+=("$LC_ECHO_PID")
    for _ in $(seq 1 100); do
        (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && return 0
        sleep 0.1
    done
    echo "$bin did not accept on port $port" >&2
    return 1
}

lc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

lc_echo_round() {
    local lcbench=$1 pid=$2 port=$3 size=$4 conns=$5 duration=$6
    local t0 t1 json rps reqs p99
    t0=$(lc_cpu_ticks "$pid")
    json=$($LC_CLIENT_CPU "$lcbench" --mode echo --size "$size" -t1 -c"$conns" -d"$duration" \
        --json "tcp://127.0.0.1:$port") || return 1
    t1=$(lc_cpu_ticks "$pid")
    rps=$(sed -E 's/.*"requests_per_s":([0-9.]+).*/\1/' <<< "$json")
    reqs=$(sed -E 's/.*"requests":([0-9]+),.*/\1/' <<< "$json")
    p99=$(sed -E 's/.*"p99":([0-9.]+).*/\1/' <<< "$json")
    awk -v d=$((t1 - t0)) -v t="$(getconf CLK_TCK)" -v q="$reqs" -v rps="$rps" -v p99="$p99" \
        'BEGIN { printf "%s %.3f %s\n", rps, (q > 0 ? d / t * 1e6 / q : 0), p99 }'
}

lc_stop_servers() {
    local pid
    for pid in "${LC_SERVER_PIDS[@]}"; do
        kill "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    LC_SERVER_PIDS=()
}

lc_median() {
    sort -g "$1" |
        awk '{v[NR] = $1} END { printf "%.10g\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
