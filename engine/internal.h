/* Declarations shared inside engine/ (and by loopcore's other layers). Not a public header. */
#ifndef LOOPCORE_ENGINE_INTERNAL_H
#define LOOPCORE_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

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
 * and takes exactly that many messages off the lane. See lc__loop_post(), poll_io() and
 * lc_loop_close(). */
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
     * off the inbound queue (engine/loop.c, ready_append_chain()). */
    lc__ready_ent *ready;
    uint64_t ready_head, ready_tail;
    uint32_t ready_cap;
    /* The iteration (engine/loop.c, "Running"): the ready batch is [ready_head, batch_end), fixed
     * before the poll; batch_pending says the poll has not yet returned to us, so the first I/O
     * callback of the poll begins the batch (lc__io_enter()); iter_now is the clock read when the
     * batch begins, against which the iteration's due timers are taken. */
    uint64_t batch_end;
    bool batch_pending;
    double iter_now;

    /* The inbound lanes of threadsafe posts, drained at the start of each iteration. */
    lc__lane lanes[LC__LANES];
    /* Recycled call_soon_threadsafe handles (engine/loop.c, "Threadsafe handles"). ts_free is
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
    /* The loop announced that it is about to block in a poll (poll_io(), lc__loop_post()). */
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
    lc__timer_ent *due; /* the timers being run by run_due_timers(), reused */
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

    /* The default executor of run_in_executor (executor/ reads and writes these; the engine only
     * releases it at close). release is the owned executor's shutdown-without-wait, NULL when the
     * loop does not own default_executor; lc_loop_close() calls it and clears both. */
    void *default_executor;
    void (*default_executor_release)(void *executor);

    /* One for the user (dropped by lc_loop_free) plus one per live future. */
    uint32_t refs;

    lc__resource *resources; /* open transports, servers, connects */
};

void lc__loop_add_resource(lc_loop_t *loop, lc__resource *r);
void lc__loop_remove_resource(lc_loop_t *loop, lc__resource *r);

/* Futures (engine/future.c). */
typedef struct lc__done_entry_s {
    lc_future_done_cb cb;
    void *arg;
} lc__done_entry;

struct lc_future_s {
    lc_loop_t *loop;
    uint32_t refs;
    uint8_t state; /* LC__F_* */
    bool error_retrieved;
    bool is_task; /* the head of a task (engine/task.c): cancel and set_result go there */
    int error;
    void *result;
    void (*result_dtor)(void *result); /* owned result: freed with the future */
    /* Done callbacks: the first inline, the rest in a growable array. */
    uint32_t ncallbacks;
    uint32_t cap_callbacks;
    lc__done_entry first;
    lc__done_entry *more;
};

enum { LC__F_PENDING = 0, LC__F_RESULT, LC__F_ERROR, LC__F_CANCELLED };

/* Sets a result the future owns: dtor(result) runs when the future is freed. */
int lc__future_set_result_owned(lc_future_t *fut, void *result, void (*dtor)(void *result));

/* Marks fut done (state LC__F_*) and schedules its done callbacks; what set_result, set_error
 * and cancel do, without their refusal of tasks. Returns 0 or LC_EINVALIDSTATE. */
int lc__future_finish(lc_future_t *fut, uint8_t state, void *result, int err);

/* Tasks (engine/task.c): lc_future_cancel() on a task; lc_loop_close()'s unwinding of the live
 * tasks (after the queues were discarded, before transports are torn down). */
int lc__task_cancel(lc_future_t *task);
void lc__tasks_close(lc_loop_t *loop);

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

/* The done callback that a suspended task registers on the future it awaits (engine/task.c).
 * When that future completes, future.c does not schedule it as a done callback (a handle and a
 * reference to the future) but puts lc__task_wakeup_run(task) straight on the ready queue: the
 * task holds its own reference to the future it awaits, and a suspended task cannot finish
 * before it is resumed (task.c), so the entry needs neither. */
void lc__task_wakeup(lc_future_t *fut, void *arg);
void lc__task_wakeup_run(void *task);

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

/* ---- Handles, for the timers and the inbound queue (engine/loop.c) ------------------------- */

/* Drops the loop's reference to a handle it no longer queues (loop thread). */
void lc__handle_loop_unref(lc_loop_t *loop, lc_handle_t *h);

/* Drops a queued node without running it (lc_loop_close()). */
void lc__discard_node(lc_loop_t *loop, lc__qnode *q);

/* Runs a batch taken off the inbound queue (the drain's fallback when the ring cannot grow). */
void lc__run_chain(lc_loop_t *loop, lc_mpsc_node_t *m);

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
void lc__log_slow_handle(const lc_handle_t *h, double dt);

/* ---- Timers, for the scheduler (engine/timers.c) ------------------------------------------- */

/* Creates the timerfd and watches it; 0 or a negative errno. lc__timers_destroy() closes it. */
int lc__timers_init(lc_loop_t *loop);
void lc__timers_destroy(lc_loop_t *loop);

/* lc_loop_close(): discards every timer still in the heap and frees the heap. */
void lc__timers_close(lc_loop_t *loop);

/* Adds e to the heap. Returns 0 or LC_ENOMEM. */
int lc__timer_push(lc_loop_t *loop, lc__timer_ent e);

/* Rebuilds the heap without its cancelled entries (see lc__timer_cancel()). */
void lc__timers_compact(lc_loop_t *loop);

/* Pops cancelled entries off the top of the heap (before its top is read). */
void lc__timers_skip_cancelled(lc_loop_t *loop);

/* Arms the timerfd for the earliest timer, or for limit if that is earlier, or disarms it. */
void lc__timers_arm(lc_loop_t *loop, double limit);

/* Runs the timers that were due when the iteration's poll returned (loop->iter_now). */
void lc__timers_run_due(lc_loop_t *loop);

/* ---- The inbound queue and wake-up, loop side (engine/inbound.c) --------------------------- */

/* Creates the eventfd and the lanes; 0 or a negative errno. lc__inbound_start() watches the
 * eventfd; lc__inbound_destroy() closes it and frees the recycled handles, with the loop's
 * memory. */
int lc__inbound_init(lc_loop_t *loop);
void lc__inbound_start(lc_loop_t *loop);
void lc__inbound_destroy(lc_loop_t *loop);

/* lc_loop_close(): closes the lanes to producers and discards every message posted before. */
void lc__inbound_close(lc_loop_t *loop);

/* Moves the messages of the inbound lanes to the ready queue (each iteration). Returns how many. */
size_t lc__inbound_drain(lc_loop_t *loop, bool *stalled);

/* Spins on the inbound lanes before a sleep (spin_budget). Returns true if something became
 * ready. */
bool lc__inbound_spin(lc_loop_t *loop, uint64_t timeout_ms, double start);

/* The loop is about to block in a poll: announces the sleep to producers and looks at the lanes
 * once more. Returns false if messages came (the announcement is withdrawn: poll without
 * blocking), else true with *limit the latest time the sleep may last (INFINITY: until woken or
 * the next timer). lc__inbound_end_sleep() withdraws the announcement after the poll. */
bool lc__inbound_announce_sleep(lc_loop_t *loop, double *limit);
void lc__inbound_end_sleep(lc_loop_t *loop);

/* Publishes the loop's batch of finished threadsafe handles (see lc__ts_recycle()). */
void lc__ts_publish(lc_loop_t *loop);

#define LC__POST_CLOSED 1u
#define LC__POST_ONE 2u

/* The lane the calling thread posts to (any thread). */
lc__lane *lc__post_lane(lc_loop_t *loop);

/* Posts a queue node (handle or call) to loop's inbound queue from any thread. */
int lc__loop_post(lc_loop_t *loop, lc__qnode *q);

/* Handle allocation for threadsafe posts (any thread): from the calling thread's cache of
 * recycled handles, refilled from loop's return stack, else malloc. A handle that could not be
 * posted goes back to the calling thread's cache. */
lc_handle_t *lc__handle_new_threadsafe(lc_loop_t *loop, lc_call_fn fn, void *arg, bool user_ref);
void lc__handle_free_unposted(lc_handle_t *h);

/* ---- Servers fed from elsewhere (engine/server.c; a group server's hand-off mode) ------------ */

/* A server with no listening socket, on loop (its thread), serving only what is adopted into it
 * (lc__server_adopt). Freed like any server (lc_server_free). NULL if no memory or loop closed. */
lc_server_t *lc__server_new_bare(lc_loop_t *loop, lc_protocol_factory_fn factory,
                                 void *factory_arg);

/* Makes fd, a connected non-blocking socket accepted elsewhere, a transport of s on s's loop, as
 * if s had accepted it: s's factory, TCP_NODELAY, counted in lc_server_active() and waited for by
 * lc_server_wait_closed() until the transport is freed. No future. Takes fd (closed on failure).
 * s's loop thread. Returns 0, LC_ECLOSED (s is closed), or the factory's / transport's error. */
int lc__server_adopt(lc_server_t *s, int fd);

/* Sets hook(arg), called once, at the moment s is closed and has no connection left (its
 * wait_closed futures resolve then): on s's loop thread, inside lc_server_close() or the freeing
 * of s's last transport; or on the thread that closes s's loop (lc_loop_close() closes s, then
 * frees its transports). The hook must not use s. It may drop s's creator reference
 * (lc_server_free) unless the close that fires it is that lc_server_free() itself: the close or
 * the connection being freed holds a reference of its own until the hook returns. Set on s's
 * loop thread. */
void lc__server_set_drained_hook(lc_server_t *s, void (*hook)(void *arg), void *arg);

/* The libuv loop under a loopcore loop, for transports and other handles. */
static inline uv_loop_t *lc__loop_uv(lc_loop_t *loop) { return &loop->uv; }

double lc__now(void);

/* The start of every libuv callback that can run user code (a poll's I/O callback, a uv timer
 * that accepts), before anything else: asyncio's order within an iteration is the callbacks
 * ready before the poll, then the poll's I/O callbacks, then the due timers (rule 2c). The poll
 * comes first, so the first such callback of a poll runs the ready batch before its own work.
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

#endif
