/*
 * Fuzz target: resp_stream_scan, the replication stream framer that finds REPLCONF GETACK.
 * The first two bytes choose a split position; the rest is the stream. It is scanned
 *   - one byte at a time, which also records every command boundary (the positions where
 *     resp_stream_at_boundary holds);
 *   - whole, in one buffer;
 *   - in two pieces, cut at the split position (a read boundary anywhere in a command);
 * and every way must report GETACK at the same stream positions, and fail or not alike. After
 * each GETACK the scanner must stand between commands, and after every successful scan
 * last_boundary must be the last recorded boundary inside the bytes it consumed.
 */
#include "fuzz.h"

#include <string.h>

#include "resp.h"

#define MAX_GETACKS 1024

struct outcome {
    size_t getack_at[MAX_GETACKS]; /* stream positions just past each GETACK */
    size_t ngetacks;
    bool failed;
    bool at_boundary; /* where the scanner stood at the end (if it did not fail) */
};

/* last_boundary after scanning [from, to) without error; bounds[p] holds if the scanner
 * stands between commands after the first p bytes. */
static ssize_t want_last_boundary(const bool *bounds, size_t from, size_t to)
{
    for (size_t p = to + 1; p-- > from;) {
        if (bounds[p])
            return (ssize_t)(p - from);
    }
    return -1;
}

/* Scans buf[0..len), which sits at stream position base, into o. False once it failed.
 * bounds: the boundaries recorded by the byte-at-a-time scan, or NULL while recording. */
static bool feed(struct resp_stream *s, const char *buf, size_t len, size_t base,
                 const bool *bounds, struct outcome *o)
{
    size_t pos = 0;
    while (pos < len) {
        bool getack = true;
        char err[RESP_ERR_LEN] = "";
        ssize_t n = resp_stream_scan(s, buf + pos, len - pos, &getack, err, sizeof(err));
        if (n < 0) {
            FUZZ_CHECK(n == -1 && err[0] != '\0' && memchr(err, '\0', sizeof(err)));
            o->failed = true;
            return false;
        }
        FUZZ_CHECK(n > 0 && (size_t)n <= len - pos);
        if (bounds) {
            size_t from = base + pos, to = from + (size_t)n;
            FUZZ_CHECK(s->last_boundary == want_last_boundary(bounds, from, to));
        }
        pos += (size_t)n;
        if (getack) {
            FUZZ_CHECK(resp_stream_at_boundary(s));
            FUZZ_CHECK(s->last_boundary == n);
            if (o->ngetacks < MAX_GETACKS)
                o->getack_at[o->ngetacks] = base + pos;
            o->ngetacks++;
        } else {
            FUZZ_CHECK(pos == len); /* without a GETACK the scanner takes everything */
        }
    }
    return true;
}

static void finish(const struct resp_stream *s, struct outcome *o)
{
    if (!o->failed)
        o->at_boundary = resp_stream_at_boundary(s);
}

static void check_same(const struct outcome *a, const struct outcome *b)
{
    FUZZ_CHECK(a->failed == b->failed);
    FUZZ_CHECK(a->ngetacks == b->ngetacks);
    size_t n = a->ngetacks < MAX_GETACKS ? a->ngetacks : MAX_GETACKS;
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(a->getack_at[i] == b->getack_at[i]);
    FUZZ_CHECK(a->at_boundary == b->at_boundary);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct outcome whole, split, bytewise; /* large; reset on every run */
    if (size < 2)
        return 0;
    const char *buf = (const char *)data + 2;
    size_t len = size - 2;
    size_t cut = ((size_t)data[0] << 8 | data[1]) % (len + 1);
    struct resp_stream s;
    bool *bounds = calloc(len + 1, sizeof(*bounds));
    if (!bounds)
        abort();

    memset(&bytewise, 0, sizeof(bytewise));
    resp_stream_init(&s);
    bounds[0] = resp_stream_at_boundary(&s);
    FUZZ_CHECK(bounds[0]);
    for (size_t i = 0; i < len; i++) {
        if (!feed(&s, buf + i, 1, i, NULL, &bytewise))
            break;
        bounds[i + 1] = resp_stream_at_boundary(&s);
        /* One byte: it ended a command (1), or the scan began at a boundary (0), or neither. */
        FUZZ_CHECK(s.last_boundary == (bounds[i + 1] ? 1 : bounds[i] ? 0 : -1));
    }
    finish(&s, &bytewise);

    memset(&whole, 0, sizeof(whole));
    resp_stream_init(&s);
    feed(&s, buf, len, 0, bounds, &whole);
    finish(&s, &whole);
    check_same(&bytewise, &whole);

    memset(&split, 0, sizeof(split));
    resp_stream_init(&s);
    if (feed(&s, buf, cut, 0, bounds, &split))
        feed(&s, buf + cut, len - cut, cut, bounds, &split);
    finish(&s, &split);
    check_same(&bytewise, &split);

    free(bounds);
    return 0;
}
