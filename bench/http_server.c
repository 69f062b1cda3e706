/* http_server: HTTP/1.1 on a loopcore group, for benchmarks and the demo (issue 6). This file is
 * the glue between transports and the request handling, which is in http_proto.c (no sockets).
 *
 *   http_server [--loops N] [--port P] [--host ADDR] [--mode reuseport|handoff]
 *               [--idle-timeout SECONDS] [--header-timeout SECONDS] [--send-timeout SECONDS]
 *               [--shutdown-timeout SECONDS] [--quiet]
 *
 * GET /plaintext (and GET /, as the peers harness requests) answers "Hello, World!" (text/plain)
 * and GET /json {"message":"Hello, World!"} (application/json), as in the TechEmpower tests;
 * HEAD the same without the body; anything else is 404 (405 for a method other than GET or HEAD).
 * Keep-alive and pipelining: every response of one read's worth of pipelined requests is appended
 * to one buffer and sent with one write. Exactly one response per request; after one that says
 * Connection: close nothing more is read or answered and the connection closes. Closing
 * responses: 400 for a malformed request (also a request line without a version), 505 for a
 * version other than HTTP/1.x, 431 for more than 100 header lines or 8 KiB of header bytes, 414
 * for a URL longer than 2 KiB, 405 for CONNECT; an upgrade request (Connection: upgrade) is
 * answered as a plain request, the upgrade ignored, and the connection then closed. See
 * http_proto.h.
 *
 * Timeouts (positive numbers of seconds, fractions allowed):
 *   --idle-timeout (default 60): a connection with no request in progress for that long is
 *     closed. Only requests count: bytes that are no request's (CRLFs between requests) do not.
 *   --header-timeout (default 60, nginx's client_header_timeout): a request head not complete
 *     that long after its first byte gets 408 and the connection closes (a client trickling its
 *     head a byte at a time cannot hold a connection).
 *   --send-timeout (default 60, nginx's send_timeout): a connection whose queued responses make
 *     no progress for that long (the peer reads nothing) is reset, open or closing: the engine's
 *     lc_transport_set_send_timeout(), set in conn_made.
 *
 * Flow control (asyncio's): when a connection's write buffer goes above the high-water mark (the
 * client sends requests but does not read the responses), the server stops reading from it until
 * resume_writing, so a connection costs at most the high-water mark plus the responses to one
 * read. A connection so paused is neither idle nor late with its head: it waits for its peer,
 * which the send timeout bounds.
 *
 * --tls-cert FILE --tls-key FILE (PEM; both or neither): HTTPS on every loop, one SSL_CTX shared
 * by all of them, no session resumption (bench/support/tls.c); a Connection: close request is
 * answered, then the connection closes with a TLS close_notify (the engine's close).
 *
 * --static DIR (issue 15): GET / HEAD /file/NAME serve the files of DIR with lc_loop_sendfile
 * instead of the routes above (bench/http_static.c: 404 for anything else, no path leaves DIR);
 * --static-copy DIR the same by read + write, the copying path to compare with.
 *
 * Graceful shutdown (lc_group_stop_on_signals, loopcore/signal.h): runs in the foreground until
 * SIGTERM or SIGINT; then the server stops accepting, every loop drains its connections (see
 * drain_hook: an idle one closes at once; one with a request in progress, or request bytes
 * waiting in its socket, gets its responses, the last with Connection: close, then closes), and
 * the process exits 0 once none is left, or after --shutdown-timeout SECONDS (default 10) with
 * whatever is left closed. "Closes" is a lingering close (our FIN after the last response, what
 * the peer still sends dropped until it closes too), so that no reset destroys responses on
 * their way. The --static connections are not drained: they are aborted at the signal (a file
 * in flight is cut). A connection still in the listen backlog (not accepted yet) when the server
 * stops accepting is reset, as by any listener's close. A second SIGTERM or SIGINT exits at once,
 * status 128 + signal (143 for SIGTERM, 130 for SIGINT). */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>
#include <sys/ioctl.h>

#include "http_proto.h"
#include "http_static.h"
#include "bench/support/flags.h"
#include "bench/support/tls.h"
#include "loopcore.h"

typedef struct conn_s {
    http_conn_t http; /* the requests: bytes in, responses out (http_proto.h) */
    lc_transport_t *t;
    struct conn_s *prev, *next; /* this loop's connections, for the sweep */
    double last_active;         /* the last request progress (or connect, or resume_writing) */
    bool write_paused;          /* between pause_writing and resume_writing: not reading */
    bool lingering;             /* shutdown: our side is shut (write_eof); reads are dropped */
} conn_t;

/* Per-loop state: each loop thread has its own (the connections of a loop live on its thread). */
typedef struct {
    lc_loop_t *loop;
    conn_t *conns;
    double now;    /* the loop's clock, refreshed by the sweep timer and on each read */
    bool draining; /* shutdown: drain_hook ran; connections close once answered */
} loop_state_t;

static __thread loop_state_t ls;
static double idle_timeout = 60;
static double header_timeout = 60;
static double send_timeout = 60;
static double shutdown_timeout = 10;
static const char *static_dir; /* --static / --static-copy: http_static.c serves instead */

static void drain_conn(conn_t *c);
static void linger_close(conn_t *c);

/* ---- Protocol -------------------------------------------------------------------------------- */

static void conn_made(lc_transport_t *t, void *user)
{
    conn_t *c = user;
    lc_transport_set_send_timeout(t, send_timeout); /* > 0: validated by the flag parser */
    c->t = t;
    ls.now = lc_loop_time(ls.loop); /* the sweep's stamp may be a period old */
    c->last_active = ls.now;
    c->prev = NULL;
    c->next = ls.conns;
    if (ls.conns != NULL)
        ls.conns->prev = c;
    ls.conns = c;
    if (ls.draining) /* handed off to this loop after its drain began */
        drain_conn(c);
}

static void conn_send(lc_transport_t *t, http_out_t out)
{
    if (out.len > 0)
        lc_transport_write(t, out.data, out.len); /* the whole batch in one write */
    if (out.close)
        lc_transport_close(t);
}

/* Whether request bytes wait in c's socket (the kernel took them; the loop has not read them). */
static bool unread_bytes(const conn_t *c)
{
    int n = 0;
    int fd = lc_transport_get_fd(c->t);
    return fd >= 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

static void conn_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    conn_t *c = user;
    if (c->lingering)
        return; /* sent after our last response: dropped */
    ls.now = lc_loop_time(ls.loop);
    http_proto_tick(time(NULL));
    unsigned progress = c->http.progress;
    http_out_t out = http_conn_feed(&c->http, data, len, ls.now);
    /* Bytes that are not a request's (CRLFs between requests) do not keep a connection alive. */
    if (c->http.progress != progress)
        c->last_active = ls.now;
    /* Draining: once nothing is in progress and nothing more waits in the socket, these are the
     * last responses; the last one says Connection: close. */
    if (ls.draining && !out.close && !c->http.in_message && !unread_bytes(c)) {
        out = http_conn_close_after(&c->http, out);
        if (out.len > 0)
            lc_transport_write(t, out.data, out.len);
        linger_close(c);
        return;
    }
    conn_send(t, out);
}

static void conn_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    conn_t *c = user;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (ls.conns == c)
        ls.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c);
}

/* Flow control: while the peer does not take our responses (the write buffer is above the
 * high-water mark), read no more requests from it. What one read's pipelined requests produce is
 * still written (bounded by one read); nothing more is queued until resume_writing. */
static void conn_pause_writing(lc_transport_t *t, void *user)
{
    conn_t *c = user;
    c->write_paused = true;
    lc_transport_pause_reading(t);
}

static void conn_resume_writing(lc_transport_t *t, void *user)
{
    conn_t *c = user;
    c->write_paused = false;
    c->last_active = ls.now; /* the peer read: it is not idle */
    /* A head cut off by the pause was the server's wait, not the client's. */
    http_conn_restart_head_clock(&c->http, ls.now);
    lc_transport_resume_reading(t);
}

static const lc_protocol_t http_protocol = {
    .connection_made = conn_made,
    .data_received = conn_data,
    .connection_lost = conn_lost,
    .pause_writing = conn_pause_writing,
    .resume_writing = conn_resume_writing,
};

static int http_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    conn_t *c = malloc(sizeof(*c));
    if (c == NULL)
        return LC_ENOMEM;
    http_conn_init(&c->http);
    c->t = NULL;
    c->prev = c->next = NULL;
    c->last_active = 0;
    c->write_paused = false;
    c->lingering = false;
    *proto = &http_protocol;
    *user = c;
    return 0;
}

/* ---- Per-loop housekeeping ------------------------------------------------------------------- */

/* Closes what has timed out: a request head arriving for longer than --header-timeout (408),
 * a connection with no request in progress idle for longer than --idle-timeout. A connection
 * paused by back-pressure is neither: it waits for its peer to read, which the send timeout
 * bounds (closing it here would only leave it flushing, stuck, all the same). */
static void sweep(void *arg)
{
    (void)arg;
    ls.now = lc_loop_time(ls.loop);
    http_proto_tick(time(NULL));
    for (conn_t *c = ls.conns; c != NULL; c = c->next) {
        if (c->write_paused || lc_transport_is_closing(c->t))
            continue;
        if (c->lingering) { /* the peer did not close: the idle timeout ends the wait */
            if (ls.now - c->last_active > idle_timeout)
                lc_transport_close(c->t);
            continue;
        }
        if (http_conn_head_expired(&c->http, ls.now, header_timeout))
            conn_send(c->t, http_conn_timeout(&c->http)); /* connection_lost unlinks it later */
        else if (!c->http.in_head && ls.now - c->last_active > idle_timeout)
            lc_transport_close(c->t);
    }
    double shortest = idle_timeout < header_timeout ? idle_timeout : header_timeout;
    double period = shortest / 4 < 1.0 ? shortest / 4 : 1.0;
    lc_loop_call_later(ls.loop, period, sweep, NULL, NULL);
}

static void on_loop_start(lc_loop_t *loop, unsigned index, void *arg)
{
    (void)index;
    (void)arg;
    ls.loop = loop;
    ls.now = lc_loop_time(loop);
    sweep(NULL);
    if (static_dir != NULL)
        http_static_loop_start(loop);
}

/* ---- Graceful shutdown ----------------------------------------------------------------------- */

/* The shutdown's close, nginx's lingering close: our side is shut once the queued responses are
 * flushed (a FIN, write_eof), and what the peer still sends is read and dropped until it closes
 * too (the transport closes on its EOF: no eof_received). Closing at once would reset the
 * connection if request bytes came in meanwhile, and a reset can destroy the responses still on
 * their way to the peer. The idle sweep and the shutdown timeout bound the wait. TLS has no
 * half-close: a plain close there. */
static void linger_close(conn_t *c)
{
    if (c->lingering || lc_transport_is_closing(c->t))
        return;
    if (!lc_transport_can_write_eof(c->t) || lc_transport_write_eof(c->t) != 0) {
        lc_transport_close(c->t);
        return;
    }
    c->lingering = true;
    lc_transport_resume_reading(c->t); /* paused by flow control: read, to drop */
}

/* An idle connection (no request in progress, none waiting in its socket) closes now. Any other
 * is left to conn_data, whose last responses close it. */
static void drain_conn(conn_t *c)
{
    if (c->http.in_message || unread_bytes(c))
        return;
    linger_close(c); /* connection_lost unlinks it later */
}

/* The shutdown hook, on every loop once the server stopped accepting. */
static void drain_hook(lc_loop_t *loop, unsigned index, void *arg)
{
    (void)loop;
    (void)index;
    (void)arg;
    ls.draining = true;
    for (conn_t *c = ls.conns; c != NULL; c = c->next)
        drain_conn(c);
    if (static_dir != NULL)
        http_static_loop_shutdown(); /* its connections are aborted (not drained) */
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--loops N] [--port P] [--host ADDR] [--mode reuseport|handoff] "
            "[--idle-timeout SECONDS] [--header-timeout SECONDS] [--send-timeout SECONDS] "
            "[--shutdown-timeout SECONDS] [--tls-cert FILE --tls-key FILE] "
            "[--static DIR | --static-copy DIR] [--quiet]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned loops = 0;
    int port = 8080;
    const char *host = "127.0.0.1";
    lc_group_server_mode_t mode = LC_GROUP_SERVER_REUSEPORT;
    bool quiet = false;
    const char *tls_cert = NULL, *tls_key = NULL;
    bool static_copy = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--loops") == 0 && v != NULL) {
            loops = (unsigned)atoi(v), i++;
        } else if (strcmp(a, "--port") == 0 && v != NULL) {
            port = atoi(v), i++;
        } else if (strcmp(a, "--host") == 0 && v != NULL) {
            host = v, i++;
        } else if (strcmp(a, "--mode") == 0 && v != NULL) {
            if (strcmp(v, "reuseport") == 0)
                mode = LC_GROUP_SERVER_REUSEPORT;
            else if (strcmp(v, "handoff") == 0)
                mode = LC_GROUP_SERVER_HANDOFF;
            else
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--idle-timeout") == 0 && v != NULL) {
            if (!lc_bench_parse_seconds(v, &idle_timeout))
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--header-timeout") == 0 && v != NULL) {
            if (!lc_bench_parse_seconds(v, &header_timeout))
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--send-timeout") == 0 && v != NULL) {
            if (!lc_bench_parse_seconds(v, &send_timeout))
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--shutdown-timeout") == 0 && v != NULL) {
            if (!lc_bench_parse_seconds(v, &shutdown_timeout))
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--tls-cert") == 0 && v != NULL) {
            tls_cert = v, i++;
        } else if (strcmp(a, "--tls-key") == 0 && v != NULL) {
            tls_key = v, i++;
        } else if ((strcmp(a, "--static") == 0 || strcmp(a, "--static-copy") == 0) && v != NULL) {
            static_dir = v, i++;
            static_copy = strcmp(a, "--static-copy") == 0;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else {
            usage(argv[0]);
        }
    }
    if (port < 0 || port > 65535 || (tls_cert == NULL) != (tls_key == NULL))
        usage(argv[0]);
    struct ssl_ctx_st *tls = NULL;
    if (tls_cert != NULL) {
        char err[256];
        tls = lcb_tls_server_ctx(tls_cert, tls_key, err, sizeof(err));
        if (tls == NULL) {
            fprintf(stderr, "http_server: TLS: %s\n", err);
            return 1;
        }
    }

    http_proto_init();
    if (static_dir != NULL) {
        int sr = http_static_init(static_dir, static_copy, idle_timeout, send_timeout);
        if (sr != 0) {
            fprintf(stderr, "http_server: --static %s: %s\n", static_dir, lc_strerror(sr));
            return 1;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    /* SIGTERM and SIGINT wait (pending) until the shutdown's handlers are in place, below: the
     * port answers before that, and a signal sent as soon as it does must not find SIG_DFL. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    lc_group_t *g = NULL;
    int r = lc_group_create(&g, &(lc_group_opts_t){.nloops = loops, .on_start = on_loop_start});
    if (r == 0)
        r = lc_group_start(g);
    lc_group_server_t *gs = NULL;
    if (r == 0)
        r = lc_group_create_server(
            g, static_dir != NULL ? http_static_factory : http_factory, NULL,
            &(lc_group_server_opts_t){
                .host = host, .port = port, .backlog = 4096, .mode = mode, .ssl = tls},
            &gs);
    bool use_tls = tls != NULL;
    SSL_CTX_free(tls); /* the group server holds its own reference */
    if (r != 0) {
        fprintf(stderr, "http_server: %s\n", lc_strerror(r));
        lc_group_free(g);
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "http_server: listening on %s:%d loops=%u mode=%s%s\n", host,
                lc_group_server_port(gs), lc_group_size(g),
                mode == LC_GROUP_SERVER_REUSEPORT ? "reuseport" : "handoff", use_tls ? " tls" : "");
    r = lc_group_stop_on_signals(g, &(lc_group_signal_opts_t){.grace = shutdown_timeout,
                                                              .on_shutdown = drain_hook,
                                                              .servers = &gs,
                                                              .nservers = 1});
    if (r != 0) {
        fprintf(stderr, "http_server: signals: %s\n", lc_strerror(r));
        lc_group_server_free(gs);
        lc_group_free(g);
        return 1;
    }
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    lc_group_join(g); /* until the signal's shutdown stops the loops */
    bool drained = lc_group_shutdown_state(g) == LC_GROUP_SHUTDOWN_DRAINED;
    lc_group_server_free(gs);
    lc_group_free(g); /* closes what the grace time left open */
    if (!quiet)
        fprintf(stderr, "http_server: stopped (%s)\n",
                drained ? "drained" : "shutdown timeout: connections closed");
    return 0;
}
