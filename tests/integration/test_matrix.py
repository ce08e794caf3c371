"""The version matrix: real Redis and Valkey builds from Debian's archive (scripts/servers) around
the relay. Tags whose build is missing from the cache are skipped, with the tags named.

- Core scenarios with a master and leaves of one version: full sync under writes, partial resync
  after a link cut, a chain of two relays, relay restart without a full sync, failover by
  REPLICAOF.
- Pairs: for each master version, through one relay and through two, one leaf of every version
  that direct replication supports converges; each leaf that direct replication does not support
  (the relay's RDB is newer than the leaf loads) must receive at most DOOMED_MAX_LOADS snapshots
  before the relay refuses it (-NOMASTERLINK at PSYNC: none for a leaf whose announced version
  says it cannot load it, 3 for one that announces nothing).
- One mixed tree: a Redis 7.0 master with Redis 7.0, Valkey 8, Valkey 9 and Redis 8 leaves under
  one relay.

Data sets of different versions are compared with harness.dataset() (DEBUG DIGEST differs
between versions for the same data). With CASCADE_MATRIX_RESULTS=<file> the pair tests append
one JSON line per master/leaf/depth with the observed result (scripts/matrix-table prints it).
"""

import json
import os
import time

import pytest

import harness as h
from harness import (preload, repl_offset, server_build, wait_connected_slaves,
                     wait_datasets_equal, wait_digests_equal, wait_for, wait_link_up,
                     wait_replica_synced)

pytestmark = pytest.mark.relay_only

# Oldest first. "redis-8-sid" is whatever Redis sid holds (8.0.6 when this was written).
TAGS = ["redis-7.0", "valkey-8.0", "valkey-8.1", "redis-8.0", "valkey-9", "redis-8-sid"]

DOOMED_MAX_LOADS = 3  # snapshots an incompatible leaf may receive before it is refused
DOOMED_WINDOW_S = 6.0  # how long an incompatible leaf is watched (Valkey 9 retries once a second)


def rdb_sent(b, announced=None):
    """The RDB version master build `b` sends to a replica that announced version `announced`
    (REPLCONF version; None: nothing, as Redis replicas). Observed: Redis 7.0 10, Valkey
    8.x 11, Redis 8.0 12, Valkey 9 11 unless the replica announced 9.0.0 or newer (then its own
    format, VALKEY080)."""
    if b.kind == "redis":
        return 10 if b.version_tuple < (7, 2) else 12
    if b.version_tuple >= (9,) and announced is not None and announced >= (9,):
        return 80
    return 11


def rdb_loads(b, rdb):
    """Whether leaf build `b` loads RDB version `rdb`. Observed with direct replication: Redis
    7.0 up to 10; Valkey 8.x up to 11; Valkey 9 up to 11 and its own 80 (not Redis' 12); Redis
    8.0 up to 12 (not Valkey's 80)."""
    if b.kind == "redis":
        return rdb <= (10 if b.version_tuple < (7, 2) else 12)
    return rdb <= 11 or (rdb == 80 and b.version_tuple >= (9,))


def direct_ok(m, leaf):
    """Direct replication m -> leaf works (every stock replica announces its own version)."""
    return rdb_loads(leaf, rdb_sent(m, leaf.version_tuple if leaf.kind == "valkey" else None))


def relay_rdb(m):
    """The RDB version the relay's snapshot has under master build `m`: the relay announces a
    Valkey upstream's own version (upstream.announce-version = auto), so a Valkey 9 master sends
    its own format (VALKEY080), which older leaves cannot load."""
    return rdb_sent(m, m.version_tuple if m.kind == "valkey" else None)


def available(tags):
    return [t for t in tags if server_build(t) is not None]


def missing(tags):
    return [t for t in tags if server_build(t) is None]


def need(*tags):
    gone = missing(tags)
    if gone:
        pytest.skip("server builds missing: %s (run scripts/servers; cache %s)"
                    % (", ".join(gone), h.SERVERS_DIR))
    return [server_build(t) for t in tags]


def record(**kw):
    path = os.environ.get("CASCADE_MATRIX_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(kw, sort_keys=True) + "\n")


def stat(node, field, section="stats"):
    return int(node.info(section)[field])


def chain(cluster, m, depth):
    """depth relays in a row under m, each link up. Returns the list, top first."""
    hops, up = [], m
    for i in range(depth):
        up = cluster.relay(up, "relay%d" % (i + 1))
        wait_link_up(up)
        hops.append(up)
    return hops


def small_data(m):
    # every type, TTLs; small: the matrix runs many trees
    preload(m.port, dbs=(0, 1), keys_per_db=150)


def writer(cluster, m, **kw):
    # long TTLs only: the data set is fixed once the writer stops (dataset() is not atomic)
    return cluster.writer(m, dbs=(0, 1), rate=1000, short_ttl=False, **kw)


# ------------------------------------------------------------------------------------------------
# core scenarios, one version throughout


@pytest.mark.parametrize("tag", TAGS)
def test_full_sync_under_writes(cluster, tag):
    need(tag)
    m = cluster.master(tag=tag)
    small_data(m)
    with writer(cluster, m) as w:
        relay = cluster.relay(m)
        w.wait_count(100)
        leaves = [cluster.replica(relay, "leaf%d" % i, tag=tag, wait_synced=False)
                  for i in range(2)]
        w.wait_count(200)
        for x in leaves:
            wait_replica_synced(x)
        w.wait_count(100)
    wait_digests_equal(m, leaves, relays=[relay])
    wait_datasets_equal(m, leaves, relays=[relay])
    assert stat(m, "sync_full") == 1, "the master forked more than once for one relay"


@pytest.mark.parametrize("tag", TAGS)
def test_partial_resync_after_link_cut(cluster, tag):
    need(tag)
    m = cluster.master(tag=tag)
    small_data(m)
    relay = cluster.relay(m)
    wait_link_up(relay)
    leaf = cluster.replica(relay, "leaf", tag=tag)
    with writer(cluster, m) as w:
        w.wait_count(100)
        # the relay's upstream link, cut on the master
        base_ok, base_full = stat(m, "sync_partial_ok"), stat(m, "sync_full")
        assert int(m.r.execute_command("CLIENT", "KILL", "TYPE", "replica")) == 1
        w.wait_count(100)
        wait_for(lambda: stat(m, "sync_partial_ok") > base_ok, 15,
                 "the master to serve the relay a partial resync", describe=cluster.describe)
        wait_link_up(relay)
        assert stat(m, "sync_full") == base_full, "the relay full-synced from the master"
        # the leaf's link, cut on the leaf
        base_leaf = (leaf.full_syncs_in_log(), leaf.partial_syncs_in_log())
        assert int(leaf.r.execute_command("CLIENT", "KILL", "TYPE", "master")) == 1
        w.wait_count(100)
        wait_for(lambda: leaf.partial_syncs_in_log() > base_leaf[1], 15,
                 "the leaf to continue partially", describe=cluster.describe)
        wait_replica_synced(leaf)
        assert leaf.full_syncs_in_log() == base_leaf[0], "the leaf was full-synced"
        w.wait_count(100)
    wait_digests_equal(m, [leaf], relays=[relay])


@pytest.mark.parametrize("tag", TAGS)
def test_chain_of_two_relays(cluster, tag):
    need(tag)
    m = cluster.master(tag=tag)
    small_data(m)
    r1, r2 = chain(cluster, m, 2)
    leaves = [cluster.replica(r1, "leaf1", tag=tag), cluster.replica(r2, "leaf2", tag=tag)]
    with writer(cluster, m) as w:
        w.wait_count(300)
    wait_digests_equal(m, leaves, relays=[r1, r2])
    assert stat(m, "sync_full") == 1


@pytest.mark.parametrize("tag", TAGS)
def test_relay_restart_without_full_sync(cluster, tag):
    need(tag)
    m = cluster.master(tag=tag)
    small_data(m)
    relay = cluster.relay(m)
    wait_link_up(relay)
    leaf = cluster.replica(relay, "leaf", tag=tag)
    with writer(cluster, m) as w:
        w.wait_count(200)
        base_full, base_leaf_full = stat(m, "sync_full"), leaf.full_syncs_in_log()
        relay.restart()
        w.wait_count(200)
        wait_link_up(relay)
        wait_replica_synced(leaf)
        w.wait_count(100)
    wait_digests_equal(m, [leaf], relays=[relay])
    assert stat(m, "sync_full") == base_full, "the restarted relay full-synced from the master"
    assert leaf.full_syncs_in_log() == base_leaf_full, "the leaf full-synced after the restart"


@pytest.mark.parametrize("tag", TAGS)
def test_failover_by_replicaof(cluster, tag):
    """m2 (a replica of m1) is promoted; m1 and the relay follow it by REPLICAOF (psync2): no
    full sync anywhere."""
    need(tag)
    m1 = cluster.master("m1", tag=tag)
    small_data(m1)
    m2 = cluster.replica(m1, "m2", extra=["--repl-backlog-size", "64mb"], tag=tag)
    relay = cluster.relay(m1)
    wait_link_up(relay)
    leaf = cluster.replica(relay, "leaf", tag=tag)
    with writer(cluster, m1) as w:
        w.wait_count(200)
    wait_digests_equal(m1, [m2, leaf], relays=[relay])
    base = (stat(m2, "sync_full"), stat(relay, "sync_full"), leaf.full_syncs_in_log())
    assert m2.r.execute_command("REPLICAOF", "NO", "ONE") in ("OK", True)
    new_id = m2.info("replication")["master_replid"]
    assert m1.r.execute_command("REPLICAOF", h.HOST, str(m2.port)) in ("OK", True)
    assert relay.r.execute_command("REPLICAOF", h.HOST, str(m2.port)) in ("OK", True)
    wait_link_up(m1)
    wait_link_up(relay)
    with writer(cluster, m2, prefix="after") as w:
        w.wait_count(200)
        wait_for(lambda: leaf.info("replication")["master_replid"] == new_id, 15,
                 "the leaf to follow the new replication id", describe=cluster.describe)
        w.wait_count(100)
    wait_digests_equal(m2, [m1, leaf], relays=[relay])
    assert (stat(m2, "sync_full"), stat(relay, "sync_full"), leaf.full_syncs_in_log()) == base, \
        "a full sync after the failover"


# ------------------------------------------------------------------------------------------------
# master x leaf pairs


class DoomedSyncNotRefused(AssertionError):
    """An incompatible leaf kept receiving snapshots: the relay did not refuse it."""


def pair_params():
    out = []
    for depth in (1, 2):
        for mt in TAGS:
            mb = server_build(mt)
            out.append(pytest.param(mt, depth, id="%s-%drelay" % (mt, depth)))
    return out


@pytest.mark.parametrize("mtag,depth", pair_params())
def test_pairs(cluster, mtag, depth):
    """Under master `mtag` and `depth` relays: one leaf of every available version. Leaves that
    can load the relay's snapshot converge; the others get at most DOOMED_MAX_LOADS snapshots."""
    (mb,) = need(mtag)
    tags = available(TAGS)
    m = cluster.master(tag=mtag)
    small_data(m)
    hops = chain(cluster, m, depth)
    good, doomed = [], []
    t0 = time.monotonic()
    with writer(cluster, m) as w:
        for t in tags:
            b = server_build(t)
            leaf = cluster.replica(hops[-1], "leaf-" + t, tag=t, wait_synced=False)
            (good if rdb_loads(b, relay_rdb(mb)) else doomed).append((t, leaf))
        w.wait_count(200)
    for t, leaf in good:
        wait_replica_synced(leaf)
    try:
        wait_datasets_equal(m, [x for _, x in good], relays=hops)
    except AssertionError:
        for t, leaf in good:
            record(master=mtag, leaf=t, depth=depth, result="no convergence",
                   direct=direct_ok(mb, server_build(t)))
        raise
    assert stat(m, "sync_full") == 1, "the master forked more than once"
    for t, _ in good:
        record(master=mtag, leaf=t, depth=depth, result="converged",
               direct=direct_ok(mb, server_build(t)))
    if not doomed:
        return
    # The doomed leaves, watched DOOMED_WINDOW_S from their start, or until every one of them
    # is over the limit (today: within a few seconds).
    left = DOOMED_WINDOW_S - (time.monotonic() - t0)
    if left > 0:
        try:
            wait_for(lambda: min(x.snapshot_loads_in_log() for _, x in doomed)
                     > DOOMED_MAX_LOADS, left,
                     "every doomed leaf to exceed %d snapshots" % DOOMED_MAX_LOADS)
        except h.WaitTimeout:
            pass
    elapsed = time.monotonic() - t0
    loads = {t: x.snapshot_loads_in_log() for t, x in doomed}
    # the compatible leaves are still fine beside them
    wait_datasets_equal(m, [x for _, x in good], relays=hops)
    for t, x in doomed:
        up = x.info("replication").get("master_link_status") == "up"
        assert not up, "%s loaded an RDB %d snapshot?" % (t, relay_rdb(mb))
        record(master=mtag, leaf=t, depth=depth, direct=direct_ok(mb, server_build(t)),
               result="refused (%d snapshots)" % loads[t] if loads[t] <= DOOMED_MAX_LOADS else
               "%d snapshots in %.1fs" % (loads[t], elapsed))
    over = {t: n for t, n in loads.items() if n > DOOMED_MAX_LOADS}
    if over:
        raise DoomedSyncNotRefused(
            "incompatible leaves got more than %d snapshots (RDB %d): %r"
            % (DOOMED_MAX_LOADS, relay_rdb(mb), over))


# ------------------------------------------------------------------------------------------------
# data only the newest format holds


class UpstreamSyncAborted(AssertionError):
    """The master aborted the relay's full sync (the relay did not announce Valkey 9)."""


def test_valkey9_hash_field_ttls(cluster):
    """A Valkey 9 master holding a hash field with its own TTL can only write it in its own RDB
    format, which it sends to replicas that announce Valkey 9 (a stock Valkey 9 replica
    does). Through the relay the Valkey 9 leaves get it, with one fork on the master."""
    need("valkey-9")
    m = cluster.master(tag="valkey-9")
    small_data(m)
    m.r.hset("hf", mapping={"a": "1", "b": "2", "c": "3"})
    assert m.r.execute_command("HEXPIRE", "hf", 3600, "FIELDS", 2, "a", "c") == [1, 1]
    relay = cluster.relay(m)
    try:
        wait_link_up(relay, timeout=10)
    except h.WaitTimeout as e:
        raise UpstreamSyncAborted("relay link not up; master full syncs %d; master log: %s"
                                  % (stat(m, "sync_full"), h.tail(m.logs[0], 5))) from e
    leaves = [cluster.replica(relay, "leaf%d" % i, tag="valkey-9") for i in range(2)]
    with writer(cluster, m) as w:
        w.wait_count(200)
    d = wait_datasets_equal(m, leaves, relays=[relay], field_ttls=True)
    assert d[0]["hf"] == ("hash", (("a", "1", True), ("b", "2", False), ("c", "3", True)), False)
    assert stat(m, "sync_full") == 1, "the master forked more than once"


# ------------------------------------------------------------------------------------------------
# one mixed tree


def test_mixed_tree(cluster):
    """A Redis 7.0 master; Redis 7.0, Valkey 8, Valkey 9 and Redis 8 leaves under one relay,
    attached while writes run; then the relay's upstream link is cut: everyone continues
    partially, nobody full-syncs again."""
    tags = ["redis-7.0", "valkey-8.0", "valkey-9", "redis-8.0"]
    need(*tags)
    m = cluster.master(tag="redis-7.0")
    small_data(m)
    relay = cluster.relay(m)
    with writer(cluster, m) as w:
        w.wait_count(100)
        leaves = [cluster.replica(relay, "leaf-" + t, tag=t, wait_synced=False) for t in tags]
        w.wait_count(200)
        for x in leaves:
            wait_replica_synced(x)
        wait_connected_slaves(relay, len(leaves))
        base = [x.full_syncs_in_log() for x in leaves]
        base_ok = stat(m, "sync_partial_ok")
        assert int(m.r.execute_command("CLIENT", "KILL", "TYPE", "replica")) == 1
        w.wait_count(200)
        wait_for(lambda: stat(m, "sync_partial_ok") > base_ok, 15,
                 "the master to serve the relay a partial resync", describe=cluster.describe)
        wait_link_up(relay)
    d = wait_datasets_equal(m, leaves, relays=[relay])
    assert sum(len(v) for v in d.values()) > 300
    assert stat(m, "sync_full") == 1
    assert [x.full_syncs_in_log() for x in leaves] == base, "a leaf full-synced again"
    for t, x in zip(tags, leaves):
        assert repl_offset(x) == repl_offset(m), t
