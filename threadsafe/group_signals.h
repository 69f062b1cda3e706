/* What the group (threadsafe/group.c) and its signal shutdown (threadsafe/group_signals.c) share.
 * Not a public header. */
#ifndef LOOPCORE_THREADSAFE_GROUP_SIGNALS_H
#define LOOPCORE_THREADSAFE_GROUP_SIGNALS_H

#include <signal.h>
#include <stdbool.h>

#include "loopcore/group.h"

typedef struct lc__group_signals_s lc__group_signals_t;

/* Blocks every asynchronous signal in the calling thread (the synchronous ones, faults, stay
 * deliverable) and stores the previous mask in *old: around the pthread_create of every thread
 * loopcore's group makes, which inherits the mask. Restore with pthread_sigmask(SIG_SETMASK). */
void lc__block_async_signals(sigset_t *old);

/* group.c: attaches s to g if g is running (started, not stopped) and has none yet. Returns 0,
 * LC_EINVALIDSTATE. */
int lc__group_attach_signals(lc_group_t *g, lc__group_signals_t *s);
/* group.c: g's shutdown state, or NULL. Any thread. */
lc__group_signals_t *lc__group_signals(lc_group_t *g);

/* group_signals.c, called by group.c. */
/* lc_group_stop() was called: the shutdown thread stops waiting for the drain. */
void lc__group_signals_stopped(lc__group_signals_t *s);
/* lc_group_join(), after the loop threads: joins the shutdown thread if there is one. */
void lc__group_signals_join(lc__group_signals_t *s);
/* lc_group_free(), after the loops are closed. */
void lc__group_signals_free(lc__group_signals_t *s);

#endif
