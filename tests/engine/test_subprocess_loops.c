/* Several loops spawning at the same moment: 4 threads, one loop each, start together and each
 * spawns 200 children at once (three pipes each). Every child's output and exit status reach
 * the loop that spawned it, on that loop's thread; no zombie is left; and a child the test
 * spawned itself (not through loopcore) is not reaped by loopcore: the test's own waitpid still
 * gets its status. argv[1] is the test child (tests/engine/subprocess_child.c). */
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

#define NLOOPS 4
#define NCHILD 200

static const char *child_path;
static pthread_barrier_t start_barrier;

typedef struct loop_ctx_s loop_ctx_t;

typedef struct {
    loop_ctx_t *ctx;
    int id; /* loop * 1000 + i: the child prints it and exits with id % 256 */
    lc_subprocess_transport_t *t;
    char out[16];
    size_t out_len;
    int exited, lost, rc, wrong_thread;
} child_t;

struct loop_ctx_s {
    int index;
    lc_loop_t *loop;
    pthread_t thread;
    child_t children[NCHILD];
    int lost_total;
    int errors; /* failures seen on the thread (cmocka asserts only on the main thread) */
    char first_error[128];
};

static void note_error(loop_ctx_t *c, const char *what, int v)
{
    if (c->errors++ == 0)
        snprintf(c->first_error, sizeof(c->first_error), "%s: %d", what, v);
}

static void c_made(lc_subprocess_transport_t *t, void *user)
{
    child_t *ch = user;
    ch->t = t;
    lc_subprocess_transport_ref(t);
}

static void check_thread(child_t *ch)
{
    if (!pthread_equal(pthread_self(), ch->ctx->thread))
        ch->wrong_thread++;
}

static void c_data(lc_subprocess_transport_t *t, int fd, const char *data, size_t len, void *user)
{
    child_t *ch = user;
    check_thread(ch);
    if (fd != 1 || ch->out_len + len >= sizeof(ch->out)) {
        note_error(ch->ctx, "unexpected output on fd", fd);
        return;
    }
    memcpy(ch->out + ch->out_len, data, len);
    ch->out_len += len;
}

static void c_exited(lc_subprocess_transport_t *t, void *user)
{
    child_t *ch = user;
    check_thread(ch);
    ch->exited++;
    if (lc_subprocess_transport_get_returncode(t, &ch->rc) != 0)
        note_error(ch->ctx, "no returncode in process_exited", ch->id);
}

static void c_lost(lc_subprocess_transport_t *t, int err, void *user)
{
    child_t *ch = user;
    check_thread(ch);
    ch->lost++;
    ch->ctx->lost_total++;
    if (err != 0)
        note_error(ch->ctx, "connection_lost error", err);
}

static const lc_subprocess_protocol_t child_proto = {
    .connection_made = c_made,
    .pipe_data_received = c_data,
    .process_exited = c_exited,
    .connection_lost = c_lost,
};

static int child_factory(void *arg, const lc_subprocess_protocol_t **proto, void **user)
{
    *proto = &child_proto;
    *user = arg;
    return 0;
}

static void stop_cb(void *arg) { lc_loop_stop(arg); }

static void *loop_thread(void *arg)
{
    loop_ctx_t *c = arg;
    c->thread = pthread_self();
    pthread_barrier_wait(&start_barrier);
    for (int i = 0; i < NCHILD; i++) {
        child_t *ch = &c->children[i];
        ch->ctx = c;
        ch->id = c->index * 1000 + i;
        char idbuf[16];
        snprintf(idbuf, sizeof(idbuf), "%d", ch->id);
        const char *argv[] = {child_path, "echo-exit", idbuf, NULL};
        lc_future_t *fut = NULL;
        int r = lc_loop_subprocess_exec(c->loop, child_factory, ch, argv, NULL, &fut);
        if (r != 0) {
            note_error(c, "subprocess_exec", r);
            continue;
        }
        if (!lc_future_done(fut) || lc_future_result(fut, NULL) != 0)
            note_error(c, "spawn future", ch->id);
        lc_future_unref(fut);
    }
    /* Until every child's connection_lost, for at most 120 s. */
    for (int i = 0; i < 12000 && c->lost_total < NCHILD; i++) {
        lc_loop_call_later(c->loop, 0.01, stop_cb, c->loop, NULL);
        lc_loop_run_forever(c->loop);
    }
    return NULL;
}

static void test_four_loops_spawn_at_once(void **state)
{
    /* A child of the test's own: loopcore must not reap it. */
    pid_t own = -1;
    const char *own_argv[] = {child_path, "exit", "9", NULL};
    assert_int_equal(posix_spawn(&own, child_path, NULL, NULL, (char *const *)own_argv, NULL), 0);

    static loop_ctx_t ctx[NLOOPS];
    memset(ctx, 0, sizeof(ctx));
    assert_int_equal(pthread_barrier_init(&start_barrier, NULL, NLOOPS), 0);
    for (int i = 0; i < NLOOPS; i++) {
        ctx[i].index = i;
        assert_int_equal(lc_new_event_loop(&ctx[i].loop), 0);
    }
    pthread_t threads[NLOOPS];
    for (int i = 0; i < NLOOPS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, loop_thread, &ctx[i]), 0);
    for (int i = 0; i < NLOOPS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&start_barrier);

    for (int l = 0; l < NLOOPS; l++) {
        loop_ctx_t *c = &ctx[l];
        if (c->errors != 0)
            fail_msg("loop %d: %d errors, first: %s", l, c->errors, c->first_error);
        assert_int_equal(c->lost_total, NCHILD);
        for (int i = 0; i < NCHILD; i++) {
            child_t *ch = &c->children[i];
            char want[16];
            snprintf(want, sizeof(want), "%d", ch->id);
            ch->out[ch->out_len] = '\0';
            assert_string_equal(ch->out, want);
            assert_int_equal(ch->exited, 1);
            assert_int_equal(ch->lost, 1);
            assert_int_equal(ch->rc, ch->id % 256);
            assert_int_equal(ch->wrong_thread, 0);
            assert_ptr_equal(lc_subprocess_transport_get_loop(ch->t), c->loop);
            lc_subprocess_transport_unref(ch->t);
        }
        assert_int_equal(lc_loop_close(c->loop), 0);
        lc_loop_free(c->loop);
    }

    int status = 0;
    assert_int_equal(waitpid(own, &status, 0), own);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 9);
    /* No zombie: no child left at all. */
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    assert_int_equal(waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT), -1);
    assert_int_equal(errno, ECHILD);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SUBPROCESS_CHILD\n", argv[0]);
        return 2;
    }
    static char abs_path[4096];
    if (realpath(argv[1], abs_path) == NULL) {
        perror(argv[1]);
        return 2;
    }
    child_path = abs_path;
    lc_test_watchdog(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_loops_spawn_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
