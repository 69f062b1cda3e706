/** @file
 *  @ingroup stream
 *  @defgroup stream Streams: protocols, transports, servers, DNS (loopcore/stream.h)
 *
 * Streams: protocols and transports, create_connection, create_server, Unix sockets, DNS.
 *
 * A protocol is a table of callbacks (lc_protocol_t) plus a user pointer; a transport
 * (lc_transport_t) is a non-blocking socket driven by the loop: one read() per readiness into a
 * per-thread buffer (or into the protocol's own memory, for the buffered form), and writes that
 * are tried at once and queued only for what the socket did not take: copied by
 * lc_transport_write / writelines, or held by reference until a completion callback by
 * lc_transport_write_nocopy (libuv's and h2o's form: nothing copied). Both forms mix freely on
 * one transport; bytes go out in call order.
 *
 * Lifetime. A transport is created by the loop and handed to the protocol in connection_made; it
 * stays valid until connection_lost returns (call lc_transport_ref() to keep the memory longer,
 * lc_transport_unref() to let go). After close or abort, calls on it are safe and do nothing
 * (writes return LC_ECLOSED). connection_lost is called exactly once per connection_made, on the
 * loop thread, through call_soon (as asyncio does); the protocol frees its own state there. If the
 * loop is closed while the connection is open, lc_loop_close() calls it (err LC_ECLOSED, or the
 * error already recorded), so no protocol state is left behind. A transport closed or aborted
 * while lc_loop_close() runs (by another protocol's connection_lost: a proxy closing its other
 * side) gets its connection_lost at once, inside that close / abort call, since a closed loop
 * runs no more callbacks; so does one whose call_soon fails for want of memory.
 *
 * TLS. A transport may run TLS (create_connection / create_server with opts.ssl, or
 * lc_loop_start_tls): the same transport in a TLS mode, OpenSSL driven on the non-blocking socket
 * itself (SSL_set_fd: records go straight between the socket and OpenSSL's own buffers, no memory
 * BIOs), with the user's SSL_CTX. What the protocol sees, after asyncio's sslproto (CPython 3.11):
 *  - The factory runs and connection_made is called only once the handshake is done. A failed or
 *    timed-out handshake makes no protocol: a client's future fails (LC_ESSL, LC_ESSLCERTVERIFY,
 *    LC_ESSLHANDSHAKETIMEOUT, or the socket error, e.g. -ECONNRESET; the OpenSSL reason is in
 *    lc_ssl_last_error_text()); a server reports TLS errors and timeouts through the exception
 *    handler (message: the OpenSSL reason; error: the code; a plain reset or EOF is not
 *    reported, as asyncio does not report OSErrors) and keeps serving. (asyncio calls its factory
 *    before the handshake; in C that would leave a protocol with no connection_lost to free it.)
 *  - Writes count plaintext bytes not yet taken by OpenSSL (for flow control, the send timeout,
 *    get_write_buffer_size). A write the socket takes at once is encrypted from the caller's
 *    memory; the rest is copied (or held, for write_nocopy) and written as full records later.
 *  - data_received / buffer_updated get plaintext, one TLS record (at most 16 KiB) per call.
 *    pause_reading stops reading the socket (and decrypting what OpenSSL already holds).
 *  - The peer's close_notify: eof_received is called, its return value is ignored (no half-close
 *    over TLS, as asyncio), and the transport closes (connection_lost(0)). A TCP FIN without
 *    close_notify is a truncation: no eof_received, connection_lost(LC_ESSLTRUNCATED).
 *  - close() flushes, sends close_notify and waits for the peer's, discarding any data that
 *    arrives meanwhile, then closes: connection_lost(0). The whole of it is bounded by
 *    ssl_shutdown_timeout (from the close() call): connection_lost(LC_ESSLSHUTDOWNTIMEOUT) then.
 *    abort() closes at once, sending nothing.
 *  - can_write_eof is false and write_eof returns LC_ENOTSUP.
 *  - Client-initiated renegotiation is refused (SSL_OP_NO_RENEGOTIATION on each SSL); TLS 1.3
 *    KeyUpdate is OpenSSL's to answer.
 *  - Idle connections hold no TLS buffers (SSL_MODE_RELEASE_BUFFERS).
 *
 * The SSL_CTX is the user's: the engine takes a reference (SSL_CTX_up_ref) for as long as a
 * connector, server or connection uses it and never changes it (per-connection settings go on
 * the SSL: mode, SNI, the host name to verify). One SSL_CTX may serve every loop of a group
 * (OpenSSL's SSL_CTX is thread-safe for SSL_new once configured).
 *
 * Every function here is loop-thread only.
 * @{ */
#ifndef LOOPCORE_STREAM_H
#define LOOPCORE_STREAM_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "loopcore/future.h"
#include "loopcore/loop.h"

/* <netdb.h> declares struct addrinfo only with a POSIX feature-test macro (gnu11, or
 * _POSIX_C_SOURCE >= 200112L): strict C99/C11 users of lc_loop_getaddrinfo define one. */
struct addrinfo;

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/** A transport: one connection's socket, driven by the loop (asyncio.Transport).
 *  Reference-counted (Lifetime, above). */
typedef struct lc_transport_s lc_transport_t;
/** A server (asyncio.Server). Owned: lc_server_close(), lc_server_free(). */
typedef struct lc_server_s lc_server_t;

/* OpenSSL's types, declared as <openssl/ssl.h> does (SSL_CTX, SSL, X509), so that this header
 * does not need OpenSSL's headers. */
struct ssl_ctx_st;
struct ssl_st;
struct x509_st;

/** TLS defaults, in seconds (asyncio 3.11's). In the options structs 0 means the default; a
 *  negative value or NaN is LC_EINVAL (asyncio rejects zero and negatives; with designated
 *  initializers an unset field is 0, so zero has to mean "not given").
 *  @{ */
#define LC_SSL_HANDSHAKE_TIMEOUT 60.0
#define LC_SSL_SHUTDOWN_TIMEOUT 30.0
/** @} */

/* ---- Protocols ------------------------------------------------------------------------------- */

/** The callbacks of a stream protocol (asyncio.Protocol / BufferedProtocol). Any may be NULL. Each
 *  gets the transport and the protocol's user pointer. */
typedef struct lc_protocol_s {
    /** The connection is made (with TLS: once the handshake is done); t is borrowed until
     *  connection_lost returns (Lifetime, above). */
    void (*connection_made)(lc_transport_t *t, void *user);
    /** Plain form: len bytes at data, valid during the call only. */
    void (*data_received)(lc_transport_t *t, const char *data, size_t len, void *user);
    /** The peer closed its side. Return true to keep the transport open for writing (half-close);
     *  false closes it (after queued data is flushed). */
    bool (*eof_received)(lc_transport_t *t, void *user);
    /** err: 0 for a clean close (close, abort, EOF), else the socket error (-ECONNRESET, ...). */
    void (*connection_lost)(lc_transport_t *t, int err, void *user);
    /** Flow control: the write buffer went above the high-water mark / back to the low one.
     *  @{ */
    void (*pause_writing)(lc_transport_t *t, void *user);
    void (*resume_writing)(lc_transport_t *t, void *user);
    /** @} */
    /** Buffered form (asyncio.BufferedProtocol), used instead of data_received when get_buffer is
     *  set: return memory for at least 1 byte (sizehint is a suggestion) and its size in *len;
     *  buffer_updated then says how many bytes were written there.
     *  @{ */
    void *(*get_buffer)(lc_transport_t *t, size_t sizehint, size_t *len, void *user);
    void (*buffer_updated)(lc_transport_t *t, size_t nbytes, void *user);
    /** @} */
} lc_protocol_t;

/** Makes the protocol of a new connection: sets *proto (a table that must outlive the connection)
 *  and *user. Returns 0, or a negative code to refuse the connection (it is then closed). */
typedef int (*lc_protocol_factory_fn)(void *factory_arg, const lc_protocol_t **proto, void **user);

/* ---- Transports ------------------------------------------------------------------------------ */

/** Sends data: what the socket takes now is written at once, the rest is copied and queued.
 *  Returns 0, LC_EINVAL, LC_ECLOSED (closing or closed), LC_EPIPE after write_eof, LC_ENOMEM. */
int lc_transport_write(lc_transport_t *t, const void *data, size_t len);

/** Sends several buffers with one writev (the rest queued as for write). Same returns. */
int lc_transport_writelines(lc_transport_t *t, const struct iovec *bufs, size_t nbufs);

/** A nocopy write's completion (lc_transport_write_nocopy), called exactly once per write the
 *  call accepted, on the loop thread, never from inside that write call. status: 0 once every
 *  byte was written to the socket (taken by the kernel, not necessarily read by the peer); or, if
 *  the connection went first, a negative code: LC_ECLOSED (lc_transport_abort, or lc_loop_close
 *  with the transport open), LC_ESENDTIMEOUT (lc_transport_set_send_timeout), or the socket
 *  error (-ECONNRESET, -EPIPE, ...). From the call on, the buffers belong to the caller again:
 *  free or reuse them there. The callback may write, close or abort the transport. */
typedef void (*lc_transport_write_cb)(lc_transport_t *t, int status, void *arg);

/** Sends nbufs buffers without copying them (libuv's uv_write, h2o's h2o_socket_write): when
 *  nothing is queued the socket is tried at once with one writev, and what it does not take is
 *  queued by reference; cb(t, status, arg) follows when the last byte is written or the
 *  connection is gone.
 *
 *  Ownership: the memory at every bufs[i].iov_base must stay valid and unchanged until cb runs
 *  (the bufs array itself is copied: it may go when the call returns). cb may be NULL when that
 *  memory outlives the transport anyway (static data); nothing is then called.
 *
 *  Order and accounting: bytes go out in call order, mixed freely with lc_transport_write and
 *  writelines; completions come in call order. Queued nocopy bytes count as the copied ones do:
 *  in lc_transport_get_write_buffer_size, against the high/low marks (pause_writing may be called
 *  inside this call, as for write; resume_writing comes after the callbacks of the writes that
 *  drained the buffer), and for the send timeout; write_eof waits for them and close() flushes
 *  them.
 *
 *  Errors: on 0, cb will be called exactly once. A write error met during the call is reported as
 *  lc_transport_write reports it: the call returns 0, cb gets the error and connection_lost
 *  follows. On any other return cb is never called and nothing was sent: LC_EINVAL (NULL t, NULL
 *  bufs with nbufs > 0, a NULL iov_base with a length), LC_ECLOSED (closing or closed, or the loop
 *  closed), LC_EPIPE after write_eof, LC_ENOMEM. A closed or lost transport fails every pending
 *  write with cb(status < 0) before its connection_lost (the protocol's state is still there); in
 *  lc_loop_close, synchronously inside it, so that the callers' memory can be freed.
 *
 *  Why a callback and an argument, rather than a request struct the caller embeds (uv_write_t):
 *  the transport keeps its queue in one ring of its own, kept from write to write, so a write
 *  allocates nothing once that ring has grown to the depth in use (a write that completes at once
 *  costs one ready-queue entry, as call_soon with no handle), and a caller needs no object per
 *  write; arg is usually the memory to free or the response to recycle. Loop thread only. */
int lc_transport_write_nocopy(lc_transport_t *t, const struct iovec *bufs, size_t nbufs,
                              lc_transport_write_cb cb, void *arg);

/** Closes the write side after the queued data is flushed (shutdown(SHUT_WR)). 0 or error;
 *  LC_ENOTSUP on a TLS transport (no half-close over TLS). */
int lc_transport_write_eof(lc_transport_t *t);

/** True: stream sockets can write EOF; false on a TLS transport. */
bool lc_transport_can_write_eof(const lc_transport_t *t);

/** Closes the transport: stops reading, flushes queued data (nocopy buffers too, each callback
 *  getting 0), then closes the socket and calls connection_lost(0). Idempotent. Returns 0 or
 *  LC_EINVAL. */
int lc_transport_close(lc_transport_t *t);

/** Closes at once, dropping queued data (pending nocopy writes get cb(LC_ECLOSED), after this
 *  call returns and before connection_lost); connection_lost(0) follows. Idempotent. */
int lc_transport_abort(lc_transport_t *t);

/** True once close or abort was called, or the connection was lost. */
bool lc_transport_is_closing(const lc_transport_t *t);

/** get_extra_info: the peer's / our address (copied into *addr, *len in/out), the socket fd.
 *  Return 0, LC_EINVAL, LC_ECLOSED, or the getpeername/getsockname error.
 *  @{ */
int lc_transport_get_peername(const lc_transport_t *t, struct sockaddr *addr, socklen_t *len);
int lc_transport_get_sockname(const lc_transport_t *t, struct sockaddr *addr, socklen_t *len);
/** @} */
/** The socket's file descriptor (get_extra_info('socket')), or LC_ECLOSED. Do not close it. */
int lc_transport_get_fd(const lc_transport_t *t);

/** Stops / resumes calling data_received. Idempotent. Return 0, LC_EINVAL or LC_ECLOSED.
 *  @{ */
int lc_transport_pause_reading(lc_transport_t *t);
int lc_transport_resume_reading(lc_transport_t *t);
/** @} */
/** True while data_received is called: not paused, not closing, no EOF received yet. */
bool lc_transport_is_reading(const lc_transport_t *t);

/** Sets the write-buffer watermarks in bytes; -1 (and only -1) means "derive": high alone gives
 *  low = high / 4, low alone gives high = 4 * low (saturated at LONG_MAX when 4 * low would
 *  overflow), neither gives the defaults (64 KiB, 16 KiB). Returns 0, or LC_EINVAL (nothing
 *  changed) for a NULL t, a negative value other than -1, or high < low. May call pause_writing
 *  / resume_writing at once. */
int lc_transport_set_write_buffer_limits(lc_transport_t *t, long high, long low);
/** Stores the write-buffer watermarks in *low and *high. Returns 0 or LC_EINVAL. */
int lc_transport_get_write_buffer_limits(const lc_transport_t *t, size_t *low, size_t *high);
/** Bytes queued and not yet written to the socket: copied ones and nocopy ones alike. */
size_t lc_transport_get_write_buffer_size(const lc_transport_t *t);

/** Send timeout (nginx's send_timeout; not in asyncio): while data is queued (not yet taken by
 *  the socket) and no byte of it is taken for `seconds`, the transport is aborted: the queued
 *  data is dropped (pending nocopy writes get cb(LC_ESENDTIMEOUT)), the socket is reset
 *  (SO_LINGER 0, so the kernel drops what it holds too) and closed, and connection_lost gets
 *  LC_ESENDTIMEOUT. It applies while open and while close() flushes (a peer that never reads
 *  would otherwise keep a closing transport forever). The clock starts when data is first
 *  queued, again at every byte the socket takes, and again at this call. 0 disables it (the
 *  default); INFINITY is accepted and never fires. Costs nothing to writes the socket takes at
 *  once: one timer, armed only while data is queued and re-armed lazily when it fires. Any state
 *  (no effect once the connection is lost). Returns 0, or LC_EINVAL for a NULL t or a negative
 *  or NaN seconds. */
int lc_transport_set_send_timeout(lc_transport_t *t, double seconds);
/** The send timeout in seconds; 0 when disabled (and for a NULL t). */
double lc_transport_get_send_timeout(const lc_transport_t *t);

/** Replaces the protocol (set_protocol); the old one gets no more callbacks. */
int lc_transport_set_protocol(lc_transport_t *t, const lc_protocol_t *proto, void *user);
/** The protocol table and, in *user if not NULL, its user pointer. */
const lc_protocol_t *lc_transport_get_protocol(const lc_transport_t *t, void **user);

/** The loop the transport belongs to. */
lc_loop_t *lc_transport_get_loop(const lc_transport_t *t);

/** Keeps the transport's memory alive past connection_lost; unref releases it.
 *  @{ */
lc_transport_t *lc_transport_ref(lc_transport_t *t);
void lc_transport_unref(lc_transport_t *t);
/** @} */

/* ---- TLS transports ----------------------------------------------------------------------------
 */

/** get_extra_info('ssl_object'): the transport's SSL (owned by the transport, valid while it is;
 *  for reading its state, not for I/O), or NULL for a plain transport. */
struct ssl_st *lc_transport_get_ssl(const lc_transport_t *t);
/** get_extra_info('peercert'): the peer's certificate, borrowed (SSL_get0_peer_certificate),
 *  valid while the transport is; NULL for a plain transport or a peer that sent none. */
struct x509_st *lc_transport_get_peer_certificate(const lc_transport_t *t);
/** get_extra_info('cipher'): the cipher's OpenSSL name ("TLS_AES_256_GCM_SHA384"), static; NULL
 *  for a plain transport. */
const char *lc_transport_get_cipher(const lc_transport_t *t);
/** The negotiated protocol version ("TLSv1.3", "TLSv1.2"), static; NULL for a plain transport. */
const char *lc_transport_get_tls_version(const lc_transport_t *t);
/** The ALPN protocol chosen: *proto (not NUL-terminated, valid while the transport is) and *len.
 *  Returns 0, LC_ENOENT (none negotiated), or LC_EINVAL (NULL arguments, a plain transport). */
int lc_transport_get_alpn_protocol(const lc_transport_t *t, const unsigned char **proto,
                                   size_t *len);
/** The OpenSSL reason of the TLS error that ended the transport ("" if none), valid while the
 *  transport is. */
const char *lc_transport_ssl_error_text(const lc_transport_t *t);
/** The reason of the last TLS failure on this thread ("" if none): for a handshake that failed
 *  a client's future (no transport was made), read it in the future's callback. Static per
 *  thread, overwritten by the next failure. Any thread (its own). */
const char *lc_ssl_last_error_text(void);

/** start_tls's keyword arguments; zero values are the defaults. */
typedef struct lc_start_tls_opts_s {
    bool server_side;             /**< true: the server side of the handshake */
    const char *server_hostname;  /**< clients: as lc_connection_opts_t' (NULL and "": none) */
    double ssl_handshake_timeout; /**< 0: 60 s */
    double ssl_shutdown_timeout;  /**< 0: 30 s */
} lc_start_tls_opts_t;

/** Upgrades the open plain connection t to TLS (a STARTTLS exchange; asyncio 3.7's start_tls):
 *  t is detached at once (it stops reading, keeps the bytes it already delivered, calls no more
 *  callbacks, and is closing from then on: writes return LC_ECLOSED; it gets no connection_lost);
 *  a new TLS transport on the same socket handshakes with ctx and *fut resolves with it; its
 *  protocol is t's (no new connection_made: the protocol's one connection_made was t's, its
 *  connection_lost will be the new transport's, also if the handshake fails). t's server, write
 *  limits and send timeout carry over. Bytes still queued on t are written first, in
 *  plaintext, and the handshake starts once they are out (asyncio waits for its write buffer to
 *  drain too); if t is lost meanwhile (a write error, the send timeout, lc_transport_abort), *fut
 *  fails with its error (LC_ECLOSED for an abort) and the protocol gets connection_lost from t.
 *  Returns 0 (*fut holds one reference), LC_EINVAL (NULL arguments, t already TLS, bad
 *  timeouts), LC_ECLOSED (t closing), LC_EBUSY (a sendfile runs on t), LC_ENOMEM. Failures of the
 *  handshake fail *fut as
 *  create_connection's. */
int lc_loop_start_tls(lc_loop_t *loop, lc_transport_t *t, struct ssl_ctx_st *ctx,
                      const lc_start_tls_opts_t *opts, lc_future_t **fut);

/* ---- Connections ----------------------------------------------------------------------------- */

/** create_connection's keyword arguments; zero values are the defaults. */
typedef struct lc_connection_opts_s {
    const char *host;       /**< resolved with getaddrinfo off the loop thread */
    const char *port;       /**< service name or number ("8080"); or use port_num */
    int port_num;           /**< used when port is NULL */
    int family;             /**< AF_UNSPEC (0), AF_INET, AF_INET6 */
    int proto;              /**< passed to getaddrinfo */
    int flags;              /**< getaddrinfo flags */
    bool use_sock;          /**< connect nothing: wrap sock, already connected */
    int sock;               /**< the connected socket, with use_sock */
    const char *local_host; /**< local_addr: bind before connecting (port 0 if local_port 0) */
    int local_port;         /**< local_addr's port, with local_host */
    bool nagle; /**< true: Nagle's algorithm on (no TCP_NODELAY); default: TCP_NODELAY, as
                     asyncio does since 3.6 */
    /** TLS: the user's SSL_CTX (the engine takes a reference), or NULL for a plain connection. */
    struct ssl_ctx_st *ssl;
    /** SNI and, when ssl verifies peers (SSL_VERIFY_PEER), the name the certificate must match
     *  (SSL_set1_host; an IP literal is matched as an address and sends no SNI). NULL: host;
     *  "": no SNI and no name check (asyncio's server_hostname=''). Only with ssl. */
    const char *server_hostname;
    double ssl_handshake_timeout; /**< seconds; 0: 60; negative or NaN: LC_EINVAL; only with ssl */
    double ssl_shutdown_timeout;  /**< seconds; 0: 30; negative or NaN: LC_EINVAL; only with ssl */
} lc_connection_opts_t;

/** Opens a TCP connection: resolves host:port (off the loop thread), tries each address in turn
 *  until one connects, (with ssl: completes the TLS handshake), makes the protocol with
 *  factory(factory_arg), calls connection_made, and resolves *fut with the lc_transport_t * (get
 *  the protocol with lc_transport_get_protocol). The future fails with the last connect error (or
 *  the resolver's, or the handshake's: see TLS above). Returns 0 (then *fut holds one reference
 *  for the caller), LC_EINVAL (also: TLS fields without ssl, ssl with use_sock and no
 *  server_hostname, a bad timeout), LC_ECLOSED, LC_ENOMEM. */
int lc_loop_create_connection(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                              const lc_connection_opts_t *opts, lc_future_t **fut);

/** create_unix_connection / create_unix_server's path: a filesystem path, or an abstract name
 *  starting with '\0' (then path_len says its length; 0 means strlen(path)). */
typedef struct lc_unix_opts_s {
    const char *path;  /**< the path or abstract name (see above) */
    size_t path_len;   /**< the length of an abstract name; 0 means strlen(path) */
    bool use_sock;     /**< wrap sock instead (connected, or bound for a server) */
    int sock;          /**< the socket, with use_sock */
    int backlog;       /**< servers: 0 means 100 */
    bool start_paused; /**< servers: bound, not listening until lc_server_start_serving()
                            (asyncio's start_serving=False) */
    /** TLS, as in lc_connection_opts_t / lc_server_opts_t. server_hostname: connections only; with
     *  ssl it must be given (there is no host to default to); "" for none. */
    struct ssl_ctx_st *ssl;
    const char *server_hostname;  /**< connections only: as lc_connection_opts_t' */
    double ssl_handshake_timeout; /**< seconds; as lc_connection_opts_t' */
    double ssl_shutdown_timeout;  /**< seconds; as lc_connection_opts_t' */
} lc_unix_opts_t;

/** As create_connection, on a Unix stream socket. */
int lc_loop_create_unix_connection(lc_loop_t *loop, lc_protocol_factory_fn factory,
                                   void *factory_arg, const lc_unix_opts_t *opts,
                                   lc_future_t **fut);

/** connect_accepted_socket's keyword arguments; zero values (or a NULL pointer) are the
 *  defaults. */
typedef struct lc_accepted_socket_opts_s {
    /** TLS: the user's SSL_CTX with its certificate and key (the engine takes a reference), or
     * NULL. With ssl the connection is the server side of TLS, as asyncio's. */
    struct ssl_ctx_st *ssl;
    double ssl_handshake_timeout; /**< seconds; 0: 60; negative or NaN: LC_EINVAL; only with ssl */
    double ssl_shutdown_timeout;  /**< seconds; 0: 30; negative or NaN: LC_EINVAL; only with ssl */
} lc_accepted_socket_opts_t;

/** Wraps an accepted (connected) socket fd in a transport with a new protocol, as
 *  create_connection does; the transport owns fd from then on (even on failure it is closed).
 *  With opts->ssl the server side of the TLS handshake runs first: the factory and
 *  connection_made come after it, and *fut resolves with the lc_transport_t * then, or fails with
 *  the handshake's error (the codes of create_connection's client side; see TLS above). Without
 *  ssl, *fut resolves at once. opts may be NULL (all defaults). Returns 0 (then *fut holds one
 *  reference for the caller) or an error: LC_EINVAL (also a bad TLS timeout, or one given without
 *  ssl), LC_ENOMEM (fd is then closed too). */
int lc_loop_connect_accepted_socket(lc_loop_t *loop, lc_protocol_factory_fn factory,
                                    void *factory_arg, int fd,
                                    const lc_accepted_socket_opts_t *opts, lc_future_t **fut);

/* ---- Servers --------------------------------------------------------------------------------- */

/** create_server's keyword arguments; zero values are the defaults. */
typedef struct lc_server_opts_s {
    const char *host;         /**< NULL or "": every interface (one socket per family) */
    const char *const *hosts; /**< or a list of nhosts hosts */
    size_t nhosts;            /**< entries in hosts */
    int port;      /**< 0: the kernel picks one (read it with lc_server_sockets + getsockname) */
    int family;    /**< AF_UNSPEC (0), AF_INET, AF_INET6 */
    int flags;     /**< getaddrinfo flags (AI_PASSIVE is always added) */
    bool use_sock; /**< serve sock instead of binding */
    int sock;      /**< an already bound socket to serve */
    int backlog;   /**< 0 means 100 */
    bool exclusive_address;    /**< true: no SO_REUSEADDR (asyncio's reuse_address=False);
                                    default: SO_REUSEADDR */
    bool reuse_port;           /**< SO_REUSEPORT */
    bool start_paused;         /**< bound but not listening until lc_server_start_serving()
                                    (asyncio's start_serving=False) */
    double accept_retry_delay; /**< back-off after EMFILE/ENFILE; 0 means 1 s (asyncio's) */
    /** TLS: the user's SSL_CTX, with its certificate and key (the engine takes a reference until
     *  the server and its last connection are gone), or NULL. Timeouts as lc_connection_opts_t'. */
    struct ssl_ctx_st *ssl;
    double ssl_handshake_timeout; /**< seconds; as lc_connection_opts_t' */
    double ssl_shutdown_timeout;  /**< seconds; as lc_connection_opts_t' */
} lc_server_opts_t;

/** Creates a TCP server and resolves *fut with its lc_server_t * (owned by the caller: release it
 *  with lc_server_free). Hosts are resolved off the loop thread; each address gets a socket with
 *  SO_REUSEADDR (and SO_REUSEPORT if asked; IPV6_V6ONLY on IPv6). With ssl, each accepted
 *  connection is handshaken before its protocol is made (see TLS above; the handshakes count in
 *  lc_server_active). Returns 0 (then *fut holds one reference), LC_EINVAL (also a bad TLS
 *  timeout, or one given without ssl), LC_ECLOSED, LC_ENOMEM; bind errors fail the future. */
int lc_loop_create_server(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                          const lc_server_opts_t *opts, lc_future_t **fut);

/** A Unix stream server on opts->path (a stale socket file at the path is replaced). */
int lc_loop_create_unix_server(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg,
                               const lc_unix_opts_t *opts, lc_future_t **fut);

/** Stops listening: the listening sockets are closed at once; accepted connections stay open. */
int lc_server_close(lc_server_t *s);
/** The loop the server belongs to. */
lc_loop_t *lc_server_get_loop(const lc_server_t *s);
/** Starts listening (if created with start_paused). Idempotent. */
int lc_server_start_serving(lc_server_t *s);
/** True while the server listens (asyncio's is_serving). */
bool lc_server_is_serving(const lc_server_t *s);
/** A future that resolves when the server is closed (lc_server_close) — serve_forever's C form:
 *  cancelling it closes the server. */
int lc_server_serve_forever(lc_server_t *s, lc_future_t **fut);
/** A future that resolves once the server is closed and its last connection is gone. */
int lc_server_wait_closed(lc_server_t *s, lc_future_t **fut);
/** Copies up to *n listening fds into fds and sets *n to their number (0 once closed). */
int lc_server_sockets(const lc_server_t *s, int *fds, size_t *n);
/** The number of connections accepted so far, and those still open.
 *  @{ */
size_t lc_server_accepted(const lc_server_t *s);
size_t lc_server_active(const lc_server_t *s);
/** @} */
/** Closes the server if needed and releases the caller's reference. Connections stay open. */
void lc_server_free(lc_server_t *s);

/* ---- DNS ------------------------------------------------------------------------------------- */

/** Resolves host/port on libuv's thread pool (getaddrinfo), never blocking the loop; *fut
 *  resolves with a struct addrinfo * list owned by the future (valid while the caller holds its
 *  reference; freed with the future). Errors are libuv's EAI codes (UV_EAI_NONAME, ...; see
 *  lc_strerror). hints may be NULL. Returns 0, LC_EINVAL, LC_ECLOSED, LC_ENOMEM. */
int lc_loop_getaddrinfo(lc_loop_t *loop, const char *host, const char *port,
                        const struct addrinfo *hints, lc_future_t **fut);

/** getnameinfo's result. The sizes are glibc's NI_MAXHOST and NI_MAXSERV, spelt out so that the
 *  header needs no feature-test macro (strict C99/C11 <netdb.h> declares neither).
 *  @{ */
#define LC_NI_MAXHOST 1025
#define LC_NI_MAXSERV 32
/** @} */
/** getnameinfo's result (lc_loop_getnameinfo()). */
typedef struct lc_nameinfo_s {
    char host[LC_NI_MAXHOST];    /**< the host name (or numeric address) */
    char service[LC_NI_MAXSERV]; /**< the service name (or port number) */
} lc_nameinfo_t;

/** Reverse-resolves addr off the loop thread; *fut resolves with an lc_nameinfo_t * owned by the
 *  future (valid while the caller holds the future). */
int lc_loop_getnameinfo(lc_loop_t *loop, const struct sockaddr *addr, int flags, lc_future_t **fut);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
