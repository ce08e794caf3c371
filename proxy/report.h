/*
 * report: INFO, ROLE, CLIENT LIST and the Prometheus text, rendered from a plain struct of
 * facts that relay.c fills in one place (relay_facts). Owns the field names, their order and
 * their formats (Redis' names wherever Redis has the field, so that Sentinel, exporters and
 * tools read the relay as they read a replica). Must not reach into the relay's objects: the
 * facts are copied values (no libevent types, no pointers but static names and the rows the
 * facts own); must not log. The only reads of the system are report_process's.
 */
#ifndef CASCADE_REPORT_H
#define CASCADE_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "compat.h"
#include "history.h"
#include "net.h"
#include "resp.h"
#include "stats.h"

#define REPORT_HOST_LEN  256  /* a DNS name (253) or an address literal, and its NUL */
#define REPORT_PATH_LEN  4096 /* the configuration file's path */
#define REPORT_UNAME_LEN 65   /* struct utsname's fields on Linux */

/* ROLE's link state, as a replica reports it (Redis' replicationGetSlaveRole words). */
enum report_role_state {
    REPORT_ROLE_CONNECT,    /* no link and none being made: "connect" */
    REPORT_ROLE_CONNECTING, /* dialling, PING, AUTH, REPLCONF: "connecting" */
    REPORT_ROLE_SYNC,       /* PSYNC sent or an RDB arriving: "sync" */
    REPORT_ROLE_CONNECTED,  /* streaming: "connected" */
};

/* One downstream replica session. */
struct report_replica {
    uint64_t id;             /* client id, as CLIENT LIST shows it */
    char peer[NET_ADDR_LEN]; /* ip:port of the connection */
    char ip[NET_ADDR_LEN];   /* announced (REPLCONF ip-address) or the peer's ip */
    int listening_port;      /* REPLCONF listening-port, 0 if not sent */
    const char *state;       /* its state's name (a static string) */
    int64_t created_ms;      /* when the connection was accepted */
    int64_t ack_ms;          /* its last ACK or "\n" */
    int64_t ack_offset;      /* its last REPLCONF ACK offset */
    int64_t lag_bytes;       /* stream bytes it is behind */
    size_t output_bytes;     /* bytes queued to its socket */
    int64_t from_disk_bytes; /* stream bytes served to it from the disk log */
    bool plain_sync;         /* came with SYNC, not PSYNC */
    const char *link;        /* "plain", or its framing's mode name (a static string) */
    int64_t link_raw_bytes;  /* framed link: bytes before framing */
    int64_t link_wire_bytes; /* ... and on the wire */
};

/* One leaf held off because it cannot load the snapshot (compat.h's marks). */
struct report_refused {
    char ip[NET_ADDR_LEN];
    int port;
    char leaf[48];         /* what it said of its version, in words */
    int rdb_version;       /* the RDB version it could not load */
    int64_t held_until_ms; /* INT64_MAX: until it says more of itself */
    char reason[64];
};

/* The process itself (report_process fills these). */
struct report_process {
    char sysname[REPORT_UNAME_LEN], release[REPORT_UNAME_LEN], machine[REPORT_UNAME_LEN];
    int arch_bits;
    int pid;
    int64_t rss_bytes; /* resident set size, 0 if unknown */
};

/* The main upstream link. */
struct report_upstream {
    char host[REPORT_HOST_LEN]; /* "" while none is configured */
    int port;
    const char *state;               /* its state's name (a static string) */
    enum report_role_state role;     /* ... as ROLE words it */
    bool link_up;                    /* streaming */
    bool stalled;                    /* streaming but silent too long (never shown as up) */
    bool syncing;                    /* an RDB is arriving */
    int64_t last_io_ms;              /* last byte from it, 0 if never */
    int64_t down_since_ms;           /* when the link last went down */
    int64_t rdb_size, rdb_bytes;     /* syncing: the RDB's size (-1 unknown) and bytes so far */
    int64_t commands;                /* stream commands received and forwarded */
    const char *link_mode;           /* "plain", "raw" or "zstd" (a static string) */
    int64_t link_raw_bytes;          /* framed link: bytes decoded */
    int64_t link_wire_bytes;         /* ... and on the wire */
    int64_t link_heartbeats;         /* ... heartbeat frames */
    bool has_identity;               /* identity is what its INFO server said */
    struct compat_identity identity; /* who it is */
    int64_t loops_refused;           /* links refused because they would close a loop */
    char announced[32];              /* REPLCONF version sent, "" for none */
    int sync_aborts;                 /* full syncs it aborted, in a row */
    int64_t sync_aborts_total;       /* ... in all */
    char abort_reason[256];          /* of the last one */
};

/* The cached snapshot and the disk log. */
struct report_snapshot {
    bool present;             /* a snapshot object exists (any state) */
    const char *state;        /* its state's name (a static string) */
    int64_t offset, size;     /* its stream offset and bytes */
    time_t ready_time;        /* when it became READY */
    struct compat_rdb format; /* its RDB version and magic, 0 if unknown */
    bool fetch_in_progress;   /* a side link is fetching a fresh one */
    size_t replicas_waiting;  /* replicas waiting for a snapshot */
};

struct report_disk {
    bool present;        /* backlog.disk = yes */
    bool enabled;        /* ... and not off after a write error */
    bool direct_io;      /* enabled and writing with O_DIRECT */
    int64_t first, last; /* offsets held on disk */
    int64_t bytes;       /* bytes in segments */
    size_t segments;     /* segment files */
};

struct report_facts {
    int64_t now_ms; /* net_now_ms() when gathered */
    time_t now;     /* time(NULL) when gathered (snapshot ages) */
    struct report_process proc;
    int64_t start_ms;                   /* when the relay started */
    char run_id[RESP_RUN_ID_LEN + 1];   /* the relay's own */
    int64_t tcp_port;                   /* relay.port */
    char config_file[REPORT_PATH_LEN];  /* "" if none */
    bool has_identity;                  /* identity names what the relay presents itself as */
    struct compat_identity identity;    /* the upstream's, else the snapshot writer's */
    size_t clients;                     /* plain client connections */
    int64_t maxclients;                 /* relay.max-clients */
    size_t client_memory;               /* bytes buffered for plain clients */
    struct stats stats;                 /* the counters */
    struct history hist;                /* the ids served */
    int64_t backlog_start, backlog_end; /* in-memory stream range */
    size_t backlog_histlen, backlog_memory, backlog_limit;
    int64_t held_first; /* first offset held, in memory or on disk */
    struct report_upstream up;
    struct report_snapshot snap;
    struct report_disk disk;
    int refused_count;                            /* leaves held off now */
    struct report_refused refused[COMPAT_LEAVES]; /* ... each of them */
    int nrefused;
    size_t replicas_live;            /* live replica sessions (connected_slaves) */
    struct report_replica *replicas; /* owned: every session, in the set's order */
    size_t nreplicas, replicas_cap;
};

/* Fill f->proc from the running process (uname, pid, /proc/self/statm). */
void report_process(struct report_process *p);

/* A new zeroed row at the end of f->replicas (grown as needed). */
struct report_replica *report_add_replica(struct report_facts *f);

/* Free the rows (the facts can be filled again afterwards). */
void report_facts_deinit(struct report_facts *f);

/* INFO [section]: one section by name (case-insensitive), all default sections for "",
 * "all", "default" and "everything"; nothing for an unknown name (as Redis). */
void report_info(const struct report_facts *f, const char *section, struct sbuf *out);

/* ROLE: the RESP reply of a replica (*5: slave, host, port, state, offset). */
void report_role(const struct report_facts *f, struct sbuf *out);

/* CLIENT LIST lines of the replica sessions (plain clients are server.c's). */
void report_client_list(const struct report_facts *f, struct sbuf *out);

/* The Prometheus text (exposition format 0.0.4) of everything. */
void report_metrics(const struct report_facts *f, struct sbuf *out);

/* Helpers for the text format: "# HELP", "# TYPE" once per family, then samples (integers
 * exactly, fractions to the millisecond). */
void report_metrics_family(struct sbuf *out, const char *name, const char *type, const char *help);
void report_metrics_sample(struct sbuf *out, const char *name, const char *labels, double value);

#endif
