/* Helpers of the executor tests (test_executor*.c; the rules in test_executor.c's opening comment
 * apply): a loop per test with a watchdog, clocks, a gate that jobs wait on, ways to run the loop
 * until something holds, and jobs that record what they saw. */
#ifndef LOOPCORE_TESTS_EXECUTOR_EXECUTOR_HELPERS_H
#define LOOPCORE_TESTS_EXECUTOR_EXECUTOR_HELPERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "loopcore.h"
#include "tests/support/loop_fixture.h"

/* setup: arms the watchdog, then a fresh loop; teardown: closes and frees it, disarms. */
int setup(void **state);
int teardown(void **state);
/* Seconds on the monotonic clock. */
double now_s(void);
void sleep_ms(unsigned ms);

/* A gate jobs wait on until the test opens it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} gate_t;

void gate_init(gate_t *g);
void gate_wait(gate_t *g);
void gate_open(gate_t *g);
void gate_destroy(gate_t *g);

/* Runs the loop until pred(arg) holds, looking every millisecond. */
typedef bool (*pred_fn)(void *arg);
void run_until(lc_loop_t *loop, pred_fn pred, void *arg);
/* Runs exactly one iteration of the loop. */
void run_once(lc_loop_t *loop);
/* Runs the loop until every future of the NULL-terminated array is done. */
void run_until_done(lc_loop_t *loop, lc_future_t **futs);
/* Runs the loop until *counter reaches value. */
void run_until_count(lc_loop_t *loop, _Atomic unsigned *counter, unsigned value);
/* The CPUs of the process's affinity mask, and the default executor size they give. */
unsigned cpu_count(void);
unsigned default_max_workers(void);

/* What jobs record. */
extern _Atomic unsigned g_ran, g_started, g_dtors, g_on_loop_thread, g_no_executor;
extern pthread_t g_test_thread;
extern gate_t g_gate;

/* Zeroes what jobs record, notes the test's thread, and closes g_gate (gate_init). */
void reset_globals(void);
/* Counts a job that runs on the test's thread, or outside any executor. */
void note_thread(void);
/* Returns arg + 1 as its result, or -EIO when arg is a multiple of 3. */
int value_job(void *arg, void **result);
/* Counts itself started, waits for the gate, then returns a heap int (arg). */
int gated_job(void *arg, void **result);
/* Counts itself in g_ran. */
int counting_job(void *arg, void **result);
/* Counts itself in g_dtors and frees the result. */
void counting_dtor(void *result);
/* Records the thread's name into arg (char[16]), then waits for the gate. */
int name_job(void *arg, void **result);
/* Succeeds with a NULL result. */
int null_job(void *arg, void **result);

#endif
