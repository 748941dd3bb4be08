"""Applying a peer's log page and taking receipts, on a real database: all or nothing, exactly once."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from governance.manifest import Member
from node.federation.owed import members_owing, owed_counts
from node.federation.sync import (
    ForkDetected,
    apply_page,
    checkpoint,
    pending_receipts,
    propagation_status,
    record_receipts,
    signed_root,
)
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import (
    Alert,
    AuditRecord,
    LogLeaf,
    OutboxReceipt,
    OwedReceipt,
    PeerLeaf,
    PeerState,
    ReceiptRow,
    Tombstone,
    TreeHeadRow,
)
from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.errors import MalformedError, SignatureError
from protocol.events import EntryEvent, EventKind, EventReason, log_leaf_bytes
from protocol.fields import format_time
from protocol.keys import EncryptionKey, SigningKey
from protocol.merkle import CompactRange, MerkleLog, leaf_hash
from protocol.receipt import DeletionReceipt, ReceiptHistoryMismatch
from protocol.signed import SignedDocument
from protocol.sync import LogPage, ReceiptDelivery
from protocol.treehead import TreeHead
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0, make_manifest

MANIFEST = make_manifest(now=T0)
CHAIN_A = MANIFEST.member("chain-a")
assert CHAIN_A is not None
A: Member = CHAIN_A


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(engine)
    return engine


def event(
    kind: EventKind, entry_id: str, version: int = 1, key: SigningKey = NODE_A_SIGNING
) -> SignedDocument[EntryEvent]:
    reasons = {
        EventKind.REGISTERED: EventReason.REGISTRATION,
        EventKind.CORRECTED: EventReason.CORRECTION,
        EventKind.DELETED: EventReason.DATA_SUBJECT_REQUEST,
        EventKind.EXPIRED: EventReason.RETENTION_EXPIRED,
    }
    header = EntryEvent(
        event_id=f"evt-{secrets.token_hex(8)}",
        owner="chain-a",
        kind=kind,
        entry_id=entry_id,
        entry_version=version,
        reason=reasons[kind],
        occurred_at=T0,
        actor="acct-officer-1",
        payload_commitment=bytes(32),
    )
    signed = SignedDocument(header)
    signed.sign(key)
    return signed


class OwnerLog:
    """chain-a's log as the owner holds it: events in order and signed heads for any size."""

    def __init__(self) -> None:
        self.events: list[SignedDocument[EntryEvent]] = []
        self.log = MerkleLog()

    def add(self, *events: SignedDocument[EntryEvent]) -> None:
        for e in events:
            self.events.append(e)
            self.log.append(log_leaf_bytes(e))

    def page(self, after: int, end: int | None = None, key: SigningKey = NODE_A_SIGNING) -> LogPage:
        end = len(self.events) if end is None else end
        head = SignedDocument(
            TreeHead(log_id="chain-a", tree_size=end, root_hash=self.log.root(end), timestamp=T0)
        )
        head.sign(key)
        return LogPage(first=after, events=self.events[after:end], head=head, latest_size=len(self.events))


def apply(engine: Engine, page: LogPage, after: int) -> object:
    return apply_page(
        engine, node_id="chain-b", signing_key=NODE_B_SIGNING, member=A, page=page, after=after, now=T0
    )


def rows(engine: Engine, model: type) -> list:  # type: ignore[type-arg]
    with Session(engine) as session:
        return list(session.exec(select(model)).all())


def alert(engine: Engine, entry_id: str) -> None:
    with Session(engine) as session:
        session.add(
            Alert(
                id=f"alr-{secrets.token_hex(6)}",
                owner="chain-a",
                entry_id=entry_id,
                entry_version=1,
                band="strong",
                operator="acct-op",
                created_at=T0,
                category="shoplifting",
                signed_entry="{}",
            )
        )
        session.commit()


def test_a_deletion_withdraws_alerts_keeps_a_tombstone_and_owes_a_signed_receipt(engine: Engine) -> None:
    owner = OwnerLog()
    owner.add(event(EventKind.REGISTERED, "ent-00000001"))
    alert(engine, "ent-00000001")
    apply(engine, owner.page(0), 0)
    owner.add(event(EventKind.CORRECTED, "ent-00000001", 2), event(EventKind.DELETED, "ent-00000001", 2))
    result = apply(engine, owner.page(1), 1)
    assert (result.applied, result.receipts) == (2, 2)  # type: ignore[attr-defined]
    (withdrawn,) = rows(engine, Alert)
    assert (withdrawn.status, withdrawn.band, withdrawn.category, withdrawn.signed_entry) == (
        "withdrawn",
        None,
        None,
        None,
    )
    assert [(t.entry_id, t.kind) for t in rows(engine, Tombstone)] == [("ent-00000001", "deleted")]
    receipts = pending_receipts(engine, "chain-a")
    assert {r.payload.kind for r in receipts} == {EventKind.CORRECTED, EventKind.DELETED}
    for r in receipts:
        r.verify([NODE_B_SIGNING.public])
        assert (r.payload.tree_size, r.payload.root_hash) == (
            3,
            owner.log.root(3),
        )  # the page's verified head
    assert checkpoint(engine, "chain-a") == 3


def test_a_receipt_owed_from_before_receipts_named_a_root_is_signed_again_with_it(engine: Engine) -> None:
    owner = OwnerLog()
    owner.add(event(EventKind.REGISTERED, "ent-00000003"), event(EventKind.DELETED, "ent-00000003"))
    apply(engine, owner.page(0), 0)
    with Session(engine) as session:  # as an earlier version wrote it: no root_hash
        row = session.exec(select(OutboxReceipt)).one()
        signed = parse_json(row.signed)["signed"]
        del signed["root_hash"]
        sig = b64url_encode(NODE_B_SIGNING.sign(canonical_bytes(signed)))
        row.signed = canonical_bytes(
            {"signed": signed, "signatures": [{"keyid": NODE_B_SIGNING.public.keyid, "sig": sig}]}
        ).decode()
        session.add(row)
        session.commit()
    with pytest.raises(MalformedError, match="root_hash"):  # what a delivery without the key meets
        pending_receipts(engine, "chain-a")
    (kept,) = pending_receipts(engine, "chain-a", NODE_B_SIGNING)
    kept.verify([NODE_B_SIGNING.public])
    assert (kept.payload.tree_size, kept.payload.root_hash) == (2, owner.log.root(2))
    assert [r.to_bytes() for r in pending_receipts(engine, "chain-a")] == [kept.to_bytes()]  # stored


def test_a_member_that_never_saw_the_entry_still_tombstones_and_confirms(engine: Engine) -> None:
    owner = OwnerLog()
    owner.add(event(EventKind.REGISTERED, "ent-00000002"), event(EventKind.EXPIRED, "ent-00000002"))
    apply(engine, owner.page(0), 0)
    assert [(t.entry_id, t.kind) for t in rows(engine, Tombstone)] == [("ent-00000002", "expired")]
    assert [r.payload.action.value for r in pending_receipts(engine, "chain-a")] == ["purged"]


def test_a_correction_moves_open_alerts_to_the_new_version(engine: Engine) -> None:
    owner = OwnerLog()
    owner.add(event(EventKind.REGISTERED, "ent-00000003"))
    apply(engine, owner.page(0), 0)
    alert(engine, "ent-00000003")
    owner.add(event(EventKind.CORRECTED, "ent-00000003", 2))
    apply(engine, owner.page(1), 1)
    (moved,) = rows(engine, Alert)
    assert (moved.entry_version, moved.status, moved.band) == (2, "open", "strong")


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("bad-event-signature", SignatureError),
        ("bad-head-signature", SignatureError),
        ("not-at-checkpoint", MalformedError),
        ("rewritten-history", ForkDetected),
    ],
)
def test_a_bad_page_changes_nothing(engine: Engine, case: str, error: type[Exception]) -> None:
    owner = OwnerLog()
    owner.add(event(EventKind.REGISTERED, "ent-00000004"))
    apply(engine, owner.page(0), 0)
    before = (rows(engine, PeerLeaf), rows(engine, OutboxReceipt), rows(engine, Tombstone))
    if case == "bad-event-signature":
        owner.add(event(EventKind.DELETED, "ent-00000004", key=SigningKey(b"\x09" * 32)))
        page, after = owner.page(1), 1
    elif case == "bad-head-signature":
        owner.add(event(EventKind.DELETED, "ent-00000004"))
        page, after = owner.page(1, key=SigningKey(b"\x09" * 32)), 1
    elif case == "not-at-checkpoint":
        owner.add(event(EventKind.DELETED, "ent-00000004"), event(EventKind.REGISTERED, "ent-00000005"))
        page, after = owner.page(2), 2
    else:
        forged = OwnerLog()
        forged.add(event(EventKind.REGISTERED, "ent-00000099"), event(EventKind.DELETED, "ent-00000004"))
        page, after = forged.page(1), 1
    with pytest.raises(error):
        apply(engine, page, after if case != "not-at-checkpoint" else 1)
    assert (rows(engine, PeerLeaf), rows(engine, OutboxReceipt), rows(engine, Tombstone)) == before
    assert checkpoint(engine, "chain-a") == 1
    state = rows(engine, PeerState)[0]
    assert state.status == ("forked" if case == "rewritten-history" else "ok")


def test_a_page_applied_twice_is_refused_the_second_time(engine: Engine) -> None:
    owner = OwnerLog()
    owner.add(event(EventKind.REGISTERED, "ent-00000006"), event(EventKind.DELETED, "ent-00000006"))
    page = owner.page(0)
    apply(engine, page, 0)
    with pytest.raises(MalformedError):
        apply(engine, page, 0)
    assert len(rows(engine, OutboxReceipt)) == 1
    assert len([r for r in rows(engine, AuditRecord) if r.action == "peer.event.deleted"]) == 1


def test_after_a_fork_the_peer_is_not_followed_any_more(engine: Engine) -> None:
    owner = OwnerLog()
    owner.add(event(EventKind.REGISTERED, "ent-00000007"))
    apply(engine, owner.page(0), 0)
    forged = OwnerLog()
    forged.add(event(EventKind.REGISTERED, "ent-00000098"))
    with pytest.raises(ForkDetected) as caught:
        apply(engine, forged.page(1, 1), 1)
    assert caught.value.conflicting_head is not None
    owner.add(event(EventKind.DELETED, "ent-00000007"))
    with pytest.raises(ForkDetected, match="not followed"):
        apply(engine, owner.page(1), 1)


def test_pages_are_checked_against_the_stored_frontier_without_reading_held_leaves(engine: Engine) -> None:
    """Catch-up is linear: after the first page no page reads the leaves held before it, and a
    checkpoint from before the frontier was stored rebuilds it once from the leaves."""
    owner = OwnerLog()
    owner.add(*(event(EventKind.REGISTERED, f"ent-{i:08d}") for i in range(23)))
    reads: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "peer_leaf.leaf_hash" in statement:
            reads.append(statement)

    sqlalchemy_event.listen(engine, "before_cursor_execute", count)
    for after, end in ((0, 5), (5, 12), (12, 13), (13, 20)):
        apply(engine, owner.page(after, end), after)
    assert reads == []
    with Session(engine) as session:
        state = session.get(PeerState, "chain-a")
        assert state is not None and state.tree_size == 20
        assert CompactRange.from_bytes(20, state.frontier or b"").root() == owner.log.root(20)
        state.frontier = None
        session.add(state)
        session.commit()
    apply(engine, owner.page(20, 22), 20)
    assert len(reads) == 1
    apply(engine, owner.page(22), 22)
    assert len(reads) == 1
    forged = OwnerLog()
    forged.add(
        *owner.events[:22], event(EventKind.DELETED, "ent-00000003"), event(EventKind.DELETED, "ent-00000004")
    )
    with pytest.raises(ForkDetected, match="size 24 does not match the 23 events"):
        apply(engine, forged.page(23), 23)


def own_log(engine: Engine, *events: SignedDocument[EntryEvent]) -> None:
    with Session(engine) as session:
        for i, e in enumerate(events):
            leaf = log_leaf_bytes(e)
            session.add(
                LogLeaf(
                    idx=i,
                    event_id=e.payload.event_id,
                    entry_id=e.payload.entry_id,
                    kind=e.payload.kind.value,
                    leaf_hash=leaf_hash(leaf),
                    leaf=leaf,
                    created_at=T0,
                )
            )
        session.commit()


def own_head(engine: Engine, *events: SignedDocument[EntryEvent]) -> None:
    """The head we signed over ``events``, as the registry keeps one for every size it published."""
    log = MerkleLog()
    for e in events:
        log.append(log_leaf_bytes(e))
    head = SignedDocument(TreeHead(log_id="chain-a", tree_size=log.size, root_hash=log.root(), timestamp=T0))
    head.sign(NODE_A_SIGNING)
    with Session(engine) as session:
        session.add(TreeHeadRow(tree_size=log.size, signed=head.to_bytes().decode("utf-8")))
        session.commit()


def receipt_for(
    e: SignedDocument[EntryEvent],
    *,
    log: tuple[SignedDocument[EntryEvent], ...],
    tree_size: int = 2,
    key: SigningKey = NODE_B_SIGNING,
    **changes: object,
) -> SignedDocument[DeletionReceipt]:
    """chain-b's receipt for ``e``, naming the root of ``log`` (the owner's events) at ``tree_size``."""
    owner = MerkleLog()
    for logged in log:
        owner.append(log_leaf_bytes(logged))
    root = owner.root(tree_size) if tree_size <= owner.size else bytes(32)
    receipt = replace(
        DeletionReceipt.for_event(
            e.payload,
            member="chain-b",
            tree_size=tree_size,
            root_hash=root,
            applied_at=T0 + timedelta(seconds=3),
        ),
        **changes,
    )
    signed = SignedDocument(receipt)
    signed.sign(key)
    return signed


def test_the_owner_keeps_valid_receipts_and_shows_who_is_missing(engine: Engine) -> None:
    registered, deleted = (
        event(EventKind.REGISTERED, "ent-00000010"),
        event(EventKind.DELETED, "ent-00000010"),
    )
    own_log(engine, registered, deleted)
    assert members_owing(engine, MANIFEST, "chain-a") == {"chain-b"}
    chain_b = MANIFEST.member("chain-b")
    assert chain_b is not None
    confirmed = record_receipts(
        engine,
        node_id="chain-a",
        member=chain_b,
        delivery=ReceiptDelivery(receipts=[receipt_for(deleted, log=(registered, deleted))]),
        now=T0,
    )
    assert confirmed == [deleted.payload.event_id]
    again = record_receipts(
        engine,
        node_id="chain-a",
        member=chain_b,
        delivery=ReceiptDelivery(receipts=[receipt_for(deleted, log=(registered, deleted))]),
        now=T0,
    )
    assert again == confirmed and len(rows(engine, ReceiptRow)) == 1
    (status,) = propagation_status(engine, MANIFEST, "chain-a")
    assert status["missing"] == []
    assert status["confirmed"] == [
        {
            "member": "chain-b",
            "applied_at": format_time(T0 + timedelta(seconds=3)),
            "received_at": format_time(T0),
        }
    ]
    assert members_owing(engine, MANIFEST, "chain-a") == set()


def test_a_log_pages_root_is_the_root_of_the_head_signed_at_its_end(engine: Engine) -> None:
    """``signed_root``, which a log page and a receipt's check read instead of the leaves."""
    events = [event(EventKind.REGISTERED, f"ent-{i:08d}") for i in range(23)]
    own_log(engine, *events)
    own_head(engine, *events[:20])
    own_head(engine, *events)
    log = MerkleLog()
    for e in events:
        log.append(log_leaf_bytes(e))
    with Session(engine) as session:
        assert signed_root(session, "chain-a", 23) == log.root(23)
        assert signed_root(session, "chain-a", 20) == log.root(20)
        assert signed_root(session, "chain-a", 21) is None  # no head at that size: the leaves
        assert signed_root(session, "chain-b", 23) is None  # a head row that is not of our log


@pytest.mark.parametrize(
    "case",
    [
        "signed-by-another-key",
        "event-not-in-our-log",
        "tree-size-beyond-our-log",
        "wrong-entry",
        "root-of-another-history",
    ],
)
@pytest.mark.parametrize("signed_head", [False, True], ids=["from-leaves", "from-our-signed-head"])
def test_a_receipt_that_does_not_check_out_is_refused_and_nothing_is_kept(
    engine: Engine, case: str, signed_head: bool
) -> None:
    deleted = event(EventKind.DELETED, "ent-00000011")
    own_log(engine, deleted)
    if signed_head:
        own_head(engine, deleted)
    chain_b = MANIFEST.member("chain-b")
    assert chain_b is not None
    ours = (deleted,)
    receipt, refusal = {
        "signed-by-another-key": lambda: (
            receipt_for(deleted, log=ours, tree_size=1, key=NODE_A_SIGNING),
            SignatureError,
        ),
        "event-not-in-our-log": lambda: (
            receipt_for(event(EventKind.DELETED, "ent-00000011"), log=ours, tree_size=1),
            MalformedError,
        ),
        "tree-size-beyond-our-log": lambda: (receipt_for(deleted, log=ours, tree_size=5), MalformedError),
        "wrong-entry": lambda: (
            receipt_for(deleted, log=ours, tree_size=1, entry_id="ent-99999999"),
            MalformedError,
        ),
        "root-of-another-history": lambda: (
            receipt_for(deleted, log=(event(EventKind.DELETED, "ent-00000012"),), tree_size=1),
            ReceiptHistoryMismatch,
        ),
    }[case]()
    with pytest.raises(refusal):
        record_receipts(
            engine, node_id="chain-a", member=chain_b, delivery=ReceiptDelivery(receipts=[receipt]), now=T0
        )
    assert rows(engine, ReceiptRow) == []


def test_owed_receipts_follow_the_log_the_receipts_and_the_members(engine: Engine) -> None:
    """Rows are made for changes as they are logged, leave as receipts arrive, are remade once when
    the confirming members change, and the steady state is read without a write."""
    registered, deleted = (
        event(EventKind.REGISTERED, "ent-00000020"),
        event(EventKind.DELETED, "ent-00000020"),
    )
    own_log(engine, registered, deleted)
    assert owed_counts(engine, MANIFEST, "chain-a") == {"chain-b": 1}
    chain_b = MANIFEST.member("chain-b")
    assert chain_b is not None
    record_receipts(
        engine,
        node_id="chain-a",
        member=chain_b,
        delivery=ReceiptDelivery(receipts=[receipt_for(deleted, log=(registered, deleted))]),
        now=T0,
    )
    assert rows(engine, OwedReceipt) == []
    writes: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    sqlalchemy_event.listen(engine, "before_cursor_execute", count)
    for _ in range(3):
        assert members_owing(engine, MANIFEST, "chain-a") == set()
    assert writes == []
    sqlalchemy_event.remove(engine, "before_cursor_execute", count)

    joint = MANIFEST.joint_use
    chain_c = replace(
        chain_b,
        node_id="chain-c",
        endpoint="https://chain-c.example",
        signing_key=SigningKey(b"\xc1" * 32).public,
        encryption_key=EncryptionKey(b"\xc2" * 32).public,
    )
    more = MANIFEST.with_changes(joint_use=replace(joint, members=[*joint.members, chain_c]))
    assert more.confirming_members("chain-a") == ["chain-b", "chain-c"]
    assert owed_counts(engine, more, "chain-a") == {"chain-b": 0, "chain-c": 1}
    assert {(r.event_id, r.member) for r in rows(engine, OwedReceipt)} == {
        (deleted.payload.event_id, "chain-c")
    }
    assert owed_counts(engine, MANIFEST, "chain-a") == {"chain-b": 0}
    assert rows(engine, OwedReceipt) == []
