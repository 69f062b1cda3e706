/* lc_transport_write_nocopy: order beside copying writes, one completion per write (deferred,
 * after every byte is out, or with an error on abort, peer reset, send timeout and loop close),
 * flow control, write_eof and close with nocopy buffers queued, a large write to a slow reader.
 * Each on one TCP connection on 127.0.0.1 with a raw socket as the peer. */
#include <arpa/inet.h>
#include <fcntl.h>
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

/* Events in order: a write's completion logs its id (1..99), connection_lost logs LOST. */
enum { LOST = 100 };

/* A connection's protocol: counts callbacks, logs connection_lost. */
typedef struct {
    lc_loop_t *loop;
    lc_transport_t *t;
    int made, lost, lost_err, paused, resumed;
    lc_test_log_t *log;
    int lost_id; /* logged by connection_lost; 0: LOST */
} conn_t;

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
    assert_int_equal(lc_loop_connect_accepted_socket(loop, conn_factory, c, fd, &fut), 0);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, fut, &res), 0);
    lc_future_unref(fut);
    assert_non_null(res);
    assert_int_equal(c->made, 1);
    *peer = p;
    return res;
}

/* One nocopy write's completion. in_write is set around every write call: a completion that runs
 * inside one fails the test. At the completion, out_at_cb is how many bytes the socket had taken
 * (*submitted, the bytes the test handed over, less what is still queued). */
static bool in_write;

typedef struct {
    int id, calls, status;
    lc_test_log_t *log;
    const size_t *submitted;
    size_t out_at_cb;
    void *free_me; /* freed by the completion */
} wr_t;

static void wr_cb(lc_transport_t *t, int status, void *arg)
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

static int nocopy(lc_transport_t *t, const void *data, size_t len, wr_t *w)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    in_write = true;
    int r = lc_transport_write_nocopy(t, &iov, 1, w != NULL ? wr_cb : NULL, w);
    in_write = false;
    return r;
}

static int copy(lc_transport_t *t, const void *data, size_t len)
{
    in_write = true;
    int r = lc_transport_write(t, data, len);
    in_write = false;
    return r;
}

/* Bytes whose value depends on their position and a seed: a misplaced or lost run shows. */
static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)((i * 131u + seed * 7u + (i >> 12)) & 0xff);
    return p;
}

/* The peer: reads into got (capacity cap) in chunks of at most `chunk` bytes, `per_tick` reads
 * every `every` seconds, on the loop (call_later), until EOF or an error. */
typedef struct {
    lc_loop_t *loop;
    int fd;
    char *got;
    size_t len, cap, chunk;
    int per_tick;
    double every;
    int done; /* 1: EOF; 2: an error */
} reader_t;

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

static void reader_start(reader_t *r, lc_loop_t *loop, int fd, size_t cap, size_t chunk,
                         int per_tick, double every)
{
    *r = (reader_t){
        .loop = loop, .fd = fd, .cap = cap, .chunk = chunk, .per_tick = per_tick, .every = every};
    r->got = malloc(cap > 0 ? cap : 1);
    assert_non_null(r->got);
    assert_int_equal(lc_loop_call_soon(loop, reader_tick, r, NULL), 0);
}

/* Runs the loop until the reader saw EOF (or failed), for at most 30 s. */
static void reader_wait_eof(reader_t *r)
{
    for (int i = 0; i < 3000 && r->done == 0; i++)
        run_for(r->loop, 0.01);
}

/* Reads and drops what the peer has until EOF or a reset, for at most 10 s. */
static size_t drain_peer(int peer, int *how)
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

/* ---- arguments and closed transports ----------------------------------------------------------
 */

static void test_nocopy_arguments(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    static wr_t w;
    w = (wr_t){0};
    struct iovec bad = {.iov_base = NULL, .iov_len = 3};
    assert_int_equal(lc_transport_write_nocopy(NULL, &bad, 0, wr_cb, &w), LC_EINVAL);
    assert_int_equal(lc_transport_write_nocopy(t, NULL, 1, wr_cb, &w), LC_EINVAL);
    assert_int_equal(lc_transport_write_nocopy(t, &bad, 1, wr_cb, &w), LC_EINVAL);
    run_for(loop, 0.02);
    assert_int_equal(w.calls, 0);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    lc_transport_abort(t);
    wait_for(loop, &c.lost, 1);
    close(peer);
}

/* A write after close, abort or write_eof is refused and its callback never runs. */
static void test_nocopy_write_after_close(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w1, w2, w3, w4;
    c = (conn_t){0};
    w1 = w2 = w3 = w4 = (wr_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    lc_transport_ref(t);
    assert_int_equal(lc_transport_write_eof(t), 0);
    assert_int_equal(nocopy(t, "late", 4, &w1), LC_EPIPE);
    assert_int_equal(lc_transport_close(t), 0);
    assert_int_equal(nocopy(t, "late", 4, &w2), LC_ECLOSED);
    assert_int_equal(lc_transport_abort(t), 0);
    assert_int_equal(nocopy(t, "late", 4, &w3), LC_ECLOSED);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(nocopy(t, "late", 4, &w4), LC_ECLOSED); /* lost: t is held by our ref */
    run_for(loop, 0.05);
    assert_int_equal(w1.calls + w2.calls + w3.calls + w4.calls, 0);
    lc_transport_unref(t);
    close(peer);
}

/* ---- completion ------------------------------------------------------------------------------ */

/* The socket takes the whole write at once: the callback still comes later, from the loop, once,
 * with 0. So do a write with no bytes and a write with no callback (static data). */
static void test_nocopy_completes_at_once_later(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w1, w2;
    static lc_test_log_t log;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    w1 = (wr_t){.id = 1, .log = &log};
    w2 = (wr_t){.id = 2, .log = &log};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    static const char hello[] = "hello, ";
    static const char world[] = "world";
    assert_int_equal(nocopy(t, hello, 7, &w1), 0);
    assert_int_equal(w1.calls, 0);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    struct iovec none[2] = {{.iov_base = NULL, .iov_len = 0},
                            {.iov_base = (void *)"", .iov_len = 0}};
    in_write = true;
    assert_int_equal(lc_transport_write_nocopy(t, none, 2, wr_cb, &w2), 0);
    assert_int_equal(lc_transport_write_nocopy(t, none, 0, NULL, NULL), 0);
    in_write = false;
    assert_int_equal(nocopy(t, world, 5, NULL), 0);
    assert_int_equal(w2.calls, 0);
    run_for(loop, 0.05);
    assert_int_equal(w1.calls, 1);
    assert_int_equal(w1.status, 0);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.status, 0);
    lc_test_assert_log(&log, (const int[]){1, 2}, 2);
    char buf[32];
    ssize_t n = recv(peer, buf, sizeof(buf), 0);
    assert_int_equal(n, 12);
    assert_memory_equal(buf, "hello, world", 12);
    run_for(loop, 0.02);
    assert_int_equal(w1.calls, 1);
    lc_transport_abort(t);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(w1.calls, 1); /* not again on abort */
    close(peer);
}

/* Queued: the callback waits for the last byte to leave (not while the peer reads nothing), then
 * comes once, with 0, and nothing is queued any more. */
static void test_nocopy_cb_once_after_all_out(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w;
    static size_t submitted;
    c = (conn_t){0};
    w = (wr_t){.id = 1, .submitted = &submitted};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 1u << 20;
    char *data = pattern(len, 1);
    w.free_me = data;
    submitted = len;
    assert_int_equal(nocopy(t, data, len, &w), 0);
    assert_true(lc_transport_get_write_buffer_size(t) > len / 2);
    run_for(loop, 0.1);
    assert_int_equal(w.calls, 0);
    assert_true(lc_transport_get_write_buffer_size(t) > 0);
    reader_t r;
    reader_start(&r, loop, peer, len, 65536, 8, 0.001);
    wait_for(loop, &w.calls, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.out_at_cb, len);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    assert_int_equal(lc_transport_close(t), 0);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, len);
    char *want = pattern(len, 1);
    assert_memory_equal(r.got, want, len);
    free(want);
    free(r.got);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(c.lost_err, 0);
    close(peer);
}

/* ---- order ----------------------------------------------------------------------------------- */

/* Copying writes, writelines and nocopy writes (one and several buffers) interleaved: the peer
 * gets the bytes in call order, each completion comes once, in call order, with 0, and only
 * after every byte of its write (and those before) was taken. queued_first: the first write
 * fills the socket, so that the rest queue behind it (else they go out at once). */
static void mixed_order(lc_loop_t *loop, bool queued_first)
{
    static conn_t c;
    static wr_t w[4];
    static lc_test_log_t log;
    static size_t submitted;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    submitted = 0;
    for (int i = 0; i < 4; i++)
        w[i] = (wr_t){.id = i + 1, .log = &log, .submitted = &submitted};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, queued_first, &peer);
    const size_t sizes[] = {
        queued_first ? 600000 : 3000, 70000, 12345, 100, 5000, 200000, 1, 33333, 4096, 250000};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    char *parts[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        parts[i] = pattern(sizes[i], (unsigned)i + 10);
        total += sizes[i];
    }
    size_t end[4];
    /* 0: copy; 1: nocopy (w1); 2: copy; 3+4: writelines; 5: nocopy (w2); 6+7: nocopy of two
     * buffers (w3); 8: copy; 9: nocopy (w4). */
    assert_int_equal(copy(t, parts[0], sizes[0]), 0);
    submitted += sizes[0];
    assert_int_equal(nocopy(t, parts[1], sizes[1], &w[0]), 0);
    submitted += sizes[1];
    end[0] = submitted;
    assert_int_equal(copy(t, parts[2], sizes[2]), 0);
    submitted += sizes[2];
    struct iovec two[2] = {{parts[3], sizes[3]}, {parts[4], sizes[4]}};
    in_write = true;
    assert_int_equal(lc_transport_writelines(t, two, 2), 0);
    in_write = false;
    submitted += sizes[3] + sizes[4];
    assert_int_equal(nocopy(t, parts[5], sizes[5], &w[1]), 0);
    submitted += sizes[5];
    end[1] = submitted;
    struct iovec pair[2] = {{parts[6], sizes[6]}, {parts[7], sizes[7]}};
    in_write = true;
    assert_int_equal(lc_transport_write_nocopy(t, pair, 2, wr_cb, &w[2]), 0);
    in_write = false;
    submitted += sizes[6] + sizes[7];
    end[2] = submitted;
    assert_int_equal(copy(t, parts[8], sizes[8]), 0);
    submitted += sizes[8];
    assert_int_equal(nocopy(t, parts[9], sizes[9], &w[3]), 0);
    submitted += sizes[9];
    end[3] = submitted;
    if (queued_first) {
        assert_true(lc_transport_get_write_buffer_size(t) > total - sizes[0]);
        for (int i = 0; i < 4; i++)
            assert_int_equal(w[i].calls, 0);
    }
    assert_int_equal(lc_transport_close(t), 0);
    reader_t r;
    reader_start(&r, loop, peer, total, 65536, 8, 0.001);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, total);
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        assert_memory_equal(r.got + off, parts[i], sizes[i]);
        off += sizes[i];
        free(parts[i]);
    }
    free(r.got);
    wait_for(loop, &c.lost, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].status, 0);
        assert_true(w[i].out_at_cb >= end[i]);
    }
    lc_test_assert_log(&log, (const int[]){1, 2, 3, 4}, 4);
    assert_int_equal(c.lost_err, 0);
    close(peer);
}

static void test_nocopy_mixed_order_queued(void **state) { mixed_order(*state, true); }

static void test_nocopy_mixed_order_at_once(void **state) { mixed_order(*state, false); }

/* A producer that writes its next chunk from the previous one's completion (streaming a file):
 * the chain runs to the end, in order, with no completion inside a write. */
typedef struct {
    lc_transport_t *t;
    const char *data;
    size_t len, chunk, next;
    int completions;
} streamer_t;

static void stream_next(lc_transport_t *t, int status, void *arg)
{
    streamer_t *s = arg;
    assert_false(in_write);
    assert_int_equal(status, 0);
    s->completions++;
    if (s->next >= s->len) {
        assert_int_equal(lc_transport_close(t), 0);
        return;
    }
    size_t n = s->len - s->next < s->chunk ? s->len - s->next : s->chunk;
    struct iovec iov = {.iov_base = (void *)(s->data + s->next), .iov_len = n};
    s->next += n;
    in_write = true;
    assert_int_equal(lc_transport_write_nocopy(t, &iov, 1, stream_next, s), 0);
    in_write = false;
}

static void test_nocopy_chained_from_callback(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 3u << 20;
    char *data = pattern(len, 3);
    static streamer_t s;
    s = (streamer_t){.t = t, .data = data, .len = len, .chunk = 100000};
    reader_t r;
    reader_start(&r, loop, peer, len, 65536, 8, 0.001);
    stream_next(t, 0, &s); /* the first chunk, as if a completion */
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, len);
    assert_memory_equal(r.got, data, len);
    assert_int_equal(s.completions, 1 + (int)((len + s.chunk - 1) / s.chunk));
    free(r.got);
    free(data);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    close(peer);
}

/* ---- flow control, write_eof, close ---------------------------------------------------------- */

/* Nocopy bytes count toward the buffer size and the marks: pause_writing above the high mark
 * (inside the write, as for a copying one), copies behind them add up, resume_writing once the
 * peer reads. */
static void test_nocopy_flow_control(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w, w2;
    c = (conn_t){0};
    w = (wr_t){.id = 1};
    w2 = (wr_t){.id = 2};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 65536, 16384), 0);
    const size_t len = 1u << 20;
    char *a = pattern(len, 4);
    assert_int_equal(nocopy(t, a, len, &w), 0);
    size_t after_a = lc_transport_get_write_buffer_size(t);
    assert_true(after_a > 65536 && after_a <= len);
    assert_int_equal(c.paused, 1); /* on nocopy bytes alone */
    char *b = pattern(40000, 5);
    assert_int_equal(copy(t, b, 40000), 0); /* behind the nocopy bytes: counted together */
    free(b);
    assert_int_equal(lc_transport_get_write_buffer_size(t), after_a + 40000);
    char big[100000];
    memset(big, 'z', sizeof(big));
    assert_int_equal(nocopy(t, big, sizeof(big), &w2), 0);
    assert_int_equal(lc_transport_get_write_buffer_size(t), after_a + 40000 + sizeof(big));
    assert_int_equal(c.paused, 1);
    assert_int_equal(c.resumed, 0);
    run_for(loop, 0.05);
    assert_int_equal(c.resumed, 0);
    /* big lives on this stack: wait for its completion before returning. */
    const size_t total = len + 40000 + sizeof(big);
    reader_t r;
    reader_start(&r, loop, peer, total, 65536, 8, 0.001);
    wait_for(loop, &w2.calls, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.status, 0);
    assert_int_equal(c.paused, 1);
    assert_int_equal(c.resumed, 1);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    free(a);
    assert_int_equal(lc_transport_close(t), 0);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, total);
    free(r.got);
    wait_for(loop, &c.lost, 1);
    close(peer);
}

/* write_eof with nocopy bytes queued: the EOF comes after all of them; close() likewise flushes
 * them, and their completion (0) comes before connection_lost (0). */
static void eof_or_close_waits(lc_loop_t *loop, bool use_close)
{
    static conn_t c;
    static wr_t w;
    static lc_test_log_t log;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    c.log = &log;
    w = (wr_t){.id = 1, .log = &log};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 1u << 20;
    char *data = pattern(len, 6);
    w.free_me = data;
    assert_int_equal(nocopy(t, data, len, &w), 0);
    assert_true(lc_transport_get_write_buffer_size(t) > 0);
    assert_int_equal(use_close ? lc_transport_close(t) : lc_transport_write_eof(t), 0);
    run_for(loop, 0.05);
    assert_int_equal(w.calls, 0);
    reader_t r;
    reader_start(&r, loop, peer, len, 65536, 8, 0.001);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, len);
    char *want = pattern(len, 6);
    assert_memory_equal(r.got, want, len);
    free(want);
    free(r.got);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    if (!use_close)
        assert_int_equal(lc_transport_close(t), 0);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    lc_test_assert_log(&log, (const int[]){1, LOST}, 2);
    close(peer);
}

static void test_nocopy_write_eof_waits(void **state) { eof_or_close_waits(*state, false); }

static void test_nocopy_close_flushes(void **state) { eof_or_close_waits(*state, true); }

/* ---- failures -------------------------------------------------------------------------------- */

/* abort with nocopy writes queued: each completion gets LC_ECLOSED, after abort returns, before
 * connection_lost (0); nothing was called inside abort. */
static void test_nocopy_abort(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w1, w2;
    static lc_test_log_t log;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    c.log = &log;
    w1 = (wr_t){.id = 1, .log = &log};
    w2 = (wr_t){.id = 2, .log = &log};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 1u << 20;
    w1.free_me = pattern(len, 7);
    w2.free_me = pattern(len, 8);
    assert_int_equal(nocopy(t, w1.free_me, len, &w1), 0);
    assert_int_equal(copy(t, "mid", 3), 0);
    assert_int_equal(nocopy(t, w2.free_me, len, &w2), 0);
    in_write = true; /* nothing may be called inside abort either */
    assert_int_equal(lc_transport_abort(t), 0);
    in_write = false;
    assert_int_equal(w1.calls + w2.calls + c.lost, 0);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(w1.calls, 1);
    assert_int_equal(w1.status, LC_ECLOSED);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.status, LC_ECLOSED);
    assert_int_equal(c.lost_err, 0);
    lc_test_assert_log(&log, (const int[]){1, 2, LOST}, 3);
    close(peer);
}

/* The peer resets the connection while nocopy bytes are queued: the completion gets the socket
 * error that connection_lost gets. */
static void test_nocopy_peer_reset(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w;
    static lc_test_log_t log;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    c.log = &log;
    w = (wr_t){.id = 1, .log = &log};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 1u << 20;
    w.free_me = pattern(len, 9);
    assert_int_equal(nocopy(t, w.free_me, len, &w), 0);
    run_for(loop, 0.02);
    assert_int_equal(w.calls, 0);
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(peer); /* RST */
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_true(c.lost_err < 0);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, c.lost_err);
    lc_test_assert_log(&log, (const int[]){1, LOST}, 2);
}

/* The send timeout covers nocopy bytes: a peer that never reads gets the transport aborted, and
 * the completion gets LC_ESENDTIMEOUT. */
static void test_nocopy_send_timeout(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w;
    c = (conn_t){0};
    w = (wr_t){.id = 1};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    assert_int_equal(lc_transport_set_send_timeout(t, 0.2), 0);
    const size_t len = 2u << 20;
    w.free_me = pattern(len, 10);
    double queued_at = lc_loop_time(loop);
    assert_int_equal(nocopy(t, w.free_me, len, &w), 0);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, LC_ESENDTIMEOUT);
    assert_true(lc_loop_time(loop) >= queued_at + 0.2);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, LC_ESENDTIMEOUT);
    int how;
    drain_peer(peer, &how);
    assert_true(how != 0);
    close(peer);
}

/* lc_loop_close with nocopy writes outstanding: a queued one gets LC_ECLOSED, one written at once
 * whose completion was not yet delivered gets 0, both inside lc_loop_close and before
 * connection_lost, and their memory is freed there (ASan's leak check sees nothing left). */
static void test_nocopy_loop_close(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    static conn_t a, b;
    static wr_t wa, wb;
    static lc_test_log_t log;
    log = (lc_test_log_t){0};
    a = (conn_t){.log = &log, .lost_id = LOST + 1};
    b = (conn_t){.log = &log, .lost_id = LOST + 2};
    wa = (wr_t){.id = 1, .log = &log};
    wb = (wr_t){.id = 2, .log = &log};
    int pa, pb;
    lc_transport_t *ta = tcp_transport(loop, &a, true, &pa);
    lc_transport_t *tb = tcp_transport(loop, &b, false, &pb);
    const size_t len = 1u << 20;
    wa.free_me = pattern(len, 11);
    assert_int_equal(nocopy(ta, wa.free_me, len, &wa), 0);
    assert_true(lc_transport_get_write_buffer_size(ta) > 0);
    wb.free_me = pattern(100, 12);
    assert_int_equal(nocopy(tb, wb.free_me, 100, &wb), 0);
    assert_int_equal(lc_transport_get_write_buffer_size(tb), 0);
    assert_int_equal(wa.calls + wb.calls, 0);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(wa.calls, 1);
    assert_int_equal(wa.status, LC_ECLOSED);
    assert_null(wa.free_me);
    assert_int_equal(wb.calls, 1);
    assert_int_equal(wb.status, 0);
    assert_null(wb.free_me);
    assert_int_equal(a.lost, 1);
    assert_int_equal(b.lost, 1);
    /* Each transport's completion comes before its own connection_lost. */
    int at[LOST + 3];
    for (int i = 0; i < LOST + 3; i++)
        at[i] = -1;
    assert_int_equal(log.n, 4);
    for (int i = 0; i < log.n; i++)
        at[log.items[i]] = i;
    assert_true(at[1] >= 0 && at[1] < at[LOST + 1]);
    assert_true(at[2] >= 0 && at[2] < at[LOST + 2]);
    assert_int_equal(lc_loop_free(loop), 0);
    close(pa);
    close(pb);
}

/* A large write (8 MiB, between two copying writes) to a peer that reads 16 KiB at a time with
 * short pauses arrives intact, and its completion comes once, with 0. */
static void test_nocopy_large_to_slow_reader(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w;
    c = (conn_t){0};
    w = (wr_t){.id = 1};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 8u << 20;
    char *data = pattern(len, 13);
    static const char head[] = "HEAD", tail[] = "TAIL";
    assert_int_equal(copy(t, head, 4), 0);
    assert_int_equal(nocopy(t, data, len, &w), 0);
    assert_int_equal(copy(t, tail, 4), 0);
    reader_t r;
    reader_start(&r, loop, peer, len + 8, 16384, 64, 0.001);
    wait_for(loop, &w.calls, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(lc_transport_close(t), 0);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, len + 8);
    assert_memory_equal(r.got, head, 4);
    assert_memory_equal(r.got + 4, data, len);
    assert_memory_equal(r.got + 4 + len, tail, 4);
    free(r.got);
    free(data);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(w.calls, 1);
    close(peer);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_nocopy_arguments),
        T(test_nocopy_write_after_close),
        T(test_nocopy_completes_at_once_later),
        T(test_nocopy_cb_once_after_all_out),
        T(test_nocopy_mixed_order_queued),
        T(test_nocopy_mixed_order_at_once),
        T(test_nocopy_chained_from_callback),
        T(test_nocopy_flow_control),
        T(test_nocopy_write_eof_waits),
        T(test_nocopy_close_flushes),
        T(test_nocopy_abort),
        T(test_nocopy_peer_reset),
        T(test_nocopy_send_timeout),
        cmocka_unit_test(test_nocopy_loop_close),
        T(test_nocopy_large_to_slow_reader),
#undef T
    };
    return cmocka_run_group_tests_name("zerocopy", tests, NULL, NULL);
}
