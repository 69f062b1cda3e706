/* //bench:http_server as a user sees it: curl as a real client, and raw sockets for keep-alive,
 * pipelining, malformed requests, header limits and the idle timeout. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
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

#include "tests/http/server_proc.h"
#include "tests/support/loop_fixture.h"

static const char *server_path;
static pid_t server_pid;
static int port;

static double now(void) { return sp_now(); }

static int connect_to(void) { return sp_connect(port, 0); }

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

/* Starts the server on a free port with --loops 2, --idle-timeout idle and the extra flags. */
static int start_server(const char *idle, const char *extra1, const char *extra2)
{
    port = sp_free_port();
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    char *argv[] = {(char *)server_path,
                    "--loops",
                    "2",
                    "--port",
                    portstr,
                    "--idle-timeout",
                    (char *)idle,
                    "--quiet",
                    (char *)extra1,
                    (char *)extra2,
                    NULL};
    server_pid = sp_start(argv, port);
    return server_pid > 0 ? 0 : -1;
}

/* A short idle timeout (0.5 s), for the tests of timeouts. */
static int setup(void **state)
{
    (void)state;
    return start_server("0.5", "--send-timeout", "30");
}

/* A long one, for the tests that must not meet it even on a loaded machine (curl is a process of
 * its own: it may be descheduled between its connect and its request). */
static int setup_patient(void **state)
{
    (void)state;
    return start_server("30", NULL, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int status = sp_stop(server_pid);
    /* A clean shutdown on SIGTERM. */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    return 0;
}

static void expect_in(const char *out, const char *what)
{
    if (strstr(out, what) == NULL)
        fail_msg("no \"%s\" in: %.300s", what, out);
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
    expect_in(out, "HTTP/1.1 200 OK");
    expect_in(out, "Content-Type: text/plain");
    expect_in(out, "Date: ");
    expect_in(out, "\r\n\r\nHello, World!");
    free(out);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/json", port);
    out = run_curl(url);
    expect_in(out, "application/json");
    expect_in(out, "{\"message\":\"Hello, World!\"}");
    free(out);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    out = run_curl(url);
    expect_in(out, "\r\n\r\nHello, World!");
    free(out);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/missing", port);
    out = run_curl(url);
    expect_in(out, "HTTP/1.1 404");
    free(out);
    snprintf(url, sizeof(url), "-X POST http://127.0.0.1:%d/plaintext", port);
    out = run_curl(url);
    expect_in(out, "HTTP/1.1 405");
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

    /* Bytes that are no request's (CRLFs between requests, which the parser skips) do not keep
     * a connection alive: a CRLF every 0.2 s is idle all the same. */
    fd = connect_to();
    assert_true(fd >= 0);
    t0 = now();
    closed = false;
    while (!closed && now() - t0 < 5) {
        if (write(fd, "\r\n", 2) != 2)
            break;
        read_until(fd, buf, sizeof(buf), 0, 0.2, &closed);
    }
    dt = now() - t0;
    assert_true(closed);
    assert_true(dt >= 0.4 && dt < 3.0);
    close(fd);
}

/* How far above its starting RSS a server may go while one client floods it and never reads:
 * the write high-water mark plus one read's worth of responses is well under 1 MB; without flow
 * control the server took 100+ MB here in the few seconds of the test. */
#define RSS_BOUND_KB (64 * 1024)

/* Back-pressure: a client pipelines GET /plaintext as fast as it can and never reads for 3 s.
 * The server must stop reading from it (pause_writing -> pause_reading) so that its memory stays
 * bounded; the idle sweep (0.5 s here) must leave the paused connection alone; another client is
 * served meanwhile; and once the client reads, every request it sent is answered, in order. */
static void test_http_backpressure_bounds_memory(void **state)
{
    (void)state;
    static const char req[] = "GET /plaintext HTTP/1.1\r\n\r\n";
    const size_t req_len = sizeof(req) - 1;
    static char batch[1024 * (sizeof(req) - 1)];
    for (size_t i = 0; i < sizeof(batch); i += req_len)
        memcpy(batch + i, req, req_len);

    long rss0 = sp_rss_kb(server_pid);
    assert_true(rss0 > 0);
    int fd = sp_connect(port, 32 * 1024);
    assert_true(fd >= 0);
    long peak = 0;
    size_t sent = sp_push(fd, batch, sizeof(batch), 3.0, (size_t)24 << 20, server_pid, &peak);
    print_message("http_server back-pressure: sent %zu requests (%.1f MB) unread in 3 s; RSS "
                  "%.1f MB at start, peak %.1f MB (+%.1f MB)\n",
                  sent / req_len, sent / 1048576.0, rss0 / 1024.0, peak / 1024.0,
                  (peak - rss0) / 1024.0);
    if (peak - rss0 >= RSS_BOUND_KB)
        fail_msg("RSS grew by %ld KiB (bound %d KiB)", peak - rss0, RSS_BOUND_KB);

    /* Another client is served while the first one is stuck. */
    int other = connect_to();
    assert_true(other >= 0);
    assert_int_equal(write(other, req, req_len), (ssize_t)req_len);
    static char buf[1 << 16];
    bool closed;
    read_until(other, buf, sizeof(buf), 1, 5, &closed);
    assert_non_null(strstr(buf, "\r\n\r\nHello, World!"));
    close(other);

    /* The stuck client reads at last (finishing the request it was cut off in): every request
     * is answered. The responses all have the same length (the Date is fixed-width). */
    size_t got = 0, resp_len = 0;
    char first[512];
    size_t first_len = 0;
    closed = false;
    double end = now() + 60;
    while (now() < end) {
        size_t expected = resp_len > 0 ? (sent + req_len - 1) / req_len * resp_len : 0;
        if (sent % req_len == 0 && resp_len > 0 && got >= expected)
            break;
        struct pollfd pfd = {fd, POLLIN | (sent % req_len != 0 ? POLLOUT : 0), 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        if (pfd.revents & POLLOUT) {
            size_t off = sent % sizeof(batch);
            ssize_t k = send(fd, batch + off, req_len - sent % req_len, MSG_DONTWAIT);
            if (k > 0)
                sent += (size_t)k;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t k = read(fd, buf, sizeof(buf));
            if (k <= 0) {
                closed = true;
                break;
            }
            if (first_len < sizeof(first)) {
                size_t m =
                    (size_t)k < sizeof(first) - first_len ? (size_t)k : sizeof(first) - first_len;
                memcpy(first + first_len, buf, m);
                first_len += m;
                char *body = memmem(first, first_len, "\r\n\r\n", 4);
                if (resp_len == 0 && body != NULL)
                    resp_len = (size_t)(body + 4 - first) + 13;
            }
            got += (size_t)k;
        }
    }
    assert_false(closed);
    assert_true(resp_len > 0);
    assert_true(strncmp(first, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_int_equal(got, sent / req_len * resp_len);
    close(fd);
}

/* The timeout flags take a positive number of seconds; anything else is a usage error (exit 2). */
static void test_http_timeout_flags(void **state)
{
    (void)state;
    const char *flags[] = {"--idle-timeout", "--send-timeout", "--header-timeout"};
    const char *bad[] = {"0", "-1", "abc", "5s", "", "nan", "1e9"};
    for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char *argv[] = {(char *)server_path, (char *)flags[f], (char *)bad[i], NULL};
            int status = sp_run(argv);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 2)
                fail_msg("%s '%s': status %#x, wanted exit 2", flags[f], bad[i], status);
        }
        char *missing[] = {(char *)server_path, (char *)flags[f], NULL};
        int status = sp_run(missing);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    }
}

/* Sends request (in one write), reads until the server closes (or timeout), and returns what
 * came back in buf; *responses counts the status lines in it. */
static size_t exchange(const char *request, char *buf, size_t cap, double timeout, bool *closed,
                       int *responses)
{
    int fd = connect_to();
    assert_true(fd >= 0);
    assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
    size_t n = sp_read_all(fd, buf, cap, timeout, closed);
    close(fd);
    *responses = 0;
    for (const char *p = buf; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
        ++*responses;
    return n;
}

/* Exactly one response, with this status line start, saying Connection: close, then closed. */
static void expect_one_response_and_close(const char *request, const char *status)
{
    static char buf[1 << 16];
    bool closed;
    int responses;
    exchange(request, buf, sizeof(buf), 3, &closed, &responses);
    if (responses != 1 || strncmp(buf, status, strlen(status)) != 0)
        fail_msg("%d response(s), wanted one %s: %.300s", responses, status, buf);
    assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
    assert_true(closed);
}

/* A request line without a version (HTTP/0.9 to llhttp) is refused: 400, then close. */
static void test_http_request_without_version(void **state)
{
    (void)state;
    expect_one_response_and_close("GET /plaintext\r\n\r\n", "HTTP/1.1 400 ");
    expect_one_response_and_close("GET /plaintext\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
    expect_one_response_and_close("GET /plaintext HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 ");
}

/* One response per request, also for what the server does not support. An upgrade request is
 * answered as a plain request (the upgrade ignored, as RFC 9110 allows), then the connection is
 * closed (what follows it would be the other protocol's bytes). CONNECT gets 405 and close. */
static void test_http_upgrade_and_connect(void **state)
{
    (void)state;
    expect_one_response_and_close(
        "GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 200 ");
    expect_one_response_and_close("GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: "
                                  "Upgrade\r\nUpgrade: h2c\r\n\r\n\x81\x85garbage-frame",
                                  "HTTP/1.1 200 ");
    expect_one_response_and_close(
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP/1.1 405 ");
    expect_one_response_and_close("CONNECT example.com:443 HTTP/1.1\r\nHost: "
                                  "example.com:443\r\n\r\n\x16\x03\x01 tls hello",
                                  "HTTP/1.1 405 ");
    /* Pipelined before an upgrade: the earlier requests are answered, the upgrade once, then
     * nothing more. */
    static char buf[1 << 16];
    bool closed;
    int responses;
    exchange("GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"
             "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
             buf, sizeof(buf), 3, &closed, &responses);
    assert_int_equal(responses, 2);
    assert_true(closed);
}

/* Slowloris: a request head trickled a byte every 0.2 s (so the 0.5 s idle timeout never fires)
 * gets 408 and is closed once --header-timeout (1 s here) has passed since its first byte. A head
 * sent in pieces within the deadline is served. */
static void test_http_header_timeout(void **state)
{
    (void)state;
    int fd = connect_to();
    assert_true(fd >= 0);
    static char buf[1 << 16];
    bool closed = false;
    const char *head = "GET /plaintext HTTP/1.1\r\nX-Slow: ";
    assert_int_equal(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    double t0 = now();
    size_t n = 0;
    while (!closed && now() - t0 < 5) {
        n += sp_read_all(fd, buf + n, sizeof(buf) - n, 0.2, &closed);
        if (!closed && write(fd, "a", 1) != 1)
            break;
    }
    double dt = now() - t0;
    assert_true(closed);
    if (strncmp(buf, "HTTP/1.1 408 ", 13) != 0)
        fail_msg("wanted 408, got: %.200s", buf);
    assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
    assert_true(dt >= 0.9 && dt < 3.0);
    close(fd);

    /* Within the deadline: three pieces 0.2 s apart, then the whole request again at once. */
    fd = connect_to();
    assert_true(fd >= 0);
    const char *pieces[] = {"GET /plaintext HT", "TP/1.1\r\nHost: x\r\n", "\r\n"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(write(fd, pieces[i], strlen(pieces[i])), (ssize_t)strlen(pieces[i]));
        usleep(200000);
    }
    n = read_until(fd, buf, sizeof(buf), 1, 3, &closed);
    assert_false(closed);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    close(fd);
}

/* The send timeout: a client that sends pipelined requests and never reads holds its connection
 * (and the responses queued for it) only until --send-timeout passes without progress; then the
 * server resets the connection and its fd goes. Then a client that closes its side without
 * reading: the server's close() would flush forever, the send timeout reclaims that too. */
static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The count once it has held still for 0.3 s (at most 5 s): sp_start's readiness probe connects
 * and closes at once, and the server may not have seen that EOF yet (CI once counted it). */
static int count_fds_settled(pid_t pid)
{
    int n = count_fds(pid), same = 0;
    for (double end = sp_now() + 5; same < 3 && sp_now() < end;) {
        usleep(100 * 1000);
        int m = count_fds(pid);
        same = m == n ? same + 1 : 0;
        n = m;
    }
    return n;
}

static void test_http_send_timeout_reclaims_stuck_connection(void **state)
{
    (void)state;
    static const char req[] = "GET /plaintext HTTP/1.1\r\n\r\n";
    static char batch[256 * (sizeof(req) - 1)];
    for (size_t i = 0; i < sizeof(batch); i += sizeof(req) - 1)
        memcpy(batch + i, req, sizeof(req) - 1);
    int fds0 = count_fds_settled(server_pid);
    assert_true(fds0 > 0);
    int fd = sp_connect(port, 16 * 1024);
    assert_true(fd >= 0);
    long peak = 0;
    size_t sent = sp_push(fd, batch, sizeof(batch), 0.5, (size_t)8 << 20, server_pid, &peak);
    assert_true(sent > 0);
    assert_int_equal(count_fds(server_pid), fds0 + 1); /* held, paused: no progress yet */
    /* --send-timeout 3: the reset comes about 3 s after the last progress (0.5 s of pushing
     * leaves a margin for a slow machine above); allow 20 s. */
    double end = sp_now() + 20;
    while (sp_now() < end && count_fds(server_pid) != fds0)
        usleep(20 * 1000);
    assert_int_equal(count_fds(server_pid), fds0);
    /* The client sees the reset (after whatever was already in its receive buffer). */
    static char buf[1 << 16];
    ssize_t k;
    while ((k = read(fd, buf, sizeof(buf))) > 0) {
    }
    assert_true(k < 0 && errno == ECONNRESET);
    close(fd);
    /* Other clients are served as usual. */
    int other = connect_to();
    assert_true(other >= 0);
    assert_int_equal(write(other, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    bool closed;
    read_until(other, buf, sizeof(buf), 1, 5, &closed);
    assert_non_null(strstr(buf, "\r\n\r\nHello, World!"));
    close(other);
}

static int setup_send_timeout(void **state)
{
    (void)state;
    return start_server("30", "--send-timeout", "3");
}

static int setup_header_timeout(void **state)
{
    (void)state;
    return start_server("0.5", "--header-timeout", "1");
}

/* --tls-cert / --tls-key on two loops in both group modes: curl over https, keep-alive (two URLs
 * on one connection) and Connection: close (answered, then close_notify: curl reports no error). */
static void test_http_tls(void **state)
{
    (void)state;
    if (access("/usr/bin/curl", X_OK) != 0)
        skip();
    char dir[64];
    assert_int_equal(sp_make_cert(dir, sizeof(dir)), 0);
    char cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    for (int handoff = 0; handoff < 2; handoff++) {
        int p = sp_free_port();
        char portstr[16];
        snprintf(portstr, sizeof(portstr), "%d", p);
        char *argv[] = {(char *)server_path,
                        "--loops",
                        "2",
                        "--port",
                        portstr,
                        "--mode",
                        handoff ? "handoff" : "reuseport",
                        "--tls-cert",
                        cert,
                        "--tls-key",
                        key,
                        "--quiet",
                        NULL};
        pid_t pid = sp_start(argv, p);
        assert_true(pid > 0);
        char args[512];
        snprintf(args, sizeof(args),
                 "--cacert %s https://localhost:%d/plaintext https://localhost:%d/json", cert, p,
                 p);
        char *out = run_curl(args);
        expect_in(out, "HTTP/1.1 200");
        expect_in(out, "Hello, World!");
        expect_in(out, "{\"message\":\"Hello, World!\"}");
        free(out);
        snprintf(args, sizeof(args),
                 "-S --cacert %s -H 'Connection: close' https://localhost:%d/plaintext 2>&1", cert,
                 p);
        out = run_curl(args);
        expect_in(out, "Hello, World!");
        if (strstr(out, "curl:") != NULL)
            fail_msg("curl: %s", out);
        free(out);
        /* A plaintext request to the TLS port fails that connection only. */
        snprintf(args, sizeof(args), "http://localhost:%d/plaintext", p);
        free(run_curl(args));
        snprintf(args, sizeof(args), "--cacert %s https://localhost:%d/plaintext", cert, p);
        out = run_curl(args);
        expect_in(out, "Hello, World!");
        free(out);
        int status = sp_stop(pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    sp_remove_dir(dir);
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
        cmocka_unit_test(test_http_timeout_flags),
        cmocka_unit_test(test_http_tls),
        cmocka_unit_test_setup_teardown(test_http_curl_plaintext_json_404, setup_patient, teardown),
        cmocka_unit_test_setup_teardown(test_http_keep_alive_and_pipelining, setup_patient,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_malformed_and_limits, setup_patient, teardown),
        cmocka_unit_test_setup_teardown(test_http_idle_connection_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_backpressure_bounds_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_request_without_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_upgrade_and_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_header_timeout, setup_header_timeout, teardown),
        cmocka_unit_test_setup_teardown(test_http_send_timeout_reclaims_stuck_connection,
                                        setup_send_timeout, teardown),
    };
    return cmocka_run_group_tests_name("http_server", tests, NULL, NULL);
}
