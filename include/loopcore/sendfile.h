/** @file
 *  @ingroup sendfile
 *  @defgroup sendfile Transferring files: sendfile and sock_sendfile (loopcore/sendfile.h)
 *
 * Transferring files: loop.sendfile() on a stream transport and loop.sock_sendfile() on a raw
 * socket (the spec's "Transferring files" section and sock_sendfile), with asyncio's semantics
 * (CPython's Lib/asyncio/base_events.py and selector_events.py). uvloop has no sendfile at all
 * (its issue #228); here the native path is sendfile(2).
 *
 * The file. file_fd must be a regular file open for reading (anything else is
 * LC_ESENDFILENOTAVAILABLE: asyncio's fallback would read a pipe too, but a read on the loop
 * thread could block it for ever). It is the caller's: it must stay open until the future is done
 * and is never closed here. Bytes are read from offset on (pread / sendfile with an explicit
 * offset), count of them, or to the end of the file when count is 0 (asyncio's count=None; a
 * file that grows meanwhile is sent until sendfile(2) or read finds its end). The file's own
 * offset is left where asyncio leaves it: at offset + the bytes sent when any byte was sent
 * (also after an error or a cancellation), and untouched otherwise, except that the fallback
 * first seeks to a non-zero offset, as asyncio's does. Reads of the fallback run on the loop
 * thread (asyncio runs them on its executor): 256 KiB at a time from a regular file, which the
 * page cache usually serves at once.
 *
 * The first sendfile(2) is tried inside the call when nothing waits before it (asyncio's native
 * path does the same), so the future may be done when the call returns; its done callbacks
 * still run from the loop, never inside the call.
 *
 * The future. *fut resolves with the number of bytes sent, as a uintptr_t in the result pointer
 * (read it with lc_future_result(fut, &p) then (uintptr_t)p), or fails. Cancelling it stops the
 * transfer where it is (bytes already sent stay sent; the file's offset is updated as above; a
 * transport gets its state back as at the end of a sendfile). Loop thread only.
 *  @{ */
#ifndef LOOPCORE_SENDFILE_H
#define LOOPCORE_SENDFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "loopcore/future.h"
#include "loopcore/loop.h"
#include "loopcore/stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/** loop.sendfile(transport, file, offset, count, fallback=...): sends count bytes of file_fd
 *  from offset (count 0: to the end) on the stream transport t.
 *
 *  Plain transports (asyncio's native path, selector_events._sendfile_native): reading is paused,
 *  the write buffer is left to drain, then sendfile(2) sends the file in non-blocking chunks
 *  straight from the page cache, as fast as the socket takes it; at the end reading is resumed
 *  if it was on. If sendfile(2) refuses the file before any byte went (EINVAL, ENOSYS: a file
 *  system without it), the fallback below is used when fallback is true, else the future fails
 *  with LC_ESENDFILENOTAVAILABLE.
 *  TLS transports (asyncio's _sendfile_fallback): with fallback, the file is read in 256 KiB
 *  chunks and each is written with lc_transport_write, waiting while the transport is paused
 *  (above its high-water mark) for it to come back to the low one; reading is paused meanwhile,
 *  as in the native path. Without fallback the call returns LC_ESENDFILENOTAVAILABLE.
 *
 *  While it runs (from this call until the future is done):
 *   - writes are refused: lc_transport_write / writelines / write_nocopy return LC_EBUSY
 *     (asyncio's native path raises "unable to write; sendfile is in progress"; its fallback
 *     lets them interleave with the file's bytes, which would corrupt the stream, so both paths
 *     refuse them here). A second sendfile on the transport is LC_EBUSY too (asyncio: "Empty
 *     waiter is already set"), and so is write_eof (asyncio would shut the socket down under
 *     the file).
 *   - the transport reads nothing: pause_reading / resume_reading only record what the protocol
 *     wants when the sendfile ends (is_reading is false meanwhile; asyncio pauses reading too).
 *   - the protocol gets no pause_writing / resume_writing: if it was paused when the sendfile
 *     began it gets resume_writing at the end (asyncio's fallback does so on restore).
 *   - a send timeout set on t (lc_transport_set_send_timeout) also bounds the native path:
 *     no byte taken by the socket for that long resets the connection (LC_ESENDTIMEOUT).
 *   - close() or abort() fails the future with LC_ECLOSED at once (close still flushes what was
 *     queued before); a lost connection (the peer's reset: -ECONNRESET, -EPIPE; the send timeout)
 *     fails it with that error, and connection_lost follows as for a failed write. Either way the
 *     future's callbacks come before connection_lost (those added right after this call too:
 *     an error met inside the call is reported from the loop).
 *   - lc_loop_start_tls on t returns LC_EBUSY (the upgrade needs an idle transport).
 *
 *  Returns 0 (then *fut holds one reference for the caller), LC_EINVAL (NULL arguments, a
 *  negative offset or file_fd), LC_ECLOSED (t closing or closed), LC_EBUSY (a sendfile already
 *  runs on t), LC_ESENDFILENOTAVAILABLE (not a regular file; TLS without fallback),
 *  LC_ENOTSUP (a pipe transport: asyncio's have no sendfile either), LC_ENOMEM. */
int lc_loop_sendfile(lc_loop_t *loop, lc_transport_t *t, int file_fd, off_t offset, size_t count,
                     bool fallback, lc_future_t **fut);

/** loop.sock_sendfile(sock, file, offset, count, fallback=...): the same on a connected,
 *  non-blocking stream socket that no transport owns (LC_EFDTRANSPORT otherwise). sendfile(2)
 *  is tried at once and, only when it would block, the call waits for writability in the
 *  socket's write queue, behind sock_sendall calls made before it (as every sock_* call does;
 *  a writer added with add_writer is called alongside). With
 *  fallback, a file sendfile(2) refuses before any byte went is sent by pread + send, 256 KiB at
 *  a time (asyncio's _sock_sendfile_fallback); without it the future fails with
 *  LC_ESENDFILENOTAVAILABLE. Send errors fail the future with the socket's error (-ECONNRESET,
 *  -EPIPE, ...); the socket is the caller's and stays open. One sock_sendfile per socket at a
 *  time, and nothing else written to it meanwhile (asyncio has the same rule, unchecked).
 *  Returns 0 (*fut holds one reference), LC_EINVAL (NULL arguments, a negative offset, a socket
 *  that is blocking or not SOCK_STREAM), LC_ECLOSED (the loop is closed), LC_EFDTRANSPORT,
 *  LC_ESENDFILENOTAVAILABLE (not a regular file), LC_ENOMEM, or fstat's / fcntl's error. */
int lc_loop_sock_sendfile(lc_loop_t *loop, int sockfd, int file_fd, off_t offset, size_t count,
                          bool fallback, lc_future_t **fut);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
