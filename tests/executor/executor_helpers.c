/* Helpers of the executor tests: see executor_helpers.h. */
#include "tests/executor/executor_helpers.h"

#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_S 120u

int setup(void **state)
{
    lc_test_watchdog(WATCHDOG_S);
    return lc_test_loop_setup(state);
}

int teardown(void **state)
{
    int r = lc_test_loop_teardown(state);
    alarm(0);
    return r;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void gate_init(gate_t *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
}

void gate_wait(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void gate_destroy(gate_t *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

typedef struct {
    lc_loop_t *loop;
    pred_fn pred;
    void *arg;
} poll_t;

static void poll_cb(void *a)
{
    poll_t *p = a;
    if (p->pred(p->arg))
        lc_loop_stop(p->loop);
    else
        assert_int_equal(lc_loop_call_later(p->loop, 0.001, poll_cb, p, NULL), 0);
}

void run_until(lc_loop_t *loop, pred_fn pred, void *arg)
{
    poll_t p = {loop, pred, arg};
    assert_int_equal(lc_loop_call_soon(loop, poll_cb, &p, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

/* Runs exactly one iteration of the loop. */
void run_once(lc_loop_t *loop)
{
    assert_int_equal(lc_loop_stop(loop), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

static bool all_done(void *arg)
{
    lc_future_t **futs = arg;
    for (; *futs != NULL; futs++) {
        if (!lc_future_done(*futs))
            return false;
    }
    return true;
}

/* Runs the loop until every future of the NULL-terminated array is done. */
void run_until_done(lc_loop_t *loop, lc_future_t **futs) { run_until(loop, all_done, futs); }

typedef struct {
    _Atomic unsigned *counter;
    unsigned value;
} at_least_t;

static bool reached(void *arg)
{
    at_least_t *a = arg;
    return atomic_load(a->counter) >= a->value;
}

void run_until_count(lc_loop_t *loop, _Atomic unsigned *counter, unsigned value)
{
    at_least_t a = {counter, value};
    run_until(loop, reached, &a);
}

unsigned cpu_count(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    return (unsigned)CPU_COUNT(&set);
}

unsigned default_max_workers(void)
{
    unsigned n = cpu_count() + 4;
    return n < 32 ? n : 32;
}

_Atomic unsigned g_ran, g_started, g_dtors, g_on_loop_thread, g_no_executor;
pthread_t g_test_thread;
gate_t g_gate;

void reset_globals(void)
{
    atomic_store(&g_ran, 0);
    atomic_store(&g_started, 0);
    atomic_store(&g_dtors, 0);
    atomic_store(&g_on_loop_thread, 0);
    atomic_store(&g_no_executor, 0);
    g_test_thread = pthread_self();
    gate_init(&g_gate);
}

void note_thread(void)
{
    if (pthread_equal(pthread_self(), g_test_thread))
        atomic_fetch_add(&g_on_loop_thread, 1);
    if (lc_executor_current() == NULL)
        atomic_fetch_add(&g_no_executor, 1);
}

/* Returns arg + 1 as its result, or -EIO when arg is a multiple of 3. */
int value_job(void *arg, void **result)
{
    note_thread();
    atomic_fetch_add(&g_ran, 1);
    intptr_t i = (intptr_t)arg;
    if (i % 3 == 0)
        return -EIO;
    *result = (void *)(i + 1);
    return 0;
}

/* Counts itself started, waits for the gate, then returns a heap int (arg). */
int gated_job(void *arg, void **result)
{
    note_thread();
    atomic_fetch_add(&g_started, 1);
    gate_wait(&g_gate);
    atomic_fetch_add(&g_ran, 1);
    int *v = malloc(sizeof(*v));
    if (v == NULL)
        return LC_ENOMEM;
    *v = (int)(intptr_t)arg;
    *result = v;
    return 0;
}

int counting_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_fetch_add(&g_ran, 1);
    return 0;
}

void counting_dtor(void *result)
{
    atomic_fetch_add(&g_dtors, 1);
    free(result);
}

/* Records the thread's name into arg (char[16]). */
int name_job(void *arg, void **result)
{
    (void)result;
    pthread_getname_np(pthread_self(), arg, 16);
    atomic_fetch_add(&g_started, 1);
    gate_wait(&g_gate);
    return 0;
}

int null_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 7; /* any value >= 0 is success; the result stays NULL */
}
