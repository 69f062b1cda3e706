/* Watching file descriptors: add_reader / add_writer and their removal, and the watcher that the
 * sock_* calls (engine/sock.c) queue on. One watcher per fd number (libuv allows one uv_poll_t
 * per fd and loop): it carries the user's reader and writer and the queued sock_* calls of both
 * directions, and polls for the union of what they need. Found through the loop's fd registry
 * (engine/fdmap.c). Also owns the rules for fds closed while watched ("Closed fds" below).
 *
 * Order: libuv runs a poll's callbacks inside the poll, so poll_cb() starts with lc__io_enter(),
 * which runs the callbacks that were ready before the poll first (asyncio runs the reader's
 * handle after them, in the same iteration); then the reader, the read queue, the writer, the
 * write queue, rechecking after each user callback what is still registered (asyncio cancels
 * the handle of a reader removed before it ran).
 *
 * Closed fds. epoll forgets an fd when its last descriptor is closed, but libuv does not know: it
 * aborts the process when it later asks epoll to watch a number that is not open (its
 * epoll_ctl(ADD) in uv__io_poll), and it watches whatever file reused the number otherwise. So:
 *  - each watcher records the identity (st_dev, st_ino) of the file it was made for; every add
 *    (a reader, a writer, a queued sock_* call) fstat()s fd first: a closed fd is refused with
 *    -EBADF, and a watcher whose file is not the one now open under its number is stale (the
 *    user closed fd while registered and the number came back): it is dropped and reported, and
 *    a fresh watcher is made;
 *  - a watcher (re)started since the last poll is on the dirty list; a uv_prepare_t, which libuv
 *    runs just before each poll, checks their fds are still open and drops, with a report, those
 *    that are not, before libuv could hand them to epoll;
 *  - a watcher whose fd was closed after epoll started watching it never fires again and stays
 *    until removed, replaced as above, taken by a transport, or the loop closes.
 * A watcher whose registrations are all gone is kept, stopped (a stopped uv_poll_t holds nothing
 * in the kernel), so that a socket that waits for each message costs no allocation; it is freed
 * when its number is re-registered for another file, taken by a transport, or the loop closes. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/fdmap.h"

struct lc__fdwatch_s {
    uv_poll_t poll;
    lc_loop_t *loop;
    int fd;
    int events; /* what poll is started for (UV_READABLE | UV_WRITABLE); 0: stopped */
    bool closing;
    bool dirty;
    dev_t dev; /* the identity of the file the watcher was made for */
    ino_t ino;
    lc__fdwatch *dirty_next;
    lc_call_fn rfn, wfn; /* the user's reader and writer, or NULL */
    void *rarg, *warg;
    lc__sockop *rq_head, *rq_tail; /* queued sock_* reads (recv, recv_into, accept) */
    lc__sockop *wq_head, *wq_tail; /* queued sock_* writes (sendall, connect) */
};

static void poll_cb(uv_poll_t *p, int status, int events);

static void free_watch_cb(uv_handle_t *h) { free(h->data); }

static void dirty_unlink(lc__fds *m, lc__fdwatch *w)
{
    if (!w->dirty)
        return;
    for (lc__fdwatch **pp = &m->dirty; *pp != NULL; pp = &(*pp)->dirty_next) {
        if (*pp == w) {
            *pp = w->dirty_next;
            break;
        }
    }
    w->dirty = false;
    w->dirty_next = NULL;
}

/* Closes w's handle (its memory goes in the close callback) and forgets it. w must hold no
 * queued call. */
static void watch_close(lc__fdwatch *w)
{
    if (w->closing)
        return;
    w->closing = true;
    if (lc__fdmap_watch(w->loop, w->fd) == w)
        w->loop->fds->watch[w->fd] = NULL;
    dirty_unlink(w->loop->fds, w);
    uv_close((uv_handle_t *)&w->poll, free_watch_cb);
}

static bool watch_registered(const lc__fdwatch *w)
{
    return w->rfn != NULL || w->wfn != NULL || w->rq_head != NULL || w->wq_head != NULL;
}

/* Drops every registration of w and closes it: the reader and writer are forgotten, queued calls
 * fail with err. With report, a registration that was there is reported to the exception handler
 * (the user closed its fd while registered). */
static void watch_drop(lc__fdwatch *w, int err, bool report)
{
    if (w->closing)
        return;
    bool had = watch_registered(w);
    watch_close(w); /* first: the failures below must not restart the poll */
    w->rfn = w->wfn = NULL;
    while (w->rq_head != NULL)
        w->rq_head->fail(w->rq_head, err);
    while (w->wq_head != NULL)
        w->wq_head->fail(w->wq_head, err);
    /* Last, with w gone from the registry: the handler may register fd again. */
    if (report && had) {
        lc_exception_context_t ctx =
            LC_EXCEPTION_CONTEXT_INIT("File descriptor closed while registered with the loop "
                                      "(remove_reader / remove_writer before closing it)");
        ctx.error = err;
        ctx.socket = w->fd;
        lc_loop_call_exception_handler(w->loop, &ctx);
    }
}

static void prepare_cb(uv_prepare_t *p)
{
    lc__fds *m = lc_container_of(p, lc__fds, prepare);
    lc__fdwatch *w;
    /* The exception handler may register more: they are checked too, before the poll. */
    while ((w = m->dirty) != NULL) {
        m->dirty = w->dirty_next;
        w->dirty = false;
        w->dirty_next = NULL;
        if (!w->closing && w->events != 0 && fcntl(w->fd, F_GETFD) < 0 && errno == EBADF)
            watch_drop(w, -EBADF, true);
    }
    uv_prepare_stop(p);
}

/* Starts or stops w's poll for what its registrations need. */
static void watch_update(lc__fdwatch *w)
{
    if (w->closing)
        return;
    int want = ((w->rfn != NULL || w->rq_head != NULL) ? UV_READABLE : 0) |
               ((w->wfn != NULL || w->wq_head != NULL) ? UV_WRITABLE : 0);
    if (want == w->events)
        return;
    if (want == 0) {
        uv_poll_stop(&w->poll);
        w->events = 0;
        return;
    }
    /* Cannot fail: w is fd's only handle (transports evict watchers before watching). */
    w->events = uv_poll_start(&w->poll, want, poll_cb) == 0 ? want : 0;
    if (w->events != 0 && !w->dirty) {
        lc__fds *m = w->loop->fds;
        w->dirty = true;
        w->dirty_next = m->dirty;
        m->dirty = w;
        uv_prepare_start(&m->prepare, prepare_cb);
    }
}

/* lc_loop_close(): every watcher goes, its queued calls failing with LC_ECLOSED. */
static void fds_force_close(lc__resource *r)
{
    lc__fds *m = lc_container_of(r, lc__fds, res);
    lc__loop_remove_resource(m->loop, r);
    for (uint32_t fd = 0; fd < m->watch_cap; fd++)
        if (m->watch[fd] != NULL)
            watch_drop(m->watch[fd], LC_ECLOSED, false);
    m->dirty = NULL;
    uv_close((uv_handle_t *)&m->prepare, NULL);
}

/* The registry with its prepare handle, set up with the first watcher. */
static lc__fds *watch_fds(lc_loop_t *loop)
{
    lc__fds *m = lc__fdmap_fds(loop);
    if (m != NULL && !m->prepare_open) {
        if (uv_prepare_init(lc__loop_uv(loop), &m->prepare) != 0)
            return NULL;
        m->prepare_open = true;
        m->loop = loop;
        m->res.force_close = fds_force_close;
        lc__loop_add_resource(loop, &m->res);
    }
    return m;
}

/* uv_poll_init, minus its side effect on the file's flags: libuv makes fd non-blocking, which
 * add_reader must not do to the caller's fd (asyncio does not). */
static int poll_init(lc_loop_t *loop, uv_poll_t *p, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    int r = uv_poll_init(lc__loop_uv(loop), p, fd);
    if (r == 0 && fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl);
    return r;
}

/* fd's watcher, for the file open under that number now, made if needed (see "Closed fds").
 * Returns 0, -EBADF, LC_ENOMEM or uv_poll_init's error (-EPERM: not pollable). */
static int watch_acquire(lc_loop_t *loop, int fd, lc__fdwatch **out)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    lc__fds *m = watch_fds(loop);
    lc__fdwatch **slot = m != NULL ? lc__fdmap_watch_slot(loop, fd) : NULL;
    if (slot == NULL)
        return LC_ENOMEM;
    lc__fdwatch *w = *slot;
    if (w != NULL && w->dev == st.st_dev && w->ino == st.st_ino) {
        *out = w;
        return 0;
    }
    if (w != NULL) {
        /* Stale: made for a file closed since. The report runs the exception handler, which may
         * register fd again (and move the array): look again afterwards. */
        watch_drop(w, -EBADF, true);
        return watch_acquire(loop, fd, out);
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return LC_ENOMEM;
    int r = poll_init(loop, &w->poll, fd);
    if (r != 0) {
        free(w);
        return r;
    }
    w->poll.data = w;
    w->loop = loop;
    w->fd = fd;
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    *slot = w;
    *out = w;
    return 0;
}

void lc__fdwatch_evict(lc_loop_t *loop, lc__fdwatch *w)
{
    (void)loop;
    watch_drop(w, -EBADF, true);
}

/* ---- The poll callback ------------------------------------------------------------------------
 */

/* Serves w's queued calls of one direction in order, until one would block. A call whose future
 * is already done (cancelled) is skipped: its done callback takes it off the queue. */
static void serve(lc__fdwatch *w, bool write)
{
    lc__sockop *op = write ? w->wq_head : w->rq_head;
    while (op != NULL && !w->closing) {
        lc__sockop *next = op->next; /* attempt() frees op, and only op */
        if (!lc_future_done(op->fut) && !op->attempt(op))
            break;
        op = next;
    }
}

static void run_user(lc__fdwatch *w, lc_call_fn fn, void *arg)
{
    lc_loop_t *loop = w->loop;
    if (LC_LIKELY(!loop->debug)) {
        fn(arg);
        return;
    }
    double t0 = lc__now();
    fn(arg);
    double dt = lc__now() - t0;
    if (dt >= loop->slow_callback_duration)
        lc__log_slow_callback("Handle", (void *)fn, arg, dt);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    if (!lc__io_enter((uv_handle_t *)p))
        return;
    lc__fdwatch *w = p->data;
    if (status < 0) {
        /* POLLERR: libuv stopped the handle. Both directions are told (as epoll tells asyncio's
         * selector), so each sees the socket's error in its own call; watch_update() restarts
         * the poll for what is still registered. */
        events = w->events;
        w->events = 0;
    }
    /* Memory safety: w is freed only in its close callback, which never runs inside a poll
     * callback, so w stays readable whatever the user's callbacks do; closing says it is done. */
    if (events & (UV_READABLE | UV_DISCONNECT)) {
        if (w->rfn != NULL)
            run_user(w, w->rfn, w->rarg);
        serve(w, false);
    }
    if ((events & UV_WRITABLE) && !w->closing) {
        if (w->wfn != NULL)
            run_user(w, w->wfn, w->warg);
        serve(w, true);
    }
    watch_update(w);
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
    if (write) {
        w->wfn = fn;
        w->warg = arg;
    } else {
        w->rfn = fn;
        w->rarg = arg;
    }
    watch_update(w);
    return 0;
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
    else
        watch_update(w);
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

int lc__fdwatch_queue(lc_loop_t *loop, int fd, lc__sockop *op)
{
    lc__fdwatch *w;
    int r = watch_acquire(loop, fd, &w);
    if (r != 0)
        return r;
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
    watch_update(w);
    return 0;
}

void lc__fdwatch_unqueue(lc__sockop *op)
{
    lc__fdwatch *w = op->w;
    if (w == NULL)
        return;
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
    watch_update(w);
}

bool lc__fdwatch_busy(lc_loop_t *loop, int fd, bool write)
{
    lc__fdwatch *w = lc__fdmap_watch(loop, fd);
    return w != NULL && (write ? w->wq_head : w->rq_head) != NULL;
}
