/* What the group (threadsafe/group.c) and the objects made on all its loops share: a list of
 * parts that lc_group_free() tells, before it closes the loops, that the group is going. A group
 * datagram endpoint (group_datagram.c) is one: so that it may be closed and freed after
 * lc_group_free() without reaching the freed group or its loops. Not a public header. */
#ifndef LOOPCORE_THREADSAFE_GROUP_PARTS_H
#define LOOPCORE_THREADSAFE_GROUP_PARTS_H

#include "loopcore/group.h"

typedef struct lc__group_part_s lc__group_part_t;

struct lc__group_part_s {
    lc__group_part_t *next, *prev; /* the group's list (its mutex) */
    /* Called once by lc_group_free(), on its thread, after every loop thread was joined and
     * before the loops are closed (their close then ends what the part left open on them), with
     * p already off the list. It may use what the loop threads used (the joins ordered it), not
     * the group. */
    void (*group_gone)(lc__group_part_t *p);
};

/* Adds p to g's parts / takes it off (unless lc_group_free() did). Any thread but g's loops;
 * not at the same time as lc_group_free(g). */
void lc__group_add_part(lc_group_t *g, lc__group_part_t *p);
void lc__group_remove_part(lc_group_t *g, lc__group_part_t *p);

#endif
