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
#include "log.h"
#include "net.h"
#include "rdb.h"
#include "resolve.h"
#include "resp.h"
#include "tls.h"

#define MAX_LINE        1024         /* longest handshake reply line accepted */
#define ACK_INTERVAL_MS 1000         /* REPLCONF ACK period, as Redis' replicationCron */
#define MAX_READ_BYTES  (256 * 1024) /* one TLS read */
#define DRAIN_BYTES     (512 * 1024) /* read ahead per wakeup, at most */
#define DRAIN_IOV       16           /* pieces of one read, at most */

/* Version awareness: the INFO server reply, full syncs aborted after +FULLRESYNC */
#define MAX_INFO_BYTES       (64 * 1024)  /* INFO server reply accepted */
#define ABORT_BACKOFF_MS     10000        /* after the 2nd aborted full sync in a row ... */
#define ABORT_BACKOFF_MAX_MS (10 * 60000) /* ... doubling up to this */

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
    int64_t down_since_ms;    /* 0 while streaming */
    int64_t stream_since_ms;  /* when the link last reached STREAM */
    bool asked_partial;       /* the PSYNC sent named a history (+CONTINUE is possible) */
    bool probing;             /* RDB: an unchecked diskless RDB is in; the stream after it
                                 must frame before the snapshot is kept (see probe_stream) */
    struct resp_stream probe; /* probing: the framing of the bytes after the RDB ... */
    size_t probed;            /* ... scanned so far (they stay in the input) */
    struct resp_stream scan;  /* stream framing, for GETACK */
    struct resp_eofmark eof;  /* RDB delimiter scanner (EOF format) */
    bool rdb_eof_format;
    int64_t rdb_size;                      /* payload bytes expected ($len), -1 for EOF format */
    int64_t rdb_got;                       /* payload bytes received */
    int64_t stream_bytes;                  /* stream bytes over the life of the object */
    bool fed;                              /* on_stream had bytes since the last on_stream_end */
    char full_replid[RESP_REPLID_LEN + 1]; /* +FULLRESYNC replid being loaded */
    int64_t full_offset;                   /* +FULLRESYNC offset being loaded */
    struct snapshot *snap;                 /* owned while FILLING */
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
    char *announce;                  /* owned: upstream.announce-version */
    char announced[32];              /* REPLCONF version sent on this handshake, "" none */
    struct compat_identity ident;    /* who the upstream is; server COMPAT_UNKNOWN until known */
    char rdb_head[COMPAT_MAGIC_LEN]; /* the RDB's first bytes */
    struct compat_rdb rdb_fmt;       /* their format, version 0 until 9 bytes arrived */
    int sync_aborts;                 /* full syncs aborted after +FULLRESYNC, in a row */
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
    snapshot_free(u->snap);
    u->snap = NULL;
    u->probing = false;
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

/* The link failed: log once, close, schedule a retry (MAIN) or give up (RDB_ONLY). */
/*
 * The upstream ended a full sync right after +FULLRESYNC (an error instead of the RDB, or
 * the link closed before the RDB was complete): Valkey 9 does so when the data does not fit
 * the RDB version the replica's announced version gets ("Can't store key ... in RDB version
 * 11"). Every try costs the master a fork: from the second in a row on, say why and back off.
 * Returns the delay to wait at least (0: the usual backoff).
 */
static int64_t sync_aborted(struct upstream *u, const char *why)
{
    char fmt[96] = "RDB not reached";
    int up_ver = compat_version_parse(u->ident.server_version, strlen(u->ident.server_version));
    if (u->rdb_fmt.version) {
        snprintf(fmt, sizeof(fmt), "%s magic, RDB version %d",
                 u->rdb_fmt.valkey_magic ? "VALKEY" : "REDIS", u->rdb_fmt.version);
    } else if (u->ident.server == COMPAT_VALKEY && up_ver >= 0x090000) {
        /* Nothing of the RDB came: name the version a Valkey >= 9 picks for what we announced
         * (replicaRdbVersion: below 9.0 or none gets 11, the last REDIS-magic one). */
        int a = u->announced[0] ? compat_version_parse(u->announced, strlen(u->announced)) : 0;
        int v = a >= 0x090000 ? compat_max_rdb(COMPAT_VALKEY, a < up_ver ? a : up_ver, true) : 11;
        snprintf(fmt, sizeof(fmt), "RDB not reached; valkey %s sends RDB version %d for it",
                 u->ident.server_version, v);
    }
    snprintf(u->abort_reason, sizeof(u->abort_reason),
             "%s (after %" PRId64 " RDB bytes; announced version %s; %s)", why, u->rdb_got,
             u->announced[0] ? u->announced : "none", fmt);
    u->sync_aborts++;
    u->sync_aborts_total++;
    if (u->sync_aborts < 2)
        return 0;
    int64_t delay = ABORT_BACKOFF_MS;
    for (int i = 2; i < u->sync_aborts && delay < ABORT_BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > ABORT_BACKOFF_MAX_MS)
        delay = ABORT_BACKOFF_MAX_MS;
    log_warning(component(u), u->peer,
                "the upstream aborted %d full syncs in a row right after +FULLRESYNC: %s; "
                "retrying in %" PRId64 " s (upstream.announce-version decides the RDB version "
                "a Valkey master sends)",
                u->sync_aborts, u->abort_reason, delay / 1000);
    return delay;
}

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

static void send_command(struct upstream *u, int argc, const char **argv)
{
    struct evbuffer *out = bufferevent_get_output(u->bev);
    evbuffer_add_printf(out, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        evbuffer_add_printf(out, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
}

static void send_ack(struct upstream *u)
{
    char off[32];
    snprintf(off, sizeof(off), "%" PRId64, u->offset);
    const char *argv[] = {"REPLCONF", "ACK", off};
    send_command(u, 3, argv);
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
    u->auth_pending = false;
    if (u->password[0]) {
        if (u->user[0]) {
            const char *argv[] = {"AUTH", u->user, u->password};
            send_command(u, 3, argv);
        } else {
            const char *argv[] = {"AUTH", u->password};
            send_command(u, 2, argv);
        }
        u->auth_pending = true;
    }
    const char *info[] = {"INFO", "server"};
    send_command(u, 2, info);
    set_state(u, UPSTREAM_INFO);
}

static void send_handshake(struct upstream *u)
{
    u->replies_pending = 0;
    char port[16];
    snprintf(port, sizeof(port), "%d", u->listening_port);
    const char *lp[] = {"REPLCONF", "listening-port", port};
    send_command(u, 3, lp);
    /* Never capa skip-rdb-checksum, compression or rdb-channel: the snapshot is stored and
     * served again, whole and checked, and the relay speaks the one-channel protocol. */
    const char *capa[] = {"REPLCONF", "capa", "eof", "capa", "psync2"};
    send_command(u, 5, capa);
    u->replies_pending += 2;
    {
        /* Only cascade answers "+OK cascade-frame ..."; stock masters ignore unknown capas
         * and answer "+OK" (docs/reference.md, "Links between cascade relays"). A side
         * fetch asks too: a fresh snapshot crosses the WAN compressed like the first. */
        const char *fr[] = {"REPLCONF", "capa", "cascade-frame", "capa", "cascade-zstd"};
        send_command(u, u->wan.compression ? 5 : 3, fr);
        u->replies_pending++;
    }
    /* A Valkey >= 9 master picks the RDB version from this (replicaRdbVersion): without it
     * the relay gets RDB 11, which cannot hold every Valkey 9 data set. */
    snprintf(u->announced, sizeof(u->announced), "%s", compat_announce(u->announce, &u->ident));
    if (u->announced[0]) {
        const char *ver[] = {"REPLCONF", "version", u->announced};
        send_command(u, 3, ver);
        u->replies_pending++;
    }
    if (u->mode == UPSTREAM_RDB_ONLY) {
        const char *ro[] = {"REPLCONF", "rdb-only", "1"};
        send_command(u, 3, ro);
        u->replies_pending++;
    }
    set_state(u, UPSTREAM_HANDSHAKE);
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
    if (c != '$') {
        int rc = read_reply(u, line, sizeof(line), &is_error);
        if (rc <= 0)
            return rc;
        log_info(component(u), u->peer, "INFO refused (version learned from the RDB): %s",
                 line + 1);
        send_handshake(u);
        return 1;
    }
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_CRLF_STRICT);
    if (eol.pos < 0 || eol.pos > 16) {
        if (eol.pos > 16 || evbuffer_get_length(in) > 16) {
            link_fail(u, "malformed INFO reply");
            return -1;
        }
        return 0;
    }
    char head[24];
    evbuffer_copyout(in, head, (size_t)eol.pos);
    head[eol.pos] = '\0';
    char *end;
    long len = strtol(head + 1, &end, 10);
    if (*end || len < 0 || len > MAX_INFO_BYTES) {
        link_fail(u, "malformed INFO reply");
        return -1;
    }
    size_t total = (size_t)eol.pos + 2 + (size_t)len + 2;
    if (evbuffer_get_length(in) < total)
        return 0;
    evbuffer_drain(in, (size_t)eol.pos + 2);
    char *text = malloc((size_t)len + 1);
    if (!text)
        abort();
    evbuffer_remove(in, text, (size_t)len);
    evbuffer_drain(in, 2);
    struct compat_identity id;
    if (compat_identity_parse(text, (size_t)len, &id) == 0) {
        if (strcmp(id.server_version, u->ident.server_version) != 0 || id.server != u->ident.server)
            log_notice(component(u), u->peer, "upstream is %s %s", compat_server_name(id.server),
                       id.server_version);
        u->ident = id;
    } else {
        log_info(component(u), u->peer, "INFO server without redis_version");
    }
    free(text);
    if (u->self_run_id[0] && compat_chain_has(&u->ident, u->self_run_id)) {
        /* Following ourselves, directly or through other cascade relays, would report a link
         * up on a stream that never moves. Refused, and retried only at the longest delay. */
        bool direct = strcasecmp(u->ident.run_id, u->self_run_id) == 0;
        u->backoff_ms = u->backoff_max_ms;
        link_fail(u, direct ? "refused: the upstream is this relay itself (same run_id)"
                            : "refused: replication loop (the upstream follows this relay, "
                              "see its cascade_chain)");
        u->loops_refused++;
        return -1;
    }
    send_handshake(u);
    return 1;
}

static void send_psync(struct upstream *u)
{
    char replid[RESP_REPLID_LEN + 1] = "";
    int64_t held = 0;
    if (u->mode == UPSTREAM_MAIN && u->cb.position)
        u->cb.position(u->cb.ctx, replid, &held);
    if (replid[0]) {
        char off[32];
        snprintf(off, sizeof(off), "%" PRId64, held + 1);
        const char *argv[] = {"PSYNC", replid, off};
        send_command(u, 3, argv);
        u->offset = held;
        u->asked_partial = true;
        log_info(component(u), u->peer, "PSYNC %s %s", replid, off);
    } else {
        const char *argv[] = {"PSYNC", "?", "-1"};
        send_command(u, 3, argv);
        u->asked_partial = false;
        log_info(component(u), u->peer, "PSYNC ? -1");
    }
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
    if (is_error) {
        /* -NOMASTERLINK / -LOADING: the upstream is not ready; anything else is logged too. */
        char why[MAX_LINE + 32];
        snprintf(why, sizeof(why), "PSYNC refused: %s", line + 1);
        link_fail(u, why);
        return -1;
    }
    if (strncmp(line, "+FULLRESYNC", 11) == 0) {
        if (resp_parse_fullresync(line, strlen(line), u->full_replid, &u->full_offset) != 0) {
            link_fail(u, "malformed +FULLRESYNC");
            return -1;
        }
        log_notice(component(u), u->peer, "full resync: replid %s offset %" PRId64, u->full_replid,
                   u->full_offset);
        if (u->cb.on_fullresync)
            u->cb.on_fullresync(u->cb.ctx, u->full_replid, u->full_offset);
        set_state(u, UPSTREAM_RDB_PREAMBLE);
        begin_framing(u);
        return 0;
    }
    if (strncmp(line, "+CONTINUE", 9) == 0 && u->mode == UPSTREAM_MAIN) {
        if (!u->asked_partial) {
            link_fail(u, "protocol error: +CONTINUE in reply to PSYNC ? -1 (there is no history "
                         "to continue)");
            return -1;
        }
        char replid[RESP_REPLID_LEN + 1];
        if (resp_parse_continue(line, strlen(line), replid) != 0) {
            link_fail(u, "malformed +CONTINUE");
            return -1;
        }
        log_notice(component(u), u->peer, "partial resync from offset %" PRId64 "%s%s",
                   u->offset + 1, replid[0] ? ", upstream replid " : "", replid);
        begin_framing(u);
        enter_stream(u);
        if (u->cb.on_continue)
            u->cb.on_continue(u->cb.ctx, replid);
        return 0;
    }
    char why[MAX_LINE + 32];
    snprintf(why, sizeof(why), "unexpected PSYNC reply: %s", line);
    link_fail(u, why);
    return -1;
}

/* The RDB is in and checked: hand it over and take the stream (MAIN), or close (RDB_ONLY). */
static void rdb_complete(struct upstream *u)
{
    struct snapshot *snap = u->snap;
    u->snap = NULL;
    u->probing = false;
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
 * The last RDB byte arrived (drop: the end mark written through). A file that fails its
 * CRC-64 is never kept. A diskless RDB without a checksum cannot prove that its end mark was
 * the real end (a value holding the mark would cut it short), so the stream after it must
 * frame as commands first: until then it waits in the input (probe_stream).
 */
static void rdb_received(struct upstream *u, int64_t drop)
{
    char err[256];
    if (snapshot_finish(u->snap, drop, err, sizeof(err)) != 0) {
        if (u->cb.on_rdb_rejected)
            u->cb.on_rdb_rejected(u->cb.ctx, err);
        link_fail(u, err);
        return;
    }
    if (u->mode == UPSTREAM_MAIN)
        first_ack(u);
    if (u->mode == UPSTREAM_MAIN && u->rdb_eof_format && u->snap->verdict == RDB_UNCHECKED) {
        log_notice(component(u), u->peer,
                   "diskless RDB without a checksum: kept once the stream after it parses");
        u->probing = true;
        resp_stream_init(&u->probe);
        u->probed = 0;
        return;
    }
    rdb_complete(u);
}

#define PROBE_MAX_BYTES (64 * 1024 * 1024) /* stream held back at most while probing */

/* probing: frame what has arrived after the RDB with a scanner of its own, consuming nothing
 * (each call scans only what arrived since the last one: u->probe, u->probed). A whole
 * command keeps the snapshot (the bytes are then taken as the stream); bytes that are not
 * commands fail the sync. Returns 1 when kept (the link streams), 0 to wait for more input,
 * -1 when the link failed. */
static int probe_stream(struct upstream *u)
{
    struct evbuffer *in = input(u);
    size_t have = evbuffer_get_length(in);
    while (u->probe.commands == 0 && u->probed < have && u->probed < PROBE_MAX_BYTES) {
        struct evbuffer_ptr at;
        evbuffer_ptr_set(in, &at, u->probed, EVBUFFER_PTR_SET);
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, PROBE_MAX_BYTES - u->probed, &at, &v, 1) < 1)
            break;
        char err[RESP_ERR_LEN];
        bool getack; /* the scanner stops after each GETACK: a whole command all the same */
        ssize_t k = resp_stream_scan(&u->probe, v.iov_base, v.iov_len, &getack, err, sizeof(err));
        if (k < 0) {
            char why[RESP_ERR_LEN + 128];
            snprintf(why, sizeof(why),
                     "the stream after an unchecked diskless RDB does not parse (%s): the RDB is "
                     "discarded",
                     err);
            if (u->cb.on_rdb_rejected)
                u->cb.on_rdb_rejected(u->cb.ctx, why);
            link_fail(u, why);
            return -1;
        }
        u->probed += (size_t)k;
    }
    if (u->probe.commands == 0 && u->probed < PROBE_MAX_BYTES)
        return 0;
    if (u->probe.commands == 0)
        log_warning(component(u), u->peer,
                    "no whole command in the first %d MB after an unchecked RDB: kept unverified",
                    PROBE_MAX_BYTES >> 20);
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
    if (eol.pos < 0) {
        if (evbuffer_get_length(in) > MAX_LINE) {
            link_fail(u, "RDB preamble too long");
            return -1;
        }
        return 0;
    }
    char line[MAX_LINE + 1];
    size_t n = (size_t)eol.pos;
    if (n > MAX_LINE) {
        link_fail(u, "RDB preamble too long");
        return -1;
    }
    evbuffer_remove(in, line, n);
    evbuffer_drain(in, 2);
    line[n] = '\0';
    struct resp_rdb_preamble pre;
    char err[RESP_ERR_LEN];
    if (line[0] == '-' || resp_parse_rdb_preamble(line, n, &pre, err, sizeof(err)) != 0) {
        char sample[128], why[256];
        resp_escape(line, n, sample, sizeof(sample));
        snprintf(why, sizeof(why), "bad RDB preamble \"%s\"", sample);
        link_fail(u, why);
        return -1;
    }
    char tag[64];
    /* Unique per process life: a new file never lands on the name of one being served. */
    snprintf(tag, sizeof(tag), "%s-%" PRId64 "-%u", u->mode == UPSTREAM_MAIN ? "main" : "side",
             net_now_ms(), u->snap_seq++);
    u->snap = snapshot_new(u->dir, tag, u->full_replid, u->full_offset, err, sizeof(err));
    if (!u->snap) {
        link_fail(u, err);
        return -1;
    }
    u->rdb_eof_format = pre.eof_format;
    u->rdb_size = pre.eof_format ? -1 : pre.size;
    u->rdb_got = 0;
    u->rdb_fmt = (struct compat_rdb){0};
    if (pre.eof_format)
        resp_eofmark_init(&u->eof, pre.mark);
    log_info(component(u), u->peer, "receiving RDB (%s)",
             pre.eof_format ? "diskless, EOF-delimited" : "sized");
    set_state(u, UPSTREAM_RDB);
    if (!pre.eof_format && pre.size == 0) {
        rdb_received(u, 0); /* not an RDB: rejected */
        return u->bev ? 1 : -1;
    }
    return 1;
}

/* The RDB's first bytes: "REDIS0nnn" or "VALKEYnnn" (compat.h); the writer's version from
 * its aux fields if INFO did not tell. 0, or -1 when the link failed. */
static int rdb_head(struct upstream *u, const char *p, size_t n, bool done)
{
    size_t have = (size_t)u->rdb_got;
    size_t k = n < COMPAT_MAGIC_LEN - have ? n : COMPAT_MAGIC_LEN - have;
    memcpy(u->rdb_head + have, p, k);
    int rc = compat_rdb_parse(u->rdb_head, have + k, &u->rdb_fmt);
    if (rc < 0 || (rc == 0 && done && have + n < COMPAT_MAGIC_LEN)) {
        link_fail(u, "payload is not an RDB (bad magic)");
        return -1;
    }
    enum compat_server srv;
    int ver;
    if (rc == 1 && have == 0 && u->ident.server == COMPAT_UNKNOWN &&
        compat_rdb_writer(p, n, &srv, &ver) == 1) {
        u->ident.server = srv;
        compat_version_format(ver, u->ident.server_version, sizeof(u->ident.server_version));
        snprintf(u->ident.redis_version, sizeof(u->ident.redis_version), "%s",
                 srv == COMPAT_VALKEY ? "7.2.4" : u->ident.server_version);
        snprintf(u->ident.server_name, sizeof(u->ident.server_name), "%s",
                 srv == COMPAT_VALKEY ? "valkey" : "");
        log_notice(component(u), u->peer, "upstream is %s %s (from the RDB)",
                   compat_server_name(srv), u->ident.server_version);
    }
    return 0;
}

/* Moves RDB payload from the input to the snapshot file. */
static int read_rdb(struct upstream *u)
{
    struct evbuffer *in = input(u);
    char err[256];
    while (u->state == UPSTREAM_RDB && !u->probing && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len;
        bool done = false;
        int64_t drop = 0;
        if (u->rdb_eof_format) {
            ssize_t end = resp_eofmark_feed(&u->eof, v.iov_base, n);
            if (end >= 0) {
                n = (size_t)end;
                done = true;
                drop = RESP_EOFMARK_LEN;
            }
        } else {
            int64_t left = u->rdb_size - u->rdb_got;
            if ((int64_t)n >= left) {
                n = (size_t)left;
                done = true;
            }
        }
        /* A payload that does not open with the RDB magic is not an RDB: never serve it.
         * (The rest is checked against its CRC-64 trailer by snapshot_finish.) */
        if (u->rdb_got < RDB_HEADER_LEN) {
            unsigned char head[RDB_HEADER_LEN];
            size_t had = (size_t)u->rdb_got,
                   k = RDB_HEADER_LEN - had < n ? RDB_HEADER_LEN - had : n;
            memcpy(head, u->snap->check.head, had);
            memcpy(head + had, v.iov_base, k);
            if (!rdb_header_prefix_ok(head, had + k)) {
                link_fail(u, "payload is not an RDB (bad magic)");
                return -1;
            }
        }
        if (u->rdb_got < COMPAT_MAGIC_LEN && rdb_head(u, v.iov_base, n, done) != 0)
            return -1;
        if (snapshot_write(u->snap, v.iov_base, n, err, sizeof(err)) != 0) {
            link_fail(u, err);
            return -1;
        }
        u->rdb_got += (int64_t)n;
        evbuffer_drain(in, n);
        if (done) {
            rdb_received(u, drop);
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
            /* -NOAUTH / -NOPERM mean AUTH follows; any other error is fatal, as in Redis. */
            if (is_error && strncmp(line, "-NOAUTH", 7) != 0 && strncmp(line, "-NOPERM", 7) != 0) {
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
            } else if (strncmp(line, "+OK cascade-frame", 17) == 0) {
                u->frame_offered = true;
                u->frame_zstd = strstr(line + 17, "zstd") != NULL;
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
            if (u->probing ? probe_stream(u) <= 0 : read_rdb(u) != 0)
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
    return u->state == UPSTREAM_RDB && !u->probing ? u->snap : NULL;
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
    return u->rdb_got;
}

int64_t upstream_rdb_size(const struct upstream *u)
{
    return u->rdb_size;
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
    return u->rdb_fmt;
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
