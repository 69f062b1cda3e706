/* Graceful shutdown of //bench:http_server and //bench:echo_server on SIGTERM
 * (lc_group_stop_on_signals): every request whose bytes the server's socket took before the signal
 * is answered (pipelined batches from several clients, a request head cut in two by the signal),
 * the last response on each connection says Connection: close and the connection closes; an idle
 * keep-alive connection is closed; the process exits 0 within --shutdown-timeout; a second
 * SIGTERM exits at once (status 143); a drain that cannot finish ends at the timeout, status 0.
 * echo_server: what was sent before the signal is echoed whole, then the connection closes.
 *
 * Arguments: the http_server binary, the echo_server binary. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/http/server_proc.h"
#include "tests/support/loop_fixture.h"

static const char *http_path, *echo_path;

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, data, len);
        assert_true(k > 0);
        data += k;
        len -= (size_t)k;
    }
}

static int count_of(const char *buf, const char *what)
{
    int n = 0;
    for (const char *p = buf; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

/* Waits up to `timeout` seconds for pid to exit: its wait status, or -1 if it is still running. */
static int wait_exit(pid_t pid, double timeout)
{
    double end = sp_now() + timeout;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        if (sp_now() > end)
            return -1;
        usleep(5000);
    }
}

static void kill_hard(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static pid_t start(const char *path, int port, const char *shutdown_timeout)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    char *argv[] = {(char *)path,
                    "--loops",
                    "2",
                    "--port",
                    portstr,
                    "--shutdown-timeout",
                    (char *)shutdown_timeout,
                    NULL};
    pid_t pid = sp_start(argv, port);
    assert_true(pid > 0);
    return pid;
}

#define REQ "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"

/* Reads from fd until `want` bytes came (at most 20 s); returns how many came. A round trip on a
 * new connection proves the server accepted it: a connection still in the listen backlog when
 * the listener closes is reset, as with any server that stops listening. */
static size_t read_exactly(int fd, char *buf, size_t want)
{
    size_t n = 0;
    double end = sp_now() + 20;
    while (n < want && sp_now() < end) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) > 0) {
            ssize_t k = read(fd, buf + n, want - n);
            if (k <= 0)
                break;
            n += (size_t)k;
        }
    }
    return n;
}

/* The bytes of fd's sends that the peer's kernel has not acknowledged yet. */
static int unacked(int fd)
{
    int q = 0;
    assert_int_equal(ioctl(fd, SIOCOUTQ, &q), 0);
    return q;
}

/* Waits (up to 20 s) until the server's kernel has acknowledged every byte sent on fd: they are
 * then the server's (in its socket or read), "accepted before the signal". A send() that returned
 * is not enough: on a loaded machine the loopback delivery can lag behind it. */
static void wait_acked(int fd)
{
    double end = sp_now() + 20;
    while (unacked(fd) > 0 && sp_now() < end)
        usleep(1000);
    assert_int_equal(unacked(fd), 0);
}

/* One request and its response on a new connection (fd is then known to be accepted); bufsize as
 * sp_connect's. */
static int http_connect_accepted(int port, int bufsize)
{
    int fd = sp_connect(port, bufsize);
    assert_true(fd >= 0);
    send_all(fd, REQ, strlen(REQ));
    char buf[4096] = {0};
    size_t n = 0;
    double end = sp_now() + 20;
    while (count_of(buf, "Hello, World!") < 1 && n < sizeof(buf) - 1 && sp_now() < end)
        n += read_exactly(fd, buf + n, 1);
    assert_int_equal(count_of(buf, "HTTP/1.1 200"), 1);
    return fd;
}
#define CLIENTS 6
#define PIPELINED 20000

/* SIGTERM while pipelined requests from several clients are in flight, one request head is half
 * sent and one keep-alive connection is idle. */
static void test_http_sigterm_answers_in_flight_requests(void **state)
{
    (void)state;
    int port = sp_free_port();
    pid_t pid = start(http_path, port, "60");

    /* An idle keep-alive connection: one request answered before the signal. */
    int idle = http_connect_accepted(port, 0);
    static char buf[1 << 20];
    bool closed = false;
    size_t n = 0;

    /* A request whose head is half sent before the signal, the rest after. */
    int half = http_connect_accepted(port, 0);
    send_all(half, REQ, 20);
    wait_acked(half);

    /* Several clients pipeline up to PIPELINED requests each, sent without blocking for as long
     * as the kernel takes them (small socket buffers), and read nothing before the signal: the
     * server's responses back up, it stops reading (flow control), and requests are still in flight
     * at the signal, some read and not answered yet, some in its socket, some in ours (not accepted
     * yet), the last one possibly cut in two. */
    size_t blen = PIPELINED * strlen(REQ);
    char *batch = malloc(blen);
    assert_non_null(batch);
    for (int i = 0; i < PIPELINED; i++)
        memcpy(batch + (size_t)i * strlen(REQ), REQ, strlen(REQ));
    int fds[CLIENTS];
    size_t sent[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        fds[c] = http_connect_accepted(port, 4096);
        fcntl(fds[c], F_SETFL, fcntl(fds[c], F_GETFL) | O_NONBLOCK);
        sent[c] = 0;
        for (;;) {
            ssize_t k = write(fds[c], batch + sent[c], blen - sent[c]);
            if (k <= 0)
                break;
            sent[c] += (size_t)k;
        }
    }
    /* The requests the server's kernel took before the signal: every byte acknowledged. */
    usleep(100000);
    int accepted[CLIENTS];
    for (int c = 0; c < CLIENTS; c++)
        accepted[c] = (int)((sent[c] - (size_t)unacked(fds[c])) / strlen(REQ));
    double t0 = sp_now();
    assert_int_equal(kill(pid, SIGTERM), 0);

    usleep(200000);
    send_all(half, REQ + 20, strlen(REQ) - 20);

    /* Each client now reads, and finishes the request it had cut in two. */
    size_t cap = (size_t)PIPELINED * 256;
    char *rbuf = malloc(cap);
    assert_non_null(rbuf);
    int in_flight = 0; /* connections whose last response said Connection: close */
    for (int c = 0; c < CLIENTS; c++) {
        size_t tail = sent[c] % strlen(REQ) ? strlen(REQ) - sent[c] % strlen(REQ) : 0;
        size_t got_bytes = 0;
        int how = 0;
        double end = sp_now() + 30;
        while (how == 0 && sp_now() < end && got_bytes < cap - 1) {
            struct pollfd pfd = {fds[c], POLLIN | (tail > 0 ? POLLOUT : 0), 0};
            if (poll(&pfd, 1, 100) <= 0)
                continue;
            if ((pfd.revents & POLLOUT) && tail > 0) {
                ssize_t k = write(fds[c], batch + sent[c], tail);
                if (k > 0) {
                    sent[c] += (size_t)k;
                    tail -= (size_t)k;
                }
            }
            if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t k = read(fds[c], rbuf + got_bytes, cap - 1 - got_bytes);
                if (k > 0)
                    got_bytes += (size_t)k;
                else if (k == 0)
                    how = 1;
                else if (errno != EAGAIN)
                    how = -1;
            }
        }
        rbuf[got_bytes] = '\0';
        assert_int_equal(how, 1); /* an orderly close, no reset */
        int got = count_of(rbuf, "HTTP/1.1 200 OK\r\n");
        assert_true(got >= accepted[c]); /* every request accepted before the signal */
        assert_true((size_t)got <= sent[c] / strlen(REQ));
        /* Only the last response may say Connection: close (one the server had answered in full
         * before the signal was idle then and just closes). */
        assert_true(count_of(rbuf, "Connection: close\r\n") <= 1);
        const char *last = strstr(rbuf, "Connection: close\r\n");
        if (last != NULL)
            assert_null(strstr(last, "HTTP/1.1 "));
        in_flight += last != NULL;
        assert_true(got_bytes > 13 && memcmp(rbuf + got_bytes - 13, "Hello, World!", 13) == 0);
        close(fds[c]);
    }
    free(rbuf);
    free(batch);
    print_message("%d of %d pipelining connections ended with Connection: close\n", in_flight,
                  CLIENTS);
    assert_true(in_flight >= 1); /* requests were in flight at the signal */
    n = sp_read_all(half, buf, sizeof(buf), 30, &closed);
    assert_true(closed);
    assert_int_equal(count_of(buf, "HTTP/1.1 200 OK\r\n"), 1);
    assert_int_equal(count_of(buf, "Connection: close\r\n"), 1);
    close(half);

    /* The idle connection was closed with nothing more sent. */
    n = sp_read_all(idle, buf, sizeof(buf), 30, &closed);
    assert_true(closed);
    assert_int_equal(n, 0);
    close(idle);

    int status = wait_exit(pid, 30);
    if (status == -1)
        kill_hard(pid);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(sp_now() - t0 < 60);      /* drained: before the 60 s shutdown timeout */
    assert_true(sp_connect(port, 0) < 0); /* and it no longer listens */
}

/* pid ends, status 128 + SIGTERM, within 10 s of t0 (killed hard if it does not within 20). */
static void assert_exits_at_once(pid_t pid, double t0)
{
    int status = wait_exit(pid, 20);
    if (status == -1)
        kill_hard(pid);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGTERM);
    assert_true(sp_now() - t0 < 10);
}

/* A connection whose request head never completes keeps the drain going: a second SIGTERM ends
 * the process at once, status 128 + SIGTERM. */
static void test_http_second_sigterm_exits_at_once(void **state)
{
    (void)state;
    int port = sp_free_port();
    pid_t pid = start(http_path, port, "60");
    int fd = http_connect_accepted(port, 0);
    send_all(fd, REQ, 10);
    wait_acked(fd);
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(wait_exit(pid, 0.5), -1); /* draining: still running */
    double t0 = sp_now();
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_exits_at_once(pid, t0);
    close(fd);
}

/* The drain cannot finish: the process exits 0 once --shutdown-timeout has passed, and the
 * connection is closed. */
static void test_http_shutdown_timeout_bounds_exit(void **state)
{
    (void)state;
    int port = sp_free_port();
    pid_t pid = start(http_path, port, "1");
    int fd = http_connect_accepted(port, 0);
    send_all(fd, REQ, 10);
    wait_acked(fd);
    double t0 = sp_now();
    assert_int_equal(kill(pid, SIGTERM), 0);
    int status = wait_exit(pid, 30);
    double took = sp_now() - t0;
    if (status == -1)
        kill_hard(pid);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(took >= 0.9);
    assert_true(took < 20);
    char buf[256];
    bool closed = false;
    sp_read_all(fd, buf, sizeof(buf), 10, &closed);
    assert_true(closed);
    close(fd);
}

/* echo_server: the bytes sent before the signal come back whole, then the connection closes;
 * an idle connection closes; exit 0. */
static void test_echo_sigterm_echoes_in_flight_bytes(void **state)
{
    (void)state;
    int port = sp_free_port();
    pid_t pid = start(echo_path, port, "20");
    static char data[CLIENTS][64 * 1024];
    int fds[CLIENTS + 1]; /* the last one stays idle */
    for (int c = 0; c <= CLIENTS; c++) {
        fds[c] = sp_connect(port, 0);
        assert_true(fds[c] >= 0);
        char b = 'x';
        send_all(fds[c], &b, 1); /* a round trip: accepted */
        assert_int_equal(read_exactly(fds[c], &b, 1), 1);
    }
    int idle = fds[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        for (size_t i = 0; i < sizeof(data[c]); i++)
            data[c][i] = (char)('a' + (i * 7 + (size_t)c) % 26);
    }
    /* 64 KiB each fits the socket buffers, so the writes complete with no reader yet. */
    for (int c = 0; c < CLIENTS; c++)
        send_all(fds[c], data[c], sizeof(data[c]));
    for (int c = 0; c < CLIENTS; c++)
        wait_acked(fds[c]);
    double t0 = sp_now();
    assert_int_equal(kill(pid, SIGTERM), 0);
    static char buf[256 * 1024];
    bool closed = false;
    for (int c = 0; c < CLIENTS; c++) {
        size_t n = sp_read_all(fds[c], buf, sizeof(buf), 30, &closed);
        assert_true(closed);
        assert_int_equal(n, sizeof(data[c]));
        assert_memory_equal(buf, data[c], sizeof(data[c]));
        close(fds[c]);
    }
    size_t n = sp_read_all(idle, buf, sizeof(buf), 30, &closed);
    assert_true(closed);
    assert_int_equal(n, 0);
    close(idle);
    int status = wait_exit(pid, 30);
    if (status == -1)
        kill_hard(pid);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(sp_now() - t0 < 20);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: server_shutdown_test HTTP_SERVER ECHO_SERVER\n");
        return 2;
    }
    http_path = argv[1];
    echo_path = argv[2];
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_sigterm_answers_in_flight_requests),
        cmocka_unit_test(test_http_second_sigterm_exits_at_once),
        cmocka_unit_test(test_http_shutdown_timeout_bounds_exit),
        cmocka_unit_test(test_echo_sigterm_echoes_in_flight_bytes),
    };
    return cmocka_run_group_tests_name("server_shutdown", tests, NULL, NULL);
}
