/* Loop groups and cross-loop calls (include/loopcore/group.h), with real threads.
 *
 * CMocka assertions run on the test's own thread only (their longjmp must not cross threads):
 * loop threads and producers record what they saw in atomics or in per-loop slots, and the test
 * checks after a happens-before edge (lc_loop_submit_wait, a waiter, or a join). Every test arms
 * a watchdog; the tests use the CPUs the process may run on, whatever their number.
 *
 * Here: creation, CPUs, names, hooks, stopping, lifecycle errors, start and stop 100 times.
 * Cross-loop calls are in test_group_submit.c, shutdown with messages in flight in
 * test_group_shutdown.c; the helpers all share are in group_helpers.h. */
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
        cmocka_unit_test_setup_teardown(test_group_stop_from_inside_a_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_lifecycle_errors_and_free_without_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_start_stop_100_times, setup, teardown),
    };
    return cmocka_run_group_tests_name("group", tests, NULL, NULL);
}
