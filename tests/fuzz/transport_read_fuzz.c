/* transport_read_fuzz: the engine's stream transport read path (engine/transport.c) against a
 * peer the input drives.
 *
 * Each input is one connection on a fresh loop: a socketpair or a loopback TCP pair whose one end
 * becomes a transport (lc_loop_connect_accepted_socket) and whose other end, the peer, the
 * harness writes to. The input is a program:
 *
 *   byte 0   set-up: bit 0 TCP (else AF_UNIX), bit 1 buffered protocol (get_buffer, with a
 *            buffer of 1 .. 64 KiB chosen by bits 3-7), bit 2 eof_received keeps the transport
 *            open (the harness then closes it)
 *   then ops, one byte each (low 3 bits the op, high 5 bits its argument a):
 *     0  write the next n bytes of the input (n = next byte + 1) and run the loop until they
 *        have arrived
 *     1  the same without waiting (the data may arrive with a later op, or race the close)
 *     2  write (a + 1) * 4 KiB of a pattern, waiting whenever the socket is full
 *     3  pause_reading            4  resume_reading
 *     5  run one loop iteration
 *     6  end: a % 5 = 0 peer shutdown(SHUT_WR), 1 peer close, 2 peer abort (RST: SO_LINGER 0),
 *        3 lc_transport_close, 4 lc_transport_abort
 *     7  the protocol pauses reading inside its next data_received and resumes from call_soon
 *   The input ending is "peer close".
 *
 * Then it runs the loop until connection_lost and checks: connection_made and connection_lost
 * exactly once each, nothing after connection_lost, the bytes received are the bytes written in
 * order (all of them unless the close was abortive or ours), eof_received at most once (once
 * after a graceful peer close), the loss reason fits the close. Freeing the loop afterwards lets
 * LeakSanitizer see anything the transport did not give back. No sleeps: every wait is the loop
 * running until a condition holds (a hang is a libFuzzer timeout). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loopcore.h"
#include "tests/fuzz/fuzz_check.h"

#define MAX_WRITTEN (512u * 1024) /* bytes written per input, at most */

enum { END_SHUTDOWN, END_CLOSE, END_RST, END_T_CLOSE, END_T_ABORT };

typedef struct fz_conn_s {
    lc_loop_t *loop;
    lc_transport_t *t;
    int made, lost, eofs, lost_err, after_lost, exceptions;
    bool keep_open_on_eof;
    bool buffered;
    bool pause_in_cb; /* pause inside the next data_received */
    bool cb_paused;   /* paused there; a call_soon resumes */
    char *buf;        /* buffered form: the protocol's buffer */
    size_t bufcap;
    char *got; /* every byte received, in order */
    size_t got_len;
    char *sent; /* every byte written by the peer, in order */
    size_t sent_len;
    size_t max_written; /* MAX_WRITTEN, or less for a small buffer (one read per bufcap bytes) */
    /* The condition the loop is running for. */
    lc_future_t *waiter;
    size_t want_bytes;
    bool want_lost, want_eof;
} fz_conn_t;

static void check_waiter(fz_conn_t *c)
{
    if (c->waiter == NULL || lc_future_done(c->waiter))
        return;
    bool done = c->lost > 0 || (c->want_eof && c->eofs > 0) ||
                (!c->want_lost && !c->want_eof && c->got_len >= c->want_bytes);
    if (done)
        lc_future_set_result(c->waiter, NULL);
}

static void received(fz_conn_t *c, const char *data, size_t len)
{
    FUZZ_CHECK(c->lost == 0, "data after connection_lost");
    FUZZ_CHECK(len > 0, "empty data_received");
    FUZZ_CHECK(c->got_len + len <= c->sent_len, "received %zu bytes, %zu were written",
               c->got_len + len, c->sent_len);
    memcpy(c->got + c->got_len, data, len);
    c->got_len += len;
    if (c->pause_in_cb) {
        c->pause_in_cb = false;
        FUZZ_CHECK(lc_transport_pause_reading(c->t) == 0, "pause_reading in data_received");
        c->cb_paused = true;
    }
    check_waiter(c);
}

static void resume_cb(void *arg)
{
    fz_conn_t *c = arg;
    if (c->cb_paused && c->lost == 0) {
        c->cb_paused = false;
        lc_transport_resume_reading(c->t);
    }
}

static void p_made(lc_transport_t *t, void *user)
{
    fz_conn_t *c = user;
    FUZZ_CHECK(c->made == 0, "connection_made twice");
    c->made++;
    c->t = t;
}

static void p_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    fz_conn_t *c = user;
    FUZZ_CHECK(t == c->t, "data for another transport");
    received(c, data, len);
    if (c->cb_paused)
        lc_loop_call_soon(c->loop, resume_cb, c, NULL);
}

static bool p_eof(lc_transport_t *t, void *user)
{
    fz_conn_t *c = user;
    FUZZ_CHECK(t == c->t, "eof for another transport");
    FUZZ_CHECK(c->lost == 0, "eof_received after connection_lost");
    FUZZ_CHECK(c->eofs == 0, "eof_received twice");
    c->eofs++;
    check_waiter(c);
    return c->keep_open_on_eof;
}

static void p_lost(lc_transport_t *t, int err, void *user)
{
    fz_conn_t *c = user;
    FUZZ_CHECK(t == c->t, "connection_lost for another transport");
    FUZZ_CHECK(c->made == 1, "connection_lost without connection_made");
    if (c->lost > 0)
        c->after_lost++;
    FUZZ_CHECK(c->lost == 0, "connection_lost twice");
    c->lost++;
    c->lost_err = err;
    check_waiter(c);
}

static void *p_get_buffer(lc_transport_t *t, size_t sizehint, size_t *len, void *user)
{
    fz_conn_t *c = user;
    (void)t;
    (void)sizehint;
    FUZZ_CHECK(c->lost == 0, "get_buffer after connection_lost");
    *len = c->bufcap;
    return c->buf;
}

static void p_buffer_updated(lc_transport_t *t, size_t nbytes, void *user)
{
    fz_conn_t *c = user;
    FUZZ_CHECK(t == c->t, "buffer_updated for another transport");
    FUZZ_CHECK(nbytes <= c->bufcap, "buffer_updated(%zu) past the buffer (%zu)", nbytes, c->bufcap);
    received(c, c->buf, nbytes);
    if (c->cb_paused)
        lc_loop_call_soon(c->loop, resume_cb, c, NULL);
}

static const lc_protocol_t plain_proto = {
    .connection_made = p_made,
    .data_received = p_data,
    .eof_received = p_eof,
    .connection_lost = p_lost,
};

static const lc_protocol_t buffered_proto = {
    .connection_made = p_made,
    .eof_received = p_eof,
    .connection_lost = p_lost,
    .get_buffer = p_get_buffer,
    .buffer_updated = p_buffer_updated,
};

static int factory(void *arg, const lc_protocol_t **proto, void **user)
{
    fz_conn_t *c = arg;
    *proto = c->buffered ? &buffered_proto : &plain_proto;
    *user = c;
    return 0;
}

static void on_exception(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    (void)ctx;
    ((fz_conn_t *)arg)->exceptions++;
}

/* Runs the loop until the condition set in c holds (at once if it already does). */
static void run_until(fz_conn_t *c)
{
    lc_future_t *f = NULL;
    FUZZ_CHECK(lc_loop_create_future(c->loop, &f) == 0, "create_future");
    c->waiter = f;
    check_waiter(c);
    int r = lc_loop_run_until_complete(c->loop, f, NULL);
    FUZZ_CHECK(r == 0, "run_until_complete: %s", lc_strerror(r));
    c->waiter = NULL;
    lc_future_unref(f);
}

static void wait_bytes(fz_conn_t *c, size_t n)
{
    c->want_bytes = n;
    c->want_lost = c->want_eof = false;
    run_until(c);
}

static void wait_lost_or_eof(fz_conn_t *c, bool eof_too)
{
    c->want_lost = true;
    c->want_eof = eof_too;
    run_until(c);
}

static void run_once(fz_conn_t *c)
{
    lc_loop_stop(c->loop); /* run_forever then runs exactly one iteration */
    FUZZ_CHECK(lc_loop_run_forever(c->loop) == 0, "run_forever");
}

static void resume(fz_conn_t *c)
{
    c->cb_paused = false;
    if (c->lost == 0)
        lc_transport_resume_reading(c->t);
}

/* Writes len bytes to the peer end; when the socket is full, lets the transport drain it. */
static void peer_write(fz_conn_t *c, int peer, const char *data, size_t len)
{
    if (len > c->max_written - c->sent_len)
        len = c->max_written - c->sent_len;
    while (len > 0) {
        ssize_t n = send(peer, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            memcpy(c->sent + c->sent_len, data, (size_t)n);
            c->sent_len += (size_t)n;
            data += n;
            len -= (size_t)n;
            continue;
        }
        FUZZ_CHECK(n < 0 && (errno == EAGAIN || errno == EINTR), "peer write: %s", strerror(errno));
        if (errno == EAGAIN) {
            resume(c);
            wait_bytes(c, c->sent_len);
            FUZZ_CHECK(c->lost == 0, "connection lost while the peer was writing (%s)",
                       lc_strerror(c->lost_err));
        }
    }
}

static int listener = -1;
static struct sockaddr_in listen_addr;

static void init_once(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    signal(SIGPIPE, SIG_IGN);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(listener >= 0, "socket: %s", strerror(errno));
    listen_addr.sin_family = AF_INET;
    listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(listen_addr);
    FUZZ_CHECK(bind(listener, (struct sockaddr *)&listen_addr, alen) == 0 &&
                   listen(listener, 64) == 0 &&
                   getsockname(listener, (struct sockaddr *)&listen_addr, &alen) == 0,
               "listener: %s", strerror(errno));
}

/* A connected pair: sv[0] for the transport, sv[1] the peer. */
static void make_pair(bool tcp, int sv[2])
{
    if (!tcp) {
        FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s",
                   strerror(errno));
    } else {
        sv[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(sv[1] >= 0, "socket: %s", strerror(errno));
        FUZZ_CHECK(connect(sv[1], (struct sockaddr *)&listen_addr, sizeof(listen_addr)) == 0,
                   "connect: %s", strerror(errno));
        sv[0] = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        FUZZ_CHECK(sv[0] >= 0, "accept: %s", strerror(errno));
        int one = 1;
        setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    FUZZ_CHECK(fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK");
}

/* Closes the peer; with rst, abortively (TCP: an RST instead of a FIN). */
static void peer_close(int peer, bool rst)
{
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(peer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size == 0)
        return 0;
    static fz_conn_t c;
    static char got[MAX_WRITTEN], sent[MAX_WRITTEN], pattern[128 * 1024 + 251];
    if (pattern[1] == 0) {
        for (size_t k = 0; k < sizeof(pattern); k++)
            pattern[k] = (char)(k * 131 + (k >> 8) + 1);
    }
    memset(&c, 0, sizeof(c));
    c.got = got;
    c.sent = sent;
    uint8_t setup = data[0];
    bool tcp = setup & 1;
    c.buffered = setup & 2;
    c.keep_open_on_eof = setup & 4;
    /* 1 byte .. 64 KiB, mostly small: 2^(a/2) rounded, plus a. */
    unsigned a = setup >> 3;
    c.bufcap = ((size_t)1 << (a / 2)) + a;
    if (c.bufcap > 65536)
        c.bufcap = 65536;
    c.max_written = MAX_WRITTEN;
    if (c.buffered && c.bufcap * 1024 < c.max_written)
        c.max_written = c.bufcap * 1024;
    if (c.buffered) {
        c.buf = malloc(c.bufcap);
        FUZZ_CHECK(c.buf != NULL, "malloc");
    }

    FUZZ_CHECK(lc_new_event_loop(&c.loop) == 0, "new_event_loop");
    lc_loop_set_exception_handler(c.loop, on_exception, &c);
    int sv[2];
    make_pair(tcp, sv);
    int peer = sv[1];
    lc_future_t *fut = NULL;
    int r = lc_loop_connect_accepted_socket(c.loop, factory, &c, sv[0], NULL, &fut);
    FUZZ_CHECK(r == 0, "connect_accepted_socket: %s", lc_strerror(r));
    FUZZ_CHECK(lc_future_done(fut) && lc_future_result(fut, NULL) == 0, "transport future");
    lc_future_unref(fut);
    FUZZ_CHECK(c.made == 1 && c.t != NULL, "connection_made");

    size_t i = 1;
    int end = END_CLOSE;
    bool paused = false;
    while (i < size) {
        uint8_t op = data[i++];
        unsigned arg = op >> 3;
        bool ended = false;
        switch (op & 7) {
        case 0:
        case 1: {
            size_t n = i < size ? (size_t)data[i++] + 1 : 1;
            if (n > size - i)
                n = size - i;
            peer_write(&c, peer, (const char *)data + i, n);
            i += n;
            if ((op & 7) == 0 && !paused) {
                wait_bytes(&c, c.sent_len);
                FUZZ_CHECK(c.got_len == c.sent_len, "got %zu of %zu bytes", c.got_len, c.sent_len);
            }
            break;
        }
        case 2: {
            size_t n = ((size_t)arg + 1) * 4096;
            peer_write(&c, peer, pattern + c.sent_len % 251, n);
            break;
        }
        case 3:
            FUZZ_CHECK(lc_transport_pause_reading(c.t) == 0, "pause_reading");
            paused = true;
            break;
        case 4:
            FUZZ_CHECK(lc_transport_resume_reading(c.t) == 0, "resume_reading");
            paused = false;
            break;
        case 5:
            run_once(&c);
            break;
        case 6:
            end = (int)(arg % 5);
            ended = true;
            break;
        case 7:
            c.pause_in_cb = true;
            break;
        }
        FUZZ_CHECK(c.lost == 0, "connection lost before the end (%s)", lc_strerror(c.lost_err));
        if (ended)
            break;
    }

    /* The end: everything the peer wrote is on its way; close one side. */
    resume(&c);
    c.pause_in_cb = false;
    bool peer_open = true;
    switch (end) {
    case END_SHUTDOWN:
        FUZZ_CHECK(shutdown(peer, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
        break;
    case END_CLOSE:
    case END_RST:
        peer_close(peer, end == END_RST && tcp);
        peer_open = false;
        break;
    case END_T_CLOSE:
        FUZZ_CHECK(lc_transport_close(c.t) == 0, "transport close");
        break;
    case END_T_ABORT:
        FUZZ_CHECK(lc_transport_abort(c.t) == 0, "transport abort");
        break;
    }
    wait_lost_or_eof(&c, true);
    if (c.lost == 0) {
        /* eof_received kept the transport open (half-close): close it now. */
        FUZZ_CHECK(c.keep_open_on_eof && c.eofs == 1, "stopped with no eof and no loss");
        FUZZ_CHECK(!lc_transport_is_closing(c.t), "half-closed transport is closing");
        lc_transport_close(c.t);
        wait_lost_or_eof(&c, false);
    }
    FUZZ_CHECK(c.lost == 1 && c.after_lost == 0, "connection_lost %d times", c.lost);
    FUZZ_CHECK(c.got_len <= c.sent_len && memcmp(c.got, c.sent, c.got_len) == 0,
               "received bytes differ from those written (%zu received, %zu written)", c.got_len,
               c.sent_len);
    bool graceful_peer = end == END_SHUTDOWN || end == END_CLOSE || (end == END_RST && !tcp);
    if (graceful_peer) {
        FUZZ_CHECK(c.got_len == c.sent_len, "peer closed gracefully: got %zu of %zu bytes",
                   c.got_len, c.sent_len);
        FUZZ_CHECK(c.eofs == 1, "peer closed gracefully: %d eof_received", c.eofs);
        FUZZ_CHECK(c.lost_err == 0, "peer closed gracefully: lost with %s",
                   lc_strerror(c.lost_err));
        FUZZ_CHECK(c.exceptions == 0, "peer closed gracefully: %d exceptions", c.exceptions);
    } else if (end == END_RST) {
        FUZZ_CHECK(c.lost_err == 0 || c.lost_err == -ECONNRESET, "RST: lost with %s",
                   lc_strerror(c.lost_err));
        /* The kernel keeps what arrived before the RST readable (recv returns it, then
         * ECONNRESET), and asyncio delivers it; so does loopcore since transport_poll_cb() reads
         * before it reports an EPOLLERR (the tcp_small_write_then_rst input found that it did
         * not). But a big write may still sit in the peer's send queue when the RST goes, and the
         * kernel drops that: so only a prefix is required, unless FUZZ_STRICT_RST is set (for
         * inputs with small writes; tests/engine:transport_test checks the small case). */
        if (getenv("FUZZ_STRICT_RST") != NULL)
            FUZZ_CHECK(c.got_len == c.sent_len, "RST: got %zu of the %zu bytes sent before it",
                       c.got_len, c.sent_len);
        FUZZ_CHECK(c.exceptions == 0, "RST: %d exceptions", c.exceptions);
    } else {
        FUZZ_CHECK(c.eofs == 0, "closed by us: %d eof_received", c.eofs);
        FUZZ_CHECK(c.lost_err == 0, "closed by us: lost with %s", lc_strerror(c.lost_err));
        FUZZ_CHECK(c.exceptions == 0, "closed by us: %d exceptions", c.exceptions);
    }

    if (getenv("FUZZ_VERBOSE") != NULL)
        fprintf(stderr, "%s%s end %d: %zu of %zu bytes, %d eof, lost %s\n", tcp ? "tcp" : "unix",
                c.buffered ? " buffered" : "", end, c.got_len, c.sent_len, c.eofs,
                lc_strerror(c.lost_err));
    if (peer_open)
        peer_close(peer, tcp);
    run_once(&c); /* the transport's handle closes: its memory goes */
    FUZZ_CHECK(lc_loop_close(c.loop) == 0, "loop close");
    FUZZ_CHECK(lc_loop_free(c.loop) == 0, "loop free");
    free(c.buf);
    return 0;
}
