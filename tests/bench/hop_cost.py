#!/usr/bin/python3
"""Cost of the intermediate hop, cascade against a stock redis-server replica, side by side.

For each hop kind, on the same machine in one run: a master, the hop, N stock replicas behind
it; preload K keys; then a write load (redis-benchmark SET, V-byte values) streams through the
hop. Reported per hop: CPU seconds spent by the hop per GB of stream, the hop's peak RSS
(VmHWM), and how long replicas took to catch up. Medians over R repeats, then ratios.

    /usr/bin/python3 tests/bench/hop_cost.py [--replicas 4] [--keys 100000] [--requests 200000]
                                             [--value 1000] [--repeats 3]
Not a test: nothing here asserts; numbers go to BENCHMARKS.md by hand, with the command.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASCADE = os.environ.get("CASCADE_BIN", os.path.join(ROOT, "build", "proxy", "cascade"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Procs:
    def __init__(self):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="cascade-bench-")

    def redis(self, name, extra=()):
        port = free_port()
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--dir", d, "--save", "", "--appendonly", "no",
                              "--repl-diskless-sync-delay", "0", "--logfile",
                              os.path.join(d, "log"), *extra])
        self.procs.append(p)
        c = redis.Redis(port=port, socket_timeout=30)
        wait_for(c.ping, 10, name)
        return port, p, c

    def cascade(self, upstream_port, backlog):
        port = free_port()
        d = os.path.join(self.dir, "relay")
        os.makedirs(d)
        err = open(os.path.join(d, "log"), "w")
        p = subprocess.Popen([CASCADE, "--port", str(port), "--upstream",
                              f"127.0.0.1:{upstream_port}", "--dir", d, "--set",
                              f"backlog.size={backlog}"], stderr=err)
        self.procs.append(p)
        c = redis.Redis(port=port, socket_timeout=30)
        wait_for(lambda: c.info("replication")["master_link_status"] == "up", 30, "relay link")
        return port, p, c

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def offset(c):
    return int(c.info("replication")["master_repl_offset"])


def run_once(kind, args):
    ps = Procs()
    try:
        mport, _, m = ps.redis("master", ["--repl-backlog-size", "64mb"])
        subprocess.run(["redis-cli", "-p", str(mport), "debug", "populate", str(args.keys),
                        "key", str(args.value)], check=True, stdout=subprocess.DEVNULL)
        if kind == "cascade":
            hport, hop, _ = ps.cascade(mport, "64mb")
        else:
            hport, hop, hc = ps.redis("hop", ["--replicaof", "127.0.0.1", str(mport),
                                              "--repl-backlog-size", "64mb"])
            wait_for(lambda: hc.info("replication")["master_link_status"] == "up", 60, "hop")
        reps = []
        for i in range(args.replicas):
            _, _, rc = ps.redis(f"r{i}", ["--replicaof", "127.0.0.1", str(hport)])
            reps.append(rc)
        for rc in reps:
            wait_for(lambda rc=rc: rc.info("replication")["master_link_status"] == "up", 120,
                     "replica sync")
        off0 = offset(m)
        cpu0 = cpu_seconds(hop.pid)
        t0 = time.monotonic()
        subprocess.run(["redis-benchmark", "-p", str(mport), "-t", "set", "-n",
                        str(args.requests), "-d", str(args.value), "-r", str(args.keys), "-P",
                        "32", "-q"], check=True, stdout=subprocess.DEVNULL)
        t_load = time.monotonic() - t0
        target = offset(m)
        wait_for(lambda: all(offset(rc) >= target for rc in reps), 300, "replicas catch up")
        t_all = time.monotonic() - t0
        cpu = cpu_seconds(hop.pid) - cpu0
        gb = (target - off0) / 1e9
        return {"cpu_per_gb": cpu / gb, "rss_mb": peak_rss_mb(hop.pid),
                "catchup_s": t_all - t_load, "stream_gb": gb}
    finally:
        ps.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--value", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not os.access(CASCADE, os.X_OK):
        sys.exit(f"no binary at {CASCADE}: meson setup build && meson compile -C build")
    res = {}
    for kind in ("redis", "cascade"):
        runs = [run_once(kind, args) for _ in range(args.repeats)]
        res[kind] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"hop cost: {args.replicas} replicas, {args.keys} keys, {args.requests} SETs of "
          f"{args.value} B, median of {args.repeats}")
    print(f"{'hop':10} {'stream GB':>10} {'CPU s/GB':>10} {'peak RSS MB':>12} {'catch-up s':>11}")
    for kind, r in res.items():
        print(f"{kind:10} {r['stream_gb']:10.3f} {r['cpu_per_gb']:10.2f} {r['rss_mb']:12.1f} "
              f"{r['catchup_s']:11.2f}")
    c, s = res["cascade"], res["redis"]
    print(f"ratios cascade/redis: CPU per GB {c['cpu_per_gb'] / s['cpu_per_gb']:.3f}, "
          f"peak RSS {c['rss_mb'] / s['rss_mb']:.3f}")


if __name__ == "__main__":
    main()
