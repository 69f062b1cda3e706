/* loopcore event loop: obtaining the loop, running and stopping it, scheduling callbacks, the
 * error-handling API and debug mode (the first sections of asyncio's "Event Loop" page).
 *
 * Thread rules: every function here is loop-thread-only (the thread that runs the loop, or any
 * one thread while it is not running) unless its comment says otherwise. In debug mode a
 * loop-thread-only scheduling call made from another thread while the loop runs is refused with
 * LC_EWRONGTHREAD and reported through the exception handler.
 *
 * Iteration order (asyncio's, see docs/asyncio-mapping.md): one iteration runs the callbacks that
 * were ready when it started (callbacks they schedule wait for the next iteration), then polls
 * for I/O (timeout 0 if anything is ready or a stop is pending, else until the earliest timer)
 * and runs the I/O callbacks, then runs the timers that are due, in `when` order. */
#ifndef LOOPCORE_LOOP_H
#define LOOPCORE_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lc_loop_s lc_loop_t;
typedef struct lc_handle_s lc_handle_t;
typedef struct lc_future_s lc_future_t;
typedef struct lc_group_s lc_group_t; /* the loop group: loopcore/group.h (declared once: C99) */

/* A plain callback: fn(arg). Python's functools.partial becomes a struct that arg points to. */
typedef void (*lc_call_fn)(void *arg);

/* ---- Obtaining the event loop ---------------------------------------------------------------- */

/** Creates a new, not running, not closed event loop in *out. The caller owns it: lc_loop_close()
 *  then lc_loop_free(). Debug mode is on if the environment variable LOOPCORE_DEBUG is a non-empty
 *  string. Any thread. Returns 0, LC_EINVAL or LC_ENOMEM. */
int lc_new_event_loop(lc_loop_t **out);

/** Stores the loop running in the calling thread in *out. Returns 0, or LC_ENORUNNINGLOOP with
 *  *out = NULL when no loop runs in this thread (outside run_forever / run_until_complete). */
int lc_get_running_loop(lc_loop_t **out);

/** Stores the current loop of this thread in *out: the running loop inside a callback, else the one
 *  set with lc_set_event_loop(). If none is set and lc_set_event_loop() was never called in this
 *  thread, creates a loop, sets it as current and returns it (asyncio does this on the main thread
 *  only; loopcore does it on every thread, since C programs have no "main thread" policy); once
 *  that loop is freed with lc_loop_free(), the next call creates another. Such a
 *  loop is owned by the thread's current-loop slot: release it with lc_set_event_loop(NULL) after
 *  lc_loop_close() + lc_loop_free(), or free it yourself. Returns 0, LC_ENOCURRENTLOOP (set to NULL
 *  by the user) or LC_ENOMEM. */
int lc_get_event_loop(lc_loop_t **out);

/** Sets loop (or NULL) as the current loop of the calling thread. Does not take ownership.
 *  Returns 0, or LC_ECLOSED if loop is closed. */
int lc_set_event_loop(lc_loop_t *loop);

/* ---- Running and stopping -------------------------------------------------------------------- */

/** Runs the loop until lc_loop_stop(). If stop was called before, runs exactly one iteration (poll
 *  with timeout 0, the callbacks already scheduled and those from I/O, due timers) and returns.
 *  Returns 0 when stopped, LC_ECLOSED, LC_ERUNNING (this loop already runs) or LC_EOTHERLOOP
 *  (another loop runs in this thread). */
int lc_loop_run_forever(lc_loop_t *loop);

/** Runs the loop until fut is done and returns its outcome: 0 with *result (may be NULL) set to
 *  its result, its error code, LC_ECANCELLED if it was cancelled, or LC_ESTOPPED if the loop
 *  stopped first. Also LC_EWRONGLOOP if fut belongs to another loop (fut is left untouched), and
 *  the errors of lc_loop_run_forever(). Does not consume the caller's reference to fut. */
int lc_loop_run_until_complete(lc_loop_t *loop, lc_future_t *fut, void **result);

/** Asks the loop to stop: while running, after the current batch of callbacks; before
 *  run_forever, after one iteration. Idempotent; cleared when run_forever returns; does nothing
 *  on a closed loop. Loop thread only (from another thread, post it with call_soon_threadsafe).
 *  Returns 0 or LC_EINVAL. */
int lc_loop_stop(lc_loop_t *loop);

/** True while run_forever / run_until_complete runs the loop. Any thread (a racy snapshot). */
bool lc_loop_is_running(const lc_loop_t *loop);

/** True once lc_loop_close() has succeeded. */
bool lc_loop_is_closed(const lc_loop_t *loop);

/** The loop group that made loop (lc_group_create(), group.h), or NULL: a loop of
 *  lc_new_event_loop(), or NULL itself. Set once, when the group makes the loop, never by the
 *  thread that runs it (its name included): the executor's default rule reads it (executor.h).
 *  Any thread. */
lc_group_t *lc_loop_group(const lc_loop_t *loop);

/** Closes the loop: every pending callback, timer and done callback is discarded without running
 *  and freed (handles the user still holds stay valid; lc_handle_cancel on them does nothing);
 *  libuv resources are closed. Idempotent and irreversible. Returns 0, or LC_ERUNNING (state
 *  unchanged) while the loop runs. */
int lc_loop_close(lc_loop_t *loop);

/** Closes the loop if needed, clears it from this thread's current-loop slot, and releases the
 *  caller's reference. The memory goes when the last future of the loop is released too. After
 *  this call the caller must not use loop. Returns 0, LC_EINVAL or LC_ERUNNING (nothing done). */
int lc_loop_free(lc_loop_t *loop);

/* ---- Scheduling callbacks -------------------------------------------------------------------- */

/** Schedules fn(arg) for the next iteration; callbacks run in the order scheduled, each exactly
 *  once. If handle is not NULL, *handle receives a reference the caller must release with
 *  lc_handle_unref(). Returns 0, LC_EINVAL, LC_ECLOSED, LC_ENOMEM, or LC_EWRONGTHREAD (debug). */
int lc_loop_call_soon(lc_loop_t *loop, lc_call_fn fn, void *arg, lc_handle_t **handle);

/** Schedules fn(arg) to run delay seconds from now (zero and negative delays make a timer that
 *  is due at once; any large delay, even INFINITY, is accepted). Never runs before its when
 *  (lc_loop_time() + delay). Handle as for call_soon. Returns 0, LC_EINVAL (NaN delay, NULL fn),
 *  LC_ECLOSED, LC_ENOMEM or LC_EWRONGTHREAD (debug). */
int lc_loop_call_later(lc_loop_t *loop, double delay, lc_call_fn fn, void *arg,
                       lc_handle_t **handle);

/** Schedules fn(arg) at the absolute time when, on lc_loop_time()'s clock. Timers with the same
 *  when run in the order scheduled. Same returns as lc_loop_call_later(). */
int lc_loop_call_at(lc_loop_t *loop, double when, lc_call_fn fn, void *arg, lc_handle_t **handle);

/** The loop's clock: CLOCK_MONOTONIC in seconds, with nanosecond resolution. Any thread. */
double lc_loop_time(const lc_loop_t *loop);

/* ---- Handles (asyncio.Handle and TimerHandle) -------------------------------------------------
 *
 * A handle is reference-counted (the object model, loopcore.h): the loop holds one reference while
 * the callback is queued, the caller one if the scheduling call returned the handle. Cancelling
 * and releasing are separate: lc_handle_cancel() drops no reference, lc_handle_unref() cancels
 * nothing. */

/** Cancels the callback if it has not run yet; a no-op (never an error, never a use of freed
 *  memory) if it ran, was cancelled or was discarded by close. lc_handle_cancelled() is true
 *  afterwards in every case, as in asyncio. Loop thread only. Returns 0 or LC_EINVAL. */
int lc_handle_cancel(lc_handle_t *handle);

/** True once lc_handle_cancel() was called on the handle. */
bool lc_handle_cancelled(const lc_handle_t *handle);

/** Stores the absolute time a timer handle was scheduled for in *when: exactly the value given to
 *  call_at, or time()+delay for call_later. Returns 0, or LC_EINVAL for a call_soon handle. */
int lc_handle_when(const lc_handle_t *handle, double *when);

/** Adds a reference to a handle the caller holds one to (a scheduling call's, or one added
 *  here); each is dropped with lc_handle_unref(). Returns handle (NULL is returned as is). Loop
 *  thread only; a handle of call_soon_threadsafe: any thread. */
lc_handle_t *lc_handle_ref(lc_handle_t *handle);

/** Drops a reference: the one returned by a scheduling call, or one of lc_handle_ref(). After
 *  dropping its last one the caller must not use the handle. Does not cancel. Loop thread only;
 *  a handle of call_soon_threadsafe: any thread. NULL is ignored. */
void lc_handle_unref(lc_handle_t *handle);

/* ---- Tasks: the factory hook (tasks themselves: include/loopcore/task.h, a later issue) --------
 */

/* A coroutine body: runs with arg, returns 0 and stores its result, or returns a negative code. */
typedef int (*lc_coro_fn)(void *arg, void **result);

/* A task factory: makes a future-compatible task that runs coro(coro_arg) on loop, stores it in
 * *task (one reference for the caller) and returns 0, or returns a negative code. */
typedef int (*lc_task_factory_fn)(lc_loop_t *loop, lc_coro_fn coro, void *coro_arg,
                                  void *factory_arg, lc_future_t **task);

/** Sets the factory that create_task will use; NULL restores the default. Returns 0, LC_EINVAL. */
int lc_loop_set_task_factory(lc_loop_t *loop, lc_task_factory_fn factory, void *factory_arg);

/** Returns the task factory, or NULL when the default is in use; *factory_arg (if not NULL)
 *  receives its argument. */
lc_task_factory_fn lc_loop_get_task_factory(const lc_loop_t *loop, void **factory_arg);

/* ---- Error handling API ---------------------------------------------------------------------- */

/* The context of asyncio's exception handler: the spec's keys. Members that do not apply are NULL
 * (socket: -1, error: 0). The pointers are valid only during the handler call. */
typedef struct lc_exception_context_s {
    const char *message; /* always set */
    int error;           /* "exception": a negative loopcore/system code, or 0 */
    lc_future_t *future; /* "future" (a future or task) */
    lc_handle_t *handle; /* "handle" */
    void *protocol;      /* "protocol" */
    void *transport;     /* "transport" */
    int socket;          /* "socket": a file descriptor, or -1 */
} lc_exception_context_t;

/* Initializer for a context with no keys but the message: LC_EXCEPTION_CONTEXT_INIT("text"). */
#define LC_EXCEPTION_CONTEXT_INIT(msg)                                                             \
    {                                                                                              \
        .message = (msg), .error = 0, .future = NULL, .handle = NULL, .protocol = NULL,            \
        .transport = NULL, .socket = -1                                                            \
    }

typedef void (*lc_exception_handler_fn)(lc_loop_t *loop, const lc_exception_context_t *context,
                                        void *arg);

/** Sets handler(loop, context, arg) as the loop's exception handler; NULL restores the default.
 *  Returns 0 or LC_EINVAL. */
int lc_loop_set_exception_handler(lc_loop_t *loop, lc_exception_handler_fn handler, void *arg);

/** Returns the custom handler, or NULL when the default is in use; *arg (if not NULL) receives its
 *  argument. */
lc_exception_handler_fn lc_loop_get_exception_handler(const lc_loop_t *loop, void **arg);

/** The default handler: writes the message, then one "key: value" line per other key that is set,
 *  sorted by name (future, handle, protocol, socket, transport), and last the error as its name
 *  and text (as asyncio prints the exception last, after the keys), to stderr. Callable from a
 *  custom handler. */
void lc_loop_default_exception_handler(lc_loop_t *loop, const lc_exception_context_t *context);

/** Calls the loop's current exception handler with context (passed through unchanged). Any thread
 *  may call it; the handler then runs on the calling thread. Returns 0 or LC_EINVAL. */
int lc_loop_call_exception_handler(lc_loop_t *loop, const lc_exception_context_t *context);

/* ---- Debug mode ------------------------------------------------------------------------------ */

/** True if debug mode is on (initially: LOOPCORE_DEBUG is a non-empty string). */
bool lc_loop_get_debug(const lc_loop_t *loop);

/** Turns debug mode on or off. Returns 0 or LC_EINVAL. */
int lc_loop_set_debug(lc_loop_t *loop, bool enabled);

/** In debug mode, a callback that runs for at least this many seconds is logged to stderr as
 *  "Executing <...> took N.NNN seconds". Default 0.1. */
double lc_loop_get_slow_callback_duration(const lc_loop_t *loop);

/** Sets the slow-callback threshold in seconds (>= 0). Returns 0 or LC_EINVAL. */
int lc_loop_set_slow_callback_duration(lc_loop_t *loop, double seconds);

#ifdef __cplusplus
}
#endif

#endif
