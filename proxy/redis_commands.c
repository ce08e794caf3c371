/*
 * redis_commands: Redis 7.0's checks before AUTH. See redis_commands.h.
 */
#include "redis_commands.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct redis_command {
    const char *name; /* lower case; "container|sub" for a subcommand */
    int arity;        /* > 0 exact, < 0 at least -arity (the command name counts) */
    bool no_auth;     /* runs before AUTH */
    bool container;   /* has subcommands: argv[1] names one */
};

static const struct redis_command table[] = {
#include "redis_commands_table.h"
};

#define TABLE_LEN (sizeof(table) / sizeof(table[0]))

/* The entry whose name is a (alen bytes), or a|b when b != NULL. */
static const struct redis_command *find(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t want = b ? alen + 1 + blen : alen;
    for (size_t i = 0; i < TABLE_LEN; i++) {
        const char *n = table[i].name;
        if (strlen(n) != want || strncasecmp(n, a, alen) != 0)
            continue;
        if (!b || (n[alen] == '|' && strncasecmp(n + alen + 1, b, blen) == 0))
            return &table[i];
    }
    return NULL;
}

/* Appends at most max bytes of s[0..len) up to its first NUL (Redis prints arguments with
 * %.*s), CR and LF as spaces (Redis maps them so the error stays one line). */
static size_t put(char *out, size_t outlen, size_t at, const char *s, size_t len, size_t max)
{
    if (outlen == 0)
        return at;
    for (size_t i = 0; i < len && i < max && s[i] != '\0' && at + 1 < outlen; i++)
        out[at++] = (s[i] == '\r' || s[i] == '\n') ? ' ' : s[i];
    out[at < outlen ? at : outlen - 1] = '\0';
    return at;
}

static size_t put_str(char *out, size_t outlen, size_t at, const char *s)
{
    return put(out, outlen, at, s, strlen(s), strlen(s));
}

void redis_unknown_command(const struct resp_command *cmd, char *out, size_t outlen)
{
    size_t at = put_str(out, outlen, 0, "unknown command '");
    at = put(out, outlen, at, cmd->argv[0], cmd->argl[0], 128);
    at = put_str(out, outlen, at, "', with args beginning with: ");
    /* Redis adds "'<arg>' " while its list of arguments is shorter than 128 bytes, each cut to
     * what is left of the 128. */
    size_t args = 0;
    for (size_t i = 1; i < cmd->argc && args < 128; i++) {
        size_t before = at;
        at = put_str(out, outlen, at, "'");
        at = put(out, outlen, at, cmd->argv[i], cmd->argl[i], 128 - args);
        at = put_str(out, outlen, at, "' ");
        args += at - before;
    }
}

/* Redis refuses an EXEC by aborting the transaction: its error is wrapped (rejectCommand). */
static void refuse(const struct redis_command *k, const char *code, const char *msg, char *out,
                   size_t outlen)
{
    if (strcmp(k->name, "exec") == 0)
        snprintf(out, outlen, "-EXECABORT Transaction discarded because of: %s%s%s",
                 strcmp(code, "ERR") == 0 ? "" : code, strcmp(code, "ERR") == 0 ? "" : " ", msg);
    else
        snprintf(out, outlen, "-%s %s", code, msg);
}

static bool arity_wrong(const struct redis_command *k, const struct resp_command *cmd, char *out,
                        size_t outlen)
{
    if ((k->arity > 0 && cmd->argc != (size_t)k->arity) ||
        (k->arity < 0 && cmd->argc < (size_t)-k->arity)) {
        char msg[128];
        snprintf(msg, sizeof(msg), "wrong number of arguments for '%s' command", k->name);
        refuse(k, "ERR", msg, out, outlen);
        return true;
    }
    return false;
}

bool redis_arity_reject(const struct resp_command *cmd, char *out, size_t outlen)
{
    const struct redis_command *k = find(cmd->argv[0], cmd->argl[0], NULL, 0);
    if (k && k->container && cmd->argc > 1)
        k = find(cmd->argv[0], cmd->argl[0], cmd->argv[1], cmd->argl[1]);
    return k && arity_wrong(k, cmd, out, outlen);
}

bool redis_preauth_reject(const struct resp_command *cmd, char *out, size_t outlen)
{
    const struct redis_command *k = find(cmd->argv[0], cmd->argl[0], NULL, 0);
    if (k && k->container && cmd->argc > 1) {
        const struct redis_command *sub =
            find(cmd->argv[0], cmd->argl[0], cmd->argv[1], cmd->argl[1]);
        if (!sub) {
            size_t at = put_str(out, outlen, 0, "-ERR unknown subcommand '");
            at = put(out, outlen, at, cmd->argv[1], cmd->argl[1], 128);
            at = put_str(out, outlen, at, "'. Try ");
            size_t start = at;
            at = put(out, outlen, at, cmd->argv[0], cmd->argl[0], cmd->argl[0]);
            for (size_t i = start; i < at; i++)
                out[i] = (char)toupper((unsigned char)out[i]);
            put_str(out, outlen, at, " HELP.");
            return true;
        }
        k = sub;
    }
    if (!k) {
        size_t at = put_str(out, outlen, 0, "-ERR ");
        redis_unknown_command(cmd, out + at, outlen > at ? outlen - at : 0);
        return true;
    }
    if (arity_wrong(k, cmd, out, outlen))
        return true;
    if (k->no_auth)
        return false;
    refuse(k, "NOAUTH", "Authentication required.", out, outlen);
    return true;
}

void redis_printable(const char *s, size_t len, char *out, size_t outlen)
{
    if (outlen > 0) {
        out[0] = '\0';
        put(out, outlen, 0, s, len, len);
    }
}
