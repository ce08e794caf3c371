/*
 * upstream_io: the bytes of the upstream link, below its protocol state machine (upstream.c).
 * Owns, through struct upstream (upstream_io.h): the connection (name lookup, TCP or TLS
 * connect, socket options), the cascade framing decoder, and in STREAM the read path: a
 * plain link read with its own event straight into the owner's room (its backlog's blocks),
 * a framed link decoded into it, each piece framed (GETACK answered at once, offsets checked)
 * and passed to on_stream. Must not interpret the handshake or the RDB (upstream.c and
 * rdbrecv.c do), and must not touch replicas or the backlog beyond the room it is lent.
 */
#include "upstream_io.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "frame.h"
#include "log.h"
#include "resolve.h"
#include "tls.h"

#define MAX_READ_BYTES (256 * 1024) /* one TLS read */
#define DRAIN_BYTES    (512 * 1024) /* read ahead per wakeup, at most */
#define DRAIN_IOV      16           /* pieces of one read, at most */

static void add_counters(struct wanlink_counters *t, const struct wanlink_counters *c)
{
    t->raw_bytes += c->raw_bytes;
    t->wire_bytes += c->wire_bytes;
    t->frames += c->frames;
    t->heartbeats += c->heartbeats;
}

void upstream_io_close(struct upstream *u)
{
    resolve_cancel(u->lookup);
    u->lookup = NULL;
    if (u->stream_ev)
        event_del(u->stream_ev); /* not freed: we may be inside its callback */
    if (u->bev) {
        /* libevent defers the real free if we are inside this bufferevent's callback. */
        bufferevent_free(u->bev);
        u->bev = NULL;
    }
    if (u->frame) {
        add_counters(&u->frame_total, wanlink_in_counters(u->frame));
        wanlink_in_free(u->frame);
        u->frame = NULL;
        evbuffer_free(u->plain);
        u->plain = NULL;
    }
    u->frame_offered = u->frame_zstd = false;
}

void upstream_io_free(struct upstream *u)
{
    if (u->stream_ev)
        event_free(u->stream_ev);
    free(u->rbuf);
}

struct evbuffer *upstream_io_input(struct upstream *u)
{
    return u->frame ? u->plain : bufferevent_get_input(u->bev);
}

int upstream_io_decode(struct upstream *u)
{
    if (!u->frame || !u->bev)
        return 0;
    char err[FRAME_ERR_LEN + 32];
    if (wanlink_in_decode(u->frame, bufferevent_get_input(u->bev), u->plain, err, sizeof(err)) !=
        0) {
        char why[sizeof(err) + 64];
        snprintf(why, sizeof(why), "bad frame from the upstream relay: %s", err);
        upstream_fail(u, why);
        return -1;
    }
    return 0;
}

void upstream_io_begin_framing(struct upstream *u)
{
    if (!u->frame_offered || u->frame)
        return;
    u->frame = wanlink_in_new();
    u->plain = evbuffer_new();
    if (!u->plain)
        abort();
    log_info(upstream_component(u), u->peer, "cascade link: %s frames",
             u->frame_zstd ? "zstd" : "uncompressed");
}

static void send_command(struct upstream *u, int argc, const char *const *argv)
{
    struct evbuffer *out = bufferevent_get_output(u->bev);
    evbuffer_add_printf(out, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        evbuffer_add_printf(out, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
}

void upstream_io_send(struct upstream *u, const struct handshake_batch *b)
{
    for (int i = 0; i < b->n; i++)
        send_command(u, b->cmd[i].argc, b->cmd[i].argv);
}

void upstream_io_send_ack(struct upstream *u)
{
    struct handshake_batch b;
    handshake_ack(&b, u->offset);
    upstream_io_send(u, &b);
    u->last_ack_ms = net_now_ms();
}

/* Frame stream bytes and pass them on, answering GETACKs on the way. Returns the bytes taken
 * (fewer than len if the link went down meanwhile), or -1 when the framing failed. */
static ssize_t scan_stream(struct upstream *u, const char *data, size_t len)
{
    char err[RESP_ERR_LEN];
    size_t done = 0;
    while (u->state == UPSTREAM_STREAM && done < len) {
        const char *p = data + done;
        bool getack = false;
        struct resp_stream saved = u->scan; /* a rejected chunk must not move the framing */
        ssize_t n = resp_stream_scan(&u->scan, p, len - done, &getack, err, sizeof(err));
        if (n < 0) {
            u->scan = saved;
            char sample[96], why[384];
            resp_escape(p, len - done < 48 ? len - done : 48, sample, sizeof(sample));
            snprintf(why, sizeof(why),
                     "stream protocol error at offset %" PRId64 ": %s near \"%s\"", u->offset + 1,
                     err, sample);
            upstream_fail(u, why);
            return -1;
        }
        if (u->offset + n > RESP_MAX_OFFSET) {
            upstream_fail(u, "protocol error: the stream offset passes 2^62");
            return -1;
        }
        u->offset += n;
        u->stream_bytes += n;
        done += (size_t)n;
        u->fed = true;
        if (u->cb.on_stream) /* a boundary to start a log segment at: the first one there is */
            u->cb.on_stream(u->cb.ctx, p, (size_t)n,
                            resp_stream_at_boundary(&saved) ? 0 : u->scan.last_boundary);
        if (getack)
            upstream_io_send_ack(u);
    }
    return (ssize_t)done;
}

/* The bytes of one read were all passed on (however many on_stream calls they took). */
static void stream_end(struct upstream *u)
{
    if (u->fed && u->cb.on_stream_end)
        u->cb.on_stream_end(u->cb.ctx);
    u->fed = false;
}

/* Where the next DRAIN_BYTES of stream go: the owner's room (its backlog's free blocks, so
 * the bytes are not copied again), else the link's own buffer, which lives as long as u.
 * Returns the iovecs filled (at least one). */
static int stream_room(struct upstream *u, struct iovec iov[DRAIN_IOV])
{
    int n = u->cb.stream_room ? u->cb.stream_room(u->cb.ctx, DRAIN_BYTES, iov, DRAIN_IOV) : 0;
    if (n == 0) {
        if (!u->rbuf && !(u->rbuf = malloc(DRAIN_BYTES)))
            abort();
        iov[n++] = (struct iovec){.iov_base = u->rbuf, .iov_len = DRAIN_BYTES};
    }
    return n;
}

/*
 * A framed link in STREAM: decode the frames straight into where the owner keeps the stream
 * (its backlog's free blocks, as a plain link reads into them), or into the link's own
 * buffer; then frame the commands. Keeps decoding while the decoder fills the room it was
 * given (it may hold more than the wire shows).
 */
static void read_frames(struct upstream *u)
{
    char err[FRAME_ERR_LEN];
    for (;;) {
        if (u->state != UPSTREAM_STREAM || !u->bev)
            return;
        struct iovec iov[DRAIN_IOV];
        int n = stream_room(u, iov);
        for (int i = 0; i < n; i++) {
            ssize_t got = wanlink_in_decode_into(u->frame, bufferevent_get_input(u->bev),
                                                 iov[i].iov_base, iov[i].iov_len, err, sizeof(err));
            if (got < 0) {
                char why[sizeof(err) + 64];
                snprintf(why, sizeof(why), "bad frame from the upstream relay: %s", err);
                upstream_fail(u, why);
                return;
            }
            if (got > 0 &&
                (scan_stream(u, iov[i].iov_base, (size_t)got) < 0 || u->state != UPSTREAM_STREAM))
                return; /* the framing failed, or the link went down meanwhile */
            if ((size_t)got < iov[i].iov_len)
                return; /* all decoded */
        }
    }
}

/* What the bufferevent's input holds (a TLS link's reads, or bytes read before STREAM), or
 * what a framed link decoded before STREAM; then a framed link's new frames. */
void upstream_io_read_stream(struct upstream *u)
{
    while (u->state == UPSTREAM_STREAM && u->bev) {
        struct evbuffer *in = upstream_io_input(u);
        struct evbuffer_iovec v;
        if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = scan_stream(u, v.iov_base, v.iov_len);
        if (n <= 0 || !u->bev)
            break;
        evbuffer_drain(upstream_io_input(u), (size_t)n);
    }
    if (u->frame)
        read_frames(u);
    stream_end(u);
}

/* A plain link in STREAM: read up to DRAIN_BYTES where the owner keeps the stream (its
 * backlog's blocks, so the bytes are not copied again), or into the link's own buffer, which
 * lives as long as u; then frame it. */
static void stream_read(struct upstream *u, evutil_socket_t fd)
{
    if (u->state != UPSTREAM_STREAM || !u->bev)
        return;
    upstream_io_read_stream(u); /* anything the bufferevent read before we took over comes first */
    if (u->state != UPSTREAM_STREAM)
        return;
    struct iovec iov[DRAIN_IOV];
    int n = stream_room(u, iov);
    int err = 0;
    bool eof = false;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t got = recvmsg(fd, &msg, MSG_DONTWAIT);
    if (got == 0)
        eof = true;
    else if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        err = errno;
    size_t have = got > 0 ? (size_t)got : 0;
    if (have)
        u->last_io_ms = net_now_ms();
    /* what arrived before an EOF or error is the stream's too */
    for (int i = 0; i < n && have > 0; i++) {
        size_t k = have < iov[i].iov_len ? have : iov[i].iov_len;
        if (scan_stream(u, iov[i].iov_base, k) < 0 || u->state != UPSTREAM_STREAM)
            return; /* the framing failed, or the link went down meanwhile */
        have -= k;
    }
    if (eof)
        upstream_fail(u, "connection closed by upstream");
    else if (err)
        upstream_fail(u, strerror(err));
}

static void stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct upstream *u = arg;
    stream_read(u, fd);
    stream_end(u);
}

void upstream_io_stream_reads(struct upstream *u)
{
    if (u->tls || u->frame || !u->bev)
        return; /* bufferevent_openssl reads up to its max_single_read itself; frames are
                   decoded from the bufferevent's input */
    /* A plain link reads the stream itself: libevent 2.1 reads at most 4 KB per wakeup, after
     * an ioctl(FIONREAD), and the stream is bulk. What the bufferevent already read stays in
     * its input and is taken first. */
    evutil_socket_t fd = bufferevent_getfd(u->bev);
    if (!u->stream_ev)
        u->stream_ev = event_new(u->base, fd, EV_READ | EV_PERSIST, stream_read_cb, u);
    else
        event_assign(u->stream_ev, u->base, fd, EV_READ | EV_PERSIST, stream_read_cb, u);
    if (!u->stream_ev)
        abort();
    bufferevent_disable(u->bev, EV_READ);
    if (!u->paused)
        event_add(u->stream_ev, NULL);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct upstream *u = arg;
    if (what & BEV_EVENT_CONNECTED) {
        net_tune(bufferevent_getfd(bev));
        char err[160];
        if (net_tune_link(bufferevent_getfd(bev), &u->wan.tcp, err, sizeof(err)) != 0)
            log_warning(upstream_component(u), u->peer, "socket option %s (kept the kernel's)",
                        err);
        u->last_io_ms = net_now_ms();
        log_info(upstream_component(u), u->peer, "connected");
        upstream_connected(u);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        upstream_fail(u, "connection closed by upstream");
    } else if (what & BEV_EVENT_ERROR) {
        char why[300];
        unsigned long ssl_err = u->tls ? bufferevent_get_openssl_error(bev) : 0;
        if (ssl_err) {
            char buf[256];
            ERR_error_string_n(ssl_err, buf, sizeof(buf));
            snprintf(why, sizeof(why), "TLS: %s", buf);
        } else {
            snprintf(why, sizeof(why), "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        }
        upstream_fail(u, why);
    }
}

/* The upstream's address is known (or not): open the link. */
static void resolved_cb(void *ctx, int ok, const struct sockaddr *addr, socklen_t len,
                        const char *why)
{
    struct upstream *u = ctx;
    u->lookup = NULL;
    if (!ok) {
        upstream_fail(u, why);
        return;
    }
    char err[256];
    if (u->tls) {
        const char *name = u->server_name[0] ? u->server_name : u->host;
        SSL *ssl = tls_client_session(u->tls, name, err, sizeof(err));
        if (!ssl) {
            upstream_fail(u, err);
            return;
        }
        u->bev = bufferevent_openssl_socket_new(u->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (u->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(u->bev, 1);
    } else {
        u->bev = bufferevent_socket_new(u->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!u->bev)
        abort();
    bufferevent_setcb(u->bev, upstream_read_cb, NULL, event_cb, u);
    bufferevent_set_max_single_read(u->bev, MAX_READ_BYTES);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(u->bev, addr, (int)len) != 0) {
        upstream_fail(u, "connect failed");
        return;
    }
}

void upstream_io_connect(struct upstream *u)
{
    /* connect-timeout covers the lookup too (cron, CONNECTING) */
    u->lookup = resolver_lookup(u->resolver, u->host, u->port, resolved_cb, u);
}

void upstream_pause(struct upstream *u)
{
    if (u->stream_ev)
        event_del(u->stream_ev);
    if (u->bev)
        bufferevent_disable(u->bev, EV_READ);
    u->paused = true;
}

const char *upstream_link_mode(const struct upstream *u)
{
    return !u->frame ? "plain" : u->frame_zstd ? "zstd" : "raw";
}

struct wanlink_counters upstream_link_counters(const struct upstream *u)
{
    struct wanlink_counters t = u->frame_total;
    if (u->frame)
        add_counters(&t, wanlink_in_counters(u->frame));
    return t;
}
