/* The sock_* calls on real sockets: the non-blocking rule, try-first, waiting, sendall's all or
 * nothing, cancellation, order of concurrent calls, connect (numeric, by name, refused, AF_UNIX)
 * and accept, transports' fds, mixing with add_reader, sockets closed while a call is pending,
 * the loop's close; and an echo server and client made of sock_* calls against Python's asyncio
 * as the other side, byte for byte. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void run_for(lc_loop_t *loop, double seconds)
{
    lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, NULL);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

/* Runs until fut is done (at most 30 s) and returns its outcome. */
static int await_fut(lc_loop_t *loop, lc_future_t *fut, void **res)
{
    lc_handle_t *guard = NULL;
    lc_loop_call_later(loop, 30, lc_test_stop_cb, loop, &guard);
    int r = lc_loop_run_until_complete(loop, fut, res);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    assert_int_not_equal(r, LC_ESTOPPED);
    return r;
}

static void test_sock_requires_nonblocking(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    lc_future_t *f = (lc_future_t *)1;
    char buf[4];
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 4, &f), LC_EINVAL);
    assert_null(f);
    assert_int_equal(lc_loop_sock_recv_into(loop, sv[0], buf, 4, &f), LC_EINVAL);
    assert_int_equal(lc_loop_sock_sendall(loop, sv[0], "x", 1, &f), LC_EINVAL);
    assert_int_equal(lc_loop_sock_accept(loop, sv[0], &f), LC_EINVAL);
    assert_int_equal(lc_loop_sock_connect(loop, sv[0], "127.0.0.1", 1, &f), LC_EINVAL);
    assert_null(f);
    /* Nothing was sent, nothing queued. */
    assert_int_equal(recv(sv[1], buf, 4, MSG_DONTWAIT), -1);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 4, &f), -EBADF);
}

/* The non-blocking flag is cached on fd's watcher (engine/fdwatch.c, "Non-blocking"). A socket
 * closed after a call waited on it leaves its watcher; a blocking socket that comes back under
 * the number is found when a call waiting on it is checked (engine/fdwatch.c, "Closed fds": a
 * sweep within 10 ms), which fails it with LC_EINVAL; a try on it never blocks the loop. */
static void test_sock_nonblocking_flag_of_reused_number(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int num = sv[0];
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, num, 4, &f), 0);
    assert_false(lc_future_done(f)); /* waited: the watcher is made */
    assert_int_equal(write(sv[1], "a", 1), 1);
    lc_sock_data_t *d = NULL;
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    lc_future_unref(f);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0); /* blocking */
    int fd = sv[0] == num ? sv[0] : sv[1];
    int peer = fd == sv[0] ? sv[1] : sv[0];
    assert_int_equal(fd, num);
    assert_int_equal(lc_loop_sock_recv(loop, fd, 4, &f), 0); /* trusted the old watcher: waits */
    assert_false(lc_future_done(f));
    assert_int_equal(await_fut(loop, f, NULL), LC_EINVAL);
    lc_future_unref(f);
    /* And once the number has no watcher of the old file, every call is refused at once. */
    assert_int_equal(write(peer, "b", 1), 1);
    assert_int_equal(lc_loop_sock_recv(loop, fd, 4, &f), LC_EINVAL);
    assert_int_equal(lc_loop_sock_sendall(loop, fd, "x", 1, &f), LC_EINVAL);
    close(sv[0]);
    close(sv[1]);
}

static void count_handler(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg);

/* A socket closed properly (no call pending) leaves its idle watcher; a socket made elsewhere
 * (not by sock_accept) that gets the number back is not in the watchers' epoll, and a call that
 * trusted the old watcher would wait for ever: the sweep finds it (5-10 ms), hands the call to a
 * fresh watcher, and the data arrives. Nothing is reported (nothing was misused). */
static void test_sock_number_reused_by_another_socket(void **state)
{
    lc_loop_t *loop = *state;
    int reports = 0;
    lc_loop_set_exception_handler(loop, count_handler, &reports);
    for (int round = 0; round < 3; round++) {
        int sv[2];
        pair(sv);
        lc_future_t *f = NULL;
        assert_int_equal(lc_loop_sock_recv(loop, sv[0], 8, &f), 0);
        assert_int_equal(write(sv[1], "old", 3), 3);
        lc_sock_data_t *d = NULL;
        assert_int_equal(await_fut(loop, f, (void **)&d), 0);
        lc_future_unref(f);
        int num = sv[0];
        close(sv[0]);
        close(sv[1]);
        pair(sv);
        int fd = sv[0] == num ? sv[0] : sv[1];
        int peer = fd == sv[0] ? sv[1] : sv[0];
        assert_int_equal(fd, num);
        assert_int_equal(lc_loop_sock_recv(loop, fd, 8, &f), 0);
        assert_false(lc_future_done(f));
        assert_int_equal(write(peer, "new", 3), 3);
        assert_int_equal(await_fut(loop, f, (void **)&d), 0);
        assert_int_equal(d->len, 3);
        assert_memory_equal(d->data, "new", 3);
        lc_future_unref(f);
        /* And the fresh watcher serves the next calls directly. */
        assert_int_equal(lc_loop_sock_sendall(loop, fd, "ok", 2, &f), 0);
        assert_int_equal(await_fut(loop, f, NULL), 0);
        lc_future_unref(f);
        char buf[2];
        assert_int_equal(read(peer, buf, 2), 2);
        close(sv[0]);
        close(sv[1]);
    }
    assert_int_equal(reports, 0);
}

/* A socket with an idle watcher closed while a dup of it lives on, and the number reused: the
 * old file's edge-triggered item cannot be deleted by number and fires at each of its edges; the
 * loop rebuilds its epoll after a few (reported once), and the new socket is served throughout. */
static void test_sock_closed_socket_alive_in_dup(void **state)
{
    lc_loop_t *loop = *state;
    int reports = 0;
    lc_loop_set_exception_handler(loop, count_handler, &reports);
    int sv[2];
    pair(sv);
    lc_future_t *f = NULL;
    lc_sock_data_t *d = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 8, &f), 0);
    assert_int_equal(write(sv[1], "a", 1), 1);
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    lc_future_unref(f);
    int num = sv[0];
    int dup_fd = fcntl(num, F_DUPFD_CLOEXEC, 100);
    assert_true(dup_fd >= 100);
    close(num);
    int sv2[2];
    pair(sv2);
    int fd = sv2[0] == num ? sv2[0] : sv2[1];
    int peer = fd == sv2[0] ? sv2[1] : sv2[0];
    assert_int_equal(fd, num);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(lc_loop_sock_recv(loop, fd, 8, &f), 0);
        assert_int_equal(write(sv[1], "x", 1), 1); /* an edge of the old file */
        run_for(loop, 0.002);
        assert_int_equal(write(peer, "y", 1), 1);
        assert_int_equal(await_fut(loop, f, (void **)&d), 0);
        assert_int_equal(d->data[0], 'y');
        lc_future_unref(f);
    }
    assert_int_equal(reports, 1); /* the rebuild */
    close(dup_fd);
    close(sv[1]);
    close(sv2[0]);
    close(sv2[1]);
}

static void test_sock_recv_tries_first(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    assert_int_equal(write(sv[1], "hello", 5), 5);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 100, &f), 0);
    assert_true(lc_future_done(f)); /* no wait: the data was there */
    lc_sock_data_t *d = NULL;
    assert_int_equal(lc_future_result(f, (void **)&d), 0);
    assert_int_equal(d->len, 5);
    assert_memory_equal(d->data, "hello", 5);
    lc_future_unref(f);

    assert_int_equal(write(sv[1], "abcdef", 6), 6);
    char buf[4];
    assert_int_equal(lc_loop_sock_recv_into(loop, sv[0], buf, sizeof(buf), &f), 0);
    assert_true(lc_future_done(f));
    void *res = NULL;
    assert_int_equal(lc_future_result(f, &res), 0);
    assert_int_equal(lc_sock_count(res), 4);
    assert_memory_equal(buf, "abcd", 4);
    lc_future_unref(f);

    assert_int_equal(lc_loop_sock_sendall(loop, sv[0], "pong", 4, &f), 0);
    assert_true(lc_future_done(f));
    assert_int_equal(lc_future_result(f, NULL), 0);
    lc_future_unref(f);
    assert_int_equal(read(sv[1], buf, 4), 4);
    assert_memory_equal(buf, "pong", 4);

    /* End of stream: len 0. */
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 100, &f), 0);
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    assert_int_equal(d->len, 2);
    lc_future_unref(f);
    close(sv[1]);
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 100, &f), 0);
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    assert_int_equal(d->len, 0);
    lc_future_unref(f);
    close(sv[0]);
}

/* The drained hint (engine/fdmap.h): after a recv that found the queue empty (a short read), the
 * next read waits without trying; data that came meanwhile is still delivered, in order, from the
 * next poll. A full read leaves no hint: the next call tries at once. */
static void test_sock_recv_after_short_read(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    lc_future_t *f = NULL;
    lc_sock_data_t *d = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 10, &f), 0); /* waits: a watcher is made */
    assert_false(lc_future_done(f));
    assert_int_equal(write(sv[1], "ab", 2), 2);
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    assert_int_equal(d->len, 2);
    lc_future_unref(f);
    assert_int_equal(write(sv[1], "cdefgh", 6), 6); /* came after the short read */
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 10, &f), 0);
    assert_int_equal(await_fut(loop, f, (void **)&d), 0); /* from the next poll */
    assert_int_equal(d->len, 6);
    assert_memory_equal(d->data, "cdefgh", 6);
    lc_future_unref(f);
    assert_int_equal(write(sv[1], "ijkl", 4), 4);
    run_for(loop, 0.01);
    char buf[2];
    assert_int_equal(lc_loop_sock_recv_into(loop, sv[0], buf, 2, &f), 0);
    assert_int_equal(await_fut(loop, f, NULL), 0);
    lc_future_unref(f);
    assert_int_equal(lc_loop_sock_recv_into(loop, sv[0], buf, 2, &f), 0);
    assert_true(lc_future_done(f)); /* the last read filled its buffer: tried at once */
    assert_memory_equal(buf, "kl", 2);
    lc_future_unref(f);
    close(sv[0]);
    close(sv[1]);
}

static void write_later(void *arg)
{
    int *fd = arg;
    assert_int_equal(write(fd[0], (char *)&fd[1], 1), 1);
}

static void test_sock_recv_waits(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 100, &f), 0);
    assert_false(lc_future_done(f));
    run_for(loop, 0.05);
    assert_false(lc_future_done(f));
    int arg[2] = {sv[1], 'z'};
    lc_loop_call_later(loop, 0.05, write_later, arg, NULL);
    lc_sock_data_t *d = NULL;
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    assert_int_equal(d->len, 1);
    assert_int_equal(d->data[0], 'z');
    lc_future_unref(f);
    close(sv[0]);
    close(sv[1]);
}

/* ---- sendall and a reader task ----------------------------------------------------------------
 */

typedef struct {
    lc_loop_t *loop;
    int fd;
    unsigned char *buf;
    size_t want, got;
    size_t chunk;
    double delay; /* a slow reader: sleeps between reads */
} reader_t;

static int read_all(void *arg, void **result)
{
    (void)result;
    reader_t *r = arg;
    while (r->got < r->want) {
        lc_future_t *f = NULL;
        size_t n = r->want - r->got < r->chunk ? r->want - r->got : r->chunk;
        int e = lc_loop_sock_recv_into(r->loop, r->fd, r->buf + r->got, n, &f);
        if (e != 0)
            return e;
        void *res = NULL;
        e = lc_await(f, &res);
        lc_future_unref(f);
        if (e != 0)
            return e;
        if (lc_sock_count(res) == 0)
            return -EPIPE;
        r->got += lc_sock_count(res);
        if (r->delay > 0)
            lc_sleep(r->delay);
    }
    return 0;
}

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
    return p;
}

static void test_sock_sendall_everything(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    size_t n = 8u << 20;
    unsigned char *data = pattern(n, 1);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_sendall(loop, sv[0], data, n, &f), 0);
    assert_false(lc_future_done(f)); /* more than the socket buffers hold */
    memset(data, 0, n);              /* the rest was copied: the caller's buffer is free */
    reader_t r = {
        .loop = loop, .fd = sv[1], .buf = malloc(n), .want = n, .chunk = 65536, .delay = 0.0005};
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, read_all, &r, &task), 0);
    assert_int_equal(await_fut(loop, f, NULL), 0);
    assert_int_equal(await_fut(loop, task, NULL), 0);
    unsigned char *want = pattern(n, 1);
    assert_memory_equal(r.buf, want, n);
    lc_future_unref(f);
    lc_future_unref(task);
    /* A peer that goes away: sendall fails with the error (EPIPE), never SIGPIPE. */
    close(sv[1]);
    assert_int_equal(lc_loop_sock_sendall(loop, sv[0], want, n, &f), 0);
    assert_int_equal(await_fut(loop, f, NULL), -EPIPE);
    lc_future_unref(f);
    close(sv[0]);
    free(want);
    free(data);
    free(r.buf);
}

/* ---- cancellation ------------------------------------------------------------------------- */

static void test_sock_cancel_leaves_socket_usable(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 100, &f), 0);
    run_for(loop, 0.02);
    assert_int_equal(lc_future_cancel(f), 1);
    assert_int_equal(write(sv[1], "abc", 3), 3);
    run_for(loop, 0.05);
    assert_int_equal(lc_future_result(f, NULL), LC_ECANCELLED);
    lc_future_unref(f);
    char peek[8];
    assert_int_equal(recv(sv[0], peek, sizeof(peek), MSG_PEEK), 3); /* not consumed */
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 100, &f), 0);
    lc_sock_data_t *d = NULL;
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    assert_int_equal(d->len, 3);
    lc_future_unref(f);

    /* Cancel in the same iteration as the data comes: still not consumed. */
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 100, &f), 0);
    assert_int_equal(write(sv[1], "de", 2), 2);
    lc_future_cancel(f);
    run_for(loop, 0.05);
    lc_future_unref(f);
    assert_int_equal(recv(sv[0], peek, sizeof(peek), MSG_PEEK), 2);
    assert_int_equal(read(sv[0], peek, 2), 2);

    /* A cancelled sendall stops sending; the socket takes new sends afterwards. */
    size_t n = 8u << 20;
    unsigned char *data = pattern(n, 2);
    assert_int_equal(lc_loop_sock_sendall(loop, sv[0], data, n, &f), 0);
    assert_false(lc_future_done(f));
    lc_future_cancel(f);
    run_for(loop, 0.02);
    lc_future_unref(f);
    /* Drain what went out, then send a small message. */
    while (recv(sv[1], data, n, MSG_DONTWAIT) > 0) {
    }
    assert_int_equal(lc_loop_sock_sendall(loop, sv[0], "ok", 2, &f), 0);
    assert_int_equal(await_fut(loop, f, NULL), 0);
    lc_future_unref(f);
    assert_int_equal(read(sv[1], peek, 2), 2);
    assert_memory_equal(peek, "ok", 2);
    free(data);
    close(sv[0]);
    close(sv[1]);
}

/* ---- order ---------------------------------------------------------------------------------- */

static void test_sock_concurrent_calls_in_order(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    char b[3] = {0};
    lc_future_t *f[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(lc_loop_sock_recv_into(loop, sv[0], &b[i], 1, &f[i]), 0);
    run_for(loop, 0.02);
    assert_int_equal(write(sv[1], "abc", 3), 3);
    for (int i = 0; i < 3; i++) {
        void *res = NULL;
        assert_int_equal(await_fut(loop, f[i], &res), 0);
        assert_int_equal(lc_sock_count(res), 1);
        lc_future_unref(f[i]);
    }
    assert_memory_equal(b, "abc", 3);
    /* A call made while earlier ones wait goes behind them, even if data is there. */
    assert_int_equal(lc_loop_sock_recv_into(loop, sv[0], &b[0], 1, &f[0]), 0);
    assert_int_equal(write(sv[1], "xy", 2), 2);
    assert_int_equal(lc_loop_sock_recv_into(loop, sv[0], &b[1], 1, &f[1]), 0);
    assert_int_equal(await_fut(loop, f[1], NULL), 0);
    assert_true(lc_future_done(f[0]));
    assert_int_equal(b[0], 'x');
    assert_int_equal(b[1], 'y');
    lc_future_unref(f[0]);
    lc_future_unref(f[1]);

    /* Two sendalls: every byte of the first before the second's. */
    size_t na = 4u << 20, nb = 1u << 20;
    unsigned char *a = malloc(na), *bb = malloc(nb);
    memset(a, 'A', na);
    memset(bb, 'B', nb);
    assert_int_equal(lc_loop_sock_sendall(loop, sv[0], a, na, &f[0]), 0);
    assert_int_equal(lc_loop_sock_sendall(loop, sv[0], bb, nb, &f[1]), 0);
    reader_t r = {
        .loop = loop, .fd = sv[1], .buf = malloc(na + nb), .want = na + nb, .chunk = 100000};
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, read_all, &r, &task), 0);
    assert_int_equal(await_fut(loop, task, NULL), 0);
    assert_int_equal(await_fut(loop, f[0], NULL), 0);
    assert_int_equal(await_fut(loop, f[1], NULL), 0);
    for (size_t i = 0; i < na + nb; i++)
        if (r.buf[i] != (i < na ? 'A' : 'B'))
            fail_msg("byte %zu out of order", i);
    lc_future_unref(f[0]);
    lc_future_unref(f[1]);
    lc_future_unref(task);
    free(a);
    free(bb);
    free(r.buf);
    close(sv[0]);
    close(sv[1]);
}

/* ---- connect and accept ---------------------------------------------------------------------- */

static int listener(int family, uint16_t *port)
{
    int l = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        len = sizeof(*sin6);
    }
    assert_int_equal(bind(l, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(listen(l, 16), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&ss, &len), 0);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return l;
}

static int nb_socket(int family)
{
    int s = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    return s;
}

/* Hostile peers over TCP on 127.0.0.1: one that trickles (a byte per iteration: each waiting
 * recv gets what is there, in order), one that never reads (sendall waits holding one copy of
 * the unsent rest, and cancelling it leaves the socket usable), one that resets mid-way (the
 * waiting recv and the next sendall fail with the socket's error, never a signal). */
static void test_sock_hostile_tcp_peers(void **state)
{
    lc_loop_t *loop = *state;
    uint16_t port = 0;
    int l = listener(AF_INET, &port);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
    lc_future_t *f = NULL;
    lc_sock_accepted_t *a = NULL;
    assert_int_equal(lc_loop_sock_accept(loop, l, &f), 0);
    assert_int_equal(await_fut(loop, f, (void **)&a), 0);
    int fd = a->fd;
    lc_future_unref(f);
    /* Trickle: "slow" a byte at a time, each to a waiting recv. */
    char got[8] = {0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lc_loop_sock_recv(loop, fd, 64, &f), 0);
        run_for(loop, 0.005);
        assert_int_equal(write(c, &"slow"[i], 1), 1);
        lc_sock_data_t *d = NULL;
        assert_int_equal(await_fut(loop, f, (void **)&d), 0);
        assert_int_equal(d->len, 1);
        got[i] = (char)d->data[0];
        lc_future_unref(f);
    }
    assert_string_equal(got, "slow");
    /* Never reads: 32 MiB cannot all go; the call waits with the rest copied once. */
    size_t big = 32u << 20;
    char *buf = calloc(1, big);
    assert_non_null(buf);
    assert_int_equal(lc_loop_sock_sendall(loop, fd, buf, big, &f), 0);
    free(buf); /* the call holds its own copy of what did not go */
    run_for(loop, 0.05);
    assert_false(lc_future_done(f));
    assert_int_equal(lc_future_cancel(f), 1);
    run_for(loop, 0.01);
    lc_future_unref(f);
    /* Reset mid-way: a waiting recv fails with the socket's error. */
    assert_int_equal(lc_loop_sock_recv(loop, fd, 64, &f), 0);
    assert_false(lc_future_done(f));
    struct linger lg = {1, 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(c); /* RST: it had unread data */
    int recv_err = await_fut(loop, f, NULL);
    assert_true(recv_err == -ECONNRESET || recv_err == -EPIPE);
    lc_future_unref(f);
    assert_int_equal(lc_loop_sock_sendall(loop, fd, "x", 1, &f), 0);
    int send_err = await_fut(loop, f, NULL);
    assert_true(send_err == -EPIPE || send_err == -ECONNRESET);
    lc_future_unref(f);
    close(fd);
    close(l);
}

static void check_connected_pair(lc_loop_t *loop, int a, int b)
{
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_sendall(loop, a, "ping", 4, &f), 0);
    assert_int_equal(await_fut(loop, f, NULL), 0);
    lc_future_unref(f);
    char buf[4];
    assert_int_equal(lc_loop_sock_recv_into(loop, b, buf, 4, &f), 0);
    void *res = NULL;
    assert_int_equal(await_fut(loop, f, &res), 0);
    assert_int_equal(lc_sock_count(res), 4);
    assert_memory_equal(buf, "ping", 4);
    lc_future_unref(f);
}

static void accept_and_connect(lc_loop_t *loop, int family, const char *host)
{
    uint16_t port;
    int l = listener(family, &port);
    lc_future_t *af = NULL, *cf = NULL;
    assert_int_equal(lc_loop_sock_accept(loop, l, &af), 0);
    assert_false(lc_future_done(af));
    int c = nb_socket(family);
    assert_int_equal(lc_loop_sock_connect(loop, c, host, port, &cf), 0);
    assert_int_equal(await_fut(loop, cf, NULL), 0);
    lc_sock_accepted_t *acc = NULL;
    assert_int_equal(await_fut(loop, af, (void **)&acc), 0);
    assert_true(acc->fd >= 0);
    assert_true(fcntl(acc->fd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(acc->addr.ss_family, family);
    /* The peer address is the client's local one. */
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    assert_int_equal(getsockname(c, (struct sockaddr *)&local, &len), 0);
    assert_int_equal(acc->addrlen, len);
    assert_memory_equal(&acc->addr, &local, len);
    check_connected_pair(loop, c, acc->fd);
    check_connected_pair(loop, acc->fd, c);
    close(acc->fd);
    lc_future_unref(af);
    lc_future_unref(cf);
    close(c);
    close(l);
}

static void test_sock_connect_and_accept(void **state)
{
    lc_loop_t *loop = *state;
    accept_and_connect(loop, AF_INET, "127.0.0.1");
    accept_and_connect(loop, AF_INET6, "::1");
    accept_and_connect(loop, AF_INET, "localhost"); /* through getaddrinfo */
}

static void test_sock_connect_errors(void **state)
{
    lc_loop_t *loop = *state;
    /* A port nobody listens on: bind one, close it. */
    uint16_t port;
    int l = listener(AF_INET, &port);
    close(l);
    int c = nb_socket(AF_INET);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_connect(loop, c, "127.0.0.1", port, &f), 0);
    assert_int_equal(await_fut(loop, f, NULL), -ECONNREFUSED);
    lc_future_unref(f);
    close(c);
    /* A name that does not resolve: the resolver's error. */
    c = nb_socket(AF_INET);
    assert_int_equal(lc_loop_sock_connect(loop, c, "no-such-host.invalid", 80, &f), 0);
    int e = await_fut(loop, f, NULL);
    assert_true(e < 0 && e != -ECONNREFUSED);
    lc_future_unref(f);
    /* Cancelled while resolving: nothing happens when the answer comes. */
    assert_int_equal(lc_loop_sock_connect(loop, c, "localhost", port, &f), 0);
    lc_future_cancel(f);
    run_for(loop, 0.2);
    assert_int_equal(lc_future_result(f, NULL), LC_ECANCELLED);
    lc_future_unref(f);
    close(c);
    /* AF_UNIX, by address. */
    char path[64];
    snprintf(path, sizeof(path), "/tmp/lc-sock-%d.sock", (int)getpid());
    unlink(path);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int ul = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(ul, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(ul, 4), 0);
    int uc = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_int_equal(lc_loop_sock_connect(loop, uc, "x", 1, &f), LC_EINVAL);
    assert_int_equal(lc_loop_sock_connect_addr(loop, uc, (struct sockaddr *)&sun, sizeof(sun), &f),
                     0);
    assert_int_equal(await_fut(loop, f, NULL), 0);
    lc_future_unref(f);
    lc_future_t *af = NULL;
    assert_int_equal(lc_loop_sock_accept(loop, ul, &af), 0);
    lc_sock_accepted_t *acc = NULL;
    assert_int_equal(await_fut(loop, af, (void **)&acc), 0);
    check_connected_pair(loop, uc, acc->fd);
    close(acc->fd);
    lc_future_unref(af);
    close(uc);
    close(ul);
    unlink(path);
}

/* A cancelled accept takes no connection: the next accept gets it. */
static void test_sock_accept_cancel(void **state)
{
    lc_loop_t *loop = *state;
    uint16_t port;
    int l = listener(AF_INET, &port);
    lc_future_t *af = NULL;
    assert_int_equal(lc_loop_sock_accept(loop, l, &af), 0);
    run_for(loop, 0.02);
    assert_int_equal(lc_future_cancel(af), 1);
    lc_future_unref(af);
    int c = nb_socket(AF_INET);
    lc_future_t *cf = NULL;
    assert_int_equal(lc_loop_sock_connect(loop, c, "127.0.0.1", port, &cf), 0);
    assert_int_equal(await_fut(loop, cf, NULL), 0);
    run_for(loop, 0.05);
    assert_int_equal(lc_loop_sock_accept(loop, l, &af), 0);
    assert_true(lc_future_done(af)); /* the connection was still queued: taken at once */
    lc_sock_accepted_t *acc = NULL;
    assert_int_equal(lc_future_result(af, (void **)&acc), 0);
    check_connected_pair(loop, c, acc->fd);
    close(acc->fd);
    lc_future_unref(af);
    lc_future_unref(cf);
    close(c);
    close(l);
}

/* ---- mixing, transports, closed sockets, the loop's close --------------------------------- */

typedef struct {
    int fd;
    int calls;
} rd_t;

static void on_readable(void *arg)
{
    rd_t *r = arg;
    char buf[64];
    while (read(r->fd, buf, sizeof(buf)) > 0) {
    }
    r->calls++;
}

static void test_sock_mixes_with_add_reader(void **state)
{
    lc_loop_t *loop = *state;
    int a[2], b[2];
    pair(a);
    pair(b);
    rd_t r = {.fd = a[0]};
    assert_int_equal(lc_loop_add_reader(loop, a[0], on_readable, &r), 0);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, b[0], 10, &f), 0);
    assert_int_equal(write(a[1], "1", 1), 1);
    assert_int_equal(write(b[1], "2", 1), 1);
    lc_sock_data_t *d = NULL;
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    assert_int_equal(d->data[0], '2');
    lc_future_unref(f);
    for (int i = 0; i < 200 && r.calls == 0; i++)
        run_for(loop, 0.01);
    assert_int_equal(r.calls, 1);
    /* A reader and a sock_recv on the same fd: both are told. */
    rd_t peek = {.fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, b[0], on_readable, &peek), 0);
    assert_int_equal(lc_loop_sock_recv(loop, b[0], 10, &f), 0);
    assert_int_equal(write(b[1], "3", 1), 1);
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    assert_int_equal(d->data[0], '3');
    assert_true(peek.calls >= 1);
    lc_future_unref(f);
    assert_int_equal(lc_loop_remove_reader(loop, a[0], NULL), 0);
    assert_int_equal(lc_loop_remove_reader(loop, b[0], NULL), 0);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

static void count_handler(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    (void)ctx;
    ++*(int *)arg;
}

/* A recv left pending on a socket the user closes: it never completes by itself (epoll forgot
 * the fd); once the number comes back and a call is made for the new socket, the stale call
 * fails with -EBADF (reported) and the new one is served. */
static void test_sock_closed_with_call_pending(void **state)
{
    lc_loop_t *loop = *state;
    int reports = 0;
    lc_loop_set_exception_handler(loop, count_handler, &reports);
    int sv[2];
    pair(sv);
    lc_future_t *old = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 10, &old), 0);
    run_for(loop, 0.02);
    int num = sv[0];
    close(sv[0]);
    close(sv[1]);
    run_for(loop, 0.05);
    assert_false(lc_future_done(old));
    pair(sv);
    int fd = sv[0] == num ? sv[0] : sv[1];
    int peer = fd == sv[0] ? sv[1] : sv[0];
    assert_int_equal(fd, num);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, fd, 10, &f), 0);
    assert_true(lc_future_done(old));
    assert_int_equal(lc_future_result(old, NULL), -EBADF);
    assert_int_equal(reports, 1);
    assert_int_equal(write(peer, "n", 1), 1);
    lc_sock_data_t *d = NULL;
    assert_int_equal(await_fut(loop, f, (void **)&d), 0);
    assert_int_equal(d->data[0], 'n');
    lc_future_unref(f);
    lc_future_unref(old);
    /* Closed right after the call (libuv would have aborted on it): the sweep that checks
     * calls still waiting after 5-10 ms finds the fd closed, fails the call and reports it. */
    assert_int_equal(lc_loop_sock_recv(loop, fd, 10, &f), 0);
    close(fd);
    run_for(loop, 0.05);
    assert_true(lc_future_done(f));
    assert_int_equal(lc_future_result(f, NULL), -EBADF);
    assert_int_equal(reports, 2);
    lc_future_unref(f);
    /* Closed after that check: it stays pending, costs no CPU, and can be cancelled. */
    pair(sv);
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 10, &f), 0);
    run_for(loop, 0.05); /* checked */
    close(sv[0]);
    run_for(loop, 0.05);
    assert_false(lc_future_done(f));
    assert_int_equal(lc_future_cancel(f), 1);
    run_for(loop, 0.02);
    assert_true(lc_future_cancelled(f));
    assert_int_equal(reports, 2);
    lc_future_unref(f);
    close(sv[1]);
    close(peer);
}

static void test_sock_loop_close_fails_pending(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    int sv[2], sv2[2];
    pair(sv);
    pair(sv2);
    lc_future_t *f = NULL, *g = NULL, *c = NULL, *cancelled = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 10, &f), 0);
    size_t n = 8u << 20;
    unsigned char *data = pattern(n, 3);
    assert_int_equal(lc_loop_sock_sendall(loop, sv2[1], data, n, &g), 0); /* nobody reads */
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 10, &cancelled), 0);
    int cs = nb_socket(AF_INET);
    assert_int_equal(lc_loop_sock_connect(loop, cs, "localhost", 9, &c), 0);
    run_for(loop, 0.02);
    lc_future_cancel(cancelled);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(lc_future_result(f, NULL), LC_ECLOSED);
    assert_int_equal(lc_future_result(g, NULL), LC_ECLOSED);
    assert_int_equal(lc_future_result(cancelled, NULL), LC_ECANCELLED);
    assert_true(lc_future_done(c));
    lc_future_result(c, NULL);
    lc_future_unref(f);
    assert_int_equal(lc_loop_sock_recv(loop, sv[0], 10, &f), LC_ECLOSED);
    assert_null(f);
    lc_future_unref(g);
    lc_future_unref(cancelled);
    lc_future_unref(c);
    assert_int_equal(lc_loop_free(loop), 0);
    free(data);
    close(sv[0]);
    close(sv[1]);
    close(sv2[0]);
    close(sv2[1]);
    close(cs);
}

/* ---- Python's asyncio as the other side ---------------------------------------------------- */

/* The messages both sides exchange: 200 of sizes drawn from a fixed list, random bytes. */
static const char *py_messages =
    "import asyncio, random, sys\n"
    "def messages():\n"
    "    rnd = random.Random(7)\n"
    "    for i in range(200):\n"
    "        n = rnd.choice([1, 7, 100, 1500, 65536, 300000])\n"
    "        yield (bytes(rnd.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1))[:n]\n";

/* Python as the client of our sock_* echo server: checks each echo byte for byte. */
static const char *py_client = "async def main(port):\n"
                               "    r, w = await asyncio.open_connection('127.0.0.1', port)\n"
                               "    total = 0\n"
                               "    for i, m in enumerate(messages()):\n"
                               "        w.write(m)\n"
                               "        back = await r.readexactly(len(m))\n"
                               "        assert back == m, 'mismatch at message %d' % i\n"
                               "        total += len(m)\n"
                               "    w.close()\n"
                               "    await w.wait_closed()\n"
                               "    print('ok', total, flush=True)\n"
                               "asyncio.run(main(int(sys.argv[1])))\n";

/* Python as the echo server of our sock_* client: prints its port, serves one connection, and
 * prints how many bytes it echoed. */
static const char *py_server = "async def main():\n"
                               "    done = asyncio.get_running_loop().create_future()\n"
                               "    async def echo(r, w):\n"
                               "        total = 0\n"
                               "        while True:\n"
                               "            data = await r.read(65536)\n"
                               "            if not data:\n"
                               "                break\n"
                               "            w.write(data)\n"
                               "            await w.drain()\n"
                               "            total += len(data)\n"
                               "        w.close()\n"
                               "        done.set_result(total)\n"
                               "    srv = await asyncio.start_server(echo, '127.0.0.1', 0)\n"
                               "    print(srv.sockets[0].getsockname()[1], flush=True)\n"
                               "    total = await asyncio.wait_for(done, 120)\n"
                               "    srv.close()\n"
                               "    print('ok', total, flush=True)\n"
                               "asyncio.run(main())\n";

/* Starts python3 on the script (messages + body) with arg; its stdout is *out (read end). */
static pid_t spawn_python(const char *body, const char *arg, int *out, char *script, size_t cap)
{
    snprintf(script, cap, "/tmp/lc-sock-py-%d.py", (int)getpid());
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fputs(py_messages, f);
    fputs(body, f);
    fclose(f);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execlp("python3", "python3", script, arg, (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    close(p[1]);
    *out = p[0];
    return pid;
}

/* Reads a line from the child's stdout (blocking; the watchdog bounds it). */
static void read_line(int fd, char *line, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t k = read(fd, line + n, 1);
        if (k <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = 0;
}

/* Our server: sock_accept, then sock_recv / sock_sendall until the peer closes. */
typedef struct {
    lc_loop_t *loop;
    int listen_fd;
    size_t echoed;
} echo_server_t;

static int sock_echo_server(void *arg, void **result)
{
    (void)result;
    echo_server_t *es = arg;
    lc_future_t *f = NULL;
    int e = lc_loop_sock_accept(es->loop, es->listen_fd, &f);
    lc_sock_accepted_t *acc = NULL;
    if (e == 0)
        e = lc_await(f, (void **)&acc);
    int fd = e == 0 ? acc->fd : -1;
    lc_future_unref(f);
    while (e == 0) {
        lc_sock_data_t *d = NULL;
        e = lc_loop_sock_recv(es->loop, fd, 65536, &f);
        if (e != 0)
            break;
        e = lc_await(f, (void **)&d);
        if (e == 0 && d->len == 0) {
            lc_future_unref(f);
            break;
        }
        lc_future_t *s = NULL;
        if (e == 0)
            e = lc_loop_sock_sendall(es->loop, fd, d->data, d->len, &s);
        if (e == 0) {
            es->echoed += d->len;
            e = lc_await(s, NULL);
        }
        lc_future_unref(s);
        lc_future_unref(f);
    }
    if (fd >= 0)
        close(fd);
    return e;
}

static void test_sock_echo_server_python_client(void **state)
{
    lc_loop_t *loop = *state;
    if (access("/usr/bin/python3", X_OK) != 0)
        skip();
    uint16_t port;
    echo_server_t es = {.loop = loop, .listen_fd = listener(AF_INET, &port)};
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, sock_echo_server, &es, &task), 0);
    char script[64], portstr[16], line[128];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int out;
    pid_t pid = spawn_python(py_client, portstr, &out, script, sizeof(script));
    lc_handle_t *guard = NULL;
    lc_loop_call_later(loop, 120, lc_test_stop_cb, loop, &guard);
    int r = lc_loop_run_until_complete(loop, task, NULL);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    if (r == LC_ESTOPPED)
        kill(pid, SIGKILL);
    read_line(out, line, sizeof(line));
    int status = 0;
    waitpid(pid, &status, 0);
    close(out);
    unlink(script);
    assert_int_equal(r, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    size_t total = 0;
    assert_int_equal(sscanf(line, "ok %zu", &total), 1);
    assert_int_equal(total, es.echoed);
    assert_true(total > 1000000);
    lc_future_unref(task);
    close(es.listen_fd);
}

/* Our client: sock_connect, then per message sock_sendall and sock_recv_into until the echo is
 * whole, compared byte for byte with what was sent. The messages are Python's own sequence,
 * received first from a generator child, so both sides agree on them. */
typedef struct {
    lc_loop_t *loop;
    uint16_t port;
    unsigned char *msgs;
    size_t msgs_len;
    size_t *sizes;
    int nsizes;
    size_t echoed;
} echo_client_t;

static int sock_echo_client(void *arg, void **result)
{
    (void)result;
    echo_client_t *ec = arg;
    int fd = nb_socket(AF_INET);
    lc_future_t *f = NULL;
    int e = lc_loop_sock_connect(ec->loop, fd, "127.0.0.1", ec->port, &f);
    if (e == 0)
        e = lc_await(f, NULL);
    lc_future_unref(f);
    size_t off = 0;
    unsigned char *back = malloc(300000 + 64);
    for (int i = 0; e == 0 && i < ec->nsizes; i++) {
        size_t n = ec->sizes[i];
        lc_future_t *s = NULL;
        e = lc_loop_sock_sendall(ec->loop, fd, ec->msgs + off, n, &s);
        size_t got = 0;
        while (e == 0 && got < n) {
            void *res = NULL;
            e = lc_loop_sock_recv_into(ec->loop, fd, back + got, n - got, &f);
            if (e == 0)
                e = lc_await(f, &res);
            lc_future_unref(f);
            if (e == 0 && lc_sock_count(res) == 0)
                e = -EPIPE;
            got += e == 0 ? lc_sock_count(res) : 0;
        }
        if (e == 0)
            e = lc_await(s, NULL);
        lc_future_unref(s);
        if (e == 0 && memcmp(back, ec->msgs + off, n) != 0)
            e = -EPROTO;
        off += n;
        ec->echoed += e == 0 ? n : 0;
    }
    free(back);
    close(fd);
    return e;
}

static const char *py_dump = "out = sys.stdout.buffer\n"
                             "for m in messages():\n"
                             "    out.write(len(m).to_bytes(4, 'little'))\n"
                             "    out.write(m)\n"
                             "out.flush()\n";

static void read_exact(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)buf + got, n - got);
        assert_true(k > 0);
        got += (size_t)k;
    }
}

static void test_sock_echo_client_python_server(void **state)
{
    lc_loop_t *loop = *state;
    if (access("/usr/bin/python3", X_OK) != 0)
        skip();
    char script[64], line[128];
    int out, status = 0;
    /* The messages, from Python's generator. */
    echo_client_t ec = {.loop = loop, .sizes = calloc(200, sizeof(size_t))};
    pid_t pid = spawn_python(py_dump, "", &out, script, sizeof(script));
    size_t cap = 0;
    for (int i = 0; i < 200; i++) {
        uint32_t n;
        read_exact(out, &n, 4);
        if (ec.msgs_len + n > cap) {
            cap = (ec.msgs_len + n) * 2;
            ec.msgs = realloc(ec.msgs, cap);
        }
        read_exact(out, ec.msgs + ec.msgs_len, n);
        ec.msgs_len += n;
        ec.sizes[ec.nsizes++] = n;
    }
    waitpid(pid, &status, 0);
    close(out);
    assert_int_equal(WEXITSTATUS(status), 0);
    pid = spawn_python(py_server, "", &out, script, sizeof(script));
    read_line(out, line, sizeof(line));
    ec.port = (uint16_t)atoi(line);
    assert_true(ec.port > 0);
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, sock_echo_client, &ec, &task), 0);
    lc_handle_t *guard = NULL;
    lc_loop_call_later(loop, 120, lc_test_stop_cb, loop, &guard);
    int r = lc_loop_run_until_complete(loop, task, NULL);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    if (r == LC_ESTOPPED)
        kill(pid, SIGKILL);
    read_line(out, line, sizeof(line));
    waitpid(pid, &status, 0);
    close(out);
    unlink(script);
    assert_int_equal(r, 0);
    assert_int_equal(ec.echoed, ec.msgs_len);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    size_t total = 0;
    assert_int_equal(sscanf(line, "ok %zu", &total), 1);
    assert_int_equal(total, ec.msgs_len);
    lc_future_unref(task);
    free(ec.msgs);
    free(ec.sizes);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(400);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_sock_requires_nonblocking),
        T(test_sock_recv_tries_first),
        T(test_sock_recv_waits),
        T(test_sock_sendall_everything),
        T(test_sock_cancel_leaves_socket_usable),
        T(test_sock_concurrent_calls_in_order),
        T(test_sock_connect_and_accept),
        T(test_sock_connect_errors),
        T(test_sock_accept_cancel),
        T(test_sock_mixes_with_add_reader),
        T(test_sock_closed_with_call_pending),
        T(test_sock_nonblocking_flag_of_reused_number),
        T(test_sock_recv_after_short_read),
        T(test_sock_number_reused_by_another_socket),
        T(test_sock_closed_socket_alive_in_dup),
        T(test_sock_hostile_tcp_peers),
        cmocka_unit_test(test_sock_loop_close_fails_pending),
        T(test_sock_echo_server_python_client),
        T(test_sock_echo_client_python_server),
#undef T
    };
    return cmocka_run_group_tests_name("sock", tests, NULL, NULL);
}
