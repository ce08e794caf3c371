"""Debian's prometheus-redis-exporter (1.45) scraping a relay with leaves attached.

The exporter runs with --debug, so every command it sends and every error reply it gets is in
its log. Checked:
- `redis_up 1`, `redis_master_link_up` 1 for the relay's upstream (and 0 once the relay is
  re-pointed at a port nobody listens on), the relay's offsets, and one
  `redis_connected_slave_offset_bytes` / `redis_connected_slave_lag_seconds` series per leaf
  with the leaf's acknowledged offset;
- the commands it sends on a scrape (CLIENT SETNAME, CONFIG GET *, INFO ALL, LATENCY LATEST,
  SLOWLOG LEN, SLOWLOG GET) get no error reply: its log holds no error or warning, and it
  counts no scrape errors.
"""

import os
import re
import shutil
import subprocess
import urllib.request

import pytest

import harness as h
from harness import wait_connected_slaves, wait_digests_equal, wait_for, wait_link_up

EXPORTER = shutil.which("prometheus-redis-exporter") or "/usr/bin/prometheus-redis-exporter"
PASSWORD = "exporter-secret"

pytestmark = pytest.mark.relay_only


def require_exporter():
    if not os.access(EXPORTER, os.X_OK):
        pytest.skip("prometheus-redis-exporter not installed (scripts/common.sh ensure_deps "
                    "installs it)")


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$')


def parse(text):
    """[(name, {label: value}, float)] of every sample."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = SAMPLE.match(line)
        assert m, "unparsable metrics line %r" % line
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def samples(metrics, name, **labels):
    return [v for n, ls, v in metrics
            if n == name and all(ls.get(k) == str(x) for k, x in labels.items())]


def one(metrics, name, **labels):
    got = samples(metrics, name, **labels)
    assert len(got) == 1, (name, labels, got, [s for s in metrics if s[0] == name])
    return got[0]


def scrape(port):
    with urllib.request.urlopen("http://%s:%d/metrics" % (h.HOST, port), timeout=30) as r:
        return parse(r.read().decode())


def test_exporter_scrapes_a_relay_without_errors(cluster):
    require_exporter()
    m = cluster.master()
    relay = cluster.relay(m, extra=["--set", "relay.requirepass=" + PASSWORD], password=PASSWORD)
    wait_link_up(relay)
    h.preload(m.port, keys_per_db=300)
    leaves = [cluster.replica(relay, "leaf%d" % i, extra=["--masterauth", PASSWORD])
              for i in range(2)]
    wait_connected_slaves(relay, 2)
    m.r.set("after", "1")
    wait_digests_equal(m, leaves, relays=[relay])

    port = h.free_port()
    log = os.path.join(cluster.tmp, "exporter.log")
    cluster.popen([EXPORTER, "--redis.addr", "redis://%s:%d" % (h.HOST, relay.port),
                   "--redis.password", PASSWORD, "--web.listen-address", "%s:%d" % (h.HOST, port),
                   "--debug"], log)
    metrics = wait_for(lambda: scrape(port), 15, "the exporter to serve /metrics",
                       describe=lambda: h.tail(log))

    # the leaves' ACKs reach the relay within a second: scrape until their offsets show up
    offset = h.repl_offset(m)

    def settled():
        ms = scrape(port)
        offs = samples(ms, "redis_connected_slave_offset_bytes")
        return ms if len(offs) == 2 and all(o == offset for o in offs) else None
    metrics = wait_for(settled, 15, "per-replica offsets at %d" % offset,
                       describe=lambda: repr([s for s in scrape(port) if "slave" in s[0]]))

    assert one(metrics, "redis_up") == 1
    assert one(metrics, "redis_master_link_up", master_host=h.HOST, master_port=m.port) == 1
    assert one(metrics, "redis_master_repl_offset") == offset
    assert one(metrics, "redis_slave_repl_offset", master_port=m.port) == offset
    assert one(metrics, "redis_connected_slaves") == 2
    for leaf in leaves:
        assert one(metrics, "redis_connected_slave_offset_bytes", slave_port=leaf.port) == offset
        assert one(metrics, "redis_connected_slave_lag_seconds", slave_port=leaf.port) <= 5
    assert one(metrics, "redis_instance_info", role="slave", tcp_port=relay.port) == 1
    assert one(metrics, "redis_exporter_last_scrape_error") == 0
    assert one(metrics, "redis_target_scrape_request_errors_total") == 0
    assert one(metrics, "redis_replication_backlog_bytes") > 0

    # the upstream link goes down: the next scrapes say so
    dead = h.free_port()
    relay.r.execute_command("REPLICAOF", h.HOST, str(dead))
    metrics = wait_for(
        lambda: (lambda ms: ms if samples(ms, "redis_master_link_up", master_port=dead) == [0]
                 else None)(scrape(port)), 15, "redis_master_link_up 0")
    assert one(metrics, "redis_up") == 1

    with open(log, errors="replace") as f:
        text = f.read()
    sent = set(re.findall(r"running command: (\w+ \[\w+)", text))
    for cmd in ("CONFIG [GET", "INFO [ALL", "LATENCY [LATEST", "SLOWLOG [LEN", "SLOWLOG [GET"):
        assert cmd in sent, (cmd, sent)
    problems = [line for line in text.splitlines()
                if re.search(r"level=(error|warning|fatal)|c\.Do\(\) - err", line)]
    assert not problems, "\n".join(problems[:20])


def test_latency_and_slowlog_reply_like_an_idle_redis(cluster):
    """The relay's LATENCY and SLOWLOG replies, errors included, are those of a Redis with no
    latency events and an empty slow log (slowlog-log-slower-than -1: nothing is logged)."""
    m = cluster.master(extra=["--slowlog-log-slower-than", "-1"])
    relay = cluster.relay(None)
    cmds = ["SLOWLOG GET", "SLOWLOG GET 10", "SLOWLOG GET -1", "SLOWLOG GET -2", "SLOWLOG GET x",
            "SLOWLOG LEN", "SLOWLOG LEN 1", "SLOWLOG RESET", "SLOWLOG NOPE", "LATENCY LATEST",
            "LATENCY LATEST x", "LATENCY HISTORY command", "LATENCY HISTORY", "LATENCY RESET",
            "LATENCY NOPE", "LATENCY", "SLOWLOG"]

    def answer(node, cmd):
        try:
            return node.r.execute_command(*cmd.split())
        except Exception as e:  # noqa: BLE001 - the error text is the reply
            return "error: %s" % e
    for cmd in cmds:
        assert answer(relay, cmd) == answer(m, cmd), cmd
