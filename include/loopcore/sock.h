/** @file
 *  @ingroup sock
 *  @defgroup sock Watching file descriptors and sockets directly (loopcore/sock.h)
 *
 * loopcore: watching file descriptors and working with sockets directly (the spec's "Watching
 * file descriptors" and "Working with socket objects directly").
 *
 * Every function here is loop-thread-only. fd is any pollable file descriptor (a socket, a pipe,
 * an eventfd, a tty; a regular file is refused with -EPERM, as epoll refuses it) that no
 * transport owns: an fd a transport watches is refused with LC_EFDTRANSPORT (asyncio's "File
 * descriptor is used by transport"). The loop never closes fd: it stays the caller's.
 *
 * Watching. One reader and one writer per fd: adding again replaces the callback (and its arg);
 * removing says whether one was registered. fn(arg) runs as an ordinary callback, in asyncio's
 * order: in the iteration whose poll found fd ready, after the callbacks that were ready before
 * that poll, reader before writer; it is called again in every iteration while fd stays ready
 * (level-triggered), until removed. A callback removed or replaced before it ran is not called
 * with the old function.
 *
 * Closing a watched fd. Remove the reader and writer (and cancel pending sock_* calls) before
 * closing fd, as asyncio requires; a callback may remove its own registration and then close its
 * fd. If you close fd first, the loop neither crashes nor spins (its watchers live in an epoll
 * of their own, which forgets a closed file; libuv's is not involved), but:
 *  - a reader or writer never fires again and stays registered until removed: remove_reader /
 *    remove_writer then say it was there (as asyncio's do); a remove that leaves the other
 *    direction registered finds fd closed and drops that one, reported to the exception handler
 *    ("File descriptor closed while registered with the loop");
 *  - a sock_* call names an fd number, not a file. One left pending is failed with -EBADF (and
 *    reported) when the loop finds the fd closed: at the check of a call still waiting after
 *    5-10 ms, or when the number is next used by add_reader / add_writer, a call queued behind
 *    it, sock_accept's new socket or a transport. If instead the number has come back for
 *    another socket before the loop looked, the loop cannot tell the call from one made for the
 *    new socket and serves it from that socket. So cancel pending calls before closing;
 *  - if the number comes back for another file, the next add_reader or add_writer on it, or a
 *    sock_* call that waits on it, notices (another st_dev/st_ino, or the epoll does not know
 *    the file), drops the stale registration as above and watches the new file correctly. A
 *    transport taking the number drops it too;
 *  - if the file lives on (dup, fork) after fd was closed, epoll keeps reporting it under the
 *    old number: a level-triggered callback that cannot read it is called every iteration until
 *    removed; once the number has been re-registered for another file, the old file's item can
 *    no longer be deleted by number, and the loop rebuilds its epoll (reported: "... still open
 *    elsewhere ...") rather than wake for it forever. Remove before closing.
 *
 * Sockets directly. The sock_* calls take a non-blocking socket (LC_EINVAL otherwise) and make a
 * future (one reference for the caller in *fut). Each first tries the
 * operation and waits for readiness only if it would block; calls on one fd are served in the
 * order made, reads (recv, recv_into, accept) and writes (sendall, connect) each in their own
 * queue, and a call waits its turn behind earlier ones of its direction. Cancelling a pending
 * call's future takes it off its queue and stops watching fd if it was the last: the socket
 * stays usable, and a cancelled call never consumes data. A reader or writer added on the same fd
 * is called alongside (each sees fd ready). Errors of the operation itself fail the future with
 * -errno (-ECONNRESET, -EPIPE: sends never raise SIGPIPE). Closing the loop fails pending calls
 * with LC_ECLOSED.
 *
 * The non-blocking check. sock_connect and sock_accept read the flag (fcntl) on every call. The
 * other calls read it when the loop first sees fd and keep it with fd's watcher, as asyncio
 * keeps it in the socket object (a later fcntl by the caller is not seen); they try recv and
 * send with MSG_DONTWAIT, so a socket made blocking behind the loop's back never blocks it, and
 * a call that has to wait on a number reused by another file reads the flag again.
 *
 * Cost: a call that completes at once makes its one system call; one that waits makes none
 * more: the socket is registered (edge-triggered) in the loop's epoll of watched fds at its first
 * wait and stays so, and the calls share that epoll's wait with every other watched fd.
 * sock_connect, sock_accept and sock_sendfile check with one epoll_ctl that the registration is
 * the socket's (the number may have been closed and reused); recv, recv_into and sendall trust
 * it, and a call that is still waiting after 5 to 10 ms is checked then (a number reused by a
 * socket not made by sock_accept may so wait up to 10 ms longer, never forever). One exception to
 * "tries first": a read on a stream socket whose previous recv returned less than it asked for (its
 * queue was empty then) waits without trying, as Tokio does; data that came meanwhile is reported
 * by the next poll, so the call completes one iteration later, never with anything lost or
 * reordered.
 * @{ */
#ifndef LOOPCORE_SOCK_H
#define LOOPCORE_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loopcore/future.h"
#include "loopcore/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/* ---- Watching file descriptors ------------------------------------------------------------- */

/** Calls fn(arg) whenever fd is readable, replacing fd's reader if it has one. Returns 0,
 *  LC_EINVAL (NULL fn, fd < 0), LC_ECLOSED, LC_EFDTRANSPORT, -EBADF (fd not open), -EPERM (not
 *  pollable), -EEXIST (fd is one loopcore watches itself: a server's listener, the loop's own),
 *  LC_ENOMEM, LC_EWRONGTHREAD (debug). */
int lc_loop_add_reader(lc_loop_t *loop, int fd, lc_call_fn fn, void *arg);

/** Stops watching fd for reading. *removed (may be NULL) tells whether a reader was registered.
 *  Returns 0, LC_EINVAL, LC_EFDTRANSPORT. On a closed loop: 0 with *removed false. */
int lc_loop_remove_reader(lc_loop_t *loop, int fd, bool *removed);

/** As lc_loop_add_reader, for writability. */
int lc_loop_add_writer(lc_loop_t *loop, int fd, lc_call_fn fn, void *arg);

/** As lc_loop_remove_reader, for the writer. */
int lc_loop_remove_writer(lc_loop_t *loop, int fd, bool *removed);

/* ---- Working with sockets directly ---------------------------------------------------------- */

/** sock_recv's result: the bytes received (len 0: the peer closed its side). Owned by the future:
 *  valid while the caller holds its reference. data points into the same allocation. */
typedef struct lc_sock_data_s {
    size_t len;          /**< bytes received; 0: the peer closed its side */
    unsigned char *data; /**< the bytes (in the same allocation as this struct) */
} lc_sock_data_t;

/** sock_accept's result, owned by the future (valid while the caller holds its reference). fd is
 *  the caller's from the moment the future resolves: non-blocking and close-on-exec; close it. */
typedef struct lc_sock_accepted_s {
    int fd;                       /**< the accepted connection: the caller's to close */
    socklen_t addrlen;            /**< the length of addr */
    struct sockaddr_storage addr; /**< the peer's address */
} lc_sock_accepted_t;

/** Receives up to nbytes (> 0) from fd; *fut resolves with an lc_sock_data_t * (asyncio's bytes;
 *  len 0 at end of stream). Returns 0 (then *fut holds one reference; else *fut is NULL),
 *  LC_EINVAL (also: fd blocking, fut NULL), LC_ECLOSED, LC_EFDTRANSPORT, -EBADF, LC_ENOMEM,
 *  LC_EWRONGTHREAD (debug). */
int lc_loop_sock_recv(lc_loop_t *loop, int fd, size_t nbytes, lc_future_t **fut);

/** Receives up to len (> 0) bytes into buf, which must stay valid until *fut is done; *fut
 *  resolves with the count as (void *)(uintptr_t)n (lc_sock_count()). Returns as sock_recv. */
int lc_loop_sock_recv_into(lc_loop_t *loop, int fd, void *buf, size_t len, lc_future_t **fut);

/** Sends all len bytes of data: *fut resolves (result NULL) once the socket took every byte, or
 *  fails with the socket's error (how much went out is then unknown, as in asyncio). What cannot
 *  be sent at once is copied: data may be freed when the call returns. Returns as sock_recv. */
int lc_loop_sock_sendall(lc_loop_t *loop, int fd, const void *data, size_t len, lc_future_t **fut);

/** Connects fd to host:port. host is a numeric address (connects at once) or a name, resolved
 *  off the loop thread with getaddrinfo for fd's family and type, connecting to the first
 *  address, as asyncio does. *fut resolves (result NULL) once connected, or fails with the
 *  connect error (-ECONNREFUSED, ...) or the resolver's. Returns as sock_recv. */
int lc_loop_sock_connect(lc_loop_t *loop, int fd, const char *host, uint16_t port,
                         lc_future_t **fut);

/** As lc_loop_sock_connect, to an address (any family: AF_INET, AF_INET6, AF_UNIX). */
int lc_loop_sock_connect_addr(lc_loop_t *loop, int fd, const struct sockaddr *addr,
                              socklen_t addrlen, lc_future_t **fut);

/** Accepts a connection on the listening fd; *fut resolves with an lc_sock_accepted_t *.
 *  Returns as sock_recv. */
int lc_loop_sock_accept(lc_loop_t *loop, int fd, lc_future_t **fut);

/** The count a resolved sock_recv_into future carries: its result (from lc_future_result or
 *  lc_await) as a size. Any thread. */
size_t lc_sock_count(const void *result);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
