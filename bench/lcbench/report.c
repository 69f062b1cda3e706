/* lcbench's output: wrk's text report (same lines, same unit formatting, so wrk users and their
 * scripts feel at home) followed by loopcore's extra lines; the JSON object; the HdrHistogram
 * percentile file; and the program's main. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/lcbench/lcbench.h"
#include "loopcore/errno.h"

/* ---- wrk's unit formatting (wrk's units.c) --------------------------------------------------- */

typedef struct {
    int scale;
    const char *base;
    const char *units[7];
} units_t;

static const char *mode_name(const lcb_config_t *cfg)
{
    return cfg->mode == LCB_MODE_ECHO ? "echo" : cfg->mode == LCB_MODE_UDP ? "udp" : "http";
}

static const units_t time_units_us = {1000, "us", {"ms", "s", NULL}};
static const units_t time_units_s = {60, "s", {"m", "h", NULL}};
static const units_t binary_units = {1024, "", {"K", "M", "G", "T", "P", NULL}};
static const units_t metric_units = {1000, "", {"k", "M", "G", "T", "P", NULL}};

static void format_units(char *buf, size_t len, double n, const units_t *m, int p)
{
    double amt = n, scale = m->scale * 0.85;
    const char *unit = m->base;
    for (int i = 0; m->units[i + 1] != NULL && amt >= scale; i++) {
        amt /= m->scale;
        unit = m->units[i];
    }
    snprintf(buf, len, "%.*f%s", p, amt, unit);
}

/* n in microseconds. */
static void format_time_us(char *buf, size_t len, double n)
{
    if (n >= 1000000.0)
        format_units(buf, len, n / 1000000.0, &time_units_s, 2);
    else
        format_units(buf, len, n, &time_units_us, 2);
}

static void format_metric(char *buf, size_t len, double n)
{
    format_units(buf, len, n, &metric_units, 2);
}

static void format_binary(char *buf, size_t len, double n)
{
    format_units(buf, len, n, &binary_units, 2);
}

typedef void (*format_fn)(char *buf, size_t len, double n);

/* wrk's print_units: right-aligned in width, units padded to two characters. */
static void print_units(FILE *out, double n, format_fn fmt, int width)
{
    char msg[64];
    fmt(msg, sizeof(msg), n);
    int len = (int)strlen(msg), pad = 2;
    if (len >= 1 && isalpha((unsigned char)msg[len - 1]))
        pad--;
    if (len >= 2 && isalpha((unsigned char)msg[len - 2]))
        pad--;
    width -= pad;
    fprintf(out, "%*.*s%.*s", width, width, msg, pad, "  ");
}

static void print_stats(FILE *out, const char *name, double mean, double stdev, double max,
                        double within, format_fn fmt)
{
    fprintf(out, "    %-10s", name);
    print_units(out, mean, fmt, 8);
    print_units(out, stdev, fmt, 10);
    print_units(out, max, fmt, 9);
    fprintf(out, "%8.2f%%\n", within * 100.0);
}

static void format_duration(char *buf, size_t len, double s)
{
    if (s < 1.0)
        snprintf(buf, len, "%.0fms", s * 1000.0);
    else if (s != (double)(long long)s)
        snprintf(buf, len, "%.1fs", s);
    else
        format_units(buf, len, s, &time_units_s, 0);
}

/* ---- Reports --------------------------------------------------------------------------------- */

static const double report_percentiles[] = {50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0};

void lcb_report_header(FILE *out, const lcb_config_t *cfg)
{
    char d[32];
    format_duration(d, sizeof(d), cfg->duration);
    fprintf(out, "Running %s test @ %s\n", d, cfg->url);
    fprintf(out, "  %u threads and %u connections\n", cfg->threads, cfg->connections);
    fflush(out);
}

static double us(int64_t ns) { return (double)ns / 1000.0; }

void lcb_report_text(FILE *out, const lcb_config_t *cfg, const lcb_result_t *res)
{
    const lcb_hdr_t *h = &res->latency;
    double mean = lcb_hdr_mean(h), sd = lcb_hdr_stddev(h);
    fprintf(out, "  Thread Stats%6s%11s%8s%12s\n", "Avg", "Stdev", "Max", "+/- Stdev");
    print_stats(out, "Latency", mean / 1000.0, sd / 1000.0, us(lcb_hdr_max(h)),
                lcb_hdr_fraction_within(h, mean - sd, mean + sd), format_time_us);
    print_stats(out, "Req/Sec", res->rps_mean, res->rps_stdev, res->rps_max, res->rps_within,
                format_metric);
    if (cfg->latency) {
        fprintf(out, "  Latency Distribution\n");
        for (size_t i = 0; i < sizeof(report_percentiles) / sizeof(report_percentiles[0]); i++) {
            char label[16];
            snprintf(label, sizeof(label), "%g%%", report_percentiles[i]);
            fprintf(out, "%8s", label);
            print_units(out, us(lcb_hdr_value_at_percentile(h, report_percentiles[i])),
                        format_time_us, 10);
            fprintf(out, "\n");
        }
    }
    char elapsed[32], bytes[32];
    format_time_us(elapsed, sizeof(elapsed), res->elapsed * 1e6);
    format_binary(bytes, sizeof(bytes), (double)res->bytes);
    fprintf(out, "  %llu %s in %s, %sB read\n", (unsigned long long)res->requests,
            cfg->mode == LCB_MODE_HTTP ? "requests" : "messages", elapsed, bytes);
    const lcb_errors_t *e = &res->errors;
    if (e->connect || e->read || e->write || e->timeout)
        fprintf(out, "  Socket errors: connect %llu, read %llu, write %llu, timeout %llu\n",
                (unsigned long long)e->connect, (unsigned long long)e->read,
                (unsigned long long)e->write, (unsigned long long)e->timeout);
    if (res->status[4] + res->status[5] > 0)
        fprintf(out, "  Non-2xx or 3xx responses: %llu\n",
                (unsigned long long)(res->status[4] + res->status[5]));
    double secs = res->elapsed > 0 ? res->elapsed : 1.0;
    char transfer[32];
    format_binary(transfer, sizeof(transfer), (double)res->bytes / secs);
    fprintf(out, "Requests/sec: %9.2f\n", (double)res->requests / secs);
    if (cfg->handshake)
        fprintf(out,
                "Handshakes/sec: %9.2f (a new connection and a full TLS handshake per "
                "request; failed ones are connect errors)\n",
                (double)res->requests / secs);
    fprintf(out, "Transfer/sec: %10sB\n", transfer);

    /* loopcore's extras. */
    fprintf(out, "lcbench: %s, %s", mode_name(cfg), cfg->rate > 0 ? "open loop" : "closed loop");
    if (cfg->rate > 0)
        fprintf(out, " at %.0f req/s (latency from intended send times)", cfg->rate);
    if (cfg->mode != LCB_MODE_HTTP)
        fprintf(out, ", %zu-byte messages", cfg->size);
    if (cfg->pipeline > 1)
        fprintf(out, ", pipeline %u", cfg->pipeline);
    if (cfg->warmup > 0)
        fprintf(out, ", %.3gs warm-up not counted", cfg->warmup);
    if (cfg->handshake)
        fprintf(out, ", a full handshake per request");
    if (cfg->gso)
        fprintf(out, ", batches sent with UDP GSO");
    if (res->interrupted)
        fprintf(out, ", interrupted");
    fprintf(out, "\n");
    static const struct {
        const char *name;
        double p;
    } pcts[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}};
    fprintf(out, "  Latency");
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        char v[32];
        format_time_us(v, sizeof(v), us(lcb_hdr_value_at_percentile(h, pcts[i].p)));
        fprintf(out, " %s %s,", pcts[i].name, v);
    }
    char mx[32];
    format_time_us(mx, sizeof(mx), us(lcb_hdr_max(h)));
    fprintf(out, " max %s\n", mx);
    if (cfg->mode == LCB_MODE_HTTP)
        fprintf(out, "  Status: 1xx %llu, 2xx %llu, 3xx %llu, 4xx %llu, 5xx %llu, other %llu\n",
                (unsigned long long)res->status[1], (unsigned long long)res->status[2],
                (unsigned long long)res->status[3], (unsigned long long)res->status[4],
                (unsigned long long)res->status[5], (unsigned long long)res->status[0]);
    fprintf(out,
            "  Errors: %llu (connect %llu, read %llu, write %llu, timeout %llu, 4xx %llu, "
            "5xx %llu, mismatch %llu), ratio %.4f%% (limit %.4f%%)\n",
            (unsigned long long)lcb_result_errors(res), (unsigned long long)e->connect,
            (unsigned long long)e->read, (unsigned long long)e->write,
            (unsigned long long)e->timeout, (unsigned long long)res->status[4],
            (unsigned long long)res->status[5], (unsigned long long)e->mismatch,
            lcb_result_error_ratio(res) * 100.0, cfg->max_errors * 100.0);
    if (cfg->mode == LCB_MODE_UDP) {
        uint64_t lost = e->lost, answered = res->requests;
        fprintf(out,
                "  Datagrams: %llu sent, %llu echoed, %llu lost (%.4f%% loss of those "
                "settled in the window)\n",
                (unsigned long long)res->datagrams_sent, (unsigned long long)answered,
                (unsigned long long)lost,
                answered + lost > 0 ? 100.0 * (double)lost / (double)(answered + lost) : 0.0);
    }
    if (res->backlog > 0)
        fprintf(out,
                "  Backlog: %llu requests due in the window were not answered by its end "
                "(in no percentile)\n",
                (unsigned long long)res->backlog);
    if (res->connect_error != 0)
        fprintf(out, "  First connect error: %s (%s)\n", lc_err_name(res->connect_error),
                lc_strerror(res->connect_error));
    double cpu = res->cpu_user + res->cpu_sys;
    fprintf(out,
            "  lcbench CPU: %.2fs user, %.2fs sys, %.3f us/request over %llu requests "
            "(whole run)\n",
            res->cpu_user, res->cpu_sys,
            res->requests_total > 0 ? cpu * 1e6 / (double)res->requests_total : 0.0,
            (unsigned long long)res->requests_total);
    if (lcb_exit_code(cfg, res) != 0)
        fprintf(out, "lcbench: FAILED: %s\n",
                res->requests == 0 ? "no response completed"
                                   : "the error ratio is above --max-errors");
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

void lcb_report_json(FILE *out, const lcb_config_t *cfg, const lcb_result_t *res)
{
    const lcb_hdr_t *h = &res->latency;
    const lcb_errors_t *e = &res->errors;
    double secs = res->elapsed > 0 ? res->elapsed : 1.0;
    fprintf(out, "{\"url\":");
    json_str(out, cfg->url);
    fprintf(out,
            ",\"mode\":\"%s\",\"threads\":%u,\"connections\":%u,\"duration_s\":%.6f,"
            "\"warmup_s\":%.6f,\"rate\":%.3f,\"pipeline\":%u,",
            mode_name(cfg), cfg->threads, cfg->connections, cfg->duration, cfg->warmup, cfg->rate,
            cfg->pipeline);
    if (cfg->mode != LCB_MODE_HTTP)
        fprintf(out, "\"size\":%zu,", cfg->size);
    if (cfg->mode == LCB_MODE_UDP)
        fprintf(out, "\"datagrams_sent\":%llu,\"lost\":%llu,\"loss_ratio\":%.6f,",
                (unsigned long long)res->datagrams_sent, (unsigned long long)e->lost,
                res->requests + e->lost > 0 ? (double)e->lost / (double)(res->requests + e->lost)
                                            : 0.0);
    fprintf(out,
            "\"elapsed_s\":%.6f,\"requests\":%llu,\"requests_per_s\":%.3f,\"bytes\":%llu,"
            "\"transfer_bytes_per_s\":%.3f,\"transfer_mib_per_s\":%.6f,",
            res->elapsed, (unsigned long long)res->requests, (double)res->requests / secs,
            (unsigned long long)res->bytes, (double)res->bytes / secs,
            (double)res->bytes / secs / 1048576.0);
    fprintf(out,
            "\"latency_us\":{\"count\":%lld,\"min\":%.3f,\"mean\":%.3f,\"stdev\":%.3f,"
            "\"p50\":%.3f,\"p75\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,"
            "\"p99_99\":%.3f,\"max\":%.3f,\"saturated\":%llu},",
            (long long)h->total_count, us(lcb_hdr_min(h)), lcb_hdr_mean(h) / 1000.0,
            lcb_hdr_stddev(h) / 1000.0, us(lcb_hdr_value_at_percentile(h, 50)),
            us(lcb_hdr_value_at_percentile(h, 75)), us(lcb_hdr_value_at_percentile(h, 90)),
            us(lcb_hdr_value_at_percentile(h, 99)), us(lcb_hdr_value_at_percentile(h, 99.9)),
            us(lcb_hdr_value_at_percentile(h, 99.99)), us(lcb_hdr_max(h)),
            (unsigned long long)h->saturated);
    fprintf(out,
            "\"req_per_s_per_thread\":{\"mean\":%.3f,\"stdev\":%.3f,\"max\":%.3f,"
            "\"within_stdev\":%.4f},",
            res->rps_mean, res->rps_stdev, res->rps_max, res->rps_within);
    fprintf(out,
            "\"status\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu,"
            "\"other\":%llu},",
            (unsigned long long)res->status[1], (unsigned long long)res->status[2],
            (unsigned long long)res->status[3], (unsigned long long)res->status[4],
            (unsigned long long)res->status[5],
            (unsigned long long)(cfg->mode == LCB_MODE_HTTP ? res->status[0] : 0));
    fprintf(out,
            "\"errors\":{\"total\":%llu,\"connect\":%llu,\"read\":%llu,\"write\":%llu,"
            "\"timeout\":%llu,\"status_4xx\":%llu,\"status_5xx\":%llu,\"mismatch\":%llu},"
            "\"error_ratio\":%.6f,\"max_errors\":%.6f,",
            (unsigned long long)lcb_result_errors(res), (unsigned long long)e->connect,
            (unsigned long long)e->read, (unsigned long long)e->write,
            (unsigned long long)e->timeout, (unsigned long long)res->status[4],
            (unsigned long long)res->status[5], (unsigned long long)e->mismatch,
            lcb_result_error_ratio(res), cfg->max_errors);
    double cpu = res->cpu_user + res->cpu_sys;
    char hs[96] = "";
    if (cfg->handshake)
        snprintf(hs, sizeof(hs), "\"handshake\":true,\"handshakes_per_sec\":%.2f,",
                 res->elapsed > 0 ? (double)res->requests / res->elapsed : 0.0);
    fprintf(out,
            "%s\"backlog\":%llu,\"requests_total\":%llu,\"connections_opened\":%llu,"
            "\"cpu_user_s\":%.3f,"
            "\"cpu_sys_s\":%.3f,\"cpu_us_per_request\":%.4f,\"connect_error\":\"%s\","
            "\"interrupted\":%s,\"ok\":%s}\n",
            hs, (unsigned long long)res->backlog, (unsigned long long)res->requests_total,
            (unsigned long long)res->connections_opened, res->cpu_user, res->cpu_sys,
            res->requests_total > 0 ? cpu * 1e6 / (double)res->requests_total : 0.0,
            res->connect_error != 0 ? lc_err_name(res->connect_error) : "",
            res->interrupted ? "true" : "false", lcb_exit_code(cfg, res) == 0 ? "true" : "false");
}

int lcb_write_percentiles(const char *path, const lcb_result_t *res)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -errno;
    /* Milliseconds, as wrk2 writes them, with 6 decimals: the histogram keeps nanoseconds. */
    int r = lcb_hdr_percentiles_print(&res->latency, f, 5, 1e6, 6);
    if (fclose(f) != 0 && r == 0)
        r = -errno;
    return r;
}

/* --plot: the run's percentile distribution, drawn by lcbench-plot (found beside this program,
 * as installed and as Bazel builds it, else on PATH). Returns 0 or an error printed to stderr. */
static int write_plot(const lcb_config_t *cfg, const lcb_result_t *res)
{
    char data[] = "/tmp/lcbench-plot-XXXXXX";
    int fd = mkstemp(data);
    if (fd < 0) {
        fprintf(stderr, "lcbench: --plot: %s\n", strerror(errno));
        return -1;
    }
    close(fd);
    int r = lcb_write_percentiles(data, res);
    char tool[4096] = "lcbench-plot";
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            char beside[sizeof(tool)];
            if (snprintf(beside, sizeof(beside), "%s/lcbench-plot", self) < (int)sizeof(beside) &&
                access(beside, X_OK) == 0)
                snprintf(tool, sizeof(tool), "%s", beside);
        }
    }
    char line[600], title[700];
    snprintf(line, sizeof(line), "%s", cfg->url);
    snprintf(title, sizeof(title), "lcbench -t%u -c%u%s %s", cfg->threads, cfg->connections,
             cfg->rate > 0 ? " -R" : "", line);
    if (r == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            dup2(STDERR_FILENO, STDOUT_FILENO); /* its messages never mix with --json output */
            char label[64];
            snprintf(label, sizeof(label), "%s=%s", data,
                     cfg->rate > 0 ? "open loop" : "closed loop");
            execlp(tool, tool, cfg->plot_path, label, "--", title, (char *)NULL);
            fprintf(stderr, "lcbench: --plot: cannot run %s: %s\n", tool, strerror(errno));
            _exit(127);
        }
        int status = 0;
        r = pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                    WEXITSTATUS(status) != 0
                ? -1
                : 0;
    } else {
        fprintf(stderr, "lcbench: --plot: %s\n", strerror(-r));
    }
    unlink(data);
    return r;
}

/* ---- The program ----------------------------------------------------------------------------- */

int lcb_main(int argc, char **argv)
{
    static lcb_config_t cfg; /* large (URL buffers): not on the stack */
    char err[512];
    int r = lcb_config_parse(&cfg, argc, argv, err, sizeof(err));
    if (r == LCB_PARSE_HELP) {
        fputs(lcb_usage(), stdout);
        return 0;
    }
    if (r == LCB_PARSE_VERSION) {
        printf("%s\n", LCB_VERSION);
        return 0;
    }
    if (r != LCB_PARSE_OK) {
        fprintf(stderr, "lcbench: %s\n%s", err, lcb_usage());
        return 2;
    }
    if (!cfg.json)
        lcb_report_header(stdout, &cfg);
    FILE *progress = !cfg.json && !cfg.quiet_progress && isatty(STDOUT_FILENO) ? stdout : NULL;
    lcb_result_t res;
    r = lcb_run(&cfg, &res, progress, err, sizeof(err));
    if (r != 0) {
        fprintf(stderr, "lcbench: %s\n", err);
        return 1;
    }
    if (cfg.json)
        lcb_report_json(stdout, &cfg, &res);
    else
        lcb_report_text(stdout, &cfg, &res);
    if (cfg.percentiles_path != NULL) {
        int w = lcb_write_percentiles(cfg.percentiles_path, &res);
        if (w != 0)
            fprintf(stderr, "lcbench: cannot write %s: %s\n", cfg.percentiles_path, strerror(-w));
    }
    if (cfg.plot_path != NULL && res.requests_total > 0)
        write_plot(&cfg, &res);
    int code = lcb_exit_code(&cfg, &res);
    lcb_result_close(&res);
    fflush(stdout);
    return code;
}
