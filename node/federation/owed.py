"""The receipts our members still owe us, kept as rows instead of found by scanning the log.

The notifier asks every second which members owe a receipt, and the metrics ask how many each
owes. Answering from the log means joining every deletion, expiry and correction ever made with
every receipt ever received: O(E) a second, forever. Instead ``owed_receipt`` holds one row per
(change, member) still unconfirmed. ``bring_up_to_date`` adds the rows of changes logged since
the last call (a range read on the log's primary key from ``owed_receipt_mark.through``) and, when
the confirming members differ from those the rows were made for (a member joined or was removed),
remakes the table once from the log. A receipt's arrival removes its row (``settle``).

Both run under the chain lock: the rows are made only where no receipt is stored yet, and a
receipt is stored and its row removed in one transaction, so on PostgreSQL with several workers
a receipt arriving at one worker while the leader makes rows leaves no row behind.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from node.records.eventlog import leaf_count
from node.storage.locks import lock_chains
from node.storage.models import LogLeaf, OwedReceipt, OwedReceiptMark, ReceiptRow
from protocol.receipt import RECEIPT_KINDS

__all__ = ["bring_up_to_date", "members_owing", "owed_counts", "settle"]

CHUNK = 500
"""Events read, and receipts looked up, per statement when rows are made."""


def _kinds() -> list[str]:
    return [k.value for k in RECEIPT_KINDS]


def bring_up_to_date(session: Session, members: Iterable[str]) -> bool:
    """Make the rows of every change not yet covered, for ``members``; True if anything changed.

    Takes the chain lock when there is work; the caller commits."""
    wanted = sorted(members)
    key = ",".join(wanted)
    mark = session.get(OwedReceiptMark, 1)
    if mark is not None and mark.members == key and mark.through == leaf_count(session):
        return False  # the common case, every second: two index reads and no lock
    lock_chains(session)
    mark = session.exec(
        select(OwedReceiptMark).where(OwedReceiptMark.id == 1).execution_options(populate_existing=True)
    ).first()
    size = leaf_count(session)
    if mark is not None and mark.members == key and mark.through == size:
        return False
    if mark is None or mark.members != key:
        session.execute(delete(OwedReceipt))
        mark = mark or OwedReceiptMark(id=1)
        mark.members, mark.through = key, 0
    start = mark.through
    while wanted and start < size:
        events = session.exec(
            select(LogLeaf.idx, LogLeaf.event_id)
            .where(col(LogLeaf.idx) >= start, col(LogLeaf.idx) < size, col(LogLeaf.kind).in_(_kinds()))
            .order_by(col(LogLeaf.idx))
            .limit(CHUNK)
        ).all()
        if not events:
            break
        confirmed = set(
            session.exec(
                select(ReceiptRow.event_id, ReceiptRow.member).where(
                    col(ReceiptRow.event_id).in_([e for _, e in events])
                )
            ).all()
        )
        for idx, event_id in events:
            for member in wanted:
                if (event_id, member) not in confirmed:
                    session.add(OwedReceipt(event_id=event_id, member=member, idx=idx))
        session.flush()
        start = events[-1][0] + 1
    mark.through = size
    session.add(mark)
    return True


def settle(session: Session, event_id: str, member: str) -> None:
    """``member``'s receipt for ``event_id`` is stored in this transaction: it owes it no more."""
    lock_chains(session)
    session.execute(
        delete(OwedReceipt).where(col(OwedReceipt.event_id) == event_id, col(OwedReceipt.member) == member)
    )


def _current(engine: Engine, members: list[str]) -> Session:
    session = Session(engine)
    if bring_up_to_date(session, members):
        session.commit()
    return session


def members_owing(engine: Engine, manifest: Manifest, node_id: str) -> set[str]:
    """Members that owe us at least one receipt."""
    members = manifest.confirming_members(node_id)
    if not members:
        return set()
    with _current(engine, members) as session:
        return set(
            session.exec(
                select(OwedReceipt.member).where(col(OwedReceipt.member).in_(members)).distinct()
            ).all()
        )


def owed_counts(engine: Engine, manifest: Manifest, node_id: str) -> dict[str, int]:
    """How many of our changes each confirming member has not yet confirmed."""
    members = manifest.confirming_members(node_id)
    if not members:
        return {}
    with _current(engine, members) as session:
        counts = dict(
            session.exec(
                select(OwedReceipt.member, func.count())
                .where(col(OwedReceipt.member).in_(members))
                .group_by(col(OwedReceipt.member))
            ).all()
        )
    return {m: int(counts.get(m, 0)) for m in members}
