/*
 * relay: the architecture in one place.
 *
 *   upstream (main link) --stream--> backlog --zero-copy refs--> replica sessions
 *        |  RDB                                         ^
 *        +--> snapshot (file + offset) --sendfile-------+
 *   upstream (side link, rdb-only) --> a fresh snapshot when the cached one left the backlog
 *   server: listener and plain clients; PSYNC/SYNC are handed here and become replicas.
 *
 * The relay holds the upstream's history: replid, replid2/second_replid_offset and the
 * backlog's offsets. It never invents ids or bytes (PROTOCOL.md, "the relay is transparent").
 * One cron (every 100 ms) drives timeouts, ACKs, reconnects, keepalives and deferred frees.
 * The disk log's side (batching, its cron, meta, recovery) is journal.c's; the full-sync
 * policy (the cached snapshot, its fetches, who is served or refused) is fullsync.c's.
 *
 * Everything runs on the event loop but the disk log's bulk writes: writer.c's two threads
 * write them for store.c (whole pages with O_DIRECT; a copy into fresh page-cache pages costs
 * more CPU than sending the stream to a few replicas), reading the backlog's blocks, which
 * stay referenced until the write is collected (journal.c). Replicas are fed from memory as the
 * stream arrives, not after the log wrote it; after a crash of ours a replica may be ahead of
 * the log we resume from, and can_continue() lets it wait for the stream there.
 */
#include "relay.h"

#include "fullsync.h"
#include "history.h"
#include "journal.h"

#include <event2/event.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backlog.h"
#include "compat.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "replica.h"
#include "report.h"
#include "resolve.h"
#include "sentinel.h"
#include "server.h"
#include "snapshot.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"

#define CRON_MS       100
#define BLOCK_SIZE    (64 * 1024) /* backlog block: the unit of zero-copy fan-out */
#define STOP_FLUSH_MS 2000        /* graceful stop: at most this long flushing replicas */
#define NULL_REPLID   HISTORY_NULL_REPLID
#define AHEAD_MAX     (64 << 20) /* a PSYNC this far ahead of us may wait for the stream */

struct relay {
    struct resolver *resolver; /* owned: every name lookup of the links (evdns) */
    struct event_base *base;   /* borrowed */
    struct config *cfg;        /* borrowed */
    const char *config_path;   /* borrowed; for INFO */
    struct stats stats;
    struct backlog *backlog;      /* owned: the stream history */
    struct upstream *up;          /* owned: the main link */
    struct replica_set *replicas; /* owned */
    struct server *server;        /* owned */
    struct event *cron;           /* owned */
    struct history hist;          /* the ids the relay serves (history.h) */
    struct journal *journal;      /* owned: the disk log's batching, cron and recovery */
    struct fullsync *fs;          /* owned: the snapshot, its fetches, full syncs served */
    struct metrics *metrics;      /* owned: the Prometheus endpoint, or NULL */
    struct sentinel *sentinel;    /* owned: follows the master through Sentinel, or NULL */
    SSL_CTX *tls_server;          /* owned: the downstream TLS port's context, or NULL */
    SSL_CTX *tls_client;          /* owned: the upstream TLS context, or NULL */
    relay_load_fn load;           /* re-reads the configuration (CONFIG RELOAD) */
    void *load_ctx;
    int64_t start_ms;
    int64_t stop_ms;     /* graceful stop began, 0 if running */
    struct event *drain; /* owned: polls replica output while stopping */
    char run_id[RESP_RUN_ID_LEN + 1];
};

/* ---- the links' parameters, the upstream's identity ---------------------------------- */

static struct upstream_wan upstream_wan_of(const struct config *c)
{
    struct upstream_wan w = {
        .compression = strcmp(c->upstream_compression, "auto") == 0,
        .link_timeout_ms = c->link_timeout_ms,
        .tcp =
            {
                .keepalive_ms = c->tcp_keepalive_ms,
                .user_timeout_ms = c->tcp_user_timeout_ms,
                .sndbuf = c->upstream_sndbuf,
                .rcvbuf = c->upstream_rcvbuf,
                .congestion = c->upstream_congestion,
            },
    };
    return w;
}

/* p.wan points at *wan, which must outlive the upstream_new call. */
static struct upstream_params upstream_params(const struct relay *r, enum upstream_mode mode,
                                              const struct upstream_wan *wan)
{
    const struct config *c = r->cfg;
    struct upstream_params p = {
        .mode = mode,
        .host = c->upstream_host,
        .port = (int)c->upstream_port,
        .user = c->upstream_user,
        .password = c->upstream_password,
        .listening_port = (int)c->port,
        .dir = c->dir,
        .connect_timeout_ms = c->connect_timeout_ms,
        .repl_timeout_ms = c->repl_timeout_ms,
        .reconnect_min_ms = c->reconnect_min_ms,
        .reconnect_max_ms = c->reconnect_max_ms,
        .tls = r->tls_client,
        .server_name = c->tls_server_name,
        .resolver = r->resolver,
        .self_run_id = r->run_id,
        .wan = wan,
        .announce_version = c->upstream_announce_version,
    };
    return p;
}

/* The side link fullsync.c fetches a fresh snapshot on. */
static struct upstream *new_fetch(void *ctx, const struct upstream_callbacks *cb)
{
    struct relay *r = ctx;
    struct upstream_wan wan = upstream_wan_of(r->cfg);
    struct upstream_params p = upstream_params(r, UPSTREAM_RDB_ONLY, &wan);
    return upstream_new(r->base, &p, cb);
}

/* Who the upstream is: as it said, else as the cached snapshot's writer says (after a
 * restart, before the upstream answered), so that a relay below announces the right version. */
static const struct compat_identity *identity(const struct relay *r)
{
    const struct compat_identity *id = r->up ? upstream_identity(r->up) : NULL;
    if (id)
        return id;
    return fullsync_writer(r->fs);
}

/* The main link's RDB failed its check; the link logs why and fails. */
static void on_rdb_rejected(void *ctx, const char *why)
{
    struct relay *r = ctx;
    (void)why;
    r->stats.snapshots_rejected++;
}

static void main_on_rdb_progress(void *ctx)
{
    struct relay *r = ctx;
    fullsync_main_progress(r->fs);
}

/* ---- the disk log (journal.h) --------------------------------------------------------- */

static void journal_set_store(void *ctx, struct store *s)
{
    struct relay *r = ctx;
    replica_set_store(r->replicas, s);
}

/* Queued log writes completed, or a read's worth of stream is in the backlog: one write per
 * replica for all of it. */
static void feed_replicas(void *ctx)
{
    struct relay *r = ctx;
    replica_set_feed(r->replicas);
}

static const struct snapshot *journal_snapshot(void *ctx)
{
    struct relay *r = ctx;
    return fullsync_snapshot(r->fs);
}

static int64_t journal_keep_from(void *ctx)
{
    struct relay *r = ctx;
    return replica_set_min_offset(r->replicas);
}

/* ---- main link callbacks ---------------------------------------------------------------- */

static void up_position(void *ctx, char replid[RESP_REPLID_LEN + 1], int64_t *offset)
{
    struct relay *r = ctx;
    if (r->hist.has_history) {
        memcpy(replid, r->hist.replid, RESP_REPLID_LEN + 1);
        *offset = backlog_end(r->backlog);
    } else {
        replid[0] = '\0';
        *offset = -1;
    }
}

static void up_on_continue(void *ctx, const char *new_replid)
{
    struct relay *r = ctx;
    r->stats.upstream_partial_syncs++;
    /* psync2: the old id stays valid up to here (Redis' shiftReplicationId). */
    if (!history_shift(&r->hist, new_replid, backlog_end(r->backlog)))
        return;
    log_notice("relay", "-",
               "upstream replication id changed to %s; replid2 %s valid up to %" PRId64,
               r->hist.replid, r->hist.replid2, r->hist.second_replid_offset);
    journal_write_meta(r->journal);
    /* Sub-replicas reconnect to learn the new id; their old one is accepted through replid2. */
    replica_set_drop(r->replicas, false, 0, "upstream replication id changed");
}

static void up_on_fullresync(void *ctx, const char *replid, int64_t offset)
{
    struct relay *r = ctx;
    (void)replid;
    (void)offset;
    r->stats.upstream_full_syncs++;
    fullsync_main_started(r->fs);
}

static void up_on_snapshot(void *ctx, struct snapshot *s)
{
    struct relay *r = ctx;
    uint64_t gen = fullsync_main_ended(r->fs);
    bool continues =
        history_match(&r->hist, s->replid, strlen(s->replid), s->offset + 1) == HISTORY_CURRENT &&
        s->offset == backlog_end(r->backlog);
    if (!continues) {
        /* A new history: the old one was served until now; nothing of it is mixed in. */
        if (r->hist.has_history)
            log_notice("relay", "-", "new history %s at offset %" PRId64 " replaces %s", s->replid,
                       s->offset, r->hist.replid);
        replica_set_drop(r->replicas, false, gen, "upstream started a new history");
        journal_new_history(r->journal, s->offset + 1);
        history_start(&r->hist, s->replid);
    }
    fullsync_install(r->fs, s, gen);
}

/*
 * New stream bytes: into the backlog, and on to the log (journal.c, in batches); the replicas
 * get them once the whole read is in (feed_replicas), one write each. Replicas do not wait
 * for the log: can_continue() says why that is safe.
 */
static void up_on_stream(void *ctx, const char *buf, size_t len, ssize_t boundary)
{
    struct relay *r = ctx;
    r->stats.total_net_repl_input_bytes += (int64_t)len;
    journal_append(r->journal, buf, len, boundary);
}

/* The upstream reads the stream straight into the backlog's free space. */
static int up_stream_room(void *ctx, size_t max, struct iovec *iov, int n)
{
    struct relay *r = ctx;
    return backlog_reserve(r->backlog, max, iov, n);
}

static void up_on_down(void *ctx)
{
    struct relay *r = ctx;
    fullsync_main_down(r->fs);
}

/* ---- INFO / ROLE / CLIENT LIST / metrics: the facts (report.c renders them) -------------- */

static enum report_role_state role_state(enum upstream_state st)
{
    switch (st) {
    case UPSTREAM_STREAM:
        return REPORT_ROLE_CONNECTED;
    case UPSTREAM_PSYNC:
    case UPSTREAM_RDB_PREAMBLE:
    case UPSTREAM_RDB:
        return REPORT_ROLE_SYNC;
    case UPSTREAM_CONNECTING:
    case UPSTREAM_PING:
    case UPSTREAM_INFO:
    case UPSTREAM_HANDSHAKE:
        return REPORT_ROLE_CONNECTING;
    default:
        return REPORT_ROLE_CONNECT;
    }
}

static void facts_upstream(const struct upstream *up, int64_t now, struct report_upstream *u)
{
    enum upstream_state st = upstream_state(up);
    snprintf(u->host, sizeof(u->host), "%s", upstream_host(up));
    u->port = upstream_port(up);
    u->state = upstream_state_name(st);
    u->role = role_state(st);
    u->link_up = upstream_link_up(up);
    /* a stalled stream (a loop of stock nodes moves nothing) is never shown as up */
    u->stalled = upstream_stalled(up, now);
    u->syncing = st == UPSTREAM_RDB || st == UPSTREAM_RDB_PREAMBLE;
    u->last_io_ms = upstream_last_io_ms(up);
    u->down_since_ms = upstream_down_since_ms(up);
    u->rdb_size = upstream_rdb_size(up);
    u->rdb_bytes = upstream_rdb_bytes(up);
    u->commands = upstream_commands(up);
    u->link_mode = upstream_link_mode(up);
    struct wanlink_counters uc = upstream_link_counters(up);
    u->link_raw_bytes = uc.raw_bytes;
    u->link_wire_bytes = uc.wire_bytes;
    u->link_heartbeats = uc.heartbeats;
    const struct compat_identity *id = upstream_identity(up);
    u->has_identity = id != NULL;
    if (id)
        u->identity = *id;
    u->loops_refused = upstream_loops_refused(up);
    snprintf(u->announced, sizeof(u->announced), "%s", upstream_announced(up));
    u->sync_aborts = upstream_sync_aborts(up);
    u->sync_aborts_total = upstream_sync_aborts_total(up);
    snprintf(u->abort_reason, sizeof(u->abort_reason), "%s", upstream_abort_reason(up));
}

static void facts_replicas(struct relay *r, struct report_facts *f)
{
    f->replicas_live = replica_set_count(r->replicas);
    for (const struct replica *rep = replica_set_first(r->replicas); rep; rep = rep->next) {
        struct report_replica *row = report_add_replica(f);
        row->id = rep->hello.id;
        snprintf(row->peer, sizeof(row->peer), "%s", rep->hello.peer);
        snprintf(row->ip, sizeof(row->ip), "%s", rep->hello.ip);
        row->listening_port = rep->hello.listening_port;
        row->state = replica_state_name(rep->state);
        row->created_ms = rep->hello.created_ms;
        row->ack_ms = rep->ack_ms;
        row->ack_offset = rep->ack_offset;
        row->lag_bytes = replica_lag_bytes(rep);
        row->output_bytes = replica_output_bytes(rep);
        row->from_disk_bytes = rep->from_disk_bytes;
        row->plain_sync = rep->hello.plain_sync;
        row->link = rep->link ? wanlink_mode_name(wanlink_out_level(rep->link)) : "plain";
        if (rep->link) {
            const struct wanlink_counters *lc = wanlink_out_counters(rep->link);
            row->link_raw_bytes = lc->raw_bytes;
            row->link_wire_bytes = lc->wire_bytes;
        }
    }
}

/* Everything INFO, ROLE, CLIENT LIST and the metrics show, copied once (the only place the
 * reports read the relay's objects). report_facts_deinit(f) after rendering. */
static void relay_facts(struct relay *r, struct report_facts *f)
{
    memset(f, 0, sizeof(*f));
    f->now_ms = net_now_ms();
    f->now = time(NULL);
    report_process(&f->proc);
    f->start_ms = r->start_ms;
    memcpy(f->run_id, r->run_id, sizeof(f->run_id));
    f->tcp_port = r->cfg->port;
    snprintf(f->config_file, sizeof(f->config_file), "%s", r->config_path ? r->config_path : "");
    const struct compat_identity *id = identity(r);
    f->has_identity = id != NULL;
    if (id)
        f->identity = *id;
    f->clients = server_client_count(r->server);
    f->maxclients = server_max_clients(r->server);
    f->client_memory = server_client_memory(r->server);
    f->stats = r->stats;
    f->hist = r->hist;
    f->backlog_start = backlog_start(r->backlog);
    f->backlog_end = backlog_end(r->backlog);
    f->backlog_histlen = backlog_histlen(r->backlog);
    f->backlog_memory = backlog_memory(r->backlog);
    f->backlog_limit = backlog_limit(r->backlog);
    f->held_first = journal_held_start(r->journal);
    facts_upstream(r->up, f->now_ms, &f->up);
    fullsync_facts(r->fs, f);
    journal_facts(r->journal, &f->disk);
    facts_replicas(r, f);
}

static void relay_info(void *ctx, const char *section, struct sbuf *out)
{
    struct report_facts f;
    relay_facts(ctx, &f);
    report_info(&f, section, out);
    report_facts_deinit(&f);
}

static void relay_role(void *ctx, struct sbuf *out)
{
    struct report_facts f;
    relay_facts(ctx, &f);
    report_role(&f, out);
    report_facts_deinit(&f);
}

static void render_metrics(void *ctx, struct sbuf *out)
{
    struct report_facts f;
    relay_facts(ctx, &f);
    report_metrics(&f, out);
    report_facts_deinit(&f);
}

/* ---- downstream requests ------------------------------------------------------------- */

/* Drop the upstream link (and any snapshot fetch) and dial the configured upstream, keeping
 * the history: the relay continues with PSYNC (psync2 across a failover). */
static void repoint_upstream(struct relay *r)
{
    log_notice("relay", "-", "re-pointing the upstream link to %s:%" PRId64, r->cfg->upstream_host,
               r->cfg->upstream_port);
    fullsync_repoint(r->fs);
    upstream_repoint(r->up, r->cfg->upstream_host, (int)r->cfg->upstream_port);
}

/* Sentinel told where the master is: follow it (psync2 carries the history over). */
static void sentinel_on_master(void *ctx, const char *host, int port)
{
    struct relay *r = ctx;
    if (strcmp(host, r->cfg->upstream_host) == 0 && port == r->cfg->upstream_port)
        return;
    char portstr[16], err[256];
    snprintf(portstr, sizeof(portstr), "%d", port);
    if (config_set(r->cfg, "upstream", "host", host, err, sizeof(err)) != 0 ||
        config_set(r->cfg, "upstream", "port", portstr, err, sizeof(err)) != 0) {
        log_warning("relay", "-", "sentinel gave a bad address %s:%d: %s", host, port, err);
        return;
    }
    log_notice("relay", "-", "sentinel: master '%s' is at %s:%d", r->cfg->master_name, host, port);
    repoint_upstream(r);
}

static int relay_replicaof(void *ctx, const char *host, int port, char *err, size_t errlen)
{
    struct relay *r = ctx;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    if (config_set(r->cfg, "upstream", "host", host, err, errlen) != 0 ||
        config_set(r->cfg, "upstream", "port", portstr, err, errlen) != 0)
        return -1;
    log_notice("relay", "-", "REPLICAOF %s %d", host, port);
    repoint_upstream(r);
    return 0;
}

int relay_apply_log_target(const struct config *c)
{
    if (strcmp(c->syslog, "yes") == 0)
        return log_set_target(NULL, c->syslog_ident);
    return log_set_target(c->log_file, NULL);
}

void relay_reload(struct relay *r, const struct config *next)
{
    bool repoint = false, auth = false;
    int changed = 0;
    for (const struct config_key *k = config_keys; k->section; k++) {
        if (config_key_equal(r->cfg, next, k))
            continue;
        if (!k->reloadable) {
            log_warning("relay", "-", "%s.%s changed: requires restart (still using the old value)",
                        k->section, k->name);
            continue;
        }
        config_copy_key(r->cfg, next, k);
        char val[256];
        config_format(r->cfg, k, val, sizeof(val));
        log_notice("relay", "-", "reload: %s.%s = %s", k->section, k->name,
                   k->secret ? "(hidden)" : val);
        changed++;
        if (strcmp(k->section, "upstream") == 0) {
            if (strcmp(k->name, "host") == 0 || strcmp(k->name, "port") == 0)
                repoint = true;
            else if (strcmp(k->name, "user") == 0 || strcmp(k->name, "password") == 0)
                auth = true;
        }
    }
    if (!config_users_equal(r->cfg, next)) {
        config_copy_users(r->cfg, next);
        log_notice("relay", "-", "reload: [users] changed (%zu users)", r->cfg->nusers);
        changed++;
    }
    const struct config *c = r->cfg;
    enum log_level level;
    if (log_level_parse(c->log_level, &level) == 0)
        log_set_level(level);
    if (relay_apply_log_target(c) != 0)
        log_warning("relay", "-", "cannot open log file %s: %s; logging where it did", c->log_file,
                    strerror(errno));
    upstream_set_timeouts(r->up, c->connect_timeout_ms, c->repl_timeout_ms, c->reconnect_min_ms,
                          c->reconnect_max_ms);
    struct upstream_wan wan = upstream_wan_of(c);
    upstream_set_wan(r->up, &wan);
    upstream_set_announce(r->up, c->upstream_announce_version); /* from the next handshake */
    backlog_set_limit(r->backlog, (size_t)c->backlog_size_bytes);
    struct replica_limits lim = replica_limits_of(c);
    replica_set_limits(r->replicas, &lim);
    journal_set_retention(r->journal, c);
    if (auth)
        upstream_set_auth(r->up, c->upstream_user, c->upstream_password);
    if (repoint || auth)
        repoint_upstream(r);
    log_notice("relay", "-", "configuration reloaded: %d key(s) changed", changed);
}

void relay_set_loader(struct relay *r, relay_load_fn fn, void *ctx)
{
    r->load = fn;
    r->load_ctx = ctx;
}

static int relay_config_reload(void *ctx, char *err, size_t errlen)
{
    struct relay *r = ctx;
    if (!r->load) {
        snprintf(err, errlen, "no configuration file to reload");
        return -1;
    }
    struct config next;
    int rc = r->load(r->load_ctx, &next, err, errlen);
    if (rc == 0)
        relay_reload(r, &next);
    config_deinit(&next);
    return rc;
}

/* CONFIG SET: the running configuration with one key changed, applied like a reload. */
static int relay_config_set(void *ctx, const char *key, const char *value, char *err, size_t errlen)
{
    struct relay *r = ctx;
    const struct config_key *k = config_find(key);
    if (!k) {
        snprintf(err, errlen, "unknown key '%s' (use section.key, e.g. backlog.size)", key);
        return -1;
    }
    if (!k->reloadable) {
        snprintf(err, errlen, "%s.%s cannot change at runtime: it requires a restart", k->section,
                 k->name);
        return -1;
    }
    struct config next;
    config_init(&next);
    for (const struct config_key *o = config_keys; o->section; o++)
        config_copy_key(&next, r->cfg, o);
    config_copy_users(&next, r->cfg);
    int rc = config_set(&next, k->section, k->name, value, err, errlen);
    if (rc == 0)
        rc = config_validate(&next, err, errlen);
    if (rc == 0)
        relay_reload(r, &next);
    config_deinit(&next);
    return rc;
}

/*
 * PSYNC's partial case. A replica of our current id may also be a little ahead of us: replicas
 * are sent the stream as it arrives, before the log has written it, so after a crash of ours
 * the log can end behind them (by at most what the writer had queued). The same id means the
 * same upstream history, so such a replica is continued and gets bytes once the stream reaches
 * its offset; a change of id or history drops it like every replica.
 */
static bool can_continue(const struct relay *r, const char *replid, size_t len, int64_t offset)
{
    return history_can_continue(&r->hist, replid, len, offset, journal_held_start(r->journal),
                                backlog_end(r->backlog) + 1, AHEAD_MAX);
}

static int relay_sync(void *ctx, struct bufferevent *bev, const struct server_sync_request *req,
                      char *err, size_t errlen)
{
    struct relay *r = ctx;
    const struct resp_command *cmd = req->cmd;
    const struct replica_hello *h = req->hello;
    char replid[64] = "?"; /* for the log: escaped, cut */
    const char *id = "";   /* as sent, for the comparison */
    size_t id_len = 0;
    int64_t offset = -1;
    if (!h->plain_sync) {
        if (cmd->argc >= 4 && resp_arg_is(cmd, 3, "FAILOVER")) {
            snprintf(err, errlen, "ERR a relay cannot be the target of FAILOVER");
            return -1;
        }
        if (resp_arg_int64(cmd, 2, &offset) != 0) {
            snprintf(err, errlen, "ERR value is not an integer or out of range");
            return -1;
        }
        id = cmd->argv[1];
        id_len = cmd->argl[1];
        resp_escape(id, id_len < 44 ? id_len : 44, replid, sizeof(replid));
    }
    /* While the first full sync from the upstream runs, a history is coming: replicas wait for
     * it (and are streamed its RDB as it arrives). */
    if (!r->hist.has_history && !fullsync_main_syncing(r->fs)) {
        /* Never -ERR: a stock replica would fall back to SYNC and drop its cached master. */
        snprintf(err, errlen, "NOMASTERLINK Can't SYNC while not connected with my master");
        return -1;
    }
    if (r->cfg->max_replicas > 0 &&
        (int64_t)replica_set_count(r->replicas) >= r->cfg->max_replicas) {
        /* A "try later" reply: a stock replica given -ERR falls back to SYNC and then redials
         * at once, thousands of times a second; after -NOMASTERLINK it retries each second. */
        snprintf(err, errlen,
                 "NOMASTERLINK max number of replicas reached on this relay, retry later");
        log_info("relay", h->peer, "PSYNC refused: replicas.max-replicas (%" PRId64 ") reached",
                 r->cfg->max_replicas);
        return -1;
    }
    if (!h->plain_sync)
        journal_verify(r->journal, offset);
    bool partial = !h->plain_sync && !h->rdb_only && can_continue(r, id, id_len, offset);
    if (!partial && fullsync_refusal(r->fs, h, err, errlen))
        return -1;
    struct replica *rep = replica_attach(r->replicas, bev, h);
    if (partial) {
        r->stats.sync_partial_ok++;
        if (offset > backlog_end(r->backlog) + 1)
            log_notice("relay", h->peer,
                       "PSYNC at %" PRId64 " is %" PRId64
                       " bytes ahead of the stream (our log ended behind it): continued, it "
                       "gets bytes from there on",
                       offset, offset - backlog_end(r->backlog) - 1);
        replica_start_partial(rep, offset, r->hist.replid);
        return 0;
    }
    if (!h->plain_sync && !(id_len == 1 && id[0] == '?'))
        r->stats.sync_partial_err++;
    log_info("relay", h->peer, "full sync for %s %" PRId64 " (history %s %" PRId64 "..%" PRId64 ")",
             replid, offset, r->hist.replid, backlog_start(r->backlog), backlog_end(r->backlog));
    fullsync_serve(r->fs, rep);
    return 0;
}

static void relay_client_list(void *ctx, struct sbuf *out)
{
    struct report_facts f;
    relay_facts(ctx, &f);
    report_client_list(&f, out);
    report_facts_deinit(&f);
}

static const struct compat_identity *relay_identity(void *ctx)
{
    return identity(ctx);
}

static size_t relay_other_connections(void *ctx)
{
    struct relay *r = ctx;
    return replica_set_count(r->replicas);
}

/* ---- cron and life cycle ---------------------------------------------------------------- */

static void cron_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay *r = arg;
    (void)fd;
    (void)what;
    int64_t now = net_now_ms();
    journal_flush(r->journal); /* a slow stream reaches the log within a cron tick */
    upstream_cron(r->up, now);
    fullsync_link_cron(r->fs, now);
    replica_set_cron(r->replicas, now);
    server_cron(r->server, now);
    if (r->sentinel)
        sentinel_cron(r->sentinel, now);
    fullsync_cron(r->fs, now);
    journal_cron(r->journal, now);
}

struct relay *relay_new(struct event_base *base, struct config *cfg, const char *config_path)
{
    struct relay *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    r->base = base;
    r->cfg = cfg;
    r->config_path = config_path;
    r->start_ms = net_now_ms();
    resp_random_hex(r->run_id, RESP_RUN_ID_LEN);
    history_init(&r->hist);
    r->backlog = backlog_new(BLOCK_SIZE, (size_t)cfg->backlog_size_bytes);
    struct replica_limits lim = replica_limits_of(cfg);
    r->replicas = replica_set_new(base, r->backlog, &r->stats, &lim);
    struct journal_callbacks jcb = {
        .ctx = r,
        .set_store = journal_set_store,
        .feed = feed_replicas,
        .snapshot = journal_snapshot,
        .keep_from = journal_keep_from,
    };
    r->journal = journal_new(base, cfg, r->backlog, &r->hist, &r->stats, &jcb);
    struct fullsync_params fp = {
        .cfg = cfg,
        .stats = &r->stats,
        .backlog = r->backlog,
        .hist = &r->hist,
        .replicas = r->replicas,
        .journal = r->journal,
        .cb = {.ctx = r, .new_fetch = new_fetch},
    };
    r->fs = fullsync_new(&fp);
    struct server_callbacks scb = {
        .ctx = r,
        .info = relay_info,
        .role = relay_role,
        .replicaof = relay_replicaof,
        .sync = relay_sync,
        .client_list = relay_client_list,
        .other_connections = relay_other_connections,
        .config_set = relay_config_set,
        .config_reload = relay_config_reload,
        .identity = relay_identity,
    };
    r->server = server_new(base, cfg, &r->stats, &scb);
    r->cron = event_new(base, -1, EV_PERSIST, cron_cb, r);
    if (!r->cron)
        abort();
    return r;
}

/* The main link; made in relay_start, once its TLS context exists. */
static struct upstream *new_main_upstream(struct relay *r)
{
    struct upstream_wan wan = upstream_wan_of(r->cfg);
    struct upstream_params p = upstream_params(r, UPSTREAM_MAIN, &wan);
    struct upstream_callbacks ucb = {
        .ctx = r,
        .position = up_position,
        .on_continue = up_on_continue,
        .on_fullresync = up_on_fullresync,
        .on_snapshot = up_on_snapshot,
        .on_stream = up_on_stream,
        .on_stream_end = feed_replicas,
        .stream_room = up_stream_room,
        .on_down = up_on_down,
        .on_rdb_progress = main_on_rdb_progress,
        .on_rdb_rejected = on_rdb_rejected,
    };
    return upstream_new(r->base, &p, &ucb);
}

static enum tls_client_auth client_auth_of(const char *s)
{
    if (strcmp(s, "yes") == 0)
        return TLS_CLIENTS_YES;
    return strcmp(s, "optional") == 0 ? TLS_CLIENTS_OPTIONAL : TLS_CLIENTS_NO;
}

int relay_start(struct relay *r, char *err, size_t errlen)
{
    const struct config *c = r->cfg;
    if (strcmp(c->upstream_tls, "yes") == 0) {
        r->tls_client = tls_client_ctx(c->tls_ca_file, c->tls_client_cert_file,
                                       c->tls_client_key_file, err, errlen);
        if (!r->tls_client)
            return -1;
    }
    r->resolver = resolver_new(r->base, c->resolv_conf, err, errlen);
    if (!r->resolver)
        return -1;
    r->up = new_main_upstream(r);
    fullsync_set_main(r->fs, r->up);
    if (c->sentinels[0]) {
        struct sentinel_callbacks scb = {.ctx = r, .on_master = sentinel_on_master};
        r->sentinel = sentinel_new(r->base, r->resolver, c->sentinels, c->master_name,
                                   c->sentinel_password, &scb, err, errlen);
        if (!r->sentinel)
            return -1;
    }
    if (c->metrics_port > 0) {
        r->metrics = metrics_new(r->base, c->metrics_bind[0] ? c->metrics_bind : c->bind,
                                 (int)c->metrics_port, render_metrics, r, err, errlen);
        if (!r->metrics)
            return -1;
    }
    if (c->tls_port > 0) {
        r->tls_server = tls_server_ctx(c->tls_cert_file, c->tls_key_file, c->tls_ca_file,
                                       client_auth_of(c->tls_auth_clients), err, errlen);
        if (!r->tls_server)
            return -1;
        if (server_listen_tls(r->server, (int)c->tls_port, r->tls_server, err, errlen) != 0)
            return -1;
    }
    if (strcmp(r->cfg->backlog_disk, "yes") == 0) {
        struct resp_stream scan;
        bool framed;
        struct snapshot *snap;
        if (journal_open(r->journal, &scan, &framed, &snap, err, errlen) != 0)
            return -1;
        if (framed)
            upstream_set_framing(r->up, &scan);
        fullsync_adopt(r->fs, snap);
    }
    if (server_listen(r->server, err, errlen) != 0)
        return -1;
    struct timeval tv = {.tv_sec = 0, .tv_usec = CRON_MS * 1000};
    event_add(r->cron, &tv);
    if (r->cfg->upstream_host[0])
        log_notice("relay", "-", "cascade %s listening on %s:%" PRId64 ", upstream %s:%" PRId64,
                   CASCADE_VERSION, r->cfg->bind, r->cfg->port, r->cfg->upstream_host,
                   r->cfg->upstream_port);
    else
        log_notice("relay", "-",
                   "cascade %s listening on %s:%" PRId64
                   ", no upstream yet (waiting for REPLICAOF)",
                   CASCADE_VERSION, r->cfg->bind, r->cfg->port);
    upstream_start(r->up);
    return 0;
}

/* Graceful stop: no new clients; replicas get what is queued, within a bound. */
static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay *r = arg;
    (void)fd;
    (void)what;
    size_t pending = 0;
    for (struct replica *rep = replica_set_first(r->replicas); rep; rep = rep->next)
        pending += replica_output_bytes(rep);
    if (pending == 0 || net_now_ms() - r->stop_ms > STOP_FLUSH_MS) {
        if (pending)
            log_notice("relay", "-", "stopping with %zu bytes not flushed to replicas", pending);
        event_base_loopexit(r->base, NULL);
    }
}

void relay_stop(struct relay *r)
{
    if (r->stop_ms) {
        event_base_loopexit(r->base, NULL); /* a second signal: at once */
        return;
    }
    r->stop_ms = net_now_ms();
    server_stop_listening(r->server);
    upstream_pause(r->up); /* what replicas get is what the log holds */
    r->drain = event_new(r->base, -1, EV_PERSIST, drain_cb, r);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 20 * 1000};
    event_add(r->drain, &tv);
    drain_cb(-1, 0, r);
}

void relay_free(struct relay *r)
{
    if (!r)
        return;
    event_free(r->cron);
    if (r->drain)
        event_free(r->drain);
    metrics_free(r->metrics);
    sentinel_free(r->sentinel);
    server_free(r->server);
    replica_set_free(r->replicas);
    /* With a log, what a restart continues from stays: the log, meta and the snapshot. */
    bool keep = journal_enabled(r->journal);
    journal_free(r->journal);   /* hands back the last queued blocks: before backlog_free */
    fullsync_free(r->fs, keep); /* and its side link */
    upstream_free(r->up);
    resolver_free(r->resolver); /* after every link that may hold a lookup */
    backlog_free(r->backlog);
    tls_ctx_free(r->tls_server);
    tls_ctx_free(r->tls_client);
    free(r);
}
