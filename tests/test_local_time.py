"""Times on pages: the node's zone and the page's language (Babel), UTC only on the wire."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from node.config import ConsoleSettings
from node.local_time import LocalTimes
from protocol.errors import MalformedError

TOKYO = ZoneInfo("Asia/Tokyo")
LATE_EVENING_UTC = datetime(2026, 12, 1, 22, 5, 7, tzinfo=UTC)
"""07:05 on 2 December in Tokyo: the day changes with the zone."""


def test_a_moment_is_shown_in_tokyo_in_japanese_and_english() -> None:
    assert LocalTimes("ja", TOKYO).when(LATE_EVENING_UTC) == "2026年12月2日 7:05 JST"
    assert LocalTimes("ja", TOKYO).when(LATE_EVENING_UTC, seconds=True) == "2026年12月2日 7:05:07 JST"
    assert LocalTimes("en", TOKYO).when(LATE_EVENING_UTC) == "2 Dec 2026, 07:05 +0900"
    assert LocalTimes("ja", TOKYO).when("2026-12-01T22:05:07Z") == "2026年12月2日 7:05 JST", "a wire time too"
    naive = LATE_EVENING_UTC.replace(tzinfo=None)  # as SQLite gives it back: UTC without an offset
    assert LocalTimes("ja", TOKYO).when(naive) == "2026年12月2日 7:05 JST"
    assert LocalTimes("ja", ZoneInfo("Europe/London")).when(LATE_EVENING_UTC) == "2026年12月1日 22:05 +0000"


def test_a_day_is_the_local_day() -> None:
    assert LocalTimes("ja", TOKYO).day(LATE_EVENING_UTC) == "2026年12月2日"
    assert LocalTimes("en", TOKYO).day(date(2026, 11, 1)) == "1 Nov 2026"
    assert LocalTimes("ja", TOKYO).day("2026-11-01") == "2026年11月1日"
    assert LocalTimes("ja", TOKYO).day(None) == "" and LocalTimes("ja", TOKYO).when(None) == ""
    assert LocalTimes("ja", TOKYO).when("not a time") == "not a time"


def test_the_zone_is_checked_when_the_config_is_read() -> None:
    assert ConsoleSettings.from_dict({"time_zone": "Asia/Tokyo"}).zone == TOKYO
    assert ConsoleSettings().time_zone == "Asia/Tokyo"
    for bad in ("Tokyo", "Asia/Nowhere", "../../etc/passwd", ""):
        with pytest.raises(MalformedError, match="IANA time zone"):
            ConsoleSettings.from_dict({"time_zone": bad})
