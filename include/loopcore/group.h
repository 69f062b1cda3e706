/* loopcore loop groups (one loop per core) and cross-loop calls with results.
 *
 * A group owns N loops, each run by its own thread, each thread pinned to one CPU (unless the
 * group is made with .unpinned). The loops keep running between batches of work: a loop of a
 * started group leaves lc_loop_run_forever() only when lc_group_stop() posts it a stop. Life
 * cycle (the group's close is stop + join, threading's verbs; see the object model, loopcore.h):
 *
 *   lc_group_create()  makes the loops (no threads yet). The loops exist and accept posts.
 *   lc_group_start()   starts one thread per loop; returns once every loop runs and ran its hook.
 *   lc_group_stop()    posts a stop to every loop (any thread, a loop of the group included).
 *   lc_group_join()    waits until every thread has left its loop.
 *   lc_group_free()    stops and joins if needed, closes every loop, frees everything.
 *
 * A group is started at most once. Between stop and free the loops are stopped but open: posts
 * and submits to them are still accepted and wait in their queues. lc_group_free() closes the
 * loops one after the other, on its own thread, after every loop thread has been joined; closing
 * a loop discards its pending call_soon / call_soon_threadsafe callbacks without running them and
 * hands its queued lc_call_t messages back to their owners (their callback runs with LC_ECLOSED,
 * see threadsafe.h). Nothing queued is run by the shutdown. Any thread that posts to a loop of the
 * group (lc_loop_post_threadsafe, lc_loop_call_soon_threadsafe, lc_loop_submit*) must be done
 * before lc_group_free() is called: a post during or after it is a use after free.
 *
 * Cross-loop calls (Seastar's submit_to). lc_loop_submit() sends one message, which embeds an
 * lc_call_t, from the calling loop (the origin) to the target; the target runs fn, then posts the
 * same message back, and the origin resolves its future. No allocation besides that message and
 * the future. Lifetime rules of a submitted message:
 *   - target open: fn runs on the target's thread, exactly once; the message goes back.
 *   - target closed before fn ran (the message is handed back with LC_ECLOSED on the thread that
 *     closes the target): fn does not run; the message goes back to the origin with LC_ECLOSED.
 *   - back at an open origin: the future is resolved on the origin's thread with fn's result or
 *     error, or LC_ECLOSED, unless it is already done (cancelled), in which case the outcome is
 *     dropped (loopcore never frees a result); then the message is freed.
 *   - origin closed as well (its close hands the message back, or the post back is refused):
 *     the message is released on the thread at hand: the future, if still pending, is marked done
 *     with fn's outcome if fn ran, else LC_ECLOSED (an error counts as retrieved, so there is no
 *     "never retrieved" report), and the message's reference to it is dropped. Its done
 *     callbacks do not run (the loop is closed). This is only safe when nothing else uses the
 *     origin's futures at the same time, which holds in lc_group_free() (all threads joined, one
 *     thread closes). Hence the rule for loops outside a group: close an origin only once its
 *     submitted futures are done, or once their targets are closed (happens-before the origin's
 *     close); never close an origin and a target on two threads at once.
 *
 * Thread rules are in each comment. Every function returns LC_EINVAL for a NULL argument where an
 * object is required or an index out of range. */
#ifndef LOOPCORE_GROUP_H
#define LOOPCORE_GROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "loopcore/future.h"
#include "loopcore/loop.h"
#include "loopcore/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The default spin budget of a group's loops, in seconds (lc_loop_set_spin_budget). */
#define LC_GROUP_DEFAULT_SPIN 200e-6

/* lc_group_t, the group, is declared in loopcore/loop.h (a loop knows its group). */

/* The per-loop start hook: runs on the loop's own thread, inside the running loop
 * (lc_get_running_loop() gives loop), as the loop's first callback, before anything else. */
typedef void (*lc_group_start_fn)(lc_loop_t *loop, unsigned index, void *arg);

/* A cross-loop call: runs on target's thread inside target's loop. Returns 0 and stores its result
 * in *result (initially NULL), or returns a negative code. */
typedef int (*lc_submit_fn)(lc_loop_t *target, void *arg, void **result);

/* Options of lc_group_create(): write them with designated initializers; zero means default. */
typedef struct lc_group_opts_s {
    unsigned nloops; /* 0: one loop per CPU of the list in use (cpus, else the affinity mask) */
    const int *cpus; /* CPUs to pin to, in loop order, wrapping around; NULL: the CPUs this
                        process may run on (sched_getaffinity), ascending. Each must be in the
                        process's affinity mask. Read during create only. */
    size_t ncpus;    /* entries in cpus (0 if and only if cpus is NULL) */
    bool unpinned;   /* true: the threads are not pinned (lc_group_cpu() gives -1); default:
                        each thread pinned to its CPU */
    lc_group_start_fn on_start; /* per-loop start hook, or NULL */
    void *on_start_arg;
    double spin_budget; /* seconds; 0: LC_GROUP_DEFAULT_SPIN; negative: no spin */
} lc_group_opts_t;

/* ---- Life cycle ------------------------------------------------------------------------------ */

/** Creates a group of loops in *out (NULL on failure), with no threads yet; opts NULL for the
 *  defaults. Any thread. The caller owns the group: lc_group_free(). Returns 0, LC_EINVAL (bad
 *  option, a CPU outside the affinity mask), LC_ENOMEM, or an error of lc_new_event_loop(). */
int lc_group_create(lc_group_t **out, const lc_group_opts_t *opts);

/** Starts one thread per loop, named "lc-loop-<i>" (for debuggers and top; lc_loop_group() says
 *  which loops are a group's, not thread names) and pinned to its CPU; each runs
 *  lc_loop_run_forever() and first the start hook. Returns once every hook has run. Any thread
 *  but a loop of this group; at most once per group. Returns 0, LC_EINVAL, LC_EINVALIDSTATE
 *  (already started, or stopped before start), or a thread-creation error (the threads already
 *  started are then stopped and joined; the group can only be freed). */
int lc_group_start(lc_group_t *g);

/** Asks every loop to stop: posts lc_loop_stop() to each with lc_loop_post_threadsafe() (the
 *  messages live in the group). Loops finish their current batch, then leave run_forever. Any
 *  thread, a loop of this group included; idempotent; on a group never started it only forbids a
 *  later start. Returns 0 or LC_EINVAL. */
int lc_group_stop(lc_group_t *g);

/** Waits until every loop thread has returned (after lc_group_stop(), from any thread). Any thread
 *  but a loop of this group (LC_EBUSY: it would wait for itself); several threads may join at
 *  once. Returns 0, LC_EINVAL, LC_EBUSY, or LC_EINVALIDSTATE if the group was never started. */
int lc_group_join(lc_group_t *g);

/** Stops and joins the group if needed, closes every loop (queued messages are discarded or handed
 *  back, see the top of this file), frees the loops and the group. Any thread but a loop of this
 *  group, once nothing else uses the group or posts to its loops. Futures created on the loops
 *  stay valid until their last reference goes. Returns 0, LC_EINVAL or LC_EBUSY (nothing done). */
int lc_group_free(lc_group_t *g);

/* ---- Members --------------------------------------------------------------------------------- */

/** The number of loops (0 for NULL). Any thread. */
unsigned lc_group_size(const lc_group_t *g);

/** Loop i (NULL if g is NULL or i is out of range). Any thread; valid until lc_group_free(). */
lc_loop_t *lc_group_loop(const lc_group_t *g, unsigned i);

/** The CPU loop i's thread is pinned to, -1 if not pinned, LC_EINVAL. Any thread. */
int lc_group_cpu(const lc_group_t *g, unsigned i);

/** The index of loop in g, or -1 if it is not a member (or an argument is NULL). Any thread. */
int lc_group_index(const lc_group_t *g, const lc_loop_t *loop);

/* The group a loop belongs to: lc_loop_group(loop), in loop.h. */

/* ---- Cross-loop calls ------------------------------------------------------------------------ */

/** Runs fn(target, arg, &result) on target's thread and resolves *fut, a new future of the calling
 *  loop (the origin; one reference for the caller), on the origin's thread with fn's result or
 *  error, or LC_ECLOSED if target was closed before fn ran. Also when target is the origin, the
 *  call goes through the inbound queue: fn runs in a later callback, never inside this call. Must
 *  be called on a running loop's thread. Returns 0, LC_EINVAL, LC_ENORUNNINGLOOP, LC_ENOMEM or
 *  LC_ECLOSED (target closed: fn never runs; *fut is NULL on every failure). */
int lc_loop_submit(lc_loop_t *target, lc_submit_fn fn, void *arg, lc_future_t **fut);

/** Runs fn(target, arg, result) on target's thread and waits for it; result may be NULL. For
 *  threads that run no loop; on target's own thread fn runs directly. target must run or be about
 *  to run, else this waits until it is closed. Returns fn's return value, LC_ECLOSED (target
 *  closed first: fn did not run), LC_EINVAL, LC_ENOMEM, or LC_EBUSY when called from a thread
 *  running another loop (waiting there could deadlock; use lc_loop_submit). */
int lc_loop_submit_wait(lc_loop_t *target, lc_submit_fn fn, void *arg, void **result);

/** lc_loop_submit_wait() to loop index of g, except that a loop that will not run again does not
 *  keep the caller waiting: once loop index's thread has left its loop (lc_group_stop), or when
 *  it has no thread and never will (the group was stopped before it started, or its start
 *  failed), this returns LC_ECLOSED and fn never runs (the message stays queued until
 *  lc_group_free() closes the loop, which releases it). Same thread rule and other returns as
 *  lc_loop_submit_wait(). */
int lc_group_submit_wait(lc_group_t *g, unsigned index, lc_submit_fn fn, void *arg, void **result);

/** lc_loop_submit() to loop index of g. Same thread rule and returns. */
int lc_group_submit(lc_group_t *g, unsigned index, lc_submit_fn fn, void *arg, lc_future_t **fut);

/** Runs fn(loop_i, arg, &ignored) on every loop of g (the calling loop too, through its queue,
 *  if it is a member). *fut (a new future of the calling loop, one reference for the caller)
 *  resolves on the caller's thread once every loop ran fn or was found closed: result NULL, or
 *  the error of the lowest-index loop that failed (LC_ECLOSED for a closed loop). Results are
 *  ignored. Must be called on a running loop's thread. Returns 0, LC_EINVAL, LC_ENORUNNINGLOOP or
 *  LC_ENOMEM. */
int lc_group_broadcast(lc_group_t *g, lc_submit_fn fn, void *arg, lc_future_t **fut);

/** Runs fn on every loop of g and waits; for threads that run no loop. Returns 0, the error of the
 *  lowest-index loop that failed (LC_ECLOSED for a closed loop), LC_EINVAL, LC_ENOMEM, or LC_EBUSY
 *  on a thread that runs a loop. */
int lc_group_broadcast_wait(lc_group_t *g, lc_submit_fn fn, void *arg);

/* ---- Group servers: one host:port served by every loop --------------------------------------- */

typedef struct lc_group_server_s lc_group_server_t;

typedef enum {
    /* One listening socket per loop on the same address with SO_REUSEPORT: the kernel spreads
     * the connections (by a hash of the 4-tuple). */
    LC_GROUP_SERVER_REUSEPORT = 0,
    /* Loop 0 accepts; each connection goes to the loops in turn, through their inbound queues,
     * and becomes a connection of the target loop's server there (loops 1..n-1 have one with no
     * socket). For kernels or traffic where reuse-port hashing balances badly (few clients, long
     * connections). A connection still on its way when its target's part of the server is
     * closed (lc_group_server_close) or when the target is closed is dropped: its fd is closed,
     * as a connection left in a closed listener's backlog would be. */
    LC_GROUP_SERVER_HANDOFF,
} lc_group_server_mode_t;

typedef struct lc_group_server_opts_s {
    const char *host; /* a numeric address; NULL means "0.0.0.0" (family AF_INET6: "::") */
    int port;         /* 0: the first bind picks one and every other socket reuses it */
    int family;       /* AF_UNSPEC (from host), AF_INET or AF_INET6 */
    int backlog;      /* 0 means 100 (per socket) */
    lc_group_server_mode_t mode;
    /* TLS on every loop (stream.h): one SSL_CTX shared by all of them (each loop's server takes
     * a reference; the caller may free its own once lc_group_create_server returns); the
     * timeouts as lc_server_opts_t' (LC_EINVAL for a negative or NaN one, or one without ssl). */
    struct ssl_ctx_st *ssl;
    double ssl_handshake_timeout;
    double ssl_shutdown_timeout;
} lc_group_server_opts_t;

/* Counting and wait_closed. Every loop of a group server has a server of its own (its listener,
 * or in hand-off mode on loops 1..n-1 one with no socket), and every connection a loop serves,
 * accepted there or handed to it, counts as active on that loop until its transport is freed:
 * each count lives on its loop's thread. When a loop's server is closed and its count is zero,
 * that loop (its thread, or the thread that closes it) counts the group server's undrained loops
 * down; the loop that reaches zero posts each wait_closed future to the loop that owns it, which
 * resolves it (asyncio 3.12: closed, and no connection active anywhere). Nothing is polled; the
 * only cross-thread traffic is one short mutex section per loop and one post per future.
 *
 * Lifetime: close, then free, as for lc_server_t (the object model, loopcore.h). asyncio's order
 * works: lc_group_server_close(), then lc_group_server_wait_closed() (from a loop thread), then
 * lc_group_server_free() once the caller is done with gs; wait_closed may also be asked for
 * before the close. lc_group_server_free() closes first if needed. Internally the memory is
 * reference-counted: free drops the caller's reference, but hand-offs still on their way, and each
 * loop's server until it is drained, hold their own, so gs's memory outlives every message and
 * connection that refers to it (and a wait_closed future outlives gs). To the caller, gs is gone
 * once lc_group_server_free() is called. Close and free before lc_group_free(). */

/** Serves host:port on every loop of the started group g: the factory runs on the thread of the
 *  loop that gets the connection (lc_get_running_loop tells which), so factory_arg must be safe
 *  to use from every loop. Blocks until every loop serves; call it from a thread that runs no
 *  loop. Returns 0, LC_EINVAL, LC_EBUSY (called on a loop thread), LC_EINVALIDSTATE (group not
 *  running), or the socket/bind error. */
int lc_group_create_server(lc_group_t *g, lc_protocol_factory_fn factory, void *factory_arg,
                           const lc_group_server_opts_t *opts, lc_group_server_t **out);

/** The port being served. */
int lc_group_server_port(const lc_group_server_t *gs);

/** Copies up to *n listening fds into fds, sets *n to their number (one per loop in reuse-port
 *  mode, one in hand-off mode; 0 once closed). Any thread. */
int lc_group_server_sockets(const lc_group_server_t *gs, int *fds, size_t *n);

/** Connections loop index has taken so far (accepted there, or handed to it). Blocks like
 *  lc_group_submit_wait (not from a loop thread). Returns the count, or a negative error
 *  (LC_ECLOSED: gs is closed, or that loop no longer runs). */
long lc_group_server_connections(lc_group_server_t *gs, unsigned index);

/** Connections loop index serves now (accepted there or handed to it, and not yet closed): the
 *  group server's active count is the sum over its loops. Blocks like
 *  lc_group_server_connections, same returns. */
long lc_group_server_active(lc_group_server_t *gs, unsigned index);

/** asyncio's Server.wait_closed(): *fut (a new future of the calling loop, one reference for the
 *  caller) resolves, with result NULL, on the calling loop's thread once gs is closed and no
 *  connection is active on any of its loops, handed-off ones included (at once if that is
 *  already so). Before or after lc_group_server_close(), not after lc_group_server_free(); the
 *  future stays valid after the free. Must be called on a running loop's thread, any loop (not
 *  only one of the group). Returns 0, LC_EINVAL, LC_ENORUNNINGLOOP or LC_ENOMEM.
 *  If the future's loop is closed before the future resolves, the future stays pending and the
 *  group server's reference to it is dropped by the thread that drains the group server: use a
 *  loop of the same group (lc_group_free() closes them all on one thread) or keep the loop open
 *  until the future is done. A group freed with connections still open drains while its loops
 *  close, so the future stays pending then. */
int lc_group_server_wait_closed(lc_group_server_t *gs, lc_future_t **fut);

/** Stops listening on every loop and waits for it (accepted connections stay open; wait_closed
 *  waits for them). gs stays the caller's until lc_group_server_free(): its port stays readable,
 *  lc_group_server_sockets() gives none, connections and active give LC_ECLOSED. Loop 0 goes
 *  first, so that nothing is handed off once it returns. A loop that has stopped (lc_group_stop)
 *  is not waited for: its part of the server closes when lc_group_free() closes the loop. Not
 *  from a loop thread of the group. Idempotent (a later call returns 0 at once). Returns 0,
 *  LC_EINVAL, or the first error of a loop's close step (gs is closed anyway). */
int lc_group_server_close(lc_group_server_t *gs);

/** Closes gs if it is not closed yet (as lc_group_server_close(), same thread rule), then
 *  releases the caller's hold on it: gs must not be used afterwards (a wait_closed future it gave
 *  stays valid and still resolves). Before lc_group_free(). Returns 0, LC_EINVAL, or the close's
 *  error (gs is released anyway). */
int lc_group_server_free(lc_group_server_t *gs);

#ifdef __cplusplus
}
#endif

#endif
