"""How long to wait for a peer's private-mode answer: the deadline follows the work asked for.

A round-1 message costs the peer a CKKS evaluation per face, tens to hundreds of milliseconds
each and several times more on a busy machine, so one fixed deadline either gives up on a peer
that is working (and the querier would wrongly report "no match") or waits far too long for one
that is down. The deadline is the ordinary peer deadline plus a safety margin times the faces in
the message times the per-face cost last measured at that peer (a prior until one is measured),
within a cap; a message holds no more faces than fit under the cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PRIOR_FACE_SECONDS", "PrivateDeadlines"]

PRIOR_FACE_SECONDS = 0.3
"""Per-face cost assumed before one is measured: the norm-check answer at 4096 slots on a busy
2-core machine (about 0.1 s when idle; docs/private-mode.md)."""

MARGIN = 3.0
"""Measured costs vary with load; a peer is given three times the expected work before we give up."""

SMOOTHING = 0.3

MIN_FACE_SECONDS = 0.005
"""No evaluation is free: a measured cost below this (a clock step, a tiny gallery) is taken as this."""


@dataclass
class PrivateDeadlines:
    """Per-peer measured cost of one face in round 1, and the deadlines derived from it."""

    base: float
    """The ordinary peer deadline in seconds (network, queueing, opening the message)."""
    cap: float
    """No message waits longer than this, however many faces it holds."""
    max_faces: int
    """The wire format's limit of faces per round-1 message."""
    cost: dict[str, float] = field(default_factory=dict)

    def face_cost(self, peer: str) -> float:
        return max(MIN_FACE_SECONDS, self.cost.get(peer, PRIOR_FACE_SECONDS))

    def faces_per_message(self, peer: str) -> int:
        """As many faces as the wire allows whose expected work still fits under the cap."""
        room = (self.cap - self.base) / (MARGIN * self.face_cost(peer))
        return max(1, min(self.max_faces, int(room)))

    def round1(self, peer: str, faces: int) -> float:
        """Seconds to wait for a round-1 answer of ``faces`` faces from ``peer``."""
        return min(self.cap, self.base + MARGIN * faces * self.face_cost(peer))

    def bulk(self) -> float:
        """Seconds for a bulk upload (the evaluation keys, several megabytes the peer must parse)."""
        return min(self.cap, 3 * self.base)

    def measured(self, peer: str, faces: int, seconds: float) -> None:
        """Fold one answered round 1 into the peer's cost (smoothed: one quiet answer is not a trend)."""
        if faces <= 0:
            return
        sample = seconds / faces
        previous = self.cost.get(peer)
        self.cost[peer] = sample if previous is None else (1 - SMOOTHING) * previous + SMOOTHING * sample

    def timed_out(self, peer: str, faces: int, waited: float) -> None:
        """No answer in ``waited`` seconds: the peer costs at least that much per face, so the next
        deadline is longer (and the next message shorter) rather than failing the same way."""
        if faces > 0:
            self.cost[peer] = max(self.face_cost(peer), waited / faces)
