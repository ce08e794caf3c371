/*
 * tls: see tls.h. TLS 1.2 is the floor, as in Redis' default tls-protocols.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

void tls_last_error(char *out, size_t len)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (last)
        ERR_error_string_n(last, out, len);
    else if (len)
        out[0] = '\0';
}

static SSL_CTX *fail(SSL_CTX *ctx, const char *what, const char *file, char *err, size_t errlen)
{
    char ssl[256];
    tls_last_error(ssl, sizeof(ssl));
    snprintf(err, errlen, "%s %s: %s", what, file, ssl[0] ? ssl : "failed");
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *new_ctx(const SSL_METHOD *method, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

static SSL_CTX *load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return fail(ctx, "cannot load certificate", cert, err, errlen);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return fail(ctx, "cannot load private key", key, err, errlen);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(ctx, "private key does not match", cert, err, errlen);
    return ctx;
}

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file, const char *ca_file,
                        enum tls_client_auth auth, char *err, size_t errlen)
{
    if (!cert_file[0] || !key_file[0]) {
        snprintf(err, errlen, "tls.cert-file and tls.key-file are required for tls.port");
        return NULL;
    }
    SSL_CTX *ctx = new_ctx(TLS_server_method(), err, errlen);
    if (!ctx || !load_pair(ctx, cert_file, key_file, err, errlen))
        return NULL;
    if (auth != TLS_CLIENTS_NO) {
        if (!ca_file[0]) {
            snprintf(err, errlen, "tls.auth-clients needs tls.ca-file");
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
            return fail(ctx, "cannot load CA", ca_file, err, errlen);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (auth == TLS_CLIENTS_YES)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    return ctx;
}

SSL_CTX *tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file, char *err,
                        size_t errlen)
{
    SSL_CTX *ctx = new_ctx(TLS_client_method(), err, errlen);
    if (!ctx)
        return NULL;
    if (ca_file[0]) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
            return fail(ctx, "cannot load CA", ca_file, err, errlen);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return fail(ctx, "cannot load the system CAs", "", err, errlen);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert_file[0] && !load_pair(ctx, cert_file, key_file, err, errlen))
        return NULL;
    return ctx;
}

SSL *tls_client_session(SSL_CTX *ctx, const char *host, char *err, size_t errlen)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        snprintf(err, errlen, "cannot create a TLS session");
        return NULL;
    }
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                   : (SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1);
    if (ok != 1) {
        snprintf(err, errlen, "cannot set the TLS peer name %s", host);
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

void tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}
