/* Single-threaded tests of the lock-free MPSC queue (threadsafe/mpsc.h): FIFO order and empty,
 * push's empty -> non-empty result, batch pops, the busy state of a producer in its window. The
 * threaded stress tests are in test_mpsc_threads.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>

#include "tests/threadsafe/mpsc_helpers.h"
#include "threadsafe/mpsc.h"

static void init_msgs(msg_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        m[i].producer = 0;
        m[i].seq = (uint32_t)i;
    }
}

/* ---- single thread ---- */

static void test_mpsc_single_thread_fifo_and_empty(void **state)
{
    lc_mpsc_t *q = *state;
    lc_mpsc_status_t st = LC_MPSC_OK;
    msg_t m[5];

    init_msgs(m, 5);
    assert_true(lc_mpsc_empty(q));
    assert_int_equal(lc_mpsc_peek(q), LC_MPSC_EMPTY);
    assert_false(lc_mpsc_linked(q));
    assert_true(lc_mpsc_on_stub(q));
    assert_null(lc_mpsc_pop(q, &st));
    assert_int_equal(st, LC_MPSC_EMPTY);
    assert_null(lc_mpsc_pop(q, NULL));

    for (size_t i = 0; i < 5; i++) {
        bool first = lc_mpsc_push(q, &m[i].link);
        assert_int_equal(first, i == 0);
        assert_false(lc_mpsc_empty(q));
        assert_int_equal(lc_mpsc_peek(q), LC_MPSC_OK);
        assert_true(lc_mpsc_linked(q));
    }
    for (size_t i = 0; i < 5; i++) {
        lc_mpsc_node_t *n = lc_mpsc_pop(q, &st);
        assert_ptr_equal(n, &m[i].link);
        assert_int_equal(st, LC_MPSC_OK);
        assert_null(lc_mpsc_batch_next(n));
        assert_int_equal(msg_of(n)->seq, i);
    }
    assert_null(lc_mpsc_pop(q, &st));
    assert_int_equal(st, LC_MPSC_EMPTY);
    assert_true(lc_mpsc_empty(q));

    /* Nodes can be pushed again once popped. */
    assert_true(lc_mpsc_push(q, &m[3].link));
    assert_false(lc_mpsc_push(q, &m[1].link));
    assert_ptr_equal(lc_mpsc_pop(q, NULL), &m[3].link);
    assert_ptr_equal(lc_mpsc_pop(q, NULL), &m[1].link);
    assert_null(lc_mpsc_pop(q, &st));
    assert_int_equal(st, LC_MPSC_EMPTY);
}

static void test_mpsc_push_returns_true_on_empty_to_non_empty(void **state)
{
    lc_mpsc_t *q = *state;
    lc_mpsc_status_t st;
    msg_t m[6];

    init_msgs(m, 6);
    /* Empty -> non-empty: true; the next pushes of the run: false. */
    assert_true(lc_mpsc_push(q, &m[0].link));
    assert_false(lc_mpsc_push(q, &m[1].link));
    /* The consumer is mid-drain (m[1] still queued): pushes still owe nothing. */
    assert_ptr_equal(lc_mpsc_pop(q, NULL), &m[0].link);
    assert_false(lc_mpsc_push(q, &m[2].link));
    assert_ptr_equal(lc_mpsc_pop(q, NULL), &m[1].link);
    /* Taking the last node re-arms the queue: the next push returns true although the consumer
     * has not reported EMPTY yet (a spurious wake-up, documented in mpsc.h). */
    assert_ptr_equal(lc_mpsc_pop(q, &st), &m[2].link);
    assert_int_equal(st, LC_MPSC_OK);
    assert_true(lc_mpsc_push(q, &m[3].link));
    assert_false(lc_mpsc_push(q, &m[4].link));
    assert_ptr_equal(lc_mpsc_pop(q, NULL), &m[3].link);
    assert_ptr_equal(lc_mpsc_pop(q, NULL), &m[4].link);
    assert_null(lc_mpsc_pop(q, &st));
    assert_int_equal(st, LC_MPSC_EMPTY);
    /* After EMPTY was reported, the next push is the empty -> non-empty transition again. */
    assert_true(lc_mpsc_push(q, &m[5].link));
    assert_ptr_equal(lc_mpsc_pop(q, NULL), &m[5].link);
}

static void check_batch(lc_mpsc_node_t *first, lc_mpsc_node_t *last, size_t n, msg_t *m,
                        size_t from)
{
    lc_mpsc_node_t *it = first;

    for (size_t i = 0; i < n; i++) {
        assert_non_null(it);
        assert_ptr_equal(it, &m[from + i].link);
        if (i == n - 1) {
            assert_ptr_equal(it, last);
        }
        it = lc_mpsc_batch_next(it);
    }
    assert_null(it);
}

static void test_mpsc_pop_batch_drains_in_order(void **state)
{
    lc_mpsc_t *q = *state;
    lc_mpsc_node_t *first, *last;
    lc_mpsc_status_t st;
    msg_t m[16];

    init_msgs(m, 16);
    first = last = &m[0].link;
    assert_int_equal(lc_mpsc_pop_batch(q, &first, &last, 8, &st), 0);
    assert_null(first);
    assert_null(last);
    assert_int_equal(st, LC_MPSC_EMPTY);

    for (size_t i = 0; i < 10; i++) {
        lc_mpsc_push(q, &m[i].link);
    }
    /* max reached: OK, the rest not looked at. */
    assert_int_equal(lc_mpsc_pop_batch(q, &first, &last, 4, &st), 4);
    assert_int_equal(st, LC_MPSC_OK);
    check_batch(first, last, 4, m, 0);
    /* Everything else, and the queue reported empty in the same call. */
    assert_int_equal(lc_mpsc_pop_batch(q, &first, &last, SIZE_MAX, &st), 6);
    assert_int_equal(st, LC_MPSC_EMPTY);
    check_batch(first, last, 6, m, 4);
    assert_true(lc_mpsc_empty(q));

    /* last and status may be NULL; a batch after a partial pop keeps the order. */
    assert_true(lc_mpsc_push(q, &m[10].link));
    lc_mpsc_push(q, &m[11].link);
    assert_ptr_equal(lc_mpsc_pop(q, NULL), &m[10].link);
    lc_mpsc_push(q, &m[12].link);
    lc_mpsc_push(q, &m[13].link);
    assert_int_equal(lc_mpsc_pop_batch(q, &first, NULL, 100, NULL), 3);
    check_batch(first, &m[13].link, 3, m, 11);

    /* A batch of exactly the queue's length stops at max (OK); the next call says EMPTY. */
    lc_mpsc_push(q, &m[14].link);
    lc_mpsc_push(q, &m[15].link);
    assert_int_equal(lc_mpsc_pop_batch(q, &first, &last, 2, &st), 2);
    assert_int_equal(st, LC_MPSC_OK);
    check_batch(first, last, 2, m, 14);
    assert_int_equal(lc_mpsc_pop_batch(q, &first, &last, 2, &st), 0);
    assert_int_equal(st, LC_MPSC_EMPTY);
}

/* The first half of lc_mpsc_push(): the exchange without the link, as done by a producer that is
 * preempted in its window. These tests reach into the queue's private fields to reproduce by hand
 * interleavings that threads hit only by chance. Returns prev, to be linked later. */
static lc_mpsc_node_t *half_push(lc_mpsc_t *q, lc_mpsc_node_t *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    return atomic_exchange_explicit(&q->_tail, n, memory_order_acq_rel);
}

static void finish_push(lc_mpsc_node_t *prev, lc_mpsc_node_t *n)
{
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

static void test_mpsc_busy_while_producer_in_window(void **state)
{
    lc_mpsc_t *q = *state;
    lc_mpsc_node_t *first, *last, *prev;
    lc_mpsc_status_t st;
    msg_t m[8];

    init_msgs(m, 8);

    /* 1. A producer stalls on an empty queue: its push would return true (prev is the stub). */
    prev = half_push(q, &m[0].link);
    assert_ptr_equal(prev, &q->_stub);
    assert_null(lc_mpsc_pop(q, &st));
    assert_int_equal(st, LC_MPSC_BUSY);
    assert_false(lc_mpsc_empty(q));
    assert_int_equal(lc_mpsc_peek(q), LC_MPSC_BUSY);
    assert_false(lc_mpsc_linked(q));
    assert_true(lc_mpsc_on_stub(q)); /* the push in its window returns true */
    /* A complete push behind it stays hidden, and owes no wake-up. */
    assert_false(lc_mpsc_push(q, &m[1].link));
    assert_int_equal(lc_mpsc_pop_batch(q, &first, &last, 8, &st), 0);
    assert_int_equal(st, LC_MPSC_BUSY);
    /* The producer runs again: delayed, not lost. */
    finish_push(prev, &m[0].link);
    assert_int_equal(lc_mpsc_peek(q), LC_MPSC_OK);
    assert_int_equal(lc_mpsc_pop_batch(q, &first, &last, 8, &st), 2);
    assert_int_equal(st, LC_MPSC_EMPTY);
    check_batch(first, last, 2, m, 0);

    /* 2. A producer stalls behind a complete node: that node is held back too. */
    assert_true(lc_mpsc_push(q, &m[2].link));
    prev = half_push(q, &m[3].link);
    assert_ptr_equal(prev, &m[2].link);
    assert_null(lc_mpsc_pop(q, &st));
    assert_int_equal(st, LC_MPSC_BUSY);
    assert_false(lc_mpsc_empty(q));
    assert_int_equal(lc_mpsc_peek(q), LC_MPSC_BUSY);
    assert_false(lc_mpsc_linked(q));
    assert_false(lc_mpsc_on_stub(q)); /* held back on m[2]: the push in its window returned false */
    finish_push(prev, &m[3].link);
    assert_int_equal(lc_mpsc_peek(q), LC_MPSC_OK);
    assert_true(lc_mpsc_linked(q));
    assert_ptr_equal(lc_mpsc_pop(q, &st), &m[2].link);
    assert_ptr_equal(lc_mpsc_pop(q, &st), &m[3].link);
    assert_null(lc_mpsc_pop(q, &st));
    assert_int_equal(st, LC_MPSC_EMPTY);

    /* 3. A re-arm that loses the race with a push: the consumer, on the last node m[4], saw the
     * tail at m[4]; a producer exchanged m[5] and stalled; then the consumer's re-arm put the
     * stub behind m[5], not m[4]. The stub ends up between two nodes, and a batch must splice it
     * out. */
    assert_true(lc_mpsc_push(q, &m[4].link));
    prev = half_push(q, &m[5].link);
    assert_null(lc_mpsc_pop(q, &st)); /* steps over the stub onto m[4], which is held back */
    assert_int_equal(st, LC_MPSC_BUSY);
    atomic_store_explicit(&q->_stub.next, NULL, memory_order_relaxed); /* rearm(), by hand */
    assert_ptr_equal(half_push(q, &q->_stub), &m[5].link);
    finish_push(&m[5].link, &q->_stub);
    finish_push(prev, &m[5].link);
    assert_true(lc_mpsc_push(q, &m[6].link)); /* behind the stub: a new run */
    assert_false(lc_mpsc_push(q, &m[7].link));
    assert_int_equal(lc_mpsc_pop_batch(q, &first, &last, 8, &st), 4);
    assert_int_equal(st, LC_MPSC_EMPTY);
    check_batch(first, last, 4, m, 4);
    assert_true(lc_mpsc_empty(q));
    assert_int_equal(lc_mpsc_peek(q), LC_MPSC_EMPTY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mpsc_single_thread_fifo_and_empty, setup_queue,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_mpsc_push_returns_true_on_empty_to_non_empty,
                                        setup_queue, teardown_queue),
        cmocka_unit_test_setup_teardown(test_mpsc_pop_batch_drains_in_order, setup_queue,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_mpsc_busy_while_producer_in_window, setup_queue,
                                        teardown_queue),
    };

    return cmocka_run_group_tests_name("mpsc", tests, NULL, NULL);
}
