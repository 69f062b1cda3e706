/* http_floor: the least CPU per request an HTTP/1.1 server can spend on this machine, the HTTP
 * counterpart of the peers' echo floor (shared/peers/floor.c). One thread, level-triggered
 * epoll, one read per readiness; it does not parse: every "\r\n\r\n" in the byte stream counts
 * as one request, and the answers to everything a read completed go out in one write of
 * prebuilt "Hello, World!" responses (what //bench:http_server sends for GET /plaintext).
 *
 * It is not a server for anything but this measurement: no methods, paths, bodies or limits. Its
 * CPU per request under `shared/peers/run.sh http --pipeline 16` is the floor that the system
 * calls alone cost (one read and one write per pipelined batch), against which the issue's
 * target for our server can be judged.
 *
 *   bazel build -c opt //bench:http_floor
 *   shared/peers/run.sh http --pipeline 16 --server-cmd "bazel-bin/bench/http_floor --port 19081" \
 *       --server-name http-floor --port 19081 --only py-uvloop
 *
 * Unlike the echo floor it buffers what a short write leaves (with EPOLLOUT), so a client that
 * stops reading costs memory for its connection only; a connection whose pending output passes
 * 4 MiB is closed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                               "Server: loopcore\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 13\r\n"
                               "\r\n"
                               "Hello, World!";
#define RESPONSE_LEN (sizeof(RESPONSE) - 1)
#define PREBUILT 256 /* responses in the prebuilt block */
#define PENDING_MAX (4u << 20)

typedef struct {
    int fd;
    unsigned match; /* how much of "\r\n\r\n" the stream ended with */
    char *out;      /* what a short write left */
    size_t out_len, out_off;
} conn_t;

static char inbuf[256 * 1024];
static char prebuilt[PREBUILT * RESPONSE_LEN];

static void conn_close(int ep, conn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

/* Counts the requests a chunk completes, carrying the partial terminator across reads. */
static size_t count_requests(conn_t *c, const char *p, size_t n)
{
    static const char term[4] = {'\r', '\n', '\r', '\n'};
    size_t count = 0;
    unsigned m = c->match;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == term[m]) {
            if (++m == 4) {
                count++;
                m = 0;
            }
        } else {
            m = ch == '\r' ? 1 : 0;
        }
    }
    c->match = m;
    return count;
}

/* Queues len bytes behind what is pending. Returns 0, or -1 when over the limit / no memory. */
static int pend(conn_t *c, const char *p, size_t len)
{
    size_t have = c->out_len - c->out_off;
    if (have + len > PENDING_MAX)
        return -1;
    char *b = malloc(have + len);
    if (b == NULL)
        return -1;
    if (have > 0)
        memcpy(b, c->out + c->out_off, have);
    memcpy(b + have, p, len);
    free(c->out);
    c->out = b;
    c->out_len = have + len;
    c->out_off = 0;
    return 0;
}

/* Writes what is pending, then `count` responses. Returns 0, or -1 to close. */
static int answer(int ep, conn_t *c, size_t count)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    bool had_pending = c->out_off < c->out_len;
    if (had_pending) {
        ssize_t k = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (k < 0 && errno != EAGAIN)
            return -1;
        if (k > 0)
            c->out_off += (size_t)k;
        if (c->out_off < c->out_len) {
            while (count > 0) {
                size_t now = count < PREBUILT ? count : PREBUILT;
                if (pend(c, prebuilt, now * RESPONSE_LEN) != 0)
                    return -1;
                count -= now;
            }
            return 0;
        }
        free(c->out);
        c->out = NULL;
        c->out_len = c->out_off = 0;
    }
    while (count > 0) {
        size_t now = count < PREBUILT ? count : PREBUILT;
        size_t len = now * RESPONSE_LEN;
        ssize_t k = write(c->fd, prebuilt, len);
        if (k < 0 && errno != EAGAIN)
            return -1;
        size_t done = k > 0 ? (size_t)k : 0;
        count -= now;
        if (done < len) {
            if (pend(c, prebuilt + done, len - done) != 0)
                return -1;
            while (count > 0) {
                now = count < PREBUILT ? count : PREBUILT;
                if (pend(c, prebuilt, now * RESPONSE_LEN) != 0)
                    return -1;
                count -= now;
            }
            ev.events = EPOLLIN | EPOLLOUT;
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return 0;
        }
    }
    if (had_pending)
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev); /* drained: stop watching EPOLLOUT */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--port") != 0) {
        fprintf(stderr, "usage: http_floor --port P\n");
        return 2;
    }
    char *end;
    long port = strtol(argv[2], &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "http_floor: bad port '%s'\n", argv[2]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < PREBUILT; i++)
        memcpy(prebuilt + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 4096) != 0) {
        perror("http_floor: socket/bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, evs[512];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0 && errno != EINTR) {
            perror("http_floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = calloc(1, sizeof(*c));
                    if (c == NULL) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            size_t count = 0;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = read(c->fd, inbuf, sizeof inbuf);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    conn_close(ep, c);
                    continue;
                }
                if (r > 0)
                    count = count_requests(c, inbuf, (size_t)r);
            }
            if ((count > 0 || (evs[i].events & EPOLLOUT)) && answer(ep, c, count) != 0)
                conn_close(ep, c);
        }
    }
}
