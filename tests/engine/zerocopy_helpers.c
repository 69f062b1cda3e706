/* Helpers of the nocopy write tests: see zerocopy_helpers.h. */
#include "tests/engine/zerocopy_helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

void run_for(lc_loop_t *loop, double seconds)
{
    lc_handle_t *h = NULL;
    assert_int_equal(lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, &h), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_handle_cancel(h);
    lc_handle_unref(h);
}

/* Runs the loop until *var reaches want, in 10 ms slices, for at most 10 s. */
void wait_for(lc_loop_t *loop, const int *var, int want)
{
    for (int i = 0; i < 1000 && *var < want; i++)
        run_for(loop, 0.01);
}

static void conn_made(lc_transport_t *t, void *user)
{
    conn_t *c = user;
    c->made++;
    c->t = t;
}

static void conn_lost(lc_transport_t *t, int err, void *user)
{
    conn_t *c = user;
    assert_ptr_equal(c->t, t);
    c->lost++;
    c->lost_err = err;
    c->t = NULL;
    if (c->log != NULL)
        lc_test_log_push(c->log, c->lost_id != 0 ? c->lost_id : LOST);
}

static void conn_pause(lc_transport_t *t, void *user)
{
    (void)t;
    ((conn_t *)user)->paused++;
}

static void conn_resume(lc_transport_t *t, void *user)
{
    (void)t;
    ((conn_t *)user)->resumed++;
}

static const lc_protocol_t conn_proto = {
    .connection_made = conn_made,
    .connection_lost = conn_lost,
    .pause_writing = conn_pause,
    .resume_writing = conn_resume,
};

static int conn_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &conn_proto;
    *user = arg;
    return 0;
}

/* A TCP connection on 127.0.0.1: the accepted side becomes a transport with conn_proto and c, the
 * connecting side is returned in *peer (non-blocking). small_bufs shrinks the peer's receive
 * buffer (before connect) and the transport's send buffer, so that writes queue quickly while
 * the peer does not read. */
lc_transport_t *tcp_transport(lc_loop_t *loop, conn_t *c, bool small_bufs, int *peer)
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

bool in_write;

void wr_cb(lc_transport_t *t, int status, void *arg)
{
    wr_t *w = arg;
    assert_false(in_write);
    w->calls++;
    w->status = status;
    if (w->log != NULL)
        lc_test_log_push(w->log, w->id);
    if (w->submitted != NULL)
        w->out_at_cb = *w->submitted - lc_transport_get_write_buffer_size(t);
    free(w->free_me);
    w->free_me = NULL;
}

int nocopy(lc_transport_t *t, const void *data, size_t len, wr_t *w)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    in_write = true;
    int r = lc_transport_write_nocopy(t, &iov, 1, w != NULL ? wr_cb : NULL, w);
    in_write = false;
    return r;
}

int copy(lc_transport_t *t, const void *data, size_t len)
{
    in_write = true;
    int r = lc_transport_write(t, data, len);
    in_write = false;
    return r;
}

/* Bytes whose value depends on their position and a seed: a misplaced or lost run shows. */
char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)((i * 131u + seed * 7u + (i >> 12)) & 0xff);
    return p;
}

static void reader_tick(void *arg)
{
    reader_t *r = arg;
    for (int i = 0; i < r->per_tick; i++) {
        size_t room = r->cap - r->len;
        char sink[1];
        ssize_t n = recv(r->fd, room > 0 ? r->got + r->len : sink,
                         room > 0 ? (room < r->chunk ? room : r->chunk) : 1, 0);
        if (n > 0 && room == 0) {
            r->done = 2; /* more than expected */
            return;
        }
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        if (n == 0 || errno != EAGAIN) {
            r->done = n == 0 ? 1 : 2;
            return;
        }
        break;
    }
    assert_int_equal(lc_loop_call_later(r->loop, r->every, reader_tick, r, NULL), 0);
}

void reader_start(reader_t *r, lc_loop_t *loop, int fd, size_t cap, size_t chunk, int per_tick,
                  double every)
{
    *r = (reader_t){
        .loop = loop, .fd = fd, .cap = cap, .chunk = chunk, .per_tick = per_tick, .every = every};
    r->got = malloc(cap > 0 ? cap : 1);
    assert_non_null(r->got);
    assert_int_equal(lc_loop_call_soon(loop, reader_tick, r, NULL), 0);
}

/* Runs the loop until the reader saw EOF (or failed), for at most 30 s. */
void reader_wait_eof(reader_t *r)
{
    for (int i = 0; i < 3000 && r->done == 0; i++)
        run_for(r->loop, 0.01);
}

/* Reads and drops what the peer has until EOF or a reset, for at most 10 s. */
size_t drain_peer(int peer, int *how)
{
    static char buf[65536];
    size_t total = 0;
    *how = 0;
    for (int i = 0; i < 10000; i++) {
        ssize_t n = recv(peer, buf, sizeof(buf), 0);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            *how = n == 0 ? 1 : 2;
            return total;
        }
        usleep(1000);
    }
    return total;
}
