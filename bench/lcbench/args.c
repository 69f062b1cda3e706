/* lcbench's command line (see args.h). */
#include "bench/lcbench/args.h"

#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage_text[] =
    "Usage: lcbench <options> <url>\n"
    "  url: http[s]://host[:port][/path] (mode http) or tcp://host:port, tls://host:port (mode\n"
    "       echo) or udp://host:port (mode udp); https and tls: TLS 1.2/1.3, the certificate not\n"
    "       verified (as wrk), SNI the host\n"
    "  Options (wrk's, same letters):\n"
    "    -c, --connections <N>  Connections to keep open (default 10)\n"
    "    -d, --duration    <T>  Duration of the measured test (default 10s)\n"
    "    -t, --threads     <N>  Number of loops (threads) to use (default 2)\n"
    "    -H, --header      <H>  Add a header to the request (repeatable)\n"
    "    -L, --latency          Print the latency distribution\n"
    "    -T, --timeout     <T>  Request timeout; counted as an error (default 2s)\n"
    "    -R, --rate        <N>  Open loop: N requests/s in total on a fixed schedule, latency\n"
    "                           from each request's intended send time (default: closed loop)\n"
    "    -v, --version          Print the version\n"
    "  loopcore's own:\n"
    "        --mode http|echo|udp  Default: from the URL's scheme. udp: each connection is a\n"
    "                           connected UDP socket; a message is one datagram of --size\n"
    "                           bytes (8 or more: a sequence number leads it), every byte\n"
    "                           verified; one not echoed within -T, or overtaken by a later\n"
    "                           one's echo, is lost (reported as loss, not as an error)\n"
    "        --gso              udp: a pipeline's datagrams go with one batch call, and the\n"
    "                           sockets use UDP GSO and GRO where the kernel has them\n"
    "                           (default: every datagram travels alone)\n"
    "    -m, --method      <M>  HTTP method (default GET)\n"
    "        --body        <S>  Request body (sent with Content-Length)\n"
    "        --pipeline    <N>  Requests per write, answered before the next write (default 1)\n"
    "        --size        <N>  Echo message size in bytes, every byte verified (default 64)\n"
    "        --warmup      <T>  Load applied before the measurement, not counted (default 0)\n"
    "        --connect-timeout <T>  Connection attempt timeout (default 2s)\n"
    "        --json             Print one JSON object with every figure instead of the text\n"
    "        --percentiles <F>  Write the percentile distribution in HdrHistogram's text format\n"
    "                           (values in milliseconds); also --hdr-out <F>\n"
    "        --plot        <F>  Draw the latency by percentile into F (PNG, log scale, as\n"
    "                           HdrHistogram's plotter; lcbench-plot and gnuplot draw it)\n"
    "        --max-errors  <F>  Exit with status 1 when errors / attempts pass F (default 0.01);\n"
    "                           attempts = responses + socket errors; errors = socket errors\n"
    "                           + 4xx/5xx responses + echo mismatches\n"
    "        --pin              Pin loop i to the i-th CPU this process may use\n"
    "        --cpus <LIST>      Pin the loops to these CPUs, in order (\"0,2-3\")\n"
    "        --no-progress      No live progress line (it is shown only on a terminal anyway)\n"
    "        --handshake        https/tls only: full handshakes; each connection loops connect,\n"
    "                           full TLS handshake (no session reuse), one request (http: with\n"
    "                           Connection: close; echo: one message), close; latency from the\n"
    "                           connect's start; reports Handshakes/sec (= Requests/sec)\n"
    "  Numbers may take k/M/G suffixes (1000-based); times take us/ms/s/m/h (bare: seconds).\n"
    "  Times range from 1us (--warmup: 0) to 30 days; -R from 0.01 to 1G requests/s.\n"
    "  Exit status: 0; 1 if the error ratio passed --max-errors or nothing was answered;\n"
    "  2 on a usage error.\n";

const char *lcb_usage(void) { return usage_text; }

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return LCB_PARSE_ERROR;
}

void lcb_config_defaults(lcb_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->mode = LCB_MODE_HTTP;
    cfg->threads = 2;
    cfg->connections = 10;
    cfg->duration = 10.0;
    cfg->warmup = 0.0;
    cfg->timeout = 2.0;
    cfg->connect_timeout = 2.0;
    cfg->pipeline = 1;
    cfg->size = 64;
    cfg->method = "GET";
    cfg->max_errors = 0.01;
}

void lcb_config_timing(const lcb_config_t *cfg, lcb_timing_t *t)
{
    t->warmup_ns = (uint64_t)(cfg->warmup * 1e9);
    t->duration_ns = (uint64_t)(cfg->duration * 1e9);
    t->timeout_ns = (uint64_t)(cfg->timeout * 1e9);
    t->connect_timeout_ns = (uint64_t)(cfg->connect_timeout * 1e9);
    double tick = 0.1;
    if (cfg->timeout / 10 < tick)
        tick = cfg->timeout / 10;
    if (cfg->connect_timeout / 10 < tick)
        tick = cfg->connect_timeout / 10;
    if (tick < 0.001)
        tick = 0.001;
    t->tick_ns = (uint64_t)(tick * 1e9);
    t->max_samples = (size_t)((cfg->duration + 1) * 10) + 16;
    t->ns_per_request = cfg->rate > 0 ? 1e9L / (long double)cfg->rate : 0;
}

int lcb_parse_time(const char *s, double *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0)
        return -1;
    double scale;
    if (*end == '\0' || strcmp(end, "s") == 0)
        scale = 1.0;
    else if (strcmp(end, "ms") == 0)
        scale = 1e-3;
    else if (strcmp(end, "us") == 0)
        scale = 1e-6;
    else if (strcmp(end, "m") == 0)
        scale = 60.0;
    else if (strcmp(end, "h") == 0)
        scale = 3600.0;
    else
        return -1;
    v *= scale; /* "1e308h" overflows to inf */
    if (!isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int lcb_parse_count(const char *s, double *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0)
        return -1;
    double scale = 1.0;
    if (*end != '\0') {
        if (end[1] != '\0')
            return -1;
        switch (*end) {
        case 'k':
        case 'K':
            scale = 1e3;
            break;
        case 'M':
            scale = 1e6;
            break;
        case 'G':
            scale = 1e9;
            break;
        default:
            return -1;
        }
    }
    v *= scale; /* "1e308G" overflows to inf */
    if (!isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* A time in [lo, LCB_MAX_SECONDS]. */
static int parse_seconds(const char *s, double lo, double *out)
{
    double v;
    if (lcb_parse_time(s, &v) != 0 || v < lo || v > LCB_MAX_SECONDS)
        return -1;
    *out = v;
    return 0;
}

/* The length of the RFC 9110 token (a method, a header name) s starts with. */
static size_t token_len(const char *s)
{
    size_t n = 0;
    for (;; n++) {
        char ch = s[n];
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (ch == '\0' || strchr("!#$%&'*+-.^_`|~", ch) == NULL))
            return n;
    }
}

/* "Name: value": a token, a colon, a value with no control character but tab. */
static bool valid_header(const char *s)
{
    size_t n = token_len(s);
    if (n == 0 || s[n] != ':')
        return false;
    for (const char *p = s + n + 1; *p != '\0'; p++) {
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return false;
    }
    return true;
}

/* A whole count in [lo, hi]. */
static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    double v;
    if (lcb_parse_count(s, &v) != 0 || v != floor(v) || v < lo || v > hi)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        return -1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

int lcb_parse_url(lcb_config_t *cfg, const char *url, char *err, size_t errlen)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL)
        return fail(err, errlen,
                    "invalid URL %s: expected http://host[:port]/path or "
                    "tcp://host:port",
                    url);
    /* The URL goes into the request line and the Host header as it is: a space would split
     * the request line, a CR or LF the header block. */
    for (const char *p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return fail(err, errlen,
                        "invalid URL %s: spaces and control characters must be percent-encoded",
                        url);
    }
    size_t slen = (size_t)(sep - url);
    if (!((slen == 4 && strncasecmp(url, "http", 4) == 0) ||
          (slen == 5 && strncasecmp(url, "https", 5) == 0) ||
          (slen == 3 && strncasecmp(url, "tcp", 3) == 0) ||
          (slen == 3 && strncasecmp(url, "tls", 3) == 0) ||
          (slen == 3 && strncasecmp(url, "udp", 3) == 0)))
        return fail(err, errlen, "unsupported URL scheme in %s (http, https, tcp, tls or udp)",
                    url);
    copy_str(cfg->scheme, sizeof(cfg->scheme), url, slen);
    for (char *p = cfg->scheme; *p; p++)
        *p = (char)(*p | 0x20);
    cfg->tls = strcmp(cfg->scheme, "https") == 0 || strcmp(cfg->scheme, "tls") == 0;
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0)
        return fail(err, errlen, "invalid URL %s: no host", url);
    if (copy_str(cfg->authority, sizeof(cfg->authority), auth, alen) != 0)
        return fail(err, errlen, "invalid URL %s: host too long", url);
    const char *hp = auth, *port = NULL;
    size_t hlen;
    if (*hp == '[') {
        const char *close = memchr(hp, ']', alen);
        if (close == NULL)
            return fail(err, errlen, "invalid URL %s: unterminated [", url);
        hlen = (size_t)(close - hp - 1);
        hp++;
        if (close + 1 < auth + alen) {
            if (close[1] != ':')
                return fail(err, errlen, "invalid URL %s", url);
            port = close + 2;
        }
    } else {
        const char *colon = memchr(hp, ':', alen);
        hlen = colon != NULL ? (size_t)(colon - hp) : alen;
        if (colon != NULL)
            port = colon + 1;
    }
    if (hlen == 0 || copy_str(cfg->host, sizeof(cfg->host), hp, hlen) != 0)
        return fail(err, errlen, "invalid URL %s: bad host", url);
    if (port != NULL) {
        size_t plen = (size_t)(auth + alen - port);
        char buf[16];
        unsigned pn;
        if (plen == 0 || copy_str(buf, sizeof(buf), port, plen) != 0 ||
            strspn(buf, "0123456789") != plen || parse_uint(buf, 1, 65535, &pn) != 0)
            return fail(err, errlen, "invalid URL %s: bad port", url);
        snprintf(cfg->port, sizeof(cfg->port), "%u", pn);
    } else if (strcmp(cfg->scheme, "http") == 0) {
        strcpy(cfg->port, "80");
    } else if (strcmp(cfg->scheme, "https") == 0) {
        strcpy(cfg->port, "443");
    } else {
        return fail(err, errlen, "invalid URL %s: %s:// needs a port", url, cfg->scheme);
    }
    const char *path = auth + alen;
    size_t plen = strcspn(path, "#");
    if (plen == 0) {
        strcpy(cfg->path, "/");
    } else if (*path == '?') {
        cfg->path[0] = '/';
        if (copy_str(cfg->path + 1, sizeof(cfg->path) - 1, path, plen) != 0)
            return fail(err, errlen, "URL path too long");
    } else if (copy_str(cfg->path, sizeof(cfg->path), path, plen) != 0) {
        return fail(err, errlen, "URL path too long");
    }
    return 0;
}

/* "0,2-3" into cfg->cpus. */
static int parse_cpus(lcb_config_t *cfg, const char *s)
{
    cfg->ncpus = 0;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10);
        if (end == s || a < 0 || a > 65535)
            return -1;
        long b = a;
        if (*end == '-') {
            const char *s2 = end + 1;
            b = strtol(s2, &end, 10);
            if (end == s2 || b < a || b > 65535)
                return -1;
        }
        for (long c = a; c <= b; c++) {
            if (cfg->ncpus == LCB_MAX_CPUS)
                return -1;
            cfg->cpus[cfg->ncpus++] = (int)c;
        }
        if (*end == ',')
            end++;
        else if (*end != '\0')
            return -1;
        s = end;
    }
    return cfg->ncpus > 0 ? 0 : -1;
}

enum {
    OPT_MODE = 256,
    OPT_BODY,
    OPT_PIPELINE,
    OPT_SIZE,
    OPT_WARMUP,
    OPT_CONNECT_TIMEOUT,
    OPT_JSON,
    OPT_PERCENTILES,
    OPT_PLOT,
    OPT_MAX_ERRORS,
    OPT_PIN,
    OPT_CPUS,
    OPT_NO_PROGRESS,
    OPT_HANDSHAKE,
    OPT_GSO,
};

static const struct option long_opts[] = {
    {"connections", required_argument, NULL, 'c'},
    {"duration", required_argument, NULL, 'd'},
    {"threads", required_argument, NULL, 't'},
    {"script", required_argument, NULL, 's'},
    {"header", required_argument, NULL, 'H'},
    {"latency", no_argument, NULL, 'L'},
    {"timeout", required_argument, NULL, 'T'},
    {"rate", required_argument, NULL, 'R'},
    {"method", required_argument, NULL, 'm'},
    {"version", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"mode", required_argument, NULL, OPT_MODE},
    {"body", required_argument, NULL, OPT_BODY},
    {"pipeline", required_argument, NULL, OPT_PIPELINE},
    {"size", required_argument, NULL, OPT_SIZE},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"percentiles", required_argument, NULL, OPT_PERCENTILES},
    {"hdr-out", required_argument, NULL, OPT_PERCENTILES},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"max-errors", required_argument, NULL, OPT_MAX_ERRORS},
    {"pin", no_argument, NULL, OPT_PIN},
    {"cpus", required_argument, NULL, OPT_CPUS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"handshake", no_argument, NULL, OPT_HANDSHAKE},
    {"gso", no_argument, NULL, OPT_GSO},
    {NULL, 0, NULL, 0},
};

int lcb_config_parse(lcb_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    lcb_config_defaults(cfg);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    bool method_given = false;
    optind = 0; /* GNU: full re-initialisation, so the parser may run more than once */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:d:t:s:H:LT:R:m:vh", long_opts, NULL)) != -1) {
        const char *a = optarg;
        double d;
        switch (ch) {
        case 'c':
            if (parse_uint(a, 1, 10000000, &cfg->connections) != 0)
                return fail(err, errlen, "invalid number of connections: %s", a);
            break;
        case 't':
            if (parse_uint(a, 1, 1024, &cfg->threads) != 0)
                return fail(err, errlen, "invalid number of threads: %s", a);
            break;
        case 'd':
            if (parse_seconds(a, LCB_MIN_SECONDS, &cfg->duration) != 0)
                return fail(err, errlen, "invalid duration: %s (1us to 30 days)", a);
            break;
        case 's':
            return fail(err, errlen,
                        "Lua scripts (-s) are not supported: use -m, -H, --body and "
                        "--pipeline");
        case 'H':
            if (cfg->nheaders == LCB_MAX_HEADERS)
                return fail(err, errlen, "too many headers (at most %d)", LCB_MAX_HEADERS);
            if (!valid_header(a))
                return fail(err, errlen, "invalid header (expected \"Name: value\"): %s", a);
            cfg->headers[cfg->nheaders++] = a;
            break;
        case 'L':
            cfg->latency = true;
            break;
        case 'T':
            if (parse_seconds(a, LCB_MIN_SECONDS, &cfg->timeout) != 0)
                return fail(err, errlen, "invalid timeout: %s (1us to 30 days)", a);
            break;
        case 'R':
            if (lcb_parse_count(a, &d) != 0 || d < LCB_MIN_RATE || d > LCB_MAX_RATE)
                return fail(err, errlen, "invalid rate: %s (0.01 to 1G requests/s)", a);
            cfg->rate = d;
            break;
        case 'm':
            if (*a == '\0' || a[token_len(a)] != '\0')
                return fail(err, errlen, "invalid method: %s", a);
            cfg->method = a;
            method_given = true;
            break;
        case 'v':
            return LCB_PARSE_VERSION;
        case 'h':
            return LCB_PARSE_HELP;
        case OPT_MODE:
            if (strcmp(a, "http") == 0)
                cfg->mode = LCB_MODE_HTTP;
            else if (strcmp(a, "echo") == 0)
                cfg->mode = LCB_MODE_ECHO;
            else if (strcmp(a, "udp") == 0)
                cfg->mode = LCB_MODE_UDP;
            else
                return fail(err, errlen, "invalid mode: %s (http, echo or udp)", a);
            cfg->mode_given = true;
            break;
        case OPT_BODY:
            cfg->body = a;
            break;
        case OPT_PIPELINE:
            if (parse_uint(a, 1, LCB_MAX_PIPELINE, &cfg->pipeline) != 0)
                return fail(err, errlen, "invalid pipeline depth: %s (1..%d)", a, LCB_MAX_PIPELINE);
            break;
        case OPT_SIZE:
            if (lcb_parse_count(a, &d) != 0 || d < 1 || d > 64e6 || d != floor(d))
                return fail(err, errlen, "invalid message size: %s", a);
            cfg->size = (size_t)d;
            break;
        case OPT_WARMUP:
            if (parse_seconds(a, 0, &cfg->warmup) != 0)
                return fail(err, errlen, "invalid warmup: %s (0 to 30 days)", a);
            break;
        case OPT_CONNECT_TIMEOUT:
            if (parse_seconds(a, LCB_MIN_SECONDS, &cfg->connect_timeout) != 0)
                return fail(err, errlen, "invalid connect timeout: %s (1us to 30 days)", a);
            break;
        case OPT_JSON:
            cfg->json = true;
            break;
        case OPT_PERCENTILES:
            if (*a == '\0')
                return fail(err, errlen, "--percentiles needs a file name");
            cfg->percentiles_path = a;
            break;
        case OPT_PLOT:
            if (*a == '\0')
                return fail(err, errlen, "--plot needs a file name");
            cfg->plot_path = a;
            break;
        case OPT_MAX_ERRORS: {
            char *end;
            d = strtod(a, &end);
            if (end == a || *end != '\0' || !(d >= 0 && d <= 1))
                return fail(err, errlen, "invalid --max-errors: %s (a fraction, 0..1)", a);
            cfg->max_errors = d;
            break;
        }
        case OPT_PIN:
            cfg->pin = true;
            break;
        case OPT_CPUS:
            if (parse_cpus(cfg, a) != 0)
                return fail(err, errlen, "invalid CPU list: %s", a);
            cfg->pin = true;
            break;
        case OPT_NO_PROGRESS:
            cfg->quiet_progress = true;
            break;
        case OPT_HANDSHAKE:
            cfg->handshake = true;
            break;
        case OPT_GSO:
            cfg->gso = true;
            break;
        case ':':
            return fail(err, errlen, "option %s needs a value", argv[optind - 1]);
        default:
            if (optopt != 0)
                return fail(err, errlen, "unknown option -%c", optopt);
            return fail(err, errlen, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return fail(err, errlen, "missing URL");
    if (optind + 1 < argc)
        return fail(err, errlen, "unexpected argument: %s", argv[optind + 1]);
    cfg->url = argv[optind];
    if (lcb_parse_url(cfg, cfg->url, err, errlen) != 0)
        return LCB_PARSE_ERROR;
    lcb_mode_t from_url = strcmp(cfg->scheme, "tcp") == 0 || strcmp(cfg->scheme, "tls") == 0
                              ? LCB_MODE_ECHO
                          : strcmp(cfg->scheme, "udp") == 0 ? LCB_MODE_UDP
                                                            : LCB_MODE_HTTP;
    if (!cfg->mode_given)
        cfg->mode = from_url;
    else if (cfg->mode != from_url)
        return fail(err, errlen, "--mode %s needs a %s URL",
                    cfg->mode == LCB_MODE_ECHO  ? "echo"
                    : cfg->mode == LCB_MODE_UDP ? "udp"
                                                : "http",
                    cfg->mode == LCB_MODE_ECHO  ? "tcp:// or tls://"
                    : cfg->mode == LCB_MODE_UDP ? "udp://"
                                                : "http:// or https://");
    if (cfg->mode != LCB_MODE_HTTP && (method_given || cfg->nheaders > 0 || cfg->body != NULL))
        return fail(err, errlen, "-m, -H and --body apply to the http mode only");
    if (cfg->gso && cfg->mode != LCB_MODE_UDP)
        return fail(err, errlen, "--gso applies to the udp mode only");
    if (cfg->mode == LCB_MODE_UDP && (cfg->size < 8 || cfg->size > 65507))
        return fail(err, errlen, "--size in udp mode: 8 to 65507 bytes (one datagram)");
    if (cfg->connections < cfg->threads)
        return fail(err, errlen, "number of connections must be >= threads");
    if (cfg->handshake && !cfg->tls)
        return fail(err, errlen, "--handshake needs an https:// or tls:// URL (not %s://)",
                    cfg->scheme);
    if (cfg->handshake && cfg->pipeline > 1)
        return fail(err, errlen, "--handshake sends one request per connection: no --pipeline");
    return LCB_PARSE_OK;
}
