/* Group servers: one host:port on every loop of a 4-loop group, in both modes; 200 connections
 * must all be served and every loop must serve some. Closing under a connect flood (hand-offs
 * still queued must not outlive the server's memory), closing after the group stopped,
 * wait_closed / active counts that include connections handed to other loops, and asyncio's
 * order: close, then wait_closed, then free. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

static void echo_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)user;
    lc_transport_write(t, data, len);
}

static const lc_protocol_t echo_proto = {.data_received = echo_data};

static int echo_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    *proto = &echo_proto;
    *user = NULL;
    return 0;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -errno;
    }
    return fd;
}

static void serve_200(lc_group_server_mode_t mode)
{
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 4, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = NULL;
    assert_int_equal(
        lc_group_create_server(g, echo_factory, NULL,
                               &(lc_group_server_opts_t){.host = "127.0.0.1", .mode = mode}, &gs),
        0);
    int port = lc_group_server_port(gs);
    assert_true(port > 0);
    int fds[8];
    size_t n = 8;
    assert_int_equal(lc_group_server_sockets(gs, fds, &n), 0);
    assert_int_equal(n, mode == LC_GROUP_SERVER_REUSEPORT ? 4 : 1);

    enum { N = 200 };
    int conns[N];
    for (int i = 0; i < N; i++) {
        conns[i] = connect_to(port);
        assert_true(conns[i] >= 0);
        char msg[16], back[16];
        int len = snprintf(msg, sizeof(msg), "hi-%d", i);
        assert_int_equal(write(conns[i], msg, (size_t)len), len);
        int got = 0;
        while (got < len) {
            ssize_t k = read(conns[i], back + got, sizeof(back) - (size_t)got);
            assert_true(k > 0);
            got += (int)k;
        }
        assert_memory_equal(back, msg, (size_t)len);
    }
    long total = 0;
    for (unsigned i = 0; i < 4; i++) {
        long c = lc_group_server_connections(gs, i);
        print_message("  mode %d loop %u: %ld connections\n", (int)mode, i, c);
        assert_true(c > 0); /* every loop serves some */
        total += c;
    }
    assert_int_equal(total, N);
    assert_int_equal(lc_group_server_connections(gs, 9), LC_EINVAL);
    assert_int_equal(lc_group_server_close(gs), 0);
    /* Closed: new connections are refused; accepted ones still echo. */
    assert_int_equal(connect_to(port), -ECONNREFUSED);
    assert_int_equal(write(conns[0], "z", 1), 1);
    char z;
    assert_int_equal(read(conns[0], &z, 1), 1);
    for (int i = 0; i < N; i++)
        close(conns[i]);
    assert_int_equal(lc_group_server_free(gs), 0);
    assert_int_equal(lc_group_free(g), 0);
}

static void test_group_server_reuseport_200_connections(void **state)
{
    (void)state;
    serve_200(LC_GROUP_SERVER_REUSEPORT);
}

static void test_group_server_handoff_200_connections(void **state)
{
    (void)state;
    serve_200(LC_GROUP_SERVER_HANDOFF);
}

static void test_group_server_bad_arguments(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = (lc_group_server_t *)1;
    assert_int_equal(lc_group_create_server(g, NULL, NULL, NULL, &gs), LC_EINVAL);
    assert_null(gs);
    assert_int_equal(lc_group_create_server(g, echo_factory, NULL,
                                            &(lc_group_server_opts_t){.host = "not-an-address"},
                                            &gs),
                     LC_EINVAL);
    assert_int_equal(lc_group_create_server(g, echo_factory, NULL,
                                            &(lc_group_server_opts_t){.port = 70000}, &gs),
                     LC_EINVAL);
    /* IPv6, port chosen by the kernel, shared by both sockets. */
    assert_int_equal(lc_group_create_server(g, echo_factory, NULL,
                                            &(lc_group_server_opts_t){.host = "::1"}, &gs),
                     0);
    assert_true(lc_group_server_port(gs) > 0);
    assert_int_equal(lc_group_server_close(NULL), LC_EINVAL);
    assert_int_equal(lc_group_server_free(NULL), LC_EINVAL);
    /* Free closes a server that is still open. */
    assert_int_equal(lc_group_server_free(gs), 0);
    assert_int_equal(lc_group_free(g), 0);
}

/* ---- Closing under a connect flood ---------------------------------------------------------- */

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

/* Client threads connect to port (0: idle) in a loop until stop; each connection is reset at
 * once (SO_LINGER 0: no TIME_WAIT left behind, so thousands of them do not use up the ports). */
typedef struct {
    _Atomic int port;
    _Atomic bool stop;
    _Atomic long connects;
} flood_t;

static void *flood_thread(void *arg)
{
    flood_t *f = arg;
    while (!atomic_load(&f->stop)) {
        int port = atomic_load(&f->port);
        if (port == 0) {
            sleep_ms(1);
            continue;
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            sleep_ms(1);
            continue;
        }
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
            atomic_fetch_add(&f->connects, 1);
        else
            sched_yield(); /* refused: the server is between two iterations */
        close(fd);
    }
    return NULL;
}

enum { FLOOD_THREADS = 3 };

static void flood_start(flood_t *f, pthread_t *th)
{
    atomic_init(&f->port, 0);
    atomic_init(&f->stop, false);
    atomic_init(&f->connects, 0);
    for (int i = 0; i < FLOOD_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, flood_thread, f), 0);
}

static void flood_stop(flood_t *f, pthread_t *th)
{
    atomic_store(&f->stop, true);
    for (int i = 0; i < FLOOD_THREADS; i++)
        pthread_join(th[i], NULL);
}

/* Waits until the flood made `more` connections to the current port (or a second passed). */
static void flood_wait(flood_t *f, long more)
{
    long target = atomic_load(&f->connects) + more;
    double deadline = now_s() + 1.0;
    while (atomic_load(&f->connects) < target && now_s() < deadline)
        sched_yield();
}

/* Issue 11: hand-offs posted by loop 0 travel in other lanes than the close's messages, so the
 * server used to be freed with hand-offs still queued, which then read it (ASan: use after free).
 * 50 servers, each closed while connections pour in. */
static void test_group_server_handoff_close_under_connect_flood(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 4, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    flood_t f;
    pthread_t th[FLOOD_THREADS];
    flood_start(&f, th);
    double start = now_s();
    int iters = 0;
    for (; iters < 50 && now_s() - start < 20.0; iters++) {
        lc_group_server_t *gs = NULL;
        assert_int_equal(
            lc_group_create_server(g, echo_factory, NULL,
                                   &(lc_group_server_opts_t){.host = "127.0.0.1",
                                                             .backlog = 512,
                                                             .mode = LC_GROUP_SERVER_HANDOFF},
                                   &gs),
            0);
        atomic_store(&f.port, lc_group_server_port(gs));
        flood_wait(&f, 16);
        assert_int_equal(lc_group_server_close(gs), 0);
        assert_int_equal(lc_group_server_free(gs), 0);
        atomic_store(&f.port, 0);
    }
    flood_stop(&f, th);
    print_message("  %d servers closed under %ld connects\n", iters,
                  (long)atomic_load(&f.connects));
    assert_int_equal(lc_group_free(g), 0);
}

/* Group stopped while connections pour in (hand-offs queued on stopped loops), then the server
 * closed: close must not wait for loops that no longer run (it used to wait forever), and
 * lc_group_free() releases the hand-offs and the servers (ASan: no leak, no use after free). */
static void test_group_server_handoff_close_after_stop(void **state)
{
    (void)state;
    flood_t f;
    pthread_t th[FLOOD_THREADS];
    flood_start(&f, th);
    for (int iter = 0; iter < 10; iter++) {
        lc_group_t *g = NULL;
        assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 3, .unpinned = true}), 0);
        assert_int_equal(lc_group_start(g), 0);
        lc_group_server_t *gs = NULL;
        assert_int_equal(
            lc_group_create_server(g, echo_factory, NULL,
                                   &(lc_group_server_opts_t){.host = "127.0.0.1",
                                                             .backlog = 512,
                                                             .mode = LC_GROUP_SERVER_HANDOFF},
                                   &gs),
            0);
        atomic_store(&f.port, lc_group_server_port(gs));
        flood_wait(&f, 16);
        assert_int_equal(lc_group_stop(g), 0);
        if (iter % 2 == 0)
            assert_int_equal(lc_group_join(g), 0);
        assert_int_equal(lc_group_server_close(gs), 0);
        assert_int_equal(lc_group_server_free(gs), 0);
        atomic_store(&f.port, 0);
        assert_int_equal(lc_group_free(g), 0);
    }
    flood_stop(&f, th);
}

/* ---- wait_closed and active counts across loops --------------------------------------------- */

typedef struct {
    lc_group_server_t *gs;
    lc_future_t *fut;
    lc_loop_t *owner;
    _Atomic bool resolved;
    _Atomic bool on_owner; /* the done callback ran on the owner's thread */
} waiter_t;

static void waiter_done(lc_future_t *fut, void *arg)
{
    waiter_t *w = arg;
    lc_loop_t *running = NULL;
    lc_get_running_loop(&running);
    atomic_store(&w->on_owner, running == w->owner && lc_future_result(fut, NULL) == 0);
    atomic_store(&w->resolved, true);
}

static int waiter_register(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    waiter_t *w = arg;
    w->owner = loop;
    int r = lc_group_server_wait_closed(w->gs, &w->fut);
    if (r == 0)
        r = lc_future_add_done_callback(w->fut, waiter_done, w);
    return r;
}

static int waiter_is_done(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    *result = (void *)(intptr_t)lc_future_done(((waiter_t *)arg)->fut);
    return 0;
}

static int waiter_release(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    (void)result;
    lc_future_unref(((waiter_t *)arg)->fut);
    return 0;
}

static bool waiter_future_done(lc_group_t *g, waiter_t *w)
{
    void *res = NULL;
    assert_int_equal(lc_group_submit_wait(g, 0, waiter_is_done, w, &res), 0);
    return res != NULL;
}

static void echo_once(int fd)
{
    assert_int_equal(write(fd, "ping", 4), 4);
    char buf[4];
    size_t got = 0;
    while (got < sizeof(buf)) {
        ssize_t k = read(fd, buf + got, sizeof(buf) - got);
        assert_true(k > 0);
        got += (size_t)k;
    }
    assert_memory_equal(buf, "ping", 4);
}

/* Polls lc_group_server_active(gs, index) until it equals want (5 s at most). */
static void wait_active(lc_group_server_t *gs, unsigned index, long want)
{
    double deadline = now_s() + 5.0;
    long a;
    while ((a = lc_group_server_active(gs, index)) != want && now_s() < deadline)
        sleep_ms(2);
    assert_int_equal(a, want);
}

static void wait_resolved(waiter_t *w)
{
    double deadline = now_s() + 5.0;
    while (!atomic_load(&w->resolved) && now_s() < deadline)
        sleep_ms(2);
    assert_true(atomic_load(&w->resolved));
    assert_true(atomic_load(&w->on_owner));
}

/* Two loops, hand-off: the second connection lives on loop 1. wait_closed (a future of loop 0)
 * must stay pending after the close while that connection is open, and resolve, on loop 0's
 * thread, once the client hangs up. */
static void test_group_server_handoff_wait_closed_counts_handed_connections(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = NULL;
    assert_int_equal(
        lc_group_create_server(
            g, echo_factory, NULL,
            &(lc_group_server_opts_t){.host = "127.0.0.1", .mode = LC_GROUP_SERVER_HANDOFF}, &gs),
        0);
    int port = lc_group_server_port(gs);
    int a = connect_to(port); /* handed to loop 0 */
    assert_true(a >= 0);
    echo_once(a);
    int b = connect_to(port); /* handed to loop 1 */
    assert_true(b >= 0);
    echo_once(b);
    assert_int_equal(lc_group_server_connections(gs, 0), 1);
    assert_int_equal(lc_group_server_connections(gs, 1), 1);
    assert_int_equal(lc_group_server_active(gs, 0), 1);
    assert_int_equal(lc_group_server_active(gs, 1), 1);
    assert_int_equal(lc_group_server_active(gs, 2), LC_EINVAL);

    waiter_t w = {.gs = gs};
    assert_int_equal(lc_group_submit_wait(g, 0, waiter_register, &w, NULL), 0);
    close(a);
    wait_active(gs, 0, 0);
    assert_int_equal(lc_group_server_active(gs, 1), 1);

    assert_int_equal(lc_group_server_close(gs), 0);
    assert_int_equal(connect_to(port), -ECONNREFUSED);
    sleep_ms(100);
    assert_false(atomic_load(&w.resolved));
    assert_false(waiter_future_done(g, &w));
    echo_once(b); /* still served by loop 1 */
    assert_false(waiter_future_done(g, &w));

    close(b);
    wait_resolved(&w);
    assert_int_equal(lc_group_submit_wait(g, 0, waiter_release, &w, NULL), 0);
    assert_int_equal(lc_group_server_free(gs), 0);
    assert_int_equal(lc_group_free(g), 0);
}

/* Reuse-port, no connection: wait_closed resolves with the close, for a future of either loop. */
static void test_group_server_reuseport_wait_closed_idle(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = NULL;
    assert_int_equal(lc_group_create_server(g, echo_factory, NULL,
                                            &(lc_group_server_opts_t){.host = "127.0.0.1"}, &gs),
                     0);
    lc_future_t *fut = (lc_future_t *)1;
    assert_int_equal(lc_group_server_wait_closed(gs, &fut), LC_ENORUNNINGLOOP);
    assert_null(fut);
    assert_int_equal(lc_group_server_wait_closed(NULL, &fut), LC_EINVAL);
    waiter_t w0 = {.gs = gs}, w1 = {.gs = gs};
    assert_int_equal(lc_group_submit_wait(g, 0, waiter_register, &w0, NULL), 0);
    assert_int_equal(lc_group_submit_wait(g, 1, waiter_register, &w1, NULL), 0);
    assert_int_equal(lc_group_server_close(gs), 0);
    wait_resolved(&w0);
    wait_resolved(&w1);
    assert_int_equal(lc_group_submit_wait(g, 0, waiter_release, &w0, NULL), 0);
    assert_int_equal(lc_group_submit_wait(g, 1, waiter_release, &w1, NULL), 0);
    assert_int_equal(lc_group_server_free(gs), 0);
    assert_int_equal(lc_group_free(g), 0);
}

/* asyncio's order, close() then wait_closed(), then free: hand-off mode, one connection on each
 * loop. Closing keeps gs usable (port, sockets, a second close; the counters say LC_ECLOSED);
 * a wait_closed asked for after the close stays pending while a connection is open and resolves
 * on its own loop once the last one goes; one asked for after that resolves at once; the free
 * leaves both futures valid (ASan: no leak, no use after free). */
static void test_group_server_close_then_wait_closed_then_free(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = NULL;
    assert_int_equal(
        lc_group_create_server(
            g, echo_factory, NULL,
            &(lc_group_server_opts_t){.host = "127.0.0.1", .mode = LC_GROUP_SERVER_HANDOFF}, &gs),
        0);
    int port = lc_group_server_port(gs);
    int a = connect_to(port); /* handed to loop 0 */
    assert_true(a >= 0);
    echo_once(a);
    int b = connect_to(port); /* handed to loop 1 */
    assert_true(b >= 0);
    echo_once(b);

    assert_int_equal(lc_group_server_close(gs), 0);
    assert_int_equal(lc_group_server_close(gs), 0); /* idempotent */
    assert_int_equal(connect_to(port), -ECONNREFUSED);
    assert_int_equal(lc_group_server_port(gs), port);
    size_t n = 4;
    int fds[4];
    assert_int_equal(lc_group_server_sockets(gs, fds, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(lc_group_server_active(gs, 1), LC_ECLOSED);
    assert_int_equal(lc_group_server_connections(gs, 0), LC_ECLOSED);

    /* Asked for after the close, on loop 1 (where b lives). */
    waiter_t w = {.gs = gs};
    assert_int_equal(lc_group_submit_wait(g, 1, waiter_register, &w, NULL), 0);
    close(a);
    sleep_ms(100);
    assert_false(atomic_load(&w.resolved));
    echo_once(b); /* still served by loop 1 */
    assert_false(atomic_load(&w.resolved));
    close(b);
    wait_resolved(&w);

    /* Drained: a later wait_closed resolves at once. */
    waiter_t w2 = {.gs = gs};
    assert_int_equal(lc_group_submit_wait(g, 0, waiter_register, &w2, NULL), 0);
    wait_resolved(&w2);

    assert_int_equal(lc_group_server_free(gs), 0);
    assert_int_equal(lc_group_submit_wait(g, 1, waiter_release, &w, NULL), 0);
    assert_int_equal(lc_group_submit_wait(g, 0, waiter_release, &w2, NULL), 0);
    assert_int_equal(lc_group_free(g), 0);
}

/* The group is freed with a handed-off connection still open and wait_closed pending: the loops'
 * close drains the server and releases the waiter (it stays pending: its loop is closed), and
 * everything is freed (ASan). */
static void test_group_server_wait_closed_pending_at_group_free(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = NULL;
    assert_int_equal(
        lc_group_create_server(
            g, echo_factory, NULL,
            &(lc_group_server_opts_t){.host = "127.0.0.1", .mode = LC_GROUP_SERVER_HANDOFF}, &gs),
        0);
    int port = lc_group_server_port(gs);
    int a = connect_to(port), b = connect_to(port);
    assert_true(a >= 0 && b >= 0);
    echo_once(a);
    echo_once(b);
    waiter_t w = {.gs = gs};
    assert_int_equal(lc_group_submit_wait(g, 0, waiter_register, &w, NULL), 0);
    assert_int_equal(lc_group_server_close(gs), 0);
    assert_int_equal(lc_group_server_free(gs), 0);
    assert_int_equal(lc_group_free(g), 0);
    /* Every loop thread is gone: the future (valid until its last reference goes) is ours. */
    assert_false(atomic_load(&w.resolved));
    assert_false(lc_future_done(w.fut));
    lc_future_unref(w.fut);
    close(a);
    close(b);
}

/* lc_group_submit_wait: runs fn on the loop while it runs; once the loop's thread has left it,
 * returns LC_ECLOSED at once (lc_loop_submit_wait would wait until the loop is closed) and fn
 * never runs; the message left queued is released by lc_group_free (ASan: no leak). */
static int count_call(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    atomic_fetch_add((_Atomic int *)arg, 1);
    *result = (void *)(intptr_t)42;
    return 7;
}

static void test_group_submit_wait_does_not_wait_for_stopped_loops(void **state)
{
    (void)state;
    _Atomic int calls = 0;
    void *res = NULL;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    assert_int_equal(lc_group_submit_wait(g, 2, count_call, (void *)&calls, NULL), LC_EINVAL);
    assert_int_equal(lc_group_submit_wait(NULL, 0, count_call, (void *)&calls, NULL), LC_EINVAL);
    assert_int_equal(lc_group_start(g), 0);
    assert_int_equal(lc_group_submit_wait(g, 1, count_call, (void *)&calls, &res), 7);
    assert_int_equal((intptr_t)res, 42);
    assert_int_equal(atomic_load(&calls), 1);
    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_join(g), 0);
    assert_int_equal(lc_group_submit_wait(g, 1, count_call, (void *)&calls, &res), LC_ECLOSED);
    assert_null(res);
    /* Creating a server on a stopped group fails instead of waiting (both modes). */
    lc_group_server_t *gs = (lc_group_server_t *)1;
    assert_int_equal(lc_group_create_server(g, echo_factory, NULL,
                                            &(lc_group_server_opts_t){.host = "127.0.0.1"}, &gs),
                     LC_EINVALIDSTATE);
    assert_null(gs);
    assert_int_equal(
        lc_group_create_server(
            g, echo_factory, NULL,
            &(lc_group_server_opts_t){.host = "127.0.0.1", .mode = LC_GROUP_SERVER_HANDOFF}, &gs),
        LC_EINVALIDSTATE);
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(atomic_load(&calls), 1);

    /* A group stopped before it started: its loops never run. */
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 1, .unpinned = true}), 0);
    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_submit_wait(g, 0, count_call, (void *)&calls, NULL), LC_ECLOSED);
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(atomic_load(&calls), 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_server_reuseport_200_connections),
        cmocka_unit_test(test_group_server_handoff_200_connections),
        cmocka_unit_test(test_group_server_bad_arguments),
        cmocka_unit_test(test_group_server_handoff_close_under_connect_flood),
        cmocka_unit_test(test_group_server_handoff_close_after_stop),
        cmocka_unit_test(test_group_server_handoff_wait_closed_counts_handed_connections),
        cmocka_unit_test(test_group_server_reuseport_wait_closed_idle),
        cmocka_unit_test(test_group_server_close_then_wait_closed_then_free),
        cmocka_unit_test(test_group_server_wait_closed_pending_at_group_free),
        cmocka_unit_test(test_group_submit_wait_does_not_wait_for_stopped_loops),
    };
    return cmocka_run_group_tests_name("group_server", tests, NULL, NULL);
}
