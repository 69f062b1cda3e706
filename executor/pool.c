/* The worker pool: an executor's workers and the jobs they run (include/loopcore/executor.h), apart
 * from its callers, as libuv's src/threadpool.c is: queue_work.c submits (lc_loop_queue_work),
 * run_in_executor.c builds futures on top of that, and default.c picks the executor that a NULL
 * executor means. The job, the executor and the submission itself are in pool.h.
 *
 * A job is the private part of an lc_work_t, which the caller allocates. It embeds the node of
 * the executor's inbound queue and the lc_call_t that carries its outcome back to its loop:
 *
 *   loop thread                  worker                                  loop thread
 *   lc_loop_queue_work ─MPSC push─▶ pop a batch, run each work ─post chain─▶ chain_delivered:
 *                                (running list)           (loop's MPSC)  after(req, status) each
 *
 * run_in_executor is a user of that API (run_in_executor.c): one allocation holds the lc_work_t,
 * the job's function and its future's reference.
 *
 * Submission takes no lock: a job is pushed on the executor's lock-free MPSC queue
 * (threadsafe/mpsc.h), whose consumer role the workers take in turn under ex->mu. A worker takes
 * a batch of jobs at once (up to BATCH_MAX while jobs are short, one at a time once they block),
 * runs them, and sends the outcomes of the batch to each loop as one chain: one post per loop and
 * batch, so the loop's wake-ups and queue operations are shared by the whole batch.
 *
 * Workers and wake-ups: the control word. Every worker is in one state, counted in ex->ctl beside
 * the closed bit:
 *
 *   I  idle: awake and about to look at the queue (after an empty pop, spinning, just started or
 *      woken)
 *   B  busy: holds a batch; it pops again when the batch is done (without a transition; after a
 *      pause of at most PACE_NS, see "Pacing" below)
 *   S  asleep on work_cv, not yet claimed by a waker
 *   T  asleep on sentinel_cv with a timeout (at most one: the sentinel), not yet claimed
 *
 * The protocol is Dekker's, on two words with sequentially consistent operations (no fences,
 * which ThreadSanitizer does not model): a submission pushes its job, counts it in ex->submitted
 * (a seq_cst RMW), then reads ctl (seq_cst); a worker changes its state in ctl (a seq_cst RMW),
 * then reads ex->submitted (seq_cst) before it looks at the queue. In the single order of seq_cst
 * operations, either the submission's read of ctl sees the worker's new state, or the worker's
 * read of submitted sees the count, which synchronizes with the submission's RMW: the push then
 * happens-before the worker's look, which finds the job. So the submission acts on what it read:
 *   - I > 0: an idle worker will look at the queue after its next transition, and find the job
 *     (an idle worker never sleeps without such a look). Nothing to do: no system call.
 *   - else B > 0, a sentinel sleeps, and jobs are short (the running average of job durations is
 *     under SHORT_NS): a busy worker pops again within microseconds, and if every busy worker is
 *     stuck in a long job after all, the sentinel's timeout bounds the wait. Nothing to do. This
 *     is what lets one awake worker drain a stream of short jobs without a futex call per job.
 *   - else: lc__executor_wake_workers() under ex->mu claims a sleeper (S or T -> I, then a condvar
 * signal) or starts a new worker (counted I at once), up to max_workers. The submission's hot path
 * is thus two atomic RMWs (the push's exchange, and the count on a line that only submitters write)
 * and one load of a word that the workers write only when they change state: no lock, and no write
 * to a line that the workers write per job. A worker that takes a batch and leaves jobs behind
 * wakes helpers the same way (two for blocking jobs, so that wake-ups fan out as a tree; for short
 * jobs one, when the backlog would take longer to drain than a wake-up costs).
 *
 * Sleepers are claimed under ex->mu: the waker moves one from S (or T) to I and increments the
 * pending count of that condition variable; the sleeper that wakes (signalled, timed out or
 * spurious) takes one pending claim if there is one, otherwise moves itself to I. Either way
 * every sleeper that leaves its wait is counted once.
 *
 * One idle worker at a time spins (ex->spinning) on the queue's hint (set by a push that found
 * the queue re-armed, the MPSC's guarantee (G)) before it sleeps, and with short jobs only while
 * no worker is busy: a busy worker is back at the queue within microseconds and spins then
 * itself, where a second awake worker would only compete with it for a CPU. The spin adapts
 * (ex->spin_ns): when jobs arrive while it spins, the next budget is a few times the wait they
 * took, and no less than the budget before (at most spin_budget): a stream's short gaps within a
 * burst of submissions must not make the spinner forget the longer gaps between bursts (a loop
 * that resubmits from its completions submits in bursts, one per iteration); when it runs out,
 * half. Spinning pays when jobs follow each other within microseconds; when they are sparse, or
 * when the CPUs are oversubscribed (the spinner then takes the CPU that the thread it waits for
 * needs), it only burns time, and the budget falls to nothing; every 32nd sleep then tries a
 * short spin again.
 *
 * Pacing. A worker that takes each job as soon as it is pushed makes the submitting loop pay for
 * it: the loop's next push then writes a queue node that the worker just read, its count of the
 * submission and its read of ctl miss after the worker's transitions, and the outcomes go back
 * one or two per message. So a busy worker whose last batch of short jobs held more than one job
 * (they arrive faster than it looks) but did not fill up (it keeps pace with them) looks again no
 * sooner than PACE_NS after its previous look, spinning on nothing shared meanwhile (first moving
 * off the submitter's CPU, as a spinner does): the jobs gather into batches of a few dozen, and
 * the loop's submissions stay on lines it owns. A batch of one (a lone round trip) or a full batch
 * (a backlog) is followed by a look at once; a busy worker still looks again within PACE_NS, which
 * is what the rule "B > 0: a busy worker pops again within microseconds" needs.
 *
 * Where workers run. A thread inherits its creator's affinity mask, and the workers of a group's
 * shared executor are started by the group's loop threads, each pinned to one CPU: so a worker gets
 * the process's mask instead (its main thread's, process_cpus()), not its creator's. Inherited, it
 * would share one loop's CPU for good and every round trip would pay a sleep and a wake-up (an
 * order of magnitude slower: bench/RESULTS.md, executor_bench). The kernel still tends to wake a
 * thread on its waker's CPU: once a worker that slept between the jobs of a loop woke on that
 * loop's CPU, its later wake-ups nearly always put it there again even with the other CPU idle
 * (measured: the same section), and spinning there it takes the CPU from the very thread that
 * submits the next job, which cannot move away when it is a pinned loop. So a worker that is about
 * to spin or pace (see "Pacing") on the CPU that its last job was submitted from (sched_getcpu() at
 * the submission, kept in the job) first moves to another CPU of the mask (leave_cpu): a narrowed
 * mask migrates it at once, and the full mask is restored right after. This is rare
 * (bench/RESULTS.md, executor_bench).
 *
 * Closing. The closed bit is set with a seq_cst RMW, followed by a read of submitted, as a
 * worker's transition; a submission checks the bit before its push and again after its count. One
 * that finds it set only afterwards raced with a shutdown: if workers are still alive they will
 * drain its job (they only exit on an empty queue, checked under ex->mu); if none is, it takes the
 * queue back itself and fails with LC_ECLOSED.
 *
 * Cancellation. lc_work_cancel() sets the job's cancel flag: a worker that has not started the job
 * skips it (the work never runs) and sends it back like any other, with LC_ECANCELLED.
 *
 * A job refers to no executor: once its outcome is posted, nothing keeps or needs the executor.
 * The executor lives as long as its handle (the user's or the owning loop's) or a worker. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "executor/pool.h"

#include "threadsafe/mpsc.h"

/* Jobs whose running average is below this are "short": submissions do not wake workers while a
 * busy one will be back soon, and workers take them in batches. Waking a sleeping thread costs
 * tens of microseconds on virtual machines; 20 us keeps the wait behind a batch in that range. */
#define SHORT_NS 20000u
/* What waking a sleeping worker costs before it runs, roughly, on virtual machines. */
#define WAKE_COST_NS 50000.0
/* The running average starts high ("jobs block"), so that the first jobs of a new executor fan
 * out at once; a few dozen short jobs bring it down (weight 1/8 per batch). */
#define AVG_INITIAL_NS 1000000u
/* The most short jobs one worker takes at once. */
#define BATCH_MAX 32
/* The sentinel's timeout: how long a job may wait behind busy workers that are all stuck in long
 * jobs. It starts at SENTINEL_MIN_NS and doubles, up to SENTINEL_MAX_NS, each time the sentinel
 * wakes to an empty queue, so that a long job alone costs at most ~125 wake-ups a second; it goes
 * back to the minimum when the sentinel finds jobs. */
#define SENTINEL_MIN_NS 1000000L
#define SENTINEL_MAX_NS 8000000L
/* The adaptive spin's smallest budget, and how often (in sleeps) a worker tries it again once the
 * budget fell to zero. */
#define SPIN_MIN_NS 2000u
#define SPIN_PROBE_SLEEPS 32u
/* Pacing (see the top): a busy worker whose last batch of short jobs held more than one job but
 * did not fill up looks at the queue again no sooner than this after its previous look: at the
 * pace a loop submits at (bench/RESULTS.md, executor_bench) that gathers a few dozen jobs, about
 * BATCH_MAX. */
#define PACE_NS 3000.0
/* The most distinct loops whose outcomes one batch sends as chains; more go one by one. */
#define CHAINS_MAX 8

static __thread lc_executor_t *tls_worker_ex; /* the executor this worker thread belongs to */

static lc_work_t *req_of(job_t *j) { return lc_container_of((void *)j, lc_work_t, _priv); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t ctl_add(lc_executor_t *ex, uint64_t delta)
{
    /* seq_cst: a transition, the worker's write in the Dekker pair at the top; it pairs with the
     * seq_cst load of ctl in lc__executor_submit() (pool.h). */
    return atomic_fetch_add_explicit(&ex->ctl, delta, memory_order_seq_cst) + delta;
}

/* The worker's read in the Dekker pair, after a transition and before it looks at the queue:
 * returns how many pushed jobs are not taken yet, as far as this thread can tell (>= 1: some
 * job's push happens-before what follows). seq_cst: pairs with the seq_cst RMW in
 * lc__executor_submit(). Under mu (taken is exact there). */
static int64_t look_after_transition(lc_executor_t *ex)
{
    uint64_t sub = atomic_load_explicit(&ex->submitted, memory_order_seq_cst);
    return (int64_t)(sub - atomic_load_explicit(&ex->taken, memory_order_relaxed));
}

static void ex_ref(lc_executor_t *ex)
{
    /* relaxed: a new reference is made from one the caller holds; nothing to publish. */
    atomic_fetch_add_explicit(&ex->refs, 1, memory_order_relaxed);
}

void lc__executor_unref(lc_executor_t *ex)
{
    /* acq_rel: the release half orders this holder's uses of ex before the free; the acquire
     * half, in the holder that drops the last reference, pairs with the others' release halves,
     * so every use happens-before the free below. */
    if (atomic_fetch_sub_explicit(&ex->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_cond_destroy(&ex->idle_cv);
    pthread_cond_destroy(&ex->sentinel_cv);
    pthread_cond_destroy(&ex->work_cv);
    pthread_mutex_destroy(&ex->mu);
    free(ex);
}

/* Hands a job's outcome to its owner: after(req, status), on the thread at hand. */
static void job_finish(job_t *j, int status) { j->after(req_of(j), status); }

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

static job_t *job_of_node(lc_mpsc_node_t *n) { return lc_container_of(n, job_t, qnode); }

/* Pops up to max jobs (under mu) into a chain linked by ->chain; returns their number. */
static size_t pop_jobs(lc_executor_t *ex, size_t max, job_t **out, lc_mpsc_status_t *st)
{
    lc_mpsc_node_t *first, *last;
    size_t n = lc_mpsc_pop_batch(&ex->inq, &first, &last, max, st);
    job_t *head = NULL, **tail = &head;
    for (lc_mpsc_node_t *m = first; m != NULL;) {
        lc_mpsc_node_t *next = lc_mpsc_batch_next(m);
        job_t *j = job_of_node(m);
        j->chain = NULL;
        *tail = j;
        tail = &j->chain;
        m = next;
    }
    if (n > 0) {
        /* relaxed: see the fields. */
        atomic_fetch_add_explicit(&ex->taken, n, memory_order_relaxed);
        if (ex->max_queued != 0)
            atomic_fetch_sub_explicit(&ex->bounded, (int64_t)n, memory_order_relaxed);
    }
    *out = head;
    return n;
}

/* Pops every queued job (under mu). BUSY means a submission between its two steps: wait for it. */
static job_t *pop_all(lc_executor_t *ex, size_t *count)
{
    job_t *head = NULL, **tail = &head;
    size_t total = 0;
    for (unsigned spins = 0;; spins++) {
        job_t *part;
        lc_mpsc_status_t st;
        size_t n = pop_jobs(ex, SIZE_MAX, &part, &st);
        total += n;
        *tail = part;
        while (*tail != NULL)
            tail = &(*tail)->chain;
        if (st == LC_MPSC_EMPTY)
            break;
        if (st == LC_MPSC_BUSY) {
            if (spins < 64)
                lc_mpsc_cpu_relax();
            else
                sched_yield(); /* the submitter was preempted */
        }
    }
    if (count != NULL)
        *count = total;
    return head;
}

/* ---- Outcomes on the loop -------------------------------------------------------------------- */

/* A chain of outcomes for one loop: on its thread (status 0), or handed back by its close
 * (LC_ECLOSED, on the closing thread). */
static void chain_delivered(lc_call_t *call, int status)
{
    job_t *j = lc_container_of((void *)call, job_t, call);
    while (j != NULL) {
        job_t *next = j->chain; /* after() may free j */
        job_finish(j, status == 0 ? j->status : LC_ECLOSED);
        j = next;
    }
}

/* ---- Workers --------------------------------------------------------------------------------- */

static void *worker_main(void *arg);
static void fail_all_queued(lc_executor_t *ex, int err);

/* Starts a worker that lc__executor_wake_workers() counted (nthreads, and I in ctl). Without mu. On
 * failure takes the counts back; with no worker left, the queued jobs fail with the error. */
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
    bool pinned =
        ex->has_cpus && pthread_attr_setaffinity_np(&attr, sizeof(ex->cpus), &ex->cpus) == 0;
    pthread_t t;
    int r = pthread_create(&t, &attr, worker_main, ex);
    pthread_attr_destroy(&attr);
    if (r == EINVAL && pinned) {
        /* The mask no longer fits the process (its cpuset changed): inherit the creator's. */
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&t, &attr, worker_main, ex);
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r == 0)
        return 0;
    pthread_mutex_lock(&ex->mu);
    ex->nthreads--;
    ctl_add(ex, -CTL_I1);
    bool none = ex->nthreads == 0;
    if (none)
        pthread_cond_broadcast(&ex->idle_cv);
    pthread_mutex_unlock(&ex->mu);
    if (none)
        fail_all_queued(ex, -r);
    lc__executor_unref(ex);
    return -r;
}

/* Declared in pool.h. */
void lc__executor_wake_workers(lc_executor_t *ex, unsigned target)
{
    unsigned spawn = 0;
    pthread_mutex_lock(&ex->mu);
    for (;;) {
        /* acquire: pairs with the transitions' releases; S and T only change under mu. */
        uint64_t c = atomic_load_explicit(&ex->ctl, memory_order_acquire);
        if (CTL_I(c) >= target)
            break;
        if (CTL_S(c) > 0) {
            ctl_add(ex, CTL_I1 - CTL_S1);
            ex->pend_work++;
            pthread_cond_signal(&ex->work_cv);
        } else if (CTL_T(c) > 0) {
            ctl_add(ex, CTL_I1 - CTL_T1);
            ex->pend_sentinel++;
            pthread_cond_signal(&ex->sentinel_cv);
        } else if (ex->nthreads < ex->max_workers && !ex->shutdown) {
            ex->nthreads++;
            ctl_add(ex, CTL_I1);
            spawn++;
        } else {
            break;
        }
    }
    pthread_mutex_unlock(&ex->mu);
    while (spawn-- > 0)
        spawn_worker(ex);
}

/* Takes a batch. An idle worker becomes busy first (I -> B, then its look: see the top); a busy
 * one just pops again. Returns the number of jobs (the worker is then busy) or 0 (it is then
 * idle). */
static size_t take_batch(lc_executor_t *ex, bool *busy, job_t **batch, lc_mpsc_status_t *st)
{
    if (!*busy) {
        ctl_add(ex, CTL_B1 - CTL_I1);
        /* The read of the Dekker pair (see look_after_transition); the pop below follows it. */
        (void)atomic_load_explicit(&ex->submitted, memory_order_seq_cst);
        *busy = true;
    }
    pthread_mutex_lock(&ex->mu);
    size_t n = pop_jobs(ex, lc__jobs_short(ex) ? BATCH_MAX : 1, batch, st);
    for (job_t *j = *batch; j != NULL; j = j->chain)
        list_push(&ex->running, j);
    pthread_mutex_unlock(&ex->mu);
    if (n == 0) {
        ctl_add(ex, CTL_I1 - CTL_B1);
        *busy = false;
    }
    return n;
}

typedef struct {
    lc_loop_t *loop;
    job_t *head, *tail;
} chain_t;

/* Sends a chain of outcomes to its loop; on refusal (the loop closed first) hands them over here
 * with LC_ECLOSED (see the lifetime rules in the header). Without mu. */
static void post_chain_unowned(job_t *head)
{
    if (lc_loop_post_threadsafe(head->loop, &head->call, chain_delivered) != 0)
        chain_delivered(&head->call, LC_ECLOSED);
}

/* Runs a batch and sends its outcomes; the worker stays busy (it pops again next). Returns the
 * CPU that the batch's last job was submitted from (-1: unknown). */
static int run_batch(lc_executor_t *ex, job_t *batch)
{
    double t0 = now_s();
    unsigned long long ran = 0, skipped = 0;
    int cpu = -1;
    for (job_t *j = batch; j != NULL; j = j->chain) {
        cpu = j->cpu;
        /* relaxed: see the fields. */
        if (atomic_load_explicit(&j->cancel, memory_order_relaxed) ||
            atomic_load_explicit(&ex->orphaned_hint, memory_order_relaxed)) {
            j->status = LC_ECANCELLED;
            skipped++;
            continue;
        }
        j->status = j->work(req_of(j));
        ran++;
    }
    if (ran > 0) {
        double per_job = (now_s() - t0) * 1e9 / (double)ran;
        if (per_job > 4e9)
            per_job = 4e9;
        /* relaxed: a heuristic; a lost update between two workers does not matter. */
        uint32_t avg = atomic_load_explicit(&ex->avg_ns, memory_order_relaxed);
        avg = (uint32_t)((double)avg + (per_job - (double)avg) / 8);
        atomic_store_explicit(&ex->avg_ns, avg, memory_order_relaxed);
        /* relaxed: see the field; the load keeps the read-mostly line clean while it holds. */
        if (atomic_load_explicit(&ex->short_jobs, memory_order_relaxed) != (avg < SHORT_NS))
            atomic_store_explicit(&ex->short_jobs, avg < SHORT_NS, memory_order_relaxed);
        atomic_fetch_add_explicit(&ex->completed, ran, memory_order_relaxed);
    }
    if (skipped > 0) /* relaxed: statistics */
        atomic_fetch_add_explicit(&ex->cancelled, skipped, memory_order_relaxed);

    pthread_mutex_lock(&ex->mu);
    for (job_t *j = batch; j != NULL; j = j->chain)
        list_unlink(&ex->running, j);
    if (ex->orphaned) {
        /* The owner loop closed while we held the batch (its release called the orphan hooks):
         * the outcomes are handed over here, on this thread. */
        pthread_mutex_unlock(&ex->mu);
        for (job_t *j = batch; j != NULL;) {
            job_t *next = j->chain;
            job_finish(j, LC_ECLOSED);
            j = next;
        }
        return cpu;
    }
    bool owned = ex->owned;
    if (!owned)
        pthread_mutex_unlock(&ex->mu);

    /* One chain per loop, in submission order; beyond CHAINS_MAX loops, one by one (linked
     * through next, free now that the jobs left the running list). */
    chain_t chains[CHAINS_MAX];
    unsigned nchains = 0;
    job_t *singles = NULL, **singles_tail = &singles;
    for (job_t *j = batch; j != NULL;) {
        job_t *next = j->chain;
        j->chain = NULL;
        unsigned k = 0;
        while (k < nchains && chains[k].loop != j->loop)
            k++;
        if (k < nchains) {
            chains[k].tail->chain = j;
            chains[k].tail = j;
        } else if (nchains < CHAINS_MAX) {
            chains[nchains++] = (chain_t){j->loop, j, j};
        } else {
            *singles_tail = j;
            singles_tail = &j->next;
        }
        j = next;
    }

    if (owned) {
        /* Posted under mu, so that the owner's close (owned_release, which takes mu) finds each
         * job either in the running list, or in the bounced list, or already handed back. An
         * owned executor serves one loop: one chain. */
        for (unsigned k = 0; k < nchains; k++) {
            job_t *h = chains[k].head;
            if (lc_loop_post_threadsafe(h->loop, &h->call, chain_delivered) != 0) {
                for (job_t *j = h; j != NULL;) {
                    job_t *next = j->chain;
                    list_push(&ex->bounced, j);
                    j = next;
                }
            }
        }
        pthread_mutex_unlock(&ex->mu);
    } else {
        /* After a successful post the jobs are the loop's: not touched again here. */
        for (unsigned k = 0; k < nchains; k++)
            post_chain_unowned(chains[k].head);
        for (job_t *j = singles; j != NULL;) {
            job_t *next = j->next;
            j->next = NULL;
            post_chain_unowned(j);
            j = next;
        }
    }
    return cpu;
}

/* A busy worker's pause before its next look (see the top): a pure spin until deadline (seconds,
 * now_s()'s clock), which touches no shared line. Bounded by PACE_NS. */
static void pace(double deadline)
{
    for (unsigned i = 1;; i++) {
        lc_mpsc_cpu_relax();
        if ((i & 7) == 0 && now_s() >= deadline)
            return;
    }
}

/* The spinning worker's poll, for budget_ns. Returns how long it waited (ns) when the hint said
 * that jobs arrived, or -1 when the budget ran out (or on shutdown). */
static double spin_wait(lc_executor_t *ex, uint32_t budget_ns)
{
    double start = now_s();
    double deadline = start + (double)budget_ns * 1e-9;
    for (unsigned i = 1;; i++) {
        /* relaxed load first (cheap while nothing comes); acquire exchange: see the field. */
        if (atomic_load_explicit(&ex->hint, memory_order_relaxed) &&
            atomic_exchange_explicit(&ex->hint, false, memory_order_acquire))
            return (now_s() - start) * 1e9;
        if (atomic_load_explicit(&ex->stop_spin, memory_order_relaxed)) /* a hint */
            return -1;
        /* A short pure spin, then yield between looks: if the thread we wait for shares our CPU
         * (the kernel tends to wake a worker on its waker's CPU), it runs at once instead of
         * after our budget; on a CPU of our own the yield returns at once. */
        if (i < 128)
            lc_mpsc_cpu_relax();
        else
            sched_yield();
        if ((i & 15) == 0 && now_s() >= deadline)
            return -1;
    }
}

/* A worker about to spin on the CPU that its last job was submitted from moves to another CPU of
 * the process (see the top): it would spin against the very thread that submits the next job. */
static void leave_cpu(lc_executor_t *ex, int cpu)
{
    if (cpu < 0 || !ex->has_cpus || sched_getcpu() != cpu || !CPU_ISSET(cpu, &ex->cpus) ||
        CPU_COUNT(&ex->cpus) < 2)
        return;
    cpu_set_t others = ex->cpus;
    CPU_CLR(cpu, &others);
    /* Narrowing the mask migrates the thread at once; widening it again leaves it where it is
     * now, free to run anywhere later (blocking jobs need every CPU). */
    if (sched_setaffinity(0, sizeof(others), &others) == 0)
        sched_setaffinity(0, sizeof(ex->cpus), &ex->cpus);
}

/* The next spin budget (see the top): after a hit, at least a few times the wait it took (jobs
 * come at that pace), and no less than before (a stream's short gaps within a burst must not make
 * the spinner forget the longer ones between bursts); after a miss, half. */
static uint32_t next_spin_budget(lc_executor_t *ex, uint32_t budget, double waited_ns)
{
    double max = ex->spin * 1e9;
    if (waited_ns < 0)
        return budget / 2 >= SPIN_MIN_NS ? budget / 2 : 0;
    double next = 4 * waited_ns + SPIN_MIN_NS;
    if (next < budget)
        next = budget;
    return (uint32_t)(next < max ? next : max);
}

/* An idle worker with nothing queued sleeps (see the top). Returns true if the worker must exit
 * (shut down and nothing queued; it is then uncounted). */
static bool idle_sleep(lc_executor_t *ex)
{
    pthread_mutex_lock(&ex->mu);
    if (ex->shutdown && lc_mpsc_empty(&ex->inq)) {
        ex->nthreads--;
        ctl_add(ex, -CTL_I1);
        if (ex->nthreads == 0)
            pthread_cond_broadcast(&ex->idle_cv);
        pthread_mutex_unlock(&ex->mu);
        return true;
    }
    /* I -> S, or I -> T if busy workers exist and no sentinel sleeps yet. seq_cst: as ctl_add. */
    uint64_t c = atomic_load_explicit(&ex->ctl, memory_order_relaxed);
    uint64_t to;
    do
        to = CTL_B(c) > 0 && CTL_T(c) == 0 ? CTL_T1 : CTL_S1;
    while (!atomic_compare_exchange_weak_explicit(&ex->ctl, &c, c - CTL_I1 + to,
                                                  memory_order_seq_cst, memory_order_relaxed));
    /* The last look, after the transition. */
    if (look_after_transition(ex) > 0 || !lc_mpsc_empty(&ex->inq)) {
        ctl_add(ex, CTL_I1 - to); /* nobody claimed us: claims need mu */
        pthread_mutex_unlock(&ex->mu);
        return false;
    }
    /* Spinning stopped paying (see the top): try a short spin again now and then. relaxed: the
     * budget is a heuristic. */
    if (++ex->sleeps % SPIN_PROBE_SLEEPS == 0 && ex->spin > 0 &&
        atomic_load_explicit(&ex->spin_ns, memory_order_relaxed) == 0)
        atomic_store_explicit(&ex->spin_ns, SPIN_MIN_NS, memory_order_relaxed);
    unsigned *pend;
    if (to == CTL_T1) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += ex->sentinel_ns;
        while (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ex->sentinel_cv, &ex->mu, &ts);
        pend = &ex->pend_sentinel;
        if (look_after_transition(ex) > 0 || !lc_mpsc_empty(&ex->inq))
            ex->sentinel_ns = SENTINEL_MIN_NS;
        else if (ex->sentinel_ns < SENTINEL_MAX_NS)
            ex->sentinel_ns *= 2;
    } else {
        pthread_cond_wait(&ex->work_cv, &ex->mu);
        pend = &ex->pend_work;
    }
    if (*pend > 0)
        (*pend)--; /* a waker moved one of us to I already */
    else
        ctl_add(ex, CTL_I1 - to); /* timed out or woke spuriously: move ourselves */
    pthread_mutex_unlock(&ex->mu);
    return false;
}

static void *worker_main(void *arg)
{
    lc_executor_t *ex = arg;
    tls_worker_ex = ex;
    char name[32];
    /* relaxed: only the numbers' uniqueness matters. */
    unsigned index = atomic_fetch_add_explicit(&ex->next_index, 1, memory_order_relaxed);
    snprintf(name, sizeof(name), "%s_%u", ex->prefix, index);
    name[15] = '\0'; /* Linux's limit */
    pthread_setname_np(pthread_self(), name);

    bool may_spin = true, busy = false;
    int last_cpu = -1;    /* the CPU the last job was submitted from */
    size_t last_n = 0;    /* the size of the last batch */
    double last_look = 0; /* when this worker last popped */
    for (;;) {
        job_t *batch;
        lc_mpsc_status_t st;
        if (busy && last_n > 1 && last_n < BATCH_MAX && lc__jobs_short(ex)) {
            leave_cpu(ex, last_cpu); /* as a spinner does: not against the submitter */
            pace(last_look + PACE_NS * 1e-9);
        }
        last_look = now_s();
        size_t n = take_batch(ex, &busy, &batch, &st);
        if (n > 0)
            last_n = n;
        if (n > 0) {
            /* relaxed: heuristics, see the fields. */
            uint32_t avg = atomic_load_explicit(&ex->avg_ns, memory_order_relaxed);
            if (st == LC_MPSC_OK || (st == LC_MPSC_BUSY && avg >= SHORT_NS)) {
                /* Jobs are left behind: helpers. Blocking jobs fan out, two per worker that takes
                 * one (a tree of wake-ups); short ones get a helper only when the backlog takes
                 * this worker longer to drain than a wake-up costs. A batch of short jobs that
                 * stopped short of BATCH_MAX on a push in progress (BUSY) left about one job
                 * behind: no helper, and no read of the submitters' line (the loop's next
                 * submission would pay for it). relaxed: heuristics, see the fields. */
                int64_t left =
                    (int64_t)(atomic_load_explicit(&ex->submitted, memory_order_relaxed) -
                              atomic_load_explicit(&ex->taken, memory_order_relaxed));
                if (avg >= SHORT_NS)
                    lc__executor_wake_workers(ex, left >= 2 ? 2 : 1);
                else if ((double)left * avg > WAKE_COST_NS)
                    lc__executor_wake_workers(ex, 1);
            }
            last_cpu = run_batch(ex, batch);
            may_spin = true;
            continue;
        }
        if (st == LC_MPSC_BUSY) {
            sched_yield(); /* a submission is between its two steps */
            continue;
        }
        bool expected = false;
        /* relaxed: the budget is a heuristic; the flag only limits spinners to one; ctl is only
         * read for a heuristic here (a busy worker with short jobs is back at the queue within
         * microseconds and spins then itself: a second awake worker would only compete with it
         * for the CPU). */
        uint32_t budget = atomic_load_explicit(&ex->spin_ns, memory_order_relaxed);
        if (may_spin && budget > 0 &&
            (CTL_B(atomic_load_explicit(&ex->ctl, memory_order_relaxed)) == 0 ||
             !lc__jobs_short(ex)) &&
            atomic_compare_exchange_strong_explicit(&ex->spinning, &expected, true,
                                                    memory_order_relaxed, memory_order_relaxed)) {
            leave_cpu(ex, last_cpu);
            double waited = spin_wait(ex, budget);
            atomic_store_explicit(&ex->spin_ns, next_spin_budget(ex, budget, waited),
                                  memory_order_relaxed);
            atomic_store_explicit(&ex->spinning, false, memory_order_relaxed);
            may_spin = waited >= 0;
            continue;
        }
        if (idle_sleep(ex))
            break;
        may_spin = true;
    }
    tls_worker_ex = NULL;
    lc__executor_unref(ex); /* the worker's; nothing of ex is touched after it */
    return NULL;
}

/* With no worker able to start, fails every queued job with err (their loops get them back). */
/* Sends each job of a chain (taken off the queue, never run) back to its loop with status, one
 * by one; skip, if it is in the chain, is unlinked but not sent. Returns whether skip was there. */
static bool send_back(job_t *jobs, int status, const job_t *skip)
{
    bool found = false;
    for (job_t *j = jobs; j != NULL;) {
        job_t *next = j->chain;
        j->chain = NULL;
        if (j == skip) {
            found = true;
        } else {
            j->status = status;
            post_chain_unowned(j);
        }
        j = next;
    }
    return found;
}

static void fail_all_queued(lc_executor_t *ex, int err)
{
    pthread_mutex_lock(&ex->mu);
    job_t *jobs = ex->nthreads == 0 ? pop_all(ex, NULL) : NULL;
    pthread_mutex_unlock(&ex->mu);
    send_back(jobs, err, NULL);
}

/* ---- Creating and shutting down -------------------------------------------------------------- */

/* The CPUs the process may run on, as its main thread's affinity mask says (what taskset or the
 * launcher gave the process). Not the calling thread's: a thread inherits its creator's mask, and
 * the workers of a group's executor are created by its loops' threads, each pinned to one CPU
 * (group.h); inheriting that would put every worker on the CPU of the loop that happened to start
 * it, where it competes with that loop for every job. Returns true if *set was filled. */
static bool process_cpus(cpu_set_t *set)
{
    CPU_ZERO(set);
    return sched_getaffinity(getpid(), sizeof(*set), set) == 0 && CPU_COUNT(set) > 0;
}

static unsigned default_max_workers(const lc_executor_t *ex)
{
    long n = ex->has_cpus ? CPU_COUNT(&ex->cpus) : 0;
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    return n + 4 < 32 ? (unsigned)n + 4 : 32;
}

static _Atomic unsigned executor_counter; /* names "lc-exec-<n>" */

int lc_executor_create(lc_executor_t **out, const lc_executor_opts_t *opts)
{
    static const lc_executor_opts_t defaults = {0};
    if (out == NULL)
        return LC_EINVAL;
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if (opts->spin_budget != opts->spin_budget || opts->max_workers > MAX_WORKERS) /* NaN */
        return LC_EINVAL;
    lc_executor_t *ex = calloc(1, sizeof(*ex));
    if (ex == NULL)
        return LC_ENOMEM;
    pthread_mutex_init(&ex->mu, NULL);
    pthread_cond_init(&ex->work_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ex->sentinel_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&ex->idle_cv, NULL);
    lc_mpsc_init(&ex->inq);
    atomic_init(&ex->ctl, 0);
    atomic_init(&ex->submitted, 0);
    atomic_init(&ex->taken, 0);
    atomic_init(&ex->bounded, 0);
    atomic_init(&ex->hint, false);
    atomic_init(&ex->refs, 1);
    atomic_init(&ex->avg_ns, AVG_INITIAL_NS);
    atomic_init(&ex->short_jobs, AVG_INITIAL_NS < SHORT_NS);
    atomic_init(&ex->spinning, false);
    atomic_init(&ex->stop_spin, false);
    atomic_init(&ex->orphaned_hint, false);
    atomic_init(&ex->completed, 0);
    atomic_init(&ex->cancelled, 0);
    atomic_init(&ex->next_index, 0);
    ex->sentinel_ns = SENTINEL_MIN_NS;
    ex->has_cpus = process_cpus(&ex->cpus);
    ex->max_workers = opts->max_workers != 0 ? opts->max_workers : default_max_workers(ex);
    ex->max_queued = opts->max_queued;
    ex->spin = opts->spin_budget == 0  ? LC_EXECUTOR_DEFAULT_SPIN
               : opts->spin_budget < 0 ? 0.0
               : opts->spin_budget > 1 ? 1.0
                                       : opts->spin_budget;
    atomic_init(&ex->spin_ns, (uint32_t)(ex->spin * 1e9));
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

/* Closes ex to submissions (see "Closing" at the top). */
static void close_submissions(lc_executor_t *ex)
{
    /* seq_cst RMW, then seq_cst read of submitted (Dekker, as at the top): a submission that
     * checks the bit after its count either sees it, or its push happens-before the pops that
     * follow here. */
    atomic_fetch_or_explicit(&ex->ctl, CTL_CLOSED, memory_order_seq_cst);
    (void)atomic_load_explicit(&ex->submitted, memory_order_seq_cst);
}

int lc_executor_shutdown(lc_executor_t *ex, bool wait, bool cancel_pending)
{
    if (ex == NULL)
        return LC_EINVAL;
    if (wait && tls_worker_ex == ex)
        return LC_EBUSY;
    close_submissions(ex);
    pthread_mutex_lock(&ex->mu);
    ex->shutdown = true;
    atomic_store_explicit(&ex->stop_spin, true, memory_order_relaxed); /* a hint */
    size_t n = 0;
    job_t *unrun = cancel_pending ? pop_all(ex, &n) : NULL;
    pthread_cond_broadcast(&ex->work_cv);
    pthread_cond_broadcast(&ex->sentinel_cv);
    pthread_mutex_unlock(&ex->mu);
    if (n > 0) /* relaxed: statistics */
        atomic_fetch_add_explicit(&ex->cancelled, n, memory_order_relaxed);
    send_back(unrun, LC_ECANCELLED, NULL);
    if (wait) {
        pthread_mutex_lock(&ex->mu);
        while (ex->nthreads > 0)
            pthread_cond_wait(&ex->idle_cv, &ex->mu);
        pthread_mutex_unlock(&ex->mu);
    }
    return 0;
}

int lc_executor_free(lc_executor_t *ex)
{
    int r = lc_executor_shutdown(ex, true, false);
    if (r != 0)
        return r;
    lc__executor_unref(ex);
    return 0;
}

int lc_executor_get_stats(lc_executor_t *ex, lc_executor_stats_t *stats)
{
    if (ex == NULL || stats == NULL)
        return LC_EINVAL;
    pthread_mutex_lock(&ex->mu);
    /* relaxed: a snapshot. */
    uint64_t c = atomic_load_explicit(&ex->ctl, memory_order_relaxed);
    uint64_t q = atomic_load_explicit(&ex->submitted, memory_order_relaxed) -
                 atomic_load_explicit(&ex->taken, memory_order_relaxed);
    stats->max_workers = ex->max_workers;
    stats->workers = ex->nthreads;
    stats->idle = CTL_I(c) + CTL_S(c) + CTL_T(c);
    stats->running = CTL_B(c);
    stats->queued = q < (1ull << 63) ? (size_t)q : 0; /* the two reads may cross */
    stats->completed = atomic_load_explicit(&ex->completed, memory_order_relaxed);
    stats->cancelled = atomic_load_explicit(&ex->cancelled, memory_order_relaxed);
    pthread_mutex_unlock(&ex->mu);
    return 0;
}

lc_executor_t *lc_executor_current(void) { return tls_worker_ex; }

/* ---- Owned executors ------------------------------------------------------------------------- */

int lc__executor_create_owned(lc_loop_t *loop, lc_executor_t **out)
{
    lc_executor_t *ex;
    int r = lc_executor_create(&ex, &(lc_executor_opts_t){.thread_name_prefix = "lc-default"});
    if (r != 0)
        return r;
    ex->owner = loop; /* nobody else can see ex yet */
    ex->owned = true;
    *out = ex;
    return 0;
}

/* The owned executor's release: lc_loop_close() calls it on the closing thread, after it handed
 * back every queued outcome. Shuts the executor down without waiting: queued jobs never run
 * (after(req, LC_ECLOSED) here); jobs held by workers are orphaned (their orphan hooks run here,
 * under mu; their workers hand the outcomes over when the work returns); outcomes the closed loop
 * refused are handed over here. */
void lc__executor_release_owned(lc_executor_t *ex)
{
    close_submissions(ex);
    pthread_mutex_lock(&ex->mu);
    ex->shutdown = true;
    ex->owned = false;
    ex->orphaned = true;
    /* relaxed: hints, see the fields (the decisions are made under mu). */
    atomic_store_explicit(&ex->stop_spin, true, memory_order_relaxed);
    atomic_store_explicit(&ex->orphaned_hint, true, memory_order_relaxed);
    size_t n = 0;
    job_t *unrun = pop_all(ex, &n);
    job_t *bounced = ex->bounced;
    ex->bounced = NULL;
    for (job_t *j = ex->running; j != NULL; j = j->next) {
        if (j->orphan != NULL)
            j->orphan(req_of(j));
    }
    pthread_cond_broadcast(&ex->work_cv);
    pthread_cond_broadcast(&ex->sentinel_cv);
    pthread_mutex_unlock(&ex->mu);
    if (n > 0) /* relaxed: statistics */
        atomic_fetch_add_explicit(&ex->cancelled, n, memory_order_relaxed);
    for (job_t *j = unrun; j != NULL;) {
        job_t *next = j->chain;
        j->status = LC_ECANCELLED;
        job_finish(j, LC_ECLOSED);
        j = next;
    }
    for (job_t *j = bounced; j != NULL;) {
        job_t *next = j->next;
        job_finish(j, LC_ECLOSED);
        j = next;
    }
    lc__executor_unref(ex); /* the loop's; the workers still alive keep ex */
}

void lc__executor_let_go(lc_executor_t *ex)
{
    pthread_mutex_lock(&ex->mu);
    ex->owned = false;
    pthread_mutex_unlock(&ex->mu);
    lc_executor_shutdown(ex, false, false);
    lc__executor_unref(ex);
}

bool lc__executor_idle(lc_executor_t *ex)
{
    pthread_mutex_lock(&ex->mu);
    /* Idle: nothing queued, no worker holds a job. relaxed: a snapshot. */
    uint64_t c = atomic_load_explicit(&ex->ctl, memory_order_relaxed);
    bool idle = CTL_B(c) == 0 && atomic_load_explicit(&ex->submitted, memory_order_relaxed) ==
                                     atomic_load_explicit(&ex->taken, memory_order_relaxed);
    pthread_mutex_unlock(&ex->mu);
    return idle;
}

/* ---- Submissions and outcomes ---------------------------------------------------------------- */

/* Declared in pool.h (see "Closing" at the top). */
int lc__executor_submit_late(lc_executor_t *ex, job_t *j)
{
    pthread_mutex_lock(&ex->mu);
    job_t *back = ex->nthreads == 0 ? pop_all(ex, NULL) : NULL;
    pthread_mutex_unlock(&ex->mu);
    /* Ours (j) is not sent: the caller takes it back. */
    return send_back(back, LC_ECANCELLED, j) ? LC_ECLOSED : 0;
}

int lc__work_redeliver(lc_work_t *req)
{
    job_t *j = lc__job_of(req);
    j->chain = NULL; /* a chain of one (chain_delivered read the old link already) */
    return lc_loop_post_threadsafe(j->loop, &j->call, chain_delivered);
}
