"""A simulated Consul: the semantics the protocol relies on, on the virtual clock.

- Sessions (behavior release) linked to TTL checks: a check not passed within its TTL goes critical and
  ends the session at once; a session not renewed within its TTL ends too; either may also end at any
  moment by a fault (a Consul blip), which is what "invalidated up to the TTL after the last renew" allows.
- Lock-delay: after a session ends (not after a release), its locks cannot be taken by another session
  for the session's lock_delay. Kept in memory only: a server restart forgets it.
- KV with LockIndex (per key, back to 0 when the key is deleted) and one Consul index (ModifyIndex of
  every write); CAS writes; a data loss empties everything and starts the index over.
- A session's own TTL: the server arms it at 2 x TTL, so one not renewed ends anywhere from TTL to 2 x TTL
  after the last renew (drawn per session).
- The network (net.py): a node cut from Consul gets errors after its client's timeout; a lossy or slow
  link makes a call fail before it reaches Consul, or apply and lose its answer, or take its time.
- An agent restart (one node's): its TTL checks come back critical (their sessions end at once) and
  its calls fail until it is up; a server restart forgets lock-delay; data loss forgets everything.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import random
from typing import Any, Dict, List, Optional

from mysqlpilot import failsafe, journal
from mysqlpilot.dcs.base import DCS, ClusterView, decode_json, parse_history, parse_leader, parse_manifest, \
    parse_member, parse_object, parse_release, parse_request
from mysqlpilot.errors import PilotError
from mysqlpilot.model import LeaderInfo, MemberState, SnapshotManifest

from . import hooks, net

DIALECT = "mysql"
SNAPSHOT = SnapshotManifest(id="snap", created=1.0, source="sim", object_key="snapshots/snap/data", bytes=1,
                            raw_bytes=1, sha256="0" * 64, flavor="mysql", version="8.0", gtid="")


@dataclasses.dataclass
class Entry:
    value: Any
    session: Optional[str] = None
    lock_index: int = 0
    modify: int = 0


@dataclasses.dataclass
class Session:
    node: str
    ttl: float
    lock_delay: float
    checks: List[str]
    renewed: float
    grace: float = 1.0                 # it ends grace x ttl after the last renew (1 to 2)


class SimConsul:
    def __init__(self, world):
        self.w = world
        self.index = 1
        self.kv: Dict[str, Entry] = {}
        self.sessions: Dict[str, Session] = {}
        self.checks: Dict[str, Dict[str, Any]] = {}     # check id -> {"ttl", "passed", "critical"}
        self.lock_delay_until: Dict[str, float] = {}
        self.session_ended: Dict[str, float] = {}       # node -> when a session of its last ended
        self.parsed: Dict[Any, Any] = {}
        self._n = 0
        self.kv["snapshots/latest"] = Entry(SNAPSHOT.to_json(), modify=1)   # no snapshot job in the sim

    # ---- time-driven expiry ----------------------------------------------------------------------
    def tick(self) -> None:
        now = self.w.now
        for cid, c in self.checks.items():
            if not c["critical"] and now > c["passed"] + c["ttl"]:
                c["critical"] = True
        for sid, s in list(self.sessions.items()):
            if now > s.renewed + s.ttl * s.grace or any(self.checks.get(c, {}).get("critical", True) for c in s.checks):
                self.invalidate(sid, "ttl or check")

    def _bump(self) -> int:
        self.index += 1
        return self.index

    def invalidate(self, sid: str, why: str) -> None:
        s = self.sessions.pop(sid, None)
        if s is None:
            return
        self.session_ended[s.node] = self.w.now
        for key, e in self.kv.items():
            if e.session == sid:
                e.session, e.modify = None, self._bump()
                if s.lock_delay > 0:
                    self.lock_delay_until[key] = self.w.now + s.lock_delay
                if key == "leader":
                    self.w.leader_changed()
        self.w.note(f"consul: session {sid} of {s.node} ended ({why})")

    # ---- faults ----------------------------------------------------------------------------------
    def restart(self) -> None:
        self.lock_delay_until.clear()

    def agent_restart(self, node: str) -> None:
        """The node's agent restarts: its checks come back critical, which ends their sessions at once."""
        for cid, chk in self.checks.items():
            if chk.get("node") == node:
                chk["critical"] = True
        self.tick()

    def data_loss(self) -> None:
        self.kv, self.sessions, self.lock_delay_until = {}, {}, {}
        self.index = 1
        self.kv["snapshots/latest"] = Entry(SNAPSHOT.to_json(), modify=1)
        self.w.leader_changed()

    def delete_key(self, key: str) -> None:
        if self.kv.pop(key, None) is not None:
            self._bump()
            if key == "leader":
                self.w.leader_changed()

    # ---- primitives -----------------------------------------------------------------------------
    def put(self, key: str, value: Any, acquire: Optional[str] = None, release: Optional[str] = None,
            cas: Optional[int] = None) -> bool:
        e = self.kv.get(key)
        if cas is not None and (e.modify if e else 0) != cas:
            return False
        if acquire is not None:
            if acquire not in self.sessions:
                raise PilotError(f"invalid session {acquire}")
            if e is not None and e.session not in (None, acquire):
                return False
            if (e is None or e.session is None) and self.w.now < self.lock_delay_until.get(key, -1.0):
                return False
            if e is None:
                e = self.kv[key] = Entry(value)
            if e.session != acquire:
                e.lock_index += 1
                if key == "leader":
                    self.w.inv.lock_taken(self.sessions[acquire].node)
            e.session, e.value, e.modify = acquire, value, self._bump()
        elif release is not None:
            if e is None or e.session != release:
                return False
            e.session = None
            if value is not None:
                e.value = value
            e.modify = self._bump()
        else:
            if e is None:
                e = self.kv[key] = Entry(value)
            e.value, e.modify = value, self._bump()
        if key == "leader":
            self.w.leader_changed()
        return True


def _leader(key, value, session):
    return parse_leader(key, value, session, DIALECT)


def _member(key, value, session):
    return parse_member(key, value, session, DIALECT)


def _history(key, value, session):
    return parse_history(key, value)


def _manifest(key, value, session):
    return parse_manifest(key, value)


class SimAgent(DCS):
    """One node's view of Consul (its local agent): the DCS interface over SimConsul."""

    TIMEOUT = 1.0          # what a call to an agent that cannot reach the servers costs before it fails

    def __init__(self, consul: SimConsul, node: str):
        self.c, self.node = consul, node
        self.net = net.of(consul.w)
        self.rng = random.Random(f"{consul.w.seed}-{node}-consul")
        self._lose_answer = False

    def _ok(self) -> SimConsul:
        """Each call: through the network first (cut, lost, slow), then Consul's clock."""
        nt, w = self.net, self.c.w
        hooks.of(w).call()
        if self.node in nt.consul_cut:
            w.sleep(self.TIMEOUT)
            raise PilotError(f"Consul: cannot reach the servers from {self.node} (simulated partition)")
        self._lose_answer = False
        if nt.delay.get(self.node):
            w.sleep(nt.delay[self.node])
        lost, answer_lost = nt.loss.get(self.node, (0.0, 0.0))
        if lost and self.rng.random() < lost:
            raise PilotError("Consul: request failed (simulated loss)")
        self._lose_answer = bool(answer_lost) and self.rng.random() < answer_lost
        self.c.tick()
        return self.c

    def _answer(self, value):
        """A write's answer: lost on the way back (its effect stays) when the call drew so."""
        if self._lose_answer:
            self._lose_answer = False
            raise PilotError("Consul: no answer (simulated loss; the request may have applied)")
        return value

    # ---- the view ------------------------------------------------------------------------------
    def _parsed(self, key: str, e: Entry, fn):
        """The real parsers, memoised on the exact value and session (a copy each time: callers may
        change what they get)."""
        ck = (key, e.value, e.session, fn)
        cache = self.c.parsed
        if ck not in cache:
            if len(cache) > 2000:
                cache.clear()
            cache[ck] = fn(key, e.value, e.session)
        got = cache[ck]
        return [dict(x) for x in got] if isinstance(got, list) else copy.copy(got)

    def get_cluster(self) -> ClusterView:
        c = self._ok()
        v = ClusterView(index=c.index)
        for key, e in sorted(c.kv.items()):
            if key == "leader":
                v.leader = self._parsed(key, e, _leader)
                v.released = self._parsed(key, e, parse_release)
                v.lock_index = e.lock_index
            elif key.startswith("members/"):
                m = self._parsed(key, e, _member)
                if m is not None:
                    v.members.append(m)
            elif key == "switchover":
                v.request = parse_request(key, e.value)
            elif key == "history":
                v.history = self._parsed(key, e, _history)
            elif key == "paused":
                v.paused = parse_object(key, e.value)
            elif key == "snapshots/latest":
                v.latest_snapshot = self._parsed(key, e, _manifest)
            elif key == failsafe.LIST_KEY:
                v.failsafe = failsafe.parse_list(decode_json(key, e.value), e.modify)
        return v

    def watch_leader(self, index: int, wait: float):
        raise NotImplementedError("the scheduler models the watch (World.leader_changed)")

    def get_leader(self):
        c = self._ok()
        e = c.kv.get("leader")
        return (parse_leader("leader", e.value, e.session, DIALECT) if e else None), c.index

    def member(self, name: str) -> Optional[MemberState]:
        e = self._ok().kv.get(f"members/{name}")
        return self._parsed(f"members/{name}", e, _member) if e else None

    # ---- sessions and checks ---------------------------------------------------------------------
    def create_session(self, ttl, lock_delay, checks) -> str:
        c = self._ok()
        for cid in checks:
            if cid not in c.checks or c.checks[cid]["critical"]:
                raise PilotError(f"Consul refused the session: check {cid} is critical")
        c._n += 1
        sid = f"{self.node}-s{c._n}"
        c.sessions[sid] = Session(self.node, float(ttl), float(lock_delay), list(checks), c.w.now,
                                  self.rng.uniform(1.0, 2.0))
        return self._answer(sid)

    def renew_session(self, sid):
        c = self._ok()
        s = c.sessions.get(sid)
        if s is None:
            return None
        s.renewed = c.w.now
        return self._answer(int(s.ttl))

    def destroy_session(self, sid) -> None:
        self._ok().invalidate(sid, "destroyed")
        self._answer(None)

    def register_check(self, check_id, name, ttl, service_id=None) -> None:
        c = self._ok()
        c.checks[check_id] = {"ttl": float(ttl), "passed": c.w.now, "critical": True, "node": self.node}
        self._answer(None)

    def pass_check(self, check_id, note="") -> None:
        c = self._ok()
        chk = c.checks.get(check_id)
        if chk is None:
            raise PilotError(f"Consul: unknown check {check_id}")
        chk["passed"], chk["critical"] = c.w.now, False
        self._answer(None)

    def fail_check(self, check_id, note="") -> None:
        c = self._ok()
        chk = c.checks.get(check_id)
        if chk is not None:
            chk["critical"] = True
        c.tick()

    # ---- the lock ------------------------------------------------------------------------------
    def acquire_leader(self, sid, info: LeaderInfo) -> bool:
        return self._answer(self._ok().put("leader", info.to_json(), acquire=sid))

    def release_leader(self, sid, marker=None) -> bool:
        value = json.dumps({"name": marker.name, "released": dataclasses.asdict(marker)}, sort_keys=True) \
            if marker else None
        return self._answer(self._ok().put("leader", value, release=sid))

    def forget_member(self, name) -> None:
        c = self._ok()
        c.kv.pop(f"members/{name}", None)
        self._answer(None)

    # ---- services: not modelled (clients pick writable servers directly) ---------------------------
    def register_service(self, *a, **kw) -> None:
        self._ok()

    def deregister_service(self, service_id) -> None:
        self._ok()

    # ---- values ----------------------------------------------------------------------------------
    def publish_member(self, sid, state: MemberState) -> None:
        c = self._ok()
        k = f"members/{state.name}"
        if not (sid and sid in c.sessions and c.put(k, state.to_json(), acquire=sid)):
            c.put(k, state.to_json())
        self._answer(None)

    def append_history(self, record, keep=50) -> None:
        c = self._ok()
        e = c.kv.get("history")
        cur = parse_history("history", e.value if e else None)
        c.put("history", json.dumps((cur + [record])[-keep:]))
        self._answer(None)

    def append_journal(self, records, keep=200) -> None:
        c = self._ok()
        e = c.kv.get("journal")
        cur = journal.parse(decode_json("journal", e.value) if e else None)
        c.put("journal", json.dumps((cur + list(records))[-keep:]))
        self._answer(None)

    def journal(self):
        e = self._ok().kv.get("journal")
        return journal.parse(decode_json("journal", e.value) if e else None)

    def get_json(self, rel):
        e = self._ok().kv.get(rel)
        return decode_json(rel, e.value) if e else None

    def put_json(self, rel, value, cas=None) -> bool:
        c = self._ok()
        if value is None:
            ok = cas is None or (c.kv[rel].modify if rel in c.kv else 0) == cas
            if ok:
                c.delete_key(rel)
            return self._answer(ok)
        return self._answer(c.put(rel, json.dumps(value), cas=cas))
