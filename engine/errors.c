/* Error codes and messages, and the exception-handler API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/loop_internal.h"

typedef struct {
    int code;
    const char *name;
    const char *text;
} lc__errdesc;

static const lc__errdesc lc_errors[] = {
    {LC_ECANCELLED, "LC_ECANCELLED", "operation cancelled"},
    {LC_EINVALIDSTATE, "LC_EINVALIDSTATE", "invalid state"},
    {LC_ECLOSED, "LC_ECLOSED", "Event loop is closed"},
    {LC_ERUNNING, "LC_ERUNNING", "This event loop is already running"},
    {LC_EOTHERLOOP, "LC_EOTHERLOOP", "Cannot run the event loop while another loop is running"},
    {LC_ESTOPPED, "LC_ESTOPPED", "Event loop stopped before Future completed."},
    {LC_ENORUNNINGLOOP, "LC_ENORUNNINGLOOP", "no running event loop"},
    {LC_ENOCURRENTLOOP, "LC_ENOCURRENTLOOP", "There is no current event loop in this thread"},
    {LC_EWRONGLOOP, "LC_EWRONGLOOP",
     "The future belongs to a different loop than the one specified"},
    {LC_EWRONGTHREAD, "LC_EWRONGTHREAD",
     "Non-thread-safe operation invoked on an event loop other than the current one"},
    {LC_ESENDFILENOTAVAILABLE, "LC_ESENDFILENOTAVAILABLE", "sendfile is not available"},
    {LC_ENOTTASK, "LC_ENOTTASK", "await outside a task"},
    {LC_ESENDTIMEOUT, "LC_ESENDTIMEOUT", "send timed out: the peer took no data"},
    {LC_ESSL, "LC_ESSL", "TLS error"},
    {LC_ESSLHANDSHAKETIMEOUT, "LC_ESSLHANDSHAKETIMEOUT", "TLS handshake timed out"},
    {LC_ESSLCERTVERIFY, "LC_ESSLCERTVERIFY", "TLS certificate verify failed"},
    {LC_ESSLTRUNCATED, "LC_ESSLTRUNCATED",
     "TLS stream truncated: the peer closed the connection without close_notify"},
    {LC_ESSLSHUTDOWNTIMEOUT, "LC_ESSLSHUTDOWNTIMEOUT",
     "TLS shutdown timed out: no close_notify from the peer"},
    {LC_EDGRAMTRUNC, "LC_EDGRAMTRUNC",
     "datagram too long for the 64 KiB receive buffer: dropped, not truncated"},
    {LC_EFDTRANSPORT, "LC_EFDTRANSPORT", "File descriptor is used by transport"},
};

static const lc__errdesc *find_error(int err)
{
    for (size_t i = 0; i < sizeof(lc_errors) / sizeof(lc_errors[0]); i++)
        if (lc_errors[i].code == err)
            return &lc_errors[i];
    return NULL;
}

const char *lc_strerror(int err)
{
    if (err == 0)
        return "success";
    const lc__errdesc *d = find_error(err);
    if (d != NULL)
        return d->text;
    /* libuv's table covers every errno value it knows and its EAI/EOF codes, with static
     * strings; strerror() is neither thread-safe nor static for unknown codes. */
    if (err < 0 && err > -4096)
        return uv_strerror(err);
    return "unknown error";
}

const char *lc_err_name(int err)
{
    if (err == 0)
        return "OK";
    const lc__errdesc *d = find_error(err);
    if (d != NULL)
        return d->name;
    if (err < 0 && err > -4096)
        return uv_err_name(err);
    return "UNKNOWN";
}

/* ---- Exception handler ----------------------------------------------------------------------- */

int lc_loop_set_exception_handler(lc_loop_t *loop, lc_exception_handler_fn handler, void *arg)
{
    if (loop == NULL)
        return LC_EINVAL;
    loop->exc_handler = handler;
    loop->exc_handler_arg = handler != NULL ? arg : NULL;
    return 0;
}

lc_exception_handler_fn lc_loop_get_exception_handler(const lc_loop_t *loop, void **arg)
{
    if (arg != NULL)
        *arg = loop != NULL ? loop->exc_handler_arg : NULL;
    return loop != NULL ? loop->exc_handler : NULL;
}

void lc_loop_default_exception_handler(lc_loop_t *loop, const lc_exception_context_t *ctx)
{
    if (ctx == NULL)
        return;
    /* One write, so lines from several threads do not interleave. The keys sorted by name, as
     * asyncio's default handler prints them (message and exception are left out of the list),
     * then the error last, where asyncio prints the exception's traceback. */
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "loopcore: %s\n",
                     ctx->message != NULL ? ctx->message : "Unhandled exception in event loop");
    if (ctx->future != NULL && n < (int)sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - n, "  future: <Future %p>\n", (void *)ctx->future);
    if (ctx->handle != NULL && n < (int)sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - n, "  handle: <Handle %p>\n", (void *)ctx->handle);
    if (ctx->protocol != NULL && n < (int)sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - n, "  protocol: <%p>\n", ctx->protocol);
    if (ctx->socket >= 0 && n < (int)sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - n, "  socket: <fd %d>\n", ctx->socket);
    if (ctx->transport != NULL && n < (int)sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - n, "  transport: <%p>\n", ctx->transport);
    if (ctx->error != 0 && n < (int)sizeof(buf))
        n += snprintf(buf + n, sizeof(buf) - n, "  error: %s: %s\n", lc_err_name(ctx->error),
                      lc_strerror(ctx->error));
    if (n > (int)sizeof(buf) - 1)
        n = (int)sizeof(buf) - 1;
    fwrite(buf, 1, (size_t)n, stderr);
    (void)loop;
}

int lc_loop_call_exception_handler(lc_loop_t *loop, const lc_exception_context_t *ctx)
{
    if (loop == NULL || ctx == NULL)
        return LC_EINVAL;
    if (loop->exc_handler != NULL)
        loop->exc_handler(loop, ctx, loop->exc_handler_arg);
    else
        lc_loop_default_exception_handler(loop, ctx);
    return 0;
}
