"""Virtual time: the event queue, and blocking calls of simulated threads (the rest of the world runs,
nested, while the caller waits). Knows nodes only as far as threads go: a process incarnation (gen) and
whether the node is frozen."""
from __future__ import annotations

import heapq
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .patch import SimKilled, SimWouldBlock

MAX_DEPTH = 25                    # nested blocking calls (each runs the world while its thread waits)
CHAINS = ("ha", "hb", "wd", "probe", "deadline")   # periodic threads: dropped while frozen, restarted at the thaw


class Event:
    __slots__ = ("t", "node", "thread", "gen", "fn")

    def __init__(self, t: float, node: str, thread: str, gen: int, fn: Callable[[], None]):
        self.t, self.node, self.thread, self.gen, self.fn = t, node, thread, gen, fn


class Scheduler:
    """The heap holds (t, seq, event): ties break on the order of scheduling, compared in C."""

    def __init__(self):
        self.now = 0.0
        self.heap: List[Tuple[float, int, Event]] = []
        self._seq = 0
        self.nodes: Dict[str, Any] = {}            # name -> SimNode
        # (node, thread, process generation): a new process's threads are not the old one's frames
        self.blocked: Set[Tuple[str, str, int]] = set()
        self.running: Set[Tuple[str, str, int]] = set()
        self.current: Optional[Event] = None
        self.depth = 0
        self.steps = 0
        self.depth_capped = 0

    def after_step(self) -> None:
        """Called after every event (the invariants)."""

    def at(self, delay: float, node: str, thread: str, fn: Callable[[], None], gen: int = -1) -> None:
        self._seq += 1
        t = self.now + delay
        heapq.heappush(self.heap, (t, self._seq, Event(t, node, thread, gen, fn)))

    def run_until(self, end: float) -> None:
        deferred = []
        heap, blocked = self.heap, self.blocked
        while heap and heap[0][0] <= end:
            item = heapq.heappop(heap)
            ev = item[2]
            if blocked and (ev.node, ev.thread, ev.gen) in blocked:
                deferred.append(item)
                continue
            if ev.t > self.now:
                self.now = ev.t
            self.dispatch(ev)
        for item in deferred:
            heapq.heappush(heap, item)
        self.now = max(self.now, end)

    def dispatch(self, ev: Event) -> None:
        sn = self.nodes.get(ev.node)
        if sn is not None:
            if ev.gen >= 0 and ev.gen != sn.gen:
                return                   # a thread of a killed process
            if sn.frozen_until is not None and ev.thread not in ("thaw", "mysqld"):
                if ev.thread not in CHAINS:
                    self.at(sn.frozen_until - self.now + 0.001, ev.node, ev.thread, ev.fn, ev.gen)
                return                   # the frozen node's threads are restarted at the thaw
        prev = self.current
        self.current = ev
        key = (ev.node, ev.thread, ev.gen)
        self.running.add(key)
        try:
            ev.fn()
            self.steps += 1
        except SimKilled:
            pass
        except SimWouldBlock:
            self.at(0.01, ev.node, ev.thread, ev.fn, ev.gen)
        finally:
            self.running.discard(key)
            self.current = prev
        self.after_step()

    def sleep(self, seconds: float) -> None:
        """A blocking call of the current thread: the rest of the world runs meanwhile."""
        ev = self.current
        end = self.now + seconds
        if ev is None or self.depth >= MAX_DEPTH:
            self.depth_capped += ev is not None
            self.now = max(self.now, end)
        else:
            key = (ev.node, ev.thread, ev.gen)
            self.blocked.add(key)
            self.depth += 1
            try:
                self.run_until(end)
                sn = self.nodes.get(ev.node)
                while sn is not None and sn.frozen_until is not None and ev.gen == sn.gen:
                    self.run_until(sn.frozen_until)
            finally:
                self.depth -= 1
                self.blocked.discard(key)
                self.current = ev
        sn = self.nodes.get(ev.node) if ev is not None else None
        if sn is not None and ev.gen >= 0 and ev.gen != sn.gen:
            raise SimKilled()
