/* Helpers of the task tests (test_task*.c): integers carried in pointers, the monotonic clock,
 * and a coroutine that counts its runs. */
#ifndef LOOPCORE_TESTS_ENGINE_TASK_HELPERS_H
#define LOOPCORE_TESTS_ENGINE_TASK_HELPERS_H

#include <stdint.h>

#include "tests/support/loop_fixture.h"

#define P(x) ((void *)(uintptr_t)(x))
#define U(p) ((uintptr_t)(p))

/* Seconds on the monotonic clock. */
double now_s(void);
/* A coroutine that adds one to the int at arg. */
int coro_count(void *arg, void **result);

#endif
