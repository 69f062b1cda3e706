/* The scheduler: handles, the ready ring, call_soon / call_later / call_at, the iteration
 * (run_forever, run_until_complete, stop), the loop's life cycle (new, close, free) and the task
 * factory hook. The timers are in timers.c, the inbound queue and wake-up in inbound.c, the
 * current loop and debug mode in current.c.
 *
 * One iteration (the loop of lc_loop_run_forever()) is asyncio's _run_once:
 *   1. poll libuv: with timeout 0 if callbacks are ready (cross-thread posts included) or a stop
 *      is pending, else until the earliest timer (rounded up to whole ms, so a timer is never
 *      woken early; capped at one day);
 *   2. the batch: the callbacks that were ready when the poll returned, then the poll's I/O
 *      callbacks (libuv runs them inside its poll, so the first of them begins the batch:
 *      lc__io_enter()), then every timer due when the batch began, in (when, seq) order;
 *      callbacks the batch queues wait for the next iteration (asyncio's ntodo rule);
 *   3. the deferred work (lc__loop_defer()): TLS transports' coalesced writes go out;
 *   4. stop() called during the batch ends the run here.
 * This gives asyncio's order (behaviour rules 1a, 1b, 2a, 2b, 2c, 3b, 5d). */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "engine/future_internal.h"
#include "engine/group_hooks.h"
#include "engine/inbound.h"
#include "engine/timers.h"

/* A handle fits one 64-byte allocation class (jemalloc keeps those pages hot; the 80-byte class
 * refaulted on every burst in loop_bench). */
_Static_assert(sizeof(lc_handle_t) <= 64, "lc_handle_t grew past 64 bytes");

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
        loop->handle_cache = (lc_handle_t *)h->q.next;
        loop->handle_cache_len--;
    } else {
        h = malloc(sizeof(*h));
        if (h == NULL)
            return NULL;
    }
    return h;
}

/* Frees a handle whose last reference the loop dropped (loop thread). Handles the user releases
 * last go straight to free(), since the loop may be gone by then. call_soon_threadsafe handles
 * go back to the producers (engine/inbound.c, "Threadsafe handles"). */
static void handle_free(lc_handle_t *h, lc_loop_t *loop)
{
    if (h->q.kind == LC__K_THREADSAFE) {
        lc__ts_recycle(loop, h);
    } else if (loop->handle_cache_len < LC__HANDLE_CACHE_MAX) {
        h->q.next = (lc__qnode *)loop->handle_cache;
        loop->handle_cache = h;
        loop->handle_cache_len++;
    } else {
        free(h);
    }
}

/* Drops the loop's reference to a handle it no longer queues. */
void lc__handle_loop_unref(lc_loop_t *loop, lc_handle_t *h)
{
    if (h->q.kind == LC__K_DONE_CB) {
        lc_future_t *fut = h->u.fut;
        h->u.fut = NULL;
        lc_future_unref(fut);
    }
    /* acquire: if the count is 1 the loop holds the only reference and nobody can take a new
     * one, so no RMW is needed; the acquire pairs with the release half of a user's
     * lc_handle_unref() on another thread, so the user's last use happens-before our free.
     * Otherwise acq_rel: the same pairing in both directions. */
    if (atomic_load_explicit(&h->q.refs, memory_order_acquire) == 1 ||
        atomic_fetch_sub_explicit(&h->q.refs, 1, memory_order_acq_rel) == 1)
        handle_free(h, loop);
}

/* A new handle, or NULL (out of memory). Returned, not stored through a pointer to a local: an
 * address-taken local would give call_soon and call_at a stack-protector canary (issue 11's
 * hardening), seven instructions on every call. */
static inline lc_handle_t *handle_new(lc_loop_t *loop, lc__handle_kind kind, lc_handle_t **out_user)
{
    lc_handle_t *h = handle_alloc(loop);
    if (LC_UNLIKELY(h == NULL))
        return NULL;
    lc__handle_init(h, loop, kind, out_user != NULL);
    if (out_user != NULL)
        *out_user = h;
    return h;
}

/* ---- Ready queue ----------------------------------------------------------------------------- */

/* Grows (or, with a smaller want, shrinks) the ring, keeping every entry at its counter. */
static int ready_resize(lc_loop_t *loop, uint32_t cap)
{
    lc__ready_ent *ring = malloc((size_t)cap * sizeof(*ring));
    if (ring == NULL)
        return LC_ENOMEM;
    for (uint64_t i = loop->ready_head; i != loop->ready_tail; i++)
        ring[i & (cap - 1)] = loop->ready[i & (loop->ready_cap - 1)];
    free(loop->ready);
    loop->ready = ring;
    loop->ready_cap = cap;
    return 0;
}

int lc__ready_grow(lc_loop_t *loop)
{
    return ready_resize(loop, loop->ready_cap ? loop->ready_cap * 2 : 1024);
}

static inline int ready_put(lc_loop_t *loop, lc_call_fn fn, void *arg)
{
    return lc__ready_put(loop, fn, arg);
}

static inline int ready_append(lc_loop_t *loop, lc__qnode *q) { return ready_put(loop, NULL, q); }

static inline int ready_push(lc_loop_t *loop, lc_handle_t *h)
{
    h->q.state = LC__H_READY;
    return ready_append(loop, &h->q);
}

/* ---- Loop lifecycle -------------------------------------------------------------------------- */

int lc_new_event_loop(lc_loop_t **out)
{
    if (out == NULL)
        return LC_EINVAL;
    *out = NULL;
    lc_loop_t *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return LC_ENOMEM;
    loop->deferred_tail = &loop->deferred_head;
    int r = uv_loop_init(&loop->uv);
    if (r != 0) {
        free(loop);
        return r;
    }
    r = lc__inbound_init(loop);
    if (r != 0) {
        uv_loop_close(&loop->uv);
        free(loop);
        return r;
    }
    r = lc__timers_init(loop);
    if (r != 0) {
        lc__inbound_destroy(loop);
        uv_loop_close(&loop->uv);
        free(loop);
        return r;
    }
    lc__inbound_start(loop);
    loop->uv.data = loop;
    loop->debug = lc__env_debug();
    loop->slow_callback_duration = 0.1;
    loop->refs = 1;
    atomic_init(&loop->running, false);
    atomic_init(&loop->thread, 0);
    *out = loop;
    return 0;
}

void lc__loop_add_resource(lc_loop_t *loop, lc__resource *r)
{
    r->prev = NULL;
    r->next = loop->resources;
    if (r->next != NULL)
        r->next->prev = r;
    loop->resources = r;
}

void lc__loop_remove_resource(lc_loop_t *loop, lc__resource *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else if (loop->resources == r)
        loop->resources = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void loop_destroy(lc_loop_t *loop)
{
    while (loop->future_cache != NULL) {
        lc_future_t *next = *(lc_future_t **)loop->future_cache;
        free(loop->future_cache->more); /* cached futures keep their callback arrays */
        free(loop->future_cache);
        loop->future_cache = next;
    }
    lc__inbound_destroy(loop);
    lc__timers_destroy(loop);
    lc__fdmap_free(loop);
    lc_handle_t *h = loop->handle_cache;
    while (h != NULL) {
        lc_handle_t *next = (lc_handle_t *)h->q.next;
        free(h);
        h = next;
    }
    free(loop);
}

void lc__loop_destroy(lc_loop_t *loop) { loop_destroy(loop); }

bool lc_loop_is_running(const lc_loop_t *loop)
{
    /* relaxed: a snapshot for callers on any thread; nothing else is published through it. */
    return loop != NULL && atomic_load_explicit(&loop->running, memory_order_relaxed);
}

bool lc_loop_is_closed(const lc_loop_t *loop) { return loop != NULL && loop->closed; }

lc_group_t *lc_loop_group(const lc_loop_t *loop) { return loop != NULL ? loop->group : NULL; }

void lc__loop_set_group(lc_loop_t *loop, lc_group_t *g) { loop->group = g; }

/* ---- The default executor's slot (engine/executor_hooks.h) ----------------------------------- */

lc_executor_t *lc__loop_default_executor(const lc_loop_t *loop, bool *owned)
{
    if (owned != NULL)
        *owned = loop->default_executor_release != NULL;
    return loop->default_executor;
}

void lc__loop_set_default_executor(lc_loop_t *loop, lc_executor_t *ex,
                                   lc__executor_release_fn release)
{
    loop->default_executor = ex;
    loop->default_executor_release = release;
}

/* Drops a queued node without running it: handles are freed (asyncio rule 6b: not marked
 * cancelled), posted calls are handed back to their owner with LC_ECLOSED. */
void lc__discard_node(lc_loop_t *loop, lc__qnode *q)
{
    loop->ts_stats.discarded += q->kind == LC__K_THREADSAFE || q->kind == LC__K_POSTED;
    if (q->kind == LC__K_POSTED) {
        lc__call_priv *c = lc_container_of(q, lc__call_priv, q);
        lc_call_t *call = lc_container_of((void *)c, lc_call_t, _priv);
        c->cb(call, LC_ECLOSED);
        return;
    }
    lc_handle_t *h = lc_container_of(q, lc_handle_t, q);
    h->q.state = LC__H_DROPPED;
    h->cb.fn = NULL;
    h->arg = NULL;
    lc__handle_loop_unref(loop, h);
}

static void close_walk_cb(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
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

    /* asyncio: closing the loop removes its signal handlers (SIG_DFL comes back once no loop
     * watches the number). Their libuv handles finish closing below. */
    lc__signals_close(loop);
    lc__inbound_close(loop);
    /* Then what the ready queue and the timer heap still hold, discarded the same way. */
    while (!lc__ready_empty(loop)) {
        lc__ready_ent e = loop->ready[loop->ready_head++ & (loop->ready_cap - 1)];
        if (e.fn != NULL)
            continue;
        lc_mpsc_node_t *m = lc__ready_chain_of(e.arg);
        if (m == NULL) {
            lc__discard_node(loop, e.arg);
            continue;
        }
        while (m != NULL) {
            lc_mpsc_node_t *next = lc_mpsc_batch_next(m); /* before the node is handed back */
            lc__discard_node(loop, lc_container_of(m, lc__qnode, mnode));
            m = next;
        }
    }
    free(loop->ready);
    loop->ready = NULL;
    loop->ready_cap = 0;
    lc__timers_close(loop);
    /* The discarded threadsafe handles: producers that still post here (and get LC_ECLOSED) may
     * take them; lc_loop_free() frees the rest. */
    lc__ts_flush(loop);

    /* The spec: closing a loop shuts down the executor it owns, without waiting for running
     * jobs. After the discards above, so that job outcomes still queued were handed back. */
    if (loop->default_executor_release != NULL)
        loop->default_executor_release(loop->default_executor);
    loop->default_executor = NULL;
    loop->default_executor_release = NULL;

    /* Unwind the tasks still alive (engine/task.c): each suspended one is resumed with its await
     * returning LC_ECLOSED and returns, releasing what it holds (its transports too, hence
     * before the teardown below); then the stacks are unmapped. */
    if (loop->tasks != NULL)
        lc__tasks_close(loop);

    /* Tear down what is still open (transports, servers, connects): each releases its handles
     * and memory and unlinks itself. */
    while (loop->resources != NULL)
        loop->resources->force_close(loop->resources);
    /* Deferred work of transports just closed: it finds nothing to do and drops what it held. */
    lc__loop_run_deferred(loop);

    /* Close every libuv handle (ours, and any the user left open), then let libuv finish: closing
     * handles, and requests still on its thread pool (a getaddrinfo), whose callbacks find the
     * loop closed. UV_RUN_ONCE blocks for those instead of spinning. */
    uv_walk(&loop->uv, close_walk_cb, NULL);
    while (uv_loop_close(&loop->uv) == UV_EBUSY)
        uv_run(&loop->uv, UV_RUN_ONCE);
    /* The eventfd stays open until the memory goes (see lc__loop_post()). */
    return 0;
}

int lc_loop_free(lc_loop_t *loop)
{
    if (loop == NULL)
        return LC_EINVAL;
    if (lc_loop_is_running(loop))
        return LC_ERUNNING;
    lc_loop_close(loop);
    lc__forget_event_loop(loop);
    lc__loop_unref(loop);
    return 0;
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
    if (handle == NULL) /* nobody can refer to it: just an entry in the ring */
        return ready_put(loop, fn, arg);
    lc_handle_t *h = handle_new(loop, LC__K_CALL, handle);
    if (LC_UNLIKELY(h == NULL))
        return LC_ENOMEM;
    h->cb.fn = fn;
    h->arg = arg;
    r = ready_push(loop, h);
    if (LC_UNLIKELY(r != 0)) {
        *handle = NULL;
        atomic_store_explicit(&h->q.refs, 1, memory_order_relaxed); /* not shared yet */
        h->q.state = LC__H_DROPPED;
        lc__handle_loop_unref(loop, h);
    }
    return r;
}

int lc__loop_schedule_done_cb(lc_loop_t *loop, lc_future_t *fut, lc_future_done_cb cb, void *arg)
{
    if (loop->closed)
        return LC_ECLOSED;
    lc_handle_t *h = handle_new(loop, LC__K_DONE_CB, NULL);
    if (h == NULL)
        return LC_ENOMEM;
    int r;
    h->cb.done_cb = cb;
    h->arg = arg;
    h->u.fut = lc_future_ref(fut);
    r = ready_push(loop, h);
    if (r != 0) {
        h->q.state = LC__H_DROPPED;
        lc__handle_loop_unref(loop, h);
    }
    return r;
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
    if (handle == NULL) /* nobody can refer to this timer: no handle at all */
        return lc__timer_push(loop, (lc__timer_ent){when, loop->timer_seq++, fn, arg});
    lc_handle_t *h = handle_new(loop, LC__K_TIMER, handle);
    if (LC_UNLIKELY(h == NULL))
        return LC_ENOMEM;
    h->cb.fn = fn;
    h->arg = arg;
    h->u.when = when;
    h->q.state = LC__H_TIMER;
    r = lc__timer_push(loop, (lc__timer_ent){when, loop->timer_seq++, NULL, h});
    if (LC_UNLIKELY(r != 0)) {
        if (handle != NULL)
            *handle = NULL;
        atomic_store_explicit(&h->q.refs, 1, memory_order_relaxed); /* not shared yet */
        h->q.state = LC__H_DROPPED;
        lc__handle_loop_unref(loop, h);
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
    if (h->q.kind == LC__K_THREADSAFE) {
        /* Any thread: only the flag; the loop skips the callback when its turn comes. relaxed:
         * publishes nothing. */
        atomic_store_explicit(&h->q.cancelled, true, memory_order_relaxed);
        return 0;
    }
    /* Loop-thread handles: relaxed, the flag is only read on this thread. */
    if (atomic_exchange_explicit(&h->q.cancelled, true, memory_order_relaxed))
        return 0;
    if (h->q.state == LC__H_TIMER)
        lc__timer_cancel(h);
    /* READY, DUE or TIMER: skipped (and released) when its turn comes. RAN or DROPPED: nothing
     * to do. */
    return 0;
}

bool lc_handle_cancelled(const lc_handle_t *h)
{
    return h != NULL && atomic_load_explicit(&h->q.cancelled, memory_order_relaxed);
}

int lc_handle_when(const lc_handle_t *h, double *when)
{
    if (h == NULL || when == NULL || h->q.kind != LC__K_TIMER)
        return LC_EINVAL;
    *when = h->u.when;
    return 0;
}

lc_handle_t *lc_handle_ref(lc_handle_t *h)
{
    /* relaxed: the caller holds a reference, so the count cannot reach zero meanwhile, and a new
     * reference publishes nothing (the release half of each later drop orders the uses). It also
     * keeps lc__handle_loop_unref's shortcut sound: a count of 1 held by the loop means no user
     * holds one, and without one nobody can add one. */
    if (h != NULL)
        atomic_fetch_add_explicit(&h->q.refs, 1, memory_order_relaxed);
    return h;
}

void lc_handle_unref(lc_handle_t *h)
{
    if (h == NULL)
        return;
    /* acq_rel: release orders our uses of h before the loop's free (its acquire load or RMW in
     * lc__handle_loop_unref); acquire orders the loop's last uses before ours. If we drop the last
     * reference the loop already let go of h, which is out of every queue, and the loop itself
     * may be closed or freed: do not touch it. */
    if (atomic_fetch_sub_explicit(&h->q.refs, 1, memory_order_acq_rel) == 1)
        free(h);
}

/* ---- Running --------------------------------------------------------------------------------- */

static inline void run_node(lc_loop_t *loop, lc__qnode *q)
{
    if (q->kind == LC__K_POSTED) {
        lc__call_priv *c = lc_container_of(q, lc__call_priv, q);
        c->cb(lc_container_of((void *)c, lc_call_t, _priv), 0);
        return;
    }
    lc__run_handle(loop, lc_container_of(q, lc_handle_t, q));
}

/* Runs a batch taken off the inbound queue, in order. */
void lc__run_chain(lc_loop_t *loop, lc_mpsc_node_t *m)
{
    while (m != NULL) {
        /* Read the link first: once run, the node may be recycled or posted again. */
        lc_mpsc_node_t *next = lc_mpsc_batch_next(m);
        run_node(loop, lc_container_of(m, lc__qnode, mnode));
        m = next;
    }
}

/* Runs the iteration's ready batch: what was queued when its poll returned (loop->batch_end);
 * callbacks it schedules go behind it, for the next iteration. The ring may grow while the batch
 * runs: read it through the loop each time. */
static void run_ready_batch(lc_loop_t *loop)
{
    uint64_t end = loop->batch_end;
    while (loop->ready_head != end) {
        lc__ready_ent e = loop->ready[loop->ready_head++ & (loop->ready_cap - 1)];
        if (e.fn != NULL)
            lc__run_plain(loop, e.fn, e.arg);
        else if ((uintptr_t)e.arg & LC__READY_CHAIN)
            lc__run_chain(loop, lc__ready_chain_of(e.arg));
        else
            run_node(loop, e.arg);
    }
    /* A burst leaves no big ring behind. */
    if (loop->ready_cap > 65536 && loop->ready_tail - loop->ready_head < loop->ready_cap / 8)
        ready_resize(loop, loop->ready_cap / 4);
}

/* The poll timeout in ms: 0 if anything is ready, deferred work waits (I/O callbacks run during the
 * inbound spin, lc__inbound_spin(), may leave some) or a stop is pending, else until the earliest
 * timer (rounded up, so a timer is never woken early), capped at one day. */
static uint64_t poll_timeout_ms(lc_loop_t *loop)
{
    lc__timers_skip_cancelled(loop);
    if (!lc__ready_empty(loop) || loop->stopping || loop->deferred_head != NULL)
        return 0;
    if (loop->heap_len == 0)
        return LC__MAX_POLL_MS;
    double d = loop->heap[0].when - lc__now();
    if (d <= 0)
        return 0;
    if (d >= LC__MAX_POLL_MS / 1000.0)
        return LC__MAX_POLL_MS;
    return (uint64_t)ceil(d * 1000.0);
}

/* How many iterations in a row a spinning loop may run cross-thread work without polling its
 * sockets (poll_io()): I/O waits behind at most this many ready batches. */
#define LC__IO_SKIPS_MAX 16

static void poll_io(lc_loop_t *loop)
{
    uint64_t timeout_ms = poll_timeout_ms(loop);
    if (timeout_ms > 0 && loop->spin_budget > 0) {
        /* The budget counts from the end of the last iteration that received cross-thread work
         * (not from its drain: a long batch must not use it up), and the clock is read once
         * here instead of once per drain. */
        double now = lc__now();
        if (loop->inbound_seen) {
            loop->inbound_seen = false;
            loop->last_inbound = now;
        }
        if (now - loop->last_inbound < loop->spin_budget) {
            if (lc__inbound_spin(loop, timeout_ms, now)) {
                /* The batch drains and runs what came. A producer that answers each
                 * callback at once lands in the spin's first polls every time, which would keep
                 * the sockets from ever being polled: poll them (zero timeout) at least once
                 * every LC__IO_SKIPS_MAX such returns. */
                if (++loop->io_skips >= LC__IO_SKIPS_MAX) {
                    loop->io_skips = 0;
                    uv_run(&loop->uv, UV_RUN_NOWAIT);
                }
                return;
            }
            timeout_ms = poll_timeout_ms(loop);
        }
    }
    if (timeout_ms == 0) {
        uv_run(&loop->uv, UV_RUN_NOWAIT);
        return;
    }
    double limit;
    if (!lc__inbound_announce_sleep(loop, &limit)) {
        uv_run(&loop->uv, UV_RUN_NOWAIT);
        return;
    }
    lc__timers_arm(loop, limit);
    uv_run(&loop->uv, UV_RUN_ONCE);
    lc__inbound_end_sleep(loop);
}

/* The poll has returned: the batch begins. It is what is ready now (asyncio counts _ready after
 * its select): the callbacks queued before the poll and the cross-thread posts that came until
 * now, taken off the inbound lanes here, so that a post that woke the poll runs in this
 * iteration, with no second poll first. Then the clock, for the due timers, so that a timer
 * scheduled by the batch (even with a past when) waits for the next iteration. */
static void begin_batch(lc_loop_t *loop)
{
    loop->batch_pending = false;
    lc__inbound_drain(loop, NULL);
    loop->batch_end = loop->ready_tail;
    loop->iter_now = loop->heap_len > 0 ? lc__now() : -INFINITY;
    run_ready_batch(loop);
}

/* ---- Deferred work ---------------------------------------------------------------------------
 * Runs what was deferred until now; what that defers again waits for the next iteration. */
void lc__loop_run_deferred_slow(lc_loop_t *loop)
{
    lc__deferred *d = loop->deferred_head;
    loop->deferred_head = NULL;
    loop->deferred_tail = &loop->deferred_head;
    while (d != NULL) {
        lc__deferred *next = d->next; /* before fn, which may free d or defer it again */
        d->fn(d);
        d = next;
    }
}

bool lc__io_enter_slow(lc_loop_t *loop, uv_handle_t *h)
{
    /* A handle the batch stopped or closed has nothing to report. One that was already stopped
     * still gets its callback: libuv stops a timer before its callback, and a poll before it
     * reports an error. */
    bool was_active = uv_is_active(h);
    begin_batch(loop);
    return !uv_is_closing(h) && (!was_active || uv_is_active(h));
}

int lc_loop_run_forever(lc_loop_t *loop)
{
    if (loop == NULL)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    if (lc_loop_is_running(loop))
        return LC_ERUNNING;
    if (lc__running_loop() != NULL)
        return LC_EOTHERLOOP;

    lc__set_running_loop(loop);
    /* relaxed: the owner id is only compared by debug-mode checks on other threads. */
    atomic_store_explicit(&loop->thread, (unsigned long)pthread_self(), memory_order_relaxed);
    atomic_store_explicit(&loop->running, true, memory_order_relaxed);

    /* One iteration is asyncio's _run_once (rules 1a-2c): poll first (timeout 0 when anything is
     * ready, cross-thread posts included, or a stop is pending), then one batch made of the
     * callbacks ready when the poll returned, the poll's I/O callbacks and the timers due then,
     * in that order; a stop() ends the run after the batch in which it was called, with no
     * further poll. libuv runs the I/O callbacks inside the poll, so the first of them begins the
     * batch before its own work (lc__io_enter()); when no I/O callback ran, the batch begins
     * after the poll. */
    lc__loop_run_deferred(loop); /* writes made while the loop was not running */
    for (;;) {
        loop->batch_pending = true;
        poll_io(loop);
        if (loop->batch_pending)
            begin_batch(loop);
        lc__timers_run_due(loop);
        lc__loop_run_deferred(loop);
        if (loop->stopping)
            break;
    }
    loop->batch_pending = false;

    loop->stopping = false;
    atomic_store_explicit(&loop->running, false, memory_order_relaxed);
    atomic_store_explicit(&loop->thread, 0, memory_order_relaxed);
    lc__set_running_loop(NULL);
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
    if (lc__running_loop() != NULL)
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
