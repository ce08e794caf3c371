/*
 * Fuzz target: the backlog, driven by an op sequence read from the input and compared after
 * every op with a flat byte array that follows the same rules (backlog.h): Redis offsets (the
 * first byte after a reset to `next` has offset next; empty means start == end + 1), history
 * trimmed from the head by whole blocks while what remains still covers the limit. Blocks
 * begin at next + k * block_size, so the model needs no blocks, only that arithmetic.
 * Readers' block references are kept across appends, trims, resets and the final free; the
 * bytes they point at must never change, and ASan checks no block is freed under them.
 *
 * Input: byte 0 block size, byte 1 initial limit, then ops of one byte plus operands.
 */
#include "fuzz.h"

#include <string.h>

#include "backlog.h"

#define MAX_REFS   8
#define MAX_APPEND 1024

/* A reader's zero-copy view: a referenced block and the bytes it saw there. */
struct ref {
    struct backlog_block *blk;
    const char *data;
    size_t len;
    int64_t blk_start;
    char seen[256];
};

struct model {
    size_t block_size;
    size_t limit;
    int64_t base;  /* offset of bytes[0]: the last reset's `next` */
    int64_t start; /* first byte held */
    int64_t end;   /* last byte held */
    char *bytes;   /* every byte appended since the last reset */
    size_t cap;
    uint32_t serial; /* makes appended bytes differ from run to run of the same op */
};

/* Input reader: past the end every byte reads as zero. */
struct input {
    const uint8_t *p;
    size_t left;
};

static uint8_t next_byte(struct input *in)
{
    if (!in->left)
        return 0;
    in->left--;
    return *in->p++;
}

static uint16_t next_u16(struct input *in)
{
    uint16_t hi = next_byte(in);
    return (uint16_t)(hi << 8 | next_byte(in));
}

static size_t model_histlen(const struct model *m)
{
    return (size_t)(m->end - m->start + 1);
}

static char model_at(const struct model *m, int64_t offset)
{
    return m->bytes[offset - m->base];
}

static void model_trim(struct model *m)
{
    /* More than one block held, and the history without the (full) head block still
     * covers the limit: drop the head block. */
    while (model_histlen(m) > m->block_size && model_histlen(m) - m->block_size >= m->limit)
        m->start += (int64_t)m->block_size;
}

static void model_append(struct model *m, const char *data, size_t len)
{
    size_t used = (size_t)(m->end + 1 - m->base);
    if (len == 0)
        return; /* the backlog ignores it too (and bytes may still be NULL) */
    if (used + len > m->cap) {
        m->cap = (used + len) * 2;
        m->bytes = realloc(m->bytes, m->cap);
        if (!m->bytes)
            abort();
    }
    memcpy(m->bytes + used, data, len);
    m->end += (int64_t)len;
    model_trim(m);
}

static void model_reset(struct model *m, int64_t next)
{
    m->base = m->start = next;
    m->end = next - 1;
}

/* An offset near the held range: from a few before start to a few past end. */
static int64_t pick_offset(const struct model *m, struct input *in)
{
    uint16_t v = next_u16(in);
    return m->start - 3 + (int64_t)(v % (model_histlen(m) + 7));
}

static void check_state(const struct backlog *b, const struct model *m)
{
    FUZZ_CHECK(backlog_start(b) == m->start);
    FUZZ_CHECK(backlog_end(b) == m->end);
    FUZZ_CHECK(backlog_histlen(b) == model_histlen(m));
    FUZZ_CHECK(backlog_limit(b) == m->limit);
    /* The history is whole blocks from start, the last one possibly partial. */
    size_t blocks = (model_histlen(m) + m->block_size - 1) / m->block_size;
    size_t one = sizeof(struct backlog_block) + m->block_size; /* plus at most 8 spares */
    FUZZ_CHECK(backlog_memory(b) >= blocks * one && backlog_memory(b) <= (blocks + 8) * one);
    FUZZ_CHECK(!backlog_can_serve(b, m->start - 1));
    FUZZ_CHECK(backlog_can_serve(b, m->start));
    FUZZ_CHECK(backlog_can_serve(b, m->end + 1));
    FUZZ_CHECK(!backlog_can_serve(b, m->end + 2));
}

/* backlog_peek at offset against the model; returns the count. */
static size_t check_peek(const struct backlog *b, const struct model *m, int64_t offset,
                         const char **data, struct backlog_block **blk)
{
    size_t n = backlog_peek(b, offset, data, blk);
    if (offset < m->start || offset > m->end) {
        FUZZ_CHECK(n == 0 && *data == NULL && *blk == NULL);
        return 0;
    }
    FUZZ_CHECK(n > 0 && n <= m->block_size && (int64_t)n <= m->end - offset + 1);
    FUZZ_CHECK(*blk != NULL && !(*blk)->detached && (*blk)->refs >= 1);
    FUZZ_CHECK((*blk)->start <= offset && offset < (*blk)->start + (int64_t)(*blk)->len);
    FUZZ_CHECK(((*blk)->start - m->base) % (int64_t)m->block_size == 0);
    FUZZ_CHECK(*data == (*blk)->data + (offset - (*blk)->start));
    FUZZ_CHECK(n == (*blk)->len - (size_t)(offset - (*blk)->start));
    /* The run ends at the block's end: the next byte, if held, is in the next block. */
    FUZZ_CHECK(offset + (int64_t)n == m->end + 1 ||
               (offset + (int64_t)n - m->base) % (int64_t)m->block_size == 0);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((*data)[i] == model_at(m, offset + (int64_t)i));
    return n;
}

static void check_ref(const struct ref *r)
{
    FUZZ_CHECK(r->blk->refs >= 1 && r->blk->start == r->blk_start);
    FUZZ_CHECK(memcmp(r->data, r->seen, r->len) == 0);
}

static void drop_ref(struct ref *refs, size_t *nrefs, size_t i)
{
    check_ref(&refs[i]);
    backlog_block_unref(refs[i].blk);
    refs[i] = refs[--*nrefs];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct model m;
    memset(&m, 0, sizeof(m));
    uint8_t bs = next_byte(&in);
    /* Mostly tiny blocks (many boundaries), sometimes larger ones. */
    m.block_size = bs & 0x80 ? 1 + (size_t)(bs & 0x7f) * 8 : 1 + (size_t)(bs & 0x1f);
    m.limit = (size_t)next_byte(&in) * 4;
    model_reset(&m, 1);
    struct backlog *b = backlog_new(m.block_size, m.limit);
    struct ref refs[MAX_REFS];
    size_t nrefs = 0;
    char buf[MAX_APPEND];
    check_state(b, &m);

    while (in.left) {
        uint8_t op = next_byte(&in);
        switch (op % 8) {
        case 0:
        case 1: { /* append N bytes (more often than the rest) */
            size_t n = next_byte(&in);
            if (op & 0x80)
                n *= 4;
            for (size_t i = 0; i < n; i++)
                buf[i] = (char)(m.serial++ * 37u >> 2);
            backlog_append(b, buf, n);
            model_append(&m, buf, n);
            break;
        }
        case 2: { /* set limit: 0, small, or larger than any history here */
            size_t v = next_byte(&in);
            size_t limit = op & 0x80 ? v * 1024 : v * 4;
            backlog_set_limit(b, limit);
            m.limit = limit;
            model_trim(&m);
            break;
        }
        case 3: { /* reset: to the next offset (a new upstream stream), or elsewhere */
            int64_t next;
            if (op & 0x80)
                next = (int64_t)next_u16(&in) << (op & 0x40 ? 24 : 0);
            else
                next = m.end + 1;
            backlog_reset(b, next);
            model_reset(&m, next);
            break;
        }
        case 4: { /* peek */
            const char *d;
            struct backlog_block *blk;
            check_peek(b, &m, pick_offset(&m, &in), &d, &blk);
            break;
        }
        case 5: { /* copy */
            int64_t offset = pick_offset(&m, &in);
            size_t n = next_byte(&in);
            memset(buf, 0x55, n);
            int rc = backlog_copy(b, offset, buf, n);
            bool held = n == 0 || (offset >= m.start && offset + (int64_t)n - 1 <= m.end);
            FUZZ_CHECK(rc == (held ? 0 : -1));
            for (size_t i = 0; rc == 0 && i < n; i++)
                FUZZ_CHECK(buf[i] == model_at(&m, offset + (int64_t)i));
            break;
        }
        case 6: { /* a reader takes a reference on the block it peeked */
            int64_t offset = pick_offset(&m, &in);
            const char *d;
            struct backlog_block *blk;
            size_t n = check_peek(b, &m, offset, &d, &blk);
            if (!n || nrefs == MAX_REFS)
                break;
            struct ref *r = &refs[nrefs++];
            backlog_block_ref(blk);
            r->blk = blk;
            r->data = d;
            r->len = n < sizeof(r->seen) ? n : sizeof(r->seen);
            r->blk_start = blk->start;
            memcpy(r->seen, d, r->len);
            break;
        }
        case 7: { /* a reader drops its reference */
            uint8_t i = next_byte(&in);
            if (nrefs)
                drop_ref(refs, &nrefs, i % nrefs);
            break;
        }
        }
        check_state(b, &m);
        for (size_t i = 0; i < nrefs; i++)
            check_ref(&refs[i]);
    }

    /* Blocks still referenced outlive the backlog. */
    backlog_free(b);
    while (nrefs) {
        FUZZ_CHECK(refs[nrefs - 1].blk->detached);
        drop_ref(refs, &nrefs, nrefs - 1);
    }
    free(m.bytes);
    return 0;
}
