/* Helpers of the stream tests (test_stream.c, test_stream_server.c): an echo server protocol
 * and a client protocol that record what they saw, and ways to run the loop until a future is
 * done, for a while, or until a count is reached. */
#ifndef LOOPCORE_TESTS_ENGINE_STREAM_HELPERS_H
#define LOOPCORE_TESTS_ENGINE_STREAM_HELPERS_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/support/loop_fixture.h"

/* Runs the loop until fut is done and fails the test unless its outcome is expect; its result. */
void *await_fut(lc_loop_t *loop, lc_future_t *fut, int expect);
/* The port of the server's first socket. */
int server_port(lc_server_t *s);

/* Echo server protocol: writes back what it reads. Counts connections. */
typedef struct {
    int made, lost, lost_err, eofs;
    bool keep_open_on_eof;
    bool reply_then_close_on_eof; /* half-close test: write "bye" and close after EOF */
    bool abort_with_rst;          /* reset the peer at connection_made */
    bool paused_at_start;         /* pause_reading() in connection_made */
    lc_transport_t *last;
} echo_server_t;

void es_made(lc_transport_t *t, void *user);
void es_data(lc_transport_t *t, const char *data, size_t len, void *user);
bool es_eof(lc_transport_t *t, void *user);
void es_lost(lc_transport_t *t, int err, void *user);
extern const lc_protocol_t echo_server_proto;
int echo_server_factory(void *arg, const lc_protocol_t **proto, void **user);

/* Client protocol: sends a payload at connection_made (optionally write_eof), collects what comes
 * back, stops the loop when it has `expect` bytes or the connection is lost. */
typedef struct {
    lc_loop_t *loop;
    const char *payload;
    size_t payload_len;
    bool eof_after_payload;
    bool keep_open_on_eof;
    char *got;
    size_t got_len, expect;
    int lost, lost_err, eofs;
    bool stop_when_done;
    int paused, resumed;
    size_t size_at_pause, size_at_resume;
    lc_transport_t *t;
} client_t;

void cl_made(lc_transport_t *t, void *user);
void cl_data(lc_transport_t *t, const char *data, size_t len, void *user);
bool cl_eof(lc_transport_t *t, void *user);
void cl_lost(lc_transport_t *t, int err, void *user);
void cl_pause(lc_transport_t *t, void *user);
void cl_resume(lc_transport_t *t, void *user);
extern const lc_protocol_t client_proto;
int client_factory(void *arg, const lc_protocol_t **proto, void **user);

/* An echo server on host, on a port the kernel picks; serving. */
lc_server_t *start_echo_server(lc_loop_t *loop, echo_server_t *es, const char *host);
/* A client connection to host:port; the connection's outcome must be expect_err. */
lc_transport_t *connect_client(lc_loop_t *loop, client_t *c, const char *host, int port,
                               int expect_err);
/* Runs the loop for seconds. */
void run_for(lc_loop_t *loop, double seconds);
/* Runs the loop until *var reaches want, for at most 10 s. */
void wait_for(lc_loop_t *loop, const int *var, int want);

#endif
