/* lcbench_args_fuzz: lcbench's command line (bench/lcbench/args.c) and what is derived from it.
 *
 * The input is split on NUL bytes into arguments (after argv[0] = "lcbench", 63 at most) and
 * parsed with lcb_config_parse(), which never exits: lcb_main() turns its outcome into the
 * exit status. Checks: the outcome is one of the four; an error comes with a message; a parse
 * that succeeds leaves every field in its documented range, and everything lcb_run() computes
 * from it converts without overflow (lcb_config_timing(), the open-loop schedule: built with
 * -fsanitize=undefined, clang's float-cast-overflow check included); the HTTP request lcbench
 * would send is well framed (a request line whose method and target hold no space or control
 * character, header lines without bare CR or LF, a body of Content-Length bytes); the report's
 * header prints. Parsing the same arguments again (getopt_long has permuted them) gives the same
 * outcome. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "bench/lcbench/internal.h"
#include "tests/fuzz/fuzz_check.h"

#define MAX_ARGS 64

static bool plain_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f)
            return false;
    }
    return true;
}

static void check_request(const lcb_config_t *cfg)
{
    char *built = NULL;
    size_t len = 0;
    FUZZ_CHECK(lcb_http_build_request(cfg, &built, &len) == 0, "build_request");
    /* The request is len bytes, not a string (the body is copied without a NUL): a copy that is
     * one, for the string functions below (argv strings hold no NUL). */
    char *req = malloc(len + 1);
    FUZZ_CHECK(req != NULL, "malloc");
    memcpy(req, built, len);
    req[len] = '\0';
    free(built);
    FUZZ_CHECK(strlen(req) == len, "a NUL inside the request");
    /* Request line. */
    const char *sp1 = memchr(req, ' ', len);
    FUZZ_CHECK(sp1 != NULL, "no space in the request line");
    const char *eol = strstr(req, "\r\n");
    FUZZ_CHECK(eol != NULL && eol > sp1, "request line");
    size_t mlen = (size_t)(sp1 - req);
    FUZZ_CHECK(mlen == strlen(cfg->method) && plain_token(req, mlen), "method \"%.*s\"", (int)mlen,
               req);
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    FUZZ_CHECK(sp2 != NULL && strncmp(sp2, " HTTP/1.1\r\n", 11) == 0 && sp2 + 9 == eol,
               "request line \"%.*s\"", (int)(eol - req), req);
    FUZZ_CHECK(plain_token(target, (size_t)(sp2 - target)) && *target == '/',
               "request target \"%.*s\"", (int)(sp2 - target), target);
    /* Header lines up to the blank line: no CR or LF inside one. */
    const char *p = eol + 2;
    unsigned lines = 0;
    for (;;) {
        const char *e = strstr(p, "\r\n");
        FUZZ_CHECK(e != NULL, "unterminated headers");
        if (e == p)
            break;
        FUZZ_CHECK(memchr(p, '\r', (size_t)(e - p)) == NULL &&
                       memchr(p, '\n', (size_t)(e - p)) == NULL && memchr(p, ':', (size_t)(e - p)),
                   "header line \"%.*s\"", (int)(e - p), p);
        lines++;
        p = e + 2;
    }
    p += 2;
    FUZZ_CHECK(lines >= cfg->nheaders && lines <= cfg->nheaders + 2 + cfg->handshake,
               "%u header lines for %u -H", lines, cfg->nheaders);
    size_t body = cfg->body != NULL ? strlen(cfg->body) : 0;
    FUZZ_CHECK((size_t)(p - req) + body == len && (body == 0 || memcmp(p, cfg->body, body) == 0),
               "body");
    free(req);
}

static void check_config(const lcb_config_t *cfg)
{
    FUZZ_CHECK(cfg->threads >= 1 && cfg->threads <= 1024, "threads %u", cfg->threads);
    FUZZ_CHECK(cfg->connections >= cfg->threads && cfg->connections <= 10000000, "connections %u",
               cfg->connections);
    FUZZ_CHECK(cfg->duration >= LCB_MIN_SECONDS && cfg->duration <= LCB_MAX_SECONDS, "duration %g",
               cfg->duration);
    FUZZ_CHECK(cfg->warmup >= 0 && cfg->warmup <= LCB_MAX_SECONDS, "warmup %g", cfg->warmup);
    FUZZ_CHECK(cfg->timeout >= LCB_MIN_SECONDS && cfg->timeout <= LCB_MAX_SECONDS, "timeout %g",
               cfg->timeout);
    FUZZ_CHECK(cfg->connect_timeout >= LCB_MIN_SECONDS && cfg->connect_timeout <= LCB_MAX_SECONDS,
               "connect timeout %g", cfg->connect_timeout);
    FUZZ_CHECK(cfg->rate == 0 || (cfg->rate >= LCB_MIN_RATE && cfg->rate <= LCB_MAX_RATE),
               "rate %g", cfg->rate);
    FUZZ_CHECK(cfg->pipeline >= 1 && cfg->pipeline <= LCB_MAX_PIPELINE, "pipeline %u",
               cfg->pipeline);
    FUZZ_CHECK(cfg->size >= 1 && cfg->size <= 64000000, "size %zu", cfg->size);
    FUZZ_CHECK(cfg->max_errors >= 0 && cfg->max_errors <= 1, "max_errors %g", cfg->max_errors);
    FUZZ_CHECK(cfg->nheaders <= LCB_MAX_HEADERS && cfg->ncpus <= LCB_MAX_CPUS, "counts");
    for (size_t i = 0; i < cfg->ncpus; i++)
        FUZZ_CHECK(cfg->cpus[i] >= 0 && cfg->cpus[i] <= 65535, "cpu %d", cfg->cpus[i]);
    FUZZ_CHECK(cfg->url != NULL && cfg->method != NULL && *cfg->method != '\0', "strings");
    bool stream_scheme = strcmp(cfg->scheme, "tcp") == 0 || strcmp(cfg->scheme, "tls") == 0;
    bool udp_scheme = strcmp(cfg->scheme, "udp") == 0;
    FUZZ_CHECK(strcmp(cfg->scheme, "http") == 0 || strcmp(cfg->scheme, "https") == 0 ||
                   stream_scheme || udp_scheme,
               "scheme %s", cfg->scheme);
    FUZZ_CHECK(cfg->tls == (strcmp(cfg->scheme, "https") == 0 || strcmp(cfg->scheme, "tls") == 0),
               "tls flag");
    FUZZ_CHECK((cfg->mode == LCB_MODE_ECHO) == stream_scheme, "mode");
    FUZZ_CHECK((cfg->mode == LCB_MODE_UDP) == udp_scheme, "udp mode");
    FUZZ_CHECK(cfg->mode != LCB_MODE_UDP || (cfg->size >= 8 && cfg->size <= 65507), "udp size");
    FUZZ_CHECK(!cfg->gso || cfg->mode == LCB_MODE_UDP, "--gso outside the udp mode");
    FUZZ_CHECK(!cfg->handshake || (cfg->tls && cfg->pipeline == 1), "--handshake without TLS");
    FUZZ_CHECK(cfg->host[0] != '\0' && cfg->path[0] == '/', "host \"%s\" path \"%s\"", cfg->host,
               cfg->path);
    char *end;
    long port = strtol(cfg->port, &end, 10);
    FUZZ_CHECK(*end == '\0' && port >= 1 && port <= 65535, "port \"%s\"", cfg->port);

    /* What lcb_run() derives: every conversion must fit (UBSan checks the casts). */
    lcb_timing_t t;
    lcb_config_timing(cfg, &t);
    FUZZ_CHECK(t.duration_ns >= 999 && t.timeout_ns >= 999 && t.connect_timeout_ns >= 999 &&
                   t.tick_ns >= 1000000 && t.tick_ns <= 100000000,
               "timing");
    FUZZ_CHECK(t.max_samples >= 16 && t.max_samples <= 26000000 + 32, "samples %zu", t.max_samples);
    if (cfg->rate > 0) {
        /* The last slot run.c computes: past the window by at most one round of connections. */
        long double last =
            (long double)(cfg->warmup + cfg->duration) * cfg->rate + 2.0L * cfg->connections;
        long double ns = last * t.ns_per_request;
        FUZZ_CHECK(ns < 0x1p62L, "schedule reaches %Lg ns", ns);
        volatile uint64_t slot = (uint64_t)ns;
        (void)slot;
    }

    if (cfg->mode == LCB_MODE_HTTP) {
        check_request(cfg);
    } else if (cfg->size <= 65536) {
        char *msg = NULL;
        size_t len = 0;
        FUZZ_CHECK(lcb_echo_build_message(cfg, &msg, &len) == 0 && len == cfg->size, "echo");
        free(msg);
    }
    static FILE *devnull;
    if (devnull == NULL)
        devnull = fopen("/dev/null", "w");
    if (devnull != NULL)
        lcb_report_header(devnull, cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[8192];
    static lcb_config_t cfg, again;
    static char err[512], err2[512];
    if (size >= sizeof(buf))
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = (char *)"lcbench";
    for (size_t i = 0; i <= size && argc < MAX_ARGS;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;

    memset(err, 0x55, sizeof(err));
    int r = lcb_config_parse(&cfg, argc, argv, err, sizeof(err));
    FUZZ_CHECK(r == LCB_PARSE_OK || r == LCB_PARSE_HELP || r == LCB_PARSE_VERSION ||
                   r == LCB_PARSE_ERROR,
               "outcome %d", r);
    if (r == LCB_PARSE_ERROR)
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0',
                   "error without a message");
    if (r == LCB_PARSE_OK)
        check_config(&cfg);

    int r2 = lcb_config_parse(&again, argc, argv, err2, sizeof(err2));
    FUZZ_CHECK(r2 == r, "parsed again: %d, first %d", r2, r);
    if (r == LCB_PARSE_ERROR)
        FUZZ_CHECK(strcmp(err, err2) == 0, "errors differ: \"%s\" / \"%s\"", err, err2);
    if (r == LCB_PARSE_OK)
        FUZZ_CHECK(again.threads == cfg.threads && again.connections == cfg.connections &&
                       again.duration == cfg.duration && again.rate == cfg.rate &&
                       again.nheaders == cfg.nheaders && strcmp(again.path, cfg.path) == 0 &&
                       strcmp(again.host, cfg.host) == 0,
                   "parsed again: different configuration");
    return 0;
}
