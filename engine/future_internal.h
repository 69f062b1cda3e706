/* Futures and the task hooks that futures and the loop call (engine/future.c, engine/task.c).
 * Not a public header. */
#ifndef LOOPCORE_ENGINE_FUTURE_INTERNAL_H
#define LOOPCORE_ENGINE_FUTURE_INTERNAL_H

#include "engine/loop_internal.h"

/* Futures (engine/future.c). */
typedef struct lc__done_entry_s {
    lc_future_done_cb cb;
    void *arg;
} lc__done_entry;

struct lc_future_s {
    lc_loop_t *loop;
    uint32_t refs;
    uint8_t state; /* LC__F_* */
    bool error_retrieved;
    bool is_task; /* the head of a task (engine/task.c): cancel and set_result go there */
    int error;
    void *result;
    void (*result_dtor)(void *result); /* owned result: freed with the future */
    /* Done callbacks: the first inline, the rest in a growable array. */
    uint32_t ncallbacks;
    uint32_t cap_callbacks;
    lc__done_entry first;
    lc__done_entry *more;
};

enum { LC__F_PENDING = 0, LC__F_RESULT, LC__F_ERROR, LC__F_CANCELLED };

/* Sets a result the future owns: dtor(result) runs when the future is freed. */
int lc__future_set_result_owned(lc_future_t *fut, void *result, void (*dtor)(void *result));

/* Marks fut done (state LC__F_*) and schedules its done callbacks; what set_result, set_error
 * and cancel do, without their refusal of tasks. Returns 0 or LC_EINVALIDSTATE. */
int lc__future_finish(lc_future_t *fut, uint8_t state, void *result, int err);

/* Tasks (engine/task.c): lc_future_cancel() on a task; lc_loop_close()'s unwinding of the live
 * tasks (after the queues were discarded, before transports are torn down). */
int lc__task_cancel(lc_future_t *task);
void lc__tasks_close(lc_loop_t *loop);

/* The done callback that a suspended task registers on the future it awaits (engine/task.c).
 * When that future completes, future.c does not schedule it as a done callback (a handle and a
 * reference to the future) but puts lc__task_wakeup_run(task) straight on the ready queue: the
 * task holds its own reference to the future it awaits, and a suspended task cannot finish
 * before it is resumed (task.c), so the entry needs neither. */
void lc__task_wakeup(lc_future_t *fut, void *arg);
void lc__task_wakeup_run(void *task);

#endif
