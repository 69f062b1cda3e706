/* tls_write_bench: many small writes on a TLS transport against one writelines of the same
 * pieces (issue 13, "writes that coalesce small plaintext writes into full records"): the
 * server's CPU per message and the records on the wire, same run, rounds interleaved.
 *
 *   bazel run -c opt //bench:tls_write_bench [-- [--msgs N] [--pieces K] [--piece-size B]
 *                                                [--rounds R]]
 *
 * Workload: one TLS 1.3 connection on 127.0.0.1 (ECDSA P-256 certificate made with `openssl
 * req` into a temporary folder). The server is a loopcore TLS server on a loop on the main
 * thread; for each 1-byte request it answers K pieces of B bytes (defaults 8 and 64: a response
 * built from a status line, headers and a body, as frameworks write it). Modes: write (K calls
 * of lc_transport_write) and writelines (one lc_transport_writelines of the K pieces: one
 * record, the most a protocol can do by itself). The client is a thread with blocking OpenSSL
 * that sends N requests (default 20000) one at a time and reads each whole answer, counting the
 * application-data records it receives (SSL_set_msg_callback, TLS 1.3 inner content type). Each
 * round runs both modes, the order alternating; R rounds (default 3); medians.
 *
 * Output (stdout), per mode, then the ratio:
 *   bench=tls_small_writes pieces=<K> piece_size=<B> mode=write|writelines msgs_per_s=<x>
 *       server_cpu_us_per_msg=<x> records_per_msg=<x> rounds=<R> msgs=<N>
 *   bench=tls_small_writes pieces=<K> piece_size=<B> ratio=write/writelines cpu=<x> records=<x>
 * Lines starting with '#' are the single runs. Public API only. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/support/tls.h"
#include "loopcore.h"

#define MAX_PIECES 256
#define MAX_ROUNDS 15

enum { MODE_WRITE, MODE_WRITELINES };
static const char *const mode_name[] = {"write", "writelines"};

static long n_msgs = 20000, n_pieces = 8, piece_size = 64, n_rounds = 3;
static char certdir[64], cert_path[128];
static char *answer; /* n_pieces * piece_size bytes */

static int mode;

typedef struct {
    int port;
    lc_loop_t *loop;
    double wall;
    long records;
    bool ok;
    char why[128];
} client_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double thread_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* ---- the server --------------------------------------------------------------------------- */

static void srv_data(lc_transport_t *t, const char *data, size_t len, void *user)
{
    (void)data;
    (void)user;
    for (size_t r = 0; r < len; r++) { /* one answer per request byte */
        if (mode == MODE_WRITE) {
            for (long i = 0; i < n_pieces; i++)
                lc_transport_write(t, answer + i * piece_size, (size_t)piece_size);
        } else {
            struct iovec iov[MAX_PIECES];
            for (long i = 0; i < n_pieces; i++)
                iov[i] = (struct iovec){answer + i * piece_size, (size_t)piece_size};
            lc_transport_writelines(t, iov, (size_t)n_pieces);
        }
    }
}

static const lc_protocol_t srv_proto = {.data_received = srv_data};

static int srv_factory(void *arg, const lc_protocol_t **proto, void **user)
{
    (void)arg;
    *proto = &srv_proto;
    *user = NULL;
    return 0;
}

/* ---- the client --------------------------------------------------------------------------- */

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    long *records = arg;
    if (!write_p && content_type == SSL3_RT_INNER_CONTENT_TYPE && len == 1 &&
        ((const unsigned char *)buf)[0] == SSL3_RT_APPLICATION_DATA)
        (*records)++;
}

static void stop_loop(void *arg) { lc_loop_stop(arg); }

static void *client_main(void *arg)
{
    client_t *c = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_load_verify_locations(ctx, cert_path, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    SSL *ssl = NULL;
    size_t want = (size_t)(n_pieces * piece_size);
    char *buf = malloc(want);
    if (buf == NULL || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        snprintf(c->why, sizeof(c->why), "connect failed");
        goto out;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1) {
        snprintf(c->why, sizeof(c->why), "handshake failed");
        goto out;
    }
    long records = 0;
    SSL_set_msg_callback(ssl, msg_cb);
    SSL_set_msg_callback_arg(ssl, &records);
    double t0 = now_s();
    for (long m = 0; m < n_msgs; m++) {
        if (SSL_write(ssl, "x", 1) != 1) {
            snprintf(c->why, sizeof(c->why), "write failed at %ld", m);
            goto out;
        }
        for (size_t got = 0; got < want;) {
            int n = SSL_read(ssl, buf + got, (int)(want - got));
            if (n <= 0) {
                snprintf(c->why, sizeof(c->why), "read failed at %ld", m);
                goto out;
            }
            got += (size_t)n;
        }
        if (memcmp(buf, answer, want) != 0) {
            snprintf(c->why, sizeof(c->why), "answer %ld differs", m);
            goto out;
        }
    }
    c->wall = now_s() - t0;
    c->records = records;
    c->ok = true;
    SSL_shutdown(ssl);
out:
    SSL_free(ssl);
    close(fd);
    free(buf);
    SSL_CTX_free(ctx);
    lc_loop_call_soon_threadsafe(c->loop, stop_loop, c->loop, NULL);
    return NULL;
}

/* ---- one run ------------------------------------------------------------------------------ */

typedef struct {
    double msgs_per_s, cpu_us, records;
} result_t;

static int run_one(SSL_CTX *sctx, int m, result_t *out)
{
    mode = m;
    lc_loop_t *loop = NULL;
    if (lc_new_event_loop(&loop) != 0)
        return -1;
    lc_future_t *fut = NULL;
    lc_server_t *server = NULL;
    int r = lc_loop_create_server(loop, srv_factory, NULL,
                                  &(lc_server_opts_t){.host = "127.0.0.1", .ssl = sctx}, &fut);
    if (r == 0)
        r = lc_loop_run_until_complete(loop, fut, (void **)&server);
    lc_future_unref(fut);
    if (r != 0) {
        fprintf(stderr, "tls_write_bench: server: %s\n", lc_strerror(r));
        lc_loop_free(loop);
        return -1;
    }
    int fds[2];
    size_t nfd = 2;
    lc_server_sockets(server, fds, &nfd);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    getsockname(fds[0], (struct sockaddr *)&sin, &sl);
    client_t c = {.port = ntohs(sin.sin_port), .loop = loop};
    pthread_t th;
    double cpu0 = thread_cpu_s();
    if (pthread_create(&th, NULL, client_main, &c) != 0) {
        lc_loop_free(loop);
        return -1;
    }
    lc_loop_run_forever(loop);
    double cpu = thread_cpu_s() - cpu0;
    pthread_join(th, NULL);
    lc_server_free(server);
    lc_loop_free(loop);
    if (!c.ok) {
        fprintf(stderr, "tls_write_bench: client: %s\n", c.why);
        return -1;
    }
    out->msgs_per_s = (double)n_msgs / c.wall;
    /* The server thread's CPU includes the handshake: one in n_msgs messages. */
    out->cpu_us = cpu * 1e6 / (double)n_msgs;
    out->records = (double)c.records / (double)n_msgs;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, long n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: tls_write_bench [--msgs N] [--pieces K] [--piece-size B] "
                    "[--rounds R]\n");
    return 2;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        long *dst = NULL, lo = 1, hi = 0;
        if (strcmp(argv[i], "--msgs") == 0)
            dst = &n_msgs, hi = 100000000;
        else if (strcmp(argv[i], "--pieces") == 0)
            dst = &n_pieces, hi = MAX_PIECES;
        else if (strcmp(argv[i], "--piece-size") == 0)
            dst = &piece_size, hi = 65536;
        else if (strcmp(argv[i], "--rounds") == 0)
            dst = &n_rounds, hi = MAX_ROUNDS;
        if (dst == NULL || i + 1 >= argc || parse_long(argv[i + 1], lo, hi, dst) != 0)
            return usage();
        i++;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(certdir, sizeof(certdir), "/tmp/lc_twb_XXXXXX");
    if (mkdtemp(certdir) == NULL)
        return 1;
    char key_path[128], cmd[512];
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", certdir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", certdir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost "
             ">/dev/null 2>&1",
             key_path, cert_path);
    int status = 1;
    SSL_CTX *sctx = NULL;
    answer = malloc((size_t)(n_pieces * piece_size));
    if (answer == NULL || system(cmd) != 0)
        goto out;
    for (long i = 0; i < n_pieces * piece_size; i++)
        answer[i] = (char)('a' + i % 26);
    char err[256];
    sctx = lcb_tls_server_ctx(cert_path, key_path, err, sizeof(err));
    if (sctx == NULL) {
        fprintf(stderr, "tls_write_bench: %s\n", err);
        goto out;
    }
    double mps[2][MAX_ROUNDS], cpu[2][MAX_ROUNDS], rec[2][MAX_ROUNDS];
    for (long r = 0; r < n_rounds; r++) {
        for (int k = 0; k < 2; k++) {
            int m = (int)((k + r) % 2);
            result_t res;
            if (run_one(sctx, m, &res) != 0)
                goto out;
            mps[m][r] = res.msgs_per_s;
            cpu[m][r] = res.cpu_us;
            rec[m][r] = res.records;
            printf("# round=%ld mode=%s msgs_per_s=%.0f server_cpu_us_per_msg=%.2f "
                   "records_per_msg=%.2f\n",
                   r, mode_name[m], res.msgs_per_s, res.cpu_us, res.records);
            fflush(stdout);
        }
    }
    double med_cpu[2], med_rec[2];
    for (int m = 0; m < 2; m++) {
        double med_mps = median(mps[m], n_rounds);
        med_cpu[m] = median(cpu[m], n_rounds);
        med_rec[m] = median(rec[m], n_rounds);
        printf("bench=tls_small_writes pieces=%ld piece_size=%ld mode=%s msgs_per_s=%.0f "
               "server_cpu_us_per_msg=%.2f records_per_msg=%.2f rounds=%ld msgs=%ld\n",
               n_pieces, piece_size, mode_name[m], med_mps, med_cpu[m], med_rec[m], n_rounds,
               n_msgs);
    }
    printf("bench=tls_small_writes pieces=%ld piece_size=%ld ratio=write/writelines cpu=%.3f "
           "records=%.3f\n",
           n_pieces, piece_size, med_cpu[0] / med_cpu[1], med_rec[0] / med_rec[1]);
    status = 0;
out:
    SSL_CTX_free(sctx);
    free(answer);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", certdir);
    if (system(cmd) != 0)
        status = 1;
    return status;
}
