/*
 * net: sockets without an event loop: listen, non-blocking connect, options, address text.
 * Returns -1 with a message on failure; never logs.
 */
#ifndef CASCADE_NET_H
#define CASCADE_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NET_ADDR_LEN 64 /* "[v6 address]:port" */

/* A non-blocking listening socket on addr:port (addr may be an IPv4/IPv6 literal or name). */
int net_listen(const char *addr, int port, int backlog, char *err, size_t errlen);

/* TCP_NODELAY and keepalive on a connected socket. */
void net_tune(int fd);

/* Options of a long-distance link (each 0 or "" leaves the kernel's choice). */
struct net_link_opts {
    int64_t keepalive_ms;    /* TCP keepalive idle time; probes every third of it, 3 of them */
    int64_t user_timeout_ms; /* TCP_USER_TIMEOUT */
    int64_t sndbuf, rcvbuf;  /* SO_SNDBUF / SO_RCVBUF */
    const char *congestion;  /* TCP_CONGESTION, e.g. "bbr" */
};

/* Applies opts to a socket; every option is tried. 0, or -1 with what the kernel refused. */
int net_tune_link(int fd, const struct net_link_opts *o, char *err, size_t errlen);

/* Monotonic clock in milliseconds. */
int64_t net_now_ms(void);

void net_format(const struct sockaddr *sa, char *out, size_t len, int with_port);

#endif
