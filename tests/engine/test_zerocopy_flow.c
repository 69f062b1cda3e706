/* lc_transport_write_nocopy with the transport under pressure: flow control, write_eof and close
 * with nocopy buffers queued, completions with an error on abort, peer reset, send timeout and
 * loop close, and a large write to a slow reader. Each on one TCP connection on 127.0.0.1 with a
 * raw socket as the peer (zerocopy_helpers.h). */
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

/* ---- flow control, write_eof, close ---------------------------------------------------------- */

/* Nocopy bytes count toward the buffer size and the marks: pause_writing above the high mark
 * (inside the write, as for a copying one), copies behind them add up, resume_writing once the
 * peer reads. */
static void test_nocopy_flow_control(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w, w2;
    c = (conn_t){0};
    w = (wr_t){.id = 1};
    w2 = (wr_t){.id = 2};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    assert_int_equal(lc_transport_set_write_buffer_limits(t, 65536, 16384), 0);
    const size_t len = 1u << 20;
    char *a = pattern(len, 4);
    assert_int_equal(nocopy(t, a, len, &w), 0);
    size_t after_a = lc_transport_get_write_buffer_size(t);
    assert_true(after_a > 65536 && after_a <= len);
    assert_int_equal(c.paused, 1); /* on nocopy bytes alone */
    char *b = pattern(40000, 5);
    assert_int_equal(copy(t, b, 40000), 0); /* behind the nocopy bytes: counted together */
    free(b);
    assert_int_equal(lc_transport_get_write_buffer_size(t), after_a + 40000);
    char big[100000];
    memset(big, 'z', sizeof(big));
    assert_int_equal(nocopy(t, big, sizeof(big), &w2), 0);
    assert_int_equal(lc_transport_get_write_buffer_size(t), after_a + 40000 + sizeof(big));
    assert_int_equal(c.paused, 1);
    assert_int_equal(c.resumed, 0);
    run_for(loop, 0.05);
    assert_int_equal(c.resumed, 0);
    /* big lives on this stack: wait for its completion before returning. */
    const size_t total = len + 40000 + sizeof(big);
    reader_t r;
    reader_start(&r, loop, peer, total, 65536, 8, 0.001);
    wait_for(loop, &w2.calls, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.status, 0);
    assert_int_equal(c.paused, 1);
    assert_int_equal(c.resumed, 1);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    free(a);
    assert_int_equal(lc_transport_close(t), 0);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, total);
    free(r.got);
    wait_for(loop, &c.lost, 1);
    close(peer);
}

/* write_eof with nocopy bytes queued: the EOF comes after all of them; close() likewise flushes
 * them, and their completion (0) comes before connection_lost (0). */
static void eof_or_close_waits(lc_loop_t *loop, bool use_close)
{
    static conn_t c;
    static wr_t w;
    static lc_test_log_t log;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    c.log = &log;
    w = (wr_t){.id = 1, .log = &log};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 1u << 20;
    char *data = pattern(len, 6);
    w.free_me = data;
    assert_int_equal(nocopy(t, data, len, &w), 0);
    assert_true(lc_transport_get_write_buffer_size(t) > 0);
    assert_int_equal(use_close ? lc_transport_close(t) : lc_transport_write_eof(t), 0);
    run_for(loop, 0.05);
    assert_int_equal(w.calls, 0);
    reader_t r;
    reader_start(&r, loop, peer, len, 65536, 8, 0.001);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, len);
    char *want = pattern(len, 6);
    assert_memory_equal(r.got, want, len);
    free(want);
    free(r.got);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    if (!use_close)
        assert_int_equal(lc_transport_close(t), 0);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost_err, 0);
    lc_test_assert_log(&log, (const int[]){1, LOST}, 2);
    close(peer);
}

static void test_nocopy_write_eof_waits(void **state) { eof_or_close_waits(*state, false); }

static void test_nocopy_close_flushes(void **state) { eof_or_close_waits(*state, true); }

/* ---- failures -------------------------------------------------------------------------------- */

/* abort with nocopy writes queued: each completion gets LC_ECLOSED, after abort returns, before
 * connection_lost (0); nothing was called inside abort. */
static void test_nocopy_abort(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w1, w2;
    static lc_test_log_t log;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    c.log = &log;
    w1 = (wr_t){.id = 1, .log = &log};
    w2 = (wr_t){.id = 2, .log = &log};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 1u << 20;
    w1.free_me = pattern(len, 7);
    w2.free_me = pattern(len, 8);
    assert_int_equal(nocopy(t, w1.free_me, len, &w1), 0);
    assert_int_equal(copy(t, "mid", 3), 0);
    assert_int_equal(nocopy(t, w2.free_me, len, &w2), 0);
    in_write = true; /* nothing may be called inside abort either */
    assert_int_equal(lc_transport_abort(t), 0);
    in_write = false;
    assert_int_equal(w1.calls + w2.calls + c.lost, 0);
    assert_int_equal(lc_transport_get_write_buffer_size(t), 0);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(w1.calls, 1);
    assert_int_equal(w1.status, LC_ECLOSED);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.status, LC_ECLOSED);
    assert_int_equal(c.lost_err, 0);
    lc_test_assert_log(&log, (const int[]){1, 2, LOST}, 3);
    close(peer);
}

/* The peer resets the connection while nocopy bytes are queued: the completion gets the socket
 * error that connection_lost gets. */
static void test_nocopy_peer_reset(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w;
    static lc_test_log_t log;
    c = (conn_t){0};
    log = (lc_test_log_t){0};
    c.log = &log;
    w = (wr_t){.id = 1, .log = &log};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 1u << 20;
    w.free_me = pattern(len, 9);
    assert_int_equal(nocopy(t, w.free_me, len, &w), 0);
    run_for(loop, 0.02);
    assert_int_equal(w.calls, 0);
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(peer); /* RST */
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_true(c.lost_err < 0);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, c.lost_err);
    lc_test_assert_log(&log, (const int[]){1, LOST}, 2);
}

/* The send timeout covers nocopy bytes: a peer that never reads gets the transport aborted, and
 * the completion gets LC_ESENDTIMEOUT. */
static void test_nocopy_send_timeout(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w;
    c = (conn_t){0};
    w = (wr_t){.id = 1};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    assert_int_equal(lc_transport_set_send_timeout(t, 0.2), 0);
    const size_t len = 2u << 20;
    w.free_me = pattern(len, 10);
    double queued_at = lc_loop_time(loop);
    assert_int_equal(nocopy(t, w.free_me, len, &w), 0);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_err, LC_ESENDTIMEOUT);
    assert_true(lc_loop_time(loop) >= queued_at + 0.2);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, LC_ESENDTIMEOUT);
    int how;
    drain_peer(peer, &how);
    assert_true(how != 0);
    close(peer);
}

/* lc_loop_close with nocopy writes outstanding: a queued one gets LC_ECLOSED, one written at once
 * whose completion was not yet delivered gets 0, both inside lc_loop_close and before
 * connection_lost, and their memory is freed there (ASan's leak check sees nothing left). */
static void test_nocopy_loop_close(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    static conn_t a, b;
    static wr_t wa, wb;
    static lc_test_log_t log;
    log = (lc_test_log_t){0};
    a = (conn_t){.log = &log, .lost_id = LOST + 1};
    b = (conn_t){.log = &log, .lost_id = LOST + 2};
    wa = (wr_t){.id = 1, .log = &log};
    wb = (wr_t){.id = 2, .log = &log};
    int pa, pb;
    lc_transport_t *ta = tcp_transport(loop, &a, true, &pa);
    lc_transport_t *tb = tcp_transport(loop, &b, false, &pb);
    const size_t len = 1u << 20;
    wa.free_me = pattern(len, 11);
    assert_int_equal(nocopy(ta, wa.free_me, len, &wa), 0);
    assert_true(lc_transport_get_write_buffer_size(ta) > 0);
    wb.free_me = pattern(100, 12);
    assert_int_equal(nocopy(tb, wb.free_me, 100, &wb), 0);
    assert_int_equal(lc_transport_get_write_buffer_size(tb), 0);
    assert_int_equal(wa.calls + wb.calls, 0);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(wa.calls, 1);
    assert_int_equal(wa.status, LC_ECLOSED);
    assert_null(wa.free_me);
    assert_int_equal(wb.calls, 1);
    assert_int_equal(wb.status, 0);
    assert_null(wb.free_me);
    assert_int_equal(a.lost, 1);
    assert_int_equal(b.lost, 1);
    /* Each transport's completion comes before its own connection_lost. */
    int at[LOST + 3];
    for (int i = 0; i < LOST + 3; i++)
        at[i] = -1;
    assert_int_equal(log.n, 4);
    for (int i = 0; i < log.n; i++)
        at[log.items[i]] = i;
    assert_true(at[1] >= 0 && at[1] < at[LOST + 1]);
    assert_true(at[2] >= 0 && at[2] < at[LOST + 2]);
    assert_int_equal(lc_loop_free(loop), 0);
    close(pa);
    close(pb);
}

/* A large write (8 MiB, between two copying writes) to a peer that reads 16 KiB at a time with
 * short pauses arrives intact, and its completion comes once, with 0. */
static void test_nocopy_large_to_slow_reader(void **state)
{
    lc_loop_t *loop = *state;
    static conn_t c;
    static wr_t w;
    c = (conn_t){0};
    w = (wr_t){.id = 1};
    int peer;
    lc_transport_t *t = tcp_transport(loop, &c, true, &peer);
    const size_t len = 8u << 20;
    char *data = pattern(len, 13);
    static const char head[] = "HEAD", tail[] = "TAIL";
    assert_int_equal(copy(t, head, 4), 0);
    assert_int_equal(nocopy(t, data, len, &w), 0);
    assert_int_equal(copy(t, tail, 4), 0);
    reader_t r;
    reader_start(&r, loop, peer, len + 8, 16384, 64, 0.001);
    wait_for(loop, &w.calls, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(lc_transport_close(t), 0);
    reader_wait_eof(&r);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.len, len + 8);
    assert_memory_equal(r.got, head, 4);
    assert_memory_equal(r.got + 4, data, len);
    assert_memory_equal(r.got + 4 + len, tail, 4);
    free(r.got);
    free(data);
    wait_for(loop, &c.lost, 1);
    assert_int_equal(w.calls, 1);
    close(peer);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, lc_test_loop_setup, lc_test_loop_teardown)
        T(test_nocopy_flow_control),
        T(test_nocopy_write_eof_waits),
        T(test_nocopy_close_flushes),
        T(test_nocopy_abort),
        T(test_nocopy_peer_reset),
        T(test_nocopy_send_timeout),
        cmocka_unit_test(test_nocopy_loop_close),
        T(test_nocopy_large_to_slow_reader),
#undef T
    };
    return cmocka_run_group_tests_name("zerocopy_flow", tests, NULL, NULL);
}
