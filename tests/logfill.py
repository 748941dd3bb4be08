"""Fill a node's event log in bulk, for the tests and benchmarks of whoever reads the whole log.

As ``bench/query.py`` fills a gallery: each stand-in entry is an active row with its embedding
(a random unit vector) and salt sealed by the node's data key, signed and logged as version 1 as
approval does (``Registry._issue_version``), so the node's check of its store against its signed
log holds; without the proposal and its audit records, and under one tree head per call
(``Registry._publish_head``) instead of one per entry.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlmodel import Session

from node.context import NodeContext
from node.records.registry import ACTIVE
from node.storage.models import EntryRow
from protocol.commitment import new_salt
from protocol.events import EventKind, EventReason

__all__ = ["fill_log"]

CHUNK = 2000
"""Entries written per transaction."""


def fill_log(context: NodeContext, count: int, *, now: datetime | None = None, seed: int = 0) -> int:
    """Append ``count`` registration events to ``context``'s log and sign one head; the new size.

    Every record key is written as the node writes it, fsync included: a fill measures nothing,
    but it must not be a node that no real one could be."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    registry = context.registry
    vault = registry.vault
    officer = next(m.id for m, _ in context.accounts.list() if m.role == "officer")
    registrar = next(m.id for m, _ in context.accounts.list() if m.role == "registrar")
    dimension = context.manifest.policy.model.dimension
    rng = np.random.default_rng(seed)
    incident = (now - timedelta(days=1)).date().isoformat()
    for first in range(0, count, CHUNK):
        with Session(context.engine) as session:
            for j in range(first, min(first + CHUNK, count)):
                vector = rng.standard_normal(dimension).astype("<f4")
                vector /= np.linalg.norm(vector)
                entry_id = f"ent-{secrets.token_hex(10)}"
                vault.new_record(entry_id)
                row = EntryRow(
                    entry_id=entry_id,
                    version=1,
                    status=ACTIVE,
                    category="shoplifting",
                    site="store-01",
                    evidence_kind="police-report",
                    evidence_reference=f"FILL-{seed:03d}-{j:07d}",
                    incident_date=incident,
                    registrar=registrar,
                    officer=officer,
                    proposed_at=now,
                    registered_at=now,
                    expires_at=now + timedelta(days=300),
                    embedding_ct=vault.seal_record(entry_id, vector.tobytes(), field="embedding"),
                    salt_ct=vault.seal_record(entry_id, new_salt(), field="salt"),
                )
                session.add(row)
                registry._issue_version(
                    session, row, officer, EventKind.REGISTERED, EventReason.REGISTRATION, now
                )
            session.commit()
    registry._publish_head(now)
    return registry.log.size
