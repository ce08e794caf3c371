/*
 * journal: the relay's side of the disk log (store.h). The stream into the backlog and, in
 * batches of pieces still referenced in the backlog's blocks, into the log; the writer's
 * completions read on the loop; once a second the fsync, retention and, after a write error
 * turned the log off, its restart once the directory has room; meta (the history and the
 * cached snapshot) rewritten when they change; recovery at start-up (the log opened, meta
 * cross-checked with the snapshot it names, the stream's framing rebuilt from the last
 * segment, files of other snapshots removed).
 * Owns the store and the references to the backlog blocks not yet written. Borrows the
 * backlog, the configuration, the counters and the history (written only by recovery). Knows
 * no replica and no link: it tells the relay through callbacks which log replicas may read
 * and when they may be fed, and hands the recovered framing and snapshot back. Loop thread
 * only (the writer's threads are store.h's); logs as the relay.
 */
#ifndef CASCADE_JOURNAL_H
#define CASCADE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "resp.h"

struct backlog;
struct event_base;
struct history;
struct journal;
struct report_disk;
struct snapshot;
struct stats;
struct store;

struct journal_callbacks {
    void *ctx;
    /* The log replicas behind memory read from; NULL while it is off after a write error. */
    void (*set_store)(void *ctx, struct store *s);
    /* Queued writes completed, or the log began anew: replicas may be fed. */
    void (*feed)(void *ctx);
    /* The cached snapshot meta names (only a READY one is written), or NULL. */
    const struct snapshot *(*snapshot)(void *ctx);
    /* The lowest offset a reader still needs: retention never deletes it. */
    int64_t (*keep_from)(void *ctx);
};

/* A journal without a log (backlog.disk = no until journal_open). */
struct journal *journal_new(struct event_base *base, const struct config *cfg,
                            struct backlog *backlog, struct history *hist, struct stats *stats,
                            const struct journal_callbacks *cb);

/*
 * Open the log in cfg->dir, take up the history it holds and start its writer. When there was
 * one: *hist restored, the backlog reset after the log's end, *framed true and *scan the
 * stream's framing there, *snap the snapshot meta names if it still checks out (else NULL).
 * 0, or -1 with a message (start-up errors).
 */
__attribute__((warn_unused_result)) int journal_open(struct journal *j, struct resp_stream *scan,
                                                     bool *framed, struct snapshot **snap,
                                                     char *err, size_t errlen);

/* Hand the pending bytes to the log, fsync it and write meta (what a restart continues
 * from), close it, free. NULL is a no-op. Before the backlog is freed. */
void journal_free(struct journal *j);

/* New stream bytes, boundary a command boundary in them (-1 if none): into the backlog, and
 * on to the log once a batch is pending. Replicas are fed by the caller. */
void journal_append(struct journal *j, const char *buf, size_t len, ssize_t boundary);

/* Hand what is pending to the log now (the cron: a slow stream reaches it within a tick). */
void journal_flush(struct journal *j);

/* A new history starts at offset next: the pending bytes are forgotten, the backlog and the
 * log start there, the log is in use again. */
void journal_new_history(struct journal *j, int64_t next);

/* Rewrite meta from the history and the cached snapshot (no-op without a log). */
void journal_write_meta(struct journal *j);

/* Each cron tick: once a second the fsync, retention and the restart after a write error. */
void journal_cron(struct journal *j, int64_t now);

/* Before a PSYNC at offset is decided: bytes below memory that fail their check are cut now. */
void journal_verify(struct journal *j, int64_t offset);

/* First offset the relay can serve: from memory, or from the log below it. */
int64_t journal_held_start(const struct journal *j);

/* A log is open (backlog.disk = yes), even while it is off after a write error. */
bool journal_enabled(const struct journal *j);

/* Retention from cfg (a reload). */
void journal_set_retention(struct journal *j, const struct config *cfg);

/* What INFO and the metrics say of the log (report.h). */
void journal_facts(const struct journal *j, struct report_disk *d);

#endif
