/*
 * upstream_io: internal to the upstream module. The one struct upstream.c (the protocol:
 * handshake, PSYNC, RDB, backoff, cron) and upstream_io.c (the bytes: connect, TLS, cascade
 * framing, the stream's read path) share, and the functions each calls in the other.
 * Included by upstream.c and upstream_io.c only: everyone else goes through upstream.h.
 */
#ifndef CASCADE_UPSTREAM_IO_H
#define CASCADE_UPSTREAM_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "compat.h"
#include "handshake.h"
#include "net.h"
#include "rdbrecv.h"
#include "resp.h"
#include "upstream.h"
#include "wanlink.h"

struct bufferevent;
struct event;
struct evbuffer;
struct redisReader;
struct resolve_req;

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
    int64_t backoff_ms;         /* next delay */
    int64_t retry_at_ms;        /* BACKOFF: when to connect */
    struct bufferevent *bev;    /* owned; NULL without a link */
    struct event *stream_ev;    /* owned: a plain link's reads while streaming (the bufferevent's
                                   reads are off then); kept between links, freed with u */
    char *rbuf;                 /* owned: DRAIN_BYTES for stream_ev's reads, allocated once */
    char peer[NET_ADDR_LEN];    /* "host:port" for logs */
    struct redisReader *reader; /* owned; parses handshake replies */
    int replies_pending;        /* HANDSHAKE: replies still expected */
    bool auth_pending;          /* the next reply answers AUTH */
    int64_t offset;             /* last stream byte received */
    int64_t last_io_ms;         /* last byte read (keepalives included) */
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

/* upstream.c: the protocol's side. */
const char *upstream_component(const struct upstream *u); /* for logs */
/* The link failed: log once, close, schedule a retry (MAIN) or give up (RDB_ONLY). */
void upstream_fail(struct upstream *u, const char *why);
/* Connected (TLS included): the handshake begins. */
void upstream_connected(struct upstream *u);
/* The bufferevent's read callback: the state machine. */
void upstream_read_cb(struct bufferevent *bev, void *arg);

/* upstream_io.c: the bytes' side. */
/* Resolve the host, then connect (resolve.h: never blocks); failures go to upstream_fail. */
void upstream_io_connect(struct upstream *u);
/* Drop the link's connection, lookup and decoder (their counters kept). */
void upstream_io_close(struct upstream *u);
/* Free what outlives links (the stream's read event and buffer). */
void upstream_io_free(struct upstream *u);
/* Where the state machine reads: the link itself, or what its frames decoded to. */
struct evbuffer *upstream_io_input(struct upstream *u);
/* Decode what arrived on a framed link. 0, or -1 when the link failed. */
int upstream_io_decode(struct upstream *u);
/* After the PSYNC reply: everything else on the link comes framed, if the upstream agreed. */
void upstream_io_begin_framing(struct upstream *u);
void upstream_io_send(struct upstream *u, const struct handshake_batch *b);
void upstream_io_send_ack(struct upstream *u); /* REPLCONF ACK <offset>, now */
/* STREAM entered: a plain link's reads are taken over (see upstream_io.c). */
void upstream_io_stream_reads(struct upstream *u);
/* STREAM: frame and pass on what the input holds, then a framed link's new frames. */
void upstream_io_read_stream(struct upstream *u);

#endif
