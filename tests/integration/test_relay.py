"""End-to-end tests: stock redis-server masters and replicas around the cascade relay.

Each scenario compares the DEBUG DIGEST of every replica with the master's after writes stop (and
the replication offsets: the relay is transparent, so every node of the tree ends on the master's
offset). With HOP=redis the relay hops are stock `redis-server --replicaof` processes; tests of
relay-only behaviour are then skipped.
"""

import os
import re
import subprocess
import types
import uuid

import pytest

import harness as h
from harness import (digest, preload, raw_exchange, repl_offset, wait_connected_slaves,
                     wait_digests_equal, wait_for, wait_link_up, wait_replica_synced)

EMPTY_DIGEST = "0" * 40


def converge(master, leaves, hops=(), timeout=h.SYNC_TIMEOUT_S):
    """Digests of the leaves (and of stock-Redis hops) equal the master's; offsets of everything
    equal the master's. Returns the digest, which must not be the empty one."""
    data = list(leaves) + [x for x in hops if x.has_data]
    relays = [x for x in hops if not x.has_data]
    d = wait_digests_equal(master, data, relays=relays, timeout=timeout)
    assert d != EMPTY_DIGEST, "dataset unexpectedly empty"
    return d


def stat(node, field, section="stats"):
    return int(node.info(section)[field])


def assert_alive(*nodes):
    for n in nodes:
        assert n.alive(), "%s died:\n%s" % (n.name, n.describe())


# ------------------------------------------------------------------------------------------------
# 1. full sync


@pytest.mark.hop
def test_full_sync_mixed_types(cluster):
    m = cluster.master()
    dbs = (0, 3, 9)
    preload(m.port, dbs=dbs, keys_per_db=1500)
    with cluster.writer(m, dbs=dbs) as w:
        w.wait_count(200)
        hop = cluster.hop(m)  # the relay's first sync happens while writes go on
        w.wait_count(200)
        r1 = cluster.replica(hop, "r1")
        w.wait_count(500)
        r2 = cluster.replica(hop, "r2")
        w.wait_count(300)
    converge(m, [r1, r2], [hop])
    for db in dbs:
        n = m.client(db=db).dbsize()
        assert n > 1000
        # keys with short TTLs expire on the master first; the DEL reaches r1 a moment later
        wait_for(lambda: r1.client(db=db).dbsize() == m.client(db=db).dbsize(), 10,
                 "r1 dbsize of db %d to match the master's" % db)
    # every type made it across
    types_seen = {r1.client(db=3).type(k) for k in r1.client(db=3).scan_iter(count=1000)}
    assert {"string", "hash", "list", "set", "zset", "stream"} <= types_seen
    assert r1.client(db=9).ttl("t:pre:9:6") > 0
    assert_alive(hop)


# ------------------------------------------------------------------------------------------------
# 2. attach mid-stream with SELECTs in the stream


@pytest.mark.hop
def test_attach_mid_stream_alternating_dbs(cluster):
    m = cluster.master()
    hop = cluster.hop(m)
    r0 = cluster.replica(hop, "r0")  # attached before any write
    # op i goes to dbs[i % 5]: the master's stream carries a SELECT before nearly every command
    with cluster.writer(m, dbs=(0, 1, 2, 5, 15), rate=3000) as w:
        w.wait_count(1500)
        r1 = cluster.replica(hop, "r1")  # attached mid-stream
        w.wait_count(1500)
        r2 = cluster.replica(hop, "r2")
        w.wait_count(1000)
    converge(m, [r0, r1, r2], [hop])
    for db in (0, 1, 2, 5, 15):
        assert m.client(db=db).dbsize() > 0
        # keys with short TTLs expire on the master first; the DEL reaches r1 a moment later
        wait_for(lambda: r1.client(db=db).dbsize() == m.client(db=db).dbsize(), 10,
                 "r1 dbsize of db %d to match the master's" % db)


# ------------------------------------------------------------------------------------------------
# 3. two relays deep


@pytest.mark.hop
def test_two_relays_deep(cluster):
    m = cluster.master()
    preload(m.port, dbs=(0, 4), keys_per_db=1000)
    with cluster.writer(m, dbs=(0, 4)) as w:
        h1 = cluster.hop(m, "hop1")
        h2 = cluster.hop(h1, "hop2")
        r1 = cluster.replica(h1, "r1")
        w.wait_count(500)
        r2 = cluster.replica(h2, "r2")
        w.wait_count(500)
        r3 = cluster.replica(h2, "r3")
        w.wait_count(500)
    converge(m, [r1, r2, r3], [h1, h2])
    if not h1.has_data:
        # transparent relays: the master's replication id all the way down
        mid = m.info("replication")["master_replid"]
        for n in (h1, h2, r1, r2, r3):
            assert n.info("replication")["master_replid"] == mid, n.name


# ------------------------------------------------------------------------------------------------
# 4. late joiners do not fork the master


@pytest.mark.hop
def test_late_joiners_no_new_fork_on_master(cluster):
    m = cluster.master()
    preload(m.port, dbs=(0, 2), keys_per_db=1500)
    hop = cluster.hop(m)
    ra = cluster.replica(hop, "rA")
    converge(m, [ra], [hop])
    base_full = stat(m, "sync_full")
    base_forks = stat(m, "total_forks")
    base_changes = stat(m, "rdb_changes_since_last_save", "persistence")
    base_bgsave = m.info("persistence").get("rdb_last_bgsave_status")
    with cluster.writer(m, dbs=(0, 2)) as w:
        w.wait_count(500)
        rb = cluster.replica(hop, "rB")
        w.wait_count(500)
        rc = cluster.replica(hop, "rC")
        w.wait_count(300)
    converge(m, [ra, rb, rc], [hop])
    assert stat(m, "sync_full") == base_full, "master did a full sync for a late joiner"
    assert stat(m, "total_forks") == base_forks, "master forked for a late joiner"
    # writes happened, and no save reset the counter
    assert stat(m, "rdb_changes_since_last_save", "persistence") > base_changes
    assert m.info("persistence").get("rdb_last_bgsave_status") == base_bgsave
    assert int(m.info("replication")["connected_slaves"]) == 1
    wait_connected_slaves(hop, 3)


# ------------------------------------------------------------------------------------------------
# 5. a replica's link killed: partial resync from the relay


@pytest.mark.hop
def test_replica_partial_resync_after_link_kill(cluster):
    m = cluster.master()
    preload(m.port, dbs=(0, 1), keys_per_db=800)
    hop = cluster.hop(m)
    r = cluster.replica(hop, "r")
    other = cluster.replica(hop, "other")
    with cluster.writer(m, dbs=(0, 1)) as w:
        w.wait_count(300)
        for round_ in range(2):
            base_ok = stat(hop, "sync_partial_ok")
            base_full = stat(hop, "sync_full")
            base_log_full = r.full_syncs_in_log()
            base_log_partial = r.partial_syncs_in_log()
            killed = r.r.execute_command("CLIENT", "KILL", "TYPE", "master")
            assert int(killed) == 1
            w.wait_count(200)  # writes while the replica is away
            wait_for(lambda: stat(hop, "sync_partial_ok") > base_ok, 15,
                     "relay sync_partial_ok to increase (round %d)" % round_,
                     describe=lambda: "relay stats %r\n%s" % (hop.info("stats"),
                                                               cluster.describe()))
            wait_replica_synced(r)
            assert stat(hop, "sync_full") == base_full, "replica was full-synced"
            assert r.full_syncs_in_log() == base_log_full
            assert r.partial_syncs_in_log() == base_log_partial + 1
            w.wait_count(200)
    converge(m, [r, other], [hop])
    assert stat(hop, "sync_partial_err") == 0


# ------------------------------------------------------------------------------------------------
# 6. the relay's upstream link killed on the master


@pytest.mark.hop
def test_upstream_link_kill_partial_resync(cluster):
    m = cluster.master()
    preload(m.port, dbs=(0, 6), keys_per_db=800)
    hop = cluster.hop(m)
    r1 = cluster.replica(hop, "r1")
    r2 = cluster.replica(hop, "r2")
    with cluster.writer(m, dbs=(0, 6)) as w:
        w.wait_count(300)
        for round_ in range(2):
            base_ok = stat(m, "sync_partial_ok")
            base_full = stat(m, "sync_full")
            base_hop_full = stat(hop, "sync_full")
            base_logs = [r.full_syncs_in_log() for r in (r1, r2)]
            killed = m.r.execute_command("CLIENT", "KILL", "TYPE", "replica")
            assert int(killed) == 1
            w.wait_count(200)  # writes while the relay is away
            wait_for(lambda: stat(m, "sync_partial_ok") >= base_ok + 1, 15,
                     "master sync_partial_ok to increase (round %d)" % round_,
                     describe=cluster.describe)
            wait_link_up(hop)
            assert stat(m, "sync_full") == base_full, "relay full-synced from the master"
            assert stat(hop, "sync_full") == base_hop_full, "a downstream replica full-synced"
            assert [r.full_syncs_in_log() for r in (r1, r2)] == base_logs
            w.wait_count(200)
    converge(m, [r1, r2], [hop])
    assert int(m.info("replication")["connected_slaves"]) == 1


# ------------------------------------------------------------------------------------------------
# 7. redis-cli --rdb and --replica through the relay


@pytest.mark.hop
def test_redis_cli_rdb_and_replica(cluster, tmp_path):
    m = cluster.master()
    preload(m.port, dbs=(0, 5), keys_per_db=1000)
    keys = sum(m.client(db=db).dbsize() for db in (0, 5))
    hop = cluster.hop(m)

    rdb = str(tmp_path / "dump-via-relay.rdb")
    out = subprocess.run([h.REDIS_CLI, "-h", h.HOST, "-p", str(hop.port), "--rdb", rdb],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    text = out.stdout.decode(errors="replace")
    assert out.returncode == 0, text
    assert os.path.getsize(rdb) > 0
    chk = subprocess.run([h.REDIS_CHECK_RDB, rdb], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=60)
    ctext = chk.stdout.decode(errors="replace")
    assert chk.returncode == 0, ctext
    assert "RDB looks OK" in ctext, ctext
    mo = re.search(r"(\d+) keys read", ctext)
    assert mo and int(mo.group(1)) == keys, ctext
    assert hop.alive()

    log = str(tmp_path / "redis-cli-replica.out")
    cli = cluster.popen([h.REDIS_CLI, "-h", h.HOST, "-p", str(hop.port), "--replica"], log)

    def output():
        with open(log, "r", errors="replace") as f:
            return f.read()

    def describe():
        return "redis-cli output:\n%s\n%s" % (output()[-3000:], hop.describe())
    wait_for(lambda: "SYNC done" in output(), 20, "redis-cli --replica to finish its sync",
             describe=describe)
    key = "uniq:" + uuid.uuid4().hex
    m.r.set(key, "seen")
    m.client(db=5).hset(key + ":h", "f", "v")
    wait_for(lambda: key in output() and key + ":h" in output(), 10,
             "redis-cli --replica to print the SET of %s" % key, describe=describe)
    assert cli.poll() is None, describe()
    assert '"set","%s","seen"' % key in output().lower() or '"SET","%s","seen"' % key in output()
    assert_alive(hop)
    # the relay still serves real replicas afterwards
    r = cluster.replica(hop, "r")
    converge(m, [r], [hop])


# ------------------------------------------------------------------------------------------------
# 8. INFO and ROLE


@pytest.mark.hop
def test_info_and_role(cluster):
    # offsets are compared exactly below: no master PINGs, no expiring keys
    m = cluster.master(extra=["--repl-ping-replica-period", "3600"])
    preload(m.port, dbs=(0,), keys_per_db=500)
    hop = cluster.hop(m)
    r1 = cluster.replica(hop, "r1")
    r2 = cluster.replica(hop, "r2")
    with cluster.writer(m, dbs=(0, 1), short_ttl=False) as w:
        w.wait_count(500)
    converge(m, [r1, r2], [hop])
    mi = m.info("replication")

    # the master's view of the relay: REPLCONF listening-port and ACKed offset
    wait_for(lambda: m.info("replication").get("slave0", {}).get("offset")
             == repl_offset(m), 10, "master to see the relay's ACK reach its offset",
             describe=lambda: repr(m.info("replication")))
    s0 = m.info("replication")["slave0"]
    assert s0["ip"] == h.HOST and int(s0["port"]) == hop.port and s0["state"] == "online"

    # every replica ACKs the final offset to the relay
    def acked():
        i = hop.info("replication")
        offs = [i["slave%d" % k]["offset"] for k in range(2)]
        return all(int(o) == repl_offset(m) for o in offs)
    wait_for(acked, 10, "relay to see both replicas ACK the master's offset",
             describe=lambda: repr(hop.info("replication")))

    i = hop.info("replication")
    assert i["role"] == "slave"
    assert i["master_host"] == h.HOST
    assert int(i["master_port"]) == m.port
    assert i["master_link_status"] == "up"
    if hop.is_relay:
        assert int(i["slave_priority"]) == 0
    assert int(i["connected_slaves"]) == 2
    ports = {r1.port, r2.port}
    seen = set()
    for k in range(2):
        s = i["slave%d" % k]
        assert s["ip"] == h.HOST, s
        assert s["state"] == "online", s
        assert int(s["offset"]) == repl_offset(m), s
        assert 0 <= int(s["lag"]) <= 5, s
        seen.add(int(s["port"]))
    assert seen == ports
    assert "slave2" not in i
    assert i["master_replid"] == mi["master_replid"]
    assert i["master_replid2"] == mi["master_replid2"]
    assert int(i["second_repl_offset"]) == int(mi["second_repl_offset"])
    assert int(i["master_repl_offset"]) == repl_offset(m)
    assert int(i["slave_repl_offset"]) == repl_offset(m)
    assert int(i["repl_backlog_active"]) == 1
    assert int(i["repl_backlog_size"]) > 0
    first = int(i["repl_backlog_first_byte_offset"])
    histlen = int(i["repl_backlog_histlen"])
    assert 1 <= first <= repl_offset(m) + 1
    assert histlen > 0 and first + histlen - 1 == int(i["master_repl_offset"])

    role = hop.r.execute_command("ROLE")
    assert list(role[:4]) == ["slave", h.HOST, m.port, "connected"], role
    assert int(role[4]) == repl_offset(m), role

    for section in ("server", "clients", "replication", "stats", "memory"):
        assert hop.info(section), "INFO %s is empty" % section
    st = hop.info("stats")
    for field in ("sync_full", "sync_partial_ok", "sync_partial_err",
                  "total_connections_received"):
        assert field in st, field
        assert int(st[field]) >= 0
    assert int(st["sync_full"]) >= 2  # r1 and r2
    assert int(st["total_connections_received"]) >= 3
    assert int(hop.info("clients")["connected_clients"]) >= 1
    everything = hop.info()
    assert everything.get("role") == "slave" and "sync_full" in everything


# ------------------------------------------------------------------------------------------------
# 9. hostile input


HOSTILE = [
    ("garbage", b"\xff\xfe\x01garbage bytes \x7f here\r\n"),
    ("unknown inline", b"FOOBARBAZ arg\r\n"),
    ("unknown multibulk", b"*2\r\n$9\r\nFOOBARBAZ\r\n$3\r\narg\r\n"),
    ("absurd multibulk length", b"*99999999999\r\n"),
    ("absurd bulk length", b"*1\r\n$99999999999\r\n"),
    ("negative bulk length", b"*1\r\n$-5\r\n"),
    ("bad bulk char", b"*1\r\nX3\r\nfoo\r\n"),
    ("psync garbage", b"PSYNC notanid notanumber\r\n"),
    ("psync no args", b"PSYNC\r\n"),
    ("psync one arg", b"*2\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n"),
    ("psync bad offset", b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$3\r\n1x2\r\n"),
    # REPLCONF ACK from a non-replica gets no reply (as in Redis): only the second line answers
    ("replconf ack garbage then unknown", b"REPLCONF ACK garbage\r\nNOSUCHCMD\r\n"),
    ("replconf garbage then unknown", b"REPLCONF listening-port notaport\r\nNOSUCHCMD\r\n"),
    ("endless inline line", b"a" * (2 * 1024 * 1024)),
]


@pytest.mark.hop
def test_hostile_input(cluster):
    m = cluster.master()
    preload(m.port, dbs=(0,), keys_per_db=500)
    hop = cluster.hop(m)
    r = cluster.replica(hop, "r")
    converge(m, [r], [hop])

    problems = []
    for name, payload in HOSTILE:
        data, closed = raw_exchange(hop.port, payload, timeout=3,
                                    lines=2 if name == "replconf garbage then unknown" else 1)
        body = data.lstrip(b"\n")
        if not (body.startswith(b"-") or (closed and body == b"")):
            problems.append("%s: got %r (closed=%s)" % (name, data[:200], closed))
        if "unknown" in name and b"-ERR unknown command" not in body:
            problems.append("%s: expected -ERR unknown command, got %r" % (name, data[:200]))
        if "absurd" in name and body and b"Protocol error" not in body:
            problems.append("%s: expected a protocol error, got %r" % (name, data[:200]))
        if not hop.alive():
            problems.append("%s: relay died" % name)
            break
    assert not problems, "\n".join(problems) + "\n" + hop.describe()

    # no reply required, only survival: a NUL before the newline (Redis' inline parser then waits
    # for more), random binary blobs of 64 KB not starting with '*'
    raw_exchange(hop.port, b"\x00\xff\xfe\x01garbage\r\n", timeout=0.5)
    raw_exchange(hop.port, b"*2000000000\r\n", timeout=0.5)
    raw_exchange(hop.port, b"*1\r\n$500000000\r\nabc", timeout=0.5)
    for seed in range(4):
        blob = b"x" + os.urandom(64 * 1024)
        raw_exchange(hop.port, blob, timeout=0.3, want_line=False)
        assert hop.alive(), hop.describe()
    # partial commands, then hang up
    for payload in (b"*3\r\n$3\r\nSET\r\n$1", b"*1\r\n", b"PIN", b"*2\r\n$5\r\nPSYNC\r\n"):
        raw_exchange(hop.port, payload, timeout=0.2)
    # a would-be replica that vanishes during its full sync, and one that SYNCs and hangs up
    raw_exchange(hop.port, b"REPLCONF capa eof capa psync2\r\nPSYNC ? -1\r\n", timeout=0.3)
    raw_exchange(hop.port, b"SYNC\r\n", timeout=0.3)
    # many short connections
    for _ in range(50):
        raw_exchange(hop.port, b"PING\r\n", timeout=1)

    assert_alive(hop)
    assert hop.client().ping()
    assert hop.r.echo("still here") == "still here"
    with cluster.writer(m, dbs=(0, 2)) as w:
        w.wait_count(500)
        r2 = cluster.replica(hop, "r2")
        w.wait_count(300)
    converge(m, [r, r2], [hop])
    wait_connected_slaves(hop, 2)


# ------------------------------------------------------------------------------------------------
# more scenarios


@pytest.mark.hop
def test_nomasterlink_then_upstream_appears(cluster):
    """Before it has any history the hop refuses PSYNC with -NOMASTERLINK (never -ERR, which
    makes stock replicas fall back to SYNC); once the master appears everything syncs."""
    mport = h.free_port()
    hop = cluster.hop(types.SimpleNamespace(port=mport), wait_link=False)
    assert hop.info("replication")["master_link_status"] == "down"
    data, closed = raw_exchange(hop.port, b"REPLCONF capa eof capa psync2\r\nPSYNC ? -1\r\n")
    lines = data.split(b"\r\n")
    assert lines[0] == b"+OK", data
    assert lines[1].startswith(b"-NOMASTERLINK"), data
    r = cluster.replica(hop, "r", wait_synced=False)
    m = cluster.master(port=mport)
    preload(m.port, dbs=(0, 1), keys_per_db=300)
    wait_link_up(hop)
    wait_replica_synced(r)
    with cluster.writer(m, dbs=(0, 1)) as w:
        w.wait_count(300)
    converge(m, [r], [hop])
    role = hop.r.execute_command("ROLE")
    assert role[0] == "slave" and role[3] == "connected", role


@pytest.mark.hop
def test_master_replaced_new_history(cluster):
    """The master restarts empty on the same port (new replid): the hop full-syncs the new
    history and its replicas end up with the new dataset."""
    m = cluster.master()
    port = m.port
    preload(m.port, dbs=(0, 1), keys_per_db=500, seed=1)
    hop = cluster.hop(m)
    r = cluster.replica(hop, "r")
    converge(m, [r], [hop])
    old_id = m.info("replication")["master_replid"]
    m.stop()
    wait_for(lambda: hop.info("replication")["master_link_status"] == "down", 15,
             "hop to notice the master went away")
    m2 = cluster.master("master2", port=port)
    preload(m2.port, dbs=(0, 7), keys_per_db=300, seed=2)
    assert m2.info("replication")["master_replid"] != old_id
    with cluster.writer(m2, dbs=(0, 7)) as w:
        w.wait_count(300)
    wait_link_up(hop)
    converge(m2, [r], [hop])
    assert r.client(db=1).dbsize() == 0
    assert r.info("replication")["master_replid"] == m2.info("replication")["master_replid"]


@pytest.mark.hop
def test_replicaof_switches_upstream(cluster):
    m1 = cluster.master("m1")
    m2 = cluster.master("m2")
    preload(m1.port, dbs=(0,), keys_per_db=300, seed=1)
    preload(m2.port, dbs=(0, 3), keys_per_db=400, seed=2)
    hop = cluster.hop(m1)
    r = cluster.replica(hop, "r")
    converge(m1, [r], [hop])
    assert hop.r.execute_command("REPLICAOF", h.HOST, str(m2.port)) in ("OK", True)
    wait_for(lambda: int(hop.info("replication")["master_port"]) == m2.port, 10,
             "hop to report the new master_port")
    wait_link_up(hop)
    with cluster.writer(m2, dbs=(0, 3)) as w:
        w.wait_count(300)
    converge(m2, [r], [hop])


@pytest.mark.hop
def test_auth_both_sides(cluster):
    m = cluster.master(extra=["--requirepass", "upsecret"], password="upsecret")
    preload(m.port, dbs=(0,), keys_per_db=300, password="upsecret")
    hop = cluster.hop(m, password="downsecret",
                      relay_extra=["--set", "upstream.password=upsecret",
                                   "--set", "relay.requirepass=downsecret"],
                      redis_extra=["--masterauth", "upsecret", "--requirepass", "downsecret"])
    data, _ = raw_exchange(hop.port, b"PSYNC ? -1\r\n")
    assert data.startswith(b"-NOAUTH"), data
    data, _ = raw_exchange(hop.port, b"AUTH wrong\r\n")
    assert data.startswith(b"-"), data
    r = cluster.replica(hop, "r", extra=["--masterauth", "downsecret"])
    with cluster.writer(m, dbs=(0,)) as w:
        w.wait_count(300)
    converge(m, [r], [hop])
    data, _ = raw_exchange(hop.port, b"INFO\r\n")
    assert data.startswith(b"-NOAUTH"), data
    # PING gets -NOAUTH before AUTH, as from Redis (issue 14); stock replicas accept +PONG and
    # -NOAUTH alike (PROTOCOL.md, downstream 1).
    data, _ = raw_exchange(hop.port, b"PING\r\n")
    assert data.startswith(b"-NOAUTH"), data


@pytest.mark.relay_only
def test_relay_commands(cluster):
    m = cluster.master()
    relay = cluster.relay(m)
    wait_link_up(relay)
    c = relay.r
    assert c.ping() is True
    assert c.echo("hello world") == "hello world"
    with pytest.raises(Exception) as e:
        c.execute_command("NOSUCHCOMMAND", "x")
    assert "unknown command" in str(e.value)
    with pytest.raises(Exception):
        c.execute_command("REPLICAOF", "NO", "ONE")
    wait_link_up(relay)  # still replicating from the same master
    assert int(relay.info("replication")["master_port"]) == m.port
    cl = c.execute_command("CLIENT", "LIST")
    assert "addr=127.0.0.1:" in str(cl), cl
    cfg = c.execute_command("CONFIG", "GET", "*")
    assert isinstance(cfg, (list, dict)), cfg
    data, closed = raw_exchange(relay.port, b"QUIT\r\nPING\r\n")
    assert data.startswith(b"+OK") and b"PONG" not in data, data
    assert_alive(relay)


# ------------------------------------------------------------------------------------------------
# command line


def _run_cli(args, timeout=10):
    p = subprocess.run([h.CASCADE_BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


GOOD_INI = """\
# a comment
[relay]
bind = 127.0.0.1
port = 7000
dir = {dir}
log-level = info

[upstream]
host = 127.0.0.1
port = 6379
reconnect-min = 100ms
reconnect-max = 5s

[backlog]
size = 64mb

[replicas]
max-clients = 100
"""

BAD_INIS = [
    # (content, line of the error)
    ("[relay]\nport = 7000\nno-such-key = 1\n", 3),
    ("[relay]\nbind = 127.0.0.1\n\nport = notanumber\n", 4),
    ("[relay]\nport = 99999999\n", 2),
    ("[upstream]\nhost = 127.0.0.1\nhost = 127.0.0.2\n", 3),
    ("[nosuchsection]\nkey = 1\n", 2),
    ("[backlog]\nsize = lots\n", 2),
]


@pytest.mark.relay_only
def test_cli_check_config_and_flags(cluster, tmp_path):
    good = tmp_path / "good.ini"
    good.write_text(GOOD_INI.format(dir=tmp_path))
    rc, out = _run_cli(["-c", str(good), "--check-config"])
    assert rc == 0, out
    for i, (content, line) in enumerate(BAD_INIS):
        bad = tmp_path / ("bad%d.ini" % i)
        bad.write_text(content)
        rc, out = _run_cli(["-c", str(bad), "--check-config"])
        assert rc == 1, (content, out)
        assert "%s:%d:" % (bad, line) in out, (content, out)
    rc, out = _run_cli(["--no-such-flag"])
    assert rc == 1, out
    rc, out = _run_cli(["--set", "relay.nosuch=1", "--check-config"])
    assert rc == 1, out
    rc, out = _run_cli(["--version"])
    assert rc == 0, out
    assert re.search(r"\d+\.\d+", out), out
    rc, out = _run_cli(["-h"])
    assert rc == 0, out
    assert "--upstream" in out, out


# ------------------------------------------------------------------------------------------------
# robustness scenarios


@pytest.mark.hop
def test_stalled_replica_dropped_upstream_not_slowed(cluster):
    """A replica that stops reading is dropped past the output limit, and never slows the
    upstream read or the other replicas. The stalled replica is a raw socket with a tiny receive
    buffer that PSYNCs at the current offset and then reads nothing (a paused stock replica would
    hide tens of MB in loopback socket buffers)."""
    m = cluster.master()
    hop = cluster.hop(m, relay_extra=["--set", "replicas.output-limit=1mb"],
                      # Redis 7 raises a replica's hard limit to repl-backlog-size
                      redis_extra=["--client-output-buffer-limit", "replica 1mb 0 0",
                                   "--repl-backlog-size", "1mb"])
    r = cluster.replica(hop, "r")
    preload(m.port, dbs=(0,), keys_per_db=300)
    converge(m, [r], [hop])
    hi = hop.info("replication")
    replid, off = hi["master_replid"], int(hi["master_repl_offset"])

    s = h.RawReplica(hop.port, replid, off + 1, rcvbuf=4096)
    try:
        assert s.reply.startswith(b"+CONTINUE"), s.reply
        wait_connected_slaves(hop, 2)
        # ~15 MB of stream, then nothing is read from the stalled socket
        c = m.client()
        for i in range(3):
            p = c.pipeline(transaction=False)
            for j in range(50):
                p.set("big:%d" % (j % 25), os.urandom(50_000).hex())
            p.execute()
        wait_for(lambda: int(hop.info("replication")["connected_slaves"]) == 1, 20,
                 "hop to drop the stalled replica",
                 describe=lambda: repr(hop.info("replication")))
        wait_for(lambda: repl_offset(hop) == repl_offset(m), 20,
                 "hop to keep up with the master")
        converge(m, [r], [hop])
    finally:
        s.close()
    with cluster.writer(m, dbs=(0, 1)) as w:
        w.wait_count(300)
    converge(m, [r], [hop])
    assert_alive(hop)


@pytest.mark.hop
def test_concurrent_full_syncs_bigger_dataset(cluster):
    m = cluster.master()
    m.r.execute_command("DEBUG", "POPULATE", 30000, "pop", 256)
    m.client(db=1).execute_command("DEBUG", "POPULATE", 5000, "pop1", 64)
    m.r.set("huge", "h" * (6 * 1024 * 1024))
    m.r.rpush("hugelist", *[os.urandom(512).hex() for _ in range(4000)])
    with cluster.writer(m, dbs=(0, 1)) as w:
        hop = cluster.hop(m)
        reps = [cluster.replica(hop, "r%d" % i, wait_synced=False) for i in range(3)]
        for r in reps:
            wait_replica_synced(r, timeout=60)
        w.wait_count(300)
    converge(m, reps, [hop], timeout=60)


@pytest.mark.hop
def test_wait_on_master_counts_relay(cluster):
    """WAIT on the master returns promptly: the hop answers REPLCONF GETACK at once instead of
    waiting for its once-a-second ACK."""
    m = cluster.master()
    hop = cluster.hop(m)
    r = cluster.replica(hop, "r")
    times = []
    for i in range(6):
        m.r.set("wait:%d" % i, i)
        t0 = h.time.monotonic()
        n = m.r.execute_command("WAIT", 1, 3000)
        times.append(h.time.monotonic() - t0)
        assert n == 1, "WAIT 1 returned %r" % n
    assert sorted(times)[len(times) // 2] < 0.5, "WAIT too slow, GETACK not answered? %r" % times
    converge(m, [r], [hop])


@pytest.mark.hop
def test_chain_started_bottom_up(cluster):
    """Replicas and relays started before anything upstream exists (hop2 gets -NOMASTERLINK
    from hop1 until hop1 has a history); everything converges once the master starts."""
    mport = h.free_port()
    h1 = cluster.hop(types.SimpleNamespace(port=mport), "hop1", wait_link=False)
    h2 = cluster.hop(h1, "hop2", wait_link=False)
    r1 = cluster.replica(h1, "r1", wait_synced=False)
    r2 = cluster.replica(h2, "r2", wait_synced=False)
    m = cluster.master(port=mport)
    preload(m.port, dbs=(0, 2), keys_per_db=500)
    with cluster.writer(m, dbs=(0, 2)) as w:
        for n in (h1, h2, r1, r2):
            wait_link_up(n)
        w.wait_count(300)
    converge(m, [r1, r2], [h1, h2])


@pytest.mark.hop
@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_hop_restart(cluster, hard):
    m = cluster.master()
    preload(m.port, dbs=(0, 3), keys_per_db=500)
    hop = cluster.hop(m)
    r1 = cluster.replica(hop, "r1")
    r2 = cluster.replica(hop, "r2")
    with cluster.writer(m, dbs=(0, 3)) as w:
        w.wait_count(300)
        hop.restart(hard=hard)
        w.wait_count(300)
        wait_link_up(hop)
        wait_replica_synced(r1)
        wait_replica_synced(r2)
        w.wait_count(300)
    converge(m, [r1, r2], [hop])


@pytest.mark.hop
def test_failover_new_master_psync2(cluster):
    """m2 (a replica of m1) is promoted; m1 and the hop follow it. PSYNC2: the hop continues
    through replid2 (+CONTINUE <new id>), its replicas too; nobody full-syncs."""
    m1 = cluster.master("m1")
    preload(m1.port, dbs=(0, 1), keys_per_db=500)
    m2 = cluster.replica(m1, "m2", extra=["--repl-backlog-size", "64mb"])
    hop = cluster.hop(m1)
    r1 = cluster.replica(hop, "r1")
    r2 = cluster.replica(hop, "r2")
    with cluster.writer(m1, dbs=(0, 1)) as w:
        w.wait_count(500)
    converge(m1, [m2, r1, r2], [hop])
    old_id = m1.info("replication")["master_replid"]
    base_m2_full = stat(m2, "sync_full")
    base_hop_full = stat(hop, "sync_full")
    base_hop_ok = stat(hop, "sync_partial_ok")
    base_logs = [r.full_syncs_in_log() for r in (r1, r2)]

    assert m2.r.execute_command("REPLICAOF", "NO", "ONE") in ("OK", True)
    new_id = m2.info("replication")["master_replid"]
    assert new_id != old_id
    assert m1.r.execute_command("REPLICAOF", h.HOST, str(m2.port)) in ("OK", True)
    assert hop.r.execute_command("REPLICAOF", h.HOST, str(m2.port)) in ("OK", True)
    wait_link_up(m1)
    wait_link_up(hop)
    with cluster.writer(m2, dbs=(0, 1), prefix="after") as w:
        w.wait_count(300)
        wait_for(lambda: hop.info("replication")["master_replid"] == new_id, 10,
                 "hop to adopt the new replication id")
        wait_replica_synced(r1)
        wait_replica_synced(r2)
        w.wait_count(300)
    converge(m2, [m1, r1, r2], [hop])
    hi = hop.info("replication")
    assert hi["master_replid"] == new_id
    assert hi["master_replid2"] == old_id
    assert int(hi["second_repl_offset"]) == int(m2.info("replication")["second_repl_offset"])
    assert stat(m2, "sync_full") == base_m2_full, "a follower full-synced from the new master"
    assert stat(m2, "sync_partial_ok") >= 2
    assert stat(hop, "sync_full") == base_hop_full, "a replica of the hop full-synced"
    assert stat(hop, "sync_partial_ok") >= base_hop_ok + 2, "replicas did not re-PSYNC"
    assert [r.full_syncs_in_log() for r in (r1, r2)] == base_logs
    for r in (r1, r2):
        assert r.info("replication")["master_replid"] == new_id


@pytest.mark.hop
def test_backlog_trimmed_full_sync_and_fresh_snapshot(cluster):
    """With a 64 KB backlog, a replica that comes back after ~1 MB of stream cannot continue:
    it gets a full sync, and so does a late joiner (whose snapshot must be recent enough to be
    followed by the backlog)."""
    m = cluster.master()
    preload(m.port, dbs=(0,), keys_per_db=300)
    # memory only: with the disk log (the default) r1 would continue partially from disk
    hop = cluster.hop(m, relay_extra=["--set", "backlog.size=64kb", "--set", "backlog.disk=no"],
                      redis_extra=["--repl-backlog-size", "64kb"])
    r1 = cluster.replica(hop, "r1")
    converge(m, [r1], [hop])
    base_full_log = r1.full_syncs_in_log()
    # park r1 on a dead port: it keeps its replid/offset for a later PSYNC
    assert r1.r.execute_command("REPLICAOF", h.HOST, str(h.free_port())) in ("OK", True)
    c = m.client()
    for i in range(4):
        p = c.pipeline(transaction=False)
        for j in range(25):
            p.set("blob:%d" % (j % 40), os.urandom(5000).hex())
        p.execute()
    wait_for(lambda: repl_offset(hop) == repl_offset(m), 15, "hop to catch up")
    r2 = cluster.replica(hop, "r2")
    assert r1.r.execute_command("REPLICAOF", h.HOST, str(hop.port)) in ("OK", True)
    wait_replica_synced(r1)
    with cluster.writer(m, dbs=(0,)) as w:
        w.wait_count(300)
    converge(m, [r1, r2], [hop])
    assert r1.full_syncs_in_log() == base_full_log + 1, "r1 should have needed a full sync"
    if hop.is_relay:
        i = hop.info("replication")
        assert int(i["repl_backlog_histlen"]) <= 2 * 65536 + 65536, i


@pytest.mark.relay_only
def test_refresh_from_a_relay_serving_its_cached_snapshot_backs_off(cluster):
    """A relay under another relay is told to refresh its snapshot after 64 KB of stream with
    no minimum interval, while the relay above keeps serving the snapshot it cached (its own
    refresh-after is the default 1 GB): every fetch brings the same offset. The lower relay
    says so and waits 1 s, 2 s, 4 s ... between fetches instead of fetching again on every
    cron tick (100 ms), and its replica stays consistent."""
    m = cluster.master()
    preload(m.port, dbs=(0,), keys_per_db=300)
    up = cluster.relay(m, "up")
    wait_link_up(up)
    low = cluster.relay(up, "low", extra=["--set", "snapshot.refresh-after=64kb",
                                          "--set", "snapshot.min-interval=0"])
    wait_link_up(low)
    c = m.client()
    p = c.pipeline(transaction=False)
    for j in range(64):
        p.set("blob:%d" % j, os.urandom(2048).hex())  # 256 KB of stream
    p.execute()
    wait_for(lambda: repl_offset(low) == repl_offset(m), 15, "the lower relay to catch up")
    base = stat(low, "snapshot_fetches")
    stale = "is no newer than the cached one"

    def third_stale_refresh():
        return h.count_in_file(low.stderr_path, stale) >= 3

    # 1 + 2 s of back-off before the third; without it, ~30 fetches in those 3 s.
    wait_for(third_stale_refresh, 30, "three refreshes that brought the same snapshot",
             describe=low.describe)
    fetches = stat(low, "snapshot_fetches") - base
    assert 3 <= fetches <= 4, ("fetches while the upper relay served the same snapshot",
                               fetches, low.describe())
    assert h.count_in_file(low.stderr_path, "next refresh in 4 s") == 1, low.describe()
    assert stat(up, "snapshot_fetches") == 0, "the upper relay has no reason to refresh"
    leaf = cluster.replica(low, "leaf")
    converge(m, [leaf], [up, low])
    assert_alive(up, low)


@pytest.mark.relay_only
def test_serves_replicas_while_upstream_down(cluster):
    """With the master gone, the relay still full-syncs a new replica from the snapshot and
    backlog it holds. (Stock Redis answers -NOMASTERLINK instead: relay-only behaviour.)"""
    m = cluster.master()
    preload(m.port, dbs=(0, 2), keys_per_db=500)
    hop = cluster.relay(m)
    wait_link_up(hop)
    r1 = cluster.replica(hop, "r1")
    # no short TTLs: the dataset must stay fixed once the master is gone
    with cluster.writer(m, dbs=(0, 2), short_ttl=False) as w:
        w.wait_count(500)
    want = converge(m, [r1], [hop])
    m.stop()
    wait_for(lambda: hop.info("replication")["master_link_status"] == "down", 15,
             "hop to notice the master is gone")
    r2 = cluster.replica(hop, "r2")
    assert digest(r2.r) == want
    assert digest(r1.r) == want
    assert hop.info("replication")["master_link_status"] == "down"
