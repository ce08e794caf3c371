/*
 * Fuzz target: resp_parse_command, the downstream command reader, with the server's default
 * limits (server.c) for authenticated and unauthenticated clients, the replica's (replica.c), and
 * small ones as [relay] max-args, max-bulk and max-inline allow (chosen by a hash of the input).
 * The input is what a client sends.
 *   1. Whole: parse command after command from the full buffer, as a read loop does once
 *      everything has arrived; check each result stays inside the buffer and the limits.
 *   2. Chunked: the same bytes arriving in reads of varying size, the reader retrying on the
 *      bytes received so far. A command is returned exactly when all of it has arrived and
 *      is identical to the whole parse; before that the answer is "need more" (or, for an
 *      input that is bad anyway, an early error with the same text).
 */
#include "fuzz.h"

#include <string.h>

#include "resp.h"

#define MAX_RESULTS 4096

static const struct resp_limits server_limits = {
    .max_argc = RESP_MAX_ARGC, .max_bulk_bytes = 512 * 1024, .max_inline_bytes = 64 * 1024};
/* The server's limits for a client that has not authenticated (Redis' 10 x 16 KB on top). */
static const struct resp_limits unauth_limits = {.max_argc = RESP_MAX_ARGC,
                                                 .max_bulk_bytes = 512 * 1024,
                                                 .max_inline_bytes = 64 * 1024,
                                                 .unauthenticated = true};
static const struct resp_limits replica_limits = {
    .max_argc = 16, .max_bulk_bytes = 1024, .max_inline_bytes = 1024};

/* One step of the whole-buffer loop. */
struct result {
    size_t pos; /* where the command starts */
    ssize_t rc; /* resp_parse_command's return */
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
};

static void check_command(const char *buf, size_t pos, size_t len, ssize_t rc,
                          const struct resp_limits *lim, const struct resp_command *cmd)
{
    FUZZ_CHECK(rc > 0 && (size_t)rc <= len - pos);
    FUZZ_CHECK(cmd->argc <= lim->max_argc && cmd->argc <= RESP_MAX_ARGC);
    FUZZ_CHECK(!lim->unauthenticated || cmd->inline_form || cmd->argc <= RESP_UNAUTH_MAX_ARGC);
    const char *lo = buf + pos, *hi = buf + pos + (size_t)rc;
    for (size_t i = 0; i < cmd->argc; i++) {
        FUZZ_CHECK(cmd->argv[i] >= lo && cmd->argv[i] <= hi);
        FUZZ_CHECK(cmd->argl[i] <= (size_t)(hi - cmd->argv[i]));
        if (cmd->inline_form) {
            FUZZ_CHECK(cmd->argl[i] > 0 && cmd->argl[i] <= lim->max_inline_bytes);
        } else {
            FUZZ_CHECK(cmd->argl[i] <= lim->max_bulk_bytes);
            FUZZ_CHECK(!lim->unauthenticated || cmd->argl[i] <= RESP_UNAUTH_MAX_BULK);
        }
        int64_t v;
        (void)resp_arg_int64(cmd, i, &v);
        FUZZ_CHECK(!resp_arg_is(cmd, i, "") || cmd->argl[i] == 0);
    }
    FUZZ_CHECK(!resp_arg_is(cmd, cmd->argc, "PING"));
    /* A multibulk command starts with '*'; everything else is an inline line. */
    FUZZ_CHECK(cmd->inline_form == (buf[pos] != '*'));
}

/* Reads of 1..64 bytes from a generator seeded by the input, so the run is reproducible. */
static size_t next_read(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return 1 + (*seed >> 16) % 64;
}

static void run(const char *buf, size_t len, const struct resp_limits *lim, struct result *res)
{
    /* 1. Whole buffer. */
    size_t nres = 0, pos = 0;
    while (nres < MAX_RESULTS) {
        struct result *r = &res[nres++];
        memset(r, 0, sizeof(*r));
        r->pos = pos;
        r->rc = resp_parse_command(buf + pos, len - pos, lim, &r->cmd, r->err, sizeof(r->err));
        FUZZ_CHECK(r->rc >= -1);
        if (r->rc == -1) {
            FUZZ_CHECK(memchr(r->err, '\0', sizeof(r->err)) && r->err[0] != '\0');
            break;
        }
        if (r->rc == 0)
            break;
        check_command(buf, pos, len, r->rc, lim, &r->cmd);
        pos += (size_t)r->rc;
    }
    if (nres == MAX_RESULTS)
        return;

    /* 2. The same bytes in reads of varying size. */
    uint32_t seed = (uint32_t)len * 2654435761u;
    for (size_t i = 0; i < len && i < 16; i++)
        seed = seed * 31 + (uint8_t)buf[i];
    size_t got = 0, k = 0;
    pos = 0;
    while (got < len) {
        size_t n = next_read(&seed);
        got = n < len - got ? got + n : len;
        for (;;) {
            const struct result *r = &res[k];
            FUZZ_CHECK(k < nres && r->pos == pos);
            struct resp_command cmd;
            char err[RESP_ERR_LEN] = "";
            ssize_t rc = resp_parse_command(buf + pos, got - pos, lim, &cmd, err, sizeof(err));
            bool complete = r->rc > 0 ? pos + (size_t)r->rc <= got : got == len;
            if (!complete) {
                /* Not all of it has arrived: only an input that fails anyway may fail. */
                FUZZ_CHECK(rc == 0 || (rc == -1 && r->rc == -1));
                if (rc == 0)
                    break;
            } else {
                FUZZ_CHECK(rc == r->rc);
            }
            if (rc == -1) {
                FUZZ_CHECK(strcmp(err, r->err) == 0);
                return;
            }
            if (rc == 0)
                break;
            FUZZ_CHECK(cmd.argc == r->cmd.argc && cmd.inline_form == r->cmd.inline_form);
            for (size_t i = 0; i < cmd.argc; i++) {
                FUZZ_CHECK(cmd.argv[i] == r->cmd.argv[i]);
                FUZZ_CHECK(cmd.argl[i] == r->cmd.argl[i]);
            }
            pos += (size_t)rc;
            k++;
        }
    }
    FUZZ_CHECK(k == nres - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct result res[MAX_RESULTS]; /* too big for the stack; no state kept across runs */
    const char *buf = (const char *)data;
    run(buf, size, &server_limits, res);
    run(buf, size, &unauth_limits, res);
    run(buf, size, &replica_limits, res);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    const struct resp_limits small = {.max_argc = 1 + h % RESP_MAX_ARGC,
                                      .max_bulk_bytes = 16 + (h >> 8) % 64,
                                      .max_inline_bytes = 16 + (h >> 16) % 64};
    run(buf, size, &small, res);
    return 0;
}
