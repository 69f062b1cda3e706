/* Subprocesses on one loop: exit codes and the callbacks' order, signals (kill, terminate, a
 * child that ignores SIGTERM), 100 MB through stdout with the reader paused and resumed, stdin
 * flow control with a child that reads slowly, cwd and env, stdio options, a missing executable
 * (no zombie), the child's descriptors seen from /proc/self/fd inside it, the child's signal
 * state, closing the transport while the child runs, the loop closed with a child running.
 * argv[1] is the test child (tests/engine/subprocess_child.c). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

static const char *child_path;

/* ---- helpers --------------------------------------------------------------------------------- */

static void run_for(lc_loop_t *loop, double seconds)
{
    lc_handle_t *h = NULL;
    assert_int_equal(lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, &h), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_handle_cancel(h);
    lc_handle_unref(h);
}

/* Runs the loop until *var reaches want, in 10 ms slices, for at most 60 s. */
static void wait_for(lc_loop_t *loop, const int *var, int want)
{
    for (int i = 0; i < 6000 && *var < want; i++)
        run_for(loop, 0.01);
}

/* No child of this process has exited without being reaped. */
static void assert_no_zombie(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    int r = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT);
    if (r == 0 && si.si_pid != 0)
        fail_msg("zombie child %d", (int)si.si_pid);
    assert_true(r == 0 || errno == ECHILD);
}

enum { EV_MADE = 1, EV_PIPE_LOST = 10, EV_EXITED = 20, EV_LOST = 30 };

typedef struct {
    lc_loop_t *loop;
    lc_subprocess_transport_t *t;
    lc_test_log_t log;
    int made, exited, lost, lost_err, pipes_lost, pipe_err[3];
    char out[2][4096]; /* what fd 1 and fd 2 gave (the first 4 KiB) */
    size_t out_len[2];
    long long total[2]; /* every byte */
    bool check_pattern; /* fd 1 must carry i % 251 */
    int bad_pattern;
    /* 100 MB test: pause fd 1 every pause_every bytes, resume 20 ms later */
    long long pause_every, next_pause;
    int pauses, resumes;
    /* stdin flow control */
    int wpaused, wresumed;
    char *state; /* heap, connection_made to connection_lost */
} proc_t;

static void p_made(lc_subprocess_transport_t *t, void *user)
{
    proc_t *p = user;
    p->t = t;
    p->made++;
    p->state = malloc(16);
    lc_test_log_push(&p->log, EV_MADE);
}

static void resume_cb(void *arg)
{
    proc_t *p = arg;
    lc_transport_t *pt = lc_subprocess_transport_get_pipe_transport(p->t, 1);
    if (pt != NULL && lc_transport_resume_reading(pt) == 0)
        p->resumes++;
}

static void p_data(lc_subprocess_transport_t *t, int fd, const char *data, size_t len, void *user)
{
    proc_t *p = user;
    assert_true(fd == 1 || fd == 2);
    int k = fd - 1;
    if (p->check_pattern && fd == 1) {
        for (size_t i = 0; i < len; i++)
            if (data[i] != (char)((p->total[0] + (long long)i) % 251))
                p->bad_pattern++;
    }
    size_t room = sizeof(p->out[k]) - 1 - p->out_len[k];
    size_t n = len < room ? len : room;
    memcpy(p->out[k] + p->out_len[k], data, n);
    p->out_len[k] += n;
    p->total[k] += (long long)len;
    if (fd == 1 && p->pause_every > 0 && p->total[0] >= p->next_pause) {
        p->next_pause += p->pause_every;
        lc_transport_t *pt = lc_subprocess_transport_get_pipe_transport(t, 1);
        assert_non_null(pt);
        assert_int_equal(lc_transport_pause_reading(pt), 0);
        p->pauses++;
        assert_int_equal(lc_loop_call_later(p->loop, 0.02, resume_cb, p, NULL), 0);
    }
}

static void p_pipe_lost(lc_subprocess_transport_t *t, int fd, int err, void *user)
{
    proc_t *p = user;
    assert_true(fd >= 0 && fd <= 2);
    p->pipes_lost++;
    p->pipe_err[fd] = err;
    assert_null(lc_subprocess_transport_get_pipe_transport(t, fd));
    lc_test_log_push(&p->log, EV_PIPE_LOST + fd);
}

static void p_exited(lc_subprocess_transport_t *t, void *user)
{
    proc_t *p = user;
    p->exited++;
    int rc = 0;
    assert_int_equal(lc_subprocess_transport_get_returncode(t, &rc), 0);
    lc_test_log_push(&p->log, EV_EXITED);
}

static void p_lost(lc_subprocess_transport_t *t, int err, void *user)
{
    proc_t *p = user;
    p->lost++;
    p->lost_err = err;
    free(p->state);
    p->state = NULL;
    lc_test_log_push(&p->log, EV_LOST);
}

static void p_pause(lc_subprocess_transport_t *t, void *user) { ((proc_t *)user)->wpaused++; }
static void p_resume(lc_subprocess_transport_t *t, void *user) { ((proc_t *)user)->wresumed++; }

static const lc_subprocess_protocol_t proc_proto = {
    .connection_made = p_made,
    .pipe_data_received = p_data,
    .pipe_connection_lost = p_pipe_lost,
    .process_exited = p_exited,
    .connection_lost = p_lost,
    .pause_writing = p_pause,
    .resume_writing = p_resume,
};

static int factory_calls;

static int proc_factory(void *arg, const lc_subprocess_protocol_t **proto, void **user)
{
    factory_calls++;
    *proto = &proc_proto;
    *user = arg;
    return 0;
}

/* Spawns argv with opts; the future's outcome must be expect. Returns the transport (NULL on an
 * expected failure). */
static lc_subprocess_transport_t *spawn(lc_loop_t *loop, proc_t *p, const char *const *argv,
                                        const lc_subprocess_opts_t *opts, int expect)
{
    p->loop = loop;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_subprocess_exec(loop, proc_factory, p, argv, opts, &fut), 0);
    void *res = NULL;
    int r = lc_loop_run_until_complete(loop, fut, &res);
    lc_future_unref(fut);
    if (r != expect)
        fail_msg("spawn: %d (%s), expected %d", r, lc_strerror(r), expect);
    if (r != 0)
        return NULL;
    assert_ptr_equal(res, p->t);
    assert_int_equal(p->made, 1);
    return res;
}

static int returncode(lc_subprocess_transport_t *t)
{
    int rc = 12345;
    assert_int_equal(lc_subprocess_transport_get_returncode(t, &rc), 0);
    return rc;
}

/* Waits for the child to print "ready" on stdout. */
static void wait_ready(lc_loop_t *loop, proc_t *p)
{
    for (int i = 0; i < 6000 && strstr(p->out[0], "ready") == NULL; i++)
        run_for(loop, 0.01);
    assert_non_null(strstr(p->out[0], "ready"));
}

/* ---- tests ----------------------------------------------------------------------------------- */

/* Exit codes, output, the wait future, and the order: connection_made, ..., process_exited and
 * every pipe_connection_lost, connection_lost last. */
static void test_exit_codes(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    const char *argv[] = {child_path, "echo-exit", "7", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    assert_true(lc_subprocess_transport_get_pid(t) > 0);
    assert_ptr_equal(lc_subprocess_transport_get_loop(t), loop);
    assert_non_null(lc_subprocess_transport_get_pipe_transport(t, 0));
    assert_non_null(lc_subprocess_transport_get_pipe_transport(t, 1));
    assert_non_null(lc_subprocess_transport_get_pipe_transport(t, 2));
    lc_future_t *w = NULL;
    assert_int_equal(lc_subprocess_transport_wait(t, &w), 0);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, w, &res), 0);
    assert_int_equal((int)(intptr_t)res, 7);
    lc_future_unref(w);
    wait_for(loop, &p.lost, 1);
    assert_int_equal(returncode(t), 7);
    assert_string_equal(p.out[0], "7");
    assert_int_equal(p.exited, 1);
    assert_int_equal(p.pipes_lost, 3);
    assert_int_equal(p.pipe_err[0], 0); /* stdin idle when the child went: no error */
    assert_int_equal(p.pipe_err[1], 0);
    assert_int_equal(p.pipe_err[2], 0);
    assert_int_equal(p.lost_err, 0);
    assert_int_equal(p.log.items[0], EV_MADE);
    assert_int_equal(p.log.items[p.log.n - 1], EV_LOST);
    assert_int_equal(p.log.n, 6);
    /* After exit: signals are refused, wait resolves at once. */
    assert_int_equal(lc_subprocess_transport_kill(t), -ESRCH);
    assert_int_equal(lc_subprocess_transport_wait(t, &w), 0);
    assert_true(lc_future_done(w));
    lc_future_unref(w);
    lc_subprocess_transport_unref(t);

    static proc_t q;
    memset(&q, 0, sizeof(q));
    const char *argv0[] = {child_path, "exit", "0", NULL};
    t = spawn(loop, &q, argv0, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_for(loop, &q.lost, 1);
    assert_int_equal(returncode(t), 0);
    lc_subprocess_transport_unref(t);
    assert_no_zombie();
}

/* subprocess_shell runs /bin/sh -c. */
static void test_shell(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    p.loop = loop;
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_subprocess_shell(loop, proc_factory, &p,
                                              "echo hi; echo err >&2; exit 5", NULL, &fut),
                     0);
    lc_subprocess_transport_t *t = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, fut, (void **)&t), 0);
    lc_future_unref(fut);
    lc_subprocess_transport_ref(t);
    wait_for(loop, &p.lost, 1);
    assert_string_equal(p.out[0], "hi\n");
    assert_string_equal(p.out[1], "err\n");
    assert_int_equal(returncode(t), 5);
    lc_subprocess_transport_unref(t);
}

/* kill gives -SIGKILL, terminate -SIGTERM; a child that ignores SIGTERM survives terminate
 * and dies of kill. */
static void test_signals(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p, q;
    memset(&p, 0, sizeof(p));
    memset(&q, 0, sizeof(q));
    const char *sleeper[] = {child_path, "sleep", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, sleeper, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_ready(loop, &p);
    int rc;
    assert_int_equal(lc_subprocess_transport_get_returncode(t, &rc), LC_EAGAIN);
    assert_int_equal(lc_subprocess_transport_terminate(t), 0);
    wait_for(loop, &p.lost, 1);
    assert_int_equal(returncode(t), -SIGTERM);
    lc_subprocess_transport_unref(t);

    const char *stubborn[] = {child_path, "ignore-term", NULL};
    t = spawn(loop, &q, stubborn, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_ready(loop, &q);
    assert_int_equal(lc_subprocess_transport_terminate(t), 0);
    run_for(loop, 0.3);
    assert_int_equal(q.exited, 0);
    assert_int_equal(lc_subprocess_transport_get_returncode(t, &rc), LC_EAGAIN);
    assert_int_equal(lc_subprocess_transport_send_signal(t, SIGKILL), 0);
    wait_for(loop, &q.lost, 1);
    assert_int_equal(returncode(t), -SIGKILL);
    assert_int_equal(lc_subprocess_transport_send_signal(t, SIGTERM), -ESRCH);
    lc_subprocess_transport_unref(t);
    assert_no_zombie();
}

/* 100 MB through stdout, the reader pausing every 8 MiB for 20 ms: every byte, in order. */
static void test_stdout_100mb_paused(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    p.check_pattern = true;
    p.pause_every = 8 << 20;
    p.next_pause = p.pause_every;
    const char *argv[] = {child_path, "gen", "100000000", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    for (int i = 0; i < 12000 && p.lost == 0; i++)
        run_for(loop, 0.01);
    assert_int_equal(p.lost, 1);
    assert_int_equal(p.total[0], 100000000LL);
    assert_int_equal(p.bad_pattern, 0);
    assert_int_equal(p.pauses, 11);
    assert_true(p.resumes >= 10); /* the last resume may find the pipe already gone */
    assert_int_equal(returncode(t), 0);
    lc_subprocess_transport_unref(t);
}

/* stdin flow control: 2 MiB written to a child that reads 4 KiB per millisecond; the writer is
 * paused above the high mark and resumed at the low one; write_eof ends it; the child got every
 * byte in order. */
typedef struct {
    proc_t p;
    char *buf;
    size_t len, off;
} feeder_t;

static void feed(feeder_t *f)
{
    lc_transport_t *in = lc_subprocess_transport_get_pipe_transport(f->p.t, 0);
    assert_non_null(in);
    while (f->off < f->len && f->p.wpaused == f->p.wresumed) {
        size_t k = f->len - f->off < 65536 ? f->len - f->off : 65536;
        assert_int_equal(lc_transport_write(in, f->buf + f->off, k), 0);
        f->off += k;
    }
    if (f->off == f->len)
        assert_int_equal(lc_transport_write_eof(in), 0);
}

static void test_stdin_flow_control(void **state)
{
    lc_loop_t *loop = *state;
    static feeder_t f;
    memset(&f, 0, sizeof(f));
    f.len = 2 << 20;
    f.buf = malloc(f.len);
    for (size_t i = 0; i < f.len; i++)
        f.buf[i] = (char)(i % 251);
    const char *argv[] = {child_path, "slow-read", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &f.p, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    lc_transport_t *in = lc_subprocess_transport_get_pipe_transport(t, 0);
    assert_int_equal(lc_transport_set_write_buffer_limits(in, 256 * 1024, 64 * 1024), 0);
    feed(&f);
    assert_int_equal(f.p.wpaused, 1);
    for (int i = 0; i < 12000 && f.p.lost == 0; i++) {
        run_for(loop, 0.01);
        if (f.off < f.len && f.p.wpaused == f.p.wresumed)
            feed(&f);
    }
    assert_int_equal(f.p.lost, 1);
    assert_true(f.p.wpaused >= 2);
    assert_true(f.p.wresumed >= 1);
    assert_string_equal(f.p.out[0], "2097152\n");
    assert_int_equal(f.p.pipe_err[0], 0);
    assert_int_equal(returncode(t), 0);
    lc_subprocess_transport_unref(t);
    free(f.buf);
}

/* A child that exits without reading its stdin while data is queued for it: the stdin pipe is
 * lost with LC_EPIPE (and no SIGPIPE reaches the test process). */
static void test_stdin_reader_gone(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    signal(SIGPIPE, SIG_DFL);
    const char *argv[] = {child_path, "sleep", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_ready(loop, &p);
    lc_transport_t *in = lc_subprocess_transport_get_pipe_transport(t, 0);
    static char buf[1 << 20];
    assert_int_equal(lc_transport_write(in, buf, sizeof(buf)), 0);
    assert_true(lc_transport_get_write_buffer_size(in) > 0);
    assert_int_equal(lc_subprocess_transport_kill(t), 0);
    wait_for(loop, &p.lost, 1);
    assert_int_equal(p.pipe_err[0], LC_EPIPE);
    assert_int_equal(returncode(t), -SIGKILL);
    lc_subprocess_transport_unref(t);
}

/* cwd and env. */
static void test_cwd_env(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    const char *argv[] = {child_path, "pwd-env", "LC_TEST_VAR", NULL};
    const char *env[] = {"LC_TEST_VAR=hello world", "OTHER=1", NULL};
    lc_subprocess_transport_t *t =
        spawn(loop, &p, argv, &(lc_subprocess_opts_t){.cwd = "/tmp", .env = env}, 0);
    lc_subprocess_transport_ref(t);
    wait_for(loop, &p.lost, 1);
    assert_string_equal(p.out[0], "/tmp\nhello world\n");
    assert_int_equal(returncode(t), 0);
    lc_subprocess_transport_unref(t);

    /* Without env, the parent's environment. */
    static proc_t q;
    memset(&q, 0, sizeof(q));
    setenv("LC_TEST_VAR", "from parent", 1);
    t = spawn(loop, &q, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_for(loop, &q.lost, 1);
    assert_non_null(strstr(q.out[0], "\nfrom parent\n"));
    lc_subprocess_transport_unref(t);
    unsetenv("LC_TEST_VAR");
}

/* A missing executable (or cwd) fails the future with -ENOENT: no protocol, no zombie, no fd
 * left behind. */
static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

static void test_missing_executable(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    int fds_before = count_fds();
    factory_calls = 0;
    const char *argv[] = {"/nonexistent/loopcore-no-such-program", NULL};
    spawn(loop, &p, argv, NULL, -ENOENT);
    const char *argv2[] = {"loopcore-no-such-program-in-path", NULL};
    spawn(loop, &p, argv2, NULL, -ENOENT);
    const char *argv3[] = {child_path, "exit", "0", NULL};
    spawn(loop, &p, argv3, &(lc_subprocess_opts_t){.cwd = "/nonexistent-dir"}, -ENOENT);
    assert_int_equal(factory_calls, 0);
    assert_int_equal(p.made, 0);
    assert_no_zombie();
    assert_int_equal(count_fds(), fds_before);
}

/* Bad arguments are refused at once. */
static void test_invalid(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    lc_future_t *fut = NULL;
    const char *argv[] = {child_path, "exit", "0", NULL};
    const char *empty[] = {NULL};
    assert_int_equal(lc_loop_subprocess_exec(loop, proc_factory, &p, empty, NULL, &fut), LC_EINVAL);
    assert_int_equal(lc_loop_subprocess_exec(loop, proc_factory, &p, NULL, NULL, &fut), LC_EINVAL);
    assert_int_equal(lc_loop_subprocess_exec(loop, proc_factory, &p, argv,
                                             &(lc_subprocess_opts_t){.stdin_mode = LC_STDIO_STDOUT},
                                             &fut),
                     LC_EINVAL);
    assert_int_equal(lc_loop_subprocess_exec(
                         loop, proc_factory, &p, argv,
                         &(lc_subprocess_opts_t){.stdout_mode = LC_STDIO_FD, .stdout_fd = 1000},
                         &fut),
                     LC_EINVAL);
    int one = 1;
    assert_int_equal(
        lc_loop_subprocess_exec(loop, proc_factory, &p, argv,
                                &(lc_subprocess_opts_t){.pass_fds = &one, .npass_fds = 1}, &fut),
        LC_EINVAL);
    assert_int_equal(lc_loop_subprocess_shell(loop, proc_factory, &p, NULL, NULL, &fut), LC_EINVAL);
    assert_null(fut);
    assert_no_zombie();
}

/* The child's descriptors, listed by the child from /proc/self/fd: exactly 0, 1, 2 and the one
 * passed, although the parent holds a descriptor without close-on-exec that was not passed. */
static void test_child_fds(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    int leak[2], pass[2];
    assert_int_equal(pipe(leak), 0); /* no O_CLOEXEC: would leak without close_range */
    assert_int_equal(pipe(pass), 0);
    int passed = fcntl(pass[1], F_DUPFD_CLOEXEC, 50);
    assert_true(passed >= 50);
    const char *argv[] = {child_path, "fds", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, argv,
                                         &(lc_subprocess_opts_t){.stdin_mode = LC_STDIO_DEVNULL,
                                                                 .stderr_mode = LC_STDIO_STDOUT,
                                                                 .pass_fds = &passed,
                                                                 .npass_fds = 1},
                                         0);
    lc_subprocess_transport_ref(t);
    assert_null(lc_subprocess_transport_get_pipe_transport(t, 0));
    assert_null(lc_subprocess_transport_get_pipe_transport(t, 2));
    wait_for(loop, &p.lost, 1);
    char want[64];
    snprintf(want, sizeof(want), "0 1 2 %d \n", passed);
    assert_string_equal(p.out[0], want);
    assert_int_equal(p.pipes_lost, 1);
    /* The passed descriptor is still close-on-exec in the parent. */
    assert_true(fcntl(passed, F_GETFD) & FD_CLOEXEC);

    /* Default stdio: three pipes, nothing else. */
    static proc_t q;
    memset(&q, 0, sizeof(q));
    lc_subprocess_transport_unref(t);
    t = spawn(loop, &q, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_for(loop, &q.lost, 1);
    assert_string_equal(q.out[0], "0 1 2 \n");
    lc_subprocess_transport_unref(t);
    close(leak[0]);
    close(leak[1]);
    close(pass[0]);
    close(pass[1]);
    close(passed);
}

/* stdout to a file (LC_STDIO_FD), stdin and stderr inherited / /dev/null. */
static void test_stdio_fd(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    char path[] = "/tmp/lc_sp_out_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    const char *argv[] = {child_path, "echo-exit", "42", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, argv,
                                         &(lc_subprocess_opts_t){.stdin_mode = LC_STDIO_INHERIT,
                                                                 .stdout_mode = LC_STDIO_FD,
                                                                 .stdout_fd = fd,
                                                                 .stderr_mode = LC_STDIO_DEVNULL},
                                         0);
    lc_subprocess_transport_ref(t);
    assert_null(lc_subprocess_transport_get_pipe_transport(t, 1));
    wait_for(loop, &p.lost, 1);
    assert_int_equal(returncode(t), 42);
    assert_int_equal(p.pipes_lost, 0);
    char buf[16] = {0};
    assert_int_equal(pread(fd, buf, sizeof(buf) - 1, 0), 2);
    assert_string_equal(buf, "42");
    assert_true(fcntl(fd, F_GETFD) >= 0); /* left open in the parent */
    close(fd);
    lc_subprocess_transport_unref(t);
}

/* The child starts with default dispositions and an empty mask, whatever the parent's. */
static void test_child_signal_state(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe, old_int;
    sigaction(SIGPIPE, &ign, &old_pipe);
    sigaction(SIGINT, &ign, &old_int);
    sigset_t set, old_mask;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old_mask);
    const char *argv[] = {child_path, "sigstate", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_for(loop, &p.lost, 1);
    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGINT, &old_int, NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    assert_string_equal(p.out[0], "dfl\n");
    lc_subprocess_transport_unref(t);
}

/* start_new_session: the child leads a session of its own; without it, it does not. */
static void test_new_session(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p, q;
    memset(&p, 0, sizeof(p));
    memset(&q, 0, sizeof(q));
    const char *argv[] = {child_path, "sid", NULL};
    lc_subprocess_transport_t *t =
        spawn(loop, &p, argv, &(lc_subprocess_opts_t){.start_new_session = true}, 0);
    lc_subprocess_transport_ref(t);
    wait_for(loop, &p.lost, 1);
    assert_string_equal(p.out[0], "leader\n");
    lc_subprocess_transport_unref(t);
    t = spawn(loop, &q, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_for(loop, &q.lost, 1);
    assert_string_equal(q.out[0], "member\n");
    lc_subprocess_transport_unref(t);
}

/* close() while the child runs: the pipes close, the child is killed, process_exited and
 * connection_lost follow; no zombie. */
static void test_close_while_running(void **state)
{
    lc_loop_t *loop = *state;
    static proc_t p;
    memset(&p, 0, sizeof(p));
    const char *argv[] = {child_path, "ignore-term", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_ready(loop, &p);
    lc_future_t *w = NULL;
    assert_int_equal(lc_subprocess_transport_wait(t, &w), 0);
    assert_int_equal(lc_subprocess_transport_close(t), 0);
    assert_true(lc_subprocess_transport_is_closing(t));
    assert_int_equal(lc_subprocess_transport_close(t), 0); /* idempotent */
    wait_for(loop, &p.lost, 1);
    assert_int_equal(p.exited, 1);
    assert_int_equal(p.pipes_lost, 3);
    assert_int_equal(returncode(t), -SIGKILL);
    assert_int_equal(p.log.items[p.log.n - 1], EV_LOST);
    assert_true(lc_future_done(w));
    void *res = NULL;
    assert_int_equal(lc_future_result(w, &res), 0);
    assert_int_equal((int)(intptr_t)res, -SIGKILL);
    lc_future_unref(w);
    lc_subprocess_transport_unref(t);
    assert_no_zombie();
}

/* The loop closed with a child running: killed and reaped, process_exited, then
 * connection_lost(LC_ECLOSED); a wait future still gets the status. */
static void test_loop_close_with_child(void **state)
{
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    static proc_t p;
    memset(&p, 0, sizeof(p));
    const char *argv[] = {child_path, "sleep", NULL};
    lc_subprocess_transport_t *t = spawn(loop, &p, argv, NULL, 0);
    lc_subprocess_transport_ref(t);
    wait_ready(loop, &p);
    lc_future_t *w = NULL;
    assert_int_equal(lc_subprocess_transport_wait(t, &w), 0);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(p.exited, 1);
    assert_int_equal(p.lost, 1);
    assert_int_equal(p.lost_err, LC_ECLOSED);
    assert_int_equal(p.pipes_lost, 3);
    assert_int_equal(returncode(t), -SIGKILL);
    assert_true(lc_future_done(w));
    lc_future_unref(w);
    lc_subprocess_transport_unref(t);
    lc_loop_free(loop);
    assert_no_zombie();
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SUBPROCESS_CHILD\n", argv[0]);
        return 2;
    }
    /* Absolute: a relative path is looked up from the child's cwd (as Python's subprocess). */
    static char abs_path[4096];
    if (realpath(argv[1], abs_path) == NULL) {
        perror(argv[1]);
        return 2;
    }
    child_path = abs_path;
    lc_test_watchdog(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exit_codes, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_shell, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_signals, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_stdout_100mb_paused, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_stdin_flow_control, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_stdin_reader_gone, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_cwd_env, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_missing_executable, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_invalid, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_child_fds, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_stdio_fd, lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_child_signal_state, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_new_session, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_close_while_running, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test(test_loop_close_with_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
