/*
 * commands: the table and the handlers. See commands.h.
 * A handler replies through client_reply*() (queued in order, written together by server.c) and
 * never frees its client: it buries it (PSYNC hand-over) or closes it after the reply (QUIT).
 */
#include "commands.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_commands.h"
#include "server_client.h"

#define AUTH_FREE_FAILURES 3     /* failed AUTHs on a connection answered at once */
#define AUTH_LOG_MS        10000 /* one "AUTH failed" line per client and interval */

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
    if (c->nchannels > 0) { /* subscribed (RESP2): Redis' reply, whatever the arguments */
        client_reply(c, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        return;
    }
    if (cmd->argc > 2) {
        client_reply(c, "-ERR wrong number of arguments for 'ping' command\r\n");
        return;
    }
    if (cmd->argc == 2)
        client_reply_bulk(c, cmd->argv[1], cmd->argl[1]);
    else
        client_reply(c, "+PONG\r\n");
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
    client_reply(c, "+RESET\r\n");
}

static void cmd_echo(struct client *c, const struct resp_command *cmd)
{
    client_reply_bulk(c, cmd->argv[1], cmd->argl[1]);
}

static void cmd_quit(struct client *c, const struct resp_command *cmd)
{
    (void)cmd;
    client_reply(c, "+OK\r\n");
    client_close_after_reply(c);
}

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
        client_read(c); /* what it sent meanwhile is waiting in its input */
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
        client_reply(c, "-ERR syntax error\r\n");
        return;
    }
    if (!config_has_auth(c->srv->cfg)) {
        client_reply(c,
                     "-ERR AUTH <password> called without any password configured for the default "
                     "user. Are you sure your configuration is correct?\r\n");
        return;
    }
    bool ok = cmd->argc == 3 ? check_auth(c, cmd->argv[1], cmd->argl[1], cmd->argv[2], cmd->argl[2])
                             : check_auth(c, "default", 7, cmd->argv[1], cmd->argl[1]);
    if (ok)
        client_reply(c, "+OK\r\n");
    else
        client_reply(c, "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
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
        client_reply(
            c, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
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
            client_reply(c, "-ERR Protocol version is not an integer or out of range\r\n");
            return;
        }
        if (ver < 2 || ver > 3) {
            client_reply(c, "-NOPROTO unsupported protocol version\r\n");
            return;
        }
        /* RESP3, which Redis takes, is refused before any option has an effect. Unauthenticated
         * without AUTH it gets Redis' -NOAUTH below (after the options, as there). */
        bool auth_opt = false;
        for (size_t a = 2; a < cmd->argc; a++)
            auth_opt = auth_opt || resp_arg_is(cmd, a, "AUTH");
        if (ver == 3 && (auth_opt || c->authed || !config_has_auth(c->srv->cfg))) {
            client_reply(c, "-NOPROTO unsupported protocol version\r\n");
            return;
        }
        i = 2;
    }
    for (; i < cmd->argc; i++) {
        if (resp_arg_is(cmd, i, "AUTH") && i + 2 < cmd->argc) {
            if (!check_auth(c, cmd->argv[i + 1], cmd->argl[i + 1], cmd->argv[i + 2],
                            cmd->argl[i + 2])) {
                client_reply(c,
                             "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
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
            client_reply(c, "-ERR Syntax error in HELLO option '%s'\r\n", opt);
            return;
        }
    }
    if (config_has_auth(c->srv->cfg) && !c->authed) {
        client_reply(
            c, "-NOAUTH HELLO must be called with the client already authenticated, otherwise "
               "the HELLO AUTH <user> <pass> option can be used to authenticate the client and "
               "select the RESP protocol version at the same time\r\n");
        return;
    }
    /* The upstream's server and version once known, as Valkey's and Redis' helloCommand. */
    const struct compat_identity *id =
        c->srv->cb.identity ? c->srv->cb.identity(c->srv->cb.ctx) : NULL;
    const char *srv = id && id->server == COMPAT_VALKEY ? "valkey" : "redis";
    const char *version = id ? id->server_version : "7.0.15";
    client_reply(c,
                 "*14\r\n$6\r\nserver\r\n$%zu\r\n%s\r\n$7\r\nversion\r\n$%zu\r\n%s\r\n"
                 "$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:%" PRIu64 "\r\n$4\r\nmode\r\n"
                 "$10\r\nstandalone\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$7\r\nmodules\r\n*0\r\n",
                 strlen(srv), srv, strlen(version), version, c->hello.id);
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
    client_reply_bulk(c, out.buf ? out.buf : "", out.len);
    sbuf_free(&out);
}

static void cmd_role(struct client *c, const struct resp_command *cmd)
{
    (void)cmd;
    struct sbuf out = {0};
    c->srv->cb.role(c->srv->cb.ctx, &out);
    client_reply_raw(c, out.buf, out.len);
    sbuf_free(&out);
}

/* What the REPLCONF capa values of one command asked for (for its reply). */
struct replconf_capa {
    bool frame; /* cascade-frame: a downstream cascade relay */
    bool zstd;  /* cascade-zstd: ... that takes zstd frames */
};

/* REPLCONF capa <value> (argument i). Unknown capabilities (dual-channel, skip-rdb-checksum,
 * lz4, ...) are ignored, as masters do: the relay uses none of them. rdb-channel-repl says
 * "Redis >= 8". */
static void replconf_capa(struct client *c, const struct resp_command *cmd, size_t i,
                          struct replconf_capa *capa)
{
    if (resp_arg_is(cmd, i, "eof"))
        c->hello.capa_eof = true;
    else if (resp_arg_is(cmd, i, "psync2"))
        c->hello.capa_psync2 = true;
    else if (resp_arg_is(cmd, i, "cascade-frame"))
        capa->frame = true;
    else if (resp_arg_is(cmd, i, "cascade-zstd"))
        capa->zstd = true;
    else if (resp_arg_is(cmd, i, "rdb-channel-repl") && !c->hello.leaf.exact)
        c->hello.leaf = (struct compat_leaf){.server = COMPAT_REDIS, .version = 0x080000};
}

/* One REPLCONF option (argument i) and its value (i + 1), in Redis' order. False once the
 * command is answered (an error replied) or must not be (ACK, GETACK). */
static bool replconf_option(struct client *c, const struct resp_command *cmd, size_t i,
                            struct replconf_capa *capa)
{
    int64_t v;
    if (resp_arg_is(cmd, i, "listening-port")) {
        if (resp_arg_int64(cmd, i + 1, &v) != 0 || v < 0 || v > 65535) {
            client_reply(c, "-ERR invalid listening-port\r\n");
            return false;
        }
        c->hello.listening_port = (int)v;
    } else if (resp_arg_is(cmd, i, "ip-address")) {
        /* It is shown in INFO (slaveN:ip=...), ROLE and the logs: printable, no separators
         * (Sentinel reads slave_priority from those lines; a CR/LF here would forge one). */
        size_t n = cmd->argl[i + 1];
        if (n == 0 || n >= sizeof(c->hello.ip) || !name_ok(cmd->argv[i + 1], n)) {
            client_reply(c, "-ERR invalid ip-address\r\n");
            return false;
        }
        memcpy(c->hello.ip, cmd->argv[i + 1], n);
        c->hello.ip[n] = '\0';
    } else if (resp_arg_is(cmd, i, "capa")) {
        replconf_capa(c, cmd, i + 1, capa);
    } else if (resp_arg_is(cmd, i, "rdb-only")) {
        if (resp_arg_int64(cmd, i + 1, &v) != 0 || (v != 0 && v != 1)) {
            client_reply(c, "-ERR invalid rdb-only value\r\n");
            return false;
        }
        c->hello.rdb_only = v == 1;
    } else if (resp_arg_is(cmd, i, "rdb-filter-only")) {
        /* The relay forwards RDBs verbatim and cannot filter them; redis-cli --replica
         * treats this error as non-fatal and skips the RDB it then receives. */
        client_reply(c, "-ERR rdb-filter-only is not supported by this relay\r\n");
        return false;
    } else if (resp_arg_is(cmd, i, "ack") || resp_arg_is(cmd, i, "getack")) {
        return false; /* no reply, as Redis */
    } else if (resp_arg_is(cmd, i, "version")) {
        /* Valkey >= 8 says which version it is: what RDB it can load. Valkey answers a
         * malformed one like this (replconfCommand). */
        int ver = compat_version_parse(cmd->argv[i + 1], cmd->argl[i + 1]);
        if (ver <= 0) {
            client_reply(c, "-ERR Unrecognized version format: %.*s\r\n",
                         (int)(cmd->argl[i + 1] > 64 ? 64 : cmd->argl[i + 1]), cmd->argv[i + 1]);
            return false;
        }
        c->hello.leaf =
            (struct compat_leaf){.server = COMPAT_VALKEY, .version = ver, .exact = true};
    } else {
        /* Everything else (rdb-no-compress, rdb-no-checksum, compression requests,
         * rdb-channel, set-cluster-node-id, ...) is refused as a master that predates it
         * refuses it (Redis' and Valkey's replconfCommand): the relay serves its cached
         * snapshot and the stream exactly as they are, and +OK would promise otherwise. */
        size_t n = cmd->argl[i] > 64 ? 64 : cmd->argl[i];
        client_reply(c, "-ERR Unrecognized REPLCONF option: %.*s\r\n", (int)n, cmd->argv[i]);
        return false;
    }
    return true;
}

static void cmd_replconf(struct client *c, const struct resp_command *cmd)
{
    struct replconf_capa capa = {false, false};
    if ((cmd->argc % 2) == 0) {
        client_reply(c, "-ERR syntax error\r\n");
        return;
    }
    for (size_t i = 1; i + 1 < cmd->argc; i += 2) {
        if (!replconf_option(c, cmd, i, &capa))
            return;
    }
    if (capa.frame) {
        /* Only a downstream cascade relay asks; it alone reads this answer (PROTOCOL.md,
         * "Links between cascade relays"): after the PSYNC reply, everything comes framed. */
        int64_t level = c->srv->cfg->compression_level;
        c->hello.cascade_frame = true;
        c->hello.frame_level = capa.zstd && level > 0 ? (int)level : 0;
        client_reply(c, c->hello.frame_level > 0 ? "+OK cascade-frame zstd\r\n"
                                                 : "+OK cascade-frame\r\n");
        return;
    }
    client_reply(c, "+OK\r\n");
}

static void cmd_sync(struct client *c, const struct resp_command *cmd)
{
    bool plain = resp_arg_is(cmd, 0, "SYNC");
    if (!plain && cmd->argc < 3) {
        client_reply(c, "-ERR wrong number of arguments for 'psync' command\r\n");
        return;
    }
    c->hello.plain_sync = plain;
    struct server_sync_request req = {.cmd = cmd, .hello = &c->hello};
    char err[256];
    struct bufferevent *bev = c->bev;
    if (c->srv->cb.sync(c->srv->cb.ctx, bev, &req, err, sizeof(err)) != 0) {
        client_reply(c, "-%s\r\n", err);
        return;
    }
    /* The connection belongs to a replica session now; forget it without closing. */
    c->bev = NULL;
    client_bury(c);
}

static void cmd_replicaof(struct client *c, const struct resp_command *cmd)
{
    if (resp_arg_is(cmd, 1, "NO") && resp_arg_is(cmd, 2, "ONE")) {
        client_reply(c,
                     "-ERR REPLICAOF NO ONE is not supported: a relay holds no dataset and cannot "
                     "become a master\r\n");
        return;
    }
    int64_t port;
    if (resp_arg_int64(cmd, 2, &port) != 0 || port <= 0 || port > 65535) {
        client_reply(c, "-ERR Invalid master port\r\n");
        return;
    }
    char host[256];
    /* The host shows in INFO (master_host), ROLE and the logs. */
    if (cmd->argl[1] == 0 || cmd->argl[1] >= sizeof(host) || !name_ok(cmd->argv[1], cmd->argl[1])) {
        client_reply(c, "-ERR Invalid master host\r\n");
        return;
    }
    memcpy(host, cmd->argv[1], cmd->argl[1]);
    host[cmd->argl[1]] = '\0';
    char err[256];
    if (c->srv->cb.replicaof(c->srv->cb.ctx, host, (int)port, err, sizeof(err)) != 0) {
        client_reply(c, "-ERR %s\r\n", err);
        return;
    }
    client_reply(c, "+OK\r\n");
}

static void client_line(const struct client *c, int64_t now, struct sbuf *out)
{
    sbuf_printf(out,
                "id=%" PRIu64 " addr=%s laddr=- fd=%d name=%s age=%" PRId64 " idle=%" PRId64
                " flags=N db=0 sub=0 psub=0 multi=-1 qbuf=%zu obl=0 oll=0 omem=%zu cmd=%s\n",
                c->hello.id, c->hello.peer, c->bev ? (int)bufferevent_getfd(c->bev) : -1, c->name,
                (now - c->hello.created_ms) / 1000, (now - c->last_cmd_ms) / 1000,
                c->bev ? evbuffer_get_length(bufferevent_get_input(c->bev)) : 0,
                c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0,
                c->last_cmd[0] ? c->last_cmd : "NULL");
}

static void cmd_client(struct client *c, const struct resp_command *cmd)
{
    if (resp_arg_is(cmd, 1, "LIST")) {
        /* No filters here: TYPE and ID show every connection; anything else is Redis' error. */
        if (cmd->argc > 2 && !resp_arg_is(cmd, 2, "TYPE") && !resp_arg_is(cmd, 2, "ID")) {
            client_reply(c, "-ERR syntax error\r\n");
            return;
        }
        struct sbuf out = {0};
        int64_t now = net_now_ms();
        for (const struct client *o = c->srv->head; o; o = o->next)
            client_line(o, now, &out);
        if (c->srv->cb.client_list)
            c->srv->cb.client_list(c->srv->cb.ctx, &out);
        client_reply_bulk(c, out.buf ? out.buf : "", out.len);
        sbuf_free(&out);
    } else if (resp_arg_is(cmd, 1, "ID")) {
        client_reply(c, ":%" PRIu64 "\r\n", c->hello.id);
    } else if (resp_arg_is(cmd, 1, "SETNAME") && cmd->argc == 3) {
        if (set_name(c, cmd->argv[2], cmd->argl[2]))
            client_reply(c, "+OK\r\n");
    } else if (resp_arg_is(cmd, 1, "GETNAME")) {
        if (c->name[0])
            client_reply_bulk(c, c->name, strlen(c->name));
        else
            client_reply(c, "$-1\r\n");
    } else if (resp_arg_is(cmd, 1, "SETINFO")) {
        client_reply(c, "+OK\r\n");
    } else {
        client_reply(c, "-ERR unknown subcommand or wrong number of arguments for 'CLIENT'\r\n");
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
            client_reply(c, "-ERR wrong number of arguments for 'config|set' command\r\n");
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
        client_reply(c, "-ERR %s\r\n", err);
    else
        client_reply(c, "+OK\r\n");
}

static void cmd_config(struct client *c, const struct resp_command *cmd)
{
    if (resp_arg_is(cmd, 1, "SET") || resp_arg_is(cmd, 1, "RELOAD")) {
        config_set_reload(c, cmd);
        return;
    }
    if (resp_arg_is(cmd, 1, "RESETSTAT")) {
        memset(c->srv->stats, 0, sizeof(*c->srv->stats));
        client_reply(c, "+OK\r\n");
        return;
    }
    if (!resp_arg_is(cmd, 1, "GET") || cmd->argc < 3) {
        client_reply(c, "-ERR CONFIG supports GET, SET, RELOAD and RESETSTAT on this relay\r\n");
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
    client_reply(c, "*%zu\r\n", n * 2);
    if (out.len)
        client_reply_raw(c, out.buf, out.len);
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
                client_reply(c,
                             "-ERR this relay allows %d channels of up to %zu bytes per client\r\n",
                             MAX_CHANNELS, sizeof(c->channels[0]) - 1);
                return;
            }
            memcpy(c->channels[c->nchannels], cmd->argv[i], cmd->argl[i]);
            c->channels[c->nchannels][cmd->argl[i]] = '\0';
            c->nchannels++;
        }
        client_reply(c, "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n", cmd->argl[i]);
        client_reply_raw(c, cmd->argv[i], cmd->argl[i]);
        client_reply(c, "\r\n:%d\r\n", c->nchannels);
    }
}

static void cmd_unsubscribe(struct client *c, const struct resp_command *cmd)
{
    if (cmd->argc == 1 && c->nchannels == 0) {
        client_reply(c, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
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
        client_reply(c, "*3\r\n$11\r\nunsubscribe\r\n$%zu\r\n%s\r\n:%d\r\n", strlen(names[i]),
                     names[i], c->nchannels);
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
        client_reply(o, "*3\r\n$7\r\nmessage\r\n$%zu\r\n", cmd->argl[1]);
        client_reply_raw(o, cmd->argv[1], cmd->argl[1]);
        client_reply(o, "\r\n$%zu\r\n", cmd->argl[2]);
        client_reply_raw(o, cmd->argv[2], cmd->argl[2]);
        client_reply(o, "\r\n");
        receivers++;
        client_output_check(o, now);
    }
    client_reply(c, ":%d\r\n", receivers);
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
        client_reply(c, "-ERR wrong number of arguments for '%s|%s' command\r\n", command, name);
    } else {
        char upper[16];
        size_t i = 0;
        for (; command[i] && i < sizeof(upper) - 1; i++)
            upper[i] = (char)toupper((unsigned char)command[i]);
        upper[i] = '\0';
        client_reply(c, "-ERR unknown subcommand '%s'. Try %s HELP.\r\n", name, upper);
    }
}

static void cmd_latency(struct client *c, const struct resp_command *cmd)
{
    if (resp_arg_is(cmd, 1, "LATEST")) {
        if (cmd->argc != 2)
            reply_subcommand_error(c, cmd, "latency", true);
        else
            client_reply(c, "*0\r\n");
    } else if (resp_arg_is(cmd, 1, "HISTORY")) {
        if (cmd->argc != 3)
            reply_subcommand_error(c, cmd, "latency", true);
        else
            client_reply(c, "*0\r\n");
    } else if (resp_arg_is(cmd, 1, "RESET")) {
        client_reply(c, ":0\r\n"); /* events reset: none */
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
            client_reply(c, "-ERR count should be greater than or equal to -1\r\n");
        else
            client_reply(c, "*0\r\n");
    } else if (resp_arg_is(cmd, 1, "LEN") || resp_arg_is(cmd, 1, "RESET")) {
        if (cmd->argc != 2)
            reply_subcommand_error(c, cmd, "slowlog", true);
        else if (resp_arg_is(cmd, 1, "LEN"))
            client_reply(c, ":0\r\n");
        else
            client_reply(c, "+OK\r\n");
    } else {
        reply_subcommand_error(c, cmd, "slowlog", false);
    }
}

/* What server.c's dispatch() looks up. Names lower case (tests/integration/test_docs.py and
 * test_hostile.py read this table: each name is documented, and compared with redis-server). */
static const struct command commands[] = {
    {"ping", -1, COMMAND_SUBSCRIBED, cmd_ping},
    {"echo", 2, 0, cmd_echo},
    {"quit", -1, COMMAND_BEFORE_AUTH | COMMAND_SUBSCRIBED, cmd_quit},
    {"auth", -2, COMMAND_BEFORE_AUTH, cmd_auth},
    {"hello", -1, COMMAND_BEFORE_AUTH, cmd_hello},
    {"reset", 1, COMMAND_BEFORE_AUTH | COMMAND_SUBSCRIBED, cmd_reset},
    {"info", -1, 0, cmd_info},
    {"role", 1, 0, cmd_role},
    {"replconf", -1, 0, cmd_replconf},
    {"psync", -3, 0, cmd_sync},
    {"sync", 1, 0, cmd_sync},
    {"replicaof", 3, 0, cmd_replicaof},
    {"slaveof", 3, 0, cmd_replicaof},
    {"client", -2, 0, cmd_client},
    {"config", -2, 0, cmd_config},
    {"subscribe", -2, COMMAND_SUBSCRIBED, cmd_subscribe},
    {"unsubscribe", -1, COMMAND_SUBSCRIBED, cmd_unsubscribe},
    {"publish", 3, 0, cmd_publish},
    {"latency", -2, 0, cmd_latency},
    {"slowlog", -2, 0, cmd_slowlog},
    {NULL, 0, 0, NULL},
};

const struct command *commands_lookup(const struct resp_command *cmd)
{
    for (const struct command *k = commands; k->name; k++) {
        if (resp_arg_is(cmd, 0, k->name))
            return k;
    }
    return NULL;
}

void commands_unknown(struct client *c, const struct resp_command *cmd)
{
    char line[512];
    redis_unknown_command(cmd, line, sizeof(line));
    client_reply(c, "-ERR %s\r\n", line);
}
