/* Executors and run_in_executor (include/loopcore/executor.h), with real worker threads.
 *
 * CMocka assertions run on the test's thread only (their longjmp must not cross threads): jobs
 * record what they saw in atomics, and the test checks after a happens-before edge (a future's
 * outcome delivered on the loop, a join, a waiter). Jobs that must stay queued or running wait on
 * a gate that the test opens. Every test arms a watchdog.
 *
 * Here: results and errors, job codes and bad arguments, workers, cancellation, a loop's default
 * executor. Shutdown is in test_executor_shutdown.c, lc_loop_queue_work in
 * test_executor_queue_work.c, loop groups and where workers run in test_executor_groups.c; the
 * helpers all share are in executor_helpers.h. */
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
        cmocka_unit_test_setup_teardown(test_executor_set_default_executor, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
