/* add_reader / add_writer / remove_*: one reader and one writer per fd, replacing, removal's
 * answer, asyncio's callback order, transports' fds refused, and fds closed while registered
 * (removed first, closed by their own callback, closed before the poll, the number reused). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

typedef struct {
    lc_loop_t *loop;
    int fd;
    int calls;
    lc_test_log_t *log;
    int tag;
    bool drain;    /* read what is there */
    bool remove;   /* remove_reader from inside */
    bool close_fd; /* close fd from inside (after remove if remove is set) */
    int remove_writer_fd;
} watch_t;

static void on_ready(void *arg)
{
    watch_t *w = arg;
    w->calls++;
    if (w->log != NULL && w->log->n < 16)
        lc_test_log_push(w->log, w->tag);
    if (w->drain) {
        char buf[256];
        while (read(w->fd, buf, sizeof(buf)) > 0) {
        }
    }
    if (w->remove_writer_fd >= 0)
        lc_loop_remove_writer(w->loop, w->remove_writer_fd, NULL);
    if (w->remove) {
        bool removed = false;
        assert_int_equal(lc_loop_remove_reader(w->loop, w->fd, &removed), 0);
        assert_true(removed);
    }
    if (w->close_fd)
        close(w->fd);
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* Runs the loop for about seconds (a timer stops it). */
static void run_for(lc_loop_t *loop, double seconds)
{
    lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, NULL);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

/* Runs until *counter reaches want, at most 20 s. */
static void run_until(lc_loop_t *loop, int *counter, int want)
{
    for (int i = 0; i < 2000 && *counter < want; i++)
        run_for(loop, 0.01);
    assert_true(*counter >= want);
}

static void test_fdwatch_reader_fires_and_removes(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    watch_t w = {.loop = loop, .fd = sv[0], .drain = true, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), 0);
    run_for(loop, 0.05);
    assert_int_equal(w.calls, 0); /* nothing to read yet */
    assert_int_equal(write(sv[1], "x", 1), 1);
    run_until(loop, &w.calls, 1);
    assert_int_equal(w.calls, 1); /* drained: level-triggered, but not ready any more */
    bool removed = false;
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], &removed), 0);
    assert_true(removed);
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], &removed), 0);
    assert_false(removed);
    assert_int_equal(lc_loop_remove_writer(loop, sv[0], &removed), 0);
    assert_false(removed);
    assert_int_equal(write(sv[1], "y", 1), 1);
    run_for(loop, 0.05);
    assert_int_equal(w.calls, 1);
    close(sv[0]);
    close(sv[1]);
}

/* Level-triggered: a reader that does not read is called once per iteration, until removed. */
static void test_fdwatch_level_triggered(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    watch_t w = {.loop = loop, .fd = sv[0], .remove_writer_fd = -1};
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), 0);
    run_until(loop, &w.calls, 3);
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], NULL), 0);
    int calls = w.calls;
    run_for(loop, 0.05);
    assert_int_equal(w.calls, calls);
    close(sv[0]);
    close(sv[1]);
}

static void test_fdwatch_add_again_replaces(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    watch_t a = {.loop = loop, .fd = sv[0], .drain = true, .remove_writer_fd = -1};
    watch_t b = a;
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &a), 0);
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &b), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    run_until(loop, &b.calls, 1);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], NULL), 0);
    close(sv[0]);
    close(sv[1]);
}

/* Reader and writer on one fd (one uv_poll_t): both called, reader first; a writer removed by
 * the reader in the same iteration is not called (asyncio cancels its handle). */
static void test_fdwatch_reader_and_writer_one_fd(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    lc_test_log_t log = {0};
    watch_t r = {.loop = loop, .fd = sv[0], .log = &log, .tag = 1, .remove_writer_fd = -1};
    watch_t wr = {.loop = loop, .fd = sv[0], .log = &log, .tag = 2, .remove_writer_fd = -1};
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(lc_loop_add_writer(loop, sv[0], on_ready, &wr), 0);
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &r), 0);
    lc_loop_stop(loop);
    lc_loop_run_forever(loop);
    if (log.n == 0) /* the poll of that one iteration may have come first on a loaded machine */
        run_until(loop, &r.calls, 1);
    assert_true(log.n >= 2);
    assert_int_equal(log.items[0], 1);
    assert_int_equal(log.items[1], 2);
    /* Now the reader removes the writer: the writer is not called again. */
    r.remove_writer_fd = sv[0];
    int wcalls = wr.calls;
    run_until(loop, &r.calls, r.calls + 1);
    assert_int_equal(wr.calls, wcalls);
    bool removed = true;
    assert_int_equal(lc_loop_remove_writer(loop, sv[0], &removed), 0);
    assert_false(removed);
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], &removed), 0);
    assert_true(removed);
    close(sv[0]);
    close(sv[1]);
}

/* asyncio's order: the callbacks ready before the poll run first, then the reader, in the same
 * iteration; what the reader schedules runs in the next. */
static void log_later(void *arg)
{
    watch_t *w = arg;
    lc_test_log_push(w->log, 3);
}

static void reader_schedules(void *arg)
{
    watch_t *w = arg;
    lc_test_log_push(w->log, 2);
    lc_loop_remove_reader(w->loop, w->fd, NULL);
    static lc_test_event_t ev;
    ev = (lc_test_event_t){.log = w->log, .value = 4};
    lc_loop_call_soon(w->loop, lc_test_log_cb, &ev, NULL);
}

static void test_fdwatch_callback_order(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    lc_test_log_t log = {0};
    watch_t w = {.loop = loop, .fd = sv[0], .log = &log, .remove_writer_fd = -1};
    assert_int_equal(write(sv[1], "x", 1), 1);
    /* First iteration: its poll registers the reader; the call_soon below runs in the batch of
     * the next, before the reader. */
    assert_int_equal(lc_loop_add_reader(loop, sv[0], reader_schedules, &w), 0);
    lc_test_event_t ev = {.log = &log, .value = 1};
    lc_loop_call_soon(loop, lc_test_log_cb, &ev, NULL);
    lc_loop_call_later(loop, 0.2, log_later, &w, NULL);
    lc_loop_call_later(loop, 0.3, lc_test_stop_cb, loop, NULL);
    lc_loop_run_forever(loop);
    const int want[] = {1, 2, 4, 3};
    lc_test_assert_log(&log, want, 4);
    close(sv[0]);
    close(sv[1]);
}

static void nop_made(lc_transport_t *t, void *user)
{
    (void)t;
    (void)user;
}

static const lc_protocol_t nop_proto = {.connection_made = nop_made};

static int nop_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    *proto = &nop_proto;
    *user = NULL;
    return 0;
}

static void test_fdwatch_transport_fd_refused(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_connect_accepted_socket(loop, nop_factory, NULL, sv[0], NULL, &fut),
                     0);
    lc_transport_t *t = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, fut, (void **)&t), 0);
    int fd = lc_transport_get_fd(t);
    assert_int_equal(fd, sv[0]);
    watch_t w = {.loop = loop, .fd = fd, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, fd, on_ready, &w), LC_EFDTRANSPORT);
    assert_int_equal(lc_loop_add_writer(loop, fd, on_ready, &w), LC_EFDTRANSPORT);
    assert_int_equal(lc_loop_remove_reader(loop, fd, NULL), LC_EFDTRANSPORT);
    lc_future_t *rf = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, fd, 10, &rf), LC_EFDTRANSPORT);
    assert_null(rf);
    assert_string_equal(lc_strerror(LC_EFDTRANSPORT), "File descriptor is used by transport");
    lc_transport_close(t);
    lc_future_unref(fut);
    run_for(loop, 0.05);
    /* The transport closed its fd: the number is free again; a new socket there is watchable. */
    int sv2[2];
    pair(sv2);
    int nfd = sv2[0] == fd ? sv2[0] : sv2[1] == fd ? sv2[1] : sv2[0];
    w.fd = nfd;
    w.drain = true;
    assert_int_equal(lc_loop_add_reader(loop, nfd, on_ready, &w), 0);
    assert_int_equal(write(nfd == sv2[0] ? sv2[1] : sv2[0], "x", 1), 1);
    run_until(loop, &w.calls, 1);
    assert_int_equal(lc_loop_remove_reader(loop, nfd, NULL), 0);
    close(sv[1]);
    close(sv2[0]);
    close(sv2[1]);
}

/* A pipe transport's fd is a transport's too (asyncio refuses every transport's fd). */
static void test_fdwatch_pipe_transport_fd_refused(void **state)
{
    lc_loop_t *loop = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_connect_read_pipe(loop, nop_factory, NULL, p[0], &fut), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, fut, NULL), 0);
    watch_t w = {.loop = loop, .fd = p[0], .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, p[0], on_ready, &w), LC_EFDTRANSPORT);
    lc_transport_t *t = NULL;
    assert_int_equal(lc_future_result(fut, (void **)&t), 0);
    lc_transport_close(t);
    lc_future_unref(fut);
    run_for(loop, 0.05);
    close(p[1]);
}

/* A datagram endpoint's fd too. */
static const lc_datagram_protocol_t nop_dgram_proto = {0};

static int nop_dgram_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    (void)arg;
    *proto = &nop_dgram_proto;
    *user = NULL;
    return 0;
}

static void test_fdwatch_datagram_transport_fd_refused(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_datagram_endpoint(
                         loop, nop_dgram_factory, NULL,
                         &(lc_datagram_opts_t){.local_host = "127.0.0.1", .family = AF_INET}, &fut),
                     0);
    lc_datagram_transport_t *t = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, fut, (void **)&t), 0);
    int fd = lc_datagram_transport_get_fd(t);
    assert_true(fd >= 0);
    watch_t w = {.loop = loop, .fd = fd, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, fd, on_ready, &w), LC_EFDTRANSPORT);
    lc_future_t *rf = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, fd, 10, &rf), LC_EFDTRANSPORT);
    lc_datagram_transport_close(t);
    lc_future_unref(fut);
    run_for(loop, 0.05);
}

static void test_fdwatch_bad_fds(void **state)
{
    lc_loop_t *loop = *state;
    watch_t w = {.loop = loop, .remove_writer_fd = -1};
    int sv[2];
    pair(sv);
    close(sv[0]);
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), -EBADF);
    assert_int_equal(lc_loop_add_reader(loop, -1, on_ready, &w), LC_EINVAL);
    assert_int_equal(lc_loop_add_reader(loop, sv[1], NULL, &w), LC_EINVAL);
    char path[] = "/tmp/lc-fdwatch-XXXXXX";
    int f = mkstemp(path);
    assert_true(f >= 0);
    unlink(path);
    assert_int_equal(lc_loop_add_reader(loop, f, on_ready, &w), -EPERM);
    close(f);
    /* A blocking fd stays blocking (libuv's uv_poll_init would make it non-blocking). */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(lc_loop_add_reader(loop, p[0], on_ready, &w), 0);
    assert_false(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    assert_int_equal(lc_loop_remove_reader(loop, p[0], NULL), 0);
    close(p[0]);
    close(p[1]);
    close(sv[1]);
}

/* The rule: remove, then close; a callback may do both for its own fd. */
static void test_fdwatch_callback_removes_and_closes_own_fd(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    pair(sv);
    watch_t w = {
        .loop = loop, .fd = sv[0], .remove = true, .close_fd = true, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), 0);
    assert_int_equal(lc_loop_add_writer(loop, sv[0], on_ready, &(watch_t){.remove_writer_fd = -1}),
                     0);
    assert_int_equal(lc_loop_remove_writer(loop, sv[0], NULL), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    run_until(loop, &w.calls, 1);
    run_for(loop, 0.05);
    assert_int_equal(w.calls, 1);
    close(sv[1]);
}

typedef struct {
    int calls;
    int err;
    int socket;
    char message[160];
} handler_log_t;

static void handler(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    handler_log_t *h = arg;
    h->calls++;
    h->err = ctx->error;
    h->socket = ctx->socket;
    snprintf(h->message, sizeof(h->message), "%s", ctx->message);
}

/* A callback that closes its fd without removing it: no crash, no spin (epoll forgets the fd:
 * the callback is not called again); when the number comes back with a new socket, adding a
 * reader for it drops the stale registration (reported) and watches the new socket. */
static void test_fdwatch_callback_closes_without_removing(void **state)
{
    lc_loop_t *loop = *state;
    handler_log_t h = {0};
    lc_loop_set_exception_handler(loop, handler, &h);
    int sv[2];
    pair(sv);
    watch_t w = {.loop = loop, .fd = sv[0], .close_fd = true, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    run_until(loop, &w.calls, 1);
    run_for(loop, 0.2);
    assert_int_equal(w.calls, 1); /* not called again: no spin */
    close(sv[1]);
    /* The number comes back (lowest free fd). */
    int sv2[2];
    pair(sv2);
    int reused = sv2[0] == sv[0] ? 0 : sv2[1] == sv[0] ? 1 : -1;
    assert_true(reused >= 0);
    watch_t w2 = {.loop = loop, .fd = sv[0], .drain = true, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w2), 0);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.err, -EBADF);
    assert_int_equal(h.socket, sv[0]);
    assert_non_null(strstr(h.message, "closed while registered"));
    assert_int_equal(write(sv2[1 - reused], "y", 1), 1);
    run_until(loop, &w2.calls, 1);
    assert_int_equal(w.calls, 1); /* the old callback is gone */
    bool removed = false;
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], &removed), 0);
    assert_true(removed);
    close(sv2[0]);
    close(sv2[1]);
}

/* CPU time this thread has used, in seconds. */
static double thread_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* Closed by the user after add, before the loop polls (libuv would abort on epoll_ctl of a
 * closed fd; the watchers' own epoll just forgets the file): no callback, no spin, nothing
 * reported yet; the registration is the loop's until removed (remove_reader says it was there,
 * as asyncio's does), and re-watching what is left finds the fd closed. */
static void test_fdwatch_closed_before_poll(void **state)
{
    lc_loop_t *loop = *state;
    handler_log_t h = {0};
    lc_loop_set_exception_handler(loop, handler, &h);
    int sv[2];
    pair(sv);
    watch_t w = {.loop = loop, .fd = sv[0], .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), 0);
    assert_int_equal(lc_loop_add_writer(loop, sv[0], on_ready, &w), 0);
    close(sv[0]);
    double cpu = thread_cpu();
    run_for(loop, 0.3);
    assert_true(thread_cpu() - cpu < 0.15); /* a spinning loop would use the whole 0.3 s */
    assert_int_equal(w.calls, 0);
    assert_int_equal(h.calls, 0);
    bool removed = false;
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], &removed), 0);
    assert_true(removed);
    /* Watching what is left (the writer) found the fd closed: dropped and reported (asyncio's
     * selector.modify raises there). */
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.err, -EBADF);
    assert_int_equal(lc_loop_remove_writer(loop, sv[0], &removed), 0);
    assert_false(removed);
    /* Registered and already watched, then closed, then a writer added: refused, no abort. */
    pair(sv);
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), 0);
    run_for(loop, 0.02);
    close(sv[0]);
    assert_int_equal(lc_loop_add_writer(loop, sv[0], on_ready, &w), -EBADF);
    run_for(loop, 0.05);
    assert_int_equal(w.calls, 0);
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], &removed), 0);
    assert_true(removed);
    close(sv[1]);
}

/* A reader's fd closed without removing it while a dup of the file lives on, and the number
 * reused for another socket with a reader of its own: the old file's level-triggered epoll item
 * cannot be deleted by number and keeps firing; the loop notices, rebuilds its epoll (reported
 * once), does not spin, never calls the old callback, and serves the new reader. */
static void test_fdwatch_closed_fd_alive_in_dup(void **state)
{
    lc_loop_t *loop = *state;
    handler_log_t h = {0};
    lc_loop_set_exception_handler(loop, handler, &h);
    int sv[2];
    pair(sv);
    int num = sv[0];
    watch_t w = {.loop = loop, .fd = num, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, num, on_ready, &w), 0);
    run_for(loop, 0.02);
    int d = fcntl(num, F_DUPFD_CLOEXEC, 100);
    assert_true(d >= 100);
    close(num);
    int sv2[2];
    pair(sv2);
    int reused = sv2[0] == num ? 0 : sv2[1] == num ? 1 : -1;
    assert_true(reused >= 0);
    watch_t w2 = {.loop = loop, .fd = num, .drain = true, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, num, on_ready, &w2), 0);
    assert_int_equal(h.calls, 1); /* the old registration, dropped */
    assert_non_null(strstr(h.message, "closed while registered"));
    /* The old file becomes readable: its item fires forever unless the epoll is rebuilt. */
    assert_int_equal(write(sv[1], "x", 1), 1);
    double cpu = thread_cpu();
    run_for(loop, 0.3);
    assert_true(thread_cpu() - cpu < 0.15);
    assert_int_equal(h.calls, 2);
    assert_non_null(strstr(h.message, "still open elsewhere"));
    assert_int_equal(w.calls, 0);
    assert_int_equal(w2.calls, 0);
    assert_int_equal(write(sv2[1 - reused], "y", 1), 1);
    run_until(loop, &w2.calls, 1);
    assert_int_equal(w.calls, 0);
    bool removed = false;
    assert_int_equal(lc_loop_remove_reader(loop, num, &removed), 0);
    assert_true(removed);
    close(d);
    close(sv[1]);
    close(sv2[0]);
    close(sv2[1]);
}

/* An fd number far above the others: the registry grows to it (and a transport's bitmap too). */
static void test_fdwatch_high_fd(void **state)
{
    lc_loop_t *loop = *state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    int want = 5000;
    if (rl.rlim_cur <= (rlim_t)want) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur <= (rlim_t)want)
        want = (int)rl.rlim_cur - 10;
    int sv[2];
    pair(sv);
    int hi = fcntl(sv[0], F_DUPFD_CLOEXEC, want);
    assert_true(hi >= want);
    close(sv[0]);
    watch_t w = {.loop = loop, .fd = hi, .drain = true, .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, hi, on_ready, &w), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    run_until(loop, &w.calls, 1);
    bool removed = false;
    assert_int_equal(lc_loop_remove_reader(loop, hi, &removed), 0);
    assert_true(removed);
    /* The same number as a transport's: refused. */
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_connect_accepted_socket(loop, nop_factory, NULL, hi, NULL, &fut), 0);
    lc_transport_t *t = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, fut, (void **)&t), 0);
    assert_int_equal(lc_loop_add_writer(loop, hi, on_ready, &w), LC_EFDTRANSPORT);
    lc_transport_close(t);
    lc_future_unref(fut);
    run_for(loop, 0.05);
    close(sv[1]);
}

/* Closing the loop with registrations left: the loop tears them down (ASan checks the memory). */
static void test_fdwatch_loop_close_with_watchers(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    int sv[2];
    pair(sv);
    watch_t w = {.loop = loop, .fd = sv[0], .remove_writer_fd = -1};
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), 0);
    assert_int_equal(lc_loop_add_writer(loop, sv[1], on_ready, &w), 0);
    run_for(loop, 0.02);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(lc_loop_add_reader(loop, sv[0], on_ready, &w), LC_ECLOSED);
    bool removed = true;
    assert_int_equal(lc_loop_remove_reader(loop, sv[0], &removed), 0);
    assert_false(removed);
    assert_int_equal(lc_loop_free(loop), 0);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_fdwatch_reader_fires_and_removes),
        T(test_fdwatch_level_triggered),
        T(test_fdwatch_add_again_replaces),
        T(test_fdwatch_reader_and_writer_one_fd),
        T(test_fdwatch_callback_order),
        T(test_fdwatch_transport_fd_refused),
        T(test_fdwatch_pipe_transport_fd_refused),
        T(test_fdwatch_datagram_transport_fd_refused),
        T(test_fdwatch_bad_fds),
        T(test_fdwatch_callback_removes_and_closes_own_fd),
        T(test_fdwatch_callback_closes_without_removing),
        T(test_fdwatch_closed_before_poll),
        T(test_fdwatch_closed_fd_alive_in_dup),
        T(test_fdwatch_high_fd),
        cmocka_unit_test(test_fdwatch_loop_close_with_watchers),
#undef T
    };
    return cmocka_run_group_tests_name("fdwatch", tests, NULL, NULL);
}
