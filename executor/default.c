/* The default-executor policy: which executor lc_loop_run_in_executor(loop, NULL, ...) and
 * lc_loop_queue_work(loop, NULL, ...) use (rules 1-3 of include/loopcore/executor.h), the
 * process-wide shared default, and lc_loop_set_default_executor / lc_group_set_default_executor.
 * The executors themselves are pool.c's. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "engine/executor_hooks.h"
#include "executor/pool.h"
#include "executor/queue_work.h"

/* The process-wide shared default (rule 2). */
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(lc_executor_t *) shared_default;
static bool shared_atexit_registered; /* under shared_mu */

static void shared_at_exit(void)
{
    pthread_mutex_lock(&shared_mu);
    /* relaxed: under shared_mu, which every store holds. */
    lc_executor_t *ex = atomic_load_explicit(&shared_default, memory_order_relaxed);
    bool idle = false;
    if (ex != NULL) {
        idle = lc__executor_idle(ex);
        if (idle)
            atomic_store_explicit(&shared_default, NULL, memory_order_relaxed);
    }
    pthread_mutex_unlock(&shared_mu);
    /* A busy executor is left to the process's end: waiting for its jobs could hang the exit,
     * and their loops may be gone. */
    if (idle)
        lc_executor_free(ex);
}

static int get_shared_default(lc_executor_t **out)
{
    /* acquire: pairs with the release store below; the executor's fields are initialized. */
    lc_executor_t *ex = atomic_load_explicit(&shared_default, memory_order_acquire);
    if (ex != NULL) {
        *out = ex;
        return 0;
    }
    pthread_mutex_lock(&shared_mu);
    int r = 0;
    ex = atomic_load_explicit(&shared_default, memory_order_relaxed); /* under shared_mu */
    if (ex == NULL) {
        r = lc_executor_create(&ex, &(lc_executor_opts_t){.thread_name_prefix = "lc-default"});
        if (r == 0) {
            /* release: publishes the initialized executor to the lock-free readers above. */
            atomic_store_explicit(&shared_default, ex, memory_order_release);
            if (!shared_atexit_registered)
                shared_atexit_registered = atexit(shared_at_exit) == 0;
        }
    }
    pthread_mutex_unlock(&shared_mu);
    *out = ex;
    return r;
}

int lc_executor_default_shutdown(bool cancel_pending)
{
    pthread_mutex_lock(&shared_mu);
    /* relaxed: under shared_mu, which every store holds. */
    lc_executor_t *ex = atomic_load_explicit(&shared_default, memory_order_relaxed);
    if (ex != NULL && lc_executor_current() == ex) {
        pthread_mutex_unlock(&shared_mu);
        return LC_EBUSY;
    }
    atomic_store_explicit(&shared_default, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&shared_mu);
    if (ex == NULL)
        return 0;
    lc_executor_shutdown(ex, true, cancel_pending);
    lc__executor_unref(ex);
    return 0;
}

/* The executor that lc_loop_run_in_executor(loop, NULL, ...) uses (rules 1-3 in the header). */
int lc__executor_default(lc_loop_t *loop, lc_executor_t **out)
{
    lc_executor_t *set = lc__loop_default_executor(loop, NULL);
    if (set != NULL) {
        *out = set;
        return 0;
    }
    if (lc_loop_group(loop) != NULL) /* a group's loop, whichever thread runs it */
        return get_shared_default(out);
    lc_executor_t *ex;
    int r = lc__executor_create_owned(loop, &ex);
    if (r != 0)
        return r;
    lc__loop_set_default_executor(loop, ex, lc__executor_release_owned);
    *out = ex;
    return 0;
}

int lc_loop_set_default_executor(lc_loop_t *loop, lc_executor_t *ex)
{
    if (loop == NULL)
        return LC_EINVAL;
    int r = lc__loop_check_call(loop, "set_default_executor");
    if (r != 0)
        return r;
    bool owned;
    lc_executor_t *old = lc__loop_default_executor(loop, &owned);
    if (owned) {
        /* Let go of the owned one: it shuts down without waiting and its queued jobs still run
         * and deliver (the loop stays open); from now on the unowned rules apply to it. */
        lc__executor_let_go(old);
    }
    lc__loop_set_default_executor(loop, ex, NULL);
    return 0;
}

int lc_group_set_default_executor(lc_group_t *g, lc_executor_t *ex)
{
    if (g == NULL)
        return LC_EINVAL;
    unsigned n = lc_group_size(g);
    for (unsigned i = 0; i < n; i++) {
        if (lc_loop_is_running(lc_group_loop(g, i)))
            return LC_EBUSY;
    }
    for (unsigned i = 0; i < n; i++) {
        int r = lc_loop_set_default_executor(lc_group_loop(g, i), ex);
        if (r != 0)
            return r;
    }
    return 0;
}
