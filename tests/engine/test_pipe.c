/* Pipe transports (connect_read_pipe / connect_write_pipe) over pipes, a FIFO and a pty: data
 * both ways, EOF (eof_received then connection_lost), pause / resume reading, write flow control
 * with the sockets' watermarks, writelines, write_eof closing the pipe, abort, the reader going
 * (connection_lost 0 when idle, LC_EPIPE with data queued, and never a SIGPIPE), refusals. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
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

/* Runs the loop until *var reaches want, in 10 ms slices, for at most 20 s. */
static void wait_for(lc_loop_t *loop, const int *var, int want)
{
    for (int i = 0; i < 2000 && *var < want; i++)
        run_for(loop, 0.01);
}

/* One side's protocol: records everything, keeps heap state from connection_made to
 * connection_lost (a missing connection_lost is a leak ASan reports). */
typedef struct {
    lc_transport_t *t;
    int made, lost, lost_err, eofs, eof_before_lost, paused, resumed;
    char *got;
    size_t got_len, got_cap;
    char *state;
} side_t;

static void s_made(lc_transport_t *t, void *user)
{
    side_t *s = user;
    s->t = t;
    s->made++;
    s->state = malloc(32);
}

static void s_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    side_t *s = user;
    if (s->got_len + len > s->got_cap) {
        s->got_cap = (s->got_len + len) * 2;
        s->got = realloc(s->got, s->got_cap);
        assert_non_null(s->got);
    }
    memcpy(s->got + s->got_len, data, len);
    s->got_len += len;
}

static bool s_eof(lc_transport_t *t, void *user)
{
    side_t *s = user;
    s->eofs++;
    return true; /* ignored for a pipe: it closes anyway */
}

static void s_lost(lc_transport_t *t, int err, void *user)
{
    side_t *s = user;
    s->eof_before_lost = s->eofs;
    s->lost++;
    s->lost_err = err;
    free(s->state);
    s->state = NULL;
}

static void s_pause(lc_transport_t *t, void *user) { ((side_t *)user)->paused++; }
static void s_resume(lc_transport_t *t, void *user) { ((side_t *)user)->resumed++; }

static const lc_protocol_t side_proto = {
    .connection_made = s_made,
    .data_received = s_data,
    .eof_received = s_eof,
    .connection_lost = s_lost,
    .pause_writing = s_pause,
    .resume_writing = s_resume,
};

static int side_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &side_proto;
    *user = arg;
    return 0;
}

static lc_transport_t *connect_side(lc_loop_t *loop, side_t *s, int fd, bool write)
{
    lc_future_t *fut = NULL;
    int r = write ? lc_loop_connect_write_pipe(loop, side_factory, s, fd, &fut)
                  : lc_loop_connect_read_pipe(loop, side_factory, s, fd, &fut);
    assert_int_equal(r, 0);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, fut, &res), 0);
    lc_future_unref(fut);
    assert_non_null(res);
    assert_int_equal(s->made, 1);
    assert_ptr_equal(res, s->t);
    return res;
}

static void side_free(side_t *s) { free(s->got); }

static void fill_pattern(char *buf, size_t len, size_t off)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((off + i) % 251);
}

static void check_pattern(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (char)(i % 251))
            fail_msg("byte %zu differs", i);
}

/* A pair of transports over one pipe: w writes into r. */
static void pipe_pair(lc_loop_t *loop, side_t *r, side_t *w)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    connect_side(loop, r, fds[0], false);
    connect_side(loop, w, fds[1], true);
}

/* ---- tests ----------------------------------------------------------------------------------- */

/* 4 MiB through a pipe (write, writelines), then write_eof: the reader gets every byte in order,
 * eof_received, then connection_lost(0); the writer's write_eof closes it (connection_lost(0)). */
static void test_pipe_data_and_eof(void **state)
{
    lc_loop_t *loop = *state;
    static side_t r, w;
    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    pipe_pair(loop, &r, &w);
    assert_true(lc_transport_can_write_eof(w.t));
    assert_false(lc_transport_can_write_eof(r.t));
    size_t len = 4 << 20;
    char *buf = malloc(len);
    fill_pattern(buf, len, 0);
    assert_int_equal(lc_transport_write(w.t, buf, len / 2), 0);
    struct iovec iov[2] = {{buf + len / 2, len / 4}, {buf + 3 * len / 4, len / 4}};
    assert_int_equal(lc_transport_writelines(w.t, iov, 2), 0);
    assert_true(lc_transport_get_write_buffer_size(w.t) > 0); /* a pipe holds 64 KiB */
    assert_int_equal(lc_transport_write_eof(w.t), 0);
    assert_int_equal(lc_transport_write(w.t, "x", 1), LC_EPIPE);
    wait_for(loop, &r.lost, 1);
    assert_int_equal(r.got_len, len);
    check_pattern(r.got, r.got_len);
    assert_int_equal(r.eofs, 1);
    assert_int_equal(r.eof_before_lost, 1);
    assert_int_equal(r.lost_err, 0);
    wait_for(loop, &w.lost, 1);
    assert_int_equal(w.lost_err, 0);
    free(buf);
    side_free(&r);
    side_free(&w);
}

/* A read transport refuses writes; a write transport refuses reading calls; regular files are
 * refused; a bad fd is closed. */
static void test_pipe_refusals(void **state)
{
    lc_loop_t *loop = *state;
    static side_t r, w;
    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    pipe_pair(loop, &r, &w);
    assert_int_equal(lc_transport_write(r.t, "x", 1), LC_ENOTSUP);
    assert_int_equal(lc_transport_write_eof(r.t), LC_ENOTSUP);
    assert_int_equal(lc_transport_pause_reading(w.t), LC_ENOTSUP);
    assert_int_equal(lc_transport_resume_reading(w.t), LC_ENOTSUP);
    assert_false(lc_transport_is_reading(w.t));
    assert_true(lc_transport_is_reading(r.t));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(lc_transport_get_peername(r.t, (struct sockaddr *)&ss, &sl), -ENOTSOCK);

    char path[] = "/tmp/lc_pipe_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_connect_read_pipe(loop, side_factory, &r, fd, &fut), LC_EINVAL);
    assert_null(fut);
    assert_int_equal(fcntl(fd, F_GETFD), -1); /* closed: the call owns it */
    assert_int_equal(lc_loop_connect_write_pipe(loop, side_factory, &w, -1, &fut), LC_EINVAL);
    lc_transport_close(r.t);
    lc_transport_close(w.t);
    wait_for(loop, &r.lost, 1);
    wait_for(loop, &w.lost, 1);
    side_free(&r);
    side_free(&w);
}

/* Paused, a read transport delivers nothing; resumed, everything, in order. */
static void test_pipe_pause_resume_reading(void **state)
{
    lc_loop_t *loop = *state;
    static side_t r, w;
    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    pipe_pair(loop, &r, &w);
    assert_int_equal(lc_transport_pause_reading(r.t), 0);
    assert_false(lc_transport_is_reading(r.t));
    char buf[1000];
    fill_pattern(buf, sizeof(buf), 0);
    assert_int_equal(lc_transport_write(w.t, buf, sizeof(buf)), 0);
    run_for(loop, 0.1);
    assert_int_equal(r.got_len, 0);
    assert_int_equal(lc_transport_resume_reading(r.t), 0);
    for (int i = 0; i < 2000 && r.got_len < sizeof(buf); i++)
        run_for(loop, 0.01);
    assert_int_equal(r.got_len, sizeof(buf));
    check_pattern(r.got, r.got_len);
    lc_transport_close(w.t);
    wait_for(loop, &r.lost, 1); /* the writer closed: EOF */
    assert_int_equal(r.eofs, 1);
    assert_int_equal(r.lost_err, 0);
    wait_for(loop, &w.lost, 1);
    side_free(&r);
    side_free(&w);
}

/* Write flow control: above the high mark pause_writing, back at the low one resume_writing
 * (the reader, paused, then resumed). */
static void test_pipe_write_flow_control(void **state)
{
    lc_loop_t *loop = *state;
    static side_t r, w;
    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    pipe_pair(loop, &r, &w);
    assert_int_equal(lc_transport_pause_reading(r.t), 0);
    assert_int_equal(lc_transport_set_write_buffer_limits(w.t, 128 * 1024, 32 * 1024), 0);
    size_t len = 1 << 20;
    char *buf = malloc(len);
    fill_pattern(buf, len, 0);
    for (size_t off = 0; off < len; off += 16384)
        assert_int_equal(lc_transport_write(w.t, buf + off, 16384), 0);
    assert_int_equal(w.paused, 1);
    assert_true(lc_transport_get_write_buffer_size(w.t) > 128 * 1024);
    run_for(loop, 0.05);
    assert_int_equal(w.resumed, 0);
    assert_int_equal(lc_transport_resume_reading(r.t), 0);
    wait_for(loop, &w.resumed, 1);
    assert_int_equal(w.resumed, 1);
    assert_true(lc_transport_get_write_buffer_size(w.t) <= 32 * 1024);
    lc_transport_close(w.t); /* flushes, then closes */
    wait_for(loop, &r.lost, 1);
    assert_int_equal(r.got_len, len);
    check_pattern(r.got, r.got_len);
    assert_int_equal(w.lost_err, 0);
    free(buf);
    side_free(&r);
    side_free(&w);
}

/* The reader goes while the writer is idle: connection_lost(0), seen without a write. */
static void test_pipe_reader_gone_idle(void **state)
{
    lc_loop_t *loop = *state;
    static side_t w;
    memset(&w, 0, sizeof(w));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    connect_side(loop, &w, fds[1], true);
    close(fds[0]);
    wait_for(loop, &w.lost, 1);
    assert_int_equal(w.lost, 1);
    assert_int_equal(w.lost_err, 0);
    side_free(&w);
}

/* The reader goes with data queued: connection_lost(LC_EPIPE), and no SIGPIPE kills the test
 * (SIGPIPE is at its default disposition here). */
static void test_pipe_reader_gone_epipe(void **state)
{
    lc_loop_t *loop = *state;
    static side_t w;
    memset(&w, 0, sizeof(w));
    signal(SIGPIPE, SIG_DFL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    connect_side(loop, &w, fds[1], true);
    static char buf[256 * 1024];
    assert_int_equal(lc_transport_write(w.t, buf, sizeof(buf)), 0);
    assert_true(lc_transport_get_write_buffer_size(w.t) > 0);
    close(fds[0]);
    wait_for(loop, &w.lost, 1);
    assert_int_equal(w.lost_err, LC_EPIPE);

    /* A write straight into a pipe whose reader is already gone (before the poll saw it). */
    static side_t w2;
    memset(&w2, 0, sizeof(w2));
    assert_int_equal(pipe(fds), 0);
    connect_side(loop, &w2, fds[1], true);
    close(fds[0]);
    assert_int_equal(lc_transport_write(w2.t, "abc", 3), 0); /* reported through connection_lost */
    wait_for(loop, &w2.lost, 1);
    assert_int_equal(w2.lost_err, LC_EPIPE);
    sigset_t pending;
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    side_free(&w);
    side_free(&w2);
}

/* abort drops queued data at once: connection_lost(0); the reader sees EOF. */
static void test_pipe_abort(void **state)
{
    lc_loop_t *loop = *state;
    static side_t r, w;
    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    pipe_pair(loop, &r, &w);
    assert_int_equal(lc_transport_pause_reading(r.t), 0);
    static char buf[512 * 1024];
    assert_int_equal(lc_transport_write(w.t, buf, sizeof(buf)), 0);
    assert_int_equal(lc_transport_abort(w.t), 0);
    assert_true(lc_transport_is_closing(w.t));
    wait_for(loop, &w.lost, 1);
    assert_int_equal(w.lost_err, 0);
    assert_int_equal(lc_transport_resume_reading(r.t), 0);
    wait_for(loop, &r.lost, 1);
    assert_true(r.got_len < sizeof(buf));
    assert_int_equal(r.eofs, 1);
    side_free(&r);
    side_free(&w);
}

/* A FIFO: both ends through the filesystem. */
static void test_fifo(void **state)
{
    lc_loop_t *loop = *state;
    static side_t r, w;
    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    char dir[] = "/tmp/lc_fifo_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    int wfd = open(path, O_WRONLY | O_NONBLOCK);
    assert_true(wfd >= 0);
    unlink(path);
    rmdir(dir);
    connect_side(loop, &r, rfd, false);
    connect_side(loop, &w, wfd, true);
    size_t len = 300000;
    char *buf = malloc(len);
    fill_pattern(buf, len, 0);
    assert_int_equal(lc_transport_write(w.t, buf, len), 0);
    assert_int_equal(lc_transport_write_eof(w.t), 0);
    wait_for(loop, &r.lost, 1);
    assert_int_equal(r.got_len, len);
    check_pattern(r.got, len);
    assert_int_equal(r.eofs, 1);
    assert_int_equal(r.lost_err, 0);
    wait_for(loop, &w.lost, 1);
    free(buf);
    side_free(&r);
    side_free(&w);
}

/* A pty: a write transport on the slave side, a read transport on the master (raw mode, so
 * bytes pass unchanged); the slave closed, the master's EIO is its EOF: eof_received, then
 * connection_lost(0). */
static void test_pty(void **state)
{
    lc_loop_t *loop = *state;
    static side_t r, w;
    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    assert_true(slave >= 0);
    struct termios tio;
    assert_int_equal(tcgetattr(slave, &tio), 0);
    cfmakeraw(&tio);
    assert_int_equal(tcsetattr(slave, TCSANOW, &tio), 0);
    connect_side(loop, &r, master, false);
    connect_side(loop, &w, slave, true);
    size_t len = 100000;
    char *buf = malloc(len);
    fill_pattern(buf, len, 0);
    assert_int_equal(lc_transport_write(w.t, buf, len), 0);
    for (int i = 0; i < 2000 && r.got_len < len; i++)
        run_for(loop, 0.01);
    assert_int_equal(r.got_len, len);
    check_pattern(r.got, len);
    assert_int_equal(lc_transport_write_eof(w.t), 0); /* closes the slave */
    wait_for(loop, &w.lost, 1);
    assert_int_equal(w.lost_err, 0);
    wait_for(loop, &r.lost, 1);
    assert_int_equal(r.eofs, 1);
    assert_int_equal(r.eof_before_lost, 1);
    assert_int_equal(r.lost_err, 0);
    free(buf);
    side_free(&r);
    side_free(&w);
}

/* A socket as a write pipe: data goes through; what the peer sends is not read (and does not
 * make the loop spin); the peer closing is seen at the next write (LC_EPIPE). */
static void test_socket_as_write_pipe(void **state)
{
    lc_loop_t *loop = *state;
    static side_t w;
    memset(&w, 0, sizeof(w));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    connect_side(loop, &w, sv[0], true);
    assert_int_equal(write(sv[1], "ignored", 7), 7);
    assert_int_equal(lc_transport_write(w.t, "hello", 5), 0);
    run_for(loop, 0.05);
    char buf[16] = {0};
    assert_int_equal(read(sv[1], buf, sizeof(buf)), 5);
    assert_string_equal(buf, "hello");
    assert_int_equal(w.lost, 0);
    close(sv[1]);
    run_for(loop, 0.05);
    assert_int_equal(w.lost, 0);
    assert_int_equal(lc_transport_write(w.t, "again", 5), 0); /* EPIPE: connection_lost */
    wait_for(loop, &w.lost, 1);
    assert_int_equal(w.lost_err, LC_EPIPE);
    side_free(&w);
}

/* The loop closed with pipe transports open: each gets connection_lost(LC_ECLOSED). */
static void test_pipe_loop_close(void **state)
{
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    static side_t r, w;
    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    pipe_pair(loop, &r, &w);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(r.lost, 1);
    assert_int_equal(w.lost, 1);
    assert_int_equal(r.lost_err, LC_ECLOSED);
    lc_loop_free(loop);
    side_free(&r);
    side_free(&w);
}

int main(void)
{
    lc_test_watchdog(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pipe_data_and_eof, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_pipe_refusals, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_pipe_pause_resume_reading, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_pipe_write_flow_control, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_pipe_reader_gone_idle, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_pipe_reader_gone_epipe, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_pipe_abort, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_fifo, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_pty, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_socket_as_write_pipe, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test(test_pipe_loop_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
