/* Group servers: one host:port served by every loop of a group, either with one SO_REUSEPORT
 * listening socket per loop, or with loop 0 accepting and handing each connection to the loops
 * in turn through their inbound queues.
 *
 * libuv 1.44 has no flag for SO_REUSEPORT, and loopcore's servers take an already bound socket
 * (lc_server_opts.use_sock), so the sockets are made here: socket, setsockopt, bind; each loop
 * then listens on its own in lc_loop_create_server. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/stream_internal.h"
#include "loopcore/group.h"

typedef struct {
    lc_server_t *server; /* this loop's server (reuse-port: every loop; hand-off: loop 0) */
    int fd;              /* its listening fd, or -1 */
    long connections;    /* taken by this loop; its own thread only */
} gs_member;

struct lc_group_server_s {
    lc_group_t *group;
    lc_protocol_factory_fn factory;
    void *factory_arg;
    lc_group_server_mode mode;
    int port;
    unsigned n;
    gs_member *m;
    /* Hand-off: the next loop to get a connection (loop 0's thread only). */
    unsigned next;
};

/* A connection on its way to another loop. */
typedef struct {
    lc_call_t call;
    lc_group_server_t *gs;
    unsigned index;
    int fd;
} handoff_msg;

static int make_socket(const struct sockaddr *sa, socklen_t len, int backlog_unused)
{
    (void)backlog_unused;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        (sa->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, sa, len) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* ---- Running on a loop ----------------------------------------------------------------------- */

typedef struct {
    lc_group_server_t *gs;
    unsigned index;
    int backlog;
} serve_arg;

static void handoff_run(lc_call_t *call, int status)
{
    handoff_msg *m = lc_container_of(call, handoff_msg, call);
    if (status != 0) {
        close(m->fd); /* the target loop closed first: this connection is dropped */
        free(m);
        return;
    }
    lc_loop_t *loop = lc_group_loop(m->gs->group, m->index);
    lc_future_t *fut = NULL;
    /* The future is resolved already (the transport exists or the fd was closed). */
    if (lc_loop_connect_accepted_socket(loop, m->gs->factory, m->gs->factory_arg, m->fd, &fut) ==
        0) {
        if (lc_future_result(fut, NULL) == 0)
            m->gs->m[m->index].connections++;
        lc_future_unref(fut);
    }
    free(m);
}

/* Loop 0's accept hook in hand-off mode. */
static void handoff_accept(int fd, void *arg)
{
    lc_group_server_t *gs = arg;
    unsigned target = gs->next;
    gs->next = (gs->next + 1) % gs->n;
    handoff_msg *m = malloc(sizeof(*m));
    if (m == NULL) {
        close(fd);
        return;
    }
    m->gs = gs;
    m->index = target;
    m->fd = fd;
    /* Loop 0's own share goes through its queue too: the same order and path for every loop. */
    if (lc_loop_post_threadsafe(lc_group_loop(gs->group, target), &m->call, handoff_run) != 0) {
        close(fd);
        free(m);
    }
}

static int serve_on_loop(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    serve_arg *sa = arg;
    lc_group_server_t *gs = sa->gs;
    gs_member *mb = &gs->m[sa->index];
    lc_future_t *fut = NULL;
    int r = lc_loop_create_server(
        loop, gs->factory, gs->factory_arg,
        &(lc_server_opts){.use_sock = true, .sock = mb->fd, .backlog = sa->backlog}, &fut);
    if (r != 0)
        return r;
    void *server = NULL;
    r = lc_future_result(fut, &server); /* done at once for an existing socket */
    lc_future_unref(fut);
    if (r != 0)
        return r;
    /* The server serves a dup of the fd; keep ours for lc_group_server_sockets and close it
     * with the server. */
    close(mb->fd);
    int fds[1];
    size_t n = 1;
    lc_server_sockets(server, fds, &n);
    mb->fd = n > 0 ? fds[0] : -1;
    mb->server = server;
    if (gs->mode == LC_GROUP_SERVER_HANDOFF)
        lc__server_set_accept_hook(server, handoff_accept, gs);
    return 0;
}

static int close_on_loop(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    (void)result;
    gs_member *mb = arg;
    if (mb->server != NULL) {
        lc_server_free(mb->server);
        mb->server = NULL;
    }
    mb->fd = -1;
    return 0;
}

/* ---- Public ---------------------------------------------------------------------------------- */

static int resolve_numeric(const lc_group_server_opts *o, struct sockaddr_storage *ss,
                           socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    int family = o->family;
    const char *host = o->host;
    if (host == NULL)
        host = family == AF_INET6 ? "::" : "0.0.0.0";
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if ((family == AF_UNSPEC || family == AF_INET) && inet_pton(AF_INET, host, &sin->sin_addr)) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)o->port);
        *len = sizeof(*sin);
        return 0;
    }
    if ((family == AF_UNSPEC || family == AF_INET6) &&
        inet_pton(AF_INET6, host, &sin6->sin6_addr)) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)o->port);
        *len = sizeof(*sin6);
        return 0;
    }
    return LC_EINVAL;
}

int lc_group_create_server(lc_group_t *g, lc_protocol_factory_fn factory, void *factory_arg,
                           const lc_group_server_opts *opts, lc_group_server_t **out)
{
    if (out != NULL)
        *out = NULL;
    lc_group_server_opts o = opts != NULL ? *opts : (lc_group_server_opts){0};
    if (g == NULL || factory == NULL || out == NULL || o.port < 0 || o.port > 65535 ||
        o.backlog < 0 || (o.mode != LC_GROUP_SERVER_REUSEPORT && o.mode != LC_GROUP_SERVER_HANDOFF))
        return LC_EINVAL;
    lc_loop_t *running = NULL;
    if (lc_get_running_loop(&running) == 0)
        return LC_EBUSY;
    struct sockaddr_storage ss;
    socklen_t len;
    int r = resolve_numeric(&o, &ss, &len);
    if (r != 0)
        return r;
    lc_group_server_t *gs = calloc(1, sizeof(*gs));
    unsigned n = lc_group_size(g);
    if (gs == NULL || n == 0 || (gs->m = calloc(n, sizeof(*gs->m))) == NULL) {
        free(gs);
        return n == 0 ? LC_EINVAL : LC_ENOMEM;
    }
    gs->group = g;
    gs->factory = factory;
    gs->factory_arg = factory_arg;
    gs->mode = o.mode;
    gs->n = n;
    for (unsigned i = 0; i < n; i++)
        gs->m[i].fd = -1;
    /* Bind every socket first: with port 0 the first bind picks it and the rest reuse it. */
    unsigned nsock = o.mode == LC_GROUP_SERVER_REUSEPORT ? n : 1;
    for (unsigned i = 0; i < nsock && r == 0; i++) {
        int fd = make_socket((struct sockaddr *)&ss, len, o.backlog);
        if (fd < 0) {
            r = fd;
            break;
        }
        gs->m[i].fd = fd;
        if (i == 0) {
            struct sockaddr_storage bound;
            socklen_t blen = sizeof(bound);
            getsockname(fd, (struct sockaddr *)&bound, &blen);
            uint16_t port = bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                       : ((struct sockaddr_in6 *)&bound)->sin6_port;
            gs->port = ntohs(port);
            if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&ss)->sin_port = port;
            else
                ((struct sockaddr_in6 *)&ss)->sin6_port = port;
        }
    }
    /* Each loop listens on its own socket, on its own thread. */
    for (unsigned i = 0; i < nsock && r == 0; i++) {
        serve_arg sa = {gs, i, o.backlog};
        r = lc_loop_submit_wait(lc_group_loop(g, i), serve_on_loop, &sa, NULL);
    }
    if (r != 0) {
        for (unsigned i = 0; i < n; i++) {
            if (gs->m[i].server != NULL)
                lc_loop_submit_wait(lc_group_loop(g, i), close_on_loop, &gs->m[i], NULL);
            else if (gs->m[i].fd >= 0)
                close(gs->m[i].fd);
        }
        free(gs->m);
        free(gs);
        return r == LC_ECLOSED ? LC_EINVALIDSTATE : r;
    }
    *out = gs;
    return 0;
}

int lc_group_server_port(const lc_group_server_t *gs) { return gs != NULL ? gs->port : LC_EINVAL; }

int lc_group_server_sockets(const lc_group_server_t *gs, int *fds, size_t *n)
{
    if (gs == NULL || n == NULL || (fds == NULL && *n > 0))
        return LC_EINVAL;
    size_t k = 0;
    for (unsigned i = 0; i < gs->n; i++) {
        if (gs->m[i].fd < 0)
            continue;
        if (k < *n)
            fds[k] = gs->m[i].fd;
        k++;
    }
    *n = k;
    return 0;
}

/* Reuse-port: what this loop's server accepted. */
static int read_accepted(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    gs_member *mb = arg;
    *result = (void *)(intptr_t)(mb->server != NULL ? (long)lc_server_accepted(mb->server) : 0);
    return 0;
}

/* Hand-off: what was handed to this loop (loop 0's server counts every accept, so not that). */
static int read_handed(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    *result = (void *)(intptr_t)((gs_member *)arg)->connections;
    return 0;
}

long lc_group_server_connections(lc_group_server_t *gs, unsigned index)
{
    if (gs == NULL || index >= gs->n)
        return LC_EINVAL;
    void *res = NULL;
    gs_member *mb = &gs->m[index];
    int r = lc_loop_submit_wait(lc_group_loop(gs->group, index),
                                gs->mode == LC_GROUP_SERVER_HANDOFF ? read_handed : read_accepted,
                                mb, &res);
    return r != 0 ? r : (long)(intptr_t)res;
}

int lc_group_server_close(lc_group_server_t *gs)
{
    if (gs == NULL)
        return LC_EINVAL;
    /* Loop 0 first: in hand-off mode it is the one that accepts. Then every loop in turn, also
     * those with no server: each wait runs behind the hand-offs loop 0 posted before it closed
     * (they were pushed before this call's post), so no message still refers to gs after. */
    int first = 0;
    for (unsigned i = 0; i < gs->n; i++) {
        int r = lc_loop_submit_wait(lc_group_loop(gs->group, i), close_on_loop, &gs->m[i], NULL);
        if (r != 0 && r != LC_ECLOSED && first == 0)
            first = r;
    }
    free(gs->m);
    free(gs);
    return first;
}
