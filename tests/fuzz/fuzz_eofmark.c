/*
 * Fuzz target: resp_eofmark_feed, the end-of-RDB finder of diskless transfers.
 * Input layout: 40 bytes of mark, one control byte, up to 15 chunk sizes (control & 15 of
 * them), then the payload. Control bit 0x80 maps mark and payload onto the alphabet {a, b},
 * so that near-misses and overlapping partial marks are common. The payload is fed in chunks
 * of the given sizes (cycled; a zero size feeds an empty chunk) and the mark must be reported
 * exactly where memmem finds its first occurrence in the whole payload, and nothing after.
 */
#include "fuzz.h"

#include <string.h>

#include "resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < RESP_EOFMARK_LEN + 1)
        return 0;
    char mark[RESP_EOFMARK_LEN];
    memcpy(mark, data, RESP_EOFMARK_LEN);
    uint8_t control = data[RESP_EOFMARK_LEN];
    size_t pos = RESP_EOFMARK_LEN + 1;
    size_t nsizes = control & 15;
    if (nsizes > size - pos)
        nsizes = size - pos;
    const uint8_t *sizes = data + pos;
    pos += nsizes;
    size_t len = size - pos;
    char *payload = malloc(len ? len : 1);
    if (!payload)
        abort();
    memcpy(payload, data + pos, len);
    if (control & 0x80) {
        for (size_t i = 0; i < RESP_EOFMARK_LEN; i++)
            mark[i] = (char)('a' + (mark[i] & 1));
        for (size_t i = 0; i < len; i++)
            payload[i] = (char)('a' + (payload[i] & 1));
    }

    const char *hit = memmem(payload, len, mark, RESP_EOFMARK_LEN);
    ssize_t want = hit ? (hit - payload) + RESP_EOFMARK_LEN : -1;

    struct resp_eofmark m;
    resp_eofmark_init(&m, mark);
    FUZZ_CHECK(!m.found);
    ssize_t found_at = -1;
    size_t fed = 0, zeros = 0;
    for (size_t j = 0; fed < len; j++) {
        size_t n = nsizes ? sizes[j % nsizes] : len;
        if (n == 0) {
            FUZZ_CHECK(resp_eofmark_feed(&m, payload + fed, 0) == -1);
            /* All sizes zero: feed the rest at once instead of looping forever. */
            if (++zeros < nsizes)
                continue;
            n = len - fed;
        }
        zeros = 0;
        if (n > len - fed)
            n = len - fed;
        bool before = m.found;
        ssize_t r = resp_eofmark_feed(&m, payload + fed, n);
        FUZZ_CHECK(r == -1 || (r >= 1 && (size_t)r <= n));
        FUZZ_CHECK(m.tail_len < RESP_EOFMARK_LEN);
        if (before) {
            FUZZ_CHECK(r == -1); /* once found, the rest is not RDB */
        } else if (r >= 0) {
            FUZZ_CHECK(m.found);
            found_at = (ssize_t)fed + r;
        } else {
            FUZZ_CHECK(!m.found);
        }
        fed += n;
    }
    FUZZ_CHECK(found_at == want);
    free(payload);
    return 0;
}
