/* The spec's "TCP Echo Server" protocol example, in C.
 *
 * A TCP echo server using loop.create_server(): each connection gets its own protocol instance,
 * which prints the peer's address, prints the first data it receives, sends it back and closes
 * the connection. It serves 127.0.0.1 on the port given as argv[1] (8888 if none; 0 lets the
 * kernel pick one, which the "Serving on" line shows) until it is killed, or with --once until its
 * first connection is closed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loopcore.h"

/* The server as a whole: what every connection's protocol may need. */
typedef struct {
    lc_server_t *server;
    bool once; /* close the server once the first connection is lost */
} echo_app_t;

/* One protocol instance per connection (EchoServerProtocol). */
typedef struct {
    echo_app_t *app;
    lc_transport_t *transport;
} echo_server_protocol_t;

/* Prints s as Python's repr() of a str prints it: quoted, with quotes and control bytes escaped. */
static void print_repr(const char *s, size_t len)
{
    char quote = memchr(s, '\'', len) && !memchr(s, '"', len) ? '"' : '\'';
    putchar(quote);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == (unsigned char)quote)
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar(quote);
}

/* Prints an address as Python's socket module gives it: ('host', port) for IPv4,
 * ('host', port, flowinfo, scope_id) for IPv6. */
static void print_address(const struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        printf("('%s', %u, %u, %u)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo),
               a->sin6_scope_id);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        printf("('%s', %u)", host, ntohs(a->sin_port));
    }
}

static void connection_made(lc_transport_t *transport, void *user)
{
    echo_server_protocol_t *self = user;
    struct sockaddr_storage peername;
    socklen_t len = sizeof(peername);
    printf("Connection from ");
    if (lc_transport_get_peername(transport, (struct sockaddr *)&peername, &len) == 0)
        print_address(&peername);
    else
        printf("None");
    printf("\n");
    fflush(stdout);
    self->transport = transport;
}

static void data_received(lc_transport_t *transport, const char *data, size_t len, void *user)
{
    echo_server_protocol_t *self = user;
    (void)transport;
    printf("Data received: ");
    print_repr(data, len);
    printf("\n");

    printf("Send: ");
    print_repr(data, len);
    printf("\n");
    /* Flow control is not needed here: one read is echoed and the connection closed, so nothing
     * more is read and the write buffer holds at most that one read. A server that goes on
     * echoing pauses reading on pause_writing and resumes on resume_writing (bench/echo_server.c),
     * or a client that never reads grows its write buffer without bound. */
    int r = lc_transport_write(self->transport, data, len);
    if (r != 0)
        fprintf(stderr, "tcp_echo_server: write: %s\n", lc_strerror(r));

    printf("Close the client socket\n");
    fflush(stdout);
    lc_transport_close(self->transport);
}

static void connection_lost(lc_transport_t *transport, int err, void *user)
{
    echo_server_protocol_t *self = user;
    (void)transport;
    if (err != 0)
        fprintf(stderr, "tcp_echo_server: connection lost: %s\n", lc_strerror(err));
    /* With --once the first connection that goes ends serve_forever() (closing the server
     * resolves its future). */
    if (self->app->once && self->app->server != NULL)
        lc_server_close(self->app->server);
    free(self);
}

static const lc_protocol_t echo_server_protocol = {
    .connection_made = connection_made,
    .data_received = data_received,
    .connection_lost = connection_lost,
};

/* Each client connection will create a new protocol instance. */
static int echo_server_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    echo_server_protocol_t *self = calloc(1, sizeof(*self));
    if (self == NULL)
        return LC_ENOMEM;
    self->app = arg;
    *proto = &echo_server_protocol;
    *user = self;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: tcp_echo_server [port] [--once]\n");
    return 2;
}

int main(int argc, char **argv)
{
    echo_app_t app = {NULL, false};
    long port = 8888;
    bool have_port = false;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--once") == 0) {
            app.once = true;
        } else if (!have_port) {
            port = strtol(argv[i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || port < 0 || port > 65535)
                return usage();
            have_port = true;
        } else {
            return usage();
        }
    }

    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r != 0) {
        fprintf(stderr, "tcp_echo_server: %s\n", lc_strerror(r));
        return 1;
    }
    lc_future_t *fut = NULL;
    void *res = NULL;
    r = lc_loop_create_server(loop, echo_server_factory, &app,
                              &(lc_server_opts_t){.host = "127.0.0.1", .port = (int)port}, &fut);
    if (r == 0) {
        r = lc_loop_run_until_complete(loop, fut, &res);
        lc_future_unref(fut);
        fut = NULL;
    }
    if (r != 0) {
        fprintf(stderr, "tcp_echo_server: create_server: %s\n", lc_strerror(r));
        lc_loop_free(loop);
        return 1;
    }
    app.server = res;

    int fds[4];
    size_t nfds = 4;
    struct sockaddr_storage sockname;
    socklen_t len = sizeof(sockname);
    printf("Serving on ");
    if (lc_server_sockets(app.server, fds, &nfds) == 0 && nfds > 0 &&
        getsockname(fds[0], (struct sockaddr *)&sockname, &len) == 0)
        print_address(&sockname);
    printf("\n");
    fflush(stdout);

    /* Serve requests until killed (or, with --once, until the first connection is closed). */
    r = lc_server_serve_forever(app.server, &fut);
    if (r == 0) {
        r = lc_loop_run_until_complete(loop, fut, NULL);
        lc_future_unref(fut);
        fut = NULL;
    }
    if (r == 0) {
        /* Close the server and wait for its last connection to go. */
        lc_server_close(app.server);
        r = lc_server_wait_closed(app.server, &fut);
        if (r == 0) {
            r = lc_loop_run_until_complete(loop, fut, NULL);
            lc_future_unref(fut);
        }
    }
    lc_server_free(app.server);
    app.server = NULL;
    lc_loop_free(loop);
    if (r != 0) {
        fprintf(stderr, "tcp_echo_server: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;
}
