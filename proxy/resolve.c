/*
 * resolve: evdns_getaddrinfo behind a cancel-safe request (see resolve.h). libevent may run
 * the getaddrinfo callback inside evdns_getaddrinfo (numeric hosts, hosts file) and inside
 * evdns_getaddrinfo_cancel (with EVUTIL_EAI_CANCEL); the request is freed in that callback
 * in every case, and a cancelled one never reaches the caller.
 */
#include "resolve.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct resolver {
    struct evdns_base *dns; /* owned */
};

struct resolve_req {
    struct evdns_getaddrinfo_request *gai; /* libevent's, NULL once it answered */
    resolve_cb cb;
    void *ctx;
    char host[256]; /* for the error text */
    int cancelled;
    int answered; /* the callback ran inside evdns_getaddrinfo */
};

struct resolver *resolver_new(struct event_base *base, const char *resolv_conf, char *err,
                              size_t errlen)
{
    struct resolver *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    r->dns = evdns_base_new(base, 0);
    if (!r->dns) {
        snprintf(err, errlen, "cannot create the DNS resolver");
        free(r);
        return NULL;
    }
    /* nonzero: the file was unreadable or empty; libevent falls back to 127.0.0.1 */
    (void)evdns_base_resolv_conf_parse(r->dns, DNS_OPTIONS_ALL, resolv_conf);
    return r;
}

void resolver_free(struct resolver *r)
{
    if (!r)
        return;
    evdns_base_free(r->dns, 1); /* pending requests fail; their callbacks see a cancel */
    free(r);
}

static void gai_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct resolve_req *q = arg;
    q->gai = NULL;
    q->answered = 1;
    if (!q->cancelled && result != EVUTIL_EAI_CANCEL) {
        if (result == 0 && res) {
            q->cb(q->ctx, 1, res->ai_addr, (socklen_t)res->ai_addrlen, NULL);
        } else {
            char why[320];
            snprintf(why, sizeof(why), "cannot resolve %s: %s", q->host,
                     evutil_gai_strerror(result));
            q->cb(q->ctx, 0, NULL, 0, why);
        }
    }
    if (res)
        evutil_freeaddrinfo(res);
    free(q);
}

struct resolve_req *resolver_lookup(struct resolver *r, const char *host, int port, resolve_cb cb,
                                    void *ctx)
{
    struct resolve_req *q = calloc(1, sizeof(*q));
    if (!q)
        abort();
    q->cb = cb;
    q->ctx = ctx;
    snprintf(q->host, sizeof(q->host), "%s", host);
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct evdns_getaddrinfo_request *gai =
        evdns_getaddrinfo(r->dns, host, service, &hints, gai_cb, q);
    if (!gai)
        return NULL; /* answered (and freed) already */
    q->gai = gai;
    return q;
}

void resolve_cancel(struct resolve_req *q)
{
    if (!q)
        return;
    q->cancelled = 1;
    if (q->gai)
        evdns_getaddrinfo_cancel(q->gai); /* runs gai_cb now or later; it frees q */
}
