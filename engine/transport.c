/* Stream transports on a uv_poll_t: one read() per readiness, writes tried at once and queued
 * only for what the socket does not take (copied, or held by reference for a nocopy write until
 * its completion callback), asyncio's flow control and close semantics, and a send timeout for
 * peers that stop reading.
 *
 * Why uv_poll and our own read/write rather than uv_tcp_t: libuv's stream writes report progress
 * only when a whole write request completes, so resume_writing could not come at the low-water
 * mark (uvloop's behaviour, asyncio rule 15c); accepted sockets must also be handed between loops
 * as plain fds. The system calls are the same ones libuv would make.
 *
 * TLS is a mode of this transport (t->tls != NULL), kept in engine/transport_tls.c.h, which is
 * included at the end of this file; the plaintext path meets it in one branch at each of the
 * poll callback, the writes, write_eof, close and the end of a flush.
 *
 * lc_loop_sendfile (engine/sendfile.c) meets it in small hooks, each marked "sendfile hook",
 * while t->sendfile is set (see stream_internal.h and the section at the end of this file).
 *
 * Pipes are a mode of it too (t->pipe != LC__PIPE_NONE: connect_read_pipe / connect_write_pipe,
 * and the subprocess pipes of engine/subprocess.c). Each place where a pipe differs is marked
 * "Pipe mode": writev() with SIGPIPE held off instead of send(MSG_NOSIGNAL), write_eof closes
 * the fd, a read pipe always closes at EOF (and a pty's EIO is its EOF), a write pipe watches
 * for its reader going (EPOLLERR) and loses the connection (LC_EPIPE if data was queued). */
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine/fdmap.h"
#include "engine/stream_internal.h"

#define LC__READ_BUF_SIZE 65536
#define LC__DEFAULT_HIGH (64 * 1024)
/* A drained write buffer bigger than this is given back. */
#define LC__WBUF_KEEP (256 * 1024)
/* An emptied segment queue with more slots than this (10 KiB) is given back. It grows with the
 * nocopy writes queued, and with those that complete at once within one callback (their
 * completions wait for the next iteration): a burst that an idle connection should not keep. */
#define LC__SEGS_KEEP 256
/* Buffers per sendmsg() when flushing the segment queue. */
#define LC__FLUSH_IOV 64

/* One entry of the segment queue (see "Writing without copies"): a nocopy buffer, or a run of
 * bytes of the copy buffer, in the order they go out; then, once written (or failed), a
 * completion waiting to be delivered. */
typedef struct {
    const char *base;         /* the caller's memory; NULL: the next len bytes of wbuf */
    size_t len;               /* bytes not yet written */
    lc_transport_write_cb cb; /* on the last buffer of a nocopy write; NULL otherwise */
    void *arg;
    int status; /* once done: 0, or the error the queue was failed with */
} lc__wseg;

struct lc_transport_s {
    lc__resource res;
    uv_poll_t poll;
    lc_loop_t *loop;
    lc_server_t *server; /* the server that accepted it, or NULL */
    int fd;
    int lost_err;
    unsigned events; /* the uv_poll events currently watched */
    uint32_t refs;   /* one for the connection (dropped when its handle closes) + users' */
    bool reading;    /* the protocol wants data (pause_reading clears it) */
    bool closing;    /* close/abort called or connection lost */
    bool eof_seen;   /* the peer's EOF was read */
    bool want_eof;   /* write_eof called: shutdown(SHUT_WR) once the buffer drains */
    bool eof_sent;
    bool write_paused; /* pause_writing was called and resume_writing not yet */
    bool lost_scheduled;
    bool lost_delivered; /* connection_lost was called */
    bool poll_open;      /* poll is initialised and not closed */
    uint8_t pipe;        /* Pipe mode: LC__PIPE_NONE (a socket), LC__PIPE_READ, LC__PIPE_WRITE */
    bool pipe_hup_watch; /* Pipe mode: a write pipe (a FIFO) polled for its reader going */
    const lc_protocol_t *proto;
    void *user;
    /* Queued bytes: wlen in all, copied or not (what flow control, close, write_eof and the
     * send timeout look at). While no nocopy buffer is pending (npend == 0) they are all in the
     * copy buffer, wbuf[whead, whead + wlen). */
    char *wbuf;
    size_t whead, wlen, wcap;
    /* The segment queue, a ring of scap (a power of two) slots from shead: ndone completions to
     * deliver, then npend pending segments, whose lengths add up to wlen; nc_len of those bytes
     * are the callers' (the rest are in wbuf, from whead, in order). */
    lc__wseg *segs;
    size_t shead, ndone, npend, scap, nc_len;
    bool drain_scheduled; /* drain_cb is on the ready queue, holding a reference */
    bool nocopy_sending;  /* inside write_nocopy's send: its callbacks wait for drain_cb */
    size_t high, low;
    /* Send timeout (0: off). The timer is armed only while data is queued, and re-armed lazily:
     * last_progress is when data was queued on an empty buffer or the socket last took some. */
    double send_timeout;
    double last_progress;
    lc_handle_t *send_timer;
    struct lc__tls_s *tls; /* the TLS mode's state, or NULL for plaintext */
    /* start_tls called with bytes still queued: the upgrade waits for them to be written. */
    struct lc__start_tls_pending *stls;
    /* sendfile hook: the lc_loop_sendfile running on this transport, or NULL; sendfile_writing
     * is set around its own writes (the fallback's chunks), which pass the LC_EBUSY check. */
    lc__sendfile *sendfile;
    bool sendfile_writing;
};

static __thread char tls_read_buf[LC__READ_BUF_SIZE];

static void transport_poll_cb(uv_poll_t *p, int status, int events);
static void schedule_lost(lc_transport_t *t, int err);
static void send_timer_stop(lc_transport_t *t);
static void fail_pending(lc_transport_t *t, int err);
static void deliver_done(lc_transport_t *t);
static void flush_done(lc_transport_t *t, size_t before);
static int transport_open(lc_transport_t *t, lc_loop_t *loop, int fd, lc_server_t *server);

/* The TLS mode (engine/transport_tls.c.h). */
static unsigned tls_poll_events(const lc_transport_t *t, unsigned ev);
static void tls_poll_cb(lc_transport_t *t, int status, int events);
static void tls_flush(lc_transport_t *t);
static int tls_write(lc_transport_t *t, const char *data, size_t len);
static int tls_writelines(lc_transport_t *t, const struct iovec *bufs, size_t nbufs);
static bool tls_send_queue(lc_transport_t *t);
static void tls_close(lc_transport_t *t);
static void tls_shutdown_step(lc_transport_t *t);
static void tls_kick_if_pending(lc_transport_t *t);
static bool tls_is_open(const lc_transport_t *t);
static void tls_release(lc_transport_t *t);
static void tls_force_close(lc_transport_t *t);
static void tls_free(lc_transport_t *t);
static void start_tls_drained(lc_transport_t *t);
static void start_tls_fail(lc_transport_t *t, int err);

int lc__set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

/* ---- Lifetime -------------------------------------------------------------------------------- */

static void transport_free(lc_transport_t *t)
{
    if (t->stls != NULL)
        start_tls_fail(t, LC_ECLOSED);
    if (t->server != NULL)
        lc__server_connection_gone(t->server);
    if (t->tls != NULL)
        tls_free(t);
    free(t->wbuf);
    free(t->segs);
    free(t);
}

lc_transport_t *lc_transport_ref(lc_transport_t *t)
{
    if (t != NULL)
        t->refs++;
    return t;
}

void lc_transport_unref(lc_transport_t *t)
{
    if (t != NULL && --t->refs == 0)
        transport_free(t);
}

static void transport_closed_cb(uv_handle_t *h)
{
    lc_transport_t *t = h->data;
    lc_transport_unref(t); /* the connection's reference */
}

/* Releases the poll handle and the socket, once (later calls do nothing). The connection's
 * reference is dropped in the poll handle's close callback, never here, so t stays valid for the
 * rest of the current callback: callers may still read it after a synchronous connection_lost.
 * uv_close first, as libuv asks (it stops watching the fd before the fd goes). */
static void transport_release(lc_transport_t *t)
{
    if (!t->poll_open)
        return;
    t->poll_open = false;
    lc__loop_remove_resource(t->loop, &t->res);
    send_timer_stop(t);
    if (t->tls != NULL)
        tls_release(t);
    uv_close((uv_handle_t *)&t->poll, transport_closed_cb);
    if (t->fd >= 0) {
        lc__fdmap_transport(t->loop, t->fd, false);
        close(t->fd);
        t->fd = -1;
    }
    /* Leave the server now, as asyncio's _detach after connection_lost: its active count and
     * wait_closed follow the connections, not the memory (which users' references may keep, and
     * which goes only when the poll handle's close callback has run, in a later poll). */
    if (t->server != NULL) {
        lc_server_t *s = t->server;
        t->server = NULL;
        lc__server_connection_gone(s);
    }
}

/* The loop is being closed with this transport open. Every connection_made still gets its one
 * connection_lost, so the protocol can free its state: called here, synchronously, with the
 * error already recorded, or LC_ECLOSED. */
static void transport_force_close(lc__resource *r)
{
    lc_transport_t *t = lc_container_of(r, lc_transport_t, res);
    int err = t->lost_scheduled ? t->lost_err : LC_ECLOSED;
    t->closing = true;
    t->lost_scheduled = true;
    if (t->sendfile != NULL) /* sendfile hook */
        lc__sendfile_lost(t->sendfile, err < 0 ? err : LC_ECLOSED);
    t->wlen = 0;
    if (t->stls != NULL)
        start_tls_fail(t, err);
    /* Nocopy writes get their callbacks first, with the error, so that their memory can go. */
    fail_pending(t, err);
    deliver_done(t);
    if (t->drain_scheduled) {
        /* Its ready-queue entry was discarded by the loop's close: drop its reference here. The
         * connection's is still held (the poll handle is open), so this does not free t. */
        t->drain_scheduled = false;
        t->refs--;
    }
    if (t->tls != NULL)
        tls_force_close(t);
    if (!t->lost_delivered) {
        t->lost_delivered = true;
        if (t->proto != NULL && t->proto->connection_lost != NULL)
            t->proto->connection_lost(t, err, t->user);
    }
    transport_release(t);
}

/* ---- Poll events ----------------------------------------------------------------------------- */

static void update_poll(lc_transport_t *t)
{
    if (!t->poll_open || t->lost_scheduled)
        return;
    unsigned ev = 0;
    if (t->reading && !t->eof_seen && !t->closing)
        ev |= UV_READABLE;
    if (t->wlen > 0)
        ev |= UV_WRITABLE;
    if (t->sendfile != NULL && lc__sendfile_wants_write(t->sendfile)) /* sendfile hook */
        ev |= UV_WRITABLE;
    if (t->pipe_hup_watch)
        ev |= UV_READABLE; /* Pipe mode: never readable; EPOLLERR once the reader is gone */
    if (t->tls != NULL)
        ev = tls_poll_events(t, ev);
    if (ev == t->events)
        return;
    t->events = ev;
    int r = ev == 0 ? uv_poll_stop(&t->poll) : uv_poll_start(&t->poll, (int)ev, transport_poll_cb);
    if (r != 0)
        schedule_lost(t, r);
}

/* ---- connection_lost ------------------------------------------------------------------------- */

static void call_connection_lost(void *arg)
{
    lc_transport_t *t = arg;
    deliver_done(t); /* nocopy writes' callbacks come before connection_lost */
    t->lost_delivered = true;
    if (t->proto != NULL && t->proto->connection_lost != NULL)
        t->proto->connection_lost(t, t->lost_err, t->user);
    transport_release(t);
}

static void schedule_lost(lc_transport_t *t, int err)
{
    t->closing = true;
    if (t->lost_scheduled)
        return;
    t->lost_scheduled = true;
    t->lost_err = err;
    t->wlen = 0;
    if (t->sendfile != NULL) /* sendfile hook: its future fails before connection_lost */
        lc__sendfile_lost(t->sendfile, err < 0 ? err : LC_ECLOSED);
    if (t->stls != NULL)
        start_tls_fail(t, err != 0 ? err : LC_ECLOSED); /* lost before the upgrade */
    fail_pending(t, err);
    if (t->poll_open && t->events != 0) {
        uv_poll_stop(&t->poll);
        t->events = 0;
    }
    if (lc_loop_call_soon(t->loop, call_connection_lost, t, NULL) != 0) {
        /* The loop is closed: this transport was closed or aborted while lc_loop_close() runs
         * (from another protocol's connection_lost, a proxy closing its other side), and no
         * later iteration will run the call. Or out of memory. Either way deliver it now, as
         * force_close would have: every connection_made gets its connection_lost. */
        call_connection_lost(t);
    }
}

static bool is_connection_error(int err)
{
    return err == -ECONNRESET || err == -EPIPE || err == -ECONNABORTED || err == -ETIMEDOUT ||
           err == -EHOSTUNREACH || err == -ENETUNREACH;
}

/* A read or write failed: report what is not an ordinary disconnect, then lose the connection. */
static void fatal_error(lc_transport_t *t, int err, const char *what)
{
    if (!is_connection_error(err)) {
        lc_exception_context_t ctx = LC_EXCEPTION_CONTEXT_INIT(what);
        ctx.error = err;
        ctx.transport = t;
        ctx.protocol = t->user;
        ctx.socket = t->fd;
        lc_loop_call_exception_handler(t->loop, &ctx);
    }
    schedule_lost(t, err);
}

/* ---- Reading --------------------------------------------------------------------------------- */

/* Where the next read goes: the protocol's own memory (the buffered form) or the thread's read
 * buffer. Returns NULL after a fatal error (get_buffer gave nothing; reported). Plain and TLS
 * reads alike. */
static char *read_buffer(lc_transport_t *t, size_t *cap)
{
    const lc_protocol_t *p = t->proto;
    if (p == NULL || p->get_buffer == NULL) {
        *cap = sizeof(tls_read_buf);
        return tls_read_buf;
    }
    *cap = 0;
    char *buf = p->get_buffer(t, LC__READ_BUF_SIZE, cap, t->user);
    if (buf == NULL || *cap == 0) {
        fatal_error(t, LC_ENOMEM, "get_buffer() returned an empty buffer");
        return NULL;
    }
    return buf;
}

/* One read() into the protocol. Returns true if it delivered data (false: EOF, an error, which
 * it has reported, or nothing to read). */
static bool do_read(lc_transport_t *t)
{
    const lc_protocol_t *p = t->proto;
    bool buffered = p != NULL && p->get_buffer != NULL;
    size_t cap;
    char *buf = read_buffer(t, &cap);
    if (buf == NULL)
        return false;
    ssize_t n;
    do
        n = read(t->fd, buf, cap);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        if (buffered) {
            if (p->buffer_updated != NULL)
                p->buffer_updated(t, (size_t)n, t->user);
        } else if (p != NULL && p->data_received != NULL) {
            p->data_received(t, buf, (size_t)n, t->user);
        }
        return true;
    }
    if (n < 0 && !(errno == EIO && t->pipe == LC__PIPE_READ)) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            fatal_error(t, -errno, "Fatal read error on socket transport");
        return false;
    }
    /* EOF (Pipe mode: also EIO, which is how a pty's master sees its slave side closed). */
    t->eof_seen = true;
    update_poll(t);
    bool keep_open = false;
    if (p != NULL && p->eof_received != NULL)
        keep_open = p->eof_received(t, t->user);
    if (!keep_open || t->pipe != LC__PIPE_NONE) /* Pipe mode: a read pipe has no half-close */
        lc_transport_close(t);
    return false;
}

/* ---- Send timeout ---------------------------------------------------------------------------- */

static void send_timer_cb(void *arg);

static void send_timer_arm(lc_transport_t *t, double when)
{
    /* Out of memory (or a closed loop): no timer, the transport waits as it would without one. */
    if (lc_loop_call_at(t->loop, when, send_timer_cb, t, &t->send_timer) != 0)
        t->send_timer = NULL;
}

static void send_timer_stop(lc_transport_t *t)
{
    if (t->send_timer != NULL) {
        lc_handle_cancel(t->send_timer);
        lc_handle_unref(t->send_timer);
        t->send_timer = NULL;
    }
}

/* Data was queued on an empty buffer, or the timeout set with data queued: the clock starts. An
 * armed timer is left as it is; if it fires early it re-arms itself for the new deadline. */
static void send_timer_start(lc_transport_t *t)
{
    t->last_progress = lc_loop_time(t->loop);
    if (t->send_timer == NULL && isfinite(t->send_timeout))
        send_timer_arm(t, t->last_progress + t->send_timeout);
}

static void send_timer_cb(void *arg)
{
    lc_transport_t *t = arg;
    lc_handle_unref(t->send_timer);
    t->send_timer = NULL;
    /* Nothing queued now (the next byte queued arms it again), or lost already. */
    if (t->wlen == 0 || t->lost_scheduled || !(t->send_timeout > 0))
        return;
    double deadline = t->last_progress + t->send_timeout;
    if (lc_loop_time(t->loop) < deadline) {
        send_timer_arm(t, deadline); /* the socket took data since it was armed */
        return;
    }
    /* Reset rather than close: the kernel would otherwise keep the unsent bytes of a peer that
     * does not read, and the socket with them, for minutes. */
    struct linger lg = {1, 0};
    setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    schedule_lost(t, LC_ESENDTIMEOUT);
}

int lc_transport_set_send_timeout(lc_transport_t *t, double seconds)
{
    if (t == NULL || !(seconds >= 0)) /* NaN too */
        return LC_EINVAL;
    t->send_timeout = seconds > 0 ? seconds : 0;
    send_timer_stop(t);
    if (t->send_timeout > 0 && t->wlen > 0 && !t->lost_scheduled)
        send_timer_start(t);
    return 0;
}

double lc_transport_get_send_timeout(const lc_transport_t *t)
{
    return t != NULL ? t->send_timeout : 0;
}

/* ---- Writing --------------------------------------------------------------------------------- */

static void maybe_pause_writing(lc_transport_t *t)
{
    if (t->wlen > t->high && !t->write_paused) {
        t->write_paused = true;
        if (t->sendfile != NULL) /* sendfile hook: the protocol is told at the end */
            return;
        if (t->proto != NULL && t->proto->pause_writing != NULL)
            t->proto->pause_writing(t, t->user);
    }
}

static void maybe_resume_writing(lc_transport_t *t)
{
    if (t->write_paused && t->wlen <= t->low) {
        t->write_paused = false;
        if (t->sendfile != NULL) { /* sendfile hook: the fallback waits for this */
            lc__sendfile_resumed(t->sendfile);
            return;
        }
        if (t->proto != NULL && t->proto->resume_writing != NULL)
            t->proto->resume_writing(t, t->user);
    }
}

/* ---- Writing without copies ------------------------------------------------------------------
 *
 * lc_transport_write_nocopy() queues the callers' buffers by reference, in a ring of segments
 * that keeps the order of every queued byte: a nocopy buffer, or a run of bytes of the copy
 * buffer (copies written while a nocopy buffer is pending extend or add such a run). The ring is
 * used only while a nocopy buffer is pending (npend > 0); otherwise the copying path runs as it
 * always did, on wbuf alone, at the cost of one test in wbuf_append() and do_flush().
 *
 * A written (or failed) segment that carries a callback becomes a completion, left at the front
 * of the ring until delivered: by deliver_done() at the end of a flush (in the poll callback),
 * by drain_cb() for writes that complete inside lc_transport_write_nocopy() (a callback never
 * runs inside the write call: the write puts drain_cb on the ready queue, as call_soon, before
 * it sends anything, so running out of memory there is an error returned before any byte went),
 * and, for the failed ones, before connection_lost. The ring is kept from write to write: a
 * write allocates nothing once it has grown to the depth in use. */

static lc__wseg *seg_at(const lc_transport_t *t, size_t i)
{
    return &t->segs[(t->shead + i) & (t->scap - 1)];
}

/* Room for n more segments. Returns 0 or LC_ENOMEM (nothing changed). */
static int seg_reserve(lc_transport_t *t, size_t n)
{
    size_t count = t->ndone + t->npend;
    if (count + n <= t->scap)
        return 0;
    if (n > ((size_t)1 << 28))
        return LC_ENOMEM;
    size_t cap = t->scap ? t->scap : 16;
    while (cap < count + n)
        cap *= 2;
    lc__wseg *ns = malloc(cap * sizeof(*ns));
    if (ns == NULL)
        return LC_ENOMEM;
    for (size_t i = 0; i < count; i++)
        ns[i] = *seg_at(t, i);
    free(t->segs);
    t->segs = ns;
    t->scap = cap;
    t->shead = 0;
    return 0;
}

/* Appends a pending segment (room reserved). */
static void seg_push(lc_transport_t *t, const char *base, size_t len, lc_transport_write_cb cb,
                     void *arg)
{
    *seg_at(t, t->ndone + t->npend) =
        (lc__wseg){.base = base, .len = len, .cb = cb, .arg = arg, .status = 0};
    t->npend++;
}

/* The first pending segment is written: it becomes a completion, or goes if it has none to
 * deliver and is at the front. */
static void seg_written(lc_transport_t *t)
{
    lc__wseg *s = seg_at(t, t->ndone);
    t->npend--;
    if (s->cb == NULL && t->ndone == 0) {
        t->shead = (t->shead + 1) & (t->scap - 1);
        return;
    }
    s->status = 0;
    t->ndone++;
}

/* n bytes of the pending segments were written (n <= wlen). Zero-length segments (a callback
 * after its bytes) complete as soon as everything before them is out. */
static void segs_advance(lc_transport_t *t, size_t n)
{
    t->wlen -= n;
    while (t->npend > 0) {
        lc__wseg *s = seg_at(t, t->ndone);
        size_t k = n < s->len ? n : s->len;
        if (s->base != NULL) {
            s->base += k;
            t->nc_len -= k;
        } else {
            t->whead += k;
        }
        s->len -= k;
        n -= k;
        if (s->len > 0)
            return;
        seg_written(t);
    }
}

/* The connection is lost: every pending segment fails with err (0, a clean close or abort,
 * becomes LC_ECLOSED, since those bytes were not written). */
static void fail_pending(lc_transport_t *t, int err)
{
    if (t->npend == 0)
        return;
    int status = err < 0 ? err : LC_ECLOSED;
    for (size_t i = 0; i < t->npend; i++)
        seg_at(t, t->ndone + i)->status = status;
    t->ndone += t->npend;
    t->npend = 0;
    t->nc_len = 0;
}

/* Calls the completions in order. A callback may write, close or abort: each one is taken off the
 * ring before it runs, and any it adds are delivered by this same loop. */
static void deliver_done(lc_transport_t *t)
{
    /* A send inside lc_transport_write_nocopy() lost the connection and the loop could not queue
     * connection_lost (out of memory), so it runs now: drain_cb, queued by that write, delivers
     * instead, since no callback runs inside the write call. */
    if (t->nocopy_sending)
        return;
    while (t->ndone > 0) {
        lc__wseg s = *seg_at(t, 0);
        t->shead = (t->shead + 1) & (t->scap - 1);
        t->ndone--;
        if (s.cb != NULL)
            s.cb(t, s.status, s.arg);
    }
    if (t->npend == 0 && t->scap > LC__SEGS_KEEP) {
        free(t->segs);
        t->segs = NULL;
        t->scap = 0;
        t->shead = 0;
    }
}

static void drain_cb(void *arg)
{
    lc_transport_t *t = arg;
    t->drain_scheduled = false;
    deliver_done(t);
    lc_transport_unref(t);
}

/* ---- Writing: the copy buffer ---------------------------------------------------------------- */

/* Appends len bytes to the used bytes of wbuf (from whead), growing or compacting it. */
static int wbuf_put(lc_transport_t *t, size_t used, const char *data, size_t len)
{
    if (t->whead + used + len > t->wcap) {
        if (used + len <= t->wcap && t->whead > 0) {
            memmove(t->wbuf, t->wbuf + t->whead, used);
        } else {
            size_t cap = t->wcap ? t->wcap : 4096;
            while (cap < used + len)
                cap *= 2;
            char *nb = malloc(cap);
            if (nb == NULL)
                return LC_ENOMEM;
            if (used > 0)
                memcpy(nb, t->wbuf + t->whead, used);
            free(t->wbuf);
            t->wbuf = nb;
            t->wcap = cap;
        }
        t->whead = 0;
    }
    memcpy(t->wbuf + t->whead + used, data, len);
    return 0;
}

static int wbuf_append(lc_transport_t *t, const char *data, size_t len)
{
    bool was_empty = t->wlen == 0;
    if (t->npend == 0) {
        int r = wbuf_put(t, t->wlen, data, len);
        if (r != 0)
            return r;
    } else {
        /* Behind a pending nocopy buffer: copy into wbuf after its other copied bytes, and
         * extend (or add) the run of copied bytes at the queue's tail. */
        int r = seg_reserve(t, 1);
        if (r == 0)
            r = wbuf_put(t, t->wlen - t->nc_len, data, len);
        if (r != 0)
            return r;
        lc__wseg *tail = seg_at(t, t->ndone + t->npend - 1);
        if (tail->base == NULL)
            tail->len += len;
        else
            seg_push(t, NULL, len, NULL, NULL);
    }
    t->wlen += len;
    if (was_empty && t->send_timeout > 0)
        send_timer_start(t);
    return 0;
}

static void finish_drained(lc_transport_t *t)
{
    t->whead = 0;
    if (t->wcap > LC__WBUF_KEEP) {
        free(t->wbuf);
        t->wbuf = NULL;
        t->wcap = 0;
    }
    if (t->want_eof && !t->eof_sent && t->pipe != LC__PIPE_NONE) {
        t->eof_sent = true;
        schedule_lost(t, 0); /* Pipe mode: write_eof closes the pipe (asyncio's write pipe) */
        return;
    }
    if (t->want_eof && !t->eof_sent) {
        t->eof_sent = true;
        if (shutdown(t->fd, SHUT_WR) != 0 && errno != ENOTCONN) {
            fatal_error(t, -errno, "shutdown(SHUT_WR) failed");
            return;
        }
    }
    if (t->closing) {
        if (t->tls != NULL)
            tls_shutdown_step(t); /* close_notify, then the peer's */
        else if (t->stls != NULL)
            start_tls_drained(t); /* the plaintext is out: now the handshake */
        else
            schedule_lost(t, 0);
    }
}

/* Pipe mode: writev() on a pipe raises SIGPIPE (directed at this thread) once the reader is
 * gone, and a pipe has no MSG_NOSIGNAL. So SIGPIPE is blocked in this thread around the write
 * and, when the write fails with EPIPE, the one it raised is taken off the thread's pending set
 * (sigtimedwait with a zero timeout), so that the process's disposition never sees it. */
static ssize_t pipe_writev(int fd, const struct iovec *iov, size_t n)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t r = writev(fd, iov, (int)n);
    int e = errno;
    if (r < 0 && e == EPIPE && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return r;
}

/* One send of n buffers (n <= IOV_MAX): send() / sendmsg() with MSG_NOSIGNAL on a socket,
 * writev() on a pipe. */
static ssize_t out_writev(lc_transport_t *t, const struct iovec *iov, size_t n)
{
    if (t->pipe != LC__PIPE_NONE)
        return pipe_writev(t->fd, iov, n);
    if (n == 1)
        return send(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = n};
    return sendmsg(t->fd, &msg, MSG_NOSIGNAL);
}

/* do_flush() while a nocopy buffer is pending: sendmsg() from the segments, LC__FLUSH_IOV at a
 * time, the copied runs read from wbuf in order; then the completions are delivered (before
 * resume_writing, so that memory they free is there to be written again). */
static void flush_segs(lc_transport_t *t)
{
    size_t before = t->wlen;
    while (t->npend > 0) {
        struct iovec iov[LC__FLUSH_IOV];
        size_t n = 0;
        size_t off = t->whead;
        for (size_t i = 0; i < t->npend && n < LC__FLUSH_IOV; i++) {
            const lc__wseg *s = seg_at(t, t->ndone + i);
            if (s->len == 0)
                continue;
            if (s->base != NULL) {
                iov[n].iov_base = (void *)s->base;
            } else {
                iov[n].iov_base = t->wbuf + off;
                off += s->len;
            }
            iov[n++].iov_len = s->len;
        }
        if (n == 0) { /* only callbacks left (wlen is 0): not reached while wlen > 0 */
            segs_advance(t, 0);
            break;
        }
        ssize_t r = out_writev(t, iov, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            fatal_error(t, -errno, "Fatal write error on socket transport");
            return; /* the pending ones failed; call_connection_lost delivers them */
        }
        segs_advance(t, (size_t)r);
    }
    flush_done(t, before);
}

/* The end of a flush, plain or TLS: before is the queue's size when it began. Stamps the send
 * timeout's progress, finishes a drained queue (write_eof, a pending close), polls for what is
 * left, completes the nocopy writes that went out and resumes the writer under low. */
static void flush_done(lc_transport_t *t, size_t before)
{
    if (t->send_timeout > 0 && t->wlen < before)
        t->last_progress = lc_loop_time(t->loop); /* once per flush, not per send() */
    if (t->wlen == 0)
        finish_drained(t);
    if (!t->lost_scheduled)
        update_poll(t);
    deliver_done(t);
    if (!t->lost_scheduled)
        maybe_resume_writing(t);
}

static void do_flush(lc_transport_t *t)
{
    if (t->tls != NULL) {
        tls_flush(t);
        return;
    }
    if (t->npend > 0) {
        flush_segs(t);
        return;
    }
    size_t before = t->wlen;
    while (t->wlen > 0) {
        struct iovec iov = {.iov_base = t->wbuf + t->whead, .iov_len = t->wlen};
        ssize_t n = out_writev(t, &iov, 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            fatal_error(t, -errno, "Fatal write error on socket transport");
            return;
        }
        t->whead += (size_t)n;
        t->wlen -= (size_t)n;
    }
    if (t->send_timeout > 0 && t->wlen < before)
        t->last_progress = lc_loop_time(t->loop); /* once per flush, not per send() */
    if (t->wlen == 0)
        finish_drained(t);
    if (!t->lost_scheduled) {
        update_poll(t);
        maybe_resume_writing(t);
    }
}

static int check_writable(const lc_transport_t *t)
{
    if (t->pipe == LC__PIPE_READ)
        return LC_ENOTSUP; /* Pipe mode: a read pipe has no write side */
    if (t->closing)
        return LC_ECLOSED;
    if (t->sendfile != NULL && !t->sendfile_writing) /* sendfile hook */
        return LC_EBUSY;
    if (t->want_eof)
        return LC_EPIPE;
    return 0;
}

/* Sends what the socket takes of iov[0..n) now (one send() or sendmsg(), MSG_NOSIGNAL): *done is
 * the bytes sent (0 if the socket is full). Returns false after a fatal error, which was reported
 * through connection_lost as asyncio does (the caller's write then returns 0). */
static bool send_now(lc_transport_t *t, const struct iovec *iov, size_t n, size_t *done)
{
    ssize_t r;
    do
        r = out_writev(t, iov, n < IOV_MAX ? n : IOV_MAX);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            fatal_error(t, -errno, "Fatal write error on socket transport");
            return false;
        }
        r = 0;
    }
    *done = (size_t)r;
    return true;
}

int lc_transport_write(lc_transport_t *t, const void *data, size_t len)
{
    if (t == NULL || (data == NULL && len > 0))
        return LC_EINVAL;
    int r = check_writable(t);
    if (r != 0 || len == 0)
        return r;
    if (t->tls != NULL)
        return tls_write(t, data, len);
    size_t done = 0;
    if (t->wlen == 0) {
        /* Try the socket first; queue only the rest. */
        struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
        if (!send_now(t, &iov, 1, &done) || done == len)
            return 0;
    }
    r = wbuf_append(t, (const char *)data + done, len - done);
    if (r != 0)
        return r;
    update_poll(t);
    maybe_pause_writing(t);
    return 0;
}

int lc_transport_writelines(lc_transport_t *t, const struct iovec *bufs, size_t nbufs)
{
    if (t == NULL || (bufs == NULL && nbufs > 0))
        return LC_EINVAL;
    int r = check_writable(t);
    if (r != 0)
        return r;
    size_t total = 0;
    for (size_t i = 0; i < nbufs; i++) {
        if (bufs[i].iov_base == NULL && bufs[i].iov_len > 0)
            return LC_EINVAL;
        total += bufs[i].iov_len;
    }
    if (total == 0)
        return 0;
    if (t->tls != NULL)
        return nbufs == 1 ? tls_write(t, bufs[0].iov_base, total) : tls_writelines(t, bufs, nbufs);
    size_t done = 0;
    if (t->wlen == 0 && (!send_now(t, bufs, nbufs, &done) || done == total))
        return 0;
    for (size_t i = 0; i < nbufs; i++) {
        size_t l = bufs[i].iov_len;
        if (done >= l) {
            done -= l;
            continue;
        }
        r = wbuf_append(t, (const char *)bufs[i].iov_base + done, l - done);
        if (r != 0)
            return r;
        done = 0;
    }
    update_poll(t);
    maybe_pause_writing(t);
    return 0;
}

int lc_transport_write_nocopy(lc_transport_t *t, const struct iovec *bufs, size_t nbufs,
                              lc_transport_write_cb cb, void *arg)
{
    if (t == NULL || (bufs == NULL && nbufs > 0))
        return LC_EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < nbufs; i++) {
        if (bufs[i].iov_base == NULL && bufs[i].iov_len > 0)
            return LC_EINVAL;
        total += bufs[i].iov_len;
    }
    int r = check_writable(t);
    if (r != 0)
        return r;
    /* Room for a run of copied bytes ahead, every buffer, and a callback of its own. */
    r = seg_reserve(t, nbufs + 2);
    if (r != 0)
        return r;
    bool was_empty = t->wlen == 0;
    if (was_empty && cb != NULL && !t->drain_scheduled) {
        /* It may complete at once: its callback then runs from the ready queue. */
        r = lc_loop_call_soon(t->loop, drain_cb, t, NULL);
        if (r != 0)
            return r;
        t->drain_scheduled = true;
        t->refs++;
    }
    if (!was_empty && t->npend == 0)
        seg_push(t, NULL, t->wlen, NULL, NULL); /* the copied bytes queued so far go first */
    size_t pushed = 0;
    for (size_t i = 0; i < nbufs; i++) {
        if (bufs[i].iov_len > 0) {
            seg_push(t, bufs[i].iov_base, bufs[i].iov_len, NULL, NULL);
            pushed++;
        }
    }
    if (cb != NULL) {
        if (pushed > 0) {
            lc__wseg *last = seg_at(t, t->ndone + t->npend - 1);
            last->cb = cb;
            last->arg = arg;
        } else {
            seg_push(t, "", 0, cb, arg); /* no bytes: completes when those before it are out */
        }
    }
    t->wlen += total;
    t->nc_len += total;
    if (was_empty) {
        /* Nothing was queued: try the socket now, from the caller's buffers. A fatal error fails
         * the segments just queued (their callback comes before connection_lost). */
        size_t done = 0;
        t->nocopy_sending = true;
        bool ok;
        if (t->tls != NULL) { /* from the segments just queued, which are the whole queue */
            ok = !tls_is_open(t) || tls_send_queue(t);
        } else {
            ok = total == 0 || send_now(t, bufs, nbufs, &done);
            if (ok)
                segs_advance(t, done);
        }
        t->nocopy_sending = false;
        if (!ok)
            return 0;
        if (t->wlen == 0)
            return 0;
        if (t->send_timeout > 0)
            send_timer_start(t);
    }
    update_poll(t);
    maybe_pause_writing(t);
    return 0;
}

int lc_transport_write_eof(lc_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    if (t->closing)
        return LC_ECLOSED;
    if (t->tls != NULL || t->pipe == LC__PIPE_READ)
        return LC_ENOTSUP; /* no half-close over TLS (asyncio: NotImplementedError) */
    /* sendfile hook: a shutdown now would cut the file short. */
    if (t->sendfile != NULL)
        return LC_EBUSY;
    if (t->want_eof)
        return 0;
    t->want_eof = true;
    if (t->wlen == 0)
        finish_drained(t);
    return 0;
}

bool lc_transport_can_write_eof(const lc_transport_t *t)
{
    return t != NULL && t->tls == NULL && t->pipe != LC__PIPE_READ;
}

/* ---- Closing --------------------------------------------------------------------------------- */

int lc_transport_close(lc_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    if (t->closing)
        return 0;
    t->closing = true;
    if (t->sendfile != NULL) /* sendfile hook: its future fails now, not when the flush ends */
        lc__sendfile_lost(t->sendfile, LC_ECLOSED);
    if (t->tls != NULL)
        tls_close(t); /* flush, close_notify, the peer's, within ssl_shutdown_timeout */
    else if (t->wlen == 0)
        schedule_lost(t, 0);
    else
        update_poll(t); /* stop reading; keep flushing */
    return 0;
}

int lc_transport_abort(lc_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    schedule_lost(t, 0);
    return 0;
}

bool lc_transport_is_closing(const lc_transport_t *t) { return t == NULL || t->closing; }

/* ---- The poll callback ----------------------------------------------------------------------- */

static void transport_poll_cb(uv_poll_t *p, int status, int events)
{
    if (!lc__io_enter((uv_handle_t *)p))
        return;
    lc_transport_t *t = p->data;
    events &= (int)t->events; /* what the iteration's batch may have stopped watching */
    if (t->tls != NULL) {
        tls_poll_cb(t, status, events);
        return;
    }
    if (status < 0) {
        /* EPOLLERR: libuv stopped the handle to report it. Data that arrived before the error
         * (say a reply, then the peer's RST) is still readable: deliver it first, as asyncio
         * does (it reads, then meets the error on the next read). If the protocol pauses
         * reading meanwhile, the rest and the error wait for resume_reading (which polls again
         * and lands here again). */
        t->events = 0;
        if (t->reading && !t->closing && !t->eof_seen) {
            while (!t->closing && t->reading && do_read(t)) {
            }
            if (t->closing)
                return; /* the read met the error (or the EOF closed it) */
            if (!t->reading) {
                update_poll(t);
                return;
            }
        }
        int err = 0;
        socklen_t len = sizeof(err);
        if (t->pipe == LC__PIPE_WRITE)
            /* Pipe mode: EPOLLERR on a write pipe: the reader is gone. An error only if it
             * leaves data unwritten (asyncio's _UnixWritePipeTransport._read_ready). */
            status = t->wlen > 0 ? LC_EPIPE : 0;
        else if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
            status = -err;
        if (status == 0)
            schedule_lost(t, 0); /* Pipe mode: an idle write pipe's reader went */
        else
            fatal_error(t, status, "Fatal error on socket transport");
        return;
    }
    if ((events & UV_READABLE) && !t->closing && t->pipe != LC__PIPE_WRITE)
        do_read(t);
    if ((events & UV_WRITABLE) && !t->lost_scheduled && t->wlen > 0)
        do_flush(t);
    /* sendfile hook: the native path sends once the buffer is empty (maybe by the flush above). */
    if ((events & UV_WRITABLE) && t->sendfile != NULL && !t->lost_scheduled && t->wlen == 0)
        lc__sendfile_writable(t->sendfile);
}

/* ---- Accessors ------------------------------------------------------------------------------- */

int lc__fd_name(int fd, bool peer, struct sockaddr *addr, socklen_t *len)
{
    if (addr == NULL || len == NULL)
        return LC_EINVAL;
    if (fd < 0)
        return LC_ECLOSED;
    return (peer ? getpeername(fd, addr, len) : getsockname(fd, addr, len)) == 0 ? 0 : -errno;
}

int lc_transport_get_peername(const lc_transport_t *t, struct sockaddr *addr, socklen_t *len)
{
    return t != NULL ? lc__fd_name(t->fd, true, addr, len) : LC_EINVAL;
}

int lc_transport_get_sockname(const lc_transport_t *t, struct sockaddr *addr, socklen_t *len)
{
    return t != NULL ? lc__fd_name(t->fd, false, addr, len) : LC_EINVAL;
}

int lc_transport_get_fd(const lc_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    return t->fd >= 0 ? t->fd : LC_ECLOSED;
}

int lc_transport_pause_reading(lc_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    if (t->pipe == LC__PIPE_WRITE)
        return LC_ENOTSUP; /* Pipe mode: a write pipe reads nothing */
    if (t->closing)
        return LC_ECLOSED;
    if (t->sendfile != NULL) { /* sendfile hook: applied when it ends */
        lc__sendfile_want_reading(t->sendfile, false);
        return 0;
    }
    t->reading = false;
    update_poll(t);
    return 0;
}

int lc_transport_resume_reading(lc_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    if (t->pipe == LC__PIPE_WRITE)
        return LC_ENOTSUP;
    if (t->closing)
        return LC_ECLOSED;
    if (t->sendfile != NULL) { /* sendfile hook: applied when it ends */
        lc__sendfile_want_reading(t->sendfile, true);
        return 0;
    }
    t->reading = true;
    update_poll(t);
    if (t->tls != NULL)
        tls_kick_if_pending(t); /* records OpenSSL holds: no socket event will say so */
    return 0;
}

bool lc_transport_is_reading(const lc_transport_t *t)
{
    return t != NULL && t->reading && !t->closing && !t->eof_seen;
}

int lc__write_limits(long high, long low, size_t default_high, size_t *out_high, size_t *out_low)
{
    /* -1 derives the other mark as asyncio does; any other negative value is an error. */
    if (high < -1 || low < -1)
        return LC_EINVAL;
    if (high == -1 && low == -1) {
        high = (long)default_high;
        low = high / 4;
    } else if (high == -1) {
        high = low > LONG_MAX / 4 ? LONG_MAX : 4 * low; /* saturates */
    } else if (low == -1) {
        low = high / 4;
    }
    if (high < low)
        return LC_EINVAL;
    *out_high = (size_t)high;
    *out_low = (size_t)low;
    return 0;
}

int lc_transport_set_write_buffer_limits(lc_transport_t *t, long high, long low)
{
    if (t == NULL)
        return LC_EINVAL;
    int r = lc__write_limits(high, low, LC__DEFAULT_HIGH, &t->high, &t->low);
    if (r != 0)
        return r;
    maybe_pause_writing(t);
    maybe_resume_writing(t);
    return 0;
}

int lc_transport_get_write_buffer_limits(const lc_transport_t *t, size_t *low, size_t *high)
{
    if (t == NULL || low == NULL || high == NULL)
        return LC_EINVAL;
    *low = t->low;
    *high = t->high;
    return 0;
}

size_t lc_transport_get_write_buffer_size(const lc_transport_t *t)
{
    return t != NULL ? t->wlen : 0;
}

int lc_transport_set_protocol(lc_transport_t *t, const lc_protocol_t *proto, void *user)
{
    if (t == NULL || proto == NULL)
        return LC_EINVAL;
    t->proto = proto;
    t->user = user;
    return 0;
}

const lc_protocol_t *lc_transport_get_protocol(const lc_transport_t *t, void **user)
{
    if (user != NULL)
        *user = t != NULL ? t->user : NULL;
    return t != NULL ? t->proto : NULL;
}

lc_loop_t *lc_transport_get_loop(const lc_transport_t *t) { return t != NULL ? t->loop : NULL; }

/* ---- Creation -------------------------------------------------------------------------------- */

/* Watches fd with t's poll handle and sets the fields every new transport starts with (t is
 * zeroed, or holds only its TLS state). Returns 0 or uv_poll_init's error (nothing changed). */
static int transport_open(lc_transport_t *t, lc_loop_t *loop, int fd, lc_server_t *server)
{
    int r = lc__fdmap_transport(loop, fd, true); /* add_reader and sock_* refuse it now */
    if (r == 0 && (r = uv_poll_init(lc__loop_uv(loop), &t->poll, fd)) != 0)
        lc__fdmap_transport(loop, fd, false);
    if (r != 0)
        return r;
    t->poll.data = t;
    t->poll_open = true;
    t->loop = loop;
    t->server = server;
    t->fd = fd;
    t->refs = 1;
    t->reading = true;
    t->high = LC__DEFAULT_HIGH;
    t->low = LC__DEFAULT_HIGH / 4;
    t->res.force_close = transport_force_close;
    lc__loop_add_resource(loop, &t->res);
    return 0;
}

static lc_transport_t *transport_new(lc_loop_t *loop, int fd, lc_protocol_factory_fn factory,
                                     void *factory_arg, lc_server_t *server, uint8_t pipe, int *err)
{
    const lc_protocol_t *proto = NULL;
    void *user = NULL;
    lc_transport_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        *err = LC_ENOMEM;
        close(fd);
        return NULL;
    }
    int r = factory != NULL ? factory(factory_arg, &proto, &user) : LC_EINVAL;
    if (r == 0 && proto == NULL)
        r = LC_EINVAL;
    if (r == 0)
        r = transport_open(t, loop, fd, server);
    if (r != 0) {
        free(t);
        close(fd);
        *err = r;
        return NULL;
    }
    t->proto = proto;
    t->user = user;
    if (pipe != LC__PIPE_NONE) { /* Pipe mode */
        struct stat st;
        t->pipe = pipe;
        t->reading = pipe == LC__PIPE_READ;
        /* A FIFO's write end is never readable: EPOLLERR says its reader went. A socket's
         * would be readable with data, so it, like a character device, learns it at a write. */
        t->pipe_hup_watch = pipe == LC__PIPE_WRITE && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
    }
    if (proto->connection_made != NULL)
        proto->connection_made(t, user);
    /* connection_made may pause reading (honoured: asyncio 3.12's behaviour) or close. */
    update_poll(t);
    *err = 0;
    return t;
}

lc_transport_t *lc__transport_new(lc_loop_t *loop, int fd, lc_protocol_factory_fn factory,
                                  void *factory_arg, lc_server_t *server, int *err)
{
    return transport_new(loop, fd, factory, factory_arg, server, LC__PIPE_NONE, err);
}

/* Pipe mode: a read or write pipe transport (engine/pipe.c, engine/subprocess.c). */
lc_transport_t *lc__transport_new_pipe(lc_loop_t *loop, int fd, lc_protocol_factory_fn factory,
                                       void *factory_arg, bool write, int *err)
{
    return transport_new(loop, fd, factory, factory_arg, NULL,
                         write ? LC__PIPE_WRITE : LC__PIPE_READ, err);
}

/* ---- connect_accepted_socket ----------------------------------------------------------------- */

int lc_loop_connect_accepted_socket(lc_loop_t *loop, lc_protocol_factory_fn factory,
                                    void *factory_arg, int fd,
                                    const lc_accepted_socket_opts_t *opts, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    lc_accepted_socket_opts_t o = {0};
    if (opts != NULL)
        o = *opts;
    /* The server side of TLS (asyncio's connect_accepted_socket with ssl). */
    lc__tls_config tls;
    int r = lc__tls_config_init(&tls, o.ssl, NULL, o.ssl_handshake_timeout, o.ssl_shutdown_timeout,
                                true);
    if (r != 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    r = lc__connect_fd(loop, factory, factory_arg, fd, &tls, fut);
    lc__tls_config_clear(&tls); /* the transport's SSL holds what it needs */
    return r;
}

int lc__connect_fd(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg, int fd,
                   const lc__tls_config *tls, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || factory == NULL || fut == NULL || fd < 0) {
        if (fd >= 0)
            close(fd);
        return LC_EINVAL;
    }
    int r = lc_loop_create_future(loop, fut);
    if (r == 0)
        r = lc__set_nonblocking(fd);
    if (r != 0) {
        lc_future_unref(*fut);
        *fut = NULL;
        close(fd);
        return r;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails harmlessly on AF_UNIX */
    if (tls != NULL && tls->ctx != NULL) {
        /* The transport resolves *fut when its handshake ends. */
        if (lc__transport_new_tls(loop, fd, factory, factory_arg, NULL, tls, *fut, &r) == NULL)
            lc_future_set_error(*fut, r);
        return 0;
    }
    lc_transport_t *t = lc__transport_new(loop, fd, factory, factory_arg, NULL, &r);
    if (t == NULL)
        lc_future_set_error(*fut, r);
    else
        lc_future_set_result(*fut, t);
    return 0;
}

/* ---- sendfile hooks (engine/sendfile.c; see stream_internal.h) ------------------------------ */

int lc__transport_sendfile_begin(lc_transport_t *t, lc__sendfile *sf)
{
    if (t->closing)
        return LC_ECLOSED;
    if (t->sendfile != NULL)
        return LC_EBUSY;
    t->sendfile = sf;
    update_poll(t);
    return 0;
}

void lc__transport_sendfile_end(lc_transport_t *t)
{
    if (t->sendfile == NULL)
        return;
    t->sendfile = NULL;
    update_poll(t);
}

int lc__transport_sendfile_write(lc_transport_t *t, const void *data, size_t len)
{
    t->sendfile_writing = true;
    int r = lc_transport_write(t, data, len);
    t->sendfile_writing = false;
    return r;
}

bool lc__transport_write_paused(const lc_transport_t *t) { return t->write_paused; }

void lc__transport_sendfile_lose(lc_transport_t *t, int err)
{
    if (err == LC_ESENDTIMEOUT)
        schedule_lost(t, err);
    else
        fatal_error(t, err, "Fatal write error on socket transport (sendfile)");
}

/* ---- TLS ------------------------------------------------------------------------------------- */

#include "engine/transport_tls.c.h"
