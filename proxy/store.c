/*
 * store: see store.h. Only the last segment can be torn (earlier ones were fsynced when the
 * next one began), so recovery verifies the last segment's index records against its bytes
 * and cuts both files back to the last whole write. Older segments are verified lazily, when
 * a reader first asks for their bytes (start-up stays fast with gigabytes on disk); so are
 * the bytes this process wrote: the check is of what the device gives back (O_DIRECT writes
 * leave nothing in the page cache to hide a bad read), once per byte per process, and only
 * for the bytes that are ever read back (replicas behind memory).
 * Owns the segment table (the caller's thread alone touches it) and decides what a failed
 * check cuts. The checks themselves and the verified runs are segcheck.c's, the meta file's
 * format and file store_meta.c's. Must not create threads or share anything with them but the
 * descriptors of queued jobs: that is writer.c, which this file drives through writer.h. Every
 * wait for the writer's queue says so where it is called.
 */
#include "store.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crc32c.h"
#include "errmsg.h"
#include "segcheck.h"
#include "writer.h"

#define SEG_PREFIX "log-"

struct segment {
    int64_t start; /* offset of its first byte */
    int64_t len;   /* bytes held */
    int fd;        /* data file */
    int idx_fd;    /* index file while this is the active segment, else -1 */
    int dfd;       /* the data file opened O_DIRECT for the writer thread, or -1 */
    bool dfd_tried;
    time_t mtime;        /* last write */
    struct segcheck ver; /* the runs of it verified against their index records */
};

struct store {
    char *dir;
    struct store_params p;
    struct segment *segs; /* oldest first */
    size_t nseg, cap;
    int64_t next;       /* offset of the next byte to append */
    struct writer *w;   /* background writer, or NULL: appends are written at once */
    bool need_boundary; /* no segment, and next is not known to be a command boundary: appends
                           skip to the first boundary they hold (store_restart, a cut) */
};

static void report(struct store *s, enum store_event ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(struct store *s, enum store_event ev, const char *fmt, ...)
{
    if (!s->p.report)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    s->p.report(s->p.report_ctx, ev, text);
}

static void seg_path(const struct store *s, int64_t start, const char *ext, char *out, size_t n)
{
    snprintf(out, n, "%s/" SEG_PREFIX "%020" PRId64 ".%s", s->dir, start, ext);
}

static void seg_close(struct segment *g)
{
    if (g->fd >= 0)
        close(g->fd);
    if (g->idx_fd >= 0)
        close(g->idx_fd);
    if (g->dfd >= 0)
        close(g->dfd);
    g->fd = g->idx_fd = g->dfd = -1;
    segcheck_deinit(&g->ver);
}

static void seg_unlink(struct store *s, struct segment *g)
{
    char path[4096];
    seg_close(g);
    seg_path(s, g->start, "seg", path, sizeof(path));
    unlink(path);
    seg_path(s, g->start, "idx", path, sizeof(path));
    unlink(path);
}

static struct segment *seg_push(struct store *s)
{
    if (s->nseg == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->segs = realloc(s->segs, s->cap * sizeof(*s->segs));
        if (!s->segs)
            abort();
    }
    struct segment *g = &s->segs[s->nseg++];
    memset(g, 0, sizeof(*g));
    g->fd = g->idx_fd = g->dfd = -1;
    return g;
}

static void seg_remove_at(struct store *s, size_t i)
{
    seg_unlink(s, &s->segs[i]);
    memmove(&s->segs[i], &s->segs[i + 1], (s->nseg - i - 1) * sizeof(*s->segs));
    s->nseg--;
}

/* ---- the background writer (writer.c): the store's side ---- */

/* Blocks the caller (the loop thread) until every queued job ran: at most the time the device
 * takes for WRITER_BYTES bytes and the fsyncs queued with them (writer.h). */
static void wait_idle(struct store *s)
{
    if (s->w)
        writer_wait_idle(s->w);
}

int store_start_writer(struct store *s, void (*done)(void *ctx, void *token), void *ctx,
                       int *notify_fd, char *err, size_t errlen)
{
    s->w = writer_start(s->next - 1, done, ctx, err, errlen);
    if (!s->w)
        return -1;
    *notify_fd = writer_notify_fd(s->w);
    return 0;
}

int store_collect(struct store *s, char *err, size_t errlen)
{
    return s->w ? writer_collect(s->w, err, errlen) : 0;
}

bool store_direct_io(const struct store *s)
{
    return s->p.direct && s->w && !writer_direct_off(s->w);
}

int64_t store_durable_end(const struct store *s)
{
    return s->w ? writer_durable(s->w) : s->next - 1;
}

static int cmp_start(const void *a, const void *b)
{
    const struct segment *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* g's data file as the checks read it. */
static struct segcheck_file seg_file(const struct segment *g)
{
    return (struct segcheck_file){.fd = g->fd, .start = g->start, .len = g->len};
}

/* Verify the last segment against its index; cut both back to the last whole write. */
static int recover_tail(struct store *s, struct segment *g, char *err, size_t errlen)
{
    char path[4096];
    seg_path(s, g->start, "idx", path, sizeof(path));
    int idx = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    int64_t data_len = fstat(g->fd, &st) == 0 ? st.st_size : 0;
    g->len = data_len;
    int64_t good = 0; /* verified bytes */
    off_t idx_good = 0, idx_len = 0;
    const char *why = "bytes without an index record";
    if (idx >= 0) {
        idx_len = fstat(idx, &st) == 0 ? st.st_size : 0;
        struct index_record rec;
        char *buf = malloc(SEGCHECK_CHUNK);
        if (!buf)
            abort();
        struct segcheck_file file = seg_file(g);
        while (writer_pio_all(idx, &rec, sizeof(rec), idx_good, false) == 0) {
            const char *bad = segcheck_record(&file, &rec, g->start + good, buf);
            if (bad) {
                why = bad;
                break;
            }
            good += rec.len;
            idx_good += (off_t)sizeof(rec);
        }
        free(buf);
    } else {
        why = "no index";
    }
    if (good < data_len) {
        report(s, STORE_EVENT_RECOVERY,
               "torn tail of log segment %" PRId64 " (%s): cut %" PRId64 "..%" PRId64 " (%" PRId64
               " bytes)",
               g->start, why, g->start + good, g->start + data_len - 1, data_len - good);
        if (ftruncate(g->fd, good) != 0) {
            errmsg(err, errlen, "cannot cut torn segment %" PRId64 ": %s", g->start,
                   strerror(errno));
            if (idx >= 0)
                close(idx);
            return -1;
        }
    }
    if (idx_len > idx_good)
        report(s, STORE_EVENT_RECOVERY,
               "log segment %" PRId64 ": dropped %lld bytes of its index past the last whole "
               "write",
               g->start, (long long)(idx_len - idx_good));
    if (idx < 0) {
        idx = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (idx < 0) {
            errmsg(err, errlen, "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
    }
    if (ftruncate(idx, idx_good) != 0 || lseek(idx, 0, SEEK_END) < 0) {
        errmsg(err, errlen, "cannot cut index %s: %s", path, strerror(errno));
        close(idx);
        return -1;
    }
    g->len = good;
    g->idx_fd = idx;
    segcheck_deinit(&g->ver);
    if (good > 0)
        segcheck_add(&g->ver, g->start, g->start + good); /* all of it was just checked */
    return 0;
}

/* Opens every segment in dir, oldest first. */
static int scan_segments(struct store *s, char *err, size_t errlen)
{
    DIR *d = opendir(s->dir);
    if (!d) {
        errmsg(err, errlen, "cannot open %s: %s", s->dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        long long start;
        char tail[8];
        if (sscanf(de->d_name, SEG_PREFIX "%20lld.%7s", &start, tail) != 2 ||
            strcmp(tail, "seg") != 0)
            continue;
        struct segment *g = seg_push(s);
        g->start = start;
        char path[4096];
        seg_path(s, g->start, "seg", path, sizeof(path));
        g->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC); /* appends go on at the end */
        struct stat st;
        if (g->fd < 0 || fstat(g->fd, &st) != 0) {
            errmsg(err, errlen, "cannot open %s: %s", path, strerror(errno));
            closedir(d);
            return -1;
        }
        g->len = st.st_size;
        g->mtime = st.st_mtime;
    }
    closedir(d);
    if (s->nseg > 0)
        qsort(s->segs, s->nseg, sizeof(*s->segs), cmp_start);
    return 0;
}

/* Removes segments [0, n), reporting their range as what = "...". */
static void drop_first(struct store *s, size_t n, enum store_event ev, const char *what)
{
    if (n == 0)
        return;
    int64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += s->segs[i].len;
    report(s, ev,
           "%s: dropped the disk log %" PRId64 "..%" PRId64 " (%" PRId64 " bytes, %zu segment(s))",
           what, s->segs[0].start, s->segs[n - 1].start + s->segs[n - 1].len - 1, bytes, n);
    wait_idle(s); /* no queued job may still name their files: blocks, see writer.h */
    while (n-- > 0)
        seg_remove_at(s, 0);
}

/* Keeps the longest contiguous run from the newest segment back, and recovers its tail. */
static int recover_segments(struct store *s, char *err, size_t errlen)
{
    /* A crash loses the writer's queued jobs, and with them every write to the segments the
     * loop thread had opened for them: such segments are empty and end the stream (the I/O
     * thread writes in order, so a segment with bytes has every one before it whole). They
     * are the torn tail, not a gap before the newest run. */
    size_t empty = 0;
    while (s->nseg > 0 && s->segs[s->nseg - 1].len == 0) {
        seg_remove_at(s, s->nseg - 1);
        empty++;
    }
    if (empty > 0)
        report(s, STORE_EVENT_RECOVERY,
               "torn tail: removed %zu empty log segment(s) from offset %" PRId64
               " on (their writes were lost)",
               empty, s->nseg ? s->segs[s->nseg - 1].start + s->segs[s->nseg - 1].len : 0);
    if (s->nseg == 0)
        return 0;
    size_t first = s->nseg - 1;
    while (first > 0 && s->segs[first - 1].start + s->segs[first - 1].len == s->segs[first].start)
        first--;
    if (first > 0) {
        const struct segment *a = &s->segs[first - 1], *b = &s->segs[first];
        char what[160];
        if (a->start + a->len < b->start)
            snprintf(what, sizeof(what),
                     "gap in the disk log (%" PRId64 "..%" PRId64 " missing, %" PRId64 " bytes)",
                     a->start + a->len, b->start - 1, b->start - a->start - a->len);
        else
            snprintf(what, sizeof(what),
                     "log segments %" PRId64 " and %" PRId64 " overlap (%" PRId64 " bytes)",
                     a->start, b->start, a->start + a->len - b->start);
        drop_first(s, first, STORE_EVENT_RECOVERY, what);
    }
    struct segment *last = &s->segs[s->nseg - 1];
    if (recover_tail(s, last, err, errlen) != 0)
        return -1;
    while (last->len == 0 && s->nseg > 1) {
        /* Nothing whole in it: the previous segment is the active one again. */
        seg_remove_at(s, s->nseg - 1);
        last = &s->segs[s->nseg - 1];
        if (recover_tail(s, last, err, errlen) != 0)
            return -1;
    }
    s->next = last->start + last->len;
    if (last->len == 0)
        seg_remove_at(s, s->nseg - 1);
    return 0;
}

struct store *store_open(const struct store_params *p, struct store_meta *meta, bool *has_meta,
                         char *err, size_t errlen)
{
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->dir = strdup(p->dir);
    if (!s->dir)
        abort();
    s->p = *p;
    s->next = 1;
    memset(meta, 0, sizeof(*meta));
    char why[256] = "";
    int mrc = store_meta_read(s->dir, meta, has_meta, why, sizeof(why), err, errlen);
    if (mrc < 0 || scan_segments(s, err, errlen) != 0) {
        store_close(s);
        return NULL;
    }
    if (mrc == 1) {
        char aside[96];
        if (store_meta_set_aside(s->dir, aside, sizeof(aside), err, errlen) != 0) {
            store_close(s);
            return NULL;
        }
        memset(meta, 0, sizeof(*meta));
        report(s, STORE_EVENT_RECOVERY,
               "%s/" STORE_META_NAME " is not a valid cascade meta file (%s): "
               "moved to %s; starting afresh",
               s->dir, why, aside);
    }
    if (!*has_meta) {
        /* Segments without a history to belong to are useless. */
        drop_first(s, s->nseg, STORE_EVENT_RECOVERY, mrc == 1 ? "no valid meta" : "no meta file");
        s->next = 1;
        return s;
    }
    if (recover_segments(s, err, errlen) != 0) {
        store_close(s);
        return NULL;
    }
    if (s->nseg == 0 && meta->log_end >= 0 && meta->log_end == meta->snapshot_offset) {
        /* A history with no stream bytes on disk yet: it starts right after the snapshot,
         * a command boundary. Any other empty log has lost its position. */
        s->next = meta->log_end + 1;
    }
    return s;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    writer_stop(s->w); /* waits for the queue: writer.h */
    s->w = NULL;
    for (size_t i = 0; i < s->nseg; i++)
        seg_close(&s->segs[i]);
    free(s->segs);
    free(s->dir);
    free(s);
}

void store_set_retention(struct store *s, const struct store_params *p)
{
    s->p.segment_bytes = p->segment_bytes;
    s->p.retain_bytes = p->retain_bytes;
    s->p.retain_age_s = p->retain_age_s;
    s->p.retain_min_bytes = p->retain_min_bytes;
}

int store_reset(struct store *s, int64_t next, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    wait_idle(s); /* blocks until the queue ran: see writer.h */
    while (s->nseg)
        seg_remove_at(s, 0);
    s->next = next;
    if (s->w)
        writer_reset(s->w, next - 1); /* a fresh log: no failure */
    s->need_boundary = false;         /* a history starts at a command boundary */
    return 0;
}

int store_restart(struct store *s, int64_t next, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    wait_idle(s); /* blocks until the queue ran: see writer.h */
    /* After a failed write the segments' lengths count queued bytes that were never written:
     * say what was. */
    int64_t durable = store_durable_end(s);
    for (size_t i = 0; i < s->nseg; i++) {
        struct segment *g = &s->segs[i];
        int64_t held = durable + 1 - g->start;
        g->len = held < 0 ? 0 : held < g->len ? held : g->len;
    }
    drop_first(s, s->nseg, STORE_EVENT_DROPPED, "the log restarts after a hole");
    s->next = next;
    s->need_boundary = true;
    if (s->w)
        writer_reset(s->w, next - 1); /* a fresh log: no failure */
    return 0;
}

int store_discard_meta(struct store *s, const char *why, char *err, size_t errlen)
{
    char aside[96];
    if (store_meta_set_aside(s->dir, aside, sizeof(aside), err, errlen) != 0)
        return -1;
    report(s, STORE_EVENT_DROPPED, "%s/" STORE_META_NAME " %s: moved to %s; starting afresh",
           s->dir, why, aside);
    drop_first(s, s->nseg, STORE_EVENT_DROPPED, "without its meta");
    return store_reset(s, 1, err, errlen);
}

bool store_waiting_boundary(const struct store *s)
{
    return s->nseg == 0 && s->need_boundary;
}

/* Passes over n stream bytes without holding them (the log waits for a command boundary). */
static void skip_bytes(struct store *s, size_t n)
{
    s->next += (int64_t)n;
    if (s->w)
        writer_set_durable(s->w, s->next - 1);
}

static int fsync_segment(struct segment *g, char *err, size_t errlen)
{
    if (fsync(g->fd) != 0 || (g->idx_fd >= 0 && fsync(g->idx_fd) != 0)) {
        errmsg(err, errlen, "fsync segment %" PRId64 ": %s", g->start, strerror(errno));
        return -1;
    }
    return 0;
}

/* Creates the files of a segment starting at `start` (truncating leftovers). */
static int create_segment_files(struct store *s, int64_t start, int *fd, int *idx_fd, char *err,
                                size_t errlen)
{
    char path[4096];
    seg_path(s, start, "seg", path, sizeof(path));
    *fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    *idx_fd = -1;
    if (*fd >= 0) {
        seg_path(s, start, "idx", path, sizeof(path));
        *idx_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    }
    if (*fd >= 0 && *idx_fd >= 0)
        return 0;
    errmsg(err, errlen, "cannot create segment %s: %s", path, strerror(errno));
    struct segment g = {.start = start, .fd = *fd, .idx_fd = *idx_fd, .dfd = -1};
    seg_unlink(s, &g);
    return -1;
}

/* The last segment is complete: fsync it and close its index, in order after its writes. */
static int finish_segment(struct store *s, bool queue, char *err, size_t errlen)
{
    struct segment *prev = &s->segs[s->nseg - 1];
    if (queue) {
        struct wjob job = {
            .kind = WJOB_SYNC_CLOSE, .fd = prev->fd, .idx_fd = prev->idx_fd, .dfd = prev->dfd};
        writer_enqueue(s->w, &job); /* blocks while the queue is full: writer.h */
    } else {
        if (fsync_segment(prev, err, errlen) != 0)
            return -1;
        close(prev->idx_fd);
        if (prev->dfd >= 0)
            close(prev->dfd);
    }
    prev->idx_fd = prev->dfd = -1;
    return 0;
}

/*
 * Appends bytes [from, to) of the pieces' concatenation to the last segment: queued, one job
 * per piece (a piece's token rides on the job that ends it), or written at once with one
 * writev and one index record.
 */
static int write_span(struct store *s, const struct store_piece *pc, int n, size_t from, size_t to,
                      bool queue, char *err, size_t errlen)
{
    struct segment *g = &s->segs[s->nseg - 1];
    if (queue && s->p.direct && !g->dfd_tried) {
        /* The writer's direct descriptor; without one (no O_DIRECT here) it uses fd. */
        char path[4096];
        seg_path(s, g->start, "seg", path, sizeof(path));
        g->dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
        g->dfd_tried = true;
    }
    struct iovec iov[STORE_MAX_PIECES];
    int k = 0;
    uint32_t crc = 0;
    size_t pos = 0;
    for (int i = 0; i < n && pos < to; pos += pc[i].len, i++) {
        size_t a, b;
        if (!writer_clip_run(pos, pc[i].len, from, to, &a, &b))
            continue;
        const char *p = (const char *)pc[i].buf + a;
        if (queue) {
            struct wjob job = {.fd = g->fd,
                               .idx_fd = g->idx_fd,
                               .dfd = g->dfd,
                               .pos = (off_t)g->len,
                               .start = s->next,
                               .buf = p,
                               .len = b - a,
                               .token = b == pc[i].len ? pc[i].token : NULL};
            writer_enqueue(s->w, &job); /* blocks while the queue is full: writer.h */
            g->len += (int64_t)(b - a);
            s->next += (int64_t)(b - a);
        } else {
            iov[k++] = (struct iovec){.iov_base = (void *)p, .iov_len = b - a};
            crc = crc32c(crc, p, b - a);
        }
    }
    if (!queue && k > 0) {
        /* Data first: an index record never points at bytes that were not written. */
        struct index_record rec = {.start = s->next, .len = (uint32_t)(to - from), .crc = crc};
        if (writer_writev_all(g->fd, iov, k) != 0 ||
            writer_write_all(g->idx_fd, &rec, sizeof(rec)) != 0) {
            errmsg(err, errlen, "write segment %" PRId64 ": %s", g->start, strerror(errno));
            return -1;
        }
        g->len += (int64_t)(to - from);
        s->next += (int64_t)(to - from);
        if (s->w)
            writer_set_durable(s->w, s->next - 1);
    }
    g->mtime = time(NULL);
    return 0;
}

int store_append(struct store *s, const struct store_piece *pc, int n, int64_t boundary, bool bulk,
                 char *err, size_t errlen)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += pc[i].len;
    if (n < 0 || n > STORE_MAX_PIECES || total > UINT32_MAX) {
        errmsg(err, errlen, "append of %d pieces, %zu bytes: too large", n, total);
        return -1;
    }
    if (total == 0)
        return 0;
    if (s->w && writer_failed(s->w, err, errlen) != 0)
        return -1;
    /* A new segment starts only at a command boundary: at the first one, or when the last
     * segment is full, at the boundary these bytes hold. */
    size_t split = 0;
    bool roll = false, skip = false;
    if (s->nseg == 0) {
        if (s->need_boundary) {
            /* Restarting: the bytes before the first boundary are not held. */
            if (boundary < 0 || (size_t)boundary >= total) {
                skip_bytes(s, total);
                return 0;
            }
            split = (size_t)boundary;
            skip = split > 0;
        } else if (boundary != 0) {
            errmsg(err, errlen, "a log cannot start in the middle of a command");
            return -1;
        }
        roll = true;
    } else if (s->segs[s->nseg - 1].len >= s->p.segment_bytes && boundary >= 0 &&
               (size_t)boundary < total) {
        roll = true;
        split = (size_t)boundary;
    }
    /* A restart's first write goes at once: no piece it skips waits for a token then. */
    bool queue = s->w && !skip && (bulk || !writer_idle(s->w));
    /* Whatever can fail comes before anything is queued, so that on -1 no token is held. */
    int fd = -1, idx_fd = -1;
    int64_t new_start = s->next + (int64_t)split;
    if (roll && create_segment_files(s, new_start, &fd, &idx_fd, err, errlen) != 0)
        return -1;
    if (skip)
        skip_bytes(s, split);
    else if (split > 0 && write_span(s, pc, n, 0, split, queue, err, errlen) != 0)
        goto fail;
    if (roll) {
        s->need_boundary = false;
        if (s->nseg > 0 && finish_segment(s, queue, err, errlen) != 0)
            goto fail;
        struct segment *g = seg_push(s);
        g->start = s->next;
        g->mtime = time(NULL);
        g->fd = fd;
        g->idx_fd = idx_fd;
        fd = idx_fd = -1;
    }
    if (write_span(s, pc, n, split, total, queue, err, errlen) != 0)
        goto fail;
    return queue ? 1 : 0;
fail:
    assert(!queue); /* queued appends cannot fail past the file creation */
    if (fd >= 0) {  /* the new segment was not taken into use */
        struct segment g = {.start = new_start, .fd = fd, .idx_fd = idx_fd, .dfd = -1};
        seg_unlink(s, &g);
    }
    return -1;
}

int store_sync(struct store *s, char *err, size_t errlen)
{
    if (s->nseg == 0)
        return 0;
    if (s->w) { /* in order after the queued writes; store_close waits for it */
        struct segment *g = &s->segs[s->nseg - 1];
        struct wjob job = {.kind = WJOB_SYNC, .fd = g->fd, .idx_fd = g->idx_fd};
        writer_enqueue(s->w, &job); /* blocks while the queue is full: writer.h */
        return writer_failed(s->w, err, errlen);
    }
    return fsync_segment(&s->segs[s->nseg - 1], err, errlen);
}

int store_write_meta(struct store *s, const struct store_meta *m, char *err, size_t errlen)
{
    wait_idle(s); /* log_end below must be on disk: blocks, see writer.h */
    return store_meta_write(s->dir, m, store_start(s), store_end(s), err, errlen);
}

int64_t store_start(const struct store *s)
{
    return s->nseg ? s->segs[0].start : s->next;
}

int64_t store_end(const struct store *s)
{
    return s->next - 1;
}

int64_t store_bytes(const struct store *s)
{
    int64_t total = 0;
    for (size_t i = 0; i < s->nseg; i++)
        total += s->segs[i].len;
    return total;
}

size_t store_segments(const struct store *s)
{
    return s->nseg;
}

int64_t store_last_segment_start(const struct store *s)
{
    return s->nseg ? s->segs[s->nseg - 1].start : s->next;
}

/* Bytes [a, b) of segment i failed their check: cut it and every segment before it. */
static void cut(struct store *s, size_t i, int64_t a, int64_t b, const char *why)
{
    wait_idle(s); /* no queued job may still name their files: blocks, see writer.h */
    int64_t from = s->segs[0].start, to = s->segs[i].start + s->segs[i].len;
    int64_t seg = s->segs[i].start;
    bool active = i == s->nseg - 1;
    for (size_t k = 0; k <= i; k++)
        seg_remove_at(s, 0);
    if (active) {
        /* The log starts again at the next command boundary appended. */
        s->need_boundary = true;
        if (s->w)
            writer_set_durable(s->w, s->next - 1);
    }
    report(s, STORE_EVENT_CUT,
           "bytes %" PRId64 "..%" PRId64 " (%" PRId64 " bytes) of log segment %" PRId64
           " fail their check (%s): cut %" PRId64 "..%" PRId64 " (%" PRId64
           " bytes, %zu segment(s)) from the history%s",
           a, b - 1, b - a, seg, why, from, to - 1, to - from, i + 1,
           active ? "; the log starts again at the next command boundary" : "");
}

int store_locate(struct store *s, int64_t offset, int *fd, off_t *pos, int64_t *avail)
{
    int64_t end = store_durable_end(s); /* queued bytes are not readable yet */
    if (s->nseg == 0 || offset < s->segs[0].start || offset > end)
        return -1;
    /* Binary search for the last segment starting at or before offset. */
    size_t lo = 0, hi = s->nseg;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (s->segs[mid].start <= offset)
            lo = mid;
        else
            hi = mid;
    }
    struct segment *g = &s->segs[lo];
    int64_t limit = g->start + g->len < end + 1 ? g->start + g->len : end + 1;
    if (offset >= limit)
        return -1;
    int64_t vend = segcheck_end(&g->ver, offset);
    if (vend <= offset) {
        /* Served only once checked: the first read of a range checks it. */
        char path[4096];
        seg_path(s, g->start, "idx", path, sizeof(path));
        struct segcheck_file file = seg_file(g);
        struct segcheck_bad bad;
        if (segcheck_ahead(&g->ver, &file, path, offset, limit, STORE_VERIFY_AHEAD, &bad) != 0) {
            cut(s, lo, bad.a, bad.b, bad.why);
            return -1;
        }
        vend = segcheck_end(&g->ver, offset);
        if (vend <= offset)
            return -1;
    }
    *fd = g->fd;
    *pos = (off_t)(offset - g->start);
    *avail = (vend < limit ? vend : limit) - offset;
    return 0;
}

bool store_verify(struct store *s, int64_t offset)
{
    int fd;
    off_t pos;
    int64_t avail;
    return store_locate(s, offset, &fd, &pos, &avail) == 0;
}

int store_read(struct store *s, int64_t offset, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        int fd;
        off_t pos;
        int64_t avail;
        if (store_locate(s, offset, &fd, &pos, &avail) != 0)
            return -1;
        size_t n = (int64_t)len < avail ? len : (size_t)avail;
        if (writer_pio_all(fd, p, n, pos, false) != 0)
            return -1;
        p += n;
        offset += (int64_t)n;
        len -= n;
    }
    return 0;
}

int store_trim(struct store *s, int64_t keep_from, time_t now)
{
    int deleted = 0;
    int64_t total = store_bytes(s);
    /* The active (last) segment is never deleted. */
    while (s->nseg > 1) {
        const struct segment *g = &s->segs[0];
        bool needed = g->start + g->len > keep_from;
        bool too_big = total > s->p.retain_bytes;
        bool too_old = s->p.retain_age_s > 0 && now - g->mtime > s->p.retain_age_s;
        bool above_min = total - g->len >= s->p.retain_min_bytes;
        if (needed || !(too_big || too_old) || !above_min)
            break;
        wait_idle(s); /* no queued job may still name its files: blocks, see writer.h */
        total -= g->len;
        seg_remove_at(s, 0);
        deleted++;
    }
    return deleted;
}
