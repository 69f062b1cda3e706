/* Helpers of the task tests: see task_helpers.h. */
#include "tests/engine/task_helpers.h"

#include <time.h>

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int coro_count(void *arg, void **result)
{
    (void)result;
    ++*(int *)arg;
    return 0;
}
