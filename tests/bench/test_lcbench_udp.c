/* lcbench's udp mode end to end: short runs (0.3 - 0.5 s) against tiny loopcore UDP servers
 * started here on a one-loop group (lc_group_create_datagram_endpoint): one that echoes, one
 * that changes a byte of every tenth datagram, and one that drops every fifth. Each run checks
 * the figures and the exit status: mismatches are errors, loss is reported apart and is not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bench/lcbench/lcbench.h"
#include "loopcore.h"
#include "tests/support/loop_fixture.h"

typedef enum { U_ECHO, U_CORRUPT, U_DROP, U_COUNT } ukind;

typedef struct {
    ukind kind;
    uint64_t n;
} userver;

static userver servers[U_COUNT];
static lc_group_t *group;
static lc_group_datagram_t *endpoints[U_COUNT];
static int ports[U_COUNT];

static void u_received(lc_datagram_transport_t *t, const char *data, size_t len,
                       const struct sockaddr *addr, socklen_t addrlen, void *user)
{
    userver *s = user;
    s->n++;
    if (s->kind == U_DROP && s->n % 5 == 0)
        return;
    if (s->kind == U_CORRUPT && s->n % 10 == 0 && len > 8) {
        char buf[65536];
        memcpy(buf, data, len);
        buf[len - 1] ^= 0x55;
        lc_datagram_transport_sendto(t, buf, len, addr, addrlen);
        return;
    }
    lc_datagram_transport_sendto(t, data, len, addr, addrlen);
}

static const lc_datagram_protocol_t u_proto = {.datagram_received = u_received};

static int u_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    *proto = &u_proto;
    *user = arg;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(lc_group_create(&group, &(lc_group_opts_t){.nloops = 1, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(group), 0);
    for (int k = 0; k < U_COUNT; k++) {
        servers[k].kind = (ukind)k;
        assert_int_equal(lc_group_create_datagram_endpoint(
                             group, u_factory, &servers[k],
                             &(lc_group_datagram_opts_t){.host = "127.0.0.1"}, &endpoints[k]),
                         0);
        ports[k] = lc_group_datagram_port(endpoints[k]);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int k = 0; k < U_COUNT; k++)
        assert_int_equal(lc_group_datagram_free(endpoints[k]), 0);
    lc_group_free(group);
    return 0;
}

static lcb_config_t cfg;

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
    if (lcb_config_parse(&cfg, argc, argv, err, sizeof(err)) != LCB_PARSE_OK)
        fail_msg("parse: %s", err);
    memset(res, 0, sizeof(*res));
    if (lcb_run(&cfg, res, NULL, err, sizeof(err)) != 0)
        fail_msg("run: %s", err);
    print_message("  %s: %llu echoed, %llu sent, %llu lost, %llu mismatched in %.2fs\n", url,
                  (unsigned long long)res->requests, (unsigned long long)res->datagrams_sent,
                  (unsigned long long)res->errors.lost, (unsigned long long)res->errors.mismatch,
                  res->elapsed);
    return lcb_exit_code(&cfg, res);
}

#define RUN(res, kind, ...) run_with(res, ports[kind], (const char *const[]){__VA_ARGS__, NULL})

static void test_lcbench_udp_echo(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN(&res, U_ECHO, "-t1", "-c4", "-d500ms", "--size", "1200", "--pipeline", "4",
                         "-T", "1s", "udp://127.0.0.1:%d"),
                     0);
    assert_int_equal(cfg.mode, LCB_MODE_UDP);
    assert_true(res.requests > 10);
    assert_int_equal(lcb_result_errors(&res), 0);
    assert_int_equal(res.latency.total_count, (int64_t)res.requests);
    assert_int_equal(res.bytes, res.requests * 1200);
    /* Everything echoed in the window was sent (in it, or just before). */
    assert_true(res.datagrams_sent + 4 * 4 >= res.requests);
    lcb_result_close(&res);
    /* The same with each pipeline sent as one batch (UDP GSO; GRO at the server splits it). */
    assert_int_equal(RUN(&res, U_ECHO, "-t1", "-c4", "-d500ms", "--size", "1200", "--pipeline", "4",
                         "--gso", "-T", "1s", "udp://127.0.0.1:%d"),
                     0);
    assert_true(res.requests > 10);
    assert_int_equal(lcb_result_errors(&res), 0);
    assert_int_equal(res.bytes, res.requests * 1200);
    lcb_result_close(&res);
}

static void test_lcbench_udp_mismatch_is_an_error(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(
        RUN(&res, U_CORRUPT, "-t1", "-c2", "-d300ms", "-T", "100ms", "udp://127.0.0.1:%d"), 1);
    assert_true(res.errors.mismatch >= 1);
    assert_true(res.requests > 0);
    lcb_result_close(&res);
}

/* Every fifth datagram is dropped: it is counted lost (after -T, or when a later one's echo
 * overtakes it), the run goes on on the same sockets, and loss is no error. */
static void test_lcbench_udp_loss_is_reported_not_an_error(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN(&res, U_DROP, "-t1", "-c2", "-d500ms", "--pipeline", "3", "-T", "50ms",
                         "udp://127.0.0.1:%d"),
                     0);
    assert_true(res.errors.lost >= 1);
    assert_true(res.requests >= res.errors.lost);
    assert_int_equal(lcb_result_errors(&res), 0);
    assert_int_equal(res.connections_opened, 2);
    lcb_result_close(&res);
}

/* Open loop: never more answered than scheduled. */
static void test_lcbench_udp_open_loop(void **state)
{
    (void)state;
    lcb_result_t res;
    assert_int_equal(RUN(&res, U_ECHO, "-t1", "-c4", "-d500ms", "-R", "2000", "--warmup", "100ms",
                         "udp://127.0.0.1:%d"),
                     0);
    assert_true(res.requests <= 1100);
    assert_true(res.requests + res.backlog + res.errors.lost >= 500);
    assert_int_equal(lcb_result_errors(&res), 0);
    lcb_result_close(&res);
}

int main(void)
{
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lcbench_udp_echo),
        cmocka_unit_test(test_lcbench_udp_mismatch_is_an_error),
        cmocka_unit_test(test_lcbench_udp_loss_is_reported_not_an_error),
        cmocka_unit_test(test_lcbench_udp_open_loop),
    };
    return cmocka_run_group_tests_name("lcbench_udp", tests, setup, teardown);
}
