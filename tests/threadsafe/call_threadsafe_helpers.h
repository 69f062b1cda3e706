/* Helpers of the call_soon_threadsafe tests (test_call_threadsafe*.c): a loop run on a thread of
 * its own, the monotonic clock, a counting callback, and the scale of the threaded tests. */
#ifndef LOOPCORE_TESTS_THREADSAFE_CALL_THREADSAFE_HELPERS_H
#define LOOPCORE_TESTS_THREADSAFE_CALL_THREADSAFE_HELPERS_H

#include <pthread.h>

#include "tests/support/loop_fixture.h"

#if defined(__SANITIZE_THREAD__)
#define SCALE 4
#else
#define SCALE 1
#endif

/* Seconds on the monotonic clock. */
double now(void);

/* Runs the loop on its own thread until a stop is posted. */
typedef struct {
    lc_loop_t *loop;
    pthread_t thread;
    int rc;
} runner_t;

/* Starts the loop on r's thread; runner_stop posts a stop, joins, and checks run_forever's 0. */
void runner_start(runner_t *r, lc_loop_t *loop);
void runner_stop(runner_t *r);

/* Adds one to the atomic_int at arg. */
void count_cb(void *arg);

#endif
