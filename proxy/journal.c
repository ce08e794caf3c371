/*
 * journal: the relay's side of the disk log (journal.h says what it owns and must not do).
 *
 * Replicas are fed from memory as the stream arrives, not after the log wrote it, so the log
 * takes the stream in batches of at least LOG_BATCH_BYTES (or what the cron finds pending):
 * its writer threads write whole pages at a time past the page cache, where a write per small
 * upstream read would copy each into fresh page-cache pages. The batches are the backlog's
 * blocks, referenced until the writer hands them back (store_token_done).
 */
#include "journal.h"

#include <event2/event.h>
#include <assert.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "backlog.h"
#include "history.h"
#include "log.h"
#include "net.h"
#include "rdbinfo.h"
#include "report.h"
#include "snapshot.h"
#include "stats.h"
#include "store.h"

#define SYNC_MS         1000          /* fsync of the disk log, like appendfsync everysec */
#define LOG_BATCH_BYTES (1024 * 1024) /* stream bytes handed to the log at once, at least */
#define DISK_RETRY_MS   1000          /* the disk log, off after a write error: first retry */
#define DISK_RETRY_MAX  60000         /* ... doubling while restarts keep failing, up to this */
#define DISK_ROOM_MIN   (1 << 20) /* free bytes wanted in dir to start the log again, at least */

struct journal {
    struct event_base *base;  /* borrowed */
    const struct config *cfg; /* borrowed */
    struct backlog *backlog;  /* borrowed */
    struct history *hist;     /* borrowed: restored by recovery, else only read */
    struct stats *stats;      /* borrowed */
    struct journal_callbacks cb;
    struct store *store; /* owned: the disk log, NULL with backlog.disk = no */
    bool broken;         /* a write failed: the log is off until it restarts (cron) */
    int64_t off_ms;      /* when the log went off */
    int64_t on_ms;       /* when it last started again, 0 if never */
    int64_t retry_ms;    /* delay before the next try to start it again */
    bool low_said;       /* "not enough room" was logged for this outage */
    struct store_piece pend[STORE_MAX_PIECES]; /* stream bytes not yet handed to the log */
    int npend;
    size_t pend_bytes;
    int64_t pend_boundary;    /* a command boundary in them (position), -1 if none */
    struct event *store_done; /* owned: the log writer finished queued appends */
    int64_t last_sync_ms;     /* last fsync of the log */
};

struct journal *journal_new(struct event_base *base, const struct config *cfg,
                            struct backlog *backlog, struct history *hist, struct stats *stats,
                            const struct journal_callbacks *cb)
{
    struct journal *j = calloc(1, sizeof(*j));
    if (!j)
        abort();
    j->base = base;
    j->cfg = cfg;
    j->backlog = backlog;
    j->hist = hist;
    j->stats = stats;
    j->cb = *cb;
    j->pend_boundary = -1;
    return j;
}

static bool usable(const struct journal *j)
{
    return j->store && !j->broken;
}

bool journal_enabled(const struct journal *j)
{
    return j->store != NULL;
}

/* A write to the log failed: the log is off (nothing more is appended, PSYNCs are decided
 * on memory alone) until the cron finds room again and restarts it. */
static void store_failed(struct journal *j, const char *err)
{
    int64_t now = net_now_ms();
    /* A restart that fails again soon backs off, so a dead disk is not retried each second. */
    bool soon = j->on_ms && now - j->on_ms < DISK_RETRY_MAX;
    j->retry_ms = !soon                              ? DISK_RETRY_MS
                  : j->retry_ms * 2 > DISK_RETRY_MAX ? DISK_RETRY_MAX
                                                     : j->retry_ms * 2;
    log_warning("relay", "-",
                "disk log off after a write error: %s; it starts again by itself once %s has "
                "room (next check in %" PRId64 " ms)",
                err, j->cfg->dir, j->retry_ms);
    j->broken = true;
    j->off_ms = now;
    j->low_said = false;
    /* Replicas behind memory are not held any more: dropped, not left waiting for a log that
     * does not move (they PSYNC again and get what memory holds, or a full sync). */
    if (j->cb.set_store)
        j->cb.set_store(j->cb.ctx, NULL);
}

/* The log is in use again (a new history, or a restart after a write error). */
static void store_back(struct journal *j)
{
    j->broken = false;
    j->cb.set_store(j->cb.ctx, j->store);
}

/* Forget the pending stream bytes (their history is being replaced, or the log took them). */
static void drop_pending(struct journal *j)
{
    for (int i = 0; i < j->npend; i++)
        backlog_block_unref(j->pend[i].token);
    j->npend = 0;
    j->pend_bytes = 0;
    j->pend_boundary = -1;
}

/* Hand the pending stream bytes to the log (queued for its writer thread when it has one). */
void journal_flush(struct journal *j)
{
    if (j->npend == 0)
        return;
    char err[256];
    int rc = usable(j) ? store_append(j->store, j->pend, j->npend, j->pend_boundary, true, err,
                                      sizeof(err))
                       : 0;
    if (rc == 1)
        j->npend = 0; /* queued: the writer hands the references back */
    else if (rc < 0)
        store_failed(j, err);
    drop_pending(j);
}

int64_t journal_held_start(const struct journal *j)
{
    int64_t s = backlog_start(j->backlog);
    if (usable(j) && store_start(j->store) < s && store_end(j->store) >= s - 1)
        s = store_start(j->store);
    return s;
}

static void write_meta(struct journal *j, const struct snapshot *snap)
{
    if (!j->store)
        return;
    struct store_meta m = {.second_replid_offset = j->hist->second_replid_offset,
                           .snapshot_offset = -1};
    if (j->hist->has_history) {
        memcpy(m.replid, j->hist->replid, RESP_REPLID_LEN + 1);
        memcpy(m.replid2, j->hist->replid2, RESP_REPLID_LEN + 1);
    }
    if (snap && snap->state == SNAPSHOT_READY) {
        snprintf(m.snapshot_file, sizeof(m.snapshot_file), "%s", snapshot_file_name(snap));
        memcpy(m.snapshot_replid, snap->replid, RESP_REPLID_LEN + 1);
        m.snapshot_offset = snap->offset;
        m.snapshot_size = snap->size;
    }
    char err[256];
    if (store_write_meta(j->store, &m, err, sizeof(err)) != 0)
        log_warning("relay", "-", "cannot persist meta: %s", err);
}

void journal_write_meta(struct journal *j)
{
    if (j->store)
        write_meta(j, j->cb.snapshot(j->cb.ctx));
}

/* A queued log write completed: its backlog block may go. */
static void store_token_done(void *ctx, void *token)
{
    (void)ctx;
    backlog_block_unref(token);
}

static void store_done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct journal *j = arg;
    char err[256];
    if (store_collect(j->store, err, sizeof(err)) != 0 && !j->broken)
        store_failed(j, err);
    j->cb.feed(j->cb.ctx);
}

/*
 * The log is written from the backlog's blocks, which stay referenced until the write is
 * collected (the writer threads only read them; only this thread counts references). One
 * block at a time: the trim of a later append could drop an earlier block.
 */
void journal_append(struct journal *j, const char *buf, size_t len, ssize_t boundary)
{
    if (!usable(j)) {
        backlog_append(j->backlog, buf, len);
        return;
    }
    size_t done = 0;
    while (done < len) {
        size_t k = backlog_tail_room(j->backlog);
        if (k > len - done)
            k = len - done;
        int64_t off = backlog_end(j->backlog) + 1;
        backlog_append(j->backlog, buf + done, k);
        struct backlog_block *blk;
        const char *data;
        size_t got = backlog_peek(j->backlog, off, &data, &blk);
        assert(got == k);
        if (j->pend_boundary < 0 && boundary >= (ssize_t)done && (size_t)boundary <= done + k)
            j->pend_boundary = (int64_t)(j->pend_bytes + ((size_t)boundary - done));
        struct store_piece *last = j->npend ? &j->pend[j->npend - 1] : NULL;
        if (last && last->token == blk && (const char *)last->buf + last->len == data) {
            last->len += k; /* the same block, right after: one piece */
        } else {
            backlog_block_ref(blk);
            j->pend[j->npend++] = (struct store_piece){.buf = data, .len = k, .token = blk};
        }
        j->pend_bytes += k;
        done += k;
        if (j->npend == STORE_MAX_PIECES)
            journal_flush(j);
    }
    /* At most the backlog's limit pending: the log then always reaches the backlog's start,
     * so every offset between the log's start and the stream's end stays servable. */
    size_t limit = backlog_limit(j->backlog);
    if (j->pend_bytes >= (limit < LOG_BATCH_BYTES ? limit : LOG_BATCH_BYTES))
        journal_flush(j);
}

void journal_new_history(struct journal *j, int64_t next)
{
    drop_pending(j);
    backlog_reset(j->backlog, next);
    if (!j->store)
        return;
    char err[256];
    if (store_reset(j->store, next, err, sizeof(err)) != 0)
        log_warning("relay", "-", "cannot reset the disk log: %s", err);
    store_back(j);
    j->cb.feed(j->cb.ctx);
}

void journal_verify(struct journal *j, int64_t offset)
{
    if (usable(j) && offset < backlog_start(j->backlog))
        (void)store_verify(j->store, offset); /* bytes that fail are cut now: a full sync */
}

void journal_facts(const struct journal *j, struct report_disk *d)
{
    *d = (struct report_disk){
        .present = j->store != NULL,
        .enabled = usable(j),
        .direct_io = usable(j) && store_direct_io(j->store),
        .first = j->store ? store_start(j->store) : -1,
        .last = j->store ? store_end(j->store) : -1,
        .bytes = j->store ? store_bytes(j->store) : 0,
        .segments = j->store ? store_segments(j->store) : 0,
    };
}

/* ---- cron ------------------------------------------------------------------------------ */

/* Free bytes in dir for the log, or -1 if statvfs fails. */
static int64_t disk_room(const struct journal *j)
{
    struct statvfs v;
    if (statvfs(j->cfg->dir, &v) != 0)
        return -1;
    return (int64_t)v.f_bavail * (int64_t)v.f_frsize;
}

/*
 * The log went off after a write error: once dir has room for two segments again (at least
 * DISK_ROOM_MIN), start it again at the stream's current position. That position is not known
 * to be a command boundary, so the store skips to the next one; the old segments end before
 * the hole and are dropped (the store reports them): the log is contiguous again from there.
 */
static void disk_try_restart(struct journal *j, int64_t now)
{
    if (!j->broken || !j->hist->has_history || now - j->off_ms < j->retry_ms)
        return;
    int64_t want = 2 * j->cfg->segment_bytes;
    want = want < DISK_ROOM_MIN ? DISK_ROOM_MIN : want > (1LL << 30) ? (1LL << 30) : want;
    int64_t room = disk_room(j);
    if (room >= 0 && room < want) {
        if (!j->low_said)
            log_notice("relay", "-",
                       "disk log still off: %" PRId64 " bytes free in %s, %" PRId64
                       " wanted to start it again",
                       room, j->cfg->dir, want);
        j->low_said = true;
        return;
    }
    drop_pending(j);
    int64_t next = backlog_end(j->backlog) + 1;
    char err[256];
    if (store_restart(j->store, next, err, sizeof(err)) != 0) {
        j->off_ms = now;
        log_warning("relay", "-", "disk log: cannot start again: %s", err);
        return;
    }
    store_back(j);
    j->on_ms = now;
    j->stats->disk_log_restarts++;
    log_notice("relay", "-",
               "disk log on again (%" PRId64 " bytes free in %s): it holds the stream from the "
               "first command boundary at or after offset %" PRId64,
               room, j->cfg->dir, next);
    journal_write_meta(j);
}

/* Once a second: fsync the log, apply retention (never under a reader), restart it. */
void journal_cron(struct journal *j, int64_t now)
{
    if (!j->store || now - j->last_sync_ms < SYNC_MS)
        return;
    j->last_sync_ms = now;
    char err[256];
    disk_try_restart(j, now);
    if (usable(j) && store_sync(j->store, err, sizeof(err)) != 0)
        log_warning("relay", "-", "%s", err);
    int64_t keep_from = j->cb.keep_from(j->cb.ctx);
    int n = store_trim(j->store, keep_from, time(NULL));
    if (n > 0) {
        log_info("relay", "-",
                 "retention: deleted %d log segment(s); disk log now %" PRId64 "..%" PRId64, n,
                 store_start(j->store), store_end(j->store));
        journal_write_meta(j);
    }
}

/* ---- start-up and stop ----------------------------------------------------------------- */

/* What the store dropped on its own: logged, and meta rewritten once the store is open. */
static void store_report(void *ctx, enum store_event ev, const char *text)
{
    struct journal *j = ctx;
    log_warning("relay", "-", "disk log: %s", text);
    if (ev == STORE_EVENT_CUT) {
        j->stats->disk_log_cuts++;
        journal_write_meta(j);
    }
}

static struct store_params store_params_of(const struct config *cfg)
{
    struct store_params sp = {
        .dir = cfg->dir,
        .segment_bytes = cfg->segment_bytes,
        .retain_bytes = cfg->disk_bytes,
        .retain_age_s = cfg->disk_max_age_ms / 1000,
        .retain_min_bytes = cfg->disk_min_bytes,
        .direct = strcmp(cfg->disk_direct, "yes") == 0,
    };
    return sp;
}

void journal_set_retention(struct journal *j, const struct config *cfg)
{
    if (!j->store)
        return;
    struct store_params sp = store_params_of(cfg);
    store_set_retention(j->store, &sp);
}

/* Remove snapshot files that meta does not point at (left by a crash). */
static void remove_stale_files(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        bool ours = strncmp(de->d_name, "temp-snapshot-", 14) == 0 ||
                    strncmp(de->d_name, "snapshot-", 9) == 0;
        if (!ours || strcmp(de->d_name, keep) == 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

/* Rebuild the stream framing at the end of the log: segments start at command boundaries. */
static int rebuild_framing(struct journal *j, struct resp_stream *scan)
{
    resp_stream_init(scan);
    int64_t off = store_last_segment_start(j->store), end = store_end(j->store);
    char *buf = malloc(1 << 20);
    if (!buf)
        abort();
    int rc = 0;
    while (off <= end) {
        size_t n = end - off + 1 < (1 << 20) ? (size_t)(end - off + 1) : (1 << 20);
        bool getack;
        char err[RESP_ERR_LEN];
        size_t done = 0;
        if (store_read(j->store, off, buf, n) != 0) {
            rc = -1;
            break;
        }
        while (done < n) {
            ssize_t k = resp_stream_scan(scan, buf + done, n - done, &getack, err, sizeof(err));
            if (k < 0) {
                rc = -1;
                break;
            }
            done += (size_t)k;
        }
        if (rc != 0)
            break;
        off += (int64_t)n;
    }
    free(buf);
    return rc;
}

/* Start-up found the disk log useless (why): drop it, saying what goes, and start afresh. */
static int start_afresh(struct journal *j, const char *why, char *err, size_t errlen)
{
    if (store_segments(j->store) > 0)
        log_warning("relay", "-",
                    "%s: dropped the disk log %" PRId64 "..%" PRId64 " (%" PRId64
                    " bytes, %zu segment(s)); starting afresh",
                    why, store_start(j->store), store_end(j->store), store_bytes(j->store),
                    store_segments(j->store));
    else
        log_warning("relay", "-", "%s; starting afresh", why);
    if (store_reset(j->store, 1, err, errlen) != 0)
        return -1;
    remove_stale_files(j->cfg->dir, "");
    return 0;
}

/*
 * Does meta agree with the snapshot file it names? Its size, and the RDB's own repl-offset
 * aux field (what the master's replication offset was when it made the RDB: the offset of
 * its +FULLRESYNC) where the RDB has one. A missing file is no disagreement: the snapshot is
 * just not usable (snapshot_adopt says so), the history in the log still is.
 */
static bool meta_fits_snapshot(const struct journal *j, const struct store_meta *m, char *why,
                               size_t whylen)
{
    if (!m->snapshot_file[0])
        return true;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", j->cfg->dir, m->snapshot_file);
    struct stat st;
    if (stat(path, &st) != 0)
        return true;
    if (st.st_size != m->snapshot_size) {
        snprintf(why, whylen, "says snapshot %s has %" PRId64 " bytes, the file has %lld",
                 m->snapshot_file, m->snapshot_size, (long long)st.st_size);
        return false;
    }
    struct rdbinfo info;
    char err[256];
    if (rdbinfo_read_file(path, &info, err, sizeof(err)) == RDBINFO_OK && info.has_repl_offset &&
        info.repl_offset != m->snapshot_offset) {
        snprintf(why, whylen,
                 "says snapshot %s is at offset %" PRId64 ", the RDB's repl-offset is %" PRId64,
                 m->snapshot_file, m->snapshot_offset, info.repl_offset);
        return false;
    }
    return true;
}

/* The snapshot meta names, if it still checks out (a corrupt one is counted as rejected). */
static struct snapshot *adopt_snapshot(struct journal *j, const struct store_meta *m)
{
    if (!m->snapshot_file[0])
        return NULL;
    char serr[512];
    bool corrupt;
    struct snapshot *s =
        snapshot_adopt(j->cfg->dir, m->snapshot_file, m->snapshot_replid, m->snapshot_offset,
                       m->snapshot_size, &corrupt, serr, sizeof(serr));
    if (!s) {
        log_warning("relay", "-", "cached snapshot not usable (a fresh one will be fetched): %s",
                    serr);
        if (corrupt)
            j->stats->snapshots_rejected++;
    }
    return s;
}

/* Open the disk log and take up the history it holds. */
static int recover(struct journal *j, struct resp_stream *scan, bool *framed,
                   struct snapshot **snap, char *err, size_t errlen)
{
    struct store_params sp = store_params_of(j->cfg);
    sp.report = store_report;
    sp.report_ctx = j;
    struct store_meta m;
    bool has_meta;
    j->store = store_open(&sp, &m, &has_meta, err, errlen);
    if (!j->store)
        return -1;
    j->cb.set_store(j->cb.ctx, j->store);
    if (!has_meta || !m.replid[0]) {
        if (has_meta && store_segments(j->store) > 0)
            return start_afresh(j, "meta holds no history", err, errlen);
        remove_stale_files(j->cfg->dir, "");
        return 0;
    }
    char why[512];
    if (!meta_fits_snapshot(j, &m, why, sizeof(why))) {
        /* Which of the two is wrong cannot be told: neither is trusted. */
        if (store_discard_meta(j->store, why, err, errlen) != 0)
            return -1;
        remove_stale_files(j->cfg->dir, "");
        return 0;
    }
    if (rebuild_framing(j, scan) != 0)
        return start_afresh(j, "disk log does not parse as a stream", err, errlen);
    if (store_segments(j->store) == 0 && m.snapshot_offset != store_end(j->store)) {
        snprintf(why, sizeof(why),
                 "disk log lost its position (no segment; meta says it ended at %" PRId64
                 ", its snapshot is at %" PRId64 ")",
                 m.log_end, m.snapshot_offset);
        return start_afresh(j, why, err, errlen);
    }
    if (m.version < 2)
        log_notice("relay", "-",
                   "meta was written by an older version (no checksum): it agrees with its "
                   "snapshot; rewritten with one");
    *framed = true;
    history_restore(j->hist, m.replid, m.replid2, m.second_replid_offset);
    backlog_reset(j->backlog, store_end(j->store) + 1);
    *snap = adopt_snapshot(j, &m);
    remove_stale_files(j->cfg->dir, *snap ? snapshot_file_name(*snap) : "");
    log_notice("relay", "-",
               "recovered history %s: disk log %" PRId64 "..%" PRId64 " (%zu segments), "
               "snapshot %s at %" PRId64,
               j->hist->replid, store_start(j->store), store_end(j->store),
               store_segments(j->store), *snap ? snapshot_file_name(*snap) : "none",
               *snap ? (*snap)->offset : (int64_t)-1);
    write_meta(j, *snap); /* in the current format, and with what recovery cut */
    return 0;
}

int journal_open(struct journal *j, struct resp_stream *scan, bool *framed, struct snapshot **snap,
                 char *err, size_t errlen)
{
    *framed = false;
    *snap = NULL;
    int fd;
    if (recover(j, scan, framed, snap, err, errlen) != 0 ||
        store_start_writer(j->store, store_token_done, j, &fd, err, errlen) != 0)
        return -1;
    j->store_done = event_new(j->base, fd, EV_READ | EV_PERSIST, store_done_cb, j);
    if (!j->store_done || event_add(j->store_done, NULL) != 0)
        abort();
    return 0;
}

void journal_free(struct journal *j)
{
    if (!j)
        return;
    if (j->store) {
        /* Keep what a restart continues from: the log, the snapshot and meta. */
        char err[256];
        j->cb.set_store = NULL; /* the replicas are gone: a failing last write tells none */
        journal_flush(j);
        if (usable(j) && store_sync(j->store, err, sizeof(err)) != 0)
            log_warning("relay", "-", "%s", err);
        journal_write_meta(j);
        if (j->store_done)
            event_free(j->store_done);
        store_close(j->store); /* hands back the last queued blocks: before backlog_free */
    }
    free(j);
}
