/*
 * bench_util: see bench_util.h. Benchmark tools only.
 */
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bench_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

int bench_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int bench_connect(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(host, port, &ss, &len) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bench_set_nonblock(fd) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int bench_listen(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(host, port, &ss, &len) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int bench_write_all(int fd, const void *data, size_t len, int timeout_ms)
{
    const char *p = data;
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int64_t left_ms = (deadline - bench_now_ns()) / 1000000;
            if (left_ms <= 0)
                return -1;
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, (int)left_ms);
            continue;
        }
        return -1;
    }
    return 0;
}

int bench_signalfd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        bench_die("signalfd: %s", strerror(errno));
    return fd;
}

bool bench_signals_read(int sfd, void (*user)(int signo))
{
    bool stop = false;
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGUSR1 || si.ssi_signo == SIGUSR2)
            user((int)si.ssi_signo);
        else
            stop = true;
    }
    return stop;
}

int bench_timerfd(int64_t period_ms)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0)
        bench_die("timerfd: %s", strerror(errno));
    struct itimerspec its;
    its.it_interval.tv_sec = period_ms / 1000;
    its.it_interval.tv_nsec = (period_ms % 1000) * 1000000;
    its.it_value = its.it_interval;
    timerfd_settime(fd, 0, &its, NULL);
    return fd;
}

void bench_buf_reserve(struct bench_buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + more <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *nd = realloc(b->data, cap);
    if (!nd)
        abort();
    b->data = nd;
    b->cap = cap;
}

void bench_buf_append(struct bench_buf *b, const void *data, size_t n)
{
    bench_buf_reserve(b, n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

void bench_buf_consume(struct bench_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

size_t bench_buf_avail(const struct bench_buf *b)
{
    return b->len - b->off;
}

void bench_buf_free(struct bench_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

ssize_t bench_buf_read(struct bench_buf *b, int fd, size_t max)
{
    bench_buf_reserve(b, max);
    for (;;) {
        ssize_t n = read(fd, b->data + b->len, max);
        if (n > 0) {
            b->len += (size_t)n;
            return n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -2;
        return -1;
    }
}

ssize_t bench_line(const char *p, size_t n, size_t *used)
{
    const char *nl = memchr(p, '\n', n);
    if (!nl)
        return -1;
    size_t l = (size_t)(nl - p);
    *used = l + 1;
    if (l > 0 && p[l - 1] == '\r')
        l--;
    return (ssize_t)l;
}

static bool parse_i64(const char *p, size_t n, int64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    char tmp[24];
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

int bench_cmd_parse(const char *p, size_t n, struct bench_cmd *cmd, size_t *used)
{
    cmd->argc = 0;
    if (n == 0)
        return 0;
    if (p[0] == '*') {
        size_t pos;
        ssize_t l = bench_line(p, n, &pos);
        if (l < 0)
            return n > 64 ? -1 : 0;
        int64_t count;
        if (!parse_i64(p + 1, (size_t)l - 1, &count) || count > BENCH_MAX_ARGS)
            return -1;
        for (int64_t i = 0; i < count; i++) {
            size_t u;
            l = bench_line(p + pos, n - pos, &u);
            if (l < 0)
                return n - pos > 64 ? -1 : 0;
            int64_t blen;
            if (p[pos] != '$' || !parse_i64(p + pos + 1, (size_t)l - 1, &blen) || blen < 0 ||
                blen > (1 << 20))
                return -1;
            pos += u;
            if (n - pos < (size_t)blen + 2)
                return 0;
            cmd->argv[cmd->argc] = p + pos;
            cmd->argl[cmd->argc] = (size_t)blen;
            cmd->argc++;
            pos += (size_t)blen + 2;
        }
        *used = pos;
        return 1;
    }
    size_t u;
    ssize_t l = bench_line(p, n, &u);
    if (l < 0)
        return n > 65536 ? -1 : 0;
    size_t i = 0;
    while (i < (size_t)l && cmd->argc < BENCH_MAX_ARGS) {
        while (i < (size_t)l && p[i] == ' ')
            i++;
        if (i >= (size_t)l)
            break;
        size_t s = i;
        while (i < (size_t)l && p[i] != ' ')
            i++;
        cmd->argv[cmd->argc] = p + s;
        cmd->argl[cmd->argc] = i - s;
        cmd->argc++;
    }
    *used = u;
    return 1;
}

bool bench_arg_is(const struct bench_cmd *cmd, int i, const char *s)
{
    return i < cmd->argc && cmd->argl[i] == strlen(s) &&
           strncasecmp(cmd->argv[i], s, cmd->argl[i]) == 0;
}

size_t bench_cmd_format(char *out, size_t cap, int argc, const char *const *argv)
{
    int n = snprintf(out, cap, "*%d\r\n", argc);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t len = (size_t)n;
    for (int i = 0; i < argc; i++) {
        size_t al = strlen(argv[i]);
        n = snprintf(out + len, cap - len, "$%zu\r\n", al);
        if (n < 0 || (size_t)n >= cap - len || cap - len - (size_t)n < al + 3)
            return 0;
        len += (size_t)n;
        memcpy(out + len, argv[i], al);
        len += al;
        memcpy(out + len, "\r\n", 2);
        len += 2;
    }
    return len;
}

static int send_cmd(int fd, int argc, const char *const *argv)
{
    char buf[512];
    size_t n = bench_cmd_format(buf, sizeof(buf), argc, argv);
    if (n == 0)
        return -1;
    return bench_write_all(fd, buf, n, 2000);
}

int bench_send_ack(int fd, int64_t offset)
{
    char off[32];
    snprintf(off, sizeof(off), "%" PRId64, offset);
    const char *argv[] = {"REPLCONF", "ACK", off};
    return send_cmd(fd, 3, argv);
}

int hs_start(struct hs *h, int fd, int listening_port)
{
    memset(h, 0, sizeof(*h));
    h->listening_port = listening_port;
    h->state = HS_PING;
    const char *argv[] = {"PING"};
    return send_cmd(fd, 1, argv);
}

static void hs_fail(struct hs *h, const char *what, const char *line, size_t l)
{
    snprintf(h->err, sizeof(h->err), "%s: %.*s", what, (int)(l > 100 ? 100 : l), line);
    h->state = HS_FAILED;
}

static int hs_online(struct hs *h, int fd, void (*rdb_done_cb)(void *, bool), void *ctx)
{
    h->state = HS_STREAM;
    if (rdb_done_cb)
        rdb_done_cb(ctx, h->eof_format);
    /* After an EOF-format RDB the master streams nothing before the first ACK; after a sized
     * one an early ACK is harmless. */
    return bench_send_ack(fd, h->offset);
}

int64_t hs_rdb_skippable(const struct hs *h)
{
    return h->state == HS_RDB_LEN ? h->rdb_left : 0;
}

void hs_rdb_skipped(struct hs *h, int64_t n, void (*rdb_done_cb)(void *, bool), void *ctx)
{
    (void)rdb_done_cb;
    (void)ctx;
    h->rdb_left -= n;
    h->rdb_bytes += n;
}

int hs_feed(struct hs *h, int fd, struct bench_buf *in,
            void (*rdb_cb)(void *ctx, const char *data, size_t n),
            void (*rdb_done_cb)(void *ctx, bool eof_format), void *ctx)
{
    for (;;) {
        const char *p = in->data + in->off;
        size_t n = bench_buf_avail(in);
        if (h->state == HS_STREAM || h->state == HS_FAILED)
            return (int)h->state;
        if (h->state == HS_RDB_LEN) {
            if (h->rdb_left == 0)
                return hs_online(h, fd, rdb_done_cb, ctx) == 0 ? (int)h->state : -1;
            if (n == 0)
                return (int)h->state;
            size_t take = n < (uint64_t)h->rdb_left ? n : (size_t)h->rdb_left;
            if (rdb_cb)
                rdb_cb(ctx, p, take);
            bench_buf_consume(in, take);
            h->rdb_left -= (int64_t)take;
            h->rdb_bytes += (int64_t)take;
            continue;
        }
        if (h->state == HS_RDB_EOF) {
            if (n == 0)
                return (int)h->state;
            if (rdb_cb)
                rdb_cb(ctx, p, n);
            if (n >= 40) {
                memcpy(h->tail, p + n - 40, 40);
                h->tail_len = 40;
            } else {
                size_t keep = h->tail_len + n > 40 ? 40 - n : h->tail_len;
                memmove(h->tail, h->tail + h->tail_len - keep, keep);
                memcpy(h->tail + keep, p, n);
                h->tail_len = keep + n;
            }
            h->rdb_bytes += (int64_t)n;
            bench_buf_consume(in, n);
            /* Nothing follows the mark before our ACK, so it is always at the end. */
            if (h->tail_len == 40 && memcmp(h->tail, h->mark, 40) == 0) {
                h->rdb_bytes -= 40;
                return hs_online(h, fd, rdb_done_cb, ctx) == 0 ? (int)h->state : -1;
            }
            continue;
        }
        size_t used;
        ssize_t l = bench_line(p, n, &used);
        if (l < 0)
            return (int)h->state;
        char line[256];
        size_t ll = (size_t)l < sizeof(line) - 1 ? (size_t)l : sizeof(line) - 1;
        memcpy(line, p, ll);
        line[ll] = '\0';
        bench_buf_consume(in, used);
        if (ll == 0)
            continue; /* "\n" keepalive */
        switch (h->state) {
        case HS_PING: {
            if (line[0] == '-' && strncmp(line, "-NOAUTH", 7) != 0) {
                hs_fail(h, "PING refused", line, ll);
                break;
            }
            char port[16];
            snprintf(port, sizeof(port), "%d", h->listening_port);
            const char *argv[] = {"REPLCONF", "listening-port", port};
            if (send_cmd(fd, 3, argv) != 0)
                return -1;
            h->state = HS_PORT;
            break;
        }
        case HS_PORT: {
            const char *argv[] = {"REPLCONF", "capa", "eof", "capa", "psync2"};
            if (send_cmd(fd, 5, argv) != 0)
                return -1;
            h->state = HS_CAPA;
            break;
        }
        case HS_CAPA: {
            const char *argv[] = {"PSYNC", "?", "-1"};
            if (send_cmd(fd, 3, argv) != 0)
                return -1;
            h->state = HS_PSYNC;
            break;
        }
        case HS_PSYNC:
            if (strncmp(line, "+FULLRESYNC ", 12) == 0) {
                char id[64];
                long long off;
                if (sscanf(line + 12, "%63s %lld", id, &off) != 2 || strlen(id) != 40) {
                    hs_fail(h, "bad FULLRESYNC", line, ll);
                    break;
                }
                memcpy(h->replid, id, 41);
                h->offset = off;
                h->state = HS_PREAMBLE;
            } else if (strncmp(line, "+CONTINUE", 9) == 0) {
                h->state = HS_STREAM; /* not expected after PSYNC ? -1 */
            } else {
                hs_fail(h, "PSYNC refused", line, ll);
            }
            break;
        case HS_PREAMBLE:
            if (strncmp(line, "$EOF:", 5) == 0 && ll == 45) {
                memcpy(h->mark, line + 5, 40);
                h->eof_format = true;
                h->state = HS_RDB_EOF;
            } else if (line[0] == '$') {
                int64_t len;
                if (!parse_i64(line + 1, ll - 1, &len) || len < 0) {
                    hs_fail(h, "bad RDB preamble", line, ll);
                    break;
                }
                h->rdb_left = len;
                h->state = HS_RDB_LEN;
            } else {
                hs_fail(h, "RDB refused", line, ll);
            }
            break;
        default:
            break;
        }
    }
}

static void json_key(struct bench_json *j, const char *key)
{
    if (j->need_comma)
        bench_buf_append(&j->b, ",", 1);
    j->need_comma = true;
    char tmp[128];
    int n = snprintf(tmp, sizeof(tmp), "\"%s\":", key);
    bench_buf_append(&j->b, tmp, (size_t)n);
}

void json_begin(struct bench_json *j)
{
    j->b.off = j->b.len = 0;
    j->need_comma = false;
    bench_buf_append(&j->b, "{", 1);
}

void json_int(struct bench_json *j, const char *key, int64_t v)
{
    json_key(j, key);
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    bench_buf_append(&j->b, tmp, (size_t)n);
}

void json_num(struct bench_json *j, const char *key, double v)
{
    json_key(j, key);
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), "%.6f", v);
    bench_buf_append(&j->b, tmp, (size_t)n);
}

void json_str(struct bench_json *j, const char *key, const char *v)
{
    json_key(j, key);
    bench_buf_append(&j->b, "\"", 1);
    for (const char *p = v; *p; p++) {
        char c = *p;
        if (c == '"' || c == '\\') {
            bench_buf_append(&j->b, "\\", 1);
            bench_buf_append(&j->b, &c, 1);
        } else if ((unsigned char)c < 0x20) {
            bench_buf_append(&j->b, " ", 1);
        } else {
            bench_buf_append(&j->b, &c, 1);
        }
    }
    bench_buf_append(&j->b, "\"", 1);
}

void json_int_array(struct bench_json *j, const char *key, const int64_t *v, size_t n)
{
    json_key(j, key);
    bench_buf_append(&j->b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        char tmp[32];
        int l = snprintf(tmp, sizeof(tmp), "%s%" PRId64, i ? "," : "", v[i]);
        bench_buf_append(&j->b, tmp, (size_t)l);
    }
    bench_buf_append(&j->b, "]", 1);
}

void json_end(struct bench_json *j)
{
    bench_buf_append(&j->b, "}\n", 2);
    fwrite(j->b.data + j->b.off, 1, bench_buf_avail(&j->b), stdout);
    fflush(stdout);
}

int64_t bench_parse_count(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        bench_die("%s: not a count: %s", opt, s);
    switch (*end) {
    case 'k':
    case 'K':
        v *= 1e3;
        end++;
        break;
    case 'm':
    case 'M':
        v *= 1e6;
        end++;
        break;
    case 'g':
    case 'G':
        v *= 1e9;
        end++;
        break;
    default:
        break;
    }
    if (*end)
        bench_die("%s: not a count: %s", opt, s);
    return (int64_t)v;
}
