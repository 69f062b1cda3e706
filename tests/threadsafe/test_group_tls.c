/* Group servers over TLS: one SSL_CTX shared by the four loops of a group, in both modes; 120
 * clients (blocking OpenSSL in the test thread) each handshake, get their echo and close with
 * close_notify, and every loop must serve some. Run under TSan too: the loops share the context.
 * The certificate is made at test time by `openssl req` into a temporary directory. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/loop_fixture.h"

static char dir[64], cert[128], key[128];

static void echo_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)user;
    lc_transport_write(t, data, len);
}

static const lc_protocol_t echo_proto = {.data_received = echo_data};

static int echo_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    *proto = &echo_proto;
    *user = NULL;
    return 0;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void serve_tls(lc_group_server_mode_t mode)
{
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate_chain_file(sctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM), 1);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    assert_int_equal(SSL_CTX_load_verify_locations(cctx, cert, NULL), 1);

    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 4, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    lc_group_server_t *gs = NULL;
    assert_int_equal(lc_group_create_server(g, echo_factory, NULL,
                                            &(lc_group_server_opts_t){.host = "127.0.0.1",
                                                                      .mode = mode,
                                                                      .ssl = sctx,
                                                                      .ssl_handshake_timeout = 10},
                                            &gs),
                     0);
    SSL_CTX_free(sctx); /* the group server keeps its own reference */
    int port = lc_group_server_port(gs);

    enum { N = 120 };
    for (int i = 0; i < N; i++) {
        int fd = connect_to(port);
        assert_true(fd >= 0);
        SSL *ssl = SSL_new(cctx);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, "localhost");
        SSL_set1_host(ssl, "localhost");
        assert_int_equal(SSL_connect(ssl), 1);
        char msg[16], back[16];
        int len = snprintf(msg, sizeof(msg), "tls-%d", i);
        assert_int_equal(SSL_write(ssl, msg, len), len);
        int got = 0;
        while (got < len) {
            int k = SSL_read(ssl, back + got, (int)sizeof(back) - got);
            assert_true(k > 0);
            got += k;
        }
        assert_memory_equal(back, msg, (size_t)len);
        /* close_notify, then the server's answer to it. */
        if (SSL_shutdown(ssl) == 0)
            assert_int_equal(SSL_shutdown(ssl), 1);
        SSL_free(ssl);
        close(fd);
    }
    long total = 0;
    for (unsigned i = 0; i < 4; i++) {
        long c = lc_group_server_connections(gs, i);
        print_message("  tls mode %d loop %u: %ld connections\n", (int)mode, i, c);
        assert_true(c > 0); /* every loop serves some */
        total += c;
    }
    assert_int_equal(total, N);
    assert_int_equal(lc_group_server_close(gs), 0);
    assert_int_equal(lc_group_server_free(gs), 0);
    assert_int_equal(lc_group_free(g), 0);
    SSL_CTX_free(cctx);
}

static void test_group_tls_reuseport(void **state)
{
    (void)state;
    serve_tls(LC_GROUP_SERVER_REUSEPORT);
}

static void test_group_tls_handoff(void **state)
{
    (void)state;
    serve_tls(LC_GROUP_SERVER_HANDOFF);
}

static void test_group_tls_bad_timeout(void **state)
{
    (void)state;
    lc_group_t *g = NULL;
    assert_int_equal(lc_group_create(&g, &(lc_group_opts_t){.nloops = 1, .unpinned = true}), 0);
    assert_int_equal(lc_group_start(g), 0);
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    lc_group_server_t *gs = NULL;
    assert_int_equal(
        lc_group_create_server(
            g, echo_factory, NULL,
            &(lc_group_server_opts_t){.host = "127.0.0.1", .ssl = sctx, .ssl_shutdown_timeout = -1},
            &gs),
        LC_EINVAL);
    assert_null(gs);
    SSL_CTX_free(sctx);
    assert_int_equal(lc_group_free(g), 0);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/lc_gtls_XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost "
             ">/dev/null 2>&1",
             key, cert);
    signal(SIGPIPE, SIG_IGN);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_tls_reuseport),
        cmocka_unit_test(test_group_tls_handoff),
        cmocka_unit_test(test_group_tls_bad_timeout),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
