/*
 * store_meta: the disk log's meta file, `<dir>/meta`: the history (replid, replid2,
 * second_replid_offset), the cached snapshot's file and position, and the log's range when it
 * was written. Text, one "key value" line each, every key exactly once; version 2 ends with a
 * "crc32c <hex>" line over every byte before it (version 1, without it, is still read: the
 * upgrade path, never written).
 * Owns the format (store_meta_format / store_meta_parse, pure) and the file: reading it,
 * rewriting it atomically (tmp file, fsync, rename, fsync of the directory) and setting a bad
 * one aside as meta.bad-<unix time>. Runs on the caller's thread and blocks it on the disk for
 * those few small reads, writes and fsyncs. Must not know the log's segments (store.c passes
 * the range), log, or use libevent: errors come back as text.
 */
#ifndef CASCADE_STORE_META_H
#define CASCADE_STORE_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"

#define STORE_META_NAME "meta" /* the file's name in the store's directory */

/* What meta holds besides the offsets (those are derived from the segments). */
struct store_meta {
    char replid[RESP_REPLID_LEN + 1];  /* history id, "" if none */
    char replid2[RESP_REPLID_LEN + 1]; /* previous id */
    int64_t second_replid_offset;      /* -1 if none */
    char snapshot_file[256];           /* file name in dir, "" if none */
    char snapshot_replid[RESP_REPLID_LEN + 1];
    int64_t snapshot_offset;
    int64_t snapshot_size;
    int64_t log_end; /* read back only: last offset held when meta was written */
    int version;     /* read back only: 2 (checksummed), or 1 (written before checksums) */
};

/* meta's text: version 2 ends with "crc32c <hex>" over every byte before that line. */
#define STORE_META_MAX 4096
/* Formats m (with log_start/log_end) as a version-2 meta file. Returns its length. */
size_t store_meta_format(const struct store_meta *m, int64_t log_start, int64_t log_end, char *out,
                         size_t outlen);
/* Parses a meta file (version 2, or 1 without a checksum: the upgrade path). 0, or -1 with
 * why (bad checksum, torn, unknown or missing key, a value out of range). */
int store_meta_parse(const char *text, size_t len, struct store_meta *m, char *why, size_t whylen);

/* Reads dir/meta into m: 0 (read, or *has false if there is none), 1 (not a valid meta: why,
 * the file left as it is), -1 (an I/O error: err). */
int store_meta_read(const char *dir, struct store_meta *m, bool *has, char *why, size_t whylen,
                    char *err, size_t errlen);

/* Rewrites dir/meta atomically as m with the log's range [log_start, log_end]: written to
 * meta.tmp and fsynced, renamed over meta, the directory fsynced. 0, or -1 with err. */
int store_meta_write(const char *dir, const struct store_meta *m, int64_t log_start,
                     int64_t log_end, char *err, size_t errlen);

/* Renames dir/meta to meta.bad-<unix time> (or meta.bad-<unix time>-<n> when that exists) and
 * fsyncs the directory; *aside gets the new name. 0, or -1 with err. */
int store_meta_set_aside(const char *dir, char *aside, size_t n, char *err, size_t errlen);

#endif
