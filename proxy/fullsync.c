/*
 * fullsync: the relay's full-sync policy (fullsync.h says what it owns and must not do).
 *
 * A replica that cannot continue waits (REPLICA_WAIT_SNAPSHOT) until a snapshot that fits the
 * history is there and a slot is free (replicas.max-full-syncs): the cached snapshot (sized,
 * sendfile), or, for a replica that announced capa eof, one still arriving on either link,
 * streamed in the EOF format as it fills. A leaf that cannot load the snapshot's RDB version,
 * or dropped several full syncs of it before its first ACK, is refused with -NOMASTERLINK.
 */
#include "fullsync.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backlog.h"
#include "history.h"
#include "journal.h"
#include "log.h"
#include "net.h"
#include "replica.h"
#include "report.h"
#include "snapshot.h"
#include "stats.h"
#include "upstream.h"

#define FETCH_RETRY_MS 1000   /* between failed snapshot fetches */
#define FETCH_WAIT_MAX 600000 /* ... doubling while fetches keep failing, up to this */

struct fullsync {
    const struct config *cfg;
    struct stats *stats;
    struct backlog *backlog;
    const struct history *hist;
    struct replica_set *replicas;
    struct journal *journal;
    struct fullsync_callbacks cb;
    struct upstream *up;        /* borrowed: the main link */
    struct snapshot *snap;      /* owned: the READY snapshot served to full syncs */
    struct upstream *fetch;     /* owned: side link fetching a snapshot, or NULL */
    bool fetch_finished;        /* fetch ended (either way); freed by the cron */
    int64_t fetch_failed_ms;    /* last failed fetch, for the retry delay */
    int fetch_fails;            /* side fetches failed in a row (their retry backs off) */
    int64_t last_fetch_ms;      /* last fresh snapshot started (side link or main sync) */
    int stale_refreshes;        /* fetches in a row that brought nothing newer (an upstream relay
                                 * serving its own cached snapshot): the next refresh waits longer */
    int64_t stale_refresh_ms;   /* when the last of them ended */
    bool main_full_sync;        /* the main link is loading a new history's RDB */
    uint64_t rdb_gen;           /* last id handed to a filling snapshot */
    uint64_t main_gen;          /* id of the main link's filling snapshot, 0 if none */
    uint64_t fetch_gen;         /* id of the side fetch's filling snapshot, 0 if none */
    struct compat_rdb snap_fmt; /* RDB format of snap (read from its file) */
    struct compat_identity snap_ident; /* its writer (aux fields); server UNKNOWN if none */
    bool snap_fmt_known;               /* snap_fmt is snap's */
    struct compat_marks marks;         /* leaves held off: they cannot load the snapshot */
};

static void replica_ended(void *ctx, const struct replica *rep, bool by_peer);

struct fullsync *fullsync_new(const struct fullsync_params *p)
{
    struct fullsync *fs = calloc(1, sizeof(*fs));
    if (!fs)
        abort();
    fs->cfg = p->cfg;
    fs->stats = p->stats;
    fs->backlog = p->backlog;
    fs->hist = p->hist;
    fs->replicas = p->replicas;
    fs->journal = p->journal;
    fs->cb = p->cb;
    replica_set_on_end(fs->replicas, replica_ended, fs);
    return fs;
}

void fullsync_free(struct fullsync *fs, bool keep_file)
{
    if (!fs)
        return;
    upstream_free(fs->fetch);
    if (keep_file)
        snapshot_release(fs->snap);
    else
        snapshot_free(fs->snap);
    free(fs);
}

void fullsync_set_main(struct fullsync *fs, struct upstream *up)
{
    fs->up = up;
}

void fullsync_adopt(struct fullsync *fs, struct snapshot *s)
{
    fs->snap = s;
    fs->snap_fmt_known = false;
}

/* ---- snapshots and the history ---------------------------------------------------------- */

/* s (of the history, and the stream held from the byte after it on) can serve a full sync. */
static bool fits(const struct fullsync *fs, const struct snapshot *s)
{
    bool same =
        history_match(fs->hist, s->replid, strlen(s->replid), s->offset + 1) != HISTORY_NONE;
    return same && s->offset + 1 >= journal_held_start(fs->journal);
}

static bool snapshot_usable(const struct fullsync *fs, const struct snapshot *s)
{
    return s && s->state == SNAPSHOT_READY && fits(fs, s);
}

static void install_snapshot(struct fullsync *fs, struct snapshot *s)
{
    if (fs->snap == s)
        return;
    /* Freeing unlinks the old file; transfers in flight keep reading their own fd. */
    if (fs->snap && strcmp(fs->snap->path, s->path) == 0)
        snapshot_release(fs->snap); /* same name: the new file replaced it already */
    else
        snapshot_free(fs->snap);
    fs->snap = s;
    fs->snap_fmt_known = false;
    journal_write_meta(fs->journal);
}

/*
 * A snapshot still arriving that waiting replicas can be streamed (EOF format) while it
 * fills: the main link's new history, or a side fetch of the current one. Sets *replid to the
 * id to announce and *gen to its progress id. NULL if none.
 */
static const struct snapshot *streamable(struct fullsync *fs, const char **replid, uint64_t *gen,
                                         int64_t *servable)
{
    const struct snapshot *f = fs->main_full_sync ? upstream_filling(fs->up) : NULL;
    if (f && fs->main_gen) {
        *replid = f->replid; /* the history the main link is starting */
        *gen = fs->main_gen;
        *servable = upstream_filling_servable(fs->up);
        return f;
    }
    f = fs->fetch && !fs->fetch_finished ? upstream_filling(fs->fetch) : NULL;
    if (f && fs->fetch_gen && fs->hist->has_history && !fs->main_full_sync && fits(fs, f)) {
        *replid = fs->hist->replid;
        *gen = fs->fetch_gen;
        *servable = upstream_filling_servable(fs->fetch);
        return f;
    }
    return NULL;
}

/* ---- versions: what each leaf can load (compat.h) --------------------------------------- */

/* The RDB format of the cached snapshot (its first bytes, read once), and its writer. */
static struct compat_rdb snap_format(struct fullsync *fs)
{
    if (!fs->snap)
        return (struct compat_rdb){0};
    if (!fs->snap_fmt_known) {
        fs->snap_fmt = (struct compat_rdb){0};
        fs->snap_ident = (struct compat_identity){0};
        int fd = snapshot_open(fs->snap);
        char head[512]; /* the magic and the aux fields that name the writer */
        ssize_t n = fd >= 0 ? pread(fd, head, sizeof(head), 0) : -1;
        if (n < 0 || compat_rdb_parse(head, (size_t)n, &fs->snap_fmt) != 1)
            fs->snap_fmt = (struct compat_rdb){0};
        enum compat_server srv;
        int ver;
        if (n > 0 && compat_rdb_writer(head, (size_t)n, &srv, &ver) == 1) {
            struct compat_identity *id = &fs->snap_ident;
            id->server = srv;
            compat_version_format(ver, id->server_version, sizeof(id->server_version));
            snprintf(id->redis_version, sizeof(id->redis_version), "%s",
                     srv == COMPAT_VALKEY ? "7.2.4" : id->server_version);
        }
        if (fd >= 0)
            close(fd);
        fs->snap_fmt_known = true;
    }
    return fs->snap_fmt;
}

const struct compat_identity *fullsync_writer(struct fullsync *fs)
{
    snap_format(fs);
    return fs->snap && fs->snap_ident.server != COMPAT_UNKNOWN ? &fs->snap_ident : NULL;
}

/* The format a full sync would get now: the cached snapshot's, or that of one arriving. */
static struct compat_rdb serving_format(struct fullsync *fs)
{
    if (snapshot_usable(fs, fs->snap))
        return snap_format(fs);
    struct compat_rdb f = upstream_rdb_format(fs->up);
    if (!f.version && fs->fetch)
        f = upstream_rdb_format(fs->fetch);
    return f.version ? f : snap_format(fs);
}

/*
 * -NOMASTERLINK because a stock replica (syncWithMaster, Redis 7.0 to Valkey 9) takes it for
 * "try later" and retries in a second; any other error makes it fall back to SYNC on the same
 * link and drop its cached master.
 */
const char *fullsync_refusal(struct fullsync *fs, const struct replica_hello *h, char *buf,
                             size_t len)
{
    if (h->rdb_only || h->plain_sync)
        return NULL; /* tools that save or skip the RDB (redis-cli --rdb, --replica) */
    struct compat_rdb f = serving_format(fs);
    if (!f.version)
        return NULL;
    int64_t now = net_now_ms();
    char lv[48], rv[48];
    compat_leaf_desc(&h->leaf, lv, sizeof(lv));
    compat_rdb_desc(&f, rv, sizeof(rv));
    enum compat_verdict v = compat_check(&h->leaf, &f);
    if (v == COMPAT_LOADS) {
        compat_marks_ok(&fs->marks, h->ip, h->listening_port); /* e.g. upgraded in place */
        return NULL;
    }
    if (v == COMPAT_CANNOT) {
        if (compat_marks_cannot(&fs->marks, h->ip, h->listening_port, &h->leaf, &f, now))
            log_warning("relay", h->peer,
                        "replica %s:%d (%s) cannot load this relay's snapshot, %s: its full "
                        "syncs are refused (upstream.announce-version can ask a Valkey master for "
                        "an older format)",
                        h->ip, h->listening_port, lv, rv);
        fs->stats->syncs_refused_incompatible++;
        snprintf(buf, len,
                 "NOMASTERLINK this relay's snapshot is %s, which this replica (%s) cannot load",
                 rv, lv);
        return buf;
    }
    if (compat_marks_held(&fs->marks, h->ip, h->listening_port, &f, now)) {
        fs->stats->syncs_refused_incompatible++;
        snprintf(buf, len,
                 "NOMASTERLINK this replica dropped %d full syncs of this relay's snapshot (%s) "
                 "before acknowledging one: held off, retry later",
                 COMPAT_MAX_FAILS, rv);
        return buf;
    }
    return NULL;
}

/* A session ended: a full sync the leaf dropped before its first ACK counts against it. */
static void replica_ended(void *ctx, const struct replica *rep, bool by_peer)
{
    struct fullsync *fs = ctx;
    const struct replica_hello *h = &rep->hello;
    if (!rep->full_sync || rep->rdb_offset < 0 || h->plain_sync || h->rdb_only)
        return;
    if (rep->acked) {
        compat_marks_ok(&fs->marks, h->ip, h->listening_port);
        return;
    }
    struct compat_rdb f = serving_format(fs);
    if (!by_peer || !f.version || compat_check(&h->leaf, &f) != COMPAT_UNSURE)
        return; /* only a leaf that may not load it (a tool may close after the reply) */
    if (compat_marks_failed(&fs->marks, h->ip, h->listening_port, &h->leaf, &f, net_now_ms())) {
        char lv[48], rv[48];
        compat_leaf_desc(&h->leaf, lv, sizeof(lv));
        compat_rdb_desc(&f, rv, sizeof(rv));
        log_warning("relay", h->peer,
                    "replica %s:%d (%s) dropped %d full syncs in a row before its first ACK: it "
                    "probably cannot load this relay's snapshot, %s; its full syncs are held off",
                    h->ip, h->listening_port, lv, COMPAT_MAX_FAILS, rv);
    }
}

/* ---- serving waiting replicas ------------------------------------------------------------ */

static void serve_waiting(struct fullsync *fs)
{
    bool ready = snapshot_usable(fs, fs->snap);
    const char *sreplid = NULL;
    uint64_t sgen = 0;
    int64_t servable = 0;
    const struct snapshot *filling = ready ? NULL : streamable(fs, &sreplid, &sgen, &servable);
    if (!ready && !filling)
        return;
    struct replica *next;
    for (struct replica *rep = replica_set_first(fs->replicas); rep; rep = next) {
        next = rep->next;
        if (rep->state != REPLICA_WAIT_SNAPSHOT)
            continue;
        /* Only replicas that announced capa eof can take an RDB of unknown length. */
        if (!ready && (!rep->hello.capa_eof || rep->hello.plain_sync || rep->hello.rdb_only))
            continue;
        char why[384];
        if (fullsync_refusal(fs, &rep->hello, why, sizeof(why))) {
            replica_refuse(rep, why);
            continue;
        }
        if (fs->cfg->max_full_syncs > 0 &&
            (int64_t)replica_set_sending(fs->replicas) >= fs->cfg->max_full_syncs)
            break; /* the rest keep waiting, with keepalives, for a slot */
        fs->stats->sync_full++;
        if (ready) {
            replica_start_full(rep, fs->snap, fs->hist->replid);
        } else {
            replica_start_streamed(rep, filling->tmp_path, filling->offset, sreplid, sgen);
            replica_set_rdb_progress(fs->replicas, sgen, servable, false);
        }
    }
}

void fullsync_install(struct fullsync *fs, struct snapshot *s, uint64_t gen)
{
    install_snapshot(fs, s);
    /* Replicas streamed this RDB get its end now: the backlog already starts after it. */
    if (gen)
        replica_set_rdb_progress(fs->replicas, gen, s->size, true);
    serve_waiting(fs);
}

/* More of link's RDB arrived: pass it on to the replicas streamed it, start waiting ones. */
static void rdb_progress(struct fullsync *fs, const struct upstream *link, uint64_t *gen)
{
    const struct snapshot *f = upstream_filling(link);
    if (!f)
        return;
    if (!*gen)
        *gen = ++fs->rdb_gen;
    /* Never what may be the start of the upstream's end mark: it is cut from the file once it
     * completes, and a replica sent it would get bytes that are not the RDB. */
    replica_set_rdb_progress(fs->replicas, *gen, upstream_filling_servable(link), false);
    if (replica_set_waiting(fs->replicas))
        serve_waiting(fs);
}

/* ---- the main link ----------------------------------------------------------------------- */

void fullsync_main_started(struct fullsync *fs)
{
    fs->main_full_sync = true;
    fs->last_fetch_ms = net_now_ms();
}

void fullsync_main_progress(struct fullsync *fs)
{
    rdb_progress(fs, fs->up, &fs->main_gen);
}

void fullsync_main_down(struct fullsync *fs)
{
    fs->main_full_sync = false;
    if (fs->main_gen)
        replica_set_rdb_abort(fs->replicas, fs->main_gen, "the upstream full sync failed");
    fs->main_gen = 0;
}

uint64_t fullsync_main_ended(struct fullsync *fs)
{
    fs->main_full_sync = false;
    uint64_t gen = fs->main_gen;
    fs->main_gen = 0;
    return gen;
}

bool fullsync_main_syncing(const struct fullsync *fs)
{
    return fs->main_full_sync;
}

void fullsync_repoint(struct fullsync *fs)
{
    if (fs->fetch) {
        upstream_free(fs->fetch);
        fs->fetch = NULL;
    }
    /* Snapshots still arriving on the old links will never complete. */
    if (fs->fetch_gen)
        replica_set_rdb_abort(fs->replicas, fs->fetch_gen, "the upstream changed");
    if (fs->main_gen)
        replica_set_rdb_abort(fs->replicas, fs->main_gen, "the upstream changed");
    fs->fetch_gen = fs->main_gen = 0;
    fs->main_full_sync = false;
}

/* ---- the side link: a fresh snapshot of the current history ------------------------------ */

/* Either link's RDB failed its check; the link logs why and fails. */
static void fetch_on_rdb_rejected(void *ctx, const char *why)
{
    struct fullsync *fs = ctx;
    (void)why;
    fs->stats->snapshots_rejected++;
}

static void fetch_on_rdb_progress(void *ctx)
{
    struct fullsync *fs = ctx;
    rdb_progress(fs, fs->fetch, &fs->fetch_gen);
}

static void fetch_position(void *ctx, char replid[RESP_REPLID_LEN + 1], int64_t *offset)
{
    (void)ctx;
    replid[0] = '\0';
    *offset = -1;
}

/* Failures and stale refreshes in a row wait FETCH_RETRY_MS, doubling, up to FETCH_WAIT_MAX. */
static int64_t backoff_ms(int in_a_row)
{
    int64_t wait = FETCH_RETRY_MS;
    for (int i = 1; i < in_a_row && wait < FETCH_WAIT_MAX; i++)
        wait *= 2;
    return wait < FETCH_WAIT_MAX ? wait : FETCH_WAIT_MAX;
}

/* A fetched snapshot no newer than the cached one: the upstream (a relay) served the snapshot
 * it caches itself, and asking again at once would bring the same file. */
static void note_freshness(struct fullsync *fs, const struct snapshot *s)
{
    if (!fs->snap || s->offset > fs->snap->offset || strcmp(s->replid, fs->snap->replid) != 0) {
        fs->stale_refreshes = 0;
        return;
    }
    fs->stale_refreshes++;
    fs->stale_refresh_ms = net_now_ms();
    log_notice("relay", "-",
               "fetched snapshot (offset %" PRId64 ") is no newer than the cached one: the "
               "upstream serves a cached snapshot; next refresh in %" PRId64 " s at the earliest",
               s->offset, backoff_ms(fs->stale_refreshes) / 1000);
}

static void fetch_on_snapshot(void *ctx, struct snapshot *s)
{
    struct fullsync *fs = ctx;
    fs->fetch_finished = true;
    fs->fetch_fails = 0;
    uint64_t gen = fs->fetch_gen;
    fs->fetch_gen = 0;
    if (!snapshot_usable(fs, s)) {
        log_warning("relay", "-",
                    "fetched snapshot (replid %s offset %" PRId64
                    ") does not fit the current history; discarded",
                    s->replid, s->offset);
        replica_set_rdb_abort(fs->replicas, gen, "the snapshot it was sent was discarded");
        snapshot_free(s);
        fs->fetch_failed_ms = net_now_ms();
        return;
    }
    note_freshness(fs, s);
    fullsync_install(fs, s, gen);
}

static void fetch_on_down(void *ctx)
{
    struct fullsync *fs = ctx;
    fs->fetch_finished = true;
    fs->fetch_fails++;
    fs->fetch_failed_ms = net_now_ms();
    if (fs->fetch_gen)
        replica_set_rdb_abort(fs->replicas, fs->fetch_gen, "the snapshot fetch failed");
    fs->fetch_gen = 0;
}

/* Start a side link for a fresh snapshot, unless one is coming anyway. */
static void request_snapshot(struct fullsync *fs)
{
    if (fs->fetch || fs->main_full_sync || !fs->cfg->upstream_host[0])
        return;
    if (!upstream_link_up(fs->up))
        return; /* fetched once the main link is back: it must agree on the history */
    int64_t now = net_now_ms();
    /* Each fetch costs the master a fork: failures in a row wait longer (up to 10 min). */
    if (fs->fetch_failed_ms && now - fs->fetch_failed_ms < backoff_ms(fs->fetch_fails))
        return;
    fs->last_fetch_ms = now;
    struct upstream_callbacks cb = {
        .ctx = fs,
        .position = fetch_position,
        .on_snapshot = fetch_on_snapshot,
        .on_down = fetch_on_down,
        .on_rdb_progress = fetch_on_rdb_progress,
        .on_rdb_rejected = fetch_on_rdb_rejected,
    };
    fs->fetch = fs->cb.new_fetch(fs->cb.ctx, &cb);
    fs->fetch_finished = false;
    fs->fetch_gen = 0;
    fs->stats->snapshot_fetches++;
    log_notice("relay", "-", "fetching a fresh snapshot on a side connection (rdb-only)");
    upstream_start(fs->fetch);
}

void fullsync_serve(struct fullsync *fs, struct replica *rep)
{
    replica_start_full(rep, NULL, NULL); /* waits until a snapshot and a slot are there */
    if (!snapshot_usable(fs, fs->snap))
        request_snapshot(fs);
    serve_waiting(fs); /* from the cached snapshot, or streamed from one still arriving */
}

/* ---- cron and facts ---------------------------------------------------------------------- */

void fullsync_link_cron(struct fullsync *fs, int64_t now)
{
    if (!fs->fetch)
        return;
    if (fs->fetch_finished) {
        upstream_free(fs->fetch);
        fs->fetch = NULL;
    } else {
        upstream_cron(fs->fetch, now);
    }
}

/* Refresh policy: a full sync should not have to replay a long log; at most one refresh per
 * interval, and after refreshes that brought nothing newer, one per back-off. (A fetch for
 * waiting replicas is not held back: one fetch serves the whole wave, and only one runs at a
 * time.) */
static bool refresh_due(const struct fullsync *fs, int64_t now)
{
    const struct config *c = fs->cfg;
    if (!fs->hist->has_history || c->snapshot_refresh_bytes <= 0 || !fs->snap ||
        backlog_end(fs->backlog) - fs->snap->offset <= c->snapshot_refresh_bytes)
        return false;
    if (fs->last_fetch_ms && now - fs->last_fetch_ms < c->snapshot_interval_ms)
        return false;
    return !fs->stale_refreshes || now - fs->stale_refresh_ms >= backoff_ms(fs->stale_refreshes);
}

void fullsync_cron(struct fullsync *fs, int64_t now)
{
    if (replica_set_waiting(fs->replicas) > 0) {
        if (snapshot_usable(fs, fs->snap))
            serve_waiting(fs);
        else
            request_snapshot(fs);
    } else if (refresh_due(fs, now)) {
        request_snapshot(fs);
    }
}

const struct snapshot *fullsync_snapshot(const struct fullsync *fs)
{
    return fs->snap;
}

void fullsync_facts(struct fullsync *fs, struct report_facts *f)
{
    const struct snapshot *s = fs->snap;
    f->snap = (struct report_snapshot){
        .present = s != NULL,
        .state = snapshot_state_name(s ? s->state : SNAPSHOT_EMPTY),
        .offset = s ? s->offset : -1,
        .size = s ? s->size : 0,
        .ready_time = s ? s->ready_time : 0,
        .format = snap_format(fs),
        .fetch_in_progress = fs->fetch && !fs->fetch_finished,
        .replicas_waiting = replica_set_waiting(fs->replicas),
    };
    f->refused_count = compat_marks_count(&fs->marks);
    f->nrefused = 0;
    for (int i = 0; i < fs->marks.n && f->nrefused < COMPAT_LEAVES; i++) {
        const struct compat_mark *m = &fs->marks.m[i];
        if (!m->marked)
            continue;
        struct report_refused *row = &f->refused[f->nrefused++];
        snprintf(row->ip, sizeof(row->ip), "%s", m->ip);
        row->port = m->port;
        compat_leaf_desc(&m->leaf, row->leaf, sizeof(row->leaf));
        row->rdb_version = m->rdb_version;
        row->held_until_ms = m->held_until_ms;
        snprintf(row->reason, sizeof(row->reason), "%s", m->reason);
    }
}
