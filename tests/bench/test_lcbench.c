/* lcbench end to end: short runs (0.3 - 0.5 s) against tiny loopcore servers started here, on a
 * one-loop group of their own: HTTP answers with Content-Length, chunked, 404 and
 * "Connection: close"; a server that never answers; an echo server and one that corrupts bytes;
 * and a closed port. Each run checks the figures and the exit status. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bench/lcbench/lcbench.h"
#include "loopcore.h"
#include <openssl/ssl.h>

#include "tests/support/loop_fixture.h"

/* ---- The servers ----------------------------------------------------------------------------- */

typedef enum {
    SRV_OK,       /* 200, Content-Length: 13 */
    SRV_CHUNKED,  /* 200, chunked body in two chunks */
    SRV_NOTFOUND, /* 404 */
    SRV_CLOSE,    /* 200 with "Connection: close", then closes */
    SRV_HANG,     /* reads and never answers */
    SRV_ECHO,     /* echoes */
    SRV_CORRUPT,  /* echoes, one byte in 640 changed */
    SRV_SLOW,     /* 200, one response per 20 ms per connection, in order */
    SRV_COUNT
} srv_kind;

static const char *const responses[] = {
    [SRV_OK] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!",
    [SRV_CHUNKED] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nHello\r\n8\r\n, World!\r\n0\r\n\r\n",
    [SRV_NOTFOUND] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    [SRV_CLOSE] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!",
    [SRV_SLOW] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!",
};

typedef struct {
    srv_kind kind;
    int match; /* bytes of "\r\n\r\n" matched so far */
    uint64_t total;
    bool closed;
    /* SRV_SLOW: requests waiting, the pending timer, and whether the connection is gone (the
     * struct is freed by whichever of connection_lost and the timer comes last). */
    lc_transport_t *t;
    unsigned pending;
    bool timer_armed;
    bool lost;
} srv_conn;

#define SLOW_SERVICE_S 0.02

static void srv_slow_cb(void *arg)
{
    srv_conn *c = arg;
    c->timer_armed = false;
    if (c->lost) {
        free(c);
        return;
    }
    lc_transport_write(c->t, responses[SRV_SLOW], strlen(responses[SRV_SLOW]));
    if (--c->pending > 0)
        c->timer_armed = lc_loop_call_later(lc_transport_get_loop(c->t), SLOW_SERVICE_S,
                                            srv_slow_cb, c, NULL) == 0;
}

static void srv_made(lc_transport_t *t, void *user)
{
    srv_conn *c = user;
    c->t = t;
}

static srv_kind kinds[SRV_COUNT];
static lc_group_t *srv_group;
static lc_group_server_t *servers[SRV_COUNT];
static int ports[SRV_COUNT];
/* The first bytes the SRV_OK server received (written on the server loop). */
static char first_request[1024];
static size_t first_len;

static void srv_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    srv_conn *c = user;
    if (c->closed)
        return;
    if (c->kind == SRV_ECHO) {
        lc_transport_write(t, data, len);
        return;
    }
    if (c->kind == SRV_CORRUPT) {
        char buf[65536];
        memcpy(buf, data, len);
        for (size_t i = 0; i < len; i++) {
            if (++c->total % 640 == 0)
                buf[i] ^= 0x55;
        }
        lc_transport_write(t, buf, len);
        return;
    }
    if (c->kind == SRV_OK && first_len == 0) {
        first_len = len < sizeof(first_request) - 1 ? len : sizeof(first_request) - 1;
        memcpy(first_request, data, first_len);
    }
    if (c->kind == SRV_HANG)
        return;
    /* One response per "\r\n\r\n", all of this read's responses in one write. */
    static const char end[] = "\r\n\r\n";
    char out[16384];
    size_t n = 0, rlen = strlen(responses[c->kind]);
    for (size_t i = 0; i < len; i++) {
        if (data[i] == end[c->match])
            c->match++;
        else
            c->match = data[i] == '\r' ? 1 : 0;
        if (c->match < 4)
            continue;
        c->match = 0;
        if (c->kind == SRV_SLOW) {
            if (c->pending++ == 0)
                c->timer_armed = lc_loop_call_later(lc_transport_get_loop(t), SLOW_SERVICE_S,
                                                    srv_slow_cb, c, NULL) == 0;
            continue;
        }
        if (n + rlen > sizeof(out)) {
            lc_transport_write(t, out, n);
            n = 0;
        }
        memcpy(out + n, responses[c->kind], rlen);
        n += rlen;
        if (c->kind == SRV_CLOSE) {
            c->closed = true;
            break;
        }
    }
    if (n > 0)
        lc_transport_write(t, out, n);
    if (c->closed)
        lc_transport_close(t);
}

static void srv_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    srv_conn *c = user;
    c->lost = true;
    if (!c->timer_armed)
        free(c);
}

static const lc_protocol_t srv_proto = {
    .connection_made = srv_made,
    .data_received = srv_data,
    .connection_lost = srv_lost,
};

/* Connections each kind's servers accepted (any loop; --handshake's test counts them). */
static _Atomic uint64_t accepted[SRV_COUNT];

static int srv_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    srv_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LC_ENOMEM;
    c->kind = *(srv_kind *)arg;
    accepted[c->kind]++;
    *proto = &srv_proto;
    *user = c;
    return 0;
}

/* The same kinds over TLS (SRV_OK, SRV_CLOSE, SRV_ECHO), with a certificate made at set-up by
 * `openssl req` in a temporary directory. */
static lc_group_server_t *tls_servers[SRV_COUNT];
static int tls_ports[SRV_COUNT];
static char tls_dir[64];

static int tls_servers_up(void)
{
    snprintf(tls_dir, sizeof(tls_dir), "/tmp/lc_lcb_tls_XXXXXX");
    if (mkdtemp(tls_dir) == NULL)
        return -1;
    char cmd[512], cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/cert.pem", tls_dir);
    snprintf(key, sizeof(key), "%s/key.pem", tls_dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=localhost >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        return -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return -1;
    static const srv_kind tls_kinds[] = {SRV_OK, SRV_CLOSE, SRV_ECHO};
    int r = 0;
    for (size_t i = 0; i < sizeof(tls_kinds) / sizeof(tls_kinds[0]) && r == 0; i++) {
        srv_kind k = tls_kinds[i];
        r = lc_group_create_server(
            srv_group, srv_factory, &kinds[k],
            &(lc_group_server_opts_t){.host = "127.0.0.1", .backlog = 512, .ssl = ctx},
            &tls_servers[k]);
        if (r == 0)
            tls_ports[k] = lc_group_server_port(tls_servers[k]);
    }
    SSL_CTX_free(ctx);
    return r == 0 ? 0 : -1;
}

static int servers_up(void **state)
{
    (void)state;
    lc_test_watchdog(240);
    if (lc_group_create(&srv_group, &(lc_group_opts_t){.nloops = 1, .unpinned = true}) != 0 ||
        lc_group_start(srv_group) != 0)
        return -1;
    for (int k = 0; k < SRV_COUNT; k++) {
        kinds[k] = (srv_kind)k;
        if (lc_group_create_server(srv_group, srv_factory, &kinds[k],
                                   &(lc_group_server_opts_t){.host = "127.0.0.1", .backlog = 512},
                                   &servers[k]) != 0)
            return -1;
        ports[k] = lc_group_server_port(servers[k]);
    }
    return tls_servers_up();
}

static int servers_down(void **state)
{
    (void)state;
    for (int k = 0; k < SRV_COUNT; k++) {
        lc_group_server_close(servers[k]);
        lc_group_server_free(servers[k]);
        if (tls_servers[k] != NULL) {
            lc_group_server_close(tls_servers[k]);
            lc_group_server_free(tls_servers[k]);
        }
    }
    lc_group_free(srv_group);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tls_dir);
    if (tls_dir[0] != '\0' && system(cmd) != 0)
        return -1;
    return 0;
}

/* ---- Running lcbench ------------------------------------------------------------------------- */

static lcb_config_t cfg;

/* Parses the NULL-terminated arguments, with "%d" in the URL replaced by port; runs. Returns the
 * exit status lcbench would give. */
static int run_with(lcb_result_t *res, int port, const char *const *args)
{
    static char url[128];
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"lcbench";
    for (; *args != NULL; args++) {
        if (strstr(*args, "://") != NULL) {
            snprintf(url, sizeof(url), *args, port);
            argv[argc++] = url;
        } else {
            argv[argc++] = (char *)*args;
        }
    }
    argv[argc] = NULL;
    char err[512];
    int r = lcb_config_parse(&cfg, argc, argv, err, sizeof(err));
    if (r != LCB_PARSE_OK)
        fail_msg("parse: %s", err);
    r = lcb_run(&cfg, res, NULL, err, sizeof(err));
    if (r != 0)
        fail_msg("run: %s", err);
    print_message("  %s: %llu requests in %.2fs (%llu total), p50 %.1f us, p99 %.1f us, errors "
                  "%llu (connect %llu read %llu write %llu timeout %llu mismatch %llu "
                  "4xx %llu)\n",
                  url, (unsigned long long)res->requests, res->elapsed,
                  (unsigned long long)res->requests_total,
                  (double)lcb_hdr_value_at_percentile(&res->latency, 50) / 1000.0,
                  (double)lcb_hdr_value_at_percentile(&res->latency, 99) / 1000.0,
                  (unsigned long long)lcb_result_errors(res),
                  (unsigned long long)res->errors.connect, (unsigned long long)res->errors.read,
                  (unsigned long long)res->errors.write, (unsigned long long)res->errors.timeout,
                  (unsigned long long)res->errors.mismatch, (unsigned long long)res->status[4]);
    return lcb_exit_code(&cfg, res);
}

#define RUN(res, kind, ...) run_with(res, ports[kind], (const char *const[]){__VA_ARGS__, NULL})

static void assert_clean(const lcb_result_t *res)
{
    assert_true(res->requests > 100);
    assert_int_equal(lcb_result_errors(res), 0);
    assert_int_equal(res->latency.total_count, (int64_t)res->requests);
    assert_true(res->bytes > 0);
}

static int get_first_request(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    (void)result;
    memcpy(arg, first_request, sizeof(first_request));
    return (int)first_len;
}

static void test_lcbench_http_closed_loop(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN(&res, SRV_OK, "-t2", "-c8", "-d500ms", "--latency", "-m", "POST", "-H",
                         "X-Test: 1", "--body", "abc", "http://127.0.0.1:%d/plaintext"),
                     0);
    assert_clean(&res);
    assert_true(res.elapsed > 0.49 && res.elapsed < 0.51);
    assert_int_equal(res.status[2], res.requests);
    assert_int_equal(res.connections_opened, 8);
    /* 13-byte bodies plus headers: at least 50 bytes per response. */
    assert_true(res.bytes >= res.requests * 50);
    assert_true(lcb_hdr_value_at_percentile(&res.latency, 50) > 0);
    assert_true(res.rps_mean > 0);
    /* The request the server saw: precomputed from -m, the URL, -H and --body. */
    char seen[sizeof(first_request)];
    int n = lc_loop_submit_wait(lc_group_loop(srv_group, 0), get_first_request, seen, NULL);
    assert_true(n > 0);
    seen[n] = '\0';
    char expect[256];
    snprintf(expect, sizeof(expect),
             "POST /plaintext HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Test: 1\r\n"
             "Content-Length: 3\r\n\r\nabc",
             ports[SRV_OK]);
    assert_memory_equal(seen, expect, strlen(expect));
    lcb_result_close(&res);
}

static void test_lcbench_http_chunked_pipelined(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(
        RUN(&res, SRV_CHUNKED, "-t1", "-c4", "-d500ms", "--pipeline", "8", "http://127.0.0.1:%d/"),
        0);
    assert_clean(&res);
    assert_int_equal(res.status[2], res.requests);
    lcb_result_close(&res);
}

static void test_lcbench_http_connection_close(void **state)
{
    (void)state;
    lcb_result_t res;
    /* Every response closes its connection: lcbench reconnects, with no error. */
    assert_int_equal(RUN(&res, SRV_CLOSE, "-t1", "-c4", "-d500ms", "http://127.0.0.1:%d/"), 0);
    assert_clean(&res);
    assert_true(res.connections_opened > 100);
    lcb_result_close(&res);
}

#define RUN_TLS(res, kind, ...)                                                                    \
    run_with(res, tls_ports[kind], (const char *const[]){__VA_ARGS__, NULL})

/* https:// keep-alive; with Connection: close every request is a new connection and a full
 * handshake; tls:// echo verifies every byte. */
static void test_lcbench_https_and_tls_echo(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN_TLS(&res, SRV_OK, "-t2", "-c4", "-d500ms", "https://127.0.0.1:%d/"), 0);
    assert_clean(&res);
    assert_true(res.connections_opened <= 8);
    lcb_result_close(&res);
    assert_int_equal(RUN_TLS(&res, SRV_CLOSE, "-t1", "-c2", "-d500ms", "https://127.0.0.1:%d/"), 0);
    assert_true(res.requests > 10);
    assert_int_equal(lcb_result_errors(&res), 0);
    assert_true(res.connections_opened > 10);
    lcb_result_close(&res);
    assert_int_equal(
        RUN_TLS(&res, SRV_ECHO, "-t1", "-c2", "-d500ms", "--size", "1000", "tls://127.0.0.1:%d"),
        0);
    assert_clean(&res);
    lcb_result_close(&res);
}

/* --handshake: every request on a new connection with a full handshake (the server accepted one
 * connection per request, plus at most one in flight per connection slot); https:// (to a
 * keep-alive server: lcbench closes anyway) and tls:// echo; 0 errors. */
static void test_lcbench_handshake(void **state)
{
    (void)state;
    static const srv_kind ks[] = {SRV_OK, SRV_ECHO};
    for (size_t i = 0; i < 2; i++) {
        lcb_result_t res;
        uint64_t before = accepted[ks[i]];
        int r = ks[i] == SRV_OK ? RUN_TLS(&res, SRV_OK, "-t2", "-c4", "-d500ms", "--handshake",
                                          "https://127.0.0.1:%d/")
                                : RUN_TLS(&res, SRV_ECHO, "-t1", "-c2", "-d500ms", "--handshake",
                                          "--size", "100", "tls://127.0.0.1:%d");
        assert_int_equal(r, 0);
        assert_true(cfg.handshake);
        assert_true(res.requests > 10);
        assert_int_equal(lcb_result_errors(&res), 0);
        assert_int_equal(res.latency.total_count, (int64_t)res.requests);
        /* Each connection made served one request; the ones open at the stop, none yet. */
        assert_true(res.connections_opened >= res.requests_total);
        assert_true(res.connections_opened <= res.requests_total + cfg.connections);
        /* The servers' side, read after lcb_run() stopped: at least one accepted connection
         * per request; at most one more per slot (in flight at the stop). Accepts of the last
         * connects may still be on their way, so wait for them a little. */
        uint64_t n = 0;
        for (int k = 0; k < 100; k++) {
            n = accepted[ks[i]] - before;
            if (n >= res.requests_total)
                break;
            usleep(10000);
        }
        assert_true(n >= res.requests_total);
        assert_true(n <= res.requests_total + cfg.connections);
        lcb_result_close(&res);
    }
    /* Plain http:// or tcp://, or with --pipeline: usage errors. */
    static const char *const bad[][4] = {
        {"lcbench", "--handshake", "http://127.0.0.1:1/", NULL},
        {"lcbench", "--handshake", "tcp://127.0.0.1:1", NULL},
        {"lcbench", "--handshake", "--pipeline", "2"},
    };
    char err[256];
    for (size_t i = 0; i < 3; i++) {
        char *argv[6] = {0};
        int argc = 0;
        for (; argc < 4 && bad[i][argc] != NULL; argc++)
            argv[argc] = (char *)bad[i][argc];
        if (i == 2)
            argv[argc++] = (char *)"https://127.0.0.1:1/";
        assert_int_equal(lcb_config_parse(&cfg, argc, argv, err, sizeof(err)), LCB_PARSE_ERROR);
        assert_non_null(strstr(err, i == 2 ? "--pipeline" : "--handshake"));
    }
    char *argv[] = {(char *)"lcbench", (char *)"--handshake", (char *)"http://127.0.0.1:1/", NULL};
    assert_int_equal(lcb_main(3, argv), 2);
}

static void test_lcbench_http_404_fails_the_run(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN(&res, SRV_NOTFOUND, "-t1", "-c2", "-d300ms", "http://127.0.0.1:%d/x"), 1);
    assert_true(res.requests > 100);
    assert_int_equal(res.status[4], res.requests);
    assert_int_equal(lcb_result_errors(&res), res.requests);
    assert_true(lcb_result_error_ratio(&res) == 1.0);
    lcb_result_close(&res);
    /* A threshold of 1 tolerates them. */
    assert_int_equal(RUN(&res, SRV_NOTFOUND, "-t1", "-c2", "-d300ms", "--max-errors", "1",
                         "http://127.0.0.1:%d/x"),
                     0);
    lcb_result_close(&res);
}

static void test_lcbench_timeouts_count_as_errors(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(
        RUN(&res, SRV_HANG, "-t1", "-c2", "-d500ms", "--timeout", "100ms", "http://127.0.0.1:%d/"),
        1);
    assert_int_equal(res.requests, 0);
    /* Each connection times out about every 100 ms (+ one 10 ms tick). */
    assert_true(res.errors.timeout >= 4);
    lcb_result_close(&res);
}

static void test_lcbench_open_loop_rate(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN(&res, SRV_OK, "-t2", "-c4", "-d500ms", "-R", "4000", "--warmup", "100ms",
                         "http://127.0.0.1:%d/"),
                     0);
    /* 4000/s over 0.5 s: 2000 requests scheduled (a few at the edges either way), and never more
     * answered than that: an open loop does not run ahead of its schedule. How many are answered
     * in the window, or left as backlog, depends on the machine (a 2-core machine running the
     * suite under ASan beside a soak stalled the server for 100 ms and more: 1358 answered and a
     * backlog well short of the rest), so the lower bound is only a sanity check. */
    assert_true(res.requests <= 2100);
    assert_true(res.requests + res.backlog >= 1000);
    assert_int_equal(lcb_result_errors(&res), 0);
    /* The warm-up's requests ran but are not counted. */
    assert_true(res.requests_total >= res.requests + 300);
    lcb_result_close(&res);
}

static void test_lcbench_echo_verifies_bytes(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN(&res, SRV_ECHO, "-t2", "-c4", "-d500ms", "--size", "1000", "--pipeline",
                         "2", "tcp://127.0.0.1:%d"),
                     0);
    assert_clean(&res);
    assert_int_equal(res.bytes % 1000, 0);
    lcb_result_close(&res);
    /* A server that changes one byte in 640: caught, counted, and the run fails. */
    assert_int_equal(
        RUN(&res, SRV_CORRUPT, "-t1", "-c2", "-d300ms", "--size", "64", "tcp://127.0.0.1:%d"), 1);
    /* One message in ten carries a changed byte: at least one is caught however few messages a
     * loaded machine gets through in 0.3 s (28 here once, under ASan beside a soak run). */
    assert_true(res.errors.mismatch >= 1);
    assert_true(res.requests > 0);
    lcb_result_close(&res);
}

/* Coordinated omission: a server that takes 20 ms per request on one connection. Closed loop
 * sees 20 ms. At -R 200 the schedule asks for a request every 5 ms: they queue, and counted from
 * their intended send times the latencies grow by 15 ms per request (20 ms, 35 ms, ... about
 * 380 ms at the end of half a second), which is what a user of the server would see. */
static void test_lcbench_open_loop_corrects_coordinated_omission(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN(&res, SRV_SLOW, "-t1", "-c1", "-d500ms", "http://127.0.0.1:%d/"), 0);
    /* Bounds loose enough for a loaded CI machine (timers late, never early). */
    assert_true(res.requests >= 10 && res.requests <= 26);
    assert_true(lcb_hdr_value_at_percentile(&res.latency, 50) >= 20000000);
    assert_true(lcb_hdr_value_at_percentile(&res.latency, 50) < 60000000);
    lcb_result_close(&res);
    assert_int_equal(
        RUN(&res, SRV_SLOW, "-t1", "-c1", "-d500ms", "-R", "200", "http://127.0.0.1:%d/"), 0);
    assert_true(res.requests >= 10 && res.requests <= 26);
    assert_true(lcb_hdr_value_at_percentile(&res.latency, 50) > 100000000);
    assert_true(lcb_hdr_max(&res.latency) > 250000000);
    assert_true(lcb_hdr_max(&res.latency) < 600000000);
    /* About 100 requests were due in the window: the rest are reported as the backlog. */
    assert_true(res.backlog >= 50 && res.backlog + res.requests <= 102);
    lcb_result_close(&res);
}

/* A port nobody listens on: bind one, note it, close it. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static void test_lcbench_closed_port_exit_code(void **state)
{
    (void)state;
    int port = closed_port();
    lcb_result_t res;
    assert_int_equal(
        run_with(&res, port,
                 (const char *const[]){"-t1", "-c2", "-d300ms", "http://127.0.0.1:%d/", NULL}),
        1);
    assert_int_equal(res.requests, 0);
    assert_true(res.errors.connect >= 2);
    lcb_result_close(&res);
    /* The whole program, as a user runs it. */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    char *argv[] = {"lcbench", "-t1", "-c2", "-d300ms", url, NULL};
    assert_int_equal(lcb_main(5, argv), 1);
}

/* Open loop against nothing: every request due in the window is backlog, here 1G/s for 1 s over
 * two connections. The stop counts it in closed form, at once (one request at a time it took
 * seconds, and -R 1G -d 30d never finished). */
static void test_lcbench_open_loop_backlog_without_server(void **state)
{
    (void)state;
    int port = closed_port();
    lcb_result_t res;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run_with(&res, port,
                              (const char *const[]){"-t1", "-c2", "-d1s", "-R", "1G",
                                                    "http://127.0.0.1:%d/", NULL}),
                     1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    assert_int_equal(res.requests, 0);
    assert_true(res.backlog >= 1000000000ULL - 2 && res.backlog <= 1000000000ULL + 2);
    assert_true(took < 3.0);
    lcb_result_close(&res);
}

/* A listener whose accept queue is full drops new SYNs: connects hang until --connect-timeout. */
static void test_lcbench_connect_timeout(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    int fill[3];
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sin, sizeof(sin));
    }
    usleep(100000);
    lcb_result_t res;
    assert_int_equal(run_with(&res, ntohs(sin.sin_port),
                              (const char *const[]){"-t1", "-c2", "-d500ms", "--connect-timeout",
                                                    "100ms", "http://127.0.0.1:%d/", NULL}),
                     1);
    assert_int_equal(res.requests, 0);
    assert_true(res.errors.connect >= 4); /* about every 110 ms per connection */
    assert_int_equal(res.connect_error, LC_ETIMEDOUT);
    lcb_result_close(&res);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(lfd);
}

static void test_lcbench_main_json_and_percentiles(void **state)
{
    (void)state;
    char url[64], path[] = "/tmp/lcbench_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/plaintext", ports[SRV_OK]);
    /* wrk's command line, plus loopcore's outputs. */
    char *argv[] = {"lcbench", "-t2",           "-c8", "-d300ms", "--latency",
                    "--json",  "--percentiles", path,  url,       NULL};
    assert_int_equal(lcb_main(9, argv), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    unlink(path);
    text[n] = '\0';
    assert_non_null(strstr(text, "       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert_non_null(strstr(text, " 1.000000000000 "));
    assert_non_null(strstr(text, "#[Mean    = "));
    assert_non_null(strstr(text, "#[Buckets =           32, SubBuckets     =         2048]"));
    /* Usage errors exit with 2, help with 0. */
    char *bad[] = {"lcbench", "-t4", "-c2", url, NULL};
    assert_int_equal(lcb_main(4, bad), 2);
}

/* --plot: the run's latency spectrum as a PNG, drawn by lcbench-plot (a data dependency: on PATH
 * here, beside lcbench when installed or built); and lcbench-plot on several --percentiles
 * files at once. Skipped without gnuplot. */
static bool png_at(const char *path)
{
    unsigned char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    size_t n = fread(magic, 1, sizeof(magic), f);
    fclose(f);
    return n == 8 && memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static void test_lcbench_plot(void **state)
{
    (void)state;
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        skip();
    char cwd[2048], path[4200];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    const char *old = getenv("PATH");
    snprintf(path, sizeof(path), "%s/bench/lcbench:%s", cwd, old != NULL ? old : "/usr/bin:/bin");
    setenv("PATH", path, 1);
    char url[64], png[] = "/tmp/lcbench_plot_XXXXXX.png", hgrm[] = "/tmp/lcbench_plot_XXXXXX";
    int fd = mkstemps(png, 4);
    assert_true(fd >= 0);
    close(fd);
    fd = mkstemp(hgrm);
    assert_true(fd >= 0);
    close(fd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/plaintext", ports[SRV_OK]);
    char *argv[] = {"lcbench", "-t1",           "-c4", "-d300ms", "--json", "--plot",
                    png,       "--percentiles", hgrm,  url,       NULL};
    assert_int_equal(lcb_main(10, argv), 0);
    assert_true(png_at(png));
    /* Two runs on one chart. */
    unlink(png);
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "lcbench-plot %s %s=first %s=second -- two >/dev/null 2>&1", png,
             hgrm, hgrm);
    assert_int_equal(system(cmd), 0);
    assert_true(png_at(png));
    /* A file with no percentile rows fails. */
    snprintf(cmd, sizeof(cmd), "lcbench-plot %s /dev/null >/dev/null 2>&1", png);
    assert_int_not_equal(system(cmd), 0);
    unlink(png);
    unlink(hgrm);
    setenv("PATH", old != NULL ? old : "/usr/bin:/bin", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lcbench_http_closed_loop),
        cmocka_unit_test(test_lcbench_http_chunked_pipelined),
        cmocka_unit_test(test_lcbench_http_connection_close),
        cmocka_unit_test(test_lcbench_http_404_fails_the_run),
        cmocka_unit_test(test_lcbench_https_and_tls_echo),
        cmocka_unit_test(test_lcbench_handshake),
        cmocka_unit_test(test_lcbench_timeouts_count_as_errors),
        cmocka_unit_test(test_lcbench_open_loop_rate),
        cmocka_unit_test(test_lcbench_open_loop_corrects_coordinated_omission),
        cmocka_unit_test(test_lcbench_echo_verifies_bytes),
        cmocka_unit_test(test_lcbench_closed_port_exit_code),
        cmocka_unit_test(test_lcbench_open_loop_backlog_without_server),
        cmocka_unit_test(test_lcbench_connect_timeout),
        cmocka_unit_test(test_lcbench_main_json_and_percentiles),
        cmocka_unit_test(test_lcbench_plot),
    };
    return cmocka_run_group_tests(tests, servers_up, servers_down);
}
