/*
 * resp: RESP framing as pure functions over byte buffers.
 *   - the command reader for downstream clients (multibulk and inline), with limits;
 *   - an incremental scanner of the replication stream that finds REPLCONF GETACK;
 *   - handshake reply lines (+FULLRESYNC, +CONTINUE) and the RDB preamble;
 *   - the EOF-mark scanner of diskless ("$EOF:<mark>") RDB transfers.
 * No allocation, no I/O, no logging: every function returns a status and an error text.
 */
#ifndef CASCADE_RESP_H
#define CASCADE_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RESP_MAX_ARGC    64 /* the relay has no command taking more arguments */
#define RESP_ERR_LEN     128
#define RESP_REPLID_LEN  40 /* replication ids are 40 hex characters */
#define RESP_RUN_ID_LEN  40 /* and so are run ids */
#define RESP_EOFMARK_LEN 40 /* diskless RDB delimiter */
/* The largest stream offset taken from a peer: 2^62 bytes is 146 years at 1 GB/s, and any
 * offset below it leaves room for the arithmetic done on it. Larger ones are lies. */
#define RESP_MAX_OFFSET ((int64_t)1 << 62)
/* Limits of what a master can send in its stream: Redis refuses a multibulk count over
 * INT_MAX from anyone; no value is bigger than a server's memory (1 TiB here). */
#define RESP_STREAM_MAX_ARGC INT32_MAX
#define RESP_STREAM_MAX_BULK ((int64_t)1 << 40)

struct resp_limits {
    size_t max_argc;         /* multibulk count, at most RESP_MAX_ARGC */
    size_t max_bulk_bytes;   /* one argument */
    size_t max_inline_bytes; /* one inline command line, and one header line */
    bool unauthenticated;    /* Redis' limits before AUTH: RESP_UNAUTH_MAX_ARGC arguments of
                                RESP_UNAUTH_MAX_BULK bytes at most */
};

#define RESP_UNAUTH_MAX_ARGC 10    /* Redis' multibulk length limit before AUTH */
#define RESP_UNAUTH_MAX_BULK 16384 /* Redis' bulk length limit before AUTH */

/* A parsed command. argv points into the caller's buffer: valid while it is. */
struct resp_command {
    size_t argc;
    const char *argv[RESP_MAX_ARGC];
    size_t argl[RESP_MAX_ARGC];
    bool inline_form; /* it came as an inline command line */
};

/*
 * Parse one command from buf[0..len).
 * Returns the bytes consumed (> 0) with cmd filled, 0 if more input is needed, or -1 on a
 * protocol error (err says what, in Redis' wording). A blank inline line yields argc == 0:
 * replicas send a bare "\n" while they load an RDB.
 */
ssize_t resp_parse_command(const char *buf, size_t len, const struct resp_limits *lim,
                           struct resp_command *cmd, char *err, size_t errlen);

/* True if argument i equals s, ASCII case-insensitively. */
bool resp_arg_is(const struct resp_command *cmd, size_t i, const char *s);

/* Parse argument i as a signed 64-bit decimal; -1 if it is not one. */
int resp_arg_int64(const struct resp_command *cmd, size_t i, int64_t *out);

/* Incremental framing of the replication stream (multibulk commands only). */
struct resp_stream {
    int state;         /* where in a command the scanner is */
    int64_t args_left; /* bulks still to come in this command */
    int64_t bulk_left; /* payload bytes (plus CRLF) still to skip in this bulk */
    int64_t argc;      /* arguments of the current command */
    int64_t argi;      /* index of the current argument */
    char line[32];     /* header line being collected ("*3", "$8") */
    size_t line_len;
    char head[2][16]; /* first two arguments, truncated, for GETACK detection */
    size_t head_len[2];
    ssize_t last_boundary; /* after a scan: end of the last whole command in the buffer
                              scanned (0 if it began at a boundary), -1 if none */
    int64_t commands;      /* whole commands scanned over the life of the scanner */
};

void resp_stream_init(struct resp_stream *s);

/*
 * Scan buf[0..len). Returns the number of bytes consumed: all of them, or fewer when a
 * "REPLCONF GETACK ..." command ended inside buf (then *getack is set and the return value is
 * the position just past it). Returns -1 on a framing error. Bytes are never copied.
 */
ssize_t resp_stream_scan(struct resp_stream *s, const char *buf, size_t len, bool *getack,
                         char *err, size_t errlen);

/* True while the scanner is between commands. */
bool resp_stream_at_boundary(const struct resp_stream *s);

/* "+FULLRESYNC <replid> <offset>" (without CRLF), 0 <= offset <= RESP_MAX_OFFSET. 0 or -1.
 * replid gets 40 chars + NUL. */
int resp_parse_fullresync(const char *line, size_t len, char replid[RESP_REPLID_LEN + 1],
                          int64_t *offset);

/* "+CONTINUE" or "+CONTINUE <replid>". 0 or -1; replid is "" when absent. */
int resp_parse_continue(const char *line, size_t len, char replid[RESP_REPLID_LEN + 1]);

/* RDB preamble line "$<len>" or "$EOF:<40 bytes>" (without CRLF). */
struct resp_rdb_preamble {
    bool eof_format;             /* diskless: delimited by mark */
    int64_t size;                /* payload bytes when !eof_format */
    char mark[RESP_EOFMARK_LEN]; /* delimiter when eof_format */
};
int resp_parse_rdb_preamble(const char *line, size_t len, struct resp_rdb_preamble *out, char *err,
                            size_t errlen);

/* Finds the EOF mark in a byte stream fed in arbitrary chunks. */
struct resp_eofmark {
    char mark[RESP_EOFMARK_LEN];
    char tail[RESP_EOFMARK_LEN]; /* last bytes seen, up to RESP_EOFMARK_LEN - 1 */
    size_t tail_len;
    bool found;
};

void resp_eofmark_init(struct resp_eofmark *m, const char mark[RESP_EOFMARK_LEN]);

/*
 * Feed buf[0..len). Returns the index in buf just past the end of the mark if it completes
 * inside this chunk (bytes after it are no longer RDB), or -1 if it has not been seen yet.
 * The mark itself may begin in an earlier chunk: the payload is everything fed before the
 * mark, i.e. total fed up to the returned index minus RESP_EOFMARK_LEN.
 */
ssize_t resp_eofmark_feed(struct resp_eofmark *m, const char *buf, size_t len);

/* n random lowercase hex digits from the kernel's CSPRNG (getrandom), then a NUL: fresh EOF
 * marks and run ids nobody can predict (a value equal to the mark would end a transfer early
 * at a stock replica). Aborts if the kernel has no randomness to give. */
void resp_random_hex(char *out, size_t n);

/* True if the replication id id[0..len) is ours (a NUL-terminated id of 40 characters), as
 * Redis' masterTryPartialResynchronization decides: same length, ASCII case-insensitively
 * equal. An id of another length never matches, not even on its first 40 characters. */
bool resp_replid_equal(const char *id, size_t len, const char *ours);

/* Writes a printable, escaped sample of buf (at most out_len - 1 chars) for log messages. */
void resp_escape(const char *buf, size_t len, char *out, size_t out_len);

#endif
