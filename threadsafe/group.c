/* Loop groups (one loop per thread, one thread per CPU) and cross-loop calls with results.
 *
 * Everything that crosses threads here goes through lc_loop_post_threadsafe(): the stop of each
 * loop (an lc_call_t embedded in the group's per-loop struct), submitted calls (one heap message
 * that goes to the target and comes back), and the blocking forms (a message on the caller's
 * stack or heap, plus a mutex and condition variable). The group's own shared state (the start
 * count, the stop and join flags) is guarded by one mutex; it is touched a handful of times in a
 * group's life, never on a hot path. The only lock-free traffic is the loops' inbound queues,
 * whose push/pop pair gives every message's payload its happens-before edge (threadsafe.h). */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/group_hooks.h"
#include "loopcore/errno.h"
#include "threadsafe/group_parts.h"
#include "threadsafe/group_signals.h"
#include "loopcore/group.h"
#include "loopcore/threadsafe.h"

/* ---- The group ------------------------------------------------------------------------------- */

typedef struct member_s {
    lc_group_t *group;
    lc_loop_t *loop;
    unsigned index;
    int cpu;             /* -1: not pinned */
    pthread_t thread;    /* valid when has_thread */
    bool has_thread;     /* written under group->mu by lc_group_start */
    bool ready;          /* guarded by group->mu: the hook ran, or the loop failed to run */
    bool left;           /* guarded by group->mu: the thread has left its loop for good */
    lc_call_t stop_call; /* posted once by lc_group_stop; handed back by close if never run */
} member_t;

typedef enum {
    G_CREATED = 0, /* no threads */
    G_STARTING,    /* lc_group_start is creating threads or waiting for the hooks */
    G_STARTED,     /* threads exist (some may have stopped already) */
} group_state;

struct lc_group_s {
    unsigned n;
    member_t *members; /* immutable after create, except the fields marked "under mu" */
    lc_group_start_fn on_start;
    void *on_start_arg;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast on every change below */
    group_state state;
    bool stop_requested;
    bool joining;
    bool joined;
    unsigned nready; /* members whose ready is set */
    int start_err;   /* first failure of a loop thread to run its loop */
    /* lc_group_stop_on_signals()' state (group_signals.c), or NULL; set and read under mu. */
    lc__group_signals_t *signals;
    /* Objects on every loop that outlive the group if their owner frees them later
     * (group_parts.h); under mu. */
    lc__group_part_t *parts;
};

/* True when the calling thread runs one of g's loops. */
static bool in_own_loop(const lc_group_t *g)
{
    lc_loop_t *running;
    return lc_get_running_loop(&running) == 0 && lc_group_index(g, running) >= 0;
}

static void mark_ready(member_t *m, int err)
{
    lc_group_t *g = m->group;
    pthread_mutex_lock(&g->mu);
    if (!m->ready) {
        m->ready = true;
        g->nready++;
        if (err != 0 && g->start_err == 0)
            g->start_err = err;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
}

/* The first callback of every loop: lc_group_create queues it before anyone else can reach the
 * loop, so it runs first in the loop's first batch, ahead of anything posted or scheduled later. */
static void start_cb(void *arg)
{
    member_t *m = arg;
    if (m->group->on_start != NULL)
        m->group->on_start(m->loop, m->index, m->group->on_start_arg);
    mark_ready(m, 0);
}

static void stop_cb(lc_call_t *call, int status)
{
    member_t *m = lc_container_of(call, member_t, stop_call);
    if (status == 0)
        lc_loop_stop(m->loop);
    /* LC_ECLOSED: the loop was closed before the stop ran (it never ran, or the group is being
     * freed); there is nothing to stop and the message lives in the group. */
}

static void *loop_thread(void *arg)
{
    member_t *m = arg;
    /* Linux limits thread names to 15 characters: "lc-loop-" leaves 7 digits. */
    char name[32];
    snprintf(name, sizeof(name), "lc-loop-%u", m->index);
    name[15] = '\0';
    pthread_setname_np(pthread_self(), name);
    lc_set_event_loop(m->loop);
    int r = lc_loop_run_forever(m->loop);
    if (r != 0)
        mark_ready(m, r); /* the hook never ran: do not leave lc_group_start waiting */
    lc_set_event_loop(NULL);
    /* Nothing runs this loop's queue any more (a group starts once): lc_group_submit_wait
     * callers stop waiting for it. */
    pthread_mutex_lock(&m->group->mu);
    m->left = true;
    pthread_cond_broadcast(&m->group->cv);
    pthread_mutex_unlock(&m->group->mu);
    return NULL;
}

/* Posts the stop of every loop. The caller set stop_requested, so this runs once per group. It
 * reads nothing of g after its last post: that post may let the last loop stop and a joiner free
 * the group (each loop leaves run_forever only after its own stop message arrived). */
static void post_stops(lc_group_t *g)
{
    unsigned n = g->n;
    member_t *ms = g->members;
    for (unsigned i = 0; i < n; i++) {
        /* LC_ECLOSED cannot happen before lc_group_free; the call is then simply not taken. */
        (void)lc_loop_post_threadsafe(ms[i].loop, &ms[i].stop_call, stop_cb);
    }
}

/* Fills cpus[] with the CPUs of the process's affinity mask, ascending; returns their count or a
 * negative code. */
static int affinity_cpus(cpu_set_t *set, int *cpus)
{
    CPU_ZERO(set);
    if (sched_getaffinity(0, sizeof(*set), set) != 0)
        return -errno;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, set))
            cpus[n++] = c;
    }
    return n;
}

static void destroy_loops(lc_group_t *g, unsigned n)
{
    /* Close all, then free all: a close may hand a message back to another member, which must
     * still be a valid (open or closed) loop. */
    for (unsigned i = 0; i < n; i++)
        lc_loop_close(g->members[i].loop);
    for (unsigned i = 0; i < n; i++)
        lc_loop_free(g->members[i].loop);
}

int lc_group_create(lc_group_t **out, const lc_group_opts_t *opts)
{
    static const lc_group_opts_t defaults = {0};
    if (out == NULL)
        return LC_EINVAL;
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if ((opts->cpus == NULL) != (opts->ncpus == 0) || isnan(opts->spin_budget))
        return LC_EINVAL;
    double spin = opts->spin_budget == 0  ? LC_GROUP_DEFAULT_SPIN
                  : opts->spin_budget < 0 ? 0.0
                                          : opts->spin_budget;

    cpu_set_t allowed;
    int *avail = malloc(CPU_SETSIZE * sizeof(*avail));
    if (avail == NULL)
        return LC_ENOMEM;
    int navail = affinity_cpus(&allowed, avail);
    if (navail <= 0) {
        free(avail);
        return navail < 0 ? navail : LC_EINVAL;
    }
    const int *list = avail;
    size_t nlist = (size_t)navail;
    if (opts->cpus != NULL) {
        for (size_t i = 0; i < opts->ncpus; i++) {
            int c = opts->cpus[i];
            if (c < 0 || c >= CPU_SETSIZE || !CPU_ISSET(c, &allowed)) {
                free(avail);
                return LC_EINVAL;
            }
        }
        list = opts->cpus;
        nlist = opts->ncpus;
    }
    size_t n = opts->nloops != 0 ? opts->nloops : nlist;
    if (n > INT_MAX) { /* lc_group_index returns an int */
        free(avail);
        return LC_EINVAL;
    }

    lc_group_t *g = calloc(1, sizeof(*g));
    member_t *ms = calloc(n, sizeof(*ms));
    if (g == NULL || ms == NULL) {
        free(g);
        free(ms);
        free(avail);
        return LC_ENOMEM;
    }
    g->n = (unsigned)n;
    g->members = ms;
    g->on_start = opts->on_start;
    g->on_start_arg = opts->on_start_arg;
    g->state = G_CREATED;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);

    int r = 0;
    unsigned made = 0;
    for (; made < g->n; made++) {
        member_t *m = &ms[made];
        m->group = g;
        m->index = made;
        m->cpu = opts->unpinned ? -1 : list[made % nlist];
        r = lc_new_event_loop(&m->loop);
        if (r != 0)
            break;
        lc__loop_set_group(m->loop, g);
        r = lc_loop_set_spin_budget(m->loop, spin);
        if (r == 0)
            r = lc_loop_call_soon(m->loop, start_cb, m, NULL);
        if (r != 0) {
            made++; /* this loop exists: destroy it with the others */
            break;
        }
    }
    free(avail);
    if (r != 0) {
        destroy_loops(g, made);
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        free(ms);
        free(g);
        return r;
    }
    *out = g;
    return 0;
}

int lc_group_start(lc_group_t *g)
{
    if (g == NULL)
        return LC_EINVAL;
    pthread_mutex_lock(&g->mu);
    if (g->state != G_CREATED || g->stop_requested) {
        pthread_mutex_unlock(&g->mu);
        return LC_EINVALIDSTATE;
    }
    g->state = G_STARTING;
    /* Threads are created under the lock: a hook that calls lc_group_stop waits here until every
     * thread exists, so the stops it posts reach loops that will run. They inherit a mask that
     * blocks the asynchronous signals: a process-wide signal goes to a thread of the
     * application's, not into a loop's system calls (loopcore/signal.h). */
    sigset_t old_mask;
    lc__block_async_signals(&old_mask);
    int err = 0;
    for (unsigned i = 0; i < g->n && err == 0; i++) {
        member_t *m = &g->members[i];
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        if (m->cpu >= 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(m->cpu, &one);
            err = -pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
        }
        if (err == 0)
            err = -pthread_create(&m->thread, &attr, loop_thread, m);
        pthread_attr_destroy(&attr);
        if (err == 0)
            m->has_thread = true;
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (err == 0) {
        while (g->nready < g->n)
            pthread_cond_wait(&g->cv, &g->mu);
        err = g->start_err;
    }
    g->state = G_STARTED;
    bool post = err != 0 && !g->stop_requested;
    if (err != 0)
        g->stop_requested = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (err != 0) {
        if (post)
            post_stops(g);
        lc_group_join(g);
    }
    return err;
}

int lc_group_stop(lc_group_t *g)
{
    if (g == NULL)
        return LC_EINVAL;
    pthread_mutex_lock(&g->mu);
    bool post = !g->stop_requested && g->state != G_CREATED;
    g->stop_requested = true;
    lc__group_signals_t *sig = g->signals;
    pthread_mutex_unlock(&g->mu);
    if (post)
        post_stops(g);
    if (sig != NULL)
        lc__group_signals_stopped(sig);
    return 0;
}

int lc_group_join(lc_group_t *g)
{
    if (g == NULL)
        return LC_EINVAL;
    if (in_own_loop(g))
        return LC_EBUSY;
    pthread_mutex_lock(&g->mu);
    while (g->state == G_STARTING || (g->joining && !g->joined))
        pthread_cond_wait(&g->cv, &g->mu);
    if (g->state == G_CREATED || g->joined) {
        int r = g->state == G_CREATED ? LC_EINVALIDSTATE : 0;
        pthread_mutex_unlock(&g->mu);
        return r;
    }
    g->joining = true;
    pthread_mutex_unlock(&g->mu);
    /* Only this thread joins (joining is set); has_thread no longer changes once G_STARTED. */
    for (unsigned i = 0; i < g->n; i++) {
        if (g->members[i].has_thread)
            pthread_join(g->members[i].thread, NULL);
    }
    /* Then the signal shutdown's thread: it was made on loop 0's thread, before that left. */
    pthread_mutex_lock(&g->mu);
    lc__group_signals_t *sig = g->signals;
    pthread_mutex_unlock(&g->mu);
    if (sig != NULL)
        lc__group_signals_join(sig);
    pthread_mutex_lock(&g->mu);
    g->joined = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

int lc_group_free(lc_group_t *g)
{
    if (g == NULL)
        return LC_EINVAL;
    if (in_own_loop(g))
        return LC_EBUSY;
    pthread_mutex_lock(&g->mu);
    bool started = g->state != G_CREATED;
    pthread_mutex_unlock(&g->mu);
    if (started) {
        lc_group_stop(g);
        lc_group_join(g);
    }
    /* Every thread is gone. The parts let go of the group first (its loops' close below ends
     * what they left open there); then this thread alone closes the loops. Messages still queued
     * are handed back here (submitted calls travel back to their origin or are released, see
     * group.h). */
    pthread_mutex_lock(&g->mu);
    lc__group_part_t *parts = g->parts;
    g->parts = NULL;
    pthread_mutex_unlock(&g->mu);
    while (parts != NULL) {
        lc__group_part_t *p = parts;
        parts = p->next;
        p->next = p->prev = NULL;
        p->group_gone(p);
    }
    destroy_loops(g, g->n);
    if (g->signals != NULL) /* the loops, closed, removed its handlers */
        lc__group_signals_free(g->signals);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g->members);
    free(g);
    return 0;
}

void lc__block_async_signals(sigset_t *old)
{
    sigset_t block;
    sigfillset(&block);
    static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < sizeof(sync_signals) / sizeof(sync_signals[0]); i++)
        sigdelset(&block, sync_signals[i]);
    pthread_sigmask(SIG_BLOCK, &block, old);
}

int lc__group_attach_signals(lc_group_t *g, lc__group_signals_t *s)
{
    pthread_mutex_lock(&g->mu);
    int r = g->state != G_STARTED || g->stop_requested || g->signals != NULL ? LC_EINVALIDSTATE : 0;
    if (r == 0)
        g->signals = s;
    pthread_mutex_unlock(&g->mu);
    return r;
}

lc__group_signals_t *lc__group_signals(lc_group_t *g)
{
    pthread_mutex_lock(&g->mu);
    lc__group_signals_t *s = g->signals;
    pthread_mutex_unlock(&g->mu);
    return s;
}

void lc__group_add_part(lc_group_t *g, lc__group_part_t *p)
{
    pthread_mutex_lock(&g->mu);
    p->prev = NULL;
    p->next = g->parts;
    if (g->parts != NULL)
        g->parts->prev = p;
    g->parts = p;
    pthread_mutex_unlock(&g->mu);
}

void lc__group_remove_part(lc_group_t *g, lc__group_part_t *p)
{
    pthread_mutex_lock(&g->mu);
    if (p->prev != NULL)
        p->prev->next = p->next;
    else if (g->parts == p)
        g->parts = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
    pthread_mutex_unlock(&g->mu);
}

unsigned lc_group_size(const lc_group_t *g) { return g != NULL ? g->n : 0; }

lc_loop_t *lc_group_loop(const lc_group_t *g, unsigned i)
{
    return g != NULL && i < g->n ? g->members[i].loop : NULL;
}

int lc_group_cpu(const lc_group_t *g, unsigned i)
{
    if (g == NULL || i >= g->n)
        return LC_EINVAL;
    return g->members[i].cpu;
}

int lc_group_index(const lc_group_t *g, const lc_loop_t *loop)
{
    if (g == NULL || loop == NULL)
        return -1;
    for (unsigned i = 0; i < g->n; i++) {
        if (g->members[i].loop == loop)
            return (int)i;
    }
    return -1;
}

/* ---- Cross-loop calls with a future ---------------------------------------------------------- */

typedef struct bcast_s bcast_t;

/* One submitted call. The same struct goes to the target and returns to the origin; each leg is
 * one lc_loop_post_threadsafe, whose push/pop pair publishes the fields written before it. The
 * future is touched on the origin's thread only (or by the single thread that closes both loops,
 * see msg_complete). */
typedef struct submit_msg_s {
    lc_call_t call;
    lc_loop_t *origin;
    lc_loop_t *target;
    lc_submit_fn fn;
    void *arg;
    void *result;
    int status;       /* fn's return value, or LC_ECLOSED if fn did not run */
    lc_future_t *fut; /* a single submit: the message's reference to the origin's future */
    bcast_t *bc;      /* a broadcast: the tally this message belongs to (fut is NULL) */
    unsigned index;   /* a broadcast: the target's index in the group */
} submit_msg_t;

/* A broadcast: one block with the tally and the n messages. It lives until the last message is
 * back; the origin's thread alone touches the tally. */
struct bcast_s {
    lc_future_t *fut; /* the block's reference */
    unsigned pending; /* messages not back yet, plus one while the broadcast posts them */
    unsigned err_index;
    int err;
    submit_msg_t msgs[];
};

/* Sets fut's outcome unless it is already done (cancelled by its owner: the outcome is dropped). */
static void future_settle(lc_future_t *fut, int status, void *result)
{
    if (lc_future_done(fut))
        return;
    if (status >= 0)
        lc_future_set_result(fut, result);
    else if (status == LC_ECANCELLED)
        lc_future_cancel(fut);
    else
        lc_future_set_error(fut, status);
}

/* Settles and releases a future. closed: its loop is closed, nobody can wait for it any more, so
 * an error is marked as retrieved instead of being reported as "never retrieved". */
static void future_finish(lc_future_t *fut, int status, void *result, bool closed)
{
    future_settle(fut, status, result);
    if (closed) {
        int ignored;
        (void)lc_future_error(fut, &ignored);
    }
    lc_future_unref(fut);
}

static void bcast_note(bcast_t *bc, unsigned index, int status, bool closed)
{
    if (status < 0 && index < bc->err_index) {
        bc->err_index = index;
        bc->err = status;
    }
    if (--bc->pending == 0) {
        future_finish(bc->fut, bc->err, NULL, closed);
        free(bc);
    }
}

/* The message is back at the origin for good (closed: the origin is closed, see group.h). */
static void msg_complete(submit_msg_t *m, bool closed)
{
    if (m->bc != NULL) {
        bcast_note(m->bc, m->index, m->status, closed);
    } else {
        lc_future_t *fut = m->fut;
        int status = m->status;
        void *result = m->result;
        free(m);
        future_finish(fut, status, result, closed);
    }
}

static void msg_at_origin(lc_call_t *call, int status)
{
    submit_msg_t *m = lc_container_of(call, submit_msg_t, call);
    /* status LC_ECLOSED: the origin was closed with the message in its queue; we run on the
     * thread that closed it. */
    msg_complete(m, status != 0);
}

static void msg_at_target(lc_call_t *call, int status)
{
    submit_msg_t *m = lc_container_of(call, submit_msg_t, call);
    m->result = NULL;
    if (status == 0)
        m->status = m->fn(m->target, m->arg, &m->result);
    else
        m->status = status; /* the target was closed first: fn does not run */
    /* The callback has started, so the call is ours again and may travel back (threadsafe.h). */
    if (lc_loop_post_threadsafe(m->origin, &m->call, msg_at_origin) != 0)
        msg_complete(m, true);
}

int lc_loop_submit(lc_loop_t *target, lc_submit_fn fn, void *arg, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (target == NULL || fn == NULL || fut == NULL)
        return LC_EINVAL;
    lc_loop_t *origin;
    if (lc_get_running_loop(&origin) != 0)
        return LC_ENORUNNINGLOOP;
    submit_msg_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return LC_ENOMEM;
    lc_future_t *f;
    int r = lc_loop_create_future(origin, &f);
    if (r != 0) {
        free(m);
        return r;
    }
    m->origin = origin;
    m->target = target;
    m->fn = fn;
    m->arg = arg;
    m->fut = lc_future_ref(f);
    /* Nothing can come back before this function returns: the reply runs on this thread. */
    r = lc_loop_post_threadsafe(target, &m->call, msg_at_target);
    if (r != 0) {
        free(m);
        lc_future_unref(f);
        lc_future_unref(f);
        return r;
    }
    *fut = f;
    return 0;
}

int lc_group_submit(lc_group_t *g, unsigned index, lc_submit_fn fn, void *arg, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (g == NULL || index >= g->n)
        return LC_EINVAL;
    return lc_loop_submit(g->members[index].loop, fn, arg, fut);
}

int lc_group_broadcast(lc_group_t *g, lc_submit_fn fn, void *arg, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (g == NULL || fn == NULL || fut == NULL)
        return LC_EINVAL;
    lc_loop_t *origin;
    if (lc_get_running_loop(&origin) != 0)
        return LC_ENORUNNINGLOOP;
    unsigned n = g->n;
    bcast_t *bc = calloc(1, sizeof(*bc) + (size_t)n * sizeof(submit_msg_t));
    if (bc == NULL)
        return LC_ENOMEM;
    lc_future_t *f;
    int r = lc_loop_create_future(origin, &f);
    if (r != 0) {
        free(bc);
        return r;
    }
    bc->fut = lc_future_ref(f);
    bc->pending = n + 1;
    bc->err_index = UINT_MAX;
    *fut = f;
    for (unsigned i = 0; i < n; i++) {
        submit_msg_t *m = &bc->msgs[i];
        m->origin = origin;
        m->target = g->members[i].loop;
        m->fn = fn;
        m->arg = arg;
        m->bc = bc;
        m->index = i;
        r = lc_loop_post_threadsafe(m->target, &m->call, msg_at_target);
        if (r != 0)
            bcast_note(bc, i, r, false);
    }
    bcast_note(bc, UINT_MAX, 0, false); /* the posting guard */
    return 0;
}

/* ---- Blocking forms -------------------------------------------------------------------------- */

/* What a blocked caller waits for: pending messages, and the lowest-index error. */
typedef struct wait_tally_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned pending;
    unsigned err_index;
    int err;
} wait_tally_t;

typedef struct wait_msg_s {
    lc_call_t call;
    wait_tally_t *tally;
    lc_loop_t *target;
    lc_submit_fn fn;
    void *arg;
    void *result;
    int status;
    unsigned index;
} wait_msg_t;

static void tally_init(wait_tally_t *t, unsigned pending)
{
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->pending = pending;
    t->err_index = UINT_MAX;
    t->err = 0;
}

/* Counts one message in. After the unlock the waiter may return and free the messages and the
 * tally: nothing may be touched after it (POSIX allows destroying a mutex just unlocked). */
static void tally_note(wait_tally_t *t, unsigned index, int status)
{
    pthread_mutex_lock(&t->mu);
    if (status < 0 && index < t->err_index) {
        t->err_index = index;
        t->err = status;
    }
    if (--t->pending == 0)
        pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void tally_wait_and_destroy(wait_tally_t *t)
{
    pthread_mutex_lock(&t->mu);
    while (t->pending > 0)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

static void wait_at_target(lc_call_t *call, int status)
{
    wait_msg_t *w = lc_container_of(call, wait_msg_t, call);
    if (status == 0) {
        void *result = NULL;
        status = w->fn(w->target, w->arg, &result);
        w->result = result;
    }
    w->status = status;
    /* result and status are published by the tally's mutex: the waiter reads them after it. */
    tally_note(w->tally, w->index, status);
}

int lc_loop_submit_wait(lc_loop_t *target, lc_submit_fn fn, void *arg, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (target == NULL || fn == NULL)
        return LC_EINVAL;
    lc_loop_t *running;
    if (lc_get_running_loop(&running) == 0) {
        if (running != target)
            return LC_EBUSY;
        void *res = NULL;
        int r = fn(target, arg, &res);
        if (result != NULL)
            *result = res;
        return r;
    }
    wait_tally_t t;
    tally_init(&t, 1);
    wait_msg_t w = {.tally = &t, .target = target, .fn = fn, .arg = arg};
    int r = lc_loop_post_threadsafe(target, &w.call, wait_at_target);
    if (r != 0) {
        t.pending = 0;
        tally_wait_and_destroy(&t);
        return r;
    }
    tally_wait_and_destroy(&t);
    if (result != NULL)
        *result = w.result;
    return w.status;
}

/* ---- Blocking calls that a stopped loop does not hold up ------------------------------------- */

/* One lc_group_submit_wait call. On the heap: a caller that stops waiting (its loop will never
 * run again) leaves the message behind, and the loop's close hands it back and frees it. done and
 * abandoned are guarded by the group's mutex, which also publishes result and status. */
typedef struct group_wait_s {
    lc_call_t call;
    lc_group_t *g;
    lc_loop_t *target;
    lc_submit_fn fn;
    void *arg;
    void *result;
    int status;
    bool done;
    bool abandoned;
} group_wait_t;

/* Whether loop m will never run its queue again: its thread left it, or it has no thread and
 * never will (the start failed before it, or the group was stopped before it started). g->mu. */
static bool member_gone(const lc_group_t *g, const member_t *m)
{
    return m->left || (g->state == G_STARTED && !m->has_thread) ||
           (g->state == G_CREATED && g->stop_requested);
}

static void group_wait_at_target(lc_call_t *call, int status)
{
    group_wait_t *w = lc_container_of(call, group_wait_t, call);
    /* Abandoned only once the target's thread left its loop: then this is the close handing the
     * message back (status LC_ECLOSED), and fn and arg are not touched. */
    if (status == 0)
        status = w->fn(w->target, w->arg, &w->result);
    lc_group_t *g = w->g;
    pthread_mutex_lock(&g->mu);
    w->status = status;
    w->done = true;
    bool abandoned = w->abandoned;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (abandoned)
        free(w);
}

int lc_group_submit_wait(lc_group_t *g, unsigned index, lc_submit_fn fn, void *arg, void **result)
{
    if (result != NULL)
        *result = NULL;
    if (g == NULL || index >= g->n || fn == NULL)
        return LC_EINVAL;
    member_t *m = &g->members[index];
    lc_loop_t *running;
    if (lc_get_running_loop(&running) == 0) {
        if (running != m->loop)
            return LC_EBUSY;
        void *res = NULL;
        int r = fn(m->loop, arg, &res);
        if (result != NULL)
            *result = res;
        return r;
    }
    group_wait_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return LC_ENOMEM;
    w->g = g;
    w->target = m->loop;
    w->fn = fn;
    w->arg = arg;
    int r = lc_loop_post_threadsafe(m->loop, &w->call, group_wait_at_target);
    if (r != 0) {
        free(w);
        return r;
    }
    pthread_mutex_lock(&g->mu);
    while (!w->done && !member_gone(g, m))
        pthread_cond_wait(&g->cv, &g->mu);
    if (!w->done) {
        /* The loop left without running it (a message the loop took in its last batch ran
         * before the thread set left, so it is done). */
        w->abandoned = true;
        pthread_mutex_unlock(&g->mu);
        return LC_ECLOSED;
    }
    pthread_mutex_unlock(&g->mu);
    r = w->status;
    if (result != NULL)
        *result = w->result;
    free(w);
    return r;
}

int lc_group_broadcast_wait(lc_group_t *g, lc_submit_fn fn, void *arg)
{
    if (g == NULL || fn == NULL)
        return LC_EINVAL;
    lc_loop_t *running;
    if (lc_get_running_loop(&running) == 0)
        return LC_EBUSY;
    unsigned n = g->n;
    wait_msg_t *ws = calloc(n, sizeof(*ws));
    if (ws == NULL)
        return LC_ENOMEM;
    wait_tally_t t;
    tally_init(&t, n);
    for (unsigned i = 0; i < n; i++) {
        wait_msg_t *w = &ws[i];
        w->tally = &t;
        w->target = g->members[i].loop;
        w->fn = fn;
        w->arg = arg;
        w->index = i;
        int r = lc_loop_post_threadsafe(w->target, &w->call, wait_at_target);
        if (r != 0)
            tally_note(&t, i, r);
    }
    tally_wait_and_destroy(&t);
    free(ws);
    return t.err;
}
