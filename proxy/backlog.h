/*
 * backlog: the in-memory history of the replication stream, as refcounted fixed-size blocks
 * indexed by offset. Append-only; trimmed from the head to a byte limit.
 * Owns its blocks; readers that keep pointers into a block (zero-copy fan-out) take a reference
 * and a trimmed block lives until its last reference is dropped. No I/O, no logging.
 *
 * Offsets follow Redis: the stream's first byte has offset 1; `end` is the offset of the last
 * byte held (master_repl_offset) and `start` that of the first (repl_backlog_first_byte_offset).
 * An empty backlog has start == end + 1.
 */
#ifndef CASCADE_BACKLOG_H
#define CASCADE_BACKLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct backlog_block {
    int64_t start; /* stream offset of data[0] */
    size_t len;    /* bytes written (all blocks but the tail are full) */
    int refs;      /* the backlog's own reference plus one per reader */
    bool detached; /* trimmed from the backlog; freed at refs == 0 */
    char data[];   /* block_size bytes */
};

struct backlog;

/* A backlog of blocks of block_size bytes keeping at least limit_bytes of history. */
struct backlog *backlog_new(size_t block_size, size_t limit_bytes);
void backlog_free(struct backlog *b);

/* Forget everything: the next byte appended has offset `next`. */
void backlog_reset(struct backlog *b, int64_t next);

/* Append bytes; trims the head past the limit (never the last block). */
void backlog_append(struct backlog *b, const void *data, size_t len);

/*
 * Room for up to max bytes after the end, as at most n iovecs in order: the last block's free
 * part, then fresh blocks lent out until they are filled. Bytes read into them are appended by
 * passing backlog_append exactly those addresses, in order, and are then not copied. The room
 * stays valid until anything else is appended or the backlog is reset. Returns the count.
 */
int backlog_reserve(struct backlog *b, size_t max, struct iovec *iov, int n);

/* Bytes the next append can put in one block: what the last block has left, or a whole new
 * block. Appending at most this much fills exactly one block, which the trim keeps. */
size_t backlog_tail_room(const struct backlog *b);

void backlog_set_limit(struct backlog *b, size_t limit_bytes);

int64_t backlog_start(const struct backlog *b);  /* first byte held */
int64_t backlog_end(const struct backlog *b);    /* last byte held (0 before any history) */
size_t backlog_histlen(const struct backlog *b); /* end - start + 1 */
size_t backlog_memory(const struct backlog *b);  /* bytes of blocks held, spares included */
size_t backlog_limit(const struct backlog *b);

/* True if a reader may continue at `offset`: start <= offset <= end + 1. */
bool backlog_can_serve(const struct backlog *b, int64_t offset);

/*
 * The contiguous bytes held from `offset` on, within one block: returns their count (0 when
 * offset == end + 1 or it is not held), with *data and *block set. A caller keeping *data past
 * the next append/trim must hold a reference on *block.
 */
size_t backlog_peek(const struct backlog *b, int64_t offset, const char **data,
                    struct backlog_block **block);

/* Copy len bytes from offset into out (for tests and disk writers). Returns 0 or -1. */
int backlog_copy(const struct backlog *b, int64_t offset, void *out, size_t len);

void backlog_block_ref(struct backlog_block *blk);
void backlog_block_unref(struct backlog_block *blk);

#endif
