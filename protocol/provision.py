"""A signed record that data was provided to a third party (police, a court, ...) under a legal basis.

APPI Art. 27-1 forbids providing personal data to a third party without consent except under the
exceptions it lists (a law requires it; protection of life, body or property; ...). watchnet
lets nothing leave a node for a third party unless this record was first appended to the node's
signed event log. The leaf says who provided, when, on which basis, to which kind of requester,
how many entries and which items; the requester's name, the reference of its request and the
entry ids stay with the owner behind a salted commitment, so peers and auditors can count and
verify provisions without learning the investigation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.canonical import b64url_encode
from protocol.errors import MalformedError
from protocol.fields import CODE_RE, ID_RE, NODE_ID_RE, check_wire_time, format_time
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["ThirdPartyProvision"]

MAX_ITEMS = 16


@dataclass(kw_only=True)
class ThirdPartyProvision(Payload):
    """Node ``owner`` provided ``items`` of ``entry_count`` entries to a ``requester_kind`` on ``legal_basis``."""

    TYPE = "third-party-provision"

    record_id: str
    owner: str
    legal_basis: str
    requester_kind: str
    occurred_at: datetime
    actor: str
    entry_count: int
    items: list[str]
    details_commitment: bytes
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not ID_RE.fullmatch(self.record_id) or not ID_RE.fullmatch(self.actor):
            raise MalformedError("third-party-provision: record_id and actor are ids")
        if not NODE_ID_RE.fullmatch(self.owner):
            raise MalformedError("third-party-provision.owner: not a node id")
        for name in ("legal_basis", "requester_kind"):
            if not CODE_RE.fullmatch(getattr(self, name)):
                raise MalformedError(f"third-party-provision.{name}: not a code")
        if not 1 <= len(self.items) <= MAX_ITEMS or len(set(self.items)) != len(self.items):
            raise MalformedError(f"third-party-provision.items: 1..{MAX_ITEMS} distinct item codes")
        for item in self.items:
            if not CODE_RE.fullmatch(item):
                raise MalformedError(f"third-party-provision.items: {item!r:.40} is not a code")
        if not 1 <= self.entry_count <= 10_000:
            raise MalformedError("third-party-provision.entry_count: 1..10000")
        if len(self.details_commitment) != 32:
            raise MalformedError("third-party-provision.details_commitment: expected 32 bytes")
        check_wire_time(self.occurred_at, "third-party-provision.occurred_at")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "record_id": self.record_id,
                "owner": self.owner,
                "legal_basis": self.legal_basis,
                "requester_kind": self.requester_kind,
                "occurred_at": format_time(self.occurred_at),
                "actor": self.actor,
                "entry_count": self.entry_count,
                "items": list(self.items),
                "details_commitment": b64url_encode(self.details_commitment),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            record_id=f.text("record_id", max_len=64, pattern=ID_RE),
            owner=f.text("owner", max_len=63, pattern=NODE_ID_RE),
            legal_basis=f.text("legal_basis", max_len=48, pattern=CODE_RE),
            requester_kind=f.text("requester_kind", max_len=48, pattern=CODE_RE),
            occurred_at=f.time("occurred_at"),
            actor=f.text("actor", max_len=64, pattern=ID_RE),
            entry_count=f.integer("entry_count", low=1, high=10_000),
            items=f.texts("items", max_items=MAX_ITEMS, max_len=48, pattern=CODE_RE),
            details_commitment=f.binary("details_commitment", length=32),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
