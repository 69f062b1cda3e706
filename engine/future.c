/* Futures: result / error / cancelled, done callbacks scheduled through call_soon. */
#include <stdlib.h>
#include <string.h>

#include "engine/future_internal.h"

int lc_loop_create_future(lc_loop_t *loop, lc_future_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || out == NULL)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    int r = lc__loop_check_thread(loop, "create_future");
    if (r != 0)
        return r;
    lc_future_t *fut = loop->future_cache;
    if (fut != NULL) {
        /* A cached future keeps its callback array (a second done callback then costs no
         * allocation: run_in_executor's watcher plus the user's, for example). */
        lc__done_entry *more = fut->more;
        uint32_t cap = fut->cap_callbacks;
        loop->future_cache = *(lc_future_t **)fut;
        loop->future_cache_len--;
        memset(fut, 0, sizeof(*fut));
        fut->more = more;
        fut->cap_callbacks = cap;
    } else {
        fut = calloc(1, sizeof(*fut));
        if (fut == NULL)
            return LC_ENOMEM;
    }
    fut->loop = loop;
    fut->refs = 1;
    fut->state = LC__F_PENDING;
    lc__loop_ref(loop);
    *out = fut;
    return 0;
}

lc_future_t *lc_future_ref(lc_future_t *fut)
{
    if (fut != NULL)
        fut->refs++;
    return fut;
}

static void future_destroy(lc_future_t *fut)
{
    lc_loop_t *loop = fut->loop;
    if (fut->state == LC__F_ERROR && !fut->error_retrieved) {
        lc_exception_context_t ctx =
            LC_EXCEPTION_CONTEXT_INIT(fut->is_task ? "Task exception was never retrieved"
                                                   : "Future exception was never retrieved");
        ctx.error = fut->error;
        ctx.future = fut;
        /* The handler sees a future that is still whole; it must not keep a reference. */
        fut->refs = 1;
        lc_loop_call_exception_handler(loop, &ctx);
    }
    if (fut->result_dtor != NULL && fut->state == LC__F_RESULT)
        fut->result_dtor(fut->result);
    /* Plain futures go back to the loop's cache with their callback array (tasks are bigger
     * blocks: free()). The loop is alive here: this future holds a reference, dropped just
     * below. */
    if (!fut->is_task && loop->future_cache_len < LC__HANDLE_CACHE_MAX) {
        *(lc_future_t **)fut = loop->future_cache;
        loop->future_cache = fut;
        loop->future_cache_len++;
    } else {
        if (fut->more != NULL)
            free(fut->more);
        free(fut);
    }
    lc__loop_unref(loop);
}

void lc_future_unref(lc_future_t *fut)
{
    if (fut != NULL && --fut->refs == 0)
        future_destroy(fut);
}

/* Schedules every done callback in the order added and forgets them. */
static void schedule_callbacks(lc_future_t *fut)
{
    uint32_t n = fut->ncallbacks;
    fut->ncallbacks = 0;
    for (uint32_t i = 0; i < n; i++) {
        lc__done_entry e = i == 0 ? fut->first : fut->more[i - 1];
        int r;
        if (e.cb == lc__task_wakeup) /* a suspended task: see future_internal.h */
            r = fut->loop->closed ? LC_ECLOSED
                                  : lc__ready_put(fut->loop, lc__task_wakeup_run, e.arg);
        else
            r = lc__loop_schedule_done_cb(fut->loop, fut, e.cb, e.arg);
        if (r != 0 && r != LC_ECLOSED) {
            lc_exception_context_t ctx =
                LC_EXCEPTION_CONTEXT_INIT("Cannot schedule a future's done callback");
            ctx.error = r;
            ctx.future = fut;
            lc_loop_call_exception_handler(fut->loop, &ctx);
        }
    }
}

int lc__future_finish(lc_future_t *fut, uint8_t state, void *result, int err)
{
    if (fut->state != LC__F_PENDING)
        return LC_EINVALIDSTATE;
    int r = lc__loop_check_thread(fut->loop, "future");
    if (r != 0)
        return r;
    fut->state = state;
    fut->result = result;
    fut->error = err;
    schedule_callbacks(fut);
    return 0;
}

int lc_future_set_result(lc_future_t *fut, void *result)
{
    /* A task's outcome is its coroutine's (asyncio: "Task does not support set_result"). */
    if (fut == NULL || fut->is_task)
        return LC_EINVAL;
    return lc__future_finish(fut, LC__F_RESULT, result, 0);
}

int lc__future_set_result_owned(lc_future_t *fut, void *result, void (*dtor)(void *result))
{
    int r = lc__future_finish(fut, LC__F_RESULT, result, 0);
    if (r == 0)
        fut->result_dtor = dtor;
    return r;
}

int lc_future_set_error(lc_future_t *fut, int err)
{
    if (fut == NULL || err >= 0 || err == LC_ECANCELLED || fut->is_task)
        return LC_EINVAL;
    return lc__future_finish(fut, LC__F_ERROR, NULL, err);
}

int lc_future_cancel(lc_future_t *fut)
{
    if (fut == NULL)
        return LC_EINVAL;
    if (fut->is_task) /* Task.cancel(): delivered to the coroutine's await (engine/task.c) */
        return lc__task_cancel(fut);
    if (fut->state != LC__F_PENDING)
        return 0;
    int r = lc__future_finish(fut, LC__F_CANCELLED, NULL, LC_ECANCELLED);
    return r == 0 ? 1 : r;
}

bool lc_future_done(const lc_future_t *fut) { return fut != NULL && fut->state != LC__F_PENDING; }

bool lc_future_cancelled(const lc_future_t *fut)
{
    return fut != NULL && fut->state == LC__F_CANCELLED;
}

int lc_future_result(lc_future_t *fut, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (fut == NULL)
        return LC_EINVAL;
    switch (fut->state) {
    case LC__F_PENDING:
        return LC_EINVALIDSTATE;
    case LC__F_RESULT:
        if (result != NULL)
            *result = fut->result;
        return 0;
    case LC__F_ERROR:
        fut->error_retrieved = true;
        return fut->error;
    default:
        return LC_ECANCELLED;
    }
}

int lc_future_error(lc_future_t *fut, int *err)
{
    if (err != NULL)
        *err = 0;
    if (fut == NULL || err == NULL)
        return LC_EINVAL;
    switch (fut->state) {
    case LC__F_PENDING:
        return LC_EINVALIDSTATE;
    case LC__F_CANCELLED:
        return LC_ECANCELLED;
    case LC__F_ERROR:
        fut->error_retrieved = true;
        *err = fut->error;
        return 0;
    default:
        return 0;
    }
}

int lc_future_add_done_callback(lc_future_t *fut, lc_future_done_cb cb, void *arg)
{
    if (fut == NULL || cb == NULL)
        return LC_EINVAL;
    if (fut->state != LC__F_PENDING)
        return lc__loop_schedule_done_cb(fut->loop, fut, cb, arg);
    if (fut->ncallbacks == 0) {
        fut->first = (lc__done_entry){cb, arg};
    } else {
        uint32_t nmore = fut->ncallbacks - 1;
        if (nmore == fut->cap_callbacks) {
            uint32_t cap = fut->cap_callbacks ? fut->cap_callbacks * 2 : 4;
            lc__done_entry *more = realloc(fut->more, cap * sizeof(*more));
            if (more == NULL)
                return LC_ENOMEM;
            fut->more = more;
            fut->cap_callbacks = cap;
        }
        fut->more[nmore] = (lc__done_entry){cb, arg};
    }
    fut->ncallbacks++;
    return 0;
}

int lc_future_remove_done_callback(lc_future_t *fut, lc_future_done_cb cb, void *arg)
{
    if (fut == NULL || cb == NULL)
        return LC_EINVAL;
    uint32_t kept = 0, n = fut->ncallbacks;
    for (uint32_t i = 0; i < n; i++) {
        lc__done_entry e = i == 0 ? fut->first : fut->more[i - 1];
        if (e.cb == cb && e.arg == arg)
            continue;
        if (kept == 0)
            fut->first = e;
        else
            fut->more[kept - 1] = e;
        kept++;
    }
    fut->ncallbacks = kept;
    return (int)(n - kept);
}

lc_loop_t *lc_future_get_loop(const lc_future_t *fut) { return fut != NULL ? fut->loop : NULL; }
