/* Declarations shared inside engine/ (and by loopcore's other layers). Not a public header. */
#ifndef LOOPCORE_ENGINE_INTERNAL_H
#define LOOPCORE_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "loopcore.h"

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
    LC__K_CALL = 0, /* fn(arg) */
    LC__K_TIMER,    /* fn(arg) at when */
    LC__K_DONE_CB,  /* a future's done callback: done_cb(fut, arg) */
} lc__handle_kind;

struct lc_handle_s {
    lc_handle_t *next; /* ready queue / due list / handle cache link */
    lc_loop_t *loop;
    union {
        lc_call_fn fn;
        lc_future_done_cb done_cb;
    } cb;
    void *arg;
    lc_future_t *fut; /* K_DONE_CB: the future (the handle holds a reference) */
    double when;      /* K_TIMER */
    uint64_t seq;     /* K_TIMER: tie-break, so equal whens run in the order scheduled */
    uint32_t heap_idx;
    /* References: one for the loop while the handle is queued, one for the user if the
     * scheduling call returned the handle. Loop-thread only, as are handles. */
    uint32_t refs;
    uint8_t state;
    uint8_t kind;
    bool cancelled;
};

struct lc_loop_s {
    uv_loop_t uv;
    uv_timer_t poll_timer; /* bounds one blocking poll: armed for the time to the next timer */

    /* Ready queue: FIFO, singly linked. */
    lc_handle_t *ready_head;
    lc_handle_t *ready_tail;

    /* Timer heap: a binary min-heap on (when, seq) of LC__H_TIMER handles. */
    lc_handle_t **heap;
    uint32_t heap_len;
    uint32_t heap_cap;
    uint64_t timer_seq;

    lc_handle_t *handle_cache; /* freed handles kept for reuse */
    uint32_t handle_cache_len;

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

    /* One for the user (dropped by lc_loop_free) plus one per live future. */
    uint32_t refs;
};

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
    int error;
    void *result;
    /* Done callbacks: the first inline, the rest in a growable array. */
    uint32_t ncallbacks;
    uint32_t cap_callbacks;
    lc__done_entry first;
    lc__done_entry *more;
};

enum { LC__F_PENDING = 0, LC__F_RESULT, LC__F_ERROR, LC__F_CANCELLED };

/* Schedules a future's done callback through the ready queue (engine/loop.c). */
int lc__loop_schedule_done_cb(lc_loop_t *loop, lc_future_t *fut, lc_future_done_cb cb, void *arg);

/* Loop references held by futures. */
void lc__loop_ref(lc_loop_t *loop);
void lc__loop_unref(lc_loop_t *loop);

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

#endif
