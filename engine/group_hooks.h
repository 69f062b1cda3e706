/* The engine's entries for the group layer (threadsafe/group.c, group_server.c), its only ones
 * besides the public API: marking the loops a group makes as its own (lc_loop_group()). Nothing
 * else of a loop is reachable from threadsafe/: engine/BUILD exposes this header to that package
 * alone, and it includes public headers only. */
#ifndef LOOPCORE_ENGINE_GROUP_HOOKS_H
#define LOOPCORE_ENGINE_GROUP_HOOKS_H

#include "loopcore/group.h"
#include "loopcore/loop.h"

/* Makes g the group of loop, as lc_loop_group() reports it. lc_group_create() calls it on each loop
 * it makes, before the loop is handed to anyone (engine/loop.c). */
void lc__loop_set_group(lc_loop_t *loop, lc_group_t *g);

#endif
