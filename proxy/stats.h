/*
 * stats: the relay's counters (one X-macro table) and a growable text buffer for INFO.
 * No globals: relay.c owns the struct stats instance. No logging.
 */
#ifndef CASCADE_STATS_H
#define CASCADE_STATS_H

#include <stddef.h>
#include <stdint.h>

/* name, help. Names are Redis' INFO field names where Redis has one. */
/* field (Redis' INFO name where Redis has one), Prometheus name (cascade_<name>_total), help */
#define STATS_COUNTERS(X)                                                                          \
    X(total_connections_received, "connections_received", "downstream connections accepted")       \
    X(rejected_connections, "connections_rejected", "connections refused (max-clients)")           \
    X(total_commands_processed, "client_commands", "commands from downstream clients")             \
    X(total_net_input_bytes, "client_input_bytes", "bytes read from downstream clients")           \
    X(total_net_output_bytes, "client_output_bytes", "bytes queued to downstream clients")         \
    X(total_net_repl_input_bytes, "stream_input_bytes", "stream bytes read from the upstream")     \
    X(total_net_repl_output_bytes, "replica_output_bytes", "stream and RDB bytes to replicas")     \
    X(sync_full, "full_syncs_served", "full resyncs served to replicas")                           \
    X(sync_partial_ok, "partial_syncs_served", "partial resyncs served to replicas")               \
    X(sync_partial_err, "partial_syncs_refused", "PSYNCs that could not continue partially")       \
    X(upstream_full_syncs, "upstream_full_syncs", "full syncs the relay did from its upstream")    \
    X(upstream_partial_syncs, "upstream_partial_syncs", "partial resyncs with the upstream")       \
    X(snapshot_fetches, "snapshot_fetches", "snapshots fetched on a side connection")              \
    X(snapshots_rejected, "snapshots_rejected",                                                    \
      "RDBs refused: a checksum mismatch, or the stream after an unchecked one did not parse")     \
    X(replicas_dropped_output_limit, "replicas_dropped_output_limit",                              \
      "replicas dropped past their output limit")                                                  \
    X(replicas_dropped_timeout, "replicas_dropped_timeout", "replicas dropped for silence")        \
    X(syncs_refused_incompatible, "syncs_refused_incompatible",                                    \
      "full syncs refused: the replica cannot load the snapshot's RDB version")                    \
    X(protocol_errors, "protocol_errors", "downstream protocol errors")                            \
    X(auth_failures, "auth_failures", "failed AUTH attempts downstream")                           \
    X(protected_mode_refusals, "protected_mode_refusals",                                          \
      "remote clients refused by protected mode")                                                  \
    X(client_timeouts, "client_timeouts", "plain clients closed by a timeout")                     \
    X(disk_log_cuts, "disk_log_cuts", "disk log ranges cut after failing their check")             \
    X(disk_log_restarts, "disk_log_restarts", "disk log restarts after a write error")             \
    X(client_output_buffer_limit_disconnections, "client_output_limit_disconnections",             \
      "plain clients closed past their output limit")                                              \
    X(evicted_clients, "clients_evicted_input_memory",                                             \
      "plain clients closed for relay.input-memory")                                               \
    X(auth_delayed_replies, "auth_delayed_replies", "failed AUTH replies sent after a delay")

struct stats {
#define STATS_FIELD(name, prom, help) int64_t name;
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

/* Every counter as a Prometheus counter family, cascade_<name>_total. */
void stats_metrics(const struct stats *st, struct sbuf *out);

/* Human form of a byte count ("1.50M"), as Redis' *_human fields. */
void stats_human_bytes(int64_t n, char *out, size_t len);

#endif
