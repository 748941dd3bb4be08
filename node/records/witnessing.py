"""Witnessed checkpoints: this node as a witness of the other members' logs, and as a log that
collects their cosignatures (c2sp.org/tlog-checkpoint, tlog-cosignature, tlog-witness).

A node publishes only its latest head, so a node that rewrote its history with its own key
would pass a fresh ``audit verify``. Every member therefore witnesses every other: it keeps the
latest checkpoint it cosigned per log (``WitnessedLog``) and cosigns a newer one only with a
consistency proof from it. The owner keeps each witness's latest cosignature of its own log
(``Cosignature``) and publishes its checkpoint with the cosignatures for that size.

Names: a member's log is ``watchnet/<group>/<node id>`` and its witness key name that plus
``/witness`` (the organisation's witness: ``watchnet/<group>/organisation/witness``, its own key
from ``policy.witness.organisation``); a member's both use its Ed25519 signing key from the manifest (note type 0x01 for
the log, 0x04 for cosignatures), so no new key has to be distributed. The spec says a key
SHOULD NOT serve two signature types; here the signed messages are separated by their first
bytes (a checkpoint's origin, ``cosignature/v1``, or a canonical JSON envelope), and the key
ids differ by type.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.manifest import Manifest, MemberStatus
from node.records.eventlog import EventLog
from node.storage.locks import lock_chains
from node.storage.models import Cosignature, TreeHeadRow, WitnessedLog
from protocol.checkpoint import Checkpoint, origin_of
from protocol.errors import MalformedError, WatchnetError
from protocol.keys import SigningKey
from protocol.note import COSIGNATURE, ED25519, NoteSigner, NoteVerifier, SignedNote
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead
from protocol.witness import AddCheckpoint, WitnessedHead, accept_checkpoint

__all__ = ["Checkpoints", "Witness", "log_verifier", "witness_name", "witness_verifier"]


def witness_name(group_id: str, node_id: str) -> str:
    return f"{origin_of(group_id, node_id)}/witness"


def log_verifier(manifest: Manifest, node_id: str) -> NoteVerifier | None:
    member = manifest.member(node_id)
    if member is None:
        return None
    return NoteVerifier(origin_of(manifest.group_id, node_id), ED25519, member.signing_key)


def witness_verifier(manifest: Manifest, witness: str) -> NoteVerifier | None:
    """A witness's cosignature key: a member's, or the organisation's (``ORGANISATION_WITNESS``)."""
    key = manifest.witness_key(witness)
    if key is None:
        return None
    return NoteVerifier(witness_name(manifest.group_id, witness), COSIGNATURE, key)


class Witness:
    """Cosigns other members' checkpoints, never two histories of one log."""

    def __init__(self, engine: Engine, node_id: str, key: SigningKey) -> None:
        self._engine = engine
        self._node_id = node_id
        self._key = key
        self._lock = threading.Lock()  # one process per SQLite node; PostgreSQL rows are locked too

    def logs(self, manifest: Manifest) -> dict[str, list[NoteVerifier]]:
        """The logs witnessed here: every active or suspended member's but our own."""
        logs: dict[str, list[NoteVerifier]] = {}
        for member in manifest.joint_use.members:
            if member.node_id != self._node_id and member.status is not MemberStatus.REMOVED:
                verifier = log_verifier(manifest, member.node_id)
                if verifier is not None:
                    logs[verifier.name] = [verifier]
        return logs

    def add_checkpoint(self, body: bytes, manifest: Manifest, now: datetime) -> str:
        """Decide an add-checkpoint request; return the cosignature line (spec's 200 body).

        The check of the old size and the write of the new checkpoint are one transaction, with
        the row locked, so two requests racing cannot roll the witnessed size back."""
        request = AddCheckpoint.from_bytes(body)
        origin = Checkpoint.from_text(request.note.text).origin
        with self._lock, Session(self._engine) as session:
            statement = select(WitnessedLog).where(col(WitnessedLog.origin) == origin)
            if session.get_bind().dialect.name == "postgresql":
                lock_chains(session)
                statement = statement.with_for_update()
            row = session.exec(statement).first()
            latest = None if row is None else WitnessedHead(row.tree_size, row.root_hash)
            checkpoint = accept_checkpoint(request, self.logs(manifest), latest)
            signer = NoteSigner(witness_name(manifest.group_id, self._node_id), self._key, COSIGNATURE)
            line = signer.sign(request.note.text, timestamp=int(now.timestamp()))
            if row is None:
                row = WitnessedLog(origin=origin, tree_size=0, root_hash=b"", note="", cosigned_at=now)
            row.tree_size, row.root_hash = checkpoint.size, checkpoint.root_hash
            row.note, row.cosigned_at = request.note.with_signature(line).to_text(), now
            session.add(row)
            session.commit()
        return line.line()

    def latest(self, origin: str) -> str | None:
        """The note of the latest checkpoint cosigned here for ``origin``: the log's signature and ours."""
        with Session(self._engine) as session:
            row = session.get(WitnessedLog, origin)
        return None if row is None else row.note

    def witnessed(self) -> list[WitnessedLog]:
        with Session(self._engine, expire_on_commit=False) as session:
            return list(session.exec(select(WitnessedLog).order_by(col(WitnessedLog.origin))).all())


@dataclass(frozen=True)
class OwnCheckpoint:
    """This node's latest checkpoint, signed, with the cosignatures collected for its size."""

    checkpoint: Checkpoint
    note: SignedNote
    cosigned_by: tuple[str, ...]


class Checkpoints:
    """This node's log as C2SP checkpoints: the note it publishes and the witnesses' cosignatures."""

    def __init__(self, engine: Engine, log: EventLog, node_id: str, key: SigningKey) -> None:
        self._engine = engine
        self._log = log
        self._node_id = node_id
        self._key = key

    @property
    def node_id(self) -> str:
        return self._node_id

    def latest_head(self) -> TreeHead | None:
        with Session(self._engine) as session:
            row = session.exec(select(TreeHeadRow).order_by(col(TreeHeadRow.tree_size).desc())).first()
        return None if row is None else SignedDocument.from_bytes(row.signed.encode(), TreeHead).payload

    def current(self, manifest: Manifest) -> OwnCheckpoint | None:
        head = self.latest_head()
        if head is None:
            return None
        checkpoint = Checkpoint(origin_of(manifest.group_id, self._node_id), head.tree_size, head.root_hash)
        text = checkpoint.to_text()
        note = SignedNote(text, (NoteSigner(checkpoint.origin, self._key).sign(text),))
        names = []
        with Session(self._engine) as session:
            rows = session.exec(
                select(Cosignature)
                .where(col(Cosignature.tree_size) == head.tree_size)
                .order_by(col(Cosignature.witness))
            ).all()
        for row in rows:
            verifier = witness_verifier(manifest, row.witness)
            if verifier is None:
                continue
            candidate = SignedNote.from_text(text + "\n" + row.line)
            try:
                candidate.verify([verifier])
            except WatchnetError:  # the witness's key changed since (a rotation): not shown
                continue
            note = note.with_signature(candidate.signatures[0])
            names.append(row.witness)
        return OwnCheckpoint(checkpoint, note, tuple(names))

    def cosigned_sizes(self) -> dict[str, int]:
        """The size each witness last cosigned, read once for a whole pass (0: never)."""
        with Session(self._engine) as session:
            return {w: int(n) for w, n in session.exec(select(Cosignature.witness, Cosignature.tree_size))}

    def request_for(self, own: OwnCheckpoint, old_size: int) -> AddCheckpoint:
        """The add-checkpoint body for a witness that last cosigned ``old_size``."""
        size = own.checkpoint.size
        proof = () if old_size in (0, size) else tuple(self._log.consistency_proof(old_size, size))
        plain = SignedNote(own.note.text, own.note.signatures[:1])
        return AddCheckpoint(old_size, proof, plain)

    def requests_for(self, own: OwnCheckpoint, old_sizes: Iterable[int]) -> dict[int, AddCheckpoint]:
        """One add-checkpoint body per distinct old size. The witnesses of a pass have mostly
        cosigned the same size, the previous head; building their consistency proof once instead
        of once each took a pass over 19 witnesses from about 130 queries of the log to 7."""
        return {old: self.request_for(own, old) for old in sorted(set(old_sizes))}

    def record(
        self, witness: str, own: OwnCheckpoint, answer: str, verifier: NoteVerifier, now: datetime
    ) -> None:
        """Keep a witness's cosignature after checking it against the checkpoint it was asked for."""
        lines = [line for line in answer.splitlines(keepends=True) if line.startswith("\u2014 ")]
        if not lines:
            raise MalformedError(f"witness {witness} answered no signature line")
        for line in lines:
            candidate = SignedNote.from_text(own.note.text + "\n" + line)
            if (candidate.signatures[0].name, candidate.signatures[0].key_id) != (
                verifier.name,
                verifier.key_id,
            ):
                continue
            candidate.verify([verifier])
            with Session(self._engine) as session:
                row = session.get(Cosignature, witness) or Cosignature(
                    witness=witness, tree_size=0, line="", received_at=now
                )
                row.tree_size, row.line, row.received_at = own.checkpoint.size, line, now
                session.add(row)
                session.commit()
            return
        raise MalformedError(f"witness {witness} answered no cosignature from its key")
