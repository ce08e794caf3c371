/*
 * server: listener and plain clients. See server.h.
 * Replies to one read are queued in order and written together; a protocol error queues
 * "-ERR Protocol error: ..." and closes after the flush, as Redis does.
 */
#include "server.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "redis_commands.h"

#define MAX_CHANNELS       4         /* Sentinel uses one */
#define OUTPUT_PAUSE_BYTES (1 << 20) /* replies a plain client may leave unread */
#define AUTH_FREE_FAILURES 3         /* failed AUTHs on a connection answered at once */
#define AUTH_LOG_MS        10000     /* one "AUTH failed" line per client and interval */
#define NOISE_LINES        10        /* per second: lines about single clients (refusals, ...) */
#define FD_RESERVED        32        /* fds kept for the upstream, log, snapshots, listeners */
#define ACCEPT_PAUSE_MS    100       /* out of fds: accept again after this */

struct client {
    struct client *next, *prev; /* the server's list */
    struct server *srv;         /* owner */
    struct bufferevent *bev;    /* owned; NULL once handed over */
    uint64_t id;
    char peer[NET_ADDR_LEN];         /* ip:port */
    char ip[NET_ADDR_LEN];           /* peer ip, or REPLCONF ip-address */
    char name[64];                   /* CLIENT SETNAME */
    char user[64];                   /* authenticated as */
    char channels[MAX_CHANNELS][64]; /* SUBSCRIBEd channels (Sentinel's hello) */
    int nchannels;
    char last_cmd[32];  /* for CLIENT LIST */
    int listening_port; /* REPLCONF listening-port */
    bool capa_eof, capa_psync2, rdb_only;
    bool cascade_frame;    /* REPLCONF capa cascade-frame: a downstream cascade relay, framed */
    int frame_level;       /* ... with zstd at this level (0: raw frames) */
    bool capa_rdb_channel; /* REPLCONF capa rdb-channel-repl: Redis >= 8.0 */
    int version;           /* REPLCONF version (Valkey), packed; 0 if not sent */
    bool authed;
    bool closing; /* close once the output is flushed */
    bool dead;    /* on the reaper list */
    int64_t created_ms;
    int64_t last_cmd_ms;
    int64_t partial_since_ms;  /* an incomplete command has been pending since, 0 if none */
    bool tls;                  /* accepted on the TLS port */
    bool paused;               /* not read from until it reads its replies */
    size_t in_bytes;           /* its input buffer, as counted in the server's input_bytes */
    int64_t out_soft_since_ms; /* output past the soft limit since, 0 if not */
    int auth_fails;            /* failed AUTHs on this connection */
    int64_t auth_log_ms;       /* last "AUTH failed" line, 0 if none yet */
    int64_t auth_unlogged;     /* failures since that line */
    bool auth_delayed;         /* a failed AUTH's reply is held, the client not read */
    struct event *auth_timer;  /* owned, created at the first delay */
    struct evbuffer *held;     /* owned: replies held while auth_delayed */
};

/* Lines about single clients (refusals, evictions, AUTH failures) are capped per second; what
 * is left out is counted and reported once a second by the cron. */
struct log_budget {
    int64_t window_ms; /* start of the current second */
    int lines;         /* written in it */
    int64_t dropped;   /* left out since the last report */
};

struct server {
    struct event_base *base;  /* borrowed */
    const struct config *cfg; /* borrowed */
    struct stats *stats;      /* borrowed */
    struct server_callbacks cb;
    struct evconnlistener *listener;     /* owned */
    struct evconnlistener *tls_listener; /* owned, NULL without a TLS port */
    SSL_CTX *tls;                        /* borrowed: the TLS port's context */
    struct client *head;                 /* live clients */
    struct client *dead;                 /* to free, via next */
    struct event *reaper;
    size_t count;
    uint64_t next_id;
    size_t input_bytes;         /* input buffers of all plain clients */
    int64_t fd_clients;         /* clients the fd limit leaves room for (0 = not measured) */
    int64_t fitted_clients;     /* the max-clients fit_fd_limit last ran for (0: not yet) */
    struct event *accept_timer; /* re-enables the listeners after EMFILE/ENFILE */
    bool accept_paused;         /* out of fds: listeners disabled, logged once */
    int64_t emfile_ms;          /* last accept that failed for lack of fds */
    int64_t emfile_count;       /* such failures in the current episode */
    struct log_budget noise;
};

typedef void (*command_fn)(struct client *c, const struct resp_command *cmd);

struct command {
    const char *name;
    int arity;        /* Redis convention: > 0 exact, < 0 at least -arity */
    bool before_auth; /* allowed before AUTH when a password is set */
    command_fn fn;
};

/* Where replies go: the connection's output, or while a failed AUTH's reply is held, aside. */
static struct evbuffer *out_of(struct client *c)
{
    return c->auth_delayed ? c->held : bufferevent_get_output(c->bev);
}

static void reply(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct client *c, const char *fmt, ...)
{
    struct evbuffer *out = out_of(c);
    va_list ap;
    va_start(ap, fmt);
    int n = evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->srv->stats->total_net_output_bytes += n;
}

static void reply_bulk(struct client *c, const char *s, size_t n)
{
    reply(c, "$%zu\r\n", n);
    evbuffer_add(out_of(c), s, n);
    reply(c, "\r\n");
    c->srv->stats->total_net_output_bytes += (int64_t)n;
}

static void reply_raw(struct client *c, const char *s, size_t n)
{
    evbuffer_add(out_of(c), s, n);
    c->srv->stats->total_net_output_bytes += (int64_t)n;
}

static bool budget_take(struct server *s)
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

#define client_log(lvl, c, ...)                                                                    \
    do {                                                                                           \
        if (log_enabled(lvl) && budget_take((c)->srv))                                             \
            log_msg(lvl, "server", (c)->peer, __VA_ARGS__);                                        \
    } while (0)

static void bury(struct client *c)
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
static void close_after_reply(struct client *c)
{
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    /* Nothing more is read: what it sent past this point is dropped now, not held. */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    c->srv->input_bytes -= c->in_bytes;
    c->in_bytes = 0;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        bury(c);
}

/*
 * Redis' client-output-buffer-limit for plain clients: the pubsub class once it has subscribed,
 * the normal one otherwise; hard (bytes), or soft (bytes) for longer than the soft time. A
 * client over it is closed at once, its output dropped. True if it was.
 */
static bool output_check(struct client *c, int64_t now)
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
    bury(c);
    return true;
}

static void protocol_error(struct client *c, const char *err)
{
    c->srv->stats->protocol_errors++;
    client_log(LOG_INFO, c, "%s; closing", err);
    reply(c, "-ERR %s\r\n", err);
    close_after_reply(c);
}

/* Constant-time comparison: the time taken does not depend on where strings differ. */
static bool secret_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)(a[i] ^ b[blen ? i % blen : 0]);
    return diff == 0;
}

static void cmd_ping(struct client *c, const struct resp_command *cmd)
{
    if (cmd->argc > 2) {
        reply(c, "-ERR wrong number of arguments for 'ping' command\r\n");
        return;
    }
    if (cmd->argc == 2)
        reply_bulk(c, cmd->argv[1], cmd->argl[1]);
    else
        reply(c, "+PONG\r\n");
}

/* RESET: back to a fresh connection, as Redis does: no name, no channels, and not
 * authenticated if a password is set. */
static void cmd_reset(struct client *c, const struct resp_command *cmd)
{
    (void)cmd;
    c->name[0] = '\0';
    c->nchannels = 0;
    if (config_has_auth(c->srv->cfg)) {
        c->authed = false;
        c->user[0] = '\0';
    }
    reply(c, "+RESET\r\n");
}

static void cmd_echo(struct client *c, const struct resp_command *cmd)
{
    reply_bulk(c, cmd->argv[1], cmd->argl[1]);
}

static void cmd_quit(struct client *c, const struct resp_command *cmd)
{
    (void)cmd;
    reply(c, "+OK\r\n");
    close_after_reply(c);
}

static void read_cb(struct bufferevent *bev, void *arg);

/* A held AUTH reply is due: send it and read the client again. */
static void auth_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    (void)fd;
    (void)what;
    if (c->dead || !c->bev || !c->auth_delayed)
        return;
    c->auth_delayed = false;
    c->srv->stats->auth_delayed_replies++;
    evbuffer_add_buffer(bufferevent_get_output(c->bev), c->held);
    if (!c->paused && !c->closing)
        bufferevent_enable(c->bev, EV_READ);
    if (!c->paused && !c->closing)
        read_cb(c->bev, c); /* what it sent meanwhile is waiting in its input */
}

/*
 * A failed AUTH: one log line per client and AUTH_LOG_MS (with the count since the last one),
 * and past AUTH_FREE_FAILURES on the connection the reply is held for auth-failure-delay (aside,
 * after the replies before it) while the client is not read (a timer: the loop never waits):
 * guessing costs time.
 */
static void auth_failed(struct client *c)
{
    struct server *s = c->srv;
    int64_t now = net_now_ms();
    s->stats->auth_failures++;
    c->auth_fails++;
    if (c->auth_log_ms == 0 || now - c->auth_log_ms >= AUTH_LOG_MS) {
        if (c->auth_unlogged > 0)
            client_log(LOG_NOTICE, c,
                       "AUTH failed (%" PRId64
                       " more times since the last line, %d on this connection)",
                       c->auth_unlogged + 1, c->auth_fails);
        else
            client_log(LOG_NOTICE, c, "AUTH failed"); /* never the password */
        c->auth_log_ms = now;
        c->auth_unlogged = 0;
    } else {
        c->auth_unlogged++;
    }
    if (c->auth_fails <= AUTH_FREE_FAILURES || s->cfg->auth_failure_delay_ms <= 0 || !c->bev)
        return;
    if (!c->auth_timer) {
        c->auth_timer = evtimer_new(s->base, auth_timer_cb, c);
        c->held = evbuffer_new();
        if (!c->auth_timer || !c->held)
            abort();
    }
    c->auth_delayed = true;
    bufferevent_disable(c->bev, EV_READ);
    struct timeval tv = {.tv_sec = s->cfg->auth_failure_delay_ms / 1000,
                         .tv_usec = (s->cfg->auth_failure_delay_ms % 1000) * 1000};
    evtimer_add(c->auth_timer, &tv);
}

/* Check user/password; the time taken does not depend on which part was wrong. */
static bool check_auth(struct client *c, const char *user, size_t ulen, const char *pass,
                       size_t plen)
{
    const char *want = config_user_password(c->srv->cfg, user, ulen);
    /* An unknown user still costs a comparison, against a password that cannot match. */
    bool ok = secret_equal(pass, plen, want ? want : "\x01") && want != NULL;
    if (ok) {
        c->authed = true;
        size_t n = ulen < sizeof(c->user) - 1 ? ulen : sizeof(c->user) - 1;
        memcpy(c->user, user, n);
        c->user[n] = '\0';
    } else {
        auth_failed(c);
    }
    return ok;
}

static void cmd_auth(struct client *c, const struct resp_command *cmd)
{
    if (cmd->argc > 3) {
        reply(c, "-ERR syntax error\r\n");
        return;
    }
    if (!config_has_auth(c->srv->cfg)) {
        reply(c, "-ERR AUTH <password> called without any password configured for the default "
                 "user. Are you sure your configuration is correct?\r\n");
        return;
    }
    bool ok = cmd->argc == 3 ? check_auth(c, cmd->argv[1], cmd->argl[1], cmd->argv[2], cmd->argl[2])
                             : check_auth(c, "default", 7, cmd->argv[1], cmd->argl[1]);
    if (ok)
        reply(c, "+OK\r\n");
    else
        reply(c, "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
}

/* A name Redis would take (CLIENT SETNAME, HELLO SETNAME): printable ASCII without spaces,
 * so that CLIENT LIST, INFO and the logs stay one field per name. */
static bool name_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '!' || s[i] > '~')
            return false;
    }
    return true;
}

/* CLIENT SETNAME / HELLO SETNAME: false (and the error replied) if the name is refused. */
static bool set_name(struct client *c, const char *name, size_t len)
{
    if (!name_ok(name, len)) {
        reply(c, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
        return false;
    }
    size_t n = len < sizeof(c->name) - 1 ? len : sizeof(c->name) - 1;
    memcpy(c->name, name, n);
    c->name[n] = '\0';
    return true;
}

/* HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only. Checks in Redis 7.0's order:
 * the version, each option in turn (AUTH, SETNAME), then authentication. */
static void cmd_hello(struct client *c, const struct resp_command *cmd)
{
    size_t i = 1;
    int64_t ver = 0;
    if (cmd->argc > 1) {
        if (resp_arg_int64(cmd, 1, &ver) != 0) {
            reply(c, "-ERR Protocol version is not an integer or out of range\r\n");
            return;
        }
        if (ver < 2 || ver > 3) {
            reply(c, "-NOPROTO unsupported protocol version\r\n");
            return;
        }
        /* RESP3, which Redis takes, is refused before any option has an effect. Unauthenticated
         * without AUTH it gets Redis' -NOAUTH below (after the options, as there). */
        bool auth_opt = false;
        for (size_t a = 2; a < cmd->argc; a++)
            auth_opt = auth_opt || resp_arg_is(cmd, a, "AUTH");
        if (ver == 3 && (auth_opt || c->authed || !config_has_auth(c->srv->cfg))) {
            reply(c, "-NOPROTO unsupported protocol version\r\n");
            return;
        }
        i = 2;
    }
    for (; i < cmd->argc; i++) {
        if (resp_arg_is(cmd, i, "AUTH") && i + 2 < cmd->argc) {
            if (!check_auth(c, cmd->argv[i + 1], cmd->argl[i + 1], cmd->argv[i + 2],
                            cmd->argl[i + 2])) {
                reply(c, "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
                return;
            }
            i += 2;
        } else if (resp_arg_is(cmd, i, "SETNAME") && i + 1 < cmd->argc) {
            if (!set_name(c, cmd->argv[i + 1], cmd->argl[i + 1]))
                return;
            i++;
        } else {
            char opt[64];
            redis_printable(cmd->argv[i], cmd->argl[i], opt, sizeof(opt));
            reply(c, "-ERR Syntax error in HELLO option '%s'\r\n", opt);
            return;
        }
    }
    if (config_has_auth(c->srv->cfg) && !c->authed) {
        reply(c, "-NOAUTH HELLO must be called with the client already authenticated, otherwise "
                 "the HELLO AUTH <user> <pass> option can be used to authenticate the client and "
                 "select the RESP protocol version at the same time\r\n");
        return;
    }
    /* The upstream's server and version once known, as Valkey's and Redis' helloCommand. */
    const struct compat_identity *id =
        c->srv->cb.identity ? c->srv->cb.identity(c->srv->cb.ctx) : NULL;
    const char *srv = id && id->server == COMPAT_VALKEY ? "valkey" : "redis";
    const char *version = id ? id->server_version : "7.0.15";
    reply(c,
          "*14\r\n$6\r\nserver\r\n$%zu\r\n%s\r\n$7\r\nversion\r\n$%zu\r\n%s\r\n"
          "$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:%" PRIu64 "\r\n$4\r\nmode\r\n"
          "$10\r\nstandalone\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$7\r\nmodules\r\n*0\r\n",
          strlen(srv), srv, strlen(version), version, c->id);
}

static void cmd_info(struct client *c, const struct resp_command *cmd)
{
    struct sbuf out = {0};
    if (cmd->argc == 1) {
        c->srv->cb.info(c->srv->cb.ctx, "", &out);
    } else {
        for (size_t i = 1; i < cmd->argc; i++) {
            char sec[32];
            size_t n = cmd->argl[i] < sizeof(sec) - 1 ? cmd->argl[i] : sizeof(sec) - 1;
            memcpy(sec, cmd->argv[i], n);
            sec[n] = '\0';
            if (out.len)
                sbuf_append(&out, "\r\n", 2);
            c->srv->cb.info(c->srv->cb.ctx, sec, &out);
        }
    }
    reply_bulk(c, out.buf ? out.buf : "", out.len);
    sbuf_free(&out);
}

static void cmd_role(struct client *c, const struct resp_command *cmd)
{
    (void)cmd;
    struct sbuf out = {0};
    c->srv->cb.role(c->srv->cb.ctx, &out);
    reply_raw(c, out.buf, out.len);
    sbuf_free(&out);
}

static void cmd_replconf(struct client *c, const struct resp_command *cmd)
{
    bool frame = false, zstd = false;
    if ((cmd->argc % 2) == 0) {
        reply(c, "-ERR syntax error\r\n");
        return;
    }
    for (size_t i = 1; i + 1 < cmd->argc; i += 2) {
        if (resp_arg_is(cmd, i, "listening-port")) {
            int64_t port;
            if (resp_arg_int64(cmd, i + 1, &port) != 0 || port < 0 || port > 65535) {
                reply(c, "-ERR invalid listening-port\r\n");
                return;
            }
            c->listening_port = (int)port;
        } else if (resp_arg_is(cmd, i, "ip-address")) {
            /* It is shown in INFO (slaveN:ip=...), ROLE and the logs: printable, no separators
             * (Sentinel reads slave_priority from those lines; a CR/LF here would forge one). */
            size_t n = cmd->argl[i + 1];
            if (n == 0 || n >= sizeof(c->ip) || !name_ok(cmd->argv[i + 1], n)) {
                reply(c, "-ERR invalid ip-address\r\n");
                return;
            }
            memcpy(c->ip, cmd->argv[i + 1], n);
            c->ip[n] = '\0';
        } else if (resp_arg_is(cmd, i, "capa")) {
            /* Unknown capabilities (dual-channel, skip-rdb-checksum, lz4, ...) are ignored, as
             * masters do: the relay uses none of them. rdb-channel-repl says "Redis >= 8". */
            if (resp_arg_is(cmd, i + 1, "eof"))
                c->capa_eof = true;
            else if (resp_arg_is(cmd, i + 1, "psync2"))
                c->capa_psync2 = true;
            else if (resp_arg_is(cmd, i + 1, "cascade-frame"))
                frame = true;
            else if (resp_arg_is(cmd, i + 1, "cascade-zstd"))
                zstd = true;
            else if (resp_arg_is(cmd, i + 1, "rdb-channel-repl"))
                c->capa_rdb_channel = true;
        } else if (resp_arg_is(cmd, i, "rdb-only")) {
            int64_t v;
            if (resp_arg_int64(cmd, i + 1, &v) != 0 || (v != 0 && v != 1)) {
                reply(c, "-ERR invalid rdb-only value\r\n");
                return;
            }
            c->rdb_only = v == 1;
        } else if (resp_arg_is(cmd, i, "rdb-filter-only")) {
            /* The relay forwards RDBs verbatim and cannot filter them; redis-cli --replica
             * treats this error as non-fatal and skips the RDB it then receives. */
            reply(c, "-ERR rdb-filter-only is not supported by this relay\r\n");
            return;
        } else if (resp_arg_is(cmd, i, "ack") || resp_arg_is(cmd, i, "getack")) {
            return; /* no reply, as Redis */
        } else if (resp_arg_is(cmd, i, "version")) {
            /* Valkey >= 8 says which version it is: what RDB it can load. Valkey answers a
             * malformed one like this (replconfCommand). */
            int v = compat_version_parse(cmd->argv[i + 1], cmd->argl[i + 1]);
            if (v <= 0) {
                reply(c, "-ERR Unrecognized version format: %.*s\r\n",
                      (int)(cmd->argl[i + 1] > 64 ? 64 : cmd->argl[i + 1]), cmd->argv[i + 1]);
                return;
            }
            c->version = v;
        } else {
            /* Everything else (rdb-no-compress, rdb-no-checksum, compression requests,
             * rdb-channel, set-cluster-node-id, ...) is refused as a master that predates it
             * refuses it (Redis' and Valkey's replconfCommand): the relay serves its cached
             * snapshot and the stream exactly as they are, and +OK would promise otherwise. */
            size_t n = cmd->argl[i] > 64 ? 64 : cmd->argl[i];
            reply(c, "-ERR Unrecognized REPLCONF option: %.*s\r\n", (int)n, cmd->argv[i]);
            return;
        }
    }
    if (frame) {
        /* Only a downstream cascade relay asks; it alone reads this answer (PROTOCOL.md,
         * "Links between cascade relays"): after the PSYNC reply, everything comes framed. */
        int64_t level = c->srv->cfg->compression_level;
        c->cascade_frame = true;
        c->frame_level = zstd && level > 0 ? (int)level : 0;
        reply(c, c->frame_level > 0 ? "+OK cascade-frame zstd\r\n" : "+OK cascade-frame\r\n");
        return;
    }
    reply(c, "+OK\r\n");
}

static void cmd_sync(struct client *c, const struct resp_command *cmd)
{
    bool plain = resp_arg_is(cmd, 0, "SYNC");
    if (!plain && cmd->argc < 3) {
        reply(c, "-ERR wrong number of arguments for 'psync' command\r\n");
        return;
    }
    struct server_sync_request req = {
        .cmd = cmd,
        .id = c->id,
        .peer = c->peer,
        .ip = c->ip,
        .listening_port = c->listening_port,
        .capa_eof = c->capa_eof,
        .capa_psync2 = c->capa_psync2,
        .cascade_frame = c->cascade_frame,
        .frame_level = c->frame_level,
        .capa_rdb_channel = c->capa_rdb_channel,
        .version = c->version,
        .rdb_only = c->rdb_only,
        .plain_sync = plain,
        .tls = c->tls,
        .created_ms = c->created_ms,
    };
    char err[256];
    struct bufferevent *bev = c->bev;
    if (c->srv->cb.sync(c->srv->cb.ctx, bev, &req, err, sizeof(err)) != 0) {
        reply(c, "-%s\r\n", err);
        return;
    }
    /* The connection belongs to a replica session now; forget it without closing. */
    c->bev = NULL;
    bury(c);
}

static void cmd_replicaof(struct client *c, const struct resp_command *cmd)
{
    if (resp_arg_is(cmd, 1, "NO") && resp_arg_is(cmd, 2, "ONE")) {
        reply(c, "-ERR REPLICAOF NO ONE is not supported: a relay holds no dataset and cannot "
                 "become a master\r\n");
        return;
    }
    int64_t port;
    if (resp_arg_int64(cmd, 2, &port) != 0 || port <= 0 || port > 65535) {
        reply(c, "-ERR Invalid master port\r\n");
        return;
    }
    char host[256];
    /* The host shows in INFO (master_host), ROLE and the logs. */
    if (cmd->argl[1] == 0 || cmd->argl[1] >= sizeof(host) || !name_ok(cmd->argv[1], cmd->argl[1])) {
        reply(c, "-ERR Invalid master host\r\n");
        return;
    }
    memcpy(host, cmd->argv[1], cmd->argl[1]);
    host[cmd->argl[1]] = '\0';
    char err[256];
    if (c->srv->cb.replicaof(c->srv->cb.ctx, host, (int)port, err, sizeof(err)) != 0) {
        reply(c, "-ERR %s\r\n", err);
        return;
    }
    reply(c, "+OK\r\n");
}

static void client_line(const struct client *c, int64_t now, struct sbuf *out)
{
    sbuf_printf(out,
                "id=%" PRIu64 " addr=%s laddr=- fd=%d name=%s age=%" PRId64 " idle=%" PRId64
                " flags=N db=0 sub=0 psub=0 multi=-1 qbuf=%zu obl=0 oll=0 omem=%zu cmd=%s\n",
                c->id, c->peer, c->bev ? (int)bufferevent_getfd(c->bev) : -1, c->name,
                (now - c->created_ms) / 1000, (now - c->last_cmd_ms) / 1000,
                c->bev ? evbuffer_get_length(bufferevent_get_input(c->bev)) : 0,
                c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0,
                c->last_cmd[0] ? c->last_cmd : "NULL");
}

static void cmd_client(struct client *c, const struct resp_command *cmd)
{
    if (resp_arg_is(cmd, 1, "LIST")) {
        /* No filters here: TYPE and ID show every connection; anything else is Redis' error. */
        if (cmd->argc > 2 && !resp_arg_is(cmd, 2, "TYPE") && !resp_arg_is(cmd, 2, "ID")) {
            reply(c, "-ERR syntax error\r\n");
            return;
        }
        struct sbuf out = {0};
        int64_t now = net_now_ms();
        for (const struct client *o = c->srv->head; o; o = o->next)
            client_line(o, now, &out);
        if (c->srv->cb.client_list)
            c->srv->cb.client_list(c->srv->cb.ctx, &out);
        reply_bulk(c, out.buf ? out.buf : "", out.len);
        sbuf_free(&out);
    } else if (resp_arg_is(cmd, 1, "ID")) {
        reply(c, ":%" PRIu64 "\r\n", c->id);
    } else if (resp_arg_is(cmd, 1, "SETNAME") && cmd->argc == 3) {
        if (set_name(c, cmd->argv[2], cmd->argl[2]))
            reply(c, "+OK\r\n");
    } else if (resp_arg_is(cmd, 1, "GETNAME")) {
        if (c->name[0])
            reply_bulk(c, c->name, strlen(c->name));
        else
            reply(c, "$-1\r\n");
    } else if (resp_arg_is(cmd, 1, "SETINFO")) {
        reply(c, "+OK\r\n");
    } else {
        reply(c, "-ERR unknown subcommand or wrong number of arguments for 'CLIENT'\r\n");
    }
}

/* Redis names that replicas and tools ask for, mapped onto the relay's state. */
static void config_alias(const struct server *s, const char *name, char *out, size_t len)
{
    const struct config *cfg = s->cfg;
    if (strcmp(name, "port") == 0)
        snprintf(out, len, "%" PRId64, cfg->port);
    else if (strcmp(name, "bind") == 0)
        snprintf(out, len, "%s", cfg->bind);
    else if (strcmp(name, "dir") == 0)
        snprintf(out, len, "%s", cfg->dir);
    else if (strcmp(name, "maxclients") == 0)
        snprintf(out, len, "%" PRId64, server_max_clients(s));
    else if (strcmp(name, "repl-backlog-size") == 0)
        snprintf(out, len, "%" PRId64, cfg->backlog_size_bytes);
    else if (strcmp(name, "repl-timeout") == 0)
        snprintf(out, len, "%" PRId64, cfg->replica_timeout_ms / 1000);
    else if (strcmp(name, "replica-priority") == 0 || strcmp(name, "slave-priority") == 0)
        snprintf(out, len, "0");
    else if (strcmp(name, "replica-read-only") == 0 || strcmp(name, "slave-read-only") == 0)
        snprintf(out, len, "yes");
    else if (strcmp(name, "save") == 0)
        snprintf(out, len, "%s", "");
    else if (strcmp(name, "appendonly") == 0)
        snprintf(out, len, "no");
    else if (strcmp(name, "databases") == 0)
        snprintf(out, len, "16");
    else
        out[0] = '\0';
}

static const char *const aliases[] = {
    "port",
    "bind",
    "dir",
    "maxclients",
    "repl-backlog-size",
    "repl-timeout",
    "replica-priority",
    "slave-priority",
    "replica-read-only",
    "slave-read-only",
    "save",
    "appendonly",
    "databases",
    NULL,
};

/* Copies argument i into out as a C string; -1 if it does not fit. */
static int arg_string(const struct resp_command *cmd, size_t i, char *out, size_t len)
{
    if (cmd->argl[i] >= len || memchr(cmd->argv[i], '\0', cmd->argl[i]))
        return -1;
    memcpy(out, cmd->argv[i], cmd->argl[i]);
    out[cmd->argl[i]] = '\0';
    return 0;
}

static bool has_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < ' ' || *s == 0x7f)
            return true;
    }
    return false;
}

static void config_set_reload(struct client *c, const struct resp_command *cmd)
{
    char err[CONFIG_ERR_LEN];
    int rc;
    if (resp_arg_is(cmd, 1, "RELOAD")) {
        rc = c->srv->cb.config_reload(c->srv->cb.ctx, err, sizeof(err));
    } else {
        if (cmd->argc < 4 || (cmd->argc % 2) != 0) {
            reply(c, "-ERR wrong number of arguments for 'config|set' command\r\n");
            return;
        }
        rc = 0;
        for (size_t i = 2; i + 1 < cmd->argc && rc == 0; i += 2) {
            char key[128], val[1024];
            if (arg_string(cmd, i, key, sizeof(key)) != 0 ||
                arg_string(cmd, i + 1, val, sizeof(val)) != 0) {
                snprintf(err, sizeof(err), "argument too long");
                rc = -1;
                break;
            }
            /* Keys and values end up in the log and in errors: no line breaks or controls. */
            if (has_control(key) || has_control(val)) {
                snprintf(err, sizeof(err), "argument contains control characters");
                rc = -1;
                break;
            }
            rc = c->srv->cb.config_set(c->srv->cb.ctx, key, val, err, sizeof(err));
        }
    }
    if (rc != 0)
        reply(c, "-ERR %s\r\n", err);
    else
        reply(c, "+OK\r\n");
}

static void cmd_config(struct client *c, const struct resp_command *cmd)
{
    if (resp_arg_is(cmd, 1, "SET") || resp_arg_is(cmd, 1, "RELOAD")) {
        config_set_reload(c, cmd);
        return;
    }
    if (resp_arg_is(cmd, 1, "RESETSTAT")) {
        memset(c->srv->stats, 0, sizeof(*c->srv->stats));
        reply(c, "+OK\r\n");
        return;
    }
    if (!resp_arg_is(cmd, 1, "GET") || cmd->argc < 3) {
        reply(c, "-ERR CONFIG supports GET, SET, RELOAD and RESETSTAT on this relay\r\n");
        return;
    }
    struct sbuf out = {0};
    size_t n = 0;
    for (size_t a = 2; a < cmd->argc; a++) {
        char pat[128];
        size_t pl = cmd->argl[a] < sizeof(pat) - 1 ? cmd->argl[a] : sizeof(pat) - 1;
        memcpy(pat, cmd->argv[a], pl);
        pat[pl] = '\0';
        char val[512];
        for (const struct config_key *k = config_keys; k->section; k++) {
            char name[128];
            snprintf(name, sizeof(name), "%s.%s", k->section, k->name);
            if (fnmatch(pat, name, FNM_CASEFOLD) != 0)
                continue;
            /* Secrets are never shown, only whether one is set. */
            if (k->secret)
                snprintf(val, sizeof(val), "%s", "");
            else
                config_format(c->srv->cfg, k, val, sizeof(val));
            sbuf_printf(&out, "$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(name), name, strlen(val), val);
            n++;
        }
        for (const char *const *al = aliases; *al; al++) {
            if (fnmatch(pat, *al, FNM_CASEFOLD) != 0)
                continue;
            config_alias(c->srv, *al, val, sizeof(val));
            sbuf_printf(&out, "$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(*al), *al, strlen(val), val);
            n++;
        }
    }
    reply(c, "*%zu\r\n", n * 2);
    if (out.len)
        reply_raw(c, out.buf, out.len);
    sbuf_free(&out);
}

/*
 * Pub/sub, only as much as Sentinel needs: it SUBSCRIBEs to __sentinel__:hello on every
 * instance it monitors, replicas included, and PUBLISHes its hello there. Messages stay on
 * this relay: they are not part of the replication stream.
 */
static int channel_index(const struct client *c, const char *ch, size_t len)
{
    for (int i = 0; i < c->nchannels; i++) {
        if (strlen(c->channels[i]) == len && memcmp(c->channels[i], ch, len) == 0)
            return i;
    }
    return -1;
}

static void cmd_subscribe(struct client *c, const struct resp_command *cmd)
{
    for (size_t i = 1; i < cmd->argc; i++) {
        if (channel_index(c, cmd->argv[i], cmd->argl[i]) < 0) {
            if (c->nchannels == MAX_CHANNELS || cmd->argl[i] >= sizeof(c->channels[0])) {
                reply(c, "-ERR this relay allows %d channels of up to %zu bytes per client\r\n",
                      MAX_CHANNELS, sizeof(c->channels[0]) - 1);
                return;
            }
            memcpy(c->channels[c->nchannels], cmd->argv[i], cmd->argl[i]);
            c->channels[c->nchannels][cmd->argl[i]] = '\0';
            c->nchannels++;
        }
        reply(c, "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n", cmd->argl[i]);
        reply_raw(c, cmd->argv[i], cmd->argl[i]);
        reply(c, "\r\n:%d\r\n", c->nchannels);
    }
}

static void cmd_unsubscribe(struct client *c, const struct resp_command *cmd)
{
    if (cmd->argc == 1 && c->nchannels == 0) {
        reply(c, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        return;
    }
    /* No arguments: every channel. Work on copies, the list shrinks as we go. */
    char names[MAX_CHANNELS][sizeof(c->channels[0])];
    size_t n = 0;
    if (cmd->argc == 1) {
        for (int i = 0; i < c->nchannels; i++)
            memcpy(names[n++], c->channels[i], sizeof(names[0]));
    }
    for (size_t a = 1; a < cmd->argc && n < MAX_CHANNELS; a++) {
        size_t len = cmd->argl[a] < sizeof(names[0]) - 1 ? cmd->argl[a] : sizeof(names[0]) - 1;
        memcpy(names[n], cmd->argv[a], len);
        names[n++][len] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        int at = channel_index(c, names[i], strlen(names[i]));
        if (at >= 0) {
            memmove(c->channels[at], c->channels[at + 1],
                    (size_t)(c->nchannels - at - 1) * sizeof(c->channels[0]));
            c->nchannels--;
        }
        reply(c, "*3\r\n$11\r\nunsubscribe\r\n$%zu\r\n%s\r\n:%d\r\n", strlen(names[i]), names[i],
              c->nchannels);
    }
}

static void cmd_publish(struct client *c, const struct resp_command *cmd)
{
    int receivers = 0;
    int64_t now = net_now_ms();
    struct client *next;
    for (struct client *o = c->srv->head; o; o = next) {
        next = o->next; /* output_check may bury o */
        if (o->closing || !o->bev || channel_index(o, cmd->argv[1], cmd->argl[1]) < 0)
            continue;
        reply(o, "*3\r\n$7\r\nmessage\r\n$%zu\r\n", cmd->argl[1]);
        reply_raw(o, cmd->argv[1], cmd->argl[1]);
        reply(o, "\r\n$%zu\r\n", cmd->argl[2]);
        reply_raw(o, cmd->argv[2], cmd->argl[2]);
        reply(o, "\r\n");
        receivers++;
        output_check(o, now);
    }
    reply(c, ":%d\r\n", receivers);
}

/*
 * LATENCY and SLOWLOG for monitoring tools (prometheus-redis-exporter sends LATENCY LATEST,
 * SLOWLOG LEN and SLOWLOG GET on every scrape). The relay runs no latency monitor and keeps no
 * slow log, so its honest answers are the empty ones.
 */
/* Redis' replies to a known subcommand with the wrong arity, and to an unknown one. */
static void reply_subcommand_error(struct client *c, const struct resp_command *cmd,
                                   const char *command, bool known)
{
    char name[64];
    resp_escape(cmd->argv[1], cmd->argl[1] < 40 ? cmd->argl[1] : 40, name, sizeof(name));
    if (known) {
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        reply(c, "-ERR wrong number of arguments for '%s|%s' command\r\n", command, name);
    } else {
        char upper[16];
        size_t i = 0;
        for (; command[i] && i < sizeof(upper) - 1; i++)
            upper[i] = (char)toupper((unsigned char)command[i]);
        upper[i] = '\0';
        reply(c, "-ERR unknown subcommand '%s'. Try %s HELP.\r\n", name, upper);
    }
}

static void cmd_latency(struct client *c, const struct resp_command *cmd)
{
    if (resp_arg_is(cmd, 1, "LATEST")) {
        if (cmd->argc != 2)
            reply_subcommand_error(c, cmd, "latency", true);
        else
            reply(c, "*0\r\n");
    } else if (resp_arg_is(cmd, 1, "HISTORY")) {
        if (cmd->argc != 3)
            reply_subcommand_error(c, cmd, "latency", true);
        else
            reply(c, "*0\r\n");
    } else if (resp_arg_is(cmd, 1, "RESET")) {
        reply(c, ":0\r\n"); /* events reset: none */
    } else {
        reply_subcommand_error(c, cmd, "latency", false);
    }
}

static void cmd_slowlog(struct client *c, const struct resp_command *cmd)
{
    int64_t count;
    if (resp_arg_is(cmd, 1, "GET")) {
        if (cmd->argc > 3)
            reply_subcommand_error(c, cmd, "slowlog", true);
        else if (cmd->argc == 3 && (resp_arg_int64(cmd, 2, &count) != 0 || count < -1))
            reply(c, "-ERR count should be greater than or equal to -1\r\n");
        else
            reply(c, "*0\r\n");
    } else if (resp_arg_is(cmd, 1, "LEN") || resp_arg_is(cmd, 1, "RESET")) {
        if (cmd->argc != 2)
            reply_subcommand_error(c, cmd, "slowlog", true);
        else if (resp_arg_is(cmd, 1, "LEN"))
            reply(c, ":0\r\n");
        else
            reply(c, "+OK\r\n");
    } else {
        reply_subcommand_error(c, cmd, "slowlog", false);
    }
}

static const struct command commands[] = {
    {"ping", -1, false, cmd_ping},
    {"echo", 2, false, cmd_echo},
    {"quit", -1, true, cmd_quit},
    {"auth", -2, true, cmd_auth},
    {"hello", -1, true, cmd_hello},
    {"reset", 1, true, cmd_reset},
    {"info", -1, false, cmd_info},
    {"role", 1, false, cmd_role},
    {"replconf", -1, false, cmd_replconf},
    {"psync", -3, false, cmd_sync},
    {"sync", 1, false, cmd_sync},
    {"replicaof", 3, false, cmd_replicaof},
    {"slaveof", 3, false, cmd_replicaof},
    {"client", -2, false, cmd_client},
    {"config", -2, false, cmd_config},
    {"subscribe", -2, false, cmd_subscribe},
    {"unsubscribe", -1, false, cmd_unsubscribe},
    {"publish", 3, false, cmd_publish},
    {"latency", -2, false, cmd_latency},
    {"slowlog", -2, false, cmd_slowlog},
    {NULL, 0, false, NULL},
};

static void unknown_command(struct client *c, const struct resp_command *cmd)
{
    char line[512];
    redis_unknown_command(cmd, line, sizeof(line));
    reply(c, "-ERR %s\r\n", line);
}

static void dispatch(struct client *c, const struct resp_command *cmd)
{
    c->srv->stats->total_commands_processed++;
    c->last_cmd_ms = net_now_ms();
    /* Redis closes at once, without a reply, a connection that looks like an HTTP request
     * (a browser or a cross-protocol attack). */
    if (resp_arg_is(cmd, 0, "POST") || resp_arg_is(cmd, 0, "Host:")) {
        client_log(LOG_WARNING, c, "possible security attack: an HTTP request; closing");
        bury(c);
        return;
    }
    const struct command *k = commands;
    for (; k->name; k++) {
        if (resp_arg_is(cmd, 0, k->name))
            break;
    }
    /* CLIENT LIST shows the name of a command the relay knows, "NULL" otherwise (as Redis does
     * for unknown commands): never the client's bytes. */
    snprintf(c->last_cmd, sizeof(c->last_cmd), "%s", k->name ? k->name : "");
    /* Before AUTH, Redis 7.0's answer exactly: it knows commands the relay does not, and checks
     * existence and arity before authentication. */
    if (config_has_auth(c->srv->cfg) && !c->authed) {
        char line[512];
        bool refused = redis_preauth_reject(cmd, line, sizeof(line));
        if (!refused && (!k->name || !k->before_auth)) { /* a no-auth command the relay lacks */
            snprintf(line, sizeof(line), "-NOAUTH Authentication required.");
            refused = true;
        }
        if (refused) {
            reply(c, "%s\r\n", line);
            return;
        }
    }
    if (!k->name) {
        unknown_command(c, cmd);
        return;
    }
    char line[512];
    if (redis_arity_reject(cmd, line, sizeof(line))) { /* Redis' text, e.g. 'client|setname' */
        reply(c, "%s\r\n", line);
        return;
    }
    /* A subscribed client may only (un)subscribe, PING and QUIT, as in Redis (RESP2). */
    if (c->nchannels > 0 && k->fn != cmd_subscribe && k->fn != cmd_unsubscribe &&
        k->fn != cmd_ping && k->fn != cmd_quit && k->fn != cmd_reset) {
        reply(c,
              "-ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT "
              "/ RESET are allowed in this context\r\n",
              k->name);
        return;
    }
    if (c->nchannels > 0 && k->fn == cmd_ping) {
        reply(c, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        return;
    }
    if ((k->arity > 0 && cmd->argc != (size_t)k->arity) ||
        (k->arity < 0 && cmd->argc < (size_t)-k->arity)) {
        reply(c, "-ERR wrong number of arguments for '%s' command\r\n", k->name);
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
    bury(c);
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
        output_check(c, net_now_ms());
    if (!c->dead && s->input_bytes > (size_t)s->cfg->input_memory_bytes)
        enforce_input_memory(s, c);
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
        if (need_auth && !c->authed && now - c->created_ms > cfg->handshake_timeout_ms)
            why = "not authenticated within handshake-timeout";
        else if (c->partial_since_ms && now - c->partial_since_ms > cfg->handshake_timeout_ms)
            why = "command not completed within handshake-timeout";
        else if (c->tls && !tls_handshake_done(c) &&
                 now - c->created_ms > cfg->handshake_timeout_ms)
            why = "TLS handshake not completed within handshake-timeout";
        /* Subscribers (Sentinel's hello) only listen: Redis never times them out either. */
        else if (cfg->client_timeout_ms > 0 && c->nchannels == 0 &&
                 now - c->last_cmd_ms > cfg->client_timeout_ms)
            why = "idle for client-timeout";
        if (why) {
            s->stats->client_timeouts++;
            client_log(LOG_INFO, c, "closing: %s", why);
            bury(c);
        } else if (c->bev) {
            output_check(c, now); /* soft limits run out without a new reply */
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
        bury(c);
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
        log_debug("server", c->peer, "client closed");
        bury(c);
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
    c->tls = tls;
    c->id = ++s->next_id;
    c->created_ms = c->last_cmd_ms = net_now_ms();
    net_format(sa, c->peer, sizeof(c->peer), 1);
    net_format(sa, c->ip, sizeof(c->ip), 0);
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
        reply(c, "-DENIED cascade is running in protected mode: it is bound to a non-loopback "
                 "address and no password is set, so only loopback clients are accepted. Set "
                 "relay.requirepass (or [users]), bind to 127.0.0.1, or set relay.protected-mode "
                 "= no if every client may reach it.\r\n");
        close_after_reply(c);
        return NULL;
    }
    size_t others = s->cb.other_connections ? s->cb.other_connections(s->cb.ctx) : 0;
    int64_t max = server_max_clients(s);
    if ((int64_t)(s->count + others) > max) {
        s->stats->rejected_connections++;
        client_log(LOG_NOTICE, c, "refused: max-clients (%" PRId64 ") reached", max);
        reply(c, "-ERR max number of clients reached\r\n");
        close_after_reply(c);
        return NULL;
    }
    if (s->input_bytes >= (size_t)s->cfg->input_memory_bytes) {
        s->stats->rejected_connections++;
        client_log(LOG_NOTICE, c, "refused: relay.input-memory (%" PRId64 ") is full",
                   s->cfg->input_memory_bytes);
        reply(c, "-ERR max number of clients reached\r\n");
        close_after_reply(c);
        return NULL;
    }
    log_debug("server", c->peer, "accepted client id=%" PRIu64, c->id);
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
    if (budget_take(s))
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
        bury(s->head);
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
