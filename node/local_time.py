"""Times as people read them: in the node's time zone (Asia/Tokyo by default), in the page's
language, through Babel's CLDR patterns, so a store's staff read 2026年12月2日 19:05 JST.

Only pages, notices and reports use this. The wire, the logs, the audit chain and every field a
machine reads stay in UTC (RFC 3339 with ``Z``). Database times are naive UTC (SQLite keeps no
offset), so a naive time is read as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime

from protocol.errors import MalformedError
from protocol.fields import parse_time

__all__ = ["LocalTimes"]

_LOCALES = {"ja": "ja_JP", "en": "en_GB"}
_MINUTES = {"ja": "y年M月d日 H:mm zzz", "en": "d MMM y, HH:mm zzz"}
_SECONDS = {"ja": "y年M月d日 H:mm:ss zzz", "en": "d MMM y, HH:mm:ss zzz"}
_DAY = {"ja": "y年M月d日", "en": "d MMM y"}


@dataclass(frozen=True)
class LocalTimes:
    """The formatters one page uses: ``when`` for a moment, ``day`` for a calendar date."""

    lang: str
    zone: ZoneInfo

    def _moment(self, t: datetime | str) -> datetime:
        if isinstance(t, str):
            t = parse_time(t)
        return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).astimezone(self.zone)

    def when(self, t: datetime | str | None, *, seconds: bool = False) -> str:
        """A moment in the node's zone (empty for none, the text itself if it is not a time)."""
        if t is None or t == "":
            return ""
        try:
            local = self._moment(t)
        except MalformedError:
            return str(t)
        patterns = _SECONDS if seconds else _MINUTES
        return format_datetime(local, patterns[self.lang], tzinfo=self.zone, locale=_LOCALES[self.lang])

    def day(self, d: date | datetime | str | None) -> str:
        """A calendar date; a moment is first moved into the node's zone (its local day)."""
        if d is None or d == "":
            return ""
        day: date | datetime
        if isinstance(d, str):
            try:
                day = date.fromisoformat(d) if len(d) == 10 else self._moment(d)
            except (ValueError, MalformedError):
                return d
        else:
            day = d
        if isinstance(day, datetime):
            day = self._moment(day).date()
        return format_date(day, _DAY[self.lang], locale=_LOCALES[self.lang])
