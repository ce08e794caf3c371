"""Operating a running relay (issue 5): SIGHUP and CONFIG RELOAD re-read the file (reloadable
keys apply, others warn "requires restart", a broken file keeps the running configuration),
CONFIG SET, log files reopened on SIGHUP, and Sentinel's hello channel on the relay."""
import os
import signal

import pytest

import harness as h
from harness import count_in_file, wait_digests_equal, wait_for, wait_link_up

pytestmark = pytest.mark.relay_only


def write_ini(path, upstream_port, backlog="1mb", extra=""):
    with open(path, "w") as f:
        f.write("[upstream]\nhost = %s\nport = %d\n[backlog]\nsize = %s\n%s" %
                (h.HOST, upstream_port, backlog, extra))


def test_sighup_and_config_reload(cluster, tmp_path):
    m = cluster.master()
    ini = str(tmp_path / "relay.ini")
    write_ini(ini, m.port, backlog="1mb")
    relay = cluster.relay(None, "relay", config=ini)
    wait_link_up(relay)
    log = relay.logs[0]
    assert int(relay.info("replication")["repl_backlog_size"]) == 1 << 20

    # SIGHUP: a reloadable key applies at once.
    write_ini(ini, m.port, backlog="2mb")
    os.kill(relay.pid, signal.SIGHUP)
    wait_for(lambda: int(relay.info("replication")["repl_backlog_size"]) == 2 << 20, 10,
             "backlog.size to follow the file after SIGHUP")

    # A key that needs a restart only warns; the running value stays.
    write_ini(ini, m.port, backlog="2mb", extra="[replicas]\nsnapshot-rate = 1mb\n")
    os.kill(relay.pid, signal.SIGHUP)
    wait_for(lambda: count_in_file(log, "replicas.snapshot-rate changed: requires restart") >= 1,
             10, "the requires-restart warning")
    assert relay.r.execute_command("CONFIG", "GET", "replicas.snapshot-rate")[1] == "0"

    # A broken file keeps the running configuration and says where it is wrong.
    with open(ini, "a") as f:
        f.write("[backlog]\nbogus = 1\n")
    os.kill(relay.pid, signal.SIGHUP)
    wait_for(lambda: count_in_file(log, "reload failed, keeping the running configuration") >= 1,
             10, "the reload failure")
    assert count_in_file(log, "relay.ini:9: unknown key 'bogus' in section [backlog]") >= 1
    assert int(relay.info("replication")["repl_backlog_size"]) == 2 << 20

    # CONFIG RELOAD reports the same error to the client, then applies a fixed file.
    with pytest.raises(Exception) as e:
        relay.r.execute_command("CONFIG", "RELOAD")
    assert "unknown key 'bogus'" in str(e.value)
    write_ini(ini, m.port, backlog="3mb")
    assert relay.r.execute_command("CONFIG", "RELOAD") in ("OK", True)
    assert int(relay.info("replication")["repl_backlog_size"]) == 3 << 20
    assert relay.alive()


def test_config_set(cluster):
    m = cluster.master()
    relay = cluster.relay(m)
    wait_link_up(relay)
    c = relay.r
    assert c.execute_command("CONFIG", "SET", "backlog.size", "4mb") in ("OK", True)
    assert int(relay.info("replication")["repl_backlog_size"]) == 4 << 20
    assert c.execute_command("CONFIG", "SET", "replicas.timeout", "30s") in ("OK", True)
    assert c.execute_command("CONFIG", "GET", "replicas.timeout")[1] == "30000"
    for args, msg in [(("relay.port", "1"), "requires a restart"),
                      (("backlog.size", "12x"), "is not a size"),
                      (("no.such", "1"), "unknown key")]:
        with pytest.raises(Exception) as e:
            c.execute_command("CONFIG", "SET", *args)
        assert msg in str(e.value), (args, str(e.value))
    # The upstream can be re-pointed with CONFIG SET too: same master, so PSYNC continues.
    assert c.execute_command("CONFIG", "SET", "upstream.port", str(m.port)) in ("OK", True)
    r = cluster.replica(relay, "r")
    with cluster.writer(m) as w:
        w.wait_count(100)
    wait_digests_equal(m, [r], relays=[relay])


def test_log_file_reopened_on_sighup(cluster, tmp_path):
    m = cluster.master()
    logfile = str(tmp_path / "cascade.log")
    relay = cluster.relay(m, "relay", extra=["--set", "relay.log-file=" + logfile])
    wait_link_up(relay)
    wait_for(lambda: count_in_file(logfile, "listening on") >= 1, 10, "lines in the log file")
    os.rename(logfile, logfile + ".1")  # what logrotate does
    os.kill(relay.pid, signal.SIGHUP)
    wait_for(lambda: os.path.exists(logfile) and count_in_file(logfile, "SIGHUP") >= 1, 10,
             "the log file to be reopened at its path")
    assert count_in_file(logfile + ".1", "listening on") >= 1
    assert count_in_file(logfile, "listening on") == 0


def test_sentinel_hello_on_the_relay(cluster):
    """Sentinel SUBSCRIBEs to __sentinel__:hello on every instance, replicas included, and
    PUBLISHes there: the relay must take both (messages stay local to it)."""
    relay = cluster.relay(None, "relay")
    sub = relay.client()
    ps = sub.pubsub()
    ps.subscribe("__sentinel__:hello")
    wait_for(lambda: (ps.get_message(timeout=0.05) or {}).get("type") == "subscribe", 5,
             "the subscribe confirmation")
    pub = relay.client()
    assert pub.publish("__sentinel__:hello", "127.0.0.1,26379,abc,0,mymaster,...") == 1
    got = []

    def message():
        msg = ps.get_message(timeout=0.05)
        if msg and msg["type"] == "message":
            got.append(msg)
        return got
    wait_for(message, 5, "the hello message")
    assert got[0]["channel"] == "__sentinel__:hello"
    assert pub.publish("other", "x") == 0
    ps.close()
    # A subscribed client may PING (RESP2 pub/sub form) but not run other commands.
    data, _ = h.raw_exchange(relay.port, b"SUBSCRIBE ch\r\nPING\r\nINFO\r\n", lines=12)
    assert b"pong" in data, data
    assert b"-ERR Can't execute 'info'" in data, data
