"""Process and wait helpers for the cascade integration tests.

Every server runs on a free loopback port, in its own directory under the test's tmp_path, in the
foreground as a child of pytest. Waits poll a condition with a deadline (never a bare sleep).
`Cluster` owns every process it starts and stops each one by pid at teardown, then scans every log
for sanitizer reports.

Environment:
  CASCADE_BIN  relay binary (default: <repo>/build/proxy/cascade)
  HOP          "relay" (default) or "redis": with "redis" every relay hop is replaced by a stock
               `redis-server --replicaof`, which validates the harness and the scenarios against
               Redis' own chained replication.
  REDIS_SERVER, REDIS_CLI, REDIS_CHECK_RDB  override the Redis tools (default: /usr/bin/...).
  CASCADE_SERVERS  the cache of other server builds made by scripts/servers (default:
               /var/tmp/cascade-servers): <tag>/server, <tag>/cli, <tag>/VERSION. A node of a given
               tag (e.g. "valkey-9") is started with `cluster.redis(..., tag="valkey-9")`.
"""

import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

import redis

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CASCADE_BIN = os.environ.get("CASCADE_BIN", os.path.join(REPO_ROOT, "build", "proxy", "cascade"))
HOP = os.environ.get("HOP", "relay").strip().lower()
REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
REDIS_CLI = os.environ.get("REDIS_CLI", "/usr/bin/redis-cli")
REDIS_CHECK_RDB = os.environ.get("REDIS_CHECK_RDB", "/usr/bin/redis-check-rdb")

SERVERS_DIR = os.environ.get("CASCADE_SERVERS", "/var/tmp/cascade-servers")

HOST = "127.0.0.1"
POLL_S = 0.03  # polling interval of every wait
STOP_TIMEOUT_S = 10.0  # SIGTERM grace before SIGKILL
START_TIMEOUT_S = 10.0
SYNC_TIMEOUT_S = 30.0
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "ThreadSanitizer")

# Port range below Linux' default ephemeral range (32768-60999), so outgoing connections made by
# the servers themselves never take a port we handed out but have not bound yet.
_PORT_LO, _PORT_HI = 20000, 32000
_ports_lock = threading.Lock()
_ports_used = set()


def hop_is_redis():
    return HOP == "redis"


def relay_binary_usable():
    """(ok, reason): whether CASCADE_BIN exists, is executable and answers --version."""
    if not os.path.isfile(CASCADE_BIN):
        return False, "relay binary %s not built" % CASCADE_BIN
    if not os.access(CASCADE_BIN, os.X_OK):
        return False, "relay binary %s not executable" % CASCADE_BIN
    try:
        subprocess.run([CASCADE_BIN, "--version"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return False, "relay binary %s does not run: %s" % (CASCADE_BIN, e)
    return True, ""


# --------------------------------------------------------------------------------------------
# server builds (scripts/servers)


class ServerBuild:
    """One server build of the cache: `tag` (e.g. "valkey-9"), `kind` ("redis"/"valkey"),
    `version` ("9.1.2"), `suite` (Debian suite), `server` and `cli` (wrappers to exec)."""

    def __init__(self, tag, kind, version, suite, server, cli):
        self.tag, self.kind, self.version, self.suite = tag, kind, version, suite
        self.server, self.cli = server, cli

    @property
    def version_tuple(self):
        return tuple(int(x) for x in self.version.split(".")[:3])

    def __repr__(self):
        return "%s (%s %s, %s)" % (self.tag, self.kind, self.version, self.suite)


_builds = {}


def server_build(tag):
    """The ServerBuild of `tag` from the cache, or None when scripts/servers did not fetch it
    (or it does not run). "redis-7.0" falls back to REDIS_SERVER when the cache lacks it."""
    if tag in _builds:
        return _builds[tag]
    d = os.path.join(SERVERS_DIR, tag)
    b = None
    try:
        with open(os.path.join(d, "VERSION")) as f:
            fields = f.read().split()
        server = os.path.join(d, "server")
        cli = os.path.join(d, "cli")
        if len(fields) >= 3 and os.access(server, os.X_OK):
            b = ServerBuild(tag, fields[0], fields[1], fields[2], server,
                            cli if os.access(cli, os.X_OK) else REDIS_CLI)
    except OSError:
        pass
    if b is None and tag == "redis-7.0" and os.access(REDIS_SERVER, os.X_OK):
        out = subprocess.run([REDIS_SERVER, "--version"], stdout=subprocess.PIPE, text=True,
                             check=False).stdout
        m = re.search(r"v=([0-9.]+)", out)
        if m and m.group(1).startswith("7.0"):
            b = ServerBuild(tag, "redis", m.group(1), "bookworm", REDIS_SERVER, REDIS_CLI)
    _builds[tag] = b
    return b


# --------------------------------------------------------------------------------------------
# waiting


class WaitTimeout(AssertionError):
    pass


def wait_for(cond, timeout=10.0, what="condition", interval=POLL_S, describe=None):
    """Poll cond() every `interval` s until it returns a truthy value (returned) or `timeout` s
    pass (raises WaitTimeout naming `what`, the last value or exception, and describe()'s text).
    Exceptions from cond() count as "not yet"; the last one is reported."""
    deadline = time.monotonic() + timeout
    max_polls = int(timeout / interval) + 2  # bound the loop in count as well as in time
    last, last_exc = None, None
    for _ in range(max_polls):
        try:
            last = cond()
            last_exc = None
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    msg = "timed out after %.1fs waiting for %s" % (timeout, what)
    if last_exc is not None:
        msg += "; last error: %r" % (last_exc,)
    else:
        msg += "; last value: %r" % (last,)
    if describe is not None:
        try:
            msg += "\n" + describe()
        except Exception as e:  # noqa: BLE001
            msg += "\n(describe failed: %r)" % (e,)
    raise WaitTimeout(msg)


# --------------------------------------------------------------------------------------------
# ports


def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A loopback port nobody listens on and that this process never handed out before."""
    with _ports_lock:
        for _ in range(2000):
            port = random.randrange(_PORT_LO, _PORT_HI)
            if port in _ports_used:
                continue
            if _port_free(port):
                _ports_used.add(port)
                return port
    raise RuntimeError("no free loopback port found")


# --------------------------------------------------------------------------------------------
# clients and INFO


def client(port, db=0, timeout=5.0, password=None):
    return redis.Redis(host=HOST, port=port, db=db, decode_responses=True, password=password,
                       socket_timeout=timeout, socket_connect_timeout=timeout)


def info(c, section=None):
    """INFO parsed by redis-py into a dict (slaveN lines become dicts)."""
    return c.info(section) if section else c.info()


def digest(c):
    """DEBUG DIGEST of the whole dataset as a hex string (40 zeros when empty)."""
    d = c.execute_command("DEBUG", "DIGEST")
    return d.decode() if isinstance(d, bytes) else str(d)


def count_in_file(path, needle):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read().count(needle)
    except FileNotFoundError:
        return 0


def tail(path, lines=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return "(no %s)\n" % path


# --------------------------------------------------------------------------------------------
# processes


class Proc:
    """A server process started by the harness: its port, dir, logs and pid."""

    kind = "proc"

    def __init__(self, name, port, dir_, argv, logs, stderr_path):
        self.name = name
        self.port = port
        self.dir = dir_
        self.argv = argv
        self.logs = logs  # every file to scan for sanitizer reports and to show on failure
        self.stderr_path = stderr_path
        self.popen = None
        self.password = None  # AUTH password for the harness' own clients
        self.needed_sigkill = False
        self.killed_on_purpose = False
        self._clients = []

    # -- lifecycle
    def start(self):
        self.needed_sigkill = False
        self.killed_on_purpose = False
        os.makedirs(self.dir, exist_ok=True)
        with open(self.stderr_path, "ab") as err:
            self.popen = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                          stdout=err, stderr=err, start_new_session=True)
        return self

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, timeout=START_TIMEOUT_S):
        def ready():
            if not self.alive():
                raise AssertionError("%s exited with %s" % (self.name, self.popen.returncode))
            return self.client(timeout=1.0).ping()
        wait_for(ready, timeout, "%s to answer PING on port %d" % (self.name, self.port),
                 describe=self.describe)
        return self

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM by pid, SIGKILL after `timeout`. Returns the exit status (None if never run)."""
        for c in self._clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self._clients = []
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
                os.kill(self.popen.pid, signal.SIGCONT)  # in case a test SIGSTOPped it
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.needed_sigkill = True
                try:
                    os.kill(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout)
        return self.popen.returncode

    def exit_problem(self):
        """Why this process' end looks wrong (None if it exited 0 on SIGTERM or was killed on
        purpose by kill9())."""
        if self.popen is None or self.killed_on_purpose:
            return None
        if self.needed_sigkill:
            return "%s ignored SIGTERM for %.0fs (SIGKILLed)" % (self.name, STOP_TIMEOUT_S)
        rc = self.popen.returncode
        if rc not in (0, None):
            return "%s exited with status %s%s" % (
                self.name, rc, " (signal %s)" % signal.Signals(-rc).name if rc < 0 else "")
        return None

    def restart(self, hard=False):
        """Stop (SIGTERM, or SIGKILL if `hard`) and start again with the same port, dir and
        arguments. Raises if a graceful stop did not exit 0."""
        if hard:
            self.kill9()
        else:
            self.stop()
            why = self.exit_problem()
            if why:
                raise AssertionError(why + "\n" + self.describe())
        self.start()
        return self.wait_ready()

    def pause(self):
        os.kill(self.popen.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.popen.pid, signal.SIGCONT)

    def kill9(self):
        self.killed_on_purpose = True
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(STOP_TIMEOUT_S)

    # -- access
    def client(self, db=0, timeout=5.0):
        c = client(self.port, db=db, timeout=timeout, password=self.password)
        self._clients.append(c)
        return c

    @property
    def r(self):
        if not hasattr(self, "_r"):
            self._r = self.client()
        return self._r

    def info(self, section=None):
        return info(self.r, section)

    def describe(self, lines=30):
        out = "--- %s (pid %s, port %d, %s) ---\n" % (
            self.name, self.pid, self.port,
            "running" if self.alive() else "exited %s" % (
                self.popen.returncode if self.popen else "never started"))
        for path in self.logs:
            out += "[%s]\n%s" % (path, tail(path, lines))
        return out

    def sanitizer_reports(self):
        found = []
        for path in self.logs:
            try:
                with open(path, "r", errors="replace") as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            for m in SANITIZER_MARKERS:
                if m in text:
                    i = text.index(m)
                    found.append("%s: %s" % (path, text[max(0, i - 200):i + 2000]))
                    break
        return found


class RedisProc(Proc):
    """A stock redis-server, master or replica."""

    kind = "redis"
    has_data = True
    is_relay = False

    def __init__(self, name, port, dir_, replicaof=None, extra=(), build=None):
        self.replicaof = replicaof
        self.build = build  # a ServerBuild, or None for REDIS_SERVER
        argv = [build.server if build else REDIS_SERVER, "--port", str(port), "--bind", HOST, "--dir", dir_,
                "--save", "", "--appendonly", "no", "--enable-debug-command", "local",
                "--repl-diskless-sync-delay", "0", "--repl-diskless-sync", "yes",
                "--logfile", os.path.join(dir_, "redis.log"), "--daemonize", "no",
                "--protected-mode", "no"]
        if replicaof is not None:
            argv += ["--replicaof", HOST, str(replicaof)]
        argv += list(extra)
        super().__init__(name, port, dir_, argv,
                         [os.path.join(dir_, "redis.log"), os.path.join(dir_, "stderr.log")],
                         os.path.join(dir_, "stderr.log"))

    def _log_count(self, pattern):
        try:
            with open(os.path.join(self.dir, "redis.log"), "r", errors="replace") as f:
                return len(re.findall(pattern, f.read()))
        except FileNotFoundError:
            return 0

    # Valkey 8+ says "primary" where Redis says "master" in these lines.
    def full_syncs_in_log(self):
        """How many times this replica accepted a full resync (from its log)."""
        return self._log_count(r"Full resync from (?:master|primary)")

    def partial_syncs_in_log(self):
        return self._log_count(r"(?:Master|Primary) accepted a Partial Resynchronization")

    def snapshot_loads_in_log(self):
        """How many snapshots this replica started to load (Redis and Valkey, disk or diskless
        load, whether the load then worked or not)."""
        return self._log_count(r"(?:MASTER|PRIMARY) <-> REPLICA sync: Loading DB in memory")


class RelayProc(Proc):
    """The cascade relay binary."""

    kind = "relay"
    has_data = False
    is_relay = True

    def __init__(self, name, port, dir_, upstream_port=None, extra=(), config=None):
        self.upstream_port = upstream_port
        argv = [CASCADE_BIN]
        if config:
            argv += ["-c", config]
        argv += ["--port", str(port), "--bind", HOST, "--dir", dir_]
        if upstream_port is not None:
            argv += ["--upstream", "%s:%d" % (HOST, upstream_port)]
        argv += list(extra)
        log = os.path.join(dir_, "cascade.log")
        super().__init__(name, port, dir_, argv, [log], log)


# --------------------------------------------------------------------------------------------
# cluster: everything one test starts


class Cluster:
    def __init__(self, tmp_path):
        self.tmp = str(tmp_path)
        self.procs = []
        self.helpers = []  # other subprocesses (redis-cli ...)
        self.writers = []
        self.proxies = []  # FaultProxy instances
        self._n = 0

    def _dir(self, name):
        self._n += 1
        d = os.path.join(self.tmp, "%02d-%s" % (self._n, name))
        os.makedirs(d, exist_ok=True)
        return d

    def redis(self, name="redis", replicaof=None, extra=(), wait=True, port=None, password=None,
              tag=None):
        """A stock server: Debian 12's redis-server, or the build `tag` of scripts/servers."""
        port = port or free_port()
        build = None
        if tag is not None:
            build = server_build(tag)
            if build is None:
                raise AssertionError("server build %s missing from %s (run scripts/servers)"
                                     % (tag, SERVERS_DIR))
        p = RedisProc(name, port, self._dir(name), replicaof=replicaof, extra=extra, build=build)
        p.password = password
        self.procs.append(p)
        p.start()
        if wait:
            p.wait_ready()
        return p

    def master(self, name="master", extra=(), port=None, password=None, tag=None):
        # A large backlog on the master: the relay's upstream partial resyncs must not depend on
        # Redis' 1 MB default while writers run.
        return self.redis(name, extra=["--repl-backlog-size", "64mb"] + list(extra), port=port,
                          password=password, tag=tag)

    def replica(self, upstream, name="replica", extra=(), wait_synced=True, password=None,
                tag=None):
        p = self.redis(name, replicaof=upstream.port, extra=extra, password=password, tag=tag)
        if wait_synced:
            wait_replica_synced(p)
        return p

    def relay(self, upstream, name="relay", extra=(), wait=True, config=None, password=None):
        port = free_port()
        up = upstream.port if upstream is not None else None
        p = RelayProc(name, port, self._dir(name), upstream_port=up, extra=extra, config=config)
        p.password = password
        self.procs.append(p)
        p.start()
        if wait:
            p.wait_ready()
        return p

    def hop(self, upstream, name="hop", wait_link=True, relay_extra=(), redis_extra=(),
            password=None):
        """A relay between `upstream` (anything with a .port) and its replicas: the cascade
        binary, or with HOP=redis a stock replica (with a big backlog, like the relay's
        default). `relay_extra`/`redis_extra` are extra arguments for either kind."""
        if hop_is_redis():
            p = self.redis(name, replicaof=upstream.port,
                           extra=["--repl-backlog-size", "64mb"] + list(redis_extra),
                           password=password)
        else:
            p = self.relay(upstream, name, extra=relay_extra, password=password)
        if wait_link:
            wait_link_up(p)
        return p

    def fault_proxy(self, target, name="proxy", **kw):
        """A FaultProxy forwarding to `target` (anything with a .port); point a relay's upstream
        or a replica's REPLICAOF at the proxy (it has a .port) to put faults on that link."""
        p = FaultProxy(target.port, name=name, **kw)
        self.proxies.append(p)
        return p

    def writer(self, target, **kw):
        w = Writer(target.port, password=target.password, **kw)
        self.writers.append(w)
        return w

    def popen(self, argv, stdout_path, **kw):
        f = open(stdout_path, "wb")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True, **kw)
        finally:
            f.close()
        self.helpers.append(p)
        return p

    def describe(self):
        out = "\n".join(p.describe() for p in self.procs)
        for p in self.proxies:
            out += "\n%r" % (p,)
        return out

    def teardown(self):
        """Stop writers and every process (by pid), then return sanitizer reports."""
        errors = []
        for w in self.writers:
            try:
                w.stop(raise_errors=False)
            except Exception as e:  # noqa: BLE001
                errors.append("writer: %r" % (e,))
        for p in self.helpers:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                    p.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(STOP_TIMEOUT_S)
                except ProcessLookupError:
                    pass
        for p in self.proxies:
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001
                errors.append("fault proxy %s: %r" % (p.name, e))
            if p.error is not None:
                errors.append("fault proxy %s failed: %r" % (p.name, p.error))
        # Stop in reverse start order: replicas before their upstreams, fewer reconnect logs.
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001
                errors.append("stopping %s: %r" % (p.name, e))
        reports = []
        for p in self.procs:
            reports.extend(p.sanitizer_reports())
            why = p.exit_problem()
            if why:
                errors.append(why + "\n" + p.describe(20))
        return reports, errors


# --------------------------------------------------------------------------------------------
# replication conditions


def wait_link_up(node, timeout=SYNC_TIMEOUT_S):
    """A replica or relay has its upstream link up (and, for Redis, finished loading)."""
    def up():
        i = node.info("replication")
        return (i.get("master_link_status") == "up"
                and int(i.get("master_sync_in_progress", 0)) == 0)
    wait_for(up, timeout, "%s master_link_status:up" % node.name,
             describe=lambda: node.describe() + "\nINFO replication: %r" % (
                 node.info("replication"),))
    return node


def wait_replica_synced(node, timeout=SYNC_TIMEOUT_S):
    """master_link_status:up and master_sync_in_progress:0."""
    return wait_link_up(node, timeout)


def wait_connected_slaves(node, n, timeout=SYNC_TIMEOUT_S):
    def ok():
        i = node.info("replication")
        online = [v for k, v in i.items()
                  if re.match(r"slave\d+$", k) and isinstance(v, dict)
                  and v.get("state") == "online"]
        return int(i.get("connected_slaves", -1)) == n and len(online) == n
    wait_for(ok, timeout, "%s to have %d online replicas" % (node.name, n),
             describe=lambda: "INFO replication: %r" % (node.info("replication"),))


def repl_offset(node):
    return int(node.info("replication")["master_repl_offset"])


def wait_digests_equal(master, replicas, timeout=SYNC_TIMEOUT_S, offsets=True, relays=()):
    """Wait until every replica's DEBUG DIGEST equals the master's, taken while the master's
    offset does not move, and (if `offsets`) every replica's and relay's master_repl_offset
    equals the master's. Call after writes stop. Returns the digest."""
    state = {}

    def check():
        off0 = repl_offset(master)
        d0 = digest(master.r)
        off1 = repl_offset(master)
        if off0 != off1:
            state["why"] = "master offset moving (%d -> %d)" % (off0, off1)
            return False
        per = {}
        for n in list(replicas) + list(relays):
            i = n.info("replication")
            per[n.name] = {"offset": int(i.get("master_repl_offset", -1)),
                           "link": i.get("master_link_status")}
            if n.has_data:
                per[n.name]["digest"] = digest(n.r)
        state["why"] = "master digest %s offset %d; %r" % (d0, off0, per)
        for n in replicas:
            if per[n.name]["digest"] != d0:
                return False
        if offsets:
            for name, v in per.items():
                if v["offset"] != off0:
                    return False
        # the master did not move while we read the replicas
        if repl_offset(master) != off0:
            state["why"] += " (master moved)"
            return False
        return d0

    def describe():
        return ("last state: %s\n" % state.get("why", "?")
                + "\n".join(n.describe(15) for n in [master] + list(relays) + list(replicas)))

    return wait_for(check, timeout, "digests%s to converge" % (" and offsets" if offsets else ""),
                    interval=0.05, describe=describe)


# --------------------------------------------------------------------------------------------
# data


def dataset(node, scan_count=1000, field_ttls=False):
    """The whole data set of `node` in a form that does not depend on the server's version
    (DEBUG DIGEST does: Redis 7.0, Valkey and Redis 8 hash the same data differently):
    {db: {key: (type, content, has_ttl)}} with content GET / HGETALL / LRANGE / sorted SMEMBERS /
    ZRANGE WITHSCORES / XRANGE per type. With `field_ttls` (servers with HPTTL: Redis 7.4+,
    Valkey 9+) a hash's content is (field, value, field has a TTL) triples. Read key by key (not
    atomic): compare after writes stop."""
    out = {}
    ks = node.info("keyspace")
    for name in ks:
        if not re.match(r"db\d+$", name):
            continue
        db = int(name[2:])
        c = client(node.port, db=db, password=node.password)
        try:
            keys = {}
            for k in c.scan_iter(count=scan_count):
                p = c.pipeline(transaction=False)
                p.type(k)
                p.pttl(k)
                t, ttl = p.execute()
                if t == "string":
                    v = c.get(k)
                elif t == "hash":
                    v = tuple(sorted(c.hgetall(k).items()))
                    if field_ttls and v:
                        ttls = c.execute_command("HPTTL", k, "FIELDS", len(v), *[f for f, _ in v])
                        v = tuple((f, x, int(ms) >= 0) for (f, x), ms in zip(v, ttls))
                elif t == "list":
                    v = tuple(c.lrange(k, 0, -1))
                elif t == "set":
                    v = tuple(sorted(c.smembers(k)))
                elif t == "zset":
                    v = tuple(c.zrange(k, 0, -1, withscores=True))
                elif t == "stream":
                    v = tuple((i, tuple(sorted(f.items()))) for i, f in c.xrange(k))
                elif t == "none":
                    continue  # expired or deleted between SCAN and TYPE
                else:
                    v = "<%s>" % t
                keys[k] = (t, v, ttl is not None and ttl >= 0)
            if keys:
                out[db] = keys
        finally:
            c.close()
    return out


def dataset_diff(a, b, limit=5):
    """A short text naming up to `limit` keys that differ between two dataset() results."""
    diffs = []
    for db in sorted(set(a) | set(b)):
        ka, kb = a.get(db, {}), b.get(db, {})
        for k in sorted(set(ka) | set(kb)):
            if ka.get(k) != kb.get(k):
                diffs.append("db%d %s: %r != %r" % (db, k, ka.get(k), kb.get(k)))
                if len(diffs) >= limit:
                    return "; ".join(diffs) + " ..."
    return "; ".join(diffs)


def wait_datasets_equal(master, replicas, timeout=SYNC_TIMEOUT_S, relays=(), field_ttls=False):
    """wait_digests_equal with dataset() instead of DEBUG DIGEST, for trees of mixed versions:
    waits until every replica's and relay's master_repl_offset equals the master's (which does
    not move meanwhile) and every replica's data set equals the master's. Call after writes stop.
    Returns the master's data set (never empty: a test of an empty data set proves nothing)."""
    state = {}

    def check():
        off0 = repl_offset(master)
        for n in list(replicas) + list(relays):
            i = n.info("replication")
            if int(i.get("master_repl_offset", -1)) != off0 or i.get("master_link_status") != "up":
                state["why"] = "%s at offset %s link %s, master at %d" % (
                    n.name, i.get("master_repl_offset"), i.get("master_link_status"), off0)
                return False
        d0 = dataset(master, field_ttls=field_ttls)
        if repl_offset(master) != off0:
            state["why"] = "master offset moving"
            return False
        for n in replicas:
            d = dataset(n, field_ttls=field_ttls)
            if d != d0:
                state["why"] = "%s differs from the master: %s" % (n.name, dataset_diff(d0, d))
                return False
        if repl_offset(master) != off0:
            state["why"] = "master moved"
            return False
        assert d0, "the master's data set is empty"
        return d0

    def describe():
        return ("last state: %s\n" % state.get("why", "?")
                + "\n".join(n.describe(15) for n in [master] + list(relays) + list(replicas)))

    return wait_for(check, timeout, "data sets and offsets to converge", interval=0.1,
                    describe=describe)




def preload(port, dbs=(0,), keys_per_db=1000, seed=1, ttl_long=True, password=None):
    """Pipelined mixed dataset: strings, hashes, lists, sets, zsets, streams; some keys with long
    TTLs (they will not expire during a test). Returns the number of keys written."""
    rnd = random.Random(seed)
    total = 0
    for db in dbs:
        c = client(port, db=db, password=password)
        p = c.pipeline(transaction=False)
        for i in range(keys_per_db):
            kind = i % 7
            k = "pre:%d:%d" % (db, i)
            if kind == 0:
                p.set("s:" + k, "v%d" % rnd.randrange(10 ** 9))
            elif kind == 1:
                p.hset("h:" + k, mapping={"f%d" % j: j * i for j in range(rnd.randrange(1, 8))})
            elif kind == 2:
                p.rpush("l:" + k, *["e%d" % j for j in range(rnd.randrange(1, 12))])
            elif kind == 3:
                p.sadd("S:" + k, *["m%d" % j for j in range(rnd.randrange(1, 12))])
            elif kind == 4:
                p.zadd("z:" + k, {"m%d" % j: rnd.random() * 100 for j in range(rnd.randrange(1, 10))})
            elif kind == 5:
                for j in range(rnd.randrange(1, 4)):
                    p.xadd("x:" + k, {"f": str(j), "g": "x" * rnd.randrange(1, 40)})
            else:
                p.set("t:" + k, "ttl%d" % i)
                if ttl_long:
                    p.expire("t:" + k, 3600)
            total += 1
            if i % 500 == 499:
                p.execute()
        # a few big values, across encodings
        p.set("big:%d" % db, "B" * 200_000)
        p.rpush("biglist:%d" % db, *["x" * 100 for _ in range(2000)])
        p.hset("bighash:%d" % db, mapping={"f%d" % j: "v" * 50 for j in range(1000)})
        total += 3
        p.execute()
        c.close()
    return total


class Writer(threading.Thread):
    """Background writer: mixed types across `dbs` (round-robin per op, so the replication stream
    carries a SELECT at nearly every op), keys with EXPIRE/PEXPIRE TTLs (some short enough to
    expire during the test, so the master propagates DELs), MULTI/EXEC now and then. Rate-limited
    (`rate` ops/s) so the stream stays far below the backlogs. stop() joins and re-raises."""

    def __init__(self, port, dbs=(0,), seed=None, rate=2000, keyspace=300, prefix="w",
                 big_every=400, password=None, short_ttl=True):
        super().__init__(daemon=True, name="writer-%d" % port)
        self.port = port
        self.dbs = list(dbs)
        self.rnd = random.Random(seed if seed is not None else port)
        self.rate = rate
        self.keyspace = keyspace
        self.prefix = prefix
        self.big_every = big_every
        self.password = password
        self.short_ttl = short_ttl  # False: every TTL is long, the dataset is fixed once stopped
        self.count = 0
        self.error = None
        self._stop_ev = threading.Event()
        self._clients = {}

    def _c(self, db):
        if db not in self._clients:
            self._clients[db] = client(self.port, db=db, password=self.password)
        return self._clients[db]

    def _op(self, c, n):
        rnd = self.rnd
        k = "%s:%d" % (self.prefix, rnd.randrange(self.keyspace))
        short = 1 if self.short_ttl else 1_000_000  # multiplies the short (ms) TTLs
        op = rnd.randrange(20)
        if n % self.big_every == 0:
            c.set("s:" + k, os.urandom(4096).hex())
        elif op == 0:
            c.set("s:" + k, "v%d" % n)
        elif op == 1:
            c.incr("c:" + k)
        elif op == 2:
            c.append("s:" + k, "a")
        elif op == 3:
            c.hset("h:" + k, "f%d" % rnd.randrange(20), n)
        elif op == 4:
            c.hincrby("h:" + k, "cnt", 1)
        elif op == 5:
            c.rpush("l:" + k, n, n + 1)
            c.ltrim("l:" + k, -50, -1)
        elif op == 6:
            c.lpop("l:" + k)
        elif op == 7:
            c.sadd("S:" + k, "m%d" % rnd.randrange(100))
        elif op == 8:
            c.srem("S:" + k, "m%d" % rnd.randrange(100))
        elif op == 9:
            c.zadd("z:" + k, {"m%d" % rnd.randrange(50): rnd.random()})
        elif op == 10:
            c.zincrby("z:" + k, 1.5, "m%d" % rnd.randrange(50))
        elif op == 11:
            c.xadd("x:" + k, {"n": n, "v": "y" * rnd.randrange(1, 30)}, maxlen=50,
                   approximate=False)
        elif op == 12:
            c.set("t:" + k, n, ex=3600)  # long TTL
        elif op == 13:
            c.set("T:" + k, n, px=rnd.randrange(100, 1500) * short)  # expires during the test
        elif op == 14:
            c.expire("h:" + k, 3600)
        elif op == 15:
            c.pexpire("l:" + k, rnd.randrange(200, 2000) * short)
        elif op == 16:
            c.delete("S:" + k)
        elif op == 17:
            p = c.pipeline(transaction=True)
            p.incr("c:" + k)
            p.hset("h:" + k, "tx", n)
            p.rpush("l:" + k, "tx%d" % n)
            p.execute()
        elif op == 18:
            c.hset("H:" + k, mapping={"a": n, "b": "x" * rnd.randrange(1, 100)})
            c.pexpire("H:" + k, rnd.randrange(300, 3000) * short)
        else:
            c.zremrangebyrank("z:" + k, 0, -30)

    def run(self):
        try:
            start = time.monotonic()
            while not self._stop_ev.is_set():
                db = self.dbs[self.count % len(self.dbs)]
                self._op(self._c(db), self.count)
                self.count += 1
                if self.rate:
                    ahead = self.count / self.rate - (time.monotonic() - start)
                    if ahead > 0:
                        self._stop_ev.wait(ahead)  # rate limit, wakes on stop
        except Exception as e:  # noqa: BLE001 - re-raised by stop()
            self.error = e
        finally:
            for c in self._clients.values():
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass

    def wait_count(self, n, timeout=30.0):
        """Wait until at least n more ops than now have been written."""
        target = self.count + n
        wait_for(lambda: self.count >= target or self.error is not None, timeout,
                 "writer to do %d writes" % n)
        if self.error is not None:
            raise AssertionError("writer failed: %r" % (self.error,))

    def stop(self, raise_errors=True):
        self._stop_ev.set()
        if self.is_alive():
            self.join(30)
            if self.is_alive():
                raise AssertionError("writer thread did not stop")
        if raise_errors and self.error is not None:
            raise AssertionError("writer failed after %d writes: %r" % (self.count, self.error))
        return self.count

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop(raise_errors=exc[0] is None)


# --------------------------------------------------------------------------------------------
# raw sockets


def raw_exchange(port, payload, timeout=3.0, want_line=True, lines=1):
    """Send raw bytes; read until `lines` reply lines (if want_line), EOF or `timeout`.
    Returns (data, closed)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    data = b""
    closed = False
    try:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return data, True
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
            if want_line and data.lstrip(b"\n").count(b"\r\n") >= lines:
                break
    finally:
        s.close()
    return data, closed


class RawReplica:
    """A raw PSYNC session: the handshake a stock replica does (the REPLCONF replies are read
    before PSYNC is sent: Redis refuses "SYNC and PSYNC ... with pending output"), then the
    stream's bytes. rcvbuf: a receive buffer size set before connecting (a replica that reads
    nothing then holds little in socket buffers)."""

    def __init__(self, port, replid, offset, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(5)
        self.s.connect((HOST, port))
        self.buf = b""
        self.s.sendall(b"REPLCONF listening-port 1\r\nREPLCONF capa eof capa psync2\r\n")
        self._read_until(lambda: self.buf.count(b"\r\n") >= 2, "REPLCONF replies")
        assert self.buf == b"+OK\r\n+OK\r\n", self.buf
        self.buf = b""
        self.s.sendall(b"PSYNC %s %d\r\n" % (replid.encode(), offset))
        self._read_until(lambda: b"\r\n" in self.buf.lstrip(b"\n"), "the PSYNC reply")
        self.buf = self.buf.lstrip(b"\n")
        self.reply, _, self.buf = self.buf.partition(b"\r\n")

    def _read_until(self, cond, what, timeout=10):
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            if cond():
                return
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting for %s; got %r" % (what, self.buf[:200])
            self.s.settimeout(left)
            chunk = self.s.recv(65536)
            assert chunk, "connection closed waiting for %s; got %r" % (what, self.buf[:200])
            self.buf += chunk

    def stream(self, n):
        """The first n stream bytes after the reply (waits for them)."""
        self._read_until(lambda: len(self.buf) >= n, "%d stream bytes" % n)
        return self.buf[:n]

    def close(self):
        self.s.close()


# --------------------------------------------------------------------------------------------
# TCP fault proxy


class _Link:
    """One proxied connection: `a` accepted from the client, `b` dialled to the target."""

    __slots__ = ("a", "b", "a2b", "b2a", "tok_a2b", "tok_b2a", "eof", "born")

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.a2b = bytearray()  # read from a, not yet written to b
        self.b2a = bytearray()
        self.tok_a2b = self.tok_b2a = 0.0  # throttle token buckets (bytes)
        self.eof = False  # one side closed: flush what is buffered, then close both
        self.born = time.monotonic()


class FaultProxy:
    """A TCP proxy on a free loopback port forwarding every connection to `target_port`, with
    faults a test can switch on and off (each control returns once the proxy thread applied it):

      cut()             close every current connection (new ones are still accepted)
      stall(True|False) forward nothing in either direction, keep every socket open (new
                        connections are accepted and dialled, but stalled too)
      throttle(bps)     forward at most `bps` bytes per second per direction per connection
                        (None: no limit)
      refuse(True|False) accept new connections and close them at once

    One thread, one epoll selector, no blocking I/O but the connect to the (loopback) target.
    Bounded: at most `max_links` connections, `max_buffer` bytes buffered per direction (the
    proxy stops reading a side whose peer does not drain), `bufsize` (if set) as SO_RCVBUF and
    SO_SNDBUF of both sockets of every link, so a stalled link hides little data in the kernel.
    stop() closes everything and joins the thread (Cluster.teardown calls it)."""

    def __init__(self, target_port, name="proxy", port=None, bufsize=None, max_links=64,
                 max_buffer=256 * 1024):
        import selectors  # noqa: PLC0415 - only the proxy needs it
        self.name = name
        self.target_port = target_port
        self.bufsize = bufsize
        self.max_links = max_links
        self.max_buffer = max_buffer
        self.stalled = False
        self.refusing = False
        self.rate = None
        self.stats = {"accepted": 0, "refused": 0, "cut": 0, "dial_failed": 0, "closed": 0,
                      "bytes_a2b": 0, "bytes_b2a": 0}
        self._links = []
        self._cmds = []
        self._cmd_lock = threading.Lock()
        self._stopping = False
        self._sel = selectors.DefaultSelector()
        self._selectors = selectors
        self._registered = {}  # socket -> events currently registered
        self.port = port or free_port()
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if bufsize:
            self._set_bufs(self._lsock)  # inherited by accepted sockets
        self._lsock.bind((HOST, self.port))
        self._lsock.listen(64)
        self._lsock.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._lsock, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.error = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="faultproxy-%s-%d" % (name, self.port))
        self._thread.start()

    # -- controls (run in the proxy thread; each returns once applied)
    def _call(self, fn, timeout=5.0):
        done = threading.Event()
        box = {}

        def run():
            try:
                box["v"] = fn()
            finally:
                done.set()
        with self._cmd_lock:
            if self._stopping or not self._thread.is_alive():
                raise AssertionError("fault proxy %s is stopped (%r)" % (self.name, self.error))
            self._cmds.append(run)
        self._wake()
        if not done.wait(timeout):
            raise AssertionError("fault proxy %s did not apply a control within %.0fs (%r)"
                                 % (self.name, timeout, self.error))
        return box.get("v")

    def cut(self):
        """Close every current connection; returns how many were cut."""
        def do():
            n = len(self._links)
            for link in list(self._links):
                self._close_link(link)
            self.stats["cut"] += n
            return n
        return self._call(do)

    def stall(self, on=True):
        def do():
            self.stalled = bool(on)
        self._call(do)

    def throttle(self, bytes_per_sec):
        def do():
            self.rate = float(bytes_per_sec) if bytes_per_sec else None
            for link in self._links:
                link.tok_a2b = link.tok_b2a = 0.0
        self._call(do)

    def refuse(self, on=True):
        def do():
            self.refusing = bool(on)
        self._call(do)

    def heal(self):
        """Every fault off (stall, throttle, refuse)."""
        def do():
            self.stalled = self.refusing = False
            self.rate = None
        self._call(do)

    def links(self):
        return self._call(lambda: len(self._links))

    def wait_links(self, n, timeout=SYNC_TIMEOUT_S):
        return wait_for(lambda: self.links() == n, timeout,
                        "%s to carry %d connection(s)" % (self.name, n),
                        describe=lambda: "proxy %s: %r" % (self.name, self.stats))

    def stop(self):
        with self._cmd_lock:
            self._stopping = True
        self._wake()
        self._thread.join(10)
        if self._thread.is_alive():
            raise AssertionError("fault proxy %s thread did not stop" % self.name)

    def __repr__(self):
        return "<FaultProxy %s :%d -> :%d links=%d stalled=%s refusing=%s rate=%s %r>" % (
            self.name, self.port, self.target_port, len(self._links), self.stalled,
            self.refusing, self.rate, self.stats)

    # -- the thread
    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full) or closing

    def _set_bufs(self, s):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.bufsize)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.bufsize)

    def _want(self, s, events, data):
        have = self._registered.get(s)
        if events == (have or 0):
            return
        if not events:
            self._sel.unregister(s)
            del self._registered[s]
        elif have is None:
            self._sel.register(s, events, data)
            self._registered[s] = events
        else:
            self._sel.modify(s, events, data)
            self._registered[s] = events

    def _close_link(self, link):
        for s in (link.a, link.b):
            if s in self._registered:
                self._sel.unregister(s)
                del self._registered[s]
            try:
                s.close()
            except OSError:
                pass
        if link in self._links:
            self._links.remove(link)
            self.stats["closed"] += 1

    def _accept(self):
        for _ in range(64):  # bounded per wakeup
            try:
                a, _addr = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.refusing or len(self._links) >= self.max_links:
                self.stats["refused"] += 1
                a.close()
                continue
            b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if self.bufsize:
                self._set_bufs(b)
            b.settimeout(2.0)
            try:
                b.connect((HOST, self.target_port))
            except OSError:
                self.stats["dial_failed"] += 1
                a.close()
                b.close()
                continue
            for s in (a, b):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats["accepted"] += 1
            self._links.append(_Link(a, b))

    def _pump(self, link, src, dst, buf, direction, readable, writable):
        """Move bytes src -> buf -> dst. Returns False when the link must close."""
        if writable and buf:
            try:
                n = dst.send(buf)
                del buf[:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
        if readable and not link.eof:
            room = self.max_buffer - len(buf)
            tok_name = "tok_" + direction
            if self.rate is not None:
                room = min(room, int(getattr(link, tok_name)))
            if room > 0:
                try:
                    data = src.recv(min(room, 65536))
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    return False
                if data == b"":
                    link.eof = True
                elif data:
                    buf += data
                    self.stats["bytes_" + direction] += len(data)
                    if self.rate is not None:
                        setattr(link, tok_name, getattr(link, tok_name) - len(data))
                    # forward at once if possible
                    try:
                        n = dst.send(buf)
                        del buf[:n]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        return False
        return True

    def _run(self):
        sel = self._selectors
        last = time.monotonic()
        try:
            while True:
                with self._cmd_lock:
                    cmds, self._cmds = self._cmds, []
                    stopping = self._stopping
                for fn in cmds:
                    fn()
                if stopping:
                    break
                now = time.monotonic()
                dt, last = now - last, now
                if self.rate is not None:
                    cap = max(self.rate * 0.1, 1024.0)
                    for link in self._links:
                        link.tok_a2b = min(cap, link.tok_a2b + self.rate * dt)
                        link.tok_b2a = min(cap, link.tok_b2a + self.rate * dt)
                for link in list(self._links):
                    if link.eof and not link.a2b and not link.b2a:
                        self._close_link(link)
                        continue
                    if self.stalled:
                        self._want(link.a, 0, link)
                        self._want(link.b, 0, link)
                        continue
                    ra = len(link.a2b) < self.max_buffer and not link.eof and (
                        self.rate is None or link.tok_a2b >= 1)
                    rb = len(link.b2a) < self.max_buffer and not link.eof and (
                        self.rate is None or link.tok_b2a >= 1)
                    ev_a = (sel.EVENT_READ if ra else 0) | (sel.EVENT_WRITE if link.b2a else 0)
                    ev_b = (sel.EVENT_READ if rb else 0) | (sel.EVENT_WRITE if link.a2b else 0)
                    self._want(link.a, ev_a, link)
                    self._want(link.b, ev_b, link)
                timeout = 0.01 if self.rate is not None else 0.2
                ready = {}
                for key, mask in self._sel.select(timeout):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(4096)
                        except (BlockingIOError, OSError):
                            pass
                    else:
                        ready.setdefault(id(key.data), [key.data, 0, 0])
                        entry = ready[id(key.data)]
                        if key.fileobj is key.data.a:
                            entry[1] |= mask
                        else:
                            entry[2] |= mask
                if self.stalled:
                    continue
                for link, ma, mb in ready.values():
                    if link not in self._links:
                        continue
                    ok = self._pump(link, link.a, link.b, link.a2b, "a2b",
                                    bool(ma & sel.EVENT_READ), bool(mb & sel.EVENT_WRITE))
                    ok = ok and self._pump(link, link.b, link.a, link.b2a, "b2a",
                                           bool(mb & sel.EVENT_READ), bool(ma & sel.EVENT_WRITE))
                    if not ok:
                        self._close_link(link)
        except Exception as e:  # noqa: BLE001 - reported by controls and teardown
            self.error = e
            raise
        finally:
            for link in list(self._links):
                self._close_link(link)
            for s in (self._lsock, self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass
            try:
                self._sel.close()
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# a scripted fake master


class FakeMaster(threading.Thread):
    """A master on a free loopback port that answers the relay's handshake from a script:
    info (INFO's text, or None for an ACL-style -NOPERM), whether REPLCONF version is known,
    and what follows PSYNC (psync_reply: by default, on_psync "rdb": +FULLRESYNC <replid> 0
    and payload as a sized RDB, then silence; "abort": +FULLRESYNC, then close). Records every
    command; start() it, stop() it."""

    def __init__(self, info=None, version_ok=True, payload=b"", on_psync="rdb", delay=0.0,
                 replid="a" * 40):
        super().__init__(daemon=True)
        self.delay = delay  # seconds between +FULLRESYNC and the payload
        self.info, self.version_ok = info, version_ok
        self.payload = payload
        self.replid = replid
        self.on_psync = on_psync
        self.commands = []  # every command received, as tuples of str
        self.psyncs = 0
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.conns = []
        self.lock = threading.Lock()

    def run(self):
        for _ in range(1000000):
            if self.stopping:
                return
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    @staticmethod
    def parse(buf):
        """One RESP array command from buf: (args, rest) or (None, buf)."""
        if not buf.startswith(b"*"):
            line, sep, rest = buf.partition(b"\r\n")
            return (line.decode().split(), rest) if sep else (None, buf)
        head, sep, rest = buf.partition(b"\r\n")
        if not sep:
            return None, buf
        args = []
        for _ in range(int(head[1:])):
            lh, sep, rest = rest.partition(b"\r\n")
            if not sep:
                return None, buf
            n = int(lh[1:])
            if len(rest) < n + 2:
                return None, buf
            args.append(rest[:n].decode())
            rest = rest[n + 2:]
        return args, rest

    def serve(self, c):
        buf = b""
        c.settimeout(0.2)
        for _ in range(1000000):
            if self.stopping:
                break
            try:
                chunk = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            for _ in range(1000):
                args, buf = self.parse(buf)
                if args is None:
                    break
                with self.lock:
                    self.commands.append(tuple(args))
                if not self.answer(c, args):
                    c.close()
                    return
        c.close()

    def answer(self, c, args):
        cmd = args[0].upper()
        if cmd == "PING":
            c.sendall(b"+PONG\r\n")
        elif cmd == "INFO":
            if self.info is None:
                c.sendall(b"-NOPERM this user has no permissions to run the 'info' command\r\n")
            else:
                data = self.info.encode()
                c.sendall(b"$%d\r\n%s\r\n" % (len(data), data))
        elif cmd == "REPLCONF":
            opt = args[1].lower()
            if opt in ("ack", "getack"):
                return True
            if opt == "version" and not self.version_ok:
                c.sendall(b"-ERR Unrecognized REPLCONF option: version\r\n")
            else:
                c.sendall(b"+OK\r\n")
        elif cmd == "PSYNC":
            with self.lock:
                self.psyncs += 1
                n = self.psyncs - 1
            return self.psync_reply(c, args, n)
        else:
            c.sendall(b"-ERR unknown command\r\n")
        return True

    def psync_reply(self, c, args, n):
        """Answer the n-th PSYNC (from 0) on c; False closes the connection."""
        c.sendall(b"+FULLRESYNC %s 0\r\n" % self.replid.encode())
        if self.on_psync == "abort":
            c.sendall(b"\n\n")
            return False
        if self.delay:
            time.sleep(self.delay)  # a master busy forking (the relay waits on the link)
        c.sendall(b"$%d\r\n" % len(self.payload) + self.payload)
        return True

    def sent(self, name):
        with self.lock:
            return [a for a in self.commands if a[0].upper() == name.upper()]

    def stop(self):
        self.stopping = True
        self.lsock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.join(5)
