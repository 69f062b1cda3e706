/* Validation and stress tests of the lock-free MPSC queue (threadsafe/mpsc.h).
 *
 * The threaded tests never call a CMocka assertion from a thread other than the test's own (its
 * longjmp would cross threads): workers only record, and the test thread checks after joining.
 * Each threaded test is bounded twice: its loops stop at a deadline with a message, and an
 * alarm() ends the process if something hangs anyway.
 *
 * Here: 4 producers, none lost, none duplicated, order kept, and the wake-up protocol. The
 * single-threaded tests are in test_mpsc.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "tests/threadsafe/mpsc_helpers.h"
#include "threadsafe/mpsc.h"

#if defined(__SANITIZE_THREAD__)
#define LC_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LC_TEST_TSAN 1
#endif
#endif

/* TSan makes every atomic operation a call into its runtime, and the test machine has 2 cores.
 * The full counts took 3 to 8 s under TSan there, but they also busy-poll, so under TSan they are
 * cut by 4 and 2 to stay well under a minute on a loaded CI machine. TSan checks the
 * happens-before graph of each access, so a million messages still cover every path. */
#ifdef LC_TEST_TSAN
#define STRESS_PER_PRODUCER 250000u
#define WAKE_BURSTS 10000u
#else
#define STRESS_PER_PRODUCER 1000000u
#define WAKE_BURSTS 20000u
#endif
#define STRESS_PRODUCERS 4u
#define WAKE_PRODUCERS 4u
#define WAKE_MAX_BURST 32u

/* Per-test bounds: a deadline checked by the loops, and alarm() behind it. */
#define TEST_DEADLINE_S 120.0
#define TEST_ALARM_S 200u

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000};

    nanosleep(&ts, NULL);
}

/* xorshift32: a cheap per-thread random source. */
static uint32_t next_rand(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}
/* ---- 4 producers x STRESS_PER_PRODUCER: none lost, none duplicated, per-producer order ---- */

typedef struct stress_producer_s {
    lc_mpsc_t *q;
    pthread_barrier_t *start;
    msg_t *msgs;
    uint32_t id;
    uint32_t count;
    size_t trues; /* pushes that returned true */
} stress_producer_t;

static void *stress_producer_main(void *arg)
{
    stress_producer_t *p = arg;

    pthread_barrier_wait(p->start);
    for (uint32_t i = 0; i < p->count; i++) {
        msg_t *m = &p->msgs[i];
        m->producer = p->id;
        m->seq = i;
        if (lc_mpsc_push(p->q, &m->link)) {
            p->trues++;
        }
        /* A million pushes can fit in one time slice: yield now and then, so that on 2 cores the
         * consumer drains while the producers push and not only after them. */
        if (i % 4096 == 4095) {
            sched_yield();
        }
    }
    return NULL;
}

static void test_mpsc_four_producers_none_lost_order_kept(void **state)
{
    static const size_t maxes[] = {1, 3, 64, 1024, SIZE_MAX};
    lc_mpsc_t *q = *state;
    stress_producer_t prod[STRESS_PRODUCERS];
    pthread_t tid[STRESS_PRODUCERS];
    uint32_t expected[STRESS_PRODUCERS] = {0};
    pthread_barrier_t start;
    const size_t total = (size_t)STRESS_PRODUCERS * STRESS_PER_PRODUCER;
    size_t received = 0, busy = 0, empty = 0, calls = 0, trues = 0;
    const char *error = NULL;
    lc_mpsc_status_t st;
    double t0, deadline;

    alarm(TEST_ALARM_S);
    assert_int_equal(pthread_barrier_init(&start, NULL, STRESS_PRODUCERS + 1), 0);
    for (uint32_t i = 0; i < STRESS_PRODUCERS; i++) {
        prod[i] =
            (stress_producer_t){.q = q, .start = &start, .id = i, .count = STRESS_PER_PRODUCER};
        prod[i].msgs = calloc(STRESS_PER_PRODUCER, sizeof(msg_t));
        assert_non_null(prod[i].msgs);
        assert_int_equal(pthread_create(&tid[i], NULL, stress_producer_main, &prod[i]), 0);
    }
    pthread_barrier_wait(&start);
    t0 = now_s();
    deadline = t0 + TEST_DEADLINE_S;

    while (received < total && error == NULL) {
        size_t max = maxes[calls++ % (sizeof(maxes) / sizeof(maxes[0]))];
        lc_mpsc_node_t *first, *last, *it;
        size_t n;

        if (max == 1) {
            first = last = lc_mpsc_pop(q, &st);
            n = first != NULL;
        } else {
            n = lc_mpsc_pop_batch(q, &first, &last, max, &st);
        }
        if (n > max || (n == max) != (st == LC_MPSC_OK)) {
            error = "count and status disagree";
            break;
        }
        it = first;
        for (size_t i = 0; i < n; i++) {
            if (it == NULL || msg_of(it)->producer >= STRESS_PRODUCERS) {
                error = "bad node in batch";
                break;
            }
            msg_t *m = msg_of(it);
            if (m->seq != expected[m->producer]) {
                error = m->seq < expected[m->producer] ? "duplicate or reordered message"
                                                       : "lost or reordered message";
                break;
            }
            expected[m->producer]++;
            received++;
            if (i == n - 1 && (it != last || lc_mpsc_batch_next(it) != NULL)) {
                error = "batch not terminated at last";
                break;
            }
            it = lc_mpsc_batch_next(it);
        }
        if (n == 0) {
            if (st == LC_MPSC_BUSY) {
                busy++;
            } else {
                empty++;
            }
            /* Nothing visible: let the producers run (2 cores, 5 threads). */
            lc_mpsc_cpu_relax();
            if ((busy + empty) % 64 == 0) {
                sched_yield();
            }
            if (now_s() > deadline) {
                error = "deadline passed before every message arrived";
            }
        }
    }

    for (uint32_t i = 0; i < STRESS_PRODUCERS; i++) {
        pthread_join(tid[i], NULL);
        trues += prod[i].trues;
    }
    if (error == NULL) {
        /* Every producer is done: nothing may be left, and nothing may be in a window. */
        assert_null(lc_mpsc_pop(q, &st));
        assert_int_equal(st, LC_MPSC_EMPTY);
        assert_true(lc_mpsc_empty(q));
    }
    print_message("%zu messages in %.3f s, %zu pop calls (%zu empty, %zu busy), "
                  "%zu pushes returned true\n",
                  received, now_s() - t0, calls, empty, busy, trues);
    for (uint32_t i = 0; i < STRESS_PRODUCERS; i++) {
        free(prod[i].msgs);
    }
    pthread_barrier_destroy(&start);
    alarm(0);

    if (error != NULL) {
        fail_msg("%s (after %zu of %zu messages)", error, received, total);
    }
    assert_int_equal(received, total);
    for (uint32_t i = 0; i < STRESS_PRODUCERS; i++) {
        assert_int_equal(expected[i], STRESS_PER_PRODUCER);
    }
    assert_true(trues >= 1);
}

/* ---- the wake-up protocol: sleep on EMPTY, signal only on a true push ---- */

typedef struct wake_s {
    lc_mpsc_t *q;
    int efd;
    atomic_uint producers_done;
    atomic_size_t signals; /* eventfd writes, one per true push */
} wake_t;

typedef struct wake_producer_s {
    wake_t *w;
    pthread_barrier_t *start;
    msg_t *msgs;
    uint8_t *bursts; /* sizes, 1..WAKE_MAX_BURST */
    uint32_t id;
    uint32_t count;
    uint32_t seed;
    int error; /* errno of a failed eventfd write */
} wake_producer_t;

static void *wake_producer_main(void *arg)
{
    wake_producer_t *p = arg;
    uint32_t seq = 0;

    pthread_barrier_wait(p->start);
    for (uint32_t b = 0; b < WAKE_BURSTS; b++) {
        for (uint32_t k = 0; k < p->bursts[b]; k++, seq++) {
            msg_t *m = &p->msgs[seq];
            m->producer = p->id;
            m->seq = seq;
            if (lc_mpsc_push(p->w->q, &m->link)) {
                /* The empty -> non-empty transition: this push owes the wake-up. */
                if (eventfd_write(p->w->efd, 1) != 0) {
                    p->error = errno;
                }
                atomic_fetch_add_explicit(&p->w->signals, 1, memory_order_relaxed);
            }
        }
        /* Pauses of every length, so that bursts land while the consumer drains, while it is
         * between EMPTY and its sleep, and while it sleeps. */
        switch (next_rand(&p->seed) % 4) {
        case 0:
            break;
        case 1:
            sched_yield();
            break;
        default:
            sleep_us(1 + next_rand(&p->seed) % 50);
            break;
        }
    }
    /* release: the last signal was written before this; pairs with the consumer's acquire. */
    atomic_fetch_add_explicit(&p->w->producers_done, 1, memory_order_release);
    return NULL;
}

static void test_mpsc_wakeup_protocol_strands_nothing(void **state)
{
    lc_mpsc_t *q = *state;
    wake_t w = {.q = q};
    wake_producer_t prod[WAKE_PRODUCERS];
    pthread_t tid[WAKE_PRODUCERS];
    uint32_t expected[WAKE_PRODUCERS] = {0};
    pthread_barrier_t start;
    size_t total = 0, received = 0;
    size_t sleeps = 0, wakeups = 0, empty_wakeups = 0, busy_resched = 0, timeouts = 0;
    uint32_t seed = 0x9e3779b9u, spins = 0;
    const char *error = NULL;
    double t0, deadline;

    alarm(TEST_ALARM_S);
    w.efd = eventfd(0, EFD_CLOEXEC);
    assert_true(w.efd >= 0);
    assert_int_equal(pthread_barrier_init(&start, NULL, WAKE_PRODUCERS + 1), 0);
    for (uint32_t i = 0; i < WAKE_PRODUCERS; i++) {
        prod[i] = (wake_producer_t){.w = &w, .start = &start, .id = i, .seed = 17 + i};
        prod[i].bursts = malloc(WAKE_BURSTS);
        assert_non_null(prod[i].bursts);
        for (uint32_t b = 0; b < WAKE_BURSTS; b++) {
            prod[i].bursts[b] = (uint8_t)(1 + next_rand(&prod[i].seed) % WAKE_MAX_BURST);
            prod[i].count += prod[i].bursts[b];
        }
        total += prod[i].count;
        prod[i].msgs = calloc(prod[i].count, sizeof(msg_t));
        assert_non_null(prod[i].msgs);
        assert_int_equal(pthread_create(&tid[i], NULL, wake_producer_main, &prod[i]), 0);
    }
    pthread_barrier_wait(&start);
    t0 = now_s();
    deadline = t0 + TEST_DEADLINE_S;

    /* The consumer as the loop runs it: drain until EMPTY, then sleep on the eventfd. */
    for (;;) {
        lc_mpsc_status_t st = LC_MPSC_OK;
        size_t got = 0;

        while (st == LC_MPSC_OK && error == NULL) {
            lc_mpsc_node_t *first, *it;
            size_t n = lc_mpsc_pop_batch(q, &first, NULL, 16, &st);

            got += n;
            it = first;
            for (size_t i = 0; i < n; i++, it = lc_mpsc_batch_next(it)) {
                msg_t *m = msg_of(it);
                if (m->producer >= WAKE_PRODUCERS || m->seq != expected[m->producer]) {
                    error = "lost, duplicated or reordered message";
                    break;
                }
                expected[m->producer]++;
            }
        }
        received += got;
        if (error != NULL) {
            break;
        }
        if (st == LC_MPSC_BUSY) {
            /* A producer is in its window: spin briefly, then "reschedule" (yield and look again),
             * and never sleep on the eventfd, since its push may have owed no signal. */
            if (++spins < 100) {
                lc_mpsc_cpu_relax();
            } else {
                spins = 0;
                busy_resched++;
                sched_yield();
            }
            continue;
        }
        spins = 0;
        /* EMPTY. */
        if (received == total) {
            break;
        }
        /* Sometimes dawdle between EMPTY and the sleep, so that pushes land in that gap. */
        if (next_rand(&seed) % 8 == 0) {
            sleep_us(20);
        }
        sleeps++;
        struct pollfd pfd = {.fd = w.efd, .events = POLLIN};
        int pr = poll(&pfd, 1, 2000);
        if (pr == 0) {
            timeouts++;
            /* acquire: pairs with the producers' release; their signals are all written. */
            if (atomic_load_explicit(&w.producers_done, memory_order_acquire) == WAKE_PRODUCERS) {
                error = lc_mpsc_empty(q) ? "messages lost: queue empty, some never received"
                                         : "message stranded: queue not empty, no wake-up came";
                break;
            }
            if (now_s() > deadline) {
                error = "deadline passed before every message arrived";
                break;
            }
            continue;
        }
        if (pr < 0) {
            if (errno == EINTR) {
                continue;
            }
            error = "poll failed";
            break;
        }
        /* Reset the signal before draining, never after (see mpsc.h). */
        eventfd_t v;
        if (eventfd_read(w.efd, &v) != 0) {
            error = "eventfd_read failed";
            break;
        }
        wakeups++;
        /* Was the wake-up spurious? Peek: the drain above counts it again properly. */
        if (lc_mpsc_empty(q)) {
            empty_wakeups++;
        }
    }

    for (uint32_t i = 0; i < WAKE_PRODUCERS; i++) {
        pthread_join(tid[i], NULL);
    }
    print_message("%zu messages in %.3f s: %zu signals, %zu sleeps, %zu wake-ups "
                  "(%zu found the queue empty), %zu busy reschedules, %zu poll timeouts\n",
                  received, now_s() - t0, atomic_load(&w.signals), sleeps, wakeups, empty_wakeups,
                  busy_resched, timeouts);
    for (uint32_t i = 0; i < WAKE_PRODUCERS; i++) {
        if (prod[i].error != 0 && error == NULL) {
            error = "eventfd_write failed";
        }
        if (error == NULL && expected[i] != prod[i].count) {
            error = "a producer's messages are missing";
        }
        free(prod[i].msgs);
        free(prod[i].bursts);
    }
    if (error == NULL) {
        assert_null(lc_mpsc_pop(q, NULL));
        assert_true(lc_mpsc_empty(q));
    }
    close(w.efd);
    pthread_barrier_destroy(&start);
    alarm(0);

    if (error != NULL) {
        fail_msg("%s (after %zu of %zu messages)", error, received, total);
    }
    assert_int_equal(received, total);
    /* The protocol was exercised: the consumer slept, and only true pushes woke it. */
    assert_true(sleeps > 0);
    assert_true(atomic_load(&w.signals) >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mpsc_four_producers_none_lost_order_kept, setup_queue,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_mpsc_wakeup_protocol_strands_nothing, setup_queue,
                                        teardown_queue),
    };

    return cmocka_run_group_tests_name("mpsc_threads", tests, NULL, NULL);
}
