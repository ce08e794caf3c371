/*
 * wanlink: the libevent side of cascade-to-cascade links (frame.c does the framing).
 * Sending (replica.c, toward a downstream relay): a bufferevent filter over the replica's
 * connection compresses whatever is written to it, one frame per piece as it is written, and
 * sends a heartbeat frame after a second with nothing sent. Receiving (upstream_io.c): frames
 * from the link's input are decoded into a plain buffer the handshake state machine reads.
 * Offsets never see any of it: they count stream bytes, before framing.
 * Level 2: owns the filter's context and the decoder; logs nothing (callers log).
 */
#ifndef CASCADE_WANLINK_H
#define CASCADE_WANLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bufferevent;
struct evbuffer;

#define WANLINK_HEARTBEAT_MS 1000 /* a heartbeat after this long with nothing sent */

/* What one framed link carried. */
struct wanlink_counters {
    int64_t raw_bytes;  /* stream (and RDB) bytes before framing */
    int64_t wire_bytes; /* bytes on the wire, headers and heartbeats included */
    int64_t frames;     /* data frames */
    int64_t heartbeats; /* heartbeat frames */
};

struct wanlink_out;

/*
 * From now on, what is written to the returned bufferevent reaches bev framed (level 0:
 * RAW frames, 1-19: zstd at that level). bev must have nothing but whole unframed replies
 * queued; it passes to the filter, which frees it. *out is valid as long as the filter is.
 * Callbacks of the filter are deferred (a write callback that writes again must not run
 * inside the write that triggered it).
 */
struct bufferevent *wanlink_wrap(struct bufferevent *bev, int level, struct wanlink_out **out);

/* Heartbeat when nothing was sent for WANLINK_HEARTBEAT_MS. */
void wanlink_out_cron(struct wanlink_out *w, int64_t now_ms);
const struct wanlink_counters *wanlink_out_counters(const struct wanlink_out *w);
int wanlink_out_level(const struct wanlink_out *w);
/* Framed bytes queued in the connection, not yet written to the socket. */
size_t wanlink_out_pending(const struct wanlink_out *w);
/* The connection itself (below the filter), e.g. for rate limits. */
struct bufferevent *wanlink_out_socket(const struct wanlink_out *w);
/* The encoder failed (the link must be dropped); the reason, or NULL. */
const char *wanlink_out_error(const struct wanlink_out *w);

struct wanlink_in;

struct wanlink_in *wanlink_in_new(void);
void wanlink_in_free(struct wanlink_in *w);
/* Decode everything wire holds into plain (wire is drained). 0, or -1 with err: the link
 * carried a bad frame and must be closed. */
__attribute__((warn_unused_result)) int wanlink_in_decode(struct wanlink_in *w,
                                                          struct evbuffer *wire,
                                                          struct evbuffer *plain, char *err,
                                                          size_t errlen);
/* The same into out (cap bytes): returns the bytes written (fewer than cap only once wire is
 * used up and the decoder holds nothing more), or -1 with err. */
__attribute__((warn_unused_result)) ssize_t wanlink_in_decode_into(struct wanlink_in *w,
                                                                   struct evbuffer *wire, void *out,
                                                                   size_t cap, char *err,
                                                                   size_t errlen);
const struct wanlink_counters *wanlink_in_counters(const struct wanlink_in *w);

/* "raw" or "zstd" for a level, as INFO shows it. */
const char *wanlink_mode_name(int level);

#endif
