/* Datagram endpoints under load: 200 client endpoints at once against one echo endpoint, a burst
 * of 10,000 datagrams (loss allowed, never corruption, duplication or misdelivery), and Python's
 * asyncio as the client of our echo endpoint. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/engine/datagram_helpers.h"
#include "tests/support/loop_fixture.h"

/* Gives the echo endpoint a large receive buffer, so that only real overload drops datagrams. */
static lc_datagram_transport_t *big_echo_server(lc_loop_t *loop, dg_echo_t *e)
{
    lc_datagram_transport_t *t =
        dg_open(loop, dg_echo_factory, e, &(lc_datagram_opts_t){.local_host = "127.0.0.1"}, NULL);
    assert_non_null(t);
    int sz = 4 << 20;
    setsockopt(lc_datagram_transport_get_fd(t), SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    return t;
}

/* ---- 200 clients ------------------------------------------------------------------------------
 */

#define NCLIENTS 200

typedef struct {
    dg_client_t c;
    lc_datagram_transport_t *t;
    char payload[64];
    bool done;
    int wrong; /* replies that were not our own payload */
    int *ndone;
} many_client_t;

static void many_on_datagram(void *ctx, lc_datagram_transport_t *t, const char *data, size_t len,
                             const struct sockaddr *addr, socklen_t addrlen)
{
    (void)t;
    (void)addr;
    (void)addrlen;
    many_client_t *m = ctx;
    if (len != sizeof(m->payload) || memcmp(data, m->payload, len) != 0) {
        m->wrong++;
        return;
    }
    if (!m->done) {
        m->done = true;
        (*m->ndone)++;
    }
}

typedef struct {
    many_client_t *clients;
    lc_loop_t *loop;
    lc_handle_t *timer;
} resend_t;

/* Every client without its reply sends again (a datagram may be lost on a loaded host). */
static void resend_cb(void *arg)
{
    resend_t *r = arg;
    lc_handle_unref(r->timer);
    r->timer = NULL;
    for (int i = 0; i < NCLIENTS; i++) {
        many_client_t *m = &r->clients[i];
        if (!m->done)
            assert_int_equal(
                lc_datagram_transport_sendto(m->t, m->payload, sizeof(m->payload), NULL, 0), 0);
    }
    lc_loop_call_later(r->loop, 0.5, resend_cb, r, &r->timer);
}

static void test_datagram_two_hundred_clients(void **state)
{
    lc_loop_t *loop = *state;
    dg_echo_t e = {0};
    lc_datagram_transport_t *srv = big_echo_server(loop, &e);
    int port = dg_port(srv);
    many_client_t *clients = calloc(NCLIENTS, sizeof(*clients));
    assert_non_null(clients);
    int ndone = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        many_client_t *m = &clients[i];
        m->c.loop = loop;
        m->c.on_datagram = many_on_datagram;
        m->c.ctx = m;
        m->ndone = &ndone;
        dg_fill(m->payload, sizeof(m->payload), (unsigned)i + 1000);
        snprintf(m->payload, 16, "client-%u", (unsigned)i % 1000u);
        m->t =
            dg_open(loop, dg_client_factory, &m->c,
                    &(lc_datagram_opts_t){.remote_host = "127.0.0.1", .remote_port = port}, NULL);
        assert_non_null(m->t);
    }
    resend_t r = {.clients = clients, .loop = loop};
    lc_loop_call_soon(loop, resend_cb, &r, &r.timer);
    assert_true(dg_run_until_int(loop, &ndone, NCLIENTS, 120));
    lc_handle_cancel(r.timer);
    lc_handle_unref(r.timer);
    for (int i = 0; i < NCLIENTS; i++) {
        assert_true(clients[i].done);
        assert_int_equal(clients[i].wrong, 0);
        assert_int_equal(clients[i].c.errors, 0);
        lc_datagram_transport_close(clients[i].t);
    }
    for (int i = 0; i < NCLIENTS; i++)
        assert_true(dg_run_until_int(loop, &clients[i].c.lost, 1, 10));
    assert_true(e.received >= NCLIENTS);
    assert_int_equal(e.errors, 0);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &e.lost, 1, 10));
    free(clients);
}

/* ---- A burst of 10,000 ------------------------------------------------------------------------
 */

#define BURST 10000

/* Datagram seq: 4 bytes of seq, then a pattern seeded by seq; 16 to 1,400 bytes long. */
static size_t burst_len(int seq) { return 16 + (size_t)(seq * 7919 % 1385); }

typedef struct {
    unsigned char seen[BURST];
    long ok, bad, dup;
} burst_check_t;

static void burst_check(burst_check_t *b, const char *data, size_t len)
{
    int seq;
    if (len < sizeof(seq)) {
        b->bad++;
        return;
    }
    memcpy(&seq, data, sizeof(seq));
    if (seq < 0 || seq >= BURST || len != burst_len(seq)) {
        b->bad++;
        return;
    }
    static char want[1500];
    dg_fill(want, len, (unsigned)seq);
    if (memcmp(want + sizeof(seq), data + sizeof(seq), len - sizeof(seq)) != 0) {
        b->bad++;
        return;
    }
    if (b->seen[seq]++) {
        b->dup++;
        return;
    }
    b->ok++;
}

/* The server side: echo, after checking. */
typedef struct {
    burst_check_t chk;
    int lost;
} burst_srv_t;

static void bsrv_received(lc_datagram_transport_t *t, const char *data, size_t len,
                          const struct sockaddr *addr, socklen_t addrlen, void *user)
{
    burst_srv_t *s = user;
    burst_check(&s->chk, data, len);
    lc_datagram_transport_sendto(t, data, len, addr, addrlen);
}

static void bsrv_lost(lc_datagram_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    ((burst_srv_t *)user)->lost++;
}

static const lc_datagram_protocol_t bsrv_proto = {.datagram_received = bsrv_received,
                                                  .connection_lost = bsrv_lost};

static int bsrv_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    *proto = &bsrv_proto;
    *user = arg;
    return 0;
}

typedef struct {
    lc_loop_t *loop;
    lc_datagram_transport_t *t;
    burst_check_t chk;
    int next;       /* the next seq to send */
    long last_seen; /* progress watch */
    int quiet;      /* progress checks with nothing new */
    const burst_check_t *srv;
    lc_handle_t *timer;
} burst_client_t;

static void burst_on_datagram(void *ctx, lc_datagram_transport_t *t, const char *data, size_t len,
                              const struct sockaddr *addr, socklen_t addrlen)
{
    (void)t;
    (void)addr;
    (void)addrlen;
    burst_check(&((burst_client_t *)ctx)->chk, data, len);
}

/* Sends the burst in slices of 500 per callback, as fast as the loop turns, then watches for
 * the echoes to stop coming. */
static void burst_step(void *arg)
{
    burst_client_t *b = arg;
    lc_handle_unref(b->timer);
    b->timer = NULL;
    if (b->next < BURST) {
        static char buf[1500];
        for (int k = 0; k < 500 && b->next < BURST; k++, b->next++) {
            size_t len = burst_len(b->next);
            dg_fill(buf, len, (unsigned)b->next);
            memcpy(buf, &b->next, sizeof(b->next));
            assert_int_equal(lc_datagram_transport_sendto(b->t, buf, len, NULL, 0), 0);
        }
        lc_loop_call_soon(b->loop, burst_step, b, &b->timer);
        return;
    }
    long seen = b->chk.ok + b->srv->ok;
    if (b->chk.ok >= BURST || (seen == b->last_seen && ++b->quiet >= 4)) {
        lc_loop_stop(b->loop);
        return;
    }
    if (seen != b->last_seen)
        b->quiet = 0;
    b->last_seen = seen;
    lc_loop_call_later(b->loop, 0.25, burst_step, b, &b->timer);
}

static void test_datagram_burst_of_ten_thousand(void **state)
{
    lc_loop_t *loop = *state;
    burst_srv_t *s = calloc(1, sizeof(*s));
    burst_client_t *b = calloc(1, sizeof(*b));
    dg_client_t *c = calloc(1, sizeof(*c));
    assert_true(s != NULL && b != NULL && c != NULL);
    lc_datagram_transport_t *srv =
        dg_open(loop, bsrv_factory, s, &(lc_datagram_opts_t){.local_host = "127.0.0.1"}, NULL);
    assert_non_null(srv);
    int sz = 4 << 20;
    setsockopt(lc_datagram_transport_get_fd(srv), SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    c->loop = loop;
    c->on_datagram = burst_on_datagram;
    c->ctx = b;
    b->loop = loop;
    b->srv = &s->chk;
    b->t = dg_open(loop, dg_client_factory, c,
                   &(lc_datagram_opts_t){.remote_host = "127.0.0.1", .remote_port = dg_port(srv)},
                   NULL);
    assert_non_null(b->t);
    setsockopt(lc_datagram_transport_get_fd(b->t), SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    lc_handle_t *guard = NULL;
    lc_loop_call_later(loop, 120, lc_test_stop_cb, loop, &guard);
    lc_loop_call_soon(loop, burst_step, b, &b->timer);
    lc_loop_run_forever(loop);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    if (b->timer != NULL) {
        lc_handle_cancel(b->timer);
        lc_handle_unref(b->timer);
    }
    printf("burst: sent %d, server got %ld, client got %ld echoes back\n", b->next, s->chk.ok,
           b->chk.ok);
    assert_int_equal(b->next, BURST);
    /* Loss is allowed; corruption, duplication and misdelivery never. */
    assert_int_equal(s->chk.bad, 0);
    assert_int_equal(s->chk.dup, 0);
    assert_int_equal(b->chk.bad, 0);
    assert_int_equal(b->chk.dup, 0);
    assert_true(s->chk.ok > 0);
    assert_true(b->chk.ok > 0);
    assert_true(b->chk.ok <= s->chk.ok);
    /* Every echo is of a datagram the server saw. */
    for (int i = 0; i < BURST; i++)
        if (b->chk.seen[i])
            assert_true(s->chk.seen[i]);
    lc_datagram_transport_close(b->t);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &c->lost, 1, 10));
    assert_true(dg_run_until_int(loop, &s->lost, 1, 10));
    free(s);
    free(b);
    free(c);
}

/* ---- Python's asyncio as the client -----------------------------------------------------------
 */

static const char python_client[] =
    "import asyncio, sys\n"
    "SIZES = [1, 1472, 1473, 8192, 65507]\n"
    "class P(asyncio.DatagramProtocol):\n"
    "    def __init__(self):\n"
    "        self.q = asyncio.Queue()\n"
    "    def datagram_received(self, data, addr):\n"
    "        self.q.put_nowait(data)\n"
    "    def error_received(self, exc):\n"
    "        print('error', exc); sys.exit(1)\n"
    "async def main(port):\n"
    "    loop = asyncio.get_running_loop()\n"
    "    t, p = await loop.create_datagram_endpoint(P, remote_addr=('127.0.0.1', port))\n"
    "    for n in SIZES:\n"
    "        data = bytes((i * 7 + n) & 255 for i in range(n))\n"
    "        for attempt in range(20):\n"
    "            t.sendto(data)\n"
    "            try:\n"
    "                got = await asyncio.wait_for(p.q.get(), 1.0)\n"
    "                break\n"
    "            except asyncio.TimeoutError:\n"
    "                continue\n"
    "        else:\n"
    "            print('timeout', n); return 1\n"
    "        if got != data:\n"
    "            print('mismatch', n, len(got)); return 1\n"
    "    t.close()\n"
    "    print('ok', len(SIZES))\n"
    "    return 0\n"
    "sys.exit(asyncio.run(main(int(sys.argv[1]))))\n";

typedef struct {
    pid_t pid;
    int status;
    int exited;
    lc_loop_t *loop;
} child_t;

static void check_child(void *arg)
{
    child_t *ch = arg;
    if (waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid) {
        ch->exited = 1;
        lc_loop_stop(ch->loop);
        return;
    }
    lc_loop_call_later(ch->loop, 0.01, check_child, ch, NULL);
}

static void test_datagram_python_asyncio_client(void **state)
{
    lc_loop_t *loop = *state;
    if (access("/usr/bin/python3", X_OK) != 0)
        skip();
    dg_echo_t e = {0};
    lc_datagram_transport_t *srv = big_echo_server(loop, &e);
    char script[64], out[64], port[16];
    snprintf(script, sizeof(script), "/tmp/lc-pydg-%d.py", (int)getpid());
    snprintf(out, sizeof(out), "/tmp/lc-pydg-%d.out", (int)getpid());
    snprintf(port, sizeof(port), "%d", dg_port(srv));
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fputs(python_client, f);
    fclose(f);
    child_t ch = {.loop = loop};
    ch.pid = fork();
    if (ch.pid == 0) {
        FILE *o = freopen(out, "w", stdout);
        (void)o;
        execl("/usr/bin/python3", "python3", script, port, (char *)NULL);
        _exit(127);
    }
    assert_true(ch.pid > 0);
    lc_handle_t *poll = NULL;
    lc_loop_call_soon(loop, check_child, &ch, &poll);
    lc_handle_unref(poll);
    lc_handle_t *guard = NULL;
    lc_loop_call_later(loop, 90, lc_test_stop_cb, loop, &guard);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    if (!ch.exited) {
        kill(ch.pid, SIGKILL);
        waitpid(ch.pid, &ch.status, 0);
        fail_msg("the Python client did not finish in 90 s");
    }
    char line[128] = {0};
    f = fopen(out, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    unlink(script);
    unlink(out);
    assert_true(WIFEXITED(ch.status));
    assert_int_equal(WEXITSTATUS(ch.status), 0);
    assert_string_equal(line, "ok 5\n");
    assert_true(e.received >= 5);
    lc_datagram_transport_close(srv);
    assert_true(dg_run_until_int(loop, &e.lost, 1, 10));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(280);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_datagram_two_hundred_clients),
        T(test_datagram_burst_of_ten_thousand),
        T(test_datagram_python_asyncio_client),
#undef T
    };
    return cmocka_run_group_tests_name("datagram_load", tests, NULL, NULL);
}
