/* Executors shut down with running and pending jobs, from a worker, and by the close of the
 * loop that owns one (the rules in test_executor.c's opening comment apply). */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_executor_shutdown_cancels_pending_jobs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_shutdown_runs_pending_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_shutdown_wait_from_a_worker_is_ebusy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_loop_close_releases_owned_executor, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
