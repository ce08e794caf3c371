/*
 * crc32c: see crc32c.h. ISA-L's crc32_iscsi takes and returns the raw register (no inversion
 * on the way in or out), so the standard CRC is its result inverted, from the inverted seed.
 * It takes an int length: longer runs go in pieces. Measured against the hand-written
 * three-lane SSE4.2 loop it replaced: as fast or faster (tests/bench/crc32c_bench.c).
 */
#include "crc32c.h"

#include <isa-l/crc.h>

#define PIECE ((size_t)1 << 30) /* fits crc32_iscsi's int length */

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    unsigned char *p = (unsigned char *)buf; /* ISA-L does not write through it */
    uint32_t c = ~crc;
    while (len > 0) {
        size_t n = len < PIECE ? len : PIECE;
        c = crc32_iscsi(p, (int)n, c);
        p += n;
        len -= n;
    }
    return ~c;
}
