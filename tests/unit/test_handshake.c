/*
 * Unit tests for handshake.c: the commands of the handshake exactly as sent (AUTH with and
 * without a user, the REPLCONF set with and without compression, version and rdb-only,
 * PSYNC for a history and for none, ACK), PING's and REPLCONF's replies, the INFO bulk's
 * header (whole, partial, malformed, too long), the loop refusal, every PSYNC reply, and the
 * account of aborted full syncs (reason text and backoff).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "handshake.h"

#define A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define C "cccccccccccccccccccccccccccccccccccccccc"

/* Command i of the batch as one line, its arguments separated by single spaces. */
static const char *cmd(const struct handshake_batch *b, int i)
{
    static char line[512];
    line[0] = '\0';
    assert_true(i < b->n);
    for (int k = 0; k < b->cmd[i].argc; k++) {
        if (k)
            strcat(line, " ");
        strcat(line, b->cmd[i].argv[k]);
    }
    return line;
}

static void test_auth_info(void **state)
{
    (void)state;
    struct handshake_batch b;
    assert_false(handshake_auth_info(&b, "", ""));
    assert_int_equal(b.n, 1);
    assert_string_equal(cmd(&b, 0), "INFO server");
    assert_true(handshake_auth_info(&b, "", "secret"));
    assert_int_equal(b.n, 2);
    assert_string_equal(cmd(&b, 0), "AUTH secret");
    assert_string_equal(cmd(&b, 1), "INFO server");
    assert_true(handshake_auth_info(&b, "relay", "secret"));
    assert_int_equal(b.n, 2);
    assert_string_equal(cmd(&b, 0), "AUTH relay secret");
    /* a user without a password sends no AUTH */
    assert_false(handshake_auth_info(&b, "relay", ""));
    assert_int_equal(b.n, 1);
}

static void test_replconf(void **state)
{
    (void)state;
    struct handshake_batch b;
    struct handshake_replconf p = {.listening_port = 6380, .announced = ""};
    handshake_replconf(&b, &p);
    assert_int_equal(b.n, 3);
    assert_string_equal(cmd(&b, 0), "REPLCONF listening-port 6380");
    assert_string_equal(cmd(&b, 1), "REPLCONF capa eof capa psync2");
    assert_string_equal(cmd(&b, 2), "REPLCONF capa cascade-frame");
    p.compression = true;
    p.announced = "9.0.0";
    p.rdb_only = true;
    handshake_replconf(&b, &p);
    assert_int_equal(b.n, 5);
    assert_string_equal(cmd(&b, 2), "REPLCONF capa cascade-frame capa cascade-zstd");
    assert_string_equal(cmd(&b, 3), "REPLCONF version 9.0.0");
    assert_string_equal(cmd(&b, 4), "REPLCONF rdb-only 1");
    /* never a capability that would change the RDB the relay stores */
    for (int i = 0; i < b.n; i++) {
        assert_null(strstr(cmd(&b, i), "skip-rdb-checksum"));
        assert_null(strstr(cmd(&b, i), "rdb-channel"));
    }
}

static void test_psync_ack(void **state)
{
    (void)state;
    struct handshake_batch b;
    handshake_psync(&b, "", 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(cmd(&b, 0), "PSYNC ? -1");
    handshake_psync(&b, A, 4611686018427387903LL);
    assert_string_equal(cmd(&b, 0), "PSYNC " A " 4611686018427387904");
    handshake_psync(&b, A, 0);
    assert_string_equal(cmd(&b, 0), "PSYNC " A " 1");
    handshake_ack(&b, 12345);
    assert_int_equal(b.n, 1);
    assert_string_equal(cmd(&b, 0), "REPLCONF ACK 12345");
}

static void test_replies(void **state)
{
    (void)state;
    assert_true(handshake_ping_ok("+PONG", false));
    assert_true(handshake_ping_ok("-NOAUTH Authentication required.", true));
    assert_true(handshake_ping_ok("-NOPERM this user has no permissions", true));
    assert_false(handshake_ping_ok("-ERR unknown command", true));
    assert_false(handshake_ping_ok("-LOADING", true));
    bool zstd = true;
    assert_false(handshake_frame_offered("+OK", &zstd));
    assert_true(handshake_frame_offered("+OK cascade-frame", &zstd));
    assert_false(zstd);
    assert_true(handshake_frame_offered("+OK cascade-frame zstd", &zstd));
    assert_true(zstd);
    assert_false(handshake_frame_offered("+OK cascade", &zstd));
}

static int bulk(const char *s, size_t *skip, size_t *len)
{
    size_t have = strlen(s);
    size_t n = have < HANDSHAKE_INFO_HEAD ? have : HANDSHAKE_INFO_HEAD;
    return handshake_info_bulk(s, n, have, skip, len);
}

static void test_info_bulk(void **state)
{
    (void)state;
    size_t skip = 0, len = 0;
    assert_int_equal(bulk("$5\r\nhello\r\n", &skip, &len), 1);
    assert_int_equal(skip, 4);
    assert_int_equal(len, 5);
    assert_int_equal(bulk("$5\r\nhell", &skip, &len), 0);    /* text incomplete */
    assert_int_equal(bulk("$5\r\nhello\r", &skip, &len), 0); /* its CRLF too */
    assert_int_equal(bulk("$5\r", &skip, &len), 0);
    assert_int_equal(bulk("$", &skip, &len), 0);
    assert_int_equal(bulk("$-1\r\n", &skip, &len), -1);
    assert_int_equal(bulk("$5x\r\nhello\r\n", &skip, &len), -1);
    assert_int_equal(bulk("$65537\r\n", &skip, &len), -1); /* over HANDSHAKE_INFO_MAX_BYTES */
    assert_int_equal(bulk("$65536\r\n", &skip, &len), 0);  /* the limit itself: wait for it */
    /* The header ends within 16 bytes, or the reply is malformed. */
    assert_int_equal(bulk("$000000000000005\r\nhello\r\n", &skip, &len), 1); /* CRLF at 16 */
    assert_int_equal(skip, 18);
    assert_int_equal(bulk("$0000000000000005\r\nhello\r\n", &skip, &len), -1); /* at 17 */
    assert_int_equal(bulk("$000000000000000", &skip, &len), 0);   /* 16 bytes, no CRLF yet */
    assert_int_equal(bulk("$0000000000000000", &skip, &len), -1); /* 17 bytes, none */
    /* the same when the caller shows more than HANDSHAKE_INFO_HEAD bytes */
    const char *late = "$0000000000000005\r\nhello\r\n";
    assert_int_equal(handshake_info_bulk(late, strlen(late), strlen(late), &skip, &len), -1);
    /* only the first CRLF counts, even when the buffer goes on */
    assert_int_equal(bulk("$0\r\n\r\n+more", &skip, &len), 1);
    assert_int_equal(len, 0);
}

static void test_loop(void **state)
{
    (void)state;
    struct compat_identity up = {.server = COMPAT_REDIS};
    snprintf(up.run_id, sizeof(up.run_id), "%s", A);
    snprintf(up.chain, sizeof(up.chain), "%s,%s", B, C);
    assert_null(handshake_loop(&up, ""));
    assert_null(handshake_loop(&up, "dddddddddddddddddddddddddddddddddddddddd"));
    assert_string_equal(handshake_loop(&up, A),
                        "refused: the upstream is this relay itself (same run_id)");
    assert_string_equal(handshake_loop(&up, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                        "refused: the upstream is this relay itself (same run_id)");
    assert_string_equal(handshake_loop(&up, C), "refused: replication loop (the upstream follows "
                                                "this relay, see its cascade_chain)");
}

static enum handshake_psync_reply psync(const char *line, bool is_error, bool may_continue,
                                        bool asked, char *replid, int64_t *off, char *why)
{
    return handshake_psync_reply(line, is_error, may_continue, asked, replid, off, why, 256);
}

static void test_psync_reply(void **state)
{
    (void)state;
    char replid[RESP_REPLID_LEN + 1], why[256];
    int64_t off = -1;
    assert_int_equal(psync("+FULLRESYNC " A " 1234", false, true, true, replid, &off, why),
                     HANDSHAKE_FULLRESYNC);
    assert_string_equal(replid, A);
    assert_int_equal(off, 1234);
    /* a side fetch takes a full resync too */
    assert_int_equal(psync("+FULLRESYNC " B " 0", false, false, false, replid, &off, why),
                     HANDSHAKE_FULLRESYNC);
    assert_int_equal(psync("+FULLRESYNC " A, false, true, true, replid, &off, why),
                     HANDSHAKE_FAILED);
    assert_string_equal(why, "malformed +FULLRESYNC");
    assert_int_equal(psync("+CONTINUE " B, false, true, true, replid, &off, why),
                     HANDSHAKE_CONTINUE);
    assert_string_equal(replid, B);
    assert_int_equal(psync("+CONTINUE", false, true, true, replid, &off, why), HANDSHAKE_CONTINUE);
    assert_string_equal(replid, "");
    assert_int_equal(psync("+CONTINUE", false, true, false, replid, &off, why), HANDSHAKE_FAILED);
    assert_string_equal(why, "protocol error: +CONTINUE in reply to PSYNC ? -1 (there is no "
                             "history to continue)");
    assert_int_equal(psync("+CONTINUE abc", false, true, true, replid, &off, why),
                     HANDSHAKE_FAILED);
    assert_string_equal(why, "malformed +CONTINUE");
    assert_int_equal(psync("+CONTINUE " B, false, false, true, replid, &off, why),
                     HANDSHAKE_FAILED);
    assert_string_equal(why, "unexpected PSYNC reply: +CONTINUE " B);
    assert_int_equal(psync("-NOMASTERLINK Can't SYNC while not connected with my master", true,
                           true, true, replid, &off, why),
                     HANDSHAKE_FAILED);
    assert_string_equal(
        why, "PSYNC refused: NOMASTERLINK Can't SYNC while not connected with my master");
    assert_int_equal(psync("+OK", false, true, true, replid, &off, why), HANDSHAKE_FAILED);
    assert_string_equal(why, "unexpected PSYNC reply: +OK");
}

static void test_abort(void **state)
{
    (void)state;
    char out[256];
    struct compat_identity valkey9 = {.server = COMPAT_VALKEY, .server_version = "9.0.0"};
    struct compat_identity redis = {.server = COMPAT_REDIS, .server_version = "7.2.4"};
    struct compat_rdb none = {0}, r11 = {.version = 11};
    handshake_abort_reason(out, sizeof(out), "connection closed by upstream", 0, "", &none,
                           &valkey9);
    assert_string_equal(out, "connection closed by upstream (after 0 RDB bytes; announced version "
                             "none; RDB not reached; valkey 9.0.0 sends RDB version 11 for it)");
    handshake_abort_reason(out, sizeof(out), "x", 0, "9.0.0", &none, &valkey9);
    assert_string_equal(out, "x (after 0 RDB bytes; announced version 9.0.0; RDB not reached; "
                             "valkey 9.0.0 sends RDB version 80 for it)");
    handshake_abort_reason(out, sizeof(out), "x", 42, "", &r11, &valkey9);
    assert_string_equal(
        out, "x (after 42 RDB bytes; announced version none; REDIS magic, RDB version 11)");
    struct compat_identity valkey8 = {.server = COMPAT_VALKEY, .server_version = "8.1.1"};
    handshake_abort_reason(out, sizeof(out), "x", 0, "", &none, &valkey8);
    assert_string_equal(out, "x (after 0 RDB bytes; announced version none; RDB not reached)");
    handshake_abort_reason(out, sizeof(out), "x", 0, "", &none, &redis);
    assert_string_equal(out, "x (after 0 RDB bytes; announced version none; RDB not reached)");

    assert_int_equal(handshake_abort_delay_ms(0), 0);
    assert_int_equal(handshake_abort_delay_ms(1), 0);
    assert_int_equal(handshake_abort_delay_ms(2), HANDSHAKE_ABORT_BACKOFF_MS);
    assert_int_equal(handshake_abort_delay_ms(3), 2 * HANDSHAKE_ABORT_BACKOFF_MS);
    assert_int_equal(handshake_abort_delay_ms(7), 32 * HANDSHAKE_ABORT_BACKOFF_MS);
    assert_int_equal(handshake_abort_delay_ms(8), HANDSHAKE_ABORT_BACKOFF_MAX_MS);
    assert_int_equal(handshake_abort_delay_ms(1000), HANDSHAKE_ABORT_BACKOFF_MAX_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_info),   cmocka_unit_test(test_replconf),
        cmocka_unit_test(test_psync_ack),   cmocka_unit_test(test_replies),
        cmocka_unit_test(test_info_bulk),   cmocka_unit_test(test_loop),
        cmocka_unit_test(test_psync_reply), cmocka_unit_test(test_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
