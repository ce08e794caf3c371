/*
 * Unit tests for snapshot.c: EMPTY -> FILLING -> READY in a temp directory, the EOF mark cut
 * by finish, readers keeping their descriptor after the file is replaced, and cleanup of the
 * temp and final files. Each test gets its own directory, removed (and checked empty) after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot.h"
#include "testdir.h"

static const char replid_a[] = "0123456789abcdef0123456789abcdef01234567";
static const char replid_b[] = "fedcba9876543210fedcba9876543210fedcba98";

/* A small whole RDB: header, body, EOF opcode, CRC-64 trailer (zero: written unchecked). */
static size_t make_rdb(char *out, const char *body, bool checksum)
{
    size_t n = 0;
    memcpy(out, "REDIS0010", 9);
    n = 9;
    memcpy(out + n, body, strlen(body));
    n += strlen(body);
    out[n++] = (char)0xff;
    uint64_t crc = checksum ? rdb_crc64(0, out, n) : 0;
    for (int i = 0; i < 8; i++)
        out[n++] = (char)(crc >> (8 * i));
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void read_all(int fd, char *buf, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    char extra;
    assert_int_equal(read(fd, &extra, 1), 0); /* nothing past the end */
}

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(snapshot_state_name(SNAPSHOT_EMPTY), "empty");
    assert_string_equal(snapshot_state_name(SNAPSHOT_FILLING), "filling");
    assert_string_equal(snapshot_state_name(SNAPSHOT_READY), "ready");
    assert_string_equal(snapshot_state_name((enum snapshot_state)7), "?");
}

static void test_fill_and_finish(void **state)
{
    const char *dir = *state;
    char err[256] = "";
    struct snapshot *s = snapshot_new(dir, "t1", replid_a, 1000, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(s->state, SNAPSHOT_FILLING);
    assert_string_equal(s->replid, replid_a);
    assert_int_equal(s->offset, 1000);
    assert_int_equal(s->size, 0);
    assert_true(s->fd >= 0);
    char want_path[512], want_tmp[512];
    snprintf(want_path, sizeof(want_path), "%s/snapshot-t1.rdb", dir);
    snprintf(want_tmp, sizeof(want_tmp), "%s/temp-snapshot-t1.rdb", dir);
    assert_string_equal(s->path, want_path);
    assert_string_equal(s->tmp_path, want_tmp);
    assert_true(exists(s->tmp_path));
    assert_false(exists(s->path)); /* nothing under the final name until finished */
    assert_int_equal(snapshot_open(s), -1);

    /* Payload then a 40-byte EOF mark, written in pieces. */
    char payload[64];
    size_t plen = make_rdb(payload,
                           "\xfa\x09redis-ver\x05"
                           "7.0.15",
                           true);
    const char *mark = "0123456789012345678901234567890123456789";
    assert_int_equal(snapshot_write(s, payload, 5, err, sizeof(err)), 0);
    assert_int_equal(snapshot_write(s, payload + 5, plen - 5, err, sizeof(err)), 0);
    assert_int_equal(snapshot_write(s, mark, 40, err, sizeof(err)), 0);
    assert_int_equal(s->size, (int64_t)plen + 40);

    snapshot_set_position(s, replid_b, 2000);
    assert_string_equal(s->replid, replid_b);
    assert_int_equal(s->offset, 2000);

    assert_int_equal(snapshot_finish(s, 40, err, sizeof(err)), 0);
    assert_int_equal(s->state, SNAPSHOT_READY);
    assert_int_equal(s->size, (int64_t)plen);
    assert_int_equal(s->fd, -1);
    assert_int_equal(s->verdict, RDB_VERIFIED);
    assert_int_equal(s->header.version, 10);
    assert_true(s->ready_time > 0);
    assert_false(exists(s->tmp_path));
    assert_true(exists(s->path));

    int fd = snapshot_open(s);
    assert_true(fd >= 0);
    char buf[64];
    read_all(fd, buf, plen);
    assert_memory_equal(buf, payload, plen);

    /* A reader keeps its descriptor after the snapshot is dropped. */
    snapshot_free(s);
    assert_false(exists(want_path));
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    read_all(fd, buf, plen);
    assert_memory_equal(buf, payload, plen);
    close(fd);
}

static void test_finish_without_drop(void **state)
{
    const char *dir = *state;
    char err[256];
    char rdb[64];
    size_t n = make_rdb(rdb, "", true);
    struct snapshot *s = snapshot_new(dir, "plain", replid_a, 0, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(snapshot_write(s, rdb, n, err, sizeof(err)), 0);
    assert_int_equal(snapshot_finish(s, 0, err, sizeof(err)), 0);
    assert_int_equal(s->size, (int64_t)n);
    struct stat st;
    assert_int_equal(stat(s->path, &st), 0);
    assert_int_equal(st.st_size, (off_t)n);
    assert_int_equal(st.st_mode & 0777, 0600);
    snapshot_free(s);
}

static void test_drop_too_large(void **state)
{
    const char *dir = *state;
    char err[256] = "";
    struct snapshot *s = snapshot_new(dir, "short", replid_a, 0, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(snapshot_write(s, "0123456789", 10, err, sizeof(err)), 0);
    assert_int_equal(snapshot_finish(s, 11, err, sizeof(err)), -1);
    assert_string_equal(err, "snapshot shorter than its end mark");
    assert_int_equal(s->state, SNAPSHOT_FILLING);
    assert_int_equal(s->size, 10);
    /* Freed while FILLING: the temp file goes away. */
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", s->tmp_path);
    assert_true(exists(tmp));
    snapshot_free(s);
    assert_false(exists(tmp));
    snapshot_free(NULL);
}

/* One flipped bit anywhere, a cut, or a payload that is not an RDB: never READY. */
static void test_finish_rejects_corrupt(void **state)
{
    const char *dir = *state;
    char err[256];
    char rdb[64];
    size_t n = make_rdb(rdb, "\x03\x01k\x01v", true);
    for (size_t bit = 0; bit < n * 8; bit += 7) {
        char bad[64];
        memcpy(bad, rdb, n);
        bad[bit / 8] ^= (char)(1 << (bit % 8));
        struct snapshot *s = snapshot_new(dir, "bad", replid_a, 0, err, sizeof(err));
        assert_non_null(s);
        assert_int_equal(snapshot_write(s, bad, n, err, sizeof(err)), 0);
        assert_int_equal(snapshot_finish(s, 0, err, sizeof(err)), -1);
        assert_int_equal(s->state, SNAPSHOT_FILLING);
        assert_false(exists(s->path));
        snapshot_free(s);
    }
    /* the end mark recognized one byte too early (a value holding it): the cut RDB fails */
    struct snapshot *s = snapshot_new(dir, "cut", replid_a, 0, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(snapshot_write(s, rdb, n - 1, err, sizeof(err)), 0);
    assert_int_equal(snapshot_finish(s, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "RDB rejected: RDB checksum mismatch"));
    snapshot_free(s);
    s = snapshot_new(dir, "text", replid_a, 0, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(snapshot_write(s, "abc", 3, err, sizeof(err)), 0);
    assert_int_equal(snapshot_finish(s, 0, err, sizeof(err)), -1);
    snapshot_free(s);
}

/* rdbchecksum off on the writer: served, but marked unchecked. */
static void test_finish_unchecked(void **state)
{
    const char *dir = *state;
    char err[256];
    char rdb[64];
    size_t n = make_rdb(rdb, "", false);
    struct snapshot *s = snapshot_new(dir, "zero", replid_a, 0, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(snapshot_write(s, rdb, n, err, sizeof(err)), 0);
    assert_int_equal(snapshot_finish(s, 0, err, sizeof(err)), 0);
    assert_int_equal(s->verdict, RDB_UNCHECKED);
    snapshot_free(s);
}

/* After a restart the file is read through again: a bit flipped on disk is refused. */
static void test_adopt_checks_the_file(void **state)
{
    const char *dir = *state;
    char err[512];
    char rdb[64];
    size_t n = make_rdb(rdb, "\x03\x01k\x01v", true);
    struct snapshot *s = snapshot_new(dir, "adopt", replid_a, 5, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(snapshot_write(s, rdb, n, err, sizeof(err)), 0);
    assert_int_equal(snapshot_finish(s, 0, err, sizeof(err)), 0);
    char name[256];
    snprintf(name, sizeof(name), "%s", snapshot_file_name(s));
    snapshot_release(s); /* keeps the file */
    bool corrupt = true;
    struct snapshot *a =
        snapshot_adopt(dir, name, replid_a, 5, (int64_t)n, &corrupt, err, sizeof(err));
    assert_non_null(a);
    assert_false(corrupt);
    assert_int_equal(a->verdict, RDB_VERIFIED);
    char path[512];
    snprintf(path, sizeof(path), "%s", a->path);
    snapshot_release(a);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "K", 1, 11), 1);
    close(fd);
    assert_null(snapshot_adopt(dir, name, replid_a, 5, (int64_t)n, &corrupt, err, sizeof(err)));
    assert_true(corrupt);
    assert_non_null(strstr(err, "fails its check: RDB checksum mismatch"));
    /* a size that does not match is not the checksum's doing */
    assert_null(snapshot_adopt(dir, name, replid_a, 5, (int64_t)n + 1, &corrupt, err, sizeof(err)));
    assert_false(corrupt);
    assert_int_equal(unlink(path), 0);
}

static void test_replace(void **state)
{
    const char *dir = *state;
    char err[256];
    char ra[64], rb[64];
    size_t na = make_rdb(ra, "\x03\x01a\x01A", true), nb = make_rdb(rb, "", true);
    /* A second snapshot under another tag coexists with the first; each removes its own. */
    struct snapshot *a = snapshot_new(dir, "a", replid_a, 10, err, sizeof(err));
    struct snapshot *b = snapshot_new(dir, "b", replid_b, 20, err, sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(snapshot_write(a, ra, na, err, sizeof(err)), 0);
    assert_int_equal(snapshot_finish(a, 0, err, sizeof(err)), 0);
    assert_int_equal(snapshot_write(b, rb, nb, err, sizeof(err)), 0);
    assert_int_equal(testdir_count(dir), 2);
    int fd = snapshot_open(a);
    assert_true(fd >= 0);
    assert_int_equal(snapshot_finish(b, 0, err, sizeof(err)), 0);
    snapshot_free(a);
    assert_int_equal(testdir_count(dir), 1);
    char buf[64];
    read_all(fd, buf, na);
    assert_memory_equal(buf, ra, na);
    close(fd);
    snapshot_free(b);
}

static void test_new_fails(void **state)
{
    const char *dir = *state;
    char err[512] = "";
    char bad[512];
    snprintf(bad, sizeof(bad), "%s/missing", dir);
    assert_null(snapshot_new(bad, "x", replid_a, 0, err, sizeof(err)));
    char want[700];
    snprintf(want, sizeof(want), "cannot create %s/temp-snapshot-x.rdb: No such file or directory",
             bad);
    assert_string_equal(err, want);
    assert_int_equal(snapshot_open(NULL), -1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, testdir_setup, testdir_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        T(test_fill_and_finish),
        T(test_finish_without_drop),
        T(test_drop_too_large),
        T(test_finish_rejects_corrupt),
        T(test_finish_unchecked),
        T(test_adopt_checks_the_file),
        T(test_replace),
        T(test_new_fails),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
