"""Faster stand-ins for pure functions of mysqlpilot, with the same results, installed with the other
patches (the simulator spends most of its time in the real code; these are its hot spots):
- to_json of MemberState and LeaderInfo without dataclasses.asdict (its deep copy is the slow part;
  their fields are flat, checked below, so the JSON is the same);
- gtid.problem memoized (a pure function of two strings, asked for every member read from Consul);
- model._check and _from_dict with their tables (type tests, a class's fields) built once, not per
  call: copies, each used only while the source it was made from is unchanged (by its hash)."""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
from dataclasses import fields
from typing import Any, List, Tuple

from mysqlpilot import gtid, model
from mysqlpilot.dcs import base

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


# sha256 prefixes of the functions copied below, as they were when copied
SOURCES = {"_check": "04d772605a8622c7", "_from_dict": "e152fccdac6292ea"}
CHECKS = {
    "str": lambda x: isinstance(x, str),
    "int": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "float": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "bool": lambda x: isinstance(x, bool),
    "List[str]": lambda x: isinstance(x, list) and all(isinstance(i, str) for i in x),
    "List[Dict[str, Any]]": lambda x: isinstance(x, list) and all(isinstance(i, dict) for i in x),
    "Dict[str, Any]": lambda x: isinstance(x, dict),
    "Dict[str, float]": lambda x: isinstance(x, dict) and all(
        isinstance(i, (int, float)) and not isinstance(i, bool) for i in x.values()),
}


def _check(kind: str, v: Any, name: str) -> Any:
    if kind.startswith("Optional["):
        return None if v is None else _check(kind[9:-1], v, name)
    ok = CHECKS.get(kind)
    if ok is not None and not ok(v):
        raise ValueError(f"field {name!r} is {type(v).__name__} {str(v)[:40]!r}, expected {kind}")
    return float(v) if kind == "float" else v


@functools.lru_cache(maxsize=None)
def _kinds(cls) -> List[Tuple[str, str]]:
    return [(f.name, str(f.type)) for f in fields(cls)]


def _from_dict(cls, data: Any):
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    kw = {name: _check(kind, data[name], name) for name, kind in _kinds(cls) if name in data}
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ValueError(f"missing field: {exc}") from None


def speedups() -> List[Tuple[Any, str, Any]]:
    """(object, attribute, replacement) for patch.installed."""
    out = [(model.MemberState, "to_json", _to_json(model.MemberState, "alive")),
           (model.LeaderInfo, "to_json", _to_json(model.LeaderInfo, "session")),
           (gtid, "problem", functools.lru_cache(maxsize=4096)(gtid.problem))]
    if _unchanged("_check"):
        out.append((model, "_check", _check))
        if _unchanged("_from_dict"):
            out += [(model, "_from_dict", _from_dict), (base, "_from_dict", _from_dict)]
    return out


@functools.lru_cache(maxsize=None)
def _unchanged(name: str) -> bool:
    return hashlib.sha256(inspect.getsource(getattr(model, name)).encode()).hexdigest()[:16] == SOURCES[name]
