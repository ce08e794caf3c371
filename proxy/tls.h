/*
 * tls: OpenSSL contexts for both sides, built from the [tls] settings.
 * Downstream: the relay's certificate, and optionally client certificates verified against
 * a CA. Upstream: the upstream's certificate verified against a CA and a host name, and an
 * optional client certificate. Owns nothing but what it returns; never logs.
 */
#ifndef CASCADE_TLS_H
#define CASCADE_TLS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

enum tls_client_auth {
    TLS_CLIENTS_NO,       /* no client certificate asked for */
    TLS_CLIENTS_OPTIONAL, /* asked for, verified if given */
    TLS_CLIENTS_YES,      /* required and verified */
};

/* Server context: cert and key (PEM), ca_file for client certificates. NULL + message. */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, const char *ca_file,
                        enum tls_client_auth auth, char *err, size_t errlen);

/* Client context: the peer is verified against ca_file (system CAs if empty); cert/key are
 * presented if given. NULL + message. */
SSL_CTX *tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file, char *err,
                        size_t errlen);

/* A client session for `host`: SNI plus name (or IP) verification. NULL + message. */
SSL *tls_client_session(SSL_CTX *ctx, const char *host, char *err, size_t errlen);

/* The newest OpenSSL error queued, as text ("" if none); clears the queue. */
void tls_last_error(char *out, size_t len);

void tls_ctx_free(SSL_CTX *ctx);

#endif
