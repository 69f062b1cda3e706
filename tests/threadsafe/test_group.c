/* Loop groups and cross-loop calls (include/loopcore/group.h), with real threads.
 *
 * CMocka assertions run on the test's own thread only (their longjmp must not cross threads):
 * loop threads and producers record what they saw in atomics or in per-loop slots, and the test
 * checks after a happens-before edge (lc_loop_submit_wait, a waiter, or a join). Every test arms
 * a watchdog; the tests use the CPUs the process may run on, whatever their number. */
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

#define WATCHDOG_S 120u
#define MAX_LOOPS 64u
#define PING_PONG_ROUNDS 10000u

/* ---- Helpers --------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    lc_test_watchdog(WATCHDOG_S);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    return 0;
}

/* The CPUs of the process's affinity mask, ascending. */
static int affinity_list(int *cpus, int max)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++) {
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    }
    return n;
}

/* A counter the test thread can wait on; loop threads add to it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned count;
} waiter_t;

static void waiter_init(waiter_t *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->count = 0;
}

static void waiter_add(waiter_t *w)
{
    pthread_mutex_lock(&w->mu);
    w->count++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(waiter_t *w, unsigned count)
{
    pthread_mutex_lock(&w->mu);
    while (w->count < count)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_destroy(waiter_t *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* What a submitted function saw on its thread. */
typedef struct {
    lc_loop_t *running;
    pthread_t thread;
    int cpu;          /* sched_getcpu() */
    int affinity_cpu; /* the only CPU of the thread's affinity mask, or -1 */
    int affinity_n;   /* CPUs in the thread's affinity mask */
    char name[16];
} seen_t;

static int record_fn(lc_loop_t *target, void *arg, void **result)
{
    seen_t *s = arg;
    lc_get_running_loop(&s->running);
    s->thread = pthread_self();
    s->cpu = sched_getcpu();
    cpu_set_t set;
    CPU_ZERO(&set);
    pthread_getaffinity_np(pthread_self(), sizeof(set), &set);
    s->affinity_n = CPU_COUNT(&set);
    s->affinity_cpu = -1;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &set)) {
            s->affinity_cpu = c;
            break;
        }
    }
    pthread_getname_np(pthread_self(), s->name, sizeof(s->name));
    *result = target;
    return 0;
}

/* ---- Creation, CPUs, names, hooks ------------------------------------------------------------ */

static void test_group_default_size_is_affinity_cpu_count(void **state)
{
    (void)state;
    int cpus[CPU_SETSIZE];
    int ncpu = affinity_list(cpus, CPU_SETSIZE);
    cpu_set_t set;
    sched_getaffinity(0, sizeof(set), &set);
    assert_int_equal(ncpu, CPU_COUNT(&set));

    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, NULL), 0);
    assert_int_equal(lc_group_size(g), (unsigned)ncpu);
    for (int i = 0; i < ncpu; i++) {
        assert_int_equal(lc_group_cpu(g, (unsigned)i), cpus[i]);
        assert_non_null(lc_group_loop(g, (unsigned)i));
        assert_int_equal(lc_group_index(g, lc_group_loop(g, (unsigned)i)), i);
        assert_true(fabs(lc_loop_get_spin_budget(lc_group_loop(g, (unsigned)i)) -
                         LC_GROUP_DEFAULT_SPIN) < 1e-12);
    }
    assert_int_equal(lc_group_start(g), 0);
    /* Every loop runs on its CPU. */
    for (int i = 0; i < ncpu; i++) {
        seen_t s;
        void *res = NULL;
        assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, (unsigned)i), record_fn, &s, &res),
                         0);
        assert_ptr_equal(res, lc_group_loop(g, (unsigned)i));
        assert_int_equal(s.cpu, cpus[i]);
        assert_int_equal(s.affinity_n, 1);
        assert_int_equal(s.affinity_cpu, cpus[i]);
    }
    assert_int_equal(lc_group_free(g), 0);
}

static void test_group_explicit_cpus_wrap_around_and_pin(void **state)
{
    (void)state;
    int avail[CPU_SETSIZE];
    int navail = affinity_list(avail, CPU_SETSIZE);
    if (navail > 8)
        navail = 8; /* keeps the thread count modest on big machines */
    /* The list in reverse, so loop i's CPU is not simply i. */
    int list[8];
    for (int i = 0; i < navail; i++)
        list[i] = avail[navail - 1 - i];
    unsigned n = (unsigned)(2 * navail + 1);

    lc_group_t *g = NULL;
    assert_int_equal(
        lc_group_create(&g, &(lc_group_opts_t){.nloops = n, .cpus = list, .ncpus = (size_t)navail}),
        0);
    assert_int_equal(lc_group_size(g), n);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(lc_group_cpu(g, i), list[i % (unsigned)navail]);
    assert_int_equal(lc_group_start(g), 0);

    pthread_t threads[MAX_LOOPS];
    for (unsigned i = 0; i < n; i++) {
        seen_t s;
        lc_loop_t *loop = lc_group_loop(g, i);
        assert_int_equal(lc_loop_submit_wait(loop, record_fn, &s, NULL), 0);
        assert_ptr_equal(s.running, loop);
        assert_int_equal(s.cpu, list[i % (unsigned)navail]);
        assert_int_equal(s.affinity_n, 1);
        assert_int_equal(s.affinity_cpu, list[i % (unsigned)navail]);
        char expected[32];
        snprintf(expected, sizeof(expected), "lc-loop-%u", i);
        assert_string_equal(s.name, expected);
        threads[i] = s.thread;
        for (unsigned j = 0; j < i; j++)
            assert_false(pthread_equal(threads[j], s.thread));
    }
    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_join(g), 0);
    assert_int_equal(lc_group_join(g), 0); /* joining twice is fine */
    assert_int_equal(lc_group_free(g), 0);
}

static void test_group_unpinned_and_spin_budget_options(void **state)
{
    (void)state;
    int avail[CPU_SETSIZE];
    int navail = affinity_list(avail, CPU_SETSIZE);
    lc_group_t *g = NULL;
    assert_int_equal(
        lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true, .spin_budget = 1e-3}),
        0);
    assert_int_equal(lc_group_cpu(g, 0), -1);
    assert_int_equal(lc_group_cpu(g, 1), -1);
    assert_true(fabs(lc_loop_get_spin_budget(lc_group_loop(g, 1)) - 1e-3) < 1e-12);
    assert_int_equal(lc_group_start(g), 0);
    seen_t s;
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 1), record_fn, &s, NULL), 0);
    assert_int_equal(s.affinity_n, navail); /* inherited, not pinned */
    assert_string_equal(s.name, "lc-loop-1");
    assert_int_equal(lc_group_free(g), 0);

    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 1, .spin_budget = -1}), 0);
    assert_true(lc_loop_get_spin_budget(lc_group_loop(g, 0)) == 0.0);
    assert_int_equal(lc_group_free(g), 0);
}

typedef struct {
    lc_group_t *g;
    _Atomic unsigned hooks;
    lc_loop_t *running[MAX_LOOPS]; /* lc_get_running_loop in the hook of loop i */
    lc_loop_t *given[MAX_LOOPS];
    pthread_t thread[MAX_LOOPS];
    unsigned order[MAX_LOOPS]; /* loop i's hook ran after order[i] of its own callbacks */
    unsigned ran[MAX_LOOPS];   /* callbacks of loop i that ran (loop i's thread only) */
} hook_state_t;

static void hook_fn(lc_loop_t *loop, unsigned index, void *arg)
{
    hook_state_t *hs = arg;
    lc_get_running_loop(&hs->running[index]);
    hs->given[index] = loop;
    hs->thread[index] = pthread_self();
    hs->order[index] = hs->ran[index];
    /* relaxed: the test reads the count after lc_group_start returned, which is ordered after
     * every hook by the group's mutex. */
    atomic_fetch_add_explicit(&hs->hooks, 1, memory_order_relaxed);
}

typedef struct {
    hook_state_t *hs;
    unsigned index;
} early_t;

static void early_cb(void *arg)
{
    early_t *e = arg;
    e->hs->ran[e->index]++;
}

static void early_call_cb(lc_call_t *call, int status)
{
    early_t *e = call->data;
    if (status == 0)
        e->hs->ran[e->index]++;
}

static void test_group_start_hook_runs_first_on_its_loop_thread(void **state)
{
    (void)state;
    hook_state_t *hs = calloc(1, sizeof(*hs));
    assert_non_null(hs);
    lc_group_t *g = NULL;
    assert_int_equal(
        lc_group_create(&g,
                        &(lc_group_opts_t){.nloops = 3, .on_start = hook_fn, .on_start_arg = hs}),
        0);
    hs->g = g;
    /* Work queued before start, in both ways, must wait for the hook. */
    early_t early[3];
    lc_call_t calls[3];
    for (unsigned i = 0; i < 3; i++) {
        early[i] = (early_t){.hs = hs, .index = i};
        calls[i].data = &early[i];
        assert_int_equal(lc_loop_call_soon(lc_group_loop(g, i), early_cb, &early[i], NULL), 0);
        assert_int_equal(lc_loop_post_threadsafe(lc_group_loop(g, i), &calls[i], early_call_cb), 0);
    }
    assert_int_equal(lc_group_start(g), 0);
    assert_int_equal(atomic_load_explicit(&hs->hooks, memory_order_relaxed), 3);
    for (unsigned i = 0; i < 3; i++) {
        lc_loop_t *loop = lc_group_loop(g, i);
        assert_ptr_equal(hs->running[i], loop);
        assert_ptr_equal(hs->given[i], loop);
        assert_int_equal(hs->order[i], 0);
        seen_t s;
        assert_int_equal(lc_loop_submit_wait(loop, record_fn, &s, NULL), 0);
        assert_true(pthread_equal(s.thread, hs->thread[i]));
        assert_int_equal(hs->ran[i], 2); /* both early callbacks ran before the submitted fn */
    }
    assert_int_equal(lc_group_start(g), LC_EINVALIDSTATE); /* once only */
    assert_int_equal(lc_group_free(g), 0);
    free(hs);
}

/* ---- Cross-loop calls ------------------------------------------------------------------------ */

typedef struct {
    lc_group_t *g;
    waiter_t done;
    seen_t at_target;
    lc_loop_t *done_running; /* lc_get_running_loop in the done callback */
    pthread_t done_thread;
    int outcome;
    void *result;
} submit_state_t;

static int value_fn(lc_loop_t *target, void *arg, void **result)
{
    submit_state_t *ss = arg;
    record_fn(target, &ss->at_target, result);
    *result = (void *)(uintptr_t)0x5eed;
    return 0;
}

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

/* ---- Stopping -------------------------------------------------------------------------------- */

static int stop_group_fn(lc_loop_t *target, void *arg, void **result)
{
    lc_group_t *g = arg;
    int r = lc_group_stop(g);
    if (r == 0)
        r = lc_group_stop(g); /* idempotent */
    if (r == 0 && lc_group_join(g) != LC_EBUSY)
        r = -1;
    return r;
}

static void test_group_stop_from_inside_a_loop(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 3}), 0);
    assert_int_equal(lc_group_start(g), 0);
    assert_int_equal(lc_loop_submit_wait(lc_group_loop(g, 1), stop_group_fn, g, NULL), 0);
    assert_int_equal(lc_group_join(g), 0);
    for (unsigned i = 0; i < 3; i++)
        assert_false(lc_loop_is_running(lc_group_loop(g, i)));
    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_free(g), 0);
}

/* An lc_call_t that counts how it came back. */
typedef struct {
    lc_call_t call;
    int ran;
    int handed_back;
} counted_call_t;

static void counted_cb(lc_call_t *call, int status)
{
    counted_call_t *c = lc_container_of(call, counted_call_t, call);
    if (status == 0)
        c->ran++;
    else if (status == LC_ECLOSED)
        c->handed_back++;
}

static void test_group_lifecycle_errors_and_free_without_start(void **state)
{
    (void)state;
    assert_int_equal(lc_group_create(NULL, NULL), LC_EINVAL);
    lc_group_t *g = (lc_group_t *)1;
    int cpus[2] = {-1, 0};
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.cpus = cpus, .ncpus = 0}), LC_EINVAL);
    assert_null(g);
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.ncpus = 2}), LC_EINVAL);
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.cpus = cpus, .ncpus = 2}), LC_EINVAL);
    cpus[0] = CPU_SETSIZE;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.cpus = cpus, .ncpus = 1}), LC_EINVAL);
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.spin_budget = NAN}), LC_EINVAL);
    cpu_set_t set;
    sched_getaffinity(0, sizeof(set), &set);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set)) { /* a CPU this process may not use */
            cpus[0] = c;
            assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.cpus = cpus, .ncpus = 1}),
                             LC_EINVAL);
            break;
        }
    }
    assert_int_equal(lc_group_start(NULL), LC_EINVAL);
    assert_int_equal(lc_group_stop(NULL), LC_EINVAL);
    assert_int_equal(lc_group_join(NULL), LC_EINVAL);
    assert_int_equal(lc_group_free(NULL), LC_EINVAL);
    assert_int_equal(lc_group_size(NULL), 0);
    assert_null(lc_group_loop(NULL, 0));
    assert_int_equal(lc_group_cpu(NULL, 0), LC_EINVAL);
    assert_int_equal(lc_group_index(NULL, NULL), -1);

    /* Free without start: queued work is discarded or handed back, exactly once. */
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2}), 0);
    assert_null(lc_group_loop(g, 2));
    assert_int_equal(lc_group_cpu(g, 2), LC_EINVAL);
    lc_loop_t *other = NULL;
    assert_int_equal(lc_new_event_loop(&other), 0);
    assert_int_equal(lc_group_index(g, other), -1);
    assert_int_equal(lc_group_index(g, NULL), -1);
    assert_int_equal(lc_group_join(g), LC_EINVALIDSTATE);
    lc_future_t *fut = (lc_future_t *)1;
    assert_int_equal(lc_group_submit(g, 2, value_fn, NULL, &fut), LC_EINVAL);
    assert_null(fut);
    assert_int_equal(lc_group_submit(NULL, 0, value_fn, NULL, &fut), LC_EINVAL);

    lc_test_log_t log = {.n = 0};
    lc_test_event_t ev = {.log = &log, .value = 1};
    counted_call_t calls[2] = {{.ran = 0}};
    assert_int_equal(lc_loop_call_soon(lc_group_loop(g, 0), lc_test_log_cb, &ev, NULL), 0);
    assert_int_equal(lc_loop_call_soon_threadsafe(lc_group_loop(g, 1), lc_test_log_cb, &ev, NULL),
                     0);
    for (unsigned i = 0; i < 2; i++)
        assert_int_equal(lc_loop_post_threadsafe(lc_group_loop(g, i), &calls[i].call, counted_cb),
                         0);
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(log.n, 0); /* nothing ran */
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(calls[i].ran, 0);
        assert_int_equal(calls[i].handed_back, 1);
    }

    /* Stop before start forbids the start. */
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 1}), 0);
    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_start(g), LC_EINVALIDSTATE);
    assert_int_equal(lc_group_join(g), LC_EINVALIDSTATE);
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(lc_loop_free(other), 0);
}

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

/* ---- Start and stop, many times ---------------------------------------------------------------
 */

static int count_loop_fn(lc_loop_t *target, void *arg, void **result)
{
    (void)target;
    (void)result;
    /* relaxed: a counter read after broadcast_wait returned (a happens-before edge). */
    atomic_fetch_add_explicit((atomic_uint *)arg, 1, memory_order_relaxed);
    return 0;
}

/* A group created, started, used, stopped, joined and freed 100 times: no hang (the watchdog),
 * no leak (LeakSanitizer in --config=asan), no thread left behind. */
static void test_group_start_stop_100_times(void **state)
{
    (void)state;
    for (int round = 0; round < 100; round++) {
        lc_group_t *g = NULL;
        assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2}), 0);
        assert_int_equal(lc_group_start(g), 0);
        atomic_uint ran = 0;
        assert_int_equal(lc_group_broadcast_wait(g, count_loop_fn, &ran), 0);
        assert_int_equal(atomic_load_explicit(&ran, memory_order_relaxed), 2);
        if (round % 2 == 0) {
            assert_int_equal(lc_group_stop(g), 0);
            assert_int_equal(lc_group_join(g), 0);
        }
        assert_int_equal(lc_group_free(g), 0); /* odd rounds: free stops and joins itself */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_default_size_is_affinity_cpu_count, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_explicit_cpus_wrap_around_and_pin, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_unpinned_and_spin_budget_options, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_start_hook_runs_first_on_its_loop_thread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_submit_resolves_on_origin_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_submit_wait_from_main_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_broadcast_reaches_every_loop_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_ping_pong_10000_submits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_submit_to_self_and_to_closed_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_submit_to_loop_closed_before_it_ran, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_stop_from_inside_a_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_lifecycle_errors_and_free_without_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_shutdown_with_messages_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_free_resolves_submits_caught_by_shutdown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_start_stop_100_times, setup, teardown),
    };
    return cmocka_run_group_tests_name("group", tests, NULL, NULL);
}
