/*
 * crc32c: CRC-32C (Castagnoli, reflected, the iSCSI checksum) of a run of bytes, as the disk
 * log's index records and the meta file store it. Chainable: crc32c(crc32c(0, a), b) is the
 * CRC of a followed by b, and crc32c(0, "", 0) is 0.
 * Owns nothing (the work is Debian's ISA-L, which picks the CPU's fastest code at run time).
 * Pure: no I/O, no state, no threads; safe to call from any thread.
 */
#ifndef CASCADE_CRC32C_H
#define CASCADE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of crc's bytes followed by buf's len bytes (crc 0 to begin). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
