"""Name resolution never blocks the relay (issue 14, item 9): upstream.host is looked up with
libevent's evdns through the resolv.conf named by relay.resolv-conf. Here that file names a
local UDP "DNS server" that reads queries and never answers: while the relay's lookup hangs on
it, the relay keeps answering clients and keeps its replica; the lookup is bounded by
upstream.connect-timeout, and re-pointed at a reachable name the link continues."""
import os
import socket
import threading

import pytest

import harness as h
from harness import count_in_file, wait_digests_equal, wait_for, wait_link_up

pytestmark = pytest.mark.relay_only


class SilentDNS:
    """A UDP socket on loopback that counts the queries it gets and answers none."""

    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((h.HOST, 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.queries = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                data, _ = self.s.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries.append(data)

    def asked_for(self, name):
        label = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
        return any(label in q.lower() for q in self.queries)  # evdns randomizes the case

    def stop(self):
        self.stop_ev.set()
        self.t.join(5)
        self.s.close()


@pytest.fixture
def silent_dns():
    d = SilentDNS()
    yield d
    d.stop()


def test_silent_resolver_never_stalls_the_relay(cluster, silent_dns, tmp_path):
    conf = os.path.join(str(tmp_path), "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1:%d\n" % silent_dns.port)
    m = cluster.master()
    h.preload(m.port, keys_per_db=300)
    # "localhost" comes from /etc/hosts, without asking the silent server
    relay = cluster.relay(None, "relay", extra=[
        "--upstream", "localhost:%d" % m.port, "--set", "relay.resolv-conf=" + conf,
        "--set", "upstream.connect-timeout=4s"])
    wait_link_up(relay)
    r1 = cluster.replica(relay, "r1")
    wait_digests_equal(m, [r1], relays=[relay])

    name = "upstream.cascade-test.invalid"
    assert relay.client().execute_command("REPLICAOF", name, m.port) in (b"OK", "OK", True)
    wait_for(lambda: silent_dns.asked_for(name), 10, "the relay's query at the silent server",
             describe=lambda: repr(silent_dns.queries))
    # The lookup hangs on a server that never answers; the loop does not.
    for _ in range(5):
        c = h.client(relay.port, timeout=2.0)
        assert c.ping()
        info = c.info("relay")
        assert info["upstream_state"] == "connecting", info
        assert c.info("replication")["connected_slaves"] == 1
    wait_for(lambda: count_in_file(relay.logs[0], "link failed: timed out connecting") >= 1, 20,
             "the lookup to be bounded by connect-timeout",
             describe=lambda: h.tail(relay.logs[0]))
    assert relay.popen.poll() is None
    # Back to a name that resolves: the relay continues (PSYNC) and the replica follows.
    assert relay.client().execute_command("REPLICAOF", "localhost", m.port) in (b"OK", "OK", True)
    wait_link_up(relay)
    with cluster.writer(m) as w:
        w.wait_count(100)
    wait_digests_equal(m, [r1], relays=[relay])
    assert int(m.info("stats")["sync_full"]) == 1, "the relay's history was lost"
