/*
 * Unit tests for writer.c alone (the store drives it in test_store.c): queued writes land in
 * order with one index record per batch whose CRC matches the bytes, tokens come back oldest
 * first (also when the queue fills and writer_enqueue hands them back itself), a sync job
 * completes in order, and a failed write is reported once, with its text, until
 * writer_reset. Run under ThreadSanitizer in CI (scripts/test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "crc32c.h"
#include "writer.h"

struct fx {
    char dir[64], data[96], idx[96];
    int fd, idx_fd;
    uintptr_t tokens[8192];
    size_t ntok;
};

static void done_cb(void *ctx, void *token)
{
    struct fx *f = ctx;
    assert_true(f->ntok < sizeof(f->tokens) / sizeof(f->tokens[0]));
    f->tokens[f->ntok++] = (uintptr_t)token;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/cascade-writer-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->data, sizeof(f->data), "%s/seg", f->dir);
    snprintf(f->idx, sizeof(f->idx), "%s/idx", f->dir);
    f->fd = open(f->data, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    f->idx_fd = open(f->idx, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(f->fd >= 0 && f->idx_fd >= 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    close(f->fd);
    close(f->idx_fd);
    unlink(f->data);
    unlink(f->idx);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Queues n writes of varying sizes from buf (stream offsets from 1), token i + 1 each. */
static size_t queue_writes(struct fx *f, struct writer *w, const unsigned char *buf, int n)
{
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        size_t len = 1 + (size_t)(i * 7919 % 3000);
        struct wjob j = {.kind = WJOB_WRITE,
                         .fd = f->fd,
                         .idx_fd = f->idx_fd,
                         .dfd = -1,
                         .pos = (off_t)pos,
                         .start = 1 + (int64_t)pos,
                         .buf = buf + pos,
                         .len = len,
                         .token = (void *)(uintptr_t)(i + 1)};
        writer_enqueue(w, &j);
        pos += len;
    }
    return pos;
}

/* 3000 writes (more than WRITER_JOBS: enqueue hands back on its own), then a sync. */
static void test_writes_records_tokens(void **state)
{
    struct fx *f = *state;
    const int n = 3000;
    size_t cap = (size_t)n * 3000;
    unsigned char *buf = malloc(cap), *back = malloc(cap);
    for (size_t i = 0; i < cap; i++)
        buf[i] = (unsigned char)(i * 31 + (i >> 9));
    char err[256];
    struct writer *w = writer_start(0, done_cb, f, err, sizeof(err));
    assert_non_null(w);
    size_t total = queue_writes(f, w, buf, n);
    /* While the threads write: durable only grows, and never past what was queued (and
     * ThreadSanitizer sees the loop thread's reads race with the I/O thread's writes). */
    int64_t last = 0;
    for (int k = 0; k < 200000 && last < (int64_t)total; k++) {
        int64_t d = writer_durable(w);
        assert_true(d >= last && d <= (int64_t)total);
        last = d;
        (void)writer_idle(w);
    }
    writer_enqueue(w, &(struct wjob){.kind = WJOB_SYNC, .fd = f->fd, .idx_fd = f->idx_fd});
    writer_wait_idle(w);
    assert_true(writer_idle(w));
    assert_int_equal(writer_collect(w, err, sizeof(err)), 0);
    assert_int_equal(writer_durable(w), (int64_t)total);
    assert_int_equal(f->ntok, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(f->tokens[i], i + 1);
    assert_int_equal(pread(f->fd, back, cap, 0), (ssize_t)total);
    assert_memory_equal(back, buf, total);
    struct index_record rec;
    int64_t at = 1;
    int nrec = 0;
    for (off_t o = 0; pread(f->idx_fd, &rec, sizeof(rec), o) == sizeof(rec); o += sizeof(rec)) {
        assert_int_equal(rec.start, at);
        assert_int_equal(rec.crc, crc32c(0, buf + at - 1, rec.len));
        at += rec.len;
        nrec++;
    }
    assert_int_equal(at - 1, (int64_t)total);
    assert_true(nrec >= n / WRITER_BATCH); /* batched: never more than WRITER_BATCH a record */
    writer_stop(w);
    free(buf);
    free(back);
}

/* A write that fails (a read-only descriptor): said once, with strerror_r's text; the jobs'
 * tokens still come back; writer_reset forgets it. */
static void test_write_error(void **state)
{
    struct fx *f = *state;
    int ro = open(f->data, O_RDONLY | O_CLOEXEC);
    assert_true(ro >= 0);
    char err[256] = "";
    struct writer *w = writer_start(0, done_cb, f, err, sizeof(err));
    assert_non_null(w);
    static const char bytes[] = "hello";
    for (int i = 0; i < 3; i++) {
        struct wjob j = {.kind = WJOB_WRITE,
                         .fd = ro,
                         .idx_fd = f->idx_fd,
                         .dfd = -1,
                         .start = 1 + 5 * i,
                         .pos = 5 * i,
                         .buf = bytes,
                         .len = 5,
                         .token = (void *)(uintptr_t)(i + 1)};
        writer_enqueue(w, &j);
    }
    writer_wait_idle(w);
    assert_false(writer_idle(w));
    assert_int_equal(writer_collect(w, err, sizeof(err)), -1);
    assert_string_equal(err, "write segment: Bad file descriptor");
    assert_int_equal(writer_collect(w, err, sizeof(err)), 0); /* said once */
    assert_int_equal(writer_failed(w, err, sizeof(err)), -1);
    assert_int_equal(f->ntok, 3);
    assert_int_equal(writer_durable(w), 0);
    writer_reset(w, 99);
    assert_int_equal(writer_failed(w, err, sizeof(err)), 0);
    assert_true(writer_idle(w));
    assert_int_equal(writer_durable(w), 99);
    writer_stop(w);
    close(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_records_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
