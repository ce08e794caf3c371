/*
 * net: thin wrappers over the socket API. getaddrinfo (blocking) serves only the listen
 * addresses at start-up; the links' names go through resolve.c (evdns), never the loop.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

/* The addresses to listen on for host:port. */
static struct addrinfo *resolve_passive(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return NULL;
    }
    return res;
}

int net_listen(const char *addr, int port, int backlog, char *err, size_t errlen)
{
    struct addrinfo *res = resolve_passive(addr, port, err, errlen);
    if (!res)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0 &&
            set_nonblock(fd) == 0)
            break;
        snprintf(err, errlen, "cannot listen on %s:%d: %s", addr, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int64_t net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void net_tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

/* One setsockopt; the first refusal is kept in err. */
static void opt(int fd, int level, int name, const void *v, socklen_t len, const char *what,
                char *err, size_t errlen, int *rc)
{
    if (setsockopt(fd, level, name, v, len) == 0)
        return;
    if (*rc == 0)
        snprintf(err, errlen, "%s refused: %s", what, strerror(errno));
    *rc = -1;
}

int net_tune_link(int fd, const struct net_link_opts *o, char *err, size_t errlen)
{
    int rc = 0;
    if (o->keepalive_ms > 0) {
        int one = 1, idle = (int)(o->keepalive_ms / 1000), cnt = 3;
        if (idle < 1)
            idle = 1;
        int intvl = idle / 3 > 0 ? idle / 3 : 1;
        opt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one), "SO_KEEPALIVE", err, errlen, &rc);
        opt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle), "TCP_KEEPIDLE", err, errlen, &rc);
        opt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl), "TCP_KEEPINTVL", err, errlen,
            &rc);
        opt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt), "TCP_KEEPCNT", err, errlen, &rc);
    }
    if (o->user_timeout_ms > 0) {
        unsigned ut = (unsigned)o->user_timeout_ms;
        opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut), "TCP_USER_TIMEOUT", err, errlen,
            &rc);
    }
    if (o->sndbuf > 0) {
        int v = (int)o->sndbuf;
        opt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v), "SO_SNDBUF", err, errlen, &rc);
    }
    if (o->rcvbuf > 0) {
        int v = (int)o->rcvbuf;
        opt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v), "SO_RCVBUF", err, errlen, &rc);
    }
    if (o->congestion && o->congestion[0]) {
        char what[64];
        snprintf(what, sizeof(what), "TCP_CONGESTION %.32s", o->congestion);
        opt(fd, IPPROTO_TCP, TCP_CONGESTION, o->congestion, (socklen_t)strlen(o->congestion), what,
            err, errlen, &rc);
    }
    return rc;
}

void net_format(const struct sockaddr *sa, char *out, size_t len, int with_port)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
    }
    if (!with_port)
        snprintf(out, len, "%s", ip);
    else if (sa->sa_family == AF_INET6)
        snprintf(out, len, "[%s]:%d", ip, port);
    else
        snprintf(out, len, "%s:%d", ip, port);
}
