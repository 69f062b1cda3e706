/* Runs the example binaries and checks their output and timing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

static const char *hello_path;
static const char *date_path;
static const char *hello_task_path;
static const char *date_task_path;

static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 4096, n = 0;
    char *out = calloc(1, cap);
    size_t k;
    while ((k = fread(out + n, 1, cap - n - 1, p)) > 0)
        n += k;
    *status = pclose(p);
    return out;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_examples_hello_world(void **state)
{
    (void)state;
    int status;
    char *out = run(hello_path, &status);
    assert_int_equal(status, 0);
    assert_string_equal(out, "Hello World\n");
    free(out);
}

/* Runs a display-date example (callbacks or task) for 3 s: dates at t = 0, 1 and 2 s, then it
 * stops before 3 s; a negative duration is refused. */
static void check_display_date(const char *path)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s 3", path);
    int status;
    double t0 = now();
    char *out = run(cmd, &status);
    double dt = now() - t0;
    assert_int_equal(status, 0);
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3);
    assert_true(dt >= 2.0 && dt < 3.5);
    int y, mo, d, h, mi, s;
    long us;
    assert_int_equal(sscanf(out, "%d-%d-%d %d:%d:%d.%ld", &y, &mo, &d, &h, &mi, &s, &us), 7);
    assert_true(y >= 2024);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s -1 2>/dev/null", path);
    out = run(cmd, &status);
    assert_int_not_equal(status, 0);
    free(out);
}

static void test_examples_display_date(void **state)
{
    (void)state;
    check_display_date(date_path);
}

static void test_examples_hello_world_task(void **state)
{
    (void)state;
    int status;
    char *out = run(hello_task_path, &status);
    assert_int_equal(status, 0);
    assert_string_equal(out, "Hello World!\n");
    free(out);
}

static void test_examples_display_date_task(void **state)
{
    (void)state;
    check_display_date(date_task_path); /* lc_sleep(1) between the dates */
}

/* The TCP echo examples, found in argv by name (their position follows the other examples'). */
static const char *echo_server_path;
static const char *echo_client_path;
static const char *signal_handlers_path;
static const char *watch_fd_path; /* "Watch a file descriptor for read events", found by name */

/* Reads fd to its end into a new string. */
static char *read_all(int fd)
{
    size_t cap = 4096, n = 0;
    char *out = calloc(1, cap);
    ssize_t k;
    while ((k = read(fd, out + n, cap - n - 1)) != 0) {
        if (k < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        n += (size_t)k;
        if (cap - n - 1 == 0) {
            out = realloc(out, cap * 2);
            cap *= 2;
        }
    }
    out[n] = '\0';
    return out;
}

static void test_examples_tcp_echo(void **state)
{
    (void)state;
    /* The server on a port the kernel picks, told by its "Serving on" line. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char *sargv[] = {(char *)echo_server_path, "0", "--once", NULL};
    pid_t server;
    assert_int_equal(posix_spawn(&server, echo_server_path, &fa, NULL, sargv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    char first[128];
    size_t n = 0;
    while (n + 1 < sizeof(first) && read(fds[0], first + n, 1) == 1 && first[n] != '\n')
        n++;
    first[n] = '\0';
    int port = 0;
    if (sscanf(first, "Serving on ('127.0.0.1', %d)", &port) != 1 || port <= 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        fail_msg("server said \"%s\"", first);
    }

    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s %d", echo_client_path, port);
    int status;
    char *out = run(cmd, &status);
    if (status != 0)
        kill(server, SIGKILL); /* --once would wait for a connection forever */
    char *sout = read_all(fds[0]);
    close(fds[0]);
    int sstatus;
    assert_int_equal(waitpid(server, &sstatus, 0), server);

    assert_int_equal(status, 0);
    assert_string_equal(out, "Data sent: 'Hello World!'\n"
                             "Data received: 'Hello World!'\n"
                             "The server closed the connection\n");
    assert_true(WIFEXITED(sstatus));
    assert_int_equal(WEXITSTATUS(sstatus), 0);
    int peer_port = 0, used = 0;
    assert_int_equal(sscanf(sout, "Connection from ('127.0.0.1', %d)\n%n", &peer_port, &used), 1);
    assert_true(peer_port > 0 && peer_port != port && used > 0);
    assert_string_equal(sout + used, "Data received: 'Hello World!'\n"
                                     "Send: 'Hello World!'\n"
                                     "Close the client socket\n");
    free(out);
    free(sout);

    /* The server is gone: the client reports the refused connection and fails. */
    snprintf(cmd, sizeof(cmd), "%s %d 2>/dev/null", echo_client_path, port);
    out = run(cmd, &status);
    assert_int_not_equal(status, 0);
    assert_string_equal(out, "");
    free(out);
}

/* The signal handlers example: it prints its pid once its handlers are in place; signum sent
 * then makes it print "got signal NAME: exit" and exit 0. */
static void check_signal_handlers(int signum, const char *name)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char *argv[] = {(char *)signal_handlers_path, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, signal_handlers_path, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    char head[256];
    size_t n = 0;
    int lines = 0;
    while (lines < 2 && n + 1 < sizeof(head) && read(fds[0], head + n, 1) == 1)
        lines += head[n++] == '\n';
    head[n] = '\0';
    char expect[256];
    snprintf(expect, sizeof(expect),
             "Event loop running for 1 hour, press Ctrl+C to interrupt.\n"
             "pid %d: send SIGINT or SIGTERM to exit.\n",
             (int)pid);
    if (strcmp(head, expect) != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("signal_handlers said \"%s\"", head);
    }
    double t0 = now();
    assert_int_equal(kill(pid, signum), 0);
    char *rest = read_all(fds[0]);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    snprintf(expect, sizeof(expect), "got signal %s: exit\n", name);
    assert_string_equal(rest, expect);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(now() - t0 < 20); /* not the hour */
    free(rest);
}

static void test_examples_signal_handlers(void **state)
{
    (void)state;
    check_signal_handlers(SIGTERM, "SIGTERM");
    check_signal_handlers(SIGINT, "SIGINT");
}

/* add_reader on one end of a socketpair; a call_soon writes "abc" to the other end; the
 * reader prints it, removes itself and stops the loop. */
static void test_examples_watch_fd(void **state)
{
    (void)state;
    if (watch_fd_path == NULL)
        skip();
    int status;
    char *out = run(watch_fd_path, &status);
    assert_int_equal(status, 0);
    assert_string_equal(out, "Received: abc\n");
    free(out);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: examples_test HELLO_WORLD DISPLAY_DATE HELLO_WORLD_TASK "
                        "DISPLAY_DATE_TASK\n");
        return 2;
    }
    hello_path = argv[1];
    date_path = argv[2];
    hello_task_path = argv[3];
    date_task_path = argv[4];
    for (int i = 1; i < argc; i++) {
        const char *base = strrchr(argv[i], '/');
        base = base != NULL ? base + 1 : argv[i];
        if (strcmp(base, "tcp_echo_server") == 0)
            echo_server_path = argv[i];
        else if (strcmp(base, "tcp_echo_client") == 0)
            echo_client_path = argv[i];
        else if (strcmp(base, "signal_handlers") == 0)
            signal_handlers_path = argv[i];
        else if (strcmp(base, "watch_fd") == 0)
            watch_fd_path = argv[i];
    }
    if (echo_server_path == NULL || echo_client_path == NULL || signal_handlers_path == NULL) {
        fprintf(stderr, "examples_test: give the tcp_echo_server, tcp_echo_client and "
                        "signal_handlers paths too\n");
        return 2;
    }
    lc_test_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_hello_world),
        cmocka_unit_test(test_examples_display_date),
        cmocka_unit_test(test_examples_hello_world_task),
        cmocka_unit_test(test_examples_display_date_task),
        cmocka_unit_test(test_examples_tcp_echo),
        cmocka_unit_test(test_examples_signal_handlers),
        cmocka_unit_test(test_examples_watch_fd),
    };
    return cmocka_run_group_tests_name("examples", tests, NULL, NULL);
}
