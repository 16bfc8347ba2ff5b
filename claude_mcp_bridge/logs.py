"""Logging to stderr: JSON lines for machines, plain lines for people.

``auto`` picks JSON when stderr is not a terminal (a service, Claude Desktop's log
file) and text on a terminal. Every record may carry structured fields through
``extra=`` (``event``, ``call_id``, ``tool``, ``outcome``, ``cost_usd``,
``duration_ms``...); JSON output keeps them as keys. A secret registered with
``configure(secrets=...)`` (the HTTP bearer token) is masked in every message, and so is
whatever follows ``Bearer`` (the server never knows clients' tokens, only their hashes,
so it masks any credential it might print).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "text"]

# Attributes every LogRecord has; anything else came from ``extra=`` and is kept.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",;]+")


class _Redact(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _BEARER.sub(r"\1***", message)
        for secret in self._secrets:
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure(level: str, fmt: LogFormat = "auto", *, secrets: Iterable[str] = (),
              stream: TextIO | None = None) -> None:
    """Send every log record (the SDK's and uvicorn's included) to stderr."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if use_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redact(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
