/* http_static: http_server's --static DIR mode (issue 15), a connection protocol of its own.
 *
 * GET /file/NAME answers 200 with DIR/NAME's bytes (Content-Length, application/octet-stream),
 * HEAD the same without the body; a NAME that is not [A-Za-z0-9._-]+ starting with something
 * other than '.', or that is not a regular file (symbolic links are not followed: O_NOFOLLOW,
 * openat on DIR), is 404, so that no path leaves DIR ("..", "/", "%2e%2e", a symlink out). Other
 * paths are 404 too; methods other than GET and HEAD 405 (and the connection closes); a
 * malformed request 400 (closes). Keep-alive as HTTP/1.1 says (Connection: close and HTTP/1.0
 * without keep-alive close after the response); pipelined requests are answered in order, one at
 * a time: the bytes after a request wait while its file is sent (at most one read's worth, 64
 * KiB, is held; reading is paused meanwhile).
 *
 * The body goes with lc_loop_sendfile (native sendfile(2); over TLS its read + write fallback),
 * or with --static-copy by pread() of 256 KiB chunks and lc_transport_write, waiting for
 * resume_writing whenever the transport pauses: the copying path a server without sendfile takes.
 *
 * Bounds: a connection with no request in progress, or a request head unfinished, for longer
 * than the idle timeout is closed (a per-loop sweep); the send timeout (http_server's
 * --send-timeout) resets a peer that stops reading, in both modes (lc_loop_sendfile honours it). */
#include "http_static.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llhttp.h"

#define STATIC_CHUNK (256 * 1024)
#define STATIC_MAX_PENDING (64 * 1024)
#define STATIC_MAX_URL 1024

typedef struct sconn_s {
    llhttp_t parser;
    lc_transport_t *t;
    struct sconn_s *prev, *next;
    double last_active;
    char url[STATIC_MAX_URL];
    size_t url_len;
    bool url_too_long;
    bool complete; /* on_message_complete saw a request: the parser paused after it */
    bool busy;     /* a body is being sent */
    bool closed;   /* a closing response was queued */
    bool write_paused;
    bool in_parse; /* inside parse_some(): a body that ends at once leaves the rest to it */
    /* Bytes read and not yet parsed (held while busy). */
    char *pending;
    size_t plen;
    /* The body being sent. */
    int file_fd;
    off_t size, off;
    lc_future_t *fut;
    bool close_after;
} sconn_t;

static int dir_fd = -1;
static bool copy_mode;
static double idle_timeout = 60, send_timeout = 60;
static llhttp_settings_t settings;
static __thread lc_loop_t *s_loop;
static __thread sconn_t *s_conns;
static __thread char *s_chunk; /* the copy mode's read buffer, per thread */

static void process(sconn_t *c);

/* ---- parsing ----------------------------------------------------------------------------------
 */

static int on_message_begin(llhttp_t *p)
{
    sconn_t *c = p->data;
    c->url_len = 0;
    c->url_too_long = false;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    sconn_t *c = p->data;
    if (c->url_len + len >= sizeof(c->url)) {
        c->url_too_long = true;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    sconn_t *c = p->data;
    c->complete = true;
    return HPE_PAUSED; /* one request at a time: process() answers it, then parses on */
}

/* ---- responses --------------------------------------------------------------------------------
 */

/* A short text response; its body is left out for HEAD (the Content-Length stays). */
static void send_simple(sconn_t *c, const char *status, const char *body, bool close)
{
    char buf[256];
    bool head = c->complete && llhttp_get_method(&c->parser) == HTTP_HEAD;
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %s\r\nServer: loopcore\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     status, strlen(body), close ? "Connection: close\r\n" : "", head ? "" : body);
    lc_transport_write(c->t, buf, (size_t)n);
    if (close) {
        c->closed = true;
        lc_transport_close(c->t);
    }
}

/* NAME is [A-Za-z0-9._-]+ and does not start with '.': no "..", no '/', no hidden files. */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static void body_done(sconn_t *c)
{
    close(c->file_fd);
    c->file_fd = -1;
    c->busy = false;
    c->last_active = lc_loop_time(s_loop);
    if (c->close_after) {
        c->closed = true;
        lc_transport_close(c->t);
        return;
    }
    lc_transport_resume_reading(c->t);
    if (!c->in_parse) /* else the parse that started this body goes on by itself */
        process(c);
}

static void sendfile_done(lc_future_t *fut, void *arg)
{
    sconn_t *c = arg;
    int r = lc_future_result(fut, NULL);
    lc_future_unref(c->fut);
    c->fut = NULL;
    if (r != 0) { /* the connection is gone or going (connection_lost follows) */
        close(c->file_fd);
        c->file_fd = -1;
        c->busy = false;
        if (!lc_transport_is_closing(c->t))
            lc_transport_abort(c->t); /* a body cut short: the response cannot be finished */
        return;
    }
    body_done(c);
}

/* Copy mode: chunks while the transport takes them. */
static void copy_more(sconn_t *c)
{
    if (s_chunk == NULL && (s_chunk = malloc(STATIC_CHUNK)) == NULL) {
        lc_transport_abort(c->t);
        return;
    }
    while (c->busy && !c->write_paused && !lc_transport_is_closing(c->t)) {
        if (c->off >= c->size) {
            body_done(c);
            return;
        }
        size_t want = c->size - c->off < STATIC_CHUNK ? (size_t)(c->size - c->off) : STATIC_CHUNK;
        ssize_t n = pread(c->file_fd, s_chunk, want, c->off);
        if (n <= 0) { /* the file shrank or failed: the response cannot be finished */
            lc_transport_abort(c->t);
            return;
        }
        c->off += n;
        if (lc_transport_write(c->t, s_chunk, (size_t)n) != 0)
            return; /* closing: connection_lost cleans up */
    }
}

static void serve(sconn_t *c)
{
    int method = llhttp_get_method(&c->parser);
    bool keep_alive = llhttp_should_keep_alive(&c->parser);
    if (method != HTTP_GET && method != HTTP_HEAD) {
        send_simple(c, "405 Method Not Allowed", "Method Not Allowed", true);
        return;
    }
    static const char prefix[] = "/file/";
    size_t pl = sizeof(prefix) - 1;
    int fd = -1;
    struct stat st;
    if (!c->url_too_long && c->url_len > pl && memcmp(c->url, prefix, pl) == 0 &&
        name_ok(c->url + pl, c->url_len - pl)) {
        char name[256];
        memcpy(name, c->url + pl, c->url_len - pl);
        name[c->url_len - pl] = '\0';
        fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        send_simple(c, "404 Not Found", "Not Found", !keep_alive);
        return;
    }
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nServer: loopcore\r\nContent-Type: application/octet-stream"
                     "\r\nContent-Length: %lld\r\n%s\r\n",
                     (long long)st.st_size, keep_alive ? "" : "Connection: close\r\n");
    lc_transport_write(c->t, head, (size_t)n);
    c->close_after = !keep_alive;
    c->file_fd = fd;
    c->size = st.st_size;
    c->off = 0;
    c->busy = true;
    if (method == HTTP_HEAD || st.st_size == 0) { /* no body: process() goes on */
        close(fd);
        c->file_fd = -1;
        c->busy = false;
        if (c->close_after) {
            c->closed = true;
            lc_transport_close(c->t);
        }
        return;
    }
    lc_transport_pause_reading(c->t); /* the next request waits for this body */
    if (copy_mode) {
        copy_more(c);
        return;
    }
    int r = lc_loop_sendfile(s_loop, c->t, fd, 0, (size_t)st.st_size, true, &c->fut);
    if (r == 0)
        r = lc_future_add_done_callback(c->fut, sendfile_done, c);
    if (r != 0) {
        if (c->fut != NULL)
            lc_future_cancel(c->fut);
        lc_future_unref(c->fut);
        c->fut = NULL;
        close(fd);
        c->file_fd = -1;
        c->busy = false;
        lc_transport_abort(c->t);
    }
}

/* Parses and answers requests from buf until a body is in progress (or the connection is
 * done); returns the bytes used. */
static size_t parse_some(sconn_t *c, const char *buf, size_t len)
{
    size_t done = 0;
    c->in_parse = true;
    while (!c->busy && !c->closed && done < len && !lc_transport_is_closing(c->t)) {
        c->complete = false;
        llhttp_errno_t err = llhttp_execute(&c->parser, buf + done, len - done);
        size_t used = len - done;
        if (err == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - (buf + done));
            llhttp_resume(&c->parser);
        } else if (err != HPE_OK) {
            send_simple(c, "400 Bad Request", "Bad Request", true);
            done = len;
            break;
        }
        done += used;
        if (c->complete) {
            c->last_active = lc_loop_time(s_loop);
            serve(c);
        }
    }
    c->in_parse = false;
    return done;
}

/* Parses and answers the pending bytes (those that waited for a body). */
static void process(sconn_t *c)
{
    if (c->plen == 0)
        return;
    size_t used = parse_some(c, c->pending, c->plen);
    memmove(c->pending, c->pending + used, c->plen - used);
    c->plen -= used;
    if (c->plen == 0) {
        free(c->pending);
        c->pending = NULL;
    }
}

/* ---- the protocol -----------------------------------------------------------------------------
 */

static void s_made(lc_transport_t *t, void *user)
{
    sconn_t *c = user;
    c->t = t;
    lc_transport_set_send_timeout(t, send_timeout);
    c->last_active = lc_loop_time(s_loop);
    c->next = s_conns;
    if (s_conns != NULL)
        s_conns->prev = c;
    s_conns = c;
}

static void s_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    sconn_t *c = user;
    if (c->closed)
        return;
    if (c->plen == 0) { /* the common case: parse straight from the read buffer */
        size_t used = parse_some(c, data, len);
        data += used;
        len -= used;
        if (len == 0 || c->closed || lc_transport_is_closing(t))
            return;
    }
    /* What follows a request whose body is being sent waits (reading is paused meanwhile, so
     * this is at most one read's worth beyond a request head in progress). */
    if (c->plen + len > STATIC_MAX_PENDING) {
        c->plen = 0;
        send_simple(c, "431 Request Header Fields Too Large", "Too Large", true);
        return;
    }
    if (c->pending == NULL && (c->pending = malloc(STATIC_MAX_PENDING)) == NULL) {
        lc_transport_abort(t);
        return;
    }
    memcpy(c->pending + c->plen, data, len);
    c->plen += len;
    if (!c->busy)
        process(c);
}

static void s_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    sconn_t *c = user;
    if (c->fut != NULL) { /* its done callback will not run (removed, or discarded by a close) */
        lc_future_remove_done_callback(c->fut, sendfile_done, c);
        lc_future_unref(c->fut);
    }
    if (c->file_fd >= 0)
        close(c->file_fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (s_conns == c)
        s_conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->pending);
    free(c);
}

static void s_pause_writing(lc_transport_t *t, void *user)
{
    sconn_t *c = user;
    c->write_paused = true;
    lc_transport_pause_reading(t);
}

static void s_resume_writing(lc_transport_t *t, void *user)
{
    sconn_t *c = user;
    c->write_paused = false;
    c->last_active = lc_loop_time(s_loop);
    if (c->busy && c->fut == NULL) {
        copy_more(c);
        return;
    }
    if (!c->busy)
        lc_transport_resume_reading(t);
}

static const lc_protocol_t static_protocol = {
    .connection_made = s_made,
    .data_received = s_data,
    .connection_lost = s_lost,
    .pause_writing = s_pause_writing,
    .resume_writing = s_resume_writing,
};

int http_static_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    sconn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LC_ENOMEM;
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    c->file_fd = -1;
    *proto = &static_protocol;
    *user = c;
    return 0;
}

/* ---- per loop ---------------------------------------------------------------------------------
 */

static void sweep(void *arg)
{
    (void)arg;
    double now = lc_loop_time(s_loop);
    for (sconn_t *c = s_conns; c != NULL; c = c->next) {
        if (c->busy || c->write_paused || lc_transport_is_closing(c->t))
            continue; /* a body in progress is bounded by the send timeout */
        if (now - c->last_active > idle_timeout)
            lc_transport_close(c->t);
    }
    double period = idle_timeout / 4 < 1.0 ? idle_timeout / 4 : 1.0;
    lc_loop_call_later(s_loop, period, sweep, NULL, NULL);
}

void http_static_loop_start(lc_loop_t *loop)
{
    s_loop = loop;
    sweep(NULL);
}

void http_static_loop_shutdown(void)
{
    for (sconn_t *c = s_conns; c != NULL; c = c->next)
        lc_transport_abort(c->t);
    free(s_chunk);
    s_chunk = NULL;
}

int http_static_init(const char *dir, bool copy, double idle, double send)
{
    dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return -errno;
    copy_mode = copy;
    idle_timeout = idle;
    send_timeout = send;
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_message_complete = on_message_complete;
    return 0;
}
