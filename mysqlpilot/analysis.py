"""The state machine: pure decisions over plain dataclasses (orchestrator's "analysis" half).

Nothing here does I/O or reads the clock; callers pass `now`. `ha.py` observes, calls these, and acts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .model import LeaderInfo, MemberState

# Actions a pass of the HA loop can take.
FENCE = "fence"              # make mysqld read-only and kill client connections
TAKE_LOCK = "take_lock"      # try to acquire the leader key, then promote
PROMOTE = "promote"          # we hold the lock but are not writable yet: finish promotion
STAY_PRIMARY = "stay_primary"
FOLLOW = "follow"            # (re)point replication at the leader
REBUILD = "rebuild"          # errant or broken beyond repair: move datadir aside, restore snapshot
WAIT = "wait"                # nothing to do safely now; `reason` says why
HAND_OVER = "hand_over"      # switchover requested from this primary
RESTART = "restart"          # an operator asked this replica to restart its mysqld (mysqlpilot restart)
RETAKE = "retake"            # writable on the members' promises (failsafe), the key free: take it back


@dataclass
class Policy:
    session_ttl: int = 10
    check_ttl: float = 2.0
    lock_delay: float = 2.0
    fence_margin: float = 0.5
    failover_grace: float = 3.0
    max_lag_on_failover: float = 30.0
    durability: str = "async"
    failover_budget: int = 3
    failover_window: int = 3600
    failover_rearm: int = 1800

    @classmethod
    def from_config(cls, cfg) -> "Policy":
        return cls(session_ttl=cfg.session_ttl, check_ttl=cfg.check_ttl, lock_delay=cfg.lock_delay,
                   fence_margin=cfg.fence_margin,
                   failover_grace=cfg.failover_grace, max_lag_on_failover=cfg.max_lag_on_failover,
                   durability=cfg.durability, failover_budget=cfg.failover_budget,
                   failover_window=cfg.failover_window, failover_rearm=cfg.failover_rearm)

    @property
    def lease(self) -> float:
        """timing.Timing.lease: seconds after a successful renew was sent that this node may be writable."""
        from .timing import Timing
        return Timing(self.lock_delay, self.fence_margin).lease


@dataclass
class Candidate:
    """A member as seen at failover time (fresh numbers, read from its mysqld directly if possible)."""
    name: str
    reachable: bool
    healthy: bool
    nofailover: bool = False
    priority: int = 100
    lag_seconds: Optional[float] = None
    gtid_received: str = ""          # everything it has, applied or still in the relay log
    gtid_count: int = 0              # size of gtid_received, for ordering
    contains: Dict[str, bool] = field(default_factory=dict)   # other name -> received ⊇ other's
    was_primary: bool = False        # the primary whose loss started this election
    caught_up: bool = True           # it has applied everything it received (no relay backlog)
    sql_running: bool = True         # its SQL thread runs (True when it is not a replica)
    has_session: bool = True         # it can take the lock; without one it is not asked (nor reachable)
    snapshotting: bool = False       # taking the cluster's snapshot: last among equals, never stalls a failover


@dataclass
class Ranked:
    name: str
    eligible: bool
    why: str
    rank: int = -1                   # 0 = best; -1 if not eligible


def _ineligible(c: Candidate, policy: Policy, must_contain: str,
                contains_fn: Optional[Callable[[str, str], bool]]) -> str:
    if not c.has_session:
        return "no live Consul session, not asked (its mysqlpilot is not running?)"
    if not c.reachable:
        return "unreachable"
    if not c.healthy:
        return "unhealthy"
    if c.nofailover:
        return "tagged nofailover"
    if not c.caught_up and not c.sql_running:
        # It would never apply what it holds: promoting it would wait forever, or lose that backlog.
        return "SQL thread stopped with received transactions unapplied"
    if policy.durability != "semi-sync":
        # Async: max_lag_on_failover bounds what a promotion may wait for. An unknown lag (NULL: the
        # source is gone) is not zero, unless nothing is left to apply.
        if c.lag_seconds is None and not c.caught_up:
            return "lag unknown with a relay backlog (its source is gone)"
        if c.lag_seconds is not None and c.lag_seconds > policy.max_lag_on_failover:
            return f"lag {c.lag_seconds:.0f}s exceeds max_lag_on_failover {policy.max_lag_on_failover:.0f}s"
    if must_contain and contains_fn is not None and not contains_fn(c.gtid_received, must_contain):
        return f"lacks transactions of the old primary (it had {must_contain})"
    return ""


def rank_candidates(cands: Sequence[Candidate], policy: Policy,
                    must_contain: str = "", contains_fn: Optional[Callable[[str, str], bool]] = None,
                    strict: bool = True) -> List[Ranked]:
    """Order failover candidates.

    What must survive is the union of what every reachable member received, eligible or not (a lagging or
    nofailover replica may hold the only copy of an acknowledged commit). With `strict`, a candidate that
    lacks anything another reachable member holds cannot win: the election waits until that member catches
    up or becomes eligible itself. One that does not contain `must_contain` (with semi-sync: what the old
    primary last published) is not eligible either.

    Among those left: caught up first (promotes at once), then the failed primary last (whatever made it
    fail may do so again), then priority, then name. Without `strict` (`failover --force`), candidates
    that lack something are ranked after those that do not, by how many others hold more.
    """
    out: Dict[str, Ranked] = {}
    eligible: List[Candidate] = []
    reachable = [c for c in cands if c.reachable]
    for c in cands:
        why = _ineligible(c, policy, must_contain, contains_fn)
        lacks = [o.name for o in reachable if o.name != c.name and not c.contains.get(o.name, True)]
        if not why and strict and lacks:
            why = f"lacks transactions that {', '.join(lacks)} hold{'s' if len(lacks) == 1 else ''}"
        if why:
            out[c.name] = Ranked(c.name, False, why)
        else:
            eligible.append(c)

    def behind(c: Candidate) -> List[str]:
        return [o.name for o in eligible if o.name != c.name and not c.contains.get(o.name, True)]

    ordered = sorted(eligible, key=lambda c: (len(behind(c)), -c.gtid_count, c.snapshotting, not c.caught_up,
                                              c.was_primary, -c.priority, c.name))
    for i, c in enumerate(ordered):
        if i == 0:
            why = "holds every transaction any reachable member has" if strict else "most advanced"
            why += f", priority {c.priority}" if len(ordered) > 1 else ""
        elif behind(c):
            why = f"behind {', '.join(behind(c))}"
        elif c.snapshotting:
            why = f"as advanced as {ordered[0].name}; a node taking the snapshot goes last among equals"
        elif c.was_primary:
            why = f"as advanced as {ordered[0].name}; the failed primary goes last among equals"
        elif not c.caught_up and ordered[0].caught_up:
            why = f"as advanced as {ordered[0].name}, which has no relay backlog to apply"
        else:
            why = f"as advanced as {ordered[0].name}; loses on priority/name"
        out[c.name] = Ranked(c.name, True, why, rank=i)
    return [out[c.name] for c in sorted(cands, key=lambda c: (out[c.name].rank < 0, out[c.name].rank,
                                                               c.name))]


def my_turn(ranking: Sequence[Ranked], me: str, free_for: float, grace: float) -> Tuple[bool, str]:
    """May `me` try the lock now? The best goes at once; the k-th best after k grace periods."""
    mine = next((r for r in ranking if r.name == me), None)
    if mine is None or not mine.eligible:
        return False, f"not eligible: {mine.why if mine else 'not a candidate'}"
    if mine.rank == 0:
        return True, "best candidate"
    if free_for >= grace * mine.rank:
        best = next(r.name for r in ranking if r.rank == 0)
        return True, f"{best} did not take the lock within {grace * mine.rank:.1f}s"
    return False, f"waiting {grace * mine.rank - free_for:.1f}s for better candidates"


PROMOTION_BACKOFF = 30.0          # a node whose promotion failed stands aside this long


def takeover_guard(failed_ago: Optional[float], history: Sequence[dict], now: float, had_leader: bool,
                   policy: "Policy") -> Tuple[bool, str]:
    """Anti-flapping around an automatic takeover: the promotion back-off, then the failover budget.

    failed_ago: seconds since this node's last failed promotion, if any."""
    if failed_ago is not None and 0 <= failed_ago < PROMOTION_BACKOFF:
        return False, f"my last promotion failed {failed_ago:.0f}s ago; standing aside"
    allowed, why = failover_budget(history, now, policy)
    if had_leader and not allowed and not after_clean_stop(history):
        return False, why
    return True, why


REBUILD_LIMIT, REBUILD_WINDOW = 3, 600.0
# SQL errors that mean the replica's rows differ from the primary's, when they stop the same transaction
# again after this many re-points in a row (a restart of the SQL thread does not get past them).
DIVERGED_ERRNOS = {1062: "a duplicate key", 1032: "a row that is not there"}
DIVERGED_REPEATS = 3


def rebuild_guard(times: Sequence[Any], now: float) -> Tuple[bool, str]:
    """Anti-flapping around rebuilds: at most REBUILD_LIMIT in REBUILD_WINDOW seconds."""
    recent = [t for t in times if isinstance(t, (int, float)) and now - t < REBUILD_WINDOW]
    if len(recent) >= REBUILD_LIMIT:
        return False, (f"rebuilt {len(recent)} times in {REBUILD_WINDOW / 60:.0f} minutes; take a fresh snapshot "
                       "on the primary (`mysqlpilot snapshot --force`) and restart this node")
    return True, ""


def takeover_turn(cands: Sequence[Candidate], policy: "Policy", me: str, must_contain: str,
                  contains_fn: Callable[[str, str], bool], grace_clock: float
                  ) -> Tuple[bool, str, List[Ranked]]:
    """Rank the candidates and say whether it is `me`'s turn. With semi-sync, an unreachable live
    member may hold acknowledged commits: nobody is promoted automatically. grace_clock: seconds since
    lock-delay ended."""
    if policy.durability == "semi-sync":
        lost = [c.name for c in cands if not c.reachable and c.has_session]
        if lost:
            return False, (f"semi-sync: replica(s) {', '.join(lost)} unreachable and may hold acknowledged "
                           "commits; not promoting automatically"), []
        unasked = [c.name for c in cands if not c.has_session]
        if unasked:
            return False, (f"semi-sync: {', '.join(unasked)} may hold acknowledged commits but has no live "
                           f"Consul session, so it is not asked; waiting up to {2 * policy.session_ttl}s "
                           "from first sight for it to come back"), []
    ranking = rank_candidates(cands, policy, must_contain, contains_fn)
    ok, why = my_turn(ranking, me, grace_clock, policy.failover_grace)
    return ok, why, ranking


def designated_turn(cands: Sequence[Candidate], policy: "Policy", me: str, must_contain: str,
                    contains_fn: Callable[[str, str], bool], force: bool = False
                    ) -> Tuple[bool, str, List[Ranked]]:
    """May `me`, designated by a switchover or a manual failover, take the lock? Priority does not matter,
    but the data-safety rules do, as for any promotion: it must hold what every reachable member holds,
    and with semi-sync what the old primary last published, with no live member unreachable. `nofailover`
    does not stop a designation. `force` (`failover --force`) waives the data rules on purpose."""
    if force:
        return True, "designated by `failover --force`: the data-safety rules are waived", []
    if policy.durability == "semi-sync":
        lost = [c.name for c in cands if not c.reachable]
        if lost:
            return False, (f"semi-sync: replica(s) {', '.join(lost)} unreachable and may hold acknowledged "
                           "commits the designated node lacks"), []
    ranking = rank_candidates([replace(c, nofailover=False) if c.name == me else c for c in cands], policy,
                              must_contain, contains_fn)
    mine = next((r for r in ranking if r.name == me), None)
    if mine is None or not mine.eligible:
        return False, f"not eligible: {mine.why if mine else 'not a candidate'}", ranking
    return True, "designated by a switchover/failover request", ranking


def after_clean_stop(history: Sequence[dict]) -> bool:
    """The last primary stopped on purpose with nobody to hand over to (pre-stop recorded it): the next
    election is a cold start, not a failover, and spends no failover budget."""
    return bool(history) and history[-1].get("kind") == "shutdown"


def failover_budget(history: Sequence[dict], now: float, policy: Policy) -> Tuple[bool, str]:
    """Anti-flapping: (allowed, reason). Spent once `budget` automatic failovers fell in the window;
    re-arms after `failover_rearm` seconds without one."""
    auto = sorted(h.get("time", 0.0) for h in history if h.get("kind") == "failover")
    recent = [t for t in auto if now - t <= policy.failover_window]
    if len(recent) < policy.failover_budget:
        return True, f"{len(recent)}/{policy.failover_budget} automatic failovers in the last " \
                     f"{policy.failover_window}s"
    last = auto[-1]
    if now - last >= policy.failover_rearm:
        return True, f"budget re-armed after {now - last:.0f}s without a failover"
    return False, (f"failover budget spent: {len(recent)} automatic failovers in {policy.failover_window}s; "
                   f"re-arms {policy.failover_rearm - (now - last):.0f}s after the last one, or run "
                   "`mysqlpilot failover`")


def failover_budget_left(history: Sequence[dict], now: float, policy: Policy) -> int:
    """Automatic failovers failover_budget() would still allow now: what is left in the window, or 1 once a
    spent budget has re-armed (the next failover spends it again)."""
    allowed, _ = failover_budget(history, now, policy)
    if not allowed:
        return 0
    recent = [h for h in history if h.get("kind") == "failover" and now - h.get("time", 0.0) <= policy.failover_window]
    return max(1, policy.failover_budget - len(recent))


@dataclass
class Observation:
    """What one pass of the HA loop saw. Built by ha.py from Consul and the local mysqld."""
    me: str
    now: float
    mysqld_up: bool
    read_only: Optional[bool]
    have_session: bool
    lease_left: float                 # seconds left before this node must be read-only (<=0: expired)
    leader: Optional[LeaderInfo]      # valid only while its Session is set
    i_hold_lock: bool
    replicating_from: Optional[str] = None   # host:port of current source
    replication_ok: bool = False      # both threads running
    replication_errno: int = 0        # last IO errno (1236: source lacks our GTIDs)
    replication_error: str = ""       # its text
    sql_errno: int = 0                # the stopped SQL thread's errno (0: running, or no error)
    sql_error: str = ""               # its text
    sql_stuck: int = 0                # passes in a row it was seen stopped so at the same gtid_executed
    errant: str = ""                  # transactions we have that the leader lacks
    errant_unknown: str = ""          # why the errant check could not run (never follow without it)
    needs_rebuild: str = ""           # reason we cannot be a replica from this datadir
    restart_asked: str = ""           # an operator's restart request for this node (node_requests.py)
    paused: bool = False
    stopping: bool = False            # pre-stop runs: never take the lock
    switchover_to: Optional[str] = None      # the node a request or a hand-off designates
    takeover: Tuple[bool, str] = (False, "")  # may this node take the free lock now, and why (leader None)
    failsafe_left: float = -1.0       # seconds the members' promises still cover this node's writes
    keeps_lease: bool = False         # failsafe on, and the lease of the session mysqld's writes belong to
                                      # still runs, though Consul ended that session (heartbeat.py)
    promised_left: float = -1.0       # seconds this node still keeps the promise it gave a primary
    promised_to: str = ""             # that primary


@dataclass
class Decision:
    action: str
    reason: str
    target: Optional[LeaderInfo] = None


def decide(o: Observation) -> Decision:
    """One pass of the HA state machine."""
    if not o.mysqld_up:
        return Decision(WAIT, "mysqld is not answering")

    if o.i_hold_lock:
        if o.lease_left <= 0 and o.failsafe_left <= 0:
            return Decision(FENCE, "lease expired: session not renewed in time, cannot be sure of the lock")
        if o.switchover_to and o.switchover_to != o.me:
            return Decision(HAND_OVER, f"switchover to {o.switchover_to} requested")
        if o.read_only is not False:
            return Decision(PROMOTE, "holding the leader lock while read-only")
        if o.leader is not None and not o.leader.promoted:
            # Writable, but the key was never marked promoted (that last write was lost): replicas wait on
            # the mark, so finish the promotion.
            return Decision(PROMOTE, "holding the leader lock, writable, but the key does not say promoted")
        return Decision(STAY_PRIMARY, "holding the leader lock")

    # Not the lock holder: never writable, except on the members' promises with the key free, which the
    # promises keep free for us (failsafe.py): take it back, no failover.
    if o.read_only is False and o.leader is None and o.failsafe_left > 0 and not o.stopping \
            and o.switchover_to is None:
        if not o.have_session:
            return Decision(WAIT, "writable on the members' promises (failsafe); waiting for a Consul session "
                            "to take the leader lock back")
        return Decision(RETAKE, "writable on the members' promises (failsafe) and the leader key is free: "
                        "taking it back")
    if o.read_only is False and o.leader is None and o.keeps_lease and not o.stopping and o.switchover_to is None:
        # The last renew's lease holds however the session ended (docs/timing.md): ask, then take it back.
        return Decision(WAIT, "Consul ended the session this node's writes belong to; the lease its last renew "
                        "earned still covers them while the members are asked to promise (failsafe)")
    if o.read_only is not True:
        return Decision(FENCE, "writable but not holding the leader lock")

    if o.leader is not None:
        if not o.leader.promoted:
            # Its relay log is not applied yet: comparing GTIDs now would call our commits errant.
            return Decision(WAIT, f"primary {o.leader.name} is still promoting", o.leader)
        if o.needs_rebuild:
            return Decision(REBUILD, o.needs_rebuild, o.leader)
        if o.restart_asked:
            # Only a replica restarts in place: the command moves the primary role away first.
            return Decision(RESTART, o.restart_asked, o.leader)
        if o.errant:
            return Decision(REBUILD, f"errant transactions the primary {o.leader.name} lacks: {o.errant}",
                            o.leader)
        if o.errant_unknown:
            return Decision(WAIT, f"not following {o.leader.name} until the errant-transaction check "
                            f"completes: {o.errant_unknown}", o.leader)
        if o.replication_errno == 1236:
            if "purged" in o.replication_error.lower():
                return Decision(REBUILD, f"primary {o.leader.name} purged the binlogs we need (error 1236)",
                                o.leader)
            # Our position is not in its binlog: same sequence number, another server's transaction (a
            # frozen primary's commit at its thaw, say), which the position comparison cannot see.
            return Decision(REBUILD, f"errant transactions: primary {o.leader.name} refused our GTID position, "
                            "which is not in its binlog (error 1236)", o.leader)
        if o.sql_errno in DIVERGED_ERRNOS and o.sql_stuck >= DIVERGED_REPEATS:
            return Decision(REBUILD, f"data diverged from primary {o.leader.name}: the SQL thread stopped "
                            f"{o.sql_stuck} times in a row on the same transaction, on "
                            f"{DIVERGED_ERRNOS[o.sql_errno]} (error {o.sql_errno}: {o.sql_error[:160]})", o.leader)
        if o.replicating_from == o.leader.address and o.replication_ok:
            return Decision(WAIT, f"replicating from {o.leader.name}", o.leader)
        return Decision(FOLLOW, f"(re)pointing replication at primary {o.leader.name}", o.leader)

    # The leader key is free.
    if o.stopping:
        return Decision(WAIT, "node is stopping; not a candidate")
    if not o.have_session:
        return Decision(WAIT, "no Consul session (node not healthy yet); cannot take the lock")
    if o.needs_rebuild:
        return Decision(WAIT, f"not a candidate: {o.needs_rebuild}")
    if o.promised_left > 0:
        # Kept even though this node can see Consul: the primary may be writable on this promise.
        return Decision(WAIT, f"leader key free, but this node promised {o.promised_to or 'the primary'} "
                        f"not to take it for {o.promised_left:.1f}s more (failsafe)")
    if o.switchover_to is not None:
        if o.switchover_to == o.me:
            ok, why = o.takeover
            if ok:
                return Decision(TAKE_LOCK, why)
            return Decision(WAIT, f"designated by a request, but {why}")
        return Decision(WAIT, f"leader key free; it was handed to {o.switchover_to}")
    if o.paused:
        return Decision(WAIT, "leader key free but automatic failover is paused (mysqlpilot resume)")
    ok, why = o.takeover
    if ok:
        return Decision(TAKE_LOCK, why)
    return Decision(WAIT, f"leader key free; {why}")


def mariadb_errant(mine: str, leader_now: str, promoted: str, leader_server_id: int,
                   parse: Callable[[str], Dict[int, Tuple[int, int]]]) -> str:
    """MariaDB GTID positions keep one GTID per domain, so set difference is not enough.

    A position is errant against the leader if in some domain it is ahead of the leader's position, or
    it went past the point where the leader was promoted with a transaction the leader did not write
    (another server id): that branch is not in the leader's binlog.
    """
    m, ln, pr = parse(mine), parse(leader_now), parse(promoted)
    out = []
    for dom, (srv, seq) in sorted(m.items()):
        lseq = ln.get(dom, (0, 0))[1]
        pseq = pr.get(dom, (0, 0))[1]
        if seq > lseq or (seq > pseq and srv != leader_server_id and pr):
            # A position only proves its last GTID errant; earlier ones after the promotion point may
            # be too, which the moved-aside binlogs show.
            out.append(f"{dom}-{srv}-{seq}")
    return ",".join(out)


def mysql_inflight_tail(errant: str, leader_executed: str, leader_uuid: str) -> str:
    """`errant` without the leader's own transactions above everything it has committed: with semi-sync
    (AFTER_SYNC) they are in its binlog and on its replicas while its commit waits for an ACK, and its
    gtid_executed shows them only after. Anything else stays errant, the leader's own holes included."""
    from .gtid import format_mysql, parse_mysql
    uuid = leader_uuid.lower()
    top = max((hi for _, hi in parse_mysql(leader_executed).get(uuid, [])), default=0)
    out = parse_mysql(errant)
    own = [(lo, hi) for lo, hi in out.get(uuid, []) if lo <= top]
    if own:
        out[uuid] = own
    else:
        out.pop(uuid, None)
    return format_mysql(out)


def server_series(version: str) -> Optional[Tuple[int, int]]:
    """(major, minor) of a published server version ("10.11.19-MariaDB-0+deb12u1-log": (10, 11))."""
    m = re.match(r"(\d+)\.(\d+)\.", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def oldest_series(members: Sequence[MemberState]) -> List[MemberState]:
    """During a major upgrade, the members of the oldest server series: replication runs from an older
    source to a newer replica, not back, so a switchover in a mixed cluster (pre-stop, whatever order the
    platform replaces tasks in) must not put a newer primary over older replicas. Unknown versions: all."""
    series = [server_series(m.server_version) for m in members]
    if any(v is None for v in series) or len(set(series)) < 2:
        return list(members)
    low = min(series)
    return [m for m, v in zip(members, series) if v == low]


def choose_switchover_target(members: Sequence[MemberState], primary: str, requested: Optional[str]
                             ) -> Tuple[Optional[str], str]:
    """Target of a planned switchover: the requested node, else the healthy replica with the most
    priority and least lag."""
    replicas = [m for m in members if m.name != primary]
    if requested:
        m = next((x for x in replicas if x.name == requested), None)
        if m is None:
            return None, f"{requested} is not a member of the cluster (see mysqlpilot status)"
        if not (m.alive and m.healthy):
            return None, f"{requested} is not healthy: {m.message or 'no recent health report'}"
        return requested, "requested"
    ok = [m for m in replicas if m.alive and m.healthy and not m.nofailover]
    ok = [m for m in ok if not m.snapshotting] or ok        # spare its backup the switchover if we can
    if not ok:
        return None, "no healthy replica to hand over to"
    ok = oldest_series(ok)
    best = sorted(ok, key=lambda m: (-m.priority, m.lag_seconds if m.lag_seconds is not None else 1e9,
                                     m.name))[0]
    return best.name, f"healthiest replica (priority {best.priority}, lag {best.lag_seconds})"
