"""Logging for hooks and commands: one line per event, to stderr, with secrets masked.

`mask_secrets` (and `SecretMask`, its reusable form) is the one masking rule, shared with
sqlclient's error scrubber: a known secret is hidden as typed, SQL-escaped (backslash or doubled quote)
and inside a Python repr or JSON string of either; whatever literal follows PASSWORD=, PASSWORD(,
IDENTIFIED BY/VIA/WITH ... and SET PASSWORD ... = is hidden too, secret known or not."""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Iterable, List, Sequence

_FMT = "%(asctime)s.%(msecs)03d %(levelname)s [%(node)s] %(name)s: %(message)s"
HIDDEN = "<hidden>"

# A SQL string literal, '...' or "...", with backslash escapes and doubled quotes; one cut off at the
# end of the text (a server's error echo stops after 80 characters) counts to the end.
_LITERAL = r"""(?:'(?:[^'\\]|\\.|'')*(?:'|\\?$)|"(?:[^"\\]|\\.|"")*(?:"|\\?$))"""
_SQL_SECRET = re.compile(
    r"(?P<k>(?:"
    r"PASSWORD\s*(?:=|\(|\bBY\b)"                                   # MASTER_PASSWORD=, PASSWORD('..')
    r"|\bIDENTIFIED\s+(?:(?:VIA|WITH)\s+\w+\s+)?(?:USING|BY|AS)(?:\s+PASSWORD)?\s*\(?"
    r"|\bSET\s+PASSWORD\b[^=;]{0,200}?=(?:\s*PASSWORD\s*\()?"        # SET PASSWORD FOR u@h = '..'
    r")\s*)" + _LITERAL, re.I | re.S)


def _sql_inner(s: str) -> str:
    """The secret as our SQL literals carry it (flavors.base.quote without the quotes)."""
    for a, b in (("\\", "\\\\"), ("'", "\\'"), ("\0", "\\0"), ("\n", "\\n"), ("\r", "\\r"), ("\x1a", "\\Z")):
        s = s.replace(a, b)
    return s


def secret_forms(secret: str) -> List[str]:
    """Every way `secret` can show up in text we print, longest first."""
    s = str(secret)
    base = {s, _sql_inner(s), s.replace("'", "''"), s.replace("\\", "\\\\")}
    out = set()
    for b in base:
        doubled = b.replace("\\", "\\\\")            # inside a repr: backslashes doubled ...
        out.update({b, doubled, doubled.replace("'", "\\'"),  # ... and the quote escaped, or not
                    doubled.replace('"', '\\"'), repr(b)[1:-1], json.dumps(b)[1:-1]})
    out.discard("")
    return sorted(out, key=len, reverse=True)


class SecretMask:
    """Masks a fixed set of secrets (see the module doc); build once, call for every text."""

    def __init__(self, secrets: Iterable[str] = (), min_len: int = 1):
        forms = set()
        for s in secrets:
            if s and len(str(s)) >= min_len:
                forms.update(secret_forms(str(s)))
        self.forms: Sequence[str] = sorted(forms, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        text = str(text)
        for f in self.forms:
            if f in text:
                text = text.replace(f, HIDDEN)
        return _SQL_SECRET.sub(lambda m: f"{m.group('k')}'{HIDDEN}'", text)


def mask_secrets(text: object, secrets: Iterable[str] = ()) -> str:
    """`text` with every form of every secret, and any literal where SQL puts a password, hidden."""
    return SecretMask(secrets)(text)


class _Redact(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        # Very short secrets are not masked: hiding every "ab" in every line helps nobody.
        self.mask = SecretMask(secrets, min_len=3)
        self.node = os.environ.get("MYSQLPILOT_NODE") or os.environ.get("HOSTNAME") or "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: the handler reports it as usual
            return True
        masked = self.mask(msg)
        if masked != msg or record.args:
            # Formatted once here, so a '%' in a secret or a value is never formatted again.
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
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
