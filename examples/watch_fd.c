/* The spec's "Watch a file descriptor for read events" example, in C.
 *
 * Wait until a file descriptor received some data using lc_loop_add_reader() and then close the
 * event loop. The reader removes itself before the sockets are closed: the rule for every fd
 * watched by the loop (include/loopcore/sock.h). */
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loopcore.h"

typedef struct {
    lc_loop_t *loop;
    int rsock, wsock;
} ctx_t;

static void reader(void *arg)
{
    ctx_t *c = arg;
    char data[100];
    ssize_t n = recv(c->rsock, data, sizeof(data), 0);
    printf("Received: %.*s\n", n > 0 ? (int)n : 0, data);
    /* We are done: unregister the file descriptor. */
    lc_loop_remove_reader(c->loop, c->rsock, NULL);
    /* Stop the event loop. */
    lc_loop_stop(c->loop);
}

/* Simulate the reception of data from the network. */
static void send_abc(void *arg)
{
    ctx_t *c = arg;
    if (send(c->wsock, "abc", 3, 0) != 3)
        perror("send");
}

int main(void)
{
    /* Create a pair of connected file descriptors. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        return 1;
    }
    ctx_t c = {.rsock = sv[0], .wsock = sv[1]};
    int r = lc_new_event_loop(&c.loop);
    /* Register the file descriptor for read event. */
    if (r == 0)
        r = lc_loop_add_reader(c.loop, c.rsock, reader, &c);
    if (r == 0)
        r = lc_loop_call_soon(c.loop, send_abc, &c, NULL);
    /* Run the event loop. */
    if (r == 0)
        r = lc_loop_run_forever(c.loop);
    /* We are done, close sockets and the event loop. */
    close(c.rsock);
    close(c.wsock);
    if (c.loop != NULL)
        lc_loop_free(c.loop);
    if (r != 0) {
        fprintf(stderr, "watch_fd: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
