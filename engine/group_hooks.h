/* The engine's entries for the group layer (threadsafe/group.c, group_server.c), its only ones
 * besides the public API: marking the loops a group makes as its own (lc_loop_group()), the
 * engine's socket creation for a group server's listeners, and servers that a group server feeds
 * with connections accepted elsewhere (its hand-off mode). Nothing else of a loop or a server is
 * reachable from threadsafe/: engine/BUILD exposes this header to that package alone, and it
 * includes public headers only. */
#ifndef LOOPCORE_ENGINE_GROUP_HOOKS_H
#define LOOPCORE_ENGINE_GROUP_HOOKS_H

#include <sys/socket.h>

#include "loopcore/group.h"
#include "loopcore/loop.h"
#include "loopcore/stream.h"

/* Makes g the group of loop, as lc_loop_group() reports it. lc_group_create() calls it on each loop
 * it makes, before the loop is handed to anyone (engine/loop.c). */
void lc__loop_set_group(lc_loop_t *loop, lc_group_t *g);

/* Inside a signal handler's run on loop: how many deliveries of signum that run stands for (the
 * coalescing rule of loopcore/signal.h folds those that came while it was queued); 1 outside a
 * run. Lets the group's shutdown count a second SIGTERM that came before the first was handled
 * (engine/signal.c). */
unsigned lc__signal_deliveries(lc_loop_t *loop, int signum);

/* ---- Listening sockets (engine/server.c) ----------------------------------------------------- */

/* lc__socket_bind's flags. */
#define LC__SOCK_REUSEADDR 1u /* SO_REUSEADDR */
#define LC__SOCK_REUSEPORT 2u /* SO_REUSEPORT */

/* Makes a TCP socket for addr's family (non-blocking, close-on-exec), sets the options of flags
 * and, for AF_INET6, IPV6_V6ONLY (an IPv6 socket on :: would also take the IPv4 port that another
 * socket needs), and binds it to addr; no listen() (the server that serves it listens). Returns
 * the fd, or a negative error (nothing is left open). Any thread.
 *
 * The one place where the engine's servers (lc_loop_create_server) and the group servers make
 * their sockets. Not public: lc_server_opts_t already offers what a user needs (reuse_port, and
 * use_sock for a socket of their own), and asyncio has no such call. The group server needs it
 * because it binds every loop's socket up front, on the caller's thread, before any loop serves
 * (with port 0 the first bind picks the port that the others reuse). */
int lc__socket_bind(const struct sockaddr *addr, socklen_t len, int protocol, unsigned flags);

/* ---- Servers fed from elsewhere (engine/server.c; a group server's hand-off mode) ------------ */

/* Accepted fds go to hook(fd, arg) (which owns them) instead of becoming transports. */
void lc__server_set_accept_hook(lc_server_t *s, void (*hook)(int fd, void *arg), void *arg);

/* A server with no listening socket, on loop (its thread), serving only what is adopted into it
 * (lc__server_adopt). Freed like any server (lc_server_free). NULL if no memory or loop closed. */
lc_server_t *lc__server_new_bare(lc_loop_t *loop, lc_protocol_factory_fn factory,
                                 void *factory_arg);

/* Gives s (a bare server) TLS for the connections adopted into it: ctx (s takes a reference; NULL:
 * plaintext) and the timeouts as lc_server_opts_t' (0: the defaults). s's loop thread. Returns 0,
 * LC_EINVAL (a negative or NaN timeout, or one without ctx) or LC_ENOMEM. */
int lc__server_set_tls(lc_server_t *s, struct ssl_ctx_st *ctx, double handshake_timeout,
                       double shutdown_timeout);

/* Makes fd, a connected non-blocking socket accepted elsewhere, a transport of s on s's loop, as
 * if s had accepted it: s's factory, TCP_NODELAY, counted in lc_server_active() and waited for by
 * lc_server_wait_closed() until the transport is freed. No future. Takes fd (closed on failure).
 * s's loop thread. Returns 0, LC_ECLOSED (s is closed), or the factory's / transport's error. */
int lc__server_adopt(lc_server_t *s, int fd);

/* Sets hook(arg), called once, at the moment s is closed and has no connection left (its
 * wait_closed futures resolve then): on s's loop thread, inside lc_server_close() or the freeing
 * of s's last transport; or on the thread that closes s's loop (lc_loop_close() closes s, then
 * frees its transports). The hook must not use s. It may drop s's creator reference
 * (lc_server_free) unless the close that fires it is that lc_server_free() itself: the close or
 * the connection being freed holds a reference of its own until the hook returns. Set on s's
 * loop thread. */
void lc__server_set_drained_hook(lc_server_t *s, void (*hook)(void *arg), void *arg);

#endif
