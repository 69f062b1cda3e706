/* Helpers of the call_soon_threadsafe tests: see call_threadsafe_helpers.h. */
#include "tests/threadsafe/call_threadsafe_helpers.h"

#include <stdatomic.h>
#include <time.h>

double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *runner_main(void *arg)
{
    runner_t *r = arg;
    r->rc = lc_loop_run_forever(r->loop);
    return NULL;
}

void runner_start(runner_t *r, lc_loop_t *loop)
{
    r->loop = loop;
    r->rc = -1;
    assert_int_equal(pthread_create(&r->thread, NULL, runner_main, r), 0);
}

static void post_stop(void *arg) { lc_loop_stop(arg); }

void runner_stop(runner_t *r)
{
    assert_int_equal(lc_loop_call_soon_threadsafe(r->loop, post_stop, r->loop, NULL), 0);
    assert_int_equal(pthread_join(r->thread, NULL), 0);
    assert_int_equal(r->rc, 0);
}

void count_cb(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }
