/* Datagram endpoints: echo at the edge sizes over IPv4 and IPv6, empty datagrams, too-big
 * datagrams, address checks, ICMP errors on a connected endpoint, broadcast, Unix datagram paths
 * and abstract names, queueing with flow control, truncation, GSO batches, close / abort /
 * loop close. The load tests (200 clients, a 10,000-datagram burst, asyncio) are in
 * test_datagram_load.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/engine/datagram_helpers.h"
#include "tests/support/loop_fixture.h"

static lc_datagram_transport_t *echo_server(lc_loop_t *loop, dg_echo_t *e, const char *host)
{
    int err = 0;
    lc_datagram_transport_t *t =
        dg_open(loop, dg_echo_factory, e, &(lc_datagram_opts_t){.local_host = host}, &err);
    assert_int_equal(err, 0);
    assert_non_null(t);
    assert_int_equal(e->made, 1);
    return t;
}

static void echo_sizes(lc_loop_t *loop, const char *host, const size_t *sizes, size_t n,
                       size_t too_big)
{
    dg_echo_t e = {0};
    lc_datagram_transport_t *srv = echo_server(loop, &e, host);
    dg_client_t c = {.loop = loop};
    int err = 0;
    lc_datagram_transport_t *t =
        dg_open(loop, dg_client_factory, &c,
                &(lc_datagram_opts_t){.remote_host = host, .remote_port = dg_port(srv)}, &err);
    assert_int_equal(err, 0);
    assert_non_null(t);
    static char buf[70000];
    for (size_t i = 0; i < n; i++) {
        dg_fill(buf, sizes[i], (unsigned)i + 7);
        long before = c.received;
        assert_int_equal(lc_datagram_transport_sendto(t, buf, sizes[i], NULL, 0), 0);
        assert_true(dg_run_until(loop, &c.received, before + 1, 30));
        assert_int_equal(c.last_len, sizes[i]);
        if (sizes[i] > 0)
            assert_memory_equal(c.last, buf, sizes[i]);
    }
    /* One byte over the limit fails that call only. */
    assert_int_equal(lc_datagram_transport_sendto(t, buf, too_big, NULL, 0), -EMSGSIZE);
    assert_false(lc_datagram_transport_is_closing(t));
    long before = c.received;
    assert_int_equal(lc_datagram_transport_sendto(t, "after", 5, NULL, 0), 0);
    assert_true(dg_run_until(loop, &c.received, before + 1, 30));
    assert_int_equal(c.last_len, 5);
    assert_int_equal(c.errors, 0);
    assert_int_equal(e.received, (long)n + 1);
    lc_datagram_transport_close(t);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &e.lost, 1, 10));
    assert_int_equal(c.lost_err, 0);
    assert_int_equal(e.lost_err, 0);
}

static void test_datagram_echo_sizes_ipv4(void **state)
{
    static const size_t sizes[] = {0, 1, 1472, 1473, 8192, 65507};
    echo_sizes(*state, "127.0.0.1", sizes, 6, 65508);
}

static void test_datagram_echo_sizes_ipv6(void **state)
{
    static const size_t sizes[] = {0, 1, 1472, 1473, 8192, 65527};
    echo_sizes(*state, "::1", sizes, 6, 65528);
}

/* Unconnected endpoints: sendto needs an address; peername is ENOTCONN. Connected ones: NULL or
 * the peer's own address, nothing else; the accessors. */
static void test_datagram_addresses_and_accessors(void **state)
{
    lc_loop_t *loop = *state;
    dg_echo_t e = {0};
    lc_datagram_transport_t *srv = echo_server(loop, &e, "127.0.0.1");
    int port = dg_port(srv);
    assert_true(port > 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(lc_datagram_transport_get_peername(srv, (struct sockaddr *)&ss, &len),
                     -ENOTCONN);
    assert_true(lc_datagram_transport_get_fd(srv) >= 0);
    assert_ptr_equal(lc_datagram_transport_get_loop(srv), loop);
    void *user = NULL;
    assert_ptr_equal(lc_datagram_transport_get_protocol(srv, &user), &dg_echo_proto);
    assert_ptr_equal(user, &e);
    assert_int_equal(lc_datagram_transport_sendto(srv, "x", 1, NULL, 0), LC_EINVAL);

    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t =
        dg_open(loop, dg_client_factory, &c,
                &(lc_datagram_opts_t){.remote_host = "127.0.0.1", .remote_port = port}, NULL);
    assert_non_null(t);
    len = sizeof(ss);
    assert_int_equal(lc_datagram_transport_get_peername(t, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), port);
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &peer.sin_addr);
    struct sockaddr_in other = peer;
    other.sin_port = htons((uint16_t)(port == 65535 ? 1 : port + 1));
    assert_int_equal(
        lc_datagram_transport_sendto(t, "a", 1, (struct sockaddr *)&other, sizeof(other)),
        LC_EINVAL);
    assert_int_equal(
        lc_datagram_transport_sendto(t, "b", 1, (struct sockaddr *)&peer, sizeof(peer)), 0);
    assert_true(dg_run_until(loop, &c.received, 1, 30));
    assert_int_equal(c.last_len, 1);
    assert_int_equal(c.last[0], 'b');
    /* The echo's sender address is the server's. */
    assert_int_equal(ntohs(((struct sockaddr_in *)&c.last_addr)->sin_port), port);
    assert_int_equal(lc_datagram_transport_sendto(t, NULL, 1, NULL, 0), LC_EINVAL);

    /* Bad options. */
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_datagram_endpoint(loop, dg_client_factory, &c, NULL, &fut),
                     LC_EINVAL); /* no address, no family */
    assert_null(fut);
    assert_int_equal(lc_loop_create_datagram_endpoint(
                         loop, dg_client_factory, &c,
                         &(lc_datagram_opts_t){.local_host = "127.0.0.1", .local_path = "/x"},
                         &fut),
                     LC_EINVAL);
    assert_int_equal(lc_loop_create_datagram_endpoint(
                         loop, dg_client_factory, &c,
                         &(lc_datagram_opts_t){.use_sock = true, .sock = 0, .local_port = 1}, &fut),
                     LC_EINVAL);
    assert_int_equal(lc_loop_create_datagram_endpoint(loop, dg_client_factory, &c,
                                                      &(lc_datagram_opts_t){.local_port = 70000},
                                                      &fut),
                     LC_EINVAL);
    /* A resolver failure fails the future. */
    int err = 0;
    assert_null(dg_open(
        loop, dg_client_factory, &c,
        &(lc_datagram_opts_t){.remote_host = "no-such-host.invalid", .remote_port = 9}, &err));
    assert_true(err < 0);
    /* No address but a family: an unbound socket that can send. */
    dg_client_t u = {.loop = loop};
    lc_datagram_transport_t *ut =
        dg_open(loop, dg_client_factory, &u, &(lc_datagram_opts_t){.family = AF_INET}, &err);
    assert_non_null(ut);
    long before = e.received;
    assert_int_equal(
        lc_datagram_transport_sendto(ut, "u", 1, (struct sockaddr *)&peer, sizeof(peer)), 0);
    assert_true(dg_run_until(loop, &u.received, 1, 30));
    assert_true(e.received > before);

    lc_datagram_transport_close(ut);
    lc_datagram_transport_close(t);
    lc_datagram_transport_close(srv);
    assert_int_equal(lc_datagram_transport_sendto(t, "c", 1, NULL, 0), LC_ECLOSED);
    assert_true(lc_datagram_transport_is_closing(t));
    assert_true(dg_run_until_int(loop, &e.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &u.lost, 1, 10));
}

/* local_addr and remote_addr together: bound where asked, connected to the peer. reuse_port:
 * two endpoints on one port; without it the second bind fails the future with -EADDRINUSE. */
static void test_datagram_local_and_remote_and_reuse_port(void **state)
{
    lc_loop_t *loop = *state;
    dg_echo_t e = {0};
    lc_datagram_transport_t *srv = echo_server(loop, &e, "127.0.0.1");
    dg_client_t c = {.loop = loop};
    int err = 0;
    lc_datagram_transport_t *t = dg_open(loop, dg_client_factory, &c,
                                         &(lc_datagram_opts_t){.local_host = "127.0.0.1",
                                                               .remote_host = "127.0.0.1",
                                                               .remote_port = dg_port(srv),
                                                               .family = AF_INET},
                                         &err);
    assert_int_equal(err, 0);
    assert_non_null(t);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(lc_datagram_transport_get_sockname(t, (struct sockaddr *)&sin, &len), 0);
    assert_int_equal(sin.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_true(ntohs(sin.sin_port) > 0);
    assert_int_equal(lc_datagram_transport_sendto(t, "x", 1, NULL, 0), 0);
    assert_true(dg_run_until(loop, &c.received, 1, 30));

    dg_echo_t r1 = {0}, r2 = {0}, r3 = {0};
    lc_datagram_transport_t *a =
        dg_open(loop, dg_echo_factory, &r1,
                &(lc_datagram_opts_t){.local_host = "127.0.0.1", .reuse_port = true}, &err);
    assert_non_null(a);
    int port = dg_port(a);
    lc_datagram_transport_t *b = dg_open(
        loop, dg_echo_factory, &r2,
        &(lc_datagram_opts_t){.local_host = "127.0.0.1", .local_port = port, .reuse_port = true},
        &err);
    assert_int_equal(err, 0);
    assert_non_null(b);
    assert_int_equal(dg_port(b), port);
    assert_null(dg_open(loop, dg_echo_factory, &r3,
                        &(lc_datagram_opts_t){.local_host = "127.0.0.1", .local_port = port},
                        &err));
    assert_int_equal(err, -EADDRINUSE);
    assert_int_equal(r3.made, 0);
    lc_datagram_transport_close(a);
    lc_datagram_transport_close(b);
    lc_datagram_transport_close(t);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &r1.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &r2.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &e.lost, 1, 10));
}

static int refusing_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    (void)proto;
    (void)user;
    (*(int *)arg)++;
    return -EPERM;
}

/* A factory's refusal fails the future with its code; a future cancelled while resolving makes
 * no endpoint (and leaks nothing: ASan). */
static void test_datagram_factory_refusal_and_cancel(void **state)
{
    lc_loop_t *loop = *state;
    int calls = 0, err = 0;
    assert_null(dg_open(loop, refusing_factory, &calls,
                        &(lc_datagram_opts_t){.local_host = "127.0.0.1"}, &err));
    assert_int_equal(err, -EPERM);
    assert_int_equal(calls, 1);
    dg_client_t c = {.loop = loop};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_datagram_endpoint(
                         loop, dg_client_factory, &c,
                         &(lc_datagram_opts_t){.remote_host = "localhost", .remote_port = 9}, &fut),
                     0);
    assert_int_equal(lc_future_cancel(fut), 1);
    /* Let the resolver come back. */
    lc_handle_t *h = NULL;
    lc_loop_call_later(loop, 0.5, lc_test_stop_cb, loop, &h);
    lc_loop_run_forever(loop);
    lc_handle_unref(h);
    assert_true(lc_future_cancelled(fut));
    assert_int_equal(c.made, 0);
    lc_future_unref(fut);
}

/* A port with nobody on it: a free port, found by binding and closing a socket. */
static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct {
    int fd;
    lc_loop_t *loop;
} raw_echo_t;

/* ICMP port unreachable on a connected endpoint reaches error_received as -ECONNREFUSED; the
 * endpoint stays open and works once a peer appears on that port. */
static void test_datagram_icmp_error_keeps_endpoint_open(void **state)
{
    lc_loop_t *loop = *state;
    int port = free_udp_port();
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t =
        dg_open(loop, dg_client_factory, &c,
                &(lc_datagram_opts_t){.remote_host = "127.0.0.1", .remote_port = port}, NULL);
    assert_non_null(t);
    /* Each send may draw an ICMP error; a few tries ride out rate limits on a loaded host. */
    for (int i = 0; i < 20 && c.errors == 0; i++) {
        int r = lc_datagram_transport_sendto(t, "ping", 4, NULL, 0);
        assert_true(r == 0);
        dg_run_until_int(loop, &c.errors, 1, 0.5);
    }
    assert_true(c.errors >= 1);
    assert_int_equal(c.last_error, -ECONNREFUSED);
    assert_false(lc_datagram_transport_is_closing(t));
    assert_int_equal(c.lost, 0);

    /* A peer appears on that port: the same endpoint now talks to it. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(lc_datagram_transport_sendto(t, "hello", 5, NULL, 0), 0);
    char buf[16];
    struct sockaddr_in from;
    socklen_t flen = sizeof(from);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen), 5);
    assert_int_equal(sendto(fd, "world", 5, 0, (struct sockaddr *)&from, flen), 5);
    assert_true(dg_run_until(loop, &c.received, 1, 30));
    assert_int_equal(c.last_len, 5);
    assert_memory_equal(c.last, "world", 5);
    close(fd);
    lc_datagram_transport_abort(t);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_int_equal(c.lost_err, 0);
}

/* Sending to a broadcast address needs allow_broadcast (SO_BROADCAST): -EACCES without. */
static void test_datagram_broadcast_needs_allow_broadcast(void **state)
{
    lc_loop_t *loop = *state;
    struct sockaddr_in bc = {.sin_family = AF_INET, .sin_port = htons(9)};
    bc.sin_addr.s_addr = htonl(INADDR_BROADCAST);
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t =
        dg_open(loop, dg_client_factory, &c, &(lc_datagram_opts_t){.local_host = "0.0.0.0"}, NULL);
    assert_non_null(t);
    assert_int_equal(lc_datagram_transport_sendto(t, "b", 1, (struct sockaddr *)&bc, sizeof(bc)),
                     -EACCES);
    assert_false(lc_datagram_transport_is_closing(t));
    dg_client_t c2 = {.loop = loop};
    lc_datagram_transport_t *t2 =
        dg_open(loop, dg_client_factory, &c2,
                &(lc_datagram_opts_t){.local_host = "0.0.0.0", .allow_broadcast = true}, NULL);
    assert_non_null(t2);
    int one = 0;
    socklen_t len = sizeof(one);
    getsockopt(lc_datagram_transport_get_fd(t2), SOL_SOCKET, SO_BROADCAST, &one, &len);
    assert_int_equal(one, 1);
    /* Allowed now (a host with no route for it may still say ENETUNREACH, never EACCES). */
    assert_int_not_equal(
        lc_datagram_transport_sendto(t2, "b", 1, (struct sockaddr *)&bc, sizeof(bc)), -EACCES);
    lc_datagram_transport_close(t);
    lc_datagram_transport_close(t2);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &c2.lost, 1, 10));
}

static void unix_echo(lc_loop_t *loop, const char *spath, size_t slen, const char *cpath,
                      size_t clen)
{
    dg_echo_t e = {0};
    int err = 0;
    lc_datagram_transport_t *srv =
        dg_open(loop, dg_echo_factory, &e,
                &(lc_datagram_opts_t){.local_path = spath, .local_path_len = slen}, &err);
    assert_int_equal(err, 0);
    assert_non_null(srv);
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t = dg_open(loop, dg_client_factory, &c,
                                         &(lc_datagram_opts_t){.local_path = cpath,
                                                               .local_path_len = clen,
                                                               .remote_path = spath,
                                                               .remote_path_len = slen},
                                         &err);
    assert_int_equal(err, 0);
    assert_non_null(t);
    static const size_t sizes[] = {0, 1, 1473, 65507, 65536};
    static char buf[65536];
    for (size_t i = 0; i < 5; i++) {
        dg_fill(buf, sizes[i], (unsigned)i);
        long before = c.received;
        assert_int_equal(lc_datagram_transport_sendto(t, buf, sizes[i], NULL, 0), 0);
        assert_true(dg_run_until(loop, &c.received, before + 1, 30));
        assert_int_equal(c.last_len, sizes[i]);
        if (sizes[i] > 0)
            assert_memory_equal(c.last, buf, sizes[i]);
    }
    /* The server's own address, given explicitly, is the peer's: accepted. */
    struct sockaddr_un sun;
    socklen_t len = sizeof(sun);
    assert_int_equal(lc_datagram_transport_get_sockname(srv, (struct sockaddr *)&sun, &len), 0);
    assert_int_equal(lc_datagram_transport_sendto(t, "p", 1, (struct sockaddr *)&sun, len), 0);
    assert_true(dg_run_until(loop, &c.received, 6, 30));
    lc_datagram_transport_close(t);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &e.lost, 1, 10));
    assert_int_equal(e.errors, 0);
    assert_int_equal(c.errors, 0);
}

static void test_datagram_unix_path_and_abstract(void **state)
{
    lc_loop_t *loop = *state;
    char sp[64], cp[64];
    snprintf(sp, sizeof(sp), "/tmp/lc-dg-s-%d.sock", (int)getpid());
    snprintf(cp, sizeof(cp), "/tmp/lc-dg-c-%d.sock", (int)getpid());
    unix_echo(loop, sp, 0, cp, 0);
    /* The socket files stay after close; a new endpoint replaces the stale ones. */
    assert_int_equal(access(sp, F_OK), 0);
    unix_echo(loop, sp, 0, cp, 0);
    unlink(sp);
    unlink(cp);
    char as[64], ac[64];
    int n1 = snprintf(as, sizeof(as), "%clc-dg-s-%d", '\0', (int)getpid());
    int n2 = snprintf(ac, sizeof(ac), "%clc-dg-c-%d", '\0', (int)getpid());
    unix_echo(loop, as, (size_t)n1, ac, (size_t)n2);
}

/* A datagram longer than the receive buffer is dropped and reported, never cut; the next one
 * arrives whole. */
static void test_datagram_truncation_reported(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t = dg_open(
        loop, dg_client_factory, &c, &(lc_datagram_opts_t){.use_sock = true, .sock = sv[0]}, NULL);
    assert_non_null(t);
    close(sv[0]); /* the transport has its own */
    static char buf[100000];
    dg_fill(buf, sizeof(buf), 3);
    assert_int_equal(send(sv[1], buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    assert_int_equal(send(sv[1], buf, 100, 0), 100);
    assert_true(dg_run_until(loop, &c.received, 1, 30));
    assert_int_equal(c.errors, 1);
    assert_int_equal(c.last_error, LC_EDGRAMTRUNC);
    assert_string_not_equal(lc_strerror(LC_EDGRAMTRUNC), "unknown error");
    assert_int_equal(c.received, 1);
    assert_int_equal(c.last_len, 100);
    assert_memory_equal(c.last, buf, 100);
    close(sv[1]);
    lc_datagram_transport_close(t);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
}

/* What the socket does not take is queued in order; pause_writing over the high-water mark,
 * resume_writing at the low one once the peer reads; close() sends what is queued first. */
static void test_datagram_queue_flow_control_and_close_flush(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t = dg_open(
        loop, dg_client_factory, &c, &(lc_datagram_opts_t){.use_sock = true, .sock = sv[0]}, NULL);
    assert_non_null(t);
    close(sv[0]);
    assert_int_equal(lc_datagram_transport_set_write_buffer_limits(t, 4000, 1000), 0);
    size_t lo, hi;
    assert_int_equal(lc_datagram_transport_get_write_buffer_limits(t, &lo, &hi), 0);
    assert_int_equal(lo, 1000);
    assert_int_equal(hi, 4000);
    assert_int_equal(lc_datagram_transport_set_write_buffer_limits(t, 10, 20), LC_EINVAL);
    /* Nobody reads sv[1]: the socket fills and sendto starts queueing. */
    char d[500];
    int sent = 0;
    while (lc_datagram_transport_get_write_buffer_size(t) <= 4000 && sent < 100000) {
        dg_fill(d, sizeof(d), (unsigned)sent);
        memcpy(d, &sent, sizeof(sent));
        assert_int_equal(lc_datagram_transport_sendto(t, d, sizeof(d), NULL, 0), 0);
        sent++;
    }
    assert_true(sent < 100000);
    assert_int_equal(c.paused, 1);
    size_t queued = lc_datagram_transport_get_write_buffer_size(t);
    assert_true(queued > 4000);
    assert_int_equal(queued % sizeof(d), 0);
    /* An empty datagram queued behind them keeps its place. */
    assert_int_equal(lc_datagram_transport_sendto(t, "", 0, NULL, 0), 0);
    /* Read everything on the other side while the loop flushes; check the order. */
    int next = 0;
    bool got_empty = false;
    lc_datagram_transport_close(t); /* flushes first */
    assert_true(lc_datagram_transport_is_closing(t));
    for (int spins = 0; spins < 200000 && !got_empty; spins++) {
        char r[600];
        ssize_t n = recv(sv[1], r, sizeof(r), MSG_DONTWAIT);
        if (n < 0) {
            lc_loop_call_soon(loop, lc_test_stop_cb, loop, NULL);
            lc_loop_run_forever(loop);
            continue;
        }
        if (n == 0) {
            got_empty = true;
            break;
        }
        assert_int_equal(n, sizeof(d));
        int seq;
        memcpy(&seq, r, sizeof(seq));
        assert_int_equal(seq, next);
        dg_fill(d, sizeof(d), (unsigned)seq);
        assert_memory_equal(r + sizeof(seq), d + sizeof(seq), sizeof(d) - sizeof(seq));
        next++;
    }
    assert_true(got_empty);
    assert_int_equal(next, sent);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_int_equal(c.lost_err, 0);
    assert_int_equal(c.resumed, 1);
    assert_int_equal(lc_datagram_transport_get_write_buffer_size(t), 0);
    close(sv[1]);
}

/* abort drops what is queued; connection_lost once. */
static void test_datagram_abort_drops_queue(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t = dg_open(
        loop, dg_client_factory, &c, &(lc_datagram_opts_t){.use_sock = true, .sock = sv[0]}, NULL);
    assert_non_null(t);
    close(sv[0]);
    lc_datagram_transport_ref(t);
    char d[1000] = {0};
    for (int i = 0; i < 100000 && lc_datagram_transport_get_write_buffer_size(t) == 0; i++)
        assert_int_equal(lc_datagram_transport_sendto(t, d, sizeof(d), NULL, 0), 0);
    assert_true(lc_datagram_transport_get_write_buffer_size(t) > 0);
    /* The queue is bounded: past 1 MiB (16 times a small high-water mark) sends are refused. */
    int r = 0, n = 0;
    for (; n < 100000 && r == 0; n++)
        r = lc_datagram_transport_sendto(t, d, sizeof(d), NULL, 0);
    assert_int_equal(r, -ENOBUFS);
    assert_true(lc_datagram_transport_get_write_buffer_size(t) <= (1 << 20));
    assert_true(lc_datagram_transport_get_write_buffer_size(t) > (1 << 19));
    assert_false(lc_datagram_transport_is_closing(t));
    lc_datagram_transport_abort(t);
    lc_datagram_transport_abort(t);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_int_equal(c.lost, 1);
    assert_int_equal(lc_datagram_transport_get_write_buffer_size(t), 0);
    assert_int_equal(lc_datagram_transport_get_fd(t), LC_ECLOSED);
    lc_datagram_transport_unref(t);
    close(sv[1]);
}

/* sendto_many: a batch of one size (GSO where the kernel has it) arrives as separate datagrams,
 * whole and in order; mixed sizes go one by one. */
typedef struct {
    int count;
    int bad;
    size_t lens[64];
} batch_rx_t;

static void batch_check(void *ctx, lc_datagram_transport_t *t, const char *data, size_t len,
                        const struct sockaddr *addr, socklen_t addrlen)
{
    (void)t;
    (void)addr;
    (void)addrlen;
    batch_rx_t *b = ctx;
    static char want[2000];
    dg_fill(want, len, (unsigned)b->count);
    if (len > 0 && memcmp(want, data, len) != 0)
        b->bad++;
    if (b->count < 64)
        b->lens[b->count] = len;
    b->count++;
}

static void test_datagram_sendto_many_batches(void **state)
{
    lc_loop_t *loop = *state;
    batch_rx_t b = {0};
    dg_client_t rx = {.loop = loop, .on_datagram = batch_check, .ctx = &b};
    lc_datagram_transport_t *srv = dg_open(loop, dg_client_factory, &rx,
                                           &(lc_datagram_opts_t){.local_host = "127.0.0.1"}, NULL);
    assert_non_null(srv);
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t = dg_open(
        loop, dg_client_factory, &c,
        &(lc_datagram_opts_t){.remote_host = "127.0.0.1", .remote_port = dg_port(srv)}, NULL);
    assert_non_null(t);
    static char bufs[40][1200];
    struct iovec iov[40];
    for (int i = 0; i < 40; i++) {
        size_t len = i == 39 ? 500 : 1200;
        dg_fill(bufs[i], len, (unsigned)i);
        iov[i] = (struct iovec){bufs[i], len};
    }
    assert_int_equal(lc_datagram_transport_sendto_many(t, iov, 40, NULL, 0), 0);
    assert_true(dg_run_until_int(loop, &b.count, 40, 30));
    assert_int_equal(b.bad, 0);
    for (int i = 0; i < 39; i++)
        assert_int_equal(b.lens[i], 1200);
    assert_int_equal(b.lens[39], 500);
    /* Mixed sizes, an empty one among them. */
    static char m[3][100];
    for (int i = 0; i < 3; i++)
        dg_fill(m[i], 100, (unsigned)(40 + i));
    struct iovec mix[3] = {{m[0], 100}, {m[1], 0}, {m[2], 30}};
    assert_int_equal(lc_datagram_transport_sendto_many(t, mix, 3, NULL, 0), 0);
    assert_true(dg_run_until_int(loop, &b.count, 43, 30));
    assert_int_equal(b.lens[40], 100);
    assert_int_equal(b.lens[41], 0);
    assert_int_equal(b.lens[42], 30);
    /* single_segments: no GRO on the socket (the default has it), and a batch still arrives as
     * its datagrams. */
    int gro = 0;
    socklen_t glen = sizeof(gro);
    assert_int_equal(getsockopt(lc_datagram_transport_get_fd(t), SOL_UDP, UDP_GRO, &gro, &glen), 0);
    assert_int_equal(gro, 1);
    dg_client_t c2 = {.loop = loop};
    lc_datagram_transport_t *t2 = dg_open(loop, dg_client_factory, &c2,
                                          &(lc_datagram_opts_t){.remote_host = "127.0.0.1",
                                                                .remote_port = dg_port(srv),
                                                                .single_segments = true},
                                          NULL);
    assert_non_null(t2);
    glen = sizeof(gro);
    assert_int_equal(getsockopt(lc_datagram_transport_get_fd(t2), SOL_UDP, UDP_GRO, &gro, &glen),
                     0);
    assert_int_equal(gro, 0);
    for (int i = 0; i < 10; i++) {
        dg_fill(bufs[i], 300, (unsigned)(43 + i));
        iov[i] = (struct iovec){bufs[i], 300};
    }
    assert_int_equal(lc_datagram_transport_sendto_many(t2, iov, 10, NULL, 0), 0);
    assert_true(dg_run_until_int(loop, &b.count, 53, 30));
    assert_int_equal(b.bad, 0);
    for (int i = 43; i < 53; i++)
        assert_int_equal(b.lens[i], 300);
    lc_datagram_transport_close(t2);
    assert_true(dg_run_until_int(loop, &c2.lost, 1, 10));
    /* Too big: the whole call fails before anything goes. */
    static char huge[65508];
    struct iovec hv[2] = {{m[0], 10}, {huge, sizeof(huge)}};
    assert_int_equal(lc_datagram_transport_sendto_many(t, hv, 2, NULL, 0), -EMSGSIZE);
    assert_int_equal(b.bad, 0); /* a prefix of a pattern is the shorter pattern */
    lc_datagram_transport_close(t);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &rx.lost, 1, 10));
}

/* Sends made inside datagram_received are gathered and go out together after the batch: in
 * order, queued behind what the socket does not take (a Unix peer that reads nothing fills up
 * fast), flushed in order once it reads. */
typedef struct {
    int got;
    int replies_per;
    int closes_after; /* close the transport after this many datagrams (0: never) */
    int errors, last_error;
    int lost;
    bool broadcast_first; /* send to 255.255.255.255 (refused) before each reply */
} gather_srv_t;

static void gather_received(lc_datagram_transport_t *t, const char *data, size_t len,
                            const struct sockaddr *addr, socklen_t addrlen, void *user)
{
    gather_srv_t *g = user;
    g->got++;
    if (g->broadcast_first) {
        struct sockaddr_in bc = {.sin_family = AF_INET, .sin_port = htons(9)};
        bc.sin_addr.s_addr = htonl(INADDR_BROADCAST);
        /* Gathered: its refusal comes through error_received, not here. */
        assert_int_equal(
            lc_datagram_transport_sendto(t, "b", 1, (struct sockaddr *)&bc, sizeof(bc)), 0);
    }
    for (int k = 0; k < g->replies_per; k++) {
        char out[500];
        int seq = (g->got - 1) * g->replies_per + k;
        dg_fill(out, sizeof(out), (unsigned)seq);
        memcpy(out, &seq, sizeof(seq));
        assert_int_equal(lc_datagram_transport_sendto(t, out, sizeof(out), addr, addrlen), 0);
    }
    if (g->replies_per == 0) /* an echo, from the receive buffer itself */
        assert_int_equal(lc_datagram_transport_sendto(t, data, len, addr, addrlen), 0);
    if (g->closes_after > 0 && g->got == g->closes_after)
        lc_datagram_transport_close(t);
}

static void gather_error(lc_datagram_transport_t *t, int err, void *user)
{
    (void)t;
    gather_srv_t *g = user;
    g->errors++;
    g->last_error = err;
}

static void gather_lost(lc_datagram_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    ((gather_srv_t *)user)->lost++;
}

static const lc_datagram_protocol_t gather_proto = {.datagram_received = gather_received,
                                                    .error_received = gather_error,
                                                    .connection_lost = gather_lost};

static int gather_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    *proto = &gather_proto;
    *user = arg;
    return 0;
}

static void test_datagram_gathered_sends_queue_in_order(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    int small = 4096; /* the kernel's floor: a few datagrams fill it */
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    gather_srv_t g = {.replies_per = 3, .closes_after = 40};
    lc_datagram_transport_t *t = dg_open(
        loop, gather_factory, &g, &(lc_datagram_opts_t){.use_sock = true, .sock = sv[0]}, NULL);
    assert_non_null(t);
    close(sv[0]);
    /* 40 datagrams in: one batch or two; 120 replies, far more than the peer's queue holds. */
    for (int i = 0; i < 40; i++)
        assert_int_equal(send(sv[1], "q", 1, MSG_DONTWAIT), 1);
    assert_true(dg_run_until_int(loop, &g.got, 40, 30));
    assert_true(lc_datagram_transport_is_closing(t));
    int next = 0;
    for (int spins = 0; spins < 100000 && next < 120; spins++) {
        char r[600];
        ssize_t n = recv(sv[1], r, sizeof(r), MSG_DONTWAIT);
        if (n < 0) {
            lc_loop_call_soon(loop, lc_test_stop_cb, loop, NULL);
            lc_loop_run_forever(loop);
            continue;
        }
        assert_int_equal(n, 500);
        int seq;
        memcpy(&seq, r, sizeof(seq));
        assert_int_equal(seq, next);
        char want[500];
        dg_fill(want, sizeof(want), (unsigned)seq);
        assert_memory_equal(r + sizeof(seq), want + sizeof(seq), sizeof(want) - sizeof(seq));
        next++;
    }
    assert_int_equal(next, 120);
    assert_true(dg_run_until_int(loop, &g.lost, 1, 10));
    assert_int_equal(g.errors, 0);
    close(sv[1]);
}

/* A gathered send the socket refuses is reported through error_received; the others go out and
 * the endpoint stays open. */
static void test_datagram_gathered_refusal_goes_to_error_received(void **state)
{
    lc_loop_t *loop = *state;
    gather_srv_t g = {.broadcast_first = true};
    lc_datagram_transport_t *srv =
        dg_open(loop, gather_factory, &g, &(lc_datagram_opts_t){.local_host = "127.0.0.1"}, NULL);
    assert_non_null(srv);
    dg_client_t c = {.loop = loop};
    lc_datagram_transport_t *t = dg_open(
        loop, dg_client_factory, &c,
        &(lc_datagram_opts_t){.remote_host = "127.0.0.1", .remote_port = dg_port(srv)}, NULL);
    assert_non_null(t);
    assert_int_equal(lc_datagram_transport_sendto(t, "hello", 5, NULL, 0), 0);
    assert_true(dg_run_until(loop, &c.received, 1, 30));
    assert_int_equal(c.last_len, 5);
    assert_memory_equal(c.last, "hello", 5);
    assert_int_equal(g.errors, 1);
    assert_int_equal(g.last_error, -EACCES);
    assert_false(lc_datagram_transport_is_closing(srv));
    lc_datagram_transport_close(t);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &g.lost, 1, 10));
}

/* An echo server's gathered answers to one peer go out as GSO super-packets where the kernel
 * has it: a GRO receiver (ours) and a plain socket both get each datagram whole, in order. */
static void test_datagram_gathered_echo_to_gro_and_plain_receivers(void **state)
{
    lc_loop_t *loop = *state;
    dg_echo_t e = {0};
    lc_datagram_transport_t *srv = echo_server(loop, &e, "127.0.0.1");
    int port = dg_port(srv);
    batch_rx_t b = {0};
    dg_client_t c = {.loop = loop, .on_datagram = batch_check, .ctx = &b};
    lc_datagram_transport_t *t =
        dg_open(loop, dg_client_factory, &c,
                &(lc_datagram_opts_t){.remote_host = "127.0.0.1", .remote_port = port}, NULL);
    assert_non_null(t);
    static char bufs[40][1200];
    struct iovec iov[40];
    for (int i = 0; i < 40; i++) {
        size_t len = i == 39 ? 700 : 1200;
        dg_fill(bufs[i], len, (unsigned)i);
        iov[i] = (struct iovec){bufs[i], len};
    }
    assert_int_equal(lc_datagram_transport_sendto_many(t, iov, 40, NULL, 0), 0);
    assert_true(dg_run_until_int(loop, &b.count, 40, 30));
    assert_int_equal(b.bad, 0);
    for (int i = 0; i < 39; i++)
        assert_int_equal(b.lens[i], 1200);
    assert_int_equal(b.lens[39], 700);

    /* A plain socket, no GRO: ten datagrams in, ten separate echoes out. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
    for (int i = 0; i < 10; i++) {
        char d[1000];
        dg_fill(d, sizeof(d), (unsigned)(100 + i));
        assert_int_equal(send(fd, d, sizeof(d), 0), (ssize_t)sizeof(d));
    }
    int got = 0;
    for (int spins = 0; spins < 100000 && got < 10; spins++) {
        char r[2000], want[1000];
        ssize_t n = recv(fd, r, sizeof(r), MSG_DONTWAIT);
        if (n < 0) {
            lc_loop_call_soon(loop, lc_test_stop_cb, loop, NULL);
            lc_loop_run_forever(loop);
            continue;
        }
        assert_int_equal(n, 1000);
        dg_fill(want, sizeof(want), (unsigned)(100 + got));
        assert_memory_equal(r, want, sizeof(want));
        got++;
    }
    assert_int_equal(got, 10);
    close(fd);
    assert_int_equal(e.errors, 0);
    lc_datagram_transport_close(t);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &c.lost, 1, 10));
    assert_true(dg_run_until_int(loop, &e.lost, 1, 10));
}

/* Closing the loop with endpoints open (and one still resolving) calls each connection_lost with
 * LC_ECLOSED and leaks nothing. */
static void test_datagram_loop_close_with_open_endpoints(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    dg_echo_t e = {0};
    lc_datagram_transport_t *srv = echo_server(loop, &e, "127.0.0.1");
    (void)srv;
    dg_client_t c = {.loop = loop};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_datagram_endpoint(
                         loop, dg_client_factory, &c,
                         &(lc_datagram_opts_t){.remote_host = "localhost", .remote_port = 9}, &fut),
                     0);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(e.lost, 1);
    assert_int_equal(e.lost_err, LC_ECLOSED);
    lc_future_unref(fut);
    lc_loop_free(loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_datagram_echo_sizes_ipv4),
        T(test_datagram_echo_sizes_ipv6),
        T(test_datagram_addresses_and_accessors),
        T(test_datagram_local_and_remote_and_reuse_port),
        T(test_datagram_factory_refusal_and_cancel),
        T(test_datagram_icmp_error_keeps_endpoint_open),
        T(test_datagram_broadcast_needs_allow_broadcast),
        T(test_datagram_unix_path_and_abstract),
        T(test_datagram_truncation_reported),
        T(test_datagram_queue_flow_control_and_close_flush),
        T(test_datagram_abort_drops_queue),
        T(test_datagram_sendto_many_batches),
        T(test_datagram_gathered_sends_queue_in_order),
        T(test_datagram_gathered_refusal_goes_to_error_received),
        T(test_datagram_gathered_echo_to_gro_and_plain_receivers),
        cmocka_unit_test(test_datagram_loop_close_with_open_endpoints),
#undef T
    };
    return cmocka_run_group_tests_name("datagram", tests, NULL, NULL);
}
