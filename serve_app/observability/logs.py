"""Structured logs: one JSON object per line (or key=value text), with the fields a record carries.

Code logs with ``log.info(message, extra={"fields": {...}})``; this formatter puts the fields at the
top level of the JSON line. Only ids, names, sizes, timings and outcomes are ever put in fields:
never audio, API keys or URL query strings.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

LOGGER = "mirstream"
_TEXT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...fields}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """The usual text line with ``key=value`` fields appended."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        line = super().format(record)
        return line + "".join(f" {k}={v}" for k, v in fields.items()) if fields else line


def configure_logging(level: str, fmt: str) -> None:
    """Send the ``mirstream`` loggers to stderr in ``fmt`` ('json' or 'text') at ``level``; idempotent."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.handlers = [handler]
    logger.propagate = False


def loggable_url(url: str) -> str:
    """scheme://host[:port]/path: no credentials, query string or fragment (they can carry tokens)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
