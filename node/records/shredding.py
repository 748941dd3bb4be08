"""Keeping the key store and the database in step: the one-off upgrade and the orphan sweep.

``reseal_legacy`` moves records sealed under the node's data key (before ADR 0003) to keys of
their own, so a later deletion shreds them too; it is idempotent and cheap once done (a ``stat``
per live record). ``shred_orphans`` destroys the keys of records the database shows closed, for
the case where a key outlived its record's closure (a crash between the commit of an older
release's erasure and nothing else), and the keys of records that were never written (a proposal
whose transaction failed after its key was made).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.records.vault import Vault
from node.storage.models import AlertFace, EntryRow, EventPayloadRow, SubjectRequest
from protocol.errors import DecryptionError

__all__ = ["ResealReport", "reseal_legacy", "shred_orphans"]

LOG = logging.getLogger("watchnet.shredding")
_LIVE_ENTRY = ("proposed", "active")
_CHUNK = 500
ORPHAN_AGE_SECONDS = 3600.0
"""A key with no row at all is left this long: its proposal's transaction may still be open."""


@dataclass(frozen=True)
class ResealReport:
    entries: int
    requests: int


def _reseal(vault: Vault, record_id: str, fields: Iterable[tuple[str, bytes | None]]) -> dict[str, bytes]:
    """Open each legacy field under the node key and seal it under the record's new key."""
    opened = {name: vault.open(ct, binding=f"{record_id}/{name}") for name, ct in fields if ct is not None}
    vault.new_record(record_id)
    return {name: vault.seal_record(record_id, data, field=name) for name, data in opened.items()}


def reseal_legacy(engine: Engine, vault: Vault) -> ResealReport:
    """Give every live record sealed under the node's data key a key of its own."""
    entries = requests = 0
    with Session(engine) as session:
        rows = session.exec(
            select(EntryRow).where(
                col(EntryRow.status).in_(_LIVE_ENTRY), col(EntryRow.embedding_ct).is_not(None)
            )
        ).all()
        for row in rows:
            if vault.records.exists(row.entry_id):
                continue
            try:
                sealed = _reseal(
                    vault,
                    row.entry_id,
                    (("embedding", row.embedding_ct), ("salt", row.salt_ct), ("crop", row.crop_ct)),
                )
            except DecryptionError:
                continue  # sealed under a record key that is destroyed: a held closure, not legacy
            row.embedding_ct, row.salt_ct = sealed["embedding"], sealed["salt"]
            row.crop_ct = sealed.get("crop")
            session.add(row)
            for payload in session.exec(
                select(EventPayloadRow).where(
                    EventPayloadRow.entry_id == row.entry_id, col(EventPayloadRow.payload_ct).is_not(None)
                )
            ).all():
                assert payload.payload_ct is not None
                data = vault.open(payload.payload_ct, binding=f"{payload.event_id}/payload")
                payload.payload_ct = vault.seal_record(
                    row.entry_id, data, field=f"payload/{payload.event_id}"
                )
                session.add(payload)
            entries += 1
        for request in session.exec(
            select(SubjectRequest).where(
                SubjectRequest.status != "closed",
                (col(SubjectRequest.photo_ct).is_not(None)) | (col(SubjectRequest.embedding_ct).is_not(None)),
            )
        ).all():
            if vault.records.exists(request.id):
                continue
            try:
                sealed = _reseal(
                    vault, request.id, (("photo", request.photo_ct), ("embedding", request.embedding_ct))
                )
            except DecryptionError:
                continue
            request.photo_ct, request.embedding_ct = sealed.get("photo"), sealed.get("embedding")
            session.add(request)
            requests += 1
        session.commit()
    if entries or requests:
        LOG.warning(
            "moved %d entries and %d data-subject requests from the node's data key to keys of their "
            "own; backups taken before today still open with the data key: expire them on the "
            "deletion deadline's schedule",
            entries,
            requests,
        )
    return ResealReport(entries, requests)


def shred_orphans(engine: Engine, vault: Vault, *, now: float | None = None) -> list[str]:
    """Destroy the keys of records the database shows closed or never wrote; return their ids."""
    held = vault.records.record_ids()
    if not held:
        return []
    entries: dict[str, str] = {}
    requests: dict[str, str] = {}
    alerts: dict[str, bool] = {}
    with Session(engine) as session:
        for first in range(0, len(held), _CHUNK):
            chunk = held[first : first + _CHUNK]
            entries.update(
                session.exec(
                    select(EntryRow.entry_id, EntryRow.status).where(col(EntryRow.entry_id).in_(chunk))
                ).all()
            )
            requests.update(
                session.exec(
                    select(SubjectRequest.id, SubjectRequest.status).where(col(SubjectRequest.id).in_(chunk))
                ).all()
            )
            alerts.update(
                (alert_id, erased_at is not None)
                for alert_id, erased_at in session.exec(
                    select(AlertFace.alert_id, AlertFace.erased_at).where(col(AlertFace.alert_id).in_(chunk))
                ).all()
            )
    clock = time.time() if now is None else now
    shredded: list[str] = []
    for record_id in held:
        if record_id in entries:
            orphan = entries[record_id] not in _LIVE_ENTRY
        elif record_id in requests:
            orphan = requests[record_id] == "closed"
        elif record_id in alerts:  # an alert's camera crops (node.records.alert_faces)
            orphan = alerts[record_id]
        else:
            orphan = clock - vault.records.created_at(record_id) > ORPHAN_AGE_SECONDS
        if orphan and vault.shred(record_id):
            shredded.append(record_id)
    if shredded:
        LOG.warning("destroyed %d record keys whose records are closed or were never written", len(shredded))
    return shredded
