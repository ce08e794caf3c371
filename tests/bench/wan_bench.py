#!/usr/bin/python3
"""The link between two cascade relays across an emulated WAN (tests/wan/wanem), compressed
(upstream.compression = auto) and not (no), side by side in one run.

  master -> DC A relay -> wanem (delay, rate cap) -> DC B relay -> leaf (stock replica)

Reported per workload (JSON-like writes, random 1 KB values) and mode:
  - WAN bytes per stream byte (wanem's byte count / the stream bytes DC B received);
  - stream rate through the WAN: the writer floods for --seconds, the rate is the stream
    bytes DC B received over the time until it caught up;
  - CPU of DC A's relay per GB of stream (utime + stime from /proc);
then the added latency of a PUBLISH from the master to a subscriber on DC B's leaf (median
of --probes, idle link), and the time for DC B to come online from nothing (--keys keys,
over --online-rate with the same delay), compressed and not.

    /usr/bin/python3 tests/bench/wan_bench.py [--seconds 10] [--keys 1000000] [--probes 30]
Not a test: nothing here asserts; numbers go to BENCHMARKS.md by hand, with the command.
"""
import argparse
import json
import os
import random
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness as h  # noqa: E402
from test_wan import JsonWriter, WanEm  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


class RandomWriter(JsonWriter):
    """SET of 1 KB random values (hex of 512 random bytes would compress 2x: raw bytes)."""

    def write_batch(self, c):
        p = c.pipeline(transaction=False)
        for _ in range(self.batch):
            p.set("rnd:%d" % self.rnd.randrange(20000), os.urandom(1024))
            self.count += 1
        p.execute()


def setup(c, compression, delay_ms, rate, keys=0):
    m = c.master()
    if keys:
        cl = m.client()
        rnd = random.Random(3)
        for start in range(0, keys, 10000):
            p = cl.pipeline(transaction=False)
            for i in range(start, min(keys, start + 10000)):
                p.set("doc:%d" % i, '{"id":%d,"name":"user-%d","email":"user%d@example.com",'
                      '"plan":"%s","score":%d}' % (i, i, i, rnd.choice(["free", "pro"]),
                                                   rnd.randrange(10**6)))
            p.execute()
    a = c.relay(m, "dcA")
    h.wait_link_up(a, timeout=600)
    wan = WanEm(c, a, delay_ms=delay_ms, rate=rate)
    return m, a, wan


def start_b(c, wan, compression):
    return c.relay(wan, "dcB", extra=["--set", "upstream.compression=%s" % compression])


def stream_run(tmp, workload, compression, seconds, delay_ms, rate):
    c = h.Cluster(os.path.join(tmp, "%s-%s" % (workload, compression)))
    try:
        m, a, wan = setup(c, compression, delay_ms, rate)
        b = start_b(c, wan, compression)
        h.wait_link_up(b, timeout=120)
        ib0 = h.info(b.client(), "relay")
        down0 = wan.stats()["down"]
        cpu0 = cpu_s(a.pid)
        cls = JsonWriter if workload == "json" else RandomWriter
        w = cls(m.port, batches_per_s=100000, batch=100)  # as fast as the master takes it
        t0 = time.monotonic()
        w.start()
        time.sleep(seconds)
        w.stop()
        end = h.repl_offset(m)
        h.wait_for(lambda: h.repl_offset(b) >= end, 600, "DC B to catch up")
        t1 = time.monotonic()
        ib = h.info(b.client(), "relay")
        stream = ib["stream_bytes_in"] - ib0["stream_bytes_in"]
        wire = wan.stats()["down"] - down0
        cpu = cpu_s(a.pid) - cpu0
        return {"workload": workload, "compression": compression, "stream_bytes": stream,
                "wan_bytes": wire, "wan_per_stream": wire / stream,
                "stream_mb_s": stream / (t1 - t0) / 1e6,
                "dcA_cpu_s_per_gb": cpu / (stream / 1e9), "link": ib["upstream_link"]}
    finally:
        c.teardown()


def latency_run(tmp, compression, probes, delay_ms, rate):
    c = h.Cluster(os.path.join(tmp, "latency-%s" % compression))
    try:
        m, a, wan = setup(c, compression, delay_ms, rate)
        b = start_b(c, wan, compression)
        h.wait_link_up(b, timeout=120)
        leaf = c.replica(b, "leaf")
        sub = leaf.client().pubsub()
        sub.subscribe("probe")
        sub.get_message(timeout=5)
        mc = m.client()
        lat = []
        for i in range(probes):
            t0 = time.monotonic()
            mc.publish("probe", "p%d" % i)
            msg = None
            while msg is None and time.monotonic() - t0 < 10:
                msg = sub.get_message(timeout=1)
            if msg is not None:
                lat.append((time.monotonic() - t0) * 1000)
            time.sleep(0.2)
        sub.close()
        return {"compression": compression, "publish_ms_median": statistics.median(lat),
                "publish_ms_max": max(lat), "one_way_ms": delay_ms, "probes": len(lat)}
    finally:
        c.teardown()


def online_run(tmp, compression, keys, delay_ms, rate):
    c = h.Cluster(os.path.join(tmp, "online-%s" % compression))
    try:
        m, a, wan = setup(c, compression, delay_ms, rate, keys=keys)
        t0 = time.monotonic()
        b = start_b(c, wan, compression)
        h.wait_link_up(b, timeout=900)
        t1 = time.monotonic()
        ib = h.info(b.client(), "relay")
        return {"compression": compression, "keys": keys, "online_s": t1 - t0,
                "rdb_bytes": ib["snapshot_size"], "wan_bytes": wan.stats()["down"]}
    finally:
        c.teardown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--delay-ms", type=int, default=50, help="one way (RTT/2)")
    ap.add_argument("--rate", type=int, default=10_000_000 // 8, help="bytes/s per direction")
    ap.add_argument("--online-rate", type=int, default=100_000_000 // 8)
    ap.add_argument("--skip", default="", help="comma list of: stream,latency,online")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    import tempfile  # noqa: PLC0415
    tmp = tempfile.mkdtemp(prefix="wan-bench-")
    out = []
    if "stream" not in skip:
        for workload in ("json", "random"):
            for comp in ("auto", "no"):
                out.append(stream_run(tmp, workload, comp, args.seconds, args.delay_ms, args.rate))
                print(json.dumps(out[-1]), flush=True)
    if "latency" not in skip:
        for comp in ("auto", "no"):
            out.append(latency_run(tmp, comp, args.probes, args.delay_ms, args.rate))
            print(json.dumps(out[-1]), flush=True)
    if "online" not in skip:
        for comp in ("auto", "no"):
            out.append(online_run(tmp, comp, args.keys, args.delay_ms, args.online_rate))
            print(json.dumps(out[-1]), flush=True)


if __name__ == "__main__":
    main()
