/*
 * wanem: a WAN emulator for tests and benchmarks. A TCP proxy on loopback that forwards every
 * connection to a target with a one-way delay per direction and a bandwidth cap per direction
 * (a token-bucket-free serialisation model: a chunk leaves the "wire" len/rate after the one
 * before it, and arrives `delay` later), and that can go silent without closing anything
 * (blackhole: nothing is read or forwarded, sockets stay open) or cut every link with a reset.
 *
 *   wanem --listen PORT --target PORT [--delay-ms N] [--rate BYTES_PER_S] --control PORT
 *
 * The control port takes one line per command and answers one line:
 *   delay <ms>          one-way delay of both directions
 *   rate <bytes/s>      cap of each direction (0: none)
 *   blackhole on|off    stop (resume) forwarding and reading, keeping every socket open
 *   reset               close every link with a TCP reset
 *   stats               "OK links=N up=BYTES down=BYTES" (up: client -> target)
 * Bounded: at most MAX_LINKS links, at most QUEUE_MAX bytes queued per direction (a full
 * queue stops reading that side, so TCP pushes back as on a real link). Loopback only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINKS 16
#define CHUNK     16384
#define QUEUE_MAX (8 << 20)
#define MAX_CTRL  4

struct chunk {
    struct chunk *next;
    int64_t due_us; /* when it may be written to the far side */
    size_t len, off;
    char data[];
};

struct dir {
    int from, to;              /* fds */
    struct chunk *head, *tail; /* queued, in order */
    size_t queued;
    int64_t wire_free_us; /* when the emulated wire is free for the next chunk */
    int64_t bytes;
    bool eof; /* from closed: close to's write side once drained */
};

struct link {
    bool used;
    struct dir up, down; /* up: client -> target */
};

static struct link links[MAX_LINKS];
static int64_t delay_us, rate_bps;
static bool blackhole;
static int target_port;
static int64_t total_up, total_down;

/* Bytes one direction may hold: what is in flight on the emulated wire (rate x delay) plus
 * 100 ms of queue, as a router buffer; without a rate cap, QUEUE_MAX. */
static size_t queue_limit(void)
{
    if (rate_bps <= 0)
        return QUEUE_MAX;
    return (size_t)(rate_bps * (delay_us + 100000) / 1000000) + CHUNK;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0) {
        fprintf(stderr, "wanem: cannot listen on %d: %s\n", port, strerror(errno));
        exit(1);
    }
    return fd;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void free_dir(struct dir *d)
{
    while (d->head) {
        struct chunk *c = d->head;
        d->head = c->next;
        free(c);
    }
    d->tail = NULL;
    d->queued = 0;
}

static void close_link(struct link *l, bool reset)
{
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(l->up.from, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        setsockopt(l->down.from, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(l->up.from);
    close(l->down.from);
    free_dir(&l->up);
    free_dir(&l->down);
    l->used = false;
}

static void accept_one(int lfd)
{
    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return;
    struct link *l = NULL;
    for (int i = 0; i < MAX_LINKS; i++)
        if (!links[i].used) {
            l = &links[i];
            break;
        }
    int t = l ? dial(target_port) : -1;
    if (t < 0) {
        close(c);
        return;
    }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(l, 0, sizeof(*l));
    l->used = true;
    l->up.from = c;
    l->up.to = t;
    l->down.from = t;
    l->down.to = c;
}

/* Read what `from` has into a chunk due after the wire and the delay. -1: the link is over. */
static int read_dir(struct dir *d, int64_t now, int64_t *total)
{
    struct chunk *c = malloc(sizeof(*c) + CHUNK);
    if (!c)
        abort();
    ssize_t n = read(d->from, c->data, CHUNK);
    if (n <= 0) {
        free(c);
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            d->eof = true;
            return 0;
        }
        return 0;
    }
    int64_t start = d->wire_free_us > now ? d->wire_free_us : now;
    int64_t serial = rate_bps > 0 ? (int64_t)n * 1000000 / rate_bps : 0;
    d->wire_free_us = start + serial;
    c->due_us = d->wire_free_us + delay_us;
    c->len = (size_t)n;
    c->off = 0;
    c->next = NULL;
    if (d->tail)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    d->queued += (size_t)n;
    d->bytes += n;
    *total += n;
    return 0;
}

/* Write the chunks that are due. -1: the far side is gone. */
static int write_dir(struct dir *d, int64_t now)
{
    while (d->head && d->head->due_us <= now) {
        struct chunk *c = d->head;
        ssize_t w = write(d->to, c->data + c->off, c->len - c->off);
        if (w < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        c->off += (size_t)w;
        d->queued -= (size_t)w;
        if (c->off < c->len)
            return 0;
        d->head = c->next;
        if (!d->head)
            d->tail = NULL;
        free(c);
    }
    if (d->eof && !d->head)
        shutdown(d->to, SHUT_WR);
    return 0;
}

static void control_line(int fd, char *line)
{
    char out[256];
    long long v;
    char arg[16];
    if (sscanf(line, "delay %lld", &v) == 1 && v >= 0) {
        delay_us = v * 1000;
        snprintf(out, sizeof(out), "OK\n");
    } else if (sscanf(line, "rate %lld", &v) == 1 && v >= 0) {
        rate_bps = v;
        snprintf(out, sizeof(out), "OK\n");
    } else if (sscanf(line, "blackhole %15s", arg) == 1) {
        blackhole = strcmp(arg, "on") == 0;
        snprintf(out, sizeof(out), "OK\n");
    } else if (strncmp(line, "reset", 5) == 0) {
        int n = 0;
        for (int i = 0; i < MAX_LINKS; i++)
            if (links[i].used) {
                close_link(&links[i], true);
                n++;
            }
        snprintf(out, sizeof(out), "OK %d\n", n);
    } else if (strncmp(line, "stats", 5) == 0) {
        int n = 0;
        for (int i = 0; i < MAX_LINKS; i++)
            n += links[i].used;
        snprintf(out, sizeof(out), "OK links=%d up=%lld down=%lld\n", n, (long long)total_up,
                 (long long)total_down);
    } else {
        snprintf(out, sizeof(out), "ERR unknown command\n");
    }
    if (write(fd, out, strlen(out)) < 0) {
        /* the controller went away: nothing to tell */
    }
}

int main(int argc, char **argv)
{
    int listen_port = 0, control_port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0)
            listen_port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--target") == 0)
            target_port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--control") == 0)
            control_port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--delay-ms") == 0)
            delay_us = atoll(argv[i + 1]) * 1000;
        else if (strcmp(argv[i], "--rate") == 0)
            rate_bps = atoll(argv[i + 1]);
        else {
            fprintf(stderr, "wanem: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!listen_port || !target_port || !control_port) {
        fprintf(stderr, "usage: wanem --listen PORT --target PORT --control PORT "
                        "[--delay-ms N] [--rate BYTES_PER_S]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(listen_port), cfd = listen_on(control_port);
    int ctrl[MAX_CTRL];
    char cbuf[MAX_CTRL][256];
    size_t clen[MAX_CTRL];
    for (int i = 0; i < MAX_CTRL; i++)
        ctrl[i] = -1;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct pollfd p[2 + MAX_CTRL + 4 * MAX_LINKS];
        int np = 0;
        p[np++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        p[np++] = (struct pollfd){.fd = cfd, .events = POLLIN};
        for (int i = 0; i < MAX_CTRL; i++)
            if (ctrl[i] >= 0)
                p[np++] = (struct pollfd){.fd = ctrl[i], .events = POLLIN};
        int64_t now = now_us(), next = now + 100000;
        for (int i = 0; i < MAX_LINKS; i++) {
            struct link *l = &links[i];
            if (!l->used || blackhole)
                continue;
            struct dir *ds[2] = {&l->up, &l->down};
            for (int k = 0; k < 2; k++) {
                struct dir *d = ds[k];
                if (!d->eof && d->queued < queue_limit())
                    p[np++] = (struct pollfd){.fd = d->from, .events = POLLIN};
                if (d->head) {
                    if (d->head->due_us <= now)
                        p[np++] = (struct pollfd){.fd = d->to, .events = POLLOUT};
                    else if (d->head->due_us < next)
                        next = d->head->due_us;
                }
            }
        }
        int timeout_ms = (int)((next - now + 999) / 1000);
        if (poll(p, (nfds_t)np, timeout_ms < 0 ? 0 : timeout_ms) < 0 && errno != EINTR)
            return 1;
        now = now_us();
        if (p[0].revents & POLLIN)
            accept_one(lfd);
        if (p[1].revents & POLLIN) {
            int c = accept4(cfd, NULL, NULL, SOCK_CLOEXEC);
            int slot = -1;
            for (int i = 0; i < MAX_CTRL && c >= 0; i++)
                if (ctrl[i] < 0) {
                    slot = i;
                    break;
                }
            if (slot < 0 && c >= 0)
                close(c);
            else if (c >= 0) {
                ctrl[slot] = c;
                clen[slot] = 0;
            }
        }
        for (int i = 0; i < MAX_CTRL; i++) {
            if (ctrl[i] < 0)
                continue;
            bool ready = false;
            for (int k = 2; k < np; k++)
                if (p[k].fd == ctrl[i] && (p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                    ready = true;
            if (!ready)
                continue;
            ssize_t n = read(ctrl[i], cbuf[i] + clen[i], sizeof(cbuf[i]) - 1 - clen[i]);
            if (n <= 0) {
                close(ctrl[i]);
                ctrl[i] = -1;
                continue;
            }
            clen[i] += (size_t)n;
            cbuf[i][clen[i]] = '\0';
            char *nl;
            while ((nl = strchr(cbuf[i], '\n'))) {
                *nl = '\0';
                control_line(ctrl[i], cbuf[i]);
                size_t rest = clen[i] - (size_t)(nl + 1 - cbuf[i]);
                memmove(cbuf[i], nl + 1, rest + 1);
                clen[i] = rest;
            }
            if (clen[i] >= sizeof(cbuf[i]) - 1)
                clen[i] = 0; /* an over-long line is dropped */
        }
        if (blackhole)
            continue;
        for (int i = 0; i < MAX_LINKS; i++) {
            struct link *l = &links[i];
            if (!l->used)
                continue;
            if (!l->up.eof && l->up.queued < queue_limit())
                read_dir(&l->up, now, &total_up);
            if (!l->down.eof && l->down.queued < queue_limit())
                read_dir(&l->down, now, &total_down);
            if (write_dir(&l->up, now) != 0 || write_dir(&l->down, now) != 0 ||
                (l->up.eof && l->down.eof && !l->up.head && !l->down.head))
                close_link(l, false);
        }
    }
}
