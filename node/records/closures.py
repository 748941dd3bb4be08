"""Deletions and expiries decided but not yet written: they fail closed.

The moment an officer's deletion or an expiry is decided, the entry leaves this process's match
index and is kept out of it (``MatchIndex.suppress``). If the write then fails (a full disk, the
database gone), the decision is held here and answered ``deletion_pending``; the node's retry duty
writes it until it lands, then the usual propagation follows (the signed event, the tree head,
notices to the members, their receipts). Held decisions live in this process's memory: the
worker that decided a deletion suppresses it at once, other workers of the node (PostgreSQL)
only once it is committed. On SQLite the held decisions are also kept across a restart
(``node.records.held_journal``); a worker on PostgreSQL that restarts before one lands forgets it
(the sweep decides an expiry again; an officer's deletion must be made again). Readiness is red
and names ``deletions`` all the while.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from protocol.errors import WatchnetError
from protocol.events import EventKind, EventReason
from protocol.fields import format_time

__all__ = ["DATABASE_ERRORS", "ClosurePending", "PendingClosure", "PendingClosures"]

DATABASE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)
"""What a write that may succeed later raises: the database's errors and the disk's."""


@dataclass(frozen=True)
class PendingClosure:
    """One decided deletion or expiry and how its write has gone so far."""

    entry_id: str
    actor: str
    kind: EventKind
    reason: EventReason
    decided_at: datetime
    written: bool = False
    """The entry's transaction committed; the tree head (and so the notices) is what is left."""
    attempts: int = 1
    last_error: str = ""
    disk_full: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "kind": self.kind.value,
            "decided_at": format_time(self.decided_at.replace(microsecond=0)),
            "written": self.written,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "disk_full": self.disk_full,
        }


class ClosurePending(WatchnetError):
    """The deletion is decided and the entry no longer matches, but its write has not landed yet;
    the node keeps writing it (answered 202, never as a failure)."""

    code = "deletion_pending"

    def __init__(self, pending: PendingClosure) -> None:
        what = "deletion" if pending.kind is EventKind.DELETED else "expiry"
        super().__init__(
            f"the {what} of {pending.entry_id} is decided and the entry no longer matches; it could "
            f"not be written yet ({'the disk is full' if pending.disk_full else pending.last_error}) "
            "and the node writes it as soon as it can, then notifies the members"
        )
        self.pending = pending


class PendingClosures:
    """The held decisions of this process, by entry id (thread-safe)."""

    def __init__(self) -> None:
        self._held: dict[str, PendingClosure] = {}
        self._lock = threading.Lock()
        self.landed = 0
        """How many held decisions were written later (for health and tests)."""
        self.on_change: Callable[[list[PendingClosure]], None] = lambda _held: None
        """Called with every held closure when one is held, written or dropped (the node keeps
        them across a restart: ``node.records.held_journal``)."""

    def _changed(self) -> None:
        """Under the lock: tell ``on_change``, oldest first."""
        self.on_change(sorted(self._held.values(), key=lambda p: p.decided_at))

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._held

    def get(self, entry_id: str) -> PendingClosure | None:
        return self._held.get(entry_id)

    def all(self) -> list[PendingClosure]:
        """Oldest decision first."""
        with self._lock:
            return sorted(self._held.values(), key=lambda p: p.decided_at)

    def hold(self, closure: PendingClosure, error: BaseException, *, disk_full: bool) -> PendingClosure:
        """Keep ``closure`` (or count one more failed attempt of the one already held)."""
        with self._lock:
            known = self._held.get(closure.entry_id)
            held = replace(
                known or closure,
                written=closure.written or (known is not None and known.written),
                attempts=(known.attempts + 1) if known else closure.attempts,
                last_error=type(error).__name__,
                disk_full=disk_full,
            )
            self._held[closure.entry_id] = held
            if known is None or known.written != held.written:
                self._changed()
            return held

    def restore(self, closures: list[PendingClosure]) -> None:
        """Hold closures kept from before a restart (their entries must be suppressed first)."""
        with self._lock:
            for closure in closures:
                self._held.setdefault(closure.entry_id, closure)

    def mark_written(self, entry_id: str) -> None:
        """The closure's transaction committed; only its tree head is left to publish."""
        with self._lock:
            known = self._held.get(entry_id)
            if known is not None and not known.written:
                self._held[entry_id] = replace(known, written=True)
                self._changed()

    def drop(self, entry_id: str, *, landed: bool) -> None:
        with self._lock:
            if self._held.pop(entry_id, None) is not None:
                self.landed += int(landed)
                self._changed()

    def to_dict(self) -> dict[str, Any]:
        held = self.all()
        return {
            "pending": len(held),
            "landed_later": self.landed,
            "oldest_decided_at": format_time(held[0].decided_at.replace(microsecond=0)) if held else None,
            "disk_full": any(p.disk_full for p in held),
        }
