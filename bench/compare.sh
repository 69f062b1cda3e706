#!/usr/bin/env bash
# compare.sh [--echo] BASE [HEAD]
# Compares two commits' benchmarks in one run, so that a refactor or a feature can show what it
# costs. Builds both commits with -c opt in temporary git worktrees (git worktree add --detach;
# HEAD defaults to this checkout's HEAD; the working tree's uncommitted changes are not part of
# it), copies the benchmark binaries out, then runs each micro-benchmark alternately for
# COMPARE_ROUNDS rounds (default 5): BASE then HEAD in odd rounds, HEAD then BASE in even ones
# (B H H B B H ...: the second of two back-to-back runs of threadsafe_bench came out slower in 4 of
# 5 rounds of a run that compared a commit with itself, and a fixed order would have charged that
# to HEAD). Short settings and no Python peers:
#   loop_bench --no-python                                  (N = 1,000,000: a smaller N fits in
#                                                            the caches and measures another regime)
#   threadsafe_bench --no-python --reps 1 --total 1000000 --samples 1000
#   executor_bench --only ours                              (no uv_queue_work children either)
#   task_bench --no-python --n 2000000 --tasks 500000
# COMPARE_ARGS_<name> (e.g. COMPARE_ARGS_loop_bench="--no-python --n 200000") replaces a line.
# --echo also runs the echo benchmark as bench/hardening_cost.sh does (bench/bench_lib.sh): both
# commits' echo_server --loops 1, pinned to CPU 0, on ports COMPARE_PORT and COMPARE_PORT + 1
# (default 19700), each loaded in turn by HEAD's lcbench --mode echo pinned to CPU 1, for
# COMPARE_ECHO_DURATION (2s) with COMPARE_ECHO_CONNS (32) connections of COMPARE_ECHO_SIZE (1024)
# bytes: messages/s, the server's CPU per message, p99.
#
# Every numeric figure of every line a benchmark prints on stdout (bench=<name> <key>=<number>
# ... unit=<unit>; NA is no figure) is kept. Per figure it prints the median of BASE, the median
# of HEAD, their ratio HEAD/BASE, the spread of the ratios of the rounds (min..max, each round's
# HEAD over the same round's BASE) and which way is better. A benchmark that one of the commits
# lacks, does not build or fails to run is skipped with a message; each round's figures go to
# stderr. The worktrees, their Bazel servers and output trees are removed at the end. Compare on a
# quiet machine; to know the noise, compare a commit with itself: bench/compare.sh HEAD HEAD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/bench_lib.sh
. bench/bench_lib.sh

usage() {
    sed -n '2,3p' "$0" >&2
    exit 2
}

with_echo=0
revs=()
for a in "$@"; do
    case "$a" in
    --echo) with_echo=1 ;;
    -*) usage ;;
    *) revs+=("$a") ;;
    esac
done
if [ ${#revs[@]} -lt 1 ] || [ ${#revs[@]} -gt 2 ]; then
    usage
fi
rounds=${COMPARE_ROUNDS:-5}
if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
    echo "compare: COMPARE_ROUNDS must be a positive integer" >&2
    exit 2
fi
declare -A sha
for i in 0 1; do
    side=$([ "$i" -eq 0 ] && echo base || echo head)
    rev=${revs[$i]:-HEAD}
    if ! sha[$side]=$(git rev-parse --verify --quiet "$rev^{commit}"); then
        echo "compare: $rev is not a commit" >&2
        exit 2
    fi
done
sides=(base head)
declare -A label=([base]=BASE [head]=HEAD)

benches=(loop_bench threadsafe_bench executor_bench task_bench)
declare -A bench_args=(
    [loop_bench]="--no-python"
    [threadsafe_bench]="--no-python --reps 1 --total 1000000 --samples 1000"
    [executor_bench]="--only ours"
    [task_bench]="--no-python --n 2000000 --tasks 500000"
)
for b in "${benches[@]}"; do
    var=COMPARE_ARGS_$b
    if [ -n "${!var:-}" ]; then
        bench_args[$b]=${!var}
    fi
done
echo_duration=${COMPARE_ECHO_DURATION:-2s}
echo_conns=${COMPARE_ECHO_CONNS:-32}
echo_size=${COMPARE_ECHO_SIZE:-1024}
port=${COMPARE_PORT:-19700}

work=$(mktemp -d "${TMPDIR:-/tmp}/lc-compare.XXXXXX")
worktrees=()
# Bazel in worktree $1, with an output tree of its own beside it (removed with it).
bz() {
    local wt=$1
    shift
    (cd "$wt" && bazel --output_base="$wt.bazel" --max_idle_secs=300 "$@")
}
cleanup() {
    lc_stop_servers
    local wt
    for wt in "${worktrees[@]}"; do
        bz "$wt" shutdown > /dev/null 2>&1 || true
        if ! git worktree remove --force "$wt" > /dev/null 2>&1; then
            rm -rf "$wt"
            git worktree prune
        fi
        chmod -R u+w "$wt.bazel" 2> /dev/null || true
        rm -rf "$wt.bazel"
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Builds a commit in a worktree of its own (and a Bazel output tree of its own, removed with it),
# and copies the binaries it has to $work/bin/<side>.
build_side() {
    local side=$1 wt="$work/${1}_src" targets=() t bin
    git worktree add --detach "$wt" "${sha[$side]}" > /dev/null 2>&1
    worktrees+=("$wt")
    local want=()
    for t in "${benches[@]}"; do
        want+=("//bench:$t")
    done
    if [ "$with_echo" -eq 1 ]; then
        want+=(//bench:echo_server //bench:lcbench)
    fi
    for t in "${want[@]}"; do
        if bz "$wt" query "$t" > /dev/null 2>&1; then
            targets+=("$t")
        else
            echo "compare: ${label[$side]} (${sha[$side]:0:10}) has no $t: skipped" >&2
        fi
    done
    mkdir -p "$work/bin/$side"
    [ ${#targets[@]} -gt 0 ] || return 0
    echo "compare: building ${label[$side]} ${sha[$side]:0:10} -c opt: ${targets[*]}" >&2
    if ! bz "$wt" build -c opt --keep_going "${targets[@]}" > "$work/build_$side.log" 2>&1; then
        echo "compare: ${label[$side]}'s build failed in part (the end of its log follows)" >&2
        tail -5 "$work/build_$side.log" >&2
    fi
    bin=$(bz "$wt" info -c opt bazel-bin 2> /dev/null)
    for t in "${targets[@]}"; do
        t=${t#//bench:}
        local path="$bin/bench/$t"
        [ "$t" = lcbench ] && path="$bin/bench/lcbench/lcbench"
        if [ -x "$path" ]; then
            cp "$path" "$work/bin/$side/$t"
        else
            echo "compare: ${label[$side]}'s $t did not build: skipped" >&2
        fi
    done
    # Bazel's server holds memory and the output tree disk: neither is needed any more.
    bz "$wt" shutdown > /dev/null 2>&1 || true
}

build_side base
if [ "${sha[head]}" = "${sha[base]}" ]; then
    cp -r "$work/bin/base" "$work/bin/head" # the same commit: the same binaries
else
    build_side head
fi

subject() { git log -1 --format='%h %s' "$1" | cut -c1-70; }
echo "compare: BASE $(subject "${sha[base]}")" >&2
echo "compare: HEAD $(subject "${sha[head]}")" >&2
echo "compare: $rounds rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# What runs: the benchmarks both sides have.
run=()
for b in "${benches[@]}"; do
    if [ -x "$work/bin/base/$b" ] && [ -x "$work/bin/head/$b" ]; then
        run+=("$b")
    else
        echo "compare: $b is not on both sides: not compared" >&2
    fi
done
lc_pin_cpus
declare -A echo_pid echo_port
if [ "$with_echo" -eq 1 ]; then
    lcbench=$work/bin/head/lcbench
    [ -x "$lcbench" ] || lcbench=$work/bin/base/lcbench
    if [ -x "$work/bin/base/echo_server" ] && [ -x "$work/bin/head/echo_server" ] &&
        [ -x "$lcbench" ]; then
        p=$port
        for side in "${sides[@]}"; do
            lc_echo_start "$work/bin/$side/echo_server" "$p" ||
                { echo "compare: COMPARE_PORT=$port: port $p is not usable" >&2 && exit 1; }
            echo_pid[$side]=$LC_ECHO_PID
            echo_port[$side]=$p
            p=$((p + 1))
        done
    else
        echo "compare: echo_server or lcbench is not on both sides: no echo benchmark" >&2
        with_echo=0
    fi
fi

# One line per figure and run in $work/data: side round figure value unit.
declare -A failed
for r in $(seq 1 "$rounds"); do
    for b in "${run[@]}"; do
        [ -z "${failed[$b]:-}" ] || continue
        order=(base head)
        [ $((r % 2)) -eq 1 ] || order=(head base)
        for side in "${order[@]}"; do
            out=$work/out.$b.$side.$r
            # shellcheck disable=SC2086 # the arguments are words
            if ! "$work/bin/$side/$b" ${bench_args[$b]} > "$out" 2> "$out.err"; then
                echo "compare: ${label[$side]}'s $b ${bench_args[$b]} failed (the end of its" \
                    "stderr follows): skipped from now on" >&2
                tail -3 "$out.err" >&2
                failed[$b]=1
                break
            fi
            awk -v side="$side" -v r="$r" -v prog="$b" '
                {
                    name = ""; unit = "-"; n = 0
                    for (i = 1; i <= NF; i++) {
                        eq = index($i, "=")
                        if (eq < 2) continue
                        k = substr($i, 1, eq - 1); v = substr($i, eq + 1)
                        if (k == "unit") unit = v
                        else if (v ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) { key[++n] = k; val[n] = v }
                        else if (v == "NA") continue
                        else name = name (name == "" ? "" : "_") (k == "bench" ? v : k "-" v)
                    }
                    if (name == "") name = "line" NR
                    for (i = 1; i <= n; i++) print side, r, prog "|" name "|" key[i], val[i], unit
                }' "$out" >> "$work/data"
            echo "round $r ${label[$side]} $b: $(sed -E 's/ [a-z_0-9]+=NA//g' "$out" |
                paste -sd';')" >&2
        done
    done
    if [ "$with_echo" -eq 1 ]; then
        order=(base head)
        [ $((r % 2)) -eq 1 ] || order=(head base)
        for side in "${order[@]}"; do
            if ! res=$(lc_echo_round "$lcbench" "${echo_pid[$side]}" "${echo_port[$side]}" \
                "$echo_size" "$echo_conns" "$echo_duration"); then
                echo "compare: lcbench against ${label[$side]}'s echo_server failed: no echo" \
                    "benchmark from now on" >&2
                with_echo=0
                break
            fi
            read -r rps cpu p99 <<< "$res"
            {
                echo "$side $r echo|echo_server|msgs_per_s $rps msgs_per_s"
                echo "$side $r echo|echo_server|server_cpu_per_msg $cpu us_per_msg"
                echo "$side $r echo|echo_server|p99 $p99 us"
            } >> "$work/data"
            echo "round $r ${label[$side]} echo: $rps msgs/s, server $cpu us/msg, p99 $p99 us" >&2
        done
    fi
done
echo "compare: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2

[ -s "$work/data" ] || {
    echo "compare: no figures" >&2
    exit 1
}
echo "BASE ${sha[base]:0:10} $(git log -1 --format=%s "${sha[base]}" | cut -c1-60)"
echo "HEAD ${sha[head]:0:10} $(git log -1 --format=%s "${sha[head]}" | cut -c1-60)"
echo "$rounds rounds, BASE and HEAD alternately (B H H B ...); ratio = HEAD/BASE of the medians," \
    "spread = the rounds' HEAD/BASE (min..max)"
awk -v rounds="$rounds" '
    function median(s, f,    n, i, j, x, a) {
        n = 0
        for (i = 1; i <= rounds; i++) if ((s, f, i) in v) a[++n] = v[s, f, i]
        for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
        if (n == 0) return ""
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function num(x) { return x == "" ? "NA" : (x >= 1000 ? sprintf("%.0f", x) : sprintf("%.4g", x)) }
    {
        if (!($3 in seen)) {
            seen[$3] = 1; order[++nf] = $3
            split($3, part, "|")
            name[$3] = part[1] " " part[2] " " part[3]
            unit[$3] = part[3] ~ /^ratio/ ? "ratio" : $5
            if (length(name[$3]) > w) w = length(name[$3])
        }
        v[$1, $3, $2] = $4
    }
    END {
        fmt = "%-" w "s %-16s %14s %14s %9s %15s  %s\n"
        printf fmt, "figure", "unit", "BASE", "HEAD", "HEAD/BASE", "spread", "better"
        for (k = 1; k <= nf; k++) {
            f = order[k]; b = median("base", f); h = median("head", f)
            split(f, part, "|")
            u = unit[f]
            better = (u ~ /_per_s$/ || u == "ratio") ? "higher" : (u ~ /^(ns|us|ms|s|pct|wakeups|us_per_msg)$/ ? "lower" : "?")
            ratio = (b != "" && h != "" && b != 0) ? sprintf("%.3f", h / b) : "NA"
            lo = ""; hi = ""
            for (i = 1; i <= rounds; i++) {
                if (!(("base", f, i) in v) || !(("head", f, i) in v) || v["base", f, i] == 0) continue
                q = v["head", f, i] / v["base", f, i]
                if (lo == "" || q < lo) lo = q
                if (hi == "" || q > hi) hi = q
            }
            spread = lo == "" ? "NA" : sprintf("%.3f..%.3f", lo, hi)
            printf fmt, name[f], u, num(b), num(h), ratio, spread, better
        }
    }' "$work/data"
