/*
 * Unit tests for stats.c: the growable text buffer, the INFO lines generated from the counter
 * table (Redis' field names, "name:value\r\n"), and the *_human byte formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stats.h"

static void test_sbuf(void **state)
{
    (void)state;
    struct sbuf s = {0};
    sbuf_append(&s, "ab", 2);
    assert_int_equal(s.len, 2);
    assert_string_equal(s.buf, "ab");
    sbuf_printf(&s, "-%d-%s", 42, "x");
    assert_string_equal(s.buf, "ab-42-x");
    assert_int_equal(s.len, 7);
    /* Grow well past the first allocation, byte-exact. */
    char big[1000];
    memset(big, 'z', sizeof(big));
    for (int i = 0; i < 10; i++)
        sbuf_append(&s, big, sizeof(big));
    sbuf_printf(&s, "%s", "");
    assert_int_equal(s.len, 10007);
    assert_int_equal(strlen(s.buf), 10007);
    assert_true(s.cap > s.len);
    assert_int_equal(s.buf[7], 'z');
    assert_int_equal(s.buf[10006], 'z');
    sbuf_free(&s);
    assert_null(s.buf);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.cap, 0);
    sbuf_free(&s);
    /* Embedded NULs are kept by append. */
    sbuf_append(&s, "a\0b", 3);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.buf, "a\0b", 4);
    sbuf_free(&s);
}

static void test_info(void **state)
{
    (void)state;
    struct stats st;
    memset(&st, 0, sizeof(st));
    st.total_connections_received = 7;
    st.sync_full = 3;
    st.protocol_errors = INT64_MAX;
    struct sbuf s = {0};
    stats_info(&st, &s);
    assert_non_null(strstr(s.buf, "total_connections_received:7\r\n"));
    assert_non_null(strstr(s.buf, "\r\nsync_full:3\r\n"));
    assert_non_null(strstr(s.buf, "\r\nsync_partial_ok:0\r\n"));
    assert_non_null(strstr(s.buf, "\r\nprotocol_errors:9223372036854775807\r\n"));
    assert_int_equal(strncmp(s.buf, "total_connections_received:", 27), 0);
    /* One line per counter, every line "name:value" with CRLF. */
    size_t lines = 0;
    for (const char *p = s.buf; (p = strstr(p, "\r\n")) != NULL; p += 2)
        lines++;
    assert_int_equal(lines, sizeof(struct stats) / sizeof(int64_t));
    assert_int_equal(s.buf[s.len - 1], '\n');
    assert_int_equal(s.buf[s.len - 2], '\r');
    sbuf_free(&s);
}

static void test_human_bytes(void **state)
{
    (void)state;
    struct {
        int64_t n;
        const char *s;
    } cases[] = {
        {0, "0B"},
        {1023, "1023B"},
        {1024, "1.00K"},
        {1536, "1.50K"},
        {INT64_C(1) << 20, "1.00M"},
        {(INT64_C(64) << 20) + (INT64_C(1) << 19), "64.50M"},
        {INT64_C(1) << 30, "1.00G"},
        {INT64_C(3) << 40, "3.00T"},
        {INT64_C(5) << 50, "5.00P"},
        {INT64_C(4096) << 50, "4096.00P"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[32];
        stats_human_bytes(cases[i].n, out, sizeof(out));
        assert_string_equal(out, cases[i].s);
    }
    char small[4];
    stats_human_bytes(1536, small, sizeof(small));
    assert_string_equal(small, "1.5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sbuf),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_human_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
