"""The shipped configuration examples and service files.

- every config/*.ini passes `cascade --check-config`; a broken file fails with FILE:LINE:;
- the examples work: each relay example (with its addresses, paths and ports overridden by
  flags for a test on loopback) replicates from a master with the passwords the file names and
  serves a stock replica; the two-level tree and the Sentinel example likewise;
- `meson install --destdir` puts the binary, the systemd unit, the logrotate file and the
  example configuration in place, and the unit passes `systemd-analyze verify`.
"""

import configparser
import glob
import json
import os
import shutil
import stat
import subprocess
import urllib.request

import pytest

import harness as h
from harness import wait_digests_equal, wait_for, wait_link_up

CONFIG_DIR = os.path.join(h.REPO_ROOT, "config")
EXAMPLES = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.ini")))
BUILD_DIR = os.path.join(h.REPO_ROOT, "build")
UNIT = os.path.join(h.REPO_ROOT, "scripts", "cascade.service")
LOGROTATE = os.path.join(h.REPO_ROOT, "scripts", "cascade.logrotate")
RUN_TIMEOUT_S = 120


def require_bin():
    ok, why = h.relay_binary_usable()
    if not ok:
        pytest.skip(why)


def check_config(path):
    return subprocess.run([h.CASCADE_BIN, "--check-config", "-c", path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=30)


def read_ini(path):
    cp = configparser.ConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=None,
                                   interpolation=None, strict=True)
    cp.optionxform = str
    with open(path) as f:
        cp.read_file(f)
    return cp


def ini_get(cp, section, key, default=""):
    return cp.get(section, key, fallback=default).strip()


def example(name):
    return os.path.join(CONFIG_DIR, name)


# --------------------------------------------------------------------------------------------
# --check-config


def test_examples_present():
    names = {os.path.basename(p) for p in EXAMPLES}
    assert {"cascade.ini", "dc-relay.ini", "tree-tier1.ini", "tree-tier2.ini",
            "sentinel-relay.ini"} <= names, names


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_passes_check_config(path):
    require_bin()
    r = check_config(path)
    assert r.returncode == 0, "%s: exit %d\n%s%s" % (path, r.returncode, r.stdout, r.stderr)
    assert r.stderr == ""
    # Commented: every example explains itself.
    with open(path) as f:
        assert sum(1 for line in f if line.lstrip().startswith(";")) >= 5


@pytest.mark.parametrize("body, line, words", [
    ("[relay]\nport = 7000\n[upstream]\nhots = x\n", 4, "unknown key 'hots'"),
    ("; a comment\n[backlog]\nsize = 64mb\ndisk = maybe\n", 4, "backlog.disk"),
    ("[relay]\nport = 7000\nport = 7001\n", 3, "duplicate key 'port'"),
    ("[relay]\nport 7000\n", 2, "syntax error"),
])
def test_bad_file_fails_with_file_and_line(tmp_path, body, line, words):
    require_bin()
    path = str(tmp_path / "bad.ini")
    with open(path, "w") as f:
        f.write(body)
    r = check_config(path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "%s:%d:" % (path, line) in r.stderr, r.stderr
    assert words in r.stderr, r.stderr


# --------------------------------------------------------------------------------------------
# the examples work


def example_relay(cluster, name, path, upstream, **kw):
    """Start the relay of example `path`, overriding only what ties it to a real deployment:
    its address (loopback, a free port), its dir, the log file, the metrics port, and the
    upstream (`upstream`: a node, or None to keep the file's upstream keys)."""
    cp = read_ini(path)
    metrics_port = h.free_port()
    extra = ["--set", "relay.log-file=", "--set", "metrics.port=%d" % metrics_port,
             "--set", "metrics.bind=" + h.HOST] + list(kw.pop("extra", ()))
    relay = cluster.relay(upstream, name, config=path, extra=extra,
                          password=ini_get(cp, "relay", "requirepass") or None, **kw)
    relay.metrics_port = metrics_port
    return relay, cp


def master_for(cluster, cp):
    pw = ini_get(cp, "upstream", "password")
    return cluster.master(extra=["--requirepass", pw] if pw else [], password=pw or None)


def replica_behind(cluster, relay, cp, name="replica"):
    pw = ini_get(cp, "relay", "requirepass")
    return cluster.replica(relay, name, extra=["--masterauth", pw] if pw else [])


def metrics_text(port):
    with urllib.request.urlopen("http://%s:%d/metrics" % (h.HOST, port), timeout=5) as resp:
        return resp.read().decode()


@pytest.mark.relay_only
@pytest.mark.parametrize("name", ["cascade.ini", "dc-relay.ini", "tree-tier1.ini"])
def test_relay_example_works(cluster, name):
    path = example(name)
    cp = read_ini(path)
    m = master_for(cluster, cp)
    h.preload(m.port, keys_per_db=300, password=m.password)
    relay, _ = example_relay(cluster, "relay", path, m)
    wait_link_up(relay)
    # The file's values are in force (those not overridden by the flags above).
    got = dict(zip(*[iter(relay.r.execute_command("CONFIG", "GET", "backlog.*"))] * 2))
    ref = read_ini(example("cascade.ini"))
    assert got["backlog.disk"] == ini_get(cp, "backlog", "disk", ini_get(ref, "backlog", "disk"))
    r = replica_behind(cluster, relay, cp)
    with cluster.writer(m, dbs=(0, 2)) as w:
        w.wait_count(200)
    wait_digests_equal(m, [r], relays=[relay])
    assert "cascade_upstream_link_up 1" in metrics_text(relay.metrics_port)


@pytest.mark.relay_only
def test_tree_examples_work(cluster):
    """master -> tier-1 relay (tree-tier1.ini) -> tier-2 relay (tree-tier2.ini) -> replica,
    with the passwords as the two files set them."""
    t1_path, t2_path = example("tree-tier1.ini"), example("tree-tier2.ini")
    cp1, cp2 = read_ini(t1_path), read_ini(t2_path)
    # The tier-2 file authenticates to tier 1 with tier 1's password, and points at port 6380.
    assert ini_get(cp2, "upstream", "password") == ini_get(cp1, "relay", "requirepass")
    assert ini_get(cp2, "upstream", "port") == ini_get(cp1, "relay", "port")
    m = master_for(cluster, cp1)
    h.preload(m.port, keys_per_db=300, password=m.password)
    t1, _ = example_relay(cluster, "tier1", t1_path, m)
    wait_link_up(t1)
    t2, _ = example_relay(cluster, "tier2", t2_path, t1)
    wait_link_up(t2)
    r = replica_behind(cluster, t2, cp2)
    with cluster.writer(m, dbs=(0, 5)) as w:
        w.wait_count(200)
    wait_digests_equal(m, [r], relays=[t1, t2])


@pytest.mark.relay_only
@pytest.mark.skipif(shutil.which("redis-sentinel") is None, reason="redis-sentinel missing")
def test_sentinel_example_works(cluster):
    """sentinel-relay.ini against a real password-protected sentinel monitoring a
    password-protected master: the relay finds the master through it."""
    path = example("sentinel-relay.ini")
    cp = read_ini(path)
    m = master_for(cluster, cp)
    h.preload(m.port, keys_per_db=200, password=m.password)
    port = h.free_port()
    d = cluster._dir("sentinel")
    conf = os.path.join(d, "sentinel.conf")
    master_name = ini_get(cp, "upstream", "master-name")
    with open(conf, "w") as f:
        f.write("port %d\nbind %s\ndaemonize no\ndir %s\nlogfile %s\n" % (
            port, h.HOST, d, os.path.join(d, "sentinel.log")))
        f.write("requirepass %s\n" % ini_get(cp, "upstream", "sentinel-password"))
        f.write("sentinel monitor %s %s %d 1\n" % (master_name, h.HOST, m.port))
        f.write("sentinel auth-pass %s %s\n" % (master_name, m.password))
    cluster.popen(["redis-sentinel", conf], os.path.join(d, "stdout.log"))
    sc = h.client(port, password=ini_get(cp, "upstream", "sentinel-password"))
    wait_for(lambda: sc.ping(), 10, "sentinel to answer PING")
    relay, _ = example_relay(cluster, "relay", path, None, extra=[
        "--set", "upstream.sentinels=%s:%d" % (h.HOST, port)])
    wait_link_up(relay)
    assert int(relay.info("replication")["master_port"]) == m.port
    r = replica_behind(cluster, relay, cp)
    m.r.set("after:sentinel", "1")
    wait_digests_equal(m, [r], relays=[relay])
    sc.close()


# --------------------------------------------------------------------------------------------
# service files and meson install


def unit_lines(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_file_contents():
    u = unit_lines(UNIT)
    want = {
        "Type": "simple",
        # meson fills in the install paths (test_meson_install_puts_files_in_place)
        "ExecStart": "@BINDIR@/cascade -c @SYSCONFDIR@/cascade/cascade.ini",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "User": "cascade",
        "StateDirectory": "cascade",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "LimitNOFILE": "65536",
    }
    for k, v in want.items():
        assert u.get(k) == [v], (k, u.get(k))
    assert "TimeoutStopSec" in u
    assert "/var/lib/cascade" in u["ReadWritePaths"][0].split()
    with open(LOGROTATE) as f:
        text = f.read()
    assert "copytruncate" not in text.replace("No copytruncate", "")
    assert "postrotate" in text and "reload cascade" in text


def meson_options(build_dir):
    r = subprocess.run(["meson", "introspect", build_dir, "--buildoptions"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {o["name"]: o["value"] for o in json.loads(r.stdout)}


def under(prefix, d):
    return d if os.path.isabs(d) else os.path.join(prefix, d)


@pytest.fixture
def installed(tmp_path):
    """`meson install --destdir` from the existing build dir (regenerated, not rebuilt: the
    install plan must know the service files; the binary is installed as built)."""
    if shutil.which("meson") is None or shutil.which("ninja") is None:
        pytest.skip("meson/ninja not installed")
    if not os.path.isfile(os.path.join(BUILD_DIR, "build.ninja")):
        pytest.skip("no build dir at %s" % BUILD_DIR)
    if not os.path.isfile(os.path.join(BUILD_DIR, "proxy", "cascade")):
        pytest.skip("build/proxy/cascade not built")
    regen = subprocess.run(["ninja", "-C", BUILD_DIR, "build.ninja"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_S)
    assert regen.returncode == 0, regen.stdout
    dest = str(tmp_path / "dest")
    r = subprocess.run(["meson", "install", "-C", BUILD_DIR, "--no-rebuild", "--destdir", dest],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=RUN_TIMEOUT_S)
    assert r.returncode == 0, r.stdout
    o = meson_options(BUILD_DIR)
    prefix = o["prefix"]
    sysconf = under(prefix, o["sysconfdir"])
    paths = {
        "bin": under(prefix, o["bindir"]) + "/cascade",
        "unit": (o.get("systemdunitdir") or prefix + "/lib/systemd/system") + "/cascade.service",
        "man8": under(prefix, o["mandir"]) + "/man8/cascade.8",
        "man5": under(prefix, o["mandir"]) + "/man5/cascade.ini.5",
        "logrotate": sysconf + "/logrotate.d/cascade",
        "config": sysconf + "/cascade/cascade.ini",
    }
    return {k: dest + v for k, v in paths.items()}, r.stdout, paths


def test_meson_install_puts_files_in_place(installed):
    files, log, real = installed
    for what, path in files.items():
        assert os.path.isfile(path), "%s not installed at %s\n%s" % (what, path, log)
    assert os.stat(files["bin"]).st_mode & stat.S_IXUSR
    assert subprocess.run([files["bin"], "--version"], stdout=subprocess.PIPE,
                          timeout=30).stdout.startswith(b"cascade ")
    for src, key in ((LOGROTATE, "logrotate"), (os.path.join(CONFIG_DIR, "cascade.ini"), "config")):
        with open(src, "rb") as a, open(files[key], "rb") as b:
            assert a.read() == b.read(), key
    # The installed unit runs the installed binary with the installed config (with meson's
    # default prefix, /usr/local/bin and /usr/local/etc), whatever the prefix.
    u = unit_lines(files["unit"])
    want = "%s -c %s" % (real["bin"], real["config"])
    assert u["ExecStart"] == [want], (u["ExecStart"], want)
    assert u["ExecStartPre"] == ["%s --check-config -c %s" % (real["bin"], real["config"])]
    base = unit_lines(UNIT)
    for k in base:
        if k not in ("ExecStart", "ExecStartPre"):
            assert u[k] == base[k], k
    r = subprocess.run([files["bin"], "--check-config", "-c", files["config"]],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr


def test_installed_unit_passes_systemd_analyze_verify(installed, tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed")
    files, _, real = installed
    # verify checks that ExecStart's binary exists: point it at the installed copy.
    with open(files["unit"]) as f:
        text = f.read().replace(real["bin"], files["bin"])
    d = tmp_path / "unit"
    d.mkdir()
    unit = d / "cascade.service"
    unit.write_text(text)
    # --man=no: the unit's Documentation= pages are in the destdir, not in man's path (the
    # package test verifies them installed).
    r = subprocess.run([exe, "verify", "--man=no", str(unit)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stdout + r.stderr
