/*
 * commands: the commands a plain client of the server can send (PING, AUTH/HELLO, INFO, ROLE,
 * REPLCONF, PSYNC/SYNC, REPLICAOF, CLIENT, CONFIG, pub/sub for Sentinel, LATENCY, SLOWLOG), their
 * table and their handlers, with Redis' replies and error texts.
 * Owns nothing: a handler works on the client server.c passes it (server_client.h) and reaches
 * the rest of the relay only through the server's callbacks (server.h). Only server.c includes
 * this header; it looks commands up and runs them, after its own checks (authentication,
 * arity, subscribed context), which the table's flags feed.
 */
#ifndef CASCADE_COMMANDS_H
#define CASCADE_COMMANDS_H

#include "resp.h"

struct client;

typedef void (*command_fn)(struct client *c, const struct resp_command *cmd);

enum {
    COMMAND_BEFORE_AUTH = 1 << 0, /* allowed before AUTH when a password is set */
    COMMAND_SUBSCRIBED = 1 << 1,  /* allowed to a subscribed client (RESP2) */
};

struct command {
    const char *name; /* lower case */
    int arity;        /* Redis convention: > 0 exact, < 0 at least -arity */
    int flags;        /* COMMAND_* */
    command_fn fn;
};

/* The relay's command named by cmd's argv[0] (case-insensitively), NULL if it has none. */
const struct command *commands_lookup(const struct resp_command *cmd);

/* Reply Redis' "-ERR unknown command ..." to cmd. */
void commands_unknown(struct client *c, const struct resp_command *cmd);

#endif
