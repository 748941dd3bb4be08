"""Deletion receipts: a member's signed statement that it applied an owner's deletion or correction.

The owner collects one receipt per member for every deletion, expiry and correction event, so
it can show (to the data subject, the organisation, an auditor) that the change reached every
member, and see which members have not confirmed yet. ``tree_size`` pins the owner's log state
that contained the event, so a receipt cannot be replayed for a different history.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.errors import MalformedError
from protocol.events import EventKind
from protocol.fields import ID_RE, NODE_ID_RE, format_time
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["DeletionReceipt", "ReceiptAction"]


class ReceiptAction(enum.StrEnum):
    PURGED = "purged"
    CORRECTED = "corrected"


_ACTION_FOR_KIND = {
    EventKind.DELETED: ReceiptAction.PURGED,
    EventKind.EXPIRED: ReceiptAction.PURGED,
    EventKind.CORRECTED: ReceiptAction.CORRECTED,
}


@dataclass(kw_only=True)
class DeletionReceipt(Payload):
    """Member ``member`` applied event ``event_id`` of ``owner``'s log (size ``tree_size``)."""

    TYPE = "deletion-receipt"

    owner: str
    member: str
    event_id: str
    entry_id: str
    kind: EventKind
    tree_size: int
    applied_at: datetime
    action: ReceiptAction
    spec_version: str = SPEC_VERSION
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = _ACTION_FOR_KIND.get(self.kind)
        if expected is None:
            raise MalformedError(f"deletion-receipt.kind: {self.kind.value!r} needs no receipt")
        if self.action != expected:
            raise MalformedError(
                f"deletion-receipt: action {self.action.value!r} does not fit kind {self.kind.value!r} "
                f"(expected {expected.value!r})"
            )
        if self.tree_size < 1:
            raise MalformedError(f"deletion-receipt.tree_size: expected >= 1, got {self.tree_size}")
        if self.member == self.owner:
            raise MalformedError("deletion-receipt: a node does not issue receipts to itself")

    def to_dict(self) -> dict[str, Any]:
        return self._with_unrecognized(
            {
                **self._header(),
                "owner": self.owner,
                "member": self.member,
                "event_id": self.event_id,
                "entry_id": self.entry_id,
                "kind": self.kind.value,
                "tree_size": self.tree_size,
                "applied_at": format_time(self.applied_at),
                "action": self.action.value,
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        f, spec_version = cls._read_header(data)
        return cls(
            owner=f.text("owner", max_len=63, pattern=NODE_ID_RE),
            member=f.text("member", max_len=63, pattern=NODE_ID_RE),
            event_id=f.text("event_id", max_len=64, pattern=ID_RE),
            entry_id=f.text("entry_id", max_len=64, pattern=ID_RE),
            kind=f.enum("kind", EventKind),
            tree_size=f.integer("tree_size", low=1),
            applied_at=f.time("applied_at"),
            action=f.enum("action", ReceiptAction),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
