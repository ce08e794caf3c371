"""Serve nothing unverified (issue 13, upstream side): the relay's EOF marks cannot be guessed,
an RDB is served only once its CRC-64 checks out (from the upstream, and the cached file after
a restart), and a lying upstream (absurd offsets, +CONTINUE out of nowhere, impossible bulk
lengths, a link that dies right after each RDB) gets a protocol error and a reconnect with
backoff, never an abort. Fake upstreams are small Python servers on loopback; everything else
is a real redis-server and the real relay binary."""
import ctypes
import os
import threading
import time

import pytest

import harness as h
from harness import count_in_file, wait_digests_equal, wait_for, wait_link_up

pytestmark = pytest.mark.relay_only

REPLID = "a" * 40


def relay_log(relay):
    return relay.logs[0]


def relay_stat(relay, field, section="stats"):
    return int(relay.info(section)[field])


# --------------------------------------------------------------------------------------------
# RDB bytes

def _crc64_table():
    poly = 0x95AC9329AC4BC9B5  # Jones, reflected: Redis' crc64
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC64 = _crc64_table()


def crc64(data, crc=0):
    for b in data:
        crc = _CRC64[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def tiny_rdb(keys=(), checksum=True):
    """A valid RDB (format 10) holding string keys in db 0."""
    body = bytearray(b"REDIS0010")
    body += b"\xfe\x00"  # SELECTDB 0
    for k, v in keys:
        body += b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v
    body += b"\xff"
    crc = crc64(bytes(body)) if checksum else 0
    return bytes(body) + crc.to_bytes(8, "little")


assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # Redis' own check value


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


# --------------------------------------------------------------------------------------------
# a scripted fake master

class ScriptedMaster(h.FakeMaster):
    """The harness' fake master (INFO refused, as an ACL may), answering the n-th PSYNC with
    script(n, psync_args) -> bytes (or a list of pieces sent apart), then closing (close_after) or staying silent until the
    relay hangs up. psync_args records every PSYNC's (replid, offset)."""

    def __init__(self, script, close_after=True):
        super().__init__(info=None)
        self.script = script
        self.close_after = close_after
        self.psync_args = []

    def psync_reply(self, c, args, n):
        self.psync_args.append(tuple(args[1:3]))
        out = self.script(n, args[1:])
        for i, piece in enumerate(out if isinstance(out, list) else [out]):
            if i:
                time.sleep(0.3)  # the peer's pacing: the relay reads each piece on its own
            c.sendall(piece)
        return not self.close_after


@pytest.fixture
def fake_master():
    made = []

    def make(script, close_after=True):
        m = ScriptedMaster(script, close_after)
        m.start()
        made.append(m)
        return m
    yield make
    for m in made:
        m.stop()


def fullresync(offset, rdb):
    return b"+FULLRESYNC %s %d\r\n$%d\r\n" % (REPLID.encode(), offset, len(rdb)) + rdb


def wait_log(relay, needle, n=1, timeout=20):
    wait_for(lambda: count_in_file(relay_log(relay), needle) >= n, timeout,
             "%r in the relay's log" % needle, describe=lambda: h.tail(relay_log(relay)))


# --------------------------------------------------------------------------------------------
# the EOF mark

def glibc_seed1_marks(n):
    """The marks an unseeded rand() gave: glibc's seed-1 sequence, 40 hex digits each."""
    libc = ctypes.CDLL("libc.so.6")
    libc.srand(1)
    hexd = "0123456789abcdef"
    return ["".join(hexd[libc.rand() & 15] for _ in range(40)) for _ in range(n)]


def capture_mark(cluster, master, name):
    """A fresh relay behind a slowed link; a raw replica attaches while the relay's own RDB
    arrives and is streamed it: returns the $EOF: mark it was given."""
    proxy = cluster.fault_proxy(master, name="proxy-" + name)
    proxy.throttle(200_000)
    relay = cluster.relay(proxy, name)
    wait_for(lambda: relay.info("relay")["upstream_state"] == "rdb", 20,
             "the relay's full sync to start")
    raw = h.RawReplica(relay.port, "?", -1)
    try:
        assert raw.reply.startswith(b"+FULLRESYNC"), raw.reply
        pre = raw.stream(5 + 40 + 2)
        assert pre.startswith(b"$EOF:") and pre.endswith(b"\r\n"), pre
        return pre[5:45].decode()
    finally:
        raw.close()
        proxy.throttle(None)
        relay.stop()


class SplitMarkMaster(ScriptedMaster):
    """+FULLRESYNC, a diskless RDB and the first `split` bytes of its end mark; then, once
    `release` is set, the rest of the mark and one command."""

    def __init__(self, rdb, mark, split):
        super().__init__(None, close_after=False)
        self.rdb, self.mark, self.split = rdb, mark, split
        self.release = threading.Event()

    def psync_reply(self, c, args, n):
        c.sendall(b"+FULLRESYNC %s 100\r\n$EOF:%s\r\n" % (REPLID.encode(), self.mark)
                  + self.rdb + self.mark[:self.split])
        if not self.release.wait(30):
            return False
        c.sendall(self.mark[self.split:] + resp("SET", "a", "1"))
        return True


def test_end_mark_split_across_reads_is_never_streamed(cluster):
    """The upstream's diskless RDB ends with its mark split across two reads while a replica
    is streamed the RDB as it arrives. The mark's first bytes are in the relay's file until the
    rest arrives (then they are cut): the replica must never be sent them. It gets exactly the
    RDB, the relay's own mark, and then the stream."""
    rdb = tiny_rdb([(b"key:%d" % i, b"v" * 60) for i in range(20)])
    split = 22
    fm = SplitMarkMaster(rdb, os.urandom(20).hex().encode(), split)
    fm.start()
    try:
        relay = cluster.relay(fm, "relay")
        wait_for(lambda: relay.info("relay")["upstream_state"] == "rdb", 20,
                 "the relay's full sync to start")
        raw = h.RawReplica(relay.port, "?", -1)
        try:
            assert raw.reply.startswith(b"+FULLRESYNC"), raw.reply
            pre = raw.stream(47)
            assert pre.startswith(b"$EOF:") and pre.endswith(b"\r\n"), pre
            # All that is surely RDB so far: everything but the last 39 bytes the relay has.
            raw.stream(47 + len(rdb) + split - 39)
            fm.release.set()
            got = raw.stream(47 + len(rdb) + 40)
            assert got[47:47 + len(rdb)] == rdb, "the replica was not sent exactly the RDB"
            assert got[47 + len(rdb):] == pre[5:45], (
                "what follows the RDB is not the relay's mark", got[47 + len(rdb):])
        finally:
            raw.close()
        wait_link_up(relay)
        assert relay.alive()
    finally:
        fm.stop()


def test_eof_marks_are_fresh_and_planted_marks_harmless(cluster):
    """Two relay starts never share a mark, none is glibc's seed-1 sequence; values equal to
    those marks on the master (alone and inside larger values) never shorten a transfer: a
    stock replica and a second-level relay streamed the RDB, and a leaf behind that relay,
    all end with the master's data set."""
    old = glibc_seed1_marks(4)
    m = cluster.master()
    c = m.client()
    p = c.pipeline(transaction=False)
    for i, mark in enumerate(old):
        p.set("mark:%d" % i, mark)
        p.set("wrapped:%d" % i, "x" * 100 + mark + "y" * 100)
    for i in range(600):
        p.set("big:%d" % i, os.urandom(500).hex())  # ~0.6 MB, incompressible
    p.execute()

    marks = [capture_mark(cluster, m, "first"), capture_mark(cluster, m, "second")]
    assert marks[0] != marks[1], marks
    for mk in marks:
        assert mk not in old, mk
        assert len(mk) == 40 and all(ch in "0123456789abcdef" for ch in mk), mk

    proxy = cluster.fault_proxy(m)
    proxy.throttle(300_000)  # the relay's RDB takes ~2 s: replicas attach in the middle
    relay = cluster.relay(proxy, "relay")
    wait_for(lambda: relay.info("relay")["upstream_state"] == "rdb", 20,
             "the relay's full sync to start")
    leaf = cluster.replica(relay, "leaf", wait_synced=False)
    relay2 = cluster.relay(relay, "relay2")
    wait_for(lambda: count_in_file(relay_log(relay), "streaming the RDB at offset") >= 2, 20,
             "the stock replica and the second relay to be streamed the RDB in flight",
             describe=lambda: relay.describe())
    proxy.throttle(None)
    wait_link_up(relay)
    wait_link_up(relay2)
    leaf2 = cluster.replica(relay2, "leaf2")
    wait_link_up(leaf)
    with cluster.writer(m) as w:
        w.wait_count(100)
    wait_digests_equal(m, [leaf, leaf2], relays=[relay, relay2])
    for node in (leaf, leaf2):
        nc = node.client()
        for i, mark in enumerate(old):
            assert nc.get("mark:%d" % i) in (mark, mark.encode())
    assert relay_stat(relay2, "snapshots_rejected") == 0


# --------------------------------------------------------------------------------------------
# checked snapshots

def test_corrupt_cached_snapshot_is_discarded_and_refetched(cluster):
    """One bit flipped in the cached RDB while the relay is down: at start-up the file fails
    its check (logged, counted), is never sent, and a fresh one is fetched for the next full
    sync; the replica that gets it matches the master."""
    m = cluster.master()
    h.preload(m.port, keys_per_db=500)
    relay = cluster.relay(m, "relay")
    wait_link_up(relay)
    r1 = cluster.replica(relay, "r1")
    wait_digests_equal(m, [r1], relays=[relay])
    relay.stop()
    snaps = [f for f in os.listdir(relay.dir) if f.startswith("snapshot-") and f.endswith(".rdb")]
    assert len(snaps) == 1, os.listdir(relay.dir)
    path = os.path.join(relay.dir, snaps[0])
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0x10]))
    relay.start()
    relay.wait_ready()
    wait_link_up(relay)
    wait_log(relay, "fails its check: RDB checksum mismatch")
    assert relay_stat(relay, "snapshots_rejected") == 1
    r2 = cluster.replica(relay, "r2")
    wait_digests_equal(m, [r1, r2], relays=[relay])
    assert r2.info("replication")["master_link_status"] == "up"


def test_upstream_rdb_with_bad_checksum_is_never_kept(cluster, fake_master):
    """An upstream sends an RDB whose CRC-64 does not match: the relay refuses it (logged,
    counted), never reports its link up, offers replicas nothing (-NOMASTERLINK), and
    reconnects with backoff."""
    good = tiny_rdb([(b"k", b"v")])
    bad = bytearray(good)
    bad[14] ^= 1  # inside the value
    fm = fake_master(lambda n, args: fullresync(100, bytes(bad)), close_after=False)
    relay = cluster.relay(fm, "relay")
    wait_log(relay, "RDB rejected: RDB checksum mismatch")
    wait_for(lambda: relay_stat(relay, "snapshots_rejected") >= 2, 20, "a second attempt")
    info = relay.info("replication")
    assert info["master_link_status"] == "down", info
    data, _ = h.raw_exchange(relay.port, b"PSYNC ? -1\r\n")
    assert data.startswith(b"-NOMASTERLINK"), data
    assert count_in_file(relay_log(relay), "RDB complete") == 0


def test_unchecked_diskless_rdb_needs_a_stream_that_parses(cluster, fake_master):
    """A diskless RDB written without a checksum, followed by bytes that are not commands
    (what a value equal to the mark would leave behind): a failed full sync, nothing kept. The
    same RDB followed by a real command, arriving in two pieces, is kept."""
    rdb = tiny_rdb([(b"k", b"v")], checksum=False)
    mark = b"m" * 40
    tail = {"bytes": [b"$garbage-not-a-command\r\n"]}

    def script(n, args):
        head = b"+FULLRESYNC %s 100\r\n$EOF:%s\r\n" % (REPLID.encode(), mark) + rdb + mark
        return [head + tail["bytes"][0]] + tail["bytes"][1:]

    fm = fake_master(script, close_after=False)
    relay = cluster.relay(fm, "relay")
    wait_log(relay, "does not parse")
    assert relay_stat(relay, "snapshots_rejected") >= 1
    assert count_in_file(relay_log(relay), "RDB complete") == 0
    # the first command arrives in two reads: the probe carries its framing across them
    cmd = resp("SET", "a", "1")
    tail["bytes"] = [cmd[:14], cmd[14:]]
    wait_log(relay, "RDB complete")
    wait_link_up(relay)
    assert int(relay.info("replication")["master_repl_offset"]) == 100 + len(resp("SET", "a", "1"))


# --------------------------------------------------------------------------------------------
# a lying upstream

@pytest.mark.parametrize("case", ["huge_fullresync", "int64_max_fullresync", "offset_overflow",
                                  "continue_without_history", "huge_bulk", "huge_multibulk"])
def test_absurd_upstream_gets_a_protocol_error(cluster, fake_master, case):
    """Offsets no stream can reach, +CONTINUE with no history asked for, bulk and multibulk
    lengths no master sends: a protocol error and a reconnect with backoff; the relay stays up
    (under ASan/UBSan: no report) and never counts a byte past 2^62."""
    rdb = tiny_rdb([(b"k", b"v")])
    near = (1 << 62) - 10
    replies = {
        "huge_fullresync": (fullresync(9223372036854775700, rdb) + resp("SET", "a", "1") * 3,
                            "malformed +FULLRESYNC"),
        "int64_max_fullresync": (fullresync(9223372036854775807, rdb), "malformed +FULLRESYNC"),
        "offset_overflow": (fullresync(near, rdb) + resp("SET", "a", "1") * 3,
                            "the stream offset passes 2^62"),
        "continue_without_history": (b"+CONTINUE\r\n" + resp("SET", "a", "1"),
                                     "+CONTINUE in reply to PSYNC ? -1"),
        "huge_bulk": (fullresync(100, rdb) + b"*2\r\n$3\r\nSET\r\n$9223372036854775807\r\n",
                      "bulk length beyond what a master sends"),
        "huge_multibulk": (fullresync(100, rdb) + b"*9223372036854775807\r\n",
                           "multibulk length beyond what a master sends"),
    }
    payload, needle = replies[case]
    fm = fake_master(lambda n, args: payload, close_after=False)
    relay = cluster.relay(fm, "relay")
    wait_log(relay, needle, n=2)
    assert relay.popen.poll() is None, "the relay exited"
    off = int(relay.info("replication")["master_repl_offset"])
    assert 0 <= off <= 1 << 62, off
    assert relay.info("replication")["master_link_status"] == "down"
    assert relay.client().ping()


def test_link_that_dies_after_each_rdb_backs_off(cluster, fake_master):
    """An upstream that closes right after every RDB (each one a fork and an fsync on a real
    master) is redialled with a growing delay, not at once: before, 37 full syncs in 5 s."""
    rdb = tiny_rdb([(b"k", b"v")])
    fm = fake_master(lambda n, args: fullresync(100 + n, rdb) + resp("SET", "a", "1"))
    relay = cluster.relay(fm, "relay")
    wait_for(lambda: len(fm.psync_args) >= 2, 20, "two full syncs")
    start, t0 = len(fm.psync_args), time.monotonic()
    wait_for(lambda: time.monotonic() - t0 >= 5, 10, "a 5 s window")
    during = len(fm.psync_args) - start
    # reconnect-min 100 ms doubling: at most ~6 dials in 5 s; at once it was dozens
    assert during <= 8, "%d PSYNCs in 5 s after two failures" % during
    assert count_in_file(relay_log(relay), "RDB complete") >= 2
    assert relay.popen.poll() is None
