/* The loop's file-descriptor registry (engine/fdmap.c) and the watchers behind add_reader,
 * add_writer and the sock_* calls (engine/fdwatch.c, engine/sock.c). Not a public header. */
#ifndef LOOPCORE_ENGINE_FDMAP_H
#define LOOPCORE_ENGINE_FDMAP_H

#include <sys/types.h>

#include "engine/future_internal.h"

typedef struct lc__fdwatch_s lc__fdwatch;
typedef struct lc__sockop_s lc__sockop;

/* The registry: what the loop knows about each fd number, in two arrays indexed by fd and grown
 * (doubling) to the highest fd registered, so every lookup is O(1): a bitmap of the fds that
 * transports own (1 bit per fd: every loop of a group sees the whole process's fd numbers), and,
 * only once add_reader or a sock_* call is used, each fd's watcher or NULL. The watchers live in
 * an epoll of their own (epfd), which libuv watches through one uv_poll_t (engine/fdwatch.c says
 * why). Allocated with the first registration (lc_loop_t.fds), freed with the loop's memory. */
typedef struct lc__fds_s {
    lc_loop_t *loop;
    uint64_t *owned;     /* bit fd: a transport owns fd */
    uint32_t owned_cap;  /* in fds, a multiple of 64 */
    lc__fdwatch **watch; /* watch[fd]: fd's watcher or NULL */
    uint32_t watch_cap;
    lc__resource res; /* lc_loop_close() tears every watcher down through it */
    int epfd;         /* the watchers' epoll; -1 until the first watcher */
    uv_poll_t *ep;    /* libuv's poll on epfd (allocated: a rebuild closes it and makes another) */
    uint32_t gen;     /* the last watcher generation handed out (epoll_event.data's high half) */
    int dispatching;  /* inside the epoll's callback: dropped watchers wait on dead */
    lc__fdwatch *dead;
    uint64_t stale_prev;   /* the last event that matched no watcher (see "Stale events") */
    uint32_t stale_count;  /* how many times running it came */
    lc__fdwatch *unv_head; /* the unverified list, oldest first ("Closed fds") */
    lc__fdwatch *unv_tail;
    uint32_t epoch;     /* sweeps so far */
    lc_handle_t *sweep; /* the next sweep's timer, or NULL */
} lc__fds;

/* fd's watcher, or NULL. */
static inline lc__fdwatch *lc__fdmap_watch(lc_loop_t *loop, int fd)
{
    lc__fds *m = loop->fds;
    return (m != NULL && fd >= 0 && (uint32_t)fd < m->watch_cap) ? m->watch[fd] : NULL;
}

static inline bool lc__fdmap_is_transport(lc_loop_t *loop, int fd)
{
    lc__fds *m = loop->fds;
    return m != NULL && fd >= 0 && (uint32_t)fd < m->owned_cap &&
           (m->owned[fd / 64] >> (fd % 64)) & 1;
}

/* The slot of fd's watcher, growing the array to hold it. NULL: LC_ENOMEM (or fd < 0). */
lc__fdwatch **lc__fdmap_watch_slot(lc_loop_t *loop, int fd);

/* The registry itself, created on first use (NULL: LC_ENOMEM). */
lc__fds *lc__fdmap_fds(lc_loop_t *loop);

/* engine/transport.c: a transport takes fd (owned = true, before it watches fd: a watcher left
 * on that number by a user who closed the fd without removing it is dropped first, as it can
 * only refer to the closed fd) or gives it back (owned = false, before it closes fd).
 * Returns 0 or LC_ENOMEM. */
int lc__fdmap_transport(lc_loop_t *loop, int fd, bool owned);

/* Frees the registry's memory (loop_destroy; the loop's handles are closed by then). */
void lc__fdmap_free(lc_loop_t *loop);

/* ---- Watchers (engine/fdwatch.c) ------------------------------------------------------------ */

/* A queued sock_* call (engine/sock.c), on its watcher's read or write queue. attempt() tries
 * the operation once: it returns false if the operation would block (the op stays queued), or
 * true after it has finished the op (lc__fdwatch_unqueue + resolving and freeing it). */
struct lc__sockop_s {
    lc__sockop *prev, *next;
    lc__fdwatch *w; /* NULL once unqueued */
    lc_future_t *fut;
    bool write;
    /* recv, recv_into, sendall: may wait on an idle watcher without a check (engine/fdwatch.c,
     * "Closed fds"); false: checked with epoll_ctl first. */
    bool trusted;
    bool (*attempt)(lc__sockop *op);
    /* Finishes the op with err (LC_ECLOSED at loop close, -EBADF when the fd was found closed):
     * unqueue, fail the future if pending, free. */
    void (*fail)(lc__sockop *op, int err);
};

/* Queues op on fd's read (op->write false) or write queue, creating or starting the watcher.
 * Returns 0, LC_ENOMEM, -EBADF, LC_EINVAL (fd is a blocking socket: see "Non-blocking" in
 * engine/fdwatch.c) or epoll_ctl's error (-EPERM: a regular file). */
int lc__fdwatch_queue(lc_loop_t *loop, int fd, lc__sockop *op);

/* Takes op off its queue (no-op if not queued); stops watching the direction if it was the last. */
void lc__fdwatch_unqueue(lc__sockop *op);

/* What sock.c asks of fd's watcher before a call, in one lookup: LC__FDW_NONBLOCK (the watcher
 * found fd non-blocking when it was made: sock.c then skips its fcntl; see "Non-blocking" in
 * engine/fdwatch.c), LC__FDW_DRAINED (the drained hint, below), LC__FDW_RBUSY / LC__FDW_WBUSY
 * (calls of that direction are queued: a new one waits its turn). 0 without a watcher. */
enum { LC__FDW_NONBLOCK = 1, LC__FDW_DRAINED = 2, LC__FDW_RBUSY = 4, LC__FDW_WBUSY = 8 };
unsigned lc__fdwatch_state(lc_loop_t *loop, int fd);
/* The read-readiness hint of fd's watcher (the rule Tokio uses): set when a recv on a stream
 * socket returned less than it asked for (its receive queue was empty then), cleared when the
 * watcher reports fd readable, or with drained false. While it is set a new read call skips its
 * first try and waits: data that came after that recv woke the socket's edge-triggered
 * registration, so the next poll reports it (or already did, and cleared the hint); nothing is lost
 * or reordered, the call only completes from that poll instead of inside the call. No-op / false
 * without a watcher. */
void lc__fdwatch_set_drained(lc_loop_t *loop, int fd, bool drained);
/* sock_accept made fd: a watcher left on its number can only be stale; dropped. */
void lc__fdwatch_new_fd(lc_loop_t *loop, int fd);
/* Drops fd's watcher (a transport takes the number): its callbacks are forgotten and its queued
 * calls fail with -EBADF. */
void lc__fdwatch_evict(lc_loop_t *loop, lc__fdwatch *w);

#endif
