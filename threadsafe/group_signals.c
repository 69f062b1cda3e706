/* The graceful shutdown of a loop group on SIGINT / SIGTERM: lc_group_stop_on_signals() and
 * lc_group_shutdown_state() (include/loopcore/signal.h).
 *
 * This file owns one lc__group_signals_t per armed group (attached to the group, freed by
 * lc_group_free()) and the shutdown thread. The handlers are loop 0's (lc_loop_add_signal_handler:
 * the fan-out rule means that registering on every loop would react once per loop). The first
 * signal, on loop 0's thread, starts the shutdown thread and returns: the steps that follow
 * block (lc_group_server_close waits for every loop; the drain can take the whole grace time),
 * and a loop thread must never block. The thread, with every asynchronous signal blocked:
 *   1. closes every server of the options (stop accepting; loop 0 first, group.h);
 *   2. runs the hook on every loop (lc_group_submit_wait, one loop after the other; a loop that
 *      has stopped is skipped);
 *   3. asks loop 0 for each server's wait_closed future, whose done callback (on loop 0) counts
 *      the undrained servers down under mu;
 *   4. waits on cv until none is undrained, the grace deadline (from the first signal) passes, or
 *      someone stops the group (lc_group_stop: the application says it is done, or a second
 *      signal with second_signal_stops), then stops every loop.
 * lc_group_join() joins the thread after the loop threads (it was made on loop 0's thread
 * before that left), so once join returns nothing of this file runs; lc_group_free() frees the
 * state after the loops are closed (closing loop 0 removed the handlers; a wait_closed done
 * callback still queued is discarded with the loop). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "engine/group_hooks.h"
#include "loopcore/errno.h"
#include "loopcore/signal.h"
#include "loopcore/threadsafe.h"
#include "threadsafe/group_signals.h"

#define DEFAULT_GRACE 10.0

struct lc__group_signals_s {
    lc_group_t *g;
    double grace;
    lc_group_shutdown_fn hook;
    void *hook_arg;
    lc_group_server_t **servers; /* a copy of the options' array */
    size_t nservers;
    bool second_stops;
    unsigned nsignals; /* loop 0's thread only */

    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC; broadcast on every change below */
    lc_group_shutdown_state_t state;
    struct timespec deadline; /* set with the first signal */
    size_t undrained;         /* servers whose wait_closed future has not resolved */
    bool stopped;             /* lc_group_stop() was called */
    bool has_thread;          /* set on loop 0's thread before that leaves its loop */
    bool joining, joined;
    pthread_t thread;
};

static void lock(lc__group_signals_t *s) { pthread_mutex_lock(&s->mu); }
static void unlock(lc__group_signals_t *s) { pthread_mutex_unlock(&s->mu); }

/* ---- The shutdown thread --------------------------------------------------------------------- */

static int run_hook(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    lc__group_signals_t *s = arg;
    s->hook(loop, (unsigned)lc_group_index(s->g, loop), s->hook_arg);
    return 0;
}

/* Loop 0: one server's wait_closed resolved. */
static void server_drained(lc_future_t *fut, void *arg)
{
    (void)fut;
    lc__group_signals_t *s = arg;
    lock(s);
    s->undrained--;
    pthread_cond_broadcast(&s->cv);
    unlock(s);
}

typedef struct {
    lc__group_signals_t *s;
    lc_group_server_t *gs;
} watch_t;

/* Loop 0: watches one server's drain. The group server keeps the future (and its done
 * callback) until it resolves; ours goes at once. */
static int watch_server(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    (void)result;
    watch_t *w = arg;
    lc_future_t *fut;
    int r = lc_group_server_wait_closed(w->gs, &fut);
    if (r != 0)
        return r;
    r = lc_future_add_done_callback(fut, server_drained, w->s);
    lc_future_unref(fut);
    return r;
}

static void *shutdown_main(void *arg)
{
    lc__group_signals_t *s = arg;
    for (size_t i = 0; i < s->nservers; i++)
        lc_group_server_close(s->servers[i]); /* closed anyway on error; nothing else to do */
    if (s->hook != NULL) {
        for (unsigned i = 0; i < lc_group_size(s->g); i++)
            lc_group_submit_wait(s->g, i, run_hook, s, NULL); /* LC_ECLOSED: that loop stopped */
    }
    size_t watched = 0;
    for (size_t i = 0; i < s->nservers; i++) {
        if (lc_group_submit_wait(s->g, 0, watch_server, &(watch_t){s, s->servers[i]}, NULL) == 0)
            watched++;
    }
    lock(s);
    /* A server whose watch failed (out of memory, loop 0 stopped) can only end by the deadline
     * or a stop: it stays counted. */
    int tr = 0;
    bool drained = false;
    while (!s->stopped && tr != ETIMEDOUT) {
        drained = s->nservers > 0 && s->undrained == 0 && watched == s->nservers;
        if (drained)
            break;
        tr = pthread_cond_timedwait(&s->cv, &s->mu, &s->deadline);
    }
    bool stop = !s->stopped;
    if (s->state == LC_GROUP_SHUTDOWN_DRAINING) {
        /* Stopped by the application (not by a second signal): it said it is done. */
        s->state = drained || s->stopped ? LC_GROUP_SHUTDOWN_DRAINED : LC_GROUP_SHUTDOWN_TIMED_OUT;
    }
    unlock(s);
    if (stop)
        lc_group_stop(s->g);
    return NULL;
}

/* ---- The handlers (loop 0's thread) ---------------------------------------------------------- */

static void on_signal(lc__group_signals_t *s, int signum)
{
    /* Two deliveries folded into one run (both came before the first was handled) count two:
     * the second one's "exit at once" must not be lost. */
    unsigned before = s->nsignals;
    s->nsignals += lc__signal_deliveries(lc_group_loop(s->g, 0), signum);
    if (s->nsignals > 1) {
        if (!s->second_stops)
            _exit(128 + signum);
        lock(s);
        /* Draining, or both signals in this run (the drain never began): aborted. */
        if (s->state == LC_GROUP_SHUTDOWN_DRAINING || before == 0)
            s->state = LC_GROUP_SHUTDOWN_ABORTED;
        unlock(s);
        lc_group_stop(s->g); /* wakes the shutdown thread (lc__group_signals_stopped) */
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double whole = floor(s->grace);
    lock(s);
    s->state = LC_GROUP_SHUTDOWN_DRAINING;
    s->deadline.tv_sec = now.tv_sec + (time_t)whole;
    s->deadline.tv_nsec = now.tv_nsec + (long)((s->grace - whole) * 1e9);
    if (s->deadline.tv_nsec >= 1000000000L) {
        s->deadline.tv_sec++;
        s->deadline.tv_nsec -= 1000000000L;
    }
    s->undrained = s->nservers;
    sigset_t old;
    lc__block_async_signals(&old);
    s->has_thread = pthread_create(&s->thread, NULL, shutdown_main, s) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    bool failed = !s->has_thread;
    if (failed)
        s->state = LC_GROUP_SHUTDOWN_TIMED_OUT;
    unlock(s);
    if (failed) /* no thread to drain with: stop at once rather than never */
        lc_group_stop(s->g);
}

static void on_sigint(void *arg) { on_signal(arg, SIGINT); }
static void on_sigterm(void *arg) { on_signal(arg, SIGTERM); }

static int register_handlers(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    int r = lc_loop_add_signal_handler(loop, SIGINT, on_sigint, arg);
    if (r == 0) {
        r = lc_loop_add_signal_handler(loop, SIGTERM, on_sigterm, arg);
        if (r != 0)
            lc_loop_remove_signal_handler(loop, SIGINT, NULL);
    }
    return r;
}

/* ---- API ------------------------------------------------------------------------------------- */

static void signals_free(lc__group_signals_t *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->servers);
    free(s);
}

int lc_group_stop_on_signals(lc_group_t *g, const lc_group_signal_opts_t *opts)
{
    static const lc_group_signal_opts_t defaults;
    if (opts == NULL)
        opts = &defaults;
    if (g == NULL || lc_group_size(g) == 0 || isnan(opts->grace) || opts->grace < 0 ||
        (opts->servers == NULL && opts->nservers > 0))
        return LC_EINVAL;
    for (size_t i = 0; i < opts->nservers; i++) {
        if (opts->servers[i] == NULL)
            return LC_EINVAL;
    }
    lc_loop_t *running;
    if (lc_get_running_loop(&running) == 0 && lc_group_index(g, running) >= 0)
        return LC_EBUSY;
    lc__group_signals_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return LC_ENOMEM;
    if (opts->nservers > 0) {
        s->servers = malloc(opts->nservers * sizeof(*s->servers));
        if (s->servers == NULL) {
            free(s);
            return LC_ENOMEM;
        }
        for (size_t i = 0; i < opts->nservers; i++)
            s->servers[i] = opts->servers[i];
    }
    s->g = g;
    s->grace = opts->grace > 0 ? opts->grace : DEFAULT_GRACE;
    s->hook = opts->on_shutdown;
    s->hook_arg = opts->on_shutdown_arg;
    s->nservers = opts->nservers;
    s->second_stops = opts->second_signal_stops;
    s->state = LC_GROUP_SHUTDOWN_ARMED;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    int r = lc__group_attach_signals(g, s);
    if (r != 0) {
        signals_free(s);
        return r;
    }
    /* On failure nothing was registered and s stays attached, unused, until lc_group_free():
     * a concurrent lc_group_stop() may be about to touch it. */
    return lc_group_submit_wait(g, 0, register_handlers, s, NULL);
}

lc_group_shutdown_state_t lc_group_shutdown_state(lc_group_t *g)
{
    lc__group_signals_t *s = g != NULL ? lc__group_signals(g) : NULL;
    if (s == NULL)
        return LC_GROUP_SHUTDOWN_ARMED;
    lock(s);
    lc_group_shutdown_state_t st = s->state;
    unlock(s);
    return st;
}

/* ---- Hooks from group.c ---------------------------------------------------------------------- */

void lc__group_signals_stopped(lc__group_signals_t *s)
{
    lock(s);
    s->stopped = true;
    pthread_cond_broadcast(&s->cv);
    unlock(s);
}

void lc__group_signals_join(lc__group_signals_t *s)
{
    lock(s);
    while (s->joining && !s->joined)
        pthread_cond_wait(&s->cv, &s->mu);
    if (!s->has_thread || s->joined) {
        unlock(s);
        return;
    }
    s->joining = true;
    unlock(s);
    pthread_join(s->thread, NULL);
    lock(s);
    s->joined = true;
    pthread_cond_broadcast(&s->cv);
    unlock(s);
}

void lc__group_signals_free(lc__group_signals_t *s) { signals_free(s); }
