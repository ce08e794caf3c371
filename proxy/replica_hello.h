/*
 * replica_hello: what a downstream connection is and what it said of itself before PSYNC or
 * SYNC: its id and address, its REPLCONF options and capabilities, the version it announced.
 * One plain struct, no functions: the server's REPLCONF handler fills it as the options
 * arrive, PSYNC/SYNC hands it to the relay as it is, and the replica session keeps it. Owns
 * nothing; must not grow behaviour (the verdicts on a leaf's version are compat.h's).
 */
#ifndef CASCADE_REPLICA_HELLO_H
#define CASCADE_REPLICA_HELLO_H

#include <stdbool.h>
#include <stdint.h>

#include "compat.h"
#include "net.h"

struct replica_hello {
    uint64_t id;             /* client id, as in CLIENT LIST */
    char peer[NET_ADDR_LEN]; /* ip:port of the connection */
    char ip[NET_ADDR_LEN];   /* announced (REPLCONF ip-address) or the peer's ip */
    int listening_port;      /* REPLCONF listening-port, 0 if not sent */
    bool capa_eof;           /* REPLCONF capa eof */
    bool capa_psync2;        /* REPLCONF capa psync2 */
    bool cascade_frame; /* a cascade relay that agreed to framing (REPLCONF capa cascade-frame) */
    int frame_level;    /* ... zstd level of its frames (0: raw frames) */
    /* What it said of its version: Valkey's REPLCONF version (exact), else Redis 8's capa
     * rdb-channel-repl ("Redis 8.0 or later"), else unknown. */
    struct compat_leaf leaf;
    bool rdb_only;      /* REPLCONF rdb-only 1: RDB, then close */
    bool plain_sync;    /* SYNC instead of PSYNC: no +FULLRESYNC line, no ACKs */
    bool tls;           /* on the TLS port: writes go through OpenSSL */
    int64_t created_ms; /* when the connection was accepted */
};

#endif
