/*
 * Unit tests for rdbinfo.c: the header and AUX records of RDB files built here byte by byte
 * in each of Redis' string encodings (6-bit, 14-bit and 32-bit lengths, 8/16/32-bit integers,
 * LZF), every prefix of them (SHORT, never a wrong value), bad headers and encodings (BAD),
 * and a file read from disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rdbinfo.h"

struct buf {
    unsigned char b[4096];
    size_t n;
};

static void put(struct buf *o, const void *p, size_t n)
{
    assert_true(o->n + n <= sizeof(o->b));
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put1(struct buf *o, unsigned c)
{
    unsigned char x = (unsigned char)c;
    put(o, &x, 1);
}

/* A string with a plain length prefix: 6-bit, 14-bit or 32-bit, as Redis picks. */
static void put_str(struct buf *o, const char *s, size_t n)
{
    if (n < 64) {
        put1(o, (unsigned)n);
    } else if (n < 16384) {
        put1(o, 0x40 | (unsigned)(n >> 8));
        put1(o, (unsigned)(n & 0xff));
    } else {
        put1(o, 0x80);
        for (int i = 3; i >= 0; i--)
            put1(o, (unsigned)(n >> (8 * i)) & 0xff);
    }
    put(o, s, n);
}

static void put_cstr(struct buf *o, const char *s)
{
    put_str(o, s, strlen(s));
}

/* An integer-encoded string: 8, 16 or 32 bits little-endian. */
static void put_int(struct buf *o, int64_t v)
{
    if (v >= -128 && v <= 127) {
        put1(o, 0xC0);
        put1(o, (unsigned)(v & 0xff));
    } else if (v >= -32768 && v <= 32767) {
        put1(o, 0xC1);
        put1(o, (unsigned)(v & 0xff));
        put1(o, (unsigned)((v >> 8) & 0xff));
    } else {
        put1(o, 0xC2);
        for (int i = 0; i < 4; i++)
            put1(o, (unsigned)((v >> (8 * i)) & 0xff));
    }
}

static void aux_str(struct buf *o, const char *k, const char *v)
{
    put1(o, 0xFA);
    put_cstr(o, k);
    put_cstr(o, v);
}

static void aux_int(struct buf *o, const char *k, int64_t v)
{
    put1(o, 0xFA);
    put_cstr(o, k);
    put_int(o, v);
}

static const char replid[] = "8c7f12a3b4c5d6e7f8091a2b3c4d5e6f70819203";

/* What redis 7.0 writes for a full sync, then a SELECTDB. */
static void typical(struct buf *o, int64_t offset, bool offset_as_int)
{
    put(o, "REDIS0010", 9);
    aux_str(o, "redis-ver", "7.0.15");
    aux_int(o, "redis-bits", 64);
    aux_int(o, "ctime", 1764600000);
    aux_int(o, "used-mem", 1234567);
    aux_int(o, "repl-stream-db", 0);
    aux_str(o, "repl-id", replid);
    if (offset_as_int) {
        aux_int(o, "repl-offset", offset);
    } else {
        char num[32];
        snprintf(num, sizeof(num), "%lld", (long long)offset);
        aux_str(o, "repl-offset", num);
    }
    aux_int(o, "aof-base", 0);
    put1(o, 0xFE); /* SELECTDB 0 */
    put1(o, 0);
}

static void test_typical(void **state)
{
    (void)state;
    static const int64_t offsets[] = {
        0, 1, 127, 128, 300, 32767, 32768, 2147483647, 2147483648LL, 9223372036854775807LL};
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        for (int as_int = 0; as_int < 2; as_int++) {
            if (as_int && offsets[i] > 2147483647)
                continue; /* Redis writes those as decimal strings */
            struct buf o = {.n = 0};
            typical(&o, offsets[i], as_int);
            struct rdbinfo info;
            char err[128] = "";
            assert_int_equal(rdbinfo_parse(o.b, o.n, &info, err, sizeof(err)), RDBINFO_OK);
            assert_int_equal(info.version, 10);
            assert_int_equal(info.aux_count, 8);
            assert_true(info.has_repl_offset);
            assert_int_equal(info.repl_offset, offsets[i]);
            assert_true(info.has_repl_id);
            assert_string_equal(info.repl_id, replid);
            /* Every prefix is SHORT: never a value read from bytes that are not there. */
            for (size_t n = 0; n < o.n; n++) {
                int rc = rdbinfo_parse(o.b, n, &info, err, sizeof(err));
                if (n == o.n - 1) /* the SELECTDB opcode is in: done */
                    continue;
                if (rc != RDBINFO_SHORT)
                    fail_msg("prefix %zu of %zu: %d", n, o.n, rc);
            }
        }
    }
}

/* No repl-offset (a BGSAVE without replication info), an RDB with no AUX at all, Valkey. */
static void test_without_offset(void **state)
{
    (void)state;
    struct buf o = {.n = 0};
    put(&o, "REDIS0009", 9);
    aux_str(&o, "redis-ver", "5.0.0");
    put1(&o, 0xFF); /* EOF */
    struct rdbinfo info;
    char err[128];
    assert_int_equal(rdbinfo_parse(o.b, o.n, &info, err, sizeof(err)), RDBINFO_OK);
    assert_int_equal(info.version, 9);
    assert_false(info.has_repl_offset);
    assert_false(info.has_repl_id);

    struct buf v = {.n = 0};
    put(&v, "VALKEY080", 9);
    aux_int(&v, "repl-offset", 4242);
    put1(&v, 0xFE);
    assert_int_equal(rdbinfo_parse(v.b, v.n, &info, err, sizeof(err)), RDBINFO_OK);
    assert_int_equal(info.version, 80);
    assert_int_equal(info.repl_offset, 4242);

    /* A repl-offset that is not a plain integer is not one. */
    struct buf w = {.n = 0};
    put(&w, "REDIS0010", 9);
    aux_str(&w, "repl-offset", "12a");
    put1(&w, 0xFE);
    assert_int_equal(rdbinfo_parse(w.b, w.n, &info, err, sizeof(err)), RDBINFO_OK);
    assert_false(info.has_repl_offset);
}

/* Long values (14- and 32-bit lengths) and LZF-compressed ones are skipped whole. */
static void test_long_and_lzf(void **state)
{
    (void)state;
    struct buf o = {.n = 0};
    put(&o, "REDIS0011", 9);
    static char big[3000];
    memset(big, 'x', sizeof(big));
    put1(&o, 0xFA);
    put_cstr(&o, "lua");
    put_str(&o, big, sizeof(big));
    put1(&o, 0xFA);
    put_cstr(&o, "blob");
    put1(&o, 0x80); /* a 32-bit length */
    put1(&o, 0);
    put1(&o, 0);
    put1(&o, 0);
    put1(&o, 100);
    put(&o, big, 100);
    put1(&o, 0xFA); /* an LZF value: C3, compressed length 5, original length 40 */
    put_cstr(&o, "repl-id");
    put1(&o, 0xC3);
    put1(&o, 5);
    put1(&o, 40);
    put(&o, "\x01\x02\x03\x04\x05", 5);
    aux_str(&o, "repl-offset", "987654321012");
    put1(&o, 0xFB); /* RESIZEDB */
    struct rdbinfo info;
    char err[128];
    assert_int_equal(rdbinfo_parse(o.b, o.n, &info, err, sizeof(err)), RDBINFO_OK);
    assert_int_equal(info.aux_count, 4);
    assert_false(info.has_repl_id); /* compressed: not read */
    assert_true(info.has_repl_offset);
    assert_int_equal(info.repl_offset, 987654321012LL);
}

static void test_bad(void **state)
{
    (void)state;
    struct rdbinfo info;
    char err[128];
    assert_int_equal(rdbinfo_parse("REDIX0010\xfe", 10, &info, err, sizeof(err)), RDBINFO_BAD);
    assert_int_equal(rdbinfo_parse("REDIS00a0\xfe", 10, &info, err, sizeof(err)), RDBINFO_BAD);
    assert_int_equal(rdbinfo_parse("garbage", 7, &info, err, sizeof(err)), RDBINFO_BAD);
    assert_int_equal(rdbinfo_parse("RED", 3, &info, err, sizeof(err)), RDBINFO_SHORT);
    assert_int_equal(rdbinfo_parse("", 0, &info, err, sizeof(err)), RDBINFO_SHORT);
    /* A length byte 0x82 (neither 32- nor 64-bit) and a special encoding 0xC5. */
    assert_int_equal(rdbinfo_parse("REDIS0010\xfa\x82", 11, &info, err, sizeof(err)), RDBINFO_BAD);
    assert_int_equal(rdbinfo_parse("REDIS0010\xfa\x01k\xc5", 13, &info, err, sizeof(err)),
                     RDBINFO_BAD);
    assert_non_null(strstr(err, "encoding"));
    /* A length far beyond the buffer is SHORT (more bytes could follow), not a crash. */
    assert_int_equal(rdbinfo_parse("REDIS0010\xfa\x81\xff\xff\xff\xff\xff\xff\xff\xff", 19, &info,
                                   err, sizeof(err)),
                     RDBINFO_SHORT);
}

static void test_read_file(void **state)
{
    (void)state;
    char path[] = "/tmp/cascade-test-rdbinfo-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    struct buf o = {.n = 0};
    typical(&o, 4711, true);
    assert_int_equal(write(fd, o.b, o.n), (ssize_t)o.n);
    close(fd);
    struct rdbinfo info;
    char err[256];
    assert_int_equal(rdbinfo_read_file(path, &info, err, sizeof(err)), RDBINFO_OK);
    assert_int_equal(info.repl_offset, 4711);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rdbinfo_read_file(path, &info, err, sizeof(err)), RDBINFO_BAD);
    assert_non_null(strstr(err, "cannot open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typical),      cmocka_unit_test(test_without_offset),
        cmocka_unit_test(test_long_and_lzf), cmocka_unit_test(test_bad),
        cmocka_unit_test(test_read_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
