"""docs/reference.md against a running relay: nothing the relay serves may be undocumented.

- every key `CONFIG GET *` lists as section.key is documented (and every key the doc's tables
  list exists);
- every INFO field of every section is documented, with the sub-fields of the slaveN and
  replicaN lines (taken with the upstream link down, and again with it up and a replica
  attached, so the state-dependent fields show up);
- every metric family the metrics endpoint serves is documented, with its labels (and every
  metric the doc lists is served);
- every command in the doc's command table is known to the relay (its reply is not "unknown
  command"), and every command in proxy/commands.c's table is in the doc's command table.

"Documented" means the name appears in backticks (`name`) in docs/reference.md.

And docs/architecture.md against the code: it names every file under proxy/, and its level
diagram is the include graph's (no include points up, no cycle between modules).
"""

import os
import re
import socket
import time
import urllib.request

import pytest

import harness as h
from harness import wait_connected_slaves, wait_link_up

DOC = os.path.join(h.REPO_ROOT, "docs", "reference.md")
COMMANDS_C = os.path.join(h.REPO_ROOT, "proxy", "commands.c")

pytestmark = pytest.mark.relay_only


# --------------------------------------------------------------------------------------------
# the document


def read_doc():
    with open(DOC) as f:
        return f.read()


def documented(text):
    """Every string that appears in backticks."""
    return set(re.findall(r"`([^`\n]+)`", text))


def section(text, heading):
    """The text under '## heading' up to the next '## ' heading."""
    m = re.search(r"^## %s\s*$" % re.escape(heading), text, re.M)
    assert m, "docs/reference.md has no '## %s' section" % heading
    rest = text[m.end():]
    n = re.search(r"^## ", rest, re.M)
    return rest[:n.start()] if n else rest


def table_first_cells(text):
    """The backticked text of the first cell of every table row in text."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([^`]+)`", line)
        if m:
            out.append(m.group(1))
    return out


def missing(names, doc_names):
    return sorted(n for n in names if n not in doc_names)


# --------------------------------------------------------------------------------------------
# what the relay serves


def config_keys(node):
    flat = node.r.execute_command("CONFIG", "GET", "*")
    return [k for k in flat[0::2] if "." in k]


def info_names(text):
    """INFO text -> set of field names; slaveN/replicaN become slaveN/replicaN plus their
    sub-field names."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert ":" in line, "INFO line without a colon: %r" % line
        field, value = line.split(":", 1)
        m = re.match(r"^(slave|replica)\d+$", field)
        if m:
            names.add(m.group(1) + "N")
            for part in value.split(","):
                assert "=" in part, "%s: %r is not key=value" % (field, part)
                names.add(part.split("=", 1)[0])
        else:
            names.add(field)
    return names


def raw_info(node):
    """INFO everything as the raw text (redis-py would parse it into a dict)."""
    payload = b"*2\r\n$4\r\nINFO\r\n$10\r\neverything\r\n"
    with socket.create_connection((h.HOST, node.port), timeout=5) as s:
        s.sendall(payload)
        buf = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if b"\r\n" in buf:
                head, rest = buf.split(b"\r\n", 1)
                assert head.startswith(b"$"), head
                n = int(head[1:])
                if len(rest) >= n:
                    return rest[:n].decode()
            data = s.recv(65536)
            if not data:
                break
            buf += data
    raise AssertionError("no INFO reply from %s: %r" % (node.name, buf[:200]))


def scrape(port):
    with urllib.request.urlopen("http://%s:%d/metrics" % (h.HOST, port), timeout=5) as r:
        assert r.status == 200
        return r.read().decode()


def metric_names(text):
    """(families, label names) of a Prometheus text exposition."""
    fams, labels = set(), set()
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)$", line)
        if m:
            fams.add(m.group(1))
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? \S+$", line)
        assert m, "not a sample line: %r" % line
        fams.add(m.group(1))
        if m.group(3):
            labels.update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3)))
    return fams, labels


def read_reply_line(sock, timeout=3.0):
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n" not in buf and time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        if not data:
            break
        buf += data
    return buf.split(b"\r\n", 1)[0].decode(errors="replace")


def probe(port, args):
    """Send one command on a fresh connection; the first reply line ('' if none)."""
    payload = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection((h.HOST, port), timeout=3) as s:
        s.sendall(payload)
        return read_reply_line(s)


# Commands whose documented arguments would start a sync on the probe connection: probe them
# with a wrong argument count instead (the arity error proves the relay knows the command).
PROBE_OVERRIDES = {"PSYNC": ["PSYNC"], "SYNC": ["SYNC", "x"]}


def probe_args(syntax):
    """`CLIENT SETNAME name` -> ['CLIENT', 'SETNAME', 'x']: the command words, then a dummy for
    each required argument (those before the first optional [...] part)."""
    words = syntax.split()
    cmd = []
    for w in words:
        if re.match(r"^[A-Z][A-Z0-9-]*$", w):
            cmd.append(w)
        else:
            break
    assert cmd, "no command word in %r" % syntax
    if cmd[0] in PROBE_OVERRIDES and len(cmd) == 1:
        return cmd[0], PROBE_OVERRIDES[cmd[0]]
    args = list(cmd)
    for w in words[len(cmd):]:
        if w.startswith("[") or w == "...":
            break
        args.append("x")
    return " ".join(cmd), args


def unknown(reply):
    r = reply.lower()
    return (r.startswith("-err unknown command") or r.startswith("-err unknown subcommand")
            or "supports get, set" in r)


# --------------------------------------------------------------------------------------------
# the relay


@pytest.fixture
def relay_states(cluster):
    """A relay with the metrics endpoint: INFO with its upstream link down, then with the link
    up and a replica attached (slaveN/replicaN lines). Returns (relay, [info texts],
    metrics text with a replica attached)."""
    mport = h.free_port()
    relay = cluster.relay(None, "relay", extra=["--set", "metrics.port=%d" % mport])
    infos = [raw_info(relay)]
    m = cluster.master()
    h.preload(m.port, keys_per_db=100)
    relay.r.execute_command("REPLICAOF", h.HOST, m.port)
    wait_link_up(relay)
    cluster.replica(relay, "replica")
    wait_connected_slaves(relay, 1)
    m.r.set("docs:k", "v")
    infos.append(raw_info(relay))
    metrics = scrape(mport)
    assert "cascade_replica_lag_bytes{" in metrics, metrics
    return relay, infos, metrics


def test_config_keys_documented(relay_states):
    relay, _, _ = relay_states
    doc = read_doc()
    keys = config_keys(relay)
    assert len(keys) >= 40, keys
    assert not missing(keys, documented(doc)), \
        "config keys missing from docs/reference.md: %s" % missing(keys, documented(doc))
    # ... and the doc's key tables list no key the relay does not have.
    listed = [k for k in table_first_cells(section(doc, "Configuration keys"))
              if re.match(r"^[a-z]+\.[a-z-]+$", k)]
    assert len(listed) >= len(keys) * 0.9, listed
    stale = sorted(set(listed) - set(keys))
    assert not stale, "docs/reference.md documents keys the relay does not have: %s" % stale


def test_info_fields_documented(relay_states):
    _, infos, _ = relay_states
    names = set()
    for text in infos:
        names |= info_names(text)
    # every section was there
    for sec in ("Server", "Clients", "Memory", "Stats", "Replication", "Relay"):
        assert "# %s" % sec in infos[-1], sec
    assert {"slaveN", "replicaN", "master_link_down_since_seconds"} <= names, names
    gone = missing(names, documented(read_doc()))
    assert not gone, "INFO fields missing from docs/reference.md: %s" % gone


def test_metrics_documented(relay_states):
    _, _, metrics = relay_states
    fams, labels = metric_names(metrics)
    assert len(fams) >= 30, fams
    doc = read_doc()
    gone = missing(fams | labels, documented(doc))
    assert not gone, "metrics (or labels) missing from docs/reference.md: %s" % gone
    listed = [k for k in table_first_cells(section(doc, "Prometheus metrics"))
              if k.startswith("cascade_")]
    stale = sorted(set(listed) - fams)
    assert not stale, "docs/reference.md documents metrics the relay does not serve: %s" % stale


def test_documented_commands_are_known(relay_states):
    relay, _, _ = relay_states
    rows = table_first_cells(section(read_doc(), "Commands"))
    assert len(rows) >= 20, rows
    problems = []
    for syntax in rows:
        name, args = probe_args(syntax)
        reply = probe(relay.port, args)
        if not reply or unknown(reply):
            problems.append("%s (sent %r): %r" % (name, args, reply))
    assert not problems, "documented commands the relay does not answer:\n" + "\n".join(problems)
    # An unknown command is really refused with the text checked above.
    assert unknown(probe(relay.port, ["NOSUCHCOMMAND"]))
    assert unknown(probe(relay.port, ["CLIENT", "NOSUCH"]))


def test_server_commands_are_documented():
    """Each command in proxy/commands.c's table has a row in the doc's command table."""
    with open(COMMANDS_C) as f:
        src = f.read()
    table = src[src.index("static const struct command commands[]"):]
    table = table[:table.index("};")]
    names = {n.upper() for n in re.findall(r'\{"([a-z-]+)",', table)}
    assert len(names) >= 15, names
    rows = table_first_cells(section(read_doc(), "Commands"))
    doc_cmds = {r.split()[0] for r in rows}
    assert not sorted(names - doc_cmds), \
        "commands missing from the doc's command table: %s" % sorted(names - doc_cmds)


def test_checker_catches_a_missing_name():
    """The checks above fail when a name is not in the doc (guards the checker itself)."""
    doc = read_doc()
    for name in ("relay.port", "master_repl_offset", "cascade_upstream_link_up", "slaveN"):
        assert name in documented(doc)
        stripped = doc.replace("`%s`" % name, name)
        assert missing([name], documented(stripped)) == [name]


# --------------------------------------------------------------------------------------------
# docs/architecture.md


def test_architecture_names_every_file():
    """docs/architecture.md is kept true with the code: it names every file under proxy/ (in
    backticks), and every proxy file it names exists."""
    path = os.path.join(h.REPO_ROOT, "docs", "architecture.md")
    with open(path) as f:
        doc = f.read()
    proxy = os.path.join(h.REPO_ROOT, "proxy")
    files = sorted(f for f in os.listdir(proxy) if f.endswith((".c", ".h")))
    missing = [f for f in files if "`%s`" % f not in doc]
    assert not missing, "docs/architecture.md does not name: %s" % ", ".join(missing)
    named = set(re.findall(r"`([a-z_0-9]+\.[ch])`", doc))
    stale = sorted(n for n in named if n not in files)
    assert not stale, "docs/architecture.md names files that are gone: %s" % ", ".join(stale)


def architecture_levels(doc):
    """{module: level} from the level diagram of docs/architecture.md, and {name: module} for
    the files of modules written in several (the names in parentheses after a module)."""
    block = re.search(r"## Layers and the rule.*?```\n(.*?)```", doc, re.S)
    assert block, "docs/architecture.md has no level diagram under 'Layers and the rule'"
    levels, part_of, level = {}, {}, None
    for line in block.group(1).splitlines():
        m = re.match(r"level (\d+)\s+(.*)", line)
        if m:
            level, rest = int(m.group(1)), m.group(2)
        else:
            assert level is not None and line.startswith(" "), line
            rest = line
        for mod, parts in re.findall(r"([a-z_0-9]+)(?:\s*\(([a-z_0-9, ]+)\))?", rest):
            levels[mod] = level
            part_of[mod] = mod
            for p in filter(None, re.split(r"[ ,]+", parts)):
                part_of[p] = mod
    return levels, part_of


def test_includes_point_down():
    """The level diagram of docs/architecture.md is the include graph's: every file under
    proxy/ belongs to a module in it, a module includes only modules of its own level or a
    lower one, and no two modules include each other, directly or round a longer cycle."""
    with open(os.path.join(h.REPO_ROOT, "docs", "architecture.md")) as f:
        levels, part_of = architecture_levels(f.read())
    proxy = os.path.join(h.REPO_ROOT, "proxy")
    edges, unplaced, upward = {}, [], []
    for name in sorted(os.listdir(proxy)):
        base, ext = os.path.splitext(name)
        if ext not in (".c", ".h"):
            continue
        if base not in part_of:
            unplaced.append(name)
            continue
        src = part_of[base]
        with open(os.path.join(proxy, name)) as f:
            for inc in re.findall(r'^#include "([a-z_0-9]+)\.h"', f.read(), re.M):
                dst = part_of.get(inc)
                assert dst, "%s includes %s.h, which no module of the diagram owns" % (name, inc)
                if dst == src:
                    continue
                edges.setdefault(src, set()).add(dst)
                if levels[dst] > levels[src]:
                    upward.append("%s (level %d) includes %s.h (level %d)"
                                  % (name, levels[src], inc, levels[dst]))
    assert not unplaced, "not in the level diagram: %s" % ", ".join(unplaced)
    assert not upward, "includes that point up: %s" % "; ".join(upward)

    state = {}  # module -> 1 on the DFS path, 2 done

    def visit(mod, path):
        state[mod] = 1
        for nxt in sorted(edges.get(mod, ())):
            assert state.get(nxt) != 1, "include cycle: %s" % " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[mod] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod, [mod])
