/* The event loop: run/stop/close, the ready queue, the timer heap, handles.
 *
 * One iteration (lc__run_once) is:
 *   1. run the ready batch: exactly the callbacks that were queued when the batch started;
 *      callbacks they queue wait for the next iteration (asyncio's ntodo rule);
 *   2. unless stop() was called during that batch, poll libuv: with timeout 0 if callbacks are
 *      ready or a stop is pending, else until the earliest timer (rounded up to whole ms, so a
 *      timer is never woken early; capped at one day); I/O callbacks run inside the poll;
 *   3. run every timer whose when <= now, in (when, seq) order; a timer cancelled before its turn
 *      in this step does not run.
 * This gives asyncio's order: ready callbacks, then I/O, then due timers (behaviour rules 1a, 1b,
 * 2a, 2b, 3b, 5d). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/internal.h"

static __thread lc_loop_t *tls_running;   /* the loop running in this thread */
static __thread lc_loop_t *tls_current;   /* set_event_loop / get_event_loop */
static __thread bool tls_current_was_set; /* set_event_loop was called in this thread */

double lc__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- Handles --------------------------------------------------------------------------------- */

static lc_handle_t *handle_alloc(lc_loop_t *loop)
{
    lc_handle_t *h = loop->handle_cache;
    if (h != NULL) {
        loop->handle_cache = h->next;
        loop->handle_cache_len--;
    } else {
        h = malloc(sizeof(*h));
        if (h == NULL)
            return NULL;
    }
    return h;
}

/* Frees a handle whose last reference is gone. The loop pointer is only used to reach the cache
 * when the loop still exists and is open: handles the user releases after close go to free(). */
static void handle_free(lc_handle_t *h, lc_loop_t *loop)
{
    if (loop != NULL && loop->handle_cache_len < LC__HANDLE_CACHE_MAX) {
        h->next = loop->handle_cache;
        loop->handle_cache = h;
        loop->handle_cache_len++;
    } else {
        free(h);
    }
}

/* Drops the loop's reference to a handle it no longer queues. */
static void handle_loop_unref(lc_loop_t *loop, lc_handle_t *h)
{
    if (h->kind == LC__K_DONE_CB) {
        lc_future_t *fut = h->fut;
        h->fut = NULL;
        lc_future_unref(fut);
    }
    if (--h->refs == 0)
        handle_free(h, loop);
}

static int handle_new(lc_loop_t *loop, lc__handle_kind kind, lc_handle_t **out_user,
                      lc_handle_t **out)
{
    lc_handle_t *h = handle_alloc(loop);
    if (LC_UNLIKELY(h == NULL))
        return LC_ENOMEM;
    h->next = NULL;
    h->loop = loop;
    h->arg = NULL;
    h->fut = NULL;
    h->kind = (uint8_t)kind;
    h->cancelled = false;
    h->refs = 1;
    if (out_user != NULL) {
        h->refs = 2;
        *out_user = h;
    }
    *out = h;
    return 0;
}

/* ---- Ready queue ----------------------------------------------------------------------------- */

static inline void ready_push(lc_loop_t *loop, lc_handle_t *h)
{
    h->state = LC__H_READY;
    h->next = NULL;
    if (loop->ready_tail != NULL)
        loop->ready_tail->next = h;
    else
        loop->ready_head = h;
    loop->ready_tail = h;
}

/* ---- Timer heap: binary min-heap on (when, seq); each handle knows its index ------------------
 */

static inline bool timer_less(const lc_handle_t *a, const lc_handle_t *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_place(lc_loop_t *loop, uint32_t i, lc_handle_t *h)
{
    loop->heap[i] = h;
    h->heap_idx = i;
}

static void heap_sift_up(lc_loop_t *loop, uint32_t i, lc_handle_t *h)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        lc_handle_t *p = loop->heap[parent];
        if (!timer_less(h, p))
            break;
        heap_place(loop, i, p);
        i = parent;
    }
    heap_place(loop, i, h);
}

static void heap_sift_down(lc_loop_t *loop, uint32_t i, lc_handle_t *h)
{
    uint32_t n = loop->heap_len;
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && timer_less(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_less(loop->heap[child], h))
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, h);
}

static int heap_push(lc_loop_t *loop, lc_handle_t *h)
{
    if (loop->heap_len == loop->heap_cap) {
        uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        lc_handle_t **heap = realloc(loop->heap, (size_t)cap * sizeof(*heap));
        if (heap == NULL)
            return LC_ENOMEM;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    heap_sift_up(loop, loop->heap_len++, h);
    return 0;
}

/* Shrinks the array when it is mostly empty, so a million cancelled timers leave no memory behind.
 */
static void heap_maybe_shrink(lc_loop_t *loop)
{
    if (loop->heap_cap > 64 && loop->heap_len < loop->heap_cap / 4) {
        uint32_t cap = loop->heap_cap / 2;
        lc_handle_t **heap = realloc(loop->heap, (size_t)cap * sizeof(*heap));
        if (heap != NULL) {
            loop->heap = heap;
            loop->heap_cap = cap;
        }
    }
}

static void heap_remove(lc_loop_t *loop, lc_handle_t *h)
{
    uint32_t i = h->heap_idx;
    lc_handle_t *last = loop->heap[--loop->heap_len];
    if (i != loop->heap_len) {
        /* Put the last element in the hole and restore the order in whichever direction. */
        if (i > 0 && timer_less(last, loop->heap[(i - 1) / 2]))
            heap_sift_up(loop, i, last);
        else
            heap_sift_down(loop, i, last);
    }
    heap_maybe_shrink(loop);
}

static lc_handle_t *heap_pop(lc_loop_t *loop)
{
    lc_handle_t *top = loop->heap[0];
    lc_handle_t *last = loop->heap[--loop->heap_len];
    if (loop->heap_len > 0)
        heap_sift_down(loop, 0, last);
    return top;
}

/* ---- Loop lifecycle -------------------------------------------------------------------------- */

static bool env_debug(void)
{
    const char *v = getenv("LOOPCORE_DEBUG");
    return v != NULL && v[0] != '\0';
}

int lc_new_event_loop(lc_loop_t **out)
{
    if (out == NULL)
        return LC_EINVAL;
    *out = NULL;
    lc_loop_t *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return LC_ENOMEM;
    int r = uv_loop_init(&loop->uv);
    if (r != 0) {
        free(loop);
        return r;
    }
    uv_timer_init(&loop->uv, &loop->poll_timer);
    loop->uv.data = loop;
    loop->debug = env_debug();
    loop->slow_callback_duration = 0.1;
    loop->refs = 1;
    atomic_init(&loop->running, false);
    atomic_init(&loop->thread, 0);
    *out = loop;
    return 0;
}

void lc__loop_ref(lc_loop_t *loop) { loop->refs++; }

static void loop_destroy(lc_loop_t *loop)
{
    lc_handle_t *h = loop->handle_cache;
    while (h != NULL) {
        lc_handle_t *next = h->next;
        free(h);
        h = next;
    }
    free(loop);
}

void lc__loop_unref(lc_loop_t *loop)
{
    if (--loop->refs == 0)
        loop_destroy(loop);
}

bool lc_loop_is_running(const lc_loop_t *loop)
{
    /* relaxed: a snapshot for callers on any thread; nothing else is published through it. */
    return loop != NULL && atomic_load_explicit(&loop->running, memory_order_relaxed);
}

bool lc_loop_is_closed(const lc_loop_t *loop) { return loop != NULL && loop->closed; }

static void discard_handle(lc_loop_t *loop, lc_handle_t *h)
{
    /* asyncio rule 6b: not marked cancelled, but never runs. */
    h->state = LC__H_DROPPED;
    h->cb.fn = NULL;
    h->arg = NULL;
    handle_loop_unref(loop, h);
}

int lc_loop_close(lc_loop_t *loop)
{
    if (loop == NULL)
        return LC_EINVAL;
    if (lc_loop_is_running(loop))
        return LC_ERUNNING;
    if (loop->closed)
        return 0;
    loop->closed = true;
    /* Discarding a done callback drops a future reference, and freeing a failed future may call
     * the exception handler, which may schedule nothing (the loop is closed): the queues only
     * shrink here. */
    while (loop->ready_head != NULL) {
        lc_handle_t *h = loop->ready_head;
        loop->ready_head = h->next;
        if (loop->ready_head == NULL)
            loop->ready_tail = NULL;
        discard_handle(loop, h);
    }
    while (loop->heap_len > 0)
        discard_handle(loop, loop->heap[--loop->heap_len]);
    free(loop->heap);
    loop->heap = NULL;
    loop->heap_cap = 0;

    uv_close((uv_handle_t *)&loop->poll_timer, NULL);
    /* Let libuv finish closing its handles (ours and any a later layer left closing). */
    while (uv_loop_close(&loop->uv) == UV_EBUSY)
        uv_run(&loop->uv, UV_RUN_NOWAIT);
    return 0;
}

int lc_loop_free(lc_loop_t *loop)
{
    if (loop == NULL)
        return LC_EINVAL;
    if (lc_loop_is_running(loop))
        return LC_ERUNNING;
    lc_loop_close(loop);
    if (tls_current == loop)
        tls_current = NULL;
    lc__loop_unref(loop);
    return 0;
}

/* ---- Obtaining the loop ---------------------------------------------------------------------- */

int lc_get_running_loop(lc_loop_t **out)
{
    if (out == NULL)
        return LC_EINVAL;
    *out = tls_running;
    return tls_running != NULL ? 0 : LC_ENORUNNINGLOOP;
}

int lc_get_event_loop(lc_loop_t **out)
{
    if (out == NULL)
        return LC_EINVAL;
    *out = NULL;
    if (tls_running != NULL) {
        *out = tls_running;
        return 0;
    }
    if (tls_current == NULL) {
        if (tls_current_was_set)
            return LC_ENOCURRENTLOOP;
        int r = lc_new_event_loop(&tls_current);
        if (r != 0)
            return r;
        tls_current_was_set = true;
    }
    *out = tls_current;
    return 0;
}

int lc_set_event_loop(lc_loop_t *loop)
{
    if (loop != NULL && loop->closed)
        return LC_ECLOSED;
    tls_current = loop;
    tls_current_was_set = true;
    return 0;
}

/* ---- Debug mode ------------------------------------------------------------------------------ */

int lc__loop_check_thread_slow(lc_loop_t *loop, const char *what)
{
    /* relaxed: a foreign thread only needs some recent value; a stale "not running" lets one
     * racing call through, which is what asyncio's own check does as well. */
    if (!atomic_load_explicit(&loop->running, memory_order_relaxed))
        return 0;
    unsigned long owner = atomic_load_explicit(&loop->thread, memory_order_relaxed);
    if ((unsigned long)pthread_self() == owner)
        return 0;
    char msg[192];
    snprintf(msg, sizeof(msg),
             "Non-thread-safe operation invoked on an event loop other than the current one (%s)",
             what);
    lc_exception_context_t ctx = LC_EXCEPTION_CONTEXT_INIT(msg);
    ctx.error = LC_EWRONGTHREAD;
    lc_loop_call_exception_handler(loop, &ctx);
    return LC_EWRONGTHREAD;
}

bool lc_loop_get_debug(const lc_loop_t *loop) { return loop != NULL && loop->debug; }

int lc_loop_set_debug(lc_loop_t *loop, bool enabled)
{
    if (loop == NULL)
        return LC_EINVAL;
    loop->debug = enabled;
    return 0;
}

double lc_loop_get_slow_callback_duration(const lc_loop_t *loop)
{
    return loop != NULL ? loop->slow_callback_duration : 0.1;
}

int lc_loop_set_slow_callback_duration(lc_loop_t *loop, double seconds)
{
    if (loop == NULL || !(seconds >= 0) || isinf(seconds))
        return LC_EINVAL;
    loop->slow_callback_duration = seconds;
    return 0;
}

static void log_slow_callback(lc_loop_t *loop, const lc_handle_t *h, double dt)
{
    (void)loop;
    const char *kind = h->kind == LC__K_TIMER     ? "TimerHandle"
                       : h->kind == LC__K_DONE_CB ? "Handle done_cb"
                                                  : "Handle";
    void *fn = h->kind == LC__K_DONE_CB ? (void *)h->cb.done_cb : (void *)h->cb.fn;
    fprintf(stderr, "loopcore: Executing <%s fn=%p arg=%p> took %.3f seconds\n", kind, fn, h->arg,
            dt);
}

/* ---- Scheduling ------------------------------------------------------------------------------ */

double lc_loop_time(const lc_loop_t *loop)
{
    (void)loop;
    return lc__now();
}

int lc_loop_call_soon(lc_loop_t *loop, lc_call_fn fn, void *arg, lc_handle_t **handle)
{
    if (handle != NULL)
        *handle = NULL;
    if (LC_UNLIKELY(loop == NULL || fn == NULL))
        return LC_EINVAL;
    if (LC_UNLIKELY(loop->closed))
        return LC_ECLOSED;
    int r = lc__loop_check_thread(loop, "call_soon");
    if (r != 0)
        return r;
    lc_handle_t *h;
    r = handle_new(loop, LC__K_CALL, handle, &h);
    if (LC_UNLIKELY(r != 0))
        return r;
    h->cb.fn = fn;
    h->arg = arg;
    ready_push(loop, h);
    return 0;
}

int lc__loop_schedule_done_cb(lc_loop_t *loop, lc_future_t *fut, lc_future_done_cb cb, void *arg)
{
    if (loop->closed)
        return LC_ECLOSED;
    lc_handle_t *h;
    int r = handle_new(loop, LC__K_DONE_CB, NULL, &h);
    if (r != 0)
        return r;
    h->cb.done_cb = cb;
    h->arg = arg;
    h->fut = lc_future_ref(fut);
    ready_push(loop, h);
    return 0;
}

int lc_loop_call_at(lc_loop_t *loop, double when, lc_call_fn fn, void *arg, lc_handle_t **handle)
{
    if (handle != NULL)
        *handle = NULL;
    if (LC_UNLIKELY(loop == NULL || fn == NULL || isnan(when)))
        return LC_EINVAL;
    if (LC_UNLIKELY(loop->closed))
        return LC_ECLOSED;
    int r = lc__loop_check_thread(loop, "call_at");
    if (r != 0)
        return r;
    lc_handle_t *h;
    r = handle_new(loop, LC__K_TIMER, handle, &h);
    if (LC_UNLIKELY(r != 0))
        return r;
    h->cb.fn = fn;
    h->arg = arg;
    h->when = when;
    h->seq = loop->timer_seq++;
    h->state = LC__H_TIMER;
    r = heap_push(loop, h);
    if (LC_UNLIKELY(r != 0)) {
        if (handle != NULL)
            *handle = NULL;
        h->refs = 1;
        h->state = LC__H_DROPPED;
        handle_loop_unref(loop, h);
        return r;
    }
    return 0;
}

int lc_loop_call_later(lc_loop_t *loop, double delay, lc_call_fn fn, void *arg,
                       lc_handle_t **handle)
{
    if (LC_UNLIKELY(isnan(delay))) {
        if (handle != NULL)
            *handle = NULL;
        return LC_EINVAL;
    }
    return lc_loop_call_at(loop, lc__now() + delay, fn, arg, handle);
}

int lc_handle_cancel(lc_handle_t *h)
{
    if (h == NULL)
        return LC_EINVAL;
    if (h->cancelled)
        return 0;
    h->cancelled = true;
    switch (h->state) {
    case LC__H_TIMER: {
        /* Out of the heap at once, so cancelled timers cost no memory and no heap work later. */
        lc_loop_t *loop = h->loop;
        heap_remove(loop, h);
        h->state = LC__H_DROPPED;
        h->cb.fn = NULL;
        h->arg = NULL;
        handle_loop_unref(loop, h);
        break;
    }
    case LC__H_READY:
    case LC__H_DUE:
        /* Skipped (and released) when its turn comes; the queue is singly linked. */
        break;
    default:
        break; /* ran or dropped: nothing to do */
    }
    return 0;
}

bool lc_handle_cancelled(const lc_handle_t *h) { return h != NULL && h->cancelled; }

int lc_handle_when(const lc_handle_t *h, double *when)
{
    if (h == NULL || when == NULL || h->kind != LC__K_TIMER)
        return LC_EINVAL;
    *when = h->when;
    return 0;
}

void lc_handle_release(lc_handle_t *h)
{
    if (h == NULL)
        return;
    if (--h->refs == 0) {
        /* The loop already dropped its reference, so h is out of every queue; the loop itself
         * may be closed or freed: do not touch it. */
        free(h);
    }
}

/* ---- Running --------------------------------------------------------------------------------- */

static inline void run_handle(lc_loop_t *loop, lc_handle_t *h)
{
    if (h->cancelled) {
        h->state = LC__H_DROPPED;
        handle_loop_unref(loop, h);
        return;
    }
    h->state = LC__H_RAN;
    double t0 = 0;
    if (LC_UNLIKELY(loop->debug))
        t0 = lc__now();
    if (h->kind == LC__K_DONE_CB)
        h->cb.done_cb(h->fut, h->arg);
    else
        h->cb.fn(h->arg);
    if (LC_UNLIKELY(loop->debug)) {
        double dt = lc__now() - t0;
        if (dt >= loop->slow_callback_duration)
            log_slow_callback(loop, h, dt);
    }
    handle_loop_unref(loop, h);
}

static void run_ready_batch(lc_loop_t *loop)
{
    /* Detach the whole queue: what runs now is fixed; new callbacks go to a fresh queue. */
    lc_handle_t *h = loop->ready_head;
    loop->ready_head = loop->ready_tail = NULL;
    while (h != NULL) {
        lc_handle_t *next = h->next;
        run_handle(loop, h);
        h = next;
    }
}

static void run_due_timers(lc_loop_t *loop)
{
    if (loop->heap_len == 0)
        return;
    double now = lc__now();
    /* Take every due timer off the heap first, in order; timers scheduled by these callbacks
     * (even with when <= now) wait for the next iteration. */
    lc_handle_t *head = NULL, *tail = NULL;
    while (loop->heap_len > 0 && loop->heap[0]->when <= now) {
        lc_handle_t *h = heap_pop(loop);
        h->state = LC__H_DUE;
        h->next = NULL;
        if (tail != NULL)
            tail->next = h;
        else
            head = h;
        tail = h;
    }
    heap_maybe_shrink(loop);
    while (head != NULL) {
        lc_handle_t *next = head->next;
        run_handle(loop, head);
        head = next;
    }
}

static void poll_timer_cb(uv_timer_t *t) { (void)t; }

static void poll_io(lc_loop_t *loop)
{
    uint64_t timeout_ms;
    if (loop->ready_head != NULL || loop->stopping) {
        timeout_ms = 0;
    } else if (loop->heap_len == 0) {
        timeout_ms = LC__MAX_POLL_MS;
    } else {
        double d = loop->heap[0]->when - lc__now();
        if (d <= 0)
            timeout_ms = 0;
        else if (d >= LC__MAX_POLL_MS / 1000.0)
            timeout_ms = LC__MAX_POLL_MS;
        else
            timeout_ms = (uint64_t)ceil(d * 1000.0); /* round up: never wake before when */
    }
    if (timeout_ms == 0) {
        uv_run(&loop->uv, UV_RUN_NOWAIT);
    } else {
        uv_timer_start(&loop->poll_timer, poll_timer_cb, timeout_ms, 0);
        uv_run(&loop->uv, UV_RUN_ONCE);
        uv_timer_stop(&loop->poll_timer);
    }
}

int lc_loop_run_forever(lc_loop_t *loop)
{
    if (loop == NULL)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    if (lc_loop_is_running(loop))
        return LC_ERUNNING;
    if (tls_running != NULL)
        return LC_EOTHERLOOP;

    tls_running = loop;
    /* relaxed: the owner id is only compared by debug-mode checks on other threads. */
    atomic_store_explicit(&loop->thread, (unsigned long)pthread_self(), memory_order_relaxed);
    atomic_store_explicit(&loop->running, true, memory_order_relaxed);

    for (;;) {
        bool stop_before = loop->stopping;
        run_ready_batch(loop);
        if (loop->stopping && !stop_before)
            break; /* stop() in this batch: no further poll (rule 2b) */
        poll_io(loop);
        run_due_timers(loop);
        if (loop->stopping)
            break;
    }

    loop->stopping = false;
    atomic_store_explicit(&loop->running, false, memory_order_relaxed);
    atomic_store_explicit(&loop->thread, 0, memory_order_relaxed);
    tls_running = NULL;
    return 0;
}

int lc_loop_stop(lc_loop_t *loop)
{
    if (loop == NULL)
        return LC_EINVAL;
    if (!loop->closed)
        loop->stopping = true;
    return 0;
}

static void run_until_complete_cb(lc_future_t *fut, void *arg)
{
    (void)arg;
    lc_loop_stop(lc_future_get_loop(fut));
}

int lc_loop_run_until_complete(lc_loop_t *loop, lc_future_t *fut, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (loop == NULL || fut == NULL)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    if (lc_future_get_loop(fut) != loop)
        return LC_EWRONGLOOP;
    if (lc_loop_is_running(loop))
        return LC_ERUNNING;
    if (tls_running != NULL)
        return LC_EOTHERLOOP;

    lc_future_ref(fut);
    int r = lc_future_add_done_callback(fut, run_until_complete_cb, NULL);
    if (r == 0)
        r = lc_loop_run_forever(loop);
    lc_future_remove_done_callback(fut, run_until_complete_cb, NULL);
    if (r == 0)
        r = lc_future_done(fut) ? lc_future_result(fut, result) : LC_ESTOPPED;
    lc_future_unref(fut);
    return r;
}

/* ---- Task factory hook ----------------------------------------------------------------------- */

int lc_loop_set_task_factory(lc_loop_t *loop, lc_task_factory_fn factory, void *factory_arg)
{
    if (loop == NULL)
        return LC_EINVAL;
    loop->task_factory = factory;
    loop->task_factory_arg = factory != NULL ? factory_arg : NULL;
    return 0;
}

lc_task_factory_fn lc_loop_get_task_factory(const lc_loop_t *loop, void **factory_arg)
{
    if (factory_arg != NULL)
        *factory_arg = loop != NULL ? loop->task_factory_arg : NULL;
    return loop != NULL ? loop->task_factory : NULL;
}
