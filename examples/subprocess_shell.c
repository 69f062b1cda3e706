/* The spec's subprocess example ("Subprocesses": run a shell command and report its exit code
 * and its output), in C, with loop.subprocess_shell() and a subprocess protocol in place of
 * create_subprocess_shell() and communicate().
 *
 * Runs argv[1] ("ls /zzz" if none) with /bin/sh -c, stdout and stderr piped, and prints
 *     ['ls /zzz' exited with 1]
 *     [stderr]
 *     ls: cannot access '/zzz': No such file or directory
 * (a "[stdout]" section too when the command writes to its standard output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loopcore.h"

/* What communicate() collects: both outputs, and the future resolved at connection_lost (the
 * child exited and both pipes are closed). */
typedef struct {
    char *out[2];
    size_t len[2];
    lc_future_t *done;
} run_protocol_t;

static void pipe_data_received(lc_subprocess_transport_t *t, int fd, const char *data, size_t len,
                               void *user)
{
    run_protocol_t *p = user;
    int k = fd == 1 ? 0 : 1;
    char *grown = realloc(p->out[k], p->len[k] + len + 1);
    if (grown == NULL)
        return;
    memcpy(grown + p->len[k], data, len);
    p->len[k] += len;
    grown[p->len[k]] = '\0';
    p->out[k] = grown;
}

static void connection_lost(lc_subprocess_transport_t *t, int err, void *user)
{
    run_protocol_t *p = user;
    lc_future_set_result(p->done, NULL);
}

static const lc_subprocess_protocol_t run_protocol = {
    .pipe_data_received = pipe_data_received,
    .connection_lost = connection_lost,
};

static int run_protocol_factory(void *arg, const lc_subprocess_protocol_t **proto, void **user)
{
    *proto = &run_protocol;
    *user = arg;
    return 0;
}

/* run(cmd) */
static int run(lc_loop_t *loop, const char *cmd)
{
    static run_protocol_t p;
    int r = lc_loop_create_future(loop, &p.done);
    if (r != 0)
        return r;
    lc_future_t *created = NULL;
    r = lc_loop_subprocess_shell(loop, run_protocol_factory, &p, cmd,
                                 &(lc_subprocess_opts_t){.stdin_mode = LC_STDIO_DEVNULL}, &created);
    lc_subprocess_transport_t *proc = NULL;
    if (r == 0)
        r = lc_loop_run_until_complete(loop, created, (void **)&proc);
    lc_future_unref(created);
    if (r == 0) {
        lc_subprocess_transport_ref(proc); /* read its returncode after connection_lost */
        r = lc_loop_run_until_complete(loop, p.done, NULL);
    }
    if (r == 0) {
        int returncode = 0;
        lc_subprocess_transport_get_returncode(proc, &returncode);
        printf("['%s' exited with %d]\n", cmd, returncode);
        if (p.len[0] > 0)
            printf("[stdout]\n%s\n", p.out[0]);
        if (p.len[1] > 0)
            printf("[stderr]\n%s\n", p.out[1]);
    }
    lc_subprocess_transport_unref(proc);
    lc_future_unref(p.done);
    free(p.out[0]);
    free(p.out[1]);
    return r;
}

int main(int argc, char **argv)
{
    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r == 0)
        r = run(loop, argc > 1 ? argv[1] : "ls /zzz");
    lc_loop_free(loop);
    if (r != 0) {
        fprintf(stderr, "subprocess_shell: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
