/*
 * The key table is the source of truth: every key must be documented, with its default, in
 * config/cascade.ini (under its section) and in README.md. Paths come from meson.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static const char *ini_path;
static const char *readme_path;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* The body of [section] in an ini text: from its header to the next header. */
static char *section_body(const char *text, const char *section)
{
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "\n[%s]", section);
    const char *p = strstr(text, hdr);
    if (!p)
        return NULL;
    p += strlen(hdr);
    const char *end = strstr(p, "\n[");
    size_t n = end ? (size_t)(end - p) : strlen(p);
    char *out = malloc(n + 1);
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static void test_example_ini_loads(void **state)
{
    (void)state;
    struct config cfg;
    config_init(&cfg);
    char err[CONFIG_ERR_LEN] = "";
    int rc = config_load_file(&cfg, ini_path, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    config_deinit(&cfg);
}

static void test_every_key_in_ini_with_default(void **state)
{
    (void)state;
    char *text = slurp(ini_path);
    assert_non_null(text);
    for (const struct config_key *k = config_keys; k->section; k++) {
        char *body = section_body(text, k->section);
        if (!body)
            fail_msg("section [%s] missing from %s", k->section, ini_path);
        char want[256];
        if (k->def[0])
            snprintf(want, sizeof(want), "\n%s = %s\n", k->name, k->def);
        else
            snprintf(want, sizeof(want), "\n%s =\n", k->name);
        if (!strstr(body, want))
            fail_msg("%s: [%s] lacks the line '%s = %s'", ini_path, k->section, k->name, k->def);
        free(body);
    }
    free(text);
}

static void test_every_key_in_readme(void **state)
{
    (void)state;
    char *text = slurp(readme_path);
    assert_non_null(text);
    for (const struct config_key *k = config_keys; k->section; k++) {
        char want[128];
        snprintf(want, sizeof(want), "`%s.%s`", k->section, k->name);
        if (!strstr(text, want))
            fail_msg("%s does not document %s", readme_path, want);
    }
    free(text);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s config/cascade.ini README.md\n", argv[0]);
        return 2;
    }
    ini_path = argv[1];
    readme_path = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_ini_loads),
        cmocka_unit_test(test_every_key_in_ini_with_default),
        cmocka_unit_test(test_every_key_in_readme),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
