"""Logging: JSON lines for machines, readable lines for people.

A scheduler or journald gets one JSON object per line (event, level, time and
the structured fields passed as ``extra``); a person at a terminal gets plain
text.  Log calls pass counts, site ids, run ids and resource references,
never resource content, so no PHI reaches the log (docs/design.md §6).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        return f"{record.levelname.lower():7} {record.getMessage()} {fields}".rstrip()


def configure(level: str = "warning", json_logs: bool | None = None) -> None:
    """Send adapter logs to stderr, as JSON unless stderr is a terminal."""
    use_json = (not sys.stderr.isatty()) if json_logs is None else json_logs
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger("adapter")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
