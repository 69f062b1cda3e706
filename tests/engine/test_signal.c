/* add_signal_handler / remove_signal_handler on one loop (loopcore/signal.h): the handler runs on
 * the loop's thread as an ordinary callback, adding again replaces, removing restores SIG_DFL
 * once no loop watches the signal, invalid numbers, a closed loop, closing removes, coalescing,
 * and two loops of one thread (fan-out). This process has one thread, so kill(getpid()) runs
 * libuv's handler before it returns: the delivery is in the loop's pipe when kill returns. */
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

typedef struct {
    lc_loop_t *loop;
    int runs;
    pthread_t thread;
    bool on_loop; /* lc_get_running_loop() gave loop in the handler */
    bool stop;    /* stop the loop from the handler */
} hit_t;

static void hit_cb(void *arg)
{
    hit_t *h = arg;
    h->runs++;
    h->thread = pthread_self();
    lc_loop_t *running = NULL;
    h->on_loop = lc_get_running_loop(&running) == 0 && running == h->loop;
    if (h->stop)
        lc_loop_stop(h->loop);
}

static bool guard_fired;

static void guard_cb(void *arg)
{
    guard_fired = true;
    lc_loop_stop(arg);
}

/* Runs loop until a callback stops it, or 10 s pass (then fails). */
static void run_bounded(lc_loop_t *loop)
{
    lc_handle_t *guard = NULL;
    guard_fired = false;
    assert_int_equal(lc_loop_call_later(loop, 10.0, guard_cb, loop, &guard), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_false(guard_fired);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
}

/* Runs a few iterations: long enough for anything already in the pipe to be read and run. */
static void run_briefly(lc_loop_t *loop, double seconds)
{
    assert_int_equal(lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

static void *disposition(int signum)
{
    struct sigaction sa;
    assert_int_equal(sigaction(signum, NULL, &sa), 0);
    return (void *)sa.sa_handler;
}

static void test_signal_handler_runs_on_loop_thread(void **state)
{
    lc_loop_t *loop = *state;
    hit_t h = {.loop = loop, .stop = true};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR1, hit_cb, &h), 0);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    assert_int_equal(h.runs, 0); /* never in signal context */
    run_bounded(loop);
    assert_int_equal(h.runs, 1);
    assert_true(h.on_loop);
    assert_true(pthread_equal(h.thread, pthread_self()));
    /* Each later delivery runs it again. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kill(getpid(), SIGUSR1), 0);
        run_bounded(loop);
        assert_int_equal(h.runs, 2 + i);
    }
    bool removed = false;
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGUSR1, &removed), 0);
    assert_true(removed);
}

static void test_signal_add_again_replaces(void **state)
{
    lc_loop_t *loop = *state;
    hit_t a = {.loop = loop, .stop = true}, b = {.loop = loop, .stop = true};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR2, hit_cb, &a), 0);
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR2, hit_cb, &b), 0);
    assert_int_equal(kill(getpid(), SIGUSR2), 0);
    run_bounded(loop);
    assert_int_equal(a.runs, 0);
    assert_int_equal(b.runs, 1);
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGUSR2, NULL), 0);
}

static void test_signal_remove_restores_default(void **state)
{
    lc_loop_t *loop = *state;
    hit_t h = {.loop = loop};
    signal(SIGUSR1, SIG_IGN);
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR1, hit_cb, &h), 0);
    assert_ptr_not_equal(disposition(SIGUSR1), (void *)SIG_IGN);
    assert_ptr_not_equal(disposition(SIGUSR1), (void *)SIG_DFL);
    bool removed = false;
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGUSR1, &removed), 0);
    assert_true(removed);
    assert_ptr_equal(disposition(SIGUSR1), (void *)SIG_DFL);
    removed = true;
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGUSR1, &removed), 0);
    assert_false(removed);
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGHUP, &removed), 0);
    assert_false(removed);
}

static void test_signal_invalid_numbers(void **state)
{
    lc_loop_t *loop = *state;
    hit_t h = {.loop = loop};
    const int bad[] = {SIGKILL, SIGSTOP, 0, -1, NSIG, NSIG + 1, 1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(lc_loop_add_signal_handler(loop, bad[i], hit_cb, &h), LC_EINVAL);
        bool removed = true;
        assert_int_equal(lc_loop_remove_signal_handler(loop, bad[i], &removed), LC_EINVAL);
        assert_false(removed);
    }
    /* glibc keeps the two numbers below SIGRTMIN for itself: sigaction refuses them. */
    if (SIGRTMIN > 32)
        assert_int_equal(lc_loop_add_signal_handler(loop, 32, hit_cb, &h), LC_EINVAL);
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR1, NULL, &h), LC_EINVAL);
    assert_int_equal(lc_loop_add_signal_handler(NULL, SIGUSR1, hit_cb, &h), LC_EINVAL);
    assert_int_equal(lc_loop_remove_signal_handler(NULL, SIGUSR1, NULL), LC_EINVAL);
    /* A real-time signal is fine. */
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGRTMIN + 1, hit_cb, &h), 0);
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGRTMIN + 1, NULL), 0);
    assert_ptr_equal(disposition(SIGRTMIN + 1), (void *)SIG_DFL);
}

static void test_signal_closed_loop(void **state)
{
    (void)state;
    lc_loop_t *loop;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    hit_t h = {.loop = loop};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR1, hit_cb, &h), 0);
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGHUP, hit_cb, &h), 0);
    assert_int_equal(kill(getpid(), SIGUSR1), 0); /* queued in the pipe, never run */
    assert_int_equal(lc_loop_close(loop), 0);
    /* Closing removed both: the defaults are back. */
    assert_ptr_equal(disposition(SIGUSR1), (void *)SIG_DFL);
    assert_ptr_equal(disposition(SIGHUP), (void *)SIG_DFL);
    assert_int_equal(h.runs, 0);
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR1, hit_cb, &h), LC_ECLOSED);
    bool removed = true;
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGUSR1, &removed), 0);
    assert_false(removed);
    assert_int_equal(lc_loop_free(loop), 0);
}

static void remove_cb(void *arg)
{
    hit_t *h = arg;
    bool removed = false;
    assert_int_equal(lc_loop_remove_signal_handler(h->loop, SIGUSR1, &removed), 0);
    assert_true(removed);
}

/* A delivery whose run has not started when the handler is removed never runs: here the
 * delivery is in the pipe and a callback queued before the poll removes the handler. */
static void test_signal_removed_handler_does_not_run(void **state)
{
    lc_loop_t *loop = *state;
    hit_t h = {.loop = loop};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR1, hit_cb, &h), 0);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    assert_int_equal(lc_loop_call_soon(loop, remove_cb, &h, NULL), 0);
    run_briefly(loop, 0.2);
    assert_int_equal(h.runs, 0);
    assert_ptr_equal(disposition(SIGUSR1), (void *)SIG_DFL);
}

/* Deliveries that come while a run is queued and not started are folded into it; one after a run
 * started gets its own. */
static void test_signal_coalesces_while_pending(void **state)
{
    lc_loop_t *loop = *state;
    hit_t h = {.loop = loop};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR2, hit_cb, &h), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(kill(getpid(), SIGUSR2), 0);
    run_briefly(loop, 0.2);
    assert_int_equal(h.runs, 1);
    assert_int_equal(kill(getpid(), SIGUSR2), 0);
    run_briefly(loop, 0.2);
    assert_int_equal(h.runs, 2);
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGUSR2, NULL), 0);
}

/* One iteration that reads the pipe and queues the run, without running it: a stop pending before
 * run_forever gives exactly one iteration (poll, then the batch, which is the next one's). */
static void queue_run_only(lc_loop_t *loop)
{
    assert_int_equal(lc_loop_stop(loop), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

/* A run queued (the delivery was read) and not started when the handler is removed: dropped. */
static void test_signal_remove_drops_queued_run(void **state)
{
    lc_loop_t *loop = *state;
    hit_t h = {.loop = loop};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR2, hit_cb, &h), 0);
    assert_int_equal(kill(getpid(), SIGUSR2), 0);
    queue_run_only(loop);
    assert_int_equal(h.runs, 0);
    bool removed = false;
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGUSR2, &removed), 0);
    assert_true(removed);
    run_briefly(loop, 0.1);
    assert_int_equal(h.runs, 0);
}

/* A run queued and not started when the handler is replaced runs the new handler. */
static void test_signal_replace_applies_to_queued_run(void **state)
{
    lc_loop_t *loop = *state;
    hit_t a = {.loop = loop}, b = {.loop = loop};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR2, hit_cb, &a), 0);
    assert_int_equal(kill(getpid(), SIGUSR2), 0);
    queue_run_only(loop);
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR2, hit_cb, &b), 0);
    run_briefly(loop, 0.1);
    assert_int_equal(a.runs, 0);
    assert_int_equal(b.runs, 1);
    assert_int_equal(lc_loop_remove_signal_handler(loop, SIGUSR2, NULL), 0);
}

/* A run queued when the loop is closed never happens (and nothing leaks: ASan). */
static void test_signal_close_drops_queued_run(void **state)
{
    (void)state;
    lc_loop_t *loop;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    hit_t h = {.loop = loop};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGUSR1, hit_cb, &h), 0);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    queue_run_only(loop);
    assert_int_equal(kill(getpid(), SIGUSR1), 0); /* and one more left in the pipe */
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(h.runs, 0);
    assert_ptr_equal(disposition(SIGUSR1), (void *)SIG_DFL);
    assert_int_equal(lc_loop_free(loop), 0);
}

typedef struct {
    lc_loop_t *loop;
    int runs;
} self_remove_t;

/* The handler is an ordinary callback: it may remove itself and schedule things. */
static void self_remove_cb(void *arg)
{
    self_remove_t *s = arg;
    s->runs++;
    bool removed = false;
    assert_int_equal(lc_loop_remove_signal_handler(s->loop, SIGHUP, &removed), 0);
    assert_true(removed);
    assert_int_equal(lc_loop_call_soon(s->loop, lc_test_stop_cb, s->loop, NULL), 0);
}

static void test_signal_handler_may_remove_itself(void **state)
{
    lc_loop_t *loop = *state;
    self_remove_t s = {.loop = loop};
    assert_int_equal(lc_loop_add_signal_handler(loop, SIGHUP, self_remove_cb, &s), 0);
    assert_int_equal(kill(getpid(), SIGHUP), 0);
    run_bounded(loop);
    assert_int_equal(s.runs, 1);
    assert_ptr_equal(disposition(SIGHUP), (void *)SIG_DFL);
}

/* Two loops watch the same signal: each gets each delivery (fan-out), and the disposition stays
 * until the last one stops watching. */
static void test_signal_two_loops_fan_out(void **state)
{
    lc_loop_t *a = *state, *b;
    assert_int_equal(lc_new_event_loop(&b), 0);
    hit_t ha = {.loop = a, .stop = true}, hb = {.loop = b, .stop = true};
    assert_int_equal(lc_loop_add_signal_handler(a, SIGUSR1, hit_cb, &ha), 0);
    assert_int_equal(lc_loop_add_signal_handler(b, SIGUSR1, hit_cb, &hb), 0);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    run_bounded(a);
    run_bounded(b);
    assert_int_equal(ha.runs, 1);
    assert_int_equal(hb.runs, 1);
    bool removed = false;
    assert_int_equal(lc_loop_remove_signal_handler(a, SIGUSR1, &removed), 0);
    assert_true(removed);
    assert_ptr_not_equal(disposition(SIGUSR1), (void *)SIG_DFL); /* b still watches */
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    run_bounded(b);
    assert_int_equal(hb.runs, 2);
    run_briefly(a, 0.1);
    assert_int_equal(ha.runs, 1);
    assert_int_equal(lc_loop_close(b), 0); /* closing removes b's: nobody watches now */
    assert_ptr_equal(disposition(SIGUSR1), (void *)SIG_DFL);
    assert_int_equal(lc_loop_free(b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signal_handler_runs_on_loop_thread, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_signal_add_again_replaces, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_signal_remove_restores_default, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_signal_invalid_numbers, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test(test_signal_closed_loop),
        cmocka_unit_test_setup_teardown(test_signal_removed_handler_does_not_run,
                                        lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_signal_coalesces_while_pending, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_signal_remove_drops_queued_run, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_signal_replace_applies_to_queued_run,
                                        lc_test_loop_setup, lc_test_loop_teardown),
        cmocka_unit_test(test_signal_close_drops_queued_run),
        cmocka_unit_test_setup_teardown(test_signal_handler_may_remove_itself, lc_test_loop_setup,
                                        lc_test_loop_teardown),
        cmocka_unit_test_setup_teardown(test_signal_two_loops_fan_out, lc_test_loop_setup,
                                        lc_test_loop_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
