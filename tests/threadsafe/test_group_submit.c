/* Cross-loop calls in a loop group: submit resolving on the origin loop, submit_wait from the
 * main thread, broadcast, 10,000 ping-pong submits, submits to self and to closed loops (the
 * rules in test_group.c's opening comment apply). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loopcore.h"
#include "loopcore/group.h"
#include "tests/support/loop_fixture.h"
#include "tests/threadsafe/group_helpers.h"

#define PING_PONG_ROUNDS 10000u

/* ---- Cross-loop calls ------------------------------------------------------------------------ */

static void submit_done_cb(lc_future_t *fut, void *arg)
{
    submit_state_t *ss = arg;
    lc_get_running_loop(&ss->done_running);
    ss->done_thread = pthread_self();
    ss->outcome = lc_future_result(fut, &ss->result);
    lc_future_unref(fut);
    waiter_add(&ss->done);
}

/* Runs on loop 0: submits value_fn to loop 1. */
static int submit_from_loop0_fn(lc_loop_t *target, void *arg, void **result)
{
    submit_state_t *ss = arg;
    lc_future_t *fut = NULL;
    int r = lc_group_submit(ss->g, 1, value_fn, ss, &fut);
    if (r != 0)
        return r;
    if (lc_future_get_loop(fut) != target)
        return LC_EWRONGLOOP;
    return lc_future_add_done_callback(fut, submit_done_cb, ss);
}

static int thread_fn(lc_loop_t *target, void *arg, void **result)
{
    *(pthread_t *)arg = pthread_self();
    return 0;
}

static void test_group_submit_resolves_on_origin_loop(void **state)
{
    (void)state;
    submit_state_t *ss = calloc(1, sizeof(*ss));
    assert_non_null(ss);
    waiter_init(&ss->done);
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2}), 0);
    ss->g = g;
    assert_int_equal(lc_group_start(g), 0);
    pthread_t t0;
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), thread_fn, &t0, NULL), 0);

    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), submit_from_loop0_fn, ss, NULL), 0);
    waiter_wait(&ss->done, 1);
    assert_ptr_equal(ss->at_target.running, lc_group_loop(g, 1)); /* fn ran on the target */
    assert_false(pthread_equal(ss->at_target.thread, t0));
    assert_ptr_equal(ss->done_running, lc_group_loop(g, 0)); /* resolved on the origin */
    assert_true(pthread_equal(ss->done_thread, t0));
    assert_int_equal(ss->outcome, 0);
    assert_ptr_equal(ss->result, (void *)(uintptr_t)0x5eed);

    assert_int_equal(lc_group_free(g), 0);
    waiter_destroy(&ss->done);
    free(ss);
}

static int fail_fn(lc_loop_t *target, void *arg, void **result)
{
    *result = arg;
    return LC_ENOENT;
}

static int check_api_in_loop_fn(lc_loop_t *target, void *arg, void **result)
{
    lc_group_t *g = arg;
    lc_future_t *fut = (lc_future_t *)1;
    /* Argument checks need a running loop: here. */
    if (lc_loop_submit(NULL, value_fn, NULL, &fut) != LC_EINVAL || fut != NULL)
        return -1;
    if (lc_loop_submit(target, NULL, NULL, &fut) != LC_EINVAL)
        return -2;
    if (lc_loop_submit(target, value_fn, NULL, NULL) != LC_EINVAL)
        return -3;
    if (lc_group_submit(g, lc_group_size(g), value_fn, NULL, &fut) != LC_EINVAL)
        return -4;
    if (lc_group_broadcast(NULL, value_fn, NULL, &fut) != LC_EINVAL)
        return -5;
    /* Blocking forms refuse a loop thread that is not the target. */
    if (lc_loop_submit_wait(lc_group_loop(g, 1), fail_fn, NULL, NULL) != LC_EBUSY)
        return -6;
    if (lc_group_broadcast_wait(g, fail_fn, NULL) != LC_EBUSY)
        return -7;
    /* ... and run fn directly on the target's own thread. */
    void *res = NULL;
    if (lc_loop_submit_wait(target, fail_fn, &res, &res) != LC_ENOENT || res != &res)
        return -8;
    /* A loop of the group cannot join or free it. */
    if (lc_group_join(g) != LC_EBUSY || lc_group_free(g) != LC_EBUSY)
        return -9;
    return 0;
}

static void test_group_submit_wait_from_main_thread(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2}), 0);
    assert_int_equal(lc_group_start(g), 0);

    seen_t s;
    void *res = NULL;
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 1), record_fn, &s, &res), 0);
    assert_ptr_equal(res, lc_group_loop(g, 1));
    assert_ptr_equal(s.running, lc_group_loop(g, 1));
    assert_false(pthread_equal(s.thread, pthread_self()));

    int token;
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), fail_fn, &token, &res), LC_ENOENT);
    assert_ptr_equal(res, &token);
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), fail_fn, NULL, NULL), LC_ENOENT);

    /* Not on a loop thread: the asynchronous forms refuse. */
    lc_future_t *fut = (lc_future_t *)1;
    assert_int_equal(lc_loop_submit(lc_group_loop(g, 0), value_fn, NULL, &fut), LC_ENORUNNINGLOOP);
    assert_null(fut);
    assert_int_equal(lc_group_broadcast(g, value_fn, NULL, &fut), LC_ENORUNNINGLOOP);
    assert_int_equal(lc_loop_submit_wait(NULL, value_fn, NULL, NULL), LC_EINVAL);
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), NULL, NULL, NULL), LC_EINVAL);
    assert_int_equal(lc_group_broadcast_wait(NULL, value_fn, NULL), LC_EINVAL);
    assert_int_equal(lc_group_broadcast_wait(g, NULL, NULL), LC_EINVAL);

    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), check_api_in_loop_fn, g, NULL), 0);
    assert_int_equal(lc_group_free(g), 0);
}

typedef struct {
    lc_group_t *g;
    _Atomic unsigned hits[MAX_LOOPS];
    waiter_t done;
    int outcome;
    void *result;
    lc_loop_t *done_running;
} bcast_state_t;

/* Counts a visit of each loop; loops 1 and above fail with LC_ENOENT - index, so the first error
 * by index is loop 1's. */
static int visit_fn(lc_loop_t *target, void *arg, void **result)
{
    bcast_state_t *bs = arg;
    int i = lc_group_index(bs->g, target);
    lc_loop_t *running;
    if (i < 0 || lc_get_running_loop(&running) != 0 || running != target)
        return LC_EINVAL;
    /* relaxed: a counter; the test reads it after the broadcast completed (a mutex or a loop
     * message orders it). */
    atomic_fetch_add_explicit(&bs->hits[i], 1, memory_order_relaxed);
    *result = bs;
    return i == 0 ? 0 : LC_ENOENT - i;
}

static int visit_ok_fn(lc_loop_t *target, void *arg, void **result)
{
    bcast_state_t *bs = arg;
    int i = lc_group_index(bs->g, target);
    /* relaxed: as in visit_fn. */
    atomic_fetch_add_explicit(&bs->hits[i], 1, memory_order_relaxed);
    return 0;
}

static void bcast_done_cb(lc_future_t *fut, void *arg)
{
    bcast_state_t *bs = arg;
    lc_get_running_loop(&bs->done_running);
    bs->outcome = lc_future_result(fut, &bs->result);
    lc_future_unref(fut);
    waiter_add(&bs->done);
}

static int broadcast_from_loop_fn(lc_loop_t *target, void *arg, void **result)
{
    bcast_state_t *bs = arg;
    lc_future_t *fut = NULL;
    int r = lc_group_broadcast(bs->g, visit_fn, bs, &fut);
    if (r != 0)
        return r;
    return lc_future_add_done_callback(fut, bcast_done_cb, bs);
}

static void test_group_broadcast_reaches_every_loop_once(void **state)
{
    (void)state;
    bcast_state_t *bs = calloc(1, sizeof(*bs));
    assert_non_null(bs);
    waiter_init(&bs->done);
    const unsigned n = 4;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = n}), 0);
    bs->g = g;
    assert_int_equal(lc_group_start(g), 0);

    /* From loop 2 (so the origin is a member, reached through its own queue too). */
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 2), broadcast_from_loop_fn, bs, NULL), 0);
    waiter_wait(&bs->done, 1);
    assert_ptr_equal(bs->done_running, lc_group_loop(g, 2));
    assert_int_equal(bs->outcome, LC_ENOENT - 1);
    assert_null(bs->result);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(atomic_load_explicit(&bs->hits[i], memory_order_relaxed), 1);

    /* The blocking form from this thread. */
    assert_int_equal(lc_group_broadcast_wait(g, visit_fn, bs), LC_ENOENT - 1);
    assert_int_equal(lc_group_broadcast_wait(g, visit_ok_fn, bs), 0);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(atomic_load_explicit(&bs->hits[i], memory_order_relaxed), 3);

    assert_int_equal(lc_group_free(g), 0);
    waiter_destroy(&bs->done);
    free(bs);
}

/* Ping-pong: each call runs on one loop and submits the next round to the other loop, whose
 * future resolves back on the submitting loop. */
typedef struct {
    lc_group_t *g;
    _Atomic unsigned started;  /* rounds submitted */
    _Atomic unsigned resolved; /* futures resolved with the right value on the right loop */
    _Atomic unsigned bad;
    waiter_t done;
} pingpong_t;

typedef struct {
    pingpong_t *pp;
    unsigned round;
    lc_loop_t *origin;
} round_t;

static int pingpong_fn(lc_loop_t *target, void *arg, void **result);

static void pingpong_done_cb(lc_future_t *fut, void *arg)
{
    round_t *rd = arg;
    pingpong_t *pp = rd->pp;
    lc_loop_t *running = NULL;
    void *res = NULL;
    lc_get_running_loop(&running);
    if (lc_future_result(fut, &res) != 0 || res != (void *)(uintptr_t)(rd->round + 1) ||
        running != rd->origin)
        atomic_fetch_add_explicit(&pp->bad, 1, memory_order_relaxed); /* relaxed: a tally */
    lc_future_unref(fut);
    free(rd);
    /* relaxed: a tally; the waiter's mutex orders it for the test thread. */
    if (atomic_fetch_add_explicit(&pp->resolved, 1, memory_order_relaxed) + 1 == PING_PONG_ROUNDS)
        waiter_add(&pp->done);
}

static int pingpong_submit(pingpong_t *pp, lc_loop_t *origin, unsigned round)
{
    int i = lc_group_index(pp->g, origin);
    round_t *rd = malloc(sizeof(*rd));
    if (rd == NULL)
        return LC_ENOMEM;
    *rd = (round_t){.pp = pp, .round = round, .origin = origin};
    lc_future_t *fut = NULL;
    int r = lc_group_submit(pp->g, (unsigned)(1 - i), pingpong_fn, rd, &fut);
    if (r == 0)
        r = lc_future_add_done_callback(fut, pingpong_done_cb, rd);
    if (r != 0) {
        free(rd);
        return r;
    }
    /* relaxed: a tally. */
    atomic_fetch_add_explicit(&pp->started, 1, memory_order_relaxed);
    return 0;
}

static int pingpong_fn(lc_loop_t *target, void *arg, void **result)
{
    round_t *rd = arg;
    lc_loop_t *running = NULL;
    lc_get_running_loop(&running);
    if (running != target || target == rd->origin)
        return LC_EINVAL;
    *result = (void *)(uintptr_t)(rd->round + 1);
    if (rd->round + 1 < PING_PONG_ROUNDS)
        return pingpong_submit(rd->pp, target, rd->round + 1);
    return 0;
}

static int pingpong_start_fn(lc_loop_t *target, void *arg, void **result)
{
    return pingpong_submit(arg, target, 0);
}

static void test_group_ping_pong_10000_submits(void **state)
{
    (void)state;
    pingpong_t *pp = calloc(1, sizeof(*pp));
    assert_non_null(pp);
    waiter_init(&pp->done);
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2}), 0);
    pp->g = g;
    assert_int_equal(lc_group_start(g), 0);
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), pingpong_start_fn, pp, NULL), 0);
    waiter_wait(&pp->done, 1);
    assert_int_equal(atomic_load_explicit(&pp->started, memory_order_relaxed), PING_PONG_ROUNDS);
    assert_int_equal(atomic_load_explicit(&pp->resolved, memory_order_relaxed), PING_PONG_ROUNDS);
    assert_int_equal(atomic_load_explicit(&pp->bad, memory_order_relaxed), 0);
    assert_int_equal(lc_group_free(g), 0);
    waiter_destroy(&pp->done);
    free(pp);
}

static int self_fn(lc_loop_t *target, void *arg, void **result)
{
    /* relaxed: only this loop's thread touches the flag. */
    atomic_store_explicit((_Atomic bool *)arg, true, memory_order_relaxed);
    return 0;
}

typedef struct {
    _Atomic bool ran;
    bool ran_inside; /* fn ran inside lc_loop_submit */
    int closed_submit;
    lc_future_t *closed_fut;
    lc_loop_t *closed_target;
} self_state_t;

static int submit_to_self_and_closed_fn(lc_loop_t *target, void *arg, void **result)
{
    self_state_t *st = arg;
    lc_future_t *fut = NULL;
    int r = lc_loop_submit(target, self_fn, &st->ran, &fut);
    if (r != 0)
        return r;
    st->ran_inside = atomic_load_explicit(&st->ran, memory_order_relaxed);
    *result = fut; /* the test thread checks it once the loop is stopped */
    st->closed_submit = lc_loop_submit(st->closed_target, self_fn, &st->ran, &st->closed_fut);
    return 0;
}

static void test_group_submit_to_self_and_to_closed_loop(void **state)
{
    (void)state;
    self_state_t st = {.ran = false};
    assert_int_equal(lc_new_event_loop(&st.closed_target), 0);
    assert_int_equal(lc_loop_close(st.closed_target), 0);
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 1}), 0);
    assert_int_equal(lc_group_start(g), 0);
    void *res = NULL;
    assert_int_equal(
        lc_loop_submit_wait(lc_group_loop(g, 0), submit_to_self_and_closed_fn, &st, &res), 0);
    assert_false(st.ran_inside);
    assert_int_equal(st.closed_submit, LC_ECLOSED);
    assert_null(st.closed_fut);
    /* A round trip through the loop's queue lets the self-submit finish first. */
    pthread_t t;
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), thread_fn, &t, NULL), 0);
    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_join(g), 0);
    lc_future_t *fut = res;
    assert_true(atomic_load_explicit(&st.ran, memory_order_relaxed));
    assert_true(lc_future_done(fut));
    assert_int_equal(lc_future_result(fut, NULL), 0);
    lc_future_unref(fut);
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(lc_loop_free(st.closed_target), 0);
}

/* A submit to a loop that is closed before it runs fn: the message is handed back on the closing
 * thread, travels back, and the origin's future resolves with LC_ECLOSED on the origin. */
typedef struct {
    lc_loop_t *target;
    submit_state_t ss;
} handback_t;

static int submit_to_idle_fn(lc_loop_t *origin, void *arg, void **result)
{
    handback_t *hb = arg;
    lc_future_t *fut = NULL;
    int r = lc_loop_submit(hb->target, value_fn, &hb->ss, &fut);
    if (r == 0)
        r = lc_future_add_done_callback(fut, submit_done_cb, &hb->ss);
    return r;
}

typedef struct {
    lc_loop_t *target;
    int r;
} blocked_t;

static void *blocked_submit_thread(void *arg)
{
    blocked_t *b = arg;
    b->r = lc_loop_submit_wait(b->target, fail_fn, NULL, NULL);
    return NULL;
}

static void test_group_submit_to_loop_closed_before_it_ran(void **state)
{
    (void)state;
    handback_t *hb = calloc(1, sizeof(*hb));
    assert_non_null(hb);
    waiter_init(&hb->ss.done);
    assert_int_equal(lc_new_event_loop(&hb->target), 0); /* never runs */
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 1}), 0);
    assert_int_equal(lc_group_start(g), 0);
    pthread_t t0;
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), thread_fn, &t0, NULL), 0);
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 0), submit_to_idle_fn, hb, NULL), 0);

    /* A blocked submit_wait from another thread is woken by the close as well. */
    blocked_t b = {.target = hb->target, .r = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocked_submit_thread, &b), 0);
    sleep_ms(50);

    assert_int_equal(lc_loop_close(hb->target), 0); /* hands both messages back */
    waiter_wait(&hb->ss.done, 1);
    assert_int_equal(hb->ss.outcome, LC_ECLOSED);
    assert_ptr_equal(hb->ss.done_running, lc_group_loop(g, 0));
    assert_true(pthread_equal(hb->ss.done_thread, t0));
    assert_ptr_equal(hb->ss.at_target.running, NULL); /* value_fn never ran */
    pthread_join(th, NULL);
    assert_int_equal(b.r, LC_ECLOSED);

    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(lc_loop_free(hb->target), 0);
    waiter_destroy(&hb->ss.done);
    free(hb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_submit_resolves_on_origin_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_submit_wait_from_main_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_broadcast_reaches_every_loop_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_ping_pong_10000_submits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_submit_to_self_and_to_closed_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_submit_to_loop_closed_before_it_ran, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("group_submit", tests, NULL, NULL);
}
