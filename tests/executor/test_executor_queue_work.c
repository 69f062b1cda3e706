/* lc_loop_queue_work: the after callback on the loop, cancellation before start, and the close
 * of the loop with requests in flight (the rules in test_executor.c's opening comment apply). */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_executor_queue_work_after_on_the_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_queue_work_cancel_before_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_executor_queue_work_close_hands_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_executor_queue_work_owned_close, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
