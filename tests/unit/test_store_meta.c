/*
 * Unit tests for store_meta.c: the text format (every key, the version-2 checksum line, the
 * version-1 upgrade path, strictness against every flipped byte and every truncation) and the
 * file (atomic rewrite, read back, a missing, oversized or unreadable file, setting a bad one
 * aside under a fresh name). The store's use of it (segments kept or dropped): test_store.c.
 * Each test that touches files gets a fresh temp directory, emptied and removed in teardown.
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
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "crc32c.h"
#include "meta_v1.h"
#include "store_meta.h"
#include "testdir.h"

static const char replid_a[] = "0123456789abcdef0123456789abcdef01234567";
static const char replid_b[] = "fedcba9876543210fedcba9876543210fedcba98";

struct fx {
    char dir[64];
    char path[128]; /* dir/meta */
};

static int setup_dir(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/cascade-test-meta-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/meta", f->dir);
    *state = f;
    return 0;
}

static int teardown_dir(void **state)
{
    struct fx *f = *state;
    int rc = testdir_clear(f->dir);
    if (rmdir(f->dir) != 0)
        rc = -1;
    free(f);
    return rc;
}

static void full_meta(struct store_meta *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->replid, sizeof(m->replid), "%s", replid_a);
    snprintf(m->replid2, sizeof(m->replid2), "%s", replid_b);
    m->second_replid_offset = 123456789012LL;
    snprintf(m->snapshot_file, sizeof(m->snapshot_file), "snapshot-17.rdb");
    snprintf(m->snapshot_replid, sizeof(m->snapshot_replid), "%s", replid_b);
    m->snapshot_offset = 987654321098LL;
    m->snapshot_size = 4242;
}

/* The on-disk text, byte for byte: the keys in order, "-" for an empty value, and the checksum
 * line over everything before it. */
static void test_format_pinned(void **state)
{
    (void)state;
    static const char body[] = "cascade-meta 2\n"
                               "replid 0123456789abcdef0123456789abcdef01234567\n"
                               "replid2 -\n"
                               "second_replid_offset -1\n"
                               "snapshot_file -\n"
                               "snapshot_replid -\n"
                               "snapshot_offset -1\n"
                               "snapshot_size 0\n"
                               "log_start 5\n"
                               "log_end 4\n";
    struct store_meta m;
    memset(&m, 0, sizeof(m));
    snprintf(m.replid, sizeof(m.replid), "%s", replid_a);
    m.second_replid_offset = -1;
    m.snapshot_offset = -1;
    char text[STORE_META_MAX], want[STORE_META_MAX];
    size_t n = store_meta_format(&m, 5, 4, text, sizeof(text));
    int w =
        snprintf(want, sizeof(want), "%scrc32c %08x\n", body, crc32c(0, body, sizeof(body) - 1));
    assert_int_equal(n, (size_t)w);
    assert_memory_equal(text, want, n);
    /* Too small a buffer: nothing. */
    assert_int_equal(store_meta_format(&m, 5, 4, text, sizeof(body) + 10), 0);
}

/* Every single-byte change and every truncation of a version-2 meta fails to parse. */
static void test_meta_parse_strict(void **state)
{
    (void)state;
    struct store_meta m, back;
    memset(&m, 0, sizeof(m));
    snprintf(m.replid, sizeof(m.replid), "%s", replid_a);
    snprintf(m.replid2, sizeof(m.replid2), "%s", replid_b);
    m.second_replid_offset = 4242;
    snprintf(m.snapshot_file, sizeof(m.snapshot_file), "snapshot-9.rdb");
    snprintf(m.snapshot_replid, sizeof(m.snapshot_replid), "%s", replid_b);
    m.snapshot_offset = 4000;
    m.snapshot_size = 123456;
    char text[STORE_META_MAX], why[256];
    size_t n = store_meta_format(&m, 3000, 9000, text, sizeof(text));
    assert_true(n > 0 && n < sizeof(text));
    assert_int_equal(store_meta_parse(text, n, &back, why, sizeof(why)), 0);
    assert_int_equal(back.version, 2);
    assert_string_equal(back.replid, replid_a);
    assert_int_equal(back.snapshot_offset, 4000);
    assert_int_equal(back.log_end, 9000);
    static const unsigned char flips[] = {0x01, 0x10, 0x80, 0x20};
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof(flips); k++) {
            char bad[STORE_META_MAX];
            memcpy(bad, text, n);
            bad[i] ^= (char)flips[k];
            if (store_meta_parse(bad, n, &back, why, sizeof(why)) == 0)
                fail_msg("byte %zu ^ 0x%02x parsed", i, flips[k]);
        }
    }
    for (size_t len = 0; len < n; len++) {
        if (store_meta_parse(text, len, &back, why, sizeof(why)) == 0)
            fail_msg("a meta cut to %zu of %zu bytes parsed", len, n);
    }
    /* Version 1: strict about syntax, keys and values too. */
    assert_int_equal(store_meta_parse(meta_v1, strlen(meta_v1), &back, why, sizeof(why)), 0);
    const char *v1_bad[] = {
        "cascade-meta 1\nreplid 0123\n",                  /* not a replid */
        "cascade-meta 1\nsnapshot_offset 12x\n",          /* not a number */
        "cascade-meta 1\nbogus 1\n",                      /* unknown key */
        "cascade-meta 1\nlog_end 1\nlog_end 2\n",         /* twice */
        "cascade-meta 1\nlog_end 99999999999999999999\n", /* out of range */
        "cascade-meta 1\nreplid -\n",                     /* keys missing */
        "cascade-meta 1\nsnapshot_file ../etc/passwd\n",  /* not a plain name */
    };
    for (size_t i = 0; i < sizeof(v1_bad) / sizeof(v1_bad[0]); i++) {
        if (store_meta_parse(v1_bad[i], strlen(v1_bad[i]), &back, why, sizeof(why)) == 0)
            fail_msg("parsed: %s", v1_bad[i]);
    }
    /* A v1 file with a key missing (snapshot_size dropped from the full one). */
    char cut[1024];
    snprintf(cut, sizeof(cut), "%s", meta_v1);
    char *p = strstr(cut, "snapshot_size 5000\n");
    memmove(p, p + strlen("snapshot_size 5000\n"), strlen(p + strlen("snapshot_size 5000\n")) + 1);
    assert_int_equal(store_meta_parse(cut, strlen(cut), &back, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "snapshot_size"));
}

/* Written atomically and read back: every value, no tmp file left, the bytes the format's. */
static void test_write_read(void **state)
{
    struct fx *f = *state;
    struct store_meta m, back;
    full_meta(&m);
    char err[512] = "", why[256] = "";
    assert_int_equal(store_meta_write(f->dir, &m, 3000, 9000, err, sizeof(err)), 0);
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
    assert_int_equal(access(tmp, F_OK), -1);
    char text[STORE_META_MAX], disk[STORE_META_MAX + 1];
    size_t n = store_meta_format(&m, 3000, 9000, text, sizeof(text));
    assert_int_equal(testdir_read(f->path, disk, sizeof(disk)), n);
    assert_memory_equal(disk, text, n);
    bool has = false;
    assert_int_equal(store_meta_read(f->dir, &back, &has, why, sizeof(why), err, sizeof(err)), 0);
    assert_true(has);
    assert_int_equal(back.version, 2);
    assert_string_equal(back.replid, replid_a);
    assert_string_equal(back.replid2, replid_b);
    assert_int_equal(back.second_replid_offset, 123456789012LL);
    assert_string_equal(back.snapshot_file, "snapshot-17.rdb");
    assert_string_equal(back.snapshot_replid, replid_b);
    assert_int_equal(back.snapshot_offset, 987654321098LL);
    assert_int_equal(back.snapshot_size, 4242);
    assert_int_equal(back.log_end, 9000);

    /* Rewritten in place, the old values gone. */
    memset(&m, 0, sizeof(m));
    snprintf(m.replid, sizeof(m.replid), "%s", replid_b);
    m.second_replid_offset = -1;
    m.snapshot_offset = -1;
    assert_int_equal(store_meta_write(f->dir, &m, 1, 0, err, sizeof(err)), 0);
    assert_int_equal(store_meta_read(f->dir, &back, &has, why, sizeof(why), err, sizeof(err)), 0);
    assert_true(has);
    assert_string_equal(back.replid, replid_b);
    assert_string_equal(back.replid2, "");
    assert_string_equal(back.snapshot_file, "");
    assert_int_equal(back.snapshot_offset, -1);
    assert_int_equal(back.log_end, 0);

    /* A directory that is not there: an error, with the file's name. */
    char missing[256];
    snprintf(missing, sizeof(missing), "%s/missing", f->dir);
    err[0] = '\0';
    assert_int_equal(store_meta_write(missing, &m, 1, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot write"));
    assert_non_null(strstr(err, "meta.tmp"));
}

/* No file: 0 without a meta. Not a meta (garbage, oversized): 1 with why, the file kept.
 * Unreadable (a directory): -1 with err. */
static void test_read_cases(void **state)
{
    struct fx *f = *state;
    struct store_meta m;
    bool has = true;
    char err[512] = "", why[256] = "";
    assert_int_equal(store_meta_read(f->dir, &m, &has, why, sizeof(why), err, sizeof(err)), 0);
    assert_false(has);

    testdir_write(f->path, "garbage\n", 8);
    assert_int_equal(store_meta_read(f->dir, &m, &has, why, sizeof(why), err, sizeof(err)), 1);
    assert_false(has);
    assert_string_equal(why, "no cascade-meta header");
    assert_int_equal(access(f->path, F_OK), 0);

    /* One byte over the limit, though it starts like a meta. */
    static char big[STORE_META_MAX + 1];
    memset(big, 'x', sizeof(big));
    memcpy(big, "cascade-meta 2\n", 15);
    testdir_write(f->path, big, sizeof(big));
    assert_int_equal(store_meta_read(f->dir, &m, &has, why, sizeof(why), err, sizeof(err)), 1);
    assert_non_null(strstr(why, "larger than 4096 bytes"));

    /* The version-1 file reads (the upgrade path). */
    testdir_write(f->path, meta_v1, strlen(meta_v1));
    assert_int_equal(store_meta_read(f->dir, &m, &has, why, sizeof(why), err, sizeof(err)), 0);
    assert_true(has);
    assert_int_equal(m.version, 1);
    assert_int_equal(m.log_end, 140);

    assert_int_equal(unlink(f->path), 0);
    assert_int_equal(mkdir(f->path, 0700), 0);
    assert_int_equal(store_meta_read(f->dir, &m, &has, why, sizeof(why), err, sizeof(err)), -1);
    assert_false(has);
    assert_non_null(strstr(err, "cannot read"));
}

/* Set aside as meta.bad-<unix time>, its bytes kept; a name taken gets -<n>; no meta: -1. */
static void test_set_aside(void **state)
{
    struct fx *f = *state;
    char err[512] = "", aside[96] = "", path[256], back[64];
    testdir_write(f->path, "one\n", 4);
    long long t0 = (long long)time(NULL);
    assert_int_equal(store_meta_set_aside(f->dir, aside, sizeof(aside), err, sizeof(err)), 0);
    long long t1 = (long long)time(NULL);
    long long t;
    assert_int_equal(sscanf(aside, "meta.bad-%lld", &t), 1);
    assert_true(t >= t0 && t <= t1);
    assert_null(strchr(aside + strlen("meta.bad-"), '-'));
    assert_int_equal(access(f->path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/%s", f->dir, aside);
    assert_int_equal(testdir_read(path, back, sizeof(back)), 4);
    assert_memory_equal(back, "one\n", 4);

    /* Every name of this second and the next taken: the next free one with a suffix. */
    t0 = (long long)time(NULL);
    for (long long s = t0; s <= t0 + 1; s++) {
        snprintf(path, sizeof(path), "%s/meta.bad-%lld", f->dir, s);
        testdir_write(path, "x", 1);
    }
    testdir_write(f->path, "two\n", 4);
    assert_int_equal(store_meta_set_aside(f->dir, aside, sizeof(aside), err, sizeof(err)), 0);
    char want0[96], want1[96];
    snprintf(want0, sizeof(want0), "meta.bad-%lld-1", t0);
    snprintf(want1, sizeof(want1), "meta.bad-%lld-1", t0 + 1);
    if (strcmp(aside, want0) != 0 && strcmp(aside, want1) != 0)
        fail_msg("set aside as %s", aside);
    snprintf(path, sizeof(path), "%s/%s", f->dir, aside);
    assert_int_equal(testdir_read(path, back, sizeof(back)), 4);
    assert_memory_equal(back, "two\n", 4);

    /* Nothing to set aside. */
    err[0] = '\0';
    assert_int_equal(store_meta_set_aside(f->dir, aside, sizeof(aside), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot rename"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_pinned),
        cmocka_unit_test(test_meta_parse_strict),
        T(test_write_read),
        T(test_read_cases),
        T(test_set_aside),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
