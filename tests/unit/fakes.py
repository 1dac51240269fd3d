"""Fakes of Consul and mysqld for driving `Node` through an interleaving one step at a time (Patroni's
tests/test_ha.py style). Only what the HA code calls; state is plain attributes a test sets directly."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional

from mysqlpilot import config, failsafe
from mysqlpilot.dcs.base import DCS, ClusterView, parse_history, parse_leader, parse_manifest, parse_member, \
    parse_release, parse_request
from mysqlpilot.errors import PilotError
from mysqlpilot.flavors import get_flavor
from mysqlpilot.model import LeaderInfo, MemberState, SnapshotManifest

FLAVOR = get_flavor("mariadb", "10.11")
SNAPSHOT = SnapshotManifest(id="snap", created=1.0, source="n1", object_key="snapshots/snap/data", bytes=1,
                            raw_bytes=1, sha256="0" * 64, flavor="mariadb", version="10.11", gtid="0-1-1")


class FakeMySQL:
    def __init__(self, name: str, executed: str = "", read_only: bool = True):
        self.name = name
        self.up = True
        self.ro = read_only
        self.executed = executed
        self.retrieved = ""               # in the relay log, not applied
        self.replica: Optional[Dict[str, Any]] = None    # replica status, or None
        self.apply_ok = True              # wait_relay_applied succeeds
        self.seeded: List[str] = []
        self.calls: List[str] = []
        self.fail_read_only = False

    def _check(self):
        if not self.up:
            raise PilotError(f"cannot connect to MySQL {self.name}")

    # Server API -------------------------------------------------------------------------------
    def scalar(self, sql):
        self._check()
        return 1

    def query(self, sql):
        self._check()
        return []

    def execute(self, sql):
        self._check()
        self.calls.append(sql if isinstance(sql, str) else ";".join(sql))

    def close(self):
        pass

    def add_secret(self, secret):
        pass

    def read_only(self):
        self._check()
        return self.ro

    def set_read_only(self, on):
        self._check()
        if self.fail_read_only and on:
            raise PilotError("(1205) Lock wait timeout exceeded")
        self.calls.append(f"read_only={on}")
        self.ro = on

    def kill_client_connections(self):
        self._check()
        self.calls.append("kill")
        return 0

    def replica_status(self):
        self._check()
        if self.replica is None:
            return None
        return dict(self.replica, retrieved=FLAVOR.gtid_union(self.executed, self.retrieved)
                    if self.retrieved else self.executed)

    def gtid_executed(self):
        self._check()
        return self.executed

    def gtid_received(self):
        self._check()
        return FLAVOR.gtid_union(self.executed, self.retrieved) if self.retrieved else self.executed

    def semi_sync_status(self):
        return {"status": True, "clients": 1}

    def wait_relay_applied(self, timeout):
        self._check()
        if not self.apply_ok:
            return False
        if self.retrieved:
            self.executed, self.retrieved = FLAVOR.gtid_union(self.executed, self.retrieved), ""
        return True

    def wait_for_gtid(self, gtid, timeout):
        return FLAVOR.gtid_contains(self.executed, gtid)

    def stop_replica(self):
        self.calls.append("stop_replica")

    def reset_replica_all(self):
        self.calls.append("reset_replica_all")
        self.replica = None

    def start_replica(self):
        self.calls.append("start_replica")

    def change_source(self, host, port, user, password, tls=False, ca=None):
        self.calls.append(f"change_source {host}:{port}")
        self.replica = {"source_host": host, "source_port": port, "io_running": True, "sql_running": True,
                        "lag_seconds": 0.0}

    def seed_gtid(self, gtid):
        self.seeded.append(gtid)

    def semi_sync_primary(self, on, timeout_ms=0):
        self.calls.append(f"semi_sync_primary={on}")

    def semi_sync_replica(self, on):
        self.calls.append(f"semi_sync_replica={on}")


def _unfaked(name: str):
    def missing(self, *a, **kw):
        raise NotImplementedError(f"{type(self).__name__} fakes no DCS.{name}")
    missing.__name__ = name
    return missing


# The base of every DCS fake in the tests: a subclass of the real interface, each primitive failing loudly
# until the fake provides it, so a fake cannot drift from the interface (a renamed method is not faked).
PartialDCS = type("PartialDCS", (DCS,), {n: _unfaked(n) for n in DCS.__abstractmethods__})


def _no_cluster_settings(self, rel):
    """Every command reads the cluster's settings first (cluster_config): none are set, unless a fake says."""
    if rel == "config":
        return None
    return _unfaked("get_json")(self, rel)


PartialDCS.get_json = _no_cluster_settings


class FakeDCS(PartialDCS):
    """One Consul KV for every node of a test: sessions, the leader lock with its LockIndex, members."""

    def __init__(self):
        self.sessions: Dict[str, bool] = {}
        self.leader_value: Optional[str] = None
        self.leader_session: Optional[str] = None
        self.lock_index = 0
        self.members: Dict[str, MemberState] = {}
        self.kv: Dict[str, Any] = {}          # raw JSON-able values: switchover, history, paused, ...
        self.raw: Dict[str, bytes] = {}       # raw bytes overriding kv (hostile values)
        self.down = False                     # Consul unreachable
        self.events: List[str] = []
        self._n = 0
        self.index: Optional[int] = None      # the view's index, when a test sets it (default: grows)

    def _check(self):
        if self.down:
            raise PilotError("cannot reach Consul at fake (connection refused or unreachable)")

    # sessions and checks
    def create_session(self, ttl, lock_delay, checks):
        self._check()
        self._n += 1
        sid = f"s{self._n}"
        self.sessions[sid] = True
        return sid

    def renew_session(self, sid):
        self._check()
        return 10 if self.sessions.get(sid) else None

    def invalidate(self, sid):
        self.sessions[sid] = False
        if self.leader_session == sid:
            self.leader_session = None

    def destroy_session(self, sid):
        self._check()
        self.invalidate(sid)

    def register_check(self, *a, **kw):
        self._check()

    def pass_check(self, *a):
        self._check()

    def fail_check(self, *a):
        self._check()
        self.events.append("fail_check")

    def register_service(self, *a, **kw):
        pass

    def deregister_service(self, *a):
        pass

    # the view
    def get_cluster(self) -> ClusterView:
        self._check()
        v = ClusterView(lock_index=self.lock_index, index=self._n if self.index is None else self.index)
        # Leader and members go through the real parsers, as ConsulDCS reads them (raw overrides the value).
        if self.leader_session and self.sessions.get(self.leader_session) and self.leader_value:
            v.leader = parse_leader("leader", self.raw.get("leader", self.leader_value), self.leader_session,
                                    FLAVOR.dialect)
        else:
            v.released = parse_release("leader", self.raw.get("leader", self.leader_value), None)
        for name in self.members:
            m = self.member(name)
            if m is not None:
                v.members.append(m)
        raw = dict({k: __import__("json").dumps(val).encode() for k, val in self.kv.items()}, **self.raw)
        v.request = parse_request("switchover", raw.get("switchover"))
        v.history = parse_history("history", raw.get("history"))
        v.paused = None
        v.reinit = {k[len("reinit/"):]: val for k, val in self.kv.items() if k.startswith("reinit/")}
        v.restart = {k[len("restart/"):]: val for k, val in self.kv.items() if k.startswith("restart/")}
        v.config = self.kv.get("config")
        v.failsafe = failsafe.parse_list(json.loads(raw["failsafe"])) if "failsafe" in raw else None
        # A good one unless a test puts another value there.
        v.latest_snapshot = parse_manifest("snapshots/latest", raw["snapshots/latest"]) \
            if "snapshots/latest" in raw else SNAPSHOT
        return v

    def watch_leader(self, index, wait):
        self._check()

    def get_leader(self):
        return self.get_cluster().leader, self._n

    def get_json(self, rel):
        self._check()
        return self.kv.get(rel)

    def member(self, name):
        m = self.members.get(name)
        if m is None:
            return None
        return parse_member(f"members/{name}", self.raw.get(f"members/{name}", m.to_json()),
                            "live" if m.alive else None, FLAVOR.dialect)

    def acquire_leader(self, sid, info: LeaderInfo) -> bool:
        self._check()
        if not self.sessions.get(sid):
            return False
        if self.leader_session not in (None, sid):
            return False
        if self.leader_session is None:
            self.lock_index += 1
        self.leader_session, self.leader_value = sid, info.to_json()
        self.raw.pop("leader", None)
        self.events.append(f"acquire {info.name}")
        return True

    def release_leader(self, sid, marker=None) -> bool:
        self._check()
        if self.leader_session != sid:
            return False
        self.leader_session = None
        if marker is not None:         # as Consul: the value is written with the release, by the holder only
            self.leader_value = __import__("json").dumps({"name": marker.name,
                                                          "released": dataclasses.asdict(marker)})
        self.events.append("release" + (" marked" if marker is not None else ""))
        return True

    def publish_member(self, sid, m: MemberState) -> None:
        self._check()
        m = dataclasses.replace(m)
        m.alive = bool(sid and self.sessions.get(sid))
        self.members[m.name] = m
        self.raw.pop(f"members/{m.name}", None)

    def append_history(self, rec, keep=50):
        self.kv["history"] = (self.kv.get("history") or []) + [rec]

    def append_journal(self, records, keep=200):
        self._check()
        self.kv["journal"] = ((self.kv.get("journal") or []) + list(records))[-keep:]

    def journal(self):
        return list(self.kv.get("journal") or [])

    def put_json(self, rel, value, cas=None):
        self._check()
        if value is None:
            self.kv.pop(rel, None)
            self.raw.pop(rel, None)
        else:
            self.kv[rel] = value
        return True


def make_node(tmp_path, name: str, dcs: FakeDCS, servers: Dict[str, FakeMySQL], monkeypatch, **env):
    """A Node named `name` whose local mysqld is servers[name] and whose remote() reaches the others."""
    from mysqlpilot import ha
    base = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "HOSTNAME": name,
            "MYSQLPILOT_NODE": name, "MYSQLPILOT_ADVERTISE_HOST": f"h-{name}", "MYSQLPILOT_PORT": "3306",
            "MYSQLPILOT_STATE_DIR": str(tmp_path / name), "MYSQLPILOT_SOCKET": f"/fake/{name}.sock"}
    base.update(env)
    node = ha.Node(config.load(None, env=base), dcs=dcs)

    def server(flavor, host=None, port=None, socket=None, **kw):
        if socket:
            return servers[socket.rsplit("/", 1)[1].split(".")[0]]
        return servers[host[2:]]
    monkeypatch.setattr(ha, "Server", server)
    monkeypatch.setattr("mysqlpilot.candidates.Server", server)
    node.fencer.connect = lambda: servers[name]
    node.fencer.mysqld_running = lambda: servers[name].up
    node.fencer.kill_mysqld = lambda: (setattr(servers[name], "up", False), True)[1]
    return node


def give_session(node, dcs: FakeDCS, lease_from: Optional[float] = None) -> str:
    """What the heartbeat does: a session, and a lease from now."""
    from mysqlpilot.lease import boottime
    sid = dcs.create_session(10, 4, [])
    node.state.update(session=sid)
    node.lease.extend(sid, boottime() if lease_from is None else lease_from)
    return sid
