/* Running, stopping, closing and obtaining the loop; call_soon ordering; run_until_complete. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/future_internal.h"
#include "tests/support/loop_fixture.h"

/* ---- helpers --------------------------------------------------------------------------------- */

typedef struct {
    lc_loop_t *loop;
    lc_test_log_t *log;
    int value;
    int successor; /* queue an event with this value when run, if non-zero */
    bool stop;     /* call stop() when run */
    int write_fd;  /* write a byte here when run, if >= 0 */
    lc_test_event_t next;
} step_t;

static void step_cb(void *arg)
{
    step_t *s = arg;
    lc_test_log_push(s->log, s->value);
    if (s->successor != 0) {
        s->next = (lc_test_event_t){s->log, s->successor};
        assert_int_equal(lc_loop_call_soon(s->loop, lc_test_log_cb, &s->next, NULL), 0);
    }
    if (s->write_fd >= 0)
        assert_int_equal(write(s->write_fd, "x", 1), 1);
    if (s->stop)
        lc_loop_stop(s->loop);
}

static step_t step(lc_loop_t *loop, lc_test_log_t *log, int value, int successor, bool stop)
{
    return (step_t){loop, log, value, successor, stop, -1, {0}};
}

/* A readable-socket watcher built on the loop's libuv loop (what add_reader will do). */
typedef struct {
    uv_poll_t poll;
    lc_test_log_t *log;
    int value;
} reader_t;

static void reader_cb(uv_poll_t *p, int status, int events)
{
    if (!lc__io_enter((uv_handle_t *)p)) /* as every engine I/O callback does */
        return;
    reader_t *r = (reader_t *)p;
    assert_int_equal(status, 0);
    assert_true(events & UV_READABLE);
    lc_test_log_push(r->log, r->value++);
}

static void reader_start(lc_loop_t *loop, reader_t *r, int fd, lc_test_log_t *log, int first)
{
    r->log = log;
    r->value = first;
    assert_int_equal(uv_poll_init(lc__loop_uv(loop), &r->poll, fd), 0);
    assert_int_equal(uv_poll_start(&r->poll, UV_READABLE, reader_cb), 0);
}

static void reader_stop(reader_t *r) { uv_close((uv_handle_t *)&r->poll, NULL); }

/* ---- obtaining the loop ---------------------------------------------------------------------- */

static void test_loop_new_is_idle(void **state)
{
    lc_loop_t *loop = *state;
    assert_false(lc_loop_is_running(loop));
    assert_false(lc_loop_is_closed(loop));
    assert_int_equal(lc_new_event_loop(NULL), LC_EINVAL);
}

static void check_running_cb(void *arg)
{
    lc_loop_t *loop = arg, *got = NULL;
    assert_int_equal(lc_get_running_loop(&got), 0);
    assert_ptr_equal(got, loop);
    assert_true(lc_loop_is_running(loop));
    got = NULL;
    assert_int_equal(lc_get_event_loop(&got), 0);
    assert_ptr_equal(got, loop);
    lc_loop_stop(loop);
}

static void test_loop_get_running_loop(void **state)
{
    lc_loop_t *loop = *state, *got = (lc_loop_t *)1;
    assert_int_equal(lc_get_running_loop(&got), LC_ENORUNNINGLOOP);
    assert_null(got);
    assert_int_equal(lc_loop_call_soon(loop, check_running_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    got = (lc_loop_t *)1;
    assert_int_equal(lc_get_running_loop(&got), LC_ENORUNNINGLOOP);
    assert_null(got);
    assert_false(lc_loop_is_running(loop));
}

static void *event_loop_thread(void *arg)
{
    (void)arg;
    lc_loop_t *a = NULL, *b = NULL;
    assert_int_equal(lc_get_event_loop(&a), 0);
    assert_non_null(a);
    assert_int_equal(lc_get_event_loop(&b), 0);
    assert_ptr_equal(a, b); /* created once */
    assert_int_equal(lc_set_event_loop(NULL), 0);
    b = (lc_loop_t *)1;
    assert_int_equal(lc_get_event_loop(&b), LC_ENOCURRENTLOOP);
    assert_null(b);
    assert_int_equal(lc_set_event_loop(a), 0);
    assert_int_equal(lc_get_event_loop(&b), 0);
    assert_ptr_equal(a, b);
    assert_int_equal(lc_loop_close(a), 0);
    assert_int_equal(lc_set_event_loop(a), LC_ECLOSED);
    assert_int_equal(lc_loop_free(a), 0); /* also clears the slot */
    assert_int_equal(lc_get_event_loop(&b), LC_ENOCURRENTLOOP);
    return NULL;
}

static void test_loop_get_event_loop_per_thread(void **state)
{
    (void)state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, event_loop_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* The implicitly created loop, closed and freed: the slot is empty and the user never set it, so
 * the next call creates a new loop (the header's promise), as often as needed. */
static void *implicit_loop_again_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        lc_loop_t *a = NULL, *b = NULL;
        assert_int_equal(lc_get_event_loop(&a), 0);
        assert_non_null(a);
        assert_false(lc_loop_is_closed(a));
        assert_int_equal(lc_get_event_loop(&b), 0);
        assert_ptr_equal(a, b);
        assert_int_equal(lc_loop_close(a), 0);
        assert_int_equal(lc_loop_free(a), 0);
    }
    return NULL;
}

static void test_loop_get_event_loop_after_implicit_freed(void **state)
{
    (void)state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, implicit_loop_again_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* ---- call_soon ------------------------------------------------------------------------------- */

typedef struct {
    int next;
    int bad;
} order_t;

static void order_cb(void *arg)
{
    /* The argument is the expected position; the counter lives in a static so each callback
     * needs no allocation. */
    static order_t *o;
    if (arg == NULL)
        return;
    if (((uintptr_t)arg & 1) == 0) {
        o = arg; /* reset */
        return;
    }
    int pos = (int)((uintptr_t)arg >> 1);
    if (pos != o->next)
        o->bad++;
    o->next++;
}

static void test_loop_call_soon_fifo_million(void **state)
{
    lc_loop_t *loop = *state;
    order_t o = {0, 0};
    order_cb(&o);
    const int n = 1000000;
    for (int i = 0; i < n; i++)
        assert_int_equal(lc_loop_call_soon(loop, order_cb, (void *)(((uintptr_t)i << 1) | 1), NULL),
                         0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(o.next, n);
    assert_int_equal(o.bad, 0);
}

static void test_loop_call_soon_bad_args(void **state)
{
    lc_loop_t *loop = *state;
    lc_handle_t *h = (lc_handle_t *)1;
    assert_int_equal(lc_loop_call_soon(NULL, lc_test_stop_cb, NULL, &h), LC_EINVAL);
    assert_null(h);
    assert_int_equal(lc_loop_call_soon(loop, NULL, NULL, NULL), LC_EINVAL);
}

/* ---- stop semantics (behaviour rules 1a-2b) ---------------------------------------------------
 */

static void test_loop_stop_before_run_one_iteration(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "r", 1), 1); /* R is readable before the run */
    reader_t r;
    reader_start(loop, &r, sv[0], &log, 100);

    step_t a = step(loop, &log, 1, 11, false), b = step(loop, &log, 2, 12, false);
    lc_test_event_t c = {&log, 3};
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &a, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &b, NULL), 0);
    lc_test_event_t late = {&log, 99};
    assert_int_equal(lc_loop_call_later(loop, 10, lc_test_log_cb, &late, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &c, NULL), 0); /* after stop() */

    double t0 = lc_loop_time(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_true(lc_loop_time(loop) - t0 < 1.0); /* never waits for the 10 s timer */
    lc_test_assert_log(&log, (int[]){1, 2, 3, 100}, 4);

    log.n = 0;
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){11, 12, 101}, 3);

    reader_stop(&r);
    close(sv[0]);
    close(sv[1]);
}

static void test_loop_stop_first_runs_due_timer_last(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t t = {&log, 2}, a = {&log, 1};
    assert_int_equal(lc_loop_call_later(loop, -1, lc_test_log_cb, &t, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &a, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 2}, 2);
}

static void test_loop_stop_is_cleared_after_run(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t x = {&log, 1}, y = {&log, 2};
    lc_loop_stop(loop);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &x, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &y, NULL), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.05, lc_test_stop_cb, loop, NULL), 0);
    double t0 = lc_loop_time(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_true(lc_loop_time(loop) - t0 >= 0.05); /* ended by the timer, not a left-over stop */
    lc_test_assert_log(&log, (int[]){1, 2}, 2);
}

static void test_loop_stop_in_batch_finishes_batch(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    step_t a = step(loop, &log, 1, 11, false), s = step(loop, &log, 2, 12, true),
           b = step(loop, &log, 3, 13, false);
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &a, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &s, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &b, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 2, 3}, 3);
    log.n = 0;
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){11, 12, 13}, 3);
}

static void test_loop_stop_in_batch_skips_poll(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    reader_t r;
    reader_start(loop, &r, sv[0], &log, 100);
    step_t w = step(loop, &log, 1, 0, false), s = step(loop, &log, 2, 0, true);
    w.write_fd = sv[1];
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &w, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &s, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 2}, 2);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 2, 100}, 3);
    reader_stop(&r);
    close(sv[0]);
    close(sv[1]);
}

/* Rule 2c: `call_soon(stop); run_forever()` runs one whole iteration: the poll comes first, then
 * the ready callbacks, the I/O callbacks of sockets readable before the run, and the due timers,
 * in that order. */
static void test_loop_stop_soon_runs_one_iteration(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "r", 1), 1); /* R is readable before the run */
    reader_t r;
    reader_start(loop, &r, sv[0], &log, 100);
    lc_test_event_t t = {&log, 200};
    assert_int_equal(lc_loop_call_later(loop, -1, lc_test_log_cb, &t, NULL), 0); /* T: due */
    step_t s = step(loop, &log, 1, 2, true); /* S: stop(), and queue a successor */
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &s, NULL), 0);

    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 100, 200}, 3); /* [S, R, T]; S's successor waits */

    /* The same run again, with the socket still readable: the successor, then R again. */
    log.n = 0;
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){2, 101}, 2);
    reader_stop(&r);
    close(sv[0]);
    close(sv[1]);
}

/* The batch runs before the poll's I/O callbacks even when it is begun by one of them: a timer
 * scheduled by the batch with a past when, and a timer that comes due while the batch runs, wait
 * for the next iteration (asyncio takes the due timers against the clock when the poll
 * returned). */
static void late_timer_cb(void *arg)
{
    step_t *s = arg;
    lc_test_log_push(s->log, s->value);
    s->next = (lc_test_event_t){s->log, s->successor};
    assert_int_equal(lc_loop_call_later(s->loop, -1, lc_test_log_cb, &s->next, NULL), 0);
    lc_loop_stop(s->loop);
}

static void test_loop_timer_scheduled_by_batch_waits(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "r", 1), 1);
    reader_t r;
    reader_start(loop, &r, sv[0], &log, 100);
    step_t s = step(loop, &log, 1, 300, true);
    assert_int_equal(lc_loop_call_soon(loop, late_timer_cb, &s, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 100}, 2);
    log.n = 0;
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){101, 300}, 2);
    reader_stop(&r);
    close(sv[0]);
    close(sv[1]);
}

/* The same with a transport: data already in the socket is delivered in the `call_soon(stop)`
 * run, after the ready callbacks; a ready callback that pauses reading first keeps it out of
 * the iteration, although the poll saw the socket readable. */
typedef struct {
    lc_test_log_t *log;
    lc_transport_t *t;
    int lost;
} order_proto_t;

static void op_made(lc_transport_t *t, void *user) { ((order_proto_t *)user)->t = t; }
static void op_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)t;
    (void)len;
    lc_test_log_push(((order_proto_t *)user)->log, 100 + data[0]);
}
static void op_lost(lc_transport_t *t, int err, void *user)
{
    (void)t;
    (void)err;
    ((order_proto_t *)user)->lost++;
}
static const lc_protocol_t order_proto = {
    .connection_made = op_made, .data_received = op_data, .connection_lost = op_lost};
static int order_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &order_proto;
    *user = arg;
    return 0;
}

static void pause_and_stop_cb(void *arg)
{
    order_proto_t *op = arg;
    lc_test_log_push(op->log, 2);
    assert_int_equal(lc_transport_pause_reading(op->t), 0);
    lc_loop_stop(lc_transport_get_loop(op->t));
}

static void test_loop_transport_io_after_ready_batch(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    order_proto_t op = {.log = &log};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_connect_accepted_socket(loop, order_factory, &op, sv[0], NULL, &fut),
                     0);
    assert_int_equal(lc_loop_run_until_complete(loop, fut, NULL), 0);
    lc_future_unref(fut);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0); /* connection_made */
    assert_non_null(op.t);

    assert_int_equal(write(sv[1], "\x01", 1), 1);
    step_t s = step(loop, &log, 1, 0, true);
    assert_int_equal(lc_loop_call_soon(loop, step_cb, &s, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 101}, 2);

    log.n = 0;
    assert_int_equal(write(sv[1], "\x02", 1), 1);
    assert_int_equal(lc_loop_call_soon(loop, pause_and_stop_cb, &op, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){2}, 1);

    assert_int_equal(lc_transport_resume_reading(op.t), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){2, 102}, 2);

    lc_transport_abort(op.t);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(op.lost, 1);
    close(sv[1]);
}

static void test_loop_zero_and_negative_delays_run_after_ready(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t s[5], later0 = {&log, 10}, at_now = {&log, 11}, neg = {&log, 9},
                          small = {&log, 12};
    for (int i = 0; i < 5; i++)
        s[i] = (lc_test_event_t){&log, i + 1};
    lc_handle_t *h = NULL;
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &s[0], NULL), 0);
    assert_int_equal(lc_loop_call_later(loop, 0, lc_test_log_cb, &later0, &h), 0);
    double when;
    assert_int_equal(lc_handle_when(h, &when), 0); /* a timer handle even for delay 0 */
    lc_handle_unref(h);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &s[1], NULL), 0);
    assert_int_equal(lc_loop_call_at(loop, lc_loop_time(loop), lc_test_log_cb, &at_now, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &s[2], NULL), 0);
    assert_int_equal(lc_loop_call_later(loop, -1, lc_test_log_cb, &neg, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &s[3], NULL), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.0004, lc_test_log_cb, &small, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &s[4], NULL), 0);
    assert_int_equal(lc_loop_call_later(loop, 0.01, lc_test_stop_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1, 2, 3, 4, 5, 9, 10, 11, 12}, 9);
}

/* ---- close ----------------------------------------------------------------------------------- */

static void close_inside_cb(void *arg)
{
    lc_loop_t *loop = arg;
    assert_int_equal(lc_loop_close(loop), LC_ERUNNING);
    assert_false(lc_loop_is_closed(loop));
    assert_int_equal(lc_loop_free(loop), LC_ERUNNING);
    assert_int_equal(lc_loop_run_forever(loop), LC_ERUNNING);
    lc_loop_stop(loop);
}

static void test_loop_close_refused_while_running(void **state)
{
    lc_loop_t *loop = *state;
    assert_int_equal(lc_loop_call_soon(loop, close_inside_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_false(lc_loop_is_closed(loop));
}

static void test_loop_close_discards_pending(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    lc_test_log_t log = {0};
    lc_test_event_t ev = {&log, 1};
    lc_handle_t *soon = NULL, *later = NULL;
    /* Many callbacks the user holds no handle to: ASan's leak check proves they are freed. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &ev, NULL), 0);
        assert_int_equal(lc_loop_call_later(loop, 0.001 * i, lc_test_log_cb, &ev, NULL), 0);
    }
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &ev, &soon), 0);
    assert_int_equal(lc_loop_call_later(loop, 5, lc_test_log_cb, &ev, &later), 0);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_int_equal(lc_future_add_done_callback(fut, lc_test_log_done_cb, &ev), 0);
    assert_int_equal(lc_future_set_result(fut, NULL), 0); /* done callback now queued */
    lc_future_unref(fut);

    assert_int_equal(lc_loop_close(loop), 0);
    assert_true(lc_loop_is_closed(loop));
    assert_int_equal(log.n, 0);
    /* The user's handles stay valid: not cancelled (asyncio 6b), cancel is a no-op. */
    assert_false(lc_handle_cancelled(soon));
    assert_int_equal(lc_handle_cancel(soon), 0);
    assert_int_equal(lc_handle_cancel(later), 0);
    double when;
    assert_int_equal(lc_handle_when(later, &when), 0);

    assert_int_equal(lc_loop_close(loop), 0); /* idempotent */
    assert_int_equal(lc_loop_run_forever(loop), LC_ECLOSED);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &ev, NULL), LC_ECLOSED);
    assert_int_equal(lc_loop_call_later(loop, 1, lc_test_log_cb, &ev, NULL), LC_ECLOSED);
    assert_int_equal(lc_loop_call_at(loop, 1, lc_test_log_cb, &ev, NULL), LC_ECLOSED);
    assert_int_equal(lc_loop_create_future(loop, &fut), LC_ECLOSED);
    assert_int_equal(lc_loop_stop(loop), 0);
    assert_false(lc_loop_is_running(loop));
    assert_true(lc_loop_time(loop) > 0);
    assert_int_equal(lc_loop_free(loop), 0);
    /* Released after the loop is gone: still safe. */
    lc_handle_unref(soon);
    lc_handle_unref(later);
}

/* ---- nesting --------------------------------------------------------------------------------- */

static void run_other_cb(void *arg)
{
    lc_loop_t **loops = arg;
    assert_int_equal(lc_loop_run_forever(loops[1]), LC_EOTHERLOOP);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loops[1], &fut), 0);
    assert_int_equal(lc_loop_run_until_complete(loops[1], fut, NULL), LC_EOTHERLOOP);
    assert_int_equal(lc_loop_run_until_complete(loops[0], fut, NULL), LC_EWRONGLOOP);
    lc_future_unref(fut);
    lc_loop_stop(loops[0]);
}

static void test_loop_another_loop_running(void **state)
{
    lc_loop_t *loops[2] = {*state, NULL};
    assert_int_equal(lc_new_event_loop(&loops[1]), 0);
    assert_int_equal(lc_loop_call_soon(loops[0], run_other_cb, loops, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loops[0]), 0);
    assert_int_equal(lc_loop_free(loops[1]), 0);
}

/* ---- run_until_complete ---------------------------------------------------------------------- */

typedef struct {
    lc_future_t *fut;
    int how; /* 0 result, 1 error, 2 cancel, 3 stop the loop instead */
} completer_t;

static void complete_cb(void *arg)
{
    completer_t *c = arg;
    switch (c->how) {
    case 0:
        assert_int_equal(lc_future_set_result(c->fut, (void *)(uintptr_t)42), 0);
        break;
    case 1:
        assert_int_equal(lc_future_set_error(c->fut, -ECONNRESET), 0);
        break;
    case 2:
        assert_int_equal(lc_future_cancel(c->fut), 1);
        break;
    default:
        lc_loop_stop(lc_future_get_loop(c->fut));
    }
}

static int run_with(lc_loop_t *loop, int how, void **result)
{
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    completer_t c = {fut, how};
    assert_int_equal(lc_loop_call_later(loop, 0.002, complete_cb, &c, NULL), 0);
    int r = lc_loop_run_until_complete(loop, fut, result);
    if (how == 3)
        lc_future_cancel(fut);
    lc_future_unref(fut);
    return r;
}

static void test_loop_run_until_complete_outcomes(void **state)
{
    lc_loop_t *loop = *state;
    void *result = NULL;
    assert_int_equal(run_with(loop, 0, &result), 0);
    assert_int_equal((uintptr_t)result, 42);
    assert_int_equal(run_with(loop, 1, &result), -ECONNRESET);
    assert_int_equal(run_with(loop, 2, &result), LC_ECANCELLED);
    assert_int_equal(run_with(loop, 3, &result), LC_ESTOPPED);
    assert_null(result);

    lc_future_t *done = NULL;
    assert_int_equal(lc_loop_create_future(loop, &done), 0);
    assert_int_equal(lc_future_set_result(done, (void *)(uintptr_t)7), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, done, &result), 0);
    assert_int_equal((uintptr_t)result, 7);
    assert_int_equal(lc_loop_run_until_complete(loop, NULL, &result), LC_EINVAL);
    lc_future_unref(done);
}

static void test_loop_run_until_complete_foreign_future(void **state)
{
    lc_loop_t *loop = *state, *other = NULL;
    assert_int_equal(lc_new_event_loop(&other), 0);
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(other, &fut), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, fut, NULL), LC_EWRONGLOOP);
    assert_false(lc_future_done(fut));
    assert_int_equal(fut->ncallbacks, 0); /* untouched */
    lc_future_unref(fut);
    assert_int_equal(lc_loop_free(other), 0);
}

int main(void)
{
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_loop_new_is_idle),
        T(test_loop_get_running_loop),
        T(test_loop_get_event_loop_per_thread),
        T(test_loop_call_soon_fifo_million),
        T(test_loop_call_soon_bad_args),
        T(test_loop_stop_before_run_one_iteration),
        T(test_loop_stop_first_runs_due_timer_last),
        T(test_loop_stop_is_cleared_after_run),
        T(test_loop_stop_in_batch_finishes_batch),
        T(test_loop_stop_in_batch_skips_poll),
        T(test_loop_stop_soon_runs_one_iteration),
        T(test_loop_get_event_loop_after_implicit_freed),
        T(test_loop_timer_scheduled_by_batch_waits),
        T(test_loop_transport_io_after_ready_batch),
        T(test_loop_zero_and_negative_delays_run_after_ready),
        T(test_loop_close_refused_while_running),
        cmocka_unit_test(test_loop_close_discards_pending),
        T(test_loop_another_loop_running),
        T(test_loop_run_until_complete_outcomes),
        T(test_loop_run_until_complete_foreign_future),
#undef T
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
