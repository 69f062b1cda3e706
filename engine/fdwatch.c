/* Watching file descriptors: add_reader / add_writer and their removal, and the watcher that the
 * sock_* calls (engine/sock.c) queue on. One watcher per fd number: it carries the user's reader
 * and writer and the queued sock_* calls of both directions, and watches for the union of what
 * they need. Found through the loop's fd registry (engine/fdmap.c).
 *
 * An epoll of our own. The watchers are not libuv handles: they are registrations in an epoll
 * that belongs to the registry (lc__fds.epfd), and libuv watches that epoll fd with one
 * uv_poll_t; its callback takes the ready watchers out with epoll_wait(0) and serves them. Why:
 *  - a sock_* call that waits needs the fd registered; with a uv_poll_t per fd that was a start
 *    and a stop per wait, three epoll_ctl (libuv deletes before it adds, and deletes on stop).
 *    Here a socket is registered once, edge-triggered, and stays registered between calls: a
 *    steady recv / send loop makes no system call for the loop's sake;
 *  - libuv aborts the process when it asks epoll to watch a number that is no longer open (its
 *    epoll_ctl in uv__io_poll), so every watcher had to be checked before each poll. Our own
 *    epoll_ctl just fails with EBADF, which is handled where it happens.
 *
 * Registrations. A watcher with a user reader or writer is registered level-triggered for
 * exactly what it needs (asyncio's add_reader is level-triggered: a callback that leaves data
 * unread runs again). One with only sock_* calls (or nothing, idle) is registered for
 * EPOLLIN | EPOLLOUT | EPOLLET once, when its first call waits, and never changed: an edge that
 * comes while no call waits is a wake-up for nothing (and clears the drained hint), never a
 * spin. That is sound because every sock_* call tries its operation before it waits (the drained
 * hint excepted, see engine/fdmap.h): an edge consumed while no call waited left the data to
 * that try, and data that comes after a try that said EAGAIN makes a new edge. A watcher whose
 * registrations are all gone stays in the epoll (the kernel frees the item when the file
 * closes); it is freed when the user removes its last reader or writer, when its number is used
 * for another file, when a transport takes the number, or when the loop closes.
 *
 * Closed fds (the rule for users: remove before close; sock_* calls should be finished or
 * cancelled before close). epoll forgets a file when its last descriptor is closed, so a
 * registration of a closed fd never fires again: no crash and no spin. But an idle watcher kept
 * for its number may outlive its file, and the number come back for another, which is not in
 * the epoll. Each watcher records the identity (st_dev, st_ino) of the file it was made for and a
 * generation, which is in its epoll events, and:
 *  - a reader or writer added, or a sock_* call queued behind registrations already there,
 *    fstat()s fd first: an old watcher is dropped (its registrations reported to the exception
 *    handler, its queued calls failed with -EBADF) and a fresh one made;
 *  - sock_accept's new fd drops whatever watcher its number had (it can only be stale);
 *  - sock_connect, sock_accept and sock_sendfile, waiting on an idle watcher, check it with
 *    epoll_ctl(MOD), which fails with ENOENT when the file under the number is not the one
 *    registered: the watcher is made afresh for the new file and ADDed;
 *  - recv, recv_into and sendall, the calls of a steady loop, trust an idle watcher (no system
 *    call) and join the unverified list; a sweep every LC__FDW_SWEEP seconds checks, with the
 *    same MOD, the watchers on it that have waited since before the previous sweep: a stale one
 *    hands its calls to a fresh watcher for the new file (they were made for the number, after
 *    the old file's calls had finished: see the first rule). So a call on a reused number that a
 *    stale watcher hid waits at most two sweep periods longer, never forever;
 *  - a registration of a closed fd that nothing checks stays until removed (remove_reader then
 *    says it was registered, as asyncio's does), replaced as above, taken by a transport, or the
 *    loop closes (queued calls then fail with LC_ECLOSED).
 *
 * Stale events. An event whose generation is not its number's watcher's comes from a
 * registration we no longer track, of a file closed while another descriptor of it lives on (a
 * dup, a child): it cannot be deleted (EPOLL_CTL_DEL names the file by the number, which is
 * another file's now) and would wake the loop at each edge (edge-triggered) or every iteration
 * (level-triggered) for ever. The same stale event seen LC__FDW_STALE_MAX times running rebuilds
 * the epoll: a fresh one, every live watcher re-identified (fstat) and registered again, and a
 * report.
 *
 * Non-blocking. asyncio requires the socket of a sock_* call to be non-blocking and checks a
 * flag in the socket object. Our flag is the watcher's: O_NONBLOCK is read (fcntl) when a
 * watcher is made for a file, and sock.c skips its own fcntl when fd has a watcher that saw it
 * non-blocking. A watcher can outlive its file (closed and the number reused without our
 * knowing), so recv and send are tried with MSG_DONTWAIT (a blocking socket never blocks the
 * loop), the flag is read again whenever a call must wait on a reused number, and sock_connect
 * and sock_accept, which cannot be told not to block, always read it.
 *
 * Order: the epoll's callback starts with lc__io_enter(), which runs the callbacks that were
 * ready before the poll first (asyncio runs the reader's handle after them, in the same
 * iteration); then, per ready watcher, the reader, the read queue, the writer, the write queue,
 * rechecking after each user callback what is still registered (asyncio cancels the handle of a
 * reader removed before it ran). Watchers dropped during the callback are freed at its end. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/fdmap.h"

enum { LC__FDW_EVENTS = 256 };  /* epoll events taken per dispatch; more wait for the next */
#define LC__FDW_SWEEP 0.005     /* seconds between checks of trusted watchers ("Closed fds") */
enum { LC__FDW_STALE_MAX = 8 }; /* the same stale event this many times: rebuild */
#define LC__FDW_ET (EPOLLIN | EPOLLOUT | EPOLLET) /* a sock_*-only watcher's registration */

struct lc__fdwatch_s {
    lc_loop_t *loop;
    int fd;
    uint32_t gen;    /* this watcher's generation: the high half of its epoll_event.data */
    uint32_t armed;  /* level: the EPOLLIN / EPOLLOUT registered; else LC__FDW_ET */
    bool in_epoll;   /* has an item in the registry's epoll (as far as we know) */
    bool level;      /* that item is level-triggered (a user reader or writer), else LC__FDW_ET */
    bool unverified; /* on the registry's unverified list ("Closed fds") */
    uint32_t unv_epoch; /* the sweep epoch it joined the list in */
    lc__fdwatch *unv_prev, *unv_next;
    bool nonblock; /* O_NONBLOCK was set when the watcher was made for its file */
    bool stream;   /* a SOCK_STREAM socket (the drained hint applies) */
    bool drained;  /* the drained hint (engine/fdmap.h) */
    bool dead;     /* dropped: no longer in the registry, freed once no dispatch can see it */
    dev_t dev;     /* the identity of the file the watcher was made for */
    ino_t ino;
    lc__fdwatch *dead_next;
    lc_call_fn rfn, wfn; /* the user's reader and writer, or NULL */
    void *rarg, *warg;
    lc__sockop *rq_head, *rq_tail; /* queued sock_* reads (recv, recv_into, accept) */
    lc__sockop *wq_head, *wq_tail; /* queued sock_* writes (sendall, connect) */
};

static void ep_cb(uv_poll_t *p, int status, int events);

static bool watch_registered(const lc__fdwatch *w)
{
    return w->rfn != NULL || w->wfn != NULL || w->rq_head != NULL || w->wq_head != NULL;
}

static uint32_t watch_want(const lc__fdwatch *w)
{
    return ((w->rfn != NULL || w->rq_head != NULL) ? EPOLLIN : 0) |
           ((w->wfn != NULL || w->wq_head != NULL) ? EPOLLOUT : 0);
}

/* The unverified list ("Closed fds"): watchers trusted without a check since they last went
 * from idle to waiting. */
static void unv_unlink(lc__fdwatch *w)
{
    if (!w->unverified)
        return;
    lc__fds *m = w->loop->fds;
    if (w->unv_prev != NULL)
        w->unv_prev->unv_next = w->unv_next;
    else
        m->unv_head = w->unv_next;
    if (w->unv_next != NULL)
        w->unv_next->unv_prev = w->unv_prev;
    else
        m->unv_tail = w->unv_prev;
    w->unv_prev = w->unv_next = NULL;
    w->unverified = false;
}

static void sweep_cb(void *arg);

static void unv_add(lc__fdwatch *w)
{
    lc__fds *m = w->loop->fds;
    if (w->unverified)
        return; /* keeps its older place */
    w->unverified = true;
    w->unv_epoch = m->epoch;
    w->unv_next = NULL;
    w->unv_prev = m->unv_tail;
    if (m->unv_tail != NULL)
        m->unv_tail->unv_next = w;
    else
        m->unv_head = w;
    m->unv_tail = w;
    /* Out of memory for the timer: the next add tries again; until then the calls wait as they
     * would have anyway, only unchecked. */
    if (m->sweep == NULL && lc_loop_call_later(w->loop, LC__FDW_SWEEP, sweep_cb, m, &m->sweep) != 0)
        m->sweep = NULL;
}

/* Registers w for want, level-triggered (a user reader or writer) or as LC__FDW_ET, ADD or MOD.
 * Success also proves that the file under fd is the one registered: w leaves the unverified
 * list. 0 or -errno (EBADF: fd is closed; ENOENT on MOD: the file under fd is not the one
 * registered; EPERM: not pollable). */
static int watch_ctl(lc__fdwatch *w, uint32_t want, bool level)
{
    struct epoll_event ev = {.events = level ? want : LC__FDW_ET,
                             .data.u64 = (uint64_t)w->gen << 32 | (uint32_t)w->fd};
    int epfd = w->loop->fds->epfd;
    if (epoll_ctl(epfd, w->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) != 0) {
        if (w->in_epoll || errno != EEXIST)
            return -errno;
        /* An item of this file and number that we had lost track of (a rebuild): take it. */
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev) != 0)
            return -errno;
    }
    w->in_epoll = true;
    w->level = level;
    w->armed = level ? want : LC__FDW_ET;
    unv_unlink(w);
    return 0;
}

/* Brings w's registration in line with what it needs: level-triggered for exactly what its
 * reader and writer need, else LC__FDW_ET once something waits (kept when idle). 0, or
 * watch_ctl()'s error. */
static int watch_sync(lc__fdwatch *w)
{
    if (w->dead)
        return 0;
    if (w->rfn != NULL || w->wfn != NULL) {
        uint32_t want = watch_want(w);
        return w->in_epoll && w->level && w->armed == want ? 0 : watch_ctl(w, want, true);
    }
    if (w->in_epoll && !w->level)
        return 0;
    if (!w->in_epoll && !watch_registered(w))
        return 0; /* nothing to watch yet */
    return watch_ctl(w, LC__FDW_ET, false);
}

static void watch_free_dead(lc__fds *m)
{
    while (m->dead != NULL) {
        lc__fdwatch *w = m->dead;
        m->dead = w->dead_next;
        free(w);
    }
}

/* Takes w out of the registry and the epoll, and frees it (at the end of the dispatch, if one
 * runs: it may still look at w). w must hold no queued call. */
static void watch_close(lc__fdwatch *w)
{
    if (w->dead)
        return;
    w->dead = true;
    unv_unlink(w);
    lc__fds *m = w->loop->fds;
    if (lc__fdmap_watch(w->loop, w->fd) == w)
        m->watch[w->fd] = NULL;
    /* Fails harmlessly if fd was closed (the item went with the file) or is another file now
     * (ENOENT; an item of the old file that lives on is a stale one, see above). */
    if (w->in_epoll && m->epfd >= 0) {
        struct epoll_event ev = {0};
        epoll_ctl(m->epfd, EPOLL_CTL_DEL, w->fd, &ev);
    }
    if (m->dispatching > 0) {
        w->dead_next = m->dead;
        m->dead = w;
    } else {
        free(w);
    }
}

/* Drops every registration of w and closes it: the reader and writer are forgotten, queued calls
 * fail with err. With report, a registration that was there is reported to the exception handler
 * (the user closed its fd while registered). */
static void watch_drop(lc__fdwatch *w, int err, bool report)
{
    if (w->dead)
        return;
    lc_loop_t *loop = w->loop;
    int fd = w->fd;
    bool had = watch_registered(w);
    lc__fds *m = loop->fds;
    m->dispatching++; /* w stays readable until its queues are failed */
    watch_close(w);   /* first: the failures below must not re-arm it */
    w->rfn = w->wfn = NULL;
    while (w->rq_head != NULL)
        w->rq_head->fail(w->rq_head, err);
    while (w->wq_head != NULL)
        w->wq_head->fail(w->wq_head, err);
    if (--m->dispatching == 0)
        watch_free_dead(m);
    /* Last, with w gone from the registry: the handler may register fd again. */
    if (report && had) {
        lc_exception_context_t ctx =
            LC_EXCEPTION_CONTEXT_INIT("File descriptor closed while registered with the loop "
                                      "(remove_reader / remove_writer before closing it)");
        ctx.error = err;
        ctx.socket = fd;
        lc_loop_call_exception_handler(loop, &ctx);
    }
}

static void free_handle_cb(uv_handle_t *h) { free(h); }

/* Closes the epoll and libuv's poll on it (the handle's memory goes in its close callback). */
static void fds_close_epoll(lc__fds *m)
{
    if (m->ep != NULL) {
        uv_close((uv_handle_t *)m->ep, free_handle_cb);
        m->ep = NULL;
    }
    if (m->epfd >= 0) {
        close(m->epfd);
        m->epfd = -1;
    }
}

/* A fresh epoll with libuv's poll on it. 0, or -errno / libuv's error. */
static int fds_open_epoll(lc__fds *m)
{
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (m->epfd < 0)
        return -errno;
    m->ep = malloc(sizeof(*m->ep));
    int r = m->ep != NULL ? uv_poll_init(lc__loop_uv(m->loop), m->ep, m->epfd) : LC_ENOMEM;
    if (r != 0) {
        free(m->ep);
        m->ep = NULL;
        close(m->epfd);
        m->epfd = -1;
        return r;
    }
    m->ep->data = m;
    r = uv_poll_start(m->ep, UV_READABLE, ep_cb);
    if (r != 0)
        fds_close_epoll(m);
    return r;
}

/* lc_loop_close(): every watcher goes, its queued calls failing with LC_ECLOSED. */
static void fds_force_close(lc__resource *r)
{
    lc__fds *m = lc_container_of(r, lc__fds, res);
    lc__loop_remove_resource(m->loop, r);
    for (uint32_t fd = 0; fd < m->watch_cap; fd++)
        if (m->watch[fd] != NULL)
            watch_drop(m->watch[fd], LC_ECLOSED, false);
    if (m->sweep != NULL) {
        lc_handle_cancel(m->sweep);
        lc_handle_unref(m->sweep);
        m->sweep = NULL;
    }
    fds_close_epoll(m);
}

/* The registry with its epoll, set up with the first watcher. 0, LC_ENOMEM or the epoll's
 * error (-EMFILE). */
static int watch_fds(lc_loop_t *loop, lc__fds **out)
{
    lc__fds *m = lc__fdmap_fds(loop);
    if (m == NULL)
        return LC_ENOMEM;
    if (m->loop == NULL) {
        m->loop = loop;
        m->epfd = -1;
        m->res.force_close = fds_force_close;
        lc__loop_add_resource(loop, &m->res);
    }
    if (m->epfd < 0) {
        int r = fds_open_epoll(m);
        if (r != 0)
            return r;
    }
    *out = m;
    return 0;
}

static void watch_stale(lc__fdwatch *w);

/* A level-triggered item of a closed file lives on (see "Stale events"): start over. */
static void fds_rebuild(lc__fds *m)
{
    lc_loop_t *loop = m->loop;
    fds_close_epoll(m);
    int err = fds_open_epoll(m);
    lc_exception_context_t ctx =
        LC_EXCEPTION_CONTEXT_INIT("A file descriptor closed while registered with the loop is "
                                  "still open elsewhere (a dup or a child) and kept waking the "
                                  "loop: watchers re-registered on a fresh epoll");
    ctx.error = err;
    lc_loop_call_exception_handler(loop, &ctx);
    for (uint32_t fd = 0; fd < m->watch_cap; fd++) {
        lc__fdwatch *w = m->watch[fd];
        if (w == NULL)
            continue;
        w->in_epoll = false;
        w->armed = 0;
        struct stat st;
        if (!watch_registered(w))
            watch_close(w); /* idle: a later call makes a fresh one (an ADD would not check) */
        else if (err != 0)
            watch_drop(w, err, false);
        else if (fstat(w->fd, &st) == 0 && (st.st_dev != w->dev || st.st_ino != w->ino))
            watch_stale(w);
        else if (fstat(w->fd, &st) != 0 || watch_sync(w) != 0)
            watch_drop(w, -EBADF, true);
    }
}

/* A new watcher for the file open under fd now (st): not yet in the epoll. Only a new watcher
 * may be ADDed without a check (an ADD registers whatever file is under the number); a watcher
 * that leaves the epoll otherwise is closed (fds_rebuild). */
static int watch_new(lc_loop_t *loop, lc__fds *m, int fd, const struct stat *st, lc__fdwatch **out)
{
    lc__fdwatch **slot = lc__fdmap_watch_slot(loop, fd);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    lc__fdwatch *w = slot != NULL ? calloc(1, sizeof(*w)) : NULL;
    if (w == NULL)
        return LC_ENOMEM;
    w->loop = loop;
    w->fd = fd;
    w->gen = ++m->gen;
    w->nonblock = (fl & O_NONBLOCK) != 0;
    int type = 0;
    socklen_t tlen = sizeof(type);
    w->stream = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM;
    w->dev = st->st_dev;
    w->ino = st->st_ino;
    *slot = w;
    *out = w;
    return 0;
}

static int queue_op(lc_loop_t *loop, int fd, lc__sockop *op);

/* w's file is no longer under its number, and w's calls were made for the number's new file
 * (see "Closed fds"): they go, in order, to a fresh watcher made for it; those that cannot
 * (the new file is blocking: LC_EINVAL; closed: -EBADF) fail. */
static void watch_migrate(lc__fdwatch *w)
{
    lc_loop_t *loop = w->loop;
    int fd = w->fd;
    lc__sockop *ops[2] = {w->rq_head, w->wq_head};
    w->rq_head = w->rq_tail = w->wq_head = w->wq_tail = NULL;
    for (int d = 0; d < 2; d++)
        for (lc__sockop *op = ops[d]; op != NULL; op = op->next)
            op->w = NULL;
    watch_close(w);
    for (int d = 0; d < 2; d++) {
        lc__sockop *op = ops[d];
        while (op != NULL) {
            lc__sockop *next = op->next;
            op->prev = op->next = NULL;
            int e = queue_op(loop, fd, op);
            if (e != 0)
                op->fail(op, e);
            op = next;
        }
    }
}

/* w turned out stale (its file closed, the number another file's). Calls it took while trusted
 * and unchecked (the unverified list) were made after its file's own calls had all finished
 * (else it would not have been idle), so for the number's new file: they move there. Otherwise
 * what is registered on w concerns the closed file: dropped, reported, its calls failed. */
static void watch_stale(lc__fdwatch *w)
{
    if (w->unverified && w->rfn == NULL && w->wfn == NULL)
        watch_migrate(w);
    else
        watch_drop(w, -EBADF, true);
}

/* fd's watcher, for the file open under that number now (fstat), made if needed (see "Closed
 * fds"). Returns 0, -EBADF, LC_ENOMEM or the epoll's error. */
static int watch_acquire(lc_loop_t *loop, int fd, lc__fdwatch **out)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    lc__fds *m;
    int r = watch_fds(loop, &m);
    if (r != 0)
        return r;
    lc__fdwatch *w = lc__fdmap_watch(loop, fd);
    if (w != NULL && w->dev == st.st_dev && w->ino == st.st_ino) {
        unv_unlink(w); /* checked */
        *out = w;
        return 0;
    }
    if (w != NULL) {
        /* Stale: made for a file closed since. The report runs the exception handler, which may
         * register fd again: look again afterwards. */
        watch_stale(w);
        return watch_acquire(loop, fd, out);
    }
    return watch_new(loop, m, fd, &st, out);
}

void lc__fdwatch_evict(lc_loop_t *loop, lc__fdwatch *w)
{
    (void)loop;
    watch_drop(w, -EBADF, true);
}

void lc__fdwatch_set_drained(lc_loop_t *loop, int fd, bool drained)
{
    lc__fdwatch *w = lc__fdmap_watch(loop, fd);
    if (w != NULL)
        w->drained = drained && w->stream;
}

unsigned lc__fdwatch_state(lc_loop_t *loop, int fd)
{
    lc__fdwatch *w = lc__fdmap_watch(loop, fd);
    if (w == NULL)
        return 0;
    return (w->nonblock ? LC__FDW_NONBLOCK : 0) | (w->drained ? LC__FDW_DRAINED : 0) |
           (w->rq_head != NULL ? LC__FDW_RBUSY : 0) | (w->wq_head != NULL ? LC__FDW_WBUSY : 0);
}

/* ---- The epoll's callback ---------------------------------------------------------------------
 */

/* Serves w's queued calls of one direction in order, until one would block. A call whose future
 * is already done (cancelled) is skipped: its done callback takes it off the queue. */
static void serve(lc__fdwatch *w, bool write)
{
    lc__sockop *op = write ? w->wq_head : w->rq_head;
    while (op != NULL && !w->dead) {
        lc__sockop *next = op->next; /* attempt() frees op, and only op */
        if (!lc_future_done(op->fut) && !op->attempt(op))
            break;
        op = next;
    }
}

/* One ready watcher. Errors and hang-ups go to both directions (as epoll tells asyncio's
 * selector): each sees the socket's state in its own call. */
static void watch_dispatch(lc__fdwatch *w, uint32_t events)
{
    /* Memory safety: w is freed only at the end of the dispatch (watch_close), so it stays
     * readable whatever the user's callbacks do; dead says it is done. */
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        w->drained = false;
        if (w->rfn != NULL)
            lc__run_plain(w->loop, w->rfn, w->rarg);
        serve(w, false);
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && !w->dead) {
        if (w->wfn != NULL)
            lc__run_plain(w->loop, w->wfn, w->warg);
        serve(w, true);
    }
    /* Watch what is still wanted (a callback may have changed it). It fails if a callback
     * closed fd (or it came back as another file): what is registered concerns a closed fd. */
    if (!w->dead && watch_sync(w) != 0)
        watch_drop(w, -EBADF, true);
}

static void ep_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    lc__fds *m = p->data;
    if (!lc__io_enter((uv_handle_t *)p))
        return;
    struct epoll_event ev[LC__FDW_EVENTS];
    int n = epoll_wait(m->epfd, ev, LC__FDW_EVENTS, 0);
    bool rebuild = false;
    m->dispatching++;
    for (int i = 0; i < n; i++) {
        int fd = (int)(uint32_t)ev[i].data.u64;
        lc__fdwatch *w = lc__fdmap_watch(m->loop, fd);
        if (w == NULL || w->gen != (uint32_t)(ev[i].data.u64 >> 32)) {
            /* The item of a closed file that lives on elsewhere, or one closed during this
             * dispatch (once). */
            m->stale_count = ev[i].data.u64 == m->stale_prev ? m->stale_count + 1 : 1;
            m->stale_prev = ev[i].data.u64;
            rebuild |= m->stale_count >= LC__FDW_STALE_MAX;
            continue;
        }
        watch_dispatch(w, ev[i].events);
    }
    if (--m->dispatching == 0)
        watch_free_dead(m);
    if (rebuild && !m->loop->closed) {
        m->stale_prev = 0;
        m->stale_count = 0;
        fds_rebuild(m);
    }
}

/* ---- add / remove ------------------------------------------------------------------------------
 */

static int add_watch(lc_loop_t *loop, int fd, lc_call_fn fn, void *arg, bool write)
{
    if (loop == NULL || fn == NULL || fd < 0)
        return LC_EINVAL;
    if (loop->closed)
        return LC_ECLOSED;
    int r = lc__loop_check_thread(loop, write ? "add_writer" : "add_reader");
    if (r != 0)
        return r;
    if (lc__fdmap_is_transport(loop, fd))
        return LC_EFDTRANSPORT;
    lc__fdwatch *w;
    r = watch_acquire(loop, fd, &w);
    if (r != 0)
        return r;
    lc_call_fn old_fn = write ? w->wfn : w->rfn;
    void *old_arg = write ? w->warg : w->rarg;
    if (write) {
        w->wfn = fn;
        w->warg = arg;
    } else {
        w->rfn = fn;
        w->rarg = arg;
    }
    r = watch_sync(w);
    if (r == 0)
        return 0;
    /* Not pollable (-EPERM: a regular file): leave things as they were. */
    if (write) {
        w->wfn = old_fn;
        w->warg = old_arg;
    } else {
        w->rfn = old_fn;
        w->rarg = old_arg;
    }
    if (!watch_registered(w))
        watch_close(w);
    return r;
}

static int remove_watch(lc_loop_t *loop, int fd, bool *removed, bool write)
{
    if (removed != NULL)
        *removed = false;
    if (loop == NULL || fd < 0)
        return LC_EINVAL;
    if (loop->closed)
        return 0; /* asyncio: remove_reader on a closed loop returns False */
    int r = lc__loop_check_thread(loop, write ? "remove_writer" : "remove_reader");
    if (r != 0)
        return r;
    if (lc__fdmap_is_transport(loop, fd))
        return LC_EFDTRANSPORT;
    lc__fdwatch *w = lc__fdmap_watch(loop, fd);
    if (w == NULL)
        return 0;
    lc_call_fn *fn = write ? &w->wfn : &w->rfn;
    if (removed != NULL)
        *removed = *fn != NULL;
    *fn = NULL;
    if (write)
        w->warg = NULL;
    else
        w->rarg = NULL;
    /* Nothing left on it: close it now, so that after remove-then-close nothing refers to fd. */
    if (!watch_registered(w))
        watch_close(w);
    else if (watch_sync(w) != 0)
        watch_drop(w, -EBADF, true);
    return 0;
}

int lc_loop_add_reader(lc_loop_t *loop, int fd, lc_call_fn fn, void *arg)
{
    return add_watch(loop, fd, fn, arg, false);
}

int lc_loop_add_writer(lc_loop_t *loop, int fd, lc_call_fn fn, void *arg)
{
    return add_watch(loop, fd, fn, arg, true);
}

int lc_loop_remove_reader(lc_loop_t *loop, int fd, bool *removed)
{
    return remove_watch(loop, fd, removed, false);
}

int lc_loop_remove_writer(lc_loop_t *loop, int fd, bool *removed)
{
    return remove_watch(loop, fd, removed, true);
}

/* ---- The sock_* queues ------------------------------------------------------------------------
 */

static void enqueue(lc__fdwatch *w, lc__sockop *op)
{
    lc__sockop **head = op->write ? &w->wq_head : &w->rq_head;
    lc__sockop **tail = op->write ? &w->wq_tail : &w->rq_tail;
    op->w = w;
    op->next = NULL;
    op->prev = *tail;
    if (*tail != NULL)
        (*tail)->next = op;
    else
        *head = op;
    *tail = op;
}

/* Takes op off w's queue without touching the registration. */
static void dequeue(lc__fdwatch *w, lc__sockop *op)
{
    lc__sockop **head = op->write ? &w->wq_head : &w->rq_head;
    lc__sockop **tail = op->write ? &w->wq_tail : &w->rq_tail;
    if (op->prev != NULL)
        op->prev->next = op->next;
    else
        *head = op->next;
    if (op->next != NULL)
        op->next->prev = op->prev;
    else
        *tail = op->prev;
    op->prev = op->next = NULL;
    op->w = NULL;
}

/* Queues op on fd's watcher (made if needed). An op that is not trusted makes sure, with a
 * system call, that the registration is the current file's even if the watcher was idle (see
 * "Closed fds"). */
static int queue_op(lc_loop_t *loop, int fd, lc__sockop *op)
{
    lc__fdwatch *w = lc__fdmap_watch(loop, fd);
    int r;
    if (w == NULL || watch_registered(w)) {
        /* A new watcher, or one with registrations whose file must still be fd's (fstat). */
        r = watch_acquire(loop, fd, &w);
        if (r != 0)
            return r;
        if (!w->nonblock && !watch_registered(w)) {
            watch_close(w);
            return LC_EINVAL; /* a new file under a number sock.c trusted the old flag of */
        }
    }
    bool idle = !watch_registered(w), ctl = true;
    enqueue(w, op);
    if (!w->in_epoll || w->level)
        r = watch_sync(w);
    else if (idle && !op->trusted)
        r = watch_ctl(w, LC__FDW_ET, false); /* MOD: is the file under fd the one registered? */
    else
        r = 0, ctl = false;
    if (r == -ENOENT && w->in_epoll) {
        /* The file under fd is not the one registered: it was closed and the number reused.
         * Nothing of the new file's was registered on w (else it would have been checked
         * above): make the watcher afresh. */
        dequeue(w, op);
        watch_drop(w, -EBADF, true);
        return queue_op(loop, fd, op);
    }
    if (r != 0) {
        dequeue(w, op);
        if (!watch_registered(w))
            watch_close(w);
        return r;
    }
    if (idle && !ctl)
        unv_add(w); /* trusted: checked by a sweep if it waits long */
    return 0;
}

int lc__fdwatch_queue(lc_loop_t *loop, int fd, lc__sockop *op) { return queue_op(loop, fd, op); }

/* The watchers trusted since before the previous sweep that still wait are checked (MOD): a
 * stale one hands its calls to a fresh watcher for the file now under its number. */
static void sweep_cb(void *arg)
{
    lc__fds *m = arg;
    lc_handle_unref(m->sweep);
    m->sweep = NULL;
    uint32_t cutoff = m->epoch++;
    lc__fdwatch *w;
    while ((w = m->unv_head) != NULL && w->unv_epoch < cutoff) {
        unv_unlink(w);
        if (!watch_registered(w) || w->level || w->dead)
            continue;
        int r = watch_ctl(w, LC__FDW_ET, false);
        if (r == 0)
            continue;
        if (r != -ENOENT) { /* closed: what waits on it concerns a closed fd */
            watch_drop(w, -EBADF, true);
            continue;
        }
        /* Another file under the number: its calls were made for it (see watch_stale). */
        watch_migrate(w);
    }
    if (m->unv_head != NULL && m->sweep == NULL &&
        lc_loop_call_later(m->loop, LC__FDW_SWEEP, sweep_cb, m, &m->sweep) != 0)
        m->sweep = NULL;
}

void lc__fdwatch_unqueue(lc__sockop *op)
{
    lc__fdwatch *w = op->w;
    if (w == NULL)
        return;
    dequeue(w, op);
    if (!watch_registered(w))
        unv_unlink(w); /* idle: its next call is trusted (or checked) afresh */
    /* A level item loses the direction if nothing else wants it; the edge-triggered one stays. */
    if (w->level && watch_sync(w) != 0)
        watch_drop(w, -EBADF, true);
}

void lc__fdwatch_new_fd(lc_loop_t *loop, int fd)
{
    lc__fdwatch *w = lc__fdmap_watch(loop, fd);
    if (w != NULL)
        watch_drop(w, -EBADF, true);
}
