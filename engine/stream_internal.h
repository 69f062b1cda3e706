/* Shared between the stream files of engine/ (transports, connections, servers, DNS). */
#ifndef LOOPCORE_ENGINE_STREAM_INTERNAL_H
#define LOOPCORE_ENGINE_STREAM_INTERNAL_H

#include "engine/future_internal.h"
#include "loopcore/stream.h"

/* ---- TLS (engine/transport_tls.c.h) -----------------------------------------------------------
 */

/* The TLS settings of a connector, a server or a start_tls: the context (one reference held),
 * whether we are the server, the host name (a copy), the timeouts in seconds. */
typedef struct {
    struct ssl_ctx_st *ctx;
    char *server_hostname; /* NULL: none */
    double handshake_timeout;
    double shutdown_timeout;
    bool server_side;
} lc__tls_config;

/* Checks the options' TLS fields and fills cfg (takes a reference on ctx, copies the host name).
 * ctx NULL: cfg->ctx stays NULL and the other fields must be unset (LC_EINVAL otherwise).
 * Returns 0, LC_EINVAL or LC_ENOMEM (cfg then holds nothing). */
int lc__tls_config_init(lc__tls_config *cfg, struct ssl_ctx_st *ctx, const char *server_hostname,
                        double handshake_timeout, double shutdown_timeout, bool server_side);
/* Releases what lc__tls_config_init took. Idempotent. */
void lc__tls_config_clear(lc__tls_config *cfg);

/* As lc__transport_new, for TLS: the handshake starts at once; the factory, connection_made and
 * the future (fut: resolved with the transport, or failed; may be NULL for a server's) come after
 * it. Returns the transport or NULL (fd closed, *err set; fut then untouched). */
lc_transport_t *lc__transport_new_tls(lc_loop_t *loop, int fd, lc_protocol_factory_fn factory,
                                      void *factory_arg, lc_server_t *server,
                                      const lc__tls_config *cfg, lc_future_t *fut, int *err);

/* connect_accepted_socket, with TLS when tls && tls->ctx (the future then resolves after the
 * handshake). Takes fd. */
int lc__connect_fd(lc_loop_t *loop, lc_protocol_factory_fn factory, void *factory_arg, int fd,
                   const lc__tls_config *tls, lc_future_t **fut);

/* Called when a transport of a server is freed (keeps the server's active count). */
void lc__server_connection_gone(lc_server_t *s);

/* Makes a transport for a connected, non-blocking fd: runs the factory, connection_made, starts
 * reading. On failure the fd is closed and NULL returned with *err set. server may be NULL. */
lc_transport_t *lc__transport_new(lc_loop_t *loop, int fd, lc_protocol_factory_fn factory,
                                  void *factory_arg, lc_server_t *server, int *err);

/* Pipe mode of the transport (engine/transport.c): a socket's transport, or a pipe's. */
#define LC__PIPE_NONE 0
#define LC__PIPE_READ 1
#define LC__PIPE_WRITE 2

/* As lc__transport_new, for a pipe, FIFO or character device fd, already non-blocking: a read
 * transport (write false) or a write transport. Takes fd (closed on failure). */
lc_transport_t *lc__transport_new_pipe(lc_loop_t *loop, int fd, lc_protocol_factory_fn factory,
                                       void *factory_arg, bool write, int *err);

/* Resolves host/port with uv_getaddrinfo and calls cb(status, res, arg) on the loop thread;
 * cb owns res (uv_freeaddrinfo). Returns 0 or an error (cb is then not called). */
typedef void (*lc__resolve_cb)(int status, struct addrinfo *res, void *arg);
int lc__resolve(lc_loop_t *loop, const char *host, const char *port, const struct addrinfo *hints,
                lc__resolve_cb cb, void *arg);

/* Sets O_NONBLOCK and FD_CLOEXEC on fd. */
int lc__set_nonblocking(int fd);

/* set_write_buffer_limits' rule for stream and datagram transports (asyncio's): -1 derives a
 * mark from the other (high = 4 * low, saturating; low = high / 4; both -1: default_high and a
 * quarter of it); any other negative value, or high < low, is LC_EINVAL. Sets *high and *low
 * only on success. */
int lc__write_limits(long high, long low, size_t default_high, size_t *out_high, size_t *out_low);

/* get_peername / get_sockname of a transport's fd: LC_EINVAL for NULL arguments, LC_ECLOSED once
 * the fd is gone (fd < 0), else getpeername's (peer) or getsockname's result. */
int lc__fd_name(int fd, bool peer, struct sockaddr *addr, socklen_t *len);

/* ---- sendfile (engine/sendfile.c) and its hooks in engine/transport.c --------------------------
 *
 * While lc_loop_sendfile runs on a transport, t->sendfile points at its state. The transport then
 * refuses the user's writes (LC_EBUSY), records pause/resume_reading instead of acting on them,
 * hands its flow-control events to the sendfile instead of the protocol, watches POLLOUT for it
 * (the native path) and tells it when the connection goes. */
typedef struct lc__sendfile_s lc__sendfile;

/* Called by transport.c (loop thread), only while t->sendfile is set: */
/* Whether the transport should watch POLLOUT for the sendfile (the native path). */
bool lc__sendfile_wants_write(const lc__sendfile *sf);
/* The socket is writable and the transport's write buffer is empty. */
void lc__sendfile_writable(lc__sendfile *sf);
/* The write buffer went down to the low-water mark after being above the high one. */
void lc__sendfile_resumed(lc__sendfile *sf);
/* pause_reading (false) / resume_reading (true) was called: what to do when the sendfile ends. */
void lc__sendfile_want_reading(lc__sendfile *sf, bool on);
/* The transport is closing (close, abort) or lost: err is LC_ECLOSED or the connection's error.
 * The sendfile ends (lc__transport_sendfile_end) inside this call. */
void lc__sendfile_lost(lc__sendfile *sf, int err);

/* Called by sendfile.c (transport.c implements them): */
/* Attaches sf: returns 0, LC_ECLOSED (closing) or LC_EBUSY (a sendfile already runs). */
int lc__transport_sendfile_begin(lc_transport_t *t, lc__sendfile *sf);
/* Detaches it (idempotent); the transport's poll events follow again its own state. */
void lc__transport_sendfile_end(lc_transport_t *t);
/* The sendfile's own write (the fallback's chunks): lc_transport_write past the LC_EBUSY check. */
int lc__transport_sendfile_write(lc_transport_t *t, const void *data, size_t len);
/* Whether the transport is above its high-water mark (pause_writing given, or absorbed). */
bool lc__transport_write_paused(const lc_transport_t *t);
/* A sendfile(2) error (reported unless a plain disconnect, as a failed write) or the send
 * timeout (LC_ESENDTIMEOUT: not reported; the caller set SO_LINGER 0): the connection is lost. */
void lc__transport_sendfile_lose(lc_transport_t *t, int err);

#endif
