/* The spec's "Coroutine displaying the current date" example, as a task.
 *
 *   async def display_date(loop):
 *       end_time = loop.time() + 5.0
 *       while True:
 *           print(datetime.datetime.now())
 *           if (loop.time() + 1.0) >= end_time:
 *               break
 *           await asyncio.sleep(1)
 *
 * A task prints the current date every second with lc_sleep() between, for 5 seconds (or the
 * number of seconds given as argv[1]); run_until_complete() returns when the task is done. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "loopcore.h"

typedef struct {
    lc_loop_t *loop;
    double seconds;
} display_date_t;

static int display_date(void *arg, void **result)
{
    display_date_t *d = arg;
    (void)result;
    double end_time = lc_loop_time(d->loop) + d->seconds;
    for (;;) {
        char buf[64];
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
        printf("%s.%06ld\n", buf, ts.tv_nsec / 1000);
        fflush(stdout);
        if (lc_loop_time(d->loop) + 1.0 >= end_time)
            break;
        int r = lc_sleep(1);
        if (r != 0)
            return r;
    }
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: display_date_task [seconds > 0]\n");
        return 2;
    }
    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r != 0) {
        fprintf(stderr, "display_date_task: %s\n", lc_strerror(r));
        return 1;
    }
    display_date_t d = {loop, seconds};
    lc_future_t *task = NULL;
    r = lc_loop_create_task(loop, display_date, &d, &task);
    if (r == 0)
        r = lc_loop_run_until_complete(loop, task, NULL);
    lc_future_unref(task);
    lc_loop_free(loop);
    if (r != 0) {
        fprintf(stderr, "display_date_task: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
