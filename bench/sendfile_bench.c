/* sendfile_bench (issue 15): static files over HTTP, http_server --static (lc_loop_sendfile)
 * against nginx with `sendfile on`, same files, same client, same run; and http_server
 * --static-copy (read + write) beside them.
 *
 *   bazel run -c opt //bench:sendfile_bench -- [--duration SECONDS] [--rounds N]
 *
 * It writes a 1 MiB and a 64 MiB file of random bytes into a temporary directory, starts nginx
 * (one worker, sendfile on, its own config, pid and temp paths, in the foreground; as
 * /work/shared/peers/run.sh does) and http_server --loops 1 on it, and for each size loads each
 * server in turn with lcbench (keep-alive GETs of the file; 8 connections for 1 MiB, 2 for 64
 * MiB; one thread), rounds interleaved. Throughput is the response bytes lcbench read per second
 * (GiB/s); the server's CPU is utime + stime from /proc/PID/stat (nginx: master and workers)
 * over the run, per GiB sent. Prints, with the mean of the rounds:
 *   bench=sendfile_1MiB ours=<GiB/s> nginx=<GiB/s> ours_cpu=<s/GiB> nginx_cpu=<s/GiB>
 *     unit=GiB_per_s ratio_vs_nginx=<x> cpu_ratio_vs_nginx=<x>      (one line)
 * and the same for sendfile_64MiB, then sendfile_copy_1MiB / sendfile_copy_64MiB, where "ours"
 * is the copying path. Exits 1 if a server or the client fails. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/support/runfiles.h"

#define GiB (1024.0 * 1024.0 * 1024.0)

static char tmpdir[256];

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (s < 0 || bind(s, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(s, (struct sockaddr *)&sin, &len) != 0) {
        perror("sendfile_bench: free port");
        exit(1);
    }
    close(s);
    return ntohs(sin.sin_port);
}

static bool accepts(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(s, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    close(s);
    return ok;
}

static pid_t start(char *const argv[], int port, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setpgid(0, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (accepts(port))
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(50000);
    }
    fprintf(stderr, "sendfile_bench: %s did not start (see %s)\n", argv[0], log);
    kill(-pid, SIGKILL);
    return -1;
}

static void stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(-pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(50000);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* utime + stime (clock ticks) of pid and, with children, of its direct children (nginx's
 * workers), from /proc/PID/stat. */
static long long proc_ticks(pid_t pid, pid_t *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    /* After ") ": state(3) ppid(4) ... utime(14) stime(15). */
    int field = 2;
    long long ut = 0, st = 0;
    for (char *tok = strtok(p + 2, " "); tok != NULL; tok = strtok(NULL, " ")) {
        field++;
        if (field == 4 && ppid != NULL)
            *ppid = (pid_t)atoi(tok);
        if (field == 14)
            ut = atoll(tok);
        if (field == 15) {
            st = atoll(tok);
            break;
        }
    }
    return ut + st;
}

static double cpu_seconds(pid_t pid)
{
    long long total = proc_ticks(pid, NULL);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        int child = atoi(e->d_name);
        pid_t pp = 0;
        if (child <= 0 || child == pid)
            continue;
        long long t = proc_ticks(child, &pp);
        if (t >= 0 && pp == pid)
            total += t;
    }
    if (d != NULL)
        closedir(d);
    return (double)total / (double)sysconf(_SC_CLK_TCK);
}

typedef struct {
    double gibps, cpu_per_gib;
} result_t;

/* One lcbench run against port: the bytes per second and the server's CPU per GiB. */
static bool measure(const char *lcbench, pid_t server, int port, const char *file, int conns,
                    double duration, result_t *out)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "%s -t1 -c%d -d%.3fs --timeout 30s --json http://127.0.0.1:%d/file/%s", lcbench, conns,
             duration, port, file);
    double c0 = cpu_seconds(server);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return false;
    static char json[65536];
    size_t n = fread(json, 1, sizeof(json) - 1, p);
    json[n] = '\0';
    int rc = pclose(p);
    double c1 = cpu_seconds(server);
    const char *b = strstr(json, "\"bytes\":"), *e = strstr(json, "\"elapsed_s\":");
    /* Throughput counts the bytes read, whole responses or not: a short run (the test's) may end
     * inside the first 64 MiB body, which lcbench then reports as no request (rc 1), but any
     * error (a failed connection, a non-2xx status) fails the run. */
    const char *et = strstr(json, "\"errors\":{\"total\":");
    const char *s4 = strstr(json, "\"4xx\":"), *s5 = strstr(json, "\"5xx\":");
    if ((rc != 0 && rc != 256) || b == NULL || e == NULL || et == NULL || s4 == NULL ||
        s5 == NULL || atoll(et + 18) != 0 || atoll(s4 + 6) != 0 || atoll(s5 + 6) != 0) {
        fprintf(stderr, "sendfile_bench: lcbench failed (rc %d): %s\n", rc, json);
        return false;
    }
    double bytes = atof(b + 8), secs = atof(e + 12);
    if (bytes <= 0 || secs <= 0)
        return false;
    out->gibps = bytes / GiB / secs;
    out->cpu_per_gib = (c1 - c0) / (bytes / GiB);
    return true;
}

static void make_file(const char *name, size_t size)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    int in = open("/dev/urandom", O_RDONLY), out = open(path, O_WRONLY | O_CREAT, 0644);
    static char buf[1 << 20];
    for (size_t done = 0; done < size;) {
        size_t want = size - done < sizeof(buf) ? size - done : sizeof(buf);
        ssize_t r = read(in, buf, want);
        if (r <= 0 || write(out, buf, (size_t)r) != r) {
            perror("sendfile_bench: making the files");
            exit(1);
        }
        done += (size_t)r;
    }
    close(in);
    close(out);
}

static void nginx_conf(int port)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/nginx/nginx.conf", tmpdir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror("sendfile_bench: nginx.conf");
        exit(1);
    }
    fprintf(f,
            "%sworker_processes 1;\ndaemon off;\npid %s/nginx/nginx.pid;\n"
            "error_log %s/nginx/error.log warn;\nevents { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  keepalive_requests 100000000;\n  sendfile on;\n"
            "  client_body_temp_path %s/nginx/tmp/body; proxy_temp_path %s/nginx/tmp/proxy;\n"
            "  fastcgi_temp_path %s/nginx/tmp/fastcgi; uwsgi_temp_path %s/nginx/tmp/uwsgi;\n"
            "  scgi_temp_path %s/nginx/tmp/scgi;\n"
            "  server {\n    listen 127.0.0.1:%d reuseport backlog=4096;\n"
            "    location /file/ { alias %s/files/; default_type application/octet-stream; }\n"
            "  }\n}\n",
            /* As root, nginx's workers would run as nobody, who cannot read a private temporary
             * directory: keep them root, as the benchmark's own server is. */
            geteuid() == 0 ? "user root;\n" : "", tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir,
            tmpdir, port, tmpdir);
    fclose(f);
}

static pid_t servers[3];
static char *server_bin, *lcbench;

static void cleanup(void)
{
    free(server_bin);
    free(lcbench);
    for (int i = 0; i < 3; i++)
        stop(servers[i]);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (tmpdir[0] != '\0' && system(cmd) != 0)
        fprintf(stderr, "sendfile_bench: could not remove %s\n", tmpdir);
}

int main(int argc, char **argv)
{
    double duration = 5;
    int rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc)
            duration = atof(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--duration SECONDS] [--rounds N]\n", argv[0]);
            return 2;
        }
    }
    if (!(duration > 0) || rounds < 1)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    server_bin = lc_bench_find_runfile(argv[0], "bench/http_server");
    lcbench = lc_bench_find_runfile(argv[0], "bench/lcbench/lcbench");
    if (server_bin == NULL || lcbench == NULL) {
        fprintf(stderr, "sendfile_bench: http_server or lcbench not found in the runfiles\n");
        free(server_bin);
        free(lcbench);
        return 1;
    }
    const char *base = getenv("TEST_TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/lc_sendfile_bench_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("sendfile_bench: mkdtemp");
        return 1;
    }
    atexit(cleanup);
    char path[512], files[512], log[512];
    snprintf(files, sizeof(files), "%s/files", tmpdir);
    snprintf(path, sizeof(path), "%s/nginx/tmp", tmpdir);
    char mk[1100];
    snprintf(mk, sizeof(mk), "mkdir -p '%s' '%s'", files, path);
    if (system(mk) != 0)
        return 1;
    make_file("files/1MiB.bin", 1u << 20);
    make_file("files/64MiB.bin", 64u << 20);

    int ports[3] = {free_port(), free_port(), free_port()};
    nginx_conf(ports[0]);
    char conf[512], prefix[512], errlog[512], p1[16], p2[16];
    snprintf(conf, sizeof(conf), "%s/nginx/nginx.conf", tmpdir);
    snprintf(prefix, sizeof(prefix), "%s/nginx", tmpdir);
    snprintf(errlog, sizeof(errlog), "%s/nginx/error.log", tmpdir);
    /* Bazel's test PATH has no sbin: nginx is looked for there too ($NGINX overrides). */
    char *nginx = getenv("NGINX");
    if (nginx == NULL)
        nginx = access("/usr/sbin/nginx", X_OK) == 0         ? "/usr/sbin/nginx"
                : access("/usr/local/sbin/nginx", X_OK) == 0 ? "/usr/local/sbin/nginx"
                                                             : "nginx";
    char *nginx_argv[] = {nginx, "-p", prefix, "-c", conf, "-e", errlog, NULL};
    snprintf(log, sizeof(log), "%s/nginx.log", tmpdir);
    servers[0] = start(nginx_argv, ports[0], log);
    snprintf(p1, sizeof(p1), "%d", ports[1]);
    char *ours_argv[] = {server_bin, "--loops", "1",       "--port", p1,
                         "--static", files,     "--quiet", NULL};
    snprintf(log, sizeof(log), "%s/ours.log", tmpdir);
    servers[1] = start(ours_argv, ports[1], log);
    snprintf(p2, sizeof(p2), "%d", ports[2]);
    char *copy_argv[] = {server_bin,      "--loops", "1",       "--port", p2,
                         "--static-copy", files,     "--quiet", NULL};
    snprintf(log, sizeof(log), "%s/copy.log", tmpdir);
    servers[2] = start(copy_argv, ports[2], log);
    if (servers[0] < 0 || servers[1] < 0 || servers[2] < 0)
        return 1;

    static const struct {
        const char *name, *file;
        int conns;
    } sizes[] = {{"1MiB", "1MiB.bin", 8}, {"64MiB", "64MiB.bin", 2}};
    result_t sum[2][3] = {{{0}}};
    for (int s = 0; s < 2; s++) {
        for (int r = 0; r < rounds; r++) {
            for (int k = 0; k < 3; k++) { /* nginx, ours, copy: interleaved */
                int idx = (k + r) % 3;
                result_t res;
                if (!measure(lcbench, servers[idx], ports[idx], sizes[s].file, sizes[s].conns,
                             duration, &res))
                    return 1;
                sum[s][idx].gibps += res.gibps / rounds;
                sum[s][idx].cpu_per_gib += res.cpu_per_gib / rounds;
            }
        }
    }
    for (int copy = 0; copy < 2; copy++) {
        for (int s = 0; s < 2; s++) {
            result_t ng = sum[s][0], ours = sum[s][copy ? 2 : 1];
            printf("bench=sendfile_%s%s ours=%.3f nginx=%.3f ours_cpu=%.4f nginx_cpu=%.4f "
                   "unit=GiB_per_s ratio_vs_nginx=%.3f cpu_ratio_vs_nginx=%.3f\n",
                   copy ? "copy_" : "", sizes[s].name, ours.gibps, ng.gibps, ours.cpu_per_gib,
                   ng.cpu_per_gib, ng.gibps > 0 ? ours.gibps / ng.gibps : 0,
                   ng.cpu_per_gib > 0 ? ours.cpu_per_gib / ng.cpu_per_gib : 0);
        }
    }
    fflush(stdout);
    return 0;
}
