/* subprocess_bench: spawning and pipes (issue 14).
 *
 *   bazel run -c opt //bench:subprocess_bench [-- [--no-python] [--n N] [--heap-mib M]
 *                                               [--cat-mib C]]
 *
 * Prints one line per figure on stdout (other tools parse them; the format is exact):
 *   bench=spawn_wait ours=<v> asyncio=<v> uvloop=<v> unit=spawns_per_s ratio_vs_uvloop=<x>
 *   bench=pipe_cat ours=<v> floor=<v> unit=MiB_per_s ratio_vs_floor=<x>
 * Values are integers (NA when a peer is unavailable), ratios have 2 decimals. Notes go to
 * stderr.
 *
 * spawn_wait: the process first touches M MiB of heap (1024 by default: every page written, so a
 * fork() would have that many page-table entries to copy), then, best of 3 repetitions on a fresh
 * loop, spawns /bin/true N times in a row (500 by default) with stdout piped (stdin and stderr
 * inherited) and waits each time for connection_lost (the child exited and its stdout pipe
 * closed). The peers (bench/subprocess_bench.py, run with /usr/bin/python3, which has uvloop)
 * touch the same heap and do the same with create_subprocess_exec, reading stdout to EOF and
 * awaiting wait().
 *
 * pipe_cat: C MiB (512 by default) through cat(1), its stdin and stdout both pipes, best of 3:
 * ours writes a static 64 KiB block with write_nocopy while the stdin transport is not paused
 * (watermarks 1 MiB / 256 KiB: the queue holds references to the static block only), and counts what stdout's read transport delivers; the floor is a plain
 * poll() loop over the same pipes, spawned the same way (posix_spawn), that write()s the same
 * block and read()s 64 KiB at a time. Both single-threaded; MiB/s = C / (spawn .. last byte
 * read). Public API only. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/support/runfiles.h"
#include "loopcore.h"

#define REPS 3
#define PYTHON "/usr/bin/python3"
#define SCRIPT_REL "bench/subprocess_bench.py"
#define BLOCK (64 * 1024)

extern char **environ;

static char block[BLOCK];

static void check(int r, const char *what)
{
    if (r != 0) {
        fprintf(stderr, "subprocess_bench: %s failed: %s\n", what, lc_strerror(r));
        exit(1);
    }
}

/* ---- spawn_wait ------------------------------------------------------------------------------ */

typedef struct {
    lc_loop_t *loop;
    long left;
    int lost;
} spawn_state;

static void sw_lost(lc_subprocess_transport_t *t, int err, void *user)
{
    spawn_state *st = user;
    st->lost++;
    lc_loop_stop(st->loop);
}

static const lc_subprocess_protocol_t sw_proto = {.connection_lost = sw_lost};

static int sw_factory(void *arg, const lc_subprocess_protocol_t **proto, void **user)
{
    *proto = &sw_proto;
    *user = arg;
    return 0;
}

static double bench_spawn_wait(long n)
{
    spawn_state st = {0};
    check(lc_new_event_loop(&st.loop), "lc_new_event_loop");
    const char *const argv[] = {"/bin/true", NULL};
    const lc_subprocess_opts_t opts = {.stdin_mode = LC_STDIO_INHERIT,
                                       .stderr_mode = LC_STDIO_INHERIT};
    double t0 = lc_bench_now();
    for (long i = 0; i < n; i++) {
        lc_future_t *fut = NULL;
        check(lc_loop_subprocess_exec(st.loop, sw_factory, &st, argv, &opts, &fut),
              "lc_loop_subprocess_exec");
        check(lc_future_result(fut, NULL), "spawn");
        lc_future_unref(fut);
        int want = st.lost + 1;
        while (st.lost < want)
            check(lc_loop_run_forever(st.loop), "lc_loop_run_forever");
    }
    double rate = (double)n / (lc_bench_now() - t0);
    check(lc_loop_close(st.loop), "lc_loop_close");
    lc_loop_free(st.loop);
    return rate;
}

/* ---- pipe_cat: ours -------------------------------------------------------------------------- */

typedef struct {
    lc_loop_t *loop;
    lc_subprocess_transport_t *t;
    long long to_write, got, total;
    bool paused;
    double t_end;
} cat_state;

static void cat_feed(cat_state *st)
{
    lc_transport_t *in = lc_subprocess_transport_get_pipe_transport(st->t, 0);
    if (in == NULL)
        return;
    while (st->to_write > 0 && !st->paused) {
        size_t k = st->to_write < BLOCK ? (size_t)st->to_write : BLOCK;
        struct iovec iov = {block, k};
        check(lc_transport_write_nocopy(in, &iov, 1, NULL, NULL), "write_nocopy");
        st->to_write -= (long long)k;
    }
    if (st->to_write == 0) {
        st->to_write = -1;
        check(lc_transport_write_eof(in), "write_eof");
    }
}

static void cat_made(lc_subprocess_transport_t *t, void *user) { ((cat_state *)user)->t = t; }

static void cat_data(lc_subprocess_transport_t *t, int fd, const char *data, size_t len, void *user)
{
    cat_state *st = user;
    st->got += (long long)len;
    if (st->got == st->total) {
        st->t_end = lc_bench_now();
        lc_loop_stop(st->loop);
    }
}

static void cat_pause(lc_subprocess_transport_t *t, void *user)
{
    ((cat_state *)user)->paused = true;
}

static void cat_resume(lc_subprocess_transport_t *t, void *user)
{
    cat_state *st = user;
    st->paused = false;
    cat_feed(st);
}

static const lc_subprocess_protocol_t cat_proto = {
    .connection_made = cat_made,
    .pipe_data_received = cat_data,
    .pause_writing = cat_pause,
    .resume_writing = cat_resume,
};

static int cat_factory(void *arg, const lc_subprocess_protocol_t **proto, void **user)
{
    *proto = &cat_proto;
    *user = arg;
    return 0;
}

static double bench_cat_ours(long long bytes)
{
    cat_state st = {.to_write = bytes, .total = bytes};
    check(lc_new_event_loop(&st.loop), "lc_new_event_loop");
    const char *const argv[] = {"cat", NULL};
    double t0 = lc_bench_now();
    lc_future_t *fut = NULL;
    check(lc_loop_subprocess_exec(st.loop, cat_factory, &st, argv,
                                  &(lc_subprocess_opts_t){.stderr_mode = LC_STDIO_INHERIT}, &fut),
          "lc_loop_subprocess_exec");
    check(lc_future_result(fut, NULL), "spawn cat");
    lc_future_unref(fut);
    /* The block is static: queuing more of it by reference costs nothing, and a deeper queue
     * means fewer pause / resume rounds (and fewer writes that find the pipe full). */
    check(lc_transport_set_write_buffer_limits(
              lc_subprocess_transport_get_pipe_transport(st.t, 0), 1 << 20, 256 << 10),
          "set_write_buffer_limits");
    cat_feed(&st);
    while (st.got < st.total)
        check(lc_loop_run_forever(st.loop), "lc_loop_run_forever");
    double rate = (double)bytes / (1 << 20) / (st.t_end - t0);
    lc_subprocess_transport_close(st.t);
    check(lc_loop_close(st.loop), "lc_loop_close"); /* reaps cat */
    lc_loop_free(st.loop);
    return rate;
}

/* ---- pipe_cat: the floor --------------------------------------------------------------------- */

static double bench_cat_floor(long long bytes)
{
    double t0 = lc_bench_now();
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        perror("pipe2");
        exit(1);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    char *const argv[] = {"cat", NULL};
    pid_t pid;
    int r = posix_spawnp(&pid, "cat", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        fprintf(stderr, "subprocess_bench: spawn cat: %s\n", strerror(r));
        exit(1);
    }
    close(in[0]);
    close(out[1]);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    static char rbuf[BLOCK];
    long long to_write = bytes, got = 0;
    size_t off = 0; /* into the block being written */
    while (got < bytes) {
        struct pollfd p[2] = {{.fd = out[0], .events = POLLIN},
                              {.fd = in[1], .events = to_write > 0 ? POLLOUT : 0}};
        if (poll(p, to_write > 0 ? 2 : 1, -1) < 0 && errno != EINTR) {
            perror("poll");
            exit(1);
        }
        if (p[0].revents) {
            ssize_t n = read(out[0], rbuf, sizeof(rbuf));
            if (n > 0)
                got += n;
            else if (n == 0)
                break;
        }
        if (to_write > 0 && p[1].revents) {
            size_t k = to_write < (long long)(BLOCK - off) ? (size_t)to_write : BLOCK - off;
            ssize_t n = write(in[1], block + off, k);
            if (n > 0) {
                to_write -= n;
                off = (off + (size_t)n) % BLOCK;
                if (to_write == 0)
                    close(in[1]);
            }
        }
    }
    double rate = (double)bytes / (1 << 20) / (lc_bench_now() - t0);
    if (to_write > 0)
        close(in[1]);
    close(out[0]);
    waitpid(pid, NULL, 0);
    if (got != bytes) {
        fprintf(stderr, "subprocess_bench: floor: %lld of %lld bytes\n", got, bytes);
        exit(1);
    }
    return rate;
}

/* ---- Python peers ---------------------------------------------------------------------------- */

static bool run_python(const char *script, const char *loop_name, long n, long heap_mib,
                       double *rate)
{
    char cmd[PATH_MAX * 2 + 128] = PYTHON " ";
    lc_bench_append_quoted(cmd, sizeof(cmd), script);
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof(cmd) - len, " --loop %s --n %ld --heap-mib %ld", loop_name, n,
             heap_mib);
    char who[64], line[512];
    snprintf(who, sizeof(who), "subprocess_bench: %s", loop_name);
    if (!lc_bench_run_peer(who, cmd, "spawn_wait=", line, sizeof(line)))
        return false;
    long long v;
    if (sscanf(line, "spawn_wait=%lld", &v) != 1)
        return false;
    *rate = (double)v;
    return true;
}

/* ---- Main ------------------------------------------------------------------------------------ */

static long parse_arg(const char *s, const char *argv0, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > max) {
        fprintf(stderr, "usage: %s [--no-python] [--n N] [--heap-mib M] [--cat-mib C]\n", argv0);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long n = 500, heap_mib = 1024, cat_mib = 512;
    bool python = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-python") == 0)
            python = false;
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            n = parse_arg(argv[++i], argv[0], 1000000);
        else if (strcmp(argv[i], "--heap-mib") == 0 && i + 1 < argc)
            heap_mib = parse_arg(argv[++i], argv[0], 1 << 20);
        else if (strcmp(argv[i], "--cat-mib") == 0 && i + 1 < argc)
            cat_mib = parse_arg(argv[++i], argv[0], 1 << 20);
        else
            parse_arg("x", argv[0], 0);
    }
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (char)(i % 251);

    /* The heap that would make fork() slow: every page written. */
    size_t heap_len = (size_t)heap_mib << 20;
    char *heap = malloc(heap_len);
    if (heap == NULL) {
        fprintf(stderr, "subprocess_bench: cannot allocate %ld MiB\n", heap_mib);
        return 1;
    }
    for (size_t i = 0; i < heap_len; i += 4096)
        heap[i] = 1;
    fprintf(stderr, "subprocess_bench: spawn_wait n=%ld heap=%ld MiB reps=%d (best of)\n", n,
            heap_mib, REPS);
    double ours = 0;
    for (int rep = 0; rep < REPS; rep++) {
        double r = bench_spawn_wait(n);
        if (r > ours)
            ours = r;
    }
    free(heap);

    double asy = 0, uvl = 0;
    bool have_asy = false, have_uvl = false;
    if (python) {
        char *script = lc_bench_find_runfile(argv[0], SCRIPT_REL);
        if (script == NULL) {
            fprintf(stderr, "subprocess_bench: %s not found in runfiles: peers NA\n", SCRIPT_REL);
        } else if (access(PYTHON, X_OK) != 0) {
            fprintf(stderr, "subprocess_bench: %s not found: peers NA\n", PYTHON);
        } else {
            have_asy = run_python(script, "asyncio", n, heap_mib, &asy);
            have_uvl = run_python(script, "uvloop", n, heap_mib, &uvl);
        }
        free(script);
    }
    char a[32] = "NA", u[32] = "NA", ratio[32] = "NA";
    if (have_asy)
        snprintf(a, sizeof(a), "%lld", (long long)asy);
    if (have_uvl && uvl > 0) {
        snprintf(u, sizeof(u), "%lld", (long long)uvl);
        snprintf(ratio, sizeof(ratio), "%.2f", ours / uvl);
    }
    printf("bench=spawn_wait ours=%lld asyncio=%s uvloop=%s unit=spawns_per_s ratio_vs_uvloop=%s\n",
           (long long)ours, a, u, ratio);
    fflush(stdout);

    fprintf(stderr, "subprocess_bench: pipe_cat %ld MiB reps=%d (best of)\n", cat_mib, REPS);
    long long bytes = (long long)cat_mib << 20;
    double cat_ours = 0, cat_floor = 0;
    for (int rep = 0; rep < REPS; rep++) {
        double o = bench_cat_ours(bytes), f = bench_cat_floor(bytes);
        if (o > cat_ours)
            cat_ours = o;
        if (f > cat_floor)
            cat_floor = f;
    }
    printf("bench=pipe_cat ours=%lld floor=%lld unit=MiB_per_s ratio_vs_floor=%.2f\n",
           (long long)cat_ours, (long long)cat_floor, cat_ours / cat_floor);
    fflush(stdout);
    return 0;
}
