/*
 * writer: see writer.h. The loop thread enqueues jobs at `end`. The preparing thread takes them
 * from `taken` on, merges them into batches, checksums them and copies their whole pages into
 * bounce buffers, and hands the I/O thread a list of steps (wops). The I/O thread does every
 * write, in order, and completes jobs from `done` on; the loop thread hands back [first,
 * done). So a batch's copy and checksum run while the device writes the one before (the
 * device's time is most of a batch's). Everything in struct writer below `mu` is guarded by
 * it, but the job slots: [first, end) is written by the loop thread before `end` moves and
 * only read by the threads after, and the bounce buffers belong to whoever the positions say.
 */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"

/* Direct I/O (O_DIRECT) of the batches: whole pages of at least DIRECT_MIN bytes go from a
 * bounce buffer of DIRECT_BOUNCE bytes straight to the device. */
#define DIRECT_ALIGN  4096
#define DIRECT_MIN    (64 << 10)
#define DIRECT_BOUNCE (2 << 20)

#define WOP_RING 32 /* a power of two */
#define NBOUNCE  2  /* bounce buffers: one filled while the other is written */

enum wop_kind {
    WOP_CACHED, /* bytes [a, b) of the batch through fd, from the jobs' buffers */
    WOP_DIRECT, /* bytes [a, b) of the batch through dfd, from bounce buffer `bounce` */
    WOP_END,    /* the jobs [from, to) are done: write rec, or fsync for sync jobs */
};

struct wop {
    enum wop_kind kind;
    uint64_t from, to; /* the batch's jobs */
    size_t a, b;
    int bounce;
    size_t total;            /* WOP_END: the batch's bytes */
    struct index_record rec; /* WOP_END of a write batch */
};

struct writer {
    pthread_t prep_thread, io_thread;
    bool io_started;
    void (*done_cb)(void *ctx, void *token); /* the loop thread's */
    void *done_ctx;
    pthread_mutex_t mu;
    pthread_cond_t work;    /* jobs arrived, or stop: for the preparing thread */
    pthread_cond_t room;    /* jobs completed: for the loop thread */
    pthread_cond_t io_work; /* steps arrived, or nothing more will: for the I/O thread */
    pthread_cond_t io_room; /* a step ran, a bounce buffer came free: for the preparing one */
    int notify_fd;          /* eventfd: readable once jobs completed */
    struct wjob jobs[WRITER_JOBS];
    uint64_t first, taken, done, end; /* job ring positions, monotonic */
    size_t queued_bytes;              /* bytes of the jobs in [done, end) */
    struct wop wops[WOP_RING];
    uint64_t wop_head, wop_tail;          /* step ring positions, monotonic */
    uint64_t bounce_filled, bounce_freed; /* bounce buffers used in turn */
    int64_t durable;                      /* last stream byte written to its segment */
    bool stop;                            /* for the preparing thread */
    bool prepared_all;                    /* it stopped: the I/O thread ends when idle */
    bool failed;
    char error[256];
    char *bounce[NBOUNCE]; /* DIRECT_BOUNCE bytes each (bounce_alloc), allocated on first use
                              by the preparing thread */
    bool direct_off;       /* direct I/O was refused: page cache only from then on (atomic: read by
                              writer_direct_off and the preparing thread, set by the I/O thread) */
};

/* thread: any. err gets "what: <errno's text>"; strerror_r, never strerror (not safe off the
 * loop thread). */
static void errf_errno(char *err, size_t errlen, const char *what, int e)
{
    char buf[128];
    /* _GNU_SOURCE (meson.build): the GNU strerror_r, which returns the text. */
    snprintf(err, errlen, "%s: %s", what, strerror_r(e, buf, sizeof(buf)));
}

/* thread: any */
int writer_writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t got = writev(fd, iov, n);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)got >= iov->iov_len) {
            got -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + got;
            iov->iov_len -= (size_t)got;
        }
    }
    return 0;
}

/* thread: any */
int writer_write_all(int fd, const void *buf, size_t len)
{
    struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
    return writer_writev_all(fd, &v, 1);
}

/* thread: any */
int writer_pio_all(int fd, void *buf, size_t len, off_t pos, bool write)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = write ? pwrite(fd, p, len, pos) : pread(fd, p, len, pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
        pos += n;
    }
    return 0;
}

/* thread: any */
bool writer_clip_run(size_t pos, size_t len, size_t from, size_t to, size_t *a, size_t *b)
{
    *a = from > pos ? from - pos : 0;
    *b = to - pos < len ? to - pos : len;
    return *a < *b;
}

/* thread: any (a slot of [taken, end) or [first, done), as the positions say) */
static const struct wjob *job_at(const struct writer *w, uint64_t k)
{
    return &w->jobs[k & (WRITER_JOBS - 1)];
}

/* thread: prep, io. Bytes [a, b) of the batch of jobs [from, to), as iovecs into the jobs' buffers
 * (which stay put until the jobs are done); returns their count. */
static int batch_slice(const struct writer *w, uint64_t from, uint64_t to, size_t a, size_t b,
                       struct iovec *out)
{
    int k = 0;
    size_t pos = 0;
    for (uint64_t i = from; i < to && pos < b; pos += job_at(w, i)->len, i++) {
        const struct wjob *j = job_at(w, i);
        size_t x, y;
        if (writer_clip_run(pos, j->len, a, b, &x, &y))
            out[k++] = (struct iovec){.iov_base = (char *)j->buf + x, .iov_len = y - x};
    }
    return k;
}

/* thread: prep */
static uint32_t crc_iov(uint32_t crc, const struct iovec *iov, int n)
{
    for (int i = 0; i < n; i++)
        crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
    return crc;
}

/* thread: prep. A bounce buffer: one huge page where the kernel gives one (on this VM's virtio disk
 * a 2 MB write from 4 KB pages is split into three requests: 254 segments at most), else pages. */
static char *bounce_alloc(void)
{
    char *p = aligned_alloc(DIRECT_BOUNCE, DIRECT_BOUNCE);
    if (!p)
        abort();
#ifdef MADV_HUGEPAGE
    (void)madvise(p, DIRECT_BOUNCE, MADV_HUGEPAGE); /* advice: refused is fine */
#endif
    return p;
}

/* thread: prep. Hands the I/O thread a step; waits while its ring is full. Called with mu held. */
static void push_wop(struct writer *w, const struct wop *op)
{
    while (w->wop_tail - w->wop_head == WOP_RING)
        pthread_cond_wait(&w->io_room, &w->mu);
    w->wops[w->wop_tail++ & (WOP_RING - 1)] = *op;
    pthread_cond_signal(&w->io_work);
}

/* thread: prep. The next bounce buffer, once the I/O thread is done with it. Called with mu held.
 */
static int take_bounce(struct writer *w)
{
    while (w->bounce_filled - w->bounce_freed == NBOUNCE)
        pthread_cond_wait(&w->io_room, &w->mu);
    return (int)(w->bounce_filled++ % NBOUNCE);
}

/*
 * thread: prep. Turns the batch of jobs [from, to) (total bytes; a file position pos of the
 * segment's data file, where it holds pos bytes) into steps. The whole pages go through dfd from
 * the bounce buffers, past the page cache: copying a stream into fresh page-cache pages costs the
 * CPU more than all the relay's other work per byte (BENCHMARKS.md). The partial pages at either
 * end go through fd (O_APPEND), so the file never holds more than the stream and the page that the
 * next batch completes stays in the cache. The checksum is taken in stream order on the way.
 * Called with mu held; drops it while copying.
 */
static void prepare_batch(struct writer *w, uint64_t from, uint64_t to, size_t total, bool skip)
{
    const struct wjob *j0 = job_at(w, from);
    struct wop end = {.kind = WOP_END, .from = from, .to = to, .total = total};
    if (j0->kind != WJOB_WRITE || skip) {
        push_wop(w, &end); /* after a failure, jobs only go back to their owner */
        return;
    }
    struct iovec part[WRITER_BATCH];
    off_t pos = j0->pos;
    off_t a = (pos + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
    off_t b = (pos + (off_t)total) / DIRECT_ALIGN * DIRECT_ALIGN;
    uint32_t crc = 0;
    if (j0->dfd < 0 || __atomic_load_n(&w->direct_off, __ATOMIC_RELAXED) || b - a < DIRECT_MIN) {
        a = b = pos + (off_t)total; /* all of it through the page cache */
    }
    size_t head = (size_t)(a - pos), mid_end = (size_t)(b - pos);
    if (head > 0) {
        crc = crc_iov(crc, part, batch_slice(w, from, to, 0, head, part));
        push_wop(w, &(struct wop){.kind = WOP_CACHED, .from = from, .to = to, .b = head});
    }
    for (size_t at = head; at < mid_end;) {
        size_t len = mid_end - at < DIRECT_BOUNCE ? mid_end - at : DIRECT_BOUNCE;
        int k = take_bounce(w);
        pthread_mutex_unlock(&w->mu);
        if (!w->bounce[k])
            w->bounce[k] = bounce_alloc();
        char *o = w->bounce[k];
        int n = batch_slice(w, from, to, at, at + len, part);
        for (int i = 0; i < n; o += part[i].iov_len, i++)
            memcpy(o, part[i].iov_base, part[i].iov_len);
        crc = crc32c(crc, w->bounce[k], len); /* still in the cache */
        pthread_mutex_lock(&w->mu);
        push_wop(
            w,
            &(struct wop){
                .kind = WOP_DIRECT, .from = from, .to = to, .a = at, .b = at + len, .bounce = k});
        at += len;
    }
    if (mid_end < total) {
        crc = crc_iov(crc, part, batch_slice(w, from, to, mid_end, total, part));
        struct wop tail = {.kind = WOP_CACHED, .from = from, .to = to, .a = mid_end, .b = total};
        push_wop(w, &tail);
    }
    /* One index record for the batch, after its data: a record never points at lost bytes. */
    end.rec = (struct index_record){.start = j0->start, .len = (uint32_t)total, .crc = crc};
    push_wop(w, &end);
}

/* thread: prep. The preparing thread: takes jobs in batches of consecutive writes to one file. */
static void *writer_prepare_main(void *arg)
{
    struct writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->taken == w->end && !w->stop)
            pthread_cond_wait(&w->work, &w->mu);
        if (w->taken == w->end)
            break; /* stopping, and nothing left */
        uint64_t from = w->taken, to = from + 1;
        const struct wjob *j0 = job_at(w, from);
        size_t total = j0->len;
        while (j0->kind == WJOB_WRITE && to < w->end && to - from < WRITER_BATCH) {
            const struct wjob *j = job_at(w, to);
            if (j->kind != WJOB_WRITE || j->fd != j0->fd ||
                j->start != j0->start + (int64_t)total || total + j->len > UINT32_MAX)
                break;
            total += j->len;
            to++;
        }
        w->taken = to;
        prepare_batch(w, from, to, total, w->failed);
    }
    w->prepared_all = true;
    pthread_cond_signal(&w->io_work);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* thread: io. Bytes [a, b) of a batch that dfd refused (EINVAL: a file system without direct I/O,
 * or a larger alignment) from buf: through fd from wherever the device stopped. */
static int write_refused(int fd, off_t pos, size_t a, size_t b, const char *buf)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    size_t at = (size_t)(st.st_size - pos);
    return at < b ? writer_write_all(fd, buf + (at - a), b - at) : 0;
}

/* thread: io. Runs one step; why gets the error, if any. */
static void run_wop(struct writer *w, const struct wop *op, char *why, size_t whylen)
{
    const struct wjob *j0 = job_at(w, op->from);
    struct iovec part[WRITER_BATCH];
    switch (op->kind) {
    case WOP_CACHED:
        if (writer_writev_all(j0->fd, part, batch_slice(w, op->from, op->to, op->a, op->b, part)) !=
            0)
            errf_errno(why, whylen, "write segment", errno);
        return;
    case WOP_DIRECT: {
        const char *buf = w->bounce[op->bounce];
        int rc;
        if (__atomic_load_n(&w->direct_off, __ATOMIC_RELAXED)) {
            rc = writer_write_all(j0->fd, buf, op->b - op->a);
        } else if ((rc = writer_pio_all(j0->dfd, (void *)buf, op->b - op->a, j0->pos + (off_t)op->a,
                                        true)) != 0 &&
                   errno == EINVAL) {
            __atomic_store_n(&w->direct_off, true, __ATOMIC_RELAXED); /* page cache from now */
            rc = write_refused(j0->fd, j0->pos, op->a, op->b, buf);
        }
        if (rc != 0)
            errf_errno(why, whylen, "write segment", errno);
        return;
    }
    case WOP_END:
        if (j0->kind == WJOB_WRITE) {
            if (writer_write_all(j0->idx_fd, &op->rec, sizeof(op->rec)) != 0)
                errf_errno(why, whylen, "write segment index", errno);
            return;
        }
        if (fsync(j0->fd) != 0 || fsync(j0->idx_fd) != 0)
            errf_errno(why, whylen, "fsync segment", errno);
        if (j0->kind == WJOB_SYNC_CLOSE) {
            close(j0->idx_fd);
            if (j0->dfd >= 0)
                close(j0->dfd);
        }
        return;
    }
}

/* thread: io. The I/O thread: runs the steps in order and completes the jobs. */
static void *writer_io_main(void *arg)
{
    struct writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->wop_head == w->wop_tail && !w->prepared_all)
            pthread_cond_wait(&w->io_work, &w->mu);
        if (w->wop_head == w->wop_tail)
            break;
        struct wop op = w->wops[w->wop_head & (WOP_RING - 1)];
        bool skip = w->failed;
        pthread_mutex_unlock(&w->mu);
        char why[sizeof(w->error)] = "";
        if (!skip)
            run_wop(w, &op, why, sizeof(why));
        pthread_mutex_lock(&w->mu);
        w->wop_head++;
        w->bounce_freed += op.kind == WOP_DIRECT;
        pthread_cond_signal(&w->io_room);
        if (why[0] && !w->failed) {
            w->failed = true;
            snprintf(w->error, sizeof(w->error), "%s", why);
        }
        if (op.kind != WOP_END)
            continue;
        const struct wjob *last = job_at(w, op.to - 1);
        if (!w->failed && last->kind == WJOB_WRITE)
            w->durable = last->start + (int64_t)last->len - 1;
        w->queued_bytes -= last->kind == WJOB_WRITE ? op.total : 0;
        w->done = op.to;
        pthread_cond_broadcast(&w->room);
        pthread_mutex_unlock(&w->mu);
        uint64_t one = 1;
        if (write(w->notify_fd, &one, sizeof(one)) < 0) {
            /* the counter is far from full: nothing to do */
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* thread: loop. Hands the tokens of completed jobs back to their owner, oldest first. */
static void hand_back(struct writer *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t done = w->done;
    pthread_mutex_unlock(&w->mu);
    /* [first, done) is the loop thread's alone now. */
    for (; w->first < done; w->first++) {
        const struct wjob *j = job_at(w, w->first);
        if (j->kind == WJOB_WRITE && j->token && w->done_cb)
            w->done_cb(w->done_ctx, j->token);
    }
}

/* thread: loop. Blocks until every queued job ran (see writer.h: how long). */
void writer_wait_idle(struct writer *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->done != w->end)
        pthread_cond_wait(&w->room, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* thread: loop. Blocks while the queue is full (see writer.h: how long). */
void writer_enqueue(struct writer *w, const struct wjob *job)
{
    for (;;) {
        pthread_mutex_lock(&w->mu);
        bool full = w->end - w->first == WRITER_JOBS ||
                    (w->queued_bytes > 0 && w->queued_bytes + job->len > WRITER_BYTES);
        if (!full)
            break;
        if (w->done > w->first) { /* completed jobs hold the room: hand them back */
            pthread_mutex_unlock(&w->mu);
            hand_back(w);
            continue;
        }
        pthread_cond_wait(&w->room, &w->mu); /* the disk is slower than the stream */
        pthread_mutex_unlock(&w->mu);
    }
    w->jobs[w->end & (WRITER_JOBS - 1)] = *job;
    w->end++;
    w->queued_bytes += job->kind == WJOB_WRITE ? job->len : 0;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
}

/* thread: loop (the threads are gone or never started). */
static void writer_free(struct writer *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->room);
    pthread_cond_destroy(&w->io_work);
    pthread_cond_destroy(&w->io_room);
    close(w->notify_fd);
    for (int i = 0; i < NBOUNCE; i++)
        free(w->bounce[i]);
    free(w);
}

/* thread: loop. Lets the preparing thread finish what is queued and stop, then the I/O
 * thread. */
static void join_writer(struct writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->prep_thread, NULL);
    if (w->io_started)
        pthread_join(w->io_thread, NULL);
}

/* thread: loop */
void writer_stop(struct writer *w)
{
    if (!w)
        return;
    join_writer(w);
    hand_back(w);
    writer_free(w);
}

/* thread: loop */
static struct writer *writer_alloc(int64_t durable, char *err, size_t errlen)
{
    struct writer *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->notify_fd < 0) {
        errf_errno(err, errlen, "eventfd", errno);
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->room, NULL);
    pthread_cond_init(&w->io_work, NULL);
    pthread_cond_init(&w->io_room, NULL);
    w->durable = durable;
    return w;
}

/* thread: loop */
struct writer *writer_start(int64_t durable, void (*done)(void *ctx, void *token), void *ctx,
                            char *err, size_t errlen)
{
    struct writer *w = writer_alloc(durable, err, errlen);
    if (!w)
        return NULL;
    w->done_cb = done;
    w->done_ctx = ctx;
    int rc = pthread_create(&w->prep_thread, NULL, writer_prepare_main, w);
    if (rc != 0) {
        errf_errno(err, errlen, "cannot start the log writer", rc);
        writer_free(w);
        return NULL;
    }
    rc = pthread_create(&w->io_thread, NULL, writer_io_main, w);
    if (rc != 0) {
        errf_errno(err, errlen, "cannot start the log writer", rc);
        join_writer(w); /* nothing queued: it stops at once */
        writer_free(w);
        return NULL;
    }
    w->io_started = true;
    return w;
}

/* thread: loop */
int writer_notify_fd(const struct writer *w)
{
    return w->notify_fd;
}

/* thread: loop */
int writer_collect(struct writer *w, char *err, size_t errlen)
{
    uint64_t n;
    if (read(w->notify_fd, &n, sizeof(n)) < 0) {
        /* EAGAIN: nothing new said; one read empties the counter, which only says "look" */
    }
    hand_back(w);
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    if (w->failed && w->error[0]) {
        snprintf(err, errlen, "%s", w->error);
        w->error[0] = '\0'; /* said once */
        rc = -1;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* thread: any */
bool writer_direct_off(const struct writer *w)
{
    return __atomic_load_n(&w->direct_off, __ATOMIC_RELAXED);
}

/* thread: loop */
int64_t writer_durable(struct writer *w)
{
    pthread_mutex_lock(&w->mu);
    int64_t d = w->durable;
    pthread_mutex_unlock(&w->mu);
    return d;
}

/* thread: loop */
void writer_set_durable(struct writer *w, int64_t durable)
{
    pthread_mutex_lock(&w->mu);
    w->durable = durable;
    pthread_mutex_unlock(&w->mu);
}

/* thread: loop */
void writer_reset(struct writer *w, int64_t durable)
{
    pthread_mutex_lock(&w->mu);
    w->failed = false; /* a new history, or a restart, gets a fresh log */
    w->error[0] = '\0';
    w->durable = durable;
    pthread_mutex_unlock(&w->mu);
}

/* thread: loop */
bool writer_idle(struct writer *w)
{
    pthread_mutex_lock(&w->mu);
    bool idle = w->done == w->end && !w->failed;
    pthread_mutex_unlock(&w->mu);
    return idle;
}

/* thread: loop */
int writer_failed(struct writer *w, char *err, size_t errlen)
{
    pthread_mutex_lock(&w->mu);
    bool failed = w->failed;
    if (failed)
        snprintf(err, errlen, "%s", w->error[0] ? w->error : "the log writer failed");
    pthread_mutex_unlock(&w->mu);
    return failed ? -1 : 0;
}
