/* HTTP/1.1 mode: the request is built once; responses are parsed in place by llhttp, whose only
 * callback here is on_message_complete (plus on_headers_complete for HEAD, whose responses have
 * no body): bodies, chunked or with a Content-Length, are skipped without being copied. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench/lcbench/internal.h"

static bool has_header(const lcb_config_t *cfg, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < cfg->nheaders; i++) {
        if (strncasecmp(cfg->headers[i], name, n) == 0 && cfg->headers[i][n] == ':')
            return true;
    }
    return false;
}

int lcb_http_build_request(const lcb_config_t *cfg, char **out, size_t *len)
{
    size_t cap = strlen(cfg->method) + strlen(cfg->path) + strlen(cfg->authority) + 160;
    for (unsigned i = 0; i < cfg->nheaders; i++)
        cap += strlen(cfg->headers[i]) + 2;
    size_t body_len = cfg->body != NULL ? strlen(cfg->body) : 0;
    cap += body_len;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -1;
    size_t n = (size_t)snprintf(buf, cap, "%s %s HTTP/1.1\r\n", cfg->method, cfg->path);
    if (!has_header(cfg, "Host"))
        n += (size_t)snprintf(buf + n, cap - n, "Host: %s\r\n", cfg->authority);
    for (unsigned i = 0; i < cfg->nheaders; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\r\n", cfg->headers[i]);
    if (cfg->handshake && !has_header(cfg, "Connection"))
        n += (size_t)snprintf(buf + n, cap - n, "Connection: close\r\n");
    if (cfg->body != NULL && !has_header(cfg, "Content-Length"))
        n += (size_t)snprintf(buf + n, cap - n, "Content-Length: %zu\r\n", body_len);
    n += (size_t)snprintf(buf + n, cap - n, "\r\n");
    if (body_len > 0) {
        memcpy(buf + n, cfg->body, body_len);
        n += body_len;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    lcb_conn_t *c = p->data;
    unsigned code = p->status_code;
    unsigned cls = code >= 100 && code < 600 ? code / 100 : 0;
    if (!lcb_conn_complete(c, cls)) {
        c->failed = true;
        return HPE_USER;
    }
    if (!llhttp_should_keep_alive(p)) {
        /* The server closes after this response: stop here, the connection is replaced. */
        c->must_close = true;
        return HPE_PAUSED;
    }
    return HPE_OK;
}

/* A response to HEAD has headers only: 1 tells llhttp there is no body to wait for. */
static int on_headers_complete_head(llhttp_t *p)
{
    (void)p;
    return 1;
}

static llhttp_settings_t settings_plain, settings_head;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void settings_init(void)
{
    llhttp_settings_init(&settings_plain);
    settings_plain.on_message_complete = on_message_complete;
    llhttp_settings_init(&settings_head);
    settings_head.on_message_complete = on_message_complete;
    settings_head.on_headers_complete = on_headers_complete_head;
}

void lcb_http_conn_reset(lcb_conn_t *c)
{
    pthread_once(&settings_once, settings_init);
    llhttp_init(&c->parser, HTTP_RESPONSE, c->w->head_request ? &settings_head : &settings_plain);
    c->parser.data = c;
}

void lcb_http_data(lcb_conn_t *c, const char *data, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (e == HPE_OK)
        return;
    if (e == HPE_PAUSED && c->must_close)
        return;
    c->failed = true;
}

void lcb_http_eof(lcb_conn_t *c)
{
    if (c->inflight > 0 && !c->failed && !c->must_close && llhttp_get_errno(&c->parser) == HPE_OK)
        llhttp_finish(&c->parser);
}
