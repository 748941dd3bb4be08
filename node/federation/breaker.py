"""A circuit breaker per peer: one peer that hangs must not cost every query its full deadline.

After ``THRESHOLD`` exchanges in a row that timed out or found the peer unreachable, the circuit
opens: queries skip that peer at once and report it ``unreachable`` (``circuit_open``), never as
"no match". After a backoff (doubling from ``PROBE_FIRST`` to ``PROBE_MAX``, with jitter so the
workers of a group do not probe in step) one exchange is let through as a probe; an answer closes
the circuit, another failure opens it for longer. Refusals (the peer answered) and bad answers do
not count: the peer is reachable. Log following and notices keep their own schedules and feed the
breaker, so a peer that comes back is seen by whichever exchange reaches it first.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PROBE_FIRST", "PROBE_MAX", "THRESHOLD", "Breaker", "Breakers"]

THRESHOLD = 3
PROBE_FIRST = 2.0
PROBE_MAX = 60.0


@dataclass
class Breaker:
    """One peer's circuit: ``closed`` (exchanges go), ``open`` (skipped until ``probe_at``) or
    ``half_open`` (one probe in flight)."""

    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    state: str = "closed"
    probe_at: float = 0.0
    backoff: float = PROBE_FIRST

    def allow(self) -> bool:
        """Whether an exchange may go now (an open circuit lets one probe through when due)."""
        if self.state == "closed":
            return True
        if self.state == "open" and self.clock() >= self.probe_at:
            self.state = "half_open"
            return True
        return False

    def succeeded(self) -> None:
        self.failures, self.state, self.backoff = 0, "closed", PROBE_FIRST

    def failed(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= THRESHOLD:
            if self.state == "half_open":
                self.backoff = min(PROBE_MAX, self.backoff * 2)
            self.state = "open"
            self.probe_at = self.clock() + self.backoff * random.uniform(0.8, 1.2)  # noqa: S311

    def retry_in(self) -> float:
        return max(0.0, self.probe_at - self.clock()) if self.state == "open" else 0.0


@dataclass
class Breakers:
    """The breakers of every peer this worker talks to (in memory: reachability, not history)."""

    clock: Callable[[], float] = time.monotonic
    by_peer: dict[str, Breaker] = field(default_factory=dict)

    def of(self, peer: str) -> Breaker:
        return self.by_peer.setdefault(peer, Breaker(self.clock))
