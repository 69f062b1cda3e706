/** @file
 *  @ingroup signal
 *  @defgroup signal Unix signals and graceful group shutdown (loopcore/signal.h)
 *
 * loopcore Unix signals: asyncio's add_signal_handler / remove_signal_handler, and the graceful
 * shutdown of a loop group on SIGINT / SIGTERM.
 *
 * How a signal reaches a handler. A signal is process-wide: the kernel hands it to any thread
 * that does not block it. loopcore's own threads block every asynchronous signal (the loops of a
 * group, the executor's workers; the synchronous ones, SIGSEGV SIGBUS SIGFPE SIGILL SIGTRAP
 * SIGABRT SIGSYS, stay open), so it lands on a thread of the application (usually the main one),
 * or stays pending until one can take it. (libuv's own thread pool, which runs getaddrinfo,
 * inherits the mask of the thread that first uses it: blocked when that is a group's loop.)
 * Whatever thread takes it, the only thing done in signal context is one write to a pipe per
 * watching loop (libuv's handler, src/unix/signal.c); the handler itself runs later on its loop's
 * thread, as an ordinary callback (queued like call_soon), so it may call anything. If every thread
 * blocks the signal it stays pending.
 *
 * Several loops, one signal: fan-out. When several loops registered a handler for the same
 * signal, every one of them gets every delivery: each loop runs its own handler once, on its own
 * thread (libuv's rule; Seastar instead routes a signal to one reactor). To have one loop react,
 * register on that loop only (lc_group_stop_on_signals() registers on loop 0 of its group).
 *
 * Coalescing. Each delivery runs each watching loop's handler once, except that deliveries that
 * reach a loop while its handler is already queued for that signal and has not started yet are
 * folded into that one queued run. So: after every delivery the handler runs at least once (it
 * starts after the delivery), and a delivery that comes after a run has started gets a run of its
 * own. The kernel folds deliveries too: a standard signal sent again while it is still pending
 * (blocked everywhere, or not taken yet) is delivered once. A delivery that finds a loop's
 * signal pipe full (thousands of unprocessed deliveries) is dropped for that loop; the runs
 * already queued still come.
 *
 * Dispositions. Adding the first handler for a signal, on any loop, installs loopcore's handler
 * for it process-wide (replacing whatever was installed, SIG_IGN included); removing the last one,
 * on the last loop that watches it, restores SIG_DFL (asyncio restores Python's default handler,
 * which for SIGINT raises KeyboardInterrupt; C has SIG_DFL). Closing a loop removes its
 * handlers. A fork()ed child inherits the disposition but none of the loops: use exec or close.
 * @{ */
#ifndef LOOPCORE_SIGNAL_H
#define LOOPCORE_SIGNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "loopcore/group.h"
#include "loopcore/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/* ---- One loop: asyncio's methods ------------------------------------------------------------- */

/** add_signal_handler: from now on, each delivery of signum runs fn(arg) on loop's thread, as an
 *  ordinary callback (see the top of this file for several loops and coalescing). Adding again
 *  for the same signal replaces fn and arg (a run already queued runs the new ones). Loop thread.
 *  Returns 0, LC_EINVAL (loop or fn NULL; signum below 1, not below NSIG, SIGKILL or SIGSTOP, or
 *  one the C library keeps for itself), LC_ECLOSED (loop closed), LC_ENOMEM. */
int lc_loop_add_signal_handler(lc_loop_t *loop, int signum, lc_call_fn fn, void *arg);

/** remove_signal_handler: removes loop's handler for signum; a run already queued does not
 *  happen. *removed (may be NULL) says whether there was one. When no loop watches signum any
 *  more, its disposition goes back to SIG_DFL. Loop thread. Returns 0 (also on a closed loop,
 *  whose handlers are gone: *removed false), LC_EINVAL (loop NULL, signum invalid as for
 *  add). */
int lc_loop_remove_signal_handler(lc_loop_t *loop, int signum, bool *removed);

/* ---- A group: graceful shutdown on SIGINT and SIGTERM ---------------------------------------- */

/** The per-loop shutdown hook: runs on each loop's thread, inside the running loop, once the
 *  group servers have stopped accepting. Close the idle connections here and make the busy ones
 *  close once their requests are answered (HTTP: the last response says Connection: close). */
typedef void (*lc_group_shutdown_fn)(lc_loop_t *loop, unsigned index, void *arg);

/** Options of lc_group_stop_on_signals(); zero means default. */
typedef struct lc_group_signal_opts_s {
    double grace; /**< seconds from the first signal until the loops are stopped even if not
                       drained; 0: 10; negative or NaN: LC_EINVAL */
    lc_group_shutdown_fn on_shutdown; /**< per-loop hook, or NULL */
    void *on_shutdown_arg;            /**< on_shutdown's arg */
    /** The group servers to stop (lc_group_server_close) on the first signal (connections still
     *  in their listen backlog are then reset, as by any listener's close). The group is drained
     *  once none of them has an active connection on any loop (lc_group_server_wait_closed).
     *  Read during the call only; each must stay alive (not freed) until lc_group_join() has
     *  returned. With none, the shutdown waits for the grace time or for the application's own
     *  lc_group_stop(). */
    lc_group_server_t *const *servers;
    size_t nservers; /**< entries in servers */
    /** true: a second SIGINT/SIGTERM stops every loop at once (lc_group_stop(), without waiting
     *  for the drain), and lc_group_join() returns. Default: a second signal ends the process at
     *  once with _exit(128 + signum) (130 for SIGINT, 143 for SIGTERM, the shell's status for a
     *  process killed by that signal; no atexit handlers, nothing flushed). Two deliveries
     *  folded into one run (see "Coalescing") count as two: a second signal that came before
     *  the first was handled still acts. */
    bool second_signal_stops;
} lc_group_signal_opts_t;

/** Where a group's signal shutdown stands (lc_group_shutdown_state()). */
typedef enum {
    LC_GROUP_SHUTDOWN_ARMED = 0, /**< waiting for the first signal (or never armed) */
    LC_GROUP_SHUTDOWN_DRAINING, /**< signalled: servers stopped, hooks run, waiting for the drain */
    LC_GROUP_SHUTDOWN_DRAINED,  /**< every server drained; the loops were stopped */
    LC_GROUP_SHUTDOWN_TIMED_OUT, /**< the grace time passed first; the loops were stopped */
    LC_GROUP_SHUTDOWN_ABORTED,   /**< a second signal stopped the loops (second_signal_stops) */
} lc_group_shutdown_state_t;

/** Makes SIGINT and SIGTERM shut g down gracefully. The first one: every server of opts stops
 *  accepting (lc_group_server_close), the hook runs on every loop, then once every server has
 *  drained (no active connection) or the grace time has passed, whichever comes first, every loop
 *  is stopped (lc_group_stop), so that lc_group_join() returns. A second one: see
 *  second_signal_stops. The handlers live on loop 0 (signal.h's fan-out: one reaction per
 *  delivery); the waiting is done by one thread of the group's (created at the first signal,
 *  signals blocked), which lc_group_join() joins too. Call it once the group is started, from a
 *  thread that runs none of its loops; at most once per group (also after a failure). Returns 0,
 *  LC_EINVAL, LC_EBUSY (called on a loop thread), LC_EINVALIDSTATE (group not running, or
 *  already armed), LC_ENOMEM, LC_ECLOSED (loop 0 stopped meanwhile), or
 *  lc_loop_add_signal_handler()'s error. */
int lc_group_stop_on_signals(lc_group_t *g, const lc_group_signal_opts_t *opts);

/** Where g's signal shutdown stands. Any thread. */
lc_group_shutdown_state_t lc_group_shutdown_state(lc_group_t *g);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
