/* Signals in a process with several loop threads (loopcore/signal.h): two loops on two threads
 * that both watch SIGUSR1 each run their handler once per delivery (fan-out), on their own
 * thread; the threads a group and an executor make block the asynchronous signals; a storm of
 * kill(getpid(), SIGUSR1) while a group and an executor run busy work: no crash, every handler
 * on its own loop's thread, at most one run per delivery and one after the last delivery
 * (coalescing), then exactly one run per delivery once each delivery is waited for. Also under
 * TSan (tags). */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* What one loop's handler records. */
typedef struct {
    lc_loop_t *loop;
    pthread_t thread;        /* the loop's thread (written before any delivery) */
    _Atomic bool has_thread; /* release: publishes thread; acquire in the handler */
    atomic_int runs;         /* handler runs */
    atomic_int wrong;        /* runs on a thread or loop other than its own */
    atomic_long last_seen;   /* kills_sent when the latest run started */
} watcher_t;

static atomic_long kills_sent;

static void watch_cb(void *arg)
{
    watcher_t *w = arg;
    /* seq_cst: pairs with the store before each kill(); a run that starts after the delivery
     * of kill number n sees at least n. */
    atomic_store(&w->last_seen, atomic_load(&kills_sent));
    lc_loop_t *running = NULL;
    bool own = lc_get_running_loop(&running) == 0 && running == w->loop &&
               atomic_load_explicit(&w->has_thread, memory_order_acquire) &&
               pthread_equal(w->thread, pthread_self());
    if (!own)
        atomic_fetch_add(&w->wrong, 1);
    atomic_fetch_add(&w->runs, 1);
}

/* Waits (up to 30 s) until every watcher has run at least want times. */
static bool wait_runs(watcher_t *ws, int n, int want)
{
    double deadline = now_s() + 30;
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++)
            all = all && atomic_load(&ws[i].runs) >= want;
        if (all)
            return true;
        if (now_s() > deadline)
            return false;
        sleep_ms(1);
    }
}

/* Waits (up to 30 s) until every watcher had a run that started after kill number `sent`. */
static bool wait_seen(watcher_t *ws, int n, long sent)
{
    double deadline = now_s() + 30;
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++)
            all = all && atomic_load(&ws[i].last_seen) >= sent;
        if (all)
            return true;
        if (now_s() > deadline)
            return false;
        sleep_ms(1);
    }
}

/* Waits until no watcher's run count changed for 200 ms (up to 30 s): a delivery taken after a
 * run had already seen the last count still gets its own run, which must be over before the
 * counting phase. */
static void wait_quiet(watcher_t *ws, int n)
{
    double deadline = now_s() + 30;
    int last[8];
    for (int i = 0; i < n; i++)
        last[i] = atomic_load(&ws[i].runs);
    double since = now_s();
    while (now_s() - since < 0.2 && now_s() < deadline) {
        sleep_ms(10);
        for (int i = 0; i < n; i++) {
            int r = atomic_load(&ws[i].runs);
            if (r != last[i]) {
                last[i] = r;
                since = now_s();
            }
        }
    }
}

static void send_usr1(void)
{
    atomic_fetch_add(&kills_sent, 1);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
}

/* ---- Two loops on two threads of the test's own ---------------------------------------------- */

static void *run_loop_thread(void *arg)
{
    watcher_t *w = arg;
    w->thread = pthread_self();
    atomic_store_explicit(&w->has_thread, true, memory_order_release);
    lc_loop_run_forever(w->loop);
    return NULL;
}

static void test_signal_two_loop_threads_each_run_once_per_delivery(void **state)
{
    (void)state;
    atomic_store(&kills_sent, 0);
    watcher_t ws[2] = {0};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(lc_new_event_loop(&ws[i].loop), 0);
        /* Not running yet: this thread may register for it. */
        assert_int_equal(lc_loop_add_signal_handler(ws[i].loop, SIGUSR1, watch_cb, &ws[i]), 0);
        assert_int_equal(pthread_create(&th[i], NULL, run_loop_thread, &ws[i]), 0);
    }
    while (!atomic_load(&ws[0].has_thread) || !atomic_load(&ws[1].has_thread))
        sleep_ms(1);
    const int rounds = 100;
    for (int r = 1; r <= rounds; r++) {
        send_usr1();
        assert_true(wait_runs(ws, 2, r));
    }
    sleep_ms(50); /* nothing more comes */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(atomic_load(&ws[i].runs), rounds);
        assert_int_equal(atomic_load(&ws[i].wrong), 0);
        assert_int_equal(
            lc_loop_call_soon_threadsafe(ws[i].loop, lc_test_stop_cb, ws[i].loop, NULL), 0);
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(lc_loop_free(ws[i].loop), 0);
    }
    struct sigaction sa;
    assert_int_equal(sigaction(SIGUSR1, NULL, &sa), 0);
    assert_ptr_equal((void *)sa.sa_handler, (void *)SIG_DFL);
}

/* ---- A group and an executor, busy ----------------------------------------------------------- */

#define NLOOPS 2

typedef struct {
    watcher_t ws[NLOOPS];
    lc_executor_t *ex;
    atomic_bool stop_busy;
    atomic_int busy_ticks;
    atomic_int busy_inflight; /* jobs submitted whose done callback has not run */
    atomic_int masks_bad;     /* a group loop or worker thread that does not block the signals */
    atomic_int masks_seen;
} storm_t;

static storm_t storm;

static bool blocks_async_signals(void)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGTERM) && sigismember(&cur, SIGINT) &&
           !sigismember(&cur, SIGSEGV);
}

static void check_mask(void)
{
    if (!blocks_async_signals())
        atomic_fetch_add(&storm.masks_bad, 1);
    atomic_fetch_add(&storm.masks_seen, 1);
}

static void on_start(lc_loop_t *loop, unsigned index, void *arg)
{
    (void)arg;
    watcher_t *w = &storm.ws[index];
    w->loop = loop;
    w->thread = pthread_self();
    atomic_store_explicit(&w->has_thread, true, memory_order_release);
    check_mask();
}

static int register_watcher(lc_loop_t *loop, void *arg, void **result)
{
    (void)arg;
    (void)result;
    int i = lc_group_index(lc_loop_group(loop), loop);
    return lc_loop_add_signal_handler(loop, SIGUSR1, watch_cb, &storm.ws[i]);
}

/* Busy work: executor jobs that spin about a millisecond, resubmitted from their done callback,
 * and a timer chain on every loop. */
static int spin_job(void *arg, void **result)
{
    (void)arg;
    (void)result;
    static _Thread_local bool checked;
    if (!checked) {
        checked = true;
        check_mask();
    }
    double end = now_s() + 0.001;
    while (now_s() < end)
        ;
    return 0;
}

static void submit_spin(lc_loop_t *loop);

static void spin_done(lc_future_t *fut, void *arg)
{
    lc_loop_t *loop = arg;
    atomic_fetch_add(&storm.busy_ticks, 1);
    atomic_fetch_sub(&storm.busy_inflight, 1);
    lc_future_unref(fut);
    if (!atomic_load(&storm.stop_busy))
        submit_spin(loop);
}

static void submit_spin(lc_loop_t *loop)
{
    lc_future_t *fut = NULL;
    if (lc_loop_run_in_executor(loop, storm.ex, spin_job, NULL, &fut) == 0) {
        atomic_fetch_add(&storm.busy_inflight, 1);
        lc_future_add_done_callback(fut, spin_done, loop);
    }
}

static void tick(void *arg)
{
    lc_loop_t *loop = arg;
    if (!atomic_load(&storm.stop_busy))
        lc_loop_call_later(loop, 0.0005, tick, loop, NULL);
}

static int start_busy(lc_loop_t *loop, void *arg, void **result)
{
    (void)arg;
    (void)result;
    submit_spin(loop);
    submit_spin(loop);
    tick(loop);
    return 0;
}

static void test_signal_storm_group_and_executor(void **state)
{
    (void)state;
    memset(&storm, 0, sizeof(storm));
    atomic_store(&kills_sent, 0);
    assert_int_equal(lc_executor_create(&storm.ex, &(lc_executor_opts_t){.max_workers = 2}), 0);
    lc_group_t *g;
    assert_int_equal(
        lc_group_create(
            &g, &(lc_group_opts_t){.nloops = NLOOPS, .unpinned = true, .on_start = on_start}),
        0);
    assert_int_equal(lc_group_start(g), 0);
    assert_int_equal(lc_group_broadcast_wait(g, register_watcher, NULL), 0);
    assert_int_equal(lc_group_broadcast_wait(g, start_busy, NULL), 0);

    /* The storm: deliveries back to back, never waiting for a handler. */
    const long storm_kills = 2000;
    for (long i = 0; i < storm_kills; i++) {
        send_usr1();
        if (i % 64 == 0)
            sched_yield();
    }
    /* Each loop gets a run that starts after the last delivery; no more runs than deliveries. */
    assert_true(wait_seen(storm.ws, NLOOPS, storm_kills));
    for (int i = 0; i < NLOOPS; i++) {
        int runs = atomic_load(&storm.ws[i].runs);
        assert_true(runs >= 1 && runs <= storm_kills);
    }

    /* Then one delivery at a time: exactly one run per loop per delivery. */
    int base[NLOOPS];
    wait_quiet(storm.ws, NLOOPS);
    for (int i = 0; i < NLOOPS; i++)
        base[i] = atomic_load(&storm.ws[i].runs);
    const int rounds = 50;
    for (int r = 1; r <= rounds; r++) {
        send_usr1();
        double deadline = now_s() + 30;
        for (int i = 0; i < NLOOPS; i++) {
            while (atomic_load(&storm.ws[i].runs) < base[i] + r && now_s() < deadline)
                sleep_ms(1);
            assert_int_equal(atomic_load(&storm.ws[i].runs), base[i] + r);
        }
    }
    sleep_ms(50);
    for (int i = 0; i < NLOOPS; i++) {
        assert_int_equal(atomic_load(&storm.ws[i].runs), base[i] + rounds);
        assert_int_equal(atomic_load(&storm.ws[i].wrong), 0);
    }
    assert_true(atomic_load(&storm.busy_ticks) > 0);

    /* The busy work winds down (every future's done callback drops the test's reference). */
    atomic_store(&storm.stop_busy, true);
    double deadline = now_s() + 30;
    while (atomic_load(&storm.busy_inflight) > 0 && now_s() < deadline)
        sleep_ms(1);
    assert_int_equal(atomic_load(&storm.busy_inflight), 0);
    assert_int_equal(lc_executor_shutdown(storm.ex, true, false), 0);
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(lc_executor_free(storm.ex), 0);
    /* Every group loop thread and every worker that ran a job blocked the signals. */
    assert_true(atomic_load(&storm.masks_seen) >= NLOOPS + 1);
    assert_int_equal(atomic_load(&storm.masks_bad), 0);
    struct sigaction sa;
    assert_int_equal(sigaction(SIGUSR1, NULL, &sa), 0);
    assert_ptr_equal((void *)sa.sa_handler, (void *)SIG_DFL);
}

int main(void)
{
    alarm(240); /* a hang fails the test instead of holding the suite */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_two_loop_threads_each_run_once_per_delivery),
        cmocka_unit_test(test_signal_storm_group_and_executor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
