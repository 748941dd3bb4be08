"""One JSON object per log line, so no value a peer or a stranger sends can forge a line.

A plain ``"%(levelname)s %(message)s"`` line copies its arguments verbatim: a fork report whose
``peer`` held ``"chain-a\\n... CRITICAL ..."`` wrote a second, forged ``CRITICAL`` line into
``gov-serve.log``. Here every record is ``json.dumps`` of its time, level, logger name, message
and extra fields (``logger.info("...", extra={"peer": peer})``), exception text included, with
``ensure_ascii=True``: newlines, other line separators (U+2028, U+0085) and lone surrogates are
all escaped, so each record is exactly one ASCII line that a log shipper can parse.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "json_handler"]

_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
"""Attributes every record has; anything else on a record came from ``extra=`` and is a field."""


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra fields, "exc"?, "stack"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(entry, ensure_ascii=True, default=repr, separators=(",", ":"))
        except (TypeError, ValueError):  # a field json cannot take (a circular value, a tuple key)
            entry = {key: value if isinstance(value, str) else repr(value) for key, value in entry.items()}
            return json.dumps(entry, ensure_ascii=True, separators=(",", ":"))


def json_handler(stream: Any = None) -> logging.Handler:
    """A stream handler (stderr by default) writing :class:`JsonFormatter` lines."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    return handler
