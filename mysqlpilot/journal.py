"""The cluster's journal: fences, rebuilds and failsafe episodes, beside the takeover records of
`<kv_root>/history` (kept apart because the failover budget and the clean-stop rule read that list).

A node writes an event to its state file first: a node that fences often cannot reach Consul, and a fence
must not wait on anything. The HA loop moves what is pending into Consul's `<kv_root>/journal` on its next
pass that reaches Consul. `mysqlpilot history` shows both lists merged by time.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

log = logging.getLogger("mysqlpilot.journal")

KEY = "journal"
OUTBOX = "journal_outbox"
KEEP = 200                 # in Consul, newest last
KEEP_PENDING = 50          # in the state file, while Consul is away
KINDS = ("fence", "rebuild", "restart", "failsafe", "failsafe-retake", "config")


def event(kind: str, node: str, reason: str, **extra: Any) -> Dict[str, Any]:
    return {"kind": kind, "time": time.time(), "node": node, "reason": reason, **extra}


def record(state, ev: Dict[str, Any]) -> None:
    """Queue an event in the state file. Best effort: a full disk must not stop a fence."""
    def put(d: Dict[str, Any]) -> None:
        pending = d.get(OUTBOX) if isinstance(d.get(OUTBOX), list) else []
        d[OUTBOX] = (pending + [ev])[-KEEP_PENDING:]
    try:
        state.change(put)
    except OSError as exc:
        log.warning("journal: %s not recorded (%s)", ev.get("kind"), exc)


def flush(state, dcs) -> int:
    """Move pending events to Consul; returns how many. Events queued meanwhile stay for the next pass."""
    pending = state.get(OUTBOX)
    if not isinstance(pending, list) or not pending:
        return 0
    dcs.append_journal(list(pending), KEEP)
    sent = {_ident(e) for e in pending}

    def drop(d: Dict[str, Any]) -> None:
        cur = d.get(OUTBOX) if isinstance(d.get(OUTBOX), list) else []
        rest = [e for e in cur if _ident(e) not in sent]
        if rest:
            d[OUTBOX] = rest
        else:
            d.pop(OUTBOX, None)
    state.change(drop)
    return len(pending)


def _ident(e: Any) -> str:
    return repr(sorted(e.items())) if isinstance(e, dict) else repr(e)


def parse(value: Any) -> List[Dict[str, Any]]:
    """The journal as stored: a list of objects with a kind and a numeric time; anything else is dropped."""
    if not isinstance(value, list):
        return []
    return [e for e in value if isinstance(e, dict) and isinstance(e.get("kind"), str)
            and isinstance(e.get("time"), (int, float))]


def merged(history: Sequence[Dict[str, Any]], journal: Iterable[Dict[str, Any]],
           since: Optional[float] = None) -> List[Dict[str, Any]]:
    """Takeovers and journal events in one list by time, each as {time, kind, node, what, reason,
    durations}: the shape `mysqlpilot history` prints."""
    rows = []
    for h in history:
        rows.append({"time": float(h.get("time") or 0.0), "kind": h.get("kind") or "?",
                     "node": h.get("new_primary") or "-",
                     "what": f"{h.get('old_primary') or '-'} -> {h.get('new_primary') or '-'}",
                     "reason": h.get("reason") or "", "durations": dict(h.get("durations") or {})})
    for e in journal:
        extra = {k: v for k, v in e.items() if k not in ("time", "kind", "node", "reason", "durations")}
        rows.append({"time": float(e["time"]), "kind": e["kind"], "node": e.get("node") or "-",
                     "what": ", ".join(f"{k} {v}" for k, v in sorted(extra.items())),
                     "reason": e.get("reason") or "", "durations": dict(e.get("durations") or {})})
    rows.sort(key=lambda r: r["time"])
    return [r for r in rows if since is None or r["time"] >= since]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """`--since`: an age (90s, 30m, 12h, 7d) or a local time (YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS]).
    Raises ValueError with a one-line reason."""
    t = text.strip()
    if len(t) > 1 and t[-1] in _UNITS and t[:-1].replace(".", "", 1).isdigit():
        return now - float(t[:-1]) * _UNITS[t[-1]]
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(t, fmt))
        except ValueError:
            continue
    raise ValueError(f"--since {text!r}: expected an age like 30m, 12h or 7d, or a local time "
                     "YYYY-MM-DD[ HH:MM[:SS]]")


def render(rows: Sequence[Dict[str, Any]]) -> str:
    if not rows:
        return "no failovers, switchovers, fences or rebuilds recorded in that span"
    out = []
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
        dur = ", ".join(f"{k} {v}s" for k, v in r["durations"].items())
        what = f" {r['what']}" if r["what"] else ""
        out.append(f"{when}  {r['kind']:<15} {r['node']:<10}{what}: {r['reason']}" + (f" [{dur}]" if dur else ""))
    return "\n".join(out)
