/*
 * Unit tests for config.c: the key table and its defaults, ini loading through inih with
 * "NAME:LINE: message" errors (unknown and duplicate keys, bad values, keys outside sections,
 * over-long lines), --set arguments, the size and duration parsers, cross-key validation and
 * key lookup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static int setup_cfg(void **state)
{
    struct config *cfg = malloc(sizeof(*cfg));
    if (!cfg)
        return -1;
    config_init(cfg);
    *state = cfg;
    return 0;
}

static int teardown_cfg(void **state)
{
    struct config *cfg = *state;
    config_deinit(cfg);
    free(cfg);
    return 0;
}

/* Loads text as "t.ini" and expects failure with exactly the message want. */
static void assert_load_error(const char *text, const char *want)
{
    struct config cfg;
    config_init(&cfg);
    char err[CONFIG_ERR_LEN] = "";
    assert_int_equal(config_load_string(&cfg, text, "t.ini", err, sizeof(err)), -1);
    assert_string_equal(err, want);
    config_deinit(&cfg);
}

static void assert_load_ok(struct config *cfg, const char *text)
{
    char err[CONFIG_ERR_LEN] = "";
    int rc = config_load_string(cfg, text, "t.ini", err, sizeof(err));
    if (rc != 0)
        fail_msg("load failed: %s", err);
}

/* ---- defaults and the table ---- */

static void test_defaults(void **state)
{
    struct config *cfg = *state;
    assert_string_equal(cfg->bind, "127.0.0.1");
    assert_int_equal(cfg->port, 6380);
    assert_string_equal(cfg->dir, ".");
    assert_string_equal(cfg->requirepass, "");
    assert_string_equal(cfg->log_level, "info");
    assert_string_equal(cfg->upstream_host, "");
    assert_int_equal(cfg->upstream_port, 6379);
    assert_int_equal(cfg->connect_timeout_ms, 5000);
    assert_int_equal(cfg->repl_timeout_ms, 60000);
    assert_int_equal(cfg->reconnect_min_ms, 100);
    assert_int_equal(cfg->reconnect_max_ms, 5000);
    assert_int_equal(cfg->backlog_size_bytes, INT64_C(64) << 20);
    assert_int_equal(cfg->max_replicas, 0);
    assert_int_equal(cfg->max_clients, 10000);
    assert_int_equal(cfg->output_limit_bytes, INT64_C(256) << 20);
    assert_int_equal(cfg->replica_timeout_ms, 60000);
    assert_int_equal(cfg->snapshot_keepalive_ms, 1000);
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_validate(cfg, err, sizeof(err)), 0);
}

static void test_defaults_match_table(void **state)
{
    struct config *cfg = *state;
    size_t n = 0;
    for (const struct config_key *k = config_keys; k->section; k++, n++) {
        char got[256], want[256];
        config_format(cfg, k, got, sizeof(got));
        int64_t v;
        switch (k->type) {
        case CONFIG_BYTES:
            assert_int_equal(config_parse_bytes(k->def, &v), 0);
            snprintf(want, sizeof(want), "%lld", (long long)v);
            break;
        case CONFIG_TIME:
            assert_int_equal(config_parse_time_ms(k->def, &v), 0);
            snprintf(want, sizeof(want), "%lld", (long long)v);
            break;
        default:
            snprintf(want, sizeof(want), "%s", k->def);
            break;
        }
        if (strcmp(got, want) != 0)
            fail_msg("%s.%s: default formats as \"%s\", table says \"%s\"", k->section, k->name,
                     got, want);
        /* Every key is documented, findable by its dotted name, and unique. */
        assert_non_null(k->help);
        assert_true(k->help[0] != '\0');
        char dotted[128];
        snprintf(dotted, sizeof(dotted), "%s.%s", k->section, k->name);
        assert_ptr_equal(config_find(dotted), k);
        if (k->type == CONFIG_ENUM)
            assert_non_null(k->choices);
        if (k->type != CONFIG_STRING && k->type != CONFIG_ENUM)
            assert_true(k->min <= k->max);
    }
    assert_int_equal(n, 73);
    /* Secrets: never shown by CONFIG GET. */
    assert_true(config_find("relay.requirepass")->secret);
    assert_true(config_find("upstream.password")->secret);
    assert_false(config_find("upstream.user")->secret);

    /* A truncated format stays NUL-terminated. */
    char small[4];
    config_format(cfg, config_find("relay.bind"), small, sizeof(small));
    assert_string_equal(small, "127");
}

/* ---- loading ---- */

static const char valid_ini[] = "; cascade test config\n"
                                "# hash comments too\n"
                                "\n"
                                "[relay]\n"
                                "bind = 0.0.0.0\n"
                                "port = 7000 ; inline comment\n"
                                "dir = /var/lib/cascade\n"
                                "requirepass = s3cret\n"
                                "log-level = WARNING\n"
                                "\n"
                                "[upstream]\n"
                                "host = 10.0.0.1\n"
                                "port=6390\n"
                                "user = repl\n"
                                "password = p w\n"
                                "connect-timeout = 2s\n"
                                "repl-timeout = 30000\n"
                                "reconnect-min = 50ms\n"
                                "reconnect-max = 1m\n"
                                "\n"
                                "[backlog]\n"
                                "size = 128mb\n"
                                "\n"
                                "[replicas]\n"
                                "max-replicas = 10\n"
                                "max-clients = 500\n"
                                "output-limit = 1GB\n"
                                "timeout = 2m\n"
                                "snapshot-keepalive = 500ms\n";

static void test_load_valid(void **state)
{
    struct config *cfg = *state;
    assert_load_ok(cfg, valid_ini);
    assert_string_equal(cfg->bind, "0.0.0.0");
    assert_int_equal(cfg->port, 7000);
    assert_string_equal(cfg->dir, "/var/lib/cascade");
    assert_string_equal(cfg->requirepass, "s3cret");
    assert_string_equal(cfg->log_level, "warning"); /* enums are stored lower-case */
    assert_string_equal(cfg->upstream_host, "10.0.0.1");
    assert_int_equal(cfg->upstream_port, 6390);
    assert_string_equal(cfg->upstream_user, "repl");
    assert_string_equal(cfg->upstream_password, "p w");
    assert_int_equal(cfg->connect_timeout_ms, 2000);
    assert_int_equal(cfg->repl_timeout_ms, 30000);
    assert_int_equal(cfg->reconnect_min_ms, 50);
    assert_int_equal(cfg->reconnect_max_ms, 60000);
    assert_int_equal(cfg->backlog_size_bytes, INT64_C(128) << 20);
    assert_int_equal(cfg->max_replicas, 10);
    assert_int_equal(cfg->max_clients, 500);
    assert_int_equal(cfg->output_limit_bytes, INT64_C(1) << 30);
    assert_int_equal(cfg->replica_timeout_ms, 120000);
    assert_int_equal(cfg->snapshot_keepalive_ms, 500);
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_validate(cfg, err, sizeof(err)), 0);
}

static void test_load_partial_keeps_other_values(void **state)
{
    struct config *cfg = *state;
    /* CRLF line ends, case-insensitive section and key names, an empty string value. */
    assert_load_ok(cfg, "[RELAY]\r\nPort = 7001\r\nrequirepass =\r\n");
    assert_int_equal(cfg->port, 7001);
    assert_string_equal(cfg->requirepass, "");
    assert_string_equal(cfg->bind, "127.0.0.1");
    assert_int_equal(cfg->upstream_port, 6379);
    /* A second document applies on top of the first; the same key in another load is fine. */
    assert_load_ok(cfg, "[relay]\nport = 7002\n");
    assert_int_equal(cfg->port, 7002);
    /* Empty documents. */
    assert_load_ok(cfg, "");
    assert_load_ok(cfg, "\n\n; nothing\n");
    assert_int_equal(cfg->port, 7002);
}

static void test_unknown_key(void **state)
{
    (void)state;
    assert_load_error("[relay]\nport = 7000\nbogus = 1\n",
                      "t.ini:3: unknown key 'bogus' in section [relay]");
    assert_load_error("\n\n\n\n[nosuch]\nport = 1\n",
                      "t.ini:6: unknown key 'port' in section [nosuch]");
    /* A key valid in another section is unknown here. */
    assert_load_error("[backlog]\n; c\nhost = x\n",
                      "t.ini:3: unknown key 'host' in section [backlog]");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    assert_load_error("[relay]\nport = 1\n\n[upstream]\nhost = x\n[relay]\nport = 2\n",
                      "t.ini:7: duplicate key 'port' in section [relay]");
    assert_load_error("[relay]\nbind = a\nBIND = b\n",
                      "t.ini:3: duplicate key 'BIND' in section [relay]");
    /* Same name in two sections is not a duplicate. */
    struct config cfg;
    config_init(&cfg);
    assert_load_ok(&cfg, "[relay]\nport = 1\n[upstream]\nport = 2\n");
    assert_int_equal(cfg.port, 1);
    assert_int_equal(cfg.upstream_port, 2);
    config_deinit(&cfg);
}

static void test_bad_values(void **state)
{
    (void)state;
    assert_load_error("[relay]\nport = abc\n", "t.ini:2: relay.port: 'abc' is not an integer");
    assert_load_error("[relay]\nport = 12x\n", "t.ini:2: relay.port: '12x' is not an integer");
    assert_load_error("[relay]\nport =\n", "t.ini:2: relay.port: '' is not an integer");
    assert_load_error("[relay]\nport = 99999999999999999999\n",
                      "t.ini:2: relay.port: '99999999999999999999' is not an integer");
    assert_load_error("[relay]\n\nport = 70000\n",
                      "t.ini:3: relay.port: 70000 is out of range [1, 65535]");
    assert_load_error("[relay]\nport = 0\n", "t.ini:2: relay.port: 0 is out of range [1, 65535]");
    assert_load_error("[relay]\nport = -1\n", "t.ini:2: relay.port: -1 is out of range [1, 65535]");
    assert_load_error("[relay]\nlog-level = verbose\n",
                      "t.ini:2: relay.log-level: 'verbose' is not one of "
                      "debug|info|notice|warning");
    assert_load_error("[relay]\nlog-level = inf\n",
                      "t.ini:2: relay.log-level: 'inf' is not one of debug|info|notice|warning");
    assert_load_error("[backlog]\nsize = 64xb\n",
                      "t.ini:2: backlog.size: '64xb' is not a size (e.g. 512kb, 64mb, 1gb)");
    assert_load_error("[backlog]\nsize = -64mb\n",
                      "t.ini:2: backlog.size: '-64mb' is not a size (e.g. 512kb, 64mb, 1gb)");
    assert_load_error("[backlog]\nsize = 1kb\n",
                      "t.ini:2: backlog.size: 1kb is out of range [65536, 1099511627776]");
    assert_load_error("[upstream]\nrepl-timeout = 5x\n",
                      "t.ini:2: upstream.repl-timeout: '5x' is not a duration "
                      "(e.g. 500ms, 10s, 5m)");
    assert_load_error("[upstream]\nrepl-timeout = 999ms\n",
                      "t.ini:2: upstream.repl-timeout: 999ms is out of range [1000, 86400000]");
    assert_load_error("[replicas]\nsnapshot-keepalive = 2m\n",
                      "t.ini:2: replicas.snapshot-keepalive: 2m is out of range [100, 60000]");
}

static void test_first_error_wins(void **state)
{
    (void)state;
    assert_load_error("[relay]\nport = x\nbogus = 1\n",
                      "t.ini:2: relay.port: 'x' is not an integer");
    assert_load_error("[relay]\nbogus = 1\nport = x\n",
                      "t.ini:2: unknown key 'bogus' in section [relay]");
    /* inih reports syntax errors itself; the earlier line still wins either way. */
    assert_load_error("[relay]\nbogus = 1\nnot ini\n",
                      "t.ini:2: unknown key 'bogus' in section [relay]");
    assert_load_error("[relay]\nnot ini\nbogus = 1\n",
                      "t.ini:2: syntax error (expected [section] or key = value)");
}

static void test_syntax(void **state)
{
    (void)state;
    assert_load_error("port = 1\n[relay]\n", "t.ini:1: key 'port' outside of any [section]");
    assert_load_error("; c\n\nbind = x\n", "t.ini:3: key 'bind' outside of any [section]");
    assert_load_error("[relay]\nthis is not ini\n",
                      "t.ini:2: syntax error (expected [section] or key = value)");
    assert_load_error("[relay\nport = 1\n",
                      "t.ini:1: syntax error (expected [section] or key = value)");
    /* Continuation lines are not glued onto the previous value. */
    assert_load_error("[relay]\nbind = a\n  b\n",
                      "t.ini:3: syntax error (expected [section] or key = value)");
}

/* A line of `len` bytes (no newline): "; xxxx...". */
static char *long_comment(size_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    memset(s, 'x', len);
    s[0] = ';';
    s[len] = '\0';
    return s;
}

static void test_long_lines(void **state)
{
    struct config *cfg = *state;
    char text[1024];

    /* 197 bytes, inih's documented maximum (a 200-byte buffer less CR, LF and NUL). */
    char *line = long_comment(197);
    snprintf(text, sizeof(text), "[relay]\n%s\nport = 7003\n", line);
    assert_load_ok(cfg, text);
    assert_int_equal(cfg->port, 7003);
    snprintf(text, sizeof(text), "[relay]\r\n%s\r\nport = 7004\r\n", line);
    assert_load_ok(cfg, text);
    assert_int_equal(cfg->port, 7004);
    free(line);

    /* A 200-byte and a 600-byte line are errors, reported on their own line. */
    line = long_comment(200);
    snprintf(text, sizeof(text), "[relay]\n%s\nport = 7005\n", line);
    assert_load_error(text, "t.ini:2: line longer than 197 bytes");
    free(line);
    line = long_comment(600);
    snprintf(text, sizeof(text), "[relay]\nport = 7005\n\n%s\n", line);
    assert_load_error(text, "t.ini:4: line longer than 197 bytes");
    /* Lines after a long one are still counted right. */
    snprintf(text, sizeof(text), "[relay]\nport = x\n%s\n", line);
    assert_load_error(text, "t.ini:2: relay.port: 'x' is not an integer");
    free(line);

    /* A long value is rejected, not truncated into something valid. */
    char value[260];
    memset(value, '1', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    memcpy(value, "6379", 4);
    snprintf(text, sizeof(text), "[upstream]\nhost = %s\n", value);
    assert_load_error(text, "t.ini:2: line longer than 197 bytes");
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/cascade-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char text[] = "[relay]\nport = 6390\n[upstream]\nhost = h\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
    struct config cfg;
    config_init(&cfg);
    char err[CONFIG_ERR_LEN] = "";
    assert_int_equal(config_load_file(&cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg.port, 6390);
    assert_string_equal(cfg.upstream_host, "h");

    /* A NUL byte is an error on its line. */
    static const char nul[] = "[relay]\n\nport = 7\0\n";
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(pwrite(fd, nul, sizeof(nul) - 1, 0), sizeof(nul) - 1);
    char want[256];
    snprintf(want, sizeof(want), "%s:3: NUL byte in config file", path);
    assert_int_equal(config_load_file(&cfg, path, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    close(fd);
    unlink(path);

    assert_int_equal(config_load_file(&cfg, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:0: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
    config_deinit(&cfg);
}

/* ---- --set ---- */

static void test_set_arg(void **state)
{
    struct config *cfg = *state;
    char err[CONFIG_ERR_LEN] = "";
    assert_int_equal(config_set_arg(cfg, "relay.port=7000", err, sizeof(err)), 0);
    assert_int_equal(cfg->port, 7000);
    assert_int_equal(config_set_arg(cfg, "upstream.host=redis.example.com", err, sizeof(err)), 0);
    assert_string_equal(cfg->upstream_host, "redis.example.com");
    assert_int_equal(config_set_arg(cfg, "relay.requirepass=a=b", err, sizeof(err)), 0);
    assert_string_equal(cfg->requirepass, "a=b");
    assert_int_equal(config_set_arg(cfg, "backlog.size=1gb", err, sizeof(err)), 0);
    assert_int_equal(cfg->backlog_size_bytes, INT64_C(1) << 30);

    struct {
        const char *arg, *err;
    } bad[] = {
        {"relay.port", "--set relay.port: expected SECTION.KEY=VALUE"},
        {"port=7000", "--set port=7000: expected SECTION.KEY=VALUE"},
        {"port=1.2", "--set port=1.2: expected SECTION.KEY=VALUE"},
        {".port=1", "--set .port=1: expected SECTION.KEY=VALUE"},
        {"relay.=1", "--set relay.=1: expected SECTION.KEY=VALUE"},
        {"", "--set : expected SECTION.KEY=VALUE"},
        {"relay.port=abc", "--set relay.port=abc: relay.port: 'abc' is not an integer"},
        {"relay.port=", "--set relay.port=: relay.port: '' is not an integer"},
        {"relay.port=65536",
         "--set relay.port=65536: relay.port: 65536 is out of range [1, 65535]"},
        {"relay.nope=1", "--set relay.nope=1: unknown key 'nope' in section [relay]"},
        {"relay.log-level=loud",
         "--set relay.log-level=loud: relay.log-level: 'loud' is not one of "
         "debug|info|notice|warning"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (config_set_arg(cfg, bad[i].arg, err, sizeof(err)) != -1)
            fail_msg("accepted: \"%s\"", bad[i].arg);
        assert_string_equal(err, bad[i].err);
    }
    /* Failures leave the value alone. */
    assert_int_equal(cfg->port, 7000);
    assert_string_equal(cfg->log_level, "info");

    /* A section name too long for the buffer is an error, not an overflow. */
    char longarg[200];
    memset(longarg, 's', sizeof(longarg));
    memcpy(longarg + 100, ".port=1", 8);
    assert_int_equal(config_set_arg(cfg, longarg, err, sizeof(err)), -1);
}

/* ---- parse helpers ---- */

static void test_parse_bytes(void **state)
{
    (void)state;
    struct {
        const char *s;
        int64_t v;
    } ok[] = {
        {"512", 512},
        {"0", 0},
        {"512b", 512},
        {"1k", 1024},
        {"1kb", 1024},
        {"2KB", 2048},
        {"64mb", INT64_C(64) << 20},
        {"64m", INT64_C(64) << 20},
        {"1gb", INT64_C(1) << 30},
        {"3g", INT64_C(3) << 30},
        {"1tb", INT64_C(1) << 40},
        {" 5 mb ", INT64_C(5) << 20},
        {"9223372036854775807", INT64_MAX},
        {"8388607tb", INT64_C(8388607) << 40},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -42;
        if (config_parse_bytes(ok[i].s, &v) != 0)
            fail_msg("rejected: \"%s\"", ok[i].s);
        assert_int_equal(v, ok[i].v);
    }
    static const char *const bad[] = {
        "10x",       "-1",           "",     "mb",    "1.5mb",
        "1 0",       "+5",           "5mbb", "5 m b", "9223372036854775808",
        "8388608tb", "8589934592gb",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = -42;
        if (config_parse_bytes(bad[i], &v) != -1)
            fail_msg("accepted: \"%s\"", bad[i]);
        assert_int_equal(v, -42);
    }
}

static void test_parse_time(void **state)
{
    (void)state;
    struct {
        const char *s;
        int64_t v;
    } ok[] = {
        {"100ms", 100},   {"250", 250},   {"5s", 5000}, {"2m", 120000}, {"1h", 3600000},
        {"1d", 86400000}, {"10S", 10000}, {"0", 0},     {"7 ms", 7},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -42;
        if (config_parse_time_ms(ok[i].s, &v) != 0)
            fail_msg("rejected: \"%s\"", ok[i].s);
        assert_int_equal(v, ok[i].v);
    }
    static const char *const bad[] = {"5x", "-5s", "1.5s", "", "s", "5sec", "5mb", "5 5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = -42;
        if (config_parse_time_ms(bad[i], &v) != -1)
            fail_msg("accepted: \"%s\"", bad[i]);
        assert_int_equal(v, -42);
    }
}

/* ---- validate and find ---- */

static void test_validate(void **state)
{
    struct config *cfg = *state;
    char err[CONFIG_ERR_LEN] = "";
    assert_load_ok(cfg, "[upstream]\nreconnect-min = 10s\nreconnect-max = 5s\n");
    assert_int_equal(config_validate(cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "upstream.reconnect-min (10000ms) exceeds upstream.reconnect-max "
                             "(5000ms)");
    assert_int_equal(config_set_arg(cfg, "upstream.reconnect-max=10s", err, sizeof(err)), 0);
    assert_int_equal(config_validate(cfg, err, sizeof(err)), 0); /* equal is fine */

    assert_int_equal(config_set_arg(cfg, "relay.dir=", err, sizeof(err)), 0);
    assert_int_equal(config_validate(cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "relay.dir must not be empty");
    assert_int_equal(config_set_arg(cfg, "relay.dir=/tmp", err, sizeof(err)), 0);
    assert_int_equal(config_set_arg(cfg, "relay.bind=", err, sizeof(err)), 0);
    assert_int_equal(config_validate(cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "relay.bind must not be empty");
}

static void test_find(void **state)
{
    (void)state;
    const struct config_key *k = config_find("relay.port");
    assert_non_null(k);
    assert_string_equal(k->section, "relay");
    assert_string_equal(k->name, "port");
    assert_int_equal(k->type, CONFIG_INT);
    assert_int_equal(k->offset, offsetof(struct config, port));
    assert_int_equal(k->min, 1);
    assert_int_equal(k->max, 65535);

    k = config_find("upstream.port");
    assert_non_null(k);
    assert_int_equal(k->offset, offsetof(struct config, upstream_port));
    assert_ptr_equal(config_find("RELAY.Port"), config_find("relay.port"));

    /* Bare names: found when unique, NULL when ambiguous. */
    k = config_find("requirepass");
    assert_non_null(k);
    assert_string_equal(k->section, "relay");
    assert_null(config_find("bind")); /* relay.bind and metrics.bind */
    k = config_find("size");
    assert_non_null(k);
    assert_string_equal(k->section, "backlog");
    k = config_find("timeout");
    assert_non_null(k);
    assert_string_equal(k->section, "replicas");
    assert_null(config_find("port"));

    assert_null(config_find("relay.nope"));
    assert_null(config_find("nope"));
    assert_null(config_find("nope.port"));
    assert_null(config_find("relay."));
    assert_null(config_find(".port"));
    assert_null(config_find(""));
    assert_null(config_find("relay.port.x"));
    char longname[300];
    memset(longname, 'r', sizeof(longname));
    memcpy(longname + 200, ".port", 6);
    assert_null(config_find(longname));
}

static void test_deinit_twice(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    config_deinit(&cfg);
    assert_null(cfg.bind);
    config_deinit(&cfg); /* strings are NULL now: a no-op */
}

static void test_users_section(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    char err[CONFIG_ERR_LEN] = "";
    assert_false(config_has_auth(&cfg));
    assert_int_equal(config_load_string(&cfg,
                                        "[relay]\nrequirepass = top\n"
                                        "[users]\nalice = wonder land\nbob = b0b\n",
                                        "u.ini", err, sizeof(err)),
                     0);
    assert_true(config_has_auth(&cfg));
    assert_int_equal(cfg.nusers, 2);
    assert_string_equal(config_user_password(&cfg, "alice", 5), "wonder land");
    assert_string_equal(config_user_password(&cfg, "bob", 3), "b0b");
    assert_string_equal(config_user_password(&cfg, "default", 7), "top");
    assert_null(config_user_password(&cfg, "carol", 5));
    assert_null(config_user_password(&cfg, "ali", 3));

    struct config other;
    config_init(&other);
    assert_false(config_users_equal(&cfg, &other));
    config_copy_users(&other, &cfg);
    assert_true(config_users_equal(&cfg, &other));
    config_deinit(&other);
    config_deinit(&cfg);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[users]\nalice = a\nalice = b\n", "u.ini:3: duplicate user 'alice' in section [users]"},
        {"[users]\ndefault = x\n", "u.ini:2: user 'default' is set by relay.requirepass, "
                                   "not in [users]"},
        {"[users]\nalice =\n", "u.ini:2: a user needs a password"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        config_init(&cfg);
        assert_int_equal(config_load_string(&cfg, bad[i].text, "u.ini", err, sizeof(err)), -1);
        assert_string_equal(err, bad[i].want);
        config_deinit(&cfg);
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_cfg, teardown_cfg)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_users_section),
        T(test_defaults),
        T(test_defaults_match_table),
        T(test_load_valid),
        T(test_load_partial_keeps_other_values),
        T(test_unknown_key),
        T(test_duplicate_key),
        T(test_bad_values),
        T(test_first_error_wins),
        T(test_syntax),
        T(test_long_lines),
        T(test_load_file),
        T(test_set_arg),
        T(test_parse_bytes),
        T(test_parse_time),
        T(test_validate),
        T(test_find),
        T(test_deinit_twice),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
