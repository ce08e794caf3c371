"""The relay following Sentinel ([upstream] sentinels, master-name): real redis-sentinel and
redis-server processes. A failover of the master is followed through psync2: the relay
re-points itself at the promoted replica, and no replica behind it full-syncs."""
import os
import shutil

import pytest

import harness as h
from harness import wait_digests_equal, wait_for, wait_link_up

pytestmark = [
    pytest.mark.relay_only,
    pytest.mark.skipif(shutil.which("redis-sentinel") is None, reason="redis-sentinel missing"),
]


def start_sentinel(cluster, master, name="sentinel"):
    port = h.free_port()
    d = cluster._dir(name)
    conf = os.path.join(d, "sentinel.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind %s\ndaemonize no\ndir %s\nlogfile %s\n" %
                (port, h.HOST, d, os.path.join(d, "sentinel.log")))
        f.write("sentinel monitor mymaster %s %d 1\n" % (h.HOST, master.port))
        f.write("sentinel down-after-milliseconds mymaster 1000\n")
        f.write("sentinel failover-timeout mymaster 10000\n")
    proc = cluster.popen(["redis-sentinel", conf], os.path.join(d, "stdout.log"))
    c = h.client(port)
    wait_for(lambda: c.ping(), 10, "sentinel to answer PING")
    return port, c, os.path.join(d, "sentinel.log"), proc


def test_relay_follows_sentinel_failover(cluster):
    m = cluster.master()
    p = cluster.replica(m, "promotable")
    sport, sc, slog, _ = start_sentinel(cluster, m)
    relay = cluster.relay(None, "relay", extra=[
        "--set", "upstream.sentinels=%s:%d" % (h.HOST, sport),
        "--set", "upstream.master-name=mymaster"])
    wait_link_up(relay)
    assert int(relay.info("replication")["master_port"]) == m.port
    a = cluster.replica(relay, "a")
    b = cluster.replica(relay, "b")
    with cluster.writer(m, dbs=(0, 1)) as w:
        w.wait_count(300)
    wait_digests_equal(m, [p, a, b], relays=[relay])
    # Sentinel must know the promotable replica before the master goes away.
    wait_for(lambda: len(sc.execute_command("SENTINEL", "REPLICAS", "mymaster")) >= 1, 20,
             "sentinel to discover the replicas")
    full_a, full_b = a.full_syncs_in_log(), b.full_syncs_in_log()

    # Sentinel knows the relay as a replica of the master and talks to it (INFO, and its hello
    # channel: SUBSCRIBE on the relay), but never lists it: the relay says replica_announced:0
    # (Sentinel's addReplyDictOfRedisInstances skips such replicas), so clients that pick read
    # replicas through Sentinel (redis-py's Sentinel.discover_slaves) never read from a relay,
    # which holds no data.
    def listed_ports():
        ports = set()
        for rep in sc.execute_command("SENTINEL", "REPLICAS", "mymaster"):
            d = dict(zip(rep[::2], rep[1::2])) if isinstance(rep, list) else rep
            ports.add(int(d["port"]))
        return ports
    assert int(relay.info("replication")["replica_announced"]) == 0
    wait_for(lambda: p.port in listed_ports(), 20, "sentinel to list the promotable replica")
    wait_for(lambda: "cmd=subscribe" in str(relay.r.execute_command("CLIENT", "LIST")), 20,
             "sentinel to subscribe to its hello channel on the relay")

    assert relay.port not in listed_ports()
    import redis.sentinel
    snt = redis.sentinel.Sentinel([(h.HOST, sport)], socket_timeout=5)
    slaves = snt.discover_slaves("mymaster")
    assert (h.HOST, p.port) in slaves and all(port != relay.port for _, port in slaves), slaves

    m.kill9()
    wait_for(lambda: p.info("replication")["role"] == "master", 30,
             "sentinel to promote the replica", describe=lambda: h.tail(slog))
    wait_for(lambda: int(relay.info("replication")["master_port"]) == p.port, 20,
             "the relay to follow +switch-master", describe=lambda: relay.describe())
    wait_link_up(relay)
    with cluster.writer(p, dbs=(0, 1), prefix="after") as w:
        w.wait_count(300)
    wait_digests_equal(p, [a, b], relays=[relay])

    # The relay continued through psync2, and nobody behind it full-synced.
    st = p.info("stats")
    assert int(st["sync_partial_ok"]) >= 1, st
    assert int(st["sync_full"]) == 0, st
    assert a.full_syncs_in_log() == full_a and b.full_syncs_in_log() == full_b
    assert int(relay.info("replication")["slave_priority"]) == 0


def test_bad_sentinel_list_is_a_config_error(tmp_path):
    import subprocess
    r = subprocess.run([h.CASCADE_BIN, "--dir", str(tmp_path), "--port", str(h.free_port()),
                        "--set", "upstream.sentinels=nonsense"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1
    assert "upstream.sentinels" in r.stderr
