/*
 * replica: downstream replica sessions, the relay acting as their master.
 * A session starts when server.c hands over a connection that sent PSYNC or SYNC and relay.c
 * has decided partial or full. From then on it only sends: the RDB (sendfile), then stream
 * bytes referenced zero-copy from backlog blocks. It reads REPLCONF ACK and "\n" only.
 * Owns its sessions and their bufferevents; borrows the backlog and stats from relay.c.
 */
#ifndef CASCADE_REPLICA_H
#define CASCADE_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "backlog.h"
#include "compat.h"
#include "config.h"
#include "net.h"
#include "replica_hello.h"
#include "snapshot.h"
#include "stats.h"
#include "store.h"
#include "wanlink.h"

struct bufferevent;
struct event_base;

enum replica_state {
    REPLICA_WAIT_SNAPSHOT, /* full sync accepted, no usable snapshot yet: "\n" keepalives */
    REPLICA_STREAM_RDB,    /* EOF-format RDB sent while it still arrives from the upstream */
    REPLICA_SEND_RDB,      /* RDB queued (sendfile), stream queued behind it */
    REPLICA_WAIT_ACK,      /* EOF-format RDB sent: no stream before the first REPLCONF ACK */
    REPLICA_ONLINE,        /* RDB delivered or partial resync: streaming */
    REPLICA_CLOSING,       /* flushing its last bytes, then freed */
};

const char *replica_state_name(enum replica_state s);

struct replica {
    struct replica *next, *prev; /* the set's list */
    struct replica_set *set;     /* owner */
    struct bufferevent *bev;     /* owned */
    struct replica_hello hello;
    enum replica_state state;
    int64_t state_since_ms;
    int64_t next_offset;             /* next stream byte to queue */
    int64_t stream_queued;           /* stream bytes handed to the output over the session */
    int64_t rdb_offset;              /* offset of the snapshot sent (full sync), else -1 */
    int64_t ack_offset;              /* last REPLCONF ACK offset */
    int64_t ack_ms;                  /* time of the last ACK or "\n" */
    int64_t keepalive_ms;            /* last "\n" sent while waiting */
    bool dead;                       /* on the reaper list */
    bool full_sync;                  /* this session began with a full sync */
    bool acked;                      /* sent a REPLCONF ACK */
    int64_t from_disk_bytes;         /* stream bytes served from the disk log */
    int64_t lag_prev;                /* lag at the previous limit check */
    int64_t soft_since_ms;           /* past the soft limit since, 0 if not */
    uint64_t rdb_gen;                /* STREAM_RDB / WAIT_ACK: which filling snapshot it follows */
    int rdb_fd;                      /* STREAM_RDB: the snapshot file being filled, else -1 */
    int64_t rdb_pos;                 /* STREAM_RDB: RDB bytes queued so far */
    int64_t rdb_avail;               /* STREAM_RDB: RDB bytes in the file so far */
    bool rdb_done;                   /* STREAM_RDB: the file is complete at rdb_avail bytes */
    char eof_mark[RESP_EOFMARK_LEN]; /* STREAM_RDB: the delimiter of the EOF format */
    struct wanlink_out *link; /* framed (a cascade relay): the filter's state, owned by bev */
};

struct replica_limits {
    int64_t output_limit_bytes;  /* hard limit: drop a replica falling this far behind */
    int64_t output_soft_bytes;   /* soft limit ... */
    int64_t output_soft_ms;      /* ... tolerated this long */
    int64_t snapshot_rate_bytes; /* RDB transfer rate per replica (0 = unlimited); fixed */
    int64_t timeout_ms;          /* drop a replica silent this long */
    int64_t keepalive_ms;        /* "\n" interval while waiting for a snapshot */
    int64_t sndbuf_bytes;        /* SO_SNDBUF of replica sockets (0: autotuning) */
};

/* The limits the configuration sets. */
struct replica_limits replica_limits_of(const struct config *cfg);

struct replica_set;

struct replica_set *replica_set_new(struct event_base *base, struct backlog *backlog,
                                    struct stats *stats, const struct replica_limits *lim);
void replica_set_free(struct replica_set *set);
void replica_set_limits(struct replica_set *set, const struct replica_limits *lim);

/* The disk log replicas behind memory are served from (NULL: none). */
void replica_set_store(struct replica_set *set, struct store *store);

/* Sessions sending an RDB now (for max-full-syncs). */
size_t replica_set_sending(const struct replica_set *set);

/* Lowest stream offset a streaming session still needs (INT64_MAX if none). */
int64_t replica_set_min_offset(const struct replica_set *set);

/* Take over a connection (its callbacks are replaced). The session starts in no state:
 * the caller follows with replica_start_partial or replica_start_full. */
struct replica *replica_attach(struct replica_set *set, struct bufferevent *bev,
                               const struct replica_hello *hello);

/* "+CONTINUE[ replid]" then the stream from offset (which the backlog must hold). */
void replica_start_partial(struct replica *r, int64_t offset, const char *replid);

/* Full sync from snap (READY), announced as "+FULLRESYNC <replid> <snap offset>" (the current
 * id of the history: psync2 histories share offsets), or WAIT_SNAPSHOT if snap is NULL. */
void replica_start_full(struct replica *r, const struct snapshot *snap, const char *replid);

/* Send the RDB being filled at path (stream offset `offset`, history `replid`) in the EOF
 * format while it arrives; gen names that snapshot in replica_set_rdb_progress. Only for
 * replicas that announced capa eof. */
void replica_start_streamed(struct replica *r, const char *path, int64_t offset, const char *replid,
                            uint64_t gen);

/* The filling snapshot `gen` now holds size bytes (done: and is complete). */
void replica_set_rdb_progress(struct replica_set *set, uint64_t gen, int64_t size, bool done);

/* The filling snapshot `gen` failed: drop the replicas it was being streamed to. */
void replica_set_rdb_abort(struct replica_set *set, uint64_t gen, const char *why);

/* Queue new stream bytes to every streaming replica (after backlog appends, and after the disk
 * log wrote bytes a replica reading from disk waits for). */
void replica_set_feed(struct replica_set *set);

/* Close sessions: all of them, or only those past WAIT_SNAPSHOT; sessions following the filling
 * snapshot keep_gen (0: none) are kept too. */
void replica_set_drop(struct replica_set *set, bool waiting_too, uint64_t keep_gen,
                      const char *why);

/* Keepalives and timeouts. */
void replica_set_cron(struct replica_set *set, int64_t now_ms);

/* Iteration (skips nothing; check r->state). */
struct replica *replica_set_first(struct replica_set *set);
size_t replica_set_count(const struct replica_set *set);   /* live sessions */
size_t replica_set_waiting(const struct replica_set *set); /* in WAIT_SNAPSHOT */

/* Bytes queued but not yet written to the socket, and the stream lag in bytes. */
size_t replica_output_bytes(const struct replica *r);
int64_t replica_lag_bytes(const struct replica *r);

/* Called as a session ends (before it is freed): by_peer if the replica closed the link. */
typedef void (*replica_end_fn)(void *ctx, const struct replica *r, bool by_peer);
void replica_set_on_end(struct replica_set *set, replica_end_fn fn, void *ctx);

/* WAIT_SNAPSHOT only (nothing but "\n" sent yet): answer the PSYNC with the error line
 * ("-" and CRLF added) and close. */
void replica_refuse(struct replica *r, const char *line);

/* Close one session after flushing what is queued. */
void replica_close(struct replica *r, const char *why);

#endif
