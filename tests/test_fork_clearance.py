"""Fork clearance without a network: the signed format, the follower's checks on a real database,
the organisation's evidence check, its decision log and ``gov serve``'s endpoint.

The same flow on real processes (a member forks, restores honestly, the organisation clears it and
the follower receives a later deletion) is ``tests/test_fork_clearance_network.py``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from governance.forkclear import (
    ClearanceInconsistent,
    ClearanceMismatch,
    ConsistencyStep,
    ForkClearance,
    check_covers,
    check_evidence,
    verify_clearance,
)
from governance.manifest import Manifest
from node.federation.sync import (
    ForkDetected,
    PageResult,
    apply_clearance,
    apply_page,
    forked_peers,
    refuse_clearance,
)
from node.org.clearances import (
    Evidence,
    draft_clearance,
    publish_clearance,
    read_decisions,
    record_decision,
)
from node.org.server import build_gov_app
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import AuditRecord, PeerState
from protocol.errors import ClockSkewError, ExpiredError, MalformedError, ThresholdError, WatchnetError
from protocol.events import EntryEvent, EventKind, log_leaf_bytes
from protocol.keys import SigningKey
from protocol.merkle import MerkleLog
from protocol.signed import SignedDocument
from protocol.sync import LogPage
from protocol.treehead import TreeHead
from tests.factories import KEYS, NODE_A_SIGNING, NODE_B_SIGNING, T0, make_manifest, signed_manifest
from tests.test_sync_apply import event

MANIFEST = make_manifest(now=T0)
A = MANIFEST.member("chain-a")
assert A is not None
NOW = T0 + timedelta(days=1)


class Log:
    def __init__(self, *entries: str) -> None:
        self.events: list[SignedDocument[EntryEvent]] = []
        self.log = MerkleLog()
        for entry in entries:
            self.add(event(EventKind.REGISTERED, entry))

    def add(self, e: SignedDocument[EntryEvent]) -> None:
        self.events.append(e)
        self.log.append(log_leaf_bytes(e))

    def head(self, size: int | None = None) -> SignedDocument[TreeHead]:
        size = len(self.events) if size is None else size
        doc = SignedDocument(
            TreeHead(log_id="chain-a", tree_size=size, root_hash=self.log.root(size), timestamp=T0)
        )
        doc.sign(NODE_A_SIGNING)
        return doc

    def page(self, after: int) -> LogPage:
        return LogPage(
            first=after, events=self.events[after:], head=self.head(), latest_size=len(self.events)
        )


def clearance(log: Log, *, verified: int, signers: list[SigningKey] | None = None, **changes: Any) -> bytes:
    size = len(log.events)
    steps = (
        ()
        if verified >= size
        else (
            ConsistencyStep(
                verified, log.log.root(verified), tuple(log.log.consistency_proof(verified, size))
            ),
        )
    )
    payload = ForkClearance(
        member="chain-a",
        tree_size=size,
        root_hash=log.log.root(size),
        reports=("ab" * 16,),
        consistency=steps,
        decided_at=NOW,
        expires=NOW + timedelta(days=30),
        manifest_version=MANIFEST.version,
    )
    doc = SignedDocument(replace(payload, **changes))
    for key in KEYS[:2] if signers is None else signers:
        doc.sign(key)
    return doc.to_bytes()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(engine)
    return engine


def apply(engine: Engine, page: LogPage, after: int) -> PageResult:
    return apply_page(
        engine, node_id="chain-b", signing_key=NODE_B_SIGNING, member=A, page=page, after=after, now=T0
    )


def flagged(engine: Engine) -> Log:
    """chain-b verified chain-a's first two events, then saw a second root for size 2: flagged."""
    honest = Log("ent-00000001", "ent-00000002")
    apply(engine, honest.page(0), 0)
    rogue = Log("ent-00000001", "ent-00000099")
    with pytest.raises(ForkDetected):
        apply(engine, rogue.page(2), 2)  # no new event, and a head of size 2 with another root
    assert forked_peers(engine) == ["chain-a"]
    return honest


def audit(engine: Engine, action: str) -> list[AuditRecord]:
    with Session(engine) as session:
        return list(session.exec(select(AuditRecord).where(AuditRecord.action == action)).all())


def status(engine: Engine) -> str:
    with Session(engine) as session:
        state = session.get(PeerState, "chain-a")
        assert state is not None
        return state.status


def test_a_valid_clearance_clears_the_flag_and_following_resumes(engine: Engine) -> None:
    honest = flagged(engine)
    honest.add(event(EventKind.REGISTERED, "ent-00000003"))  # the member went on after restoring
    digest = apply_clearance(engine, member=A, manifest=MANIFEST, data=clearance(honest, verified=2), now=NOW)
    assert digest is not None and status(engine) == "ok"
    cleared = audit(engine, "peer.log.fork_cleared")
    assert [(r.target, r.outcome) for r in cleared] == [("chain-a", f"cleared:{digest}")]
    assert len(audit(engine, "peer.log.fork")) == 1  # the evidence stays in the chain
    honest.add(event(EventKind.DELETED, "ent-00000001"))
    result = apply(engine, honest.page(2), 2)
    assert result.tree_size == 4 and result.receipts == 1  # the later deletion arrives
    assert (
        apply_clearance(engine, member=A, manifest=MANIFEST, data=clearance(honest, verified=2), now=NOW)
        is None
    )


def test_a_clearance_at_the_held_size_is_checked_against_our_own_leaves(engine: Engine) -> None:
    honest = flagged(engine)
    assert apply_clearance(engine, member=A, manifest=MANIFEST, data=clearance(honest, verified=2), now=NOW)
    assert status(engine) == "ok"


REFUSALS: list[tuple[str, Any, type[WatchnetError]]] = [
    ("unsigned", lambda log: clearance(log, verified=2, signers=[]), ThresholdError),
    ("one of two signatures", lambda log: clearance(log, verified=2, signers=KEYS[:1]), ThresholdError),
    (
        "signed by strangers",
        lambda log: clearance(log, verified=2, signers=[SigningKey(b"\x77" * 32), SigningKey(b"\x78" * 32)]),
        ThresholdError,
    ),
    (
        "signed by the member itself",
        lambda log: clearance(log, verified=2, signers=[NODE_A_SIGNING]),
        ThresholdError,
    ),
    ("another member", lambda log: clearance(log, verified=2, member="chain-b"), ClearanceMismatch),
    (
        "expired",
        lambda log: clearance(log, verified=2, decided_at=T0 - timedelta(days=40), expires=T0),
        ExpiredError,
    ),
    (
        "decided in the future",
        lambda log: clearance(
            log, verified=2, decided_at=NOW + timedelta(hours=1), expires=NOW + timedelta(days=9)
        ),
        ClockSkewError,
    ),
    (
        "rogue history, same size",
        lambda log: clearance(Log("ent-00000001", "ent-00000099"), verified=2),
        ClearanceInconsistent,
    ),
    (
        "rogue history, larger",
        lambda log: clearance(Log("ent-00000001", "ent-00000099", "ent-00000100"), verified=2),
        ClearanceInconsistent,
    ),
    (
        "no proof from our size",
        lambda log: clearance(Log("ent-00000001", "ent-00000002", "ent-00000003"), verified=1),
        ClearanceInconsistent,
    ),
    ("not json", lambda log: b"{", MalformedError),
]


@pytest.mark.parametrize(("case", "make", "error"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_bad_clearance_is_refused_audited_once_and_the_flag_stays(
    engine: Engine, case: str, make: Any, error: type[WatchnetError]
) -> None:
    honest = flagged(engine)
    data = make(honest)
    for _ in range(3):
        with pytest.raises(error):
            apply_clearance(engine, member=A, manifest=MANIFEST, data=data, now=NOW)
    assert status(engine) == "forked"
    refused = audit(engine, "peer.log.fork_clearance_refused")
    assert [(r.target, r.outcome) for r in refused] == [("chain-a", f"refused:{error.code}")]
    assert audit(engine, "peer.log.fork_cleared") == []
    with pytest.raises(ForkDetected, match="not followed"):
        apply(engine, honest.page(2), 2)


def test_a_tampered_signed_clearance_fails() -> None:
    honest = Log("ent-00000001", "ent-00000002")
    data = json.loads(clearance(honest, verified=2))
    data["signed"]["expires"] = "2027-12-01T09:00:00Z"
    doc = SignedDocument.from_dict(data, ForkClearance)
    with pytest.raises(ThresholdError):
        verify_clearance(doc, MANIFEST, member="chain-a", now=NOW)


def test_check_covers_with_a_tampered_proof() -> None:
    honest = Log("ent-00000001", "ent-00000002", "ent-00000003")
    doc = SignedDocument.from_bytes(clearance(honest, verified=2), ForkClearance)
    step = doc.payload.consistency[0]
    bad = replace(doc.payload, consistency=(replace(step, proof=(bytes(32),) * len(step.proof)),))
    with pytest.raises(ClearanceInconsistent):
        check_covers(bad, held_size=2, held_root=honest.log.root(2))
    check_covers(doc.payload, held_size=2, held_root=honest.log.root(2))


@pytest.mark.parametrize(
    "changes",
    [
        {"reports": ()},
        {"reports": ("AB" * 16,)},
        {"reports": ("ab" * 16, "ab" * 16)},
        {"expires": NOW},
        {"tree_size": 0},
        {"member": "Chain A"},
    ],
)
def test_malformed_clearances_do_not_construct(changes: dict[str, Any]) -> None:
    honest = Log("ent-00000001", "ent-00000002")
    doc = SignedDocument.from_bytes(clearance(honest, verified=2), ForkClearance)
    with pytest.raises(MalformedError):
        replace(doc.payload, **changes)


def test_the_organisation_drafts_only_when_the_member_extends_every_reported_head(tmp_path: Path) -> None:
    honest = Log("ent-00000001", "ent-00000002", "ent-00000003", "ent-00000004")
    reports = {"ab" * 16: honest.head(2).payload, "cd" * 16: honest.head(3).payload}
    proofs = {2: honest.log.consistency_proof(2, 4), 3: honest.log.consistency_proof(3, 4)}
    evidence = Evidence(reports, honest.head(), proofs)
    doc = draft_clearance(MANIFEST, "chain-a", evidence, now=NOW, valid_for=timedelta(days=30))
    assert doc.signatures == {} and doc.payload.reports == ("ab" * 16, "cd" * 16)
    assert [s.tree_size for s in doc.payload.consistency] == [2, 3]
    for signer in KEYS[:2]:
        doc.sign(signer)
    for size in (2, 3):  # either reporter accepts it
        check_covers(doc.payload, held_size=size, held_root=honest.log.root(size))
    rogue = Log("ent-00000001", "ent-00000099", "ent-00000003", "ent-00000004")
    refusals: list[tuple[Evidence, type[WatchnetError]]] = [
        (
            Evidence(
                reports,
                rogue.head(),
                {2: rogue.log.consistency_proof(2, 4), 3: rogue.log.consistency_proof(3, 4)},
            ),
            ClearanceInconsistent,
        ),
        (Evidence(reports, honest.head(2), {}), ClearanceInconsistent),  # shorter than a follower holds
        (Evidence(reports, honest.head(), {3: proofs[3]}), ClearanceInconsistent),  # a proof missing
        (
            Evidence(
                {"ab" * 16: honest.head(2).payload}, _signed_by(honest.head().payload, NODE_B_SIGNING), proofs
            ),
            ThresholdError,
        ),
    ]
    for bad, error in refusals:
        with pytest.raises(error):
            draft_clearance(MANIFEST, "chain-a", bad, now=NOW, valid_for=timedelta(days=30))
    with pytest.raises(ClearanceInconsistent):
        check_evidence(member=A, current=rogue.head(2), verified_heads=[honest.head(2).payload], proofs={})


def _signed_by(head: TreeHead, key: SigningKey) -> SignedDocument[TreeHead]:
    doc = SignedDocument(head)
    doc.sign(key)
    return doc


def test_decisions_are_a_hash_chain_and_an_edit_breaks_it(tmp_path: Path) -> None:
    honest = Log("ent-00000001", "ent-00000002")
    doc = SignedDocument.from_bytes(clearance(honest, verified=2), ForkClearance)
    for action, outcome in (("fork-clear.draft", "drafted"), ("fork-clear.publish", "published")):
        record_decision(
            tmp_path, action=action, member="chain-a", outcome=outcome, now=NOW, clearance=doc.payload
        )
    records = read_decisions(tmp_path)
    assert [r["outcome"] for r in records] == ["drafted", "published"]
    assert records[1]["prev_hash"] == records[0]["record_hash"] and records[0]["reports"] == ["ab" * 16]
    path = tmp_path / "decisions.jsonl"
    path.write_text(path.read_text().replace('"drafted"', '"refused:x"'))
    with pytest.raises(MalformedError, match="record 0"):
        read_decisions(tmp_path)


def test_gov_serve_publishes_only_a_threshold_signed_clearance(tmp_path: Path) -> None:
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_bytes(signed_manifest(MANIFEST, KEYS[0], KEYS[1]).to_bytes())
    reports = tmp_path / "reports"
    honest = Log("ent-00000001", "ent-00000002")
    half = SignedDocument.from_bytes(clearance(honest, verified=2, signers=KEYS[:1]), ForkClearance)
    with pytest.raises(ThresholdError):
        publish_clearance(reports, half, MANIFEST, now=NOW)
    expired = SignedDocument.from_bytes(clearance(honest, verified=2), ForkClearance)
    with pytest.raises(ExpiredError):
        publish_clearance(reports, expired, MANIFEST, now=NOW + timedelta(days=31))
    assert not (reports / "clearance-chain-a.json").exists()

    async def scenario() -> None:
        async with TestClient(TestServer(build_gov_app(manifest_path, reports))) as client:
            answer = await client.get("/v1/fork-clearances/chain-a")
            assert (answer.status, (await answer.json())["error"]) == (404, "no_clearance")
            reports.mkdir(exist_ok=True)
            (reports / "clearance-chain-a.json").write_bytes(half.to_bytes())  # a draft put there by hand
            assert (await client.get("/v1/fork-clearances/chain-a")).status == 404
            publish_clearance(reports, expired, MANIFEST, now=NOW)
            answer = await client.get("/v1/fork-clearances/chain-a")
            assert answer.status == 200
            assert SignedDocument.from_bytes(await answer.read(), ForkClearance).payload == expired.payload
            assert (await client.get("/v1/fork-clearances/..%2Fmanifest")).status == 404

    asyncio.run(scenario())


def test_the_vector_clears_the_vector_log_for_a_follower_at_size_1() -> None:
    """The spec's example: a follower that verified chain-a's head of size 1 accepts it under the
    vector manifest; one whose size-1 root differs, or that holds no proof from its size, does not."""
    from tests.vectors import builders

    vector = builders.fork_clearance_vector()
    manifest = SignedDocument.from_dict(builders.manifest_vector()["document"], Manifest).payload
    doc = SignedDocument.from_dict(vector["document"], ForkClearance)
    verify_clearance(doc, manifest, member="chain-a", now=builders.CLOCK + timedelta(days=2))
    _, log = builders.chain_a_log()
    check_covers(doc.payload, held_size=1, held_root=log.root(1))
    check_covers(doc.payload, held_size=2, held_root=log.root(2), held_prefix_root=log.root(2))
    with pytest.raises(ClearanceInconsistent):
        check_covers(doc.payload, held_size=1, held_root=bytes(32))
    with pytest.raises(ExpiredError):
        verify_clearance(doc, manifest, member="chain-a", now=builders.CLOCK + timedelta(days=31))


def test_refusals_are_counted_again_after_a_new_fork(engine: Engine) -> None:
    honest = flagged(engine)
    for _ in range(2):
        refuse_clearance(engine, "chain-a", "oversized", NOW)
    assert len(audit(engine, "peer.log.fork_clearance_refused")) == 1
    assert apply_clearance(engine, member=A, manifest=MANIFEST, data=clearance(honest, verified=2), now=NOW)
    rogue = Log("ent-00000001", "ent-00000002", "ent-00000099")
    with pytest.raises(ForkDetected):
        apply(engine, rogue.page(2), 2)
    refuse_clearance(engine, "chain-a", "oversized", NOW)
    assert len(audit(engine, "peer.log.fork_clearance_refused")) == 2
    assert len(audit(engine, "peer.log.fork")) == 2
