/*
 * frame: the framing of a link between two cascade relays, as pure functions over buffers.
 * After the PSYNC reply line, an upstream relay that agreed to it (see PROTOCOL.md, "cascade
 * links") sends everything (the RDB preamble, the RDB, the stream) as frames:
 *
 *   byte 0: type (FRAME_RAW, FRAME_ZSTD, FRAME_HEARTBEAT); bytes 1-3: payload length, LE
 *
 * RAW carries stream bytes as they are. ZSTD carries one flushed piece of a single zstd
 * stream that lasts as long as the link: one compression context per link, so the window
 * carries across frames, and each frame decodes completely on its own arrival (ZSTD_e_flush),
 * so compression adds no waiting. Blocks that do not compress are stored raw by zstd itself,
 * per 128 KB block (a few bytes each), and the window stays in step on both sides. HEARTBEAT
 * has no payload: the upstream sends one after a second with nothing to send, so that a
 * downstream relay can tell a dead link from a quiet one. Heartbeats are not stream bytes.
 * Owns its zstd contexts; no I/O, no logging.
 */
#ifndef CASCADE_FRAME_H
#define CASCADE_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define FRAME_HEADER_LEN 4
#define FRAME_MAX_RAW    (1 << 20) /* stream bytes one frame carries at most */
/* A ZSTD frame's payload at most: what FRAME_MAX_RAW bytes can compress to, with room. */
#define FRAME_MAX_PAYLOAD (FRAME_MAX_RAW + FRAME_MAX_RAW / 128 + 4096)
#define FRAME_ERR_LEN     128

enum frame_type {
    FRAME_RAW = 1,       /* stream bytes as they are */
    FRAME_ZSTD = 2,      /* a flushed piece of the link's zstd stream */
    FRAME_HEARTBEAT = 3, /* no payload: the link is alive */
};

struct frame_encoder;
struct frame_decoder;

/* An encoder for one link: level 0 sends RAW frames, 1-19 ZSTD frames at that level. */
struct frame_encoder *frame_encoder_new(int level);
void frame_encoder_free(struct frame_encoder *e);
int frame_encoder_level(const struct frame_encoder *e);

/* Output room one frame of raw_len (<= FRAME_MAX_RAW) bytes needs at most. */
size_t frame_bound(size_t raw_len);

/*
 * One frame holding the bytes of iov[0..n) in order (together 1..FRAME_MAX_RAW bytes),
 * written to out (cap >= frame_bound of their total). Returns its length, or -1 with err.
 * A failed encoder (zstd error) must not be used again: the link is closed.
 */
__attribute__((warn_unused_result)) ssize_t frame_encode(struct frame_encoder *e,
                                                         const struct iovec *iov, int n, void *out,
                                                         size_t cap, char *err, size_t errlen);

/* A heartbeat frame: writes FRAME_HEADER_LEN bytes to out. */
size_t frame_heartbeat(void *out);

struct frame_decoder *frame_decoder_new(void);
void frame_decoder_free(struct frame_decoder *d);

/*
 * Decodes wire bytes in[0..len) into stream bytes at out (cap bytes of room). Sets *used to
 * the input consumed (it keeps partial headers itself) and returns the stream bytes written,
 * or -1 with err on a bad frame (the link must be closed then). It stops when the input is
 * used up or out is full: call again with the rest while either remains.
 */
__attribute__((warn_unused_result)) ssize_t frame_decode(struct frame_decoder *d, const void *in,
                                                         size_t len, size_t *used, void *out,
                                                         size_t cap, char *err, size_t errlen);

/* True between frames (no partial header or payload pending). */
bool frame_decoder_idle(const struct frame_decoder *d);
int64_t frame_decoder_heartbeats(const struct frame_decoder *d);

#endif
