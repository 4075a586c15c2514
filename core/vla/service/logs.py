"""Structured log lines: an event name and key=value fields, as text or as JSON lines.

    setup_logging("info", fmt="json")      # or $VLA_LOG_FORMAT=json
    log_event(log, "refused", arm="arm01", code="unauthorized")

Text for people at a terminal, JSON for `docker logs` shippers; both carry the same fields.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

FORMATS = ("text", "json")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, "vla_fields", None) or {}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = " ".join(f"{k}={_text(v)}" for k, v in _fields(record).items())
        line = f"{stamp}Z {record.levelname} {record.name} {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _fields(record).items():
            body.setdefault(key, value)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in " \"=\n")) else text


def setup_logging(level: str = "info", fmt: str | None = None) -> None:
    """Configure the root logger once for a server process."""
    fmt = (fmt or os.environ.get("VLA_LOG_FORMAT") or "text").lower()
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"vla_fields": fields})
