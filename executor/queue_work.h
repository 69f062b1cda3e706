/* What the executor's front ends share (private to executor/): run_in_executor.c submits through
 * queue_work.c, and both resolve a NULL executor through default.c. */
#ifndef LOOPCORE_EXECUTOR_QUEUE_WORK_H
#define LOOPCORE_EXECUTOR_QUEUE_WORK_H

#include "loopcore/executor.h"

/* The executor that a NULL executor means for loop (rules 1-3 of executor.h), in *out; creates
 * the shared default or loop's own on first use (default.c). Loop thread. Returns 0 or the errors
 * of lc_executor_create(). */
int lc__executor_default(lc_loop_t *loop, lc_executor_t **out);

/* Checks loop (open, right thread in debug mode) and resolves *ex (NULL: loop's default; an
 * executor another loop owns is refused). Returns 0, LC_ECLOSED, LC_EWRONGTHREAD, LC_EINVAL or
 * the errors of lc__executor_default() (queue_work.c). */
int lc__executor_resolve(lc_loop_t *loop, lc_executor_t **ex);

/* Fills req's job and submits it to ex (resolved): work(req) on a worker, then after(req, status)
 * on loop's thread. orphan (may be NULL): see job_t in pool.h. Returns 0, LC_ECLOSED (ex shut
 * down) or LC_EAGAIN (ex's queue is full); on failure nothing runs (queue_work.c). */
int lc__executor_queue_job(lc_loop_t *loop, lc_executor_t *ex, lc_work_t *req, lc_work_fn work,
                           lc_after_work_cb after, void (*orphan)(lc_work_t *req));

#endif
