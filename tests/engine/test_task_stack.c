/* Task stacks: the pool, the size option, and the guard page under an endless recursion. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/engine/task_helpers.h"
#include "tests/support/loop_fixture.h"

/* ---- Stacks ---------------------------------------------------------------------------------- */

static int coro_stack_addr(void *arg, void **result)
{
    (void)arg;
    /* The frame, not a local: ASan's use-after-return mode moves locals to a fake stack. */
    *result = __builtin_frame_address(0);
    return 0;
}

static void test_task_stack_pool_reuse(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    void *addr[4] = {0};
    for (int i = 0; i < 4; i++) {
        lc_future_t *task;
        assert_int_equal(lc_loop_create_task(loop, coro_stack_addr, NULL, &task), 0);
        assert_int_equal(lc_loop_run_until_complete(loop, task, &addr[i]), 0);
        lc_future_unref(task);
    }
    /* One stack, taken back from the pool each time: the same frame address. */
    for (int i = 1; i < 4; i++)
        assert_ptr_equal(addr[i], addr[0]);
    lc_task_stats_t st;
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_mapped, 1);
    assert_int_equal(st.stacks_reused, 3);
    assert_int_equal(st.stacks_idle, 1);

    /* Two at a time: two stacks, reused. */
    for (int round = 0; round < 3; round++) {
        lc_future_t *a, *b;
        assert_int_equal(lc_loop_create_task(loop, coro_stack_addr, NULL, &a), 0);
        assert_int_equal(lc_loop_create_task(loop, coro_stack_addr, NULL, &b), 0);
        assert_int_equal(lc_loop_run_until_complete(loop, b, NULL), 0);
        assert_int_equal(lc_loop_run_until_complete(loop, a, NULL), 0);
        lc_future_unref(a);
        lc_future_unref(b);
    }
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_mapped, 2);
    assert_int_equal(st.stacks_reused, 3 + 5);
    assert_int_equal(st.stacks_idle, 2);

    /* No pool: every task maps its own stack and unmaps it at its end. */
    assert_int_equal(lc_loop_set_task_stack_pool_max(loop, 0), 0);
    assert_int_equal(lc_loop_get_task_stack_pool_max(loop), 0);
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_idle, 0);
    for (int i = 0; i < 3; i++) {
        lc_future_t *task;
        assert_int_equal(lc_loop_create_task(loop, coro_stack_addr, NULL, &task), 0);
        assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
        lc_future_unref(task);
    }
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_mapped, 5);
    assert_int_equal(st.stacks_idle, 0);
}

static int coro_use_stack(void *arg, void **result)
{
    /* Touch most of the stack: it must be usable down to near its bottom. */
    size_t n = *(size_t *)arg;
    volatile char *buf = __builtin_alloca(n);
    for (size_t i = 0; i < n; i += 512)
        buf[i] = (char)(i >> 9);
    *result = (void *)(uintptr_t)buf[512];
    return 0;
}

static void test_task_stack_size_option(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    size_t def = lc_loop_get_task_stack_size(loop);
    assert_true(def >= 64 * 1024);
    assert_int_equal(lc_loop_set_task_stack_size(loop, LC_TASK_STACK_SIZE_MIN - 1), LC_EINVAL);
    assert_int_equal(lc_loop_set_task_stack_size(NULL, 1 << 20), LC_EINVAL);
    assert_int_equal(lc_loop_get_task_stack_size(loop), def);
    /* Rounded up to pages. */
    assert_int_equal(lc_loop_set_task_stack_size(loop, 1024 * 1024 + 1), 0);
    size_t big = lc_loop_get_task_stack_size(loop);
    assert_true(big > 1024 * 1024 && big % 4096 == 0);
    /* A task uses most of a 1 MiB stack. */
    size_t want = 900 * 1024;
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_use_stack, &want, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    lc_future_unref(task);
    lc_task_stats_t st;
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_idle, 1);
    /* Another size: the pooled stack of the old size goes. */
    assert_int_equal(lc_loop_set_task_stack_size(loop, def), 0);
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.stacks_idle, 0);
}

/* Runs in a child process: a task recursing without end must fault on the guard page (or be
 * stopped by AddressSanitizer's stack-overflow check), not run into other memory. */
static int recurse(volatile char *prev, int depth)
{
    volatile char frame[1024];
    frame[0] = prev != NULL ? prev[0] : 1;
    frame[1023] = (char)depth;
    if (depth >= 100000)
        return frame[0];
    return recurse(frame, depth + 1) + frame[1023];
}

static int coro_overflow(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return recurse(NULL, 0) > 0 ? 0 : 0;
}

static void test_task_stack_overflow_hits_guard_page(void **state)
{
    (void)state;
    lc_test_watchdog(60);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(30);
        if (freopen("/dev/null", "w", stderr) == NULL) /* the fault report is expected */
            _exit(5);
        lc_loop_t *loop = NULL;
        if (lc_new_event_loop(&loop) != 0)
            _exit(3);
        lc_future_t *task;
        if (lc_loop_create_task(loop, coro_overflow, NULL, &task) != 0)
            _exit(4);
        lc_loop_run_until_complete(loop, task, NULL);
        _exit(42); /* recursed 100 MB deep without a fault: no guard */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS ||
                    WTERMSIG(status) == SIGABRT);
    } else {
        /* Sanitizers may exit with an error status after their report. */
        assert_true(WIFEXITED(status));
        assert_int_not_equal(WEXITSTATUS(status), 0);
        assert_int_not_equal(WEXITSTATUS(status), 42);
        assert_int_not_equal(WEXITSTATUS(status), 3);
        assert_int_not_equal(WEXITSTATUS(status), 4);
        assert_int_not_equal(WEXITSTATUS(status), 5);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_task_stack_pool_reuse),
        T(test_task_stack_size_option),
        T(test_task_stack_overflow_hits_guard_page),
#undef T
    };
    return cmocka_run_group_tests_name("task_stack", tests, NULL, NULL);
}
