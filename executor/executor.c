/* Executors: worker-thread pools, and run_in_executor (include/loopcore/executor.h).
 *
 * One mutex (ex->mu) guards an executor's shared state: the FIFO of queued jobs, the list of
 * running jobs, and the worker counts. Every decision (take a job, wake a worker, start one, go to
 * sleep, shut down) is made under it, so no wake-up can be lost. The only state read without the
 * mutex is a hint (the queue length, polled by a spinning worker, which then takes the job under
 * the mutex) and the reference count.
 *
 * A job is one allocation: the lc_call_t that carries its outcome back to the loop is embedded in
 * it. Its life:
 *
 *   loop thread                 worker                                loop thread
 *   run_in_executor ──queue──▶  fn(arg, &result) ──post_threadsafe──▶ job_delivered: resolve the
 *   (future + watcher)          (running list)      (loop's MPSC)      future, free the job
 *
 * The watcher is a done callback on the job's future, added at submission and removed when the
 * outcome arrives. It only runs if the future is done before that, that is, if its owner
 * cancelled it: it then takes the job out of the queue if no worker took it yet (the job never
 * runs), or leaves it to finish (its result then goes to the job's destructor when it arrives).
 *
 * Wake-ups. A submission wakes a sleeping worker, or starts a new one, only when the workers that
 * are awake would take longer than a wake-up costs to reach the new job: never while a worker
 * spins on the queue, and for short jobs not while a busy worker can drain the queue soon (the
 * running average of job durations decides). A worker that takes a job and leaves more behind
 * applies the same rule, so wake-ups spread in a chain instead of all on the submitting loop. A
 * burst of short jobs is therefore drained by the workers already awake, without a futex call
 * per job; long jobs fan out to as many workers as there are jobs, up to max_workers. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"
#include "loopcore/executor.h"

/* Waking a sleeping worker costs it tens of microseconds on virtual machines before it runs. A
 * new job is worth a wake-up when the awake workers need longer than this to reach it. */
#define WAKE_COST_NS 50000.0
/* The running average of job durations starts high ("jobs block"), so that the first jobs of a
 * new executor fan out at once; a few dozen short jobs bring it down (weight 1/8 per job). */
#define AVG_INITIAL_NS 1e6

/* ---- Jobs ------------------------------------------------------------------------------------ */

typedef enum {
    J_QUEUED = 1, /* in ex's queue */
    J_RUNNING,    /* in ex's running list, fn runs on a worker */
    J_POSTED,     /* its outcome travels to, or waits in, its loop's queue */
    J_BOUNCED,    /* owned executors: the closed owner refused the outcome; in ex->bounced */
    J_LOOSE,      /* in no list: being released */
} job_where;

typedef struct job_s {
    lc_call_t call;            /* the outcome's message to the loop */
    struct job_s *prev, *next; /* ex's queue, running or bounced list; under ex->mu */
    lc_executor_t *ex;         /* a reference */
    lc_loop_t *loop;
    lc_job_fn fn;
    void *arg;
    lc_result_dtor dtor;
    /* The job's reference to its future. Used on the loop's thread only, or by the thread that
     * closes the loop (the owned executor's release, a hand-back by close). */
    lc_future_t *fut;
    /* Written by the worker before it posts the outcome; the post publishes them. */
    void *result;
    int status;
    bool ran;
    uint8_t where;  /* job_where; under ex->mu */
    bool orphaned;  /* under ex->mu: the owner loop closed while fn ran; the future is gone */
    bool watch_ran; /* loop thread: the watcher ran */
    bool delivered; /* loop thread: the outcome arrived; the job waits only for its watcher */
} job_t;

/* ---- Executors ------------------------------------------------------------------------------- */

struct lc_executor_s {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* sleeping workers wait here */
    pthread_cond_t idle_cv; /* lc_executor_shutdown(wait) waits here for the last worker */

    /* Under mu. */
    job_t *q_head, *q_tail; /* queued jobs, FIFO */
    job_t *running;         /* jobs whose fn runs */
    job_t *bounced;         /* owned executors: outcomes the closed owner refused */
    unsigned nthreads;      /* workers alive, starting ones included */
    unsigned nstarting;     /* created, not yet at their first look at the queue */
    unsigned nsleeping;     /* in pthread_cond_wait on work_cv */
    unsigned nwaking;       /* signalled, not yet awake */
    unsigned nspinning;     /* polling the queue (at most one) */
    unsigned nrunning;
    unsigned next_index; /* thread names */
    bool shutdown;
    bool owned; /* a loop owns it (rule 3): its jobs all come from that loop */
    double avg_ns; /* running average of job durations */
    unsigned long long completed, cancelled;

    /* Written under mu; read without it by a spinning worker: a hint, the job itself is taken
     * under mu (relaxed on both sides, it orders nothing). */
    _Atomic size_t nqueued;
    _Atomic bool stop_spin;

    /* One for the handle (the user's, or the owning loop's), one per worker, one per job. */
    _Atomic uint32_t refs;

    /* Immutable after create. */
    unsigned max_workers;
    size_t max_queued;
    double spin; /* seconds; 0: never */
    char prefix[16];
};

static __thread lc_executor_t *tls_worker_ex; /* the executor this worker thread belongs to */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void ex_ref(lc_executor_t *ex)
{
    /* relaxed: a new reference is made from one the caller holds; nothing to publish. */
    atomic_fetch_add_explicit(&ex->refs, 1, memory_order_relaxed);
}

static void ex_unref(lc_executor_t *ex)
{
    /* acq_rel: the release half orders this holder's uses of ex before the free; the acquire
     * half, in the holder that drops the last reference, pairs with the others' release halves,
     * so every use happens-before the free below. */
    if (atomic_fetch_sub_explicit(&ex->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_cond_destroy(&ex->idle_cv);
    pthread_cond_destroy(&ex->work_cv);
    pthread_mutex_destroy(&ex->mu);
    free(ex);
}

static void job_free(job_t *j)
{
    lc_executor_t *ex = j->ex;
    free(j);
    ex_unref(ex);
}

/* Passes a successful result that nobody will receive to the job's destructor. */
static void job_drop_result(job_t *j)
{
    if (j->ran && j->status >= 0 && j->result != NULL && j->dtor != NULL)
        j->dtor(j->result);
    j->result = NULL;
}

/* ---- Lists (under mu) ------------------------------------------------------------------------ */

static void queue_push(lc_executor_t *ex, job_t *j)
{
    j->where = J_QUEUED;
    j->next = NULL;
    j->prev = ex->q_tail;
    if (ex->q_tail != NULL)
        ex->q_tail->next = j;
    else
        ex->q_head = j;
    ex->q_tail = j;
    atomic_store_explicit(&ex->nqueued, atomic_load_explicit(&ex->nqueued, memory_order_relaxed) + 1,
                          memory_order_relaxed); /* relaxed: see the field */
}

static void queue_unlink(lc_executor_t *ex, job_t *j)
{
    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        ex->q_head = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    else
        ex->q_tail = j->prev;
    j->prev = j->next = NULL;
    j->where = J_LOOSE;
    atomic_store_explicit(&ex->nqueued, atomic_load_explicit(&ex->nqueued, memory_order_relaxed) - 1,
                          memory_order_relaxed); /* relaxed: see the field */
}

/* Takes the whole queue (its jobs become J_LOOSE); returns its head. */
static job_t *queue_take_all(lc_executor_t *ex)
{
    job_t *head = ex->q_head;
    for (job_t *j = head; j != NULL; j = j->next)
        j->where = J_LOOSE;
    ex->q_head = ex->q_tail = NULL;
    atomic_store_explicit(&ex->nqueued, 0, memory_order_relaxed); /* relaxed: see the field */
    return head;
}

static void list_push(job_t **head, job_t *j)
{
    j->prev = NULL;
    j->next = *head;
    if (*head != NULL)
        (*head)->prev = j;
    *head = j;
}

static void list_unlink(job_t **head, job_t *j)
{
    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        *head = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

/* ---- Wake-ups and workers -------------------------------------------------------------------- */

/* Called under mu when jobs are queued: wakes a sleeping worker, or returns true if the caller
 * must start a new one (counted already), following the rule at the top of this file. */
static bool kick_locked(lc_executor_t *ex)
{
    size_t q = atomic_load_explicit(&ex->nqueued, memory_order_relaxed); /* we hold mu */
    if (q == 0)
        return false;
    /* Workers that will look at the queue soon: awake ones (running, spinning, about to sleep),
     * signalled ones and starting ones. */
    unsigned soon = ex->nthreads - ex->nsleeping + ex->nwaking;
    if (getenv("LC_EXEC_SIMPLE") != NULL) {
        if (q <= ex->nspinning + ex->nwaking + ex->nstarting)
            return false;
    } else if (soon > 0) {
        if (ex->nspinning > 0 && q <= ex->nspinning)
            return false;
        if ((double)q * ex->avg_ns / (double)soon <= WAKE_COST_NS)
            return false;
    }
    if (ex->nsleeping > ex->nwaking) {
        ex->nwaking++;
        pthread_cond_signal(&ex->work_cv);
        return false;
    }
    if (ex->nthreads < ex->max_workers && !ex->shutdown) {
        ex->nthreads++;
        ex->nstarting++;
        return true;
    }
    return false;
}

static void *worker_main(void *arg);

/* Starts a worker counted by kick_locked(). Any thread, without mu. Returns 0 or -errno (the
 * count is then taken back). */
static int spawn_worker(lc_executor_t *ex)
{
    ex_ref(ex); /* the worker's */
    /* The worker inherits a mask that blocks the asynchronous signals: they go to the loops'
     * threads. Synchronous ones (faults) must stay deliverable. */
    sigset_t block, old;
    sigfillset(&block);
    static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < sizeof(sync_signals) / sizeof(sync_signals[0]); i++)
        sigdelset(&block, sync_signals[i]);
    pthread_sigmask(SIG_SETMASK, &block, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int r = pthread_create(&t, &attr, worker_main, ex);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r == 0)
        return 0;
    pthread_mutex_lock(&ex->mu);
    ex->nthreads--;
    ex->nstarting--;
    if (ex->nthreads == 0)
        pthread_cond_broadcast(&ex->idle_cv);
    pthread_mutex_unlock(&ex->mu);
    ex_unref(ex);
    return -r;
}

/* The spinning worker's poll: returns when a job is queued, on shutdown, or when the budget is
 * spent. */
static void spin_wait(lc_executor_t *ex)
{
    double deadline = now_s() + ex->spin;
    for (unsigned i = 1;; i++) {
        /* relaxed: hints (see the fields); the caller re-checks under mu. */
        if (atomic_load_explicit(&ex->nqueued, memory_order_relaxed) > 0 ||
            atomic_load_explicit(&ex->stop_spin, memory_order_relaxed))
            return;
        lc_mpsc_cpu_relax();
        if ((i & 63) == 0 && now_s() >= deadline)
            return;
    }
}

static void job_delivered(lc_call_t *call, int status);
static void job_release_closed(job_t *j);

/* Runs j (taken off the queue, in the running list) without mu, then delivers its outcome.
 * Returns with mu held. */
static void run_job(lc_executor_t *ex, job_t *j)
{
    double t0 = now_s();
    void *result = NULL;
    int status = j->fn(j->arg, &result);
    double dt = (now_s() - t0) * 1e9;
    j->result = result;
    j->status = status;
    j->ran = true;

    pthread_mutex_lock(&ex->mu);
    ex->avg_ns += (dt - ex->avg_ns) / 8;
    list_unlink(&ex->running, j);
    ex->nrunning--;
    ex->completed++;
    if (j->orphaned) {
        /* The owner loop closed meanwhile and settled the future: only the result is left. */
        j->where = J_LOOSE;
        pthread_mutex_unlock(&ex->mu);
        job_drop_result(j);
        job_free(j);
        pthread_mutex_lock(&ex->mu);
        return;
    }
    j->where = J_POSTED;
    if (ex->owned) {
        /* Posted under mu, so that the owner's close (owned_release, which takes mu) finds each
         * job either in the running list, or in the bounced list, or already handed back. */
        if (lc_loop_post_threadsafe(j->loop, &j->call, job_delivered) != 0) {
            j->where = J_BOUNCED;
            list_push(&ex->bounced, j);
        }
        return;
    }
    pthread_mutex_unlock(&ex->mu);
    /* After a successful post the job is the loop's: not touched again here. */
    if (lc_loop_post_threadsafe(j->loop, &j->call, job_delivered) != 0)
        job_release_closed(j); /* the loop was closed first: see the lifetime rules */
    pthread_mutex_lock(&ex->mu);
}

static void set_thread_name(lc_executor_t *ex, unsigned index)
{
    char name[32];
    snprintf(name, sizeof(name), "%s_%u", ex->prefix, index);
    name[15] = '\0'; /* Linux's limit */
    pthread_setname_np(pthread_self(), name);
}

static void *worker_main(void *arg)
{
    lc_executor_t *ex = arg;
    tls_worker_ex = ex;
    pthread_mutex_lock(&ex->mu);
    unsigned index = ex->next_index++;
    pthread_mutex_unlock(&ex->mu);
    set_thread_name(ex, index);

    pthread_mutex_lock(&ex->mu);
    ex->nstarting--;
    bool may_spin = true;
    for (;;) {
        job_t *j = ex->q_head;
        if (j != NULL) {
            queue_unlink(ex, j);
            j->where = J_RUNNING;
            list_push(&ex->running, j);
            ex->nrunning++;
            bool spawn = kick_locked(ex); /* more jobs behind this one? */
            pthread_mutex_unlock(&ex->mu);
            if (spawn)
                spawn_worker(ex); /* on failure the workers alive take the jobs */
            run_job(ex, j);
            may_spin = true;
            continue;
        }
        if (ex->shutdown)
            break;
        if (may_spin && ex->spin > 0 && ex->nspinning == 0) {
            ex->nspinning++;
            pthread_mutex_unlock(&ex->mu);
            spin_wait(ex);
            pthread_mutex_lock(&ex->mu);
            ex->nspinning--;
            may_spin = false; /* one spin per idle period, then sleep */
            continue;
        }
        ex->nsleeping++;
        pthread_cond_wait(&ex->work_cv, &ex->mu);
        ex->nsleeping--;
        if (ex->nwaking > 0)
            ex->nwaking--;
    }
    ex->nthreads--;
    if (ex->nthreads == 0)
        pthread_cond_broadcast(&ex->idle_cv);
    pthread_mutex_unlock(&ex->mu);
    tls_worker_ex = NULL;
    ex_unref(ex); /* the worker's; nothing of ex is touched after it */
    return NULL;
}

/* ---- Creating and shutting down -------------------------------------------------------------- */

static unsigned default_max_workers(void)
{
    cpu_set_t set;
    long n = 0;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    return n + 4 < 32 ? (unsigned)n + 4 : 32;
}

static _Atomic unsigned executor_counter; /* names "lc-exec-<n>" */

int lc_executor_create(lc_executor_t **out, const lc_executor_opts *opts)
{
    static const lc_executor_opts defaults = {0};
    if (out == NULL)
        return LC_EINVAL;
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if (opts->spin_budget != opts->spin_budget) /* NaN */
        return LC_EINVAL;
    lc_executor_t *ex = calloc(1, sizeof(*ex));
    if (ex == NULL)
        return LC_ENOMEM;
    pthread_mutex_init(&ex->mu, NULL);
    pthread_cond_init(&ex->work_cv, NULL);
    pthread_cond_init(&ex->idle_cv, NULL);
    ex->avg_ns = AVG_INITIAL_NS;
    atomic_init(&ex->nqueued, 0);
    atomic_init(&ex->stop_spin, false);
    atomic_init(&ex->refs, 1);
    ex->max_workers = opts->max_workers != 0 ? opts->max_workers : default_max_workers();
    ex->max_queued = opts->max_queued;
    ex->spin = opts->spin_budget == 0  ? LC_EXECUTOR_DEFAULT_SPIN
               : opts->spin_budget < 0 ? 0.0
                                       : opts->spin_budget;
    if (opts->thread_name_prefix != NULL && opts->thread_name_prefix[0] != '\0') {
        snprintf(ex->prefix, sizeof(ex->prefix), "%s", opts->thread_name_prefix);
    } else {
        /* relaxed: only the numbers' uniqueness matters. */
        unsigned n = atomic_fetch_add_explicit(&executor_counter, 1, memory_order_relaxed);
        snprintf(ex->prefix, sizeof(ex->prefix), "lc-exec-%u", n);
    }
    *out = ex;
    return 0;
}

/* Sends a job that never ran back to its loop, whose future is then cancelled (job_delivered). */
static void deliver_unrun(job_t *j)
{
    j->ran = false;
    j->status = LC_ECANCELLED;
    if (lc_loop_post_threadsafe(j->loop, &j->call, job_delivered) != 0)
        job_release_closed(j);
}

int lc_executor_shutdown(lc_executor_t *ex, bool wait, bool cancel_pending)
{
    if (ex == NULL)
        return LC_EINVAL;
    if (wait && tls_worker_ex == ex)
        return LC_EBUSY;
    pthread_mutex_lock(&ex->mu);
    ex->shutdown = true;
    atomic_store_explicit(&ex->stop_spin, true, memory_order_relaxed); /* a hint, see the field */
    job_t *cancelled = NULL;
    if (cancel_pending) {
        for (job_t *j = ex->q_head; j != NULL; j = j->next)
            ex->cancelled++;
        cancelled = queue_take_all(ex);
    }
    pthread_cond_broadcast(&ex->work_cv);
    pthread_mutex_unlock(&ex->mu);
    while (cancelled != NULL) {
        job_t *next = cancelled->next;
        deliver_unrun(cancelled);
        cancelled = next;
    }
    if (wait) {
        pthread_mutex_lock(&ex->mu);
        while (ex->nthreads > 0)
            pthread_cond_wait(&ex->idle_cv, &ex->mu);
        pthread_mutex_unlock(&ex->mu);
    }
    return 0;
}

int lc_executor_destroy(lc_executor_t *ex)
{
    int r = lc_executor_shutdown(ex, true, false);
    if (r != 0)
        return r;
    ex_unref(ex);
    return 0;
}

int lc_executor_get_stats(lc_executor_t *ex, lc_executor_stats_t *stats)
{
    if (ex == NULL || stats == NULL)
        return LC_EINVAL;
    pthread_mutex_lock(&ex->mu);
    stats->max_workers = ex->max_workers;
    stats->workers = ex->nthreads;
    stats->idle = ex->nsleeping + ex->nspinning;
    stats->running = ex->nrunning;
    stats->queued = atomic_load_explicit(&ex->nqueued, memory_order_relaxed); /* under mu */
    stats->completed = ex->completed;
    stats->cancelled = ex->cancelled;
    pthread_mutex_unlock(&ex->mu);
    return 0;
}

lc_executor_t *lc_executor_current(void) { return tls_worker_ex; }

/* ---- Outcomes on the loop -------------------------------------------------------------------- */

static void watch_cb(lc_future_t *fut, void *arg);

/* Resolves the job's pending future with its outcome. */
static void settle(lc_future_t *fut, const job_t *j)
{
    if (!j->ran || j->status == LC_ECANCELLED)
        lc_future_cancel(fut);
    else if (j->status >= 0)
        lc_future_set_result(fut, j->result);
    else
        lc_future_set_error(fut, j->status);
}

/* Releases a job whose loop is closed, on the thread at hand: the result goes to the destructor,
 * a pending future is cancelled (fn did not run) or fails with LC_ECLOSED (it ran), its error
 * counts as retrieved (nobody can wait for it any more), and the job's reference is dropped. */
static void job_release_closed(job_t *j)
{
    job_drop_result(j);
    lc_future_t *fut = j->fut;
    if (fut != NULL) {
        j->fut = NULL;
        lc_future_remove_done_callback(fut, watch_cb, j);
        if (!lc_future_done(fut)) {
            if (j->ran)
                lc_future_set_error(fut, LC_ECLOSED);
            else
                lc_future_cancel(fut);
        }
        int ignored;
        (void)lc_future_error(fut, &ignored);
        lc_future_unref(fut);
    }
    job_free(j);
}

/* The outcome's message, on the loop's thread (status 0), or handed back by the loop's close
 * (LC_ECLOSED, on the closing thread). */
static void job_delivered(lc_call_t *call, int status)
{
    job_t *j = lc_container_of(call, job_t, call);
    if (j->delivered) {
        /* Second visit (see below): the watcher has run, or close dropped it; only free. */
        job_free(j);
        return;
    }
    if (status != 0) {
        job_release_closed(j);
        return;
    }
    lc_future_t *fut = j->fut;
    j->fut = NULL;
    if (lc_future_remove_done_callback(fut, watch_cb, j) > 0) {
        settle(fut, j); /* the usual case: the future was pending */
        lc_future_unref(fut);
        job_free(j);
        return;
    }
    /* The future was done first (its owner cancelled it): the outcome is dropped. */
    job_drop_result(j);
    lc_future_unref(fut);
    if (j->watch_ran) {
        job_free(j);
        return;
    }
    /* The watcher is scheduled but has not run; it uses j. Send j once more through the
     * inbound queue: the loop appends it behind the watcher, which then runs first. If the
     * loop closes first, close drops the watcher without running it and hands j back. */
    j->delivered = true;
    if (lc_loop_post_threadsafe(j->loop, &j->call, job_delivered) != 0)
        job_free(j); /* closed meanwhile: the watcher will not run */
}

/* The job's future is done before its outcome arrived (its owner cancelled it). Loop thread. */
static void watch_cb(lc_future_t *fut, void *arg)
{
    (void)fut;
    job_t *j = arg;
    j->watch_ran = true;
    if (j->delivered)
        return; /* the outcome is back and waits behind us to free j */
    lc_executor_t *ex = j->ex;
    pthread_mutex_lock(&ex->mu);
    if (j->where != J_QUEUED) {
        /* Running (it finishes, the result is dropped when it arrives) or on its way back. */
        pthread_mutex_unlock(&ex->mu);
        return;
    }
    queue_unlink(ex, j);
    ex->cancelled++;
    pthread_mutex_unlock(&ex->mu);
    /* No worker took it: it never runs. */
    lc_future_unref(j->fut);
    j->fut = NULL;
    job_free(j);
}

/* ---- The loop's default executor ------------------------------------------------------------- */

/* The owned executor's release: lc_loop_close() calls it on the closing thread, after it handed
 * back every queued outcome. Shuts the executor down without waiting: queued jobs never run and
 * their futures are cancelled; running jobs are orphaned (their futures fail with LC_ECLOSED now,
 * their workers drop the results); outcomes the closed loop refused are released here. */
static void owned_release(void *p)
{
    lc_executor_t *ex = p;
    pthread_mutex_lock(&ex->mu);
    ex->shutdown = true;
    ex->owned = false;
    atomic_store_explicit(&ex->stop_spin, true, memory_order_relaxed); /* a hint */
    for (job_t *j = ex->q_head; j != NULL; j = j->next)
        ex->cancelled++;
    job_t *unrun = queue_take_all(ex);
    job_t *bounced = ex->bounced;
    ex->bounced = NULL;
    for (job_t *j = ex->running; j != NULL; j = j->next) {
        /* The loop is closed: settling schedules no callback and runs no user code. */
        j->orphaned = true;
        lc_future_t *fut = j->fut;
        j->fut = NULL;
        lc_future_remove_done_callback(fut, watch_cb, j);
        if (!lc_future_done(fut))
            lc_future_set_error(fut, LC_ECLOSED);
        int ignored;
        (void)lc_future_error(fut, &ignored);
        lc_future_unref(fut);
    }
    pthread_cond_broadcast(&ex->work_cv);
    pthread_mutex_unlock(&ex->mu);
    for (job_t *j = unrun; j != NULL;) {
        job_t *next = j->next;
        j->ran = false;
        job_release_closed(j);
        j = next;
    }
    for (job_t *j = bounced; j != NULL;) {
        job_t *next = j->next;
        job_release_closed(j);
        j = next;
    }
    ex_unref(ex); /* the loop's; the workers and jobs still alive keep ex */
}

/* Shuts down without waiting an executor the loop owned and now lets go of, while the loop stays
 * open: its queued jobs still run and deliver. */
static void owned_let_go(lc_executor_t *ex)
{
    pthread_mutex_lock(&ex->mu);
    ex->shutdown = true;
    ex->owned = false;
    atomic_store_explicit(&ex->stop_spin, true, memory_order_relaxed); /* a hint */
    pthread_cond_broadcast(&ex->work_cv);
    pthread_mutex_unlock(&ex->mu);
    ex_unref(ex);
}

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
        pthread_mutex_lock(&ex->mu);
        /* Idle: no job queued or alive anywhere (references: the handle and the workers). */
        idle = atomic_load_explicit(&ex->refs, memory_order_relaxed) == 1 + ex->nthreads &&
               ex->nrunning == 0;
        pthread_mutex_unlock(&ex->mu);
        if (idle)
            atomic_store_explicit(&shared_default, NULL, memory_order_relaxed);
    }
    pthread_mutex_unlock(&shared_mu);
    /* A busy executor is left to the process's end: waiting for its jobs could hang the exit,
     * and their loops may be gone. */
    if (idle)
        lc_executor_destroy(ex);
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
        r = lc_executor_create(&ex, &(lc_executor_opts){.thread_name_prefix = "lc-default"});
        if (r == 0) {
            /* release: publishes the initialized executor to lock-free readers above. */
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
    if (tls_worker_ex != NULL &&
        tls_worker_ex == atomic_load_explicit(&shared_default, memory_order_acquire))
        return LC_EBUSY;
    pthread_mutex_lock(&shared_mu);
    /* acquire not needed: under shared_mu, which the store holds. */
    lc_executor_t *ex = atomic_exchange_explicit(&shared_default, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&shared_mu);
    if (ex == NULL)
        return 0;
    lc_executor_shutdown(ex, true, cancel_pending);
    ex_unref(ex);
    return 0;
}

/* True if the calling thread is a loop group's loop thread (named "lc-loop-<i>" by
 * lc_group_start(), see group.h). Cached per thread: the name is read from the kernel. */
static bool on_group_thread(void)
{
    static __thread signed char cached = -1;
    if (cached < 0) {
        char name[32] = "";
        cached = pthread_getname_np(pthread_self(), name, sizeof(name)) == 0 &&
                 strncmp(name, "lc-loop-", 8) == 0;
    }
    return cached > 0;
}

/* The executor that lc_loop_run_in_executor(loop, NULL, ...) uses (rules 1-3 in the header). */
static int default_executor(lc_loop_t *loop, lc_executor_t **out)
{
    if (loop->default_executor != NULL) {
        *out = loop->default_executor;
        return 0;
    }
    lc_loop_t *running;
    if (lc_get_running_loop(&running) == 0 && running == loop && on_group_thread())
        return get_shared_default(out);
    lc_executor_t *ex;
    int r = lc_executor_create(&ex, &(lc_executor_opts){.thread_name_prefix = "lc-default"});
    if (r != 0)
        return r;
    ex->owned = true; /* nobody else can see ex yet */
    loop->default_executor = ex;
    loop->default_executor_release = owned_release;
    *out = ex;
    return 0;
}

int lc_loop_set_default_executor(lc_loop_t *loop, lc_executor_t *ex)
{
    if (loop == NULL)
        return LC_EINVAL;
    if (lc_loop_is_closed(loop))
        return LC_ECLOSED;
    int r = lc__loop_check_thread(loop, "set_default_executor");
    if (r != 0)
        return r;
    if (loop->default_executor_release != NULL)
        owned_let_go(loop->default_executor);
    loop->default_executor = ex;
    loop->default_executor_release = NULL;
    return 0;
}

int lc_group_set_default_executor(lc_group_t *g, lc_executor_t *ex)
{
    unsigned n = lc_group_size(g);
    if (g == NULL)
        return LC_EINVAL;
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

/* ---- run_in_executor ------------------------------------------------------------------------- */

int lc_loop_run_in_executor_dtor(lc_loop_t *loop, lc_executor_t *ex, lc_job_fn fn, void *arg,
                                 lc_result_dtor dtor, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || fn == NULL || fut == NULL)
        return LC_EINVAL;
    if (lc_loop_is_closed(loop))
        return LC_ECLOSED;
    int r = lc__loop_check_thread(loop, "run_in_executor");
    if (r != 0)
        return r;
    if (ex == NULL) {
        r = default_executor(loop, &ex);
        if (r != 0)
            return r;
    }
    job_t *j = malloc(sizeof(*j));
    if (j == NULL)
        return LC_ENOMEM;
    lc_future_t *f;
    r = lc_loop_create_future(loop, &f);
    if (r != 0) {
        free(j);
        return r;
    }
    /* The first done callback is stored inline in the future: this cannot fail. */
    r = lc_future_add_done_callback(f, watch_cb, j);
    if (r != 0) {
        lc_future_unref(f);
        free(j);
        return r;
    }
    *j = (job_t){.ex = ex, .loop = loop, .fn = fn, .arg = arg, .dtor = dtor};
    j->fut = lc_future_ref(f);
    ex_ref(ex); /* the job's */

    pthread_mutex_lock(&ex->mu);
    bool spawn = false;
    if (ex->shutdown) {
        r = LC_ECLOSED;
    } else if (ex->owned && ex != loop->default_executor) {
        r = LC_EINVAL; /* an owned executor serves its loop only (lc_executor_current) */
    } else if (ex->max_queued != 0 &&
               atomic_load_explicit(&ex->nqueued, memory_order_relaxed) >= ex->max_queued) {
        r = LC_EAGAIN;
    } else {
        queue_push(ex, j);
        spawn = kick_locked(ex);
    }
    pthread_mutex_unlock(&ex->mu);
    if (r == 0 && spawn) {
        int sr = spawn_worker(ex);
        if (sr != 0) {
            /* With no worker at all the job would wait forever: take it back and fail. */
            pthread_mutex_lock(&ex->mu);
            if (ex->nthreads == 0 && j->where == J_QUEUED) {
                queue_unlink(ex, j);
                r = sr;
            }
            pthread_mutex_unlock(&ex->mu);
        }
    }
    if (r != 0) {
        lc_future_remove_done_callback(f, watch_cb, j);
        lc_future_unref(f); /* the job's */
        lc_future_unref(f); /* the caller's */
        job_free(j);
        return r;
    }
    *fut = f;
    return 0;
}

int lc_loop_run_in_executor(lc_loop_t *loop, lc_executor_t *ex, lc_job_fn fn, void *arg,
                            lc_future_t **fut)
{
    return lc_loop_run_in_executor_dtor(loop, ex, fn, arg, NULL, fut);
}
