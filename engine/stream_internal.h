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

#endif
