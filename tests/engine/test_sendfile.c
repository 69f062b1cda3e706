/* lc_loop_sendfile and lc_loop_sock_sendfile (include/loopcore/sendfile.h): files of 0 B, 1 B,
 * 1 MiB + 1 and 100 MiB, with offsets and counts, the receiving side's checksum compared with the
 * file's; a slow reader behind queued data; the transport's state during and after (writes
 * refused, reading paused and resumed, flow control); the peer resetting mid-file, close, abort,
 * cancel and the send timeout (the future fails, the fds go); TLS with the fallback and without
 * it; raw sockets. The receiving side is a thread on a blocking socket (zerocopy_helpers.h makes
 * the connection). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "tests/engine/zerocopy_helpers.h"
#include "tests/support/loop_fixture.h"

#define MiB (1024 * 1024)

/* ---- files and checksums --------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
#define FNV0 1469598103934665603ull

static unsigned char file_byte(size_t i, unsigned seed)
{
    return (unsigned char)((i * 131u + seed * 7u + (i >> 12) + (i >> 20)) & 0xff);
}

/* An unlinked temporary regular file of size bytes. */
static int make_file(size_t size, unsigned seed)
{
    const char *dir = getenv("TEST_TMPDIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/lc_sendfile_XXXXXX", dir != NULL ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    static unsigned char buf[65536];
    for (size_t off = 0; off < size;) {
        size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = file_byte(off + i, seed);
        assert_int_equal(write(fd, buf, n), (ssize_t)n);
        off += n;
    }
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* The checksum of the file's bytes [off, off + n). */
static uint64_t file_sum(size_t off, size_t n, unsigned seed)
{
    uint64_t h = FNV0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = file_byte(off + i, seed);
        h = fnv(h, &b, 1);
    }
    return h;
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* ---- the receiving side: a thread on a blocking socket --------------------------------------- */

typedef struct {
    int fd;
    size_t prefix;     /* bytes before the file's (queued by the test): skipped, counted */
    size_t want;       /* the file's bytes expected (then a 3-byte "END" if tail) */
    bool tail;         /* expect "END" after them */
    size_t stop_after; /* > 0: reset the connection after this many bytes */
    int slow_us;       /* sleep between reads of at most `chunk` bytes */
    size_t chunk;
    /* results */
    size_t got;
    uint64_t sum;
    char tailbuf[4];
    bool eof;
    pthread_t th;
} rx_t;

static void *rx_main(void *arg)
{
    rx_t *r = arg;
    static __thread unsigned char buf[1 << 18];
    size_t total = 0, end = r->prefix + r->want + (r->tail ? 3 : 0);
    r->sum = FNV0;
    for (;;) {
        if (r->stop_after == 0 && total >= end)
            break;
        size_t cap = r->chunk > 0 && r->chunk < sizeof(buf) ? r->chunk : sizeof(buf);
        if (r->stop_after == 0 && end - total < cap)
            cap = end - total;
        ssize_t n = recv(r->fd, buf, cap, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r->eof = true;
            break;
        }
        for (size_t i = 0; i < (size_t)n; i++, total++) {
            if (total < r->prefix)
                continue;
            if (total < r->prefix + r->want)
                r->sum = fnv(r->sum, &buf[i], 1);
            else if (total - r->prefix - r->want < 3)
                r->tailbuf[total - r->prefix - r->want] = (char)buf[i];
        }
        if (r->stop_after > 0 && total >= r->stop_after) {
            struct linger lg = {1, 0};
            setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(r->fd); /* RST: the sender's next send fails */
            r->fd = -1;
            break;
        }
        if (r->slow_us > 0)
            usleep((useconds_t)r->slow_us);
    }
    r->got = total;
    return NULL;
}

static void rx_start(rx_t *r, int fd)
{
    r->fd = fd;
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK), 0);
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* a bug cannot hang the test */
    assert_int_equal(pthread_create(&r->th, NULL, rx_main, r), 0);
}

static void rx_join(rx_t *r)
{
    assert_int_equal(pthread_join(r->th, NULL), 0);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

/* ---- running ----------------------------------------------------------------------------------
 */

/* Runs the loop until t's write buffer is empty (a write after the file may have been queued
 * behind a slow reader), then waits for the reader. */
static void flush_and_join(lc_loop_t *loop, lc_transport_t *t, rx_t *rx)
{
    for (int i = 0; i < 3000 && lc_transport_get_write_buffer_size(t) > 0; i++)
        run_for(loop, 0.01);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    rx_join(rx);
}

/* Runs the loop until fut is done (at most 60 s); returns its outcome, the bytes in *sent. */
static int await_sent(lc_loop_t *loop, lc_future_t *fut, size_t *sent)
{
    for (int i = 0; i < 6000 && !lc_future_done(fut); i++)
        run_for(loop, 0.01);
    assert_true(lc_future_done(fut));
    void *res = NULL;
    int r = lc_future_result(fut, &res);
    if (sent != NULL)
        *sent = (size_t)(uintptr_t)res;
    return r;
}

/* Sends file[offset, offset + count) over a fresh connection and checks what arrived, the result,
 * the file's offset afterwards, that reading came back and that a write after it follows the
 * file's bytes. */
static void send_and_check(lc_loop_t *loop, size_t size, off_t offset, size_t count, size_t expect)
{
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    int fd = make_file(size, (unsigned)size);
    static rx_t rx;
    rx = (rx_t){.want = expect, .tail = true};
    rx_start(&rx, peer);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, offset, count, false, &fut), 0);
    /* A small file may be sent within the call (tried at once, as asyncio); otherwise reading
     * is paused until it ends. */
    assert_true(lc_future_done(fut) || !lc_transport_is_reading(t));
    size_t sent = 0;
    assert_int_equal(await_sent(loop, fut, &sent), 0);
    lc_future_unref(fut);
    assert_int_equal(sent, expect);
    assert_true(lc_transport_is_reading(t));
    assert_int_equal(lc_transport_write(t, "END", 3), 0);
    flush_and_join(loop, t, &rx);
    assert_int_equal(rx.got, expect + 3);
    assert_true(rx.sum == file_sum((size_t)offset, expect, (unsigned)size));
    assert_memory_equal(rx.tailbuf, "END", 3);
    /* asyncio: offset + sent when anything was sent, else untouched. */
    assert_int_equal(lseek(fd, 0, SEEK_CUR), expect > 0 ? offset + (off_t)expect : 0);
    close(fd);
    lc_transport_close(t);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost_err, 0);
}

/* ---- tests: plain transports ----------------------------------------------------------------- */

static void test_sendfile_sizes(void **state)
{
    lc_loop_t *loop = *state;
    send_and_check(loop, 0, 0, 0, 0);
    send_and_check(loop, 1, 0, 0, 1);
    send_and_check(loop, MiB + 1, 0, 0, MiB + 1);
}

static void test_sendfile_offsets_and_counts(void **state)
{
    lc_loop_t *loop = *state;
    send_and_check(loop, MiB + 1, 1000, 500000, 500000); /* inside the file */
    send_and_check(loop, MiB + 1, 1, 0, MiB);            /* from 1 to the end */
    send_and_check(loop, MiB + 1, MiB - 4, 100, 5);      /* a count past the end */
    send_and_check(loop, MiB + 1, MiB + 1, 0, 0);        /* at the end */
    send_and_check(loop, MiB + 1, 3 * MiB, 10, 0);       /* past the end */
    send_and_check(loop, 1, 0, 1, 1);                    /* exactly the file */
}

static void test_sendfile_100mib(void **state)
{
    lc_loop_t *loop = *state;
    send_and_check(loop, 100 * MiB, 0, 0, 100 * MiB);
    send_and_check(loop, 100 * MiB, 12345, 100 * MiB - 20000, 100 * MiB - 20000);
}

/* A slow reader, with 300 KiB queued before the sendfile (the protocol paused): the queue drains
 * first and the file follows it; meanwhile writes and a second sendfile are refused, the
 * protocol's pause/resume_reading are only recorded and it sees no flow control; at the end it
 * gets resume_writing once and reading is back. */
static void test_sendfile_slow_reader_after_queued_data(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    size_t qlen = 300 * 1024;
    char *q = pattern(qlen, 5);
    assert_int_equal(lc_transport_write(t, q, qlen), 0);
    assert_true(lc_transport_get_write_buffer_size(t) > 0);
    assert_int_equal(c.paused, 1);
    int fd = make_file(MiB + 1, 9);
    static rx_t rx;
    rx = (rx_t){.prefix = qlen, .want = MiB + 1 - 7, .tail = true, .slow_us = 200, .chunk = 16384};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 7, 0, true, &fut), 0);
    assert_int_equal(lc_transport_write(t, "x", 1), LC_EBUSY);
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    assert_int_equal(lc_transport_writelines(t, &iov, 1), LC_EBUSY);
    assert_int_equal(lc_transport_write_nocopy(t, &iov, 1, NULL, NULL), LC_EBUSY);
    lc_future_t *f2 = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, true, &f2), LC_EBUSY);
    assert_null(f2);
    assert_int_equal(lc_transport_write_eof(t), LC_EBUSY);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    lc_future_t *f3 = NULL;
    assert_int_equal(
        lc_loop_start_tls(loop, t, ctx, &(lc_start_tls_opts_t){.server_side = true}, &f3),
        LC_EBUSY);
    assert_null(f3);
    SSL_CTX_free(ctx);
    assert_int_equal(lc_transport_pause_reading(t), 0);
    assert_int_equal(lc_transport_resume_reading(t), 0); /* recorded: reading resumes at the end */
    assert_false(lc_transport_is_reading(t));
    rx_start(&rx, peer);
    size_t sent = 0;
    assert_int_equal(await_sent(loop, fut, &sent), 0);
    lc_future_unref(fut);
    assert_int_equal(sent, MiB + 1 - 7);
    assert_int_equal(c.paused, 1);
    assert_int_equal(c.resumed, 1); /* given at the end, as asyncio's fallback restore */
    assert_true(lc_transport_is_reading(t));
    assert_int_equal(lc_transport_write(t, "END", 3), 0);
    flush_and_join(loop, t, &rx);
    assert_int_equal(rx.got, qlen + MiB + 1 - 7 + 3);
    assert_true(rx.sum == file_sum(7, MiB + 1 - 7, 9));
    assert_memory_equal(rx.tailbuf, "END", 3);
    free(q);
    close(fd);
    lc_transport_close(t);
    wait_for(loop, &c.lost, 1);
}

/* The peer resets mid-file: the future fails with the connection's error before connection_lost
 * gets it, and the socket goes (ASan checks the memory). */
static lc_test_log_t order_log;
static void log_done(lc_future_t *fut, void *arg)
{
    (void)fut;
    (void)arg;
    lc_test_log_push(&order_log, 1);
}

static void test_sendfile_peer_resets_mid_file(void **state)
{
    lc_loop_t *loop = *state;
    int fds_before = count_fds();
    static conn_t c;
    c = (conn_t){0};
    order_log = (lc_test_log_t){0};
    c.log = &order_log;
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    int fd = make_file(100 * MiB, 3);
    static rx_t rx;
    rx = (rx_t){.stop_after = 2 * MiB, .chunk = 65536};
    rx_start(&rx, peer);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, true, &fut), 0);
    assert_int_equal(lc_future_add_done_callback(fut, log_done, NULL), 0);
    size_t sent = 0;
    int r = await_sent(loop, fut, &sent);
    assert_true(r == -ECONNRESET || r == -EPIPE);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, r);
    int expected[] = {1, LOST};
    lc_test_assert_log(&order_log, expected, 2);
    rx_join(&rx);
    off_t pos = lseek(fd, 0, SEEK_CUR);
    assert_true(pos >= 2 * MiB && pos < 100 * MiB); /* offset + what was sent before the reset */
    lc_future_unref(fut);
    close(fd);
    run_for(loop, 0.05); /* the poll handle's close callback */
    assert_int_equal(count_fds(), fds_before);
}

/* The peer reset before the call: the first sendfile(2), tried inside the call, fails; the
 * failure still comes from the loop, so a done callback added after the call runs before
 * connection_lost. */
static void test_sendfile_peer_gone_before_the_call(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    order_log = (lc_test_log_t){0};
    c.log = &order_log;
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    struct linger lg = {1, 0};
    setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(peer);
    usleep(20000); /* the RST arrives; the loop has not run, so the transport does not know */
    int fd = make_file(MiB, 6);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, false, &fut), 0);
    assert_false(lc_future_done(fut));
    assert_int_equal(lc_future_add_done_callback(fut, log_done, NULL), 0);
    int r = await_sent(loop, fut, NULL);
    assert_true(r == -ECONNRESET || r == -EPIPE);
    wait_for(loop, &c.lost, 1);
    int expected[] = {1, LOST};
    lc_test_assert_log(&order_log, expected, 2);
    lc_future_unref(fut);
    close(fd);
}

/* close() and abort() during a sendfile to a peer that does not read: the future fails with
 * LC_ECLOSED at once. */
static void close_during(lc_loop_t *loop, bool abort_it)
{
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    int fd = make_file(8 * MiB, 1);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, false, &fut), 0);
    run_for(loop, 0.05);
    assert_false(lc_future_done(fut));
    if (abort_it)
        lc_transport_abort(t);
    else
        lc_transport_close(t);
    assert_true(lc_future_done(fut));
    assert_int_equal(lc_future_result(fut, NULL), LC_ECLOSED);
    lc_future_unref(fut);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    close(peer);
    close(fd);
}

static void test_sendfile_close_and_abort_fail_it(void **state)
{
    close_during(*state, false);
    close_during(*state, true);
}

/* Cancelling the future stops the transfer and gives the transport back: writes work and
 * reading is on again; the file's offset is where the transfer stopped. */
static void test_sendfile_cancel(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    int fd = make_file(8 * MiB, 2);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 100, 0, false, &fut), 0);
    run_for(loop, 0.05);
    assert_int_equal(lc_future_cancel(fut), 1);
    run_for(loop, 0.02);
    assert_true(lc_future_cancelled(fut));
    lc_future_unref(fut);
    assert_true(lc_transport_is_reading(t));
    assert_int_equal(lc_transport_write(t, "END", 3), 0);
    off_t pos = lseek(fd, 0, SEEK_CUR);
    assert_true(pos > 100 && pos < 8 * MiB);
    /* The peer gets exactly the file's bytes up to there, then what was written after. */
    static rx_t rx;
    rx = (rx_t){.want = (size_t)pos - 100, .tail = true};
    rx_start(&rx, peer);
    lc_transport_close(t);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    rx_join(&rx);
    assert_int_equal(rx.got, (size_t)pos - 100 + 3);
    assert_true(rx.sum == file_sum(100, (size_t)pos - 100, 2));
    assert_memory_equal(rx.tailbuf, "END", 3);
    close(fd);
}

/* A peer that never reads: the transport's send timeout bounds the native path too. */
static void test_sendfile_send_timeout(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    assert_int_equal(lc_transport_set_send_timeout(t, 0.2), 0);
    int fd = make_file(8 * MiB, 4);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, false, &fut), 0);
    assert_int_equal(await_sent(loop, fut, NULL), LC_ESENDTIMEOUT);
    lc_future_unref(fut);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost_err, LC_ESENDTIMEOUT);
    close(peer);
    close(fd);
}

static void pipe_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    ((conn_t *)user)->lost++;
}
static const lc_protocol_t pipe_proto = {.connection_lost = pipe_lost};
static int pipe_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &pipe_proto;
    *user = arg;
    return 0;
}
static lc_transport_t *await_transport(lc_loop_t *loop, lc_future_t *f)
{
    assert_int_equal(await_sent(loop, f, NULL), 0);
    void *t = NULL;
    assert_int_equal(lc_future_result(f, &t), 0);
    lc_future_unref(f);
    assert_non_null(t);
    return t;
}

static void test_sendfile_arguments(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    int fd = make_file(10, 1);
    lc_future_t *fut = (lc_future_t *)1;
    assert_int_equal(lc_loop_sendfile(loop, NULL, fd, 0, 0, true, &fut), LC_EINVAL);
    assert_null(fut);
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, true, NULL), LC_EINVAL);
    assert_int_equal(lc_loop_sendfile(loop, t, -1, 0, 0, true, &fut), LC_EINVAL);
    assert_int_equal(lc_loop_sendfile(loop, t, fd, -1, 0, true, &fut), LC_EINVAL);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(lc_loop_sendfile(loop, t, p[0], 0, 0, true, &fut), LC_ESENDFILENOTAVAILABLE);
    assert_true(lc_transport_is_reading(t)); /* a refused call changes nothing */
    assert_int_equal(lc_transport_write(t, "ok", 2), 0);
    close(p[0]);
    close(p[1]);
    lc_transport_ref(t);
    lc_transport_close(t);
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, true, &fut), LC_ECLOSED);
    wait_for(loop, &c.lost, 1);
    lc_transport_unref(t);
    close(peer);
    /* A pipe transport has no sendfile (asyncio's neither). */
    static conn_t pc;
    pc = (conn_t){0};
    assert_int_equal(pipe(p), 0);
    lc_future_t *pf = NULL;
    assert_int_equal(lc_loop_connect_write_pipe(loop, pipe_factory, &pc, p[1], &pf), 0);
    lc_transport_t *pt = await_transport(loop, pf);
    assert_int_equal(lc_loop_sendfile(loop, pt, fd, 0, 0, true, &fut), LC_ENOTSUP);
    lc_transport_close(pt);
    wait_for(loop, &pc.lost, 1);
    close(p[0]);
    close(fd);
}

/* ---- tests: TLS -------------------------------------------------------------------------------
 */

static char certdir[64], cert_path[128], key_path[128];

typedef struct {
    lc_loop_t *loop;
    lc_transport_t *t;
    int file_fd;
    off_t offset;
    size_t count;
    bool fallback;
    int start_err;
    lc_future_t *fut;
    int paused, lost;
    bool keep_high; /* a high mark above the chunk size */
} tls_srv_t;

static void srv_made(lc_transport_t *t, void *user)
{
    tls_srv_t *s = user;
    s->t = t;
    if (s->keep_high)
        lc_transport_set_write_buffer_limits(t, 4 * MiB, -1);
    s->start_err =
        lc_loop_sendfile(s->loop, t, s->file_fd, s->offset, s->count, s->fallback, &s->fut);
}
static void srv_pause(lc_transport_t *t, void *user)
{
    (void)t;
    ((tls_srv_t *)user)->paused++;
}
static void srv_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    ((tls_srv_t *)user)->lost++;
}
static const lc_protocol_t srv_proto = {
    .connection_made = srv_made, .pause_writing = srv_pause, .connection_lost = srv_lost};
static int srv_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &srv_proto;
    *user = arg;
    return 0;
}

typedef struct {
    size_t got;
    uint64_t sum;
    int lost;
} tls_cli_t;

static void cli_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)t;
    tls_cli_t *c = user;
    c->sum = fnv(c->sum, (const unsigned char *)data, len);
    c->got += len;
}
static void cli_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    ((tls_cli_t *)user)->lost++;
}
static const lc_protocol_t cli_proto = {.data_received = cli_data, .connection_lost = cli_lost};
static int cli_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &cli_proto;
    *user = arg;
    return 0;
}

static void tls_send(lc_loop_t *loop, size_t size, tls_srv_t *s, tls_cli_t *cli)
{
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(sctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(sctx, cert_path), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(sctx, key_path, SSL_FILETYPE_PEM), 1);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    s->loop = loop;
    s->file_fd = make_file(size, 11);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_create_server(loop, srv_factory, s,
                                           &(lc_server_opts_t){.host = "127.0.0.1", .ssl = sctx},
                                           &f),
                     0);
    lc_server_t *server = NULL;
    assert_int_equal(await_sent(loop, f, NULL), 0);
    assert_int_equal(lc_future_result(f, (void **)&server), 0);
    lc_future_unref(f);
    int sfd[1];
    size_t n = 1;
    assert_int_equal(lc_server_sockets(server, sfd, &n), 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(sfd[0], (struct sockaddr *)&sin, &len), 0);
    cli->sum = FNV0;
    assert_int_equal(
        lc_loop_create_connection(loop, cli_factory, cli,
                                  &(lc_connection_opts_t){.host = "127.0.0.1",
                                                          .port_num = ntohs(sin.sin_port),
                                                          .ssl = cctx,
                                                          .server_hostname = ""},
                                  &f),
        0);
    lc_transport_t *ct = NULL;
    assert_int_equal(await_sent(loop, f, NULL), 0);
    assert_int_equal(lc_future_result(f, (void **)&ct), 0);
    lc_future_unref(f);
    for (int i = 0; i < 1000 && s->t == NULL; i++)
        run_for(loop, 0.01);
    assert_non_null(s->t);
    if (s->fut != NULL) {
        size_t sent = 0;
        assert_int_equal(await_sent(loop, s->fut, &sent), 0);
        lc_future_unref(s->fut);
        s->fut = NULL;
        for (int i = 0; i < 3000 && cli->got < sent; i++)
            run_for(loop, 0.01);
        assert_int_equal(cli->got, sent);
        lc_transport_close(s->t);
        wait_for(loop, &cli->lost, 1);
    } else {
        lc_transport_close(ct);
        wait_for(loop, &cli->lost, 1);
    }
    wait_for(loop, &s->lost, 1);
    close(s->file_fd);
    lc_server_free(server);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

static void test_sendfile_tls_fallback(void **state)
{
    lc_loop_t *loop = *state;
    static tls_srv_t s;
    static tls_cli_t cli;
    s = (tls_srv_t){.offset = 3, .count = 0, .fallback = true};
    cli = (tls_cli_t){0};
    tls_send(loop, MiB + 1, &s, &cli);
    assert_int_equal(s.start_err, 0);
    assert_int_equal(cli.got, MiB + 1 - 3);
    assert_true(cli.sum == file_sum(3, MiB + 1 - 3, 11));
    assert_int_equal(s.paused, 0); /* the fallback's flow control is its own */

    s = (tls_srv_t){.offset = 1000, .count = 600000, .fallback = true, .keep_high = true};
    cli = (tls_cli_t){0};
    tls_send(loop, MiB + 1, &s, &cli);
    assert_int_equal(cli.got, 600000);
    assert_true(cli.sum == file_sum(1000, 600000, 11));

    s = (tls_srv_t){.fallback = true};
    cli = (tls_cli_t){0};
    tls_send(loop, 0, &s, &cli);
    assert_int_equal(s.start_err, 0);
    assert_int_equal(cli.got, 0);
}

static void test_sendfile_tls_refused_without_fallback(void **state)
{
    lc_loop_t *loop = *state;
    static tls_srv_t s;
    static tls_cli_t cli;
    s = (tls_srv_t){.fallback = false};
    cli = (tls_cli_t){0};
    tls_send(loop, 100, &s, &cli);
    assert_int_equal(s.start_err, LC_ESENDFILENOTAVAILABLE);
    assert_null(s.fut);
    assert_int_equal(cli.got, 0);
}

/* ---- tests: raw sockets -----------------------------------------------------------------------
 */

/* A connected TCP pair: *a non-blocking (the sender), *b blocking. */
static void tcp_pair(int *a, int *b)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(ls, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(ls, 1), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sin, &len), 0);
    *b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 16384;
    setsockopt(*b, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    assert_int_equal(connect(*b, (struct sockaddr *)&sin, sizeof(sin)), 0);
    *a = accept(ls, NULL, NULL);
    assert_true(*a >= 0);
    close(ls);
    assert_int_equal(fcntl(*a, F_SETFL, fcntl(*a, F_GETFL) | O_NONBLOCK), 0);
}

static void sock_send_and_check(lc_loop_t *loop, size_t size, off_t offset, size_t count,
                                size_t expect, int slow_us)
{
    int a, b;
    tcp_pair(&a, &b);
    int fd = make_file(size, 21);
    static rx_t rx;
    rx = (rx_t){.want = expect, .slow_us = slow_us, .chunk = slow_us > 0 ? 32768 : 0};
    rx_start(&rx, b);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, offset, count, false, &fut), 0);
    size_t sent = 0;
    assert_int_equal(await_sent(loop, fut, &sent), 0);
    lc_future_unref(fut);
    assert_int_equal(sent, expect);
    shutdown(a, SHUT_WR);
    rx_join(&rx);
    assert_int_equal(rx.got, expect);
    assert_true(rx.sum == file_sum((size_t)offset, expect, 21));
    assert_int_equal(lseek(fd, 0, SEEK_CUR), expect > 0 ? offset + (off_t)expect : 0);
    run_for(loop, 0.02); /* our poll handle's close callback, before the fd goes */
    close(a);
    close(fd);
}

static void test_sock_sendfile_sizes_offsets_counts(void **state)
{
    lc_loop_t *loop = *state;
    sock_send_and_check(loop, 0, 0, 0, 0, 0);
    sock_send_and_check(loop, 1, 0, 0, 1, 0);
    sock_send_and_check(loop, MiB + 1, 0, 0, MiB + 1, 100); /* a slow reader */
    sock_send_and_check(loop, MiB + 1, 77, 300000, 300000, 0);
    sock_send_and_check(loop, 100 * MiB, 5, 0, 100 * MiB - 5, 0);
}

static void test_sock_sendfile_arguments_and_reset(void **state)
{
    lc_loop_t *loop = *state;
    int a, b;
    tcp_pair(&a, &b);
    int fd = make_file(32 * MiB, 1);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sock_sendfile(loop, b, fd, 0, 0, true, &fut),
                     LC_EINVAL); /* blocking */
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, -5, 0, true, &fut), LC_EINVAL);
    assert_int_equal(lc_loop_sock_sendfile(loop, -1, fd, 0, 0, true, &fut), LC_EINVAL);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(lc_loop_sock_sendfile(loop, p[1], fd, 0, 0, true, &fut), LC_EINVAL);
    assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(lc_loop_sock_sendfile(loop, p[1], fd, 0, 0, true, &fut),
                     LC_EINVAL); /* not a socket */
    assert_int_equal(lc_loop_sock_sendfile(loop, a, p[0], 0, 0, true, &fut),
                     LC_ESENDFILENOTAVAILABLE);
    close(p[0]);
    close(p[1]);
    /* The peer resets after 1 MiB: the future fails with the socket's error. */
    static rx_t rx;
    rx = (rx_t){.stop_after = MiB, .chunk = 65536};
    rx_start(&rx, b);
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, 0, 0, true, &fut), 0);
    int r = await_sent(loop, fut, NULL);
    assert_true(r == -ECONNRESET || r == -EPIPE);
    lc_future_unref(fut);
    rx_join(&rx);
    run_for(loop, 0.02);
    close(a);
    close(fd);
}

/* Cancelling a sock_sendfile to a peer that does not read leaves the socket usable. */
static void test_sock_sendfile_cancel(void **state)
{
    lc_loop_t *loop = *state;
    int a, b;
    tcp_pair(&a, &b);
    int fd = make_file(8 * MiB, 1);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, 0, 0, false, &fut), 0);
    run_for(loop, 0.05);
    assert_false(lc_future_done(fut));
    assert_int_equal(lc_future_cancel(fut), 1);
    run_for(loop, 0.02);
    lc_future_unref(fut);
    off_t pos = lseek(fd, 0, SEEK_CUR);
    assert_true(pos > 0 && pos < 8 * MiB);
    /* Nothing watches the socket any more: a new sock_sendfile may poll it. */
    static rx_t rx;
    rx = (rx_t){.want = (size_t)pos + 10};
    rx_start(&rx, b);
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, 0, 10, false, &fut), 0);
    assert_int_equal(await_sent(loop, fut, NULL), 0);
    lc_future_unref(fut);
    rx_join(&rx);
    assert_int_equal(rx.got, (size_t)pos + 10);
    run_for(loop, 0.02);
    close(a);
    close(fd);
}

static void count_cb(void *arg) { (*(int *)arg)++; }

/* sock_sendfile waits in the socket's write queue (engine/fdwatch.c): a sock_sendall made while
 * it waits goes out after the whole file; a writer added on the same fd is called alongside
 * (with libuv's one poll per fd this was UV_EEXIST); a transport's fd is refused. */
static void test_sock_sendfile_in_the_write_queue(void **state)
{
    lc_loop_t *loop = *state;
    int a, b;
    tcp_pair(&a, &b);
    size_t size = 4 * MiB;
    int fd = make_file(size, 9);
    lc_future_t *fut = NULL, *tail = NULL;
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, 0, 0, false, &fut), 0);
    run_for(loop, 0.05);
    assert_false(lc_future_done(fut)); /* the peer does not read yet: it waits */
    int writer_calls = 0;
    assert_int_equal(lc_loop_add_writer(loop, a, count_cb, &writer_calls), 0);
    assert_int_equal(lc_loop_sock_sendall(loop, a, "END", 3, &tail), 0);
    assert_false(lc_future_done(tail)); /* behind the file */
    static rx_t rx;
    rx = (rx_t){.want = size, .tail = true};
    rx_start(&rx, b);
    size_t sent = 0;
    assert_int_equal(await_sent(loop, fut, &sent), 0);
    assert_int_equal(sent, size);
    assert_int_equal(await_sent(loop, tail, NULL), 0);
    rx_join(&rx);
    assert_int_equal(rx.got, size + 3);
    assert_true(rx.sum == file_sum(0, size, 9));
    assert_memory_equal(rx.tailbuf, "END", 3);
    assert_true(writer_calls > 0);
    assert_int_equal(lc_loop_remove_writer(loop, a, NULL), 0);
    lc_future_unref(fut);
    lc_future_unref(tail);
    /* A transport's fd. */
    static conn_t tc;
    tc = (conn_t){0};
    lc_future_t *tf = NULL;
    assert_int_equal(lc_loop_connect_accepted_socket(loop, pipe_factory, &tc, a, NULL, &tf), 0);
    lc_transport_t *t = await_transport(loop, tf);
    fut = (lc_future_t *)1;
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, 0, 0, false, &fut), LC_EFDTRANSPORT);
    assert_null(fut);
    lc_transport_close(t); /* closes a */
    wait_for(loop, &tc.lost, 1);
    close(fd);
}

/* The loop closed with a sendfile in progress: the future fails, nothing leaks (ASan). */
static void test_sendfile_loop_closed_during(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    int fd = make_file(8 * MiB, 1);
    lc_future_t *f1 = NULL, *f2 = NULL;
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, false, &f1), 0);
    int a, b;
    tcp_pair(&a, &b);
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, 0, 0, false, &f2), 0);
    run_for(loop, 0.05);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(lc_future_result(f1, NULL), LC_ECLOSED);
    assert_int_equal(lc_future_result(f2, NULL), LC_ECLOSED);
    assert_int_equal(c.lost, 1);
    lc_future_unref(f1);
    lc_future_unref(f2);
    close(a);
    close(b);
    close(peer);
    close(fd);
}

/* ---- the fallback on a plain socket ----------------------------------------------------------
 *
 * /proc/self/cmdline is a regular file that sendfile(2) refuses (EINVAL) and pread reads: the
 * native path gives way to the fallback (pread + write), or fails without it. */

static size_t read_cmdline(char *buf, size_t cap)
{
    int fd = open("/proc/self/cmdline", O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap);
    assert_true(n > 3);
    close(fd);
    return (size_t)n;
}

static void test_sendfile_fallback_when_sendfile_refuses(void **state)
{
    lc_loop_t *loop = *state;
    static char want[4096];
    size_t wlen = read_cmdline(want, sizeof(want));
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    int fd = open("/proc/self/cmdline", O_RDONLY);
    assert_true(fd >= 0);
    lc_future_t *fut = NULL;
    /* Without the fallback: refused before any byte went; the transport is as it was. */
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 0, 0, false, &fut), 0);
    assert_int_equal(await_sent(loop, fut, NULL), LC_ESENDFILENOTAVAILABLE);
    lc_future_unref(fut);
    assert_true(lc_transport_is_reading(t));
    assert_int_equal(c.lost, 0);
    /* With it: the bytes from offset 2, by pread + write. */
    assert_int_equal(lc_loop_sendfile(loop, t, fd, 2, 0, true, &fut), 0);
    size_t sent = 0;
    assert_int_equal(await_sent(loop, fut, &sent), 0);
    lc_future_unref(fut);
    assert_int_equal(sent, wlen - 2);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)wlen);
    lc_transport_close(t);
    wait_for(loop, &c.lost, 1);
    static char got[4096];
    int how = 0;
    size_t n = 0;
    for (int i = 0; i < 1000 && how == 0; i++) {
        ssize_t k = recv(peer, got + n, sizeof(got) - n, 0);
        if (k > 0)
            n += (size_t)k;
        else if (k == 0)
            how = 1;
        else
            usleep(1000);
    }
    assert_int_equal(n, wlen - 2);
    assert_memory_equal(got, want + 2, wlen - 2);
    close(peer);

    /* The same on a raw socket. */
    int a, b;
    tcp_pair(&a, &b);
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, 0, 0, false, &fut), 0);
    assert_int_equal(await_sent(loop, fut, NULL), LC_ESENDFILENOTAVAILABLE);
    lc_future_unref(fut);
    assert_int_equal(lc_loop_sock_sendfile(loop, a, fd, 1, 0, true, &fut), 0);
    assert_int_equal(await_sent(loop, fut, &sent), 0);
    lc_future_unref(fut);
    assert_int_equal(sent, wlen - 1);
    shutdown(a, SHUT_WR);
    n = 0;
    for (;;) {
        ssize_t k = recv(b, got + n, sizeof(got) - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    assert_int_equal(n, wlen - 1);
    assert_memory_equal(got, want + 1, wlen - 1);
    run_for(loop, 0.02);
    close(a);
    close(b);
    close(fd);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(certdir, sizeof(certdir), "/tmp/lc_sf_XXXXXX");
    if (mkdtemp(certdir) == NULL)
        return -1;
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", certdir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", certdir);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=localhost >/dev/null 2>&1",
             key_path, cert_path);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", certdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    lc_test_watchdog(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sendfile_sizes, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_offsets_and_counts, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_100mib, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_slow_reader_after_queued_data,
                                        lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_peer_resets_mid_file, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_peer_gone_before_the_call, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_close_and_abort_fail_it, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_cancel, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_send_timeout, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_arguments, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_tls_fallback, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_tls_refused_without_fallback,
                                        lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sock_sendfile_sizes_offsets_counts, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sock_sendfile_arguments_and_reset, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sock_sendfile_cancel, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sock_sendfile_in_the_write_queue, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_loop_closed_during, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_sendfile_fallback_when_sendfile_refuses,
                                        lc_test_loop_setup, lc_test_loop_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
