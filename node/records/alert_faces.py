"""What an alert keeps for the operator's decision: its sightings and the camera's face crops.

Staff must confirm by sight before they act on a match, so an alert keeps the aligned face crop
the camera saw (the probe, never its embedding) next to each sighting's time and place. The crop
is a face of someone who may not be the registered person, so it is kept only as long as the
decision needs it: sealed under the alert's own record key (``alr-...`` in the key store,
``node.records.record_keys``, the crypto-shredding of ADR 0003), not under the node's data key,
so that destroying that one key when the review window ends makes every copy unreadable,
including those in the WAL, dead rows and database backups. The key store, not a key column, is
the design the node already uses for a person's record (an entry, a counter photo); the alert is
one more such record. A false-match verdict erases the crop at once (a passer-by), so does the
owner's withdrawal of the entry or, for our own entry, its deletion or expiry. Each erasure is
audited (``alert.face_erase`` with the reason).

The same person (owner and entry) seen again within ``[alerts] merge_window`` of the alert's last
sighting, at another gate or site, is a sighting of the same alert; frames of one pass at one
place (within ``SAME_PLACE``) add nothing.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.config import AlertSettings
from node.records.auditlog import append_audit
from node.records.record_keys import RecordKeyDestroyed
from node.records.vault import Vault
from node.storage.models import Alert, AlertFace, AlertSighting
from protocol.errors import PolicyError

__all__ = [
    "SAME_PLACE",
    "AlertFaces",
    "AlertHit",
    "CropErased",
    "Seen",
    "erase_crops_in",
]

SAME_PLACE = timedelta(seconds=60)
"""Frames of one person passing one gate: within this of a sighting at the same place, nothing new."""
ERASE_BATCH = 200
"""Alerts erased per transaction by the duty (a backlog after downtime is worked off in passes)."""


class CropErased(PolicyError):
    """The camera crop of this alert is gone: its review window ended, or it was judged or withdrawn."""

    code = "crop_erased"


@dataclass(frozen=True)
class AlertHit:
    """A verified match to raise or extend an alert for."""

    owner: str
    entry_id: str
    entry_version: int
    band: str | None
    category: str | None
    signed_entry: str | None = None


@dataclass(frozen=True)
class Seen:
    """Where and when the face was seen, and the camera's crop of it (JPEG) when there was an image."""

    site: str
    gate: str
    at: datetime
    crop: bytes | None = None
    camera: str = ""
    """The ``[[cameras]]`` id of the worker that sent the face; empty for other matches."""


def erase_crops_in(
    session: Session, vault: Vault, alert_id: str, because: str, now: datetime, actor: str = "node"
) -> bool:
    """Destroy the alert's key and erase its crops in the caller's transaction, audited; False
    when there was nothing to erase. The key goes first: once the erasure commits no copy of the
    crops opens, and a commit that fails leaves ciphertext no key opens (the next pass finishes it)."""
    face = session.get(AlertFace, alert_id)
    if face is None or face.erased_at is not None:
        return False
    vault.shred(alert_id)
    for sighting in session.exec(
        select(AlertSighting).where(
            AlertSighting.alert_id == alert_id, col(AlertSighting.probe_ct).is_not(None)
        )
    ).all():
        sighting.probe_ct = None
        session.add(sighting)
    because = face.erased_because or because  # a withdrawal marked the reason for the next pass
    face.erased_at, face.erased_because = now, because
    session.add(face)
    append_audit(session, actor=actor, action="alert.face_erase", target=alert_id, outcome=because, now=now)
    return True


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(10)}"


class AlertFaces:
    """Alerts with their sightings; the camera crops sealed per alert and erased on time."""

    def __init__(
        self, engine: Engine, vault: Vault, settings: AlertSettings, write_lock: threading.RLock
    ) -> None:
        self._engine = engine
        self._vault = vault
        self.settings = settings
        self.write_lock = write_lock

    # ----- raising -------------------------------------------------------------------------------

    def raise_in(self, session: Session, hit: AlertHit, seen: Seen, *, operator: str) -> tuple[Alert, bool]:
        """The alert ``hit`` raises or extends, in the caller's transaction; whether it is new.

        A sighting of the same owner and entry at this very place within ``SAME_PLACE`` (the same
        pass, even if staff already judged its alert) adds nothing; an open alert whose last
        sighting is within the merge window takes a new sighting; otherwise a new alert with its
        first sighting. The crop, if any, is sealed under the
        alert's record key, made here for a new alert."""
        now = seen.at
        candidates = session.exec(
            select(Alert).where(
                Alert.owner == hit.owner,
                Alert.entry_id == hit.entry_id,
                Alert.status != "withdrawn",
                col(Alert.created_at) > now - self.settings.merge_window - timedelta(days=1),
            )
        ).all()
        for alert in sorted(candidates, key=lambda a: a.created_at, reverse=True):
            sightings = session.exec(
                select(AlertSighting)
                .where(AlertSighting.alert_id == alert.id)
                .order_by(col(AlertSighting.seen_at).desc())
            ).all()
            here = [(s.seen_at, s.site, s.gate) for s in sightings] or [(alert.created_at, alert.site, "")]
            if any(
                site == seen.site and gate == seen.gate and at > now - SAME_PLACE for at, site, gate in here
            ):
                return alert, False  # the same pass at the same place, judged or not: nothing new
            if alert.status != "open" or here[0][0] <= now - self.settings.merge_window:
                continue
            self._add_sighting(session, alert.id, seen)
            return alert, False
        alert = Alert(
            id=_new_id("alr"),
            owner=hit.owner,
            entry_id=hit.entry_id,
            entry_version=hit.entry_version,
            band=hit.band,
            site=seen.site,
            camera=seen.camera,
            gate=seen.gate,
            operator=operator,
            created_at=now,
            category=hit.category,
            signed_entry=hit.signed_entry,
        )
        session.add(alert)
        if seen.crop is not None:
            self._vault.new_record(alert.id)
            session.add(AlertFace(alert_id=alert.id, erase_after=now + self.settings.review_window))
        self._add_sighting(session, alert.id, seen)
        return alert, True

    def _add_sighting(self, session: Session, alert_id: str, seen: Seen) -> None:
        sighting_id = _new_id("sgt")
        crop_ct = None
        if seen.crop is not None:
            face = session.get(AlertFace, alert_id)
            if face is None:  # the first sighting came without an image: the key is made now
                self._vault.new_record(alert_id)
                alert = session.get(Alert, alert_id)
                start = alert.created_at if alert is not None else seen.at
                face = AlertFace(alert_id=alert_id, erase_after=start + self.settings.review_window)
                session.add(face)
            if face.erased_at is None:
                crop_ct = self._vault.seal_record(alert_id, seen.crop, field=f"probe/{sighting_id}")
        session.add(
            AlertSighting(
                id=sighting_id,
                alert_id=alert_id,
                seen_at=seen.at,
                site=seen.site,
                gate=seen.gate,
                probe_ct=crop_ct,
            )
        )

    # ----- reading -------------------------------------------------------------------------------

    def sightings(self, alert_id: str) -> list[dict[str, Any]]:
        """The alert's sightings, oldest first: id, time, site, gate and whether a crop is held."""
        with Session(self._engine) as session:
            rows = session.exec(
                select(AlertSighting)
                .where(AlertSighting.alert_id == alert_id)
                .order_by(col(AlertSighting.seen_at))
            ).all()
            return [
                {
                    "sighting_id": s.id,
                    "seen_at": s.seen_at,
                    "site": s.site,
                    "gate": s.gate,
                    "has_crop": s.probe_ct is not None,
                }
                for s in rows
            ]

    def face_state(self, alert_id: str) -> dict[str, Any] | None:
        """When the alert's crops are (or were) erased and why; ``None`` when it never had one."""
        with Session(self._engine) as session:
            face = session.get(AlertFace, alert_id)
            if face is None:
                return None
            return {
                "erase_after": face.erase_after,
                "erased_at": face.erased_at,
                "erased_because": face.erased_because,
            }

    def camera_crop(self, alert_id: str, sighting_id: str | None = None) -> bytes:
        """The camera's crop of one sighting (by default the first that has one), for the reviewer."""
        with Session(self._engine) as session:
            query = select(AlertSighting).where(
                AlertSighting.alert_id == alert_id, col(AlertSighting.probe_ct).is_not(None)
            )
            if sighting_id is not None:
                query = query.where(AlertSighting.id == sighting_id)
            row = session.exec(query.order_by(col(AlertSighting.seen_at))).first()
            if row is None or row.probe_ct is None:
                raise CropErased(f"alert {alert_id} holds no camera face crop (erased, or none was taken)")
            try:
                return self._vault.open_record(alert_id, row.probe_ct, field=f"probe/{row.id}")
            except RecordKeyDestroyed as e:
                raise CropErased(f"the camera face crop of alert {alert_id} was erased") from e

    # ----- erasing -------------------------------------------------------------------------------

    def erase_in(
        self, session: Session, alert_id: str, because: str, now: datetime, actor: str = "node"
    ) -> bool:
        return erase_crops_in(session, self._vault, alert_id, because, now, actor)

    def erase(self, alert_id: str, because: str, now: datetime, actor: str = "node") -> bool:
        with self.write_lock, Session(self._engine) as session:
            erased = self.erase_in(session, alert_id, because, now, actor)
            session.commit()
            return erased

    def erase_due(self, now: datetime) -> list[str]:
        """Erase the crops whose review window has ended (the duty's pass); return the alert ids."""
        erased: list[str] = []
        while True:
            with self.write_lock, Session(self._engine) as session:
                due = session.exec(
                    select(AlertFace.alert_id)
                    .where(col(AlertFace.erased_at).is_(None), col(AlertFace.erase_after) <= now)
                    .order_by(col(AlertFace.erase_after))
                    .limit(ERASE_BATCH)
                ).all()
                batch = [alert_id for alert_id in due if self.erase_in(session, alert_id, "window", now)]
                session.commit()
            erased.extend(batch)
            if len(due) < ERASE_BATCH:
                return erased
