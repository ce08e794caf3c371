/*
 * Unit tests for frame.c: round trips of JSON-like and random data through one encoder and
 * one decoder (the window carries across frames), decoding in pieces of every size, raw
 * fallback of incompressible data within 1% of its size, heartbeats, and corrupt input
 * rejected (unknown type, bad lengths, garbage zstd, a zstd bomb past FRAME_MAX_RAW).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "frame.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A replication stream of JSON-like writes, like the capture. */
static size_t json_stream(char *buf, size_t cap)
{
    size_t n = 0;
    for (int i = 0; n + 400 < cap; i++) {
        char val[256];
        int vl = snprintf(val, sizeof(val),
                          "{\"user\":%d,\"name\":\"user-%d\",\"email\":\"u%d@example.com\","
                          "\"score\":%d,\"active\":true}",
                          i, i % 977, i % 977, (int)(next_rand() % 100000));
        char key[32];
        int kl = snprintf(key, sizeof(key), "user:%d", i);
        n += (size_t)snprintf(
            buf + n, cap - n,
            "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$4\r\n3600\r\n", kl, key, vl,
            val);
    }
    return n;
}

static void random_bytes(char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(next_rand() >> 24);
}

/* Encodes data in pieces of `piece` bytes; returns the wire bytes written to wire. */
static size_t encode_all(struct frame_encoder *e, const char *data, size_t len, size_t piece,
                         char *wire, size_t cap)
{
    size_t w = 0;
    char err[FRAME_ERR_LEN];
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        struct iovec iov[2] = {{(void *)(data + off), n / 2},
                               {(void *)(data + off + n / 2), n - n / 2}};
        assert_true(cap - w >= frame_bound(n));
        ssize_t k = frame_encode(e, iov, 2, wire + w, cap - w, err, sizeof(err));
        assert_true(k > 0);
        w += (size_t)k;
    }
    return w;
}

/* Decodes wire in input chunks of `chunk` and output room of `room`; returns bytes out. */
static size_t decode_all(struct frame_decoder *d, const char *wire, size_t len, size_t chunk,
                         size_t room, char *out, size_t cap)
{
    size_t pos = 0, o = 0;
    char err[FRAME_ERR_LEN];
    while (pos < len) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        size_t in_pos = 0;
        for (int guard = 0; guard < 1000000; guard++) {
            size_t used = 0;
            size_t r = cap - o < room ? cap - o : room;
            ssize_t got = frame_decode(d, wire + pos + in_pos, n - in_pos, &used, out + o, r, err,
                                       sizeof(err));
            if (got < 0)
                fail_msg("decode failed: %s", err);
            in_pos += used;
            o += (size_t)got;
            if (in_pos == n && (size_t)got < r)
                break;
            if (o == cap)
                break;
        }
        pos += n;
    }
    return o;
}

static void round_trip(int level, bool random, size_t piece, size_t chunk, size_t room)
{
    size_t cap = 4 << 20;
    char *data = malloc(cap), *wire = malloc(cap * 2), *out = malloc(cap);
    size_t len;
    if (random) {
        len = 2 << 20;
        random_bytes(data, len);
    } else {
        len = json_stream(data, cap);
    }
    struct frame_encoder *e = frame_encoder_new(level);
    struct frame_decoder *d = frame_decoder_new();
    size_t w = encode_all(e, data, len, piece, wire, cap * 2);
    size_t got = decode_all(d, wire, w, chunk, room, out, cap);
    assert_int_equal(got, len);
    assert_memory_equal(out, data, len);
    assert_true(frame_decoder_idle(d));
    frame_encoder_free(e);
    frame_decoder_free(d);
    free(data);
    free(wire);
    free(out);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip(1, false, 65536, 1 << 20, 1 << 20);
    round_trip(1, false, 300, 7, 13); /* tiny frames, tiny reads, tiny room */
    round_trip(3, false, FRAME_MAX_RAW, 4096, 100000);
    round_trip(0, false, 5000, 333, 777);      /* raw frames */
    round_trip(1, true, 100000, 65536, 65536); /* incompressible */
}

/* One zstd stream for the link: later frames refer back to earlier ones, and do better than
 * the same pieces compressed one by one (the 5.3x vs 3.7x). */
static void test_window_carries(void **state)
{
    (void)state;
    size_t cap = 4 << 20;
    char *data = malloc(cap), *wire = malloc(cap * 2);
    size_t len = json_stream(data, cap);
    struct frame_encoder *e = frame_encoder_new(1);
    size_t linked = encode_all(e, data, len, 4096, wire, cap * 2);
    frame_encoder_free(e);
    size_t separate = 0;
    for (size_t off = 0; off < len; off += 4096) {
        struct frame_encoder *one = frame_encoder_new(1);
        size_t n = len - off < 4096 ? len - off : 4096;
        separate += encode_all(one, data + off, n, 4096, wire, cap * 2);
        frame_encoder_free(one);
    }
    print_message("json: %zu stream bytes -> %zu wire (link), %zu (pieces alone)\n", len, linked,
                  separate);
    assert_true(linked * 5 < len);
    assert_true(linked < separate);
    free(data);
    free(wire);
}

/* Random data goes through as zstd's raw blocks: within 1% of its size, even in 16 KB reads. */
static void test_random_overhead(void **state)
{
    (void)state;
    size_t len = 4 << 20;
    char *data = malloc(len), *wire = malloc(len * 2);
    random_bytes(data, len);
    struct frame_encoder *e = frame_encoder_new(1);
    size_t w = encode_all(e, data, len, 16384, wire, len * 2);
    print_message("random: %zu stream bytes -> %zu wire\n", len, w);
    assert_true(w <= len + len / 100);
    frame_encoder_free(e);
    free(data);
    free(wire);
}

static void test_heartbeat(void **state)
{
    (void)state;
    char wire[512];
    size_t w = frame_heartbeat(wire);
    w += frame_heartbeat(wire + w);
    struct frame_encoder *e = frame_encoder_new(1);
    char err[FRAME_ERR_LEN];
    struct iovec iov = {"PING", 4};
    ssize_t k = frame_encode(e, &iov, 1, wire + w, sizeof(wire) - w, err, sizeof(err));
    assert_true(k > 0);
    w += (size_t)k;
    w += frame_heartbeat(wire + w);
    struct frame_decoder *d = frame_decoder_new();
    char out[16];
    size_t used;
    /* byte by byte: heartbeats give no stream bytes */
    size_t o = 0;
    for (size_t i = 0; i < w; i++) {
        ssize_t got =
            frame_decode(d, wire + i, 1, &used, out + o, sizeof(out) - o, err, sizeof(err));
        assert_true(got >= 0);
        assert_int_equal(used, 1);
        o += (size_t)got;
    }
    assert_int_equal(o, 4);
    assert_memory_equal(out, "PING", 4);
    assert_int_equal(frame_decoder_heartbeats(d), 3);
    assert_true(frame_decoder_idle(d));
    frame_encoder_free(e);
    frame_decoder_free(d);
}

/* Feeds wire to a fresh decoder; true if it was rejected. */
static bool rejected(const void *wire, size_t len)
{
    struct frame_decoder *d = frame_decoder_new();
    static char out[FRAME_MAX_RAW + 1];
    char err[FRAME_ERR_LEN] = "";
    size_t pos = 0;
    bool bad = false;
    for (int guard = 0; guard < 100; guard++) {
        size_t used = 0;
        ssize_t got = frame_decode(d, (const char *)wire + pos, len - pos, &used, out, sizeof(out),
                                   err, sizeof(err));
        if (got < 0) {
            bad = true;
            break;
        }
        pos += used;
        if (pos == len && (size_t)got < sizeof(out))
            break;
    }
    if (bad)
        print_message("rejected: %s\n", err);
    frame_decoder_free(d);
    return bad;
}

static void test_corrupt(void **state)
{
    (void)state;
    const unsigned char unknown[] = {9, 1, 0, 0, 'x'};
    assert_true(rejected(unknown, sizeof(unknown)));
    const unsigned char empty_raw[] = {FRAME_RAW, 0, 0, 0};
    assert_true(rejected(empty_raw, sizeof(empty_raw)));
    const unsigned char big_raw[] = {FRAME_RAW, 1, 0, 0x10}; /* 1 MB + 1 */
    assert_true(rejected(big_raw, sizeof(big_raw)));
    const unsigned char big_zstd[] = {FRAME_ZSTD, 0xff, 0xff, 0xff};
    assert_true(rejected(big_zstd, sizeof(big_zstd)));
    const unsigned char hb_payload[] = {FRAME_HEARTBEAT, 1, 0, 0, 'x'};
    assert_true(rejected(hb_payload, sizeof(hb_payload)));
    const unsigned char garbage[] = {FRAME_ZSTD, 8, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_true(rejected(garbage, sizeof(garbage)));

    /* A valid frame with a flipped byte inside its zstd payload. */
    char data[4096], wire[8192], err[FRAME_ERR_LEN];
    size_t len = json_stream(data, sizeof(data));
    struct frame_encoder *e = frame_encoder_new(1);
    struct iovec iov = {data, len};
    ssize_t w = frame_encode(e, &iov, 1, wire, sizeof(wire), err, sizeof(err));
    assert_true(w > 8);
    frame_encoder_free(e);
    assert_false(rejected(wire, (size_t)w));
    wire[5] ^= 0x40; /* the zstd frame header's descriptor */
    assert_true(rejected(wire, (size_t)w));

    /* A complete zstd frame (it ends the stream, which ours never does). */
    char z[256];
    size_t zn = ZSTD_compress(z + 4, sizeof(z) - 4, "hello hello hello", 17, 1);
    assert_false(ZSTD_isError(zn));
    z[0] = FRAME_ZSTD;
    z[1] = (char)zn;
    z[2] = z[3] = 0;
    assert_true(rejected(z, zn + 4));

    /* A bomb: a zstd piece that expands past FRAME_MAX_RAW in one frame. */
    char *zeros = calloc(1, 3 << 20), *bomb = malloc(1 << 20);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_outBuffer ob = {bomb + 4, (1 << 20) - 4, 0};
    ZSTD_inBuffer ib = {zeros, 3 << 20, 0};
    size_t r = ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_flush);
    assert_int_equal(r, 0);
    bomb[0] = FRAME_ZSTD;
    bomb[1] = (char)(ob.pos & 0xff);
    bomb[2] = (char)((ob.pos >> 8) & 0xff);
    bomb[3] = (char)(ob.pos >> 16);
    assert_true(rejected(bomb, ob.pos + 4));
    ZSTD_freeCCtx(c);
    free(zeros);
    free(bomb);
}

static void test_encode_limits(void **state)
{
    (void)state;
    struct frame_encoder *e = frame_encoder_new(1);
    char err[FRAME_ERR_LEN], out[64];
    struct iovec none = {out, 0};
    assert_int_equal(frame_encode(e, &none, 1, out, sizeof(out), err, sizeof(err)), -1);
    struct iovec some = {"abc", 3};
    assert_int_equal(frame_encode(e, &some, 1, out, 8, err, sizeof(err)), -1); /* no room */
    assert_int_equal(frame_encoder_level(e), 1);
    frame_encoder_free(e);
    frame_encoder_free(NULL);
    frame_decoder_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_window_carries),
        cmocka_unit_test(test_random_overhead), cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_corrupt),         cmocka_unit_test(test_encode_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
