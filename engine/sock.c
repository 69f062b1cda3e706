/* The sock_* calls on a caller's non-blocking socket, as futures: sock_recv, sock_recv_into,
 * sock_sendall, sock_connect (with the host name resolved off the loop thread) and sock_accept.
 * Each tries its operation at once and, only if it would block, queues itself on the fd's
 * watcher (engine/fdwatch.c), which calls attempt() again whenever the fd is ready, in queue
 * order. A queued call holds a reference to its future and a done callback on it: if the future
 * is finished by anyone else (cancelled), the callback takes the call off its queue; when the
 * call finishes the future itself, it removes that callback first. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/fdmap.h"
#include "engine/stream_internal.h"

enum { OP_RECV, OP_RECV_INTO, OP_SENDALL, OP_CONNECT, OP_ACCEPT };

typedef struct {
    lc__sockop op; /* first: attempt() and fail() get it */
    lc_loop_t *loop;
    int fd;
    int kind;
    union {
        struct {
            lc_sock_data_t *data; /* OP_RECV: allocated for cap bytes, owned until resolved */
            void *buf;            /* OP_RECV_INTO: the caller's */
            size_t cap;
        } rd;
        struct {
            unsigned char *buf; /* the unsent rest, copied */
            size_t len, off;
        } wr;
        struct {
            struct sockaddr_storage addr;
            socklen_t addrlen;
            bool started; /* connect() returned EINPROGRESS: wait for its outcome */
        } conn;
    } u;
} sockop;

static void op_free(sockop *s)
{
    if (s->kind == OP_RECV)
        free(s->u.rd.data);
    else if (s->kind == OP_SENDALL)
        free(s->u.wr.buf);
    lc_future_unref(s->op.fut);
    free(s);
}

/* The future was finished by someone else (cancelled): the call leaves its queue unserved. */
static void op_done_cb(lc_future_t *fut, void *arg)
{
    (void)fut;
    sockop *s = arg;
    lc__fdwatch_unqueue(&s->op);
    op_free(s);
}

/* The call's outcome: err, or result (freed with the future by dtor, if not NULL). */
static void op_finish(sockop *s, int err, void *result, void (*dtor)(void *))
{
    lc__fdwatch_unqueue(&s->op);
    lc_future_t *fut = s->op.fut;
    lc_future_remove_done_callback(fut, op_done_cb, s);
    if (err != 0)
        lc_future_set_error(fut, err);
    else if (dtor != NULL)
        lc__future_set_result_owned(fut, result, dtor);
    else
        lc_future_set_result(fut, result);
    op_free(s);
}

static void op_fail(lc__sockop *o, int err)
{
    sockop *s = (sockop *)o;
    if (lc_future_done(o->fut)) {
        /* Cancelled, its done callback scheduled: that frees it, unless the loop is closed (its
         * queue was discarded, and the callback with it). */
        lc__fdwatch_unqueue(o);
        if (s->loop->closed) {
            lc_future_remove_done_callback(o->fut, op_done_cb, s);
            op_free(s);
        }
        return;
    }
    if (s->loop->closed && o->fut->refs == 1) {
        /* The loop's close, and nobody else holds the future: failing it would only report
         * "Future exception was never retrieved" as it goes. */
        lc__fdwatch_unqueue(o);
        lc_future_remove_done_callback(o->fut, op_done_cb, s);
        op_free(s);
        return;
    }
    op_finish(s, err, NULL, NULL);
}

/* ---- The operations, tried once ---------------------------------------------------------------
 * Each returns 1 when done (*err 0: success), 0 if it would block. */

static int try_recv(int fd, void *buf, size_t len, size_t *got, int *err)
{
    ssize_t n;
    do
        n = recv(fd, buf, len, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    *err = n < 0 ? -errno : 0;
    *got = n < 0 ? 0 : (size_t)n;
    return 1;
}

/* Sends from buf[*off] on until everything is out (1) or it would block (0). */
static int try_send(int fd, const unsigned char *buf, size_t len, size_t *off, int *err)
{
    while (*off < len) {
        ssize_t n = send(fd, buf + *off, len - *off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            *err = -errno;
            return 1;
        }
        *off += (size_t)n;
    }
    *err = 0;
    return 1;
}

static int try_accept(int fd, lc_sock_accepted_t **out, int *err)
{
    lc_sock_accepted_t *a = malloc(sizeof(*a));
    if (a == NULL) {
        *err = LC_ENOMEM;
        return 1;
    }
    for (;;) {
        a->addrlen = sizeof(a->addr);
        a->fd = accept4(fd, (struct sockaddr *)&a->addr, &a->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (a->fd >= 0) {
            *err = 0;
            *out = a;
            return 1;
        }
        /* ECONNABORTED: that connection went before we took it; the next may be there. */
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        int e = errno;
        free(a);
        if (e == EAGAIN || e == EWOULDBLOCK)
            return 0;
        *err = -e;
        return 1;
    }
}

/* connect(): 1 when connected or failed, 0 while it is in progress. First the call itself, then,
 * once it is in progress, its outcome from SO_ERROR when the socket turns writable. */
static int try_connect(sockop *s, bool writable, int *err)
{
    if (s->u.conn.started) {
        if (!writable)
            return 0;
        int e = 0;
        socklen_t len = sizeof(e);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
            e = errno;
        *err = -e;
        return 1;
    }
    int r;
    do
        r = connect(s->fd, (struct sockaddr *)&s->u.conn.addr, s->u.conn.addrlen);
    while (r != 0 && errno == EINTR && !s->u.conn.started);
    if (r == 0 || errno == EISCONN) {
        *err = 0;
        return 1;
    }
    if (errno == EINPROGRESS || errno == EALREADY) {
        s->u.conn.started = true;
        return 0;
    }
    if (errno == EAGAIN) /* AF_UNIX with a full backlog: call connect() again when writable */
        return 0;
    *err = -errno;
    return 1;
}

static void recv_dtor(void *p) { free(p); }

size_t lc_sock_count(const void *result) { return (size_t)(uintptr_t)result; }

/* The attempt of every kind: called by the watcher when fd is ready, and once at the start. */
static bool op_attempt(lc__sockop *o)
{
    sockop *s = (sockop *)o;
    int err = 0;
    size_t got = 0;
    switch (s->kind) {
    case OP_RECV: {
        if (!try_recv(s->fd, s->u.rd.data->data, s->u.rd.cap, &got, &err))
            return false;
        lc__fdwatch_set_drained(s->loop, s->fd, err == 0 && got > 0 && got < s->u.rd.cap);
        lc_sock_data_t *d = NULL;
        if (err == 0) {
            d = s->u.rd.data;
            s->u.rd.data = NULL; /* the future's now */
            d->len = got;
            if (got < s->u.rd.cap) { /* give back what was not filled */
                lc_sock_data_t *small = realloc(d, sizeof(*d) + (got > 0 ? got : 1));
                if (small != NULL)
                    d = small;
                d->data = (unsigned char *)(d + 1);
            }
        }
        op_finish(s, err, d, d != NULL ? recv_dtor : NULL);
        return true;
    }
    case OP_RECV_INTO:
        if (!try_recv(s->fd, s->u.rd.buf, s->u.rd.cap, &got, &err))
            return false;
        lc__fdwatch_set_drained(s->loop, s->fd, err == 0 && got > 0 && got < s->u.rd.cap);
        op_finish(s, err, (void *)(uintptr_t)got, NULL);
        return true;
    case OP_SENDALL:
        if (!try_send(s->fd, s->u.wr.buf, s->u.wr.len, &s->u.wr.off, &err))
            return false;
        op_finish(s, err, NULL, NULL);
        return true;
    case OP_CONNECT:
        if (!try_connect(s, o->w != NULL, &err))
            return false;
        op_finish(s, err, NULL, NULL);
        return true;
    case OP_ACCEPT: {
        lc_sock_accepted_t *a = NULL;
        if (!try_accept(s->fd, &a, &err))
            return false;
        if (a != NULL) /* a watcher left on the new fd's number can only be stale */
            lc__fdwatch_new_fd(s->loop, a->fd);
        op_finish(s, err, a, a != NULL ? recv_dtor : NULL);
        return true;
    }
    }
    return true;
}

/* ---- Starting a call ------------------------------------------------------------------------ */

/* The checks every call starts with (asyncio's, plus the thread check). The non-blocking flag
 * is read with fcntl unless fd's watcher saw it set (cached: recv and send are tried with
 * MSG_DONTWAIT, so a stale answer never blocks; see "Non-blocking" in engine/fdwatch.c);
 * connect and accept cannot be told not to block and pass cached = false. *st: fd's watcher
 * state (lc__fdwatch_state), for op_run. */
static int sock_check(lc_loop_t *loop, int fd, const char *what, bool cached, unsigned *st)
{
    if (loop == NULL || fd < 0)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    int r = lc__loop_check_thread(loop, what);
    if (r != 0)
        return r;
    if (lc__fdmap_is_transport(loop, fd))
        return LC_EFDTRANSPORT;
    *st = lc__fdwatch_state(loop, fd); /* the caller's too */
    if (cached && (*st & LC__FDW_NONBLOCK))
        return 0;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK))
        return LC_EINVAL; /* asyncio: "the socket must be non-blocking" */
    return 0;
}

/* A public call's start: its future's place cleared (NULL: LC_EINVAL), then sock_check(). */
static int sock_begin(lc_loop_t *loop, int fd, const char *what, bool cached, unsigned *st,
                      lc_future_t **fut)
{
    if (fut == NULL)
        return LC_EINVAL;
    *fut = NULL;
    return sock_check(loop, fd, what, cached, st);
}

static sockop *op_new(lc_loop_t *loop, int fd, int kind)
{
    sockop *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->fd = fd;
    s->kind = kind;
    s->op.write = kind == OP_SENDALL || kind == OP_CONNECT;
    /* The calls of a steady loop wait without a check of the fd's identity (engine/fdwatch.c,
     * "Closed fds"); connect and accept, which start a socket's life, are checked. */
    s->op.trusted = kind == OP_RECV || kind == OP_RECV_INTO || kind == OP_SENDALL;
    s->op.attempt = op_attempt;
    s->op.fail = op_fail;
    return s;
}

/* Runs s for fut (s takes a reference of its own): tries the operation unless earlier calls of
 * its direction wait (st, fd's watcher state) or the caller just tried it (tried), and queues s
 * if it would block.
 * Returns 0 (s then finishes fut, at once or
 * later) or an error of the queueing (s freed, fut untouched). */
static int op_run(sockop *s, lc_future_t *fut, bool tried, unsigned st)
{
    s->op.fut = lc_future_ref(fut);
    /* A read on a socket whose last recv found its queue empty waits without trying (the
     * drained hint, engine/fdmap.h): the try would almost always say EAGAIN. */
    if (!s->op.write && (st & LC__FDW_DRAINED))
        tried = true;
    if (!tried && !(st & (s->op.write ? LC__FDW_WBUSY : LC__FDW_RBUSY)) && op_attempt(&s->op))
        return 0; /* done at once: op_finish resolved fut and freed s */
    int r = lc_future_add_done_callback(fut, op_done_cb, s);
    if (r == 0)
        r = lc__fdwatch_queue(s->loop, s->fd, &s->op);
    if (r != 0) {
        lc_future_remove_done_callback(fut, op_done_cb, s);
        op_free(s);
    }
    return r;
}

/* Creates the call's future in *fut (the caller's reference) and runs s for it. Takes s. */
static int op_start(sockop *s, lc_future_t **fut, unsigned st)
{
    int r = lc_loop_create_future(s->loop, fut);
    if (r != 0) {
        if (s->kind == OP_RECV)
            free(s->u.rd.data);
        free(s);
        return r;
    }
    r = op_run(s, *fut, false, st);
    if (r != 0) {
        lc_future_unref(*fut);
        *fut = NULL;
    }
    return r;
}

int lc_loop_sock_recv(lc_loop_t *loop, int fd, size_t nbytes, lc_future_t **fut)
{
    unsigned st = 0;
    int r = sock_begin(loop, fd, "sock_recv", true, &st, fut);
    if (r != 0)
        return r;
    if (nbytes == 0 || nbytes > SIZE_MAX - sizeof(lc_sock_data_t))
        return LC_EINVAL;
    sockop *s = op_new(loop, fd, OP_RECV);
    if (s == NULL)
        return LC_ENOMEM;
    s->u.rd.data = malloc(sizeof(lc_sock_data_t) + nbytes);
    if (s->u.rd.data == NULL) {
        free(s);
        return LC_ENOMEM;
    }
    s->u.rd.data->data = (unsigned char *)(s->u.rd.data + 1);
    s->u.rd.cap = nbytes;
    return op_start(s, fut, st);
}

int lc_loop_sock_recv_into(lc_loop_t *loop, int fd, void *buf, size_t len, lc_future_t **fut)
{
    unsigned st = 0;
    int r = sock_begin(loop, fd, "sock_recv_into", true, &st, fut);
    if (r != 0)
        return r;
    if (buf == NULL || len == 0)
        return LC_EINVAL;
    sockop *s = op_new(loop, fd, OP_RECV_INTO);
    if (s == NULL)
        return LC_ENOMEM;
    s->u.rd.buf = buf;
    s->u.rd.cap = len;
    return op_start(s, fut, st);
}

int lc_loop_sock_sendall(lc_loop_t *loop, int fd, const void *data, size_t len, lc_future_t **fut)
{
    unsigned st = 0;
    int r = sock_begin(loop, fd, "sock_sendall", true, &st, fut);
    if (r != 0)
        return r;
    if (data == NULL && len > 0)
        return LC_EINVAL;
    r = lc_loop_create_future(loop, fut);
    if (r != 0)
        return r;
    /* Try the whole send first, with the caller's buffer: only the rest is copied. */
    size_t off = 0;
    int err = 0;
    bool busy = (st & LC__FDW_WBUSY) != 0; /* earlier sendalls wait: go behind them */
    if (!busy && try_send(fd, data, len, &off, &err)) {
        if (err != 0)
            lc_future_set_error(*fut, err);
        else
            lc_future_set_result(*fut, NULL);
        return 0;
    }
    sockop *s = op_new(loop, fd, OP_SENDALL);
    if (s == NULL || (s->u.wr.buf = malloc(len - off)) == NULL) {
        free(s);
        r = LC_ENOMEM;
    } else {
        memcpy(s->u.wr.buf, (const unsigned char *)data + off, len - off);
        s->u.wr.len = len - off;
        r = op_run(s, *fut, !busy, st);
    }
    if (r != 0) {
        lc_future_unref(*fut);
        *fut = NULL;
    }
    return r;
}

int lc_loop_sock_accept(lc_loop_t *loop, int fd, lc_future_t **fut)
{
    unsigned st = 0;
    int r = sock_begin(loop, fd, "sock_accept", false, &st, fut);
    if (r != 0)
        return r;
    sockop *s = op_new(loop, fd, OP_ACCEPT);
    if (s == NULL)
        return LC_ENOMEM;
    return op_start(s, fut, st);
}

int lc_loop_sock_connect_addr(lc_loop_t *loop, int fd, const struct sockaddr *addr,
                              socklen_t addrlen, lc_future_t **fut)
{
    unsigned st = 0;
    int r = sock_begin(loop, fd, "sock_connect", false, &st, fut);
    if (r != 0)
        return r;
    if (addr == NULL || addrlen == 0 || addrlen > sizeof(struct sockaddr_storage))
        return LC_EINVAL;
    sockop *s = op_new(loop, fd, OP_CONNECT);
    if (s == NULL)
        return LC_ENOMEM;
    memcpy(&s->u.conn.addr, addr, addrlen);
    s->u.conn.addrlen = addrlen;
    return op_start(s, fut, st);
}

/* ---- sock_connect with a host name ------------------------------------------------------------
 */

/* A connect waiting for its address: holds the caller's future (a reference of its own). */
typedef struct {
    lc_loop_t *loop;
    int fd;
    lc_future_t *fut;
} resolving;

static void connect_resolved(int status, struct addrinfo *res, void *arg)
{
    resolving *rv = arg;
    lc_future_t *fut = rv->fut;
    int err = 0;
    unsigned st = 0;
    if (lc_future_done(fut)) {
        /* cancelled meanwhile: no connect */
    } else if (rv->loop->closed) {
        err = LC_ECLOSED;
    } else if (status != 0) {
        err = status;
    } else if (res == NULL || res->ai_addrlen > sizeof(struct sockaddr_storage)) {
        err = UV_EAI_NONAME;
    } else if ((err = sock_check(rv->loop, rv->fd, "sock_connect", false, &st)) == 0) {
        /* The socket is checked again: a transport may have taken it meanwhile. asyncio
         * connects to the first address getaddrinfo gives for the socket's family and type. */
        sockop *s = op_new(rv->loop, rv->fd, OP_CONNECT);
        if (s == NULL) {
            err = LC_ENOMEM;
        } else {
            memcpy(&s->u.conn.addr, res->ai_addr, res->ai_addrlen);
            s->u.conn.addrlen = res->ai_addrlen;
            err = op_run(s, fut, false, st);
        }
    }
    if (err != 0)
        lc_future_set_error(fut, err);
    if (res != NULL)
        uv_freeaddrinfo(res);
    lc_future_unref(fut);
    free(rv);
}

static int sock_int_opt(int fd, int opt)
{
    int v = 0;
    socklen_t len = sizeof(v);
    return getsockopt(fd, SOL_SOCKET, opt, &v, &len) == 0 ? v : -errno;
}

int lc_loop_sock_connect(lc_loop_t *loop, int fd, const char *host, uint16_t port,
                         lc_future_t **fut)
{
    unsigned st = 0;
    int r = sock_begin(loop, fd, "sock_connect", false, &st, fut);
    if (r != 0)
        return r;
    int family = sock_int_opt(fd, SO_DOMAIN);
    if (family < 0)
        return family;
    if (host == NULL || (family != AF_INET && family != AF_INET6))
        return LC_EINVAL; /* AF_UNIX and others: lc_loop_sock_connect_addr() */
    /* A numeric address of the socket's family needs no resolver (asyncio's _ipaddr_info). */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons(port);
            return lc_loop_sock_connect_addr(loop, fd, (struct sockaddr *)sin, sizeof(*sin), fut);
        }
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons(port);
            return lc_loop_sock_connect_addr(loop, fd, (struct sockaddr *)sin6, sizeof(*sin6), fut);
        }
    }
    int type = sock_int_opt(fd, SO_TYPE);
    int proto = sock_int_opt(fd, SO_PROTOCOL);
    struct addrinfo hints = {.ai_family = family,
                             .ai_socktype = type > 0 ? type : 0,
                             .ai_protocol = proto > 0 ? proto : 0};
    char port_str[8];
    snprintf(port_str, sizeof(port_str), "%u", (unsigned)port);
    resolving *rv = calloc(1, sizeof(*rv));
    if (rv == NULL)
        return LC_ENOMEM;
    r = lc_loop_create_future(loop, fut);
    if (r != 0) {
        free(rv);
        return r;
    }
    rv->loop = loop;
    rv->fd = fd;
    rv->fut = lc_future_ref(*fut);
    r = lc__resolve(loop, host, port_str, &hints, connect_resolved, rv);
    if (r != 0) {
        lc_future_unref(rv->fut);
        free(rv);
        lc_future_unref(*fut);
        *fut = NULL;
    }
    return r;
}
