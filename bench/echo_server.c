/* The benchmark echo server (issue 5): a loop group serving 127.0.0.1:PORT, every byte read is
 * written back from data_received (one read and one write per readiness on the fast path).
 *
 *   echo_server [--loops N] [--port P] [--mode reuseport|handoff] [--nodelay on|off]
 *               [--send-timeout SECONDS] [--shutdown-timeout SECONDS]
 *               [--tls-cert FILE --tls-key FILE]
 *
 * --loops: loops (threads, one per CPU); default one per CPU of the affinity mask, so
 * `taskset -c 0 echo_server` is a one-loop server. --port: default 19000. --mode: reuseport (one
 * SO_REUSEPORT listener per loop, the default) or handoff (loop 0 accepts and deals connections
 * to the loops in turn). Stays in the foreground until SIGTERM or SIGINT, then shuts down
 * gracefully (lc_group_stop_on_signals, loopcore/signal.h): the server stops accepting; a
 * connection with nothing waiting in its socket closes once what it was sent is echoed and
 * flushed, one with bytes waiting echoes them first; the process exits 0 once every connection
 * is gone, or after --shutdown-timeout SECONDS (default 10) with the rest closed (a connection
 * still in the listen backlog then is reset, as by any listener's close). A second
 * SIGTERM or SIGINT exits at once, status 128 + signal (143, 130). --nodelay off clears TCP_NODELAY
 * on accepted connections (loopcore sets it by default, as asyncio does since 3.6, and so does the
 * peers harness's epoll floor); "off" is for experiments only. Meant for /work/shared/peers/run.sh
 * echo --server-cmd ...
 *
 * Flow control (asyncio's): when a connection's write buffer goes above the high-water mark
 * (pause_writing: the peer is not reading what it is sent), the server stops reading from it, and
 * reads again on resume_writing; so a client that sends without reading costs at most the
 * high-water mark plus one read, not everything it sends. --send-timeout SECONDS (default 60,
 * nginx's send_timeout; > 0): a connection whose queued data makes no progress for that long is to
 * be reset (the engine's lc_transport_set_send_timeout(), set in echo_connection_made), so that a
 * peer that never reads does not hold its connection forever.
 *
 * --tls-cert FILE --tls-key FILE (PEM; both or neither): serve TLS 1.2/1.3 on every loop with one
 * shared SSL_CTX, with no session resumption (bench/support/tls.c), for the harness's tls-echo
 * mode. The echo is then of plaintext: flow control counts plaintext bytes. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "bench/support/flags.h"
#include "bench/support/tls.h"
#include "loopcore.h"

static bool nodelay = true;
static double send_timeout = 60;     /* seconds, > 0 */
static double shutdown_timeout = 10; /* seconds, > 0 */

/* A connection, linked into its loop's list for the shutdown's drain. */
typedef struct echo_conn_s {
    lc_transport_t *t;
    struct echo_conn_s *prev, *next;
    bool lingering; /* shutdown: our side is shut (write_eof); reads are dropped */
} echo_conn_t;

static __thread echo_conn_t *loop_conns; /* this loop's connections */
static __thread bool draining;           /* shutdown: drain_hook ran on this loop */

/* Whether bytes wait in t's socket (the kernel took them; the loop has not read them). */
static bool unread_bytes(lc_transport_t *t)
{
    int n = 0;
    int fd = lc_transport_get_fd(t);
    return fd >= 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* Draining: a connection with nothing left to read is shut, nginx's lingering close: our side
 * once the queued echo is flushed (write_eof, a FIN), and what the peer still sends is dropped
 * until it closes too (the transport closes on its EOF). Closing at once would reset the
 * connection if bytes came in meanwhile, and a reset can destroy the echo still on its way. TLS
 * has no half-close: a plain close there. The shutdown timeout bounds the wait. */
static void drain_conn(echo_conn_t *c)
{
    if (c->lingering || lc_transport_is_closing(c->t) || unread_bytes(c->t))
        return;
    if (!lc_transport_can_write_eof(c->t) || lc_transport_write_eof(c->t) != 0) {
        lc_transport_close(c->t);
        return;
    }
    c->lingering = true;
    lc_transport_resume_reading(c->t); /* paused by flow control: read, to drop */
}

static void echo_data_received(lc_transport_t *t, const char *data, size_t len, void *user)
{
    echo_conn_t *c = user;
    if (c->lingering)
        return; /* sent after the shutdown's last echo: dropped */
    /* What the socket does not take now is queued by the transport; an error (peer gone) ends
     * the connection through connection_lost, so there is nothing to do here. */
    lc_transport_write(t, data, len);
    if (draining)
        drain_conn(c);
}

/* Flow control: stop reading while the peer does not take what is echoed back. */
static void echo_pause_writing(lc_transport_t *t, void *user)
{
    (void)user;
    lc_transport_pause_reading(t);
}

static void echo_resume_writing(lc_transport_t *t, void *user)
{
    (void)user;
    lc_transport_resume_reading(t);
}

static void echo_connection_made(lc_transport_t *t, void *user)
{
    echo_conn_t *c = user;
    c->t = t;
    c->prev = NULL;
    c->next = loop_conns;
    if (loop_conns != NULL)
        loop_conns->prev = c;
    loop_conns = c;
    lc_transport_set_send_timeout(t, send_timeout); /* > 0: validated by the flag parser */
    if (!nodelay) {
        int off = 0;
        setsockopt(lc_transport_get_fd(t), IPPROTO_TCP, TCP_NODELAY, &off, sizeof(off));
    }
    if (draining) /* handed off to this loop after its drain began */
        drain_conn(c);
}

static void echo_connection_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    echo_conn_t *c = user;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        loop_conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c);
}

/* EOF closes the transport (eof_received NULL). */
static const lc_protocol_t echo_protocol = {.connection_made = echo_connection_made,
                                            .data_received = echo_data_received,
                                            .connection_lost = echo_connection_lost,
                                            .pause_writing = echo_pause_writing,
                                            .resume_writing = echo_resume_writing};

static int echo_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    echo_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LC_ENOMEM;
    *proto = &echo_protocol;
    *user = c;
    return 0;
}

/* The shutdown hook, on every loop once the server stopped accepting. */
static void drain_hook(lc_loop_t *loop, unsigned index, void *arg)
{
    (void)loop;
    (void)index;
    (void)arg;
    draining = true;
    for (echo_conn_t *c = loop_conns; c != NULL; c = c->next)
        drain_conn(c); /* connection_lost unlinks it later */
}

static int usage(void)
{
    fprintf(stderr, "usage: echo_server [--loops N] [--port P] [--mode reuseport|handoff] "
                    "[--nodelay on|off] [--send-timeout SECONDS] [--shutdown-timeout SECONDS] "
                    "[--tls-cert FILE --tls-key FILE]\n");
    return 2;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    long loops = 0, port = 19000;
    lc_group_server_mode_t mode = LC_GROUP_SERVER_REUSEPORT;
    const char *tls_cert = NULL, *tls_key = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        const char *opt = argv[i], *val = argv[++i];
        if (strcmp(opt, "--loops") == 0) {
            if (!parse_long(val, 1, 4096, &loops))
                return usage();
        } else if (strcmp(opt, "--port") == 0) {
            if (!parse_long(val, 1, 65535, &port))
                return usage();
        } else if (strcmp(opt, "--nodelay") == 0) {
            if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0)
                return usage();
            nodelay = strcmp(val, "on") == 0;
        } else if (strcmp(opt, "--tls-cert") == 0) {
            tls_cert = val;
        } else if (strcmp(opt, "--tls-key") == 0) {
            tls_key = val;
        } else if (strcmp(opt, "--send-timeout") == 0) {
            if (!lc_bench_parse_seconds(val, &send_timeout))
                return usage();
        } else if (strcmp(opt, "--shutdown-timeout") == 0) {
            if (!lc_bench_parse_seconds(val, &shutdown_timeout))
                return usage();
        } else if (strcmp(opt, "--mode") == 0) {
            if (strcmp(val, "reuseport") == 0)
                mode = LC_GROUP_SERVER_REUSEPORT;
            else if (strcmp(val, "handoff") == 0)
                mode = LC_GROUP_SERVER_HANDOFF;
            else
                return usage();
        } else {
            return usage();
        }
    }

    if ((tls_cert == NULL) != (tls_key == NULL))
        return usage();
    struct ssl_ctx_st *tls = NULL;
    if (tls_cert != NULL) {
        char err[256];
        tls = lcb_tls_server_ctx(tls_cert, tls_key, err, sizeof(err));
        if (tls == NULL) {
            fprintf(stderr, "echo_server: TLS: %s\n", err);
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
    lc_group_server_t *gs = NULL;
    int r = lc_group_create(&g, &(lc_group_opts_t){.nloops = (unsigned)loops});
    if (r == 0)
        r = lc_group_start(g);
    if (r == 0)
        r = lc_group_create_server(
            g, echo_factory, NULL,
            &(lc_group_server_opts_t){
                .host = "127.0.0.1", .port = (int)port, .backlog = 4096, .mode = mode, .ssl = tls},
            &gs);
    bool use_tls = tls != NULL;
    SSL_CTX_free(tls); /* the group server holds its own reference */
    if (r != 0) {
        fprintf(stderr, "echo_server: %s\n", lc_strerror(r));
        if (g != NULL)
            lc_group_free(g);
        return 1;
    }
    fprintf(stderr, "echo_server: listening on 127.0.0.1:%d loops=%u mode=%s%s\n",
            lc_group_server_port(gs), lc_group_size(g),
            mode == LC_GROUP_SERVER_HANDOFF ? "handoff" : "reuseport", use_tls ? " tls" : "");

    r = lc_group_stop_on_signals(g, &(lc_group_signal_opts_t){.grace = shutdown_timeout,
                                                              .on_shutdown = drain_hook,
                                                              .servers = &gs,
                                                              .nservers = 1});
    if (r != 0)
        fprintf(stderr, "echo_server: signals: %s\n", lc_strerror(r));
    else {
        pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
        lc_group_join(g); /* until the signal's shutdown stops the loops */
    }
    lc_group_server_free(gs);
    int r2 = lc_group_free(g);
    if (r2 != 0)
        fprintf(stderr, "echo_server: freeing the group: %s\n", lc_strerror(r2));
    return r == 0 && r2 == 0 ? 0 : 1;
}
