/* The timer heap and the timerfd (engine/timers.c), as the scheduler uses them. Not a public
 * header. */
#ifndef LOOPCORE_ENGINE_TIMERS_H
#define LOOPCORE_ENGINE_TIMERS_H

#include "engine/loop_internal.h"

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

/* Pops cancelled entries off the top of the heap (before its top is read). Inline: an
 * iteration with no cancelled timer makes no call for it, as when this was loop.c's own. */
void lc__timers_skip_cancelled_slow(lc_loop_t *loop);
static inline void lc__timers_skip_cancelled(lc_loop_t *loop)
{
    if (loop->heap_cancelled > 0)
        lc__timers_skip_cancelled_slow(loop);
}

/* Arms the timerfd for the earliest timer, or for limit if that is earlier, or disarms it. */
void lc__timers_arm(lc_loop_t *loop, double limit);

/* Runs the timers that were due when the iteration's poll returned (loop->iter_now). Inline: an
 * iteration with no timer makes no call for them. */
void lc__timers_run_due_slow(lc_loop_t *loop);
static inline void lc__timers_run_due(lc_loop_t *loop)
{
    if (loop->heap_len > 0)
        lc__timers_run_due_slow(loop);
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

#endif
