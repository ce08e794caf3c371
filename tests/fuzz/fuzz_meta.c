/*
 * Fuzz target: store_meta_parse, the reader of the relay's meta file. Whatever parses has
 * values in range (replids of 40 hex characters or empty, offsets from -1 to 2^62, a plain
 * snapshot file name), and formats back (store_meta_format) into a file that parses to the
 * same values.
 */
#include "fuzz.h"

#include <string.h>

#include "store_meta.h"

static void check_replid(const char *r)
{
    size_t n = strlen(r);
    FUZZ_CHECK(n == 0 || n == 40);
    FUZZ_CHECK(strspn(r, "0123456789abcdef") == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct store_meta m, back;
    char why[256];
    if (store_meta_parse((const char *)data, size, &m, why, sizeof(why)) != 0)
        return 0;
    FUZZ_CHECK(m.version == 1 || m.version == 2);
    check_replid(m.replid);
    check_replid(m.replid2);
    check_replid(m.snapshot_replid);
    FUZZ_CHECK(!strchr(m.snapshot_file, '/') && m.snapshot_file[0] != '.');
    FUZZ_CHECK(m.second_replid_offset >= -1 && m.snapshot_offset >= -1 && m.log_end >= -1);
    FUZZ_CHECK(m.snapshot_size >= 0);
    char text[STORE_META_MAX];
    size_t n = store_meta_format(&m, 1, m.log_end, text, sizeof(text));
    FUZZ_CHECK(n > 0);
    FUZZ_CHECK(store_meta_parse(text, n, &back, why, sizeof(why)) == 0);
    FUZZ_CHECK(back.version == 2);
    FUZZ_CHECK(strcmp(back.replid, m.replid) == 0 && strcmp(back.replid2, m.replid2) == 0);
    FUZZ_CHECK(strcmp(back.snapshot_file, m.snapshot_file) == 0);
    FUZZ_CHECK(strcmp(back.snapshot_replid, m.snapshot_replid) == 0);
    FUZZ_CHECK(back.second_replid_offset == m.second_replid_offset);
    FUZZ_CHECK(back.snapshot_offset == m.snapshot_offset && back.snapshot_size == m.snapshot_size);
    FUZZ_CHECK(back.log_end == m.log_end);
    return 0;
}
