/* Group datagram endpoints (include/loopcore/datagram.h, "Group endpoints"): one UDP endpoint per
 * loop of a group, each on its own SO_REUSEPORT socket bound to the same address, so that the
 * kernel spreads the flows over the loops. This file owns their creation, close and release.
 *
 * As group servers do (threadsafe/group_server.c), every socket is bound here, on the caller's
 * thread, before any loop serves (with port 0 the first bind picks the port that the others
 * reuse); each loop then wraps its socket with lc_loop_create_datagram_endpoint (use_sock), on
 * its own thread, through lc_group_submit_wait. The group endpoint holds a reference to each
 * loop's transport, taken and dropped on that loop's thread (transport counts are not atomic)
 * while the loop runs, or on a thread that knows the loop's thread has left it for good.
 *
 * Either order of ends works. The group endpoint is a part of the group (group_parts.h): if
 * lc_group_free() comes first, it drops the references (its loop threads are joined) and marks
 * the endpoint gone before closing the loops, whose close ends the transports (connection_lost
 * with LC_ECLOSED); lc_group_datagram_close / _free then touch neither the group nor a loop. If
 * the group was only stopped, close and free skip the loops that left (lc_group_submit_wait says
 * LC_ECLOSED): their transports end when lc_group_free() closes those loops. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loopcore/datagram.h"
#include "loopcore/errno.h"
#include "loopcore/group.h"
#include "loopcore/threadsafe.h"
#include "threadsafe/group_parts.h"

typedef struct {
    lc_group_datagram_t *gd;
    int fd;                     /* the bound socket, until its loop has made the endpoint */
    lc_datagram_transport_t *t; /* the loop's endpoint (our reference), NULL once released */
} gd_member;

struct lc_group_datagram_s {
    lc__group_part_t part; /* in the group's parts from the create until the free */
    /* Set by the group's lc_group_free() (group_gone): the group and its loops are gone, and
     * with them our references. Read by the owner's close and free. Ordering: the header forbids
     * calling them at the same time as lc_group_free(), so the caller's own synchronisation
     * (or its being the same thread) orders the store before the load; the atomic (seq_cst)
     * only makes a racing misuse a defined read instead of a data race under TSan. */
    _Atomic bool group_gone;
    lc_group_t *group;
    lc_datagram_protocol_factory_fn factory;
    void *factory_arg;
    int port;
    unsigned n;
    bool closed;
    bool single_segments;
    gd_member *m;
};

static int parse_numeric(const lc_group_datagram_opts_t *o, struct sockaddr_storage *ss,
                         socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    const char *host = o->host != NULL ? o->host : o->family == AF_INET6 ? "::" : "0.0.0.0";
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if ((o->family == AF_UNSPEC || o->family == AF_INET) &&
        inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)o->port);
        *len = sizeof(*sin);
        return 0;
    }
    if ((o->family == AF_UNSPEC || o->family == AF_INET6) &&
        inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)o->port);
        *len = sizeof(*sin6);
        return 0;
    }
    return LC_EINVAL;
}

/* A datagram socket with SO_REUSEPORT (and SO_BROADCAST if asked), bound to addr. */
static int bind_socket(const struct sockaddr *addr, socklen_t len, bool broadcast)
{
    int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        (broadcast && setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) != 0) ||
        bind(fd, addr, len) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* On loop i's thread: the endpoint from its socket (use_sock settles the future at once). */
static int open_on_loop(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    gd_member *mb = arg;
    lc_future_t *fut = NULL;
    int r = lc_loop_create_datagram_endpoint(
        loop, mb->gd->factory, mb->gd->factory_arg,
        &(lc_datagram_opts_t){
            .use_sock = true, .sock = mb->fd, .single_segments = mb->gd->single_segments},
        &fut);
    if (r != 0)
        return r;
    void *t = NULL;
    r = lc_future_result(fut, &t);
    lc_future_unref(fut);
    if (r != 0)
        return r;
    mb->t = lc_datagram_transport_ref(t);
    return 0;
}

static int close_on_loop(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    (void)result;
    gd_member *mb = arg;
    return mb->t != NULL ? lc_datagram_transport_close(mb->t) : 0;
}

/* On the loop's thread: once the endpoint is gone (connection_lost has run: its socket is
 * closed), drop our reference. *result is non-NULL while it is still closing. */
static int release_on_loop(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    gd_member *mb = arg;
    if (mb->t != NULL && lc_datagram_transport_get_fd(mb->t) != LC_ECLOSED) {
        *result = mb;
        return 0;
    }
    lc_datagram_transport_unref(mb->t);
    mb->t = NULL;
    return 0;
}

static void release_all(lc_group_datagram_t *gd)
{
    for (unsigned i = 0; i < gd->n; i++) {
        /* connection_lost comes through call_soon after the close: a few turns of the loop, or
         * longer while close() sends what is queued. Bounded, so a stuck peer cannot hang us
         * (the loop's own close then calls connection_lost, and our reference is left). */
        for (int tries = 0; tries < 10000 && gd->m[i].t != NULL; tries++) {
            void *pending = NULL;
            int r = lc_group_submit_wait(gd->group, i, release_on_loop, &gd->m[i], &pending);
            if (r == LC_ECLOSED) {
                /* The loop's thread has left it for good (lc_group_stop) and said so under the
                 * group's mutex, which lc_group_submit_wait took after: nothing touches the
                 * transport until lc_group_free() closes the loop, so its reference can go here.
                 * The transport lives on until then. */
                lc_datagram_transport_unref(gd->m[i].t);
                gd->m[i].t = NULL;
                break;
            }
            if (r != 0)
                break;
            if (pending != NULL)
                nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
        if (gd->m[i].fd >= 0)
            close(gd->m[i].fd);
    }
}

/* lc_group_free(), on its thread, every loop thread joined, before it closes the loops. */
static void group_gone(lc__group_part_t *p)
{
    lc_group_datagram_t *gd = lc_container_of(p, lc_group_datagram_t, part);
    for (unsigned i = 0; i < gd->n; i++) {
        lc_datagram_transport_unref(gd->m[i].t); /* ended by its loop's close, next */
        gd->m[i].t = NULL;
    }
    atomic_store(&gd->group_gone, true);
}

int lc_group_create_datagram_endpoint(lc_group_t *g, lc_datagram_protocol_factory_fn factory,
                                      void *factory_arg, const lc_group_datagram_opts_t *opts,
                                      lc_group_datagram_t **out)
{
    if (out != NULL)
        *out = NULL;
    lc_group_datagram_opts_t o = opts != NULL ? *opts : (lc_group_datagram_opts_t){0};
    if (g == NULL || factory == NULL || out == NULL || o.port < 0 || o.port > 65535)
        return LC_EINVAL;
    lc_loop_t *running = NULL;
    if (lc_get_running_loop(&running) == 0)
        return LC_EBUSY;
    struct sockaddr_storage ss;
    socklen_t len;
    int r = parse_numeric(&o, &ss, &len);
    if (r != 0)
        return r;
    unsigned n = lc_group_size(g);
    if (n == 0)
        return LC_EINVAL;
    lc_group_datagram_t *gd = calloc(1, sizeof(*gd));
    if (gd == NULL || (gd->m = calloc(n, sizeof(*gd->m))) == NULL) {
        free(gd);
        return LC_ENOMEM;
    }
    gd->group = g;
    gd->part.group_gone = group_gone;
    atomic_init(&gd->group_gone, false);
    gd->factory = factory;
    gd->factory_arg = factory_arg;
    gd->n = n;
    gd->single_segments = o.single_segments;
    for (unsigned i = 0; i < n; i++) {
        gd->m[i].gd = gd;
        gd->m[i].fd = -1;
    }
    for (unsigned i = 0; i < n && r == 0; i++) {
        int fd = bind_socket((struct sockaddr *)&ss, len, o.allow_broadcast);
        if (fd < 0) {
            r = fd;
            break;
        }
        gd->m[i].fd = fd;
        if (i == 0) { /* port 0: every other socket takes the port the first one got */
            struct sockaddr_storage b;
            socklen_t bl = sizeof(b);
            if (getsockname(fd, (struct sockaddr *)&b, &bl) != 0) {
                r = -errno;
                break;
            }
            uint16_t port = b.ss_family == AF_INET ? ((struct sockaddr_in *)&b)->sin_port
                                                   : ((struct sockaddr_in6 *)&b)->sin6_port;
            if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&ss)->sin_port = port;
            else
                ((struct sockaddr_in6 *)&ss)->sin6_port = port;
            gd->port = ntohs(port);
        }
    }
    for (unsigned i = 0; i < n && r == 0; i++) {
        void *unused = NULL;
        r = lc_group_submit_wait(g, i, open_on_loop, &gd->m[i], &unused);
        /* The transport works on a dup of the socket: ours goes now. */
        close(gd->m[i].fd);
        gd->m[i].fd = -1;
    }
    if (r != 0) {
        for (unsigned i = 0; i < n; i++) {
            void *unused = NULL;
            if (gd->m[i].t != NULL)
                lc_group_submit_wait(g, i, close_on_loop, &gd->m[i], &unused);
        }
        release_all(gd);
        free(gd->m);
        free(gd);
        return r;
    }
    lc__group_add_part(g, &gd->part);
    *out = gd;
    return 0;
}

int lc_group_datagram_port(const lc_group_datagram_t *gd) { return gd != NULL ? gd->port : 0; }

int lc_group_datagram_close(lc_group_datagram_t *gd)
{
    if (gd == NULL)
        return LC_EINVAL;
    lc_loop_t *running = NULL;
    if (lc_get_running_loop(&running) == 0)
        return LC_EBUSY;
    if (gd->closed)
        return 0;
    gd->closed = true;
    if (atomic_load(&gd->group_gone))
        return 0; /* the loops' close ended every endpoint */
    int first = 0;
    for (unsigned i = 0; i < gd->n; i++) {
        void *unused = NULL;
        int r = lc_group_submit_wait(gd->group, i, close_on_loop, &gd->m[i], &unused);
        /* LC_ECLOSED: the loop has stopped; its endpoint ends when lc_group_free() closes it. */
        if (r != 0 && r != LC_ECLOSED && first == 0)
            first = r;
    }
    return first;
}

int lc_group_datagram_free(lc_group_datagram_t *gd)
{
    if (gd == NULL)
        return LC_EINVAL;
    int r = lc_group_datagram_close(gd);
    if (r == LC_EBUSY)
        return r;
    if (!atomic_load(&gd->group_gone)) {
        release_all(gd);
        lc__group_remove_part(gd->group, &gd->part);
    }
    free(gd->m);
    free(gd);
    return r;
}
