"""The node API over a Node driven by the fakes (tests/unit/fakes.py): what a pass publishes for it, the
lease read live at request time, the event counters, and the HTTP server itself on 127.0.0.1 port 0 (GET,
HEAD, OPTIONS, 4xx in one line, /status without secrets, /metrics parsed by prometheus_client's parser)."""
import dataclasses
import http.client
import json
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mysqlpilot import api
from mysqlpilot.api_view import NodeSource
from mysqlpilot.model import MemberState

from .fakes import FakeDCS, FakeMySQL, give_session, make_node
from .test_ha_interleavings import make_primary, replica_of

SECRETS = {"MYSQL_ROOT_PASSWORD": "r00t-S3cret-pw", "MYSQL_REPL_PASSWORD": "repl-S3cret-pw",
           "CONSUL_HTTP_TOKEN": "consul-T0ken-value", "MYSQL_USER": "app", "MYSQL_PASSWORD": "app-S3cret-pw"}


@pytest.fixture
def two(tmp_path, monkeypatch):
    """n1 the writable primary, n2 its caught-up replica, one pass each; mysqld answers on both."""
    dcs = FakeDCS()
    servers = {n: FakeMySQL(n) for n in ("n1", "n2")}
    nodes = {n: make_node(tmp_path, n, dcs, servers, monkeypatch, MYSQLPILOT_DATADIR=str(tmp_path / n / "data"),
                          MYSQLPILOT_API_PORT="18008", **SECRETS) for n in ("n1", "n2")}
    n1, n2 = nodes["n1"], nodes["n2"]
    make_primary(dcs, servers, n1)
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1", executed="0-1-7")
    servers["n2"].replica.update(io_running=True, lag_seconds=2)
    for n in (n1, n2):
        n.mysqld_alive = lambda: True          # the prober's answer (no real mysqld here)
    n1.run_once()
    n2.run_once()
    return dcs, servers, n1, n2


def verdict(node, path, query=None):
    from mysqlpilot.api_verdicts import decide
    return decide(path, query or {}, NodeSource(node).facts())


def test_a_pass_publishes_the_view_the_api_reads(two):
    dcs, _, n1, n2 = two
    v1, v2 = n1.api_view, n2.api_view
    assert (v1.role, v1.writable, v1.primary, v1.gtids_behind) == ("primary", True, "n1", 0)
    assert (v2.role, v2.writable, v2.following, v2.primary_address) == ("replica", False, "h-n1:3306", "h-n1:3306")
    assert v2.gtids_behind == 3 and v2.lag_seconds == 2          # n1 published 0-1-10, n2 applied 0-1-7
    assert verdict(n1, "/primary").status == 200 and verdict(n1, "/replica").status == 503
    assert verdict(n2, "/replica").status == 200 and verdict(n2, "/primary").status == 503
    assert verdict(n2, "/replica", {"lag_transactions": ["2"]}).status == 503
    assert verdict(n2, "/readiness").status == 200 and verdict(n1, "/readiness").status == 200
    # Each member record names its API, and status lists it.
    assert dcs.members["n1"].api == "h-n1:18008"


def test_a_promotion_shows_in_the_view_of_the_pass_that_made_it(tmp_path, monkeypatch):
    from mysqlpilot import analysis
    from .test_ha_interleavings import lock_delay_passed
    dcs, servers = FakeDCS(), {"n1": FakeMySQL("n1", executed="0-1-5")}
    n1 = make_node(tmp_path, "n1", dcs, servers, monkeypatch)
    n1.mysqld_alive = lambda: True
    give_session(n1, dcs)
    lock_delay_passed(n1, dcs)
    assert n1.run_once().action == analysis.TAKE_LOCK and servers["n1"].ro is False
    assert n1.api_view.primary == "n1" and verdict(n1, "/primary").status == 200


def test_the_lease_and_session_are_read_live_not_from_the_last_pass(two):
    _, _, n1, _ = two
    assert verdict(n1, "/primary").status == 200
    n1.lease.void("test: the lease ends between passes")
    v = verdict(n1, "/primary")
    assert v.status == 503 and "lease" in v.reason
    n1.state.update(session="another-session")      # a new session: the lock is not held under it
    assert "not the primary" in verdict(n1, "/primary").reason


def test_a_read_only_answer_since_the_pass_ends_the_primary_verdict_at_once(two):
    _, servers, n1, _ = two
    assert verdict(n1, "/primary").status == 200
    servers["n1"].ro = True                         # a hand-over fenced it (its lease and lock remain)
    assert n1.fencer.read_only() is True            # what the fencer and its watchdog read
    v = verdict(n1, "/primary")
    assert v.status == 503 and "read-only" in v.reason
    # A reading older than the pass's view does not count (one taken mid-promotion, before writes were on).
    servers["n1"].ro = False
    n1.run_once()
    assert verdict(n1, "/primary").status == 200


def test_a_switchover_and_its_fence_are_counted_where_they_run(two):
    dcs, servers, n1, n2 = two
    from mysqlpilot.dcs.base import Request
    servers["n2"].executed = "0-1-10"                 # caught up: the switchover can complete
    assert n1.hand_over("n2", Request(to="n2", requested=1e10), dcs.get_cluster())
    n2.run_once()
    assert dcs.get_cluster().history[-1]["kind"] == "switchover"
    assert n2.events.counts()["switchovers"] == 1 and n2.events.histograms()["switchover"][1] == 1
    assert n1.events.counts()["fences"] == 1
    assert n1.events.fenced is False             # it follows n2 at once: serving again


def test_the_server_answers_get_head_options_and_one_line_errors(two, tmp_path):
    _, _, n1, n2 = two
    r1, r2 = serve(n1), serve(n2)
    try:
        assert get(r1, "/primary")[0] == 200 and get(r2, "/primary")[0] == 503
        assert get(r1, "/read-write")[0] == 200
        assert get(r2, "/replica?lag=10")[0] == 200 and get(r2, "/replica?lag=1")[0] == 503
        for method in ("HEAD", "OPTIONS"):
            status, body, headers = request(r1, method, "/primary")
            assert status == 200 and (body == b"") == (method == "HEAD")
            assert request(r2, method, "/primary")[0] == 503
        assert "OPTIONS" in request(r1, "OPTIONS", "/primary")[2].get("Allow", "")
        for path, code, word in (("/replica?lag=abc", 400, "lag"), ("/replica?lag=-5", 400, "lag"),
                                 ("/nope", 404, "/nope"), ("/replica?lag", 400, "query")):
            status, body = get(r2, path)
            assert status == code and word in body and body.count("\n") == 1
        status, body, _ = request(r1, "POST", "/primary")
        assert status == 405 and "read-only" in body.decode()
    finally:
        r1.stop()
        r2.stop()


def test_status_is_this_nodes_view_and_never_a_secret(two):
    _, _, n1, n2 = two
    # A message quoting a secret (say a mysqld error echoing a statement) is masked too.
    n2.api_view = dataclasses.replace(n2.api_view, message=f"failed: IDENTIFIED BY '{SECRETS['MYSQL_REPL_PASSWORD']}'")
    r = serve(n2)
    try:
        status, body = get(r, "/status")
        doc = json.loads(body)
        assert status == 200 and doc["name"] == "n2" and doc["role"] == "replica" and doc["primary"] == "n1"
        assert doc["checks"]["/replica"]["status"] == 200 and doc["api"] == "h-n2:18008"
        bodies = [body] + [get(r, p)[1] for p in ("/metrics", "/primary", "/replica", "/health", "/readiness",
                                                  "/liveness", "/nope", "/replica?lag=x")]
        for text in bodies:
            for name, secret in SECRETS.items():
                if name != "MYSQL_USER":
                    assert secret not in text, name
    finally:
        r.stop()


def test_metrics_are_prometheus_text_with_cluster_and_node_labels(two, tmp_path):
    _, _, n1, _ = two
    os.makedirs(str(tmp_path / "n1" / "data") + ".aside-20260101T000000Z")
    n1.dcs.request_errors, n1.dcs.last_answer = 2, 1_700_000_000.0
    n1.state.update(last_restore={"seconds": 12.5, "at": 1_700_000_100.0, "from": "snapshot s1"})
    n1.events.promoted("failover", 2.5)
    n1.events.fence("test", "read-only")
    r = serve(n1)
    try:
        status, text = get(r, "/metrics")
    finally:
        r.stop()
    assert status == 200
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            assert s.labels["cluster"] == "mysql" and s.labels["node"] == "n1", s
            samples[(s.name, s.labels.get("kind"), s.labels.get("le"))] = s.value
    families = {k[0] for k in samples}
    assert len({f for f in families if not f.endswith(("_bucket", "_count", "_sum", "_created"))}) >= 20
    want = {"mysqlpilot_primary": 1, "mysqlpilot_replica": 0, "mysqlpilot_writable": 1, "mysqlpilot_lock_held": 1,
            "mysqlpilot_fenced": 1, "mysqlpilot_paused": 0, "mysqlpilot_cluster_unlocked": 0,
            "mysqlpilot_mysqld_up": 1, "mysqlpilot_failovers_total": 1, "mysqlpilot_switchovers_total": 0,
            "mysqlpilot_fences_total": 1, "mysqlpilot_rebuilds_total": 0, "mysqlpilot_consul_request_errors_total": 2,
            "mysqlpilot_dcs_last_seen_timestamp_seconds": 1_700_000_000, "mysqlpilot_moved_aside_datadirs": 1,
            "mysqlpilot_last_restore_duration_seconds": 12.5, "mysqlpilot_failover_budget_left": 3,
            "mysqlpilot_gtid_executed_transactions": 10, "mysqlpilot_last_snapshot_size_bytes": 1,
            "mysqlpilot_last_snapshot_timestamp_seconds": 1.0,
            "mysqlpilot_last_snapshot_duration_seconds": None}           # taken by a release that did not time it
    for name, value in want.items():
        got = samples.get((name, None, None))
        assert got == value, (name, got)
    assert samples[("mysqlpilot_lease_seconds_left", None, None)] > 0
    assert samples[("mysqlpilot_failover_duration_seconds_bucket", "failover", "2.0")] == 0
    assert samples[("mysqlpilot_failover_duration_seconds_bucket", "failover", "3.0")] == 1
    assert samples[("mysqlpilot_failover_duration_seconds_count", "failover", None)] == 1
    assert samples[("mysqlpilot_failover_duration_seconds_sum", "failover", None)] == 2.5
    for series in ("lag_seconds", "io_running", "sql_running", "behind_transactions"):
        assert ("mysqlpilot_replication_" + series, None, None) not in samples      # meaningless on a primary


def test_a_replica_exports_its_replication_series(two):
    _, _, _, n2 = two
    status, ctype, text = api.NodeAPI(NodeSource(n2)).respond("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    got = {s.name: s.value for fam in text_string_to_metric_families(text.decode()) for s in fam.samples
           if "kind" not in s.labels and "role" not in s.labels}
    assert {k: got[k] for k in ("mysqlpilot_replica", "mysqlpilot_primary", "mysqlpilot_lock_held",
                                "mysqlpilot_replication_lag_seconds", "mysqlpilot_replication_io_running",
                                "mysqlpilot_replication_sql_running", "mysqlpilot_replication_behind_transactions",
                                "mysqlpilot_writable")} == {
        "mysqlpilot_replica": 1, "mysqlpilot_primary": 0, "mysqlpilot_lock_held": 0,
        "mysqlpilot_replication_lag_seconds": 2, "mysqlpilot_replication_io_running": 1,
        "mysqlpilot_replication_sql_running": 1, "mysqlpilot_replication_behind_transactions": 3,
        "mysqlpilot_writable": 0}


def test_an_aborted_switchover_counts_its_fence_and_leaves_the_primary_unfenced(two):
    dcs, servers, n1, _ = two
    from mysqlpilot.dcs.base import Request
    assert not n1.hand_over("n2", Request(to="n2", requested=1e10), dcs.get_cluster())   # n2 lags: aborted
    assert servers["n1"].ro is False
    assert n1.events.counts()["fences"] == 1 and n1.events.fenced is False


def test_a_taken_port_is_said_once_and_the_loop_is_not_held_up(two, caplog):
    _, _, n1, _ = two
    first = serve(n1)
    try:
        second = api.start(n1, address="127.0.0.1", port=first.port_bound)
        assert second.bind_failed.wait(10) and not second.bound.is_set()
        second.stop()
        assert any("cannot listen on 127.0.0.1" in r.getMessage() and "api_port" in r.getMessage()
                   for r in caplog.records)
    finally:
        first.stop()


# ---- helpers -------------------------------------------------------------------------------------
def serve(node):
    r = api.start(node, address="127.0.0.1", port=0)
    assert r.bound.wait(10), "the node API did not bind"
    return r


def request(r, method, path):
    c = http.client.HTTPConnection("127.0.0.1", r.port_bound, timeout=10)
    try:
        c.request(method, path)
        resp = c.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        c.close()


def get(r, path):
    status, body, _ = request(r, "GET", path)
    return status, body.decode()


def test_members_from_before_the_api_still_parse():
    m = MemberState.from_json(json.dumps({"name": "old", "host": "h", "port": 3306}))
    assert m.api == ""


def test_the_docs_list_every_series_and_endpoint():
    from mysqlpilot import api_metrics, api_verdicts
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(here, "docs", "monitoring.md"), encoding="utf-8") as fh:
        monitoring = fh.read()
    with open(os.path.join(here, "docs", "routing.md"), encoding="utf-8") as fh:
        routing = fh.read()
    names = [n for n, _, _ in api_metrics.GAUGES] + [n + "_total" for n, _, _ in api_metrics.COUNTERS] + \
        [api_metrics.HISTOGRAM[0], "mysqlpilot_node_info"]
    for name in names:
        assert f"| `{name}` |" in monitoring, name
    for path in api_verdicts.ENDPOINTS:
        assert f"`{path}`" in routing, path


def test_consul_request_errors_and_last_answer_are_counted_for_the_metrics():
    import consul
    from mysqlpilot.dcs.consul import ConsulDCS
    from mysqlpilot.errors import PilotError
    d = ConsulDCS("127.0.0.1", 1, "mysqlpilot/t", "n1", timeout=2)     # nothing listens on port 1
    with pytest.raises(PilotError, match="cannot reach Consul at 127.0.0.1:1"):
        d.get_leader()
    assert d.request_errors == 1 and d.last_answer is None
    assert d._call("read", lambda: 5) == 5 and d.last_answer is not None

    def not_found():
        raise consul.NotFound("no such key")
    with pytest.raises(consul.NotFound):
        d._call("read", not_found)
    assert d.request_errors == 1                     # an answer, not an error


@pytest.mark.parametrize("port,started", [("18008", True), ("0", False)])
def test_watch_starts_the_api_beside_the_loop_unless_disabled(monkeypatch, tmp_path, port, started):
    from click.testing import CliRunner
    from mysqlpilot import ha
    from mysqlpilot.cli import main
    calls = []

    class LoopOnly:
        def __init__(self, cfg, **kw):
            self.cfg = cfg

        def run_forever(self):
            calls.append("loop")

        def terminate(self):        # `watch` installs a SIGTERM handler calling it
            calls.append("terminate")
    monkeypatch.setattr(ha, "Node", LoopOnly)
    monkeypatch.setattr(api, "start", lambda node: calls.append(("api", node.cfg.api_port)))
    env = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "MYSQLPILOT_API_PORT": port,
           "MYSQLPILOT_STATE_DIR": str(tmp_path), "MYSQLPILOT_CONFIG": ""}
    import signal
    # `watch` leaves its SIGTERM handler in this process: pytest's goes back afterwards (once, a later SIGTERM
    # ended a unit run with an INTERNALERROR: the handler called LoopOnly.terminate, which was missing).
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        out = CliRunner().invoke(main, ["watch"], env=env)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert out.exit_code == 0, out.output
    assert calls == ([("api", 18008), "loop"] if started else ["loop"])


def test_metrics_stay_off_the_global_default_registry(two):
    import prometheus_client
    _, _, n1, _ = two
    api.NodeAPI(NodeSource(n1)).respond("/metrics")
    assert b"mysqlpilot_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_a_client_that_resets_the_connection_is_not_an_error(monkeypatch):
    """HAProxy's checks close with a reset once they have the status line; each printed a traceback from
    socketserver into the node's log (seen in CI's HAProxy test). Seen failing before the fix."""
    import socket
    import struct
    import threading
    import time

    from mysqlpilot import api

    class App:
        def respond(self, path):
            time.sleep(0.2)                   # the client is gone by the time the answer goes out
            return 200, "text/plain", "x" * 200000 + "\n"
    errors = []
    srv = api.Server(("127.0.0.1", 0), App())
    monkeypatch.setattr(srv, "handle_error", lambda request, addr: errors.append(addr))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for _ in range(3):
            s = socket.create_connection(srv.server_address)
            s.sendall(b"GET /primary HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()                         # RST
        time.sleep(0.8)
    finally:
        srv.shutdown()
    assert errors == []


def test_a_promise_travels_signed_over_the_node_api(two, monkeypatch):
    """The primary's request (failsafe_keeper.Asker.ask) over real HTTP to a member's POST /failsafe."""
    from mysqlpilot.failsafe_keeper import PROMISE, SIGNATURE, Asker
    _, _, n1, n2 = two
    monkeypatch.setattr(n2.promises, "reach", lambda host, port: True)
    n2.promises.enabled = True                      # config key failsafe (off by default)
    r2 = serve(n2)
    try:
        ok, why = Asker(n1).ask("n2", f"127.0.0.1:{r2.port_bound}")
        assert ok and "promised n1" in why and n2.state.get(PROMISE)["to"] == "n1"
        c = http.client.HTTPConnection("127.0.0.1", r2.port_bound, timeout=10)
        for body, headers, code in ((b'{"x": 1}', {SIGNATURE: "00"}, 403), (b"", {}, 400),
                                    (b"x" * 5000, {}, 400)):
            c.request("POST", "/failsafe", body=body, headers=headers)
            resp = c.getresponse()
            assert resp.status == code and resp.read().count(b"\n") == 1
        c.close()
        assert request(r2, "POST", "/primary")[0] == 405
    finally:
        r2.stop()
