/*
 * sentinel: two async connections to one sentinel at a time: `cmd` for queries and `sub` for
 * the +switch-master subscription (a subscribed connection can send nothing else). When
 * either drops, both are closed and the next sentinel of the list is tried after a delay.
 * hiredis frees an async context after its disconnect callback: pointers to a context are
 * cleared there, never freed twice.
 */
#include "sentinel.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <netinet/in.h>

#include "log.h"
#include "net.h"
#include "resolve.h"

#define MAX_SENTINELS 16
#define RETRY_MS      1000 /* before trying the next sentinel */
#define REQUERY_MS    5000 /* ask again even without a +switch-master message */

struct sentinel_addr {
    char host[256];
    int port;
};

struct sentinel {
    struct event_base *base;    /* borrowed */
    struct resolver *resolver;  /* borrowed */
    struct resolve_req *lookup; /* the current sentinel's name, while it is looked up */
    struct sentinel_addr addrs[MAX_SENTINELS];
    int naddrs;
    int current;       /* index in addrs */
    char *master_name; /* owned */
    char *password;    /* owned; "" = none */
    struct sentinel_callbacks cb;
    redisAsyncContext *cmd; /* owned by hiredis once connected; NULL when down */
    redisAsyncContext *sub;
    int64_t retry_at_ms; /* next connect attempt */
    int64_t last_query_ms;
    char peer[NET_ADDR_LEN];
    int closing; /* sentinel_free in progress */
};

static void drop_both(struct sentinel *s, const char *why);

/* Clear our pointer to ac; true if it was still ours (not already being dropped). */
static int forget(struct sentinel *s, const redisAsyncContext *ac)
{
    if (ac == s->cmd) {
        s->cmd = NULL;
        return 1;
    }
    if (ac == s->sub) {
        s->sub = NULL;
        return 1;
    }
    return 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct sentinel *s = ac->data;
    (void)status;
    if (s && forget(s, ac) && !s->closing)
        drop_both(s, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct sentinel *s = ac->data;
    /* A failed connect is freed by hiredis after this callback. */
    if (status != REDIS_OK && s && forget(s, ac) && !s->closing)
        drop_both(s, ac->errstr);
}

/* Close what is left and move on to the next sentinel. */
static void drop_both(struct sentinel *s, const char *why)
{
    if (s->cmd || s->sub || why)
        log_warning("sentinel", s->peer, "lost: %s; trying the next sentinel", why ? why : "?");
    redisAsyncContext *c = s->cmd, *b = s->sub;
    s->cmd = s->sub = NULL;
    if (c)
        redisAsyncDisconnect(c);
    if (b)
        redisAsyncDisconnect(b);
    s->current = (s->current + 1) % s->naddrs;
    s->retry_at_ms = net_now_ms() + RETRY_MS;
    s->peer[0] = '\0';
}

static void report(struct sentinel *s, const char *host, size_t hlen, const char *port)
{
    char h[256];
    if (hlen == 0 || hlen >= sizeof(h))
        return;
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    int p = atoi(port);
    if (p <= 0 || p > 65535)
        return;
    s->cb.on_master(s->cb.ctx, h, p);
}

static void on_addr_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct sentinel *s = ac->data;
    redisReply *rep = r;
    (void)priv;
    if (!s || !rep)
        return;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING && rep->element[1]->type == REDIS_REPLY_STRING)
        report(s, rep->element[0]->str, rep->element[0]->len, rep->element[1]->str);
    else if (rep->type == REDIS_REPLY_ERROR)
        log_warning("sentinel", s->peer, "get-master-addr-by-name: %s", rep->str);
    else if (rep->type == REDIS_REPLY_NIL)
        log_warning("sentinel", s->peer, "sentinel does not know master '%s'", s->master_name);
}

/* "+switch-master <name> <old ip> <old port> <new ip> <new port>" */
static void on_message(redisAsyncContext *ac, void *r, void *priv)
{
    struct sentinel *s = ac->data;
    redisReply *rep = r;
    (void)priv;
    if (!s || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(rep->element[0]->str, "message") != 0 || rep->element[2]->type != REDIS_REPLY_STRING)
        return;
    char name[256], oldh[256], newh[256], oldp[16], newp[16];
    if (sscanf(rep->element[2]->str, "%255s %255s %15s %255s %15s", name, oldh, oldp, newh, newp) !=
            5 ||
        strcmp(name, s->master_name) != 0)
        return;
    log_notice("sentinel", s->peer, "+switch-master %s: %s:%s -> %s:%s", name, oldh, oldp, newh,
               newp);
    report(s, newh, strlen(newh), newp);
}

static void on_auth_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct sentinel *s = ac->data;
    redisReply *rep = r;
    (void)priv;
    if (s && rep && rep->type == REDIS_REPLY_ERROR)
        log_warning("sentinel", s->peer, "AUTH refused: %s", rep->str);
}

/* ip: numeric, so hiredis' own getaddrinfo returns at once */
static redisAsyncContext *open_one(struct sentinel *s, const char *ip, int port)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, port);
    if (!ac)
        return NULL;
    if (ac->err) {
        log_warning("sentinel", s->peer, "connect: %s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (s->password[0])
        redisAsyncCommand(ac, on_auth_reply, NULL, "AUTH %s", s->password);
    return ac;
}

static void query(struct sentinel *s)
{
    if (s->cmd)
        redisAsyncCommand(s->cmd, on_addr_reply, NULL, "SENTINEL get-master-addr-by-name %s",
                          s->master_name);
    s->last_query_ms = net_now_ms();
}

static void resolved_cb(void *ctx, int ok, const struct sockaddr *addr, socklen_t len,
                        const char *why)
{
    struct sentinel *s = ctx;
    s->lookup = NULL;
    char ip[INET6_ADDRSTRLEN] = "";
    if (!ok || getnameinfo(addr, len, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0) {
        drop_both(s, ok ? "cannot format its address" : why);
        return;
    }
    int port = s->addrs[s->current].port;
    s->cmd = open_one(s, ip, port);
    s->sub = s->cmd ? open_one(s, ip, port) : NULL;
    if (!s->cmd || !s->sub) {
        drop_both(s, "cannot connect");
        return;
    }
    log_info("sentinel", s->peer, "following master '%s'", s->master_name);
    redisAsyncCommand(s->sub, on_message, NULL, "SUBSCRIBE +switch-master");
    query(s);
}

/* Look the current sentinel up (without blocking), then connect. */
static void connect_current(struct sentinel *s)
{
    const struct sentinel_addr *a = &s->addrs[s->current];
    snprintf(s->peer, sizeof(s->peer), "%s:%d", a->host, a->port);
    s->retry_at_ms = net_now_ms() + RETRY_MS; /* a lookup in flight is not retried */
    s->lookup = resolver_lookup(s->resolver, a->host, a->port, resolved_cb, s);
}

struct sentinel *sentinel_new(struct event_base *base, struct resolver *resolver, const char *addrs,
                              const char *master_name, const char *password,
                              const struct sentinel_callbacks *cb, char *err, size_t errlen)
{
    struct sentinel *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->base = base;
    s->resolver = resolver;
    s->cb = *cb;
    const char *p = addrs;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char item[300];
        if (n >= sizeof(item) || s->naddrs == MAX_SENTINELS) {
            snprintf(err, errlen, "upstream.sentinels: too many or too long entries");
            free(s);
            return NULL;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        while (n > 0 && item[n - 1] == ' ')
            item[--n] = '\0';
        char *colon = strrchr(item, ':');
        int port = colon ? atoi(colon + 1) : 0;
        if (!colon || colon == item || port <= 0 || port > 65535) {
            snprintf(err, errlen, "upstream.sentinels: '%s' is not host:port", item);
            free(s);
            return NULL;
        }
        *colon = '\0';
        snprintf(s->addrs[s->naddrs].host, sizeof(s->addrs[0].host), "%.255s", item);
        s->addrs[s->naddrs].port = port;
        s->naddrs++;
        p += n;
    }
    if (s->naddrs == 0) {
        snprintf(err, errlen, "upstream.sentinels is empty");
        free(s);
        return NULL;
    }
    s->master_name = strdup(master_name);
    s->password = strdup(password);
    if (!s->master_name || !s->password)
        abort();
    return s;
}

void sentinel_free(struct sentinel *s)
{
    if (!s)
        return;
    s->closing = 1;
    resolve_cancel(s->lookup);
    redisAsyncContext *c = s->cmd, *b = s->sub;
    s->cmd = s->sub = NULL;
    if (c) {
        c->data = NULL;
        redisAsyncFree(c);
    }
    if (b) {
        b->data = NULL;
        redisAsyncFree(b);
    }
    free(s->master_name);
    free(s->password);
    free(s);
}

void sentinel_cron(struct sentinel *s, int64_t now)
{
    if (!s->cmd && !s->sub) {
        if (!s->lookup && now >= s->retry_at_ms)
            connect_current(s);
        return;
    }
    if (now - s->last_query_ms >= REQUERY_MS)
        query(s);
}
