/* Datagram transports and create_datagram_endpoint (include/loopcore/datagram.h). This file owns
 * everything about datagram sockets: the endpoint's creation (resolution off the loop thread,
 * binding, connecting, Unix datagram paths), the transport on a uv_poll_t with our own system
 * calls (batched receives with recvmmsg into a per-thread buffer pool, UDP GRO split back into
 * datagrams, sends tried at once and queued only for what would block, queued ones flushed with
 * sendmmsg, UDP GSO for lc_datagram_transport_sendto_many), flow control, errors routed to
 * error_received, and the close / abort / connection_lost life cycle.
 *
 * Why uv_poll and not uv_udp_t: libuv's UDP handle copies nothing on send but has no flow
 * control at the low-water mark, batches receives only when asked at init (and then hands us
 * its own buffer management), and knows neither GSO nor GRO; the system calls are the ones it
 * would make. Stream transports (engine/transport.c) made the same choice. */
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/fdmap.h"
#include "engine/stream_internal.h"
#include "loopcore/datagram.h"

/* Datagrams per recvmmsg() and buffers in a thread's pool; a readiness reads at most
 * LC__DG_ROUNDS batches, so that one busy endpoint cannot starve the rest of the loop (the poll
 * is level-triggered: what is left is reported again at the next iteration). */
#define LC__DG_BATCH 32
#define LC__DG_ROUNDS 8
/* Each receive buffer holds any UDP datagram (65,527 bytes at most) and a GRO super-packet
 * (the kernel coalesces at most 64 KiB). */
#define LC__DG_BUF 65536
/* Queued datagrams per sendmmsg(). */
#define LC__DG_SEND_BATCH 64
/* Sends gathered during a delivered batch (see "Gathering sends"): at most this many, and this
 * many bytes copied (what is not already in the receive buffers), before an early flush. */
#define LC__DG_GATHER 64
#define LC__DG_GATHER_BYTES (256 * 1024)
/* UDP GSO: the kernel's UDP_MAX_SEGMENTS (64 in every kernel that has UDP_SEGMENT). */
#define LC__DG_GSO_MAX 64
#define LC__DG_DEFAULT_HIGH (64 * 1024)
/* The most a queue may hold: 16 times the high-water mark, and at least 1 MiB. A protocol that
 * ignores pause_writing (an echo server flooded faster than its socket drains) would otherwise
 * grow it without bound; past it a send is refused with -ENOBUFS, as a full socket buffer drops
 * a datagram. */
#define LC__DG_QUEUE_CAP(t)                                                                        \
    ((t)->high < 65536 ? (size_t)1 << 20 : (t)->high > SIZE_MAX / 16 ? SIZE_MAX : (t)->high * 16)

/* A queued datagram (copied): a singly linked FIFO. */
typedef struct lc__dgram_s {
    struct lc__dgram_s *next;
    size_t len;
    socklen_t namelen; /* 0: the connected peer */
    struct sockaddr_storage name;
    char data[];
} lc__dgram;

struct lc_datagram_transport_s {
    lc__resource res;
    uv_poll_t poll;
    lc_loop_t *loop;
    int fd;
    int family; /* AF_INET, AF_INET6, AF_UNIX */
    int lost_err;
    unsigned events;
    uint32_t refs; /* one for the endpoint (dropped when its poll handle closes) + users' */
    bool connected;
    bool closing;
    bool lost_scheduled;
    bool lost_delivered;
    bool poll_open;
    bool write_paused;
    bool gso; /* UDP_SEGMENT works on this socket (cleared if a send refuses it) */
    bool gro; /* UDP_GRO is on: a datagram may carry coalesced segments */
    struct sockaddr_storage peer;
    socklen_t peerlen;
    const lc_datagram_protocol_t *proto;
    void *user;
    lc__dgram *qhead, *qtail;
    size_t qbytes; /* payload bytes queued */
    size_t qmem;   /* memory the queue holds (payloads and their nodes), for LC__DG_QUEUE_CAP */
    size_t high, low;
};

/* ---- The per-thread receive pool --------------------------------------------------------------
 *
 * One per thread that runs datagram transports, shared by all of them: a datagram is valid only
 * during its datagram_received call, and one thread runs one poll callback at a time. The 2 MiB
 * of buffers are reserved, not touched: a page is used only when a datagram lands on it. Freed
 * when the thread exits. */
typedef union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
} lc__dg_ctrl;

typedef struct {
    struct mmsghdr msgs[LC__DG_BATCH];
    struct iovec iov[LC__DG_BATCH];
    struct sockaddr_storage names[LC__DG_BATCH];
    lc__dg_ctrl ctrl[LC__DG_BATCH];
    char *bufs; /* LC__DG_BATCH * LC__DG_BUF bytes */
    /* Gathering sends: the transport whose received batch is being delivered, and the sends
     * its protocol made meanwhile (nout of them; their bytes in the receive buffers, or copied
     * to the arena). */
    struct lc_datagram_transport_s *gathering;
    unsigned nout;
    struct mmsghdr out[LC__DG_GATHER];
    struct iovec out_iov[LC__DG_GATHER];
    struct sockaddr_storage out_names[LC__DG_GATHER];
    char *arena; /* LC__DG_GATHER_BYTES, made on first need */
    size_t arena_used;
} lc__dg_pool;

static __thread lc__dg_pool *tls_pool;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_free(void *p)
{
    lc__dg_pool *pool = p;
    if (pool != NULL) {
        free(pool->bufs);
        free(pool->arena);
        free(pool);
    }
}

static void pool_key_init(void) { (void)pthread_key_create(&pool_key, pool_free); }

/* The calling thread's pool, made on first use. NULL if out of memory. */
static lc__dg_pool *pool_get(void)
{
    if (LC_LIKELY(tls_pool != NULL))
        return tls_pool;
    pthread_once(&pool_once, pool_key_init);
    lc__dg_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->bufs = malloc((size_t)LC__DG_BATCH * LC__DG_BUF);
    if (p->bufs == NULL || pthread_setspecific(pool_key, p) != 0) {
        free(p->bufs);
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < LC__DG_BATCH; i++) {
        p->iov[i].iov_base = p->bufs + i * LC__DG_BUF;
        p->iov[i].iov_len = LC__DG_BUF;
    }
    tls_pool = p;
    return p;
}

/* ---- Lifetime -------------------------------------------------------------------------------- */

static void dg_poll_cb(uv_poll_t *p, int status, int events);

static void queue_clear(lc_datagram_transport_t *t)
{
    lc__dgram *d = t->qhead;
    while (d != NULL) {
        lc__dgram *next = d->next;
        free(d);
        d = next;
    }
    t->qhead = t->qtail = NULL;
    t->qbytes = 0;
    t->qmem = 0;
}

lc_datagram_transport_t *lc_datagram_transport_ref(lc_datagram_transport_t *t)
{
    if (t != NULL)
        t->refs++;
    return t;
}

void lc_datagram_transport_unref(lc_datagram_transport_t *t)
{
    if (t != NULL && --t->refs == 0) {
        queue_clear(t);
        free(t);
    }
}

static void dg_closed_cb(uv_handle_t *h) { lc_datagram_transport_unref(h->data); }

/* Releases the poll handle and the socket, once. The endpoint's reference goes in the handle's
 * close callback, so t stays valid for the rest of the current callback. */
static void dg_release(lc_datagram_transport_t *t)
{
    if (!t->poll_open)
        return;
    t->poll_open = false;
    lc__loop_remove_resource(t->loop, &t->res);
    uv_close((uv_handle_t *)&t->poll, dg_closed_cb);
    if (t->fd >= 0) {
        lc__fdmap_transport(t->loop, t->fd, false);
        close(t->fd);
        t->fd = -1;
    }
    queue_clear(t);
}

static void deliver_lost(lc_datagram_transport_t *t, int err)
{
    if (t->lost_delivered)
        return;
    t->lost_delivered = true;
    if (t->proto != NULL && t->proto->connection_lost != NULL)
        t->proto->connection_lost(t, err, t->user);
}

static void dg_force_close(lc__resource *r)
{
    lc_datagram_transport_t *t = lc_container_of(r, lc_datagram_transport_t, res);
    int err = t->lost_scheduled ? t->lost_err : LC_ECLOSED;
    t->closing = true;
    t->lost_scheduled = true;
    deliver_lost(t, err);
    dg_release(t);
}

static void call_connection_lost(void *arg)
{
    lc_datagram_transport_t *t = arg;
    deliver_lost(t, t->lost_err);
    dg_release(t);
}

static void schedule_lost(lc_datagram_transport_t *t, int err)
{
    t->closing = true;
    if (t->lost_scheduled)
        return;
    t->lost_scheduled = true;
    t->lost_err = err;
    queue_clear(t);
    if (t->poll_open && t->events != 0) {
        uv_poll_stop(&t->poll);
        t->events = 0;
    }
    /* A closed loop (this is lc_loop_close() closing another resource whose connection_lost
     * closes us) or no memory: deliver now, as stream transports do. */
    if (lc_loop_call_soon(t->loop, call_connection_lost, t, NULL) != 0)
        call_connection_lost(t);
}

/* ---- Poll events and errors ------------------------------------------------------------------ */

static void error_received(lc_datagram_transport_t *t, int err)
{
    if (t->proto != NULL && t->proto->error_received != NULL)
        t->proto->error_received(t, err, t->user);
}

static void update_poll(lc_datagram_transport_t *t)
{
    if (!t->poll_open || t->lost_scheduled)
        return;
    unsigned ev = 0;
    if (!t->closing)
        ev |= UV_READABLE;
    if (t->qhead != NULL)
        ev |= UV_WRITABLE;
    if (ev == t->events)
        return;
    t->events = ev;
    int r = ev == 0 ? uv_poll_stop(&t->poll) : uv_poll_start(&t->poll, (int)ev, dg_poll_cb);
    if (r != 0) {
        /* The endpoint can no longer be watched: report it and end it, as a stream would. */
        error_received(t, r);
        schedule_lost(t, r);
    }
}

static void maybe_pause_writing(lc_datagram_transport_t *t)
{
    if (t->qbytes > t->high && !t->write_paused) {
        t->write_paused = true;
        if (t->proto != NULL && t->proto->pause_writing != NULL)
            t->proto->pause_writing(t, t->user);
    }
}

static void maybe_resume_writing(lc_datagram_transport_t *t)
{
    if (t->write_paused && t->qbytes <= t->low) {
        t->write_paused = false;
        if (t->proto != NULL && t->proto->resume_writing != NULL)
            t->proto->resume_writing(t, t->user);
    }
}

/* ---- Receiving ------------------------------------------------------------------------------- */

/* The GRO segment size a datagram's control data carries, or 0. */
static size_t gro_size(const struct msghdr *m)
{
    if (m->msg_controllen == 0)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c != NULL;
         c = CMSG_NXTHDR((struct msghdr *)m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int sz;
            memcpy(&sz, CMSG_DATA(c), sizeof(sz));
            return sz > 0 ? (size_t)sz : 0;
        }
    }
    return 0;
}

/* Hands one received message to the protocol: a datagram, or with GRO several of one size (the
 * last may be shorter), split back. Stops if the protocol closes the transport. */
static void deliver(lc_datagram_transport_t *t, const struct mmsghdr *mm)
{
    const struct msghdr *m = &mm->msg_hdr;
    if (m->msg_flags & MSG_TRUNC) {
        error_received(t, LC_EDGRAMTRUNC);
        return;
    }
    void (*recv)(lc_datagram_transport_t *, const char *, size_t, const struct sockaddr *,
                 socklen_t, void *) = t->proto != NULL ? t->proto->datagram_received : NULL;
    if (recv == NULL)
        return;
    const struct sockaddr *name = m->msg_namelen > 0 ? m->msg_name : NULL;
    socklen_t namelen = m->msg_namelen;
    const char *data = m->msg_iov[0].iov_base;
    size_t len = mm->msg_len;
    size_t seg = t->gro ? gro_size(m) : 0;
    if (seg == 0 || seg >= len) {
        recv(t, data, len, name, namelen, t->user);
        return;
    }
    for (size_t off = 0; off < len && !t->closing; off += seg)
        recv(t, data + off, len - off < seg ? len - off : seg, name, namelen, t->user);
}

static void gather_flush(lc_datagram_transport_t *t, lc__dg_pool *p);

static void dg_read(lc_datagram_transport_t *t)
{
    lc__dg_pool *p = tls_pool; /* made when the transport was (same thread) */
    for (int round = 0; round < LC__DG_ROUNDS && !t->closing; round++) {
        for (size_t i = 0; i < LC__DG_BATCH; i++) {
            struct msghdr *h = &p->msgs[i].msg_hdr;
            h->msg_name = &p->names[i];
            h->msg_namelen = sizeof(p->names[i]);
            h->msg_iov = &p->iov[i];
            h->msg_iovlen = 1;
            h->msg_control = t->gro ? p->ctrl[i].buf : NULL;
            h->msg_controllen = t->gro ? sizeof(p->ctrl[i].buf) : 0;
            h->msg_flags = 0;
        }
        int n = recvmmsg(t->fd, p->msgs, LC__DG_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* A socket error (an ICMP error on a connected endpoint, ...): the protocol hears of
             * it and the endpoint stays open; the error is consumed, so keep reading. */
            error_received(t, -errno);
            continue;
        }
        /* The protocol's sends during the batch are gathered and go out together after it (the
         * received bytes stay valid until the next recvmmsg). */
        p->gathering = t;
        for (int i = 0; i < n && !t->closing; i++)
            deliver(t, &p->msgs[i]);
        p->gathering = NULL;
        if (p->nout > 0)
            gather_flush(t, p);
        if (n < LC__DG_BATCH)
            return;
    }
}

/* ---- Sending --------------------------------------------------------------------------------- */

/* One datagram, now. Returns 0 (sent), 1 (would block), or the error. */
static int send_one(lc_datagram_transport_t *t, const struct iovec *iov, size_t niov,
                    const struct sockaddr *name, socklen_t namelen)
{
    struct msghdr m = {.msg_name = (void *)name,
                       .msg_namelen = namelen,
                       .msg_iov = (struct iovec *)iov,
                       .msg_iovlen = niov};
    ssize_t r;
    do
        r = sendmsg(t->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
        return 0;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
}

/* Errors that a send may return for an earlier datagram: the socket's pending error, set by an
 * ICMP message (or, on Unix sockets, by the peer going), which the send consumes. */
static bool maybe_pending_error(int err)
{
    return err == -ECONNREFUSED || err == -EHOSTUNREACH || err == -ENETUNREACH ||
           err == -EHOSTDOWN || err == -ENETDOWN || err == -ECONNRESET || err == -EPROTO ||
           err == -ENOPROTOOPT;
}

/* send_one, telling a pending socket error from a refusal of this datagram: the pending error
 * is consumed by the failed send, so a second try then goes through (and the error goes to
 * error_received, as asyncio reports a failed send); the same error twice is this datagram's. */
static int send_now(lc_datagram_transport_t *t, const struct iovec *iov, size_t niov,
                    const struct sockaddr *name, socklen_t namelen)
{
    int r = send_one(t, iov, niov, name, namelen);
    if (r >= 0 || !maybe_pending_error(r))
        return r;
    int r2 = send_one(t, iov, niov, name, namelen);
    if (r2 == r)
        return r;
    error_received(t, r);
    return r2;
}

static int enqueue(lc_datagram_transport_t *t, const struct iovec *iov, size_t niov, size_t len,
                   const struct sockaddr *name, socklen_t namelen)
{
    if (t->qmem + sizeof(lc__dgram) + len > LC__DG_QUEUE_CAP(t))
        return -ENOBUFS;
    lc__dgram *d = malloc(sizeof(*d) + len);
    if (d == NULL)
        return LC_ENOMEM;
    d->next = NULL;
    d->len = len;
    d->namelen = namelen;
    if (namelen > 0)
        memcpy(&d->name, name, namelen);
    size_t off = 0;
    for (size_t i = 0; i < niov; i++) {
        if (iov[i].iov_len > 0)
            memcpy(d->data + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    if (t->qtail != NULL)
        t->qtail->next = d;
    else
        t->qhead = d;
    t->qtail = d;
    t->qbytes += len;
    t->qmem += sizeof(*d) + len;
    return 0;
}

/* ---- Gathering sends ---------------------------------------------------------------------------
 *
 * A server answers from datagram_received, one sendto per datagram: a system call each, where
 * the batch that came in with one recvmmsg could go out with one sendmmsg. So while a received
 * batch is delivered, sendto on that same transport (with nothing queued) does its checks and
 * gathers the datagram instead of sending it; the whole gathering goes out with sendmmsg once
 * the batch has been delivered, inside the same poll callback, before the loop does anything
 * else. Bytes that lie in the receive buffers (an echo) are sent from there, others are copied.
 * What the socket does not take is queued as any sendto's would be; a refusal met in the flush
 * is reported through error_received (asyncio reports every send error that way). Other
 * transports' sends, and this one's outside its datagram_received, are not gathered. */

static bool in_rx_bufs(const lc__dg_pool *p, const char *data, size_t len)
{
    const char *lo = p->bufs, *hi = p->bufs + (size_t)LC__DG_BATCH * LC__DG_BUF;
    return data >= lo && data <= hi && len <= (size_t)(hi - data);
}

/* How many gathered datagrams from i on can go as one UDP GSO super-packet: the same
 * destination, one size (the last may be shorter, then ends the run), within the kernel's
 * segment count and the protocol's payload limit. 1 when none can. */
static unsigned gso_run(const lc_datagram_transport_t *t, const lc__dg_pool *p, unsigned i,
                        unsigned n)
{
    size_t seg = p->out_iov[i].iov_len;
    if (!t->gso || seg == 0 || seg > UINT16_MAX)
        return 1;
    size_t maxp = t->family == AF_INET6 ? LC_UDP_MAX_PAYLOAD_V6 : LC_UDP_MAX_PAYLOAD_V4;
    size_t limit = maxp / seg < LC__DG_GSO_MAX ? maxp / seg : LC__DG_GSO_MAX;
    const struct msghdr *first = &p->out[i].msg_hdr;
    unsigned k = 1;
    while (i + k < n && k < limit) {
        const struct msghdr *m = &p->out[i + k].msg_hdr;
        size_t len = p->out_iov[i + k].iov_len;
        if (len == 0 || len > seg || m->msg_namelen != first->msg_namelen ||
            (m->msg_namelen > 0 && memcmp(m->msg_name, first->msg_name, m->msg_namelen) != 0))
            break;
        k++;
        if (len < seg)
            break; /* a shorter one can only be the last */
    }
    return k;
}

/* Sends what is gathered (sendmmsg until the socket would block; runs of datagrams to one peer
 * of one size as UDP GSO super-packets, one entry each, where the socket takes UDP_SEGMENT),
 * queues the rest, then reports the refusals met (after the arrays are settled: error_received
 * may send again). */
static void gather_flush(lc_datagram_transport_t *t, lc__dg_pool *p)
{
    int errs[LC__DG_GATHER];
    struct mmsghdr ent[LC__DG_GATHER];
    unsigned cnt[LC__DG_GATHER]; /* datagrams in each entry */
    lc__dg_ctrl ctl[LC__DG_GATHER];
    unsigned nerr = 0, done = 0, n = p->nout;
    bool retried = false;
    p->nout = 0;
    while (done < n && t->fd >= 0) {
        unsigned ne = 0;
        for (unsigned i = done; i < n; ne++) {
            unsigned k = gso_run(t, p, i, n);
            ent[ne].msg_hdr = p->out[i].msg_hdr;
            ent[ne].msg_hdr.msg_iovlen = k; /* out_iov[i .. i + k) */
            ent[ne].msg_len = 0;
            if (k > 1) {
                memset(&ctl[ne], 0, sizeof(ctl[ne]));
                ent[ne].msg_hdr.msg_control = ctl[ne].buf;
                ent[ne].msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
                struct cmsghdr *c = CMSG_FIRSTHDR(&ent[ne].msg_hdr);
                c->cmsg_level = SOL_UDP;
                c->cmsg_type = UDP_SEGMENT;
                c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                uint16_t seg = (uint16_t)p->out_iov[i].iov_len;
                memcpy(CMSG_DATA(c), &seg, sizeof(seg));
            }
            cnt[ne] = k;
            i += k;
        }
        int r = sendmmsg(t->fd, ent, ne, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            for (int e = 0; e < r; e++)
                done += cnt[e];
            retried = false;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        int err = -errno;
        if (cnt[0] > 1 && !maybe_pending_error(err)) {
            /* GSO refused (no checksum offload, a segment over the route's MTU): the same
             * datagrams go one by one, and this socket uses GSO no more. */
            t->gso = false;
            continue;
        }
        /* As dg_flush: a pending socket error gets one more try of the same datagram. */
        if (maybe_pending_error(err) && !retried) {
            retried = true;
        } else {
            done += cnt[0];
            retried = false;
        }
        errs[nerr++ % LC__DG_GATHER] = err;
    }
    bool queued = false;
    for (; done < n && !t->lost_scheduled; done++) {
        const struct msghdr *m = &p->out[done].msg_hdr;
        int r = enqueue(t, m->msg_iov, 1, m->msg_iov->iov_len, m->msg_name, m->msg_namelen);
        if (r != 0) { /* the queue is full (or no memory): the rest is dropped */
            errs[nerr++ % LC__DG_GATHER] = r;
            break;
        }
        queued = true;
    }
    p->arena_used = 0;
    if (queued) {
        update_poll(t);
        maybe_pause_writing(t);
    }
    for (unsigned i = 0; i < nerr && i < LC__DG_GATHER && !t->lost_scheduled; i++)
        error_received(t, errs[i]);
}

/* Adds a datagram to the gathering (flushing it first if full). Returns 0, or 1 if it could not
 * be gathered (the flush queued datagrams: the caller queues this one behind them). */
static int gather_add(lc_datagram_transport_t *t, lc__dg_pool *p, const char *data, size_t len,
                      const struct sockaddr *name, socklen_t namelen)
{
    bool copy = len > 0 && !in_rx_bufs(p, data, len);
    if (p->nout == LC__DG_GATHER || (copy && p->arena_used + len > LC__DG_GATHER_BYTES)) {
        gather_flush(t, p);
        if (t->qhead != NULL || t->closing)
            return 1;
    }
    if ((copy && len > LC__DG_GATHER_BYTES) ||
        (copy && p->arena == NULL && (p->arena = malloc(LC__DG_GATHER_BYTES)) == NULL)) {
        /* Too big to gather, or no memory for the copies: it goes the plain way, after what is
         * gathered. */
        if (p->nout > 0)
            gather_flush(t, p);
        return 1;
    }
    unsigned i = p->nout++;
    char *base = (char *)data;
    if (copy) {
        base = p->arena + p->arena_used;
        memcpy(base, data, len);
        p->arena_used += len;
    }
    p->out_iov[i] = (struct iovec){.iov_base = base, .iov_len = len};
    if (namelen > 0)
        memcpy(&p->out_names[i], name, namelen);
    p->out[i].msg_hdr = (struct msghdr){.msg_name = namelen > 0 ? &p->out_names[i] : NULL,
                                        .msg_namelen = namelen,
                                        .msg_iov = &p->out_iov[i],
                                        .msg_iovlen = 1};
    p->out[i].msg_len = 0;
    return 0;
}

/* The transport is being closed, or sends another way, while its gathering is not empty: what
 * is gathered goes first. */
static void gather_settle(lc_datagram_transport_t *t)
{
    lc__dg_pool *p = tls_pool;
    if (p != NULL && p->gathering == t && p->nout > 0)
        gather_flush(t, p);
}

static void dequeue_head(lc_datagram_transport_t *t)
{
    lc__dgram *d = t->qhead;
    t->qhead = d->next;
    if (t->qhead == NULL)
        t->qtail = NULL;
    t->qbytes -= d->len;
    t->qmem -= sizeof(*d) + d->len;
    free(d);
}

/* The socket is writable: queued datagrams go out with sendmmsg, LC__DG_SEND_BATCH at a time,
 * until the socket would block. A datagram the socket refuses is dropped and reported. */
static void dg_flush(lc_datagram_transport_t *t)
{
    struct mmsghdr msgs[LC__DG_SEND_BATCH];
    struct iovec iov[LC__DG_SEND_BATCH];
    bool retried = false; /* the head already failed once with what may be a pending error */
    while (t->qhead != NULL && !t->lost_scheduled) {
        unsigned n = 0;
        for (lc__dgram *d = t->qhead; d != NULL && n < LC__DG_SEND_BATCH; d = d->next, n++) {
            iov[n].iov_base = d->data;
            iov[n].iov_len = d->len;
            msgs[n].msg_hdr = (struct msghdr){.msg_name = d->namelen > 0 ? &d->name : NULL,
                                              .msg_namelen = d->namelen,
                                              .msg_iov = &iov[n],
                                              .msg_iovlen = 1};
            msgs[n].msg_len = 0;
        }
        int r = sendmmsg(t->fd, msgs, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            int err = -errno;
            /* A pending socket error is consumed by the failed send: the head is tried once
             * more. Failing again, or any other error, is the head's own: it is dropped. */
            if (maybe_pending_error(err) && !retried) {
                retried = true;
            } else {
                dequeue_head(t);
                retried = false;
            }
            error_received(t, err);
            continue;
        }
        retried = false;
        for (int i = 0; i < r; i++)
            dequeue_head(t);
    }
    if (t->lost_scheduled)
        return;
    /* Resume first, as asyncio's _sendto_ready does, also on the way to a close. */
    maybe_resume_writing(t);
    if (t->lost_scheduled)
        return;
    if (t->qhead == NULL && t->closing) {
        schedule_lost(t, 0);
        return;
    }
    update_poll(t);
}

static bool sockaddr_equal(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b,
                           socklen_t blen)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return alen >= sizeof(*x) && blen >= sizeof(*y) && x->sin_port == y->sin_port &&
               x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return alen >= sizeof(*x) && blen >= sizeof(*y) && x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
               (x->sin6_scope_id == y->sin6_scope_id || x->sin6_scope_id == 0 ||
                y->sin6_scope_id == 0);
    }
    if (a->sa_family == AF_UNIX) {
        /* A path compares up to its NUL (callers may pass the whole struct); an abstract name
         * by its exact length. */
        size_t off = offsetof(struct sockaddr_un, sun_path);
        const char *x = ((const struct sockaddr_un *)(const void *)a)->sun_path;
        const char *y = ((const struct sockaddr_un *)(const void *)b)->sun_path;
        size_t xl = alen > off ? alen - off : 0, yl = blen > off ? blen - off : 0;
        if (xl > 0 && x[0] != '\0')
            xl = strnlen(x, xl);
        if (yl > 0 && y[0] != '\0')
            yl = strnlen(y, yl);
        return xl == yl && memcmp(x, y, xl) == 0;
    }
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Checks a send's destination and size. *name / *namelen: what the system call gets (NULL on a
 * connected endpoint). */
static int check_send(const lc_datagram_transport_t *t, size_t len, const struct sockaddr *addr,
                      socklen_t addrlen, const struct sockaddr **name, socklen_t *namelen)
{
    if (t->closing)
        return LC_ECLOSED;
    if (t->connected) {
        /* asyncio: "Invalid address: must be None or <peer>". */
        if (addr != NULL &&
            !sockaddr_equal(addr, addrlen, (const struct sockaddr *)&t->peer, t->peerlen))
            return LC_EINVAL;
        *name = NULL;
        *namelen = 0;
    } else {
        if (addr == NULL || addrlen == 0 || addrlen > sizeof(struct sockaddr_storage))
            return LC_EINVAL;
        *name = addr;
        *namelen = addrlen;
    }
    if ((t->family == AF_INET && len > LC_UDP_MAX_PAYLOAD_V4) ||
        (t->family == AF_INET6 && len > LC_UDP_MAX_PAYLOAD_V6))
        return -EMSGSIZE;
    return 0;
}

int lc_datagram_transport_sendto(lc_datagram_transport_t *t, const void *data, size_t len,
                                 const struct sockaddr *addr, socklen_t addrlen)
{
    if (t == NULL || (data == NULL && len > 0))
        return LC_EINVAL;
    const struct sockaddr *name;
    socklen_t namelen;
    int r = check_send(t, len, addr, addrlen, &name, &namelen);
    if (r != 0)
        return r;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    lc__dg_pool *p = tls_pool;
    if (t->qhead == NULL && p != NULL && p->gathering == t) {
        if (gather_add(t, p, data, len, name, namelen) == 0)
            return 0;
        if (t->closing)
            return LC_ECLOSED; /* error_received closed it during the flush */
    }
    if (t->qhead == NULL) {
        r = send_now(t, &iov, 1, name, namelen);
        if (r <= 0)
            return r; /* sent, or this datagram's error */
        if (t->closing)
            return 0; /* error_received closed it: nothing more goes out */
    }
    r = enqueue(t, &iov, 1, len, name, namelen);
    if (r != 0)
        return r;
    update_poll(t);
    maybe_pause_writing(t);
    return 0;
}

/* Can bufs[0..n) go as one GSO super-packet of segment size *seg? */
static bool gso_shape(const struct iovec *bufs, size_t n, size_t *seg)
{
    if (n < 2 || bufs[0].iov_len == 0)
        return false;
    size_t s = bufs[0].iov_len;
    for (size_t i = 1; i + 1 < n; i++)
        if (bufs[i].iov_len != s)
            return false;
    size_t last = bufs[n - 1].iov_len;
    if (last == 0 || last > s || s > UINT16_MAX)
        return false;
    *seg = s;
    return true;
}

/* Sends bufs[0..n) with UDP_SEGMENT in chunks. Returns how many datagrams went (the rest are the
 * caller's: queued, or sent another way), or an error that refuses GSO itself. */
static size_t send_gso(lc_datagram_transport_t *t, const struct iovec *bufs, size_t n, size_t seg,
                       const struct sockaddr *name, socklen_t namelen, int *err)
{
    size_t maxp = t->family == AF_INET6 ? LC_UDP_MAX_PAYLOAD_V6 : LC_UDP_MAX_PAYLOAD_V4;
    size_t per = maxp / seg;
    if (per > LC__DG_GSO_MAX)
        per = LC__DG_GSO_MAX;
    size_t done = 0;
    *err = 0;
    while (done < n) {
        size_t k = n - done < per ? n - done : per;
        if (k < 2)
            break; /* a lone datagram goes the plain way */
        lc__dg_ctrl ctrl;
        memset(&ctrl, 0, sizeof(ctrl));
        struct msghdr m = {.msg_name = (void *)name,
                           .msg_namelen = namelen,
                           .msg_iov = (struct iovec *)(bufs + done),
                           .msg_iovlen = k,
                           .msg_control = ctrl.buf,
                           .msg_controllen = CMSG_SPACE(sizeof(uint16_t))};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t s16 = (uint16_t)seg;
        memcpy(CMSG_DATA(c), &s16, sizeof(s16));
        ssize_t r;
        do
            r = sendmsg(t->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                *err = -errno;
            break;
        }
        done += k;
    }
    return done;
}

int lc_datagram_transport_sendto_many(lc_datagram_transport_t *t, const struct iovec *bufs,
                                      size_t n, const struct sockaddr *addr, socklen_t addrlen)
{
    if (t == NULL || (bufs == NULL && n > 0))
        return LC_EINVAL;
    const struct sockaddr *name;
    socklen_t namelen;
    int r = check_send(t, 0, addr, addrlen, &name, &namelen);
    if (r != 0)
        return r;
    size_t maxp = t->family == AF_INET6  ? LC_UDP_MAX_PAYLOAD_V6
                  : t->family == AF_INET ? LC_UDP_MAX_PAYLOAD_V4
                                         : SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (bufs[i].iov_base == NULL && bufs[i].iov_len > 0)
            return LC_EINVAL;
        if (bufs[i].iov_len > maxp)
            return -EMSGSIZE;
    }
    gather_settle(t); /* what the protocol gathered before goes first */
    size_t done = 0;
    size_t seg;
    if (t->qhead == NULL && t->gso && gso_shape(bufs, n, &seg)) {
        int gerr;
        done = send_gso(t, bufs, n, seg, name, namelen, &gerr);
        if (gerr != 0 && !maybe_pending_error(gerr))
            t->gso = false; /* refused (no checksum offload, segment over the MTU): not again */
        else if (gerr != 0)
            error_received(t, gerr);
        if (t->closing)
            return 0;
    }
    /* The rest one by one in sendmmsg batches, until the socket would block. */
    while (t->qhead == NULL && done < n) {
        struct mmsghdr msgs[LC__DG_SEND_BATCH];
        unsigned k = 0;
        for (; k < LC__DG_SEND_BATCH && done + k < n; k++) {
            msgs[k].msg_hdr = (struct msghdr){.msg_name = (void *)name,
                                              .msg_namelen = namelen,
                                              .msg_iov = (struct iovec *)&bufs[done + k],
                                              .msg_iovlen = 1};
            msgs[k].msg_len = 0;
        }
        int s = sendmmsg(t->fd, msgs, k, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (s > 0) {
            done += (size_t)s;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        /* The first of the rest failed: its own refusal, or a pending error (send_now tells). */
        r = send_now(t, &bufs[done], 1, name, namelen);
        if (r < 0 && done == 0)
            return r;
        if (r < 0)
            error_received(t, r); /* later datagrams' refusals are reported, not returned */
        if (t->closing)
            return 0;
        if (r == 1)
            break;
        done++;
    }
    for (; done < n; done++) {
        r = enqueue(t, &bufs[done], 1, bufs[done].iov_len, name, namelen);
        if (r != 0)
            return r;
    }
    update_poll(t);
    maybe_pause_writing(t);
    return 0;
}

/* ---- The poll callback ----------------------------------------------------------------------- */

static void dg_poll_cb(uv_poll_t *p, int status, int events)
{
    if (!lc__io_enter((uv_handle_t *)p))
        return;
    lc_datagram_transport_t *t = p->data;
    if (status < 0) {
        /* EPOLLERR: libuv stopped the handle to report it. For a datagram socket that is a
         * pending error (an ICMP port unreachable, ...): read what arrived before it, then take
         * the error (SO_ERROR clears it) to error_received and watch the socket again. */
        t->events = 0;
        if (!t->closing)
            dg_read(t);
        if (t->lost_scheduled)
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
            error_received(t, -err);
        if (!t->lost_scheduled) {
            if (t->qhead != NULL)
                dg_flush(t);
            else
                update_poll(t);
        }
        return;
    }
    events &= (int)t->events;
    if ((events & UV_READABLE) && !t->closing)
        dg_read(t);
    if ((events & UV_WRITABLE) && !t->lost_scheduled && t->qhead != NULL)
        dg_flush(t);
}

/* ---- Closing and accessors ------------------------------------------------------------------- */

int lc_datagram_transport_close(lc_datagram_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    if (t->closing)
        return 0;
    gather_settle(t); /* sent before the close, as a queue would be */
    t->closing = true;
    if (t->qhead == NULL)
        schedule_lost(t, 0);
    else
        update_poll(t); /* stop receiving; keep flushing */
    return 0;
}

int lc_datagram_transport_abort(lc_datagram_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    lc__dg_pool *p = tls_pool;
    if (p != NULL && p->gathering == t) {
        p->nout = 0; /* dropped with the queue */
        p->arena_used = 0;
    }
    schedule_lost(t, 0);
    return 0;
}

bool lc_datagram_transport_is_closing(const lc_datagram_transport_t *t)
{
    return t == NULL || t->closing;
}

size_t lc_datagram_transport_get_write_buffer_size(const lc_datagram_transport_t *t)
{
    return t != NULL ? t->qbytes : 0;
}

int lc_datagram_transport_set_write_buffer_limits(lc_datagram_transport_t *t, long high, long low)
{
    if (t == NULL)
        return LC_EINVAL;
    int r = lc__write_limits(high, low, LC__DG_DEFAULT_HIGH, &t->high, &t->low);
    if (r != 0)
        return r;
    maybe_pause_writing(t);
    maybe_resume_writing(t);
    return 0;
}

int lc_datagram_transport_get_write_buffer_limits(const lc_datagram_transport_t *t, size_t *low,
                                                  size_t *high)
{
    if (t == NULL || low == NULL || high == NULL)
        return LC_EINVAL;
    *low = t->low;
    *high = t->high;
    return 0;
}

int lc_datagram_transport_get_peername(const lc_datagram_transport_t *t, struct sockaddr *addr,
                                       socklen_t *len)
{
    return t != NULL ? lc__fd_name(t->fd, true, addr, len) : LC_EINVAL;
}

int lc_datagram_transport_get_sockname(const lc_datagram_transport_t *t, struct sockaddr *addr,
                                       socklen_t *len)
{
    return t != NULL ? lc__fd_name(t->fd, false, addr, len) : LC_EINVAL;
}

int lc_datagram_transport_get_fd(const lc_datagram_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    return t->fd >= 0 ? t->fd : LC_ECLOSED;
}

const lc_datagram_protocol_t *lc_datagram_transport_get_protocol(const lc_datagram_transport_t *t,
                                                                 void **user)
{
    if (user != NULL)
        *user = t != NULL ? t->user : NULL;
    return t != NULL ? t->proto : NULL;
}

lc_loop_t *lc_datagram_transport_get_loop(const lc_datagram_transport_t *t)
{
    return t != NULL ? t->loop : NULL;
}

/* ---- Creating the transport ------------------------------------------------------------------ */

/* Wraps fd (a non-blocking datagram socket, bound and / or connected as wanted; taken: closed on
 * failure) in a transport: the factory, connection_made, then receiving. Returns it, or NULL
 * with *err. */
static lc_datagram_transport_t *dg_new(lc_loop_t *loop, int fd, lc_datagram_protocol_factory_fn f,
                                       void *farg, bool single_segments, int *err)
{
    lc_datagram_transport_t *t = calloc(1, sizeof(*t));
    int r = t != NULL && pool_get() != NULL ? 0 : LC_ENOMEM;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (r == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        r = -errno;
    const lc_datagram_protocol_t *proto = NULL;
    void *user = NULL;
    if (r == 0)
        r = f(farg, &proto, &user);
    if (r == 0 && proto == NULL)
        r = LC_EINVAL;
    if (r == 0 && (r = lc__fdmap_transport(loop, fd, true)) == 0 && /* add_reader refuses fd */
        (r = uv_poll_init(lc__loop_uv(loop), &t->poll, fd)) != 0)
        lc__fdmap_transport(loop, fd, false);
    if (r != 0) {
        free(t);
        close(fd);
        *err = r;
        return NULL;
    }
    t->poll.data = t;
    t->poll_open = true;
    t->loop = loop;
    t->fd = fd;
    t->family = ss.ss_family;
    t->refs = 1;
    t->high = LC__DG_DEFAULT_HIGH;
    t->low = LC__DG_DEFAULT_HIGH / 4;
    t->proto = proto;
    t->user = user;
    t->peerlen = sizeof(t->peer);
    t->connected = getpeername(fd, (struct sockaddr *)&t->peer, &t->peerlen) == 0;
    if (!t->connected)
        t->peerlen = 0;
    int type = 0;
    socklen_t tl = sizeof(type);
    bool udp = (t->family == AF_INET || t->family == AF_INET6) &&
               getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM;
    if (udp && !single_segments) {
        int one = 1;
        uint16_t seg = 0;
        socklen_t segl = sizeof(seg);
        t->gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
        t->gso = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, &segl) == 0;
    }
    t->res.force_close = dg_force_close;
    lc__loop_add_resource(loop, &t->res);
    if (proto->connection_made != NULL)
        proto->connection_made(t, user);
    update_poll(t);
    *err = 0;
    return t;
}

/* ---- create_datagram_endpoint ---------------------------------------------------------------- */

typedef struct {
    lc__resource res;
    lc_loop_t *loop;
    lc_future_t *fut;
    lc_datagram_protocol_factory_fn factory;
    void *factory_arg;
    lc_datagram_opts_t o; /* host strings replaced by copies below */
    char *local_host, *remote_host;
    struct addrinfo *local, *remote; /* uv_freeaddrinfo */
    bool want_local, want_remote;
    bool resolving;
    bool abandoned;
} dg_creator;

static void creator_free(dg_creator *c)
{
    if (c->local != NULL)
        uv_freeaddrinfo(c->local);
    if (c->remote != NULL)
        uv_freeaddrinfo(c->remote);
    free(c->local_host);
    free(c->remote_host);
    lc_future_unref(c->fut);
    free(c);
}

static void creator_force_close(lc__resource *r)
{
    dg_creator *c = lc_container_of(r, dg_creator, res);
    lc__loop_remove_resource(c->loop, &c->res);
    if (c->resolving) {
        c->abandoned = true; /* the resolver's callback frees us */
        return;
    }
    if (!lc_future_done(c->fut))
        lc_future_set_error(c->fut, LC_ECLOSED);
    creator_free(c);
}

/* Sets the options every new socket gets. Returns 0 or the error. */
static int set_options(int fd, const lc_datagram_opts_t *o)
{
    int one = 1;
    if (o->reuse_address && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        return -errno;
    if (o->reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        return -errno;
    if (o->allow_broadcast && setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) != 0)
        return -errno;
    return 0;
}

/* A socket for family, with the options, bound to local and connected to remote (either may be
 * NULL). Returns the fd or the error. */
static int open_socket(int family, int proto, const lc_datagram_opts_t *o,
                       const struct sockaddr *local, socklen_t llen, const struct sockaddr *remote,
                       socklen_t rlen)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd < 0)
        return -errno;
    int r = set_options(fd, o);
    if (r == 0 && local != NULL && bind(fd, local, llen) != 0)
        r = -errno;
    /* A Unix socket with no local address gets an abstract name of the kernel's choosing
     * (Linux's autobind: an address of the family alone), so that its peers can answer it:
     * asyncio leaves it unbound, and then every datagram it sends arrives with no address. */
    if (r == 0 && local == NULL && family == AF_UNIX &&
        bind(fd, &(struct sockaddr){.sa_family = AF_UNIX}, sizeof(sa_family_t)) != 0)
        r = -errno;
    if (r == 0 && remote != NULL && connect(fd, remote, rlen) != 0)
        r = -errno;
    if (r != 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* Makes the transport from fd and settles the future. */
static void finish_with_fd(lc_loop_t *loop, lc_future_t *fut, int fd,
                           lc_datagram_protocol_factory_fn factory, void *factory_arg,
                           bool single_segments)
{
    if (lc_future_done(fut)) { /* cancelled meanwhile */
        close(fd);
        return;
    }
    int err;
    lc_datagram_transport_t *t = dg_new(loop, fd, factory, factory_arg, single_segments, &err);
    if (t == NULL)
        lc_future_set_error(fut, err);
    else
        lc_future_set_result(fut, t);
}

/* Both resolutions are in: try each remote candidate (or each local one, with no remote) with
 * the first local address of its family, as asyncio pairs them, until one binds and connects. */
static void creator_connect(dg_creator *c)
{
    int last = -EAFNOSUPPORT;
    int fd = -1;
    struct addrinfo *list = c->want_remote ? c->remote : c->local;
    for (struct addrinfo *a = list; a != NULL && fd < 0; a = a->ai_next) {
        const struct addrinfo *l = NULL;
        if (c->want_remote && c->want_local) {
            for (l = c->local; l != NULL && l->ai_family != a->ai_family; l = l->ai_next) {
            }
            if (l == NULL)
                continue; /* no local address of this family */
        } else if (!c->want_remote) {
            l = a;
        }
        const struct addrinfo *rm = c->want_remote ? a : NULL;
        int r =
            open_socket(a->ai_family, c->o.proto, &c->o, l ? l->ai_addr : NULL,
                        l ? l->ai_addrlen : 0, rm ? rm->ai_addr : NULL, rm ? rm->ai_addrlen : 0);
        if (r >= 0)
            fd = r;
        else
            last = r;
    }
    lc__loop_remove_resource(c->loop, &c->res);
    if (fd < 0) {
        if (!lc_future_done(c->fut))
            lc_future_set_error(c->fut, last);
    } else {
        finish_with_fd(c->loop, c->fut, fd, c->factory, c->factory_arg, c->o.single_segments);
    }
    creator_free(c);
}

static void creator_resolved(int status, struct addrinfo *res, void *arg);

static int creator_resolve(dg_creator *c, bool local)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", local ? c->o.local_port : c->o.remote_port);
    struct addrinfo hints = {0};
    hints.ai_family = c->o.family;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_protocol = c->o.proto;
    hints.ai_flags = c->o.flags | (local ? AI_PASSIVE : 0);
    c->resolving = true;
    int r = lc__resolve(c->loop, local ? c->local_host : c->remote_host, port, &hints,
                        creator_resolved, c);
    if (r != 0)
        c->resolving = false;
    return r;
}

static void creator_resolved(int status, struct addrinfo *res, void *arg)
{
    dg_creator *c = arg;
    c->resolving = false;
    if (c->abandoned) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        creator_free(c);
        return;
    }
    if (status == 0 && lc_future_done(c->fut))
        status = LC_ECANCELLED; /* cancelled while resolving: stop here */
    if (status == 0) {
        if (c->want_local && c->local == NULL) {
            c->local = res;
            if (c->want_remote) {
                status = creator_resolve(c, false);
                if (status == 0)
                    return;
            }
        } else {
            c->remote = res;
        }
    } else if (res != NULL) {
        uv_freeaddrinfo(res);
    }
    if (status != 0) {
        lc__loop_remove_resource(c->loop, &c->res);
        if (!lc_future_done(c->fut))
            lc_future_set_error(c->fut, status);
        creator_free(c);
        return;
    }
    creator_connect(c);
}

/* Fills a sockaddr_un from a path or abstract name (len 0: strlen). */
static int unix_addr(const char *path, size_t n, struct sockaddr_un *sun, socklen_t *len)
{
    if (n == 0)
        n = strlen(path);
    if (n == 0 || n >= sizeof(sun->sun_path))
        return LC_EINVAL;
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '\0'));
    return 0;
}

/* A Unix datagram endpoint: nothing to resolve, so it is made at once. */
static int unix_endpoint(const lc_datagram_opts_t *o, int *fd)
{
    struct sockaddr_un lsun, rsun;
    socklen_t llen = 0, rlen = 0;
    int r = 0;
    if (o->local_path != NULL)
        r = unix_addr(o->local_path, o->local_path_len, &lsun, &llen);
    if (r == 0 && o->remote_path != NULL)
        r = unix_addr(o->remote_path, o->remote_path_len, &rsun, &rlen);
    if (r != 0)
        return r;
    if (o->local_path != NULL && lsun.sun_path[0] != '\0') {
        /* A stale socket file from an earlier run is replaced (asyncio does the same); any other
         * file at the path is left alone, and bind fails with EADDRINUSE. */
        struct stat st;
        if (stat(lsun.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(lsun.sun_path);
    }
    r = open_socket(AF_UNIX, 0, o, o->local_path ? (struct sockaddr *)&lsun : NULL, llen,
                    o->remote_path ? (struct sockaddr *)&rsun : NULL, rlen);
    if (r < 0)
        return r;
    *fd = r;
    return 0;
}

/* Settles fut from a socket made (or failed) synchronously. */
static void settle_now(lc_loop_t *loop, lc_future_t *fut, int r, int fd,
                       lc_datagram_protocol_factory_fn factory, void *factory_arg,
                       bool single_segments)
{
    if (r != 0)
        lc_future_set_error(fut, r);
    else
        finish_with_fd(loop, fut, fd, factory, factory_arg, single_segments);
}

int lc_loop_create_datagram_endpoint(lc_loop_t *loop, lc_datagram_protocol_factory_fn factory,
                                     void *factory_arg, const lc_datagram_opts_t *opts,
                                     lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    lc_datagram_opts_t o = opts != NULL ? *opts : (lc_datagram_opts_t){0};
    if (loop == NULL || factory == NULL || fut == NULL)
        return LC_EINVAL;
    bool inet_fields =
        o.local_host != NULL || o.local_port != 0 || o.remote_host != NULL || o.remote_port != 0;
    bool unix_fields = o.local_path != NULL || o.remote_path != NULL;
    if (o.local_port < 0 || o.local_port > 65535 || o.remote_port < 0 || o.remote_port > 65535)
        return LC_EINVAL;
    if (o.use_sock &&
        (inet_fields || unix_fields || o.family != 0 || o.proto != 0 || o.flags != 0 ||
         o.reuse_address || o.reuse_port || o.allow_broadcast || o.sock < 0))
        return LC_EINVAL; /* sock excludes the socket's own arguments, as in asyncio */
    if (inet_fields && unix_fields)
        return LC_EINVAL;
    if (unix_fields && o.family != 0 && o.family != AF_UNIX)
        return LC_EINVAL;
    if (o.remote_host == NULL && o.remote_port != 0)
        return LC_EINVAL; /* a remote port with no remote host */
    if (!o.use_sock && !inet_fields && !unix_fields && o.family == 0)
        return LC_EINVAL; /* asyncio: "unexpected address family" */
    int r = lc_loop_create_future(loop, fut);
    if (r != 0)
        return r;
    int fd = -1;
    if (o.use_sock) {
        int type = 0;
        socklen_t tl = sizeof(type);
        if (getsockopt(o.sock, SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
            r = -errno;
        else if (type != SOCK_DGRAM)
            r = LC_EINVAL;
        else if ((fd = dup(o.sock)) < 0) /* the transport owns its fd; the caller keeps theirs */
            r = -errno;
        else if ((r = lc__set_nonblocking(fd)) != 0)
            close(fd);
        if (r == LC_EINVAL || r == -EBADF || r == -ENOTSOCK)
            goto fail; /* a bad argument: the call fails, as asyncio raises */
        settle_now(loop, *fut, r, fd, factory, factory_arg, o.single_segments);
        return 0;
    }
    if (unix_fields || (!inet_fields && o.family == AF_UNIX)) {
        r = unix_endpoint(&o, &fd);
        if (r == LC_EINVAL)
            goto fail;
        settle_now(loop, *fut, r, fd, factory, factory_arg, o.single_segments);
        return 0;
    }
    if (!inet_fields) { /* no address: an unbound socket of family */
        r = open_socket(o.family, o.proto, &o, NULL, 0, NULL, 0);
        if (r == -EAFNOSUPPORT || r == LC_EINVAL)
            goto fail;
        settle_now(loop, *fut, r < 0 ? r : 0, r, factory, factory_arg, o.single_segments);
        return 0;
    }
    dg_creator *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        r = LC_ENOMEM;
        goto fail;
    }
    c->loop = loop;
    c->fut = lc_future_ref(*fut);
    c->factory = factory;
    c->factory_arg = factory_arg;
    c->o = o;
    c->want_local = o.local_host != NULL || o.local_port != 0;
    c->want_remote = o.remote_host != NULL;
    c->local_host = o.local_host != NULL ? strdup(o.local_host) : NULL;
    c->remote_host = o.remote_host != NULL ? strdup(o.remote_host) : NULL;
    c->o.local_host = c->o.remote_host = NULL; /* the caller's strings are not kept */
    if ((o.local_host != NULL && c->local_host == NULL) ||
        (o.remote_host != NULL && c->remote_host == NULL)) {
        creator_free(c);
        r = LC_ENOMEM;
        goto fail;
    }
    c->res.force_close = creator_force_close;
    lc__loop_add_resource(loop, &c->res);
    r = creator_resolve(c, c->want_local);
    if (r != 0) {
        lc__loop_remove_resource(loop, &c->res);
        creator_free(c);
        goto fail;
    }
    return 0;
fail:
    lc_future_unref(*fut);
    *fut = NULL;
    return r;
}
