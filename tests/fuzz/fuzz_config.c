/*
 * Fuzz target: the config loader. The input (cut at its first NUL, as a C string) is an ini
 * document given to config_load_string on top of the defaults; on success config_validate
 * runs, every key must hold a value its table entry allows, and copying every key onto a
 * default config (as a reload does) must give equal values. [users] entries must be valid,
 * unique and found by config_user_password. config_load_file must agree on the same bytes
 * (given through a memfd). The same text also goes to config_set_arg (the --set form) and
 * config_find. config_deinit always runs: under ASan, LeakSanitizer reports any string the
 * loader failed to free.
 */
#include "fuzz.h"

#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static bool enum_has(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    for (const char *p = choices;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vlen && memcmp(p, value, n) == 0)
            return true;
        if (!bar)
            return false;
        p = bar + 1;
    }
}

/* Every value must be one its key allows, whatever the loader accepted or rejected. */
static void check_values(const struct config *cfg)
{
    for (const struct config_key *k = config_keys; k->section; k++) {
        const char *base = (const char *)cfg + k->offset;
        if (k->type == CONFIG_STRING || k->type == CONFIG_ENUM) {
            const char *s = *(char *const *)(const void *)base;
            FUZZ_CHECK(s != NULL);
            if (k->type == CONFIG_ENUM)
                FUZZ_CHECK(enum_has(k->choices, s));
        } else {
            int64_t v;
            memcpy(&v, base, sizeof(v));
            FUZZ_CHECK(v >= k->min && v <= k->max);
        }
        char out[64];
        config_format(cfg, k, out, sizeof(out));
        FUZZ_CHECK(strlen(out) < sizeof(out));
    }
}

/* [users]: printable names without spaces, never "default", unique; non-empty passwords. */
static void check_users(const struct config *cfg)
{
    FUZZ_CHECK(cfg->nusers == 0 || (cfg->user_names && cfg->user_passwords));
    for (size_t i = 0; i < cfg->nusers; i++) {
        const char *name = cfg->user_names[i], *pw = cfg->user_passwords[i];
        FUZZ_CHECK(name && name[0] != '\0' && strcmp(name, "default") != 0);
        FUZZ_CHECK(pw && pw[0] != '\0');
        for (const char *p = name; *p; p++)
            FUZZ_CHECK(*p > ' ' && *p <= '~');
        /* Lookup finds this very entry: no earlier user has the same name. */
        FUZZ_CHECK(config_user_password(cfg, name, strlen(name)) == pw);
    }
    const char *def = config_user_password(cfg, "default", 7);
    FUZZ_CHECK(def == (cfg->requirepass[0] ? cfg->requirepass : NULL));
    FUZZ_CHECK(config_has_auth(cfg) == (cfg->requirepass[0] != '\0' || cfg->nusers > 0));
}

/* What a reload does with a loaded config: copy its keys onto the defaults, one by one. */
static void check_copy(const struct config *loaded)
{
    struct config copy;
    config_init(&copy);
    for (const struct config_key *k = config_keys; k->section; k++) {
        config_copy_key(&copy, loaded, k);
        FUZZ_CHECK(config_key_equal(&copy, loaded, k) && config_key_equal(loaded, &copy, k));
        char a[CONFIG_ERR_LEN], b[CONFIG_ERR_LEN];
        config_format(loaded, k, a, sizeof(a));
        config_format(&copy, k, b, sizeof(b));
        FUZZ_CHECK(strcmp(a, b) == 0);
    }
    /* Twice: the second copy replaces users already there. */
    for (int i = 0; i < 2; i++) {
        config_copy_users(&copy, loaded);
        FUZZ_CHECK(config_users_equal(&copy, loaded) && config_users_equal(loaded, &copy));
    }
    check_users(&copy);
    config_deinit(&copy);
}

static void check_err(const char *err, size_t errlen)
{
    FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', errlen) != NULL);
}

/*
 * The same bytes through config_load_file (its own reader: fgetc, NUL bytes), from a memfd
 * kept open across runs. Without a NUL it must agree with config_load_string, error text and
 * line included; a NUL anywhere is an error.
 */
static void check_file(const uint8_t *data, size_t size, int rc_string, const char *err_string)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz.ini", 0);
        FUZZ_CHECK(fd >= 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    FUZZ_CHECK(ftruncate(fd, 0) == 0);
    FUZZ_CHECK(size == 0 || pwrite(fd, data, size, 0) == (ssize_t)size);

    struct config cfg;
    char err[CONFIG_ERR_LEN] = "";
    config_init(&cfg);
    int rc = config_load_file(&cfg, path, err, sizeof(err));
    check_users(&cfg);
    check_values(&cfg);
    config_deinit(&cfg);
    if (memchr(data, '\0', size)) {
        FUZZ_CHECK(rc == -1);
        return;
    }
    FUZZ_CHECK(rc == rc_string);
    if (rc != 0) {
        size_t n = strlen(path), m = strlen("fuzz.ini");
        FUZZ_CHECK(strncmp(err, path, n) == 0 && strcmp(err + n, err_string + m) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    struct config cfg;
    char err[CONFIG_ERR_LEN] = "";
    config_init(&cfg);
    int rc = config_load_string(&cfg, text, "fuzz.ini", err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1);
    check_users(&cfg);
    /* A lookup by a name from the wire: the text itself, up to its first space. */
    size_t namelen = strcspn(text, " ");
    const char *pw = config_user_password(&cfg, text, namelen);
    FUZZ_CHECK(!pw || pw == cfg.requirepass || namelen > 0);
    if (rc == 0) {
        check_values(&cfg);
        check_copy(&cfg);
        if (config_validate(&cfg, err, sizeof(err)) != 0)
            check_err(err, sizeof(err));
        else
            FUZZ_CHECK(cfg.reconnect_min_ms <= cfg.reconnect_max_ms && cfg.dir[0] && cfg.bind[0]);
    } else {
        check_err(err, sizeof(err));
        FUZZ_CHECK(strncmp(err, "fuzz.ini:", 9) == 0);
        check_values(&cfg); /* a failed load may leave some keys set, never a bad value */
    }
    config_deinit(&cfg);
    check_file(data, size, rc, err);

    /* The --set form and key lookup over the same text. */
    config_init(&cfg);
    err[0] = '\0';
    if (config_set_arg(&cfg, text, err, sizeof(err)) != 0)
        check_err(err, sizeof(err));
    check_values(&cfg);
    config_deinit(&cfg);
    const struct config_key *k = config_find(text);
    if (k) {
        const char *dot = strchr(text, '.');
        FUZZ_CHECK(strcasecmp(dot ? dot + 1 : text, k->name) == 0);
    }
    free(text);
    return 0;
}
