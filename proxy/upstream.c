/*
 * upstream: the relay's replica side of one link to a master, as a state machine: connect,
 * PING, AUTH and INFO server, REPLCONF, PSYNC, the RDB, the stream; backoff, timeouts, ACKs.
 * Owns its hiredis reader (handshake replies) and, through rdbrecv, the snapshot being
 * filled. The pure rules are elsewhere: the handshake's commands and replies in handshake.c,
 * the RDB transfer in rdbrecv.c; so are the bytes: the connection, the cascade framing and
 * the stream's read path in upstream_io.c. Must not touch replicas or the backlog: everything
 * it learns goes out through callbacks, and callbacks must not free the upstream (relay.c
 * defers that to its cron).
 *
 * Redis behaviours followed here (src/replication.c, syncWithMaster/readSyncBulkPayload):
 *   - bare "\n" lines before the PSYNC reply and before the RDB preamble are keepalives;
 *   - an EOF-format RDB is followed by nothing until the replica's first REPLCONF ACK;
 *   - REPLCONF GETACK is answered at once, with the offset of what is held (upstream_io.c).
 */
#include "upstream_io.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"
#include "log.h"
#include "net.h"
#include "rdb.h"
#include "rdbrecv.h"
#include "resp.h"

#define MAX_LINE        1024 /* longest handshake reply line accepted */
#define ACK_INTERVAL_MS 1000 /* REPLCONF ACK period, as Redis' replicationCron */

static const char *const state_names[] = {
    "idle",      "backoff", "connecting",   "ping", "info",
    "handshake", "psync",   "rdb_preamble", "rdb",  "stream",
};

const char *upstream_state_name(enum upstream_state s)
{
    return s <= UPSTREAM_STREAM ? state_names[s] : "?";
}

const char *upstream_component(const struct upstream *u)
{
    return u->mode == UPSTREAM_MAIN ? "upstream" : "snapshot-fetch";
}

static void set_state(struct upstream *u, enum upstream_state s)
{
    if (u->state == s)
        return;
    log_debug(upstream_component(u), u->peer, "%s -> %s", upstream_state_name(u->state),
              upstream_state_name(s));
    u->state = s;
    u->state_since_ms = net_now_ms();
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

static void close_link(struct upstream *u)
{
    upstream_io_close(u);
    if (u->reader) {
        redisReaderFree(u->reader);
        u->reader = NULL;
    }
    rdbrecv_abort(&u->rx);
}

/* The upstream ended a full sync right after +FULLRESYNC (handshake_abort_reason): from the
 * second in a row on, say why and back off. Returns the delay to wait at least (0: the usual
 * backoff). */
static int64_t sync_aborted(struct upstream *u, const char *why)
{
    handshake_abort_reason(u->abort_reason, sizeof(u->abort_reason), why, u->rx.got, u->announced,
                           &u->rx.fmt, &u->ident);
    u->sync_aborts++;
    u->sync_aborts_total++;
    int64_t delay = handshake_abort_delay_ms(u->sync_aborts);
    if (delay == 0)
        return 0;
    log_warning(upstream_component(u), u->peer,
                "the upstream aborted %d full syncs in a row right after +FULLRESYNC: %s; "
                "retrying in %" PRId64 " s (upstream.announce-version decides the RDB version "
                "a Valkey master sends)",
                u->sync_aborts, u->abort_reason, delay / 1000);
    return delay;
}

/* The link failed: log once, close, schedule a retry (MAIN) or give up (RDB_ONLY). */
void upstream_fail(struct upstream *u, const char *why)
{
    bool was_up = u->state == UPSTREAM_STREAM;
    int64_t now = net_now_ms();
    /* Healthy: it streamed longer than the upstream may stay silent. A link that dies right
     * after its RDB (or its +CONTINUE) is no proof of health: it backs off like any failure,
     * or a master that breaks each sync would be made to fork in a tight loop. */
    bool healthy = was_up && now - u->stream_since_ms > u->repl_timeout_ms;
    bool in_sync = u->state == UPSTREAM_RDB_PREAMBLE || u->state == UPSTREAM_RDB;
    log_warning(upstream_component(u), u->peer, "link %s: %s", was_up ? "lost" : "failed", why);
    int64_t at_least = in_sync ? sync_aborted(u, why) : 0;
    close_link(u);
    if (!u->down_since_ms)
        u->down_since_ms = now;
    if (u->mode == UPSTREAM_MAIN) {
        /* A cut after a healthy link retries at once, so the master's backlog (1 MB by
         * default) is not outrun; other failures back off, doubling up to the cap. */
        if (healthy)
            u->backoff_ms = u->backoff_min_ms;
        int64_t delay = healthy ? 0 : u->backoff_ms;
        if (delay < at_least)
            delay = at_least;
        u->retry_at_ms = now + delay;
        if (!healthy) {
            u->backoff_ms *= 2;
            if (u->backoff_ms > u->backoff_max_ms)
                u->backoff_ms = u->backoff_max_ms;
        }
        set_state(u, UPSTREAM_BACKOFF);
    } else {
        set_state(u, UPSTREAM_IDLE);
    }
    if (u->cb.on_down)
        u->cb.on_down(u->cb.ctx);
}

/* Drops the bare "\n" keepalives a master sends while it prepares the PSYNC reply or the RDB.
 * True if other input follows. */
static bool skip_keepalives(struct evbuffer *in)
{
    unsigned char c;
    while (evbuffer_copyout(in, &c, 1) == 1) {
        if (c != '\n')
            return true;
        evbuffer_drain(in, 1);
    }
    return false;
}

/*
 * Reads one reply line, skipping "\n" keepalives. Returns 1 with *is_error and line set,
 * 0 if more input is needed, -1 on a malformed reply (already failed).
 */
static int read_reply(struct upstream *u, char *line, size_t cap, bool *is_error)
{
    struct evbuffer *in = upstream_io_input(u);
    if (!skip_keepalives(in))
        return 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF_STRICT);
    if (eol.pos < 0) {
        if (evbuffer_get_length(in) > MAX_LINE) {
            upstream_fail(u, "reply line too long");
            return -1;
        }
        return 0;
    }
    size_t n = (size_t)eol.pos + 2;
    if (n > MAX_LINE) {
        upstream_fail(u, "reply line too long");
        return -1;
    }
    char raw[MAX_LINE + 1];
    evbuffer_remove(in, raw, n);
    if (redisReaderFeed(u->reader, raw, n) != REDIS_OK) {
        upstream_fail(u, "reply reader failed");
        return -1;
    }
    void *r = NULL;
    if (redisReaderGetReply(u->reader, &r) != REDIS_OK || !r) {
        char sample[128];
        resp_escape(raw, n, sample, sizeof(sample));
        char why[192];
        snprintf(why, sizeof(why), "malformed reply \"%s\"", sample);
        /* A reader in error state cannot be reused. */
        redisReaderFree(u->reader);
        u->reader = redisReaderCreate();
        if (r)
            freeReplyObject(r);
        upstream_fail(u, why);
        return -1;
    }
    redisReply *rep = r;
    if (rep->type != REDIS_REPLY_STATUS && rep->type != REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        upstream_fail(u, "unexpected reply type in handshake");
        return -1;
    }
    *is_error = rep->type == REDIS_REPLY_ERROR;
    /* Keep the type marker so +FULLRESYNC / +CONTINUE parse as sent. */
    snprintf(line, cap, "%c%s", *is_error ? '-' : '+', rep->str);
    freeReplyObject(rep);
    return 1;
}

/* AUTH (if configured) and INFO server: who the upstream is decides what to announce. */
static void send_info(struct upstream *u)
{
    struct handshake_batch b;
    u->auth_pending = handshake_auth_info(&b, u->user, u->password);
    upstream_io_send(u, &b);
    set_state(u, UPSTREAM_INFO);
}

static void send_handshake(struct upstream *u)
{
    /* A Valkey >= 9 master picks the RDB version from REPLCONF version (handshake.h). */
    snprintf(u->announced, sizeof(u->announced), "%s", compat_announce(u->announce, &u->ident));
    struct handshake_replconf p = {.listening_port = u->listening_port,
                                   .compression = u->wan.compression,
                                   .announced = u->announced,
                                   .rdb_only = u->mode == UPSTREAM_RDB_ONLY};
    struct handshake_batch b;
    handshake_replconf(&b, &p);
    upstream_io_send(u, &b);
    u->replies_pending = b.n;
    set_state(u, UPSTREAM_HANDSHAKE);
}

/* INFO's bulk reply: who the upstream is, and whether following it closes a loop. Returns 1
 * when read (the handshake sent), 0 if more input is needed, -1 when the link failed. */
static int read_info_bulk(struct upstream *u, struct evbuffer *in)
{
    char head[HANDSHAKE_INFO_HEAD];
    size_t have = evbuffer_get_length(in), skip, len;
    ev_ssize_t n = evbuffer_copyout(in, head, sizeof(head));
    int rc = handshake_info_bulk(head, n > 0 ? (size_t)n : 0, have, &skip, &len);
    if (rc <= 0) {
        if (rc < 0)
            upstream_fail(u, "malformed INFO reply");
        return rc;
    }
    evbuffer_drain(in, skip);
    char *text = malloc(len + 1);
    if (!text)
        abort();
    evbuffer_remove(in, text, len);
    evbuffer_drain(in, 2);
    struct compat_identity id;
    if (compat_identity_parse(text, len, &id) == 0) {
        if (strcmp(id.server_version, u->ident.server_version) != 0 || id.server != u->ident.server)
            log_notice(upstream_component(u), u->peer, "upstream is %s %s",
                       compat_server_name(id.server), id.server_version);
        u->ident = id;
    } else {
        log_info(upstream_component(u), u->peer, "INFO server without redis_version");
    }
    free(text);
    const char *loop = handshake_loop(&u->ident, u->self_run_id);
    if (loop) {
        /* Refused, and retried only at the longest delay. */
        u->backoff_ms = u->backoff_max_ms;
        upstream_fail(u, loop);
        u->loops_refused++;
        return -1;
    }
    send_handshake(u);
    return 1;
}

/*
 * INFO state: the AUTH reply (if AUTH was sent), then INFO's bulk reply. An error to INFO
 * (an ACL without it) is not fatal: the version is then learned from the RDB.
 * Returns 1 when done (handshake sent), 0 if more input is needed, -1 when the link failed.
 */
static int read_info(struct upstream *u)
{
    char line[MAX_LINE + 2];
    bool is_error;
    if (u->auth_pending) {
        int rc = read_reply(u, line, sizeof(line), &is_error);
        if (rc <= 0)
            return rc;
        u->auth_pending = false;
        if (is_error) {
            char why[MAX_LINE + 32];
            snprintf(why, sizeof(why), "AUTH failed: %s", line + 1);
            upstream_fail(u, why);
            return -1;
        }
    }
    struct evbuffer *in = upstream_io_input(u);
    unsigned char c;
    if (evbuffer_copyout(in, &c, 1) != 1)
        return 0;
    if (c == '$')
        return read_info_bulk(u, in);
    int rc = read_reply(u, line, sizeof(line), &is_error);
    if (rc <= 0)
        return rc;
    log_info(upstream_component(u), u->peer, "INFO refused (version learned from the RDB): %s",
             line + 1);
    send_handshake(u);
    return 1;
}

static void send_psync(struct upstream *u)
{
    char replid[RESP_REPLID_LEN + 1] = "";
    int64_t held = 0;
    if (u->mode == UPSTREAM_MAIN && u->cb.position)
        u->cb.position(u->cb.ctx, replid, &held);
    struct handshake_batch b;
    handshake_psync(&b, replid, held);
    upstream_io_send(u, &b);
    u->asked_partial = replid[0] != '\0';
    if (u->asked_partial)
        u->offset = held;
    log_info(upstream_component(u), u->peer, "PSYNC %s %s", b.cmd[0].argv[1], b.cmd[0].argv[2]);
    set_state(u, UPSTREAM_PSYNC);
}

/* The scanner is not reset here: after +CONTINUE the stream resumes at the same byte, which
 * may be in the middle of a command. Only a new history (rdb_complete) starts it afresh. */
static void enter_stream(struct upstream *u)
{
    u->down_since_ms = 0;
    u->stream_since_ms = net_now_ms(); /* the backoff resets once this proves healthy */
    set_state(u, UPSTREAM_STREAM);
    upstream_io_stream_reads(u);
}

static int handle_psync_reply(struct upstream *u, const char *line, bool is_error)
{
    char replid[RESP_REPLID_LEN + 1], why[MAX_LINE + 32];
    int64_t offset;
    switch (handshake_psync_reply(line, is_error, u->mode == UPSTREAM_MAIN, u->asked_partial,
                                  replid, &offset, why, sizeof(why))) {
    case HANDSHAKE_FULLRESYNC:
        memcpy(u->full_replid, replid, sizeof(u->full_replid));
        u->full_offset = offset;
        log_notice(upstream_component(u), u->peer, "full resync: replid %s offset %" PRId64,
                   u->full_replid, u->full_offset);
        if (u->cb.on_fullresync)
            u->cb.on_fullresync(u->cb.ctx, u->full_replid, u->full_offset);
        set_state(u, UPSTREAM_RDB_PREAMBLE);
        upstream_io_begin_framing(u);
        return 0;
    case HANDSHAKE_CONTINUE:
        log_notice(upstream_component(u), u->peer, "partial resync from offset %" PRId64 "%s%s",
                   u->offset + 1, replid[0] ? ", upstream replid " : "", replid);
        upstream_io_begin_framing(u);
        enter_stream(u);
        if (u->cb.on_continue)
            u->cb.on_continue(u->cb.ctx, replid);
        return 0;
    case HANDSHAKE_FAILED:
        break;
    }
    upstream_fail(u, why);
    return -1;
}

/* The RDB is in and checked: hand it over and take the stream (MAIN), or close (RDB_ONLY). */
static void rdb_complete(struct upstream *u)
{
    struct snapshot *snap = rdbrecv_take(&u->rx);
    log_notice(upstream_component(u), u->peer,
               "RDB complete: %" PRId64 " bytes at offset %" PRId64 " (%s)", snap->size,
               snap->offset, rdb_verdict_name(snap->verdict));
    u->sync_aborts = 0;
    if (u->mode == UPSTREAM_MAIN) {
        u->offset = u->full_offset;
        u->commands_base += u->scan.commands;
        resp_stream_init(&u->scan);
        enter_stream(u);
        if (u->cb.on_snapshot)
            u->cb.on_snapshot(u->cb.ctx, snap);
    } else {
        close_link(u);
        set_state(u, UPSTREAM_IDLE);
        if (u->cb.on_snapshot)
            u->cb.on_snapshot(u->cb.ctx, snap);
    }
}

/* After a diskless RDB the master sends nothing until this first ACK. Redis 7.0 may ignore it
 * while its fork is being reaped: ACK again ~100 ms later, not 1 s. */
static void first_ack(struct upstream *u)
{
    u->offset = u->full_offset;
    upstream_io_send_ack(u);
    u->last_ack_ms -= ACK_INTERVAL_MS - 100;
}

/*
 * The last RDB byte arrived. A file that fails its CRC-64 is never kept; a diskless RDB
 * without a checksum waits in the input until the stream after it frames (probe_stream).
 */
static void rdb_received(struct upstream *u)
{
    char err[256];
    if (rdbrecv_finish(&u->rx, u->mode == UPSTREAM_MAIN, err, sizeof(err)) != 0) {
        if (u->cb.on_rdb_rejected)
            u->cb.on_rdb_rejected(u->cb.ctx, err);
        upstream_fail(u, err);
        return;
    }
    if (u->mode == UPSTREAM_MAIN)
        first_ack(u);
    if (u->rx.probing) {
        log_notice(upstream_component(u), u->peer,
                   "diskless RDB without a checksum: kept once the stream after it parses");
        return;
    }
    rdb_complete(u);
}

/* probing: frame what has arrived after the RDB, consuming nothing (each call scans only
 * what arrived since the last one). A whole command keeps the snapshot (the bytes are then
 * taken as the stream); bytes that are not commands fail the sync. Returns 1 when kept (the
 * link streams), 0 to wait for more input, -1 when the link failed. */
static int probe_stream(struct upstream *u)
{
    struct evbuffer *in = upstream_io_input(u);
    size_t have = evbuffer_get_length(in), want;
    while ((want = rdbrecv_probe_want(&u->rx)) > 0 && u->rx.probed < have) {
        struct evbuffer_ptr at;
        evbuffer_ptr_set(in, &at, u->rx.probed, EVBUFFER_PTR_SET);
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, (ev_ssize_t)want, &at, &v, 1) < 1)
            break;
        char why[RESP_ERR_LEN + 128];
        if (rdbrecv_probe(&u->rx, v.iov_base, v.iov_len, why, sizeof(why)) != 0) {
            if (u->cb.on_rdb_rejected)
                u->cb.on_rdb_rejected(u->cb.ctx, why);
            upstream_fail(u, why);
            return -1;
        }
    }
    if (rdbrecv_probe_want(&u->rx) > 0)
        return 0;
    if (u->rx.probe.commands == 0)
        log_warning(upstream_component(u), u->peer,
                    "no whole command in the first %d MB after an unchecked RDB: kept unverified",
                    RDBRECV_PROBE_MAX_BYTES >> 20);
    rdb_complete(u);
    return 1;
}

/* RDB preamble: "$<len>" or "$EOF:<mark>", after optional "\n" keepalives.
 * Returns 1 when read, 0 when more input is needed, -1 when the link failed. */
static int read_preamble(struct upstream *u)
{
    struct evbuffer *in = upstream_io_input(u);
    if (!skip_keepalives(in))
        return 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF_STRICT);
    if (eol.pos < 0 ? evbuffer_get_length(in) > MAX_LINE : (size_t)eol.pos > MAX_LINE) {
        upstream_fail(u, "RDB preamble too long");
        return -1;
    }
    if (eol.pos < 0)
        return 0;
    char line[MAX_LINE + 1], why[256], err[RESP_ERR_LEN], tag[64];
    size_t n = (size_t)eol.pos;
    evbuffer_remove(in, line, n);
    evbuffer_drain(in, 2);
    line[n] = '\0';
    struct resp_rdb_preamble pre;
    if (rdbrecv_preamble(line, n, &pre, why, sizeof(why)) != 0) {
        upstream_fail(u, why);
        return -1;
    }
    /* Unique per process life: a new file never lands on the name of one being served. */
    snprintf(tag, sizeof(tag), "%s-%" PRId64 "-%u", u->mode == UPSTREAM_MAIN ? "main" : "side",
             net_now_ms(), u->snap_seq++);
    if (rdbrecv_begin(&u->rx, &pre, u->dir, tag, u->full_replid, u->full_offset, err,
                      sizeof(err)) != 0) {
        upstream_fail(u, err);
        return -1;
    }
    log_info(upstream_component(u), u->peer, "receiving RDB (%s)",
             pre.eof_format ? "diskless, EOF-delimited" : "sized");
    set_state(u, UPSTREAM_RDB);
    if (!pre.eof_format && pre.size == 0) {
        rdb_received(u); /* not an RDB: rejected */
        return u->bev ? 1 : -1;
    }
    return 1;
}

/* Moves RDB payload from the input to the snapshot file. */
static int read_rdb(struct upstream *u)
{
    struct evbuffer *in = upstream_io_input(u);
    char err[256];
    while (u->state == UPSTREAM_RDB && !u->rx.probing && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        bool learned = false; /* the RDB's aux fields told who the upstream is */
        ssize_t n =
            rdbrecv_feed(&u->rx, v.iov_base, v.iov_len, &u->ident, &learned, err, sizeof(err));
        if (learned)
            log_notice(upstream_component(u), u->peer, "upstream is %s %s (from the RDB)",
                       compat_server_name(u->ident.server), u->ident.server_version);
        if (n < 0) {
            upstream_fail(u, err);
            return -1;
        }
        evbuffer_drain(in, (size_t)n);
        if (u->rx.done) {
            rdb_received(u);
        } else if (u->cb.on_rdb_progress && n > 0) {
            u->cb.on_rdb_progress(u->cb.ctx);
            if (u->state != UPSTREAM_RDB)
                return -1; /* the callee dropped the link */
        }
    }
    return 0;
}

/* PING state: +PONG, or -NOAUTH / -NOPERM (AUTH follows). Returns 1 when done (AUTH and
 * INFO sent), 0 if more input is needed, -1 when the link failed. */
static int read_pong(struct upstream *u)
{
    char line[MAX_LINE + 2];
    bool is_error;
    int rc = read_reply(u, line, sizeof(line), &is_error);
    if (rc <= 0)
        return rc;
    if (!handshake_ping_ok(line, is_error)) {
        char why[MAX_LINE + 32];
        snprintf(why, sizeof(why), "PING refused: %s", line + 1);
        upstream_fail(u, why);
        return -1;
    }
    send_info(u);
    return 1;
}

/* HANDSHAKE state: one REPLCONF reply (a refusal is ignored; cascade offers framing); PSYNC
 * goes out after the last. Returns 1, 0 if more input is needed, -1 when the link failed. */
static int read_replconf(struct upstream *u)
{
    char line[MAX_LINE + 2];
    bool is_error;
    int rc = read_reply(u, line, sizeof(line), &is_error);
    if (rc <= 0)
        return rc;
    if (is_error)
        log_info(upstream_component(u), u->peer, "REPLCONF refused (ignored): %s", line + 1);
    else if (handshake_frame_offered(line, &u->frame_zstd))
        u->frame_offered = true;
    if (--u->replies_pending == 0)
        send_psync(u);
    return 1;
}

/* PSYNC state. Returns 1 when the reply was taken, 0 if more input is needed, -1 when the
 * link failed. */
static int read_psync(struct upstream *u)
{
    char line[MAX_LINE + 2];
    bool is_error;
    int rc = read_reply(u, line, sizeof(line), &is_error);
    if (rc <= 0)
        return rc;
    return handle_psync_reply(u, line, is_error) == 0 ? 1 : -1;
}

void upstream_read_cb(struct bufferevent *bev, void *arg)
{
    struct upstream *u = arg;
    u->last_io_ms = net_now_ms();
    /* Each state's handler consumes what it can: 1 to go on, else it needs more input or the
     * link died. On a framed link, what arrived is decoded first (the PSYNC reply before it
     * is not). */
    for (int rc = 1; rc > 0 && u->bev;) {
        if (u->frame && u->state == UPSTREAM_STREAM) {
            upstream_io_read_stream(u); /* decodes in place */
            return;
        }
        if (upstream_io_decode(u) != 0 || evbuffer_get_length(upstream_io_input(u)) == 0)
            return;
        switch (u->state) {
        case UPSTREAM_PING:
            rc = read_pong(u);
            break;
        case UPSTREAM_INFO:
            rc = read_info(u);
            break;
        case UPSTREAM_HANDSHAKE:
            rc = read_replconf(u);
            break;
        case UPSTREAM_PSYNC:
            rc = read_psync(u);
            break;
        case UPSTREAM_RDB_PREAMBLE:
            rc = read_preamble(u);
            break;
        case UPSTREAM_RDB:
            rc = u->rx.probing ? probe_stream(u) : read_rdb(u) == 0 ? 1 : -1;
            break;
        case UPSTREAM_STREAM:
            upstream_io_read_stream(u);
            return;
        default:
            /* Bytes where none are expected (e.g. after a side fetch's RDB): drop them. */
            evbuffer_drain(bufferevent_get_input(bev),
                           evbuffer_get_length(bufferevent_get_input(bev)));
            return;
        }
    }
}

static void connect_now(struct upstream *u)
{
    if (u->paused)
        return;
    close_link(u);
    if (!u->host[0]) {
        set_state(u, UPSTREAM_IDLE);
        return;
    }
    snprintf(u->peer, sizeof(u->peer), "%s:%d", u->host, u->port);
    u->reader = redisReaderCreate();
    if (!u->reader)
        abort();
    set_state(u, UPSTREAM_CONNECTING);
    upstream_io_connect(u);
}

void upstream_connected(struct upstream *u)
{
    struct handshake_batch b = {.n = 1, .cmd = {{.argc = 1, .argv = {"PING"}}}};
    upstream_io_send(u, &b);
    set_state(u, UPSTREAM_PING);
}

struct upstream *upstream_new(struct event_base *base, const struct upstream_params *p,
                              const struct upstream_callbacks *cb)
{
    struct upstream *u = calloc(1, sizeof(*u));
    if (!u)
        abort();
    u->base = base;
    u->mode = p->mode;
    u->state = UPSTREAM_IDLE;
    u->host = xstrdup(p->host);
    u->port = p->port;
    u->user = xstrdup(p->user);
    u->password = xstrdup(p->password);
    u->dir = xstrdup(p->dir);
    u->tls = p->tls;
    u->resolver = p->resolver;
    snprintf(u->self_run_id, sizeof(u->self_run_id), "%s", p->self_run_id ? p->self_run_id : "");
    u->server_name = xstrdup(p->server_name);
    u->announce =
        xstrdup(p->announce_version && p->announce_version[0] ? p->announce_version : "auto");
    u->listening_port = p->listening_port;
    u->cb = *cb;
    struct upstream_wan defaults = {.link_timeout_ms = 5000};
    upstream_set_wan(u, p->wan ? p->wan : &defaults);
    upstream_set_timeouts(u, p->connect_timeout_ms, p->repl_timeout_ms, p->reconnect_min_ms,
                          p->reconnect_max_ms);
    u->backoff_ms = u->backoff_min_ms;
    u->down_since_ms = net_now_ms();
    snprintf(u->peer, sizeof(u->peer), "%s:%d", u->host, u->port);
    return u;
}

void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    close_link(u);
    upstream_io_free(u);
    free(u->host);
    free(u->user);
    free(u->password);
    free(u->dir);
    free(u->server_name);
    free((char *)u->wan.tcp.congestion);
    free(u->announce);
    free(u);
}

void upstream_set_wan(struct upstream *u, const struct upstream_wan *w)
{
    free((char *)u->wan.tcp.congestion);
    u->wan = *w;
    u->wan.tcp.congestion = xstrdup(w->tcp.congestion);
}

void upstream_start(struct upstream *u)
{
    if (u->state == UPSTREAM_IDLE || u->state == UPSTREAM_BACKOFF)
        connect_now(u);
}

void upstream_repoint(struct upstream *u, const char *host, int port)
{
    bool was_up = u->state == UPSTREAM_STREAM;
    close_link(u);
    free(u->host);
    u->host = xstrdup(host);
    u->port = port;
    u->backoff_ms = u->backoff_min_ms;
    set_state(u, UPSTREAM_IDLE);
    if (was_up && u->cb.on_down)
        u->cb.on_down(u->cb.ctx);
    connect_now(u);
}

void upstream_set_auth(struct upstream *u, const char *user, const char *password)
{
    free(u->user);
    free(u->password);
    u->user = xstrdup(user);
    u->password = xstrdup(password);
}

void upstream_set_framing(struct upstream *u, const struct resp_stream *scan)
{
    u->scan = *scan;
    u->scan.commands = 0; /* counts what this process forwards */
}

void upstream_set_timeouts(struct upstream *u, int64_t connect_ms, int64_t repl_ms,
                           int64_t backoff_min_ms, int64_t backoff_max_ms)
{
    u->connect_timeout_ms = connect_ms;
    u->repl_timeout_ms = repl_ms;
    u->backoff_min_ms = backoff_min_ms;
    u->backoff_max_ms = backoff_max_ms;
    if (u->backoff_ms > backoff_max_ms)
        u->backoff_ms = backoff_max_ms;
}

void upstream_cron(struct upstream *u, int64_t now)
{
    switch (u->state) {
    case UPSTREAM_IDLE:
        return;
    case UPSTREAM_BACKOFF:
        if (now >= u->retry_at_ms)
            connect_now(u);
        return;
    case UPSTREAM_CONNECTING:
    case UPSTREAM_PING:
    case UPSTREAM_INFO:
    case UPSTREAM_HANDSHAKE:
        if (now - u->state_since_ms > u->connect_timeout_ms)
            upstream_fail(u, "timed out connecting");
        return;
    case UPSTREAM_PSYNC:
    case UPSTREAM_RDB_PREAMBLE:
    case UPSTREAM_RDB:
        /* A framed link hears a heartbeat every second: its silence means a dead link. */
        if (u->frame && now - u->last_io_ms > u->wan.link_timeout_ms) {
            upstream_fail(u, "timed out: no heartbeat from the upstream relay");
            return;
        }
        /* The master may take a while to fork; its "\n" keepalives count as traffic. */
        if (now - u->last_io_ms > u->repl_timeout_ms)
            upstream_fail(u, "timed out waiting for the RDB");
        return;
    case UPSTREAM_STREAM:
        if (u->frame && now - u->last_io_ms > u->wan.link_timeout_ms) {
            upstream_fail(u, "timed out: no heartbeat from the upstream relay");
            return;
        }
        if (now - u->last_io_ms > u->repl_timeout_ms) {
            upstream_fail(u, "timed out: no data from the upstream");
            return;
        }
        if (now - u->last_ack_ms >= ACK_INTERVAL_MS)
            upstream_io_send_ack(u);
        return;
    }
}

const struct snapshot *upstream_filling(const struct upstream *u)
{
    return u->state == UPSTREAM_RDB ? rdbrecv_filling(&u->rx) : NULL;
}

int64_t upstream_filling_servable(const struct upstream *u)
{
    return u->state == UPSTREAM_RDB ? rdbrecv_servable(&u->rx) : 0;
}

enum upstream_state upstream_state(const struct upstream *u)
{
    return u->state;
}

bool upstream_link_up(const struct upstream *u)
{
    return u->state == UPSTREAM_STREAM;
}

const char *upstream_host(const struct upstream *u)
{
    return u->host;
}

int upstream_port(const struct upstream *u)
{
    return u->port;
}

int64_t upstream_offset(const struct upstream *u)
{
    return u->offset;
}

int64_t upstream_last_io_ms(const struct upstream *u)
{
    return u->last_io_ms;
}

int64_t upstream_down_since_ms(const struct upstream *u)
{
    return u->down_since_ms;
}

int64_t upstream_rdb_bytes(const struct upstream *u)
{
    return u->rx.got;
}

int64_t upstream_rdb_size(const struct upstream *u)
{
    return u->rx.size;
}

int64_t upstream_commands(const struct upstream *u)
{
    return u->commands_base + u->scan.commands;
}

int64_t upstream_stream_bytes(const struct upstream *u)
{
    return u->stream_bytes;
}

void upstream_set_announce(struct upstream *u, const char *setting)
{
    free(u->announce);
    u->announce = xstrdup(setting && setting[0] ? setting : "auto");
}

const struct compat_identity *upstream_identity(const struct upstream *u)
{
    return u->ident.server == COMPAT_UNKNOWN ? NULL : &u->ident;
}

const char *upstream_announced(const struct upstream *u)
{
    return u->announced;
}

struct compat_rdb upstream_rdb_format(const struct upstream *u)
{
    return u->rx.fmt;
}

int upstream_sync_aborts(const struct upstream *u)
{
    return u->sync_aborts;
}

int64_t upstream_sync_aborts_total(const struct upstream *u)
{
    return u->sync_aborts_total;
}

const char *upstream_abort_reason(const struct upstream *u)
{
    return u->abort_reason;
}

int64_t upstream_loops_refused(const struct upstream *u)
{
    return u->loops_refused;
}

bool upstream_stalled(const struct upstream *u, int64_t now_ms)
{
    /* A master PINGs every 10 s by default and cascade heartbeats every second: a stream
     * silent for half of repl-timeout is most likely a loop of stock nodes or a dead path. */
    return u->state == UPSTREAM_STREAM && now_ms - u->last_io_ms > u->repl_timeout_ms / 2;
}
