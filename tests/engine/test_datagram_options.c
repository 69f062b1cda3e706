/* Datagram endpoint options: reuse_address (SO_REUSEADDR: a second endpoint binds an address in
 * use only when both ask for it), the socket options refused with sock, as asyncio refuses them,
 * and Unix datagram endpoints made without a local path, which are bound to an abstract name of
 * the kernel's choosing so that their peers can answer them. */
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/engine/datagram_helpers.h"
#include "tests/support/loop_fixture.h"

static int sockopt(lc_datagram_transport_t *t, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(lc_datagram_transport_get_fd(t), SOL_SOCKET, name, &v, &len), 0);
    return v;
}

static void close_and_wait(lc_loop_t *loop, lc_datagram_transport_t *t, dg_client_t *c)
{
    lc_datagram_transport_close(t);
    assert_true(dg_run_until_int(loop, &c->lost, 1, 10));
    assert_int_equal(c->lost_err, 0);
}

/* reuse_address sets SO_REUSEADDR before the bind (off by default). On Linux that lets a second
 * UDP socket bind the same address and port when both set it; if either did not, the second
 * bind fails the future with -EADDRINUSE. */
static void test_datagram_reuse_address(void **state)
{
    lc_loop_t *loop = *state;
    int err = 0;
    dg_client_t a = {.loop = loop};
    lc_datagram_transport_t *ta =
        dg_open(loop, dg_client_factory, &a,
                &(lc_datagram_opts_t){.local_host = "127.0.0.1", .reuse_address = true}, &err);
    assert_int_equal(err, 0);
    assert_non_null(ta);
    assert_int_equal(sockopt(ta, SO_REUSEADDR), 1);
    assert_int_equal(sockopt(ta, SO_REUSEPORT), 0);
    int port = dg_port(ta);
    assert_true(port > 0);

    /* The default: no SO_REUSEADDR, and the address in use is refused. */
    dg_client_t b = {.loop = loop};
    assert_null(dg_open(loop, dg_client_factory, &b,
                        &(lc_datagram_opts_t){.local_host = "127.0.0.1", .local_port = port},
                        &err));
    assert_int_equal(err, -EADDRINUSE);
    assert_int_equal(b.made, 0);

    /* Both ask for it: the second bind succeeds, on the same port. */
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *tc = dg_open(
        loop, dg_client_factory, &c,
        &(lc_datagram_opts_t){.local_host = "127.0.0.1", .local_port = port, .reuse_address = true},
        &err);
    assert_int_equal(err, 0);
    assert_non_null(tc);
    assert_int_equal(dg_port(tc), port);
    assert_int_equal(sockopt(tc, SO_REUSEADDR), 1);

    /* A socket that asked for it does not open the port to one that did not. */
    dg_client_t d = {.loop = loop};
    lc_datagram_transport_t *td = dg_open(loop, dg_client_factory, &d,
                                          &(lc_datagram_opts_t){.local_host = "127.0.0.1"}, &err);
    assert_non_null(td);
    assert_int_equal(sockopt(td, SO_REUSEADDR), 0);
    int dport = dg_port(td);
    dg_client_t e = {.loop = loop};
    assert_null(dg_open(loop, dg_client_factory, &e,
                        &(lc_datagram_opts_t){
                            .local_host = "127.0.0.1", .local_port = dport, .reuse_address = true},
                        &err));
    assert_int_equal(err, -EADDRINUSE);

    close_and_wait(loop, ta, &a);
    close_and_wait(loop, tc, &c);
    close_and_wait(loop, td, &d);
}

/* With sock, the options that shape a new socket are refused (asyncio: "socket modifier keyword
 * arguments can not be used when sock is specified"): the call fails, no future. */
static void test_datagram_sock_refuses_socket_options(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    const lc_datagram_opts_t bad[] = {
        {.use_sock = true, .sock = sv[0], .reuse_address = true},
        {.use_sock = true, .sock = sv[0], .reuse_port = true},
        {.use_sock = true, .sock = sv[0], .allow_broadcast = true},
        {.use_sock = true, .sock = sv[0], .proto = IPPROTO_UDP},
        {.use_sock = true, .sock = sv[0], .flags = AI_PASSIVE},
        {.use_sock = true, .sock = sv[0], .family = AF_UNIX},
    };
    dg_client_t c = {.loop = loop};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lc_future_t *fut = NULL;
        assert_int_equal(
            lc_loop_create_datagram_endpoint(loop, dg_client_factory, &c, &bad[i], &fut),
            LC_EINVAL);
        assert_null(fut);
    }
    assert_int_equal(c.made, 0);
    /* The same socket alone is taken. */
    int err = 0;
    lc_datagram_transport_t *t = dg_open(
        loop, dg_client_factory, &c, &(lc_datagram_opts_t){.use_sock = true, .sock = sv[0]}, &err);
    assert_int_equal(err, 0);
    assert_non_null(t);
    close_and_wait(loop, t, &c);
    close(sv[0]);
    close(sv[1]);
}

/* A server that records the sender of each datagram and echoes it back when it has one. */
static void record_and_echo(void *ctx, lc_datagram_transport_t *t, const char *data, size_t len,
                            const struct sockaddr *addr, socklen_t addrlen)
{
    (void)ctx;
    if (addr != NULL)
        lc_datagram_transport_sendto(t, data, len, addr, addrlen);
}

/* The client's own address, as getsockname says: an autobound abstract name ('\0' and five hex
 * digits). */
static void assert_autobound(lc_datagram_transport_t *t)
{
    struct sockaddr_un sun;
    socklen_t len = sizeof(sun);
    assert_int_equal(lc_datagram_transport_get_sockname(t, (struct sockaddr *)&sun, &len), 0);
    assert_int_equal(sun.sun_family, AF_UNIX);
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 6);
    assert_int_equal(sun.sun_path[0], '\0');
}

/* A Unix datagram client with only remote_path (a connected endpoint) or only family AF_UNIX (it
 * sends with an address) gets answers: the server sees its (abstract, autobound) address. */
static void unix_client_is_answered(lc_loop_t *loop, const char *spath, size_t slen)
{
    dg_client_t s = {.loop = loop, .on_datagram = record_and_echo};
    int err = 0;
    lc_datagram_transport_t *srv =
        dg_open(loop, dg_client_factory, &s,
                &(lc_datagram_opts_t){.local_path = spath, .local_path_len = slen}, &err);
    assert_int_equal(err, 0);
    assert_non_null(srv);

    /* Connected, no local path. */
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t =
        dg_open(loop, dg_client_factory, &c,
                &(lc_datagram_opts_t){.remote_path = spath, .remote_path_len = slen}, &err);
    assert_int_equal(err, 0);
    assert_non_null(t);
    assert_int_equal(lc_datagram_transport_sendto(t, "hello", 5, NULL, 0), 0);
    assert_true(dg_run_until(loop, &c.received, 1, 30));
    assert_autobound(t);
    assert_int_equal(s.received, 1);
    assert_true(s.last_addrlen > offsetof(struct sockaddr_un, sun_path));
    assert_int_equal(s.last_addr.ss_family, AF_UNIX);
    assert_int_equal(c.last_len, 5);
    assert_memory_equal(c.last, "hello", 5);
    /* The address the server saw is the client's own. */
    struct sockaddr_un own;
    socklen_t ownlen = sizeof(own);
    assert_int_equal(lc_datagram_transport_get_sockname(t, (struct sockaddr *)&own, &ownlen), 0);
    assert_int_equal(s.last_addrlen, ownlen);
    assert_memory_equal(&s.last_addr, &own, ownlen);

    /* Unconnected, family AF_UNIX alone: sends to the server's address, and is answered. */
    dg_client_t u = {.loop = loop};
    lc_datagram_transport_t *ut =
        dg_open(loop, dg_client_factory, &u, &(lc_datagram_opts_t){.family = AF_UNIX}, &err);
    assert_int_equal(err, 0);
    assert_non_null(ut);
    struct sockaddr_un to;
    socklen_t tolen = sizeof(to);
    assert_int_equal(lc_datagram_transport_get_sockname(srv, (struct sockaddr *)&to, &tolen), 0);
    assert_int_equal(lc_datagram_transport_sendto(ut, "again", 5, (struct sockaddr *)&to, tolen),
                     0);
    assert_true(dg_run_until(loop, &u.received, 1, 30));
    assert_int_equal(u.last_len, 5);
    assert_memory_equal(u.last, "again", 5);
    assert_autobound(ut);
    assert_int_equal(s.received, 2);

    assert_int_equal(s.errors, 0);
    assert_int_equal(c.errors, 0);
    assert_int_equal(u.errors, 0);
    close_and_wait(loop, t, &c);
    close_and_wait(loop, ut, &u);
    close_and_wait(loop, srv, &s);
}

static void test_datagram_unix_client_without_local_path_is_answered(void **state)
{
    lc_loop_t *loop = *state;
    char sp[64];
    snprintf(sp, sizeof(sp), "/tmp/lc-dg-auto-%d.sock", (int)getpid());
    unix_client_is_answered(loop, sp, 0);
    unlink(sp);
    char as[64];
    int n = snprintf(as, sizeof(as), "%clc-dg-auto-%d", '\0', (int)getpid());
    unix_client_is_answered(loop, as, (size_t)n);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_datagram_reuse_address),
        T(test_datagram_sock_refuses_socket_options),
        T(test_datagram_unix_client_without_local_path_is_answered),
#undef T
    };
    return cmocka_run_group_tests_name("datagram_options", tests, NULL, NULL);
}
