/* Tasks cancelled: while suspended, sleeping, before start, by themselves, nested; and tasks
 * when the loop stops or closes under them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/engine/task_helpers.h"
#include "tests/support/loop_fixture.h"

/* ---- Cancellation ---------------------------------------------------------------------------- */

typedef struct {
    lc_loop_t *loop;
    lc_future_t *fut;  /* what the coroutine awaits */
    lc_future_t *task; /* the task itself (or another) */
    int await_rc;
    int second_rc;
    int ret; /* what the coroutine returns */
    int steps;
    lc_test_log_t *log;
} cancel_ctx_t;

static int coro_await_fut(void *arg, void **result)
{
    cancel_ctx_t *c = arg;
    c->steps++;
    c->await_rc = lc_await(c->fut, NULL);
    /* Clean up after the cancellation: awaiting again works. */
    c->second_rc = lc_sleep(0);
    c->steps++;
    *result = P(7);
    return c->ret;
}

static void cancel_cb(void *arg)
{
    cancel_ctx_t *c = arg;
    assert_int_equal(lc_task_cancel(c->task), 1);
    assert_int_equal(lc_task_cancel(c->task), 1); /* again: still only a request */
}

static void test_task_cancel_while_suspended(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    /* The coroutine catches the cancellation and returns a result: the task has that result. */
    cancel_ctx_t c = {.loop = loop, .ret = 0};
    assert_int_equal(lc_loop_create_future(loop, &c.fut), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_await_fut, &c, &c.task), 0);
    /* Queued after the task's start: runs in the same iteration, once it is suspended. */
    assert_int_equal(lc_loop_call_soon(loop, cancel_cb, &c, NULL), 0);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, c.task, &res), 0);
    assert_int_equal(c.await_rc, LC_ECANCELLED);
    assert_int_equal(c.second_rc, 0);
    assert_int_equal(c.steps, 2);
    assert_int_equal(U(res), 7);
    assert_false(lc_future_cancelled(c.task));
    assert_true(lc_future_cancelled(c.fut)); /* asyncio: cancel() cancels what the task awaits */
    lc_future_unref(c.fut);
    lc_future_unref(c.task);

    /* The coroutine passes the cancellation on: the task ends cancelled. */
    cancel_ctx_t d = {.loop = loop, .ret = LC_ECANCELLED};
    assert_int_equal(lc_loop_create_future(loop, &d.fut), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_await_fut, &d, &d.task), 0);
    assert_int_equal(lc_loop_call_soon(loop, cancel_cb, &d, NULL), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, d.task, &res), LC_ECANCELLED);
    assert_true(lc_future_cancelled(d.task));
    assert_int_equal(d.await_rc, LC_ECANCELLED);
    assert_int_equal(d.steps, 2);
    lc_future_unref(d.fut);
    lc_future_unref(d.task);
}

/* The future completed, its wake-up is queued, then the task is cancelled: the await still
 * returns LC_ECANCELLED, and the task is resumed exactly once. */
static void complete_then_cancel_cb(void *arg)
{
    cancel_ctx_t *c = arg;
    assert_int_equal(lc_future_set_result(c->fut, P(1)), 0);
    assert_int_equal(lc_task_cancel(c->task), 1);
}

static void test_task_cancel_after_wakeup_queued(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    cancel_ctx_t c = {.loop = loop, .ret = 0};
    assert_int_equal(lc_loop_create_future(loop, &c.fut), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_await_fut, &c, &c.task), 0);
    assert_int_equal(lc_loop_call_soon(loop, complete_then_cancel_cb, &c, NULL), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, c.task, NULL), 0);
    assert_int_equal(c.await_rc, LC_ECANCELLED);
    assert_int_equal(c.steps, 2);
    assert_false(lc_future_cancelled(c.fut)); /* it had its result already */
    lc_future_unref(c.fut);
    lc_future_unref(c.task);
}

/* A task's wake-up takes its place among the future's other done callbacks: those added before
 * the task awaited run before it resumes, those added after run after it (asyncio schedules them
 * all with call_soon, in the order added). */
typedef struct {
    lc_future_t *fut;
    char log[8];
    int n;
} order_ctx_t;

static order_ctx_t order_ctx;

static void order_cb(lc_future_t *fut, void *arg)
{
    (void)fut;
    order_ctx.log[order_ctx.n++] = *(const char *)arg;
}

static int coro_await_order(void *arg, void **result)
{
    order_ctx_t *o = arg;
    (void)result;
    void *v = NULL;
    int r = lc_await(o->fut, &v);
    o->log[o->n++] = 'T';
    return r != 0 ? r : (v == P(42) ? 0 : -1);
}

static void add_b_then_complete(void *arg)
{
    order_ctx_t *o = arg;
    /* the task is suspended now: B goes behind its wake-up */
    assert_int_equal(lc_future_add_done_callback(o->fut, order_cb, "B"), 0);
    assert_int_equal(lc_future_set_result(o->fut, P(42)), 0);
}

static void test_task_wakeup_keeps_done_callback_order(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    order_ctx_t *o = &order_ctx;
    memset(o, 0, sizeof(*o));
    lc_future_t *task;
    assert_int_equal(lc_loop_create_future(loop, &o->fut), 0);
    assert_int_equal(lc_future_add_done_callback(o->fut, order_cb, "A"), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_await_order, o, &task), 0);
    assert_int_equal(lc_loop_call_soon(loop, add_b_then_complete, o, NULL), 0);
    /* A, the wake-up and B are one ready batch; the task's own completion stops the loop in the
     * iteration after it, so B has run by the time run_until_complete returns. */
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    assert_int_equal(o->n, 3);
    assert_memory_equal(o->log, "ATB", 3);
    lc_future_unref(task);
    lc_future_unref(o->fut);
}

static int coro_sleep_long(void *arg, void **result)
{
    cancel_ctx_t *c = arg;
    (void)result;
    c->await_rc = lc_sleep(60);
    return c->await_rc;
}

static void test_task_cancel_while_sleeping(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    cancel_ctx_t c = {.loop = loop};
    assert_int_equal(lc_loop_create_task(loop, coro_sleep_long, &c, &c.task), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.01, cancel_cb, &c, NULL), 0);
    double t0 = now_s();
    assert_int_equal(lc_loop_run_until_complete(loop, c.task, NULL), LC_ECANCELLED);
    assert_true(now_s() - t0 < 5.0);
    assert_int_equal(c.await_rc, LC_ECANCELLED);
    assert_true(lc_future_cancelled(c.task));
    lc_future_unref(c.task);
}

static void test_task_cancel_before_start(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    int ran = 0;
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, coro_count, &ran, &task), 0);
    assert_int_equal(lc_task_cancel(task), 1);
    assert_false(lc_future_done(task)); /* a request: done once the loop processed it */
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), LC_ECANCELLED);
    assert_int_equal(ran, 0); /* the coroutine never ran */
    assert_true(lc_future_cancelled(task));
    assert_int_equal(lc_future_cancel(task), 0);
    lc_future_unref(task);
}

/* A running task cancels itself: its next await returns LC_ECANCELLED; returning normally with
 * a cancellation it never saw ends the task cancelled (asyncio). */
static int coro_self_cancel(void *arg, void **result)
{
    int *rc = arg;
    (void)result;
    lc_future_t *me = lc_current_task();
    if (lc_task_cancel(me) != 1)
        return -EIO;
    if (arg != NULL) {
        *rc = lc_sleep(0);
        return 0;
    }
    return 0; /* never awaited: the cancellation is still pending */
}

static void test_task_cancel_running_task(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    int rc = 0;
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, coro_self_cancel, &rc, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    assert_int_equal(rc, LC_ECANCELLED);
    lc_future_unref(task);
    assert_int_equal(lc_loop_create_task(loop, coro_self_cancel, NULL, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), LC_ECANCELLED);
    assert_true(lc_future_cancelled(task));
    lc_future_unref(task);
}

/* Cancelling a task that awaits another task: the request goes down to the inner one, and the
 * outer await returns only after the inner task has finished its cleanup. */
typedef struct {
    lc_loop_t *loop;
    lc_future_t *never; /* a future nobody completes */
    lc_future_t *inner;
    lc_future_t *outer;
    lc_test_log_t log;
} nest_cancel_t;

static int coro_inner_cancellable(void *arg, void **result)
{
    nest_cancel_t *n = arg;
    (void)result;
    int r = lc_await(n->never, NULL);
    lc_test_log_push(&n->log, r == LC_ECANCELLED ? 1 : -1);
    r = lc_sleep(0.01); /* cleanup that takes a while */
    lc_test_log_push(&n->log, r == 0 ? 2 : -2);
    return LC_ECANCELLED;
}

static int coro_outer(void *arg, void **result)
{
    nest_cancel_t *n = arg;
    (void)result;
    int r = lc_loop_create_task(n->loop, coro_inner_cancellable, n, &n->inner);
    if (r != 0)
        return r;
    r = lc_await(n->inner, NULL);
    lc_test_log_push(&n->log, r == LC_ECANCELLED ? 3 : -3);
    lc_test_log_push(&n->log, lc_future_done(n->inner) ? 4 : -4);
    return r;
}

static void cancel_outer_cb(void *arg)
{
    nest_cancel_t *n = arg;
    assert_int_equal(lc_task_cancel(n->outer), 1);
}

static void test_task_cancel_nested_waits_for_inner(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    nest_cancel_t n = {.loop = loop};
    assert_int_equal(lc_loop_create_future(loop, &n.never), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_outer, &n, &n.outer), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.005, cancel_outer_cb, &n, NULL), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, n.outer, NULL), LC_ECANCELLED);
    const int expected[] = {1, 2, 3, 4};
    lc_test_assert_log(&n.log, expected, 4);
    assert_true(lc_future_cancelled(n.inner));
    assert_true(lc_future_cancelled(n.outer));
    assert_true(lc_future_cancelled(n.never));
    lc_future_unref(n.inner);
    lc_future_unref(n.outer);
    lc_future_unref(n.never);
}

/* ---- The loop stopping and closing ----------------------------------------------------------- */

static int coro_stop_and_return(void *arg, void **result)
{
    lc_loop_t *loop = arg;
    lc_loop_stop(loop);
    *result = P(5);
    return 0;
}

typedef struct {
    lc_future_t *fut;
    int rc;
    void *value;
    int done;
} waiter_t;

static int coro_wait_value(void *arg, void **result)
{
    waiter_t *w = arg;
    w->rc = lc_await(w->fut, &w->value);
    w->done = 1;
    *result = w->value;
    return w->rc;
}

static void test_task_finishes_while_loop_stops(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    /* The task stops the loop and finishes in the same step. */
    lc_future_t *task;
    lc_test_log_t log = {0};
    lc_test_event_t ev = {&log, 1};
    assert_int_equal(lc_loop_create_task(loop, coro_stop_and_return, loop, &task), 0);
    assert_int_equal(lc_future_add_done_callback(task, lc_test_log_done_cb, &ev), 0);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, task, &res), 0);
    assert_int_equal(U(res), 5);
    assert_int_equal(log.n, 0); /* scheduled, not run: the loop stopped first */
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(log.n, 1);
    lc_future_unref(task);

    /* The loop stops while a task is suspended; the task finishes when the loop runs again. */
    waiter_t w = {0};
    assert_int_equal(lc_loop_create_future(loop, &w.fut), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_wait_value, &w, &task), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_false(lc_future_done(task));
    assert_int_equal(w.done, 0);
    assert_int_equal(lc_future_set_result(w.fut, P(9)), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, &res), 0);
    assert_int_equal(U(res), 9);
    assert_int_equal(w.done, 1);
    lc_future_unref(task);
    lc_future_unref(w.fut);
    lc_task_stats_t st;
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.tasks_live, 0);
}

typedef struct {
    lc_future_t *fut;
    int first_rc;
    int second_rc;
    int sleep_rc;
    int create_rc;
    int cleaned;
} unwind_t;

static int coro_unwind(void *arg, void **result)
{
    unwind_t *u = arg;
    (void)result;
    char *buffer = malloc(64); /* freed on the way out: no leak under ASan */
    u->first_rc = lc_await(u->fut, NULL);
    u->second_rc = lc_await(u->fut, NULL);
    u->sleep_rc = lc_sleep(1);
    lc_future_t *t = NULL;
    u->create_rc = lc_loop_create_task(lc_future_get_loop(u->fut), coro_count, &u->cleaned, &t);
    free(buffer);
    u->cleaned++;
    return u->first_rc;
}

static void test_task_suspended_at_close_unwinds(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    unwind_t u = {0};
    int ran = 0;
    lc_future_t *task, *unstarted;
    assert_int_equal(lc_loop_create_future(loop, &u.fut), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_unwind, &u, &task), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0); /* the task is now suspended */
    assert_int_equal(lc_loop_create_task(loop, coro_count, &ran, &unstarted), 0);
    assert_int_equal(lc_loop_all_tasks(loop, NULL, 0), 2);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(u.first_rc, LC_ECLOSED);
    assert_int_equal(u.second_rc, LC_ECLOSED);
    assert_int_equal(u.sleep_rc, LC_ECLOSED);
    assert_int_equal(u.create_rc, LC_ECLOSED);
    assert_int_equal(u.cleaned, 1);
    assert_int_equal(ran, 0);
    assert_true(lc_future_done(task));
    assert_int_equal(lc_future_result(task, NULL), LC_ECLOSED);
    assert_true(lc_future_cancelled(unstarted));
    assert_int_equal(lc_loop_all_tasks(loop, NULL, 0), 0);
    lc_future_unref(task);
    lc_future_unref(unstarted);
    lc_future_unref(u.fut);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_task_cancel_while_suspended),
        T(test_task_cancel_after_wakeup_queued),
        T(test_task_wakeup_keeps_done_callback_order),
        T(test_task_cancel_while_sleeping),
        T(test_task_cancel_before_start),
        T(test_task_cancel_running_task),
        T(test_task_cancel_nested_waits_for_inner),
        T(test_task_finishes_while_loop_stops),
        T(test_task_suspended_at_close_unwinds),
#undef T
    };
    return cmocka_run_group_tests_name("task_cancel", tests, NULL, NULL);
}
