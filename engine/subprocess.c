/* subprocess_exec / subprocess_shell: spawning with posix_spawn, a pidfd per child, and the
 * subprocess transport over the pipe transports of engine/transport.c (pipe mode).
 *
 * Spawning. glibc's posix_spawn runs the child as clone(CLONE_VM | CLONE_VFORK): no page table
 * is copied, however large the parent, and the child's set-up (dup2s, chdir, setsid, signal
 * dispositions, close_range) is glibc's async-signal-safe code; it reports an exec failure
 * (ENOENT, EACCES) as its return value and reaps that child itself, so a missing executable
 * leaves no zombie. Every descriptor loopcore makes is close-on-exec (pipe2(O_CLOEXEC)), and the
 * file actions end with closefrom (close_range) above the passed ones, so no descriptor leaks
 * from another thread's open() either. posix_spawn is thread-safe: loops may spawn at once.
 *
 * Reaping. pidfd_open right after the spawn (the child cannot be reaped by anyone else in
 * between unless the process waits for any child, which loopcore's rule forbids), watched with a
 * uv_poll_t: readable once the child exits; then waitid(P_PIDFD, WNOHANG) reaps exactly it. No
 * SIGCHLD handler, no waitpid(-1).
 *
 * Order of the protocol's callbacks, after CPython's base_subprocess.py: connection_made, then the
 * pipes' data and pipe_connection_lost, process_exited when the child is reaped, and
 * connection_lost (through call_soon) once it exited and every pipe is closed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/loop_internal.h"
#include "engine/stream_internal.h"
#include "loopcore/subprocess.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

/* One of the child's standard descriptors, as the parent sees it. */
typedef struct {
    lc_subprocess_transport_t *proc;
    int fd;            /* the child's: 0, 1 or 2 */
    lc_transport_t *t; /* the pipe transport; NULL if none or once lost */
    bool used;         /* a pipe was connected */
} lc__sp_pipe;

struct lc_subprocess_transport_s {
    lc__resource res;
    uv_poll_t poll; /* on pidfd */
    lc_loop_t *loop;
    uint32_t
        refs; /* one until connection_lost returned, one until the poll handle closed, users' */
    pid_t pid;
    int pidfd;
    int returncode;
    bool exited;
    bool closing;
    bool finished; /* connection_lost scheduled */
    bool lost_delivered;
    bool poll_open;
    bool in_resources;
    const lc_subprocess_protocol_t *proto;
    void *user;
    lc__sp_pipe pipes[3];
    lc_future_t **waiters;
    size_t nwaiters, wcap;
};

static void sp_release(lc_subprocess_transport_t *p);

/* ---- Lifetime -------------------------------------------------------------------------------- */

lc_subprocess_transport_t *lc_subprocess_transport_ref(lc_subprocess_transport_t *t)
{
    if (t != NULL)
        t->refs++;
    return t;
}

void lc_subprocess_transport_unref(lc_subprocess_transport_t *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    for (size_t i = 0; i < t->nwaiters; i++)
        lc_future_unref(t->waiters[i]);
    free(t->waiters);
    free(t);
}

static void sp_poll_closed_cb(uv_handle_t *h) { lc_subprocess_transport_unref(h->data); }

/* The poll of a transport that never came to be (its start failed). */
static void sp_free_cb(uv_handle_t *h) { free(h->data); }

/* Stops watching the pidfd and closes it (uv_close first: libuv stops watching before the fd
 * goes). */
static void sp_close_pidfd(lc_subprocess_transport_t *p)
{
    if (p->poll_open) {
        p->poll_open = false;
        uv_close((uv_handle_t *)&p->poll, sp_poll_closed_cb);
    }
    if (p->pidfd >= 0) {
        close(p->pidfd);
        p->pidfd = -1;
    }
}

static void call_connection_lost(lc_subprocess_transport_t *p, int err)
{
    if (p->lost_delivered)
        return;
    p->lost_delivered = true;
    if (p->proto != NULL && p->proto->connection_lost != NULL)
        p->proto->connection_lost(p, err, p->user);
    sp_release(p);
}

static void connection_lost_cb(void *arg) { call_connection_lost(arg, 0); }

/* Unlinks from the loop and drops the connection's reference (after connection_lost). */
static void sp_release(lc_subprocess_transport_t *p)
{
    sp_close_pidfd(p);
    if (p->in_resources) {
        p->in_resources = false;
        lc__loop_remove_resource(p->loop, &p->res);
    }
    lc_subprocess_transport_unref(p);
}

/* asyncio's _try_finish: connection_lost once the child exited and every pipe is closed. */
static void try_finish(lc_subprocess_transport_t *p)
{
    if (p->finished || !p->exited)
        return;
    for (int i = 0; i < 3; i++)
        if (p->pipes[i].t != NULL)
            return;
    p->finished = true;
    if (lc_loop_call_soon(p->loop, connection_lost_cb, p, NULL) != 0)
        call_connection_lost(p, 0); /* the loop is closing (or out of memory): now */
}

/* The child is reaped with status: record it, tell the protocol, wake the waiters. */
static void sp_exited(lc_subprocess_transport_t *p, const siginfo_t *si)
{
    p->exited = true;
    p->returncode = si->si_code == CLD_EXITED ? si->si_status : -si->si_status;
    sp_close_pidfd(p);
    if (p->proto != NULL && p->proto->process_exited != NULL)
        p->proto->process_exited(p, p->user);
    lc_subprocess_transport_ref(p); /* done callbacks may drop the user's last reference */
    for (size_t i = 0; i < p->nwaiters; i++) {
        lc_future_t *f = p->waiters[i];
        if (!lc_future_done(f))
            lc_future_set_result(f, (void *)(intptr_t)p->returncode);
        lc_future_unref(f);
    }
    p->nwaiters = 0;
    try_finish(p);
    lc_subprocess_transport_unref(p);
}

/* waitid on the pidfd. Returns true once the child is reaped (si filled). */
static bool sp_reap(lc_subprocess_transport_t *p, siginfo_t *si, int flags)
{
    for (;;) {
        memset(si, 0, sizeof(*si));
        int r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, si, WEXITED | flags);
        if (r == 0)
            return si->si_pid != 0;
        if (errno == EINTR)
            continue;
        if (errno == EINVAL || errno == ENOSYS) {
            /* Before Linux 5.4 (no P_PIDFD): the pid, which cannot be recycled while our
             * pidfd holds the zombie. */
            r = waitid(P_PID, (id_t)p->pid, si, WEXITED | flags);
            if (r == 0)
                return si->si_pid != 0;
            if (errno == EINTR)
                continue;
        }
        /* ECHILD: someone else reaped it (waitpid(-1) elsewhere, against the rule). The
         * status is lost: report it as killed by SIGKILL rather than wait forever. */
        memset(si, 0, sizeof(*si));
        si->si_code = CLD_KILLED;
        si->si_status = SIGKILL;
        return true;
    }
}

static void sp_poll_cb(uv_poll_t *h, int status, int events)
{
    if (!lc__io_enter((uv_handle_t *)h))
        return;
    lc_subprocess_transport_t *p = h->data;
    if (p->exited)
        return;
    siginfo_t si;
    if (sp_reap(p, &si, WNOHANG))
        sp_exited(p, &si);
}

/* lc_loop_close() with the child's transport open: its pipes go, the child is killed and reaped
 * (waiting for it: after SIGKILL that is at once, unless it is stuck in the kernel), then
 * process_exited and connection_lost(LC_ECLOSED), so that the protocol can free its state and no
 * zombie is left. */
static void sp_force_close(lc__resource *r)
{
    lc_subprocess_transport_t *p = lc_container_of(r, lc_subprocess_transport_t, res);
    lc_subprocess_transport_ref(p);
    p->closing = true;
    for (int i = 0; i < 3; i++)
        if (p->pipes[i].t != NULL)
            lc_transport_abort(p->pipes[i].t); /* connection_lost at once: the loop is closing */
    if (!p->exited) {
        syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        sp_reap(p, &si, 0);
        p->finished = true; /* connection_lost below, with LC_ECLOSED */
        sp_exited(p, &si);
    }
    call_connection_lost(p, LC_ECLOSED);
    lc_subprocess_transport_unref(p);
}

/* ---- The pipes' protocol (asyncio's ReadSubprocessPipeProto / WriteSubprocessPipeProto) ------ */

static void pipe_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    lc__sp_pipe *pp = user;
    lc_subprocess_transport_t *p = pp->proc;
    if (p->proto->pipe_data_received != NULL)
        p->proto->pipe_data_received(p, pp->fd, data, len, p->user);
}

static void pipe_lost(lc_transport_t *t, int err, void *user)
{
    lc__sp_pipe *pp = user;
    lc_subprocess_transport_t *p = pp->proc;
    pp->t = NULL;
    if (p->proto != NULL && p->proto->pipe_connection_lost != NULL)
        p->proto->pipe_connection_lost(p, pp->fd, err, p->user);
    try_finish(p);
}

static void pipe_pause(lc_transport_t *t, void *user)
{
    lc_subprocess_transport_t *p = ((lc__sp_pipe *)user)->proc;
    if (p->proto->pause_writing != NULL)
        p->proto->pause_writing(p, p->user);
}

static void pipe_resume(lc_transport_t *t, void *user)
{
    lc_subprocess_transport_t *p = ((lc__sp_pipe *)user)->proc;
    if (p->proto->resume_writing != NULL)
        p->proto->resume_writing(p, p->user);
}

static const lc_protocol_t pipe_proto = {
    .data_received = pipe_data,
    .connection_lost = pipe_lost,
    .pause_writing = pipe_pause,
    .resume_writing = pipe_resume,
};

static int pipe_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &pipe_proto;
    *user = arg;
    return 0;
}

/* ---- Spawning -------------------------------------------------------------------------------- */

/* The descriptors of one spawn, in the parent. */
typedef struct {
    int parent[3]; /* our end of each pipe, or -1 */
    int child[3];  /* what becomes the child's 0, 1, 2: -1 for none / inherit / /dev/null */
    int owned[3];  /* descriptors of child[] to close after the spawn (pipe ends, moved fds) */
} spawn_fds;

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

static int check_opts(const lc_subprocess_opts_t *o)
{
    const lc_stdio_t modes[3] = {o->stdin_mode, o->stdout_mode, o->stderr_mode};
    const int fds[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
    for (int i = 0; i < 3; i++) {
        if ((unsigned)modes[i] > LC_STDIO_STDOUT)
            return LC_EINVAL;
        if (modes[i] == LC_STDIO_STDOUT && i != 2)
            return LC_EINVAL;
        if (modes[i] == LC_STDIO_FD && (fds[i] < 0 || fcntl(fds[i], F_GETFD) < 0))
            return LC_EINVAL;
    }
    if (o->npass_fds > 0 && o->pass_fds == NULL)
        return LC_EINVAL;
    for (size_t i = 0; i < o->npass_fds; i++)
        if (o->pass_fds[i] < 3 || fcntl(o->pass_fds[i], F_GETFD) < 0)
            return LC_EINVAL;
    return 0;
}

/* Makes the pipes opts asks for. Returns 0 or -errno (everything closed). */
static int make_fds(const lc_subprocess_opts_t *o, spawn_fds *s)
{
    const lc_stdio_t modes[3] = {o->stdin_mode, o->stdout_mode, o->stderr_mode};
    const int fds[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
    for (int i = 0; i < 3; i++)
        s->parent[i] = s->child[i] = s->owned[i] = -1;
    for (int i = 0; i < 3; i++) {
        int src = -1;
        if (modes[i] == LC_STDIO_PIPE) {
            int pfd[2];
            if (pipe2(pfd, O_CLOEXEC) != 0)
                goto fail;
            /* The child reads its stdin from pfd[0] and writes its output to pfd[1]. */
            s->parent[i] = i == 0 ? pfd[1] : pfd[0];
            s->owned[i] = src = i == 0 ? pfd[0] : pfd[1];
            if (lc__set_nonblocking(s->parent[i]) != 0)
                goto fail;
        } else if (modes[i] == LC_STDIO_FD) {
            src = fds[i];
        }
        /* A source among 0..2 other than its own target would be overwritten by an earlier
         * dup2 of the file actions: move it above 2 first. */
        if (src >= 0 && src < 3 && src != i) {
            int moved = fcntl(src, F_DUPFD_CLOEXEC, 3);
            if (moved < 0)
                goto fail;
            if (s->owned[i] >= 0)
                close(s->owned[i]);
            s->owned[i] = src = moved;
        }
        s->child[i] = src;
    }
    return 0;
fail : {
    int e = -errno;
    close_fds(s->parent, 3);
    close_fds(s->owned, 3);
    return e;
}
}

/* The file actions and attributes of the child's set-up, then posix_spawnp. Returns 0 or the
 * spawn's error (negative). */
static int do_spawn(const char *const *argv, const lc_subprocess_opts_t *o, const spawn_fds *s,
                    pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int r = posix_spawn_file_actions_init(&fa);
    if (r != 0)
        return -r;
    r = posix_spawnattr_init(&attr);
    if (r != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -r;
    }
    const lc_stdio_t modes[3] = {o->stdin_mode, o->stdout_mode, o->stderr_mode};
    for (int i = 0; i < 3 && r == 0; i++) {
        switch (modes[i]) {
        case LC_STDIO_PIPE:
        case LC_STDIO_FD:
            /* dup2 onto the same number clears close-on-exec (POSIX 2024, glibc 2.29+). */
            r = posix_spawn_file_actions_adddup2(&fa, s->child[i], i);
            break;
        case LC_STDIO_DEVNULL:
            r = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY,
                                                 0);
            break;
        case LC_STDIO_INHERIT:
            break;
        case LC_STDIO_STDOUT:
            r = posix_spawn_file_actions_adddup2(&fa, 1, 2);
            break;
        }
    }
    /* Passed descriptors keep their numbers (dup2 onto itself: no close-on-exec); every other
     * descriptor above 2 goes: those below the highest passed one one by one, those above it
     * with closefrom (close_range). */
    int maxpass = 2;
    for (size_t i = 0; i < o->npass_fds && r == 0; i++) {
        r = posix_spawn_file_actions_adddup2(&fa, o->pass_fds[i], o->pass_fds[i]);
        if (o->pass_fds[i] > maxpass)
            maxpass = o->pass_fds[i];
    }
    for (int fd = 3; fd < maxpass && r == 0; fd++) {
        bool passed = false;
        for (size_t i = 0; i < o->npass_fds; i++)
            passed = passed || o->pass_fds[i] == fd;
        if (!passed && fcntl(fd, F_GETFD) >= 0)
            r = posix_spawn_file_actions_addclose(&fa, fd);
    }
    if (r == 0)
        r = posix_spawn_file_actions_addclosefrom_np(&fa, maxpass + 1);
    if (r == 0 && o->cwd != NULL)
        r = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    /* Signals: every disposition back to its default (an ignored SIGPIPE or SIGINT would
     * otherwise be inherited through exec) and an empty mask, as libuv does. */
    sigset_t def, empty;
    sigemptyset(&def);
    sigemptyset(&empty);
    for (int sig = 1; sig < 32; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaddset(&def, sig);
    short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    if (o->start_new_session)
        flags |= POSIX_SPAWN_SETSID;
    if (r == 0)
        r = posix_spawnattr_setsigdefault(&attr, &def);
    if (r == 0)
        r = posix_spawnattr_setsigmask(&attr, &empty);
    if (r == 0)
        r = posix_spawnattr_setflags(&attr, flags);
    if (r == 0) {
        char *const *envp = o->env != NULL ? (char *const *)o->env : environ;
        r = posix_spawnp(pid, argv[0], &fa, &attr, (char *const *)argv, envp);
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return -r;
}

int lc_loop_subprocess_exec(lc_loop_t *loop, lc_subprocess_protocol_factory_fn factory,
                            void *factory_arg, const char *const *argv,
                            const lc_subprocess_opts_t *opts, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (loop == NULL || factory == NULL || fut == NULL || argv == NULL || argv[0] == NULL ||
        argv[0][0] == '\0')
        return LC_EINVAL;
    if (lc_loop_is_closed(loop))
        return LC_ECLOSED;
    lc_subprocess_opts_t o = opts != NULL ? *opts : (lc_subprocess_opts_t){0};
    int r = check_opts(&o);
    if (r != 0)
        return r;
    lc_subprocess_transport_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return LC_ENOMEM;
    r = lc_loop_create_future(loop, fut);
    if (r != 0) {
        free(p);
        return r;
    }
    spawn_fds s;
    r = make_fds(&o, &s);
    pid_t pid = -1;
    if (r == 0) {
        r = do_spawn(argv, &o, &s, &pid);
        close_fds(s.owned, 3); /* the child's ends: the child has its copies */
        if (r != 0)
            close_fds(s.parent, 3);
    }
    int pidfd = -1;
    if (r == 0) {
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
            r = -errno;
            /* No pidfd (EMFILE, ...): the child is ours by its pid until reaped. */
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
            }
            close_fds(s.parent, 3);
        }
    }
    const lc_subprocess_protocol_t *proto = NULL;
    void *user = NULL;
    if (r == 0) {
        r = factory(factory_arg, &proto, &user);
        if (r == 0 && proto == NULL)
            r = LC_EINVAL;
    }
    bool poll_made = false;
    if (r == 0) {
        p->pidfd = pidfd;
        r = uv_poll_init(lc__loop_uv(loop), &p->poll, pidfd);
        poll_made = r == 0;
        if (r == 0) {
            p->poll.data = p;
            /* Checked: a child whose exit nobody watches would stay a zombie until its
             * transport closes. The callback cannot run before this function returns. */
            r = uv_poll_start(&p->poll, UV_READABLE, sp_poll_cb);
        }
    }
    if (r != 0) {
        if (pidfd >= 0) {
            syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
            siginfo_t si;
            p->pidfd = pidfd;
            p->pid = pid;
            sp_reap(p, &si, 0);
            if (poll_made)
                uv_close((uv_handle_t *)&p->poll, sp_free_cb); /* frees p; stops watching first */
            close(pidfd);
            close_fds(s.parent, 3);
        }
        if (!poll_made)
            free(p);
        lc_future_set_error(*fut, r);
        return 0;
    }
    p->poll_open = true;
    p->loop = loop;
    p->refs = 2; /* the connection's (until connection_lost returned) and the poll handle's */
    p->pid = pid;
    p->proto = proto;
    p->user = user;
    p->res.force_close = sp_force_close;
    lc__loop_add_resource(loop, &p->res);
    p->in_resources = true;
    /* The pipe transports (made after the resource, so that lc_loop_close() tears them down
     * first). A pipe that cannot be watched (out of memory) is closed: the child sees EOF or
     * EPIPE on it, and the protocol gets its pipe_connection_lost. */
    int pipe_err[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        p->pipes[i] = (lc__sp_pipe){.proc = p, .fd = i};
        if (s.parent[i] < 0)
            continue;
        p->pipes[i].used = true;
        p->pipes[i].t =
            lc__transport_new_pipe(loop, s.parent[i], pipe_factory, &p->pipes[i], i == 0, &r);
        if (p->pipes[i].t == NULL)
            pipe_err[i] = r != 0 ? r : LC_ENOMEM;
    }
    if (proto->connection_made != NULL)
        proto->connection_made(p, user);
    for (int i = 0; i < 3; i++)
        if (pipe_err[i] != 0 && proto->pipe_connection_lost != NULL && !p->lost_delivered)
            proto->pipe_connection_lost(p, i, pipe_err[i], user);
    lc_future_set_result(*fut, p);
    return 0;
}

int lc_loop_subprocess_shell(lc_loop_t *loop, lc_subprocess_protocol_factory_fn factory,
                             void *factory_arg, const char *cmd, const lc_subprocess_opts_t *opts,
                             lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (cmd == NULL)
        return LC_EINVAL;
    const char *const argv[] = {"/bin/sh", "-c", cmd, NULL};
    return lc_loop_subprocess_exec(loop, factory, factory_arg, argv, opts, fut);
}

/* ---- The transport --------------------------------------------------------------------------- */

pid_t lc_subprocess_transport_get_pid(const lc_subprocess_transport_t *t)
{
    return t != NULL ? t->pid : LC_EINVAL;
}

int lc_subprocess_transport_get_returncode(const lc_subprocess_transport_t *t, int *returncode)
{
    if (t == NULL || returncode == NULL)
        return LC_EINVAL;
    if (!t->exited)
        return LC_EAGAIN;
    *returncode = t->returncode;
    return 0;
}

lc_transport_t *lc_subprocess_transport_get_pipe_transport(const lc_subprocess_transport_t *t,
                                                           int fd)
{
    if (t == NULL || fd < 0 || fd > 2)
        return NULL;
    return t->pipes[fd].t;
}

int lc_subprocess_transport_send_signal(lc_subprocess_transport_t *t, int signum)
{
    if (t == NULL || signum < 0)
        return LC_EINVAL;
    if (t->exited || t->pidfd < 0)
        return -ESRCH;
    if (syscall(SYS_pidfd_send_signal, t->pidfd, signum, NULL, 0) != 0)
        return -errno;
    return 0;
}

int lc_subprocess_transport_terminate(lc_subprocess_transport_t *t)
{
    return lc_subprocess_transport_send_signal(t, SIGTERM);
}

int lc_subprocess_transport_kill(lc_subprocess_transport_t *t)
{
    return lc_subprocess_transport_send_signal(t, SIGKILL);
}

int lc_subprocess_transport_close(lc_subprocess_transport_t *t)
{
    if (t == NULL)
        return LC_EINVAL;
    if (t->closing)
        return 0;
    t->closing = true;
    lc_subprocess_transport_ref(t);
    for (int i = 0; i < 3; i++)
        if (t->pipes[i].t != NULL)
            lc_transport_close(t->pipes[i].t);
    if (!t->exited && t->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, t->pidfd, SIGKILL, NULL, 0);
    lc_subprocess_transport_unref(t);
    return 0;
}

bool lc_subprocess_transport_is_closing(const lc_subprocess_transport_t *t)
{
    return t == NULL || t->closing;
}

int lc_subprocess_transport_wait(lc_subprocess_transport_t *t, lc_future_t **fut)
{
    if (fut != NULL)
        *fut = NULL;
    if (t == NULL || fut == NULL)
        return LC_EINVAL;
    if (lc_loop_is_closed(t->loop))
        return LC_ECLOSED;
    if (!t->exited && t->nwaiters == t->wcap) {
        size_t cap = t->wcap ? 2 * t->wcap : 2;
        lc_future_t **nw = realloc(t->waiters, cap * sizeof(*nw));
        if (nw == NULL)
            return LC_ENOMEM;
        t->waiters = nw;
        t->wcap = cap;
    }
    int r = lc_loop_create_future(t->loop, fut);
    if (r != 0)
        return r;
    if (t->exited)
        lc_future_set_result(*fut, (void *)(intptr_t)t->returncode);
    else
        t->waiters[t->nwaiters++] = lc_future_ref(*fut);
    return 0;
}

const lc_subprocess_protocol_t *
lc_subprocess_transport_get_protocol(const lc_subprocess_transport_t *t, void **user)
{
    if (user != NULL)
        *user = t != NULL ? t->user : NULL;
    return t != NULL ? t->proto : NULL;
}

lc_loop_t *lc_subprocess_transport_get_loop(const lc_subprocess_transport_t *t)
{
    return t != NULL ? t->loop : NULL;
}
