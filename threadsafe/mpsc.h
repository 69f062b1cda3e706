/* loopcore: intrusive lock-free multi-producer single-consumer queue (internal).
 *
 * This is Dmitry Vyukov's intrusive MPSC queue: a stub node lives inside the queue, a producer
 * does one atomic exchange on the tail and then one store to the previous node's next pointer,
 * and the single consumer walks the list from its head. Every loop's inbound queue is one of
 * these; lc_loop_call_soon_threadsafe(), cross-loop calls and executor results all end in
 * lc_mpsc_push().
 *
 * Synchronization table (in the style of liburcu's wfcqueue.h). Which calls on one queue may
 * overlap in time. "-" means no synchronization is needed between the two; "X" means the caller
 * must order them (in practice: they are made by the same thread, the consumer).
 *
 *                       push    pop     pop_batch   empty   init
 *        push            -       -         -          -       X
 *        pop             -       X         X          X       X
 *        pop_batch       -       X         X          X       X
 *        empty           -       X         X          X       X
 *        init            X       X         X          X       X
 *
 * (lc_mpsc_peek(), lc_mpsc_linked() and lc_mpsc_on_stub() are consumer calls like empty: the
 * row and column of empty apply to them.)
 *
 * Roles. Any number of threads may push at once, from any thread, including the consumer itself
 * and signal handlers (push takes no lock and never waits). pop, pop_batch, empty, peek, linked
 * and on_stub are the consumer's: one thread at a time. The consumer role may move to another
 * thread only through a happens-before edge (a mutex, a thread join, ...). lc_mpsc_init() must
 * happen-before every other call (for instance: init, then create the threads).
 *
 * Progress. Producers are wait-free: lc_mpsc_push() is a relaxed store, one atomic exchange and
 * one release store, with no loop and no retry (the exchange is a single instruction on x86-64
 * and on ARMv8.1+ with LSE; on LL/SC machines the exchange is itself a retry loop, so there it
 * is only lock-free). The consumer is not lock-free: it is "blocking" in Vyukov's sense. A
 * producer that has done its exchange but not yet its store hides from the consumer its own
 * node, every node pushed after it, and the node just before it (whose next it has yet to
 * write, so the consumer cannot hand that one over either), until it runs again. That window is
 * the gap between two instructions (at -O2 on x86-64, the xchg and the mov right after it), so
 * a running producer closes it at once. The consumer never waits inside the queue for it: pop
 * returns LC_MPSC_BUSY and the caller decides (see "BUSY" below). If the producer is preempted
 * in the window, those messages are delayed until it is scheduled again: delayed, never lost.
 * A producer that dies in the window (a thread cancelled or killed there) breaks the queue for
 * good; push is not a cancellation point and loopcore never kills threads.
 *
 * What push's return value means. lc_mpsc_push() returns true when its exchange found the stub at
 * the tail, that is, when it is the first push since the consumer last "re-armed" the queue by
 * putting the stub back behind the last node it took (or since lc_mpsc_init()). The guarantee:
 *
 *   (G) If lc_mpsc_push(q, n) returns false, then an earlier push (earlier in the order of the
 *       exchanges on the tail) returned true, and no report of "empty" by the consumer (status
 *       LC_MPSC_EMPTY, or lc_mpsc_empty() == true) that this true push happens-before can come
 *       before n has been returned. In particular, a consumer woken by the signal of the true
 *       push finds n before it can see the queue empty again.
 *
 *   Hence the wake-up protocol: the consumer drains until it sees LC_MPSC_EMPTY, then sleeps; a
 *   producer signals the consumer (eventfd, uv_async, condition) only when push returned true.
 *   No node is stranded: each node is either found by a drain, or belongs to a run of pushes
 *   whose first push returned true and whose signal wakes the consumer after it went to sleep.
 *   The consumer must reset the signal (read the eventfd) before it drains, never after; a
 *   reset after the drain can swallow the signal of a push that the drain did not see.
 *
 *   What true does not mean: that the consumer is asleep, or that it saw the queue empty. The
 *   consumer re-arms the queue inside pop when it takes the last node it can see, possibly in
 *   the middle of a drain, so a push that follows returns true although the consumer is awake
 *   and will find the node anyway. The signal is then spurious: one extra wake-up that finds
 *   nothing or little, never a lost message. Conversely false does not mean that the consumer
 *   is awake: it means that the first pusher of the run owes the signal (if that pusher is
 *   preempted between its push and its signal, the nodes of the run wait for it; delayed,
 *   never lost).
 *
 * BUSY. With one producer in its window, the consumer can see no next node and yet the tail is
 * not where it stands: the queue is not empty, but the next node is not linked yet. pop and
 * pop_batch report that as LC_MPSC_BUSY, never as LC_MPSC_EMPTY; lc_mpsc_empty() returns false.
 * The consumer must look again later without waiting for a signal (the push in the window may
 * have returned false, so no signal may come; lc_mpsc_on_stub() tells which kind of push it is).
 * A loop polls a few dozen times with lc_mpsc_cpu_relax(), which covers a producer that is
 * running; if the queue is still BUSY, the producer was preempted in its window, and the loop
 * sleeps with a short bound instead of burning the core that producer may be waiting for
 * (engine/inbound.c, lc__loop_post()).
 *
 * Memory ordering. Everything a producer wrote before lc_mpsc_push(q, n) (the payload of n's
 * message included) happens-before everything the consumer does after pop returned n: the
 * producer's release store of prev->next pairs with the consumer's acquire load of that field.
 * push is not a full barrier, and two pushes from different producers have no order except the
 * order of their exchanges, which is the order in which the consumer sees them. Pushes from one
 * producer come out in the order it made them.
 *
 * Ownership. Pushing a node hands it to the queue: the producer must not touch it until the
 * consumer gets it back and hands it on (normally the consumer frees it). A node must not be in
 * the queue twice. The queue itself holds no memory: there is no close function, but the memory
 * of an lc_mpsc_t may be reused only when no push is in progress and the consumer has seen
 * LC_MPSC_EMPTY (otherwise a producer in its window may still write into the stub). */
#ifndef LOOPCORE_THREADSAFE_MPSC_H
#define LOOPCORE_THREADSAFE_MPSC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Padding that keeps the producers' word away from the consumer's words and from the
 * neighbours of the queue. 128 bytes, not 64: x86's spatial prefetcher fetches 64-byte lines in
 * aligned pairs, so two words on adjacent lines still contend (Folly and liburcu use 128 on
 * x86-64 too). The layout works by distance, not by alignment: two addresses 128 bytes apart are
 * never on the same 64-byte line nor in the same 128-byte pair, whatever the address of the
 * queue. So lc_mpsc_t needs no over-aligned allocation and can sit in a malloc'ed struct. */
#define LC_MPSC_PAD 128

/* An intrusive node, embedded in the caller's message struct (recover the message with
 * offsetof/container_of). Between push and pop, next belongs to the queue. After pop or
 * pop_batch it links the nodes of the batch and is NULL in the last one. */
typedef struct lc_mpsc_node_s {
    struct lc_mpsc_node_s *_Atomic next;
} lc_mpsc_node_t;

/* What the consumer found. */
typedef enum lc_mpsc_status_e {
    /* pop: a node was returned. pop_batch: max nodes were returned; the rest of the queue was
     * not looked at and may hold more. */
    LC_MPSC_OK = 0,
    /* Empty at the moment of the check: every node pushed before then has been returned.
     * Guarantee (G) above applies: the consumer may sleep until a push returns true. */
    LC_MPSC_EMPTY,
    /* Not empty, but the next node is not linked yet because a producer is between its
     * exchange and its store. Look again later, without waiting for a signal. */
    LC_MPSC_BUSY,
} lc_mpsc_status_t;

/* Caller-allocated queue; any alignment that suits a pointer will do (see LC_MPSC_PAD). */
typedef struct lc_mpsc_s {
    /* private */
    char _pad0[LC_MPSC_PAD];
    /* The newest node, or the stub. Producers exchange it; the consumer loads it. */
    lc_mpsc_node_t *_Atomic _tail;
    /* A word for the caller's own producer protocol, beside the tail so that a producer that
     * modifies both moves one cache line, not two. The queue never touches it; lc_mpsc_init()
     * sets it to 0. (A loop keeps its posting state here: engine/inbound.h.) */
    _Atomic uint64_t prod_word;
    char _pad1[LC_MPSC_PAD - sizeof(lc_mpsc_node_t *) - sizeof(uint64_t)];
    /* The oldest node the consumer has not returned yet, or the stub. Consumer only. */
    lc_mpsc_node_t *_head;
    /* The stub. Its next is written by the first producer after a re-arm and by the consumer
     * when it re-arms, read by the consumer: it stays on the consumer's side. */
    lc_mpsc_node_t _stub;
} lc_mpsc_t;

/** Makes q an empty queue. Not concurrent with anything on q; must happen-before every other
 *  call on q (creating the producer threads after it is enough). */
void lc_mpsc_init(lc_mpsc_t *q);

/** Appends node. Any thread, any number at once; wait-free, never blocks, locks or spins.
 *  node now belongs to the queue. Returns true if this push found the queue re-armed (empty in
 *  the sense of guarantee (G) in the comment at the top): the caller should then wake the
 *  consumer. false means an earlier push owes that wake-up. */
bool lc_mpsc_push(lc_mpsc_t *q, lc_mpsc_node_t *node);

/** Removes the oldest node. Consumer thread only; never blocks and never spins. Returns the node
 *  (its next is NULL, it belongs to the caller) with *status = LC_MPSC_OK, or NULL with
 *  *status = LC_MPSC_EMPTY or LC_MPSC_BUSY. status may be NULL. */
lc_mpsc_node_t *lc_mpsc_pop(lc_mpsc_t *q, lc_mpsc_status_t *status);

/** Removes up to max (>= 1) of the oldest nodes in one go. Consumer thread only; never blocks.
 *  Returns their number; they form a list from *first to *last (follow it with
 *  lc_mpsc_batch_next(); last->next is NULL), in push order, owned by the caller; last may be
 *  NULL. With 0 nodes, *first (and *last) are NULL. *status (status may be NULL) says why it
 *  stopped: LC_MPSC_OK (max reached), LC_MPSC_EMPTY or LC_MPSC_BUSY, as for lc_mpsc_pop(). */
size_t lc_mpsc_pop_batch(lc_mpsc_t *q, lc_mpsc_node_t **first, lc_mpsc_node_t **last, size_t max,
                         lc_mpsc_status_t *status);

/** Consumer thread only. True if the queue is empty at the moment of the check (the same
 *  meaning as LC_MPSC_EMPTY, guarantee (G) included); false if a node is ready or BUSY. */
bool lc_mpsc_empty(lc_mpsc_t *q);

/** Consumer thread only. What pop would find now, without taking anything: LC_MPSC_OK (a node
 *  can be taken), LC_MPSC_EMPTY (as lc_mpsc_empty() == true, guarantee (G) included) or
 *  LC_MPSC_BUSY (a producer is in its window: a spinning consumer should stop spinning soon,
 *  since that producer may have been preempted there). */
lc_mpsc_status_t lc_mpsc_peek(lc_mpsc_t *q);

/** Consumer thread only. True if a node has been linked behind the one the consumer stands on
 *  (pop will make progress, though it may still stop BUSY further on). Reads only the consumer's
 *  side of the queue, never the producers' tail line: the cheap test for a consumer that polls
 *  while producers push. It cannot tell EMPTY from BUSY (both give false): see lc_mpsc_peek(). */
bool lc_mpsc_linked(const lc_mpsc_t *q);

/** Consumer thread only. Whether the consumer stands on the stub. After LC_MPSC_BUSY it says
 *  which push is in its window: true, a push that found the queue re-armed (it returns true, so
 *  its caller signals under the wake-up protocol above); false, a push behind a node (it returns
 *  false: nobody owes a signal for the nodes it hides). */
bool lc_mpsc_on_stub(const lc_mpsc_t *q);

/** The node after n in a list returned by lc_mpsc_pop_batch(), NULL after the last. Consumer. */
static inline lc_mpsc_node_t *lc_mpsc_batch_next(lc_mpsc_node_t *n);

/** One spin-wait hint (x86 PAUSE, ARM YIELD) for the consumer's short retry on LC_MPSC_BUSY. */
static inline void lc_mpsc_cpu_relax(void);

/* inline definitions */

static inline lc_mpsc_node_t *lc_mpsc_batch_next(lc_mpsc_node_t *n)
{
    /* relaxed: the nodes of a batch belong to the consumer, whose acquire loads in
     * lc_mpsc_pop_batch() already ordered it after the producers' stores. */
    return atomic_load_explicit(&n->next, memory_order_relaxed);
}

static inline void lc_mpsc_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

#endif /* LOOPCORE_THREADSAFE_MPSC_H */
