/*
 * Fuzz target: frame_decode, the decoder of cascade-to-cascade links (wire bytes from the
 * network). Input layout: one control byte, then wire bytes. The bytes are fed in chunks of
 * (control & 15) + 1 bytes with (control >> 4) * 97 + 1 bytes of output room. Checks: no
 * crash, no read or write out of bounds, used never past the input, output never past the room,
 * and an error is sticky for the link (the caller closes it; feeding on is not required).
 * Control 0xff instead encodes the rest with frame_encode (level 1, in pieces of up to 700
 * bytes) and decodes it in 13-byte chunks: the round trip must give the input back.
 */
#include "fuzz.h"

#include <string.h>

#include "frame.h"

static void round_trip(const uint8_t *data, size_t size)
{
    struct frame_encoder *e = frame_encoder_new(1);
    struct frame_decoder *d = frame_decoder_new();
    size_t wcap = frame_bound(700) * (size / 700 + 1);
    char *wire = malloc(wcap);
    char *out = malloc(size + 1);
    FUZZ_CHECK(wire && out);
    char err[FRAME_ERR_LEN];
    size_t w = 0;
    for (size_t off = 0; off < size; off += 700) {
        size_t n = size - off < 700 ? size - off : 700;
        struct iovec iov = {(void *)(data + off), n};
        ssize_t k = frame_encode(e, &iov, 1, wire + w, wcap - w, err, sizeof(err));
        FUZZ_CHECK(k > 0);
        w += (size_t)k;
    }
    size_t o = 0;
    for (size_t pos = 0; pos < w;) {
        size_t n = w - pos < 13 ? w - pos : 13;
        size_t used = 0;
        ssize_t got =
            frame_decode(d, wire + pos, n, &used, out + o, size + 1 - o, err, sizeof(err));
        FUZZ_CHECK(got >= 0);
        FUZZ_CHECK(used <= n);
        o += (size_t)got;
        pos += used;
        FUZZ_CHECK(o <= size);
    }
    FUZZ_CHECK(o == size);
    FUZZ_CHECK(memcmp(out, data, size) == 0);
    FUZZ_CHECK(frame_decoder_idle(d));
    free(wire);
    free(out);
    frame_encoder_free(e);
    frame_decoder_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t control = data[0];
    data++;
    size--;
    if (control == 0xff) {
        round_trip(data, size);
        return 0;
    }
    size_t chunk = (size_t)(control & 15) + 1;
    size_t room = (size_t)(control >> 4) * 97 + 1;
    char *out = malloc(room);
    FUZZ_CHECK(out);
    struct frame_decoder *d = frame_decoder_new();
    char err[FRAME_ERR_LEN];
    size_t pos = 0;
    for (int guard = 0; pos < size && guard < 1 << 20; guard++) {
        size_t n = size - pos < chunk ? size - pos : chunk;
        size_t used = 0;
        ssize_t got = frame_decode(d, data + pos, n, &used, out, room, err, sizeof(err));
        if (got < 0) {
            FUZZ_CHECK(err[0] != '\0');
            break;
        }
        FUZZ_CHECK(used <= n);
        FUZZ_CHECK((size_t)got <= room);
        if (used == 0 && (size_t)got < room)
            FUZZ_CHECK(n == 0); /* no progress only when there is nothing to take */
        pos += used;
    }
    frame_decoder_free(d);
    free(out);
    return 0;
}
