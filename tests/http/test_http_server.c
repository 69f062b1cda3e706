/* //bench:http_server as a user sees it: curl as a real client, and raw sockets for keep-alive,
 * pipelining, malformed requests, header limits and the idle timeout. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

static const char *server_path;
static pid_t server_pid;
static int port;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int connect_to(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until the peer closes, `want` occurrences of "HTTP/1.1 " were seen, or timeout. */
static size_t read_until(int fd, char *buf, size_t cap, int want, double timeout, bool *closed)
{
    size_t n = 0;
    *closed = false;
    double end = now() + timeout;
    for (;;) {
        buf[n] = '\0';
        int seen = 0;
        for (const char *p = buf; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
            seen++;
        if (want > 0 && seen >= want)
            return n;
        double left = end - now();
        if (left <= 0)
            return n;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
            return n;
        ssize_t k = read(fd, buf + n, cap - n - 1);
        if (k <= 0) {
            *closed = true;
            return n;
        }
        n += (size_t)k;
    }
}

static int setup(void **state)
{
    (void)state;
    /* Pick a free port, then start the server on it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sin, sizeof(sin));
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    port = ntohs(sin.sin_port);
    close(fd);
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    server_pid = fork();
    if (server_pid == 0) {
        execl(server_path, server_path, "--loops", "2", "--port", portstr, "--idle-timeout", "0.5",
              "--quiet", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        int c = connect_to();
        if (c >= 0) {
            close(c);
            return 0;
        }
        usleep(10000);
    }
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    kill(server_pid, SIGTERM);
    int status = 0;
    waitpid(server_pid, &status, 0);
    /* A clean shutdown on SIGTERM. */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    return 0;
}

static char *run_curl(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "curl -s -i --max-time 5 %s", args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *out = calloc(1, 65536);
    size_t n = fread(out, 1, 65535, p);
    out[n] = '\0';
    pclose(p);
    return out;
}

static void test_http_curl_plaintext_json_404(void **state)
{
    (void)state;
    if (access("/usr/bin/curl", X_OK) != 0)
        skip();
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/plaintext", port);
    char *out = run_curl(url);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(out, "Content-Type: text/plain"));
    assert_non_null(strstr(out, "Date: "));
    assert_non_null(strstr(out, "\r\n\r\nHello, World!"));
    free(out);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/json", port);
    out = run_curl(url);
    assert_non_null(strstr(out, "application/json"));
    assert_non_null(strstr(out, "{\"message\":\"Hello, World!\"}"));
    free(out);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    out = run_curl(url);
    assert_non_null(strstr(out, "\r\n\r\nHello, World!"));
    free(out);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/missing", port);
    out = run_curl(url);
    assert_non_null(strstr(out, "HTTP/1.1 404"));
    free(out);
    snprintf(url, sizeof(url), "-X POST http://127.0.0.1:%d/plaintext", port);
    out = run_curl(url);
    assert_non_null(strstr(out, "HTTP/1.1 405"));
    free(out);
}

static void test_http_keep_alive_and_pipelining(void **state)
{
    (void)state;
    int fd = connect_to();
    assert_true(fd >= 0);
    static char buf[1 << 16];
    bool closed;
    const char *req = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 3; i++) { /* keep-alive: three requests on one connection */
        assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        size_t n = read_until(fd, buf, sizeof(buf), 1, 2, &closed);
        assert_true(n > 0);
        assert_false(closed);
        assert_non_null(strstr(buf, "Hello, World!"));
    }
    /* 16 pipelined requests in one write: 16 responses, in order. */
    char batch[2048] = {0};
    for (int i = 0; i < 16; i++)
        strcat(batch, i % 2 ? "GET /json HTTP/1.1\r\nHost: x\r\n\r\n" : req);
    assert_int_equal(write(fd, batch, strlen(batch)), (ssize_t)strlen(batch));
    size_t n = read_until(fd, buf, sizeof(buf), 16, 2, &closed);
    assert_true(n > 0);
    int count = 0;
    const char *p = buf;
    for (int i = 0; i < 16; i++) {
        const char *next = strstr(p, "HTTP/1.1 200 OK");
        assert_non_null(next);
        const char *body = strstr(next, "\r\n\r\n") + 4;
        if (i % 2)
            assert_true(strncmp(body, "{\"message\"", 10) == 0);
        else
            assert_true(strncmp(body, "Hello, World!", 13) == 0);
        p = body;
        count++;
    }
    assert_int_equal(count, 16);
    close(fd);
}

static void expect_status_and_close(const char *request, const char *status)
{
    int fd = connect_to();
    assert_true(fd >= 0);
    assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
    static char buf[1 << 16];
    bool closed;
    read_until(fd, buf, sizeof(buf), 0, 2, &closed);
    assert_true(closed);
    if (strstr(buf, status) == NULL)
        fail_msg("expected %s, got: %.80s", status, buf);
    close(fd);
}

static void test_http_malformed_and_limits(void **state)
{
    (void)state;
    expect_status_and_close("GARBAGE\r\n\r\n", "HTTP/1.1 400");
    expect_status_and_close("GET / HTTP/1.1\r\nHost x\r\n\r\n", "HTTP/1.1 400");
    /* 8 KiB of header bytes, then 101 header lines. */
    static char big[20000];
    strcpy(big, "GET /plaintext HTTP/1.1\r\nX-Big: ");
    memset(big + strlen(big), 'a', 9000);
    strcat(big, "\r\n\r\n");
    expect_status_and_close(big, "HTTP/1.1 431");
    strcpy(big, "GET /plaintext HTTP/1.1\r\n");
    for (int i = 0; i < 101; i++)
        sprintf(big + strlen(big), "X-H%d: v\r\n", i);
    strcat(big, "\r\n");
    expect_status_and_close(big, "HTTP/1.1 431");
    strcpy(big, "GET /");
    memset(big + 5, 'u', 3000);
    strcpy(big + 3005, " HTTP/1.1\r\n\r\n");
    expect_status_and_close(big, "HTTP/1.1 414");
    /* HTTP/1.0 without keep-alive: answered, then closed. */
    expect_status_and_close("GET /plaintext HTTP/1.0\r\n\r\n", "HTTP/1.1 200");
    /* The server survived all of it. */
    int fd = connect_to();
    assert_true(fd >= 0);
    close(fd);
}

static void test_http_idle_connection_times_out(void **state)
{
    (void)state;
    int fd = connect_to();
    assert_true(fd >= 0);
    static char buf[4096];
    bool closed;
    double t0 = now();
    read_until(fd, buf, sizeof(buf), 0, 5, &closed);
    double dt = now() - t0;
    assert_true(closed);
    assert_true(dt >= 0.4 && dt < 3.0); /* --idle-timeout 0.5, swept every 0.125 s */
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: http_server_test HTTP_SERVER\n");
        return 2;
    }
    server_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_curl_plaintext_json_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_keep_alive_and_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_malformed_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_idle_connection_times_out, setup, teardown),
    };
    return cmocka_run_group_tests_name("http_server", tests, NULL, NULL);
}
