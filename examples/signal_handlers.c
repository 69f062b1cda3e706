/* The spec's "Set signal handlers for SIGINT and SIGTERM" example, in C.
 *
 *   def ask_exit(signame, loop):
 *       print("got signal %s: exit" % signame)
 *       loop.stop()
 *
 *   async def main():
 *       loop = asyncio.get_running_loop()
 *       for signame in {'SIGINT', 'SIGTERM'}:
 *           loop.add_signal_handler(
 *               getattr(signal, signame),
 *               functools.partial(ask_exit, signame, loop))
 *       await asyncio.sleep(3600)
 *
 *   print("Event loop running for 1 hour, press Ctrl+C to interrupt.")
 *   print(f"pid {os.getpid()}: send SIGINT or SIGTERM to exit.")
 *   asyncio.run(main())
 *
 * functools.partial becomes a struct that the handler's argument points to. The handler runs on
 * the loop's thread as an ordinary callback, not in signal context, so it may print and stop the
 * loop. The stop ends run_until_complete before the hour-long task is done (asyncio.run raises
 * "Event loop stopped before Future completed." there); that is this program's normal end: it
 * exits 0. Closing the loop cancels the task and removes the handlers. One change of order: the
 * two lines are printed once the handlers are in place (in the task, before its sleep), so that
 * a signal sent as soon as the pid is read is always handled. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "loopcore.h"

typedef struct {
    const char *signame;
    lc_loop_t *loop;
} ask_exit_args_t;

static void ask_exit(void *arg)
{
    ask_exit_args_t *a = arg;
    printf("got signal %s: exit\n", a->signame);
    fflush(stdout);
    lc_loop_stop(a->loop);
}

static int main_task(void *arg, void **result)
{
    (void)result;
    ask_exit_args_t *args = arg; /* one per signal */
    lc_loop_t *loop;
    int r = lc_get_running_loop(&loop);
    if (r != 0)
        return r;
    static const int signums[] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        args[i].loop = loop;
        r = lc_loop_add_signal_handler(loop, signums[i], ask_exit, &args[i]);
        if (r != 0)
            return r;
    }
    printf("Event loop running for 1 hour, press Ctrl+C to interrupt.\n");
    printf("pid %d: send SIGINT or SIGTERM to exit.\n", (int)getpid());
    fflush(stdout);
    return lc_sleep(3600);
}

int main(void)
{
    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r != 0) {
        fprintf(stderr, "signal_handlers: %s\n", lc_strerror(r));
        return 1;
    }
    ask_exit_args_t args[2] = {{.signame = "SIGINT"}, {.signame = "SIGTERM"}};
    lc_future_t *task = NULL;
    r = lc_loop_create_task(loop, main_task, args, &task);
    if (r == 0)
        r = lc_loop_run_until_complete(loop, task, NULL);
    if (r == LC_ESTOPPED) /* ask_exit stopped the loop: the way out */
        r = 0;
    lc_future_unref(task);
    lc_loop_free(loop);
    if (r != 0) {
        fprintf(stderr, "signal_handlers: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
