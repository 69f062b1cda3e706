/* Executors under loop groups and under load: the shared default executor of a group's loops
 * (10,000 jobs from each of two loops, or one set with lc_group_set_default_executor), the CPUs of
 * the workers a pinned group loop starts, and an idle executor after a stream of short jobs (the
 * rules in test_executor.c's opening comment apply). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "loopcore.h"
#include "tests/executor/executor_helpers.h"
#include "tests/support/loop_fixture.h"

/* ---- Loop groups ----------------------------------------------------------------------------- */

#define GROUP_JOBS 10000

typedef struct group_ctx_s group_ctx_t;

typedef struct {
    group_ctx_t *ctx;
    unsigned loop_index;
    unsigned i;
} group_job_t;

struct group_ctx_s {
    lc_group_t *g;
    group_job_t jobs[2][GROUP_JOBS];
    _Atomic(lc_executor_t *) seen[2]; /* the executor jobs of each loop ran on */
    _Atomic unsigned wrong;           /* outcomes on the wrong loop or with a wrong result */
    _Atomic unsigned submit_errors;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned done;
};

static int group_job(void *arg, void **result)
{
    group_job_t *j = arg;
    lc_executor_t *ex = lc_executor_current();
    lc_executor_t *expected = NULL;
    atomic_compare_exchange_strong(&j->ctx->seen[j->loop_index], &expected, ex);
    if (ex == NULL)
        atomic_fetch_add(&j->ctx->wrong, 1);
    *result = j;
    return 0;
}

static void group_done_cb(lc_future_t *fut, void *arg)
{
    group_job_t *j = arg;
    group_ctx_t *ctx = j->ctx;
    lc_loop_t *running = NULL;
    void *result = NULL;
    if (lc_get_running_loop(&running) != 0 || running != lc_group_loop(ctx->g, j->loop_index) ||
        lc_future_result(fut, &result) != 0 || result != j)
        atomic_fetch_add(&ctx->wrong, 1);
    lc_future_unref(fut);
    pthread_mutex_lock(&ctx->mu);
    if (++ctx->done == 2 * GROUP_JOBS)
        pthread_cond_signal(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
}

/* On each loop: submits GROUP_JOBS jobs at once to the default executor. */
static int group_submit_fn(lc_loop_t *target, void *arg, void **result)
{
    (void)result;
    group_ctx_t *ctx = arg;
    unsigned li = (unsigned)lc_group_index(ctx->g, target);
    for (unsigned i = 0; i < GROUP_JOBS; i++) {
        group_job_t *j = &ctx->jobs[li][i];
        j->ctx = ctx;
        j->loop_index = li;
        j->i = i;
        lc_future_t *fut;
        if (lc_loop_run_in_executor(target, NULL, group_job, j, &fut) != 0 ||
            lc_future_add_done_callback(fut, group_done_cb, j) != 0) {
            atomic_fetch_add(&ctx->submit_errors, 1);
            continue;
        }
    }
    return 0;
}

static void run_group_jobs(lc_executor_t *set_default)
{
    group_ctx_t *ctx = calloc(1, sizeof(*ctx));
    assert_non_null(ctx);
    pthread_mutex_init(&ctx->mu, NULL);
    pthread_cond_init(&ctx->cv, NULL);
    assert_int_equal(lc_group_create(&ctx->g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}),
                     0);
    if (set_default != NULL)
        assert_int_equal(lc_group_set_default_executor(ctx->g, set_default), 0);
    assert_int_equal(lc_group_start(ctx->g), 0);
    if (set_default != NULL) /* loops run: refused */
        assert_int_equal(lc_group_set_default_executor(ctx->g, NULL), LC_EBUSY);
    /* Both loops submit their 10,000 jobs at the same moment. */
    assert_int_equal(lc_group_broadcast_wait(ctx->g, group_submit_fn, ctx), 0);
    pthread_mutex_lock(&ctx->mu);
    while (ctx->done < 2 * GROUP_JOBS)
        pthread_cond_wait(&ctx->cv, &ctx->mu);
    pthread_mutex_unlock(&ctx->mu);
    assert_int_equal(atomic_load(&ctx->submit_errors), 0);
    assert_int_equal(atomic_load(&ctx->wrong), 0);
    lc_executor_t *ex0 = atomic_load(&ctx->seen[0]), *ex1 = atomic_load(&ctx->seen[1]);
    assert_non_null(ex0);
    assert_ptr_equal(ex0, ex1); /* the group's loops share one default executor */
    if (set_default != NULL)
        assert_ptr_equal(ex0, set_default);
    lc_executor_stats_t st;
    assert_int_equal(lc_executor_get_stats(ex0, &st), 0);
    assert_true(st.completed >= 2 * GROUP_JOBS);
    assert_true(st.workers <= st.max_workers);
    /* The documented order: stop and join the loops, shut the shared executor down, free. */
    assert_int_equal(lc_group_stop(ctx->g), 0);
    assert_int_equal(lc_group_join(ctx->g), 0);
    if (set_default == NULL)
        assert_int_equal(lc_executor_default_shutdown(false), 0);
    assert_int_equal(lc_group_free(ctx->g), 0);
    pthread_cond_destroy(&ctx->cv);
    pthread_mutex_destroy(&ctx->mu);
    free(ctx);
}

static void test_executor_group_10000_jobs_from_two_loops(void **state)
{
    (void)state;
    run_group_jobs(NULL);
}

static void test_executor_group_set_default_executor(void **state)
{
    (void)state;
    lc_executor_t *ex;
    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.thread_name_prefix = "grp"}),
                     0);
    run_group_jobs(ex);
    assert_int_equal(lc_executor_free(ex), 0);
}

/* ---- Where workers run ------------------------------------------------------------------------
 */

#define PINNED_JOBS 500

/* Jobs one at a time from the loop of a one-loop group (pinned to a CPU), through the shared
 * default executor, whose workers that loop's thread starts. */
typedef struct {
    _Atomic int min_cpus;         /* the fewest CPUs a job's worker could run on */
    _Atomic unsigned max_workers; /* the executor's, as a job sees it */
    long done;                    /* loop thread */
    _Atomic unsigned submit_errors;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool finished;
} pinned_ctx_t;

static int mask_job(void *arg, void **result)
{
    (void)result;
    pinned_ctx_t *c = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : -1;
    if (n < atomic_load(&c->min_cpus))
        atomic_store(&c->min_cpus, n); /* jobs run one at a time */
    lc_executor_stats_t st;
    if (lc_executor_get_stats(lc_executor_current(), &st) == 0)
        atomic_store(&c->max_workers, st.max_workers);
    return 0;
}

static void pinned_submit(lc_loop_t *loop, pinned_ctx_t *c);

static void pinned_done_cb(lc_future_t *fut, void *arg)
{
    pinned_ctx_t *c = arg;
    lc_loop_t *loop = lc_future_get_loop(fut);
    lc_future_unref(fut);
    if (++c->done < PINNED_JOBS) {
        pinned_submit(loop, c);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->finished = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void pinned_submit(lc_loop_t *loop, pinned_ctx_t *c)
{
    lc_future_t *fut;
    if (lc_loop_run_in_executor(loop, NULL, mask_job, c, &fut) != 0 ||
        lc_future_add_done_callback(fut, pinned_done_cb, c) != 0) {
        atomic_fetch_add(&c->submit_errors, 1);
        pthread_mutex_lock(&c->mu);
        c->finished = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
}

static void pinned_start(lc_loop_t *loop, unsigned index, void *arg)
{
    (void)index;
    pinned_submit(loop, arg);
}

static double cpu_time_s(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* Workers started by a pinned loop's thread may run on every CPU of the process (a worker that
 * inherited the loop's single CPU would compete with that loop for every job), and the default
 * size counts the process's CPUs, not the loop thread's one. Once the jobs stop, the spinning
 * stops too: the idle process uses next to no CPU. */
static void test_executor_workers_of_a_pinned_loop_use_every_cpu(void **state)
{
    (void)state;
    assert_int_equal(lc_executor_default_shutdown(false), 0); /* a fresh shared default */
    pinned_ctx_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    atomic_store(&c->min_cpus, INT32_MAX);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    lc_group_t *g;
    assert_int_equal(
        lc_group_create(
            &g, &(lc_group_opts_t){.nloops = 1, .on_start = pinned_start, .on_start_arg = c}),
        0);
    assert_int_equal(lc_group_start(g), 0);
    pthread_mutex_lock(&c->mu);
    while (!c->finished)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    assert_int_equal(atomic_load(&c->submit_errors), 0);
    assert_int_equal(atomic_load(&c->min_cpus), (int)cpu_count());
    assert_int_equal(atomic_load(&c->max_workers), default_max_workers());

    /* Idle, the loop and the executor still alive: the worker's spin (at most
     * LC_EXECUTOR_DEFAULT_SPIN) and the loop's are long over after 100 ms; in the next 300 ms
     * the process uses a few ms of CPU at most, where one that kept spinning would use 300. */
    sleep_ms(100);
    double t0 = cpu_time_s();
    sleep_ms(300);
    double used = cpu_time_s() - t0;
    assert_true(used < 0.06);

    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_join(g), 0);
    assert_int_equal(lc_executor_default_shutdown(false), 0);
    assert_int_equal(lc_group_free(g), 0);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* A stream of short jobs, many in flight, each completion submitting the next (the shape of
 * executor_bench's roundtrips): workers pace their looks at the queue and keep one spinner through
 * the gaps; every job still runs once and reaches the loop, and once the stream stops the spin
 * decays and the idle process uses next to no CPU. */
#define STREAM_JOBS 50000
#define STREAM_WINDOW 256

typedef struct {
    lc_work_t req;
    lc_loop_t *loop;
    unsigned *submitted, *completed, *bad;
} stream_req_t;

static int stream_work(lc_work_t *req)
{
    (void)req;
    return 0;
}

static void stream_after(lc_work_t *req, int status)
{
    stream_req_t *q = lc_container_of(req, stream_req_t, req);
    (*q->completed)++;
    if (status != 0 || !pthread_equal(pthread_self(), g_test_thread))
        (*q->bad)++;
    if (*q->submitted < STREAM_JOBS) {
        (*q->submitted)++;
        if (lc_loop_queue_work(q->loop, NULL, &q->req, stream_work, stream_after) != 0)
            (*q->bad)++;
    }
}

static bool stream_done(void *arg)
{
    const stream_req_t *qs = arg;
    return *qs[0].completed == STREAM_JOBS;
}

static void test_executor_stream_of_short_jobs_then_idle(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    stream_req_t *qs = calloc(STREAM_WINDOW, sizeof(*qs));
    assert_non_null(qs);
    unsigned submitted = 0, completed = 0, bad = 0;
    for (int i = 0; i < STREAM_WINDOW; i++) {
        qs[i] = (stream_req_t){
            .loop = loop, .submitted = &submitted, .completed = &completed, .bad = &bad};
        submitted++;
        assert_int_equal(lc_loop_queue_work(loop, NULL, &qs[i].req, stream_work, stream_after), 0);
    }
    run_until(loop, stream_done, qs);
    assert_int_equal(submitted, STREAM_JOBS);
    assert_int_equal(completed, STREAM_JOBS);
    assert_int_equal(bad, 0);

    /* Idle, the loop and its executor alive: the spin (at most LC_EXECUTOR_DEFAULT_SPIN per
     * sleep, halved at each miss) is long over after 100 ms; in the next 300 ms the process uses
     * a few ms of CPU at most. */
    sleep_ms(100);
    double t0 = cpu_time_s();
    sleep_ms(300);
    double used = cpu_time_s() - t0;
    print_message("idle after the stream: %.1f ms of CPU in 300 ms\n", used * 1e3);
    assert_true(used < 0.06);
    free(qs);
    gate_destroy(&g_gate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_executor_group_10000_jobs_from_two_loops, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_group_set_default_executor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_workers_of_a_pinned_loop_use_every_cpu, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_stream_of_short_jobs_then_idle, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
