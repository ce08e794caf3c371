/*
 * Fuzz target: the handshake reply lines. The input is one line as the upstream sent it
 * (without CRLF), given to resp_parse_fullresync, resp_parse_continue and
 * resp_parse_rdb_preamble. On success the outputs must be what the line says: a replid of 40
 * hex characters and a NUL, taken from the line; non-negative offsets and sizes; an EOF mark
 * copied from the line. A successful +FULLRESYNC reformatted parses back to the same values.
 * The line also goes through resp_escape, whose output must fit and decode back.
 */
#include "fuzz.h"

#include <inttypes.h>
#include <string.h>

#include "resp.h"

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void check_replid(const char *replid)
{
    FUZZ_CHECK(strlen(replid) == RESP_REPLID_LEN);
    for (size_t i = 0; i < RESP_REPLID_LEN; i++)
        FUZZ_CHECK(is_hex(replid[i]));
}

/* Undoes resp_escape; returns the decoded length. */
static size_t unescape(const char *s, char *out)
{
    size_t o = 0;
    while (*s) {
        if (*s != '\\') {
            out[o++] = *s++;
            continue;
        }
        s++;
        if (*s == 'r') {
            out[o++] = '\r';
            s++;
        } else if (*s == 'n') {
            out[o++] = '\n';
            s++;
        } else if (*s == 'x') {
            FUZZ_CHECK(is_hex(s[1]) && is_hex(s[2]));
            char hex[3] = {s[1], s[2], '\0'};
            out[o++] = (char)strtoul(hex, NULL, 16);
            s += 3;
        } else {
            FUZZ_CHECK(*s == '\\' || *s == '"');
            out[o++] = *s++;
        }
    }
    return o;
}

/* The line's first word. Fields are split on runs of spaces, so leading ones are allowed. */
static bool first_word_is(const char *line, size_t len, const char *word)
{
    size_t i = 0, n = strlen(word);
    while (i < len && line[i] == ' ')
        i++;
    return len - i >= n && memcmp(line + i, word, n) == 0 && (len - i == n || line[i + n] == ' ');
}

static void check_fullresync(const char *line, size_t len)
{
    char replid[RESP_REPLID_LEN + 1];
    memset(replid, 'z', sizeof(replid));
    int64_t offset = -7;
    int rc = resp_parse_fullresync(line, len, replid, &offset);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0)
        return;
    check_replid(replid);
    FUZZ_CHECK(offset >= 0);
    FUZZ_CHECK(first_word_is(line, len, "+FULLRESYNC"));
    FUZZ_CHECK(memmem(line, len, replid, RESP_REPLID_LEN) != NULL);

    char again[128];
    int n = snprintf(again, sizeof(again), "+FULLRESYNC %s %" PRId64, replid, offset);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(again));
    char replid2[RESP_REPLID_LEN + 1];
    int64_t offset2;
    FUZZ_CHECK(resp_parse_fullresync(again, (size_t)n, replid2, &offset2) == 0);
    FUZZ_CHECK(strcmp(replid, replid2) == 0 && offset == offset2);
}

static void check_continue(const char *line, size_t len)
{
    char replid[RESP_REPLID_LEN + 1];
    memset(replid, 'z', sizeof(replid));
    int rc = resp_parse_continue(line, len, replid);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0)
        return;
    FUZZ_CHECK(first_word_is(line, len, "+CONTINUE"));
    if (replid[0] != '\0') {
        check_replid(replid);
        FUZZ_CHECK(memmem(line, len, replid, RESP_REPLID_LEN) != NULL);
    }
}

static void check_preamble(const char *line, size_t len)
{
    struct resp_rdb_preamble pre;
    memset(&pre, 0x5a, sizeof(pre));
    char err[RESP_ERR_LEN] = "";
    int rc = resp_parse_rdb_preamble(line, len, &pre, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)));
        return;
    }
    FUZZ_CHECK(len > 1 && line[0] == '$');
    if (pre.eof_format) {
        FUZZ_CHECK(len == 5 + RESP_EOFMARK_LEN && memcmp(line, "$EOF:", 5) == 0);
        FUZZ_CHECK(memcmp(pre.mark, line + 5, RESP_EOFMARK_LEN) == 0);
    } else {
        FUZZ_CHECK(pre.size >= 0);
    }
}

static void check_escape(const char *line, size_t len)
{
    /* Every byte takes at most 4 output characters. */
    size_t cap = 4 * len + 1;
    char *out = malloc(cap);
    char *back = malloc(len + 1);
    if (!out || !back)
        abort();
    resp_escape(line, len, out, cap);
    FUZZ_CHECK(strlen(out) < cap);
    FUZZ_CHECK(unescape(out, back) == len && memcmp(back, line, len) == 0);

    /* Truncated output: a prefix of the full one, never split inside an escape. */
    char small[17];
    for (size_t room = 1; room <= sizeof(small); room += 8) {
        memset(small, 'x', sizeof(small));
        resp_escape(line, len, small, room);
        size_t n = strlen(small);
        FUZZ_CHECK(n < room && strncmp(small, out, n) == 0);
        size_t dec = unescape(small, back);
        FUZZ_CHECK(dec <= len && memcmp(back, line, dec) == 0);
    }
    free(out);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    check_fullresync(line, size);
    check_continue(line, size);
    check_preamble(line, size);
    check_escape(line, size);
    return 0;
}
