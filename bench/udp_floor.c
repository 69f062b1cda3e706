/* The UDP echo floor (issue 16): what echoing datagrams costs in system calls alone, for
 * udp_bench to compare loopcore's udp_echo_server with. One thread per socket, each socket bound
 * to HOST:PORT with SO_REUSEPORT (as udp_echo_server's loops are); each thread blocks in
 * recvmmsg (up to 64 datagrams, MSG_WAITFORONE: it returns as soon as one is there, with what
 * else is queued) and answers the whole batch with one sendmmsg, each datagram to its sender.
 * No event loop, no copies, no allocation.
 *
 *   udp_floor [--threads N] [--port P] [--host ADDR]
 *
 * Prints "listening on HOST:PORT (N threads)" once bound; runs until SIGTERM / SIGINT. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define BUF 65536

static void *serve(void *arg)
{
    int fd = (int)(long)arg;
    static __thread struct mmsghdr msgs[BATCH];
    static __thread struct iovec iov[BATCH];
    static __thread struct sockaddr_storage names[BATCH];
    char *bufs = malloc((size_t)BATCH * BUF);
    if (bufs == NULL)
        return NULL;
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){bufs + (size_t)i * BUF, BUF};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &names[i],
                                              .msg_namelen = sizeof(names[i]),
                                              .msg_iov = &iov[i],
                                              .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue; /* EINTR, or an ICMP error for an earlier answer */
        for (int i = 0; i < n; i++)
            iov[i].iov_len = msgs[i].msg_len;
        int done = 0;
        while (done < n) {
            int s = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            if (s <= 0)
                done++; /* a refused answer is dropped, as a server would */
            else
                done += s;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 1, port = 19101;
    const char *host = "127.0.0.1";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[i + 1];
        else
            threads = 0;
    }
    if (threads < 1 || threads > 1024 || port < 0 || port > 65535 || (argc - 1) % 2 != 0) {
        fprintf(stderr, "usage: udp_floor [--threads N] [--port P] [--host ADDR]\n");
        return 2;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "udp_floor: %s: not an IPv4 address\n", host);
        return 2;
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    for (int i = 0; i < threads; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
            bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
            perror("udp_floor");
            return 1;
        }
        if (i == 0) {
            socklen_t len = sizeof(a);
            getsockname(fd, (struct sockaddr *)&a, &len);
        }
        pthread_t th;
        if (pthread_create(&th, NULL, serve, (void *)(long)fd) != 0)
            return 1;
        pthread_detach(th);
    }
    printf("listening on %s:%d (%d threads)\n", host, ntohs(a.sin_port), threads);
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    return 0;
}
