/* executor_bench: run_in_executor of loopcore beside libuv's uv_queue_work and the run_in_executor
 * of Python's asyncio and uvloop (issue 4).
 *
 *   bazel run -c opt //bench:executor_bench [-- [--no-python] [--n N] [--only ours] [--verbose]]
 *
 * Prints one line per figure on stdout (other tools parse them; the format is exact):
 *   bench=<name> ours=<v> uv_queue_work=<v> asyncio=<v> uvloop=<v> unit=<unit> ratio_vs_uv=<x>
 *   - executor_roundtrips          unit=roundtrips_per_s  ratio = ours / uv_queue_work
 *   - executor_rtt_p50             unit=us                ratio = uv_queue_work / ours
 *   - executor_blocking_1000x1ms   unit=ms                ratio = uv_queue_work / ours
 * NA where a peer is unavailable or skipped. Notes, the cross-loop round trip of a loop group and
 * the targets' verdicts go to stderr.
 *
 * Workloads (the same in bench/executor_bench.py for the Python peers):
 *   1. roundtrips: N empty jobs (N = 1,000,000 for ours and uv, 100,000 for Python), W = 1024 in
 *      flight: each completion, on the loop's thread, counts and submits the next job. rate =
 *      N / (first submission .. last completion). Best of 3.
 *   2. rtt: one empty job at a time, 20,000 round trips (5,000 for Python) after 1,000 of warm-up;
 *      each is the time from the submission to its completion callback on the loop. p50 (and p99
 *      on stderr).
 *   3. blocking: 1,000 jobs that each sleep 1 ms (nanosleep / time.sleep), all submitted at once,
 *      on 64 workers; the time until the last completion. Ideal: 1000 / 64 = 15.6 ms. Best of 3,
 *      on the same pool (the first, cold repetition, which starts the threads, is on stderr).
 *
 * The figure "ours" is lc_loop_run_in_executor() (a future per job, as Python's run_in_executor);
 * stderr also gives the round trips through lc_loop_queue_work(), whose shape (a caller-allocated
 * request, work and after callbacks, no future) is uv_queue_work's.
 *
 * Configurations. ours: roundtrips and blocking from a standalone loop (it does not spin, as uv's
 * loop), roundtrips through the loop's default executor (min(32, CPUs + 4) workers), blocking
 * through an executor with max_workers = 64. The rtt figure comes from the loop of a one-loop
 * group (pinned, with a group's spin budget) through the group's default executor, since the
 * target compares it with the cross-loop round trip of a group; stderr also has the rtt from a
 * standalone loop. The completion
 * is observed with a done callback on the future, as a user would. uv_queue_work: a plain uv loop
 * in a child process (libuv reads UV_THREADPOOL_SIZE once, at the pool's first use): the default
 * pool of 4 threads for roundtrips and rtt, UV_THREADPOOL_SIZE=64 for blocking. Python: Debian's
 * /usr/bin/python3 running <runfiles>/bench/executor_bench.py --loop asyncio|uvloop; the loop's
 * default ThreadPoolExecutor, and ThreadPoolExecutor(64) for blocking.
 *
 * The cross-loop round trip: lc_loop_submit() of an empty function from loop 0 to loop 1 of a
 * two-loop group and back, one at a time, p50 (the latency target compares with it). It is
 * measured right after the rtt figure, so that the two see the machine in the same state: on a
 * shared VM both move together from one minute to the next (the cost of moving a cache line
 * between two vCPUs varies with where the host runs them; bench/RESULTS.md, executor_bench). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bench/support/runfiles.h"
#include "loopcore.h"

#define REPS 3
#define WINDOW 1024
#define RTT_WARMUP 1000
#define RTT_N 20000
#define BLOCK_JOBS 1000
#define BLOCK_WORKERS 64
#define PYTHON "/usr/bin/python3"
#define SCRIPT_REL "bench/executor_bench.py"

static void check(int r, const char *what)
{
    if (r != 0) {
        fprintf(stderr, "executor_bench: %s failed: %s\n", what, lc_strerror(r));
        exit(1);
    }
}

static void sleep_1ms(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* What one figure measured: a value, and for rtt the p99 too. */
typedef struct {
    double roundtrips; /* per second */
    double rtt_p50;    /* us */
    double rtt_p99;    /* us */
    double blocking;   /* ms, best */
    double blocking_cold;
    double queue_work; /* roundtrips per second through lc_loop_queue_work (ours only) */
    double rtt_nospin_p50, rtt_nospin_p99; /* ours on a loop that does not spin */
    double xloop; /* us: the group's cross-loop round trip p50, right after rtt (ours only) */
} figures_t;

/* ---- Ours ------------------------------------------------------------------------------------ */

static int empty_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

static int sleep_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    sleep_1ms();
    return 0;
}

typedef struct {
    lc_loop_t *loop;
    lc_executor_t *ex; /* NULL: the loop's default */
    lc_job_fn fn;
    long submitted, done, target;
    double t_end;
    /* rtt */
    double t_submit;
    double *samples;
    long nsamples;
    /* In a group: signalled at the end instead of stopping the loop. */
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    bool finished;
} ours_state;

static void ours_submit(ours_state *st);

static void ours_done_cb(lc_future_t *fut, void *arg)
{
    ours_state *st = arg;
    void *result;
    check(lc_future_result(fut, &result), "job");
    lc_future_unref(fut);
    st->done++;
    if (st->samples != NULL) {
        double t = lc_bench_now();
        long k = st->done - RTT_WARMUP - 1;
        if (k >= 0 && k < st->nsamples)
            st->samples[k] = (t - st->t_submit) * 1e6;
    }
    if (st->done == st->target) {
        st->t_end = lc_bench_now();
        if (st->mu != NULL) {
            pthread_mutex_lock(st->mu);
            st->finished = true;
            pthread_cond_signal(st->cv);
            pthread_mutex_unlock(st->mu);
        } else {
            lc_loop_stop(st->loop);
        }
        return;
    }
    if (st->submitted < st->target)
        ours_submit(st);
}

static void ours_submit(ours_state *st)
{
    lc_future_t *fut;
    if (st->samples != NULL)
        st->t_submit = lc_bench_now();
    check(lc_loop_run_in_executor(st->loop, st->ex, st->fn, NULL, &fut), "run_in_executor");
    st->submitted++;
    check(lc_future_add_done_callback(fut, ours_done_cb, st), "add_done_callback");
}

/* A standalone loop, with its defaults (it does not spin). */
static lc_loop_t *ours_loop(void)
{
    lc_loop_t *loop;
    check(lc_new_event_loop(&loop), "lc_new_event_loop");
    return loop;
}

static void ours_free(lc_loop_t *loop)
{
    check(lc_loop_close(loop), "lc_loop_close");
    check(lc_loop_free(loop), "lc_loop_free");
}

static bool verbose;

static int current_executor_job(void *arg, void **result)
{
    (void)arg;
    *result = lc_executor_current();
    return 0;
}

static double ours_roundtrips(long n)
{
    lc_loop_t *loop = ours_loop();
    ours_state st = {.loop = loop, .fn = empty_job, .target = n};
    double t0 = lc_bench_now();
    for (long i = 0; i < WINDOW && i < n; i++)
        ours_submit(&st);
    check(lc_loop_run_forever(loop), "run_forever");
    double rate = (double)n / (st.t_end - t0);
    if (verbose) {
        /* The loop's default executor, as a job sees it. */
        lc_future_t *fut;
        void *ex = NULL;
        check(lc_loop_run_in_executor(loop, NULL, current_executor_job, NULL, &fut), "run");
        check(lc_loop_run_until_complete(loop, fut, &ex), "run_until_complete");
        lc_future_unref(fut);
        lc_executor_stats_t es;
        lc_loop_threadsafe_stats_t ts;
        check(lc_executor_get_stats(ex, &es), "get_stats");
        check(lc_loop_get_threadsafe_stats(loop, &ts), "get_threadsafe_stats");
        fprintf(stderr,
                "executor_bench: roundtrips %.0f/s: workers %u, loop wakeups %llu, "
                "messages %llu (%.1f outcomes per message)\n",
                rate, es.workers, (unsigned long long)ts.wakeups, (unsigned long long)ts.received,
                (double)n / (double)ts.received);
    }
    ours_free(loop);
    return rate;
}

/* The same round trips through lc_loop_queue_work(), the zero-allocation form shaped like
 * uv_queue_work (a caller-allocated request, a work function and an after callback). */
typedef struct {
    lc_loop_t *loop;
    long submitted, done, target;
    double t_end;
} qw_state;

typedef struct {
    lc_work_t req;
    qw_state *st;
} qw_req;

static int qw_work(lc_work_t *req)
{
    (void)req;
    return 0;
}

static void qw_after(lc_work_t *req, int status)
{
    qw_req *q = lc_container_of(req, qw_req, req);
    qw_state *st = q->st;
    check(status, "work");
    if (++st->done == st->target) {
        st->t_end = lc_bench_now();
        lc_loop_stop(st->loop);
        return;
    }
    if (st->submitted < st->target) {
        st->submitted++;
        check(lc_loop_queue_work(st->loop, NULL, &q->req, qw_work, qw_after), "queue_work");
    }
}

static double ours_queue_work_roundtrips(long n)
{
    lc_loop_t *loop = ours_loop();
    qw_state st = {.loop = loop, .target = n};
    qw_req *reqs = calloc(WINDOW, sizeof(*reqs));
    double t0 = lc_bench_now();
    for (long i = 0; i < WINDOW && i < n; i++) {
        reqs[i].st = &st;
        st.submitted++;
        check(lc_loop_queue_work(loop, NULL, &reqs[i].req, qw_work, qw_after), "queue_work");
    }
    check(lc_loop_run_forever(loop), "run_forever");
    double rate = (double)n / (st.t_end - t0);
    ours_free(loop);
    free(reqs);
    return rate;
}

/* The rtt from a standalone loop (no spin). */
static void ours_rtt(double *p50, double *p99)
{
    lc_loop_t *loop = ours_loop();
    double *samples = calloc(RTT_N, sizeof(*samples));
    ours_state st = {.loop = loop,
                     .fn = empty_job,
                     .target = RTT_WARMUP + RTT_N,
                     .samples = samples,
                     .nsamples = RTT_N};
    ours_submit(&st);
    check(lc_loop_run_forever(loop), "run_forever");
    ours_free(loop);
    *p50 = percentile(samples, RTT_N, 0.50);
    *p99 = percentile(samples, RTT_N, 0.99);
    free(samples);
}

static void rtt_group_start(lc_loop_t *loop, unsigned index, void *arg)
{
    (void)index;
    ours_state *st = arg;
    st->loop = loop;
    ours_submit(st);
}

/* The rtt from the loop of a one-loop group (pinned, spinning as group loops do), through the
 * group's default executor (the process-wide shared one), as a server on a group would see it. */
static void ours_rtt_group(double *p50, double *p99)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    double *samples = calloc(RTT_N, sizeof(*samples));
    ours_state st = {.fn = empty_job,
                     .target = RTT_WARMUP + RTT_N,
                     .samples = samples,
                     .nsamples = RTT_N,
                     .mu = &mu,
                     .cv = &cv};
    lc_group_t *g;
    check(
        lc_group_create(
            &g, &(lc_group_opts_t){.nloops = 1, .on_start = rtt_group_start, .on_start_arg = &st}),
        "lc_group_create");
    check(lc_group_start(g), "lc_group_start");
    pthread_mutex_lock(&mu);
    while (!st.finished)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    check(lc_group_stop(g), "lc_group_stop");
    check(lc_group_join(g), "lc_group_join");
    check(lc_executor_default_shutdown(false), "lc_executor_default_shutdown");
    check(lc_group_free(g), "lc_group_free");
    *p50 = percentile(samples, RTT_N, 0.50);
    *p99 = percentile(samples, RTT_N, 0.99);
    free(samples);
}

static double ours_blocking(lc_executor_t *ex)
{
    lc_loop_t *loop = ours_loop();
    ours_state st = {.loop = loop, .ex = ex, .fn = sleep_job, .target = BLOCK_JOBS};
    double t0 = lc_bench_now();
    for (long i = 0; i < BLOCK_JOBS; i++)
        ours_submit(&st);
    check(lc_loop_run_forever(loop), "run_forever");
    ours_free(loop);
    return (st.t_end - t0) * 1e3;
}

static double cross_loop_rtt_p50(void);

static void run_ours(long n, figures_t *f)
{
    f->roundtrips = 0;
    for (int rep = 0; rep < REPS; rep++) {
        double r = ours_roundtrips(n);
        if (r > f->roundtrips)
            f->roundtrips = r;
    }
    f->queue_work = 0;
    for (int rep = 0; rep < REPS; rep++) {
        double r = ours_queue_work_roundtrips(n);
        if (r > f->queue_work)
            f->queue_work = r;
    }
    ours_rtt_group(&f->rtt_p50, &f->rtt_p99);
    f->xloop = cross_loop_rtt_p50();
    ours_rtt(&f->rtt_nospin_p50, &f->rtt_nospin_p99);
    lc_executor_t *ex;
    check(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = BLOCK_WORKERS}),
          "lc_executor_create");
    f->blocking = INFINITY;
    for (int rep = 0; rep < REPS; rep++) {
        double ms = ours_blocking(ex);
        if (rep == 0)
            f->blocking_cold = ms;
        if (ms < f->blocking)
            f->blocking = ms;
    }
    check(lc_executor_free(ex), "lc_executor_free");
}

/* The cross-loop round trip of a two-loop group, p50 in us. */
typedef struct {
    lc_group_t *g;
    long done;
    double t_submit;
    double samples[RTT_N];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool finished;
} xloop_state;

static int xloop_fn(lc_loop_t *target, void *arg, void **result)
{
    (void)target;
    (void)arg;
    (void)result;
    return 0;
}

static void xloop_submit(xloop_state *st);

static void xloop_done_cb(lc_future_t *fut, void *arg)
{
    xloop_state *st = arg;
    double t = lc_bench_now();
    lc_future_unref(fut);
    long k = st->done - RTT_WARMUP;
    if (k >= 0 && k < RTT_N)
        st->samples[k] = (t - st->t_submit) * 1e6;
    if (++st->done == RTT_WARMUP + RTT_N) {
        pthread_mutex_lock(&st->mu);
        st->finished = true;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
        return;
    }
    xloop_submit(st);
}

static void xloop_submit(xloop_state *st)
{
    lc_future_t *fut;
    st->t_submit = lc_bench_now();
    check(lc_group_submit(st->g, 1, xloop_fn, NULL, &fut), "lc_group_submit");
    check(lc_future_add_done_callback(fut, xloop_done_cb, st), "add_done_callback");
}

static void xloop_start(lc_loop_t *loop, unsigned index, void *arg)
{
    (void)loop;
    if (index == 0)
        xloop_submit(arg);
}

static double cross_loop_rtt_p50(void)
{
    static xloop_state st;
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    int r = lc_group_create(
        &st.g, &(lc_group_opts_t){.nloops = 2, .on_start = xloop_start, .on_start_arg = &st});
    check(r, "lc_group_create");
    check(lc_group_start(st.g), "lc_group_start");
    pthread_mutex_lock(&st.mu);
    while (!st.finished)
        pthread_cond_wait(&st.cv, &st.mu);
    pthread_mutex_unlock(&st.mu);
    check(lc_group_free(st.g), "lc_group_free");
    return percentile(st.samples, RTT_N, 0.50);
}

/* ---- uv_queue_work (in a child process) ------------------------------------------------------ */

typedef struct {
    uv_loop_t *loop;
    uv_work_t *reqs;
    void (*work)(uv_work_t *);
    long submitted, done, target;
    double t_end, t_submit;
    double *samples;
} uv_state;

static void uv_empty_work(uv_work_t *req) { (void)req; }

static void uv_sleep_work(uv_work_t *req)
{
    (void)req;
    sleep_1ms();
}

static void uv_after(uv_work_t *req, int status);

static void uv_submit(uv_state *st, uv_work_t *req)
{
    req->data = st;
    if (st->samples != NULL)
        st->t_submit = lc_bench_now();
    if (uv_queue_work(st->loop, req, st->work, uv_after) != 0) {
        fprintf(stderr, "executor_bench: uv_queue_work failed\n");
        exit(1);
    }
    st->submitted++;
}

static void uv_after(uv_work_t *req, int status)
{
    uv_state *st = req->data;
    (void)status;
    st->done++;
    if (st->samples != NULL) {
        long k = st->done - RTT_WARMUP - 1;
        if (k >= 0 && k < RTT_N)
            st->samples[k] = (lc_bench_now() - st->t_submit) * 1e6;
    }
    if (st->done == st->target) {
        st->t_end = lc_bench_now();
        return;
    }
    if (st->submitted < st->target)
        uv_submit(st, req);
}

static void uv_child(const char *what, long n, int fd)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    double out[3] = {0, 0, 0};
    if (strcmp(what, "fast") == 0) {
        uv_work_t *reqs = calloc(WINDOW, sizeof(*reqs));
        for (int rep = 0; rep < REPS; rep++) {
            uv_state st = {.loop = &loop, .work = uv_empty_work, .target = n};
            double t0 = lc_bench_now();
            for (long i = 0; i < WINDOW && i < n; i++)
                uv_submit(&st, &reqs[i]);
            uv_run(&loop, UV_RUN_DEFAULT);
            double r = (double)n / (st.t_end - t0);
            if (r > out[0])
                out[0] = r;
        }
        free(reqs);
        double *samples = calloc(RTT_N, sizeof(*samples));
        uv_work_t req;
        uv_state st = {
            .loop = &loop, .work = uv_empty_work, .target = RTT_WARMUP + RTT_N, .samples = samples};
        uv_submit(&st, &req);
        uv_run(&loop, UV_RUN_DEFAULT);
        out[1] = percentile(samples, RTT_N, 0.50);
        out[2] = percentile(samples, RTT_N, 0.99);
        free(samples);
    } else {
        uv_work_t *reqs = calloc(BLOCK_JOBS, sizeof(*reqs));
        out[0] = INFINITY;
        for (int rep = 0; rep < REPS; rep++) {
            uv_state st = {.loop = &loop, .work = uv_sleep_work, .target = BLOCK_JOBS};
            double t0 = lc_bench_now();
            for (long i = 0; i < BLOCK_JOBS; i++)
                uv_submit(&st, &reqs[i]);
            uv_run(&loop, UV_RUN_DEFAULT);
            double ms = (st.t_end - t0) * 1e3;
            if (rep == 0)
                out[1] = ms;
            if (ms < out[0])
                out[0] = ms;
        }
        free(reqs);
    }
    uv_loop_close(&loop);
    if (write(fd, out, sizeof(out)) != (ssize_t)sizeof(out))
        _exit(1);
    _exit(0);
}

/* Runs uv_child(what) in a child process with UV_THREADPOOL_SIZE = pool (NULL: unset). */
static bool run_uv(const char *what, const char *pool, long n, double out[3])
{
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        close(fds[0]);
        if (pool != NULL)
            setenv("UV_THREADPOOL_SIZE", pool, 1);
        else
            unsetenv("UV_THREADPOOL_SIZE");
        uv_child(what, n, fds[1]);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], out, 3 * sizeof(double));
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return got == (ssize_t)(3 * sizeof(double)) && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ---- Python peers ---------------------------------------------------------------------------- */

/* Runs the script for one loop; fills f and returns true, or returns false (NA). */
static bool run_python(const char *script, const char *loop_name, figures_t *f)
{
    char cmd[PATH_MAX * 2 + 128] = PYTHON " ";
    lc_bench_append_quoted(cmd, sizeof(cmd), script);
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof(cmd) - len, " --loop %s", loop_name);
    char who[64], line[512];
    snprintf(who, sizeof(who), "executor_bench: %s", loop_name);
    if (!lc_bench_run_peer(who, cmd, "roundtrips=", line, sizeof(line)))
        return false;
    if (sscanf(line, "roundtrips=%lf rtt_p50_us=%lf rtt_p99_us=%lf blocking_ms=%lf", &f->roundtrips,
               &f->rtt_p50, &f->rtt_p99, &f->blocking) != 4) {
        fprintf(stderr, "executor_bench: %s peer printed no figures: NA\n", loop_name);
        return false;
    }
    return true;
}

/* ---- Main ------------------------------------------------------------------------------------ */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--no-python] [--n N] [--only ours] [--verbose]\n"
            "  --only ours runs just our workloads (no peers; for profiling)\n",
            argv0);
    exit(2);
}

static void fmt(char *buf, size_t cap, bool have, double v, int decimals)
{
    if (have && isfinite(v))
        snprintf(buf, cap, "%.*f", decimals, v);
    else
        snprintf(buf, cap, "NA");
}

static void print_line(const char *name, const char *unit, int decimals, double ours, bool have_uv,
                       double uv, bool have_asy, double asy, bool have_uvl, double uvl,
                       bool higher_is_better)
{
    char o[32], u[32], a[32], l[32], ratio[32];
    fmt(o, sizeof(o), true, ours, decimals);
    fmt(u, sizeof(u), have_uv, uv, decimals);
    fmt(a, sizeof(a), have_asy, asy, decimals);
    fmt(l, sizeof(l), have_uvl, uvl, decimals);
    if (have_uv && ours > 0 && uv > 0)
        snprintf(ratio, sizeof(ratio), "%.2f", higher_is_better ? ours / uv : uv / ours);
    else
        snprintf(ratio, sizeof(ratio), "NA");
    printf("bench=%s ours=%s uv_queue_work=%s asyncio=%s uvloop=%s unit=%s ratio_vs_uv=%s\n", name,
           o, u, a, l, unit, ratio);
}

int main(int argc, char **argv)
{
    long n = 1000000;
    bool python = true, peers = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-python") == 0) {
            python = false;
        } else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            n = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || n < WINDOW || n > 100000000)
                usage(argv[0]);
        } else if (strcmp(argv[i], "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc &&
                   strcmp(argv[i + 1], "ours") == 0) {
            i++;
            peers = python = false;
        } else {
            usage(argv[0]);
        }
    }

    /* libuv first, in child processes forked before this process has any thread. */
    double uvf[3] = {0, 0, 0}, uvb[3] = {0, 0, 0};
    bool have_uv_fast = false, have_uv_block = false;
    if (peers) {
        fprintf(stderr, "executor_bench: uv_queue_work n=%ld window=%d (default pool of 4)\n", n,
                WINDOW);
        have_uv_fast = run_uv("fast", NULL, n, uvf);
        fprintf(stderr, "executor_bench: uv_queue_work blocking (UV_THREADPOOL_SIZE=%d)\n",
                BLOCK_WORKERS);
        have_uv_block = run_uv("block", "64", n, uvb);
        if (!have_uv_fast || !have_uv_block)
            fprintf(stderr, "executor_bench: a uv_queue_work child failed: NA\n");
    }

    fprintf(stderr, "executor_bench: ours n=%ld window=%d reps=%d\n", n, WINDOW, REPS);
    figures_t ours = {0};
    run_ours(n, &ours);
    double xloop = ours.xloop;

    figures_t asy = {0}, uvl = {0};
    bool have_asy = false, have_uvl = false;
    if (python) {
        char *script = lc_bench_find_runfile(argv[0], SCRIPT_REL);
        if (script == NULL) {
            fprintf(stderr, "executor_bench: %s not found in runfiles: peers NA\n", SCRIPT_REL);
        } else if (access(PYTHON, X_OK) != 0) {
            fprintf(stderr, "executor_bench: %s not found: peers NA\n", PYTHON);
        } else {
            fprintf(stderr, "executor_bench: python peers, script %s\n", script);
            have_asy = run_python(script, "asyncio", &asy);
            have_uvl = run_python(script, "uvloop", &uvl);
        }
        free(script);
    } else {
        fprintf(stderr, "executor_bench: python peers skipped: NA\n");
    }

    print_line("executor_roundtrips", "roundtrips_per_s", 0, ours.roundtrips, have_uv_fast, uvf[0],
               have_asy, asy.roundtrips, have_uvl, uvl.roundtrips, true);
    print_line("executor_rtt_p50", "us", 2, ours.rtt_p50, have_uv_fast, uvf[1], have_asy,
               asy.rtt_p50, have_uvl, uvl.rtt_p50, false);
    print_line("executor_blocking_1000x1ms", "ms", 2, ours.blocking, have_uv_block, uvb[0],
               have_asy, asy.blocking, have_uvl, uvl.blocking, false);
    fflush(stdout);

    double ideal = 1000.0 / BLOCK_WORKERS;
    fprintf(stderr,
            "executor_bench: ours rtt p99 %.2f us; blocking cold (first use, starts the "
            "threads) %.2f ms\n",
            ours.rtt_p99, ours.blocking_cold);
    if (have_uv_fast && have_uv_block)
        fprintf(stderr, "executor_bench: uv_queue_work rtt p99 %.2f us; blocking cold %.2f ms\n",
                uvf[2], uvb[1]);
    if (have_asy)
        fprintf(stderr, "executor_bench: asyncio rtt p99 %.2f us\n", asy.rtt_p99);
    if (have_uvl)
        fprintf(stderr, "executor_bench: uvloop rtt p99 %.2f us\n", uvl.rtt_p99);
    fprintf(stderr, "executor_bench: group cross-loop round trip p50 %.2f us\n", xloop);
    fprintf(stderr,
            "executor_bench: ours rtt from a standalone loop (which does not spin): p50 %.2f us, "
            "p99 %.2f us\n",
            ours.rtt_nospin_p50, ours.rtt_nospin_p99);
    if (have_uv_fast)
        fprintf(stderr,
                "executor_bench: ours through lc_loop_queue_work (uv_queue_work's shape, no "
                "future): %.0f roundtrips/s, %.2fx uv_queue_work\n",
                ours.queue_work, ours.queue_work / uvf[0]);
    else
        fprintf(stderr,
                "executor_bench: ours through lc_loop_queue_work (uv_queue_work's shape, no "
                "future): %.0f roundtrips/s\n",
                ours.queue_work);
    fprintf(stderr, "executor_bench: target roundtrips >= 500000/s: %s (%.0f)\n",
            ours.roundtrips >= 500000 ? "PASS" : "FAIL", ours.roundtrips);
    if (have_uv_fast)
        fprintf(stderr, "executor_bench: target roundtrips >= 1.5x uv_queue_work: %s (%.2fx)\n",
                ours.roundtrips >= 1.5 * uvf[0] ? "PASS" : "FAIL", ours.roundtrips / uvf[0]);
    if (have_asy)
        fprintf(stderr, "executor_bench: target roundtrips >= 20x asyncio: %s (%.1fx)\n",
                ours.roundtrips >= 20 * asy.roundtrips ? "PASS" : "FAIL",
                ours.roundtrips / asy.roundtrips);
    fprintf(stderr,
            "executor_bench: target rtt p50 <= 2x cross-loop rtt: %s (%.2f us vs %.2f us)\n",
            ours.rtt_p50 <= 2 * xloop ? "PASS" : "FAIL", ours.rtt_p50, xloop);
    fprintf(stderr, "executor_bench: target blocking <= 1.3x ideal %.2f ms: %s (%.2f ms, %.2fx)\n",
            ideal, ours.blocking <= 1.3 * ideal ? "PASS" : "FAIL", ours.blocking,
            ours.blocking / ideal);
    return 0;
}
