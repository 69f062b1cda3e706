/* The spec's "Display the current date with call_later()" example, in C.
 *
 * A callback that prints the current date every second, rescheduling itself with call_later(),
 * and stops the loop after 5 seconds (or after the number of seconds given as argv[1]). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "loopcore.h"

typedef struct {
    lc_loop_t *loop;
    double end_time;
} display_date_t;

static void display_date(void *arg)
{
    display_date_t *d = arg;
    char buf[64];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
    printf("%s.%06ld\n", buf, ts.tv_nsec / 1000);
    fflush(stdout);
    if (lc_loop_time(d->loop) + 1.0 < d->end_time) {
        int r = lc_loop_call_later(d->loop, 1, display_date, d, NULL);
        if (r != 0) {
            fprintf(stderr, "display_date: %s\n", lc_strerror(r));
            lc_loop_stop(d->loop);
        }
    } else {
        lc_loop_stop(d->loop);
    }
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: display_date [seconds > 0]\n");
        return 2;
    }
    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r != 0) {
        fprintf(stderr, "display_date: %s\n", lc_strerror(r));
        return 1;
    }
    display_date_t d = {loop, lc_loop_time(loop) + seconds};
    /* Schedule the first call to display_date(). */
    r = lc_loop_call_soon(loop, display_date, &d, NULL);
    if (r == 0)
        r = lc_loop_run_forever(loop); /* blocked until stop() */
    lc_loop_free(loop);
    if (r != 0) {
        fprintf(stderr, "display_date: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
