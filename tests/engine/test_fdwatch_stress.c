/* A randomized, model-based stress of the fd watchers (engine/fdwatch.c) and the sock_* calls
 * that queue on them (engine/sock.c), on non-blocking AF_UNIX stream socketpairs.
 *
 * A pool of slots, each empty or holding a pair: a (the loop's side: sock_recv, sock_recv_into,
 * sock_sendall, a reader) and b (the test's side: plain send / recv). Random actions open pairs
 * (fd numbers are reused a lot), close them properly or wrongly (a closed with calls pending or a
 * reader registered, sometimes dup'ed first), write into b, read b, issue and cancel calls, add
 * and remove readers, and run the loop for 0-3 ms. Every byte is a function of its pair's
 * generation, direction and position (stream_byte()), so the model checks that each pair's
 * bytes are consumed in order with nothing lost, duplicated or taken from another pair, that the
 * recv calls of one fd complete in the order issued, that no cancelled call completes, and that
 * a fresh call on a reused number completes within 5 s of loop time (the sweep bounds the wait to
 * about 10 ms; the margin is for a loaded machine).
 *
 * A wrong close follows the rule of include/loopcore/sock.h: the calls it leaves pending are
 * cancelled right after it (a call names an fd number, not a file: left pending, it could be
 * served by the next socket that gets the number, which the header documents).
 *
 * Deterministic: a fixed seed by default (printed); LC_STRESS_SEED=n picks another,
 * LC_STRESS_STEPS=n another number of steps, LC_STRESS_TRACE=1 prints every action. It found
 * two engine bugs (calls trusted on a reused number failed -EBADF when a second call, an
 * add_reader or an epoll rebuild found the old watcher first); their reproducers are kept at
 * the end of this file as regression tests. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

enum {
    NSLOTS = 8,
    MAX_ZOMBIES = 6,
    DEFAULT_STEPS = 6000,
    SETTLE_EVERY = 250, /* steps between global liveness checks */
    DUP_MIN_FD = 200,   /* dups go high so that the low numbers keep being reused */
};
#define DEFAULT_SEED 20261206u

/* ---- The model --------------------------------------------------------------------------------
 */

typedef struct pair_s pair_t;

enum { REC_RECV, REC_RECV_INTO, REC_SENDALL };

/* A sock_* call the test made, kept (with its future) until the end. */
typedef struct rec_s {
    lc_future_t *fut;
    pair_t *p;
    int kind;
    size_t n;              /* bytes asked (recv) or sent (sendall) */
    bool processed;        /* its outcome was checked against the model */
    bool cancelled;        /* lc_future_cancel() returned 1 */
    bool orphan;           /* pending when its fd was closed wrongly */
    bool reused;           /* made on a number an earlier pair's a had */
    unsigned long reports; /* exception handler reports before it was made */
    struct rec_s *next;    /* its pair's list of calls of its direction, in issue order */
    unsigned char buf[64]; /* recv_into's buffer */
} rec_t;

enum { READER_NONE, READER_ACTIVE, READER_STALE };

struct pair_s {
    uint32_t gen;
    int a, b, dup;       /* -1 once closed */
    bool zombie;         /* a closed wrongly; b (and the dup) still open */
    int reader;          /* READER_* */
    uint64_t wpos, rpos; /* b -> a: bytes written into b, bytes consumed on a */
    uint64_t spos, bpos; /* a -> b: bytes given to sendall, bytes read from b */
    bool out_unknown;    /* a sendall was cancelled: how much went out is unknown */
    rec_t *recvs, *recvs_tail, *sends, *sends_tail;
    struct pair_s *all_next;
};

typedef struct {
    lc_loop_t *loop;
    uint64_t seed, rng;
    pair_t *slots[NSLOTS];
    pair_t *zombies[MAX_ZOMBIES];
    pair_t *all; /* every pair ever made */
    rec_t **recs;
    size_t nrecs, caprecs;
    uint32_t gen;
    /* counts for the summary */
    unsigned long n_open, n_close, n_close_wrong, n_dup, n_write, n_recv, n_recv_into, n_sendall,
        n_read_b, n_add_reader, n_remove_reader, n_cancel, n_run, n_zombie_write, n_zombie_close,
        n_liveness, n_settle;
    unsigned long bytes_recv, bytes_reader, bytes_sent, reader_calls, stale_reader_calls,
        orphan_ebadf, orphan_pending_cancelled, reports_closed, reports_elsewhere, reports_other,
        reports;
    unsigned char used[1024]; /* used[n]: pairs whose a had number n (saturating) */
} stress_t;

static stress_t *S; /* the one run in progress (callbacks reach it through their pair) */
static bool trace;  /* LC_STRESS_TRACE=1: every action on stderr */

#define TRACE(...)                                                                                 \
    do {                                                                                           \
        if (trace)                                                                                 \
            fprintf(stderr, __VA_ARGS__);                                                          \
    } while (0)

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (S->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n) { return (unsigned)(rnd() % n); }

/* Byte pos of pair gen's stream dir (0: b -> a, 1: a -> b): every byte tells its generation. */
static unsigned char stream_byte(uint32_t gen, int dir, uint64_t pos)
{
    uint64_t z = ((uint64_t)gen << 33 | (uint64_t)dir << 32) ^ (pos * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
    z ^= z >> 32;
    return (unsigned char)(z ^ (z >> 8) ^ (z >> 16));
}

static void fill_stream(uint32_t gen, int dir, uint64_t pos, unsigned char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = stream_byte(gen, dir, pos + i);
}

/* The index of the first byte of data that is not byte pos.. of gen's stream dir, or -1. */
static long stream_mismatch(uint32_t gen, int dir, uint64_t pos, const unsigned char *data,
                            size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (data[i] != stream_byte(gen, dir, pos + i))
            return (long)i;
    return -1;
}

static void model_fail(const char *what, const pair_t *p)
{
    fprintf(stderr, "fdstress: FAILED (seed %" PRIu64 "): %s (pair gen %u, a %d, b %d)\n",
            S != NULL ? S->seed : 0, what, p != NULL ? p->gen : 0, p != NULL ? p->a : -1,
            p != NULL ? p->b : -1);
    fail_msg("%s", what);
}

/* Bytes consumed on a's side (by a call or the reader): they must be the next of the pair's
 * b -> a stream. */
static void consume(pair_t *p, const unsigned char *data, size_t len, const char *who)
{
    if (p->rpos + len > p->wpos) {
        fprintf(stderr, "fdstress: %s got %zu bytes, only %" PRIu64 " unread\n", who, len,
                p->wpos - p->rpos);
        model_fail("more bytes received than written", p);
    }
    long at = stream_mismatch(p->gen, 0, p->rpos, data, len);
    if (at >= 0) {
        fprintf(stderr, "fdstress: %s: byte %" PRIu64 " is %#x, want %#x\n", who,
                p->rpos + (uint64_t)at, data[at], stream_byte(p->gen, 0, p->rpos + (uint64_t)at));
        model_fail("received bytes out of order, skipped, duplicated or from another pair", p);
    }
    p->rpos += len;
}

/* A call on an open pair failed with rc: never allowed. */
static void call_failed(rec_t *r, int rc, const char *what)
{
    fprintf(stderr, "fdstress: %s failed: %d\n", r->kind == REC_SENDALL ? "sendall" : "recv", rc);
    model_fail(what, r->p);
}

static void add_rec(rec_t *r)
{
    r->reports = S->reports;
    r->reused = r->p->a >= 0 && r->p->a < (int)sizeof(S->used) && S->used[r->p->a] > 1;
    if (S->nrecs == S->caprecs) {
        S->caprecs = S->caprecs != 0 ? S->caprecs * 2 : 256;
        S->recs = realloc(S->recs, S->caprecs * sizeof(*S->recs));
        assert_non_null(S->recs);
    }
    S->recs[S->nrecs++] = r;
}

/* Checks the outcome of every call of p that is done and not yet checked, in issue order. Called
 * from the calls' done callbacks, and before anything else reads or looks at p: so bytes are
 * checked in the order the socket gave them out, whatever order the callbacks run in. */
static void flush(pair_t *p)
{
    bool earlier_pending = false;
    rec_t **link = &p->recvs;
    p->recvs_tail = NULL;
    while (*link != NULL) {
        rec_t *r = *link;
        if (!lc_future_done(r->fut)) {
            if (!r->orphan)
                earlier_pending = true;
            p->recvs_tail = r;
            link = &r->next;
            continue;
        }
        if (lc_future_cancelled(r->fut)) {
            if (!r->cancelled)
                model_fail("a recv was cancelled that the test did not cancel", p);
        } else if (r->cancelled) {
            model_fail("a recv completed after it was cancelled", p);
        } else {
            void *res = NULL;
            int rc = lc_future_result(r->fut, &res);
            if (r->orphan) {
                if (rc == 0)
                    model_fail("a recv pending on a closed fd completed with data", p);
                if (rc != -EBADF && rc != LC_ECLOSED)
                    model_fail("a recv pending on a closed fd failed with an unexpected error", p);
                S->orphan_ebadf++;
            } else {
                if (rc != 0) {
                    call_failed(r, rc, "a recv on an open pair failed");
                    goto next;
                }
                if (earlier_pending)
                    model_fail("recv calls on one fd completed out of order", p);
                const unsigned char *data;
                size_t len;
                if (r->kind == REC_RECV) {
                    const lc_sock_data_t *d = res;
                    data = d->data;
                    len = d->len;
                } else {
                    data = r->buf;
                    len = lc_sock_count(res);
                }
                if (len == 0 || len > r->n)
                    model_fail("a recv returned 0 bytes (end of stream) or more than asked", p);
                consume(p, data, len, "recv");
                S->bytes_recv += len;
            }
        }
    next:
        r->processed = true;
        *link = r->next;
        r->next = NULL;
    }
    link = &p->sends;
    p->sends_tail = NULL;
    while (*link != NULL) {
        rec_t *r = *link;
        if (!lc_future_done(r->fut)) {
            p->sends_tail = r;
            link = &r->next;
            continue;
        }
        if (lc_future_cancelled(r->fut)) {
            if (!r->cancelled)
                model_fail("a sendall was cancelled that the test did not cancel", p);
        } else if (r->cancelled) {
            model_fail("a sendall completed after it was cancelled", p);
        } else {
            int rc = lc_future_result(r->fut, NULL);
            if (r->orphan) {
                if (rc == 0)
                    model_fail("a sendall pending on a closed fd completed", p);
                if (rc != -EBADF && rc != LC_ECLOSED)
                    model_fail("a sendall pending on a closed fd failed with an unexpected error",
                               p);
                S->orphan_ebadf++;
            } else if (rc != 0) {
                call_failed(r, rc, "a sendall on an open pair failed");
            }
        }
        r->processed = true;
        *link = r->next;
        r->next = NULL;
    }
}

static void on_done(lc_future_t *fut, void *arg)
{
    (void)fut;
    rec_t *r = arg;
    flush(r->p);
}

static void append(rec_t **head, rec_t **tail, rec_t *r)
{
    if (*tail != NULL)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
}

/* The reader: reads 1-64 bytes with recv into the model. One left registered on a closed fd
 * (READER_STALE) must not read: the number may be another file's by now. */
static void on_readable(void *arg)
{
    pair_t *p = arg;
    if (p->reader == READER_STALE) {
        S->stale_reader_calls++;
        return;
    }
    if (p->reader != READER_ACTIVE)
        model_fail("a removed reader was called", p);
    S->reader_calls++;
    flush(p);
    unsigned char buf[64];
    size_t want = 1 + rnd_below(sizeof(buf));
    ssize_t n = recv(p->a, buf, want, MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN)
            model_fail("the reader's recv failed", p);
        return;
    }
    if (n == 0)
        model_fail("the reader saw end of stream on an open pair", p);
    TRACE("reader g%u a=%d: %zd\n", p->gen, p->a, n);
    consume(p, buf, (size_t)n, "reader");
    S->bytes_reader += (size_t)n;
}

static void on_exception(lc_loop_t *loop, const lc_exception_context_t *ctx, void *arg)
{
    (void)loop;
    (void)arg;
    TRACE("report: %s (socket %d, error %d)\n", ctx->message, ctx->socket, ctx->error);
    S->reports++;
    if (strstr(ctx->message, "still open elsewhere") != NULL)
        S->reports_elsewhere++;
    else if (strstr(ctx->message, "closed while registered") != NULL)
        S->reports_closed++;
    else {
        S->reports_other++;
        fprintf(stderr, "fdstress: unexpected report: %s (error %d)\n", ctx->message, ctx->error);
    }
}

/* ---- Helpers ----------------------------------------------------------------------------------
 */

static void run_for(lc_loop_t *loop, double seconds)
{
    lc_loop_call_later(loop, seconds, lc_test_stop_cb, loop, NULL);
    assert_int_equal(lc_loop_run_forever(loop), 0);
}

static int pick_slot(bool open)
{
    int start = (int)rnd_below(NSLOTS);
    for (int i = 0; i < NSLOTS; i++) {
        int s = (start + i) % NSLOTS;
        if ((S->slots[s] != NULL) == open)
            return s;
    }
    return -1;
}

/* Sends up to len bytes of p's b -> a stream into b; returns how many went. */
static size_t write_b(pair_t *p, size_t len)
{
    unsigned char buf[256];
    if (len > sizeof(buf))
        len = sizeof(buf);
    fill_stream(p->gen, 0, p->wpos, buf, len);
    ssize_t n = send(p->b, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN)
            model_fail("writing into b failed", p);
        return 0;
    }
    p->wpos += (size_t)n;
    return (size_t)n;
}

/* Reads what b has (what sendall sent), checking it against p's a -> b stream. */
static void read_b(pair_t *p)
{
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = recv(p->b, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN)
                model_fail("reading b failed", p);
            return;
        }
        if (n == 0)
            model_fail("b saw end of stream while a is open", p);
        if (p->bpos + (size_t)n > p->spos)
            model_fail("b received more than sendall was given", p);
        if (!p->out_unknown) {
            long at = stream_mismatch(p->gen, 1, p->bpos, buf, (size_t)n);
            if (at >= 0)
                model_fail("b received bytes that sendall did not send, or out of order", p);
        }
        p->bpos += (size_t)n;
    }
}

/* Cancels p's pending calls (recvs, and sends if sends is true). */
static void cancel_all(pair_t *p, bool sends)
{
    for (rec_t *r = p->recvs; r != NULL; r = r->next)
        if (!lc_future_done(r->fut)) {
            assert_int_equal(lc_future_cancel(r->fut), 1);
            r->cancelled = true;
            if (r->orphan)
                S->orphan_pending_cancelled++;
        }
    for (rec_t *r = sends ? p->sends : NULL; r != NULL; r = r->next)
        if (!lc_future_done(r->fut)) {
            assert_int_equal(lc_future_cancel(r->fut), 1);
            r->cancelled = true;
            p->out_unknown = true;
            if (r->orphan)
                S->orphan_pending_cancelled++;
        }
    flush(p);
}

static pair_t *open_pair(int slot)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    pair_t *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->gen = ++S->gen;
    p->a = sv[0];
    p->b = sv[1];
    p->dup = -1;
    if (p->a < (int)sizeof(S->used) && S->used[p->a] < 255)
        S->used[p->a]++;
    p->all_next = S->all;
    S->all = p;
    S->slots[slot] = p;
    S->n_open++;
    TRACE("open g%u a=%d b=%d\n", p->gen, p->a, p->b);
    return p;
}

static rec_t *issue_recv(pair_t *p, size_t n, bool into)
{
    rec_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->p = p;
    r->n = n;
    r->kind = into ? REC_RECV_INTO : REC_RECV;
    int rc = into ? lc_loop_sock_recv_into(S->loop, p->a, r->buf, n, &r->fut)
                  : lc_loop_sock_recv(S->loop, p->a, n, &r->fut);
    if (rc != 0) {
        fprintf(stderr, "fdstress: sock_recv: %d\n", rc);
        model_fail("sock_recv on an open pair refused", p);
    }
    add_rec(r);
    append(&p->recvs, &p->recvs_tail, r);
    TRACE("recv%s g%u a=%d n=%zu rec%zu%s\n", into ? "_into" : "", p->gen, p->a, n, S->nrecs,
          lc_future_done(r->fut) ? " (done at once)" : "");
    assert_int_equal(lc_future_add_done_callback(r->fut, on_done, r), 0);
    return r;
}

/* ---- Actions ----------------------------------------------------------------------------------
 */

static void act_open(void)
{
    int s = pick_slot(false);
    if (s >= 0)
        open_pair(s);
}

/* The right way: cancel, remove, then close. */
static void close_properly(int s)
{
    pair_t *p = S->slots[s];
    flush(p);
    cancel_all(p, true);
    if (p->reader == READER_ACTIVE) {
        bool removed = false;
        assert_int_equal(lc_loop_remove_reader(S->loop, p->a, &removed), 0);
        if (!removed)
            model_fail("remove_reader: the reader was not registered", p);
        p->reader = READER_NONE;
    }
    read_b(p);
    if (!p->out_unknown && p->bpos != p->spos)
        model_fail("sendall completed but b did not receive every byte", p);
    TRACE("close g%u a=%d b=%d\n", p->gen, p->a, p->b);
    close(p->a);
    close(p->b);
    p->a = p->b = -1;
    S->slots[s] = NULL;
    S->n_close++;
}

static void act_close(void)
{
    int s = pick_slot(true);
    if (s >= 0)
        close_properly(s);
}

static void close_zombie(int z)
{
    pair_t *p = S->zombies[z];
    cancel_all(p, true);
    if (p->dup >= 0)
        close(p->dup);
    close(p->b);
    TRACE("close_zombie g%u b=%d dup=%d\n", p->gen, p->b, p->dup);
    p->dup = p->b = -1;
    p->zombie = false;
    S->zombies[z] = NULL;
    S->n_zombie_close++;
}

/* The wrong way (allowed by the API): a closed with calls pending or a reader registered,
 * sometimes dup'ed first (the file lives on in the epoll). Its pending calls become orphans:
 * they must end with -EBADF or stay pending until cancelled, never complete with data. */
static void act_close_wrongly(void)
{
    int s = pick_slot(true);
    if (s < 0)
        return;
    pair_t *p = S->slots[s];
    flush(p);
    bool pending = false;
    for (rec_t *r = p->recvs; r != NULL; r = r->next)
        pending = pending || !lc_future_done(r->fut);
    if (!pending && p->reader != READER_ACTIVE)
        return;
    int z = -1;
    for (int i = 0; i < MAX_ZOMBIES && z < 0; i++)
        if (S->zombies[i] == NULL)
            z = i;
    if (z < 0) {
        z = (int)rnd_below(MAX_ZOMBIES);
        close_zombie(z);
    }
    if (rnd_below(2) == 0) {
        p->dup = fcntl(p->a, F_DUPFD_CLOEXEC, DUP_MIN_FD);
        assert_true(p->dup >= DUP_MIN_FD);
        S->n_dup++;
    }
    for (rec_t *r = p->recvs; r != NULL; r = r->next)
        r->orphan = true;
    for (rec_t *r = p->sends; r != NULL; r = r->next)
        r->orphan = true;
    if (p->reader == READER_ACTIVE)
        p->reader = READER_STALE;
    TRACE("close_wrongly g%u a=%d dup=%d reader=%d\n", p->gen, p->a, p->dup, p->reader);
    close(p->a);
    p->a = -1;
    cancel_all(p, true); /* the rule: a call left pending names the number, not the file */
    p->zombie = true;
    S->zombies[z] = p;
    S->slots[s] = NULL;
    S->n_close_wrong++;
}

static void act_write(void)
{
    int s = pick_slot(true);
    if (s >= 0 && write_b(S->slots[s], 1 + rnd_below(128)) > 0) {
        S->n_write++;
        TRACE("write g%u b=%d -> %" PRIu64 "\n", S->slots[s]->gen, S->slots[s]->b,
              S->slots[s]->wpos);
    }
}

static void act_recv(void)
{
    int s = pick_slot(true);
    if (s < 0)
        return;
    pair_t *p = S->slots[s];
    flush(p);
    bool into = rnd_below(2) == 0;
    issue_recv(p, 1 + rnd_below(64), into);
    if (into)
        S->n_recv_into++;
    else
        S->n_recv++;
}

static void act_sendall(void)
{
    int s = pick_slot(true);
    if (s < 0)
        return;
    pair_t *p = S->slots[s];
    /* Mostly small; sometimes more than the socket buffer takes, so that it waits. */
    size_t len = rnd_below(16) == 0 ? 100000 + rnd_below(300000) : 1 + rnd_below(2048);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    fill_stream(p->gen, 1, p->spos, buf, len);
    rec_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->p = p;
    r->n = len;
    r->kind = REC_SENDALL;
    int rc = lc_loop_sock_sendall(S->loop, p->a, buf, len, &r->fut);
    free(buf); /* sendall copies what it could not send at once */
    if (rc != 0)
        model_fail("sock_sendall on an open pair refused", p);
    p->spos += len;
    S->bytes_sent += len;
    TRACE("sendall g%u a=%d len=%zu\n", p->gen, p->a, len);
    add_rec(r);
    append(&p->sends, &p->sends_tail, r);
    assert_int_equal(lc_future_add_done_callback(r->fut, on_done, r), 0);
    S->n_sendall++;
}

static void act_read_b(void)
{
    int s = pick_slot(true);
    if (s >= 0) {
        read_b(S->slots[s]);
        S->n_read_b++;
    }
}

static void act_reader(void)
{
    int s = pick_slot(true);
    if (s < 0)
        return;
    pair_t *p = S->slots[s];
    if (p->reader == READER_ACTIVE) {
        bool removed = false;
        assert_int_equal(lc_loop_remove_reader(S->loop, p->a, &removed), 0);
        if (!removed)
            model_fail("remove_reader: the reader was not registered", p);
        p->reader = READER_NONE;
        S->n_remove_reader++;
        TRACE("remove_reader g%u a=%d\n", p->gen, p->a);
    } else {
        int rc = lc_loop_add_reader(S->loop, p->a, on_readable, p);
        if (rc != 0)
            model_fail("add_reader on an open pair refused", p);
        p->reader = READER_ACTIVE;
        S->n_add_reader++;
        TRACE("add_reader g%u a=%d\n", p->gen, p->a);
    }
}

static void act_cancel(void)
{
    int s = pick_slot(true);
    if (s < 0)
        return;
    pair_t *p = S->slots[s];
    flush(p);
    rec_t *pending[64];
    int n = 0;
    for (rec_t *r = p->recvs; r != NULL && n < 64; r = r->next)
        if (!lc_future_done(r->fut))
            pending[n++] = r;
    /* A sendall now and then (afterwards the pair's a -> b bytes are no longer checked). */
    if (rnd_below(8) == 0)
        for (rec_t *r = p->sends; r != NULL && n < 64; r = r->next)
            if (!lc_future_done(r->fut))
                pending[n++] = r;
    if (n == 0)
        return;
    rec_t *r = pending[rnd_below((unsigned)n)];
    assert_int_equal(lc_future_cancel(r->fut), 1);
    r->cancelled = true;
    if (r->kind == REC_SENDALL)
        p->out_unknown = true;
    S->n_cancel++;
    TRACE("cancel g%u a=%d kind %d\n", p->gen, p->a, r->kind);
}

static void act_run(void)
{
    unsigned ms = rnd_below(4);
    TRACE("run %u ms\n", ms);
    run_for(S->loop, ms / 1000.0);
    S->n_run++;
}

/* Writes into a zombie's b: the old file, alive in a dup, becomes readable (stale events). */
static void act_zombie_write(void)
{
    int z = (int)rnd_below(MAX_ZOMBIES);
    pair_t *p = S->zombies[z];
    if (p == NULL)
        return;
    unsigned char buf[32];
    fill_stream(p->gen, 0, p->wpos, buf, sizeof(buf));
    ssize_t n = send(p->b, buf, 1 + rnd_below(sizeof(buf)), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0)
        p->wpos += (size_t)n;
    S->n_zombie_write++;
    TRACE("zombie_write g%u b=%d: %zd\n", p->gen, p->b, n);
}

static void act_zombie_close(void)
{
    int z = (int)rnd_below(MAX_ZOMBIES);
    if (S->zombies[z] != NULL)
        close_zombie(z);
}

/* Liveness: a fresh pair (its a most likely a reused number), a recv issued, then data written:
 * the recv completes within 5 s of loop time (the sweep bounds the wait to about 10 ms). */
static void act_liveness(void)
{
    int s = pick_slot(false);
    if (s < 0) {
        s = pick_slot(true);
        close_properly(s);
    }
    TRACE("liveness\n");
    pair_t *p = open_pair(s);
    size_t n = 1 + rnd_below(64);
    rec_t *r = issue_recv(p, n, rnd_below(2) == 0);
    if (!lc_future_done(r->fut))
        run_for(S->loop, rnd_below(3) / 1000.0);
    assert_int_equal(write_b(p, n), n);
    lc_handle_t *guard = NULL;
    double t0 = lc_loop_time(S->loop);
    assert_int_equal(lc_loop_call_later(S->loop, 5.0, lc_test_stop_cb, S->loop, &guard), 0);
    int rc = lc_loop_run_until_complete(S->loop, r->fut, NULL);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    if (rc == LC_ESTOPPED || !lc_future_done(r->fut)) {
        fprintf(stderr, "fdstress: waited %.3f s of loop time\n", lc_loop_time(S->loop) - t0);
        model_fail("a recv on a fresh pair with data waiting did not complete within 5 s", p);
    }
    flush(p);
    if (!r->processed || p->rpos != n)
        model_fail("the liveness recv did not get its bytes", p);
    S->n_liveness++;
}

/* Every open pair without a reader: enough data for its pending recvs is written, and they all
 * complete within 5 s of loop time. */
static void settle(void)
{
    for (int s = 0; s < NSLOTS; s++) {
        pair_t *p = S->slots[s];
        if (p == NULL || p->reader != READER_NONE)
            continue;
        flush(p);
        uint64_t need = 0;
        for (rec_t *r = p->recvs; r != NULL; r = r->next)
            if (!lc_future_done(r->fut))
                need += r->n;
        uint64_t have = p->wpos - p->rpos;
        while (need > have) {
            size_t w = write_b(p, need - have);
            if (w == 0)
                break;
            have += w;
        }
    }
    double t0 = lc_loop_time(S->loop);
    for (;;) {
        bool waiting = false;
        for (int s = 0; s < NSLOTS; s++) {
            pair_t *p = S->slots[s];
            if (p == NULL || p->reader != READER_NONE)
                continue;
            flush(p);
            for (rec_t *r = p->recvs; r != NULL; r = r->next)
                waiting = waiting || !lc_future_done(r->fut);
        }
        if (!waiting)
            break;
        if (lc_loop_time(S->loop) - t0 > 5.0)
            model_fail("pending recvs with their data written did not complete within 5 s", NULL);
        run_for(S->loop, 0.005);
    }
    S->n_settle++;
}

/* ---- The test ---------------------------------------------------------------------------------
 */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? strtoull(v, NULL, 0) : dflt;
}

static void stress_run(uint64_t seed, unsigned long steps)
{
    stress_t st = {.seed = seed, .rng = seed};
    trace = env_u64("LC_STRESS_TRACE", 0) != 0;
    S = &st;
    printf("fdstress: seed %" PRIu64 " (LC_STRESS_SEED overrides), %lu steps\n", seed, steps);
    fflush(stdout);
    assert_int_equal(lc_new_event_loop(&st.loop), 0);
    lc_loop_set_exception_handler(st.loop, on_exception, NULL);

    static void (*const actions[])(void) = {
        act_open,   act_open,         act_open,         act_close,  act_close,  act_close_wrongly,
        act_write,  act_write,        act_write,        act_write,  act_recv,   act_recv,
        act_recv,   act_recv,         act_sendall,      act_read_b, act_read_b, act_reader,
        act_reader, act_cancel,       act_cancel,       act_run,    act_run,    act_run,
        act_run,    act_zombie_write, act_zombie_close,
    };
    for (unsigned long i = 1; i <= steps; i++) {
        if (i % 100 == 0)
            act_liveness();
        else if (i % SETTLE_EVERY == 0)
            settle();
        else
            actions[rnd_below(sizeof(actions) / sizeof(actions[0]))]();
    }
    settle();

    /* The end: cancel everything, close everything properly, run 50 ms; every call is done. */
    for (int s = 0; s < NSLOTS; s++)
        if (st.slots[s] != NULL)
            close_properly(s);
    for (int z = 0; z < MAX_ZOMBIES; z++)
        if (st.zombies[z] != NULL)
            close_zombie(z);
    run_for(st.loop, 0.05);
    for (size_t i = 0; i < st.nrecs; i++) {
        rec_t *r = st.recs[i];
        if (!lc_future_done(r->fut))
            model_fail("a call is still pending after everything was cancelled", r->p);
        if (!r->processed) {
            flush(r->p);
            if (!r->processed)
                model_fail("a call's outcome was never checked", r->p);
        }
        lc_future_unref(r->fut);
        free(r);
    }
    free(st.recs);
    assert_int_equal(lc_loop_close(st.loop), 0);
    assert_int_equal(lc_loop_free(st.loop), 0);
    while (st.all != NULL) {
        pair_t *p = st.all;
        st.all = p->all_next;
        free(p);
    }
    if (st.reports_other != 0)
        model_fail("unexpected exception handler reports", NULL);
    printf("fdstress: seed %" PRIu64 ": pairs %u; open %lu close %lu close_wrongly %lu (dup %lu) "
           "write %lu recv %lu recv_into %lu sendall %lu read_b %lu add_reader %lu "
           "remove_reader %lu cancel %lu run %lu zombie_write %lu zombie_close %lu liveness %lu "
           "settle %lu; bytes: recv %lu reader %lu sendall "
           "%lu; reader calls %lu (stale %lu); "
           "orphans failed %lu, cancelled %lu; reports: closed-while-registered %lu, "
           "open-elsewhere %lu\n",
           seed, st.gen, st.n_open, st.n_close, st.n_close_wrong, st.n_dup, st.n_write, st.n_recv,
           st.n_recv_into, st.n_sendall, st.n_read_b, st.n_add_reader, st.n_remove_reader,
           st.n_cancel, st.n_run, st.n_zombie_write, st.n_zombie_close, st.n_liveness, st.n_settle,
           st.bytes_recv, st.bytes_reader, st.bytes_sent, st.reader_calls, st.stale_reader_calls,
           st.orphan_ebadf, st.orphan_pending_cancelled, st.reports_closed, st.reports_elsewhere);
    fflush(stdout);
    S = NULL;
}

static void test_fdwatch_stress(void **state)
{
    (void)state;
    stress_run(env_u64("LC_STRESS_SEED", DEFAULT_SEED),
               (unsigned long)env_u64("LC_STRESS_STEPS", DEFAULT_STEPS));
}

/* The model itself can fail: a swapped pair of bytes, a skipped byte, a byte of another
 * generation and a byte of the other direction are all caught. */
static void test_fdwatch_stress_model_catches(void **state)
{
    (void)state;
    unsigned char buf[64];
    fill_stream(7, 0, 100, buf, sizeof(buf));
    assert_int_equal(stream_mismatch(7, 0, 100, buf, sizeof(buf)), -1);
    unsigned char t = buf[10];
    buf[10] = buf[11];
    buf[11] = t;
    assert_int_equal(stream_mismatch(7, 0, 100, buf, sizeof(buf)), buf[10] == buf[11] ? -1 : 10);
    fill_stream(7, 0, 101, buf, sizeof(buf)); /* one byte skipped */
    assert_true(stream_mismatch(7, 0, 100, buf, sizeof(buf)) >= 0);
    fill_stream(8, 0, 100, buf, sizeof(buf)); /* the next pair's bytes */
    assert_true(stream_mismatch(7, 0, 100, buf, sizeof(buf)) >= 0);
    fill_stream(7, 1, 100, buf, sizeof(buf)); /* the other direction's */
    assert_true(stream_mismatch(7, 0, 100, buf, sizeof(buf)) >= 0);
}

/* The engine bug this stress found (default seed 20261206), fixed (watch_stale() in
 * engine/fdwatch.c); its two smallest reproducers stay as regression tests.
 *
 * A recv / recv_into / sendall made on a reused number (the old socket closed properly, nothing
 * pending) waits, trusted, on the old file's idle watcher (the "unverified" list of "Closed
 * fds"); the sweep would hand it to a fresh watcher for the new file. But two other paths that
 * find the watcher stale first treat the calls queued on it as the old file's and fail them with
 * -EBADF (and report "closed while registered"), although the caller did everything right:
 *  1. queue_op()'s "registrations already there: fstat" rule (watch_acquire): a second sock_*
 *     call on the fd (or an add_reader / add_writer) before the sweep (5-10 ms) fails the first;
 *  2. fds_rebuild(): a rebuild of the epoll (triggered by any other fd: a level-registered file
 *     closed while alive in a dup) before the sweep fails it.
 * The fix: the calls a stale watcher got while on the unverified list go to a fresh watcher for
 * the new file, as sweep_cb() did. */

static void test_fdwatch_stress_repro_second_call_fails_first(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop), 0);
    /* A pair used with sock_recv (its watcher registered), then closed properly. */
    int p1[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p1), 0);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, p1[0], 8, &f), 0);
    run_for(loop, 0.01);
    assert_int_equal(write(p1[1], "a", 1), 1);
    assert_int_equal(lc_loop_run_until_complete(loop, f, NULL), 0);
    lc_future_unref(f);
    int num = p1[0];
    close(p1[0]);
    close(p1[1]);
    /* A new pair on the same number: two recvs, the first waits on the old idle watcher. */
    int p2[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p2), 0);
    assert_int_equal(p2[0], num);
    lc_future_t *f1 = NULL, *f2 = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, p2[0], 1, &f1), 0);
    assert_int_equal(lc_loop_sock_recv(loop, p2[0], 1, &f2), 0);
    assert_false(lc_future_done(f1)); /* was: f1 failed with -EBADF */
    assert_int_equal(write(p2[1], "xy", 2), 2);
    lc_handle_t *guard = NULL;
    assert_int_equal(lc_loop_call_later(loop, 5.0, lc_test_stop_cb, loop, &guard), 0);
    lc_sock_data_t *d = NULL;
    assert_int_equal(lc_loop_run_until_complete(loop, f2, (void **)&d), 0);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    assert_int_equal(d->data[0], 'y');
    assert_int_equal(lc_future_result(f1, (void **)&d), 0);
    assert_int_equal(d->data[0], 'x');
    lc_future_unref(f1);
    lc_future_unref(f2);
    close(p2[0]);
    close(p2[1]);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(lc_loop_free(loop), 0);
}

static void noop_reader(void *arg) { (void)arg; }

static void test_fdwatch_stress_repro_rebuild_fails_trusted_call(void **state)
{
    (void)state;
    lc_loop_t *loop = NULL;
    assert_int_equal(lc_new_event_loop(&loop),
                     0); /* A level-registered file closed while alive in a dup, its watcher
                          * removed: its item stays in the epoll and, once readable, fires stale
                          * events until the epoll is rebuilt. */
    int q[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, q), 0);
    assert_int_equal(lc_loop_add_reader(loop, q[0], noop_reader, NULL), 0);
    run_for(loop, 0.01);
    int d = fcntl(q[0], F_DUPFD_CLOEXEC, 100);
    assert_true(d >= 100);
    close(q[0]);
    assert_int_equal(lc_loop_remove_reader(loop, q[0], NULL), 0);
    /* A pair used with sock_recv, then closed properly: its watcher stays, idle. */
    int p1[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p1), 0);
    lc_future_t *f = NULL;
    assert_int_equal(lc_loop_sock_recv(loop, p1[0], 8, &f), 0);
    run_for(loop, 0.01);
    assert_int_equal(write(p1[1], "a", 1), 1);
    lc_handle_t *guard = NULL;
    assert_int_equal(lc_loop_call_later(loop, 5.0, lc_test_stop_cb, loop, &guard), 0);
    assert_int_equal(lc_loop_run_until_complete(loop, f, NULL), 0);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    lc_future_unref(f);
    int num = p1[0];
    close(p1[0]);
    close(p1[1]);
    /* A new pair reuses the number; a recv on it waits, trusted, on the old idle watcher. */
    int p2[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p2), 0);
    assert_int_equal(p2[0], num);
    assert_int_equal(lc_loop_sock_recv(loop, p2[0], 8, &f), 0);
    /* The dup'ed file becomes readable: stale events, a rebuild within a few iterations. */
    assert_int_equal(write(q[1], "x", 1), 1);
    assert_int_equal(write(p2[1], "y", 1), 1);
    guard = NULL;
    assert_int_equal(lc_loop_call_later(loop, 5.0, lc_test_stop_cb, loop, &guard), 0);
    lc_sock_data_t *data = NULL;
    int rc = lc_loop_run_until_complete(loop, f, (void **)&data);
    lc_handle_cancel(guard);
    lc_handle_unref(guard);
    assert_int_equal(rc, 0); /* was: -EBADF (-9) */
    assert_int_equal(data->len, 1);
    assert_int_equal(data->data[0], 'y');
    lc_future_unref(f);
    close(d);
    close(q[1]);
    close(p2[0]);
    close(p2[1]);
    assert_int_equal(lc_loop_close(loop), 0);
    assert_int_equal(lc_loop_free(loop), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lc_test_watchdog(90);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fdwatch_stress_model_catches),
        cmocka_unit_test(test_fdwatch_stress),
        cmocka_unit_test(test_fdwatch_stress_repro_second_call_fails_first),
        cmocka_unit_test(test_fdwatch_stress_repro_rebuild_fails_trusted_call),
    };
    return cmocka_run_group_tests_name("fdwatch_stress", tests, NULL, NULL);
}
