/*
 * bench_util: what the benchmark tools share. Sockets, clocks, a growable input buffer, a
 * RESP command reader (multibulk and inline) and writer, the replica-side handshake of the
 * replication protocol as a state machine over a buffer, and a JSON line writer.
 * Benchmark tools only (tests/bench/): nothing here is part of the relay.
 */
#ifndef CASCADE_BENCH_UTIL_H
#define CASCADE_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_MAX_ARGS 16

/* Clocks. */
int64_t bench_now_ns(void);
double bench_cpu_seconds(void); /* this process: user + system */

/* Fatal error: message to stderr, exit 2. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Sockets. All returned descriptors are non-blocking, CLOEXEC, TCP_NODELAY. */
int bench_set_nonblock(int fd);
int bench_connect(const char *host, int port); /* blocking connect; -1 on failure */
int bench_listen(const char *host, int port);  /* -1 on failure */
/* Write all of it, waiting (poll) up to timeout_ms while the socket is full: for small
 * protocol lines only. 0 or -1. */
int bench_write_all(int fd, const void *data, size_t len, int timeout_ms);
/* Signals as a descriptor: SIGINT, SIGTERM, SIGUSR1, SIGUSR2 blocked and returned by a
 * signalfd (SIGPIPE ignored). */
int bench_signalfd(void);
/* Reads every pending signal from a bench_signalfd descriptor: SIGUSR1/SIGUSR2 go to user(signo)
 * one by one; true if SIGINT or SIGTERM came (stop). */
bool bench_signals_read(int sfd, void (*user)(int signo));
/* A periodic timerfd. */
int bench_timerfd(int64_t period_ms);

/* A growable byte buffer: data[off, len) is unread. */
struct bench_buf {
    char *data;
    size_t off, len, cap;
};
void bench_buf_reserve(struct bench_buf *b, size_t more); /* room for `more` at data+len */
void bench_buf_append(struct bench_buf *b, const void *data, size_t n);
void bench_buf_consume(struct bench_buf *b, size_t n);
size_t bench_buf_avail(const struct bench_buf *b);
void bench_buf_free(struct bench_buf *b);
/* Read what the socket has (up to max bytes): >0 read, 0 EOF, -1 error, -2 would block. */
ssize_t bench_buf_read(struct bench_buf *b, int fd, size_t max);

/* A parsed command: argv[i] points into the buffer, valid until it is consumed. */
struct bench_cmd {
    int argc;
    const char *argv[BENCH_MAX_ARGS];
    size_t argl[BENCH_MAX_ARGS];
};
/* Parse one command at p[0..n): 1 with *used set, 0 incomplete, -1 protocol error. A bare
 * "\n" or "\r\n" (a replica's keepalive) parses as argc 0. */
int bench_cmd_parse(const char *p, size_t n, struct bench_cmd *cmd, size_t *used);
bool bench_arg_is(const struct bench_cmd *cmd, int i, const char *s);
/* RESP multibulk of argc strings into out (cap bytes); returns the length, 0 if too long. */
size_t bench_cmd_format(char *out, size_t cap, int argc, const char *const *argv);

/* One "\r\n"-terminated line at p[0..n): its length without CRLF, with *used; -1 if none. */
ssize_t bench_line(const char *p, size_t n, size_t *used);

/* The replica side of the handshake, fed with what the socket read:
 * PING, REPLCONF listening-port, REPLCONF capa eof capa psync2, PSYNC ? -1, then the RDB
 * ($len or $EOF:<mark>), then the stream. */
enum hs_state {
    HS_PING,     /* PING sent, waiting for +PONG */
    HS_PORT,     /* REPLCONF listening-port sent */
    HS_CAPA,     /* REPLCONF capa sent */
    HS_PSYNC,    /* PSYNC sent, waiting for +FULLRESYNC / +CONTINUE */
    HS_PREAMBLE, /* waiting for $len or $EOF: (newlines are keepalives) */
    HS_RDB_LEN,  /* reading a sized RDB */
    HS_RDB_EOF,  /* reading an EOF-marked RDB */
    HS_STREAM,   /* online: everything after is the stream */
    HS_FAILED,   /* the upstream refused (err says why): retry later */
};
struct hs {
    enum hs_state state;
    int listening_port;
    char replid[41];
    int64_t offset;    /* the offset of +FULLRESYNC (stream bytes follow it) */
    int64_t rdb_left;  /* HS_RDB_LEN: bytes still to come */
    int64_t rdb_bytes; /* RDB payload bytes seen (an EOF RDB: without the mark) */
    bool eof_format;   /* the RDB came in the $EOF: format */
    char mark[40];     /* its mark */
    unsigned char tail[40];
    size_t tail_len;
    char err[160];
};
/* Start the handshake on fd (sends PING). 0 or -1. */
int hs_start(struct hs *h, int fd, int listening_port);
/* Consume what `in` holds; sends the next commands on fd. RDB payload bytes are handed to
 * rdb_cb (may be NULL); an EOF-marked RDB's mark is handed on too and its length then taken
 * off rdb_bytes: rdb_done_cb(ctx, eof_format) is called once the RDB is complete (the caller
 * removes the mark's 40 bytes from what it kept if eof_format). Returns the state; in
 * HS_STREAM what is left in `in` is stream. -1 on a socket error. */
int hs_feed(struct hs *h, int fd, struct bench_buf *in,
            void (*rdb_cb)(void *ctx, const char *data, size_t n),
            void (*rdb_done_cb)(void *ctx, bool eof_format), void *ctx);
/* How many RDB bytes may be skipped at once without parsing (HS_RDB_LEN only). */
int64_t hs_rdb_skippable(const struct hs *h);
/* Account for RDB bytes skipped by the caller (recv MSG_TRUNC). */
void hs_rdb_skipped(struct hs *h, int64_t n, void (*rdb_done_cb)(void *ctx, bool eof_format),
                    void *ctx);

/* "REPLCONF ACK <offset>" to fd. */
int bench_send_ack(int fd, int64_t offset);

/* A JSON line being built. */
struct bench_json {
    struct bench_buf b;
    bool need_comma;
};
void json_begin(struct bench_json *j);
void json_int(struct bench_json *j, const char *key, int64_t v);
void json_num(struct bench_json *j, const char *key, double v);
void json_str(struct bench_json *j, const char *key, const char *v);
void json_int_array(struct bench_json *j, const char *key, const int64_t *v, size_t n);
/* Close the object, write it with a newline to stdout, flush. */
void json_end(struct bench_json *j);

/* Parse "N", "Nk", "Nm", "Ng" (1000-based) or die naming the option. */
int64_t bench_parse_count(const char *opt, const char *s);

#endif
