/*
 * Unit tests for crc32c.c (ISA-L underneath): the standard check vectors, chaining, and equality
 * with a plain table-driven CRC-32C kept here as the reference (the seed and inversion
 * convention of crc32_iscsi differs from ours: these catch a wrong wrapper), on pseudo-random
 * buffers of every small length and alignment and on runs past ISA-L's wide loops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crc32c.h"

/* The reference: reflected CRC-32C (polynomial 0x82F63B78), one table lookup per byte. */
static uint32_t ref_crc32c(uint32_t crc, const void *buf, size_t len)
{
    static uint32_t table[256];
    if (!table[1]) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
    }
    const unsigned char *p = buf;
    crc = ~crc;
    while (len--)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void fill(unsigned char *buf, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (unsigned char)(seed >> 16);
    }
}

static void test_vectors(void **state)
{
    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);
    assert_int_equal(crc32c(0, "a", 1), 0xC1D04330u);
    unsigned char zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof(ones));
    assert_int_equal(crc32c(0, zeros, 32), 0x8A9136AAu); /* RFC 3720, B.4 */
    assert_int_equal(crc32c(0, ones, 32), 0x62A8AB43u);
    assert_int_equal(ref_crc32c(0, zeros, 32), 0x8A9136AAu);
}

/* Every length up to 40000 in steps, at 8 alignments, alone and chained from a seed. */
static void test_equals_reference(void **state)
{
    (void)state;
    static unsigned char buf[40000 + 16];
    fill(buf, sizeof(buf), 12345);
    for (size_t off = 0; off < 8; off++) {
        for (size_t len = 0; len <= 40000; len += (len < 64 ? 1 : len < 1024 ? 37 : 1531)) {
            assert_int_equal(crc32c(0, buf + off, len), ref_crc32c(0, buf + off, len));
            size_t h = len / 3;
            uint32_t a = crc32c(crc32c(7, buf + off, h), buf + off + h, len - h);
            uint32_t b = ref_crc32c(ref_crc32c(7, buf + off, h), buf + off + h, len - h);
            assert_int_equal(a, b);
        }
    }
}

/* Random lengths and contents on a 4 MB buffer. */
static void test_random_buffers(void **state)
{
    (void)state;
    size_t n = 4 << 20;
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    srand(42);
    for (int round = 0; round < 16; round++) {
        fill(buf, n, (uint32_t)rand());
        size_t off = (size_t)rand() % 64, len = (size_t)rand() % (n - 64);
        uint32_t seed = (uint32_t)rand();
        assert_int_equal(crc32c(seed, buf + off, len), ref_crc32c(seed, buf + off, len));
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_equals_reference),
        cmocka_unit_test(test_random_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
