/*
 * min_forwarder: the ceiling for a replication hop: the least a process can do and still
 * forward a Redis replication stream to N replicas. Benchmark tool only (tests/bench/).
 *
 * Upstream it is a replica (PING, REPLCONF listening-port, REPLCONF capa eof capa psync2,
 * PSYNC ? -1), keeps the RDB it receives in memory and ACKs once a second. Downstream it
 * accepts replicas (stock redis-server or fake_replica): PING gets +PONG, AUTH/REPLCONF get
 * +OK, PSYNC gets +FULLRESYNC <upstream id> <current offset> and the RDB as $len, then every
 * stream byte read from then on. The stream is read into 1 MiB chunks shared by all replicas
 * (each replica holds a cursor; one write/writev per replica per read); there is no backlog
 * (nothing is kept once every replica has it), no disk, no parsing of the stream, no GETACK
 * handling, no partial resync. A replica that attaches later gets the old RDB with the current
 * offset: right only while no writes happened in between (the benchmark attaches replicas
 * before any load). A replica more than --max-lag bytes behind is dropped.
 *
 * Reports JSON lines (bytes in and out, CPU) on SIGUSR1, every --report-every seconds and at
 * exit (--seconds, SIGTERM, SIGINT).
 *
 *   min_forwarder --upstream HOST:PORT --port P [--bind H] [--seconds S] [--max-lag B]
 *                 [--report-every S]
 */
#include "bench_util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define CHUNK_CAP      (1 << 20)
#define CHUNK_MIN_FREE (64 << 10)
#define MAX_IOV        16
#define TAG_LISTEN     0xfffffff0u
#define TAG_SIGNAL     0xfffffff1u
#define TAG_TIMER      0xfffffff2u
#define TAG_UPSTREAM   0xfffffff3u

/* A piece of the stream, shared by every replica that has not written it yet. */
struct chunk {
    struct chunk *next;
    int refs;      /* replica cursors pointing into this chunk */
    size_t len;    /* bytes held */
    int64_t start; /* stream position (bytes since the sync) of data[0] */
    char data[];
};

enum down_state {
    D_COMMANDS, /* handshake commands */
    D_RDB,      /* sending +FULLRESYNC, $len, the RDB */
    D_STREAM,   /* sending the stream */
    D_CLOSING,  /* flush the error, then close */
};

struct down {
    int fd; /* -1: free slot */
    enum down_state state;
    struct bench_buf in;  /* unparsed commands */
    struct bench_buf out; /* replies and the RDB preamble */
    size_t rdb_pos;       /* RDB bytes written */
    struct chunk *cur;    /* stream cursor (set at FULLRESYNC) */
    size_t pos;           /* within cur */
    bool blocked;         /* last write hit EAGAIN: wait for EPOLLOUT */
    int64_t sent;         /* stream bytes written */
};

static struct {
    const char *up_host;
    int up_port;
    const char *bind;
    int port;
    double seconds;
    int64_t max_lag;
    double report_every;
} o;

static int ep;
static int up_fd = -1;
static struct hs up_hs;
static struct bench_buf up_in;
static struct bench_buf rdb; /* the RDB as received (without an EOF mark) */
static bool ready;           /* RDB complete: the stream flows */
static struct chunk *head, *tail;
static int64_t stream_in; /* stream bytes read since the sync */
static int64_t bytes_out; /* stream bytes written to replicas */
static int64_t rdb_out;   /* RDB bytes written to replicas */
static int64_t dropped;
static struct down *downs;
static size_t cap_downs;
static int64_t t0;

static struct chunk *chunk_new(void)
{
    struct chunk *c = malloc(sizeof(*c) + CHUNK_CAP);
    if (!c)
        abort();
    c->next = NULL;
    c->refs = 0;
    c->len = 0;
    c->start = stream_in;
    return c;
}

/* Free chunks no cursor needs any more (every cursor is at or after the head). */
static void chunks_gc(void)
{
    while (head != tail && head->refs == 0) {
        struct chunk *c = head;
        head = c->next;
        free(c);
    }
    if (head == tail && tail->refs == 0) {
        tail->len = 0;
        tail->start = stream_in;
    }
}

static void down_close(struct down *d)
{
    if (d->cur)
        d->cur->refs--;
    d->cur = NULL;
    epoll_ctl(ep, EPOLL_CTL_DEL, d->fd, NULL);
    close(d->fd);
    d->fd = -1;
    bench_buf_free(&d->in);
    bench_buf_free(&d->out);
}

/* Write what the replica can take: replies, then the RDB, then the stream. */
static void down_flush(struct down *d)
{
    while (bench_buf_avail(&d->out) > 0) {
        ssize_t n = write(d->fd, d->out.data + d->out.off, bench_buf_avail(&d->out));
        if (n > 0) {
            bench_buf_consume(&d->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            d->blocked = true;
            return;
        }
        down_close(d);
        return;
    }
    if (d->state == D_CLOSING) {
        down_close(d);
        return;
    }
    while (d->state == D_RDB) {
        if (d->rdb_pos == rdb.len) {
            d->state = D_STREAM;
            break;
        }
        ssize_t n = write(d->fd, rdb.data + d->rdb_pos, rdb.len - d->rdb_pos);
        if (n > 0) {
            d->rdb_pos += (size_t)n;
            rdb_out += n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            d->blocked = true;
            return;
        }
        down_close(d);
        return;
    }
    if (d->state != D_STREAM)
        return;
    if (stream_in - (d->cur->start + (int64_t)d->pos) > o.max_lag) {
        fprintf(stderr,
                "min_forwarder: replica fd %d more than %" PRId64 " bytes behind: dropped\n", d->fd,
                o.max_lag);
        dropped++;
        down_close(d);
        return;
    }
    for (;;) {
        while (d->pos == d->cur->len && d->cur->next) {
            d->cur->refs--;
            d->cur = d->cur->next;
            d->cur->refs++;
            d->pos = 0;
        }
        struct iovec iov[MAX_IOV];
        int niov = 0;
        size_t total = 0;
        struct chunk *c = d->cur;
        size_t pos = d->pos;
        while (c && niov < MAX_IOV) {
            if (c->len > pos) {
                iov[niov].iov_base = c->data + pos;
                iov[niov].iov_len = c->len - pos;
                total += c->len - pos;
                niov++;
            }
            c = c->next;
            pos = 0;
        }
        if (total == 0)
            return;
        ssize_t n =
            niov == 1 ? write(d->fd, iov[0].iov_base, iov[0].iov_len) : writev(d->fd, iov, niov);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                d->blocked = true;
                return;
            }
            down_close(d);
            return;
        }
        d->sent += n;
        bytes_out += n;
        size_t left = (size_t)n;
        while (left > 0) {
            size_t here = d->cur->len - d->pos;
            if (left < here) {
                d->pos += left;
                left = 0;
            } else {
                left -= here;
                d->pos = d->cur->len;
                if (d->cur->next) {
                    d->cur->refs--;
                    d->cur = d->cur->next;
                    d->cur->refs++;
                    d->pos = 0;
                }
            }
        }
        if ((size_t)n < total) {
            d->blocked = true; /* short write: the socket is full */
            return;
        }
    }
}

static void reply(struct down *d, const char *s)
{
    bench_buf_append(&d->out, s, strlen(s));
}

static void info_reply(struct down *d)
{
    size_t n = 0;
    for (size_t i = 0; i < cap_downs; i++)
        n += downs[i].fd >= 0 && downs[i].state != D_COMMANDS;
    char body[1024], line[1100];
    int bl = snprintf(body, sizeof(body),
                      "# Replication\r\nrole:slave\r\nmaster_link_status:%s\r\n"
                      "master_repl_offset:%" PRId64 "\r\nslave_repl_offset:%" PRId64 "\r\n"
                      "connected_slaves:%zu\r\nmaster_replid:%s\r\n",
                      ready ? "up" : "down", up_hs.offset + stream_in, up_hs.offset + stream_in, n,
                      up_hs.replid);
    snprintf(line, sizeof(line), "$%d\r\n%s\r\n", bl, body);
    reply(d, line);
}

static void start_sync(struct down *d, bool psync)
{
    if (!ready) {
        reply(d, "-NOMASTERLINK Can't SYNC while not connected with my master\r\n");
        return;
    }
    char line[160];
    if (psync)
        snprintf(line, sizeof(line), "+FULLRESYNC %s %" PRId64 "\r\n$%zu\r\n", up_hs.replid,
                 up_hs.offset + stream_in, rdb.len);
    else
        snprintf(line, sizeof(line), "$%zu\r\n", rdb.len);
    reply(d, line);
    d->state = D_RDB;
    d->rdb_pos = 0;
    d->cur = tail;
    d->pos = tail->len;
    tail->refs++;
}

static void down_readable(struct down *d)
{
    for (;;) {
        ssize_t n = bench_buf_read(&d->in, d->fd, 16384);
        if (n == -2)
            break;
        if (n <= 0) {
            down_close(d);
            return;
        }
        if (d->state != D_COMMANDS) {
            d->in.off = d->in.len = 0; /* ACKs: discarded */
            continue;
        }
        while (d->state == D_COMMANDS) {
            struct bench_cmd cmd;
            size_t used;
            int r = bench_cmd_parse(d->in.data + d->in.off, bench_buf_avail(&d->in), &cmd, &used);
            if (r == 0)
                break;
            if (r < 0) {
                reply(d, "-ERR Protocol error\r\n");
                d->state = D_CLOSING;
                break;
            }
            if (cmd.argc == 0) {
            } else if (bench_arg_is(&cmd, 0, "PING")) {
                reply(d, "+PONG\r\n");
            } else if (bench_arg_is(&cmd, 0, "REPLCONF")) {
                if (!bench_arg_is(&cmd, 1, "ACK") && !bench_arg_is(&cmd, 1, "GETACK"))
                    reply(d, "+OK\r\n");
            } else if (bench_arg_is(&cmd, 0, "AUTH")) {
                reply(d, "+OK\r\n");
            } else if (bench_arg_is(&cmd, 0, "PSYNC") || bench_arg_is(&cmd, 0, "SYNC")) {
                start_sync(d, bench_arg_is(&cmd, 0, "PSYNC"));
            } else if (bench_arg_is(&cmd, 0, "INFO")) {
                info_reply(d);
            } else {
                reply(d, "-ERR unknown command (min_forwarder)\r\n");
            }
            bench_buf_consume(&d->in, used);
        }
        if (d->state != D_COMMANDS)
            d->in.off = d->in.len = 0;
    }
    if (d->fd >= 0 && !d->blocked)
        down_flush(d);
}

static void append_stream(const char *data, size_t n)
{
    while (n > 0) {
        if (CHUNK_CAP - tail->len < CHUNK_MIN_FREE) {
            struct chunk *c = chunk_new();
            tail->next = c;
            tail = c;
        }
        size_t take = CHUNK_CAP - tail->len;
        if (take > n)
            take = n;
        memcpy(tail->data + tail->len, data, take);
        tail->len += take;
        stream_in += (int64_t)take;
        data += take;
        n -= take;
    }
}

static void fan_out(void)
{
    for (size_t i = 0; i < cap_downs; i++) {
        struct down *d = &downs[i];
        if (d->fd >= 0 && d->state == D_STREAM && !d->blocked)
            down_flush(d);
    }
    chunks_gc();
}

static void rdb_cb(void *ctx, const char *data, size_t n)
{
    (void)ctx;
    bench_buf_append(&rdb, data, n);
}

static void rdb_done_cb(void *ctx, bool eof_format)
{
    (void)ctx;
    if (eof_format)
        rdb.len -= 40; /* the mark */
    ready = true;
    fprintf(stderr, "min_forwarder: synced %s offset %" PRId64 ", RDB %zu bytes\n", up_hs.replid,
            up_hs.offset, rdb.len);
}

static void upstream_readable(void)
{
    if (ready) {
        if (CHUNK_CAP - tail->len < CHUNK_MIN_FREE) {
            struct chunk *c = chunk_new();
            tail->next = c;
            tail = c;
        }
        ssize_t n = read(up_fd, tail->data + tail->len, CHUNK_CAP - tail->len);
        if (n > 0) {
            tail->len += (size_t)n;
            stream_in += n;
            fan_out();
            return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        bench_die("min_forwarder: upstream link lost (%s)", n == 0 ? "closed" : strerror(errno));
    }
    ssize_t n = bench_buf_read(&up_in, up_fd, CHUNK_CAP);
    if (n == -2)
        return;
    if (n <= 0)
        bench_die("min_forwarder: upstream closed during the sync");
    int st = hs_feed(&up_hs, up_fd, &up_in, rdb_cb, rdb_done_cb, NULL);
    if (st < 0 || st == HS_FAILED)
        bench_die("min_forwarder: upstream sync failed: %s", up_hs.err);
    if (st == HS_STREAM) {
        ready = true;
        append_stream(up_in.data + up_in.off, bench_buf_avail(&up_in));
        bench_buf_free(&up_in);
        fan_out();
    }
}

static void report(const char *why)
{
    static struct bench_json j;
    int64_t n = 0, chunks = 0, max_lag = 0;
    for (size_t i = 0; i < cap_downs; i++) {
        struct down *d = &downs[i];
        if (d->fd < 0)
            continue;
        n++;
        if (d->cur) {
            int64_t lag = stream_in - (d->cur->start + (int64_t)d->pos);
            if (lag > max_lag)
                max_lag = lag;
        }
    }
    for (struct chunk *c = head; c; c = c->next)
        chunks++;
    json_begin(&j);
    json_str(&j, "tool", "min_forwarder");
    json_str(&j, "why", why);
    json_num(&j, "t", (double)(bench_now_ns() - t0) / 1e9);
    json_int(&j, "ready", ready);
    json_int(&j, "replicas", n);
    json_int(&j, "offset", up_hs.offset + stream_in);
    json_int(&j, "stream_in", stream_in);
    json_int(&j, "bytes_out", bytes_out);
    json_int(&j, "rdb_bytes", (int64_t)rdb.len);
    json_int(&j, "rdb_out", rdb_out);
    json_int(&j, "chunks", chunks);
    json_int(&j, "max_lag", max_lag);
    json_int(&j, "dropped", dropped);
    json_num(&j, "cpu_s", bench_cpu_seconds());
    json_end(&j);
}

/* SIGUSR1/SIGUSR2: report now. */
static void report_on_signal(int signo)
{
    (void)signo;
    report("signal");
}

static void accept_all(int lfd)
{
    int fd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        size_t slot = cap_downs;
        for (size_t i = 0; i < cap_downs; i++) {
            if (downs[i].fd < 0) {
                slot = i;
                break;
            }
        }
        if (slot == cap_downs) {
            size_t nc = cap_downs ? cap_downs * 2 : 64;
            struct down *nd = realloc(downs, nc * sizeof(*nd));
            if (!nd)
                abort();
            for (size_t i = cap_downs; i < nc; i++)
                nd[i].fd = -1;
            downs = nd;
            cap_downs = nc;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct down *d = &downs[slot];
        memset(d, 0, sizeof(*d));
        d->fd = fd;
        d->state = D_COMMANDS;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
                                 .data.u32 = (uint32_t)slot};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: min_forwarder --upstream HOST:PORT --port P [--bind H] [--seconds S]\n"
                    "       [--max-lag B] [--report-every S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    o.bind = "127.0.0.1";
    o.seconds = 3600;
    o.max_lag = 1000000000;
    static const struct option lo[] = {
        {"upstream", required_argument, NULL, 'u'},
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'h'},
        {"seconds", required_argument, NULL, 's'},
        {"max-lag", required_argument, NULL, 'l'},
        {"report-every", required_argument, NULL, 'e'},
        {NULL, 0, NULL, 0},
    };
    static char up_host[256];
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'u': {
            const char *colon = strrchr(optarg, ':');
            if (!colon || (size_t)(colon - optarg) >= sizeof(up_host))
                usage();
            memcpy(up_host, optarg, (size_t)(colon - optarg));
            up_host[colon - optarg] = '\0';
            o.up_host = up_host;
            o.up_port = atoi(colon + 1);
            break;
        }
        case 'p':
            o.port = atoi(optarg);
            break;
        case 'h':
            o.bind = optarg;
            break;
        case 's':
            o.seconds = atof(optarg);
            break;
        case 'l':
            o.max_lag = bench_parse_count("--max-lag", optarg);
            break;
        case 'e':
            o.report_every = atof(optarg);
            break;
        default:
            usage();
        }
    }
    if (!o.up_host || o.up_port <= 0 || o.port <= 0)
        usage();

    int sfd = bench_signalfd();
    int tfd = bench_timerfd(1000);
    ep = epoll_create1(EPOLL_CLOEXEC);
    int lfd = bench_listen(o.bind, o.port);
    if (lfd < 0)
        bench_die("min_forwarder: listen %s:%d: %s", o.bind, o.port, strerror(errno));
    up_fd = bench_connect(o.up_host, o.up_port);
    if (up_fd < 0)
        bench_die("min_forwarder: connect %s:%d: %s", o.up_host, o.up_port, strerror(errno));
    if (hs_start(&up_hs, up_fd, o.port) != 0)
        bench_die("min_forwarder: upstream handshake write failed");
    head = tail = chunk_new();
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.u32 = TAG_LISTEN;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.u32 = TAG_SIGNAL;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    ev.data.u32 = TAG_TIMER;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    ev.data.u32 = TAG_UPSTREAM;
    epoll_ctl(ep, EPOLL_CTL_ADD, up_fd, &ev);

    t0 = bench_now_ns();
    int64_t end_ns = t0 + (int64_t)(o.seconds * 1e9);
    int64_t next_report = o.report_every > 0 ? t0 + (int64_t)(o.report_every * 1e9) : INT64_MAX;
    const char *why = "end";
    struct epoll_event evs[256];
    bool stop = false;
    while (!stop) {
        int64_t now = bench_now_ns();
        if (now >= end_ns)
            break;
        int n = epoll_wait(ep, evs, 256, (int)((end_ns - now) / 1000000) + 1);
        for (int k = 0; k < n; k++) {
            uint32_t tag = evs[k].data.u32;
            if (tag == TAG_UPSTREAM) {
                upstream_readable();
            } else if (tag == TAG_LISTEN) {
                accept_all(lfd);
            } else if (tag == TAG_SIGNAL) {
                if (bench_signals_read(sfd, report_on_signal)) {
                    why = "stopped";
                    stop = true;
                }
            } else if (tag == TAG_TIMER) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                    bench_die("timerfd: %s", strerror(errno));
                if (up_hs.state == HS_STREAM)
                    (void)bench_send_ack(up_fd, up_hs.offset + stream_in);
                if (bench_now_ns() >= next_report) {
                    report("tick");
                    next_report += (int64_t)(o.report_every * 1e9);
                }
            } else if (tag < cap_downs && downs[tag].fd >= 0) {
                struct down *d = &downs[tag];
                if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    d->blocked = false;
                if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    down_readable(d);
                else if (!d->blocked)
                    down_flush(d);
                chunks_gc();
            }
        }
    }
    report(why);
    for (size_t i = 0; i < cap_downs; i++)
        if (downs[i].fd >= 0)
            down_close(&downs[i]);
    while (head) {
        struct chunk *c = head;
        head = c->next;
        free(c);
    }
    free(downs);
    bench_buf_free(&rdb);
    close(up_fd);
    close(lfd);
    return 0;
}
