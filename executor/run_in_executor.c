/* run_in_executor: the future-returning form of lc_loop_queue_work (include/loopcore/executor.h).
 *
 * One allocation per call: the lc_work_t, the job's function, and the future's reference (the
 * future itself is the engine's). The watcher is a done callback on the future, added at
 * submission and removed when the outcome arrives; it runs only if the future's owner cancelled
 * it first, and then cancels the work (lc_work_cancel). */
#include <stdbool.h>
#include <stdlib.h>

#include "executor/pool.h"
#include "executor/queue_work.h"

typedef struct {
    lc_work_t work;
    lc_job_fn fn;
    void *arg;
    lc_result_dtor_fn dtor;
    /* The reference to the future. Loop thread, or the thread that closes the loop (a hand-back,
     * or the owned executor's release, which calls orphaned() under the executor's mutex; the
     * worker reads it only after taking that mutex). */
    lc_future_t *fut;
    /* Written by the worker in rie_work, published to the loop by the post (or to the releasing
     * thread by the executor's mutex). */
    void *result;
    int status;
    bool ran;
    bool watch_ran; /* loop thread: the watcher ran */
    bool delivered; /* loop thread: the outcome arrived; waiting only for the watcher to run */
} rie_t;

static void rie_watch(lc_future_t *fut, void *arg);

static int rie_work(lc_work_t *req)
{
    rie_t *r = lc_container_of(req, rie_t, work);
    void *result = NULL;
    r->status = r->fn(r->arg, &result);
    r->result = result;
    r->ran = true;
    return 0;
}

/* Passes a successful result that nobody will receive to the destructor. */
static void rie_drop_result(rie_t *r)
{
    if (r->ran && r->status >= 0 && r->result != NULL && r->dtor != NULL)
        r->dtor(r->result);
    r->result = NULL;
}

/* The loop is closed: marks a pending future done (cancelled if fn did not run, else failed with
 * LC_ECLOSED), counts its error as retrieved (nobody can wait for it any more) and drops the
 * reference. Runs no user code: the loop schedules no callback any more. */
static void rie_settle_closed(rie_t *r, bool ran)
{
    lc_future_t *fut = r->fut;
    if (fut == NULL)
        return;
    r->fut = NULL;
    lc_future_remove_done_callback(fut, rie_watch, r);
    if (!lc_future_done(fut)) {
        if (ran)
            lc_future_set_error(fut, LC_ECLOSED);
        else
            lc_future_cancel(fut);
    }
    int ignored;
    (void)lc_future_error(fut, &ignored);
    lc_future_unref(fut);
}

/* The owned executor's release, for a job whose fn runs now (see orphan in job_t, pool.h). */
static void rie_orphaned(lc_work_t *req)
{
    /* fn started (it runs on a worker now, which writes r->ran): the future fails with
     * LC_ECLOSED. */
    rie_settle_closed(lc_container_of(req, rie_t, work), true);
}

static void rie_after(lc_work_t *req, int status)
{
    rie_t *r = lc_container_of(req, rie_t, work);
    if (r->delivered) {
        /* Second visit (see below): the watcher has run, or close dropped it. */
        free(r);
        return;
    }
    if (status == LC_ECLOSED) {
        /* The loop closed first; we run on the closing thread, or on the worker of an orphaned
         * job (whose future the release settled already). */
        rie_drop_result(r);
        rie_settle_closed(r, r->ran);
        free(r);
        return;
    }
    lc_future_t *fut = r->fut;
    r->fut = NULL;
    if (lc_future_remove_done_callback(fut, rie_watch, r) > 0) {
        /* The usual case: the future was pending. */
        if (!r->ran) /* skipped (LC_ECANCELLED), or no worker could start (an error) */
            status == LC_ECANCELLED ? (void)lc_future_cancel(fut)
                                    : (void)lc_future_set_error(fut, status);
        else if (r->status == LC_ECANCELLED)
            lc_future_cancel(fut);
        else if (r->status < 0)
            lc_future_set_error(fut, r->status);
        else
            lc_future_set_result(fut, r->result);
        lc_future_unref(fut);
        free(r);
        return;
    }
    /* The future was done first (its owner cancelled it): the outcome is dropped. */
    rie_drop_result(r);
    lc_future_unref(fut);
    if (r->watch_ran) {
        free(r);
        return;
    }
    /* The watcher is scheduled but has not run, and it uses r. Send r once more through the
     * inbound queue: the loop appends it behind the watcher, which therefore runs first. If the
     * loop closes before, close hands r back (LC_ECLOSED); the watcher is dropped unrun. */
    r->delivered = true;
    if (lc__work_redeliver(req) != 0)
        free(r);
}

/* The future is done before its outcome arrived (its owner cancelled it). Loop thread. */
static void rie_watch(lc_future_t *fut, void *arg)
{
    (void)fut;
    rie_t *r = arg;
    r->watch_ran = true;
    lc_work_cancel(&r->work);
}

int lc_loop_run_in_executor_dtor(lc_loop_t *loop, lc_executor_t *ex, lc_job_fn fn, void *arg,
                                 lc_result_dtor_fn dtor, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || fn == NULL || fut == NULL)
        return LC_EINVAL;
    int r = lc__executor_resolve(loop, &ex);
    if (r != 0)
        return r;
    rie_t *job = malloc(sizeof(*job));
    if (job == NULL)
        return LC_ENOMEM;
    lc_future_t *f;
    r = lc_loop_create_future(loop, &f);
    if (r != 0) {
        free(job);
        return r;
    }
    /* The first done callback is stored inline in the future: this cannot fail. */
    r = lc_future_add_done_callback(f, rie_watch, job);
    if (r != 0) {
        lc_future_unref(f);
        free(job);
        return r;
    }
    job->fn = fn;
    job->arg = arg;
    job->dtor = dtor;
    job->fut = lc_future_ref(f);
    job->result = NULL;
    job->status = 0;
    job->ran = job->watch_ran = job->delivered = false;
    r = lc__executor_queue_job(loop, ex, &job->work, rie_work, rie_after, rie_orphaned);
    if (r != 0) {
        lc_future_remove_done_callback(f, rie_watch, job);
        lc_future_unref(f); /* the job's */
        lc_future_unref(f); /* the caller's */
        free(job);
        return r;
    }
    *fut = f;
    return 0;
}

int lc_loop_run_in_executor(lc_loop_t *loop, lc_executor_t *ex, lc_job_fn fn, void *arg,
                            lc_future_t **fut)
{
    return lc_loop_run_in_executor_dtor(loop, ex, fn, arg, NULL, fut);
}
