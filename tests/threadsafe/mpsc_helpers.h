/* Helpers of the MPSC queue tests (test_mpsc*.c): the message they push, and a queue per test. */
#ifndef LOOPCORE_TESTS_THREADSAFE_MPSC_HELPERS_H
#define LOOPCORE_TESTS_THREADSAFE_MPSC_HELPERS_H

#include <stdint.h>

#include "threadsafe/mpsc.h"

/* A message as a user of the queue would write it: the node embedded, plus a payload. */
typedef struct msg_s {
    lc_mpsc_node_t link;
    uint32_t producer;
    uint32_t seq;
} msg_t;

msg_t *msg_of(lc_mpsc_node_t *n);

/* setup: *state = a new, empty queue; teardown: frees it. */
int setup_queue(void **state);
int teardown_queue(void **state);

#endif
