/*
 * handshake: the replica side's handshake with a master, as pure functions. It spells the
 * commands the relay sends (AUTH and INFO server, the REPLCONF set, PSYNC, REPLCONF ACK) and
 * reads the replies that decide what happens next (PING's, the INFO server bulk's header,
 * REPLCONF's cascade-frame offer, PSYNC's), says when the upstream's identity is a loop back
 * to the relay, and accounts for a full sync the master ended before its RDB was complete.
 * Owns nothing but the structs the caller passes. No I/O, no logging, no libevent: upstream.c
 * sends, reads the link and logs.
 */
#ifndef CASCADE_HANDSHAKE_H
#define CASCADE_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "resp.h"

#define HANDSHAKE_MAX_ARGC 5 /* "REPLCONF capa eof capa psync2" */
#define HANDSHAKE_MAX_CMDS 5 /* the REPLCONF set at its longest */

/* One command as its arguments. */
struct handshake_cmd {
    int argc;
    const char *argv[HANDSHAKE_MAX_ARGC];
};

/* Commands sent in one go, each answered by one reply. argv points into the strings the
 * builder was given or into num: valid while both are. */
struct handshake_batch {
    int n;
    struct handshake_cmd cmd[HANDSHAKE_MAX_CMDS];
    char num[32]; /* a number spelled out (port, offset) */
};

/* AUTH (when password is not "": with user unless it is "") then INFO server: who the
 * upstream is decides what to announce. True if AUTH is in the batch (its reply comes first). */
bool handshake_auth_info(struct handshake_batch *b, const char *user, const char *password);

struct handshake_replconf {
    int listening_port;    /* REPLCONF listening-port */
    bool compression;      /* ask a cascade upstream for zstd as well as framing */
    const char *announced; /* REPLCONF version, "" for none (compat_announce) */
    bool rdb_only;         /* a side fetch: REPLCONF rdb-only 1 */
};
/* The REPLCONF set: listening-port, capa eof psync2 (never skip-rdb-checksum, compression or
 * rdb-channel: the snapshot is stored and served again whole and checked, and the relay speaks
 * the one-channel protocol), capa cascade-frame (and cascade-zstd), version, rdb-only. */
void handshake_replconf(struct handshake_batch *b, const struct handshake_replconf *p);

/* PSYNC <replid> <held + 1> to continue a history, or PSYNC ? -1 when replid is "". */
void handshake_psync(struct handshake_batch *b, const char *replid, int64_t held);

/* REPLCONF ACK <offset>. */
void handshake_ack(struct handshake_batch *b, int64_t offset);

/* A reply line is kept with its type marker: "+..." or "-..." (no CRLF). */

/* PING's reply lets the handshake go on: +PONG, or -NOAUTH / -NOPERM (AUTH follows); any
 * other error is fatal, as in Redis. */
bool handshake_ping_ok(const char *line, bool is_error);

/* A REPLCONF reply "+OK cascade-frame [zstd]": only cascade answers so (stock masters ignore
 * unknown capas and answer "+OK"). True if framing is offered, *zstd if compressed. */
bool handshake_frame_offered(const char *line, bool *zstd);

#define HANDSHAKE_INFO_HEAD      18          /* bytes of an INFO reply its header fits in */
#define HANDSHAKE_INFO_MAX_BYTES (64 * 1024) /* INFO server reply accepted */
/* The bulk header of INFO's reply: buf holds the first min(have, HANDSHAKE_INFO_HEAD) bytes
 * of the input, which starts with '$'; have is what the input holds in all. 1 when the whole
 * reply is in (its text is len bytes after skip, then CRLF), 0 for more input, -1 malformed. */
int handshake_info_bulk(const char *buf, size_t n, size_t have, size_t *skip, size_t *len);

/* Why a link to this upstream is refused as a loop (it is self_run_id, or follows it through
 * its cascade_chain), or NULL. self_run_id "" refuses nothing. */
const char *handshake_loop(const struct compat_identity *up, const char *self_run_id);

enum handshake_psync_reply {
    HANDSHAKE_FAILED,     /* refused or malformed: why says so */
    HANDSHAKE_FULLRESYNC, /* replid and offset of the new history; its RDB follows */
    HANDSHAKE_CONTINUE,   /* replid: the upstream's new id, "" if unchanged */
};
/* PSYNC's reply. may_continue: the link is the replication link (a side fetch takes only
 * +FULLRESYNC); asked_partial: the PSYNC named a history (else +CONTINUE is a protocol
 * error). why gets the reason on HANDSHAKE_FAILED. */
enum handshake_psync_reply handshake_psync_reply(const char *line, bool is_error, bool may_continue,
                                                 bool asked_partial,
                                                 char replid[RESP_REPLID_LEN + 1], int64_t *offset,
                                                 char *why, size_t whylen);

/*
 * A full sync the upstream ended right after +FULLRESYNC (an error instead of the RDB, or the
 * link closed before it was complete): Valkey 9 does so when the data does not fit the RDB
 * version the replica's announced version gets ("Can't store key ... in RDB version 11").
 * The reason logged and shown: why, the RDB bytes received, what was announced ("" none),
 * and the RDB's format (fmt->version 0: not reached; then, for a Valkey >= 9 upstream, the
 * RDB version it sends for what was announced).
 */
void handshake_abort_reason(char *out, size_t cap, const char *why, int64_t rdb_bytes,
                            const char *announced, const struct compat_rdb *fmt,
                            const struct compat_identity *up);

#define HANDSHAKE_ABORT_BACKOFF_MS     10000        /* after the 2nd aborted sync in a row ... */
#define HANDSHAKE_ABORT_BACKOFF_MAX_MS (10 * 60000) /* ... doubling up to this */
/* Every try costs the master a fork: the delay to wait at least after in_a_row aborted syncs
 * (0 for the first: the usual backoff). */
int64_t handshake_abort_delay_ms(int in_a_row);

#endif
