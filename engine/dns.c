/* getaddrinfo / getnameinfo as futures, on libuv's thread pool (resolution never blocks a loop). */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/stream_internal.h"

/* The public header spells these sizes out (it includes no <netdb.h>). */
_Static_assert(LC_NI_MAXHOST >= NI_MAXHOST && LC_NI_MAXSERV >= NI_MAXSERV,
               "lc_nameinfo_t is smaller than getnameinfo's buffers");

typedef struct {
    uv_getaddrinfo_t req;
    lc__resolve_cb cb;
    void *arg;
} resolve_req;

static void resolve_done(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_req *rr = req->data;
    lc__resolve_cb cb = rr->cb;
    void *arg = rr->arg;
    free(rr);
    cb(status, res, arg);
}

int lc__resolve(lc_loop_t *loop, const char *host, const char *port, const struct addrinfo *hints,
                lc__resolve_cb cb, void *arg)
{
    resolve_req *rr = calloc(1, sizeof(*rr));
    if (rr == NULL)
        return LC_ENOMEM;
    rr->cb = cb;
    rr->arg = arg;
    rr->req.data = rr;
    int r = uv_getaddrinfo(lc__loop_uv(loop), &rr->req, resolve_done, host, port, hints);
    if (r != 0)
        free(rr);
    return r;
}

static void freeaddrinfo_dtor(void *p) { uv_freeaddrinfo(p); }

static void getaddrinfo_done(int status, struct addrinfo *res, void *arg)
{
    lc_future_t *fut = arg;
    if (lc_future_done(fut)) { /* cancelled meanwhile */
        uv_freeaddrinfo(res);
    } else if (status != 0) {
        lc_future_set_error(fut, status);
    } else {
        lc__future_set_result_owned(fut, res, freeaddrinfo_dtor);
    }
    lc_future_unref(fut);
}

int lc_loop_getaddrinfo(lc_loop_t *loop, const char *host, const char *port,
                        const struct addrinfo *hints, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || fut == NULL || (host == NULL && port == NULL))
        return LC_EINVAL;
    int r = lc_loop_create_future(loop, fut);
    if (r != 0)
        return r;
    r = lc__resolve(loop, host, port, hints, getaddrinfo_done, lc_future_ref(*fut));
    if (r != 0) {
        lc_future_unref(*fut); /* the request's reference */
        lc_future_unref(*fut);
        *fut = NULL;
    }
    return r;
}

typedef struct {
    uv_getnameinfo_t req;
    lc_future_t *fut;
} nameinfo_req;

static void getnameinfo_done(uv_getnameinfo_t *req, int status, const char *host,
                             const char *service)
{
    nameinfo_req *nr = req->data;
    lc_future_t *fut = nr->fut;
    /* host and service point into req: free it only at the end. */
    if (!lc_future_done(fut)) {
        if (status != 0) {
            lc_future_set_error(fut, status);
        } else {
            lc_nameinfo_t *ni = calloc(1, sizeof(*ni));
            if (ni == NULL) {
                lc_future_set_error(fut, LC_ENOMEM);
            } else {
                snprintf(ni->host, sizeof(ni->host), "%s", host != NULL ? host : "");
                snprintf(ni->service, sizeof(ni->service), "%s", service != NULL ? service : "");
                lc__future_set_result_owned(fut, ni, free);
            }
        }
    }
    free(nr);
    lc_future_unref(fut);
}

int lc_loop_getnameinfo(lc_loop_t *loop, const struct sockaddr *addr, int flags, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || addr == NULL || fut == NULL)
        return LC_EINVAL;
    if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
        return LC_EINVAL;
    nameinfo_req *nr = calloc(1, sizeof(*nr));
    if (nr == NULL)
        return LC_ENOMEM;
    int r = lc_loop_create_future(loop, fut);
    if (r != 0) {
        free(nr);
        return r;
    }
    nr->fut = lc_future_ref(*fut);
    nr->req.data = nr;
    r = uv_getnameinfo(lc__loop_uv(loop), &nr->req, getnameinfo_done, addr, flags);
    if (r != 0) {
        lc_future_unref(nr->fut);
        free(nr);
        lc_future_unref(*fut);
        *fut = NULL;
    }
    return r;
}
