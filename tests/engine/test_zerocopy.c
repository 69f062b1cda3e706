/* lc_transport_write_nocopy: arguments and closed transports, one completion per write
 * (deferred, once every byte is out), order beside copying writes, writes chained from a
 * completion. Flow control, write_eof and close, the failures and a large write to a slow reader
 * are in test_zerocopy_flow.c. Each on one TCP connection on 127.0.0.1 with a raw socket as the
 * peer (zerocopy_helpers.h). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/engine/zerocopy_helpers.h"
#include "tests/support/loop_fixture.h"

/* ---- arguments and closed transports ----------------------------------------------------------
 */

static void test_nocopy_arguments(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    static wr_t w;
    w = (wr_t){0};
    struct iovec bad = {.iov_base = NULL, .iov_len = 3};
    assert_int_equal(lc_transport_write_nocopy(NULL, &bad, 0, wr_cb, &w), LC_EINVAL);
    assert_int_equal(lc_transport_write_nocopy(t, NULL, 1, wr_cb, &w), LC_EINVAL);
    assert_int_equal(lc_transport_write_nocopy(t, &bad, 1, wr_cb, &w), LC_EINVAL);
    run_for(loop, 0.02);
    assert_int_equal(w.calls, 0);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    lc_transport_abort(t);
    wait_for(loop, &c.lost, 1);
    close(peer);
}

/* A write after close, abort or write_eof is refused and its callback never runs. */
static void test_nocopy_write_after_close(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w1, w2, w3, w4;
    c = (conn_t){0};
    w1 = w2 = w3 = w4 = (wr_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    lc_transport_ref(t);
    assert_int_equal(lc_transport_write_eof(t), 0);
    assert_int_equal(nocopy(t, "late", 4, &w1), LC_EPIPE);
    assert_int_equal(lc_transport_close(t), 0);
    assert_int_equal(nocopy(t, "late", 4, &w2), LC_ECLOSED);
    assert_int_equal(lc_transport_abort(t), 0);
    assert_int_equal(nocopy(t, "late", 4, &w3), LC_ECLOSED);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(nocopy(t, "late", 4, &w4), LC_ECLOSED); /* lost: t is held by our ref */
    run_for(loop, 0.05);
    assert_int_equal(w1.calls + w2.calls + w3.calls + w4.calls, 0);
    lc_transport_unref(t);
    close(peer);
}

/* ---- completion ------------------------------------------------------------------------------ */

/* The socket takes the whole write at once: the callback still comes later, from the loop, once,
 * with 0. So do a write with no bytes and a write with no callback (static data). */
static void test_nocopy_completes_at_once_later(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w1, w2;
    static lc_test_log_t log;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    w1 = (wr_t){.id = 1, .log = &log};
    w2 = (wr_t){.id = 2, .log = &log};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, false, &peer);
    static const char hello[] = "hello, ";
    static const char world[] = "world";
    assert_int_equal(nocopy(t, hello, 7, &w1), 0);
    assert_int_equal(w1.calls, 0);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    struct iovec none[2] = {{.iov_base = NULL, .iov_len = 0},
                            {.iov_base = (void *)"", .iov_len = 0}};
    in_write = true;
    assert_int_equal(lc_transport_write_nocopy(t, none, 2, wr_cb, &w2), 0);
    assert_int_equal(lc_transport_write_nocopy(t, none, 0, NULL, NULL), 0);
    in_write = false;
    assert_int_equal(nocopy(t, world, 5, NULL), 0);
    assert_int_equal(w2.calls, 0);
    run_for(loop, 0.05);
    assert_int_equal(w1.calls, 1);
    assert_int_equal(w1.status, 0);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.status, 0);
    lc_test_assert_log(&log, (const int[]){1, 2}, 2);
    char buf[32];
    ssize_t n = recv(peer, buf, sizeof(buf), 0);
    assert_int_equal(n, 12);
    assert_memory_equal(buf, "hello, world", 12);
    run_for(loop, 0.02);
    assert_int_equal(w1.calls, 1);
    lc_transport_abort(t);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(w1.calls, 1); /* not again on abort */
    close(peer);
}

/* Queued: the callback waits for the last byte to leave (not while the peer reads nothing), then
 * comes once, with 0, and nothing is queued any more. */
static void test_nocopy_cb_once_after_all_out(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w;
    static size_t submitted;
    c = (conn_t){0};
    w = (wr_t){.id = 1, .submitted = &submitted};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 1u << 20;
    char *data = pattern(len, 1);
    w.free_me = data;
    submitted = len;
    assert_int_equal(nocopy(t, data, len, &w), 0);
    assert_true(lc_transport_get_write_buffer_size(t) > len / 2);
    run_for(loop, 0.1);
    assert_int_equal(w.calls, 0);
    assert_true(lc_transport_get_write_buffer_size(t) > 0);
    reader_t r;
    reader_start(&r, loop, peer, len, 65536, 8, 0.001);
    wait_for(loop, &w.calls, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.out_at_cb, len);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    assert_int_equal(lc_transport_close(t), 0);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, len);
    char *want = pattern(len, 1);
    assert_memory_equal(r.got, want, len);
    free(want);
    free(r.got);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(c.lost_err, 0);
    close(peer);
}

/* ---- order ----------------------------------------------------------------------------------- */

/* Copying writes, writelines and nocopy writes (one and several buffers) interleaved: the peer
 * gets the bytes in call order, each completion comes once, in call order, with 0, and only
 * after every byte of its write (and those before) was taken. queued_first: the first write
 * fills the socket, so that the rest queue behind it (else they go out at once). */
static void mixed_order(lc_loop_t *loop, bool queued_first)
{
    static conn_t c;
    static wr_t w[4];
    static lc_test_log_t log;
    static size_t submitted;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    submitted = 0;
    for (int i = 0; i < 4; i++)
        w[i] = (wr_t){.id = i + 1, .log = &log, .submitted = &submitted};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, queued_first, &peer);
    const size_t sizes[] = {
        queued_first ? 600000 : 3000, 70000, 12345, 100, 5000, 200000, 1, 33333, 4096, 250000};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    char *parts[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        parts[i] = pattern(sizes[i], (unsigned)i + 10);
        total += sizes[i];
    }
    size_t end[4];
    /* 0: copy; 1: nocopy (w1); 2: copy; 3+4: writelines; 5: nocopy (w2); 6+7: nocopy of two
     * buffers (w3); 8: copy; 9: nocopy (w4). */
    assert_int_equal(copy(t, parts[0], sizes[0]), 0);
    submitted += sizes[0];
    assert_int_equal(nocopy(t, parts[1], sizes[1], &w[0]), 0);
    submitted += sizes[1];
    end[0] = submitted;
    assert_int_equal(copy(t, parts[2], sizes[2]), 0);
    submitted += sizes[2];
    struct iovec two[2] = {{parts[3], sizes[3]}, {parts[4], sizes[4]}};
    in_write = true;
    assert_int_equal(lc_transport_writelines(t, two, 2), 0);
    in_write = false;
    submitted += sizes[3] + sizes[4];
    assert_int_equal(nocopy(t, parts[5], sizes[5], &w[1]), 0);
    submitted += sizes[5];
    end[1] = submitted;
    struct iovec pair[2] = {{parts[6], sizes[6]}, {parts[7], sizes[7]}};
    in_write = true;
    assert_int_equal(lc_transport_write_nocopy(t, pair, 2, wr_cb, &w[2]), 0);
    in_write = false;
    submitted += sizes[6] + sizes[7];
    end[2] = submitted;
    assert_int_equal(copy(t, parts[8], sizes[8]), 0);
    submitted += sizes[8];
    assert_int_equal(nocopy(t, parts[9], sizes[9], &w[3]), 0);
    submitted += sizes[9];
    end[3] = submitted;
    if (queued_first) {
        assert_true(lc_transport_get_write_buffer_size(t) > total - sizes[0]);
        for (int i = 0; i < 4; i++)
            assert_int_equal(w[i].calls, 0);
    }
    assert_int_equal(lc_transport_close(t), 0);
    reader_t r;
    reader_start(&r, loop, peer, total, 65536, 8, 0.001);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, total);
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        assert_memory_equal(r.got + off, parts[i], sizes[i]);
        off += sizes[i];
        free(parts[i]);
    }
    free(r.got);
    wait_for(loop, &c.lost, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].status, 0);
        assert_true(w[i].out_at_cb >= end[i]);
    }
    lc_test_assert_log(&log, (const int[]){1, 2, 3, 4}, 4);
    assert_int_equal(c.lost_err, 0);
    close(peer);
}

static void test_nocopy_mixed_order_queued(void **state) { mixed_order(*state, true); }

static void test_nocopy_mixed_order_at_once(void **state) { mixed_order(*state, false); }

/* A producer that writes its next chunk from the previous one's completion (streaming a file):
 * the chain runs to the end, in order, with no completion inside a write. */
typedef struct {
    lc_transport_t *t;
    const char *data;
    size_t len, chunk, next;
    int completions;
} streamer_t;

static void stream_next(lc_transport_t *t, int status, void *arg)
{
    streamer_t *s = arg;
    assert_false(in_write);
    assert_int_equal(status, 0);
    s->completions++;
    if (s->next >= s->len) {
        assert_int_equal(lc_transport_close(t), 0);
        return;
    }
    size_t n = s->len - s->next < s->chunk ? s->len - s->next : s->chunk;
    struct iovec iov = {.iov_base = (void *)(s->data + s->next), .iov_len = n};
    s->next += n;
    in_write = true;
    assert_int_equal(lc_transport_write_nocopy(t, &iov, 1, stream_next, s), 0);
    in_write = false;
}

static void test_nocopy_chained_from_callback(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    c = (conn_t){0};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 3u << 20;
    char *data = pattern(len, 3);
    static streamer_t s;
    s = (streamer_t){.t = t, .data = data, .len = len, .chunk = 100000};
    reader_t r;
    reader_start(&r, loop, peer, len, 65536, 8, 0.001);
    stream_next(t, 0, &s); /* the first chunk, as if a completion */
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, len);
    assert_memory_equal(r.got, data, len);
    assert_int_equal(s.completions, 1 + (int)((len + s.chunk - 1) / s.chunk));
    free(r.got);
    free(data);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    close(peer);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_nocopy_arguments),
        T(test_nocopy_write_after_close),
        T(test_nocopy_completes_at_once_later),
        T(test_nocopy_cb_once_after_all_out),
        T(test_nocopy_mixed_order_queued),
        T(test_nocopy_mixed_order_at_once),
        T(test_nocopy_chained_from_callback),
#undef T
    };
    return cmocka_run_group_tests_name("zerocopy", tests, NULL, NULL);
}
