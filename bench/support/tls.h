/* The TLS context of the benchmark servers (--tls-cert / --tls-key). */
#ifndef LOOPCORE_BENCH_SUPPORT_TLS_H
#define LOOPCORE_BENCH_SUPPORT_TLS_H

#include <stddef.h>

struct ssl_ctx_st;

/** A server SSL_CTX with cert (a PEM chain) and key, TLS 1.2 and 1.3, and no session resumption
 *  (no session cache, no tickets: as the peers harness configures nginx, h2o and tls-floor, so
 *  that every full handshake costs the server what it costs them). NULL on failure, with the
 *  reason in err. The caller frees it with SSL_CTX_free once the servers hold their references. */
struct ssl_ctx_st *lcb_tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen);

#endif
