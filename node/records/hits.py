"""The hit ledger: how often an answer named an entry to an asker, and how alike the probes were.

Answers carry only a band (``governance/disclosure.py``); this stops bands being collected into
a template. Three rules, per asker (a member, or ``staff:<username>``) and entry:

- a probe nearly the same as one already answered within the burst window (a nudged copy, or
  the next frame of one video) gets that earlier answer's band again, so nudging teaches nothing,
  and it does not count against the budget;
- at most ``hits_per_entry_per_day`` distinct hits in 24 hours (``hit_budget_exceeded``);
- for members, ``burst_hits`` near-identical hits within the window is probing, not a sighting,
  and is refused (``probe_burst``): a member's cameras send one face per person passing.

Kept in the database, so every worker of a node shares it. A probe is kept only as a 64-bit
random-hyperplane sketch under hyperplanes derived from the node's data key: near-identical
probes share almost all bits, two photos of one person differ in a dozen or more, and 64 sign
bits cannot be turned back into a face.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.disclosure import SKETCH_BITS, ScoreDisclosure
from node.storage.models import QueryHit
from protocol.errors import PolicyError

__all__ = ["HIT_WINDOW", "HitBudgetExceeded", "HitLedger", "ProbeBurst", "ProposedHit"]

HIT_WINDOW = timedelta(days=1)
_MASK = (1 << 64) - 1


class HitBudgetExceeded(PolicyError):
    """This asker was told of this entry as often as the group allows in 24 hours."""

    code = "hit_budget_exceeded"

    def __init__(self, message: str, *, asker: str, entry_id: str) -> None:
        super().__init__(message)
        self.asker, self.entry_id = asker, entry_id


class ProbeBurst(HitBudgetExceeded):
    """Many hits on one entry by nearly the same face in a short window: a probe, not a sighting."""

    code = "probe_burst"


@dataclass(frozen=True)
class ProposedHit:
    entry_id: str
    probe: np.ndarray
    band: str
    """The band the score earns; a near-identical repeat is answered with the earlier band."""


@dataclass
class _Seen:
    sketch: int
    band: str
    repeat: bool


class HitLedger:
    def __init__(self, engine: Engine, write_lock: threading.RLock, key: bytes, dimension: int) -> None:
        self._engine = engine
        self._lock = write_lock
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=16, person=b"watchnet-sketch").digest(), "big")
        self._planes = np.random.default_rng(seed).standard_normal((SKETCH_BITS, dimension))

    def sketch(self, probe: np.ndarray) -> int:
        bits = (self._planes @ probe.astype(np.float64)) >= 0
        value = int.from_bytes(np.packbits(bits).tobytes(), "big")
        return value - (1 << 64) if value >= 1 << 63 else value

    def named_recently(self, asker: str, entry_id: str, now: datetime) -> bool:
        """Whether an answer named ``entry_id`` to ``asker`` within ``HIT_WINDOW`` (one indexed read)."""
        with Session(self._engine) as session:
            return (
                session.exec(
                    select(QueryHit.id)
                    .where(
                        QueryHit.asker == asker,
                        QueryHit.entry_id == entry_id,
                        col(QueryHit.at) > now - HIT_WINDOW,
                    )
                    .limit(1)
                ).first()
                is not None
            )

    def admit(
        self, asker: str, hits: Sequence[ProposedHit], rule: ScoreDisclosure, now: datetime, *, member: bool
    ) -> list[str]:
        """The band to disclose for each of ``hits``, recorded; or nothing recorded and a refusal."""
        if not hits:
            return []
        near = rule.near_identical_bits
        with self._lock, Session(self._engine) as session:
            session.execute(delete(QueryHit).where(col(QueryHit.at) < now - HIT_WINDOW))
            recent: dict[str, list[_Seen]] = {}
            counted: dict[str, int] = {}
            rows: list[QueryHit] = []
            bands: list[str] = []
            for hit in hits:
                if hit.entry_id not in recent:
                    recent[hit.entry_id] = [
                        _Seen(r.sketch, r.band, r.repeat)
                        for r in session.exec(
                            select(QueryHit)
                            .where(
                                QueryHit.asker == asker,
                                QueryHit.entry_id == hit.entry_id,
                                col(QueryHit.at) >= now - rule.burst_window,
                            )
                            .order_by(col(QueryHit.id))
                        ).all()
                    ]
                    counted[hit.entry_id] = session.exec(
                        select(func.count())
                        .select_from(QueryHit)
                        .where(
                            QueryHit.asker == asker,
                            QueryHit.entry_id == hit.entry_id,
                            col(QueryHit.repeat).is_(False),
                        )
                    ).one()
                sketch = self.sketch(hit.probe)
                alike = [s for s in recent[hit.entry_id] if ((s.sketch ^ sketch) & _MASK).bit_count() <= near]
                if member and len(alike) + 1 >= rule.burst_hits:
                    raise ProbeBurst(
                        f"{len(alike) + 1} hits on entry {hit.entry_id} by near-identical probes from {asker} "
                        f"within {rule.burst_window}: refused as probing (policy.disclosure.burst_hits)",
                        asker=asker,
                        entry_id=hit.entry_id,
                    )
                first = next((s for s in alike if not s.repeat), None)
                if first is None:
                    if counted[hit.entry_id] >= rule.hits_per_entry_per_day:
                        raise HitBudgetExceeded(
                            f"{asker} was told of entry {hit.entry_id} {counted[hit.entry_id]} times in 24 hours; "
                            f"the group allows {rule.hits_per_entry_per_day} (policy.disclosure.hits_per_entry_per_day)",
                            asker=asker,
                            entry_id=hit.entry_id,
                        )
                    counted[hit.entry_id] += 1
                band = hit.band if first is None else first.band
                recent[hit.entry_id].append(_Seen(sketch, band, first is not None))
                rows.append(
                    QueryHit(
                        asker=asker,
                        entry_id=hit.entry_id,
                        at=now,
                        sketch=sketch,
                        band=band,
                        repeat=first is not None,
                    )
                )
                bands.append(band)
            session.add_all(rows)
            session.commit()
            return bands
