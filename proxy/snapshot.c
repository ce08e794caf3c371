/*
 * snapshot: temp file, then fsync and rename, so a crash never leaves a half RDB under the
 * final name. Readers open their own descriptors (see snapshot.h).
 */
#include "snapshot.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const state_names[] = {"empty", "filling", "ready"};

const char *snapshot_state_name(enum snapshot_state s)
{
    return s <= SNAPSHOT_READY ? state_names[s] : "?";
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

struct snapshot *snapshot_new(const char *dir, const char *tag, const char *replid, int64_t offset,
                              char *err, size_t errlen)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->state = SNAPSHOT_FILLING;
    snprintf(s->replid, sizeof(s->replid), "%s", replid);
    s->offset = offset;
    rdb_check_init(&s->check);
    s->path = xasprintf("%s/snapshot-%s.rdb", dir, tag);
    s->tmp_path = xasprintf("%s/temp-snapshot-%s.rdb", dir, tag);
    s->fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", s->tmp_path, strerror(errno));
        free(s->path);
        free(s->tmp_path);
        free(s);
        return NULL;
    }
    return s;
}

void snapshot_free(struct snapshot *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->state == SNAPSHOT_FILLING)
        unlink(s->tmp_path);
    else if (s->state == SNAPSHOT_READY)
        unlink(s->path);
    free(s->path);
    free(s->tmp_path);
    free(s);
}

int snapshot_write(struct snapshot *s, const void *buf, size_t len, char *err, size_t errlen)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(s->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "write %s: %s", s->tmp_path, strerror(errno));
            return -1;
        }
        rdb_check_feed(&s->check, p, (size_t)n);
        p += n;
        len -= (size_t)n;
        s->size += n;
    }
    return 0;
}

void snapshot_set_position(struct snapshot *s, const char *replid, int64_t offset)
{
    snprintf(s->replid, sizeof(s->replid), "%s", replid);
    s->offset = offset;
}

int snapshot_finish(struct snapshot *s, int64_t drop, char *err, size_t errlen)
{
    if (drop < 0 || drop > s->size) {
        snprintf(err, errlen, "snapshot shorter than its end mark");
        return -1;
    }
    char why[160];
    s->verdict = rdb_check_end(&s->check, (size_t)drop, &s->header, why, sizeof(why));
    if (s->verdict == RDB_CORRUPT) {
        snprintf(err, errlen, "RDB rejected: %s", why);
        return -1;
    }
    if (ftruncate(s->fd, s->size - drop) != 0 || fsync(s->fd) != 0) {
        snprintf(err, errlen, "sync %s: %s", s->tmp_path, strerror(errno));
        return -1;
    }
    s->size -= drop;
    close(s->fd);
    s->fd = -1;
    if (rename(s->tmp_path, s->path) != 0) {
        snprintf(err, errlen, "rename %s: %s", s->tmp_path, strerror(errno));
        unlink(s->tmp_path);
        s->state = SNAPSHOT_EMPTY;
        return -1;
    }
    s->state = SNAPSHOT_READY;
    s->ready_time = time(NULL);
    return 0;
}

struct snapshot *snapshot_adopt(const char *dir, const char *name, const char *replid,
                                int64_t offset, int64_t size, bool *corrupt, char *err,
                                size_t errlen)
{
    if (corrupt)
        *corrupt = false;
    if (strchr(name, '/') || name[0] == '.' || name[0] == '\0') {
        snprintf(err, errlen, "bad snapshot file name '%s'", name);
        return NULL;
    }
    char *path = xasprintf("%s/%s", dir, name);
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size != size) {
        snprintf(err, errlen, "snapshot %s is missing or not %" PRId64 " bytes", path, size);
        free(path);
        return NULL;
    }
    struct rdb_header hd;
    char why[160];
    enum rdb_verdict v = rdb_check_file(path, &hd, why, sizeof(why));
    if (v == RDB_CORRUPT) {
        snprintf(err, errlen, "snapshot %s fails its check: %s", path, why);
        if (corrupt)
            *corrupt = true;
        free(path);
        return NULL;
    }
    struct snapshot *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->state = SNAPSHOT_READY;
    s->verdict = v;
    s->header = hd;
    snprintf(s->replid, sizeof(s->replid), "%s", replid);
    s->offset = offset;
    s->size = size;
    s->path = path;
    s->tmp_path = xasprintf("%s/temp-%s", dir, name);
    s->fd = -1;
    s->ready_time = st.st_mtime;
    return s;
}

void snapshot_release(struct snapshot *s)
{
    if (s && s->state == SNAPSHOT_READY)
        s->state = SNAPSHOT_EMPTY; /* keeps the file */
    snapshot_free(s);
}

const char *snapshot_file_name(const struct snapshot *s)
{
    const char *slash = strrchr(s->path, '/');
    return slash ? slash + 1 : s->path;
}

int snapshot_open(const struct snapshot *s)
{
    if (!s || s->state != SNAPSHOT_READY)
        return -1;
    return open(s->path, O_RDONLY | O_CLOEXEC);
}
