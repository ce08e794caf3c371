#!/usr/bin/python3
"""cascade benchmark suite (issue 6): what the intermediate hop of a replication tree costs.

    /usr/bin/python3 tests/bench/run.py [--quick] [--repeats R] [--out DIR]

Runs, side by side in one run on the same data, four ways of feeding N replicas:
  direct     N stock replicas on the master (no hop)
  redis      a stock `redis-server --replicaof` as the hop (the chain)
  cascade    cascade as the hop, default configuration (backlog.size 64mb, disk log on)
  forwarder  tests/bench/min_forwarder as the hop: the ceiling, a process that only copies bytes
and measures, with medians over R repeats (configurations interleaved in each repeat, order
rotated between repeats):
  memory     peak RSS (VmHWM) of the hop at 1e5 and 1e6 keys of 100-byte values (DEBUG POPULATE)
  cpu        hop CPU seconds (utime+stime) per GB of master_repl_offset advance under a
             redis-benchmark SET load, N=4 stock replicas
  latency    PUBLISH on the master, a subscriber on every leaf: idle and under a steady load
  fanout     time until N fresh replicas are online via each hop; forks on the master
  bytes      replication bytes leaving the master against bytes arriving at the leaves
  scale      synth_master -> hop -> N fake replicas, N = 1, 4, 16, 64, 256: throughput, CPU
             per byte, hop RSS, the relay's per-replica memory; N = 4 and 64 are the throughput
             ceiling comparison (cascade against min_forwarder)
Writes results.json (raw runs and the summary), summary.md (the tables) and PNG plots to --out
(default tests/bench/results/). Not a test: nothing here asserts, and timings depend on the
machine; compare the ratios measured side by side.

Binaries: build/proxy/cascade (or $CASCADE_BIN) is copied to the run's temp dir first, so a
rebuild during the run changes nothing; the tools are built with ninja if missing.
"""
import argparse
import hashlib
import json
import os
import platform
import select
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
BUILD = os.environ.get("CASCADE_BUILD", os.path.join(ROOT, "build"))
TOOLS = ["fake_replica", "synth_master", "min_forwarder", "pubsub_latency"]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
KINDS = ["direct", "redis", "cascade", "forwarder"]
HOPS = ["redis", "cascade", "forwarder"]
MB = 1024 * 1024


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (redis.RedisError, OSError, KeyError, ValueError) as e:
            last = e
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_mem(pid):
    """VmHWM and VmRSS in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024
    return out.get("VmHWM", 0), out.get("VmRSS", 0)


def signals_ready(pid):
    """True once the tool blocks SIGUSR1 (its signalfd is set up): before that the signal
    would kill it."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGUSR1 - 1)))
    return False


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


class Procs:
    """Every process of one run, each in its own process group; stop() ends them by pid."""

    def __init__(self, base):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="run-", dir=base)

    def start(self, name, argv, stdout=None):
        d = os.path.join(self.dir, name)
        os.makedirs(d, exist_ok=True)
        err = open(os.path.join(d, "stderr"), "w")
        out = stdout if stdout is not None else open(os.path.join(d, "stdout"), "w")
        p = subprocess.Popen(argv, stdout=out, stderr=err, cwd=d, start_new_session=True)
        p.name = name
        self.procs.append(p)
        return p, d

    def redis(self, name, extra=()):
        port = free_port()
        d = os.path.join(self.dir, name)
        os.makedirs(d, exist_ok=True)
        p, _ = self.start(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                 "--dir", d, "--save", "", "--appendonly", "no",
                                 "--repl-diskless-sync-delay", "0",
                                 "--enable-debug-command", "local",
                                 "--logfile", os.path.join(d, "log"), *extra])
        c = redis.Redis(port=port, socket_timeout=60)
        wait_for(c.ping, 10, f"{name} to answer PING")
        return port, p, c

    def stop(self, p, timeout=10):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def stop_all(self, keep_dir=False):
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log(f"stopping {p.name} (pid {p.pid}): {e}")
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="cascade-bench-")
        self.bin = {}
        self.problems = []  # anything odd a reader of the report should know

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------- binaries

    def prepare_binaries(self):
        src = os.environ.get("CASCADE_BIN", os.path.join(BUILD, "proxy", "cascade"))
        if not os.path.exists(os.path.join(BUILD, "build.ninja")):
            subprocess.run(["meson", "setup", BUILD], cwd=ROOT, check=True)
        targets = [f"tests/bench/{t}" for t in TOOLS]
        if "CASCADE_BIN" not in os.environ and not os.access(src, os.X_OK):
            targets.append("proxy/cascade")
        subprocess.run(["ninja", "-C", BUILD, *targets], check=True, stdout=subprocess.DEVNULL)
        if not os.access(src, os.X_OK):
            sys.exit(f"no relay binary at {src}: meson compile -C build")
        d = os.path.join(self.tmp, "bin")
        os.makedirs(d)
        for name, path in [("cascade", src)] + [
                (t, os.path.join(BUILD, "tests", "bench", t)) for t in TOOLS]:
            shutil.copy2(path, os.path.join(d, name))
            self.bin[name] = os.path.join(d, name)
        self.cascade_src = src
        with open(self.bin["cascade"], "rb") as f:
            self.cascade_sha = hashlib.sha256(f.read()).hexdigest()

    # ---------------------------------------------------------------- hops

    def start_hop(self, ps, kind, up_port, up_client=None):
        """Start the hop of `kind` on upstream up_port; return (port, proc, client, info)."""
        if kind == "redis":
            port, p, c = ps.redis("hop", ["--replicaof", "127.0.0.1", str(up_port),
                                          "--repl-backlog-size", "64mb"])
            wait_for(lambda: c.info("replication")["master_link_status"] == "up" and
                     c.info("replication")["master_sync_in_progress"] == 0, 300, "stock hop sync")
            return port, p, c, {"backlog_bytes": 64 * MB}
        if kind == "cascade":
            port = free_port()
            sets = [a for kv in self.args.cascade_set for a in ("--set", kv)]
            p, d = ps.start("hop", [self.bin["cascade"], "--port", str(port), "--upstream",
                                    f"127.0.0.1:{up_port}", "--dir", ".", *sets])
            c = redis.Redis(port=port, socket_timeout=60)
            wait_for(lambda: c.info("relay")["snapshot_state"] == "ready" and
                     c.info("replication")["master_link_status"] == "up", 300, "cascade sync")
            cfg = c.config_get("backlog.*")
            return port, p, c, {"backlog_bytes": int(c.info("replication")["repl_backlog_size"]),
                                "config": cfg}
        if kind == "forwarder":
            port = free_port()
            p, d = ps.start("hop", [self.bin["min_forwarder"], "--upstream",
                                    f"127.0.0.1:{up_port}", "--port", str(port)])
            c = redis.Redis(port=port, socket_timeout=60)
            wait_for(lambda: c.info()["master_link_status"] == "up", 300, "min_forwarder sync")
            return port, p, c, {"backlog_bytes": 0}
        raise ValueError(kind)

    # ---------------------------------------------------------------- real master topologies

    def run_topology(self, kind, keys, latency):
        a = self.args
        ps = Procs(self.tmp)
        res = {"kind": kind, "keys": keys}
        try:
            mport, mp, m = ps.redis("master", ["--repl-backlog-size", "64mb"])
            m.execute_command("DEBUG", "POPULATE", keys, "key", a.value_size)
            res["rdb_keys"] = m.dbsize()
            st0 = m.info("stats")
            t0 = time.monotonic()
            hop = None
            if kind == "direct":
                up_port = mport
            else:
                up_port, hop, hc, hinfo = self.start_hop(ps, kind, mport, m)
                res.update(hinfo)
            res["hop_sync_s"] = time.monotonic() - t0
            st1 = m.info("stats")
            # Fan-out: N fresh replicas attach at once.
            t0 = time.monotonic()
            leaves = []
            for i in range(a.replicas):
                port, p, c = ps.redis(f"leaf{i}", ["--replicaof", "127.0.0.1", str(up_port)])
                leaves.append((port, p, c))
            for port, p, c in leaves:
                wait_for(lambda c=c: c.info("replication")["master_link_status"] == "up" and
                         c.info("replication")["master_sync_in_progress"] == 0, 600,
                         f"leaf {port} online")
            res["fanout_s"] = time.monotonic() - t0
            st2 = m.info("stats")
            res["master_forks_hop_sync"] = st1["total_forks"] - st0["total_forks"]
            res["master_forks_attach"] = st2["total_forks"] - st1["total_forks"]
            res["master_sync_full_attach"] = st2["sync_full"] - st1["sync_full"]
            if kind == "redis":
                res["hop_forks"] = hc.info("stats")["total_forks"]
            elif kind in ("cascade", "forwarder"):
                res["hop_forks"] = 0
            # Load: redis-benchmark SETs; the hop's CPU per GB of stream.
            off0 = m.info("replication")["master_repl_offset"]
            leaf_off0 = [c.info("replication")["master_repl_offset"] for _, _, c in leaves]
            out0 = m.info("stats")["total_net_repl_output_bytes"]
            mcpu0 = proc_cpu(mp.pid)
            hcpu0 = proc_cpu(hop.pid) if hop else 0.0
            t0 = time.monotonic()
            subprocess.run(["redis-benchmark", "-p", str(mport), "-t", "set", "-n",
                            str(a.load_requests), "-d", str(a.load_value or a.value_size),
                            "-r", str(keys), "-c", str(a.load_clients), "-P",
                            str(a.load_pipeline), "-q"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=600)
            res["load_s"] = time.monotonic() - t0
            target = m.info("replication")["master_repl_offset"]
            wait_for(lambda: all(c.info("replication")["master_repl_offset"] >= target
                                 for _, _, c in leaves), 300, "leaves catch up")
            res["catchup_s"] = time.monotonic() - t0 - res["load_s"]
            stream = target - off0
            res["stream_bytes"] = stream
            res["master_cpu_s"] = proc_cpu(mp.pid) - mcpu0
            if hop:
                res["hop_cpu_s"] = proc_cpu(hop.pid) - hcpu0
                res["hop_cpu_per_gb"] = res["hop_cpu_s"] / (stream / 1e9)
            res["master_cpu_per_gb"] = res["master_cpu_s"] / (stream / 1e9)
            res["master_out_load"] = m.info("stats")["total_net_repl_output_bytes"] - out0
            res["leaves_in_load"] = sum(c.info("replication")["master_repl_offset"] - o0
                                        for (_, _, c), o0 in zip(leaves, leaf_off0))
            res["master_out_total"] = m.info("stats")["total_net_repl_output_bytes"]
            res["leaves_in_total"] = sum(c.info("stats")["total_net_repl_input_bytes"]
                                         for _, _, c in leaves)
            # Latency: idle, then under a steady load paced by the probe itself.
            if latency:
                subs = ",".join(str(port) for port, _, _ in leaves)
                for phase, rate in (("idle", 0), ("load", a.latency_load_rate)):
                    out = subprocess.run(
                        [self.bin["pubsub_latency"], "--pub-port", str(mport), "--sub-ports", subs,
                         "--count", str(a.latency_count), "--interval-ms", "4", "--warmup", "20",
                         "--load-rate", str(rate), "--load-value", str(a.value_size),
                         "--load-keys", str(keys)],
                        check=True, capture_output=True, text=True, timeout=600).stdout
                    res[f"latency_{phase}"] = json.loads(out)
            if hop:
                res["hop_hwm"], res["hop_rss"] = proc_mem(hop.pid)
                if kind == "cascade":
                    mem = hc.info("memory")
                    res["hop_mem_backlog"] = mem["mem_replication_backlog"]
                    res["hop_relay"] = {k: v for k, v in hc.info("relay").items()
                                        if not k.startswith("replica")}
                elif kind == "redis":
                    mem = hc.info("memory")
                    res["hop_used_memory"] = mem["used_memory"]
                    res["hop_mem_backlog"] = mem["mem_replication_backlog"]
            res["master_hwm"], _ = proc_mem(mp.pid)
            digests = {m.execute_command("DEBUG", "DIGEST")}
            for _, _, c in leaves:
                digests.add(c.execute_command("DEBUG", "DIGEST"))
            res["digests_equal"] = len(digests) == 1
            if not res["digests_equal"]:
                self.problems.append(f"{kind} {keys} keys: leaf dataset differs from the master")
            for p in ps.procs:
                if p.poll() is not None:
                    self.problems.append(f"{kind} {keys} keys: {p.name} exited early "
                                         f"(code {p.returncode})")
            return res
        except Exception as e:
            self.problems.append(f"{kind} {keys} keys: {type(e).__name__}: {e}")
            log(f"  FAILED {kind} {keys}: {e}")
            res["error"] = str(e)
            return res
        finally:
            ps.stop_all()

    # ---------------------------------------------------------------- synthetic fan-out

    def read_json_line(self, p, timeout=10):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = p.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if not r:
                continue
            ch = os.read(fd, 1)
            if not ch:
                break
            if ch == b"\n":
                return json.loads(buf)
            buf += ch
        raise RuntimeError(f"no report from pid {p.pid}")

    def run_scale(self, kind, n):
        a = self.args
        ps = Procs(self.tmp)
        res = {"kind": kind, "n": n}
        try:
            sport = free_port()
            synth, _ = ps.start("synth", [self.bin["synth_master"], "--port", str(sport),
                                          "--hold", "--seconds", "600", "--value",
                                          str(a.value_size)])
            wait_for(lambda: socket.create_connection(("127.0.0.1", sport), 1).close() is None,
                     10, "synth_master listening")
            hport, hop, hc, hinfo = self.start_hop(ps, kind, sport)
            res.update(hinfo)
            fake, _ = ps.start("fake", [self.bin["fake_replica"], "--port", str(hport),
                                        "--conns", str(n), "--seconds", "600",
                                        "--report-every", "0", "--no-per-conn"],
                               stdout=subprocess.PIPE)

            wait_for(lambda: signals_ready(fake.pid) and signals_ready(synth.pid), 10,
                     "tools ready for signals")

            def online():
                fake.send_signal(signal.SIGUSR1)
                return self.read_json_line(fake)["online"] == n
            wait_for(online, 60, f"{n} fake replicas online")
            synth.send_signal(signal.SIGUSR1)  # the stream starts
            time.sleep(a.warmup_s)
            fake.send_signal(signal.SIGUSR1)
            c0, t0 = proc_cpu(hop.pid), time.monotonic()
            r0 = self.read_json_line(fake)
            time.sleep(a.window_s / 2)
            if kind == "cascade":
                mem = hc.info("memory")
                rel = hc.info("relay")
                res["mem_clients_slaves"] = mem["mem_clients_slaves"]
                outs = [v["output_bytes"] for k, v in rel.items()
                        if k.startswith("replica") and isinstance(v, dict)]
                res["replica_output_bytes_max"] = max(outs) if outs else 0
                res["replica_output_bytes_sum"] = sum(outs)
                res["mem_replication_backlog"] = mem["mem_replication_backlog"]
            time.sleep(a.window_s / 2)
            fake.send_signal(signal.SIGUSR1)
            c1, t1 = proc_cpu(hop.pid), time.monotonic()
            r1 = self.read_json_line(fake)
            dt = r1["t"] - r0["t"]
            total = r1["bytes"] - r0["bytes"]
            res["window_s"] = dt
            res["bytes_total"] = total
            res["throughput_total"] = total / dt
            res["throughput_per_replica"] = total / dt / n
            res["hop_cpu_s"] = c1 - c0
            res["hop_cpu_frac"] = (c1 - c0) / (t1 - t0)
            res["hop_cpu_per_gb_delivered"] = (c1 - c0) / (total / 1e9) if total else None
            res["hop_cpu_per_gb_stream"] = (c1 - c0) / (total / n / 1e9) if total else None
            res["fake_cpu_frac"] = (r1["cpu_s"] - r0["cpu_s"]) / dt
            res["drops"] = r1["drops"]
            res["hop_hwm"], res["hop_rss"] = proc_mem(hop.pid)
            if kind == "cascade":
                # The backlog fills with whatever streamed so far (more at small N, where the
                # stream is faster): what is not backlog is what must stay flat in N.
                res["backlog_end"] = hc.info("memory")["mem_replication_backlog"]
                res["hop_rss_minus_backlog"] = proc_mem(hop.pid)[1] - res["backlog_end"]
            if r1["drops"]:
                self.problems.append(f"scale {kind} N={n}: {r1['drops']} replica connections "
                                     "dropped")
            for p in ps.procs:
                if p.poll() is not None:
                    self.problems.append(f"scale {kind} N={n}: {p.name} exited early "
                                         f"(code {p.returncode})")
            return res
        except Exception as e:
            self.problems.append(f"scale {kind} N={n}: {type(e).__name__}: {e}")
            log(f"  FAILED scale {kind} {n}: {e}")
            res["error"] = str(e)
            return res
        finally:
            ps.stop_all()


# -------------------------------------------------------------------- summary

def summarize(runs, scale_runs, args):
    s = {}
    ok = [r for r in runs if "error" not in r]
    sc = [r for r in scale_runs if "error" not in r]

    def sel(kind, keys=None):
        return [r for r in ok if r["kind"] == kind and (keys is None or r["keys"] == keys)]

    mem = {}
    for keys in args.key_counts:
        for kind in HOPS:
            rs = sel(kind, keys)
            if not rs:
                continue
            e = {"hwm": median(r["hop_hwm"] for r in rs),
                 "rss_end": median(r["hop_rss"] for r in rs),
                 "backlog": rs[0].get("backlog_bytes"),
                 "runs": len(rs)}
            e["hwm_minus_backlog"] = e["hwm"] - (e["backlog"] or 0)
            mem[f"{kind}/{keys}"] = e
    s["memory"] = mem

    cpu = {}
    for keys in args.key_counts:
        for kind in KINDS:
            rs = sel(kind, keys)
            if not rs:
                continue
            cpu[f"{kind}/{keys}"] = {
                "hop_cpu_per_gb": median(r.get("hop_cpu_per_gb") for r in rs),
                "master_cpu_per_gb": median(r["master_cpu_per_gb"] for r in rs),
                "stream_bytes": median(r["stream_bytes"] for r in rs),
                "load_s": median(r["load_s"] for r in rs),
                "catchup_s": median(r["catchup_s"] for r in rs)}
    s["cpu"] = cpu

    lat = {}
    for phase in ("idle", "load"):
        for kind in KINDS:
            rs = [r for r in sel(kind) if f"latency_{phase}" in r]
            if not rs:
                continue
            p50s, p99s = [], []
            pooled, lost = [], 0
            for r in rs:
                v = [x for x in r[f"latency_{phase}"]["all_us"] if x >= 0]
                lost += r[f"latency_{phase}"]["lost"]
                pooled += v
                p50s.append(pct(v, 50))
                p99s.append(pct(v, 99))
            lat[f"{kind}/{phase}"] = {"p50_us": median(p50s), "p99_us": median(p99s),
                                      "p90_us": pct(pooled, 90), "p999_us": pct(pooled, 99.9),
                                      "max_us": max(pooled) if pooled else None,
                                      "samples": len(pooled), "lost": lost}
    for phase in ("idle", "load"):
        d = lat.get(f"direct/{phase}")
        for kind in HOPS:
            e = lat.get(f"{kind}/{phase}")
            if d and e:
                e["added_p50_us"] = e["p50_us"] - d["p50_us"]
                e["added_p99_us"] = e["p99_us"] - d["p99_us"]
                e["p50_vs_direct"] = e["p50_us"] / d["p50_us"]
    s["latency"] = lat

    fan = {}
    for keys in args.key_counts:
        for kind in KINDS:
            rs = sel(kind, keys)
            if not rs:
                continue
            fan[f"{kind}/{keys}"] = {
                "fanout_s": median(r["fanout_s"] for r in rs),
                "hop_sync_s": median(r["hop_sync_s"] for r in rs),
                "master_forks_attach": max(r["master_forks_attach"] for r in rs),
                "master_forks_attach_min": min(r["master_forks_attach"] for r in rs),
                "master_forks_hop_sync": median(r["master_forks_hop_sync"] for r in rs),
                "master_sync_full_attach": max(r["master_sync_full_attach"] for r in rs),
                "hop_forks": median(r.get("hop_forks") for r in rs),
                "digests_equal": all(r["digests_equal"] for r in rs)}
    s["fanout"] = fan

    byt = {}
    for keys in args.key_counts:
        for kind in KINDS:
            rs = sel(kind, keys)
            if not rs:
                continue
            byt[f"{kind}/{keys}"] = {
                "master_out_load": median(r["master_out_load"] for r in rs),
                "leaves_in_load": median(r["leaves_in_load"] for r in rs),
                "master_out_total": median(r["master_out_total"] for r in rs),
                "leaves_in_total": median(r["leaves_in_total"] for r in rs)}
            e = byt[f"{kind}/{keys}"]
            e["ratio_load"] = e["master_out_load"] / e["leaves_in_load"]
            e["ratio_total"] = e["master_out_total"] / e["leaves_in_total"]
    s["bytes"] = byt

    scale = {}
    for kind in ("cascade", "forwarder"):
        for n in args.fanouts:
            rs = [r for r in sc if r["kind"] == kind and r["n"] == n]
            if not rs:
                continue
            e = {k: median(r.get(k) for r in rs) for k in (
                "throughput_per_replica", "throughput_total", "hop_cpu_frac",
                "hop_cpu_per_gb_delivered", "hop_cpu_per_gb_stream", "hop_hwm", "hop_rss",
                "fake_cpu_frac", "mem_clients_slaves", "replica_output_bytes_max",
                "replica_output_bytes_sum", "mem_replication_backlog", "backlog_end",
                "hop_rss_minus_backlog")}
            e["runs"] = len(rs)
            scale[f"{kind}/{n}"] = e
    s["scale"] = scale

    # Targets.
    t = {}

    def target(name, value, limit, ok, text):
        t[name] = {"value": value, "limit": limit, "met": ok, "text": text}

    for keys in args.key_counts:
        e = mem.get(f"cascade/{keys}")
        if e:
            v = e["hwm_minus_backlog"] / MB
            target(f"memory_{keys}", v, 16, v <= 16,
                   f"cascade peak RSS minus backlog at {keys:g} keys: {v:.1f} MB (target <= 16 MB)")
    for keys in args.key_counts:
        c, r = cpu.get(f"cascade/{keys}"), cpu.get(f"redis/{keys}")
        if c and r and c["hop_cpu_per_gb"] and r["hop_cpu_per_gb"]:
            v = c["hop_cpu_per_gb"] / r["hop_cpu_per_gb"]
            target(f"cpu_{keys}", v, 1 / 15, v <= 1 / 15,
                   f"cascade/stock hop CPU per GB at {keys:g} keys: {v:.3f} = 1/{1 / v:.1f} "
                   "(target <= 1/15)")
    c, r = lat.get("cascade/idle"), lat.get("redis/idle")
    if c and r and "added_p50_us" in c:
        v = c["added_p50_us"] / r["added_p50_us"] if r["added_p50_us"] > 0 else None
        target("latency_idle", v, 0.25, v is not None and v <= 0.25,
               f"idle added p50: cascade {c['added_p50_us']:.0f} us, stock hop "
               f"{r['added_p50_us']:.0f} us, ratio {v if v is None else round(v, 2)} "
               "(target <= 0.25)")
    c = lat.get("cascade/load")
    if c and "p50_vs_direct" in c:
        v = c["p50_vs_direct"]
        target("latency_load", v, 1.2, v <= 1.2,
               f"under load all-leaves p50: cascade {c['p50_us']:.0f} us = {v:.2f}x direct "
               "(target <= 1.2x)")
    forks = [fan[k]["master_forks_attach"] for k in fan if k.startswith("cascade/")]
    if forks:
        target("zero_forks", max(forks), 0, max(forks) == 0,
               f"master forks while {args.replicas} replicas attach to cascade: {max(forks)} "
               "(target 0)")
    for n in (4, 64):
        c, f = scale.get(f"cascade/{n}"), scale.get(f"forwarder/{n}")
        if c and f:
            v = c["throughput_per_replica"] / f["throughput_per_replica"]
            target(f"throughput_{n}", v, 0.8, v >= 0.8,
                   f"N={n}: cascade forwards {v * 100:.0f}% of min_forwarder's rate "
                   "(target >= 80%)")
    hw = [scale[f"cascade/{n}"]["hop_rss_minus_backlog"] for n in args.fanouts
          if f"cascade/{n}" in scale]
    if len(hw) >= 2:
        v = (max(hw) - min(hw)) / MB
        target("flat_memory", v, 16, v <= 16,
               f"cascade RSS minus backlog in use across N={args.fanouts[0]}.."
               f"{args.fanouts[-1]}: {min(hw) / MB:.1f}..{max(hw) / MB:.1f} MB, "
               f"spread {v:.1f} MB")
    s["targets"] = t
    return s


def fmt_mb(b):
    return "-" if b is None else f"{b / MB:.1f}"


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(s, args):
    L = []
    L.append("### Memory: hop peak RSS (VmHWM), MB\n")
    L.append("| keys | stock hop | cascade | min_forwarder | cascade backlog.size | "
             "cascade peak - backlog | cascade / stock |")
    L.append("|---|---|---|---|---|---|---|")
    for keys in args.key_counts:
        r, c, f = (s["memory"].get(f"{k}/{keys}") for k in HOPS)
        L.append(f"| {keys:g} | {fmt_mb(r and r['hwm'])} | {fmt_mb(c and c['hwm'])} | "
                 f"{fmt_mb(f and f['hwm'])} | {fmt_mb(c and c['backlog'])} | "
                 f"{fmt_mb(c and c['hwm_minus_backlog'])} | "
                 f"{fmt(c and r and c['hwm'] / r['hwm'], 3)} |")
    load = (f"redis-benchmark -t set -n {args.load_requests} -c {args.load_clients} "
            f"-P {args.load_pipeline} -d {args.load_value or args.value_size}")
    L.append("\n### CPU per GB of stream (hop utime+stime / GB of master offset), "
             f"{args.replicas} stock replicas, load `{load}`\n")
    L.append("| keys | stream MB | stock hop s/GB | cascade s/GB | min_forwarder s/GB | "
             "cascade / stock | cascade / forwarder | master s/GB (direct / via cascade) |")
    L.append("|---|---|---|---|---|---|---|---|")
    for keys in args.key_counts:
        d, r, c, f = (s["cpu"].get(f"{k}/{keys}") for k in KINDS)
        if not c:
            continue
        rr = c and r and r["hop_cpu_per_gb"] and c["hop_cpu_per_gb"] / r["hop_cpu_per_gb"]
        rf = c and f and f["hop_cpu_per_gb"] and c["hop_cpu_per_gb"] / f["hop_cpu_per_gb"]
        L.append(f"| {keys:g} | {c['stream_bytes'] / MB:.0f} | {fmt(r and r['hop_cpu_per_gb'])} | "
                 f"{fmt(c['hop_cpu_per_gb'])} | {fmt(f and f['hop_cpu_per_gb'])} | "
                 f"{fmt(rr, 3)} (1/{fmt(rr and 1 / rr, 1)}) | {fmt(rf)} | "
                 f"{fmt(d and d['master_cpu_per_gb'])} / {fmt(c['master_cpu_per_gb'])} |")
    L.append("\n### Latency, all leaves (time until the last of the "
             f"{args.replicas} leaves delivered a PUBLISH), microseconds\n")
    L.append("| phase | config | p50 | p90 | p99 | p99.9 | max | added p50 vs direct | "
             "p50 / direct | samples | lost |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for phase in ("idle", "load"):
        for kind in KINDS:
            e = s["latency"].get(f"{kind}/{phase}")
            if not e:
                continue
            L.append(f"| {phase} | {kind} | {fmt(e['p50_us'], 0)} | {fmt(e['p90_us'], 0)} | "
                     f"{fmt(e['p99_us'], 0)} | {fmt(e['p999_us'], 0)} | {fmt(e['max_us'], 0)} | "
                     f"{fmt(e.get('added_p50_us'), 0)} | {fmt(e.get('p50_vs_direct'))} | "
                     f"{e['samples']} | {e['lost']} |")
    L.append("\n### Full-sync fan-out: N fresh replicas attach at once\n")
    L.append("| keys | config | hop's own sync s | all N online s | master forks (attach) | "
             "master sync_full (attach) | hop forks | datasets equal |")
    L.append("|---|---|---|---|---|---|---|---|")
    for keys in args.key_counts:
        for kind in KINDS:
            e = s["fanout"].get(f"{kind}/{keys}")
            if not e:
                continue
            forks = (str(e["master_forks_attach"]) if e["master_forks_attach"] ==
                     e["master_forks_attach_min"] else
                     f"{e['master_forks_attach_min']}-{e['master_forks_attach']}")
            L.append(f"| {keys:g} | {kind} | {fmt(e['hop_sync_s'] if kind != 'direct' else None)}"
                     f" | {fmt(e['fanout_s'])} | {forks} | {e['master_sync_full_attach']} | "
                     f"{fmt(e['hop_forks'], 0)} | {'yes' if e['digests_equal'] else 'NO'} |")
    L.append("\n### Bytes leaving the master vs bytes arriving at the leaves\n")
    L.append("| keys | config | during load: master out MB | leaves in MB | out / in | "
             "whole run (RDBs too): master out MB | leaves in MB | out / in |")
    L.append("|---|---|---|---|---|---|---|---|")
    for keys in args.key_counts:
        for kind in KINDS:
            e = s["bytes"].get(f"{kind}/{keys}")
            if not e:
                continue
            L.append(f"| {keys:g} | {kind} | {fmt_mb(e['master_out_load'])} | "
                     f"{fmt_mb(e['leaves_in_load'])} | {fmt(e['ratio_load'], 3)} | "
                     f"{fmt_mb(e['master_out_total'])} | {fmt_mb(e['leaves_in_total'])} | "
                     f"{fmt(e['ratio_total'], 3)} |")
    L.append("\n### Scale: synth_master -> hop -> N fake replicas (stream as fast as it goes)\n")
    L.append("| N | hop | MB/s per replica | MB/s total | hop CPU (cores) | hop s/GB delivered | "
             "hop s/GB stream | hop peak RSS MB | hop RSS MB | backlog in use MB | "
             "RSS - backlog MB | mem_clients_slaves KB | max replica output_bytes KB |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.fanouts:
        for kind in ("cascade", "forwarder"):
            e = s["scale"].get(f"{kind}/{n}")
            if not e:
                continue
            kb = (lambda v: "-" if v is None else f"{v / 1024:.0f}")
            L.append(f"| {n} | {kind} | {e['throughput_per_replica'] / 1e6:.1f} | "
                     f"{e['throughput_total'] / 1e6:.0f} | {fmt(e['hop_cpu_frac'])} | "
                     f"{fmt(e['hop_cpu_per_gb_delivered'], 3)} | "
                     f"{fmt(e['hop_cpu_per_gb_stream'], 3)} | {fmt_mb(e['hop_hwm'])} | "
                     f"{fmt_mb(e['hop_rss'])} | {fmt_mb(e.get('backlog_end'))} | "
                     f"{fmt_mb(e.get('hop_rss_minus_backlog'))} | "
                     f"{kb(e.get('mem_clients_slaves'))} | "
                     f"{kb(e.get('replica_output_bytes_max'))} |")
    L.append("\n### Throughput ceiling: cascade's rate as a share of min_forwarder's\n")
    L.append("| N | cascade MB/s per replica | min_forwarder MB/s per replica | cascade / forwarder |")
    L.append("|---|---|---|---|")
    for n in args.fanouts:
        c, f = s["scale"].get(f"cascade/{n}"), s["scale"].get(f"forwarder/{n}")
        if c and f:
            L.append(f"| {n} | {c['throughput_per_replica'] / 1e6:.1f} | "
                     f"{f['throughput_per_replica'] / 1e6:.1f} | "
                     f"{c['throughput_per_replica'] / f['throughput_per_replica']:.2f} |")
    L.append("\n### Targets\n")
    L.append("| target | met | measured |")
    L.append("|---|---|---|")
    for name, e in s["targets"].items():
        L.append(f"| {name} | {'yes' if e['met'] else '**no**'} | {e['text']} |")
    return "\n".join(L) + "\n"


def plots(runs, scale_runs, s, args, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    colors = {"direct": "tab:gray", "redis": "tab:red", "cascade": "tab:blue",
              "forwarder": "tab:green"}
    labels = {"direct": "direct (no hop)", "redis": "stock redis hop", "cascade": "cascade hop",
              "forwarder": "min_forwarder hop"}
    ok = [r for r in runs if "error" not in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, phase in zip(axes, ("idle", "load")):
        for kind in KINDS:
            v = sorted(x for r in ok if r["kind"] == kind and f"latency_{phase}" in r
                       for x in r[f"latency_{phase}"]["all_us"] if x >= 0)
            if not v:
                continue
            ys = [(i + 1) / len(v) for i in range(len(v))]
            ax.plot(v, ys, label=labels[kind], color=colors[kind])
        ax.set_xscale("log")
        ax.set_xlabel("all-leaves latency, microseconds (log)")
        ax.set_ylabel("fraction of messages")
        ttl = "idle" if phase == "idle" else f"steady load, {args.latency_load_rate} SET/s"
        ax.set_title(f"PUBLISH to {args.replicas} leaves: {ttl}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    files.append("latency_cdf.png")
    fig.savefig(os.path.join(out, files[-1]), dpi=110)
    plt.close(fig)

    ns = args.fanouts
    series = {k: [s["scale"].get(f"{k}/{n}") for n in ns] for k in ("cascade", "forwarder")}

    def scale_plot(fname, key, ylabel, title, scale=1.0, logy=False):
        data = {}
        for k, es in series.items():
            xs = [n for n, e in zip(ns, es) if e and e.get(key)]
            ys = [e[key] * scale for e in es if e and e.get(key)]
            if xs:
                data[k] = (xs, ys)
        if not data:
            return
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for k, (xs, ys) in data.items():
            ax.plot(xs, ys, marker="o", label=labels[k], color=colors[k])
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.set_xlabel("fake replicas behind the hop (N)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=110)
        plt.close(fig)
        files.append(fname)

    scale_plot("throughput_vs_n.png", "throughput_total", "MB/s delivered (all replicas)",
               "Throughput, synth_master streaming flat out", 1e-6, logy=True)
    scale_plot("throughput_per_replica_vs_n.png", "throughput_per_replica",
               "MB/s per replica", "Throughput per replica", 1e-6, logy=True)
    scale_plot("cpu_vs_n.png", "hop_cpu_per_gb_delivered", "hop CPU s per GB delivered",
               "Hop CPU per byte delivered", logy=True)
    # Memory against N: peak RSS, and what is not backlog (the backlog fills with whatever
    # streamed, which is less at large N where each replica's share of the stream is slower).
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for k, es in series.items():
        for key, style, what in (("hop_hwm", "-", "peak RSS"),
                                 ("hop_rss_minus_backlog", "--", "RSS - backlog in use")):
            xs = [n for n, e in zip(ns, es) if e and e.get(key)]
            ys = [e[key] / MB for e in es if e and e.get(key)]
            if xs:
                ax.plot(xs, ys, style, marker="o", color=colors[k], label=f"{labels[k]}: {what}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("fake replicas behind the hop (N)")
    ax.set_ylabel("MB")
    ax.set_title("Hop memory against N")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "rss_vs_n.png"), dpi=110)
    plt.close(fig)
    files.append("rss_vs_n.png")

    # CPU per GB and memory, real master: bar charts.
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    w = 0.25
    for i, kind in enumerate(HOPS):
        xs = [j + (i - 1) * w for j in range(len(args.key_counts))]
        cpu = [s["cpu"].get(f"{kind}/{k}", {}).get("hop_cpu_per_gb") or 0
               for k in args.key_counts]
        mem = [(s["memory"].get(f"{kind}/{k}") or {}).get("hwm", 0) / MB
               for k in args.key_counts]
        axes[0].bar(xs, cpu, w, label=labels[kind], color=colors[kind])
        axes[1].bar(xs, mem, w, label=labels[kind], color=colors[kind])
    for ax, yl, tt in ((axes[0], "hop CPU s per GB of stream", "CPU per GB, 4 stock replicas"),
                       (axes[1], "hop peak RSS, MB", "Hop peak RSS")):
        ax.set_xticks(range(len(args.key_counts)))
        ax.set_xticklabels([f"{k:g} keys" for k in args.key_counts])
        ax.set_ylabel(yl)
        ax.set_title(tt)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    files.append("hop_cost.png")
    fig.savefig(os.path.join(out, files[-1]), dpi=110)
    plt.close(fig)
    return files


def machine_info():
    info = {"kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info["cores"] = os.cpu_count()
    with open("/proc/meminfo") as f:
        info["mem_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    info["redis"] = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.strip()
    try:
        with open("/etc/os-release") as f:
            info["os"] = next(l.split("=", 1)[1].strip().strip('"') for l in f
                              if l.startswith("PRETTY_NAME"))
    except (OSError, StopIteration):
        pass
    try:
        info["git"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "proxy"],
                               capture_output=True, text=True).stdout.strip()
        info["proxy_dirty"] = bool(dirty)
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few minutes: 1 repeat, fewer sizes")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "bench", "results"))
    ap.add_argument("--only", default="topology,scale", help="topology,scale")
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--load-value", type=int, default=0,
                    help="value size of the redis-benchmark SET load (default: --value-size)")
    ap.add_argument("--load-clients", type=int, default=8, help="redis-benchmark -c")
    ap.add_argument("--load-pipeline", type=int, default=16, help="redis-benchmark -P")
    ap.add_argument("--load-requests", type=int, default=0,
                    help="SETs of the CPU-per-GB load (default: 1.5e6, 6e5 with --quick)")
    ap.add_argument("--cascade-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="passed to the relay as --set (default: its default configuration)")
    ap.add_argument("--replot", metavar="DIR",
                    help="only redo summary.md and the plots from DIR/results.json")
    args = ap.parse_args()
    if args.replot:
        with open(os.path.join(args.replot, "results.json")) as f:
            doc = json.load(f)
        for k, v in doc["args"].items():
            if k != "replot":  # the run's own arguments, but the directory given now
                setattr(args, k, v)
        s = summarize(doc["runs"], doc["scale_runs"], args)
        md = markdown(s, args)
        doc.update({"summary": s, "plots": plots(doc["runs"], doc["scale_runs"], s, args,
                                                  args.replot)})
        with open(os.path.join(args.replot, "results.json"), "w") as f:
            json.dump(doc, f, indent=1, default=str)
        with open(os.path.join(args.replot, "summary.md"), "w") as f:
            f.write(md)
        print(md)
        return
    if args.quick:
        args.repeats = args.repeats or 1
        args.key_counts = [100000, 1000000]
        args.load_requests = args.load_requests or 600000
        args.latency_count = 300
        args.fanouts = [1, 4, 64, 256]
        args.window_s = 2.0
        args.warmup_s = 0.7
    else:
        args.repeats = args.repeats or 3
        args.key_counts = [100000, 1000000]
        args.load_requests = args.load_requests or 1500000
        args.latency_count = 1000
        args.fanouts = [1, 4, 16, 64, 256]
        args.window_s = 4.0
        args.warmup_s = 1.0
    args.latency_load_rate = 20000
    only = set(args.only.split(","))
    os.makedirs(args.out, exist_ok=True)

    b = Bench(args)
    started = time.monotonic()
    runs, scale_runs = [], []
    try:
        b.prepare_binaries()
        info = machine_info()
        log(f"machine: {info}")
        for rep in range(args.repeats):
            rot = rep % len(KINDS)
            order = KINDS[rot:] + KINDS[:rot]
            if "topology" in only:
                for keys in args.key_counts:
                    for kind in order:
                        log(f"repeat {rep + 1}/{args.repeats}: {kind}, {keys:g} keys")
                        r = b.run_topology(kind, keys, latency=(keys == args.key_counts[0]))
                        r["repeat"] = rep
                        runs.append(r)
            if "scale" in only:
                for n in args.fanouts:
                    for kind in (("cascade", "forwarder") if rep % 2 == 0
                                 else ("forwarder", "cascade")):
                        log(f"repeat {rep + 1}/{args.repeats}: scale {kind}, N={n}")
                        r = b.run_scale(kind, n)
                        r["repeat"] = rep
                        scale_runs.append(r)
        elapsed = time.monotonic() - started
        doc = {"args": vars(args), "machine": info, "cascade_bin": b.cascade_src,
               "cascade_sha256": b.cascade_sha,
               "elapsed_s": elapsed, "problems": b.problems, "runs": runs,
               "scale_runs": scale_runs}
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(doc, f, indent=1, default=str)  # the raw runs first, whatever follows
        s = summarize(runs, scale_runs, args)
        md = markdown(s, args)
        try:
            files = plots(runs, scale_runs, s, args, args.out)
        except Exception as e:
            files = []
            b.problems.append(f"plots: {type(e).__name__}: {e}")
        doc.update({"summary": s, "plots": files})
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(doc, f, indent=1, default=str)
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(md)
        print(md)
        if b.problems:
            print("Problems seen:")
            for p in b.problems:
                print("  - " + p)
        log(f"done in {elapsed / 60:.1f} min; results in {args.out}")
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
