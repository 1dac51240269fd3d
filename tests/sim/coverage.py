"""What runs reached of the decision table: the branches of analysis.decide (each `Decision(...)` it
returns), the action table of actions.py (each action run, each guard's refusal), and the fault kinds.
The rows are read from the code itself, so the ones never reached are listed too."""
from __future__ import annotations

import ast
import functools
import inspect
import sys
import textwrap
from typing import Any, Callable, Dict, List, Tuple

from mysqlpilot import actions, analysis


REFUSED = "refused by its guard: "


def _template(expr: ast.expr) -> str:
    """A reason as written: literal text kept, each value shown as {its expression}."""
    if isinstance(expr, ast.Constant):
        return str(expr.value)
    if isinstance(expr, ast.JoinedStr):
        return "".join(_template(v) if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                       for v in expr.values)
    return "{" + ast.unparse(expr) + "}"


@functools.lru_cache(maxsize=1)
def decide_rows() -> List[Tuple[int, int, str]]:
    """(first line, last line, "action: reason") of every `Decision(...)` in analysis.decide."""
    lines, first = inspect.getsourcelines(analysis.decide)
    rows = []
    for node in ast.walk(ast.parse(textwrap.dedent("".join(lines)))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Decision":
            action = node.args[0]
            name = getattr(analysis, action.id) if isinstance(action, ast.Name) else ast.unparse(action)
            rows.append((first + node.lineno - 1, first + node.end_lineno - 1,
                         f"{name}: {_template(node.args[1])}"))
    return sorted(rows)


def decide_label(line: int) -> str:
    for a, b, text in decide_rows():
        if a <= line <= b:
            return f"analysis.py:{a} {text}"
    return f"analysis.py:{line} (not a Decision of decide)"


@functools.lru_cache(maxsize=1)
def action_rows() -> List[str]:
    out = []
    for action, (_, guard) in actions.Actions(None).table().items():
        out.append(action)
        if guard is not None:
            out.append(REFUSED + action)
    return out


class Coverage:
    """One run's counts, by row label (picklable, merged across runs by `merge`)."""

    def __init__(self):
        self.decisions: Dict[str, int] = {}
        self.actions: Dict[str, int] = {}
        self._lines: Dict[int, str] = {}

    def decided(self, line: int) -> None:
        label = self._lines.get(line)
        if label is None:
            label = self._lines[line] = decide_label(line)
        self.decisions[label] = self.decisions.get(label, 0) + 1

    def acted(self, row: str) -> None:
        self.actions[row] = self.actions.get(row, 0) + 1

    def to_dict(self, faults: Dict[str, int]) -> Dict[str, Dict[str, int]]:
        return {"decisions": dict(self.decisions), "actions": dict(self.actions), "faults": dict(faults)}


def recorders(cov_of: Callable[[], Coverage]) -> List[Tuple[Any, str, Any]]:
    """The patches (object, attribute, replacement) that count into the current run's Coverage."""
    real_decision, real_run = analysis.Decision, actions.Actions.run

    def decision(*a, **kw):
        cov_of().decided(sys._getframe(1).f_lineno)
        return real_decision(*a, **kw)

    def run(self, d, seen):
        row = d.action
        try:
            out = real_run(self, d, seen)
            row = REFUSED + out.refused if out.refused else out.action
            return out
        finally:
            cov_of().acted(row)

    return [(analysis, "Decision", decision), (actions.Actions, "run", run)]


def merge(total: Dict[str, Dict[str, int]], part: Dict[str, Dict[str, int]]) -> None:
    for section, counts in part.items():
        into = total.setdefault(section, {})
        for k, n in counts.items():
            into[k] = into.get(k, 0) + n


def report(total: Dict[str, Dict[str, int]]) -> Dict[str, Any]:
    """Every row with its count (0: never reached), in the code's order, and the unreached apart."""
    from .faults import FAULTS          # here: faults -> consul -> hooks -> patch -> coverage is a cycle
    every = {"decisions": [f"analysis.py:{a} {t}" for a, _, t in decide_rows()], "actions": action_rows(),
             "faults": list(FAULTS)}
    out: Dict[str, Any] = {}
    for section, rows in every.items():
        got = total.get(section, {})
        extra = sorted(k for k in got if k not in rows)       # e.g. a fault kind this run's code added
        out[section] = {r: got.get(r, 0) for r in rows + extra}
    out["never"] = {s: [r for r, n in out[s].items() if n == 0] for s in every}
    return out
