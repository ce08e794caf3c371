/*
 * replica: the downstream sessions. See replica.h.
 *
 * Output discipline: an online replica's output holds references into backlog blocks, refilled
 * from the write callback below a low watermark, so its memory is bounded by the refill window
 * and never by how far behind it is. While its RDB is in flight, the stream that arrives meanwhile
 * is pinned up to the output limit, as a Redis master buffers it. Past the limit, or once its
 * offset has left the backlog, the replica is dropped: the upstream read never waits for it.
 *
 * Nothing is ever written to a streaming replica but stream bytes (PROTOCOL.md: the stream
 * is never altered). Keepalive "\n" goes only to replicas still waiting for a snapshot.
 */
#include "replica.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "resp.h"

static void setup_bev(struct replica *r);

#define REFILL_WINDOW   (1 << 20) /* stream bytes queued per online replica at most */
#define REFILL_LOWMARK  (REFILL_WINDOW / 2)
#define MAX_INPUT_BYTES (64 * 1024) /* a replica sends only short REPLCONF ACKs */

struct replica_set {
    struct event_base *base; /* borrowed */
    struct backlog *backlog; /* borrowed */
    struct stats *stats;     /* borrowed */
    struct replica_limits lim;
    struct replica *head, *tail;      /* live sessions in attach order */
    struct replica *dead;             /* sessions to free (singly linked via next) */
    struct store *store;              /* borrowed; NULL without a disk log */
    struct ev_token_bucket_cfg *rate; /* RDB transfer rate limit, NULL for none */
    int64_t last_limits_ms;           /* last output-limit check */
    struct event *reaper;             /* frees dead sessions outside their callbacks */
    replica_end_fn on_end;            /* told of each session's end, or NULL */
    void *on_end_ctx;
    size_t count;
};

/* Redis' names where it has one; a replica waiting for its first ACK is "online" there too. */
static const char *const state_names[] = {"wait_bgsave", "send_bulk", "send_bulk",
                                          "online",      "online",    "closing"};

const char *replica_state_name(enum replica_state s)
{
    return s <= REPLICA_CLOSING ? state_names[s] : "?";
}

static void set_state(struct replica *r, enum replica_state s)
{
    if (r->state == s)
        return;
    log_debug("replica", r->hello.peer, "%s -> %s", replica_state_name(r->state),
              replica_state_name(s));
    r->state = s;
    r->state_since_ms = net_now_ms();
}

static void unlink_session(struct replica_set *set, struct replica *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        set->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        set->tail = r->prev;
    r->next = r->prev = NULL;
    set->count--;
}

/* Move r to the dead list; the reaper frees it once the current callback chain is over. */
static void bury(struct replica *r)
{
    if (r->dead)
        return;
    struct replica_set *set = r->set;
    unlink_session(set, r);
    r->dead = true;
    r->next = set->dead;
    set->dead = r;
    bufferevent_disable(r->bev, EV_READ | EV_WRITE);
    event_active(set->reaper, 0, 0);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct replica_set *set = arg;
    (void)fd;
    (void)what;
    while (set->dead) {
        struct replica *r = set->dead;
        set->dead = r->next;
        bufferevent_free(r->bev); /* drops its block references through their cleanups */
        if (r->rdb_fd >= 0)
            close(r->rdb_fd);
        free(r);
    }
}

static void end_session(struct replica *r, bool by_peer)
{
    if (r->set->on_end)
        r->set->on_end(r->set->on_end_ctx, r, by_peer);
    bury(r);
}

static void drop(struct replica *r, const char *why)
{
    if (r->dead)
        return;
    log_notice("replica", r->hello.peer, "disconnected: %s", why);
    end_session(r, false);
}

/* The replica closed the link (or it failed under it). */
static void lost(struct replica *r, const char *why)
{
    if (r->dead)
        return;
    log_notice("replica", r->hello.peer, "disconnected: %s", why);
    end_session(r, true);
}

void replica_set_on_end(struct replica_set *set, replica_end_fn fn, void *ctx)
{
    set->on_end = fn;
    set->on_end_ctx = ctx;
}

void replica_refuse(struct replica *r, const char *line)
{
    if (r->dead || r->state != REPLICA_WAIT_SNAPSHOT)
        return;
    evbuffer_add_printf(bufferevent_get_output(r->bev), "-%s\r\n", line);
    replica_close(r, "full sync refused");
}

void replica_close(struct replica *r, const char *why)
{
    if (r->dead || r->state == REPLICA_CLOSING)
        return;
    log_info("replica", r->hello.peer, "closing: %s", why);
    set_state(r, REPLICA_CLOSING);
    bufferevent_disable(r->bev, EV_READ);
    bufferevent_setwatermark(r->bev, EV_WRITE, 0, 0);
    if (replica_output_bytes(r) == 0)
        bury(r);
}

size_t replica_output_bytes(const struct replica *r)
{
    size_t framed = r->link ? wanlink_out_pending(r->link) : 0;
    return evbuffer_get_length(bufferevent_get_output(r->bev)) + framed;
}

/* The connection itself: below the framing filter of a cascade link. */
static struct bufferevent *socket_bev(const struct replica *r)
{
    return r->link ? wanlink_out_socket(r->link) : r->bev;
}

/* Stream bytes still in the output: it drains front to back and the stream is queued last. */
static int64_t stream_in_output(const struct replica *r)
{
    int64_t out = (int64_t)replica_output_bytes(r);
    return out < r->stream_queued ? out : r->stream_queued;
}

int64_t replica_lag_bytes(const struct replica *r)
{
    if (r->state != REPLICA_ONLINE && r->state != REPLICA_SEND_RDB)
        return 0;
    int64_t unqueued = backlog_end(r->set->backlog) + 1 - r->next_offset;
    if (unqueued < 0)
        unqueued = 0;
    return unqueued + stream_in_output(r);
}

static void unref_block_cb(const void *data, size_t len, void *extra)
{
    (void)data;
    (void)len;
    backlog_block_unref(extra);
}

/* Queue up to `room` bytes from the log on disk (the offset has left memory). */
static int feed_from_disk(struct replica *r, int64_t room)
{
    int fd;
    off_t pos;
    int64_t avail;
    if (store_locate(r->set->store, r->next_offset, &fd, &pos, &avail) != 0)
        return -1;
    int64_t n = avail < room ? avail : room;
    int dupfd = dup(fd); /* evbuffer_add_file closes what it is given */
    if (dupfd < 0 || evbuffer_add_file(bufferevent_get_output(r->bev), dupfd, pos, n) != 0) {
        if (dupfd >= 0)
            close(dupfd);
        return -1;
    }
    r->next_offset += n;
    r->stream_queued += n;
    r->from_disk_bytes += n;
    r->set->stats->total_net_repl_output_bytes += n;
    return 0;
}

/* Queue stream bytes, by reference from memory or by file from disk, up to the window. */
static void feed(struct replica *r)
{
    if (r->dead || (r->state != REPLICA_ONLINE && r->state != REPLICA_SEND_RDB))
        return;
    struct replica_set *set = r->set;
    struct backlog *bl = set->backlog;
    struct store *st = set->store;
    /* Without a disk log, the stream arriving during an RDB transfer is pinned (up to the
     * output limit) as a Redis master buffers it; with one, it is read back later. */
    int64_t window =
        r->state == REPLICA_SEND_RDB && !st ? set->lim.output_limit_bytes : REFILL_WINDOW;
    struct evbuffer *out = bufferevent_get_output(r->bev);
    while (r->next_offset <= backlog_end(bl) && stream_in_output(r) < window) {
        if (r->next_offset < backlog_start(bl)) {
            if (st && r->next_offset >= store_start(st) && r->next_offset > store_durable_end(st))
                break; /* left memory while still queued for the log: fed again once written */
            if (!st || r->next_offset < store_start(st) ||
                feed_from_disk(r, window - stream_in_output(r)) != 0) {
                drop(r, "its offset is no longer held");
                return;
            }
            continue;
        }
        const char *data;
        struct backlog_block *blk;
        size_t n = backlog_peek(bl, r->next_offset, &data, &blk);
        if (n == 0)
            break;
        backlog_block_ref(blk);
        if (evbuffer_add_reference(out, data, n, unref_block_cb, blk) != 0) {
            backlog_block_unref(blk);
            drop(r, "out of memory queueing output");
            return;
        }
        r->next_offset += (int64_t)n;
        r->stream_queued += (int64_t)n;
        set->stats->total_net_repl_output_bytes += (int64_t)n;
    }
}

/*
 * Output limits, once a second. A replica falling behind (lag not shrinking) is dropped past
 * the hard limit at once, and past the soft limit after soft_ms. One catching up from far
 * behind (a PSYNC served from disk) is left alone while its lag shrinks.
 */
static void check_limits(struct replica *r, int64_t now)
{
    if (r->state != REPLICA_ONLINE && r->state != REPLICA_SEND_RDB)
        return;
    const struct replica_limits *lim = &r->set->lim;
    int64_t lag = replica_lag_bytes(r);
    bool growing = lag >= r->lag_prev;
    r->lag_prev = lag;
    const char *which = NULL;
    if (lag > lim->output_limit_bytes && growing) {
        which = "hard";
    } else if (lag > lim->output_soft_bytes && growing) {
        if (!r->soft_since_ms)
            r->soft_since_ms = now;
        else if (now - r->soft_since_ms > lim->output_soft_ms)
            which = "soft";
    } else if (lag <= lim->output_soft_bytes || !growing) {
        r->soft_since_ms = 0;
    }
    if (which) {
        r->set->stats->replicas_dropped_output_limit++;
        char why[128];
        snprintf(why, sizeof(why), "%s output limit exceeded: %" PRId64 " bytes behind", which,
                 lag);
        drop(r, why);
    }
}

static void check_rdb_sent(struct replica *r)
{
    /* Everything left in the output is stream: the RDB has reached the socket. */
    if (r->state == REPLICA_SEND_RDB && (int64_t)replica_output_bytes(r) <= r->stream_queued) {
        log_info("replica", r->hello.peer, "RDB sent; streaming from offset %" PRId64,
                 r->rdb_offset + 1);
        set_state(r, REPLICA_ONLINE);
        r->ack_ms = net_now_ms();
        bufferevent_setwatermark(r->bev, EV_WRITE, REFILL_LOWMARK, 0);
        if (r->set->rate)
            bufferevent_set_rate_limit(socket_bev(r), NULL);
    }
}

/*
 * STREAM_RDB: queue the RDB file's bytes as they arrive (sendfile from the file being filled),
 * then the EOF mark. Redis' diskless format: "$EOF:<40 bytes>\r\n", payload, the same 40 bytes.
 */
static void feed_rdb(struct replica *r)
{
    if (r->dead || r->state != REPLICA_STREAM_RDB)
        return;
    struct evbuffer *out = bufferevent_get_output(r->bev);
    while (r->rdb_pos < r->rdb_avail && (int64_t)evbuffer_get_length(out) < REFILL_WINDOW) {
        int64_t n = r->rdb_avail - r->rdb_pos;
        if (n > REFILL_WINDOW)
            n = REFILL_WINDOW;
        int dupfd = dup(r->rdb_fd);
        if (dupfd < 0 || evbuffer_add_file(out, dupfd, r->rdb_pos, n) != 0) {
            if (dupfd >= 0)
                close(dupfd);
            drop(r, "cannot queue the snapshot");
            return;
        }
        r->rdb_pos += n;
        r->set->stats->total_net_repl_output_bytes += n;
    }
    if (r->rdb_done && r->rdb_pos > r->rdb_avail) {
        /* Never expected (only payload is ever made available): the replica would wait for
         * its end mark forever, or load bytes that are not the RDB. */
        drop(r, "it was sent more bytes than the RDB turned out to hold");
        return;
    }
    if (r->rdb_done && r->rdb_pos == r->rdb_avail) {
        evbuffer_add(out, r->eof_mark, sizeof(r->eof_mark));
        close(r->rdb_fd);
        r->rdb_fd = -1;
        log_info("replica", r->hello.peer,
                 "streamed RDB complete (%" PRId64 " bytes); waiting for its first ACK",
                 r->rdb_pos);
        /* A replica loading a diskless RDB reads nothing else until it ACKs (Redis'
         * repl_start_cmd_stream_on_ack). */
        set_state(r, REPLICA_WAIT_ACK);
        r->ack_ms = net_now_ms();
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct replica *r = arg;
    if (r->dead)
        return;
    if (r->state == REPLICA_CLOSING) {
        if (replica_output_bytes(r) == 0) /* a framed link's frames included */
            bury(r);
        return;
    }
    if (r->state == REPLICA_STREAM_RDB) {
        feed_rdb(r);
        return;
    }
    check_rdb_sent(r);
    feed(r);
}

static void handle_command(struct replica *r, const struct resp_command *cmd)
{
    int64_t now = net_now_ms();
    if (cmd->argc == 0) {
        /* A bare "\n": the replica is loading the RDB (replicationSendNewlineToMaster). */
        r->ack_ms = now;
        return;
    }
    if (resp_arg_is(cmd, 0, "REPLCONF") && resp_arg_is(cmd, 1, "ACK") && cmd->argc >= 3) {
        int64_t off;
        /* an offset no stream can reach is ignored, never used in arithmetic */
        if (resp_arg_int64(cmd, 2, &off) == 0 && off >= 0 && off <= RESP_MAX_OFFSET)
            r->ack_offset = off;
        r->ack_ms = now;
        r->acked = true;
        if (r->state == REPLICA_WAIT_ACK) {
            log_info("replica", r->hello.peer, "first ACK: streaming from offset %" PRId64,
                     r->next_offset);
            set_state(r, REPLICA_ONLINE);
            bufferevent_setwatermark(r->bev, EV_WRITE, REFILL_LOWMARK, 0);
            if (r->set->rate)
                bufferevent_set_rate_limit(socket_bev(r), NULL);
            feed(r);
        }
        return;
    }
    /* Anything else is ignored without a reply: a reply would land in its stream. */
    log_debug("replica", r->hello.peer, "ignored a command from a replica");
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct replica *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    static const struct resp_limits lim = {
        .max_argc = 16, .max_bulk_bytes = 1024, .max_inline_bytes = 1024};
    while (!r->dead && r->state != REPLICA_CLOSING) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        if (len > MAX_INPUT_BYTES)
            len = MAX_INPUT_BYTES;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
        struct resp_command cmd;
        char err[RESP_ERR_LEN];
        ssize_t n = resp_parse_command(buf, len, &lim, &cmd, err, sizeof(err));
        if (n < 0) {
            r->set->stats->protocol_errors++;
            drop(r, err);
            return;
        }
        if (n == 0)
            return;
        handle_command(r, &cmd);
        evbuffer_drain(in, (size_t)n);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct replica *r = arg;
    (void)bev;
    if (what & BEV_EVENT_EOF)
        lost(r, "connection closed by replica");
    else if (what & BEV_EVENT_ERROR)
        lost(r, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    else if (what & BEV_EVENT_TIMEOUT)
        drop(r, "write timed out");
}

void replica_set_store(struct replica_set *set, struct store *store)
{
    set->store = store;
}

size_t replica_set_sending(const struct replica_set *set)
{
    size_t n = 0;
    for (const struct replica *r = set->head; r; r = r->next)
        n += r->state == REPLICA_SEND_RDB || r->state == REPLICA_STREAM_RDB;
    return n;
}

int64_t replica_set_min_offset(const struct replica_set *set)
{
    int64_t min = INT64_MAX;
    for (const struct replica *r = set->head; r; r = r->next) {
        bool reading = r->state != REPLICA_WAIT_SNAPSHOT && r->state != REPLICA_CLOSING;
        if (reading && r->next_offset < min)
            min = r->next_offset;
    }
    return min;
}

struct replica_limits replica_limits_of(const struct config *cfg)
{
    struct replica_limits lim = {
        .output_limit_bytes = cfg->output_limit_bytes,
        /* A soft limit above the hard one never fires: the hard one is the bound. */
        .output_soft_bytes = cfg->output_soft_bytes < cfg->output_limit_bytes
                                 ? cfg->output_soft_bytes
                                 : cfg->output_limit_bytes,
        .output_soft_ms = cfg->output_soft_ms,
        .snapshot_rate_bytes = cfg->snapshot_rate_bytes,
        .timeout_ms = cfg->replica_timeout_ms,
        .keepalive_ms = cfg->snapshot_keepalive_ms,
        .sndbuf_bytes = cfg->replica_sndbuf,
    };
    return lim;
}

struct replica_set *replica_set_new(struct event_base *base, struct backlog *backlog,
                                    struct stats *stats, const struct replica_limits *lim)
{
    struct replica_set *set = calloc(1, sizeof(*set));
    if (!set)
        abort();
    set->base = base;
    set->backlog = backlog;
    set->stats = stats;
    set->lim = *lim;
    set->reaper = event_new(base, -1, 0, reap_cb, set);
    if (!set->reaper)
        abort();
    if (lim->snapshot_rate_bytes > 0) {
        /* One bucket config for the set's life: libevent forbids freeing one in use. */
        size_t rate = (size_t)lim->snapshot_rate_bytes;
        struct timeval tick = {.tv_sec = 1, .tv_usec = 0};
        set->rate =
            ev_token_bucket_cfg_new(EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX, rate, rate, &tick);
    }
    return set;
}

void replica_set_free(struct replica_set *set)
{
    if (!set)
        return;
    while (set->head)
        bury(set->head);
    reap_cb(-1, 0, set);
    event_free(set->reaper);
    if (set->rate)
        ev_token_bucket_cfg_free(set->rate);
    free(set);
}

void replica_set_limits(struct replica_set *set, const struct replica_limits *lim)
{
    set->lim = *lim;
}

struct replica *replica_attach(struct replica_set *set, struct bufferevent *bev,
                               const struct replica_hello *hello)
{
    struct replica *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    r->set = set;
    r->bev = bev;
    r->hello = *hello;
    r->state = REPLICA_WAIT_SNAPSHOT;
    r->state_since_ms = net_now_ms();
    r->rdb_offset = -1;
    r->rdb_fd = -1;
    r->lag_prev = INT64_MAX; /* the first limit check only records the lag */
    r->ack_ms = r->state_since_ms;
    r->prev = set->tail;
    if (set->tail)
        set->tail->next = r;
    else
        set->head = r;
    set->tail = r;
    set->count++;
    if (set->lim.sndbuf_bytes > 0) {
        int v = (int)set->lim.sndbuf_bytes;
        if (setsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) != 0)
            log_warning("replica", r->hello.peer, "SO_SNDBUF refused: %s", strerror(errno));
    }
    setup_bev(r);
    return r;
}

/* Callbacks and limits of r->bev (again when a framing filter replaced it). */
static void setup_bev(struct replica *r)
{
    struct bufferevent *bev = r->bev;
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, r);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    /* A replica that takes no bytes for this long while output is pending is gone. */
    struct timeval wt = {.tv_sec = r->set->lim.timeout_ms / 1000,
                         .tv_usec = (r->set->lim.timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(bev, NULL, &wt);
    /* libevent writes 16 KiB per wakeup by default: far too little for fan-out. */
    bufferevent_set_max_single_write(bev, REFILL_WINDOW);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/*
 * After the PSYNC reply line (queued already, unframed), a cascade relay that agreed to it
 * gets everything framed: the RDB and the stream are written to a filter that compresses
 * them. Such a replica is never written to directly (write_direct) and its stream is copied
 * into frames instead of referenced: the zero-copy fan-out is for stock replicas.
 */
static void begin_framing(struct replica *r)
{
    if (!r->hello.cascade_frame || r->link)
        return;
    r->bev = wanlink_wrap(r->bev, r->hello.frame_level, &r->link);
    setup_bev(r);
    log_info("replica", r->hello.peer, "cascade link: %s frames",
             wanlink_mode_name(r->hello.frame_level));
}

void replica_start_partial(struct replica *r, int64_t offset, const char *replid)
{
    struct evbuffer *out = bufferevent_get_output(r->bev);
    /* A replica without capa psync2 does not understand "+CONTINUE <replid>". */
    if (r->hello.capa_psync2 && replid && replid[0])
        evbuffer_add_printf(out, "+CONTINUE %s\r\n", replid);
    else
        evbuffer_add_printf(out, "+CONTINUE\r\n");
    begin_framing(r);
    r->next_offset = offset;
    r->ack_offset = offset - 1;
    r->ack_ms = net_now_ms();
    set_state(r, REPLICA_ONLINE);
    bufferevent_setwatermark(r->bev, EV_WRITE, REFILL_LOWMARK, 0);
    log_notice("replica", r->hello.peer, "partial resync from offset %" PRId64, offset);
    feed(r);
}

void replica_start_full(struct replica *r, const struct snapshot *snap, const char *replid)
{
    r->full_sync = true;
    if (!snap) {
        set_state(r, REPLICA_WAIT_SNAPSHOT);
        log_info("replica", r->hello.peer, "full sync: waiting for a snapshot");
        return;
    }
    int fd = snapshot_open(snap);
    if (fd < 0) {
        drop(r, "cannot open the snapshot");
        return;
    }
    struct evbuffer *out = bufferevent_get_output(r->bev);
    if (!r->hello.plain_sync)
        evbuffer_add_printf(out, "+FULLRESYNC %s %" PRId64 "\r\n", replid, snap->offset);
    begin_framing(r);
    out = bufferevent_get_output(r->bev);
    evbuffer_add_printf(out, "$%" PRId64 "\r\n", snap->size);
    if (snap->size > 0 && evbuffer_add_file(out, fd, 0, snap->size) != 0) {
        drop(r, "cannot queue the snapshot");
        return;
    }
    if (snap->size == 0)
        close(fd);
    if (r->hello.rdb_only && r->set->rate)
        bufferevent_set_rate_limit(socket_bev(r), r->set->rate);
    r->set->stats->total_net_repl_output_bytes += snap->size;
    r->rdb_offset = snap->offset;
    log_notice("replica", r->hello.peer,
               "full sync: sending %" PRId64 " byte RDB at offset %" PRId64, snap->size,
               snap->offset);
    if (r->hello.rdb_only) {
        replica_close(r, "rdb-only transfer queued");
        return;
    }
    r->next_offset = snap->offset + 1;
    r->ack_offset = snap->offset;
    r->stream_queued = 0;
    if (r->set->rate)
        bufferevent_set_rate_limit(socket_bev(r), r->set->rate);
    set_state(r, REPLICA_SEND_RDB);
    bufferevent_setwatermark(r->bev, EV_WRITE, REFILL_LOWMARK, 0);
    feed(r);
}

void replica_start_streamed(struct replica *r, const char *path, int64_t offset, const char *replid,
                            uint64_t gen)
{
    r->full_sync = true;
    r->rdb_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->rdb_fd < 0) {
        drop(r, "cannot open the snapshot being filled");
        return;
    }
    char mark[sizeof(r->eof_mark) + 1]; /* fresh for every transfer */
    resp_random_hex(mark, sizeof(r->eof_mark));
    memcpy(r->eof_mark, mark, sizeof(r->eof_mark));
    struct evbuffer *out = bufferevent_get_output(r->bev);
    evbuffer_add_printf(out, "+FULLRESYNC %s %" PRId64 "\r\n", replid, offset);
    begin_framing(r);
    out = bufferevent_get_output(r->bev);
    evbuffer_add(out, "$EOF:", 5);
    evbuffer_add(out, r->eof_mark, sizeof(r->eof_mark));
    evbuffer_add(out, "\r\n", 2);
    r->rdb_gen = gen;
    r->rdb_pos = r->rdb_avail = 0;
    r->rdb_done = false;
    r->rdb_offset = offset;
    r->next_offset = offset + 1;
    r->ack_offset = offset;
    r->stream_queued = 0;
    if (r->set->rate)
        bufferevent_set_rate_limit(socket_bev(r), r->set->rate);
    set_state(r, REPLICA_STREAM_RDB);
    log_notice("replica", r->hello.peer,
               "full sync: streaming the RDB at offset %" PRId64 " while it arrives", offset);
}

void replica_set_rdb_progress(struct replica_set *set, uint64_t gen, int64_t size, bool done)
{
    struct replica *next;
    for (struct replica *r = set->head; r; r = next) {
        next = r->next;
        if (r->state != REPLICA_STREAM_RDB || r->rdb_gen != gen)
            continue;
        r->rdb_avail = size;
        r->rdb_done = done;
        feed_rdb(r);
    }
}

void replica_set_rdb_abort(struct replica_set *set, uint64_t gen, const char *why)
{
    struct replica *next;
    for (struct replica *r = set->head; r; r = next) {
        next = r->next;
        if ((r->state == REPLICA_STREAM_RDB || r->state == REPLICA_WAIT_ACK) && r->rdb_gen == gen)
            drop(r, why);
    }
}

/*
 * An idle replica's socket is writable: write the new bytes now, straight from the backlog's
 * blocks, as Redis writes to replicas in the same event loop turn. Nothing enters the output
 * buffer unless the socket refuses some, so the bufferevent never arms EPOLLOUT for bytes
 * that went out at once (two epoll_ctl calls and a wakeup per replica per read otherwise).
 * Plain sockets only: TLS goes through OpenSSL.
 */
static void write_direct(struct replica *r)
{
    struct replica_set *set = r->set;
    if (r->dead || r->state != REPLICA_ONLINE || r->hello.tls || r->link ||
        evbuffer_get_length(bufferevent_get_output(r->bev)) > 0)
        return;
    struct iovec iov[16];
    int n = 0;
    for (int64_t off = r->next_offset; n < 16;) {
        const char *data;
        struct backlog_block *blk;
        size_t len = backlog_peek(set->backlog, off, &data, &blk);
        if (len == 0)
            break; /* all sent, or not in memory: feed() reads it from disk */
        iov[n++] = (struct iovec){.iov_base = (void *)data, .iov_len = len};
        off += (int64_t)len;
    }
    if (n == 0)
        return;
    ssize_t w = writev(bufferevent_getfd(r->bev), iov, n);
    if (w <= 0)
        return; /* EAGAIN: queue it all; an error: the bufferevent reports it */
    r->next_offset += w;
    set->stats->total_net_repl_output_bytes += w;
}

void replica_set_feed(struct replica_set *set)
{
    struct replica *next;
    for (struct replica *r = set->head; r; r = next) {
        next = r->next; /* feed may bury r */
        write_direct(r);
        feed(r);
    }
}

void replica_set_drop(struct replica_set *set, bool waiting_too, uint64_t keep_gen, const char *why)
{
    struct replica *next;
    for (struct replica *r = set->head; r; r = next) {
        next = r->next;
        bool follows = keep_gen && r->rdb_gen == keep_gen &&
                       (r->state == REPLICA_STREAM_RDB || r->state == REPLICA_WAIT_ACK);
        if (follows || (!waiting_too && r->state == REPLICA_WAIT_SNAPSHOT))
            continue;
        drop(r, why);
    }
}

void replica_set_cron(struct replica_set *set, int64_t now)
{
    bool second = now - set->last_limits_ms >= 1000;
    if (second)
        set->last_limits_ms = now;
    struct replica *next;
    for (struct replica *r = set->head; r; r = next) {
        next = r->next;
        if (second)
            check_limits(r, now);
        if (r->dead)
            continue;
        if (r->link) {
            const char *err = wanlink_out_error(r->link);
            if (err) {
                drop(r, err);
                continue;
            }
            wanlink_out_cron(r->link, now);
        }
        switch (r->state) {
        case REPLICA_WAIT_SNAPSHOT:
            /* A newline is legal before the PSYNC reply and before the RDB preamble. */
            if (now - r->keepalive_ms >= set->lim.keepalive_ms) {
                bufferevent_write(r->bev, "\n", 1);
                r->keepalive_ms = now;
            }
            break;
        case REPLICA_SEND_RDB:
            check_rdb_sent(r);
            break;
        case REPLICA_STREAM_RDB:
            break; /* bounded by the upstream's own timeouts: an abort drops it */
        case REPLICA_WAIT_ACK:
            /* Loading replicas send "\n" (which refreshes ack_ms) until their first ACK. */
            if (now - r->ack_ms > set->lim.timeout_ms)
                drop(r, "timed out waiting for the first ACK");
            break;
        case REPLICA_ONLINE:
            /* Old-style SYNC clients never ACK; Redis does not time them out either. */
            if (!r->hello.plain_sync && now - r->ack_ms > set->lim.timeout_ms) {
                set->stats->replicas_dropped_timeout++;
                drop(r, "timed out: no REPLCONF ACK");
            }
            break;
        case REPLICA_CLOSING:
            /* The last frames leave from below the filter, which calls no write callback
             * for them: look here. */
            if (r->link && replica_output_bytes(r) == 0)
                bury(r);
            else if (now - r->state_since_ms > set->lim.timeout_ms)
                drop(r, "timed out flushing");
            break;
        }
    }
}

struct replica *replica_set_first(struct replica_set *set)
{
    return set->head;
}

size_t replica_set_count(const struct replica_set *set)
{
    return set->count;
}

size_t replica_set_waiting(const struct replica_set *set)
{
    size_t n = 0;
    for (const struct replica *r = set->head; r; r = r->next)
        n += r->state == REPLICA_WAIT_SNAPSHOT;
    return n;
}
