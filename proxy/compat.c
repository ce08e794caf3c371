/*
 * compat: RDB formats, server versions and the leaves held off. See compat.h.
 * Pure: everything here is a function of its arguments (unit-tested in test_compat.c).
 */
#include "compat.h"

#include "rdb.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define V(a, b, c) ((a) << 16 | (b) << 8 | (c))

const char *compat_server_name(enum compat_server s)
{
    switch (s) {
    case COMPAT_REDIS:
        return "redis";
    case COMPAT_VALKEY:
        return "valkey";
    case COMPAT_UNKNOWN:
        break;
    }
    return "unknown";
}

int compat_version_parse(const char *s, size_t len)
{
    int part[3] = {0, 0, 0}, np = 0;
    size_t i = 0;
    while (np < 3) {
        if (i >= len || !isdigit((unsigned char)s[i]))
            return -1;
        int v = 0;
        for (; i < len && isdigit((unsigned char)s[i]); i++) {
            v = v * 10 + (s[i] - '0');
            if (v > 255)
                return -1;
        }
        part[np++] = v;
        if (i == len)
            break;
        if (s[i] != '.' || np == 3)
            return -1;
        i++;
    }
    if (np < 2 || i != len)
        return -1;
    return V(part[0], part[1], part[2]);
}

void compat_version_format(int v, char *out, size_t len)
{
    snprintf(out, len, "%d.%d.%d", (v >> 16) & 255, (v >> 8) & 255, v & 255);
}

void compat_leaf_desc(const struct compat_leaf *l, char *out, size_t len)
{
    char v[16];
    compat_version_format(l->version, v, sizeof(v));
    if (l->server == COMPAT_UNKNOWN || !l->version)
        snprintf(out, len, "version not announced");
    else
        snprintf(out, len, "%s %s%s", compat_server_name(l->server), l->exact ? "" : ">= ", v);
}

void compat_rdb_desc(const struct compat_rdb *f, char *out, size_t len)
{
    snprintf(out, len, "RDB version %d (%s magic)", f->version,
             f->valkey_magic ? "VALKEY" : "REDIS");
}

int compat_rdb_parse(const void *buf, size_t n, struct compat_rdb *out)
{
    /* The header itself is rdb.c's: "REDIS" + 4 digits (Redis writes REDIS%04d, Valkey
     * REDIS0%03d) or "VALKEY" + 3 digits (Valkey >= 9, rdbUseValkeyMagic). */
    if (!rdb_header_prefix_ok(buf, n < RDB_HEADER_LEN ? n : RDB_HEADER_LEN))
        return -1;
    if (n < RDB_HEADER_LEN)
        return 0;
    struct rdb_header h;
    char err[80];
    if (rdb_parse_header(buf, RDB_HEADER_LEN, &h, err, sizeof(err)) != 0)
        return -1;
    out->version = h.version;
    out->valkey_magic = h.valkey;
    return 1;
}

/* An RDB length at b[*i] into *len; *special gets the encoding of a special string
 * (-1 for a plain length). -1 if it does not fit in n. */
static int rdb_len(const unsigned char *b, size_t n, size_t *i, uint64_t *len, int *special)
{
    if (*i >= n)
        return -1;
    unsigned char c = b[(*i)++];
    *special = -1;
    switch (c >> 6) {
    case 0:
        *len = c & 0x3F;
        return 0;
    case 1:
        if (*i >= n)
            return -1;
        *len = (uint64_t)(c & 0x3F) << 8 | b[(*i)++];
        return 0;
    case 2: {
        size_t w = c == 0x80 ? 4 : c == 0x81 ? 8 : 0;
        if (!w || *i + w > n)
            return -1;
        *len = 0;
        for (size_t k = 0; k < w; k++)
            *len = *len << 8 | b[(*i)++];
        return 0;
    }
    default:
        *special = c & 0x3F;
        *len = 0;
        return 0;
    }
}

/* An RDB string at b[*i]: *s and *slen for a plain one, *s NULL for an integer or an LZF one
 * (skipped). -1 if it does not fit in n or is malformed. */
static int rdb_string(const unsigned char *b, size_t n, size_t *i, const char **s, size_t *slen)
{
    uint64_t len;
    int special;
    *s = NULL;
    *slen = 0;
    if (rdb_len(b, n, i, &len, &special) != 0)
        return -1;
    if (special >= 0 && special <= 2) { /* an integer of 1, 2 or 4 bytes */
        size_t w = (size_t)1 << special;
        if (w > n - *i)
            return -1;
        *i += w;
        return 0;
    }
    if (special == 3) { /* LZF: compressed length, plain length, compressed bytes */
        uint64_t clen, ulen;
        int sp1, sp2;
        if (rdb_len(b, n, i, &clen, &sp1) != 0 || rdb_len(b, n, i, &ulen, &sp2) != 0 || sp1 >= 0 ||
            sp2 >= 0 || clen > n - *i)
            return -1;
        *i += (size_t)clen;
        return 0;
    }
    if (special >= 0 || len > n - *i)
        return -1;
    *s = (const char *)b + *i;
    *slen = (size_t)len;
    *i += (size_t)len;
    return 0;
}

int compat_rdb_writer(const void *buf, size_t n, enum compat_server *server, int *version)
{
    const unsigned char *b = buf;
    struct compat_rdb f;
    if (compat_rdb_parse(buf, n, &f) != 1)
        return 0;
    int found = 0;
    size_t i = COMPAT_MAGIC_LEN;
    /* Aux fields (opcode 0xFA, then a key and a value string) come first in every RDB. */
    while (i < n && b[i] == 0xFA) {
        i++;
        const char *k, *v;
        size_t kl, vl;
        if (rdb_string(b, n, &i, &k, &kl) != 0 || rdb_string(b, n, &i, &v, &vl) != 0)
            break;
        if (!k || !v)
            continue;
        bool valkey = kl == 10 && memcmp(k, "valkey-ver", 10) == 0;
        bool redis = kl == 9 && memcmp(k, "redis-ver", 9) == 0;
        int ver = (valkey || redis) ? compat_version_parse(v, vl) : -1;
        if (ver < 0)
            continue;
        /* Valkey's own version wins over a compatibility redis-ver. */
        if (valkey || found == 0 || *server != COMPAT_VALKEY) {
            *server = valkey ? COMPAT_VALKEY : COMPAT_REDIS;
            *version = ver;
            found = 1;
        }
    }
    return found;
}

/*
 * THE table of what each server loads (checked in their rdb.h RDB_VERSION and rdb.c load
 * checks; Redis 8.6/8.8 and Valkey 9.2 from their release notes as recorded in PROTOCOL.md).
 * Rows are "from this version on", newest first.
 */
int compat_max_rdb(enum compat_server server, int version, bool valkey_magic)
{
    static const struct {
        int from, rdb;
    } redis[] = {
        {V(8, 8, 0), 14}, {V(8, 6, 0), 13}, {V(7, 4, 0), 12}, {V(7, 2, 0), 11}, {V(7, 0, 0), 10},
        {V(5, 0, 0), 9},  {V(4, 0, 0), 8},  {V(3, 2, 0), 7},  {V(2, 6, 0), 6},
    };
    static const struct {
        int from, rdb_redis, rdb_valkey;
    } valkey[] = {
        /* Valkey >= 9 loads the old REDIS0011 and its own VALKEY0nn; never Redis' 12-79. */
        {V(9, 2, 0), 11, 81},
        {V(9, 0, 0), 11, 80},
        {V(7, 2, 0), 11, 0},
    };
    if (server == COMPAT_REDIS) {
        if (valkey_magic)
            return 0; /* Redis checks for "REDIS" only */
        for (size_t i = 0; i < sizeof(redis) / sizeof(redis[0]); i++)
            if (version >= redis[i].from)
                return redis[i].rdb;
        return 0;
    }
    if (server == COMPAT_VALKEY) {
        for (size_t i = 0; i < sizeof(valkey) / sizeof(valkey[0]); i++)
            if (version >= valkey[i].from)
                return valkey_magic ? valkey[i].rdb_valkey : valkey[i].rdb_redis;
        return 0;
    }
    return 0;
}

const char *compat_verdict_name(enum compat_verdict v)
{
    return v == COMPAT_LOADS ? "loads" : v == COMPAT_CANNOT ? "cannot" : "unknown";
}

enum compat_verdict compat_check(const struct compat_leaf *leaf, const struct compat_rdb *rdb)
{
    if (rdb->version <= 0)
        return COMPAT_UNSURE;
    if (leaf->server == COMPAT_UNKNOWN || leaf->version <= 0) {
        /* It announced nothing: Redis 7.0 to 7.4, Valkey 7.2 (older servers are past their
         * end of life and taken to be at least Redis 7.0). None of those load the VALKEY magic
         * (every Valkey >= 8 announces its version); all of them load RDB 10. */
        if (rdb->valkey_magic)
            return COMPAT_CANNOT;
        return rdb->version <= 10 ? COMPAT_LOADS : COMPAT_UNSURE;
    }
    int max = compat_max_rdb(leaf->server, leaf->version, rdb->valkey_magic);
    if (rdb->version <= max)
        return COMPAT_LOADS;
    if (leaf->exact)
        return COMPAT_CANNOT;
    /* A lower bound: a newer leaf of that kind may load it, unless none ever does. */
    if (compat_max_rdb(leaf->server, V(255, 255, 255), rdb->valkey_magic) == 0)
        return COMPAT_CANNOT;
    return COMPAT_UNSURE;
}

/* The value of "field:" in INFO text, into out. True if present. */
static bool info_field(const char *info, size_t len, const char *field, char *out, size_t cap)
{
    size_t fl = strlen(field);
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && info[e] != '\n')
            e++;
        size_t l = e - i;
        if (l > 0 && info[i + l - 1] == '\r')
            l--;
        if (l > fl && memcmp(info + i, field, fl) == 0 && info[i + fl] == ':') {
            size_t vl = l - fl - 1;
            if (vl >= cap)
                vl = cap - 1;
            memcpy(out, info + i + fl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        i = e + 1;
    }
    return false;
}

void compat_chain_extend(const struct compat_identity *up, char *out, size_t cap)
{
    out[0] = '\0';
    if (!up->run_id[0] || cap < RESP_RUN_ID_LEN + 1)
        return;
    size_t n = (size_t)snprintf(out, cap, "%s", up->run_id);
    int ids = 1;
    for (const char *p = up->chain; *p && ids < COMPAT_CHAIN_IDS && n + RESP_RUN_ID_LEN + 1 < cap;
         ids++) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l != RESP_RUN_ID_LEN)
            break; /* not a run id: the rest is not trusted */
        n += (size_t)snprintf(out + n, cap - n, ",%.40s", p);
        p = e ? e + 1 : p + l;
    }
}

bool compat_chain_has(const struct compat_identity *up, const char *run_id)
{
    if (strlen(run_id) != RESP_RUN_ID_LEN)
        return false;
    if (strcasecmp(up->run_id, run_id) == 0)
        return true;
    for (const char *p = up->chain; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == RESP_RUN_ID_LEN && strncasecmp(p, run_id, RESP_RUN_ID_LEN) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

int compat_identity_parse(const char *info, size_t len, struct compat_identity *out)
{
    memset(out, 0, sizeof(*out));
    if (!info_field(info, len, "redis_version", out->redis_version, sizeof(out->redis_version)) ||
        compat_version_parse(out->redis_version, strlen(out->redis_version)) < 0) {
        out->redis_version[0] = '\0';
        return -1;
    }
    info_field(info, len, "server_name", out->server_name, sizeof(out->server_name));
    info_field(info, len, "run_id", out->run_id, sizeof(out->run_id));
    info_field(info, len, "cascade_chain", out->chain, sizeof(out->chain));
    char vv[32] = "";
    if (strcasecmp(out->server_name, "valkey") == 0 &&
        info_field(info, len, "valkey_version", vv, sizeof(vv)) &&
        compat_version_parse(vv, strlen(vv)) >= 0) {
        out->server = COMPAT_VALKEY;
        snprintf(out->server_version, sizeof(out->server_version), "%s", vv);
    } else {
        out->server = COMPAT_REDIS;
        snprintf(out->server_version, sizeof(out->server_version), "%s", out->redis_version);
    }
    return 0;
}

bool compat_announce_valid(const char *setting)
{
    return strcmp(setting, "auto") == 0 || strcmp(setting, "none") == 0 ||
           compat_version_parse(setting, strlen(setting)) >= 0;
}

const char *compat_announce(const char *setting, const struct compat_identity *id)
{
    if (strcmp(setting, "none") == 0)
        return "";
    if (strcmp(setting, "auto") == 0 || !compat_announce_valid(setting))
        return id->server == COMPAT_VALKEY ? id->server_version : "";
    return setting;
}

/* ---- leaves held off ------------------------------------------------------------------ */

struct compat_mark *compat_marks_find(struct compat_marks *t, const char *ip, int port)
{
    for (int i = 0; i < t->n; i++)
        if (t->m[i].port == port && strcmp(t->m[i].ip, ip) == 0)
            return &t->m[i];
    return NULL;
}

struct compat_mark *compat_marks_get(struct compat_marks *t, const char *ip, int port, int64_t now)
{
    struct compat_mark *e = compat_marks_find(t, ip, port);
    if (!e) {
        if (t->n < COMPAT_LEAVES) {
            e = &t->m[t->n++];
        } else {
            /* Reuse the least recently touched entry, unmarked ones first. */
            e = &t->m[0];
            for (int i = 1; i < t->n; i++) {
                struct compat_mark *c = &t->m[i];
                if ((e->marked && !c->marked) ||
                    (e->marked == c->marked && c->last_ms < e->last_ms))
                    e = c;
            }
        }
        memset(e, 0, sizeof(*e));
        snprintf(e->ip, sizeof(e->ip), "%s", ip);
        e->port = port;
    }
    e->last_ms = now;
    return e;
}

static bool mark(struct compat_mark *e, const struct compat_leaf *leaf,
                 const struct compat_rdb *rdb, const char *reason, int64_t hold_until)
{
    bool fresh =
        !e->logged || e->rdb_version != rdb->version || e->valkey_magic != rdb->valkey_magic;
    e->marked = true;
    e->logged = true;
    e->leaf = *leaf;
    e->rdb_version = rdb->version;
    e->valkey_magic = rdb->valkey_magic;
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
    e->held_until_ms = hold_until;
    return fresh;
}

bool compat_marks_failed(struct compat_marks *t, const char *ip, int port,
                         const struct compat_leaf *leaf, const struct compat_rdb *rdb, int64_t now)
{
    struct compat_mark *e = compat_marks_get(t, ip, port, now);
    if (e->fails > 0 && (e->rdb_version != rdb->version || e->valkey_magic != rdb->valkey_magic))
        e->fails = 0; /* failures with another snapshot format do not count */
    e->rdb_version = rdb->version;
    e->valkey_magic = rdb->valkey_magic;
    if (++e->fails < COMPAT_MAX_FAILS)
        return false;
    e->hold_ms = e->hold_ms ? e->hold_ms * 2 : COMPAT_HOLD_MS;
    if (e->hold_ms > COMPAT_HOLD_MAX)
        e->hold_ms = COMPAT_HOLD_MAX;
    e->logged = e->logged && e->marked;
    char why[64];
    snprintf(why, sizeof(why), "dropped %d full syncs before its first ACK", e->fails);
    return mark(e, leaf, rdb, why, now + e->hold_ms);
}

bool compat_marks_cannot(struct compat_marks *t, const char *ip, int port,
                         const struct compat_leaf *leaf, const struct compat_rdb *rdb, int64_t now)
{
    struct compat_mark *e = compat_marks_get(t, ip, port, now);
    return mark(e, leaf, rdb, "its version cannot load it", INT64_MAX);
}

void compat_marks_ok(struct compat_marks *t, const char *ip, int port)
{
    struct compat_mark *e = compat_marks_find(t, ip, port);
    if (!e)
        return;
    *e = t->m[--t->n];
}

bool compat_marks_held(struct compat_marks *t, const char *ip, int port,
                       const struct compat_rdb *rdb, int64_t now)
{
    struct compat_mark *e = compat_marks_find(t, ip, port);
    if (!e || !e->marked)
        return false;
    if (e->rdb_version != rdb->version || e->valkey_magic != rdb->valkey_magic ||
        e->held_until_ms == INT64_MAX) {
        /* The snapshot changed format, or the leaf was marked for the version it announced
         * and now announces none: it gets a fresh chance. */
        compat_marks_ok(t, ip, port);
        return false;
    }
    e->last_ms = now;
    return now < e->held_until_ms;
}

int compat_marks_count(const struct compat_marks *t)
{
    int n = 0;
    for (int i = 0; i < t->n; i++)
        n += t->m[i].marked;
    return n;
}
