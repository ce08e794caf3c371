/*
 * Unit tests for rdb.c: Redis' CRC-64 (its published check value), header parsing for both
 * magics, and the incremental checker fed at every split point, with and without an end mark
 * written through after the trailer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rdb.h"

static void test_crc64_check_value(void **state)
{
    (void)state;
    /* Redis' crc64.c self-test: crc64(0, "123456789") */
    assert_true(rdb_crc64(0, "123456789", 9) == UINT64_C(0xe9c6d914c4b8d9ca));
    /* continued in pieces, the same */
    uint64_t c = rdb_crc64(0, "1234", 4);
    assert_true(rdb_crc64(c, "56789", 5) == UINT64_C(0xe9c6d914c4b8d9ca));
    assert_true(rdb_crc64(0, "", 0) == 0);
}

static void test_header(void **state)
{
    (void)state;
    struct rdb_header h;
    char err[128];
    assert_int_equal(rdb_parse_header("REDIS0010", 9, &h, err, sizeof(err)), 0);
    assert_false(h.valkey);
    assert_int_equal(h.version, 10);
    assert_int_equal(rdb_parse_header("VALKEY080", 9, &h, err, sizeof(err)), 0);
    assert_true(h.valkey);
    assert_int_equal(h.version, 80);
    assert_int_equal(rdb_parse_header("REDIS0x10", 9, &h, err, sizeof(err)), -1);
    assert_int_equal(rdb_parse_header("REDIX0010", 9, &h, err, sizeof(err)), -1);
    assert_string_equal(err, "not an RDB (no REDIS or VALKEY magic)");
    assert_int_equal(rdb_parse_header("REDIS00", 7, &h, err, sizeof(err)), -1);
    assert_true(rdb_header_prefix_ok("", 0));
    assert_true(rdb_header_prefix_ok("RED", 3));
    assert_true(rdb_header_prefix_ok("REDIS0011", 9));
    assert_true(rdb_header_prefix_ok("VALK", 4));
    assert_true(rdb_header_prefix_ok("VALKEY081", 9));
    assert_false(rdb_header_prefix_ok("-ERR", 4));
    assert_false(rdb_header_prefix_ok("REDIX", 5));
    assert_false(rdb_header_prefix_ok("VALKEZ", 6));
}

static size_t build(unsigned char *out, size_t body_len, bool checksum)
{
    memcpy(out, "REDIS0011", 9);
    size_t n = 9;
    for (size_t i = 0; i < body_len; i++)
        out[n++] = (unsigned char)(i * 31 + 7);
    out[n++] = 0xff;
    uint64_t crc = checksum ? rdb_crc64(0, out, n) : 0;
    for (int i = 0; i < 8; i++)
        out[n++] = (unsigned char)(crc >> (8 * i));
    return n;
}

/* Fed in two pieces split anywhere, with a 40-byte mark after it or none: the verdict is the
 * same, and one flipped byte is always caught. */
static void test_check_split_points(void **state)
{
    (void)state;
    unsigned char rdb[400];
    char err[160];
    const char *mark = "0123456789abcdef0123456789abcdef01234567";
    for (size_t body = 0; body < 300; body += 37) {
        size_t n = build(rdb, body, true);
        memcpy(rdb + n, mark, 40);
        for (size_t drop = 0; drop <= 40; drop += 40) {
            size_t total = n + drop;
            for (size_t cut = 0; cut <= total; cut++) {
                struct rdb_check c;
                rdb_check_init(&c);
                rdb_check_feed(&c, rdb, cut);
                rdb_check_feed(&c, rdb + cut, total - cut);
                struct rdb_header h;
                assert_int_equal(rdb_check_end(&c, drop, &h, err, sizeof(err)), RDB_VERIFIED);
                assert_int_equal(h.version, 11);
            }
            for (size_t at = 0; at < n; at += 5) {
                unsigned char bad[400];
                memcpy(bad, rdb, total);
                bad[at] ^= 0x20;
                struct rdb_check c;
                rdb_check_init(&c);
                for (size_t i = 0; i < total; i += 3)
                    rdb_check_feed(&c, bad + i, total - i < 3 ? total - i : 3);
                assert_int_equal(rdb_check_end(&c, drop, NULL, err, sizeof(err)), RDB_CORRUPT);
            }
        }
    }
}

static void test_check_edges(void **state)
{
    (void)state;
    unsigned char rdb[64];
    char err[160];
    struct rdb_check c;
    /* zero trailer: the writer had rdbchecksum off */
    size_t n = build(rdb, 3, false);
    rdb_check_init(&c);
    rdb_check_feed(&c, rdb, n);
    assert_int_equal(rdb_check_end(&c, 0, NULL, err, sizeof(err)), RDB_UNCHECKED);
    /* a format without a trailer */
    rdb_check_init(&c);
    rdb_check_feed(&c, "REDIS0004\xff", 10);
    assert_int_equal(rdb_check_end(&c, 0, NULL, err, sizeof(err)), RDB_UNCHECKED);
    /* too short, not an RDB, a mark longer than the input */
    rdb_check_init(&c);
    rdb_check_feed(&c, "REDIS0010\xff", 10);
    assert_int_equal(rdb_check_end(&c, 0, NULL, err, sizeof(err)), RDB_CORRUPT);
    rdb_check_init(&c);
    rdb_check_feed(&c, "+OK\r\n", 5);
    assert_int_equal(rdb_check_end(&c, 0, NULL, err, sizeof(err)), RDB_CORRUPT);
    assert_int_equal(rdb_check_end(&c, 41, NULL, err, sizeof(err)), RDB_CORRUPT);
    rdb_check_init(&c);
    assert_int_equal(rdb_check_end(&c, 0, NULL, err, sizeof(err)), RDB_CORRUPT);
    assert_string_equal(rdb_verdict_name(RDB_VERIFIED), "verified");
    assert_string_equal(rdb_verdict_name(RDB_CORRUPT), "corrupt");
    assert_string_equal(rdb_verdict_name((enum rdb_verdict)9), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc64_check_value),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_check_split_points),
        cmocka_unit_test(test_check_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
