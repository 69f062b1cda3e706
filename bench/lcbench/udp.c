/* UDP mode: each connection is a connected datagram endpoint (lc_loop_create_datagram_endpoint);
 * a message is one datagram of --size bytes whose first 8 bytes are the connection's sequence
 * number (native byte order: only this process reads it back), the rest the echo pattern.
 *
 * The ring of outstanding requests (internal.h) keeps its meaning: ring[head] is the oldest
 * unanswered datagram, whose sequence number is c->seq_head, and the others follow in order. An
 * echo of sequence number s completes ring[s - seq_head]; the older ones are lost (a flow to one
 * socket is not reordered on the way to a server and back, so an overtaken datagram will not
 * come). The tick (lcb_udp_sweep) declares lost what has waited longer than --timeout. A late
 * echo (of a datagram already declared lost) or a stray one is ignored. Loss is counted apart
 * from errors; mismatches are errors. The connection stays open through all of it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench/lcbench/internal.h"

/* Takes ring[head] off as lost. */
static void pop_lost(lcb_conn_t *c, uint64_t now)
{
    c->head = (c->head + 1) & c->mask;
    c->inflight--;
    c->seq_head++;
    lcb_count_error(c->w, LCB_ERR_LOST, 1, now);
}

static void udp_made(lc_datagram_transport_t *t, void *user)
{
    lcb_conn_t *c = user;
    if (c->state != LCB_CONN_CONNECTING || c->w->stopping) {
        lc_datagram_transport_abort(t);
        return;
    }
    c->dt = t;
    lcb_conn_opened(c);
}

static void udp_datagram(lc_datagram_transport_t *t, const char *data, size_t len,
                         const struct sockaddr *addr, socklen_t addrlen, void *user)
{
    (void)addr;
    (void)addrlen;
    lcb_conn_t *c = user;
    if (t != c->dt)
        return;
    lcb_worker_t *w = c->w;
    uint64_t now = lcb_now_ns();
    c->now = now;
    c->in_window = now >= w->measure_ns && now < w->end_ns;
    if (c->in_window)
        w->bytes += len;
    uint64_t seq;
    size_t size = w->cfg->size;
    if (len != size || memcmp(data + sizeof(seq), w->pattern + sizeof(seq), size - sizeof(seq))) {
        lcb_count_error(w, LCB_ERR_MISMATCH, 1, now);
        return;
    }
    memcpy(&seq, data, sizeof(seq));
    if (seq < c->seq_head || seq - c->seq_head >= c->inflight)
        return; /* late (already counted lost) or not ours */
    while (c->seq_head < seq)
        pop_lost(c, now);
    c->seq_head++;
    lcb_conn_complete(c, 0);
    lcb_conn_send(c);
}

static void udp_error(lc_datagram_transport_t *t, int err, void *user)
{
    lcb_conn_t *c = user;
    (void)err;
    if (t == c->dt) /* ECONNREFUSED: nobody on the port; the datagrams are lost */
        lcb_count_error(c->w, LCB_ERR_READ, 1, lcb_now_ns());
}

static void udp_lost(lc_datagram_transport_t *t, int err, void *user)
{
    lcb_conn_t *c = user;
    if (t != c->dt)
        return; /* one we dropped ourselves */
    c->dt = NULL;
    if (c->w->stopping)
        return;
    if (err != 0)
        lcb_count_error(c->w, LCB_ERR_READ, 1, lcb_now_ns());
    lcb_conn_restart(c, false);
}

static const lc_datagram_protocol_t udp_proto = {
    .connection_made = udp_made,
    .datagram_received = udp_datagram,
    .error_received = udp_error,
    .connection_lost = udp_lost,
};

static int udp_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    *proto = &udp_proto;
    *user = arg;
    return 0;
}

int lcb_udp_connect(lcb_conn_t *c, lc_future_t **fut)
{
    const lcb_config_t *cfg = c->w->cfg;
    return lc_loop_create_datagram_endpoint(
        c->w->loop, udp_factory, c,
        &(lc_datagram_opts_t){.remote_host = cfg->host,
                              .remote_port = atoi(cfg->port),
                              /* Without --gso, datagrams travel alone both ways. */
                              .single_segments = !cfg->gso},
        fut);
}

int lcb_udp_send(lcb_conn_t *c, unsigned n)
{
    lcb_worker_t *w = c->w;
    size_t size = w->cfg->size;
    uint64_t seq = c->seq_head + c->inflight - n;
    for (unsigned i = 0; i < n; i++, seq++) {
        memcpy(w->udp_buf + i * size, &seq, sizeof(seq));
        w->udp_iov[i] = (struct iovec){w->udp_buf + i * size, size};
    }
    uint64_t now = lcb_now_ns();
    if (now >= w->measure_ns && now < w->end_ns)
        w->datagrams_sent += n;
    if (n > 1 && w->cfg->gso)
        return lc_datagram_transport_sendto_many(c->dt, w->udp_iov, n, NULL, 0);
    for (unsigned i = 0; i < n; i++) {
        int r = lc_datagram_transport_sendto(c->dt, w->udp_iov[i].iov_base, size, NULL, 0);
        if (r != 0)
            return r;
    }
    return 0;
}

void lcb_udp_sweep(lcb_conn_t *c, uint64_t now)
{
    bool popped = false;
    while (c->inflight > 0 && now - c->ring[c->head].sent > c->w->timeout_ns) {
        pop_lost(c, now);
        popped = true;
    }
    if (popped)
        lcb_conn_send(c);
}
