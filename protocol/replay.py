"""Replay protection for peer messages: an issued-at window plus a bounded nonce cache.

A message is fresh when ``issued_at`` lies within ``window`` of our clock and its (sender,
nonce) pair has not been seen inside that window. A nonce is forgotten once its message would
fail the time check anyway (``issued_at + window`` has passed), so memory is bounded by the
message rate times twice the window.

Two choices make the guard fail closed:

- When the cache holds ``max_entries`` nonces that are all still inside the window, a new
  message is refused (``ReplayCacheFullError``) rather than forgetting a nonce early, which would
  reopen a replay hole. The default limit is far above what the peer rate limit lets in.
- Nonces are forgotten against the latest clock reading seen, and a message older than that
  reading minus the window is refused, so a clock that steps backwards cannot bring a forgotten
  nonce back into the window.
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from protocol.errors import ClockSkewError, ConfigurationError, ReplayCacheFullError, ReplayError
from protocol.fields import format_time

__all__ = ["DEFAULT_MAX_ENTRIES", "DEFAULT_WINDOW", "ReplayGuard", "check_window"]

DEFAULT_WINDOW = timedelta(seconds=60)
DEFAULT_MAX_ENTRIES = 100_000
MAX_WINDOW = timedelta(hours=1)
"""Hard limit: a longer window would let a captured message be replayed for longer than a retry needs."""


class ReplayGuard:
    """Remembers (sender, nonce) pairs for ``window``; the clock is passed in on every call."""

    def __init__(self, window: timedelta = DEFAULT_WINDOW, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if not timedelta(0) < window <= MAX_WINDOW:
            raise ConfigurationError(
                f"replay window: got {window.total_seconds():g}s, "
                f"expected more than 0s, at most {MAX_WINDOW.total_seconds():.0f}s"
            )
        if max_entries < 1:
            raise ConfigurationError(f"replay cache size: got {max_entries}, expected at least 1")
        self.window = window
        self.max_entries = max_entries
        self._seen: dict[tuple[str, bytes], datetime] = {}
        self._expiry: list[tuple[datetime, str, bytes]] = []
        self._latest: datetime | None = None

    def __len__(self) -> int:
        return len(self._seen)

    def _forget_expired(self, latest: datetime) -> None:
        while self._expiry and self._expiry[0][0] < latest:
            _, sender, nonce = heapq.heappop(self._expiry)
            self._seen.pop((sender, nonce), None)

    def check(self, sender: str, nonce: bytes, issued_at: datetime, now: datetime) -> None:
        """Raise ``ClockSkewError`` or ``ReplayError``, or record the nonce as seen.

        ``ClockSkewError`` when ``issued_at`` is more than ``window`` from ``now`` (or older than
        the latest clock reading minus ``window``); ``ReplayError`` when (sender, nonce) was seen
        inside the window; ``ReplayCacheFullError`` when the cache is full of live nonces.
        """
        latest = check_window(issued_at, now, self._latest, self.window)
        self._latest = latest
        self._forget_expired(latest)
        key = (sender, nonce)
        if key in self._seen:
            raise ReplayError(f"nonce from {sender!r} already seen at {format_time(self._seen[key])}")
        if len(self._seen) >= self.max_entries:
            raise ReplayCacheFullError(
                f"replay cache full ({len(self._seen)}/{self.max_entries} nonces inside the window); retry later"
            )
        self._seen[key] = now
        heapq.heappush(self._expiry, (issued_at + self.window, sender, nonce))


def check_window(issued_at: datetime, now: datetime, latest: datetime | None, window: timedelta) -> datetime:
    """Raise ``ClockSkewError`` unless ``issued_at`` is within ``window`` of ``now`` and not older
    than ``window`` before the latest clock reading; return the new latest reading (a clock that
    steps back never moves it back)."""
    latest = now if latest is None or now > latest else latest
    skew = abs(now - issued_at)
    if skew > window:
        raise ClockSkewError(
            f"issued_at {format_time(issued_at)} is {skew.total_seconds():.0f}s from our clock "
            f"{format_time(now)}; the window is {window.total_seconds():.0f}s"
        )
    if issued_at + window < latest:
        raise ClockSkewError(
            f"issued_at {format_time(issued_at)} is older than the window "
            f"({window.total_seconds():.0f}s) before the latest clock reading {format_time(latest)}"
        )
    return latest
