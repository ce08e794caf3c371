/*
 * The disk log's read-back check, measured side by side: a log of N MB in 64 MB segments (1 MB
 * writes, one index record each) is reopened, then read from the first offset to the end in
 * 256 KB store_locate + pread steps three ways: the first pass (every range checked against
 * its index record on the way: pread of the bytes, CRC-32C), a second pass (checked ranges are
 * remembered: no check), and for scale the bare preads of the same bytes. All from the page
 * cache (the file was just written), so this is the check's CPU cost, not the device's.
 *   verify_bench [MB] [DIR]      (default 512 MB in /tmp)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Reads [start, end] through store_locate; bare: pread the same positions without locate. */
static double pass(struct store *s, int64_t start, int64_t end, char *buf, size_t step)
{
    double t0 = now_s();
    for (int64_t off = start; off <= end;) {
        int fd;
        off_t pos;
        int64_t avail;
        if (store_locate(s, off, &fd, &pos, &avail) != 0) {
            fprintf(stderr, "locate %" PRId64 " failed\n", off);
            exit(1);
        }
        size_t n = avail < (int64_t)step ? (size_t)avail : step;
        if (pread(fd, buf, n, pos) != (ssize_t)n)
            exit(1);
        off += (int64_t)n;
    }
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    int64_t mb = argc > 1 ? atoll(argv[1]) : 512;
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/cascade-verify-bench-XXXXXX", argc > 2 ? argv[2] : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    struct store_params p = {
        .dir = dir, .segment_bytes = 64 << 20, .retain_bytes = INT64_MAX, .retain_min_bytes = 0};
    struct store_meta m;
    bool has;
    char err[256];
    struct store *s = store_open(&p, &m, &has, err, sizeof(err));
    if (!s)
        return 1;
    size_t w = 1 << 20;
    char *buf = malloc(w);
    for (size_t i = 0; i < w; i++)
        buf[i] = (char)(i * 131 + (i >> 7));
    for (int64_t i = 0; i < mb; i++) {
        struct store_piece pc = {.buf = buf, .len = w};
        if (store_append(s, &pc, 1, 0, false, err, sizeof(err)) != 0)
            return 1;
    }
    memset(&m, 0, sizeof(m));
    snprintf(m.replid, sizeof(m.replid), "%040d", 0);
    m.second_replid_offset = m.snapshot_offset = -1;
    if (store_write_meta(s, &m, err, sizeof(err)) != 0)
        return 1;
    store_close(s);
    double t0 = now_s();
    s = store_open(&p, &m, &has, err, sizeof(err));
    double open_s = now_s() - t0;
    int64_t start = store_start(s), end = store_end(s);
    size_t step = 256 << 10;
    double first = pass(s, start, end, buf, step);
    double second = pass(s, start, end, buf, step);
    /* The bare preads: the same positions, from the segments' files (located once each). */
    t0 = now_s();
    for (int64_t off = start; off <= end;) {
        int fd;
        off_t pos;
        int64_t avail;
        store_locate(s, off, &fd, &pos, &avail);
        for (int64_t k = 0; k < avail; k += (int64_t)step) {
            size_t n = avail - k < (int64_t)step ? (size_t)(avail - k) : step;
            if (pread(fd, buf, n, pos + k) != (ssize_t)n)
                return 1;
        }
        off += avail;
    }
    double bare = now_s() - t0;
    printf("log %" PRId64 " MB in %zu segments: reopen %.3f s (last segment checked)\n", mb,
           store_segments(s), open_s);
    printf("read with first-read check: %.3f s (%.0f MB/s)\n", first, mb / first);
    printf("read again (remembered):    %.3f s (%.0f MB/s)\n", second, mb / second);
    printf("bare preads:                %.3f s (%.0f MB/s)\n", bare, mb / bare);
    printf("first pass / bare: %.2f\n", first / bare);
    char cmd[400];
    store_close(s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
