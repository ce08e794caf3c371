/*
 * Shared by the fuzz targets and the corpus replay driver: the libFuzzer entry point and a
 * check that aborts in every build type (assert() would vanish under NDEBUG, and a fuzz
 * target's checks are the whole point of running it).
 */
#ifndef CASCADE_FUZZ_H
#define CASCADE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Called by libFuzzer, or by replay_main.c once per corpus file. Always returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static inline void fuzz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
    abort();
}

#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fuzz_fail(#cond, __FILE__, __LINE__))

#endif
