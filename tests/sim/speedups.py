"""Faster stand-ins for pure functions of mysqlpilot, with the same results, installed with the other
patches (the simulator spends most of its time in the real code; these are its hot spots):
- to_json of MemberState and LeaderInfo without dataclasses.asdict (its deep copy is the slow part;
  their fields are flat, checked below, so the JSON is the same);
- gtid.problem memoized (a pure function of two strings, asked for every member read from Consul);
- model._check memoized for scalars (it builds its table of type tests at every call), and _from_dict
  with a class's fields listed once: a copy, used only while its source is unchanged (by its hash)."""
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


# sha256 prefix of the function copied below, as it was when copied
SOURCES = {"_from_dict": "e152fccdac6292ea"}
_real_check = model._check


@functools.lru_cache(maxsize=65536)
def _check_scalar(kind: str, v: Any, t: type, name: str) -> Any:
    return _real_check(kind, v, name)


def _check(kind: str, v: Any, name: str) -> Any:
    """model._check memoized for scalar values (its type in the key: 1, 1.0 and True hash alike)."""
    t = type(v)
    if t is str or t is int or t is float or t is bool or v is None:
        return _check_scalar(kind, v, t, name)
    return _real_check(kind, v, name)


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
           (gtid, "problem", functools.lru_cache(maxsize=4096)(gtid.problem)), (model, "_check", _check)]
    if _unchanged("_from_dict"):
        out += [(model, "_from_dict", _from_dict), (base, "_from_dict", _from_dict)]
    return out


@functools.lru_cache(maxsize=None)
def _unchanged(name: str) -> bool:
    return hashlib.sha256(inspect.getsource(getattr(model, name)).encode()).hexdigest()[:16] == SOURCES[name]
