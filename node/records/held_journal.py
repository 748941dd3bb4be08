"""The held deletions kept across a restart, in a file that never needs a new block.

A deletion held because the disk is full cannot be written to the database, and a new file
could not be written either. So at start the node writes ``closures-held`` in its directory at
its full size (two slots of ``SLOT_BYTES``, real blocks), and every change to the held set
overwrites the older slot in place: a sequence number, a SHA-256 of the content and the JSON of
the held closures (entry ids, staff ids, kinds, reasons, times: nothing biometric), padded. A
torn write spoils one slot only; reading takes the valid slot with the higher sequence number.
At the next start the held closures are suppressed again before the index is built and written
by the retry duty. On SQLite only (one process per node directory); more closures than a slot
holds (about 150) are kept in memory only, and the log says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from node.files import PRIVATE_FILE
from node.records.closures import PendingClosure
from protocol.events import EventKind, EventReason
from protocol.fields import format_time

__all__ = ["HELD_FILE", "SLOT_BYTES", "HeldJournal"]

LOG = logging.getLogger("watchnet.records.held")

HELD_FILE = "closures-held"
SLOT_BYTES = 32 << 10
_HEADER = 96
"""``seq`` (20 digits), a space, the SHA-256 of the body (64 hex digits), a newline, padding."""


def _encode(closure: PendingClosure) -> dict[str, Any]:
    return {
        "entry_id": closure.entry_id,
        "actor": closure.actor,
        "kind": closure.kind.value,
        "reason": closure.reason.value,
        "decided_at": format_time(closure.decided_at.replace(microsecond=0)),
        "written": closure.written,
    }


def _decode(item: dict[str, Any]) -> PendingClosure:
    return PendingClosure(
        entry_id=str(item["entry_id"]),
        actor=str(item["actor"]),
        kind=EventKind(item["kind"]),
        reason=EventReason(item["reason"]),
        decided_at=datetime.fromisoformat(str(item["decided_at"]).replace("Z", "+00:00")),
        written=bool(item["written"]),
        attempts=0,
        last_error="restarted",
    )


class HeldJournal:
    """``closures-held`` of one node directory (thread-safe)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / HELD_FILE
        self._seq = 0
        self._lock = threading.Lock()
        self.ready = False
        self._overflow_said = False

    def open(self) -> list[PendingClosure]:
        """Create the file at full size if it is missing; return the closures it holds."""
        with self._lock:
            held: list[PendingClosure] = []
            try:
                if self.path.exists() and self.path.stat().st_size >= 2 * SLOT_BYTES:
                    self._seq, held = self._read()
                else:
                    self._create()
                self.ready = True
            except OSError as e:
                LOG.error(
                    "cannot keep held deletions across a restart: %s (%s); they are kept in memory",
                    self.path,
                    e.strerror,
                )
            return held

    def _create(self) -> None:
        partial = self.path.with_name(f"{HELD_FILE}.partial")
        content = memoryview(self._slot(0, []) + b" " * SLOT_BYTES)  # the second slot: not valid yet
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        try:
            while content:
                content = content[os.write(fd, content) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, self.path)

    def _read(self) -> tuple[int, list[PendingClosure]]:
        data = self.path.read_bytes()
        best: tuple[int, list[PendingClosure]] = (0, [])
        for start in (0, SLOT_BYTES):
            slot = data[start : start + SLOT_BYTES]
            try:
                seq_text, digest = slot[:_HEADER].split(b"\n", 1)[0].split(b" ")
                body = slot[_HEADER:].rstrip(b" ")
                if hashlib.sha256(body).hexdigest().encode() != digest:
                    continue
                seq = int(seq_text)
                if seq >= best[0]:
                    best = (seq, [_decode(item) for item in json.loads(body)])
            except (ValueError, KeyError, TypeError):
                continue
        return best

    def _slot(self, seq: int, closures: list[PendingClosure]) -> bytes:
        body = json.dumps([_encode(c) for c in closures], separators=(",", ":")).encode()
        header = f"{seq:020d} {hashlib.sha256(body).hexdigest()}\n".encode().ljust(_HEADER, b" ")
        slot = header + body
        if len(slot) > SLOT_BYTES:
            raise OverflowError(len(slot))
        return slot.ljust(SLOT_BYTES, b" ")

    def save(self, closures: list[PendingClosure]) -> None:
        """Overwrite the older slot in place with ``closures`` (no new block is needed)."""
        if not self.ready:
            return
        with self._lock:
            kept = list(closures)
            while True:
                try:
                    slot = self._slot(self._seq + 1, kept)
                    break
                except OverflowError:
                    kept = kept[: len(kept) * 3 // 4]
            if len(kept) < len(closures) and not self._overflow_said:
                self._overflow_said = True
                LOG.error(
                    "%d held deletions do not fit %s: the newest %d are kept in memory only",
                    len(closures),
                    self.path,
                    len(closures) - len(kept),
                )
            self._seq += 1
            try:
                fd = os.open(self.path, os.O_WRONLY)
                try:
                    os.pwrite(fd, slot, (self._seq % 2) * SLOT_BYTES)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                LOG.error("held deletions not saved to %s (%s)", self.path, e.strerror)
