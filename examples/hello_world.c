/* The spec's "Hello World with call_soon()" example, in C.
 *
 * An example of a callback scheduled with call_soon(): it prints "Hello World" and then stops
 * the loop; run_forever() blocks until then. */
#include <stdio.h>

#include "loopcore.h"

static void hello_world(void *arg)
{
    lc_loop_t *loop = arg;
    printf("Hello World\n");
    lc_loop_stop(loop);
}

int main(void)
{
    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r != 0) {
        fprintf(stderr, "hello_world: %s\n", lc_strerror(r));
        return 1;
    }
    /* Schedule a call to hello_world(). */
    r = lc_loop_call_soon(loop, hello_world, loop, NULL);
    if (r == 0)
        r = lc_loop_run_forever(loop); /* blocked until hello_world() calls stop() */
    lc_loop_free(loop);
    if (r != 0) {
        fprintf(stderr, "hello_world: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
