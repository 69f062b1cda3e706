/* The loop's file-descriptor registry: for each fd number, whether a transport owns it and which
 * watcher (engine/fdwatch.c) watches it (the layout is in engine/fdmap.h); entries are cleared,
 * never shrunk. It is how add_reader and
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

/* Grows *arr (of elem-byte entries, *cap of them) to hold index fd, zeroing the new part. */
static bool grow(void **arr, uint32_t *cap, int fd, size_t elem, uint32_t unit)
{
    if ((uint32_t)fd < *cap)
        return true;
    uint32_t n = *cap != 0 ? *cap : 1024;
    while (n <= (uint32_t)fd)
        n *= 2;
    char *a = realloc(*arr, (size_t)(n / unit) * elem);
    if (a == NULL)
        return false;
    memset(a + (size_t)(*cap / unit) * elem, 0, (size_t)((n - *cap) / unit) * elem);
    *arr = a;
    *cap = n;
    return true;
}

lc__fdwatch **lc__fdmap_watch_slot(lc_loop_t *loop, int fd)
{
    lc__fds *m = fd >= 0 ? lc__fdmap_fds(loop) : NULL;
    if (m == NULL || !grow((void **)&m->watch, &m->watch_cap, fd, sizeof(lc__fdwatch *), 1))
        return NULL;
    return &m->watch[fd];
}

int lc__fdmap_transport(lc_loop_t *loop, int fd, bool owned)
{
    if (!owned) {
        if (lc__fdmap_is_transport(loop, fd))
            loop->fds->owned[fd / 64] &= ~((uint64_t)1 << (fd % 64));
        return 0;
    }
    lc__fdwatch *w = lc__fdmap_watch(loop, fd);
    if (w != NULL) /* first: its report runs the exception handler */
        lc__fdwatch_evict(loop, w);
    lc__fds *m = fd >= 0 ? lc__fdmap_fds(loop) : NULL;
    if (m == NULL || !grow((void **)&m->owned, &m->owned_cap, fd, sizeof(uint64_t), 64))
        return LC_ENOMEM;
    m->owned[fd / 64] |= (uint64_t)1 << (fd % 64);
    return 0;
}

void lc__fdmap_free(lc_loop_t *loop)
{
    if (loop->fds != NULL) {
        free(loop->fds->owned);
        free(loop->fds->watch);
        free(loop->fds);
        loop->fds = NULL;
    }
}
