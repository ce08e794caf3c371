"""The Debian package and the man pages.

- the generated cascade.ini(5) documents exactly the keys a running relay's `CONFIG GET *`
  lists, each with the default the relay reports;
- `scripts/package` builds cascade_<version>_<arch>.deb with `dpkg-buildpackage` and lintian
  finds no errors; the package holds the binary, the unit, the conffiles and the man pages;
- `dpkg -i` installs it: the system user exists, `cascade --version` and the unit's own
  command lines (ExecStartPre's --check-config, then ExecStart as User= in WorkingDirectory=)
  work from the installed paths; the packaged man pages render without groff warnings;
- `dpkg --purge` leaves nothing: no file of the package, no /etc/cascade, no state or log
  directory. The system user stays, as Debian keeps system accounts on purge.

The package test installs into this machine's root file system: it needs root and dpkg, and it
is skipped (with the reason) without them, or when a cascade package is already installed.
"""

import gzip
import os
import pwd
import re
import shutil
import signal
import subprocess

import pytest

import harness as h
from harness import wait_for

BUILD_DIR = os.path.join(h.REPO_ROOT, "build")
MAN5 = os.path.join(BUILD_DIR, "cascade.ini.5")
MAN8 = os.path.join(BUILD_DIR, "cascade.8")
PACKAGE = os.path.join(h.REPO_ROOT, "scripts", "package")
BUILD_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120


def run(argv, timeout=RUN_TIMEOUT_S, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, **kw)


def meson_version():
    with open(os.path.join(h.REPO_ROOT, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


# --------------------------------------------------------------------------------------------
# man pages


def man_keys(text):
    """{section.key: default} from cascade.ini(5): '.SH [section]' then '.B key = default'."""
    keys, section = {}, None
    for line in text.splitlines():
        m = re.match(r"^\.SH \[([a-z]+)\]$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^\.B (\S+) = (.*)$", line)
        if m and section:
            name = m.group(1).replace("\\-", "-")
            dflt = m.group(2)
            dflt = "" if dflt == "(empty)" else re.sub(r"\\f[IR]", "", dflt).replace("\\-", "-")
            keys["%s.%s" % (section, name)] = dflt
    return keys


@pytest.mark.relay_only
def test_config_man_page_lists_every_key_with_its_default(cluster):
    if not os.path.isfile(MAN5):
        pytest.skip("%s not built" % MAN5)
    with open(MAN5) as f:
        text = f.read()
    documented = man_keys(text)
    # A relay with defaults only (no file), except what the harness sets by flags.
    relay = cluster.relay(None)
    got = relay.r.execute_command("CONFIG", "GET", "*")
    pairs = dict(zip(got[0::2], got[1::2]))
    served = {k: v for k, v in pairs.items() if "." in k}
    assert served, pairs
    assert sorted(documented) == sorted(served)
    overridden = {"relay.port", "relay.bind", "relay.dir"}  # set by the harness' flags
    for k, dflt in documented.items():
        if k in overridden:
            continue
        # CONFIG GET shows sizes and durations as numbers: compare through the relay's parser
        r = run([h.CASCADE_BIN, "--check-config", "--set", "%s=%s" % (k, dflt)])
        assert r.returncode == 0, (k, dflt, r.stdout)
        if re.fullmatch(r"[A-Za-z.0-9_:/-]*", dflt) and not re.fullmatch(r"\d+[a-z]+", dflt):
            assert served[k] == dflt, (k, served[k], dflt)


def test_man_pages_render_without_warnings():
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff not installed (package groff-base)")
    for page in (MAN8, MAN5):
        if not os.path.isfile(page):
            pytest.skip("%s not built" % page)
        r = run([groff, "-ww", "-z", "-man", page])
        assert r.returncode == 0 and r.stdout == "", (page, r.stdout)


def test_cascade_8_documents_every_flag():
    """Every long option main.c accepts is in cascade(8) (and in its --help text)."""
    with open(os.path.join(h.REPO_ROOT, "proxy", "main.c")) as f:
        flags = re.findall(r'\{"([a-z-]+)", (?:required|no)_argument', f.read())
    assert "check-config" in flags, flags
    with open(os.path.join(h.REPO_ROOT, "man", "cascade.8.in")) as f:
        page = f.read().replace("\\-", "-")
    for flag in flags:
        assert "--" + flag in page, flag


# --------------------------------------------------------------------------------------------
# the Debian package


def dpkg_status(pkg):
    r = run(["dpkg-query", "-W", "-f=${Status}", pkg])
    return r.stdout.strip() if r.returncode == 0 else ""


def require_package_tools():
    if os.geteuid() != 0:
        pytest.skip("installs a .deb into / with dpkg -i: needs root (CI runs as root)")
    for tool in ("dpkg", "dpkg-buildpackage", "dpkg-deb", "lintian", "fakeroot", "adduser",
                 "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip("%s not installed (scripts/common.sh ensure_deps installs it)" % tool)
    if shutil.which("dh") is None:
        pytest.skip("debhelper not installed (scripts/common.sh ensure_deps installs it)")
    if "installed" in dpkg_status("cascade"):
        pytest.skip("a cascade package is already installed here: not touching it")


def unit_values(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k.strip(), []).append(v.strip())
    return out


def deb_paths(deb):
    """Every path in the package, without the leading '.'."""
    r = run(["dpkg-deb", "-c", deb])
    assert r.returncode == 0, r.stdout
    paths = []
    for line in r.stdout.splitlines():
        p = line.split()[-1]
        if p.startswith("./") and p != "./":
            paths.append(p[1:].rstrip("/"))
    return paths


@pytest.fixture
def built_deb(tmp_path_factory):
    require_package_tools()
    out = tmp_path_factory.mktemp("deb")
    r = run([PACKAGE, str(out)], timeout=BUILD_TIMEOUT_S)
    assert r.returncode == 0, r.stdout[-6000:]
    deb = r.stdout.strip().splitlines()[-1]
    return deb, r.stdout


@pytest.fixture
def installed_deb(built_deb):
    deb, log = built_deb
    try:
        yield deb, log
    finally:
        # Whatever the test did: leave the machine as it was (the user stays, see below).
        if dpkg_status("cascade"):
            run(["dpkg", "--purge", "cascade"])


def test_deb_builds_installs_runs_and_purges(installed_deb, tmp_path):
    deb, log = installed_deb
    version = meson_version()
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert os.path.basename(deb) == "cascade_%s_%s.deb" % (version, arch)
    with open(os.path.join(os.path.dirname(deb), "lintian.txt")) as f:
        lint = f.read()
    assert not re.search(r"^E:", lint, re.M), lint

    paths = deb_paths(deb)
    for want in ("/usr/bin/cascade", "/etc/cascade/cascade.ini", "/etc/logrotate.d/cascade",
                 "/lib/systemd/system/cascade.service", "/usr/share/man/man8/cascade.8.gz",
                 "/usr/share/man/man5/cascade.ini.5.gz", "/usr/share/doc/cascade/copyright"):
        assert want in paths, (want, paths)
    r = run(["dpkg-deb", "-f", deb, "Depends"])
    assert "adduser" in r.stdout and "libhiredis" in r.stdout, r.stdout
    ctl = tmp_path / "control"
    assert run(["dpkg-deb", "-e", deb, str(ctl)]).returncode == 0
    conffiles = (ctl / "conffiles").read_text().split()
    assert "/etc/cascade/cascade.ini" in conffiles and "/etc/logrotate.d/cascade" in conffiles

    # -- install
    r = run(["dpkg", "-i", deb])
    assert r.returncode == 0, r.stdout
    assert dpkg_status("cascade") == "install ok installed"
    user = pwd.getpwnam("cascade")
    assert user.pw_uid < 1000 and user.pw_shell == "/usr/sbin/nologin", user
    assert user.pw_dir == "/var/lib/cascade", user
    for d in ("/var/lib/cascade", "/var/log/cascade"):
        st = os.stat(d)
        assert st.st_uid == user.pw_uid and not st.st_mode & 0o007, (d, oct(st.st_mode))

    r = run(["/usr/bin/cascade", "--version"])
    assert r.returncode == 0 and r.stdout.strip() == "cascade %s" % version, r.stdout

    unit = unit_values("/lib/systemd/system/cascade.service")
    assert unit["ExecStart"] == ["/usr/bin/cascade -c /etc/cascade/cascade.ini"], unit
    assert unit["User"] == ["cascade"] and unit["WorkingDirectory"] == ["/var/lib/cascade"]
    assert "/var/lib/cascade" in unit["ReadWritePaths"][0].split()
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
    analyze = shutil.which("systemd-analyze")
    if analyze:
        # verify runs man for Documentation=: only where man is installed
        man = [] if shutil.which("man") else ["--man=no"]
        r = run([analyze, "verify"] + man + ["/lib/systemd/system/cascade.service"])
        assert r.returncode == 0, r.stdout

    # ExecStartPre, exactly as the unit has it
    pre = unit["ExecStartPre"][0].split()
    assert pre[0] == "/usr/bin/cascade" and "--check-config" in pre, pre
    r = run(pre)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout

    # ExecStart as the unit runs it: as User= (setpriv execs it, so the pid is the relay's) in
    # WorkingDirectory= (relay.dir = . there). The port is moved to a free one by a flag (flags
    # override the file), so nothing on this machine's 6380 matters.
    port = h.free_port()
    argv = unit["ExecStart"][0].split() + ["--port", str(port)]
    logf = open(tmp_path / "cascade.log", "wb")
    setpriv = ["setpriv", "--reuid=cascade", "--regid=cascade", "--init-groups", "--"]
    p = subprocess.Popen(setpriv + argv, cwd="/var/lib/cascade", stdin=subprocess.DEVNULL,
                         stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    logf.close()
    try:
        c = h.client(port, timeout=2.0)
        wait_for(lambda: c.ping(), 15, "the installed relay to answer PING",
                 describe=lambda: (tmp_path / "cascade.log").read_text())
        repl = c.info("replication")
        # the shipped config has no [upstream]: a relay waiting for REPLICAOF
        assert repl["role"] == "slave" and repl["master_link_status"] == "down", repl
        c.close()
    finally:
        os.kill(p.pid, signal.SIGTERM)
        rc = p.wait(30)
    assert rc == 0, (rc, (tmp_path / "cascade.log").read_text())
    # the relay wrote its state where the unit lets it (ProtectSystem=strict + ReadWritePaths)
    assert os.listdir("/var/lib/cascade"), "no state written to /var/lib/cascade"
    for f in os.listdir("/var/lib/cascade"):
        assert os.stat(os.path.join("/var/lib/cascade", f)).st_uid == user.pw_uid, f

    # The package's man pages, as shipped (taken from the .deb: a dpkg path-exclude, as in
    # minimal container images, may keep them out of /usr/share/man).
    groff = shutil.which("groff")
    if groff:
        x = tmp_path / "x"
        assert run(["dpkg-deb", "-x", deb, str(x)]).returncode == 0
        for page in ("usr/share/man/man8/cascade.8.gz", "usr/share/man/man5/cascade.ini.5.gz"):
            with gzip.open(str(x / page), "rt") as f:
                src = f.read()
            r = subprocess.run([groff, "-ww", "-z", "-man"], input=src, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_S)
            assert r.returncode == 0 and r.stdout == "", (page, r.stdout)

    # -- purge
    r = run(["dpkg", "--purge", "cascade"])
    assert r.returncode == 0, r.stdout
    assert dpkg_status("cascade") in ("", "unknown ok not-installed"), dpkg_status("cascade")
    left = [p for p in paths if os.path.lexists(p) and not os.path.isdir(p)]
    assert not left, left
    for d in ("/etc/cascade", "/var/lib/cascade", "/var/log/cascade", "/usr/share/doc/cascade",
              "/etc/systemd/system/multi-user.target.wants/cascade.service"):
        assert not os.path.lexists(d), d
    info = "/var/lib/dpkg/info"
    assert not [f for f in os.listdir(info) if f.startswith("cascade.")], "dpkg info left"
    # Debian keeps system accounts on purge (files owned by the uid may live on elsewhere);
    # the account cannot log in.
    assert pwd.getpwnam("cascade").pw_shell == "/usr/sbin/nologin"


def test_build_depends_cover_every_meson_dependency():
    """Every dependency('x') of the relay's meson files is found through a .pc file that a
    package in debian/control's Build-Depends ships (a new library cannot be forgotten there:
    the package build on a clean machine would fail)."""
    for tool in ("dpkg", "pkg-config"):
        if shutil.which(tool) is None:
            pytest.skip("%s not installed" % tool)
    with open(os.path.join(h.REPO_ROOT, "debian", "control")) as f:
        control = f.read()
    m = re.search(r"^Build-Depends:(.*?)(?=^\S)", control, re.M | re.S)
    build_deps = {re.split(r"[\s(]", d.strip())[0] for d in m.group(1).split(",") if d.strip()}
    names = set()
    for path in ("meson.build", "proxy/meson.build"):
        with open(os.path.join(h.REPO_ROOT, path)) as f:
            names |= set(re.findall(r"dependency\('([^']+)'", f.read()))
    names.discard("threads")  # the compiler's, no .pc
    assert names
    for name in sorted(names):
        r = run(["pkg-config", "--path", name])
        assert r.returncode == 0, (name, r.stdout)
        pc = os.path.realpath(r.stdout.strip())
        r = run(["dpkg", "-S", pc])
        if r.returncode != 0:  # usrmerge: dpkg may know the path under /lib, not /usr/lib
            r = run(["dpkg", "-S", pc.replace("/usr/lib/", "/lib/", 1)])
        assert r.returncode == 0, (name, pc, r.stdout)
        pkgs = {p.split(":")[0].strip() for p in r.stdout.split(": ")[0].split(",")}
        assert pkgs & build_deps, "%s (%s, from %s) is not in Build-Depends %s" % (
            name, pc, sorted(pkgs), sorted(build_deps))
