/* Group membership and the default executor (rules 2 and 3 of include/loopcore/executor.h): a
 * loop belongs to a group because the group made it (lc_loop_group()), never because of the name
 * of the thread that runs it.
 *
 * CMocka assertions run on the test's thread only: the probe threads record what they saw, and
 * the test checks it after pthread_join(). Every test arms a watchdog. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "loopcore.h"
#include "tests/support/loop_fixture.h"

#define WATCHDOG_S 60u

static int setup(void **state)
{
    lc_test_watchdog(WATCHDOG_S);
    return lc_test_loop_setup(state);
}

static int teardown(void **state)
{
    int r = lc_test_loop_teardown(state);
    alarm(0);
    return r;
}

static int current_job(void *arg, void **result)
{
    (void)arg;
    *result = lc_executor_current();
    return 0;
}

/* Submits from inside the running loop, as a loop's own code does (the thread then runs it). */
typedef struct {
    lc_loop_t *loop;
    lc_future_t *job;  /* run_in_executor's future */
    lc_future_t *done; /* resolved with the executor the job ran on, or failed */
} submit_t;

static void job_done(lc_future_t *fut, void *arg)
{
    submit_t *s = arg;
    void *ex = NULL;
    int r = lc_future_result(fut, &ex);
    if (r == 0)
        lc_future_set_result(s->done, ex);
    else
        lc_future_set_error(s->done, r);
}

static void submit_cb(void *arg)
{
    submit_t *s = arg;
    int r = lc_loop_run_in_executor(s->loop, NULL, current_job, NULL, &s->job);
    if (r == 0)
        r = lc_future_add_done_callback(s->job, job_done, s);
    if (r != 0)
        lc_future_set_error(s->done, r);
}

/* The executor that run_in_executor(loop, NULL, ...), called inside the running loop, ran a job
 * on; NULL on any error. No CMocka assertions: probe threads call it. */
static lc_executor_t *default_of(lc_loop_t *loop)
{
    submit_t s = {.loop = loop};
    void *ex = NULL;
    if (lc_loop_create_future(loop, &s.done) != 0)
        return NULL;
    if (lc_loop_call_soon(loop, submit_cb, &s, NULL) != 0 ||
        lc_loop_run_until_complete(loop, s.done, &ex) != 0)
        ex = NULL;
    lc_future_unref(s.done);
    if (s.job != NULL)
        lc_future_unref(s.job);
    return ex;
}

/* ---- Membership ------------------------------------------------------------------------------ */

static void test_default_executor_loop_group_is_set_by_the_group(void **state)
{
    lc_loop_t *standalone = *state;
    assert_null(lc_loop_group(standalone));
    assert_null(lc_loop_group(NULL));

    lc_group_t *g;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    for (unsigned i = 0; i < lc_group_size(g); i++)
        assert_ptr_equal(lc_loop_group(lc_group_loop(g, i)), g); /* before start */
    assert_int_equal(lc_group_start(g), 0);
    for (unsigned i = 0; i < lc_group_size(g); i++)
        assert_ptr_equal(lc_loop_group(lc_group_loop(g, i)), g);
    assert_int_equal(lc_group_free(g), 0);
    assert_null(lc_loop_group(standalone));
}

/* ---- A user thread named like a group's ------------------------------------------------------ */

/* What a thread saw of the default executor of a loop it made and ran itself. */
typedef struct {
    const char *name; /* the name the thread gives itself; NULL keeps the inherited one */
    char seen_name[16];
    bool in_group;    /* lc_loop_group(loop) != NULL */
    bool got;         /* the default executor ran both jobs... */
    bool reused;      /* ...the same one both times */
    int other_status; /* another loop's run_in_executor on that executor */
    int errors;       /* loop creation, runs and closes that failed */
} probe_t;

static void *probe_thread(void *arg)
{
    probe_t *p = arg;
    if (p->name != NULL && pthread_setname_np(pthread_self(), p->name) != 0)
        p->errors++;
    if (pthread_getname_np(pthread_self(), p->seen_name, sizeof(p->seen_name)) != 0)
        p->errors++;
    lc_loop_t *loop, *other;
    if (lc_new_event_loop(&loop) != 0) {
        p->errors++;
        return NULL;
    }
    if (lc_new_event_loop(&other) != 0) {
        p->errors++;
        lc_loop_free(loop);
        return NULL;
    }
    p->in_group = lc_loop_group(loop) != NULL;
    lc_executor_t *first = default_of(loop), *second = default_of(loop);
    p->got = first != NULL && second != NULL;
    p->reused = p->got && first == second;
    /* Rule 3: an executor a loop owns serves that loop only (LC_EINVAL elsewhere); the shared
     * default of rule 2 would serve any loop. */
    lc_future_t *fut = NULL;
    p->other_status = lc_loop_run_in_executor(other, first, current_job, NULL, &fut);
    if (fut != NULL) {
        void *ignored;
        lc_loop_run_until_complete(other, fut, &ignored);
        lc_future_unref(fut);
    }
    if (lc_loop_close(other) != 0 || lc_loop_close(loop) != 0)
        p->errors++;
    lc_loop_free(other);
    lc_loop_free(loop);
    return NULL;
}

static void run_probe(probe_t *p)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, probe_thread, p), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(p->errors, 0);
}

static void test_default_executor_thread_named_lc_loop_is_not_a_group(void **state)
{
    (void)state;
    probe_t named = {.name = "lc-loop-7"}, plain = {.name = NULL};
    run_probe(&named);
    run_probe(&plain);
    assert_string_equal(named.seen_name, "lc-loop-7");
    assert_true(strncmp(plain.seen_name, "lc-loop-", 8) != 0);
    /* A standalone loop (rule 3), whatever its thread is called: it owns its default. */
    assert_false(plain.in_group);
    assert_true(plain.got);
    assert_true(plain.reused);
    assert_int_equal(plain.other_status, LC_EINVAL);
    assert_int_equal(named.in_group, plain.in_group);
    assert_int_equal(named.got, plain.got);
    assert_int_equal(named.reused, plain.reused);
    assert_int_equal(named.other_status, plain.other_status);
}

/* ---- A group's loop run by another thread ---------------------------------------------------- */

/* Rule 2 holds for a group's loop whichever thread runs it: here the test's own thread, before
 * the group starts. Both loops share the process-wide default, which serves other loops too. */
static void test_default_executor_group_loop_shares_whichever_thread(void **state)
{
    lc_loop_t *standalone = *state;
    lc_group_t *g;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    lc_executor_t *ex0 = default_of(lc_group_loop(g, 0));
    lc_executor_t *ex1 = default_of(lc_group_loop(g, 1));
    assert_non_null(ex0);
    assert_ptr_equal(ex0, ex1);
    lc_future_t *fut;
    assert_int_equal(lc_loop_run_in_executor(standalone, ex0, current_job, NULL, &fut), 0);
    void *ran_on = NULL;
    assert_int_equal(lc_loop_run_until_complete(standalone, fut, &ran_on), 0);
    lc_future_unref(fut);
    assert_ptr_equal(ran_on, ex0);
    assert_int_equal(lc_executor_default_shutdown(false), 0);
    assert_int_equal(lc_group_free(g), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_executor_loop_group_is_set_by_the_group, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_default_executor_thread_named_lc_loop_is_not_a_group,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_executor_group_loop_shares_whichever_thread,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
