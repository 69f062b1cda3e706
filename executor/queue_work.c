/* lc_loop_queue_work: a request the caller embeds, a work function for a worker, an after callback
 * on the loop (libuv's uv_queue_work shape, include/loopcore/executor.h). Checks the loop, picks
 * the executor (default.c for NULL), fills the job and submits it to the pool (pool.h); also the
 * entry that run_in_executor.c builds on, with its orphan hook. */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "engine/executor_hooks.h"
#include "executor/pool.h"
#include "executor/queue_work.h"

/* Declared in queue_work.h. */
int lc__executor_resolve(lc_loop_t *loop, lc_executor_t **ex)
{
    int r = lc__loop_check_call(loop, "run_in_executor");
    if (r != 0)
        return r;
    if (*ex == NULL)
        return lc__executor_default(loop, ex);
    if ((*ex)->owner != NULL && (*ex)->owner != loop)
        return LC_EINVAL; /* an owned executor serves its loop only (see lc_executor_current) */
    return 0;
}

int lc__executor_queue_job(lc_loop_t *loop, lc_executor_t *ex, lc_work_t *req, lc_work_fn work,
                           lc_after_work_cb after, void (*orphan)(lc_work_t *req))
{
    job_t *j = lc__job_of(req);
    j->loop = loop;
    j->work = work;
    j->after = after;
    j->orphan = orphan;
    j->status = 0;
    int cpu = sched_getcpu(); /* glibc reads it from the thread's rseq area: no system call */
    j->cpu = (int16_t)(cpu >= 0 && cpu <= INT16_MAX ? cpu : -1);
    j->chain = j->prev = j->next = NULL;
    atomic_init(&j->cancel, false);
    return lc__executor_submit(ex, j);
}

int lc_loop_queue_work(lc_loop_t *loop, lc_executor_t *ex, lc_work_t *req, lc_work_fn work,
                       lc_after_work_cb after)
{
    if (loop == NULL || req == NULL || work == NULL || after == NULL)
        return LC_EINVAL;
    int r = lc__executor_resolve(loop, &ex);
    if (r != 0)
        return r;
    return lc__executor_queue_job(loop, ex, req, work, after, NULL);
}

int lc_work_cancel(lc_work_t *req)
{
    if (req == NULL)
        return LC_EINVAL;
    /* relaxed: see the field. */
    atomic_store_explicit(&lc__job_of(req)->cancel, true, memory_order_relaxed);
    return 0;
}
