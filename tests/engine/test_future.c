/* Futures: states, results and errors, done callbacks, reference counting, the task factory hook.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/support/loop_fixture.h"

static void test_future_pending_state(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_ptr_equal(lc_future_get_loop(fut), loop);
    assert_false(lc_future_done(fut));
    assert_false(lc_future_cancelled(fut));
    void *res = (void *)1;
    assert_int_equal(lc_future_result(fut, &res), LC_EINVALIDSTATE);
    assert_null(res);
    int err = 1;
    assert_int_equal(lc_future_error(fut, &err), LC_EINVALIDSTATE);
    lc_future_unref(fut);
    assert_int_equal(lc_loop_create_future(NULL, &fut), LC_EINVAL);
    assert_int_equal(lc_loop_create_future(loop, NULL), LC_EINVAL);
}

static void test_future_result(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_int_equal(lc_future_set_result(fut, (void *)(uintptr_t)42), 0);
    assert_true(lc_future_done(fut));
    assert_int_equal(lc_future_set_result(fut, NULL), LC_EINVALIDSTATE);
    assert_int_equal(lc_future_set_error(fut, -EIO), LC_EINVALIDSTATE);
    assert_int_equal(lc_future_cancel(fut), 0);
    void *res = NULL;
    assert_int_equal(lc_future_result(fut, &res), 0);
    assert_int_equal((uintptr_t)res, 42);
    int err = 1;
    assert_int_equal(lc_future_error(fut, &err), 0);
    assert_int_equal(err, 0);
    lc_future_unref(fut);
}

static void test_future_error(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_int_equal(lc_future_set_error(fut, 0), LC_EINVAL);
    assert_int_equal(lc_future_set_error(fut, 5), LC_EINVAL);
    assert_int_equal(lc_future_set_error(fut, LC_ECANCELLED), LC_EINVAL);
    assert_int_equal(lc_future_set_error(fut, -EPIPE), 0);
    assert_int_equal(lc_future_result(fut, NULL), -EPIPE);
    int err = 0;
    assert_int_equal(lc_future_error(fut, &err), 0);
    assert_int_equal(err, -EPIPE);
    assert_false(lc_future_cancelled(fut));
    lc_future_unref(fut);
}

static void test_future_cancel(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_int_equal(lc_future_cancel(fut), 1);
    assert_int_equal(lc_future_cancel(fut), 0);
    assert_true(lc_future_cancelled(fut));
    assert_true(lc_future_done(fut));
    assert_int_equal(lc_future_result(fut, NULL), LC_ECANCELLED);
    int err = 0;
    assert_int_equal(lc_future_error(fut, &err), LC_ECANCELLED);
    assert_int_equal(lc_future_set_result(fut, NULL), LC_EINVALIDSTATE);
    lc_future_unref(fut);
    assert_int_equal(lc_future_cancel(NULL), LC_EINVAL);
}

typedef struct {
    lc_test_log_t *log;
    int value;
    lc_future_t *expect;
} done_t;

static void done_cb(lc_future_t *fut, void *arg)
{
    done_t *d = arg;
    assert_ptr_equal(fut, d->expect);
    assert_true(lc_future_done(fut));
    lc_test_log_push(d->log, d->value);
}

static void test_future_done_callbacks_via_call_soon_in_order(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    done_t d[6];
    for (int i = 0; i < 6; i++) {
        d[i] = (done_t){&log, i + 1, fut};
        assert_int_equal(lc_future_add_done_callback(fut, done_cb, &d[i]), 0);
    }
    assert_int_equal(lc_future_add_done_callback(fut, NULL, NULL), LC_EINVAL);
    lc_test_event_t before = {&log, 100};
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &before, NULL), 0);
    assert_int_equal(lc_future_set_result(fut, NULL), 0);
    assert_int_equal(log.n, 0); /* not synchronous */
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){100, 1, 2, 3, 4, 5, 6}, 7);

    /* Added after done: scheduled at once, still through call_soon. */
    log.n = 0;
    done_t late = {&log, 7, fut};
    assert_int_equal(lc_future_add_done_callback(fut, done_cb, &late), 0);
    assert_int_equal(log.n, 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){7}, 1);
    lc_future_unref(fut);
}

static void test_future_remove_done_callback(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    done_t a = {&log, 1, fut}, b = {&log, 2, fut};
    assert_int_equal(lc_future_add_done_callback(fut, done_cb, &a), 0);
    assert_int_equal(lc_future_add_done_callback(fut, done_cb, &b), 0);
    assert_int_equal(lc_future_add_done_callback(fut, done_cb, &a), 0);
    assert_int_equal(lc_future_add_done_callback(fut, done_cb, &b), 0);
    assert_int_equal(lc_future_remove_done_callback(fut, done_cb, &a), 2);
    assert_int_equal(lc_future_remove_done_callback(fut, done_cb, &a), 0);
    assert_int_equal(lc_future_cancel(fut), 1);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){2, 2}, 2);
    lc_future_unref(fut);
}

static void test_future_callback_keeps_future_alive(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    done_t d = {&log, 1, fut};
    assert_int_equal(lc_future_add_done_callback(fut, done_cb, &d), 0);
    assert_int_equal(lc_future_set_result(fut, NULL), 0);
    lc_future_unref(fut); /* the scheduled callback still holds a reference */
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1}, 1);
}

typedef struct {
    int calls;
    int error;
    lc_future_t *future;
    char message[128];
} handler_log_t;

static void record_handler(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    handler_log_t *h = arg;
    h->calls++;
    h->error = ctx->error;
    h->future = ctx->future;
    snprintf(h->message, sizeof(h->message), "%s", ctx->message);
}

static void test_future_unretrieved_error_is_reported(void **state)
{
    lc_loop_t *loop = *state;
    handler_log_t h = {0};
    assert_int_equal(lc_loop_set_exception_handler(loop, record_handler, &h), 0);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_int_equal(lc_future_set_error(fut, -ECONNREFUSED), 0);
    lc_future_t *seen = fut;
    lc_future_unref(fut);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.error, -ECONNREFUSED);
    assert_ptr_equal(h.future, seen);
    assert_string_equal(h.message, "Future exception was never retrieved");

    /* Retrieved: nothing reported. */
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_int_equal(lc_future_set_error(fut, -ECONNREFUSED), 0);
    assert_int_equal(lc_future_result(fut, NULL), -ECONNREFUSED);
    lc_future_unref(fut);
    assert_int_equal(h.calls, 1);
}

static void test_future_outlives_loop(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_int_equal(lc_loop_free(loop), 0);
    /* The loop's memory stays until the future goes; using the future is still safe. */
    assert_ptr_equal(lc_future_get_loop(fut), loop);
    assert_true(lc_loop_is_closed(loop));
    assert_int_equal(lc_future_set_result(fut, NULL), 0);
    lc_future_unref(fut);
}

static int fake_factory(lc_loop_t *loop, lc_coro_fn coro, void *coro_arg, void *factory_arg,
                        lc_future_t **task)
{
    (void)coro;
    (void)coro_arg;
    (void)factory_arg;
    return lc_loop_create_future(loop, task);
}

static void test_future_task_factory_hook(void **state)
{
    lc_loop_t *loop = *state;
    void *arg = (void *)1;
    assert_null(lc_loop_get_task_factory(loop, &arg));
    assert_null(arg);
    int token;
    assert_int_equal(lc_loop_set_task_factory(loop, fake_factory, &token), 0);
    assert_ptr_equal(lc_loop_get_task_factory(loop, &arg), fake_factory);
    assert_ptr_equal(arg, &token);
    assert_int_equal(lc_loop_set_task_factory(loop, NULL, &token), 0);
    assert_null(lc_loop_get_task_factory(loop, &arg));
    assert_null(arg);
    assert_int_equal(lc_loop_set_task_factory(NULL, NULL, NULL), LC_EINVAL);
}

int main(void)
{
    lc_test_watchdog(60);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_future_pending_state),
        T(test_future_result),
        T(test_future_error),
        T(test_future_cancel),
        T(test_future_done_callbacks_via_call_soon_in_order),
        T(test_future_remove_done_callback),
        T(test_future_callback_keeps_future_alive),
        T(test_future_unretrieved_error_is_reported),
        cmocka_unit_test(test_future_outlives_loop),
        T(test_future_task_factory_hook),
#undef T
    };
    return cmocka_run_group_tests_name("future", tests, NULL, NULL);
}
