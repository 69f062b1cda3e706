/* loop_bench: scheduling throughput of loopcore, beside asyncio and uvloop (issue 2).
 *
 *   bazel run -c opt //bench:loop_bench [-- [--no-python] [--n N] [--only <name>]]
 *
 * Prints one line per figure on stdout (other tools parse them; the format is exact):
 *   bench=<name> ours=<value> asyncio=<value> uvloop=<value> unit=ops_per_s ratio_vs_uvloop=<x>
 * for <name> in call_soon, call_later, call_later_cancel; values are integers (NA when a peer is
 * unavailable or skipped), ratio = ours / uvloop with 2 decimals (NA without uvloop). The N used
 * and other notes go to stderr.
 *
 * Workloads (identical in bench/loop_bench.py; a fresh loop per repetition, best (max rate) of 3
 * repetitions kept, for ours and for each Python loop; N = 1,000,000 by default for both):
 *   1. call_soon: schedule N callbacks with call_soon (the callback increments a counter; the one
 *      that brings it to N records the end time and calls stop()), then run_forever() until all
 *      ran. rate = N / (time from the first schedule to the last callback).
 *   2. call_later: schedule N timers with delay = 0.001 + (i % 1000) * 1e-5 s (1..11 ms, strictly
 *      positive so uvloop does not turn them into call_soon); each callback counts down, the last
 *      one to fire records the end time and calls stop(); run_forever() until all fired.
 *      rate = N / elapsed. elapsed includes up to ~11 ms of waiting for the latest timer,
 *      negligible against the time to schedule and fire N timers.
 *   3. call_later_cancel: schedule N timers with delay = 3600 + (i % 1000) * 1e-5 s, keeping the
 *      handles, cancel each in the order scheduled (and release it: the C user's handle reference),
 *      then stop() and run_forever() for one iteration so the loop processes the cancellations.
 *      rate = N / (first schedule .. run_forever return).
 *
 * The peers run `/usr/bin/python3 <runfiles>/bench/loop_bench.py --loop asyncio|uvloop --n N`
 * through popen(); the script is found in Bazel runfiles: bench/loop_bench.py relative to the
 * working directory (bazel run), then $RUNFILES_DIR/loopcore/bench/loop_bench.py, then
 * <argv[0]>.runfiles/loopcore/bench/loop_bench.py (and the same next to /proc/self/exe).
 * Timing uses clock_gettime(CLOCK_MONOTONIC). Public API only. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/support/runfiles.h"
#include "loopcore.h"

#define REPS 3
#define PYTHON "/usr/bin/python3"
#define SCRIPT_REL "bench/loop_bench.py"

enum { B_CALL_SOON, B_CALL_LATER, B_CALL_LATER_CANCEL, B_COUNT };
static const char *const bench_names[B_COUNT] = {"call_soon", "call_later", "call_later_cancel"};

static void check(int r, const char *what)
{
    if (r != 0) {
        fprintf(stderr, "loop_bench: %s failed: %s\n", what, lc_strerror(r));
        exit(1);
    }
}

static lc_loop_t *new_loop(void)
{
    lc_loop_t *loop;
    check(lc_new_event_loop(&loop), "lc_new_event_loop");
    return loop;
}

static void free_loop(lc_loop_t *loop)
{
    check(lc_loop_close(loop), "lc_loop_close");
    check(lc_loop_free(loop), "lc_loop_free");
}

/* ---- Workloads ------------------------------------------------------------------------------ */

typedef struct {
    lc_loop_t *loop;
    long count;  /* call_soon: callbacks run so far; call_later: timers still to fire */
    long target; /* call_soon: N */
    double t_end;
} bench_state;

static void soon_cb(void *arg)
{
    bench_state *st = arg;
    if (++st->count == st->target) {
        st->t_end = lc_bench_now();
        lc_loop_stop(st->loop);
    }
}

static double bench_call_soon(long n)
{
    bench_state st = {.loop = new_loop(), .count = 0, .target = n, .t_end = 0};
    double t0 = lc_bench_now();
    for (long i = 0; i < n; i++)
        check(lc_loop_call_soon(st.loop, soon_cb, &st, NULL), "lc_loop_call_soon");
    check(lc_loop_run_forever(st.loop), "lc_loop_run_forever");
    if (st.count != n) {
        fprintf(stderr, "loop_bench: call_soon: %ld of %ld callbacks ran\n", st.count, n);
        exit(1);
    }
    free_loop(st.loop);
    return (double)n / (st.t_end - t0);
}

static void later_cb(void *arg)
{
    bench_state *st = arg;
    if (--st->count == 0) {
        st->t_end = lc_bench_now();
        lc_loop_stop(st->loop);
    }
}

static double bench_call_later(long n)
{
    bench_state st = {.loop = new_loop(), .count = n, .target = n, .t_end = 0};
    double t0 = lc_bench_now();
    for (long i = 0; i < n; i++)
        check(lc_loop_call_later(st.loop, 0.001 + (double)(i % 1000) * 1e-5, later_cb, &st, NULL),
              "lc_loop_call_later");
    check(lc_loop_run_forever(st.loop), "lc_loop_run_forever");
    if (st.count != 0) {
        fprintf(stderr, "loop_bench: call_later: %ld of %ld timers did not fire\n", st.count, n);
        exit(1);
    }
    free_loop(st.loop);
    return (double)n / (st.t_end - t0);
}

static void never_cb(void *arg)
{
    long *fired = arg;
    ++*fired;
}

static double bench_call_later_cancel(long n, lc_handle_t **handles)
{
    lc_loop_t *loop = new_loop();
    long fired = 0;
    double t0 = lc_bench_now();
    for (long i = 0; i < n; i++)
        check(lc_loop_call_later(loop, 3600.0 + (double)(i % 1000) * 1e-5, never_cb, &fired,
                                 &handles[i]),
              "lc_loop_call_later");
    for (long i = 0; i < n; i++) {
        check(lc_handle_cancel(handles[i]), "lc_handle_cancel");
        lc_handle_unref(handles[i]);
    }
    check(lc_loop_stop(loop), "lc_loop_stop");
    check(lc_loop_run_forever(loop), "lc_loop_run_forever");
    double t1 = lc_bench_now();
    if (fired != 0) {
        fprintf(stderr, "loop_bench: call_later_cancel: %ld cancelled timers ran\n", fired);
        exit(1);
    }
    free_loop(loop);
    return (double)n / (t1 - t0);
}

static void run_ours(long n, int only, double rates[B_COUNT])
{
    lc_handle_t **handles = malloc((size_t)n * sizeof(*handles));
    if (handles == NULL) {
        fprintf(stderr, "loop_bench: out of memory\n");
        exit(1);
    }
    for (int b = 0; b < B_COUNT; b++)
        rates[b] = 0;
    for (int b = 0; b < B_COUNT; b++) {
        if (only >= 0 && b != only)
            continue;
        for (int rep = 0; rep < REPS; rep++) {
            double r = b == B_CALL_SOON    ? bench_call_soon(n)
                       : b == B_CALL_LATER ? bench_call_later(n)
                                           : bench_call_later_cancel(n, handles);
            if (r > rates[b])
                rates[b] = r;
        }
    }
    free(handles);
}

/* ---- Python peers --------------------------------------------------------------------------- */

/* Runs the script for one loop; fills rates[] and returns true, or returns false (NA). */
static bool run_python(const char *script, const char *loop_name, long n, double rates[B_COUNT])
{
    char cmd[PATH_MAX * 2 + 128] = PYTHON " ";
    lc_bench_append_quoted(cmd, sizeof(cmd), script);
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof(cmd) - len, " --loop %s --n %ld", loop_name, n);
    char who[64], line[512];
    snprintf(who, sizeof(who), "loop_bench: %s", loop_name);
    if (!lc_bench_run_peer(who, cmd, "call_soon=", line, sizeof(line)))
        return false;
    long long a, b, c;
    if (sscanf(line, "call_soon=%lld call_later=%lld call_later_cancel=%lld", &a, &b, &c) != 3) {
        fprintf(stderr, "loop_bench: %s peer printed no figures: NA\n", loop_name);
        return false;
    }
    rates[B_CALL_SOON] = (double)a;
    rates[B_CALL_LATER] = (double)b;
    rates[B_CALL_LATER_CANCEL] = (double)c;
    return true;
}

/* ---- Main ----------------------------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--no-python] [--n N] [--only call_soon|call_later|call_later_cancel]\n"
            "  --only runs just that workload of ours (implies --no-python; for profiling)\n",
            argv0);
    exit(2);
}

static void fmt_value(char *buf, size_t cap, bool have, double v)
{
    if (have)
        snprintf(buf, cap, "%lld", (long long)v);
    else
        snprintf(buf, cap, "NA");
}

int main(int argc, char **argv)
{
    long n = 1000000;
    bool python = true;
    int only = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-python") == 0) {
            python = false;
        } else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            n = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || n < 1 || n > 100000000)
                usage(argv[0]);
        } else if (strncmp(argv[i], "--n=", 4) == 0) {
            char *end;
            errno = 0;
            n = strtol(argv[i] + 4, &end, 10);
            if (errno != 0 || *end != '\0' || n < 1 || n > 100000000)
                usage(argv[0]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            i++;
            for (int b = 0; b < B_COUNT; b++)
                if (strcmp(argv[i], bench_names[b]) == 0)
                    only = b;
            if (only < 0)
                usage(argv[0]);
            python = false;
        } else {
            usage(argv[0]);
        }
    }

    fprintf(stderr, "loop_bench: ours n=%ld reps=%d (best of)\n", n, REPS);
    double ours[B_COUNT];
    run_ours(n, only, ours);

    double asy[B_COUNT] = {0}, uvl[B_COUNT] = {0};
    bool have_asy = false, have_uvl = false;
    if (python) {
        char *script = lc_bench_find_runfile(argv[0], SCRIPT_REL);
        if (script == NULL) {
            fprintf(stderr, "loop_bench: %s not found in runfiles: peers NA\n", SCRIPT_REL);
        } else if (access(PYTHON, X_OK) != 0) {
            fprintf(stderr, "loop_bench: %s not found: peers NA\n", PYTHON);
        } else {
            fprintf(stderr, "loop_bench: python peers n=%ld reps=%d (best of), script %s\n", n,
                    REPS, script);
            have_asy = run_python(script, "asyncio", n, asy);
            have_uvl = run_python(script, "uvloop", n, uvl);
        }
        free(script);
    } else {
        fprintf(stderr, "loop_bench: --no-python: peers NA\n");
    }

    for (int b = 0; b < B_COUNT; b++) {
        if (only >= 0 && b != only)
            continue;
        char o[32], a[32], u[32], ratio[32];
        fmt_value(o, sizeof(o), true, ours[b]);
        fmt_value(a, sizeof(a), have_asy, asy[b]);
        fmt_value(u, sizeof(u), have_uvl, uvl[b]);
        if (have_uvl && uvl[b] > 0)
            snprintf(ratio, sizeof(ratio), "%.2f", ours[b] / uvl[b]);
        else
            snprintf(ratio, sizeof(ratio), "NA");
        printf("bench=%s ours=%s asyncio=%s uvloop=%s unit=ops_per_s ratio_vs_uvloop=%s\n",
               bench_names[b], o, a, u, ratio);
    }
    fflush(stdout);
    return 0;
}
