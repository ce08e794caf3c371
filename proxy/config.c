/*
 * config: the key table and the ini parser around it (inih).
 * inih r55 as Debian ships it gives the handler no line number and caps lines at 200 bytes,
 * so the file is fed through a reader that counts lines and rejects over-long ones.
 * Owns nothing beyond the strings in struct config. No logging, no globals of its own.
 */
#include "config.h"

#include "compat.h"
#include "errmsg.h"
#include "resp.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY(sec, nm, ty, field, df, mn, mx, ch, sec_, rel, hl)                                     \
    {                                                                                              \
        sec, nm, ty, offsetof(struct config, field), df, mn, mx, ch, sec_, rel, hl                 \
    }
#define GB     (INT64_C(1) << 30)
#define TB     (INT64_C(1) << 40)
#define DAY_MS (INT64_C(86400000))

const struct config_key config_keys[] = {
    KEY("relay", "bind", CONFIG_STRING, bind, "127.0.0.1", 0, 0, NULL, false, false,
        "address the downstream listener binds"),
    KEY("relay", "port", CONFIG_INT, port, "6380", 1, 65535, NULL, false, false,
        "downstream listener port (replicas point REPLICAOF here)"),
    KEY("relay", "dir", CONFIG_STRING, dir, ".", 0, 0, NULL, false, false,
        "working directory for the cached RDB snapshot and temp files"),
    KEY("relay", "requirepass", CONFIG_STRING, requirepass, "", 0, 0, NULL, true, true,
        "password downstream clients and replicas must AUTH with (empty: none)"),
    KEY("relay", "log-level", CONFIG_ENUM, log_level, "info", 0, 0, "debug|info|notice|warning",
        false, true, "least severe level written to stderr"),
    KEY("relay", "log-file", CONFIG_STRING, log_file, "", 0, 0, NULL, false, true,
        "log to this file instead of stderr (reopened on SIGHUP, for logrotate)"),
    KEY("relay", "syslog", CONFIG_ENUM, syslog, "no", 0, 0, "yes|no", false, true,
        "log to syslog (facility daemon) instead"),
    KEY("relay", "syslog-ident", CONFIG_STRING, syslog_ident, "cascade", 0, 0, NULL, false, true,
        "program name in syslog lines"),
    KEY("relay", "protected-mode", CONFIG_ENUM, protected_mode, "yes", 0, 0, "yes|no", false, true,
        "refuse non-loopback clients when bound to a public address with no password"),
    KEY("relay", "handshake-timeout", CONFIG_TIME, handshake_timeout_ms, "10s", 100, DAY_MS, NULL,
        false, true, "time to authenticate, and to finish sending any one command"),
    KEY("relay", "client-timeout", CONFIG_TIME, client_timeout_ms, "0", 0, 365 * DAY_MS, NULL,
        false, true, "idle plain clients are closed after this (0: never; replicas excluded)"),
    KEY("relay", "resolv-conf", CONFIG_STRING, resolv_conf, "/etc/resolv.conf", 0, 0, NULL, false,
        false, "name servers for upstream and sentinel host names (looked up without blocking)"),
    KEY("relay", "max-args", CONFIG_INT, max_args, "64", 1, RESP_MAX_ARGC, NULL, false, true,
        "arguments in one command"),
    KEY("relay", "max-bulk", CONFIG_BYTES, max_bulk_bytes, "512kb", 16, 1 << 30, NULL, false, true,
        "bytes in one command argument"),
    KEY("relay", "max-inline", CONFIG_BYTES, max_inline_bytes, "64kb", 16, 1 << 30, NULL, false,
        true, "bytes in one inline command line"),
    KEY("relay", "input-memory", CONFIG_BYTES, input_memory_bytes, "64mb", 1 << 20, TB, NULL, false,
        true,
        "cap on the input buffers of all plain clients together; past it unauthenticated "
        "and idle clients are closed first, new ones refused"),
    KEY("relay", "auth-failure-delay", CONFIG_TIME, auth_failure_delay_ms, "100ms", 0, 10000, NULL,
        false, true, "reply delay to each failed AUTH after the first 3 on a connection"),
    KEY("relay", "client-output-limit", CONFIG_BYTES, client_output_limit_bytes, "0", 0, TB, NULL,
        false, true, "hard output limit of a plain client (0 = none), as Redis' normal class"),
    KEY("relay", "client-output-limit-soft", CONFIG_BYTES, client_output_soft_bytes, "0", 0, TB,
        NULL, false, true,
        "soft output limit of a plain client (0 = none), for client-output-limit-soft-seconds"),
    KEY("relay", "client-output-limit-soft-seconds", CONFIG_TIME, client_output_soft_ms, "0", 0,
        DAY_MS, NULL, false, true, "how long a plain client may stay past its soft output limit"),
    KEY("relay", "pubsub-output-limit", CONFIG_BYTES, pubsub_output_limit_bytes, "32mb", 0, TB,
        NULL, false, true, "hard output limit of a subscribed client (0 = none)"),
    KEY("relay", "pubsub-output-limit-soft", CONFIG_BYTES, pubsub_output_soft_bytes, "8mb", 0, TB,
        NULL, false, true,
        "soft output limit of a subscribed client (0 = none), for "
        "pubsub-output-limit-soft-seconds"),
    KEY("relay", "pubsub-output-limit-soft-seconds", CONFIG_TIME, pubsub_output_soft_ms, "60s", 0,
        DAY_MS, NULL, false, true,
        "how long a subscribed client may stay past its soft output limit"),
    KEY("upstream", "host", CONFIG_STRING, upstream_host, "", 0, 0, NULL, false, true,
        "master or relay to replicate from (empty: wait for REPLICAOF)"),
    KEY("upstream", "port", CONFIG_INT, upstream_port, "6379", 1, 65535, NULL, false, true,
        "port of the upstream"),
    KEY("upstream", "user", CONFIG_STRING, upstream_user, "", 0, 0, NULL, false, true,
        "ACL user for AUTH upstream (Redis' masteruser; empty: default user)"),
    KEY("upstream", "password", CONFIG_STRING, upstream_password, "", 0, 0, NULL, true, true,
        "password for AUTH upstream (Redis' masterauth; empty: no AUTH)"),
    KEY("upstream", "sentinels", CONFIG_STRING, sentinels, "", 0, 0, NULL, false, false,
        "host:port,... of sentinels: follow master-name's current master (empty: host/port)"),
    KEY("upstream", "master-name", CONFIG_STRING, master_name, "mymaster", 0, 0, NULL, false, false,
        "the master's name in Sentinel"),
    KEY("upstream", "sentinel-password", CONFIG_STRING, sentinel_password, "", 0, 0, NULL, true,
        false, "AUTH to the sentinels (empty: none)"),
    KEY("upstream", "announce-version", CONFIG_STRING, upstream_announce_version, "auto", 0, 0,
        NULL, false, true,
        "REPLCONF version sent upstream: auto (a Valkey upstream's own), none, or x.y.z"),
    KEY("upstream", "tls", CONFIG_ENUM, upstream_tls, "no", 0, 0, "yes|no", false, false,
        "TLS to the upstream (see [tls] for CA, client certificate and server name)"),
    KEY("upstream", "connect-timeout", CONFIG_TIME, connect_timeout_ms, "5s", 100, DAY_MS, NULL,
        false, true, "budget for connect and handshake"),
    KEY("upstream", "repl-timeout", CONFIG_TIME, repl_timeout_ms, "60s", 1000, DAY_MS, NULL, false,
        true, "silence on the upstream link before it is dropped and redialled"),
    KEY("upstream", "reconnect-min", CONFIG_TIME, reconnect_min_ms, "100ms", 10, DAY_MS, NULL,
        false, true, "first reconnect delay after a drop; doubles per failed attempt"),
    KEY("upstream", "reconnect-max", CONFIG_TIME, reconnect_max_ms, "5s", 10, DAY_MS, NULL, false,
        true, "cap of the reconnect delay"),
    KEY("upstream", "compression", CONFIG_ENUM, upstream_compression, "auto", 0, 0, "auto|no",
        false, true, "zstd on a link to another cascade relay (auto: when it agrees; no: never)"),
    KEY("upstream", "link-timeout", CONFIG_TIME, link_timeout_ms, "5s", 1000, DAY_MS, NULL, false,
        true, "silence (not even a heartbeat) on a link to another cascade relay before a redial"),
    KEY("upstream", "tcp-keepalive", CONFIG_TIME, tcp_keepalive_ms, "5s", 0, DAY_MS, NULL, false,
        true, "TCP keepalive idle time on the upstream link, probes every third of it (0: off)"),
    KEY("upstream", "tcp-user-timeout", CONFIG_TIME, tcp_user_timeout_ms, "15s", 0, DAY_MS, NULL,
        false, true, "unacknowledged data this long breaks the upstream link (0: kernel default)"),
    KEY("upstream", "sndbuf", CONFIG_BYTES, upstream_sndbuf, "0", 0, GB, NULL, false, true,
        "SO_SNDBUF of the upstream link (0: kernel autotuning)"),
    KEY("upstream", "rcvbuf", CONFIG_BYTES, upstream_rcvbuf, "0", 0, GB, NULL, false, true,
        "SO_RCVBUF of the upstream link (0: kernel autotuning)"),
    KEY("upstream", "congestion", CONFIG_STRING, upstream_congestion, "", 0, 0, NULL, false, true,
        "TCP congestion control of the upstream link, e.g. bbr (empty: the system's)"),
    KEY("tls", "port", CONFIG_INT, tls_port, "0", 0, 65535, NULL, false, false,
        "downstream TLS port beside relay.port (0: none)"),
    KEY("tls", "cert-file", CONFIG_STRING, tls_cert_file, "", 0, 0, NULL, false, false,
        "the relay's certificate chain (PEM) for the TLS port"),
    KEY("tls", "key-file", CONFIG_STRING, tls_key_file, "", 0, 0, NULL, false, false,
        "its private key (PEM)"),
    KEY("tls", "ca-file", CONFIG_STRING, tls_ca_file, "", 0, 0, NULL, false, false,
        "CA to verify client certificates and the upstream (empty: system CAs upstream)"),
    KEY("tls", "auth-clients", CONFIG_ENUM, tls_auth_clients, "no", 0, 0, "no|optional|yes", false,
        false, "client certificates on the TLS port: not asked, verified if sent, required"),
    KEY("tls", "client-cert-file", CONFIG_STRING, tls_client_cert_file, "", 0, 0, NULL, false,
        false, "certificate presented to a TLS upstream (empty: none)"),
    KEY("tls", "client-key-file", CONFIG_STRING, tls_client_key_file, "", 0, 0, NULL, false, false,
        "its private key"),
    KEY("tls", "server-name", CONFIG_STRING, tls_server_name, "", 0, 0, NULL, false, false,
        "name the upstream's certificate must carry (empty: upstream.host)"),
    KEY("metrics", "port", CONFIG_INT, metrics_port, "0", 0, 65535, NULL, false, false,
        "Prometheus text endpoint, GET /metrics (0: none)"),
    KEY("metrics", "bind", CONFIG_STRING, metrics_bind, "", 0, 0, NULL, false, false,
        "address of the metrics endpoint (empty: relay.bind)"),
    KEY("backlog", "size", CONFIG_BYTES, backlog_size_bytes, "64mb", 1 << 16, TB, NULL, false, true,
        "stream history kept in memory for partial resyncs"),
    KEY("backlog", "disk", CONFIG_ENUM, backlog_disk, "yes", 0, 0, "yes|no", false, false,
        "also keep the stream in log segments in dir (restarts, long outages)"),
    KEY("backlog", "segment-size", CONFIG_BYTES, segment_bytes, "64mb", 1 << 10, TB, NULL, false,
        true, "size of one log segment file"),
    KEY("backlog", "disk-direct", CONFIG_ENUM, disk_direct, "yes", 0, 0, "yes|no", false, false,
        "bulk log writes go to the device with O_DIRECT, not through the page cache"),
    KEY("backlog", "disk-size", CONFIG_BYTES, disk_bytes, "4gb", 1 << 10, 1024 * TB, NULL, false,
        true, "retention: oldest segments are deleted past this total"),
    KEY("backlog", "disk-max-age", CONFIG_TIME, disk_max_age_ms, "0", 0, 3650 * DAY_MS, NULL, false,
        true, "retention: segments older than this are deleted (0: no age limit)"),
    KEY("backlog", "disk-min", CONFIG_BYTES, disk_min_bytes, "256mb", 0, 1024 * TB, NULL, false,
        true, "retention: always keep at least this much"),
    KEY("snapshot", "refresh-after", CONFIG_BYTES, snapshot_refresh_bytes, "1gb", 0, 1024 * TB,
        NULL, false, true, "fetch a fresh snapshot once this much stream follows it (0: never)"),
    KEY("snapshot", "min-interval", CONFIG_TIME, snapshot_interval_ms, "60s", 0, DAY_MS, NULL,
        false, true, "at most one fresh snapshot from the upstream per this interval"),
    KEY("replicas", "max-replicas", CONFIG_INT, max_replicas, "0", 0, 1000000, NULL, false, true,
        "downstream replica sessions at once (0: no limit besides max-clients)"),
    KEY("replicas", "max-clients", CONFIG_INT, max_clients, "10000", 1, 1000000, NULL, false, true,
        "downstream connections at once, replicas included"),
    KEY("replicas", "output-limit", CONFIG_BYTES, output_limit_bytes, "256mb", 1 << 16, TB, NULL,
        false, true, "hard limit: a replica falling this far behind is disconnected"),
    KEY("replicas", "output-limit-soft", CONFIG_BYTES, output_soft_bytes, "64mb", 1 << 16, TB, NULL,
        false, true, "a replica this far behind for output-limit-soft-seconds is dropped"),
    KEY("replicas", "output-limit-soft-seconds", CONFIG_TIME, output_soft_ms, "60s", 0, DAY_MS,
        NULL, false, true, "how long a replica may stay past the soft limit"),
    KEY("replicas", "max-full-syncs", CONFIG_INT, max_full_syncs, "0", 0, 100000, NULL, false, true,
        "RDB transfers at once; more replicas wait with keepalives (0: no limit)"),
    KEY("replicas", "snapshot-rate", CONFIG_BYTES, snapshot_rate_bytes, "0", 0, TB, NULL, false,
        false, "per-replica RDB transfer rate in bytes per second (0: no limit)"),
    KEY("replicas", "timeout", CONFIG_TIME, replica_timeout_ms, "60s", 1000, DAY_MS, NULL, false,
        true, "a replica silent this long (no REPLCONF ACK) is disconnected"),
    KEY("replicas", "snapshot-keepalive", CONFIG_TIME, snapshot_keepalive_ms, "1s", 100, 60000,
        NULL, false, true, "newline keepalive interval to replicas waiting for a snapshot"),
    KEY("replicas", "compression-level", CONFIG_INT, compression_level, "1", 0, 19, NULL, false,
        true, "zstd level toward downstream cascade relays that ask for it (0: uncompressed)"),
    KEY("replicas", "sndbuf", CONFIG_BYTES, replica_sndbuf, "0", 0, GB, NULL, false, true,
        "SO_SNDBUF of replica links (0: kernel autotuning)"),
    {0},
};

static char **str_field(struct config *cfg, const struct config_key *k)
{
    return (char **)(void *)((char *)cfg + k->offset);
}

static int64_t *int_field(struct config *cfg, const struct config_key *k)
{
    return (int64_t *)(void *)((char *)cfg + k->offset);
}

static bool is_string_type(enum config_type t)
{
    return t == CONFIG_STRING || t == CONFIG_ENUM;
}

void config_init(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (const struct config_key *k = config_keys; k->section; k++) {
        char err[CONFIG_ERR_LEN];
        int rc = config_set(cfg, k->section, k->name, k->def, err, sizeof(err));
        /* Defaults are part of the table; a bad one is a programming error. */
        if (rc != 0)
            abort();
    }
}

void config_deinit(struct config *cfg)
{
    for (size_t i = 0; i < cfg->nusers; i++) {
        free(cfg->user_names[i]);
        free(cfg->user_passwords[i]);
    }
    free(cfg->user_names);
    free(cfg->user_passwords);
    cfg->user_names = cfg->user_passwords = NULL;
    cfg->nusers = 0;
    for (const struct config_key *k = config_keys; k->section; k++) {
        if (is_string_type(k->type)) {
            free(*str_field(cfg, k));
            *str_field(cfg, k) = NULL;
        }
    }
}

/* Parse a signed decimal integer with an optional unit suffix from units[]. */
struct unit {
    const char *suffix;
    int64_t mult;
};

static int parse_scaled(const char *s, const struct unit *units, int64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || v < 0)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    /* Trailing whitespace after the suffix is allowed; anything else is not. */
    size_t slen = strlen(end);
    while (slen > 0 && isspace((unsigned char)end[slen - 1]))
        slen--;
    int64_t mult = 1;
    if (slen > 0) {
        const struct unit *u = units;
        for (; u->suffix; u++) {
            if (strlen(u->suffix) == slen && strncasecmp(end, u->suffix, slen) == 0)
                break;
        }
        if (!u->suffix)
            return -1;
        mult = u->mult;
    }
    if (v > INT64_MAX / mult)
        return -1;
    *out = (int64_t)v * mult;
    return 0;
}

int config_parse_bytes(const char *s, int64_t *out)
{
    static const struct unit units[] = {
        {"b", 1},         {"k", 1 << 10},    {"kb", 1 << 10},  {"m", 1 << 20},    {"mb", 1 << 20},
        {"g", 1LL << 30}, {"gb", 1LL << 30}, {"t", 1LL << 40}, {"tb", 1LL << 40}, {NULL, 0},
    };
    return parse_scaled(s, units, out);
}

int config_parse_time_ms(const char *s, int64_t *out)
{
    static const struct unit units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {NULL, 0},
    };
    return parse_scaled(s, units, out);
}

static const struct config_key *find_key(const char *section, const char *name)
{
    for (const struct config_key *k = config_keys; k->section; k++) {
        if (strcasecmp(k->section, section) == 0 && strcasecmp(k->name, name) == 0)
            return k;
    }
    return NULL;
}

const struct config_key *config_find(const char *dotted)
{
    const char *dot = strchr(dotted, '.');
    if (dot) {
        char section[64];
        size_t n = (size_t)(dot - dotted);
        if (n >= sizeof(section))
            return NULL;
        memcpy(section, dotted, n);
        section[n] = '\0';
        return find_key(section, dot + 1);
    }
    const struct config_key *found = NULL;
    for (const struct config_key *k = config_keys; k->section; k++) {
        if (strcasecmp(k->name, dotted) == 0) {
            if (found)
                return NULL; /* ambiguous */
            found = k;
        }
    }
    return found;
}

static bool enum_ok(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vlen && strncasecmp(p, value, n) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

int config_set(struct config *cfg, const char *section, const char *name, const char *value,
               char *err, size_t errlen)
{
    const struct config_key *k = find_key(section, name);
    if (!k) {
        errmsg(err, errlen, "unknown key '%s' in section [%s]", name, section);
        return -1;
    }
    if (is_string_type(k->type)) {
        if (k->type == CONFIG_ENUM && !enum_ok(k->choices, value)) {
            errmsg(err, errlen, "%s.%s: '%s' is not one of %s", k->section, k->name, value,
                   k->choices);
            return -1;
        }
        char *copy = strdup(value);
        if (!copy)
            abort();
        if (k->type == CONFIG_ENUM) {
            for (char *c = copy; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        }
        char **field = str_field(cfg, k);
        free(*field);
        *field = copy;
        return 0;
    }
    int64_t v;
    int rc;
    const char *what;
    switch (k->type) {
    case CONFIG_BYTES:
        rc = config_parse_bytes(value, &v);
        what = "a size (e.g. 512kb, 64mb, 1gb)";
        break;
    case CONFIG_TIME:
        rc = config_parse_time_ms(value, &v);
        what = "a duration (e.g. 500ms, 10s, 5m)";
        break;
    default:
        rc = -1;
        what = "an integer";
        if (value[0] == '-' || isdigit((unsigned char)value[0])) {
            char *end;
            errno = 0;
            long long ll = strtoll(value, &end, 10);
            while (isspace((unsigned char)*end))
                end++;
            if (errno == 0 && end != value && *end == '\0') {
                v = ll;
                rc = 0;
            }
        }
        break;
    }
    if (rc != 0) {
        errmsg(err, errlen, "%s.%s: '%s' is not %s", k->section, k->name, value, what);
        return -1;
    }
    if (v < k->min || v > k->max) {
        errmsg(err, errlen, "%s.%s: %s is out of range [%" PRId64 ", %" PRId64 "]", k->section,
               k->name, value, k->min, k->max);
        return -1;
    }
    *int_field(cfg, k) = v;
    return 0;
}

int config_set_arg(struct config *cfg, const char *arg, char *err, size_t errlen)
{
    const char *eq = strchr(arg, '=');
    const char *dot = strchr(arg, '.');
    if (!eq || !dot || dot > eq) {
        errmsg(err, errlen, "--set %s: expected SECTION.KEY=VALUE", arg);
        return -1;
    }
    char section[64], name[64];
    size_t sn = (size_t)(dot - arg), nn = (size_t)(eq - dot - 1);
    if (sn == 0 || sn >= sizeof(section) || nn == 0 || nn >= sizeof(name)) {
        errmsg(err, errlen, "--set %s: expected SECTION.KEY=VALUE", arg);
        return -1;
    }
    memcpy(section, arg, sn);
    section[sn] = '\0';
    memcpy(name, dot + 1, nn);
    name[nn] = '\0';
    char msg[CONFIG_ERR_LEN];
    if (config_set(cfg, section, name, eq + 1, msg, sizeof(msg)) != 0) {
        errmsg(err, errlen, "--set %s: %s", arg, msg);
        return -1;
    }
    return 0;
}

int config_validate(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->reconnect_min_ms > cfg->reconnect_max_ms) {
        errmsg(err, errlen,
               "upstream.reconnect-min (%" PRId64 "ms) exceeds upstream.reconnect-max "
               "(%" PRId64 "ms)",
               cfg->reconnect_min_ms, cfg->reconnect_max_ms);
        return -1;
    }
    if (!compat_announce_valid(cfg->upstream_announce_version)) {
        errmsg(err, errlen,
               "upstream.announce-version must be auto, none or a version like 8.0.0, not '%s'",
               cfg->upstream_announce_version);
        return -1;
    }
    if (cfg->dir[0] == '\0') {
        errmsg(err, errlen, "relay.dir must not be empty");
        return -1;
    }
    if (cfg->bind[0] == '\0') {
        errmsg(err, errlen, "relay.bind must not be empty");
        return -1;
    }
    return 0;
}

bool config_key_equal(const struct config *a, const struct config *b, const struct config_key *k)
{
    const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    if (is_string_type(k->type))
        return strcmp(*(char *const *)(const void *)pa, *(char *const *)(const void *)pb) == 0;
    return *(const int64_t *)(const void *)pa == *(const int64_t *)(const void *)pb;
}

void config_copy_key(struct config *dst, const struct config *src, const struct config_key *k)
{
    if (is_string_type(k->type)) {
        char **d = str_field(dst, k);
        char *copy = strdup(*(char *const *)(const void *)((const char *)src + k->offset));
        if (!copy)
            abort();
        free(*d);
        *d = copy;
    } else {
        *int_field(dst, k) = *(const int64_t *)(const void *)((const char *)src + k->offset);
    }
}

void config_format(const struct config *cfg, const struct config_key *k, char *out, size_t len)
{
    const char *base = (const char *)cfg + k->offset;
    if (is_string_type(k->type)) {
        const char *s = *(char *const *)(const void *)base;
        snprintf(out, len, "%s", s ? s : "");
    } else {
        snprintf(out, len, "%" PRId64, *(const int64_t *)(const void *)base);
    }
}

/* Parse state shared between the line-counting reader and the handler. */
struct parse_ctx {
    struct config *cfg;
    const char *name; /* file name for messages */
    FILE *file;       /* source when parsing a file */
    const char *text; /* source when parsing a string */
    int line;         /* line number of the line last handed to inih */
    bool long_line;   /* a line exceeded inih's buffer */
    int error_line;   /* first failing line, 0 if none */
    char error[CONFIG_ERR_LEN];
    unsigned char seen[sizeof(config_keys) / sizeof(config_keys[0])]; /* duplicate detection */
};

static void ctx_fail(struct parse_ctx *ctx, const char *msg)
{
    if (ctx->error_line)
        return;
    ctx->error_line = ctx->line;
    snprintf(ctx->error, sizeof(ctx->error), "%s", msg);
}

/* Reads one line like fgets, counting lines and flagging lines longer than inih's buffer. */
static char *ctx_read(char *str, int num, void *stream)
{
    struct parse_ctx *ctx = stream;
    int n = 0;
    bool got = false;
    for (;;) {
        int c;
        if (ctx->file) {
            c = fgetc(ctx->file);
            if (c == EOF)
                break;
        } else {
            if (*ctx->text == '\0')
                break;
            c = (unsigned char)*ctx->text++;
        }
        if (!got) {
            got = true;
            ctx->line++;
        }
        if (c == '\0') {
            ctx_fail(ctx, "NUL byte in config file");
            c = ' ';
        }
        if (n < num - 1) {
            str[n++] = (char)c;
        } else if (c != '\n') {
            ctx->long_line = true;
        }
        if (c == '\n')
            break;
    }
    if (!got)
        return NULL;
    str[n] = '\0';
    if (ctx->long_line) {
        char msg[64];
        snprintf(msg, sizeof(msg), "line longer than %d bytes", num - 3);
        ctx_fail(ctx, msg);
        ctx->long_line = false;
        str[0] = '\0'; /* hand inih an empty line instead of a truncated one */
    }
    return str;
}

/* [users]: one "name = password" per user. */
static void add_user(struct parse_ctx *ctx, const char *name, const char *value)
{
    struct config *cfg = ctx->cfg;
    if (strcmp(name, "default") == 0) {
        ctx_fail(ctx, "user 'default' is set by relay.requirepass, not in [users]");
        return;
    }
    if (name[0] == '\0') { /* "= secret": inih hands over an empty name */
        ctx_fail(ctx, "a user needs a name");
        return;
    }
    for (const char *p = name; *p; p++) {
        if (*p <= ' ' || *p > '~') {
            ctx_fail(ctx, "user names are printable ASCII without spaces");
            return;
        }
    }
    if (value[0] == '\0') {
        ctx_fail(ctx, "a user needs a password");
        return;
    }
    if (config_user_password(cfg, name, strlen(name))) {
        char msg[CONFIG_ERR_LEN];
        snprintf(msg, sizeof(msg), "duplicate user '%s' in section [users]", name);
        ctx_fail(ctx, msg);
        return;
    }
    cfg->user_names = realloc(cfg->user_names, (cfg->nusers + 1) * sizeof(char *));
    cfg->user_passwords = realloc(cfg->user_passwords, (cfg->nusers + 1) * sizeof(char *));
    if (!cfg->user_names || !cfg->user_passwords)
        abort();
    cfg->user_names[cfg->nusers] = strdup(name);
    cfg->user_passwords[cfg->nusers] = strdup(value);
    if (!cfg->user_names[cfg->nusers] || !cfg->user_passwords[cfg->nusers])
        abort();
    cfg->nusers++;
}

const char *config_user_password(const struct config *cfg, const char *name, size_t len)
{
    if (len == 7 && strncmp(name, "default", 7) == 0)
        return cfg->requirepass[0] ? cfg->requirepass : NULL;
    for (size_t i = 0; i < cfg->nusers; i++) {
        if (strlen(cfg->user_names[i]) == len && strncmp(cfg->user_names[i], name, len) == 0)
            return cfg->user_passwords[i];
    }
    return NULL;
}

bool config_users_equal(const struct config *a, const struct config *b)
{
    if (a->nusers != b->nusers)
        return false;
    for (size_t i = 0; i < a->nusers; i++) {
        const char *pw = config_user_password(b, a->user_names[i], strlen(a->user_names[i]));
        if (!pw || strcmp(pw, a->user_passwords[i]) != 0)
            return false;
    }
    return true;
}

void config_copy_users(struct config *dst, const struct config *src)
{
    for (size_t i = 0; i < dst->nusers; i++) {
        free(dst->user_names[i]);
        free(dst->user_passwords[i]);
    }
    dst->nusers = 0;
    dst->user_names = realloc(dst->user_names, (src->nusers + 1) * sizeof(char *));
    dst->user_passwords = realloc(dst->user_passwords, (src->nusers + 1) * sizeof(char *));
    if (!dst->user_names || !dst->user_passwords)
        abort();
    for (size_t i = 0; i < src->nusers; i++) {
        dst->user_names[i] = strdup(src->user_names[i]);
        dst->user_passwords[i] = strdup(src->user_passwords[i]);
        if (!dst->user_names[i] || !dst->user_passwords[i])
            abort();
    }
    dst->nusers = src->nusers;
}

bool config_has_auth(const struct config *cfg)
{
    return cfg->requirepass[0] != '\0' || cfg->nusers > 0;
}

static int ctx_handler(void *user, const char *section, const char *name, const char *value)
{
    struct parse_ctx *ctx = user;
    char msg[CONFIG_ERR_LEN];
    if (strcmp(section, "users") == 0) {
        add_user(ctx, name, value);
        return 1;
    }
    if (section[0] == '\0') {
        snprintf(msg, sizeof(msg), "key '%s' outside of any [section]", name);
        ctx_fail(ctx, msg);
        return 1;
    }
    const struct config_key *k = find_key(section, name);
    if (!k) {
        snprintf(msg, sizeof(msg), "unknown key '%s' in section [%s]", name, section);
        ctx_fail(ctx, msg);
        return 1;
    }
    size_t idx = (size_t)(k - config_keys);
    if (ctx->seen[idx]) {
        snprintf(msg, sizeof(msg), "duplicate key '%s' in section [%s]", name, section);
        ctx_fail(ctx, msg);
        return 1;
    }
    ctx->seen[idx] = 1;
    if (config_set(ctx->cfg, section, name, value, msg, sizeof(msg)) != 0)
        ctx_fail(ctx, msg);
    return 1;
}

static int parse_ctx_run(struct parse_ctx *ctx, char *err, size_t errlen)
{
    /* Debian's inih exposes its compile-time options as globals: continuation lines would
     * otherwise be silently glued onto the previous key. */
    ini_allow_multiline = false;
    int rc = ini_parse_stream(ctx_read, ctx, ctx_handler, ctx);
    /* inih keeps going after a syntax error: report whichever failing line comes first. */
    if (ctx->error_line && !(rc > 0 && rc < ctx->error_line)) {
        errmsg(err, errlen, "%s:%d: %s", ctx->name, ctx->error_line, ctx->error);
        return -1;
    }
    if (rc > 0) {
        errmsg(err, errlen, "%s:%d: syntax error (expected [section] or key = value)", ctx->name,
               rc);
        return -1;
    }
    if (rc < 0) {
        errmsg(err, errlen, "%s: cannot parse", ctx->name);
        return -1;
    }
    return 0;
}

int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        errmsg(err, errlen, "%s:0: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct parse_ctx ctx = {.cfg = cfg, .name = path, .file = f};
    int rc = parse_ctx_run(&ctx, err, errlen);
    fclose(f);
    return rc;
}

int config_load_string(struct config *cfg, const char *text, const char *name, char *err,
                       size_t errlen)
{
    struct parse_ctx ctx = {.cfg = cfg, .name = name, .text = text};
    return parse_ctx_run(&ctx, err, errlen);
}
