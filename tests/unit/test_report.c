/*
 * Unit tests for report.c: INFO, ROLE, CLIENT LIST and the metrics text rendered from a facts
 * struct built by hand. They pin Redis' field names and formats (what Sentinel, exporters and
 * replicas parse) byte for byte, and the relay's own fields where tools and docs rely on them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "report.h"

#define REPLID_A "8de9a1ac0c5f32ad2b9c91a2e7d1c3b4a5f6e7d8"
#define REPLID_B "17c0ffee17c0ffee17c0ffee17c0ffee17c0ffee"
#define NOW_MS   INT64_C(1000000)

/* Two online replicas, a streaming upstream, a history with a previous id. */
static void facts_of(struct report_facts *f)
{
    memset(f, 0, sizeof(*f));
    f->now_ms = NOW_MS;
    f->now = 5000;
    snprintf(f->proc.sysname, sizeof(f->proc.sysname), "Linux");
    snprintf(f->proc.release, sizeof(f->proc.release), "6.1.0");
    snprintf(f->proc.machine, sizeof(f->proc.machine), "x86_64");
    f->proc.arch_bits = 64;
    f->proc.pid = 4242;
    f->proc.rss_bytes = 3 << 20;
    f->start_ms = NOW_MS - 2 * 86400 * 1000 - 5000;
    memset(f->run_id, 'e', RESP_RUN_ID_LEN);
    f->tcp_port = 6380;
    snprintf(f->config_file, sizeof(f->config_file), "/etc/cascade.ini");
    f->clients = 3;
    f->maxclients = 10000;
    f->client_memory = 17;
    f->stats.sync_full = 4;
    f->stats.total_net_repl_input_bytes = 1000;
    history_init(&f->hist);
    history_start(&f->hist, REPLID_B);
    history_shift(&f->hist, REPLID_A, 500);
    f->backlog_start = 101;
    f->backlog_end = 1000;
    f->backlog_histlen = 900;
    f->backlog_memory = 1536;
    f->backlog_limit = 1 << 20;
    f->held_first = 1;
    struct report_upstream *u = &f->up;
    snprintf(u->host, sizeof(u->host), "10.0.0.1");
    u->port = 6379;
    u->state = "stream";
    u->role = REPORT_ROLE_CONNECTED;
    u->link_up = true;
    u->last_io_ms = NOW_MS - 2500;
    u->link_mode = "plain";
    u->commands = 77;
    u->has_identity = true;
    u->identity.server = COMPAT_REDIS;
    snprintf(u->identity.redis_version, sizeof(u->identity.redis_version), "7.2.4");
    snprintf(u->identity.server_version, sizeof(u->identity.server_version), "7.2.4");
    memset(u->identity.run_id, 'a', RESP_RUN_ID_LEN);
    f->has_identity = true;
    f->identity = u->identity;
    f->snap = (struct report_snapshot){.present = true,
                                       .state = "ready",
                                       .offset = 400,
                                       .size = 2048,
                                       .ready_time = 4990,
                                       .format = {.version = 11}};
    f->disk = (struct report_disk){
        .present = true, .enabled = true, .first = 1, .last = 1000, .bytes = 1000, .segments = 2};
    f->replicas_live = 2;
    for (int i = 0; i < 2; i++) {
        struct report_replica *r = report_add_replica(f);
        r->id = 10 + (uint64_t)i;
        snprintf(r->peer, sizeof(r->peer), "127.0.0.1:%d", 50000 + i);
        snprintf(r->ip, sizeof(r->ip), "10.1.0.%d", i + 1);
        r->listening_port = 7000 + i;
        r->state = "online";
        r->created_ms = NOW_MS - 61000;
        r->ack_ms = NOW_MS - 1000 * i;
        r->ack_offset = 990 + i;
        r->lag_bytes = 10 - i;
        r->output_bytes = 100 * (size_t)i;
        r->link = "plain";
    }
}

/* t begins with want. */
static void assert_prefix(const char *t, const char *want)
{
    if (strncmp(t, want, strlen(want)) != 0)
        fail_msg("got:\n%.*s\nwant:\n%s", (int)strlen(want), t, want);
}

static char *render_info(const struct report_facts *f, const char *section, struct sbuf *s)
{
    memset(s, 0, sizeof(*s));
    report_info(f, section, s);
    return s->buf ? s->buf : "";
}

static void test_replication_section(void **state)
{
    (void)state;
    struct report_facts f;
    facts_of(&f);
    struct sbuf s;
    assert_string_equal(render_info(&f, "replication", &s),
                        "# Replication\r\n"
                        "role:slave\r\n"
                        "master_host:10.0.0.1\r\n"
                        "master_port:6379\r\n"
                        "master_link_status:up\r\n"
                        "master_last_io_seconds_ago:2\r\n"
                        "master_sync_in_progress:0\r\n"
                        "slave_read_repl_offset:1000\r\n"
                        "slave_repl_offset:1000\r\n"
                        "slave_priority:0\r\n"
                        "slave_read_only:1\r\n"
                        "replica_announced:0\r\n"
                        "connected_slaves:2\r\n"
                        "slave0:ip=10.1.0.1,port=7000,state=online,offset=990,lag=0\r\n"
                        "slave1:ip=10.1.0.2,port=7001,state=online,offset=991,lag=1\r\n"
                        "master_failover_state:no-failover\r\n"
                        "master_replid:" REPLID_A "\r\n"
                        "master_replid2:" REPLID_B "\r\n"
                        "master_repl_offset:1000\r\n"
                        "second_repl_offset:501\r\n"
                        "repl_backlog_active:1\r\n"
                        "repl_backlog_size:1048576\r\n"
                        "repl_backlog_first_byte_offset:101\r\n"
                        "repl_backlog_histlen:900\r\n");
    sbuf_free(&s);
    report_facts_deinit(&f);
}

/* A link that is down, or syncing, or stalled, reads as Redis' replica in that state does. */
static void test_replication_link_states(void **state)
{
    (void)state;
    struct report_facts f;
    facts_of(&f);
    f.up.link_up = false;
    f.up.syncing = true;
    f.up.rdb_size = 5000;
    f.up.rdb_bytes = 1200;
    f.up.last_io_ms = 0;
    f.up.down_since_ms = NOW_MS - 7900;
    history_init(&f.hist);
    struct sbuf s;
    const char *t = render_info(&f, "replication", &s);
    assert_non_null(strstr(t, "\r\nmaster_link_status:down\r\n"
                              "master_last_io_seconds_ago:-1\r\n"
                              "master_sync_in_progress:1\r\n"));
    assert_non_null(strstr(t, "\r\nslave_repl_offset:1000\r\n"
                              "master_sync_total_bytes:5000\r\n"
                              "master_sync_read_bytes:1200\r\n"
                              "master_link_down_since_seconds:7\r\n"
                              "slave_priority:0\r\n"));
    assert_non_null(strstr(t, "\r\nmaster_replid:" HISTORY_NULL_REPLID "\r\n"
                              "master_replid2:" HISTORY_NULL_REPLID "\r\n"));
    assert_non_null(strstr(t, "\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\n"));
    sbuf_free(&s);
    /* streaming but stalled: never shown as up, and no "down since" (the link is up) */
    report_facts_deinit(&f);
    facts_of(&f);
    f.up.stalled = true;
    t = render_info(&f, "replication", &s);
    assert_non_null(strstr(t, "\r\nmaster_link_status:down\r\n"));
    assert_null(strstr(t, "master_link_down_since_seconds"));
    assert_null(strstr(t, "master_sync_total_bytes"));
    sbuf_free(&s);
    report_facts_deinit(&f);
}

static void test_sections(void **state)
{
    (void)state;
    struct report_facts f;
    facts_of(&f);
    static const char *const all[] = {"", "all", "ALL", "default", "everything"};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        struct sbuf s;
        const char *t = render_info(&f, all[i], &s);
        const char *heads[] = {
            "# Server\r\n",        "\r\n\r\n# Clients\r\n",     "\r\n\r\n# Memory\r\n",
            "\r\n\r\n# Stats\r\n", "\r\n\r\n# Replication\r\n", "\r\n\r\n# Relay\r\n"};
        assert_prefix(t, heads[0]);
        const char *at = t;
        for (size_t k = 1; k < sizeof(heads) / sizeof(heads[0]); k++) {
            const char *next = strstr(at, heads[k]);
            assert_non_null(next); /* present, and after the previous one */
            at = next + 1;
        }
        sbuf_free(&s);
    }
    struct sbuf s;
    const char *t = render_info(&f, "RePlIcAtIoN", &s);
    assert_prefix(t, "# Replication\r\n");
    assert_null(strstr(t, "# Server"));
    sbuf_free(&s);
    t = render_info(&f, "bogus", &s);
    assert_string_equal(t, "");
    sbuf_free(&s);
    report_facts_deinit(&f);
}

static void test_server_clients_memory(void **state)
{
    (void)state;
    struct report_facts f;
    facts_of(&f);
    struct sbuf s;
    char want[1024];
    snprintf(want, sizeof(want),
             "# Server\r\nredis_version:7.2.4\r\ncascade_version:%s\r\nredis_mode:standalone\r\n"
             "os:Linux 6.1.0 x86_64\r\narch_bits:64\r\nmultiplexing_api:libevent\r\n"
             "process_id:4242\r\nrun_id:%s\r\ncascade_chain:%s\r\ntcp_port:6380\r\n"
             "uptime_in_seconds:172805\r\nuptime_in_days:2\r\nconfig_file:/etc/cascade.ini\r\n",
             CASCADE_VERSION, f.run_id, f.up.identity.run_id);
    assert_string_equal(render_info(&f, "server", &s), want);
    sbuf_free(&s);
    /* nothing known of the upstream: Redis 7.0's version, no chain; Valkey adds its fields */
    f.has_identity = f.up.has_identity = false;
    assert_non_null(strstr(render_info(&f, "server", &s), "redis_version:7.0.15\r\n"
                                                          "cascade_version:"));
    assert_non_null(strstr(s.buf, "\r\ncascade_chain:\r\n"));
    sbuf_free(&s);
    f.has_identity = true;
    f.identity.server = COMPAT_VALKEY;
    snprintf(f.identity.server_version, sizeof(f.identity.server_version), "8.1.1");
    assert_non_null(strstr(render_info(&f, "server", &s),
                           "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.1\r\n"
                           "cascade_version:"));
    sbuf_free(&s);
    assert_string_equal(render_info(&f, "clients", &s),
                        "# Clients\r\nconnected_clients:5\r\nmaxclients:10000\r\n"
                        "blocked_clients:0\r\n");
    sbuf_free(&s);
    assert_string_equal(render_info(&f, "memory", &s),
                        "# Memory\r\nused_memory:1536\r\nused_memory_human:1.50K\r\n"
                        "used_memory_rss:3145728\r\nused_memory_rss_human:3.00M\r\n"
                        "mem_replication_backlog:1536\r\nmem_clients_slaves:100\r\n"
                        "mem_clients_normal:17\r\nmaxmemory:0\r\n");
    sbuf_free(&s);
    const char *t = render_info(&f, "stats", &s);
    assert_prefix(t, "# Stats\r\ntotal_connections_received:0\r\n");
    assert_non_null(strstr(t, "\r\nsync_full:4\r\n"));
    assert_non_null(strstr(t, "\r\ntotal_forks:0\r\n"));
    sbuf_free(&s);
    report_facts_deinit(&f);
}

static void test_relay_section(void **state)
{
    (void)state;
    struct report_facts f;
    facts_of(&f);
    f.up.link_mode = "zstd";
    f.up.link_raw_bytes = 1000;
    f.up.link_wire_bytes = 250;
    f.up.link_heartbeats = 3;
    f.replicas[1].link = "raw";
    f.replicas[1].link_raw_bytes = 90;
    f.replicas[1].link_wire_bytes = 95;
    f.replicas[1].from_disk_bytes = 12;
    f.refused_count = 1;
    f.nrefused = 1;
    f.refused[0] = (struct report_refused){.ip = "10.9.0.1",
                                           .port = 6390,
                                           .leaf = "redis 7.0.15",
                                           .rdb_version = 11,
                                           .held_until_ms = NOW_MS + 1001,
                                           .reason = "announced version"};
    struct sbuf s;
    const char *t = render_info(&f, "relay", &s);
    assert_prefix(t, "# Relay\r\nupstream_state:stream\r\nsnapshot_state:ready\r\n"
                     "snapshot_offset:400\r\nsnapshot_size:2048\r\n"
                     "snapshot_age_seconds:10\r\nsnapshot_fetch_in_progress:0\r\n"
                     "replicas_waiting_snapshot:0\r\ndisk_log_enabled:1\r\n"
                     "disk_log_first_offset:1\r\ndisk_log_last_offset:1000\r\n"
                     "disk_log_bytes:1000\r\ndisk_log_segments:2\r\n"
                     "disk_log_direct_io:0\r\nheld_first_offset:1\r\n"
                     "full_syncs_served:4\r\n");
    assert_non_null(strstr(t, "\r\nstream_bytes_in:1000\r\nreplica_bytes_out:0\r\n"
                              "commands_forwarded:77\r\nupstream_link:zstd\r\n"
                              "upstream_link_raw_bytes:1000\r\nupstream_link_wire_bytes:250\r\n"
                              "upstream_link_ratio:0.2500\r\nupstream_link_heartbeats:3\r\n"
                              "upstream_server:redis\r\nupstream_version:7.2.4\r\n"));
    assert_non_null(strstr(t, "\r\nupstream_announced_version:none\r\n"));
    assert_non_null(strstr(t, "\r\nsnapshot_rdb_version:11\r\nsnapshot_rdb_magic:REDIS\r\n"
                              "replicas_refused:1\r\n"
                              "refused0:ip=10.9.0.1,port=6390,leaf=redis 7.0.15,rdb_version=11,"
                              "held_seconds=2,reason=announced version\r\n"
                              "replica0:addr=127.0.0.1:50000,state=online,lag_bytes=10,"
                              "lag_seconds=0,output_bytes=0,from_disk_bytes=0,link=plain,"
                              "link_raw_bytes=0,link_wire_bytes=0\r\n"
                              "replica1:addr=127.0.0.1:50001,state=online,lag_bytes=9,"
                              "lag_seconds=1,output_bytes=100,from_disk_bytes=12,link=raw,"
                              "link_raw_bytes=90,link_wire_bytes=95\r\n"));
    sbuf_free(&s);
    /* no snapshot, no disk log, no upstream identity */
    f.snap = (struct report_snapshot){.state = "empty"};
    f.disk = (struct report_disk){0};
    f.up.has_identity = false;
    f.refused[0].held_until_ms = INT64_MAX;
    t = render_info(&f, "relay", &s);
    assert_non_null(strstr(t, "\r\nsnapshot_state:empty\r\nsnapshot_offset:-1\r\n"
                              "snapshot_size:0\r\nsnapshot_age_seconds:-1\r\n"));
    assert_non_null(strstr(t, "\r\ndisk_log_enabled:0\r\ndisk_log_first_offset:-1\r\n"
                              "disk_log_last_offset:-1\r\ndisk_log_bytes:0\r\n"
                              "disk_log_segments:0\r\n"));
    assert_non_null(strstr(t, "\r\nupstream_server:unknown\r\nupstream_version:\r\n"
                              "upstream_run_id:\r\n"));
    assert_non_null(strstr(t, ",held_seconds=-1,"));
    sbuf_free(&s);
    report_facts_deinit(&f);
}

static void test_role(void **state)
{
    (void)state;
    struct report_facts f;
    facts_of(&f);
    static const struct {
        enum report_role_state st;
        const char *want;
    } cases[] = {
        {REPORT_ROLE_CONNECTED,
         "*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1000\r\n"},
        {REPORT_ROLE_SYNC,
         "*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.1\r\n:6379\r\n$4\r\nsync\r\n:1000\r\n"},
        {REPORT_ROLE_CONNECTING,
         "*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.1\r\n:6379\r\n$10\r\nconnecting\r\n:1000\r\n"},
        {REPORT_ROLE_CONNECT,
         "*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.1\r\n:6379\r\n$7\r\nconnect\r\n:1000\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f.up.role = cases[i].st;
        struct sbuf s = {0};
        report_role(&f, &s);
        assert_string_equal(s.buf, cases[i].want);
        sbuf_free(&s);
    }
    /* no upstream configured yet: an empty host */
    f.up.host[0] = '\0';
    f.up.port = 0;
    struct sbuf s = {0};
    report_role(&f, &s);
    assert_string_equal(s.buf, "*5\r\n$5\r\nslave\r\n$0\r\n\r\n:0\r\n$7\r\nconnect\r\n:1000\r\n");
    sbuf_free(&s);
    report_facts_deinit(&f);
}

static void test_client_list(void **state)
{
    (void)state;
    struct report_facts f;
    facts_of(&f);
    f.replicas[1].plain_sync = true;
    struct sbuf s = {0};
    report_client_list(&f, &s);
    assert_string_equal(s.buf,
                        "id=10 addr=127.0.0.1:50000 laddr=- fd=-1 name= age=61 idle=0 flags=S "
                        "db=0 sub=0 psub=0 multi=-1 qbuf=0 obl=0 oll=0 omem=0 cmd=psync\n"
                        "id=11 addr=127.0.0.1:50001 laddr=- fd=-1 name= age=61 idle=1 flags=S "
                        "db=0 sub=0 psub=0 multi=-1 qbuf=0 obl=0 oll=0 omem=100 cmd=sync\n");
    sbuf_free(&s);
    report_facts_deinit(&f);
    /* no replicas: nothing */
    facts_of(&f);
    report_facts_deinit(&f);
    report_client_list(&f, &s);
    assert_null(s.buf);
}

static void test_metrics_text(void **state)
{
    (void)state;
    struct sbuf s = {0};
    report_metrics_family(&s, "cascade_x_bytes", "gauge", "what x is");
    report_metrics_sample(&s, "cascade_x_bytes", NULL, 5);
    report_metrics_sample(&s, "cascade_x_bytes", "", -1);
    report_metrics_sample(&s, "cascade_x_bytes", "addr=\"a\"", 1.5);
    report_metrics_sample(&s, "cascade_x_bytes", NULL, 1e16);
    report_metrics_sample(&s, "cascade_x_bytes", NULL, 9007199254740991.0);
    assert_string_equal(s.buf, "# HELP cascade_x_bytes what x is\n"
                               "# TYPE cascade_x_bytes gauge\n"
                               "cascade_x_bytes 5\n"
                               "cascade_x_bytes -1\n"
                               "cascade_x_bytes{addr=\"a\"} 1.500\n"
                               "cascade_x_bytes 10000000000000000.000\n"
                               "cascade_x_bytes 9007199254740991.000\n");
    sbuf_free(&s);
    struct report_facts f;
    facts_of(&f);
    report_metrics(&f, &s);
    const char *t = s.buf;
    assert_prefix(t, "# HELP cascade_upstream_link_up 1 while the upstream link is "
                     "streaming\n# TYPE cascade_upstream_link_up gauge\n"
                     "cascade_upstream_link_up 1\n");
    assert_non_null(strstr(t, "\ncascade_upstream_last_io_seconds 2.500\n"));
    assert_non_null(strstr(t, "\ncascade_upstream_down_seconds 0\n"));
    assert_non_null(strstr(t, "\ncascade_repl_offset_bytes 1000\n"));
    assert_non_null(strstr(t, "\ncascade_snapshot_age_seconds 10\n"));
    assert_non_null(strstr(t, "\ncascade_replicas 2\n"));
    assert_non_null(strstr(t, "\ncascade_memory_rss_bytes 3145728\n"));
    assert_non_null(strstr(t, "# TYPE cascade_commands_forwarded_total counter\n"
                              "cascade_commands_forwarded_total 77\n"));
    assert_non_null(strstr(t, "# TYPE cascade_full_syncs_served_total counter\n"
                              "cascade_full_syncs_served_total 4\n"));
    assert_non_null(strstr(t, "# HELP cascade_replica_lag_bytes stream bytes a replica is behind\n"
                              "# TYPE cascade_replica_lag_bytes gauge\n"
                              "cascade_replica_lag_bytes{addr=\"127.0.0.1:50000\",port=\"7000\","
                              "state=\"online\"} 10\n"
                              "cascade_replica_lag_bytes{addr=\"127.0.0.1:50001\",port=\"7001\","
                              "state=\"online\"} 9\n"));
    assert_non_null(strstr(t, "cascade_replica_acked_offset_bytes{addr=\"127.0.0.1:50001\","
                              "port=\"7001\",state=\"online\"} 991\n"));
    /* every line is a comment or "name[{labels}] value" */
    for (const char *p = t; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_true(p[0] == '#' || strncmp(p, "cascade_", 8) == 0);
        p = nl + 1;
    }
    sbuf_free(&s);
    report_facts_deinit(&f);
}

static void test_process_and_rows(void **state)
{
    (void)state;
    struct report_process p;
    memset(&p, 0, sizeof(p));
    report_process(&p);
    assert_int_equal(p.pid, (int)getpid());
    assert_int_equal(p.arch_bits, (int)(sizeof(long) * 8));
    assert_true(p.rss_bytes > 0);
    assert_true(p.sysname[0] != '\0');
    struct report_facts f;
    memset(&f, 0, sizeof(f));
    for (int i = 0; i < 100; i++)
        report_add_replica(&f)->id = (uint64_t)i;
    assert_int_equal(f.nreplicas, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(f.replicas[i].id, i);
    assert_string_equal(f.replicas[99].peer, "");
    report_facts_deinit(&f);
    assert_null(f.replicas);
    assert_int_equal(f.nreplicas, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replication_section),
        cmocka_unit_test(test_replication_link_states),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_server_clients_memory),
        cmocka_unit_test(test_relay_section),
        cmocka_unit_test(test_role),
        cmocka_unit_test(test_client_list),
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_process_and_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
