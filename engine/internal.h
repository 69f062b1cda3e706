/* Transitional (issue 12): the part of the engine's private headers that executor/executor.c
 * still takes, the loop struct (its default_executor fields) and lc__loop_check_thread(), until
 * the executor has a narrow interface of its own. Nothing in engine/ includes it: engine files
 * include loop_internal.h, inbound.h, timers.h, future_internal.h or stream_internal.h. */
#ifndef LOOPCORE_ENGINE_INTERNAL_H
#define LOOPCORE_ENGINE_INTERNAL_H

#include "engine/loop_internal.h"

#endif
