/* call_later / call_at / time, handles: when, cancel, ref/unref, ordering, never early, large
 * delays. */
#include <math.h>
#include <stdlib.h>

#include "engine/loop_internal.h"
#include "tests/support/loop_fixture.h"

typedef struct {
    lc_loop_t *loop;
    double when;
    int index;
    int *early;
    int *fired;
    double *last_when;
    int *inversions;
} timed_t;

static void timed_cb(void *arg)
{
    timed_t *t = arg;
    if (lc_loop_time(t->loop) < t->when)
        (*t->early)++;
    if (t->when < *t->last_when)
        (*t->inversions)++;
    *t->last_when = t->when;
    (*t->fired)++;
}

static void test_timers_never_early_and_in_order(void **state)
{
    lc_loop_t *loop = *state;
    enum { N = 400 };
    static timed_t t[N];
    int early = 0, fired = 0, inversions = 0;
    double last_when = -INFINITY;
    srand(12345);
    for (int i = 0; i < N; i++) {
        double delay = (rand() % 60000) * 1e-6; /* 0-60 ms */
        t[i] = (timed_t){loop, 0, i, &early, &fired, &last_when, &inversions};
        lc_handle_t *h = NULL;
        if (i % 2 == 0) {
            t[i].when = lc_loop_time(loop) + delay;
            assert_int_equal(lc_loop_call_at(loop, t[i].when, timed_cb, &t[i], &h), 0);
            double w;
            assert_int_equal(lc_handle_when(h, &w), 0);
            assert_true(w == t[i].when); /* exactly the value asked for */
        } else {
            double before = lc_loop_time(loop);
            assert_int_equal(lc_loop_call_later(loop, delay, timed_cb, &t[i], &h), 0);
            assert_int_equal(lc_handle_when(h, &t[i].when), 0);
            assert_true(t[i].when >= before + delay);
            assert_true(t[i].when <= lc_loop_time(loop) + delay);
        }
        lc_handle_unref(h);
    }
    assert_int_equal(lc_loop_call_later(loop, 0.08, lc_test_stop_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(fired, N);
    assert_int_equal(early, 0);
    assert_int_equal(inversions, 0);
}

static void test_timers_reverse_registration_fires_in_when_order(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t e30 = {&log, 30}, e20 = {&log, 20}, e10 = {&log, 10};
    assert_int_equal(lc_loop_call_later(loop, 0.030, lc_test_log_cb, &e30, NULL), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.020, lc_test_log_cb, &e20, NULL), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.010, lc_test_log_cb, &e10, NULL), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.035, lc_test_stop_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){10, 20, 30}, 3);
}

static void test_timers_equal_when_fifo(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t ev[10];
    double when = lc_loop_time(loop) + 0.005;
    for (int i = 0; i < 10; i++) {
        ev[i] = (lc_test_event_t){&log, i};
        assert_int_equal(lc_loop_call_at(loop, when, lc_test_log_cb, &ev[i], NULL), 0);
    }
    assert_int_equal(lc_loop_call_at(loop, when + 0.001, lc_test_stop_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 10);
}

static void test_timers_large_delays(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t ev = {&log, 1};
    lc_handle_t *h2d = NULL, *hinf = NULL, *hbig = NULL;
    double now = lc_loop_time(loop);
    assert_int_equal(lc_loop_call_later(loop, 172800, lc_test_log_cb, &ev, &h2d), 0);
    assert_int_equal(lc_loop_call_later(loop, INFINITY, lc_test_log_cb, &ev, &hinf), 0);
    assert_int_equal(lc_loop_call_at(loop, 1e12, lc_test_log_cb, &ev, &hbig), 0);
    double w;
    assert_int_equal(lc_handle_when(h2d, &w), 0);
    assert_true(w - now >= 172800 && w - now < 172801);
    assert_int_equal(lc_handle_when(hinf, &w), 0);
    assert_true(isinf(w));
    assert_int_equal(lc_handle_when(hbig, &w), 0);
    assert_true(w == 1e12);
    assert_int_equal(lc_loop_call_later(loop, NAN, lc_test_log_cb, &ev, NULL), LC_EINVAL);
    assert_int_equal(lc_loop_call_at(loop, NAN, lc_test_log_cb, &ev, NULL), LC_EINVAL);
    /* The far timers neither fire nor stop the loop from waking for a near one. */
    assert_int_equal(lc_loop_call_later(loop, 0.01, lc_test_stop_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(log.n, 0);
    assert_true(lc_loop_time(loop) - now < 5);
    lc_handle_unref(h2d);
    lc_handle_unref(hinf);
    lc_handle_unref(hbig);
}

static void test_timers_cancel_before_run(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t a = {&log, 1}, b = {&log, 2};
    lc_handle_t *soon = NULL, *timer = NULL;
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &a, &soon), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.001, lc_test_log_cb, &b, &timer), 0);
    assert_false(lc_handle_cancelled(soon));
    assert_int_equal(lc_handle_cancel(soon), 0);
    assert_int_equal(lc_handle_cancel(soon), 0);
    assert_int_equal(lc_handle_cancel(timer), 0);
    assert_int_equal(lc_handle_cancel(timer), 0);
    assert_true(lc_handle_cancelled(soon));
    assert_true(lc_handle_cancelled(timer));
    assert_int_equal(lc_loop_call_later(loop, 0.01, lc_test_stop_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(log.n, 0);
    lc_handle_unref(soon);
    lc_handle_unref(timer);
    assert_int_equal(lc_handle_cancel(NULL), LC_EINVAL);
}

/* lc_handle_ref: each reference is dropped on its own; the handle stays usable (when, cancel)
 * after the callback ran and after the first unref, and goes with the last (ASan: no leak, no
 * use after free). Cancelling drops no reference. */
static void test_timers_handle_ref_unref(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t a = {&log, 1}, b = {&log, 2};
    lc_handle_t *timer = NULL, *cancelled = NULL;
    assert_int_equal(lc_loop_call_later(loop, 0, lc_test_log_cb, &a, &timer), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &b, &cancelled), 0);
    assert_ptr_equal(lc_handle_ref(timer), timer);
    assert_ptr_equal(lc_handle_ref(cancelled), cancelled);
    assert_null(lc_handle_ref(NULL));
    assert_int_equal(lc_handle_cancel(cancelled), 0);
    lc_handle_unref(cancelled); /* one left: ours */
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1}, 1);
    assert_true(lc_handle_cancelled(cancelled));
    lc_handle_unref(cancelled);
    lc_handle_unref(timer); /* the loop's is gone too: one left */
    double w;
    assert_int_equal(lc_handle_when(timer, &w), 0);
    assert_false(lc_handle_cancelled(timer));
    lc_handle_unref(timer);
}

static void test_timers_cancel_after_run_is_noop(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t a = {&log, 1}, b = {&log, 2};
    lc_handle_t *soon = NULL, *timer = NULL;
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &a, &soon), 0);
    assert_int_equal(lc_loop_call_later(loop, 0, lc_test_log_cb, &b, &timer), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 2}, 2);
    assert_false(lc_handle_cancelled(soon));
    assert_int_equal(lc_handle_cancel(soon), 0);
    assert_true(lc_handle_cancelled(soon)); /* asyncio: True even though it ran */
    assert_int_equal(lc_handle_cancel(timer), 0);
    assert_int_equal(lc_handle_cancel(timer), 0);
    double w;
    assert_int_equal(lc_handle_when(soon, &w), LC_EINVAL); /* not a timer handle */
    lc_handle_unref(soon);
    lc_handle_unref(timer);
}

typedef struct {
    lc_test_log_t *log;
    lc_handle_t *victim;
} canceller_t;

static void cancel_cb(void *arg)
{
    canceller_t *c = arg;
    lc_test_log_push(c->log, 0);
    lc_handle_cancel(c->victim);
}

static void test_timers_cancel_later_member_of_batch(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    canceller_t c = {&log, NULL};
    lc_test_event_t b = {&log, 2}, d = {&log, 3};
    assert_int_equal(lc_loop_call_soon(loop, cancel_cb, &c, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &b, &c.victim), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &d, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){0, 3}, 2);
    lc_handle_unref(c.victim);
}

static void test_timers_cancel_due_timer_in_same_iteration(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    canceller_t c = {&log, NULL};
    lc_test_event_t t = {&log, 9};
    /* Both timers are due in the same iteration; the first cancels the second. */
    double when = lc_loop_time(loop) - 1;
    assert_int_equal(lc_loop_call_at(loop, when, cancel_cb, &c, NULL), 0);
    assert_int_equal(lc_loop_call_at(loop, when + 0.5, lc_test_log_cb, &t, &c.victim), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){0}, 1);
    lc_handle_unref(c.victim);

    /* A ready callback cancels a timer that is due in the same iteration (rule 5d). */
    log.n = 0;
    assert_int_equal(lc_loop_call_later(loop, -1, lc_test_log_cb, &t, &c.victim), 0);
    assert_int_equal(lc_loop_call_soon(loop, cancel_cb, &c, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){0}, 1);
    lc_handle_unref(c.victim);
}

static void count_cb(void *arg) { (*(int *)arg)++; }

static void test_timers_million_cancelled_leave_nothing(void **state)
{
    lc_loop_t *loop = *state;
    enum { N = 1000000 };
    lc_handle_t **hs = malloc(N * sizeof(*hs));
    assert_non_null(hs);
    int ran = 0;
    double t0 = lc_loop_time(loop);
    for (int i = 0; i < N; i++)
        assert_int_equal(lc_loop_call_later(loop, 3600 + (i % 977), count_cb, &ran, &hs[i]), 0);
    assert_int_equal(loop->heap_len, N);
    size_t cap_full = loop->heap_cap;
    assert_true(cap_full >= N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(lc_handle_cancel(hs[i]), 0);
        lc_handle_unref(hs[i]);
    }
    free(hs);
    /* Cancelled timers are flagged in place and the heap is rebuilt without them whenever they
     * are more than half of it: at most 100 stay (asyncio's rule), and the memory is given back. */
    assert_true(loop->heap_len <= 100);
    assert_true(loop->heap_cap <= 512);
    /* The loop is not slowed: an iteration costs nothing extra. */
    assert_int_equal(lc_loop_call_soon(loop, count_cb, &ran, NULL), 0);
    double t1 = lc_loop_time(loop);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(ran, 1);
    assert_true(lc_loop_time(loop) - t1 < 0.05);
    assert_int_equal(loop->heap_cancelled, 0); /* the run dropped the stragglers at the top */
    (void)t0;
}

static void test_timers_time_is_monotonic_and_fine(void **state)
{
    lc_loop_t *loop = *state;
    double prev = lc_loop_time(loop), min_step = INFINITY;
    for (int i = 0; i < 100000; i++) {
        double t = lc_loop_time(loop);
        assert_true(t >= prev);
        if (t > prev && t - prev < min_step)
            min_step = t - prev;
        prev = t;
    }
    assert_true(min_step < 1e-6); /* sub-microsecond resolution */
}

int main(void)
{
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_timers_never_early_and_in_order),
        T(test_timers_reverse_registration_fires_in_when_order),
        T(test_timers_equal_when_fifo),
        T(test_timers_large_delays),
        T(test_timers_cancel_before_run),
        T(test_timers_cancel_after_run_is_noop),
        T(test_timers_handle_ref_unref),
        T(test_timers_cancel_later_member_of_batch),
        T(test_timers_cancel_due_timer_in_same_iteration),
        T(test_timers_million_cancelled_leave_nothing),
        T(test_timers_time_is_monotonic_and_fine),
#undef T
    };
    return cmocka_run_group_tests_name("timers", tests, NULL, NULL);
}
