/* CMocka fixture: a fresh loop per test; teardown asserts it closes and frees cleanly. */
#ifndef LOOPCORE_TESTS_LOOP_FIXTURE_H
#define LOOPCORE_TESTS_LOOP_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "loopcore.h"

/* setup: *state = a new loop. */
int lc_test_loop_setup(void **state);
/* teardown: close (must succeed) and free the loop in *state. */
int lc_test_loop_teardown(void **state);

/* A log of events: tests append small integers or tags and compare the sequence. */
typedef struct {
    int items[256];
    int n;
} lc_test_log_t;

void lc_test_log_push(lc_test_log_t *log, int v);

/* A callback argument that appends its value to a log: call_soon(loop, lc_test_log_cb, &ev). */
typedef struct {
    lc_test_log_t *log;
    int value;
} lc_test_event_t;

void lc_test_log_cb(void *arg);
/* The same as a future done callback. */
void lc_test_log_done_cb(lc_future_t *fut, void *arg);

/* A callback that stops the loop passed as arg. */
void lc_test_stop_cb(void *arg);

/* Asserts that log holds exactly the n values in expected. */
void lc_test_assert_log(const lc_test_log_t *log, const int *expected, int n);

/* Arms a watchdog: the process aborts with a message if the test runs longer than seconds.
 * Also applies LC_TEST_FILTER (a cmocka wildcard pattern) to choose the tests to run. */
void lc_test_watchdog(unsigned seconds);

#endif
