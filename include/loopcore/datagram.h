/** @file
 *  @ingroup datagram
 *  @defgroup datagram Datagrams: UDP and Unix datagram endpoints (loopcore/datagram.h)
 *
 * Datagrams: create_datagram_endpoint, datagram protocols and transports (UDP over IPv4 / IPv6,
 * Unix datagram sockets on paths and abstract names).
 *
 * A datagram protocol is a table of callbacks (lc_datagram_protocol_t) plus a user pointer; a
 * datagram transport (lc_datagram_transport_t) is a non-blocking socket driven by the loop.
 *
 * Receiving: one datagram in, one datagram_received. Datagrams are read in batches (recvmmsg, up
 * to 32 a call, into a per-thread pool of 64 KiB buffers; on UDP sockets UDP_GRO is enabled where
 * the kernel has it, unless .single_segments, and coalesced segments are split back into their
 * datagrams before the protocol sees them). Empty datagrams are delivered (len 0). A datagram is
 * never silently truncated: one longer than 64 KiB (possible on Unix sockets only; UDP's largest
 * fits) is dropped and reported as error_received(LC_EDGRAMTRUNC).
 *
 * Sending: lc_datagram_transport_sendto tries the socket at once and copies and queues only what
 * would block (EAGAIN); queued datagrams go out in order with sendmmsg when the socket is
 * writable, with asyncio's flow control (pause_writing above the high-water mark of queued
 * payload bytes, resume_writing at the low one). A datagram too big for the socket fails its own
 * call (-EMSGSIZE), not the transport. lc_datagram_transport_sendto_many sends a batch to one
 * destination with UDP GSO (UDP_SEGMENT: one system call and one trip down the stack for up to 64
 * datagrams of one size) where the kernel has it, sendmmsg otherwise.
 *
 * One exception to "at once": inside a transport's own datagram_received, its sendto calls are
 * gathered (after their checks) and go out together with one sendmmsg as soon as the batch of
 * received datagrams has been delivered, in the same callback, before the loop does anything
 * else (a server's answers cost one system call per batch, not one each). A refusal met then is
 * reported through error_received instead of returned; close() sends what is gathered first.
 *
 * Errors from the socket (an ICMP port unreachable on a connected endpoint: -ECONNREFUSED; a
 * failed queued send) go to error_received, and the transport stays open, as in asyncio and
 * uvloop (since its issue #601). A pending socket error met by sendto is reported the same way
 * and the datagram is sent anyway.
 *
 * Lifetime: as stream transports (loopcore.h's object model, rule 1; stream.h's "Lifetime"). The
 * transport is handed to the protocol in connection_made and is valid until connection_lost
 * returns (lc_datagram_transport_ref() keeps the memory longer); connection_lost is called exactly
 * once per connection_made, through call_soon; lc_loop_close() calls it (LC_ECLOSED) for an open
 * transport. close() sends what is queued first; abort() drops it.
 *
 * Every function here is loop-thread only.
 * @{ */
#ifndef LOOPCORE_DATAGRAM_H
#define LOOPCORE_DATAGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "loopcore/future.h"
#include "loopcore/group.h"
#include "loopcore/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what the headers declare is visible again. */
#pragma GCC visibility push(default)

/** A datagram transport: one endpoint's socket, driven by the loop (asyncio.DatagramTransport).
 *  Reference-counted (Lifetime, above). */
typedef struct lc_datagram_transport_s lc_datagram_transport_t;

/** The largest datagram a UDP socket can send or receive: 65,535 bytes less the IPv4 and UDP
 *  headers (IPv4), or less the UDP header (IPv6, whose payload length excludes its own header;
 *  no jumbograms). sendto refuses larger ones with -EMSGSIZE before any system call.
 *  @{ */
#define LC_UDP_MAX_PAYLOAD_V4 65507
#define LC_UDP_MAX_PAYLOAD_V6 65527
/** @} */

/* ---- Protocols ------------------------------------------------------------------------------- */

/** The callbacks of a datagram protocol (asyncio.DatagramProtocol). Any may be NULL. Each gets
 *  the transport and the protocol's user pointer. */
typedef struct lc_datagram_protocol_s {
    /** The endpoint is made; t is borrowed until connection_lost returns (Lifetime, above). */
    void (*connection_made)(lc_datagram_transport_t *t, void *user);
    /** One datagram: len bytes at data (len may be 0) from addr (addrlen bytes), all valid during
     *  the call only. addr is NULL (addrlen 0) for a sender with no address (an unbound Unix
     *  datagram socket: not one of loopcore's, which are always bound; see lc_datagram_opts_t). */
    void (*datagram_received)(lc_datagram_transport_t *t, const char *data, size_t len,
                              const struct sockaddr *addr, socklen_t addrlen, void *user);
    /** A socket error (-ECONNREFUSED, ...), LC_EDGRAMTRUNC, or a queued send that failed. The
     *  transport stays open. */
    void (*error_received)(lc_datagram_transport_t *t, int err, void *user);
    /** err: 0 after close or abort, LC_ECLOSED when the loop was closed first. */
    void (*connection_lost)(lc_datagram_transport_t *t, int err, void *user);
    /** Flow control: the queue went above the high-water mark / back to the low one.
     *  @{ */
    void (*pause_writing)(lc_datagram_transport_t *t, void *user);
    void (*resume_writing)(lc_datagram_transport_t *t, void *user);
    /** @} */
} lc_datagram_protocol_t;

/** Makes the protocol of a new endpoint: sets *proto (a table that must outlive the transport) and
 *  *user. Returns 0, or a negative code to refuse (the endpoint's future fails with it). */
typedef int (*lc_datagram_protocol_factory_fn)(void *factory_arg,
                                               const lc_datagram_protocol_t **proto, void **user);

/* ---- Endpoints ------------------------------------------------------------------------------- */

/** create_datagram_endpoint's keyword arguments; zero values are the defaults.
 *
 * Addresses: local_addr is (local_host, local_port), given when either is set (local_host NULL:
 * every interface); remote_addr is (remote_host, remote_port), given when remote_host is set, and
 * makes a connected endpoint (connect(): only that peer's datagrams arrive, and sendto takes a
 * NULL address). Both are resolved with getaddrinfo off the loop thread; as asyncio does, each
 * family that both resolve to is tried in turn (bind, then connect) until one works. With
 * neither, family must be given and the socket is left unbound (the kernel binds it at the first
 * send). A Unix datagram socket takes local_path and / or remote_path instead (family AF_UNIX is
 * implied): a filesystem path, or an abstract name starting with '\0' (then *_path_len says its
 * length; 0 means strlen). A stale socket file at local_path is replaced, as asyncio does; the
 * file is not removed at close.
 *
 * A Unix datagram endpoint made without local_path (remote_path alone, or family AF_UNIX alone) is
 * bound to an abstract name the kernel picks (Linux's autobind: five hex digits after the '\0';
 * lc_datagram_transport_get_sockname tells it), so that its peers can answer it. asyncio leaves
 * such a socket unbound, and its peers then receive its datagrams with no address (addr NULL in
 * datagram_received) and cannot reply: a client that only knows its server's path could never
 * get an answer. Nothing is created in the filesystem, and the name goes with the socket. */
typedef struct lc_datagram_opts_s {
    const char *local_host;  /**< local_addr's host (numeric or a name) */
    int local_port;          /**< local_addr's port (0: the kernel picks one) */
    const char *remote_host; /**< remote_addr's host */
    int remote_port;         /**< remote_addr's port */
    const char *local_path;  /**< Unix: bind to this path or abstract name */
    size_t local_path_len;   /**< the length of an abstract local_path; 0 means strlen */
    const char *remote_path; /**< Unix: connect to this path or abstract name */
    size_t remote_path_len;  /**< the length of an abstract remote_path; 0 means strlen */
    int family;              /**< AF_UNSPEC (0), AF_INET, AF_INET6 (AF_UNIX with the paths) */
    int proto;               /**< passed to getaddrinfo and socket() */
    int flags;               /**< getaddrinfo flags */
    bool reuse_address;      /**< SO_REUSEADDR before the bind (asyncio's reuse_address). Off by
                                  default: the 3.7.3 page says "True on Unix", but CPython turned
                                  that default off in 3.7.6 / 3.8.1 (bpo-37228) and later refuses
                                  True, because on UDP it is not about TIME_WAIT: it lets any other
                                  socket that sets it too, of any user, bind the same address and
                                  port and take a share of its unicast datagrams. Here it does
                                  just that, for a caller who wants it: with it on both sockets, a
                                  second bind to an address in use succeeds (-EADDRINUSE without) */
    bool reuse_port;         /**< SO_REUSEPORT: several endpoints on one address, the kernel spreads
                                  the flows over them (asyncio's reuse_port) */
    bool allow_broadcast;    /**< SO_BROADCAST: sending to a broadcast address is allowed; without
                                  it such a sendto fails with -EACCES (asyncio's allow_broadcast) */
    bool single_segments;    /**< true: every datagram travels alone: no UDP GRO on receive, no UDP
                                  GSO on send (sendto_many and gathered answers use sendmmsg only);
                                  default: both where the kernel has them (UDP only) */
    bool use_sock;           /**< wrap sock (an existing datagram socket, bound and / or connected
                                  or not) instead; the address fields, family, proto, flags,
                                  reuse_address, reuse_port and allow_broadcast must be unset (as
                                  asyncio refuses them with sock). The transport gets its own dup
                                  of it: the caller still closes sock. */
    int sock;                /**< the socket, with use_sock */
} lc_datagram_opts_t;

/** Creates a datagram endpoint (asyncio's loop.create_datagram_endpoint): resolves and binds /
 *  connects as lc_datagram_opts_t says, makes the protocol with factory(factory_arg), calls
 *  connection_made, and resolves *fut with the lc_datagram_transport_t * (borrowed, as
 *  create_connection's transport: valid until connection_lost returns; get the protocol with
 *  lc_datagram_transport_get_protocol). The future fails with the resolver's error, the last
 *  socket / bind / connect error, or the factory's. Returns 0 (then *fut holds one reference for
 *  the caller), LC_EINVAL (no address and no family, paths with host fields, use_sock with
 *  address fields or socket options, a port out of range, a path too long), LC_ECLOSED, LC_ENOMEM.
 */
int lc_loop_create_datagram_endpoint(lc_loop_t *loop, lc_datagram_protocol_factory_fn factory,
                                     void *factory_arg, const lc_datagram_opts_t *opts,
                                     lc_future_t **fut);

/* ---- Transports ------------------------------------------------------------------------------ */

/** Sends one datagram of len bytes (0 sends an empty datagram) to addr, or to the connected peer
 *  when addr is NULL. Tried at once; copied and queued only if the socket would block. Returns 0
 *  (sent or queued), LC_EINVAL (NULL data with a length; on a connected endpoint an address other
 *  than the peer's; on an unconnected one a NULL address), -EMSGSIZE (too big: for UDP over
 *  LC_UDP_MAX_PAYLOAD_V4 / _V6, else what the socket says), LC_ECLOSED (closing or closed),
 *  -ENOBUFS (it would have to be queued and the queue holds 16 times the high-water mark, at
 *  least 1 MiB, already: a protocol that ignores pause_writing loses datagrams, not memory),
 *  LC_ENOMEM, or the socket's refusal of this datagram (-EACCES: broadcast without
 *  allow_broadcast; -EAFNOSUPPORT, -ENETUNREACH, ...); none of these closes the transport. */
int lc_datagram_transport_sendto(lc_datagram_transport_t *t, const void *data, size_t len,
                                 const struct sockaddr *addr, socklen_t addrlen);

/** Sends n datagrams, bufs[i] each, to one destination (addr as for sendto). Where the kernel has
 *  UDP GSO and the sizes allow (every datagram but the last of one size, the last no larger), up
 *  to 64 go down the stack as one super-packet (UDP_SEGMENT); otherwise they go with sendmmsg.
 *  The receiver sees n ordinary datagrams. Order is kept with earlier queued datagrams. Returns
 *  0 when every datagram was sent or queued, or the first datagram's error as sendto's (a
 *  datagram too big fails the whole call before anything is sent; -ENOBUFS leaves those before
 *  the one refused sent or queued). */
int lc_datagram_transport_sendto_many(lc_datagram_transport_t *t, const struct iovec *bufs,
                                      size_t n, const struct sockaddr *addr, socklen_t addrlen);

/** Closes the transport: stops receiving, sends what is queued, then connection_lost(0).
 *  Idempotent. */
int lc_datagram_transport_close(lc_datagram_transport_t *t);
/** Closes at once, dropping queued datagrams: connection_lost(0). */
int lc_datagram_transport_abort(lc_datagram_transport_t *t);
/** True once close or abort was called or the transport is gone (NULL: true). */
bool lc_datagram_transport_is_closing(const lc_datagram_transport_t *t);

/** Payload bytes queued (asyncio's get_write_buffer_size). */
size_t lc_datagram_transport_get_write_buffer_size(const lc_datagram_transport_t *t);
/** Sets the flow-control marks as lc_transport_set_write_buffer_limits (-1: derived as asyncio
 *  does; defaults 64 KiB and 16 KiB). Returns 0 or LC_EINVAL. */
int lc_datagram_transport_set_write_buffer_limits(lc_datagram_transport_t *t, long high, long low);
/** Stores the flow-control marks in *low and *high. Returns 0 or LC_EINVAL. */
int lc_datagram_transport_get_write_buffer_limits(const lc_datagram_transport_t *t, size_t *low,
                                                  size_t *high);

/** get_extra_info('peername' / 'sockname' / 'socket'): getpeername / getsockname into addr (*len
 *  in: its size; out: the address's), and the fd. Return 0 (the fd for get_fd), LC_EINVAL,
 *  LC_ECLOSED once the socket is closed, or -ENOTCONN (peername of an unconnected endpoint).
 *  @{ */
int lc_datagram_transport_get_peername(const lc_datagram_transport_t *t, struct sockaddr *addr,
                                       socklen_t *len);
int lc_datagram_transport_get_sockname(const lc_datagram_transport_t *t, struct sockaddr *addr,
                                       socklen_t *len);
int lc_datagram_transport_get_fd(const lc_datagram_transport_t *t);
/** @} */

/** The protocol table and, in *user if not NULL, its user pointer. */
const lc_datagram_protocol_t *lc_datagram_transport_get_protocol(const lc_datagram_transport_t *t,
                                                                 void **user);
/** The loop the transport belongs to. */
lc_loop_t *lc_datagram_transport_get_loop(const lc_datagram_transport_t *t);

/** Keeps the transport's memory alive past connection_lost; unref releases it (NULL ignored).
 *  @{ */
lc_datagram_transport_t *lc_datagram_transport_ref(lc_datagram_transport_t *t);
void lc_datagram_transport_unref(lc_datagram_transport_t *t);
/** @} */

/* ---- Group endpoints: one address served by every loop of a group ------------------------ */

/** @} @addtogroup datagram
 *
 * @par Group endpoints: one address served by every loop of a group
 * One datagram endpoint per loop, each on its own socket bound to the same address with
 * SO_REUSEPORT, so that the kernel spreads the flows (by a hash of the source and destination)
 * over the loops. Every socket is bound up front on the caller's thread (with port 0 the first
 * bind picks the port the others reuse); each loop then makes its endpoint from its socket
 * (lc_datagram_opts_t.use_sock) on its own thread: the factory runs there (so factory_arg must
 * be safe to use from every loop), and each loop's protocol replies from its own socket. Life
 * cycle: create (while the group runs: after lc_group_start, before lc_group_stop), close, free,
 * from a thread that runs no loop. Close and free may come before or after the group's end, in
 * either order: a loop that has stopped (lc_group_stop) is not waited for, and its endpoint ends
 * when lc_group_free() closes the loop (connection_lost with LC_ECLOSED, on that thread); after
 * lc_group_free(), close and free only release memory. Not at the same time as lc_group_free()
 * on another thread. Implemented in threadsafe/group_datagram.c.
 * @{ */

/** A group datagram endpoint: one datagram endpoint per loop of a group, all on one address
 *  (lc_group_create_datagram_endpoint()). Owned: lc_group_datagram_close(),
 *  lc_group_datagram_free(). */
typedef struct lc_group_datagram_s lc_group_datagram_t;

/** Options of lc_group_create_datagram_endpoint(); zero means default. */
typedef struct lc_group_datagram_opts_s {
    const char *host;     /**< a numeric address; NULL means "0.0.0.0" (family AF_INET6: "::") */
    int port;             /**< 0: the first bind picks one and every other socket reuses it */
    int family;           /**< AF_UNSPEC (from host), AF_INET or AF_INET6 */
    bool allow_broadcast; /**< SO_BROADCAST on every socket */
    bool single_segments; /**< as lc_datagram_opts_t's: no UDP GSO / GRO */
} lc_group_datagram_opts_t;

/** Makes the endpoint on every loop of the started group g and waits until each has run its
 *  connection_made. Returns 0 (*out set, the caller's until lc_group_datagram_free), LC_EINVAL,
 *  LC_EBUSY (called on a loop thread), LC_ENOMEM, or the socket / bind / loop's error (nothing
 *  is left open then). */
int lc_group_create_datagram_endpoint(lc_group_t *g, lc_datagram_protocol_factory_fn factory,
                                      void *factory_arg, const lc_group_datagram_opts_t *opts,
                                      lc_group_datagram_t **out);

/** The port every loop's endpoint is bound to. Any thread. */
int lc_group_datagram_port(const lc_group_datagram_t *gd);

/** Closes every loop's endpoint (lc_datagram_transport_close: queued datagrams are sent, then
 *  connection_lost on that loop) and waits for each close call. A loop that has stopped is
 *  skipped (its endpoint ends with the loop, in lc_group_free()); after lc_group_free() nothing
 *  is left to close. Idempotent. Not from a loop thread. Returns 0, LC_EINVAL, LC_EBUSY (called
 *  on a loop thread), or the first loop's error (the others are closed anyway). */
int lc_group_datagram_close(lc_group_datagram_t *gd);

/** Closes gd if needed, waits until the connection_lost of every loop that still runs has run,
 *  and frees it. Before or after lc_group_stop() or lc_group_free() (the group endpoint's "Life
 *  cycle", above); not from a loop thread. Returns 0, LC_EINVAL, LC_EBUSY (called on a loop
 *  thread: nothing is freed), or the close's error (gd is freed anyway). */
int lc_group_datagram_free(lc_group_datagram_t *gd);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

/** @} */

#endif
