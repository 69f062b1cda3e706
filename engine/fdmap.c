/* The loop's file-descriptor registry: for each fd number, whether a transport owns it and which
 * watcher (engine/fdwatch.c) watches it. An array indexed by fd, doubled up to the highest fd
 * registered, so every lookup is O(1); entries are cleared, never shrunk. It is how add_reader and
 * the sock_* calls refuse a transport's fd (asyncio's _ensure_fd_no_transport) and find the one
 * uv_poll_t that libuv allows per fd. */
#include <stdlib.h>
#include <string.h>

#include "engine/fdmap.h"

lc__fds *lc__fdmap_fds(lc_loop_t *loop)
{
    if (loop->fds == NULL)
        loop->fds = calloc(1, sizeof(lc__fds));
    return loop->fds;
}

lc__fdent *lc__fdmap_get(lc_loop_t *loop, int fd)
{
    if (fd < 0)
        return NULL;
    lc__fds *m = lc__fdmap_fds(loop);
    if (m == NULL)
        return NULL;
    if ((uint32_t)fd >= m->cap) {
        uint32_t cap = m->cap != 0 ? m->cap : 64;
        while (cap <= (uint32_t)fd)
            cap *= 2;
        lc__fdent *e = realloc(m->ents, (size_t)cap * sizeof(*e));
        if (e == NULL)
            return NULL;
        memset(e + m->cap, 0, (size_t)(cap - m->cap) * sizeof(*e));
        m->ents = e;
        m->cap = cap;
    }
    return &m->ents[fd];
}

int lc__fdmap_transport(lc_loop_t *loop, int fd, bool owned)
{
    if (!owned) {
        lc__fdent *e = lc__fdmap_peek(loop, fd);
        if (e != NULL)
            e->transport = false;
        return 0;
    }
    lc__fdent *e = lc__fdmap_get(loop, fd);
    if (e == NULL)
        return LC_ENOMEM;
    if (e->watch != NULL)
        lc__fdwatch_evict(loop, e->watch);
    e->transport = true;
    return 0;
}

void lc__fdmap_free(lc_loop_t *loop)
{
    if (loop->fds != NULL) {
        free(loop->fds->ents);
        free(loop->fds);
        loop->fds = NULL;
    }
}
