"""`mysqlpilot status`: the cluster as Consul knows it and as each node's API answers now, as JSON or a
readable table."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import requests

from . import analysis
from .dcs.consul import ConsulDCS
from .model import STARTING_ROLES, MemberState


PROBE_TIMEOUT = 1.0       # a node's API that has not answered by then shows the node as unreachable
LEFT_GRACE = 600.0        # a node that left on purpose (pre-stop) is listed this long, then dropped


def probe_apis(members: List[MemberState], timeout: float = PROBE_TIMEOUT) -> Dict[str, Tuple[str, Dict]]:
    """name -> ("" if the node's API answered /status, else why not; its /status document). Members
    without a published API are not asked; no credentials are sent. A member without a live session is
    asked too: a primary riding out a Consul outage has none, and says so here."""
    asked = [m for m in members if m.api]

    def ask(m: MemberState) -> Tuple[str, Dict]:
        try:
            r = requests.get(f"http://{m.api}/status", timeout=timeout)
            try:
                doc = r.json()
            except ValueError:
                doc = {}
            return "", doc if isinstance(doc, dict) else {}
        except requests.Timeout:
            return f"its node API at {m.api} did not answer within {timeout:g}s", {}
        except requests.RequestException as exc:
            return (f"its node API at {m.api} refused the connection" if "refused" in str(exc).lower()
                    else f"its node API at {m.api} did not answer ({type(exc).__name__})"), {}
    if not asked:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(asked))) as pool:
        return dict(zip((m.name for m in asked), pool.map(ask, asked)))


def _failsafe_line(fs: Dict) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(float(fs.get("since") or 0)))
    return (f"writable on the promises of {', '.join(fs.get('confirmed_by') or []) or 'no other member'} since "
            f"{since} (failsafe: Consul does not renew its session; no failover)")


def gather(cfg, dcs: Optional[ConsulDCS] = None, history: int = 5, probe: bool = True) -> Dict[str, Any]:
    dcs = dcs or ConsulDCS.from_config(cfg)
    leader, _ = dcs.get_leader()
    nodes: List[Dict[str, Any]] = []
    aside = _moved_aside(dcs)
    now = time.time()
    members = [m for m in dcs.members() if not (m.role == "left" and not m.alive and m.updated
                                                 and now - m.updated > LEFT_GRACE)]
    answers = probe_apis(members) if probe else {}
    unreachable = {k: err for k, (err, _) in answers.items() if m_alive(members, k)}
    failsafe_on = {k: doc["failsafe"] for k, (err, doc) in answers.items()
                   if not err and isinstance(doc.get("failsafe"), dict) and doc["failsafe"].get("active")}
    archive = {k: doc["archive"] for k, (err, doc) in answers.items() if not err and isinstance(doc.get("archive"), dict)}
    primary = leader.name if leader is not None else None
    if primary is None and len(failsafe_on) == 1:
        primary = next(iter(failsafe_on))
    for m in sorted(members, key=lambda m: m.name):
        role = "primary" if primary is not None and m.name == primary else m.role
        if primary is not None and m.name != primary and role == "primary":
            role = "replica"
        if not m.alive and role != "rebuilding" and m.name not in failsafe_on:
            role = "down" if role in ("primary", "replica", "candidate", "fenced") else role
        message = _message(m)
        if m.name in failsafe_on:
            role, message = "primary", _failsafe_line(failsafe_on[m.name])
        elif unreachable.get(m.name):
            # Whatever it last published, it does not answer now.
            role, message = "unreachable", f"{unreachable[m.name]} (last said: {m.role}, {m.message})"
        nodes.append({
            "name": m.name, "host": m.host, "port": m.port, "role": role,
            # A node without a live session reports nothing current: its last read_only ("OFF" on a
            # dead primary) would read like a second writable primary.
            "healthy": (bool(m.alive and m.healthy) and role != "unreachable") or m.name in failsafe_on,
            "read_only": False if m.name in failsafe_on else (m.read_only if m.alive and role != "unreachable"
                                                              else None),
            "failsafe": failsafe_on.get(m.name) or None,
            "replicating_from": m.replicating_from if m.alive else None,
            "lag_seconds": m.lag_seconds if m.alive else None,
            "gtid_executed": m.gtid_executed, "errant": m.errant,
            "message": message,
            "priority": m.priority, "nofailover": m.nofailover,
            "snapshotting": bool(m.alive and m.snapshotting),     # taking the cluster's snapshot now
            "version": m.server_version or None,     # the server's VERSION() as the node last read it
            "pending_restart": list(m.pending_restart or []) if m.alive else [],   # cluster settings not loaded
            "api": m.api or None,             # host:port of its node API, as it published it
            "age_seconds": round(max(0.0, time.time() - m.updated), 1) if m.updated else None,
            # Moved-aside datadirs beside this node's datadir, as its pre-start/rebuild last counted them.
            "moved_aside": _int((aside.get(m.name) or {}).get("count")),
            "moved_aside_limit": _int((aside.get(m.name) or {}).get("limit")),
            "archive": archive.get(m.name),       # the binlog archive, on the node that streams it
        })
    _why_source(nodes)
    snap = dcs.get_latest_snapshot()
    paused = dcs.get_paused()
    hist = dcs.history()
    allowed, budget_why = analysis.failover_budget(hist, time.time(), analysis.Policy.from_config(cfg))
    return {
        "cluster": cfg.cluster,
        "primary": primary,
        "nodes": nodes,
        "snapshot": ({"id": snap.id, "created": snap.created, "bytes": snap.bytes, "gtid": snap.gtid,
                      "source": snap.source, "verified": snap.verified} if snap else None),
        "paused": bool(paused),
        "paused_reason": (paused or {}).get("reason") if paused else None,
        "failover": {"automatic": bool(allowed) and not paused, "budget": budget_why},
        "history": hist[-history:] if history else [],
    }


def archive_line(name: str, a: Dict[str, Any]) -> str:
    state = (f"behind by {a.get('waiting_bytes')} bytes for {a.get('lag_seconds')}s" if a.get("lag_seconds")
             else "caught up")
    line = f"binlog archive: streaming on {name} (run {a.get('run')}), {state}"
    if a.get("error"):
        line += f"; last error: {a['error']}"
    if a.get("gap"):
        line = f"! {line}; GAP before this run: {a['gap']} (a restore across it is refused)"
    return line


def m_alive(members: List[MemberState], name: str) -> bool:
    return any(m.name == name and m.alive for m in members)


def _why_source(nodes: List[Dict[str, Any]]) -> None:
    """A replica whose primary is gone says so."""
    by = {f"{n['host']}:{n['port']}": n for n in nodes}
    for n in nodes:
        src = by.get(n["replicating_from"] or "")
        if n["role"] == "replica" and src is not None and src["role"] in ("down", "unreachable", "left"):
            n["message"] = f"its primary {src['name']} is {src['role']}" + (f"; {n['message']}" if n["message"] else "")


def check_code(st: Dict[str, Any]) -> int:
    """`status --check`: 0 one writable primary and every member healthy, 1 degraded, 2 no writable primary."""
    writable = [n for n in st["nodes"] if n["role"] == "primary" and n["read_only"] is False and n["healthy"]]
    if len(writable) != 1:
        return 2
    return 0 if all(n["healthy"] or n["role"] == "left" for n in st["nodes"]) else 1


def _moved_aside(dcs) -> Dict[str, Dict[str, Any]]:
    reader = getattr(dcs, "moved_aside_counts", None)     # a stand-in DCS may not offer it
    return reader() if reader else {}


def _int(v: Any) -> Optional[int]:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _message(m: MemberState) -> str:
    if m.alive:
        return m.message
    if m.role in STARTING_ROLES:
        ago = f" ({max(0.0, time.time() - m.updated):.0f}s ago)" if m.updated else ""
        return f"starting: {m.message}{ago}"
    return f"no live session: down or cut off (last said: {m.message})"


def _fmt_time(ts: Optional[float]) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def render(st: Dict[str, Any]) -> str:
    lines = [f"cluster {st['cluster']}: primary {st['primary'] or 'NONE'}"]
    if st.get("paused"):
        lines.append(f"automatic failover PAUSED{': ' + st['paused_reason'] if st.get('paused_reason') else ''}"
                     " (mysqlpilot resume)")
    elif not st["failover"]["automatic"]:
        lines.append(f"automatic failover OFF: {st['failover']['budget']}")
    cols = ("name", "address", "role", "healthy", "read_only", "source", "lag", "aside", "version", "gtid_executed")
    rows = [cols]
    for n in st["nodes"]:
        rows.append((n["name"], f"{n['host']}:{n['port']}", n["role"], "yes" if n["healthy"] else "NO",
                     {True: "on", False: "OFF", None: "?"}[n["read_only"]], n["replicating_from"] or "-",
                     "-" if n["lag_seconds"] is None else f"{n['lag_seconds']}s",
                     "-" if n.get("moved_aside") is None else str(n["moved_aside"]), n.get("version") or "-",
                     n["gtid_executed"] or "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(cols))]
    for r in rows:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    for n in st["nodes"]:
        if n.get("errant"):
            lines.append(f"! {n['name']} has errant transactions: {', '.join(n['errant'])}")
        limit = n.get("moved_aside_limit")
        if n.get("moved_aside") and limit is not None and n["moved_aside"] >= limit:
            lines.append(f"! {n['name']}: {n['moved_aside']} moved-aside datadirs (max_moved_aside={limit}): its "
                         "next rebuild or restore will refuse; remove old <datadir>.aside-* copies by hand")
        if n["message"] and n["role"] != "left" and (not n["healthy"] or (n["role"] == "primary" and n["message"] != "primary, writable")):
            lines.append(f"! {n['name']}: {n['message']}")
    for n in st["nodes"]:
        if n.get("snapshotting"):
            lines.append(f"  {n['name']} is taking the cluster's snapshot (last among equal failover candidates "
                         "until it ends)")
        if n.get("pending_restart"):
            lines.append(f"  {n['name']}: pending restart for the cluster's {', '.join(n['pending_restart'])}")
        a = n.get("archive")
        if a:
            lines.append(archive_line(n["name"], a))
    s = st["snapshot"]
    if s:
        lines.append(f"latest snapshot {s['id']} taken {_fmt_time(s['created'])}"
                     f"{' on ' + s['source'] if s.get('source') else ''}, "
                     f"{(s['bytes'] or 0) / 1e6:.1f} MB, GTID {s['gtid'] or '-'}")
        v = s.get("verified")
        if v:
            lines.append(f"  proven restorable in {v.get('seconds')}s: {v.get('tables')} tables matched "
                         f"{v.get('reference') or 'nothing (restored and started only)'}"
                         + (f" at GTID {v['gtid']}" if v.get("gtid") else ""))
    else:
        lines.append("latest snapshot: none yet")
    if st["history"]:
        lines.append("recent failovers and switchovers:")
        for h in st["history"]:
            d = h.get("durations") or {}
            dur = ", ".join(f"{k} {v}s" for k, v in d.items())
            lines.append(f"  {_fmt_time(h.get('time'))} {h.get('kind')}: {h.get('old_primary') or '-'} -> "
                         f"{h.get('new_primary') or '-'} ({h.get('reason')}){' [' + dur + ']' if dur else ''}")
    return "\n".join(lines)
