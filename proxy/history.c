/*
 * history: the replication-id history and the partial-resync rule (see history.h).
 * Owns struct history's fields; must not do I/O, logging or touch the stream's bytes.
 */
#include "history.h"

#include <stdio.h>
#include <string.h>

void history_init(struct history *h)
{
    h->has_history = false;
    memcpy(h->replid, HISTORY_NULL_REPLID, RESP_REPLID_LEN + 1);
    memcpy(h->replid2, HISTORY_NULL_REPLID, RESP_REPLID_LEN + 1);
    h->second_replid_offset = -1;
}

void history_start(struct history *h, const char *replid)
{
    snprintf(h->replid, sizeof(h->replid), "%s", replid);
    memcpy(h->replid2, HISTORY_NULL_REPLID, RESP_REPLID_LEN + 1);
    h->second_replid_offset = -1;
    h->has_history = true;
}

void history_restore(struct history *h, const char *replid, const char *replid2,
                     int64_t second_replid_offset)
{
    h->has_history = true;
    snprintf(h->replid, sizeof(h->replid), "%s", replid);
    snprintf(h->replid2, sizeof(h->replid2), "%s", replid2[0] ? replid2 : HISTORY_NULL_REPLID);
    h->second_replid_offset = second_replid_offset;
}

bool history_shift(struct history *h, const char *new_replid, int64_t end)
{
    if (!new_replid[0] || resp_replid_equal(new_replid, strlen(new_replid), h->replid))
        return false;
    memcpy(h->replid2, h->replid, RESP_REPLID_LEN + 1);
    h->second_replid_offset = end + 1;
    snprintf(h->replid, sizeof(h->replid), "%s", new_replid);
    return true;
}

enum history_match history_match(const struct history *h, const char *id, size_t len, int64_t next)
{
    if (!h->has_history)
        return HISTORY_NONE;
    if (resp_replid_equal(id, len, h->replid))
        return HISTORY_CURRENT;
    if (resp_replid_equal(id, len, h->replid2) && next <= h->second_replid_offset)
        return HISTORY_PREVIOUS;
    return HISTORY_NONE;
}

bool history_can_continue(const struct history *h, const char *id, size_t len, int64_t offset,
                          int64_t held_start, int64_t next, int64_t ahead)
{
    if (offset < 0 || offset > RESP_MAX_OFFSET)
        return false; /* an offset no stream reaches: a full sync, as Redis gives */
    switch (history_match(h, id, len, offset)) {
    case HISTORY_CURRENT:
        return offset >= held_start && offset <= next + ahead;
    case HISTORY_PREVIOUS:
        return offset >= held_start && offset <= next;
    case HISTORY_NONE:
        break;
    }
    return false;
}
