#include "tests/engine/datagram_helpers.h"

#include <netinet/in.h>
#include <string.h>

#include "tests/support/loop_fixture.h"

static void echo_made(lc_datagram_transport_t *t, void *user)
{
    (void)t;
    ((dg_echo_t *)user)->made++;
}

static void echo_received(lc_datagram_transport_t *t, const char *data, size_t len,
                          const struct sockaddr *addr, socklen_t addrlen, void *user)
{
    dg_echo_t *e = user;
    e->received++;
    if (addr != NULL) /* an unbound Unix sender cannot be answered */
        lc_datagram_transport_sendto(t, data, len, addr, addrlen);
}

static void echo_error(lc_datagram_transport_t *t, int err, void *user)
{
    (void)t;
    dg_echo_t *e = user;
    e->errors++;
    e->last_error = err;
}

static void echo_lost(lc_datagram_transport_t *t, int err, void *user)
{
    (void)t;
    dg_echo_t *e = user;
    e->lost++;
    e->lost_err = err;
}

const lc_datagram_protocol_t dg_echo_proto = {
    .connection_made = echo_made,
    .datagram_received = echo_received,
    .error_received = echo_error,
    .connection_lost = echo_lost,
};

int dg_echo_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    *proto = &dg_echo_proto;
    *user = arg;
    return 0;
}

static void client_made(lc_datagram_transport_t *t, void *user)
{
    (void)t;
    ((dg_client_t *)user)->made++;
}

static void client_received(lc_datagram_transport_t *t, const char *data, size_t len,
                            const struct sockaddr *addr, socklen_t addrlen, void *user)
{
    dg_client_t *c = user;
    c->received++;
    size_t n = len < sizeof(c->last) ? len : sizeof(c->last);
    if (n > 0)
        memcpy(c->last, data, n);
    c->last_len = len;
    c->last_addrlen = addrlen;
    if (addr != NULL && addrlen <= sizeof(c->last_addr))
        memcpy(&c->last_addr, addr, addrlen);
    if (c->on_datagram != NULL)
        c->on_datagram(c->ctx, t, data, len, addr, addrlen);
}

static void client_error(lc_datagram_transport_t *t, int err, void *user)
{
    (void)t;
    dg_client_t *c = user;
    c->errors++;
    c->last_error = err;
}

static void client_lost(lc_datagram_transport_t *t, int err, void *user)
{
    (void)t;
    dg_client_t *c = user;
    c->lost++;
    c->lost_err = err;
}

static void client_pause(lc_datagram_transport_t *t, void *user)
{
    (void)t;
    ((dg_client_t *)user)->paused++;
}

static void client_resume(lc_datagram_transport_t *t, void *user)
{
    (void)t;
    ((dg_client_t *)user)->resumed++;
}

const lc_datagram_protocol_t dg_client_proto = {
    .connection_made = client_made,
    .datagram_received = client_received,
    .error_received = client_error,
    .connection_lost = client_lost,
    .pause_writing = client_pause,
    .resume_writing = client_resume,
};

int dg_client_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    *proto = &dg_client_proto;
    *user = arg;
    return 0;
}

static void stop_on_done(lc_future_t *fut, void *arg)
{
    (void)fut;
    lc_loop_stop(arg);
}

lc_datagram_transport_t *dg_open(lc_loop_t *loop, lc_datagram_protocol_factory_fn factory,
                                 void *arg, const lc_datagram_opts_t *opts, int *err)
{
    lc_future_t *fut = NULL;
    int r = lc_loop_create_datagram_endpoint(loop, factory, arg, opts, &fut);
    if (r != 0) {
        if (err != NULL)
            *err = r;
        return NULL;
    }
    if (!lc_future_done(fut)) {
        lc_future_add_done_callback(fut, stop_on_done, loop);
        lc_handle_t *guard = NULL;
        lc_loop_call_later(loop, 30, lc_test_stop_cb, loop, &guard);
        lc_loop_run_forever(loop);
        lc_handle_cancel(guard);
        lc_handle_unref(guard);
    }
    void *t = NULL;
    r = lc_future_done(fut) ? lc_future_result(fut, &t) : LC_ETIMEDOUT;
    if (r != 0)
        t = NULL;
    if (err != NULL)
        *err = r;
    lc_future_unref(fut);
    return t;
}

typedef struct {
    lc_loop_t *loop;
    const long *lcounter;
    const int *icounter;
    long target;
    lc_handle_t *next; /* the watch's next check */
} watch_t;

static long watch_value(const watch_t *w)
{
    return w->lcounter != NULL ? *w->lcounter : *w->icounter;
}

static void watch_cb(void *arg)
{
    watch_t *w = arg;
    lc_handle_unref(w->next);
    w->next = NULL;
    if (watch_value(w) >= w->target) {
        lc_loop_stop(w->loop);
        return;
    }
    lc_loop_call_later(w->loop, 0.001, watch_cb, w, &w->next);
}

static void run_until(lc_loop_t *loop, watch_t *w, double seconds)
{
    lc_handle_t *guard = NULL;
    lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, &guard);
    lc_loop_call_soon(loop, watch_cb, w, &w->next);
    lc_loop_run_forever(loop);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    if (w->next != NULL) { /* stopped by the guard: the watch must not outlive w */
        lc_handle_cancel(w->next);
        lc_handle_unref(w->next);
        w->next = NULL;
    }
}

bool dg_run_until(lc_loop_t *loop, const long *counter, long target, double seconds)
{
    watch_t w = {.loop = loop, .lcounter = counter, .target = target};
    run_until(loop, &w, seconds);
    return *counter >= target;
}

bool dg_run_until_int(lc_loop_t *loop, const int *counter, int target, double seconds)
{
    watch_t w = {.loop = loop, .icounter = counter, .target = target};
    run_until(loop, &w, seconds);
    return *counter >= target;
}

int dg_port(lc_datagram_transport_t *t)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (lc_datagram_transport_get_sockname(t, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

void dg_fill(char *buf, size_t len, unsigned seed)
{
    unsigned x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (char)(x >> 16);
    }
}
