/* udp_bench: UDP echo throughput and server CPU per datagram, loopcore beside a raw
 * recvmmsg/sendmmsg floor, asyncio and uvloop (issue 16), all in one invocation.
 *
 *   bazel run -c opt //bench:udp_bench -- [--duration SECONDS] [--warmup SECONDS]
 *       [--connections N] [--pipeline N] [--loops N] [--sizes 64,1200] [--repeat R]
 *
 * For each size, each server is started as a child process on 127.0.0.1 (a port of its own
 * choosing, read from its "listening on HOST:PORT" line): bench/udp_echo_server (--loops N,
 * default 1; --offload off: no GSO / GRO, like the floor), bench/udp_floor (--threads N) and
 * bench/udp_echo.py on asyncio and on uvloop
 * (/usr/bin/python3). The load is lcbench's udp mode, run in this process (lcb_run): a closed
 * loop of --connections connected UDP sockets (default 32), each with --pipeline datagrams
 * outstanding (default 4), a 200 ms loss timeout, one load loop per server loop. Throughput is
 * the datagrams echoed per second in the measured window; the server's CPU per datagram is its
 * user + system time (/proc/PID/stat, over warm-up and window) divided by the datagrams echoed
 * over the same time. Prints, per size, the line other tools read:
 *
 *   bench=udp_echo_64 ours=<pps> floor=<pps> asyncio=<pps> uvloop=<pps> ours_cpu_us=<v>
 *       floor_cpu_us=<v> unit=pps ratio_vs_floor=<x> cpu_ratio_vs_floor=<x> ratio_vs_uvloop=<x>
 *
 * (one line). With --repeat R (default 1) ours and the floor are measured R times, alternating,
 * each figure is the median of its R runs, and the line ends with runs=R and
 * cpu_ratio_vs_floor_best=<x> (ours' lowest CPU per datagram over the floor's lowest: this VM's
 * neighbours move single runs by 5-10 %). Then GSO / GRO's gain apart: our server with offload on,
 * loaded with each pipeline sent as one UDP GSO batch (lcbench --gso: its sockets use GSO and GRO
 * too; the server's GRO receives a batch as one super-packet and splits it back, and its answers go
 * back as one):
 *
 *   bench=udp_echo_64_gso ours_gso=<pps> ours=<pps> ours_gso_cpu_us=<v> ours_cpu_us=<v> unit=pps
 *       ratio_gso_vs_plain=<x> cpu_ratio_gso_vs_plain=<x>
 *
 * and a detail line per server on stderr. A peer that cannot run (no python3, no
 * uvloop) reports 0 and its ratio "n/a". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/lcbench/lcbench.h"
#include "bench/support/runfiles.h"

typedef struct {
    double pps;
    double cpu_us; /* server CPU per echoed datagram, microseconds */
    double loss;
    bool ok;
} figure_t;

static double server_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name (which may hold spaces, so start after its ')'): state is
     * field 3; utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Starts argv as a child with its stdout on a pipe and reads its "listening on HOST:PORT" line
 * (within 30 s). Returns the port, or -1 (the child is then gone). */
static int start_server(char *const argv[], pid_t *pid)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    *pid = fork();
    if (*pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    if (*pid < 0) {
        close(p[0]);
        return -1;
    }
    FILE *f = fdopen(p[0], "r");
    char line[256] = {0};
    int port = -1;
    alarm(30); /* a server that never says it listens */
    if (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char *colon = strrchr(line, ':');
        if (strncmp(line, "listening on ", 13) == 0 && colon != NULL)
            port = atoi(colon + 1);
    }
    alarm(0);
    if (f != NULL)
        fclose(f); /* the child's later output goes to a closed pipe: it prints nothing more */
    else
        close(p[0]);
    if (port <= 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        return -1;
    }
    return port;
}

static void stop_server(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

typedef struct {
    double duration, warmup;
    unsigned connections, pipeline, loops, repeat;
} opts_t;

enum { MAX_REPEAT = 31 };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n figures (pps and CPU each on its own); not ok if any run was not. */
static figure_t median(const figure_t *f, unsigned n)
{
    double pps[MAX_REPEAT], cpu[MAX_REPEAT];
    figure_t m = {.ok = true};
    for (unsigned i = 0; i < n; i++) {
        pps[i] = f[i].pps;
        cpu[i] = f[i].cpu_us;
        m.ok = m.ok && f[i].ok;
    }
    qsort(pps, n, sizeof(double), cmp_double);
    qsort(cpu, n, sizeof(double), cmp_double);
    m.pps = n % 2 ? pps[n / 2] : (pps[n / 2 - 1] + pps[n / 2]) / 2;
    m.cpu_us = n % 2 ? cpu[n / 2] : (cpu[n / 2 - 1] + cpu[n / 2]) / 2;
    return m;
}

/* The lowest CPU per datagram of n runs (0 if none measured). */
static double best_cpu(const figure_t *f, unsigned n)
{
    double b = 0;
    for (unsigned i = 0; i < n; i++)
        if (f[i].cpu_us > 0 && (b == 0 || f[i].cpu_us < b))
            b = f[i].cpu_us;
    return b;
}

static figure_t measure(const char *who, char *const argv[], size_t size, const opts_t *o,
                        unsigned load_threads, bool gso)
{
    figure_t fig = {0};
    pid_t pid;
    int port = start_server(argv, &pid);
    if (port < 0) {
        fprintf(stderr, "udp_bench: %s: the server did not start\n", who);
        return fig;
    }
    char url[64], sizebuf[16], conns[16], threads[16], pipe_s[16], dur[32], warm[32];
    snprintf(url, sizeof(url), "udp://127.0.0.1:%d", port);
    snprintf(sizebuf, sizeof(sizebuf), "%zu", size);
    snprintf(conns, sizeof(conns), "%u", o->connections);
    snprintf(threads, sizeof(threads), "%u", load_threads);
    snprintf(pipe_s, sizeof(pipe_s), "%u", o->pipeline);
    snprintf(dur, sizeof(dur), "%.3f", o->duration);
    snprintf(warm, sizeof(warm), "%.3f", o->warmup);
    /* The URL goes last; --gso before it when asked. */
    char *largv[] = {"lcbench",
                     "-t",
                     threads,
                     "-c",
                     conns,
                     "-d",
                     dur,
                     "--warmup",
                     warm,
                     "--pipeline",
                     pipe_s,
                     "--size",
                     sizebuf,
                     "-T",
                     "200ms",
                     "--no-progress",
                     gso ? "--gso" : url,
                     gso ? url : NULL,
                     NULL};
    int largc = gso ? 18 : 17;
    lcb_config_t cfg;
    char err[256] = "";
    if (lcb_config_parse(&cfg, largc, largv, err, sizeof(err)) != LCB_PARSE_OK) {
        fprintf(stderr, "udp_bench: %s\n", err);
        stop_server(pid);
        return fig;
    }
    double cpu0 = server_cpu_seconds(pid);
    lcb_result_t res;
    memset(&res, 0, sizeof(res));
    int r = lcb_run(&cfg, &res, NULL, err, sizeof(err));
    double cpu1 = server_cpu_seconds(pid);
    stop_server(pid);
    if (r != 0) {
        fprintf(stderr, "udp_bench: %s: %s\n", who, err);
        return fig;
    }
    fig.ok = res.requests > 0;
    fig.pps = res.elapsed > 0 ? (double)res.requests / res.elapsed : 0;
    fig.cpu_us = res.requests_total > 0 && cpu0 >= 0 && cpu1 >= cpu0
                     ? (cpu1 - cpu0) * 1e6 / (double)res.requests_total
                     : 0;
    uint64_t settled = res.requests + res.errors.lost;
    fig.loss = settled > 0 ? (double)res.errors.lost / (double)settled : 0;
    fprintf(stderr,
            "udp_bench: size %zu %-8s %10.0f pps, server CPU %.3f us/datagram, loss %.4f%%, "
            "p50 %.1f us, p99 %.1f us, mismatches %llu\n",
            size, who, fig.pps, fig.cpu_us, fig.loss * 100,
            (double)lcb_hdr_value_at_percentile(&res.latency, 50) / 1000.0,
            (double)lcb_hdr_value_at_percentile(&res.latency, 99) / 1000.0,
            (unsigned long long)res.errors.mismatch);
    if (res.errors.mismatch > 0)
        fig.ok = false; /* a corrupted echo makes the figure worthless */
    lcb_result_close(&res);
    return fig;
}

static void ratio(char *buf, size_t len, double a, double b)
{
    if (a > 0 && b > 0)
        snprintf(buf, len, "%.3f", a / b);
    else
        snprintf(buf, len, "n/a");
}

int main(int argc, char **argv)
{
    opts_t o = {
        .duration = 5, .warmup = 1, .connections = 32, .pipeline = 4, .loops = 1, .repeat = 1};
    const char *sizes = "64,1200";
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--duration") == 0)
            o.duration = atof(v);
        else if (strcmp(k, "--warmup") == 0)
            o.warmup = atof(v);
        else if (strcmp(k, "--connections") == 0)
            o.connections = (unsigned)atoi(v);
        else if (strcmp(k, "--pipeline") == 0)
            o.pipeline = (unsigned)atoi(v);
        else if (strcmp(k, "--loops") == 0)
            o.loops = (unsigned)atoi(v);
        else if (strcmp(k, "--sizes") == 0)
            sizes = v;
        else if (strcmp(k, "--repeat") == 0)
            o.repeat = (unsigned)atoi(v);
        else
            o.loops = 0;
    }
    if ((argc - 1) % 2 != 0 || o.loops < 1 || o.loops > 256 || !(o.duration > 0) ||
        !(o.warmup >= 0) || o.connections < o.loops || o.pipeline < 1 || o.repeat < 1 ||
        o.repeat > MAX_REPEAT) {
        fprintf(stderr, "usage: udp_bench [--duration S] [--warmup S] [--connections N] "
                        "[--pipeline N] [--loops N] [--sizes 64,1200] [--repeat 1-31]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char *ours = lc_bench_find_runfile(argv[0], "bench/udp_echo_server");
    char *floor_bin = lc_bench_find_runfile(argv[0], "bench/udp_floor");
    char *script = lc_bench_find_runfile(argv[0], "bench/udp_echo.py");
    if (ours == NULL || floor_bin == NULL) {
        fprintf(stderr, "udp_bench: run it with bazel run (udp_echo_server and udp_floor are "
                        "its runfiles)\n");
        return 1;
    }
    char loops[16];
    snprintf(loops, sizeof(loops), "%u", o.loops);
    /* Plain: every datagram alone, as the floor's; with offload: UDP GSO / GRO (the GSO line). */
    char *ours_argv[] = {ours, "--loops", loops, "--port", "0", "--offload", "off", NULL};
    char *ours_gso_argv[] = {ours, "--loops", loops, "--port", "0", "--offload", "on", NULL};
    char *floor_argv[] = {floor_bin, "--threads", loops, "--port", "0", NULL};
    char py[] = "/usr/bin/python3";
    char *asyncio_argv[] = {py, script, "--loop", "asyncio", "--port", "0", NULL};
    char *uvloop_argv[] = {py, script, "--loop", "uvloop", "--port", "0", NULL};
    bool have_py = script != NULL && access(py, X_OK) == 0;
    int status = 0;
    char *list = strdup(sizes);
    for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
        size_t size = (size_t)atol(tok);
        if (size < 8 || size > 65507) {
            fprintf(stderr, "udp_bench: size %s: 8 to 65507\n", tok);
            status = 2;
            break;
        }
        figure_t runs_ours[MAX_REPEAT], runs_floor[MAX_REPEAT];
        for (unsigned k = 0; k < o.repeat; k++) {
            runs_ours[k] = measure("loopcore", ours_argv, size, &o, o.loops, false);
            runs_floor[k] = measure("floor", floor_argv, size, &o, o.loops, false);
        }
        figure_t f_ours = median(runs_ours, o.repeat);
        figure_t f_floor = median(runs_floor, o.repeat);
        figure_t f_asyncio =
            have_py ? measure("asyncio", asyncio_argv, size, &o, 1, false) : (figure_t){0};
        figure_t f_uvloop =
            have_py ? measure("uvloop", uvloop_argv, size, &o, 1, false) : (figure_t){0};
        /* GSO / GRO's gain, apart: the load sends each pipeline as one GSO batch, which our
         * server receives with GRO as one super-packet and splits back. */
        figure_t f_gso = measure("loopcore+gso", ours_gso_argv, size, &o, o.loops, true);
        char r_floor[16], r_cpu[16], r_uv[16];
        ratio(r_floor, sizeof(r_floor), f_ours.pps, f_floor.pps);
        ratio(r_cpu, sizeof(r_cpu), f_ours.cpu_us, f_floor.cpu_us);
        ratio(r_uv, sizeof(r_uv), f_ours.pps, f_uvloop.pps);
        printf("bench=udp_echo_%zu ours=%.0f floor=%.0f asyncio=%.0f uvloop=%.0f "
               "ours_cpu_us=%.3f floor_cpu_us=%.3f unit=pps ratio_vs_floor=%s "
               "cpu_ratio_vs_floor=%s ratio_vs_uvloop=%s",
               size, f_ours.pps, f_floor.pps, f_asyncio.pps, f_uvloop.pps, f_ours.cpu_us,
               f_floor.cpu_us, r_floor, r_cpu, r_uv);
        if (o.repeat > 1) {
            char r_best[16];
            ratio(r_best, sizeof(r_best), best_cpu(runs_ours, o.repeat),
                  best_cpu(runs_floor, o.repeat));
            printf(" runs=%u cpu_ratio_vs_floor_best=%s", o.repeat, r_best);
        }
        printf("\n");
        char r_gso[16], r_gso_cpu[16];
        ratio(r_gso, sizeof(r_gso), f_gso.pps, f_ours.pps);
        ratio(r_gso_cpu, sizeof(r_gso_cpu), f_gso.cpu_us, f_ours.cpu_us);
        printf("bench=udp_echo_%zu_gso ours_gso=%.0f ours=%.0f ours_gso_cpu_us=%.3f "
               "ours_cpu_us=%.3f unit=pps ratio_gso_vs_plain=%s cpu_ratio_gso_vs_plain=%s\n",
               size, f_gso.pps, f_ours.pps, f_gso.cpu_us, f_ours.cpu_us, r_gso, r_gso_cpu);
        fflush(stdout);
        if (!f_ours.ok || !f_floor.ok || !f_gso.ok)
            status = 1;
    }
    free(list);
    free(ours);
    free(floor_bin);
    free(script);
    return status;
}
