/*
 * server_client: a plain client of the server (struct client, struct server), as the command
 * handlers see it, and the few helpers server.c lends them: replies, closing, the output limit,
 * reading on, the log budget. Internal to the server: only server.c (which implements what is
 * declared here and owns every client) and commands.c (the handlers) include it; the rest of
 * the program knows the server through server.h alone.
 * Must not grow handlers or lifecycle code: those live in commands.c and server.c.
 */
#ifndef CASCADE_SERVER_CLIENT_H
#define CASCADE_SERVER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "net.h"
#include "server.h"

struct evbuffer;
struct evconnlistener;
struct event;

#define MAX_CHANNELS 4 /* SUBSCRIBEd channels per client; Sentinel uses one */

struct client {
    struct client *next, *prev; /* the server's list */
    struct server *srv;         /* owner */
    struct bufferevent *bev;    /* owned; NULL once handed over */
    /* Who it is (id, address, TLS, since when) and what REPLCONF said: handed to the relay
     * as it is with PSYNC/SYNC. */
    struct replica_hello hello;
    char name[64];                   /* CLIENT SETNAME */
    char user[64];                   /* authenticated as */
    char channels[MAX_CHANNELS][64]; /* SUBSCRIBEd channels (Sentinel's hello) */
    int nchannels;
    char last_cmd[32]; /* for CLIENT LIST */
    bool authed;
    bool closing; /* close once the output is flushed */
    bool dead;    /* on the reaper list */
    int64_t last_cmd_ms;
    int64_t partial_since_ms;  /* an incomplete command has been pending since, 0 if none */
    bool paused;               /* not read from until it reads its replies */
    size_t in_bytes;           /* its input buffer, as counted in the server's input_bytes */
    int64_t out_soft_since_ms; /* output past the soft limit since, 0 if not */
    int auth_fails;            /* failed AUTHs on this connection */
    int64_t auth_log_ms;       /* last "AUTH failed" line, 0 if none yet */
    int64_t auth_unlogged;     /* failures since that line */
    bool auth_delayed;         /* a failed AUTH's reply is held, the client not read */
    struct event *auth_timer;  /* owned, created at the first delay */
    struct evbuffer *held;     /* owned: replies held while auth_delayed */
};

/* Lines about single clients (refusals, evictions, AUTH failures) are capped per second; what
 * is left out is counted and reported once a second by the cron. */
struct log_budget {
    int64_t window_ms; /* start of the current second */
    int lines;         /* written in it */
    int64_t dropped;   /* left out since the last report */
};

struct server {
    struct event_base *base;  /* borrowed */
    const struct config *cfg; /* borrowed */
    struct stats *stats;      /* borrowed */
    struct server_callbacks cb;
    struct evconnlistener *listener;     /* owned */
    struct evconnlistener *tls_listener; /* owned, NULL without a TLS port */
    SSL_CTX *tls;                        /* borrowed: the TLS port's context */
    struct client *head;                 /* live clients */
    struct client *dead;                 /* to free, via next */
    struct event *reaper;
    size_t count;
    uint64_t next_id;
    size_t input_bytes;         /* input buffers of all plain clients */
    int64_t fd_clients;         /* clients the fd limit leaves room for (0 = not measured) */
    int64_t fitted_clients;     /* the max-clients fit_fd_limit last ran for (0: not yet) */
    struct event *accept_timer; /* re-enables the listeners after EMFILE/ENFILE */
    bool accept_paused;         /* out of fds: listeners disabled, logged once */
    int64_t emfile_ms;          /* last accept that failed for lack of fds */
    int64_t emfile_count;       /* such failures in the current episode */
    struct log_budget noise;
};

/* Queue a reply (counted in total_net_output_bytes): to the connection's output, or aside while
 * a failed AUTH's reply is held. */
void client_reply(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void client_reply_bulk(struct client *c, const char *s, size_t n); /* $<n> s */
void client_reply_raw(struct client *c, const char *s, size_t n);  /* s as it is */

/* Close after what is queued has been written; nothing more is read. */
void client_close_after_reply(struct client *c);

/* Close now (output dropped) and free it later, outside its callbacks. */
void client_bury(struct client *c);

/* Redis' client-output-buffer-limit: true if c was over it, and is closed. */
bool client_output_check(struct client *c, int64_t now_ms);

/* Read and dispatch what waits in c's input, as if it had just arrived. */
void client_read(struct client *c);

/* One more line about a single client this second? (NOISE_LINES a second; the rest counted.) */
bool server_log_budget(struct server *s);

#define client_log(lvl, c, ...)                                                                    \
    do {                                                                                           \
        if (log_enabled(lvl) && server_log_budget((c)->srv))                                       \
            log_msg(lvl, "server", (c)->hello.peer, __VA_ARGS__);                                  \
    } while (0)

#endif
