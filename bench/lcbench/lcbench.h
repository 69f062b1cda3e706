/* lcbench: the load generator on loopcore (a loop group, one loop per thread).
 *
 * lcb_run() drives one test: it starts a group of cfg->threads loops, spreads cfg->connections
 * over them, loads the server for warmup + duration seconds and fills an lcb_result_t with the
 * figures of the measured window (requests and errors that completed in it). lcb_main() is the
 * whole program: parse, run, report, exit code. */
#ifndef LCBENCH_LCBENCH_H
#define LCBENCH_LCBENCH_H

#include <stdint.h>
#include <stdio.h>

#include "bench/lcbench/args.h"
#include "bench/lcbench/hdr.h"

/* The histogram's geometry: nanoseconds, 3 significant digits, up to 2^42 ns (73 minutes). */
#define LCB_HDR_LOWEST 1
#define LCB_HDR_HIGHEST (3600LL * 1000000000LL)
#define LCB_HDR_SIGFIGS 3

typedef struct lcb_errors_s {
    uint64_t connect;  /* refused, unreachable, or no connection within --connect-timeout */
    uint64_t read;     /* reset or closed with requests outstanding, unparsable response */
    uint64_t write;    /* the socket refused a request */
    uint64_t timeout;  /* no response within --timeout (each outstanding request counts) */
    uint64_t mismatch; /* echo, udp: a byte came back different */
    /* udp: datagrams not echoed within --timeout, or overtaken by a later datagram's echo. Loss,
     * not an error: not in lcb_result_errors(). */
    uint64_t lost;
} lcb_errors_t;

typedef struct lcb_result_s {
    double elapsed;      /* seconds of the measured window */
    uint64_t requests;   /* responses (echo: messages) completed in the window */
    uint64_t bytes;      /* bytes read in the window */
    uint64_t status[6];  /* HTTP responses by class: [1] 1xx .. [5] 5xx, [0] other */
    lcb_errors_t errors; /* socket errors in the window */
    lcb_hdr_t latency;   /* merged over the loops, nanoseconds */
    double rps_mean;     /* per-loop requests/s, sampled every 100 ms (wrk's Req/Sec) */
    double rps_stdev;
    double rps_max;
    double rps_within;       /* fraction of the samples within mean +- stdev */
    uint64_t requests_total; /* responses over the whole run, warm-up included */
    uint64_t connections_opened;
    int connect_error; /* the first connect error seen (lc_strerror() tells what), or 0 */
    /* Open loop: requests whose intended send time fell in the window but that were not answered
     * by its end (still queued here or outstanding). Their latency is unknown, so it is in no
     * percentile (as in wrk2); a large backlog means the figures flatter the server. */
    uint64_t backlog;
    uint64_t datagrams_sent; /* udp: datagrams sent in the window */
    double cpu_user; /* this process's CPU seconds (getrusage) during lcb_run(), warm-up included */
    double cpu_sys;
    int interrupted; /* stopped early by SIGINT/SIGTERM */
} lcb_result_t;

/** Runs the test cfg describes; fills *res (lcb_result_close() it afterwards). Prints the live
 *  progress line on progress (if not NULL) once a second. Returns 0, or a negative setup error
 *  (the loop group, the histogram) with a message in err. */
int lcb_run(const lcb_config_t *cfg, lcb_result_t *res, FILE *progress, char *err, size_t errlen);

void lcb_result_close(lcb_result_t *res);

/** Socket errors + 4xx/5xx responses + echo mismatches. */
uint64_t lcb_result_errors(const lcb_result_t *res);

/** errors / attempts, attempts = responses + socket errors (0 when there were none). */
double lcb_result_error_ratio(const lcb_result_t *res);

/** The exit status for a finished run: 1 if the error ratio is above cfg->max_errors or no
 *  response completed, else 0. */
int lcb_exit_code(const lcb_config_t *cfg, const lcb_result_t *res);

/** wrk's first two lines ("Running 10s test @ url", "  N threads and M connections"). */
void lcb_report_header(FILE *out, const lcb_config_t *cfg);

/** The wrk-style text report after the header (plus loopcore's extra lines). */
void lcb_report_text(FILE *out, const lcb_config_t *cfg, const lcb_result_t *res);

/** One JSON object with every figure, and a newline. */
void lcb_report_json(FILE *out, const lcb_config_t *cfg, const lcb_result_t *res);

/** Writes the HdrHistogram percentile distribution (milliseconds) to path. 0 or -errno. */
int lcb_write_percentiles(const char *path, const lcb_result_t *res);

/** The program: parses argv, runs, reports; returns the exit status (0, 1, or 2 for usage). */
int lcb_main(int argc, char **argv);

#endif
