/* Group servers: one host:port on every loop of a 4-loop group, in both modes; 200 connections
 * must all be served and every loop must serve some. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static void serve_200(lc_group_server_mode mode)
{
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts){.nloops = 4, .no_pin = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = NULL;
    assert_int_equal(
        lc_group_create_server(g, echo_factory, NULL,
                               &(lc_group_server_opts){.host = "127.0.0.1", .mode = mode}, &gs),
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
    assert_int_equal(lc_group_create(&g, &(lc_group_opts){.nloops = 2, .no_pin = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = (lc_group_server_t *)1;
    assert_int_equal(lc_group_create_server(g, NULL, NULL, NULL, &gs), LC_EINVAL);
    assert_null(gs);
    assert_int_equal(lc_group_create_server(g, echo_factory, NULL,
                                            &(lc_group_server_opts){.host = "not-an-address"}, &gs),
                     LC_EINVAL);
    assert_int_equal(
        lc_group_create_server(g, echo_factory, NULL, &(lc_group_server_opts){.port = 70000}, &gs),
        LC_EINVAL);
    /* IPv6, port chosen by the kernel, shared by both sockets. */
    assert_int_equal(
        lc_group_create_server(g, echo_factory, NULL, &(lc_group_server_opts){.host = "::1"}, &gs),
        0);
    assert_true(lc_group_server_port(gs) > 0);
    assert_int_equal(lc_group_server_close(gs), 0);
    assert_int_equal(lc_group_free(g), 0);
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
    assert_int_equal(lc_group_create(&g, &(lc_group_opts){.nloops = 2, .no_pin = true}), 0);
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
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(atomic_load(&calls), 1);

    /* A group stopped before it started: its loops never run. */
    assert_int_equal(lc_group_create(&g, &(lc_group_opts){.nloops = 1, .no_pin = true}), 0);
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
        cmocka_unit_test(test_group_submit_wait_does_not_wait_for_stopped_loops),
    };
    return cmocka_run_group_tests_name("group_server", tests, NULL, NULL);
}
