/*
 * Unit tests for backlog.c: Redis offset semantics (first byte is offset 1, empty means
 * start == end + 1), appends across small blocks, trimming by whole head blocks, peek/copy,
 * and reference counting of trimmed blocks. A randomized run compares every read against a
 * flat byte array. Run under ASan to catch use-after-free and leaks of referenced blocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backlog.h"

/* Appends a NUL-terminated string. */
static void append_str(struct backlog *b, const char *s)
{
    backlog_append(b, s, strlen(s));
}

/* Fills buf with a byte pattern that identifies each stream offset. */
static void pattern(char *buf, int64_t first_offset, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('A' + (first_offset + (int64_t)i) % 26);
}

static void test_empty(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(8, 64);
    assert_int_equal(backlog_start(b), 1);
    assert_int_equal(backlog_end(b), 0);
    assert_int_equal(backlog_histlen(b), 0);
    assert_int_equal(backlog_memory(b), 0);
    assert_int_equal(backlog_limit(b), 64);
    /* An empty backlog can serve exactly the next byte to come. */
    assert_false(backlog_can_serve(b, 0));
    assert_true(backlog_can_serve(b, 1));
    assert_false(backlog_can_serve(b, 2));

    const char *d = (const char *)1;
    struct backlog_block *blk = (struct backlog_block *)1;
    assert_int_equal(backlog_peek(b, 1, &d, &blk), 0);
    assert_null(d);
    assert_null(blk);

    char out[4];
    assert_int_equal(backlog_copy(b, 1, out, 0), 0);
    assert_int_equal(backlog_copy(b, 1, out, 1), -1);
    backlog_append(b, "", 0);
    assert_int_equal(backlog_end(b), 0);
    assert_int_equal(backlog_memory(b), 0);
    backlog_free(b);
    backlog_free(NULL);
}

static void test_append_across_blocks(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(8, 1024);
    append_str(b, "0123"); /* offsets 1..4, block 1 partial */
    append_str(b, "4567"); /* 5..8: fills block 1 exactly */
    assert_int_equal(backlog_memory(b), 1 * (sizeof(struct backlog_block) + 8));
    append_str(b, "89abcdefghijklmnopq"); /* 9..27: blocks 2, 3, part of 4 */
    assert_int_equal(backlog_start(b), 1);
    assert_int_equal(backlog_end(b), 27);
    assert_int_equal(backlog_histlen(b), 27);
    assert_int_equal(backlog_memory(b), 4 * (sizeof(struct backlog_block) + 8));

    char out[28] = {0};
    assert_int_equal(backlog_copy(b, 1, out, 27), 0);
    assert_memory_equal(out, "0123456789abcdefghijklmnopq", 27);
    /* A copy spanning a block boundary in the middle. */
    memset(out, 0, sizeof(out));
    assert_int_equal(backlog_copy(b, 7, out, 11), 0);
    assert_memory_equal(out, "6789abcdefg", 11);
    /* The very last byte, and one past it. */
    assert_int_equal(backlog_copy(b, 27, out, 1), 0);
    assert_int_equal(out[0], 'q');
    assert_int_equal(backlog_copy(b, 27, out, 2), -1);
    assert_int_equal(backlog_copy(b, 0, out, 1), -1);
    assert_int_equal(backlog_copy(b, 28, out, 1), -1);
    backlog_free(b);
}

static void test_peek_chunks(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(8, 1024);
    char data[20];
    pattern(data, 1, sizeof(data));
    backlog_append(b, data, sizeof(data)); /* blocks [1..8] [9..16] [17..20] */

    const char *d;
    struct backlog_block *blk;
    assert_int_equal(backlog_peek(b, 1, &d, &blk), 8);
    assert_ptr_equal(d, blk->data);
    assert_int_equal(blk->start, 1);
    assert_int_equal(blk->len, 8);
    assert_memory_equal(d, data, 8);

    assert_int_equal(backlog_peek(b, 5, &d, &blk), 4);
    assert_memory_equal(d, data + 4, 4);
    assert_int_equal(blk->start, 1);

    assert_int_equal(backlog_peek(b, 8, &d, &blk), 1);
    assert_int_equal(*d, data[7]);

    assert_int_equal(backlog_peek(b, 9, &d, &blk), 8);
    assert_int_equal(blk->start, 9);
    assert_memory_equal(d, data + 8, 8);

    assert_int_equal(backlog_peek(b, 16, &d, &blk), 1);
    assert_int_equal(backlog_peek(b, 17, &d, &blk), 4);
    assert_int_equal(blk->start, 17);
    assert_int_equal(blk->len, 4);
    assert_int_equal(backlog_peek(b, 20, &d, &blk), 1);
    assert_int_equal(*d, data[19]);

    /* end + 1 is servable but holds nothing yet; out of range gives nothing. */
    assert_int_equal(backlog_peek(b, 21, &d, &blk), 0);
    assert_null(d);
    assert_null(blk);
    assert_int_equal(backlog_peek(b, 0, &d, &blk), 0);
    assert_null(d);
    assert_int_equal(backlog_peek(b, 1000, &d, &blk), 0);

    /* The tail block grows in place: a later peek sees the new bytes. */
    append_str(b, "xyz");
    assert_int_equal(backlog_peek(b, 17, &d, &blk), 7);
    assert_memory_equal(d + 4, "xyz", 3);
    backlog_free(b);
}

static void test_reset(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(16, 1024);
    append_str(b, "some history that goes away");
    const int64_t x = INT64_C(1) << 40;
    backlog_reset(b, x + 1);
    assert_int_equal(backlog_end(b), x);
    assert_int_equal(backlog_start(b), x + 1);
    assert_int_equal(backlog_histlen(b), 0);
    /* Its two blocks are kept as spares, and counted. */
    assert_int_equal(backlog_memory(b), 2 * (sizeof(struct backlog_block) + 16));
    assert_false(backlog_can_serve(b, x));
    assert_true(backlog_can_serve(b, x + 1));
    assert_false(backlog_can_serve(b, x + 2));
    assert_false(backlog_can_serve(b, 1));

    append_str(b, "hello");
    assert_int_equal(backlog_start(b), x + 1);
    assert_int_equal(backlog_end(b), x + 5);
    assert_int_equal(backlog_histlen(b), 5);
    char out[5];
    assert_int_equal(backlog_copy(b, x + 1, out, 5), 0);
    assert_memory_equal(out, "hello", 5);
    const char *d;
    struct backlog_block *blk;
    assert_int_equal(backlog_peek(b, x + 3, &d, &blk), 3);
    assert_int_equal(blk->start, x + 1);
    assert_memory_equal(d, "llo", 3);

    /* Reset to an offset that is not a multiple of the block size, and back down to 1. */
    backlog_reset(b, 1);
    assert_int_equal(backlog_start(b), 1);
    assert_int_equal(backlog_end(b), 0);
    append_str(b, "abc");
    assert_int_equal(backlog_copy(b, 1, out, 3), 0);
    assert_memory_equal(out, "abc", 3);
    backlog_free(b);
}

static void test_can_serve_boundaries(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(8, 16);
    char data[40];
    pattern(data, 1, sizeof(data));
    backlog_append(b, data, sizeof(data));
    int64_t start = backlog_start(b), end = backlog_end(b);
    assert_true(start > 1); /* trimmed, so start - 1 is a real byte that was dropped */
    assert_int_equal(end, 40);
    assert_false(backlog_can_serve(b, start - 1));
    assert_true(backlog_can_serve(b, start));
    assert_true(backlog_can_serve(b, end));
    assert_true(backlog_can_serve(b, end + 1));
    assert_false(backlog_can_serve(b, end + 2));
    assert_false(backlog_can_serve(b, INT64_MIN));
    assert_false(backlog_can_serve(b, INT64_MAX));
    backlog_free(b);
}

static void test_trim_whole_blocks(void **state)
{
    (void)state;
    /* block 8, limit 20: keep at least 20 bytes, dropping only whole head blocks. */
    struct backlog *b = backlog_new(8, 20);
    char data[64];
    pattern(data, 1, sizeof(data));

    backlog_append(b, data, 20); /* [1..8] [9..16] [17..20]: 20 bytes, nothing to drop */
    assert_int_equal(backlog_start(b), 1);
    assert_int_equal(backlog_histlen(b), 20);

    backlog_append(b, data + 20, 7); /* end 27: dropping [1..8] leaves 19 < 20: keep it */
    assert_int_equal(backlog_start(b), 1);
    assert_int_equal(backlog_histlen(b), 27);

    backlog_append(b, data + 27, 1); /* end 28: dropping [1..8] leaves exactly 20: drop */
    assert_int_equal(backlog_start(b), 9);
    assert_int_equal(backlog_end(b), 28);
    assert_int_equal(backlog_histlen(b), 20);
    /* Three blocks held and the dropped one kept as a spare. */
    assert_int_equal(backlog_memory(b), 4 * (sizeof(struct backlog_block) + 8));

    /* One large append drops several blocks at once, still keeping >= limit. */
    backlog_append(b, data + 28, 36); /* end 64 */
    assert_int_equal(backlog_end(b), 64);
    assert_int_equal(backlog_start(b), 41); /* [41..48] [49..56] [57..64] = 24 >= 20 */
    assert_int_equal(backlog_histlen(b), 24);
    char out[24];
    assert_int_equal(backlog_copy(b, 41, out, 24), 0);
    assert_memory_equal(out, data + 40, 24);
    assert_int_equal(backlog_copy(b, 40, out, 1), -1);

    /* Lowering the limit trims at once; the tail block always stays. */
    backlog_set_limit(b, 0);
    assert_int_equal(backlog_limit(b), 0);
    assert_int_equal(backlog_start(b), 57);
    assert_int_equal(backlog_histlen(b), 8);
    /* The spare was reused by the large append, which malloc'd 3 more; 6 dropped since. */
    assert_int_equal(backlog_memory(b), 7 * (sizeof(struct backlog_block) + 8));
    /* Raising it never brings anything back. */
    backlog_set_limit(b, 1000);
    assert_int_equal(backlog_start(b), 57);
    backlog_free(b);
}

static void test_trim_limit_not_block_multiple(void **state)
{
    (void)state;
    /* limit 1 with block 16: keep only the tail block once a new one starts. */
    struct backlog *b = backlog_new(16, 1);
    char data[33];
    pattern(data, 1, sizeof(data));
    backlog_append(b, data, 16);
    assert_int_equal(backlog_start(b), 1);
    backlog_append(b, data + 16, 1); /* [1..16] [17]: dropping the head leaves 1 >= 1 */
    assert_int_equal(backlog_start(b), 17);
    assert_int_equal(backlog_histlen(b), 1);
    backlog_append(b, data + 17, 16);
    assert_int_equal(backlog_start(b), 33);
    assert_int_equal(backlog_end(b), 33);
    backlog_free(b);
}

static void test_many_blocks_ring_growth(void **state)
{
    (void)state;
    /* More blocks than the initial ring, after the head has moved (wrapped ring). */
    struct backlog *b = backlog_new(4, 40);
    char data[2000];
    pattern(data, 1, sizeof(data));
    backlog_append(b, data, 100); /* trims: head moves forward in the ring */
    assert_int_equal(backlog_start(b), 61);
    backlog_set_limit(b, 1000);
    backlog_append(b, data + 100, 900); /* ~260 blocks: the ring grows while wrapped */
    assert_int_equal(backlog_start(b), 61);
    assert_int_equal(backlog_end(b), 1000);
    char out[940];
    assert_int_equal(backlog_copy(b, 61, out, 940), 0);
    assert_memory_equal(out, data + 60, 940);
    backlog_append(b, data + 1000, 1000);
    assert_int_equal(backlog_end(b), 2000);
    assert_int_equal(backlog_start(b), 1001);
    assert_int_equal(backlog_copy(b, 1001, out, 940), 0);
    assert_memory_equal(out, data + 1000, 940);
    backlog_free(b);
}

static void test_ref_survives_trim(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(8, 8);
    append_str(b, "AAAAAAAA"); /* offsets 1..8 */
    const char *d;
    struct backlog_block *blk;
    assert_int_equal(backlog_peek(b, 1, &d, &blk), 8);
    backlog_block_ref(blk);
    assert_int_equal(blk->refs, 2);
    assert_false(blk->detached);

    append_str(b, "BBBBBBBBCCCCCCCC"); /* 9..24: the first two blocks are trimmed */
    assert_int_equal(backlog_start(b), 17);
    assert_true(blk->detached);
    assert_int_equal(blk->refs, 1);
    assert_int_equal(blk->start, 1);
    assert_int_equal(blk->len, 8);
    assert_memory_equal(d, "AAAAAAAA", 8); /* still readable: ASan flags it if freed */

    /* A reference taken on the tail survives reset and backlog_free alike. */
    const char *d2;
    struct backlog_block *blk2;
    assert_int_equal(backlog_peek(b, 20, &d2, &blk2), 5);
    backlog_block_ref(blk2);
    backlog_reset(b, 100);
    assert_true(blk2->detached);
    assert_memory_equal(d2, "CCCCC", 5);

    const char *d3;
    struct backlog_block *blk3;
    append_str(b, "DDDD");
    assert_int_equal(backlog_peek(b, 100, &d3, &blk3), 4);
    backlog_block_ref(blk3);
    backlog_free(b);
    assert_true(blk3->detached);
    assert_int_equal(blk3->refs, 1);
    assert_memory_equal(d3, "DDDD", 4);

    backlog_block_unref(blk); /* frees: LeakSanitizer reports it otherwise */
    backlog_block_unref(blk2);
    backlog_block_unref(blk3);
}

/* A trimmed block only the backlog held is the next one filled; a referenced one never is. */
static void test_spare_reuse(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(8, 8);
    append_str(b, "AAAAAAAABBBBBBBB"); /* [1..8] [9..16]: [1..8] is trimmed, kept as spare */
    assert_int_equal(backlog_start(b), 9);
    const char *d;
    struct backlog_block *held, *next;
    assert_int_equal(backlog_peek(b, 9, &d, &held), 8);
    backlog_block_ref(held);   /* [9..16] is referenced when it is trimmed below */
    append_str(b, "CCCCCCCC"); /* [17..24] reuses the spare; [9..16] is trimmed, not kept */
    assert_int_equal(backlog_peek(b, 17, &d, &next), 8);
    assert_memory_equal(d, "CCCCCCCC", 8);
    assert_int_equal(next->start, 17);
    assert_int_equal(next->refs, 1);
    assert_false(next->detached);
    assert_int_equal(backlog_memory(b), 1 * (sizeof(struct backlog_block) + 8));
    append_str(b, "DDDDDDDD"); /* [25..32]: a fresh block; [17..24] becomes the spare */
    struct backlog_block *fresh;
    assert_int_equal(backlog_peek(b, 25, &d, &fresh), 8);
    assert_ptr_not_equal(fresh, held);
    assert_memory_equal(held->data, "BBBBBBBB", 8);
    append_str(b, "EEEEEEEE"); /* reuses [17..24]'s block */
    struct backlog_block *again;
    assert_int_equal(backlog_peek(b, 33, &d, &again), 8);
    assert_ptr_equal(again, next);
    assert_ptr_not_equal(again, held);
    assert_memory_equal(held->data, "BBBBBBBB", 8);
    backlog_block_unref(held);

    /* At most a few spares: a reset of many blocks keeps 8 and frees the rest. */
    backlog_set_limit(b, 1024);
    for (int i = 0; i < 20; i++)
        append_str(b, "FFFFFFFF");
    backlog_reset(b, 1000);
    assert_int_equal(backlog_memory(b), 8 * (sizeof(struct backlog_block) + 8));
    backlog_free(b);
}

static void test_ref_on_live_block(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(8, 64);
    append_str(b, "12345678");
    const char *d;
    struct backlog_block *blk;
    assert_int_equal(backlog_peek(b, 1, &d, &blk), 8);
    backlog_block_ref(blk);
    backlog_block_unref(blk); /* back to the backlog's own reference: must not free */
    assert_int_equal(blk->refs, 1);
    assert_false(blk->detached);
    char out[8];
    assert_int_equal(backlog_copy(b, 1, out, 8), 0);
    assert_memory_equal(out, "12345678", 8);
    backlog_free(b);
}

/* Deterministic xorshift so a failure reproduces. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return (size_t)(rng_next(s) % n);
}

/*
 * The model: every byte appended since the last reset, the offset of the first of them, and
 * the start expected from the trimming rule (drop a full head block while the rest still
 * covers the limit and it is not the only block).
 */
struct model {
    char *bytes;
    size_t len, cap;
    int64_t base;  /* offset of bytes[0] */
    int64_t start; /* expected backlog_start */
    size_t block, limit;
};

static int64_t model_end(const struct model *m)
{
    return m->base + (int64_t)m->len - 1;
}

static void model_trim(struct model *m)
{
    for (;;) {
        size_t hist = (size_t)(model_end(m) - m->start + 1);
        if (hist <= m->block) /* one block (or none) left */
            break;
        if (hist - m->block < m->limit)
            break;
        m->start += (int64_t)m->block;
    }
}

static void model_append(struct model *m, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->bytes = realloc(m->bytes, m->cap);
        assert_non_null(m->bytes);
    }
    memcpy(m->bytes + m->len, p, n);
    m->len += n;
    model_trim(m);
}

static void check_against_model(const struct backlog *b, const struct model *m, uint64_t *rng,
                                bool trimmed)
{
    int64_t end = model_end(m);
    assert_int_equal(backlog_end(b), end);
    assert_int_equal(backlog_start(b), m->start);
    size_t hist = (size_t)(end - m->start + 1);
    assert_int_equal(backlog_histlen(b), hist);
    size_t blocks = (hist + m->block - 1) / m->block;
    /* The blocks holding the history, and at most 8 spares. */
    assert_in_range(backlog_memory(b), blocks * (sizeof(struct backlog_block) + m->block),
                    (blocks + 8) * (sizeof(struct backlog_block) + m->block));
    /* Trimming is maximal: one block left, or dropping the head would go below the limit. */
    assert_true(hist <= m->block || hist - m->block < m->limit);
    /* A trim never leaves less than the limit. */
    if (trimmed)
        assert_true(hist >= m->limit);

    char *out = malloc(hist + 1);
    assert_non_null(out);
    /* No history yet: m->bytes may still be NULL, and NULL + 0 is undefined behaviour. */
    const char *expect = m->bytes ? m->bytes + (m->start - m->base) : NULL;
    if (hist > 0) {
        assert_int_equal(backlog_copy(b, m->start, out, hist), 0);
        assert_memory_equal(out, expect, hist);
        /* A random sub-range. */
        size_t from = rng_below(rng, hist);
        size_t n = 1 + rng_below(rng, hist - from);
        assert_int_equal(backlog_copy(b, m->start + (int64_t)from, out, n), 0);
        assert_memory_equal(out, expect + from, n);
        /* Walking with peek visits every byte once, in block-sized steps. */
        int64_t off = m->start;
        while (off <= end) {
            const char *d;
            struct backlog_block *blk;
            size_t got = backlog_peek(b, off, &d, &blk);
            assert_true(got > 0);
            assert_true(got <= m->block);
            /* Chunks end at block boundaries, which are aligned on the reset offset. */
            int64_t block_end = blk->start + (int64_t)m->block - 1;
            int64_t chunk_end = off + (int64_t)got - 1;
            assert_true(chunk_end == block_end || chunk_end == end);
            assert_int_equal((blk->start - m->base) % (int64_t)m->block, 0);
            assert_memory_equal(d, m->bytes + (off - m->base), got);
            off += (int64_t)got;
        }
    }
    assert_int_equal(backlog_copy(b, m->start - 1, out, 1), -1);
    assert_int_equal(backlog_copy(b, end + 1, out, 1), -1);
    assert_false(backlog_can_serve(b, m->start - 1));
    assert_true(backlog_can_serve(b, m->start));
    assert_true(backlog_can_serve(b, end + 1));
    assert_false(backlog_can_serve(b, end + 2));
    free(out);
}

static void run_random(size_t block, uint64_t seed)
{
    uint64_t rng = seed;
    struct model m = {.base = 1, .start = 1, .block = block, .limit = 3 * block + 5};
    struct backlog *b = backlog_new(block, m.limit);
    char chunk[300];
    for (int step = 0; step < 3000; step++) {
        size_t op = rng_below(&rng, 100);
        int64_t start_before = backlog_start(b);
        if (op < 80) {
            size_t n = rng_below(&rng, op < 5 ? sizeof(chunk) : 3 * block);
            for (size_t i = 0; i < n; i++)
                chunk[i] = (char)rng_next(&rng);
            backlog_append(b, chunk, n);
            model_append(&m, chunk, n);
        } else if (op < 95) {
            m.limit = rng_below(&rng, 10 * block);
            backlog_set_limit(b, m.limit);
            model_trim(&m);
        } else {
            int64_t next = 1 + (int64_t)rng_below(&rng, 1000000);
            backlog_reset(b, next);
            m.len = 0;
            m.base = m.start = next;
        }
        check_against_model(b, &m, &rng, backlog_start(b) != start_before && op < 95);
    }
    backlog_free(b);
    free(m.bytes);
}

/* Bytes read into backlog_reserve's room and appended from there land in place (the block
 * holds them at the very address read into: no copy); the room left over is lent again. */
static void test_reserve_in_place(void **state)
{
    (void)state;
    struct backlog *b = backlog_new(8, 24);
    append_str(b, "abc"); /* 5 bytes free in the tail block */
    struct iovec iov[8];
    int n = backlog_reserve(b, 20, iov, 8);
    assert_int_equal(n, 3); /* 5 + 8 + 7: the last cut to the 20 asked for */
    assert_int_equal(iov[0].iov_len, 5);
    assert_int_equal(iov[1].iov_len, 8);
    assert_int_equal(iov[2].iov_len, 7);
    assert_int_equal(backlog_reserve(b, 20, iov, 2), 2); /* n caps it; the same room again */
    assert_int_equal(iov[1].iov_len, 8);
    void *second = iov[1].iov_base;
    n = backlog_reserve(b, 20, iov, 8);
    assert_ptr_equal(iov[1].iov_base, second);
    char want[64];
    pattern(want, 4, 15);
    /* "read" 15 bytes into the room, then append them piece by piece, as the upstream does */
    size_t left = 15, at = 0;
    for (int i = 0; i < n && left > 0; i++) {
        size_t k = left < iov[i].iov_len ? left : iov[i].iov_len;
        memcpy(iov[i].iov_base, want + at, k);
        backlog_append(b, iov[i].iov_base, k);
        at += k;
        left -= k;
    }
    assert_int_equal(backlog_end(b), 18);
    const char *data;
    struct backlog_block *blk;
    assert_int_equal(backlog_peek(b, 9, &data, &blk), 8);
    assert_ptr_equal(data, iov[1].iov_base);
    assert_int_equal(backlog_peek(b, 17, &data, &blk), 2);
    assert_ptr_equal(data, iov[2].iov_base);
    char got[64];
    assert_int_equal(backlog_copy(b, 4, got, 15), 0);
    assert_memory_equal(got, want, 15);

    /* What is left of the room is lent again: the rest of the last block filled first. */
    char *rest = (char *)iov[2].iov_base + 2;
    n = backlog_reserve(b, 100, iov, 3);
    assert_int_equal(n, 3);
    assert_int_equal(iov[0].iov_len, 6);
    assert_ptr_equal(iov[0].iov_base, rest);
    /* Other bytes appended meanwhile are copied: the room is spent, the history still right. */
    pattern(want, 19, 20);
    backlog_append(b, want, 20);
    assert_int_equal(backlog_copy(b, 19, got, 20), 0);
    assert_memory_equal(got, want, 20);
    assert_true(backlog_memory(b) >= 4 * 8);
    backlog_free(b); /* lent blocks are freed too (ASan) */
}

static void test_random_vs_model(void **state)
{
    (void)state;
    run_random(8, 0x9e3779b97f4a7c15ULL);
    run_random(16, 12345);
    run_random(1, 777);
    run_random(5, 424242);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_append_across_blocks),
        cmocka_unit_test(test_peek_chunks),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_can_serve_boundaries),
        cmocka_unit_test(test_trim_whole_blocks),
        cmocka_unit_test(test_trim_limit_not_block_multiple),
        cmocka_unit_test(test_many_blocks_ring_growth),
        cmocka_unit_test(test_ref_survives_trim),
        cmocka_unit_test(test_spare_reuse),
        cmocka_unit_test(test_ref_on_live_block),
        cmocka_unit_test(test_reserve_in_place),
        cmocka_unit_test(test_random_vs_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
