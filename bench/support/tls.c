/* The benchmark servers' SSL_CTX: certificate, key, versions, resumption off. */
#include "bench/support/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>

struct ssl_ctx_st *lcb_tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    return ctx;
fail:
    snprintf(err, errlen, "%s",
             ERR_reason_error_string(ERR_peek_last_error()) != NULL
                 ? ERR_reason_error_string(ERR_peek_last_error())
                 : "cannot make the TLS context");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}
