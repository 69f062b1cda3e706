/* The spec's "loop.subprocess_exec() and SubprocessProtocol" example, in C.
 *
 * A subprocess protocol that collects a child's output and resolves a future when the child
 * exits: it runs date(1) (asyncio's example runs Python printing datetime.now(); any program
 * printing the date will do) with stdin and stderr inherited and stdout piped, waits for the
 * exit, closes the transport, and prints "Current date: ...". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loopcore.h"

/* DateProtocol: the output so far and the future to resolve when the child exits. */
typedef struct {
    lc_future_t *exit_future;
    char output[256];
    size_t len;
} date_protocol_t;

static void pipe_data_received(lc_subprocess_transport_t *t, int fd, const char *data, size_t len,
                               void *user)
{
    date_protocol_t *p = user;
    size_t room = sizeof(p->output) - 1 - p->len;
    if (len > room)
        len = room;
    memcpy(p->output + p->len, data, len);
    p->len += len;
}

static void process_exited(lc_subprocess_transport_t *t, void *user)
{
    date_protocol_t *p = user;
    lc_future_set_result(p->exit_future, NULL);
}

static const lc_subprocess_protocol_t date_protocol = {
    .pipe_data_received = pipe_data_received,
    .process_exited = process_exited,
};

static int date_protocol_factory(void *arg, const lc_subprocess_protocol_t **proto, void **user)
{
    *proto = &date_protocol;
    *user = arg;
    return 0;
}

/* get_date(): the child's output, without its trailing newline. */
static int get_date(lc_loop_t *loop, date_protocol_t *p)
{
    int r = lc_loop_create_future(loop, &p->exit_future);
    if (r != 0)
        return r;
    /* Create the subprocess controlled by DateProtocol; redirect the standard output into a
     * pipe. */
    const char *const argv[] = {"date", "+%Y-%m-%d %H:%M:%S", NULL};
    lc_future_t *created = NULL;
    r = lc_loop_subprocess_exec(
        loop, date_protocol_factory, p, argv,
        &(lc_subprocess_opts_t){.stdin_mode = LC_STDIO_INHERIT, .stderr_mode = LC_STDIO_INHERIT},
        &created);
    lc_subprocess_transport_t *transport = NULL;
    if (r == 0)
        r = lc_loop_run_until_complete(loop, created, (void **)&transport);
    lc_future_unref(created);
    /* Wait for the subprocess exit using the process_exited() method of the protocol. */
    if (r == 0)
        r = lc_loop_run_until_complete(loop, p->exit_future, NULL);
    /* Close the stdout pipe. */
    if (transport != NULL)
        lc_subprocess_transport_close(transport);
    lc_future_unref(p->exit_future);
    while (p->len > 0 && p->output[p->len - 1] == '\n')
        p->len--;
    p->output[p->len] = '\0';
    return r;
}

int main(void)
{
    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r != 0) {
        fprintf(stderr, "subprocess_date: %s\n", lc_strerror(r));
        return 1;
    }
    static date_protocol_t protocol;
    r = get_date(loop, &protocol);
    lc_loop_free(loop);
    if (r != 0) {
        fprintf(stderr, "subprocess_date: %s\n", lc_strerror(r));
        return 1;
    }
    printf("Current date: %s\n", protocol.output);
    return 0;
}
