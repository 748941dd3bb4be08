"""What an answer may say about how close a face is to an entry, and how often.

An exact cosine per answer is an oracle: about 512 probes near a matching photo, each with its
score, give the stored embedding by least squares (cosine 1.0), which a member could then keep
matching after the owner deletes the entry, or invert into a face. So answers carry only a
verdict and a coarse band (``match``, or ``strong`` at or above a second threshold), exact
scores never leave the answering node, and each asker (a member, or a member's staff for local
matches) may be told of one entry only so many times a day. Hits on one entry by probes that are
nearly the same face (closer than any two real photos of a person) are a probing burst and are
refused too. The group sets the numbers in its manifest; a manifest without them gets these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from protocol.errors import MalformedError
from protocol.fields import Fields, format_duration, parse_duration

__all__ = ["BANDS", "ScoreDisclosure", "default_disclosure"]

BANDS = ("match", "strong")
DEFAULT_STRONG_MARGIN = 0.15
SKETCH_BITS = 64


@dataclass(frozen=True)
class ScoreDisclosure:
    strong_threshold: float
    """At or above: band ``strong``; from the match threshold up to it: band ``match``."""
    hits_per_entry_per_day: int = 20
    """How many answers in 24 hours may name one entry to one asker."""
    burst_hits: int = 6
    """This many hits on one entry by near-identical probes within ``burst_window`` is a probe."""
    burst_window: timedelta = timedelta(minutes=10)
    near_identical_cosine: float = 0.98
    """Probes closer than this are "the same face, nudged": two real photos of a person are not."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strong_threshold) and 0.0 < self.strong_threshold <= 1.0):
            raise MalformedError(
                f"policy.disclosure.strong_threshold {self.strong_threshold}: expected (0, 1]"
            )
        if not 1 <= self.hits_per_entry_per_day <= 10_000:
            raise MalformedError("policy.disclosure.hits_per_entry_per_day: expected 1..10000")
        if not 2 <= self.burst_hits <= 1000:
            raise MalformedError("policy.disclosure.burst_hits: expected 2..1000")
        if not timedelta(seconds=10) <= self.burst_window <= timedelta(days=1):
            raise MalformedError("policy.disclosure.burst_window: expected 10s..1d")
        if not 0.9 <= self.near_identical_cosine < 1.0:
            raise MalformedError("policy.disclosure.near_identical_cosine: expected [0.9, 1)")

    def band(self, score: float) -> str:
        """The coarse band of a score already at or above the match threshold."""
        return "strong" if score >= self.strong_threshold else "match"

    @property
    def near_identical_bits(self) -> int:
        """Largest Hamming distance between two 64-bit random-hyperplane sketches still taken as
        near-identical: 1.5 x the distance expected at ``near_identical_cosine``, at least 2."""
        expected = SKETCH_BITS * math.acos(self.near_identical_cosine) / math.pi
        return max(2, round(1.5 * expected))

    def to_dict(self) -> dict[str, Any]:
        return {
            "strong_threshold": self.strong_threshold,
            "hits_per_entry_per_day": self.hits_per_entry_per_day,
            "burst_hits": self.burst_hits,
            "burst_window": format_duration(self.burst_window),
            "near_identical_cosine": self.near_identical_cosine,
        }

    @classmethod
    def from_dict(cls, data: Any, match_threshold: float) -> ScoreDisclosure:
        f = Fields(data, "policy.disclosure")
        default = default_disclosure(match_threshold)
        disclosure = cls(
            strong_threshold=f.optional(
                "strong_threshold", default.strong_threshold, lambda n: f.number(n, low=0.0, high=1.0)
            ),
            hits_per_entry_per_day=f.optional(
                "hits_per_entry_per_day",
                default.hits_per_entry_per_day,
                lambda n: f.integer(n, low=1, high=10_000),
            ),
            burst_hits=f.optional("burst_hits", default.burst_hits, lambda n: f.integer(n, low=2, high=1000)),
            burst_window=f.optional(
                "burst_window",
                default.burst_window,
                lambda n: parse_duration(f.text(n, max_len=16), field=f"policy.disclosure.{n}"),
            ),
            near_identical_cosine=f.optional(
                "near_identical_cosine",
                default.near_identical_cosine,
                lambda n: f.number(n, low=0.0, high=1.0),
            ),
        )
        if f.rest():
            raise MalformedError(f"policy.disclosure: unexpected fields {sorted(f.rest())}")
        if disclosure.strong_threshold <= match_threshold:
            raise MalformedError(
                f"policy.disclosure.strong_threshold {disclosure.strong_threshold} must be above the "
                f"match threshold {match_threshold}"
            )
        return disclosure


def default_disclosure(match_threshold: float) -> ScoreDisclosure:
    """What a manifest without ``policy.disclosure`` means."""
    return ScoreDisclosure(strong_threshold=min(1.0, round(match_threshold + DEFAULT_STRONG_MARGIN, 4)))
