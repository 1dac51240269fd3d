"""Read a ContainerPilot v3 config the way ContainerPilot does: render the Go template over the
environment, then parse JSON5. Only the template subset ContainerPilot configs use is supported."""
from __future__ import annotations

import re
from typing import Any, Dict, Mapping

import json5

from ..errors import PilotError

_IF = re.compile(r"\{\{-?\s*if\s+\.(\w+)\s*-?\}\}(.*?)(?:\{\{-?\s*else\s*-?\}\}(.*?))?\{\{-?\s*end\s*-?\}\}", re.S)
_EXPR = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_TERM = re.compile(r'^(?:\.(\w+)|"((?:[^"\\]|\\.)*)")$')


def _value(term: str, env: Mapping[str, str], line: int) -> str:
    m = _TERM.match(term.strip())
    if not m:
        raise PilotError(f"ContainerPilot config line {line}: unsupported template term {term.strip()!r}")
    if m.group(1) is not None:
        return env.get(m.group(1), "")
    return bytes(m.group(2), "utf-8").decode("unicode_escape")


def _expr(body: str, env: Mapping[str, str], line: int) -> str:
    parts = [p.strip() for p in body.split("|")]
    val = _value(parts[0], env, line)
    for p in parts[1:]:
        m = re.match(r"^default\s+(.+)$", p)
        if not m:
            raise PilotError(f"ContainerPilot config line {line}: unsupported template function {p!r}")
        if val == "":
            val = _value(m.group(1), env, line)
    return val


def render_template(text: str, env: Mapping[str, str]) -> str:
    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    text = _IF.sub(lambda m: (m.group(2) if env.get(m.group(1)) else (m.group(3) or "")), text)
    return _EXPR.sub(lambda m: _expr(m.group(1), env, line_of(m.start())), text)


def load(path: str, env: Mapping[str, str]) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = fh.read()
    except OSError as exc:
        raise PilotError(f"cannot read ContainerPilot config {path}: {exc.strerror}") from None
    rendered = render_template(raw, env)
    try:
        cfg = json5.loads(rendered)
    except ValueError as exc:
        raise PilotError(f"ContainerPilot config {path} is not valid JSON5 after rendering: {exc}") from None
    validate(cfg, path)
    return cfg


def validate(cfg: Dict[str, Any], path: str = "config") -> None:
    if not isinstance(cfg, dict) or not cfg.get("consul"):
        raise PilotError(f"ContainerPilot config {path}: the top-level 'consul' key is required")
    names = [j.get("name") for j in cfg.get("jobs", [])]
    if len(names) != len(set(names)) or not all(names):
        raise PilotError(f"ContainerPilot config {path}: job names must be present and unique: {names}")
    watches = {f"watch.{w.get('name')}" for w in cfg.get("watches", [])}
    for j in cfg.get("jobs", []):
        src = (j.get("when") or {}).get("source")
        if src and src not in names and src not in watches:
            raise PilotError(f"ContainerPilot config {path}: job {j['name']!r} waits on unknown source {src!r}")
        h = j.get("health")
        if h and float(h.get("interval", 0)) >= float(h.get("ttl", 0)):
            raise PilotError(f"ContainerPilot config {path}: job {j['name']!r} health interval must be below ttl")


def duration(v: Any, default: float = 0.0) -> float:
    """ContainerPilot durations: 5, "5", "5s", "500ms", "2m"."""
    if v in (None, ""):
        return default
    if isinstance(v, (int, float)):
        return float(v)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", str(v))
    if not m:
        raise PilotError(f"invalid duration {v!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
