/** @file
 *  @ingroup future
 *  @defgroup future Futures (loopcore/future.h)
 *
 * loopcore futures (asyncio.Future).
 *
 * A future belongs to one loop and is used on that loop's thread only. It is reference counted:
 * lc_loop_create_future() gives the caller one reference; lc_future_ref() adds one and
 * lc_future_unref() drops one; the future is freed when the last reference goes. The loop holds
 * its own references while a done callback of the future is scheduled, so callbacks always see a
 * live future. A future keeps its loop's memory alive (not the loop running or open).
 *
 * The result is an opaque void *: loopcore never reads or frees it. An error is a negative code.
 * Cancellation is a status of its own: lc_future_result() returns LC_ECANCELLED.
 *
 * If a future that failed is freed and its error was never retrieved (lc_future_result or
 * lc_future_error), the loop's exception handler is called with "Future exception was never
 * retrieved", as asyncio does.
 * @{ */
#ifndef LOOPCORE_FUTURE_H
#define LOOPCORE_FUTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "loopcore/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/** A done callback: cb(fut, arg), run through call_soon once fut is done. */
typedef void (*lc_future_done_cb)(lc_future_t *fut, void *arg);

/** Creates a pending future attached to loop in *out (one reference for the caller).
 *  Returns 0, LC_EINVAL, LC_ECLOSED, LC_ENOMEM or LC_EWRONGTHREAD (debug). */
int lc_loop_create_future(lc_loop_t *loop, lc_future_t **out);

/** Adds a reference; returns fut. */
lc_future_t *lc_future_ref(lc_future_t *fut);

/** Drops a reference; frees the future with the last one. NULL is ignored. */
void lc_future_unref(lc_future_t *fut);

/** Marks fut done with result and schedules its done callbacks. Returns 0, LC_EINVAL, or
 *  LC_EINVALIDSTATE if fut is already done. */
int lc_future_set_result(lc_future_t *fut, void *result);

/** Marks fut done with the error err (negative, not LC_ECANCELLED: use lc_future_cancel) and
 *  schedules its done callbacks. Returns 0, LC_EINVAL or LC_EINVALIDSTATE. */
int lc_future_set_error(lc_future_t *fut, int err);

/** Cancels fut if it is pending and schedules its done callbacks. Returns 1 if it was cancelled
 *  by this call, 0 if it was already done, LC_EINVAL for NULL. */
int lc_future_cancel(lc_future_t *fut);

/** True once fut has a result, an error or was cancelled. */
bool lc_future_done(const lc_future_t *fut);

/** True if fut was cancelled. */
bool lc_future_cancelled(const lc_future_t *fut);

/** Returns fut's outcome: 0 with *result (if not NULL) set, its error code, LC_ECANCELLED, or
 *  LC_EINVALIDSTATE while pending (LC_EINVAL for NULL). Marks an error as retrieved. */
int lc_future_result(lc_future_t *fut, void **result);

/** Stores fut's error in *err (0 if it has a result) and returns 0; returns LC_ECANCELLED if it
 *  was cancelled, LC_EINVALIDSTATE while pending, LC_EINVAL for NULL. Marks the error retrieved. */
int lc_future_error(lc_future_t *fut, int *err);

/** Adds cb(fut, arg) to run (through call_soon, in the order added) when fut is done; if fut is
 *  already done it is scheduled at once. Returns 0, LC_EINVAL, LC_ENOMEM, LC_ECLOSED. */
int lc_future_add_done_callback(lc_future_t *fut, lc_future_done_cb cb, void *arg);

/** Removes every not-yet-scheduled (cb, arg) pair from fut's done callbacks; returns how many
 *  were removed (>= 0), or LC_EINVAL. */
int lc_future_remove_done_callback(lc_future_t *fut, lc_future_done_cb cb, void *arg);

/** Returns the loop fut is attached to. */
lc_loop_t *lc_future_get_loop(const lc_future_t *fut);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
