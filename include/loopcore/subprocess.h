/* Pipes and subprocesses: connect_read_pipe / connect_write_pipe, subprocess_exec /
 * subprocess_shell, the subprocess protocol and transport.
 *
 * Pipe transports are the stream transports of loopcore/stream.h in a pipe mode (the same
 * lc_transport_t, protocols and calls), over a pipe, a FIFO, a socket or a character device (a
 * pty). What differs from a socket's, after asyncio's unix_events.py:
 *  - A read pipe transport reads only: pause_reading / resume_reading / close / abort; the
 *    writes, write_eof (LC_ENOTSUP) and can_write_eof (false) do not apply. At EOF the protocol's
 *    eof_received is called (its return value is ignored: a pipe has no half-close), then
 *    connection_lost(0). On a pty's master, the EIO that reading gives once the slave side is
 *    closed counts as that EOF.
 *  - A write pipe transport writes only: write, writelines, write_nocopy, flow control with the
 *    sockets' watermarks (lc_transport_set_write_buffer_limits, pause_writing / resume_writing),
 *    the send timeout, close, abort; pause_reading / resume_reading return LC_ENOTSUP.
 *    write_eof closes the pipe once the queued data is written (connection_lost(0) follows, as
 *    asyncio's write pipe does). The reader closing its end loses the connection, as asyncio's
 *    _UnixWritePipeTransport: with LC_EPIPE if data was queued or a write met it, with 0 if the
 *    transport was idle (a pipe or a FIFO is watched for this, so it is seen at once; a socket or a
 *    character device, at the next write). Writing to a pipe whose reader is
 *    gone never raises SIGPIPE in the process: the signal is blocked in the writing thread
 *    around each write and the one the write raised is discarded.
 *  - get_peername / get_sockname fail with -ENOTSOCK on a non-socket; start_tls is LC_EINVAL.
 * The fd is made non-blocking (O_NONBLOCK is a property of the open file, so other holders of
 * a FIFO or a pty see it too, as with asyncio) and close-on-exec, and belongs to the transport.
 *
 * Subprocesses. Each child is spawned without copying the parent's page tables (posix_spawn,
 * which glibc runs as clone(CLONE_VM | CLONE_VFORK)): every signal 1..31 reset to its default
 * disposition, an empty signal mask, and no descriptor but 0, 1, 2 and opts->pass_fds (the others
 * are closed in the child with close_range, and loopcore's own are close-on-exec). It is
 * reaped through a pidfd of its own (pidfd_open, watched by the loop, waitid(P_PIDFD)): no
 * SIGCHLD handler, and no other child of the process is ever waited for, so code that waits for
 * its own children is left alone, and several loops may spawn at the same moment. The one rule
 * for the rest of the process: nothing may wait for "any child" (waitpid(-1), a SIGCHLD handler
 * that reaps everything), which would steal loopcore's children.
 *
 * Every function here is loop-thread only. */
#ifndef LOOPCORE_SUBPROCESS_H
#define LOOPCORE_SUBPROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "loopcore/future.h"
#include "loopcore/loop.h"
#include "loopcore/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Pipes ----------------------------------------------------------------------------------- */

/** connect_read_pipe: wraps fd (the read end of a pipe, a FIFO, a socket or a character device)
 *  in a read pipe transport with a protocol made by factory(factory_arg), calls connection_made
 *  and resolves *fut at once with the lc_transport_t * (borrowed, as create_connection's). The
 *  transport owns fd from then on (even on failure it is closed). Returns 0 (then *fut holds one
 *  reference for the caller; a refused factory fails it), LC_EINVAL (a NULL argument, a negative
 *  fd, or fd is a regular file or a directory, which cannot be polled), LC_ECLOSED, LC_ENOMEM, or
 *  fstat's / fcntl's error. */
int lc_loop_connect_read_pipe(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                              int fd, lc_future_t **fut);

/** connect_write_pipe: the same for the write end (a write pipe transport). */
int lc_loop_connect_write_pipe(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                               int fd, lc_future_t **fut);

/* ---- Subprocess protocol --------------------------------------------------------------------- */

typedef struct lc_subprocess_transport_s lc_subprocess_transport_t;

/* The callbacks of a subprocess protocol (asyncio.SubprocessProtocol); any may be NULL. fd is the
 * child's descriptor the pipe is connected to: 0 (stdin), 1 (stdout) or 2 (stderr). Order, as
 * asyncio's base_subprocess: connection_made first; pipe_data_received and pipe_connection_lost
 * while the pipes are open; process_exited once the child has exited (pipes may still be open:
 * a grandchild can hold them); connection_lost last, once the child exited and every pipe is
 * closed. */
typedef struct lc_subprocess_protocol_s {
    void (*connection_made)(lc_subprocess_transport_t *t, void *user);
    /* len bytes the child wrote to fd (1 or 2), valid during the call only. */
    void (*pipe_data_received)(lc_subprocess_transport_t *t, int fd, const char *data, size_t len,
                               void *user);
    /* The pipe of fd is closed: err 0 (EOF, close, write_eof, the child closing an idle stdin),
     * or its error (LC_EPIPE: the child closed its stdin with data still queued for it). */
    void (*pipe_connection_lost)(lc_subprocess_transport_t *t, int fd, int err, void *user);
    void (*process_exited)(lc_subprocess_transport_t *t, void *user);
    /* err: 0, or LC_ECLOSED when lc_loop_close() ended it (the child is then killed and reaped,
     * after its process_exited). The protocol frees its state here. */
    void (*connection_lost)(lc_subprocess_transport_t *t, int err, void *user);
    /* Flow control of the stdin pipe (above its high-water mark / back to the low one). */
    void (*pause_writing)(lc_subprocess_transport_t *t, void *user);
    void (*resume_writing)(lc_subprocess_transport_t *t, void *user);
} lc_subprocess_protocol_t;

/* Makes the protocol of a new subprocess: sets *proto (a table that must outlive the process's
 * transport) and *user. Returns 0, or a negative code: the child is then killed and reaped, and
 * the future fails with that code. */
typedef int (*lc_subprocess_protocol_factory_fn)(void *factory_arg,
                                                 const lc_subprocess_protocol_t **proto,
                                                 void **user);

/* ---- Options --------------------------------------------------------------------------------- */

/* What a child's stdin, stdout or stderr is connected to. */
typedef enum {
    LC_STDIO_PIPE = 0, /* a new pipe, with a pipe transport (subprocess.PIPE, the default) */
    LC_STDIO_DEVNULL,  /* /dev/null (subprocess.DEVNULL) */
    LC_STDIO_INHERIT,  /* the parent's own descriptor (None) */
    LC_STDIO_FD,       /* the descriptor in the matching *_fd field (a file object's fileno()),
                          left open in the parent */
    LC_STDIO_STDOUT,   /* stderr only: the same as stdout (subprocess.STDOUT) */
} lc_stdio_t;

/* subprocess_exec / subprocess_shell's keyword arguments; zero values are the defaults. */
typedef struct lc_subprocess_opts_s {
    lc_stdio_t stdin_mode, stdout_mode, stderr_mode; /* stdin=, stdout=, stderr= */
    int stdin_fd, stdout_fd, stderr_fd;              /* with LC_STDIO_FD */
    const char *cwd;        /* cwd=: the child's working directory; NULL: the parent's. A
                               relative argv[0] that has a '/' is then found from cwd, as
                               with Python's subprocess */
    const char *const *env; /* env=: "NAME=value" strings, NULL-terminated; NULL: the
                               parent's environment. The executable is looked up in the
                               parent's PATH when argv[0] has no '/' */
    bool start_new_session; /* start_new_session=: setsid() in the child */
    const int *pass_fds;    /* pass_fds=: descriptors (each >= 3) the child keeps, at the */
    size_t npass_fds;       /* same numbers */
} lc_subprocess_opts_t;

/* ---- Spawning -------------------------------------------------------------------------------- */

/** subprocess_exec: runs argv[0] (looked up in PATH when it has no '/') with the NULL-terminated
 *  argv, connects the pipes opts asks for (by default all three), makes the protocol with
 *  factory(factory_arg), calls connection_made, and resolves *fut with the
 *  lc_subprocess_transport_t * (borrowed until its connection_lost returns: _ref it to keep it).
 *  The future fails with the spawn's error: -ENOENT for a missing executable (or cwd), -EACCES,
 *  ...; the child of a failed spawn is already reaped (no zombie) and no protocol is made.
 *  Returns 0 (then *fut holds one reference for the caller), LC_EINVAL (a NULL or empty argv, a
 *  bad stdio mode or fd, LC_STDIO_STDOUT for stdin or stdout, a pass_fds entry below 3),
 *  LC_ECLOSED, LC_ENOMEM. */
int lc_loop_subprocess_exec(lc_loop_t *loop, lc_subprocess_protocol_factory_fn factory,
                            void *factory_arg, const char *const *argv,
                            const lc_subprocess_opts_t *opts, lc_future_t **fut);

/** subprocess_shell: runs cmd with "/bin/sh -c cmd", as subprocess_exec. */
int lc_loop_subprocess_shell(lc_loop_t *loop, lc_subprocess_protocol_factory_fn factory,
                             void *factory_arg, const char *cmd, const lc_subprocess_opts_t *opts,
                             lc_future_t **fut);

/* ---- Subprocess transport -------------------------------------------------------------------- */

/** The child's process id (valid, as a number, after it exited too). */
pid_t lc_subprocess_transport_get_pid(const lc_subprocess_transport_t *t);

/** Once the child has exited and been reaped: 0, with *returncode its exit status, or minus the
 *  signal number that killed it (Python's returncode). While it runs: LC_EAGAIN (asyncio's None).
 *  LC_EINVAL for a NULL argument. */
int lc_subprocess_transport_get_returncode(const lc_subprocess_transport_t *t, int *returncode);

/** The pipe transport of the child's fd (0: a write pipe transport; 1, 2: read pipe transports),
 *  or NULL if that fd has no pipe or its pipe is closed (after its pipe_connection_lost). */
lc_transport_t *lc_subprocess_transport_get_pipe_transport(const lc_subprocess_transport_t *t,
                                                           int fd);

/** Sends signum to the child (pidfd_send_signal: never to a recycled pid). Returns 0, LC_EINVAL,
 *  or -ESRCH once the child has exited (asyncio's ProcessLookupError). */
int lc_subprocess_transport_send_signal(lc_subprocess_transport_t *t, int signum);
/** SIGTERM / SIGKILL, as send_signal. */
int lc_subprocess_transport_terminate(lc_subprocess_transport_t *t);
int lc_subprocess_transport_kill(lc_subprocess_transport_t *t);

/** Closes every pipe transport of the child (each flushes first, as lc_transport_close) and, if the
 *  child is still running, kills it (SIGKILL), as asyncio's base_subprocess does. process_exited
 *  and connection_lost still follow, once it exited and the pipes closed. Idempotent. Returns 0
 *  or LC_EINVAL. */
int lc_subprocess_transport_close(lc_subprocess_transport_t *t);
/** True once close was called. */
bool lc_subprocess_transport_is_closing(const lc_subprocess_transport_t *t);

/** Process.wait(): *fut resolves with the returncode once the child has exited (at once if it
 *  has), as an intptr_t in the result pointer: lc_future_result(fut, &r) then (int)(intptr_t)r.
 *  Returns 0 (then *fut holds one reference for the caller), LC_EINVAL, LC_ECLOSED, LC_ENOMEM. */
int lc_subprocess_transport_wait(lc_subprocess_transport_t *t, lc_future_t **fut);

/** The protocol table and, in *user if not NULL, its user pointer. */
const lc_subprocess_protocol_t *
lc_subprocess_transport_get_protocol(const lc_subprocess_transport_t *t, void **user);
lc_loop_t *lc_subprocess_transport_get_loop(const lc_subprocess_transport_t *t);

/** Keeps the transport's memory alive past connection_lost; unref releases it. */
lc_subprocess_transport_t *lc_subprocess_transport_ref(lc_subprocess_transport_t *t);
void lc_subprocess_transport_unref(lc_subprocess_transport_t *t);

#ifdef __cplusplus
}
#endif

#endif
