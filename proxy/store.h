/*
 * store: the relay's on-disk state in `dir`.
 *   - meta: the history (replid, replid2, second_replid_offset) and the snapshot's file and
 *     position; rewritten atomically (tmp file, fsync, rename). Its format and file are
 *     store_meta.h's; the store reads it at store_open and writes it with the log's range.
 *   - log segments: the raw stream, one file per segment named by its first offset
 *     (log-<offset>.seg), each with an index (log-<offset>.idx) of one record per write:
 *     start, length and CRC-32C of the bytes. Recovery keeps only whole, verified writes of
 *     the last segment; every byte handed out for reading (store_locate) was checked against
 *     its index record first (once per process, remembered per segment), so the relay never
 *     serves bytes it cannot prove it has. A range that fails is cut from the history with
 *     every segment before it. A new segment starts only at a command boundary, so the
 *     framing of the stream is known at every segment's start.
 * Owns its files and descriptors, and its writer (writer.h: the only threads). Every function
 * here runs on the caller's thread (the loop thread). No libevent, no logging: errors come back
 * as text, and what the store drops on its own (recovery, a failed check) is reported through
 * params.report. CRC-32C is crc32c.h's, the checks of bytes against their index records
 * segcheck.h's.
 *
 * Where the caller blocks on the disk, with a writer running (writer.h says for how long at
 * most): store_append and store_sync while the writer's queue is full; store_write_meta,
 * store_trim (when it deletes), store_reset, store_restart, store_discard_meta, store_close,
 * and a read whose check cuts segments (store_locate, store_read, store_verify), until the
 * queue ran. Without one, every write is done at once, on the caller's thread.
 */
#ifndef CASCADE_STORE_H
#define CASCADE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>
#include <time.h>

#include "store_meta.h"

/* What the store tells its owner, as one line of text to log. */
enum store_event {
    STORE_EVENT_RECOVERY, /* store_open dropped or cut bytes, or set a bad meta aside */
    STORE_EVENT_CUT,      /* bytes failed their check when read: cut from the history */
    STORE_EVENT_DROPPED,  /* store_restart / store_discard_meta dropped the log */
};

struct store_params {
    const char *dir;
    int64_t segment_bytes;    /* rotate past this size (at the next command boundary) */
    int64_t retain_bytes;     /* delete old segments past this total ... */
    int64_t retain_age_s;     /* ... or older than this (0 = no age limit) ... */
    int64_t retain_min_bytes; /* ... but always keep this much */
    bool direct;              /* the writer thread writes whole pages with O_DIRECT */
    /* Optional: told what the store dropped on its own (called on the caller's thread, from
     * store_open, store_locate, store_read, store_verify, store_restart, store_discard_meta;
     * the store is consistent again when it is called). */
    void (*report)(void *ctx, enum store_event ev, const char *text);
    void *report_ctx;
};

struct store;

/* Open dir, recover the log (cutting torn tails), read meta (*has_meta false if absent). A
 * meta that does not parse (torn, garbage, bad checksum) is renamed meta.bad-<unix time>,
 * kept for a human, and reported: the store opens as without one (its segments dropped).
 * Returns NULL with a message on an unrecoverable error (a directory it cannot read). */
struct store *store_open(const struct store_params *p, struct store_meta *meta, bool *has_meta,
                         char *err, size_t errlen);
void store_close(struct store *s);
void store_set_retention(struct store *s, const struct store_params *p);

/* Forget every segment: the next byte appended has offset `next` (a new history). Waits for
 * the writer's queue to run first (blocks: see the top). */
__attribute__((warn_unused_result)) int store_reset(struct store *s, int64_t next, char *err,
                                                    size_t errlen);

/* After a write error (waits for the writer's queue first: blocks, see the top): forget every
 * segment (reported) and the writer's failure; `next` is
 * the stream's position, not known to be a command boundary: appends skip bytes up to the
 * first boundary they hold, where the log starts again. */
__attribute__((warn_unused_result)) int store_restart(struct store *s, int64_t next, char *err,
                                                      size_t errlen);

/* meta disagrees with what it describes: rename it meta.bad-<unix time> (kept for a human),
 * forget every segment (both reported with why); the next byte appended has offset 1. */
__attribute__((warn_unused_result)) int store_discard_meta(struct store *s, const char *why,
                                                           char *err, size_t errlen);

/* True while the log waits for a command boundary to start again at (store_restart, or the
 * active segment was cut). */
bool store_waiting_boundary(const struct store *s);

/* One run of stream bytes to append; token: see store_append. */
struct store_piece {
    const void *buf;
    size_t len;
    void *token;
};

#define STORE_MAX_PIECES 32

/*
 * Append stream bytes: the pieces, in order (at most STORE_MAX_PIECES, 4 GB in all), with one
 * write and one index record when written at once. boundary: a position in these bytes (0 =
 * before the first) between two commands, -1 if none; a segment starts only at a boundary, so
 * a full segment ends there, and the first segment needs 0. Returns 0 once the bytes are written,
 * or -1 (nothing is held then). With a writer running (below), a bulk append, or any append while
 * others are queued, is queued instead: it returns 1, each piece's buf must stay valid and
 * unchanged until its token comes back through the writer's done callback. (Small appends are
 * cheaper written at once than handed over.)
 */
__attribute__((warn_unused_result)) int store_append(struct store *s,
                                                     const struct store_piece *pieces, int n,
                                                     int64_t boundary, bool bulk, char *err,
                                                     size_t errlen);

/*
 * Move the log's writes to background threads (writer.h): the stream is checksummed and written
 * (whole pages with O_DIRECT when params.direct, else through the page cache) off the caller's
 * thread, in batches, for bulk appends; one thread prepares a batch while the other writes the one
 * before. Others, while nothing is queued, are still written at once. *notify_fd becomes
 * readable when queued appends completed: then call store_collect, which calls done(ctx,
 * token) for each of them, oldest first, on the caller's thread. Only the threads' own state
 * and the descriptors of queued jobs are shared; every other call waits for the queue as
 * needed.
 */
__attribute__((warn_unused_result)) int store_start_writer(struct store *s,
                                                           void (*done)(void *ctx, void *token),
                                                           void *ctx, int *notify_fd, char *err,
                                                           size_t errlen);

/* Hand back completed appends' tokens. -1 (once) if the writer failed: the log has a hole
 * from then on, and appends fail until store_reset. */
__attribute__((warn_unused_result)) int store_collect(struct store *s, char *err, size_t errlen);

/* True while the writer sends bulk writes' whole pages with O_DIRECT (params.direct, a
 * writer running, and no write refused it yet). */
bool store_direct_io(const struct store *s);

/* Last byte written to the log (queued bytes are not): what a reader of the log may read. */
int64_t store_durable_end(const struct store *s);

/* fsync the active segment and its index (queued behind the writes, with a writer). */
__attribute__((warn_unused_result)) int store_sync(struct store *s, char *err, size_t errlen);

/* Rewrites meta atomically, after waiting for the writer's queue (its log_end must be on
 * disk: blocks, see the top), with two fsyncs of its own. */
__attribute__((warn_unused_result)) int
store_write_meta(struct store *s, const struct store_meta *m, char *err, size_t errlen);

int64_t store_start(const struct store *s); /* first byte held; end + 1 when empty */
int64_t store_end(const struct store *s);   /* last byte held */
int64_t store_bytes(const struct store *s); /* bytes on disk in segments */
size_t store_segments(const struct store *s);
/* Offset where the last segment starts: a command boundary (for rebuilding the framing). */
int64_t store_last_segment_start(const struct store *s);

/*
 * Where offset lives: a descriptor (owned by the store; dup it to keep it), the position in
 * that file and the bytes available there, all of them verified against their index records
 * (checked here on first use, at least STORE_VERIFY_AHEAD bytes at a time, and remembered).
 * 0, or -1 if offset is not held: never written, not yet written, or its bytes failed the
 * check, in which case every segment up to and including the bad one was cut (reported).
 */
#define STORE_VERIFY_AHEAD (4 << 20)
int store_locate(struct store *s, int64_t offset, int *fd, off_t *pos, int64_t *avail);

/* True if offset is held and the bytes from there verify (as store_locate). */
bool store_verify(struct store *s, int64_t offset);

/* Read len bytes from offset (recovery and tests), verified as store_locate. 0 or -1. */
int store_read(struct store *s, int64_t offset, void *buf, size_t len);

/* Apply retention, never deleting a segment holding offsets >= keep_from. Returns the number
 * of segments deleted. Before deleting, waits for the writer's queue (blocks: see the top). */
int store_trim(struct store *s, int64_t keep_from, time_t now);

#endif
