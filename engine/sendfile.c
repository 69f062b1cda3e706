/* sendfile: lc_loop_sendfile (a file over a stream transport) and lc_loop_sock_sendfile (over a
 * raw non-blocking socket); see include/loopcore/sendfile.h for what they promise.
 *
 * This file owns one operation's state (lc__sendfile), its two paths and its lifetime:
 *  - native: sendfile(2) from the file straight to the socket, non-blocking, as much as the
 *    socket takes per writable event (at most LC__SF_BUDGET, so that one fast connection does
 *    not starve the loop), then wait for POLLOUT: the transport's poll handle (through the hooks
 *    in engine/transport.c) or, for sock_sendfile, the socket's fd watcher (engine/fdwatch.c: the
 *    write queue that sock_sendall uses too, so the two are served in order);
 *  - fallback: pread 256 KiB, write it (lc_transport_write with the transport's flow control; or
 *    send() on a raw socket, the rest kept until POLLOUT), until count or the end of the file.
 * The first sendfile(2) is tried inside the call, as asyncio does (unless the transport still
 * has bytes queued, or runs TLS: then the first step comes from call_soon); the next steps run
 * from POLLOUT, from the transport's resume (through call_soon, out of the transport's flush), or
 * from call_soon after a chunk that did not pause the writer. A step never calls the protocol,
 * except to give back the flow-control state when the operation ends; the future's callbacks
 * always come from the loop.
 *
 * Lifetime. The state lives while any of these holds: the operation is active (until it ends:
 * done, failed, cancelled, or its transport closed), its done callback on the future is
 * registered and may still run (the future was cancelled by someone else). It is a loop resource
 * too: lc_loop_close() ends it (LC_ECLOSED) and frees it, the queued done callback being discarded
 * by then. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/fdmap.h"
#include "engine/stream_internal.h"
#include "loopcore/sendfile.h"

/* asyncio's SENDFILE_FALLBACK_READBUFFER_SIZE. */
#define LC__SF_CHUNK (256 * 1024)
/* Bytes one writable event may send before the loop gets its turn again. */
#define LC__SF_BUDGET (16u * 1024 * 1024)
/* sendfile(2) sends at most this much per call (Linux's MAX_RW_COUNT). */
#define LC__SF_MAX_CALL ((size_t)0x7ffff000)

struct lc__sendfile_s {
    lc__resource res;
    lc_loop_t *loop;
    lc_future_t *fut;  /* one reference, until the end */
    lc_transport_t *t; /* lc_loop_sendfile: one reference, until the end; NULL for a socket */
    int sock;          /* the socket written to */
    int file_fd;
    off_t offset;  /* where the file starts */
    size_t count;  /* 0: to the end */
    size_t sent;   /* bytes the socket took */
    off_t fsize;   /* the file's size when the call began */
    bool fallback; /* the read + write path */
    bool allow_fallback;
    /* Lifetime (see the top comment). */
    bool active, cb_registered;
    /* The transport's state to give back at the end. */
    bool want_reading;     /* resume reading at the end */
    bool was_write_paused; /* the protocol had pause_writing when it began */
    /* A step queued with call_soon, the send timeout's timer (native path on a transport). */
    lc_handle_t *step;
    lc_handle_t *timer;
    double send_timeout, last_progress;
    /* sock_sendfile: its place in the socket's write queue while it waits (op.w != NULL). */
    lc__sockop op;
    /* Fallback: the chunk read (buf_len bytes), of which buf_off are sent (sock_sendfile). */
    char *buf;
    size_t buf_len, buf_off;
    bool file_err; /* the error is the file's (a read), not the connection's */
    /* > 0 while a function that reads sf after a call that may end it runs: sf stays. */
    int busy;
    /* The step tried inside lc_loop_sendfile / sock_sendfile: an error met there is reported
     * from the next step (deferred_err), so that the caller can add its done callbacks first and
     * they still run before a lost transport's connection_lost. */
    bool in_call;
    int deferred_err;
};

static void sf_step(lc__sendfile *sf);

static void sf_maybe_free(lc__sendfile *sf)
{
    if (sf->active || sf->cb_registered || sf->busy > 0)
        return;
    lc__loop_remove_resource(sf->loop, &sf->res);
    free(sf->buf);
    free(sf);
}

static void sf_cancel_handle(lc_handle_t **h)
{
    if (*h != NULL) {
        lc_handle_cancel(*h);
        lc_handle_unref(*h);
        *h = NULL;
    }
}

/* Ends the operation: gives the transport its state back, sets the file's offset as asyncio
 * does, and completes the future (err 0: with the bytes sent) unless it is done already (a
 * cancellation). Idempotent. */
static void sf_end(lc__sendfile *sf, int err)
{
    if (!sf->active)
        return;
    sf->active = false;
    lc__fdwatch_unqueue(&sf->op);
    sf_cancel_handle(&sf->step);
    sf_cancel_handle(&sf->timer);
    if (sf->sent > 0)
        lseek(sf->file_fd, sf->offset + (off_t)sf->sent, SEEK_SET);
    lc_future_t *fut = sf->fut;
    lc_transport_t *t = sf->t;
    if (t != NULL) {
        lc__transport_sendfile_end(t);
        /* Not while lc_loop_close() tears things down: connection_lost comes next. */
        if (!lc_transport_is_closing(t) && !lc_loop_is_closed(sf->loop)) {
            /* The protocol learns the net change of the flow control it did not see. */
            bool paused = lc__transport_write_paused(t);
            void *user = NULL;
            const lc_protocol_t *p = lc_transport_get_protocol(t, &user);
            if (sf->want_reading)
                lc_transport_resume_reading(t);
            if (sf->was_write_paused && !paused && p != NULL && p->resume_writing != NULL)
                p->resume_writing(t, user);
            else if (!sf->was_write_paused && paused && p != NULL && p->pause_writing != NULL)
                p->pause_writing(t, user);
        }
    }
    sf->fut = NULL;
    sf->t = NULL;
    if (!lc_future_done(fut)) {
        if (err == 0)
            lc_future_set_result(fut, (void *)(uintptr_t)sf->sent);
        else
            lc_future_set_error(fut, err);
    }
    lc_future_unref(fut);
    lc_transport_unref(t);
    sf_maybe_free(sf);
}

/* The future's done callback: registered so that a cancellation (or any completion by someone
 * else) stops the transfer. Removed before the operation completes the future itself. */
static void sf_fut_done(lc_future_t *fut, void *arg)
{
    (void)fut;
    lc__sendfile *sf = arg;
    sf->cb_registered = false;
    if (sf->active)
        sf_end(sf, LC_ECANCELLED); /* nothing to set: the future is done; frees sf if it can */
    else
        sf_maybe_free(sf);
}

static void sf_finish(lc__sendfile *sf, int err)
{
    if (!sf->active)
        return;
    if (sf->cb_registered && sf->fut != NULL &&
        lc_future_remove_done_callback(sf->fut, sf_fut_done, sf) > 0)
        sf->cb_registered = false;
    sf_end(sf, err);
}

/* A failure of the socket: on a transport the connection is lost (its hook ends the operation
 * with err, before connection_lost); on a raw socket the future fails. */
static void sf_fail(lc__sendfile *sf, int err)
{
    if (sf->t != NULL && !sf->file_err && err != LC_ESENDFILENOTAVAILABLE && err != LC_ENOMEM) {
        lc_transport_t *t = sf->t;
        sf->busy++;
        lc__transport_sendfile_lose(t, err); /* its hook ends sf */
        if (sf->active)                      /* already closing: the hook did not run */
            sf_finish(sf, err);
        sf->busy--;
        sf_maybe_free(sf);
        return;
    }
    sf_finish(sf, err);
}

static void sf_force_close(lc__resource *r)
{
    lc__sendfile *sf = lc_container_of(r, lc__sendfile, res);
    /* The loop discarded its queued callbacks, ours included: the done callback will not run. */
    sf->cb_registered = false;
    lc__loop_remove_resource(sf->loop, &sf->res);
    if (sf->active)
        sf_end(sf, LC_ECLOSED); /* frees sf */
    else
        sf_maybe_free(sf);
}

/* ---- Waiting --------------------------------------------------------------------------------- */

static void sf_timer_cb(void *arg);

static void sf_arm_timer(lc__sendfile *sf)
{
    if (sf->t != NULL)
        sf->send_timeout = lc_transport_get_send_timeout(sf->t); /* set meanwhile, maybe */
    if (sf->t == NULL || !(sf->send_timeout > 0) || sf->timer != NULL)
        return;
    if (lc_loop_call_at(sf->loop, sf->last_progress + sf->send_timeout, sf_timer_cb, sf,
                        &sf->timer) != 0)
        sf->timer = NULL; /* out of memory: it waits as it would without a timeout */
}

static void sf_timer_cb(void *arg)
{
    lc__sendfile *sf = arg;
    lc_handle_unref(sf->timer);
    sf->timer = NULL;
    if (!sf->active || sf->fallback || sf->t == NULL)
        return;
    sf->send_timeout = lc_transport_get_send_timeout(sf->t);
    if (!(sf->send_timeout > 0))
        return; /* turned off meanwhile */
    double deadline = sf->last_progress + sf->send_timeout;
    if (lc_loop_time(sf->loop) < deadline) {
        sf_arm_timer(sf);
        return;
    }
    /* As the transport's own send timeout: reset, so that the kernel drops what it holds. */
    struct linger lg = {1, 0};
    setsockopt(sf->sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    sf_fail(sf, LC_ESENDTIMEOUT);
}

/* sock_sendfile's turn in the socket's write queue (the fd is writable, or has an error, which
 * sendfile(2) or send() then returns). Returns false while it still waits. */
static bool sf_op_attempt(lc__sockop *op)
{
    lc__sendfile *sf = lc_container_of(op, lc__sendfile, op);
    sf->busy++;
    if (sf->active)
        sf_step(sf);
    bool waiting = sf->op.w != NULL;
    sf->busy--;
    sf_maybe_free(sf); /* ended: op goes with sf, and the queue does not look at it again */
    return !waiting;
}

/* The socket's watcher is dropped (the loop closes, the fd was closed and its number reused, a
 * transport took the number). */
static void sf_op_fail(lc__sockop *op, int err)
{
    lc__sendfile *sf = lc_container_of(op, lc__sendfile, op);
    lc__fdwatch_unqueue(op);
    sf->busy++;
    sf_fail(sf, err);
    sf->busy--;
    sf_maybe_free(sf);
}

/* Waits for POLLOUT: the transport watches it for us (lc__sendfile_wants_write); a raw socket's
 * wait is a call in its fd watcher's write queue. */
static void sf_wait_writable(lc__sendfile *sf)
{
    if (sf->t != NULL) {
        sf_arm_timer(sf);
        return;
    }
    if (sf->op.w != NULL)
        return;
    sf->op.fut = sf->fut;
    sf->op.write = true;
    sf->op.attempt = sf_op_attempt;
    sf->op.fail = sf_op_fail;
    int r = lc__fdwatch_queue(sf->loop, sf->sock, &sf->op);
    if (r != 0)
        sf_fail(sf, r);
}

static void sf_step_cb(void *arg)
{
    lc__sendfile *sf = arg;
    lc_handle_unref(sf->step);
    sf->step = NULL;
    if (sf->active)
        sf_step(sf);
}

/* The next step from the ready queue (not from inside the caller). */
static void sf_schedule(lc__sendfile *sf)
{
    if (sf->step != NULL)
        return;
    int r = lc_loop_call_soon(sf->loop, sf_step_cb, sf, &sf->step);
    if (r != 0) {
        sf->step = NULL;
        sf_finish(sf, r);
    }
}

/* ---- The native path ------------------------------------------------------------------------- */

/* Bytes still to send (count 0: to the end, as much as one call may). */
static size_t sf_want(const lc__sendfile *sf, size_t limit)
{
    size_t want = limit;
    if (sf->count > 0 && sf->count - sf->sent < want)
        want = sf->count - sf->sent;
    return want;
}

/* sendfile(2) until the socket is full, the budget is spent, or the end. Returns 1 (done), 0
 * (wait for POLLOUT), or an error. */
static int native_send(lc__sendfile *sf)
{
    size_t budget = LC__SF_BUDGET;
    for (;;) {
        size_t want = sf_want(sf, budget < LC__SF_MAX_CALL ? budget : LC__SF_MAX_CALL);
        if (want == 0)
            return sf->count > 0 && sf->sent == sf->count ? 1 : 0;
        off_t off = sf->offset + (off_t)sf->sent;
        ssize_t n = sendfile(sf->sock, sf->file_fd, &off, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            /* asyncio: an error before any byte went means "no sendfile for this file". Only
             * the errors that say so here: a connection error is the connection's. */
            if (sf->sent == 0 && (errno == EINVAL || errno == ENOSYS || errno == EOVERFLOW))
                return LC_ESENDFILENOTAVAILABLE;
            return -errno;
        }
        if (n == 0)
            return 1; /* the end of the file */
        sf->sent += (size_t)n;
        budget -= (size_t)n;
        if (sf->t != NULL)
            sf->last_progress = lc_loop_time(sf->loop);
        /* Less than asked, and not the file's end (its size when the call began; one more call
         * finds out if it shrank or grew): the socket is full. Wait for POLLOUT rather than spend
         * a call on EAGAIN (nginx does the same). */
        if ((size_t)n < want && sf->offset + (off_t)sf->sent < sf->fsize)
            return 0;
    }
}

/* ---- The fallback path ----------------------------------------------------------------------- */

/* Reads the next chunk into buf. Returns its size (0: the end), or an error. */
static ssize_t fallback_read(lc__sendfile *sf)
{
    if (sf->buf == NULL) {
        sf->buf = malloc(LC__SF_CHUNK);
        if (sf->buf == NULL)
            return LC_ENOMEM;
    }
    size_t want = sf_want(sf, LC__SF_CHUNK);
    if (want == 0)
        return 0;
    ssize_t n;
    do
        n = pread(sf->file_fd, sf->buf, want, sf->offset + (off_t)sf->sent + (off_t)sf->buf_len);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        sf->file_err = true;
        return -errno;
    }
    return n;
}

/* Transport: write chunks while the transport is not paused. Returns 1 (done), 0 (waiting for
 * the resume, or for the next step), or an error. */
static int fallback_transport(lc__sendfile *sf)
{
    lc_transport_t *t = sf->t;
    if (lc__transport_write_paused(t))
        return 0; /* lc__sendfile_resumed() schedules the next step */
    ssize_t n = fallback_read(sf);
    if (n < 0)
        return (int)n;
    if (n == 0)
        return 1;
    int r = lc__transport_sendfile_write(t, sf->buf, (size_t)n);
    if (r != 0)
        return r;
    if (!sf->active)
        return 0; /* the write lost the connection: the hook ended us */
    sf->sent += (size_t)n;
    if (!lc__transport_write_paused(t))
        sf_schedule(sf); /* not paused: the next chunk, after the loop's other work */
    return 0;
}

/* Raw socket: send the chunk, read the next one when it is out. Returns 1, 0 (wait for
 * POLLOUT) or an error. */
static int fallback_sock(lc__sendfile *sf)
{
    size_t budget = LC__SF_BUDGET;
    for (;;) {
        if (sf->buf_off == sf->buf_len) {
            sf->buf_off = sf->buf_len = 0;
            ssize_t n = fallback_read(sf);
            if (n <= 0)
                return n == 0 ? 1 : (int)n;
            sf->buf_len = (size_t)n;
        }
        ssize_t n = send(sf->sock, sf->buf + sf->buf_off, sf->buf_len - sf->buf_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        sf->buf_off += (size_t)n;
        sf->sent += (size_t)n;
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
        if (budget == 0 && sf->buf_off == sf->buf_len) {
            sf_schedule(sf); /* a budget's worth went: let the loop run */
            return 0;
        }
    }
}

/* ---- Steps ----------------------------------------------------------------------------------- */

static void sf_step_body(lc__sendfile *sf);

static void sf_step(lc__sendfile *sf)
{
    sf->busy++;
    sf_step_body(sf);
    sf->busy--;
    sf_maybe_free(sf);
}

static void sf_step_body(lc__sendfile *sf)
{
    if (sf->deferred_err != 0) {
        int err = sf->deferred_err;
        sf->deferred_err = 0;
        sf_fail(sf, err);
        return;
    }
    if (sf->fut != NULL && lc_future_done(sf->fut)) {
        sf_finish(sf, 0); /* completed by someone else: its done callback may not have run */
        return;
    }
    int r;
    if (!sf->fallback) {
        if (sf->t != NULL && lc_transport_get_write_buffer_size(sf->t) > 0)
            return; /* the transport's POLLOUT flushes first, then calls us */
        r = native_send(sf);
        if (r == LC_ESENDFILENOTAVAILABLE && sf->allow_fallback) {
            sf->fallback = true;
            if (sf->offset != 0)
                lseek(sf->file_fd, sf->offset, SEEK_SET); /* asyncio's fallback seeks first */
            sf_cancel_handle(&sf->timer);
            if (sf->t != NULL) {
                lc__transport_sendfile_end(sf->t); /* stop watching POLLOUT for us */
                lc__transport_sendfile_begin(sf->t, sf);
            }
            sf_schedule(sf);
            return;
        }
    } else {
        r = sf->t != NULL ? fallback_transport(sf) : fallback_sock(sf);
    }
    if (!sf->active)
        return;
    if (r < 0 && sf->in_call) {
        sf->deferred_err = r;
        sf_schedule(sf);
    } else if (r < 0) {
        sf_fail(sf, r);
    } else if (r == 1) {
        sf_finish(sf, 0);
    } else if (!sf->fallback || sf->t == NULL) {
        if (sf->step == NULL)
            sf_wait_writable(sf);
        else
            lc__fdwatch_unqueue(&sf->op); /* the next step is queued: not waiting on the fd */
    }
}

/* ---- Hooks called by engine/transport.c ------------------------------------------------------ */

bool lc__sendfile_wants_write(const lc__sendfile *sf) { return sf->active && !sf->fallback; }

void lc__sendfile_writable(lc__sendfile *sf)
{
    if (sf->active && !sf->fallback && sf->step == NULL)
        sf_step(sf);
}

void lc__sendfile_resumed(lc__sendfile *sf)
{
    if (sf->active && sf->fallback)
        sf_schedule(sf);
}

void lc__sendfile_want_reading(lc__sendfile *sf, bool on) { sf->want_reading = on; }

void lc__sendfile_lost(lc__sendfile *sf, int err) { sf_finish(sf, err); }

/* ---- Starting -------------------------------------------------------------------------------- */

/* The checks and the state both calls share. Returns 0 (*out) or an error. */
static int sf_new(lc_loop_t *loop, int sock, int file_fd, off_t offset, size_t count, bool fallback,
                  lc_future_t **fut, lc__sendfile **out)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || fut == NULL || file_fd < 0 || offset < 0 || sock < 0)
        return LC_EINVAL;
    if (lc_loop_is_closed(loop))
        return LC_ECLOSED;
    struct stat st;
    if (fstat(file_fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return LC_ESENDFILENOTAVAILABLE;
    lc__sendfile *sf = calloc(1, sizeof(*sf));
    if (sf == NULL)
        return LC_ENOMEM;
    int r = lc_loop_create_future(loop, &sf->fut);
    if (r == 0) {
        r = lc_future_add_done_callback(sf->fut, sf_fut_done, sf);
        if (r != 0)
            lc_future_unref(sf->fut);
    }
    if (r != 0) {
        free(sf);
        return r;
    }
    sf->cb_registered = true;
    sf->loop = loop;
    sf->sock = sock;
    sf->file_fd = file_fd;
    sf->offset = offset;
    sf->count = count;
    sf->allow_fallback = fallback;
    sf->fsize = st.st_size;
    sf->active = true;
    sf->res.force_close = sf_force_close;
    *out = sf;
    return 0;
}

/* Started: a loop resource, and the caller's reference to the future. */
static void sf_started(lc__sendfile *sf, lc_future_t **fut)
{
    lc__loop_add_resource(sf->loop, &sf->res);
    *fut = lc_future_ref(sf->fut);
}

static void sf_discard(lc__sendfile *sf)
{
    lc_future_remove_done_callback(sf->fut, sf_fut_done, sf);
    lc_future_unref(sf->fut);
    free(sf);
}

int lc_loop_sendfile(lc_loop_t *loop, lc_transport_t *t, int file_fd, off_t offset, size_t count,
                     bool fallback, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (t == NULL)
        return LC_EINVAL;
    if (loop != NULL && lc_transport_get_loop(t) != loop)
        return LC_EINVAL;
    if (lc_transport_is_closing(t))
        return LC_ECLOSED;
    bool tls = lc_transport_get_ssl(t) != NULL;
    if (tls && !fallback)
        return LC_ESENDFILENOTAVAILABLE;
    int sock = lc_transport_get_fd(t);
    if (sock < 0)
        return sock;
    /* A pipe transport: asyncio's pipe transports have no sendfile ("not supported"). */
    int type = 0;
    socklen_t tlen = sizeof(type);
    if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM)
        return LC_ENOTSUP;
    lc__sendfile *sf;
    int r = sf_new(loop, sock, file_fd, offset, count, fallback, fut, &sf);
    if (r != 0)
        return r;
    sf->fallback = tls;
    if (tls && offset != 0)
        lseek(file_fd, offset, SEEK_SET); /* asyncio's fallback seeks first */
    sf->send_timeout = lc_transport_get_send_timeout(t);
    sf->last_progress = lc_loop_time(loop);
    sf->want_reading = lc_transport_is_reading(t);
    sf->was_write_paused = lc__transport_write_paused(t);
    /* The native path with nothing queued tries sendfile(2) at once, as asyncio's does; the
     * fallback and a transport still flushing start from the loop. */
    bool now = !tls && lc_transport_get_write_buffer_size(t) == 0;
    r = lc_transport_pause_reading(t);
    if (r == 0)
        r = lc__transport_sendfile_begin(t, sf);
    if (r == 0 && !now) {
        r = lc_loop_call_soon(loop, sf_step_cb, sf, &sf->step);
        if (r != 0)
            lc__transport_sendfile_end(t);
    }
    if (r != 0) {
        if (sf->want_reading && !lc_transport_is_closing(t))
            lc_transport_resume_reading(t);
        sf_discard(sf);
        return r;
    }
    sf->t = lc_transport_ref(t);
    sf_started(sf, fut);
    if (now) {
        sf->in_call = true;
        sf->busy++;
        sf_step(sf); /* may succeed at once (the future's callbacks still come from the loop) */
        sf->in_call = false;
        sf->busy--;
        sf_maybe_free(sf);
    }
    return 0;
}

int lc_loop_sock_sendfile(lc_loop_t *loop, int sockfd, int file_fd, off_t offset, size_t count,
                          bool fallback, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (sockfd < 0 || loop == NULL)
        return LC_EINVAL;
    if (!loop->closed && lc__fdmap_is_transport(loop, sockfd))
        return LC_EFDTRANSPORT;
    int fl = fcntl(sockfd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK))
        return LC_EINVAL; /* asyncio: "the socket must be non-blocking" */
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(sockfd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        return errno == ENOTSOCK ? LC_EINVAL : -errno;
    if (type != SOCK_STREAM)
        return LC_EINVAL; /* asyncio: "only SOCK_STREAM type sockets are supported" */
    lc__sendfile *sf;
    int r = sf_new(loop, sockfd, file_fd, offset, count, fallback, fut, &sf);
    if (r != 0)
        return r;
    sf_started(sf, fut);
    sf->in_call = true;
    sf->busy++;
    sf_step(sf); /* sendfile(2) at once; the socket is polled only if it would block */
    sf->in_call = false;
    sf->busy--;
    sf_maybe_free(sf);
    return 0;
}
