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

from protocol.canonical import b64url_encode, canonical_bytes
from protocol.commitment import SALT_BYTES, commit, new_salt, verify_commitment
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError
from protocol.fields import ID_RE, NODE_ID_RE, Fields, check_wire_time, format_time
from protocol.signed import SPEC_VERSION, Payload, SignedDocument

__all__ = [
    "ALLOWED_REASONS",
    "CARRIES_ENTRY",
    "EntryEvent",
    "EventKind",
    "EventPayload",
    "EventReason",
    "log_leaf_bytes",
]


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
"""Kinds whose payload body is the new signed entry version; the others commit to ``null``."""
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
        check_wire_time(self.occurred_at, "entry-event.occurred_at")
        if self.entry_version < 1:
            raise MalformedError(f"entry-event.entry_version: expected >= 1, got {self.entry_version}")
        if self.kind is EventKind.REGISTERED and self.entry_version != 1:
            raise MalformedError(
                f"entry-event.entry_version: a registration creates version 1, got {self.entry_version}"
            )
        if self.kind is EventKind.CORRECTED and self.entry_version < 2:
            raise MalformedError(
                f"entry-event.entry_version: a correction creates version 2 or later, got {self.entry_version}"
            )

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
        payload.check_fits(event)
        return event, payload


@dataclass(frozen=True)
class EventPayload:
    """The erasable part of an event: a salt and, for registrations/corrections, the signed entry.

    On the wire (and at rest, encrypted) it is ``{"salt": ..., "entry": <signed entry> | null}``;
    the commitment covers ``salt || JCS(entry)``. The payload is local to the owner and is never
    extended by peers, so unknown fields are refused rather than kept.
    """

    salt: bytes = field(repr=False)
    entry: SignedDocument[WatchlistEntry] | None

    def __post_init__(self) -> None:
        if len(self.salt) != SALT_BYTES:
            raise MalformedError(f"event payload salt: expected {SALT_BYTES} bytes, got {len(self.salt)}")

    @property
    def body(self) -> dict[str, Any] | None:
        """The committed JSON body: the signed entry document, or ``None`` for deletions and expiries."""
        return None if self.entry is None else self.entry.to_dict()

    def body_bytes(self) -> bytes:
        return canonical_bytes(self.body)

    def commitment(self) -> bytes:
        return commit(self.salt, self.body_bytes())

    def check_fits(self, event: EntryEvent) -> None:
        """Raise ``MalformedError`` unless the body is what an event of this kind must carry."""
        if (event.kind in CARRIES_ENTRY) != (self.entry is not None):
            expected = "a signed entry" if event.kind in CARRIES_ENTRY else "null"
            got = "null" if self.entry is None else "a signed entry"
            raise MalformedError(
                f"entry-event {event.event_id}: kind {event.kind.value!r} carries {expected}, got {got}"
            )
        if self.entry is None:
            return
        entry = self.entry.payload
        named = (event.owner, event.entry_id, event.entry_version)
        held = (entry.owner, entry.entry_id, entry.version)
        if held != named:
            raise MalformedError(
                f"entry-event {event.event_id}: payload holds entry {held[1]} v{held[2]} of {held[0]!r}, "
                f"the event names {named[1]} v{named[2]} of {named[0]!r}"
            )

    def verify_against(self, event: EntryEvent) -> None:
        """Raise unless this is the payload ``event`` committed to and it fits the event.

        ``CommitmentError`` when the salt and body do not open the commitment; ``MalformedError``
        when an owner committed to a body that does not belong to the event it signed.
        """
        verify_commitment(event.payload_commitment, self.salt, self.body_bytes(), what="event payload")
        self.check_fits(event)

    def to_dict(self) -> dict[str, Any]:
        return {"salt": b64url_encode(self.salt), "entry": self.body}

    @classmethod
    def from_dict(cls, data: Any) -> EventPayload:
        f = Fields(data, "event payload")
        salt = f.binary("salt", length=SALT_BYTES)
        if not f.has("entry"):
            raise MalformedError("event payload: missing field 'entry' (null for deletions and expiries)")
        entry = None if data["entry"] is None else SignedDocument.from_dict(f.obj("entry"), WatchlistEntry)
        rest = f.rest()
        rest.pop("entry", None)
        if rest:
            raise MalformedError(f"event payload: unexpected fields {sorted(rest)}")
        return cls(salt=salt, entry=entry)


def log_leaf_bytes(event: SignedDocument[Any]) -> bytes:
    """The Merkle log leaf for an event: the canonical signed event (header + commitment, no payload).

    Nothing erasable is in it, so erasing the payload and salt changes no leaf, root or proof.
    """
    return event.to_bytes()
