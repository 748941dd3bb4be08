"""Typed field access for ``from_dict``: one place that says what a malformed field looks like.

Every typed object in ``protocol`` and ``governance`` reads its dict through ``Fields`` so that
a wrong type, a missing field or an oversized value always raises ``MalformedError`` naming the
object, the field, the value kind received and the one expected. Whatever is left after the
known fields are read is returned by ``rest()`` and kept, so unknown fields survive a round trip.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from protocol.canonical import b64url_decode
from protocol.errors import MalformedError, OversizedError

__all__ = [
    "CODE_RE",
    "DATE_RE",
    "ID_RE",
    "MAX_SAFE_INT",
    "NODE_ID_RE",
    "REFERENCE_RE",
    "Fields",
    "check_wire_time",
    "format_duration",
    "format_time",
    "parse_duration",
    "parse_time",
]

MAX_SAFE_INT = 2**53 - 1
"""Largest integer RFC 8785 (I-JSON) represents exactly."""

NODE_ID_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,62}")
"""Node ids: lower-case DNS-label-like names, e.g. ``chain-a.tokyo``."""
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{7,63}")
"""Entry, event, query and account ids: opaque, URL-safe, 8..64 characters."""
CODE_RE = re.compile(r"[a-z][a-z0-9-]{1,47}")
"""Enumerated codes set by governance: categories, purposes, evidence kinds, items."""
REFERENCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_.#:-]{0,63}")
"""Evidence references (report numbers): no spaces, so no room for a free-text narrative."""
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_DURATION_RE = re.compile(r"^(\d{1,9})(s|m|h|d)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

E = TypeVar("E", bound=Enum)
T = TypeVar("T")


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with seconds precision: the only time form on the wire."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: watchnet times are always UTC-aware")
    u = t.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def check_wire_time(t: datetime, field: str) -> None:
    """Refuse a time the wire cannot carry exactly: naive, or with a fraction of a second."""
    if t.tzinfo is None or t.microsecond:
        raise MalformedError(f"{field}: expected a UTC-aware time in whole seconds")


def parse_time(text: Any, *, field: str = "time") -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SSZ``; anything else is malformed."""
    if not isinstance(text, str) or not _TIME_RE.match(text):
        raise MalformedError(f"{field}: expected time like 2026-01-31T09:00:00Z, got {text!r:.40}")
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as e:
        raise MalformedError(f"{field}: invalid date {text!r}") from e


def parse_duration(text: Any, *, field: str = "duration") -> timedelta:
    """Parse durations written like ``"60s"``, ``"5m"``, ``"24h"``, ``"30d"``."""
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise MalformedError(f"{field}: expected a duration like '60s', '5m', '24h', got {text!r}")
    return timedelta(seconds=int(m.group(1)) * _DURATION_UNITS[m.group(2)])


def format_duration(d: timedelta) -> str:
    """Inverse of ``parse_duration`` using the largest exact unit."""
    seconds = int(d.total_seconds())
    for unit in ("d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Fields:
    """Pops typed fields from a copy of a dict; ``rest()`` returns what nobody read."""

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            raise MalformedError(f"{what}: expected a JSON object, got {type(data).__name__}")
        self._data: dict[str, Any] = dict(data)
        self._what = what

    def _where(self, name: str) -> str:
        return f"{self._what}.{name}"

    def _take(self, name: str, kind: type | tuple[type, ...], kind_name: str) -> Any:
        if name not in self._data:
            raise MalformedError(f"{self._what}: missing field {name!r}")
        value = self._data.pop(name)
        if isinstance(value, bool) and kind is not bool:
            raise MalformedError(f"{self._where(name)}: expected {kind_name}, got bool")
        if not isinstance(value, kind):
            raise MalformedError(f"{self._where(name)}: expected {kind_name}, got {type(value).__name__}")
        return value

    def has(self, name: str) -> bool:
        return name in self._data

    def const(self, name: str, expected: str) -> str:
        value: str = self._take(name, str, "string")
        if value != expected:
            raise MalformedError(f"{self._where(name)}: expected {expected!r}, got {value!r:.60}")
        return value

    def text(self, name: str, *, max_len: int = 256, pattern: re.Pattern[str] | None = None) -> str:
        value: str = self._take(name, str, "string")
        if len(value) > max_len:
            raise OversizedError(f"{self._where(name)}: {len(value)} characters, limit {max_len}")
        if pattern is not None and not pattern.fullmatch(value):
            raise MalformedError(f"{self._where(name)}: {value!r:.60} does not match {pattern.pattern}")
        return value

    def opt_text(
        self, name: str, *, max_len: int = 256, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        if self._data.get(name, None) is None:
            self._data.pop(name, None)
            return None
        return self.text(name, max_len=max_len, pattern=pattern)

    def integer(self, name: str, *, low: int = 0, high: int = MAX_SAFE_INT) -> int:
        value: int = self._take(name, int, "integer")
        if not low <= value <= high:
            raise MalformedError(f"{self._where(name)}: {value} outside [{low}, {high}]")
        return value

    def number(self, name: str, *, low: float, high: float) -> float:
        value = self._take(name, (int, float), "number")
        if not low <= value <= high:
            raise MalformedError(f"{self._where(name)}: {value} outside [{low}, {high}]")
        return float(value)

    def boolean(self, name: str) -> bool:
        value: bool = self._take(name, bool, "boolean")
        return value

    def binary(self, name: str, *, length: int | None = None, max_len: int = 1 << 16) -> bytes:
        text: str = self._take(name, str, "base64url string")
        if len(text) > (max_len * 4 + 2) // 3 + 1:
            raise OversizedError(f"{self._where(name)}: {len(text)} characters, limit {max_len} bytes")
        return b64url_decode(text, field=self._where(name), length=length)

    def time(self, name: str) -> datetime:
        if name not in self._data:
            raise MalformedError(f"{self._what}: missing field {name!r}")
        return parse_time(self._data.pop(name), field=self._where(name))

    def opt_time(self, name: str) -> datetime | None:
        if self._data.get(name, None) is None:
            self._data.pop(name, None)
            return None
        return self.time(name)

    def enum(self, name: str, enum_type: type[E]) -> E:
        value: str = self._take(name, str, "string")
        try:
            return enum_type(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum_type)
            raise MalformedError(f"{self._where(name)}: {value!r:.60} is not one of {allowed}") from None

    def obj(self, name: str) -> dict[str, Any]:
        value: dict[str, Any] = self._take(name, dict, "object")
        return value

    def array(self, name: str, *, max_items: int = 1024) -> list[Any]:
        value: list[Any] = self._take(name, list, "array")
        if len(value) > max_items:
            raise OversizedError(f"{self._where(name)}: {len(value)} items, limit {max_items}")
        return value

    def texts(
        self,
        name: str,
        *,
        max_items: int = 256,
        max_len: int = 256,
        pattern: re.Pattern[str] | None = None,
        unique: bool = True,
    ) -> list[str]:
        items = self.array(name, max_items=max_items)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise MalformedError(f"{self._where(name)}[{i}]: expected string, got {type(item).__name__}")
            if len(item) > max_len:
                raise OversizedError(f"{self._where(name)}[{i}]: {len(item)} characters, limit {max_len}")
            if pattern is not None and not pattern.fullmatch(item):
                raise MalformedError(
                    f"{self._where(name)}[{i}]: {item!r:.60} does not match {pattern.pattern}"
                )
        if unique and len(set(items)) != len(items):
            raise MalformedError(f"{self._where(name)}: duplicate items")
        return items

    def optional(self, name: str, default: T, read: Callable[[str], T]) -> T:
        """``read(name)`` when the field is present, else ``default`` (for settings with defaults)."""
        return read(name) if name in self._data else default

    def finish(self) -> None:
        """Refuse fields nobody read, for objects that allow no extension (settings, free text)."""
        if self._data:
            raise MalformedError(f"{self._what}: unknown fields {sorted(self._data)}")

    def rest(self) -> dict[str, Any]:
        """The fields nobody read: kept verbatim and re-serialised unchanged."""
        return dict(self._data)
