/* Streams: TCP (127.0.0.1, ::1) and Unix echo, flow control, half-close, resets, refused
 * connections and address fallback, DNS. The server side is in test_stream_server.c; the
 * protocols both use are in stream_helpers.h. */
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

/* ---- echo ------------------------------------------------------------------------------------ */

static void echo_round_trip(lc_loop_t *loop, const char *host)
{
    echo_server_t es = {0};
    lc_server_t *s = start_echo_server(loop, &es, host);
    int port = server_port(s);
    static char payload[100000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)('a' + i % 26);
    client_t c = {.loop = loop,
                  .payload = payload,
                  .payload_len = sizeof(payload),
                  .expect = sizeof(payload),
                  .stop_when_done = true};
    lc_transport_t *t = connect_client(loop, &c, host, port, 0);
    assert_non_null(t);
    assert_ptr_equal(lc_transport_get_loop(t), loop);
    void *user = NULL;
    assert_ptr_equal(lc_transport_get_protocol(t, &user), &client_proto);
    assert_ptr_equal(user, &c);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(lc_transport_get_peername(t, (struct sockaddr *)&ss, &len), 0);
    assert_true(lc_transport_get_fd(t) >= 0);
    if (c.got_len < c.expect)
        run_for(loop, 5);
    assert_int_equal(c.got_len, sizeof(payload));
    assert_memory_equal(c.got, payload, sizeof(payload));
    assert_int_equal(es.made, 1);
    assert_int_equal(lc_server_accepted(s), 1);
    lc_transport_close(t);
    assert_true(lc_transport_is_closing(t));
    assert_int_equal(lc_transport_write(t, "x", 1), LC_ECLOSED);
    c.stop_when_done = false;
    wait_for(loop, &c.lost, 1);
    wait_for(loop, &es.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    assert_int_equal(es.lost, 1); /* the server saw EOF and closed its side */
    assert_int_equal(lc_server_active(s), 0);
    lc_server_free(s);
    free(c.got);
}

static void test_stream_echo_ipv4(void **state) { echo_round_trip(*state, "127.0.0.1"); }

static void test_stream_echo_ipv6(void **state) { echo_round_trip(*state, "::1"); }

static void unix_echo(lc_loop_t *loop, const char *path, size_t path_len)
{
    echo_server_t es = {0};
    lc_future_t *fut = NULL;
    assert_int_equal(
        lc_loop_create_unix_server(loop, echo_server_factory, &es,
                                   &(lc_unix_opts_t){.path = path, .path_len = path_len}, &fut),
        0);
    lc_server_t *s = await_fut(loop, fut, 0);
    lc_future_unref(fut);
    client_t c = {.loop = loop,
                  .payload = "hello unix",
                  .payload_len = 10,
                  .expect = 10,
                  .stop_when_done = true};
    assert_int_equal(
        lc_loop_create_unix_connection(loop, client_factory, &c,
                                       &(lc_unix_opts_t){.path = path, .path_len = path_len}, &fut),
        0);
    lc_transport_t *t = await_fut(loop, fut, 0);
    lc_future_unref(fut);
    if (c.got_len < c.expect)
        run_for(loop, 5);
    assert_int_equal(c.got_len, 10);
    assert_memory_equal(c.got, "hello unix", 10);
    lc_transport_close(t);
    c.stop_when_done = false;
    run_for(loop, 0.02);
    lc_server_free(s);
    free(c.got);
}

static void test_stream_echo_unix_path_and_abstract(void **state)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/lc-test-%d.sock", (int)getpid());
    unix_echo(*state, path, 0);
    unix_echo(*state, path, 0); /* a stale socket file is replaced */
    unlink(path);
    char abstract[32];
    int n = snprintf(abstract + 1, sizeof(abstract) - 1, "lc-test-%d", (int)getpid());
    abstract[0] = '\0';
    unix_echo(*state, abstract, (size_t)n + 1);
}

/* ---- flow control ---------------------------------------------------------------------------- */

static void test_stream_pause_and_resume_writing_at_watermarks(void **state)
{
    lc_loop_t *loop = *state;
    echo_server_t es = {.paused_at_start = true};
    lc_server_t *s = start_echo_server(loop, &es, "127.0.0.1");
    client_t c = {.loop = loop};
    lc_transport_t *t = connect_client(loop, &c, "127.0.0.1", server_port(s), 0);
    size_t low, high;
    assert_int_equal(lc_transport_get_write_buffer_limits(t, &low, &high), 0);
    assert_int_equal(low, 16384);
    assert_int_equal(high, 65536);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 10, 20), LC_EINVAL);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 40000, -1), 0);
    assert_int_equal(lc_transport_get_write_buffer_limits(t, &low, &high), 0);
    assert_int_equal(low, 10000);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -1, 5000), 0);
    assert_int_equal(lc_transport_get_write_buffer_limits(t, &low, &high), 0);
    assert_int_equal(high, 20000);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, -1, -1), 0);
    wait_for(loop, &es.made, 1); /* the server accepts and pauses its reading */
    assert_int_equal(es.made, 1);

    /* The peer does not read: the socket buffers fill, then ours. */
    static char chunk[8192];
    memset(chunk, 'z', sizeof(chunk));
    size_t written = 0;
    while (c.paused == 0 && written < (64u << 20)) {
        assert_int_equal(lc_transport_write(t, chunk, sizeof(chunk)), 0);
        written += sizeof(chunk);
    }
    assert_int_equal(c.paused, 1);
    assert_true(c.size_at_pause > 65536);
    /* Writes while paused are still taken. */
    assert_int_equal(lc_transport_write(t, chunk, sizeof(chunk)), 0);
    written += sizeof(chunk);
    assert_int_equal(c.paused, 1);
    /* The peer starts reading (and echoing: we read it all back). */
    assert_int_equal(lc_transport_resume_reading(es.last), 0);
    run_for(loop, 10); /* cl_resume stops the loop */
    assert_int_equal(c.resumed, 1);
    assert_true(c.size_at_resume <= 16384);
    lc_transport_abort(t);
    run_for(loop, 0.05);
    lc_server_free(s);
    free(c.got);
}

/* ---- half-close ------------------------------------------------------------------------------ */

static void test_stream_half_close_client_side(void **state)
{
    lc_loop_t *loop = *state;
    echo_server_t es = {.reply_then_close_on_eof = true};
    lc_server_t *s = start_echo_server(loop, &es, "127.0.0.1");
    client_t c = {.loop = loop,
                  .payload = "ping",
                  .payload_len = 4,
                  .eof_after_payload = true,
                  .stop_when_done = true};
    lc_transport_t *t = connect_client(loop, &c, "127.0.0.1", server_port(s), 0);
    assert_true(lc_transport_can_write_eof(t));
    assert_int_equal(lc_transport_write(t, "late", 4), -EPIPE);
    run_for(loop, 5); /* ends when the client's connection is lost */
    /* The server got the data and EOF, answered on its still-open side, then closed. */
    assert_int_equal(es.eofs, 1);
    assert_string_equal(c.got, "pingbye");
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    lc_server_free(s);
    free(c.got);
}

static void server_half_closes(lc_transport_t *t, void *user)
{
    echo_server_t *es = user;
    es->made++;
    assert_int_equal(lc_transport_write(t, "hello", 5), 0);
    assert_int_equal(lc_transport_write_eof(t), 0);
}

static const lc_protocol_t half_closing_server = {
    .connection_made = server_half_closes,
    .data_received = es_data,
    .eof_received = es_eof,
    .connection_lost = es_lost,
};

static int half_closing_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &half_closing_server;
    *user = arg;
    return 0;
}

static void test_stream_half_close_server_side(void **state)
{
    lc_loop_t *loop = *state;
    echo_server_t es = {0};
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_server(loop, half_closing_factory, &es,
                                           &(lc_server_opts_t){.host = "127.0.0.1"}, &fut),
                     0);
    lc_server_t *s = await_fut(loop, fut, 0);
    lc_future_unref(fut);
    client_t c = {.loop = loop, .keep_open_on_eof = true};
    lc_transport_t *t = connect_client(loop, &c, "127.0.0.1", server_port(s), 0);
    run_for(loop, 0.1);
    assert_string_equal(c.got, "hello");
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost, 0); /* kept open: we can still write */
    assert_false(lc_transport_is_reading(t));
    assert_int_equal(lc_transport_write(t, "after", 5), 0);
    run_for(loop, 0.05);
    lc_transport_close(t);
    wait_for(loop, &c.lost, 1);
    wait_for(loop, &es.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(es.lost, 1);
    lc_server_free(s);
    free(c.got);
}

/* ---- reset, refused, resolution -------------------------------------------------------------- */

static void test_stream_peer_reset_gives_error(void **state)
{
    lc_loop_t *loop = *state;
    echo_server_t es = {.abort_with_rst = true};
    lc_server_t *s = start_echo_server(loop, &es, "127.0.0.1");
    client_t c = {.loop = loop, .stop_when_done = true};
    connect_client(loop, &c, "127.0.0.1", server_port(s), 0);
    run_for(loop, 5);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, -ECONNRESET);
    lc_server_free(s);
    free(c.got);
}

static void test_stream_connect_refused_and_address_fallback(void **state)
{
    lc_loop_t *loop = *state;
    /* A port nobody listens on. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    int dead_port = ntohs(sin.sin_port);
    client_t c = {.loop = loop};
    assert_null(connect_client(loop, &c, "127.0.0.1", dead_port, -ECONNREFUSED));
    close(fd);

    /* "localhost" gives ::1 and 127.0.0.1; with the server on 127.0.0.1 only, whichever comes
     * first, the connection ends on the address that works. */
    echo_server_t es = {0};
    lc_server_t *s = start_echo_server(loop, &es, "127.0.0.1");
    lc_transport_t *t = connect_client(loop, &c, "localhost", server_port(s), 0);
    assert_non_null(t);
    lc_transport_close(t);
    run_for(loop, 0.02);
    lc_server_free(s);

    lc_future_t *fut = NULL;
    assert_int_equal(
        lc_loop_create_connection(
            loop, client_factory, &c,
            &(lc_connection_opts_t){.host = "127.0.0.1", .port_num = 80, .server_hostname = "x"},
            &fut),
        LC_EINVAL); /* TLS arguments without ssl, as asyncio */
    assert_int_equal(lc_loop_create_connection(loop, client_factory, &c, NULL, &fut), LC_EINVAL);
    assert_int_equal(
        lc_loop_create_connection(loop, NULL, &c, &(lc_connection_opts_t){.port_num = 80}, &fut),
        LC_EINVAL);
}

static void test_stream_getaddrinfo_and_getnameinfo(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *fut = NULL;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    assert_int_equal(lc_loop_getaddrinfo(loop, "127.0.0.1", "8080", &hints, &fut), 0);
    struct addrinfo *ai = await_fut(loop, fut, 0);
    assert_non_null(ai);
    assert_int_equal(ai->ai_family, AF_INET);
    struct sockaddr_in *sin = (struct sockaddr_in *)ai->ai_addr;
    assert_int_equal(ntohs(sin->sin_port), 8080);
    lc_future_t *fut2 = NULL;
    assert_int_equal(lc_loop_getnameinfo(loop, ai->ai_addr, NI_NUMERICHOST | NI_NUMERICSERV, &fut2),
                     0);
    lc_nameinfo_t *ni = await_fut(loop, fut2, 0);
    assert_string_equal(ni->host, "127.0.0.1");
    assert_string_equal(ni->service, "8080");
    lc_future_unref(fut2);
    lc_future_unref(fut); /* frees the addrinfo list */

    assert_int_equal(lc_loop_getaddrinfo(loop, "no-such-host.invalid", "80", NULL, &fut), 0);
    void *res = NULL;
    int r = lc_loop_run_until_complete(loop, fut, &res);
    assert_true(r < 0);
    assert_string_not_equal(lc_strerror(r), "unknown error");
    lc_future_unref(fut);
    assert_int_equal(lc_loop_getaddrinfo(loop, NULL, NULL, NULL, &fut), LC_EINVAL);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_stream_echo_ipv4),
        T(test_stream_echo_ipv6),
        T(test_stream_echo_unix_path_and_abstract),
        T(test_stream_pause_and_resume_writing_at_watermarks),
        T(test_stream_half_close_client_side),
        T(test_stream_half_close_server_side),
        T(test_stream_peer_reset_gives_error),
        T(test_stream_connect_refused_and_address_fallback),
        T(test_stream_getaddrinfo_and_getnameinfo),
#undef T
    };
    return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
