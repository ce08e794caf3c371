/*
 * sentinel: follows the current master of a Redis Sentinel deployment. Asks a sentinel for
 * the master's address (SENTINEL get-master-addr-by-name), subscribes to +switch-master, and
 * reports every address it learns through a callback; relay.c re-points the upstream link.
 * Uses hiredis' async API on the relay's libevent loop. Owns its connections.
 */
#ifndef CASCADE_SENTINEL_H
#define CASCADE_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sentinel;

struct sentinel_callbacks {
    void *ctx;
    /* The master of master_name is at host:port (reported on every answer; may repeat). */
    void (*on_master)(void *ctx, const char *host, int port);
};

/* addrs: "host:port,host:port,...". NULL with a message if it does not parse. Names are
 * looked up through resolver (borrowed), without blocking. */
struct resolver;
struct sentinel *sentinel_new(struct event_base *base, struct resolver *resolver, const char *addrs,
                              const char *master_name, const char *password,
                              const struct sentinel_callbacks *cb, char *err, size_t errlen);
void sentinel_free(struct sentinel *s);

/* Connects, reconnects to the next sentinel after a failure, and re-asks periodically. */
void sentinel_cron(struct sentinel *s, int64_t now_ms);

#endif
