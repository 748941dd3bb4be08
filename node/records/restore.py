"""Restoring a node from a backup without resurrecting anyone and without forking its log.

A backup is older than the node it restores: entries deleted since are active in it, the events
after it are missing, and a log continued from its size would reuse indexes every follower has
already verified (a fork). So a restore has two halves:

1. ``restore_backup`` (offline, ``watchnet restore FILE``): the backup's database is written back
   (SQLite: the file replaced atomically, its stale WAL removed; PostgreSQL: ``pg_restore --clean``
   into the configured database), the keys too when the backup has them, and the node is marked
   **restoring**: a file in the node directory (``restoring.json``), written before the database
   is touched and removed only when the restore is complete, so a crash at any point restarts
   restoring, and every worker of the node sees it.
2. While the marker is there the node answers no query and matches nothing (``RestoreGate``:
   ``Restoring``, HTTP 503 with ``Retry-After``) and appends nothing to its log; the leader's
   ``restore`` duty (``node.federation.mirror``) fetches the members' copies of our log and hands
   them to ``replay``: the highest head is checked (our signature, our log, our restored root a
   prefix of it), the missing leaves are verified against it and written back at the same indexes
   with identical bytes (so every root matches what the members verified), and each event's
   effect is re-applied in the same transaction: a deletion or expiry erases the entry through
   the registry's own erasure (``Registry.erase_replayed``: the entry's key is destroyed), and an
   entry whose current signed version exists only in the lost part of the database (registered,
   approved or corrected after the backup: the signed payload is sealed in the owner's store
   alone, members hold only event headers) is recorded **lost**: erased, never active, reported.

``RestoreReport`` is what the officer reads (``watchnet restore --report``, readiness, the audit
record ``node.restore``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.config import NodeConfig
from node.files import PRIVATE_FILE, write_atomic
from node.records.auditlog import append_audit
from node.records.backup import (
    NODE_FILES,
    PGDUMP_MEMBER,
    SQLITE_MEMBER,
    _private_scratch,
    read_archive,
    run_pg_tool,
)
from node.records.eventlog import leaf_count, root_of_leaf_hashes
from node.storage.locks import lock_chains
from node.storage.models import EntryRow, EventPayloadRow, LogLeaf
from node.storage.notify import ENTRIES, notify
from protocol.errors import BackupError, MalformedError, ProofError, WatchnetError
from protocol.events import EntryEvent, EventKind
from protocol.fields import format_time
from protocol.keys import PublicSigningKey
from protocol.merkle import leaf_hash
from protocol.provision import ThirdPartyProvision
from protocol.signed import SignedDocument
from protocol.sync import parse_log_event
from protocol.treehead import TreeHead

if TYPE_CHECKING:
    from node.records.registry import Registry

__all__ = [
    "LOST",
    "MARKER_FILE",
    "REPORT_FILE",
    "ReplayResult",
    "RestoreGate",
    "RestoreReport",
    "Restoring",
    "lost_entries",
    "read_marker",
    "replay",
    "restore_backup",
]

MARKER_FILE = "restoring.json"
"""In the node directory while a restore is not complete: the node answers nothing."""
REPORT_FILE = "restore-report.json"
"""In the node directory after the last restore: what it replayed and what it lost."""
LOST = "lost"
"""An entry status: registered, approved or corrected after the backup, its data not recoverable."""
LOST_REASON = "lost-in-restore"
RETRY_AFTER_SECONDS = 10
_CLOSED = ("deleted", "expired", "rejected", LOST)


class Restoring(WatchnetError):
    """This node is being restored from a backup: it answers no query until its log is recovered.

    The node's state, not the asker's fault: mapped to HTTP 503 with ``Retry-After`` in ``node.http``.
    """

    code = "restoring"
    retry_after = RETRY_AFTER_SECONDS


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The restoring marker's facts, or ``None`` when the node is not restoring."""
    path = directory / MARKER_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        facts = json.loads(text)
    except ValueError:
        facts = {}
    return facts if isinstance(facts, dict) else {}


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=PRIVATE_FILE)


def write_marker(directory: Path, facts: dict[str, Any]) -> None:
    _write_private(directory / MARKER_FILE, json.dumps(facts, ensure_ascii=False, indent=1).encode("utf-8"))


def clear_marker(directory: Path) -> None:
    (directory / MARKER_FILE).unlink(missing_ok=True)
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RestoreGate:
    """Whether the node is restoring, read from the marker file (one ``stat`` per check), so every
    worker of the node sees a restore start and end without being told."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def active(self) -> bool:
        return (self.directory / MARKER_FILE).exists()

    def facts(self) -> dict[str, Any] | None:
        return read_marker(self.directory)

    def require_serving(self) -> None:
        if self.active:
            facts = read_marker(self.directory) or {}
            raise Restoring(
                f"this node is being restored from a backup taken {facts.get('backup_created_at', '?')} "
                f"(log size {facts.get('backup_log_size', '?')}); it answers no query until it has "
                "recovered its log from the members' copies"
            )


# ----- the offline half: the backup written back ---------------------------------------------------


@dataclass
class RestoreReport:
    """What a restore did: from the backup (offline) and, once complete, from the members."""

    node_id: str
    backup_created_at: str
    backup_log_size: int
    backup_bytes: int
    engine: str
    with_keys: bool
    started_at: str
    log_size: int | None = None
    replayed: int = 0
    erased: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    receipts: int = 0
    completed_at: str | None = None
    members: dict[str, int] = field(default_factory=dict)
    """The size of our log each member held (its verified head), as answered."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RestoreReport:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def _member_path(scratch: Path, name: str) -> Path:
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise BackupError(f"the backup holds {name!r}, which is no member name")
    return scratch.joinpath(*parts)


def _extract(
    source: BinaryIO, passphrase: bytes, scratch: Path
) -> tuple[dict[str, Any], dict[str, Path], int]:
    """Every member into ``scratch``, checked against the backup's own listing."""
    files: dict[str, Path] = {}

    def copy_to(name: str) -> Path:
        files[name] = _member_path(scratch, name)
        return files[name]

    metadata, _seen, read = read_archive(source, passphrase, copy_to)
    return metadata, files, read


def _replace_sqlite(copy: Path, target: Path) -> None:
    """The file replaced in one rename; its WAL and shared-memory files, which belong to the old
    database, are removed first (the node is stopped)."""
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    _write_private(target, copy.read_bytes())


def _restore_postgres(url: str, dump: Path) -> None:
    options = ["--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error"]
    run_pg_tool("pg_restore", [*options, str(dump)], url)


def _restore_keys(config: NodeConfig, files: dict[str, Path]) -> int:
    """The node's keys from the backup; record keys only where the key store has none, since a
    record key the store no longer holds was destroyed (a deletion) or is the backup's own copy."""
    written = 0
    for name in (config.signing_key_file, config.encryption_key_file, config.data_key_file):
        copy = files.get(f"keys/{Path(name).name}")
        if copy is not None:
            _write_private(config.path(name), copy.read_bytes())
            written += 1
    records = config.path(config.record_keys_dir)
    for member, copy in files.items():
        if member.startswith("keys/records/"):
            records.mkdir(parents=True, exist_ok=True, mode=0o700)
            target = records / Path(member).name
            if not target.exists():
                _write_private(target, copy.read_bytes())
                written += 1
    return written


def restore_backup(
    directory: Path,
    source: BinaryIO,
    passphrase: bytes,
    now: datetime,
    *,
    progress: Callable[[str], None] = lambda _step: None,
) -> RestoreReport:
    """Write the backup in ``source`` back into the (stopped) node in ``directory`` and mark it restoring."""
    config = NodeConfig.load(directory)
    url = config.effective_database_url
    engine_name = "postgresql" if url.startswith("postgresql") else "sqlite"
    with _private_scratch(config.directory) as scratch:
        progress("opening the backup")
        metadata, files, read = _extract(source, passphrase, scratch)
        if metadata.get("node_id") != config.node_id:
            raise BackupError(
                f"the backup is of node {metadata.get('node_id')!r}, this directory holds {config.node_id!r}"
            )
        if metadata.get("engine") != engine_name:
            raise BackupError(
                f"the backup holds a {metadata.get('engine')} database, this node uses {engine_name}"
            )
        report = RestoreReport(
            node_id=config.node_id,
            backup_created_at=str(metadata["created_at"]),
            backup_log_size=int(metadata["log_size"]),
            backup_bytes=read,
            engine=engine_name,
            with_keys=bool(metadata.get("with_keys")),
            started_at=format_time(now),
        )
        write_marker(config.directory, report.to_json())  # first: from here on the node answers nothing
        progress("writing the database back")
        if engine_name == "sqlite":
            _replace_sqlite(files[SQLITE_MEMBER], Path(url.removeprefix("sqlite:///")))
        else:
            _restore_postgres(url, files[PGDUMP_MEMBER])
        if report.with_keys:
            progress("writing the keys back")
            _restore_keys(config, files)
        for name in NODE_FILES:  # only where missing: the node's current files are newer
            if name in files and not (config.directory / name).exists():
                _write_private(config.directory / name, files[name].read_bytes())
    return report


# ----- the online half: the missing events replayed -------------------------------------------------


@dataclass
class ReplayResult:
    replayed: int = 0
    erased: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    size: int = 0


def check_head(head: SignedDocument[TreeHead], node_id: str, key: PublicSigningKey) -> None:
    """A member's copy of our head: of our log and signed by our own key."""
    if head.payload.log_id != node_id:
        raise MalformedError(f"a head of log {head.payload.log_id!r} offered as ours ({node_id!r})")
    head.verify([key], threshold=1)


def held_hashes(engine: Engine) -> list[bytes]:
    with Session(engine) as session:
        return list(session.exec(select(LogLeaf.leaf_hash).order_by(col(LogLeaf.idx))).all())


def check_prefix(held: list[bytes], head: TreeHead) -> None:
    """A head no larger than our restored log must be one of its own prefixes."""
    if head.tree_size <= len(held) and root_of_leaf_hashes(held[: head.tree_size]) != head.root_hash:
        raise ProofError(
            f"a member verified our log at size {head.tree_size} with a root the restored log does not "
            f"have there ({len(held)} leaves restored): the backup is not a prefix of what members saw"
        )


def _verified_leaves(
    leaves: list[bytes], first: int, node_id: str, key: PublicSigningKey
) -> list[SignedDocument[Any]]:
    events = []
    for offset, leaf in enumerate(leaves):
        try:
            signed = parse_log_event(json.loads(leaf))
        except ValueError as e:
            raise MalformedError(f"leaf {first + offset} of our log is not JSON") from e
        if signed.payload.owner != node_id:
            raise MalformedError(f"leaf {first + offset} is an event of {signed.payload.owner!r}")
        signed.verify([key], threshold=1)
        events.append(signed)
    return events


def _lost_row(event: EntryEvent) -> EntryRow:
    """A row for an entry the restored database never held: only what its event header says."""
    return EntryRow(
        entry_id=event.entry_id,
        version=event.entry_version,
        status="proposed",
        category="",
        site="",
        evidence_kind="",
        registrar="",
        officer=event.actor,
        proposed_at=event.occurred_at,
        registered_at=event.occurred_at,
        expires_at=event.occurred_at,
    )


def _apply(
    registry: Registry, session: Session, event: EntryEvent, now: datetime, result: ReplayResult
) -> None:
    row = session.get(EntryRow, event.entry_id)
    if row is None:
        row = _lost_row(event)
        session.add(row)
    if event.kind in (EventKind.DELETED, EventKind.EXPIRED):
        if row.status not in ("deleted", "expired"):
            registry.erase_replayed(session, row, event.kind.value, event.reason.value, now)
            result.erased.append(event.entry_id)
            if event.entry_id in result.lost:
                result.lost.remove(event.entry_id)
    elif row.status != LOST:  # a registration or correction: its signed version is not recoverable
        registry.erase_replayed(session, row, LOST, LOST_REASON, now)
        result.lost.append(event.entry_id)
    row.version = max(row.version, event.entry_version)
    session.add(row)
    result.changed.append(event.entry_id)


def replay(
    registry: Registry,
    *,
    head: SignedDocument[TreeHead],
    leaves: list[bytes],
    first: int,
    key: PublicSigningKey,
    report: RestoreReport,
    now: datetime,
) -> ReplayResult:
    """Write ``leaves`` (ours, from index ``first``) back and re-apply their effects, in one transaction.

    The leaves must bring the log exactly to ``head``: its size, and its root over the leaves held
    plus these. Raises (changing nothing) otherwise."""
    engine = registry.engine
    node_id = registry.node_id
    check_head(head, node_id, key)
    events = _verified_leaves(leaves, first, node_id, key)
    result = ReplayResult()
    with registry.write_lock, Session(engine, expire_on_commit=False) as session:
        lock_chains(session)
        held = list(session.exec(select(LogLeaf.leaf_hash).order_by(col(LogLeaf.idx))).all())
        if len(held) != first:
            raise MalformedError(f"leaves from {first} offered, our log holds {len(held)}")
        hashes = [leaf_hash(leaf) for leaf in leaves]
        if first + len(leaves) != head.payload.tree_size:
            raise MalformedError(
                f"{len(leaves)} leaves from {first} do not reach the head's size {head.payload.tree_size}"
            )
        if root_of_leaf_hashes(held + hashes) != head.payload.root_hash:
            raise ProofError(
                f"the {len(leaves)} leaves offered from {first} do not hash to our signed head for size "
                f"{head.payload.tree_size}"
            )
        for offset, (signed, leaf, digest) in enumerate(zip(events, leaves, hashes, strict=True)):
            payload = signed.payload
            if isinstance(payload, ThirdPartyProvision):
                event_id = entry_id = payload.record_id
                kind = "provision"
            else:
                event_id, entry_id, kind = payload.event_id, payload.entry_id, payload.kind.value
            session.add(
                LogLeaf(
                    idx=first + offset,
                    event_id=event_id,
                    entry_id=entry_id,
                    kind=kind,
                    leaf_hash=digest,
                    leaf=leaf,
                    created_at=now,
                )
            )
            if isinstance(payload, EntryEvent):
                session.add(EventPayloadRow(event_id=event_id, entry_id=entry_id, payload_ct=None))
                session.flush()
                _apply(registry, session, payload, now, result)
        result.replayed = len(leaves)
        result.size = first + len(leaves)
        lost = sorted(set(result.lost))
        append_audit(
            session,
            actor="system",
            action="node.restore",
            target=(
                f"backup={report.backup_bytes}B@{report.backup_log_size} replayed={result.replayed} "
                f"lost={len(lost)}:{','.join(lost)}"
            )[:128],
            outcome="ok",
            now=now,
        )
        for entry_id in sorted(set(result.changed)):
            notify(session, ENTRIES, entry_id)
        session.commit()
    return result


def lost_entries(engine: Engine) -> list[dict[str, Any]]:
    """Every entry recorded lost by a restore, for the officer (id, version, when its event was)."""
    with Session(engine) as session:
        rows = session.exec(
            select(EntryRow).where(EntryRow.status == LOST).order_by(col(EntryRow.entry_id))
        ).all()
        return [
            {
                "entry_id": r.entry_id,
                "version": r.version,
                "closed_at": None if r.closed_at is None else format_time(r.closed_at),
            }
            for r in rows
        ]


def log_size(engine: Engine) -> int:
    with Session(engine) as session:
        return leaf_count(session)


def write_report(directory: Path, report: RestoreReport) -> None:
    _write_private(
        directory / REPORT_FILE, json.dumps(report.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
    )


def read_report(directory: Path) -> RestoreReport | None:
    try:
        return RestoreReport.from_json(json.loads((directory / REPORT_FILE).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def is_closed(status: str) -> bool:
    return status in _CLOSED
