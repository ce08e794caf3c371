/*
 * rdb: what the relay may know about an RDB file without loading it: the header (magic and
 * format version) and the CRC-64 trailer that makes the bytes verifiable end to end.
 * Redis and Valkey end every RDB of format version 5 or later with the CRC-64 (Jones,
 * reflected, no inversion) of everything before it, little-endian; zero means the writer had
 * rdbchecksum off. Beyond the header the file is opaque: Redis and Valkey reuse record numbers
 * for different things.
 * Pure functions and a small incremental checker; no I/O besides rdb_check_file, no logging.
 */
#ifndef CASCADE_RDB_H
#define CASCADE_RDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RDB_HEADER_LEN  9 /* "REDIS" + 4 digits, or "VALKEY" + 3 digits (Valkey 9+) */
#define RDB_TRAILER_LEN 8 /* CRC-64, little-endian */

/* The header's facts. */
struct rdb_header {
    bool valkey; /* "VALKEY" magic (Valkey 9+) rather than "REDIS" */
    int version; /* format version (Redis 7.0: 10, Redis 7.4: 12, Valkey 9.0: 80) */
};

/* Parse the first RDB_HEADER_LEN bytes. 0, or -1 with a message. */
int rdb_parse_header(const void *buf, size_t len, struct rdb_header *h, char *err, size_t errlen);

/* True while buf[0..len) can still be the start of an RDB header (any len, even 0). */
bool rdb_header_prefix_ok(const void *buf, size_t len);

/* CRC-64 as Redis computes it, continued from crc (0 to start). */
uint64_t rdb_crc64(uint64_t crc, const void *buf, size_t len);

enum rdb_verdict {
    RDB_VERIFIED,  /* the trailer matches the bytes */
    RDB_UNCHECKED, /* no checksum to compare (format < 5, or the writer stored zero) */
    RDB_CORRUPT,   /* bad header, too short, or the trailer does not match */
};

const char *rdb_verdict_name(enum rdb_verdict v);

/*
 * Checks an RDB fed in pieces of any size. The last bytes fed are held back from the CRC until
 * rdb_check_end says how many of them were not RDB (a diskless transfer's end mark, which is
 * written through before it is recognized).
 */
#define RDB_CHECK_HOLD 48 /* trailer + the longest mark that may follow it */
struct rdb_check {
    uint64_t crc;                       /* of the bytes before the held ones */
    int64_t total;                      /* bytes fed */
    unsigned char head[RDB_HEADER_LEN]; /* the first bytes fed */
    unsigned char held[RDB_CHECK_HOLD]; /* the last min(total, RDB_CHECK_HOLD) bytes */
    size_t held_len;
};

void rdb_check_init(struct rdb_check *c);
void rdb_check_feed(struct rdb_check *c, const void *buf, size_t len);

/* The RDB is what was fed minus its last `drop` bytes (0 <= drop <= 40). *h gets the header
 * when it parsed. err says why on RDB_CORRUPT (and what is missing on RDB_UNCHECKED). */
enum rdb_verdict rdb_check_end(const struct rdb_check *c, size_t drop, struct rdb_header *h,
                               char *err, size_t errlen);

/* Reads the file at path through a checker. RDB_CORRUPT also when it cannot be read. */
enum rdb_verdict rdb_check_file(const char *path, struct rdb_header *h, char *err, size_t errlen);

#endif
