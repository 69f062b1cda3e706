/* Shared between the stream files of engine/ (transports, connections, servers, DNS). */
#ifndef LOOPCORE_ENGINE_STREAM_INTERNAL_H
#define LOOPCORE_ENGINE_STREAM_INTERNAL_H

#include "engine/future_internal.h"
#include "loopcore/stream.h"

/* Called when a transport of a server is freed (keeps the server's active count). */
void lc__server_connection_gone(lc_server_t *s);

/* Makes a transport for a connected, non-blocking fd: runs the factory, connection_made, starts
 * reading. On failure the fd is closed and NULL returned with *err set. server may be NULL. */
lc_transport_t *lc__transport_new(lc_loop_t *loop, int fd, lc_protocol_factory_fn factory,
                                  void *factory_arg, lc_server_t *server, int *err);

/* Resolves host/port with uv_getaddrinfo and calls cb(status, res, arg) on the loop thread;
 * cb owns res (uv_freeaddrinfo). Returns 0 or an error (cb is then not called). */
typedef void (*lc__resolve_cb)(int status, struct addrinfo *res, void *arg);
int lc__resolve(lc_loop_t *loop, const char *host, const char *port, const struct addrinfo *hints,
                lc__resolve_cb cb, void *arg);

/* Sets O_NONBLOCK and FD_CLOEXEC on fd. */
int lc__set_nonblocking(int fd);

#endif
