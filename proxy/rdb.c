/*
 * rdb: header parsing and the CRC-64 check (see rdb.h). The CRC is ISA-L's (Debian's
 * libisal): its crc64_jones_refl inverts on the way in and out, Redis' does not, so each call
 * is wrapped in the two inversions that cancel ISA-L's.
 */
#include "rdb.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <isa-l/crc64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t rdb_crc64(uint64_t crc, const void *buf, size_t len)
{
    return ~crc64_jones_refl(~crc, buf, (uint64_t)len);
}

static int digits(const unsigned char *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

int rdb_parse_header(const void *buf, size_t len, struct rdb_header *h, char *err, size_t errlen)
{
    const unsigned char *p = buf;
    if (len < RDB_HEADER_LEN) {
        snprintf(err, errlen, "shorter than an RDB header (%zu bytes)", len);
        return -1;
    }
    int v;
    if (memcmp(p, "REDIS", 5) == 0) {
        h->valkey = false;
        v = digits(p + 5, 4);
    } else if (memcmp(p, "VALKEY", 6) == 0) {
        h->valkey = true;
        v = digits(p + 6, 3);
    } else {
        snprintf(err, errlen, "not an RDB (no REDIS or VALKEY magic)");
        return -1;
    }
    if (v < 1) {
        snprintf(err, errlen, "RDB header has no version number");
        return -1;
    }
    h->version = v;
    return 0;
}

bool rdb_header_prefix_ok(const void *buf, size_t len)
{
    const char *p = buf;
    size_t n = len < 6 ? len : 6;
    return memcmp(p, "REDIS", n < 5 ? n : 5) == 0 || memcmp(p, "VALKEY", n) == 0;
}

static const char *const verdict_names[] = {"verified", "unchecked", "corrupt"};

const char *rdb_verdict_name(enum rdb_verdict v)
{
    return v <= RDB_CORRUPT ? verdict_names[v] : "?";
}

void rdb_check_init(struct rdb_check *c)
{
    memset(c, 0, sizeof(*c));
}

void rdb_check_feed(struct rdb_check *c, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (c->total < RDB_HEADER_LEN) {
        size_t k = (size_t)(RDB_HEADER_LEN - c->total);
        memcpy(c->head + c->total, p, k < len ? k : len);
    }
    c->total += (int64_t)len;
    if (len >= RDB_CHECK_HOLD) {
        /* everything held, and all but the last RDB_CHECK_HOLD new bytes, go to the CRC */
        c->crc = rdb_crc64(c->crc, c->held, c->held_len);
        c->crc = rdb_crc64(c->crc, p, len - RDB_CHECK_HOLD);
        memcpy(c->held, p + len - RDB_CHECK_HOLD, RDB_CHECK_HOLD);
        c->held_len = RDB_CHECK_HOLD;
        return;
    }
    size_t over = c->held_len + len > RDB_CHECK_HOLD ? c->held_len + len - RDB_CHECK_HOLD : 0;
    c->crc = rdb_crc64(c->crc, c->held, over);
    memmove(c->held, c->held + over, c->held_len - over);
    memcpy(c->held + c->held_len - over, p, len);
    c->held_len += len - over;
}

enum rdb_verdict rdb_check_end(const struct rdb_check *c, size_t drop, struct rdb_header *h,
                               char *err, size_t errlen)
{
    if (drop > RDB_CHECK_HOLD - RDB_TRAILER_LEN || (int64_t)drop > c->total) {
        snprintf(err, errlen, "end mark longer than what was received");
        return RDB_CORRUPT;
    }
    int64_t size = c->total - (int64_t)drop;
    size_t head_len = c->total < RDB_HEADER_LEN ? (size_t)c->total : RDB_HEADER_LEN;
    struct rdb_header hd;
    if (rdb_parse_header(c->head, size < (int64_t)head_len ? (size_t)size : head_len, &hd, err,
                         errlen) != 0)
        return RDB_CORRUPT;
    if (h)
        *h = hd;
    if (hd.version < 5) {
        snprintf(err, errlen, "RDB version %d has no checksum", hd.version);
        return RDB_UNCHECKED;
    }
    /* header, at least the EOF opcode, and the trailer */
    if (size < RDB_HEADER_LEN + 1 + RDB_TRAILER_LEN) {
        snprintf(err, errlen, "RDB of %" PRId64 " bytes is too short for its checksum", size);
        return RDB_CORRUPT;
    }
    size_t keep = c->held_len - drop; /* held bytes that are RDB; >= 8 as size >= 18 */
    const unsigned char *t = c->held + keep - RDB_TRAILER_LEN;
    uint64_t want = 0;
    for (int i = 7; i >= 0; i--)
        want = want << 8 | t[i];
    uint64_t got = rdb_crc64(c->crc, c->held, keep - RDB_TRAILER_LEN);
    if (want == 0) {
        snprintf(err, errlen, "the RDB was written without a checksum");
        return RDB_UNCHECKED;
    }
    if (want != got) {
        snprintf(err, errlen,
                 "RDB checksum mismatch over %" PRId64 " bytes: trailer %016" PRIx64
                 ", content %016" PRIx64,
                 size, want, got);
        return RDB_CORRUPT;
    }
    return RDB_VERIFIED;
}

enum rdb_verdict rdb_check_file(const char *path, struct rdb_header *h, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return RDB_CORRUPT;
    }
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        abort();
    struct rdb_check c;
    rdb_check_init(&c);
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "read %s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return RDB_CORRUPT;
        }
        if (n == 0)
            break;
        rdb_check_feed(&c, buf, (size_t)n);
    }
    free(buf);
    close(fd);
    return rdb_check_end(&c, 0, h, err, errlen);
}
