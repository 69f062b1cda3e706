/* The UDP benchmark echo server (issue 16): a loop group serving HOST:PORT with one datagram
 * endpoint per loop (lc_group_create_datagram_endpoint: SO_REUSEPORT, the kernel spreads the
 * flows), every datagram sent back to its sender from datagram_received.
 *
 *   udp_echo_server [--loops N] [--port P] [--host ADDR] [--offload on|off] [--unpinned]
 *
 * --loops: default one per CPU of the affinity mask (`taskset -c 0 udp_echo_server` is a
 * one-loop server). --port: default 19100. --host: a numeric address, default 127.0.0.1.
 * --offload off: every datagram travels alone (.single_segments: no UDP GRO on receive, no GSO
 * for the answers), to measure GSO / GRO's gain apart; default on. Prints
 * "listening on HOST:PORT (N loops)" once every loop serves, then stays in the foreground until
 * SIGTERM or SIGINT, and exits 0 after closing the endpoints and the group. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loopcore.h"

static void echo_received(lc_datagram_transport_t *t, const char *data, size_t len,
                          const struct sockaddr *addr, socklen_t addrlen, void *user)
{
    (void)user;
    /* What the socket does not take now is queued by the transport (flow control pauses
     * nothing here: a UDP server answers or drops, and the queue is bounded by what arrives
     * while the socket is full). A refused datagram fails only itself. */
    if (addr != NULL)
        lc_datagram_transport_sendto(t, data, len, addr, addrlen);
}

static const lc_datagram_protocol_t echo_proto = {.datagram_received = echo_received};

static int echo_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    (void)arg;
    *proto = &echo_proto;
    *user = NULL;
    return 0;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    long loops = 0, port = 19100;
    const char *host = "127.0.0.1";
    bool unpinned = false, single_segments = false;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--unpinned") == 0) {
            unpinned = true;
            continue;
        }
        const char *val = i + 1 < argc ? argv[++i] : NULL;
        bool ok = val != NULL;
        if (ok && strcmp(opt, "--loops") == 0)
            ok = parse_long(val, 1, 4096, &loops);
        else if (ok && strcmp(opt, "--port") == 0)
            ok = parse_long(val, 0, 65535, &port);
        else if (ok && strcmp(opt, "--host") == 0)
            host = val;
        else if (ok && strcmp(opt, "--offload") == 0 &&
                 (strcmp(val, "on") == 0 || strcmp(val, "off") == 0))
            single_segments = strcmp(val, "off") == 0;
        else
            ok = false;
        if (!ok) {
            fprintf(
                stderr,
                "usage: udp_echo_server [--loops N] [--port P] [--host ADDR] [--offload on|off] "
                "[--unpinned]\n");
            return 2;
        }
    }
    /* SIGTERM and SIGINT are taken by sigwait() below: block them before the loop threads are
     * made, so that they inherit the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) != 0)
        return 1;
    lc_group_t *g = NULL;
    lc_group_datagram_t *gd = NULL;
    int r =
        lc_group_create(&g, &(lc_group_opts_t){.nloops = (unsigned)loops, .unpinned = unpinned});
    if (r == 0)
        r = lc_group_start(g);
    if (r == 0)
        r = lc_group_create_datagram_endpoint(
            g, echo_factory, NULL,
            &(lc_group_datagram_opts_t){
                .host = host, .port = (int)port, .single_segments = single_segments},
            &gd);
    if (r != 0) {
        fprintf(stderr, "udp_echo_server: %s\n", lc_strerror(r));
        lc_group_free(g);
        return 1;
    }
    printf("listening on %s:%d (%u loops)\n", host, lc_group_datagram_port(gd), lc_group_size(g));
    fflush(stdout);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    r = lc_group_datagram_free(gd);
    int r2 = lc_group_free(g);
    return r == 0 && r2 == 0 ? 0 : 1;
}
