/* Executors and run_in_executor (include/loopcore/executor.h), with real worker threads.
 *
 * CMocka assertions run on the test's thread only (their longjmp must not cross threads): jobs
 * record what they saw in atomics, and the test checks after a happens-before edge (a future's
 * outcome delivered on the loop, a join, a waiter). Jobs that must stay queued or running wait on
 * a gate that the test opens. Every test arms a watchdog. */
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
#include "tests/support/loop_fixture.h"

#define WATCHDOG_S 120u

/* ---- Helpers --------------------------------------------------------------------------------- */

static int setup(void **state)
{
    lc_test_watchdog(WATCHDOG_S);
    return lc_test_loop_setup(state);
}

static int teardown(void **state)
{
    int r = lc_test_loop_teardown(state);
    alarm(0);
    return r;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A gate jobs wait on until the test opens it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} gate_t;

static void gate_init(gate_t *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
}

static void gate_wait(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(gate_t *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

/* Runs the loop until pred(arg) holds, looking every millisecond. */
typedef bool (*pred_fn)(void *arg);

typedef struct {
    lc_loop_t *loop;
    pred_fn pred;
    void *arg;
} poll_t;

static void poll_cb(void *a)
{
    poll_t *p = a;
    if (p->pred(p->arg))
        lc_loop_stop(p->loop);
    else
        assert_int_equal(lc_loop_call_later(p->loop, 0.001, poll_cb, p, NULL), 0);
}

static void run_until(lc_loop_t *loop, pred_fn pred, void *arg)
{
    poll_t p = {loop, pred, arg};
    assert_int_equal(lc_loop_call_soon(loop, poll_cb, &p, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

/* Runs exactly one iteration of the loop. */
static void run_once(lc_loop_t *loop)
{
    assert_int_equal(lc_loop_stop(loop), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

static bool all_done(void *arg)
{
    lc_future_t **futs = arg;
    for (; *futs != NULL; futs++) {
        if (!lc_future_done(*futs))
            return false;
    }
    return true;
}

/* Runs the loop until every future of the NULL-terminated array is done. */
static void run_until_done(lc_loop_t *loop, lc_future_t **futs) { run_until(loop, all_done, futs); }

typedef struct {
    _Atomic unsigned *counter;
    unsigned value;
} at_least_t;

static bool reached(void *arg)
{
    at_least_t *a = arg;
    return atomic_load(a->counter) >= a->value;
}

static void run_until_count(lc_loop_t *loop, _Atomic unsigned *counter, unsigned value)
{
    at_least_t a = {counter, value};
    run_until(loop, reached, &a);
}

static unsigned cpu_count(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    return (unsigned)CPU_COUNT(&set);
}

static unsigned default_max_workers(void)
{
    unsigned n = cpu_count() + 4;
    return n < 32 ? n : 32;
}

/* What jobs record. */
static _Atomic unsigned g_ran, g_started, g_dtors, g_on_loop_thread, g_no_executor;
static pthread_t g_test_thread;
static gate_t g_gate;

static void reset_globals(void)
{
    atomic_store(&g_ran, 0);
    atomic_store(&g_started, 0);
    atomic_store(&g_dtors, 0);
    atomic_store(&g_on_loop_thread, 0);
    atomic_store(&g_no_executor, 0);
    g_test_thread = pthread_self();
    gate_init(&g_gate);
}

static void note_thread(void)
{
    if (pthread_equal(pthread_self(), g_test_thread))
        atomic_fetch_add(&g_on_loop_thread, 1);
    if (lc_executor_current() == NULL)
        atomic_fetch_add(&g_no_executor, 1);
}

/* Returns arg + 1 as its result, or -EIO when arg is a multiple of 3. */
static int value_job(void *arg, void **result)
{
    note_thread();
    atomic_fetch_add(&g_ran, 1);
    intptr_t i = (intptr_t)arg;
    if (i % 3 == 0)
        return -EIO;
    *result = (void *)(i + 1);
    return 0;
}

/* Counts itself started, waits for the gate, then returns a heap int (arg). */
static int gated_job(void *arg, void **result)
{
    note_thread();
    atomic_fetch_add(&g_started, 1);
    gate_wait(&g_gate);
    atomic_fetch_add(&g_ran, 1);
    int *v = malloc(sizeof(*v));
    if (v == NULL)
        return LC_ENOMEM;
    *v = (int)(intptr_t)arg;
    *result = v;
    return 0;
}

static int counting_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_fetch_add(&g_ran, 1);
    return 0;
}

static void counting_dtor(void *result)
{
    atomic_fetch_add(&g_dtors, 1);
    free(result);
}

/* Records the thread's name into arg (char[16]). */
static int name_job(void *arg, void **result)
{
    (void)result;
    pthread_getname_np(pthread_self(), arg, 16);
    atomic_fetch_add(&g_started, 1);
    gate_wait(&g_gate);
    return 0;
}

/* ---- Results and errors ---------------------------------------------------------------------- */

#define NRESULTS 300

typedef struct {
    lc_loop_t *loop;
    unsigned done;
    unsigned wrong_loop;
} done_tally_t;

static void tally_done_cb(lc_future_t *fut, void *arg)
{
    done_tally_t *t = arg;
    lc_loop_t *running = NULL;
    if (lc_get_running_loop(&running) != 0 || running != t->loop ||
        lc_future_get_loop(fut) != t->loop || !pthread_equal(pthread_self(), g_test_thread))
        t->wrong_loop++;
    t->done++;
}

static void test_executor_results_and_errors_reach_the_loop(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    done_tally_t tally = {.loop = loop};
    lc_future_t *futs[NRESULTS + 1] = {0};
    for (intptr_t i = 0; i < NRESULTS; i++) {
        assert_int_equal(lc_loop_run_in_executor(loop, NULL, value_job, (void *)i, &futs[i]), 0);
        assert_ptr_equal(lc_future_get_loop(futs[i]), loop);
        assert_false(lc_future_done(futs[i]));
        assert_int_equal(lc_future_add_done_callback(futs[i], tally_done_cb, &tally), 0);
    }
    run_until_done(loop, futs);
    run_once(loop); /* the done callbacks scheduled by the last outcomes */
    assert_int_equal(tally.done, NRESULTS);
    assert_int_equal(tally.wrong_loop, 0);
    assert_int_equal(atomic_load(&g_ran), NRESULTS);
    assert_int_equal(atomic_load(&g_on_loop_thread), 0); /* jobs ran on workers */
    assert_int_equal(atomic_load(&g_no_executor), 0);
    for (intptr_t i = 0; i < NRESULTS; i++) {
        void *result = (void *)-1;
        int r = lc_future_result(futs[i], &result);
        if (i % 3 == 0) {
            assert_int_equal(r, -EIO);
            assert_null(result);
        } else {
            assert_int_equal(r, 0);
            assert_ptr_equal(result, (void *)(i + 1));
        }
        lc_future_unref(futs[i]);
    }
    gate_destroy(&g_gate);
}

static int cancelling_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return LC_ECANCELLED;
}

static int null_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 7; /* any value >= 0 is success; the result stays NULL */
}

static void test_executor_job_codes(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *futs[3] = {0};
    assert_int_equal(lc_loop_run_in_executor(loop, NULL, cancelling_job, NULL, &futs[0]), 0);
    assert_int_equal(lc_loop_run_in_executor(loop, NULL, null_job, NULL, &futs[1]), 0);
    run_until_done(loop, futs);
    assert_true(lc_future_cancelled(futs[0]));
    void *result = (void *)-1;
    assert_int_equal(lc_future_result(futs[1], &result), 0);
    assert_null(result);
    lc_future_unref(futs[0]);
    lc_future_unref(futs[1]);
}

static void test_executor_bad_arguments(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *fut = (lc_future_t *)&fut;
    assert_int_equal(lc_loop_run_in_executor(NULL, NULL, null_job, NULL, &fut), LC_EINVAL);
    assert_null(fut);
    assert_int_equal(lc_loop_run_in_executor(loop, NULL, NULL, NULL, &fut), LC_EINVAL);
    assert_int_equal(lc_loop_run_in_executor(loop, NULL, null_job, NULL, NULL), LC_EINVAL);
    assert_int_equal(lc_executor_create(NULL, NULL), LC_EINVAL);
    assert_int_equal(lc_executor_shutdown(NULL, true, true), LC_EINVAL);
    assert_int_equal(lc_executor_get_stats(NULL, NULL), LC_EINVAL);
    lc_executor_t *ex = (lc_executor_t *)&ex;
    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 100000}),
                     LC_EINVAL);
    assert_null(ex);
    assert_null(lc_executor_current());
    assert_int_equal(lc_loop_set_default_executor(NULL, NULL), LC_EINVAL);
    assert_int_equal(lc_group_set_default_executor(NULL, NULL), LC_EINVAL);

    /* A closed loop refuses. */
    lc_loop_t *closed;
    assert_int_equal(lc_new_event_loop(&closed), 0);
    assert_int_equal(lc_loop_close(closed), 0);
    assert_int_equal(lc_loop_run_in_executor(closed, NULL, null_job, NULL, &fut), LC_ECLOSED);
    assert_null(fut);
    assert_int_equal(lc_loop_set_default_executor(closed, NULL), LC_ECLOSED);
    assert_int_equal(lc_loop_free(closed), 0);
}

/* ---- Workers --------------------------------------------------------------------------------- */

static void test_executor_lazy_workers_names_and_max(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    lc_executor_t *ex;
    lc_executor_stats_t st;

    /* The default size. */
    assert_int_equal(lc_executor_create(&ex, NULL), 0);
    assert_int_equal(lc_executor_get_stats(ex, &st), 0);
    assert_int_equal(st.max_workers, default_max_workers());
    assert_int_equal(st.workers, 0);
    assert_int_equal(lc_executor_free(ex), 0);

    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 3,
                                                                   .thread_name_prefix = "mypool"}),
                     0);
    assert_int_equal(lc_executor_get_stats(ex, &st), 0);
    assert_int_equal(st.max_workers, 3);
    assert_int_equal(st.workers, 0); /* lazily: no thread before the first job */

    char names[5][16] = {{0}};
    lc_future_t *futs[6] = {0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(lc_loop_run_in_executor(loop, ex, name_job, names[i], &futs[i]), 0);
    run_until_count(loop, &g_started, 3);
    sleep_ms(30); /* give a fourth worker the chance to appear, wrongly */
    assert_int_equal(atomic_load(&g_started), 3);
    assert_int_equal(lc_executor_get_stats(ex, &st), 0);
    assert_int_equal(st.workers, 3);
    assert_int_equal(st.running, 3);
    assert_int_equal(st.queued, 2);
    gate_open(&g_gate);
    run_until_done(loop, futs);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(strncmp(names[i], "mypool_", 7), 0);
        lc_future_unref(futs[i]);
    }
    assert_int_equal(lc_executor_get_stats(ex, &st), 0);
    assert_int_equal(st.completed, 5);
    assert_int_equal(st.workers, 3);
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

static void test_executor_full_queue_is_eagain(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    lc_executor_t *ex;
    assert_int_equal(
        lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 1, .max_queued = 2}), 0);
    lc_future_t *futs[4] = {0};
    assert_int_equal(lc_loop_run_in_executor(loop, ex, gated_job, NULL, &futs[0]), 0);
    run_until_count(loop, &g_started, 1); /* the worker took it: the queue is empty again */
    assert_int_equal(lc_loop_run_in_executor(loop, ex, counting_job, NULL, &futs[1]), 0);
    assert_int_equal(lc_loop_run_in_executor(loop, ex, counting_job, NULL, &futs[2]), 0);
    lc_future_t *extra = (lc_future_t *)&extra;
    assert_int_equal(lc_loop_run_in_executor(loop, ex, counting_job, NULL, &extra), LC_EAGAIN);
    assert_null(extra);
    gate_open(&g_gate);
    run_until_done(loop, futs);
    void *result;
    assert_int_equal(lc_future_result(futs[0], &result), 0);
    free(result);
    for (int i = 0; i < 3; i++)
        lc_future_unref(futs[i]);
    assert_int_equal(atomic_load(&g_ran), 3);
    /* Room again. */
    lc_future_t *again[2] = {0};
    assert_int_equal(lc_loop_run_in_executor(loop, ex, counting_job, NULL, &again[0]), 0);
    run_until_done(loop, again);
    lc_future_unref(again[0]);
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

/* Short jobs are not stuck behind a long one: a submission may leave a short job to the busy
 * worker (jobs have been short), and when that worker is stuck the sleeping one takes it. */
static void test_executor_short_job_not_stuck_behind_long_one(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    lc_executor_t *ex;
    assert_int_equal(
        lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 2, .spin_budget = -1}), 0);
    /* Teach the executor that jobs are short. */
    lc_future_t *warm[201] = {0};
    for (int i = 0; i < 200; i++)
        assert_int_equal(lc_loop_run_in_executor(loop, ex, counting_job, NULL, &warm[i]), 0);
    run_until_done(loop, warm);
    for (int i = 0; i < 200; i++)
        lc_future_unref(warm[i]);
    lc_future_t *a;
    assert_int_equal(lc_loop_run_in_executor(loop, ex, gated_job, NULL, &a), 0);
    run_until_count(loop, &g_started, 1); /* one worker is stuck in a */
    for (int round = 0; round < 3; round++) {
        lc_future_t *q[2] = {0};
        double t0 = now_s();
        assert_int_equal(lc_loop_run_in_executor(loop, ex, counting_job, NULL, &q[0]), 0);
        run_until_done(loop, q);
        assert_true(now_s() - t0 < 1.0);
        assert_int_equal(lc_future_result(q[0], NULL), 0);
        lc_future_unref(q[0]);
        sleep_ms(20); /* the other worker goes back to sleep while a runs: the sentinel */
    }
    assert_false(lc_future_done(a));
    gate_open(&g_gate);
    lc_future_t *futs[] = {a, NULL};
    run_until_done(loop, futs);
    void *result;
    assert_int_equal(lc_future_result(a, &result), 0);
    free(result);
    lc_future_unref(a);
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

/* ---- Cancellation ---------------------------------------------------------------------------- */

static void test_executor_cancel_before_start_never_runs(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    lc_executor_t *ex;
    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 1}), 0);
    lc_future_t *a, *b;
    assert_int_equal(lc_loop_run_in_executor(loop, ex, gated_job, NULL, &a), 0);
    run_until_count(loop, &g_started, 1); /* a holds the only worker */
    assert_int_equal(lc_loop_run_in_executor(loop, ex, counting_job, NULL, &b), 0);
    assert_int_equal(lc_future_cancel(b), 1);
    assert_true(lc_future_cancelled(b));
    run_once(loop); /* the cancellation reaches the job (its watcher runs) */
    gate_open(&g_gate);
    lc_future_t *futs[] = {a, NULL};
    run_until_done(loop, futs);
    /* b comes back unrun; wait until the executor counted it. */
    lc_executor_stats_t st;
    for (int i = 0; i < 5000; i++) {
        assert_int_equal(lc_executor_get_stats(ex, &st), 0);
        if (st.cancelled == 1 && st.completed == 1)
            break;
        sleep_ms(1);
    }
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.completed, 1);
    assert_int_equal(atomic_load(&g_ran), 1); /* only a */
    assert_true(lc_future_cancelled(b));
    void *result;
    assert_int_equal(lc_future_result(a, &result), 0);
    free(result);
    lc_future_unref(a);
    lc_future_unref(b);
    /* The workers are gone after this; b's message may still wait in the loop's queue, and the
     * loop's close (teardown) hands it back. */
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

static void test_executor_cancel_after_start_discards_result(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    lc_executor_t *ex;
    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 1}), 0);
    lc_future_t *a;
    assert_int_equal(
        lc_loop_run_in_executor_dtor(loop, ex, gated_job, (void *)42, counting_dtor, &a), 0);
    run_until_count(loop, &g_started, 1);
    assert_int_equal(lc_future_cancel(a), 1);
    assert_true(lc_future_cancelled(a)); /* at once, as asyncio */
    gate_open(&g_gate);
    run_until_count(loop, &g_dtors, 1); /* the job finished; its result went to the destructor */
    assert_int_equal(atomic_load(&g_ran), 1);
    assert_true(lc_future_cancelled(a));
    assert_int_equal(lc_future_result(a, NULL), LC_ECANCELLED);
    lc_future_unref(a);
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

static void cancel_cb(void *arg) { lc_future_cancel(arg); }

/* The outcome arrives in the same batch as the cancellation, before the watcher could run. */
static void test_executor_cancel_in_the_outcomes_batch(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    lc_executor_t *ex;
    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 1}), 0);
    lc_future_t *a;
    assert_int_equal(
        lc_loop_run_in_executor_dtor(loop, ex, gated_job, (void *)7, counting_dtor, &a), 0);
    gate_open(&g_gate);
    lc_executor_stats_t st;
    do { /* the outcome is posted: it waits in the loop's inbound queue */
        sleep_ms(1);
        assert_int_equal(lc_executor_get_stats(ex, &st), 0);
    } while (st.completed < 1 || st.running > 0);
    /* cancel_cb runs first in the next batch, then the outcome, then (next batch) the watcher. */
    assert_int_equal(lc_loop_call_soon(loop, cancel_cb, a, NULL), 0);
    run_until_count(loop, &g_dtors, 1);
    assert_true(lc_future_cancelled(a));
    lc_future_unref(a);
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

/* ---- Shutdown -------------------------------------------------------------------------------- */

typedef struct {
    lc_executor_t *ex;
    bool cancel_pending;
    _Atomic int result;
} shutdown_arg_t;

static void *shutdown_thread(void *p)
{
    shutdown_arg_t *a = p;
    atomic_store(&a->result, lc_executor_shutdown(a->ex, true, a->cancel_pending));
    return NULL;
}

static void shutdown_with_running_and_pending(lc_loop_t *loop, bool cancel_pending)
{
    reset_globals();
    lc_executor_t *ex;
    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 1}), 0);
    lc_future_t *futs[4] = {0};
    assert_int_equal(
        lc_loop_run_in_executor_dtor(loop, ex, gated_job, (void *)1, counting_dtor, &futs[0]), 0);
    run_until_count(loop, &g_started, 1); /* running */
    assert_int_equal(
        lc_loop_run_in_executor_dtor(loop, ex, gated_job, (void *)2, counting_dtor, &futs[1]), 0);
    assert_int_equal(
        lc_loop_run_in_executor_dtor(loop, ex, gated_job, (void *)3, counting_dtor, &futs[2]), 0);

    shutdown_arg_t arg = {.ex = ex, .cancel_pending = cancel_pending};
    atomic_init(&arg.result, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, shutdown_thread, &arg), 0);
    /* Probe until the shutdown refuses submissions; until then each probe is one more pending
     * job (its outcome comes back to the loop and frees it). */
    lc_executor_stats_t st;
    for (;;) {
        lc_future_t *probe = NULL;
        int r = lc_loop_run_in_executor(loop, ex, null_job, NULL, &probe);
        if (r == LC_ECLOSED) {
            assert_null(probe);
            break;
        }
        assert_int_equal(r, 0);
        lc_future_unref(probe);
        sleep_ms(1);
    }
    sleep_ms(20);
    assert_int_equal(atomic_load(&arg.result), 1); /* still waiting for the running job */
    assert_int_equal(lc_executor_get_stats(ex, &st), 0);
    assert_int_equal(st.running, 1);
    gate_open(&g_gate);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&arg.result), 0);
    assert_int_equal(lc_executor_get_stats(ex, &st), 0);
    assert_int_equal(st.workers, 0); /* with wait: every worker is gone */

    run_until_done(loop, futs);
    void *result;
    assert_int_equal(lc_future_result(futs[0], &result), 0);
    assert_int_equal(*(int *)result, 1);
    free(result);
    for (int i = 1; i <= 2; i++) {
        if (cancel_pending) {
            assert_true(lc_future_cancelled(futs[i])); /* never ran */
        } else {
            assert_int_equal(lc_future_result(futs[i], &result), 0); /* ran */
            assert_int_equal(*(int *)result, i + 1);
            free(result);
        }
    }
    assert_int_equal(atomic_load(&g_ran), cancel_pending ? 1 : 3);
    assert_int_equal(atomic_load(&g_started), cancel_pending ? 1 : 3);
    for (int i = 0; i < 3; i++)
        lc_future_unref(futs[i]);
    assert_int_equal(lc_executor_shutdown(ex, true, true), 0); /* idempotent */
    lc_future_t *after = (lc_future_t *)&after;
    assert_int_equal(lc_loop_run_in_executor(loop, ex, counting_job, NULL, &after), LC_ECLOSED);
    assert_null(after);
    assert_int_equal(atomic_load(&g_dtors), 0); /* every result was delivered */
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

static void test_executor_shutdown_cancels_pending_jobs(void **state)
{
    shutdown_with_running_and_pending(*state, true);
}

static void test_executor_shutdown_runs_pending_jobs(void **state)
{
    shutdown_with_running_and_pending(*state, false);
}

static int shutdown_self_job(void *arg, void **result)
{
    (void)arg;
    *result = (void *)(intptr_t)lc_executor_shutdown(lc_executor_current(), true, false);
    return 0;
}

static void test_executor_shutdown_wait_from_a_worker_is_ebusy(void **state)
{
    lc_loop_t *loop = *state;
    lc_executor_t *ex;
    assert_int_equal(lc_executor_create(&ex, NULL), 0);
    lc_future_t *futs[2] = {0};
    assert_int_equal(lc_loop_run_in_executor(loop, ex, shutdown_self_job, NULL, &futs[0]), 0);
    run_until_done(loop, futs);
    void *result;
    assert_int_equal(lc_future_result(futs[0], &result), 0);
    assert_int_equal((int)(intptr_t)result, LC_EBUSY);
    lc_future_unref(futs[0]);
    assert_int_equal(lc_executor_free(ex), 0);
}

/* Closing a loop shuts down the executor it owns without waiting: running jobs finish on their
 * workers (results to the destructor, futures LC_ECLOSED), pending ones never run (cancelled). */
static void test_executor_loop_close_releases_owned_executor(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    unsigned workers = default_max_workers();
    unsigned n = workers + 5;
    lc_future_t **futs = calloc(n + 1, sizeof(*futs));
    assert_non_null(futs);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(lc_loop_run_in_executor_dtor(loop, NULL, gated_job, (void *)(intptr_t)i,
                                                      counting_dtor, &futs[i]),
                         0);
    run_until_count(loop, &g_started, workers); /* every worker holds one */
    double t0 = now_s();
    assert_int_equal(lc_loop_close(loop), 0); /* the gate is closed: it does not wait */
    assert_true(now_s() - t0 < 1.0);
    unsigned eclosed = 0, cancelled = 0;
    for (unsigned i = 0; i < n; i++) {
        assert_true(lc_future_done(futs[i]));
        int err = 0;
        int r = lc_future_error(futs[i], &err);
        if (r == LC_ECANCELLED) {
            cancelled++;
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(err, LC_ECLOSED);
            eclosed++;
        }
        lc_future_unref(futs[i]);
    }
    free(futs);
    assert_int_equal(eclosed, workers);
    assert_int_equal(cancelled, n - workers);
    gate_open(&g_gate);
    while (atomic_load(&g_dtors) < workers) /* the workers drop the results they made */
        sleep_ms(1);
    assert_int_equal(atomic_load(&g_ran), workers);
    assert_int_equal(atomic_load(&g_started), workers);
    /* The workers exit once the queue is empty; their executor frees itself with the last. */
    gate_destroy(&g_gate);
}

/* ---- lc_loop_queue_work ---------------------------------------------------------------------- */

typedef struct {
    lc_work_t req;
    int in, out;
    bool ran;
    int status;
    bool after_on_test_thread;
    bool gated;
    _Atomic unsigned *done;
} sq_t;

static int sq_work(lc_work_t *req)
{
    sq_t *q = lc_container_of(req, sq_t, req);
    note_thread();
    if (q->gated) {
        atomic_fetch_add(&g_started, 1);
        gate_wait(&g_gate);
    }
    q->out = q->in * q->in;
    q->ran = true;
    return q->in % 5 == 0 ? -EIO : 0;
}

static void sq_after(lc_work_t *req, int status)
{
    sq_t *q = lc_container_of(req, sq_t, req);
    q->status = status;
    q->after_on_test_thread = pthread_equal(pthread_self(), g_test_thread);
    atomic_fetch_add(q->done, 1); /* seq_cst: publishes the fields above to the test */
}

static void test_executor_queue_work_after_on_the_loop(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    enum { N = 1000 };
    sq_t *qs = calloc(N, sizeof(*qs));
    assert_non_null(qs);
    _Atomic unsigned done = 0;
    for (int i = 0; i < N; i++) {
        qs[i].in = i;
        qs[i].done = &done;
        assert_int_equal(lc_loop_queue_work(loop, NULL, &qs[i].req, sq_work, sq_after), 0);
    }
    assert_int_equal(lc_loop_queue_work(loop, NULL, NULL, sq_work, sq_after), LC_EINVAL);
    assert_int_equal(lc_loop_queue_work(loop, NULL, &qs[0].req, NULL, sq_after), LC_EINVAL);
    assert_int_equal(lc_work_cancel(NULL), LC_EINVAL);
    run_until_count(loop, &done, N);
    for (int i = 0; i < N; i++) {
        assert_true(qs[i].ran);
        assert_int_equal(qs[i].out, i * i);
        assert_int_equal(qs[i].status, i % 5 == 0 ? -EIO : 0);
        assert_true(qs[i].after_on_test_thread); /* the loop's thread */
    }
    assert_int_equal(atomic_load(&g_on_loop_thread), 0);
    assert_int_equal(atomic_load(&g_no_executor), 0);
    free(qs);
    gate_destroy(&g_gate);
}

static void test_executor_queue_work_cancel_before_start(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    lc_executor_t *ex;
    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 1}), 0);
    _Atomic unsigned done = 0;
    sq_t a = {.in = 2, .gated = true, .done = &done}, b = {.in = 3, .done = &done};
    assert_int_equal(lc_loop_queue_work(loop, ex, &a.req, sq_work, sq_after), 0);
    run_until_count(loop, &g_started, 1);
    assert_int_equal(lc_loop_queue_work(loop, ex, &b.req, sq_work, sq_after), 0);
    assert_int_equal(lc_work_cancel(&b.req), 0);
    gate_open(&g_gate);
    run_until_count(loop, &done, 2);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.out, 4);
    assert_int_equal(b.status, LC_ECANCELLED);
    assert_false(b.ran);
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

/* The lifetime rule for an executor the loop does not own: shut it down with wait, then close the
 * loop; the outcomes waiting in the loop's queue are handed back on the closing thread. */
static void test_executor_queue_work_close_hands_back(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    gate_open(&g_gate);
    lc_executor_t *ex;
    assert_int_equal(lc_executor_create(&ex, &(lc_executor_opts_t){.max_workers = 2}), 0);
    _Atomic unsigned done = 0;
    sq_t qs[3] = {{.in = 1, .done = &done}, {.in = 2, .done = &done}, {.in = 3, .done = &done}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(lc_loop_queue_work(loop, ex, &qs[i].req, sq_work, sq_after), 0);
    assert_int_equal(lc_executor_shutdown(ex, true, false), 0); /* all ran, outcomes posted */
    assert_int_equal(atomic_load(&done), 0);                    /* the loop has not run */
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(atomic_load(&done), 3);
    for (int i = 0; i < 3; i++) {
        assert_true(qs[i].ran);
        assert_int_equal(qs[i].status, LC_ECLOSED);
        assert_true(qs[i].after_on_test_thread); /* the closing thread */
    }
    assert_int_equal(lc_executor_free(ex), 0);
    gate_destroy(&g_gate);
}

/* A loop's own executor at close: queued requests get LC_ECLOSED at once (never ran); running
 * ones get it on their worker when the work returns. */
static void test_executor_queue_work_owned_close(void **state)
{
    lc_loop_t *loop = *state;
    reset_globals();
    unsigned workers = default_max_workers();
    unsigned n = workers + 3;
    sq_t *qs = calloc(n, sizeof(*qs));
    assert_non_null(qs);
    _Atomic unsigned done = 0;
    for (unsigned i = 0; i < n; i++) {
        qs[i].in = (int)i + 1;
        qs[i].gated = true;
        qs[i].done = &done;
        assert_int_equal(lc_loop_queue_work(loop, NULL, &qs[i].req, sq_work, sq_after), 0);
    }
    run_until_count(loop, &g_started, workers);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(atomic_load(&done), n - workers); /* the queued ones, here */
    gate_open(&g_gate);
    while (atomic_load(&done) < n)
        sleep_ms(1);
    unsigned ran = 0;
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(qs[i].status, LC_ECLOSED);
        assert_true(qs[i].after_on_test_thread == !qs[i].ran); /* ran: on its worker */
        ran += qs[i].ran;
    }
    assert_int_equal(ran, workers);
    free(qs);
    gate_destroy(&g_gate);
}

/* ---- Default executors ----------------------------------------------------------------------- */

static int current_job(void *arg, void **result)
{
    (void)arg;
    *result = lc_executor_current();
    return 0;
}

static lc_executor_t *executor_of_default(lc_loop_t *loop)
{
    lc_future_t *fut;
    void *ex = NULL;
    assert_int_equal(lc_loop_run_in_executor(loop, NULL, current_job, NULL, &fut), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, fut, &ex), 0);
    lc_future_unref(fut);
    assert_non_null(ex);
    return ex;
}

static void test_executor_set_default_executor(void **state)
{
    lc_loop_t *loop = *state;
    lc_executor_t *owned = executor_of_default(loop);
    assert_ptr_equal(executor_of_default(loop), owned); /* created once, then reused */

    lc_executor_t *custom;
    assert_int_equal(lc_executor_create(&custom, NULL), 0);
    assert_int_equal(lc_loop_set_default_executor(loop, custom), 0); /* lets the owned one go */
    assert_ptr_equal(executor_of_default(loop), custom);

    /* An executor a loop owns serves that loop only. */
    lc_loop_t *other;
    assert_int_equal(lc_new_event_loop(&other), 0);
    lc_executor_t *other_owned = executor_of_default(other);
    lc_future_t *fut = (lc_future_t *)&fut;
    assert_int_equal(lc_loop_run_in_executor(loop, other_owned, null_job, NULL, &fut), LC_EINVAL);
    assert_null(fut);
    assert_int_equal(lc_loop_free(other), 0);

    assert_int_equal(lc_loop_set_default_executor(loop, NULL), 0); /* back to the rule */
    lc_executor_t *fresh = executor_of_default(loop);
    assert_ptr_not_equal(fresh, custom);
    assert_int_equal(lc_executor_free(custom), 0);
}

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
        cmocka_unit_test_setup_teardown(test_executor_results_and_errors_reach_the_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_job_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_lazy_workers_names_and_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_full_queue_is_eagain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_short_job_not_stuck_behind_long_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_cancel_before_start_never_runs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_cancel_after_start_discards_result, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_cancel_in_the_outcomes_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_shutdown_cancels_pending_jobs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_shutdown_runs_pending_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_shutdown_wait_from_a_worker_is_ebusy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_loop_close_releases_owned_executor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_queue_work_after_on_the_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_queue_work_cancel_before_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_queue_work_close_hands_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_queue_work_owned_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_set_default_executor, setup, teardown),
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
