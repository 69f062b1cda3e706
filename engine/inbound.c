/* The inbound queue and wake-up: producers on any thread post to a loop's lanes
 * (call_soon_threadsafe, lc_loop_post_threadsafe); the loop drains them each iteration, spins
 * on them before it sleeps, announces its sleep so that a post wakes it (the eventfd), closes
 * them at lc_loop_close(), and recycles call_soon_threadsafe handles back to the producers. The
 * memory-ordering proof is above lc__loop_post(); every step it names is in this file. */
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/inbound.h"

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
 *   producer                                   loop, about to block (lc__inbound_announce_sleep())
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
 * its read: the loop then blocks for at most LC__STALL_POLL (lc__inbound_announce_sleep()), and the
 * producer normally wakes it first, with its plain read. sleeping sits on a line of its own that
 * only changes around a sleep, so L is a cache hit.
 *
 * Close (lc__inbound_close(), from lc_loop_close()). C is an RMW, so it comes before or after
 * close's fetch_or of CLOSED in W's modification order. After: C reads CLOSED, nothing is pushed,
 * the caller keeps the message (LC_ECLOSED). Before: C is counted in the value close's fetch_or
 * reads, and close takes exactly that many messages off the queue (each pop acquires the pusher's
 * release link), so it waits for this push however late it comes: nothing is lost, and after close
 * only R1, L and the eventfd write can still touch the loop, which stays allocated until
 * lc_loop_free() (the lifetime rule in threadsafe.h: every post returns before that call). */
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

_Static_assert(sizeof(lc__call_priv) <= sizeof(((lc_call_t *)0)->_priv),
               "lc_call_t's private area is too small");

int lc_loop_call_soon_threadsafe(lc_loop_t *loop, lc_call_fn fn, void *arg, lc_handle_t **handle)
{
    if (handle != NULL)
        *handle = NULL;
    if (loop == NULL || fn == NULL)
        return LC_EINVAL;
    lc_handle_t *h = lc__handle_new_threadsafe(loop, fn, arg, handle != NULL);
    if (h == NULL)
        return LC_ENOMEM;
    /* Hand out the user's reference before the push: once pushed, the loop may run and drop
     * its own reference at any moment. */
    if (handle != NULL)
        *handle = h;
    int r = lc__loop_post(loop, &h->q);
    if (r != 0) {
        if (handle != NULL)
            *handle = NULL;
        lc__handle_free_unposted(h);
    }
    return r;
}

int lc_loop_post_threadsafe(lc_loop_t *loop, lc_call_t *call, lc_call_cb cb)
{
    if (loop == NULL || call == NULL || cb == NULL)
        return LC_EINVAL;
    lc__call_priv *c = (lc__call_priv *)(void *)call->_priv;
    c->q.kind = LC__K_POSTED;
    c->q.next = NULL;
    c->cb = cb;
    return lc__loop_post(loop, &c->q);
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
 * no wake-up (lc__inbound_announce_sleep() bounds the sleep then; see lc__loop_post()). */
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
        loop->inbound_seen =
            true; /* poll_io() (engine/loop.c) reads the clock once per iteration for it */
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

/* How many BUSY checks in a row (one every 8 polls with a PAUSE each: 64 polls, a few
 * microseconds in all) lc__inbound_spin() makes before it stops spinning. A running producer
 * leaves its window in well under a microsecond. */
#define LC__BUSY_CHECKS 8

/* The longest a loop blocks while a push behind a node is in its window and owes no wake-up
 * (lc__inbound_announce_sleep(), lc__loop_post()), in seconds. Normally that producer wakes the
 * loop as soon as it runs again; this bound covers the nanoseconds in which its read of the
 * sleeping bit can miss the loop's announcement. */
#define LC__STALL_POLL 0.001

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
            if (!lc__ready_empty(loop) || loop->stopping || loop->deferred_head != NULL)
                return true; /* the I/O callbacks gave the iteration work */
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
     * S1. relaxed stores: R2's release publishes them to a producer's R1. */
    atomic_store_explicit(&loop->wake_sent, false, memory_order_relaxed);
    atomic_store_explicit(&loop->sleeping, true, memory_order_relaxed);
    /* R2, on every lane's word. acq_rel: release pairs with a producer's R1 (S1 before its L),
     * acquire with R1's release (its push before our drain). */
    for (int i = 0; i < LC__LANES; i++)
        atomic_fetch_add_explicit(&loop->lanes[i].q.prod_word, 0, memory_order_acq_rel);
    loop->ts_stats.sleeps++;
    /* S2: drain; block only if it found nothing. */
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
 * is freed by lc_handle_unref(), as before). The caches and stacks only hold handles that were
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
