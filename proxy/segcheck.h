/*
 * segcheck: the checks of a disk-log segment's bytes against its index records (the store's
 * on-disk format, writer.h's struct index_record: one record per write, start, length and
 * CRC-32C), and what of a segment passed, so that each byte is checked once per process.
 *   - segcheck_record: does one record vouch for its bytes (in sequence, inside the segment,
 *     the checksum matches what the file gives back);
 *   - segcheck_ahead: the lazy check of a range before it is handed out, from the record
 *     holding an offset on, a bounded number of bytes at a time;
 *   - struct segcheck: the verified runs of one segment, sorted and merged.
 * Owns the runs' memory. Reads the files the caller names (their descriptors and paths stay
 * the caller's), on the caller's thread, which it blocks for the reads (at most `ahead` bytes
 * plus one record). Must not write, cut or delete anything (the store decides what a failed
 * check costs), log, or use libevent.
 */
#ifndef CASCADE_SEGCHECK_H
#define CASCADE_SEGCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "writer.h"

#define SEGCHECK_CHUNK (1 << 20) /* the scratch buffer a check reads through */

/* Stream offsets [a, b) whose bytes matched their index records. */
struct segcheck_run {
    int64_t a, b;
};

/* The verified runs of one segment: embedded (zeroed to start), segcheck_deinit to free. */
struct segcheck {
    struct segcheck_run *runs; /* sorted, disjoint, not touching; whole records */
    size_t n, cap;
};

/* A segment's data file as the checks read it. */
struct segcheck_file {
    int fd;        /* the data file, readable */
    int64_t start; /* stream offset of its first byte */
    int64_t len;   /* bytes it holds */
};

/* A failed check: the range cut from the history and why. */
struct segcheck_bad {
    int64_t a, b; /* [a, b) */
    char why[256];
};

/* Frees the runs: nothing is verified any more. */
void segcheck_deinit(struct segcheck *c);

/* End of the verified run holding off, or off if none. */
int64_t segcheck_end(const struct segcheck *c, int64_t off);

/* Remembers [a, b) as verified, merging runs that touch. */
void segcheck_add(struct segcheck *c, int64_t a, int64_t b);

/* Why record rec, expected to start at `at`, does not vouch for its bytes in f, or NULL if it
 * does. buf: a SEGCHECK_CHUNK scratch buffer. */
const char *segcheck_record(const struct segcheck_file *f, const struct index_record *rec,
                            int64_t at, char *buf);

/*
 * Checks f's index records (the index file at idx_path) from the one holding offset on, at
 * least `ahead` bytes of them, up to limit (the last readable byte + 1), and adds what matched
 * to c. 0 (offset is verified now, or its write is not all readable yet), or -1 with the
 * range that failed and why in *bad.
 */
int segcheck_ahead(struct segcheck *c, const struct segcheck_file *f, const char *idx_path,
                   int64_t offset, int64_t limit, int64_t ahead, struct segcheck_bad *bad);

#endif
