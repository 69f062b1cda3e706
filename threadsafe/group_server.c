/* Group servers: one host:port served by every loop of a group, either with one SO_REUSEPORT
 * listening socket per loop, or with loop 0 accepting and handing each connection to the loops
 * in turn through their inbound queues.
 *
 * Every socket is bound here, up front, on the caller's thread (lc__socket_bind, the engine's own
 * socket creation); each loop then listens on its own in lc_loop_create_server, which takes an
 * already bound socket (lc_server_opts_t.use_sock). Hand-offs become transports of the target
 * loop's server with lc__server_adopt (engine/group_hooks.h): no future per connection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/group_hooks.h"
#include "loopcore/errno.h"
#include "loopcore/group.h"
#include "loopcore/stream.h"
#include "loopcore/threadsafe.h"

/* Lifetime and counting across threads.
 *
 * References (refs): the creator's (dropped by lc_group_server_free, after the close), one per
 * loop whose server has its drained hook pending, one per hand-off message in flight. The memory
 * goes with the last; so a hand-off that a loop runs or hands back after the close still finds gs,
 * and the caller can still ask for wait_closed between lc_group_server_close and _free.
 *
 * Counting: each loop has its own lc_server_t (reuse-port: its listener; hand-off: loop 0's
 * listener, a socketless one on the others), and every connection the loop serves, accepted
 * there or handed to it, is a transport of that server: its active count lives on its own
 * thread. When a loop's server is closed and empty, its drained hook (run on that loop's thread,
 * or on the thread that closes the loop) counts the group's undrained loops down under mu; the
 * hook that reaches zero takes the wait_closed futures and posts each to the loop that owns it,
 * where it is resolved. A hand-off that arrives once its loop's server is closed closes its fd,
 * so a drained loop stays drained. */
typedef struct gs_member_s {
    lc_group_server_t *gs;
    lc_loop_t *loop;
    /* This loop's server (reuse-port: its listener; hand-off: loop 0's listener, the others'
     * socketless one). Loop thread only once created; NULL once the close step ran there. */
    lc_server_t *server;
    int fd;           /* its listening fd, or -1 */
    long connections; /* taken by this loop; its own thread only */
} gs_member;

/* A wait_closed future on its way to the loop that owns it. */
typedef struct gs_waiter_s {
    lc_call_t call;
    struct gs_waiter_s *next;
    lc_loop_t *origin;
    lc_future_t *fut; /* the waiter's reference; origin's thread only */
} gs_waiter;

struct lc_group_server_s {
    lc_group_t *group;
    lc_protocol_factory_fn factory;
    void *factory_arg;
    lc_group_server_mode_t mode;
    int port;
    unsigned n;
    gs_member *m;
    int backlog;
    /* TLS (lc_group_server_opts_t.ssl and timeouts), read by every loop's serve step. Needed only
     * while lc_group_create_server() runs, which makes every loop's server before it returns
     * (lc_group_submit_wait), while the caller's reference keeps the context alive; each
     * server then holds a reference of its own. So no OpenSSL call is made here. */
    struct ssl_ctx_st *ssl;
    double ssl_handshake_timeout, ssl_shutdown_timeout;
    /* Hand-off: the next loop to get a connection (loop 0's thread only). */
    unsigned next;
    /* See the top of the file. Increments are relaxed: each is made by a thread that already
     * holds a reference, so the count cannot reach zero meanwhile, and a new reference publishes
     * nothing (serve_on_loop: the creator's, held by the caller of lc_group_create_server;
     * handoff_accept: loop 0's hook reference, held while loop 0's server is open, and the
     * accept hook only runs while it is open). Decrements are acq_rel: the release orders all
     * that this thread did with gs (and, through the close step, with the servers) before its
     * drop; the acquire of the drop that reaches zero makes all of it visible to the thread that
     * frees gs. */
    _Atomic uint32_t refs;
    /* Set by the first lc_group_server_close (the caller's threads only, which are no loop of the
     * group; seq_cst exchange: of two concurrent closes exactly one runs the close steps). */
    _Atomic bool closed;
    pthread_mutex_t mu; /* guards the three below */
    unsigned undrained; /* loops whose server is not yet closed and empty */
    bool drained;       /* undrained reached zero: wait_closed resolves at once */
    gs_waiter *waiters; /* pending wait_closed futures (not yet taken by the last hook) */
};

/* A connection on its way to another loop; holds a reference to gs. */
typedef struct {
    lc_call_t call;
    lc_group_server_t *gs;
    unsigned index;
    int fd;
} handoff_msg;

/* ---- Lifetime -------------------------------------------------------------------------------- */

static void gs_ref(lc_group_server_t *gs)
{
    atomic_fetch_add_explicit(&gs->refs, 1, memory_order_relaxed);
}

static void gs_unref(lc_group_server_t *gs)
{
    if (atomic_fetch_sub_explicit(&gs->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* Every drained hook has run, so every server is closed. Those whose close step never ran
     * (the loop stopped first) were closed by their loop's close, on this thread (the hooks of
     * those loops run there, after every loop thread was joined): release them here. */
    for (unsigned i = 0; i < gs->n; i++)
        lc_server_free(gs->m[i].server);
    pthread_mutex_destroy(&gs->mu);
    free(gs->m);
    free(gs);
}

/* ---- Running on a loop ----------------------------------------------------------------------- */

/* The future's loop: resolve it (the waiter's post arrived), or release it (status LC_ECLOSED:
 * the loop was closed with the waiter queued; this is the thread that closes it). */
static void waiter_run(lc_call_t *call, int status)
{
    gs_waiter *w = lc_container_of(call, gs_waiter, call);
    if (status == 0 && !lc_future_done(w->fut))
        lc_future_set_result(w->fut, NULL);
    lc_future_unref(w->fut);
    free(w);
}

/* Loop i's server is closed and has no connection left (lc__server_set_drained_hook). */
static void member_drained(void *arg)
{
    gs_member *mb = arg;
    lc_group_server_t *gs = mb->gs;
    gs_waiter *w = NULL;
    pthread_mutex_lock(&gs->mu);
    if (--gs->undrained == 0) {
        gs->drained = true;
        w = gs->waiters;
        gs->waiters = NULL;
    }
    pthread_mutex_unlock(&gs->mu);
    while (w != NULL) {
        gs_waiter *next = w->next; /* once posted, w is the origin's */
        /* A refused post: the origin is closed; group.h says which thread may then release. */
        if (lc_loop_post_threadsafe(w->origin, &w->call, waiter_run) != 0)
            waiter_run(&w->call, LC_ECLOSED);
        w = next;
    }
    gs_unref(gs);
}

static void handoff_run(lc_call_t *call, int status)
{
    handoff_msg *m = lc_container_of(call, handoff_msg, call);
    lc_group_server_t *gs = m->gs;
    gs_member *mb = &gs->m[m->index];
    /* status != 0: the target was closed first (this is the closing thread). A closed server
     * (the close step ran here): too late, like a connection left in a closed listener's
     * backlog. Either way the connection is dropped. */
    if (status != 0 || mb->server == NULL)
        close(m->fd);
    else if (lc__server_adopt(mb->server, m->fd) == 0)
        mb->connections++;
    free(m);
    gs_unref(gs);
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
    gs_ref(gs); /* the message's */
    /* Loop 0's own share goes through its queue too: the same order and path for every loop. */
    if (lc_loop_post_threadsafe(gs->m[target].loop, &m->call, handoff_run) != 0) {
        close(fd);
        free(m);
        gs_unref(gs);
    }
}

static int serve_on_loop(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    gs_member *mb = arg;
    lc_group_server_t *gs = mb->gs;
    lc_server_t *server = NULL;
    if (mb->fd >= 0) {
        lc_future_t *fut = NULL;
        int r = lc_loop_create_server(
            loop, gs->factory, gs->factory_arg,
            &(lc_server_opts_t){.use_sock = true,
                                .sock = mb->fd,
                                .backlog = gs->backlog,
                                .ssl = gs->ssl,
                                .ssl_handshake_timeout = gs->ssl_handshake_timeout,
                                .ssl_shutdown_timeout = gs->ssl_shutdown_timeout},
            &fut);
        if (r != 0)
            return r;
        r = lc_future_result(fut, (void **)&server); /* done at once for an existing socket */
        lc_future_unref(fut);
        if (r != 0)
            return r;
        /* The server serves a dup of the fd; keep ours for lc_group_server_sockets and close
         * it with the server. */
        close(mb->fd);
        int fds[1];
        size_t n = 1;
        lc_server_sockets(server, fds, &n);
        mb->fd = n > 0 ? fds[0] : -1;
        if (gs->mode == LC_GROUP_SERVER_HANDOFF)
            lc__server_set_accept_hook(server, handoff_accept, gs);
    } else {
        /* Hand-off, loops 1..n-1: a server with no socket, for the connections handed here. */
        server = lc__server_new_bare(loop, gs->factory, gs->factory_arg);
        if (server == NULL)
            return LC_ENOMEM;
        int r = lc__server_set_tls(server, gs->ssl, gs->ssl_handshake_timeout,
                                   gs->ssl_shutdown_timeout);
        if (r != 0) {
            lc_server_free(server);
            return r;
        }
    }
    mb->server = server;
    gs_ref(gs); /* the hook's */
    lc__server_set_drained_hook(server, member_drained, mb);
    return 0;
}

/* A loop's close step: its server stops listening (loop 0 in hand-off mode: no more accepts, so
 * no more hand-offs) and adopts nothing more; the hook fires now or with its last connection. */
static int close_on_loop(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    (void)result;
    gs_member *mb = arg;
    lc_server_t *server = mb->server;
    mb->server = NULL; /* the last gs_unref frees the servers still listed: not this one */
    mb->fd = -1;
    lc_server_free(server);
    return 0;
}

/* ---- Public ---------------------------------------------------------------------------------- */

static int resolve_numeric(const lc_group_server_opts_t *o, struct sockaddr_storage *ss,
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
                           const lc_group_server_opts_t *opts, lc_group_server_t **out)
{
    if (out != NULL)
        *out = NULL;
    lc_group_server_opts_t o = opts != NULL ? *opts : (lc_group_server_opts_t){0};
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
    gs->backlog = o.backlog;
    gs->n = n;
    /* Checked by every loop's lc_loop_create_server too, but here before any socket is made. */
    if (!(o.ssl_handshake_timeout >= 0) || !(o.ssl_shutdown_timeout >= 0) ||
        (o.ssl == NULL && (o.ssl_handshake_timeout != 0 || o.ssl_shutdown_timeout != 0))) {
        free(gs->m);
        free(gs);
        return LC_EINVAL;
    }
    gs->ssl = o.ssl;
    gs->ssl_handshake_timeout = o.ssl_handshake_timeout;
    gs->ssl_shutdown_timeout = o.ssl_shutdown_timeout;
    atomic_init(&gs->refs, 1); /* the creator's */
    atomic_init(&gs->closed, false);
    pthread_mutex_init(&gs->mu, NULL);
    gs->undrained = n;
    for (unsigned i = 0; i < n; i++) {
        gs->m[i].gs = gs;
        gs->m[i].loop = lc_group_loop(g, i);
        gs->m[i].fd = -1;
    }
    /* Bind every socket first: with port 0 the first bind picks it and the rest reuse it. */
    unsigned nsock = o.mode == LC_GROUP_SERVER_REUSEPORT ? n : 1;
    for (unsigned i = 0; i < nsock && r == 0; i++) {
        int fd = lc__socket_bind((struct sockaddr *)&ss, len, 0,
                                 LC__SOCK_REUSEADDR | LC__SOCK_REUSEPORT);
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
    /* Each loop serves on its own thread (hand-off: loops 1..n-1 with a socketless server).
     * Loop 0 last in hand-off mode: it hands connections to the others once it listens. */
    for (unsigned k = 0; k < n && r == 0; k++) {
        unsigned i = o.mode == LC_GROUP_SERVER_HANDOFF ? (k + 1) % n : k;
        r = lc_group_submit_wait(g, i, serve_on_loop, &gs->m[i], NULL);
    }
    if (r != 0) {
        /* The close steps release what was made; gs goes with the last hook (connections a
         * reuse-port loop took meanwhile stay served until they close). */
        for (unsigned i = 0; i < n; i++) {
            if (gs->m[i].server != NULL)
                lc_group_submit_wait(g, i, close_on_loop, &gs->m[i], NULL);
            else if (gs->m[i].fd >= 0)
                close(gs->m[i].fd);
        }
        gs_unref(gs);
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

/* The connections this loop serves now, accepted here or handed here. */
static int read_active(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    gs_member *mb = arg;
    *result = (void *)(intptr_t)(mb->server != NULL ? (long)lc_server_active(mb->server) : 0);
    return 0;
}

static long read_member(lc_group_server_t *gs, unsigned index, lc_submit_fn fn)
{
    if (gs == NULL || index >= gs->n)
        return LC_EINVAL;
    /* Once closed, the loops' servers are released (close_on_loop): nothing left to count. */
    if (atomic_load(&gs->closed))
        return LC_ECLOSED;
    void *res = NULL;
    int r = lc_group_submit_wait(gs->group, index, fn, &gs->m[index], &res);
    return r != 0 ? r : (long)(intptr_t)res;
}

long lc_group_server_connections(lc_group_server_t *gs, unsigned index)
{
    return read_member(
        gs, index, gs != NULL && gs->mode == LC_GROUP_SERVER_HANDOFF ? read_handed : read_accepted);
}

long lc_group_server_active(lc_group_server_t *gs, unsigned index)
{
    return read_member(gs, index, read_active);
}

int lc_group_server_wait_closed(lc_group_server_t *gs, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (gs == NULL || fut == NULL)
        return LC_EINVAL;
    lc_loop_t *origin;
    if (lc_get_running_loop(&origin) != 0)
        return LC_ENORUNNINGLOOP;
    gs_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return LC_ENOMEM;
    lc_future_t *f;
    int r = lc_loop_create_future(origin, &f);
    if (r != 0) {
        free(w);
        return r;
    }
    w->origin = origin;
    w->fut = lc_future_ref(f);
    pthread_mutex_lock(&gs->mu);
    bool drained = gs->drained;
    if (!drained) {
        w->next = gs->waiters;
        gs->waiters = w;
    }
    pthread_mutex_unlock(&gs->mu);
    if (drained) {
        lc_future_set_result(f, NULL);
        lc_future_unref(w->fut);
        free(w);
    }
    *fut = f;
    return 0;
}

int lc_group_server_close(lc_group_server_t *gs)
{
    if (gs == NULL)
        return LC_EINVAL;
    if (atomic_exchange(&gs->closed, true))
        return 0;
    /* Loop 0 first: in hand-off mode it is the one that accepts, and once its step ran nothing
     * new is handed off. Hand-offs still queued find their loop's server closed (or not yet, if
     * they run first: then that loop counts them) and hold references of their own, so gs
     * outlives them. A loop that has stopped (lc_group_stop) does not keep this waiting: its
     * server closes with the loop, in lc_group_free(). */
    int first = 0;
    for (unsigned i = 0; i < gs->n; i++) {
        int r = lc_group_submit_wait(gs->group, i, close_on_loop, &gs->m[i], NULL);
        if (r != 0 && r != LC_ECLOSED && first == 0)
            first = r;
    }
    return first;
}

int lc_group_server_free(lc_group_server_t *gs)
{
    if (gs == NULL)
        return LC_EINVAL;
    int r = lc_group_server_close(gs); /* 0 at once if the caller closed it already */
    gs_unref(gs);                      /* the creator's */
    return r;
}
