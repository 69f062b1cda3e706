/* Error codes, the exception-handler API and debug mode. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

/* ---- stderr capture -------------------------------------------------------------------------- */

typedef struct {
    int saved;
    FILE *tmp;
} capture_t;

static void capture_begin(capture_t *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved = dup(2);
    assert_true(dup2(fileno(c->tmp), 2) >= 0);
}

/* Restores stderr and returns what was written (caller frees). */
static char *capture_end(capture_t *c)
{
    fflush(stderr);
    assert_true(dup2(c->saved, 2) >= 0);
    close(c->saved);
    long n = ftell(c->tmp);
    char *buf = calloc(1, (size_t)n + 1);
    rewind(c->tmp);
    assert_int_equal(fread(buf, 1, (size_t)n, c->tmp), (size_t)n);
    fclose(c->tmp);
    return buf;
}

/* ---- error codes ----------------------------------------------------------------------------- */

static void test_errors_strerror_and_names(void **state)
{
    (void)state;
    assert_string_equal(lc_strerror(LC_ECLOSED), "Event loop is closed");
    assert_string_equal(lc_err_name(LC_ECLOSED), "LC_ECLOSED");
    assert_string_equal(lc_strerror(LC_ERUNNING), "This event loop is already running");
    assert_string_equal(lc_strerror(LC_ESTOPPED), "Event loop stopped before Future completed.");
    assert_string_equal(lc_err_name(LC_ECANCELLED), "LC_ECANCELLED");
    assert_string_equal(lc_err_name(LC_EINVAL), "EINVAL");
    assert_string_equal(lc_strerror(LC_EINVAL), "invalid argument");
    assert_string_equal(lc_err_name(-ECONNRESET), "ECONNRESET");
    assert_string_equal(lc_strerror(0), "success");
    assert_string_equal(lc_strerror(-99999), "unknown error");
    assert_string_equal(lc_err_name(12345), "UNKNOWN");
    /* Every loopcore code has its own text. */
    for (int code = LC_ESSLSHUTDOWNTIMEOUT; code <= LC_ECANCELLED; code++) {
        assert_string_not_equal(lc_strerror(code), "unknown error");
        assert_true(strncmp(lc_err_name(code), "LC_E", 4) == 0);
    }
}

/* Every LC_E... name that a public header mentions (tests/engine/gen_public_error_codes.sh writes
 * the list at build time, from the headers, against loopcore/errno.h alone). */
typedef struct {
    const char *name, *header;
    int defined, value;
} lc_test_public_code;
extern const lc_test_public_code lc_test_public_codes[];
extern const size_t lc_test_public_codes_len;

static void test_errors_every_code_in_the_headers_is_defined_with_a_text(void **state)
{
    (void)state;
    /* The scan found the codes (errno.h alone defines 20). */
    assert_true(lc_test_public_codes_len >= 20);
    int bad = 0;
    for (size_t i = 0; i < lc_test_public_codes_len; i++) {
        const lc_test_public_code *c = &lc_test_public_codes[i];
        if (!c->defined) {
            print_error("%s is named in %s but not defined in include/loopcore/errno.h\n", c->name,
                        c->header);
            bad++;
            continue;
        }
        const char *text = lc_strerror(c->value);
        if (c->value >= 0 || strcmp(text, "unknown error") == 0 ||
            strncmp(text, "Unknown system error", 20) == 0 ||
            strcmp(lc_err_name(c->value), "UNKNOWN") == 0) {
            print_error("%s (%d, named in %s) has no lc_strerror() text: \"%s\"\n", c->name,
                        c->value, c->header, text);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* ---- exception handler ----------------------------------------------------------------------- */

typedef struct {
    int calls;
    lc_exception_context_t last;
    char message[256];
    lc_loop_t *loop;
} seen_t;

static void record_handler(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    seen_t *s = arg;
    s->calls++;
    s->last = *ctx;
    s->loop = loop;
    snprintf(s->message, sizeof(s->message), "%s", ctx->message);
}

static void test_errors_custom_handler_gets_context_unchanged(void **state)
{
    lc_loop_t *loop = *state;
    seen_t seen = {0};
    void *arg = (void *)1;
    assert_null(lc_loop_get_exception_handler(loop, &arg));
    assert_null(arg);
    assert_int_equal(lc_loop_set_exception_handler(loop, record_handler, &seen), 0);
    assert_ptr_equal(lc_loop_get_exception_handler(loop, &arg), record_handler);
    assert_ptr_equal(arg, &seen);

    int proto, transport;
    lc_exception_context_t ctx = LC_EXCEPTION_CONTEXT_INIT("foo");
    ctx.error = -ECONNRESET;
    ctx.protocol = &proto;
    ctx.transport = &transport;
    ctx.socket = 7;
    assert_int_equal(lc_loop_call_exception_handler(loop, &ctx), 0);
    assert_int_equal(seen.calls, 1);
    assert_ptr_equal(seen.loop, loop);
    assert_string_equal(seen.message, "foo");
    assert_int_equal(seen.last.error, -ECONNRESET);
    assert_ptr_equal(seen.last.protocol, &proto);
    assert_ptr_equal(seen.last.transport, &transport);
    assert_int_equal(seen.last.socket, 7);
    assert_null(seen.last.future);
    assert_null(seen.last.handle);

    assert_int_equal(lc_loop_call_exception_handler(loop, NULL), LC_EINVAL);
    assert_int_equal(lc_loop_call_exception_handler(NULL, &ctx), LC_EINVAL);
    assert_int_equal(lc_loop_set_exception_handler(NULL, record_handler, NULL), LC_EINVAL);

    /* NULL restores the default. */
    assert_int_equal(lc_loop_set_exception_handler(loop, NULL, &seen), 0);
    assert_null(lc_loop_get_exception_handler(loop, &arg));
    capture_t c;
    capture_begin(&c);
    assert_int_equal(lc_loop_call_exception_handler(loop, &ctx), 0);
    char *out = capture_end(&c);
    assert_int_equal(seen.calls, 1);
    assert_non_null(strstr(out, "foo\n"));
    free(out);
}

static void test_errors_default_handler_prints_sorted_keys(void **state)
{
    lc_loop_t *loop = *state;
    int proto;
    lc_exception_context_t ctx = LC_EXCEPTION_CONTEXT_INIT("Fatal read error on socket transport");
    ctx.error = -ECONNRESET;
    ctx.protocol = &proto;
    ctx.socket = 9;
    capture_t c;
    capture_begin(&c);
    lc_loop_default_exception_handler(loop, &ctx);
    char *out = capture_end(&c);
    const char *m = strstr(out, "Fatal read error on socket transport");
    const char *p = strstr(out, "protocol: ");
    const char *s = strstr(out, "socket: <fd 9>");
    const char *e = strstr(out, "ECONNRESET");
    assert_non_null(m);
    assert_non_null(p);
    assert_non_null(s);
    assert_non_null(e);
    assert_true(m < p && p < s);
    free(out);
}

/* ---- debug mode ------------------------------------------------------------------------------ */

static void test_errors_debug_from_environment(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(setenv("LOOPCORE_DEBUG", "1", 1), 0);
    assert_int_equal(lc_new_event_loop(&loop), 0);
    assert_true(lc_loop_get_debug(loop));
    assert_int_equal(lc_loop_set_debug(loop, false), 0);
    assert_false(lc_loop_get_debug(loop));
    assert_int_equal(lc_loop_free(loop), 0);

    assert_int_equal(setenv("LOOPCORE_DEBUG", "", 1), 0);
    assert_int_equal(lc_new_event_loop(&loop), 0);
    assert_false(lc_loop_get_debug(loop));
    assert_int_equal(lc_loop_free(loop), 0);
    assert_int_equal(unsetenv("LOOPCORE_DEBUG"), 0);
    assert_int_equal(lc_new_event_loop(&loop), 0);
    assert_false(lc_loop_get_debug(loop));
    assert_true(lc_loop_get_slow_callback_duration(loop) == 0.1);
    assert_int_equal(lc_loop_set_slow_callback_duration(loop, -1), LC_EINVAL);
    assert_int_equal(lc_loop_free(loop), 0);
}

static void sleep_cb(void *arg)
{
    long ms = (long)(intptr_t)arg;
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_errors_slow_callback_logged_in_debug_only(void **state)
{
    lc_loop_t *loop = *state;
    assert_int_equal(lc_loop_set_slow_callback_duration(loop, 0.02), 0);

    capture_t c;
    capture_begin(&c);
    assert_int_equal(lc_loop_call_soon(loop, sleep_cb, (void *)(intptr_t)30, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    char *out = capture_end(&c);
    assert_null(strstr(out, "Executing")); /* debug off */
    free(out);

    assert_int_equal(lc_loop_set_debug(loop, true), 0);
    capture_begin(&c);
    assert_int_equal(lc_loop_call_soon(loop, sleep_cb, (void *)(intptr_t)30, NULL), 0);
    assert_int_equal(lc_loop_call_soon(loop, sleep_cb, (void *)(intptr_t)1, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    out = capture_end(&c);
    const char *first = strstr(out, "Executing <Handle");
    assert_non_null(first);
    assert_non_null(strstr(first, "seconds"));
    assert_null(strstr(first + 1, "Executing")); /* the 1 ms callback is not logged */
    free(out);
}

typedef struct {
    lc_loop_t *loop;
    int soon, later, at, future;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready, done;
} foreign_t;

static void *foreign_thread(void *arg)
{
    foreign_t *f = arg;
    pthread_mutex_lock(&f->mu);
    while (!f->ready)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    f->soon = lc_loop_call_soon(f->loop, sleep_cb, NULL, NULL);
    f->later = lc_loop_call_later(f->loop, 0, sleep_cb, NULL, NULL);
    f->at = lc_loop_call_at(f->loop, 0, sleep_cb, NULL, NULL);
    lc_future_t *fut = NULL;
    f->future = lc_loop_create_future(f->loop, &fut);
    pthread_mutex_lock(&f->mu);
    f->done = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Runs on the loop thread: lets the foreign thread make its calls while the loop runs, waits. */
static void host_cb(void *arg)
{
    foreign_t *f = arg;
    pthread_mutex_lock(&f->mu);
    f->ready = true;
    pthread_cond_signal(&f->cv);
    while (!f->done)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    lc_loop_stop(f->loop);
}

static void test_errors_debug_reports_foreign_thread_calls(void **state)
{
    lc_loop_t *loop = *state;
    seen_t seen = {0};
    assert_int_equal(lc_loop_set_exception_handler(loop, record_handler, &seen), 0);
    assert_int_equal(lc_loop_set_debug(loop, true), 0);
    assert_int_equal(lc_loop_set_slow_callback_duration(loop, 10), 0);
    foreign_t f = {.loop = loop};
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, foreign_thread, &f), 0);
    assert_int_equal(lc_loop_call_soon(loop, host_cb, &f, NULL), 0);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(f.soon, LC_EWRONGTHREAD);
    assert_int_equal(f.later, LC_EWRONGTHREAD);
    assert_int_equal(f.at, LC_EWRONGTHREAD);
    assert_int_equal(f.future, LC_EWRONGTHREAD);
    assert_int_equal(seen.calls, 4);
    assert_int_equal(seen.last.error, LC_EWRONGTHREAD);
    assert_non_null(strstr(seen.message, "Non-thread-safe operation"));
    /* Nothing was queued: a stop-first run has nothing to do and the loop is healthy. */
    lc_test_log_t log = {0};
    lc_test_event_t ev = {&log, 1};
    assert_int_equal(lc_loop_call_soon(loop, lc_test_log_cb, &ev, NULL), 0);
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    lc_test_assert_log(&log, (int[]){1}, 1);
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
}

int main(void)
{
    lc_test_watchdog(60);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        cmocka_unit_test(test_errors_strerror_and_names),
        cmocka_unit_test(test_errors_every_code_in_the_headers_is_defined_with_a_text),
        T(test_errors_custom_handler_gets_context_unchanged),
        T(test_errors_default_handler_prints_sorted_keys),
        cmocka_unit_test(test_errors_debug_from_environment),
        T(test_errors_slow_callback_logged_in_debug_only),
        T(test_errors_debug_reports_foreign_thread_calls),
#undef T
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
