/* The engine's entries for the executor layer (executor/), its only ones besides the public API:
 * the loop's default-executor slot, which the default-executor policy (executor/default.c) fills
 * and lc_loop_close() releases, and the check each submission starts with. Nothing else of a
 * loop is reachable from executor/: engine/BUILD exposes this header to that package alone, and
 * it includes public headers only. Implemented in engine/loop.c (the slot) and engine/current.c
 * (the check). */
#ifndef LOOPCORE_ENGINE_EXECUTOR_HOOKS_H
#define LOOPCORE_ENGINE_EXECUTOR_HOOKS_H

#include <stdbool.h>

#include "loopcore/executor.h"
#include "loopcore/loop.h"

/* Releases an executor that a loop owns (executor.h, rule 3). */
typedef void (*lc__executor_release_fn)(lc_executor_t *ex);

/* The loop's default executor: the one lc_loop_set_default_executor() gave it, or the one it
 * owns, or NULL. If owned is not NULL, *owned says whether the loop owns it. Loop thread (or any
 * one thread while the loop does not run). */
lc_executor_t *lc__loop_default_executor(const lc_loop_t *loop, bool *owned);

/* Fills the slot with ex (NULL: empty). release NULL: the loop does not own ex; else the loop
 * owns it, and lc_loop_close() calls release(ex) on the closing thread, once every outcome queued
 * on the loop was handed back, and empties the slot. What the slot held is replaced, never
 * released here: the caller lets an owned executor go first. Same threads as above. */
void lc__loop_set_default_executor(lc_loop_t *loop, lc_executor_t *ex,
                                   lc__executor_release_fn release);

/* The check that a call on loop starts with: LC_ECLOSED if loop is closed; in debug mode
 * LC_EWRONGTHREAD if another thread runs loop (reported through loop's exception handler, as
 * every debug-mode thread check, naming the call what); else 0. */
int lc__loop_check_call(lc_loop_t *loop, const char *what);

#endif
