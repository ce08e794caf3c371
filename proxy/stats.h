/*
 * stats: the relay's counters (one X-macro table) and a growable text buffer for INFO.
 * No globals: relay.c owns the struct stats instance. No logging.
 */
#ifndef CASCADE_STATS_H
#define CASCADE_STATS_H

#include <stddef.h>
#include <stdint.h>

/* name, help. Names are Redis' INFO field names where Redis has one. */
#define STATS_COUNTERS(X)                                                                          \
    X(total_connections_received, "downstream connections accepted")                               \
    X(rejected_connections, "downstream connections refused (max-clients)")                        \
    X(total_commands_processed, "commands from downstream clients")                                \
    X(total_net_input_bytes, "bytes read from downstream clients")                                 \
    X(total_net_output_bytes, "bytes queued to downstream clients")                                \
    X(total_net_repl_input_bytes, "stream bytes read from the upstream")                           \
    X(total_net_repl_output_bytes, "stream and RDB bytes queued to replicas")                      \
    X(sync_full, "full resyncs served to replicas")                                                \
    X(sync_partial_ok, "partial resyncs served to replicas")                                       \
    X(sync_partial_err, "PSYNC requests that could not continue partially")                        \
    X(upstream_full_syncs, "full syncs the relay did from its upstream")                           \
    X(upstream_partial_syncs, "partial resyncs the relay did with its upstream")                   \
    X(upstream_connects, "upstream connection attempts")                                           \
    X(snapshot_fetches, "snapshots fetched on a side connection (rdb-only)")                       \
    X(replicas_dropped_output_limit, "replicas dropped past their output limit")                   \
    X(replicas_dropped_timeout, "replicas dropped for silence")                                    \
    X(protocol_errors, "downstream protocol errors")                                               \
    X(auth_failures, "failed AUTH attempts downstream")                                            \
    X(protected_mode_refusals, "remote clients refused by protected mode")                         \
    X(client_timeouts, "plain clients closed by handshake-timeout or client-timeout")

struct stats {
#define STATS_FIELD(name, help) int64_t name;
    STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
};

/* A growable NUL-terminated text buffer. */
struct sbuf {
    char *buf;
    size_t len, cap;
};

void sbuf_printf(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_append(struct sbuf *s, const char *data, size_t len);
void sbuf_free(struct sbuf *s);

/* Append "name:value\r\n" for every counter. */
void stats_info(const struct stats *st, struct sbuf *out);

/* Human form of a byte count ("1.50M"), as Redis' *_human fields. */
void stats_human_bytes(int64_t n, char *out, size_t len);

#endif
