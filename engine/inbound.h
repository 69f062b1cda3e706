/* The inbound queue and wake-up (engine/inbound.c): the posting protocol for producers on any
 * thread, and the loop side that drains, sleeps and wakes. Not a public header. */
#ifndef LOOPCORE_ENGINE_INBOUND_H
#define LOOPCORE_ENGINE_INBOUND_H

#include "engine/loop_internal.h"

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

#endif
