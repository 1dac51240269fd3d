"""Logging for hooks and commands: one line per event, to stderr, with secrets masked."""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, List

_FMT = "%(asctime)s.%(msecs)03d %(levelname)s [%(node)s] %(name)s: %(message)s"


class _Redact(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets: List[str] = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)
        self.node = os.environ.get("MYSQLPILOT_NODE") or os.environ.get("HOSTNAME") or "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        if self.secrets:
            msg = record.getMessage()
            for s in self.secrets:
                msg = msg.replace(s, "<hidden>")
            record.msg, record.args = msg, None
        return True


def setup_logging(level: str = "info", secrets: Iterable[str] = ()) -> None:
    root = logging.getLogger()
    handler = None
    for h in root.handlers:
        if getattr(h, "_mysqlpilot", False):
            handler = h
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._mysqlpilot = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(_FMT, "%Y-%m-%dT%H:%M:%S"))
        root.addHandler(handler)
    for f in list(handler.filters):
        handler.removeFilter(f)
    handler.addFilter(_Redact(secrets))
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
