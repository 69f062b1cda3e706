/** @file
 *  @ingroup executor
 *  @defgroup executor Executors and run_in_executor (loopcore/executor.h)
 *
 * loopcore executors: thread pools for blocking work, and run_in_executor.
 *
 * A loop must never block: file I/O, CPU-heavy work and blocking libraries go to an executor, a
 * pool of worker threads. lc_loop_run_in_executor() returns a future of the calling loop; a worker
 * runs the job, and the outcome travels back through the loop's inbound MPSC queue (a
 * lc_loop_post_threadsafe() of an lc_call_t embedded in the job, one per batch of outcomes: no
 * allocation besides the job and the future), so the future always resolves on the loop's own
 * thread. lc_loop_queue_work() is the same without a future or any allocation, in libuv's
 * uv_queue_work shape (a request the caller embeds, a work function, an after callback).
 *
 * Why not libuv's thread pool (uv_queue_work): it is process-wide, its size is fixed at its first
 * use (UV_THREADPOOL_SIZE, read once) and it is shared with libuv's own getaddrinfo and file
 * system requests, so a burst of blocking user jobs would starve name resolution and file I/O of
 * every loop in the process. An executor has its own threads, its own size and its own queue.
 *
 * Workers. An executor starts with no threads and creates them lazily, up to max_workers (default
 * min(32, CPUs + 4), as Python's ThreadPoolExecutor), only when a job is queued and no worker is
 * idle. Threads are named "<prefix>_<i>" (Linux keeps 15 characters). They may run on every CPU
 * of the process's affinity mask (its main thread's), whichever thread started them: a group's
 * pinned loop thread does not pass its single CPU on. Submission takes no lock: the job goes on a
 * lock-free queue. A worker takes jobs in batches while they are short (one at a time once they
 * block) and takes the next batch as soon as it finished one (short jobs that trickle in, more
 * than one per batch but too few to fill one, are gathered for a few microseconds first), so a
 * busy worker drains many jobs per wake-up, and the outcomes of a batch travel to each loop as
 * one message. An idle worker polls the queue for a short spin budget before it sleeps (one at a
 * time, and with short jobs only while no worker is busy; first moving off the CPU that its last
 * job was submitted from, where it would compete with the submitter). A submission wakes a
 * sleeping worker (one futex call) only when no worker is idle and, for short jobs, no busy
 * worker will be back within microseconds; should those busy workers all get stuck in long jobs,
 * a sleeping worker (the sentinel, which wakes every 1 to 8 ms while jobs run) takes the job. Jobs
 * start in submission order (FIFO), each on one worker, and may block as long as they like. Worker
 * threads block the asynchronous signals, so that signals reach the loops' threads.
 *
 * Jobs. A job is a plain C function that returns 0 and stores its result pointer, or returns a
 * negative code. loopcore never reads a result; whoever reads a successful future owns it. When
 * nobody can (the future was cancelled or its loop closed first), the result is passed to the
 * destructor given with lc_loop_run_in_executor_dtor(), if any, on whatever thread finds it
 * orphaned: nothing leaks.
 *
 * Cancellation (asyncio's rules). lc_future_cancel() on the future of a job that has not started
 * yet means the job never runs: the worker that reaches it skips it. The cancellation reaches the
 * job when the future's done callbacks run (in the loop's next batch, as asyncio chains its
 * futures), so a job that a worker starts in between still runs, and counts as started.
 * Cancelling a job that has started does not interrupt it: it finishes, and its result goes to
 * the destructor.
 *
 * The default executor. lc_loop_run_in_executor(loop, NULL, ...) uses the loop's default:
 *   1. the one set with lc_loop_set_default_executor() or lc_group_set_default_executor() (the
 *      loop does not own it);
 *   2. else, on a loop of a loop group (lc_loop_group() is not NULL, see group.h), whichever
 *      thread runs it: the process-wide shared default executor, created on first use with the
 *      default options. Every loop of every group that has no default of its own shares it: one
 *      pool for all the cores. lc_executor_default_shutdown() shuts it down and frees it (a later
 *      use creates a new one); at process exit it is freed if it is idle;
 *   3. else (a standalone loop): an executor the loop creates on first use and owns. Closing the
 *      loop shuts it down without waiting for running jobs (asyncio's close): jobs that have not
 *      started never run (their futures are cancelled), jobs that run finish on their workers and
 *      their results go to the destructor (their futures fail with LC_ECLOSED), and the executor
 *      frees itself when its last worker is gone.
 *
 * lc_loop_set_default_executor(loop, NULL) returns a loop to that rule.
 *
 * Lifetime rules.
 *   - An executor must outlive every loop that may still submit to it; its memory goes once
 *     lc_executor_free() was called and its last worker is gone (outcomes on their way to loops
 *     do not need it).
 *   - A loop closed while it still has jobs on an executor it owns: see 3 above, all handled.
 *   - A loop closed while it still has jobs on an executor it does not own: finish them first.
 *     Wait for their futures, or shut the executor down with wait = true (its outcomes then wait
 *     in the loop's queue, and closing the loop hands them back, on the closing thread, with
 *     LC_ECLOSED: futures of jobs that ran fail with LC_ECLOSED, the others are cancelled, results
 *     go to the destructor). For a loop group: lc_group_stop() and lc_group_join(), then
 *     lc_executor_shutdown(ex, true, ...) or lc_executor_default_shutdown(), then
 *     lc_group_free(). A job that finishes after its loop was closed anyway is released on its
 *     worker thread (future marked done, result destroyed, references dropped), which is only
 *     safe if no other thread uses that loop or the future at that moment (as for cross-loop
 *     calls, group.h).
 *
 * Thread rules are in each comment.
 * @{ */
#ifndef LOOPCORE_EXECUTOR_H
#define LOOPCORE_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "loopcore/future.h"
#include "loopcore/group.h"
#include "loopcore/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/** The default spin budget of an idle worker, in seconds (see lc_executor_opts_t.spin_budget). */
#define LC_EXECUTOR_DEFAULT_SPIN 50e-6

/** An executor: a pool of worker threads. Owned: lc_executor_shutdown(), lc_executor_free(). */
typedef struct lc_executor_s lc_executor_t;

/** A job: runs on a worker thread with arg. Returns 0 (or any value >= 0) and stores its result in
 *  *result (initially NULL), or returns a negative code (LC_ECANCELLED cancels the future). */
typedef int (*lc_job_fn)(void *arg, void **result);

/** Destroys a successful job's result that no future will deliver. Any thread. */
typedef void (*lc_result_dtor_fn)(void *result);

typedef struct lc_work_s lc_work_t;

/** Runs on a worker thread; returns a status (0 or a negative code) for after. */
typedef int (*lc_work_fn)(lc_work_t *req);

/** Runs once per queued request, with the work's return value, or LC_ECANCELLED (the work never
 *  ran: cancelled, or the executor shut down with cancel_pending), or LC_ECLOSED (the loop was
 *  closed before the outcome was delivered; the work may or may not have run: record that in your
 *  struct). On the loop's thread; with LC_ECLOSED on the thread that closed the loop, or on the
 *  worker that finished the work (the loop's own default executor, when the work ran at the close;
 *  or another executor, when the loop was closed against the lifetime rules). The request is the
 *  caller's again when after starts: it may free it. */
typedef void (*lc_after_work_cb)(lc_work_t *req, int status);

/** A request the caller allocates (embed it and recover your struct with lc_container_of). Valid
 *  from lc_loop_queue_work() until its after callback starts. */
struct lc_work_s {
    void *data; /**< the caller's; loopcore never touches it */
    /** private */
    void *_priv[20];
};

/** Options of lc_executor_create(): write them with designated initializers; zero means default. */
typedef struct lc_executor_opts_s {
    unsigned max_workers;           /**< 0: min(32, CPUs this process may run on + 4) */
    const char *thread_name_prefix; /**< NULL or "": "lc-exec-<n>", n counting executors */
    size_t max_queued;  /**< jobs waiting for a worker at most; 0: unbounded. A submission to a full
                             queue fails at once with LC_EAGAIN (never blocks the loop). */
    double spin_budget; /**< at most this many seconds (capped at 1) an idle worker polls the queue
                             before it sleeps (one worker at a time; the spin adapts, down to none,
                             when it does not pay); 0: LC_EXECUTOR_DEFAULT_SPIN; negative: never */
} lc_executor_opts_t;

/** A snapshot of an executor's counters, for tests and monitoring. */
typedef struct lc_executor_stats_s {
    unsigned max_workers;         /**< the most threads it creates */
    unsigned workers;             /**< threads alive (created lazily) */
    unsigned idle;                /**< threads waiting for jobs (looking, spinning or asleep) */
    unsigned running;             /**< threads holding jobs (running them or about to) */
    size_t queued;                /**< jobs waiting for a worker */
    unsigned long long completed; /**< jobs that ran to the end */
    unsigned long long cancelled; /**< jobs that never ran (cancelled futures, shutdown, close) */
} lc_executor_stats_t;

/* ---- Executors ------------------------------------------------------------------------------- */

/** Creates an executor in *out (no threads yet); opts NULL for the defaults. Any thread. The caller
 *  owns it: lc_executor_free(). Returns 0, LC_EINVAL (NaN spin budget, max_workers over 4095)
 *  or LC_ENOMEM. */
int lc_executor_create(lc_executor_t **out, const lc_executor_opts_t *opts);

/** Shuts ex down: later submissions fail with LC_ECLOSED (one made at the same moment from another
 *  thread may still be taken, and then runs or is cancelled as a queued job). With
 *  cancel_pending, jobs that have not started never run and their futures are cancelled; without,
 *  the workers still run every queued job. With wait, returns once every job that will run has
 *  finished and its outcome is posted to its loop, and every worker is gone. Idempotent (a later
 *  call may still wait or cancel). Any thread but a worker of ex when wait is true. Returns 0,
 *  LC_EINVAL or LC_EBUSY (wait from a worker of ex: it would wait for itself; nothing is done). */
int lc_executor_shutdown(lc_executor_t *ex, bool wait, bool cancel_pending);

/** lc_executor_shutdown(ex, true, false) (queued jobs still run), then releases the caller's
 *  handle: ex must not be used by the caller afterwards. Any thread but a worker of ex. Returns 0,
 *  LC_EINVAL or LC_EBUSY. */
int lc_executor_free(lc_executor_t *ex);

/** Copies ex's counters into *stats. Any thread (a snapshot). Returns 0 or LC_EINVAL. */
int lc_executor_get_stats(lc_executor_t *ex, lc_executor_stats_t *stats);

/** The executor whose worker thread calls this, or NULL on any other thread. Any thread. */
lc_executor_t *lc_executor_current(void);

/** Shuts the process-wide shared default executor (rule 2 above) down with wait, cancelling its
 *  queued jobs if cancel_pending, and frees it; the next use creates a new one. Call it once no
 *  loop submits to it any more. Any thread but one of its workers. Returns 0 (also when there is
 *  none) or LC_EBUSY. */
int lc_executor_default_shutdown(bool cancel_pending);

/* ---- run_in_executor ------------------------------------------------------------------------- */

/** Runs fn(arg, &result) on a worker of ex (NULL: the loop's default executor, see above) and
 *  stores in *fut a new future of loop (one reference for the caller), resolved on loop's thread
 *  with fn's result or error (or with a thread-creation error if ex has no worker and cannot start
 *  one). Loop thread (or any one thread while loop does not run). Returns 0, LC_EINVAL (also: ex
 *  is another loop's own default executor), LC_ECLOSED (loop closed, or ex shut down), LC_EAGAIN
 *  (ex's queue is full), LC_ENOMEM or LC_EWRONGTHREAD (debug). On failure *fut is NULL and fn
 *  never runs. */
int lc_loop_run_in_executor(lc_loop_t *loop, lc_executor_t *ex, lc_job_fn fn, void *arg,
                            lc_future_t **fut);

/** lc_loop_run_in_executor(), and if the job succeeds but its result cannot be delivered (the
 *  future was cancelled or its loop closed first), dtor(result) is called on the thread that
 *  finds it (dtor NULL: the result is dropped, as with lc_loop_run_in_executor). */
int lc_loop_run_in_executor_dtor(lc_loop_t *loop, lc_executor_t *ex, lc_job_fn fn, void *arg,
                                 lc_result_dtor_fn dtor, lc_future_t **fut);

/* ---- lc_loop_queue_work: no future, no allocation ------------------------------------------- */

/** Runs work(req) on a worker of ex (NULL: the loop's default executor) and then after(req,
 *  status) on loop's thread; no allocation. The zero-allocation form of run_in_executor, for hot
 *  paths. Loop thread (or any one thread while loop does not run). Returns 0, or the errors of
 *  lc_loop_run_in_executor() (then work and after never run). */
int lc_loop_queue_work(lc_loop_t *loop, lc_executor_t *ex, lc_work_t *req, lc_work_fn work,
                       lc_after_work_cb after);

/** Cancels a queued request: if no worker has started its work yet, it never runs, and after gets
 *  LC_ECANCELLED; else nothing changes. Loop thread, between lc_loop_queue_work() and after.
 *  Returns 0 or LC_EINVAL. */
int lc_work_cancel(lc_work_t *req);

/* ---- Default executors ----------------------------------------------------------------------- */

/** Sets ex (not owned) as loop's default executor; NULL returns the loop to the default rule. An
 *  executor the loop owned is shut down without waiting (its queued jobs still run and deliver).
 *  Loop thread (or any one thread while loop does not run). Returns 0, LC_EINVAL or LC_ECLOSED. */
int lc_loop_set_default_executor(lc_loop_t *loop, lc_executor_t *ex);

/** Sets ex (not owned) as the default executor of every loop of g: the group's loops then share
 *  it. Call it before lc_group_start() or after lc_group_join(), from a thread that runs none of
 *  the group's loops. Returns 0, LC_EINVAL, or LC_EBUSY if a loop of g runs (nothing is set). */
int lc_group_set_default_executor(lc_group_t *g, lc_executor_t *ex);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
