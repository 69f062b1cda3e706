/* threadsafe_bench: cross-thread calls into a loop (issue 3), beside a mutex queue, liburcu's
 * wfcqueue, asyncio and uvloop.
 *
 *   bazel run -c opt //bench:threadsafe_bench [-- options]
 *
 * Options: --no-python, --reps R (best of R throughput runs, default 3), --total N (messages per
 * throughput run, default 4000000), --samples N (latency samples, default 2000), --py-total N
 * (Python throughput messages, default 200000), --only PART (run one part alone, no Python, for
 * profiling: ours | ours0 | post | mutex | wfcqueue | latency | rtt | idle), --p P (throughput
 * parts: only P producers).
 *
 * stdout, one line per figure (other tools parse them; the format is exact):
 *   bench=threadsafe_p{1,2,4} ours=<v> mutex=<v> wfcqueue=<v> uvloop=<v> unit=msgs_per_s
 *       ratio_vs_mutex=<ours/mutex>
 *   bench=wake_latency_p{50,99} ours=<v> mutex=<v> wfcqueue=<v> uvloop=<v> unit=us
 *       ratio_vs_mutex=<mutex/ours>
 *   bench=cross_loop_rtt_p50 ours=<us> unit=us
 *   bench=wakeups_per_100 ours=<x> unit=wakeups
 *   bench=idle_cpu ours=<percent> unit=pct
 * Rates are integers; microseconds, ratios and percentages have 2 decimals, wake-ups 4; NA when
 * a peer is unavailable or skipped. Everything else (asyncio, lc_loop_post_threadsafe, spin 0,
 * p99s, counters) goes to stderr.
 *
 * Queues under test. "ours": lc_loop_call_soon_threadsafe() into a loopcore loop run by its own
 * thread, spin budget LC_GROUP_DEFAULT_SPIN (a group's loop; "ours0" on stderr: budget 0, a
 * standalone loop's default); "post": the same with lc_loop_post_threadsafe() and no allocation
 * (each producer reuses a ring of lc_call_t, waiting for a slot whose callback has started).
 * "mutex": a linked list of malloc'ed {fn,arg} nodes under a pthread mutex, uv_async_send() after
 * every post; the consumer is a libuv loop whose async callback swaps the list out under the mutex
 * and runs it (the async handle plays the condition variable's part: the consumer sleeps in
 * epoll). "wfcqueue": liburcu's wait-free concurrent queue (cds_wfcq_enqueue of a malloc'ed node,
 * uv_async_send() only when the enqueue found the queue empty); the async callback splices the
 * queue out with __cds_wfcq_splice_blocking() and runs it. The Python peers (asyncio and uvloop
 * call_soon_threadsafe) run in bench/threadsafe_bench.py, found in the runfiles like
 * loop_bench.py and run with /usr/bin/python3 (under coreutils timeout).
 *
 * Throughput: P producer threads (1, 2, 4; nothing pinned) each post total/P messages, a callback
 * that increments a counter; the consumer runs on its own thread and the callback that brings the
 * counter to total records the end. rate = total / (start barrier .. last callback); best of R.
 * Wake-ups: lc_loop_get_threadsafe_stats() wake_writes per 100 posts over the R runs of ours.
 * Latency: the consumer idle (ours: spin budget 0; budget LC_GROUP_DEFAULT_SPIN on stderr), one
 * post from the main thread every ~1 ms (sleep 1 ms after the previous callback ran), latency =
 * CLOCK_MONOTONIC just before the post .. start of the callback; nearest-rank p50 and p99.
 * Cross-loop round trip: a 2-loop group with its defaults (pinned, LC_GROUP_DEFAULT_SPIN); on
 * loop 0, lc_loop_submit() to loop 1 of a function that returns at once, the next submit from the
 * future's done callback; rtt = just before the submit .. start of the done callback; 1,000
 * warm-up round trips, then 100,000 samples. Idle CPU: the same group after the round trips, once
 * its budget ran out (50 ms later): getrusage(RUSAGE_SELF) user+system time over 1 s of wall time,
 * as a percentage of one core.
 *
 * Every measurement runs under alarm(): a part that overruns its bound ends the process with a
 * message on stderr (exit status 3). Public API only ("loopcore.h"); <uv.h> and <urcu/wfcqueue.h>
 * for the baselines. */
#define _LGPL_SOURCE /* liburcu's wfcqueue inline (static) versions */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <urcu/wfcqueue.h>
#include <uv.h>

#include "bench/support/runfiles.h"
#include "loopcore.h"

#define PYTHON "/usr/bin/python3"
#define TIMEOUT_CMD "/usr/bin/timeout"
#define SCRIPT_REL "bench/threadsafe_bench.py"
#define PAD 128
#define RING 16384 /* lc_call_t slots per producer for the zero-allocation posts */
#define RTT_WARM 1000
#define RTT_N 100000
#define PY_TIMEOUT_S 300

/* ---- Utilities ------------------------------------------------------------------------------ */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void die(const char *what, int r)
{
    fprintf(stderr, "threadsafe_bench: %s failed: %s\n", what, r < 0 ? lc_strerror(r) : "");
    exit(1);
}

static void check(int r, const char *what)
{
    if (r != 0)
        die(what, r);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "threadsafe_bench: out of memory\n");
        exit(1);
    }
    return p;
}

static void xthread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int r = pthread_create(t, NULL, fn, arg);
    if (r != 0) {
        fprintf(stderr, "threadsafe_bench: pthread_create: %s\n", strerror(r));
        exit(1);
    }
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Waits (spinning, then yielding, then sleeping) until *flag >= want. The caller's alarm bounds
 * it. */
static void wait_flag(_Atomic uint64_t *flag, uint64_t want)
{
    for (unsigned i = 0; atomic_load_explicit(flag, memory_order_acquire) < want; i++) {
        if (i < 256)
            cpu_relax();
        else if (i < 4096)
            sched_yield();
        else
            sleep_ns(20000);
    }
}

/* The watchdog: every part runs under alarm(bound). */
static const char *volatile g_part = "start";

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "threadsafe_bench: timed out in part ";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    const char *p = g_part;
    w = write(2, p, strlen(p));
    w = write(2, "\n", 1);
    (void)w;
    _exit(3);
}

static void part(const char *name, unsigned bound_s)
{
    g_part = name;
    alarm(bound_s);
}

static void part_done(void) { alarm(0); }

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (p in (0,1]) of n sorted samples. */
static uint64_t pctl(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)(p * (double)n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

/* ---- Queues under test ---------------------------------------------------------------------- */

enum qkind { Q_OURS, Q_POST, Q_MUTEX, Q_WFCQ };
static const char *const qnames[] = {"ours", "post", "mutex", "wfcqueue"};

/* The mutex baseline. */
typedef struct mnode_s {
    struct mnode_s *next;
    lc_call_fn fn;
    void *arg;
} mnode_t;

typedef struct {
    char pad0[PAD];
    pthread_mutex_t mu;
    mnode_t *head, *tail;
    char pad1[PAD];
    uv_loop_t uv;
    uv_async_t async;
} mq_t;

/* The wfcqueue baseline: producers' tail and consumer's head on separate lines. */
typedef struct {
    struct cds_wfcq_node n;
    lc_call_fn fn;
    void *arg;
} wnode_t;

typedef struct {
    char pad0[PAD];
    struct __cds_wfcq_head head;
    char pad1[PAD];
    struct cds_wfcq_tail tail;
    char pad2[PAD];
    _Atomic uint64_t sends; /* uv_async_send calls by producers (empty-queue enqueues) */
    char pad3[PAD];
    uv_loop_t uv;
    uv_async_t async;
} wq_t;

/* A zero-allocation post slot. */
typedef struct {
    lc_call_t call;
    lc_call_fn fn;
    void *arg;
    _Atomic int busy;
} slot_t;

/* One consumer: a loopcore loop or a libuv loop, run by its own thread. */
typedef struct {
    enum qkind kind;
    lc_loop_t *loop; /* Q_OURS, Q_POST */
    mq_t *mq;
    wq_t *wq;
    pthread_t thread;
    _Atomic uint64_t ready;
    lc_loop_threadsafe_stats_t stats0; /* ours: counters when the consumer came up */
    slot_t ctl;                        /* Q_POST: the main thread's own slot */
} target_t;

static void mq_async_cb(uv_async_t *a)
{
    mq_t *q = a->data;
    pthread_mutex_lock(&q->mu);
    mnode_t *n = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    while (n != NULL) {
        mnode_t *next = n->next;
        n->fn(n->arg);
        free(n);
        n = next;
    }
}

static inline void mq_post(mq_t *q, lc_call_fn fn, void *arg)
{
    mnode_t *n = malloc(sizeof(*n));
    if (n == NULL)
        die("malloc", 0);
    n->next = NULL;
    n->fn = fn;
    n->arg = arg;
    pthread_mutex_lock(&q->mu);
    if (q->tail != NULL)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    pthread_mutex_unlock(&q->mu);
    uv_async_send(&q->async);
}

static void wq_async_cb(uv_async_t *a)
{
    wq_t *q = a->data;
    struct __cds_wfcq_head dh;
    struct cds_wfcq_tail dt;
    __cds_wfcq_init(&dh, &dt);
    if (__cds_wfcq_splice_blocking(&dh, &dt, &q->head, &q->tail) == CDS_WFCQ_RET_SRC_EMPTY)
        return;
    struct cds_wfcq_node *node, *next;
    __cds_wfcq_for_each_blocking_safe(&dh, &dt, node, next)
    {
        wnode_t *w = caa_container_of(node, wnode_t, n);
        w->fn(w->arg);
        free(w);
    }
}

static inline void wq_post(wq_t *q, lc_call_fn fn, void *arg)
{
    wnode_t *w = malloc(sizeof(*w));
    if (w == NULL)
        die("malloc", 0);
    cds_wfcq_node_init(&w->n);
    w->fn = fn;
    w->arg = arg;
    if (!cds_wfcq_enqueue(&q->head, &q->tail, &w->n)) {
        atomic_fetch_add_explicit(&q->sends, 1, memory_order_relaxed);
        uv_async_send(&q->async);
    }
}

static void slot_cb(lc_call_t *call, int status)
{
    slot_t *s = lc_container_of(call, slot_t, call);
    lc_call_fn fn = s->fn;
    void *arg = s->arg;
    if (status != 0)
        die("posted call handed back", status);
    /* The callback has started: the slot is the producer's again. */
    atomic_store_explicit(&s->busy, 0, memory_order_release);
    fn(arg);
}

static inline void slot_post(lc_loop_t *loop, slot_t *s, lc_call_fn fn, void *arg)
{
    s->fn = fn;
    s->arg = arg;
    atomic_store_explicit(&s->busy, 1, memory_order_relaxed);
    check(lc_loop_post_threadsafe(loop, &s->call, slot_cb), "lc_loop_post_threadsafe");
}

/* Posts fn(arg) to t from any thread (Q_POST: through the caller's slot s, which must be free). */
static inline void target_post(target_t *t, slot_t *s, lc_call_fn fn, void *arg)
{
    switch (t->kind) {
    case Q_OURS:
        check(lc_loop_call_soon_threadsafe(t->loop, fn, arg, NULL), "lc_loop_call_soon_threadsafe");
        break;
    case Q_POST:
        slot_post(t->loop, s, fn, arg);
        break;
    case Q_MUTEX:
        mq_post(t->mq, fn, arg);
        break;
    case Q_WFCQ:
        wq_post(t->wq, fn, arg);
        break;
    }
}

/* Consumer thread only: makes the consumer's run function return. */
static void target_stop_here(target_t *t)
{
    switch (t->kind) {
    case Q_OURS:
    case Q_POST:
        lc_loop_stop(t->loop);
        break;
    case Q_MUTEX:
        uv_stop(&t->mq->uv);
        break;
    case Q_WFCQ:
        uv_stop(&t->wq->uv);
        break;
    }
}

static void ready_cb(void *arg)
{
    target_t *t = arg;
    if (t->kind == Q_OURS || t->kind == Q_POST)
        check(lc_loop_get_threadsafe_stats(t->loop, &t->stats0), "lc_loop_get_threadsafe_stats");
    atomic_store_explicit(&t->ready, 1, memory_order_release);
}

static void stop_cb(void *arg) { target_stop_here(arg); }

static void *consumer_main(void *arg)
{
    target_t *t = arg;
    pthread_setname_np(pthread_self(), "ts-consumer"); /* for perf report --sort comm */
    switch (t->kind) {
    case Q_OURS:
    case Q_POST:
        check(lc_loop_run_forever(t->loop), "lc_loop_run_forever");
        break;
    case Q_MUTEX:
        uv_run(&t->mq->uv, UV_RUN_DEFAULT);
        break;
    case Q_WFCQ:
        uv_run(&t->wq->uv, UV_RUN_DEFAULT);
        break;
    }
    return NULL;
}

/* Creates the consumer, starts its thread and waits until it has run a first callback. */
static target_t *target_start(enum qkind kind, double spin)
{
    target_t *t = xmalloc(sizeof(*t));
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    atomic_init(&t->ready, 0);
    atomic_init(&t->ctl.busy, 0);
    switch (kind) {
    case Q_OURS:
    case Q_POST:
        check(lc_new_event_loop(&t->loop), "lc_new_event_loop");
        check(lc_loop_set_spin_budget(t->loop, spin), "lc_loop_set_spin_budget");
        break;
    case Q_MUTEX:
        t->mq = xmalloc(sizeof(*t->mq));
        memset(t->mq, 0, sizeof(*t->mq));
        pthread_mutex_init(&t->mq->mu, NULL);
        check(uv_loop_init(&t->mq->uv), "uv_loop_init");
        check(uv_async_init(&t->mq->uv, &t->mq->async, mq_async_cb), "uv_async_init");
        t->mq->async.data = t->mq;
        break;
    case Q_WFCQ:
        t->wq = xmalloc(sizeof(*t->wq));
        memset(t->wq, 0, sizeof(*t->wq));
        __cds_wfcq_init(&t->wq->head, &t->wq->tail);
        atomic_init(&t->wq->sends, 0);
        check(uv_loop_init(&t->wq->uv), "uv_loop_init");
        check(uv_async_init(&t->wq->uv, &t->wq->async, wq_async_cb), "uv_async_init");
        t->wq->async.data = t->wq;
        break;
    }
    xthread(&t->thread, consumer_main, t);
    target_post(t, &t->ctl, ready_cb, t);
    wait_flag(&t->ready, 1);
    return t;
}

/* Waits for the consumer thread to leave its loop (stopped by a callback), then frees it. */
static void target_join_free(target_t *t)
{
    pthread_join(t->thread, NULL);
    switch (t->kind) {
    case Q_OURS:
    case Q_POST:
        check(lc_loop_close(t->loop), "lc_loop_close");
        check(lc_loop_free(t->loop), "lc_loop_free");
        break;
    case Q_MUTEX:
        uv_close((uv_handle_t *)&t->mq->async, NULL);
        uv_run(&t->mq->uv, UV_RUN_DEFAULT);
        check(uv_loop_close(&t->mq->uv), "uv_loop_close");
        pthread_mutex_destroy(&t->mq->mu);
        free(t->mq);
        break;
    case Q_WFCQ:
        uv_close((uv_handle_t *)&t->wq->async, NULL);
        uv_run(&t->wq->uv, UV_RUN_DEFAULT);
        check(uv_loop_close(&t->wq->uv), "uv_loop_close");
        free(t->wq);
        break;
    }
    free(t);
}

/* ---- Throughput ----------------------------------------------------------------------------- */

typedef struct {
    target_t *t;
    long count; /* consumer thread only */
    long total;
    char pad[PAD];
    _Atomic uint64_t t_end;
} sink_t;

static void count_cb(void *arg)
{
    sink_t *s = arg;
    if (++s->count == s->total) {
        atomic_store_explicit(&s->t_end, now_ns(), memory_order_relaxed);
        target_stop_here(s->t);
    }
}

typedef struct {
    target_t *t;
    sink_t *sink;
    long m;
    pthread_barrier_t *barrier;
    slot_t *ring; /* Q_POST */
} producer_t;

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    target_t *t = p->t;
    sink_t *sink = p->sink;
    long m = p->m;
    pthread_setname_np(pthread_self(), "ts-producer");
    pthread_barrier_wait(p->barrier);
    switch (t->kind) {
    case Q_OURS:
        for (long i = 0; i < m; i++)
            if (lc_loop_call_soon_threadsafe(t->loop, count_cb, sink, NULL) != 0)
                die("lc_loop_call_soon_threadsafe", LC_ENOMEM);
        break;
    case Q_POST:
        for (long i = 0; i < m; i++) {
            slot_t *s = &p->ring[i & (RING - 1)];
            for (unsigned k = 0; atomic_load_explicit(&s->busy, memory_order_acquire); k++) {
                if (k < 128)
                    cpu_relax();
                else
                    sched_yield();
            }
            slot_post(t->loop, s, count_cb, sink);
        }
        break;
    case Q_MUTEX:
        for (long i = 0; i < m; i++)
            mq_post(t->mq, count_cb, sink);
        break;
    case Q_WFCQ:
        for (long i = 0; i < m; i++)
            wq_post(t->wq, count_cb, sink);
        break;
    }
    return NULL;
}

typedef struct {
    double rate;      /* msgs/s */
    uint64_t posts;   /* ours: messages received */
    uint64_t wakes;   /* ours: eventfd writes; wfcqueue: uv_async_send calls */
    uint64_t sleeps;  /* ours: announced sleeps */
    uint64_t wakeups; /* ours: eventfd wake-ups seen by the loop */
} tp_result;

static tp_result throughput_once(enum qkind kind, double spin, int nprod, long total)
{
    long m = total / nprod;
    total = m * nprod;
    target_t *t = target_start(kind, spin);
    sink_t *sink = xmalloc(sizeof(*sink));
    memset(sink, 0, sizeof(*sink));
    sink->t = t;
    sink->total = total;
    atomic_init(&sink->t_end, 0);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nprod + 1);
    producer_t prods[4];
    pthread_t th[4];
    for (int i = 0; i < nprod; i++) {
        prods[i] = (producer_t){.t = t, .sink = sink, .m = m, .barrier = &barrier, .ring = NULL};
        if (kind == Q_POST) {
            prods[i].ring = xmalloc(RING * sizeof(slot_t));
            memset(prods[i].ring, 0, RING * sizeof(slot_t));
            for (int k = 0; k < RING; k++)
                atomic_init(&prods[i].ring[k].busy, 0);
        }
        xthread(&th[i], producer_main, &prods[i]);
    }
    pthread_barrier_wait(&barrier);
    uint64_t t0 = now_ns();
    for (int i = 0; i < nprod; i++)
        pthread_join(th[i], NULL);
    pthread_join(t->thread, NULL); /* the last callback stopped the consumer */
    t->thread = pthread_self();    /* joined: target_join_free must not join again */
    tp_result r = {0};
    uint64_t t_end = atomic_load_explicit(&sink->t_end, memory_order_relaxed);
    if (sink->count != total || t_end == 0) {
        fprintf(stderr, "threadsafe_bench: %s p%d: %ld of %ld callbacks ran\n", qnames[kind], nprod,
                sink->count, total);
        exit(1);
    }
    r.rate = (double)total / ((double)(t_end - t0) * 1e-9);
    if (kind == Q_OURS || kind == Q_POST) {
        lc_loop_threadsafe_stats_t st;
        check(lc_loop_get_threadsafe_stats(t->loop, &st), "lc_loop_get_threadsafe_stats");
        r.posts = st.received - t->stats0.received;
        r.wakes = st.wake_writes - t->stats0.wake_writes;
        r.sleeps = st.sleeps - t->stats0.sleeps;
        r.wakeups = st.wakeups - t->stats0.wakeups;
    } else if (kind == Q_WFCQ) {
        r.posts = (uint64_t)total;
        r.wakes = atomic_load_explicit(&t->wq->sends, memory_order_relaxed);
    }
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < nprod; i++)
        free(prods[i].ring);
    free(sink);
    /* target_join_free joins t->thread: it is already joined, so skip that step. */
    switch (t->kind) {
    case Q_OURS:
    case Q_POST:
        check(lc_loop_close(t->loop), "lc_loop_close");
        check(lc_loop_free(t->loop), "lc_loop_free");
        free(t);
        break;
    default: {
        uv_loop_t *uv = t->kind == Q_MUTEX ? &t->mq->uv : &t->wq->uv;
        uv_async_t *as = t->kind == Q_MUTEX ? &t->mq->async : &t->wq->async;
        uv_close((uv_handle_t *)as, NULL);
        uv_run(uv, UV_RUN_DEFAULT);
        check(uv_loop_close(uv), "uv_loop_close");
        if (t->kind == Q_MUTEX) {
            pthread_mutex_destroy(&t->mq->mu);
            free(t->mq);
        } else {
            free(t->wq);
        }
        free(t);
        break;
    }
    }
    return r;
}

typedef struct {
    double best;
    uint64_t posts, wakes, sleeps, wakeups; /* summed over the repetitions */
} tp_best;

static tp_best throughput(enum qkind kind, double spin, int nprod, long total, int reps)
{
    tp_best b = {0};
    char name[64];
    snprintf(name, sizeof(name), "throughput %s p%d", qnames[kind], nprod);
    for (int i = 0; i < reps; i++) {
        part(name, 120);
        tp_result r = throughput_once(kind, spin, nprod, total);
        part_done();
        if (r.rate > b.best)
            b.best = r.rate;
        b.posts += r.posts;
        b.wakes += r.wakes;
        b.sleeps += r.sleeps;
        b.wakeups += r.wakeups;
    }
    return b;
}

/* ---- Wake-to-run latency -------------------------------------------------------------------- */

typedef struct {
    uint64_t t_post; /* written before the post; the post publishes it */
    uint64_t *lat;
    uint64_t i;
    char pad[PAD];
    _Atomic uint64_t done;
} lat_state;

static void lat_cb(void *arg)
{
    uint64_t t1 = now_ns();
    lat_state *s = arg;
    s->lat[s->i] = t1 - s->t_post;
    atomic_store_explicit(&s->done, s->i + 1, memory_order_release);
}

typedef struct {
    double p50, p99; /* us */
} lat_result;

static lat_result latency(enum qkind kind, double spin, long samples, uint64_t gap_ns)
{
    char name[64];
    snprintf(name, sizeof(name), "latency %s spin %g gap %lluns", qnames[kind], spin,
             (unsigned long long)gap_ns);
    part(name, (unsigned)(30 + (uint64_t)samples * (gap_ns + 2000000u) / 1000000000u));
    target_t *t = target_start(kind, spin);
    lat_state *s = xmalloc(sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->lat = xmalloc((size_t)samples * sizeof(uint64_t));
    atomic_init(&s->done, 0);
    slot_t *slot = &t->ctl;
    for (long i = 0; i < samples; i++) {
        sleep_ns(gap_ns);
        s->i = (uint64_t)i;
        /* Q_POST: the slot is free, its previous callback started before done was set. */
        s->t_post = now_ns();
        target_post(t, slot, lat_cb, s);
        wait_flag(&s->done, (uint64_t)i + 1);
    }
    target_post(t, slot, stop_cb, t);
    target_join_free(t);
    part_done();
    qsort(s->lat, (size_t)samples, sizeof(uint64_t), cmp_u64);
    lat_result r = {.p50 = (double)pctl(s->lat, (size_t)samples, 0.50) / 1000.0,
                    .p99 = (double)pctl(s->lat, (size_t)samples, 0.99) / 1000.0};
    free(s->lat);
    free(s);
    return r;
}

/* ---- Cross-loop round trip and idle CPU (a 2-loop group) ------------------------------------ */

typedef struct {
    lc_loop_t *peer;
    long warm, n, i;
    uint64_t t0;
    uint64_t *samples;
    int err;
    char pad[PAD];
    _Atomic uint64_t done;
} rtt_state;

static int echo_fn(lc_loop_t *target, void *arg, void **result)
{
    (void)target;
    (void)arg;
    (void)result;
    return 0;
}

static void rtt_next(rtt_state *r);

static void rtt_finish(rtt_state *r, int err)
{
    r->err = err;
    atomic_store_explicit(&r->done, 1, memory_order_release);
}

static void rtt_done(lc_future_t *fut, void *arg)
{
    uint64_t t1 = now_ns();
    rtt_state *r = arg;
    int e = lc_future_result(fut, NULL);
    lc_future_unref(fut);
    if (e != 0) {
        rtt_finish(r, e);
        return;
    }
    if (r->i >= r->warm)
        r->samples[r->i - r->warm] = t1 - r->t0;
    if (++r->i == r->warm + r->n) {
        rtt_finish(r, 0);
        return;
    }
    rtt_next(r);
}

static void rtt_next(rtt_state *r)
{
    lc_future_t *fut;
    r->t0 = now_ns();
    int e = lc_loop_submit(r->peer, echo_fn, NULL, &fut);
    if (e != 0) {
        rtt_finish(r, e);
        return;
    }
    e = lc_future_add_done_callback(fut, rtt_done, r);
    if (e != 0) {
        lc_future_unref(fut);
        rtt_finish(r, e);
    }
}

static int rtt_start(lc_loop_t *target, void *arg, void **result)
{
    (void)target;
    (void)result;
    rtt_next(arg);
    return 0;
}

static int stats_fn(lc_loop_t *target, void *arg, void **result)
{
    (void)result;
    return lc_loop_get_threadsafe_stats(target, arg);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

typedef struct {
    bool have_rtt, have_idle;
    double p50, p90, p99, mean; /* us */
    double idle_pct;
} group_result;

static group_result group_parts(bool do_rtt, bool do_idle)
{
    group_result res = {0};
    part("group create/start", 30);
    lc_group_t *g;
    check(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2}), "lc_group_create");
    check(lc_group_start(g), "lc_group_start");
    lc_loop_t *l0 = lc_group_loop(g, 0), *l1 = lc_group_loop(g, 1);
    fprintf(stderr,
            "threadsafe_bench: group: 2 loops, cpus %d,%d, spin budget %.0f us (default); "
            "lc_loop_submit from loop 0 to loop 1\n",
            lc_group_cpu(g, 0), lc_group_cpu(g, 1), lc_loop_get_spin_budget(l0) * 1e6);
    part_done();

    if (do_rtt) {
        part("cross-loop rtt", 60);
        rtt_state *r = xmalloc(sizeof(*r));
        memset(r, 0, sizeof(*r));
        r->peer = l1;
        r->warm = RTT_WARM;
        r->n = RTT_N;
        r->samples = xmalloc((size_t)RTT_N * sizeof(uint64_t));
        atomic_init(&r->done, 0);
        check(lc_loop_submit_wait(l0, rtt_start, r, NULL), "lc_loop_submit_wait");
        wait_flag(&r->done, 1);
        check(r->err, "cross-loop round trip");
        part_done();
        double sum = 0;
        for (long i = 0; i < RTT_N; i++)
            sum += (double)r->samples[i];
        qsort(r->samples, RTT_N, sizeof(uint64_t), cmp_u64);
        res.have_rtt = true;
        res.p50 = (double)pctl(r->samples, RTT_N, 0.50) / 1000.0;
        res.p90 = (double)pctl(r->samples, RTT_N, 0.90) / 1000.0;
        res.p99 = (double)pctl(r->samples, RTT_N, 0.99) / 1000.0;
        res.mean = sum / RTT_N / 1000.0;
        free(r->samples);
        free(r);
    }

    if (do_idle) {
        part("idle cpu", 30);
        lc_loop_threadsafe_stats_t a0, a1, b0, b1;
        check(lc_loop_submit_wait(l0, stats_fn, &a0, NULL), "lc_loop_submit_wait");
        check(lc_loop_submit_wait(l1, stats_fn, &a1, NULL), "lc_loop_submit_wait");
        sleep_ns(50000000); /* 250x the spin budget */
        double c0 = cpu_s();
        uint64_t w0 = now_ns();
        sleep_ns(1000000000);
        double c1 = cpu_s();
        uint64_t w1 = now_ns();
        check(lc_loop_submit_wait(l0, stats_fn, &b0, NULL), "lc_loop_submit_wait");
        check(lc_loop_submit_wait(l1, stats_fn, &b1, NULL), "lc_loop_submit_wait");
        part_done();
        res.have_idle = true;
        res.idle_pct = (c1 - c0) / ((double)(w1 - w0) * 1e-9) * 100.0;
        fprintf(stderr,
                "threadsafe_bench: idle group: cpu %.4f s over %.3f s wall; loop 0: %llu sleeps, "
                "%llu wakeups; loop 1: %llu sleeps, %llu wakeups (between the stats reads, which "
                "each wake a loop once)\n",
                c1 - c0, (double)(w1 - w0) * 1e-9, (unsigned long long)(b0.sleeps - a0.sleeps),
                (unsigned long long)(b0.wakeups - a0.wakeups),
                (unsigned long long)(b1.sleeps - a1.sleeps),
                (unsigned long long)(b1.wakeups - a1.wakeups));
    }

    part("group free", 30);
    check(lc_group_free(g), "lc_group_free");
    part_done();
    return res;
}

/* ---- Python peers --------------------------------------------------------------------------- */

typedef struct {
    bool have;
    double p[3]; /* p1, p2, p4 msgs/s */
    double lat50, lat99;
} py_result;

static py_result run_python(const char *script, const char *loop_name, long total, long samples,
                            int reps)
{
    py_result res = {0};
    char cmd[PATH_MAX * 2 + 256] = "";
    if (access(TIMEOUT_CMD, X_OK) == 0)
        snprintf(cmd, sizeof(cmd), TIMEOUT_CMD " -k 5 %d ", PY_TIMEOUT_S);
    strncat(cmd, PYTHON " ", sizeof(cmd) - strlen(cmd) - 1);
    lc_bench_append_quoted(cmd, sizeof(cmd), script);
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof(cmd) - len,
             " --loop %s --total %ld --samples %ld --reps %d --timeout %d", loop_name, total,
             samples, reps, PY_TIMEOUT_S - 10);
    char name[64];
    snprintf(name, sizeof(name), "python %s", loop_name);
    part(name, PY_TIMEOUT_S + 30);
    char who[64], line[512];
    snprintf(who, sizeof(who), "threadsafe_bench: %s", loop_name);
    bool ok = lc_bench_run_peer(who, cmd, "p1=", line, sizeof(line));
    part_done();
    if (!ok)
        return res;
    if (sscanf(line, "p1=%lf p2=%lf p4=%lf lat_p50=%lf lat_p99=%lf", &res.p[0], &res.p[1],
               &res.p[2], &res.lat50, &res.lat99) != 5) {
        fprintf(stderr, "threadsafe_bench: %s peer printed no figures: NA\n", loop_name);
        return res;
    }
    res.have = true;
    return res;
}

/* ---- Main ----------------------------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--no-python] [--reps R] [--total N] [--samples N] [--py-total N]\n"
            "          [--only ours|ours0|post|mutex|wfcqueue|latency|rtt|idle] [--p 1|2|4]\n"
            "  --only runs one part alone (no Python), for profiling\n",
            argv0);
    exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *argv0)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        usage(argv0);
    return v;
}

static void fmt_int(char *buf, size_t cap, bool have, double v)
{
    if (have)
        snprintf(buf, cap, "%lld", (long long)(v + 0.5));
    else
        snprintf(buf, cap, "NA");
}

static void fmt_f2(char *buf, size_t cap, bool have, double v)
{
    if (have)
        snprintf(buf, cap, "%.2f", v);
    else
        snprintf(buf, cap, "NA");
}

static void fmt_ratio(char *buf, size_t cap, bool have, double num, double den)
{
    if (have && den > 0)
        snprintf(buf, cap, "%.2f", num / den);
    else
        snprintf(buf, cap, "NA");
}

int main(int argc, char **argv)
{
    bool python = true;
    int reps = 3;
    long total = 4000000, samples = 2000, py_total = 200000;
    const char *only = NULL;
    int only_p = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-python") == 0)
            python = false;
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = (int)parse_long(argv[++i], 1, 100, argv[0]);
        else if (strcmp(argv[i], "--total") == 0 && i + 1 < argc)
            total = parse_long(argv[++i], 4, 1000000000, argv[0]);
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            samples = parse_long(argv[++i], 1, 1000000, argv[0]);
        else if (strcmp(argv[i], "--py-total") == 0 && i + 1 < argc)
            py_total = parse_long(argv[++i], 4, 100000000, argv[0]);
        else if (strcmp(argv[i], "--p") == 0 && i + 1 < argc) {
            only_p = (int)parse_long(argv[++i], 1, 4, argv[0]);
            if (only_p == 3)
                usage(argv[0]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
            static const char *const parts[] = {"ours",     "ours0",   "post", "mutex",
                                                "wfcqueue", "latency", "rtt",  "idle"};
            bool ok = false;
            for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++)
                ok |= strcmp(only, parts[k]) == 0;
            if (!ok)
                usage(argv[0]);
            python = false;
        } else {
            usage(argv[0]);
        }
    }
    signal(SIGALRM, on_alarm);
#define RUN(p) (only == NULL || strcmp(only, (p)) == 0)

    static const int P[3] = {1, 2, 4};
    tp_best ours[3] = {{0}}, ours0[3] = {{0}}, post[3] = {{0}}, mutex[3] = {{0}}, wfcq[3] = {{0}};
    if (RUN("ours") || RUN("ours0") || RUN("post") || RUN("mutex") || RUN("wfcqueue"))
        fprintf(stderr,
                "threadsafe_bench: throughput total=%ld per run, best of %d; ours spin budget "
                "%.0f us (LC_GROUP_DEFAULT_SPIN), ours0 spin 0\n",
                total, reps, LC_GROUP_DEFAULT_SPIN * 1e6);
    for (int k = 0; k < 3; k++) {
        if (only_p != 0 && P[k] != only_p)
            continue;
        if (RUN("ours"))
            ours[k] = throughput(Q_OURS, LC_GROUP_DEFAULT_SPIN, P[k], total, reps);
        if (RUN("ours0"))
            ours0[k] = throughput(Q_OURS, 0, P[k], total, reps);
        if (RUN("post"))
            post[k] = throughput(Q_POST, LC_GROUP_DEFAULT_SPIN, P[k], total, reps);
        if (RUN("mutex"))
            mutex[k] = throughput(Q_MUTEX, 0, P[k], total, reps);
        if (RUN("wfcqueue"))
            wfcq[k] = throughput(Q_WFCQ, 0, P[k], total, reps);
        if (RUN("ours"))
            fprintf(stderr,
                    "threadsafe_bench: p%d ours(call_soon_threadsafe, spin 200us) %.0f msgs/s; "
                    "eventfd writes %llu, sleeps %llu, wakeups %llu over %llu posts = %.4f "
                    "wake-ups per 100 posts\n",
                    P[k], ours[k].best, (unsigned long long)ours[k].wakes,
                    (unsigned long long)ours[k].sleeps, (unsigned long long)ours[k].wakeups,
                    (unsigned long long)ours[k].posts,
                    ours[k].posts ? 100.0 * (double)ours[k].wakes / (double)ours[k].posts : 0);
        if (RUN("ours0"))
            fprintf(stderr,
                    "threadsafe_bench: p%d ours0(call_soon_threadsafe, spin 0) %.0f msgs/s; "
                    "%.4f wake-ups per 100 posts (%llu writes, %llu sleeps)\n",
                    P[k], ours0[k].best,
                    ours0[k].posts ? 100.0 * (double)ours0[k].wakes / (double)ours0[k].posts : 0,
                    (unsigned long long)ours0[k].wakes, (unsigned long long)ours0[k].sleeps);
        if (RUN("post"))
            fprintf(stderr,
                    "threadsafe_bench: p%d post(lc_loop_post_threadsafe, spin 200us) %.0f msgs/s; "
                    "%.4f wake-ups per 100 posts\n",
                    P[k], post[k].best,
                    post[k].posts ? 100.0 * (double)post[k].wakes / (double)post[k].posts : 0);
        if (RUN("mutex"))
            fprintf(stderr, "threadsafe_bench: p%d mutex %.0f msgs/s\n", P[k], mutex[k].best);
        if (RUN("wfcqueue"))
            fprintf(stderr,
                    "threadsafe_bench: p%d wfcqueue %.0f msgs/s; uv_async_send %.4f per 100 "
                    "posts\n",
                    P[k], wfcq[k].best,
                    wfcq[k].posts ? 100.0 * (double)wfcq[k].wakes / (double)wfcq[k].posts : 0);
    }

    lat_result l_ours = {0}, l_mutex = {0}, l_wfcq = {0};
    bool have_lat = RUN("latency");
    if (have_lat) {
        const uint64_t gap = 1000000;
        l_ours = latency(Q_OURS, 0, samples, gap);
        lat_result l_post = latency(Q_POST, 0, samples, gap);
        lat_result l_spin = latency(Q_OURS, LC_GROUP_DEFAULT_SPIN, samples, gap);
        lat_result l_hot = latency(Q_OURS, LC_GROUP_DEFAULT_SPIN, samples, 50000);
        l_mutex = latency(Q_MUTEX, 0, samples, gap);
        l_wfcq = latency(Q_WFCQ, 0, samples, gap);
        fprintf(stderr,
                "threadsafe_bench: wake latency (us, p50/p99, %ld samples, 1 ms apart): "
                "ours(call_soon_threadsafe, spin 0) %.2f/%.2f, post(spin 0) %.2f/%.2f, "
                "ours(spin 200us) %.2f/%.2f, mutex %.2f/%.2f, wfcqueue %.2f/%.2f; "
                "ours(spin 200us, posts 50 us apart, within the budget) %.2f/%.2f\n",
                samples, l_ours.p50, l_ours.p99, l_post.p50, l_post.p99, l_spin.p50, l_spin.p99,
                l_mutex.p50, l_mutex.p99, l_wfcq.p50, l_wfcq.p99, l_hot.p50, l_hot.p99);
    }

    group_result gr = {0};
    if (RUN("rtt") || RUN("idle"))
        gr = group_parts(RUN("rtt"), RUN("idle"));
    if (gr.have_rtt)
        fprintf(stderr,
                "threadsafe_bench: cross-loop rtt (us, %d samples): p50 %.2f p90 %.2f p99 %.2f "
                "mean %.2f\n",
                RTT_N, gr.p50, gr.p90, gr.p99, gr.mean);

    py_result uvl = {0}, asy = {0};
    if (python) {
        char *script = lc_bench_find_runfile(argv[0], SCRIPT_REL);
        if (script == NULL) {
            fprintf(stderr, "threadsafe_bench: %s not found in runfiles: peers NA\n", SCRIPT_REL);
        } else if (access(PYTHON, X_OK) != 0) {
            fprintf(stderr, "threadsafe_bench: %s not found: peers NA\n", PYTHON);
        } else {
            fprintf(stderr,
                    "threadsafe_bench: python peers total=%ld per run (best of %d), %ld latency "
                    "samples, script %s\n",
                    py_total, reps, samples, script);
            asy = run_python(script, "asyncio", py_total, samples, reps);
            uvl = run_python(script, "uvloop", py_total, samples, reps);
        }
        free(script);
        if (asy.have)
            fprintf(stderr,
                    "threadsafe_bench: asyncio call_soon_threadsafe: p1 %.0f p2 %.0f p4 %.0f "
                    "msgs/s; wake latency p50 %.2f us p99 %.2f us\n",
                    asy.p[0], asy.p[1], asy.p[2], asy.lat50, asy.lat99);
    } else {
        fprintf(stderr, "threadsafe_bench: --no-python: peers NA\n");
    }

    char o[32], mu[32], wf[32], uv[32], ra[32];
    for (int k = 0; k < 3; k++) {
        if (only_p != 0 && P[k] != only_p)
            continue;
        if (!(RUN("ours") || RUN("mutex") || RUN("wfcqueue")))
            continue;
        fmt_int(o, sizeof(o), ours[k].best > 0, ours[k].best);
        fmt_int(mu, sizeof(mu), mutex[k].best > 0, mutex[k].best);
        fmt_int(wf, sizeof(wf), wfcq[k].best > 0, wfcq[k].best);
        fmt_int(uv, sizeof(uv), uvl.have, uvl.p[k]);
        fmt_ratio(ra, sizeof(ra), ours[k].best > 0 && mutex[k].best > 0, ours[k].best,
                  mutex[k].best);
        printf("bench=threadsafe_p%d ours=%s mutex=%s wfcqueue=%s uvloop=%s unit=msgs_per_s "
               "ratio_vs_mutex=%s\n",
               P[k], o, mu, wf, uv, ra);
    }
    if (have_lat) {
        for (int q = 0; q < 2; q++) {
            double vo = q ? l_ours.p99 : l_ours.p50, vm = q ? l_mutex.p99 : l_mutex.p50;
            double vw = q ? l_wfcq.p99 : l_wfcq.p50, vu = q ? uvl.lat99 : uvl.lat50;
            fmt_f2(o, sizeof(o), true, vo);
            fmt_f2(mu, sizeof(mu), true, vm);
            fmt_f2(wf, sizeof(wf), true, vw);
            fmt_f2(uv, sizeof(uv), uvl.have, vu);
            fmt_ratio(ra, sizeof(ra), true, vm, vo);
            printf("bench=wake_latency_p%d ours=%s mutex=%s wfcqueue=%s uvloop=%s unit=us "
                   "ratio_vs_mutex=%s\n",
                   q ? 99 : 50, o, mu, wf, uv, ra);
        }
    }
    if (gr.have_rtt)
        printf("bench=cross_loop_rtt_p50 ours=%.2f unit=us\n", gr.p50);
    if (RUN("ours") && (only_p == 0 || only_p == 4)) {
        tp_best *b = &ours[2];
        printf("bench=wakeups_per_100 ours=%.4f unit=wakeups\n",
               b->posts ? 100.0 * (double)b->wakes / (double)b->posts : 0.0);
    }
    if (gr.have_idle)
        printf("bench=idle_cpu ours=%.2f unit=pct\n", gr.idle_pct);
    fflush(stdout);
    return 0;
}
