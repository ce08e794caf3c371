/*
 * upstream: the relay's replica side of one link to a master.
 * Owns its bufferevent, its hiredis reader (handshake replies) and the snapshot being filled.
 * Must not touch replicas or the backlog: everything it learns goes out through callbacks,
 * and callbacks must not free the upstream (relay.c defers that to its cron).
 *
 * Redis behaviours followed here (src/replication.c, syncWithMaster/readSyncBulkPayload):
 *   - bare "\n" lines before the PSYNC reply and before the RDB preamble are keepalives;
 *   - an EOF-format RDB is followed by nothing until the replica's first REPLCONF ACK;
 *   - REPLCONF GETACK is answered at once, with the offset of what is held.
 */
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "frame.h"
#include "handshake.h"
#include "log.h"
#include "net.h"
#include "rdb.h"
#include "rdbrecv.h"
#include "resolve.h"
#include "resp.h"
#include "tls.h"

#define MAX_LINE        1024         /* longest handshake reply line accepted */
#define ACK_INTERVAL_MS 1000         /* REPLCONF ACK period, as Redis' replicationCron */
#define MAX_READ_BYTES  (256 * 1024) /* one TLS read */
#define DRAIN_BYTES     (512 * 1024) /* read ahead per wakeup, at most */
#define DRAIN_IOV       16           /* pieces of one read, at most */

struct upstream {
    struct event_base *base; /* borrowed */
    enum upstream_mode mode;
    enum upstream_state state;
    int64_t state_since_ms; /* when state was entered */
    char *host;             /* owned */
    int port;
    char *user, *password, *dir; /* owned */
    int listening_port;
    int64_t connect_timeout_ms, repl_timeout_ms;
    int64_t backoff_min_ms, backoff_max_ms;
    int64_t backoff_ms;      /* next delay */
    int64_t retry_at_ms;     /* BACKOFF: when to connect */
    struct bufferevent *bev; /* owned; NULL without a link */
    struct event *stream_ev; /* owned: a plain link's reads while streaming (the bufferevent's
                                reads are off then); kept between links, freed with u */
    char *rbuf;              /* owned: DRAIN_BYTES for stream_ev's reads, allocated once */
    char peer[NET_ADDR_LEN]; /* "host:port" for logs */
    redisReader *reader;     /* owned; parses handshake replies */
    int replies_pending;     /* HANDSHAKE: replies still expected */
    bool auth_pending;       /* the next reply answers AUTH */
    int64_t offset;          /* last stream byte received */
    int64_t last_io_ms;      /* last byte read (keepalives included) */
    int64_t last_ack_ms;
    int64_t down_since_ms;   /* 0 while streaming */
    int64_t stream_since_ms; /* when the link last reached STREAM */
    bool asked_partial;      /* the PSYNC sent named a history (+CONTINUE is possible) */
    struct resp_stream scan; /* stream framing, for GETACK */
    struct rdbrecv rx;       /* the RDB transfer: its snapshot (owned while it fills), its counts
                                and format (kept after it), the probe of an unchecked diskless one */
    int64_t stream_bytes;    /* stream bytes over the life of the object */
    bool fed;                /* on_stream had bytes since the last on_stream_end */
    char full_replid[RESP_REPLID_LEN + 1]; /* +FULLRESYNC replid being loaded */
    int64_t full_offset;                   /* +FULLRESYNC offset being loaded */
    unsigned snap_seq;                     /* names temp files uniquely */
    struct upstream_callbacks cb;
    SSL_CTX *tls;               /* borrowed, NULL for plain TCP */
    struct resolver *resolver;  /* borrowed: every name lookup */
    struct resolve_req *lookup; /* CONNECTING: the pending name lookup */
    char self_run_id[RESP_RUN_ID_LEN +
                     1];      /* the relay's own run id: an upstream with it is a loop */
    int64_t loops_refused;    /* links refused as loops */
    char *server_name;        /* owned */
    bool paused;              /* stopping: read nothing more, connect no more */
    int64_t commands_base;    /* commands counted by scanners replaced since */
    struct upstream_wan wan;  /* long-distance settings; wan.tcp.congestion owned */
    bool frame_offered;       /* HANDSHAKE: the upstream relay agreed to cascade framing */
    bool frame_zstd;          /* ... and to compress */
    struct wanlink_in *frame; /* owned: set once framing began (after the PSYNC reply) */
    struct evbuffer *plain;   /* owned with frame: what the frames decoded to */
    struct wanlink_counters frame_total; /* of links closed before */

    /* Version awareness (see compat.h) */
    char *announce;               /* owned: upstream.announce-version */
    char announced[32];           /* REPLCONF version sent on this handshake, "" none */
    struct compat_identity ident; /* who the upstream is; server COMPAT_UNKNOWN until known */
    int sync_aborts;              /* full syncs aborted after +FULLRESYNC, in a row */
    int64_t sync_aborts_total;
    char abort_reason[256]; /* of the last one */
};

static const char *const state_names[] = {
    "idle",      "backoff", "connecting",   "ping", "info",
    "handshake", "psync",   "rdb_preamble", "rdb",  "stream",
};

const char *upstream_state_name(enum upstream_state s)
{
    return s <= UPSTREAM_STREAM ? state_names[s] : "?";
}

static const char *component(const struct upstream *u)
{
    return u->mode == UPSTREAM_MAIN ? "upstream" : "snapshot-fetch";
}

static void set_state(struct upstream *u, enum upstream_state s)
{
    if (u->state == s)
        return;
    log_debug(component(u), u->peer, "%s -> %s", upstream_state_name(u->state),
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
    resolve_cancel(u->lookup);
    u->lookup = NULL;
    if (u->stream_ev)
        event_del(u->stream_ev); /* not freed: we may be inside its callback */
    if (u->bev) {
        /* libevent defers the real free if we are inside this bufferevent's callback. */
        bufferevent_free(u->bev);
        u->bev = NULL;
    }
    if (u->reader) {
        redisReaderFree(u->reader);
        u->reader = NULL;
    }
    rdbrecv_abort(&u->rx);
    if (u->frame) {
        const struct wanlink_counters *c = wanlink_in_counters(u->frame);
        u->frame_total.raw_bytes += c->raw_bytes;
        u->frame_total.wire_bytes += c->wire_bytes;
        u->frame_total.frames += c->frames;
        u->frame_total.heartbeats += c->heartbeats;
        wanlink_in_free(u->frame);
        u->frame = NULL;
        evbuffer_free(u->plain);
        u->plain = NULL;
    }
    u->frame_offered = u->frame_zstd = false;
}

/* Where the state machine reads: the link itself, or what its frames decoded to. */
static struct evbuffer *input(struct upstream *u)
{
    return u->frame ? u->plain : bufferevent_get_input(u->bev);
}

/* Decode what arrived on a framed link. 0, or -1 when the link failed. */
static void link_fail(struct upstream *u, const char *why);
static int decode_frames(struct upstream *u)
{
    if (!u->frame || !u->bev)
        return 0;
    char err[FRAME_ERR_LEN + 32];
    if (wanlink_in_decode(u->frame, bufferevent_get_input(u->bev), u->plain, err, sizeof(err)) !=
        0) {
        char why[sizeof(err) + 64];
        snprintf(why, sizeof(why), "bad frame from the upstream relay: %s", err);
        link_fail(u, why);
        return -1;
    }
    return 0;
}

/* After the PSYNC reply: everything else on the link comes framed, if the upstream agreed. */
static void begin_framing(struct upstream *u)
{
    if (!u->frame_offered || u->frame)
        return;
    u->frame = wanlink_in_new();
    u->plain = evbuffer_new();
    if (!u->plain)
        abort();
    log_info(component(u), u->peer, "cascade link: %s frames",
             u->frame_zstd ? "zstd" : "uncompressed");
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
    log_warning(component(u), u->peer,
                "the upstream aborted %d full syncs in a row right after +FULLRESYNC: %s; "
                "retrying in %" PRId64 " s (upstream.announce-version decides the RDB version "
                "a Valkey master sends)",
                u->sync_aborts, u->abort_reason, delay / 1000);
    return delay;
}

/* The link failed: log once, close, schedule a retry (MAIN) or give up (RDB_ONLY). */
static void link_fail(struct upstream *u, const char *why)
{
    bool was_up = u->state == UPSTREAM_STREAM;
    int64_t now = net_now_ms();
    /* Healthy: it streamed longer than the upstream may stay silent. A link that dies right
     * after its RDB (or its +CONTINUE) is no proof of health: it backs off like any failure,
     * or a master that breaks each sync would be made to fork in a tight loop. */
    bool healthy = was_up && now - u->stream_since_ms > u->repl_timeout_ms;
    bool in_sync = u->state == UPSTREAM_RDB_PREAMBLE || u->state == UPSTREAM_RDB;
    log_warning(component(u), u->peer, "link %s: %s", was_up ? "lost" : "failed", why);
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

static void send_command(struct upstream *u, int argc, const char *const *argv)
{
    struct evbuffer *out = bufferevent_get_output(u->bev);
    evbuffer_add_printf(out, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        evbuffer_add_printf(out, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
}

static void send_batch(struct upstream *u, const struct handshake_batch *b)
{
    for (int i = 0; i < b->n; i++)
        send_command(u, b->cmd[i].argc, b->cmd[i].argv);
}

static void send_ack(struct upstream *u)
{
    struct handshake_batch b;
    handshake_ack(&b, u->offset);
    send_batch(u, &b);
    u->last_ack_ms = net_now_ms();
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
    struct evbuffer *in = input(u);
    if (!skip_keepalives(in))
        return 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF_STRICT);
    if (eol.pos < 0) {
        if (evbuffer_get_length(in) > MAX_LINE) {
            link_fail(u, "reply line too long");
            return -1;
        }
        return 0;
    }
    size_t n = (size_t)eol.pos + 2;
    if (n > MAX_LINE) {
        link_fail(u, "reply line too long");
        return -1;
    }
    char raw[MAX_LINE + 1];
    evbuffer_remove(in, raw, n);
    if (redisReaderFeed(u->reader, raw, n) != REDIS_OK) {
        link_fail(u, "reply reader failed");
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
        link_fail(u, why);
        return -1;
    }
    redisReply *rep = r;
    if (rep->type != REDIS_REPLY_STATUS && rep->type != REDIS_REPLY_ERROR) {
        freeReplyObject(rep);
        link_fail(u, "unexpected reply type in handshake");
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
    send_batch(u, &b);
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
    send_batch(u, &b);
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
            link_fail(u, "malformed INFO reply");
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
            log_notice(component(u), u->peer, "upstream is %s %s", compat_server_name(id.server),
                       id.server_version);
        u->ident = id;
    } else {
        log_info(component(u), u->peer, "INFO server without redis_version");
    }
    free(text);
    const char *loop = handshake_loop(&u->ident, u->self_run_id);
    if (loop) {
        /* Refused, and retried only at the longest delay. */
        u->backoff_ms = u->backoff_max_ms;
        link_fail(u, loop);
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
            link_fail(u, why);
            return -1;
        }
    }
    struct evbuffer *in = input(u);
    unsigned char c;
    if (evbuffer_copyout(in, &c, 1) != 1)
        return 0;
    if (c == '$')
        return read_info_bulk(u, in);
    int rc = read_reply(u, line, sizeof(line), &is_error);
    if (rc <= 0)
        return rc;
    log_info(component(u), u->peer, "INFO refused (version learned from the RDB): %s", line + 1);
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
    send_batch(u, &b);
    u->asked_partial = replid[0] != '\0';
    if (u->asked_partial)
        u->offset = held;
    log_info(component(u), u->peer, "PSYNC %s %s", b.cmd[0].argv[1], b.cmd[0].argv[2]);
    set_state(u, UPSTREAM_PSYNC);
}

static void stream_read_cb(evutil_socket_t fd, short what, void *arg);

/* The scanner is not reset here: after +CONTINUE the stream resumes at the same byte, which
 * may be in the middle of a command. Only a new history (rdb_complete) starts it afresh. */
static void enter_stream(struct upstream *u)
{
    u->down_since_ms = 0;
    u->stream_since_ms = net_now_ms(); /* the backoff resets once this proves healthy */
    set_state(u, UPSTREAM_STREAM);
    if (u->tls || u->frame || !u->bev)
        return; /* bufferevent_openssl reads up to its max_single_read itself; frames are
                   decoded from the bufferevent's input */
    /* A plain link reads the stream itself: libevent 2.1 reads at most 4 KB per wakeup, after
     * an ioctl(FIONREAD), and the stream is bulk. What the bufferevent already read stays in
     * its input and is taken first. */
    evutil_socket_t fd = bufferevent_getfd(u->bev);
    if (!u->stream_ev)
        u->stream_ev = event_new(u->base, fd, EV_READ | EV_PERSIST, stream_read_cb, u);
    else
        event_assign(u->stream_ev, u->base, fd, EV_READ | EV_PERSIST, stream_read_cb, u);
    if (!u->stream_ev)
        abort();
    bufferevent_disable(u->bev, EV_READ);
    if (!u->paused)
        event_add(u->stream_ev, NULL);
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
        log_notice(component(u), u->peer, "full resync: replid %s offset %" PRId64, u->full_replid,
                   u->full_offset);
        if (u->cb.on_fullresync)
            u->cb.on_fullresync(u->cb.ctx, u->full_replid, u->full_offset);
        set_state(u, UPSTREAM_RDB_PREAMBLE);
        begin_framing(u);
        return 0;
    case HANDSHAKE_CONTINUE:
        log_notice(component(u), u->peer, "partial resync from offset %" PRId64 "%s%s",
                   u->offset + 1, replid[0] ? ", upstream replid " : "", replid);
        begin_framing(u);
        enter_stream(u);
        if (u->cb.on_continue)
            u->cb.on_continue(u->cb.ctx, replid);
        return 0;
    case HANDSHAKE_FAILED:
        break;
    }
    link_fail(u, why);
    return -1;
}

/* The RDB is in and checked: hand it over and take the stream (MAIN), or close (RDB_ONLY). */
static void rdb_complete(struct upstream *u)
{
    struct snapshot *snap = rdbrecv_take(&u->rx);
    log_notice(component(u), u->peer, "RDB complete: %" PRId64 " bytes at offset %" PRId64 " (%s)",
               snap->size, snap->offset, rdb_verdict_name(snap->verdict));
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
    send_ack(u);
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
        link_fail(u, err);
        return;
    }
    if (u->mode == UPSTREAM_MAIN)
        first_ack(u);
    if (u->rx.probing) {
        log_notice(component(u), u->peer,
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
    struct evbuffer *in = input(u);
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
            link_fail(u, why);
            return -1;
        }
    }
    if (rdbrecv_probe_want(&u->rx) > 0)
        return 0;
    if (u->rx.probe.commands == 0)
        log_warning(component(u), u->peer,
                    "no whole command in the first %d MB after an unchecked RDB: kept unverified",
                    RDBRECV_PROBE_MAX_BYTES >> 20);
    rdb_complete(u);
    return 1;
}

/* RDB preamble: "$<len>" or "$EOF:<mark>", after optional "\n" keepalives.
 * Returns 1 when read, 0 when more input is needed, -1 when the link failed. */
static int read_preamble(struct upstream *u)
{
    struct evbuffer *in = input(u);
    if (!skip_keepalives(in))
        return 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF_STRICT);
    if (eol.pos < 0 ? evbuffer_get_length(in) > MAX_LINE : (size_t)eol.pos > MAX_LINE) {
        link_fail(u, "RDB preamble too long");
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
        link_fail(u, why);
        return -1;
    }
    /* Unique per process life: a new file never lands on the name of one being served. */
    snprintf(tag, sizeof(tag), "%s-%" PRId64 "-%u", u->mode == UPSTREAM_MAIN ? "main" : "side",
             net_now_ms(), u->snap_seq++);
    if (rdbrecv_begin(&u->rx, &pre, u->dir, tag, u->full_replid, u->full_offset, err,
                      sizeof(err)) != 0) {
        link_fail(u, err);
        return -1;
    }
    log_info(component(u), u->peer, "receiving RDB (%s)",
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
    struct evbuffer *in = input(u);
    char err[256];
    while (u->state == UPSTREAM_RDB && !u->rx.probing && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        bool learned = false; /* the RDB's aux fields told who the upstream is */
        ssize_t n =
            rdbrecv_feed(&u->rx, v.iov_base, v.iov_len, &u->ident, &learned, err, sizeof(err));
        if (learned)
            log_notice(component(u), u->peer, "upstream is %s %s (from the RDB)",
                       compat_server_name(u->ident.server), u->ident.server_version);
        if (n < 0) {
            link_fail(u, err);
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

/* Frame stream bytes and pass them on, answering GETACKs on the way. Returns the bytes taken
 * (fewer than len if the link went down meanwhile), or -1 when the framing failed. */
static ssize_t scan_stream(struct upstream *u, const char *data, size_t len)
{
    char err[RESP_ERR_LEN];
    size_t done = 0;
    while (u->state == UPSTREAM_STREAM && done < len) {
        const char *p = data + done;
        bool getack = false;
        struct resp_stream saved = u->scan; /* a rejected chunk must not move the framing */
        ssize_t n = resp_stream_scan(&u->scan, p, len - done, &getack, err, sizeof(err));
        if (n < 0) {
            u->scan = saved;
            char sample[96], why[384];
            resp_escape(p, len - done < 48 ? len - done : 48, sample, sizeof(sample));
            snprintf(why, sizeof(why),
                     "stream protocol error at offset %" PRId64 ": %s near \"%s\"", u->offset + 1,
                     err, sample);
            link_fail(u, why);
            return -1;
        }
        if (u->offset + n > RESP_MAX_OFFSET) {
            link_fail(u, "protocol error: the stream offset passes 2^62");
            return -1;
        }
        u->offset += n;
        u->stream_bytes += n;
        done += (size_t)n;
        u->fed = true;
        if (u->cb.on_stream) /* a boundary to start a log segment at: the first one there is */
            u->cb.on_stream(u->cb.ctx, p, (size_t)n,
                            resp_stream_at_boundary(&saved) ? 0 : u->scan.last_boundary);
        if (getack)
            send_ack(u);
    }
    return (ssize_t)done;
}

/* The bytes of one read were all passed on (however many on_stream calls they took). */
static void stream_end(struct upstream *u)
{
    if (u->fed && u->cb.on_stream_end)
        u->cb.on_stream_end(u->cb.ctx);
    u->fed = false;
}

/*
 * A framed link in STREAM: decode the frames straight into where the owner keeps the stream
 * (its backlog's free blocks, as a plain link reads into them), or into the link's own
 * buffer; then frame the commands. Keeps decoding while the decoder fills the room it was
 * given (it may hold more than the wire shows).
 */
/* Where the next DRAIN_BYTES of stream go: the owner's room (its backlog's free blocks, so
 * the bytes are not copied again), else the link's own buffer, which lives as long as u.
 * Returns the iovecs filled (at least one). */
static int stream_room(struct upstream *u, struct iovec iov[DRAIN_IOV])
{
    int n = u->cb.stream_room ? u->cb.stream_room(u->cb.ctx, DRAIN_BYTES, iov, DRAIN_IOV) : 0;
    if (n == 0) {
        if (!u->rbuf && !(u->rbuf = malloc(DRAIN_BYTES)))
            abort();
        iov[n++] = (struct iovec){.iov_base = u->rbuf, .iov_len = DRAIN_BYTES};
    }
    return n;
}

static void read_frames(struct upstream *u)
{
    char err[FRAME_ERR_LEN];
    for (;;) {
        if (u->state != UPSTREAM_STREAM || !u->bev)
            return;
        struct iovec iov[DRAIN_IOV];
        int n = stream_room(u, iov);
        for (int i = 0; i < n; i++) {
            ssize_t got = wanlink_in_decode_into(u->frame, bufferevent_get_input(u->bev),
                                                 iov[i].iov_base, iov[i].iov_len, err, sizeof(err));
            if (got < 0) {
                char why[sizeof(err) + 64];
                snprintf(why, sizeof(why), "bad frame from the upstream relay: %s", err);
                link_fail(u, why);
                return;
            }
            if (got > 0 &&
                (scan_stream(u, iov[i].iov_base, (size_t)got) < 0 || u->state != UPSTREAM_STREAM))
                return; /* the framing failed, or the link went down meanwhile */
            if ((size_t)got < iov[i].iov_len)
                return; /* all decoded */
        }
    }
}

/* What the bufferevent's input holds (a TLS link's reads, or bytes read before STREAM), or
 * what a framed link decoded before STREAM; then a framed link's new frames. */
static void read_stream(struct upstream *u)
{
    while (u->state == UPSTREAM_STREAM && u->bev) {
        struct evbuffer *in = input(u);
        struct evbuffer_iovec v;
        if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = scan_stream(u, v.iov_base, v.iov_len);
        if (n <= 0 || !u->bev)
            break;
        evbuffer_drain(input(u), (size_t)n);
    }
    if (u->frame)
        read_frames(u);
    stream_end(u);
}

/* A plain link in STREAM: read up to DRAIN_BYTES where the owner keeps the stream (its
 * backlog's blocks, so the bytes are not copied again), or into the link's own buffer, which
 * lives as long as u; then frame it. */
static void stream_read(struct upstream *u, evutil_socket_t fd)
{
    if (u->state != UPSTREAM_STREAM || !u->bev)
        return;
    read_stream(u); /* anything the bufferevent read before we took over comes first */
    if (u->state != UPSTREAM_STREAM)
        return;
    struct iovec iov[DRAIN_IOV];
    int n = stream_room(u, iov);
    int err = 0;
    bool eof = false;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t got = recvmsg(fd, &msg, MSG_DONTWAIT);
    if (got == 0)
        eof = true;
    else if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        err = errno;
    size_t have = got > 0 ? (size_t)got : 0;
    if (have)
        u->last_io_ms = net_now_ms();
    /* what arrived before an EOF or error is the stream's too */
    for (int i = 0; i < n && have > 0; i++) {
        size_t k = have < iov[i].iov_len ? have : iov[i].iov_len;
        if (scan_stream(u, iov[i].iov_base, k) < 0 || u->state != UPSTREAM_STREAM)
            return; /* the framing failed, or the link went down meanwhile */
        have -= k;
    }
    if (eof)
        link_fail(u, "connection closed by upstream");
    else if (err)
        link_fail(u, strerror(err));
}

static void stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct upstream *u = arg;
    stream_read(u, fd);
    stream_end(u);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct upstream *u = arg;
    u->last_io_ms = net_now_ms();
    char line[MAX_LINE + 2];
    bool is_error;
    /* Each case consumes what it can; it returns when it needs more input or the link died.
     * On a framed link, what arrived is decoded first (the PSYNC reply before it is not). */
    while (u->bev) {
        if (u->frame && u->state == UPSTREAM_STREAM) {
            read_stream(u); /* decodes in place */
            return;
        }
        if (decode_frames(u) != 0)
            return;
        if (evbuffer_get_length(input(u)) == 0)
            break;
        switch (u->state) {
        case UPSTREAM_PING:
            if (read_reply(u, line, sizeof(line), &is_error) <= 0)
                return;
            if (!handshake_ping_ok(line, is_error)) {
                char why[MAX_LINE + 32];
                snprintf(why, sizeof(why), "PING refused: %s", line + 1);
                link_fail(u, why);
                return;
            }
            send_info(u);
            break;
        case UPSTREAM_INFO:
            if (read_info(u) <= 0)
                return;
            break;
        case UPSTREAM_HANDSHAKE:
            if (read_reply(u, line, sizeof(line), &is_error) <= 0)
                return;
            if (is_error) {
                log_info(component(u), u->peer, "REPLCONF refused (ignored): %s", line + 1);
            } else if (handshake_frame_offered(line, &u->frame_zstd)) {
                u->frame_offered = true;
            }
            if (--u->replies_pending == 0)
                send_psync(u);
            break;
        case UPSTREAM_PSYNC:
            if (read_reply(u, line, sizeof(line), &is_error) <= 0)
                return;
            if (handle_psync_reply(u, line, is_error) != 0)
                return;
            break;
        case UPSTREAM_RDB_PREAMBLE:
            if (read_preamble(u) <= 0)
                return;
            break;
        case UPSTREAM_RDB:
            if (u->rx.probing ? probe_stream(u) <= 0 : read_rdb(u) != 0)
                return;
            break;
        case UPSTREAM_STREAM:
            read_stream(u);
            return;
        default:
            /* Bytes where none are expected (e.g. after a side fetch's RDB): drop them. */
            evbuffer_drain(bufferevent_get_input(bev),
                           evbuffer_get_length(bufferevent_get_input(bev)));
            return;
        }
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct upstream *u = arg;
    if (what & BEV_EVENT_CONNECTED) {
        net_tune(bufferevent_getfd(bev));
        char err[160];
        if (net_tune_link(bufferevent_getfd(bev), &u->wan.tcp, err, sizeof(err)) != 0)
            log_warning(component(u), u->peer, "socket option %s (kept the kernel's)", err);
        u->last_io_ms = net_now_ms();
        log_info(component(u), u->peer, "connected");
        const char *argv[] = {"PING"};
        send_command(u, 1, argv);
        set_state(u, UPSTREAM_PING);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        link_fail(u, "connection closed by upstream");
    } else if (what & BEV_EVENT_ERROR) {
        char why[300];
        unsigned long ssl_err = u->tls ? bufferevent_get_openssl_error(bev) : 0;
        if (ssl_err) {
            char buf[256];
            ERR_error_string_n(ssl_err, buf, sizeof(buf));
            snprintf(why, sizeof(why), "TLS: %s", buf);
        } else {
            snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        }
        link_fail(u, why);
    }
}

static void resolved_cb(void *ctx, int ok, const struct sockaddr *addr, socklen_t len,
                        const char *why);

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
    /* connect-timeout covers the lookup too (cron, CONNECTING) */
    u->lookup = resolver_lookup(u->resolver, u->host, u->port, resolved_cb, u);
}

/* The upstream's address is known (or not): open the link. */
static void resolved_cb(void *ctx, int ok, const struct sockaddr *addr, socklen_t len,
                        const char *why)
{
    struct upstream *u = ctx;
    u->lookup = NULL;
    if (!ok) {
        link_fail(u, why);
        return;
    }
    char err[256];
    if (u->tls) {
        const char *name = u->server_name[0] ? u->server_name : u->host;
        SSL *ssl = tls_client_session(u->tls, name, err, sizeof(err));
        if (!ssl) {
            link_fail(u, err);
            return;
        }
        u->bev = bufferevent_openssl_socket_new(u->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (u->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(u->bev, 1);
    } else {
        u->bev = bufferevent_socket_new(u->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!u->bev)
        abort();
    bufferevent_setcb(u->bev, read_cb, NULL, event_cb, u);
    bufferevent_set_max_single_read(u->bev, MAX_READ_BYTES);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(u->bev, addr, (int)len) != 0) {
        link_fail(u, "connect failed");
        return;
    }
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
    if (u->stream_ev)
        event_free(u->stream_ev);
    free(u->rbuf);
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

void upstream_pause(struct upstream *u)
{
    if (u->stream_ev)
        event_del(u->stream_ev);
    if (u->bev)
        bufferevent_disable(u->bev, EV_READ);
    u->paused = true;
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
            link_fail(u, "timed out connecting");
        return;
    case UPSTREAM_PSYNC:
    case UPSTREAM_RDB_PREAMBLE:
    case UPSTREAM_RDB:
        /* A framed link hears a heartbeat every second: its silence means a dead link. */
        if (u->frame && now - u->last_io_ms > u->wan.link_timeout_ms) {
            link_fail(u, "timed out: no heartbeat from the upstream relay");
            return;
        }
        /* The master may take a while to fork; its "\n" keepalives count as traffic. */
        if (now - u->last_io_ms > u->repl_timeout_ms)
            link_fail(u, "timed out waiting for the RDB");
        return;
    case UPSTREAM_STREAM:
        if (u->frame && now - u->last_io_ms > u->wan.link_timeout_ms) {
            link_fail(u, "timed out: no heartbeat from the upstream relay");
            return;
        }
        if (now - u->last_io_ms > u->repl_timeout_ms) {
            link_fail(u, "timed out: no data from the upstream");
            return;
        }
        if (now - u->last_ack_ms >= ACK_INTERVAL_MS)
            send_ack(u);
        return;
    }
}

const struct snapshot *upstream_filling(const struct upstream *u)
{
    return u->state == UPSTREAM_RDB ? rdbrecv_filling(&u->rx) : NULL;
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

const char *upstream_link_mode(const struct upstream *u)
{
    return !u->frame ? "plain" : u->frame_zstd ? "zstd" : "raw";
}

struct wanlink_counters upstream_link_counters(const struct upstream *u)
{
    struct wanlink_counters t = u->frame_total;
    if (u->frame) {
        const struct wanlink_counters *c = wanlink_in_counters(u->frame);
        t.raw_bytes += c->raw_bytes;
        t.wire_bytes += c->wire_bytes;
        t.frames += c->frames;
        t.heartbeats += c->heartbeats;
    }
    return t;
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
