/* http_server: HTTP/1.1 on a loopcore group, for benchmarks and the demo (issue 6).
 *
 *   http_server [--loops N] [--port P] [--host ADDR] [--mode reuseport|handoff]
 *               [--idle-timeout SECONDS] [--send-timeout SECONDS] [--quiet]
 *
 * GET /plaintext (and GET /, as the peers harness requests) answers "Hello, World!" (text/plain)
 * and GET /json {"message":"Hello, World!"}
 * (application/json), as in the TechEmpower tests; anything else is 404 (405 for a method other
 * than GET or HEAD). Keep-alive and pipelining: every response of one read's worth of pipelined
 * requests is appended to one buffer and sent with one write. A malformed request gets 400 and
 * the connection closes; more than 100 header lines or 8 KiB of header bytes give 431, a URL
 * longer than 2 KiB 414, and those close too. A connection idle for --idle-timeout seconds
 * (default 60) is closed. Requests are parsed with llhttp (Debian's node-llhttp).
 *
 * Flow control (asyncio's): when a connection's write buffer goes above the high-water mark (the
 * client sends requests but does not read the responses), the server stops reading from it until
 * resume_writing; a connection so paused is not idle. --send-timeout SECONDS (default 60, nginx's
 * send_timeout): a connection whose queued responses make no progress for that long is to be
 * aborted; the value is parsed and kept, and takes effect once the engine's
 * lc_transport_set_send_timeout() is called in conn_made (until then a paused connection stays
 * until its peer reads or goes). Timeouts are positive numbers of seconds, fractions allowed.
 *
 * Runs in the foreground until SIGINT or SIGTERM, then closes the server and the group. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llhttp.h"
#include "loopcore.h"

#define MAX_HEADERS 100
#define MAX_HEADER_BYTES 8192
#define MAX_URL 2048

typedef struct conn_s {
    llhttp_t parser;
    lc_transport_t *t;
    struct conn_s *prev, *next; /* this loop's connections, for the idle sweep */
    double last_active;
    size_t url_len;
    size_t header_bytes;
    unsigned nheaders;
    int reject;        /* 414 / 431 decided by a callback; 0 otherwise */
    bool close_after;  /* the last response asked for Connection: close */
    bool write_paused; /* between pause_writing and resume_writing: not reading, not idle */
    char url[MAX_URL];
} conn_t;

/* Per-loop state: each loop thread has its own (the connections of a loop live on its thread). */
typedef struct {
    lc_loop_t *loop;
    conn_t *conns;
    double now; /* refreshed by the sweep timer and on each read: cheap "last active" stamps */
    char *out;  /* the responses of one batch */
    size_t out_len, out_cap;
    char date[64];
    time_t date_sec;
    /* The two hot keep-alive responses, whole, rebuilt when the Date second changes: a
     * pipelined batch is then a run of memcpy()s. */
    char plain_resp[256], json_resp[256];
    size_t plain_len, json_len;
    unsigned long served;
} loop_state_t;

static __thread loop_state_t ls;
static double idle_timeout = 60;
static double send_timeout = 60;
static llhttp_settings_t settings;

static const char plaintext_body[] = "Hello, World!";
static const char json_body[] = "{\"message\":\"Hello, World!\"}";

/* ---- Responses ------------------------------------------------------------------------------- */

static bool out_reserve(size_t more);

static size_t build_response(char *buf, size_t cap, const char *ctype, const char *body,
                             size_t body_len)
{
    int n = snprintf(buf, cap,
                     "HTTP/1.1 200 OK\r\nServer: loopcore\r\nDate: %s\r\nContent-Type: "
                     "%s\r\nContent-Length: %zu\r\n\r\n%s",
                     ls.date, ctype, body_len, body);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void refresh_date(void)
{
    time_t now = time(NULL);
    if (now == ls.date_sec)
        return;
    ls.date_sec = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ls.date, sizeof(ls.date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    ls.plain_len = build_response(ls.plain_resp, sizeof(ls.plain_resp), "text/plain",
                                  plaintext_body, sizeof(plaintext_body) - 1);
    ls.json_len = build_response(ls.json_resp, sizeof(ls.json_resp), "application/json", json_body,
                                 sizeof(json_body) - 1);
}

/* Appends a prebuilt response. */
static void respond_prebuilt(const char *resp, size_t len)
{
    if (!out_reserve(len))
        return;
    memcpy(ls.out + ls.out_len, resp, len);
    ls.out_len += len;
}

static bool out_reserve(size_t more)
{
    if (ls.out_len + more <= ls.out_cap)
        return true;
    size_t cap = ls.out_cap ? ls.out_cap : 16384;
    while (cap < ls.out_len + more)
        cap *= 2;
    char *p = realloc(ls.out, cap);
    if (p == NULL)
        return false;
    ls.out = p;
    ls.out_cap = cap;
    return true;
}

static void respond(int status, const char *reason, const char *ctype, const char *body,
                    size_t body_len, bool head, bool close)
{
    if (!out_reserve(512 + body_len))
        return;
    int n = snprintf(ls.out + ls.out_len, ls.out_cap - ls.out_len,
                     "HTTP/1.1 %d %s\r\nServer: loopcore\r\nDate: %s\r\n%s%s%sContent-Length: "
                     "%zu\r\n%s\r\n",
                     status, reason, ls.date, ctype != NULL ? "Content-Type: " : "",
                     ctype != NULL ? ctype : "", ctype != NULL ? "\r\n" : "", body_len,
                     close ? "Connection: close\r\n" : "");
    ls.out_len += (size_t)n;
    if (!head && body_len > 0) {
        memcpy(ls.out + ls.out_len, body, body_len);
        ls.out_len += body_len;
    }
}

/* ---- llhttp callbacks ------------------------------------------------------------------------ */

static int on_message_begin(llhttp_t *p)
{
    conn_t *c = p->data;
    c->url_len = 0;
    c->header_bytes = 0;
    c->nheaders = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (c->url_len + len >= MAX_URL) {
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
    conn_t *c = p->data;
    c->header_bytes += len;
    if (c->header_bytes > MAX_HEADER_BYTES) {
        c->reject = 431;
        return -1;
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    if (++c->nheaders > MAX_HEADERS) {
        c->reject = 431;
        return -1;
    }
    return 0;
}

static bool url_is(const conn_t *c, const char *path)
{
    size_t n = strlen(path);
    return c->url_len >= n && memcmp(c->url, path, n) == 0 && (c->url_len == n || c->url[n] == '?');
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    bool keep_alive = llhttp_should_keep_alive(p);
    int method = llhttp_get_method(p);
    bool head = method == HTTP_HEAD;
    ls.served++;
    if (method == HTTP_GET && keep_alive && (url_is(c, "/plaintext") || url_is(c, "/")))
        respond_prebuilt(ls.plain_resp, ls.plain_len); /* the hot paths */
    else if (method == HTTP_GET && keep_alive && url_is(c, "/json"))
        respond_prebuilt(ls.json_resp, ls.json_len);
    else if (method != HTTP_GET && !head)
        respond(405, "Method Not Allowed", NULL, NULL, 0, false, !keep_alive);
    else if (url_is(c, "/plaintext") || url_is(c, "/"))
        respond(200, "OK", "text/plain", plaintext_body, sizeof(plaintext_body) - 1, head,
                !keep_alive);
    else if (url_is(c, "/json"))
        respond(200, "OK", "application/json", json_body, sizeof(json_body) - 1, head, !keep_alive);
    else
        respond(404, "Not Found", NULL, NULL, 0, false, !keep_alive);
    if (!keep_alive) {
        c->close_after = true;
        return HPE_PAUSED; /* nothing after this request is served */
    }
    return 0;
}

/* ---- Protocol -------------------------------------------------------------------------------- */

static void conn_made(lc_transport_t *t, void *user)
{
    conn_t *c = user;
    /* send timeout: applied by lc_transport_set_send_timeout() once the engine has it */
    c->t = t;
    c->last_active = ls.now;
    c->prev = NULL;
    c->next = ls.conns;
    if (ls.conns != NULL)
        ls.conns->prev = c;
    ls.conns = c;
}

static void conn_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    conn_t *c = user;
    c->last_active = ls.now;
    refresh_date();
    ls.out_len = 0;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err != HPE_OK && err != HPE_PAUSED) {
        int status = c->reject != 0 ? c->reject : 400;
        const char *reason = status == 431   ? "Request Header Fields Too Large"
                             : status == 414 ? "URI Too Long"
                                             : "Bad Request";
        respond(status, reason, NULL, NULL, 0, false, true);
        c->close_after = true;
    }
    if (ls.out_len > 0)
        lc_transport_write(t, ls.out, ls.out_len); /* the whole batch in one write */
    if (c->close_after)
        lc_transport_close(t);
}

static void conn_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    conn_t *c = user;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (ls.conns == c)
        ls.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c);
}

/* Flow control: while the peer does not take our responses (the write buffer is above the
 * high-water mark), read no more requests from it. What one read's pipelined requests produce is
 * still written (bounded by one read); nothing more is queued until resume_writing. */
static void conn_pause_writing(lc_transport_t *t, void *user)
{
    conn_t *c = user;
    c->write_paused = true;
    lc_transport_pause_reading(t);
}

static void conn_resume_writing(lc_transport_t *t, void *user)
{
    conn_t *c = user;
    c->write_paused = false;
    c->last_active = ls.now; /* the peer read: it is not idle */
    lc_transport_resume_reading(t);
}

static const lc_protocol_t http_proto = {
    .connection_made = conn_made,
    .data_received = conn_data,
    .connection_lost = conn_lost,
    .pause_writing = conn_pause_writing,
    .resume_writing = conn_resume_writing,
};

static int http_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LC_ENOMEM;
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    *proto = &http_proto;
    *user = c;
    return 0;
}

/* ---- Per-loop housekeeping ------------------------------------------------------------------- */

static void sweep(void *arg)
{
    (void)arg;
    ls.now = lc_loop_time(ls.loop);
    /* A connection paused by back-pressure is not idle: it waits for its peer to read, which the
     * send timeout bounds (closing it here would only leave it flushing, stuck, all the same). */
    for (conn_t *c = ls.conns; c != NULL; c = c->next)
        if (!c->write_paused && ls.now - c->last_active > idle_timeout)
            lc_transport_close(c->t); /* connection_lost unlinks it later */
    double period = idle_timeout / 4 < 1.0 ? idle_timeout / 4 : 1.0;
    lc_loop_call_later(ls.loop, period, sweep, NULL, NULL);
}

static void on_loop_start(lc_loop_t *loop, unsigned index, void *arg)
{
    (void)index;
    (void)arg;
    ls.loop = loop;
    ls.now = lc_loop_time(loop);
    refresh_date();
    sweep(NULL);
}

/* Runs on each loop at shutdown: drops the connections and frees the loop's buffers. */
static int loop_shutdown(lc_loop_t *loop, void *arg, void **result)
{
    (void)loop;
    (void)arg;
    (void)result;
    for (conn_t *c = ls.conns; c != NULL; c = c->next)
        lc_transport_abort(c->t); /* no data_received after this; connection_lost frees c */
    free(ls.out);
    ls.out = NULL;
    ls.out_len = ls.out_cap = 0;
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--loops N] [--port P] [--host ADDR] [--mode reuseport|handoff] "
            "[--idle-timeout SECONDS] [--send-timeout SECONDS] [--quiet]\n",
            argv0);
    exit(2);
}

/* A positive, finite number of seconds (fractions allowed), at most a day. */
static bool parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !(v > 0) || v > 86400)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    unsigned loops = 0;
    int port = 8080;
    const char *host = "127.0.0.1";
    lc_group_server_mode mode = LC_GROUP_SERVER_REUSEPORT;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--loops") == 0 && v != NULL) {
            loops = (unsigned)atoi(v), i++;
        } else if (strcmp(a, "--port") == 0 && v != NULL) {
            port = atoi(v), i++;
        } else if (strcmp(a, "--host") == 0 && v != NULL) {
            host = v, i++;
        } else if (strcmp(a, "--mode") == 0 && v != NULL) {
            if (strcmp(v, "reuseport") == 0)
                mode = LC_GROUP_SERVER_REUSEPORT;
            else if (strcmp(v, "handoff") == 0)
                mode = LC_GROUP_SERVER_HANDOFF;
            else
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--idle-timeout") == 0 && v != NULL) {
            if (!parse_seconds(v, &idle_timeout))
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--send-timeout") == 0 && v != NULL) {
            if (!parse_seconds(v, &send_timeout))
                usage(argv[0]);
            i++;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else {
            usage(argv[0]);
        }
    }
    if (port < 0 || port > 65535)
        usage(argv[0]);

    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_bytes;
    settings.on_header_value = on_header_bytes;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_message_complete = on_message_complete;

    /* Loop threads inherit this mask: SIGINT/SIGTERM are taken by sigwait() below. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    lc_group_t *g = NULL;
    int r = lc_group_create(&g, &(lc_group_opts){.nloops = loops, .on_start = on_loop_start});
    if (r == 0)
        r = lc_group_start(g);
    lc_group_server_t *gs = NULL;
    if (r == 0)
        r = lc_group_create_server(
            g, http_factory, NULL,
            &(lc_group_server_opts){.host = host, .port = port, .backlog = 4096, .mode = mode},
            &gs);
    if (r != 0) {
        fprintf(stderr, "http_server: %s\n", lc_strerror(r));
        lc_group_free(g);
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "http_server: listening on %s:%d loops=%u mode=%s\n", host,
                lc_group_server_port(gs), lc_group_size(g),
                mode == LC_GROUP_SERVER_REUSEPORT ? "reuseport" : "handoff");
    int sig = 0;
    sigwait(&sigs, &sig);
    lc_group_server_close(gs);
    lc_group_broadcast_wait(g, loop_shutdown, NULL);
    lc_group_free(g);
    return 0;
}
