/*
 * rdbinfo: the auxiliary fields at the start of an RDB file (Redis' "AUX" records, opcode
 * 0xFA, written right after the header: redis-ver, ctime, repl-id, repl-offset, ...). The
 * relay reads them to cross-check what meta says about its cached snapshot: an RDB made for
 * replication carries the master's replication offset it is consistent with (repl-offset).
 * Only the header and the AUX records are parsed; the first other record ends the parse.
 * Pure functions (and one that reads a file's first bytes); no logging.
 */
#ifndef CASCADE_RDBINFO_H
#define CASCADE_RDBINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"

#define RDBINFO_READ_MAX (64 * 1024) /* rdbinfo_read_file reads at most this much */

struct rdbinfo {
    int version;          /* format version from the header */
    int aux_count;        /* AUX records seen */
    bool has_repl_offset; /* a repl-offset field holding a plain integer */
    int64_t repl_offset;  /* its value */
    bool has_repl_id;     /* a repl-id field of 40 characters */
    char repl_id[RESP_REPLID_LEN + 1];
};

enum rdbinfo_result {
    RDBINFO_OK = 0,    /* header and every AUX record parsed */
    RDBINFO_SHORT = 1, /* buf ends inside them: more bytes needed */
    RDBINFO_BAD = -1,  /* not an RDB header, or an AUX record that cannot be */
};

/* Parses the header and AUX records at the start of buf[0..len). err says why on BAD. */
enum rdbinfo_result rdbinfo_parse(const void *buf, size_t len, struct rdbinfo *out, char *err,
                                  size_t errlen);

/* The same for the first RDBINFO_READ_MAX bytes of the file at path (BAD also when it cannot
 * be read; SHORT if the AUX records go on past that). */
enum rdbinfo_result rdbinfo_read_file(const char *path, struct rdbinfo *out, char *err,
                                      size_t errlen);

#endif
