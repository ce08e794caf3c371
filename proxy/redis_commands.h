/*
 * redis_commands: what Redis 7.0 answers before AUTH, as a pure function of the command.
 * With a password set, Redis checks an unauthenticated client's command in this order: unknown
 * command, unknown subcommand of a container (CLIENT FOO), wrong argument count, then -NOAUTH
 * for every command not flagged no_auth (AUTH, HELLO, QUIT, RESET). The relay knows fewer
 * commands than Redis, so it carries Redis' table (names, subcommands, arities, no_auth flags;
 * generated from a stock redis-server by scripts/gen_redis_commands.py) to answer the same.
 * No allocation, no I/O, no logging.
 */
#ifndef CASCADE_REDIS_COMMANDS_H
#define CASCADE_REDIS_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>

#include "resp.h"

/*
 * The reply Redis 7.0 gives an unauthenticated client for cmd (argc > 0), without CRLF, in out:
 * returns true if the command is refused there (out holds "-ERR unknown command ...",
 * "-ERR wrong number of arguments ..." or "-NOAUTH Authentication required."), false if it is
 * a no-auth command that runs (out untouched).
 */
bool redis_preauth_reject(const struct resp_command *cmd, char *out, size_t outlen);

/* For an authenticated client: true (out = "-ERR wrong number of arguments for '<name>'
 * command", Redis' name: 'client|setname') if Redis knows the (sub)command and its argument
 * count is wrong. A (sub)command Redis does not know is left to the caller. */
bool redis_arity_reject(const struct resp_command *cmd, char *out, size_t outlen);

/* Redis' "unknown command '<name>', with args beginning with: '<a>' ..." text (without "-ERR ",
 * CR and LF mapped to spaces), for cmd (argc > 0). */
void redis_unknown_command(const struct resp_command *cmd, char *out, size_t outlen);

/* s[0..len) as Redis prints an argument in an error: up to its first NUL, CR and LF as spaces,
 * cut to fit out. */
void redis_printable(const char *s, size_t len, char *out, size_t outlen);

#endif
