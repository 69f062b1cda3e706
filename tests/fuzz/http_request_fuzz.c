/* libFuzzer harness for bench/http_proto (http_server's request handling): the input is a byte
 * stream from a client; it is fed to one connection in chunks whose sizes come from the input
 * itself, and the output is checked. abort() on any violation of:
 *
 *   - framing: every response is a well-formed HTTP/1.1 response: "HTTP/1.1 NNN Reason" status
 *     line, "Name: value" header lines, exactly one Content-Length and no Transfer-Encoding,
 *     then exactly Content-Length body bytes (none for a HEAD request), and a 200's body is one
 *     of the server's two bodies;
 *   - one response per request at most: no more responses than requests begun (counted by an
 *     llhttp parser of the harness's own, which also says which requests were HEAD);
 *   - close: nothing after a response that says Connection: close, in that call or any later
 *     one; the close flag is set exactly when the last response says Connection: close;
 *   - chunking: the same input fed whole gives the same responses (only the status of a final
 *     error response may differ, where two errors in one request are found in another order);
 *   - timeout: a connection left in the middle of a request head gets exactly one 408 from
 *     http_conn_timeout, saying Connection: close.
 *
 * Chunk sizes: the k-th chunk is 1 + (the k-th byte from the end of the input) % 23 bytes long,
 * so the seeds are plain request streams and mutations move the cuts.
 *
 * Build and run, from the repository root (llhttp's sources and header from Debian's node-llhttp,
 * as WORKSPACE brings them in):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE \
 *       -I. -I/usr/share/include/llhttp tests/fuzz/http_request_fuzz.c bench/http_proto.c \
 *       /usr/share/llhttp/llhttp.c /usr/share/llhttp/api.c /usr/share/llhttp/http.c \
 *       -o http_request_fuzz
 *   ./http_request_fuzz -max_total_time=60 tests/fuzz/corpus/http_request
 *
 * (Give a copy of the corpus directory, or a second, scratch, directory before it, to keep the
 * inputs libFuzzer finds out of the seeds.) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/http_proto.h"

#define FIXED_TIME ((time_t)1767225600) /* a fixed Date, so that runs compare */

static void violation(const char *what, const char *out, size_t len)
{
    fprintf(stderr, "http_request_fuzz: %s\n--- output (%zu bytes) ---\n%.*s\n---\n", what, len,
            (int)(len < 2000 ? len : 2000), out);
    abort();
}

/* ---- The harness's own view of the requests ------------------------------------------------- */

typedef struct {
    size_t begun;  /* requests begun */
    bool *is_head; /* per request begun: its method was HEAD (known once its head is complete) */
    size_t cap;
} requests_t;

static int req_on_begin(llhttp_t *p)
{
    requests_t *r = p->data;
    if (r->begun < r->cap)
        r->is_head[r->begun] = false;
    r->begun++;
    return 0;
}

static int req_on_headers_complete(llhttp_t *p)
{
    requests_t *r = p->data;
    if (r->begun > 0 && r->begun <= r->cap)
        r->is_head[r->begun - 1] = llhttp_get_method(p) == HTTP_HEAD;
    return 0;
}

static void count_requests(const uint8_t *data, size_t size, requests_t *r)
{
    static llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = req_on_begin;
    s.on_headers_complete = req_on_headers_complete;
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &s);
    p.data = r;
    llhttp_execute(&p, (const char *)data, size);
}

/* ---- Responses ------------------------------------------------------------------------------ */

typedef struct {
    size_t off, len; /* the whole response within the output */
    int status;
    bool close; /* said Connection: close */
} response_t;

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The end of the line starting at i (the index of its "\r\n"), or len if there is none. */
static size_t line_end(const char *b, size_t len, size_t i)
{
    for (; i + 1 < len; i++)
        if (b[i] == '\r' && b[i + 1] == '\n')
            return i;
    return len;
}

/* Checks the response at out[off..) for request `index`; returns it, or aborts. */
static response_t parse_response(const char *out, size_t len, size_t off, const requests_t *reqs,
                                 size_t index)
{
    response_t r = {.off = off};
    size_t e = line_end(out, len, off);
    if (e == len)
        violation("status line without CRLF", out, len);
    const char *l = out + off;
    size_t ll = e - off;
    if (ll < 13 || memcmp(l, "HTTP/1.1 ", 9) != 0 || l[9] < '1' || l[9] > '5' || l[10] < '0' ||
        l[10] > '9' || l[11] < '0' || l[11] > '9' || l[12] != ' ' || ll == 13)
        violation("bad status line", out, len);
    for (size_t i = 13; i < ll; i++)
        if ((unsigned char)l[i] < 0x20 || l[i] == 0x7f)
            violation("control byte in the reason phrase", out, len);
    r.status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');

    int content_length = -1;
    size_t i = e + 2;
    for (int nheaders = 0;; nheaders++) {
        e = line_end(out, len, i);
        if (e == len)
            violation("headers without an end", out, len);
        if (e == i)
            break; /* the empty line */
        if (nheaders == 32)
            violation("too many header lines", out, len);
        size_t colon = i;
        while (colon < e && out[colon] != ':')
            colon++;
        if (colon == i || colon + 1 >= e || out[colon + 1] != ' ')
            violation("bad header line", out, len);
        for (size_t k = i; k < colon; k++)
            if (!is_tchar((unsigned char)out[k]))
                violation("bad header name", out, len);
        for (size_t k = colon + 2; k < e; k++)
            if ((unsigned char)out[k] < 0x20 || out[k] == 0x7f)
                violation("control byte in a header value", out, len);
        size_t nl = colon - i, vl = e - colon - 2;
        const char *name = out + i, *value = out + colon + 2;
        if (nl == 14 && strncasecmp(name, "Content-Length", 14) == 0) {
            if (content_length >= 0)
                violation("two Content-Length headers", out, len);
            if (vl == 0 || vl > 6)
                violation("bad Content-Length", out, len);
            content_length = 0;
            for (size_t k = 0; k < vl; k++) {
                if (value[k] < '0' || value[k] > '9')
                    violation("bad Content-Length", out, len);
                content_length = content_length * 10 + (value[k] - '0');
            }
        } else if (nl == 17 && strncasecmp(name, "Transfer-Encoding", 17) == 0) {
            violation("Transfer-Encoding in a response", out, len);
        } else if (nl == 10 && strncasecmp(name, "Connection", 10) == 0) {
            if (vl != 5 || strncmp(value, "close", 5) != 0)
                violation("Connection other than close", out, len);
            r.close = true;
        }
        i = e + 2;
    }
    if (content_length < 0)
        violation("no Content-Length", out, len);
    size_t body = e + 2;
    bool head = index < reqs->cap && reqs->is_head[index];
    size_t body_len = head ? 0 : (size_t)content_length;
    if (body + body_len > len)
        violation("body shorter than Content-Length", out, len);
    if (r.status == 200 && !head) {
        static const char plain[] = "Hello, World!", json[] = "{\"message\":\"Hello, World!\"}";
        if (!(body_len == sizeof(plain) - 1 && memcmp(out + body, plain, body_len) == 0) &&
            !(body_len == sizeof(json) - 1 && memcmp(out + body, json, body_len) == 0))
            violation("a 200 with neither body", out, len);
    }
    if (r.status != 200 && content_length != 0)
        violation("an error with a body", out, len);
    r.len = body + body_len - off;
    return r;
}

/* Splits and checks a whole connection's output; returns the number of responses (their list in
 * *list, malloc'd). close: the connection's final close flag. */
static size_t check_output(const char *out, size_t len, bool close, const requests_t *reqs,
                           response_t **list)
{
    size_t n = 0, cap = 8;
    response_t *rs = malloc(cap * sizeof(*rs));
    for (size_t off = 0; off < len;) {
        if (n == cap)
            rs = realloc(rs, (cap *= 2) * sizeof(*rs));
        rs[n] = parse_response(out, len, off, reqs, n);
        off += rs[n].len;
        if (rs[n].close && off != len)
            violation("bytes after a response that said Connection: close", out, len);
        n++;
    }
    if (n > reqs->begun)
        violation("more responses than requests", out, len);
    if (close != (n > 0 && rs[n - 1].close))
        violation(close ? "closed without a closing response" : "Connection: close, not closed",
                  out, len);
    *list = rs;
    return n;
}

/* ---- Feeding -------------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool close;
} output_t;

static void append(output_t *o, http_out_t r)
{
    if (o->close && (r.len > 0 || !r.close))
        violation("output or a reopened connection after close", o->buf, o->len);
    if (o->len + r.len > o->cap) {
        o->cap = (o->len + r.len) * 2;
        o->buf = realloc(o->buf, o->cap);
    }
    if (r.len > 0)
        memcpy(o->buf + o->len, r.data, r.len);
    o->len += r.len;
    o->close = r.close;
}

/* Feeds data whole (chunked false) or in the input's chunks, then times out a pending head. */
static void run(const uint8_t *data, size_t size, bool chunked, output_t *o)
{
    http_conn_t c;
    http_conn_init(&c);
    size_t k = 0;
    for (size_t off = 0; off < size; k++) {
        size_t n = chunked ? 1 + (size_t)(data[size - 1 - k % size] % 23) : size;
        if (n > size - off)
            n = size - off;
        append(o, http_conn_feed(&c, (const char *)data + off, n, (double)k));
        off += n;
    }
    if (http_conn_head_expired(&c, 1e9, 1)) {
        size_t before = o->len;
        append(o, http_conn_timeout(&c));
        if (!o->close || o->len == before || memcmp(o->buf + before, "HTTP/1.1 408 ", 13) != 0)
            violation("a timed-out head without a closing 408", o->buf, o->len);
        append(o, http_conn_timeout(&c)); /* closed now: nothing more */
    }
}

static bool is_error_status(int s) { return s == 400 || s == 414 || s == 431 || s == 505; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool initialized;
    if (!initialized) {
        http_proto_init();
        http_proto_tick(FIXED_TIME);
        initialized = true;
    }
    if (size == 0)
        return 0;
    requests_t reqs = {.cap = size + 1};
    reqs.is_head = calloc(reqs.cap, sizeof(bool));
    count_requests(data, size, &reqs);

    output_t whole = {0}, cut = {0};
    run(data, size, false, &whole);
    run(data, size, true, &cut);

    response_t *wl, *cl;
    size_t wn = check_output(whole.buf, whole.len, whole.close, &reqs, &wl);
    size_t cn = check_output(cut.buf, cut.len, cut.close, &reqs, &cl);

    /* The same responses however the input was cut; a final error may differ in its status. */
    bool same = whole.len == cut.len && whole.close == cut.close &&
                (whole.len == 0 || memcmp(whole.buf, cut.buf, whole.len) == 0);
    if (!same) {
        bool ok = wn == cn && wn > 0 && whole.close && cut.close &&
                  is_error_status(wl[wn - 1].status) && is_error_status(cl[cn - 1].status) &&
                  wl[wn - 1].off == cl[cn - 1].off &&
                  memcmp(whole.buf, cut.buf, wl[wn - 1].off) == 0;
        if (!ok) {
            fprintf(stderr, "--- whole input's output ---\n%.*s\n",
                    (int)(whole.len < 2000 ? whole.len : 2000), whole.buf);
            violation("cutting the input changed the responses", cut.buf, cut.len);
        }
    }
    free(wl);
    free(cl);
    free(whole.buf);
    free(cut.buf);
    free(reqs.is_head);
    return 0;
}
