/* loopcore: intrusive lock-free MPSC queue (Vyukov). See mpsc.h for the contract.
 *
 * The list runs from q->_head (oldest, consumer) to q->_tail (newest, producers) through the
 * nodes' next pointers. The stub is a node of the queue's own that keeps the list non-empty, so
 * that a producer always has a predecessor to link to and never needs to know whether the queue
 * is empty. Invariants:
 *   - q->_head is the stub or a node the consumer has not returned yet.
 *   - The stub is in the list at most once. The consumer puts it back ("re-arms") only when it
 *     stands on a real node that is the last one exchanged, so the old stub is behind it.
 *   - While a node is queued, its next is written by exactly two parties, in this order: its own
 *     producer (NULL, before its exchange) and then the producer or consumer whose exchange
 *     returned that node (the link). The consumer takes a node only after it has seen the link,
 *     so from then on the node is the consumer's alone (it rewrites next to splice out the stub
 *     and to end the batch) and may be freed or reused as soon as it is handed over.
 *   - A push returns true iff its exchange returned the stub, i.e. it is the first exchange after
 *     the stub's own (at init or at a re-arm). Guarantee (G) in mpsc.h follows: the stub goes back
 *     to the tail only when the consumer has passed every node exchanged before, and a consumer
 *     reports EMPTY only when its load of the tail reads the stub while it stands on the stub. */
#include "threadsafe/mpsc.h"

#include <assert.h>

/* The producers' word and the consumer's words must not share a cache line (see LC_MPSC_PAD). */
_Static_assert(offsetof(lc_mpsc_t, _tail) >= LC_MPSC_PAD, "producers' word too near the front");
_Static_assert(offsetof(lc_mpsc_t, _head) - offsetof(lc_mpsc_t, _tail) >= LC_MPSC_PAD,
               "producers' and consumer's words too close");

void lc_mpsc_init(lc_mpsc_t *q)
{
    atomic_init(&q->_stub.next, NULL);
    atomic_init(&q->_tail, &q->_stub);
    atomic_init(&q->prod_word, 0);
    q->_head = &q->_stub;
}

bool lc_mpsc_push(lc_mpsc_t *q, lc_mpsc_node_t *node)
{
    /* relaxed: published by the release half of the exchange below; a later pusher (or the
     * consumer re-arming) acquires it there before it links node->next, so its link is never
     * overwritten by this NULL. */
    atomic_store_explicit(&node->next, NULL, memory_order_relaxed);

    /* acq_rel. release: publishes node->next = NULL to whoever exchanges after us (the next
     * producer, or the consumer in rearm()). acquire: pairs with the release half of the
     * exchange that installed prev (a producer here, or rearm()), so that prev's next = NULL
     * happens-before our link below. */
    lc_mpsc_node_t *prev = atomic_exchange_explicit(&q->_tail, node, memory_order_acq_rel);

    /* The window: until the store below, node, everything pushed after it, and prev (whose next
     * is still NULL) are out of the consumer's reach; it reports LC_MPSC_BUSY meanwhile. */

    /* release: publishes node, its payload and its next = NULL to the consumer; pairs with the
     * acquire loads of next in lc_mpsc_pop_batch() and lc_mpsc_empty(). */
    atomic_store_explicit(&prev->next, node, memory_order_release);

    return prev == &q->_stub;
}

/* Puts the stub back at the tail, behind the node the consumer stands on (or behind a node
 * pushed since: the exchange decides). Consumer only. */
static void rearm(lc_mpsc_t *q)
{
    lc_mpsc_node_t *stub = &q->_stub;

    /* relaxed: nobody else touches the stub's next now (the consumer has passed the stub, and
     * its last link was read); published by the release half of the exchange below. */
    atomic_store_explicit(&stub->next, NULL, memory_order_relaxed);

    /* acq_rel. release: publishes stub->next = NULL to the next pusher, whose acquire exchange in
     * lc_mpsc_push() pairs with it before it links the stub. acquire: pairs with the release
     * exchange of the pusher of prev, ordering its prev->next = NULL before our link. */
    lc_mpsc_node_t *prev = atomic_exchange_explicit(&q->_tail, stub, memory_order_acq_rel);

    /* relaxed: pairs with nothing. Only the consumer, this thread, ever reads a next pointer, so
     * program order is all its later loads need; the stub itself carries no payload. */
    atomic_store_explicit(&prev->next, stub, memory_order_relaxed);
}

/* What it means that the consumer stands on the stub and sees no next node: EMPTY or BUSY. */
static lc_mpsc_status_t stub_state(lc_mpsc_t *q)
{
    /* relaxed: pairs with nothing. The pointer is compared, never dereferenced, and (G) needs
     * only the coherence of q->_tail: a push whose exchange happens-before this load (say,
     * through the signal that woke the consumer) is seen by it. Reading the stub means that no
     * exchange after the stub's own is visible: the queue is empty at this load, the point at
     * which LC_MPSC_EMPTY takes effect. Anything else means a producer exchanged and has not yet
     * linked the stub to its node. That producer's push returned true, so it will signal too,
     * but the queue is not empty and we say BUSY. The acquire load of the stub's next before
     * this call keeps this load from moving above it. */
    return atomic_load_explicit(&q->_tail, memory_order_relaxed) == &q->_stub ? LC_MPSC_EMPTY
                                                                              : LC_MPSC_BUSY;
}

size_t lc_mpsc_pop_batch(lc_mpsc_t *q, lc_mpsc_node_t **first, lc_mpsc_node_t **last, size_t max,
                         lc_mpsc_status_t *status)
{
    lc_mpsc_node_t *stub = &q->_stub;
    lc_mpsc_node_t *cur = q->_head;
    lc_mpsc_node_t *head = NULL; /* first node taken */
    lc_mpsc_node_t *prev = NULL; /* last node taken */
    lc_mpsc_status_t st = LC_MPSC_OK;
    size_t n = 0;

    assert(max > 0);
    while (n < max) {
        /* acquire: pairs with the release store of the link in lc_mpsc_push(); makes next's
         * payload and next->next = NULL visible before we use them. (Links made by rearm() are
         * this thread's own.) */
        lc_mpsc_node_t *next = atomic_load_explicit(&cur->next, memory_order_acquire);

        if (cur == stub) {
            if (next == NULL) {
                st = stub_state(q);
                break;
            }
            /* Step over the stub. It may sit between two nodes of this batch (a re-arm raced
             * with a push); splice it out of the list we hand back. */
            if (prev != NULL) {
                /* relaxed: prev is ours now (its link was read); nobody else reads it. */
                atomic_store_explicit(&prev->next, next, memory_order_relaxed);
            }
            cur = next;
            continue;
        }

        if (next == NULL) {
            /* cur is the newest node we can see. If the tail is elsewhere, a producer is in its
             * window. relaxed: pairs with nothing; the pointer is only compared. A stale value is
             * harmless: a stale cur sends us to rearm(), whose exchange reads the latest tail,
             * and any other value only makes us look at cur's next once more. */
            if (atomic_load_explicit(&q->_tail, memory_order_relaxed) != cur) {
                /* acquire: pairs with the release link store in lc_mpsc_push(); the link may
                 * have landed since our first load. */
                next = atomic_load_explicit(&cur->next, memory_order_acquire);
                if (next == NULL) {
                    st = LC_MPSC_BUSY;
                    break;
                }
            } else {
                /* cur is the last node: put the stub behind it so that we can take cur and
                 * leave the queue non-empty. A producer may exchange between our load and the
                 * exchange in rearm(); then the stub lands behind its node instead, and cur's
                 * next is that producer's to write. */
                rearm(q);
                /* acquire: pairs with the release link store in lc_mpsc_push() of a producer that
                 * exchanged before our re-arm; if rearm() linked cur itself, program order
                 * suffices. */
                next = atomic_load_explicit(&cur->next, memory_order_acquire);
                if (next == NULL) {
                    st = LC_MPSC_BUSY;
                    break;
                }
            }
        }

        /* cur's link is known: cur is ours. */
        if (prev == NULL) {
            head = cur;
        }
        prev = cur;
        n++;
        cur = next;
    }

    q->_head = cur;
    if (prev != NULL) {
        /* relaxed: prev is ours; terminate the batch so the caller can walk it. */
        atomic_store_explicit(&prev->next, NULL, memory_order_relaxed);
    }
    *first = head;
    if (last != NULL) {
        *last = prev;
    }
    if (status != NULL) {
        *status = st;
    }
    return n;
}

lc_mpsc_node_t *lc_mpsc_pop(lc_mpsc_t *q, lc_mpsc_status_t *status)
{
    lc_mpsc_node_t *node;

    lc_mpsc_pop_batch(q, &node, NULL, 1, status);
    return node;
}

bool lc_mpsc_empty(lc_mpsc_t *q)
{
    /* A real node at the head has not been returned yet: not empty (ready or BUSY). */
    if (q->_head != &q->_stub) {
        return false;
    }
    /* acquire: pairs with the release link store in lc_mpsc_push(). */
    if (atomic_load_explicit(&q->_stub.next, memory_order_acquire) != NULL) {
        return false;
    }
    return stub_state(q) == LC_MPSC_EMPTY;
}

lc_mpsc_status_t lc_mpsc_peek(lc_mpsc_t *q)
{
    lc_mpsc_node_t *cur = q->_head;
    /* acquire: pairs with the release link store in lc_mpsc_push(). */
    lc_mpsc_node_t *next = atomic_load_explicit(&cur->next, memory_order_acquire);
    if (cur == &q->_stub) {
        if (next == NULL)
            return stub_state(q);
        cur = next;
        /* acquire: as above. */
        next = atomic_load_explicit(&cur->next, memory_order_acquire);
    }
    /* cur is a real node. pop takes it if its link is known, or if it is the last node (pop then
     * re-arms). relaxed: the tail is only compared, as in lc_mpsc_pop_batch(). */
    if (next != NULL || atomic_load_explicit(&q->_tail, memory_order_relaxed) == cur)
        return LC_MPSC_OK;
    return LC_MPSC_BUSY;
}

bool lc_mpsc_on_stub(const lc_mpsc_t *q) { return q->_head == &q->_stub; }

bool lc_mpsc_linked(const lc_mpsc_t *q)
{
    /* acquire: pairs with the release link store in lc_mpsc_push(), like every load of a next
     * pointer by the consumer. Whether the consumer stands on the stub or on a node held back
     * by a BUSY pop, a link behind it means the next pop moves on. */
    return atomic_load_explicit(&q->_head->next, memory_order_acquire) != NULL;
}
