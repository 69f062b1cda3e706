/** @file
 *  @ingroup task
 *  @defgroup task Tasks (loopcore/task.h)
 *
 * loopcore tasks (asyncio.Task, loop.create_task, await, asyncio.sleep).
 *
 * A task runs a coroutine, lc_coro_fn (loop.h): int coro(void *arg, void **result), on a stack of
 * its own, so the coroutine is straight-line C that suspends in lc_await() / lc_sleep() while the
 * loop runs other callbacks and tasks. The coroutine returns 0 (or any value >= 0) after storing
 * its result, or a negative code.
 *
 * A task IS a future (lc_future_t, future.h): lc_loop_run_until_complete(), done callbacks,
 * lc_future_result() and lc_await() from another task all work on it. Its outcome is its
 * coroutine's: the result stored through `result` when it returns >= 0; cancelled when it
 * returns LC_ECANCELLED (or returns while a cancellation it never saw is pending, as in asyncio);
 * otherwise the error it returned. lc_future_set_result / set_error on a task return LC_EINVAL;
 * lc_future_cancel on a task is lc_task_cancel.
 *
 * Lifetime: create_task gives the caller one reference (lc_future_unref when done with it). The
 * task keeps itself alive until its coroutine has returned, so dropping the reference at once
 * ("fire and forget") is fine. The coroutine starts in a later iteration (through call_soon),
 * not inside create_task.
 *
 * Stacks: mmap'd with a PROT_NONE guard page below (an overflow faults), 64 KiB usable by default
 * (256 KiB in AddressSanitizer and ThreadSanitizer builds, whose frames are bigger); the size is
 * a per-loop setting. A finished task's stack goes back to a per-loop pool and the next task
 * reuses it, already mapped and warm. Each live task's stack is two memory mappings (the guard
 * page and the stack), so Linux's default vm.max_map_count (65530) allows some 30,000 tasks alive
 * at once; raise it for more.
 *
 * Closing the loop with tasks alive: a task that never started is cancelled without running; a
 * suspended task is resumed once more, its await returning LC_ECLOSED, and every later
 * lc_await / lc_sleep of it returns LC_ECLOSED at once, so it can release what it holds and
 * return (its done callbacks do not run: the loop is closed). A coroutine must return once its
 * awaits fail so; lc_loop_close() waits for that.
 *
 * Await forms: lc_await() takes any future, so every coroutine method of the loop, which fills an
 * lc_future_t (getaddrinfo, create_connection, create_server, run_in_executor, ...), is awaited
 * with it in straight-line code: lc_loop_getaddrinfo(loop, host, port, NULL, &f);
 * r = lc_await(f, (void **)&ai); ...; lc_future_unref(f). Reading in straight lines is a protocol
 * that completes a future the task awaits (tests/engine/test_task.c shows one); the sock_*
 * methods, and typed await helpers for the stream calls, come with issue 5.
 *
 * Thread rules: loop thread only, like futures. lc_await / lc_sleep only inside a task. To cancel
 * from another thread, post lc_task_cancel with lc_loop_call_soon_threadsafe.
 * @{ */
#ifndef LOOPCORE_TASK_H
#define LOOPCORE_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loopcore/future.h"
#include "loopcore/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/** The smallest stack a task may be given (lc_loop_set_task_stack_size). */
#define LC_TASK_STACK_SIZE_MIN (16 * 1024)

/** Counters of a loop's tasks and stack pool (lc_loop_get_task_stats). */
typedef struct lc_task_stats_s {
    uint64_t tasks_created; /**< by the default factory (lc_task_create), since the loop began */
    uint64_t tasks_live;    /**< created and not finished */
    uint64_t stacks_mapped; /**< stacks mmap'd: a task found the pool empty */
    uint64_t stacks_reused; /**< stacks a task took from the pool */
    uint64_t stacks_idle;   /**< stacks in the pool now */
} lc_task_stats_t;

/* ---- Creating tasks -------------------------------------------------------------------------- */

/** loop.create_task(coro): schedules coro(arg) to run as a task of loop and stores it in *task
 *  (one reference for the caller). Calls the loop's task factory instead if one is set
 *  (lc_loop_set_task_factory) and returns what it returns. Returns 0, LC_EINVAL, LC_ECLOSED,
 *  LC_ENOMEM (no memory or no stack) or LC_EWRONGTHREAD (debug); coro never runs on failure. */
int lc_loop_create_task(lc_loop_t *loop, lc_coro_fn coro, void *arg, lc_future_t **task);

/** asyncio.Task(coro, loop=loop): the default factory's task, ignoring the loop's factory (what
 *  a custom factory calls to make the task it decorates). Same returns as lc_loop_create_task. */
int lc_task_create(lc_loop_t *loop, lc_coro_fn coro, void *arg, lc_future_t **task);

/* ---- Inside a task --------------------------------------------------------------------------- */

/** await fut: suspends the calling task until fut is done (at once if it is) and returns its
 *  outcome as lc_future_result() does: 0 with *result (if not NULL) set, its error, or
 *  LC_ECANCELLED if fut was cancelled. Also LC_ECANCELLED when the task itself was cancelled
 *  (lc_task_cancel) while suspended here or before getting here; LC_ECLOSED when its loop is
 *  closed; LC_ENOTTASK outside a task (no crash); LC_EWRONGLOOP for a future of another loop;
 *  LC_EINVAL for NULL or the task itself; LC_ENOMEM. Does not consume the caller's reference. */
int lc_await(lc_future_t *fut, void **result);

/** asyncio.sleep(seconds): suspends the calling task for at least seconds (<= 0: until the next
 *  iteration). Returns 0, LC_ECANCELLED (cancelled meanwhile), LC_ECLOSED, LC_ENOTTASK,
 *  LC_EINVAL (NaN) or LC_ENOMEM. */
int lc_sleep(double seconds);

/** asyncio.current_task(): the task running in this thread, or NULL outside a task. Borrowed:
 *  no reference is added. */
lc_future_t *lc_current_task(void);

/* ---- Task methods ---------------------------------------------------------------------------- */

/** Task.cancel(): asks the task to cancel. Suspended in lc_await / lc_sleep: the future it
 *  awaits is cancelled too (a task it awaits gets the request in turn) and that await returns
 *  LC_ECANCELLED once the future is done; running: its next await returns LC_ECANCELLED; not
 *  started: its coroutine never runs and it ends cancelled. The coroutine may clean up, await
 *  again and finish as it likes (returning LC_ECANCELLED makes the task cancelled). Returns 1 if
 *  asked, 0 if the task is already done; on a plain future, lc_future_cancel(). LC_EINVAL. */
int lc_task_cancel(lc_future_t *task);

/** True if fut is a task made by the default factory. */
bool lc_future_is_task(const lc_future_t *fut);

/** asyncio.all_tasks(loop): stores up to cap of loop's live (not finished) tasks in tasks
 *  (borrowed pointers) and returns how many are live. */
size_t lc_loop_all_tasks(const lc_loop_t *loop, lc_future_t **tasks, size_t cap);

/* ---- Stacks ---------------------------------------------------------------------------------- */

/** Sets the usable stack size of the tasks created from now on, rounded up to whole pages.
 *  Pooled stacks of another size are unmapped. Returns 0, or LC_EINVAL (below
 *  LC_TASK_STACK_SIZE_MIN, above 1 GiB, closed loop). */
int lc_loop_set_task_stack_size(lc_loop_t *loop, size_t bytes);

/** The usable stack size of new tasks, in bytes. */
size_t lc_loop_get_task_stack_size(const lc_loop_t *loop);

/** Sets how many finished tasks' stacks the loop keeps for reuse (default 256; 0: unmap each
 *  stack when its task ends). Extra idle stacks are unmapped. Returns 0 or LC_EINVAL. */
int lc_loop_set_task_stack_pool_max(lc_loop_t *loop, size_t max);

/** How many idle stacks the loop keeps at most. */
size_t lc_loop_get_task_stack_pool_max(const lc_loop_t *loop);

/** Stores the loop's task and stack-pool counters in *stats. Returns 0 or LC_EINVAL. */
int lc_loop_get_task_stats(const lc_loop_t *loop, lc_task_stats_t *stats);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
