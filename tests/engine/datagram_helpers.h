/* Shared by the datagram tests: an echo endpoint, a recording client, and opening an endpoint
 * synchronously (run the loop until create_datagram_endpoint's future is done). */
#ifndef LOOPCORE_TESTS_DATAGRAM_HELPERS_H
#define LOOPCORE_TESTS_DATAGRAM_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "loopcore.h"

/* The echo endpoint: sends every datagram back to its sender. */
typedef struct {
    int made, lost, lost_err;
    long received;
    int errors;
    int last_error;
} dg_echo_t;

extern const lc_datagram_protocol_t dg_echo_proto;
int dg_echo_factory(void *arg, const lc_datagram_protocol_t **proto, void **user);

/* A client that records what it gets: the last datagram (up to 70,000 bytes) and counts. */
typedef struct {
    lc_loop_t *loop;
    int made, lost, lost_err;
    long received;
    char last[70000];
    size_t last_len;
    struct sockaddr_storage last_addr;
    socklen_t last_addrlen;
    int errors;
    int last_error;
    int paused, resumed;
    /* Optional hook for each datagram (the load tests check payloads there). */
    void (*on_datagram)(void *ctx, lc_datagram_transport_t *t, const char *data, size_t len,
                        const struct sockaddr *addr, socklen_t addrlen);
    void *ctx;
} dg_client_t;

extern const lc_datagram_protocol_t dg_client_proto;
int dg_client_factory(void *arg, const lc_datagram_protocol_t **proto, void **user);

/* Creates an endpoint and runs the loop until its future is done. Returns the transport (NULL on
 * failure, with *err set when err is not NULL). */
lc_datagram_transport_t *dg_open(lc_loop_t *loop, lc_datagram_protocol_factory_fn factory,
                                 void *arg, const lc_datagram_opts_t *opts, int *err);

/* Runs the loop until *counter >= target or seconds pass. Returns true if reached. */
bool dg_run_until(lc_loop_t *loop, const long *counter, long target, double seconds);
bool dg_run_until_int(lc_loop_t *loop, const int *counter, int target, double seconds);

/* The bound port of t. */
int dg_port(lc_datagram_transport_t *t);

/* Fills buf with a pattern that depends on seed. */
void dg_fill(char *buf, size_t len, unsigned seed);

#endif
