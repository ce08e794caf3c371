/*
 * writer: the disk log's background writer (store_start_writer), two threads in a pipeline
 * behind the caller's (the loop thread's) queue of jobs:
 *   - prep: takes jobs in batches of consecutive writes to one file (at most WRITER_BATCH),
 *     checksums each batch (CRC-32C, one index record per batch) and copies its whole pages
 *     into bounce buffers for O_DIRECT;
 *   - io: does every write and fsync, in order, and completes the jobs; a failure is kept
 *     (with its text, from strerror_r on this thread) and later jobs are only handed back.
 * Completed jobs' tokens go back to their owner through done(ctx, token) on the loop thread
 * (writer_collect, once the eventfd writer_notify_fd says so; writer_enqueue, when completed
 * jobs hold the room it needs).
 * Owns its two threads, the job and step rings, its bounce buffers and its eventfd. Shares
 * with its threads only what its mutex guards and the descriptors its jobs name (owned by the
 * store, kept open until their job completed). Must not touch anything else of the store (its
 * segment table is the loop thread's alone), log, or use libevent. The only file in proxy/
 * that includes <pthread.h>. Each function says which thread runs it: loop, prep or io.
 *
 * Where the loop thread blocks (nothing else it calls here waits for more than the mutex,
 * which the threads hold only to move positions, never across a copy, a checksum or I/O):
 *   - writer_enqueue, when the queue is full (WRITER_JOBS jobs, or WRITER_BYTES bytes
 *     queued): until the I/O thread completes its current batch (at most WRITER_BATCH jobs,
 *     at most WRITER_BYTES bytes and one fsync): the disk is slower than the stream then;
 *   - writer_wait_idle (in store_write_meta, store_trim, store_reset, store_restart and when a
 *     check cuts segments): until every queued job ran: at most WRITER_BYTES bytes written
 *     plus the fsyncs queued with them (one per segment completed, one per store_sync).
 * Neither has a timeout: a device that stalls stalls the loop thread for as long.
 */
#ifndef CASCADE_WRITER_H
#define CASCADE_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define WRITER_JOBS  1024       /* jobs queued at most (a power of two) */
#define WRITER_BYTES (16 << 20) /* bytes the queued writes may pin, at most */
#define WRITER_BATCH 64         /* writes merged into one writev and one index record */

/* One record of a segment's index file (the store's on-disk format): one per write. */
struct index_record {
    int64_t start; /* stream offset of the first byte of this write */
    uint32_t len;  /* bytes written */
    uint32_t crc;  /* CRC-32C of those bytes */
};

enum wjob_kind {
    WJOB_WRITE,      /* write buf to the segment, one index record per batch */
    WJOB_SYNC,       /* fsync the segment's data and index */
    WJOB_SYNC_CLOSE, /* the same, then close the index (and dfd): the segment is complete */
};

/* One queued piece of work. */
struct wjob {
    enum wjob_kind kind;
    int fd, idx_fd;  /* the segment's files (fd opened O_APPEND) */
    int dfd;         /* its data file opened O_DIRECT, or -1 */
    off_t pos;       /* where buf[0] goes in the data file */
    int64_t start;   /* stream offset of buf[0] */
    const void *buf; /* the caller's bytes, unchanged until the job is handed back */
    size_t len;
    void *token; /* handed back through done, if not NULL */
};

struct writer;

/* thread: loop. Starts both threads; durable: the last stream byte already written. NULL
 * with a message if they cannot start. */
struct writer *writer_start(int64_t durable, void (*done)(void *ctx, void *token), void *ctx,
                            char *err, size_t errlen);
/* thread: loop. Lets the threads finish every queued job, joins them, hands back the last
 * tokens and frees w. Blocks as writer_wait_idle. */
void writer_stop(struct writer *w);
/* thread: loop. Readable once jobs completed: then call writer_collect. */
int writer_notify_fd(const struct writer *w);

/* thread: loop. Queues a job; blocks while the queue is full (see above). Never fails: a
 * failure shows in writer_failed / writer_collect. */
void writer_enqueue(struct writer *w, const struct wjob *job);
/* thread: loop. Blocks until every queued job ran (see above). */
void writer_wait_idle(struct writer *w);
/* thread: loop. Hands back completed jobs' tokens; -1 (once) with the failure's text. */
int writer_collect(struct writer *w, char *err, size_t errlen);

/* thread: loop. Nothing queued or running, and no failure. */
bool writer_idle(struct writer *w);
/* thread: loop. -1 with the failure's text if a write failed (until writer_reset). */
int writer_failed(struct writer *w, char *err, size_t errlen);
/* thread: loop. Forgets a failure; the last stream byte written is now `durable`. */
void writer_reset(struct writer *w, int64_t durable);
/* thread: loop. The last stream byte written to its segment; _set: the loop thread wrote or
 * skipped bytes itself (nothing queued then). */
int64_t writer_durable(struct writer *w);
void writer_set_durable(struct writer *w, int64_t durable);
/* thread: any. True once a direct write was refused (EINVAL): page cache from then on. */
bool writer_direct_off(const struct writer *w);

/* thread: any. Helpers the store's own writes share: all of the bytes or -1 (errno). */
int writer_writev_all(int fd, struct iovec *iov, int n);
int writer_write_all(int fd, const void *buf, size_t len);
int writer_pio_all(int fd, void *buf, size_t len, off_t pos, bool write); /* pread/pwrite */
/* thread: any. Of a run of len bytes at position pos < to of a sequence, the part within
 * [from, to), as [*a, *b) in the run; false if none. */
bool writer_clip_run(size_t pos, size_t len, size_t from, size_t to, size_t *a, size_t *b);

#endif
