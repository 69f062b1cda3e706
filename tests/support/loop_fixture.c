#include "tests/support/loop_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lc_test_loop_setup(void **state)
{
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    *state = loop;
    return 0;
}

int lc_test_loop_teardown(void **state)
{
    lc_loop_t *loop = *state;
    assert_int_equal(lc_loop_close(loop), 0);
    assert_true(lc_loop_is_closed(loop));
    assert_int_equal(lc_loop_free(loop), 0);
    return 0;
}

void lc_test_log_push(lc_test_log_t *log, int v)
{
    assert_true(log->n < (int)(sizeof(log->items) / sizeof(log->items[0])));
    log->items[log->n++] = v;
}

void lc_test_log_cb(void *arg)
{
    lc_test_event_t *ev = arg;
    lc_test_log_push(ev->log, ev->value);
}

void lc_test_log_done_cb(lc_future_t *fut, void *arg)
{
    (void)fut;
    lc_test_log_cb(arg);
}

void lc_test_stop_cb(void *arg) { lc_loop_stop(arg); }

void lc_test_assert_log(const lc_test_log_t *log, const int *expected, int n)
{
    if (log->n != n || memcmp(log->items, expected, (size_t)n * sizeof(int)) != 0) {
        char buf[2048];
        int k = snprintf(buf, sizeof(buf), "log [");
        for (int i = 0; i < log->n && k < (int)sizeof(buf) - 16; i++)
            k += snprintf(buf + k, sizeof(buf) - k, "%s%d", i ? "," : "", log->items[i]);
        k += snprintf(buf + k, sizeof(buf) - k, "] expected [");
        for (int i = 0; i < n && k < (int)sizeof(buf) - 16; i++)
            k += snprintf(buf + k, sizeof(buf) - k, "%s%d", i ? "," : "", expected[i]);
        snprintf(buf + k, sizeof(buf) - k, "]");
        fail_msg("%s", buf);
    }
}

static void watchdog_fired(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: test exceeded its time bound\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
        /* nothing more to do */
    }
    abort();
}

void lc_test_watchdog(unsigned seconds)
{
    /* LC_TEST_FILTER=pattern runs only the matching tests (cmocka's wildcard filter). */
    const char *filter = getenv("LC_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    signal(SIGALRM, watchdog_fired);
    alarm(seconds);
}
