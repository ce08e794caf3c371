/*
 * config: the relay's settings, one key table for the ini file, --set and CONFIG GET.
 * Owns the parsed values (strings are heap copies freed by config_deinit).
 * Must not log or touch argv: callers report the error message it returns.
 */
#ifndef CASCADE_CONFIG_H
#define CASCADE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_ERR_LEN 512

struct config {
    /* [relay] */
    char *bind;                   /* address the downstream listener binds */
    int64_t port;                 /* downstream listener port */
    char *dir;                    /* working directory: RDB snapshots, temp files */
    char *requirepass;            /* password downstream clients must AUTH with ("" = none) */
    char *log_level;              /* debug | info | notice | warning */
    char *log_file;               /* "" = stderr; reopened on SIGHUP */
    char *syslog;                 /* yes | no */
    char *syslog_ident;           /* program name in syslog */
    char *protected_mode;         /* yes | no: refuse remote clients without a password */
    int64_t handshake_timeout_ms; /* to authenticate, and to finish any one command */
    int64_t client_timeout_ms;    /* idle plain clients are closed (0 = never) */
    int64_t max_args;             /* arguments per command */
    int64_t max_bulk_bytes;       /* one argument */
    int64_t max_inline_bytes;     /* one inline command */
    /* [relay]: limits on plain clients (hostile or careless ones) */
    int64_t input_memory_bytes;        /* all plain clients' input buffers together */
    int64_t auth_failure_delay_ms;     /* reply delay after the first failed AUTHs */
    int64_t client_output_limit_bytes; /* plain clients: hard output limit (0 = none) */
    int64_t client_output_soft_bytes;  /* soft limit ... */
    int64_t client_output_soft_ms;     /* ... tolerated this long */
    int64_t pubsub_output_limit_bytes; /* subscribed clients: hard output limit */
    int64_t pubsub_output_soft_bytes;  /* soft limit ... */
    int64_t pubsub_output_soft_ms;     /* ... tolerated this long */
    /* [upstream] */
    char *upstream_host; /* master (or relay) to replicate from ("" = none yet) */
    int64_t upstream_port;
    char *upstream_user;             /* AUTH user (Redis' masteruser), "" = default user */
    char *upstream_password;         /* AUTH password (Redis' masterauth), "" = no AUTH */
    char *upstream_tls;              /* yes | no: TLS to the upstream */
    char *upstream_announce_version; /* auto | none | x.y.z: REPLCONF version upstream */
    char *sentinels;                 /* "host:port,...": follow the master through Sentinel */
    char *resolv_conf;               /* name servers for the upstream's and sentinels' names */
    char *master_name;               /* the master's name in Sentinel */
    char *sentinel_password;         /* AUTH to the sentinels ("" = none) */
    int64_t connect_timeout_ms;      /* TCP connect + handshake budget */
    int64_t repl_timeout_ms;         /* silence on the upstream link before it is dropped */
    int64_t reconnect_min_ms;        /* first reconnect delay; doubles per failure */
    int64_t reconnect_max_ms;        /* cap of the reconnect delay */
    char *upstream_compression;      /* auto | no: zstd on a link to another cascade relay */
    int64_t link_timeout_ms;         /* silence on a cascade link before a redial */
    int64_t tcp_keepalive_ms;        /* TCP keepalive idle time upstream (0 = off) */
    int64_t tcp_user_timeout_ms;     /* TCP_USER_TIMEOUT upstream (0 = kernel default) */
    int64_t upstream_sndbuf;         /* SO_SNDBUF upstream (0 = autotuning) */
    int64_t upstream_rcvbuf;         /* SO_RCVBUF upstream (0 = autotuning) */
    char *upstream_congestion;       /* TCP_CONGESTION upstream ("" = system default) */
    /* [backlog] */
    int64_t backlog_size_bytes; /* in-memory stream history kept for partial resyncs */
    char *backlog_disk;         /* yes | no: keep the stream in log segments in dir */
    int64_t segment_bytes;      /* log segment size */
    char *disk_direct;          /* yes | no: bulk log writes bypass the page cache */
    int64_t disk_bytes;         /* retention: total log size */
    int64_t disk_max_age_ms;    /* retention: segment age (0 = no limit) */
    int64_t disk_min_bytes;     /* retention: always kept */
    /* [snapshot] */
    int64_t snapshot_refresh_bytes; /* fetch a fresh snapshot past this much stream (0 = never) */
    int64_t snapshot_interval_ms;   /* at most one fresh snapshot per this interval */
    /* [replicas] */
    int64_t max_replicas;          /* downstream replica sessions at once (0 = unlimited) */
    int64_t max_clients;           /* all downstream connections at once */
    int64_t output_limit_bytes;    /* hard limit: a replica further behind is dropped */
    int64_t output_soft_bytes;     /* soft limit ... */
    int64_t output_soft_ms;        /* ... tolerated this long */
    int64_t max_full_syncs;        /* RDB transfers at once (0 = unlimited) */
    int64_t snapshot_rate_bytes;   /* per-replica RDB transfer rate, bytes/s (0 = unlimited) */
    int64_t replica_timeout_ms;    /* a replica silent (no ACK) this long is dropped */
    int64_t snapshot_keepalive_ms; /* "\n" interval to replicas waiting for a snapshot */
    int64_t compression_level;     /* zstd level toward cascade relays (0 = raw frames) */
    int64_t replica_sndbuf;        /* SO_SNDBUF of replica links (0 = autotuning) */
    /* [tls] */
    int64_t tls_port;           /* downstream TLS listener (0 = none) */
    char *tls_cert_file;        /* the relay's certificate (PEM) */
    char *tls_key_file;         /* its private key */
    char *tls_ca_file;          /* CA for client certificates and the upstream's */
    char *tls_auth_clients;     /* no | optional | yes */
    char *tls_client_cert_file; /* certificate presented to the upstream ("" = none) */
    char *tls_client_key_file;
    char *tls_server_name; /* name checked in the upstream's certificate ("" = host) */
    /* [metrics] */
    int64_t metrics_port; /* Prometheus endpoint (0 = none) */
    char *metrics_bind;   /* its address ("" = relay.bind) */
    /* [users]: "name = password" lines, ACL users besides "default" (relay.requirepass) */
    char **user_names;
    char **user_passwords;
    size_t nusers;
};

enum config_type {
    CONFIG_STRING, /* free text */
    CONFIG_INT,    /* integer in [min, max] */
    CONFIG_BYTES,  /* integer with optional k/kb/m/mb/g/gb suffix (1024-based) */
    CONFIG_TIME,   /* milliseconds, with optional ms/s/m/h suffix */
    CONFIG_ENUM,   /* one of a '|' separated list */
};

struct config_key {
    const char *section; /* ini section without brackets */
    const char *name;    /* key name inside the section */
    enum config_type type;
    size_t offset;       /* offsetof(struct config, field) */
    const char *def;     /* default, as it would be written in the file */
    int64_t min, max;    /* bounds for numeric types */
    const char *choices; /* CONFIG_ENUM: "a|b|c" */
    bool secret;         /* never shown by CONFIG GET or logs */
    bool reloadable;     /* may change at runtime */
    const char *help;    /* one line for docs and --help */
};

/* The key table, terminated by a zeroed entry. */
extern const struct config_key config_keys[];

/* Fill cfg with every default. */
void config_init(struct config *cfg);
void config_deinit(struct config *cfg);

/* Parse an ini file on top of cfg. On error returns -1 and writes "FILE:LINE: message". */
__attribute__((warn_unused_result)) int config_load_file(struct config *cfg, const char *path,
                                                         char *err, size_t errlen);

/* Parse an ini document held in memory (for tests and fuzzing); name is used in errors. */
__attribute__((warn_unused_result)) int config_load_string(struct config *cfg, const char *text,
                                                           const char *name, char *err,
                                                           size_t errlen);

/* Set one key: "section.key=value" (from --set). Error text names the key. */
__attribute__((warn_unused_result)) int config_set_arg(struct config *cfg, const char *arg,
                                                       char *err, size_t errlen);

/* Set section/name to value. Returns -1 with a message (no file/line) on failure. */
__attribute__((warn_unused_result)) int config_set(struct config *cfg, const char *section,
                                                   const char *name, const char *value, char *err,
                                                   size_t errlen);

/* Cross-key checks after everything is loaded. */
__attribute__((warn_unused_result)) int config_validate(const struct config *cfg, char *err,
                                                        size_t errlen);

/* The password of user `name` (NULL if no such user). "default" is relay.requirepass. */
const char *config_user_password(const struct config *cfg, const char *name, size_t len);

/* [users] comparison and copy (for reloads). */
bool config_users_equal(const struct config *a, const struct config *b);
void config_copy_users(struct config *dst, const struct config *src);

/* Whether any password is configured (requirepass or a user). */
bool config_has_auth(const struct config *cfg);

/* Find a key by "section.name", or by bare name if unique. NULL if unknown. */
const struct config_key *config_find(const char *dotted);

/* Whether key has the same value in a and b; copy key's value from src into dst. */
bool config_key_equal(const struct config *a, const struct config *b, const struct config_key *k);
void config_copy_key(struct config *dst, const struct config *src, const struct config_key *k);

/* Format the current value of key into out ("" for unset strings; secrets are not hidden here). */
void config_format(const struct config *cfg, const struct config_key *key, char *out, size_t len);

/* Parse helpers, exposed for tests. Return 0 or -1. */
int config_parse_bytes(const char *s, int64_t *out);
int config_parse_time_ms(const char *s, int64_t *out);

#endif
