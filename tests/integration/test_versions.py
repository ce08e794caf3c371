"""Version awareness: who the upstream is, what each leaf can load, REPLCONF like Redis.

- a fake upstream (a Python socket server) checks the handshake the relay sends (INFO server
  before PSYNC, REPLCONF version to a Valkey upstream only, upstream.announce-version), what
  INFO and HELLO report, and that a master aborting full syncs right after +FULLRESYNC is
  reported and backed off;
- raw leaves check REPLCONF's answers and the refusal at PSYNC time of a leaf whose announced
  version cannot load the snapshot;
- Debian 12's Redis 7.0 leaf, fed an RDB 12 snapshot it cannot load, is held off after a few
  transfers;
- real Valkey 9 / Redis 8 servers from scripts/servers (CASCADE_SERVERS, default
  /var/tmp/cascade-servers; skipped when missing): a Valkey 9 data set with hash-field TTLs
  served with one master fork, and an incompatible Redis 7.0 leaf refused beside compatible
  leaves that converge.
"""

import os
import time

import pytest

import harness as h
from harness import wait_for, wait_link_up, wait_replica_synced

pytestmark = pytest.mark.relay_only

SERVERS = os.environ.get("CASCADE_SERVERS", "/var/tmp/cascade-servers")

VALKEY9_INFO = ("# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n"
                "valkey_release_stage:ga\r\nserver_mode:standalone\r\n"
                "run_id:1111111111111111111111111111111111111111\r\n")
REDIS8_INFO = ("# Server\r\nredis_version:8.0.2\r\nredis_mode:standalone\r\n"
               "run_id:2222222222222222222222222222222222222222\r\n")
REPLID = "a" * 40


def rdb(magic, ver="9.1.2", key="valkey-ver"):
    """A small RDB: magic, one version aux field, EOF opcode and a zero checksum."""
    aux = b"\xfa" + bytes([len(key)]) + key.encode() + bytes([len(ver)]) + ver.encode()
    return magic + aux + b"\xff" + b"\0" * 8


class FakeUpstream(h.FakeMaster):
    """The fake master with this file's defaults: a Valkey 9 that sends a VALKEY080 RDB."""

    def __init__(self, info=VALKEY9_INFO, payload=None, **kw):
        super().__init__(info=info, payload=payload if payload is not None else rdb(b"VALKEY080"),
                         replid=REPLID, **kw)


@pytest.fixture
def fake():
    made = []

    def make(**kw):
        f = FakeUpstream(**kw)
        f.start()
        made.append(f)
        return f
    yield make
    for f in made:
        f.stop()


def relay_info(relay, section="relay"):
    return relay.info(section)


def hello(relay):
    flat = relay.r.execute_command("HELLO", "2")
    return dict(zip(flat[::2], flat[1::2]))


# --------------------------------------------------------------------------------------------
# the handshake upstream


def test_valkey_upstream_gets_its_version_announced(cluster, fake):
    up = fake()
    relay = cluster.relay(up)
    wait_link_up(relay)
    names = [a[0].upper() + (" " + a[1].lower() if a[0].upper() == "REPLCONF" else "")
             for a in up.commands if not (a[0].upper() == "REPLCONF" and a[1].lower() == "ack")]
    # INFO server comes before the REPLCONFs and PSYNC; the version is the upstream's own
    assert names[:2] == ["PING", "INFO"], names
    assert names.index("INFO") < names.index("REPLCONF version") < names.index("PSYNC"), names
    assert ("REPLCONF", "version", "9.1.2") in up.commands
    assert ("REPLCONF", "capa", "eof", "capa", "psync2") in up.commands
    # never a request to skip the checksum or compress: the snapshot is stored and re-served
    assert not [a for a in up.sent("REPLCONF") if any(
        x.lower() in ("skip-rdb-checksum", "rdb-no-checksum", "rdb-no-compress", "lz4", "zstd")
        for x in a)]
    ri = relay_info(relay)
    assert ri["upstream_server"] == "valkey" and ri["upstream_version"] == "9.1.2", ri
    assert str(ri["upstream_run_id"]) == "1" * 40
    assert ri["upstream_announced_version"] == "9.1.2"
    assert int(ri["snapshot_rdb_version"]) == 80 and ri["snapshot_rdb_magic"] == "VALKEY", ri
    si = relay.info("server")
    assert si["redis_version"] == "7.2.4" and si["server_name"] == "valkey", si
    assert si["valkey_version"] == "9.1.2" and "cascade_version" in si
    he = hello(relay)
    assert he["server"] == "valkey" and he["version"] == "9.1.2", he


def test_redis_upstream_gets_no_version(cluster, fake):
    up = fake(info=REDIS8_INFO, version_ok=False, payload=rdb(b"REDIS0012", "8.0.2", "redis-ver"))
    relay = cluster.relay(up)
    wait_link_up(relay)
    assert up.sent("INFO") and not [a for a in up.sent("REPLCONF") if a[1].lower() == "version"]
    ri = relay_info(relay)
    assert ri["upstream_server"] == "redis" and ri["upstream_version"] == "8.0.2", ri
    assert ri["upstream_announced_version"] == "none"
    assert int(ri["snapshot_rdb_version"]) == 12 and ri["snapshot_rdb_magic"] == "REDIS"
    si = relay.info("server")
    assert si["redis_version"] == "8.0.2" and "server_name" not in si, si
    assert hello(relay)["server"] == "redis" and hello(relay)["version"] == "8.0.2"


def test_announce_version_override_and_rdb_fallback(cluster, fake):
    """upstream.announce-version wins over the upstream's own; an upstream that refuses INFO
    (ACL) is identified from the RDB's aux field."""
    up = fake(info=None, payload=rdb(b"REDIS0011", "9.1.2", "valkey-ver"))
    relay = cluster.relay(up, extra=["--set", "upstream.announce-version=8.0.0"])
    wait_link_up(relay)
    assert ("REPLCONF", "version", "8.0.0") in up.commands
    ri = relay_info(relay)
    assert ri["upstream_server"] == "valkey" and ri["upstream_version"] == "9.1.2", ri
    assert int(ri["snapshot_rdb_version"]) == 11
    # a bad value is a configuration error
    with pytest.raises(Exception) as e:
        relay.r.execute_command("CONFIG", "SET", "upstream.announce-version", "nine")
    assert "announce-version" in str(e.value)
    relay.r.execute_command("CONFIG", "SET", "upstream.announce-version", "none")
    assert relay.r.execute_command("CONFIG", "GET", "upstream.announce-version")[1] == "none"


def test_full_sync_aborted_after_fullresync_backs_off(cluster, fake):
    """A master ending each full sync right after +FULLRESYNC (as Valkey 9 does when the data
    does not fit the RDB version it chose): reported with its reason from the second abort on,
    and retried with growing delays, not every few seconds."""
    up = fake(on_psync="abort")
    mport = h.free_port()
    relay = cluster.relay(up, extra=["--set", "upstream.reconnect-max=200ms",
                                     "--set", "metrics.port=%d" % mport])
    wait_for(lambda: int(relay_info(relay)["upstream_sync_aborts"]) >= 2, 20,
             "two aborted full syncs", describe=relay.describe)
    ri = relay_info(relay)
    assert "connection closed by upstream" in ri["upstream_last_sync_abort"], ri
    assert "announced version 9.1.2" in ri["upstream_last_sync_abort"], ri
    assert h.count_in_file(os.path.join(relay.dir, "cascade.log"),
                           "aborted 2 full syncs in a row") == 1
    # the next attempt waits 10 s: with reconnect-max at 200 ms it would have come 40 times
    seen = up.psyncs
    time.sleep(6)  # a rate is measured over a time (no condition to wait for)
    assert up.psyncs == seen, (seen, up.psyncs)
    import urllib.request
    text = urllib.request.urlopen("http://%s:%d/metrics" % (h.HOST, mport), timeout=5).read()
    assert b"\ncascade_upstream_sync_aborts 2\n" in text, text
    assert b"\ncascade_upstream_sync_aborts_total 2\n" in text


# --------------------------------------------------------------------------------------------
# REPLCONF and PSYNC downstream


def exchange(port, payload, lines):
    data, _ = h.raw_exchange(port, payload, lines=lines)
    return data.lstrip(b"\n").split(b"\r\n")[:lines]


def test_replconf_like_redis(cluster, fake):
    up = fake()
    relay = cluster.relay(up)
    wait_link_up(relay)
    cases = [
        (b"REPLCONF capa eof capa psync2 capa dual-channel capa skip-rdb-checksum capa lz4\r\n",
         b"+OK"),
        (b"REPLCONF version 9.1.2\r\n", b"+OK"),
        (b"REPLCONF capa rdb-channel-repl\r\n", b"+OK"),
        (b"REPLCONF version nine\r\n", b"-ERR Unrecognized version format: nine"),
        (b"REPLCONF rdb-no-compress 1\r\n", b"-ERR Unrecognized REPLCONF option: rdb-no-compress"),
        (b"REPLCONF rdb-no-checksum 1\r\n", b"-ERR Unrecognized REPLCONF option: rdb-no-checksum"),
        (b"REPLCONF set-cluster-node-id abc\r\n",
         b"-ERR Unrecognized REPLCONF option: set-cluster-node-id"),
        (b"REPLCONF foo bar\r\n", b"-ERR Unrecognized REPLCONF option: foo"),
        (b"REPLCONF listening-port 1 foo bar\r\n", b"-ERR Unrecognized REPLCONF option: foo"),
        (b"REPLCONF foo\r\n", b"-ERR syntax error"),
    ]
    for payload, want in cases:
        assert exchange(relay.port, payload, 1) == [want], payload


def psync_reply(port, handshake):
    """The replies to the handshake's commands, then the PSYNC reply (last)."""
    n = handshake.count(b"\r\n") + 1
    data, _ = h.raw_exchange(port, handshake + b"PSYNC ? -1\r\n", lines=n, timeout=5)
    lines = [l.lstrip(b"\n") for l in data.split(b"\r\n")]
    return [l for l in lines if l][:n]


def test_leaf_that_cannot_load_is_refused_at_psync(cluster, fake):
    up = fake(info=REDIS8_INFO, version_ok=False, payload=rdb(b"REDIS0012", "8.0.2", "redis-ver"))
    relay = cluster.relay(up)
    wait_link_up(relay)
    base = b"REPLCONF listening-port 7001\r\nREPLCONF capa eof capa psync2\r\n"
    # Valkey 8 loads up to RDB 11: refused with -NOMASTERLINK (no fallback to SYNC)
    r = psync_reply(relay.port, base + b"REPLCONF version 8.0.1\r\n")
    assert r[:3] == [b"+OK"] * 3 and r[3].startswith(b"-NOMASTERLINK"), r
    assert b"RDB version 12" in r[3] and b"valkey 8.0.1" in r[3], r
    # logged once however often it retries
    r2 = psync_reply(relay.port, base + b"REPLCONF version 8.0.1\r\n")
    assert r2[3].startswith(b"-NOMASTERLINK"), r2
    log = os.path.join(relay.dir, "cascade.log")
    assert h.count_in_file(log, "cannot load this relay's snapshot") == 1
    ri = relay_info(relay)
    assert int(ri["replicas_refused"]) == 1, ri
    assert ri["refused0"]["port"] == 7001 and ri["refused0"]["rdb_version"] == 12, ri
    assert int(relay.info("stats")["syncs_refused_incompatible"]) == 2
    # Redis 8 (capa rdb-channel-repl) and a leaf that says nothing get the full sync
    for extra in (b"REPLCONF capa rdb-channel-repl\r\n", b"REPLCONF listening-port 7002\r\n"):
        r = psync_reply(relay.port, base + extra)
        assert r[3].startswith(b"+FULLRESYNC"), (extra, r)
    # Valkey 9 does not load Redis' RDB 12 either
    r = psync_reply(relay.port, b"REPLCONF listening-port 7003\r\nREPLCONF version 9.1.2\r\n")
    assert r[2].startswith(b"-NOMASTERLINK"), r


def test_valkey_snapshot_refused_to_silent_leaf(cluster, fake):
    """A VALKEY-magic snapshot: a leaf that announced nothing (Redis <= 7.4, Valkey 7.2) never
    loads it, so it is refused without a transfer; a Valkey 9 leaf gets it."""
    up = fake()
    relay = cluster.relay(up)
    wait_link_up(relay)
    r = psync_reply(relay.port, b"REPLCONF listening-port 7001\r\n")
    assert r[1].startswith(b"-NOMASTERLINK") and b"VALKEY magic" in r[1], r
    r = psync_reply(relay.port, b"REPLCONF listening-port 7002\r\nREPLCONF version 9.1.2\r\n")
    assert r[2].startswith(b"+FULLRESYNC"), r
    assert int(relay.info("relay")["full_syncs_served"]) == 1


def test_waiting_leaf_refused_once_the_snapshot_arrives(cluster, fake):
    """A leaf that asked while the relay's first snapshot was still coming (format unknown)
    waits with keepalives; once the snapshot is there and it cannot load it, its PSYNC is
    answered with the refusal instead of +FULLRESYNC."""
    up = fake(delay=2.0)
    relay = cluster.relay(up)
    wait_for(lambda: up.psyncs == 1, 10, "the relay's PSYNC")
    data, _ = h.raw_exchange(relay.port, b"REPLCONF listening-port 7001\r\nPSYNC ? -1\r\n",
                             lines=2, timeout=10)
    lines = [l.lstrip(b"\n") for l in data.split(b"\r\n")]
    assert lines[0] == b"+OK" and lines[1].startswith(b"-NOMASTERLINK"), data
    assert b"VALKEY magic" in lines[1]
    assert data.split(b"+OK\r\n", 1)[1].startswith(b"\n"), data  # it waited (keepalives)
    assert int(relay_info(relay)["full_syncs_served"]) == 0


def test_redis70_leaf_held_off_after_failed_loads(cluster, fake):
    """Debian's Redis 7.0 announces nothing; fed an RDB 12 it cannot load, it drops the link
    after each transfer. After 3 in a row the relay holds it off (-NOMASTERLINK, logged once)
    instead of sending the snapshot again every second."""
    up = fake(info=REDIS8_INFO, version_ok=False, payload=rdb(b"REDIS0012", "8.0.2", "redis-ver"))
    relay = cluster.relay(up)
    wait_link_up(relay)
    leaf = cluster.replica(relay, "redis70", wait_synced=False)
    wait_for(lambda: int(relay_info(relay)["replicas_refused"]) == 1, 30,
             "the relay to hold the Redis 7.0 leaf off", describe=cluster.describe)
    log = os.path.join(leaf.dir, "redis.log")
    wait_for(lambda: h.count_in_file(log, "dropped 3 full syncs") >= 1, 10,
             "the leaf to log the relay's refusal", describe=leaf.describe)
    served = int(relay_info(relay)["full_syncs_served"])
    assert served == 3, served
    assert h.count_in_file(log, "Can't handle RDB format version 12") == 3
    assert h.count_in_file(log, "Retrying with SYNC") == 0
    assert relay_info(relay)["refused0"]["leaf"] == "version not announced"
    assert h.count_in_file(os.path.join(relay.dir, "cascade.log"),
                           "dropped 3 full syncs in a row before its first ACK") == 1
    # held off for 30 s, then one more try (a failure doubles the hold): a few transfers, never
    # one a second
    time.sleep(7)  # a rate is measured over a time
    assert int(relay_info(relay)["full_syncs_served"]) == served
    assert leaf.alive()


# --------------------------------------------------------------------------------------------
# real servers from scripts/servers


def server_bin(tag):
    if tag == "redis-7.0" and not os.path.exists(os.path.join(SERVERS, tag, "server")):
        return h.REDIS_SERVER  # Debian 12's own
    p = os.path.join(SERVERS, tag, "server")
    if not os.access(p, os.X_OK):
        pytest.skip("%s is missing: run scripts/servers first (CASCADE_SERVERS=%s)" % (p, SERVERS))
    return p


def server(cluster, tag, name, replicaof=None, extra=(), wait_synced=True):
    binary = server_bin(tag)
    port = h.free_port()
    p = h.RedisProc(name, port, cluster._dir(name), replicaof=replicaof, extra=extra)
    p.argv[0] = binary
    cluster.procs.append(p)
    p.start()
    p.wait_ready()
    if replicaof is not None and wait_synced:
        wait_replica_synced(p)
    return p


def test_valkey9_field_ttls_one_fork(cluster):
    master = server(cluster, "valkey-9", "valkey9-master", extra=["--repl-backlog-size", "64mb"])
    m = master.r
    m.execute_command("HSET", "h", "a", "1", "b", "2")
    assert m.execute_command("HEXPIRE", "h", "3600", "FIELDS", "1", "a") == [1]
    for i in range(100):
        m.set("k%d" % i, "v%d" % i)
    relay = cluster.relay(master)
    wait_link_up(relay)
    leaf = server(cluster, "valkey-9", "valkey9-leaf", replicaof=relay.port)
    relay2 = cluster.relay(relay, "relay2")
    wait_link_up(relay2)
    leaf2 = server(cluster, "valkey-9", "valkey9-leaf2", replicaof=relay2.port)
    m.set("after", "1")
    for node in (leaf, leaf2):
        wait_for(lambda: node.r.get("after") == "1", 20, "the write to reach %s" % node.name)
        assert node.r.hget("h", "a") == "1" and node.r.hget("h", "b") == "2"
        ttl = node.r.execute_command("HTTL", "h", "FIELDS", "2", "a", "b")
        assert 3000 < ttl[0] <= 3600 and ttl[1] == -1, ttl  # the field TTL arrived
        assert node.r.dbsize() == 102
    st = master.info("stats")
    assert int(st["total_forks"]) == 1 and int(st["sync_full"]) == 1, st
    for r in (relay, relay2):
        ri = relay_info(r)
        assert ri["upstream_server"] == "valkey" and ri["upstream_announced_version"] == "9.1.2"
        assert int(ri["snapshot_rdb_version"]) == 80 and int(ri["upstream_sync_aborts"]) == 0
    # a Redis 7.0 leaf cannot load VALKEY080: refused without a transfer, logged once
    old = server(cluster, "redis-7.0", "redis70-leaf", replicaof=relay.port, wait_synced=False)
    wait_for(lambda: h.count_in_file(os.path.join(old.dir, "redis.log"), "cannot load") >= 2, 20,
             "the Redis 7.0 leaf to be refused", describe=old.describe)
    assert h.count_in_file(os.path.join(old.dir, "redis.log"), "Full resync from master") == 0
    assert int(relay_info(relay)["full_syncs_served"]) == 2  # leaf and relay2
    assert int(master.info("stats")["total_forks"]) == 1


def test_valkey9_announce_none_aborts_are_backed_off(cluster):
    """The original failure: announcing no version to a Valkey 9 master holding field TTLs gets
    every full sync aborted. Reported, and retried with growing delays."""
    master = server(cluster, "valkey-9", "valkey9-master")
    master.r.execute_command("HSET", "h", "a", "1")
    master.r.execute_command("HEXPIRE", "h", "3600", "FIELDS", "1", "a")
    relay = cluster.relay(master, extra=["--set", "upstream.announce-version=none"])
    wait_for(lambda: int(relay_info(relay)["upstream_sync_aborts"]) >= 2, 30,
             "two aborted full syncs", describe=cluster.describe)
    assert h.count_in_file(os.path.join(master.dir, "redis.log"), "in RDB version 11") >= 2
    ri = relay_info(relay)
    assert "announced version none" in ri["upstream_last_sync_abort"], ri
    assert "sends RDB version 11 for it" in ri["upstream_last_sync_abort"], ri
    forks = int(master.info("stats")["total_forks"])
    time.sleep(6)  # a rate is measured over a time: the next try is 10 s after the 2nd abort
    assert int(master.info("stats")["total_forks"]) <= forks + 1


@pytest.mark.parametrize("master_tag", ["redis-8.0", "valkey-9"])
def test_incompatible_leaf_refused_compatible_converges(cluster, master_tag):
    master = server(cluster, master_tag, "master", extra=["--repl-backlog-size", "64mb"])
    h.preload(master.port, keys_per_db=200)
    relay = cluster.relay(master)
    wait_link_up(relay)
    good = server(cluster, master_tag, "same-version-leaf", replicaof=relay.port)
    old = server(cluster, "redis-7.0", "redis70-leaf", replicaof=relay.port, wait_synced=False)
    wait_for(lambda: int(relay_info(relay)["replicas_refused"]) == 1, 40,
             "the relay to refuse the Redis 7.0 leaf", describe=cluster.describe)
    log = os.path.join(old.dir, "redis.log")
    wait_for(lambda: h.count_in_file(log, "-NOMASTERLINK") >= 1, 10, "the refusal in its log")
    transfers = h.count_in_file(log, "Full resync from master")
    assert transfers <= 3, transfers  # RDB 12: 3 transfers; VALKEY080: none
    with cluster.writer(master) as w:
        w.wait_count(200)
    h.wait_digests_equal(master, [good], relays=[relay])
    time.sleep(3)  # a rate is measured over a time
    assert h.count_in_file(log, "Full resync from master") <= transfers + 1
    assert int(master.info("stats")["sync_full"]) == 1


def test_identity_from_snapshot_after_restart(cluster, fake):
    """Restarted while its upstream is away, the relay still reports the upstream's version (from
    its cached snapshot's aux fields), so a relay below announces the right one."""
    up = fake(payload=rdb(b"VALKEY080", "9.1.2", "valkey-ver"))
    relay = cluster.relay(up)
    wait_link_up(relay)
    up.stop()
    relay.restart()
    si = relay.info("server")
    assert si["server_name"] == "valkey" and si["valkey_version"] == "9.1.2", si
    assert relay_info(relay)["upstream_server"] == "unknown"  # the upstream itself said nothing
    assert hello(relay)["version"] == "9.1.2"


LEAF_TAGS = ["redis-7.0", "valkey-8.0", "valkey-8.1", "redis-8.0", "valkey-9"]


def available(tags):
    return [t for t in tags if t == "redis-7.0" or
            os.access(os.path.join(SERVERS, t, "server"), os.X_OK)]


def test_every_stock_leaf_attaches(cluster):
    """Every leaf version's handshake (REPLCONF version, capa rdb-channel-repl, ...) is accepted:
    under a Redis 7.0 master (RDB 10, which all of them load) each one converges through the
    relay; under a Valkey 9 master (VALKEY080) only Valkey 9 loads the snapshot, and every
    other one is refused at PSYNC time without a transfer."""
    tags = available(LEAF_TAGS)
    if len(tags) < 2:
        pytest.skip("no servers in %s besides Debian's redis 7.0: run scripts/servers" % SERVERS)
    master = server(cluster, "redis-7.0", "redis70-master", extra=["--repl-backlog-size", "64mb"])
    h.preload(master.port, keys_per_db=300)
    relay = cluster.relay(master)
    wait_link_up(relay)
    leaves = [server(cluster, t, t + "-leaf", replicaof=relay.port) for t in tags]
    master.r.set("marker", "after")
    for leaf in leaves:
        wait_for(lambda: leaf.r.get("marker") == "after", 20, "the write to reach " + leaf.name)
        assert leaf.r.dbsize() == master.r.dbsize(), leaf.name
    assert int(relay_info(relay)["replicas_refused"]) == 0
    assert int(master.info("stats")["sync_full"]) == 1

    if "valkey-9" not in tags:
        return
    vmaster = server(cluster, "valkey-9", "valkey9-master")
    h.preload(vmaster.port, keys_per_db=100)
    vrelay = cluster.relay(vmaster, "relay-valkey9")
    wait_link_up(vrelay)
    vleaves = {t: server(cluster, t, t + "-under-valkey9", replicaof=vrelay.port,
                         wait_synced=(t == "valkey-9")) for t in tags}
    others = [t for t in tags if t != "valkey-9"]
    wait_for(lambda: int(relay_info(vrelay)["replicas_refused"]) == len(others), 30,
             "the relay to refuse %s" % others, describe=cluster.describe)
    for t in others:
        log = os.path.join(vleaves[t].dir, "redis.log")
        wait_for(lambda: h.count_in_file(log, "cannot load") >= 1, 10, t + " to log the refusal")
        assert h.count_in_file(log, "Full resync from") == 0, t
        assert h.count_in_file(log, "Retrying with SYNC") == 0, t
    assert vleaves["valkey-9"].r.dbsize() == vmaster.r.dbsize()
    assert int(relay_info(vrelay)["full_syncs_served"]) == 1


def test_relay_below_relay_learns_the_version(cluster, fake):
    """Two relays started together under a Valkey 9 upstream: the lower one may first see the
    upper one before it knows its upstream (and be refused the VALKEY snapshot as a leaf that
    announced nothing); it asks INFO again on its next attempt, announces 9.1.2 and syncs."""
    up = fake(delay=1.0)
    top = cluster.relay(up, "top")
    low = cluster.relay(top, "low")
    wait_link_up(top)
    wait_link_up(low, timeout=30)
    ri = relay_info(low)
    assert ri["upstream_server"] == "valkey" and ri["upstream_version"] == "9.1.2", ri
    assert ri["upstream_announced_version"] == "9.1.2"
    assert int(ri["snapshot_rdb_version"]) == 80
    assert int(relay_info(top)["replicas_refused"]) == 0  # re-judged by its announcement
