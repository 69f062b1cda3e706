/* write_bench: the copying write (lc_transport_write) against the nocopy write
 * (lc_transport_write_nocopy) to a slow reader (issue 12): the writer's CPU time per MiB and the
 * memory the transport holds, same run, rounds interleaved.
 *
 *   bazel run -c opt //bench:write_bench [-- [--mib N] [--rounds R] [--sizes S,S,...]
 *                                            [--rcvbuf B] [--sndbuf B] [--chunk C]
 *                                            [--sleep-us U]]
 *
 * Workload: one TCP connection on 127.0.0.1 per run. The writer is a transport on a loop on the
 * main thread that sends N MiB (default 32) as writes of S bytes (defaults 16384 and 1048576),
 * all from one static S-byte buffer (a cached response), obeying flow control like a well-behaved
 * server (stops at pause_writing, goes on at resume_writing; default marks, 64 / 16 KiB), then
 * closes the transport (close flushes). The reader is a thread with a blocking socket whose
 * SO_RCVBUF is B bytes (default 65536, set before connect so that the window stays small) that
 * reads C bytes at a time (default 16384) and sleeps U microseconds (default 50) after each read.
 * The writer's SO_SNDBUF is left to the kernel unless --sndbuf is given. Modes: copy
 * (lc_transport_write: what the socket does not take is copied into the transport's buffer) and
 * nocopy (lc_transport_write_nocopy with a completion callback: nothing is copied; the static
 * buffer is referenced until the callback). Each round runs every size in both modes, the mode
 * order alternating from round to round; R rounds (default 3).
 *
 * Figures, per run, then per size and mode (median CPU of the rounds, largest peaks):
 *   cpu_us_per_mib     the writer thread's CPU time (getrusage(RUSAGE_THREAD), user + system)
 *                      from the first write to connection_lost, per MiB sent. The loop sleeps in
 *                      epoll while the socket is full, so this is the cost of sending, not of
 *                      waiting.
 *   peak_buffered_kib  the largest lc_transport_get_write_buffer_size() seen after a write or at
 *                      pause_writing: bytes queued in the transport (copies in copy mode,
 *                      references to the caller's memory in nocopy mode).
 *   peak_heap_kib      the largest growth of the writer thread's live heap (jemalloc's
 *                      thread.allocated - thread.deallocated, read at the same points, against
 *                      its value before the run): the memory the transport allocated for the
 *                      writes: the copy buffer in copy mode; in nocopy mode its segment ring (one
 *                      slot per queued buffer, and per write that completed at once, until its
 *                      completion runs in the next iteration). NA when the binary does not use
 *                      jemalloc (sanitizer builds).
 * Output (stdout), one line per size and mode, then a ratio line per size:
 *   bench=write size=<S> mode=copy|nocopy cpu_us_per_mib=<x> peak_buffered_kib=<k>
 *       peak_heap_kib=<k> wall_s=<s> rounds=<R> mib=<N>
 *   bench=write size=<S> ratio=nocopy/copy cpu=<x> peak_buffered=<x> peak_heap=<x>
 * Lines starting with '#' are the single runs. Public API only. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/support/runfiles.h"
#include "loopcore.h"

/* jemalloc's control interface, when the binary links it (weak: sanitizer builds do not). */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

#define MAX_SIZES 8
#define MAX_ROUNDS 64

typedef struct {
    size_t mib, chunk;
    int rounds, rcvbuf, sndbuf, sleep_us;
    size_t sizes[MAX_SIZES];
    int nsizes;
} config_t;

typedef struct {
    double cpu_us_per_mib, wall_s;
    size_t peak_buffered, peak_heap;
    bool heap_known;
} result_t;

/* ---- the writer's heap, per thread (jemalloc) ------------------------------------------------ */

static uint64_t *heap_alloc_p, *heap_dealloc_p;

static void heap_init(void)
{
    if (mallctl == NULL)
        return;
    size_t sz = sizeof(heap_alloc_p);
    if (mallctl("thread.allocatedp", &heap_alloc_p, &sz, NULL, 0) != 0 ||
        mallctl("thread.deallocatedp", &heap_dealloc_p, &sz, NULL, 0) != 0) {
        heap_alloc_p = NULL;
        heap_dealloc_p = NULL;
    }
}

static int64_t heap_live(void)
{
    if (heap_alloc_p == NULL)
        return 0;
    return (int64_t)(*heap_alloc_p - *heap_dealloc_p);
}

static double thread_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* ---- the reader ------------------------------------------------------------------------------ */

typedef struct {
    const config_t *cfg;
    struct sockaddr_in addr;
    size_t got;
    int err;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r->err = errno;
        return NULL;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &r->cfg->rcvbuf, sizeof(r->cfg->rcvbuf));
    if (connect(fd, (struct sockaddr *)&r->addr, sizeof(r->addr)) != 0) {
        r->err = errno;
        close(fd);
        return NULL;
    }
    char *buf = malloc(r->cfg->chunk);
    for (;;) {
        ssize_t n = recv(fd, buf, r->cfg->chunk, 0);
        if (n > 0) {
            r->got += (size_t)n;
            if (r->cfg->sleep_us > 0)
                usleep((useconds_t)r->cfg->sleep_us);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r->err = errno;
        break;
    }
    free(buf);
    close(fd);
    return NULL;
}

/* ---- the writer ------------------------------------------------------------------------------ */

typedef struct {
    lc_loop_t *loop;
    lc_transport_t *t;
    const char *src;
    size_t size, total, sent;
    bool nocopy, paused, closed;
    size_t completions, writes;
    int err;
    int64_t heap_base;
    size_t peak_buffered, peak_heap;
    double cpu0, cpu1;
} writer_t;

static void sample(writer_t *w)
{
    size_t b = lc_transport_get_write_buffer_size(w->t);
    if (b > w->peak_buffered)
        w->peak_buffered = b;
    int64_t h = heap_live() - w->heap_base;
    if (h > 0 && (size_t)h > w->peak_heap)
        w->peak_heap = (size_t)h;
}

static void write_done(lc_transport_t *t, int status, void *arg)
{
    (void)t;
    writer_t *w = arg;
    w->completions++;
    if (status != 0 && w->err == 0)
        w->err = status;
}

static void pump(writer_t *w)
{
    while (!w->paused && !w->closed && w->sent < w->total) {
        size_t n = w->total - w->sent < w->size ? w->total - w->sent : w->size;
        int r;
        if (w->nocopy) {
            struct iovec iov = {.iov_base = (void *)w->src, .iov_len = n};
            r = lc_transport_write_nocopy(w->t, &iov, 1, write_done, w);
        } else {
            r = lc_transport_write(w->t, w->src, n);
        }
        if (r != 0) {
            w->err = r;
            break;
        }
        w->sent += n;
        w->writes++;
        sample(w);
    }
    if (!w->closed && (w->sent >= w->total || w->err != 0)) {
        w->closed = true;
        lc_transport_close(w->t);
    }
}

static void start_cb(void *arg)
{
    writer_t *w = arg;
    w->heap_base = heap_live();
    w->cpu0 = thread_cpu_us();
    pump(w);
}

static void made(lc_transport_t *t, void *user)
{
    writer_t *w = user;
    w->t = t;
    lc_loop_call_soon(w->loop, start_cb, w, NULL);
}

static void lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    writer_t *w = user;
    w->cpu1 = thread_cpu_us();
    if (err != 0 && w->err == 0)
        w->err = err;
    lc_loop_stop(w->loop);
}

static void pause_w(lc_transport_t *t, void *user)
{
    (void)t;
    writer_t *w = user;
    w->paused = true;
    sample(w);
}

static void resume_w(lc_transport_t *t, void *user)
{
    (void)t;
    writer_t *w = user;
    w->paused = false;
    pump(w);
}

static const lc_protocol_t writer_proto = {
    .connection_made = made,
    .connection_lost = lost,
    .pause_writing = pause_w,
    .resume_writing = resume_w,
};

static int writer_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &writer_proto;
    *user = arg;
    return 0;
}

/* One run: a fresh connection, total bytes in writes of size, in one mode. */
static int run_one(lc_loop_t *loop, const config_t *cfg, const char *src, size_t size, bool nocopy,
                   result_t *res)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&sin, &len) != 0) {
        perror("write_bench: listen");
        return -1;
    }
    reader_t rd = {.cfg = cfg, .addr = sin};
    pthread_t th;
    if (pthread_create(&th, NULL, reader_main, &rd) != 0) {
        fprintf(stderr, "write_bench: pthread_create failed\n");
        return -1;
    }
    int fd = accept(ls, NULL, NULL);
    close(ls);
    if (fd < 0) {
        perror("write_bench: accept");
        pthread_join(th, NULL);
        return -1;
    }
    if (cfg->sndbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg->sndbuf, sizeof(cfg->sndbuf));
    writer_t w = {
        .loop = loop, .src = src, .size = size, .total = cfg->mib << 20, .nocopy = nocopy};
    double t0 = lc_bench_now();
    lc_future_t *fut = NULL;
    int r = lc_loop_connect_accepted_socket(loop, writer_factory, &w, fd, NULL, &fut);
    if (r == 0) {
        r = lc_loop_run_forever(loop);
        lc_future_unref(fut);
    }
    double wall = lc_bench_now() - t0;
    /* One more iteration: the transport's handle closes and its memory goes, so that the next
     * run's heap baseline does not include it. */
    lc_loop_stop(loop);
    lc_loop_run_forever(loop);
    pthread_join(th, NULL);
    if (r != 0 || w.err != 0 || rd.err != 0 || rd.got != w.total ||
        (nocopy && w.completions != w.writes)) {
        fprintf(stderr,
                "write_bench: run failed: %s (loop %d, writer %s, reader errno %d, got %zu of %zu, "
                "%zu completions of %zu writes)\n",
                nocopy ? "nocopy" : "copy", r, lc_strerror(w.err), rd.err, rd.got, w.total,
                w.completions, w.writes);
        return -1;
    }
    res->cpu_us_per_mib = (w.cpu1 - w.cpu0) / (double)cfg->mib;
    res->wall_s = wall;
    res->peak_buffered = w.peak_buffered;
    res->peak_heap = w.peak_heap;
    res->heap_known = heap_alloc_p != NULL;
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    fprintf(stderr, "usage: write_bench [--mib N] [--rounds R] [--sizes S,S,...] [--rcvbuf B] "
                    "[--sndbuf B] [--chunk C] [--sleep-us U]\n");
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_args(int argc, char **argv, config_t *cfg)
{
    *cfg = (config_t){.mib = 32,
                      .chunk = 16384,
                      .rounds = 3,
                      .rcvbuf = 65536,
                      .sndbuf = 0,
                      .sleep_us = 50,
                      .sizes = {16384, 1048576},
                      .nsizes = 2};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (v == NULL) {
            usage();
            return false;
        }
        i++;
        if (strcmp(a, "--mib") == 0 && parse_long(v, 1, 4096, &x)) {
            cfg->mib = (size_t)x;
        } else if (strcmp(a, "--rounds") == 0 && parse_long(v, 1, MAX_ROUNDS, &x)) {
            cfg->rounds = (int)x;
        } else if (strcmp(a, "--rcvbuf") == 0 && parse_long(v, 0, 1 << 28, &x)) {
            cfg->rcvbuf = (int)x;
        } else if (strcmp(a, "--sndbuf") == 0 && parse_long(v, 0, 1 << 28, &x)) {
            cfg->sndbuf = (int)x;
        } else if (strcmp(a, "--chunk") == 0 && parse_long(v, 1, 1 << 24, &x)) {
            cfg->chunk = (size_t)x;
        } else if (strcmp(a, "--sleep-us") == 0 && parse_long(v, 0, 1000000, &x)) {
            cfg->sleep_us = (int)x;
        } else if (strcmp(a, "--sizes") == 0) {
            cfg->nsizes = 0;
            char *copy = strdup(v);
            for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok != NULL;
                 tok = strtok_r(NULL, ",", &save)) {
                if (cfg->nsizes == MAX_SIZES || !parse_long(tok, 1, 64L << 20, &x)) {
                    free(copy);
                    usage();
                    return false;
                }
                cfg->sizes[cfg->nsizes++] = (size_t)x;
            }
            free(copy);
            if (cfg->nsizes == 0) {
                usage();
                return false;
            }
        } else {
            usage();
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    config_t cfg;
    if (!parse_args(argc, argv, &cfg))
        return 2;
    signal(SIGPIPE, SIG_IGN);
    heap_init();
    lc_loop_t *loop = NULL;
    if (lc_new_event_loop(&loop) != 0) {
        fprintf(stderr, "write_bench: no loop\n");
        return 1;
    }
    size_t maxsize = 0;
    for (int s = 0; s < cfg.nsizes; s++)
        maxsize = cfg.sizes[s] > maxsize ? cfg.sizes[s] : maxsize;
    char *src = malloc(maxsize);
    for (size_t i = 0; i < maxsize; i++)
        src[i] = (char)('a' + i % 26);
    printf("# write_bench: %zu MiB per run, %d rounds, reader SO_RCVBUF %d, reads of %zu bytes, "
           "%d us sleep after each; writer SO_SNDBUF %s\n",
           cfg.mib, cfg.rounds, cfg.rcvbuf, cfg.chunk, cfg.sleep_us,
           cfg.sndbuf > 0 ? "set" : "kernel default");
    static result_t res[MAX_SIZES][2][MAX_ROUNDS];
    for (int round = 0; round < cfg.rounds; round++) {
        for (int s = 0; s < cfg.nsizes; s++) {
            for (int k = 0; k < 2; k++) {
                bool nocopy = (k + round) % 2 == 1; /* alternate which mode goes first */
                result_t *r = &res[s][nocopy][round];
                if (run_one(loop, &cfg, src, cfg.sizes[s], nocopy, r) != 0)
                    return 1;
                printf("# round=%d size=%zu mode=%s cpu_us_per_mib=%.1f peak_buffered_kib=%zu "
                       "peak_heap_kib=%zu wall_s=%.3f\n",
                       round + 1, cfg.sizes[s], nocopy ? "nocopy" : "copy", r->cpu_us_per_mib,
                       r->peak_buffered / 1024, r->peak_heap / 1024, r->wall_s);
                fflush(stdout);
            }
        }
    }
    for (int s = 0; s < cfg.nsizes; s++) {
        double med[2];
        size_t pb[2] = {0, 0}, ph[2] = {0, 0};
        for (int m = 0; m < 2; m++) {
            double cpu[MAX_ROUNDS];
            double wall = 0;
            for (int round = 0; round < cfg.rounds; round++) {
                const result_t *r = &res[s][m][round];
                cpu[round] = r->cpu_us_per_mib;
                wall += r->wall_s;
                pb[m] = r->peak_buffered > pb[m] ? r->peak_buffered : pb[m];
                ph[m] = r->peak_heap > ph[m] ? r->peak_heap : ph[m];
            }
            qsort(cpu, (size_t)cfg.rounds, sizeof(double), cmp_double);
            med[m] = cpu[cfg.rounds / 2];
            char heap[32];
            if (heap_alloc_p != NULL)
                snprintf(heap, sizeof(heap), "%zu", ph[m] / 1024);
            else
                snprintf(heap, sizeof(heap), "NA");
            printf("bench=write size=%zu mode=%s cpu_us_per_mib=%.1f peak_buffered_kib=%zu "
                   "peak_heap_kib=%s wall_s=%.3f rounds=%d mib=%zu\n",
                   cfg.sizes[s], m ? "nocopy" : "copy", med[m], pb[m] / 1024, heap,
                   wall / cfg.rounds, cfg.rounds, cfg.mib);
        }
        char heap_ratio[32];
        if (heap_alloc_p != NULL && ph[0] > 0)
            snprintf(heap_ratio, sizeof(heap_ratio), "%.3f", (double)ph[1] / (double)ph[0]);
        else
            snprintf(heap_ratio, sizeof(heap_ratio), "NA");
        printf("bench=write size=%zu ratio=nocopy/copy cpu=%.2f peak_buffered=%.2f "
               "peak_heap=%s\n",
               cfg.sizes[s], med[0] > 0 ? med[1] / med[0] : 0.0,
               pb[0] > 0 ? (double)pb[1] / (double)pb[0] : 0.0, heap_ratio);
    }
    free(src);
    lc_loop_free(loop);
    return 0;
}
