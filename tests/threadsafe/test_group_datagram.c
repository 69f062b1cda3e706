/* Group datagram endpoints: one SO_REUSEPORT UDP endpoint per loop of a 4-loop group; datagrams
 * from many source ports reach every loop, each loop answers from its own socket, and close +
 * free run every loop's connection_lost. Either order of the group's end and the endpoint's:
 * close + free after lc_group_free, after lc_group_stop + join, or racing lc_group_stop. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

#define NLOOPS 4
#define NSOCKS 256

typedef struct {
    lc_group_t *g;
    _Atomic long received[NLOOPS];
    _Atomic int made, lost;
    _Atomic int lost_closed; /* connection_lost(LC_ECLOSED): the loop's close ended it */
    _Atomic int lost_other;  /* connection_lost with another code than 0 or LC_ECLOSED */
} shared_t;

typedef struct {
    shared_t *sh;
    unsigned index;
} per_loop_t;

static per_loop_t per_loop[NLOOPS];

static void gd_made(lc_datagram_transport_t *t, void *user)
{
    (void)t;
    atomic_fetch_add(&((per_loop_t *)user)->sh->made, 1);
}

static void gd_received(lc_datagram_transport_t *t, const char *data, size_t len,
                        const struct sockaddr *addr, socklen_t addrlen, void *user)
{
    per_loop_t *p = user;
    atomic_fetch_add(&p->sh->received[p->index], 1);
    lc_datagram_transport_sendto(t, data, len, addr, addrlen);
}

static void gd_lost(lc_datagram_transport_t *t, int err, void *user)
{
    (void)t;
    shared_t *sh = ((per_loop_t *)user)->sh;
    if (err == LC_ECLOSED)
        atomic_fetch_add(&sh->lost_closed, 1);
    else if (err != 0)
        atomic_fetch_add(&sh->lost_other, 1);
    atomic_fetch_add(&sh->lost, 1);
}

static const lc_datagram_protocol_t gd_proto = {
    .connection_made = gd_made, .datagram_received = gd_received, .connection_lost = gd_lost};

/* Runs on the loop that gets the endpoint: its user is that loop's slot. */
static int gd_factory(void *arg, const lc_datagram_protocol_t **proto, void **user)
{
    shared_t *sh = arg;
    lc_loop_t *loop = NULL;
    if (lc_get_running_loop(&loop) != 0)
        return LC_EINVAL;
    for (unsigned i = 0; i < NLOOPS; i++) {
        if (lc_group_loop(sh->g, i) == loop) {
            per_loop[i] = (per_loop_t){.sh = sh, .index = i};
            *proto = &gd_proto;
            *user = &per_loop[i];
            return 0;
        }
    }
    return LC_EINVAL;
}

static void test_group_datagram_every_loop_receives(void **state)
{
    (void)state;
    static shared_t sh;
    memset(&sh, 0, sizeof(sh));
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = NLOOPS, .unpinned = true}),
                     0);
    sh.g = g;
    assert_int_equal(lc_group_start(g), 0);
    lc_group_datagram_t *gd = NULL;
    assert_int_equal(lc_group_create_datagram_endpoint(
                         g, gd_factory, &sh, &(lc_group_datagram_opts_t){.host = "127.0.0.1"}, &gd),
                     0);
    assert_int_equal(atomic_load(&sh.made), NLOOPS);
    int port = lc_group_datagram_port(gd);
    assert_true(port > 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Many source ports: the kernel's hash spreads them over the four sockets. */
    int answered = 0;
    for (int i = 0; i < NSOCKS; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(fd >= 0);
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char msg[32], back[32];
        int len = snprintf(msg, sizeof(msg), "dg-%d", i);
        for (int tries = 0; tries < 5; tries++) {
            assert_int_equal(sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&to, sizeof(to)),
                             len);
            ssize_t n = recv(fd, back, sizeof(back), 0);
            if (n == len && memcmp(back, msg, (size_t)len) == 0) {
                answered++;
                break;
            }
        }
        close(fd);
    }
    assert_int_equal(answered, NSOCKS);
    long total = 0;
    for (int i = 0; i < NLOOPS; i++) {
        long r = atomic_load(&sh.received[i]);
        printf("loop %d received %ld\n", i, r);
        assert_true(r > 0);
        total += r;
    }
    assert_true(total >= NSOCKS);
    assert_int_equal(lc_group_datagram_close(gd), 0);
    assert_int_equal(lc_group_datagram_close(gd), 0);
    assert_int_equal(lc_group_datagram_free(gd), 0);
    assert_int_equal(atomic_load(&sh.lost), NLOOPS);
    lc_group_free(g);
}

/* IPv6, with GSO / GRO off: the group's endpoints answer on ::1. */
static void test_group_datagram_ipv6_single_segments(void **state)
{
    (void)state;
    static shared_t sh;
    memset(&sh, 0, sizeof(sh));
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = NLOOPS, .unpinned = true}),
                     0);
    sh.g = g;
    assert_int_equal(lc_group_start(g), 0);
    lc_group_datagram_t *gd = NULL;
    assert_int_equal(lc_group_create_datagram_endpoint(
                         g, gd_factory, &sh,
                         &(lc_group_datagram_opts_t){.host = "::1", .single_segments = true}, &gd),
                     0);
    struct sockaddr_in6 to = {.sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)lc_group_datagram_port(gd))};
    to.sin6_addr = in6addr_loopback;
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char back[16];
    ssize_t n = -1;
    for (int tries = 0; tries < 5 && n != 4; tries++) {
        assert_int_equal(sendto(fd, "six!", 4, 0, (struct sockaddr *)&to, sizeof(to)), 4);
        n = recv(fd, back, sizeof(back), 0);
    }
    assert_int_equal(n, 4);
    assert_memory_equal(back, "six!", 4);
    close(fd);
    assert_int_equal(lc_group_datagram_free(gd), 0);
    assert_int_equal(atomic_load(&sh.lost), NLOOPS);
    lc_group_free(g);
}

/* A started group of NLOOPS loops with a group endpoint on 127.0.0.1 that has answered once. */
static lc_group_t *started_with_endpoint(shared_t *sh, lc_group_datagram_t **gd, int *port)
{
    memset(sh, 0, sizeof(*sh));
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = NLOOPS, .unpinned = true}),
                     0);
    sh->g = g;
    assert_int_equal(lc_group_start(g), 0);
    assert_int_equal(lc_group_create_datagram_endpoint(
                         g, gd_factory, sh, &(lc_group_datagram_opts_t){.host = "127.0.0.1"}, gd),
                     0);
    assert_int_equal(atomic_load(&sh->made), NLOOPS);
    *port = lc_group_datagram_port(*gd);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char back[16];
    ssize_t n = -1;
    for (int tries = 0; tries < 5 && n != 4; tries++) {
        assert_int_equal(sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)), 4);
        n = recv(fd, back, sizeof(back), 0);
    }
    assert_int_equal(n, 4);
    close(fd);
    return g;
}

/* Every socket of the group endpoint is closed: a plain socket (no SO_REUSEPORT) binds the port. */
static void assert_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
}

/* lc_group_stop + lc_group_free first: the loops' close ends every endpoint (connection_lost
 * with LC_ECLOSED, on the freeing thread); close and free afterwards touch neither the freed
 * group nor its loops, and only release memory. */
static void test_group_datagram_close_and_free_after_group_free(void **state)
{
    (void)state;
    static shared_t sh;
    lc_group_datagram_t *gd = NULL;
    int port = 0;
    lc_group_t *g = started_with_endpoint(&sh, &gd, &port);
    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(atomic_load(&sh.lost), NLOOPS);
    assert_int_equal(atomic_load(&sh.lost_closed), NLOOPS);
    assert_port_free(port);
    assert_int_equal(lc_group_datagram_port(gd), port);
    assert_int_equal(lc_group_datagram_close(gd), 0);
    assert_int_equal(lc_group_datagram_close(gd), 0);
    assert_int_equal(lc_group_datagram_free(gd), 0);
    assert_int_equal(atomic_load(&sh.lost), NLOOPS);
}

/* The same with lc_group_free alone (it stops and joins), and free without a close first. */
static void test_group_datagram_free_after_group_free_alone(void **state)
{
    (void)state;
    static shared_t sh;
    lc_group_datagram_t *gd = NULL;
    int port = 0;
    lc_group_t *g = started_with_endpoint(&sh, &gd, &port);
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(atomic_load(&sh.lost_closed), NLOOPS);
    assert_int_equal(lc_group_datagram_free(gd), 0);
    assert_int_equal(atomic_load(&sh.lost), NLOOPS);
    assert_port_free(port);
}

/* Stopped and joined, not freed: close and free do not wait for loops that will never run again
 * (and report no error); the endpoints end when lc_group_free closes the loops, each once. */
static void test_group_datagram_close_and_free_after_group_stop(void **state)
{
    (void)state;
    static shared_t sh;
    lc_group_datagram_t *gd = NULL;
    int port = 0;
    lc_group_t *g = started_with_endpoint(&sh, &gd, &port);
    assert_int_equal(lc_group_stop(g), 0);
    assert_int_equal(lc_group_join(g), 0);
    assert_int_equal(lc_group_datagram_close(gd), 0);
    assert_int_equal(lc_group_datagram_free(gd), 0);
    assert_int_equal(atomic_load(&sh.lost), 0); /* no loop runs: nothing could end them yet */
    assert_int_equal(lc_group_free(g), 0);
    assert_int_equal(atomic_load(&sh.lost), NLOOPS);
    assert_int_equal(atomic_load(&sh.lost_closed), NLOOPS);
    assert_port_free(port);
}

/* lc_group_stop, then at once free, while the loops are stopping: each loop's endpoint is closed
 * there or by lc_group_free's close of the loop, exactly once, with 0 or LC_ECLOSED. Repeated, so
 * that TSan sees both outcomes. */
static void test_group_datagram_free_racing_group_stop(void **state)
{
    (void)state;
    static shared_t sh;
    for (int round = 0; round < 10; round++) {
        lc_group_datagram_t *gd = NULL;
        int port = 0;
        lc_group_t *g = started_with_endpoint(&sh, &gd, &port);
        assert_int_equal(lc_group_stop(g), 0);
        assert_int_equal(lc_group_datagram_free(gd), 0);
        assert_int_equal(lc_group_free(g), 0);
        assert_int_equal(atomic_load(&sh.lost), NLOOPS);
        assert_int_equal(atomic_load(&sh.lost_other), 0);
        assert_port_free(port);
    }
}

static void test_group_datagram_bad_arguments(void **state)
{
    (void)state;
    lc_group_datagram_t *gd = NULL;
    assert_int_equal(lc_group_create_datagram_endpoint(NULL, gd_factory, NULL, NULL, &gd),
                     LC_EINVAL);
    assert_null(gd);
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 2, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    assert_int_equal(lc_group_create_datagram_endpoint(
                         g, gd_factory, NULL, &(lc_group_datagram_opts_t){.host = "nope"}, &gd),
                     LC_EINVAL);
    assert_int_equal(lc_group_datagram_close(NULL), LC_EINVAL);
    lc_group_free(g);
}

int main(void)
{
    lc_test_watchdog(240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_datagram_every_loop_receives),
        cmocka_unit_test(test_group_datagram_ipv6_single_segments),
        cmocka_unit_test(test_group_datagram_bad_arguments),
        cmocka_unit_test(test_group_datagram_close_and_free_after_group_free),
        cmocka_unit_test(test_group_datagram_free_after_group_free_alone),
        cmocka_unit_test(test_group_datagram_close_and_free_after_group_stop),
        cmocka_unit_test(test_group_datagram_free_racing_group_stop),
    };
    return cmocka_run_group_tests_name("group_datagram", tests, NULL, NULL);
}
