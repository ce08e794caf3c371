/*
 * history: the replication-id history the relay serves (Redis' replid, replid2 and
 * second_replid_offset) and the partial-resync rule over it.
 * Owns the ids and the offset where the previous id ends; the stream's offsets (backlog, log)
 * belong to the caller, which passes the range it holds. Pure: no I/O, no libevent, no logging.
 *
 * Offsets follow Redis: a PSYNC offset (and a snapshot's offset + 1) is the first byte wanted.
 */
#ifndef CASCADE_HISTORY_H
#define CASCADE_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"

#define HISTORY_NULL_REPLID "0000000000000000000000000000000000000000"

struct history {
    bool has_history;                  /* replid describes a real history */
    char replid[RESP_REPLID_LEN + 1];  /* current id (the upstream's) */
    char replid2[RESP_REPLID_LEN + 1]; /* previous id, accepted up to second_replid_offset */
    int64_t second_replid_offset;      /* first offset not valid under replid2, -1 if none */
};

enum history_match {
    HISTORY_NONE,     /* not a point of our history */
    HISTORY_CURRENT,  /* our current id */
    HISTORY_PREVIOUS, /* our previous id, before the switch at second_replid_offset */
};

/* No history: both ids the null id, no second offset. */
void history_init(struct history *h);

/* A new history under replid (a full sync's RDB): no previous id. */
void history_start(struct history *h, const char *replid);

/* The history recovered from the meta file (replid2 may be "" for none). */
void history_restore(struct history *h, const char *replid, const char *replid2,
                     int64_t second_replid_offset);

/*
 * +CONTINUE with new_replid at stream end `end` (psync2, Redis' shiftReplicationId): replid2
 * becomes the old id, valid up to end + 1, and replid the new one. Returns false (nothing
 * changed) when new_replid is empty or already the current id.
 */
bool history_shift(struct history *h, const char *new_replid, int64_t end);

/*
 * Is id (len bytes, as sent) ours at `next`: the current id, or the previous one if next is
 * not past where it ended. Ids compare as Redis does (exact length, case-insensitive).
 */
enum history_match history_match(const struct history *h, const char *id, size_t len, int64_t next);

/*
 * The partial-resync rule (PSYNC id offset): the relay holds the stream from held_start up to
 * next - 1. The offset must be in 0..RESP_MAX_OFFSET and not below held_start; under the
 * current id it may be up to `ahead` bytes past next (a replica ahead of a log that ended
 * behind it after a crash), under the previous id at most next.
 */
bool history_can_continue(const struct history *h, const char *id, size_t len, int64_t offset,
                          int64_t held_start, int64_t next, int64_t ahead);

#endif
