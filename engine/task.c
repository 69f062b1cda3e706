/* Tasks: coroutines on fibers (engine/fiber.h) that await futures.
 *
 * A task is an lc__task whose first member is its future, so an lc_future_t * of a task points
 * at the task, and future_destroy()'s free() releases the whole of it. fut.is_task routes
 * lc_future_cancel() here and makes set_result / set_error refuse the task.
 *
 * States: CREATED (its start is queued with call_soon; it owns a fiber already, so create_task
 * reports a missing stack at once), RUNNING (on its fiber), SUSPENDED (in lc_await, a done
 * callback of the awaited future will resume it), DONE. Invariant: a SUSPENDED task has exactly
 * one way back: the done callback lc__task_wakeup() on the future it awaits, which future.c queues
 * as a plain ready-queue entry (lc__task_wakeup_run, no handle: see future_internal.h). Cancelling
 * does not add a second one, it cancels that future, whose callbacks then run; a cancellation that
 * comes after the future completed finds the wake-up already queued. So no wake-up is ever stale,
 * and no queued callback needs a reference to the task: a task cannot finish while it is suspended,
 * except through lc_loop_close(), which discards the queues first.
 *
 * A task holds a reference to itself from creation until its coroutine has returned, so it
 * stays alive while suspended even if nobody else holds it.
 *
 * Fibers are pooled per loop. A fiber runs fiber_main(), a loop: run the task in f->data, finish
 * it, put the fiber itself in the pool and suspend; the next task that takes it resumes it at
 * the top of the loop, with no new context to build. A fiber the pool does not want (full,
 * another stack size, the loop closing) exits, and whoever resumed it unmaps it. An idle pooled
 * fiber is retired by resuming it with f->data == NULL, so that it exits through its last switch
 * (which lets AddressSanitizer free its fake stack) instead of being unmapped mid-frame. */

/* The ucontext backend inlines _longjmp onto other stacks here (fiber.h), which the fortified
 * __longjmp_chk refuses. */
#if defined(LC_FIBER_UCONTEXT) || (!defined(__x86_64__) && !defined(__aarch64__))
#undef _FORTIFY_SOURCE
#endif

#include <math.h>
#include <stdlib.h>

#include "engine/fiber.h"
#include "engine/future_internal.h"

/* Default usable stack of a task. The sanitizers' frames are two to three times larger. */
#if defined(LC__FIBER_ASAN) || defined(LC__FIBER_TSAN)
#define DEFAULT_STACK_SIZE (256 * 1024)
#else
#define DEFAULT_STACK_SIZE (64 * 1024)
#endif
#define MAX_STACK_SIZE ((size_t)1 << 30)
/* Idle stacks kept per loop: a burst of up to this many concurrent tasks, repeated, maps
 * nothing. Each costs its touched pages (a few KiB) plus its address space. */
#define DEFAULT_POOL_MAX 256

enum { T_CREATED = 0, T_RUNNING, T_SUSPENDED, T_DONE };

typedef struct lc__task_s {
    lc_future_t fut; /* first: the task is this future */
    lc_coro_fn coro;
    void *arg;
    lc__fiber *fiber;        /* from creation until the coroutine returned */
    lc_future_t *awaiting;   /* SUSPENDED: the future of lc_await (a reference) */
    struct lc__task_s *prev; /* the loop's live tasks */
    struct lc__task_s *next;
    uint8_t state;       /* T_* */
    bool cancel_pending; /* lc_task_cancel() not yet delivered to an await */
    bool woken_by_close; /* resumed by lc_loop_close(): the await returns LC_ECLOSED */
} lc__task;

_Static_assert(offsetof(lc__task, fut) == 0, "a task's future must be its first member");

struct lc__tasks_s {
    lc__task *live; /* created and not finished, newest first */
    lc__fiber *pool;
    size_t pool_len;
    size_t pool_max;
    size_t stack_size;
    lc_task_stats_t stats;
};

/* The task running in this thread (NULL on the loop's own stack). Saved and restored around each
 * resume, so that a loop run from inside a task (another loop's close) nests correctly. */
static __thread lc__task *tls_task;

static size_t round_to_pages(size_t n)
{
    size_t page = lc__fiber_page_size();
    return (n + page - 1) / page * page;
}

static struct lc__tasks_s *tasks_get(lc_loop_t *loop)
{
    if (LC_LIKELY(loop->tasks != NULL))
        return loop->tasks;
    struct lc__tasks_s *ts = calloc(1, sizeof(*ts));
    if (ts == NULL)
        return NULL;
    ts->stack_size = round_to_pages(DEFAULT_STACK_SIZE);
    ts->pool_max = DEFAULT_POOL_MAX;
    loop->tasks = ts;
    return ts;
}

static void live_link(struct lc__tasks_s *ts, lc__task *t)
{
    t->prev = NULL;
    t->next = ts->live;
    if (t->next != NULL)
        t->next->prev = t;
    ts->live = t;
    ts->stats.tasks_live++;
}

static void live_unlink(struct lc__tasks_s *ts, lc__task *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        ts->live = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    ts->stats.tasks_live--;
}

/* ---- Fibers and the pool --------------------------------------------------------------------- */

static void fiber_main(lc__fiber *f);

/* Switches to t's fiber; returns when the task suspends or its fiber is done with it. Inlined,
 * like the switch, into each caller (fiber.h explains why). */
static inline __attribute__((always_inline)) void task_resume(lc__task *t)
{
    lc__task *prev = tls_task;
    lc__fiber *f = t->fiber;
    t->state = T_RUNNING;
    tls_task = t;
    bool exited = lc__fiber_resume(f);
    tls_task = prev;
    if (exited)
        lc__fiber_destroy(f);
}

/* Unmaps an idle fiber (pooled, or never given a task): it exits through its last switch. */
static void fiber_retire(lc__fiber *f)
{
    f->data = NULL;
    if (lc__fiber_resume(f))
        lc__fiber_destroy(f);
}

static inline bool pool_wants(const struct lc__tasks_s *ts, const lc__fiber *f)
{
    return ts->pool_len < ts->pool_max && f->stack_size == ts->stack_size;
}

static inline void pool_push(struct lc__tasks_s *ts, lc__fiber *f)
{
    f->next = ts->pool;
    ts->pool = f;
    ts->pool_len++;
}

/* Puts an idle fiber back, or retires it. */
static void fiber_put(struct lc__tasks_s *ts, lc__fiber *f)
{
    f->data = NULL;
    if (pool_wants(ts, f))
        pool_push(ts, f);
    else
        fiber_retire(f);
}

static int fiber_get(struct lc__tasks_s *ts, lc__fiber **out)
{
    lc__fiber *f = ts->pool;
    if (LC_LIKELY(f != NULL)) {
        ts->pool = f->next;
        ts->pool_len--;
        ts->stats.stacks_reused++;
        *out = f;
        return 0;
    }
    int r = lc__fiber_create(&f, ts->stack_size, fiber_main, NULL);
    if (r != 0)
        return LC_ENOMEM;
    ts->stats.stacks_mapped++;
    *out = f;
    return 0;
}

/* Retires idle fibers until at most keep remain. */
static void pool_trim(struct lc__tasks_s *ts, size_t keep)
{
    while (ts->pool_len > keep) {
        lc__fiber *f = ts->pool;
        ts->pool = f->next;
        ts->pool_len--;
        fiber_retire(f);
    }
}

/* ---- Running and finishing ------------------------------------------------------------------- */

/* Sets the task's outcome from its coroutine's and takes it off the live list. */
static void task_finish(struct lc__tasks_s *ts, lc__task *t, int rc, void *result)
{
    uint8_t state = LC__F_RESULT;
    int err = 0;
    if (rc == LC_ECANCELLED || (rc >= 0 && t->cancel_pending)) {
        /* asyncio: a CancelledError that escapes, or a cancel() the coroutine never saw. */
        state = LC__F_CANCELLED;
        err = LC_ECANCELLED;
        result = NULL;
    } else if (rc < 0) {
        state = LC__F_ERROR;
        err = rc;
        result = NULL;
    }
    t->state = T_DONE;
    t->fiber = NULL;
    t->cancel_pending = false;
    live_unlink(ts, t);
    lc__future_finish(&t->fut, state, result, err);
}

/* The body of every fiber (see the file comment). */
static void fiber_main(lc__fiber *f)
{
    for (;;) {
        lc__task *t = f->data;
        if (t == NULL)
            lc__fiber_exit(f); /* retired */
        void *result = NULL;
        int rc = t->coro(t->arg, &result);
        tls_task = NULL; /* the task is over; its resumer restores its own */
        struct lc__tasks_s *ts = t->fut.loop->tasks;
        task_finish(ts, t, rc, result);
        f->data = NULL;
        /* The task's reference to itself. The loop outlives this: the caller of run or close
         * holds it. This may free t, and report an error nobody retrieved, on this stack. */
        lc_future_unref(&t->fut);
        if (!pool_wants(ts, f))
            lc__fiber_exit(f); /* our resumer unmaps us */
        pool_push(ts, f);
        lc__fiber_suspend(f); /* until a new task takes this fiber, or the pool retires it */
    }
}

static void task_start(void *arg)
{
    lc__task *t = arg;
    if (LC_UNLIKELY(t->cancel_pending)) {
        /* Cancelled before it started: the coroutine never runs (asyncio throws CancelledError
         * into it before its first line). */
        lc_loop_t *loop = t->fut.loop;
        struct lc__tasks_s *ts = loop->tasks;
        lc__fiber *f = t->fiber;
        task_finish(ts, t, LC_ECANCELLED, NULL);
        fiber_put(ts, f);
        lc_future_unref(&t->fut);
        return;
    }
    task_resume(t);
}

/* The done callback of the future a task awaits: resumes the task. future.c recognises it and
 * queues lc__task_wakeup_run(task) instead (future_internal.h); it is called as a done callback
 * only if someone else registered it. */
void lc__task_wakeup(lc_future_t *fut, void *arg)
{
    (void)fut;
    task_resume(arg);
}

void lc__task_wakeup_run(void *task) { task_resume(task); }

/* ---- Creating -------------------------------------------------------------------------------- */

int lc_task_create(lc_loop_t *loop, lc_coro_fn coro, void *arg, lc_future_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || coro == NULL || out == NULL)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    int r = lc__loop_check_thread(loop, "create_task");
    if (r != 0)
        return r;
    struct lc__tasks_s *ts = tasks_get(loop);
    if (ts == NULL)
        return LC_ENOMEM;
    lc__task *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return LC_ENOMEM;
    lc__fiber *f;
    r = fiber_get(ts, &f);
    if (r != 0) {
        free(t);
        return r;
    }
    r = lc_loop_call_soon(loop, task_start, t, NULL);
    if (r != 0) {
        fiber_put(ts, f);
        free(t);
        return r;
    }
    /* The future part, as lc_loop_create_future() makes it; two references: the caller's, and
     * the task's own until its coroutine has returned. */
    t->fut.loop = loop;
    t->fut.refs = 2;
    t->fut.state = LC__F_PENDING;
    t->fut.is_task = true;
    lc__loop_ref(loop);
    t->coro = coro;
    t->arg = arg;
    t->fiber = f;
    f->data = t;
    t->state = T_CREATED;
    live_link(ts, t);
    ts->stats.tasks_created++;
    *out = &t->fut;
    return 0;
}

int lc_loop_create_task(lc_loop_t *loop, lc_coro_fn coro, void *arg, lc_future_t **task)
{
    if (task != NULL)
        *task = NULL;
    if (loop == NULL || coro == NULL || task == NULL)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    if (loop->task_factory != NULL)
        return loop->task_factory(loop, coro, arg, loop->task_factory_arg, task);
    return lc_task_create(loop, coro, arg, task);
}

/* ---- Inside a task --------------------------------------------------------------------------- */

/* Inline fast paths of the future calls lc_await makes at every suspension (future.c is another
 * translation unit); each does what the public call does, and calls it off the fast path. */
static inline int add_wakeup(lc_future_t *fut, lc__task *t)
{
    if (LC_LIKELY(fut->ncallbacks == 0)) {
        fut->first = (lc__done_entry){lc__task_wakeup, t};
        fut->ncallbacks = 1;
        return 0;
    }
    return lc_future_add_done_callback(fut, lc__task_wakeup, t);
}

static inline void fut_unref(lc_future_t *fut)
{
    if (LC_LIKELY(fut->refs > 1))
        fut->refs--;
    else
        lc_future_unref(fut);
}

static inline int fut_result(lc_future_t *fut, void **result)
{
    if (LC_LIKELY(fut->state == LC__F_RESULT)) {
        if (result != NULL)
            *result = fut->result;
        return 0;
    }
    return lc_future_result(fut, result);
}

int lc_await(lc_future_t *fut, void **result)
{
    if (result != NULL)
        *result = NULL;
    lc__task *t = tls_task;
    if (LC_UNLIKELY(t == NULL))
        return LC_ENOTTASK;
    if (LC_UNLIKELY(fut == NULL || fut == &t->fut))
        return LC_EINVAL; /* awaiting itself would never wake */
    lc_loop_t *loop = t->fut.loop;
    if (LC_UNLIKELY(fut->loop != loop))
        return LC_EWRONGLOOP;
    if (LC_UNLIKELY(loop->closed))
        return LC_ECLOSED;
    if (LC_UNLIKELY(t->cancel_pending)) {
        t->cancel_pending = false;
        return LC_ECANCELLED;
    }
    if (fut->state != LC__F_PENDING)
        return lc_future_result(fut, result); /* asyncio: a done future does not suspend */
    int r = add_wakeup(fut, t);
    if (LC_UNLIKELY(r != 0))
        return r;
    fut->refs++; /* lc_future_ref */
    t->awaiting = fut;
    t->state = T_SUSPENDED;
    lc__fiber_suspend(t->fiber);
    /* Resumed by lc__task_wakeup_run(), or by lc__tasks_close(). */
    t->awaiting = NULL;
    if (LC_UNLIKELY(t->woken_by_close)) {
        t->woken_by_close = false;
        lc_future_remove_done_callback(fut, lc__task_wakeup, t);
        r = LC_ECLOSED;
    } else if (LC_UNLIKELY(t->cancel_pending)) {
        t->cancel_pending = false;
        r = LC_ECANCELLED;
    } else {
        r = fut_result(fut, result);
    }
    fut_unref(fut);
    return r;
}

static void sleep_fire(void *arg) { lc_future_set_result(arg, NULL); }

int lc_sleep(double seconds)
{
    lc__task *t = tls_task;
    if (t == NULL)
        return LC_ENOTTASK;
    if (isnan(seconds))
        return LC_EINVAL;
    lc_loop_t *loop = t->fut.loop;
    if (loop->closed)
        return LC_ECLOSED;
    if (t->cancel_pending) {
        t->cancel_pending = false;
        return LC_ECANCELLED;
    }
    /* A future that a timer completes, awaited: cancelling the task cancels the future (see
     * lc__task_cancel) and the timer is cancelled on the way out. The timer's argument is the
     * future without a reference of its own: the timer either ran or is cancelled (or was
     * discarded by close) before this frame drops the future. */
    lc_future_t *fut;
    int r = lc_loop_create_future(loop, &fut);
    if (r != 0)
        return r;
    lc_handle_t *h;
    r = seconds > 0 ? lc_loop_call_later(loop, seconds, sleep_fire, fut, &h)
                    : lc_loop_call_soon(loop, sleep_fire, fut, &h);
    if (r == 0) {
        r = lc_await(fut, NULL);
        lc_handle_cancel(h);
        lc_handle_unref(h);
    }
    lc_future_unref(fut);
    return r;
}

lc_future_t *lc_current_task(void) { return tls_task != NULL ? &tls_task->fut : NULL; }

/* ---- Task methods ---------------------------------------------------------------------------- */

int lc__task_cancel(lc_future_t *fut)
{
    lc__task *t = (lc__task *)fut;
    if (t->state == T_DONE)
        return 0;
    int r = lc__loop_check_thread(fut->loop, "task_cancel");
    if (r != 0)
        return r;
    t->cancel_pending = true;
    /* Suspended: cancel what it awaits (asyncio cancels the task's _fut_waiter), whose done
     * callbacks, task_wakeup among them, then run. A task it awaits gets the request in turn,
     * and this task waits for that one to finish its cleanup. */
    if (t->state == T_SUSPENDED && t->awaiting != NULL)
        lc_future_cancel(t->awaiting);
    return 1;
}

int lc_task_cancel(lc_future_t *task)
{
    if (task == NULL)
        return LC_EINVAL;
    if (!task->is_task)
        return lc_future_cancel(task);
    return lc__task_cancel(task);
}

bool lc_future_is_task(const lc_future_t *fut) { return fut != NULL && fut->is_task; }

size_t lc_loop_all_tasks(const lc_loop_t *loop, lc_future_t **tasks, size_t cap)
{
    if (loop == NULL || loop->tasks == NULL)
        return 0;
    size_t n = 0;
    for (lc__task *t = loop->tasks->live; t != NULL; t = t->next, n++)
        if (tasks != NULL && n < cap)
            tasks[n] = &t->fut;
    return n;
}

/* ---- Settings and statistics ----------------------------------------------------------------- */

int lc_loop_set_task_stack_size(lc_loop_t *loop, size_t bytes)
{
    if (loop == NULL || loop->closed || bytes < LC_TASK_STACK_SIZE_MIN || bytes > MAX_STACK_SIZE)
        return LC_EINVAL;
    struct lc__tasks_s *ts = tasks_get(loop);
    if (ts == NULL)
        return LC_ENOMEM;
    size_t size = round_to_pages(bytes);
    if (size != ts->stack_size) {
        ts->stack_size = size;
        pool_trim(ts, 0); /* fibers in use are retired when their task ends */
    }
    return 0;
}

size_t lc_loop_get_task_stack_size(const lc_loop_t *loop)
{
    if (loop != NULL && loop->tasks != NULL)
        return loop->tasks->stack_size;
    return round_to_pages(DEFAULT_STACK_SIZE);
}

int lc_loop_set_task_stack_pool_max(lc_loop_t *loop, size_t max)
{
    if (loop == NULL || loop->closed)
        return LC_EINVAL;
    struct lc__tasks_s *ts = tasks_get(loop);
    if (ts == NULL)
        return LC_ENOMEM;
    ts->pool_max = max;
    pool_trim(ts, max);
    return 0;
}

size_t lc_loop_get_task_stack_pool_max(const lc_loop_t *loop)
{
    if (loop != NULL && loop->tasks != NULL)
        return loop->tasks->pool_max;
    return DEFAULT_POOL_MAX;
}

int lc_loop_get_task_stats(const lc_loop_t *loop, lc_task_stats_t *stats)
{
    if (loop == NULL || stats == NULL)
        return LC_EINVAL;
    if (loop->tasks == NULL) {
        *stats = (lc_task_stats_t){0};
        return 0;
    }
    *stats = loop->tasks->stats;
    stats->stacks_idle = loop->tasks->pool_len;
    return 0;
}

/* ---- Closing the loop ------------------------------------------------------------------------ */

void lc__tasks_close(lc_loop_t *loop)
{
    struct lc__tasks_s *ts = loop->tasks;
    /* Every queued start and wake-up was discarded, and nothing can be scheduled any more, so
     * each task resumed here runs to its end: its awaits return LC_ECLOSED at once. */
    while (ts->live != NULL) {
        lc__task *t = ts->live;
        if (t->state == T_CREATED) {
            t->cancel_pending = true; /* not started: cancelled without running */
            task_start(t);
            continue;
        }
        if (t->state == T_RUNNING)
            abort(); /* impossible: close refuses a running loop */
        t->woken_by_close = true;
        task_resume(t);
    }
    pool_trim(ts, 0);
    loop->tasks = NULL;
    free(ts);
}
