/* Loop groups shut down with messages in flight: producer threads and submit chains while the
 * group stops, and submits that the shutdown catches, resolved by lc_group_free (the rules in
 * test_group.c's opening comment apply). */
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

/* ---- Shutdown with messages in flight -------------------------------------------------------- */

#define SHUTDOWN_PRODUCERS 3u
#define SHUTDOWN_CHAINS 8u          /* submit chains per loop */
#define SHUTDOWN_FUT_CAP (1u << 18) /* futures kept per loop */

typedef struct shutdown_s shutdown_t;

/* A message from a producer thread: freed by its callback, whichever way it comes. */
typedef struct {
    lc_call_t call;
    shutdown_t *sd;
} prod_msg_t;

typedef struct {
    lc_loop_t *loop;
    unsigned nfut;
    lc_future_t *futs[SHUTDOWN_FUT_CAP]; /* a reference to every future this loop submitted */
} chain_loop_t;

struct shutdown_s {
    lc_group_t *g;
    _Atomic bool producers_stop;
    /* relaxed counters: read by the test thread after joining every thread involved. */
    _Atomic uint64_t posted;
    _Atomic uint64_t refused;
    _Atomic uint64_t ran;
    _Atomic uint64_t handed_back;
    _Atomic uint64_t bad_status;
    _Atomic uint64_t fn_ran;
    _Atomic uint64_t done_ran;
    _Atomic uint64_t never_retrieved;
    chain_loop_t loops[2];
};

static void prod_cb(lc_call_t *call, int status)
{
    prod_msg_t *m = lc_container_of(call, prod_msg_t, call);
    shutdown_t *sd = m->sd;
    /* relaxed: tallies, see shutdown_t. */
    if (status == 0)
        atomic_fetch_add_explicit(&sd->ran, 1, memory_order_relaxed);
    else if (status == LC_ECLOSED)
        atomic_fetch_add_explicit(&sd->handed_back, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&sd->bad_status, 1, memory_order_relaxed);
    free(m);
}

static void *producer_thread(void *arg)
{
    shutdown_t *sd = arg;
    unsigned k = 0;
    /* relaxed: the flag only ends the loop; the join publishes everything else. */
    while (!atomic_load_explicit(&sd->producers_stop, memory_order_relaxed)) {
        prod_msg_t *m = malloc(sizeof(*m));
        if (m == NULL)
            break;
        m->sd = sd;
        int r = lc_loop_post_threadsafe(lc_group_loop(sd->g, k++ % lc_group_size(sd->g)), &m->call,
                                        prod_cb);
        /* relaxed: tallies. */
        if (r == 0) {
            atomic_fetch_add_explicit(&sd->posted, 1, memory_order_relaxed);
        } else {
            atomic_fetch_add_explicit(&sd->refused, 1, memory_order_relaxed);
            free(m);
        }
        if (k % 64 == 0)
            sched_yield();
    }
    return NULL;
}

static int chain_fn(lc_loop_t *target, void *arg, void **result)
{
    shutdown_t *sd = arg;
    atomic_fetch_add_explicit(&sd->fn_ran, 1, memory_order_relaxed); /* relaxed: a tally */
    *result = target;
    return 0;
}

static void chain_submit(shutdown_t *sd, lc_loop_t *origin);

static void chain_done_cb(lc_future_t *fut, void *arg)
{
    shutdown_t *sd = arg;
    atomic_fetch_add_explicit(&sd->done_ran, 1, memory_order_relaxed); /* relaxed: a tally */
    chain_submit(sd, lc_future_get_loop(fut));
}

/* Loop thread of origin: submits one more call to the other loop, keeping the future. */
static void chain_submit(shutdown_t *sd, lc_loop_t *origin)
{
    int i = lc_group_index(sd->g, origin);
    chain_loop_t *cl = &sd->loops[i];
    if (cl->nfut == SHUTDOWN_FUT_CAP)
        return;
    lc_future_t *fut = NULL;
    if (lc_group_submit(sd->g, (unsigned)(1 - i), chain_fn, sd, &fut) != 0)
        return;
    cl->futs[cl->nfut++] = fut;
    lc_future_add_done_callback(fut, chain_done_cb, sd);
}

static void count_handler(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    shutdown_t *sd = arg;
    atomic_fetch_add_explicit(&sd->never_retrieved, 1, memory_order_relaxed); /* relaxed */
}

static void chain_hook(lc_loop_t *loop, unsigned index, void *arg)
{
    shutdown_t *sd = arg;
    lc_loop_set_exception_handler(loop, count_handler, sd);
    sd->loops[index].loop = loop;
    for (unsigned c = 0; c < SHUTDOWN_CHAINS; c++)
        chain_submit(sd, loop);
}

static void test_group_shutdown_with_messages_in_flight(void **state)
{
    (void)state;
    for (unsigned round = 0; round < 3; round++) {
        shutdown_t *sd = calloc(1, sizeof(*sd));
        assert_non_null(sd);
        lc_group_t *g = NULL;
        assert_int_equal(
            lc_group_create(
                &g, &(lc_group_opts_t){.nloops = 2, .on_start = chain_hook, .on_start_arg = sd}),
            0);
        sd->g = g;
        pthread_t producers[SHUTDOWN_PRODUCERS];
        for (unsigned p = 0; p < SHUTDOWN_PRODUCERS; p++)
            assert_int_equal(pthread_create(&producers[p], NULL, producer_thread, sd), 0);
        assert_int_equal(lc_group_start(g), 0);
        sleep_ms(10 + 10 * round);
        /* The producers and the submit chains race the stop and the join. */
        assert_int_equal(lc_group_stop(g), 0);
        assert_int_equal(lc_group_join(g), 0);
        /* relaxed: see producer_thread. */
        atomic_store_explicit(&sd->producers_stop, true, memory_order_relaxed);
        for (unsigned p = 0; p < SHUTDOWN_PRODUCERS; p++)
            pthread_join(producers[p], NULL);
        uint64_t before_free = atomic_load_explicit(&sd->ran, memory_order_relaxed) +
                               atomic_load_explicit(&sd->handed_back, memory_order_relaxed);
        assert_true(before_free <= atomic_load_explicit(&sd->posted, memory_order_relaxed));
        /* Closing hands back every queued lc_call_t and every submit in flight. */
        assert_int_equal(lc_group_free(g), 0);

        uint64_t posted = atomic_load_explicit(&sd->posted, memory_order_relaxed);
        uint64_t ran = atomic_load_explicit(&sd->ran, memory_order_relaxed);
        uint64_t back = atomic_load_explicit(&sd->handed_back, memory_order_relaxed);
        assert_true(posted > 0);
        assert_int_equal(atomic_load_explicit(&sd->refused, memory_order_relaxed), 0);
        assert_int_equal(atomic_load_explicit(&sd->bad_status, memory_order_relaxed), 0);
        assert_int_equal(ran + back, posted); /* each message exactly once, run or handed back */

        /* Every submitted future is done: with its value, or LC_ECLOSED if the shutdown caught it
         * (never both, never pending); no error was reported as never retrieved. */
        uint64_t ok = 0, closed = 0, total = 0;
        for (unsigned i = 0; i < 2; i++) {
            chain_loop_t *cl = &sd->loops[i];
            for (unsigned k = 0; k < cl->nfut; k++) {
                lc_future_t *fut = cl->futs[k];
                assert_true(lc_future_done(fut));
                void *res = NULL;
                int r = lc_future_result(fut, &res);
                if (r == 0) {
                    assert_ptr_equal(res, sd->loops[1 - i].loop);
                    ok++;
                } else {
                    assert_int_equal(r, LC_ECLOSED);
                    closed++;
                }
                lc_future_unref(fut);
                total++;
            }
        }
        assert_int_equal(ok + closed, total);
        assert_true(ok <= atomic_load_explicit(&sd->fn_ran, memory_order_relaxed));
        assert_true(atomic_load_explicit(&sd->done_ran, memory_order_relaxed) <= ok);
        /* Which submits the shutdown caught depends on timing: see the next test for the
         * deterministic cases. */
        assert_int_equal(atomic_load_explicit(&sd->never_retrieved, memory_order_relaxed), 0);
        free(sd);
    }
}

/* Submits made to loops that have already stopped are caught by the shutdown for sure. Loop 1
 * stops the group, waits until loops 0 and 2 have left their loops, then submits K calls to each
 * and broadcasts once. lc_group_free closes loop 0 first: its calls travel back to loop 1 (still
 * open) and are handed back again when loop 1 closes. Loop 2 closes last: its calls cannot travel
 * back to the closed loop 1 and are released on the spot. Either way: LC_ECLOSED, fn never ran. */
#define CAUGHT_K 16u

typedef struct {
    lc_group_t *g;
    _Atomic unsigned fn_ran;
    lc_future_t *futs[2 * CAUGHT_K];
    lc_future_t *bcast;
    int err;
} caught_t;

static int caught_fn(lc_loop_t *target, void *arg, void **result)
{
    caught_t *c = arg;
    atomic_fetch_add_explicit(&c->fn_ran, 1, memory_order_relaxed); /* relaxed: a tally */
    return 0;
}

static int stop_then_submit_fn(lc_loop_t *target, void *arg, void **result)
{
    caught_t *c = arg;
    int r = lc_group_stop(c->g);
    if (r != 0)
        return r;
    while (lc_loop_is_running(lc_group_loop(c->g, 0)) || lc_loop_is_running(lc_group_loop(c->g, 2)))
        sched_yield();
    for (unsigned k = 0; k < CAUGHT_K; k++) {
        r = lc_group_submit(c->g, 0, caught_fn, c, &c->futs[2 * k]);
        if (r == 0)
            r = lc_group_submit(c->g, 2, caught_fn, c, &c->futs[2 * k + 1]);
        if (r != 0)
            return r;
    }
    return lc_group_broadcast(c->g, caught_fn, c, &c->bcast);
}

static void test_group_free_resolves_submits_caught_by_shutdown(void **state)
{
    (void)state;
    caught_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 3}), 0);
    c->g = g;
    assert_int_equal(lc_group_start(g), 0);
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 1), stop_then_submit_fn, c, NULL), 0);
    assert_int_equal(lc_group_join(g), 0);
    for (unsigned k = 0; k < 2 * CAUGHT_K; k++)
        assert_false(lc_future_done(c->futs[k]));
    assert_int_equal(lc_group_free(g), 0);

    /* Only loop 1's own broadcast message ran (it was queued before loop 1's stop ran). */
    assert_int_equal(atomic_load_explicit(&c->fn_ran, memory_order_relaxed), 1);
    for (unsigned k = 0; k < 2 * CAUGHT_K; k++) {
        assert_true(lc_future_done(c->futs[k]));
        assert_int_equal(lc_future_result(c->futs[k], NULL), LC_ECLOSED);
        lc_future_unref(c->futs[k]);
    }
    assert_true(lc_future_done(c->bcast));
    assert_int_equal(lc_future_result(c->bcast, NULL), LC_ECLOSED); /* loop 0's, the first */
    lc_future_unref(c->bcast);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_shutdown_with_messages_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_free_resolves_submits_caught_by_shutdown, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("group_shutdown", tests, NULL, NULL);
}
