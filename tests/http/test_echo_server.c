/* //bench:echo_server as a user sees it: echoes what it reads, and keeps its memory bounded when
 * a client sends without reading (asyncio flow control: pause_writing -> pause_reading). */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/http/server_proc.h"
#include "tests/support/loop_fixture.h"

/* See test_http_server.c: the bound on RSS growth while one client floods and never reads. */
#define RSS_BOUND_KB (64 * 1024)

static const char *server_path;
static pid_t server_pid;
static int port;

static int setup(void **state)
{
    (void)state;
    port = sp_free_port();
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    char *argv[] = {(char *)server_path, "--loops", "1", "--port", portstr,
                    "--send-timeout",    "30",      NULL};
    server_pid = sp_start(argv, port);
    return server_pid > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int status = sp_stop(server_pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    return 0;
}

/* A pattern whose bytes depend on their position in it, so that a lost, doubled or reordered
 * chunk shows. */
static char pattern[65521];

static void fill_pattern(void)
{
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)(i * 7 + i / 251);
}

/* Reads until `want` bytes came back, checking them against the pattern from stream offset 0. */
static void expect_echo(int fd, size_t want, double timeout)
{
    static char buf[1 << 16];
    size_t got = 0;
    double end = sp_now() + timeout;
    while (got < want && sp_now() < end) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t k = read(fd, buf, sizeof(buf));
        if (k <= 0)
            fail_msg("connection closed after %zu of %zu bytes", got, want);
        for (ssize_t i = 0; i < k; i++)
            if (buf[i] != pattern[(got + (size_t)i) % sizeof(pattern)])
                fail_msg("byte %zu differs", got + (size_t)i);
        got += (size_t)k;
    }
    assert_int_equal(got, want);
}

static void test_echo_roundtrip(void **state)
{
    (void)state;
    int fd = sp_connect(port, 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, pattern, 1000), 1000);
    expect_echo(fd, 1000, 5);
    close(fd);
}

/* A client sends as fast as it can and never reads for 3 s: the server stops reading from it
 * (its memory stays bounded), still serves another client, and echoes everything once the first
 * client reads. */
static void test_echo_backpressure_bounds_memory(void **state)
{
    (void)state;
    long rss0 = sp_rss_kb(server_pid);
    assert_true(rss0 > 0);
    int fd = sp_connect(port, 32 * 1024);
    assert_true(fd >= 0);
    long peak = 0;
    size_t sent = sp_push(fd, pattern, sizeof(pattern), 3.0, (size_t)160 << 20, server_pid, &peak);
    print_message("echo_server back-pressure: sent %.1f MB unread in 3 s; RSS %.1f MB at start, "
                  "peak %.1f MB (+%.1f MB)\n",
                  sent / 1048576.0, rss0 / 1024.0, peak / 1024.0, (peak - rss0) / 1024.0);
    if (peak - rss0 >= RSS_BOUND_KB)
        fail_msg("RSS grew by %ld KiB (bound %d KiB)", peak - rss0, RSS_BOUND_KB);

    int other = sp_connect(port, 0);
    assert_true(other >= 0);
    assert_int_equal(write(other, pattern, 1000), 1000);
    expect_echo(other, 1000, 5);
    close(other);

    expect_echo(fd, sent, 60);
    close(fd);
}

/* --send-timeout takes a positive number of seconds; anything else is a usage error (exit 2). */
static void test_echo_send_timeout_flag(void **state)
{
    (void)state;
    const char *bad[] = {"0", "-1", "abc", "5s", "", "nan", "1e9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {(char *)server_path, "--send-timeout", (char *)bad[i], NULL};
        int status = sp_run(argv);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 2)
            fail_msg("--send-timeout '%s': status %#x, wanted exit 2", bad[i], status);
    }
    char *missing[] = {(char *)server_path, "--send-timeout", NULL};
    int status = sp_run(missing);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
}

/* --tls-cert / --tls-key on two loops, hand-off mode: Python's ssl client sends 1 MB on each of
 * four connections and gets it back (the echo of plaintext over TLS, with flow control). */
static void test_echo_tls(void **state)
{
    (void)state;
    char dir[64];
    assert_int_equal(sp_make_cert(dir, sizeof(dir)), 0);
    char cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    int p = sp_free_port();
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", p);
    char *argv[] = {(char *)server_path, "--loops",    "2",  "--port",    portstr, "--mode",
                    "handoff",           "--tls-cert", cert, "--tls-key", key,     NULL};
    pid_t pid = sp_start(argv, p);
    assert_true(pid > 0);
    char cmd[2048];
    snprintf(
        cmd, sizeof(cmd),
        "/usr/bin/python3 -c '\n"
        "import socket, ssl, sys\n"
        "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
        "data = bytes(range(256)) * 4096\n"
        "for i in range(4):\n"
        "    s = ctx.wrap_socket(socket.create_connection((\"127.0.0.1\", int(sys.argv[2]))),\n"
        "                        server_hostname=\"localhost\")\n"
        "    s.sendall(data)\n"
        "    got = b\"\"\n"
        "    while len(got) < len(data):\n"
        "        got += s.recv(65536)\n"
        "    assert got == data\n"
        "    s.unwrap()\n"
        "    s.close()\n"
        "print(\"ECHO-OK\")\n"
        "' %s %d 2>&1",
        cert, p);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char out[4096];
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    pclose(f);
    if (strstr(out, "ECHO-OK") == NULL)
        fail_msg("python: %s", out);
    int status = sp_stop(pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    sp_remove_dir(dir);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: echo_server_test ECHO_SERVER\n");
        return 2;
    }
    server_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    fill_pattern();
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_send_timeout_flag),
        cmocka_unit_test(test_echo_tls),
        cmocka_unit_test_setup_teardown(test_echo_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_backpressure_bounds_memory, setup, teardown),
    };
    return cmocka_run_group_tests_name("echo_server", tests, NULL, NULL);
}
