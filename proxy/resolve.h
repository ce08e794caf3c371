/*
 * resolve: host names to addresses without blocking the loop (libevent's evdns), for the
 * upstream and the sentinels. A slow or silent DNS server delays only the link that asked;
 * every replica and client of the relay is served meanwhile. /etc/hosts and numeric
 * addresses answer at once (the callback may run before resolver_lookup returns).
 * Owns its evdns base. Must not touch links: results go to the caller's callback.
 */
#ifndef CASCADE_RESOLVE_H
#define CASCADE_RESOLVE_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct resolver;
struct resolve_req;

/* ok: addr/len hold the first address; otherwise err says why. */
typedef void (*resolve_cb)(void *ctx, int ok, const struct sockaddr *addr, socklen_t len,
                           const char *err);

/* Name servers and options from resolv_conf (e.g. /etc/resolv.conf), hosts from /etc/hosts.
 * NULL with a message if the base cannot be made. A file that cannot be read is not fatal:
 * libevent then asks 127.0.0.1, as the C library would. */
struct resolver *resolver_new(struct event_base *base, const char *resolv_conf, char *err,
                              size_t errlen);
/* Pending lookups are cancelled first (their callbacks never run). NULL is a no-op. */
void resolver_free(struct resolver *r);

/*
 * Looks host up; cb(ctx, ...) runs exactly once, unless resolve_cancel is called first.
 * Returns the pending request, or NULL when cb already ran (a numeric address, a hosts
 * entry, or an immediate failure).
 */
struct resolve_req *resolver_lookup(struct resolver *r, const char *host, int port, resolve_cb cb,
                                    void *ctx);
/* The callback of a pending request will not run. Call it only before the callback ran. */
void resolve_cancel(struct resolve_req *q);

#endif
