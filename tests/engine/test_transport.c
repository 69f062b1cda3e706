/* Transports on one TCP connection each (127.0.0.1, a raw socket as the peer): write-buffer
 * limits, connection_lost for transports closed while the loop closes, the send timeout. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static void run_for(lc_loop_t *loop, double seconds)
{
    lc_handle_t *h = NULL;
    assert_int_equal(lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, &h), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_handle_cancel(h);
    lc_handle_unref(h);
}

/* Runs the loop until *var reaches want, in 10 ms slices, for at most 10 s. */
static void wait_for(lc_loop_t *loop, const int *var, int want)
{
    for (int i = 0; i < 1000 && *var < want; i++)
        run_for(loop, 0.01);
}

/* A connection's protocol: counts, keeps state on the heap from connection_made to
 * connection_lost (so a missing connection_lost is a leak ASan reports), and closes or aborts
 * its partner's transport from its connection_lost (a proxy's two sides). Tests keep theirs in
 * static storage: after a failed assertion the teardown's loop close still calls connection_lost
 * on it. */
typedef struct conn_s {
    lc_loop_t *loop;
    int made, lost, lost_err;
    double lost_at;
    char *state;
    lc_transport_t *t;
    struct conn_s *partner;
    bool abort_partner;
    bool keep_ref; /* hold a reference from connection_made (the test unrefs) */
} conn_t;

static void conn_made(lc_transport_t *t, void *user)
{
    conn_t *c = user;
    c->made++;
    c->t = t;
    c->state = malloc(64);
    assert_non_null(c->state);
    if (c->keep_ref)
        lc_transport_ref(t);
}

static void conn_lost(lc_transport_t *t, int err, void *user)
{
    conn_t *c = user;
    assert_ptr_equal(c->t, t);
    c->lost++;
    c->lost_err = err;
    c->lost_at = lc_loop_time(c->loop);
    c->t = NULL;
    free(c->state);
    c->state = NULL;
    if (c->partner != NULL && c->partner->t != NULL) {
        if (c->abort_partner)
            assert_int_equal(lc_transport_abort(c->partner->t), 0);
        else
            assert_int_equal(lc_transport_close(c->partner->t), 0);
    }
}

static const lc_protocol_t conn_proto = {
    .connection_made = conn_made,
    .connection_lost = conn_lost,
};

static int conn_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &conn_proto;
    *user = arg;
    return 0;
}

/* A TCP connection on 127.0.0.1: the accepted side becomes a transport with conn_proto and c, the
 * connecting side is returned in *peer (non-blocking). small_bufs shrinks the peer's receive
 * buffer (before connect, so the window stays small) and the transport's send buffer, so that a
 * peer that does not read makes writes queue quickly. */
static lc_transport_t *tcp_transport(lc_loop_t *loop, conn_t *c, bool small_bufs, int *peer)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(ls >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(ls, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(ls, 1), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sin, &len), 0);
    int p = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(p >= 0);
    int small = 16384;
    if (small_bufs)
        assert_int_equal(setsockopt(p, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    assert_int_equal(connect(p, (struct sockaddr *)&sin, sizeof(sin)), 0);
    int fd = accept(ls, NULL, NULL);
    assert_true(fd >= 0);
    close(ls);
    if (small_bufs)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(fcntl(p, F_SETFL, fcntl(p, F_GETFL) | O_NONBLOCK), 0);
    c->loop = loop;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_connect_accepted_socket(loop, conn_factory, c, fd, NULL, &fut), 0);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, fut, &res), 0);
    lc_future_unref(fut);
    assert_non_null(res);
    assert_int_equal(c->made, 1);
    *peer = p;
    return res;
}

/* ---- write-buffer limits --------------------------------------------------------------------- */

static void assert_limits(lc_transport_t *t, size_t want_high, size_t want_low)
{
    size_t low = 0, high = 0;
    assert_int_equal(lc_transport_get_write_buffer_limits(t, &low, &high), 0);
    assert_int_equal(high, want_high);
    assert_int_equal(low, want_low);
}

static void test_transport_write_buffer_limits(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    assert_limits(t, 65536, 16384);
    /* Only -1 means "derive"; any other negative value is refused and changes nothing. */
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -5, 10), LC_EINVAL);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 100, -7), LC_EINVAL);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -2, -1), LC_EINVAL);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -1, -2), LC_EINVAL);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, LONG_MIN, LONG_MIN), LC_EINVAL);
    assert_limits(t, 65536, 16384);
    /* high < low. */
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 10, 20), LC_EINVAL);
    assert_limits(t, 65536, 16384);
    /* Both given; equal; zero. */
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 1000, 10), 0);
    assert_limits(t, 1000, 10);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 500, 500), 0);
    assert_limits(t, 500, 500);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 0, 0), 0);
    assert_limits(t, 0, 0);
    /* high only: low = high / 4. */
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 40000, -1), 0);
    assert_limits(t, 40000, 10000);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 3, -1), 0);
    assert_limits(t, 3, 0);
    /* low only: high = 4 * low, saturated at LONG_MAX. */
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -1, 5000), 0);
    assert_limits(t, 20000, 5000);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -1, LONG_MAX / 4), 0);
    assert_limits(t, (size_t)(LONG_MAX / 4) * 4, LONG_MAX / 4);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -1, LONG_MAX / 4 + 1), 0);
    assert_limits(t, LONG_MAX, LONG_MAX / 4 + 1);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -1, LONG_MAX), 0);
    assert_limits(t, LONG_MAX, LONG_MAX);
    /* Neither: the defaults. */
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -1, -1), 0);
    assert_limits(t, 65536, 16384);
    assert_int_equal(lc_transport_set_write_buffer_limits(NULL, -1, -1), LC_EINVAL);
    lc_transport_abort(t);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    close(peer);
}

/* ---- connection_lost while the loop closes --------------------------------------------------- */

/* Two connections linked as a proxy's sides: each one's connection_lost closes (or aborts) the
 * other. lc_loop_close() delivers the first; the second, closed from inside it, must still get
 * its own. */
static void linked_close_on_loop_close(bool abort_partner)
{
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    static conn_t a, b;
    a = (conn_t){.abort_partner = abort_partner};
    b = (conn_t){.abort_partner = abort_partner};
    a.partner = &b;
    b.partner = &a;
    int pa, pb;
    tcp_transport(loop, &a, false, &pa);
    tcp_transport(loop, &b, false, &pb);
    run_for(loop, 0.01);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(a.made, 1);
    assert_int_equal(b.made, 1);
    assert_int_equal(a.lost, 1);
    assert_int_equal(b.lost, 1);
    /* The one the loop closed gets LC_ECLOSED; the other was closed by its partner: 0. */
    assert_true((a.lost_err == LC_ECLOSED && b.lost_err == 0) ||
                (a.lost_err == 0 && b.lost_err == LC_ECLOSED));
    assert_int_equal(lc_loop_free(loop), 0);
    close(pa);
    close(pb);
}

static void test_transport_linked_close_during_loop_close(void **state)
{
    (void)state;
    linked_close_on_loop_close(false);
}

static void test_transport_linked_abort_during_loop_close(void **state)
{
    (void)state;
    linked_close_on_loop_close(true);
}

/* The same pair while the loop runs: each gets connection_lost once, through call_soon. */
static void test_transport_linked_close_while_running(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t a, b;
    a = (conn_t){0};
    b = (conn_t){0};
    a.partner = &b;
    b.partner = &a;
    int pa, pb;
    lc_transport_t *ta = tcp_transport(loop, &a, false, &pa);
    tcp_transport(loop, &b, false, &pb);
    assert_int_equal(lc_transport_close(ta), 0);
    assert_int_equal(a.lost, 0); /* not from inside close */
    wait_for(loop, &b.lost, 1);
    assert_int_equal(a.lost, 1);
    assert_int_equal(b.lost, 1);
    assert_int_equal(a.lost_err, 0);
    assert_int_equal(b.lost_err, 0);
    close(pa);
    close(pb);
}

/* ---- send timeout ---------------------------------------------------------------------------- */

/* Writes n chunks of 64 KiB to t, whose peer has read nothing yet: at least 1 MiB of it stays in
 * the transport's buffer (the socket buffers are small). */
static void fill_until_queued(lc_transport_t *t, int n)
{
    static char chunk[65536];
    memset(chunk, 'q', sizeof(chunk));
    for (int i = 0; i < n; i++)
        assert_int_equal(lc_transport_write(t, chunk, sizeof(chunk)), 0);
    assert_true(lc_transport_get_write_buffer_size(t) >= (1u << 20));
}

/* Reads and drops what the peer has until EOF or a reset (the transport's socket is closed), for
 * at most 10 s. Returns true if it came. */
static bool peer_sees_close(int peer)
{
    static char buf[65536];
    for (int i = 0; i < 10000; i++) {
        ssize_t n = recv(peer, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0 && errno != EAGAIN)
            return false;
        if (n < 0)
            usleep(1000);
    }
    return false;
}

static void test_transport_send_timeout_arguments_and_default(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    assert_true(lc_transport_get_send_timeout(t) == 0.0); /* disabled by default */
    assert_int_equal(lc_transport_set_send_timeout(t, -1.0), LC_EINVAL);
    assert_int_equal(lc_transport_set_send_timeout(t, NAN), LC_EINVAL);
    assert_int_equal(lc_transport_set_send_timeout(t, -INFINITY), LC_EINVAL);
    assert_int_equal(lc_transport_set_send_timeout(NULL, 1.0), LC_EINVAL);
    assert_true(lc_transport_get_send_timeout(t) == 0.0);
    assert_int_equal(lc_transport_set_send_timeout(t, 2.5), 0);
    assert_true(lc_transport_get_send_timeout(t) == 2.5);
    assert_int_equal(lc_transport_set_send_timeout(t, INFINITY), 0); /* never */
    assert_true(isinf(lc_transport_get_send_timeout(t)));
    assert_int_equal(lc_transport_set_send_timeout(t, 0), 0);
    assert_true(lc_transport_get_send_timeout(t) == 0.0);
    assert_true(lc_transport_get_send_timeout(NULL) == 0.0);
    lc_transport_abort(t);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    close(peer);
}

/* Disabled (the default): a close() to a peer that never reads waits for the flush. */
static void test_transport_send_timeout_off_close_waits(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    fill_until_queued(t, 32);
    assert_int_equal(lc_transport_close(t), 0);
    run_for(loop, 0.6);
    assert_int_equal(c.lost, 0);
    assert_true(lc_transport_is_closing(t));
    assert_true(lc_transport_get_write_buffer_size(t) > 0);
    assert_int_equal(lc_transport_abort(t), 0);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    close(peer);
}

/* The main case: close() to a peer that never reads. Set after close(), the timeout counts from
 * the set; the transport is aborted with LC_ESENDTIMEOUT and its socket closed. */
static void test_transport_send_timeout_reclaims_closing_transport(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){.keep_ref = true};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    fill_until_queued(t, 32);
    assert_int_equal(lc_transport_close(t), 0);
    double set_at = lc_loop_time(loop);
    assert_int_equal(lc_transport_set_send_timeout(t, 0.2), 0);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, LC_ESENDTIMEOUT);
    assert_true(c.lost_at >= set_at + 0.2);
    assert_int_equal(lc_transport_get_fd(t), LC_ECLOSED);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    lc_transport_unref(t);
    assert_true(peer_sees_close(peer));
    close(peer);
}

/* While open, too: writes pile up for a peer that never reads. */
static void test_transport_send_timeout_aborts_open_transport(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    assert_int_equal(lc_transport_set_send_timeout(t, 0.2), 0);
    double queued_at = lc_loop_time(loop);
    fill_until_queued(t, 32);
    assert_false(lc_transport_is_closing(t));
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, LC_ESENDTIMEOUT);
    assert_true(c.lost_at >= queued_at + 0.2);
    assert_true(peer_sees_close(peer));
    close(peer);
}

/* A peer that reads slowly (at most 16 KiB every 20 ms) makes progress all the time: a close()
 * that takes several timeouts to flush is not aborted, and the peer gets every byte. */
typedef struct {
    lc_loop_t *loop;
    int fd;
    size_t got;
    int done; /* 1: EOF; 2: an error */
} slow_reader_t;

static void slow_read(void *arg)
{
    slow_reader_t *r = arg;
    static char buf[16384];
    ssize_t n = recv(r->fd, buf, sizeof(buf), 0);
    if (n > 0)
        r->got += (size_t)n;
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        r->done = n == 0 ? 1 : 2;
        return;
    }
    assert_int_equal(lc_loop_call_later(r->loop, 0.02, slow_read, r, NULL), 0);
}

static void test_transport_send_timeout_spares_slow_reader(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    assert_int_equal(lc_transport_set_send_timeout(t, 0.5), 0);
    fill_until_queued(t, 24); /* 1.5 MiB: 96 reads at least, about 2 s (four timeouts) */
    double closed_at = lc_loop_time(loop);
    assert_int_equal(lc_transport_close(t), 0);
    slow_reader_t r = {.loop = loop, .fd = peer};
    assert_int_equal(lc_loop_call_soon(loop, slow_read, &r, NULL), 0);
    for (int i = 0; i < 3000 && r.done == 0; i++)
        run_for(loop, 0.01);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.got, 24u * 65536u);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    assert_true(c.lost_at - closed_at > 2 * 0.5); /* it did outlast the timeout */
    close(peer);
}

/* ---- data before a reset --------------------------------------------------------------------- */

/* The peer sends a reply and then resets the connection: the kernel keeps the reply readable
 * behind the error, and asyncio delivers it (data_received) before connection_lost(ECONNRESET).
 * Found by tests/fuzz/transport_read_fuzz (its tcp_small_write_then_rst input): the transport
 * reported the error without reading. */
typedef struct {
    conn_t c;
    char got[64];
    size_t got_len;
    bool pause_first;
} rst_conn_t;

static void rst_made(lc_transport_t *t, void *user)
{
    rst_conn_t *r = user;
    conn_made(t, &r->c);
    if (r->pause_first)
        assert_int_equal(lc_transport_pause_reading(t), 0);
}
static void rst_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)t;
    rst_conn_t *r = user;
    assert_true(r->got_len + len <= sizeof(r->got));
    memcpy(r->got + r->got_len, data, len);
    r->got_len += len;
}
static void rst_lost(lc_transport_t *t, int err, void *user)
{
    conn_lost(t, err, &((rst_conn_t *)user)->c);
}
static const lc_protocol_t rst_proto = {
    .connection_made = rst_made, .data_received = rst_data, .connection_lost = rst_lost};
static int rst_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &rst_proto;
    *user = arg;
    return 0;
}

static void reply_then_reset(int peer)
{
    assert_int_equal(write(peer, "hello", 5), 5);
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(peer);
}

static lc_transport_t *rst_transport(lc_loop_t *loop, rst_conn_t *r, int *peer)
{
    int sv[2];
    /* TCP: a Unix socket has no reset. */
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(ls, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(ls, 1), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sin, &len), 0);
    sv[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(sv[1], (struct sockaddr *)&sin, sizeof(sin)), 0);
    sv[0] = accept(ls, NULL, NULL);
    assert_true(sv[0] >= 0);
    close(ls);
    r->c.loop = loop;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_connect_accepted_socket(loop, rst_factory, r, sv[0], NULL, &fut), 0);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, fut, &res), 0);
    lc_future_unref(fut);
    run_for(loop, 0.01); /* connection_made */
    assert_int_equal(r->c.made, 1);
    *peer = sv[1];
    return res;
}

static void test_transport_data_before_reset_is_delivered(void **state)
{
    lc_loop_t *loop = *state;
    static rst_conn_t r;
    memset(&r, 0, sizeof(r));
    int peer;
    rst_transport(loop, &r, &peer);
    reply_then_reset(peer);
    wait_for(loop, &r.c.lost, 1);
    assert_int_equal(r.got_len, 5);
    assert_memory_equal(r.got, "hello", 5);
    assert_int_equal(r.c.lost, 1);
    assert_int_equal(r.c.lost_err, -ECONNRESET);
}

/* Paused when the reset comes: nothing happens until resume_reading, then the reply, then the
 * error (asyncio does not watch a paused transport's socket for reading either). */
static void test_transport_reset_while_paused_waits_for_resume(void **state)
{
    lc_loop_t *loop = *state;
    static rst_conn_t r;
    memset(&r, 0, sizeof(r));
    r.pause_first = true;
    int peer;
    lc_transport_t *t = rst_transport(loop, &r, &peer);
    reply_then_reset(peer);
    run_for(loop, 0.1);
    assert_int_equal(r.got_len, 0);
    assert_int_equal(r.c.lost, 0);
    assert_int_equal(lc_transport_resume_reading(t), 0);
    wait_for(loop, &r.c.lost, 1);
    assert_int_equal(r.got_len, 5);
    assert_int_equal(r.c.lost_err, -ECONNRESET);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_transport_write_buffer_limits),
        cmocka_unit_test(test_transport_linked_close_during_loop_close),
        cmocka_unit_test(test_transport_linked_abort_during_loop_close),
        T(test_transport_linked_close_while_running),
        T(test_transport_send_timeout_arguments_and_default),
        T(test_transport_send_timeout_off_close_waits),
        T(test_transport_send_timeout_reclaims_closing_transport),
        T(test_transport_send_timeout_aborts_open_transport),
        T(test_transport_send_timeout_spares_slow_reader),
        T(test_transport_data_before_reset_is_delivered),
        T(test_transport_reset_while_paused_waits_for_resume),
#undef T
    };
    return cmocka_run_group_tests_name("transport", tests, NULL, NULL);
}
