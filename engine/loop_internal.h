/* The loop (engine/loop.c, timers.c, inbound.c, current.c): the struct, handles and the ready
 * ring, and what every file of the engine needs of them. Not a public header. */
#ifndef LOOPCORE_ENGINE_LOOP_INTERNAL_H
#define LOOPCORE_ENGINE_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "engine/executor_hooks.h"
#include "loopcore.h"
#include "threadsafe/mpsc.h"

#define LC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LC_LIKELY(x) __builtin_expect(!!(x), 1)

/* The longest one poll may block, in ms: asyncio caps a single select() at one day as well. Timers
 * further away simply take more than one poll. */
#define LC__MAX_POLL_MS (86400 * 1000)

/* How many freed handles a loop keeps for reuse; beyond this they go back to malloc. */
#define LC__HANDLE_CACHE_MAX 4096

typedef enum {
    LC__H_READY = 1, /* in the ready queue */
    LC__H_TIMER,     /* in the timer heap */
    LC__H_DUE,       /* taken off the heap, about to run in this iteration */
    LC__H_RAN,       /* its callback ran (or is running) */
    LC__H_DROPPED,   /* cancelled and taken out of the loop, or discarded by close */
} lc__handle_state;

typedef enum {
    LC__K_CALL = 0,   /* fn(arg) */
    LC__K_TIMER,      /* fn(arg) at when */
    LC__K_DONE_CB,    /* a future's done callback: done_cb(fut, arg) */
    LC__K_THREADSAFE, /* fn(arg) from call_soon_threadsafe: cancellable from any thread */
    LC__K_POSTED,     /* an lc_call_t posted with lc_loop_post_threadsafe (not a handle) */
} lc__handle_kind;

/* What the ready queue and the inbound queue link: the first member of a handle and of the
 * private part of an lc_call_t. The handle's small fields live here too, in what would
 * otherwise be padding, so that a handle is 56 bytes (one 64-byte allocation class). */
typedef struct lc__qnode_s {
    struct lc__qnode_s *next; /* ready queue / due list / handle cache; loop thread only */
    lc_mpsc_node_t mnode;     /* inbound MPSC queue link (threadsafe posts) */
    uint8_t kind;             /* lc__handle_kind */
    uint8_t state;            /* handles: lc__handle_state; loop thread only */
    /* Handles: set by lc_handle_cancel (any thread for K_THREADSAFE); relaxed everywhere: it
     * publishes nothing, the loop either sees it before running the callback or runs it. */
    _Atomic bool cancelled;
    /* Handles: one reference for the loop while the handle is queued, one for the user if the
     * scheduling call returned the handle. Atomic because threadsafe handles are released from
     * any thread; the loop's own drop skips the atomic RMW when it holds the only one. */
    _Atomic uint32_t refs;
} lc__qnode;

/* The private part of an lc_call_t. */
typedef struct lc__call_priv_s {
    lc__qnode q;
    lc_call_cb cb;
} lc__call_priv;

struct lc_handle_s {
    lc__qnode q;
    lc_loop_t *loop;
    union {
        lc_call_fn fn;
        lc_future_done_cb done_cb;
    } cb;
    void *arg;
    union {
        lc_future_t *fut; /* K_DONE_CB: the future (the handle holds a reference) */
        double when;      /* K_TIMER */
    } u;
};

typedef struct lc__ready_ent_s {
    lc_call_fn fn;
    void *arg;
} lc__ready_ent;

/* A timer heap entry. The key is inline, so that sifting never touches a handle. A timer whose
 * caller asked for no handle has none at all: fn and arg live in the entry, and firing it touches
 * no other memory. Otherwise fn is NULL and arg is the lc_handle_t. */
typedef struct lc__timer_ent_s {
    double when;
    uint64_t seq; /* tie-break: equal whens run in the order scheduled */
    lc_call_fn fn;
    void *arg;
} lc__timer_ent;

static inline lc_handle_t *lc__timer_handle(const lc__timer_ent *e)
{
    return e->fn == NULL ? (lc_handle_t *)e->arg : NULL;
}

/* Something the loop must tear down if it is closed while the thing is still open (transports,
 * servers, pending connects): lc_loop_close() calls force_close on each, which must release the
 * thing's libuv handles and memory and unlink it. */
typedef struct lc__resource_s {
    struct lc__resource_s *prev, *next;
    void (*force_close)(struct lc__resource_s *r);
} lc__resource;

/* Work to do once the iteration's callbacks have run, before the loop polls again (engine/loop.c,
 * "Deferred work"): a TLS transport's coalesced small writes go out here as full records, one
 * flush per transport per iteration. The owner of an entry keeps it (and itself) alive until fn
 * has run; fn runs once per lc__loop_defer(), also when the loop closes (then everything it
 * would flush is already gone). */
typedef struct lc__deferred_s {
    struct lc__deferred_s *next;
    void (*fn)(struct lc__deferred_s *d);
} lc__deferred;

/* How many inbound MPSC queues ("lanes") a loop has. A posting thread always uses the same lane
 * (lc__post_lane()), so its posts keep their order; threads on different lanes share no cache
 * line, and a producer preempted inside its push (between its exchange and its link) hides only
 * the messages of its own lane. Threads get lanes round-robin, so up to this many producers
 * never share one. */
#define LC__LANES 4

/* One inbound lane. The queue's prod_word, on the producers' line beside the queue's tail, is
 * the posting protocol's word. Bit 0 (LC__POST_CLOSED): closed to posts. Bits 1..: the number of
 * posts that passed the closed check (times LC__POST_ONE, never decremented): a producer adds
 * LC__POST_ONE before it pushes, and lc_loop_close() reads the count with its fetch_or of bit 0
 * and takes exactly that many messages off the lane. See engine/inbound.c:
 * lc__loop_post(), lc__inbound_announce_sleep() and lc__inbound_close(). */
typedef struct lc__lane_s {
    lc_mpsc_t q;
    uint64_t taken; /* messages taken off q, ever (loop / closing thread) */
} lc__lane;

struct lc_loop_s {
    uv_loop_t uv;
    /* Bounds a blocking poll: a timerfd armed (absolute, CLOCK_MONOTONIC, ns) for the earliest
     * timer, watched with uv_poll. libuv's own timers count whole milliseconds from a cached
     * clock, which can fire them before the poll and leave it blocking with no timeout. */
    int timer_fd;
    uv_poll_t timer_poll;
    double timer_armed; /* the when the timerfd is armed for; INFINITY when disarmed */

    /* Ready queue: FIFO, singly linked handles and posted calls. */
    /* The ready queue: a ring of {fn, arg} entries, indexed by free-running counters (masked by
     * cap - 1; cap is a power of two). A callback scheduled without a handle is just an entry:
     * no allocation, sequential memory. An entry with fn == NULL carries a queue node in arg (a
     * handle, a done callback, a posted lc_call_t), or, tagged with bit 0, a whole batch taken
     * off the inbound queue (lc__ready_append_chain()). */
    lc__ready_ent *ready;
    uint64_t ready_head, ready_tail;
    uint32_t ready_cap;
    /* The iteration (engine/loop.c, "Running"): the ready batch is [ready_head, batch_end), fixed
     * when the batch begins, after the poll; batch_pending says the poll has not yet returned to
     * us, so the first I/O callback of the poll begins the batch (lc__io_enter()); iter_now is
     * the clock read when the batch begins, against which the iteration's due timers are
     * taken. */
    uint64_t batch_end;
    bool batch_pending;
    double iter_now;

    /* The inbound lanes of threadsafe posts, drained at the start of each iteration. */
    lc__lane lanes[LC__LANES];
    /* Recycled call_soon_threadsafe handles (engine/inbound.c, "Threadsafe handles"). ts_free is
     * the return stack: the loop pushes whole chains onto it (it is the only pusher), producers
     * take the whole stack with one exchange into their thread's cache. Padded on both sides:
     * producers exchange it and the loop CASes it, away from the queue's lines. ts_batch is the
     * loop's local chain of finished handles, not yet published. */
    char _ts_pad0[LC_MPSC_PAD];
    lc_handle_t *_Atomic ts_free;
    char _ts_pad1[LC_MPSC_PAD - sizeof(void *)];
    lc_handle_t *ts_batch, *ts_batch_last; /* loop thread only */
    uint32_t ts_batch_len;
    /* The sleep line: read by every post, written only around a sleep. Padded away from the
     * loop's per-message words (ts_batch) so that the producers' reads stay hits. */
    char _sleep_pad0[LC_MPSC_PAD];
    /* The loop announced that it is about to block in a poll (lc__inbound_announce_sleep(),
     * lc__loop_post()). */
    _Atomic bool sleeping;
    /* Whether a producer already wrote the eventfd for this sleep (one wake-up per sleep). */
    _Atomic bool wake_sent;
    int wake_fd;                  /* eventfd */
    _Atomic uint64_t wake_writes; /* producers' eventfd writes; relaxed, a statistic */
    char _sleep_pad1[LC_MPSC_PAD];
    uv_poll_t wake_poll;
    double spin_budget;
    double last_inbound; /* lc__now() after the last iteration whose drains found messages */
    bool inbound_seen;   /* a drain found messages since last_inbound was set */
    uint32_t io_skips;   /* poll_io() returns in a row that did not poll I/O (spin hits) */
    lc_loop_threadsafe_stats_t ts_stats;

    /* Timer heap: a 4-ary min-heap on (when, seq). Cancelled timers stay in it, flagged, until
     * they reach the top or until they are more than half of it (then it is rebuilt without
     * them), as asyncio does: cancelling is O(1) and nothing accumulates. */
    lc__timer_ent *heap;
    uint32_t heap_len;
    uint32_t heap_cap;
    uint32_t heap_cancelled;
    uint64_t timer_seq;
    lc__timer_ent *due; /* the timers being run by lc__timers_run_due_slow(), reused */
    uint32_t due_cap;

    lc_handle_t *handle_cache; /* freed handles kept for reuse */
    uint32_t handle_cache_len;
    lc_future_t *future_cache; /* freed futures kept for reuse (linked through their first word) */
    uint32_t future_cache_len;

    bool stopping;
    bool closed;
    bool debug;
    /* Written by the loop thread, read by others for is_running and debug thread checks. */
    _Atomic bool running;
    _Atomic unsigned long thread; /* pthread_t of the running thread, while running */
    double slow_callback_duration;

    lc_exception_handler_fn exc_handler;
    void *exc_handler_arg;
    lc_task_factory_fn task_factory;
    void *task_factory_arg;
    /* Tasks (engine/task.c): the live tasks, the stack pool and its settings; NULL until the
     * first task or task setting. lc_loop_close() unwinds the live tasks and frees it. */
    struct lc__tasks_s *tasks;

    /* The default executor of run_in_executor: executor/ fills the slot through
     * engine/executor_hooks.h; the engine only releases it at close. release is the owned
     * executor's shutdown-without-wait, NULL when the loop does not own default_executor;
     * lc_loop_close() calls it and clears both. */
    lc_executor_t *default_executor;
    lc__executor_release_fn default_executor_release;

    /* The loop group that made this loop (engine/group_hooks.h), or NULL. Written once, before
     * the group hands the loop to anyone; the engine never looks inside. */
    lc_group_t *group;

    /* One for the user (dropped by lc_loop_free) plus one per live future. */
    uint32_t refs;

    lc__resource *resources; /* open transports, servers, connects */

    /* Deferred work (lc__loop_defer()), FIFO: run after each iteration's batch and timers. */
    lc__deferred *deferred_head;
    lc__deferred **deferred_tail; /* &deferred_head when empty */

    /* The signal handlers (engine/signal.c): NULL until the first add_signal_handler. */
    struct lc__signals_s *signals;

    /* The fd registry and the watchers of add_reader / sock_* (engine/fdmap.h); NULL until the
     * first registration, freed with the loop's memory (lc__fdmap_free). */
    struct lc__fds_s *fds;
};

void lc__fdmap_free(lc_loop_t *loop);

/* Queues d to run after this iteration's callbacks, before the next poll (loop thread). */
static inline void lc__loop_defer(lc_loop_t *loop, lc__deferred *d)
{
    d->next = NULL;
    *loop->deferred_tail = d;
    loop->deferred_tail = &d->next;
}

void lc__loop_run_deferred_slow(lc_loop_t *loop);
static inline void lc__loop_run_deferred(lc_loop_t *loop)
{
    if (LC_UNLIKELY(loop->deferred_head != NULL))
        lc__loop_run_deferred_slow(loop);
}

void lc__loop_add_resource(lc_loop_t *loop, lc__resource *r);
void lc__loop_remove_resource(lc_loop_t *loop, lc__resource *r);

/* Removes every signal handler of a closing loop (engine/signal.c). */
void lc__signals_close(lc_loop_t *loop);

/* Schedules a future's done callback through the ready queue (engine/loop.c). */
int lc__loop_schedule_done_cb(lc_loop_t *loop, lc_future_t *fut, lc_future_done_cb cb, void *arg);

/* Doubles the ready ring (engine/loop.c). Returns 0 or LC_ENOMEM. */
int lc__ready_grow(lc_loop_t *loop);

/* Appends {fn, arg} to the ready queue: call_soon without a handle, minus the argument and thread
 * checks (loop thread, loop not closed). Returns 0 or LC_ENOMEM. Inline: futures and tasks
 * (other translation units) queue through it on their fast paths. */
static inline int lc__ready_put(lc_loop_t *loop, lc_call_fn fn, void *arg)
{
    if (LC_UNLIKELY(loop->ready_tail - loop->ready_head == loop->ready_cap)) {
        int r = lc__ready_grow(loop);
        if (r != 0)
            return r;
    }
    lc__ready_ent *e = &loop->ready[loop->ready_tail++ & (loop->ready_cap - 1)];
    e->fn = fn;
    e->arg = arg;
    return 0;
}

static inline bool lc__ready_empty(const lc_loop_t *loop)
{
    return loop->ready_head == loop->ready_tail;
}

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

/* Loop references held by futures. */
/* Frees a loop whose last reference is gone (engine/loop.c). */
void lc__loop_destroy(lc_loop_t *loop);
/* Loop thread only. Inline: every future takes and drops one. */
static inline void lc__loop_ref(lc_loop_t *loop) { loop->refs++; }
static inline void lc__loop_unref(lc_loop_t *loop)
{
    if (--loop->refs == 0)
        lc__loop_destroy(loop);
}

/* Debug-mode thread check: 0, or LC_EWRONGTHREAD after reporting it through the handler. */
int lc__loop_check_thread_slow(lc_loop_t *loop, const char *what);
static inline int lc__loop_check_thread(lc_loop_t *loop, const char *what)
{
    if (LC_LIKELY(!loop->debug))
        return 0;
    return lc__loop_check_thread_slow(loop, what);
}

/* The libuv loop under a loopcore loop, for transports and other handles. */
static inline uv_loop_t *lc__loop_uv(lc_loop_t *loop) { return &loop->uv; }

double lc__now(void);

/* The start of every libuv callback that can run user code (a poll's I/O callback, a uv timer
 * that accepts), before anything else: asyncio's order within an iteration is the callbacks
 * ready when the poll returns, then the poll's I/O callbacks, then the due timers (rule 2c). The
 * poll comes first, so the first such callback of a poll runs the ready batch before its own work.
 * Returns false if that batch stopped or closed h: then the callback must return at once
 * without touching its owner (h itself stays valid until its close callback). After a true
 * return the owner must still recheck which events it watches (the batch may have changed
 * them). Loop thread only. */
bool lc__io_enter_slow(lc_loop_t *loop, uv_handle_t *h);
static inline bool lc__io_enter(uv_handle_t *h)
{
    lc_loop_t *loop = lc_container_of(h->loop, lc_loop_t, uv);
    if (LC_LIKELY(!loop->batch_pending))
        return true;
    return lc__io_enter_slow(loop, h);
}

/* ---- The current loop and debug mode (engine/current.c) ------------------------------------ */

/* The loop running in the calling thread, or NULL; lc_loop_run_forever() sets and clears it. */
lc_loop_t *lc__running_loop(void);
void lc__set_running_loop(lc_loop_t *loop);

/* lc_loop_free(): a freed loop stops being the calling thread's current loop. */
void lc__forget_event_loop(lc_loop_t *loop);

/* Whether LOOPCORE_DEBUG asks new loops for debug mode. */
bool lc__env_debug(void);

/* Debug mode's report of a callback that ran for dt seconds, at least slow_callback_duration. */
void lc__log_slow_callback(const char *kind, void *fn, void *arg, double dt);

/* Runs fn(arg) as a plain callback of loop: timed and logged when slow in debug mode (asyncio's
 * slow_callback_duration), straight otherwise. The ready batch and the fd watchers use it. */
static inline void lc__run_plain(lc_loop_t *loop, lc_call_fn fn, void *arg)
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
void lc__log_slow_handle(const lc_handle_t *h, double dt);

/* ---- Handles, for the timers and the inbound queue (engine/loop.c) ------------------------- */

/* Drops the loop's reference to a handle it no longer queues (loop thread). */
void lc__handle_loop_unref(lc_loop_t *loop, lc_handle_t *h);

/* Drops a queued node without running it (lc_loop_close()). */
void lc__discard_node(lc_loop_t *loop, lc__qnode *q);

/* Runs a batch taken off the inbound queue (the drain's fallback when the ring cannot grow). */
void lc__run_chain(lc_loop_t *loop, lc_mpsc_node_t *m);

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

#endif
