/*
 * Unit tests for redis_commands.c: what Redis 7.0 answers an unauthenticated client, in its
 * order (unknown command, unknown subcommand, arity, NOAUTH), the no-auth commands, the EXEC
 * wrapping, and the unknown-command text (cuts, CR/LF as spaces).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "redis_commands.h"

/* A command from NULL-terminated C strings. */
static struct resp_command mk(const char *a0, ...)
{
    struct resp_command c = {0};
    va_list ap;
    va_start(ap, a0);
    for (const char *a = a0; a && c.argc < RESP_MAX_ARGC; a = va_arg(ap, const char *)) {
        c.argv[c.argc] = a;
        c.argl[c.argc++] = strlen(a);
    }
    va_end(ap);
    return c;
}

static const char *pre(struct resp_command c)
{
    static char out[1024];
    if (!redis_preauth_reject(&c, out, sizeof(out)))
        return "(runs)";
    return out;
}

static void test_preauth_order(void **state)
{
    (void)state;
    assert_string_equal(pre(mk("PING", NULL)), "-NOAUTH Authentication required.");
    assert_string_equal(pre(mk("get", "k", NULL)), "-NOAUTH Authentication required.");
    assert_string_equal(pre(mk("GET", NULL)), "-ERR wrong number of arguments for 'get' command");
    assert_string_equal(pre(mk("client", "SETNAME", NULL)),
                        "-ERR wrong number of arguments for 'client|setname' command");
    assert_string_equal(pre(mk("client", NULL)),
                        "-ERR wrong number of arguments for 'client' command");
    assert_string_equal(pre(mk("Client", "nosuch", NULL)),
                        "-ERR unknown subcommand 'nosuch'. Try CLIENT HELP.");
    assert_string_equal(pre(mk("CONFIG", "GET", "x", NULL)), "-NOAUTH Authentication required.");
    assert_string_equal(pre(mk("foo", "a", "b", NULL)),
                        "-ERR unknown command 'foo', with args beginning with: 'a' 'b' ");
    assert_string_equal(pre(mk("EXEC", NULL)),
                        "-EXECABORT Transaction discarded because of: NOAUTH Authentication "
                        "required.");
    assert_string_equal(pre(mk("exec", "x", NULL)),
                        "-EXECABORT Transaction discarded because of: wrong number of arguments "
                        "for 'exec' command");
    /* the no-auth commands run (their own arity still applies) */
    assert_string_equal(pre(mk("AUTH", "x", NULL)), "(runs)");
    assert_string_equal(pre(mk("hello", NULL)), "(runs)");
    assert_string_equal(pre(mk("QUIT", "extra", NULL)), "(runs)");
    assert_string_equal(pre(mk("reset", NULL)), "(runs)");
    assert_string_equal(pre(mk("AUTH", NULL)), "-ERR wrong number of arguments for 'auth' command");
    assert_string_equal(pre(mk("reset", "x", NULL)),
                        "-ERR wrong number of arguments for 'reset' command");
}

static void test_unknown_command_text(void **state)
{
    (void)state;
    char out[1024];
    struct resp_command c = mk("a\r\nb", "x\ny", NULL);
    redis_unknown_command(&c, out, sizeof(out));
    assert_string_equal(out, "unknown command 'a  b', with args beginning with: 'x y' ");
    /* the name is cut at 128 bytes; arguments are added while their list is under 128 */
    char name[300], arg[200];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    memset(arg, 'a', sizeof(arg) - 1);
    arg[sizeof(arg) - 1] = '\0';
    c = mk(name, arg, "more", NULL);
    redis_unknown_command(&c, out, sizeof(out));
    char want[1024];
    snprintf(want, sizeof(want), "unknown command '%.128s', with args beginning with: '%.128s' ",
             name, arg);
    assert_string_equal(out, want);
    /* a small buffer stays terminated */
    char small[8];
    redis_unknown_command(&c, small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_arity_after_auth(void **state)
{
    (void)state;
    char out[256];
    struct resp_command c = mk("CLIENT", "SETNAME", NULL);
    assert_true(redis_arity_reject(&c, out, sizeof(out)));
    assert_string_equal(out, "-ERR wrong number of arguments for 'client|setname' command");
    c = mk("CONFIG", "RELOAD", NULL); /* the relay's own subcommand: left to it */
    assert_false(redis_arity_reject(&c, out, sizeof(out)));
    c = mk("CLIENT", "SETINFO", "lib-name", "x", NULL); /* Redis 7.2's: left to the relay */
    assert_false(redis_arity_reject(&c, out, sizeof(out)));
    c = mk("ECHO", "x", NULL);
    assert_false(redis_arity_reject(&c, out, sizeof(out)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preauth_order),
        cmocka_unit_test(test_unknown_command_text),
        cmocka_unit_test(test_arity_after_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
