/*
 * scan_bench: the stream scanner alone (resp_stream_scan, what GETACK detection costs the
 * relay per byte). Builds a stream of SET commands the way synth_master does (key:<n>, values
 * of --value bytes), then scans it again and again in reads of --read bytes, and prints one
 * JSON line: bytes scanned, seconds, GB/s and CPU seconds per GB.
 *
 *   scan_bench [--value V] [--read BYTES] [--mb STREAM_MB] [--rounds R]
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "resp.h"

int main(int argc, char **argv)
{
    int64_t value = 100, read_bytes = 512 * 1024, mb = 64, rounds = 20;
    int64_t *dst[] = {&value, &read_bytes, &mb, &rounds};
    static const struct option opts[] = {{"value", required_argument, NULL, 0},
                                         {"read", required_argument, NULL, 0},
                                         {"mb", required_argument, NULL, 0},
                                         {"rounds", required_argument, NULL, 0},
                                         {NULL, 0, NULL, 0}};
    int c, i;
    while ((c = getopt_long(argc, argv, "", opts, &i)) != -1) {
        if (c != 0)
            bench_die("usage: scan_bench [--value V] [--read BYTES] [--mb MB] [--rounds R]");
        *dst[i] = bench_parse_count(opts[i].name, optarg);
    }
    if (value <= 0 || read_bytes <= 0 || mb <= 0 || rounds <= 0)
        bench_die("every option must be positive");
    size_t cap = (size_t)mb << 20, len = 0;
    char *buf = malloc(cap);
    char *val = malloc((size_t)value);
    if (!buf || !val)
        bench_die("out of memory");
    memset(val, 'x', (size_t)value);
    for (uint64_t x = 0;; x++) {
        char hdr[128];
        int hl = snprintf(hdr, sizeof(hdr),
                          "*3\r\n$3\r\nSET\r\n$14\r\nkey:%010" PRIu64 "\r\n$%" PRId64 "\r\n",
                          x % 100000, value);
        if (len + (size_t)hl + (size_t)value + 2 > cap)
            break;
        memcpy(buf + len, hdr, (size_t)hl);
        memcpy(buf + len + hl, val, (size_t)value);
        memcpy(buf + len + hl + value, "\r\n", 2);
        len += (size_t)hl + (size_t)value + 2;
    }
    double cpu0 = bench_cpu_seconds();
    int64_t t0 = bench_now_ns();
    int64_t commands = 0;
    for (int64_t n = 0; n < rounds; n++) {
        struct resp_stream s;
        resp_stream_init(&s);
        for (size_t off = 0; off < len;) {
            size_t k = len - off < (size_t)read_bytes ? len - off : (size_t)read_bytes;
            bool getack;
            char err[RESP_ERR_LEN];
            ssize_t got = resp_stream_scan(&s, buf + off, k, &getack, err, sizeof(err));
            if (got <= 0)
                bench_die("scan failed at %zu: %s", off, err);
            off += (size_t)got;
        }
        commands += s.commands;
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    double cpu = bench_cpu_seconds() - cpu0;
    double gb = (double)len * (double)rounds / 1e9;
    printf("{\"bytes\": %.0f, \"commands\": %" PRId64 ", \"seconds\": %.3f, \"gb_per_s\": %.2f, "
           "\"cpu_s_per_gb\": %.3f}\n",
           gb * 1e9, commands, secs, gb / secs, cpu / gb);
    free(buf);
    free(val);
    return 0;
}
