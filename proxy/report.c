/*
 * report: INFO, ROLE, CLIENT LIST and metrics text from struct report_facts (see report.h).
 * Owns the text and nothing else: every value comes from the facts, every name and format is
 * here. Must not log, hold state between calls, or read anything but the facts (except
 * report_process, which reads the process's own facts for the caller).
 */
#include "report.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

/* ---- facts ------------------------------------------------------------------------------ */

static int64_t rss_bytes(void)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[128];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    long pages = 0, rss = 0;
    if (sscanf(buf, "%ld %ld", &pages, &rss) != 2)
        return 0;
    return (int64_t)rss * sysconf(_SC_PAGESIZE);
}

void report_process(struct report_process *p)
{
    struct utsname un;
    memset(&un, 0, sizeof(un));
    uname(&un);
    snprintf(p->sysname, sizeof(p->sysname), "%s", un.sysname);
    snprintf(p->release, sizeof(p->release), "%s", un.release);
    snprintf(p->machine, sizeof(p->machine), "%s", un.machine);
    p->arch_bits = (int)(sizeof(long) * 8);
    p->pid = (int)getpid();
    p->rss_bytes = rss_bytes();
}

struct report_replica *report_add_replica(struct report_facts *f)
{
    if (f->nreplicas == f->replicas_cap) {
        size_t cap = f->replicas_cap ? f->replicas_cap * 2 : 8;
        struct report_replica *nr = realloc(f->replicas, cap * sizeof(*nr));
        if (!nr)
            abort();
        f->replicas = nr;
        f->replicas_cap = cap;
    }
    struct report_replica *row = &f->replicas[f->nreplicas++];
    memset(row, 0, sizeof(*row));
    return row;
}

void report_facts_deinit(struct report_facts *f)
{
    free(f->replicas);
    f->replicas = NULL;
    f->nreplicas = f->replicas_cap = 0;
}

/* ---- INFO ------------------------------------------------------------------------------- */

static void info_server(const struct report_facts *f, struct sbuf *o)
{
    int64_t up_s = (f->now_ms - f->start_ms) / 1000;
    /* The upstream's version once known, so that tools see what the data set is; Valkey's
     * own fields where the upstream is Valkey (a relay below learns the version from them). */
    const struct compat_identity *id = f->has_identity ? &f->identity : NULL;
    /* who this relay follows, for a relay that would follow it (loop detection) */
    char chain[sizeof(f->identity.chain)] = "";
    if (f->up.has_identity)
        compat_chain_extend(&f->up.identity, chain, sizeof(chain));
    sbuf_printf(o, "# Server\r\nredis_version:%s\r\n", id ? id->redis_version : "7.0.15");
    if (id && id->server == COMPAT_VALKEY)
        sbuf_printf(o, "server_name:valkey\r\nvalkey_version:%s\r\n", id->server_version);
    sbuf_printf(o,
                "cascade_version:%s\r\n"
                "redis_mode:standalone\r\n"
                "os:%s %s %s\r\n"
                "arch_bits:%d\r\n"
                "multiplexing_api:libevent\r\n"
                "process_id:%d\r\n"
                "run_id:%s\r\n"
                "cascade_chain:%s\r\n"
                "tcp_port:%" PRId64 "\r\n"
                "uptime_in_seconds:%" PRId64 "\r\n"
                "uptime_in_days:%" PRId64 "\r\n"
                "config_file:%s\r\n",
                CASCADE_VERSION, f->proc.sysname, f->proc.release, f->proc.machine,
                f->proc.arch_bits, f->proc.pid, f->run_id, chain, f->tcp_port, up_s, up_s / 86400,
                f->config_file);
}

static void info_clients(const struct report_facts *f, struct sbuf *o)
{
    sbuf_printf(o,
                "# Clients\r\n"
                "connected_clients:%zu\r\n"
                "maxclients:%" PRId64 "\r\n"
                "blocked_clients:0\r\n",
                f->clients + f->replicas_live, f->maxclients);
}

static void info_memory(const struct report_facts *f, struct sbuf *o)
{
    int64_t outbuf = 0;
    for (size_t i = 0; i < f->nreplicas; i++)
        outbuf += (int64_t)f->replicas[i].output_bytes;
    int64_t used = (int64_t)f->backlog_memory;
    int64_t rss = f->proc.rss_bytes;
    char h1[32], h2[32];
    stats_human_bytes(used, h1, sizeof(h1));
    stats_human_bytes(rss, h2, sizeof(h2));
    sbuf_printf(o,
                "# Memory\r\n"
                "used_memory:%" PRId64 "\r\n"
                "used_memory_human:%s\r\n"
                "used_memory_rss:%" PRId64 "\r\n"
                "used_memory_rss_human:%s\r\n"
                "mem_replication_backlog:%" PRId64 "\r\n"
                "mem_clients_slaves:%" PRId64 "\r\n"
                "mem_clients_normal:%zu\r\n"
                "maxmemory:0\r\n",
                used, h1, rss, h2, used, outbuf, f->client_memory);
}

static void info_stats(const struct report_facts *f, struct sbuf *o)
{
    sbuf_printf(o, "# Stats\r\n");
    stats_info(&f->stats, o);
    sbuf_printf(o, "total_forks:0\r\n");
}

/* The link half of the replication section: the relay is a replica of its upstream. */
static void info_master_link(const struct report_facts *f, struct sbuf *o)
{
    const struct report_upstream *u = &f->up;
    int64_t end = f->backlog_end;
    sbuf_printf(o,
                "# Replication\r\n"
                "role:slave\r\n"
                "master_host:%s\r\n"
                "master_port:%d\r\n"
                "master_link_status:%s\r\n"
                "master_last_io_seconds_ago:%" PRId64 "\r\n"
                "master_sync_in_progress:%d\r\n"
                "slave_read_repl_offset:%" PRId64 "\r\n"
                "slave_repl_offset:%" PRId64 "\r\n",
                u->host, u->port, u->link_up && !u->stalled ? "up" : "down",
                u->last_io_ms ? (f->now_ms - u->last_io_ms) / 1000 : -1, u->syncing ? 1 : 0, end,
                end);
    if (u->syncing)
        sbuf_printf(o,
                    "master_sync_total_bytes:%" PRId64 "\r\n"
                    "master_sync_read_bytes:%" PRId64 "\r\n",
                    u->rdb_size, u->rdb_bytes);
    if (!u->link_up)
        sbuf_printf(o, "master_link_down_since_seconds:%" PRId64 "\r\n",
                    (f->now_ms - u->down_since_ms) / 1000);
}

static void info_replication(const struct report_facts *f, struct sbuf *o)
{
    info_master_link(f, o);
    sbuf_printf(o,
                "slave_priority:0\r\n"
                "slave_read_only:1\r\n"
                "replica_announced:0\r\n"
                "connected_slaves:%zu\r\n",
                f->replicas_live);
    for (size_t i = 0; i < f->nreplicas; i++) {
        const struct report_replica *rep = &f->replicas[i];
        sbuf_printf(o, "slave%zu:ip=%s,port=%d,state=%s,offset=%" PRId64 ",lag=%" PRId64 "\r\n", i,
                    rep->ip, rep->listening_port, rep->state, rep->ack_offset,
                    (f->now_ms - rep->ack_ms) / 1000);
    }
    const struct history *h = &f->hist;
    sbuf_printf(o,
                "master_failover_state:no-failover\r\n"
                "master_replid:%s\r\n"
                "master_replid2:%s\r\n"
                "master_repl_offset:%" PRId64 "\r\n"
                "second_repl_offset:%" PRId64 "\r\n"
                "repl_backlog_active:%d\r\n"
                "repl_backlog_size:%" PRId64 "\r\n"
                "repl_backlog_first_byte_offset:%" PRId64 "\r\n"
                "repl_backlog_histlen:%zu\r\n",
                h->has_history ? h->replid : HISTORY_NULL_REPLID, h->replid2, f->backlog_end,
                h->second_replid_offset, h->has_history ? 1 : 0, (int64_t)f->backlog_limit,
                f->backlog_start, f->backlog_histlen);
}

/* Who the upstream is, how its full syncs went, what the snapshot is, who is held off. */
static void info_versions(const struct report_facts *f, struct sbuf *o)
{
    const struct report_upstream *u = &f->up;
    const struct compat_identity *id = u->has_identity ? &u->identity : NULL;
    const struct compat_rdb *fmt = &f->snap.format;
    sbuf_printf(o,
                "upstream_server:%s\r\n"
                "upstream_version:%s\r\n"
                "upstream_run_id:%s\r\n"
                "upstream_stalled:%d\r\n"
                "upstream_loops_refused:%" PRId64 "\r\n"
                "upstream_announced_version:%s\r\n"
                "upstream_sync_aborts:%d\r\n"
                "upstream_sync_aborts_total:%" PRId64 "\r\n"
                "upstream_last_sync_abort:%s\r\n"
                "snapshot_rdb_version:%d\r\n"
                "snapshot_rdb_magic:%s\r\n"
                "replicas_refused:%d\r\n",
                id ? compat_server_name(id->server) : "unknown", id ? id->server_version : "",
                id ? id->run_id : "", u->stalled, u->loops_refused,
                u->announced[0] ? u->announced : "none", u->sync_aborts, u->sync_aborts_total,
                u->abort_reason, fmt->version,
                fmt->version ? (fmt->valkey_magic ? "VALKEY" : "REDIS") : "", f->refused_count);
    for (int k = 0; k < f->nrefused; k++) {
        const struct report_refused *m = &f->refused[k];
        int64_t held = m->held_until_ms == INT64_MAX  ? -1
                       : m->held_until_ms > f->now_ms ? (m->held_until_ms - f->now_ms + 999) / 1000
                                                      : 0;
        sbuf_printf(o,
                    "refused%d:ip=%s,port=%d,leaf=%s,rdb_version=%d,held_seconds=%" PRId64
                    ",reason=%s\r\n",
                    k, m->ip, m->port, m->leaf, m->rdb_version, held, m->reason);
    }
}

/* The snapshot and the disk log. */
static void info_holdings(const struct report_facts *f, struct sbuf *o)
{
    const struct report_snapshot *s = &f->snap;
    const struct report_disk *d = &f->disk;
    sbuf_printf(o,
                "# Relay\r\n"
                "upstream_state:%s\r\n"
                "snapshot_state:%s\r\n"
                "snapshot_offset:%" PRId64 "\r\n"
                "snapshot_size:%" PRId64 "\r\n"
                "snapshot_age_seconds:%" PRId64 "\r\n"
                "snapshot_fetch_in_progress:%d\r\n"
                "replicas_waiting_snapshot:%zu\r\n"
                "disk_log_enabled:%d\r\n"
                "disk_log_first_offset:%" PRId64 "\r\n"
                "disk_log_last_offset:%" PRId64 "\r\n"
                "disk_log_bytes:%" PRId64 "\r\n"
                "disk_log_segments:%zu\r\n"
                "disk_log_direct_io:%d\r\n"
                "held_first_offset:%" PRId64 "\r\n",
                f->up.state, s->state, s->present ? s->offset : -1, s->present ? s->size : 0,
                s->present ? (int64_t)(f->now - s->ready_time) : -1, s->fetch_in_progress ? 1 : 0,
                s->replicas_waiting, d->enabled ? 1 : 0, d->present ? d->first : -1,
                d->present ? d->last : -1, d->present ? d->bytes : 0, d->present ? d->segments : 0,
                d->direct_io ? 1 : 0, f->held_first);
}

static void info_relay(const struct report_facts *f, struct sbuf *o)
{
    const struct stats *st = &f->stats;
    const struct report_upstream *u = &f->up;
    info_holdings(f, o);
    sbuf_printf(o,
                "full_syncs_served:%" PRId64 "\r\n"
                "partial_syncs_served:%" PRId64 "\r\n"
                "upstream_full_syncs:%" PRId64 "\r\n"
                "upstream_partial_syncs:%" PRId64 "\r\n"
                "stream_bytes_in:%" PRId64 "\r\n"
                "replica_bytes_out:%" PRId64 "\r\n"
                "commands_forwarded:%" PRId64 "\r\n",
                st->sync_full, st->sync_partial_ok, st->upstream_full_syncs,
                st->upstream_partial_syncs, st->total_net_repl_input_bytes,
                st->total_net_repl_output_bytes, u->commands);
    sbuf_printf(o,
                "upstream_link:%s\r\n"
                "upstream_link_raw_bytes:%" PRId64 "\r\n"
                "upstream_link_wire_bytes:%" PRId64 "\r\n"
                "upstream_link_ratio:%.4f\r\n"
                "upstream_link_heartbeats:%" PRId64 "\r\n",
                u->link_mode, u->link_raw_bytes, u->link_wire_bytes,
                u->link_raw_bytes ? (double)u->link_wire_bytes / (double)u->link_raw_bytes : 0.0,
                u->link_heartbeats);
    info_versions(f, o);
    for (size_t i = 0; i < f->nreplicas; i++) {
        const struct report_replica *rep = &f->replicas[i];
        sbuf_printf(o,
                    "replica%zu:addr=%s,state=%s,lag_bytes=%" PRId64 ",lag_seconds=%" PRId64
                    ",output_bytes=%zu,from_disk_bytes=%" PRId64 ",link=%s,link_raw_bytes=%" PRId64
                    ",link_wire_bytes=%" PRId64 "\r\n",
                    i, rep->peer, rep->state, rep->lag_bytes, (f->now_ms - rep->ack_ms) / 1000,
                    rep->output_bytes, rep->from_disk_bytes, rep->link, rep->link_raw_bytes,
                    rep->link_wire_bytes);
    }
}

struct info_section {
    const char *name;
    void (*fn)(const struct report_facts *f, struct sbuf *o);
    bool by_default;
};

static const struct info_section sections[] = {
    {"server", info_server, true},
    {"clients", info_clients, true},
    {"memory", info_memory, true},
    {"stats", info_stats, true},
    {"replication", info_replication, true},
    {"relay", info_relay, true},
    {NULL, NULL, false},
};

void report_info(const struct report_facts *f, const char *section, struct sbuf *out)
{
    bool all = section[0] == '\0' || strcasecmp(section, "all") == 0 ||
               strcasecmp(section, "everything") == 0 || strcasecmp(section, "default") == 0;
    bool first = true;
    for (const struct info_section *s = sections; s->name; s++) {
        if (all ? !s->by_default : strcasecmp(section, s->name) != 0)
            continue;
        if (!first)
            sbuf_append(out, "\r\n", 2);
        s->fn(f, out);
        first = false;
    }
}

/* ---- ROLE and CLIENT LIST --------------------------------------------------------------- */

static const char *role_state_name(enum report_role_state s)
{
    switch (s) {
    case REPORT_ROLE_CONNECTED:
        return "connected";
    case REPORT_ROLE_SYNC:
        return "sync";
    case REPORT_ROLE_CONNECTING:
        return "connecting";
    case REPORT_ROLE_CONNECT:
        break;
    }
    return "connect";
}

void report_role(const struct report_facts *f, struct sbuf *out)
{
    const char *state = role_state_name(f->up.role);
    const char *host = f->up.host;
    sbuf_printf(out, "*5\r\n$5\r\nslave\r\n$%zu\r\n%s\r\n:%d\r\n$%zu\r\n%s\r\n:%" PRId64 "\r\n",
                strlen(host), host, f->up.port, strlen(state), state, f->backlog_end);
}

void report_client_list(const struct report_facts *f, struct sbuf *out)
{
    for (size_t i = 0; i < f->nreplicas; i++) {
        const struct report_replica *rep = &f->replicas[i];
        sbuf_printf(out,
                    "id=%" PRIu64 " addr=%s laddr=- fd=-1 name= age=%" PRId64 " idle=%" PRId64
                    " flags=S db=0 sub=0 psub=0 multi=-1 qbuf=0 obl=0 oll=0 omem=%zu cmd=%s\n",
                    rep->id, rep->peer, (f->now_ms - rep->created_ms) / 1000,
                    (f->now_ms - rep->ack_ms) / 1000, rep->output_bytes,
                    rep->plain_sync ? "sync" : "psync");
    }
}

/* ---- Prometheus ------------------------------------------------------------------------- */

void report_metrics_family(struct sbuf *out, const char *name, const char *type, const char *help)
{
    sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void report_metrics_sample(struct sbuf *out, const char *name, const char *labels, double value)
{
    /* Integers (offsets, bytes, counts) exactly; fractions (seconds) to the millisecond. */
    char num[64];
    if (value == floor(value) && fabs(value) < 9e15)
        snprintf(num, sizeof(num), "%.0f", value);
    else
        snprintf(num, sizeof(num), "%.3f", value);
    if (labels && labels[0])
        sbuf_printf(out, "%s{%s} %s\n", name, labels, num);
    else
        sbuf_printf(out, "%s %s\n", name, num);
}

static void gauge(struct sbuf *o, const char *name, const char *help, double v)
{
    report_metrics_family(o, name, "gauge", help);
    report_metrics_sample(o, name, NULL, v);
}

static void counter(struct sbuf *o, const char *name, const char *help, double v)
{
    report_metrics_family(o, name, "counter", help);
    report_metrics_sample(o, name, NULL, v);
}

/* The link, the stream's range and what is held. */
static void metrics_holdings(const struct report_facts *f, struct sbuf *o)
{
    const struct report_upstream *u = &f->up;
    const struct report_snapshot *s = &f->snap;
    gauge(o, "cascade_upstream_link_up", "1 while the upstream link is streaming", u->link_up);
    gauge(o, "cascade_upstream_last_io_seconds", "seconds since the upstream last sent a byte",
          u->last_io_ms ? (double)(f->now_ms - u->last_io_ms) / 1000 : -1);
    gauge(o, "cascade_upstream_down_seconds", "seconds the upstream link has been down (0: up)",
          u->link_up ? 0 : (double)(f->now_ms - u->down_since_ms) / 1000);
    gauge(o, "cascade_repl_offset_bytes", "offset of the last stream byte held",
          (double)f->backlog_end);
    gauge(o, "cascade_held_first_offset_bytes", "first stream offset held (memory or disk)",
          (double)f->held_first);
    gauge(o, "cascade_backlog_first_offset_bytes", "first stream offset held in memory",
          (double)f->backlog_start);
    gauge(o, "cascade_backlog_memory_bytes", "memory held by the in-memory backlog",
          (double)f->backlog_memory);
    gauge(o, "cascade_disk_log_bytes", "bytes in disk log segments",
          f->disk.present ? (double)f->disk.bytes : 0);
    gauge(o, "cascade_disk_log_segments", "disk log segment files",
          f->disk.present ? (double)f->disk.segments : 0);
    gauge(o, "cascade_snapshot_offset_bytes", "stream offset of the cached snapshot (-1: none)",
          s->present ? (double)s->offset : -1);
    gauge(o, "cascade_snapshot_size_bytes", "size of the cached snapshot",
          s->present ? (double)s->size : 0);
    gauge(o, "cascade_snapshot_age_seconds", "age of the cached snapshot (-1: none)",
          s->present ? (double)(f->now - s->ready_time) : -1);
}

static void metrics_replicas(const struct report_facts *f, struct sbuf *o)
{
    static const struct {
        const char *name, *help;
    } fams[] = {
        {"cascade_replica_lag_bytes", "stream bytes a replica is behind"},
        {"cascade_replica_lag_seconds", "seconds since a replica's last ACK"},
        {"cascade_replica_output_bytes", "bytes queued to a replica's socket"},
        {"cascade_replica_acked_offset_bytes", "last offset a replica acknowledged"},
        {"cascade_replica_link_raw_bytes", "bytes framed to a cascade replica, before framing"},
        {"cascade_replica_link_wire_bytes", "framed bytes to a cascade replica, on the wire"},
    };
    for (size_t k = 0; k < sizeof(fams) / sizeof(fams[0]); k++) {
        report_metrics_family(o, fams[k].name, "gauge", fams[k].help);
        for (size_t i = 0; i < f->nreplicas; i++) {
            const struct report_replica *rep = &f->replicas[i];
            char labels[160];
            snprintf(labels, sizeof(labels), "addr=\"%s\",port=\"%d\",state=\"%s\"", rep->peer,
                     rep->listening_port, rep->state);
            double v = k == 0   ? (double)rep->lag_bytes
                       : k == 1 ? (double)(f->now_ms - rep->ack_ms) / 1000
                       : k == 2 ? (double)rep->output_bytes
                       : k == 3 ? (double)rep->ack_offset
                       : k == 4 ? (double)rep->link_raw_bytes
                                : (double)rep->link_wire_bytes;
            report_metrics_sample(o, fams[k].name, labels, v);
        }
    }
}

void report_metrics(const struct report_facts *f, struct sbuf *o)
{
    const struct report_upstream *u = &f->up;
    metrics_holdings(f, o);
    gauge(o, "cascade_replicas", "replica sessions", (double)f->replicas_live);
    gauge(o, "cascade_clients", "plain client connections", (double)f->clients);
    gauge(o, "cascade_memory_rss_bytes", "resident set size", (double)f->proc.rss_bytes);
    gauge(o, "cascade_upstream_sync_aborts",
          "full syncs the upstream aborted right after +FULLRESYNC, in a row", u->sync_aborts);
    counter(o, "cascade_upstream_sync_aborts_total",
            "full syncs the upstream aborted right after +FULLRESYNC",
            (double)u->sync_aborts_total);
    gauge(o, "cascade_replicas_refused", "replicas held off: they cannot load the snapshot",
          f->refused_count);
    gauge(o, "cascade_snapshot_rdb_version", "RDB version of the cached snapshot (0: none)",
          f->snap.format.version);
    counter(o, "cascade_commands_forwarded_total",
            "stream commands received from the upstream and forwarded", (double)u->commands);
    counter(o, "cascade_upstream_link_raw_bytes_total",
            "bytes a framed upstream link carried, before framing (decoded)",
            (double)u->link_raw_bytes);
    counter(o, "cascade_upstream_link_wire_bytes_total",
            "bytes a framed upstream link carried on the wire", (double)u->link_wire_bytes);
    stats_metrics(&f->stats, o);
    metrics_replicas(f, o);
}
