/*
 * Fuzz target: compat.c's parsers of untrusted input: the RDB header and aux fields (bytes
 * from the upstream), INFO server text (the upstream's reply), version strings (REPLCONF
 * version from any client). Checks: no overread (the input sits in a buffer of exactly its
 * size), a parsed RDB version is the digits of the magic, a parsed version string
 * formats back to a string that parses to the same number, and a writer's version found is
 * one a version string can give.
 */
#include "fuzz.h"

#include <string.h>

#include "compat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct compat_rdb f;
    int rc = compat_rdb_parse(data, size, &f);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    if (rc == 1)
        FUZZ_CHECK(f.version >= 1 && f.version <= 9999 && size >= COMPAT_MAGIC_LEN);
    enum compat_server srv = COMPAT_UNKNOWN;
    int ver = 0;
    if (compat_rdb_writer(data, size, &srv, &ver) == 1)
        FUZZ_CHECK(rc == 1 && srv != COMPAT_UNKNOWN && ver >= 0 && ver <= 0xFFFFFF);
    int v = compat_version_parse((const char *)data, size);
    if (v >= 0) {
        char out[32];
        compat_version_format(v, out, sizeof(out));
        FUZZ_CHECK(compat_version_parse(out, strlen(out)) == v);
    }
    struct compat_identity id;
    if (compat_identity_parse((const char *)data, size, &id) == 0) {
        FUZZ_CHECK(id.server != COMPAT_UNKNOWN);
        FUZZ_CHECK(compat_version_parse(id.redis_version, strlen(id.redis_version)) >= 0);
        FUZZ_CHECK(strlen(id.run_id) < sizeof(id.run_id));
    }
    struct compat_leaf leaf = {.server = srv, .version = ver, .exact = (size & 1) != 0};
    if (rc == 1)
        FUZZ_CHECK(compat_check(&leaf, &f) <= COMPAT_UNSURE);
    return 0;
}
