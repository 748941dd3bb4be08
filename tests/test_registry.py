"""The registry on real SQLite and PostgreSQL: two-person rule, rules, versions, erasure, expiry, log."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from governance.errors import RegistrationRefused
from governance.roles import Forbidden, Role
from governance.rules import RegistrationRules
from node.records.accounts import StaffAccounts, StaffMember
from node.records.auditlog import verify_audit_chain
from node.records.matching import MatchIndex
from node.records.registry import EntryNotFound, Proposal, Registry, TwoPersonRuleViolation, WrongState
from node.storage.engine import make_engine
from node.storage.migrate import check_schema, upgrade
from node.storage.models import AuditRecord, EntryRow, EventPayloadRow, LogLeaf
from protocol.entry import Evidence, WatchlistEntry
from protocol.errors import ConfigurationError, MalformedError
from protocol.events import EntryEvent, EventReason
from protocol.merkle import leaf_hash, verify_consistency, verify_inclusion
from protocol.signed import SignedDocument
from tests.factories import NODE_A_SIGNING, T0, embedding, make_manifest
from tests.vaults import vault_for

RULES = RegistrationRules(
    categories=("shoplifting", "theft"), evidence_kinds=("police-report",), retention_days=180
)
PASSWORD = "correct horse battery"


class Node:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        upgrade(self.engine)
        self.vault = vault_for(url)
        self.accounts = StaffAccounts(self.engine)
        self.registrar = self.accounts.add("reg1", Role.REGISTRAR, PASSWORD, T0)
        self.officer = self.accounts.add("off1", Role.OFFICER, PASSWORD, T0)
        self.officer2 = self.accounts.add("off2", Role.OFFICER, PASSWORD, T0)
        self.operator = self.accounts.add("op1", Role.OPERATOR, PASSWORD, T0)
        manifest = make_manifest()
        self.registry = Registry(
            engine=self.engine,
            node_id="chain-a",
            signing_key=NODE_A_SIGNING,
            vault=self.vault,
            manifest=lambda: manifest,
            rules=RULES,
            index=MatchIndex(512),
        )

    def propose(self, seed: int = 1, **overrides: object) -> str:
        fields: dict[str, object] = {
            "embedding": embedding(seed),
            "category": "shoplifting",
            "evidence": Evidence("police-report", "TKY-2026-0099"),
            "incident_date": date(2026, 10, 30),
            "site": "shibuya-01",
        }
        fields.update(overrides)
        return self.registry.propose(self.registrar, Proposal(**fields), T0).entry_id  # type: ignore[arg-type]


@pytest.fixture
def node(database_url: str) -> Node:
    return Node(database_url)


def test_schema_check(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigurationError, match="watchnet db upgrade"):
        check_schema(engine)
    upgrade(engine)
    check_schema(engine)


def test_two_person_rule_and_roles(node: Node) -> None:
    entry_id = node.propose()
    assert node.registry.get(entry_id).status == "proposed"
    assert node.registry.index.search([embedding(1)], 0.9) == []
    with pytest.raises(Forbidden):
        node.registry.approve(node.registrar, entry_id, T0)
    with pytest.raises(Forbidden):
        node.registry.approve(node.operator, entry_id, T0)
    with pytest.raises(Forbidden):
        node.registry.propose(
            node.officer,
            Proposal(embedding(2), "theft", Evidence("police-report", "X-1"), date(2026, 10, 1), "s1"),
            T0,
        )
    sneaky = StaffMember(node.registrar.id, "reg1", Role.OFFICER)
    with pytest.raises(TwoPersonRuleViolation):
        node.registry.approve(sneaky, entry_id, T0)
    state = node.registry.approve(node.officer, entry_id, T0)
    assert (state.status, state.version, state.officer) == ("active", 1, node.officer.id)
    assert [m.key for m in node.registry.index.search([embedding(1)], 0.9)] == [entry_id]
    with pytest.raises(WrongState):
        node.registry.approve(node.officer2, entry_id, T0)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"category": "loitering"}, RegistrationRefused, "group's"),
        ({"category": "nuisance"}, RegistrationRefused, "this node registers"),
        ({"evidence": Evidence("witness", "W-1")}, RegistrationRefused, "evidence kind"),
        ({"retention_days": 400}, RegistrationRefused, "exceeds the limit"),
        ({"incident_date": date(2026, 12, 1)}, RegistrationRefused, "after the registration date"),
        ({"embedding": embedding(1, dimension=128)}, MalformedError, "dimensions"),
    ],
)
def test_rule_refusals_leave_nothing_but_an_audit_record(
    node: Node, overrides: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        node.propose(**overrides)
    with Session(node.engine) as session:
        assert session.exec(select(EntryRow)).all() == []
        audit = session.exec(select(AuditRecord)).all()
    assert [a.outcome.split(":")[0] for a in audit] == ["refused"]


def test_correction_makes_a_new_signed_version(node: Node) -> None:
    entry_id = node.propose()
    node.registry.approve(node.officer, entry_id, T0)
    state = node.registry.correct(
        node.officer2, entry_id, reason=EventReason.CORRECTION, now=T0 + timedelta(hours=1), category="theft"
    )
    assert state.version == 2
    doc = node.registry.signed_entry(entry_id)
    doc.verify([NODE_A_SIGNING.public])
    assert (doc.payload.version, doc.payload.category, doc.payload.officer) == (2, "theft", node.officer2.id)
    with pytest.raises(TwoPersonRuleViolation):
        node.registry.correct(
            StaffMember(node.registrar.id, "reg1", Role.OFFICER), entry_id, reason=EventReason.ERROR, now=T0
        )


def test_deletion_erases_and_log_still_verifies(node: Node) -> None:
    entry_id = node.propose(face_crop=b"JPEG-CROP-BYTES")
    node.registry.approve(node.officer, entry_id, T0)
    size_before, root_before = node.registry.log.size, node.registry.log.root()
    node.registry.delete(
        node.officer2, entry_id, EventReason.DATA_SUBJECT_REQUEST, T0 + timedelta(days=1)
    )
    with Session(node.engine) as session:
        row = session.get(EntryRow, entry_id)
        assert row is not None and row.status == "deleted"
        assert (row.embedding_ct, row.salt_ct, row.crop_ct, row.signed_entry, row.evidence_reference) == (
            None,
        ) * 5
        assert all(p.payload_ct is None for p in session.exec(select(EventPayloadRow)).all())
        leaves = session.exec(select(LogLeaf).order_by(LogLeaf.idx)).all()
        audit = session.exec(select(AuditRecord).order_by(AuditRecord.seq)).all()
    assert [leaf.kind for leaf in leaves] == ["registered", "deleted"]
    log = node.registry.log
    for leaf in leaves:
        event = SignedDocument.from_bytes(leaf.leaf, EntryEvent)
        event.verify([NODE_A_SIGNING.public])
        verify_inclusion(leaf_hash(leaf.leaf), leaf.idx, log.size, log.inclusion_proof(leaf.idx), log.root())
    verify_consistency(size_before, log.size, root_before, log.root(), log.consistency_proof(size_before))
    verify_audit_chain(audit)
    assert node.registry.index.search([embedding(1)], 0.5) == []
    with pytest.raises(WrongState):
        node.registry.signed_entry(entry_id)


def test_sqlite_file_holds_no_embedding_and_no_ciphertext_after_deletion(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    node = Node(url)
    entry_id = node.propose(seed=7)
    raw = embedding(7).raw
    db = (tmp_path / "node.db").read_bytes() + (tmp_path / "node.db-wal").read_bytes()
    assert raw not in db and raw[:64] not in db
    with Session(node.engine) as session:
        row = session.get(EntryRow, entry_id)
        assert row is not None and row.embedding_ct is not None
        ciphertext = row.embedding_ct
    node.registry.approve(node.officer, entry_id, T0)
    node.registry.delete(node.officer2, entry_id, EventReason.ERROR, T0 + timedelta(hours=2))
    node.engine.dispose()
    files = b"".join(p.read_bytes() for p in tmp_path.glob("node.db*"))
    assert ciphertext[40:104] not in files


def test_expiry_sweep_deletes_at_expires_at(node: Node) -> None:
    entry_id = node.propose(retention_days=30)
    node.registry.approve(node.officer, entry_id, T0)
    assert node.registry.expire_due(T0 + timedelta(days=29)) == []
    assert node.registry.expire_due(T0 + timedelta(days=30, seconds=1)) == [entry_id]
    assert node.registry.get(entry_id).status == "expired"
    with Session(node.engine) as session:
        kinds = [leaf.kind for leaf in session.exec(select(LogLeaf).order_by(LogLeaf.idx)).all()]
    assert kinds == ["registered", "expired"]


def test_restart_rebuilds_index_from_storage(database_url: str) -> None:
    node = Node(database_url)
    ids = [node.propose(seed=s) for s in (1, 2, 3)]
    for entry_id in ids[:2]:
        node.registry.approve(node.officer, entry_id, T0)
    node.registry.delete(node.officer2, ids[0], EventReason.ERROR, T0)
    restarted = Registry(
        engine=make_engine(database_url),
        node_id="chain-a",
        signing_key=NODE_A_SIGNING,
        vault=vault_for(database_url),
        manifest=make_manifest,
        rules=RULES,
        index=MatchIndex(512),
    )
    assert restarted.rebuild_index() == 1
    assert [m.key for m in restarted.index.search([embedding(2)], 0.9)] == [ids[1]]
    assert restarted.log.size == 3


def test_unknown_entry(node: Node) -> None:
    with pytest.raises(EntryNotFound):
        node.registry.approve(node.officer, "ent-doesnotexist", T0)


def test_signed_entry_carries_commitment_not_embedding(node: Node) -> None:
    entry_id = node.propose(seed=5)
    node.registry.approve(node.officer, entry_id, T0)
    doc = node.registry.signed_entry(entry_id)
    assert isinstance(doc.payload, WatchlistEntry)
    assert embedding(5).to_str().encode() not in doc.to_bytes()
    assert doc.payload.owner == "chain-a"


def test_group_committed_audit_records_extend_the_chain_exactly(node: Node) -> None:
    from node.records.auditlog import AuditWriter

    node.propose(7)
    writer = AuditWriter(node.engine, node.registry.write_lock)
    for i in range(5):
        writer.add(
            actor="acct-op", action="POST /v1/match", outcome="ok:200", now=T0, target=f"faces=1 hits={i}"
        )
    assert writer.flush() == 5 and writer.flush() == 0
    node.propose(8)
    with Session(node.engine) as session:
        audit = session.exec(select(AuditRecord).order_by(AuditRecord.seq)).all()
    verify_audit_chain(audit)
    assert [r.target for r in audit if r.action == "POST /v1/match"] == [
        f"faces=1 hits={i}" for i in range(5)
    ]
