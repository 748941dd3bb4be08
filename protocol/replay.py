"""Replay protection for peer messages: an issued-at window plus a bounded nonce cache.

A message is fresh when ``issued_at`` lies within ``window`` of our clock and its (sender,
nonce) pair has not been seen inside that window. Nonces older than the window are forgotten,
because their messages would fail the time check anyway. When the cache is full of nonces that
are still inside the window, new messages are refused (fail closed) rather than forgetting a
nonce early, which would reopen a replay hole; the limit is sized far above the peer rate limit.
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from protocol.errors import ClockSkewError, ReplayError
from protocol.fields import format_time

__all__ = ["ReplayGuard"]


class ReplayGuard:
    """Remembers (sender, nonce) pairs for ``window``; the clock is passed in."""

    def __init__(self, window: timedelta = timedelta(seconds=60), max_entries: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: dict[tuple[str, bytes], datetime] = {}
        self._expiry: list[tuple[datetime, str, bytes]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def _forget_expired(self, now: datetime) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, sender, nonce = heapq.heappop(self._expiry)
            self._seen.pop((sender, nonce), None)

    def check(self, sender: str, nonce: bytes, issued_at: datetime, now: datetime) -> None:
        """Raise ``ClockSkewError`` or ``ReplayError``, or record the nonce as seen."""
        if abs(now - issued_at) > self.window:
            raise ClockSkewError(
                f"issued_at {format_time(issued_at)} is {abs(now - issued_at).total_seconds():.0f}s from our "
                f"clock {format_time(now)}; the window is {self.window.total_seconds():.0f}s"
            )
        self._forget_expired(now)
        key = (sender, nonce)
        if key in self._seen:
            raise ReplayError(f"nonce from {sender!r} already seen at {format_time(self._seen[key])}")
        if len(self._seen) >= self.max_entries:
            raise ReplayError(f"replay cache full ({self.max_entries} nonces inside the window); retry later")
        self._seen[key] = now
        heapq.heappush(self._expiry, (issued_at + self.window, sender, nonce))
