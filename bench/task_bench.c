/* task_bench: the cost of tasks (issue 7): an await/resume round trip, and creating and finishing
 * a task, for loopcore beside asyncio and uvloop.
 *
 *   bazel run -c opt //bench:task_bench [-- [--no-python] [--n N] [--tasks N] [--pairs P]
 *                                          [--batch B]]
 *
 * Prints one line per figure on stdout (other tools parse them; the format is exact):
 *   bench=<name> ours=<ns> asyncio=<ns> uvloop=<ns> unit=ns ratio_vs_uvloop=<uvloop / ours>
 * for <name> in await_resume, task_create_finish: nanoseconds per operation with one decimal (NA
 * when a peer is unavailable or skipped); the ratio has 2 decimals and is > 1 when we are faster.
 * A breakdown, the context-switch backend and the counts used go to stderr.
 *
 * Workloads (identical in bench/task_bench.py; best (lowest) of 5 repetitions, each on a fresh
 * loop, for ours and for each Python loop; timing with CLOCK_MONOTONIC):
 *
 *   1. await_resume: P = 100 pairs of tasks ping-pong through futures. Each task, R times:
 *      creates a fresh future, publishes it for its partner, completes the future its partner
 *      published (if the partner waits on one), and awaits its own; after R rounds it completes
 *      its partner's last future. So every await suspends, and is resumed by its partner's
 *      set_result through the future's done callback in the next loop iteration. Time from
 *      run_forever() (the 2P tasks created before) to the last task's end, divided by the 2PR
 *      awaits. One round trip therefore includes: create_future (an allocation), the await's
 *      done-callback registration and suspend (a switch to the loop), the partner's set_result
 *      that queues the done callback, the loop running it and resuming the task (a switch
 *      back), reading the result and freeing the future; and 1/P of a loop iteration (one poll
 *      with timeout 0 per iteration, i.e. per P round trips). R = N / 2P, N = 4,000,000 awaits
 *      for ours and 400,000 for Python (an order of magnitude slower: bench/RESULTS.md).
 *      The stderr breakdown runs the same exchange with done callbacks in place of tasks
 *      (the same futures, the callback doing what the task does after its await): what tasks
 *      add over callbacks is the difference, the switch pair and the task's bookkeeping.
 *
 *   2. task_create_finish: batches of B = 100 tasks: create B tasks whose coroutine counts
 *      itself done (the B-th stops the loop), run_forever(), then release them (C: unref; Python:
 *      drop the list). Time for all batches / number of tasks: creating the task (with its
 *      stack: from the pool after the first batch, since B is below the pool's 256), starting
 *      it, running the coroutine to its end, finishing its future, releasing it. 1,000,000 tasks
 *      for ours, 200,000 for Python. The stderr line "cold stacks" repeats it with the stack
 *      pool off (every task maps and unmaps its stack), for 20,000 tasks.
 *
 * The peers run `/usr/bin/python3 <runfiles>/bench/task_bench.py --loop asyncio|uvloop ...`
 * through popen(); the script is found in the Bazel runfiles as in loop_bench. Public API only.
 * The context-switch backend is the one the engine was built with: the default assembly one, or
 * ucontext with --copt=-DLC_FIBER_UCONTEXT (which this file sees too, to name it). */
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

#define REPS 5
#define PYTHON "/usr/bin/python3"
#define SCRIPT_REL "bench/task_bench.py"

#if defined(LC_FIBER_UCONTEXT) || (!defined(__x86_64__) && !defined(__aarch64__))
#define BACKEND "ucontext + _setjmp/_longjmp"
#else
#define BACKEND "assembly (engine/fiber_switch.S)"
#endif

enum { B_AWAIT_RESUME, B_TASK_CREATE_FINISH, B_COUNT };
static const char *const bench_names[B_COUNT] = {"await_resume", "task_create_finish"};

static void check(int r, const char *what)
{
    if (r != 0) {
        fprintf(stderr, "task_bench: %s failed: %s\n", what, lc_strerror(r));
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

/* ---- 1. await_resume: pairs of tasks ping-pong through futures ------------------------------ */

typedef struct player_s {
    struct player_s *partner;
    lc_future_t *fut; /* the future this player awaits now, for its partner to complete */
    long rounds;
    long round;
    struct pingpong_s *pp;
} player_t;

typedef struct pingpong_s {
    lc_loop_t *loop;
    long finished;
    long players;
    double t_end;
} pingpong_t;

/* Completes the partner's future if it waits on one. */
static inline void wake_partner(player_t *p)
{
    player_t *o = p->partner;
    lc_future_t *w = o->fut;
    if (w != NULL) {
        o->fut = NULL;
        check(lc_future_set_result(w, NULL), "lc_future_set_result");
    }
}

static void player_done(player_t *p)
{
    wake_partner(p);
    if (++p->pp->finished == p->pp->players) {
        p->pp->t_end = lc_bench_now();
        lc_loop_stop(p->pp->loop);
    }
}

static int coro_player(void *arg, void **result)
{
    player_t *p = arg;
    lc_loop_t *loop = p->pp->loop;
    (void)result;
    for (long i = 0; i < p->rounds; i++) {
        lc_future_t *fut;
        check(lc_loop_create_future(loop, &fut), "lc_loop_create_future");
        p->fut = fut;
        wake_partner(p);
        check(lc_await(fut, NULL), "lc_await");
        lc_future_unref(fut);
    }
    player_done(p);
    return 0;
}

/* The same exchange with done callbacks instead of tasks: step() is what the task does between
 * two awaits; the done callback of the player's future calls it again. */
static void cb_step(player_t *p);

static void cb_done(lc_future_t *fut, void *arg)
{
    player_t *p = arg;
    check(lc_future_result(fut, NULL), "lc_future_result");
    lc_future_unref(fut);
    if (++p->round == p->rounds)
        player_done(p);
    else
        cb_step(p);
}

static void cb_step(player_t *p)
{
    lc_future_t *fut;
    check(lc_loop_create_future(p->pp->loop, &fut), "lc_loop_create_future");
    p->fut = fut;
    wake_partner(p);
    check(lc_future_add_done_callback(fut, cb_done, p), "lc_future_add_done_callback");
}

static void cb_start(void *arg) { cb_step(arg); }

/* ns per await (or per callback round trip with use_tasks false). */
static double run_pingpong(long pairs, long rounds, bool use_tasks)
{
    pingpong_t pp = {.loop = new_loop(), .players = 2 * pairs};
    player_t *players = calloc((size_t)(2 * pairs), sizeof(*players));
    lc_future_t **tasks = calloc((size_t)(2 * pairs), sizeof(*tasks));
    if (players == NULL || tasks == NULL) {
        fprintf(stderr, "task_bench: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < 2 * pairs; i++) {
        players[i] = (player_t){.partner = &players[i ^ 1], .rounds = rounds, .pp = &pp};
        if (use_tasks)
            check(lc_loop_create_task(pp.loop, coro_player, &players[i], &tasks[i]),
                  "lc_loop_create_task");
        else
            check(lc_loop_call_soon(pp.loop, cb_start, &players[i], NULL), "lc_loop_call_soon");
    }
    double t0 = lc_bench_now();
    check(lc_loop_run_forever(pp.loop), "lc_loop_run_forever");
    if (pp.finished != 2 * pairs) {
        fprintf(stderr, "task_bench: await_resume: %ld of %ld players finished\n", pp.finished,
                2 * pairs);
        exit(1);
    }
    double ns = (pp.t_end - t0) * 1e9 / (double)(2 * pairs * rounds);
    for (long i = 0; use_tasks && i < 2 * pairs; i++) {
        check(lc_future_result(tasks[i], NULL), "task result");
        lc_future_unref(tasks[i]);
    }
    free(tasks);
    free(players);
    free_loop(pp.loop);
    return ns;
}

/* ---- 2. task_create_finish ------------------------------------------------------------------ */

typedef struct {
    lc_loop_t *loop;
    long done;
    long batch;
} batch_t;

static int coro_nop(void *arg, void **result)
{
    batch_t *b = arg;
    (void)result;
    if (++b->done == b->batch)
        lc_loop_stop(b->loop);
    return 0;
}

/* ns per task; pool_max (size_t)-1 keeps the default pool. */
static double run_create_finish(long ntasks, long batch, size_t pool_max, lc_task_stats_t *stats)
{
    batch_t b = {.loop = new_loop(), .batch = batch};
    if (pool_max != (size_t)-1)
        check(lc_loop_set_task_stack_pool_max(b.loop, pool_max), "set_task_stack_pool_max");
    lc_future_t **tasks = calloc((size_t)batch, sizeof(*tasks));
    if (tasks == NULL) {
        fprintf(stderr, "task_bench: out of memory\n");
        exit(1);
    }
    long batches = ntasks / batch;
    double t0 = lc_bench_now();
    for (long k = 0; k < batches; k++) {
        b.done = 0;
        for (long i = 0; i < batch; i++)
            check(lc_loop_create_task(b.loop, coro_nop, &b, &tasks[i]), "lc_loop_create_task");
        check(lc_loop_run_forever(b.loop), "lc_loop_run_forever");
        if (b.done != batch) {
            fprintf(stderr, "task_bench: task_create_finish: %ld of %ld tasks ran\n", b.done,
                    batch);
            exit(1);
        }
        for (long i = 0; i < batch; i++)
            lc_future_unref(tasks[i]);
    }
    double ns = (lc_bench_now() - t0) * 1e9 / (double)(batches * batch);
    if (stats != NULL)
        check(lc_loop_get_task_stats(b.loop, stats), "lc_loop_get_task_stats");
    free(tasks);
    free_loop(b.loop);
    return ns;
}

/* ---- Python peers --------------------------------------------------------------------------- */

/* Runs the script for one loop; fills ns[] and returns true, or returns false (NA). */
static bool run_python(const char *script, const char *loop_name, long n, long ntasks, long pairs,
                       long batch, double ns[B_COUNT])
{
    char cmd[PATH_MAX * 2 + 256] = PYTHON " ";
    lc_bench_append_quoted(cmd, sizeof(cmd), script);
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof(cmd) - len, " --loop %s --n %ld --tasks %ld --pairs %ld --batch %ld",
             loop_name, n, ntasks, pairs, batch);
    char who[64], line[512];
    snprintf(who, sizeof(who), "task_bench: %s", loop_name);
    if (!lc_bench_run_peer(who, cmd, "await_resume=", line, sizeof(line)))
        return false;
    double a, b;
    if (sscanf(line, "await_resume=%lf task_create_finish=%lf", &a, &b) != 2) {
        fprintf(stderr, "task_bench: %s peer printed no figures: NA\n", loop_name);
        return false;
    }
    ns[B_AWAIT_RESUME] = a;
    ns[B_TASK_CREATE_FINISH] = b;
    return true;
}

/* ---- Main ----------------------------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--no-python] [--n AWAITS] [--tasks N] [--pairs P] [--batch B]\n"
            "  --n: awaits of await_resume (ours; Python does a tenth)\n"
            "  --tasks: tasks of task_create_finish (ours; Python does a fifth)\n",
            argv0);
    exit(2);
}

static long parse_long(const char *s, const char *argv0)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > 1000000000)
        usage(argv0);
    return v;
}

static void fmt_value(char *buf, size_t cap, bool have, double v)
{
    if (have)
        snprintf(buf, cap, "%.1f", v);
    else
        snprintf(buf, cap, "NA");
}

static double best_of(double a, double b) { return a < b ? a : b; }

int main(int argc, char **argv)
{
    long n = 4000000, ntasks = 1000000, pairs = 100, batch = 100;
    bool python = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-python") == 0)
            python = false;
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            n = parse_long(argv[++i], argv[0]);
        else if (strcmp(argv[i], "--tasks") == 0 && i + 1 < argc)
            ntasks = parse_long(argv[++i], argv[0]);
        else if (strcmp(argv[i], "--pairs") == 0 && i + 1 < argc)
            pairs = parse_long(argv[++i], argv[0]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = parse_long(argv[++i], argv[0]);
        else
            usage(argv[0]);
    }
    long rounds = n / (2 * pairs);
    if (rounds < 1 || ntasks < batch)
        usage(argv[0]);

    fprintf(stderr,
            "task_bench: context switch: %s; ours: await_resume %ld pairs x %ld rounds "
            "(%ld awaits), task_create_finish %ld tasks in batches of %ld; best of %d\n",
            BACKEND, pairs, rounds, 2 * pairs * rounds, (ntasks / batch) * batch, batch, REPS);
    double ours[B_COUNT] = {1e300, 1e300};
    double cb = 1e300, cold = 1e300;
    lc_task_stats_t st = {0}, cold_st = {0};
    for (int rep = 0; rep < REPS; rep++) {
        ours[B_AWAIT_RESUME] = best_of(ours[B_AWAIT_RESUME], run_pingpong(pairs, rounds, true));
        cb = best_of(cb, run_pingpong(pairs, rounds, false));
        ours[B_TASK_CREATE_FINISH] =
            best_of(ours[B_TASK_CREATE_FINISH], run_create_finish(ntasks, batch, (size_t)-1, &st));
        cold =
            best_of(cold, run_create_finish(20000 < ntasks ? 20000 : ntasks, batch, 0, &cold_st));
    }
    fprintf(stderr,
            "task_bench: await_resume breakdown: %.1f ns per round trip = %.1f ns of the same "
            "future traffic driven by done callbacks + %.1f ns that tasks add (switch pair, "
            "await bookkeeping)\n",
            ours[B_AWAIT_RESUME], cb, ours[B_AWAIT_RESUME] - cb);
    fprintf(stderr,
            "task_bench: task_create_finish: %.1f ns with pooled stacks (%llu mapped, %llu reused "
            "in the last repetition); cold stacks (pool off, mmap+mprotect+munmap each): %.1f ns "
            "(%llu mapped)\n",
            ours[B_TASK_CREATE_FINISH], (unsigned long long)st.stacks_mapped,
            (unsigned long long)st.stacks_reused, cold, (unsigned long long)cold_st.stacks_mapped);

    double asy[B_COUNT] = {0}, uvl[B_COUNT] = {0};
    bool have_asy = false, have_uvl = false;
    long py_n = n / 10 > 2 * pairs ? n / 10 : 2 * pairs, py_tasks = ntasks / 5;
    if (py_tasks < batch)
        py_tasks = batch;
    if (python) {
        char *script = lc_bench_find_runfile(argv[0], SCRIPT_REL);
        if (script == NULL) {
            fprintf(stderr, "task_bench: %s not found in runfiles: peers NA\n", SCRIPT_REL);
        } else if (access(PYTHON, X_OK) != 0) {
            fprintf(stderr, "task_bench: %s not found: peers NA\n", PYTHON);
        } else {
            fprintf(stderr,
                    "task_bench: python peers: %ld awaits, %ld tasks, best of %d, script %s\n",
                    py_n, py_tasks, REPS, script);
            have_asy = run_python(script, "asyncio", py_n, py_tasks, pairs, batch, asy);
            have_uvl = run_python(script, "uvloop", py_n, py_tasks, pairs, batch, uvl);
        }
        free(script);
    } else {
        fprintf(stderr, "task_bench: --no-python: peers NA\n");
    }

    for (int b = 0; b < B_COUNT; b++) {
        char o[32], a[32], u[32], ratio[32];
        fmt_value(o, sizeof(o), true, ours[b]);
        fmt_value(a, sizeof(a), have_asy, asy[b]);
        fmt_value(u, sizeof(u), have_uvl, uvl[b]);
        if (have_uvl && ours[b] > 0)
            snprintf(ratio, sizeof(ratio), "%.2f", uvl[b] / ours[b]);
        else
            snprintf(ratio, sizeof(ratio), "NA");
        printf("bench=%s ours=%s asyncio=%s uvloop=%s unit=ns ratio_vs_uvloop=%s\n", bench_names[b],
               o, a, u, ratio);
    }
    fflush(stdout);
    return 0;
}
