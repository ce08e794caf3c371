/*
 * wanlink: see wanlink.h. The sending side is a bufferevent filter: libevent calls out_filter
 * whenever bytes are added to the filter's output (and when the socket drained), so each
 * write of the relay (a backlog block's new bytes, a piece of the RDB file) becomes one frame
 * at once, flushed: nothing waits for more input. The connection below keeps at most
 * SOCK_HIGH framed bytes; the rest waits in the filter's output, uncompressed, where
 * replica.c's limits see it.
 */
#include "wanlink.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "net.h"

#define SOCK_HIGH   (1 << 20) /* framed bytes queued below the filter at most */
#define SOCK_LOW    (SOCK_HIGH / 2)
#define MAX_PIECES  64
#define DECODE_ROOM (256 * 1024) /* plain bytes decoded per step */

struct wanlink_out {
    struct frame_encoder *enc; /* owned */
    struct bufferevent *sock;  /* borrowed: the filter's underlying connection */
    struct wanlink_counters c;
    int64_t last_send_ms; /* last frame (data or heartbeat) queued */
    char err[FRAME_ERR_LEN];
    bool failed;
};

struct wanlink_in {
    struct frame_decoder *dec; /* owned */
    struct wanlink_counters c;
};

const char *wanlink_mode_name(int level)
{
    return level > 0 ? "zstd" : "raw";
}

/* One frame of up to FRAME_MAX_RAW bytes from the front of src into dst. */
static int encode_one(struct wanlink_out *w, struct evbuffer *src, struct evbuffer *dst)
{
    struct evbuffer_iovec v[MAX_PIECES];
    int n = evbuffer_peek(src, FRAME_MAX_RAW, NULL, v, MAX_PIECES);
    if (n > MAX_PIECES)
        n = MAX_PIECES;
    struct iovec iov[MAX_PIECES];
    size_t total = 0;
    int k = 0;
    for (; k < n && total < FRAME_MAX_RAW; k++) {
        size_t len = v[k].iov_len;
        if (len > FRAME_MAX_RAW - total)
            len = FRAME_MAX_RAW - total;
        iov[k] = (struct iovec){.iov_base = v[k].iov_base, .iov_len = len};
        total += len;
    }
    if (total == 0)
        return 0;
    size_t bound = frame_bound(total);
    struct evbuffer_iovec room;
    if (evbuffer_reserve_space(dst, (ev_ssize_t)bound, &room, 1) != 1 || room.iov_len < bound) {
        snprintf(w->err, sizeof(w->err), "out of memory framing output");
        return -1;
    }
    ssize_t len = frame_encode(w->enc, iov, k, room.iov_base, room.iov_len, w->err, sizeof(w->err));
    if (len < 0)
        return -1;
    room.iov_len = (size_t)len;
    evbuffer_commit_space(dst, &room, 1);
    evbuffer_drain(src, total);
    w->c.raw_bytes += (int64_t)total;
    w->c.wire_bytes += len;
    w->c.frames++;
    w->last_send_ms = net_now_ms();
    return 0;
}

static enum bufferevent_filter_result out_filter(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                 void *ctx)
{
    (void)mode;
    struct wanlink_out *w = ctx;
    if (w->failed)
        return BEV_ERROR;
    size_t start = evbuffer_get_length(dst);
    while (evbuffer_get_length(src) > 0) {
        if (limit >= 0 && evbuffer_get_length(dst) - start >= (size_t)limit)
            break;
        if (encode_one(w, src, dst) != 0) {
            w->failed = true;
            return BEV_ERROR;
        }
    }
    return BEV_OK;
}

static void free_out(void *ctx)
{
    struct wanlink_out *w = ctx;
    frame_encoder_free(w->enc);
    free(w);
}

struct bufferevent *wanlink_wrap(struct bufferevent *bev, int level, struct wanlink_out **out)
{
    struct wanlink_out *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->enc = frame_encoder_new(level);
    w->sock = bev;
    w->last_send_ms = net_now_ms();
    struct bufferevent *f = bufferevent_filter_new(
        bev, NULL, out_filter, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, free_out, w);
    if (!f)
        abort();
    bufferevent_setwatermark(bev, EV_WRITE, SOCK_LOW, SOCK_HIGH);
    *out = w;
    return f;
}

void wanlink_out_cron(struct wanlink_out *w, int64_t now_ms)
{
    if (w->failed || now_ms - w->last_send_ms < WANLINK_HEARTBEAT_MS)
        return;
    unsigned char hb[FRAME_HEADER_LEN];
    size_t n = frame_heartbeat(hb);
    /* Frames reach the connection whole, so its output ends at a frame boundary. */
    evbuffer_add(bufferevent_get_output(w->sock), hb, n);
    w->c.wire_bytes += (int64_t)n;
    w->c.heartbeats++;
    w->last_send_ms = now_ms;
}

const struct wanlink_counters *wanlink_out_counters(const struct wanlink_out *w)
{
    return &w->c;
}

int wanlink_out_level(const struct wanlink_out *w)
{
    return frame_encoder_level(w->enc);
}

size_t wanlink_out_pending(const struct wanlink_out *w)
{
    return evbuffer_get_length(bufferevent_get_output(w->sock));
}

struct bufferevent *wanlink_out_socket(const struct wanlink_out *w)
{
    return w->sock;
}

const char *wanlink_out_error(const struct wanlink_out *w)
{
    return w->failed ? w->err : NULL;
}

struct wanlink_in *wanlink_in_new(void)
{
    struct wanlink_in *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->dec = frame_decoder_new();
    return w;
}

void wanlink_in_free(struct wanlink_in *w)
{
    if (!w)
        return;
    frame_decoder_free(w->dec);
    free(w);
}

ssize_t wanlink_in_decode_into(struct wanlink_in *w, struct evbuffer *wire, void *out, size_t cap,
                               char *err, size_t errlen)
{
    int64_t hb0 = frame_decoder_heartbeats(w->dec);
    size_t o = 0;
    while (o < cap) {
        struct evbuffer_iovec v = {NULL, 0};
        if (evbuffer_peek(wire, -1, NULL, &v, 1) < 1)
            v.iov_len = 0;
        size_t used = 0;
        ssize_t got = frame_decode(w->dec, v.iov_base, v.iov_len, &used, (char *)out + o, cap - o,
                                   err, errlen);
        if (got < 0)
            return -1;
        evbuffer_drain(wire, used);
        w->c.wire_bytes += (int64_t)used;
        w->c.raw_bytes += got;
        o += (size_t)got;
        /* Room left: the decoder gave all it had, so stop once the input is used up. */
        if (o < cap && (evbuffer_get_length(wire) == 0 || used == 0))
            break;
    }
    w->c.heartbeats += frame_decoder_heartbeats(w->dec) - hb0;
    return (ssize_t)o;
}

int wanlink_in_decode(struct wanlink_in *w, struct evbuffer *wire, struct evbuffer *plain,
                      char *err, size_t errlen)
{
    for (;;) {
        struct evbuffer_iovec room;
        if (evbuffer_reserve_space(plain, DECODE_ROOM, &room, 1) != 1) {
            snprintf(err, errlen, "out of memory decoding the link");
            return -1;
        }
        size_t cap = room.iov_len;
        ssize_t got = wanlink_in_decode_into(w, wire, room.iov_base, cap, err, errlen);
        if (got < 0)
            return -1; /* nothing committed */
        room.iov_len = (size_t)got;
        evbuffer_commit_space(plain, &room, 1);
        if ((size_t)got < cap)
            return 0;
    }
}

const struct wanlink_counters *wanlink_in_counters(const struct wanlink_in *w)
{
    return &w->c;
}
