/** @file
 *  @ingroup threadsafe
 *  @defgroup threadsafe Cross-thread calls (loopcore/threadsafe.h)
 *
 * Cross-thread calls into a loop: call_soon_threadsafe and its zero-allocation form.
 *
 * Every loop has a few inbound lock-free MPSC queues ("lanes", threadsafe/mpsc.h); a thread
 * always posts to the same lane, and threads are spread over the lanes, so that producers do not
 * contend with each other. A post from any thread pushes a message onto its lane; the loop drains
 * the lanes at the start of each iteration and appends their messages to its ready queue: they
 * run in that iteration's batch, after the callbacks already ready. Callbacks from one producer
 * run in the order it posted them; posts from different threads have no order between them.
 *
 * Wake-ups coalesce. A loop announces that it is about to sleep (a flag, then a re-check of the
 * queue); a producer writes the loop's eventfd only if the loop announced it and nobody has
 * woken it since. While the loop is awake, a post makes no system call; a burst of posts to a
 * sleeping loop costs one wake-up.
 *
 * Lifetime rule. Any thread may post to a loop from lc_new_event_loop() until lc_loop_free() is
 * called. From the moment lc_loop_close() starts, posts return LC_ECLOSED and the message is not
 * taken (the caller still owns it; nothing runs). Close waits for the messages of posts already
 * in progress, then discards every message still queued: call_soon_threadsafe callbacks are
 * dropped and freed without running (as asyncio does), lc_call_t messages are handed back to
 * their owner by calling their callback with status LC_ECLOSED. Posting during or after
 * lc_loop_free() is a use after free: every post must have returned before that call (stop the
 * producers first; a loop group does this for its loops).
 *
 * Memory. call_soon_threadsafe allocates a handle per call only until handles come back: the
 * loop returns the handles it has finished with to the posting threads, which keep them in a
 * per-thread cache for their next calls (to any loop). So memory stays bounded by the most
 * messages ever in flight; a thread's cache is freed when the thread exits, the handles a loop
 * still holds when its memory is freed (lc_loop_free()).
 * @{ */
#ifndef LOOPCORE_THREADSAFE_H
#define LOOPCORE_THREADSAFE_H

#include <stddef.h>
#include <stdint.h>

#include "loopcore/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/** Schedules fn(arg) on loop's thread from any thread (asyncio's call_soon_threadsafe). If handle
 *  is not NULL, *handle receives a reference that any thread may cancel (lc_handle_cancel) and
 *  must release (lc_handle_unref). Returns 0, LC_EINVAL, LC_ENOMEM or LC_ECLOSED (fn will not
 *  run). Any thread. */
int lc_loop_call_soon_threadsafe(lc_loop_t *loop, lc_call_fn fn, void *arg, lc_handle_t **handle);

/* ---- Zero-allocation posts ------------------------------------------------------------------- */

typedef struct lc_call_s lc_call_t;

/** Runs on the loop's thread with status 0, or with LC_ECLOSED when the loop was closed before the
 *  call ran (the message is handed back; the callback may free the struct that embeds it). */
typedef void (*lc_call_cb)(lc_call_t *call, int status);

/** A message the caller embeds in its own struct (recover it with lc_container_of). The caller
 *  owns the memory; between a successful post and its callback the loop uses it. Once the callback
 *  started, the struct is the caller's again and may be posted anew, to any loop. */
struct lc_call_s {
    void *data; /**< the caller's; loopcore never touches it */
    /** private */
    void *_priv[10];
};

/** The struct of type that embeds member at ptr (an lc_call_t or lc_work_t in the caller's
 *  struct). */
#define lc_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/** Posts call to loop from any thread: cb(call, 0) runs on the loop's thread, in post order with
 *  the producer's other posts. No allocation. Returns 0, LC_EINVAL, or LC_ECLOSED (the call is
 *  not taken; cb does not run). */
int lc_loop_post_threadsafe(lc_loop_t *loop, lc_call_t *call, lc_call_cb cb);

/* ---- Tuning ---------------------------------------------------------------------------------- */

/** Sets how long (seconds, >= 0) the loop keeps polling its inbound queue before it sleeps, after
 *  cross-thread work last arrived. Waking a sleeping loop costs tens of microseconds on virtual
 *  machines, a spinning one about one; the budget is spent only while cross-thread work keeps
 *  arriving, so an idle loop uses no CPU. Default 0 for a standalone loop (loop groups set their
 *  own). Loop thread, or before the loop runs. Returns 0 or LC_EINVAL. */
int lc_loop_set_spin_budget(lc_loop_t *loop, double seconds);

/** The spin budget in seconds. */
double lc_loop_get_spin_budget(const lc_loop_t *loop);

/** Counters of the inbound queue, for tests and benchmarks. Loop thread, or after the loop
 *  stopped. */
typedef struct lc_loop_threadsafe_stats_s {
    uint64_t received;    /**< messages taken off the inbound queue */
    uint64_t wakeups;     /**< times the loop was woken through its eventfd */
    uint64_t wake_writes; /**< eventfd writes by producers (at most one per sleep) */
    uint64_t sleeps;      /**< times the loop announced it would sleep */
    uint64_t discarded;   /**< messages dropped or handed back by close */
} lc_loop_threadsafe_stats_t;

/** Copies the counters into *stats. Returns 0 or LC_EINVAL. */
int lc_loop_get_threadsafe_stats(const lc_loop_t *loop, lc_loop_threadsafe_stats_t *stats);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
