/* The spec's "Hello World" coroutine example, as a task.
 *
 *   async def hello_world():
 *       print("Hello World!")
 *   loop = asyncio.get_event_loop()
 *   loop.run_until_complete(hello_world())   # blocked until hello_world() is done
 *   loop.close()
 *
 * In C the coroutine is an lc_coro_fn run by a task; run_until_complete() takes the task. */
#include <stdio.h>

#include "loopcore.h"

static int hello_world(void *arg, void **result)
{
    (void)arg;
    (void)result;
    printf("Hello World!\n");
    return 0;
}

int main(void)
{
    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r != 0) {
        fprintf(stderr, "hello_world_task: %s\n", lc_strerror(r));
        return 1;
    }
    lc_future_t *task = NULL;
    r = lc_loop_create_task(loop, hello_world, NULL, &task);
    if (r == 0)
        r = lc_loop_run_until_complete(loop, task, NULL); /* blocked until hello_world() is done */
    lc_future_unref(task);
    lc_loop_free(loop);
    if (r != 0) {
        fprintf(stderr, "hello_world_task: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
