/* Helpers of the loop group tests: see group_helpers.h. */
#include "tests/threadsafe/group_helpers.h"

#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_S 120u

int setup(void **state)
{
    (void)state;
    lc_test_watchdog(WATCHDOG_S);
    return 0;
}

int teardown(void **state)
{
    (void)state;
    alarm(0);
    return 0;
}

void waiter_init(waiter_t *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->count = 0;
}

void waiter_add(waiter_t *w)
{
    pthread_mutex_lock(&w->mu);
    w->count++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void waiter_wait(waiter_t *w, unsigned count)
{
    pthread_mutex_lock(&w->mu);
    while (w->count < count)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

void waiter_destroy(waiter_t *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int record_fn(lc_loop_t *target, void *arg, void **result)
{
    seen_t *s = arg;
    lc_get_running_loop(&s->running);
    s->thread = pthread_self();
    s->cpu = sched_getcpu();
    cpu_set_t set;
    CPU_ZERO(&set);
    pthread_getaffinity_np(pthread_self(), sizeof(set), &set);
    s->affinity_n = CPU_COUNT(&set);
    s->affinity_cpu = -1;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &set)) {
            s->affinity_cpu = c;
            break;
        }
    }
    pthread_getname_np(pthread_self(), s->name, sizeof(s->name));
    *result = target;
    return 0;
}

int value_fn(lc_loop_t *target, void *arg, void **result)
{
    submit_state_t *ss = arg;
    record_fn(target, &ss->at_target, result);
    *result = (void *)(uintptr_t)0x5eed;
    return 0;
}
