/*
 * handshake: the commands of the replica side's handshake and the replies that steer it, as
 * pure functions (see handshake.h). The wording of every refusal is the one upstream.c logs.
 * No I/O, no logging, no libevent.
 */
#include "handshake.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void add(struct handshake_batch *b, int argc, const char *const *argv)
{
    struct handshake_cmd *c = &b->cmd[b->n++];
    c->argc = argc;
    for (int i = 0; i < argc; i++)
        c->argv[i] = argv[i];
}

bool handshake_auth_info(struct handshake_batch *b, const char *user, const char *password)
{
    b->n = 0;
    bool auth = password[0] != '\0';
    if (auth && user[0]) {
        const char *argv[] = {"AUTH", user, password};
        add(b, 3, argv);
    } else if (auth) {
        const char *argv[] = {"AUTH", password};
        add(b, 2, argv);
    }
    const char *info[] = {"INFO", "server"};
    add(b, 2, info);
    return auth;
}

void handshake_replconf(struct handshake_batch *b, const struct handshake_replconf *p)
{
    b->n = 0;
    snprintf(b->num, sizeof(b->num), "%d", p->listening_port);
    const char *lp[] = {"REPLCONF", "listening-port", b->num};
    add(b, 3, lp);
    const char *capa[] = {"REPLCONF", "capa", "eof", "capa", "psync2"};
    add(b, 5, capa);
    /* Asked by a side fetch too: a fresh snapshot crosses the WAN compressed like the first
     * (docs/reference.md, "Links between cascade relays"). */
    const char *fr[] = {"REPLCONF", "capa", "cascade-frame", "capa", "cascade-zstd"};
    add(b, p->compression ? 5 : 3, fr);
    /* A Valkey >= 9 master picks the RDB version from this (replicaRdbVersion): without it
     * the relay gets RDB 11, which cannot hold every Valkey 9 data set. */
    if (p->announced[0]) {
        const char *ver[] = {"REPLCONF", "version", p->announced};
        add(b, 3, ver);
    }
    if (p->rdb_only) {
        const char *ro[] = {"REPLCONF", "rdb-only", "1"};
        add(b, 3, ro);
    }
}

void handshake_psync(struct handshake_batch *b, const char *replid, int64_t held)
{
    b->n = 0;
    if (replid[0]) {
        snprintf(b->num, sizeof(b->num), "%" PRId64, held + 1);
        const char *argv[] = {"PSYNC", replid, b->num};
        add(b, 3, argv);
    } else {
        const char *argv[] = {"PSYNC", "?", "-1"};
        add(b, 3, argv);
    }
}

void handshake_ack(struct handshake_batch *b, int64_t offset)
{
    b->n = 0;
    snprintf(b->num, sizeof(b->num), "%" PRId64, offset);
    const char *argv[] = {"REPLCONF", "ACK", b->num};
    add(b, 3, argv);
}

bool handshake_ping_ok(const char *line, bool is_error)
{
    return !is_error || strncmp(line, "-NOAUTH", 7) == 0 || strncmp(line, "-NOPERM", 7) == 0;
}

bool handshake_frame_offered(const char *line, bool *zstd)
{
    if (strncmp(line, "+OK cascade-frame", 17) != 0)
        return false;
    *zstd = strstr(line + 17, "zstd") != NULL;
    return true;
}

int handshake_info_bulk(const char *buf, size_t n, size_t have, size_t *skip, size_t *len)
{
    /* The first CRLF, where a "$<len>" header of at most 16 bytes can end. */
    size_t eol = 0;
    while (eol + 1 < n && !(buf[eol] == '\r' && buf[eol + 1] == '\n'))
        eol++;
    if (eol + 1 >= n || eol > 16)
        return have > 16 ? -1 : 0;
    char head[24];
    memcpy(head, buf, eol);
    head[eol] = '\0';
    char *end;
    long l = strtol(head + 1, &end, 10);
    if (*end || l < 0 || l > HANDSHAKE_INFO_MAX_BYTES)
        return -1;
    if (have < eol + 2 + (size_t)l + 2)
        return 0;
    *skip = eol + 2;
    *len = (size_t)l;
    return 1;
}

const char *handshake_loop(const struct compat_identity *up, const char *self_run_id)
{
    /* Following ourselves, directly or through other cascade relays, would report a link up
     * on a stream that never moves. */
    if (!self_run_id[0] || !compat_chain_has(up, self_run_id))
        return NULL;
    if (strcasecmp(up->run_id, self_run_id) == 0)
        return "refused: the upstream is this relay itself (same run_id)";
    return "refused: replication loop (the upstream follows this relay, see its cascade_chain)";
}

enum handshake_psync_reply handshake_psync_reply(const char *line, bool is_error, bool may_continue,
                                                 bool asked_partial,
                                                 char replid[RESP_REPLID_LEN + 1], int64_t *offset,
                                                 char *why, size_t whylen)
{
    if (is_error) {
        /* -NOMASTERLINK / -LOADING: the upstream is not ready; anything else is logged too. */
        snprintf(why, whylen, "PSYNC refused: %s", line + 1);
        return HANDSHAKE_FAILED;
    }
    if (strncmp(line, "+FULLRESYNC", 11) == 0) {
        if (resp_parse_fullresync(line, strlen(line), replid, offset) == 0)
            return HANDSHAKE_FULLRESYNC;
        snprintf(why, whylen, "malformed +FULLRESYNC");
        return HANDSHAKE_FAILED;
    }
    if (strncmp(line, "+CONTINUE", 9) == 0 && may_continue) {
        if (!asked_partial)
            snprintf(why, whylen,
                     "protocol error: +CONTINUE in reply to PSYNC ? -1 (there is no "
                     "history to continue)");
        else if (resp_parse_continue(line, strlen(line), replid) != 0)
            snprintf(why, whylen, "malformed +CONTINUE");
        else
            return HANDSHAKE_CONTINUE;
        return HANDSHAKE_FAILED;
    }
    snprintf(why, whylen, "unexpected PSYNC reply: %s", line);
    return HANDSHAKE_FAILED;
}

void handshake_abort_reason(char *out, size_t cap, const char *why, int64_t rdb_bytes,
                            const char *announced, const struct compat_rdb *fmt,
                            const struct compat_identity *up)
{
    char what[96] = "RDB not reached";
    int up_ver = compat_version_parse(up->server_version, strlen(up->server_version));
    if (fmt->version) {
        snprintf(what, sizeof(what), "%s magic, RDB version %d",
                 fmt->valkey_magic ? "VALKEY" : "REDIS", fmt->version);
    } else if (up->server == COMPAT_VALKEY && up_ver >= 0x090000) {
        /* Nothing of the RDB came: name the version a Valkey >= 9 picks for what was announced
         * (replicaRdbVersion: below 9.0 or none gets 11, the last REDIS-magic one). */
        int a = announced[0] ? compat_version_parse(announced, strlen(announced)) : 0;
        int v = a >= 0x090000 ? compat_max_rdb(COMPAT_VALKEY, a < up_ver ? a : up_ver, true) : 11;
        snprintf(what, sizeof(what), "RDB not reached; valkey %s sends RDB version %d for it",
                 up->server_version, v);
    }
    snprintf(out, cap, "%s (after %" PRId64 " RDB bytes; announced version %s; %s)", why, rdb_bytes,
             announced[0] ? announced : "none", what);
}

int64_t handshake_abort_delay_ms(int in_a_row)
{
    if (in_a_row < 2)
        return 0;
    int64_t delay = HANDSHAKE_ABORT_BACKOFF_MS;
    for (int i = 2; i < in_a_row && delay < HANDSHAKE_ABORT_BACKOFF_MAX_MS; i++)
        delay *= 2;
    return delay > HANDSHAKE_ABORT_BACKOFF_MAX_MS ? HANDSHAKE_ABORT_BACKOFF_MAX_MS : delay;
}
