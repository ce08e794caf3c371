/*
 * Fuzz target: rdbinfo_parse, the RDB header and AUX-record reader. The input is the start of
 * an RDB file. A prefix of the input never gives a different answer than the whole: it is
 * RDBINFO_SHORT, or the same result with the same fields (a byte not yet there is never read).
 * A repl-id found has 40 bytes and a NUL.
 */
#include "fuzz.h"

#include <string.h>

#include "rdbinfo.h"

static void same(const struct rdbinfo *a, const struct rdbinfo *b)
{
    FUZZ_CHECK(a->version == b->version);
    FUZZ_CHECK(a->aux_count == b->aux_count);
    FUZZ_CHECK(a->has_repl_offset == b->has_repl_offset);
    FUZZ_CHECK(!a->has_repl_offset || a->repl_offset == b->repl_offset);
    FUZZ_CHECK(a->has_repl_id == b->has_repl_id);
    FUZZ_CHECK(!a->has_repl_id || strcmp(a->repl_id, b->repl_id) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rdbinfo full, part;
    char err[128];
    enum rdbinfo_result rc = rdbinfo_parse(data, size, &full, err, sizeof(err));
    FUZZ_CHECK(rc == RDBINFO_OK || rc == RDBINFO_SHORT || rc == RDBINFO_BAD);
    if (full.has_repl_id)
        FUZZ_CHECK(strlen(full.repl_id) == 40);
    size_t step = size <= 512 ? 1 : size / 64;
    for (size_t n = 0; n < size; n += step) {
        enum rdbinfo_result r = rdbinfo_parse(data, n, &part, err, sizeof(err));
        FUZZ_CHECK(r == RDBINFO_SHORT || r == rc);
        if (r == rc && r != RDBINFO_SHORT && r != RDBINFO_BAD)
            same(&part, &full);
    }
    return 0;
}
