"""The virtual clock, and a stand-in for the `time` module that the code under test imports."""
from __future__ import annotations

import time as _real_time

WALL_BASE = 1_700_000_000.0      # wall clock = WALL_BASE + virtual seconds


class SimTime:
    """Replaces `time` in the mysqlpilot modules: every clock reads the world's virtual one, and sleep
    lets the rest of the world run while the calling thread is blocked (world.sleep)."""
    CLOCK_BOOTTIME = getattr(_real_time, "CLOCK_BOOTTIME", 7)
    CLOCK_MONOTONIC = getattr(_real_time, "CLOCK_MONOTONIC", 1)
    struct_time = _real_time.struct_time

    def __init__(self, world):
        self.world = world

    def time(self) -> float:
        # A node's wall clock may be stepped (faults.py clock_jump): time.time only, never monotonic.
        offsets, ev = self.world.__dict__.get("wall_offsets"), self.world.current
        return WALL_BASE + self.world.now + (offsets.get(ev.node, 0.0) if offsets and ev is not None else 0.0)

    def monotonic(self) -> float:
        return self.world.now

    perf_counter = monotonic

    def clock_gettime(self, clk) -> float:
        return self.world.now

    def sleep(self, seconds: float) -> None:
        self.world.sleep(max(0.0, float(seconds)))

    def __getattr__(self, name):      # formatting helpers (strftime, gmtime...) stay real
        return getattr(_real_time, name)
