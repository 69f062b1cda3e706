/* Servers: listening sockets, the accept loop, EMFILE back-off, close / wait_closed. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/group_hooks.h"
#include "engine/stream_internal.h"

/* How many connections one readiness of a listening socket may accept before the loop moves on
 * (fairness with the other sockets; the listener stays readable if more are waiting). */
#define LC__ACCEPT_BATCH 128

typedef struct listener_s {
    uv_poll_t poll;
    int fd;
    lc_server_t *server;
} listener;

struct lc_server_s {
    lc__resource res;
    lc_loop_t *loop;
    lc_protocol_factory_fn factory;
    void *factory_arg;
    listener **ls;
    size_t nls;
    int backlog;
    double retry_delay;
    bool listening; /* listen() called */
    bool serving;   /* accepting (false while backing off after EMFILE, and once closed) */
    bool closed;
    bool timer_open;
    uv_timer_t retry_timer;
    size_t accepted, active;
    /* If set, accepted fds go to hook(fd, hook_arg) instead of becoming transports here (a group
     * server's hand-off mode). */
    void (*accept_hook)(int fd, void *arg);
    void *accept_hook_arg;
    /* If set, called once when the server is closed and has no connection left (a group server
     * counting its loops down, lc__server_set_drained_hook). */
    void (*drained_hook)(void *arg);
    void *drained_hook_arg;
    /* References: the creator's (lc_server_free), one per open connection, one per libuv handle
     * still closing; the memory goes with the last. */
    uint32_t refs;
    lc_future_t **waiters; /* wait_closed / serve_forever futures */
    size_t nwaiters;
    /* create_server in progress: */
    lc_future_t *create_fut;
    lc_server_opts_t opts;
    lc__tls_config tls; /* TLS settings of accepted connections (tls.ctx NULL: plaintext) */
    char **hosts;
    size_t nhosts, host_i;
    char port[16];
};

static void server_unref(lc_server_t *s)
{
    if (--s->refs == 0) {
        for (size_t i = 0; i < s->nhosts; i++)
            free(s->hosts[i]);
        free(s->hosts);
        free(s->ls);
        free(s->waiters);
        lc__tls_config_clear(&s->tls);
        free(s);
    }
}

static void resolve_waiters(lc_server_t *s, bool all)
{
    /* serve_forever futures resolve at close; wait_closed ones once no connection is left. */
    size_t kept = 0;
    for (size_t i = 0; i < s->nwaiters; i++) {
        lc_future_t *f = s->waiters[i];
        bool is_serve_forever = (uintptr_t)f & 1;
        lc_future_t *fut = (lc_future_t *)((uintptr_t)f & ~(uintptr_t)1);
        if (is_serve_forever || all) {
            if (!lc_future_done(fut))
                lc_future_set_result(fut, s);
            lc_future_unref(fut);
        } else {
            s->waiters[kept++] = f;
        }
    }
    s->nwaiters = kept;
}

static void maybe_done(lc_server_t *s)
{
    if (!s->closed)
        return;
    resolve_waiters(s, s->active == 0);
    if (s->active == 0 && s->drained_hook != NULL) {
        void (*hook)(void *arg) = s->drained_hook;
        s->drained_hook = NULL;
        hook(s->drained_hook_arg);
    }
}

void lc__server_connection_gone(lc_server_t *s)
{
    s->active--;
    maybe_done(s);
    server_unref(s);
}

static void listener_closed_cb(uv_handle_t *h)
{
    listener *l = h->data;
    lc_server_t *s = l->server;
    free(l);
    server_unref(s);
}

static void timer_closed_cb(uv_handle_t *h) { server_unref(h->data); }

/* Closes the listening sockets at once (a connect after this gets ECONNREFUSED). */
static void close_listeners(lc_server_t *s)
{
    for (size_t i = 0; i < s->nls; i++) {
        listener *l = s->ls[i];
        uv_close((uv_handle_t *)&l->poll, listener_closed_cb);
        close(l->fd);
    }
    s->nls = 0;
    if (s->timer_open) {
        s->timer_open = false;
        uv_close((uv_handle_t *)&s->retry_timer, timer_closed_cb);
    }
}

int lc_server_close(lc_server_t *s)
{
    if (s == NULL)
        return LC_EINVAL;
    if (s->closed)
        return 0;
    s->closed = true;
    s->serving = false;
    lc__loop_remove_resource(s->loop, &s->res);
    close_listeners(s);
    maybe_done(s);
    return 0;
}

/* The loop closes with the server open: release the handles; connections are closed by their
 * own force_close. Futures still waiting are left pending (their loop is closed). */
static void server_force_close(lc__resource *r)
{
    lc_server_t *s = lc_container_of(r, lc_server_t, res);
    /* Held across the close: its drained hook may drop the last other reference (a group
     * server whose memory goes with the hook frees this server then). */
    s->refs++;
    /* If a create_server is still resolving, its callback finds the server closed and fails
     * the future (with the loop closed, nobody hears of it) and drops the last references. */
    lc_server_close(s);
    for (size_t i = 0; i < s->nwaiters; i++)
        lc_future_unref((lc_future_t *)((uintptr_t)s->waiters[i] & ~(uintptr_t)1));
    s->nwaiters = 0;
    server_unref(s);
}

/* ---- Accepting ------------------------------------------------------------------------------- */

static void listener_cb(uv_poll_t *p, int status, int events);

/* Makes an accepted fd a transport of s, counted in s->active until it is freed. Takes fd. */
static int server_take(lc_server_t *s, int fd)
{
    s->active++;
    s->refs++; /* dropped by lc__server_connection_gone */
    int err;
    /* TCP_NODELAY on accepted TCP connections too (fails harmlessly on AF_UNIX). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    lc_transport_t *t =
        s->tls.ctx != NULL
            ? lc__transport_new_tls(s->loop, fd, s->factory, s->factory_arg, s, &s->tls, NULL, &err)
            : lc__transport_new(s->loop, fd, s->factory, s->factory_arg, s, &err);
    if (t == NULL) {
        /* The factory refused it (or no memory): the fd is closed already. */
        lc__server_connection_gone(s);
        return err;
    }
    return 0;
}

static void set_accepting(lc_server_t *s, bool on)
{
    for (size_t i = 0; i < s->nls; i++) {
        if (on)
            uv_poll_start(&s->ls[i]->poll, UV_READABLE, listener_cb);
        else
            uv_poll_stop(&s->ls[i]->poll);
    }
}

static void retry_cb(uv_timer_t *t)
{
    lc_server_t *s = t->data;
    if (!s->closed && s->listening) {
        s->serving = true;
        set_accepting(s, true);
    }
}

static void accept_backoff(lc_server_t *s, int err, int fd)
{
    lc_exception_context_t ctx =
        LC_EXCEPTION_CONTEXT_INIT("socket.accept() out of system resource");
    ctx.error = err;
    ctx.socket = fd;
    lc_loop_call_exception_handler(s->loop, &ctx);
    /* Stop accepting for a while instead of spinning on a listener that stays readable. */
    s->serving = false;
    set_accepting(s, false);
    if (!s->timer_open) {
        uv_timer_init(lc__loop_uv(s->loop), &s->retry_timer);
        s->retry_timer.data = s;
        s->timer_open = true;
        s->refs++; /* for the timer handle */
    }
    uv_timer_start(&s->retry_timer, retry_cb, (uint64_t)(s->retry_delay * 1000), 0);
}

static void listener_cb(uv_poll_t *p, int status, int events)
{
    (void)events;
    if (!lc__io_enter((uv_handle_t *)p))
        return;
    listener *l = p->data;
    lc_server_t *s = l->server;
    if (status < 0 || !s->serving)
        return;
    for (int i = 0; i < LC__ACCEPT_BATCH && s->serving; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                accept_backoff(s, -e, l->fd);
                return;
            }
            lc_exception_context_t ctx = LC_EXCEPTION_CONTEXT_INIT("Error on accept()");
            ctx.error = -e;
            ctx.socket = l->fd;
            lc_loop_call_exception_handler(s->loop, &ctx);
            return;
        }
        s->accepted++;
        if (s->accept_hook != NULL) {
            s->accept_hook(fd, s->accept_hook_arg);
            continue;
        }
        (void)server_take(s, fd);
    }
}

void lc__server_set_accept_hook(lc_server_t *s, void (*hook)(int fd, void *arg), void *arg)
{
    s->accept_hook = hook;
    s->accept_hook_arg = arg;
}

void lc__server_set_drained_hook(lc_server_t *s, void (*hook)(void *arg), void *arg)
{
    s->drained_hook = hook;
    s->drained_hook_arg = arg;
}

int lc__server_set_tls(lc_server_t *s, struct ssl_ctx_st *ctx, double handshake_timeout,
                       double shutdown_timeout)
{
    lc__tls_config tls;
    int r = lc__tls_config_init(&tls, ctx, NULL, handshake_timeout, shutdown_timeout, true);
    if (r == 0) {
        lc__tls_config_clear(&s->tls);
        s->tls = tls;
    }
    return r;
}

int lc__server_adopt(lc_server_t *s, int fd)
{
    if (s->closed) {
        close(fd);
        return LC_ECLOSED;
    }
    return server_take(s, fd);
}

/* ---- Listening ------------------------------------------------------------------------------- */

static int server_listen(lc_server_t *s)
{
    for (size_t i = 0; i < s->nls; i++)
        if (listen(s->ls[i]->fd, s->backlog) != 0)
            return -errno;
    s->listening = true;
    s->serving = true;
    set_accepting(s, true);
    return 0;
}

int lc_server_start_serving(lc_server_t *s)
{
    if (s == NULL)
        return LC_EINVAL;
    if (s->closed)
        return LC_ECLOSED;
    if (s->listening)
        return 0;
    return server_listen(s);
}

bool lc_server_is_serving(const lc_server_t *s) { return s != NULL && s->listening && !s->closed; }

lc_loop_t *lc_server_get_loop(const lc_server_t *s) { return s != NULL ? s->loop : NULL; }

int lc_server_sockets(const lc_server_t *s, int *fds, size_t *n)
{
    if (s == NULL || n == NULL || (fds == NULL && *n > 0))
        return LC_EINVAL;
    size_t k = s->nls < *n ? s->nls : *n;
    for (size_t i = 0; i < k; i++)
        fds[i] = s->ls[i]->fd;
    *n = s->nls;
    return 0;
}

size_t lc_server_accepted(const lc_server_t *s) { return s != NULL ? s->accepted : 0; }
size_t lc_server_active(const lc_server_t *s) { return s != NULL ? s->active : 0; }

static int add_waiter(lc_server_t *s, lc_future_t **fut, bool serve_forever)
{
    if (fut != NULL)
        *fut = NULL;
    if (s == NULL || fut == NULL)
        return LC_EINVAL;
    int r = lc_loop_create_future(s->loop, fut);
    if (r != 0)
        return r;
    if (s->closed && (serve_forever || s->active == 0)) {
        lc_future_set_result(*fut, s);
        return 0;
    }
    lc_future_t **w = realloc(s->waiters, (s->nwaiters + 1) * sizeof(*w));
    if (w == NULL) {
        lc_future_unref(*fut);
        *fut = NULL;
        return LC_ENOMEM;
    }
    s->waiters = w;
    s->waiters[s->nwaiters++] =
        (lc_future_t *)((uintptr_t)lc_future_ref(*fut) | (serve_forever ? 1 : 0));
    return 0;
}

static void serve_forever_done(lc_future_t *fut, void *arg)
{
    /* Cancelling serve_forever closes the server (asyncio rule 14d). */
    if (lc_future_cancelled(fut))
        lc_server_close(arg);
}

int lc_server_serve_forever(lc_server_t *s, lc_future_t **fut)
{
    int r = add_waiter(s, fut, true);
    if (r == 0 && !s->closed) {
        if (!s->listening)
            r = server_listen(s);
        if (r == 0)
            r = lc_future_add_done_callback(*fut, serve_forever_done, s);
    }
    return r;
}

int lc_server_wait_closed(lc_server_t *s, lc_future_t **fut) { return add_waiter(s, fut, false); }

void lc_server_free(lc_server_t *s)
{
    if (s == NULL)
        return;
    lc_server_close(s);
    server_unref(s);
}

/* ---- Creation -------------------------------------------------------------------------------- */

static lc_server_t *server_new(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                               int backlog, double retry_delay)
{
    lc_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->factory = factory;
    s->factory_arg = factory_arg;
    s->backlog = backlog > 0 ? backlog : 100;
    s->retry_delay = retry_delay > 0 ? retry_delay : 1.0;
    s->refs = 1;
    s->res.force_close = server_force_close;
    lc__loop_add_resource(loop, &s->res);
    return s;
}

lc_server_t *lc__server_new_bare(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg)
{
    if (loop->closed)
        return NULL;
    return server_new(loop, factory, factory_arg, 0, 0);
}

/* Adds a bound socket to the server (takes fd). */
static int server_add_fd(lc_server_t *s, int fd)
{
    int r = lc__set_nonblocking(fd);
    listener *l = r == 0 ? calloc(1, sizeof(*l)) : NULL;
    listener **ls = l != NULL ? realloc(s->ls, (s->nls + 1) * sizeof(*ls)) : NULL;
    if (ls == NULL) {
        free(l);
        close(fd);
        return r != 0 ? r : LC_ENOMEM;
    }
    s->ls = ls;
    r = uv_poll_init(lc__loop_uv(s->loop), &l->poll, fd);
    if (r != 0) {
        free(l);
        close(fd);
        return r;
    }
    l->poll.data = l;
    l->fd = fd;
    l->server = s;
    s->ls[s->nls++] = l;
    s->refs++; /* for the poll handle */
    return 0;
}

static bool same_addr(const struct addrinfo *a, const struct addrinfo *b)
{
    return a->ai_family == b->ai_family && a->ai_addrlen == b->ai_addrlen &&
           memcmp(a->ai_addr, b->ai_addr, a->ai_addrlen) == 0;
}

int lc__socket_bind(const struct sockaddr *addr, socklen_t len, int protocol, unsigned flags)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (((flags & LC__SOCK_REUSEADDR) &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) ||
        ((flags & LC__SOCK_REUSEPORT) &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        (addr->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, addr, len) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int bind_one(lc_server_t *s, const struct addrinfo *a)
{
    unsigned flags = (s->opts.exclusive_address ? 0 : LC__SOCK_REUSEADDR) |
                     (s->opts.reuse_port ? LC__SOCK_REUSEPORT : 0);
    int fd = lc__socket_bind(a->ai_addr, a->ai_addrlen, a->ai_protocol, flags);
    return fd < 0 ? fd : server_add_fd(s, fd);
}

/* The end of create_server: resolve the future with the server, or fail it and let the server go.
 * Drops the reference the resolution held. */
static void create_finish(lc_server_t *s, int err)
{
    lc_future_t *fut = s->create_fut;
    s->create_fut = NULL;
    if (err == 0 && s->closed)
        err = LC_ECLOSED;
    if (err == 0 && lc_future_done(fut))
        err = LC_ECANCELLED;
    if (err == 0 && !s->opts.start_paused)
        err = server_listen(s);
    if (err != 0) {
        if (!lc_future_done(fut))
            lc_future_set_error(fut, err);
        lc_server_close(s);
        server_unref(s); /* the creator's: nobody will get this server */
    } else {
        lc_future_set_result(fut, s);
    }
    lc_future_unref(fut);
    server_unref(s); /* the resolution's */
}

static void resolve_next_host(lc_server_t *s);

static void host_resolved(int status, struct addrinfo *res, void *arg)
{
    lc_server_t *s = arg;
    if (s->closed || status != 0) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        create_finish(s, s->closed ? LC_ECLOSED : status);
        return;
    }
    int err = 0;
    for (struct addrinfo *a = res; a != NULL && err == 0; a = a->ai_next) {
        bool dup = false;
        for (struct addrinfo *b = res; b != a; b = b->ai_next)
            dup = dup || same_addr(a, b);
        if (!dup)
            err = bind_one(s, a);
    }
    uv_freeaddrinfo(res);
    if (err != 0) {
        create_finish(s, err);
        return;
    }
    s->host_i++;
    resolve_next_host(s);
}

static void resolve_next_host(lc_server_t *s)
{
    /* No host: one pass with NULL (every interface); else one pass per host. */
    size_t passes = s->nhosts > 0 ? s->nhosts : 1;
    if (s->host_i >= passes) {
        create_finish(s, s->nls > 0 ? 0 : -EADDRNOTAVAIL);
        return;
    }
    const char *host = s->nhosts > 0 ? s->hosts[s->host_i] : NULL;
    struct addrinfo hints = {0};
    hints.ai_family = s->opts.family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = s->opts.flags | AI_PASSIVE;
    int r = lc__resolve(s->loop, host, s->port, &hints, host_resolved, s);
    if (r != 0)
        create_finish(s, r);
}

int lc_loop_create_server(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                          const lc_server_opts_t *opts, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    lc_server_opts_t o = opts != NULL ? *opts : (lc_server_opts_t){0};
    if (loop == NULL || factory == NULL || fut == NULL || o.port < 0 || o.port > 65535 ||
        o.backlog < 0 || (o.hosts == NULL && o.nhosts > 0) || o.accept_retry_delay < 0)
        return LC_EINVAL;
    if (o.use_sock && (o.host != NULL || o.nhosts > 0 || o.port != 0 || o.sock < 0))
        return LC_EINVAL;
    lc__tls_config tls;
    int r = lc__tls_config_init(&tls, o.ssl, NULL, o.ssl_handshake_timeout, o.ssl_shutdown_timeout,
                                true);
    if (r != 0)
        return r;
    r = lc_loop_create_future(loop, fut);
    lc_server_t *s =
        r == 0 ? server_new(loop, factory, factory_arg, o.backlog, o.accept_retry_delay) : NULL;
    if (s == NULL) {
        lc__tls_config_clear(&tls);
        lc_future_unref(*fut);
        *fut = NULL;
        return r != 0 ? r : LC_ENOMEM;
    }
    s->tls = tls;
    s->opts = o;
    s->opts.host = NULL;
    s->opts.hosts = NULL;
    if (o.use_sock) {
        int fd = dup(o.sock);
        r = fd >= 0 ? server_add_fd(s, fd) : -errno;
        if (r == 0 && !o.start_paused)
            r = server_listen(s);
        if (r != 0) {
            lc_server_free(s);
            lc_future_unref(*fut);
            *fut = NULL;
            return r;
        }
        lc_future_set_result(*fut, s);
        return 0;
    }
    /* Hosts: NULL or "" means every interface. */
    size_t n = o.nhosts > 0 ? o.nhosts : (o.host != NULL && o.host[0] != '\0' ? 1 : 0);
    if (n > 0) {
        s->hosts = calloc(n, sizeof(*s->hosts));
        if (s->hosts == NULL)
            r = LC_ENOMEM;
        for (size_t i = 0; r == 0 && i < n; i++) {
            const char *h = o.nhosts > 0 ? o.hosts[i] : o.host;
            s->hosts[i] = strdup(h != NULL ? h : "");
            if (s->hosts[i] == NULL)
                r = LC_ENOMEM;
            s->nhosts = i + 1;
        }
    }
    snprintf(s->port, sizeof(s->port), "%d", o.port);
    if (r != 0) {
        lc_server_free(s);
        lc_future_unref(*fut);
        *fut = NULL;
        return r;
    }
    s->create_fut = lc_future_ref(*fut);
    s->refs++; /* held by the resolution until create_finish */
    resolve_next_host(s);
    return 0;
}

/* ---- Unix servers ---------------------------------------------------------------------------- */

int lc__unix_addr(const lc_unix_opts_t *o, struct sockaddr_un *sun, socklen_t *len);

int lc_loop_create_unix_server(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                               const lc_unix_opts_t *opts, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || factory == NULL || fut == NULL || opts == NULL || opts->backlog < 0)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    /* TLS settings are checked first, then go with the server. */
    lc__tls_config tls;
    int tr = lc__tls_config_init(&tls, opts->ssl, opts->server_hostname,
                                 opts->ssl_handshake_timeout, opts->ssl_shutdown_timeout, true);
    if (tr != 0)
        return tr;
    lc__tls_config_clear(&tls);
    int fd;
    if (opts->use_sock) {
        if (opts->path != NULL || opts->sock < 0)
            return LC_EINVAL;
        fd = dup(opts->sock);
        if (fd < 0)
            return -errno;
    } else {
        struct sockaddr_un sun;
        socklen_t len;
        int r = lc__unix_addr(opts, &sun, &len);
        if (r != 0)
            return r;
        /* A stale socket file at the path is replaced (asyncio does the same). */
        struct stat st;
        if (sun.sun_path[0] != '\0' && stat(sun.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(sun.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        if (bind(fd, (struct sockaddr *)&sun, len) != 0) {
            r = -errno;
            close(fd);
            return r;
        }
    }
    lc_server_t *s = server_new(loop, factory, factory_arg, opts->backlog, 0);
    if (s == NULL) {
        close(fd);
        return LC_ENOMEM;
    }
    int r = lc__tls_config_init(&s->tls, opts->ssl, NULL, opts->ssl_handshake_timeout,
                                opts->ssl_shutdown_timeout, true);
    if (r == 0)
        r = server_add_fd(s, fd);
    else
        close(fd);
    if (r == 0 && !opts->start_paused)
        r = server_listen(s);
    if (r == 0)
        r = lc_loop_create_future(loop, fut);
    if (r != 0) {
        lc_server_free(s);
        return r;
    }
    lc_future_set_result(*fut, s);
    return 0;
}
