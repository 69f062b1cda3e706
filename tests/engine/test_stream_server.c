/* Stream servers: close semantics, start_serving and serve_forever, 1,000 connections, EMFILE
 * back-off, connect_accepted_socket, the loop closed with open streams, and Python's asyncio as
 * a client. Echo and resets are in test_stream.c; the protocols both use are in
 * stream_helpers.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "tests/engine/stream_helpers.h"
#include "tests/support/loop_fixture.h"

/* ---- server semantics ------------------------------------------------------------------------ */

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
    int e = errno;
    if (r != 0) {
        close(fd);
        return -e;
    }
    return fd;
}

static void test_stream_server_close_keeps_connections(void **state)
{
    lc_loop_t *loop = *state;
    echo_server_t es = {0};
    lc_server_t *s = start_echo_server(loop, &es, "127.0.0.1");
    int port = server_port(s);
    client_t c = {
        .loop = loop, .payload = "one", .payload_len = 3, .expect = 3, .stop_when_done = true};
    lc_transport_t *t = connect_client(loop, &c, "127.0.0.1", port, 0);
    run_for(loop, 5);
    assert_string_equal(c.got, "one");

    lc_future_t *waited = NULL;
    assert_int_equal(lc_server_wait_closed(s, &waited), 0);
    assert_int_equal(lc_server_close(s), 0);
    assert_int_equal(lc_server_close(s), 0);
    assert_false(lc_server_is_serving(s));
    size_t n = 4;
    int fds[4];
    assert_int_equal(lc_server_sockets(s, fds, &n), 0);
    assert_int_equal(n, 0);
    /* Closed synchronously: refused before the loop runs again. */
    assert_int_equal(raw_connect(port), -ECONNREFUSED);
    /* The accepted connection still echoes. */
    assert_int_equal(lc_transport_write(t, "two", 3), 0);
    c.expect = 6;
    run_for(loop, 5);
    assert_string_equal(c.got, "onetwo");
    assert_false(lc_future_done(waited)); /* a connection is still open */
    lc_transport_close(t);
    c.stop_when_done = false;
    run_for(loop, 0.05);
    assert_true(lc_future_done(waited));
    lc_future_unref(waited);
    lc_server_free(s);
    free(c.got);
}

static void test_stream_start_serving_false_and_serve_forever(void **state)
{
    lc_loop_t *loop = *state;
    echo_server_t es = {0};
    lc_future_t *fut = NULL;
    assert_int_equal(
        lc_loop_create_server(loop, echo_server_factory, &es,
                              &(lc_server_opts_t){.host = "127.0.0.1", .start_paused = true}, &fut),
        0);
    lc_server_t *s = await_fut(loop, fut, 0);
    lc_future_unref(fut);
    assert_false(lc_server_is_serving(s));
    int port = server_port(s);
    assert_int_equal(raw_connect(port), -ECONNREFUSED); /* bound, not listening */
    lc_future_t *forever = NULL;
    assert_int_equal(lc_server_serve_forever(s, &forever), 0);
    assert_true(lc_server_is_serving(s));
    assert_int_equal(lc_server_start_serving(s), 0);
    int fd = raw_connect(port);
    assert_true(fd >= 0);
    wait_for(loop, &es.made, 1);
    assert_int_equal(es.made, 1);
    /* Cancelling serve_forever closes the server. */
    assert_int_equal(lc_future_cancel(forever), 1);
    run_for(loop, 0.02);
    assert_false(lc_server_is_serving(s));
    assert_int_equal(raw_connect(port), -ECONNREFUSED);
    lc_future_unref(forever);
    close(fd);
    run_for(loop, 0.02);
    lc_server_free(s);
}

/* ---- 1,000 connections ----------------------------------------------------------------------- */

static void test_stream_thousand_connections(void **state)
{
    lc_loop_t *loop = *state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2500 && rl.rlim_max >= 2500) {
        rl.rlim_cur = 2500;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2100)
        skip();
    echo_server_t es = {0};
    /* A backlog above the burst: with asyncio's default of 100, connects beyond the accept
     * queue are retried by the kernel after 1, 2, 4... s, which a loaded machine can stretch
     * past the test's bound. */
    lc_future_t *sfut = NULL;
    assert_int_equal(
        lc_loop_create_server(loop, echo_server_factory, &es,
                              &(lc_server_opts_t){.host = "127.0.0.1", .backlog = 2048}, &sfut),
        0);
    lc_server_t *s = await_fut(loop, sfut, 0);
    lc_future_unref(sfut);
    int port = server_port(s);
    enum { N = 1000 };
    client_t *cs = calloc(N, sizeof(*cs));
    lc_future_t **futs = calloc(N, sizeof(*futs));
    char(*msgs)[16] = calloc(N, 16);
    for (int i = 0; i < N; i++) {
        int len = snprintf(msgs[i], 16, "conn-%d", i);
        cs[i] = (client_t){.loop = loop, .payload = msgs[i], .payload_len = (size_t)len};
        assert_int_equal(lc_loop_create_connection(
                             loop, client_factory, &cs[i],
                             &(lc_connection_opts_t){.host = "127.0.0.1", .port_num = port},
                             &futs[i]),
                         0);
    }
    /* Run until every echo is back (or 20 s). */
    for (int round = 0; round < 2000; round++) {
        int done = 0;
        for (int i = 0; i < N; i++)
            done += cs[i].got_len == cs[i].payload_len;
        if (done == N)
            break;
        run_for(loop, 0.01);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(cs[i].got_len, cs[i].payload_len);
        assert_memory_equal(cs[i].got, msgs[i], cs[i].payload_len);
    }
    assert_int_equal(es.made, N);
    assert_int_equal(lc_server_active(s), N);
    for (int i = 0; i < N; i++) {
        lc_transport_close(cs[i].t);
        lc_future_unref(futs[i]);
        free(cs[i].got);
    }
    for (int round = 0; round < 1000 && es.lost < N; round++)
        run_for(loop, 0.01); /* up to 10 s: slow under the sanitizers on 2 loaded cores */
    assert_int_equal(es.lost, N);
    assert_int_equal(lc_server_active(s), 0);
    lc_server_free(s);
    free(cs);
    free(futs);
    free(msgs);
}

/* ---- EMFILE ---------------------------------------------------------------------------------- */

typedef struct {
    int calls;
    int error;
} exc_log_t;

static void exc_record(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    exc_log_t *l = arg;
    l->calls++;
    l->error = ctx->error;
}

static void test_stream_emfile_backs_off_and_recovers(void **state)
{
    lc_loop_t *loop = *state;
    exc_log_t log = {0};
    lc_loop_set_exception_handler(loop, exc_record, &log);
    echo_server_t es = {0};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_server(
                         loop, echo_server_factory, &es,
                         &(lc_server_opts_t){.host = "127.0.0.1", .accept_retry_delay = 0.1}, &fut),
                     0);
    lc_server_t *s = await_fut(loop, fut, 0);
    lc_future_unref(fut);
    int port = server_port(s);

    /* Connect first (the client sockets exist), then leave no fd free for accept(). */
    int clients[3];
    for (int i = 0; i < 3; i++) {
        clients[i] = raw_connect(port);
        assert_true(clients[i] >= 0);
    }
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int maxfd = clients[2];
    for (int fd = maxfd + 1; fd < maxfd + 64; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            maxfd = fd;
    low = old;
    low.rlim_cur = (rlim_t)maxfd + 1;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    double t0 = lc_loop_time(loop);
    run_for(loop, 0.05);
    /* Reported, no busy loop (the listener is not polled during the back-off), no crash. */
    assert_true(log.calls >= 1);
    assert_true(log.calls <= 3);
    assert_int_equal(log.error, -EMFILE);
    assert_int_equal(es.made, 0);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    wait_for(loop, &es.made, 3);
    assert_int_equal(es.made, 3); /* resumed after the back-off */
    assert_true(lc_loop_time(loop) - t0 >= 0.1);
    for (int i = 0; i < 3; i++)
        close(clients[i]);
    run_for(loop, 0.05);
    lc_server_free(s);
    lc_loop_set_exception_handler(loop, NULL, NULL);
}

/* ---- connect_accepted_socket, loop close with open streams ----------------------------------- */

static void test_stream_connect_accepted_socket(void **state)
{
    lc_loop_t *loop = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    client_t c = {.loop = loop, .payload = "via fd", .payload_len = 6};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_connect_accepted_socket(loop, client_factory, &c, sv[0], NULL, &fut),
                     0);
    lc_transport_t *t = await_fut(loop, fut, 0);
    lc_future_unref(fut);
    char buf[16] = {0};
    assert_int_equal(read(sv[1], buf, sizeof(buf)), 6);
    assert_string_equal(buf, "via fd");
    assert_int_equal(write(sv[1], "back", 4), 4);
    for (int i = 0; i < 1000 && c.got_len < 4; i++)
        run_for(loop, 0.01);
    assert_string_equal(c.got, "back");
    lc_transport_close(t);
    run_for(loop, 0.02);
    close(sv[1]);
    free(c.got);
    assert_int_equal(lc_loop_connect_accepted_socket(loop, client_factory, &c, -1, NULL, &fut),
                     LC_EINVAL);
}

static void test_stream_loop_close_with_open_streams(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    echo_server_t es = {0};
    lc_server_t *s = start_echo_server(loop, &es, "127.0.0.1");
    client_t c = {.loop = loop, .payload = "x", .payload_len = 1};
    connect_client(loop, &c, "127.0.0.1", server_port(s), 0);
    run_for(loop, 0.02);
    /* A create_server still resolving and a connect in flight, too. */
    lc_future_t *f1 = NULL, *f2 = NULL;
    assert_int_equal(lc_loop_create_server(loop, echo_server_factory, &es,
                                           &(lc_server_opts_t){.host = "localhost"}, &f1),
                     0);
    assert_int_equal(lc_loop_create_connection(
                         loop, client_factory, &c,
                         &(lc_connection_opts_t){.host = "localhost", .port_num = server_port(s)},
                         &f2),
                     0);
    /* Everything is released by close (ASan's leak check), and each open connection gets its
     * connection_lost, with LC_ECLOSED. */
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, LC_ECLOSED);
    assert_int_equal(es.lost, 1);
    assert_int_equal(es.lost_err, LC_ECLOSED);
    lc_server_free(s);
    /* Both futures were failed by the close (or are still pending); read them so that no
     * "exception never retrieved" report is printed. */
    lc_future_result(f1, NULL);
    lc_future_result(f2, NULL);
    lc_future_unref(f1);
    lc_future_unref(f2);
    assert_int_equal(lc_loop_free(loop), 0);
    free(c.got);
}

/* ---- Python's asyncio as the client ---------------------------------------------------------- */

static const char *python_client =
    "import asyncio, random, sys\n"
    "async def main(port):\n"
    "    r, w = await asyncio.open_connection('127.0.0.1', port)\n"
    "    rnd = random.Random(7)\n"
    "    total = 0\n"
    "    for i in range(200):\n"
    "        n = rnd.choice([1, 7, 100, 1500, 65536, 300000])\n"
    "        data = bytes(rnd.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)\n"
    "        data = data[:n]\n"
    "        w.write(data)\n"
    "        back = await r.readexactly(n)\n"
    "        assert back == data, 'mismatch at message %d' % i\n"
    "        total += n\n"
    "    w.close()\n"
    "    await w.wait_closed()\n"
    "    print('ok', total)\n"
    "asyncio.run(main(int(sys.argv[1])))\n";

typedef struct {
    pid_t pid;
    int status;
    bool exited;
    lc_loop_t *loop;
} child_t;

static void check_child(void *arg)
{
    child_t *ch = arg;
    if (waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid) {
        ch->exited = true;
        lc_loop_stop(ch->loop);
        return;
    }
    lc_loop_call_later(ch->loop, 0.01, check_child, ch, NULL);
}

static void test_stream_python_asyncio_client(void **state)
{
    lc_loop_t *loop = *state;
    if (access("/usr/bin/python3", X_OK) != 0)
        skip();
    echo_server_t es = {0};
    lc_server_t *s = start_echo_server(loop, &es, "127.0.0.1");
    char script[64], out[64], port[16];
    snprintf(script, sizeof(script), "/tmp/lc-pyclient-%d.py", (int)getpid());
    snprintf(out, sizeof(out), "/tmp/lc-pyclient-%d.out", (int)getpid());
    snprintf(port, sizeof(port), "%d", server_port(s));
    FILE *f = fopen(script, "w");
    fputs(python_client, f);
    fclose(f);
    child_t ch = {.loop = loop};
    ch.pid = fork();
    if (ch.pid == 0) {
        FILE *o = freopen(out, "w", stdout);
        (void)o;
        execl("/usr/bin/python3", "python3", script, port, (char *)NULL);
        _exit(127);
    }
    assert_true(ch.pid > 0);
    lc_loop_call_soon(loop, check_child, &ch, NULL);
    lc_handle_t *guard = NULL;
    lc_loop_call_later(loop, 60, lc_test_stop_cb, loop, &guard);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    if (!ch.exited) {
        kill(ch.pid, SIGKILL);
        waitpid(ch.pid, &ch.status, 0);
        fail_msg("the Python client did not finish in 60 s");
    }
    char line[128] = {0};
    f = fopen(out, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    unlink(script);
    unlink(out);
    assert_true(WIFEXITED(ch.status));
    assert_int_equal(WEXITSTATUS(ch.status), 0);
    assert_true(strncmp(line, "ok ", 3) == 0);
    wait_for(loop, &es.lost, 1);
    assert_int_equal(es.made, 1);
    assert_int_equal(es.lost, 1);
    lc_server_free(s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_stream_server_close_keeps_connections),
        T(test_stream_start_serving_false_and_serve_forever),
        T(test_stream_thousand_connections),
        T(test_stream_emfile_backs_off_and_recovers),
        T(test_stream_connect_accepted_socket),
        cmocka_unit_test(test_stream_loop_close_with_open_streams),
        T(test_stream_python_asyncio_client),
#undef T
    };
    return cmocka_run_group_tests_name("stream_server", tests, NULL, NULL);
}
