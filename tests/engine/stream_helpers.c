/* Helpers of the stream tests: see stream_helpers.h. */
#include "tests/engine/stream_helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void *await_fut(lc_loop_t *loop, lc_future_t *fut, int expect)
{
    void *res = NULL;
    int r = lc_loop_run_until_complete(loop, fut, &res);
    if (r != expect)
        fail_msg("future: %d (%s), expected %d", r, lc_strerror(r), expect);
    return res;
}

int server_port(lc_server_t *s)
{
    int fds[4];
    size_t n = 4;
    assert_int_equal(lc_server_sockets(s, fds, &n), 0);
    assert_true(n >= 1);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    assert_int_equal(getsockname(fds[0], (struct sockaddr *)&ss, &len), 0);
    return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                         : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

void es_made(lc_transport_t *t, void *user)
{
    echo_server_t *es = user;
    es->made++;
    es->last = t;
    if (es->abort_with_rst) {
        struct linger lg = {1, 0};
        setsockopt(lc_transport_get_fd(t), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        lc_transport_abort(t);
    }
    if (es->paused_at_start)
        lc_transport_pause_reading(t);
}

void es_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)user;
    int r = lc_transport_write(t, data, len);
    /* -EPIPE: this side already wrote its EOF (the half-close test). */
    if (r != 0 && r != -EPIPE)
        fail_msg("echo write: %s", lc_strerror(r));
}

bool es_eof(lc_transport_t *t, void *user)
{
    echo_server_t *es = user;
    es->eofs++;
    if (es->reply_then_close_on_eof) {
        assert_int_equal(lc_transport_write(t, "bye", 3), 0);
        lc_transport_close(t);
        return true;
    }
    return es->keep_open_on_eof;
}

void es_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    echo_server_t *es = user;
    es->lost++;
    es->lost_err = err;
    if (es->last == t)
        es->last = NULL;
}

const lc_protocol_t echo_server_proto = {
    .connection_made = es_made,
    .data_received = es_data,
    .eof_received = es_eof,
    .connection_lost = es_lost,
};

int echo_server_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &echo_server_proto;
    *user = arg;
    return 0;
}

void cl_made(lc_transport_t *t, void *user)
{
    client_t *c = user;
    c->t = t;
    if (c->payload_len > 0)
        assert_int_equal(lc_transport_write(t, c->payload, c->payload_len), 0);
    if (c->eof_after_payload)
        assert_int_equal(lc_transport_write_eof(t), 0);
}

void cl_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)t;
    client_t *c = user;
    c->got = realloc(c->got, c->got_len + len + 1);
    memcpy(c->got + c->got_len, data, len);
    c->got_len += len;
    c->got[c->got_len] = '\0';
    if (c->stop_when_done && c->expect > 0 && c->got_len >= c->expect)
        lc_loop_stop(c->loop);
}

bool cl_eof(lc_transport_t *t, void *user)
{
    (void)t;
    client_t *c = user;
    c->eofs++;
    return c->keep_open_on_eof;
}

void cl_lost(lc_transport_t *t, int err, void *user)
{
    client_t *c = user;
    c->lost++;
    c->lost_err = err;
    if (c->t == t)
        c->t = NULL;
    if (c->stop_when_done)
        lc_loop_stop(c->loop);
}

void cl_pause(lc_transport_t *t, void *user)
{
    client_t *c = user;
    c->paused++;
    c->size_at_pause = lc_transport_get_write_buffer_size(t);
}

void cl_resume(lc_transport_t *t, void *user)
{
    client_t *c = user;
    c->resumed++;
    c->size_at_resume = lc_transport_get_write_buffer_size(t);
    lc_loop_stop(c->loop);
}

const lc_protocol_t client_proto = {
    .connection_made = cl_made,
    .data_received = cl_data,
    .eof_received = cl_eof,
    .connection_lost = cl_lost,
    .pause_writing = cl_pause,
    .resume_writing = cl_resume,
};

int client_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &client_proto;
    *user = arg;
    return 0;
}

lc_server_t *start_echo_server(lc_loop_t *loop, echo_server_t *es, const char *host)
{
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_server(loop, echo_server_factory, es,
                                           &(lc_server_opts_t){.host = host, .port = 0}, &fut),
                     0);
    lc_server_t *s = await_fut(loop, fut, 0);
    lc_future_unref(fut);
    assert_non_null(s);
    assert_true(lc_server_is_serving(s));
    return s;
}

lc_transport_t *connect_client(lc_loop_t *loop, client_t *c, const char *host, int port,
                               int expect_err)
{
    lc_future_t *fut = NULL;
    assert_int_equal(
        lc_loop_create_connection(loop, client_factory, c,
                                  &(lc_connection_opts_t){.host = host, .port_num = port}, &fut),
        0);
    lc_transport_t *t = await_fut(loop, fut, expect_err);
    lc_future_unref(fut);
    return t;
}

void run_for(lc_loop_t *loop, double seconds)
{
    lc_handle_t *h = NULL;
    assert_int_equal(lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, &h), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_handle_cancel(h);
    lc_handle_unref(h);
}

/* Runs the loop until *var reaches want, in 10 ms slices, for at most 10 s: the figures are not
 * timing-bound, the sanitizers and a loaded machine only make them slower. */
void wait_for(lc_loop_t *loop, const int *var, int want)
{
    for (int i = 0; i < 1000 && *var < want; i++)
        run_for(loop, 0.01);
}
