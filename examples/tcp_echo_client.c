/* The spec's "TCP Echo Client" protocol example, in C.
 *
 * A TCP echo client using loop.create_connection(): it sends "Hello World!" to 127.0.0.1 on the
 * port given as argv[1] (8888 if none), prints what comes back, and when the server closes the
 * connection resolves a future that ends the program (the loop stops once it is done). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loopcore.h"

/* EchoClientProtocol: the message to send and the future to resolve when the connection goes. */
typedef struct {
    const char *message;
    lc_future_t *on_con_lost;
} echo_client_protocol_t;

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

static void connection_made(lc_transport_t *transport, void *user)
{
    echo_client_protocol_t *self = user;
    size_t len = strlen(self->message);
    int r = lc_transport_write(transport, self->message, len);
    if (r != 0)
        fprintf(stderr, "tcp_echo_client: write: %s\n", lc_strerror(r));
    printf("Data sent: ");
    print_repr(self->message, len);
    printf("\n");
    fflush(stdout);
}

static void data_received(lc_transport_t *transport, const char *data, size_t len, void *user)
{
    (void)transport;
    (void)user;
    printf("Data received: ");
    print_repr(data, len);
    printf("\n");
    fflush(stdout);
}

static void connection_lost(lc_transport_t *transport, int err, void *user)
{
    echo_client_protocol_t *self = user;
    (void)transport;
    if (err != 0)
        fprintf(stderr, "tcp_echo_client: connection lost: %s\n", lc_strerror(err));
    printf("The server closed the connection\n");
    fflush(stdout);
    lc_future_set_result(self->on_con_lost, NULL);
}

static const lc_protocol_t echo_client_protocol = {
    .connection_made = connection_made,
    .data_received = data_received,
    .connection_lost = connection_lost,
};

static int echo_client_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    *proto = &echo_client_protocol;
    *user = arg;
    return 0;
}

int main(int argc, char **argv)
{
    long port = 8888;
    if (argc > 2)
        goto usage;
    if (argc == 2) {
        char *end;
        port = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || port <= 0 || port > 65535)
            goto usage;
    }

    lc_loop_t *loop = NULL;
    int r = lc_new_event_loop(&loop);
    if (r != 0) {
        fprintf(stderr, "tcp_echo_client: %s\n", lc_strerror(r));
        return 1;
    }
    echo_client_protocol_t protocol = {"Hello World!", NULL};
    lc_transport_t *transport = NULL;
    lc_future_t *fut = NULL;
    void *res = NULL;
    r = lc_loop_create_future(loop, &protocol.on_con_lost);
    if (r == 0)
        r = lc_loop_create_connection(
            loop, echo_client_factory, &protocol,
            &(lc_connection_opts_t){.host = "127.0.0.1", .port_num = (int)port}, &fut);
    if (r == 0) {
        r = lc_loop_run_until_complete(loop, fut, &res);
        lc_future_unref(fut);
    }
    if (r == 0) {
        /* Keep the transport past connection_lost, to close it below as the example does. */
        transport = lc_transport_ref(res);
        /* Wait until the protocol signals that the connection is lost and close the transport. */
        r = lc_loop_run_until_complete(loop, protocol.on_con_lost, NULL);
        lc_transport_close(transport);
        lc_transport_unref(transport);
    } else {
        fprintf(stderr, "tcp_echo_client: create_connection: %s\n", lc_strerror(r));
    }
    lc_future_unref(protocol.on_con_lost);
    lc_loop_free(loop);
    if (r != 0) {
        if (transport != NULL)
            fprintf(stderr, "tcp_echo_client: %s\n", lc_strerror(r));
        return 1;
    }
    return 0;

usage:
    fprintf(stderr, "usage: tcp_echo_client [port]\n");
    return 2;
}
