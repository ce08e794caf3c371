/*
 * server: listener and plain clients. See server.h.
 * Replies to one read are queued in order and written together; a protocol error queues
 * "-ERR Protocol error: ..." and closes after the flush, as Redis does. dispatch() checks a
 * command as Redis does (authentication, arity, subscribed context) and runs its handler, which
 * commands.c holds; the client helpers those handlers use are declared in server_client.h.
 */
#include "server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "commands.h"
#include "log.h"
#include "redis_commands.h"
#include "server_client.h"

#define OUTPUT_PAUSE_BYTES (1 << 20) /* replies a plain client may leave unread */
#define NOISE_LINES        10        /* per second: lines about single clients (refusals, ...) */
#define FD_RESERVED        32        /* fds kept for the upstream, log, snapshots, listeners */
#define ACCEPT_PAUSE_MS    100       /* out of fds: accept again after this */

/* Where replies go: the connection's output, or while a failed AUTH's reply is held, aside. */
static struct evbuffer *out_of(struct client *c)
{
    return c->auth_delayed ? c->held : bufferevent_get_output(c->bev);
}

void client_reply(struct client *c, const char *fmt, ...)
{
    struct evbuffer *out = out_of(c);
    va_list ap;
    va_start(ap, fmt);
    int n = evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->srv->stats->total_net_output_bytes += n;
}

void client_reply_bulk(struct client *c, const char *s, size_t n)
{
    client_reply(c, "$%zu\r\n", n);
    evbuffer_add(out_of(c), s, n);
    client_reply(c, "\r\n");
    c->srv->stats->total_net_output_bytes += (int64_t)n;
}

void client_reply_raw(struct client *c, const char *s, size_t n)
{
    evbuffer_add(out_of(c), s, n);
    c->srv->stats->total_net_output_bytes += (int64_t)n;
}

bool server_log_budget(struct server *s)
{
    int64_t now = net_now_ms();
    if (now - s->noise.window_ms >= 1000) {
        s->noise.window_ms = now;
        s->noise.lines = 0;
    }
    if (s->noise.lines < NOISE_LINES) {
        s->noise.lines++;
        return true;
    }
    s->noise.dropped++;
    return false;
}

void client_bury(struct client *c)
{
    if (c->dead)
        return;
    struct server *s = c->srv;
    if (c->auth_unlogged > 0)
        client_log(LOG_NOTICE, c, "AUTH failed %" PRId64 " more times (%d on this connection)",
                   c->auth_unlogged, c->auth_fails);
    c->auth_unlogged = 0;
    if (c->auth_timer)
        event_del(c->auth_timer);
    s->input_bytes -= c->in_bytes;
    c->in_bytes = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = s->dead;
    s->dead = c;
    c->dead = true;
    s->count--;
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    event_active(s->reaper, 0, 0);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)fd;
    (void)what;
    while (s->dead) {
        struct client *c = s->dead;
        s->dead = c->next;
        if (c->bev)
            bufferevent_free(c->bev);
        if (c->auth_timer)
            event_free(c->auth_timer);
        if (c->held)
            evbuffer_free(c->held);
        free(c);
    }
}

/* Close after what is queued has been written. */
void client_close_after_reply(struct client *c)
{
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    /* Nothing more is read: what it sent past this point is dropped now, not held. */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    c->srv->input_bytes -= c->in_bytes;
    c->in_bytes = 0;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        client_bury(c);
}

/*
 * Redis' client-output-buffer-limit for plain clients: the pubsub class once it has subscribed,
 * the normal one otherwise; hard (bytes), or soft (bytes) for longer than the soft time. A
 * client over it is closed at once, its output dropped. True if it was.
 */
bool client_output_check(struct client *c, int64_t now)
{
    const struct config *cfg = c->srv->cfg;
    bool pubsub = c->nchannels > 0;
    int64_t hard = pubsub ? cfg->pubsub_output_limit_bytes : cfg->client_output_limit_bytes;
    int64_t soft = pubsub ? cfg->pubsub_output_soft_bytes : cfg->client_output_soft_bytes;
    int64_t soft_ms = pubsub ? cfg->pubsub_output_soft_ms : cfg->client_output_soft_ms;
    int64_t out = (int64_t)evbuffer_get_length(bufferevent_get_output(c->bev));
    bool over = hard > 0 && out > hard;
    if (!over && soft > 0 && out > soft) {
        if (!c->out_soft_since_ms)
            c->out_soft_since_ms = now;
        else
            over = now - c->out_soft_since_ms > soft_ms;
    } else if (!over) {
        c->out_soft_since_ms = 0;
    }
    if (!over)
        return false;
    c->srv->stats->client_output_buffer_limit_disconnections++;
    client_log(
        LOG_NOTICE, c, "closing: output buffer of %" PRId64 " bytes over the %s client limit (%s)",
        out, pubsub ? "pubsub" : "normal", hard > 0 && out > hard ? "hard" : "soft, for too long");
    client_bury(c);
    return true;
}

static void protocol_error(struct client *c, const char *err)
{
    c->srv->stats->protocol_errors++;
    client_log(LOG_INFO, c, "%s; closing", err);
    client_reply(c, "-ERR %s\r\n", err);
    client_close_after_reply(c);
}

static void dispatch(struct client *c, const struct resp_command *cmd)
{
    c->srv->stats->total_commands_processed++;
    c->last_cmd_ms = net_now_ms();
    /* Redis closes at once, without a reply, a connection that looks like an HTTP request
     * (a browser or a cross-protocol attack). */
    if (resp_arg_is(cmd, 0, "POST") || resp_arg_is(cmd, 0, "Host:")) {
        client_log(LOG_WARNING, c, "possible security attack: an HTTP request; closing");
        client_bury(c);
        return;
    }
    const struct command *k = commands_lookup(cmd);
    /* CLIENT LIST shows the name of a command the relay knows, "NULL" otherwise (as Redis does
     * for unknown commands): never the client's bytes. */
    snprintf(c->last_cmd, sizeof(c->last_cmd), "%s", k ? k->name : "");
    /* Before AUTH, Redis 7.0's answer exactly: it knows commands the relay does not, and checks
     * existence and arity before authentication. */
    if (config_has_auth(c->srv->cfg) && !c->authed) {
        char line[512];
        bool refused = redis_preauth_reject(cmd, line, sizeof(line));
        if (!refused &&
            (!k || !(k->flags & COMMAND_BEFORE_AUTH))) { /* a no-auth command the relay lacks */
            snprintf(line, sizeof(line), "-NOAUTH Authentication required.");
            refused = true;
        }
        if (refused) {
            client_reply(c, "%s\r\n", line);
            return;
        }
    }
    if (!k) {
        commands_unknown(c, cmd);
        return;
    }
    char line[512];
    if (redis_arity_reject(cmd, line, sizeof(line))) { /* Redis' text, e.g. 'client|setname' */
        client_reply(c, "%s\r\n", line);
        return;
    }
    /* A subscribed client may only (un)subscribe, PING and QUIT, as in Redis (RESP2). */
    if (c->nchannels > 0 && !(k->flags & COMMAND_SUBSCRIBED)) {
        client_reply(
            c,
            "-ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT "
            "/ RESET are allowed in this context\r\n",
            k->name);
        return;
    }
    if ((k->arity > 0 && cmd->argc != (size_t)k->arity) ||
        (k->arity < 0 && cmd->argc < (size_t)-k->arity)) {
        client_reply(c, "-ERR wrong number of arguments for '%s' command\r\n", k->name);
        return;
    }
    k->fn(c, cmd);
}

static void evict(struct client *c)
{
    c->srv->stats->evicted_clients++;
    client_log(LOG_NOTICE, c,
               "closing: relay.input-memory (%" PRId64 ") exceeded, %zu bytes of input held",
               c->srv->cfg->input_memory_bytes, c->in_bytes);
    client_bury(c);
}

/*
 * Past relay.input-memory: close clients until the input buffers fit again. An unauthenticated
 * newcomer (cur) goes first; for anyone else, unauthenticated clients go first, then those
 * sitting on an incomplete command (newest first), cur itself last. Replicas are not plain
 * clients: never counted, never closed here.
 */
static void enforce_input_memory(struct server *s, struct client *cur)
{
    size_t cap = (size_t)s->cfg->input_memory_bytes;
    bool need_auth = config_has_auth(s->cfg);
    if (need_auth && !cur->authed) {
        evict(cur);
        return;
    }
    for (int pass = 0; pass < 2 && s->input_bytes > cap; pass++) {
        struct client *next;
        for (struct client *o = s->head; o && s->input_bytes > cap; o = next) {
            next = o->next;
            if (o == cur || o->in_bytes == 0 || o->closing)
                continue;
            if (pass == 0 ? !(need_auth && !o->authed) : !o->partial_since_ms)
                continue;
            evict(o);
        }
    }
    if (s->input_bytes > cap)
        evict(cur);
}

static void read_commands(struct client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const struct config *cfg = c->srv->cfg;
    bool need_auth = config_has_auth(cfg);
    struct resp_limits lim = {
        .max_argc = (size_t)cfg->max_args,
        .max_bulk_bytes = (size_t)cfg->max_bulk_bytes,
        .max_inline_bytes = (size_t)cfg->max_inline_bytes,
    };
    /* A command the relay answers never needs more than one big argument. */
    size_t query_limit = 2 * (size_t)cfg->max_bulk_bytes + (size_t)cfg->max_inline_bytes;
    while (c->bev && !c->closing && !c->dead && !c->auth_delayed) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        lim.unauthenticated = need_auth && !c->authed; /* an AUTH may precede in this read */
        const char *buf = (const char *)evbuffer_pullup(in, -1);
        struct resp_command cmd;
        char err[RESP_ERR_LEN];
        ssize_t n = resp_parse_command(buf, len, &lim, &cmd, err, sizeof(err));
        if (n < 0) {
            protocol_error(c, err);
            return;
        }
        if (n == 0) {
            if (len > query_limit)
                protocol_error(c, "Protocol error: query buffer limit exceeded");
            else if (!c->partial_since_ms)
                c->partial_since_ms = net_now_ms(); /* handshake-timeout bounds the rest */
            return;
        }
        c->partial_since_ms = 0;
        c->srv->stats->total_net_input_bytes += n;
        /* Dispatch from a copy, with the input already drained: PSYNC hands the connection
         * (and whatever follows in its input) over to a replica session. */
        char *copy = malloc((size_t)n);
        if (!copy)
            abort();
        memcpy(copy, buf, (size_t)n);
        evbuffer_drain(in, (size_t)n);
        if (resp_parse_command(copy, (size_t)n, &lim, &cmd, err, sizeof(err)) == n && cmd.argc > 0)
            dispatch(c, &cmd);
        free(copy);
        /* A client that sends commands but does not read the replies is not read from until
         * it does: its output, not the relay's memory, absorbs what it pipelines. */
        if (c->bev && !c->closing && !c->dead &&
            evbuffer_get_length(bufferevent_get_output(c->bev)) > OUTPUT_PAUSE_BYTES) {
            c->paused = true;
            bufferevent_disable(c->bev, EV_READ);
            bufferevent_setwatermark(c->bev, EV_WRITE, OUTPUT_PAUSE_BYTES / 2, 0);
            return;
        }
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct server *s = c->srv;
    (void)bev;
    read_commands(c);
    if (c->dead)
        return;
    /* Count what it holds now (nothing once the connection was handed over to a replica). */
    size_t held = c->bev ? evbuffer_get_length(bufferevent_get_input(c->bev)) : 0;
    s->input_bytes = s->input_bytes - c->in_bytes + held;
    c->in_bytes = held;
    if (c->bev && !c->closing)
        client_output_check(c, net_now_ms());
    if (!c->dead && s->input_bytes > (size_t)s->cfg->input_memory_bytes)
        enforce_input_memory(s, c);
}

void client_read(struct client *c)
{
    read_cb(c->bev, c);
}

static bool tls_handshake_done(const struct client *c)
{
    SSL *ssl = c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
    return !ssl || SSL_is_init_finished(ssl);
}

static void fit_fd_limit(struct server *s);

void server_cron(struct server *s, int64_t now)
{
    const struct config *cfg = s->cfg;
    bool need_auth = config_has_auth(cfg);
    struct client *next;
    for (struct client *c = s->head; c; c = next) {
        next = c->next;
        if (c->closing || c->dead)
            continue;
        const char *why = NULL;
        if (need_auth && !c->authed && now - c->hello.created_ms > cfg->handshake_timeout_ms)
            why = "not authenticated within handshake-timeout";
        else if (c->partial_since_ms && now - c->partial_since_ms > cfg->handshake_timeout_ms)
            why = "command not completed within handshake-timeout";
        else if (c->hello.tls && !tls_handshake_done(c) &&
                 now - c->hello.created_ms > cfg->handshake_timeout_ms)
            why = "TLS handshake not completed within handshake-timeout";
        /* Subscribers (Sentinel's hello) only listen: Redis never times them out either. */
        else if (cfg->client_timeout_ms > 0 && c->nchannels == 0 &&
                 now - c->last_cmd_ms > cfg->client_timeout_ms)
            why = "idle for client-timeout";
        if (why) {
            s->stats->client_timeouts++;
            client_log(LOG_INFO, c, "closing: %s", why);
            client_bury(c);
        } else if (c->bev) {
            client_output_check(c, now); /* soft limits run out without a new reply */
        }
    }
    if (s->fitted_clients && s->fitted_clients != cfg->max_clients)
        fit_fd_limit(s); /* max-clients changed at runtime: raise the limit (or clamp) again */
    if (s->accept_paused && now - s->emfile_ms >= 1000) {
        log_notice("server", "-",
                   "accepting again (%" PRId64 " accepts failed for lack of fds; %zu clients)",
                   s->emfile_count, s->count);
        s->accept_paused = false;
        s->emfile_count = 0;
    }
    if (s->noise.dropped > 0 && now - s->noise.window_ms >= 1000) {
        log_notice("server", "-",
                   "%" PRId64 " more lines about single clients left out (at most %d a second)",
                   s->noise.dropped, NOISE_LINES);
        s->noise.dropped = 0;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        client_bury(c);
        return;
    }
    if (c->paused && !c->closing && !c->dead &&
        evbuffer_get_length(bufferevent_get_output(bev)) <= OUTPUT_PAUSE_BYTES / 2) {
        /* It read its replies: take its commands again, starting with those already here. */
        c->paused = false;
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(bev, EV_READ);
        read_cb(bev, c);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        log_debug("server", c->hello.peer, "client closed");
        client_bury(c);
    }
}

static bool loopback_bind(const char *bind)
{
    return strncmp(bind, "127.", 4) == 0 || strcmp(bind, "::1") == 0 ||
           strcmp(bind, "localhost") == 0;
}

/* Redis' protected mode: a relay reachable from outside without a password serves only
 * loopback clients. */
static bool refused_by_protected_mode(const struct config *cfg, const struct sockaddr *sa)
{
    if (strcmp(cfg->protected_mode, "yes") != 0 || config_has_auth(cfg) || loopback_bind(cfg->bind))
        return false;
    char ip[NET_ADDR_LEN];
    net_format(sa, ip, sizeof(ip), 0);
    bool loop = strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
                strncmp(ip, "::ffff:127.", 11) == 0;
    return !loop;
}

static struct client *add_client(struct server *s, struct bufferevent *bev, struct sockaddr *sa,
                                 bool tls);

static void accepted(struct server *s)
{
    s->stats->total_connections_received++;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int slen,
                      void *arg)
{
    struct server *s = arg;
    (void)l;
    (void)slen;
    accepted(s);
    net_tune(fd);
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return;
    }
    add_client(s, bev, sa, false);
}

static void accept_tls_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int slen, void *arg)
{
    struct server *s = arg;
    (void)l;
    (void)slen;
    accepted(s);
    net_tune(fd);
    SSL *ssl = SSL_new(s->tls);
    struct bufferevent *bev =
        ssl ? bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE)
            : NULL;
    if (!bev) {
        if (ssl)
            SSL_free(ssl);
        close(fd);
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    add_client(s, bev, sa, true);
}

/* A new plain client on bev (TLS or not: the rest of the code sees only the bufferevent). */
static struct client *add_client(struct server *s, struct bufferevent *bev, struct sockaddr *sa,
                                 bool tls)
{
    struct client *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->srv = s;
    c->bev = bev;
    c->hello.tls = tls;
    c->hello.id = ++s->next_id;
    c->hello.created_ms = c->last_cmd_ms = net_now_ms();
    net_format(sa, c->hello.peer, sizeof(c->hello.peer), 1);
    net_format(sa, c->hello.ip, sizeof(c->hello.ip), 0);
    c->next = s->head;
    if (s->head)
        s->head->prev = c;
    s->head = c;
    s->count++;
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (refused_by_protected_mode(s->cfg, sa)) {
        s->stats->protected_mode_refusals++;
        client_log(LOG_NOTICE, c, "refused by protected mode");
        client_reply(
            c, "-DENIED cascade is running in protected mode: it is bound to a non-loopback "
               "address and no password is set, so only loopback clients are accepted. Set "
               "relay.requirepass (or [users]), bind to 127.0.0.1, or set relay.protected-mode "
               "= no if every client may reach it.\r\n");
        client_close_after_reply(c);
        return NULL;
    }
    size_t others = s->cb.other_connections ? s->cb.other_connections(s->cb.ctx) : 0;
    int64_t max = server_max_clients(s);
    if ((int64_t)(s->count + others) > max) {
        s->stats->rejected_connections++;
        client_log(LOG_NOTICE, c, "refused: max-clients (%" PRId64 ") reached", max);
        client_reply(c, "-ERR max number of clients reached\r\n");
        client_close_after_reply(c);
        return NULL;
    }
    if (s->input_bytes >= (size_t)s->cfg->input_memory_bytes) {
        s->stats->rejected_connections++;
        client_log(LOG_NOTICE, c, "refused: relay.input-memory (%" PRId64 ") is full",
                   s->cfg->input_memory_bytes);
        client_reply(c, "-ERR max number of clients reached\r\n");
        client_close_after_reply(c);
        return NULL;
    }
    log_debug("server", c->hello.peer, "accepted client id=%" PRIu64, c->hello.id);
    return c;
}

static void accept_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)fd;
    (void)what;
    if (s->listener)
        evconnlistener_enable(s->listener);
    if (s->tls_listener)
        evconnlistener_enable(s->tls_listener);
}

/*
 * accept() failed. Out of fds (EMFILE, ENFILE) the pending connection stays in the queue and the
 * listener would fire again at once: stop listening for ACCEPT_PAUSE_MS, and say so once per
 * episode (it ends once a second has passed without such a failure: the cron says so). Anything
 * else is logged through the budget.
 */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct server *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    (void)l;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        if (!s->accept_paused)
            log_warning("server", "-",
                        "accept: %s; not accepting for %d ms at a time until fds are free "
                        "(%zu clients; lower replicas.max-clients or raise the fd limit)",
                        evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS, s->count);
        s->accept_paused = true;
        s->emfile_ms = net_now_ms();
        s->emfile_count++;
        if (s->listener)
            evconnlistener_disable(s->listener);
        if (s->tls_listener)
            evconnlistener_disable(s->tls_listener);
        struct timeval tv = {.tv_sec = 0, .tv_usec = ACCEPT_PAUSE_MS * 1000};
        evtimer_add(s->accept_timer, &tv);
        return;
    }
    if (server_log_budget(s))
        log_warning("server", "-", "accept: %s", evutil_socket_error_to_string(err));
}

struct server *server_new(struct event_base *base, const struct config *cfg, struct stats *stats,
                          const struct server_callbacks *cb)
{
    struct server *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->base = base;
    s->cfg = cfg;
    s->stats = stats;
    s->cb = *cb;
    s->reaper = event_new(base, -1, 0, reap_cb, s);
    s->accept_timer = evtimer_new(base, accept_timer_cb, s);
    if (!s->reaper || !s->accept_timer)
        abort();
    return s;
}

void server_free(struct server *s)
{
    if (!s)
        return;
    server_stop_listening(s);
    while (s->head)
        client_bury(s->head);
    reap_cb(-1, 0, s);
    event_free(s->reaper);
    event_free(s->accept_timer);
    free(s);
}

static struct evconnlistener *open_listener(struct server *s, int port, evconnlistener_cb cb,
                                            char *err, size_t errlen)
{
    int fd = net_listen(s->cfg->bind, port, 511, err, errlen);
    if (fd < 0)
        return NULL;
    struct evconnlistener *l = evconnlistener_new(s->base, cb, s, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!l) {
        close(fd);
        snprintf(err, errlen, "cannot create a listener on port %d", port);
        return NULL;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    return l;
}

/*
 * As Redis does at start-up: raise the soft fd limit toward what max-clients needs (up to the
 * hard limit), and if it still does not fit, serve only as many clients as there are fds for,
 * keeping FD_RESERVED for the upstream, the log, snapshots and the listeners. Logged either way.
 */
static void fit_fd_limit(struct server *s)
{
    struct rlimit rl;
    s->fitted_clients = s->cfg->max_clients;
    s->fd_clients = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)s->cfg->max_clients + FD_RESERVED;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (rl.rlim_cur > old && setrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_notice("server", "-", "open files limit raised from %llu to %llu",
                       (unsigned long long)old, (unsigned long long)rl.rlim_cur);
        else
            rl.rlim_cur = old;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
        return;
    s->fd_clients = rl.rlim_cur > FD_RESERVED + 1 ? (int64_t)(rl.rlim_cur - FD_RESERVED) : 1;
    log_warning("server", "-",
                "replicas.max-clients %" PRId64 " needs %llu open files, the limit is %llu (hard "
                "%llu): at most %" PRId64 " clients and replicas will be served; raise the limit "
                "(ulimit -n, LimitNOFILE=) for more",
                s->cfg->max_clients, (unsigned long long)want, (unsigned long long)rl.rlim_cur,
                (unsigned long long)rl.rlim_max, s->fd_clients);
}

int64_t server_max_clients(const struct server *s)
{
    if (s->fd_clients > 0 && s->fd_clients < s->cfg->max_clients)
        return s->fd_clients;
    return s->cfg->max_clients;
}

int server_listen(struct server *s, char *err, size_t errlen)
{
    fit_fd_limit(s);
    s->listener = open_listener(s, (int)s->cfg->port, accept_cb, err, errlen);
    return s->listener ? 0 : -1;
}

int server_listen_tls(struct server *s, int port, SSL_CTX *ctx, char *err, size_t errlen)
{
    s->tls = ctx;
    s->tls_listener = open_listener(s, port, accept_tls_cb, err, errlen);
    return s->tls_listener ? 0 : -1;
}

void server_stop_listening(struct server *s)
{
    if (s->listener) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
    }
    if (s->tls_listener) {
        evconnlistener_free(s->tls_listener);
        s->tls_listener = NULL;
    }
}

size_t server_client_memory(const struct server *s)
{
    size_t n = 0;
    for (const struct client *c = s->head; c; c = c->next) {
        if (c->bev)
            n += evbuffer_get_length(bufferevent_get_input(c->bev)) +
                 evbuffer_get_length(bufferevent_get_output(c->bev));
    }
    return n;
}

size_t server_client_count(const struct server *s)
{
    return s->count;
}
