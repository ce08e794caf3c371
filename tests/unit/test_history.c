/*
 * Unit tests for history.c: ids compare with exact length and case-insensitively, replid2 is
 * valid only up to second_replid_offset, offsets outside the held range or 0..RESP_MAX_OFFSET
 * are refused, the ahead allowance holds for the current id only, and +CONTINUE's shift.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "history.h"

#define A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define C "cccccccccccccccccccccccccccccccccccccccc"

static bool cont(const struct history *h, const char *id, int64_t off, int64_t start, int64_t next,
                 int64_t ahead)
{
    return history_can_continue(h, id, strlen(id), off, start, next, ahead);
}

static void test_empty(void **state)
{
    (void)state;
    struct history h;
    history_init(&h);
    assert_false(h.has_history);
    assert_string_equal(h.replid, HISTORY_NULL_REPLID);
    assert_string_equal(h.replid2, HISTORY_NULL_REPLID);
    assert_int_equal(h.second_replid_offset, -1);
    assert_int_equal(history_match(&h, HISTORY_NULL_REPLID, RESP_REPLID_LEN, 1), HISTORY_NONE);
    assert_false(cont(&h, HISTORY_NULL_REPLID, 1, 1, 1, 100));
}

static void test_id_compare(void **state)
{
    (void)state;
    struct history h;
    history_init(&h);
    history_start(&h, A);
    assert_true(h.has_history);
    assert_int_equal(history_match(&h, A, RESP_REPLID_LEN, 5), HISTORY_CURRENT);
    assert_int_equal(
        history_match(&h, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", RESP_REPLID_LEN, 5),
        HISTORY_CURRENT);
    assert_int_equal(history_match(&h, A, RESP_REPLID_LEN - 1, 5), HISTORY_NONE); /* prefix */
    assert_int_equal(history_match(&h, A "a", RESP_REPLID_LEN + 1, 5), HISTORY_NONE);
    assert_int_equal(history_match(&h, B, RESP_REPLID_LEN, 5), HISTORY_NONE);
    assert_int_equal(history_match(&h, "?", 1, 5), HISTORY_NONE);
    /* A new history has no previous id: the null id is not ours at any real offset. */
    assert_int_equal(history_match(&h, HISTORY_NULL_REPLID, RESP_REPLID_LEN, 0), HISTORY_NONE);
}

static void test_shift(void **state)
{
    (void)state;
    struct history h;
    history_init(&h);
    history_start(&h, A);
    assert_false(history_shift(&h, "", 100));
    assert_false(history_shift(&h, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 100));
    assert_string_equal(h.replid, A);
    assert_int_equal(h.second_replid_offset, -1);
    assert_true(history_shift(&h, B, 100));
    assert_string_equal(h.replid, B);
    assert_string_equal(h.replid2, A);
    assert_int_equal(h.second_replid_offset, 101);
    /* replid2 only up to second_replid_offset. */
    assert_int_equal(history_match(&h, A, RESP_REPLID_LEN, 101), HISTORY_PREVIOUS);
    assert_int_equal(history_match(&h, A, RESP_REPLID_LEN, 102), HISTORY_NONE);
    assert_int_equal(history_match(&h, B, RESP_REPLID_LEN, 102), HISTORY_CURRENT);
    /* A second shift forgets the first id. */
    assert_true(history_shift(&h, C, 200));
    assert_string_equal(h.replid2, B);
    assert_int_equal(h.second_replid_offset, 201);
    assert_int_equal(history_match(&h, A, RESP_REPLID_LEN, 50), HISTORY_NONE);
    /* A new history drops the previous id. */
    history_start(&h, A);
    assert_string_equal(h.replid2, HISTORY_NULL_REPLID);
    assert_int_equal(h.second_replid_offset, -1);
    assert_int_equal(history_match(&h, C, RESP_REPLID_LEN, 1), HISTORY_NONE);
}

static void test_restore(void **state)
{
    (void)state;
    struct history h;
    history_init(&h);
    history_restore(&h, A, "", -1);
    assert_true(h.has_history);
    assert_string_equal(h.replid2, HISTORY_NULL_REPLID);
    history_restore(&h, B, A, 77);
    assert_int_equal(history_match(&h, A, RESP_REPLID_LEN, 77), HISTORY_PREVIOUS);
    assert_int_equal(history_match(&h, A, RESP_REPLID_LEN, 78), HISTORY_NONE);
}

static void test_can_continue(void **state)
{
    (void)state;
    struct history h;
    history_init(&h);
    history_start(&h, A);
    assert_true(history_shift(&h, B, 150)); /* A valid up to 151 */
    /* held: 100..199, next 200, ahead 10 */
    assert_true(cont(&h, B, 100, 100, 200, 10));
    assert_true(cont(&h, B, 200, 100, 200, 10));
    assert_true(cont(&h, B, 210, 100, 200, 10)); /* ahead, current id */
    assert_false(cont(&h, B, 211, 100, 200, 10));
    assert_false(cont(&h, B, 99, 100, 200, 10)); /* below what is held */
    assert_false(cont(&h, B, 201, 100, 200, 0));
    assert_true(cont(&h, A, 100, 100, 200, 10));
    assert_true(cont(&h, A, 151, 100, 200, 10));
    assert_false(cont(&h, A, 152, 100, 200, 10)); /* past where A ended */
    assert_false(cont(&h, A, 99, 100, 200, 10));
    assert_false(cont(&h, C, 150, 100, 200, 10));
    /* The ahead allowance is for the current id only. */
    history_restore(&h, B, A, 1000);
    assert_true(cont(&h, A, 200, 100, 200, 10));
    assert_false(cont(&h, A, 201, 100, 200, 10));
    assert_true(cont(&h, B, 205, 100, 200, 10));
    /* Offsets no stream reaches. */
    assert_false(cont(&h, B, -1, -5, 200, 10));
    assert_true(cont(&h, B, 0, 0, 200, 10));
    assert_true(cont(&h, B, RESP_MAX_OFFSET, 0, RESP_MAX_OFFSET, 10));
    assert_false(cont(&h, B, RESP_MAX_OFFSET + 1, 0, RESP_MAX_OFFSET, 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),        cmocka_unit_test(test_id_compare),
        cmocka_unit_test(test_shift),        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_can_continue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
