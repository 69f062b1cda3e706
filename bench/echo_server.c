/* The benchmark echo server (issue 5): a loop group serving 127.0.0.1:PORT, every byte read is
 * written back from data_received (one read and one write per readiness on the fast path).
 *
 *   echo_server [--loops N] [--port P] [--mode reuseport|handoff] [--nodelay on|off]
 *               [--send-timeout SECONDS] [--tls-cert FILE --tls-key FILE]
 *
 * --loops: loops (threads, one per CPU); default one per CPU of the affinity mask, so
 * `taskset -c 0 echo_server` is a one-loop server. --port: default 19000. --mode: reuseport (one
 * SO_REUSEPORT listener per loop, the default) or handoff (loop 0 accepts and deals connections
 * to the loops in turn). Stays in the foreground until SIGTERM or SIGINT, then closes the server
 * and the group and exits 0. --nodelay off clears TCP_NODELAY on accepted connections (loopcore
 * sets it by default, as asyncio does since 3.6, and so does the peers harness's epoll floor);
 * "off" is for experiments only. Meant for /work/shared/peers/run.sh echo --server-cmd ...
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
#include <sys/socket.h>

#include "bench/support/flags.h"
#include "bench/support/tls.h"
#include "loopcore.h"

static bool nodelay = true;
static double send_timeout = 60; /* seconds, > 0 */

static void echo_data_received(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)user;
    /* What the socket does not take now is queued by the transport; an error (peer gone) ends
     * the connection through connection_lost, so there is nothing to do here. */
    lc_transport_write(t, data, len);
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
    (void)user;
    lc_transport_set_send_timeout(t, send_timeout); /* > 0: validated by the flag parser */
    if (!nodelay) {
        int off = 0;
        setsockopt(lc_transport_get_fd(t), IPPROTO_TCP, TCP_NODELAY, &off, sizeof(off));
    }
}

/* No state per connection: EOF closes the transport (eof_received NULL). */
static const lc_protocol_t echo_protocol = {.connection_made = echo_connection_made,
                                            .data_received = echo_data_received,
                                            .pause_writing = echo_pause_writing,
                                            .resume_writing = echo_resume_writing};

static int echo_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    *proto = &echo_protocol;
    *user = NULL;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: echo_server [--loops N] [--port P] [--mode reuseport|handoff] "
                    "[--nodelay on|off] [--send-timeout SECONDS] [--tls-cert FILE --tls-key "
                    "FILE]\n");
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

    /* SIGTERM and SIGINT are taken by sigwait() below: block them before the loop threads are
     * made, so that they inherit the mask and the signal always comes to this thread. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    int r = pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    if (r != 0) {
        fprintf(stderr, "echo_server: pthread_sigmask: %s\n", strerror(r));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    lc_group_t *g = NULL;
    lc_group_server_t *gs = NULL;
    r = lc_group_create(&g, &(lc_group_opts_t){.nloops = (unsigned)loops});
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

    int sig = 0;
    do
        r = sigwait(&stop_signals, &sig);
    while (r == EINTR);

    r = lc_group_server_close(gs);
    if (r != 0)
        fprintf(stderr, "echo_server: closing the server: %s\n", lc_strerror(r));
    lc_group_server_free(gs);
    int r2 = lc_group_free(g);
    if (r2 != 0)
        fprintf(stderr, "echo_server: freeing the group: %s\n", lc_strerror(r2));
    return r == 0 && r2 == 0 ? 0 : 1;
}
