/* Tasks: create_task, lc_await, lc_sleep, cancellation, nesting, the factory, close, stacks. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

#define P(x) ((void *)(uintptr_t)(x))
#define U(p) ((uintptr_t)(p))

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- Basics ---------------------------------------------------------------------------------- */

static int coro_return_arg(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static void test_task_result_through_run_until_complete(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, P(42), &task), 0);
    assert_non_null(task);
    assert_true(lc_future_is_task(task));
    assert_false(lc_future_done(task)); /* starts in a later iteration, not inside create_task */
    assert_ptr_equal(lc_future_get_loop(task), loop);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, task, &res), 0);
    assert_int_equal(U(res), 42);
    assert_true(lc_future_done(task));
    assert_false(lc_future_cancelled(task));
    /* Futures' calls on a task: the outcome is the coroutine's. */
    assert_int_equal(lc_future_set_result(task, NULL), LC_EINVAL);
    assert_int_equal(lc_future_set_error(task, -EIO), LC_EINVAL);
    assert_int_equal(lc_future_cancel(task), 0);
    assert_int_equal(lc_task_cancel(task), 0);
    lc_future_unref(task);
}

static void test_task_create_invalid_and_closed(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *task = P(1);
    assert_int_equal(lc_loop_create_task(NULL, coro_return_arg, NULL, &task), LC_EINVAL);
    assert_null(task);
    assert_int_equal(lc_loop_create_task(loop, NULL, NULL, &task), LC_EINVAL);
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, NULL, NULL), LC_EINVAL);
    assert_int_equal(lc_task_cancel(NULL), LC_EINVAL);
    assert_false(lc_future_is_task(NULL));
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_false(lc_future_is_task(fut));
    assert_int_equal(lc_task_cancel(fut), 1); /* a plain future: lc_future_cancel */
    assert_true(lc_future_cancelled(fut));
    lc_future_unref(fut);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, NULL, &task), LC_ECLOSED);
    assert_int_equal(lc_task_create(loop, coro_return_arg, NULL, &task), LC_ECLOSED);
    assert_null(task);
}

/* Dropping the only reference at once: the task still runs to its end and is freed (the
 * sanitizer builds check for leaks). */
static int coro_count(void *arg, void **result)
{
    (void)result;
    ++*(int *)arg;
    return 0;
}

static void test_task_fire_and_forget(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        lc_future_t *task = NULL;
        assert_int_equal(lc_loop_create_task(loop, coro_count, &ran, &task), 0);
        lc_future_unref(task);
    }
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(ran, 3);
    lc_task_stats_t st;
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.tasks_created, 3);
    assert_int_equal(st.tasks_live, 0);
}

/* ---- 10,000 tasks ping-ponging through futures ------------------------------------------------
 */

typedef struct player_s {
    struct player_s *partner;
    lc_loop_t *loop;
    lc_future_t *fut; /* the future this player awaits now, for its partner to complete */
    int rounds;
    uintptr_t sent;     /* values sent: 1, 2, ... */
    uintptr_t received; /* the last value received */
    int errors;
    int *finished;
} player_t;

/* Wakes the partner if it waits: completes its future with the next value. */
static void player_send(player_t *p)
{
    player_t *o = p->partner;
    lc_future_t *w = o->fut;
    if (w != NULL) {
        o->fut = NULL;
        if (lc_future_set_result(w, P(++p->sent)) != 0)
            p->errors++;
    }
}

static int coro_player(void *arg, void **result)
{
    player_t *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        lc_future_t *fut;
        int r = lc_loop_create_future(p->loop, &fut);
        if (r != 0)
            return r;
        p->fut = fut;
        player_send(p);
        void *v = NULL;
        r = lc_await(fut, &v);
        lc_future_unref(fut);
        if (r != 0)
            return r;
        /* Values arrive in order, each exactly once: the partner's k-th send is our k-th wake. */
        if (U(v) != p->received + 1)
            p->errors++;
        p->received = U(v);
    }
    player_send(p);
    ++*p->finished;
    *result = P(p->received);
    return 0;
}

/* ThreadSanitizer gives each fiber four memory mappings of its own (the stack has two), and
 * 10,000 live fibers then exceed Linux's default vm.max_map_count (65530): under TSan the same
 * 10,000 tasks run in waves of 2,500 live ones. */
#ifdef __SANITIZE_THREAD__
#define PING_PONG_WAVE 2500
#else
#define PING_PONG_WAVE 10000
#endif

static void test_task_ping_pong_10000_tasks(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(120);
    enum { NTASKS = 10000, ROUNDS = 20, WAVE = PING_PONG_WAVE };
    player_t *players = calloc(NTASKS, sizeof(*players));
    lc_future_t **tasks = calloc(NTASKS, sizeof(*tasks));
    assert_non_null(players);
    assert_non_null(tasks);
    int finished = 0;
    for (int w = 0; w < NTASKS; w += WAVE) {
        for (int i = w; i < w + WAVE; i++) {
            players[i] = (player_t){
                .partner = &players[i ^ 1], .loop = loop, .rounds = ROUNDS, .finished = &finished};
            assert_int_equal(lc_loop_create_task(loop, coro_player, &players[i], &tasks[i]), 0);
        }
        assert_int_equal(lc_loop_all_tasks(loop, NULL, 0), WAVE);
        lc_future_t *first = NULL;
        assert_int_equal(lc_loop_all_tasks(loop, &first, 1), WAVE);
        assert_true(lc_future_is_task(first));
        /* Run until every task is done. */
        for (int i = w; i < w + WAVE; i++) {
            void *res = NULL;
            assert_int_equal(lc_loop_run_until_complete(loop, tasks[i], &res), 0);
            assert_int_equal(U(res), ROUNDS);
        }
    }
    assert_int_equal(finished, NTASKS);
    for (int i = 0; i < NTASKS; i++) {
        assert_int_equal(players[i].errors, 0);
        assert_int_equal(players[i].received, ROUNDS);
        lc_future_unref(tasks[i]);
    }
    lc_task_stats_t st;
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.tasks_created, NTASKS);
    assert_int_equal(st.tasks_live, 0);
    /* All of a wave alive at once: one stack each; later waves reuse the pool's. */
    assert_int_equal(st.stacks_mapped,
                     NTASKS - (NTASKS / WAVE - 1) * lc_loop_get_task_stack_pool_max(loop));
    assert_int_equal(st.stacks_idle, lc_loop_get_task_stack_pool_max(loop));
    assert_int_equal(lc_loop_all_tasks(loop, NULL, 0), 0);
    free(tasks);
    free(players);
}

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

/* ---- Errors through nested awaits ------------------------------------------------------------ */

typedef struct {
    lc_loop_t *loop;
    int depth; /* tasks still to nest below this one */
    lc_future_t *leaf_fut;
    int seen[8]; /* what each level's await returned */
} nest_err_t;

typedef struct {
    nest_err_t *n;
    int level;
} nest_level_t;

static void fail_leaf_cb(void *arg)
{
    nest_err_t *n = arg;
    assert_int_equal(lc_future_set_error(n->leaf_fut, -EIO), 0);
}

static int coro_nested(void *arg, void **result)
{
    nest_level_t *lv = arg;
    nest_err_t *n = lv->n;
    (void)result;
    int r;
    if (lv->level == n->depth) {
        /* The leaf awaits a future that a callback fails. */
        r = lc_loop_call_soon(n->loop, fail_leaf_cb, n, NULL);
        if (r == 0)
            r = lc_await(n->leaf_fut, NULL);
    } else {
        nest_level_t *below = malloc(sizeof(*below));
        *below = (nest_level_t){n, lv->level + 1};
        lc_future_t *child;
        r = lc_loop_create_task(n->loop, coro_nested, below, &child);
        if (r == 0) {
            r = lc_await(child, NULL);
            lc_future_unref(child);
        }
        free(below);
    }
    n->seen[lv->level] = r;
    return r; /* passes the error up */
}

static void test_task_errors_propagate_through_nested_awaits(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    nest_err_t n = {.loop = loop, .depth = 4};
    assert_int_equal(lc_loop_create_future(loop, &n.leaf_fut), 0);
    nest_level_t top = {&n, 0};
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_nested, &top, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), -EIO);
    for (int i = 0; i <= n.depth; i++)
        assert_int_equal(n.seen[i], -EIO);
    int err = 0;
    assert_int_equal(lc_future_error(task, &err), 0);
    assert_int_equal(err, -EIO);
    assert_false(lc_future_cancelled(task));
    lc_future_unref(task);
    lc_future_unref(n.leaf_fut);
}

/* An error nobody retrieves is reported when the task is freed, as asyncio does. */
static int coro_fail(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return -EPIPE;
}

typedef struct {
    int calls;
    int error;
    char message[128];
} seen_exc_t;

static void record_exc(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    seen_exc_t *s = arg;
    s->calls++;
    s->error = ctx->error;
    snprintf(s->message, sizeof(s->message), "%s", ctx->message);
}

static void test_task_unretrieved_error_reported(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    seen_exc_t seen = {0};
    assert_int_equal(lc_loop_set_exception_handler(loop, record_exc, &seen), 0);
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_fail, NULL, &task), 0);
    lc_future_unref(task); /* nobody will look at it */
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.error, -EPIPE);
    assert_string_equal(seen.message, "Task exception was never retrieved");
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

/* ---- The task factory ------------------------------------------------------------------------ */

typedef struct {
    int calls;
    lc_loop_t *loop;
    lc_coro_fn coro;
    void *coro_arg;
    int fail;
} factory_log_t;

static int counting_factory(lc_loop_t *loop, lc_coro_fn coro, void *coro_arg, void *factory_arg,
                            lc_future_t **task)
{
    factory_log_t *f = factory_arg;
    f->calls++;
    f->loop = loop;
    f->coro = coro;
    f->coro_arg = coro_arg;
    if (f->fail)
        return LC_ENOMEM;
    return lc_task_create(loop, coro, coro_arg, task); /* the default task, decorated */
}

static void test_task_factory_honoured(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    factory_log_t f = {0};
    assert_int_equal(lc_loop_set_task_factory(loop, counting_factory, &f), 0);
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, P(3), &task), 0);
    assert_int_equal(f.calls, 1);
    assert_ptr_equal(f.loop, loop);
    assert_ptr_equal(f.coro, coro_return_arg);
    assert_ptr_equal(f.coro_arg, P(3));
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, task, &res), 0);
    assert_int_equal(U(res), 3);
    lc_future_unref(task);
    /* The factory's error is create_task's. */
    f.fail = 1;
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, NULL, &task), LC_ENOMEM);
    assert_int_equal(f.calls, 2);
    /* NULL restores the default. */
    assert_int_equal(lc_loop_set_task_factory(loop, NULL, NULL), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, P(4), &task), 0);
    assert_int_equal(f.calls, 2);
    assert_int_equal(lc_loop_run_until_complete(loop, task, &res), 0);
    assert_int_equal(U(res), 4);
    lc_future_unref(task);
}

/* ---- Awaiting outside a task, and bad awaits ------------------------------------------------- */

typedef struct {
    lc_future_t *fut;
    int await_rc;
    int sleep_rc;
    lc_future_t *current;
} outside_t;

static void outside_cb(void *arg)
{
    outside_t *o = arg;
    o->await_rc = lc_await(o->fut, NULL);
    o->sleep_rc = lc_sleep(0);
    o->current = lc_current_task();
}

static void test_task_await_outside_task_is_error(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    outside_t o = {0};
    assert_int_equal(lc_loop_create_future(loop, &o.fut), 0);
    /* From the thread's own stack, no loop running. */
    void *res = P(1);
    assert_int_equal(lc_await(o.fut, &res), LC_ENOTTASK);
    assert_null(res);
    assert_int_equal(lc_sleep(0.1), LC_ENOTTASK);
    assert_null(lc_current_task());
    /* From a callback of the running loop. */
    o.current = P(1);
    assert_int_equal(lc_loop_call_soon(loop, outside_cb, &o, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(o.await_rc, LC_ENOTTASK);
    assert_int_equal(o.sleep_rc, LC_ENOTTASK);
    assert_null(o.current);
    assert_false(lc_future_done(o.fut));
    assert_string_equal(lc_err_name(LC_ENOTTASK), "LC_ENOTTASK");
    assert_string_not_equal(lc_strerror(LC_ENOTTASK), "unknown error");
    lc_future_unref(o.fut);
}

typedef struct {
    lc_future_t *other_loop_fut;
    lc_future_t *done_fut;
    int self_rc;
    int null_rc;
    int other_rc;
    int nan_rc;
    int done_rc;
    void *done_value;
    int steps_between; /* bumped by a callback queued before the await of a done future */
    int steps_seen;    /* steps_between right after that await: 0, it did not suspend */
    lc_future_t *me;
} bad_await_t;

static void bump_cb(void *arg) { ++*(int *)arg; }

static int coro_bad_awaits(void *arg, void **result)
{
    bad_await_t *b = arg;
    (void)result;
    b->me = lc_current_task();
    b->self_rc = lc_await(b->me, NULL);
    b->null_rc = lc_await(NULL, NULL);
    b->other_rc = lc_await(b->other_loop_fut, NULL);
    b->nan_rc = lc_sleep(NAN);
    /* A done future does not suspend (asyncio): a callback queued now has not run after it. */
    lc_loop_call_soon(lc_future_get_loop(b->me), bump_cb, &b->steps_between, NULL);
    b->done_rc = lc_await(b->done_fut, &b->done_value);
    b->steps_seen = b->steps_between;
    return 0;
}

static void test_task_await_invalid_and_done(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    lc_loop_t *other = NULL;
    assert_int_equal(lc_new_event_loop(&other), 0);
    bad_await_t b = {0};
    assert_int_equal(lc_loop_create_future(other, &b.other_loop_fut), 0);
    assert_int_equal(lc_loop_create_future(loop, &b.done_fut), 0);
    assert_int_equal(lc_future_set_result(b.done_fut, P(11)), 0);
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_bad_awaits, &b, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    assert_ptr_equal(b.me, task);
    assert_int_equal(b.self_rc, LC_EINVAL);
    assert_int_equal(b.null_rc, LC_EINVAL);
    assert_int_equal(b.other_rc, LC_EWRONGLOOP);
    assert_int_equal(b.nan_rc, LC_EINVAL);
    assert_int_equal(b.done_rc, 0);
    assert_int_equal(U(b.done_value), 11);
    assert_int_equal(b.steps_seen, 0);
    lc_future_unref(task);
    lc_future_unref(b.done_fut);
    lc_future_unref(b.other_loop_fut);
    assert_int_equal(lc_loop_free(other), 0);
}

/* ---- Done callbacks, current task, sleep ----------------------------------------------------- */

typedef struct {
    lc_future_t *seen_current;
    double slept;
} sleeper_t;

static int coro_sleeper(void *arg, void **result)
{
    sleeper_t *s = arg;
    s->seen_current = lc_current_task();
    double t0 = now_s();
    int r = lc_sleep(0.05);
    s->slept = now_s() - t0;
    if (lc_current_task() != s->seen_current)
        return -EIO;
    *result = P(1);
    return r;
}

static void test_task_sleep_and_done_callbacks(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    sleeper_t s = {0};
    lc_future_t *task;
    lc_test_log_t log = {0};
    lc_test_event_t ev1 = {&log, 1}, ev2 = {&log, 2};
    assert_int_equal(lc_loop_create_task(loop, coro_sleeper, &s, &task), 0);
    assert_int_equal(lc_future_add_done_callback(task, lc_test_log_done_cb, &ev1), 0);
    assert_int_equal(lc_future_add_done_callback(task, lc_test_log_done_cb, &ev2), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    assert_ptr_equal(s.seen_current, task);
    assert_true(s.slept >= 0.05);
    assert_true(s.slept < 2.0);
    assert_null(lc_current_task());
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    const int expected[] = {1, 2};
    lc_test_assert_log(&log, expected, 2);
    lc_future_unref(task);
}

/* ---- Stacks ---------------------------------------------------------------------------------- */

static int coro_stack_addr(void *arg, void **result)
{
    (void)arg;
    /* The frame, not a local: ASan's use-after-return mode moves locals to a fake stack. */
    *result = __builtin_frame_address(0);
    return 0;
}

static void test_task_stack_pool_reuse(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    void *addr[4] = {0};
    for (int i = 0; i < 4; i++) {
        lc_future_t *task;
        assert_int_equal(lc_loop_create_task(loop, coro_stack_addr, NULL, &task), 0);
        assert_int_equal(lc_loop_run_until_complete(loop, task, &addr[i]), 0);
        lc_future_unref(task);
    }
    /* One stack, taken back from the pool each time: the same frame address. */
    for (int i = 1; i < 4; i++)
        assert_ptr_equal(addr[i], addr[0]);
    lc_task_stats_t st;
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_mapped, 1);
    assert_int_equal(st.stacks_reused, 3);
    assert_int_equal(st.stacks_idle, 1);

    /* Two at a time: two stacks, reused. */
    for (int round = 0; round < 3; round++) {
        lc_future_t *a, *b;
        assert_int_equal(lc_loop_create_task(loop, coro_stack_addr, NULL, &a), 0);
        assert_int_equal(lc_loop_create_task(loop, coro_stack_addr, NULL, &b), 0);
        assert_int_equal(lc_loop_run_until_complete(loop, b, NULL), 0);
        assert_int_equal(lc_loop_run_until_complete(loop, a, NULL), 0);
        lc_future_unref(a);
        lc_future_unref(b);
    }
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_mapped, 2);
    assert_int_equal(st.stacks_reused, 3 + 5);
    assert_int_equal(st.stacks_idle, 2);

    /* No pool: every task maps its own stack and unmaps it at its end. */
    assert_int_equal(lc_loop_set_task_stack_pool_max(loop, 0), 0);
    assert_int_equal(lc_loop_get_task_stack_pool_max(loop), 0);
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_idle, 0);
    for (int i = 0; i < 3; i++) {
        lc_future_t *task;
        assert_int_equal(lc_loop_create_task(loop, coro_stack_addr, NULL, &task), 0);
        assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
        lc_future_unref(task);
    }
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_mapped, 5);
    assert_int_equal(st.stacks_idle, 0);
}

static int coro_use_stack(void *arg, void **result)
{
    /* Touch most of the stack: it must be usable down to near its bottom. */
    size_t n = *(size_t *)arg;
    volatile char *buf = __builtin_alloca(n);
    for (size_t i = 0; i < n; i += 512)
        buf[i] = (char)(i >> 9);
    *result = (void *)(uintptr_t)buf[512];
    return 0;
}

static void test_task_stack_size_option(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    size_t def = lc_loop_get_task_stack_size(loop);
    assert_true(def >= 64 * 1024);
    assert_int_equal(lc_loop_set_task_stack_size(loop, LC_TASK_STACK_SIZE_MIN - 1), LC_EINVAL);
    assert_int_equal(lc_loop_set_task_stack_size(NULL, 1 << 20), LC_EINVAL);
    assert_int_equal(lc_loop_get_task_stack_size(loop), def);
    /* Rounded up to pages. */
    assert_int_equal(lc_loop_set_task_stack_size(loop, 1024 * 1024 + 1), 0);
    size_t big = lc_loop_get_task_stack_size(loop);
    assert_true(big > 1024 * 1024 && big % 4096 == 0);
    /* A task uses most of a 1 MiB stack. */
    size_t want = 900 * 1024;
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_use_stack, &want, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    lc_future_unref(task);
    lc_task_stats_t st;
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_idle, 1);
    /* Another size: the pooled stack of the old size goes. */
    assert_int_equal(lc_loop_set_task_stack_size(loop, def), 0);
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_idle, 0);
}

/* Runs in a child process: a task recursing without end must fault on the guard page (or be
 * stopped by AddressSanitizer's stack-overflow check), not run into other memory. */
static int recurse(volatile char *prev, int depth)
{
    volatile char frame[1024];
    frame[0] = prev != NULL ? prev[0] : 1;
    frame[1023] = (char)depth;
    if (depth >= 100000)
        return frame[0];
    return recurse(frame, depth + 1) + frame[1023];
}

static int coro_overflow(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return recurse(NULL, 0) > 0 ? 0 : 0;
}

static void test_task_stack_overflow_hits_guard_page(void **state)
{
    (void)state;
    lc_test_watchdog(60);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(30);
        if (freopen("/dev/null", "w", stderr) == NULL) /* the fault report is expected */
            _exit(5);
        lc_loop_t *loop = NULL;
        if (lc_new_event_loop(&loop) != 0)
            _exit(3);
        lc_future_t *task;
        if (lc_loop_create_task(loop, coro_overflow, NULL, &task) != 0)
            _exit(4);
        lc_loop_run_until_complete(loop, task, NULL);
        _exit(42); /* recursed 100 MB deep without a fault: no guard */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS ||
                    WTERMSIG(status) == SIGABRT);
    } else {
        /* Sanitizers may exit with an error status after their report. */
        assert_true(WIFEXITED(status));
        assert_int_not_equal(WEXITSTATUS(status), 0);
        assert_int_not_equal(WEXITSTATUS(status), 42);
        assert_int_not_equal(WEXITSTATUS(status), 3);
        assert_int_not_equal(WEXITSTATUS(status), 4);
        assert_int_not_equal(WEXITSTATUS(status), 5);
    }
}

/* ---- Straight-line I/O: the loop's coroutine methods awaited in a task ------------------------
 *
 * getaddrinfo, create_server and create_connection fill a future; a task awaits each with
 * lc_await. Reading in straight-line code: the protocol completes a future that the task awaits
 * until the bytes it wants have come. */

static void echo_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)user;
    lc_transport_write(t, data, len);
}

static bool echo_eof(lc_transport_t *t, void *user)
{
    (void)t;
    (void)user;
    return false; /* close once the echo is flushed */
}

static const lc_protocol_t echo_proto = {.data_received = echo_data, .eof_received = echo_eof};

static int echo_factory(void *factory_arg, const lc_protocol_t **proto, void **user)
{
    (void)factory_arg;
    *proto = &echo_proto;
    *user = NULL;
    return 0;
}

typedef struct {
    lc_loop_t *loop;
    lc_future_t *readable; /* what the task awaits while it wants more bytes */
    lc_future_t *lost;     /* completed by connection_lost */
    char buf[64];
    size_t len;
    int lost_err;
} reader_t;

static void reader_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    reader_t *r = user;
    (void)t;
    if (len > sizeof(r->buf) - r->len)
        len = sizeof(r->buf) - r->len;
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    if (r->readable != NULL && !lc_future_done(r->readable))
        lc_future_set_result(r->readable, NULL);
}

static void reader_lost(lc_transport_t *t, int err, void *user)
{
    reader_t *r = user;
    (void)t;
    r->lost_err = err;
    if (r->readable != NULL && !lc_future_done(r->readable))
        lc_future_set_error(r->readable, -EPIPE);
    if (r->lost != NULL && !lc_future_done(r->lost))
        lc_future_set_result(r->lost, NULL);
}

static const lc_protocol_t reader_proto = {.data_received = reader_data,
                                           .connection_lost = reader_lost};

static int reader_factory(void *factory_arg, const lc_protocol_t **proto, void **user)
{
    *proto = &reader_proto;
    *user = factory_arg;
    return 0;
}

/* Awaits until want bytes have arrived. */
static int task_read(reader_t *r, size_t want)
{
    while (r->len < want) {
        int rc = lc_loop_create_future(r->loop, &r->readable);
        if (rc != 0)
            return rc;
        rc = lc_await(r->readable, NULL);
        lc_future_unref(r->readable);
        r->readable = NULL;
        if (rc != 0)
            return rc;
    }
    return 0;
}

typedef struct {
    lc_loop_t *loop;
    reader_t reader;
    int family;
    int step; /* how far the coroutine got */
} io_task_t;

static int coro_echo_client(void *arg, void **result)
{
    io_task_t *io = arg;
    lc_loop_t *loop = io->loop;
    (void)result;
    /* getaddrinfo */
    lc_future_t *f;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
    int r = lc_loop_getaddrinfo(loop, "127.0.0.1", "7", &hints, &f);
    if (r != 0)
        return r;
    struct addrinfo *ai = NULL;
    r = lc_await(f, (void **)&ai);
    if (r == 0 && ai != NULL)
        io->family = ai->ai_family;
    lc_future_unref(f); /* the list belongs to the future */
    if (r != 0)
        return r;
    io->step = 1;
    /* create_server on a port the kernel picks */
    r = lc_loop_create_server(loop, echo_factory, NULL,
                              &(lc_server_opts_t){.host = "127.0.0.1", .port = 0}, &f);
    if (r != 0)
        return r;
    lc_server_t *server = NULL;
    r = lc_await(f, (void **)&server);
    lc_future_unref(f);
    if (r != 0)
        return r;
    int fd;
    size_t nfd = 1;
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    if (lc_server_sockets(server, &fd, &nfd) != 0 || nfd != 1 ||
        getsockname(fd, (struct sockaddr *)&sin, &slen) != 0) {
        lc_server_free(server);
        return -EIO;
    }
    io->step = 2;
    /* create_connection, then write and read in straight lines */
    io->reader.loop = loop;
    r = lc_loop_create_connection(
        loop, reader_factory, &io->reader,
        &(lc_connection_opts_t){.host = "127.0.0.1", .port_num = ntohs(sin.sin_port)}, &f);
    lc_transport_t *t = NULL;
    if (r == 0) {
        r = lc_await(f, (void **)&t);
        lc_future_unref(f);
    }
    if (r == 0) {
        io->step = 3;
        r = lc_transport_write(t, "hello, task", 11);
    }
    if (r == 0)
        r = task_read(&io->reader, 11);
    if (r == 0 && memcmp(io->reader.buf, "hello, task", 11) == 0)
        io->step = 4;
    /* Close, and await connection_lost. */
    if (t != NULL && lc_loop_create_future(loop, &io->reader.lost) == 0) {
        lc_transport_close(t);
        if (lc_await(io->reader.lost, NULL) == 0)
            io->step = 5;
        lc_future_unref(io->reader.lost);
        io->reader.lost = NULL;
    }
    lc_server_free(server);
    return r;
}

static void test_task_connects_reads_writes_in_straight_lines(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(30);
    io_task_t io = {.loop = loop};
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_echo_client, &io, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    assert_int_equal(io.family, AF_INET);
    assert_int_equal(io.step, 5);
    assert_int_equal(io.reader.lost_err, 0);
    lc_future_unref(task);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_task_result_through_run_until_complete),
        T(test_task_create_invalid_and_closed),
        T(test_task_fire_and_forget),
        T(test_task_ping_pong_10000_tasks),
        T(test_task_cancel_while_suspended),
        T(test_task_cancel_after_wakeup_queued),
        T(test_task_wakeup_keeps_done_callback_order),
        T(test_task_cancel_while_sleeping),
        T(test_task_cancel_before_start),
        T(test_task_cancel_running_task),
        T(test_task_cancel_nested_waits_for_inner),
        T(test_task_errors_propagate_through_nested_awaits),
        T(test_task_unretrieved_error_reported),
        T(test_task_finishes_while_loop_stops),
        T(test_task_suspended_at_close_unwinds),
        T(test_task_factory_honoured),
        T(test_task_await_outside_task_is_error),
        T(test_task_await_invalid_and_done),
        T(test_task_sleep_and_done_callbacks),
        T(test_task_stack_pool_reuse),
        T(test_task_stack_size_option),
        T(test_task_stack_overflow_hits_guard_page),
        T(test_task_connects_reads_writes_in_straight_lines),
#undef T
    };
    return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
