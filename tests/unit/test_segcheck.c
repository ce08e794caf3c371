/*
 * Unit tests for segcheck.c: the verified runs (kept sorted, merged when they touch), the check
 * of one index record (sequence, bounds, checksum, a short read), and the lazy check ahead of
 * an offset (how far it goes, a write still in progress, a bad record at or after the offset,
 * a missing index, an offset no record holds). The store's use of it (what a failed check
 * cuts): test_store.c. Each test gets a fresh temp directory, emptied and removed in teardown.
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
#include <unistd.h>

#include <cmocka.h>

#include "crc32c.h"
#include "segcheck.h"

#define START 1001 /* the segment's first stream offset */
#define NREC  6
#define RLEN  10 /* bytes per write */

struct fx {
    char dir[64];
    char seg[128], idx[128];
    int fd; /* the data file, NREC writes of RLEN bytes */
    struct segcheck_file file;
    struct index_record rec[NREC];
    struct segcheck c;
};

static int setup_dir(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/cascade-test-segcheck-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->seg, sizeof(f->seg), "%s/seg", f->dir);
    snprintf(f->idx, sizeof(f->idx), "%s/idx", f->dir);
    f->fd = -1;
    *state = f;
    return 0;
}

static int teardown_dir(void **state)
{
    struct fx *f = *state;
    segcheck_deinit(&f->c);
    if (f->fd >= 0)
        close(f->fd);
    unlink(f->seg);
    unlink(f->idx);
    int rc = rmdir(f->dir);
    free(f);
    return rc;
}

/* Writes the segment and its index: write i holds bytes i*RLEN.. of value 'a' + i. */
static void build(struct fx *f)
{
    int idx = open(f->idx, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    f->fd = open(f->seg, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(idx >= 0 && f->fd >= 0);
    for (int i = 0; i < NREC; i++) {
        char buf[RLEN];
        memset(buf, 'a' + i, sizeof(buf));
        assert_int_equal(write(f->fd, buf, sizeof(buf)), RLEN);
        f->rec[i] = (struct index_record){
            .start = START + i * RLEN, .len = RLEN, .crc = crc32c(0, buf, RLEN)};
        assert_int_equal(write(idx, &f->rec[i], sizeof(f->rec[i])), (ssize_t)sizeof(f->rec[i]));
    }
    close(idx);
    f->file = (struct segcheck_file){.fd = f->fd, .start = START, .len = NREC * RLEN};
}

static void flip(struct fx *f, off_t pos)
{
    unsigned char b;
    assert_int_equal(pread(f->fd, &b, 1, pos), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(f->fd, &b, 1, pos), 1);
}

static void test_runs(void **state)
{
    (void)state;
    struct segcheck c = {0};
    assert_int_equal(segcheck_end(&c, 5), 5);
    segcheck_add(&c, 30, 40);
    segcheck_add(&c, 10, 20);
    segcheck_add(&c, 50, 60);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.runs[0].a, 10);
    assert_int_equal(c.runs[1].a, 30);
    assert_int_equal(segcheck_end(&c, 10), 20);
    assert_int_equal(segcheck_end(&c, 19), 20);
    assert_int_equal(segcheck_end(&c, 20), 20); /* b is not held */
    assert_int_equal(segcheck_end(&c, 35), 40);
    segcheck_add(&c, 20, 30); /* touches both neighbours: one run */
    assert_int_equal(c.n, 2);
    assert_int_equal(segcheck_end(&c, 10), 40);
    segcheck_add(&c, 35, 55); /* overlaps: merged */
    assert_int_equal(c.n, 1);
    assert_int_equal(segcheck_end(&c, 12), 60);
    for (int i = 0; i < 20; i++) /* growth past the first allocation */
        segcheck_add(&c, 100 + 10 * i, 105 + 10 * i);
    assert_int_equal(c.n, 21);
    assert_int_equal(segcheck_end(&c, 291), 295);
    assert_int_equal(segcheck_end(&c, 296), 296);
    segcheck_deinit(&c);
    assert_int_equal(c.n, 0);
    assert_null(c.runs);
    assert_int_equal(segcheck_end(&c, 12), 12);
}

static void test_record(void **state)
{
    struct fx *f = *state;
    build(f);
    char *buf = malloc(SEGCHECK_CHUNK);
    assert_non_null(buf);
    assert_null(segcheck_record(&f->file, &f->rec[2], START + 2 * RLEN, buf));
    assert_string_equal(segcheck_record(&f->file, &f->rec[2], START + 2 * RLEN + 1, buf),
                        "an index record out of sequence");
    struct index_record r = f->rec[2];
    r.len = 0;
    assert_string_equal(segcheck_record(&f->file, &r, r.start, buf),
                        "an index record out of sequence");
    r = f->rec[NREC - 1];
    r.len = RLEN + 1;
    assert_string_equal(segcheck_record(&f->file, &r, r.start, buf),
                        "an index record past the segment's end");
    /* The segment says it holds more than the file has: a short read. */
    struct segcheck_file longer = f->file;
    longer.len += 5;
    assert_string_equal(segcheck_record(&longer, &r, r.start, buf), "a read error");
    flip(f, 2 * RLEN + 3);
    assert_string_equal(segcheck_record(&f->file, &f->rec[2], START + 2 * RLEN, buf),
                        "a checksum mismatch");
    free(buf);
}

/* From the record holding the offset, at least `ahead` bytes, whole records, up to limit. */
static void test_ahead(void **state)
{
    struct fx *f = *state;
    build(f);
    struct segcheck_bad bad;
    int64_t end = START + NREC * RLEN;
    assert_int_equal(segcheck_ahead(&f->c, &f->file, f->idx, START + 15, end, 25, &bad), 0);
    /* Records 1, 2, 3 (from 1011): 1011 - 1015 < 25 up to 1041. */
    assert_int_equal(f->c.n, 1);
    assert_int_equal(f->c.runs[0].a, START + RLEN);
    assert_int_equal(f->c.runs[0].b, START + 4 * RLEN);
    /* Again from an offset before: stops where the verified run begins. */
    assert_int_equal(segcheck_ahead(&f->c, &f->file, f->idx, START, end, 1000, &bad), 0);
    assert_int_equal(f->c.n, 1);
    assert_int_equal(f->c.runs[0].a, START);
    assert_int_equal(f->c.runs[0].b, START + 4 * RLEN);
    /* A write not all readable (limit inside record 4): not checked, not an error. */
    assert_int_equal(
        segcheck_ahead(&f->c, &f->file, f->idx, START + 4 * RLEN, end - 15, 1000, &bad), 0);
    assert_int_equal(segcheck_end(&f->c, START + 4 * RLEN), START + 4 * RLEN);
}

static void test_ahead_bad(void **state)
{
    struct fx *f = *state;
    build(f);
    struct segcheck_bad bad;
    int64_t end = START + NREC * RLEN;
    flip(f, 3 * RLEN);
    /* A bad record after the offset's own: the good ones verified, no error yet. */
    assert_int_equal(segcheck_ahead(&f->c, &f->file, f->idx, START + 5, end, 1000, &bad), 0);
    assert_int_equal(segcheck_end(&f->c, START), START + 3 * RLEN);
    /* At the offset: its record's range, and why. */
    assert_int_equal(segcheck_ahead(&f->c, &f->file, f->idx, START + 3 * RLEN + 2, end, 1000, &bad),
                     -1);
    assert_int_equal(bad.a, START + 3 * RLEN);
    assert_int_equal(bad.b, START + 4 * RLEN);
    assert_string_equal(bad.why, "a checksum mismatch");
    assert_int_equal(segcheck_end(&f->c, START + 3 * RLEN), START + 3 * RLEN);
    /* An offset no record holds (the segment claims more than its index). */
    struct segcheck_file longer = f->file;
    longer.len += 10;
    assert_int_equal(segcheck_ahead(&f->c, &longer, f->idx, end + 2, end + 10, 1000, &bad), -1);
    assert_string_equal(bad.why, "no index record holds it");
    assert_int_equal(bad.a, end + 2);
    assert_int_equal(bad.b, end + 10);
    /* No index file. */
    assert_int_equal(unlink(f->idx), 0);
    assert_int_equal(segcheck_ahead(&f->c, &f->file, f->idx, START + 50, end, 1000, &bad), -1);
    assert_non_null(strstr(bad.why, "no index: "));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs),
        T(test_record),
        T(test_ahead),
        T(test_ahead_bad),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
