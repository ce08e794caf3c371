/*
 * synth_master: a synthetic upstream that speaks the master side of replication, so the relay
 * (or any replica) can be fed a stream faster than a real master would produce one.
 *
 * Answers PING (+PONG), AUTH/REPLCONF (+OK; REPLCONF ACK gets no reply), INFO (a few
 * replication fields), PSYNC/SYNC with +FULLRESYNC <40-hex id> <offset> and a tiny valid RDB
 * (built in: an empty RDB v10 with its CRC-64, or --rdb FILE) as $len, then streams valid RESP
 * commands (SELECT 0, then SET key:<n> <value> with --value-byte values) as fast as the socket
 * takes them, or at --rate bytes/s, until --bytes per connection. The stream is a fixed cyclic
 * buffer of whole commands, so byte X of the stream is the same on every connection.
 * A connection that sent REPLCONF rdb-only 1 gets the RDB and is closed (the relay's snapshot
 * fetch). With --hold the stream starts only at the first SIGUSR1.
 *
 * Reports JSON lines (bytes sent) on SIGUSR1, every --report-every seconds, and at exit
 * (--seconds, SIGTERM, SIGINT). Benchmark tool only (tests/bench/).
 *
 *   synth_master --port P [--bind H] [--seconds S] [--bytes B] [--rate B/s] [--value V]
 *                [--keys K] [--hold] [--rdb FILE] [--report-every S] [--buffer-mb M]
 */
#include "bench_util.h"
#include "rdb.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define WRITE_BURST (4 << 20) /* bytes written to one connection before others get a turn */
#define TAG_LISTEN  0xfffffff0u
#define TAG_SIGNAL  0xfffffff1u
#define MAX_CLIENTS 64

enum client_state {
    CL_COMMANDS, /* reading commands */
    CL_RDB,      /* +FULLRESYNC, $len and the RDB queued in out */
    CL_STREAM,   /* streaming */
    CL_CLOSING,  /* flush out, then close (rdb-only) */
};

struct client {
    int fd; /* -1: free slot */
    enum client_state state;
    struct bench_buf in;  /* unparsed commands */
    struct bench_buf out; /* replies, the RDB */
    bool rdb_only;        /* REPLCONF rdb-only 1 seen */
    bool pollout;         /* EPOLLOUT is in the interest set */
    bool done;            /* --bytes reached */
    int64_t base;         /* the FULLRESYNC offset */
    int64_t off;          /* absolute stream offset sent so far */
    int64_t rdb_sent;     /* RDB bytes written */
};

struct opts {
    const char *bind;
    int port;
    double seconds;
    int64_t bytes;
    int64_t rate;
    int value;
    int64_t keys;
    bool hold;
    const char *rdb_file;
    double report_every;
    int64_t buffer_bytes;
};

static struct opts o;
static struct client clients[MAX_CLIENTS];
static int ep;
static char *stream;
static size_t stream_len;
static char *rdb;
static size_t rdb_len;
static char replid[41];
static bool streaming;
static int64_t stream_start_ns;
static int64_t t0;

static void build_rdb(void)
{
    if (o.rdb_file) {
        FILE *f = fopen(o.rdb_file, "rb");
        if (!f)
            bench_die("%s: %s", o.rdb_file, strerror(errno));
        struct bench_buf b = {0};
        char tmp[65536];
        size_t n;
        while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
            bench_buf_append(&b, tmp, n);
        fclose(f);
        rdb = b.data;
        rdb_len = b.len;
        return;
    }
    /* "REDIS0010", aux redis-ver 7.0.15, aux repl-stream-db 0 (int-encoded), EOF, CRC-64. */
    static const unsigned char body[] = {
        'R', 'E', 'D', 'I', 'S', '0', '0', '1', '0', 0xfa, 9,   'r',  'e', 'd', 'i', 's',
        '-', 'v', 'e', 'r', 6,   '7', '.', '0', '.', '1',  '5', 0xfa, 14,  'r', 'e', 'p',
        'l', '-', 's', 't', 'r', 'e', 'a', 'm', '-', 'd',  'b', 0xc0, 0,   0xff};
    rdb_len = sizeof(body) + 8;
    rdb = malloc(rdb_len);
    memcpy(rdb, body, sizeof(body));
    uint64_t crc = rdb_crc64(0, body, sizeof(body)); /* Redis' CRC-64, as rdb.c checks it */
    for (int i = 0; i < 8; i++)
        rdb[sizeof(body) + (size_t)i] = (char)((crc >> (8 * i)) & 0xff);
}

static void build_stream(void)
{
    struct bench_buf b = {0};
    static const char select0[] = "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n";
    bench_buf_append(&b, select0, sizeof(select0) - 1);
    char *val = malloc((size_t)o.value);
    uint64_t x = 88172645463325252ULL;
    char hdr[128];
    while ((int64_t)b.len < o.buffer_bytes) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (int i = 0; i < o.value; i++)
            val[i] = (char)('a' + ((x >> ((i % 8) * 5)) + (uint64_t)i) % 26);
        char key[32];
        int kl = snprintf(key, sizeof(key), "key:%010" PRIu64, x % (uint64_t)o.keys);
        int hl =
            snprintf(hdr, sizeof(hdr), "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", kl, key, o.value);
        bench_buf_append(&b, hdr, (size_t)hl);
        bench_buf_append(&b, val, (size_t)o.value);
        bench_buf_append(&b, "\r\n", 2);
    }
    free(val);
    stream = b.data;
    stream_len = b.len;
}

static int64_t max_offset(void)
{
    int64_t m = 0;
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0 && clients[i].state == CL_STREAM && clients[i].off > m)
            m = clients[i].off;
    return m;
}

static void set_pollout(struct client *c, bool on)
{
    if (c->pollout == on)
        return;
    c->pollout = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u),
                             .data.u32 = (uint32_t)(c - clients)};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int64_t closed_sent, closed_rdb; /* bytes sent on connections since closed */

static void client_close(struct client *c)
{
    if (c->state == CL_STREAM)
        closed_sent += c->off - c->base;
    closed_rdb += c->rdb_sent;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    bench_buf_free(&c->in);
    bench_buf_free(&c->out);
}

static void reply(struct client *c, const char *s)
{
    bench_buf_append(&c->out, s, strlen(s));
}

static void start_sync(struct client *c)
{
    /* A second full sync starts at a multiple of the cyclic buffer: a command boundary whose
     * bytes are the same as on every other connection. */
    int64_t off = max_offset();
    off -= off % (int64_t)stream_len;
    c->base = c->off = off;
    char line[128];
    snprintf(line, sizeof(line), "+FULLRESYNC %s %" PRId64 "\r\n$%zu\r\n", replid, off, rdb_len);
    reply(c, line);
    bench_buf_append(&c->out, rdb, rdb_len);
    c->rdb_sent += (int64_t)rdb_len;
    c->state = c->rdb_only ? CL_CLOSING : CL_RDB;
}

static int handle_command(struct client *c, const struct bench_cmd *cmd)
{
    if (cmd->argc == 0)
        return 0;
    if (bench_arg_is(cmd, 0, "PING")) {
        reply(c, "+PONG\r\n");
    } else if (bench_arg_is(cmd, 0, "REPLCONF")) {
        if (bench_arg_is(cmd, 1, "ACK") || bench_arg_is(cmd, 1, "GETACK"))
            return 0;
        if (bench_arg_is(cmd, 1, "rdb-only") && bench_arg_is(cmd, 2, "1"))
            c->rdb_only = true;
        reply(c, "+OK\r\n");
    } else if (bench_arg_is(cmd, 0, "AUTH") || bench_arg_is(cmd, 0, "SELECT")) {
        reply(c, "+OK\r\n");
    } else if (bench_arg_is(cmd, 0, "PSYNC") || bench_arg_is(cmd, 0, "SYNC")) {
        start_sync(c);
        return 1;
    } else if (bench_arg_is(cmd, 0, "INFO")) {
        char body[512], line[600];
        int n = snprintf(body, sizeof(body),
                         "# Replication\r\nrole:master\r\nmaster_replid:%s\r\n"
                         "master_repl_offset:%" PRId64 "\r\n",
                         replid, max_offset());
        snprintf(line, sizeof(line), "$%d\r\n%s\r\n", n, body);
        reply(c, line);
    } else {
        reply(c, "-ERR unknown command (synth_master)\r\n");
    }
    return 0;
}

static bool flush_out(struct client *c)
{
    while (bench_buf_avail(&c->out) > 0) {
        ssize_t n = write(c->fd, c->out.data + c->out.off, bench_buf_avail(&c->out));
        if (n > 0) {
            bench_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return false;
        client_close(c);
        return false;
    }
    return true;
}

/* Bytes the rate limit allows this connection now. */
static int64_t allowance(const struct client *c, int64_t now)
{
    int64_t lim = WRITE_BURST;
    if (o.bytes > 0 && o.bytes - (c->off - c->base) < lim)
        lim = o.bytes - (c->off - c->base);
    if (o.rate > 0) {
        int64_t allowed = (int64_t)((double)o.rate * (double)(now - stream_start_ns) / 1e9);
        int64_t a = allowed - (c->off - c->base);
        if (a < lim)
            lim = a;
    }
    return lim;
}

static void report(const char *why);

static void stream_some(struct client *c, int64_t now)
{
    int64_t lim = allowance(c, now);
    while (lim > 0) {
        size_t pos = (size_t)(c->off % (int64_t)stream_len);
        size_t n = stream_len - pos;
        if ((int64_t)n > lim)
            n = (size_t)lim;
        ssize_t w = write(c->fd, stream + pos, n);
        if (w > 0) {
            c->off += w;
            lim -= w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return; /* stay in EPOLLOUT */
        client_close(c);
        return;
    }
    if (o.bytes > 0 && c->off - c->base >= o.bytes && !c->done) {
        c->done = true;
        report("bytes-done");
    }
    /* Limited by --rate or --bytes: leave the writable set until the next tick. */
    if (allowance(c, now) <= 0)
        set_pollout(c, false);
}

static void client_event(struct client *c, uint32_t events, int64_t now)
{
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        ssize_t n = bench_buf_read(&c->in, c->fd, 65536);
        if (n == 0 || n == -1) {
            client_close(c);
            return;
        }
        while (c->state == CL_COMMANDS) {
            struct bench_cmd cmd;
            size_t used;
            int r = bench_cmd_parse(c->in.data + c->in.off, bench_buf_avail(&c->in), &cmd, &used);
            if (r == 0)
                break;
            if (r < 0) {
                reply(c, "-ERR Protocol error\r\n");
                c->state = CL_CLOSING;
                break;
            }
            int sync = handle_command(c, &cmd);
            bench_buf_consume(&c->in, used);
            if (sync)
                break;
        }
        if (c->state != CL_COMMANDS)
            c->in.off = c->in.len = 0; /* REPLCONF ACKs: not needed */
    }
    if (c->fd < 0)
        return;
    if (!flush_out(c)) {
        if (c->fd >= 0)
            set_pollout(c, true);
        return;
    }
    if (c->state == CL_CLOSING) {
        client_close(c);
        return;
    }
    if (c->state == CL_RDB)
        c->state = CL_STREAM;
    if (c->state == CL_STREAM && streaming && !c->done) {
        set_pollout(c, true);
        if (events & EPOLLOUT)
            stream_some(c, now);
    } else {
        set_pollout(c, false);
    }
}

static void report(const char *why)
{
    static struct bench_json j;
    int64_t sent = closed_sent, rdb_sent = closed_rdb, nstream = 0, nconn = 0;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].fd < 0)
            continue;
        nconn++;
        rdb_sent += clients[i].rdb_sent;
        if (clients[i].state == CL_STREAM) {
            nstream++;
            sent += clients[i].off - clients[i].base;
        }
    }
    int64_t now = bench_now_ns();
    json_begin(&j);
    json_str(&j, "tool", "synth_master");
    json_str(&j, "why", why);
    json_num(&j, "t", (double)(now - t0) / 1e9);
    json_num(&j, "stream_t", streaming ? (double)(now - stream_start_ns) / 1e9 : 0.0);
    json_int(&j, "conns", nconn);
    json_int(&j, "streaming", nstream);
    json_int(&j, "sent", sent); /* stream bytes, all connections, closed ones too */
    json_int(&j, "offset", max_offset());
    json_int(&j, "rdb_sent", rdb_sent);
    json_int(&j, "buffer_bytes", (int64_t)stream_len);
    json_num(&j, "cpu_s", bench_cpu_seconds());
    json_end(&j);
}

static void start_streaming(void)
{
    if (streaming)
        return;
    streaming = true;
    stream_start_ns = bench_now_ns();
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0 && clients[i].state == CL_STREAM)
            set_pollout(&clients[i], true);
}

/* SIGUSR1 while holding starts the stream; otherwise SIGUSR1/SIGUSR2 report now. */
static void on_user_signal(int signo)
{
    if (!streaming && signo == SIGUSR1) {
        start_streaming();
        report("start");
    } else {
        report("signal");
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: synth_master --port P [--bind H] [--seconds S] [--bytes B] [--rate B/s]\n"
            "       [--value V] [--keys K] [--hold] [--rdb FILE] [--report-every S]\n"
            "       [--buffer-mb M]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    o = (struct opts){
        .bind = "127.0.0.1", .seconds = 60, .value = 100, .keys = 100000, .buffer_bytes = 8 << 20};
    static const struct option lo[] = {
        {"port", required_argument, NULL, 'p'},      {"bind", required_argument, NULL, 'h'},
        {"seconds", required_argument, NULL, 's'},   {"bytes", required_argument, NULL, 'B'},
        {"rate", required_argument, NULL, 'r'},      {"value", required_argument, NULL, 'v'},
        {"keys", required_argument, NULL, 'k'},      {"hold", no_argument, NULL, 'H'},
        {"rdb", required_argument, NULL, 'f'},       {"report-every", required_argument, NULL, 'e'},
        {"buffer-mb", required_argument, NULL, 'm'}, {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'p':
            o.port = atoi(optarg);
            break;
        case 'h':
            o.bind = optarg;
            break;
        case 's':
            o.seconds = atof(optarg);
            break;
        case 'B':
            o.bytes = bench_parse_count("--bytes", optarg);
            break;
        case 'r':
            o.rate = bench_parse_count("--rate", optarg);
            break;
        case 'v':
            o.value = atoi(optarg);
            break;
        case 'k':
            o.keys = bench_parse_count("--keys", optarg);
            break;
        case 'H':
            o.hold = true;
            break;
        case 'f':
            o.rdb_file = optarg;
            break;
        case 'e':
            o.report_every = atof(optarg);
            break;
        case 'm':
            o.buffer_bytes = (int64_t)(atof(optarg) * (1 << 20));
            break;
        default:
            usage();
        }
    }
    if (o.port <= 0 || o.value <= 0 || o.keys <= 0 || o.buffer_bytes <= 0)
        usage();
    build_rdb();
    build_stream();
    {
        uint64_t x = (uint64_t)bench_now_ns() ^ ((uint64_t)getpid() << 32);
        for (int i = 0; i < 40; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            replid[i] = "0123456789abcdef"[x & 15];
        }
        replid[40] = '\0';
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;

    int lfd = bench_listen(o.bind, o.port);
    if (lfd < 0)
        bench_die("synth_master: listen %s:%d: %s", o.bind, o.port, strerror(errno));
    int sfd = bench_signalfd();
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = TAG_LISTEN};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.u32 = TAG_SIGNAL;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

    t0 = bench_now_ns();
    int64_t end_ns = t0 + (int64_t)(o.seconds * 1e9);
    int64_t next_report = o.report_every > 0 ? t0 + (int64_t)(o.report_every * 1e9) : INT64_MAX;
    if (!o.hold)
        start_streaming();
    const char *why = "end";
    struct epoll_event evs[MAX_CLIENTS + 2];
    bool stop = false;
    while (!stop) {
        int64_t now = bench_now_ns();
        if (now >= end_ns)
            break;
        if (now >= next_report) {
            report("tick");
            next_report += (int64_t)(o.report_every * 1e9);
        }
        /* Connections held back by --rate come back every millisecond. */
        bool throttled = false;
        if (streaming) {
            for (int i = 0; i < MAX_CLIENTS; i++) {
                struct client *c = &clients[i];
                if (c->fd < 0 || c->state != CL_STREAM || c->done || c->pollout)
                    continue;
                if (allowance(c, now) > 0)
                    set_pollout(c, true);
                else
                    throttled = true;
            }
        }
        int64_t wait_ms = (end_ns - now) / 1000000 + 1;
        if (next_report != INT64_MAX && (next_report - now) / 1000000 + 1 < wait_ms)
            wait_ms = (next_report - now) / 1000000 + 1;
        if (throttled)
            wait_ms = 1;
        int n = epoll_wait(ep, evs, MAX_CLIENTS + 2, (int)wait_ms);
        now = bench_now_ns();
        for (int k = 0; k < n; k++) {
            uint32_t tag = evs[k].data.u32;
            if (tag == TAG_LISTEN) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int slot = -1;
                    for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
                        if (clients[i].fd < 0)
                            slot = i;
                    if (slot < 0) {
                        close(fd);
                        continue;
                    }
                    struct client *c = &clients[slot];
                    memset(c, 0, sizeof(*c));
                    c->fd = fd;
                    c->state = CL_COMMANDS;
                    struct epoll_event cev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
            } else if (tag == TAG_SIGNAL) {
                if (bench_signals_read(sfd, on_user_signal)) {
                    why = "stopped";
                    stop = true;
                }
            } else if (tag < MAX_CLIENTS && clients[tag].fd >= 0) {
                client_event(&clients[tag], evs[k].events, now);
            }
        }
    }
    report(why);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0)
            client_close(&clients[i]);
    close(lfd);
    free(stream);
    free(rdb);
    return 0;
}
