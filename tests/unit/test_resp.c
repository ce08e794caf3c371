/*
 * Unit tests for resp.c: the downstream command reader (multibulk, inline, limits and Redis'
 * error texts), the replication stream scanner's GETACK detection, handshake reply lines, the
 * RDB preamble, the EOF-mark scanner under every chunking, and the log escaper.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "resp.h"

static const struct resp_limits lim_default = {
    .max_argc = RESP_MAX_ARGC,
    .max_bulk_bytes = 1024,
    .max_inline_bytes = 64,
};

static const char replid_a[] = "0123456789abcdef0123456789ABCDEF01234567";

/* Parses s (a C string) with the default limits. */
static ssize_t parse(const char *s, struct resp_command *cmd, char *err)
{
    return resp_parse_command(s, strlen(s), &lim_default, cmd, err, RESP_ERR_LEN);
}

static void assert_arg(const struct resp_command *cmd, size_t i, const char *s)
{
    assert_true(i < cmd->argc);
    assert_int_equal(cmd->argl[i], strlen(s));
    assert_memory_equal(cmd->argv[i], s, strlen(s));
}

static void assert_parse_error(const char *input, const struct resp_limits *lim, const char *want)
{
    struct resp_command cmd;
    char err[RESP_ERR_LEN] = "";
    assert_int_equal(resp_parse_command(input, strlen(input), lim, &cmd, err, sizeof(err)), -1);
    assert_string_equal(err, want);
}

/* ---- resp_parse_command ---- */

static void test_multibulk(void **state)
{
    (void)state;
    const char *in = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\0ue\r\n";
    const size_t len = 31;
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    assert_int_equal(resp_parse_command(in, len, &lim_default, &cmd, err, sizeof(err)), len);
    assert_int_equal(cmd.argc, 3);
    assert_false(cmd.inline_form);
    assert_arg(&cmd, 0, "SET");
    assert_arg(&cmd, 1, "k");
    /* Binary safe, and argv points into the input. */
    assert_ptr_equal(cmd.argv[2], in + 24);
    assert_int_equal(cmd.argl[2], 5);
    assert_memory_equal(cmd.argv[2], "va\0ue", 5);
    assert_true(resp_arg_is(&cmd, 0, "set"));
    assert_false(resp_arg_is(&cmd, 0, "SE"));
    assert_false(resp_arg_is(&cmd, 0, "SETX"));
    assert_false(resp_arg_is(&cmd, 3, "SET"));
}

static void test_multibulk_empty_args(void **state)
{
    (void)state;
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    assert_int_equal(parse("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", &cmd, err), 20);
    assert_int_equal(cmd.argc, 2);
    assert_int_equal(cmd.argl[1], 0);
    /* "*0" is an empty command Redis skips. */
    assert_int_equal(parse("*0\r\n", &cmd, err), 4);
    assert_int_equal(cmd.argc, 0);
}

static void test_multibulk_partial_every_split(void **state)
{
    (void)state;
    const char *in = "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$5\r\n12345\r\n";
    size_t len = strlen(in);
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    for (size_t i = 0; i < len; i++) {
        ssize_t rc = resp_parse_command(in, i, &lim_default, &cmd, err, sizeof(err));
        if (rc != 0)
            fail_msg("prefix of %zu bytes: got %zd, want 0", i, rc);
    }
    assert_int_equal(resp_parse_command(in, len, &lim_default, &cmd, err, sizeof(err)), len);
    int64_t v;
    assert_int_equal(resp_arg_int64(&cmd, 2, &v), 0);
    assert_int_equal(v, 12345);
    assert_int_equal(resp_arg_int64(&cmd, 1, &v), -1);
    assert_int_equal(resp_arg_int64(&cmd, 3, &v), -1);
}

static void test_inline(void **state)
{
    (void)state;
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    assert_int_equal(parse("PING\r\n", &cmd, err), 6);
    assert_int_equal(cmd.argc, 1);
    assert_true(cmd.inline_form);
    assert_arg(&cmd, 0, "PING");

    assert_int_equal(parse("  REPLCONF \t ACK   42  \n", &cmd, err), 24);
    assert_int_equal(cmd.argc, 3);
    assert_arg(&cmd, 0, "REPLCONF");
    assert_arg(&cmd, 1, "ACK");
    assert_arg(&cmd, 2, "42");

    const char *in = "PSYNC ? -1\r\n";
    for (size_t i = 0; i < strlen(in); i++)
        assert_int_equal(resp_parse_command(in, i, &lim_default, &cmd, err, sizeof(err)), 0);
    assert_int_equal(parse(in, &cmd, err), 12);
    assert_arg(&cmd, 2, "-1");
}

static void test_bare_newline(void **state)
{
    (void)state;
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    cmd.argc = 99;
    assert_int_equal(parse("\n", &cmd, err), 1);
    assert_int_equal(cmd.argc, 0);
    assert_int_equal(parse("\r\n", &cmd, err), 2);
    assert_int_equal(cmd.argc, 0);
    assert_int_equal(parse("   \r\n", &cmd, err), 5);
    assert_int_equal(cmd.argc, 0);
    /* Keepalive then a command: one at a time. */
    assert_int_equal(parse("\nPING\r\n", &cmd, err), 1);
    assert_int_equal(cmd.argc, 0);
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *in = "*1\r\n$4\r\nPING\r\nECHO hi\r\n\n*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1";
    size_t len = strlen(in), pos = 0;
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    ssize_t rc = resp_parse_command(in, len, &lim_default, &cmd, err, sizeof(err));
    assert_int_equal(rc, 14);
    assert_arg(&cmd, 0, "PING");
    pos += (size_t)rc;
    rc = resp_parse_command(in + pos, len - pos, &lim_default, &cmd, err, sizeof(err));
    assert_int_equal(rc, 9);
    assert_true(cmd.inline_form);
    assert_arg(&cmd, 1, "hi");
    pos += (size_t)rc;
    rc = resp_parse_command(in + pos, len - pos, &lim_default, &cmd, err, sizeof(err));
    assert_int_equal(rc, 1);
    assert_int_equal(cmd.argc, 0);
    pos += (size_t)rc;
    rc = resp_parse_command(in + pos, len - pos, &lim_default, &cmd, err, sizeof(err));
    assert_int_equal(rc, 22);
    assert_false(cmd.inline_form);
    assert_arg(&cmd, 0, "AUTH");
    assert_arg(&cmd, 1, "pw");
    pos += (size_t)rc;
    assert_int_equal(len - pos, 2);
    rc = resp_parse_command(in + pos, len - pos, &lim_default, &cmd, err, sizeof(err));
    assert_int_equal(rc, 0);
}

static void test_multibulk_errors(void **state)
{
    (void)state;
    const struct resp_limits *l = &lim_default;
    assert_parse_error("*99999999999\r\n", l, "Protocol error: invalid multibulk length");
    assert_parse_error("*99999999999999999999\r\n", l, "Protocol error: invalid multibulk length");
    assert_parse_error("*65\r\n", l, "Protocol error: invalid multibulk length");
    assert_parse_error("*abc\r\n", l, "Protocol error: invalid multibulk length");
    assert_parse_error("*\r\n", l, "Protocol error: invalid multibulk length");
    assert_parse_error("*1\r\n$-1\r\n", l, "Protocol error: invalid bulk length");
    assert_parse_error("*1\r\n$abc\r\n", l, "Protocol error: invalid bulk length");
    assert_parse_error("*1\r\n$\r\n", l, "Protocol error: invalid bulk length");
    assert_parse_error("*1\r\n$1025\r\n", l, "Protocol error: invalid bulk length");
    assert_parse_error("*1\r\nfoo\r\n", l, "Protocol error: expected '$', got 'f'");
    assert_parse_error("*2\r\n$1\r\na\r\n:1\r\n", l, "Protocol error: expected '$', got ':'");
    assert_parse_error("*1\r\n\x01", l, "Protocol error: expected '$', got byte 0x01");
    assert_parse_error("*1\r\n$3\r\nfooXY", l, "Protocol error: bulk not terminated by CRLF");
    assert_parse_error("*1\r\n$3\r\nfoo\n\r", l, "Protocol error: bulk not terminated by CRLF");
    /* A bulk length line that never ends is cut off rather than buffered forever. */
    assert_parse_error("*1\r\n$11111111111111111111111111111111111", l,
                       "Protocol error: invalid bulk length");

    /* The count line is bounded by max_inline_bytes. */
    char big[80];
    memset(big, '1', sizeof(big) - 1);
    big[0] = '*';
    big[sizeof(big) - 1] = '\0';
    assert_parse_error(big, l, "Protocol error: too big mbulk count string");
    /* One byte less than the limit is just incomplete. */
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    assert_int_equal(resp_parse_command(big, 63, l, &cmd, err, sizeof(err)), 0);
}

static void test_bulk_limit_boundary(void **state)
{
    (void)state;
    char in[1100];
    int n = snprintf(in, sizeof(in), "*1\r\n$1024\r\n");
    memset(in + n, 'x', 1024);
    memcpy(in + n + 1024, "\r\n", 2);
    size_t len = (size_t)n + 1026;
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    assert_int_equal(resp_parse_command(in, len, &lim_default, &cmd, err, sizeof(err)), len);
    assert_int_equal(cmd.argl[0], 1024);
}

static void test_argc_limits(void **state)
{
    (void)state;
    struct resp_limits l = lim_default;
    l.max_argc = 3;
    assert_parse_error("*4\r\n", &l, "Protocol error: invalid multibulk length");
    assert_parse_error("a b c d\r\n", &l, "Protocol error: too many arguments in inline request");
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    assert_int_equal(resp_parse_command("a b c\r\n", 7, &l, &cmd, err, sizeof(err)), 7);
    assert_int_equal(cmd.argc, 3);

    /* RESP_MAX_ARGC arguments fit; one more does not, whatever max_argc says. */
    l.max_argc = 1000;
    l.max_inline_bytes = 4096;
    char buf[4096];
    size_t pos = (size_t)snprintf(buf, sizeof(buf), "*%d\r\n", RESP_MAX_ARGC);
    for (int i = 0; i < RESP_MAX_ARGC; i++)
        pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos, "$1\r\n%c\r\n", 'a' + i % 26);
    assert_int_equal(resp_parse_command(buf, pos, &l, &cmd, err, sizeof(err)), pos);
    assert_int_equal(cmd.argc, RESP_MAX_ARGC);
    assert_arg(&cmd, RESP_MAX_ARGC - 1, "l");
    pos = 0;
    for (int i = 0; i <= RESP_MAX_ARGC; i++)
        pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos, "a ");
    buf[pos++] = '\n';
    assert_int_equal(resp_parse_command(buf, pos, &l, &cmd, err, sizeof(err)), -1);
    assert_string_equal(err, "Protocol error: too many arguments in inline request");
    assert_parse_error("*65\r\n", &l, "Protocol error: invalid multibulk length");
}

static void test_inline_limit(void **state)
{
    (void)state;
    struct resp_command cmd;
    char err[RESP_ERR_LEN];
    char line[80];
    /* 63 bytes and the newline: exactly max_inline_bytes, accepted. */
    memset(line, 'x', 63);
    line[63] = '\n';
    assert_int_equal(resp_parse_command(line, 64, &lim_default, &cmd, err, sizeof(err)), 64);
    assert_int_equal(cmd.argl[0], 63);
    /* 63 bytes without the newline yet: wait. */
    assert_int_equal(resp_parse_command(line, 63, &lim_default, &cmd, err, sizeof(err)), 0);
    /* 64 bytes without a newline: too big. */
    memset(line, 'x', 64);
    line[64] = '\n';
    assert_int_equal(resp_parse_command(line, 64, &lim_default, &cmd, err, sizeof(err)), -1);
    assert_string_equal(err, "Protocol error: too big inline request");
    assert_int_equal(resp_parse_command(line, 65, &lim_default, &cmd, err, sizeof(err)), -1);
    assert_string_equal(err, "Protocol error: too big inline request");
}

static void test_err_buffer_small(void **state)
{
    (void)state;
    struct resp_command cmd;
    char err[8];
    memset(err, 'Z', sizeof(err));
    assert_int_equal(resp_parse_command("*x\r\n", 4, &lim_default, &cmd, err, sizeof(err)), -1);
    assert_string_equal(err, "Protoco");
    assert_int_equal(resp_parse_command("*x\r\n", 4, &lim_default, &cmd, NULL, 0), -1);
}

/* ---- resp_stream_scan ---- */

#define GETACK_CMD "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n"
#define SET_CMD    "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"
#define PING_CMD   "*1\r\n$4\r\nPING\r\n"

static void test_stream_getack(void **state)
{
    (void)state;
    const char *in = SET_CMD GETACK_CMD PING_CMD;
    size_t len = strlen(in);
    size_t getack_end = strlen(SET_CMD GETACK_CMD);
    struct resp_stream s;
    resp_stream_init(&s);
    assert_true(resp_stream_at_boundary(&s));
    bool getack = true;
    char err[RESP_ERR_LEN];
    assert_int_equal(resp_stream_scan(&s, in, len, &getack, err, sizeof(err)), getack_end);
    assert_true(getack);
    assert_true(resp_stream_at_boundary(&s));
    assert_int_equal(
        resp_stream_scan(&s, in + getack_end, len - getack_end, &getack, err, sizeof(err)),
        len - getack_end);
    assert_false(getack);
    assert_true(resp_stream_at_boundary(&s));

    /* GETACK as the last bytes of the buffer: consumes everything and reports it. */
    resp_stream_init(&s);
    assert_int_equal(
        resp_stream_scan(&s, GETACK_CMD, strlen(GETACK_CMD), &getack, err, sizeof(err)),
        strlen(GETACK_CMD));
    assert_true(getack);

    /* Two GETACKs back to back: one per call. */
    const char *two = GETACK_CMD GETACK_CMD;
    size_t one = strlen(GETACK_CMD);
    resp_stream_init(&s);
    assert_int_equal(resp_stream_scan(&s, two, 2 * one, &getack, err, sizeof(err)), one);
    assert_true(getack);
    assert_int_equal(resp_stream_scan(&s, two + one, one, &getack, err, sizeof(err)), one);
    assert_true(getack);
}

static void test_stream_byte_by_byte(void **state)
{
    (void)state;
    const char *in = PING_CMD SET_CMD GETACK_CMD SET_CMD GETACK_CMD;
    size_t len = strlen(in);
    size_t ack1 = strlen(PING_CMD SET_CMD GETACK_CMD) - 1;
    size_t ack2 = len - 1;
    struct resp_stream s;
    resp_stream_init(&s);
    char err[RESP_ERR_LEN];
    int seen = 0;
    for (size_t i = 0; i < len; i++) {
        bool getack = false;
        assert_int_equal(resp_stream_scan(&s, in + i, 1, &getack, err, sizeof(err)), 1);
        if (getack) {
            assert_true(i == ack1 || i == ack2);
            seen++;
        }
        bool boundary = i == strlen(PING_CMD) - 1 || i == ack1 || i == ack2 ||
                        i == strlen(PING_CMD SET_CMD) - 1 ||
                        i == strlen(PING_CMD SET_CMD GETACK_CMD SET_CMD) - 1;
        assert_int_equal(resp_stream_at_boundary(&s), boundary);
    }
    assert_int_equal(seen, 2);
}

static void test_stream_case_and_lookalikes(void **state)
{
    (void)state;
    struct resp_stream s;
    char err[RESP_ERR_LEN];
    bool getack;
    /* Case-insensitive, and without the "*" argument. */
    const char *lower = "*2\r\n$8\r\nreplconf\r\n$6\r\ngetAck\r\n" PING_CMD;
    resp_stream_init(&s);
    assert_int_equal(resp_stream_scan(&s, lower, strlen(lower), &getack, err, sizeof(err)),
                     strlen(lower) - strlen(PING_CMD));
    assert_true(getack);

#define CASE(lit)                                                                                  \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }
    static const struct {
        const char *in;
        size_t len;
    } not_getack[] = {
        /* GETACK as a value, and a whole GETACK command inside a SET value. */
        CASE("*3\r\n$3\r\nSET\r\n$6\r\nGETACK\r\n$6\r\nGETACK\r\n"),
        CASE("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$37\r\n" GETACK_CMD "\r\n"),
        CASE("*3\r\n$3\r\nSET\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n"),
        CASE("*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$6\r\nGETACK\r\n"),
        CASE("*1\r\n$8\r\nREPLCONF\r\n"),
        CASE("*2\r\n$8\r\nREPLCONF\r\n$7\r\nGETACKS\r\n"),
        CASE("*2\r\n$9\r\nREPLCONFX\r\n$6\r\nGETACK\r\n"),
        CASE("*2\r\n$7\r\nREPLCON\r\n$6\r\nGETACK\r\n"),
        /* Words padded with NULs past the 16 bytes the scanner keeps of each argument. */
        CASE("*2\r\n$8\r\nREPLCONF\r\n$20\r\nGETACK\0\0\0\0\0\0\0\0\0\0\0\0\0\0\r\n"),
        CASE("*2\r\n$24\r\nREPLCONF\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\r\n$6\r\nGETACK\r\n"),
    };
#undef CASE
    for (size_t t = 0; t < sizeof(not_getack) / sizeof(not_getack[0]); t++) {
        const char *in = not_getack[t].in;
        size_t len = not_getack[t].len;
        resp_stream_init(&s);
        ssize_t rc = resp_stream_scan(&s, in, len, &getack, err, sizeof(err));
        if (rc != (ssize_t)len || getack)
            fail_msg("case %zu: rc %zd getack %d (%s)", t, rc, getack, err);
        assert_true(resp_stream_at_boundary(&s));
    }
}

static void test_stream_long_args(void **state)
{
    (void)state;
    /* A 1000-byte key fed whole, then in 1- and 7-byte pieces, followed by a GETACK. */
    char in[4096];
    size_t pos = (size_t)snprintf(in, sizeof(in), "*3\r\n$3\r\nSET\r\n$1000\r\n");
    memset(in + pos, 'R', 1000);
    pos += 1000;
    pos += (size_t)snprintf(in + pos, sizeof(in) - pos, "\r\n$1000\r\n");
    memset(in + pos, 'G', 1000 - 50);
    pos += 950;
    memset(in + pos, 'G', 50);
    pos += 50;
    memcpy(in + pos, "\r\n", 2);
    pos += 2;
    size_t set_len = pos;
    memcpy(in + pos, GETACK_CMD, strlen(GETACK_CMD));
    pos += strlen(GETACK_CMD);
    size_t len = pos;

    static const size_t steps[] = {4096, 1, 7, 16, 17};
    for (size_t t = 0; t < sizeof(steps) / sizeof(steps[0]); t++) {
        /* The guard catches writes past the scanner state even without ASan. */
        struct {
            struct resp_stream s;
            unsigned char guard[1024];
        } g;
        memset(g.guard, 0x5a, sizeof(g.guard));
        struct resp_stream *s = &g.s;
        resp_stream_init(s);
        char err[RESP_ERR_LEN];
        size_t at = 0;
        int acks = 0;
        while (at < len) {
            size_t n = steps[t] < len - at ? steps[t] : len - at;
            bool getack;
            ssize_t rc = resp_stream_scan(s, in + at, n, &getack, err, sizeof(err));
            assert_true(rc > 0);
            for (size_t i = 0; i < sizeof(g.guard); i++)
                assert_int_equal(g.guard[i], 0x5a);
            at += (size_t)rc;
            if (getack) {
                assert_int_equal(at, len);
                acks++;
            } else {
                assert_int_equal(rc, n);
                assert_true(at < len);
            }
            if (at == set_len)
                assert_true(resp_stream_at_boundary(s));
        }
        assert_int_equal(acks, 1);
    }
}

static void assert_stream_error(const char *in, size_t len, const char *want)
{
    struct resp_stream s;
    resp_stream_init(&s);
    bool getack;
    char err[RESP_ERR_LEN] = "";
    assert_int_equal(resp_stream_scan(&s, in, len, &getack, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    /* The same error when fed byte by byte. */
    resp_stream_init(&s);
    ssize_t rc = 0;
    for (size_t i = 0; i < len && rc >= 0; i++)
        rc = resp_stream_scan(&s, in + i, 1, &getack, err, sizeof(err));
    assert_int_equal(rc, -1);
    assert_string_equal(err, want);
}

static void test_stream_errors(void **state)
{
    (void)state;
#define STREAM_ERR(lit, want) assert_stream_error(lit, sizeof(lit) - 1, want)
    STREAM_ERR("+OK\r\n", "expected '*' at command start");
    STREAM_ERR("\n", "expected '*' at command start");
    STREAM_ERR("PING\r\n", "expected '*' at command start");
    STREAM_ERR("*2\r\n:1\r\n", "expected '$'");
    STREAM_ERR("*1\r\n$3\r\nfooXY", "bulk not terminated by CRLF");
    STREAM_ERR("*1\r\n$3\r\nfoo\rX", "bulk not terminated by CRLF");
    STREAM_ERR("*1\r\n$-5\r\n", "negative bulk length in stream");
    STREAM_ERR("*1\n", "header line not terminated by CRLF");
    STREAM_ERR("*x\r\n", "bad number in header line");
    STREAM_ERR("*1\r\n$\r\n", "bad number in header line");
    STREAM_ERR("*11111111111111111111111111111111111111\r\n", "header line too long");
    STREAM_ERR("*2147483648\r\n", "multibulk length beyond what a master sends");
    STREAM_ERR("*1\r\n$9223372036854775807\r\n", "bulk length beyond what a master sends");
    STREAM_ERR("*1\r\n$1099511627777\r\n", "bulk length beyond what a master sends");
#undef STREAM_ERR
}

static void test_stream_empty_commands(void **state)
{
    (void)state;
    /* "*0" and "*-1" frame nothing; the scanner stays in sync. */
    const char *in = "*0\r\n*-1\r\n" GETACK_CMD;
    struct resp_stream s;
    resp_stream_init(&s);
    bool getack;
    char err[RESP_ERR_LEN];
    assert_int_equal(resp_stream_scan(&s, in, strlen(in), &getack, err, sizeof(err)), strlen(in));
    assert_true(getack);
    /* An empty bulk. */
    const char *e = "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n";
    resp_stream_init(&s);
    assert_int_equal(resp_stream_scan(&s, e, strlen(e), &getack, err, sizeof(err)), strlen(e));
    assert_false(getack);
    assert_true(resp_stream_at_boundary(&s));
}

/* ---- handshake reply lines ---- */

static int fullresync(const char *line, char *replid, int64_t *off)
{
    return resp_parse_fullresync(line, strlen(line), replid, off);
}

static void test_fullresync(void **state)
{
    (void)state;
    char replid[RESP_REPLID_LEN + 1];
    int64_t off = -7;
    char line[128];
    snprintf(line, sizeof(line), "+FULLRESYNC %s 1234567890123", replid_a);
    memset(replid, 'z', sizeof(replid));
    assert_int_equal(fullresync(line, replid, &off), 0);
    assert_string_equal(replid, replid_a);
    assert_int_equal(off, INT64_C(1234567890123));

    snprintf(line, sizeof(line), "+FULLRESYNC %s 0", replid_a);
    assert_int_equal(fullresync(line, replid, &off), 0);
    assert_int_equal(off, 0);

    /* The length excludes the rest of the buffer. */
    snprintf(line, sizeof(line), "+FULLRESYNC %s 99\r\nxx", replid_a);
    assert_int_equal(resp_parse_fullresync(line, strlen(line) - 4, replid, &off), 0);
    assert_int_equal(off, 99);

    static const char *const bad[] = {
        "+FULLRESYNC 0123456789abcdef0123456789abcdef0123456 5",   /* 39 chars */
        "+FULLRESYNC 0123456789abcdef0123456789abcdef012345678 5", /* 41 chars */
        "+FULLRESYNC 0123456789abcdef0123456789abcdef0123456g 5",  /* not hex */
        "+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 -1",
        "+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 12a",
        "+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 ",
        "+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 5 extra",
        "+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 99999999999999999999",
        "+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 9223372036854775700",
        "+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 4611686018427387905",
        "+FULLRESYNCX 0123456789abcdef0123456789abcdef01234567 5",
        "+fullresync 0123456789abcdef0123456789abcdef01234567 5",
        "+CONTINUE 0123456789abcdef0123456789abcdef01234567 5",
        "+FULLRESYNC",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fullresync(bad[i], replid, &off) != -1)
            fail_msg("accepted: \"%s\"", bad[i]);
    }
}

static void test_continue(void **state)
{
    (void)state;
    char replid[RESP_REPLID_LEN + 1];
    memset(replid, 'z', sizeof(replid));
    assert_int_equal(resp_parse_continue("+CONTINUE", 9, replid), 0);
    assert_string_equal(replid, "");
    assert_int_equal(resp_parse_continue("+CONTINUE  ", 11, replid), 0);
    assert_string_equal(replid, "");

    char line[128];
    int n = snprintf(line, sizeof(line), "+CONTINUE %s", replid_a);
    assert_int_equal(resp_parse_continue(line, (size_t)n, replid), 0);
    assert_string_equal(replid, replid_a);

    static const char *const bad[] = {
        "+CONTINUE abc",
        "+CONTINUE 0123456789abcdef0123456789abcdef0123456x",
        "+CONTINUE 0123456789abcdef0123456789abcdef01234567 5",
        "+CONTINUEX",
        "+continue",
        "+FULLRESYNC",
        "-ERR",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (resp_parse_continue(bad[i], strlen(bad[i]), replid) != -1)
            fail_msg("accepted: \"%s\"", bad[i]);
    }
}

static void test_rdb_preamble(void **state)
{
    (void)state;
    struct resp_rdb_preamble p;
    char err[RESP_ERR_LEN];
    assert_int_equal(resp_parse_rdb_preamble("$123", 4, &p, err, sizeof(err)), 0);
    assert_false(p.eof_format);
    assert_int_equal(p.size, 123);
    assert_int_equal(resp_parse_rdb_preamble("$0", 2, &p, err, sizeof(err)), 0);
    assert_int_equal(p.size, 0);

    char line[64];
    const char *mark = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    int n = snprintf(line, sizeof(line), "$EOF:%s", mark);
    assert_int_equal(n, 45);
    assert_int_equal(resp_parse_rdb_preamble(line, 45, &p, err, sizeof(err)), 0);
    assert_true(p.eof_format);
    assert_memory_equal(p.mark, mark, RESP_EOFMARK_LEN);

    struct {
        const char *line;
        const char *err;
    } bad[] = {
        {"", "RDB preamble does not start with '$'"},
        {"123", "RDB preamble does not start with '$'"},
        {"-ERR no", "RDB preamble does not start with '$'"},
        {"$", "RDB preamble has a bad length"},
        {"$-1", "RDB preamble has a bad length"},
        {"$12a", "RDB preamble has a bad length"},
        {"$ 12", "RDB preamble has a bad length"},
        {"$EOF:", "RDB EOF mark is not 40 bytes"},
        {"$EOF:abcdefghijklmnopqrstuvwxyz0123456789ABC", "RDB EOF mark is not 40 bytes"},
        {"$EOF:abcdefghijklmnopqrstuvwxyz0123456789ABCDE", "RDB EOF mark is not 40 bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (resp_parse_rdb_preamble(bad[i].line, strlen(bad[i].line), &p, err, sizeof(err)) != -1)
            fail_msg("accepted: \"%s\"", bad[i].line);
        assert_string_equal(err, bad[i].err);
    }
}

/* ---- EOF mark ---- */

static const char eof_mark[RESP_EOFMARK_LEN + 1] = "0123456789012345678901234567890123456789";

/* payload, mark, trailing bytes */
static size_t build_stream(char *buf, const char *payload, const char *after)
{
    size_t n = 0;
    memcpy(buf, payload, strlen(payload));
    n += strlen(payload);
    memcpy(buf + n, eof_mark, RESP_EOFMARK_LEN);
    n += RESP_EOFMARK_LEN;
    memcpy(buf + n, after, strlen(after));
    return n + strlen(after);
}

static void test_eofmark_one_chunk(void **state)
{
    (void)state;
    char buf[128];
    size_t len = build_stream(buf, "REDIS0010 payload", "*1\r\n$4\r\nPING\r\n");
    struct resp_eofmark m;
    resp_eofmark_init(&m, eof_mark);
    assert_int_equal(resp_eofmark_feed(&m, buf, len), 17 + RESP_EOFMARK_LEN);
    assert_true(m.found);
    /* Nothing more once found. */
    assert_int_equal(resp_eofmark_feed(&m, buf, len), -1);

    /* Only the mark; an empty chunk changes nothing. */
    resp_eofmark_init(&m, eof_mark);
    assert_int_equal(resp_eofmark_feed(&m, buf, 0), -1);
    assert_int_equal(resp_eofmark_feed(&m, eof_mark, RESP_EOFMARK_LEN), RESP_EOFMARK_LEN);

    /* 39 bytes of it is not the mark. */
    resp_eofmark_init(&m, eof_mark);
    assert_int_equal(resp_eofmark_feed(&m, eof_mark, RESP_EOFMARK_LEN - 1), -1);
    assert_false(m.found);
}

/* Feeds buf cut at the given points; checks the mark completes at index want of the whole. */
static void feed_cuts(const char *mark, const char *buf, size_t len, const size_t *cuts,
                      size_t ncuts, size_t want)
{
    struct resp_eofmark m;
    resp_eofmark_init(&m, mark);
    size_t from = 0;
    bool done = false;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t to = c < ncuts ? cuts[c] : len;
        ssize_t rc = resp_eofmark_feed(&m, buf + from, to - from);
        if (!done && want > from && want <= to) {
            if (rc != (ssize_t)(want - from))
                fail_msg("cuts %zu/%zu: chunk [%zu,%zu) got %zd want %zu", ncuts,
                         ncuts ? cuts[0] : 0, from, to, rc, want - from);
            done = true;
        } else if (rc != -1) {
            fail_msg("chunk [%zu,%zu) got %zd want -1 (mark ends at %zu)", from, to, rc, want);
        }
        from = to;
    }
    assert_true(done);
}

static void test_eofmark_every_split(void **state)
{
    (void)state;
    char buf[128];
    size_t len = build_stream(buf, "RDB-data-0123", "after");
    size_t want = 13 + RESP_EOFMARK_LEN;
    for (size_t a = 0; a <= len; a++)
        feed_cuts(eof_mark, buf, len, &a, 1, want);
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};
            feed_cuts(eof_mark, buf, len, cuts, 2, want);
        }
    }
    /* Byte by byte. */
    size_t cuts[128];
    for (size_t i = 0; i < len - 1; i++)
        cuts[i] = i + 1;
    feed_cuts(eof_mark, buf, len, cuts, len - 1, want);
}

static void test_eofmark_self_overlapping(void **state)
{
    (void)state;
    /* A mark of 39 'a' and a 'b': runs of 'a' in the payload look like its prefix. */
    char mark[RESP_EOFMARK_LEN];
    memset(mark, 'a', sizeof(mark));
    mark[RESP_EOFMARK_LEN - 1] = 'b';
    char buf[256];
    size_t len = 0;
    memset(buf, 'a', 30);
    buf[30] = 'b'; /* a near miss: 30 a's then b */
    len = 31;
    memset(buf + len, 'a', 60); /* 60 a's: the mark is the last 39 of them and the b */
    len += 60;
    buf[len++] = 'b';
    memcpy(buf + len, "ab", 2);
    len += 2;
    size_t want = 31 + 60 + 1;
    for (size_t a = 0; a <= len; a++)
        feed_cuts(mark, buf, len, &a, 1, want);
    for (size_t a = 0; a <= len; a += 3) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};
            feed_cuts(mark, buf, len, cuts, 2, want);
        }
    }
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static void test_eofmark_random(void **state)
{
    (void)state;
    /* Payloads over {a, b} with a mark over {a, b}: many partial matches. Compare the first
     * occurrence found by memmem on the whole stream with the chunked scanner. */
    uint64_t rng = 0xdecafbad;
    char mark[RESP_EOFMARK_LEN];
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < RESP_EOFMARK_LEN; i++)
            mark[i] = (rng_next(&rng) % 8) ? 'a' : 'b';
        char buf[400];
        size_t plen = (size_t)(rng_next(&rng) % 300);
        for (size_t i = 0; i < plen; i++)
            buf[i] = (rng_next(&rng) % 8) ? 'a' : 'b';
        memcpy(buf + plen, mark, RESP_EOFMARK_LEN);
        size_t len = plen + RESP_EOFMARK_LEN;
        size_t tail = (size_t)(rng_next(&rng) % 40);
        for (size_t i = 0; i < tail; i++)
            buf[len++] = (rng_next(&rng) % 2) ? 'a' : 'b';
        const char *hit = memmem(buf, len, mark, RESP_EOFMARK_LEN);
        assert_non_null(hit);
        size_t want = (size_t)(hit - buf) + RESP_EOFMARK_LEN;

        size_t cuts[64], ncuts = 0, at = 0;
        while (ncuts < 64) {
            at += (size_t)(rng_next(&rng) % 50);
            if (at >= len)
                break;
            cuts[ncuts++] = at;
        }
        feed_cuts(mark, buf, len, cuts, ncuts, want);
    }
}

/* ---- resp_escape ---- */

/* Before AUTH: Redis' 10 arguments and 16384-byte bulks, with its texts, whatever the limits. */
static void test_unauthenticated_limits(void **state)
{
    (void)state;
    struct resp_limits lim = {.max_argc = RESP_MAX_ARGC,
                              .max_bulk_bytes = 1 << 20,
                              .max_inline_bytes = 1024,
                              .unauthenticated = true};
    struct resp_command cmd;
    char err[RESP_ERR_LEN] = "";
    const char *eleven = "*11\r\n";
    assert_int_equal(resp_parse_command(eleven, strlen(eleven), &lim, &cmd, err, sizeof(err)), -1);
    assert_string_equal(err, "Protocol error: unauthenticated multibulk length");
    const char *ten = "*10\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
                      "$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n";
    assert_int_equal(resp_parse_command(ten, strlen(ten), &lim, &cmd, err, sizeof(err)),
                     (ssize_t)strlen(ten));
    assert_int_equal(cmd.argc, 10);
    /* the bulk header alone is refused, before any of its bytes arrive */
    const char *big = "*2\r\n$4\r\nAUTH\r\n$16385\r\n";
    assert_int_equal(resp_parse_command(big, strlen(big), &lim, &cmd, err, sizeof(err)), -1);
    assert_string_equal(err, "Protocol error: unauthenticated bulk length");
    const char *ok = "*2\r\n$4\r\nAUTH\r\n$16384\r\n";
    assert_int_equal(resp_parse_command(ok, strlen(ok), &lim, &cmd, err, sizeof(err)), 0);
    /* authenticated, the configured limits apply */
    lim.unauthenticated = false;
    assert_int_equal(resp_parse_command(eleven, strlen(eleven), &lim, &cmd, err, sizeof(err)), 0);
    assert_int_equal(resp_parse_command(big, strlen(big), &lim, &cmd, err, sizeof(err)), 0);
}

/* Redis' rule: exactly 40 characters, ASCII case-insensitive. */
static void test_replid_equal(void **state)
{
    (void)state;
    const char *ours = "0123456789abcdef0123456789abcdef01234567";
    assert_true(resp_replid_equal(ours, 40, ours));
    assert_true(resp_replid_equal("0123456789ABCDEF0123456789ABCDEF01234567", 40, ours));
    char longer[48];
    snprintf(longer, sizeof(longer), "%sX", ours);
    assert_false(resp_replid_equal(longer, 41, ours)); /* not on its first 40 characters */
    assert_false(resp_replid_equal(ours, 39, ours));
    assert_false(resp_replid_equal("0123456789abcdef0123456789abcdef0123456\0", 40, ours));
    assert_false(resp_replid_equal("?", 1, ours));
    assert_false(resp_replid_equal(ours, 40, "0123")); /* ours must be a whole id too */
    assert_false(resp_replid_equal("0123456789abcdef0123456789abcdef01234568", 40, ours));
}

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    resp_escape("a\r\nb\"\\\x01\xff", 8, out, sizeof(out));
    assert_string_equal(out, "a\\r\\nb\\\"\\\\\\x01\\xff");
    resp_escape("", 0, out, sizeof(out));
    assert_string_equal(out, "");
    resp_escape("x\0y", 3, out, sizeof(out));
    assert_string_equal(out, "x\\x00y");

    /* Truncation keeps at most out_len - 1 chars and never splits an escape. */
    resp_escape("abcdef", 6, out, 5);
    assert_string_equal(out, "abcd");
    resp_escape("abc\r", 4, out, 5);
    assert_string_equal(out, "abc");
    resp_escape("abc\r", 4, out, 6);
    assert_string_equal(out, "abc\\r");
    resp_escape("ab\x7f", 3, out, 6);
    assert_string_equal(out, "ab");
    resp_escape("ab\x7f", 3, out, 7);
    assert_string_equal(out, "ab\\x7f");
    resp_escape("abc", 3, out, 1);
    assert_string_equal(out, "");
    out[0] = 'Q';
    resp_escape("abc", 3, out, 0);
    assert_int_equal(out[0], 'Q');
}

static void test_random_hex(void **state)
{
    (void)state;
    char a[41], b[41];
    memset(a, 'x', sizeof(a));
    resp_random_hex(a, 40);
    resp_random_hex(b, 40);
    assert_int_equal(strlen(a), 40);
    assert_int_equal(strspn(a, "0123456789abcdef"), 40);
    assert_string_not_equal(a, b); /* 2^-160 to fail by chance */
    char big[201];
    resp_random_hex(big, 200); /* more than one getrandom call's buffer */
    assert_int_equal(strspn(big, "0123456789abcdef"), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk),
        cmocka_unit_test(test_multibulk_empty_args),
        cmocka_unit_test(test_multibulk_partial_every_split),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_bare_newline),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_multibulk_errors),
        cmocka_unit_test(test_bulk_limit_boundary),
        cmocka_unit_test(test_argc_limits),
        cmocka_unit_test(test_inline_limit),
        cmocka_unit_test(test_err_buffer_small),
        cmocka_unit_test(test_stream_getack),
        cmocka_unit_test(test_stream_byte_by_byte),
        cmocka_unit_test(test_stream_case_and_lookalikes),
        cmocka_unit_test(test_stream_long_args),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_stream_empty_commands),
        cmocka_unit_test(test_fullresync),
        cmocka_unit_test(test_random_hex),
        cmocka_unit_test(test_continue),
        cmocka_unit_test(test_rdb_preamble),
        cmocka_unit_test(test_eofmark_one_chunk),
        cmocka_unit_test(test_eofmark_every_split),
        cmocka_unit_test(test_eofmark_self_overlapping),
        cmocka_unit_test(test_eofmark_random),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_unauthenticated_limits),
        cmocka_unit_test(test_replid_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
