"""Entry events: the signed, append-only history of every change to a watchlist entry.

An ``EntryEvent`` is what the owner signs and what the Merkle log's leaf holds: a header (what
happened to which entry, when, why, by whom) and a salted commitment to its payload. The
payload (the signed entry version, for registrations and corrections) is kept beside the log and
is erasable: deleting an entry erases every payload and salt of its events, and the signed
events and all log proofs stay valid. This is Synapse's redaction pattern: the signature covers
the redacted form, so history survives erasure.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.canonical import b64url_decode, b64url_encode, canonical_bytes
from protocol.commitment import SALT_BYTES, commit, new_salt, verify_commitment
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError
from protocol.fields import ID_RE, NODE_ID_RE, Fields, format_time
from protocol.signed import SPEC_VERSION, Payload, SignedDocument

__all__ = ["EntryEvent", "EventKind", "EventPayload", "EventReason", "log_leaf_bytes"]


class EventKind(enum.StrEnum):
    REGISTERED = "registered"
    CORRECTED = "corrected"
    DELETED = "deleted"
    EXPIRED = "expired"


class EventReason(enum.StrEnum):
    REGISTRATION = "registration"
    CORRECTION = "correction"
    DATA_SUBJECT_REQUEST = "data-subject-request"
    ERROR = "error"
    NO_LONGER_NECESSARY = "no-longer-necessary"
    RETENTION_EXPIRED = "retention-expired"


ALLOWED_REASONS: dict[EventKind, frozenset[EventReason]] = {
    EventKind.REGISTERED: frozenset({EventReason.REGISTRATION}),
    EventKind.CORRECTED: frozenset(
        {EventReason.CORRECTION, EventReason.DATA_SUBJECT_REQUEST, EventReason.ERROR}
    ),
    EventKind.DELETED: frozenset(
        {EventReason.DATA_SUBJECT_REQUEST, EventReason.ERROR, EventReason.NO_LONGER_NECESSARY}
    ),
    EventKind.EXPIRED: frozenset({EventReason.RETENTION_EXPIRED}),
}
"""Which reasons make sense for which kind: an expiry is never 'a data-subject request'."""

CARRIES_ENTRY = frozenset({EventKind.REGISTERED, EventKind.CORRECTED})
ACTOR_RE = re.compile(rf"system|{ID_RE.pattern}")
"""A staff account id, or ``system`` for the retention sweep."""


@dataclass(kw_only=True)
class EntryEvent(Payload):
    """One change to entry ``entry_id`` (now at ``entry_version``) on node ``owner``."""

    TYPE = "entry-event"

    event_id: str
    owner: str
    kind: EventKind
    entry_id: str
    entry_version: int
    reason: EventReason
    occurred_at: datetime
    actor: str
    payload_commitment: bytes
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reason not in ALLOWED_REASONS[self.kind]:
            allowed = ", ".join(sorted(r.value for r in ALLOWED_REASONS[self.kind]))
            raise MalformedError(
                f"entry-event: reason {self.reason.value!r} does not fit kind {self.kind.value!r} (allowed: {allowed})"
            )
        if len(self.payload_commitment) != 32:
            raise MalformedError("entry-event.payload_commitment: expected 32 bytes")
        if self.entry_version < 1:
            raise MalformedError(f"entry-event.entry_version: expected >= 1, got {self.entry_version}")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "event_id": self.event_id,
                "owner": self.owner,
                "kind": self.kind.value,
                "entry_id": self.entry_id,
                "entry_version": self.entry_version,
                "reason": self.reason.value,
                "occurred_at": format_time(self.occurred_at),
                "actor": self.actor,
                "payload_commitment": b64url_encode(self.payload_commitment),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            event_id=f.text("event_id", max_len=64, pattern=ID_RE),
            owner=f.text("owner", max_len=63, pattern=NODE_ID_RE),
            kind=f.enum("kind", EventKind),
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            entry_version=f.integer("entry_version", low=1),
            reason=f.enum("reason", EventReason),
            occurred_at=f.time("occurred_at"),
            actor=f.text("actor", max_len=64, pattern=ACTOR_RE),
            payload_commitment=f.binary("payload_commitment", length=32),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )

    @classmethod
    def create(
        cls,
        *,
        entry: SignedDocument[WatchlistEntry] | None,
        salt: bytes | None = None,
        **header: Any,
    ) -> tuple[EntryEvent, EventPayload]:
        """A new event and its erasable payload (the signed entry for registrations and corrections)."""
        payload = EventPayload(salt=salt if salt is not None else new_salt(), entry=entry)
        event = cls(payload_commitment=payload.commitment(), **header)
        if (event.kind in CARRIES_ENTRY) != (entry is not None):
            raise MalformedError(
                f"entry-event: kind {event.kind.value!r} and the presence of an entry disagree"
            )
        if entry is not None and (entry.payload.entry_id, entry.payload.version) != (
            event.entry_id,
            event.entry_version,
        ):
            raise MalformedError("entry-event: the payload entry is not the entry version the event names")
        return event, payload


@dataclass(frozen=True)
class EventPayload:
    """The erasable part of an event: a salt and, for registrations/corrections, the signed entry."""

    salt: bytes
    entry: SignedDocument[WatchlistEntry] | None

    def __post_init__(self) -> None:
        if len(self.salt) != SALT_BYTES:
            raise MalformedError(f"event payload salt: expected {SALT_BYTES} bytes, got {len(self.salt)}")

    def body_bytes(self) -> bytes:
        return canonical_bytes(None if self.entry is None else self.entry.to_dict())

    def commitment(self) -> bytes:
        return commit(self.salt, self.body_bytes())

    def verify_against(self, event: EntryEvent) -> None:
        """Raise ``CommitmentError`` unless this payload is the one ``event`` committed to."""
        verify_commitment(event.payload_commitment, self.salt, self.body_bytes(), what="event payload")

    def to_dict(self) -> dict[str, Any]:
        return {
            "salt": b64url_encode(self.salt),
            "entry": None if self.entry is None else self.entry.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> EventPayload:
        f = Fields(data, "event payload")
        salt = b64url_decode(f.text("salt", max_len=64), field="event payload.salt", length=SALT_BYTES)
        raw_entry = f.obj("entry") if f.has("entry") and data.get("entry") is not None else None
        entry = None if raw_entry is None else SignedDocument.from_dict(raw_entry, WatchlistEntry)
        return cls(salt=salt, entry=entry)


def log_leaf_bytes(event: SignedDocument[EntryEvent]) -> bytes:
    """The Merkle log leaf for an event: the canonical signed event (header + commitment, no payload)."""
    return event.to_bytes()
