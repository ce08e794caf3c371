/*
 * Unit tests for rdbrecv.c in a temp directory: the preamble (sized, EOF, refused), a sized
 * transfer fed in pieces with the stream right after it, an EOF transfer whose mark spans
 * pieces, the magic checked on the first bytes (and a sized payload too short to hold it),
 * the writer learned from the aux fields only when nothing told it, a corrupt checksum
 * refused by finish, the probe of an unchecked diskless RDB (whole command, command split
 * across reads, bytes that are not commands), and abort removing the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "rdbrecv.h"
#include "testdir.h"

static const char replid[] = "0123456789abcdef0123456789abcdef01234567";
static const char mark[] = "ffffffffffffffffffffffffffffffffffffffff";

/* A whole RDB: header, an aux field redis-ver (when ver is not NULL), EOF opcode, CRC-64
 * (zero: written unchecked). */
static size_t make_rdb(char *out, const char *ver, bool checksum)
{
    size_t n = 9;
    memcpy(out, "REDIS0011", 9);
    if (ver) {
        out[n++] = (char)0xFA;
        out[n++] = 9;
        memcpy(out + n, "redis-ver", 9);
        n += 9;
        out[n++] = (char)strlen(ver);
        memcpy(out + n, ver, strlen(ver));
        n += strlen(ver);
    }
    out[n++] = (char)0xff;
    uint64_t crc = checksum ? rdb_crc64(0, out, n) : 0;
    for (int i = 0; i < 8; i++)
        out[n++] = (char)(crc >> (8 * i));
    return n;
}

static void begin(struct rdbrecv *r, const char *dir, const char *line)
{
    struct resp_rdb_preamble pre;
    char err[256];
    assert_int_equal(rdbrecv_preamble(line, strlen(line), &pre, err, sizeof(err)), 0);
    assert_int_equal(rdbrecv_begin(r, &pre, dir, "t", replid, 100, err, sizeof(err)), 0);
    assert_non_null(rdbrecv_filling(r));
}

static ssize_t feed(struct rdbrecv *r, const char *buf, size_t len, char *err)
{
    struct compat_identity up = {.server = COMPAT_REDIS};
    bool learned = false;
    return rdbrecv_feed(r, buf, len, &up, &learned, err, 256);
}

static void test_preamble(void **state)
{
    (void)state;
    struct resp_rdb_preamble pre;
    char err[256];
    assert_int_equal(rdbrecv_preamble("$123", 4, &pre, err, sizeof(err)), 0);
    assert_false(pre.eof_format);
    assert_int_equal(pre.size, 123);
    char line[64];
    snprintf(line, sizeof(line), "$EOF:%s", mark);
    assert_int_equal(rdbrecv_preamble(line, strlen(line), &pre, err, sizeof(err)), 0);
    assert_true(pre.eof_format);
    assert_int_equal(rdbrecv_preamble("-ERR no", 7, &pre, err, sizeof(err)), -1);
    assert_string_equal(err, "bad RDB preamble \"-ERR no\"");
    assert_int_equal(rdbrecv_preamble("+OK", 3, &pre, err, sizeof(err)), -1);
    assert_string_equal(err, "bad RDB preamble \"+OK\"");
}

static void test_sized(void **state)
{
    const char *dir = *state;
    char rdb[128], buf[160], err[256], line[32];
    size_t n = make_rdb(rdb, NULL, true);
    memcpy(buf, rdb, n);
    memcpy(buf + n, "*1\r\n", 4); /* the stream follows in the same read */
    struct rdbrecv r = {0};
    snprintf(line, sizeof(line), "$%zu", n);
    begin(&r, dir, line);
    assert_int_equal(r.size, (int64_t)n);
    assert_int_equal(feed(&r, buf, 5, err), 5);
    assert_false(r.done);
    assert_int_equal(r.fmt.version, 0);        /* the magic is not whole yet */
    assert_int_equal(rdbrecv_servable(&r), 5); /* sized: every byte written is payload */
    assert_int_equal(feed(&r, buf + 5, n - 5 + 4, err), (ssize_t)(n - 5));
    assert_true(r.done);
    assert_int_equal(r.fmt.version, 11);
    assert_int_equal(r.got, (int64_t)n);
    assert_int_equal(rdbrecv_finish(&r, true, err, sizeof(err)), 0);
    assert_false(r.probing);
    struct snapshot *snap = rdbrecv_take(&r);
    assert_non_null(snap);
    assert_null(rdbrecv_filling(&r));
    assert_int_equal(snap->state, SNAPSHOT_READY);
    assert_int_equal(snap->verdict, RDB_VERIFIED);
    assert_int_equal(snap->size, (int64_t)n);
    assert_int_equal(snap->offset, 100);
    snapshot_free(snap);
}

static void test_eof_mark(void **state)
{
    const char *dir = *state;
    char buf[256], err[256], line[64];
    size_t n = make_rdb(buf, "7.0.15", true); /* 36 bytes: more than a mark's length */
    memcpy(buf + n, mark, RESP_EOFMARK_LEN);
    memcpy(buf + n + RESP_EOFMARK_LEN, "*1\r\n", 4);
    size_t total = n + RESP_EOFMARK_LEN; /* what the transfer carries */
    struct rdbrecv r = {0};
    snprintf(line, sizeof(line), "$EOF:%s", mark);
    begin(&r, dir, line);
    assert_int_equal(r.size, -1);
    /* the mark begins in one piece and ends in the next */
    size_t cut = n + 10;
    assert_int_equal(feed(&r, buf, cut, err), (ssize_t)cut);
    assert_false(r.done);
    /* the file holds the mark's first 10 bytes: streamed on, never past what is surely RDB */
    assert_int_equal(rdbrecv_servable(&r), (int64_t)(cut - (RESP_EOFMARK_LEN - 1)));
    assert_int_equal(feed(&r, buf + cut, total + 4 - cut, err), (ssize_t)(total - cut));
    assert_true(r.done);
    assert_int_equal(r.drop, RESP_EOFMARK_LEN);
    assert_int_equal(rdbrecv_finish(&r, true, err, sizeof(err)), 0);
    assert_false(r.probing); /* it had a checksum */
    struct snapshot *snap = rdbrecv_take(&r);
    assert_int_equal(snap->size, (int64_t)n);
    assert_int_equal(snap->verdict, RDB_VERIFIED);
    assert_int_equal(rdbrecv_servable(&r), 0); /* taken: nothing is filling */
    snapshot_free(snap);
}

static void test_bad_payload(void **state)
{
    const char *dir = *state;
    char err[256];
    struct rdbrecv r = {0};
    begin(&r, dir, "$20");
    assert_int_equal(feed(&r, "RED", 3, err), 3); /* a prefix of the magic */
    assert_int_equal(feed(&r, "XS0011", 6, err), -1);
    assert_string_equal(err, "payload is not an RDB (bad magic)");
    rdbrecv_abort(&r);
    assert_null(r.snap);
    /* sized too short to hold the magic at all */
    begin(&r, dir, "$3");
    assert_int_equal(feed(&r, "RED", 3, err), -1);
    assert_string_equal(err, "payload is not an RDB (bad magic)");
    rdbrecv_abort(&r);
    /* a whole RDB whose checksum does not match: refused by finish */
    char rdb[128], line[32];
    size_t n = make_rdb(rdb, NULL, true);
    rdb[n - 1] ^= 1;
    snprintf(line, sizeof(line), "$%zu", n);
    begin(&r, dir, line);
    assert_int_equal(feed(&r, rdb, n, err), (ssize_t)n);
    assert_true(r.done);
    assert_int_equal(rdbrecv_finish(&r, true, err, sizeof(err)), -1);
    rdbrecv_abort(&r);
}

static void test_writer(void **state)
{
    const char *dir = *state;
    char rdb[128], err[256], line[32];
    size_t n = make_rdb(rdb, "7.2.4", true);
    snprintf(line, sizeof(line), "$%zu", n);
    struct rdbrecv r = {0};
    /* nothing told who the upstream is: the RDB does */
    begin(&r, dir, line);
    struct compat_identity up = {.server = COMPAT_UNKNOWN};
    bool learned = false;
    assert_int_equal(rdbrecv_feed(&r, rdb, n, &up, &learned, err, sizeof(err)), (ssize_t)n);
    assert_true(learned);
    assert_int_equal(up.server, COMPAT_REDIS);
    assert_string_equal(up.server_version, "7.2.4");
    assert_string_equal(up.redis_version, "7.2.4");
    rdbrecv_abort(&r);
    /* INFO told already: kept as it was */
    begin(&r, dir, line);
    struct compat_identity known = {.server = COMPAT_VALKEY, .server_version = "8.1.1"};
    learned = false;
    assert_int_equal(rdbrecv_feed(&r, rdb, n, &known, &learned, err, sizeof(err)), (ssize_t)n);
    assert_false(learned);
    assert_int_equal(known.server, COMPAT_VALKEY);
    assert_string_equal(known.server_version, "8.1.1");
    rdbrecv_abort(&r);
}

/* A diskless RDB without a checksum, received whole: r is probing. */
static void unchecked(struct rdbrecv *r, const char *dir, bool probe)
{
    char buf[256], err[256], line[64];
    size_t n = make_rdb(buf, NULL, false);
    memcpy(buf + n, mark, RESP_EOFMARK_LEN);
    snprintf(line, sizeof(line), "$EOF:%s", mark);
    begin(r, dir, line);
    assert_int_equal(feed(r, buf, n + RESP_EOFMARK_LEN, err), (ssize_t)(n + RESP_EOFMARK_LEN));
    assert_true(r->done);
    assert_int_equal(rdbrecv_finish(r, probe, err, sizeof(err)), 0);
    assert_int_equal(r->snap->verdict, RDB_UNCHECKED);
}

static void test_probe(void **state)
{
    const char *dir = *state;
    char err[256];
    struct rdbrecv r = {0};
    /* not asked to probe (a side fetch): kept at once */
    unchecked(&r, dir, false);
    assert_false(r.probing);
    assert_int_equal(rdbrecv_probe_want(&r), RDBRECV_PROBE_MAX_BYTES);
    snapshot_free(rdbrecv_take(&r));

    unchecked(&r, dir, true);
    assert_true(r.probing);
    assert_null(rdbrecv_filling(&r)); /* not served while probing */
    assert_non_null(r.snap);
    assert_int_equal(rdbrecv_probe_want(&r), RDBRECV_PROBE_MAX_BYTES);
    const char *ping = "*1\r\n$4\r\nPING\r\n";
    assert_int_equal(rdbrecv_probe(&r, ping, 9, err, sizeof(err)), 0);
    assert_int_equal(r.probed, 9);
    assert_int_equal(rdbrecv_probe_want(&r), RDBRECV_PROBE_MAX_BYTES - 9); /* undecided */
    assert_int_equal(rdbrecv_probe(&r, ping + 9, strlen(ping) - 9, err, sizeof(err)), 0);
    assert_int_equal(rdbrecv_probe_want(&r), 0); /* one whole command: kept */
    struct snapshot *snap = rdbrecv_take(&r);
    assert_false(r.probing);
    assert_int_equal(snap->state, SNAPSHOT_READY);
    snapshot_free(snap);

    unchecked(&r, dir, true);
    assert_int_equal(rdbrecv_probe(&r, "*1\r\n$4\r\nPI", 10, err, sizeof(err)), 0);
    assert_int_equal(rdbrecv_probe(&r, "garbage\r\n", 9, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "the stream after an unchecked diskless RDB does not parse ("));
    assert_non_null(strstr(err, "): the RDB is discarded"));
    rdbrecv_abort(&r);
    assert_false(r.probing);
    assert_null(r.snap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preamble),
        cmocka_unit_test_setup_teardown(test_sized, testdir_setup, testdir_teardown),
        cmocka_unit_test_setup_teardown(test_eof_mark, testdir_setup, testdir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_payload, testdir_setup, testdir_teardown),
        cmocka_unit_test_setup_teardown(test_writer, testdir_setup, testdir_teardown),
        cmocka_unit_test_setup_teardown(test_probe, testdir_setup, testdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
