/* Helpers of the loop group tests (test_group*.c; the rules in test_group.c's opening comment
 * apply): a watchdog per test, a counter the test thread waits on, what a submitted function saw
 * on its thread, and a submitted function that records it. */
#ifndef LOOPCORE_TESTS_THREADSAFE_GROUP_HELPERS_H
#define LOOPCORE_TESTS_THREADSAFE_GROUP_HELPERS_H

#include <pthread.h>

#include "loopcore.h"
#include "loopcore/group.h"
#include "tests/support/loop_fixture.h"

#define MAX_LOOPS 64u

/* setup: arms the watchdog; teardown: disarms it. */
int setup(void **state);
int teardown(void **state);

/* A counter the test thread can wait on; loop threads add to it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned count;
} waiter_t;

void waiter_init(waiter_t *w);
void waiter_add(waiter_t *w);
/* Waits until the count reaches count. */
void waiter_wait(waiter_t *w, unsigned count);
void waiter_destroy(waiter_t *w);

void sleep_ms(unsigned ms);

/* What a submitted function saw on its thread. */
typedef struct {
    lc_loop_t *running;
    pthread_t thread;
    int cpu;          /* sched_getcpu() */
    int affinity_cpu; /* the only CPU of the thread's affinity mask, or -1 */
    int affinity_n;   /* CPUs in the thread's affinity mask */
    char name[16];
} seen_t;

/* Fills the seen_t at arg; its result is target. */
int record_fn(lc_loop_t *target, void *arg, void **result);

/* A submission and its outcome, as the done callback on the origin loop saw it. */
typedef struct {
    lc_group_t *g;
    waiter_t done;
    seen_t at_target;
    lc_loop_t *done_running; /* lc_get_running_loop in the done callback */
    pthread_t done_thread;
    int outcome;
    void *result;
} submit_state_t;

/* Records at ss->at_target (arg: a submit_state_t); its result is 0x5eed. */
int value_fn(lc_loop_t *target, void *arg, void **result);

#endif
