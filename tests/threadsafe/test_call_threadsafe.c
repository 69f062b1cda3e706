/* call_soon_threadsafe and lc_loop_post_threadsafe: delivery, order, cancellation from other
 * threads, posts racing close, recycled handles, a stalled push. Also run under --config=tsan.
 * What posts cost in wake-ups (producers, bursts, the spin budget) is in
 * test_call_threadsafe_wakeups.c; the helpers both use are in call_threadsafe_helpers.h. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/inbound.h" /* white-box: a loop's return stack of recycled handles */
#include "tests/support/loop_fixture.h"

#include "tests/threadsafe/call_threadsafe_helpers.h"

/* ---- delivery and wake-up -------------------------------------------------------------------- */

typedef struct {
    atomic_int ran;
    pthread_t loop_thread;
    atomic_int on_loop_thread;
} flag_t;

static void flag_cb(void *arg)
{
    flag_t *f = arg;
    atomic_store(&f->on_loop_thread, pthread_equal(pthread_self(), f->loop_thread));
    atomic_fetch_add(&f->ran, 1);
}

static void test_threadsafe_wakes_sleeping_loop(void **state)
{
    lc_loop_t *loop = *state;
    runner_t r;
    runner_start(&r, loop);
    usleep(50000); /* the loop is asleep (nothing to do; no timers) */
    flag_t f = {0};
    f.loop_thread = r.thread;
    double t0 = now();
    assert_int_equal(lc_loop_call_soon_threadsafe(loop, flag_cb, &f, NULL), 0);
    while (atomic_load(&f.ran) == 0 && now() - t0 < 5)
        usleep(100);
    assert_int_equal(atomic_load(&f.ran), 1);
    assert_true(atomic_load(&f.on_loop_thread));
    assert_true(now() - t0 < 1.0); /* woken, not left until some timeout */
    runner_stop(&r);
    lc_loop_threadsafe_stats_t st;
    assert_int_equal(lc_loop_get_threadsafe_stats(loop, &st), 0);
    assert_true(st.wakeups >= 1);
    assert_int_equal(st.received, 2);
    assert_int_equal(lc_loop_call_soon_threadsafe(NULL, flag_cb, &f, NULL), LC_EINVAL);
    assert_int_equal(lc_loop_call_soon_threadsafe(loop, NULL, &f, NULL), LC_EINVAL);
    assert_int_equal(lc_loop_post_threadsafe(loop, NULL, NULL), LC_EINVAL);
}

/* ---- ordering with the loop's own callbacks -------------------------------------------------- */

static void test_threadsafe_runs_after_ready_callbacks(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_log_t log = {0};
    lc_test_event_t a = {&log, 1}, ts = {&log, 2}, b = {&log, 3};
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &a, NULL), 0);
    assert_int_equal(lc_loop_call_soon_threadsafe(loop, lc_test_log_cb, &ts, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &b, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    /* Drained at the start of the iteration and appended to the ready queue. */
    lc_test_assert_log(&log, (int[]){1, 3, 2}, 3);
}

/* ---- cancellation from another thread -------------------------------------------------------- */

typedef struct {
    lc_loop_t *loop;
    lc_handle_t *h;
    atomic_int ran;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int phase;
} cancel_t;

static void cancel_victim_cb(void *arg) { atomic_fetch_add(&((cancel_t *)arg)->ran, 1); }

static void set_phase(cancel_t *c, int phase)
{
    pthread_mutex_lock(&c->mu);
    c->phase = phase;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void wait_phase(cancel_t *c, int phase)
{
    pthread_mutex_lock(&c->mu);
    while (c->phase < phase)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void *canceller_main(void *arg)
{
    cancel_t *c = arg;
    wait_phase(c, 1);
    assert_int_equal(lc_loop_call_soon_threadsafe(c->loop, cancel_victim_cb, c, &c->h), 0);
    assert_int_equal(lc_handle_cancel(c->h), 0);
    assert_true(lc_handle_cancelled(c->h));
    lc_handle_unref(c->h); /* released on this thread, while the loop still queues it */
    set_phase(c, 2);
    return NULL;
}

static void hold_loop_cb(void *arg)
{
    cancel_t *c = arg;
    set_phase(c, 1);
    wait_phase(c, 2); /* the loop is busy here while the other thread posts and cancels */
    lc_loop_stop(c->loop);
}

static void test_threadsafe_cancel_and_release_from_other_thread(void **state)
{
    lc_loop_t *loop = *state;
    cancel_t c = {.loop = loop};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, canceller_main, &c), 0);
    assert_int_equal(lc_loop_call_soon(loop, hold_loop_cb, &c, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0); /* drains the cancelled post */
    assert_int_equal(atomic_load(&c.ran), 0);

    /* Cancel after it ran: a no-op, from any thread. */
    lc_handle_t *h = NULL;
    assert_int_equal(lc_loop_call_soon_threadsafe(loop, cancel_victim_cb, &c, &h), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(atomic_load(&c.ran), 1);
    assert_int_equal(lc_handle_cancel(h), 0);
    lc_handle_unref(h);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
}

/* ---- posted calls and close ------------------------------------------------------------------ */

typedef struct {
    lc_call_t call;
    int status;
    int runs;
} msg_t;

static void msg_cb(lc_call_t *call, int status)
{
    msg_t *m = lc_container_of(call, msg_t, call);
    m->status = status;
    m->runs++;
}

static void test_threadsafe_post_runs_and_close_hands_back(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    msg_t ran = {.status = 99}, pending = {.status = 99}, late = {.status = 99};
    atomic_int dropped_runs = 0;
    assert_int_equal(lc_loop_post_threadsafe(loop, &ran.call, msg_cb), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(ran.runs, 1);
    assert_int_equal(ran.status, 0);
    /* The same struct may be posted again once its callback ran. */
    assert_int_equal(lc_loop_post_threadsafe(loop, &ran.call, msg_cb), 0);

    assert_int_equal(lc_loop_post_threadsafe(loop, &pending.call, msg_cb), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(lc_loop_call_soon_threadsafe(loop, count_cb, &dropped_runs, NULL), 0);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(pending.runs, 1);
    assert_int_equal(pending.status, LC_ECLOSED); /* handed back */
    assert_int_equal(ran.runs, 2);
    assert_int_equal(ran.status, LC_ECLOSED);
    assert_int_equal(atomic_load(&dropped_runs), 0); /* discarded without running, freed */
    lc_loop_threadsafe_stats_t st;
    assert_int_equal(lc_loop_get_threadsafe_stats(loop, &st), 0);
    assert_int_equal(st.discarded, 102);

    /* After close: refused, not taken. */
    assert_int_equal(lc_loop_post_threadsafe(loop, &late.call, msg_cb), LC_ECLOSED);
    assert_int_equal(late.runs, 0);
    lc_handle_t *h = (lc_handle_t *)1;
    assert_int_equal(lc_loop_call_soon_threadsafe(loop, count_cb, &dropped_runs, &h), LC_ECLOSED);
    assert_null(h);
    assert_int_equal(lc_loop_free(loop), 0);
}

/* ---- producers racing stop and close --------------------------------------------------------- */

typedef struct {
    lc_loop_t *loop;
    atomic_bool go;
    atomic_long runs;
    atomic_long handed_back;
    long posts[2], errors[2];
} race_t;

typedef struct {
    lc_call_t call;
    race_t *race;
} race_msg_t;

static void race_run_cb(void *arg) { atomic_fetch_add(&((race_t *)arg)->runs, 1); }

static void race_msg_cb(lc_call_t *call, int status)
{
    race_msg_t *m = lc_container_of(call, race_msg_t, call);
    if (status == 0)
        atomic_fetch_add(&m->race->runs, 1);
    else
        atomic_fetch_add(&m->race->handed_back, 1);
    free(m);
}

typedef struct {
    race_t *race;
    int id;
} racer_arg_t;

static void *racer_main(void *arg)
{
    racer_arg_t *a = arg;
    race_t *race = a->race;
    while (!atomic_load(&race->go))
        sched_yield();
    for (;;) {
        int r;
        race->posts[a->id]++;
        if (race->posts[a->id] & 1) {
            r = lc_loop_call_soon_threadsafe(race->loop, race_run_cb, race, NULL);
        } else {
            race_msg_t *m = malloc(sizeof(*m));
            m->race = race;
            r = lc_loop_post_threadsafe(race->loop, &m->call, race_msg_cb);
            if (r != 0)
                free(m); /* not taken: still ours */
        }
        if (r == LC_ECLOSED) {
            race->errors[a->id]++;
            break;
        }
        assert_int_equal(r, 0);
    }
    return NULL;
}

static void test_threadsafe_producers_race_close(void **state)
{
    (void)state;
    for (int round = 0; round < 5; round++) {
        lc_loop_t *loop = NULL;
        assert_int_equal(lc_new_event_loop(&loop), 0);
        race_t race = {.loop = loop};
        runner_t r;
        runner_start(&r, loop);
        pthread_t t[2];
        racer_arg_t args[2] = {{&race, 0}, {&race, 1}};
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&t[i], NULL, racer_main, &args[i]), 0);
        atomic_store(&race.go, true);
        usleep(20000 + round * 5000);
        runner_stop(&r);
        assert_int_equal(lc_loop_close(loop), 0); /* while the producers keep posting */
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_join(t[i], NULL), 0);
        lc_loop_threadsafe_stats_t st;
        assert_int_equal(lc_loop_get_threadsafe_stats(loop, &st), 0);
        long posts = race.posts[0] + race.posts[1];
        long errors = race.errors[0] + race.errors[1];
        /* Every post ran, was discarded by close, or was refused: none lost, none twice. */
        assert_int_equal(errors, 2);
        assert_int_equal(atomic_load(&race.runs) + (long)st.discarded + errors, posts);
        assert_true(atomic_load(&race.handed_back) <= (long)st.discarded);
        assert_int_equal(lc_loop_free(loop), 0);
    }
}

/* ---- recycled handles ------------------------------------------------------------------------ */

/* Producer threads that post and exit, round after round: every call runs, and nothing leaks
 * (the handles go round between the loop and the threads' caches, and a thread's cache is freed
 * when it exits; LSan checks that under --config=asan). */
typedef struct {
    lc_loop_t *loop;
    atomic_int *ran;
    int n;
} churn_t;

static void *churn_main(void *arg)
{
    churn_t *c = arg;
    for (int i = 0; i < c->n; i++) {
        lc_handle_t *h = NULL;
        /* Every 8th keeps a user reference, dropped at once (the loop may still hold its own) or
         * after a yield (the loop may have run it: then the release frees it). */
        assert_int_equal(
            lc_loop_call_soon_threadsafe(c->loop, count_cb, c->ran, (i & 7) == 0 ? &h : NULL), 0);
        if (h != NULL) {
            if (i & 8)
                sched_yield();
            lc_handle_unref(h);
        }
    }
    return NULL;
}

static void test_threadsafe_handles_recycled_by_exiting_threads(void **state)
{
    lc_loop_t *loop = *state;
    enum { ROUNDS = 8, THREADS = 4 };
    int per = 20000 / SCALE;
    atomic_int ran = 0;
    runner_t r;
    runner_start(&r, loop);
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t t[THREADS];
        churn_t c = {loop, &ran, per};
        for (int i = 0; i < THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, churn_main, &c), 0);
        for (int i = 0; i < THREADS; i++)
            assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    double t0 = now();
    while (atomic_load(&ran) < ROUNDS * THREADS * per && now() - t0 < 10)
        usleep(100);
    runner_stop(&r);
    assert_int_equal(atomic_load(&ran), ROUNDS * THREADS * per);
}

/* A thread takes a loop's finished handles into its cache, keeps them while that loop is closed
 * and freed, and posts them to another loop; its cache is freed when it exits. */
typedef struct {
    lc_loop_t *a, *b;
    atomic_int posted; /* the thread made its first post to a */
    atomic_int step;   /* 0: take from a; 1: a is closed; 2: a is freed */
    atomic_int ran_b;
    lc_handle_t *first;      /* the handle of its first post to a */
    lc_handle_t *top_before; /* a's return stack when the thread started */
    lc_handle_t *top_after;  /* a's return stack after that post */
    int closed_rc;           /* its post to a once a was closed */
} keeper_t;

static void wait_step(atomic_int *step, int want)
{
    double t0 = now();
    while (atomic_load(step) < want && now() - t0 < 10)
        usleep(100);
    assert_true(atomic_load(step) >= want);
}

static void *keeper_main(void *arg)
{
    keeper_t *k = arg;
    atomic_int dummy = 0;
    /* A fresh thread's cache is empty: this post takes a's whole return stack. */
    k->top_before = atomic_load_explicit(&k->a->ts_free, memory_order_relaxed);
    assert_int_equal(lc_loop_call_soon_threadsafe(k->a, count_cb, &dummy, &k->first), 0);
    k->top_after = atomic_load_explicit(&k->a->ts_free, memory_order_relaxed);
    lc_handle_unref(k->first); /* a is not running: a still holds it, queued */
    atomic_store(&k->posted, 1);
    wait_step(&k->step, 1);
    /* a is closed: refused, and the handle goes back to this thread's cache. */
    k->closed_rc = lc_loop_call_soon_threadsafe(k->a, count_cb, &dummy, NULL);
    wait_step(&k->step, 2);
    /* a is gone; its handles, now in this cache, carry posts to b. */
    for (int i = 0; i < 500; i++)
        assert_int_equal(lc_loop_call_soon_threadsafe(k->b, count_cb, &k->ran_b, NULL), 0);
    assert_int_equal(atomic_load(&dummy), 0);
    return NULL;
}

static void test_threadsafe_recycled_handles_outlive_their_loop(void **state)
{
    lc_loop_t *b = *state;
    lc_loop_t *a = NULL;
    assert_int_equal(lc_new_event_loop(&a), 0);
    /* 1000 posts from a thread that exits at once (its handles come from malloc), then a runs
     * them and keeps the finished handles for the producers. */
    atomic_int ran = 0;
    churn_t c = {a, &ran, 1000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn_main, &c), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(lc_loop_call_soon(a, lc_test_stop_cb, a, NULL), 0);
    assert_int_equal(lc_loop_run_forever(a), 0);
    assert_int_equal(atomic_load(&ran), 1000);
    lc_handle_t *top = atomic_load_explicit(&a->ts_free, memory_order_relaxed);
    assert_non_null(top); /* 1000 finished handles: some were published */

    keeper_t k = {.a = a, .b = b};
    atomic_init(&k.posted, 0);
    atomic_init(&k.step, 0);
    atomic_init(&k.ran_b, 0);
    assert_int_equal(pthread_create(&t, NULL, keeper_main, &k), 0);
    wait_step(&k.posted, 1);
    /* Reused: the thread's first handle was the top of a's stack, and it took the whole stack. */
    assert_ptr_equal(k.top_before, top);
    assert_ptr_equal(k.first, top);
    assert_null(k.top_after);

    assert_int_equal(lc_loop_close(a), 0); /* discards the queued post (its handle recycles) */
    atomic_store(&k.step, 1);
    usleep(10000);
    assert_int_equal(lc_loop_free(a), 0); /* frees a's stack; the thread's cache stays */
    atomic_store(&k.step, 2);
    assert_int_equal(pthread_join(t, NULL), 0); /* its cache is freed at exit */
    assert_int_equal(k.closed_rc, LC_ECLOSED);
    assert_int_equal(lc_loop_call_soon_threadsafe(b, lc_test_stop_cb, b, NULL), 0);
    assert_int_equal(lc_loop_run_forever(b), 0);
    assert_int_equal(atomic_load(&k.ran_b), 500);
}

/* ---- a producer preempted in its window ------------------------------------------------------ */

typedef struct {
    lc_call_t call;
    atomic_int runs;
} amsg_t;

static void amsg_cb(lc_call_t *call, int status)
{
    amsg_t *m = lc_container_of(call, amsg_t, call);
    assert_int_equal(status, 0);
    atomic_fetch_add(&m->runs, 1);
}

/* A push behind a node stalls between its exchange and its link (as a preempted producer does):
 * both nodes are hidden, and that push owes no wake-up. The sleeping loop must still find them
 * soon after the link lands, although nobody writes its eventfd (white-box: the stall is made by
 * hand with lc__loop_post()'s steps, minus the read of the sleeping flag). */
static void test_threadsafe_stalled_push_behind_node_is_found(void **state)
{
    lc_loop_t *loop = *state;
    runner_t r;
    runner_start(&r, loop);
    usleep(20000); /* asleep */
    amsg_t a, b;
    atomic_init(&a.runs, 0);
    atomic_init(&b.runs, 0);
    assert_int_equal(lc_loop_post_threadsafe(loop, &a.call, amsg_cb), 0); /* wakes the loop */
    /* b: count in, exchange, and stop before the link. */
    lc__call_priv *c = (lc__call_priv *)(void *)b.call._priv;
    c->q.kind = LC__K_POSTED;
    c->cb = amsg_cb;
    lc_mpsc_t *in = &lc__post_lane(loop)->q; /* this thread's lane, where a went */
    atomic_fetch_add(&in->prod_word, LC__POST_ONE);
    atomic_store_explicit(&c->q.mnode.next, NULL, memory_order_relaxed);
    lc_mpsc_node_t *prev = atomic_exchange(&in->_tail, &c->q.mnode);
    usleep(30000); /* the loop finds a's node held back (BUSY), and sleeps */
    assert_int_equal(atomic_load(&a.runs), 0);
    atomic_store_explicit(&prev->next, &c->q.mnode, memory_order_release); /* the link lands */
    double t0 = now();
    while (atomic_load(&b.runs) == 0 && now() - t0 < 5)
        usleep(100);
    double waited = now() - t0;
    runner_stop(&r);
    assert_int_equal(atomic_load(&a.runs), 1);
    assert_int_equal(atomic_load(&b.runs), 1);
    print_message("  stalled push found %.2f ms after its link\n", waited * 1e3);
    assert_true(waited < 1.0); /* bounded by LC__STALL_POLL (1 ms), with room for slow runs */
}

int main(void)
{
    /* The stress tests free millions of small blocks; with glibc's fast bins on, a later first
     * large malloc in a thread that inherits that arena spends seconds consolidating them, which
     * would show up as CPU use in the idle test. (Binaries use jemalloc; tests use the libc
     * allocator so that the sanitizers can replace it.) */
    mallopt(M_MXFAST, 0);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_threadsafe_wakes_sleeping_loop),
        T(test_threadsafe_runs_after_ready_callbacks),
        T(test_threadsafe_cancel_and_release_from_other_thread),
        cmocka_unit_test(test_threadsafe_post_runs_and_close_hands_back),
        cmocka_unit_test(test_threadsafe_producers_race_close),
        T(test_threadsafe_handles_recycled_by_exiting_threads),
        T(test_threadsafe_recycled_handles_outlive_their_loop),
        T(test_threadsafe_stalled_push_behind_node_is_found),
#undef T
    };
    return cmocka_run_group_tests_name("call_threadsafe", tests, NULL, NULL);
}
