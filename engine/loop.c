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
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"

/* A handle fits one 64-byte allocation class (jemalloc keeps those pages hot; the 80-byte class
 * refaulted on every burst in loop_bench). */
_Static_assert(sizeof(lc_handle_t) <= 64, "lc_handle_t grew past 64 bytes");

static __thread lc_loop_t *tls_running;   /* the loop running in this thread */
static __thread lc_loop_t *tls_current;   /* set_event_loop / get_event_loop */
static __thread bool tls_current_was_set; /* set_event_loop was called in this thread */

lc_loop_t *lc__running_loop(void) { return tls_running; }

void lc__set_running_loop(lc_loop_t *loop) { tls_running = loop; }

void lc__forget_event_loop(lc_loop_t *loop)
{
    if (tls_current == loop)
        tls_current = NULL;
}

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

/* How many finished handles the loop collects before it publishes them, so that producers get
 * them back during a long ready batch; the CAS costs one cache-line transfer per this many. */
#define LC__TS_PUBLISH 128

/* A threadsafe handle whose last reference the loop dropped goes into the batch (loop thread). */
static inline void lc__ts_recycle(lc_loop_t *loop, lc_handle_t *h)
{
    h->q.next = (lc__qnode *)loop->ts_batch;
    if (loop->ts_batch == NULL)
        loop->ts_batch_last = h;
    loop->ts_batch = h;
    if (++loop->ts_batch_len >= LC__TS_PUBLISH)
        lc__ts_publish(loop);
}

static inline void lc__ts_flush(lc_loop_t *loop)
{
    if (loop->ts_batch != NULL)
        lc__ts_publish(loop);
}

/* Frees a handle whose last reference the loop dropped (loop thread). Handles the user releases
 * last go straight to free(), since the loop may be gone by then. call_soon_threadsafe handles
 * go back to the producers (see "Threadsafe handles" below). */
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
     * lc_handle_release() on another thread, so the user's last use happens-before our free.
     * Otherwise acq_rel: the same pairing in both directions. */
    if (atomic_load_explicit(&h->q.refs, memory_order_acquire) == 1 ||
        atomic_fetch_sub_explicit(&h->q.refs, 1, memory_order_acq_rel) == 1)
        handle_free(h, loop);
}

static inline void lc__handle_init(lc_handle_t *h, lc_loop_t *loop, lc__handle_kind kind,
                                   bool user_ref)
{
    h->q.next = NULL;
    h->q.kind = (uint8_t)kind;
    h->loop = loop;
    h->arg = NULL;
    h->u.fut = NULL;
    /* relaxed: the handle is not shared yet; publication happens through the queues. */
    atomic_init(&h->q.cancelled, false);
    atomic_init(&h->q.refs, user_ref ? 2 : 1);
}

static int handle_new(lc_loop_t *loop, lc__handle_kind kind, lc_handle_t **out_user,
                      lc_handle_t **out)
{
    lc_handle_t *h = handle_alloc(loop);
    if (LC_UNLIKELY(h == NULL))
        return LC_ENOMEM;
    lc__handle_init(h, loop, kind, out_user != NULL);
    if (out_user != NULL)
        *out_user = h;
    *out = h;
    return 0;
}

/* ---- Threadsafe handles: recycled between the loop and the producers ------------------------
 *
 * A call_soon_threadsafe handle is allocated on the producer's thread and finished on the loop's.
 * Freeing it there would be a remote free for the allocator (in jemalloc, a tcache flush that
 * locks the producer arena's bins), and the producer would keep faulting in fresh memory while
 * the loop frees the old. So handles go round instead:
 *
 *   - The loop collects the handles whose last reference it dropped into a local chain
 *     (ts_batch, linked through q.next) and publishes it every LC__TS_PUBLISH handles, before
 *     it sleeps and when it closes: one CAS pushes the whole chain onto its return stack,
 *     ts_free.
 *   - A producer takes handles from its thread's cache (tls_ts). When that is empty, it takes
 *     loop's whole return stack with one exchange; when that is empty too, it mallocs.
 *   - There is no ABA: only the loop pushes, and producers never pop single nodes (they swap the
 *     top for NULL). A value the loop read as the top can only come back as the top through the
 *     loop's own push, which it is not making while it retries its CAS.
 *
 * Memory. A handle is in exactly one place: a producer's cache, in flight (queued or running), a
 * loop's batch or return stack, or with the user (a handle whose user reference is dropped last
 * is freed by lc_handle_release(), as before). The caches and stacks only hold handles that were
 * in flight before, so the memory is bounded by the most messages ever in flight at once. A
 * thread's cache is freed when the thread exits (a pthread key destructor; the main thread's at
 * exit stays reachable); the batch and the stack are freed when the loop's memory is (by then no
 * producer touches the loop: threadsafe.h's lifetime rule). */

typedef struct {
    lc_handle_t *head; /* recycled handles, linked through q.next */
    bool keyed;        /* the key's destructor is armed for this thread */
} ts_cache_t;

static __thread ts_cache_t tls_ts;
static pthread_key_t ts_key;
static pthread_once_t ts_key_once = PTHREAD_ONCE_INIT;

static void ts_cache_free_list(lc_handle_t *h)
{
    while (h != NULL) {
        lc_handle_t *next = (lc_handle_t *)h->q.next;
        free(h);
        h = next;
    }
}

/* Thread exit: frees the thread's cache. glibc runs key destructors before it releases the
 * thread's TLS, and runs them again (up to PTHREAD_DESTRUCTOR_ITERATIONS) if a later destructor
 * posted and so re-armed the key. */
static void ts_cache_destroy(void *p)
{
    ts_cache_t *c = p;
    lc_handle_t *h = c->head;
    c->head = NULL;
    c->keyed = false;
    ts_cache_free_list(h);
}

static void ts_key_create(void)
{
    /* Without a key, caches are not freed at thread exit: a leak per thread, never a fault. */
    if (pthread_key_create(&ts_key, ts_cache_destroy) != 0)
        ts_key = (pthread_key_t)-1;
}

/* Arms the destructor before the thread's cache first holds handles. */
static void ts_cache_key(ts_cache_t *c)
{
    pthread_once(&ts_key_once, ts_key_create);
    if (ts_key != (pthread_key_t)-1 && pthread_setspecific(ts_key, c) == 0)
        c->keyed = true;
}

lc_handle_t *lc__handle_new_threadsafe(lc_loop_t *loop, lc_call_fn fn, void *arg, bool user_ref)
{
    ts_cache_t *c = &tls_ts;
    lc_handle_t *h = c->head;
    if (LC_UNLIKELY(h == NULL)) {
        /* relaxed: only a hint, so that an empty stack costs a shared read and not an exchange
         * that would take the line away from the loop; the exchange below decides. */
        if (atomic_load_explicit(&loop->ts_free, memory_order_relaxed) != NULL) {
            /* acquire: pairs with the release CAS in lc__ts_publish(); the loop's last uses of
             * these handles, and the links of the chain, happen-before our reuse of them. */
            h = atomic_exchange_explicit(&loop->ts_free, NULL, memory_order_acquire);
        }
        if (h == NULL) {
            h = malloc(sizeof(*h));
            if (h == NULL)
                return NULL;
            h->q.next = NULL;
        } else if (LC_UNLIKELY(!c->keyed)) {
            ts_cache_key(c);
        }
    }
    c->head = (lc_handle_t *)h->q.next;
    lc__handle_init(h, loop, LC__K_THREADSAFE, user_ref);
    h->cb.fn = fn;
    h->arg = arg;
    h->q.state = LC__H_READY;
    return h;
}

void lc__handle_free_unposted(lc_handle_t *h)
{
    ts_cache_t *c = &tls_ts;
    if (LC_UNLIKELY(!c->keyed))
        ts_cache_key(c);
    h->q.next = (lc__qnode *)c->head;
    c->head = h;
}

/* Pushes the loop's batch of finished handles onto its return stack (loop thread). */
void lc__ts_publish(lc_loop_t *loop)
{
    lc_handle_t *first = loop->ts_batch, *last = loop->ts_batch_last;
    /* relaxed: the CAS below checks it. */
    lc_handle_t *top = atomic_load_explicit(&loop->ts_free, memory_order_relaxed);
    do
        last->q.next = (lc__qnode *)top;
    /* release: publishes the chain's links and orders every use of these handles by the loop
     * (and, through lc__handle_loop_unref()'s acquire, by their users) before a producer's acquire
     * exchange in lc__handle_new_threadsafe() takes them. relaxed on failure: we only retry. */
    while (!atomic_compare_exchange_weak_explicit(&loop->ts_free, &top, first, memory_order_release,
                                                  memory_order_relaxed));
    loop->ts_batch = NULL;
    loop->ts_batch_last = NULL;
    loop->ts_batch_len = 0;
}

/* Recycled threadsafe handles not taken back by a producer, and the eventfd: the loop's memory
 * is going. No producer touches the loop any more (threadsafe.h's lifetime rule), so the stack is
 * ours: relaxed. */
void lc__inbound_destroy(lc_loop_t *loop)
{
    close(loop->wake_fd);
    ts_cache_free_list(loop->ts_batch);
    ts_cache_free_list(atomic_load_explicit(&loop->ts_free, memory_order_relaxed));
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

static inline bool lc__ready_empty(const lc_loop_t *loop)
{
    return loop->ready_head == loop->ready_tail;
}

static inline int ready_append(lc_loop_t *loop, lc__qnode *q) { return ready_put(loop, NULL, q); }

/* A whole batch from the inbound queue is one ring entry: fn NULL, arg the batch's first
 * lc_mpsc_node_t with bit 0 set (queue nodes are pointer-aligned, so a node's own entry has bit
 * 0 clear). The batch stays linked through the nodes' mnode.next. */
#define LC__READY_CHAIN ((uintptr_t)1)

static inline int lc__ready_append_chain(lc_loop_t *loop, lc_mpsc_node_t *first)
{
    return lc__ready_put(loop, NULL, (void *)((uintptr_t)first | LC__READY_CHAIN));
}

static inline lc_mpsc_node_t *lc__ready_chain_of(void *arg)
{
    return ((uintptr_t)arg & LC__READY_CHAIN)
               ? (lc_mpsc_node_t *)(void *)((uintptr_t)arg & ~LC__READY_CHAIN)
               : NULL;
}

static inline int ready_push(lc_loop_t *loop, lc_handle_t *h)
{
    h->q.state = LC__H_READY;
    return ready_append(loop, &h->q);
}

/* ---- Timer heap: 4-ary min-heap on (when, seq), keys inline -------------------------------- */

static inline bool timer_less(const lc__timer_ent *a, const lc__timer_ent *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_sift_up(lc_loop_t *loop, uint32_t i, lc__timer_ent e)
{
    lc__timer_ent *heap = loop->heap;
    while (i > 0) {
        uint32_t parent = (i - 1) / 4;
        if (!timer_less(&e, &heap[parent]))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = e;
}

static void heap_sift_down(lc_loop_t *loop, uint32_t i, lc__timer_ent e)
{
    lc__timer_ent *heap = loop->heap;
    uint32_t n = loop->heap_len;
    for (;;) {
        uint32_t first = 4 * i + 1;
        if (first >= n)
            break;
        uint32_t last = first + 4 < n ? first + 4 : n;
        uint32_t min = first;
        for (uint32_t c = first + 1; c < last; c++)
            if (timer_less(&heap[c], &heap[min]))
                min = c;
        if (!timer_less(&heap[min], &e))
            break;
        heap[i] = heap[min];
        i = min;
    }
    heap[i] = e;
}

int lc__timer_push(lc_loop_t *loop, lc__timer_ent e)
{
    if (loop->heap_len == loop->heap_cap) {
        uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        lc__timer_ent *heap = realloc(loop->heap, (size_t)cap * sizeof(*heap));
        if (heap == NULL)
            return LC_ENOMEM;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    heap_sift_up(loop, loop->heap_len++, e);
    return 0;
}

/* Shrinks the array when it is mostly empty, so a million cancelled timers leave no memory behind.
 */
static void heap_maybe_shrink(lc_loop_t *loop)
{
    if (loop->heap_cap > 64 && loop->heap_len < loop->heap_cap / 4) {
        uint32_t cap = loop->heap_cap / 2;
        while (cap > 64 && loop->heap_len < cap / 4)
            cap /= 2;
        lc__timer_ent *heap = realloc(loop->heap, (size_t)cap * sizeof(*heap));
        if (heap != NULL) {
            loop->heap = heap;
            loop->heap_cap = cap;
        }
    }
}

static lc__timer_ent heap_pop(lc_loop_t *loop)
{
    lc__timer_ent top = loop->heap[0];
    lc__timer_ent last = loop->heap[--loop->heap_len];
    if (loop->heap_len > 0)
        heap_sift_down(loop, 0, last);
    return top;
}

/* Drops a cancelled timer that left the heap. */
static void timer_drop_cancelled(lc_loop_t *loop, lc_handle_t *h)
{
    loop->heap_cancelled--;
    h->q.state = LC__H_DROPPED;
    lc__handle_loop_unref(loop, h);
}

/* Rebuilds the heap without its cancelled entries (Floyd's O(n) heapify). */
void lc__timers_compact(lc_loop_t *loop)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < loop->heap_len; i++) {
        lc_handle_t *h = lc__timer_handle(&loop->heap[i]);
        if (h != NULL && atomic_load_explicit(&h->q.cancelled, memory_order_relaxed))
            timer_drop_cancelled(loop, h);
        else
            loop->heap[kept++] = loop->heap[i];
    }
    loop->heap_len = kept;
    for (uint32_t i = kept / 4 + 1; i-- > 0;)
        if (i < kept)
            heap_sift_down(loop, i, loop->heap[i]);
    heap_maybe_shrink(loop);
}

/* A timer handle was cancelled (lc_handle_cancel()). Left in the heap, flagged: O(1). When
 * cancelled entries are more than half of a heap of more than 100, rebuild it without them
 * (asyncio's rule), so they never pile up. Inline: cancelling stays a call-free path. */
static inline void lc__timer_cancel(lc_handle_t *h)
{
    lc_loop_t *loop = h->loop;
    h->cb.fn = NULL;
    h->arg = NULL;
    loop->heap_cancelled++;
    if (loop->heap_len > 100 && loop->heap_cancelled * 2 > loop->heap_len)
        lc__timers_compact(loop);
}

/* Pops cancelled entries off the top, so the top is a live timer (or the heap is empty). */
void lc__timers_skip_cancelled(lc_loop_t *loop)
{
    while (loop->heap_cancelled > 0 && loop->heap_len > 0) {
        lc_handle_t *h = lc__timer_handle(&loop->heap[0]);
        if (h == NULL || !atomic_load_explicit(&h->q.cancelled, memory_order_relaxed))
            break;
        heap_pop(loop);
        timer_drop_cancelled(loop, h);
    }
}

/* ---- Loop lifecycle -------------------------------------------------------------------------- */

bool lc__env_debug(void)
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

/* Closes the inbound lanes (lc_loop_close()) and discards what they still hold. */
void lc__inbound_close(lc_loop_t *loop)
{
    /* Close the inbound lanes to producers: from here on posts return LC_ECLOSED. The RMWs on
     * a lane's posting word are totally ordered (its modification order): a producer whose
     * count-in comes after this fetch_or reads bit 0 and does not push; every one before it is
     * counted in the value we read, and pushes exactly one message. acq_rel: acquire pairs with
     * the producers' count-ins (nothing is published through them, but it keeps this fetch_or
     * ahead of the pops below); release pairs with their acquire. */
    uint64_t posted[LC__LANES];
    for (int i = 0; i < LC__LANES; i++)
        posted[i] = atomic_fetch_or_explicit(&loop->lanes[i].q.prod_word, LC__POST_CLOSED,
                                             memory_order_acq_rel) /
                    LC__POST_ONE;

    /* Discard everything still queued, and wait for the messages of the posts that are still
     * between their count-in and their push: exactly posted - taken more will come on each
     * lane, and none after them. Posts take nanoseconds, so this wait is short; yield in case a
     * producer was preempted. Handing a posted call back may run user code that frees memory
     * but cannot schedule anything (the loop is closed): the queues only shrink. */
    for (int i = 0; i < LC__LANES; i++) {
        lc__lane *lane = &loop->lanes[i];
        while (lane->taken != posted[i]) {
            /* The pop's acquire pairs with the producer's release link (lc_mpsc_push()). */
            lc_mpsc_node_t *m = lc_mpsc_pop(&lane->q, NULL);
            if (m == NULL) {
                sched_yield(); /* EMPTY or BUSY: a counted producer has yet to push or link */
                continue;
            }
            lane->taken++;
            lc__discard_node(loop, lc_container_of(m, lc__qnode, mnode));
        }
    }
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

    lc__inbound_close(loop);
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
        /* Implicit: the slot stays the library's (tls_current_was_set is the user's word), so
         * once this loop is freed (lc_loop_free() empties the slot) the next call makes another. */
        int r = lc_new_event_loop(&tls_current);
        if (r != 0)
            return r;
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

void lc__log_slow_callback(const char *kind, void *fn, void *arg, double dt)
{
    fprintf(stderr, "loopcore: Executing <%s fn=%p arg=%p> took %.3f seconds\n", kind, fn, arg, dt);
}

void lc__log_slow_handle(const lc_handle_t *h, double dt)
{
    const char *kind = h->q.kind == LC__K_TIMER     ? "TimerHandle"
                       : h->q.kind == LC__K_DONE_CB ? "Handle done_cb"
                                                    : "Handle";
    void *fn = h->q.kind == LC__K_DONE_CB ? (void *)h->cb.done_cb : (void *)h->cb.fn;
    lc__log_slow_callback(kind, fn, h->arg, dt);
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
    lc_handle_t *h;
    r = handle_new(loop, LC__K_CALL, handle, &h);
    if (LC_UNLIKELY(r != 0))
        return r;
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
    lc_handle_t *h;
    int r = handle_new(loop, LC__K_DONE_CB, NULL, &h);
    if (r != 0)
        return r;
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
    lc_handle_t *h;
    r = handle_new(loop, LC__K_TIMER, handle, &h);
    if (LC_UNLIKELY(r != 0))
        return r;
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

void lc_handle_release(lc_handle_t *h)
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

/* ---- Threadsafe posts ------------------------------------------------------------------------ */

/* Lanes go to threads round-robin, on a thread's first post to any loop. */
static _Atomic unsigned lane_next;
static __thread unsigned tls_lane; /* the lane's index + 1; 0 until the first post */

lc__lane *lc__post_lane(lc_loop_t *loop)
{
    unsigned lane = tls_lane;
    if (LC_UNLIKELY(lane == 0)) {
        /* relaxed: only spreads threads over lanes; any value is correct. */
        lane = atomic_fetch_add_explicit(&lane_next, 1, memory_order_relaxed) % LC__LANES + 1;
        tls_lane = lane;
    }
    return &loop->lanes[lane - 1];
}

/* The posting protocol, per lane (the calling thread's, lc__post_lane()): one RMW on the lane's
 * posting word W (its queue's prod_word) per post, the count-in C (there is no count-out), on
 * the line of the queue's tail, which the push then finds already in this core's cache; and a
 * read of the sleep line. The loop's R2 below is made on every lane's W:
 *
 *   producer                                   loop, about to block (poll_io())
 *   C: fetch_add(W, ONE); bit 0 -> LC_ECLOSED      S1: wake_sent = false; sleeping = true
 *   P: push (exchange the tail, link prev)         R2: fetch_add(W, 0), acq_rel
 *   R1: fetch_add(W, 0), acq_rel, only if P        S2: drain; block only if it found nothing
 *       returned true (its line is still ours)
 *   L: load(sleeping); true -> write the eventfd,
 *      once per sleep (exchange on wake_sent)
 *
 * No lost wake-up. Take a push P that returned true (it found the queue re-armed: by guarantee
 * (G) in threadsafe/mpsc.h every other push of its run is found with it, or after it). R1 and R2
 * are RMWs on W, so one comes first in W's modification order, and every later modification of
 * W is an RMW, hence in the first one's release sequence. If R1 comes first, R2 reads from that
 * release sequence: R1 synchronizes with R2, so P's exchange and link happen-before S2, which
 * finds P's node, and the loop does not block. If R2 comes first, R2 synchronizes with R1: S1
 * happens-before L, which reads true or a later value of sleeping, that is, the loop's own
 * clear after it woke; the loop is then awake and looks again, and the same argument applies to
 * its next sleep. So L sees true and writes the eventfd, unless another producer already did for
 * this sleep (wake_sent; S1's reset happens-before L's exchange too). (A pair of seq_cst fences
 * would do instead of R1 and R2, but ThreadSanitizer cannot check fences; R1 costs little, as
 * C and P just took W's line.) A push that returned false makes no R1 and only reads the flag:
 * it owes no wake-up, since the true push of its run does. The one case that (G) leaves to the
 * loop: the loop finds a node, but the push behind it is in its window (BUSY, lc_mpsc_on_stub()
 * false) and may read the flag before S1 reaches it. That push returned false, so nothing orders
 * its read: the loop then blocks for at most LC__STALL_POLL (poll_io()), and the producer
 * normally wakes it first, with its plain read. sleeping sits on a line of its own that only
 * changes around a sleep, so L is a cache hit.
 *
 * Close (lc_loop_close()). C is an RMW, so it comes before or after close's fetch_or of CLOSED
 * in W's modification order. After: C reads CLOSED, nothing is pushed, the caller keeps the
 * message (LC_ECLOSED). Before: C is counted in the value close's fetch_or reads, and close
 * takes exactly that many messages off the queue (each pop acquires the pusher's release link),
 * so it waits for this push however late it comes: nothing is lost, and after close only R1, L
 * and the eventfd write can still touch the loop, which stays allocated until lc_loop_free()
 * (the lifetime rule in threadsafe.h: every post returns before that call). */
int lc__loop_post(lc_loop_t *loop, lc__qnode *q)
{
    lc_mpsc_t *in = &lc__post_lane(loop)->q;
    /* C. acquire: pairs with the release half of close's fetch_or; the RMWs are totally
     * ordered, so either close counts this post, or we see LC__POST_CLOSED and do not push.
     * Beside the queue's tail: the exchange below finds the line already ours. */
    uint64_t st = atomic_fetch_add_explicit(&in->prod_word, LC__POST_ONE, memory_order_acquire);
    if (LC_UNLIKELY(st & LC__POST_CLOSED))
        return LC_ECLOSED;
    /* P. Publishes the message (release link, see mpsc.h). */
    if (lc_mpsc_push(in, &q->mnode)) {
        /* R1. acq_rel: release pairs with R2's acquire (our push before the loop's look at the
         * queue), acquire with R2's release (its sleeping = true before our L); see above. */
        atomic_fetch_add_explicit(&in->prod_word, 0, memory_order_acq_rel);
    }
    /* L. relaxed: R1 orders it where it matters; without R1 it is a hint. */
    /* acq_rel exchange: one waker per announced sleep (wake_sent is reset in S1). */
    if (LC_UNLIKELY(atomic_load_explicit(&loop->sleeping, memory_order_relaxed)) &&
        !atomic_exchange_explicit(&loop->wake_sent, true, memory_order_acq_rel)) {
        /* The eventfd stays open until the loop's memory is freed, and the lifetime rule
         * (threadsafe.h) forbids posting during lc_loop_free(): this write is safe even when
         * close ran in between. */
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(loop->wake_fd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
        /* EAGAIN means the counter is saturated: the loop is woken anyway. */
        atomic_fetch_add_explicit(&loop->wake_writes, 1, memory_order_relaxed);
    }
    return 0;
}

static void wake_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    lc_loop_t *loop = p->data;
    uint64_t v;
    /* Reset the eventfd before the drain at the start of the next iteration, never after, so
     * that a wake-up for a node the drain does not see is not swallowed. */
    while (read(loop->wake_fd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
    loop->ts_stats.wakeups++;
}

int lc__inbound_init(lc_loop_t *loop)
{
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0)
        return -errno;
    for (int i = 0; i < LC__LANES; i++)
        lc_mpsc_init(&loop->lanes[i].q);
    atomic_init(&loop->sleeping, false);
    atomic_init(&loop->wake_sent, false);
    atomic_init(&loop->wake_writes, 0);
    return 0;
}

void lc__inbound_start(lc_loop_t *loop)
{
    uv_poll_init(&loop->uv, &loop->wake_poll, loop->wake_fd);
    loop->wake_poll.data = loop;
    uv_poll_start(&loop->wake_poll, UV_READABLE, wake_cb);
}

/* Moves the messages of the inbound lanes to the ready queue, each lane's in push order, as one
 * entry per lane (a batch stays linked: O(1) whatever its length). Returns how many. *stalled
 * (may be NULL) tells whether a lane stopped BUSY behind a node: a push in its window that owes
 * no wake-up (poll_io() bounds its sleep then; see lc__loop_post()). */
size_t lc__inbound_drain(lc_loop_t *loop, bool *stalled)
{
    size_t total = 0;
    bool stall = false;
    for (int i = 0; i < LC__LANES; i++) {
        lc__lane *lane = &loop->lanes[i];
        lc_mpsc_node_t *first;
        lc_mpsc_status_t st;
        size_t n = lc_mpsc_pop_batch(&lane->q, &first, NULL, SIZE_MAX, &st);
        stall |= st == LC_MPSC_BUSY && !lc_mpsc_on_stub(&lane->q);
        if (n == 0)
            continue;
        lane->taken += n;
        total += n;
        /* Out of memory here would strand the batch: grow can only fail for a ring over a
         * billion entries, and then the batch runs at once instead. */
        if (LC_UNLIKELY(lc__ready_append_chain(loop, first) != 0))
            lc__run_chain(loop, first);
    }
    if (stalled != NULL)
        *stalled = stall;
    if (total != 0) {
        loop->ts_stats.received += total;
        loop->inbound_seen = true; /* poll_io() reads the clock once per iteration for it */
    }
    return total;
}

int lc_loop_set_spin_budget(lc_loop_t *loop, double seconds)
{
    if (loop == NULL || !(seconds >= 0) || isinf(seconds))
        return LC_EINVAL;
    loop->spin_budget = seconds;
    return 0;
}

double lc_loop_get_spin_budget(const lc_loop_t *loop)
{
    return loop != NULL ? loop->spin_budget : 0;
}

int lc_loop_get_threadsafe_stats(const lc_loop_t *loop, lc_loop_threadsafe_stats_t *stats)
{
    if (loop == NULL || stats == NULL)
        return LC_EINVAL;
    *stats = loop->ts_stats;
    stats->wake_writes = atomic_load_explicit(&loop->wake_writes, memory_order_relaxed);
    return 0;
}

/* ---- Running --------------------------------------------------------------------------------- */

static inline void lc__run_handle(lc_loop_t *loop, lc_handle_t *h)
{
    /* relaxed: see the comment on the field. */
    if (atomic_load_explicit(&h->q.cancelled, memory_order_relaxed)) {
        h->q.state = LC__H_DROPPED;
        lc__handle_loop_unref(loop, h);
        return;
    }
    h->q.state = LC__H_RAN;
    double t0 = 0;
    if (LC_UNLIKELY(loop->debug))
        t0 = lc__now();
    if (h->q.kind == LC__K_DONE_CB)
        h->cb.done_cb(h->u.fut, h->arg);
    else
        h->cb.fn(h->arg);
    if (LC_UNLIKELY(loop->debug)) {
        double dt = lc__now() - t0;
        if (dt >= loop->slow_callback_duration)
            lc__log_slow_handle(h, dt);
    }
    lc__handle_loop_unref(loop, h);
}

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

static void run_plain(lc_loop_t *loop, lc_call_fn fn, void *arg)
{
    if (LC_LIKELY(!loop->debug)) {
        fn(arg);
        return;
    }
    double t0 = lc__now();
    fn(arg);
    double dt = lc__now() - t0;
    if (dt >= loop->slow_callback_duration)
        lc__log_slow_callback("Handle", (void *)fn, arg, dt);
}

/* Runs the iteration's ready batch: what was queued before its poll (loop->batch_end);
 * callbacks it schedules go behind it, for the next iteration. The ring may grow while the batch
 * runs: read it through the loop each time. */
static void run_ready_batch(lc_loop_t *loop)
{
    uint64_t end = loop->batch_end;
    while (loop->ready_head != end) {
        lc__ready_ent e = loop->ready[loop->ready_head++ & (loop->ready_cap - 1)];
        if (e.fn != NULL)
            run_plain(loop, e.fn, e.arg);
        else if ((uintptr_t)e.arg & LC__READY_CHAIN)
            lc__run_chain(loop, lc__ready_chain_of(e.arg));
        else
            run_node(loop, e.arg);
    }
    /* A burst leaves no big ring behind. */
    if (loop->ready_cap > 65536 && loop->ready_tail - loop->ready_head < loop->ready_cap / 8)
        ready_resize(loop, loop->ready_cap / 4);
}

void lc__timers_run_due(lc_loop_t *loop)
{
    if (loop->heap_len == 0)
        return;
    /* Due means due when the poll returned (asyncio's end_time): timers scheduled by this
     * iteration's callbacks, even with when <= now, wait for the next one, as do those that came
     * due while the batch ran. Take every due timer off the heap first, in order. */
    double now = loop->iter_now;
    uint32_t n = 0;
    while (loop->heap_len > 0 && loop->heap[0].when <= now) {
        if (n == loop->due_cap) {
            uint32_t cap = loop->due_cap ? loop->due_cap * 2 : 64;
            lc__timer_ent *due = realloc(loop->due, (size_t)cap * sizeof(*due));
            if (due == NULL)
                break; /* run what we have; the rest stays due for the next iteration */
            loop->due = due;
            loop->due_cap = cap;
        }
        lc__timer_ent e = heap_pop(loop);
        lc_handle_t *h = lc__timer_handle(&e);
        if (h != NULL) {
            if (atomic_load_explicit(&h->q.cancelled, memory_order_relaxed)) {
                timer_drop_cancelled(loop, h);
                continue;
            }
            h->q.state = LC__H_DUE; /* a cancel from here on only flags it */
        }
        loop->due[n++] = e;
    }
    heap_maybe_shrink(loop);
    lc__timer_ent *due = loop->due;
    for (uint32_t i = 0; i < n; i++) {
        if (due[i].fn == NULL) {
            lc__run_handle(loop, (lc_handle_t *)due[i].arg);
        } else if (LC_UNLIKELY(loop->debug)) {
            double t0 = lc__now();
            due[i].fn(due[i].arg);
            double dt = lc__now() - t0;
            if (dt >= loop->slow_callback_duration)
                lc__log_slow_callback("TimerHandle", (void *)due[i].fn, due[i].arg, dt);
        } else {
            due[i].fn(due[i].arg);
        }
    }
    /* A burst of due timers leaves no big buffer behind. */
    if (loop->due_cap > 4096 && n < loop->due_cap / 4) {
        free(loop->due);
        loop->due = NULL;
        loop->due_cap = 0;
    }
}

static void timer_fd_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    lc_loop_t *loop = p->data;
    uint64_t expirations;
    while (read(loop->timer_fd, &expirations, sizeof(expirations)) < 0 && errno == EINTR) {
    }
    loop->timer_armed = INFINITY; /* one-shot: it fired */
}

int lc__timers_init(lc_loop_t *loop)
{
    loop->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (loop->timer_fd < 0)
        return -errno;
    loop->timer_armed = INFINITY;
    uv_poll_init(&loop->uv, &loop->timer_poll, loop->timer_fd);
    loop->timer_poll.data = loop;
    uv_poll_start(&loop->timer_poll, UV_READABLE, timer_fd_cb);
    return 0;
}

void lc__timers_close(lc_loop_t *loop)
{
    while (loop->heap_len > 0) {
        lc_handle_t *h = lc__timer_handle(&loop->heap[--loop->heap_len]);
        if (h != NULL)
            lc__discard_node(loop, &h->q);
    }
    loop->heap_cancelled = 0;
    free(loop->due);
    loop->due = NULL;
    loop->due_cap = 0;
    free(loop->heap);
    loop->heap = NULL;
    loop->heap_cap = 0;
}

void lc__timers_destroy(lc_loop_t *loop) { close(loop->timer_fd); }

/* Arms the timerfd for the earliest timer (at most one day ahead, as asyncio caps one poll) or
 * for limit if that is earlier, or disarms it. The deadline is rounded up to the nanosecond, so
 * the poll never ends before it. */
void lc__timers_arm(lc_loop_t *loop, double limit)
{
    double when = INFINITY;
    if (loop->heap_len > 0) {
        when = loop->heap[0].when;
        double cap = lc__now() + LC__MAX_POLL_MS / 1000.0;
        if (when > cap)
            when = cap;
    }
    if (limit < when)
        when = limit;
    if (when == loop->timer_armed)
        return;
    struct itimerspec its = {0}; /* all zero: disarmed */
    if (isinf(when)) {
        if (timerfd_settime(loop->timer_fd, 0, &its, NULL) == 0)
            loop->timer_armed = INFINITY;
        return;
    }
    double sec = floor(when);
    its.it_value.tv_sec = (time_t)sec;
    its.it_value.tv_nsec = (long)ceil((when - sec) * 1e9);
    if (its.it_value.tv_nsec >= 1000000000L) {
        its.it_value.tv_sec++;
        its.it_value.tv_nsec -= 1000000000L;
    }
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1; /* zero would disarm it */
    if (timerfd_settime(loop->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        loop->timer_armed = when;
}

/* The poll timeout in ms: 0 if anything is ready or a stop is pending, else until the earliest
 * timer (rounded up, so a timer is never woken early), capped at one day. */
static uint64_t poll_timeout_ms(lc_loop_t *loop)
{
    lc__timers_skip_cancelled(loop);
    if (!lc__ready_empty(loop) || loop->stopping)
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

/* How many BUSY checks in a row (one every 8 polls with a PAUSE each: 64 polls, a few
 * microseconds in all) spin_before_sleep() makes before it stops spinning. A running producer
 * leaves its window in well under a microsecond. */
#define LC__BUSY_CHECKS 8

/* The longest a loop blocks while a push behind a node is in its window and owes no wake-up
 * (poll_io(), lc__loop_post()), in seconds. Normally that producer wakes the loop as soon as it
 * runs again; this bound covers the nanoseconds in which its read of the sleeping bit can miss
 * the loop's announcement. */
#define LC__STALL_POLL 0.001

/* How many iterations in a row a spinning loop may run cross-thread work without polling its
 * sockets (poll_io()): I/O waits behind at most this many ready batches. */
#define LC__IO_SKIPS_MAX 16

/* Spins on the inbound lanes (and I/O, without blocking) while cross-thread work arrived less
 * than spin_budget ago, until something is ready or the budget or the next timer runs out, or
 * the queue stays BUSY (a preempted producer). Returns true if something became ready. */
bool lc__inbound_spin(lc_loop_t *loop, uint64_t timeout_ms, double start)
{
    double deadline = loop->last_inbound + loop->spin_budget;
    double timer_deadline = start + (double)timeout_ms / 1000.0;
    if (timer_deadline < deadline)
        deadline = timer_deadline;
    unsigned busy = 0;
    for (unsigned i = 1;; i++) {
        /* The cheap test reads only the consumer's side of the lanes. Polling the tails as well
         * (to tell EMPTY from BUSY) would pull the producers' lines away from them between
         * every two posts; that is done once every 8 polls. */
        for (int l = 0; l < LC__LANES; l++)
            if (lc_mpsc_linked(&loop->lanes[l].q))
                return true;
        if ((i & 7) == 0) {
            lc_mpsc_status_t st = LC_MPSC_EMPTY;
            for (int l = 0; l < LC__LANES; l++) {
                lc_mpsc_status_t ls = lc_mpsc_peek(&loop->lanes[l].q);
                if (ls == LC_MPSC_OK)
                    return true;
                if (ls == LC_MPSC_BUSY)
                    st = LC_MPSC_BUSY;
            }
            /* BUSY for this long: the producer in its window is not running, it was preempted
             * there, and everything pushed behind it is hidden until it runs again. Spinning on
             * would hold a core it may be waiting for (2-vCPU VMs showed thousands of such stalls
             * a second under two producers). Sleep instead: that producer reads the sleeping flag
             * after its push (lc__loop_post()), so it wakes us as soon as it has linked (or, at
             * worst, LC__STALL_POLL later). */
            if (st == LC_MPSC_BUSY) {
                if (++busy == LC__BUSY_CHECKS)
                    return false;
            } else {
                busy = 0;
            }
        }
        lc_mpsc_cpu_relax();
        if ((i & 63) == 0) {
            /* I/O and the clock, every 64 spins (a zero-timeout epoll_wait is a system call). */
            uv_run(&loop->uv, UV_RUN_NOWAIT);
            loop->io_skips = 0;
            if (!lc__ready_empty(loop) || loop->stopping)
                return true;
            if (lc__now() >= deadline)
                return false;
            /* Give the core away if another thread wants it (a worker or producer pinned to the
             * same CPU): spinning against it would delay the very work we wait for. */
            sched_yield();
        }
    }
}

bool lc__inbound_announce_sleep(lc_loop_t *loop, double *limit)
{
    /* Announce the sleep, then look at the queue once more (S1, R2, S2 in lc__loop_post()).
     * relaxed stores: R2's release publishes them to a producer's R1. */
    atomic_store_explicit(&loop->wake_sent, false, memory_order_relaxed);
    atomic_store_explicit(&loop->sleeping, true, memory_order_relaxed);
    /* R2, on every lane's word. acq_rel: release pairs with a producer's R1 (S1 before its L),
     * acquire with R1's release (its push before our drain). */
    for (int i = 0; i < LC__LANES; i++)
        atomic_fetch_add_explicit(&loop->lanes[i].q.prod_word, 0, memory_order_acq_rel);
    loop->ts_stats.sleeps++;
    bool stalled;
    if (lc__inbound_drain(loop, &stalled) != 0) {
        /* relaxed: a producer that still reads true only makes a spurious eventfd write. */
        atomic_store_explicit(&loop->sleeping, false, memory_order_relaxed);
        return false;
    }
    /* A sleeping loop keeps no finished handles from the producers. */
    lc__ts_flush(loop);
    /* A lane BUSY behind a node: the push in its window owes no wake-up (lc__loop_post()), so
     * bound the sleep; it normally wakes us itself, as soon as it runs. */
    *limit = stalled ? lc__now() + LC__STALL_POLL : INFINITY;
    return true;
}

void lc__inbound_end_sleep(lc_loop_t *loop)
{
    /* relaxed: a producer that still reads true only makes a spurious eventfd write. */
    atomic_store_explicit(&loop->sleeping, false, memory_order_relaxed);
}

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
                /* The next iteration drains and runs what came. A producer that answers each
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

/* The poll has returned: the batch begins. Reads the clock for the due timers first, so that
 * a timer scheduled by the batch (even with a past when) waits for the next iteration. */
static void begin_batch(lc_loop_t *loop)
{
    loop->batch_pending = false;
    loop->iter_now = loop->heap_len > 0 ? lc__now() : -INFINITY;
    run_ready_batch(loop);
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
     * ready or a stop is pending), then one batch made of the callbacks ready before the poll,
     * the poll's I/O callbacks and the timers due when the poll returned, in that order; a stop()
     * ends the run after the batch in which it was called, with no further poll. libuv runs the
     * I/O callbacks inside the poll, so the first of them runs the ready batch before its own
     * work (lc__io_enter()); when no I/O callback ran, the batch runs after the poll. */
    for (;;) {
        lc__inbound_drain(loop, NULL);
        loop->batch_end = loop->ready_tail;
        loop->batch_pending = true;
        poll_io(loop);
        if (loop->batch_pending)
            begin_batch(loop);
        lc__timers_run_due(loop);
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
