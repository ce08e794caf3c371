"""The relay's disk state under faults a disk makes: bytes changed in older log segments after a
SIGKILL, a meta file flipped, garbage, torn or shifted against its snapshot (and one written
before meta had a checksum), and a file system that fills up and frees again (a small tmpfs;
needs root). Real redis-server 7.0 processes and the relay binary; every scenario ends with the
replicas' DEBUG DIGEST equal to the master's and checks the relay's log lines.
"""

import errno
import os
import re
import subprocess

import pytest

import harness as h
from harness import preload, repl_offset, wait_digests_equal, wait_for, wait_link_up

MB = 1024 * 1024
EMPTY_DIGEST = "0" * 40


def converge(master, leaves, relays=()):
    d = wait_digests_equal(master, list(leaves), relays=list(relays))
    assert d != EMPTY_DIGEST, "dataset unexpectedly empty"
    return d


def relay_args(*kv):
    out = []
    for x in kv:
        out += ["--set", x]
    return out


def log_lines(proc, pattern):
    with open(proc.stderr_path, "r", errors="replace") as f:
        return [ln.rstrip() for ln in f if re.search(pattern, ln)]


def syncs(replica):
    return replica.full_syncs_in_log(), replica.partial_syncs_in_log()


def park(replica):
    """Point a stock replica at a dead port: it keeps its replid and offset for a later PSYNC."""
    assert replica.r.execute_command("REPLICAOF", h.HOST, str(h.free_port())) in ("OK", True)
    wait_for(lambda: replica.info("replication")["master_link_status"] == "down", 10,
             "%s to leave its master" % replica.name)
    return int(replica.info("replication")["master_repl_offset"])


def come_back(replica, relay, base):
    assert replica.r.execute_command("REPLICAOF", h.HOST, str(relay.port)) in ("OK", True)
    wait_for(lambda: sum(syncs(replica)) > sum(base), h.SYNC_TIMEOUT_S,
             "%s to resync" % replica.name, describe=lambda: replica.describe(25))
    h.wait_replica_synced(replica)


def blast(port, nbytes, value_size=16 * 1024, prefix="blast", keys=256):
    """About nbytes of stream as pipelined SETs of distinct values (each value names its key and
    a counter, so a changed byte is a wrong value)."""
    c = h.client(port)
    n, written = 0, 0
    try:
        while written < nbytes:
            p = c.pipeline(transaction=False)
            for _ in range(max(1, MB // value_size)):
                head = b"%s:%08d:" % (prefix.encode(), n)
                p.set("%s:%d" % (prefix, n % keys), (head * (value_size // len(head) + 1))[:value_size])
                n += 1
                written += value_size
            p.execute()
    finally:
        c.close()
    return written


def segments(d):
    return sorted(f for f in os.listdir(d) if re.match(r"log-\d+\.seg$", f))


def wait_log_caught_up(relay, master):
    wait_for(lambda: repl_offset(relay) == repl_offset(master), 20, "relay to catch up")
    wait_for(lambda: int(relay.info("relay")["disk_log_last_offset"]) == repl_offset(master), 10,
             "the disk log to take the last batch")


# ------------------------------------------------------------------------------------------------
# log segments


@pytest.mark.relay_only
def test_flipped_bytes_in_older_segments_full_sync_never_wrong_keys(cluster):
    m = cluster.master()
    preload(m.port, keys_per_db=300)
    relay = cluster.relay(m, extra=relay_args("backlog.size=64kb", "backlog.segment-size=256kb"))
    wait_link_up(relay)
    r1 = cluster.replica(relay, "r1")
    converge(m, [r1], [relay])
    parked = park(r1)
    blast(m.port, 3 * MB)
    wait_log_caught_up(relay, m)
    ri = relay.info("relay")
    assert int(ri["disk_log_first_offset"]) <= parked + 1, ri
    assert int(relay.info("replication")["repl_backlog_first_byte_offset"]) > parked + 1
    segs = segments(relay.dir)
    assert len(segs) >= 4, segs

    relay.kill9()
    # One byte inside a value in the middle of each older segment (the last one is checked
    # whole at recovery anyway).
    flipped = 0
    for name in segs[:-1]:
        path = os.path.join(relay.dir, name)
        with open(path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 1024:
                continue  # a segment the crash left (nearly) empty
            flipped += 1
            f.seek(size // 2)
            c = f.read(1)
            f.seek(size // 2)
            f.write(bytes([c[0] ^ 0x20]))
    assert flipped >= 3, segs
    relay.start()
    relay.wait_ready()
    wait_link_up(relay)
    # Older segments are checked lazily: recovery read none of them.
    assert not log_lines(relay, "fail their check"), log_lines(relay, "disk log")
    assert int(relay.info("stats")["upstream_full_syncs"]) == 0

    base = syncs(r1)
    come_back(r1, relay, base)
    converge(m, [r1], [relay])
    full, part = syncs(r1)
    assert full == base[0] + 1, ("r1 was not full-synced", base, (full, part),
                                 log_lines(relay, "disk log|PSYNC|full sync"))
    cuts = log_lines(relay, r"disk log: bytes \d+\.\.\d+ \(\d+ bytes\) of log segment \d+ fail "
                     r"their check \(a checksum mismatch\): cut 1?\d*\.\.\d+ \(\d+ bytes, "
                     r"\d+ segment\(s\)\) from the history")
    assert cuts, log_lines(relay, "disk log")
    assert int(relay.info("stats")["disk_log_cuts"]) >= 1
    # What is left of the history on disk starts past a cut, at a segment's start.
    first = int(relay.info("relay")["disk_log_first_offset"])
    assert ("log-%020d.seg" % first) in segments(relay.dir) or first > repl_offset(m)
    assert relay.alive()


# ------------------------------------------------------------------------------------------------
# meta


def meta_setup(cluster):
    """A master whose offset is well past 0 (a direct replica r0 and writes before the relay
    came), a relay with its snapshot and log, and a stock replica r1 behind it; the relay
    stopped gracefully (meta written). Returns (m, r0, relay, r1, meta text)."""
    m = cluster.master()
    r0 = cluster.replica(m, "r0")
    preload(m.port, keys_per_db=300)
    with cluster.writer(m, rate=2000, short_ttl=False) as w:
        w.wait_count(300)
    relay = cluster.relay(m)
    wait_link_up(relay)
    r1 = cluster.replica(relay, "r1")
    converge(m, [r0, r1], [relay])
    relay.stop()
    assert not relay.exit_problem(), relay.describe()
    with open(os.path.join(relay.dir, "meta"), "rb") as f:
        text = f.read()
    assert text.startswith(b"cascade-meta 2\n"), text
    off = int(re.search(rb"\nsnapshot_offset (\d+)\n", text).group(1))
    assert off > 1000, "the snapshot's offset should be well past 0: %r" % text
    return m, r0, relay, r1, text


def as_v1(text):
    """The same meta as the version before checksums wrote it."""
    body = text.replace(b"cascade-meta 2\n", b"cascade-meta 1\n")
    return re.sub(rb"crc32c [0-9a-f]{8}\n$", b"", body)


def shift_offset(text, by):
    return re.sub(rb"\nsnapshot_offset (\d+)\n",
                  lambda mo: b"\nsnapshot_offset %d\n" % (int(mo.group(1)) + by), text)


CORRUPTIONS = {
    "flipped-byte": (lambda t: t[:40] + bytes([t[40] ^ 0x01]) + t[41:], "checksum mismatch"),
    "garbage": (lambda t: os.urandom(300), "no cascade-meta header"),
    "torn": (lambda t: t[:len(t) // 2], "torn"),
    "shifted-v2": (lambda t: shift_offset(t, 10), "checksum mismatch"),
    "shifted-v1": (lambda t: shift_offset(as_v1(t), 10), "the RDB's repl-offset is"),
}


@pytest.mark.relay_only
@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_bad_meta_set_aside_full_sync(cluster, how):
    m, r0, relay, r1, text = meta_setup(cluster)
    corrupt, why = CORRUPTIONS[how]
    bad = corrupt(text)
    assert bad != text
    had_segments = bool(segments(relay.dir))
    with open(os.path.join(relay.dir, "meta"), "wb") as f:
        f.write(bad)
    with cluster.writer(m, rate=1000, prefix="after", short_ttl=False) as w:
        w.wait_count(100)
        relay.start()
        relay.wait_ready()
        wait_link_up(relay)
        w.wait_count(200)
    converge(m, [r0, r1], [relay])
    assert relay.alive()
    # It started afresh: a full sync from the master, no history from the old log.
    st = relay.info("stats")
    assert int(st["upstream_full_syncs"]) == 1, st
    lines = log_lines(relay, "meta")
    assert any(why in ln and "moved to meta.bad-" in ln and "starting afresh" in ln
               for ln in lines), lines
    aside = [f for f in os.listdir(relay.dir) if f.startswith("meta.bad-")]
    assert len(aside) == 1, os.listdir(relay.dir)
    with open(os.path.join(relay.dir, aside[0]), "rb") as f:
        assert f.read() == bad  # kept for a human, as it was
    with open(os.path.join(relay.dir, "meta"), "rb") as f:
        assert f.read().startswith(b"cascade-meta 2\n")
    if had_segments:  # dropped with the meta, and said so
        assert log_lines(relay, r"dropped the disk log \d+\.\.\d+ \(\d+ bytes, \d+ segment"), (
            log_lines(relay, "disk log"))


@pytest.mark.relay_only
def test_meta_without_checksum_is_read_and_upgraded(cluster):
    """The upgrade path: a meta written before meta had a checksum is cross-checked with its
    snapshot and taken up (the relay resumes by PSYNC), then rewritten with a checksum."""
    m, r0, relay, r1, text = meta_setup(cluster)
    with open(os.path.join(relay.dir, "meta"), "wb") as f:
        f.write(as_v1(text))
    relay.start()
    relay.wait_ready()
    wait_link_up(relay)
    converge(m, [r0, r1], [relay])
    st = relay.info("stats")
    assert int(st["upstream_full_syncs"]) == 0, st
    assert int(st["upstream_partial_syncs"]) >= 1, st
    assert log_lines(relay, "meta was written by an older version"), log_lines(relay, "meta")
    with open(os.path.join(relay.dir, "meta"), "rb") as f:
        assert f.read().startswith(b"cascade-meta 2\n")
    assert not [f for f in os.listdir(relay.dir) if f.startswith("meta.bad-")]


# ------------------------------------------------------------------------------------------------
# a full disk


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 16 MB tmpfs, unmounted at teardown (after the cluster's processes stopped: this
    fixture is set up before `cluster`)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if rc.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % rc.stdout.decode(errors="replace").strip())
    try:
        yield str(mnt)
    finally:
        if subprocess.run(["umount", str(mnt)], timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], timeout=30)


def fill(path, limit_bytes):
    """Write zeros to path until the file system refuses (ENOSPC); bounded by limit_bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"\0" * 65536
    try:
        for _ in range(limit_bytes // len(chunk) + 1):
            try:
                os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return
        raise AssertionError("the file system never filled up")
    finally:
        os.close(fd)


@pytest.mark.relay_only
def test_disk_full_log_goes_off_then_comes_back(small_tmpfs, cluster):
    m = cluster.master()
    preload(m.port, keys_per_db=200)
    # Memory holds the outage's stream for r1; the disk log, kept small, what r1 misses later.
    relay = cluster.relay(m, extra=relay_args(
        "relay.dir=%s" % small_tmpfs, "backlog.size=2mb", "backlog.segment-size=256kb",
        "backlog.disk-size=6mb", "backlog.disk-min=1mb"))
    wait_link_up(relay)
    r1 = cluster.replica(relay, "r1")
    blast(m.port, 1 * MB, prefix="before")
    wait_log_caught_up(relay, m)
    assert int(relay.info("relay")["disk_log_enabled"]) == 1

    filler = os.path.join(small_tmpfs, "filler")
    fill(filler, 32 * MB)
    blast(m.port, 1 * MB, prefix="full")
    wait_for(lambda: int(relay.info("relay")["disk_log_enabled"]) == 0, 10,
             "the disk log to go off", describe=lambda: relay.describe(20))
    off = log_lines(relay, "disk log off after a write error: .*No space left on device; it "
                           "starts again by itself once")
    assert off, log_lines(relay, "disk log")
    wait_for(lambda: log_lines(relay, r"disk log still off: \d+ bytes free"), 5,
             "the relay to say the disk is still full")
    converge(m, [r1], [relay])  # replicas are fed from memory meanwhile
    hole_end = repl_offset(m)

    os.unlink(filler)
    wait_for(lambda: int(relay.info("relay")["disk_log_enabled"]) == 1, 10,
             "the disk log to come back", describe=lambda: relay.describe(20))
    on = log_lines(relay, r"disk log on again \(\d+ bytes free in .*\): it holds the stream from "
                          r"the first command boundary at or after offset \d+")
    assert len(on) == 1, log_lines(relay, "disk log")
    assert log_lines(relay, r"the log restarts after a hole: dropped the disk log \d+\.\.\d+ "
                            r"\(\d+ bytes, \d+ segment\(s\)\)"), log_lines(relay, "disk log")
    assert int(relay.info("stats")["disk_log_restarts"]) == 1

    blast(m.port, 1 * MB, prefix="after")
    wait_log_caught_up(relay, m)
    first = int(relay.info("relay")["disk_log_first_offset"])
    assert first > hole_end, (first, hole_end)
    # The new log serves: r1 away past memory resumes partially from it.
    parked = park(r1)
    assert parked + 1 >= first
    base = syncs(r1)
    blast(m.port, 3 * MB, prefix="away")
    wait_log_caught_up(relay, m)
    assert int(relay.info("replication")["repl_backlog_first_byte_offset"]) > parked + 1
    assert int(relay.info("relay")["disk_log_first_offset"]) <= parked + 1
    come_back(r1, relay, base)
    converge(m, [r1], [relay])
    assert syncs(r1) == (base[0], base[1] + 1), log_lines(relay, "PSYNC|full sync")
    assert relay.alive()


# ------------------------------------------------------------------------------------------------
# recovery says what it drops


@pytest.mark.relay_only
def test_recovery_logs_every_range_it_drops(cluster):
    m = cluster.master()
    preload(m.port, keys_per_db=200)
    relay = cluster.relay(m, extra=relay_args("backlog.size=64kb", "backlog.segment-size=256kb"))
    wait_link_up(relay)
    r1 = cluster.replica(relay, "r1")
    blast(m.port, 2 * MB)
    wait_log_caught_up(relay, m)
    relay.stop()
    assert not relay.exit_problem(), relay.describe()
    segs = segments(relay.dir)
    assert len(segs) >= 4, segs
    # A segment in the middle goes missing, and the last one loses its end.
    gone = int(segs[1][4:-4])
    for ext in ("seg", "idx"):
        os.unlink(os.path.join(relay.dir, "log-%020d.%s" % (gone, ext)))
    last = os.path.join(relay.dir, segs[-1])
    size = os.path.getsize(last)
    os.truncate(last, size - 100)
    relay.start()
    relay.wait_ready()
    wait_link_up(relay)
    gap = log_lines(relay, r"disk log: gap in the disk log \(%d\.\.\d+ missing, \d+ bytes\): "
                           r"dropped the disk log 1\.\.%d \(%d bytes, 1 segment\(s\)\)"
                    % (gone, gone - 1, gone - 1))
    assert gap, log_lines(relay, "disk log")
    torn = log_lines(relay, r"disk log: torn tail of log segment %s \(.*\): cut \d+\.\.\d+ "
                            r"\(\d+ bytes\)" % int(segs[-1][4:-4]))
    assert torn, log_lines(relay, "disk log")
    converge(m, [r1], [relay])
    assert int(relay.info("stats")["upstream_full_syncs"]) == 0  # the rest of the log serves

    # Without meta, the segments cannot be served: dropped, and said so.
    relay.stop()
    os.unlink(os.path.join(relay.dir, "meta"))
    relay.start()
    relay.wait_ready()
    wait_link_up(relay)
    assert log_lines(relay, r"disk log: no meta file: dropped the disk log \d+\.\.\d+ \(\d+ bytes, "
                            r"\d+ segment\(s\)\)"), log_lines(relay, "disk log")
    converge(m, [r1], [relay])
