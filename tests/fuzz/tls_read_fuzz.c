/* tls_read_fuzz: the TLS mode of the stream transport (engine/transport_tls.c.h), server side,
 * against a client the input drives.
 *
 * Each input is one connection on a fresh loop: a socketpair whose one end becomes a TLS server
 * transport (lc_loop_connect_accepted_socket with an SSL_CTX) and whose other end the harness
 * drives as the client: an OpenSSL client on memory BIOs, whose records the harness carries to
 * the socket itself, so that it can also send raw bytes, tamper with records, and close the
 * socket without a close_notify. Everything runs on one thread: the loop one iteration at a time
 * (run_forever after stop()), the client between iterations. The input is a program:
 *
 *   byte 0   set-up: bit 0 raw (no handshake: every op below sends input bytes as they are, so
 *            the server's handshake meets garbage), bit 1 buffered protocol (get_buffer, 1 B ..
 *            64 KiB chosen by bits 3-7), bit 2 TLS 1.2 (else 1.3)
 *   then ops, one byte each (low 3 bits the op, high 5 bits its argument a):
 *     0  the client sends the next n bytes of the input as application data (n = next byte + 1)
 *        and the loop runs until the server has them (unless reading is paused)
 *     1  the next n input bytes go to the socket raw: the stream is broken from here
 *     2  the client sends n bytes of application data with one byte of its records flipped
 *        (byte a * 7 mod their length): broken from here (a bad record MAC, or a bad header)
 *     3  pause_reading            4  resume_reading
 *     5  TLS 1.3 KeyUpdate from the client (a odd: update_requested, so the server must answer
 *        with its own), then one byte of data; TLS 1.2: one byte of data
 *     6  end: a % 5 = 0 client close_notify, 1 client closes the socket with no close_notify (a
 *        truncated stream), 2 client shutdown(SHUT_WR) with no close_notify, 3 lc_transport_close,
 *        4 lc_transport_abort
 *     7  the server writes (a + 1) * 97 bytes as lc_transport_write()s of (next byte % 64) + 1
 *        bytes each (the coalescing path), and the loop runs until the client has read them
 *   The input ending is "client close_notify".
 *
 * Then the loop runs until connection_lost and the harness checks: raw inputs never make a
 * connection and fail the transport's future; otherwise connection_made and connection_lost once
 * each, nothing after connection_lost, the server received a prefix of what the client sent, in
 * order (all of it on a graceful end of an unbroken stream), the client received a prefix of what
 * the server wrote (all of it when the server closed gracefully), eof_received once for a
 * close_notify and never for a truncation, which is lost with LC_ESSLTRUNCATED; a broken stream is
 * lost with an error (a client that closed with a requested KeyUpdate not yet answered may be
 * lost with EPIPE: OpenSSL sends the answer before the server's next application data, or from
 * its next read, and that write meets the closed socket). Freeing the loop afterwards lets
 * LeakSanitizer see anything kept. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loopcore.h"
#include "tests/fuzz/fuzz_check.h"

#define MAX_BYTES (256u * 1024) /* plaintext per direction per input, at most */

/* A self-signed ECDSA P-256 certificate (CN=localhost, valid until 2126) and its key: the client
 * does not verify, so any certificate serves; embedded so that the harness needs no files. */
static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBfzCCASWgAwIBAgIUWh+fq47+oFXRHKZWk/p4ZtRC5fswCgYIKoZIzj0EAwIw\n"
                               "FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNjA4MTYzN1oYDzIxMjYxMTEy\n"
                               "MDgxNjM3WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO\n"
                               "PQMBBwNCAARGrsQTi/GPhxhmapywCSa8METm2uF88cFu6Y0Lhpg9HCm44oA+aOah\n"
                               "BxEnzVbyT3zr7cYVEVDkPqqIjC9WCD/no1MwUTAdBgNVHQ4EFgQUx3LlftMKXfPC\n"
                               "Wo7Fntcrjm3SAOEwHwYDVR0jBBgwFoAUx3LlftMKXfPCWo7Fntcrjm3SAOEwDwYD\n"
                               "VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAmd7ahGUCxpy3ZO+kckVY\n"
                               "1Q6hzF3A1gOomKRAJid1/roCIGgm5RFOaq1MTGZC8NnyZa75qoxwtYRMRArCx8+P\n"
                               "Gh8w\n"
                               "-----END CERTIFICATE-----\n";
static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgF+6ZkEHEQ+K/Huzl\n"
                              "BB+tRPO+ZFQmeeuQTfSz6MeTyFmhRANCAARGrsQTi/GPhxhmapywCSa8METm2uF8\n"
                              "8cFu6Y0Lhpg9HCm44oA+aOahBxEnzVbyT3zr7cYVEVDkPqqIjC9WCD/n\n"
                              "-----END PRIVATE KEY-----\n";

enum { END_NOTIFY, END_CLOSE, END_SHUTDOWN, END_T_CLOSE, END_T_ABORT };

typedef struct {
    lc_loop_t *loop;
    lc_transport_t *t;
    int made, lost, eofs, lost_err, after_lost, exceptions;
    bool buffered, paused, broken;
    char *buf; /* buffered form: the protocol's buffer */
    size_t bufcap;
    char got[MAX_BYTES]; /* what the server received, in order */
    size_t got_len;
    char sent[MAX_BYTES]; /* the plaintext the client sent while the stream was intact */
    size_t sent_len;
    char swrote[MAX_BYTES]; /* what the server wrote */
    size_t swrote_len;
    char cgot[MAX_BYTES]; /* what the client read of it */
    size_t cgot_len;
    /* The client. */
    int peer;
    bool ku_unanswered; /* a KeyUpdate(update_requested) the server has not answered yet */
    bool peer_wclosed;  /* no more bytes go to the socket (closed, shut down, or broken) */
    bool peer_gone;     /* the socket is closed */
    bool client_done;   /* the client read the server's close_notify, an EOF or an error */
    SSL *ssl;
    BIO *rbio, *wbio;
} fz_t;

static SSL_CTX *server_ctx, *client_ctx12, *client_ctx13;

/* ---- the server's protocol ------------------------------------------------------------------ */

static void received(fz_t *c, const char *data, size_t len)
{
    FUZZ_CHECK(c->lost == 0, "data after connection_lost");
    FUZZ_CHECK(len > 0, "empty data_received");
    FUZZ_CHECK(c->got_len + len <= MAX_BYTES, "more than the harness sends");
    memcpy(c->got + c->got_len, data, len);
    c->got_len += len;
}

static void p_made(lc_transport_t *t, void *user)
{
    fz_t *c = user;
    FUZZ_CHECK(c->made == 0, "connection_made twice");
    c->made++;
    c->t = t;
}

static void p_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    fz_t *c = user;
    FUZZ_CHECK(t == c->t, "data for another transport");
    received(c, data, len);
}

static bool p_eof(lc_transport_t *t, void *user)
{
    fz_t *c = user;
    FUZZ_CHECK(t == c->t, "eof for another transport");
    FUZZ_CHECK(c->lost == 0, "eof_received after connection_lost");
    FUZZ_CHECK(c->eofs == 0, "eof_received twice");
    c->eofs++;
    return false; /* TLS cannot half-close: the transport closes */
}

static void p_lost(lc_transport_t *t, int err, void *user)
{
    fz_t *c = user;
    FUZZ_CHECK(t == c->t, "connection_lost for another transport");
    FUZZ_CHECK(c->made == 1, "connection_lost without connection_made");
    if (c->lost > 0)
        c->after_lost++;
    FUZZ_CHECK(c->lost == 0, "connection_lost twice");
    c->lost++;
    c->lost_err = err;
}

static void *p_get_buffer(lc_transport_t *t, size_t sizehint, size_t *len, void *user)
{
    fz_t *c = user;
    (void)t;
    (void)sizehint;
    FUZZ_CHECK(c->lost == 0, "get_buffer after connection_lost");
    *len = c->bufcap;
    return c->buf;
}

static void p_buffer_updated(lc_transport_t *t, size_t nbytes, void *user)
{
    fz_t *c = user;
    FUZZ_CHECK(t == c->t, "buffer_updated for another transport");
    FUZZ_CHECK(nbytes <= c->bufcap, "buffer_updated(%zu) past the buffer (%zu)", nbytes, c->bufcap);
    received(c, c->buf, nbytes);
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
    fz_t *c = arg;
    *proto = c->buffered ? &buffered_proto : &plain_proto;
    *user = c;
    return 0;
}

static void on_exception(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    (void)ctx;
    ((fz_t *)arg)->exceptions++;
}

/* ---- the client ------------------------------------------------------------------------------ */

static void run_once(fz_t *c)
{
    lc_loop_stop(c->loop); /* run_forever then runs exactly one iteration, without blocking */
    FUZZ_CHECK(lc_loop_run_forever(c->loop) == 0, "run_forever");
}

/* Bytes to the socket; when it is full, lets the server read (resuming it if paused). */
static void sock_send(fz_t *c, const char *p, size_t n)
{
    while (n > 0 && !c->peer_wclosed) {
        ssize_t k = send(c->peer, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
        } else if (k < 0 && errno == EAGAIN) {
            if (c->paused && c->lost == 0) {
                lc_transport_resume_reading(c->t);
                c->paused = false;
            }
            run_once(c);
        } else if (k < 0 && errno != EINTR) {
            c->peer_wclosed = true; /* the server is gone (EPIPE, ECONNRESET) */
        }
    }
}

/* The client's pending records to the socket; with flip >= 0, that byte of them flipped. */
static void client_flush(fz_t *c, long flip)
{
    char buf[65536];
    size_t n = 0;
    int k;
    while ((k = BIO_read(c->wbio, buf + n, (int)(sizeof(buf) - n))) > 0) {
        n += (size_t)k;
        if (n == sizeof(buf)) {
            sock_send(c, buf, n);
            n = 0;
        }
    }
    if (flip >= 0 && n > 0)
        buf[(size_t)flip % n] ^= 0x5a;
    sock_send(c, buf, n);
}

/* What the socket has, into the client, and what the client can read of it. */
static void client_pull(fz_t *c)
{
    if (c->peer_gone)
        return;
    char buf[65536];
    for (;;) {
        ssize_t k = recv(c->peer, buf, sizeof(buf), MSG_DONTWAIT);
        if (k > 0) {
            BIO_write(c->rbio, buf, (int)k);
            continue;
        }
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
            BIO_set_mem_eof_return(c->rbio, 0); /* EOF: SSL_read sees it once the rest is read */
        break;
    }
    if (!SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        SSL_do_handshake(c->ssl);
        ERR_clear_error();
        client_flush(c, -1);
        if (!SSL_is_init_finished(c->ssl))
            return;
    }
    while (!c->client_done) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, (int)sizeof(buf));
        if (n > 0) {
            FUZZ_CHECK(c->cgot_len + (size_t)n <= c->swrote_len &&
                           memcmp(buf, c->swrote + c->cgot_len, (size_t)n) == 0,
                       "the client read bytes the server did not write (%zu + %d of %zu)",
                       c->cgot_len, n, c->swrote_len);
            memcpy(c->cgot + c->cgot_len, buf, (size_t)n);
            c->cgot_len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        c->client_done = true; /* the server's close_notify, an EOF, or an alert */
        if (e == SSL_ERROR_ZERO_RETURN && !c->peer_wclosed) {
            SSL_shutdown(c->ssl); /* answer the close_notify */
            client_flush(c, -1);
        }
        ERR_clear_error();
    }
    client_flush(c, -1); /* a KeyUpdate's answer, say */
}

static void step(fz_t *c)
{
    client_flush(c, -1);
    run_once(c);
    client_pull(c);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef bool (*cond_fn)(const fz_t *c);

/* Steps until cond holds; false if seconds passed first. Quick steps first, then with naps (a
 * condition that waits for a timer: the handshake or shutdown timeout). */
static bool settle(fz_t *c, cond_fn cond, double seconds)
{
    double end = now_s() + seconds;
    for (int i = 0; !cond(c); i++) {
        if (now_s() > end)
            return false;
        step(c);
        if (i > 200) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return true;
}

static bool c_made_or_failed(const fz_t *c) { return c->made > 0 || c->lost > 0; }
static bool c_server_has_all(const fz_t *c) { return c->got_len >= c->sent_len || c->lost > 0; }
static bool c_client_has_all(const fz_t *c)
{
    return c->cgot_len >= c->swrote_len || c->client_done || c->lost > 0;
}
static bool c_lost(const fz_t *c) { return c->lost > 0; }

/* Application data from the client, n bytes; tampered (one byte flipped) when flip >= 0. */
static void client_write(fz_t *c, const char *p, size_t n, long flip)
{
    if (c->peer_wclosed || c->client_done || n == 0)
        return;
    if (n > MAX_BYTES - c->sent_len)
        n = MAX_BYTES - c->sent_len;
    if (n == 0)
        return;
    ERR_clear_error();
    int k = SSL_write(c->ssl, p, (int)n); /* memory BIO: takes it all */
    FUZZ_CHECK(k == (int)n, "client SSL_write: %d", k);
    if (flip >= 0) {
        c->broken = true;
    } else if (!c->broken) {
        memcpy(c->sent + c->sent_len, p, n);
        c->sent_len += n;
    }
    client_flush(c, flip);
}

/* ---- one input ------------------------------------------------------------------------------- */

static void init_once(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    signal(SIGPIPE, SIG_IGN);
    server_ctx = SSL_CTX_new(TLS_server_method());
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    FUZZ_CHECK(x != NULL && k != NULL && SSL_CTX_use_certificate(server_ctx, x) == 1 &&
                   SSL_CTX_use_PrivateKey(server_ctx, k) == 1,
               "server certificate");
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    /* Fewer moving parts per input: no tickets, no session cache. */
    SSL_CTX_set_session_cache_mode(server_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(server_ctx, 0);
    client_ctx12 = SSL_CTX_new(TLS_client_method());
    client_ctx13 = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(client_ctx12, TLS1_2_VERSION);
    SSL_CTX_set_min_proto_version(client_ctx13, TLS1_3_VERSION);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size == 0)
        return 0;
    static fz_t c;
    static char pattern[64 * 97 + 256];
    if (pattern[1] == 0) {
        for (size_t k = 0; k < sizeof(pattern); k++)
            pattern[k] = (char)(k * 131 + (k >> 8) + 1);
    }
    memset(&c, 0, sizeof(c));
    uint8_t setup = data[0];
    bool raw = setup & 1;
    c.buffered = setup & 2;
    bool tls12 = setup & 4;
    unsigned a0 = setup >> 3;
    c.bufcap = ((size_t)1 << (a0 / 2)) + a0;
    if (c.bufcap > 65536)
        c.bufcap = 65536;
    if (c.buffered) {
        c.buf = malloc(c.bufcap);
        FUZZ_CHECK(c.buf != NULL, "malloc");
    }

    FUZZ_CHECK(lc_new_event_loop(&c.loop) == 0, "new_event_loop");
    lc_loop_set_exception_handler(c.loop, on_exception, &c);
    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s",
               strerror(errno));
    FUZZ_CHECK(fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK");
    c.peer = sv[1];
    lc_future_t *fut = NULL;
    int r = lc_loop_connect_accepted_socket(c.loop, factory, &c, sv[0],
                                            &(lc_accepted_socket_opts_t){.ssl = server_ctx,
                                                                         .ssl_handshake_timeout = 1,
                                                                         .ssl_shutdown_timeout = 1},
                                            &fut);
    FUZZ_CHECK(r == 0, "connect_accepted_socket: %s", lc_strerror(r));
    c.ssl = SSL_new(tls12 ? client_ctx12 : client_ctx13);
    c.rbio = BIO_new(BIO_s_mem());
    c.wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c.rbio, -1); /* empty: "retry", until the socket's EOF */
    SSL_set_bio(c.ssl, c.rbio, c.wbio);
    SSL_set_connect_state(c.ssl);

    size_t i = 1;
    if (raw) {
        /* Every op sends input bytes as they are; the server's handshake must fail, costing
         * this connection only, within the handshake timeout. */
        c.broken = true;
        while (i < size && !c.peer_wclosed) {
            size_t n = (size_t)data[i++] + 1;
            if (n > size - i)
                n = size - i;
            sock_send(&c, (const char *)data + i, n);
            i += n;
            run_once(&c);
        }
        close(c.peer);
        c.peer_gone = true;
        double end = now_s() + 5;
        while (!lc_future_done(fut) && now_s() < end)
            run_once(&c);
        FUZZ_CHECK(lc_future_done(fut), "raw input: the handshake neither failed nor finished");
        FUZZ_CHECK(lc_future_result(fut, NULL) != 0, "raw input: a connection was made");
        FUZZ_CHECK(c.made == 0 && c.lost == 0, "raw input: protocol called");
        goto out;
    }

    /* The handshake. */
    ERR_clear_error();
    SSL_do_handshake(c.ssl);
    FUZZ_CHECK(settle(&c, c_made_or_failed, 5) && c.made == 1 && c.lost == 0,
               "handshake: made %d, lost %d (%s)", c.made, c.lost, lc_strerror(c.lost_err));
    FUZZ_CHECK(lc_future_done(fut) && lc_future_result(fut, NULL) == 0, "transport future");

    int end = END_NOTIFY;
    while (i < size && c.lost == 0) {
        uint8_t op = data[i++];
        unsigned a = op >> 3;
        bool ended = false;
        switch (op & 7) {
        case 0:
        case 1:
        case 2: {
            size_t n = i < size ? (size_t)data[i++] + 1 : 1;
            if (n > size - i)
                n = size - i;
            if ((op & 7) == 1) {
                c.broken = true;
                sock_send(&c, (const char *)data + i, n);
            } else {
                client_write(&c, (const char *)data + i, n, (op & 7) == 2 ? (long)a * 7 : -1);
            }
            i += n;
            if ((op & 7) == 0 && !c.paused && !c.broken) {
                FUZZ_CHECK(settle(&c, c_server_has_all, 5), "server has %zu of %zu bytes",
                           c.got_len, c.sent_len);
            }
            break;
        }
        case 3:
            FUZZ_CHECK(lc_transport_pause_reading(c.t) == 0, "pause_reading");
            c.paused = true;
            break;
        case 4:
            FUZZ_CHECK(lc_transport_resume_reading(c.t) == 0, "resume_reading");
            c.paused = false;
            break;
        case 5:
            if (!tls12 && !c.broken && !c.peer_wclosed) {
                SSL_key_update(c.ssl,
                               (a & 1) ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED);
                c.ku_unanswered = c.ku_unanswered || (a & 1);
            }
            client_write(&c, "k", 1, -1);
            if (!c.paused && !c.broken) {
                FUZZ_CHECK(settle(&c, c_server_has_all, 5), "after KeyUpdate: %zu of %zu bytes",
                           c.got_len, c.sent_len);
            }
            break;
        case 6:
            end = (int)(a % 5);
            ended = true;
            break;
        case 7: {
            size_t n = ((size_t)a + 1) * 97, piece = i < size ? (size_t)data[i++] % 64 + 1 : 1;
            if (n > MAX_BYTES - c.swrote_len)
                n = MAX_BYTES - c.swrote_len;
            for (size_t off = 0; off < n && c.lost == 0; off += piece) {
                size_t k = n - off < piece ? n - off : piece;
                const char *p = pattern + (c.swrote_len % 251);
                if (lc_transport_write(c.t, p, k) != 0)
                    break;
                memcpy(c.swrote + c.swrote_len, p, k);
                c.swrote_len += k;
            }
            if (!c.broken) {
                FUZZ_CHECK(settle(&c, c_client_has_all, 5), "client has %zu of %zu bytes",
                           c.cgot_len, c.swrote_len);
                /* The server had read everything (the request too) and then wrote application
                 * data, so it sent its KeyUpdate first (RFC 8446 4.6.3: before its next
                 * application data; OpenSSL defers it until then). */
                if (c.got_len == c.sent_len && c.cgot_len == c.swrote_len && n > 0)
                    c.ku_unanswered = false;
            }
            break;
        }
        }
        if (getenv("FUZZ_VERBOSE") != NULL)
            fprintf(stderr, "op %u a %u: server got %zu of %zu, client got %zu of %zu%s%s\n",
                    op & 7u, a, c.got_len, c.sent_len, c.cgot_len, c.swrote_len,
                    c.paused ? " paused" : "", c.broken ? " broken" : "");
        if (ended)
            break;
    }

    /* The end. */
    if (c.paused && c.lost == 0)
        lc_transport_resume_reading(c.t);
    c.paused = false;
    bool was_broken = c.broken, lost_before_end = c.lost > 0;
    /* A broken stream may have left the server waiting for the rest of a record that will never
     * come (a flipped length): the client goes away (the transport has no idle timeout of its
     * own; the application sets one). */
    if (was_broken && end != END_T_CLOSE && end != END_T_ABORT)
        end = END_CLOSE;
    if (c.lost == 0) {
        switch (end) {
        case END_NOTIFY:
            if (!c.peer_wclosed) {
                SSL_shutdown(c.ssl);
                client_flush(&c, -1);
            }
            break;
        case END_CLOSE:
            close(c.peer);
            c.peer_gone = c.peer_wclosed = true;
            break;
        case END_SHUTDOWN:
            shutdown(c.peer, SHUT_WR);
            c.peer_wclosed = true;
            break;
        case END_T_CLOSE:
            FUZZ_CHECK(lc_transport_close(c.t) == 0, "transport close");
            break;
        case END_T_ABORT:
            FUZZ_CHECK(lc_transport_abort(c.t) == 0, "transport abort");
            break;
        }
    }
    FUZZ_CHECK(settle(&c, c_lost, 10), "not lost after the end (%d, broken %d)", end, was_broken);
    FUZZ_CHECK(c.made == 1 && c.lost == 1 && c.after_lost == 0, "made %d, lost %d", c.made, c.lost);
    FUZZ_CHECK(c.got_len <= c.sent_len && memcmp(c.got, c.sent, c.got_len) == 0,
               "the server received bytes the client did not send (%zu of %zu)", c.got_len,
               c.sent_len);
    FUZZ_CHECK(c.eofs <= 1, "eof_received %d times", c.eofs);
    if (was_broken) {
        FUZZ_CHECK(lost_before_end || end >= END_T_CLOSE || c.lost_err != 0,
                   "a broken stream was lost without an error");
    } else if (end == END_NOTIFY) {
        FUZZ_CHECK(c.got_len == c.sent_len, "close_notify: got %zu of %zu", c.got_len, c.sent_len);
        FUZZ_CHECK(c.eofs == 1 && c.lost_err == 0, "close_notify: %d eof, lost with %s", c.eofs,
                   lc_strerror(c.lost_err));
        FUZZ_CHECK(c.exceptions == 0, "close_notify: %d exceptions", c.exceptions);
        /* The server closed gracefully after its writes: the client has them all. */
        settle(&c, c_client_has_all, 2);
        FUZZ_CHECK(c.cgot_len == c.swrote_len, "close_notify: client read %zu of %zu", c.cgot_len,
                   c.swrote_len);
    } else if (end == END_CLOSE && c.ku_unanswered &&
               (c.lost_err == -EPIPE || c.lost_err == -ECONNRESET)) {
        /* The client asked for a KeyUpdate the server answered only after the client had closed
         * its socket (OpenSSL answers before its next application data, or from a later read):
         * that write fails, and the SSL is dead with the records behind it unread. A peer that
         * closes without close_notify truncates the stream anyway; what came before the KeyUpdate
         * was delivered. */
        FUZZ_CHECK(c.eofs == 0, "truncation: %d eof", c.eofs);
    } else if (end == END_CLOSE || end == END_SHUTDOWN) {
        FUZZ_CHECK(c.got_len == c.sent_len, "truncation: got %zu of %zu (lost %s)", c.got_len,
                   c.sent_len, lc_strerror(c.lost_err));
        FUZZ_CHECK(c.eofs == 0 && c.lost_err == LC_ESSLTRUNCATED, "truncation: %d eof, lost %s",
                   c.eofs, lc_strerror(c.lost_err));
    } else {
        FUZZ_CHECK(c.eofs == 0 && c.lost_err == 0, "closed by us: %d eof, lost with %s", c.eofs,
                   lc_strerror(c.lost_err));
        FUZZ_CHECK(c.exceptions == 0, "closed by us: %d exceptions", c.exceptions);
        if (end == END_T_CLOSE) {
            settle(&c, c_client_has_all, 2);
            FUZZ_CHECK(c.cgot_len == c.swrote_len, "close: client read %zu of %zu", c.cgot_len,
                       c.swrote_len);
        }
    }
    if (getenv("FUZZ_VERBOSE") != NULL)
        fprintf(stderr, "tls%s%s end %d%s: server got %zu of %zu, client got %zu of %zu, lost %s\n",
                tls12 ? "1.2" : "1.3", c.buffered ? " buffered" : "", end,
                was_broken ? " broken" : "", c.got_len, c.sent_len, c.cgot_len, c.swrote_len,
                lc_strerror(c.lost_err));
out:
    if (!c.peer_gone)
        close(c.peer);
    run_once(&c); /* the transport's handle closes: its memory goes */
    lc_future_unref(fut);
    SSL_free(c.ssl);
    FUZZ_CHECK(lc_loop_close(c.loop) == 0, "loop close");
    FUZZ_CHECK(lc_loop_free(c.loop) == 0, "loop free");
    free(c.buf);
    ERR_clear_error();
    return 0;
}
