/* Helpers of the nocopy write tests (test_zerocopy*.c): a TCP connection with a raw socket as
 * the peer, nocopy and copying writes that record their completions, a reading peer, and ways to
 * run the loop for a while or until a count is reached. */
#ifndef LOOPCORE_TESTS_ENGINE_ZEROCOPY_HELPERS_H
#define LOOPCORE_TESTS_ENGINE_ZEROCOPY_HELPERS_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/support/loop_fixture.h"

/* Runs the loop for seconds. */
void run_for(lc_loop_t *loop, double seconds);
/* Runs the loop until *var reaches want, for at most 10 s. */
void wait_for(lc_loop_t *loop, const int *var, int want);

/* Events in order: a write's completion logs its id (1..99), connection_lost logs LOST. */
enum { LOST = 100 };

/* A connection's protocol: counts callbacks, logs connection_lost. */
typedef struct {
    lc_loop_t *loop;
    lc_transport_t *t;
    int made, lost, lost_err, paused, resumed;
    lc_test_log_t *log;
    int lost_id; /* logged by connection_lost; 0: LOST */
} conn_t;

/* A TCP connection on 127.0.0.1 whose accepted side is a transport with c; the peer in *peer. */
lc_transport_t *tcp_transport(lc_loop_t *loop, conn_t *c, bool small_bufs, int *peer);

/* One nocopy write's completion. in_write is set around every write call: a completion that runs
 * inside one fails the test. At the completion, out_at_cb is how many bytes the socket had taken
 * (*submitted, the bytes the test handed over, less what is still queued). */
extern bool in_write;

typedef struct {
    int id, calls, status;
    lc_test_log_t *log;
    const size_t *submitted;
    size_t out_at_cb;
    void *free_me; /* freed by the completion */
} wr_t;

void wr_cb(lc_transport_t *t, int status, void *arg);
/* A nocopy write of data (w's completion, or none when w is NULL), and a copying write. */
int nocopy(lc_transport_t *t, const void *data, size_t len, wr_t *w);
int copy(lc_transport_t *t, const void *data, size_t len);
/* len bytes of a pattern that depends on their position and seed (malloc'ed). */
char *pattern(size_t len, unsigned seed);

/* The peer: reads into got (capacity cap) in chunks of at most `chunk` bytes, `per_tick` reads
 * every `every` seconds, on the loop (call_later), until EOF or an error. */
typedef struct {
    lc_loop_t *loop;
    int fd;
    char *got;
    size_t len, cap, chunk;
    int per_tick;
    double every;
    int done; /* 1: EOF; 2: an error */
} reader_t;

void reader_start(reader_t *r, lc_loop_t *loop, int fd, size_t cap, size_t chunk, int per_tick,
                  double every);
/* Runs the loop until the reader saw EOF (or failed), for at most 30 s. */
void reader_wait_eof(reader_t *r);
/* Reads and drops what the peer has until EOF (*how 1) or a reset (2), for at most 10 s. */
size_t drain_peer(int peer, int *how);

#endif
