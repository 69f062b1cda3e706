/** @file
 *  @ingroup errno
 *  @defgroup errno Error codes (loopcore/errno.h)
 *
 * loopcore error codes.
 *
 * Every fallible function returns 0 (or a non-negative value where its comment says so) on
 * success and a negative code on failure. System errors are -errno, so libuv's codes pass through
 * unchanged (LC_EINVAL == UV_EINVAL). loopcore's own conditions live in a reserved range below
 * -5000, clear of libuv's (-3000 for getaddrinfo, -4080 and -4095 for its own).
 *
 * If a function that takes a callback fails, that callback is never called.
 * @{ */
#ifndef LOOPCORE_ERRNO_H
#define LOOPCORE_ERRNO_H

#include <errno.h>

#define LC_EINVAL (-EINVAL)       /**< an invalid argument (-EINVAL) */
#define LC_ENOMEM (-ENOMEM)       /**< out of memory (-ENOMEM) */
#define LC_EBUSY (-EBUSY)         /**< busy: the call cannot be made now (-EBUSY) */
#define LC_EAGAIN (-EAGAIN)       /**< try again later: a queue is full (-EAGAIN) */
#define LC_ETIMEDOUT (-ETIMEDOUT) /**< timed out (-ETIMEDOUT) */
#define LC_ENOTSUP (-ENOTSUP)     /**< not supported (-ENOTSUP) */
#define LC_ENOENT (-ENOENT)       /**< no such entry (-ENOENT) */
/** A broken pipe (-EPIPE). Also what a transport's write returns after write_eof (asyncio: "Cannot
 * call write() after write_eof()"); lc_strerror() gives libuv's text, "broken pipe". */
#define LC_EPIPE (-EPIPE)

/** The future or task was cancelled (asyncio.CancelledError): a status of its own, not a
 *  failure. */
#define LC_ECANCELLED (-5001)
/** The object is in the wrong state for the call (asyncio.InvalidStateError). */
#define LC_EINVALIDSTATE (-5002)
/** The event loop is closed. */
#define LC_ECLOSED (-5003)
/** The event loop is running (run_forever twice, close while running). */
#define LC_ERUNNING (-5004)
/** Another event loop is already running in this thread. */
#define LC_EOTHERLOOP (-5005)
/** run_until_complete: the loop stopped before the future completed. */
#define LC_ESTOPPED (-5006)
/** get_running_loop: no event loop is running in this thread. */
#define LC_ENORUNNINGLOOP (-5007)
/** get_event_loop: no current loop for this thread, and set_event_loop() was called. */
#define LC_ENOCURRENTLOOP (-5008)
/** The future belongs to a different loop than the one given. */
#define LC_EWRONGLOOP (-5009)
/** Debug mode: a loop-thread-only function was called from another thread while the loop ran. */
#define LC_EWRONGTHREAD (-5010)
/** sendfile cannot be used for this transport or file (asyncio.SendfileNotAvailableError). */
#define LC_ESENDFILENOTAVAILABLE (-5011)
/** lc_await / lc_sleep called outside a task (asyncio: "await" outside a coroutine). */
#define LC_ENOTTASK (-5012)
/** A transport's send timeout ran out: data stayed queued with no byte taken by the socket for
 *  lc_transport_set_send_timeout()'s seconds (connection_lost's error; not the socket's own
 *  -ETIMEDOUT). */
#define LC_ESENDTIMEOUT (-5013)
/** TLS (stream.h): a protocol error, an alert from the peer, a handshake the peer or OpenSSL
 *  refused (asyncio's ssl.SSLError). The OpenSSL reason is in lc_transport_ssl_error_text() or,
 *  for a handshake that never made a transport, lc_ssl_last_error_text(). */
#define LC_ESSL (-5014)
/** The TLS handshake did not finish within ssl_handshake_timeout. */
#define LC_ESSLHANDSHAKETIMEOUT (-5015)
/** The peer's certificate failed verification: untrusted, expired, or not for server_hostname
 *  (ssl.SSLCertVerificationError). */
#define LC_ESSLCERTVERIFY (-5016)
/** The peer closed the TCP connection without a TLS close_notify: the stream may be truncated
 *  (OpenSSL 3's "unexpected eof while reading"; connection_lost's error, not eof_received). */
#define LC_ESSLTRUNCATED (-5017)
/** close(): the peer did not answer our close_notify within ssl_shutdown_timeout (or did not
 *  take the flushed data by then); the socket was closed anyway. */
#define LC_ESSLSHUTDOWNTIMEOUT (-5018)
/** add_reader / add_writer / sock_*: the fd belongs to a transport, which watches it itself
 *  (asyncio: "File descriptor ... is used by transport ..."). */
#define LC_EFDTRANSPORT (-5025)

/** A datagram longer than the 64 KiB receive buffer arrived (possible on Unix datagram sockets
 *  only) and was dropped rather than truncated: error_received's code (datagram.h). */
#define LC_EDGRAMTRUNC (-5031)

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/** Returns a static, human-readable message for any loopcore or system error code. Any thread. */
const char *lc_strerror(int err);

/** Returns the code's symbolic name ("LC_ECLOSED", "EINVAL", ...), static. Any thread. */
const char *lc_err_name(int err);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
