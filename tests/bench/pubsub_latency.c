/*
 * pubsub_latency: end-to-end latency of a replication tree, measured with PUBLISH.
 *
 * Stock replicas execute the PUBLISH their master propagates and deliver it to their own
 * subscribers, so a message published on the master reaches a subscriber on every leaf replica
 * through each hop of the tree. This tool subscribes to one channel on every leaf (--sub-ports),
 * publishes messages carrying their send time (CLOCK_MONOTONIC, same process) on the master
 * (--pub-port) one at a time, every --interval-ms (jittered +-50%), and records when each leaf
 * delivered each message. Optionally it drives a steady write load itself (--load-rate SET/s
 * of --load-value bytes, sent every millisecond on its own connection), so the load is paced
 * the same for every topology.
 *
 * Prints one JSON line: per-leaf and all-leaves (the last leaf) latencies in microseconds,
 * one entry per message (-1: not delivered within --timeout-ms). Benchmark tool only.
 *
 *   pubsub_latency --pub-port P --sub-ports P1,P2,... [--host H] [--count M] [--interval-ms I]
 *                  [--warmup K] [--timeout-ms T] [--load-rate OPS] [--load-value V]
 *                  [--load-keys K] [--load-port P]
 */
#include "bench_util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_LEAVES 64
#define CHANNEL    "cascade-bench-lat"
#define TAG_PUB    0xfffffff0u
#define TAG_LOAD   0xfffffff1u
#define TAG_TIMER  0xfffffff2u
#define LOAD_CMDS  8192

struct leaf {
    int fd;
    int port;
    struct bench_buf in;
    bool subscribed;
};

static struct {
    const char *host;
    int pub_port;
    int load_port;
    int ports[MAX_LEAVES];
    int nleaves;
    int count;
    double interval_ms;
    int warmup;
    int timeout_ms;
    int64_t load_rate;
    int load_value;
    int64_t load_keys;
} o;

static struct leaf leaves[MAX_LEAVES];
static int ep;
static int64_t *lat; /* [msg * nleaves + leaf], us; -1 not yet */
static int cur = -1; /* message in flight (index, warmup included), -1 none */
static int got;      /* leaves that delivered cur */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

/* The load: LOAD_CMDS SET commands of equal length in one buffer, sent cyclically. */
static char *load_buf;
static size_t load_cmd_len;
static int load_fd = -1;
static int64_t load_start_ns, load_sent, load_queued, load_behind_max;
static size_t load_pos; /* next byte of load_buf (cyclic) */
static int64_t load_bytes_pending;
static int pub_fd = -1;

static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Parse one push (array of bulk strings and integers). 1 complete, 0 incomplete, -1 error.
 * argv gets the bulk strings only (integers are skipped). */
static int parse_push(const char *p, size_t n, struct bench_cmd *cmd, size_t *used)
{
    cmd->argc = 0;
    size_t pos;
    ssize_t l = bench_line(p, n, &pos);
    if (l < 0)
        return 0;
    if (p[0] != '*')
        return -1;
    long count = strtol(p + 1, NULL, 10);
    for (long i = 0; i < count; i++) {
        size_t u;
        l = bench_line(p + pos, n - pos, &u);
        if (l < 0)
            return 0;
        if (p[pos] == ':') {
            pos += u;
            continue;
        }
        if (p[pos] != '$')
            return -1;
        long blen = strtol(p + pos + 1, NULL, 10);
        if (blen < 0 || blen > 1 << 20)
            return -1;
        pos += u;
        if (n - pos < (size_t)blen + 2)
            return 0;
        if (cmd->argc < BENCH_MAX_ARGS) {
            cmd->argv[cmd->argc] = p + pos;
            cmd->argl[cmd->argc] = (size_t)blen;
            cmd->argc++;
        }
        pos += (size_t)blen + 2;
    }
    *used = pos;
    return 1;
}

static void leaf_readable(int i)
{
    struct leaf *lf = &leaves[i];
    for (;;) {
        ssize_t n = bench_buf_read(&lf->in, lf->fd, 65536);
        if (n == -2)
            break;
        if (n <= 0)
            bench_die("pubsub_latency: subscriber on port %d closed", lf->port);
    }
    int64_t now = bench_now_ns();
    for (;;) {
        struct bench_cmd cmd;
        size_t used;
        int r = parse_push(lf->in.data + lf->in.off, bench_buf_avail(&lf->in), &cmd, &used);
        if (r == 0)
            break;
        if (r < 0)
            bench_die("pubsub_latency: bad push from port %d", lf->port);
        if (cmd.argc >= 1 && cmd.argl[0] == 9 && memcmp(cmd.argv[0], "subscribe", 9) == 0) {
            lf->subscribed = true;
        } else if (cmd.argc >= 3 && cmd.argl[0] == 7 && memcmp(cmd.argv[0], "message", 7) == 0) {
            char tmp[64];
            size_t l = cmd.argl[2] < sizeof(tmp) - 1 ? cmd.argl[2] : sizeof(tmp) - 1;
            memcpy(tmp, cmd.argv[2], l);
            tmp[l] = '\0';
            long long seq, sent_ns;
            if (sscanf(tmp, "%lld:%lld", &seq, &sent_ns) == 2 && seq >= 0 && seq < o.count &&
                lat[seq * o.nleaves + i] < 0) {
                lat[seq * o.nleaves + i] = (now - sent_ns) / 1000;
                if (seq == cur)
                    got++;
            }
        }
        bench_buf_consume(&lf->in, used);
    }
}

static void drain(int fd, const char *what)
{
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_TRUNC | MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        bench_die("pubsub_latency: %s connection closed", what);
    }
}

static void build_load(void)
{
    char key[32];
    int kl = snprintf(key, sizeof(key), "lat:%010d", 0);
    char hdr[128];
    int hl = snprintf(hdr, sizeof(hdr), "*3\r\n$3\r\nSET\r\n$%d\r\n", kl);
    char vhdr[32];
    int vl = snprintf(vhdr, sizeof(vhdr), "$%d\r\n", o.load_value);
    load_cmd_len = (size_t)hl + (size_t)kl + 2 + (size_t)vl + (size_t)o.load_value + 2;
    load_buf = malloc(load_cmd_len * LOAD_CMDS);
    char *p = load_buf;
    for (int i = 0; i < LOAD_CMDS; i++) {
        memcpy(p, hdr, (size_t)hl);
        p += hl;
        snprintf(key, sizeof(key), "lat:%010" PRIu64, xorshift() % (uint64_t)o.load_keys);
        memcpy(p, key, (size_t)kl);
        p += kl;
        memcpy(p, "\r\n", 2);
        p += 2;
        memcpy(p, vhdr, (size_t)vl);
        p += vl;
        for (int k = 0; k < o.load_value; k++)
            p[k] = (char)('a' + (xorshift() % 26));
        p += o.load_value;
        memcpy(p, "\r\n", 2);
        p += 2;
    }
}

/* Queue the SETs due by now and write what the socket takes. */
static void load_tick(int64_t now)
{
    int64_t due = (int64_t)((double)o.load_rate * (double)(now - load_start_ns) / 1e9);
    if (due > load_queued) {
        load_bytes_pending += (due - load_queued) * (int64_t)load_cmd_len;
        load_queued = due;
    }
    size_t total = load_cmd_len * LOAD_CMDS;
    while (load_bytes_pending > 0) {
        size_t n = total - load_pos;
        if ((int64_t)n > load_bytes_pending)
            n = (size_t)load_bytes_pending;
        ssize_t w = write(load_fd, load_buf + load_pos, n);
        if (w > 0) {
            load_pos = (load_pos + (size_t)w) % total;
            load_bytes_pending -= w;
            load_sent += w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        bench_die("pubsub_latency: load connection: %s", strerror(errno));
    }
    if (load_bytes_pending > load_behind_max)
        load_behind_max = load_bytes_pending;
}

static void publish(int seq)
{
    char payload[64];
    snprintf(payload, sizeof(payload), "%d:%" PRId64, seq, bench_now_ns());
    const char *argv[] = {"PUBLISH", CHANNEL, payload};
    char buf[256];
    size_t n = bench_cmd_format(buf, sizeof(buf), 3, argv);
    if (bench_write_all(pub_fd, buf, n, 1000) != 0)
        bench_die("pubsub_latency: publish failed");
    cur = seq;
    got = 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: pubsub_latency --pub-port P --sub-ports P1,P2,... [--host H]\n"
                    "       [--count M] [--interval-ms I] [--warmup K] [--timeout-ms T]\n"
                    "       [--load-rate OPS] [--load-value V] [--load-keys K] [--load-port P]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    o.host = "127.0.0.1";
    o.count = 1000;
    o.interval_ms = 5;
    o.warmup = 20;
    o.timeout_ms = 2000;
    o.load_value = 100;
    o.load_keys = 100000;
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'h'},        {"pub-port", required_argument, NULL, 'p'},
        {"sub-ports", required_argument, NULL, 's'},   {"count", required_argument, NULL, 'n'},
        {"interval-ms", required_argument, NULL, 'i'}, {"warmup", required_argument, NULL, 'w'},
        {"timeout-ms", required_argument, NULL, 't'},  {"load-rate", required_argument, NULL, 'r'},
        {"load-value", required_argument, NULL, 'v'},  {"load-keys", required_argument, NULL, 'k'},
        {"load-port", required_argument, NULL, 'l'},   {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h':
            o.host = optarg;
            break;
        case 'p':
            o.pub_port = atoi(optarg);
            break;
        case 's': {
            char *save = NULL;
            for (char *t = strtok_r(optarg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o.nleaves == MAX_LEAVES)
                    bench_die("too many --sub-ports");
                o.ports[o.nleaves++] = atoi(t);
            }
            break;
        }
        case 'n':
            o.count = atoi(optarg);
            break;
        case 'i':
            o.interval_ms = atof(optarg);
            break;
        case 'w':
            o.warmup = atoi(optarg);
            break;
        case 't':
            o.timeout_ms = atoi(optarg);
            break;
        case 'r':
            o.load_rate = bench_parse_count("--load-rate", optarg);
            break;
        case 'v':
            o.load_value = atoi(optarg);
            break;
        case 'k':
            o.load_keys = bench_parse_count("--load-keys", optarg);
            break;
        case 'l':
            o.load_port = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (o.pub_port <= 0 || o.nleaves == 0 || o.count <= 0 || o.load_value <= 0)
        usage();
    if (!o.load_port)
        o.load_port = o.pub_port;
    int total = o.count + o.warmup;
    lat = malloc((size_t)total * (size_t)o.nleaves * sizeof(*lat));
    for (size_t i = 0; i < (size_t)total * (size_t)o.nleaves; i++)
        lat[i] = -1;
    o.count = total; /* indexes include the warmup; it is cut at the end */

    bench_signalfd();
    ep = epoll_create1(EPOLL_CLOEXEC);
    int tfd = bench_timerfd(1);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = TAG_TIMER};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    for (int i = 0; i < o.nleaves; i++) {
        struct leaf *lf = &leaves[i];
        lf->port = o.ports[i];
        lf->fd = bench_connect(o.host, lf->port);
        if (lf->fd < 0)
            bench_die("pubsub_latency: connect to leaf %d failed", lf->port);
        const char *sargv[] = {"SUBSCRIBE", CHANNEL};
        char buf[128];
        size_t n = bench_cmd_format(buf, sizeof(buf), 2, sargv);
        if (bench_write_all(lf->fd, buf, n, 1000) != 0)
            bench_die("pubsub_latency: subscribe failed");
        struct epoll_event lev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, lf->fd, &lev);
    }
    /* Wait for every SUBSCRIBE to be confirmed. */
    int64_t deadline = bench_now_ns() + 5000000000LL;
    struct epoll_event evs[MAX_LEAVES + 4];
    for (;;) {
        int ok = 0;
        for (int i = 0; i < o.nleaves; i++)
            ok += leaves[i].subscribed;
        if (ok == o.nleaves)
            break;
        if (bench_now_ns() > deadline)
            bench_die("pubsub_latency: SUBSCRIBE not confirmed");
        int n = epoll_wait(ep, evs, MAX_LEAVES + 4, 100);
        for (int k = 0; k < n; k++)
            if (evs[k].data.u32 < (uint32_t)o.nleaves)
                leaf_readable((int)evs[k].data.u32);
    }
    pub_fd = bench_connect(o.host, o.pub_port);
    if (pub_fd < 0)
        bench_die("pubsub_latency: connect to the master %d failed", o.pub_port);
    ev.data.u32 = TAG_PUB;
    epoll_ctl(ep, EPOLL_CTL_ADD, pub_fd, &ev);
    if (o.load_rate > 0) {
        build_load();
        load_fd = bench_connect(o.host, o.load_port);
        if (load_fd < 0)
            bench_die("pubsub_latency: load connection failed");
        struct epoll_event lev = {.events = EPOLLIN, .data.u32 = TAG_LOAD};
        epoll_ctl(ep, EPOLL_CTL_ADD, load_fd, &lev);
        load_start_ns = bench_now_ns();
    }
    /* With a load, let it settle for half a second before the first message. */
    int64_t now = bench_now_ns();
    int64_t next_pub = now + (o.load_rate > 0 ? 500000000LL : 0);
    int64_t msg_deadline = 0;
    int seq = 0;
    int64_t t_start = now;
    while (seq < o.count || cur >= 0) {
        now = bench_now_ns();
        if (cur >= 0 && (got == o.nleaves || now >= msg_deadline)) {
            cur = -1;
            seq++;
            double jitter = 0.5 + (double)(xorshift() % 1000) / 1000.0;
            next_pub = now + (int64_t)(o.interval_ms * jitter * 1e6);
        }
        if (cur < 0 && seq < o.count && now >= next_pub) {
            publish(seq);
            msg_deadline = now + (int64_t)o.timeout_ms * 1000000;
        }
        if (cur < 0 && seq >= o.count)
            break;
        int64_t wake = cur >= 0 ? msg_deadline : next_pub;
        int wait_ms = (int)((wake - now) / 1000000);
        if (wait_ms < 0)
            wait_ms = 0;
        if (cur < 0 && wake - now < 1000000)
            wait_ms = 0; /* sub-millisecond: spin through the timer */
        int n = epoll_wait(ep, evs, MAX_LEAVES + 4, wait_ms);
        for (int k = 0; k < n; k++) {
            uint32_t tag = evs[k].data.u32;
            if (tag < (uint32_t)o.nleaves) {
                leaf_readable((int)tag);
            } else if (tag == TAG_TIMER) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                    bench_die("timerfd: %s", strerror(errno));
                if (load_fd >= 0)
                    load_tick(bench_now_ns());
            } else if (tag == TAG_LOAD) {
                drain(load_fd, "load");
            } else if (tag == TAG_PUB) {
                drain(pub_fd, "publisher"); /* its ":<receivers>" replies */
            }
        }
    }
    double elapsed = (double)(bench_now_ns() - t_start) / 1e9;

    struct bench_json j = {0};
    json_begin(&j);
    json_str(&j, "tool", "pubsub_latency");
    json_int(&j, "count", o.count - o.warmup);
    json_int(&j, "leaves", o.nleaves);
    json_num(&j, "elapsed_s", elapsed);
    json_int(&j, "load_rate", o.load_rate);
    json_int(&j, "load_bytes_sent", load_sent);
    json_int(&j, "load_behind_max_bytes", load_behind_max);
    int64_t *col = malloc((size_t)o.count * sizeof(*col));
    int64_t lost = 0;
    int nm = o.count - o.warmup;
    for (int m = 0; m < nm; m++) {
        int64_t worst = 0;
        for (int i = 0; i < o.nleaves; i++) {
            int64_t v = lat[(size_t)(m + o.warmup) * (size_t)o.nleaves + (size_t)i];
            if (v < 0) {
                worst = -1;
                lost++;
                break;
            }
            if (v > worst)
                worst = v;
        }
        col[m] = worst;
    }
    json_int(&j, "lost", lost);
    json_int_array(&j, "all_us", col, (size_t)nm);
    for (int i = 0; i < o.nleaves; i++) {
        for (int m = 0; m < nm; m++)
            col[m] = lat[(size_t)(m + o.warmup) * (size_t)o.nleaves + (size_t)i];
        char key[32];
        snprintf(key, sizeof(key), "leaf%d_us", i);
        json_int_array(&j, key, col, (size_t)nm);
    }
    json_end(&j);
    bench_buf_free(&j.b);
    for (int i = 0; i < o.nleaves; i++) {
        close(leaves[i].fd);
        bench_buf_free(&leaves[i].in);
    }
    free(col);
    free(lat);
    free(load_buf);
    return 0;
}
