/* call_soon_threadsafe and the zero-allocation post: the producer side of a loop's inbound queue
 * (the consumer side, draining and waking, is in engine/loop.c). */
#include <stdlib.h>

#include "engine/internal.h"

_Static_assert(sizeof(lc__call_priv) <= sizeof(((lc_call_t *)0)->_priv),
               "lc_call_t's private area is too small");

int lc_loop_call_soon_threadsafe(lc_loop_t *loop, lc_call_fn fn, void *arg, lc_handle_t **handle)
{
    if (handle != NULL)
        *handle = NULL;
    if (loop == NULL || fn == NULL)
        return LC_EINVAL;
    lc_handle_t *h = lc__handle_new_threadsafe(loop, fn, arg, handle != NULL);
    if (h == NULL)
        return LC_ENOMEM;
    /* Hand out the user's reference before the push: once pushed, the loop may run and drop
     * its own reference at any moment. */
    if (handle != NULL)
        *handle = h;
    int r = lc__loop_post(loop, &h->q);
    if (r != 0) {
        if (handle != NULL)
            *handle = NULL;
        lc__handle_free_unposted(h);
    }
    return r;
}

int lc_loop_post_threadsafe(lc_loop_t *loop, lc_call_t *call, lc_call_cb cb)
{
    if (loop == NULL || call == NULL || cb == NULL)
        return LC_EINVAL;
    lc__call_priv *c = (lc__call_priv *)(void *)call->_priv;
    c->q.kind = LC__K_POSTED;
    c->q.next = NULL;
    c->cb = cb;
    return lc__loop_post(loop, &c->q);
}
