/*
 * backlog: a deque of equally sized blocks, so that the block holding an offset is found by
 * division instead of a walk. Every block but the last is full.
 *
 * A trimmed block nobody else references is kept as a spare for the next append (a few at
 * most): in steady state every append trims one block, and reusing it keeps the stream in
 * memory the process already touched instead of faulting fresh pages in (and giving them
 * back) for every 64 KiB.
 */
#include "backlog.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define SPARE_MAX   8  /* trimmed blocks kept for reuse */
#define RESERVE_MAX 16 /* fresh blocks lent out by backlog_reserve */

struct backlog {
    struct backlog_block **ring;            /* blocks, oldest at ring[head] */
    size_t ring_cap;                        /* slots in ring (power of two) */
    size_t head;                            /* index of the oldest block */
    size_t count;                           /* blocks held */
    size_t block_size;                      /* capacity of each block */
    size_t limit;                           /* history to keep, in bytes */
    int64_t start;                          /* offset of the first byte held */
    int64_t end;                            /* offset of the last byte held */
    struct backlog_block *spare[SPARE_MAX]; /* unreferenced trimmed blocks, for reuse */
    size_t nspare;
    struct backlog_block *reserved[RESERVE_MAX]; /* the next blocks to fill, in order */
    size_t nres;
};

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n, sz);
    if (!p)
        abort();
    return p;
}

struct backlog *backlog_new(size_t block_size, size_t limit_bytes)
{
    assert(block_size > 0);
    struct backlog *b = xcalloc(1, sizeof(*b));
    b->block_size = block_size;
    b->limit = limit_bytes;
    b->ring_cap = 16;
    b->ring = xcalloc(b->ring_cap, sizeof(*b->ring));
    b->start = 1;
    b->end = 0;
    return b;
}

static struct backlog_block *slot(const struct backlog *b, size_t i)
{
    return b->ring[(b->head + i) & (b->ring_cap - 1)];
}

static void drop_head(struct backlog *b)
{
    struct backlog_block *blk = slot(b, 0);
    b->head = (b->head + 1) & (b->ring_cap - 1);
    b->count--;
    blk->detached = true;
    if (blk->refs == 1 && b->nspare < SPARE_MAX)
        b->spare[b->nspare++] = blk; /* ours alone: reused by push_block */
    else
        backlog_block_unref(blk);
}

void backlog_free(struct backlog *b)
{
    if (!b)
        return;
    while (b->count)
        drop_head(b);
    while (b->nspare)
        free(b->spare[--b->nspare]);
    while (b->nres)
        free(b->reserved[--b->nres]);
    free(b->ring);
    free(b);
}

void backlog_reset(struct backlog *b, int64_t next)
{
    while (b->count)
        drop_head(b);
    b->head = 0;
    b->start = next;
    b->end = next - 1;
}

static void trim(struct backlog *b)
{
    /* Drop whole head blocks while what remains still covers the limit. */
    while (b->count > 1) {
        struct backlog_block *h = slot(b, 0);
        size_t hist = backlog_histlen(b);
        if (hist - h->len < b->limit)
            break;
        b->start = h->start + (int64_t)h->len;
        drop_head(b);
    }
}

static struct backlog_block *new_block(struct backlog *b)
{
    struct backlog_block *blk =
        b->nspare ? b->spare[--b->nspare] : malloc(sizeof(*blk) + b->block_size);
    if (!blk)
        abort();
    return blk;
}

static struct backlog_block *push_block(struct backlog *b)
{
    if (b->count == b->ring_cap) {
        size_t ncap = b->ring_cap * 2;
        struct backlog_block **nr = xcalloc(ncap, sizeof(*nr));
        for (size_t i = 0; i < b->count; i++)
            nr[i] = slot(b, i);
        free(b->ring);
        b->ring = nr;
        b->ring_cap = ncap;
        b->head = 0;
    }
    struct backlog_block *blk;
    if (b->nres) { /* lent out by backlog_reserve: it may hold the bytes being appended */
        blk = b->reserved[0];
        memmove(b->reserved, b->reserved + 1, --b->nres * sizeof(*b->reserved));
    } else {
        blk = new_block(b);
    }
    blk->start = b->end + 1;
    blk->len = 0;
    blk->refs = 1;
    blk->detached = false;
    b->ring[(b->head + b->count) & (b->ring_cap - 1)] = blk;
    b->count++;
    return blk;
}

void backlog_append(struct backlog *b, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        struct backlog_block *tail = b->count ? slot(b, b->count - 1) : NULL;
        if (!tail || tail->len == b->block_size)
            tail = push_block(b);
        size_t n = b->block_size - tail->len;
        if (n > len)
            n = len;
        if (tail->data + tail->len != p) /* else it was read in place (backlog_reserve) */
            memcpy(tail->data + tail->len, p, n);
        tail->len += n;
        b->end += (int64_t)n;
        p += n;
        len -= n;
    }
    trim(b);
}

int backlog_reserve(struct backlog *b, size_t max, struct iovec *iov, int n)
{
    int k = 0;
    size_t room = 0;
    struct backlog_block *tail = b->count ? slot(b, b->count - 1) : NULL;
    if (tail && tail->len < b->block_size && n > 0) {
        iov[k++] = (struct iovec){.iov_base = tail->data + tail->len,
                                  .iov_len = b->block_size - tail->len};
        room += b->block_size - tail->len;
    }
    for (size_t i = 0; room < max && k < n; i++) {
        if (i == b->nres) {
            if (b->nres == RESERVE_MAX)
                break;
            b->reserved[b->nres++] = new_block(b);
        }
        iov[k++] = (struct iovec){.iov_base = b->reserved[i]->data, .iov_len = b->block_size};
        room += b->block_size;
    }
    if (room > max) /* the last one only partly */
        iov[k - 1].iov_len -= room - max;
    return k;
}

size_t backlog_tail_room(const struct backlog *b)
{
    const struct backlog_block *tail = b->count ? slot(b, b->count - 1) : NULL;
    return tail && tail->len < b->block_size ? b->block_size - tail->len : b->block_size;
}

void backlog_set_limit(struct backlog *b, size_t limit_bytes)
{
    b->limit = limit_bytes;
    trim(b);
}

int64_t backlog_start(const struct backlog *b)
{
    return b->start;
}

int64_t backlog_end(const struct backlog *b)
{
    return b->end;
}

size_t backlog_histlen(const struct backlog *b)
{
    return (size_t)(b->end - b->start + 1);
}

size_t backlog_memory(const struct backlog *b)
{
    return (b->count + b->nspare + b->nres) * (sizeof(struct backlog_block) + b->block_size);
}

size_t backlog_limit(const struct backlog *b)
{
    return b->limit;
}

bool backlog_can_serve(const struct backlog *b, int64_t offset)
{
    return offset >= b->start && offset <= b->end + 1;
}

size_t backlog_peek(const struct backlog *b, int64_t offset, const char **data,
                    struct backlog_block **block)
{
    *data = NULL;
    *block = NULL;
    if (b->count == 0 || offset < b->start || offset > b->end)
        return 0;
    int64_t first = slot(b, 0)->start;
    size_t idx = (size_t)((offset - first) / (int64_t)b->block_size);
    assert(idx < b->count);
    struct backlog_block *blk = slot(b, idx);
    size_t at = (size_t)(offset - blk->start);
    assert(at < blk->len);
    *data = blk->data + at;
    *block = blk;
    return blk->len - at;
}

int backlog_copy(const struct backlog *b, int64_t offset, void *out, size_t len)
{
    if (len == 0)
        return 0;
    if (offset < b->start || offset + (int64_t)len - 1 > b->end)
        return -1;
    char *o = out;
    while (len > 0) {
        const char *d;
        struct backlog_block *blk;
        size_t n = backlog_peek(b, offset, &d, &blk);
        if (n > len)
            n = len;
        memcpy(o, d, n);
        o += n;
        offset += (int64_t)n;
        len -= n;
    }
    return 0;
}

void backlog_block_ref(struct backlog_block *blk)
{
    blk->refs++;
}

void backlog_block_unref(struct backlog_block *blk)
{
    assert(blk->refs > 0);
    if (--blk->refs == 0) {
        assert(blk->detached);
        free(blk);
    }
}
