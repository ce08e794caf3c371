/*
 * fake_replica: N replica connections in one process, for fan-out benchmarks.
 *
 * Each connection does what a stock replica does on the wire (PING, REPLCONF listening-port,
 * REPLCONF capa eof capa psync2, PSYNC ? -1), skips the RDB ($len or $EOF:<mark>), then reads
 * and discards the stream (recv with MSG_TRUNC: no copy), sending REPLCONF ACK <offset> once a
 * second. It keeps no data. A dropped connection is redialled after a second (a new full sync).
 *
 * Reports one JSON line to stdout every --report-every seconds, on SIGUSR1, and at exit
 * (after --seconds, or on SIGTERM/SIGINT): bytes of stream received per connection and in
 * total, when each went online, drops. Benchmark tool only (tests/bench/).
 *
 *   fake_replica --port P [--host H] [--conns N] [--seconds S] [--report-every S]
 *                [--listen-port-base B] [--copy] [--no-per-conn]
 */
#include "bench_util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_MAX   (1 << 20)
#define TAG_SIGNAL (-1)
#define TAG_TIMER  (-2)

struct conn {
    int fd;                /* -1 while not connected */
    int idx;               /* position in the array, its listening-port offset */
    struct hs hs;          /* handshake and RDB state */
    struct bench_buf in;   /* bytes read before the stream (handshake, RDB) */
    int64_t stream_bytes;  /* stream bytes received, over all sessions */
    int64_t session_bytes; /* stream bytes of this session (the ACK offset is hs.offset + it) */
    int64_t rdb_bytes;     /* RDB bytes received, over all sessions */
    int64_t online_ns;     /* when the first session went online (0: not yet) */
    int64_t retry_ns;      /* when to redial (fd == -1) */
};

struct opts {
    const char *host;
    int port;
    int conns;
    double seconds;
    double report_every;
    int listen_port_base;
    bool copy;     /* read() into a buffer instead of recv(MSG_TRUNC) */
    bool per_conn; /* per-connection arrays in the report */
};

static struct conn *conns;
static struct opts o;
static int ep;
static int64_t t0;
static int64_t drops, refusals;
static char scratch[READ_MAX];

static void conn_close(struct conn *c, int64_t retry_after_ns)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->in.off = c->in.len = 0;
    c->retry_ns = bench_now_ns() + retry_after_ns;
}

static void conn_dial(struct conn *c)
{
    c->fd = bench_connect(o.host, o.port);
    if (c->fd < 0) {
        c->retry_ns = bench_now_ns() + 100000000;
        return;
    }
    if (hs_start(&c->hs, c->fd, o.listen_port_base + c->idx) != 0) {
        conn_close(c, 100000000);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)c->idx};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void went_online(struct conn *c)
{
    if (!c->online_ns)
        c->online_ns = bench_now_ns();
    c->rdb_bytes += c->hs.rdb_bytes;
    /* Whatever followed the RDB in the same read is stream. */
    c->session_bytes = (int64_t)bench_buf_avail(&c->in);
    c->stream_bytes += c->session_bytes;
    c->in.off = c->in.len = 0;
}

static void conn_readable(struct conn *c)
{
    if (c->hs.state == HS_STREAM) {
        ssize_t n = o.copy ? read(c->fd, scratch, sizeof(scratch))
                           : recv(c->fd, scratch, sizeof(scratch), MSG_TRUNC | MSG_DONTWAIT);
        if (n > 0) {
            c->stream_bytes += n;
            c->session_bytes += n;
            return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        fprintf(stderr, "fake_replica: conn %d: stream ended (%s)\n", c->idx,
                n == 0 ? "closed" : strerror(errno));
        drops++;
        conn_close(c, 1000000000);
        return;
    }
    ssize_t n;
    int64_t skip = hs_rdb_skippable(&c->hs);
    if (!o.copy && skip > 0 && bench_buf_avail(&c->in) == 0) {
        n = recv(c->fd, scratch, skip < READ_MAX ? (size_t)skip : READ_MAX,
                 MSG_TRUNC | MSG_DONTWAIT);
        if (n > 0)
            hs_rdb_skipped(&c->hs, n, NULL, NULL);
        else if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        else
            n = n == 0 ? 0 : -1;
    } else {
        n = bench_buf_read(&c->in, c->fd, READ_MAX);
        if (n == -2)
            return;
    }
    if (n <= 0) {
        fprintf(stderr, "fake_replica: conn %d: closed during sync (state %d)\n", c->idx,
                (int)c->hs.state);
        drops++;
        conn_close(c, 1000000000);
        return;
    }
    int st = hs_feed(&c->hs, c->fd, &c->in, NULL, NULL, NULL);
    if (st < 0) {
        drops++;
        conn_close(c, 1000000000);
    } else if (st == HS_FAILED) {
        if (refusals++ < 10)
            fprintf(stderr, "fake_replica: conn %d: %s\n", c->idx, c->hs.err);
        conn_close(c, 1000000000);
    } else if (st == HS_STREAM) {
        went_online(c);
    }
}

static void report(const char *why)
{
    static struct bench_json j;
    static int64_t *tmp;
    if (!tmp)
        tmp = calloc((size_t)o.conns, sizeof(*tmp));
    int64_t total = 0, rdb = 0, connected = 0, online = 0;
    for (int i = 0; i < o.conns; i++) {
        total += conns[i].stream_bytes;
        rdb += conns[i].rdb_bytes;
        connected += conns[i].fd >= 0;
        online += conns[i].fd >= 0 && conns[i].hs.state == HS_STREAM;
    }
    json_begin(&j);
    json_str(&j, "tool", "fake_replica");
    json_str(&j, "why", why);
    json_num(&j, "t", (double)(bench_now_ns() - t0) / 1e9);
    json_int(&j, "conns", o.conns);
    json_int(&j, "connected", connected);
    json_int(&j, "online", online);
    json_int(&j, "drops", drops);
    json_int(&j, "refusals", refusals);
    json_int(&j, "bytes", total);
    json_int(&j, "rdb_bytes", rdb);
    json_num(&j, "cpu_s", bench_cpu_seconds());
    if (o.per_conn) {
        for (int i = 0; i < o.conns; i++)
            tmp[i] = conns[i].stream_bytes;
        json_int_array(&j, "per_conn", tmp, (size_t)o.conns);
    }
    for (int i = 0; i < o.conns; i++)
        tmp[i] = conns[i].online_ns ? (conns[i].online_ns - t0) / 1000000 : -1;
    json_int_array(&j, "online_ms", tmp, (size_t)o.conns);
    json_end(&j);
}

/* SIGUSR1/SIGUSR2: report now. */
static void report_on_signal(int signo)
{
    (void)signo;
    report("signal");
}

static void usage(void)
{
    fprintf(stderr, "usage: fake_replica --port P [--host H] [--conns N] [--seconds S]\n"
                    "       [--report-every S] [--listen-port-base B] [--copy] [--no-per-conn]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    o = (struct opts){.host = "127.0.0.1",
                      .conns = 1,
                      .seconds = 30,
                      .report_every = 1,
                      .listen_port_base = 20000,
                      .per_conn = true};
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"conns", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 's'},
        {"report-every", required_argument, NULL, 'r'},
        {"listen-port-base", required_argument, NULL, 'b'},
        {"copy", no_argument, NULL, 'c'},
        {"no-per-conn", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h':
            o.host = optarg;
            break;
        case 'p':
            o.port = atoi(optarg);
            break;
        case 'n':
            o.conns = atoi(optarg);
            break;
        case 's':
            o.seconds = atof(optarg);
            break;
        case 'r':
            o.report_every = atof(optarg);
            break;
        case 'b':
            o.listen_port_base = atoi(optarg);
            break;
        case 'c':
            o.copy = true;
            break;
        case 'q':
            o.per_conn = false;
            break;
        default:
            usage();
        }
    }
    if (o.port <= 0 || o.conns <= 0 || o.seconds <= 0)
        usage();

    int sfd = bench_signalfd();
    int tfd = bench_timerfd(1000);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)TAG_SIGNAL};
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    ev.data.u32 = (uint32_t)TAG_TIMER;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);

    t0 = bench_now_ns();
    int64_t end_ns = t0 + (int64_t)(o.seconds * 1e9);
    conns = calloc((size_t)o.conns, sizeof(*conns));
    for (int i = 0; i < o.conns; i++) {
        conns[i].idx = i;
        conns[i].fd = -1;
        conn_dial(&conns[i]);
    }
    int64_t next_report = t0 + (int64_t)(o.report_every * 1e9);
    const char *why = "end";
    struct epoll_event evs[256];
    for (;;) {
        int64_t now = bench_now_ns();
        if (now >= end_ns)
            break;
        int64_t wait_ns = end_ns - now;
        for (int i = 0; i < o.conns; i++) {
            if (conns[i].fd < 0) {
                if (conns[i].retry_ns <= now)
                    conn_dial(&conns[i]);
                else if (conns[i].retry_ns - now < wait_ns)
                    wait_ns = conns[i].retry_ns - now;
            }
        }
        int n = epoll_wait(ep, evs, 256, (int)(wait_ns / 1000000) + 1);
        bool stop = false;
        for (int k = 0; k < n; k++) {
            int32_t tag = (int32_t)evs[k].data.u32;
            if (tag == TAG_SIGNAL) {
                if (bench_signals_read(sfd, report_on_signal)) {
                    why = "stopped";
                    stop = true;
                }
            } else if (tag == TAG_TIMER) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                    bench_die("timerfd read: %s", strerror(errno));
                for (int i = 0; i < o.conns; i++) {
                    struct conn *c = &conns[i];
                    if (c->fd >= 0 && c->hs.state == HS_STREAM)
                        (void)bench_send_ack(c->fd, c->hs.offset + c->session_bytes);
                }
                if (o.report_every > 0 && bench_now_ns() >= next_report) {
                    report("tick");
                    next_report += (int64_t)(o.report_every * 1e9);
                }
            } else if (tag >= 0 && tag < o.conns && conns[tag].fd >= 0) {
                conn_readable(&conns[tag]);
            }
        }
        if (stop)
            break;
    }
    report(why);
    for (int i = 0; i < o.conns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        bench_buf_free(&conns[i].in);
    }
    free(conns);
    return 0;
}
