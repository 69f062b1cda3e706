/* The current loop of each thread (get_running_loop, get_event_loop, set_event_loop: the
 * thread-local slots) and debug mode (set_debug, the thread checks, slow-callback logging). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/loop_internal.h"

static __thread lc_loop_t *tls_running;   /* the loop running in this thread */
static __thread lc_loop_t *tls_current;   /* set_event_loop / get_event_loop */
static __thread bool tls_current_was_set; /* set_event_loop was called in this thread */

lc_loop_t *lc__running_loop(void) { return tls_running; }

void lc__set_running_loop(lc_loop_t *loop) { tls_running = loop; }

void lc__forget_event_loop(lc_loop_t *loop)
{
    if (tls_current == loop)
        tls_current = NULL;
}

/* ---- Obtaining the loop ---------------------------------------------------------------------- */

int lc_get_running_loop(lc_loop_t **out)
{
    if (out == NULL)
        return LC_EINVAL;
    *out = tls_running;
    return tls_running != NULL ? 0 : LC_ENORUNNINGLOOP;
}

int lc_get_event_loop(lc_loop_t **out)
{
    if (out == NULL)
        return LC_EINVAL;
    *out = NULL;
    if (tls_running != NULL) {
        *out = tls_running;
        return 0;
    }
    if (tls_current == NULL) {
        if (tls_current_was_set)
            return LC_ENOCURRENTLOOP;
        /* Implicit: the slot stays the library's (tls_current_was_set is the user's word), so
         * once this loop is freed (lc_loop_free() empties the slot) the next call makes another. */
        int r = lc_new_event_loop(&tls_current);
        if (r != 0)
            return r;
    }
    *out = tls_current;
    return 0;
}

int lc_set_event_loop(lc_loop_t *loop)
{
    if (loop != NULL && loop->closed)
        return LC_ECLOSED;
    tls_current = loop;
    tls_current_was_set = true;
    return 0;
}

/* ---- Debug mode ------------------------------------------------------------------------------ */

bool lc__env_debug(void)
{
    const char *v = getenv("LOOPCORE_DEBUG");
    return v != NULL && v[0] != '\0';
}

int lc__loop_check_thread_slow(lc_loop_t *loop, const char *what)
{
    /* relaxed: a foreign thread only needs some recent value; a stale "not running" lets one
     * racing call through, which is what asyncio's own check does as well. */
    if (!atomic_load_explicit(&loop->running, memory_order_relaxed))
        return 0;
    unsigned long owner = atomic_load_explicit(&loop->thread, memory_order_relaxed);
    if ((unsigned long)pthread_self() == owner)
        return 0;
    char msg[192];
    snprintf(msg, sizeof(msg),
             "Non-thread-safe operation invoked on an event loop other than the current one (%s)",
             what);
    lc_exception_context_t ctx = LC_EXCEPTION_CONTEXT_INIT(msg);
    ctx.error = LC_EWRONGTHREAD;
    lc_loop_call_exception_handler(loop, &ctx);
    return LC_EWRONGTHREAD;
}

int lc__loop_check_call(lc_loop_t *loop, const char *what)
{
    if (loop->closed)
        return LC_ECLOSED;
    return lc__loop_check_thread(loop, what);
}

bool lc_loop_get_debug(const lc_loop_t *loop) { return loop != NULL && loop->debug; }

int lc_loop_set_debug(lc_loop_t *loop, bool enabled)
{
    if (loop == NULL)
        return LC_EINVAL;
    loop->debug = enabled;
    return 0;
}

double lc_loop_get_slow_callback_duration(const lc_loop_t *loop)
{
    return loop != NULL ? loop->slow_callback_duration : 0.1;
}

int lc_loop_set_slow_callback_duration(lc_loop_t *loop, double seconds)
{
    if (loop == NULL || !(seconds >= 0) || isinf(seconds))
        return LC_EINVAL;
    loop->slow_callback_duration = seconds;
    return 0;
}

void lc__log_slow_callback(const char *kind, void *fn, void *arg, double dt)
{
    fprintf(stderr, "loopcore: Executing <%s fn=%p arg=%p> took %.3f seconds\n", kind, fn, arg, dt);
}

void lc__log_slow_handle(const lc_handle_t *h, double dt)
{
    const char *kind = h->q.kind == LC__K_TIMER     ? "TimerHandle"
                       : h->q.kind == LC__K_DONE_CB ? "Handle done_cb"
                                                    : "Handle";
    void *fn = h->q.kind == LC__K_DONE_CB ? (void *)h->cb.done_cb : (void *)h->cb.fn;
    lc__log_slow_callback(kind, fn, h->arg, dt);
}
