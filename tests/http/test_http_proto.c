/* bench/http_proto: http_server's request handling with no sockets: bytes in, responses out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/http_proto.h"
#include "tests/support/loop_fixture.h"

/* 2026-01-01 00:00:00 UTC: a fixed Date, so that outputs compare. */
#define FIXED_TIME ((time_t)1767225600)

typedef struct {
    char *data; /* NUL-terminated copy */
    size_t len;
    bool close;
} result_t;

static result_t copy_out(http_out_t o)
{
    result_t r = {calloc(1, o.len + 1), o.len, o.close};
    if (o.len > 0)
        memcpy(r.data, o.data, o.len);
    return r;
}

static result_t feed(http_conn_t *c, const char *s, double now)
{
    return copy_out(http_conn_feed(c, s, strlen(s), now));
}

/* Feeds s in pieces of `step` bytes and joins the outputs. */
static result_t feed_in_steps(const char *s, size_t step)
{
    http_conn_t c;
    http_conn_init(&c);
    result_t all = {calloc(1, 1), 0, false};
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        http_out_t o = http_conn_feed(&c, s + i, n, 0);
        all.data = realloc(all.data, all.len + o.len + 1);
        memcpy(all.data + all.len, o.data, o.len);
        all.len += o.len;
        all.data[all.len] = '\0';
        all.close = o.close;
    }
    return all;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static int setup(void **state)
{
    (void)state;
    http_proto_init();
    http_proto_tick(FIXED_TIME);
    return 0;
}

static void test_proto_pipelined_hot_path(void **state)
{
    (void)state;
    http_conn_t c;
    http_conn_init(&c);
    result_t r = feed(&c,
                      "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /json HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                      0);
    assert_false(r.close);
    assert_int_equal(count(r.data, "HTTP/1.1 200 OK\r\n"), 3);
    assert_non_null(strstr(r.data, "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"));
    const char *one = "HTTP/1.1 200 OK\r\nServer: loopcore\r\nDate: Thu, 01 Jan 2026 00:00:00 "
                      "GMT\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
    assert_true(strncmp(r.data, one, strlen(one)) == 0);
    assert_non_null(strstr(r.data, "\r\n\r\n{\"message\":\"Hello, World!\"}HTTP/1.1 200"));
    free(r.data);
}

/* The same bytes give the same responses however the reads cut them. */
static void test_proto_any_chunking(void **state)
{
    (void)state;
    const char *inputs[] = {
        "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nHEAD /json HTTP/1.1\r\n\r\n"
        "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        "GET /missing?q=1 HTTP/1.1\r\n\r\nGET /plaintext HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        "GET /plaintext HTTP/1.1\r\nHost x\r\n\r\n",
        "GET /plaintext\r\n\r\n",
        "\r\n\r\nGET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\nGET / "
        "HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        result_t whole = feed_in_steps(inputs[i], strlen(inputs[i]));
        for (size_t step = 1; step < 8; step++) {
            result_t cut = feed_in_steps(inputs[i], step);
            assert_string_equal(cut.data, whole.data);
            assert_int_equal(cut.close, whole.close);
            free(cut.data);
        }
        free(whole.data);
    }
}

static void test_proto_head_405_404(void **state)
{
    (void)state;
    http_conn_t c;
    http_conn_init(&c);
    result_t r = feed(&c, "HEAD /plaintext HTTP/1.1\r\n\r\n", 0);
    assert_non_null(strstr(r.data, "Content-Length: 13\r\n\r\n"));
    assert_null(strstr(r.data, "Hello"));
    assert_false(r.close);
    free(r.data);
    r = feed(&c, "POST /plaintext HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.1\r\n\r\n",
             0);
    assert_true(strncmp(r.data, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
    assert_non_null(strstr(r.data, "\r\nAllow: GET, HEAD\r\n"));
    assert_non_null(strstr(r.data, "HTTP/1.1 404 Not Found\r\n"));
    assert_int_equal(count(r.data, "HTTP/1.1 "), 2);
    assert_false(r.close);
    free(r.data);
}

/* Refused with one closing response; nothing is read or answered after it. */
static void expect_refused(const char *request, const char *status)
{
    http_conn_t c;
    http_conn_init(&c);
    result_t r = feed(&c, request, 0);
    if (strncmp(r.data, status, strlen(status)) != 0 || count(r.data, "HTTP/1.1 ") != 1)
        fail_msg("wanted one %s, got: %s", status, r.data);
    assert_non_null(strstr(r.data, "\r\nConnection: close\r\n"));
    assert_true(r.close);
    assert_true(c.closed);
    free(r.data);
    r = feed(&c, "GET / HTTP/1.1\r\n\r\n", 0);
    assert_int_equal(r.len, 0);
    assert_true(r.close);
    free(r.data);
}

static void test_proto_hostile_requests(void **state)
{
    (void)state;
    expect_refused("GET /plaintext\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n");
    expect_refused("GET /plaintext\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n");
    expect_refused("GET / HTTP/2.0\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported\r\n");
    expect_refused("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x80",
                   "HTTP/1.1 200 OK\r\n");
    expect_refused("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01",
                   "HTTP/1.1 405 Method Not Allowed\r\n");
    expect_refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n");
    expect_refused("GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                   "HTTP/1.1 200 OK\r\n");
    static char big[12000];
    strcpy(big, "GET / HTTP/1.1\r\nX-Big: ");
    memset(big + strlen(big), 'a', 9000);
    strcat(big, "\r\n\r\n");
    expect_refused(big, "HTTP/1.1 431 ");
    strcpy(big, "GET /");
    memset(big + 5, 'u', 3000);
    strcpy(big + 3005, " HTTP/1.1\r\n\r\n");
    expect_refused(big, "HTTP/1.1 414 ");
}

/* The head's clock starts at its first byte and is not moved by more bytes; a complete head
 * stops it. CRLFs between requests and the bytes of a head are no progress (the idle timer's). */
static void test_proto_head_deadline_and_progress(void **state)
{
    (void)state;
    http_conn_t c;
    http_conn_init(&c);
    result_t r = feed(&c, "\r\n", 1.0);
    assert_int_equal(c.progress, 0);
    assert_false(c.in_head);
    free(r.data);
    r = feed(&c, "GET / HTTP/1.1\r\nX-A: a", 10.0);
    assert_int_equal(r.len, 0);
    free(r.data);
    assert_true(c.in_head);
    r = feed(&c, "aaa", 14.0);
    free(r.data);
    assert_int_equal(c.progress, 0); /* a head arriving is timed by its deadline, not idleness */
    assert_false(http_conn_head_expired(&c, 14.0, 5));
    assert_true(http_conn_head_expired(&c, 15.5, 5));
    http_conn_restart_head_clock(&c, 15.5);
    assert_false(http_conn_head_expired(&c, 20.0, 5));
    r = feed(&c, "\r\n\r\n", 20.0);
    assert_false(c.in_head);
    assert_true(c.progress > 0);
    assert_false(http_conn_head_expired(&c, 100.0, 5));
    assert_int_equal(count(r.data, "HTTP/1.1 200"), 1);
    free(r.data);

    r = feed(&c, "GET / HT", 30.0);
    free(r.data);
    assert_true(http_conn_head_expired(&c, 40.0, 5));
    r = copy_out(http_conn_timeout(&c));
    assert_true(strncmp(r.data, "HTTP/1.1 408 Request Timeout\r\n", 30) == 0);
    assert_non_null(strstr(r.data, "\r\nConnection: close\r\n"));
    assert_true(r.close);
    free(r.data);
    assert_false(http_conn_head_expired(&c, 50.0, 5));
    r = copy_out(http_conn_timeout(&c)); /* once only */
    assert_int_equal(r.len, 0);
    free(r.data);
}

int main(void)
{
    lc_test_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_pipelined_hot_path),
        cmocka_unit_test(test_proto_any_chunking),
        cmocka_unit_test(test_proto_head_405_404),
        cmocka_unit_test(test_proto_hostile_requests),
        cmocka_unit_test(test_proto_head_deadline_and_progress),
    };
    return cmocka_run_group_tests_name("http_proto", tests, setup, NULL);
}
