"""Progress lines for long work (snapshot upload, download, restore): bytes, MB/s, percent."""
from __future__ import annotations

import logging
import time
from typing import Optional


class Progress:
    def __init__(self, label: str, total: Optional[int] = None, every: float = 5.0,
                 logger: Optional[logging.Logger] = None):
        self.label, self.total, self.every = label, total, every
        self.log = logger or logging.getLogger("mysqlpilot.progress")
        self.done = 0
        self.start = time.monotonic()
        self._last = self.start

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.log.info("%s", self.line())

    def rate(self) -> float:
        return self.done / max(1e-6, time.monotonic() - self.start) / 1e6

    def line(self) -> str:
        pct = f", {100.0 * self.done / self.total:.0f}%" if self.total else ""
        return f"{self.label}: {self.done / 1e6:.1f} MB at {self.rate():.1f} MB/s{pct}"

    def finish(self) -> str:
        line = self.line() + f" in {time.monotonic() - self.start:.1f}s"
        self.log.info("%s (done)", line)
        return line
