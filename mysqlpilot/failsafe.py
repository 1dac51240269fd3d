"""Failsafe: riding out a Consul outage on the members' promises. Pure rules here; failsafe_keeper.py
does the I/O (the primary's rounds of requests, the member's answers, the list in Consul).

The proof (docs/timing.md, "Failsafe"):
- The primary writes `<kv_root>/failsafe`: the members it will ask. Only a listed member may take the
  lock (`listed`), so a node that joins while the primary cannot see Consul is never one it forgot;
  unless the writer gave its promises up (released the lock, answers read-only, or withdrew the list).
- A member asked at t (the request's send time on the primary's clock; it arrives later) promises not
  to take the lock until its own arrival time + promise >= t + promise, and keeps that promise even when
  it can see Consul. It refuses while it is taking or holds the lock, is writable, follows another
  primary, cannot reach the primary's mysqld, or sees in Consul another leader or an operator's request.
- When every listed member promised, no node can take the lock before t + promise: the primary may stay
  writable until t + promise - fence_margin and fence by t + promise (lease.extend_failsafe), as a renew
  sent at t allows. One missing answer and the round extends nothing: the lease ends as it would today.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

LIST_KEY = "failsafe"            # {"primary": name, "members": {name: api host:port}, "at": epoch}
CLOCK_SKEW = 30.0                 # a request stamped further than this from our wall clock is refused (replay)


@dataclass(frozen=True)
class Ask:
    """One promise request, as signed and sent."""
    cluster: str
    primary: str                  # the asking primary
    member: str                   # the member asked
    seconds: float                # the promise asked for
    at: float                     # sender's wall clock (replay window only; never used for the promise)

    def body(self) -> bytes:
        return json.dumps({"cluster": self.cluster, "primary": self.primary, "member": self.member,
                           "seconds": self.seconds, "at": self.at}, sort_keys=True).encode()

    @classmethod
    def parse(cls, raw: bytes) -> "Ask":
        d = json.loads(raw.decode())
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        try:
            ask = cls(str(d["cluster"]), str(d["primary"]), str(d["member"]), float(d["seconds"]), float(d["at"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"missing or bad field: {exc}") from None
        if not 0 < ask.seconds <= 600:
            raise ValueError(f"seconds {ask.seconds:g} out of range")
        return ask


def signing_key(cluster: str, secret: str) -> bytes:
    """Every node has the replication password; the key is derived from it (never sent)."""
    return hashlib.sha256(b"mysqlpilot failsafe\0" + cluster.encode() + b"\0" + secret.encode()).digest()


def sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, body), signature or "")


@dataclass(frozen=True)
class MemberFacts:
    """What a member knows when asked: its own state and its last view of Consul."""
    me: str
    cluster: str
    now_wall: float
    claim: bool = False               # it is taking, or took, the lock (state file, see failsafe_keeper)
    writable: Optional[bool] = False  # mysqld's read_only is OFF (None: unknown)
    view_fresh: bool = False          # its last read of Consul is recent (a pass within the last few seconds)
    leader: Optional[str] = None      # the lock holder in that view (None: free)
    request: Optional[str] = None     # a pending switchover/failover's target in that view
    follows: Optional[str] = None     # the primary it last followed (None: never saw one)
    primary_reachable: Optional[bool] = None   # a TCP connect to that primary's mysqld just now (None: not tried)


def grant(ask: Ask, f: MemberFacts) -> Tuple[bool, str]:
    """Should this member promise? (granted, why). Refusing costs the primary its failsafe, never safety."""
    if ask.member != f.me or ask.cluster != f.cluster:
        return False, f"request for {ask.member} in cluster {ask.cluster}, this is {f.me} in {f.cluster}"
    if abs(ask.at - f.now_wall) > CLOCK_SKEW:
        return False, f"request stamped {ask.at - f.now_wall:+.0f}s from this clock (replayed, or clocks apart)"
    if ask.primary == f.me:
        return False, "asked by itself"
    if f.claim:
        return False, "taking or holding the leader lock itself"
    if f.writable is not False:
        return False, "its mysqld is writable" if f.writable else "cannot tell whether its mysqld is read-only"
    if f.view_fresh and f.leader is not None and f.leader != ask.primary:
        return False, f"Consul shows {f.leader} holding the leader lock"
    if f.view_fresh and f.request is not None:
        return False, f"an operator's switchover/failover to {f.request} is pending in Consul"
    if f.follows is not None and f.follows != ask.primary:
        return False, f"follows {f.follows}, not {ask.primary}"
    if f.primary_reachable is not True:
        # Cut off from its replicas (and so, likely, from its clients), it must fence as it would without
        # failsafe, so that the members can elect a primary they reach.
        return False, f"cannot reach {ask.primary}'s mysqld" if f.primary_reachable is False \
            else f"does not know where {ask.primary}'s mysqld is"
    return True, f"promised {ask.primary} not to take the leader lock for {ask.seconds:g}s"


def listed(fs: Optional[Dict[str, Any]], me: str, released_by: Optional[str] = None,
           writer_read_only: Optional[bool] = None) -> Tuple[bool, str]:
    """May `me` take the lock under the failsafe list in Consul? No list (a new cluster, or Consul lost
    its data): yes. Its writer: yes (it asks the others). Anyone, when the writer gave up its promises:
    it released the lock itself (a valid release marker: its mysqld died, or it handed over), or its
    mysqld answered read-only just now (`writer_read_only`): without the lock nothing turns it writable
    again, and the lock is what the taker is about to ask Consul for."""
    if not fs:
        return True, ""
    if fs.get("primary") == me or me in (fs.get("members") or {}) or \
            (released_by is not None and released_by == fs.get("primary")) or writer_read_only is True:
        return True, ""
    return False, (f"not in the failsafe list that primary {fs.get('primary')} wrote: it may be riding out a "
                   "Consul outage on the promises of the members it lists; this node becomes a candidate "
                   "once a primary lists it")


def parse_list(value: Any, index: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """The list key's value, or None when absent or unusable (then nobody is excluded: see `listed`)."""
    if not isinstance(value, dict) or not isinstance(value.get("primary"), str):
        return None
    members = value.get("members")
    if not isinstance(members, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in members.items()):
        return None
    return {"primary": value["primary"], "members": dict(members), "at": value.get("at"), "index": index}


def round_result(answers: Dict[str, Tuple[bool, str]]) -> Tuple[bool, str]:
    """All granted: (True, who). Otherwise (False, the first refusal or silence, named)."""
    bad = sorted((n, why) for n, (ok, why) in answers.items() if not ok)
    if bad:
        return False, "; ".join(f"{n}: {why}" for n, why in bad)
    return True, ", ".join(sorted(answers)) or "no other member is listed"
