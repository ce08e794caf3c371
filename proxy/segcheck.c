/*
 * segcheck: a log segment's bytes checked against its index records (see segcheck.h).
 * Owns the verified runs of the segments it is given; reads only. Must not know the store's
 * segment table, write, log or use libevent.
 */
#include "segcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"

void segcheck_deinit(struct segcheck *c)
{
    free(c->runs);
    c->runs = NULL;
    c->n = c->cap = 0;
}

int64_t segcheck_end(const struct segcheck *c, int64_t off)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->runs[i].a <= off && off < c->runs[i].b)
            return c->runs[i].b;
    }
    return off;
}

void segcheck_add(struct segcheck *c, int64_t a, int64_t b)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->runs = realloc(c->runs, c->cap * sizeof(*c->runs));
        if (!c->runs)
            abort();
    }
    size_t i = 0;
    while (i < c->n && c->runs[i].a < a)
        i++;
    memmove(&c->runs[i + 1], &c->runs[i], (c->n - i) * sizeof(*c->runs));
    c->runs[i] = (struct segcheck_run){.a = a, .b = b};
    c->n++;
    size_t k = 0;
    for (size_t j = 1; j < c->n; j++) {
        if (c->runs[j].a <= c->runs[k].b) {
            if (c->runs[j].b > c->runs[k].b)
                c->runs[k].b = c->runs[j].b;
        } else {
            c->runs[++k] = c->runs[j];
        }
    }
    c->n = k + 1;
}

const char *segcheck_record(const struct segcheck_file *f, const struct index_record *rec,
                            int64_t at, char *buf)
{
    if (rec->start != at || rec->len == 0)
        return "an index record out of sequence";
    if (rec->start - f->start + (int64_t)rec->len > f->len)
        return "an index record past the segment's end";
    uint32_t crc = 0;
    for (int64_t done = 0; done < rec->len;) {
        size_t n = rec->len - done < SEGCHECK_CHUNK ? (size_t)(rec->len - done) : SEGCHECK_CHUNK;
        if (writer_pio_all(f->fd, buf, n, (off_t)(rec->start - f->start + done), false) != 0)
            return "a read error";
        crc = crc32c(crc, buf, n);
        done += (int64_t)n;
    }
    return crc == rec->crc ? NULL : "a checksum mismatch";
}

static int read_rec(int idx, uint64_t k, struct index_record *rec)
{
    return writer_pio_all(idx, rec, sizeof(*rec), (off_t)(k * sizeof(*rec)), false);
}

int segcheck_ahead(struct segcheck *c, const struct segcheck_file *f, const char *idx_path,
                   int64_t offset, int64_t limit, int64_t ahead, struct segcheck_bad *bad)
{
    bad->a = offset;
    bad->b = f->start + f->len;
    int idx = open(idx_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (idx < 0 || fstat(idx, &st) != 0) {
        snprintf(bad->why, sizeof(bad->why), "no index: %s", strerror(errno));
        if (idx >= 0)
            close(idx);
        return -1;
    }
    /* Records below the file's size are whole (a write shows its bytes before the size). */
    uint64_t nrec = (uint64_t)st.st_size / sizeof(struct index_record);
    struct index_record rec;
    uint64_t lo = 0, hi = nrec;
    while (hi - lo > 1) { /* the last record starting at or before offset */
        uint64_t mid = lo + (hi - lo) / 2;
        if (read_rec(idx, mid, &rec) != 0)
            break;
        if (rec.start <= offset)
            lo = mid;
        else
            hi = mid;
    }
    int rc = 0;
    if (nrec == 0 || read_rec(idx, lo, &rec) != 0 || rec.start > offset ||
        offset - rec.start >= (int64_t)rec.len) {
        snprintf(bad->why, sizeof(bad->why), "no index record holds it");
        close(idx);
        return -1;
    }
    char *buf = malloc(SEGCHECK_CHUNK);
    if (!buf)
        abort();
    int64_t at = rec.start, end = f->start + f->len;
    for (uint64_t k = lo; at < limit && at - offset < ahead; k++) {
        if (segcheck_end(c, at) > at)
            break; /* the rest was verified before */
        bool have = k < nrec && read_rec(idx, k, &rec) == 0;
        if (have && rec.start == at && at + (int64_t)rec.len > limit &&
            at + (int64_t)rec.len <= end)
            break; /* a write still in progress (the active segment) */
        const char *why =
            have ? segcheck_record(f, &rec, at, buf) : "bytes without an index record";
        if (why && at > offset)
            break; /* offset's own record is fine: a bad one after it is cut once read */
        if (why) {
            snprintf(bad->why, sizeof(bad->why), "%s", why);
            bad->a = at;
            if (have && rec.start == at && at + (int64_t)rec.len <= end)
                bad->b = at + (int64_t)rec.len;
            rc = -1;
            break;
        }
        segcheck_add(c, at, at + (int64_t)rec.len);
        at += (int64_t)rec.len;
    }
    free(buf);
    close(idx);
    return rc;
}
