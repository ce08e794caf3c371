"""No loops to itself (issue 14, item 6): a relay refuses an upstream that is the relay itself
(its INFO server run_id is ours) or that follows it through other cascade relays (their
cascade_chain holds our run_id), with a clear error and the longest backoff; a loop of stock
nodes, which moves no byte, is reported as a link down, never up."""
import pytest

import harness as h
from harness import count_in_file, wait_digests_equal, wait_for, wait_link_up

pytestmark = pytest.mark.relay_only


def status(node):
    return node.info("replication")["master_link_status"]


def test_replicaof_itself_is_refused(cluster):
    m = cluster.master()
    relay = cluster.relay(m, "relay")
    wait_link_up(relay)
    r1 = cluster.replica(relay, "r1")
    relay.client().execute_command("REPLICAOF", h.HOST, relay.port)
    wait_for(lambda: count_in_file(relay.logs[0], "the upstream is this relay itself") >= 1, 20,
             "the self-loop refusal", describe=lambda: h.tail(relay.logs[0]))
    assert status(relay) == "down"
    assert int(relay.info("relay")["upstream_loops_refused"]) >= 1
    # back to the master: the history continues, the replica with it
    relay.client().execute_command("REPLICAOF", h.HOST, m.port)
    wait_link_up(relay)
    with cluster.writer(m) as w:
        w.wait_count(50)
    wait_digests_equal(m, [r1], relays=[relay])
    assert int(m.info("stats")["sync_full"]) == 1


def test_loop_of_two_relays_is_refused(cluster):
    m = cluster.master()
    a = cluster.relay(m, "a")
    wait_link_up(a)
    b = cluster.relay(a, "b")
    wait_link_up(b)
    assert a.info("server")["run_id"] in b.info("server")["cascade_chain"]
    leaf = cluster.replica(b, "leaf")
    a.client().execute_command("REPLICAOF", h.HOST, b.port)
    wait_for(lambda: count_in_file(a.logs[0], "refused: replication loop") >= 1, 20,
             "a to refuse following b, which follows a", describe=lambda: h.tail(a.logs[0]))
    assert status(a) == "down"
    a.client().execute_command("REPLICAOF", h.HOST, m.port)
    wait_link_up(a)
    with cluster.writer(m) as w:
        w.wait_count(50)
    wait_digests_equal(m, [leaf], relays=[a, b])


def test_loop_through_a_stock_replica_is_not_shown_up(cluster):
    """relay -> stock replica -> the same relay: the stock node accepts (it cannot tell), the
    PSYNC continues, and nothing ever flows: after half of repl-timeout without a byte the
    relay reports its link down (and stalled)."""
    m = cluster.master()
    relay = cluster.relay(m, "relay", extra=["--set", "upstream.repl-timeout=6s"])
    wait_link_up(relay)
    r = cluster.replica(relay, "r")
    relay.client().execute_command("REPLICAOF", h.HOST, r.port)
    wait_for(lambda: relay.info("relay")["upstream_state"] == "stream", 20,
             "the relay to stream from the stock replica")
    wait_for(lambda: int(relay.info("relay")["upstream_stalled"]) == 1, 20, "a stalled link",
             describe=lambda: h.tail(relay.logs[0]))
    assert status(relay) == "down"
    assert relay.popen.poll() is None
