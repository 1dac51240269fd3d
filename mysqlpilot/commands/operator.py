"""Operator commands: status, history, switchover, failover, pause, resume."""
from __future__ import annotations

import json
import time
from typing import Optional

import click

from ..errors import PilotError


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", "watch_", is_flag=True, help="Refresh in place every second (Ctrl-C to stop).")
@click.option("--check", is_flag=True, help="Exit 0 with one writable primary and every member healthy, 1 when "
              "degraded, 2 when no primary is writable (for scripts and monitoring).")
@click.pass_obj
def status(obj, as_json: bool, watch_: bool, check: bool) -> None:
    """Show the cluster: primary, every node's role, health, replication, the latest snapshot. Each node's API
    is asked as well: one that does not answer shows as unreachable, whatever it last published."""
    from ..status import check_code, gather, render
    cfg = obj.config(credentials=False)
    if watch_:
        from ..dcs.consul import ConsulDCS
        dcs = ConsulDCS.from_config(cfg)
        try:
            while True:
                try:
                    text = render(gather(cfg, dcs=dcs))
                except PilotError as exc:
                    text = f"status: {exc}"
                click.echo("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + text, nl=True)
                time.sleep(1.0)
        except KeyboardInterrupt:
            return
    st = gather(cfg)
    click.echo(json.dumps(st, indent=1, sort_keys=True) if as_json else render(st))
    if check:
        raise SystemExit(check_code(st))


@click.command("history")
@click.option("--since", default=None, metavar="AGE|TIME", help="Only events since then: an age (30m, 12h, 7d) or a "
              "local time (YYYY-MM-DD[ HH:MM[:SS]]).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(obj, since: Optional[str], as_json: bool) -> None:
    """Every failover, switchover, fence, rebuild and failsafe episode, oldest first, with its reason and
    durations (Consul keeps the last 50 takeovers and 200 other events)."""
    from .. import journal
    from ..dcs.consul import ConsulDCS
    start = None
    if since:
        try:
            start = journal.parse_since(since, time.time())
        except ValueError as exc:
            raise PilotError(str(exc))
    dcs = ConsulDCS.from_config(obj.config(credentials=False))
    rows = journal.merged(dcs.history(), dcs.journal(), start)
    click.echo(json.dumps(rows, indent=1, sort_keys=True) if as_json else journal.render(rows))


@click.command("forget")
@click.argument("node")
@click.pass_obj
def forget(obj, node: str) -> None:
    """Remove a node that is gone for good (scaled down, replaced) from the member list at once."""
    from ..dcs.consul import ConsulDCS
    dcs = ConsulDCS.from_config(obj.config(credentials=False))
    m = dcs.member(node)
    if m is None:
        raise PilotError(f"no member {node!r} in cluster {obj.config(credentials=False).cluster}; see `mysqlpilot status`")
    if m.alive:
        raise PilotError(f"{node} has a live Consul session (its mysqlpilot runs); stop it first, then forget it")
    dcs.forget_member(node)
    click.echo(f"forgot {node} (last said: {m.role}, {m.message})")


def _wait_for_leader(dcs, target: str, timeout: float, request_key: str) -> Optional[str]:
    deadline = time.monotonic() + timeout
    seen_request = True
    while time.monotonic() < deadline:
        leader, _ = dcs.get_leader()
        if leader is not None and leader.name == target:
            return None
        if dcs.get_json(request_key) is None:
            if not seen_request:
                return "the request was withdrawn; see the primary's log (it says why)"
            seen_request = False          # give the promotion a moment to land after the key goes
        time.sleep(0.1)
    return f"{target} did not become primary within {timeout:.0f}s"


def _last_record(dcs, target: str, since: float, wait: float = 5.0) -> Optional[dict]:
    """The history record of the promotion we asked for; it lands just after the leader key changes."""
    deadline = time.monotonic() + wait
    while True:
        for rec in reversed(dcs.history()):
            if rec.get("new_primary") == target and rec.get("time", 0) >= since:
                return rec
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


@click.command("switchover")
@click.option("--to", "to", metavar="NODE", help="Node to promote (default: the healthiest replica).")
@click.option("--timeout", default=60.0, show_default=True)
@click.pass_obj
def switchover(obj, to: Optional[str], timeout: float) -> None:
    """Planned move of the primary role with no lost commit; reports write unavailability."""
    from .. import analysis
    from ..dcs.consul import ConsulDCS
    from ..dcs.base import REQUEST_KEY
    cfg = obj.config(credentials=False)
    dcs = ConsulDCS.from_config(cfg)
    view = dcs.get_cluster()
    leader, generation = view.leader, view.lock_index
    if leader is None:
        raise PilotError("there is no primary to switch over from; use `mysqlpilot failover`")
    target, why = analysis.choose_switchover_target(view.members, leader.name, to)
    if target is None:
        raise PilotError(f"cannot switch over: {why}")
    t0 = time.time()
    dcs.put_json(REQUEST_KEY, {"to": target, "from": leader.name, "kind": "switchover",
                               "reason": f"operator switchover ({why})", "requested": t0,
                               "lock_index": generation})
    click.echo(f"switchover {leader.name} -> {target}: {leader.name} goes read-only, {target} catches up, "
               "then takes the lock")
    err = _wait_for_leader(dcs, target, timeout, REQUEST_KEY)
    if err:
        raise PilotError(f"switchover to {target} failed: {err}")
    rec = _last_record(dcs, target, t0) or {}
    unavail = (rec.get("durations") or {}).get("write_unavailable")
    click.echo(f"switchover done: {target} is the primary"
               + (f"; writes were unavailable for {unavail:.2f}s" if unavail is not None else ""))


@click.command("failover")
@click.option("--to", "to", metavar="NODE", help="Node to promote (default: the best candidate).")
@click.option("--force", is_flag=True, help="Promote even if it may lose transactions or the node is "
              "not eligible.")
@click.option("--timeout", default=60.0, show_default=True)
@click.pass_obj
def failover(obj, to: Optional[str], force: bool, timeout: float) -> None:
    """Promote a replica when the primary is dead or must be abandoned."""
    from .. import analysis
    from ..dcs.consul import ConsulDCS
    from ..flavors import get_flavor
    from ..dcs.base import REQUEST_KEY
    from ..candidates import answers, probe_candidates
    cfg = obj.config()
    dcs = ConsulDCS.from_config(cfg)
    flavor = get_flavor(cfg.flavor, cfg.flavor_version)
    view = dcs.get_cluster()
    leader, members, generation = view.leader, view.members, view.lock_index
    old = leader.name if leader else None
    if leader is not None and not force:
        lm = next((m for m in members if m.name == leader.name), None)
        if lm is not None and lm.alive and lm.healthy:
            raise PilotError(f"primary {leader.name} is alive and healthy; use `mysqlpilot switchover`, or "
                             "--force to abandon it")
    if old is None:
        # The lock is already free: the old primary is the last one history names.
        old = next((h.get("new_primary") for h in reversed(dcs.history()) if h.get("new_primary")), None)
    # What the old primary last published it had: a target lacking any of it would lose those commits.
    old_m = next((m for m in members if m.name == old), None)
    must = old_m.gtid_executed if old_m else ""
    # A member without a session is never logged in to. It counts (as unreachable: --force to pass it) only
    # while something accepts connections at its address; a bare TCP connect sends nothing.
    others = [m for m in members if m.name != old]
    maybe_alive = {m.name for m in others if not m.alive and answers(m.host, m.port)}
    cands = probe_candidates(flavor, others, cfg, count_sessionless=maybe_alive)
    policy = analysis.Policy.from_config(cfg)
    ranking = analysis.rank_candidates(cands, policy, must, flavor.gtid_contains)
    for r in ranking:
        click.echo(f"  candidate {r.name}: {'eligible' if r.eligible else 'NOT eligible'}, {r.why}")
    best = next((r for r in ranking if r.rank == 0), None)
    if best is None and force and not to:
        # Forced: the old primary's last transactions are given up; pick the best of what is left, among
        # replicas and election candidates. One rebuilding, restoring or starting (stuck after failed
        # restores, say) may hold next to nothing: only --to names such a node.
        ok = {m.name for m in others if m.alive and m.role in ("replica", "candidate")}
        best = next((r for r in analysis.rank_candidates([c for c in cands if c.name in ok], policy, "",
                                                          flavor.gtid_contains, strict=False) if r.rank == 0), None)
        if best is None:
            why = "; ".join(f"{m.name} is {m.role}{', ' + m.message[:80] if m.message else ''}" for m in others)
            raise PilotError(f"no replica or election candidate to force a failover to ({why or 'no other member'}); name one "
                             "with --to NODE --force if you accept losing what it lacks")
    target = to or (best.name if best else None)
    if target is None:
        raise PilotError("no eligible candidate to promote; see the list above (or --to NODE --force)")
    mine = next((r for r in ranking if r.name == target), None)
    if mine is None:
        raise PilotError(f"{target} is not a live member of the cluster")
    if not force:
        unasked = [c.name for c in cands if not c.has_session]
        if unasked:
            raise PilotError(f"{', '.join(unasked)} has no live Consul session, so it was not asked (no password "
                             f"goes to a host only such a key names) and may hold transactions {target} lacks; "
                             "start its mysqlpilot, or use --force")
        unreachable = [c.name for c in cands if not c.reachable]
        if unreachable:
            raise PilotError(f"cannot reach {', '.join(unreachable)}, which may hold transactions {target} "
                             "lacks; bring it back (or stop it), or use --force")
        if not mine.eligible:
            raise PilotError(f"{target} is not eligible: {mine.why}; use --force to promote it anyway")
        if mine.rank != 0:
            raise PilotError(f"promoting {target} would lose transactions: {mine.why}; promote "
                             f"{best.name if best else 'the best candidate'} or use --force")
    if force:
        click.echo(_given_up(flavor, target, old, must, cands))
    t0 = time.time()
    # Bound to this lock generation: spent once the lock changes hands, whatever the clock says.
    dcs.put_json(REQUEST_KEY, {"to": target, "from": old, "kind": "manual-failover",
                               "reason": f"operator failover{' --force' if force else ''}",
                               "requested": t0, "lock_index": generation, "force": bool(force)})
    if leader is not None and leader.session:
        # Abandon the old primary: it fences itself as soon as it sees the lock gone.
        dcs.destroy_session(leader.session)
    click.echo(f"failover {old or '(no primary)'} -> {target}")
    err = _wait_for_leader(dcs, target, timeout, REQUEST_KEY)
    if err:
        raise PilotError(f"failover to {target} failed: {err}")
    click.echo(f"failover done: {target} is the primary")


def _given_up(flavor, target: str, old: Optional[str], must: str, cands) -> str:
    """What a forced failover to `target` gives up: what the old primary last published and every reachable
    member holds that `target` lacks (a count, from the GTIDs)."""
    from .. import gtid
    mine = next((c.gtid_received for c in cands if c.name == target), "")
    lost = []
    for who, theirs in [(old, must)] + [(c.name, c.gtid_received) for c in cands if c.reachable]:
        if who and who != target and theirs:
            try:
                n = gtid.lacking(flavor.dialect, theirs, mine)
            except PilotError:
                continue                      # a value we cannot parse cannot be counted
            if n:
                lost.append(f"{n} that {who} holds")
    if not lost:
        return f"failover --force: {target} holds every transaction the others hold"
    return (f"failover --force: {target} gives up {lost[0].replace(' that', ' transactions that', 1)}"
            + "".join(f", {x}" for x in lost[1:]) + "; on rejoining, those nodes move such data aside")


@click.command("pause")
@click.option("--reason", default="operator maintenance", show_default=True)
@click.pass_obj
def pause(obj, reason: str) -> None:
    """Maintenance mode: no automatic failover until `mysqlpilot resume`."""
    from ..dcs.consul import ConsulDCS
    ConsulDCS.from_config(obj.config(credentials=False)).set_paused(True, reason)
    click.echo("automatic failover paused")


@click.command("resume")
@click.pass_obj
def resume(obj) -> None:
    """Leave maintenance mode: automatic failover is armed again."""
    from ..dcs.consul import ConsulDCS
    ConsulDCS.from_config(obj.config(credentials=False)).set_paused(False)
    click.echo("automatic failover resumed")


def register(group: click.Group) -> None:
    for cmd in (status, history, forget, switchover, failover, pause, resume):
        group.add_command(cmd)
