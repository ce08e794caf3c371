/*
 * rdbinfo: see rdbinfo.h. The RDB string encoding, as Redis writes it: a length prefix whose
 * top two bits say 6-bit, 14-bit, 32/64-bit big-endian lengths, or a special encoding
 * (integers of 8, 16, 32 bits little-endian, or an LZF-compressed string: compressed length,
 * original length, bytes). Aux values that are integers (repl-offset, ctime, ...) are written
 * as such where they fit 32 bits and as decimal strings otherwise.
 */
#include "rdbinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OP_AUX   0xFA
#define VAL_KEEP 64 /* value bytes kept for inspection; longer ones are only skipped */

struct cursor {
    const unsigned char *p;
    size_t len, at;
};

/* A decoded string: its first bytes (up to VAL_KEEP), its length, and whether it was an
 * integer encoding or LZF (then text holds no usable bytes). */
struct rstr {
    char text[VAL_KEEP + 1];
    uint64_t len;
    bool lzf;
};

/* 1: got n bytes; 0: short. */
static int take(struct cursor *c, size_t n, const unsigned char **out)
{
    if (c->len - c->at < n)
        return 0;
    *out = c->p + c->at;
    c->at += n;
    return 1;
}

/* A length: 1 ok, 0 short, -1 bad; *special: the low six bits of a special encoding. */
static int read_len(struct cursor *c, uint64_t *len, int *special)
{
    const unsigned char *b;
    *special = -1;
    if (!take(c, 1, &b))
        return 0;
    switch (b[0] >> 6) {
    case 0:
        *len = b[0] & 0x3F;
        return 1;
    case 1: {
        const unsigned char *b2;
        if (!take(c, 1, &b2))
            return 0;
        *len = (uint64_t)(b[0] & 0x3F) << 8 | b2[0];
        return 1;
    }
    case 2: {
        size_t n = b[0] == 0x80 ? 4 : b[0] == 0x81 ? 8 : 0;
        const unsigned char *q;
        if (n == 0)
            return -1;
        if (!take(c, n, &q))
            return 0;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
            v = v << 8 | q[i];
        *len = v;
        return 1;
    }
    default:
        *special = b[0] & 0x3F;
        *len = 0;
        return 1;
    }
}

/* A string: 1 ok, 0 short, -1 bad. */
static int read_str(struct cursor *c, struct rstr *s, char *err, size_t errlen)
{
    uint64_t len;
    int special;
    int rc = read_len(c, &len, &special);
    if (rc <= 0) {
        if (rc < 0)
            snprintf(err, errlen, "bad length encoding at byte %zu", c->at - 1);
        return rc;
    }
    memset(s, 0, sizeof(*s));
    if (special >= 0 && special <= 2) {
        size_t n = (size_t)1 << special; /* 1, 2 or 4 bytes, little-endian, signed */
        const unsigned char *q;
        if (!take(c, n, &q))
            return 0;
        uint32_t u = 0;
        for (size_t i = n; i-- > 0;)
            u = u << 8 | q[i];
        int64_t v = n == 1 ? (int8_t)u : n == 2 ? (int16_t)u : (int32_t)u;
        s->len = (uint64_t)snprintf(s->text, sizeof(s->text), "%" PRId64, v);
        return 1;
    }
    if (special == 3) { /* LZF: compressed length, original length, the compressed bytes */
        uint64_t clen, ulen;
        int sp1, sp2;
        if ((rc = read_len(c, &clen, &sp1)) <= 0 || (rc = read_len(c, &ulen, &sp2)) <= 0) {
            if (rc < 0)
                snprintf(err, errlen, "bad LZF length at byte %zu", c->at);
            return rc;
        }
        if (sp1 >= 0 || sp2 >= 0) {
            snprintf(err, errlen, "bad LZF length at byte %zu", c->at);
            return -1;
        }
        const unsigned char *q;
        if (clen > c->len || !take(c, (size_t)clen, &q))
            return 0;
        s->len = ulen;
        s->lzf = true;
        return 1;
    }
    if (special >= 0) {
        snprintf(err, errlen, "unknown string encoding %d at byte %zu", special, c->at - 1);
        return -1;
    }
    const unsigned char *q;
    if (len > c->len || !take(c, (size_t)len, &q))
        return 0;
    size_t keep = len < VAL_KEEP ? (size_t)len : VAL_KEEP;
    memcpy(s->text, q, keep);
    s->text[keep] = '\0';
    s->len = len;
    return 1;
}

static bool plain_int(const struct rstr *v, int64_t *out)
{
    if (v->lzf || v->len == 0 || v->len > 20 || strlen(v->text) != v->len)
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v->text, &end, 10);
    if (errno || *end || v->text[0] == '+' || v->text[0] == ' ')
        return false;
    *out = x;
    return true;
}

static bool header(const unsigned char *p, size_t len, int *version)
{
    /* "REDIS" + 4 digits, or "VALKEY" + 3 digits (Valkey 9+): 9 bytes either way. */
    size_t m = len >= 6 && memcmp(p, "VALKEY", 6) == 0 ? 6 : 5;
    if (m == 5 && memcmp(p, "REDIS", 5) != 0)
        return false;
    int v = 0;
    for (size_t i = m; i < 9; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *version = v;
    return true;
}

/* True while p[0..len) (len < 9) can still begin a header. */
static bool header_prefix(const unsigned char *p, size_t len)
{
    static const char *const magic[] = {"REDIS", "VALKEY"};
    for (int m = 0; m < 2; m++) {
        size_t ml = strlen(magic[m]), i = 0;
        while (i < len && i < ml && p[i] == (unsigned char)magic[m][i])
            i++;
        while (i < len && i >= ml && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == len)
            return true;
    }
    return false;
}

enum rdbinfo_result rdbinfo_parse(const void *buf, size_t len, struct rdbinfo *out, char *err,
                                  size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct cursor c = {.p = buf, .len = len, .at = 0};
    if (len < 9 && header_prefix(buf, len))
        return RDBINFO_SHORT;
    if (len < 9 || !header(buf, len, &out->version)) {
        snprintf(err, errlen, "not an RDB header");
        return RDBINFO_BAD;
    }
    c.at = 9;
    for (;;) {
        const unsigned char *op;
        if (!take(&c, 1, &op))
            return RDBINFO_SHORT;
        if (op[0] != OP_AUX)
            return RDBINFO_OK;
        struct rstr key, val;
        int rc = read_str(&c, &key, err, errlen);
        if (rc > 0)
            rc = read_str(&c, &val, err, errlen);
        if (rc == 0)
            return RDBINFO_SHORT;
        if (rc < 0)
            return RDBINFO_BAD;
        out->aux_count++;
        if (key.lzf)
            continue;
        if (strcmp(key.text, "repl-offset") == 0 && key.len == 11) {
            out->has_repl_offset = plain_int(&val, &out->repl_offset);
        } else if (strcmp(key.text, "repl-id") == 0 && key.len == 7 && !val.lzf &&
                   val.len == RESP_REPLID_LEN && strlen(val.text) == RESP_REPLID_LEN) {
            memcpy(out->repl_id, val.text, RESP_REPLID_LEN + 1);
            out->has_repl_id = true;
        }
    }
}

enum rdbinfo_result rdbinfo_read_file(const char *path, struct rdbinfo *out, char *err,
                                      size_t errlen)
{
    memset(out, 0, sizeof(*out));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return RDBINFO_BAD;
    }
    unsigned char *buf = malloc(RDBINFO_READ_MAX);
    if (!buf)
        abort();
    size_t n = 0;
    ssize_t got = 1;
    while (n < RDBINFO_READ_MAX && (got = read(fd, buf + n, RDBINFO_READ_MAX - n)) > 0)
        n += (size_t)got;
    close(fd);
    enum rdbinfo_result rc;
    if (got < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        rc = RDBINFO_BAD;
    } else {
        rc = rdbinfo_parse(buf, n, out, err, errlen);
    }
    free(buf);
    return rc;
}
