/* //bench:http_server --static DIR and --static-copy DIR (bench/http_static.c): files byte for
 * byte with Content-Length, keep-alive and pipelining across file bodies, HEAD, 404, no path out
 * of DIR (.., encoded .., absolute, symlinks, hidden names), 405; and //bench:sendfile_bench in a
 * short run (so that it cannot rot): its four bench= lines. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/http/server_proc.h"
#include "tests/support/loop_fixture.h"

static const char *server_path, *bench_path;
static char root[256], dir[300];
static char *big;
#define BIG (3 * 1024 * 1024 + 7)

/* Reads exactly n bytes (or fails the test) within 20 s. */
static void read_exact(int fd, char *buf, size_t n)
{
    size_t got = 0;
    double end = sp_now() + 20;
    while (got < n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        assert_true(sp_now() < end);
        if (poll(&pfd, 1, 1000) <= 0)
            continue;
        ssize_t k = read(fd, buf + got, n - got);
        assert_true(k > 0);
        got += (size_t)k;
    }
}

/* Reads a response head (to the blank line) into head; returns its Content-Length. */
static long read_head(int fd, char *head, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        read_exact(fd, head + n, 1);
        n++;
        head[n] = '\0';
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    const char *cl = strstr(head, "Content-Length: ");
    assert_non_null(cl);
    return atol(cl + 16);
}

static void send_all(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(fd, s, n), (ssize_t)n);
}

static pid_t start(const char *flag, int *port)
{
    *port = sp_free_port();
    char p[16];
    snprintf(p, sizeof(p), "%d", *port);
    char *argv[] = {(char *)server_path, "--loops", "1",       "--port", p,
                    (char *)flag,        dir,       "--quiet", NULL};
    pid_t pid = sp_start(argv, *port);
    assert_true(pid > 0);
    return pid;
}

static void serve_files(const char *flag)
{
    int port;
    pid_t pid = start(flag, &port);
    int fd = sp_connect(port, 0);
    assert_true(fd >= 0);
    char head[1024];
    /* Pipelined: the big file, a HEAD, the empty file, the 1-byte one, a 404, the big one again. */
    send_all(fd, "GET /file/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
                 "HEAD /file/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /file/empty HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /file/one HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /file/nothere HTTP/1.1\r\nHost: x\r\n\r\n");
    char *body = malloc(BIG);
    assert_non_null(body);
    assert_int_equal(read_head(fd, head, sizeof(head)), BIG);
    assert_non_null(strstr(head, "HTTP/1.1 200 OK"));
    read_exact(fd, body, BIG);
    assert_memory_equal(body, big, BIG);
    assert_int_equal(read_head(fd, head, sizeof(head)), BIG); /* HEAD: no body */
    assert_int_equal(read_head(fd, head, sizeof(head)), 0);
    assert_int_equal(read_head(fd, head, sizeof(head)), 1);
    read_exact(fd, body, 1);
    assert_int_equal(body[0], 'x');
    long n = read_head(fd, head, sizeof(head));
    assert_non_null(strstr(head, "HTTP/1.1 404"));
    read_exact(fd, body, (size_t)n);
    /* Small bodies pipelined, each complete at once: answered once each, in order. */
    send_all(fd, "GET /file/one HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /file/empty HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /file/one HTTP/1.1\r\nHost: x\r\n\r\n"
                 "HEAD /file/nothere HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /file/nothere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_head(fd, head, sizeof(head)), 1);
    read_exact(fd, body, 1);
    assert_int_equal(read_head(fd, head, sizeof(head)), 0);
    assert_int_equal(read_head(fd, head, sizeof(head)), 1);
    read_exact(fd, body, 1);
    n = read_head(fd, head, sizeof(head)); /* HEAD's 404: no body */
    assert_non_null(strstr(head, "HTTP/1.1 404"));
    n = read_head(fd, head, sizeof(head));
    assert_non_null(strstr(head, "HTTP/1.1 404"));
    read_exact(fd, body, (size_t)n);
    /* The same connection (keep-alive), a second time, then Connection: close. */
    send_all(fd, "GET /file/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_head(fd, head, sizeof(head)), BIG);
    read_exact(fd, body, BIG);
    assert_memory_equal(body, big, BIG);
    bool closed = false;
    assert_int_equal(sp_read_all(fd, body, 16, 10, &closed), 0); /* nothing more: no duplicate */
    assert_true(closed);
    close(fd);
    free(body);

    /* Nothing outside DIR: each is 404 (or 400 for what is no valid request), never the file. */
    static const char *bad[] = {"/file/../secret", "/file/%2e%2e/secret", "/file//etc/passwd",
                                "/file/link",      "/file/.hidden",       "/secret",
                                "/file/",          "/file/sub/../big.bin"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fd = sp_connect(port, 0);
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", bad[i]);
        send_all(fd, req);
        n = read_head(fd, head, sizeof(head));
        assert_non_null(strstr(head, "HTTP/1.1 404"));
        char b[64] = {0};
        read_exact(fd, b, (size_t)n);
        assert_null(strstr(b, "SECRET"));
        close(fd);
    }
    /* Another method: 405, closed. */
    fd = sp_connect(port, 0);
    send_all(fd, "POST /file/one HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    char b[512];
    sp_read_all(fd, b, sizeof(b), 10, &closed);
    assert_non_null(strstr(b, "HTTP/1.1 405"));
    assert_true(closed);
    close(fd);
    assert_int_equal(sp_stop(pid), 0);
}

static void test_static_sendfile(void **state)
{
    (void)state;
    serve_files("--static");
}

static void test_static_copy(void **state)
{
    (void)state;
    serve_files("--static-copy");
}

/* A client that resets mid-body costs its connection only: the server still serves. */
static void test_static_reset_mid_body(void **state)
{
    (void)state;
    int port;
    pid_t pid = start("--static", &port);
    for (int i = 0; i < 5; i++) {
        int fd = sp_connect(port, 4096);
        send_all(fd, "GET /file/big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        char b[1000];
        read_exact(fd, b, sizeof(b));
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    int fd = sp_connect(port, 0);
    send_all(fd, "GET /file/one HTTP/1.1\r\nHost: x\r\n\r\n");
    char head[512];
    assert_int_equal(read_head(fd, head, sizeof(head)), 1);
    close(fd);
    assert_int_equal(sp_stop(pid), 0);
}

/* Hostile peers cost one connection each, for a bounded time: a request head trickled a byte every
 * 0.2 s is closed once --idle-timeout (1 s) passed since the connection's last complete request;
 * a client that asks for the big file and never reads is reset by --send-timeout (1 s). */
static void test_static_trickler_and_silent_reader(void **state)
{
    (void)state;
    int port = sp_free_port();
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    char *argv[] = {(char *)server_path,
                    "--loops",
                    "1",
                    "--port",
                    p,
                    "--static",
                    dir,
                    "--idle-timeout",
                    "1",
                    "--send-timeout",
                    "1",
                    "--quiet",
                    NULL};
    pid_t pid = sp_start(argv, port);
    assert_true(pid > 0);
    /* The trickler. */
    int fd = sp_connect(port, 0);
    assert_true(fd >= 0);
    send_all(fd, "GET /file/one HTTP/1.1\r\nX-Slow: ");
    double t0 = sp_now();
    bool closed = false;
    char buf[4096];
    while (!closed && sp_now() - t0 < 10) {
        sp_read_all(fd, buf, sizeof(buf), 0.2, &closed);
        if (!closed && write(fd, "a", 1) != 1)
            closed = true; /* reset by the server */
    }
    double dt = sp_now() - t0;
    assert_true(closed);
    assert_true(dt >= 0.9 && dt < 8.0);
    close(fd);
    /* The silent reader: a small receive buffer, the big file asked for, nothing read. */
    fd = sp_connect(port, 4096);
    assert_true(fd >= 0);
    send_all(fd, "GET /file/big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* a stall fails, not hangs */
    usleep(4000 * 1000); /* the send timeout (1 s) resets it meanwhile */
    ssize_t k;
    while ((k = read(fd, buf, sizeof(buf))) > 0) {
    }
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET)); /* the end, not a stall */
    close(fd);
    /* The server still serves. */
    fd = sp_connect(port, 0);
    send_all(fd, "GET /file/one HTTP/1.1\r\nHost: x\r\n\r\n");
    char head[512];
    assert_int_equal(read_head(fd, head, sizeof(head)), 1);
    close(fd);
    assert_int_equal(sp_stop(pid), 0);
}

/* Over TLS the files go by lc_loop_sendfile's fallback (read + write through the TLS transport):
 * curl fetches two on one connection and they match. */
static void test_static_tls(void **state)
{
    (void)state;
    if (access("/usr/bin/curl", X_OK) != 0)
        skip();
    char cdir[64];
    assert_int_equal(sp_make_cert(cdir, sizeof(cdir)), 0);
    char cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/cert.pem", cdir);
    snprintf(key, sizeof(key), "%s/key.pem", cdir);
    int port = sp_free_port();
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    char *argv[] = {
        (char *)server_path, "--loops", "1",         "--port", p,         "--static", dir,
        "--tls-cert",        cert,      "--tls-key", key,      "--quiet", NULL};
    pid_t pid = sp_start(argv, port);
    assert_true(pid > 0);
    char out1[512], out2[512], cmd[2048];
    snprintf(out1, sizeof(out1), "%s/got1", cdir);
    snprintf(out2, sizeof(out2), "%s/got2", cdir);
    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 30 --cacert %s https://localhost:%d/file/big.bin -o %s "
             "https://localhost:%d/file/one -o %s -w '%%{num_connects}\n' > %s/connects",
             cert, port, out1, port, out2, cdir);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(out1, "rb");
    assert_non_null(f);
    char *got = malloc(BIG + 1);
    assert_non_null(got);
    assert_int_equal(fread(got, 1, BIG + 1, f), BIG);
    fclose(f);
    assert_memory_equal(got, big, BIG);
    f = fopen(out2, "rb");
    assert_non_null(f);
    assert_int_equal(fread(got, 1, 2, f), 1);
    assert_int_equal(got[0], 'x');
    fclose(f);
    free(got);
    char cpath[512];
    snprintf(cpath, sizeof(cpath), "%s/connects", cdir);
    f = fopen(cpath, "r");
    assert_non_null(f);
    int c1 = -1, c2 = -1;
    assert_int_equal(fscanf(f, "%d %d", &c1, &c2), 2);
    fclose(f);
    assert_int_equal(c1 + c2, 1); /* the second file on the same connection */
    assert_int_equal(sp_stop(pid), 0);
    sp_remove_dir(cdir);
}

/* The benchmark in a short run: four lines in the format, with positive figures. */
static void test_sendfile_bench_short(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s --duration 0.3 --rounds 1", bench_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512];
    int seen = 0;
    static const char *names[] = {"sendfile_1MiB", "sendfile_64MiB", "sendfile_copy_1MiB",
                                  "sendfile_copy_64MiB"};
    while (fgets(line, sizeof(line), p) != NULL) {
        char name[64];
        double ours, nginx, oc, nc, r1, r2;
        char unit[32];
        if (sscanf(line,
                   "bench=%63s ours=%lf nginx=%lf ours_cpu=%lf nginx_cpu=%lf unit=%31s "
                   "ratio_vs_nginx=%lf cpu_ratio_vs_nginx=%lf",
                   name, &ours, &nginx, &oc, &nc, unit, &r1, &r2) != 8)
            continue;
        assert_true(seen < 4);
        assert_string_equal(name, names[seen]);
        assert_string_equal(unit, "GiB_per_s");
        assert_true(ours > 0 && nginx > 0 && oc >= 0 && nc >= 0 && r1 > 0);
        seen++;
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(seen, 4);
}

static void write_file(const char *name, const char *data, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/lc_static_XXXXXX");
    if (mkdtemp(root) == NULL)
        return -1;
    snprintf(dir, sizeof(dir), "%s/www", root);
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof(path), "%s/sub", dir);
    mkdir(path, 0755);
    big = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)((i * 31 + (i >> 10)) & 0xff);
    write_file("big.bin", big, BIG);
    write_file("one", "x", 1);
    write_file("empty", "", 0);
    write_file(".hidden", "SECRET", 6);
    snprintf(path, sizeof(path), "%s/secret", root);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "SECRET", 6) != 6)
        return -1;
    close(fd);
    char link[512];
    snprintf(link, sizeof(link), "%s/link", dir);
    if (symlink(path, link) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(big);
    sp_remove_dir(root);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: http_static_test HTTP_SERVER SENDFILE_BENCH\n");
        return 2;
    }
    server_path = argv[1];
    bench_path = argv[2];
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_sendfile),
        cmocka_unit_test(test_static_copy),
        cmocka_unit_test(test_static_reset_mid_body),
        cmocka_unit_test(test_static_tls),
        cmocka_unit_test(test_sendfile_bench_short),
        cmocka_unit_test(test_static_trickler_and_silent_reader),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
