"""``WatchlistEntry``: one person registered on a node's watchlist, signed by that node.

The signed form carries the entry's metadata and a salted commitment to the embedding, never
the embedding itself: peers verify the owner's signature on an answer without receiving a face,
and deleting the embedding and its salt leaves old signatures and log proofs intact. The
embedding and salt are *local* fields, named here and stripped before signing (``to_dict``
leaves them out; ``with_embedding`` attaches them on the owner's side).

There is deliberately no free-text field: the incident is a category code and the evidence a
kind plus a reference number (no spaces), so criminal-procedure facts (arrest, prosecution:
special-care data under APPI Art. 20-2) have nowhere to go.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Self

from protocol.canonical import b64url_encode
from protocol.commitment import commit, new_salt, verify_commitment
from protocol.embedding import Embedding
from protocol.errors import MalformedError
from protocol.fields import (
    CODE_RE,
    DATE_RE,
    ID_RE,
    NODE_ID_RE,
    REFERENCE_RE,
    Fields,
    check_wire_time,
    format_time,
)
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["Evidence", "WatchlistEntry"]


@dataclass(frozen=True)
class Evidence:
    """What objectively confirms the incident: a kind code and a reference number."""

    kind: str
    reference: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reference": self.reference}

    @classmethod
    def from_dict(cls, data: Any) -> Evidence:
        f = Fields(data, "evidence")
        kind = f.text("kind", max_len=48, pattern=CODE_RE)
        reference = f.text("reference", max_len=64, pattern=REFERENCE_RE)
        if f.rest():
            raise MalformedError(f"evidence: unexpected fields {sorted(f.rest())}; free text is not allowed")
        return cls(kind, reference)


@dataclass(kw_only=True)
class WatchlistEntry(Payload):
    """A registered entry, version ``version`` of ``entry_id`` on node ``owner``."""

    TYPE = "watchlist-entry"

    entry_id: str
    owner: str
    version: int
    category: str
    evidence: Evidence
    incident_date: date
    site: str
    model_id: str
    embedding_commitment: bytes
    registered_at: datetime
    expires_at: datetime
    registrar: str
    officer: str
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)
    embedding: Embedding | None = field(default=None, repr=False, compare=False)
    embedding_salt: bytes | None = field(default=None, repr=False, compare=False)

    LOCAL_FIELDS = ("embedding", "embedding_salt")
    """Held only by the owner, encrypted at rest; never signed, never sent."""

    def __post_init__(self) -> None:
        if self.version < 1:
            raise MalformedError(f"watchlist-entry.version: expected >= 1, got {self.version}")
        check_wire_time(self.registered_at, "watchlist-entry.registered_at")
        check_wire_time(self.expires_at, "watchlist-entry.expires_at")
        if self.expires_at <= self.registered_at:
            raise MalformedError(
                f"watchlist-entry: expires_at {format_time(self.expires_at)} is not after "
                f"registered_at {format_time(self.registered_at)}"
            )
        if self.registrar == self.officer:
            raise MalformedError("watchlist-entry: registrar and officer must be different accounts")
        if len(self.embedding_commitment) != 32:
            raise MalformedError("watchlist-entry.embedding_commitment: expected 32 bytes")

    @classmethod
    def create(cls, *, embedding: Embedding, **metadata: Any) -> WatchlistEntry:
        """A new entry committing to ``embedding`` under a fresh salt."""
        salt = new_salt()
        return cls(
            embedding_commitment=commit(salt, embedding.raw),
            embedding=embedding,
            embedding_salt=salt,
            **metadata,
        )

    def with_embedding(self, embedding: Embedding, salt: bytes) -> Self:
        """Attach the owner's local embedding after checking it opens the commitment."""
        verify_commitment(self.embedding_commitment, salt, embedding.raw, what="embedding")
        return replace(self, embedding=embedding, embedding_salt=salt)

    def without_embedding(self) -> Self:
        return replace(self, embedding=None, embedding_salt=None)

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "entry_id": self.entry_id,
                "owner": self.owner,
                "version": self.version,
                "category": self.category,
                "evidence": self.evidence.to_dict(),
                "incident_date": self.incident_date.isoformat(),
                "site": self.site,
                "model_id": self.model_id,
                "embedding_commitment": b64url_encode(self.embedding_commitment),
                "registered_at": format_time(self.registered_at),
                "expires_at": format_time(self.expires_at),
                "registrar": self.registrar,
                "officer": self.officer,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        for name in cls.LOCAL_FIELDS:
            if f.has(name):
                raise MalformedError(f"watchlist-entry: local field {name!r} must never be sent")
        incident_text = f.text("incident_date", max_len=10, pattern=DATE_RE)
        try:
            incident_date = date.fromisoformat(incident_text)
        except ValueError as e:
            raise MalformedError(f"watchlist-entry.incident_date: invalid date {incident_text!r}") from e
        return cls(
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            owner=f.text("owner", max_len=63, pattern=NODE_ID_RE),
            version=f.integer("version", low=1),
            category=f.text("category", max_len=48, pattern=CODE_RE),
            evidence=Evidence.from_dict(f.obj("evidence")),
            incident_date=incident_date,
            site=f.text("site", max_len=63, pattern=NODE_ID_RE),
            model_id=f.text("model_id", max_len=128),
            embedding_commitment=f.binary("embedding_commitment", length=32),
            registered_at=f.time("registered_at"),
            expires_at=f.time("expires_at"),
            registrar=f.text("registrar", max_len=64, pattern=ID_RE),
            officer=f.text("officer", max_len=64, pattern=ID_RE),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
