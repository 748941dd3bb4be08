"""Deletion receipts: a member's signed statement that it applied an owner's deletion or correction.

The owner collects one receipt per member for every deletion, expiry and correction event, so
it can show (to the data subject, the organisation, an auditor) that the change reached every
member, and see which members have not confirmed yet. ``tree_size`` and ``root_hash`` name the
checkpoint of the owner's log that the member had verified when it applied the event (the signed
head of the page that carried it), so a receipt cannot be replayed for a different history, and
an owner that accepts it knows the member saw the same history as its own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from protocol.canonical import b64url_encode
from protocol.errors import MalformedError, VerificationError
from protocol.events import EntryEvent, EventKind
from protocol.fields import ID_RE, NODE_ID_RE, check_wire_time, format_time
from protocol.signed import SPEC_VERSION, Payload

__all__ = ["RECEIPT_KINDS", "DeletionReceipt", "ReceiptAction", "ReceiptHistoryMismatch"]


class ReceiptHistoryMismatch(VerificationError):
    """A receipt that names a checkpoint of the owner's log other than the owner's own at that size."""

    code = "receipt_history_mismatch"


class ReceiptAction(enum.StrEnum):
    PURGED = "purged"
    CORRECTED = "corrected"


_ACTION_FOR_KIND = {
    EventKind.DELETED: ReceiptAction.PURGED,
    EventKind.EXPIRED: ReceiptAction.PURGED,
    EventKind.CORRECTED: ReceiptAction.CORRECTED,
}

RECEIPT_KINDS = frozenset(_ACTION_FOR_KIND)
"""Event kinds a member confirms; a registration needs no receipt (nothing to purge or fix)."""


@dataclass(kw_only=True)
class DeletionReceipt(Payload):
    """Member ``member`` applied event ``event_id`` of ``owner``'s log, having verified the log's
    checkpoint of ``tree_size`` events with root ``root_hash``."""

    TYPE = "deletion-receipt"

    owner: str
    member: str
    event_id: str
    entry_id: str
    kind: EventKind
    tree_size: int
    root_hash: bytes
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
        if len(self.root_hash) != 32:
            raise MalformedError(f"deletion-receipt.root_hash: expected 32 bytes, got {len(self.root_hash)}")
        check_wire_time(self.applied_at, "deletion-receipt.applied_at")
        if self.member == self.owner:
            raise MalformedError("deletion-receipt: a node does not issue receipts to itself")

    @classmethod
    def for_event(
        cls, event: EntryEvent, *, member: str, tree_size: int, root_hash: bytes, applied_at: datetime
    ) -> Self:
        """The receipt ``member`` signs after applying ``event`` seen in the verified checkpoint
        (``tree_size``, ``root_hash``) of the owner's log."""
        if event.kind not in RECEIPT_KINDS:
            raise MalformedError(f"deletion-receipt.kind: {event.kind.value!r} needs no receipt")
        return cls(
            owner=event.owner,
            member=member,
            event_id=event.event_id,
            entry_id=event.entry_id,
            kind=event.kind,
            tree_size=tree_size,
            root_hash=root_hash,
            applied_at=applied_at,
            action=_ACTION_FOR_KIND[event.kind],
        )

    def check_against(
        self,
        event: EntryEvent,
        *,
        leaf_index: int | None = None,
        root_at: Callable[[int], bytes] | None = None,
    ) -> None:
        """Raise unless this receipt confirms exactly ``event`` in the owner's own history.

        Owner, event id, entry id and kind must agree (else ``MalformedError``); given the event's
        ``leaf_index`` in the owner's log, ``tree_size`` must be large enough to contain it
        (``MalformedError``); given ``root_at`` (the owner's root of its first ``n`` events),
        ``root_hash`` must be the owner's root at ``tree_size`` (else ``ReceiptHistoryMismatch``).
        """
        got = (self.owner, self.event_id, self.entry_id, self.kind.value)
        expected = (event.owner, event.event_id, event.entry_id, event.kind.value)
        if got != expected:
            raise MalformedError(
                f"deletion-receipt: confirms (owner, event, entry, kind) {got}, expected {expected}"
            )
        if leaf_index is not None and self.tree_size <= leaf_index:
            raise MalformedError(
                f"deletion-receipt.tree_size: {self.tree_size} does not contain the event at index {leaf_index}"
            )
        if root_at is not None and root_at(self.tree_size) != self.root_hash:
            raise ReceiptHistoryMismatch(
                f"deletion-receipt by {self.member} for {self.event_id}: root {self.root_hash.hex()[:16]}... "
                f"at size {self.tree_size} is not the owner's root at that size: the member saw another history"
            )

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
                "root_hash": b64url_encode(self.root_hash),
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
            root_hash=f.binary("root_hash", length=32),
            applied_at=f.time("applied_at"),
            action=f.enum("action", ReceiptAction),
            spec_version=spec_version,
            unrecognized_fields=f.rest(),
        )
