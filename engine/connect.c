/* create_connection and create_unix_connection: resolve (off the loop thread), then try each
 * address in turn with a non-blocking connect until one succeeds. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/stream_internal.h"

typedef struct {
    lc__resource res;
    lc_loop_t *loop;
    lc_future_t *fut; /* the caller's future (we hold a reference) */
    lc_protocol_factory_fn factory;
    void *factory_arg;
    struct addrinfo *addrs; /* remote candidates (uv_freeaddrinfo) */
    struct addrinfo *next;  /* the next candidate to try */
    struct addrinfo *local; /* local_addr candidates, or NULL */
    char *remote_host, *remote_port;
    int family, proto, flags;
    bool nodelay;
    bool resolving;     /* a getaddrinfo is in flight: it will come back to us */
    bool abandoned;     /* the loop closed while resolving: free when it comes back */
    lc__tls_config tls; /* TLS settings (tls.ctx NULL: plaintext) */
    int fd;             /* the socket being connected, or -1 */
    int last_err;
    /* Watches fd for the end of a connect. A handle is bound to one fd, and its memory is
     * libuv's until its close callback, so each attempt gets a fresh allocation. */
    uv_poll_t *poll;
} connector;

static void connector_try_next(connector *c);

static void connector_free(connector *c)
{
    if (c->addrs != NULL)
        uv_freeaddrinfo(c->addrs);
    if (c->local != NULL)
        uv_freeaddrinfo(c->local);
    free(c->remote_host);
    free(c->remote_port);
    lc__tls_config_clear(&c->tls);
    lc_future_unref(c->fut);
    free(c);
}

static void free_handle_cb(uv_handle_t *h) { free(h); }

static void connector_drop_poll(connector *c)
{
    if (c->poll != NULL) {
        uv_close((uv_handle_t *)c->poll, free_handle_cb);
        c->poll = NULL;
    }
}

/* Done, one way or the other: release the poll handle (if any) and the memory. */
static void connector_finish(connector *c)
{
    lc__loop_remove_resource(c->loop, &c->res);
    connector_drop_poll(c);
    connector_free(c);
}

static void connector_fail(connector *c, int err)
{
    connector_drop_poll(c); /* before the fd goes */
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (!lc_future_done(c->fut))
        lc_future_set_error(c->fut, err);
    connector_finish(c);
}

static void connector_force_close(lc__resource *r)
{
    connector *c = lc_container_of(r, connector, res);
    if (c->resolving) {
        /* The resolver's callback still comes; it frees us then. */
        lc__loop_remove_resource(c->loop, &c->res);
        c->abandoned = true;
        return;
    }
    connector_fail(c, LC_ECLOSED);
}

static void connector_connected(connector *c)
{
    int fd = c->fd;
    c->fd = -1;
    if (lc_future_done(c->fut)) { /* cancelled while connecting */
        close(fd);
        connector_finish(c);
        return;
    }
    if (c->nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    /* Stop watching the fd here before the transport watches it with its own handle. */
    connector_drop_poll(c);
    int err;
    if (c->tls.ctx != NULL) {
        /* The transport resolves the future when its handshake ends. */
        if (lc__transport_new_tls(c->loop, fd, c->factory, c->factory_arg, NULL, &c->tls, c->fut,
                                  &err) == NULL)
            lc_future_set_error(c->fut, err);
        connector_finish(c);
        return;
    }
    lc_transport_t *t = lc__transport_new(c->loop, fd, c->factory, c->factory_arg, NULL, &err);
    if (t == NULL)
        lc_future_set_error(c->fut, err);
    else
        lc_future_set_result(c->fut, t);
    connector_finish(c);
}

static void connector_poll_cb(uv_poll_t *p, int status, int events)
{
    (void)events;
    if (!lc__io_enter((uv_handle_t *)p))
        return;
    connector *c = p->data;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0 && status < 0)
        err = -status;
    if (err == 0) {
        connector_connected(c);
        return;
    }
    c->last_err = -err;
    connector_drop_poll(c); /* before the fd goes */
    close(c->fd);
    c->fd = -1;
    connector_try_next(c);
}

static int bind_local(connector *c, int fd, int family)
{
    if (c->local == NULL)
        return 0;
    int last = LC_EINVAL;
    for (struct addrinfo *a = c->local; a != NULL; a = a->ai_next) {
        if (a->ai_family != family)
            continue;
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0)
            return 0;
        last = -errno;
    }
    return last;
}

/* Starts a non-blocking connect to the next candidate; on immediate failure, moves on. */
static void connector_try_next(connector *c)
{
    if (lc_future_done(c->fut)) { /* cancelled */
        connector_finish(c);
        return;
    }
    while (c->next != NULL) {
        struct addrinfo *a = c->next;
        c->next = a->ai_next;
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            c->last_err = -errno;
            continue;
        }
        int r = bind_local(c, fd, a->ai_family);
        if (r != 0) {
            c->last_err = r;
            close(fd);
            continue;
        }
        c->fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            connector_connected(c);
            return;
        }
        if (errno != EINPROGRESS) {
            c->last_err = -errno;
            close(fd);
            c->fd = -1;
            continue;
        }
        /* Wait for writability with a poll handle on this fd. */
        c->poll = malloc(sizeof(*c->poll));
        r = c->poll != NULL ? uv_poll_init(lc__loop_uv(c->loop), c->poll, fd) : LC_ENOMEM;
        if (r != 0) {
            free(c->poll);
            c->poll = NULL;
        } else {
            c->poll->data = c;
            r = uv_poll_start(c->poll, UV_WRITABLE, connector_poll_cb);
            if (r != 0)
                connector_drop_poll(c);
        }
        if (r != 0) {
            c->last_err = r;
            close(fd);
            c->fd = -1;
            continue;
        }
        return;
    }
    connector_fail(c, c->last_err != 0 ? c->last_err : -ECONNREFUSED);
}

static void connector_resolved(int status, struct addrinfo *res, void *arg);

/* The common start of a resolution's callback: false when the connector is finished (abandoned:
 * freed with res; or the resolution failed: the connection fails with its error). */
static bool connector_resolution_ok(connector *c, int status, struct addrinfo *res)
{
    c->resolving = false;
    if (c->abandoned) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        connector_free(c);
        return false;
    }
    if (status != 0) {
        connector_fail(c, status);
        return false;
    }
    return true;
}

static void connector_local_resolved(int status, struct addrinfo *res, void *arg)
{
    connector *c = arg;
    if (!connector_resolution_ok(c, status, res))
        return;
    c->local = res;
    struct addrinfo hints = {0};
    hints.ai_family = c->family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = c->proto;
    hints.ai_flags = c->flags;
    c->resolving = true;
    int r = lc__resolve(c->loop, c->remote_host, c->remote_port, &hints, connector_resolved, c);
    if (r != 0) {
        c->resolving = false;
        connector_fail(c, r);
    }
}

static void connector_resolved(int status, struct addrinfo *res, void *arg)
{
    connector *c = arg;
    if (!connector_resolution_ok(c, status, res))
        return;
    c->addrs = res;
    c->next = res;
    connector_try_next(c);
}

static connector *connector_new(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                                lc_future_t *fut)
{
    connector *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->loop = loop;
    c->fut = lc_future_ref(fut);
    c->factory = factory;
    c->factory_arg = factory_arg;
    c->fd = -1;
    c->res.force_close = connector_force_close;
    lc__loop_add_resource(loop, &c->res);
    return c;
}

int lc_loop_create_connection(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                              const lc_connection_opts_t *opts, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    lc_connection_opts_t o = opts != NULL ? *opts : (lc_connection_opts_t){0};
    if (loop == NULL || factory == NULL || fut == NULL)
        return LC_EINVAL;
    if (o.use_sock && (o.host != NULL || o.port != NULL || o.port_num != 0 ||
                       o.local_host != NULL || o.family != 0))
        return LC_EINVAL; /* sock excludes the address arguments, as in asyncio */
    if (!o.use_sock && o.host == NULL && o.port == NULL && o.port_num == 0)
        return LC_EINVAL;
    if (o.port_num < 0 || o.port_num > 65535 || o.local_port < 0 || o.local_port > 65535)
        return LC_EINVAL;
    if (o.use_sock && o.sock < 0)
        return LC_EINVAL;
    /* TLS: server_hostname defaults to host (asyncio); with sock there is none to default to. */
    const char *sni = o.server_hostname != NULL || o.ssl == NULL ? o.server_hostname : o.host;
    if (o.ssl != NULL && sni == NULL)
        return LC_EINVAL;
    lc__tls_config tls;
    int r = lc__tls_config_init(&tls, o.ssl, sni, o.ssl_handshake_timeout, o.ssl_shutdown_timeout,
                                false);
    if (r != 0)
        return r;
    if (o.use_sock) {
        int fd = dup(o.sock); /* the transport owns its fd; the caller keeps theirs */
        r = fd >= 0 ? lc__connect_fd(loop, factory, factory_arg, fd, &tls, fut) : -errno;
        lc__tls_config_clear(&tls); /* the transport's SSL holds what it needs */
        return r;
    }
    r = lc_loop_create_future(loop, fut);
    if (r != 0) {
        lc__tls_config_clear(&tls);
        return r;
    }
    connector *c = connector_new(loop, factory, factory_arg, *fut);
    char portbuf[16];
    if (c == NULL) {
        lc__tls_config_clear(&tls);
        r = LC_ENOMEM;
        goto fail;
    }
    c->tls = tls;
    c->family = o.family;
    c->proto = o.proto;
    c->flags = o.flags;
    c->nodelay = !o.nagle;
    snprintf(portbuf, sizeof(portbuf), "%d", o.port_num);
    c->remote_host = o.host != NULL ? strdup(o.host) : NULL;
    c->remote_port = strdup(o.port != NULL ? o.port : portbuf);
    if ((o.host != NULL && c->remote_host == NULL) || c->remote_port == NULL) {
        lc__loop_remove_resource(loop, &c->res);
        connector_free(c);
        r = LC_ENOMEM;
        goto fail;
    }
    c->resolving = true;
    if (o.local_host != NULL || o.local_port != 0) {
        char lport[16];
        snprintf(lport, sizeof(lport), "%d", o.local_port);
        struct addrinfo hints = {0};
        hints.ai_family = o.family;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        r = lc__resolve(loop, o.local_host, lport, &hints, connector_local_resolved, c);
    } else {
        struct addrinfo hints = {0};
        hints.ai_family = o.family;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_protocol = o.proto;
        hints.ai_flags = o.flags;
        r = lc__resolve(loop, c->remote_host, c->remote_port, &hints, connector_resolved, c);
    }
    if (r != 0) {
        lc__loop_remove_resource(loop, &c->res);
        connector_free(c);
        goto fail;
    }
    return 0;
fail:
    lc_future_unref(*fut);
    *fut = NULL;
    return r;
}

/* ---- Unix sockets ---------------------------------------------------------------------------- */

int lc__unix_addr(const lc_unix_opts_t *o, struct sockaddr_un *sun, socklen_t *len);

int lc__unix_addr(const lc_unix_opts_t *o, struct sockaddr_un *sun, socklen_t *len)
{
    if (o->path == NULL)
        return LC_EINVAL;
    size_t n = o->path_len != 0 ? o->path_len : strlen(o->path);
    if (n == 0 || n >= sizeof(sun->sun_path))
        return LC_EINVAL;
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, o->path, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (o->path[0] != '\0'));
    return 0;
}

int lc_loop_create_unix_connection(lc_loop_t *loop, lc_protocol_factory_fn factory,
                                   void *factory_arg, const lc_unix_opts_t *opts, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || factory == NULL || fut == NULL || opts == NULL)
        return LC_EINVAL;
    /* TLS over a Unix socket: no host to default server_hostname to, so it must be given. */
    if (opts->ssl != NULL && opts->server_hostname == NULL)
        return LC_EINVAL;
    lc__tls_config tls;
    int r = lc__tls_config_init(&tls, opts->ssl, opts->server_hostname, opts->ssl_handshake_timeout,
                                opts->ssl_shutdown_timeout, false);
    if (r != 0)
        return r;
    if (opts->use_sock) {
        int fd = opts->path != NULL || opts->sock < 0 ? -1 : dup(opts->sock);
        if (opts->path != NULL || opts->sock < 0)
            r = LC_EINVAL;
        else
            r = fd >= 0 ? lc__connect_fd(loop, factory, factory_arg, fd, &tls, fut) : -errno;
        lc__tls_config_clear(&tls);
        return r;
    }
    struct sockaddr_un sun;
    socklen_t len;
    r = lc__unix_addr(opts, &sun, &len);
    if (r == 0)
        r = lc_loop_create_future(loop, fut);
    if (r != 0) {
        lc__tls_config_clear(&tls);
        return r;
    }
    connector *c = connector_new(loop, factory, factory_arg, *fut);
    if (c == NULL) {
        lc__tls_config_clear(&tls);
        lc_future_unref(*fut);
        *fut = NULL;
        return LC_ENOMEM;
    }
    c->tls = tls;
    /* One candidate, built by hand: connector_try_next() walks an addrinfo list. */
    struct addrinfo *ai = calloc(1, sizeof(*ai) + sizeof(sun));
    if (ai == NULL) {
        lc__loop_remove_resource(loop, &c->res);
        connector_free(c);
        lc_future_unref(*fut);
        *fut = NULL;
        return LC_ENOMEM;
    }
    ai->ai_family = AF_UNIX;
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_addr = (struct sockaddr *)(ai + 1);
    ai->ai_addrlen = len;
    memcpy(ai->ai_addr, &sun, sizeof(sun));
    c->next = ai;
    connector_try_next(c);
    /* The hand-made candidate is not from getaddrinfo: free it ourselves. */
    free(ai);
    return 0;
}
