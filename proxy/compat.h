/*
 * compat: which server loads which RDB, and who the upstream is. Pure functions only:
 * version strings, the RDB's magic and aux fields, the table of RDB versions each server
 * version loads, INFO server parsing, and the table of leaves held off because they cannot
 * load the relay's snapshot. No I/O, no logging, no libevent.
 *
 * Facts behind the table (read in the servers' sources, see docs/reference.md "Versions"):
 * the RDB opens with 9 bytes, "REDIS0" or "VALKEY" and the version in three digits
 * ("REDIS0011", "VALKEY080": Valkey 9's rdb.c rdbSaveRio, rdbUseValkeyMagic); a Redis loads
 * only the REDIS magic up to its own RDB_VERSION; a Valkey >= 9 loads REDIS0xxx up to 11
 * and VALKEY up to its own version (rdbIsVersionAccepted, strict check by default).
 */
#ifndef CASCADE_COMPAT_H
#define CASCADE_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"

#define COMPAT_MAGIC_LEN 9 /* "REDIS0011" / "VALKEY080" */

enum compat_server {
    COMPAT_UNKNOWN, /* said nothing about itself */
    COMPAT_REDIS,   /* Redis (or a server that calls itself so) */
    COMPAT_VALKEY,  /* Valkey */
};

const char *compat_server_name(enum compat_server s);

/* "x.y.z" (each part 0..255; "x.y" too) as (x << 16 | y << 8 | z), -1 if malformed. */
int compat_version_parse(const char *s, size_t len);
/* The inverse, into out ("7.0.15"). */
void compat_version_format(int v, char *out, size_t len);

/* An RDB's format from its first COMPAT_MAGIC_LEN bytes. */
struct compat_rdb {
    int version;       /* RDB_VERSION in the magic, 0 if unknown */
    bool valkey_magic; /* "VALKEY" rather than "REDIS0" */
};
/* 1 parsed (by rdb.h's header parser), 0 more bytes needed (n < 9 and the prefix fits),
 * -1 not an RDB. */
int compat_rdb_parse(const void *buf, size_t n, struct compat_rdb *out);

/* The server version an RDB says wrote it: the "valkey-ver" or "redis-ver" aux field, looked
 * for in the first n bytes. 1 found (server and version set), 0 not found there. */
int compat_rdb_writer(const void *buf, size_t n, enum compat_server *server, int *version);

/*
 * What a leaf is known to load. A server that announces its exact version (Valkey's
 * "REPLCONF version") sets exact; one known only to be at least some version (Redis 8's
 * "capa rdb-channel-repl": >= 8.0) sets min_version; one that said nothing sets neither.
 */
struct compat_leaf {
    enum compat_server server;
    int version; /* packed, 0 unknown */
    bool exact;  /* version is the leaf's own, not a lower bound */
};

/* THE table: the highest RDB version (with that magic) a server of this kind and version
 * loads, 0 if it loads none with that magic. */
int compat_max_rdb(enum compat_server server, int version, bool valkey_magic);

enum compat_verdict {
    COMPAT_LOADS,  /* the leaf can load the RDB */
    COMPAT_CANNOT, /* it cannot: a sync would be wasted */
    COMPAT_UNSURE, /* cannot tell (the leaf said too little) */
};
const char *compat_verdict_name(enum compat_verdict v);
enum compat_verdict compat_check(const struct compat_leaf *leaf, const struct compat_rdb *rdb);

/* For log lines and INFO: "valkey 8.1.0", "redis >= 8.0.0", "version not announced"; and
 * "RDB version 11 (REDIS magic)". */
void compat_leaf_desc(const struct compat_leaf *l, char *out, size_t len);
void compat_rdb_desc(const struct compat_rdb *f, char *out, size_t len);

#define COMPAT_CHAIN_IDS 8 /* relay levels a loop is detected across */

/* The upstream as its INFO server section describes it. */
struct compat_identity {
    enum compat_server server; /* COMPAT_UNKNOWN until known */
    char redis_version[32];    /* as reported ("7.2.4" on Valkey) */
    char server_version[32];   /* the server's own version: valkey_version, else redis_version */
    char server_name[16];      /* "valkey" where set, else "" */
    char run_id[RESP_RUN_ID_LEN + 1]; /* "" if not reported */
    /* cascade_chain: the run ids of the nodes a cascade relay follows, its own upstream first
     * (comma-separated; "" for a stock server or a relay with no upstream known) */
    char chain[COMPAT_CHAIN_IDS * (RESP_RUN_ID_LEN + 1)];
};
/* The chain a relay with this upstream reports: the upstream's run id, then its chain, cut
 * to COMPAT_CHAIN_IDS ids. */
void compat_chain_extend(const struct compat_identity *up, char *out, size_t cap);
/* True if run_id is the upstream itself or a node of its chain: following it would close a
 * loop. Ids compare exactly, case-insensitively, as replication ids do. */
bool compat_chain_has(const struct compat_identity *up, const char *run_id);
/* Parse an INFO reply's text (any sections). 0 if it held redis_version, else -1. */
int compat_identity_parse(const char *info, size_t len, struct compat_identity *out);

/* What to announce with REPLCONF version: setting is "auto", "none" or a version; auto
 * announces a Valkey upstream's own version. Returns "" for nothing. */
const char *compat_announce(const char *setting, const struct compat_identity *id);
/* A valid setting for upstream.announce-version. */
bool compat_announce_valid(const char *setting);

/*
 * Leaves held off: keyed by ip and listening port (a leaf reconnects from a new port each
 * time). A leaf is marked when it cannot load the snapshot (known from its version), or after
 * COMPAT_MAX_FAILS full syncs in a row that it dropped before its first ACK (unknown
 * version). A marked leaf is refused until held_until_ms; each new failure doubles the hold.
 */
#define COMPAT_MAX_FAILS 3
#define COMPAT_LEAVES    64
#define COMPAT_HOLD_MS   30000
#define COMPAT_HOLD_MAX  (10 * 60 * 1000)

struct compat_mark {
    char ip[64];
    int port;
    int fails;         /* full syncs dropped in a row before the first ACK */
    bool marked;       /* held off */
    bool logged;       /* the relay logged this mark */
    int rdb_version;   /* RDB version it could not load */
    bool valkey_magic; /* ... and its magic */
    struct compat_leaf leaf;
    char reason[64]; /* "announced version", "dropped 3 syncs" */
    int64_t held_until_ms;
    int64_t hold_ms; /* current hold, doubled on each failure */
    int64_t last_ms; /* last touched (eviction) */
};

struct compat_marks {
    struct compat_mark m[COMPAT_LEAVES];
    int n;
};

/* The entry for (ip, port), created if absent (the least recently touched one is reused). */
struct compat_mark *compat_marks_get(struct compat_marks *t, const char *ip, int port, int64_t now);
/* The entry or NULL. */
struct compat_mark *compat_marks_find(struct compat_marks *t, const char *ip, int port);
/* A full sync the leaf dropped before its first ACK. True if that marked it just now. */
bool compat_marks_failed(struct compat_marks *t, const char *ip, int port,
                         const struct compat_leaf *leaf, const struct compat_rdb *rdb, int64_t now);
/* Marked because its version cannot load rdb. True if newly marked. */
bool compat_marks_cannot(struct compat_marks *t, const char *ip, int port,
                         const struct compat_leaf *leaf, const struct compat_rdb *rdb, int64_t now);
/* The leaf acknowledged a full sync: forget it. */
void compat_marks_ok(struct compat_marks *t, const char *ip, int port);
/* True if (ip, port) is held off now for this RDB after failed syncs (a mark for another RDB
 * version, or one made by compat_marks_cannot, is lifted: ask compat_check first). */
bool compat_marks_held(struct compat_marks *t, const char *ip, int port,
                       const struct compat_rdb *rdb, int64_t now);
/* Entries currently marked. */
int compat_marks_count(const struct compat_marks *t);

#endif
