/*
 * frame: see frame.h. One zstd stream per direction of a link: the encoder never ends its
 * zstd frame, it flushes after each of ours, so every one of our frames is decodable on
 * arrival and the window spans the whole link.
 */
#include "frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define WINDOW_LOG     22 /* 4 MB of history on both sides */
#define WINDOW_LOG_MAX 23 /* a decoder refuses more (memory) */

struct frame_encoder {
    ZSTD_CCtx *z; /* owned; NULL at level 0 */
    int level;
};

struct frame_decoder {
    ZSTD_DCtx *z;                        /* owned */
    unsigned char hdr[FRAME_HEADER_LEN]; /* the header being read */
    size_t hdr_len;                      /* bytes of hdr read so far */
    bool in_frame;                       /* a payload is being read */
    enum frame_type type;                /* of the frame being read */
    size_t left;                         /* payload bytes still to read */
    size_t produced;                     /* stream bytes this frame gave so far */
    int64_t heartbeats;                  /* heartbeat frames seen */
};

static void put_header(unsigned char *p, enum frame_type t, size_t len)
{
    p[0] = (unsigned char)t;
    p[1] = (unsigned char)(len & 0xff);
    p[2] = (unsigned char)((len >> 8) & 0xff);
    p[3] = (unsigned char)((len >> 16) & 0xff);
}

struct frame_encoder *frame_encoder_new(int level)
{
    struct frame_encoder *e = calloc(1, sizeof(*e));
    if (!e)
        abort();
    e->level = level;
    if (level > 0) {
        e->z = ZSTD_createCCtx();
        if (!e->z)
            abort();
        ZSTD_CCtx_setParameter(e->z, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(e->z, ZSTD_c_windowLog, WINDOW_LOG);
    }
    return e;
}

void frame_encoder_free(struct frame_encoder *e)
{
    if (!e)
        return;
    ZSTD_freeCCtx(e->z);
    free(e);
}

int frame_encoder_level(const struct frame_encoder *e)
{
    return e->level;
}

size_t frame_bound(size_t raw_len)
{
    return FRAME_HEADER_LEN + ZSTD_compressBound(raw_len) + 64;
}

size_t frame_heartbeat(void *out)
{
    put_header(out, FRAME_HEARTBEAT, 0);
    return FRAME_HEADER_LEN;
}

ssize_t frame_encode(struct frame_encoder *e, const struct iovec *iov, int n, void *out, size_t cap,
                     char *err, size_t errlen)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (total == 0 || total > FRAME_MAX_RAW || cap < frame_bound(total)) {
        snprintf(err, errlen, "frame of %zu bytes does not fit", total);
        return -1;
    }
    unsigned char *o = out;
    if (!e->z) {
        size_t pos = FRAME_HEADER_LEN;
        for (int i = 0; i < n; i++) {
            memcpy(o + pos, iov[i].iov_base, iov[i].iov_len);
            pos += iov[i].iov_len;
        }
        put_header(o, FRAME_RAW, total);
        return (ssize_t)pos;
    }
    ZSTD_outBuffer ob = {o + FRAME_HEADER_LEN, cap - FRAME_HEADER_LEN, 0};
    for (int i = 0; i < n; i++) {
        ZSTD_inBuffer ib = {iov[i].iov_base, iov[i].iov_len, 0};
        while (ib.pos < ib.size) {
            size_t r = ZSTD_compressStream2(e->z, &ob, &ib, ZSTD_e_continue);
            if (ZSTD_isError(r)) {
                snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(r));
                return -1;
            }
            if (ob.pos == ob.size && ib.pos < ib.size) {
                snprintf(err, errlen, "zstd: output full");
                return -1;
            }
        }
    }
    ZSTD_inBuffer none = {NULL, 0, 0};
    size_t r;
    do {
        r = ZSTD_compressStream2(e->z, &ob, &none, ZSTD_e_flush);
        if (ZSTD_isError(r)) {
            snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(r));
            return -1;
        }
        if (r && ob.pos == ob.size) {
            snprintf(err, errlen, "zstd: output full");
            return -1;
        }
    } while (r != 0);
    if (ob.pos > FRAME_MAX_PAYLOAD) {
        snprintf(err, errlen, "zstd: %zu bytes grew to %zu", total, ob.pos);
        return -1;
    }
    put_header(o, FRAME_ZSTD, ob.pos);
    return (ssize_t)(FRAME_HEADER_LEN + ob.pos);
}

struct frame_decoder *frame_decoder_new(void)
{
    struct frame_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        abort();
    d->z = ZSTD_createDCtx();
    if (!d->z)
        abort();
    ZSTD_DCtx_setParameter(d->z, ZSTD_d_windowLogMax, WINDOW_LOG_MAX);
    return d;
}

void frame_decoder_free(struct frame_decoder *d)
{
    if (!d)
        return;
    ZSTD_freeDCtx(d->z);
    free(d);
}

bool frame_decoder_idle(const struct frame_decoder *d)
{
    return !d->in_frame && d->hdr_len == 0;
}

int64_t frame_decoder_heartbeats(const struct frame_decoder *d)
{
    return d->heartbeats;
}

/* A complete header: check it and start its frame. 0 or -1. */
static int start_frame(struct frame_decoder *d, char *err, size_t errlen)
{
    size_t len = d->hdr[1] | (size_t)d->hdr[2] << 8 | (size_t)d->hdr[3] << 16;
    d->hdr_len = 0;
    switch (d->hdr[0]) {
    case FRAME_HEARTBEAT:
        if (len != 0) {
            snprintf(err, errlen, "heartbeat frame with a %zu byte payload", len);
            return -1;
        }
        d->heartbeats++;
        return 0;
    case FRAME_RAW:
        if (len == 0 || len > FRAME_MAX_RAW) {
            snprintf(err, errlen, "raw frame of %zu bytes", len);
            return -1;
        }
        break;
    case FRAME_ZSTD:
        if (len == 0 || len > FRAME_MAX_PAYLOAD) {
            snprintf(err, errlen, "zstd frame of %zu bytes", len);
            return -1;
        }
        break;
    default:
        snprintf(err, errlen, "unknown frame type %u", d->hdr[0]);
        return -1;
    }
    d->type = d->hdr[0];
    d->left = len;
    d->produced = 0;
    d->in_frame = true;
    return 0;
}

/* Inflates the current zstd frame's payload from ip[*pos..len) into op[*opos..cap), moving
 * both. 0: go on (bytes moved, or the frame ended), 1: needs more input, -1 with err. */
static int decode_zstd(struct frame_decoder *d, const unsigned char *ip, size_t len, size_t *pos,
                       unsigned char *op, size_t cap, size_t *opos, char *err, size_t errlen)
{
    size_t avail = d->left < len - *pos ? d->left : len - *pos;
    ZSTD_inBuffer ib = {ip + *pos, avail, 0};
    ZSTD_outBuffer ob = {op + *opos, cap - *opos, 0};
    size_t r = ZSTD_decompressStream(d->z, &ob, &ib);
    if (ZSTD_isError(r)) {
        snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(r));
        return -1;
    }
    *pos += ib.pos;
    d->left -= ib.pos;
    *opos += ob.pos;
    d->produced += ob.pos;
    if (d->produced > FRAME_MAX_RAW) {
        snprintf(err, errlen, "zstd frame expands past %d bytes", FRAME_MAX_RAW);
        return -1;
    }
    if (d->left == 0 && ob.pos < ob.size) {
        /* Everything flushed: the frame is complete. The encoder never sends one that
         * gives no bytes, and a zstd stream that ended was not ours (we never end it). */
        if (d->produced == 0 || r == 0) {
            snprintf(err, errlen, "zstd frame %s", r == 0 ? "ends the stream" : "is empty");
            return -1;
        }
        d->in_frame = false;
        return 0;
    }
    return ib.pos == 0 && ob.pos == 0 ? 1 : 0;
}

ssize_t frame_decode(struct frame_decoder *d, const void *in, size_t len, size_t *used, void *out,
                     size_t cap, char *err, size_t errlen)
{
    static const unsigned char none[1];
    const unsigned char *ip = in ? in : none; /* no input: still drain the decoder */
    unsigned char *op = out;
    if (!in)
        len = 0;
    size_t pos = 0, opos = 0;
    for (;;) {
        if (!d->in_frame) {
            if (pos == len)
                break;
            while (d->hdr_len < FRAME_HEADER_LEN && pos < len)
                d->hdr[d->hdr_len++] = ip[pos++];
            if (d->hdr_len < FRAME_HEADER_LEN)
                break;
            if (start_frame(d, err, errlen) != 0)
                return -1;
            continue;
        }
        if (opos == cap)
            break;
        if (d->type == FRAME_RAW) {
            size_t n = d->left;
            if (n > len - pos)
                n = len - pos;
            if (n > cap - opos)
                n = cap - opos;
            if (n == 0)
                break;
            memcpy(op + opos, ip + pos, n);
            pos += n;
            opos += n;
            d->left -= n;
            if (d->left == 0)
                d->in_frame = false;
            continue;
        }
        int rc = decode_zstd(d, ip, len, &pos, op, cap, &opos, err, errlen);
        if (rc < 0)
            return -1;
        if (rc > 0)
            break; /* needs more input */
    }
    *used = pos;
    return (ssize_t)opos;
}
