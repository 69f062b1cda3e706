/* http_proto: http_server's request handling with no sockets and no loop: request bytes in,
 * response bytes out, and whether the connection must close after them. http_server glues it to
 * transports; the fuzz harness (tests/fuzz/http_request_fuzz.c) and the unit tests drive it
 * directly.
 *
 * What it answers. GET /plaintext (and GET /) "Hello, World!" (text/plain), GET /json
 * {"message":"Hello, World!"} (application/json), as in the TechEmpower tests; HEAD of the same
 * without the body; any other path 404; any other method 405 (with Allow: GET, HEAD). Keep-alive
 * and pipelining: the responses to every request of one feed are appended to one buffer, the hot
 * keep-alive GETs as a memcpy() of a prebuilt response. Exactly one response per request, and
 * nothing after a response that says Connection: close (the connection is then done; later
 * feeds return nothing). Closing responses: 400 (malformed; also a request line without a
 * version, which llhttp reads as HTTP/0.9), 505 (a version other than 1.x), 414 (URL over 2 KiB),
 * 431 (more than 100 header lines or 8 KiB of header bytes), 408 (http_conn_timeout), and the
 * answer to a request that does not keep the connection alive (HTTP/1.0 without keep-alive,
 * Connection: close), to an upgrade request (the upgrade is ignored, as RFC 9110 allows, and the
 * connection closed, since what follows would be the other protocol) and to CONNECT (405).
 *
 * Threads: the output buffer, the Date and the prebuilt responses are per thread; a connection is
 * used by one thread at a time. Requests are parsed with llhttp (Debian's node-llhttp). */
#ifndef LOOPCORE_BENCH_HTTP_PROTO_H
#define LOOPCORE_BENCH_HTTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "llhttp.h"

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_HEADER_BYTES 8192
#define HTTP_MAX_URL 2048

/* One connection's request state. */
typedef struct {
    llhttp_t parser;
    double now;        /* the time given to the running feed */
    double head_start; /* when the current request's first byte was fed (valid while in_head) */
    unsigned progress; /* counts request events (head complete, body bytes, complete) */
    size_t url_len;
    size_t header_bytes;
    unsigned nheaders;
    int reject;      /* the status a callback decided to refuse the request with; 0 otherwise */
    bool in_head;    /* a request's head has begun and is not complete yet */
    bool in_message; /* a request has begun (head or body) and is not complete yet */
    bool closed;     /* a closing response was produced: nothing more is read or answered */
    char url[HTTP_MAX_URL];
} http_conn_t;

/* What a call produced: len bytes at data to send (valid until the next call on this thread),
 * then close the connection (after sending them) if close is set. */
typedef struct {
    const char *data;
    size_t len;
    bool close;
} http_out_t;

/* Once per process, before any connection. */
void http_proto_init(void);

/* Sets this thread's Date to wall-clock second `now` (cheap when it is unchanged: call it before
 * each feed with time(NULL)). A thread that never calls it gets the time of its first feed. */
void http_proto_tick(time_t now);

/* Frees this thread's output buffer. */
void http_proto_thread_free(void);

void http_conn_init(http_conn_t *c);

/* Feeds len bytes read from the connection at time `now` (any monotonic clock, in seconds: it
 * stamps head_start). */
http_out_t http_conn_feed(http_conn_t *c, const char *data, size_t len, double now);

/* Shutdown (http_server's drain): the connection is to close after what `out` (the result of
 * the call just made on this thread for c) sends. The last response of out gets a
 * Connection: close header if it has none; with no response in out, the connection just closes.
 * c is then closed (later feeds return nothing). Returns the output to send instead of out. */
http_out_t http_conn_close_after(http_conn_t *c, http_out_t out);

/* True when a request head has been arriving for longer than timeout seconds. */
static inline bool http_conn_head_expired(const http_conn_t *c, double now, double timeout)
{
    return c->in_head && !c->closed && now - c->head_start > timeout;
}

/* Restarts the head's clock (after a pause that was the server's doing, not the client's). */
static inline void http_conn_restart_head_clock(http_conn_t *c, double now)
{
    if (c->in_head)
        c->head_start = now;
}

/* The request head took too long: a 408 that closes the connection (nothing if it is already
 * closed). */
http_out_t http_conn_timeout(http_conn_t *c);

#endif
