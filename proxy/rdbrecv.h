/*
 * rdbrecv: the receiving end of one RDB transfer from a master. It reads the preamble
 * ("$<len>" or "$EOF:<mark>"), writes the payload into a FILLING snapshot (the end found by
 * the size or by the mark, the magic checked on the first bytes, the writer's version taken
 * from the aux fields when nothing else told it), finishes the file (its CRC-64 checked by
 * snapshot_finish), and probes the bytes after a diskless RDB without a checksum: such an RDB
 * cannot prove that its end mark was the real end (a value holding the mark would cut it
 * short), so it is kept only once what follows frames as commands.
 * Owns the snapshot while it fills. Bytes in, status and message out: no sockets, no
 * libevent, no logging (upstream.c reads the link, logs and reports).
 */
#ifndef CASCADE_RDBRECV_H
#define CASCADE_RDBRECV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "compat.h"
#include "resp.h"
#include "snapshot.h"

#define RDBRECV_PROBE_MAX_BYTES (64 * 1024 * 1024) /* stream held back at most while probing */

/* One transfer; zeroed (or after rdbrecv_abort) it receives nothing. */
struct rdbrecv {
    struct snapshot *snap;       /* owned while receiving and probing, else NULL */
    bool eof_format;             /* diskless: delimited by the end mark */
    int64_t size;                /* payload bytes expected ($len), -1 for the EOF format */
    int64_t got;                 /* payload bytes received (the end mark included) */
    bool done;                   /* the last payload byte arrived: rdbrecv_finish */
    int64_t drop;                /* done: bytes of the end mark written through */
    struct resp_eofmark eof;     /* the end mark's scanner (EOF format) */
    char head[COMPAT_MAGIC_LEN]; /* the RDB's first bytes */
    struct compat_rdb fmt;       /* their format, version 0 until they arrived */
    bool probing;                /* finished, unchecked: the bytes after it are probed */
    struct resp_stream probe;    /* probing: the framing of the bytes after the RDB ... */
    size_t probed;               /* ... scanned so far (the caller keeps them) */
};

/* The preamble line (without CRLF). 0, or -1 with a message quoting it. */
int rdbrecv_preamble(const char *line, size_t len, struct resp_rdb_preamble *pre, char *err,
                     size_t errlen);

/* Start receiving what pre announces into a new snapshot for (replid, offset), a temp file
 * under dir named after tag. 0, or -1 with a message (nothing changed then). */
int rdbrecv_begin(struct rdbrecv *r, const struct resp_rdb_preamble *pre, const char *dir,
                  const char *tag, const char *replid, int64_t offset, char *err, size_t errlen);

/*
 * The next bytes of the transfer, buf[0..len): returns how many of them were the RDB's
 * (fewer than len only when the end came inside; the rest is the stream's), r->done then
 * set; or -1 with a message when the payload is not an RDB or the file cannot be written.
 * If up knows no server yet (COMPAT_UNKNOWN) and the RDB's first piece names its writer,
 * up is filled from it and *learned set.
 */
ssize_t rdbrecv_feed(struct rdbrecv *r, const char *buf, size_t len, struct compat_identity *up,
                     bool *learned, char *err, size_t errlen);

/* The last byte arrived: check and rename the file (READY). -1 with a message if it is not a
 * whole RDB (it is never served). probe: a diskless RDB that carries no checksum is held
 * back (r->probing) until rdbrecv_probe decides. */
int rdbrecv_finish(struct rdbrecv *r, bool probe, char *err, size_t errlen);

/* Probing: how many more bytes after the RDB the probe can take (0: decided, keep it). */
size_t rdbrecv_probe_want(const struct rdbrecv *r);
/* Probing: the bytes after the RDB from position r->probed on, in order. 0, or -1 with a
 * message when they are not commands (the RDB is discarded). The bytes are not consumed. */
int rdbrecv_probe(struct rdbrecv *r, const char *buf, size_t len, char *err, size_t errlen);

/* The snapshot being filled (not while probing), or NULL. */
const struct snapshot *rdbrecv_filling(const struct rdbrecv *r);

/* Bytes of the filling snapshot that are surely RDB payload, the most a replica may be
 * streamed: in the EOF format the last RESP_EOFMARK_LEN - 1 bytes written may be the start of
 * the end mark (it completes in a later read and is cut from the file then). */
int64_t rdbrecv_servable(const struct rdbrecv *r);
/* The finished (READY) snapshot, its ownership passed to the caller. */
struct snapshot *rdbrecv_take(struct rdbrecv *r);
/* Drop the transfer (the link failed): the file is removed. The counts stay readable. */
void rdbrecv_abort(struct rdbrecv *r);

#endif
