"""The tamper-evident audit log: every staff action and API access, hash-chained.

Each record commits to the previous one (``record_hash = SHA-256(JCS(record with prev_hash))``),
and the newest hash is signed into every tree head, so deleting or editing a record breaks the
chain visibly. Records hold who, what, when, the outcome and a request hash: never an
embedding, an image, a key or a free-text name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.storage.locks import lock_chains
from node.storage.models import AuditRecord
from protocol.canonical import canonical_bytes, sha256_hex
from protocol.errors import ProofError
from protocol.fields import format_time

__all__ = [
    "GENESIS",
    "REPEATS_PREFIX",
    "AuditWriter",
    "RefusalTally",
    "append_audit",
    "append_audit_batch",
    "audit_head",
    "record_audit",
    "record_hash",
    "verify_audit_chain",
]

GENESIS = "0" * 64


def record_hash(record: AuditRecord) -> str:
    return _fields_hash(
        {
            "seq": record.seq,
            "at": record.at,
            "actor": record.actor,
            "action": record.action,
            "target": record.target,
            "outcome": record.outcome,
            "request_hash": record.request_hash,
            "prev_hash": record.prev_hash,
        }
    )


def _fields_hash(row: dict[str, Any]) -> str:
    """The record's hash from its columns (``record_hash`` of the row they make)."""
    return sha256_hex(canonical_bytes({**row, "at": format_time(row["at"])}))


def append_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    outcome: str,
    now: datetime,
    target: str = "",
    request_hash: str = "",
) -> AuditRecord:
    """Add one record in the caller's transaction (so a refused change and its record commit together).

    The chain lock is taken first, so every worker on PostgreSQL numbers its record after the last
    committed one; it is held until the caller's transaction ends.
    """
    lock_chains(session)
    last = session.exec(select(AuditRecord).order_by(col(AuditRecord.seq).desc()).limit(1)).first()
    record = AuditRecord(
        seq=0 if last is None else last.seq + 1,
        at=now.replace(microsecond=0),
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        request_hash=request_hash,
        prev_hash=GENESIS if last is None else last.record_hash,
        record_hash="",
    )
    record.record_hash = record_hash(record)
    session.add(record)
    return record


def record_audit(engine: Engine, write_lock: threading.RLock, **record: Any) -> None:
    """Write one record now, in its own transaction, in this process's audit sequence."""
    with write_lock, Session(engine) as session:
        append_audit(session, **record)
        session.commit()


def append_audit_batch(session: Session, records: list[dict[str, Any]]) -> None:
    """Add several records in one transaction, reading the chain's last record once (under the chain lock)."""
    lock_chains(session)
    last = session.exec(select(AuditRecord).order_by(col(AuditRecord.seq).desc()).limit(1)).first()
    seq, previous = (0, GENESIS) if last is None else (last.seq + 1, last.record_hash)
    rows = []
    for fields in records:
        now: datetime = fields["now"]
        row = {
            "seq": seq,
            "at": now.replace(microsecond=0),
            "actor": fields["actor"],
            "action": fields["action"],
            "target": fields.get("target", ""),
            "outcome": fields["outcome"],
            "request_hash": fields.get("request_hash", ""),
            "prev_hash": previous,
        }
        row["record_hash"] = _fields_hash(row)
        rows.append(row)
        seq, previous = seq + 1, row["record_hash"]
    if rows:  # one executemany, no ORM objects: a busy node writes hundreds a second
        session.execute(insert(AuditRecord.__table__), rows)  # type: ignore[attr-defined]


def audit_head(session: Session) -> str:
    last = session.exec(select(AuditRecord).order_by(col(AuditRecord.seq).desc()).limit(1)).first()
    return GENESIS if last is None else last.record_hash


def verify_audit_chain(records: Iterable[AuditRecord], *, first_seq: int = 0, previous: str = GENESIS) -> str:
    """Check sequence, links and hashes; return the head. Raise ``ProofError`` at the first break.

    By default ``records`` are the whole chain; ``first_seq`` and ``previous`` (the hash of record
    ``first_seq - 1``, verified before) check the part of it after a record already verified.
    """
    for expected_seq, record in enumerate(records, start=first_seq):
        if record.seq != expected_seq:
            raise ProofError(f"audit record {expected_seq} is missing (found {record.seq})")
        if record.prev_hash != previous:
            raise ProofError(f"audit record {record.seq} does not link to record {record.seq - 1}")
        if record_hash(record) != record.record_hash:
            raise ProofError(f"audit record {record.seq} was altered")
        previous = record.record_hash
    return previous


class AuditWriter:
    """Group commit for the audit records of read-only requests (matches, log and audit reads).

    A request adds its record to a buffer; ``flush`` writes the buffer in one transaction, so a
    busy node pays one commit per batch instead of one per request. Refusals and every request
    that changes state are written synchronously by their callers instead; a crash can lose at
    most the last flush interval of read records.
    """

    def __init__(self, engine: Engine, write_lock: threading.RLock) -> None:
        self._engine = engine
        self._write_lock = write_lock
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, **record: Any) -> None:
        with self._lock:
            self._pending.append(record)

    @property
    def pending(self) -> int:
        """Records waiting for the next flush (they pile up while the database is down)."""
        return len(self._pending)

    def flush(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            with self._write_lock, Session(self._engine) as session:
                append_audit_batch(session, batch)
                session.commit()
        except Exception:
            with self._lock:
                self._pending[:0] = batch
            raise
        return len(batch)


REPEATS_PREFIX = "repeats="
"""The target of a coalesced record: it stands for that many refusals (``RefusalTally``)."""


class RefusalTally:
    """Coalesces identical refusals of unauthenticated requests, so a flood cannot grow the log.

    The first ``written`` refusals of a kind (source, action, outcome) in a window are recorded
    as usual; the identical ones after them in the same window are only counted, and when the
    window ends one record carries their number (target ``repeats=N``). Every refusal is still
    counted, in at most ``written + 1`` records per kind and window. Kinds are bounded: past
    ``max_kinds`` in one window the source is dropped from the key, so a flood from many
    addresses coalesces too.
    """

    def __init__(self, window_seconds: float = 60.0, *, written: int = 10, max_kinds: int = 1024) -> None:
        self.window = window_seconds
        self.written = written
        self.max_kinds = max_kinds
        self._kinds: dict[tuple[str, str, str], tuple[float, int, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def first(self, record: dict[str, Any], now: float) -> bool:
        """Count ``record``; True while it is among the first of its kind in the window (write it)."""
        key = (record["actor"], record["action"], record["outcome"])
        with self._lock:
            if key not in self._kinds and len(self._kinds) >= self.max_kinds:
                key = ("anonymous:*", record["action"], record["outcome"])
                record = {**record, "actor": "anonymous:*"}
            started, seen, kept = self._kinds.get(key, (now, 0, record))
            self._kinds[key] = (started, seen + 1, kept)
            return seen < self.written

    def due(self, now: float, *, everything: bool = False) -> list[dict[str, Any]]:
        """The records of windows that have ended (all of them at shutdown), their kinds forgotten."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for key, (started, seen, record) in list(self._kinds.items()):
                if everything or now - started >= self.window:
                    del self._kinds[key]
                    if seen > self.written:
                        out.append({**record, "target": f"{REPEATS_PREFIX}{seen - self.written}"})
        return out
