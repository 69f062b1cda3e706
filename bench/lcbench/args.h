/* lcbench's command line: wrk's options (and wrk2's -R), plus loopcore's own.
 *
 *   lcbench -t2 -c64 -d10s --latency http://127.0.0.1:8080/plaintext
 *
 * Numbers take wrk's metric suffixes (k, M, G: 1000-based, "10k"); times take us, ms, s, m, h
 * ("10s", "500ms", "2m"; a bare number is seconds). The parser is pure: it fills an
 * lcb_config_t and reports problems in a message, so tests can drive it. */
#ifndef LCBENCH_ARGS_H
#define LCBENCH_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LCB_MAX_HEADERS 64
#define LCB_MAX_CPUS 256
#define LCB_MAX_PIPELINE 4096

/* The ranges lcb_config_parse() enforces on the numbers that lcb_run() turns into nanoseconds
 * and schedule slots (so every conversion fits its integer type). Times: -d, --warmup, -T,
 * --connect-timeout at most 30 days (-d, -T, --connect-timeout at least 1 us). Rate (-R):
 * 0.01 .. 1G requests/s. */
#define LCB_MAX_SECONDS (30.0 * 86400.0)
#define LCB_MIN_SECONDS 1e-6
#define LCB_MIN_RATE 0.01
#define LCB_MAX_RATE 1e9

/* http: HTTP/1.1 requests; echo: a TCP (or TLS) echo stream; udp: datagrams to a UDP echo
 * server, one message per datagram (--size bytes, at least 8: a sequence number leads it). */
typedef enum { LCB_MODE_HTTP = 0, LCB_MODE_ECHO, LCB_MODE_UDP } lcb_mode_t;

typedef struct lcb_config_s {
    lcb_mode_t mode;
    bool mode_given;        /* --mode on the command line (else taken from the URL's scheme) */
    unsigned threads;       /* -t: loops, one thread each (default 2, as wrk) */
    unsigned connections;   /* -c: spread over the loops (default 10, as wrk) */
    double duration;        /* -d: seconds measured (default 10) */
    double warmup;          /* --warmup: seconds of load before, not counted (default 0) */
    double timeout;         /* --timeout: per request, seconds (default 2, as wrk) */
    double connect_timeout; /* --connect-timeout: seconds (default 2) */
    double rate;            /* -R: requests/s over all connections; 0: closed loop */
    bool latency;           /* --latency: print the latency distribution */
    bool json;              /* --json: one JSON object instead of the text report */
    bool quiet_progress;    /* --no-progress: no live line even on a terminal */
    bool handshake;         /* --handshake: a new connection and full TLS handshake per request */
    bool gso;               /* --gso: udp, a pipeline's datagrams in one batch call (UDP GSO) */
    unsigned pipeline;      /* --pipeline: requests per write (default 1) */
    size_t size;            /* --size: echo / udp message size in bytes (default 64) */
    const char *method;     /* -m: default GET */
    const char *headers[LCB_MAX_HEADERS]; /* -H "Name: value", in order */
    unsigned nheaders;
    const char *body;             /* --body: request body (sent with Content-Length) */
    const char *percentiles_path; /* --percentiles / --hdr-out: HdrHistogram text output */
    const char *plot_path;        /* --plot: the latency spectrum as a PNG (lcbench-plot) */
    double max_errors;            /* --max-errors: error ratio that fails the run (0.01) */
    bool pin;                     /* --pin / --cpus: pin the loop threads */
    int cpus[LCB_MAX_CPUS];       /* --cpus LIST */
    size_t ncpus;
    const char *url; /* as given */
    /* From the URL. */
    char scheme[8];      /* "http", "https", "tcp", "tls" or "udp" */
    bool tls;            /* https or tls: TLS over the connection */
    char host[256];      /* without brackets for IPv6 */
    char port[8];        /* numeric; 80 for http, 443 for https if absent */
    char authority[300]; /* host[:port] as written: the Host header */
    char path[2048];     /* path and query; "/" if absent */
} lcb_config_t;

/* lcb_config_parse() outcomes. */
#define LCB_PARSE_OK 0
#define LCB_PARSE_HELP 1    /* -h/--help: print lcb_usage(), exit 0 */
#define LCB_PARSE_VERSION 2 /* -v/--version: print the version, exit 0 */
#define LCB_PARSE_ERROR (-1)

/** Sets every option to its default. */
void lcb_config_defaults(lcb_config_t *cfg);

/** Parses argv (argv[0] is the program name) into cfg, which it first resets to the defaults.
 *  Pointers into argv are kept (argv must outlive cfg). On LCB_PARSE_ERROR, err holds a message.
 *  Not reentrant (getopt_long). */
int lcb_config_parse(lcb_config_t *cfg, int argc, char **argv, char *err, size_t errlen);

/* What lcb_run() derives from a parsed configuration: every double-to-integer conversion of
 * the run is made here, on values the parser has range checked. */
typedef struct lcb_timing_s {
    uint64_t warmup_ns;          /* the window opens warmup_ns after the start */
    uint64_t duration_ns;        /* and lasts duration_ns */
    uint64_t timeout_ns;         /* -T */
    uint64_t connect_timeout_ns; /* --connect-timeout */
    uint64_t tick_ns;            /* each loop's tick: 100 ms, or a tenth of a shorter timeout */
    size_t max_samples;          /* Req/Sec samples one loop may take in the window */
    long double ns_per_request;  /* open loop: 1e9 / rate; 0 for the closed loop */
} lcb_timing_t;

/** Fills *t from cfg, which must be as lcb_config_parse() leaves it (or the defaults). */
void lcb_config_timing(const lcb_config_t *cfg, lcb_timing_t *t);

/** Parses a time ("10s", "500ms", "2m", "1h", "250us", "1.5"): seconds in *out, finite and
 *  >= 0. 0 or -1. */
int lcb_parse_time(const char *s, double *out);

/** Parses a count with wrk's metric suffixes ("64", "10k", "1M"): *out, finite and >= 0.
 *  0 or -1. */
int lcb_parse_count(const char *s, double *out);

/** Parses a URL (http://host[:port][/path], tcp://host:port, [v6]:port) into cfg's URL fields.
 *  0 or -1 with a message. */
int lcb_parse_url(lcb_config_t *cfg, const char *url, char *err, size_t errlen);

/** The help text. */
const char *lcb_usage(void);

#define LCB_VERSION "lcbench 1.0 (loopcore)"

#endif
