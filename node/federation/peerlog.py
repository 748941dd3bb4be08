"""How a peer's repeated failures reach the log: quiet while the network comes up, then once, then rarely.

A node's follower syncs with every peer every couple of seconds. When the node starts before its
peers (a whole group brought up at once, a peer restarting), each of those attempts used to log
a WARNING, so the start of a healthy network read as an outage. ``PeerLog`` decides per peer:

- an unreachable peer within ``grace`` of the first failure is logged at INFO (it may be starting);
- past the grace, one WARNING says how long and how many times it failed;
- while it stays down, a single "still unreachable" reminder follows after ``first_reminder``,
  each next one after twice the wait, up to ``max_reminder``;
- any other failure (the peer refused us, bad data) is a WARNING at once, since waiting does not
  explain it, and the same failure repeated is reminded of with the same backoff;
- the first success after failures logs one INFO line saying the peer is back.

Only the peer's node id and the error code are logged, never message bodies. The clock is
injected (monotonic seconds) so the schedule is testable without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PeerLog"]

GRACE = 60.0
"""Seconds an unreachable peer is taken to be starting up (logged at INFO)."""
FIRST_REMINDER = 300.0
MAX_REMINDER = 3600.0


@dataclass
class _Trouble:
    code: str
    since: float
    failures: int = 0
    warned_at: float | None = None
    wait: float = FIRST_REMINDER


class PeerLog:
    """Log a peer's failures and its recovery without repeating the same WARNING every sync."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        grace: float = GRACE,
        first_reminder: float = FIRST_REMINDER,
        max_reminder: float = MAX_REMINDER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._grace = grace
        self._first = first_reminder
        self._max = max_reminder
        self._clock = clock
        self._trouble: dict[str, _Trouble] = {}

    def failed(self, peer: str, what: str, code: str, *, unreachable: bool) -> None:
        """``what`` ("sync", "notify") with ``peer`` failed with ``code``."""
        now = self._clock()
        trouble = self._trouble.get(peer)
        if trouble is None or trouble.code != code:
            trouble = self._trouble[peer] = _Trouble(code=code, since=now, wait=self._first)
        trouble.failures += 1
        down = now - trouble.since
        if trouble.warned_at is None:
            if unreachable and down < self._grace:
                self._log.info(
                    "%s with %s failed: %s (attempt %d; the peer may still be starting)",
                    what,
                    peer,
                    code,
                    trouble.failures,
                )
                return
            trouble.warned_at = now
            self._log.warning(
                "%s with %s failed: %s (%d attempts over %.0f s)", what, peer, code, trouble.failures, down
            )
            return
        if now - trouble.warned_at >= trouble.wait:
            trouble.warned_at = now
            trouble.wait = min(trouble.wait * 2, self._max)
            self._log.warning(
                "%s with %s still failing: %s for %.0f s (%d attempts); next reminder in %.0f s",
                what,
                peer,
                code,
                down,
                trouble.failures,
                trouble.wait,
            )

    def succeeded(self, peer: str, what: str) -> None:
        """``what`` with ``peer`` worked: say so once if it had been failing."""
        trouble = self._trouble.pop(peer, None)
        if trouble is None:
            return
        self._log.info(
            "%s with %s works again after %d failed attempts over %.0f s (%s)",
            what,
            peer,
            trouble.failures,
            self._clock() - trouble.since,
            trouble.code,
        )
