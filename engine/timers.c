/* Timers: the 4-ary heap of call_at / call_later, the timerfd that bounds a blocking poll, and
 * running the timers that are due in an iteration (rule 2c: after the I/O callbacks). */
#include <math.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "engine/timers.h"

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

/* Pops cancelled entries off the top, so the top is a live timer (or the heap is empty). */
void lc__timers_skip_cancelled_slow(lc_loop_t *loop)
{
    while (loop->heap_cancelled > 0 && loop->heap_len > 0) {
        lc_handle_t *h = lc__timer_handle(&loop->heap[0]);
        if (h == NULL || !atomic_load_explicit(&h->q.cancelled, memory_order_relaxed))
            break;
        heap_pop(loop);
        timer_drop_cancelled(loop, h);
    }
}

void lc__timers_run_due_slow(lc_loop_t *loop)
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
