/* The worker pool's definitions that the executor's files share (executor/pool.c owns the
 * mechanism, and its top comment describes the protocol): the control word, the job (the private
 * part of an lc_work_t), the executor itself, and the submission, which is inline because every
 * lc_loop_queue_work() and run_in_executor pays it. Private to executor/. */
#ifndef LOOPCORE_EXECUTOR_POOL_H
#define LOOPCORE_EXECUTOR_POOL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loopcore/errno.h"
#include "loopcore/executor.h"
#include "loopcore/threadsafe.h"
#include "threadsafe/mpsc.h"

#define LC_UNLIKELY(x) __builtin_expect(!!(x), 0) /* as the engine's */

/* ---- The control word (pool.c's top comment) ------------------------------------------------- */

#define CTL_CLOSED 1ull
#define CTL_I1 (1ull << 8) /* the worker counts: 12 bits each */
#define CTL_B1 (1ull << 20)
#define CTL_S1 (1ull << 32)
#define CTL_T1 (1ull << 44)
#define CTL_FIELD(c, one) ((unsigned)(((c) / (one)) & 0xfffu))
#define CTL_I(c) CTL_FIELD(c, CTL_I1)
#define CTL_B(c) CTL_FIELD(c, CTL_B1)
#define CTL_S(c) CTL_FIELD(c, CTL_S1)
#define CTL_T(c) CTL_FIELD(c, CTL_T1)
#define MAX_WORKERS 4095u

/* ---- Jobs ------------------------------------------------------------------------------------ */

typedef struct job_s {
    lc_call_t call;            /* the outcome's message to the loop (a chain's head carries all) */
    lc_mpsc_node_t qnode;      /* the executor's inbound queue */
    struct job_s *prev, *next; /* ex->running or ex->bounced; under ex->mu */
    struct job_s *chain;       /* a batch, then the chain of outcomes sent to one loop */
    lc_loop_t *loop;
    lc_work_fn work;
    lc_after_work_cb after;
    /* Internal users only (run_in_executor): called under ex->mu on the thread that closes the
     * loop that owns the executor, for a job whose work runs at that moment. */
    void (*orphan)(lc_work_t *req);
    int status; /* the work's return value, or LC_ECANCELLED: written by the worker, published by
                   the post */
    /* Set by lc_work_cancel() (loop thread), read by the worker before it runs the work. relaxed
     * on both sides: it publishes nothing; either the worker sees it and skips the job, or the job
     * counts as started. */
    _Atomic bool cancel;
    /* The CPU the submission ran on (-1: unknown), read by the worker (see leave_cpu in pool.c).
     * Written before the push, which publishes it. */
    int16_t cpu;
} job_t;

_Static_assert(sizeof(job_t) <= sizeof(((lc_work_t *)0)->_priv), "lc_work_t is too small");

static inline job_t *lc__job_of(lc_work_t *req) { return (job_t *)(void *)req->_priv; }

/* ---- Executors ------------------------------------------------------------------------------- */

struct lc_executor_s {
    /* Immutable after create; read by submitters and workers. */
    lc_loop_t *owner; /* rule 3: the loop that owns it; only that loop may submit */
    unsigned max_workers;
    size_t max_queued;
    double spin; /* seconds; 0: never */
    char prefix[16];
    /* The workers' CPUs (see process_cpus in pool.c); has_cpus false: they inherit their creator's.
     */
    bool has_cpus;
    cpu_set_t cpus;
    /* Whether avg_ns is under SHORT_NS: read by every submission that finds no idle worker, so it
     * sits on this read-mostly line, apart from avg_ns, and is written only when it flips (a
     * worker's relaxed load and store: a heuristic; a lost flip is redone at the next batch). */
    _Atomic bool short_jobs;
    char pad0[LC_MPSC_PAD];

    /* Written by submitters: jobs pushed. seq_cst RMW after the push, seq_cst reads by workers
     * after their transitions: the Dekker pair of pool.c's top comment. */
    _Atomic uint64_t submitted;
    /* One for the handle (the user's, or the owning loop's), one per worker. */
    _Atomic uint32_t refs;
    char pad1[LC_MPSC_PAD];

    /* The control word (see pool.c's top comment): written by workers when they change state and by
     * the closing thread; read by every submission. */
    _Atomic uint64_t ctl;
    /* Set (release) by a push that found the queue re-armed; a spinning worker exchanges it
     * (acquire), which orders that push before its pop. A stale true only costs an empty pop. */
    _Atomic bool hint;
    /* max_queued only: jobs pushed and not yet taken (relaxed: the jobs travel through the
     * queue; this only counts them). */
    _Atomic int64_t bounded;
    char pad2[LC_MPSC_PAD];

    lc_mpsc_t inq; /* padded inside; the consumer role is taken under mu */

    /* Jobs popped (by workers, shutdown, release): written under mu (relaxed, exact there). */
    _Atomic uint64_t taken;
    /* Written by workers; relaxed everywhere: heuristics and statistics. */
    _Atomic uint32_t avg_ns;    /* running average of job durations */
    _Atomic bool spinning;      /* an idle worker spins (CAS false -> true to become it) */
    _Atomic uint32_t spin_ns;   /* the adaptive spin budget (see pool.c); 0: sleep at once */
    _Atomic bool stop_spin;     /* shutdown: spinners stop at once */
    _Atomic bool orphaned_hint; /* the owner loop closed: workers skip the jobs they hold */
    _Atomic unsigned long long completed, cancelled;
    _Atomic unsigned next_index; /* thread names */
    char pad3[LC_MPSC_PAD];

    pthread_mutex_t mu; /* the queue's consumer role, the lists and the fields below */
    pthread_cond_t work_cv;
    pthread_cond_t sentinel_cv;
    pthread_cond_t idle_cv; /* lc_executor_shutdown(wait) waits here for the last worker */
    job_t *running;         /* jobs taken by workers */
    job_t *bounced;         /* owned executors: outcomes the closed owner refused */
    unsigned nthreads;      /* workers alive, starting ones included */
    unsigned pend_work;     /* claims of work_cv sleepers not yet taken by a woken thread */
    unsigned pend_sentinel; /* the same for sentinel_cv */
    long sentinel_ns;       /* the sentinel's next timeout */
    unsigned sleeps;        /* counts sleeps, to try spinning again (SPIN_PROBE_SLEEPS) */
    bool shutdown;
    bool owned;    /* the owner loop's release will come (rule 3); cleared by release/let-go */
    bool orphaned; /* the owner loop closed: jobs still held by workers are dropped */
};

static inline bool lc__jobs_short(lc_executor_t *ex)
{
    /* relaxed: a heuristic, see the field. */
    return atomic_load_explicit(&ex->short_jobs, memory_order_relaxed);
}

/* ---- The pool's entries (pool.c) ------------------------------------------------------------- */

/* Makes sure at least target workers are idle (bounded by the queued jobs, which the caller
 * checked): claims sleepers, else starts workers up to max_workers. Any thread, without mu. */
void lc__executor_wake_workers(lc_executor_t *ex, unsigned target);

/* A submission that found the executor closed after its push (see "Closing" in pool.c). Returns 0
 * if a worker will still take j, else LC_ECLOSED (j is the caller's again). */
int lc__executor_submit_late(lc_executor_t *ex, job_t *j);

/* Drops a reference to ex (the handle's or a worker's); the last frees it. Any thread. */
void lc__executor_unref(lc_executor_t *ex);

/* Creates a default executor that loop owns (rule 3 of executor.h): only loop may submit to it,
 * and loop's close releases it (lc__executor_release_owned). Returns 0 or the errors of
 * lc_executor_create(). */
int lc__executor_create_owned(lc_loop_t *loop, lc_executor_t **out);

/* The owned executor's release, on the thread that closes its loop (see pool.c): the loop's
 * lc__executor_release_fn (engine/executor_hooks.h). Takes the loop's reference. */
void lc__executor_release_owned(lc_executor_t *ex);

/* The owner loop lets go of its executor while it stays open (lc_loop_set_default_executor): ex
 * shuts down without waiting, its queued jobs still run and deliver, and from now on the unowned
 * rules apply to it. Takes the loop's reference. */
void lc__executor_let_go(lc_executor_t *ex);

/* Whether ex is idle: nothing queued, no worker holds a job. A snapshot. Any thread. */
bool lc__executor_idle(lc_executor_t *ex);

/* Sends a request whose outcome was delivered once more to its loop, where after(req, status)
 * runs again behind everything queued there. Loop thread, inside after. Returns 0, or LC_ECLOSED
 * if the loop is closed (after does not run again). */
int lc__work_redeliver(lc_work_t *req);

/* Pushes j on ex's queue and wakes a worker if the rule of pool.c's top comment says so. Any
 * thread. */
static inline int lc__executor_submit(lc_executor_t *ex, job_t *j)
{
    /* relaxed: the early check of the closed bit; the one after the count decides. */
    if (LC_UNLIKELY(atomic_load_explicit(&ex->ctl, memory_order_relaxed) & CTL_CLOSED))
        return LC_ECLOSED;
    if (ex->max_queued != 0) {
        /* relaxed: see the field. */
        int64_t q = atomic_fetch_add_explicit(&ex->bounded, 1, memory_order_relaxed);
        if (q >= (int64_t)ex->max_queued) {
            atomic_fetch_sub_explicit(&ex->bounded, 1, memory_order_relaxed);
            return LC_EAGAIN;
        }
    }
    if (lc_mpsc_push(&ex->inq, &j->qnode)) {
        /* release: pairs with the spinner's acquire exchange (see the field). */
        atomic_store_explicit(&ex->hint, true, memory_order_release);
    }
    /* The submission's half of the Dekker pair (pool.c's top comment): count the pushed job, then
     * read the workers' states. seq_cst both: they pair with the workers' transitions (ctl_add) and
     * reads (look_after_transition), and with close_submissions(). */
    atomic_fetch_add_explicit(&ex->submitted, 1, memory_order_seq_cst);
    uint64_t c = atomic_load_explicit(&ex->ctl, memory_order_seq_cst);
    if (LC_UNLIKELY(c & CTL_CLOSED))
        return lc__executor_submit_late(ex, j);
    if (CTL_I(c) > 0)
        return 0;
    if (CTL_B(c) > 0 && CTL_T(c) > 0 && lc__jobs_short(ex))
        return 0;
    lc__executor_wake_workers(ex, 1);
    return 0;
}

#endif
