/* lcbench internals shared by run.c, http.c and echo.c: the per-loop worker and its connections.
 *
 * Everything here belongs to one loop thread: a worker and its connections are touched only by
 * the loop that runs them (the main thread reads them after the group has been joined, and
 * through lc_group_broadcast_wait() snapshots while it runs). */
#ifndef LCBENCH_INTERNAL_H
#define LCBENCH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "bench/lcbench/lcbench.h"
#include "llhttp.h"
#include "loopcore.h"

typedef struct lcb_worker_s lcb_worker_t;
typedef struct lcb_conn_s lcb_conn_t;

/* One request on the wire: when it should have gone out (open loop: its slot in the schedule;
 * closed loop: when it went out) and when it went out (for --timeout). */
typedef struct lcb_slot_s {
    uint64_t intended;
    uint64_t sent;
} lcb_slot_t;

typedef enum {
    LCB_CONN_RETRY = 0, /* waiting for the next tick to connect (after a failed attempt) */
    LCB_CONN_CONNECTING,
    LCB_CONN_OPEN,
    LCB_CONN_STOPPED,
} lcb_conn_state_t;

typedef enum {
    LCB_ERR_CONNECT,
    LCB_ERR_READ,
    LCB_ERR_WRITE,
    LCB_ERR_TIMEOUT,
    LCB_ERR_MISMATCH,
    LCB_ERR_LOST, /* udp: loss, not an error (lcb_errors_t.lost) */
} lcb_err_kind_t;

struct lcb_conn_s {
    lcb_worker_t *w;
    lc_transport_t *t;           /* the open transport, NULL otherwise */
    lc_datagram_transport_t *dt; /* udp: the open endpoint, NULL otherwise */
    uint64_t seq_head;           /* udp: the sequence number of the request at ring[head] */
    lc_future_t *fut;            /* the pending create_connection (no reference held: see run.c) */
    uint64_t connect_start;
    uint64_t gidx;   /* index over all connections of the run: its slot in the schedule */
    uint64_t next_k; /* open loop: the next request of this connection's schedule */
    lcb_conn_state_t state;
    bool timer_armed; /* open loop: a call_at for next_k is pending */
    bool must_close;  /* the response asked to close the connection */
    bool failed;      /* the parser or the echo check failed inside data_received */
    unsigned head;    /* the oldest outstanding request in ring */
    unsigned inflight;
    unsigned mask;
    lcb_slot_t *ring; /* pipeline depth, rounded up to a power of two */
    uint64_t now;     /* the time of the read being parsed */
    bool in_window;   /* now is inside the measured window */
    size_t rx_off;    /* echo: bytes of the current message verified */
    llhttp_t parser;
};

struct lcb_worker_s {
    const lcb_config_t *cfg;
    lc_loop_t *loop;
    struct ssl_ctx_st *ssl; /* https / tls: the run's client context (shared); else NULL */
    unsigned index;
    lcb_conn_t *conns;
    unsigned nconns;
    /* What one write sends: `pipeline` copies of the request (or echo message). */
    const char *req;
    size_t req_len;
    const char *pattern; /* echo: the message (what must come back) */
    bool head_request;   /* HTTP HEAD: responses have no body */
    /* The schedule and the window, CLOCK_MONOTONIC nanoseconds. */
    uint64_t start_ns, measure_ns, end_ns;
    long double ns_per_request; /* open loop: 1e9 / rate */
    uint64_t tick_ns;
    uint64_t timeout_ns, connect_timeout_ns;
    bool stopping;
    /* Figures of the measured window. */
    uint64_t requests, bytes;
    uint64_t datagrams_sent; /* udp */
    uint64_t status[6];
    lcb_errors_t errors;
    lcb_hdr_t hist;
    /* Over the whole run (progress line, CPU per request). */
    uint64_t requests_all, errors_all, connections_opened;
    int connect_error; /* the first connect error seen (a loopcore/errno code), or 0 */
    uint64_t backlog;  /* open loop: requests due in the window and not answered by its end */
    /* Req/Sec samples, every 100 ms of the window. */
    double *samples;
    size_t nsamples, cap_samples;
    uint64_t sample_ns, sample_requests;
    /* udp: pipeline messages side by side (each sent with its own sequence number) and their
     * iovecs for lc_datagram_transport_sendto_many. */
    char *udp_buf;
    struct iovec *udp_iov;
    /* Progress snapshot, written on the loop by a broadcast. */
    uint64_t snap_requests, snap_errors;
} __attribute__((aligned(64)));

static inline uint64_t lcb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* A response (or echoed message) completed on c: takes the oldest outstanding request off the
 * ring and records it when the read that completed it fell in the window. status_class is
 * 1..5 for HTTP (0 otherwise). Returns false if nothing was outstanding (the peer answered more
 * than was asked: a protocol error). */
static inline bool lcb_conn_complete(lcb_conn_t *c, unsigned status_class)
{
    if (c->inflight == 0)
        return false;
    lcb_slot_t *s = &c->ring[c->head];
    c->head = (c->head + 1) & c->mask;
    c->inflight--;
    lcb_worker_t *w = c->w;
    w->requests_all++;
    if (c->in_window) {
        w->requests++;
        w->status[status_class]++;
        lcb_hdr_record(&w->hist, (int64_t)(c->now - s->intended));
    }
    return true;
}

/* Counts n errors of a kind at time now (only inside the window go into the figures). */
void lcb_count_error(lcb_worker_t *w, lcb_err_kind_t kind, uint64_t n, uint64_t now);

/* run.c, for udp.c: a connection attempt succeeded (c->t or c->dt set): open, start sending;
 * send what c may send now; drop the connection and open a new one; a create's outcome. */
void lcb_conn_opened(lcb_conn_t *c);
void lcb_conn_send(lcb_conn_t *c);
void lcb_conn_restart(lcb_conn_t *c, bool graceful);

/* udp.c */
/* Starts c's endpoint (connected to the URL's host:port); *fut as lc_loop_create_connection's. */
int lcb_udp_connect(lcb_conn_t *c, lc_future_t **fut);
/* Sends the n newest requests of c's ring (sequence numbers seq_head + inflight - n ...). */
int lcb_udp_send(lcb_conn_t *c, unsigned n);
/* The tick: requests outstanding longer than the timeout are lost; then sends again. */
void lcb_udp_sweep(lcb_conn_t *c, uint64_t now);

/* http.c */
int lcb_http_build_request(const lcb_config_t *cfg, char **out, size_t *len);
void lcb_http_conn_reset(lcb_conn_t *c);
/* Parses len bytes; completes responses; sets c->failed on a parse error or an unexpected
 * response, c->must_close when a response asks to close. */
void lcb_http_data(lcb_conn_t *c, const char *data, size_t len);
/* The peer closed: lets the parser finish a response delimited by the end of the stream. */
void lcb_http_eof(lcb_conn_t *c);

/* echo.c */
int lcb_echo_build_message(const lcb_config_t *cfg, char **out, size_t *len);
/* Verifies len echoed bytes against the message; completes messages; sets c->failed (and counts
 * a mismatch) if a byte differs. */
void lcb_echo_data(lcb_conn_t *c, const char *data, size_t len);

#endif
