"""A highly available relay pair behind Debian's haproxy (config/haproxy-relay-pair.cfg).

Two relays follow the same master; the leaves (stock replicas) reach them through the real
haproxy, configured from the shipped example with only its addresses and password replaced.

- the health check passes only a relay whose upstream link is up: a relay with its link down is
  skipped although it is the active server, and it takes leaves again once its link is up;
- SIGKILL of the active relay under writes: the leaves reconnect through haproxy to the sibling
  and continue with a partial resync (no full sync anywhere: not on the leaves, not served by
  the sibling, not asked of the master), and every data set equals the master's.
"""

import os
import re
import shutil
import subprocess

import pytest

import harness as h
from harness import wait_connected_slaves, wait_digests_equal, wait_for, wait_link_up

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
EXAMPLE = os.path.join(h.REPO_ROOT, "config", "haproxy-relay-pair.cfg")
PASSWORD = "pair-secret"

pytestmark = pytest.mark.relay_only


def require_haproxy():
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy not installed (scripts/common.sh ensure_deps installs it)")


def haproxy_config(text, port, relays, password):
    """The shipped example with its listen address, servers and password replaced."""
    text, n = re.subn(r"^(\s*)bind :6380$", r"\g<1>bind %s:%d" % (h.HOST, port), text,
                      flags=re.M)
    assert n == 1, "example has no 'bind :6380' line"
    for name, relay in relays.items():
        text, n = re.subn(r"^(\s*server %s) \S+" % name, r"\1 %s:%d" % (h.HOST, relay.port), text,
                          flags=re.M)
        assert n == 1, "example has no 'server %s' line" % name
    text, n = re.subn(r'"AUTH change-me\\r\\n"', '"AUTH %s\\\\r\\\\n"' % password, text)
    assert n == 1, "example has no AUTH check"
    return text


def start_haproxy(cluster, relays, password=PASSWORD):
    port = h.free_port()
    with open(EXAMPLE) as f:
        text = haproxy_config(f.read(), port, relays, password)
    d = cluster._dir("haproxy")
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(text)
    r = subprocess.run([HAPROXY, "-c", "-f", cfg], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0, r.stdout
    log = os.path.join(d, "haproxy.log")
    p = cluster.popen([HAPROXY, "-db", "-f", cfg], log)

    def listening():
        assert p.poll() is None, "haproxy exited with %s" % p.returncode
        return not h._port_free(port)
    wait_for(listening, 10, "haproxy to listen on %d" % port, describe=lambda: h.tail(log))
    return port, log, p


def logged(path, needle):
    with open(path, errors="replace") as f:
        return needle in f.read()


def relay_behind(port):
    """The relay a new connection through haproxy lands on (its tcp_port), or None."""
    c = h.client(port, timeout=2.0, password=PASSWORD)
    try:
        return int(c.info("server")["tcp_port"])
    finally:
        c.close()


def leaf(cluster, name, proxy_port):
    """A stock replica whose master is haproxy's address."""
    return cluster.redis(name, extra=["--replicaof", h.HOST, str(proxy_port),
                                      "--masterauth", PASSWORD])


def stats(node, field):
    return int(node.info("stats").get(field, 0))


def require_example():
    assert os.path.isfile(EXAMPLE), EXAMPLE
    r = subprocess.run([HAPROXY, "-c", "-f", EXAMPLE], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    assert r.returncode == 0, r.stdout


def test_health_check_passes_only_a_linked_relay(cluster):
    require_haproxy()
    require_example()
    m = cluster.master()
    # relay-a, the active server, starts with no upstream: its link is down
    a = cluster.relay(None, "relay-a", extra=["--set", "relay.requirepass=" + PASSWORD],
                      password=PASSWORD)
    b = cluster.relay(m, "relay-b", extra=["--set", "relay.requirepass=" + PASSWORD],
                      password=PASSWORD)
    wait_link_up(b)
    port, log, _ = start_haproxy(cluster, {"relay-a": a, "relay-b": b})
    # haproxy starts with every server up; two failed checks take relay-a out
    wait_for(lambda: logged(log, "relay-a is DOWN"), 15, "haproxy to mark relay-a down",
             describe=lambda: h.tail(log))
    for _ in range(3):
        assert relay_behind(port) == b.port
    assert not logged(log, "relay-b is DOWN"), h.tail(log)
    # a leaf through haproxy syncs from relay-b
    r1 = leaf(cluster, "leaf", port)
    wait_link_up(r1)
    m.r.set("k", "v")
    wait_digests_equal(m, [r1], relays=[b])
    # relay-a's link comes up: it passes the check and takes new connections again
    a.r.execute_command("REPLICAOF", h.HOST, str(m.port))
    wait_link_up(a)
    wait_for(lambda: relay_behind(port) == a.port, 15, "haproxy to send new clients to relay-a",
             describe=lambda: h.tail(log))
    assert logged(log, "relay-a is UP"), h.tail(log)


def test_kill_active_relay_leaves_resync_partially_through_haproxy(cluster):
    require_haproxy()
    require_example()
    m = cluster.master()
    extra = ["--set", "relay.requirepass=" + PASSWORD]
    a = cluster.relay(m, "relay-a", extra=extra, password=PASSWORD)
    b = cluster.relay(m, "relay-b", extra=extra, password=PASSWORD)
    wait_link_up(a)
    wait_link_up(b)
    port, log, _ = start_haproxy(cluster, {"relay-a": a, "relay-b": b})
    wait_for(lambda: relay_behind(port) == a.port, 10, "haproxy to route to relay-a")
    h.preload(m.port, keys_per_db=500)
    leaves = [leaf(cluster, "leaf%d" % i, port) for i in range(2)]
    for r in leaves:
        wait_link_up(r)
    wait_connected_slaves(a, 2)
    assert int(b.info("replication")["connected_slaves"]) == 0

    w = cluster.writer(m, rate=1500)
    w.start()
    wait_for(lambda: w.count > 500, 20, "writes before the kill")
    master_full = stats(m, "sync_full")  # the two relays' first syncs
    leaf_full = [r.full_syncs_in_log() for r in leaves]
    leaf_partial = [r.partial_syncs_in_log() for r in leaves]
    assert leaf_full == [1, 1], leaf_full
    b_full, b_partial = stats(b, "sync_full"), stats(b, "sync_partial_ok")

    a.kill9()  # the active relay dies under writes
    wait_for(lambda: logged(log, "relay-a is DOWN"), 15, "haproxy to mark relay-a down",
             describe=lambda: h.tail(log))
    wait_connected_slaves(b, 2)
    for r in leaves:
        wait_link_up(r)
    count_at_move = w.count
    wait_for(lambda: w.count > count_at_move + 500, 20, "writes after the move")
    w.stop()
    wait_digests_equal(m, leaves, relays=[b])

    assert [r.full_syncs_in_log() for r in leaves] == leaf_full, cluster.describe()
    moved = [r.partial_syncs_in_log() - p for r, p in zip(leaves, leaf_partial)]
    assert all(n >= 1 for n in moved), (moved, cluster.describe())
    assert stats(b, "sync_full") == b_full
    assert stats(b, "sync_partial_ok") - b_partial >= 2
    assert stats(m, "sync_full") == master_full  # nobody went back to the master
    for r in leaves:
        i = r.info("replication")
        assert int(i["master_port"]) == port and i["master_link_status"] == "up", i
    # relay-b's log shows the leaves' PSYNCs continued; haproxy's that only relay-a went down
    assert h.count_in_file(b.logs[0], "partial resync from offset") >= 2, b.describe()
    assert not logged(log, "relay-b is DOWN"), h.tail(log)
