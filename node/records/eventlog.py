"""The node's event log on its database: a pymerkle tree whose leaves are ``log_leaf`` rows.

Appends happen inside the registry's transactions (the leaf row, the entry change and the audit
record commit together or not at all); this tree only reads committed leaves to compute roots
and proofs. Subtree roots of complete ranges never change in an append-only log, so pymerkle's
cache stays valid.

A tree head is computed inside the transaction that holds the chain lock
(``node.storage.locks``): ``EventLog.head_in`` reads the size and the leaves through that
transaction's session, so the size and root it signs come from one snapshot even while other
workers of the node append.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pymerkle import BaseMerkleTree
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.storage.models import LogLeaf
from protocol.merkle import MerkleLog

__all__ = ["EventLog", "LeafHashTree", "SqlLeafTree", "leaf_count", "open_event_log", "root_of_leaf_hashes"]


def leaf_count(session: Session) -> int:
    """The log's size: one past its last index, read from the primary key's index in O(log n),
    where ``count(*)`` scans every leaf on PostgreSQL. Leaves are never removed (an erasure
    clears a payload, not its leaf) and indexes are contiguous from 0, so the two agree; the
    integrity check still counts the rows, to notice one removed behind the node's back."""
    last = session.exec(select(func.max(LogLeaf.idx))).one()
    return 0 if last is None else int(last) + 1


class SqlLeafTree(BaseMerkleTree):  # type: ignore[misc]
    """Read-only pymerkle storage over the ``log_leaf`` table (pymerkle indexes from 1)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._bound = threading.local()
        super().__init__("sha256")

    @contextmanager
    def reading_in(self, session: Session) -> Iterator[None]:
        """Within the block, this thread's reads go through ``session`` (its transaction)."""
        previous = getattr(self._bound, "session", None)
        self._bound.session = session
        try:
            yield
        finally:
            self._bound.session = previous

    @contextmanager
    def _session(self) -> Iterator[Session]:
        bound: Session | None = getattr(self._bound, "session", None)
        if bound is not None:
            yield bound
            return
        with Session(self._engine) as session:
            yield session

    def _encode_entry(self, data: bytes) -> bytes:
        return data

    def _store_leaf(self, data: bytes, digest: bytes) -> int:
        raise TypeError("the event log is appended by node.records.registry inside its transaction")

    def _get_leaf(self, index: int) -> bytes:
        with self._session() as session:
            row = session.get(LogLeaf, index - 1)
            if row is None:
                raise IndexError(f"no log leaf {index - 1}")
            return row.leaf_hash

    def _get_leaves(self, offset: int, width: int) -> Iterable[bytes]:
        with self._session() as session:
            rows = session.exec(
                select(LogLeaf.leaf_hash)
                .where(col(LogLeaf.idx) >= offset, col(LogLeaf.idx) < offset + width)
                .order_by(col(LogLeaf.idx))
            ).all()
            return list(rows)

    def _get_size(self) -> int:
        with self._session() as session:
            return leaf_count(session)


class LeafHashTree(BaseMerkleTree):  # type: ignore[misc]
    """pymerkle storage over leaf hashes already computed: a peer's log as we mirror it."""

    def __init__(self, hashes: list[bytes]) -> None:
        self._hashes = hashes
        super().__init__("sha256")

    def _encode_entry(self, data: bytes) -> bytes:
        return data

    def _store_leaf(self, data: bytes, digest: bytes) -> int:
        self._hashes.append(digest)
        return len(self._hashes)

    def _get_leaf(self, index: int) -> bytes:
        return self._hashes[index - 1]

    def _get_leaves(self, offset: int, width: int) -> Iterable[bytes]:
        return self._hashes[offset : offset + width]

    def _get_size(self) -> int:
        return len(self._hashes)


def root_of_leaf_hashes(hashes: list[bytes]) -> bytes:
    """The RFC 9162 root over ``hashes`` (leaf hashes, in log order)."""
    return MerkleLog(LeafHashTree(hashes)).root()


class EventLog(MerkleLog):
    """The node's own log: a ``MerkleLog`` over ``log_leaf`` that can also read inside a transaction."""

    def __init__(self, tree: SqlLeafTree) -> None:
        super().__init__(tree)
        self._sql = tree

    def head_in(self, session: Session) -> tuple[int, bytes]:
        """The size and root of the log as ``session``'s transaction sees it, every leaf read there.

        The caller holds the chain lock, so no worker appends between the size and the leaves. The
        transaction must not hold leaves of its own yet: pymerkle caches the subtree roots it
        computes here, and a leaf that was rolled back would leave a wrong one in the cache.
        """
        with self._sql.reading_in(session):
            size = self.size
            return size, self.root(size)


def open_event_log(engine: Engine) -> EventLog:
    return EventLog(SqlLeafTree(engine))
