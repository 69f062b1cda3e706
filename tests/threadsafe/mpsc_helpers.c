/* Helpers of the MPSC queue tests: see mpsc_helpers.h. */
#include "tests/threadsafe/mpsc_helpers.h"

#include <stddef.h>
#include <stdlib.h>

msg_t *msg_of(lc_mpsc_node_t *n) { return (msg_t *)((char *)n - offsetof(msg_t, link)); }

/* The queue is malloc'ed on purpose: lc_mpsc_t must work without over-aligned allocation (UBSan
 * checks alignment in the asan config). */
int setup_queue(void **state)
{
    lc_mpsc_t *q = malloc(sizeof(*q));

    if (q == NULL) {
        return -1;
    }
    lc_mpsc_init(q);
    *state = q;
    return 0;
}

int teardown_queue(void **state)
{
    free(*state);
    return 0;
}
