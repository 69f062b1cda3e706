/* call_soon_threadsafe: what posts cost in wake-ups. 4 producers x 1,000,000 (one wake-up per
 * sleep at most), bursts to an awake loop and to one that keeps up, and the spin budget (I/O still
 * polled while it spins, idle costs nothing). Also run under --config=tsan. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"
#include "tests/threadsafe/call_threadsafe_helpers.h"
#include "threadsafe/mpsc.h" /* lc_mpsc_cpu_relax */

/* ---- 4 producers x 1,000,000 ----------------------------------------------------------------- */

enum { PRODUCERS = 4 };

typedef struct {
    lc_loop_t *loop;
    unsigned id;
    unsigned count;
} producer_t;

static unsigned expected_seq[PRODUCERS];
static unsigned order_errors;
static unsigned total_ran;

static void seq_cb(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    unsigned id = (unsigned)(v & 7), seq = (unsigned)(v >> 3);
    if (seq != expected_seq[id])
        order_errors++;
    expected_seq[id] = seq + 1;
    total_ran++;
}

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    for (unsigned i = 0; i < p->count; i++) {
        int r;
        while ((r = lc_loop_call_soon_threadsafe(
                    p->loop, seq_cb, (void *)(((uintptr_t)i << 3) | p->id), NULL)) == LC_ENOMEM)
            sched_yield();
        assert_int_equal(r, 0);
        if ((i & 4095) == 0)
            sched_yield(); /* let the consumer interleave on a 2-core machine */
    }
    return NULL;
}

static void test_threadsafe_four_producers_million_each(void **state)
{
    lc_loop_t *loop = *state;
    unsigned count = 1000000 / SCALE;
    memset(expected_seq, 0, sizeof(expected_seq));
    order_errors = total_ran = 0;
    runner_t r;
    runner_start(&r, loop);
    pthread_t t[PRODUCERS];
    producer_t p[PRODUCERS];
    for (unsigned i = 0; i < PRODUCERS; i++) {
        p[i] = (producer_t){loop, i, count};
        assert_int_equal(pthread_create(&t[i], NULL, producer_main, &p[i]), 0);
    }
    for (unsigned i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    runner_stop(&r); /* posted after every producer's last post: runs after them */
    assert_int_equal(total_ran, PRODUCERS * count);
    assert_int_equal(order_errors, 0);
    for (unsigned i = 0; i < PRODUCERS; i++)
        assert_int_equal(expected_seq[i], count);
    lc_loop_threadsafe_stats_t st;
    assert_int_equal(lc_loop_get_threadsafe_stats(loop, &st), 0);
    /* One wake-up per sleep at most: producers never write the eventfd of an awake loop twice. */
    assert_true(st.wake_writes <= st.sleeps + 1);
    print_message("  posts=%u sleeps=%llu wakeups=%llu wake_writes=%llu\n", PRODUCERS * count,
                  (unsigned long long)st.sleeps, (unsigned long long)st.wakeups,
                  (unsigned long long)st.wake_writes);
}

/* ---- coalescing ------------------------------------------------------------------------------ */

/* While the loop is awake, posts make no system call: a burst posted while the loop runs a
 * callback (held by a gate until the burst is in) costs no wake-up at all. Deterministic: the
 * only eventfd writes are the gate's post to the sleeping loop and the stop's. */
typedef struct {
    atomic_int entered;
    atomic_int open;
} gate_t;

static void gate_cb(void *arg)
{
    gate_t *g = arg;
    atomic_store(&g->entered, 1);
    while (!atomic_load(&g->open))
        sched_yield();
}

static void test_threadsafe_burst_to_awake_loop_costs_no_wakeup(void **state)
{
    lc_loop_t *loop = *state;
    runner_t r;
    runner_start(&r, loop);
    usleep(20000); /* asleep by now, or soon: either way the gate's post wakes it at most once */
    gate_t g = {0};
    atomic_int ran = 0;
    enum { BURST = 10000 };
    assert_int_equal(lc_loop_call_soon_threadsafe(loop, gate_cb, &g, NULL), 0);
    while (!atomic_load(&g.entered))
        usleep(100);
    for (int i = 0; i < BURST; i++)
        assert_int_equal(lc_loop_call_soon_threadsafe(loop, count_cb, &ran, NULL), 0);
    atomic_store(&g.open, 1);
    double t0 = now();
    while (atomic_load(&ran) < BURST && now() - t0 < 5)
        usleep(100);
    runner_stop(&r);
    assert_int_equal(atomic_load(&ran), BURST);
    lc_loop_threadsafe_stats_t st;
    assert_int_equal(lc_loop_get_threadsafe_stats(loop, &st), 0);
    print_message("  wake_writes=%llu sleeps=%llu\n", (unsigned long long)st.wake_writes,
                  (unsigned long long)st.sleeps);
    assert_true(st.wake_writes >= 1);
    assert_true(st.wake_writes <= 2); /* the gate's and the stop's */
}

/* A burst from a producer that the loop keeps up with: with no spin budget the loop may sleep
 * between posts (each such sleep costs the next post a wake-up, at most one per sleep); with a
 * budget, as group loops have, it polls instead, so the burst costs few wake-ups. */
static void test_threadsafe_burst_costs_few_wakeups(void **state)
{
    lc_loop_t *loop = *state;
    assert_int_equal(lc_loop_set_spin_budget(loop, 0.002), 0);
    runner_t r;
    runner_start(&r, loop);
    usleep(20000);
    atomic_int ran = 0;
    enum { BURST = 10000 };
    for (int i = 0; i < BURST; i++)
        assert_int_equal(lc_loop_call_soon_threadsafe(loop, count_cb, &ran, NULL), 0);
    double t0 = now();
    while (atomic_load(&ran) < BURST && now() - t0 < 5)
        usleep(100);
    runner_stop(&r);
    assert_int_equal(lc_loop_set_spin_budget(loop, 0), 0);
    assert_int_equal(atomic_load(&ran), BURST);
    lc_loop_threadsafe_stats_t st;
    assert_int_equal(lc_loop_get_threadsafe_stats(loop, &st), 0);
    print_message("  wake_writes=%llu sleeps=%llu\n", (unsigned long long)st.wake_writes,
                  (unsigned long long)st.sleeps);
    /* The loop was asleep: the first post woke it; the rest found it awake or coalesced. */
    assert_true(st.wake_writes >= 1);
    assert_true(st.wake_writes <= st.sleeps + 1);
    assert_true(st.wake_writes < BURST / 100);
}

/* ---- spin budget ----------------------------------------------------------------------------- */

/* ---- I/O is polled while cross-thread work keeps a spinning loop busy ---------------------- */

/* A producer answers each callback with the next post at once, so a spinning loop always finds a
 * message within a few spins. The loop must still poll its sockets: bytes written to a transport
 * reach data_received within a bounded time, not only once the producer pauses. */
typedef struct {
    lc_loop_t *loop;
    atomic_long ran;
    atomic_int got_data;
    atomic_int stop;
    long posted;
} io_spin_t;

static void io_ping_cb(void *arg)
{
    io_spin_t *s = arg;
    atomic_fetch_add_explicit(&s->ran, 1, memory_order_release);
}

static void *io_pinger_main(void *arg)
{
    io_spin_t *s = arg;
    while (!atomic_load(&s->stop)) {
        assert_int_equal(lc_loop_call_soon_threadsafe(s->loop, io_ping_cb, s, NULL), 0);
        s->posted++;
        while (atomic_load_explicit(&s->ran, memory_order_acquire) < s->posted &&
               !atomic_load(&s->stop))
            lc_mpsc_cpu_relax();
    }
    return NULL;
}

static void io_data_received(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)t;
    (void)data;
    (void)len;
    io_spin_t *s = user;
    atomic_store(&s->got_data, 1);
}

static const lc_protocol_t io_proto = {.data_received = io_data_received};

static int io_factory(void *factory_arg, const lc_protocol_t **proto, void **user)
{
    *proto = &io_proto;
    *user = factory_arg;
    return 0;
}

static void test_threadsafe_spinning_loop_still_polls_io(void **state)
{
    lc_loop_t *loop = *state;
    io_spin_t s = {.loop = loop};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    lc_future_t *fut;
    assert_int_equal(lc_loop_connect_accepted_socket(loop, io_factory, &s, sv[0], NULL, &fut), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, fut, NULL), 0);
    lc_transport_t *t = NULL;
    assert_int_equal(lc_future_result(fut, (void **)&t), 0);
    lc_future_unref(fut);
    assert_int_equal(lc_loop_set_spin_budget(loop, 1.0), 0); /* spin for as long as work comes */
    runner_t r;
    runner_start(&r, loop);
    pthread_t pinger;
    assert_int_equal(pthread_create(&pinger, NULL, io_pinger_main, &s), 0);
    while (atomic_load(&s.ran) < 10000) /* the ping-pong is under way */
        usleep(1000);
    double t0 = now();
    assert_int_equal(write(sv[1], "x", 1), 1);
    while (!atomic_load(&s.got_data) && now() - t0 < 5.0)
        usleep(20);
    double waited = now() - t0;
    long pings = atomic_load(&s.ran);
    atomic_store(&s.stop, 1);
    assert_int_equal(pthread_join(pinger, NULL), 0);
    runner_stop(&r);
    print_message("  data_received after %.3f ms, %ld pings\n", waited * 1e3, pings);
    assert_true(atomic_load(&s.got_data));
    /* ~0.1 ms here; before the fix 0.5-10 ms, and unbounded in principle */
    assert_true(waited < 0.5);
    assert_int_equal(lc_loop_set_spin_budget(loop, 0), 0);
    assert_int_equal(lc_transport_abort(t), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0); /* connection_lost */
    close(sv[1]);
}

static void test_threadsafe_spin_budget_idle_costs_nothing(void **state)
{
    lc_loop_t *loop = *state;
    assert_true(lc_loop_get_spin_budget(loop) == 0);
    assert_int_equal(lc_loop_set_spin_budget(loop, -1), LC_EINVAL);
    assert_int_equal(lc_loop_set_spin_budget(loop, 0.002), 0);
    assert_true(lc_loop_get_spin_budget(loop) == 0.002);
    runner_t r;
    runner_start(&r, loop);
    atomic_int ran = 0;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(lc_loop_call_soon_threadsafe(loop, count_cb, &ran, NULL), 0);
        usleep(200);
    }
    /* Work stopped arriving: after the budget the loop sleeps and uses no CPU. Measured on the
     * loop thread's own clock, in 300 ms windows until one is quiet (at most 10): glibc (tests do
     * not link jemalloc) may first spend a while consolidating the free lists that earlier tests
     * of this process left in the arena the thread inherited. A spinning loop is never quiet. */
    usleep(50000);
    clockid_t cid;
    assert_int_equal(pthread_getcpuclockid(r.thread, &cid), 0);
    double used = 1;
    int w;
    for (w = 0; w < 10 && used >= 0.03; w++) {
        struct timespec a, b;
        clock_gettime(cid, &a);
        usleep(300000);
        clock_gettime(cid, &b);
        used = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    }
    runner_stop(&r);
    assert_int_equal(atomic_load(&ran), 100);
    lc_loop_threadsafe_stats_t st;
    assert_int_equal(lc_loop_get_threadsafe_stats(loop, &st), 0);
    print_message("  quiet window %d: loop thread cpu %.3f s in 0.3 s, sleeps %llu\n", w, used,
                  (unsigned long long)st.sleeps);
    assert_true(st.sleeps >= 1);
    assert_true(used < 0.03);
}

int main(void)
{
    /* The stress tests free millions of small blocks; with glibc's fast bins on, a later first
     * large malloc in a thread that inherits that arena spends seconds consolidating them, which
     * would show up as CPU use in the idle test. (Binaries use jemalloc; tests use the libc
     * allocator so that the sanitizers can replace it.) */
    mallopt(M_MXFAST, 0);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_threadsafe_four_producers_million_each),
        T(test_threadsafe_burst_to_awake_loop_costs_no_wakeup),
        T(test_threadsafe_burst_costs_few_wakeups),
        T(test_threadsafe_spinning_loop_still_polls_io),
        T(test_threadsafe_spin_budget_idle_costs_nothing),
#undef T
    };
    return cmocka_run_group_tests_name("call_threadsafe_wakeups", tests, NULL, NULL);
}
