/* The sock_* echo server (issue 15): one loop on 127.0.0.1:PORT; a task accepts with
 * lc_loop_sock_accept and gives each connection a task that echoes with lc_loop_sock_recv_into
 * and lc_loop_sock_sendall (asyncio's sock_* echo, in C), for the peers harness's echo mode
 * against the epoll floor and Python's sock_* echo (bench/sock_echo.py).
 *
 *   sock_echo_server [--port P] [--bufsize N]
 *
 * --port: default 19000. --bufsize: bytes per sock_recv_into, default 65536. SIGTERM or SIGINT
 * stop the loop (through a pipe watched with lc_loop_add_reader) and it exits 0. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loopcore.h"

static lc_loop_t *loop;
static size_t bufsize = 65536;
static int sig_pipe[2];

static int echo_conn(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    unsigned char *buf = malloc(bufsize);
    int e = buf != NULL ? 0 : LC_ENOMEM;
    while (e == 0) {
        lc_future_t *f = NULL;
        void *res = NULL;
        e = lc_loop_sock_recv_into(loop, fd, buf, bufsize, &f);
        if (e == 0)
            e = lc_await(f, &res);
        lc_future_unref(f);
        if (e != 0 || lc_sock_count(res) == 0)
            break;
        e = lc_loop_sock_sendall(loop, fd, buf, lc_sock_count(res), &f);
        if (e == 0)
            e = lc_await(f, NULL);
        lc_future_unref(f);
    }
    close(fd);
    free(buf);
    return 0;
}

static int accept_loop(void *arg, void **result)
{
    (void)result;
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        lc_future_t *f = NULL;
        lc_sock_accepted_t *a = NULL;
        int e = lc_loop_sock_accept(loop, lfd, &f);
        if (e == 0)
            e = lc_await(f, (void **)&a);
        if (e == LC_ECLOSED || e == LC_ECANCELLED) {
            lc_future_unref(f);
            return 0;
        }
        if (e == 0) {
            int one = 1;
            setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            lc_future_t *t = NULL;
            if (lc_loop_create_task(loop, echo_conn, (void *)(intptr_t)a->fd, &t) != 0)
                close(a->fd);
            lc_future_unref(t);
        } else {
            fprintf(stderr, "sock_echo_server: accept: %s\n", lc_strerror(e));
        }
        lc_future_unref(f);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    ssize_t n = write(sig_pipe[1], "x", 1);
    (void)n;
}

static void stop_cb(void *arg)
{
    (void)arg;
    lc_loop_remove_reader(loop, sig_pipe[0], NULL);
    lc_loop_stop(loop);
}

int main(int argc, char **argv)
{
    int port = 19000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--bufsize") == 0 && i + 1 < argc) {
            long n = atol(argv[++i]);
            if (n <= 0) {
                fprintf(stderr, "sock_echo_server: --bufsize must be > 0\n");
                return 2;
            }
            bufsize = (size_t)n;
        } else {
            fprintf(stderr, "usage: sock_echo_server [--port P] [--bufsize N]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        perror("pipe2");
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(lfd, 1024) != 0) {
        perror("sock_echo_server: listen");
        return 1;
    }
    int r = lc_new_event_loop(&loop);
    lc_future_t *acceptor = NULL;
    if (r == 0)
        r = lc_loop_add_reader(loop, sig_pipe[0], stop_cb, NULL);
    if (r == 0)
        r = lc_loop_create_task(loop, accept_loop, (void *)(intptr_t)lfd, &acceptor);
    if (r == 0)
        r = lc_loop_run_forever(loop);
    lc_future_unref(acceptor);
    lc_loop_free(loop); /* unwinds the tasks: their awaits return LC_ECLOSED */
    close(lfd);
    if (r != 0) {
        fprintf(stderr, "sock_echo_server: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
