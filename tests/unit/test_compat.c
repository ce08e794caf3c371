/*
 * Unit tests for compat.c: version strings, the RDB magic and its writer's aux field, the
 * table of RDB versions each server loads (checked against the RDB_VERSION of the servers in
 * the matrix), the verdict for leaves that say more or less about themselves, INFO server
 * parsing, what the relay announces upstream, and the table of leaves held off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "compat.h"

#define V(a, b, c) ((a) << 16 | (b) << 8 | (c))

static void test_version_parse(void **state)
{
    (void)state;
    assert_int_equal(compat_version_parse("7.0.15", 6), V(7, 0, 15));
    assert_int_equal(compat_version_parse("9.1.2", 5), V(9, 1, 2));
    assert_int_equal(compat_version_parse("8.0", 3), V(8, 0, 0));
    assert_int_equal(compat_version_parse("255.255.255", 11), V(255, 255, 255));
    const char *bad[] = {"",      "7",       "7.",      ".7.0",   "7.0.", "7.0.1.2",
                         "7.a.1", "256.0.0", "7.0.15 ", "-1.0.0", "7..0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(compat_version_parse(bad[i], strlen(bad[i])), -1);
    /* the length bounds it: no read past len */
    assert_int_equal(compat_version_parse("9.1.2xyz", 5), V(9, 1, 2));
    char out[32];
    compat_version_format(V(7, 2, 4), out, sizeof(out));
    assert_string_equal(out, "7.2.4");
    assert_true(V(7, 2, 4) < V(7, 4, 0) && V(8, 0, 6) < V(9, 1, 2));
}

static void test_rdb_magic(void **state)
{
    (void)state;
    struct compat_rdb f;
    assert_int_equal(compat_rdb_parse("REDIS0010", 9, &f), 1);
    assert_int_equal(f.version, 10);
    assert_false(f.valkey_magic);
    assert_int_equal(compat_rdb_parse("REDIS0012\xfa", 10, &f), 1);
    assert_int_equal(f.version, 12);
    assert_int_equal(compat_rdb_parse("VALKEY080", 9, &f), 1);
    assert_int_equal(f.version, 80);
    assert_true(f.valkey_magic);
    assert_int_equal(compat_rdb_parse("VALK", 4, &f), 0);
    assert_int_equal(compat_rdb_parse("REDIS00", 7, &f), 0);
    assert_int_equal(compat_rdb_parse("", 0, &f), 0);
    assert_int_equal(compat_rdb_parse("REDIX0011", 9, &f), -1);
    assert_int_equal(compat_rdb_parse("REDIS00x1", 9, &f), -1);
    assert_int_equal(compat_rdb_parse("REDIS0000", 9, &f), -1);
    assert_int_equal(compat_rdb_parse("-ERR", 4, &f), -1);
    assert_int_equal(compat_rdb_parse("RED", 3, &f), 0);
    assert_int_equal(compat_rdb_parse("VALKEX", 6, &f), -1);
}

static size_t aux(unsigned char *p, const char *k, const char *v)
{
    size_t n = 0, kl = strlen(k), vl = strlen(v);
    p[n++] = 0xFA;
    p[n++] = (unsigned char)kl;
    memcpy(p + n, k, kl);
    n += kl;
    p[n++] = (unsigned char)vl;
    memcpy(p + n, v, vl);
    return n + vl;
}

static void test_rdb_writer(void **state)
{
    (void)state;
    unsigned char b[256];
    size_t n = 0;
    memcpy(b, "REDIS0011", 9);
    n = 9;
    n += aux(b + n, "redis-ver", "7.2.4");
    /* redis-bits as an 8-bit integer, then an LZF-encoded value, then valkey-ver */
    b[n++] = 0xFA;
    b[n++] = 10;
    memcpy(b + n, "redis-bits", 10);
    n += 10;
    b[n++] = 0xC0;
    b[n++] = 64;
    b[n++] = 0xFA;
    b[n++] = 1;
    b[n++] = 'z';
    b[n++] = 0xC3; /* LZF: clen 2, ulen 5, 2 bytes */
    b[n++] = 2;
    b[n++] = 5;
    b[n++] = 0x01;
    b[n++] = 0x02;
    size_t before_valkey = n;
    n += aux(b + n, "valkey-ver", "8.1.1");
    b[n++] = 0xFE; /* SELECTDB: aux fields end */
    enum compat_server s = COMPAT_UNKNOWN;
    int v = 0;
    assert_int_equal(compat_rdb_writer(b, n, &s, &v), 1);
    assert_int_equal(s, COMPAT_VALKEY);
    assert_int_equal(v, V(8, 1, 1));
    /* cut before valkey-ver: the redis-ver found so far */
    assert_int_equal(compat_rdb_writer(b, before_valkey, &s, &v), 1);
    assert_int_equal(s, COMPAT_REDIS);
    assert_int_equal(v, V(7, 2, 4));
    /* cut inside the first field, or no aux at all */
    assert_int_equal(compat_rdb_writer(b, 14, &s, &v), 0);
    assert_int_equal(compat_rdb_writer("REDIS0010\xfe\x00", 11, &s, &v), 0);
    assert_int_equal(compat_rdb_writer("NOTANRDB!\xfa", 10, &s, &v), 0);
    /* a length claiming more than there is: not found, no overread (ASan) */
    unsigned char bad[] = {'R', 'E',  'D',  'I',  'S',  '0',  '0', '1',
                           '1', 0xFA, 0x80, 0xFF, 0xFF, 0xFF, 0xFF};
    assert_int_equal(compat_rdb_writer(bad, sizeof(bad), &s, &v), 0);
}

/* The RDB_VERSION each server in the matrix writes (its rdb.h), and that it loads its own. */
static void test_table(void **state)
{
    (void)state;
    static const struct {
        enum compat_server s;
        int ver, rdb;
        bool valkey_magic;
    } own[] = {
        {COMPAT_REDIS, V(7, 0, 15), 10, false}, {COMPAT_REDIS, V(7, 2, 4), 11, false},
        {COMPAT_REDIS, V(7, 4, 0), 12, false},  {COMPAT_REDIS, V(8, 0, 6), 12, false},
        {COMPAT_VALKEY, V(8, 0, 1), 11, false}, {COMPAT_VALKEY, V(8, 1, 1), 11, false},
        {COMPAT_VALKEY, V(9, 0, 0), 80, true},  {COMPAT_VALKEY, V(9, 1, 2), 80, true},
    };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        assert_int_equal(compat_max_rdb(own[i].s, own[i].ver, own[i].valkey_magic), own[i].rdb);
        struct compat_leaf l = {.server = own[i].s, .version = own[i].ver, .exact = true};
        struct compat_rdb r = {.version = own[i].rdb, .valkey_magic = own[i].valkey_magic};
        assert_int_equal(compat_check(&l, &r), COMPAT_LOADS);
        r.version++;
        assert_int_equal(compat_check(&l, &r), COMPAT_CANNOT);
    }
    /* Redis never loads the VALKEY magic; Valkey never loads Redis' 12+ */
    assert_int_equal(compat_max_rdb(COMPAT_REDIS, V(8, 8, 0), true), 0);
    assert_int_equal(compat_max_rdb(COMPAT_VALKEY, V(9, 1, 2), false), 11);
    assert_int_equal(compat_max_rdb(COMPAT_REDIS, V(8, 6, 0), false), 13);
    assert_int_equal(compat_max_rdb(COMPAT_UNKNOWN, V(9, 0, 0), false), 0);
}

static void test_check(void **state)
{
    (void)state;
    struct compat_rdb r10 = {10, false}, r11 = {11, false}, r12 = {12, false}, r13 = {13, false},
                      r9 = {9, false}, v80 = {80, true}, none = {0, false};
    struct compat_leaf unknown = {0};
    assert_int_equal(compat_check(&unknown, &r9), COMPAT_LOADS);
    assert_int_equal(compat_check(&unknown, &r10), COMPAT_LOADS);
    assert_int_equal(compat_check(&unknown, &r11), COMPAT_UNSURE);
    assert_int_equal(compat_check(&unknown, &r12), COMPAT_UNSURE);
    assert_int_equal(compat_check(&unknown, &v80), COMPAT_CANNOT);
    assert_int_equal(compat_check(&unknown, &none), COMPAT_UNSURE);
    /* Redis 8 announces capa rdb-channel-repl: at least 8.0 */
    struct compat_leaf r8 = {COMPAT_REDIS, V(8, 0, 0), false};
    assert_int_equal(compat_check(&r8, &r12), COMPAT_LOADS);
    assert_int_equal(compat_check(&r8, &r13), COMPAT_UNSURE);
    assert_int_equal(compat_check(&r8, &v80), COMPAT_CANNOT);
    struct compat_leaf vk8 = {COMPAT_VALKEY, V(8, 0, 1), true};
    assert_int_equal(compat_check(&vk8, &r11), COMPAT_LOADS);
    assert_int_equal(compat_check(&vk8, &r12), COMPAT_CANNOT);
    assert_int_equal(compat_check(&vk8, &v80), COMPAT_CANNOT);
    struct compat_leaf vk9 = {COMPAT_VALKEY, V(9, 1, 2), true};
    assert_int_equal(compat_check(&vk9, &r10), COMPAT_LOADS);
    assert_int_equal(compat_check(&vk9, &v80), COMPAT_LOADS);
    assert_int_equal(compat_check(&vk9, &r12), COMPAT_CANNOT);
}

/* The words log lines and INFO's refused<n> use for a leaf and an RDB. */
static void test_desc(void **state)
{
    (void)state;
    char out[48];
    struct compat_leaf l = {.server = COMPAT_VALKEY, .version = 0x080100, .exact = true};
    compat_leaf_desc(&l, out, sizeof(out));
    assert_string_equal(out, "valkey 8.1.0");
    l = (struct compat_leaf){.server = COMPAT_REDIS, .version = 0x080000};
    compat_leaf_desc(&l, out, sizeof(out));
    assert_string_equal(out, "redis >= 8.0.0");
    l = (struct compat_leaf){.server = COMPAT_REDIS};
    compat_leaf_desc(&l, out, sizeof(out));
    assert_string_equal(out, "version not announced");
    l = (struct compat_leaf){.version = 0x070000};
    compat_leaf_desc(&l, out, sizeof(out));
    assert_string_equal(out, "version not announced");
    struct compat_rdb f = {.version = 11};
    compat_rdb_desc(&f, out, sizeof(out));
    assert_string_equal(out, "RDB version 11 (REDIS magic)");
    f = (struct compat_rdb){.version = 80, .valkey_magic = true};
    compat_rdb_desc(&f, out, sizeof(out));
    assert_string_equal(out, "RDB version 80 (VALKEY magic)");
}

static void test_chain(void **state)
{
    (void)state;
    const char *a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const char *b = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const char *c = "cccccccccccccccccccccccccccccccccccccccc";
    char info[512];
    snprintf(info, sizeof(info), "redis_version:7.0.15\r\nrun_id:%s\r\ncascade_chain:%s,%s\r\n", a,
             b, c);
    struct compat_identity id;
    assert_int_equal(compat_identity_parse(info, strlen(info), &id), 0);
    assert_true(compat_chain_has(&id, a));
    assert_true(compat_chain_has(&id, c));
    assert_true(compat_chain_has(&id, "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"));
    assert_false(compat_chain_has(&id, "dddddddddddddddddddddddddddddddddddddddd"));
    assert_false(compat_chain_has(&id, "cccccccccccccccccccccccccccccccccccccc")); /* 38 */
    assert_false(compat_chain_has(&id, ""));
    char out[COMPAT_CHAIN_IDS * 41];
    compat_chain_extend(&id, out, sizeof(out));
    char want[200];
    snprintf(want, sizeof(want), "%s,%s,%s", a, b, c);
    assert_string_equal(out, want);
    /* a stock server: no chain, its own id only */
    snprintf(info, sizeof(info), "redis_version:7.0.15\r\nrun_id:%s\r\n", b);
    assert_int_equal(compat_identity_parse(info, strlen(info), &id), 0);
    assert_false(compat_chain_has(&id, a));
    compat_chain_extend(&id, out, sizeof(out));
    assert_string_equal(out, b);
    /* a long chain is cut to COMPAT_CHAIN_IDS ids; junk ends it */
    char longinfo[1024] = "redis_version:7.0.15\r\nrun_id:";
    strcat(longinfo, a);
    strcat(longinfo, "\r\ncascade_chain:");
    for (int i = 0; i < 12; i++) {
        strcat(longinfo, i ? "," : "");
        strcat(longinfo, b);
    }
    strcat(longinfo, "\r\n");
    assert_int_equal(compat_identity_parse(longinfo, strlen(longinfo), &id), 0);
    compat_chain_extend(&id, out, sizeof(out));
    assert_int_equal(strlen(out), COMPAT_CHAIN_IDS * 41 - 1);
    memcpy(id.chain, "junk,", 6);
    compat_chain_extend(&id, out, sizeof(out));
    assert_string_equal(out, a);
}

static void test_identity(void **state)
{
    (void)state;
    const char *vk = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\n"
                     "valkey_version:9.1.2\r\nredis_mode:standalone\r\n"
                     "run_id:0123456789abcdef0123456789abcdef01234567\r\n";
    struct compat_identity id;
    assert_int_equal(compat_identity_parse(vk, strlen(vk), &id), 0);
    assert_int_equal(id.server, COMPAT_VALKEY);
    assert_string_equal(id.redis_version, "7.2.4");
    assert_string_equal(id.server_version, "9.1.2");
    assert_string_equal(id.server_name, "valkey");
    assert_string_equal(id.run_id, "0123456789abcdef0123456789abcdef01234567");
    assert_string_equal(compat_announce("auto", &id), "9.1.2");
    assert_string_equal(compat_announce("none", &id), "");
    assert_string_equal(compat_announce("8.0.0", &id), "8.0.0");
    const char *rd = "# Server\nredis_version:8.0.6\nrun_id:ab\n";
    assert_int_equal(compat_identity_parse(rd, strlen(rd), &id), 0);
    assert_int_equal(id.server, COMPAT_REDIS);
    assert_string_equal(id.server_version, "8.0.6");
    assert_string_equal(id.server_name, "");
    assert_string_equal(compat_announce("auto", &id), ""); /* Redis: nothing */
    const char *bad = "# Server\r\nredis_versionx:1.2.3\r\nredis_version:abc\r\n";
    assert_int_equal(compat_identity_parse(bad, strlen(bad), &id), -1);
    assert_int_equal(compat_identity_parse("", 0, &id), -1);
    assert_true(compat_announce_valid("auto"));
    assert_true(compat_announce_valid("9.0.0"));
    assert_false(compat_announce_valid("nine"));
    assert_false(compat_announce_valid(""));
}

static void test_marks(void **state)
{
    (void)state;
    struct compat_marks t = {0};
    struct compat_leaf unknown = {0};
    struct compat_rdb r12 = {12, false}, r11 = {11, false};
    int64_t now = 1000;
    assert_false(compat_marks_failed(&t, "10.0.0.1", 6380, &unknown, &r12, now));
    assert_false(compat_marks_failed(&t, "10.0.0.1", 6380, &unknown, &r12, now));
    assert_false(compat_marks_held(&t, "10.0.0.1", 6380, &r12, now));
    assert_true(compat_marks_failed(&t, "10.0.0.1", 6380, &unknown, &r12, now));
    assert_int_equal(compat_marks_count(&t), 1);
    assert_true(compat_marks_held(&t, "10.0.0.1", 6380, &r12, now));
    assert_false(compat_marks_held(&t, "10.0.0.1", 6381, &r12, now)); /* another leaf */
    /* the hold expires, one more try fails: held again, twice as long, not logged again */
    now += COMPAT_HOLD_MS;
    assert_false(compat_marks_held(&t, "10.0.0.1", 6380, &r12, now));
    assert_false(compat_marks_failed(&t, "10.0.0.1", 6380, &unknown, &r12, now));
    assert_true(compat_marks_held(&t, "10.0.0.1", 6380, &r12, now + 2 * COMPAT_HOLD_MS - 1));
    assert_false(compat_marks_held(&t, "10.0.0.1", 6380, &r12, now + 2 * COMPAT_HOLD_MS));
    /* a snapshot of another format lifts the mark */
    assert_false(compat_marks_held(&t, "10.0.0.1", 6380, &r11, now));
    assert_int_equal(compat_marks_count(&t), 0);
    /* two failures then an ACK: counting starts over */
    compat_marks_failed(&t, "h", 1, &unknown, &r12, now);
    compat_marks_failed(&t, "h", 1, &unknown, &r12, now);
    compat_marks_ok(&t, "h", 1);
    assert_false(compat_marks_failed(&t, "h", 1, &unknown, &r12, now));
    /* marked for its version: held for as long as the snapshot keeps that format */
    struct compat_leaf vk8 = {COMPAT_VALKEY, V(8, 0, 1), true};
    assert_true(compat_marks_cannot(&t, "v", 2, &vk8, &r12, now));
    assert_false(compat_marks_cannot(&t, "v", 2, &vk8, &r12, now)); /* logged once */
    assert_int_equal(compat_marks_count(&t), 1);
    /* such a mark is not a hold: the verdict decides (asked with a silent leaf: lifted) */
    assert_false(compat_marks_held(&t, "v", 2, &r12, now));
    assert_int_equal(compat_marks_count(&t), 0);
    assert_true(compat_marks_cannot(&t, "v", 2, &vk8, &r12, now)); /* logged again */
    /* the table is bounded: old unmarked entries are reused first */
    for (int i = 0; i < 3 * COMPAT_LEAVES; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 256, i % 256);
        compat_marks_failed(&t, ip, 1, &unknown, &r12, now + i);
    }
    assert_int_equal(t.n, COMPAT_LEAVES);
    assert_non_null(compat_marks_find(&t, "v", 2)); /* marked: kept */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_parse), cmocka_unit_test(test_rdb_magic),
        cmocka_unit_test(test_rdb_writer),    cmocka_unit_test(test_table),
        cmocka_unit_test(test_check),         cmocka_unit_test(test_identity),
        cmocka_unit_test(test_chain),         cmocka_unit_test(test_marks),
        cmocka_unit_test(test_desc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
