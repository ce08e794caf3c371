/*
 * snapshot: one cached RDB file and the stream position it represents (replid, offset).
 * Filled once (EMPTY -> FILLING -> READY), then read by any number of replicas, each through
 * its own file descriptor: the file may be replaced (unlinked) while transfers still read it.
 * Owns the file on disk. No I/O besides the file, no logging.
 */
#ifndef CASCADE_SNAPSHOT_H
#define CASCADE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"
#include <time.h>

#include "rdb.h"

enum snapshot_state {
    SNAPSHOT_EMPTY,   /* nothing yet */
    SNAPSHOT_FILLING, /* bytes arriving into the temp file */
    SNAPSHOT_READY,   /* complete, renamed into place, servable */
};

struct snapshot {
    enum snapshot_state state;
    char replid[RESP_REPLID_LEN + 1]; /* history the RDB belongs to */
    int64_t offset;           /* stream offset the RDB is consistent with (last byte included) */
    int64_t size;             /* bytes written so far / total when READY */
    char *path;               /* final file name in dir */
    char *tmp_path;           /* file being filled */
    int fd;                   /* write descriptor while FILLING, else -1 */
    time_t ready_time;        /* when it became READY */
    struct rdb_check check;   /* of the bytes written, while FILLING */
    enum rdb_verdict verdict; /* READY: RDB_VERIFIED or RDB_UNCHECKED (never RDB_CORRUPT) */
    struct rdb_header header; /* READY: the RDB's magic and format version */
};

const char *snapshot_state_name(enum snapshot_state s);

/* A FILLING snapshot for (replid, offset) written to a temp file under dir; tag names it. */
struct snapshot *snapshot_new(const char *dir, const char *tag, const char *replid, int64_t offset,
                              char *err, size_t errlen);

/* Removes the files it owns (temp and final) and frees. NULL is a no-op. */
void snapshot_free(struct snapshot *s);

__attribute__((warn_unused_result)) int snapshot_write(struct snapshot *s, const void *buf,
                                                       size_t len, char *err, size_t errlen);

/* Cut the last `drop` bytes (the EOF mark written through), check the RDB end to end (its
 * CRC-64 trailer), fsync, rename: READY. -1 with a message, and nothing renamed, if the bytes
 * are not a whole RDB (header, checksum): such a file is never served. */
__attribute__((warn_unused_result)) int snapshot_finish(struct snapshot *s, int64_t drop, char *err,
                                                        size_t errlen);

/* Change the offset (and replid) before finish: the RDB's own repl-offset may be known late. */
void snapshot_set_position(struct snapshot *s, const char *replid, int64_t offset);

/* A READY snapshot for an existing file `name` in dir (after a restart), read through once to
 * check it end to end. NULL with a message if the file is missing, its size differs or its
 * checksum does not match; *corrupt (if not NULL) says whether it was the checksum. */
struct snapshot *snapshot_adopt(const char *dir, const char *name, const char *replid,
                                int64_t offset, int64_t size, bool *corrupt, char *err,
                                size_t errlen);

/* Free without removing the file (the relay stops; meta still points at it). */
void snapshot_release(struct snapshot *s);

/* The file's name within dir. */
const char *snapshot_file_name(const struct snapshot *s);

/* A new read-only descriptor on a READY snapshot, or -1. */
int snapshot_open(const struct snapshot *s);

#endif
