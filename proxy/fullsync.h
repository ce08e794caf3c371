/*
 * fullsync: the relay's full-sync policy. Owns the cached snapshot served to full syncs (and
 * its RDB format and writer, read from the file once), the side link that fetches a fresh one
 * (rdb-only, with its retry back-off), the progress ids of snapshots still arriving on either
 * link (streamed to waiting replicas in the EOF format), and the table of leaves held off
 * because they cannot load the snapshot. Decides which waiting replica gets what, and when, and
 * which are refused (-NOMASTERLINK).
 * Borrows the configuration, the counters, the backlog and the history (read only), the
 * replica set, the journal (where the stream is held from, meta) and the main link (read:
 * what arrives on it). Never changes the history or the stream: relay.c does, on the main
 * link's callbacks, and hands the snapshot here. Loop thread only; logs as the relay.
 */
#ifndef CASCADE_FULLSYNC_H
#define CASCADE_FULLSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "config.h"

struct backlog;
struct fullsync;
struct history;
struct journal;
struct replica;
struct replica_hello;
struct replica_set;
struct report_facts;
struct snapshot;
struct stats;
struct upstream;
struct upstream_callbacks;

struct fullsync_callbacks {
    void *ctx;
    /* A new rdb-only side link to the configured upstream with cb (not started), or NULL. */
    struct upstream *(*new_fetch)(void *ctx, const struct upstream_callbacks *cb);
};

struct fullsync_params {
    const struct config *cfg;
    struct stats *stats;
    struct backlog *backlog;
    const struct history *hist;
    struct replica_set *replicas; /* its end-of-session hook is set here */
    struct journal *journal;
    struct fullsync_callbacks cb;
};

struct fullsync *fullsync_new(const struct fullsync_params *p);

/* Frees the side link and the snapshot: its file stays with keep_file (the disk log and meta
 * point at it), else it is removed. */
void fullsync_free(struct fullsync *fs, bool keep_file);

/* The main link (made after fullsync_new): what arrives on it can be streamed. */
void fullsync_set_main(struct fullsync *fs, struct upstream *up);

/* The snapshot recovery found (start-up, meta already written for it). */
void fullsync_adopt(struct fullsync *fs, struct snapshot *s);

/* ---- the main link ---- */

/* It got +FULLRESYNC: a new snapshot arrives on it. */
void fullsync_main_started(struct fullsync *fs);
/* More of its RDB arrived. */
void fullsync_main_progress(struct fullsync *fs);
/* It went down: a full sync on it failed. */
void fullsync_main_down(struct fullsync *fs);
/* Its full sync ended: returns the progress id of its RDB (0 if it was streamed to none). */
uint64_t fullsync_main_ended(struct fullsync *fs);
/* True while the main link loads an RDB (a history is coming). */
bool fullsync_main_syncing(const struct fullsync *fs);

/* The upstream changed: the side link goes, snapshots arriving on the old links never end. */
void fullsync_repoint(struct fullsync *fs);

/* Take s (READY) as the cached snapshot (meta rewritten); gen: the progress id it had while
 * it arrived (0 if none), whose streamed replicas are told its end; waiting replicas served. */
void fullsync_install(struct fullsync *fs, struct snapshot *s, uint64_t gen);

/* ---- downstream ---- */

/* NULL if the leaf may have a full sync; else the error line to refuse it with, in buf. */
const char *fullsync_refusal(struct fullsync *fs, const struct replica_hello *h, char *buf,
                             size_t len);

/* rep (attached) wants a full sync: it waits for a snapshot and a slot, a fresh snapshot is
 * fetched if the cached one cannot serve it, and it is served now if it can be. */
void fullsync_serve(struct fullsync *fs, struct replica *rep);

/* Each cron tick: the side link's cron (or its free once it ended). */
void fullsync_link_cron(struct fullsync *fs, int64_t now);
/* Each cron tick, after the replicas': serve or fetch for waiting replicas, refresh policy. */
void fullsync_cron(struct fullsync *fs, int64_t now);

/* ---- facts for INFO and the metrics ---- */

const struct snapshot *fullsync_snapshot(const struct fullsync *fs); /* cached, or NULL */
/* Who wrote the cached snapshot, by its aux fields; NULL if unknown. */
const struct compat_identity *fullsync_writer(struct fullsync *fs);
/* What INFO and the metrics say of it (f->snap), and of the leaves held off (f->refused...). */
void fullsync_facts(struct fullsync *fs, struct report_facts *f);

#endif
