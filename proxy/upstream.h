/*
 * upstream: one link to a master (or relay), the relay acting as its replica.
 * A state machine: connect, handshake, PSYNC, RDB into a snapshot file, then the stream.
 * It reports through callbacks that relay.c sets and never touches replicas or the backlog.
 * Two modes: MAIN (the replication link; reconnects with capped backoff forever) and
 * RDB_ONLY (a side link that fetches one fresh snapshot with "REPLCONF rdb-only 1").
 */
#ifndef CASCADE_UPSTREAM_H
#define CASCADE_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "resp.h"
#include <sys/types.h>
#include <sys/uio.h>

#include "compat.h"
#include "net.h"
#include "snapshot.h"
#include "wanlink.h"

struct event_base;
struct upstream;
typedef struct ssl_ctx_st SSL_CTX;

enum upstream_mode {
    UPSTREAM_MAIN,     /* the replication link */
    UPSTREAM_RDB_ONLY, /* a one-shot snapshot fetch */
};

enum upstream_state {
    UPSTREAM_IDLE,         /* no host configured, or a finished side link */
    UPSTREAM_BACKOFF,      /* waiting before the next connect */
    UPSTREAM_CONNECTING,   /* TCP connect in flight */
    UPSTREAM_PING,         /* PING sent, waiting for +PONG (or -NOAUTH) */
    UPSTREAM_INFO,         /* AUTH and INFO server sent: who the upstream is */
    UPSTREAM_HANDSHAKE,    /* AUTH / REPLCONF pipelined, replies pending */
    UPSTREAM_PSYNC,        /* PSYNC sent, waiting for +FULLRESYNC / +CONTINUE */
    UPSTREAM_RDB_PREAMBLE, /* waiting for "$<len>" or "$EOF:<mark>" */
    UPSTREAM_RDB,          /* receiving the RDB payload */
    UPSTREAM_STREAM,       /* online: receiving the command stream */
};

const char *upstream_state_name(enum upstream_state s);

struct upstream_callbacks {
    void *ctx;
    /* The history to continue: replid ("" for none) and the offset of the last byte held. */
    void (*position)(void *ctx, char replid[RESP_REPLID_LEN + 1], int64_t *offset);
    /* +CONTINUE: the link resumes at the position given; new_replid is "" if unchanged. */
    void (*on_continue)(void *ctx, const char *new_replid);
    /* +FULLRESYNC: a new history (replid, offset) starts once its RDB is complete. */
    void (*on_fullresync)(void *ctx, const char *replid, int64_t offset);
    /* The RDB is complete; ownership of the READY snapshot passes to the callee. */
    void (*on_snapshot)(void *ctx, struct snapshot *snap);
    /* Stream bytes, in order, exactly as received; boundary: a position in buf between two
     * commands (0 if buf starts at one, else the last one in buf), -1 if there is none. */
    void (*on_stream)(void *ctx, const char *buf, size_t len, ssize_t boundary);
    /* The bytes of one read were all passed to on_stream (which may have taken several calls):
     * the moment to send them on. */
    void (*on_stream_end)(void *ctx);
    /* Optional: where to read up to max stream bytes, as at most n iovecs (returns their count;
     * 0: the link's own buffer). Each on_stream then gets a part of one iovec, in order. */
    int (*stream_room)(void *ctx, size_t max, struct iovec *iov, int n);
    /* The link went down (or a side fetch failed); the reason is logged already. */
    void (*on_down)(void *ctx);
    /* More RDB bytes are in the snapshot file being filled (see upstream_filling). */
    void (*on_rdb_progress)(void *ctx);
    /* An RDB that arrived whole was refused (checksum, or the stream after it); the link
     * fails right after. Optional. */
    void (*on_rdb_rejected)(void *ctx, const char *why);
};

/* Long-distance settings (reloadable: they apply from the next connect). */
struct upstream_wan {
    bool compression;         /* MAIN: ask a cascade upstream for zstd (framing is always asked) */
    int64_t link_timeout_ms;  /* silence on a framed link (no heartbeat) before a redial */
    struct net_link_opts tcp; /* socket options (congestion is copied) */
};
struct resolver;

struct upstream_params {
    enum upstream_mode mode;
    const char *host; /* copied */
    int port;
    const char *user;     /* copied; "" = default user */
    const char *password; /* copied; "" = no AUTH */
    int listening_port;   /* announced with REPLCONF listening-port */
    const char *dir;      /* where RDB files are written; copied */
    int64_t connect_timeout_ms;
    int64_t repl_timeout_ms;
    int64_t reconnect_min_ms;
    int64_t reconnect_max_ms;
    SSL_CTX *tls;                   /* borrowed; TLS to the upstream when not NULL */
    const char *server_name;        /* copied; checked in its certificate ("" = host) */
    struct resolver *resolver;      /* borrowed, required: names resolved without blocking */
    const char *self_run_id;        /* copied: the relay's run id (refuse an upstream that is us) */
    const struct upstream_wan *wan; /* NULL: defaults (no compression asked) */
    const char *announce_version;   /* copied: "auto", "none" or x.y.z (REPLCONF version) */
};

struct upstream *upstream_new(struct event_base *base, const struct upstream_params *p,
                              const struct upstream_callbacks *cb);
void upstream_free(struct upstream *u);

/* Begin connecting now (from IDLE or BACKOFF). */
void upstream_start(struct upstream *u);
/* Credentials for the next connect. */
void upstream_set_auth(struct upstream *u, const char *user, const char *password);
/* Stop reading from the upstream (graceful stop): the stream held no longer grows. */
void upstream_pause(struct upstream *u);
/* Drop the link (if any) and reconnect to host:port, keeping the history position. */
void upstream_repoint(struct upstream *u, const char *host, int port);
/* The framing state of the stream at the position to continue from (after a restart the
 * held stream may end inside a command). */
struct resp_stream;
void upstream_set_framing(struct upstream *u, const struct resp_stream *scan);

/* Update timeouts and backoff bounds (reloadable keys). */
void upstream_set_timeouts(struct upstream *u, int64_t connect_ms, int64_t repl_ms,
                           int64_t backoff_min_ms, int64_t backoff_max_ms);

void upstream_set_wan(struct upstream *u, const struct upstream_wan *w);
/* upstream.announce-version for the next handshake. */
void upstream_set_announce(struct upstream *u, const char *setting);

/* Who the upstream is (INFO server before PSYNC, else the RDB's aux fields); NULL while
 * unknown. Kept across reconnects. */
const struct compat_identity *upstream_identity(const struct upstream *u);
/* Streaming, but nothing (not even a PING) heard for half of repl-timeout: reported down. */
bool upstream_stalled(const struct upstream *u, int64_t now_ms);
/* Links refused because the upstream is the relay itself or follows it. */
int64_t upstream_loops_refused(const struct upstream *u);
/* The version sent with REPLCONF version on the last handshake ("" = none). */
const char *upstream_announced(const struct upstream *u);
/* The RDB format of the snapshot being received or last received (version 0 = unknown). */
struct compat_rdb upstream_rdb_format(const struct upstream *u);
/* Full syncs the upstream aborted right after +FULLRESYNC: in a row now, and ever; the
 * reason of the last one ("" if none). */
int upstream_sync_aborts(const struct upstream *u);
int64_t upstream_sync_aborts_total(const struct upstream *u);
const char *upstream_abort_reason(const struct upstream *u);

/* Periodic work: ACKs, timeouts, reconnects. now_ms is a monotonic clock. */
void upstream_cron(struct upstream *u, int64_t now_ms);

enum upstream_state upstream_state(const struct upstream *u);
/* The snapshot being filled (RDB state), or NULL: its temp file, replid and offset, so that
 * replicas can be sent the RDB while it still arrives; upstream_filling_servable says how many
 * of its bytes they may be sent so far (fewer than its size: the end mark may have begun). */
const struct snapshot *upstream_filling(const struct upstream *u);
int64_t upstream_filling_servable(const struct upstream *u);
bool upstream_link_up(const struct upstream *u); /* in STREAM state */
const char *upstream_host(const struct upstream *u);
int upstream_port(const struct upstream *u);
int64_t upstream_offset(const struct upstream *u);        /* last byte received */
int64_t upstream_last_io_ms(const struct upstream *u);    /* monotonic time of last read */
int64_t upstream_down_since_ms(const struct upstream *u); /* 0 while up */
int64_t upstream_rdb_bytes(const struct upstream *u);     /* RDB bytes received (this sync) */
int64_t upstream_rdb_size(const struct upstream *u);      /* expected, -1 for EOF format */
int64_t upstream_stream_bytes(const struct upstream *u);  /* stream bytes over the life */
int64_t upstream_commands(const struct upstream *u);      /* stream commands scanned */
/* How the current link is carried: "plain" (a stock master, or not framed), "raw" or "zstd"
 * (cascade framing). */
const char *upstream_link_mode(const struct upstream *u);
/* Framed bytes over the life of the object, the current link's included. */
struct wanlink_counters upstream_link_counters(const struct upstream *u);

#endif
