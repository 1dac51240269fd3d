"""Faster stand-ins for pure functions of mysqlpilot, with the same results, installed with the other
patches (the simulator spends most of its time in the real code; these are its hot spots):
- to_json of MemberState and LeaderInfo without dataclasses.asdict (its deep copy is the slow part;
  their fields are flat, checked below, so the JSON is the same);
- gtid.problem memoized (a pure function of two strings, asked for every member read from Consul)."""
from __future__ import annotations

import functools
import json
from dataclasses import fields
from typing import Any, List, Tuple

from mysqlpilot import gtid, model

FLAT = {"str", "int", "float", "bool", "Optional[str]", "Optional[int]", "Optional[float]", "Optional[bool]",
        "List[str]"}


def _to_json(cls, drop: str):
    names = [f.name for f in fields(cls)]
    if not all(str(f.type) in FLAT for f in fields(cls)):
        return cls.to_json               # a nested field: asdict's copy matters, keep the real one

    def to_json(self) -> str:
        d = {n: getattr(self, n) for n in names if n != drop}
        return json.dumps(d, sort_keys=True)
    return to_json


def speedups() -> List[Tuple[Any, str, Any]]:
    """(object, attribute, replacement) for patch.installed."""
    return [(model.MemberState, "to_json", _to_json(model.MemberState, "alive")),
            (model.LeaderInfo, "to_json", _to_json(model.LeaderInfo, "session")),
            (gtid, "problem", functools.lru_cache(maxsize=4096)(gtid.problem))]
