"""Streamed snapshots (issue 6): replicas that announce capa eof are sent the RDB while it
still arrives at the relay, in the EOF format, and the stream after their first ACK.
The relay's upstream link is throttled through the fault proxy, so the relay's own full sync
takes long enough for replicas to attach in the middle of it."""
import os

import pytest

import harness as h
from harness import count_in_file, wait_digests_equal, wait_for, wait_link_up

pytestmark = pytest.mark.relay_only


def relay_log(relay):
    return relay.logs[0]


def test_replicas_streamed_while_first_sync_arrives(cluster):
    m = cluster.master()
    c = m.client()
    p = c.pipeline(transaction=False)
    for i in range(1200):
        p.set("big:%d" % i, os.urandom(1000).hex())  # ~2.4 MB, incompressible
    p.execute()
    proxy = cluster.fault_proxy(m)
    proxy.throttle(600_000)  # the relay's RDB takes ~4 s
    relay = cluster.relay(proxy, "relay")
    wait_for(lambda: relay.info("relay")["upstream_state"] == "rdb", 20,
             "the relay's full sync to start")
    # Replicas attach while the relay's RDB is still arriving: they wait and are streamed it.
    r1 = cluster.replica(relay, "r1", wait_synced=False)
    r2 = cluster.replica(relay, "r2", wait_synced=False)
    wait_for(lambda: count_in_file(relay_log(relay), "streaming the RDB at offset") >= 2, 20,
             "both replicas to be streamed the RDB in flight",
             describe=lambda: relay.describe())
    assert relay.info("relay")["upstream_state"] == "rdb", "the relay finished before: no test"
    proxy.throttle(None)
    wait_link_up(relay)
    for r in (r1, r2):
        wait_link_up(r)
        assert count_in_file(r.logs[0], "receiving streamed RDB from master with EOF") >= 1
    with cluster.writer(m, dbs=(0, 2)) as w:
        w.wait_count(300)
    wait_digests_equal(m, [r1, r2], relays=[relay])
    # One fork on the master, for the relay; none for the replicas.
    assert int(m.info("stats")["sync_full"]) == 1


def test_stream_aborted_when_upstream_sync_fails(cluster):
    """The relay's RDB is cut off midway: replicas being streamed it are dropped (they never
    get a partial RDB as whole), reconnect, and converge after the relay's next full sync."""
    m = cluster.master(extra=["--repl-backlog-size", "64kb"])
    c = m.client()
    p = c.pipeline(transaction=False)
    for i in range(1200):
        p.set("big:%d" % i, os.urandom(1000).hex())
    p.execute()
    proxy = cluster.fault_proxy(m)
    proxy.throttle(400_000)
    relay = cluster.relay(proxy, "relay")
    wait_for(lambda: relay.info("relay")["upstream_state"] == "rdb", 20,
             "the relay's full sync to start")
    r1 = cluster.replica(relay, "r1", wait_synced=False)
    wait_for(lambda: count_in_file(relay_log(relay), "streaming the RDB at offset") >= 1, 20,
             "the replica to be streamed the RDB in flight")
    proxy.cut()
    wait_for(lambda: count_in_file(relay_log(relay), "the upstream full sync failed") >= 1, 20,
             "the streamed replica to be dropped with the failed sync",
             describe=lambda: relay.describe())
    proxy.throttle(None)
    wait_link_up(relay)
    wait_link_up(r1)
    wait_digests_equal(m, [r1], relays=[relay])
