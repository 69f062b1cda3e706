/* The TLS mode of the stream transport: OpenSSL driven on the transport's own non-blocking
 * socket, the handshake and shutdown timeouts, start_tls, and the TLS getters.
 *
 * Included by engine/transport.c (h2o's .c.h form): TLS is a mode of the one transport, not a
 * second transport type, so it shares the transport's write queue (copied and nocopy bytes, flow
 * control, the send timeout), its lifetime and close rules, and its statics. The plaintext path
 * pays one predictable branch (t->tls != NULL) at the poll callback, write, writelines, write_eof,
 * close and the end of a flush; everything TLS does is here. A second transport type would have
 * duplicated the write queue, the nocopy ring and the connection_lost machinery, or wrapped a
 * plain transport and copied every record through it, which is what asyncio's and uvloop's two
 * memory BIOs cost.
 *
 * How OpenSSL meets the socket: a minimal BIO of our own (loopcore_bio) reads with read() and
 * writes with send(MSG_NOSIGNAL), so a peer that went away gives EPIPE instead of SIGPIPE (the
 * socket BIO of SSL_set_fd uses write()). Records go straight between the socket and OpenSSL's
 * buffers: no copy through memory BIOs. Each SSL gets SSL_MODE_ENABLE_PARTIAL_WRITE (SSL_write
 * returns after each record, so the bytes taken are known exactly and counted off the queue),
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER (a record that the socket took only in part is retried
 * from the queue, where the same bytes now live, not from the caller's memory), and
 * SSL_MODE_RELEASE_BUFFERS (an idle connection holds no record buffers), read-ahead (a read()
 * takes what the socket has, not a header then a body), and SSL_OP_NO_RENEGOTIATION. The
 * context is never changed.
 *
 * Why the retry rule holds: OpenSSL asks that an SSL_write that returned WANT_WRITE be retried
 * with the same bytes. The queue's head always holds exactly the bytes not yet counted as taken,
 * and nothing is put before them, so the next SSL_write starts with those bytes (longer, maybe,
 * which OpenSSL allows).
 *
 * States: HANDSHAKE (the protocol does not exist yet, or, for start_tls, gets nothing), OPEN,
 * SHUTDOWN (our close_notify is being sent, then the peer's awaited). Which socket event the
 * next step waits for is OpenSSL's answer (want_write), not the state: a read may need to write
 * (a TLS 1.3 KeyUpdate reply) and a write may need to read. OpenSSL can hold decrypted-but-unread
 * records that no socket event will announce (read-ahead takes several at once): after a handshake,
 * after resume_reading and when a batch of reads stops early, a "kick" on the ready queue reads
 * them. */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>

enum { TLS_HANDSHAKE, TLS_OPEN, TLS_SHUTDOWN };

/* The most plaintext one TLS record carries: a queue this long is written at once, a shorter one
 * waits for the end of the iteration (see "Coalescing"). */
#define LC__TLS_RECORD 16384

/* Records decrypted per socket readiness before the loop moves on (fairness with the other
 * connections; the rest are read on the next readiness, or by a kick if OpenSSL holds them). */
#define LC__TLS_READS_PER_POLL 16

struct lc__tls_s {
    SSL *ssl;
    lc_future_t *fut;               /* client / start_tls: resolved when the handshake ends */
    lc_protocol_factory_fn factory; /* run once the handshake is done; NULL for start_tls */
    void *factory_arg;
    lc_handle_t *timer; /* the handshake timeout, then (from close) the shutdown timeout */
    double shutdown_timeout;
    uint8_t state;
    bool want_write;        /* the pending handshake / read / shutdown step waits for POLLOUT */
    bool write_wants_read;  /* the pending SSL_write waits for POLLIN (a renegotiation) */
    bool close_notify_sent; /* SHUTDOWN: ours is out; waiting for the peer's */
    bool kick_scheduled;    /* tls_kick_cb is on the ready queue, holding a reference */
    bool bio_eof;           /* the BIO's read() returned 0 */
    bool corked;            /* cork is deferred on the loop, holding a reference to owner */
    lc__deferred cork;      /* the end-of-iteration flush of coalesced writes */
    lc_transport_t *owner;
    char err[256]; /* the OpenSSL reason of the error that ended it, or "" */
};

static __thread char tls_last_err[256];
/* Where the data that arrives after our close_notify goes (discarded). Not tls_read_buf: close()
 * may be called from data_received, whose data lives there until it returns. */
static __thread char tls_discard_buf[16384];

static void tls_shutdown_step(lc_transport_t *t);
static void tls_read_some(lc_transport_t *t);

/* ---- The BIO --------------------------------------------------------------------------------- */

static int tls_bio_write(BIO *b, const char *data, int len)
{
    lc_transport_t *t = BIO_get_data(b);
    ssize_t n;
    do
        n = send(t->fd, data, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int tls_bio_read(BIO *b, char *data, int len)
{
    lc_transport_t *t = BIO_get_data(b);
    ssize_t n;
    do
        n = read(t->fd, data, (size_t)len);
    while (n < 0 && errno == EINTR);
    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    if (n == 0)
        t->tls->bio_eof = true;
    return (int)n;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: /* writes are never buffered here */
        return 1;
    case BIO_CTRL_EOF: /* OpenSSL 3 tells a truncation from a reset with it */
        return ((lc_transport_t *)BIO_get_data(b))->tls->bio_eof;
    default:
        return 0;
    }
}

static int tls_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

static void tls_bio_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "loopcore socket");
    if (m != NULL &&
        (BIO_meth_set_write(m, tls_bio_write) != 1 || BIO_meth_set_read(m, tls_bio_read) != 1 ||
         BIO_meth_set_ctrl(m, tls_bio_ctrl) != 1 || BIO_meth_set_create(m, tls_bio_create) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    tls_bio_method = m; /* process-wide and never freed, as OpenSSL's own methods */
}

/* ---- Errors ---------------------------------------------------------------------------------- */

static void tls_set_error_text(lc_transport_t *t, const char *text)
{
    snprintf(t->tls->err, sizeof(t->tls->err), "%s", text);
}

/* The code for a failed SSL call whose SSL_get_error() was e (not WANT_*), recording the reason.
 * saved_errno: errno right after the call. Clears OpenSSL's error queue. */
static int tls_failure(lc_transport_t *t, int e, int saved_errno)
{
    char buf[256];
    unsigned long code = ERR_peek_last_error();
    int err;
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(buf, sizeof(buf), "the peer sent close_notify");
        err = -EPIPE;
    } else if (e == SSL_ERROR_SYSCALL && code == 0) {
        /* A socket error; or an EOF that OpenSSL did not classify. */
        err = saved_errno != 0 ? -saved_errno : LC_ESSLTRUNCATED;
        snprintf(buf, sizeof(buf), "%s", lc_strerror(err));
    } else if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
               ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        err = LC_ESSLTRUNCATED;
        ERR_error_string_n(code, buf, sizeof(buf));
    } else if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
               ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        err = LC_ESSLCERTVERIFY;
        long vr = SSL_get_verify_result(t->tls->ssl);
        snprintf(buf, sizeof(buf), "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    } else {
        err = LC_ESSL;
        if (code != 0)
            ERR_error_string_n(code, buf, sizeof(buf));
        else
            snprintf(buf, sizeof(buf), "TLS error (SSL_get_error %d)", e);
    }
    ERR_clear_error();
    tls_set_error_text(t, buf);
    return err;
}

/* ---- Timers and kicks ------------------------------------------------------------------------ */

static void tls_timer_stop(lc_transport_t *t)
{
    if (t->tls->timer != NULL) {
        lc_handle_cancel(t->tls->timer);
        lc_handle_unref(t->tls->timer);
        t->tls->timer = NULL;
    }
}

static void tls_timer_start(lc_transport_t *t, double seconds, lc_call_fn fn)
{
    tls_timer_stop(t);
    /* INFINITY: no timer. Out of memory: none either; the connection waits as it would then. */
    if (isfinite(seconds) && lc_loop_call_later(t->loop, seconds, fn, t, &t->tls->timer) != 0)
        t->tls->timer = NULL;
}

static void tls_kick_cb(void *arg)
{
    lc_transport_t *t = arg;
    struct lc__tls_s *s = t->tls;
    s->kick_scheduled = false;
    if (!t->lost_scheduled) {
        if (s->state == TLS_SHUTDOWN)
            tls_shutdown_step(t);
        else if (s->state == TLS_OPEN && t->reading && !t->closing && !t->eof_seen)
            tls_read_some(t);
    }
    lc_transport_unref(t);
}

/* OpenSSL may hold records no socket event will announce: read them from the ready queue. */
static void tls_kick_if_pending(lc_transport_t *t)
{
    if (t->tls->kick_scheduled || t->lost_scheduled || !SSL_has_pending(t->tls->ssl))
        return;
    if (lc_loop_call_soon(t->loop, tls_kick_cb, t, NULL) == 0) {
        t->tls->kick_scheduled = true;
        t->refs++;
    }
}

static bool tls_is_open(const lc_transport_t *t) { return t->tls->state == TLS_OPEN; }

/* ---- Poll events ----------------------------------------------------------------------------- */

/* update_poll()'s TLS part: ev is what the plaintext rules ask for. */
static unsigned tls_poll_events(const lc_transport_t *t, unsigned ev)
{
    const struct lc__tls_s *s = t->tls;
    if (s->state != TLS_OPEN)
        return s->want_write ? UV_WRITABLE : UV_READABLE;
    if (s->corked) /* the deferred flush writes first (see "Coalescing"); POLLOUT only if needed */
        ev &= ~(unsigned)UV_WRITABLE;
    /* A read that wants to write (a KeyUpdate's answer that the socket did not take) waits for
     * POLLOUT only while reading goes on: paused or closing, nobody would read on POLLOUT, which
     * would then fire again and again; the next SSL_write sends OpenSSL's pending bytes first. */
    if (s->want_write && t->reading && !t->closing && !t->eof_seen)
        ev |= UV_WRITABLE;
    if (s->write_wants_read && t->wlen > 0)
        ev |= UV_READABLE;
    return ev;
}

/* ---- Handshake ------------------------------------------------------------------------------- */

static bool tls_is_connection_error(int err)
{
    return is_connection_error(err) || err == LC_ESSLTRUNCATED;
}

static void tls_handshake_failed(lc_transport_t *t, int err)
{
    struct lc__tls_s *s = t->tls;
    tls_timer_stop(t);
    if (s->err[0] == '\0')
        tls_set_error_text(t, lc_strerror(err));
    if (s->fut != NULL) {
        /* Kept per thread for the future's owner: only failures that fail a future set it, so
         * a server's failures on the same loop do not overwrite it. */
        snprintf(tls_last_err, sizeof(tls_last_err), "%s", s->err);
        if (!lc_future_done(s->fut))
            lc_future_set_error(s->fut, err);
    } else if (!tls_is_connection_error(err)) {
        /* A server's: nobody else hears of it. asyncio reports what is not an OSError. */
        char msg[320];
        snprintf(msg, sizeof(msg), "SSL handshake failed: %s", s->err);
        lc_exception_context_t ctx = LC_EXCEPTION_CONTEXT_INIT(msg);
        ctx.error = err;
        ctx.transport = t;
        ctx.socket = t->fd;
        lc_loop_call_exception_handler(t->loop, &ctx);
    }
    /* No protocol yet (its connection_lost is not called), except start_tls's. */
    schedule_lost(t, err);
}

static void tls_handshake_timeout_cb(void *arg)
{
    lc_transport_t *t = arg;
    lc_handle_unref(t->tls->timer);
    t->tls->timer = NULL;
    char text[128];
    snprintf(text, sizeof(text),
             "SSL handshake is taking longer than the timeout: aborting the "
             "connection");
    tls_set_error_text(t, text);
    tls_handshake_failed(t, LC_ESSLHANDSHAKETIMEOUT);
}

static void tls_handshake_done(lc_transport_t *t)
{
    struct lc__tls_s *s = t->tls;
    tls_timer_stop(t);
    s->state = TLS_OPEN;
    s->want_write = false;
    if (s->fut != NULL && lc_future_done(s->fut)) { /* cancelled while handshaking */
        schedule_lost(t, LC_ECANCELLED);
        return;
    }
    if (s->factory != NULL) {
        const lc_protocol_t *proto = NULL;
        void *user = NULL;
        int r = s->factory(s->factory_arg, &proto, &user);
        s->factory = NULL;
        if (r == 0 && proto == NULL)
            r = LC_EINVAL;
        if (r != 0) {
            if (s->fut != NULL)
                lc_future_set_error(s->fut, r);
            schedule_lost(t, r);
            return;
        }
        t->proto = proto;
        t->user = user;
        if (proto->connection_made != NULL)
            proto->connection_made(t, user);
    }
    /* connection_made may pause reading (honoured) or close. */
    update_poll(t);
    if (s->fut != NULL) {
        lc_future_set_result(s->fut, t);
        lc_future_unref(s->fut);
        s->fut = NULL;
    }
    tls_kick_if_pending(t); /* application data that came with the last handshake flight */
}

static void tls_handshake_step(lc_transport_t *t)
{
    struct lc__tls_s *s = t->tls;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(s->ssl);
    int saved = errno;
    if (r == 1) {
        tls_handshake_done(t);
        return;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->want_write = e == SSL_ERROR_WANT_WRITE;
        update_poll(t);
        return;
    }
    int err = tls_failure(t, e, saved);
    /* An EOF in the middle of a handshake is a reset to the caller (asyncio's
     * ConnectionResetError), not a truncated stream. */
    if (err == LC_ESSLTRUNCATED || err == -EPIPE)
        err = -ECONNRESET;
    tls_handshake_failed(t, err);
}

/* ---- Reading --------------------------------------------------------------------------------- */

/* One SSL_read() into the protocol. Returns true if it delivered data. */
static bool tls_read_one(lc_transport_t *t)
{
    struct lc__tls_s *s = t->tls;
    const lc_protocol_t *p = t->proto;
    bool buffered = p != NULL && p->get_buffer != NULL;
    size_t cap;
    char *buf = read_buffer(t, &cap);
    if (buf == NULL)
        return false;
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(s->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    int saved = errno;
    if (n > 0) {
        if (s->want_write) {
            s->want_write = false;
            update_poll(t);
        }
        if (buffered) {
            if (p->buffer_updated != NULL)
                p->buffer_updated(t, (size_t)n, t->user);
        } else if (p != NULL && p->data_received != NULL) {
            p->data_received(t, buf, (size_t)n, t->user);
        }
        return true;
    }
    int e = SSL_get_error(s->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        bool ww = e == SSL_ERROR_WANT_WRITE;
        if (ww != s->want_write) {
            s->want_write = ww;
            update_poll(t);
        }
        return false;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        /* The peer's close_notify: eof_received, whose answer cannot keep a TLS transport
         * half-open (asyncio warns and closes too), then our close_notify and the close. */
        t->eof_seen = true;
        update_poll(t);
        if (p != NULL && p->eof_received != NULL)
            (void)p->eof_received(t, t->user);
        lc_transport_close(t);
        return false;
    }
    int err = tls_failure(t, e, saved);
    if (err == LC_ESSLTRUNCATED) {
        schedule_lost(t, err); /* documented in stream.h: not an error to report */
        return false;
    }
    char msg[320];
    snprintf(msg, sizeof(msg), "Fatal error on SSL transport: %s", s->err);
    fatal_error(t, err, msg);
    return false;
}

static void tls_read_some(lc_transport_t *t)
{
    for (int i = 0; i < LC__TLS_READS_PER_POLL; i++)
        if (!tls_read_one(t) || t->closing || !t->reading)
            return;
    tls_kick_if_pending(t); /* stopped early: the socket may be empty but OpenSSL not */
}

/* ---- Writing --------------------------------------------------------------------------------- */

/* SSL_write()s of p[0..n) until done or the socket is full: *done is the plaintext taken. Returns
 * false after a fatal error (reported: connection_lost follows). */
static bool tls_send(lc_transport_t *t, const char *p, size_t n, size_t *done)
{
    struct lc__tls_s *s = t->tls;
    *done = 0;
    while (*done < n) {
        size_t chunk = n - *done;
        ERR_clear_error();
        errno = 0;
        int r = SSL_write(s->ssl, p + *done, chunk > INT_MAX ? INT_MAX : (int)chunk);
        int saved = errno;
        if (r > 0) {
            *done += (size_t)r;
            s->write_wants_read = false;
            continue;
        }
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE)
            return true;
        if (e == SSL_ERROR_WANT_READ) {
            s->write_wants_read = true;
            return true;
        }
        int err = tls_failure(t, e, saved);
        if (err == LC_ESSLTRUNCATED)
            err = -EPIPE;
        char msg[320];
        snprintf(msg, sizeof(msg), "Fatal write error on SSL transport: %s", s->err);
        fatal_error(t, err, msg);
        return false;
    }
    return true;
}

/* Writes the queue's head (nocopy segments in order, or the copy buffer) until the queue is
 * empty or the socket full. Returns false after a fatal error. */
static bool tls_send_queue(lc_transport_t *t)
{
    while (t->wlen > 0) {
        const char *p;
        size_t n;
        if (t->npend > 0) {
            segs_advance(t, 0); /* completes callback-only segments at the front */
            const lc__wseg *sg = seg_at(t, t->ndone);
            p = sg->base != NULL ? sg->base : t->wbuf + t->whead;
            n = sg->len;
        } else {
            p = t->wbuf + t->whead;
            n = t->wlen;
        }
        size_t done;
        if (!tls_send(t, p, n, &done))
            return false;
        if (t->npend > 0) {
            segs_advance(t, done);
        } else {
            t->whead += done;
            t->wlen -= done;
        }
        if (done < n)
            break;
    }
    return true;
}

/* do_flush()'s TLS form (the socket is writable, or a renegotiation read came in). */
static void tls_flush(lc_transport_t *t)
{
    size_t before = t->wlen;
    if (!tls_send_queue(t))
        return; /* the pending ones failed; call_connection_lost delivers them */
    flush_done(t, before);
}

/* ---- Coalescing -----------------------------------------------------------------------------
 * Small writes become full records. A write that finds the queue empty (or corked) and the
 * connection open is copied to the queue and the flush deferred to the end of the iteration
 * (lc__loop_defer()), so that what the protocol writes in one pass (a header, then a body; many
 * connections' replies in one batch) goes out as few records and one send() per transport: each
 * SSL_write is a record with its own header, tag and encryption call, and asyncio's and uvloop's
 * sslproto write one record per write(). Once LC__TLS_RECORD bytes are queued there is a full
 * record: the queue is written at once. The plaintext transport needs none of this (its writes
 * are already one send() each, and the kernel coalesces segments). What the application sees is
 * unchanged: the bytes count for flow control from the moment they are written, and they are on
 * the wire before the loop next waits for events. */

static void tls_cork_cb(lc__deferred *d)
{
    struct lc__tls_s *s = lc_container_of(d, struct lc__tls_s, cork);
    lc_transport_t *t = s->owner;
    s->corked = false;
    if (!t->lost_scheduled && t->wlen > 0)
        tls_flush(t);
    lc_transport_unref(t);
}

/* After bytes were queued by a write (the queue was empty before it if was_empty): write full
 * records now, defer a partial one to the end of the iteration, or wait for the socket. */
static void tls_queued(lc_transport_t *t, bool was_empty)
{
    struct lc__tls_s *s = t->tls;
    if (s->state == TLS_OPEN && (was_empty || s->corked)) {
        if (t->wlen >= LC__TLS_RECORD && !tls_send_queue(t))
            return; /* failed: connection_lost follows */
        if (t->wlen > 0 && !s->corked) {
            s->corked = true;
            t->refs++;
            lc__loop_defer(t->loop, &s->cork);
        }
    } else {
        update_poll(t);
    }
    maybe_pause_writing(t);
}

/* lc_transport_write()'s TLS form (t open and writable, len > 0). A full record on an empty queue
 * is written from the caller's memory; what the socket does not take, and a short write, is
 * copied (see "Coalescing"). */
static int tls_write(lc_transport_t *t, const char *data, size_t len)
{
    size_t done = 0;
    bool was_empty = t->wlen == 0;
    if (was_empty && len >= LC__TLS_RECORD && t->tls->state == TLS_OPEN) {
        if (!tls_send(t, data, len, &done) || done == len)
            return 0;
        was_empty = false; /* the socket is full: wait for it */
    }
    int r = wbuf_append(t, data + done, len - done);
    if (r != 0) {
        /* OpenSSL may hold a record begun from these bytes, which must be retried with them:
         * the stream cannot go on without them. */
        if (done > 0 || t->wlen == 0)
            fatal_error(t, r, "Out of memory queueing data on SSL transport");
        return r;
    }
    tls_queued(t, was_empty);
    return 0;
}

/* writelines' TLS form: copied together, so that small buffers make full records. */
static int tls_writelines(lc_transport_t *t, const struct iovec *bufs, size_t nbufs)
{
    bool was_empty = t->wlen == 0;
    for (size_t i = 0; i < nbufs; i++) {
        if (bufs[i].iov_len == 0)
            continue;
        int r = wbuf_append(t, bufs[i].iov_base, bufs[i].iov_len);
        if (r != 0)
            return r;
    }
    tls_queued(t, was_empty);
    return 0;
}

/* ---- Closing --------------------------------------------------------------------------------- */

static void tls_shutdown_timeout_cb(void *arg)
{
    lc_transport_t *t = arg;
    lc_handle_unref(t->tls->timer);
    t->tls->timer = NULL;
    tls_set_error_text(t, "SSL shutdown timed out");
    schedule_lost(t, LC_ESSLSHUTDOWNTIMEOUT);
}

/* lc_transport_close()'s TLS form (closing is set): the shutdown timeout covers the flush and
 * the close_notify exchange, as asyncio 3.11's does from the FLUSHING state on. */
static void tls_close(lc_transport_t *t)
{
    if (t->tls->state != TLS_OPEN) { /* not reached: nobody holds t before the handshake */
        schedule_lost(t, 0);
        return;
    }
    tls_timer_start(t, t->tls->shutdown_timeout, tls_shutdown_timeout_cb);
    if (t->tls->corked && t->wlen > 0) {
        /* The close ends the coalescing (a response, then close: the common case): the queue goes
         * now, and the close_notify right behind it once it is out (flush_done), instead of
         * stopping the poll here and starting it again after the deferred flush. */
        tls_flush(t);
        return;
    }
    if (t->wlen == 0)
        tls_shutdown_step(t);
    else
        update_poll(t); /* stop reading; keep flushing */
}

/* Sends our close_notify, then reads (and discards) until the peer's arrives. */
static void tls_shutdown_step(lc_transport_t *t)
{
    struct lc__tls_s *s = t->tls;
    if (t->lost_scheduled)
        return;
    s->state = TLS_SHUTDOWN;
    if (!s->close_notify_sent) {
        ERR_clear_error();
        int r = SSL_shutdown(s->ssl);
        if (r == 1) { /* the peer's came first */
            schedule_lost(t, 0);
            return;
        }
        if (r < 0) {
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                s->want_write = e == SSL_ERROR_WANT_WRITE;
                update_poll(t);
                return;
            }
            ERR_clear_error();
            schedule_lost(t, 0); /* the peer is gone: nothing left to wait for */
            return;
        }
        s->close_notify_sent = true;
    }
    for (int i = 0; i < LC__TLS_READS_PER_POLL; i++) {
        ERR_clear_error();
        int n = SSL_read(s->ssl, tls_discard_buf, (int)sizeof(tls_discard_buf));
        if (n > 0)
            continue; /* data after close is discarded */
        int e = SSL_get_error(s->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            s->want_write = e == SSL_ERROR_WANT_WRITE;
            update_poll(t);
            return;
        }
        /* The peer's close_notify, or its EOF or reset: either way the exchange is over. */
        ERR_clear_error();
        schedule_lost(t, 0);
        return;
    }
    tls_kick_if_pending(t);
}

/* ---- The poll callback ----------------------------------------------------------------------- */

static void tls_poll_cb(lc_transport_t *t, int status, int events)
{
    struct lc__tls_s *s = t->tls;
    if (status < 0) {
        /* EPOLLERR (libuv stopped the handle): deliver what is readable first, as the plaintext
         * path does, then the error. */
        t->events = 0;
        if (s->state == TLS_OPEN && t->reading && !t->closing && !t->eof_seen) {
            tls_read_some(t);
            if (t->lost_scheduled)
                return;
        }
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
            status = -err;
        if (s->state == TLS_HANDSHAKE) {
            tls_set_error_text(t, lc_strerror(status));
            tls_handshake_failed(t, status);
        } else if (s->state == TLS_SHUTDOWN) {
            schedule_lost(t, 0);
        } else {
            fatal_error(t, status, "Fatal error on SSL transport");
        }
        return;
    }
    switch (s->state) {
    case TLS_HANDSHAKE:
        tls_handshake_step(t);
        return;
    case TLS_SHUTDOWN:
        tls_shutdown_step(t);
        return;
    default:
        break;
    }
    bool rd = (events & UV_READABLE) || (s->want_write && (events & UV_WRITABLE));
    bool wr = (events & UV_WRITABLE) || (s->write_wants_read && (events & UV_READABLE));
    if (rd && t->reading && !t->closing && !t->eof_seen)
        tls_read_some(t);
    if (wr && !t->lost_scheduled && t->wlen > 0)
        tls_flush(t);
}

/* ---- Creation -------------------------------------------------------------------------------- */

int lc__tls_config_init(lc__tls_config *cfg, struct ssl_ctx_st *ctx, const char *server_hostname,
                        double handshake_timeout, double shutdown_timeout, bool server_side)
{
    memset(cfg, 0, sizeof(*cfg));
    if (ctx == NULL)
        return server_hostname != NULL || handshake_timeout != 0 || shutdown_timeout != 0
                   ? LC_EINVAL
                   : 0;
    /* Negative and NaN fail; 0 is "not given". */
    if (!(handshake_timeout >= 0) || !(shutdown_timeout >= 0) ||
        (server_side && server_hostname != NULL))
        return LC_EINVAL;
    if (server_hostname != NULL && server_hostname[0] != '\0') {
        cfg->server_hostname = strdup(server_hostname);
        if (cfg->server_hostname == NULL)
            return LC_ENOMEM;
    }
    SSL_CTX_up_ref(ctx);
    cfg->ctx = ctx;
    cfg->handshake_timeout = handshake_timeout > 0 ? handshake_timeout : LC_SSL_HANDSHAKE_TIMEOUT;
    cfg->shutdown_timeout = shutdown_timeout > 0 ? shutdown_timeout : LC_SSL_SHUTDOWN_TIMEOUT;
    cfg->server_side = server_side;
    return 0;
}

void lc__tls_config_clear(lc__tls_config *cfg)
{
    if (cfg->ctx != NULL)
        SSL_CTX_free(cfg->ctx);
    free(cfg->server_hostname);
    memset(cfg, 0, sizeof(*cfg));
}

/* The SSL of a new TLS transport t (whose fd is set), per cfg. Returns 0 or an error. */
static int tls_setup(lc_transport_t *t, const lc__tls_config *cfg)
{
    pthread_once(&tls_bio_once, tls_bio_init);
    struct lc__tls_s *s = t->tls;
    if (tls_bio_method == NULL)
        return LC_ENOMEM;
    s->ssl = SSL_new(cfg->ctx);
    BIO *bio = s->ssl != NULL ? BIO_new(tls_bio_method) : NULL;
    if (bio == NULL) {
        ERR_clear_error();
        return LC_ENOMEM;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(s->ssl, bio, bio);
    SSL_set_mode(s->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
    SSL_set_options(s->ssl, SSL_OP_NO_RENEGOTIATION);
    SSL_set_read_ahead(s->ssl, 1);
    s->shutdown_timeout = cfg->shutdown_timeout;
    if (cfg->server_side) {
        SSL_set_accept_state(s->ssl);
        return 0;
    }
    SSL_set_connect_state(s->ssl);
    const char *h = cfg->server_hostname;
    if (h == NULL)
        return 0;
    unsigned char addr[16];
    bool ip = inet_pton(AF_INET, h, addr) == 1 || inet_pton(AF_INET6, h, addr) == 1;
    int ok = 1;
    if (!ip) /* SNI names hosts, never addresses (RFC 6066) */
        ok = SSL_set_tlsext_host_name(s->ssl, h);
    if (ok == 1 && (SSL_get_verify_mode(s->ssl) & SSL_VERIFY_PEER))
        ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), h)
                : SSL_set1_host(s->ssl, h);
    if (ok != 1) {
        ERR_clear_error();
        return LC_EINVAL;
    }
    return 0;
}

/* A TLS transport on fd, not yet polled (nothing else changed on failure; fd not closed). */
static lc_transport_t *tls_transport_alloc(int fd, const lc__tls_config *cfg, int *err)
{
    lc_transport_t *t = calloc(1, sizeof(*t));
    struct lc__tls_s *s = t != NULL ? calloc(1, sizeof(*s)) : NULL;
    if (s == NULL) {
        free(t);
        *err = LC_ENOMEM;
        return NULL;
    }
    t->tls = s;
    s->owner = t;
    s->cork.fn = tls_cork_cb;
    t->fd = fd;
    *err = tls_setup(t, cfg);
    if (*err != 0) {
        SSL_free(s->ssl);
        free(s);
        free(t);
        return NULL;
    }
    return t;
}

/* Arms the handshake timeout and takes the first step (a client's ClientHello goes now). */
static void tls_start(lc_transport_t *t, double handshake_timeout)
{
    tls_timer_start(t, handshake_timeout, tls_handshake_timeout_cb);
    tls_handshake_step(t);
}

lc_transport_t *lc__transport_new_tls(lc_loop_t *loop, int fd, lc_protocol_factory_fn factory,
                                      void *factory_arg, lc_server_t *server,
                                      const lc__tls_config *cfg, lc_future_t *fut, int *err)
{
    lc_transport_t *t = tls_transport_alloc(fd, cfg, err);
    if (t == NULL) {
        close(fd);
        return NULL;
    }
    if (factory == NULL) {
        *err = LC_EINVAL;
    } else {
        *err = transport_open(t, loop, fd, server);
    }
    if (*err != 0) {
        SSL_free(t->tls->ssl);
        free(t->tls);
        free(t);
        close(fd);
        return NULL;
    }
    t->tls->factory = factory;
    t->tls->factory_arg = factory_arg;
    t->tls->fut = fut != NULL ? lc_future_ref(fut) : NULL;
    tls_start(t, cfg->handshake_timeout);
    return t;
}

/* transport_release()'s TLS part: the timer goes with the socket; a future still waiting (the
 * loop closes mid-handshake) fails. */
static void tls_release(lc_transport_t *t)
{
    struct lc__tls_s *s = t->tls;
    tls_timer_stop(t);
    if (s->fut != NULL) {
        if (!lc_future_done(s->fut))
            lc_future_set_error(s->fut, t->lost_err < 0 ? t->lost_err : LC_ECLOSED);
        lc_future_unref(s->fut);
        s->fut = NULL;
    }
}

/* transport_force_close()'s TLS part: a kick's ready-queue entry was discarded by the close. */
static void tls_force_close(lc_transport_t *t)
{
    if (t->tls->kick_scheduled) {
        t->tls->kick_scheduled = false;
        t->refs--; /* the connection's reference is still held: t stays */
    }
}

static void tls_free(lc_transport_t *t)
{
    SSL_free(t->tls->ssl);
    free(t->tls);
}

/* ---- start_tls ------------------------------------------------------------------------------- */

/* start_tls's state while the old transport's queued plaintext is being written (asyncio waits
 * for the write buffer to drain too: its SSL protocol's first bytes queue behind the old ones). */
struct lc__start_tls_pending {
    lc__tls_config cfg;
    lc_future_t *fut;
};

/* Gives old's socket, server place and protocol to a new TLS transport and starts its handshake;
 * the new transport takes a reference on fut and resolves it. Returns 0 or an error; *detached
 * then says whether old was already detached (its protocol then got connection_lost from it). */
static int start_tls_swap(lc_transport_t *old, const lc__tls_config *cfg, lc_future_t *fut,
                          bool *detached)
{
    *detached = false;
    int r;
    lc_transport_t *t = tls_transport_alloc(old->fd, cfg, &r);
    if (t == NULL)
        return r;
    /* Detach the old transport: it gives its socket, its place in the server and its protocol to
     * the new one, and becomes a closed shell (no connection_lost: the protocol's comes from the
     * new transport). Its poll handle must go before the new one watches the same fd. */
    *detached = true;
    lc_loop_t *loop = old->loop;
    int fd = old->fd;
    lc_server_t *server = old->server;
    old->server = NULL;
    old->fd = -1;
    old->closing = true;
    old->reading = false;
    old->lost_scheduled = true;
    old->lost_delivered = true;
    transport_release(old);
    r = transport_open(t, loop, fd, server);
    t->proto = old->proto;
    t->user = old->user;
    if (r != 0) {
        /* Not expected (the fd was just given up by the old handle): the protocol still gets its
         * connection_lost, from the old transport it knows. */
        SSL_free(t->tls->ssl);
        free(t->tls);
        free(t);
        close(fd);
        if (server != NULL)
            lc__server_connection_gone(server);
        if (old->proto != NULL && old->proto->connection_lost != NULL)
            old->proto->connection_lost(old, r, old->user);
        return r;
    }
    t->high = old->high;
    t->low = old->low;
    t->send_timeout = old->send_timeout;
    t->tls->fut = lc_future_ref(fut);
    tls_start(t, cfg->handshake_timeout);
    return 0;
}

static void start_tls_fail(lc_transport_t *t, int err)
{
    struct lc__start_tls_pending *p = t->stls;
    t->stls = NULL;
    if (!lc_future_done(p->fut))
        lc_future_set_error(p->fut, err);
    lc_future_unref(p->fut);
    lc__tls_config_clear(&p->cfg);
    free(p);
}

/* The old transport's queue drained (from finish_drained): upgrade now. */
static void start_tls_drained(lc_transport_t *t)
{
    struct lc__start_tls_pending *p = t->stls;
    t->stls = NULL;
    bool detached;
    int r = start_tls_swap(t, &p->cfg, p->fut, &detached);
    if (r != 0 && !lc_future_done(p->fut))
        lc_future_set_error(p->fut, r);
    lc_future_unref(p->fut);
    lc__tls_config_clear(&p->cfg);
    free(p);
    if (r != 0 && !detached)
        schedule_lost(t, r);
}

int lc_loop_start_tls(lc_loop_t *loop, lc_transport_t *old, struct ssl_ctx_st *ctx,
                      const lc_start_tls_opts_t *opts, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    lc_start_tls_opts_t o = opts != NULL ? *opts : (lc_start_tls_opts_t){0};
    if (loop == NULL || old == NULL || ctx == NULL || fut == NULL || old->loop != loop ||
        old->tls != NULL || old->pipe != LC__PIPE_NONE)
        return LC_EINVAL;
    if (old->closing || old->fd < 0)
        return LC_ECLOSED;
    if (old->sendfile != NULL) /* sendfile hook: the upgrade needs an idle transport */
        return LC_EBUSY;
    const char *host = o.server_side ? NULL : o.server_hostname;
    if (o.server_side && o.server_hostname != NULL)
        return LC_EINVAL;
    lc__tls_config cfg;
    int r = lc__tls_config_init(&cfg, ctx, host, o.ssl_handshake_timeout, o.ssl_shutdown_timeout,
                                o.server_side);
    if (r != 0)
        return r;
    r = lc_loop_create_future(loop, fut);
    if (r != 0) {
        lc__tls_config_clear(&cfg);
        *fut = NULL;
        return r;
    }
    if (old->wlen > 0) {
        /* Bytes still queued: they go out in plaintext first, then the handshake starts (from
         * finish_drained). Meanwhile the old transport is detached for its user (closing, no
         * reads, no writes) but keeps flushing; lost meanwhile, it fails the future. */
        struct lc__start_tls_pending *p = malloc(sizeof(*p));
        if (p == NULL) {
            lc__tls_config_clear(&cfg);
            lc_future_unref(*fut);
            *fut = NULL;
            return LC_ENOMEM;
        }
        p->cfg = cfg; /* takes over its references */
        p->fut = lc_future_ref(*fut);
        old->stls = p;
        old->closing = true;
        old->reading = false;
        update_poll(old); /* stop reading; keep flushing */
        return 0;
    }
    bool detached;
    r = start_tls_swap(old, &cfg, *fut, &detached);
    lc__tls_config_clear(&cfg); /* the SSL holds its own reference on ctx */
    if (r != 0) {
        lc_future_unref(*fut);
        *fut = NULL;
    }
    return r;
}

/* ---- Getters --------------------------------------------------------------------------------- */

struct ssl_st *lc_transport_get_ssl(const lc_transport_t *t)
{
    return t != NULL && t->tls != NULL ? t->tls->ssl : NULL;
}

struct x509_st *lc_transport_get_peer_certificate(const lc_transport_t *t)
{
    return t != NULL && t->tls != NULL ? SSL_get0_peer_certificate(t->tls->ssl) : NULL;
}

const char *lc_transport_get_cipher(const lc_transport_t *t)
{
    return t != NULL && t->tls != NULL ? SSL_get_cipher_name(t->tls->ssl) : NULL;
}

const char *lc_transport_get_tls_version(const lc_transport_t *t)
{
    return t != NULL && t->tls != NULL ? SSL_get_version(t->tls->ssl) : NULL;
}

int lc_transport_get_alpn_protocol(const lc_transport_t *t, const unsigned char **proto,
                                   size_t *len)
{
    if (t == NULL || t->tls == NULL || proto == NULL || len == NULL)
        return LC_EINVAL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->tls->ssl, proto, &n);
    *len = n;
    return n > 0 ? 0 : LC_ENOENT;
}

const char *lc_transport_ssl_error_text(const lc_transport_t *t)
{
    return t != NULL && t->tls != NULL ? t->tls->err : "";
}

const char *lc_ssl_last_error_text(void) { return tls_last_err; }
