/* Tasks awaiting: 10,000 tasks ping-ponging through futures, awaiting outside a task and bad
 * awaits, lc_sleep, the current task and a task's done callbacks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "tests/engine/task_helpers.h"
#include "tests/support/loop_fixture.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_task_ping_pong_10000_tasks),
        T(test_task_await_outside_task_is_error),
        T(test_task_await_invalid_and_done),
        T(test_task_sleep_and_done_callbacks),
#undef T
    };
    return cmocka_run_group_tests_name("task_await", tests, NULL, NULL);
}
