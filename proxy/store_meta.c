/*
 * store_meta: the meta file's format and the file itself (see store_meta.h).
 * Owns the text format (keys, versions, the checksum line) and the file's name in the
 * directory. Must not know the segments, hold state between calls, log or use libevent.
 */
#include "store_meta.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "errmsg.h"
#include "writer.h"

#define META_MAGIC1 "cascade-meta 1\n" /* no checksum: read, never written */
#define META_MAGIC2 "cascade-meta 2\n"
#define OFFSET_MAX  ((int64_t)1 << 62) /* no stream gets this long */

static bool is_replid(const char *v)
{
    if (strlen(v) != RESP_REPLID_LEN)
        return false;
    for (int i = 0; i < RESP_REPLID_LEN; i++) {
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
            return false;
    }
    return true;
}

static bool parse_i64(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!*v || strlen(v) > 20)
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || x < lo || x > hi || v[0] == '+' || v[0] == ' ')
        return false;
    *out = x;
    return true;
}

size_t store_meta_format(const struct store_meta *m, int64_t log_start, int64_t log_end, char *out,
                         size_t outlen)
{
#define OR_DASH(x) ((x)[0] ? (x) : "-")
    int n = snprintf(out, outlen,
                     META_MAGIC2 "replid %s\n"
                                 "replid2 %s\n"
                                 "second_replid_offset %" PRId64 "\n"
                                 "snapshot_file %s\n"
                                 "snapshot_replid %s\n"
                                 "snapshot_offset %" PRId64 "\n"
                                 "snapshot_size %" PRId64 "\n"
                                 "log_start %" PRId64 "\n"
                                 "log_end %" PRId64 "\n",
                     OR_DASH(m->replid), OR_DASH(m->replid2), m->second_replid_offset,
                     OR_DASH(m->snapshot_file), OR_DASH(m->snapshot_replid), m->snapshot_offset,
                     m->snapshot_size, log_start, log_end);
#undef OR_DASH
    if (n < 0 || (size_t)n + 17 >= outlen)
        return 0;
    uint32_t crc = crc32c(0, out, (size_t)n);
    n += snprintf(out + n, outlen - (size_t)n, "crc32c %08x\n", crc);
    return (size_t)n;
}

/* The keys of a meta file, each required exactly once. */
enum meta_key {
    MK_REPLID,
    MK_REPLID2,
    MK_SECOND_OFFSET,
    MK_SNAP_FILE,
    MK_SNAP_REPLID,
    MK_SNAP_OFFSET,
    MK_SNAP_SIZE,
    MK_LOG_START,
    MK_LOG_END,
    MK_COUNT
};
static const char *const meta_keys[MK_COUNT] = {
    "replid",        "replid2",         "second_replid_offset",
    "snapshot_file", "snapshot_replid", "snapshot_offset",
    "snapshot_size", "log_start",       "log_end"};

/* One "key value" line into m; why on error. */
static int meta_line(const char *key, const char *val, struct store_meta *m, unsigned *seen,
                     char *why, size_t whylen)
{
    int k = 0;
    while (k < MK_COUNT && strcmp(key, meta_keys[k]) != 0)
        k++;
    if (k == MK_COUNT) {
        errmsg(why, whylen, "unknown key '%.64s'", key);
        return -1;
    }
    if (*seen & (1u << k)) {
        errmsg(why, whylen, "key '%s' twice", key);
        return -1;
    }
    *seen |= 1u << k;
    bool dash = strcmp(val, "-") == 0, ok = true;
    int64_t x = 0;
    switch ((enum meta_key)k) {
    case MK_REPLID:
    case MK_REPLID2:
    case MK_SNAP_REPLID:
        ok = dash || is_replid(val);
        if (ok) {
            char *dst = k == MK_REPLID    ? m->replid
                        : k == MK_REPLID2 ? m->replid2
                                          : m->snapshot_replid;
            snprintf(dst, RESP_REPLID_LEN + 1, "%s", dash ? "" : val);
        }
        break;
    case MK_SNAP_FILE:
        ok = dash || (strlen(val) < sizeof(m->snapshot_file) && !strchr(val, '/') && val[0] != '.');
        if (ok)
            snprintf(m->snapshot_file, sizeof(m->snapshot_file), "%s", dash ? "" : val);
        break;
    case MK_SECOND_OFFSET:
    case MK_SNAP_OFFSET:
    case MK_LOG_START:
    case MK_LOG_END:
        ok = parse_i64(val, -1, OFFSET_MAX, &x);
        if (k == MK_SECOND_OFFSET)
            m->second_replid_offset = x;
        else if (k == MK_SNAP_OFFSET)
            m->snapshot_offset = x;
        else if (k == MK_LOG_END)
            m->log_end = x;
        break;
    case MK_SNAP_SIZE:
        ok = parse_i64(val, 0, OFFSET_MAX, &m->snapshot_size);
        break;
    case MK_COUNT:
        break;
    }
    if (!ok)
        errmsg(why, whylen, "bad value for '%s': '%.64s'", key, val);
    return ok ? 0 : -1;
}

/* A meta file's header and, in version 2, its checksum line: m->version, and *body, the
 * bytes that hold its lines (up to the checksum line). 0, or -1 with why. */
static int meta_frame(const char *text, size_t len, struct store_meta *m, size_t *body, char *why,
                      size_t whylen)
{
    size_t magic = strlen(META_MAGIC2);
    if (len >= magic && memcmp(text, META_MAGIC2, magic) == 0) {
        m->version = 2;
    } else if (len >= magic && memcmp(text, META_MAGIC1, magic) == 0) {
        m->version = 1;
    } else {
        errmsg(why, whylen, "no cascade-meta header");
        return -1;
    }
    if (memchr(text, '\0', len)) {
        errmsg(why, whylen, "a NUL byte");
        return -1;
    }
    if (len == 0 || text[len - 1] != '\n') {
        errmsg(why, whylen, "torn: the last line has no end");
        return -1;
    }
    *body = len; /* bytes covered by the checksum (version 2) */
    if (m->version == 2) {
        /* The last line: "crc32c xxxxxxxx\n", 16 bytes. */
        const char *p = len >= 16 ? text + len - 16 : NULL;
        uint32_t crc = 0;
        bool ok = p && (p == text || p[-1] == '\n') && memcmp(p, "crc32c ", 7) == 0;
        for (int i = 7; ok && i < 15; i++) { /* text need not end with a NUL: no sscanf */
            char c = p[i];
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
            crc = crc << 4 | (uint32_t)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        if (!ok) {
            errmsg(why, whylen, "torn: no checksum line at the end");
            return -1;
        }
        *body = (size_t)(p - text);
        uint32_t got = crc32c(0, text, *body);
        if (got != crc) {
            errmsg(why, whylen, "checksum mismatch (file says %08x, contents %08x)", crc, got);
            return -1;
        }
    }
    return 0;
}

int store_meta_parse(const char *text, size_t len, struct store_meta *m, char *why, size_t whylen)
{
    memset(m, 0, sizeof(*m));
    m->second_replid_offset = -1;
    m->snapshot_offset = -1;
    m->log_end = -1;
    size_t body;
    if (meta_frame(text, len, m, &body, why, whylen) != 0)
        return -1;
    unsigned seen = 0;
    for (size_t at = strlen(META_MAGIC2); at < body;) {
        const char *line = text + at;
        const char *nl = memchr(line, '\n', body - at);
        size_t n = (size_t)(nl - line);
        char tmp[400];
        if (n >= sizeof(tmp)) {
            errmsg(why, whylen, "a line of %zu bytes", n);
            return -1;
        }
        memcpy(tmp, line, n);
        tmp[n] = '\0';
        char *sp = strchr(tmp, ' ');
        if (!sp || !sp[1] || strchr(sp + 1, ' ')) {
            errmsg(why, whylen, "not a 'key value' line: '%.64s'", tmp);
            return -1;
        }
        *sp = '\0';
        if (meta_line(tmp, sp + 1, m, &seen, why, whylen) != 0)
            return -1;
        at += n + 1;
    }
    for (int k = 0; k < MK_COUNT; k++) {
        if (!(seen & (1u << k))) {
            errmsg(why, whylen, "key '%s' missing", meta_keys[k]);
            return -1;
        }
    }
    if (m->snapshot_file[0] && (m->snapshot_offset < 0 || !m->snapshot_replid[0])) {
        errmsg(why, whylen, "a snapshot file without its position");
        return -1;
    }
    return 0;
}

/* A rename in dir must reach the disk: fsync the directory (best effort). */
static void fsync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

int store_meta_set_aside(const char *dir, char *aside, size_t n, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/" STORE_META_NAME, dir);
    long long now = (long long)time(NULL);
    for (int i = 0; i < 1000; i++) {
        char name[64];
        if (i == 0)
            snprintf(name, sizeof(name), STORE_META_NAME ".bad-%lld", now);
        else
            snprintf(name, sizeof(name), STORE_META_NAME ".bad-%lld-%d", now, i);
        char to[4200];
        snprintf(to, sizeof(to), "%s/%s", dir, name);
        if (access(to, F_OK) == 0)
            continue;
        if (rename(path, to) != 0) {
            errmsg(err, errlen, "cannot rename %s to %s: %s", path, to, strerror(errno));
            return -1;
        }
        snprintf(aside, n, "%s", name);
        fsync_dir(dir);
        return 0;
    }
    errmsg(err, errlen, "cannot set %s aside: too many meta.bad-* files", path);
    return -1;
}

int store_meta_read(const char *dir, struct store_meta *m, bool *has, char *why, size_t whylen,
                    char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/" STORE_META_NAME, dir);
    *has = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        errmsg(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char buf[STORE_META_MAX + 1];
    size_t n = 0;
    ssize_t got = 1;
    while (n < sizeof(buf) && (got = read(fd, buf + n, sizeof(buf) - n)) > 0)
        n += (size_t)got;
    close(fd);
    if (got < 0) {
        errmsg(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (n > STORE_META_MAX) {
        errmsg(why, whylen, "larger than %d bytes", STORE_META_MAX);
        return 1;
    }
    if (store_meta_parse(buf, n, m, why, whylen) != 0)
        return 1;
    *has = true;
    return 0;
}

int store_meta_write(const char *dir, const struct store_meta *m, int64_t log_start,
                     int64_t log_end, char *err, size_t errlen)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/" STORE_META_NAME, dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    char text[STORE_META_MAX];
    size_t n = store_meta_format(m, log_start, log_end, text, sizeof(text));
    if (n == 0) {
        errmsg(err, errlen, "meta does not fit in %d bytes", STORE_META_MAX);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || writer_write_all(fd, text, n) != 0 || fsync(fd) != 0) {
        errmsg(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        errmsg(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
        return -1;
    }
    fsync_dir(dir); /* the rename itself must reach the disk */
    return 0;
}
