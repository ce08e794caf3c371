"""pytest fixtures for the cascade integration suite (see harness.py for the environment).

Run: /usr/bin/python3 -m pytest tests/integration -q
     HOP=redis /usr/bin/python3 -m pytest tests/integration -q   # stock Redis as the hop
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--chaos-seconds", action="store", type=float, default=None,
                     dest="chaos_seconds",
                     help="duration of test_resilience.py::test_chaos (default: env "
                          "CHAOS_SECONDS or 45)")


def pytest_configure(config):
    config.addinivalue_line("markers", "hop: uses a relay hop (the cascade binary, or with HOP=redis "
                            "a stock replica)")
    config.addinivalue_line("markers", "relay_only: needs the cascade binary (skipped with HOP=redis)")


def pytest_report_header(config):
    ok, why = harness.relay_binary_usable()
    return "cascade: HOP=%s, CASCADE_BIN=%s (%s)" % (
        harness.HOP, harness.CASCADE_BIN, "usable" if ok else why)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the item, so fixtures can dump logs when the test failed.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _require_tools():
    for tool in (harness.REDIS_SERVER, harness.REDIS_CLI):
        if not os.access(tool, os.X_OK):
            pytest.skip("%s not installed" % tool)


def _require_relay():
    ok, why = harness.relay_binary_usable()
    if not ok:
        if os.environ.get("CASCADE_REQUIRE_BIN"):
            pytest.fail(why)
        pytest.skip(why + " (set HOP=redis to run the scenarios against stock Redis)")


@pytest.fixture
def cluster(request, tmp_path):
    """A Cluster owning every process the test starts; all stopped by pid at teardown. Fails the
    test when any log holds a sanitizer report. Dumps all log tails when the test failed."""
    _require_tools()
    if request.node.get_closest_marker("relay_only"):
        if harness.hop_is_redis():
            pytest.skip("relay-specific behaviour (HOP=redis)")
        _require_relay()
    elif request.node.get_closest_marker("hop") and not harness.hop_is_redis():
        _require_relay()
    c = harness.Cluster(tmp_path)
    try:
        yield c
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            sys.stderr.write("\n==== process logs (%s) ====\n%s\n" % (request.node.nodeid,
                                                                     c.describe()))
        reports, errors = c.teardown()
        if reports:
            pytest.fail("sanitizer report in logs:\n" + "\n\n".join(reports), pytrace=False)
        if errors:
            pytest.fail("teardown problems: %s" % "; ".join(errors), pytrace=False)
