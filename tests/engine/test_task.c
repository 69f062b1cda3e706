/* Tasks: create_task, results and errors through nested awaits, the task factory, and the loop's
 * coroutine methods awaited in straight lines. Awaiting and sleeping are in test_task_await.c,
 * cancellation and the loop's stop and close in test_task_cancel.c, stacks in
 * test_task_stack.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/engine/task_helpers.h"
#include "tests/support/loop_fixture.h"

/* ---- Basics ---------------------------------------------------------------------------------- */

static int coro_return_arg(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static void test_task_result_through_run_until_complete(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, P(42), &task), 0);
    assert_non_null(task);
    assert_true(lc_future_is_task(task));
    assert_false(lc_future_done(task)); /* starts in a later iteration, not inside create_task */
    assert_ptr_equal(lc_future_get_loop(task), loop);
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, task, &res), 0);
    assert_int_equal(U(res), 42);
    assert_true(lc_future_done(task));
    assert_false(lc_future_cancelled(task));
    /* Futures' calls on a task: the outcome is the coroutine's. */
    assert_int_equal(lc_future_set_result(task, NULL), LC_EINVAL);
    assert_int_equal(lc_future_set_error(task, -EIO), LC_EINVAL);
    assert_int_equal(lc_future_cancel(task), 0);
    assert_int_equal(lc_task_cancel(task), 0);
    lc_future_unref(task);
}

static void test_task_create_invalid_and_closed(void **state)
{
    lc_loop_t *loop = *state;
    lc_future_t *task = P(1);
    assert_int_equal(lc_loop_create_task(NULL, coro_return_arg, NULL, &task), LC_EINVAL);
    assert_null(task);
    assert_int_equal(lc_loop_create_task(loop, NULL, NULL, &task), LC_EINVAL);
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, NULL, NULL), LC_EINVAL);
    assert_int_equal(lc_task_cancel(NULL), LC_EINVAL);
    assert_false(lc_future_is_task(NULL));
    lc_future_t *fut = NULL;
    assert_int_equal(lc_loop_create_future(loop, &fut), 0);
    assert_false(lc_future_is_task(fut));
    assert_int_equal(lc_task_cancel(fut), 1); /* a plain future: lc_future_cancel */
    assert_true(lc_future_cancelled(fut));
    lc_future_unref(fut);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, NULL, &task), LC_ECLOSED);
    assert_int_equal(lc_task_create(loop, coro_return_arg, NULL, &task), LC_ECLOSED);
    assert_null(task);
}

/* Dropping the only reference at once: the task still runs to its end and is freed (the
 * sanitizer builds check for leaks). */
static void test_task_fire_and_forget(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        lc_future_t *task = NULL;
        assert_int_equal(lc_loop_create_task(loop, coro_count, &ran, &task), 0);
        lc_future_unref(task);
    }
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(ran, 3);
    lc_task_stats_t st;
    assert_int_equal(lc_loop_get_task_stats(loop, &st), 0);
    assert_int_equal(st.tasks_created, 3);
    assert_int_equal(st.tasks_live, 0);
}

/* ---- Errors through nested awaits ------------------------------------------------------------ */

typedef struct {
    lc_loop_t *loop;
    int depth; /* tasks still to nest below this one */
    lc_future_t *leaf_fut;
    int seen[8]; /* what each level's await returned */
} nest_err_t;

typedef struct {
    nest_err_t *n;
    int level;
} nest_level_t;

static void fail_leaf_cb(void *arg)
{
    nest_err_t *n = arg;
    assert_int_equal(lc_future_set_error(n->leaf_fut, -EIO), 0);
}

static int coro_nested(void *arg, void **result)
{
    nest_level_t *lv = arg;
    nest_err_t *n = lv->n;
    (void)result;
    int r;
    if (lv->level == n->depth) {
        /* The leaf awaits a future that a callback fails. */
        r = lc_loop_call_soon(n->loop, fail_leaf_cb, n, NULL);
        if (r == 0)
            r = lc_await(n->leaf_fut, NULL);
    } else {
        nest_level_t *below = malloc(sizeof(*below));
        *below = (nest_level_t){n, lv->level + 1};
        lc_future_t *child;
        r = lc_loop_create_task(n->loop, coro_nested, below, &child);
        if (r == 0) {
            r = lc_await(child, NULL);
            lc_future_unref(child);
        }
        free(below);
    }
    n->seen[lv->level] = r;
    return r; /* passes the error up */
}

static void test_task_errors_propagate_through_nested_awaits(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    nest_err_t n = {.loop = loop, .depth = 4};
    assert_int_equal(lc_loop_create_future(loop, &n.leaf_fut), 0);
    nest_level_t top = {&n, 0};
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_nested, &top, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), -EIO);
    for (int i = 0; i <= n.depth; i++)
        assert_int_equal(n.seen[i], -EIO);
    int err = 0;
    assert_int_equal(lc_future_error(task, &err), 0);
    assert_int_equal(err, -EIO);
    assert_false(lc_future_cancelled(task));
    lc_future_unref(task);
    lc_future_unref(n.leaf_fut);
}

/* An error nobody retrieves is reported when the task is freed, as asyncio does. */
static int coro_fail(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return -EPIPE;
}

typedef struct {
    int calls;
    int error;
    char message[128];
} seen_exc_t;

static void record_exc(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    seen_exc_t *s = arg;
    s->calls++;
    s->error = ctx->error;
    snprintf(s->message, sizeof(s->message), "%s", ctx->message);
}

static void test_task_unretrieved_error_reported(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    seen_exc_t seen = {0};
    assert_int_equal(lc_loop_set_exception_handler(loop, record_exc, &seen), 0);
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_fail, NULL, &task), 0);
    lc_future_unref(task); /* nobody will look at it */
    lc_loop_stop(loop);
    assert_int_equal(lc_loop_run_forever(loop), 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.error, -EPIPE);
    assert_string_equal(seen.message, "Task exception was never retrieved");
}

/* ---- The task factory ------------------------------------------------------------------------ */

typedef struct {
    int calls;
    lc_loop_t *loop;
    lc_coro_fn coro;
    void *coro_arg;
    int fail;
} factory_log_t;

static int counting_factory(lc_loop_t *loop, lc_coro_fn coro, void *coro_arg, void *factory_arg,
                            lc_future_t **task)
{
    factory_log_t *f = factory_arg;
    f->calls++;
    f->loop = loop;
    f->coro = coro;
    f->coro_arg = coro_arg;
    if (f->fail)
        return LC_ENOMEM;
    return lc_task_create(loop, coro, coro_arg, task); /* the default task, decorated */
}

static void test_task_factory_honoured(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(20);
    factory_log_t f = {0};
    assert_int_equal(lc_loop_set_task_factory(loop, counting_factory, &f), 0);
    lc_future_t *task = NULL;
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, P(3), &task), 0);
    assert_int_equal(f.calls, 1);
    assert_ptr_equal(f.loop, loop);
    assert_ptr_equal(f.coro, coro_return_arg);
    assert_ptr_equal(f.coro_arg, P(3));
    void *res = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, task, &res), 0);
    assert_int_equal(U(res), 3);
    lc_future_unref(task);
    /* The factory's error is create_task's. */
    f.fail = 1;
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, NULL, &task), LC_ENOMEM);
    assert_int_equal(f.calls, 2);
    /* NULL restores the default. */
    assert_int_equal(lc_loop_set_task_factory(loop, NULL, NULL), 0);
    assert_int_equal(lc_loop_create_task(loop, coro_return_arg, P(4), &task), 0);
    assert_int_equal(f.calls, 2);
    assert_int_equal(lc_loop_run_until_complete(loop, task, &res), 0);
    assert_int_equal(U(res), 4);
    lc_future_unref(task);
}

/* ---- Straight-line I/O: the loop's coroutine methods awaited in a task ------------------------
 *
 * getaddrinfo, create_server and create_connection fill a future; a task awaits each with
 * lc_await. Reading in straight-line code: the protocol completes a future that the task awaits
 * until the bytes it wants have come. */

static void echo_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)user;
    lc_transport_write(t, data, len);
}

static bool echo_eof(lc_transport_t *t, void *user)
{
    (void)t;
    (void)user;
    return false; /* close once the echo is flushed */
}

static const lc_protocol_t echo_proto = {.data_received = echo_data, .eof_received = echo_eof};

static int echo_factory(void *factory_arg, const lc_protocol_t **proto, void **user)
{
    (void)factory_arg;
    *proto = &echo_proto;
    *user = NULL;
    return 0;
}

typedef struct {
    lc_loop_t *loop;
    lc_future_t *readable; /* what the task awaits while it wants more bytes */
    lc_future_t *lost;     /* completed by connection_lost */
    char buf[64];
    size_t len;
    int lost_err;
} reader_t;

static void reader_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    reader_t *r = user;
    (void)t;
    if (len > sizeof(r->buf) - r->len)
        len = sizeof(r->buf) - r->len;
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    if (r->readable != NULL && !lc_future_done(r->readable))
        lc_future_set_result(r->readable, NULL);
}

static void reader_lost(lc_transport_t *t, int err, void *user)
{
    reader_t *r = user;
    (void)t;
    r->lost_err = err;
    if (r->readable != NULL && !lc_future_done(r->readable))
        lc_future_set_error(r->readable, -EPIPE);
    if (r->lost != NULL && !lc_future_done(r->lost))
        lc_future_set_result(r->lost, NULL);
}

static const lc_protocol_t reader_proto = {.data_received = reader_data,
                                           .connection_lost = reader_lost};

static int reader_factory(void *factory_arg, const lc_protocol_t **proto, void **user)
{
    *proto = &reader_proto;
    *user = factory_arg;
    return 0;
}

/* Awaits until want bytes have arrived. */
static int task_read(reader_t *r, size_t want)
{
    while (r->len < want) {
        int rc = lc_loop_create_future(r->loop, &r->readable);
        if (rc != 0)
            return rc;
        rc = lc_await(r->readable, NULL);
        lc_future_unref(r->readable);
        r->readable = NULL;
        if (rc != 0)
            return rc;
    }
    return 0;
}

typedef struct {
    lc_loop_t *loop;
    reader_t reader;
    int family;
    int step; /* how far the coroutine got */
} io_task_t;

static int coro_echo_client(void *arg, void **result)
{
    io_task_t *io = arg;
    lc_loop_t *loop = io->loop;
    (void)result;
    /* getaddrinfo */
    lc_future_t *f;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
    int r = lc_loop_getaddrinfo(loop, "127.0.0.1", "7", &hints, &f);
    if (r != 0)
        return r;
    struct addrinfo *ai = NULL;
    r = lc_await(f, (void **)&ai);
    if (r == 0 && ai != NULL)
        io->family = ai->ai_family;
    lc_future_unref(f); /* the list belongs to the future */
    if (r != 0)
        return r;
    io->step = 1;
    /* create_server on a port the kernel picks */
    r = lc_loop_create_server(loop, echo_factory, NULL,
                              &(lc_server_opts_t){.host = "127.0.0.1", .port = 0}, &f);
    if (r != 0)
        return r;
    lc_server_t *server = NULL;
    r = lc_await(f, (void **)&server);
    lc_future_unref(f);
    if (r != 0)
        return r;
    int fd;
    size_t nfd = 1;
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    if (lc_server_sockets(server, &fd, &nfd) != 0 || nfd != 1 ||
        getsockname(fd, (struct sockaddr *)&sin, &slen) != 0) {
        lc_server_free(server);
        return -EIO;
    }
    io->step = 2;
    /* create_connection, then write and read in straight lines */
    io->reader.loop = loop;
    r = lc_loop_create_connection(
        loop, reader_factory, &io->reader,
        &(lc_connection_opts_t){.host = "127.0.0.1", .port_num = ntohs(sin.sin_port)}, &f);
    lc_transport_t *t = NULL;
    if (r == 0) {
        r = lc_await(f, (void **)&t);
        lc_future_unref(f);
    }
    if (r == 0) {
        io->step = 3;
        r = lc_transport_write(t, "hello, task", 11);
    }
    if (r == 0)
        r = task_read(&io->reader, 11);
    if (r == 0 && memcmp(io->reader.buf, "hello, task", 11) == 0)
        io->step = 4;
    /* Close, and await connection_lost. */
    if (t != NULL && lc_loop_create_future(loop, &io->reader.lost) == 0) {
        lc_transport_close(t);
        if (lc_await(io->reader.lost, NULL) == 0)
            io->step = 5;
        lc_future_unref(io->reader.lost);
        io->reader.lost = NULL;
    }
    lc_server_free(server);
    return r;
}

static void test_task_connects_reads_writes_in_straight_lines(void **state)
{
    lc_loop_t *loop = *state;
    lc_test_watchdog(30);
    io_task_t io = {.loop = loop};
    lc_future_t *task;
    assert_int_equal(lc_loop_create_task(loop, coro_echo_client, &io, &task), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, task, NULL), 0);
    assert_int_equal(io.family, AF_INET);
    assert_int_equal(io.step, 5);
    assert_int_equal(io.reader.lost_err, 0);
    lc_future_unref(task);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_task_result_through_run_until_complete),
        T(test_task_create_invalid_and_closed),
        T(test_task_fire_and_forget),
        T(test_task_errors_propagate_through_nested_awaits),
        T(test_task_unretrieved_error_reported),
        T(test_task_factory_honoured),
        T(test_task_connects_reads_writes_in_straight_lines),
#undef T
    };
    return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
