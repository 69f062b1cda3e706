/* lcbench's engine: a loop group, one worker per loop, each with its share of the connections.
 *
 * Hot path (closed loop, per request): one read per readiness (the transport's), one clock read,
 * llhttp over the bytes in place (or one memcmp in echo mode), one histogram increment, one
 * clock read and one lc_transport_write of the precomputed request bytes, all inside
 * data_received. No allocation, no timer. With --pipeline N the N requests go out in one write
 * and the next batch when all N are answered (wrk's pipelining).
 *
 * Open loop (-R): request n of the whole run is due at start + n / rate and belongs to connection
 * n mod C, so each connection has its own fixed schedule (rate / C per second) and the
 * connections are staggered evenly. A request goes out as soon as its time has come and its
 * connection has room (fewer than `pipeline` outstanding): a backlog goes out at once, with no
 * pacing of its own, and latency counts from the intended time (coordinated omission corrected).
 * An idle connection whose next request is not due sleeps on one lc_loop_call_at() timer.
 *
 * Each worker's tick timer (every 100 ms, or less for short timeouts) samples Req/Sec, retries
 * failed connects and sweeps for timeouts; connection errors close the connection and open a new
 * one at once (after a failed connect: at the next tick).
 *
 * The main thread only starts the group, wakes once a second (progress line), and stops it. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <openssl/ssl.h>

#include "bench/lcbench/internal.h"

typedef struct lcb_run_s {
    const lcb_config_t *cfg;
    lc_group_t *group;
    lcb_worker_t *workers;
    char *req;     /* `pipeline` copies of the request or message */
    char *pattern; /* echo: one message */
    /* https / tls: one client context for every loop. No verification (wrk's behaviour: a load
     * generator measures, it does not authenticate) and no session reuse: each connection that
     * (re)connects makes a full handshake, since no SSL is ever given an earlier session. */
    SSL_CTX *ssl;
    uint64_t stop_ns;
} lcb_run_t;

static void conn_connect(lcb_conn_t *c, uint64_t now);
#define conn_send lcb_conn_send
#define conn_restart lcb_conn_restart

/* ---- Errors ---------------------------------------------------------------------------------- */

void lcb_count_error(lcb_worker_t *w, lcb_err_kind_t kind, uint64_t n, uint64_t now)
{
    if (kind != LCB_ERR_LOST)
        w->errors_all += n;
    if (now < w->measure_ns || now >= w->end_ns)
        return;
    switch (kind) {
    case LCB_ERR_CONNECT:
        w->errors.connect += n;
        break;
    case LCB_ERR_READ:
        w->errors.read += n;
        break;
    case LCB_ERR_WRITE:
        w->errors.write += n;
        break;
    case LCB_ERR_TIMEOUT:
        w->errors.timeout += n;
        break;
    case LCB_ERR_MISMATCH:
        w->errors.mismatch += n;
        break;
    case LCB_ERR_LOST:
        w->errors.lost += n;
        break;
    }
}

/* ---- Connections ----------------------------------------------------------------------------- */

static void conn_reset(lcb_conn_t *c)
{
    c->head = 0;
    c->inflight = 0;
    c->rx_off = 0;
    c->failed = false;
    c->must_close = false;
    if (c->w->cfg->mode == LCB_MODE_HTTP)
        lcb_http_conn_reset(c);
}

/* Drops the connection (outstanding requests are lost) and opens a new one. */
void lcb_conn_restart(lcb_conn_t *c, bool graceful)
{
    lc_datagram_transport_t *dt = c->dt;
    c->dt = NULL;
    if (dt != NULL) {
        if (graceful)
            lc_datagram_transport_close(dt);
        else
            lc_datagram_transport_abort(dt);
    }
    lc_transport_t *t = c->t;
    c->t = NULL;
    if (t != NULL) {
        if (graceful)
            lc_transport_close(t);
        else
            lc_transport_abort(t);
    }
    conn_reset(c);
    c->state = LCB_CONN_RETRY;
    if (!c->w->stopping)
        conn_connect(c, lcb_now_ns());
}

/* When request k of connection c is due (open loop). */
static inline uint64_t sched_ns(const lcb_worker_t *w, const lcb_conn_t *c, uint64_t k)
{
    long double n = (long double)k * w->cfg->connections + (long double)c->gidx;
    return w->start_ns + (uint64_t)(n * w->ns_per_request);
}

/* The first k >= from whose request is due at t or later (sched_ns is non-decreasing in k). The
 * inverse of sched_ns gives it to within rounding; a few steps make it exact. */
static uint64_t first_due_at(const lcb_worker_t *w, const lcb_conn_t *c, uint64_t from, uint64_t t)
{
    if (sched_ns(w, c, from) >= t)
        return from;
    long double n = (long double)(t - w->start_ns) / w->ns_per_request;
    long double kf = (n - (long double)c->gidx) / (long double)w->cfg->connections;
    uint64_t k = kf > (long double)from ? (uint64_t)kf : from;
    while (k > from && sched_ns(w, c, k - 1) >= t)
        k--;
    while (sched_ns(w, c, k) < t)
        k++;
    return k;
}

static void conn_timer_cb(void *arg)
{
    lcb_conn_t *c = arg;
    c->timer_armed = false;
    if (c->state == LCB_CONN_OPEN && !c->w->stopping)
        conn_send(c);
}

/* Sends what c may send now: closed loop, a new batch once the last one is answered; open loop,
 * every request that is due, up to the pipeline depth. */
void lcb_conn_send(lcb_conn_t *c)
{
    lcb_worker_t *w = c->w;
    unsigned depth = w->cfg->pipeline, n = 0;
    uint64_t now = lcb_now_ns();
    if (w->cfg->rate <= 0) {
        if (c->inflight != 0)
            return;
        n = depth;
        /* --handshake: the latency counts from the connect's start (handshake included). */
        uint64_t from = w->cfg->handshake ? c->connect_start : now;
        for (unsigned i = 0; i < n; i++)
            c->ring[(c->head + i) & c->mask] = (lcb_slot_t){from, now};
    } else {
        while (c->inflight + n < depth) {
            uint64_t due = sched_ns(w, c, c->next_k);
            if (due > now) {
                if (!c->timer_armed) {
                    c->timer_armed =
                        lc_loop_call_at(w->loop, (double)due * 1e-9, conn_timer_cb, c, NULL) == 0;
                }
                break;
            }
            c->ring[(c->head + c->inflight + n) & c->mask] = (lcb_slot_t){due, now};
            c->next_k++;
            n++;
        }
        if (n == 0)
            return;
    }
    c->inflight += n;
    int r = w->cfg->mode == LCB_MODE_UDP ? lcb_udp_send(c, n)
                                         : lc_transport_write(c->t, w->req, (size_t)n * w->req_len);
    if (r != 0) {
        lcb_count_error(w, LCB_ERR_WRITE, 1, now);
        conn_restart(c, false);
    }
}

static void conn_made(lc_transport_t *t, void *user)
{
    lcb_conn_t *c = user;
    lcb_worker_t *w = c->w;
    if (c->state != LCB_CONN_CONNECTING || w->stopping) {
        lc_transport_abort(t);
        return;
    }
    c->t = t;
    lcb_conn_opened(c);
}

void lcb_conn_opened(lcb_conn_t *c)
{
    c->fut = NULL; /* its done callback will see that it is no longer the pending attempt */
    c->state = LCB_CONN_OPEN;
    c->w->connections_opened++;
    conn_send(c);
}

static void conn_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    lcb_conn_t *c = user;
    if (t != c->t)
        return;
    lcb_worker_t *w = c->w;
    uint64_t now = lcb_now_ns();
    c->now = now;
    c->in_window = now >= w->measure_ns && now < w->end_ns;
    if (c->in_window)
        w->bytes += len;
    if (w->cfg->mode == LCB_MODE_HTTP)
        lcb_http_data(c, data, len);
    else
        lcb_echo_data(c, data, len);
    if (c->failed) {
        if (w->cfg->mode == LCB_MODE_HTTP)
            lcb_count_error(w, LCB_ERR_READ, 1, now);
        conn_restart(c, false);
        return;
    }
    if (c->must_close || (w->cfg->handshake && c->inflight == 0)) {
        /* Pipelined requests after a "Connection: close" response are lost. --handshake: one
         * request per connection, then a new connection (and a full handshake). */
        if (c->inflight > 0)
            lcb_count_error(w, LCB_ERR_READ, 1, now);
        conn_restart(c, true);
        return;
    }
    conn_send(c);
}

static bool conn_eof(lc_transport_t *t, void *user)
{
    lcb_conn_t *c = user;
    if (t == c->t && c->w->cfg->mode == LCB_MODE_HTTP) {
        c->now = lcb_now_ns();
        c->in_window = c->now >= c->w->measure_ns && c->now < c->w->end_ns;
        lcb_http_eof(c);
    }
    return false;
}

static void conn_lost(lc_transport_t *t, int err, void *user)
{
    lcb_conn_t *c = user;
    if (t != c->t)
        return; /* one we dropped ourselves */
    c->t = NULL;
    lcb_worker_t *w = c->w;
    if (w->stopping)
        return;
    uint64_t now = lcb_now_ns();
    if (err != 0)
        lcb_count_error(w, err == -EPIPE ? LCB_ERR_WRITE : LCB_ERR_READ, 1, now);
    else if (c->inflight > 0 || c->rx_off > 0)
        lcb_count_error(w, LCB_ERR_READ, 1, now); /* closed with requests unanswered */
    conn_restart(c, false);
}

static const lc_protocol_t conn_proto = {
    .connection_made = conn_made,
    .data_received = conn_data,
    .eof_received = conn_eof,
    .connection_lost = conn_lost,
};

static int conn_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &conn_proto;
    *user = arg;
    return 0;
}

/* The outcome of a connection attempt. On success connection_made has already taken over and
 * cleared c->fut; a cancelled or superseded attempt is not c->fut either. No reference is held
 * on the future: while it is c->fut, the connector or this scheduled callback keeps it alive. */
static void conn_connect_done(lc_future_t *f, void *arg)
{
    lcb_conn_t *c = arg;
    if (f != c->fut)
        return;
    c->fut = NULL;
    int err = lc_future_result(f, NULL); /* 0: connected (the transport took over) */
    if (err == 0)
        return;
    if (c->w->connect_error == 0)
        c->w->connect_error = err;
    lcb_count_error(c->w, LCB_ERR_CONNECT, 1, lcb_now_ns());
    c->state = LCB_CONN_RETRY; /* the next tick tries again */
}

static void conn_connect(lcb_conn_t *c, uint64_t now)
{
    lcb_worker_t *w = c->w;
    const lcb_config_t *cfg = w->cfg;
    c->state = LCB_CONN_CONNECTING;
    c->connect_start = now;
    lc_future_t *f = NULL;
    int r =
        cfg->mode == LCB_MODE_UDP
            ? lcb_udp_connect(c, &f)
            : lc_loop_create_connection(
                  w->loop, conn_factory, c,
                  &(lc_connection_opts_t){.host = cfg->host, .port = cfg->port, .ssl = w->ssl}, &f);
    if (r == 0 && lc_future_add_done_callback(f, conn_connect_done, c) != 0) {
        lc_future_cancel(f);
        r = LC_ENOMEM;
    }
    if (r != 0) {
        lc_future_unref(f);
        if (w->connect_error == 0)
            w->connect_error = r;
        lcb_count_error(w, LCB_ERR_CONNECT, 1, now);
        c->state = LCB_CONN_RETRY;
        return;
    }
    if (c->state == LCB_CONN_CONNECTING)
        c->fut = f;
    lc_future_unref(f);
}

/* ---- The tick: Req/Sec samples, connect retries, timeouts ------------------------------------ */

#define LCB_SAMPLE_NS 100000000ULL

static void worker_tick(void *arg)
{
    lcb_worker_t *w = arg;
    if (w->stopping)
        return;
    uint64_t now = lcb_now_ns();
    if (now >= w->measure_ns) {
        if (w->sample_ns == 0)
            w->sample_ns = w->measure_ns;
        if (now - w->sample_ns >= LCB_SAMPLE_NS && now <= w->end_ns &&
            w->nsamples < w->cap_samples) {
            double dt = (double)(now - w->sample_ns) * 1e-9;
            w->samples[w->nsamples++] = (double)(w->requests - w->sample_requests) / dt;
            w->sample_ns = now;
            w->sample_requests = w->requests;
        }
    }
    uint64_t timeout_ns = w->timeout_ns;
    uint64_t connect_timeout_ns = w->connect_timeout_ns;
    for (unsigned i = 0; i < w->nconns; i++) {
        lcb_conn_t *c = &w->conns[i];
        switch (c->state) {
        case LCB_CONN_RETRY:
            conn_connect(c, now);
            break;
        case LCB_CONN_CONNECTING:
            if (now - c->connect_start > connect_timeout_ns) {
                lc_future_t *f = c->fut;
                c->fut = NULL;
                if (f != NULL)
                    lc_future_cancel(f);
                if (w->connect_error == 0)
                    w->connect_error = LC_ETIMEDOUT;
                lcb_count_error(w, LCB_ERR_CONNECT, 1, now);
                conn_connect(c, now);
            }
            break;
        case LCB_CONN_OPEN:
            if (w->cfg->mode == LCB_MODE_UDP) {
                lcb_udp_sweep(c, now); /* lost datagrams end nothing but themselves */
            } else if (c->inflight > 0 && now - c->ring[c->head].sent > timeout_ns) {
                /* Every outstanding request is lost with the connection. */
                lcb_count_error(w, LCB_ERR_TIMEOUT, c->inflight, now);
                conn_restart(c, false);
            }
            break;
        case LCB_CONN_STOPPED:
            break;
        }
    }
    lc_loop_call_later(w->loop, (double)w->tick_ns * 1e-9, worker_tick, w, NULL);
}

/* ---- Cross-thread steps (lc_group_broadcast_wait) -------------------------------------------- */

static lcb_worker_t *worker_of(lcb_run_t *run, lc_loop_t *loop)
{
    return &run->workers[lc_group_index(run->group, loop)];
}

static int worker_begin(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    lcb_worker_t *w = worker_of(arg, loop);
    w->loop = loop;
    uint64_t now = lcb_now_ns();
    for (unsigned i = 0; i < w->nconns; i++)
        conn_connect(&w->conns[i], now);
    return lc_loop_call_later(loop, (double)w->tick_ns * 1e-9, worker_tick, w, NULL);
}

static int worker_snapshot(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    lcb_worker_t *w = worker_of(arg, loop);
    w->snap_requests = w->requests_all;
    w->snap_errors = w->errors_all;
    return 0;
}

static int worker_stop(lc_loop_t *loop, void *arg, void **result)
{
    (void)result;
    lcb_run_t *run = arg;
    lcb_worker_t *w = worker_of(run, loop);
    if (run->stop_ns < w->end_ns)
        w->end_ns = run->stop_ns; /* interrupted: the window closes now */
    w->stopping = true;
    for (unsigned i = 0; i < w->nconns; i++) {
        lcb_conn_t *c = &w->conns[i];
        if (w->cfg->rate > 0) {
            for (unsigned j = 0; j < c->inflight; j++) {
                uint64_t due = c->ring[(c->head + j) & c->mask].intended;
                w->backlog += due >= w->measure_ns && due < w->end_ns;
            }
            /* Those not sent yet: next_k onwards, due in [measure, end). */
            uint64_t lo = first_due_at(w, c, c->next_k, w->measure_ns);
            uint64_t hi = first_due_at(w, c, c->next_k, w->end_ns);
            w->backlog += hi - lo;
        }
        if (c->t != NULL) {
            lc_transport_t *t = c->t;
            c->t = NULL;
            lc_transport_abort(t);
        }
        if (c->dt != NULL) {
            lc_datagram_transport_t *dt = c->dt;
            c->dt = NULL;
            lc_datagram_transport_abort(dt);
        }
        if (c->fut != NULL) {
            lc_future_t *f = c->fut;
            c->fut = NULL;
            lc_future_cancel(f);
        }
        c->state = LCB_CONN_STOPPED;
    }
    return 0;
}

/* ---- Set-up and tear-down -------------------------------------------------------------------- */

static void workers_free(lcb_run_t *run, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        lcb_worker_t *w = &run->workers[i];
        for (unsigned j = 0; j < w->nconns; j++)
            free(w->conns[j].ring);
        free(w->conns);
        free(w->samples);
        free(w->udp_buf);
        free(w->udp_iov);
        lcb_hdr_close(&w->hist);
    }
    free(run->workers);
    free(run->req);
    free(run->pattern);
    SSL_CTX_free(run->ssl);
    run->ssl = NULL;
}

static int workers_init(lcb_run_t *run)
{
    const lcb_config_t *cfg = run->cfg;
    char *one = NULL;
    size_t one_len = 0;
    int r = cfg->mode == LCB_MODE_HTTP ? lcb_http_build_request(cfg, &one, &one_len)
                                       : lcb_echo_build_message(cfg, &one, &one_len);
    if (r != 0)
        return -ENOMEM;
    run->req = malloc(one_len * cfg->pipeline);
    if (run->req == NULL) {
        free(one);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < cfg->pipeline; i++)
        memcpy(run->req + i * one_len, one, one_len);
    if (cfg->tls) {
        run->ssl = SSL_CTX_new(TLS_client_method());
        if (run->ssl == NULL || SSL_CTX_set_min_proto_version(run->ssl, TLS1_2_VERSION) != 1) {
            free(one);
            workers_free(run, 0);
            return -ENOMEM;
        }
        SSL_CTX_set_session_cache_mode(run->ssl, SSL_SESS_CACHE_OFF);
        if (cfg->handshake)
            SSL_CTX_set_options(run->ssl, SSL_OP_NO_TICKET); /* no ticket: nothing to resume */
    }
    if (cfg->mode != LCB_MODE_HTTP)
        run->pattern = one;
    else
        free(one);

    unsigned nt = cfg->threads;
    run->workers = aligned_alloc(64, sizeof(lcb_worker_t) * nt);
    if (run->workers == NULL) {
        workers_free(run, 0);
        return -ENOMEM;
    }
    memset(run->workers, 0, sizeof(lcb_worker_t) * nt);
    unsigned ring = 1;
    while (ring < cfg->pipeline)
        ring <<= 1;
    lcb_timing_t timing;
    lcb_config_timing(cfg, &timing);
    for (unsigned i = 0; i < nt; i++) {
        lcb_worker_t *w = &run->workers[i];
        w->cfg = cfg;
        w->ssl = run->ssl;
        w->index = i;
        w->req = run->req;
        w->req_len = one_len;
        w->pattern = run->pattern;
        w->head_request = strcmp(cfg->method, "HEAD") == 0;
        w->ns_per_request = timing.ns_per_request;
        w->tick_ns = timing.tick_ns;
        w->timeout_ns = timing.timeout_ns;
        w->connect_timeout_ns = timing.connect_timeout_ns;
        unsigned nconns = cfg->connections / nt + (i < cfg->connections % nt ? 1 : 0);
        w->conns = calloc(nconns, sizeof(lcb_conn_t));
        w->nconns = w->conns != NULL ? nconns : 0;
        w->cap_samples = timing.max_samples;
        w->samples = calloc(w->cap_samples, sizeof(double));
        if (cfg->mode == LCB_MODE_UDP) {
            w->udp_buf = malloc(one_len * cfg->pipeline);
            w->udp_iov = calloc(cfg->pipeline, sizeof(struct iovec));
            if (w->udp_buf == NULL || w->udp_iov == NULL) {
                workers_free(run, i + 1);
                return -ENOMEM;
            }
            for (unsigned k = 0; k < cfg->pipeline; k++)
                memcpy(w->udp_buf + k * one_len, one_len > 0 ? run->pattern : "", one_len);
        }
        if (w->conns == NULL || w->samples == NULL ||
            lcb_hdr_init(&w->hist, LCB_HDR_LOWEST, LCB_HDR_HIGHEST, LCB_HDR_SIGFIGS) != 0) {
            workers_free(run, i + 1);
            return -ENOMEM;
        }
        for (unsigned j = 0; j < w->nconns; j++) {
            lcb_conn_t *c = &w->conns[j];
            c->w = w;
            /* Round robin over the loops, so each loop's share of the schedule is spread evenly;
             * over all loops the indices are a permutation of 0 .. connections - 1. */
            c->gidx = (uint64_t)j * nt + i;
            c->mask = ring - 1;
            c->ring = calloc(ring, sizeof(lcb_slot_t));
            if (c->ring == NULL) {
                workers_free(run, i + 1);
                return -ENOMEM;
            }
            conn_reset(c);
        }
    }
    return 0;
}

static int fail(char *err, size_t errlen, int code, const char *what)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", what, lc_strerror(code));
    return code;
}

static void fmt_count(char *buf, size_t len, double v)
{
    if (v >= 1e9)
        snprintf(buf, len, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, len, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else
        snprintf(buf, len, "%.0f", v);
}

/* Sleeps until deadline (CLOCK_MONOTONIC ns) unless SIGINT/SIGTERM comes: true if it did. */
static bool wait_until(const sigset_t *set, uint64_t deadline)
{
    for (;;) {
        uint64_t now = lcb_now_ns();
        if (now >= deadline)
            return false;
        uint64_t d = deadline - now;
        struct timespec ts = {.tv_sec = (time_t)(d / 1000000000ULL),
                              .tv_nsec = (long)(d % 1000000000ULL)};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            return true;
    }
}

static void merge(lcb_run_t *run, lcb_result_t *res)
{
    const lcb_config_t *cfg = run->cfg;
    size_t ns = 0;
    double sum = 0, max = 0;
    for (unsigned i = 0; i < cfg->threads; i++) {
        lcb_worker_t *w = &run->workers[i];
        res->requests += w->requests;
        res->bytes += w->bytes;
        for (int k = 0; k < 6; k++)
            res->status[k] += w->status[k];
        res->errors.connect += w->errors.connect;
        res->errors.read += w->errors.read;
        res->errors.write += w->errors.write;
        res->errors.timeout += w->errors.timeout;
        res->errors.mismatch += w->errors.mismatch;
        res->errors.lost += w->errors.lost;
        res->datagrams_sent += w->datagrams_sent;
        res->requests_total += w->requests_all;
        res->connections_opened += w->connections_opened;
        if (res->connect_error == 0)
            res->connect_error = w->connect_error;
        res->backlog += w->backlog;
        lcb_hdr_add(&res->latency, &w->hist);
        for (size_t k = 0; k < w->nsamples; k++) {
            sum += w->samples[k];
            if (w->samples[k] > max)
                max = w->samples[k];
        }
        ns += w->nsamples;
    }
    if (ns > 0) {
        double mean = sum / (double)ns, var = 0;
        for (unsigned i = 0; i < cfg->threads; i++) {
            lcb_worker_t *w = &run->workers[i];
            for (size_t k = 0; k < w->nsamples; k++)
                var += (w->samples[k] - mean) * (w->samples[k] - mean);
        }
        double sd = ns > 1 ? sqrt(var / (double)(ns - 1)) : 0;
        size_t within = 0;
        for (unsigned i = 0; i < cfg->threads; i++) {
            lcb_worker_t *w = &run->workers[i];
            for (size_t k = 0; k < w->nsamples; k++)
                within += fabs(w->samples[k] - mean) <= sd;
        }
        res->rps_mean = mean;
        res->rps_stdev = sd;
        res->rps_max = max;
        res->rps_within = (double)within / (double)ns;
    }
}

static double cpu_seconds(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec * 1e-6;
}

int lcb_run(const lcb_config_t *cfg, lcb_result_t *res, FILE *progress, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    struct rusage ru0;
    if (getrusage(RUSAGE_SELF, &ru0) != 0)
        memset(&ru0, 0, sizeof(ru0));
    int r = lcb_hdr_init(&res->latency, LCB_HDR_LOWEST, LCB_HDR_HIGHEST, LCB_HDR_SIGFIGS);
    if (r != 0)
        return fail(err, errlen, r, "histogram");
    lcb_run_t run = {.cfg = cfg, .stop_ns = UINT64_MAX};
    r = workers_init(&run);
    if (r != 0) {
        lcb_hdr_close(&res->latency);
        return fail(err, errlen, r, "set-up");
    }

    /* SIGINT/SIGTERM end the test early (and still report, as wrk does): block them in every
     * thread (the loop threads inherit the mask) and take them with sigtimedwait here. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);

    lc_group_opts_t gopts = {
        .nloops = cfg->threads,
        .unpinned = !cfg->pin,
        .cpus = cfg->ncpus > 0 ? cfg->cpus : NULL,
        .ncpus = cfg->ncpus,
        .spin_budget = -1, /* cross-thread work is rare here: never spin for it */
    };
    r = lc_group_create(&run.group, &gopts);
    if (r != 0) {
        fail(err, errlen, r,
             cfg->ncpus > 0 ? "loop group (is every --cpus CPU one this process may run on?)"
                            : "loop group");
        goto out;
    }
    r = lc_group_start(run.group);
    if (r != 0) {
        fail(err, errlen, r, "starting the loops");
        goto out;
    }
    lcb_timing_t timing;
    lcb_config_timing(cfg, &timing);
    uint64_t t0 = lcb_now_ns();
    uint64_t measure = t0 + timing.warmup_ns;
    uint64_t end = measure + timing.duration_ns;
    for (unsigned i = 0; i < cfg->threads; i++) {
        run.workers[i].start_ns = t0;
        run.workers[i].measure_ns = measure;
        run.workers[i].end_ns = end;
    }
    r = lc_group_broadcast_wait(run.group, worker_begin, &run);
    if (r != 0) {
        fail(err, errlen, r, "starting the connections");
        goto out;
    }

    uint64_t next = t0 + 1000000000ULL, last_requests = 0, last_t = t0;
    for (;;) {
        uint64_t until = progress != NULL && next < end ? next : end;
        if (wait_until(&set, until)) {
            res->interrupted = 1;
            run.stop_ns = lcb_now_ns();
            break;
        }
        if (until >= end)
            break;
        next += 1000000000ULL;
        lc_group_broadcast_wait(run.group, worker_snapshot, &run);
        uint64_t reqs = 0, errs = 0, now = lcb_now_ns();
        for (unsigned i = 0; i < cfg->threads; i++) {
            reqs += run.workers[i].snap_requests;
            errs += run.workers[i].snap_errors;
        }
        char rate[32], total[32];
        fmt_count(rate, sizeof(rate),
                  (double)(reqs - last_requests) * 1e9 / (double)(now - last_t));
        fmt_count(total, sizeof(total), (double)reqs);
        fprintf(progress, "\r\033[K  [%3.0fs] %s req/s, %s done, %llu errors%s",
                (double)(now - t0) * 1e-9, rate, total, (unsigned long long)errs,
                now < measure ? " (warm-up)" : "");
        fflush(progress);
        last_requests = reqs;
        last_t = now;
    }
    if (progress != NULL) {
        fprintf(progress, "\r\033[K");
        fflush(progress);
    }
    lc_group_broadcast_wait(run.group, worker_stop, &run);
    uint64_t window_end = run.stop_ns < end ? run.stop_ns : end;
    res->elapsed = window_end > measure ? (double)(window_end - measure) * 1e-9 : 0.0;
    r = 0;

out:
    if (run.group != NULL)
        lc_group_free(run.group);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r == 0) {
        merge(&run, res);
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) {
            res->cpu_user = cpu_seconds(&ru.ru_utime) - cpu_seconds(&ru0.ru_utime);
            res->cpu_sys = cpu_seconds(&ru.ru_stime) - cpu_seconds(&ru0.ru_stime);
        }
    }
    workers_free(&run, cfg->threads);
    if (r != 0)
        lcb_hdr_close(&res->latency);
    return r;
}

void lcb_result_close(lcb_result_t *res) { lcb_hdr_close(&res->latency); }

uint64_t lcb_result_errors(const lcb_result_t *res)
{
    const lcb_errors_t *e = &res->errors;
    return e->connect + e->read + e->write + e->timeout + e->mismatch + res->status[4] +
           res->status[5];
}

double lcb_result_error_ratio(const lcb_result_t *res)
{
    const lcb_errors_t *e = &res->errors;
    uint64_t attempts = res->requests + e->connect + e->read + e->write + e->timeout + e->mismatch;
    return attempts > 0 ? (double)lcb_result_errors(res) / (double)attempts : 0.0;
}

int lcb_exit_code(const lcb_config_t *cfg, const lcb_result_t *res)
{
    if (res->requests == 0)
        return 1;
    return lcb_result_error_ratio(res) > cfg->max_errors ? 1 : 0;
}
