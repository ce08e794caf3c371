/*
 * server: the downstream listener and every connection until it becomes a replica.
 * Dispatches the commands a relay answers (PING, AUTH, INFO, ROLE, CONFIG GET, CLIENT, ...);
 * PSYNC/SYNC hand the connection to relay.c, which makes it a replica session.
 * Owns the listener and its client connections. Borrows the config and stats.
 */
#ifndef CASCADE_SERVER_H
#define CASCADE_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "compat.h"
#include "replica_hello.h"
#include "config.h"
#include "net.h"
#include "resp.h"
#include "stats.h"

struct bufferevent;
struct event_base;
struct server;

/* A PSYNC or SYNC request, with what the connection told before it. */
struct server_sync_request {
    const struct resp_command *cmd;    /* PSYNC <replid> <offset> [...] or SYNC */
    const struct replica_hello *hello; /* the client's, plain_sync set: copy what is kept */
};

struct server_callbacks {
    void *ctx;
    /* INFO text for one section name ("" = default set, "all", or a name). */
    void (*info)(void *ctx, const char *section, struct sbuf *out);
    /* ROLE reply, RESP-encoded. */
    void (*role)(void *ctx, struct sbuf *out);
    /* REPLICAOF host port. 0 or -1 with an error text (without "-ERR "). */
    int (*replicaof)(void *ctx, const char *host, int port, char *err, size_t errlen);
    /* PSYNC/SYNC: 0 = the connection (bev) now belongs to the callee; -1 = refused, err is
     * the whole error line to reply (e.g. "NOMASTERLINK ..."), and the client stays. */
    int (*sync)(void *ctx, struct bufferevent *bev, const struct server_sync_request *req,
                char *err, size_t errlen);
    /* CLIENT LIST lines for connections the server no longer owns (replicas). */
    void (*client_list)(void *ctx, struct sbuf *out);
    /* Connections owned elsewhere, for max-clients. */
    size_t (*other_connections)(void *ctx);
    /* CONFIG SET section.key value (reloadable keys). 0 or -1 with a message. */
    int (*config_set)(void *ctx, const char *key, const char *value, char *err, size_t errlen);
    /* CONFIG RELOAD: re-read the file. 0 or -1 with a message. */
    int (*config_reload)(void *ctx, char *err, size_t errlen);
    /* Who the upstream is (HELLO reports it), NULL while unknown. */
    const struct compat_identity *(*identity)(void *ctx);
};

struct server *server_new(struct event_base *base, const struct config *cfg, struct stats *stats,
                          const struct server_callbacks *cb);
void server_free(struct server *s);

/* Bind and listen on cfg bind:port (first raising the fd limit toward what max-clients needs,
 * or serving fewer clients if it cannot). 0 or -1 with a message. */
__attribute__((warn_unused_result)) int server_listen(struct server *s, char *err, size_t errlen);

/* Handshake and idle timeouts of plain clients. */
void server_cron(struct server *s, int64_t now_ms);

/* Also accept TLS connections on port with ctx (borrowed; must outlive the server). */
typedef struct ssl_ctx_st SSL_CTX;
__attribute__((warn_unused_result)) int server_listen_tls(struct server *s, int port, SSL_CTX *ctx,
                                                          char *err, size_t errlen);

/* Stop accepting (graceful shutdown). */
void server_stop_listening(struct server *s);

size_t server_client_count(const struct server *s);

/* Bytes in plain clients' input and output buffers (INFO's mem_clients_normal). */
size_t server_client_memory(const struct server *s);

/* replicas.max-clients, or fewer if the fd limit leaves room for fewer (see server_listen). */
int64_t server_max_clients(const struct server *s);

#endif
