/* lcbench_http_fuzz: lcbench's HTTP response parsing (bench/lcbench/http.c: llhttp, the
 * completion of outstanding requests, Connection: close, HEAD, end-of-stream framing).
 *
 * Input: byte 0 set-up (bit 0: the requests are HEAD; bit 1: the read falls in the measured
 * window; bit 2: the peer closes after the stream, i.e. lcb_http_eof), byte 1 how many requests
 * are outstanding (0 .. 64), byte 2 the largest chunk (1 .. 256; chunk sizes are drawn from it
 * and byte 3 by a small generator), then the server's response stream.
 *
 * The stream is fed to one connection in those chunks the way run.c does (stopping when the
 * connection failed or must close), and once more in one piece to a second connection. Checks:
 * both see the same outcome (responses, status classes, failed, must_close, requests left), so
 * chunk boundaries never change what is counted; completed + outstanding = what was sent; no more
 * responses than status lines ("HTTP/") in the stream; the window's counters (requests, status
 * classes, latency histogram) agree with each other. */
#include <stdbool.h>
#include <string.h>

#include "bench/lcbench/internal.h"
#include "tests/fuzz/fuzz_check.h"

#define RING 64

typedef struct outcome_s {
    uint64_t requests_all, requests, status[6];
    int64_t hist_total;
    unsigned inflight;
    bool failed, must_close;
} outcome_t;

static lcb_config_t cfg;
static lcb_worker_t worker;
static lcb_conn_t conn;
static lcb_slot_t ring[RING];

static void setup_conn(bool head, bool in_window, unsigned outstanding)
{
    static bool inited;
    if (!inited) {
        inited = true;
        lcb_config_defaults(&cfg);
        /* A small histogram: only the counts matter here. */
        FUZZ_CHECK(lcb_hdr_init(&worker.hist, 1, 1000000, 2) == 0, "hdr_init");
    }
    lcb_hdr_t hist = worker.hist;
    lcb_hdr_reset(&hist);
    memset(&worker, 0, sizeof(worker));
    worker.hist = hist;
    worker.cfg = &cfg;
    worker.head_request = head;
    memset(&conn, 0, sizeof(conn));
    conn.w = &worker;
    conn.ring = ring;
    conn.mask = RING - 1;
    conn.inflight = outstanding;
    conn.now = 5000;
    conn.in_window = in_window;
    for (unsigned i = 0; i < RING; i++)
        ring[i] = (lcb_slot_t){.intended = i * 70, .sent = i * 70};
    lcb_http_conn_reset(&conn);
}

static outcome_t outcome(void)
{
    outcome_t o = {
        .requests_all = worker.requests_all,
        .requests = worker.requests,
        .hist_total = worker.hist.total_count,
        .inflight = conn.inflight,
        .failed = conn.failed,
        .must_close = conn.must_close,
    };
    memcpy(o.status, worker.status, sizeof(o.status));
    return o;
}

static size_t count_status_lines(const uint8_t *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i + 5 <= n; i++) {
        if (memcmp(p + i, "HTTP/", 5) == 0) {
            k++;
            i += 4;
        }
    }
    return k;
}

static void check_counters(const outcome_t *o, unsigned outstanding, bool in_window,
                           const char *how)
{
    FUZZ_CHECK(o->requests_all + o->inflight == outstanding,
               "%s: %llu completed + %u outstanding != %u sent", how,
               (unsigned long long)o->requests_all, o->inflight, outstanding);
    uint64_t sum = 0;
    for (int k = 0; k < 6; k++)
        sum += o->status[k];
    if (in_window) {
        FUZZ_CHECK(o->requests == o->requests_all, "%s: window %llu, all %llu", how,
                   (unsigned long long)o->requests, (unsigned long long)o->requests_all);
        FUZZ_CHECK(sum == o->requests && o->hist_total == (int64_t)o->requests,
                   "%s: status sum %llu, histogram %lld, requests %llu", how,
                   (unsigned long long)sum, (long long)o->hist_total,
                   (unsigned long long)o->requests);
    } else {
        FUZZ_CHECK(o->requests == 0 && sum == 0 && o->hist_total == 0,
                   "%s: counted outside the window", how);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    bool head = data[0] & 1, in_window = data[0] & 2, eof = data[0] & 4;
    unsigned outstanding = data[1] % (RING + 1);
    unsigned max_chunk = (unsigned)data[2] + 1;
    uint32_t rng = data[3] * 2654435761u + 1;
    const uint8_t *stream = data + 4;
    size_t len = size - 4;

    /* In chunks, as the transport would deliver them. */
    setup_conn(head, in_window, outstanding);
    size_t off = 0;
    while (off < len && !conn.failed && !conn.must_close) {
        rng = rng * 1103515245u + 12345u;
        size_t n = (rng >> 16) % max_chunk + 1;
        if (n > len - off)
            n = len - off;
        lcb_http_data(&conn, (const char *)stream + off, n);
        off += n;
    }
    if (eof && !conn.failed && !conn.must_close)
        lcb_http_eof(&conn);
    outcome_t chunked = outcome();
    check_counters(&chunked, outstanding, in_window, "chunked");
    size_t framed = count_status_lines(stream, off);
    FUZZ_CHECK(chunked.requests_all <= framed, "%llu responses from %zu status lines",
               (unsigned long long)chunked.requests_all, framed);

    /* In one piece. */
    setup_conn(head, in_window, outstanding);
    if (len > 0)
        lcb_http_data(&conn, (const char *)stream, len);
    if (eof && !conn.failed && !conn.must_close)
        lcb_http_eof(&conn);
    outcome_t whole = outcome();
    check_counters(&whole, outstanding, in_window, "whole");

    FUZZ_CHECK(chunked.requests_all == whole.requests_all && chunked.failed == whole.failed &&
                   chunked.must_close == whole.must_close && chunked.inflight == whole.inflight &&
                   memcmp(chunked.status, whole.status, sizeof(whole.status)) == 0,
               "chunked (max %u) and whole parses differ: responses %llu/%llu, failed %d/%d, "
               "must_close %d/%d",
               max_chunk, (unsigned long long)chunked.requests_all,
               (unsigned long long)whole.requests_all, chunked.failed, whole.failed,
               chunked.must_close, whole.must_close);
    return 0;
}
