"""Failsafe I/O (rules and proof: failsafe.py). Three parts, one per side:
- `FailsafeList`: the primary writes the members it will ask to Consul, and remembers whom to ask.
- `Asker`: the primary's thread. While its renews fail, it asks every listed member for a promise each
  heartbeat, and a full round extends the writes' cover (lease.extend_failsafe).
- `PromiseDesk`: a member's answer to POST /failsafe on its node API, and the claim that makes taking the
  lock and promising exclusive (both under the state file's lock).
"""
from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from . import candidates, failsafe, journal
from .errors import PilotError
from .failsafe import Ask, MemberFacts
from .lease import WRITER, boottime

log = logging.getLogger(__name__)

ASK_LIST = "failsafe_ask"        # state: {name: api} this node, as primary, must ask (what it last wrote, or more)
PROMISE = "promise"              # state: {"to": primary, "until": boot-time}: this member keeps off the lock
CLAIM = "lock_claim"             # state: boot-time when this node began taking the lock
VIEW_FRESH = 5.0                 # a member's last read of Consul counts as current this long
SIGNATURE = "X-Mysqlpilot-Signature"
# Member APIs are on the cluster's own network: never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
REACH_TIMEOUT = 0.2              # a member's TCP connect to the primary's mysqld (well inside the request's timeout)


@dataclass(frozen=True)
class ConsulSeen:
    """What the last HA pass saw, which a promise request is judged against (PromiseDesk.facts)."""
    at: float                        # boot-time clock of the pass
    leader: Optional[str]            # the lock holder (None: free)
    request: Optional[str]           # a pending switchover/failover's target
    read_only: Optional[bool]        # this node's mysqld


def promise_of(state: Dict) -> Tuple[str, float]:
    """(the primary this member promised, seconds the promise still runs; <= 0: none) from a state dict."""
    p = state.get(PROMISE)
    if not isinstance(p, dict) or not isinstance(p.get("until"), (int, float)):
        return "", -1.0
    return str(p.get("to") or ""), float(p["until"]) - boottime()


class FailsafeList:
    def __init__(self, node):
        self.n = node

    def publish(self, view) -> None:
        if not self.n.cfg.failsafe:
            return
        """On every primary pass: list the live members (each may take the lock after us). The state file
        holds the union of the old and the new list until Consul has the new one: whom we ask must always
        include whom Consul lets take the lock."""
        me = self.n.cfg.node_name
        want = {m.name: m.api for m in view.members if m.alive and m.name != me}
        cur = view.failsafe
        asked = self.n.state.get(ASK_LIST)
        if cur is not None and cur.get("primary") == me and cur.get("members") == want:
            if asked != want:
                self.n.state.update(**{ASK_LIST: want})
            return
        if isinstance(asked, dict):
            self.n.state.update(**{ASK_LIST: {**asked, **want}})
        else:
            self.n.state.update(**{ASK_LIST: want})
        try:
            if self.n.dcs.put_json(failsafe.LIST_KEY, {"primary": me, "members": want, "at": time.time()}):
                self.n.state.update(**{ASK_LIST: want})
                log.info("failsafe list: %s", ", ".join(f"{k} ({v or 'no API'})" for k, v in sorted(want.items()))
                         or "no other member")
        except PilotError as exc:
            log.info("failsafe list not written (%s); asking the old and new members both", exc)


    def withdraw(self, seen) -> None:
        """The list's writer, read-only and without the lock, withdraws its list: it rides on no promises
        (nothing turns it writable again but the lock), so the list keeps nobody off the lock any more,
        and an unlisted node may be the only one that holds every transaction. A CAS delete: a newer
        primary's list stays."""
        fs, o = seen.view.failsafe, seen.o
        if not fs or fs.get("primary") != self.n.cfg.node_name or o.leader is not None or o.read_only is not True:
            return
        try:
            if self.n.dcs.put_json(failsafe.LIST_KEY, None, cas=fs.get("index")):
                log.info("failsafe list withdrawn: this node wrote it as primary and is read-only now")
        except PilotError as exc:
            log.info("failsafe list not withdrawn (%s); the next pass tries again", exc)


class Asker(threading.Thread):
    """The primary's side: a round of promise requests whenever the last renew is late."""

    def __init__(self, node):
        super().__init__(name="failsafe", daemon=True)
        self.n = node
        self.t = node.timing
        self.key = failsafe.signing_key(node.cfg.cluster, node.cfg.repl_password or "")
        self._stop_ev = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="failsafe-ask")
        self.active_since: Optional[float] = None

    def run(self) -> None:
        while not self._stop_ev.wait(self.t.heartbeat / 2):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the lease ends on its own if this thread fails
                log.error("failsafe: %s", exc)

    def stop(self) -> None:
        self._stop_ev.set()
        self._pool.shutdown(wait=False)

    def due(self) -> Optional[str]:
        """The writer session, when a round is due: mysqld's writes belong to it, they are still covered,
        and its last successful renew was sent failsafe_after ago or more."""
        d = self.n.state.read()
        writer = d.get(WRITER)
        if not isinstance(writer, str) or not writer or d.get("stopping"):
            return None
        lease = self.n.lease
        if lease.writer_view(0.0)[0] <= 0:
            return None            # nothing left to extend: the watchdog fences
        if lease.left(writer) > self.t.lease - self.t.failsafe_after:
            return None            # renews arrive: Consul covers the writes
        if self.n.fencer.last_seen_writable is False:
            return None            # read-only already (fenced, handing over): nothing to keep
        return writer

    def tick(self) -> Optional[bool]:
        writer = self.due()
        if writer is None:
            if self.active_since is not None and self.n.lease.failsafe_left() <= 0:
                took = boottime() - self.active_since
                why = ("the session's renews cover the writes again" if self.n.lease.left_for_writer() > 0
                       else "nothing left to cover")
                log.warning("FAILSAFE over after %.1fs: %s", took, why)
                journal.record(self.n.state, journal.event("failsafe", self.n.cfg.node_name, f"over: {why}",
                                                           durations={"active": round(took, 2)}))
                self.active_since = None
                self.n._said.pop("failsafe", None)
            return None
        asked = self.n.state.get(ASK_LIST)
        if not isinstance(asked, dict):
            self.n.say_once("failsafe", "FAILSAFE unavailable: Consul does not answer and this primary has not "
                                        "written a failsafe list yet; the lease ends and it fences as usual")
            return False
        sent = boottime()
        answers = self.ask_all(asked)
        ok, who = failsafe.round_result(answers)
        if not ok:
            self.n.say_once("failsafe", f"FAILSAFE refused: {who}; the lease ends and this node fences unless "
                                        "Consul answers first")
            return False
        if not self.n.lease.extend_failsafe(writer, sent, sorted(asked)):
            return False
        if self.active_since is None:
            self.active_since = sent
            self.n.events.count("failsafe_stretches")
            log.warning("FAILSAFE: Consul does not renew the session; staying primary on the promises of %s", who)
            journal.record(self.n.state, journal.event("failsafe", self.n.cfg.node_name,
                                                       "Consul does not renew the session", promised_by=who))
        self.n._said.pop("failsafe", None)
        return True

    def ask_all(self, asked: Dict[str, str]) -> Dict[str, Tuple[bool, str]]:
        futs = {name: self._pool.submit(self.ask, name, api) for name, api in asked.items()}
        out = {}
        for name, f in futs.items():
            try:
                out[name] = f.result(timeout=self.t.promise_timeout + 0.5)
            except Exception as exc:  # noqa: BLE001 - a member that cannot answer is a refusal
                out[name] = (False, f"no answer ({type(exc).__name__})")
        return out

    def ask(self, name: str, api: str) -> Tuple[bool, str]:
        if not api:
            return False, "has no node API address (api_port 0?)"
        ask = Ask(self.n.cfg.cluster, self.n.cfg.node_name, name, self.t.promise, time.time())
        body = ask.body()
        req = urllib.request.Request(f"http://{api}/failsafe", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              SIGNATURE: failsafe.sign(self.key, body)})
        try:
            with _OPENER.open(req, timeout=self.t.promise_timeout) as resp:
                text = resp.read(4096).decode(errors="replace").strip()
                return resp.status == 200, text
        except urllib.error.HTTPError as exc:
            return False, exc.read(4096).decode(errors="replace").strip() or f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return False, f"unreachable at {api} ({getattr(exc, 'reason', exc)})"


class PromiseDesk:
    """The member's side: answers a promise request; and the claim the HA loop takes before the lock."""

    def __init__(self, node):
        self.n = node
        self.key = failsafe.signing_key(node.cfg.cluster, node.cfg.repl_password or "")
        self.enabled = bool(node.cfg.failsafe)

    def facts(self) -> MemberFacts:
        n = self.n
        seen: Optional[ConsulSeen] = getattr(n, "consul_seen", None)
        fresh = seen is not None and boottime() - seen.at < VIEW_FRESH
        ro = seen.read_only if seen is not None else None
        last = n.last_leader
        reach = self.reach(last.host, last.port) if last is not None and last.host and last.port else None
        return MemberFacts(me=n.cfg.node_name, cluster=n.cfg.cluster, now_wall=time.time(),
                           writable=None if ro is None else not ro, view_fresh=fresh,
                           leader=seen.leader if seen else None, request=seen.request if seen else None,
                           follows=last.name if last is not None else None, primary_reachable=reach)

    @staticmethod
    def reach(host: str, port: int) -> bool:
        """Does the primary's mysqld accept a TCP connection from here? (Nothing is sent.)"""
        return candidates.answers(host, port, timeout=REACH_TIMEOUT)

    def answer(self, body: bytes, signature: str) -> Tuple[int, str]:
        if not self.enabled:
            return 403, "failsafe request refused: failsafe is off on this node (config key failsafe)"
        if not verify_body(self.key, body, signature):
            return 403, "failsafe request refused: bad or missing signature (is repl_password the same on every node?)"
        try:
            ask = Ask.parse(body)
        except ValueError as exc:
            return 400, f"failsafe request refused: {exc}"
        ok, why = failsafe.grant(ask, self.facts())
        if ok:
            ok, why = self.promise(ask, why)
        if ok:
            log.debug("failsafe: %s", why)
            return 200, why
        self.n.say_once("promise", f"failsafe: refused {ask.primary}'s request: {why}")
        return 409, why

    def promise(self, ask: Ask, why: str) -> Tuple[bool, str]:
        """Record the promise (boot-time clock, from now: the request was sent earlier) unless a claim
        exists: one step under the state file's lock, which a claim takes too."""
        res = [(False, "")]

        def put(d):
            if d.get(CLAIM) is not None:
                res[0] = (False, "taking or holding the leader lock itself")
                return
            cur = d.get(PROMISE) if isinstance(d.get(PROMISE), dict) else {}
            until = boottime() + ask.seconds
            if isinstance(cur.get("until"), (int, float)):
                until = max(until, float(cur["until"]))
            d[PROMISE] = {"to": ask.primary, "until": until}
            res[0] = (True, why)
        self.n.state.change(put)
        return res[0]

    def claim(self) -> Tuple[bool, str]:
        """Before acquiring the lock: no promise may be running, and none is given from now on until the
        claim is dropped (lock not acquired) or another node is seen holding the lock."""
        res = [(False, "")]

        def put(d):
            to, left = promise_of(d)
            if left > 0:
                res[0] = (False, f"promised {to} not to take the leader lock for {left:.1f}s more")
                return
            d[CLAIM] = boottime()
            res[0] = (True, "")
        self.n.state.change(put)
        return res[0]

    def drop_claim(self) -> None:
        if self.n.state.get(CLAIM) is not None:
            self.n.state.update(**{CLAIM: None})

    def may_take(self, view, released_by: Optional[str]) -> Tuple[bool, str]:
        """failsafe.listed for this node, asking the list's writer for its read_only only when this node
        is not listed (the one case it decides). Failsafe off: no list rule."""
        fs = view.failsafe if self.n.cfg.failsafe else None
        me = self.n.cfg.node_name
        ok, why = failsafe.listed(fs, me, released_by)
        if ok:
            return ok, why
        return failsafe.listed(fs, me, released_by, self.writer_read_only(view, fs["primary"]))

    def writer_read_only(self, view, writer: str) -> Optional[bool]:
        """The list writer's read_only, read from its mysqld (None: unknown). Only a member with a live
        session is asked: a key without one names whatever host its last writer chose, and root's
        password must not go there (candidates.py)."""
        m = view.member(writer)
        if m is None or not m.alive or not (m.host and m.port):
            return None
        srv = None
        try:
            srv = self.n.remote(m.host, m.port)
            return srv.read_only()
        except PilotError:
            return None
        finally:
            if srv is not None:
                srv.close()



def verify_body(key: bytes, body: bytes, signature: str) -> bool:
    return bool(signature) and failsafe.verify(key, body, signature)

