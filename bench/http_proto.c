/* http_proto: http_server's requests to responses, with no sockets (see http_proto.h). The llhttp
 * callbacks append each request's response to this thread's output buffer; the hot keep-alive
 * GETs are a memcpy() of a prebuilt response, rebuilt when the Date second changes. */
#include "http_proto.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-thread state: a connection is fed on one thread at a time. */
typedef struct {
    char *out; /* the responses of one call */
    size_t out_len, out_cap;
    bool oom;          /* a response did not fit and could not be grown: close */
    size_t last_start; /* where the last response of out begins */
    char date[64];
    time_t date_sec;
    /* The two hot keep-alive responses, whole: a pipelined batch is then a run of memcpy()s. */
    char plain_resp[256], json_resp[256];
    size_t plain_len, json_len;
} proto_thread_t;

static __thread proto_thread_t pt = {.date_sec = -1};
static llhttp_settings_t settings;

static const char plaintext_body[] = "Hello, World!";
static const char json_body[] = "{\"message\":\"Hello, World!\"}";

/* ---- Responses ------------------------------------------------------------------------------- */

/* A thread that made an output buffer frees it when it exits (a loop thread that a group stopped
 * without a last call of http_proto_thread_free). */
static pthread_key_t pt_key;
static pthread_once_t pt_key_once = PTHREAD_ONCE_INIT;

static void pt_thread_exit(void *arg)
{
    (void)arg;
    http_proto_thread_free();
}

static void pt_key_init(void) { pthread_key_create(&pt_key, pt_thread_exit); }

/* On failure pt.oom is set: on_message_complete then stops the parser, so that no response
 * follows one that is missing, and the connection closes. */
static bool out_reserve(size_t more)
{
    if (pt.out_len + more <= pt.out_cap)
        return true;
    if (pt.out == NULL) {
        pthread_once(&pt_key_once, pt_key_init);
        pthread_setspecific(pt_key, &pt);
    }
    size_t cap = pt.out_cap ? pt.out_cap : 16384;
    while (cap < pt.out_len + more)
        cap *= 2;
    char *p = realloc(pt.out, cap);
    if (p == NULL) {
        pt.oom = true;
        return false;
    }
    pt.out = p;
    pt.out_cap = cap;
    return true;
}

static size_t build_response(char *buf, size_t cap, const char *ctype, const char *body,
                             size_t body_len)
{
    int n = snprintf(buf, cap,
                     "HTTP/1.1 200 OK\r\nServer: loopcore\r\nDate: %s\r\nContent-Type: "
                     "%s\r\nContent-Length: %zu\r\n\r\n%s",
                     pt.date, ctype, body_len, body);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

void http_proto_tick(time_t now)
{
    if (now == pt.date_sec)
        return;
    pt.date_sec = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(pt.date, sizeof(pt.date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    pt.plain_len = build_response(pt.plain_resp, sizeof(pt.plain_resp), "text/plain",
                                  plaintext_body, sizeof(plaintext_body) - 1);
    pt.json_len = build_response(pt.json_resp, sizeof(pt.json_resp), "application/json", json_body,
                                 sizeof(json_body) - 1);
}

void http_proto_thread_free(void)
{
    free(pt.out);
    pt.out = NULL;
    pt.out_len = pt.out_cap = 0;
}

/* Appends a prebuilt response. */
static void respond_prebuilt(const char *resp, size_t len)
{
    if (!out_reserve(len))
        return;
    pt.last_start = pt.out_len;
    memcpy(pt.out + pt.out_len, resp, len);
    pt.out_len += len;
}

/* Appends a response: headers (plus extra, whole "Name: value\r\n" lines, if not NULL), then the
 * body unless head. */
static void respond(int status, const char *reason, const char *ctype, const char *extra,
                    const char *body, size_t body_len, bool head, bool close)
{
    if (!out_reserve(512 + body_len))
        return;
    pt.last_start = pt.out_len;
    size_t avail = pt.out_cap - pt.out_len;
    int n = snprintf(pt.out + pt.out_len, avail,
                     "HTTP/1.1 %d %s\r\nServer: loopcore\r\nDate: %s\r\n%s%s%s%sContent-Length: "
                     "%zu\r\n%s\r\n",
                     status, reason, pt.date, ctype != NULL ? "Content-Type: " : "",
                     ctype != NULL ? ctype : "", ctype != NULL ? "\r\n" : "",
                     extra != NULL ? extra : "", body_len, close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= avail) {
        pt.oom = true; /* cannot happen with the fixed strings above; never send half of it */
        return;
    }
    pt.out_len += (size_t)n;
    if (!head && body_len > 0) {
        memcpy(pt.out + pt.out_len, body, body_len);
        pt.out_len += body_len;
    }
}

static const char *reason_of(int status)
{
    switch (status) {
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Bad Request";
    }
}

/* ---- llhttp callbacks ------------------------------------------------------------------------ */

static int on_message_begin(llhttp_t *p)
{
    http_conn_t *c = p->data;
    c->url_len = 0;
    c->header_bytes = 0;
    c->nheaders = 0;
    c->in_head = true;
    c->in_message = true;
    c->head_start = c->now;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->url_len + len >= HTTP_MAX_URL) {
        c->reject = 414;
        return -1;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_header_bytes(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    http_conn_t *c = p->data;
    c->header_bytes += len;
    if (c->header_bytes > HTTP_MAX_HEADER_BYTES) {
        c->reject = 431;
        return -1;
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    http_conn_t *c = p->data;
    if (++c->nheaders > HTTP_MAX_HEADERS) {
        c->reject = 431;
        return -1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    http_conn_t *c = p->data;
    c->in_head = false;
    c->progress++;
    if (p->http_major != 1) {
        /* 0.9 is llhttp's name for a request line without a version: refused, not answered
         * with a bare HTTP/0.9 body. */
        c->reject = p->http_major == 0 ? 400 : 505;
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    (void)len;
    http_conn_t *c = p->data;
    c->progress++; /* a body arriving is not an idle connection */
    return 0;
}

static bool url_is(const http_conn_t *c, const char *path)
{
    size_t n = strlen(path);
    return c->url_len >= n && memcmp(c->url, path, n) == 0 && (c->url_len == n || c->url[n] == '?');
}

static int on_message_complete(llhttp_t *p)
{
    http_conn_t *c = p->data;
    c->progress++;
    c->in_message = false;
    /* An upgrade (Connection: upgrade + Upgrade, or CONNECT) is answered as a plain request and
     * the connection closed: the bytes after it would be the other protocol's. */
    bool keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
    int method = llhttp_get_method(p);
    bool head = method == HTTP_HEAD;
    if (method == HTTP_GET && keep_alive && (url_is(c, "/plaintext") || url_is(c, "/")))
        respond_prebuilt(pt.plain_resp, pt.plain_len); /* the hot paths */
    else if (method == HTTP_GET && keep_alive && url_is(c, "/json"))
        respond_prebuilt(pt.json_resp, pt.json_len);
    else if (method != HTTP_GET && !head)
        respond(405, "Method Not Allowed", NULL, "Allow: GET, HEAD\r\n", NULL, 0, false,
                !keep_alive);
    else if (url_is(c, "/plaintext") || url_is(c, "/"))
        respond(200, "OK", "text/plain", NULL, plaintext_body, sizeof(plaintext_body) - 1, head,
                !keep_alive);
    else if (url_is(c, "/json"))
        respond(200, "OK", "application/json", NULL, json_body, sizeof(json_body) - 1, head,
                !keep_alive);
    else
        respond(404, "Not Found", NULL, NULL, NULL, 0, false, !keep_alive);
    if (!keep_alive || pt.oom) {
        c->closed = true;
        return HPE_PAUSED; /* nothing after this request is served */
    }
    return 0;
}

/* ---- Connections ----------------------------------------------------------------------------- */

void http_proto_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_bytes;
    settings.on_header_value = on_header_bytes;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

void http_conn_init(http_conn_t *c)
{
    memset(c, 0, offsetof(http_conn_t, url));
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
}

/* Starts a call's output (and this thread's Date, if http_proto_tick was not called yet). */
static void begin_output(void)
{
    pt.out_len = 0;
    pt.oom = false;
    if (pt.date_sec == -1)
        http_proto_tick(time(NULL));
}

static http_out_t take_output(const http_conn_t *c)
{
    return (http_out_t){.data = pt.out, .len = pt.out_len, .close = c->closed || pt.oom};
}

http_out_t http_conn_feed(http_conn_t *c, const char *data, size_t len, double now)
{
    begin_output();
    if (c->closed)
        return take_output(c);
    c->now = now;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err != HPE_OK && err != HPE_PAUSED) {
        int status = c->reject != 0 ? c->reject : 400;
        respond(status, reason_of(status), NULL, NULL, NULL, 0, false, true);
        c->closed = true;
    }
    return take_output(c);
}

http_out_t http_conn_close_after(http_conn_t *c, http_out_t out)
{
    static const char hdr[] = "Connection: close\r\n";
    if (out.close || c->closed) /* it already closes */
        return out;
    c->closed = true;
    if (out.len == 0 || out.data != pt.out)
        return take_output(c);
    /* The last response's head ends at its first blank line: the header goes before it. */
    const char *start = pt.out + pt.last_start;
    const char *end = memmem(start, pt.out_len - pt.last_start, "\r\n\r\n", 4);
    if (end == NULL)
        return take_output(c);
    size_t at = (size_t)(end - pt.out) + 2;
    if (!out_reserve(sizeof(hdr) - 1))
        return take_output(c); /* closes all the same, without saying so */
    memmove(pt.out + at + sizeof(hdr) - 1, pt.out + at, pt.out_len - at);
    memcpy(pt.out + at, hdr, sizeof(hdr) - 1);
    pt.out_len += sizeof(hdr) - 1;
    return take_output(c);
}

http_out_t http_conn_timeout(http_conn_t *c)
{
    begin_output();
    if (!c->closed) {
        respond(408, reason_of(408), NULL, NULL, NULL, 0, false, true);
        c->closed = true;
    }
    return take_output(c);
}
