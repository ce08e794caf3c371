"""scripts/tree against a live tree: a master, a relay, a second relay under it, stock replicas.

    master ─┬─ relay1 ─┬─ relay2 ─┬─ r2a
            │          │          └─ r2b
            │          └─ r1
            └─ r0

The text output must list every node under its parent with its kind, from whichever node the
walk starts; --dot must be valid DOT (checked with Graphviz when installed) with every edge.
"""

import os
import re
import shutil
import subprocess

import pytest

import harness as h
from harness import wait_connected_slaves, wait_for, wait_link_up, wait_replica_synced

TREE = os.path.join(h.REPO_ROOT, "scripts", "tree")
RUN_TIMEOUT_S = 60  # the script bounds itself; this bounds the test if it did not
TREE_CHARS = "│├└─ "

pytestmark = pytest.mark.relay_only


def run_tree(*args, check_rc=None):
    p = subprocess.run([TREE] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=RUN_TIMEOUT_S, text=True)
    if check_rc is not None:
        assert p.returncode == check_rc, "scripts/tree %s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(map(str, args)), p.returncode, p.stdout, p.stderr)
    return p


def parse_text(out):
    """The tree table -> list of dicts (addr, kind, link, offset, lag_bytes, lag_s, notes,
    depth, parent)."""
    lines = out.splitlines()
    assert lines and lines[0].split()[:3] == ["NODE", "KIND", "LINK"], out
    nodes, stack = [], []
    for line in lines[1:]:
        if not line.strip():
            break
        indent = 0
        while indent < len(line) and line[indent] in TREE_CHARS:
            indent += 1
        assert indent % 4 == 0, "odd indentation in %r" % line
        depth = indent // 4
        cells = re.split(r"\s{2,}", line[indent:].strip(), maxsplit=6)
        cells += [""] * (7 - len(cells))
        addr, kind, link, offset, lag_b, lag_s, notes = cells
        del stack[depth:]
        assert len(stack) == depth, "line %r skips a level" % line
        parent = stack[-1]["addr"] if stack else None
        n = dict(addr=addr, kind=kind, link=link, offset=offset, lag_bytes=lag_b, lag_s=lag_s,
                 notes=notes, depth=depth, parent=parent)
        nodes.append(n)
        stack.append(n)
    return nodes


def addr(p):
    return "%s:%d" % (h.HOST, p.port)


@pytest.fixture
def tree(cluster):
    """The topology in the module docstring, every link up and every replica listed online."""
    m = cluster.master()
    h.preload(m.port, keys_per_db=200)
    relay1 = cluster.relay(m, "relay1")
    wait_link_up(relay1)
    relay2 = cluster.relay(relay1, "relay2")
    wait_link_up(relay2)
    r0 = cluster.replica(m, "r0")
    r1 = cluster.replica(relay1, "r1")
    r2a = cluster.replica(relay2, "r2a")
    r2b = cluster.replica(relay2, "r2b")
    for node, n in ((m, 2), (relay1, 2), (relay2, 2)):
        wait_connected_slaves(node, n)
    for node in (relay1, relay2, r0, r1, r2a, r2b):
        wait_replica_synced(node)
    m.r.set("tree:mark", "1")  # move the offset past the full syncs' starting point
    top = h.repl_offset(m)
    wait_for(lambda: all(h.repl_offset(x) >= top for x in (relay1, relay2, r0, r1, r2a, r2b)),
             h.SYNC_TIMEOUT_S, "every node at the master's offset")
    edges = {(addr(m), addr(relay1)), (addr(m), addr(r0)), (addr(relay1), addr(relay2)),
             (addr(relay1), addr(r1)), (addr(relay2), addr(r2a)), (addr(relay2), addr(r2b))}
    kinds = {addr(m): "master", addr(relay1): "cascade relay", addr(relay2): "cascade relay",
             addr(r0): "redis replica", addr(r1): "redis replica", addr(r2a): "redis replica",
             addr(r2b): "redis replica"}
    return dict(m=m, relay1=relay1, relay2=relay2, r0=r0, r1=r1, r2a=r2a, r2b=r2b, edges=edges,
                kinds=kinds)


def test_text_tree_from_any_node(tree):
    m = tree["m"]
    # From the top, from a relay in the middle, from a leaf two relays down: the same tree.
    for start in (m, tree["relay2"], tree["r2b"]):
        p = run_tree(addr(start), check_rc=0)
        nodes = parse_text(p.stdout)
        by = {n["addr"]: n for n in nodes}
        assert len(nodes) == len(by) == 7, p.stdout
        assert nodes[0]["addr"] == addr(m) and nodes[0]["parent"] is None, p.stdout
        got_edges = {(n["parent"], n["addr"]) for n in nodes if n["parent"]}
        assert got_edges == tree["edges"], p.stdout
        assert {a: n["kind"] for a, n in by.items()} == tree["kinds"], p.stdout
        for n in nodes[1:]:
            assert n["link"] == "up/online", p.stdout
            assert int(n["offset"]) > 0 and int(n["lag_bytes"]) >= 0, p.stdout
            assert int(n["lag_s"]) >= 0, p.stdout
        assert nodes[0]["link"] == "-" and nodes[0]["lag_bytes"] == "0", p.stdout
        assert "7 nodes; top %s (master)" % addr(m) in p.stdout, p.stdout
        assert "problem:" not in p.stdout, p.stdout


def test_lag_bytes_is_distance_to_top(tree):
    """Once writes stop, every node reaches the master's offset and shows 0 bytes behind."""
    top = h.repl_offset(tree["m"])  # the fixture waited for every node to reach it
    # The master PINGs its replicas now and then (offset +14 each): allow one such step.
    nodes = parse_text(run_tree(addr(tree["r1"]), check_rc=0).stdout)
    top_offset = int(nodes[0]["offset"])
    assert top_offset >= top
    for n in nodes[1:]:
        assert int(n["offset"]) + int(n["lag_bytes"]) in (top_offset, int(n["offset"])), nodes
        assert int(n["lag_bytes"]) <= 64, nodes


def parse_dot(text):
    """A small structural check of DOT: header, balanced braces and quotes, statements.
    Returns (edges, nodes) as sets of the quoted ids."""
    assert re.match(r"\s*digraph\s+\w+\s*\{", text), text[:200]
    depth, in_q, esc = 0, False, False
    for ch in text:
        if in_q:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_q = False
        elif ch == '"':
            in_q = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            assert depth >= 0, "unbalanced braces"
    assert depth == 0 and not in_q, "unbalanced braces or quotes"
    edges = set(re.findall(r'^\s*"([^"]+)"\s*->\s*"([^"]+)"', text, re.M))
    nodes = set(re.findall(r'^\s*"([^"]+)"\s*\[', text, re.M))
    return edges, nodes


def test_dot_output(tree, tmp_path):
    p = run_tree(addr(tree["relay1"]), "--dot", check_rc=0)
    edges, nodes = parse_dot(p.stdout)
    assert edges == tree["edges"], p.stdout
    assert nodes == set(tree["kinds"]), p.stdout
    for a, kind in tree["kinds"].items():
        assert re.search(r'"%s" \[label="%s\\n%s\\n' % (re.escape(a), re.escape(a), kind),
                         p.stdout), (a, kind, p.stdout)
    dot = shutil.which("dot")
    if dot:  # Graphviz installed: it must accept the file and keep every edge
        canon = subprocess.run([dot, "-Tcanon"], input=p.stdout, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT_S)
        assert canon.returncode == 0 and not canon.stderr.strip(), canon.stderr
        assert parse_dot(canon.stdout)[0] == tree["edges"], canon.stdout
        png = tmp_path / "tree.png"
        run_tree(addr(tree["m"]), "--png", png, check_rc=0)
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_png_without_graphviz(tree, tmp_path):
    """--png with no `dot` in PATH: a clear message and exit 1, nothing written."""
    env = dict(os.environ, PATH=str(tmp_path))  # python3 is started by absolute path
    out = tmp_path / "x.png"
    p = subprocess.run(["/usr/bin/python3", TREE, addr(tree["m"]), "--png", str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=RUN_TIMEOUT_S)
    assert p.returncode == 1, p.stderr
    assert "Graphviz is not installed" in p.stderr and "apt-get install graphviz" in p.stderr
    assert not out.exists()


def test_unreachable_nodes(tree):
    """A replica that does not answer is shown as unreachable under its parent (within the
    timeout); with the master gone, the relay whose upstream is unreachable is the top."""
    r2a = tree["r2a"]
    r2a.pause()  # accepts connections (kernel backlog) but never answers: a timeout
    try:
        p = run_tree(addr(tree["r1"]), "--timeout", "0.5", check_rc=3)
    finally:
        r2a.resume()
    by = {n["addr"]: n for n in parse_text(p.stdout)}
    n = by[addr(r2a)]
    assert n["parent"] == addr(tree["relay2"]) and n["kind"] == "?", p.stdout
    assert n["link"].startswith("unreachable") and "timed out" in n["notes"], p.stdout
    assert "problem: %s (replica of %s) unreachable" % (addr(r2a), addr(tree["relay2"])) \
        in p.stdout

    tree["m"].kill9()
    wait_for(lambda: tree["relay1"].info("replication")["master_link_status"] == "down", 10,
             "relay1 to see its upstream down")
    p = run_tree(addr(tree["r2b"]), check_rc=3)
    nodes = parse_text(p.stdout)
    assert nodes[0]["addr"] == addr(tree["relay1"]) and nodes[0]["kind"] == "cascade relay"
    assert "upstream %s unreachable" % addr(tree["m"]) in nodes[0]["notes"], p.stdout
    assert {(n["parent"], n["addr"]) for n in nodes if n["parent"]} == {
        e for e in tree["edges"] if e[0] != addr(tree["m"])}, p.stdout
    edges, _ = parse_dot(run_tree(addr(tree["r2b"]), "--dot", check_rc=3).stdout)
    assert ("%s (upstream)" % addr(tree["m"]), addr(tree["relay1"])) in edges


def test_cycle_is_bounded(cluster):
    """Two relays pointed at each other: the walk ends, reports the cycle, exits 3."""
    a = cluster.relay(None, "relay-a")
    b = cluster.relay(a, "relay-b")
    a.r.execute_command("REPLICAOF", h.HOST, b.port)
    p = run_tree(addr(a), "--timeout", "1", check_rc=3)
    assert "cycle" in p.stdout, p.stdout
    nodes = parse_text(p.stdout)
    assert len(nodes) <= 4, p.stdout


def test_usage_errors():
    assert run_tree("nonsense").returncode == 2
    p = run_tree("127.0.0.1:%d" % h.free_port(), "--timeout", "0.5", check_rc=1)
    assert "cannot query" in p.stderr and "connection refused" in p.stderr


def test_password(cluster):
    """--password AUTHs on every node; without it a protected start node is an error."""
    pw = "tree-secret"
    m = cluster.master(extra=["--requirepass", pw], password=pw)
    relay = cluster.relay(m, "relay", password=pw, extra=[
        "--set", "upstream.password=" + pw, "--set", "relay.requirepass=" + pw])
    wait_link_up(relay)
    r = cluster.replica(relay, "r", extra=["--masterauth", pw, "--requirepass", pw],
                        password=pw)
    wait_connected_slaves(relay, 1)
    nodes = parse_text(run_tree(addr(r), "--password", pw, check_rc=0).stdout)
    assert [(n["addr"], n["parent"], n["kind"]) for n in nodes] == [
        (addr(m), None, "master"), (addr(relay), addr(m), "cascade relay"),
        (addr(r), addr(relay), "redis replica")]
    p = run_tree(addr(relay), check_rc=1)
    assert "NOAUTH" in p.stderr, p.stderr
