/** @file
 * loopcore: the asyncio event-loop API in C, on libuv. The umbrella header.
 *
 * The object model: how objects live and die, and how things are named, once for every header.
 *
 * 1. Reference-counted objects: lc_future_t (tasks are futures), lc_transport_t (and
 *    lc_datagram_transport_t, which follows every rule given here for transports), lc_handle_t.
 *    X_ref() adds a reference and returns the object; X_unref() drops one (NULL is ignored) and
 *    the memory goes with the last. The loop holds references of its own while it needs the
 *    object (a handle while its callback is queued, a future while its done callbacks are, a
 *    transport until connection_lost has returned), so dropping yours never pulls memory from
 *    under the loop. Each creating call says whether it gives the caller a reference (a
 *    scheduling call's handle, a created future or task: yes; the transport handed to
 *    connection_made or given as create_connection's result: no, it is borrowed until
 *    connection_lost returns, so _ref it to keep it). Releasing and ending are separate verbs:
 *    X_unref() cancels or closes nothing, and lc_handle_cancel(), lc_future_cancel(),
 *    lc_transport_close() / _abort() drop no reference. Why these three: each is shared between
 *    the loop and any number of holders (awaiters, done callbacks, a proxy's other side) with no
 *    single moment when all are done with it; asyncio leaves that to the garbage collector.
 *
 * 2. Owned objects with a close and a separate free: lc_loop_t, lc_server_t, lc_group_server_t,
 *    lc_executor_t, lc_group_t. The creator owns the object. Closing is asyncio's verb (close;
 *    an executor's is Executor.shutdown(); a group's is lc_group_stop() + lc_group_join(),
 *    threading's), is idempotent, may take time (connections drain, workers finish, threads are
 *    joined) and leaves the object readable: is_closed, wait_closed, counters, stats. X_free()
 *    closes first if that was not done (lc_executor_free: shutdown with wait), then releases the
 *    caller's hold; the pointer is dead afterwards. So asyncio's order, close(); await
 *    wait_closed(), works on servers and group servers, and free() comes when the caller is done.
 *    Why not reference counts here: there is one owner, and ending these objects is an act with
 *    thread rules (not on its own loop's or worker's thread, before the group goes) that must
 *    happen at a point the owner chooses, not whenever a last reference happens to go. (Some of
 *    them count references inside, so that memory outlives messages in flight; that is not part
 *    of the API.) One creating verb per kind: asyncio's where it has one (lc_new_event_loop,
 *    lc_loop_create_server), else X_create(); never _destroy, _release or _delete.
 *
 * 3. Caller-allocated requests: lc_call_t, lc_work_t. The caller embeds them in its own struct
 *    (lc_container_of); the loop uses one between a successful post / queue_work and its
 *    callback, after which it is the caller's again. No verbs: the caller frees its own memory.
 *
 * 4. Plain data, no verbs: options (X_opts_t, read during the call only, strings included),
 *    counters (X_stats_t, filled by the call), lc_exception_context_t (valid during the handler
 *    call), lc_nameinfo_t (owned by its future), lc_protocol_t (a table kept by pointer: it must
 *    outlive the connections that use it).
 *
 * Names. Every type ends in _t (struct tags in _s), except function-pointer types: _fn for a
 * function loopcore calls to do the caller's work (lc_call_fn, lc_coro_fn, lc_job_fn,
 * lc_submit_fn, factories, handlers, lc_result_dtor_fn) and _cb for one it calls to report that
 * something happened (lc_future_done_cb, lc_transport_write_cb, lc_after_work_cb, lc_call_cb).
 * Functions are `lc_<object>_<verb>`; asyncio's method loop.X() is lc_loop_X(loop, ...) with
 * asyncio's name and argument order; a coroutine method fills an lc_future_t ** given last.
 * Every function is loop-thread-only unless its name ends in _threadsafe or its comment says
 * otherwise. Errors are 0 or a negative LC_E* code (loopcore/errno.h).
 *
 * Options. Keyword arguments become a const X_opts_t * (NULL: every default), written with
 * designated initializers: &(lc_server_opts_t){.port = 8080, .reuse_port = true}. Zero is the
 * default of every field, numbers included (each comment says what 0 means). So a boolean whose
 * default is on (asyncio's reuse_address=True, start_serving=True, TCP_NODELAY) is named for its
 * other state, positively, and true selects that state: .nagle (TCP_NODELAY off),
 * .start_paused (bound, not listening), .exclusive_address (no SO_REUSEADDR), .unpinned (group
 * threads not pinned). Never no_X or X_off: no double negatives. The asyncio keyword a field
 * stands for is named in its comment and in docs/asyncio-mapping.md. */
#ifndef LOOPCORE_H
#define LOOPCORE_H

#include "loopcore/version.h"
#include "loopcore/errno.h"
#include "loopcore/loop.h"
#include "loopcore/future.h"
#include "loopcore/task.h"
#include "loopcore/stream.h"
#include "loopcore/sendfile.h"
#include "loopcore/subprocess.h"
#include "loopcore/datagram.h"
#include "loopcore/sock.h"
#include "loopcore/threadsafe.h"
#include "loopcore/group.h"
#include "loopcore/executor.h"
#include "loopcore/signal.h"

#endif
