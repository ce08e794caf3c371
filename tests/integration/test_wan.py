"""Two datacenters joined by an emulated WAN (tests/wan/wanem: 50 ms one way, so 100 ms RTT,
10 Mbit/s per direction): DC A's relay replicates from the master, DC B's relay from DC A's
relay across the WAN, DC B's leaves from DC B's relay. The link between the two relays is
cascade's framing with zstd; stock peers never see it. No timed assertions: every wait is a
bounded wait on a condition."""

import ctypes
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest

import harness as h

RTT_MS = 100
RATE = 10_000_000 // 8  # 10 Mbit/s in bytes per second
WANEM_BIN = os.environ.get("WANEM_BIN", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(h.CASCADE_BIN))), "tests", "wan", "wanem"))

pytestmark = pytest.mark.skipif(not os.access(WANEM_BIN, os.X_OK),
                                reason="tests/wan/wanem not built (%s)" % WANEM_BIN)


class WanEm:
    """The emulator as a process of the cluster (stopped by pid in teardown)."""

    def __init__(self, cluster, target, name="wan", delay_ms=RTT_MS // 2, rate=RATE):
        self.name = name
        self.port = h.free_port()
        self.control_port = h.free_port()
        self.log = os.path.join(cluster.tmp, "%s.log" % name)
        self.proc = cluster.popen([WANEM_BIN, "--listen", str(self.port), "--target",
                                   str(target.port), "--control", str(self.control_port),
                                   "--delay-ms", str(delay_ms), "--rate", str(rate)], self.log)
        h.wait_for(self._up, 10, "%s to listen" % name)

    def _up(self):
        try:
            self.cmd("stats")
            return True
        except OSError:
            return False

    def cmd(self, line):
        with socket.create_connection((h.HOST, self.control_port), timeout=5) as s:
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                got = s.recv(256)
                if not got:
                    break
                buf += got
        reply = buf.decode().strip()
        assert reply.startswith("OK"), "wanem %r: %r" % (line, reply)
        return reply

    def stats(self):
        parts = dict(kv.split("=") for kv in self.cmd("stats").split()[1:])
        return {k: int(v) for k, v in parts.items()}


class JsonWriter(threading.Thread):
    """Application-like writes: JSON documents with SET EX, HSET of profile fields, INCRBY
    counters, ZADD leaderboards; pipelined in batches, rate-limited by batch count."""

    def __init__(self, port, seed=1, batches_per_s=50, batch=20):
        super().__init__(daemon=True, name="json-writer-%d" % port)
        self.port = port
        self.rnd = random.Random(seed)
        self.batches_per_s = batches_per_s
        self.batch = batch
        self.count = 0
        self.error = None
        self._stop_ev = threading.Event()

    def doc(self, i):
        r = self.rnd
        return ('{"id":%d,"user":"user-%d","email":"user%d@example.com","plan":"%s",'
                '"score":%d,"tags":["%s","%s"],"active":%s,"updated":"2026-12-01T%02d:%02d:00Z"}'
                % (i, i % 5000, i % 5000, r.choice(["free", "pro", "team"]), r.randrange(10**6),
                   r.choice(["red", "blue", "green"]), r.choice(["eu", "us", "ap"]),
                   r.choice(["true", "false"]), r.randrange(24), r.randrange(60)))

    def write_batch(self, c):
        p = c.pipeline(transaction=False)
        for _ in range(self.batch):
            i = self.rnd.randrange(20000)
            op = self.count % 4
            if op == 0:
                p.set("doc:%d" % i, self.doc(i), ex=3600)
            elif op == 1:
                p.hset("profile:%d" % i, mapping={"name": "user-%d" % i, "city": "Berlin",
                                                  "visits": self.rnd.randrange(1000)})
            elif op == 2:
                p.incrby("counter:%d" % (i % 500), self.rnd.randrange(1, 10))
            else:
                p.zadd("board:%d" % (i % 20), {"user-%d" % i: self.rnd.randrange(10**6)})
            self.count += 1
        p.execute()

    def run(self):
        c = h.client(self.port)
        try:
            n = 0
            while not self._stop_ev.is_set():
                self.write_batch(c)
                n += 1
                self._stop_ev.wait(1.0 / self.batches_per_s)
        except Exception as e:  # noqa: BLE001 - re-raised by stop()
            self.error = e
        finally:
            c.close()

    def wait_count(self, n, timeout=60.0):
        target = self.count + n
        h.wait_for(lambda: self.count >= target or self.error, timeout, "%d writes" % n)

    def stop(self):
        self._stop_ev.set()
        self.join(10)
        if self.error:
            raise self.error


CLONE_NEWNET = 0x40000000


class NetNs:
    """A network namespace of its own for one test: this thread (pytest's, which starts every
    process and thread of the test) enters it, so the whole test runs on that namespace's
    loopback and an nftables table there can drop a link's packets without touching the
    host. close() returns to the original namespace and deletes this one."""

    def __init__(self):
        self.name = "cascade-wan-%d" % os.getpid()
        self.libc = ctypes.CDLL(None, use_errno=True)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.orig = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            fd = os.open("/run/netns/" + self.name, os.O_RDONLY)
            try:
                if self.libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            self.nft("add table inet cascade_wan")
            self.nft("add chain inet cascade_wan out { type filter hook output priority 0 ; }")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def nft(rule):
        subprocess.run(["nft"] + rule.split(), check=True)

    def drop_port(self, port):
        """Every packet to or from `port` vanishes: no reset, no ICMP, the sockets stay open."""
        self.nft("add rule inet cascade_wan out tcp dport %d drop" % port)
        self.nft("add rule inet cascade_wan out tcp sport %d drop" % port)

    def heal(self):
        self.nft("flush chain inet cascade_wan out")

    def close(self):
        if self.orig is not None:
            self.libc.setns(self.orig, CLONE_NEWNET)
            os.close(self.orig)
            self.orig = None
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def netns_usable():
    return os.geteuid() == 0 and shutil.which("ip") and shutil.which("nft")


@pytest.fixture
def netns():
    if not netns_usable():
        pytest.skip("network namespaces need root, ip and nft")
    ns = NetNs()
    yield ns
    ns.close()


@pytest.fixture
def cluster(tmp_path):
    c = h.Cluster(tmp_path)
    yield c
    reports, errors = c.teardown()
    assert not reports, "sanitizer reports:\n" + "\n".join(reports)
    assert not errors, "\n".join(errors)


def relay_info(node):
    return h.info(node.client(), "relay")


def two_dcs(cluster, leaves=2, extra_b=()):
    m = cluster.master()
    a = cluster.relay(m, "dcA-relay")
    h.wait_link_up(a)
    wan = WanEm(cluster, a)
    b = cluster.relay(wan, "dcB-relay", extra=list(extra_b))
    h.wait_link_up(b)
    ls = [cluster.replica(b, "dcB-leaf%d" % i) for i in range(leaves)]
    return m, a, wan, b, ls


def test_two_dcs_converge_compressed(cluster):
    m, a, wan, b, leaves = two_dcs(cluster)
    before = wan.stats()["down"]
    w = JsonWriter(m.port)
    w.start()
    w.wait_count(20000)
    w.stop()
    h.wait_digests_equal(m, leaves, relays=[a, b])
    ib = relay_info(b)
    assert ib["upstream_link"] == "zstd"
    stream = ib["stream_bytes_in"]
    wire = wan.stats()["down"] - before
    print("WAN bytes per stream byte: %.3f (%d wire, %d stream; link ratio %.3f)"
          % (wire / stream, wire, stream, ib["upstream_link_ratio"]))
    # What crossed the emulated WAN is the framed, compressed link: far less than the stream.
    assert wire < stream / 2, (wire, stream)
    # A's side reports the same link.
    rep = relay_info(a)["replica0"]
    assert rep["link"] == "zstd" and rep["link_wire_bytes"] < rep["link_raw_bytes"]
    # The leaves are stock replicas of B: they got the plain stream.
    ib = relay_info(b)
    reps = [ib["replica%d" % i] for i in range(len(leaves))]
    assert all(r["link"] == "plain" for r in reps), reps


def test_dc_b_online_from_nothing_compressed(cluster):
    m = cluster.master()
    c = m.client()
    rnd = random.Random(7)
    for start in range(0, 100_000, 5000):
        p = c.pipeline(transaction=False)
        for i in range(start, start + 5000):
            p.set("doc:%d" % i, '{"id":%d,"name":"user-%d","plan":"%s","score":%d}'
                  % (i, i, rnd.choice(["free", "pro"]), rnd.randrange(10**6)))
        p.execute()
    a = cluster.relay(m, "dcA-relay")
    h.wait_link_up(a)
    wan = WanEm(cluster, a)
    b = cluster.relay(wan, "dcB-relay")
    h.wait_link_up(b, timeout=120)
    leaf = cluster.replica(b, "dcB-leaf")
    h.wait_digests_equal(m, [leaf], relays=[a, b])
    ib = relay_info(b)
    assert ib["upstream_full_syncs"] == 1
    assert ib["upstream_link"] == "zstd"
    snap = ib["snapshot_size"]
    wire = wan.stats()["down"]
    print("1e5 keys: RDB %d bytes, %d on the WAN (%.3f)" % (snap, wire, wire / snap))
    assert wire < snap, (wire, snap)  # the RDB crossed compressed


def test_wan_silent_redial_psync(cluster):
    m, a, wan, b, leaves = two_dcs(cluster)
    w = JsonWriter(m.port)
    w.start()
    try:
        w.wait_count(2000)
        wan.cmd("blackhole on")
        t0 = time.monotonic()
        # The link is open but silent: B hears no heartbeat and redials (bounded wait).
        h.wait_for(lambda: h.count_in_file(b.logs[0], "no heartbeat from the upstream relay") > 0,
                   20, "DC B's relay to notice the silent link", describe=b.describe)
        print("silent link noticed after %.1f s" % (time.monotonic() - t0))
        # DC B's leaves keep serving reads meanwhile.
        for leaf in leaves:
            assert leaf.client().ping()
            leaf.client().dbsize()
        wan.cmd("blackhole off")
        w.wait_count(2000)
    finally:
        w.stop()
    h.wait_digests_equal(m, leaves, relays=[a, b])
    ib = relay_info(b)
    assert ib["upstream_full_syncs"] == 1, ib  # the first sync only
    assert ib["upstream_partial_syncs"] >= 1, ib
    assert relay_info(a)["full_syncs_served"] == 1
    for leaf in leaves:
        assert leaf.full_syncs_in_log() <= 1


def test_repoint_compressed_to_stock_and_back(cluster):
    m, a, wan, b, leaves = two_dcs(cluster, leaves=1)
    w = JsonWriter(m.port, batches_per_s=20)
    w.start()
    try:
        w.wait_count(1000)
        assert relay_info(b)["upstream_link"] == "zstd"
        assert b.client().execute_command("REPLICAOF", h.HOST, str(m.port))
        h.wait_for(lambda: relay_info(b)["upstream_link"] == "plain"
                   and relay_info(b)["upstream_state"] == "stream", 30,
                   "DC B's relay to stream from the stock master", describe=b.describe)
        w.wait_count(1000)
        assert b.client().execute_command("REPLICAOF", h.HOST, str(wan.port))
        h.wait_for(lambda: relay_info(b)["upstream_link"] == "zstd"
                   and relay_info(b)["upstream_state"] == "stream", 30,
                   "DC B's relay to stream from DC A's relay again", describe=b.describe)
        w.wait_count(1000)
    finally:
        w.stop()
    h.wait_digests_equal(m, leaves, relays=[a, b])
    ib = relay_info(b)
    assert ib["upstream_full_syncs"] == 1, ib
    assert ib["upstream_partial_syncs"] >= 2, ib
    assert leaves[0].full_syncs_in_log() <= 1


def test_dropped_packets_redial_psync(netns, cluster):
    """The same silence made by the kernel: in a namespace of its own, an nftables rule drops
    every packet between the two relays (the sockets stay open, TCP retransmits into the
    void). DC B's relay redials on its own, its leaves keep serving reads, and once the
    packets flow again it continues with PSYNC; no full sync anywhere."""
    m = cluster.master()
    a = cluster.relay(m, "dcA-relay")
    h.wait_link_up(a)
    b = cluster.relay(a, "dcB-relay")
    h.wait_link_up(b)
    leaves = [cluster.replica(b, "dcB-leaf%d" % i) for i in range(2)]
    assert relay_info(b)["upstream_link"] == "zstd"
    w = JsonWriter(m.port)
    w.start()
    try:
        w.wait_count(2000)
        netns.drop_port(a.port)
        t0 = time.monotonic()
        h.wait_for(lambda: h.count_in_file(b.logs[0], "no heartbeat from the upstream relay") > 0,
                   20, "DC B's relay to notice the dropped link", describe=b.describe)
        print("dropped link noticed after %.1f s" % (time.monotonic() - t0))
        for leaf in leaves:
            assert leaf.client().ping()
            leaf.client().dbsize()
        netns.heal()
        w.wait_count(2000)
    finally:
        w.stop()
    h.wait_digests_equal(m, leaves, relays=[a, b])
    ib = relay_info(b)
    assert ib["upstream_full_syncs"] == 1, ib
    assert ib["upstream_partial_syncs"] >= 1, ib
    assert relay_info(a)["full_syncs_served"] == 1
    for leaf in leaves:
        assert leaf.full_syncs_in_log() <= 1


def test_dropped_packets_stock_master_tcp_user_timeout(netns, cluster):
    """Against a stock master (no heartbeat; it PINGs every 10 s and repl-timeout is 60 s) the
    kernel notices a dead route: the relay's REPLCONF ACKs stay unacknowledged and
    TCP_USER_TIMEOUT (upstream.tcp-user-timeout, 15 s by default) breaks the link long before
    repl-timeout; the relay redials and continues with PSYNC once packets flow again."""
    m = cluster.master()
    a = cluster.relay(m, "relay")
    h.wait_link_up(a)
    leaf = cluster.replica(a, "leaf")
    w = JsonWriter(m.port, batches_per_s=10)
    w.start()
    try:
        w.wait_count(500)
        # Only the relay's connection: the writer's own connection to the master stays up.
        reps = m.client().client_list(_type="replica")
        assert len(reps) == 1, reps
        netns.drop_port(int(reps[0]["addr"].rsplit(":", 1)[1]))
        t0 = time.monotonic()
        h.wait_for(lambda: h.count_in_file(a.logs[0], "link lost: Connection timed out") > 0,
                   40, "the relay to notice the dead route", describe=a.describe)
        print("dead route to the stock master noticed after %.1f s" % (time.monotonic() - t0))
        netns.heal()
        w.wait_count(500)
    finally:
        w.stop()
    h.wait_digests_equal(m, [leaf], relays=[a])
    ia = relay_info(a)
    assert ia["upstream_link"] == "plain"
    assert ia["upstream_full_syncs"] == 1, ia
    assert ia["upstream_partial_syncs"] >= 1, ia


def test_snapshot_refresh_across_wan_compressed(cluster):
    """DC B's relay refreshes its snapshot on a side connection (snapshot.refresh-after); the
    side link asks for framing too, so the fresh RDB crosses the WAN compressed, and the
    session on DC A's side closes once its last frames are out."""
    refresh = ["--set", "snapshot.refresh-after=256kb", "--set", "snapshot.min-interval=1s"]
    m = cluster.master()
    a = cluster.relay(m, "dcA-relay", extra=refresh)  # A refreshes from the master too
    h.wait_link_up(a)
    wan = WanEm(cluster, a)
    b = cluster.relay(wan, "dcB-relay", extra=refresh)
    h.wait_link_up(b)
    first = relay_info(b)["snapshot_offset"]
    w = JsonWriter(m.port)
    w.start()
    try:
        w.wait_count(5000)
    finally:
        w.stop()
    h.wait_for(lambda: relay_info(b)["snapshot_offset"] > first
               and relay_info(b)["snapshot_fetch_in_progress"] == 0, 60,
               "DC B's relay to fetch a fresh snapshot", describe=b.describe)
    assert h.info(b.client(), "stats")["snapshot_fetches"] >= 1
    # Both of A's sessions toward B were framed with zstd: the main link and the side fetch.
    assert h.count_in_file(a.logs[0], "cascade link: zstd frames") >= 2
    # The fetch session did not linger until replicas.timeout: only the main link is left.
    h.wait_for(lambda: h.info(a.client(), "replication")["connected_slaves"] == 1, 30,
               "DC A's side session to close")
    leaf = cluster.replica(b, "dcB-leaf")
    h.wait_digests_equal(m, [leaf], relays=[a, b])


def test_far_behind_served_from_disk_framed(cluster):
    """DC B's relay away (blackholed) for longer than DC A's in-memory backlog: when it comes
    back its PSYNC is served from DC A's disk log, through the framing (file pieces are
    compressed like blocks), with no full sync."""
    m = cluster.master()
    a = cluster.relay(m, "dcA-relay", extra=["--set", "backlog.size=256kb"])
    h.wait_link_up(a)
    wan = WanEm(cluster, a)
    b = cluster.relay(wan, "dcB-relay")
    h.wait_link_up(b)
    leaf = cluster.replica(b, "dcB-leaf")
    w = JsonWriter(m.port)
    w.start()
    try:
        w.wait_count(1000)
        wan.cmd("blackhole on")
        h.wait_for(lambda: h.count_in_file(b.logs[0], "no heartbeat from the upstream relay") > 0,
                   20, "DC B's relay to notice the silent link", describe=b.describe)
        held = h.repl_offset(b)
        h.wait_for(lambda: h.info(a.client(), "replication")["repl_backlog_first_byte_offset"]
                   > held + 1, 60, "DC A's memory to move past DC B's offset")
        wan.cmd("blackhole off")
        w.wait_count(1000)
    finally:
        w.stop()
    h.wait_digests_equal(m, [leaf], relays=[a, b])
    assert relay_info(b)["upstream_full_syncs"] == 1
    rep = relay_info(a)["replica0"]
    assert rep["link"] == "zstd", rep
    assert rep["from_disk_bytes"] > 0, rep
