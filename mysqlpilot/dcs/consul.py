"""Consul adapter: the only code that talks to Consul.

Keys, all under `<kv_root>/`:
  leader              JSON LeaderInfo, acquired with the primary's session (behavior release); a primary
                      whose mysqld died releases it with a `released` marker (dcs/base.py Release)
  members/<node>      JSON MemberState, acquired with the node's session so readers see liveness
  snapshots/latest    JSON manifest of the newest complete snapshot
  locks/<name>        generic session locks (the snapshot job)
  history             JSON list of failover/switchover records, newest last (CAS-updated)
  paused              {"paused": true, "since", "reason"} while automatic failover is paused
  failsafe            {"primary", "members": {name: api}, "at"}: whom the primary asks for promises (failsafe.py)
  reinit/<node>, restart/<node>
                      an operator's request to that node (mysqlpilot reinit / restart), spent as it starts
  config              the cluster-wide settings (cluster_config.py)
  <other>             small JSON values via get_json/put_json (initialized, switchover)
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Tuple

import consul
import requests

from .. import failsafe, journal
from ..errors import PilotError
from ..model import LeaderInfo, MemberState
from .consul_snapshots import SnapshotKeys
from .base import DCS, REINIT_PREFIX, REQUEST_KEY, RESTART_PREFIX, ClusterView, Release, ServiceCheck, \
    decode_json, parse_history, parse_leader, parse_member, parse_manifest, parse_object, parse_release, parse_request

log = logging.getLogger(__name__)


class ConsulDCS(SnapshotKeys, DCS):
    def __init__(self, host: str, port: int, kv_root: str, node_name: str, scheme: str = "http",
                 token: Optional[str] = None, ca: Optional[str] = None, timeout: float = 5, dialect: str = "",
                 cert: Optional[Tuple[str, str]] = None):
        self.host, self.port = host, int(port)
        self.dialect = dialect           # GTID syntax the parsers accept ("": either)
        self.kv_root = kv_root.strip("/")
        self.node_name = node_name
        self.timeout = timeout
        verify: Any = ca if ca else True
        self.c = consul.Consul(host=host, port=self.port, scheme=scheme, token=token, verify=verify,
                               cert=cert, connections_timeout=timeout)
        # For the node API's metrics: failed requests, and when Consul last answered (epoch seconds).
        self.request_errors = 0
        self.last_answer: Optional[float] = None
        self._stats_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg, timeout: float = 5) -> "ConsulDCS":
        return cls(cfg.consul_host, cfg.consul_port, cfg.kv_root, cfg.node_name, scheme=cfg.consul_scheme,
                   token=cfg.consul_token, ca=cfg.consul_ca, timeout=timeout,
                   cert=(cfg.consul_client_cert, cfg.consul_client_key) if cfg.consul_client_cert else None,
                   dialect="mariadb" if str(cfg.flavor).lower() == "mariadb" else "mysql")

    # ---- plumbing --------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def key(self, rel: str) -> str:
        return f"{self.kv_root}/{rel}"

    def _call(self, what: str, fn, *args, **kw):
        try:
            out = self._translated(what, fn, *args, **kw)
        except consul.NotFound:
            self.last_answer = time.time()       # an answer, not an error
            raise
        except Exception:
            with self._stats_lock:
                self.request_errors += 1
            raise
        self.last_answer = time.time()
        return out

    def _translated(self, what: str, fn, *args, **kw):
        """fn(*args, **kw), its expected failures as one PilotError line that says what to check."""
        try:
            return fn(*args, **kw)
        except consul.ACLPermissionDenied:
            raise PilotError(f"Consul at {self.where} refused the ACL token for {what}; check "
                             "$CONSUL_HTTP_TOKEN and its policy") from None
        except consul.NotFound:
            raise
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                OSError) as exc:
            kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "connection refused or " \
                "unreachable"
            raise PilotError(f"cannot reach Consul at {self.where} ({kind}); check $CONSUL and that the "
                             "agent runs") from None
        except consul.ConsulException as exc:
            msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
            raise PilotError(f"Consul at {self.where} rejected {what}: {msg}") from None

    # ---- sessions --------------------------------------------------------------------------------
    def create_session(self, ttl: float, lock_delay: float, checks: List[str]) -> str:
        # serfHealth: the agent's own node health ends the session too (a dead host, a left agent).
        checks = ["serfHealth"] + [c for c in checks if c != "serfHealth"]
        return self._call("session create", self.c.session.create, name=f"mysqlpilot-{self.node_name}",
                          behavior="release", ttl=int(ttl), lock_delay=float(lock_delay), checks=checks)

    def renew_session(self, sid: str) -> Optional[int]:
        try:
            res = self._call("session renew", self.c.session.renew, sid)
        except consul.NotFound:
            return None
        if not res:
            return None
        ttl = (res.get("TTL") or "0s").rstrip("s")
        try:
            return int(float(ttl))
        except ValueError:
            return 0

    def session_alive(self, sid: str) -> bool:
        _, info = self._call("session info", self.c.session.info, sid)
        return info is not None

    def destroy_session(self, sid: str) -> None:
        self._call("session destroy", self.c.session.destroy, sid)

    # ---- agent checks and services ---------------------------------------------------------------
    def register_check(self, check_id: str, name: str, ttl: float, service_id: Optional[str] = None) -> None:
        self._call("check register", self.c.agent.check.register, name, check=consul.Check.ttl(f"{float(ttl):g}s"),
                   check_id=check_id, service_id=service_id)

    def pass_check(self, check_id: str, note: str = "") -> None:
        self._call(f"check pass {check_id}", self.c.agent.check.ttl_pass, check_id, notes=note[:200] or None)

    def fail_check(self, check_id: str, note: str = "") -> None:
        self._call(f"check fail {check_id}", self.c.agent.check.ttl_fail, check_id, notes=note[:200] or None)

    def register_service(self, name: str, service_id: str, address: str, port: int, tags=(),
                         check: Optional[ServiceCheck] = None) -> None:
        definition = None
        if check is not None:
            definition = {"TTL": f"{check.ttl:g}s"} if check.ttl else {
                "HTTP": check.http, "Interval": f"{check.interval:g}s", "Timeout": f"{check.timeout:g}s"}
            if check.check_id:
                definition["CheckID"] = check.check_id
            if check.deregister_after:
                definition["DeregisterCriticalServiceAfter"] = f"{check.deregister_after:g}s"
        self._call(f"service register {service_id}", self.c.agent.service.register, name,
                   service_id=service_id, address=address, port=int(port), tags=list(tags), check=definition)

    def deregister_service(self, service_id: str) -> None:
        self._call(f"service deregister {service_id}", self.c.agent.service.deregister, service_id)

    def service_nodes(self, name: str, passing_only: bool = False) -> List[Dict[str, Any]]:
        _, nodes = self._call(f"health of {name}", self.c.health.service, name, passing=passing_only)
        out = []
        for n in nodes or []:
            svc = n.get("Service") or {}
            status = "passing"
            for chk in n.get("Checks") or []:
                if chk.get("Status") != "passing":
                    status = chk.get("Status")
            out.append({"id": svc.get("ID"), "address": svc.get("Address") or (n.get("Node") or {}).get("Address"),
                        "port": svc.get("Port"), "status": status, "tags": svc.get("Tags") or []})
        return out

    # ---- leader ----------------------------------------------------------------------------------
    def _leader_from(self, item: Optional[Dict[str, Any]]) -> Optional[LeaderInfo]:
        if not item:
            return None
        return parse_leader(self.key("leader"), item.get("Value"), item.get("Session"), self.dialect)

    def get_leader(self) -> Tuple[Optional[LeaderInfo], int]:
        index, item = self._call("leader read", self.c.kv.get, self.key("leader"), consistency="consistent")
        return self._leader_from(item), int(index or 0)

    def watch_leader(self, index: int, wait: float) -> Tuple[Optional[LeaderInfo], int]:
        new_index, item = self._call("leader watch", self.c.kv.get, self.key("leader"), index=int(index) or None,
                                     wait=f"{max(1, int(wait))}s")
        new_index = int(new_index or 0)
        if new_index < index:
            new_index = 0                    # Consul's index went backwards (e.g. a snapshot restore)
        return self._leader_from(item), new_index

    def acquire_leader(self, sid: str, info: LeaderInfo) -> bool:
        return bool(self._call("leader acquire", self.c.kv.put, self.key("leader"), info.to_json(), acquire=sid))

    update_leader = acquire_leader       # re-acquiring with the holding session just updates the value

    def release_leader(self, sid: str, marker: Optional[Release] = None) -> bool:
        # Consul updates the value only if `sid` holds the lock, in the same raft entry as the release.
        value = json.dumps({"name": marker.name, "released": asdict(marker)}, sort_keys=True) if marker else None
        return bool(self._call("leader release", self.c.kv.put, self.key("leader"), value, release=sid))

    # ---- members ---------------------------------------------------------------------------------
    def publish_member(self, sid: Optional[str], state: MemberState) -> None:
        k = self.key(f"members/{state.name}")
        if sid:
            ok = self._call("member publish", self.c.kv.put, k, state.to_json(), acquire=sid)
            if ok:
                return
        self._call("member publish", self.c.kv.put, k, state.to_json())

    def forget_member(self, name: str) -> None:
        """Delete a member key that no session holds (`mysqlpilot forget`); a held one is left alone."""
        k = self.key(f"members/{name}")
        _, item = self._call("member read", self.c.kv.get, k)
        if item and item.get("Session"):
            raise PilotError(f"{name} has a live Consul session; stop its mysqlpilot first")
        self._call("member delete", self.c.kv.delete, k, cas=item["ModifyIndex"] if item else None)

    def members(self) -> List[MemberState]:
        _, items = self._call("members read", self.c.kv.get, self.key("members/"), recurse=True)
        out = [parse_member(it.get("Key", ""), it.get("Value"), it.get("Session"), self.dialect)
               for it in items or []]
        return [m for m in out if m is not None]

    def member(self, name: str) -> Optional[MemberState]:
        """One member's published state (alive set from its key's Session), or None."""
        _, it = self._call("member read", self.c.kv.get, self.key(f"members/{name}"))
        if not it:
            return None
        return parse_member(self.key(f"members/{name}"), it.get("Value"), it.get("Session"), self.dialect)

    # ---- the whole view, one consistent read --------------------------------------------------------
    def get_cluster(self) -> ClusterView:
        """Leader, members, request, history, pause flag and snapshot pointer from one consistent read
        of the prefix, so every decision of a pass looks at the same moment."""
        index, items = self._call("cluster read", self.c.kv.get, self.kv_root + "/", recurse=True,
                                  consistency="consistent")
        v = ClusterView(index=int(index or 0))
        pre = self.kv_root + "/"
        for it in items or []:
            key = it.get("Key", "")
            rel = key[len(pre):] if key.startswith(pre) else key
            val = it.get("Value")
            if rel == "leader":
                v.leader = parse_leader(key, val, it.get("Session"), self.dialect)
                v.released = parse_release(key, val, it.get("Session"))
                v.lock_index = int(it.get("LockIndex") or 0)
            elif rel.startswith("members/"):
                m = parse_member(key, val, it.get("Session"), self.dialect)
                if m is not None:
                    v.members.append(m)
            elif rel == REQUEST_KEY:
                v.request = parse_request(key, val)
            elif rel == "history":
                v.history = parse_history(key, val)
            elif rel == "paused":
                v.paused = parse_object(key, val)
            elif rel.startswith((REINIT_PREFIX, RESTART_PREFIX)):
                req = parse_object(key, val)
                kind, node = rel.split("/", 1)
                if req is not None:
                    (v.reinit if kind + "/" == REINIT_PREFIX else v.restart)[node] = req
            elif rel == "snapshots/latest":
                v.latest_snapshot = parse_manifest(key, val)
            elif rel == "config":
                v.config = decode_json(key, val)
            elif rel == failsafe.LIST_KEY:
                v.failsafe = failsafe.parse_list(decode_json(key, val), int(it.get("ModifyIndex") or 0))
        return v

    # ---- history and flags -----------------------------------------------------------------------
    def append_history(self, record: Dict[str, Any], keep: int = 50) -> None:
        self._append_list("history", [record], keep, parse_history)

    def append_journal(self, records: List[Dict[str, Any]], keep: int = 200) -> None:
        self._append_list(journal.KEY, records, keep, lambda k, v: journal.parse(decode_json(k, v)))

    def journal(self) -> List[Dict[str, Any]]:
        k = self.key(journal.KEY)
        _, item = self._call("read journal", self.c.kv.get, k, consistency="consistent")
        return journal.parse(decode_json(k, (item or {}).get("Value")))

    def _append_list(self, rel: str, records: List[Dict[str, Any]], keep: int, parse) -> None:
        """CAS-append to a JSON list key, newest last; unreadable entries are dropped."""
        k = self.key(rel)
        for _ in range(50):
            index, item = self._call(f"{rel} read", self.c.kv.get, k, consistency="consistent")
            cur = (parse(k, (item or {}).get("Value")) + list(records))[-keep:]
            if self._call(f"{rel} write", self.c.kv.put, k, json.dumps(cur), cas=int(item["ModifyIndex"])
                          if item else 0):
                return
            time.sleep(0.05)
        raise PilotError(f"could not append to {k} in Consul at {self.where}: too much contention")

    def history(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        _, item = self._call("read history", self.c.kv.get, self.key("history"), consistency="consistent")
        h = parse_history(self.key("history"), (item or {}).get("Value"))
        return h[-limit:] if limit else h

    def get_request(self):
        _, item = self._call("read switchover", self.c.kv.get, self.key(REQUEST_KEY), consistency="consistent")
        return parse_request(self.key(REQUEST_KEY), (item or {}).get("Value"))

    def set_paused(self, paused: bool, reason: str = "") -> None:
        if paused:
            self.put_json("paused", {"paused": True, "since": time.time(), "reason": reason})
        else:
            self._call("unpause", self.c.kv.delete, self.key("paused"))

    def get_paused(self) -> Optional[Dict[str, Any]]:
        _, item = self._call("read paused", self.c.kv.get, self.key("paused"), consistency="consistent")
        return parse_object(self.key("paused"), (item or {}).get("Value"))

    def _decode(self, item: Optional[Dict[str, Any]]) -> Any:
        if not item:
            return None
        return decode_json(item.get("Key", ""), item.get("Value"))

    def get_json(self, rel: str) -> Any:
        return self.get_json_indexed(rel)[0]

    def get_json_indexed(self, rel: str) -> Tuple[Any, int]:
        """(value, its ModifyIndex; 0 when absent): for a check-and-set write."""
        _, item = self._call(f"read {rel}", self.c.kv.get, self.key(rel), consistency="consistent")
        return self._decode(item), int((item or {}).get("ModifyIndex") or 0)

    def put_json(self, rel: str, value: Any, cas: Optional[int] = None) -> bool:
        if value is None:
            return bool(self._call(f"delete {rel}", self.c.kv.delete, self.key(rel), cas=cas))
        kw = {"cas": cas} if cas is not None else {}
        return bool(self._call(f"write {rel}", self.c.kv.put, self.key(rel), json.dumps(value), **kw))
