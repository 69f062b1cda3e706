/* Unix signal handlers of one loop: lc_loop_add_signal_handler / lc_loop_remove_signal_handler
 * (include/loopcore/signal.h), and their teardown when the loop closes.
 *
 * This file owns the loop's signal table (loop->signals: one record per signal number that has a
 * handler) and each record's uv_signal_t. It builds on libuv's signal handles, which give the
 * process-wide part: libuv's one handler per signal number (installed by the first
 * uv_signal_start for it, in any loop; SIG_DFL restored by the last uv_signal_stop) only writes
 * {handle, signum} into the pipe of the loop of every handle that watches the number, under a
 * pipe-based lock taken with every signal blocked; each loop reads its pipe as an ordinary I/O
 * watcher and calls the handle's callback on its own thread. So in signal context nothing of
 * loopcore's is touched, every watching loop gets every delivery (the fan-out rule), and which
 * thread the kernel picked does not matter.
 *
 * On the loop's thread the delivery becomes a call_soon of the user's handler (asyncio's
 * _handle_signal adds the handler's Handle to _ready the same way), kept in the record as
 * `pending` until it starts: a delivery that comes while a run is pending is folded into it
 * (the coalescing rule of signal.h), so a storm of signals costs one queued callback per loop,
 * not one per signal. The handler and its argument are read when the run starts, so a
 * replacement applies to a pending run; removal cancels it. */
#include <signal.h>
#include <stdlib.h>

#include "engine/group_hooks.h"
#include "engine/loop_internal.h"

typedef struct lc__signal_s {
    uv_signal_t uv; /* uv.data unused: the record is found with container_of */
    lc_loop_t *loop;
    lc_call_fn fn;
    void *arg;
    lc_handle_t *pending; /* the queued run (our reference to its handle), or NULL */
    unsigned folded;      /* deliveries the pending run stands for */
    unsigned running;     /* ... and the run in progress (lc__signal_deliveries) */
} sig_rec;

/* The loop's table, allocated at the first add: one slot per signal number. */
struct lc__signals_s {
    sig_rec *by_num[NSIG];
};

static bool signum_valid(int signum)
{
    return signum >= 1 && signum < NSIG && signum != SIGKILL && signum != SIGSTOP;
}

static void run_handler(void *arg)
{
    sig_rec *s = arg;
    /* The run has started: a delivery from now on gets a run of its own. The loop keeps its own
     * reference to the handle until this callback returns. */
    lc_handle_unref(s->pending);
    s->pending = NULL;
    s->running = s->folded;
    s->folded = 0;
    s->fn(s->arg);
}

unsigned lc__signal_deliveries(lc_loop_t *loop, int signum)
{
    sig_rec *s = loop->signals != NULL && signum >= 1 && signum < NSIG
                     ? loop->signals->by_num[signum]
                     : NULL;
    return s != NULL && s->running > 0 ? s->running : 1;
}

static void on_uv_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    /* libuv calls this from its signal pipe's I/O watcher: begin the iteration's batch first,
     * as every I/O callback does (asyncio's order); it may have removed this very handler. */
    if (!lc__io_enter((uv_handle_t *)h))
        return;
    sig_rec *s = lc_container_of(h, sig_rec, uv);
    if (s->pending != NULL) {
        s->folded++;
        return; /* folded into the run already queued */
    }
    s->folded = 1;
    /* Out of memory: this delivery is lost for this loop; the next one tries again. */
    lc_loop_call_soon(s->loop, run_handler, s, &s->pending);
}

static void rec_closed(uv_handle_t *h) { free(lc_container_of((uv_signal_t *)h, sig_rec, uv)); }

/* Takes s out of service: its pending run is cancelled, its uv handle stopped at once (libuv
 * restores SIG_DFL here if no other handle watches the number) and closed; the memory goes in the
 * close callback. */
static void rec_remove(sig_rec *s)
{
    if (s->pending != NULL) {
        lc_handle_cancel(s->pending);
        lc_handle_unref(s->pending);
        s->pending = NULL;
    }
    uv_close((uv_handle_t *)&s->uv, rec_closed);
}

int lc_loop_add_signal_handler(lc_loop_t *loop, int signum, lc_call_fn fn, void *arg)
{
    if (loop == NULL || fn == NULL)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    if (!signum_valid(signum))
        return LC_EINVAL;
    int r = lc__loop_check_thread(loop, "add_signal_handler");
    if (r != 0)
        return r;
    if (loop->signals == NULL) {
        loop->signals = calloc(1, sizeof(*loop->signals));
        if (loop->signals == NULL)
            return LC_ENOMEM;
    }
    sig_rec *s = loop->signals->by_num[signum];
    if (s != NULL) { /* replace: the uv handle keeps watching */
        s->fn = fn;
        s->arg = arg;
        return 0;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return LC_ENOMEM;
    r = uv_signal_init(lc__loop_uv(loop), &s->uv);
    if (r != 0) {
        free(s);
        return r;
    }
    s->loop = loop;
    s->fn = fn;
    s->arg = arg;
    /* sigaction's EINVAL for the numbers glibc keeps (the two below SIGRTMIN) comes back here. */
    r = uv_signal_start(&s->uv, on_uv_signal, signum);
    if (r != 0) {
        uv_close((uv_handle_t *)&s->uv, rec_closed);
        return r;
    }
    loop->signals->by_num[signum] = s;
    return 0;
}

int lc_loop_remove_signal_handler(lc_loop_t *loop, int signum, bool *removed)
{
    if (removed != NULL)
        *removed = false;
    if (loop == NULL || !signum_valid(signum))
        return LC_EINVAL;
    if (loop->closed || loop->signals == NULL || loop->signals->by_num[signum] == NULL)
        return 0;
    int r = lc__loop_check_thread(loop, "remove_signal_handler");
    if (r != 0)
        return r;
    rec_remove(loop->signals->by_num[signum]);
    loop->signals->by_num[signum] = NULL;
    if (removed != NULL)
        *removed = true;
    return 0;
}

void lc__signals_close(lc_loop_t *loop)
{
    if (loop->signals == NULL)
        return;
    for (int i = 1; i < NSIG; i++) {
        if (loop->signals->by_num[i] != NULL)
            rec_remove(loop->signals->by_num[i]);
    }
    free(loop->signals);
    loop->signals = NULL;
}
