"""Transparency reports: the signed format, counts at period boundaries, and a scripted scenario on real nodes.

The scenario runs two member nodes as real processes, does a known list of things through their
HTTP APIs, then counts each node's database with ``node/reporting/report.py`` and checks that every count
equals what the scenario did. The HTTP route and the CLI commands are exercised in-process on
the same node directory, and the organisation's ``gov report`` adds the two members up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, select

from governance.report import (
    ReportMismatch,
    ReportNotFromMember,
    ReportScope,
    ReportSignatureError,
    TransparencyReport,
    aggregate,
    parse_period,
    verify_member_report,
)
from governance.roles import Role, require_permission
from governance.rules import RegistrationRules
from node.casework.registers import close_complaint, record_complaint, record_feedback
from node.cli import gov as cli_gov
from node.cli import report as cli_report
from node.config import NodeConfig
from node.context import NodeContext
from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.files import write_atomic
from node.http.api import CLOCK, CONTEXT, error_response
from node.http.records import node_info
from node.http.report import CSP, add_report_routes
from node.records.accounts import StaffAccounts
from node.records.auditlog import append_audit, verify_audit_chain
from node.records.matching import MatchIndex
from node.records.registry import Proposal, Registry
from node.reporting.report import build_report, signed_report
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from node.storage.models import AuditRecord, SubjectRequest
from protocol.canonical import b64url_encode
from protocol.embedding import Embedding
from protocol.entry import Evidence
from protocol.errors import MalformedError, WatchnetError
from protocol.events import EventReason
from protocol.keys import SigningKey
from protocol.signed import SignedDocument
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0, embedding, make_manifest
from tests.nodedb import node_sql
from tests.vaults import vault_for


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def empty(
    issuer: str = "chain-a", period: str = "2026-Q4", generated: str = "2026-11-25T09:00:00"
) -> TransparencyReport:
    return TransparencyReport.empty(
        scope=ReportScope.NODE,
        issuer=issuer,
        group_id="jp-retail-watch",
        period=parse_period(period),
        generated_at=at(generated),
        manifest_version=1,
        members=[issuer],
    )


# -- periods and the signed format ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026", "2026-01-01", "2027-01-01"),
        ("2026-Q1", "2026-01-01", "2026-04-01"),
        ("2026-Q4", "2026-10-01", "2027-01-01"),
        ("2026-01", "2026-01-01", "2026-02-01"),
        ("2026-11", "2026-11-01", "2026-12-01"),
        ("2026-12", "2026-12-01", "2027-01-01"),
        ("2028-02", "2028-02-01", "2028-03-01"),
    ],
)
def test_periods_are_half_open_utc_ranges(text: str, start: str, end: str) -> None:
    period = parse_period(text)
    assert (period.start, period.end) == (at(start), at(end))
    assert period.contains(period.start) and not period.contains(period.end)
    assert period.contains(period.end - timedelta(seconds=1))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "26",
        "2026-",
        "2026-13",
        "2026-00",
        "2026-1",
        "2026-Q0",
        "2026-Q5",
        "2026-q4",
        "1999",
        "2026-11-01",
        " 2026",
    ],
)
def test_a_malformed_period_is_refused(text: str) -> None:
    with pytest.raises(MalformedError, match="period"):
        parse_period(text)


def test_a_report_round_trips_and_keeps_unknown_fields_so_its_signature_still_verifies() -> None:
    report = empty()
    report.entries.deleted = {"error": 2, "retention-expired": 3}
    report.subject_requests.closed = {"disclosure": {"disclosed": 1, "refused": 2}}
    data = report.to_dict()
    data["future_field"] = {"x": 1}
    data["queries"]["future_count"] = 7
    parsed = TransparencyReport.from_dict(data)
    assert parsed.to_dict() == data
    document = SignedDocument(parsed)
    document.sign(NODE_A_SIGNING)
    again = SignedDocument.from_bytes(document.to_bytes(), TransparencyReport)
    again.verify([NODE_A_SIGNING.public])
    assert again.payload.subject_requests.closed == {"disclosure": {"disclosed": 1, "refused": 2}}


tallies = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True), st.integers(0, 10**9), max_size=5
)


@settings(max_examples=60, deadline=None)
@given(
    deleted=tallies,
    sent=tallies,
    refused=tallies,
    approved=st.integers(0, 10**9),
    closed=st.dictionaries(st.sampled_from(["disclosure", "deletion"]), tallies, max_size=2),
)
def test_any_report_round_trips(
    deleted: dict[str, int],
    sent: dict[str, int],
    refused: dict[str, int],
    approved: int,
    closed: dict[str, dict[str, int]],
) -> None:
    report = empty()
    report.entries.deleted, report.entries.approved = deleted, approved
    report.queries.sent, report.refusals.requests = sent, refused
    report.subject_requests.closed = closed
    assert (
        TransparencyReport.from_dict(json.loads(json.dumps(report.to_dict()))).to_dict() == report.to_dict()
    )


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = empty().to_dict()
    *parents, last = path.split(".")
    target = data
    for name in parents:
        target = target[name]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("entries.approved", -1),
        ("entries.approved", True),
        ("entries.approved", 1.5),
        ("entries.approved", KeyError),
        ("entries.deleted", {"Bad Key": 1}),
        ("entries.deleted", {"error": -2}),
        ("entries.deleted", [1]),
        ("subject_requests.closed", {"disclosure": 3}),
        ("period.start", "2026-10-02T00:00:00Z"),
        ("period.label", "2026-Q5"),
        ("members", ["chain-b"]),
        ("members", []),
        ("scope", "planet"),
        ("issuer", "Chain A"),
        ("complaints", KeyError),
        ("manifest_version", 0),
    ],
)
def test_a_malformed_report_is_refused(path: str, value: Any) -> None:
    with pytest.raises(MalformedError):
        TransparencyReport.from_dict(_mutate(path, value))


def _signed(report: TransparencyReport, key: SigningKey) -> SignedDocument[TransparencyReport]:
    document = SignedDocument(report)
    document.sign(key)
    return document


def test_a_member_report_verifies_only_with_that_members_key_in_the_manifest() -> None:
    manifest = make_manifest()
    report = empty()
    assert verify_member_report(_signed(report, NODE_A_SIGNING), manifest, period="2026-Q4") is report
    with pytest.raises(ReportSignatureError, match="not signed by its key") as refused:
        verify_member_report(_signed(report, NODE_B_SIGNING), manifest)
    assert refused.value.code == "report_signature"
    tampered = _signed(report, NODE_A_SIGNING)
    tampered.payload = replace(report, entries=replace(report.entries, approved=1))
    with pytest.raises(ReportSignatureError):
        verify_member_report(tampered, manifest)
    with pytest.raises(ReportNotFromMember, match="not a member") as outsider:
        verify_member_report(_signed(empty("chain-z"), SigningKey.generate()), manifest)
    assert outsider.value.code == "not_a_member"
    with pytest.raises(ReportMismatch, match="expected 2026-Q3"):
        verify_member_report(_signed(report, NODE_A_SIGNING), manifest, period="2026-Q3")
    other_group = replace(report, group_id="other-group")
    with pytest.raises(ReportMismatch, match="other-group"):
        verify_member_report(_signed(other_group, NODE_A_SIGNING), manifest)
    group = aggregate([report], manifest_version=1)
    with pytest.raises(ReportMismatch, match="group report"):
        verify_member_report(_signed(group, NODE_A_SIGNING), manifest)


def test_the_group_report_is_the_sum_of_its_members() -> None:
    a, b = empty("chain-a"), empty("chain-b", generated="2026-11-24T08:00:00")
    a.entries.approved, b.entries.approved = 3, 4
    a.entries.deleted, b.entries.deleted = {"error": 1}, {"error": 2, "retention-expired": 5}
    a.subject_requests.closed = {"disclosure": {"disclosed": 1}}
    b.subject_requests.closed = {"disclosure": {"refused": 1}, "deletion": {"granted": 2}}
    a.entries.unrecognized_fields = {"future": 1}
    group = aggregate([a, b], manifest_version=2)
    assert (group.scope, group.issuer, group.members) == (
        ReportScope.GROUP,
        "jp-retail-watch",
        ("chain-a", "chain-b"),
    )
    assert group.entries.approved == 7
    assert group.entries.deleted == {"error": 3, "retention-expired": 5}
    assert group.subject_requests.closed == {
        "deletion": {"granted": 2},
        "disclosure": {"disclosed": 1, "refused": 1},
    }
    assert group.generated_at == b.generated_at and not group.complete
    assert group.manifest_version == 2 and group.entries.unrecognized_fields == {}
    assert TransparencyReport.from_dict(group.to_dict()).to_dict() == group.to_dict()
    with pytest.raises(ReportMismatch, match="both by 'chain-a'"):
        aggregate([a, a], manifest_version=2)
    with pytest.raises(ReportMismatch, match="2026-Q3"):
        aggregate([a, empty("chain-b", period="2026-Q3")], manifest_version=2)
    with pytest.raises(ReportMismatch, match="group report"):
        aggregate([group], manifest_version=2)


# -- counting at the period boundaries, on a real database --------------------------------------

RULES = RegistrationRules(
    categories=("shoplifting", "theft"), evidence_kinds=("police-report",), retention_days=180
)
PASSWORD = "correct horse battery"


class Node:
    """One node's registry and registers on a real database, driven with explicit times."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        upgrade(self.engine)
        accounts = StaffAccounts(self.engine)
        self.registrar = accounts.add("reg1", Role.REGISTRAR, PASSWORD, T0)
        self.officer = accounts.add("off1", Role.OFFICER, PASSWORD, T0)
        manifest = make_manifest()
        self.registry = Registry(
            engine=self.engine,
            node_id="chain-a",
            signing_key=NODE_A_SIGNING,
            vault=vault_for(url),
            manifest=lambda: manifest,
            rules=RULES,
            index=MatchIndex(512),
        )

    def propose(self, seed: int, now: datetime) -> str:
        proposal = Proposal(
            embedding=embedding(seed),
            category="shoplifting",
            evidence=Evidence("police-report", f"TKY-{seed}"),
            incident_date=date(2026, 9, 1),
            site="shibuya-01",
        )
        return self.registry.propose(self.registrar, proposal, now).entry_id

    def audit(self, now: datetime, action: str, outcome: str, target: str = "") -> None:
        with self.registry.write_lock, Session(self.engine) as session:
            append_audit(session, actor="x", action=action, outcome=outcome, target=target, now=now)
            session.commit()

    def request(self, kind: str, received: str, deadline: str, **closing: Any) -> None:
        extra: dict[str, Any] = {
            k: at(v) if k == "closed_at" else v for k, v in closing.items() if k != "identity_check"
        }
        with Session(self.engine) as session:
            session.add(
                SubjectRequest(
                    id=f"req-{secrets.token_hex(6)}",
                    kind=kind,
                    identity_check=closing.get("identity_check", "passport"),
                    received_at=at(received),
                    deadline=at(deadline),
                    recorded_by="acct-x",
                    status="closed" if extra else "open",
                    **extra,
                )
            )
            session.commit()


@pytest.fixture
def node(database_url: str) -> Iterator[Node]:
    n = Node(database_url)
    yield n
    n.engine.dispose()


def test_each_event_counts_in_the_period_in_which_it_happened(node: Node) -> None:
    q3_last, q4_first = at("2026-09-30T23:59:59"), at("2026-10-01T00:00:00")
    e1 = node.propose(1, at("2026-09-30T23:00:00"))
    node.registry.approve(node.officer, e1, q3_last)
    e2 = node.propose(2, q3_last)
    node.registry.approve(node.officer, e2, q4_first)
    e3 = node.propose(3, at("2026-10-02T10:00:00"))
    node.registry.reject(node.officer, e3, "insufficient-evidence", at("2026-10-02T11:00:00"))
    node.registry.correct(
        node.officer, e1, reason=EventReason.CORRECTION, now=at("2026-10-03T09:00:00"), category="theft"
    )
    node.registry.record_provision(
        node.officer,
        legal_basis="warrant",
        requester_kind="court",
        requester="Tokyo District Court",
        reference="TDC-2026-1",
        entry_ids=[e1],
        items=["incident-category"],
        now=at("2026-10-03T10:00:00"),
    )
    node.registry.record_refused_provision(
        node.officer, legal_basis="none", requester_kind="police", now=at("2026-10-03T11:00:00")
    )
    node.registry.delete(node.officer, e2, EventReason.ERROR, at("2026-10-04T09:00:00"))
    assert node.registry.expire_due(at("2027-03-30T00:00:00")) == [e1]

    node.audit(q3_last, "POST /v1/query", "ok:200", "purpose=crime-prevention faces=3 hits=1")
    node.audit(q4_first, "POST /v1/query", "ok:200", "purpose=crime-prevention faces=2 hits=0")
    node.audit(q4_first, "POST /v1/query", "ok:200", "")  # a frame without a face: nothing sent
    node.audit(q4_first, "POST /v1/requests/{request_id}/search", "ok:200")
    node.audit(q4_first, "POST /v1/peer/query", "ok:200", "purpose=data-subject-request faces=1 hits=1")
    node.audit(q4_first, "POST /v1/peer/query", "refused:purpose_not_allowed")
    node.audit(q4_first, "entry.approve", "refused:wrong_state", e1)  # the registry's echo of the next one
    node.audit(q4_first, "POST /v1/entries/{entry_id}/approve", "refused:wrong_state", e1)
    node.audit(q4_first, "peer.log.refused", "refused:bad_signature", "chain-b")
    node.audit(q4_first, "POST /v1/match", "ok:200", "faces=4 hits=2")
    node.audit(q4_first, "POST /v1/match", "failed:internal")
    node.audit(q4_first, "alert.review", "false-match", "alr-1")
    node.audit(at("2027-01-01T00:00:00"), "alert.review", "confirmed", "alr-2")
    lock = node.registry.write_lock
    for origin in ("chain-b", "chain-a"):  # our own staff's verdict is counted as a review, not as feedback
        record_feedback(
            node.engine,
            lock,
            origin=origin,
            alert_id="alr-1",
            entry_id=e1,
            entry_version=2,
            outcome="false-match",
            now=at("2026-10-05T00:00:00"),
        )
    node.request(
        "disclosure",
        "2026-09-15T00:00:00",
        "2026-09-29T00:00:00",
        closed_at="2026-10-02T00:00:00",
        outcome="disclosed",
    )
    node.request(
        "deletion",
        "2026-10-06T00:00:00",
        "2026-10-20T00:00:00",
        identity_check="forwarded-by-chain-b",
        closed_at="2026-10-07T00:00:00",
        outcome="granted",
    )
    node.request(
        "correction",
        "2026-12-31T23:59:59",
        "2027-01-14T00:00:00",
        closed_at="2027-01-05T00:00:00",
        outcome="refused",
        ground="cabinet-order-5-iv",
    )
    c1 = record_complaint(
        node.engine,
        lock,
        channel="public",
        category="misidentification",
        summary="stopped by mistake",
        contact=None,
        recorded_by="public",
        now=at("2026-09-20T00:00:00"),
    )
    close_complaint(
        node.engine,
        lock,
        complaint_id=c1["id"],
        outcome="resolved",
        note="apologised",
        staff="acct-x",
        now=at("2026-10-01T00:00:00"),
    )
    record_complaint(
        node.engine,
        lock,
        channel="phone",
        category="notice",
        summary="sign hidden",
        contact=None,
        recorded_by="acct-x",
        now=at("2026-11-01T00:00:00"),
    )

    with Session(node.engine) as session:
        audit_size = len(session.exec(select(AuditRecord)).all())
    now = at("2027-04-01T00:00:00")
    reports = {
        label: build_report(
            node.engine,
            node_id="chain-a",
            group_id="jp-retail-watch",
            manifest_version=1,
            period=parse_period(label),
            now=now,
        )
        for label in ("2026-Q3", "2026-Q4", "2027-Q1", "2026", "2025")
    }
    q3, q4, q1, year = reports["2026-Q3"], reports["2026-Q4"], reports["2027-Q1"], reports["2026"]
    assert (q3.entries.proposed, q3.entries.approved, q3.entries.active_at_end) == (2, 1, 1)
    assert (q4.entries.proposed, q4.entries.approved, q4.entries.active_at_end) == (1, 1, 1)
    assert q4.entries.rejected == {"insufficient-evidence": 1}
    assert q4.entries.corrected == {"correction": 1, "data-subject-request": 0, "error": 0}
    assert q4.entries.deleted == {
        "data-subject-request": 0,
        "error": 1,
        "no-longer-necessary": 0,
        "retention-expired": 0,
    }
    assert q1.entries.deleted["retention-expired"] == 1 and q1.entries.active_at_end == 0
    assert (
        q3.queries.sent == {"crime-prevention": 1}
        and q3.queries.faces_sent == 3
        and q3.matches.network_hits == 1
    )
    assert (
        q4.queries.sent == {"crime-prevention": 1, "data-subject-request": 1} and q4.queries.faces_sent == 3
    )
    assert q4.queries.answered == {"crime-prevention": 0, "data-subject-request": 1}
    assert (q4.queries.faces_answered, q4.matches.answered_hits) == (1, 1)
    assert q4.queries.refused == {"purpose_not_allowed": 1}
    assert q4.refusals.requests == {"purpose_not_allowed": 1, "wrong_state": 1}
    assert q4.refusals.peer_data == {"bad_signature": 1}
    assert (q4.matches.local_searches, q4.matches.local_hits) == (1, 2)
    assert q4.matches.reviews == {"confirmed": 0, "false-match": 1}
    assert q1.matches.reviews == {"confirmed": 1, "false-match": 0}
    assert q4.matches.feedback_received == {"confirmed": 0, "false-match": 1}
    assert q4.provisions.received == {"court": 1, "police": 1}
    assert (q4.provisions.provided, q4.provisions.refused, q4.provisions.entries_provided) == (
        {"warrant": 1},
        {"none": 1},
        1,
    )
    rq3, rq4, rq1 = q3.subject_requests, q4.subject_requests, q1.subject_requests
    assert rq3.received["disclosure"] == 1 and (rq3.open_at_end, rq3.overdue_at_end) == (1, 1)
    assert rq4.closed["disclosure"] == {"disclosed": 1} and rq4.closed_late == 1
    assert rq4.received == {"cease-of-use": 0, "correction": 1, "deletion": 0, "disclosure": 0}
    assert rq4.forwarded_in["deletion"] == 1 and rq4.forwarded_closed["granted"] == 1
    assert (rq4.open_at_end, rq4.overdue_at_end) == (1, 0)
    assert rq1.closed["correction"] == {"refused": 1} and rq1.refusal_grounds["cabinet-order-5-iv"] == 1
    assert q3.complaints.received["misidentification"] == 1 and q3.complaints.open_at_end == 1
    assert q4.complaints.closed["resolved"] == 1 and q4.complaints.received["notice"] == 1
    assert q4.complaints.channels == {"phone": 1} and q4.complaints.open_at_end == 1
    # the year is the sum of its quarters; another year saw nothing
    assert year.entries.approved == q3.entries.approved + q4.entries.approved
    assert year.queries.sent == {"crime-prevention": 2, "data-subject-request": 1}
    assert year.refusals.requests == q4.refusals.requests
    assert (
        all(v == 0 for v in reports["2025"].entries.deleted.values())
        and reports["2025"].entries.proposed == 0
    )
    assert all(r.complete for r in reports.values())
    with Session(node.engine) as session:  # counting wrote nothing, and the audit chain still verifies
        records = session.exec(select(AuditRecord).order_by(col(AuditRecord.seq))).all()
        assert len(records) == audit_size
        verify_audit_chain(records)
    document = signed_report(
        node.engine,
        NODE_A_SIGNING,
        node_id="chain-a",
        group_id="jp-retail-watch",
        manifest_version=1,
        period=parse_period("2026-Q4"),
        now=now,
    )
    assert verify_member_report(document, make_manifest(), period="2026-Q4").to_dict() == q4.to_dict()


def test_a_report_for_a_period_not_yet_ended_counts_so_far_and_says_so(node: Node) -> None:
    e1 = node.propose(1, at("2026-11-02T00:00:00"))
    node.registry.approve(node.officer, e1, at("2026-11-03T00:00:00.300000"))  # in the second of the report
    node.request("deletion", "2026-11-01T00:00:00", "2026-11-02T00:00:00")  # overdue by now
    node.request("disclosure", "2026-11-01T00:00:00", "2026-11-30T00:00:00")  # open, not overdue yet
    report = build_report(
        node.engine,
        node_id="chain-a",
        group_id="jp-retail-watch",
        manifest_version=1,
        period=parse_period("2026-Q4"),
        now=at("2026-11-03T00:00:00.500000"),
    )
    assert not report.complete and report.generated_at == at("2026-11-03T00:00:00")
    assert (report.entries.approved, report.entries.active_at_end) == (1, 1)
    assert (report.subject_requests.open_at_end, report.subject_requests.overdue_at_end) == (2, 1)


def test_a_report_says_how_many_receipts_each_member_still_owes_and_an_older_report_says_nothing(
    node: Node,
) -> None:
    from node.storage.models import OwedReceipt

    def report() -> TransparencyReport:
        return build_report(
            node.engine,
            node_id="chain-a",
            group_id="jp-retail-watch",
            manifest_version=1,
            period=parse_period("2026-Q4"),
            now=at("2026-11-03T00:00:00"),
        )

    assert report().entries.owed_receipts == {}
    with Session(node.engine) as session:
        for event, member in (("ev-1", "chain-b"), ("ev-2", "chain-b"), ("ev-2", "chain-c")):
            session.add(OwedReceipt(event_id=event, member=member, idx=1))
        session.commit()
    owed = report()
    assert owed.entries.owed_receipts == {"chain-b": 2, "chain-c": 1}
    data = owed.to_dict()
    assert TransparencyReport.from_dict(data).to_dict() == data
    older = dict(data, entries={k: v for k, v in data["entries"].items() if k != "owed_receipts"})
    parsed = TransparencyReport.from_dict(older)
    assert parsed.entries.owed_receipts is None and parsed.to_dict() == older  # same bytes, same signature
    b = empty("chain-b")
    assert aggregate([owed, b], manifest_version=1).entries.owed_receipts == {"chain-b": 2, "chain-c": 1}
    b.entries.owed_receipts = {"chain-c": 4}
    group = aggregate([owed, b], manifest_version=1)
    assert group.entries.owed_receipts == {"chain-b": 2, "chain-c": 5}  # what each member owes the others
    assert aggregate([parsed, empty("chain-b")], manifest_version=1).entries.owed_receipts is None


# -- the scripted scenario on real node processes ---------------------------------------------

MEMBERS = ["chain-a", "chain-b"]


def unit(seed: int) -> Embedding:
    v = np.random.default_rng(seed).normal(size=512).astype("<f4")
    return Embedding((v / np.linalg.norm(v)).astype("<f4").tobytes())


def _photo(name: str) -> str:
    from node.demo.story import photo_path

    return b64url_encode(photo_path(name).read_bytes())


def ok(result: tuple[int, Any], status: int = 200) -> Any:
    assert result[0] == status, result
    return result[1]


def propose(node: LocalNode, seed: int) -> str:
    body = {
        "embedding": unit(seed).to_str(),
        "category": "shoplifting",
        "evidence": {"kind": "police-report", "reference": f"TKY-{seed}"},
        "incident_date": "2026-11-01",
        "site": "store-01",
    }
    return str(ok(node.call("POST", "/v1/entries", "reg1", body), 201)["entry_id"])


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run the scenario once on real processes, stop them, and yield the network's directories."""
    network = LocalNetwork(tmp_path_factory.mktemp("reportnet"), MEMBERS, sync_interval="1s")
    network.create()
    a_dir = network.node("chain-a").directory
    config = NodeConfig.load(a_dir)
    write_atomic(
        a_dir / "config.toml", replace(config, retention_sweep=timedelta(seconds=1)).to_toml().encode()
    )
    started = datetime.now(UTC)
    try:
        network.start()
        a, b = network.node("chain-a"), network.node("chain-b")
        e1, e2, e3, e4, e5 = (propose(a, seed) for seed in range(1, 6))
        for entry in (e1, e2, e3, e5):
            ok(a.call("POST", f"/v1/entries/{entry}/approve", "off1"))
        ok(a.call("POST", f"/v1/entries/{e4}/reject", "off1", {"reason": "insufficient-evidence"}))
        assert a.call("POST", f"/v1/entries/{e1}/approve", "off2")[1]["error"] == "wrong_state"
        assert a.call("POST", f"/v1/entries/{e2}/approve", "reg1")[1]["error"] == "forbidden"
        assert a.call("GET", "/v1/entries")[1]["error"] == "unauthenticated"  # a read: not a refusal
        assert a.call("POST", "/v1/entries", body={})[1]["error"] == "unauthenticated"
        ok(a.call("POST", f"/v1/entries/{e1}/correct", "off2", {"reason": "correction", "category": "theft"}))
        soon = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
        ok(
            a.call(
                "POST",
                f"/v1/entries/{e5}/correct",
                "off2",
                {"reason": "error", "expires_at": soon.strftime("%Y-%m-%dT%H:%M:%SZ")},
            )
        )
        ok(a.call("POST", f"/v1/entries/{e2}/delete", "off2", {"reason": "error"}))
        ok(a.call("POST", f"/v1/entries/{e3}/delete", "off2", {"reason": "data-subject-request"}))

        hit = ok(
            b.call(
                "POST",
                "/v1/query",
                "op1",
                {"embeddings": [unit(1).to_str(), unit(99).to_str()], "site": "gate-1"},
            )
        )
        assert [m["entry_id"] for m in hit["matches"]] == [e1]
        assert ok(b.call("POST", "/v1/query", "op1", {"embeddings": [unit(98).to_str()]}))["matches"] == []
        refused = ok(
            b.call("POST", "/v1/query", "op1", {"embeddings": [unit(97).to_str()], "purpose": "marketing"})
        )
        assert refused["peers"][0]["error"] == "purpose_not_allowed"
        review = ok(
            b.call(
                "POST",
                f"/v1/alerts/{hit['matches'][0]['alert_id']}/review",
                "op1",
                {"outcome": "false-match"},
            )
        )
        assert review["feedback"] == "sent"

        ok(
            a.call(
                "POST",
                "/v1/complaints",
                body={"category": "misidentification", "summary": "Stopped by mistake."},
            ),
            201,
        )
        taken = ok(
            a.call(
                "POST",
                "/v1/complaints",
                "off1",
                {"channel": "phone", "category": "notice", "summary": "Sign hidden."},
            ),
            201,
        )
        ok(
            a.call(
                "POST",
                f"/v1/complaints/{taken['id']}/close",
                "off1",
                {"outcome": "resolved", "note": "Sign moved."},
            )
        )

        first = ok(
            a.call(
                "POST",
                "/v1/requests",
                "off1",
                {"kind": "disclosure", "identity_check": "passport", "image": _photo("t1.jpg")},
            ),
            201,
        )
        assert ok(a.call("POST", f"/v1/requests/{first['id']}/search", "off1"))["report"] == []
        ok(a.call("POST", f"/v1/requests/{first['id']}/close", "off1", {"outcome": "nothing-held"}))
        second = ok(
            a.call(
                "POST",
                "/v1/requests",
                "off1",
                {"kind": "disclosure", "identity_check": "my-number-card", "image": _photo("t1.jpg")},
            ),
            201,
        )
        ok(
            a.call(
                "POST",
                f"/v1/requests/{second['id']}/close",
                "off1",
                {"outcome": "refused", "ground": "cabinet-order-5-iv"},
            )
        )

        ok(
            a.call(
                "POST",
                "/v1/provisions",
                "off1",
                {
                    "legal_basis": "ccp-197-2-inquiry",
                    "requester_kind": "police",
                    "requester": "Shibuya police station",
                    "reference": "SHB-2026-77",
                    "entry_ids": [e1],
                    "items": ["incident-category"],
                },
            ),
            201,
        )
        ok(
            a.call(
                "POST",
                "/v1/provisions",
                "off1",
                {"decision": "refuse", "legal_basis": "none", "requester_kind": "police"},
            ),
            201,
        )

        assert wait_for(lambda: ok(a.call("GET", "/v1/entries?status=expired", "off1"))["entries"], 15)
    finally:
        network.stop()
    try:
        yield {"network": network, "started": started, "period": str(started.year)}
    finally:
        network.destroy()


def node_report(node: LocalNode, period: str, now: datetime | None = None) -> TransparencyReport:
    engine = make_engine(NodeConfig.load(node.directory).effective_database_url)
    try:
        return build_report(
            engine,
            node_id=node.node_id,
            group_id="jp-retail-watch",
            manifest_version=1,
            period=parse_period(period),
            now=now or datetime.now(UTC),
        )
    finally:
        engine.dispose()


def test_report_counts_equal_the_events_of_the_scenario(scenario: dict[str, Any]) -> None:
    network, period = scenario["network"], scenario["period"]
    a = node_report(network.node("chain-a"), period)
    b = node_report(network.node("chain-b"), period)

    assert (a.entries.proposed, a.entries.approved, a.entries.active_at_end) == (5, 4, 1)
    assert a.entries.rejected == {"insufficient-evidence": 1}
    assert a.entries.corrected == {"correction": 1, "data-subject-request": 0, "error": 1}
    assert a.entries.deleted == {
        "data-subject-request": 1,
        "error": 1,
        "no-longer-necessary": 0,
        "retention-expired": 1,
    }
    assert a.queries.sent == {"crime-prevention": 0, "data-subject-request": 1} and a.queries.faces_sent == 1
    assert a.queries.answered == {"crime-prevention": 2} and a.queries.faces_answered == 3
    assert a.queries.refused == {"purpose_not_allowed": 1}
    assert a.refusals.requests == {
        "forbidden": 1,
        "purpose_not_allowed": 1,
        "unauthenticated": 1,
        "wrong_state": 1,
    }
    assert a.refusals.peer_data == {}
    assert (a.matches.answered_hits, a.matches.network_hits, a.matches.local_searches) == (1, 0, 0)
    assert a.matches.reviews == {"confirmed": 0, "false-match": 0}
    assert a.matches.feedback_received == {"confirmed": 0, "false-match": 1}
    assert a.provisions.received == {"police": 2}
    assert (a.provisions.provided, a.provisions.refused, a.provisions.entries_provided) == (
        {"ccp-197-2-inquiry": 1},
        {"none": 1},
        1,
    )
    requests = a.subject_requests
    assert requests.received == {"cease-of-use": 0, "correction": 0, "deletion": 0, "disclosure": 2}
    assert requests.closed["disclosure"] == {"nothing-held": 1, "refused": 1}
    assert sum(sum(v.values()) for v in requests.closed.values()) == 2
    assert requests.refusal_grounds["cabinet-order-5-iv"] == 1 and sum(requests.refusal_grounds.values()) == 1
    assert (requests.closed_late, requests.open_at_end, sum(requests.forwarded_in.values())) == (0, 0, 0)
    complaints = a.complaints
    assert {k: v for k, v in complaints.received.items() if v} == {"misidentification": 1, "notice": 1}
    assert complaints.channels == {"phone": 1, "public": 1}
    assert complaints.closed == {"referred": 0, "rejected": 0, "resolved": 1} and complaints.open_at_end == 1

    assert (b.entries.proposed, b.entries.approved, sum(b.entries.deleted.values())) == (0, 0, 0)
    assert b.queries.sent == {"crime-prevention": 2, "marketing": 1} and b.queries.faces_sent == 4
    assert (
        b.queries.answered == {"crime-prevention": 0, "data-subject-request": 1}
        and b.queries.faces_answered == 1
    )
    assert (b.matches.network_hits, b.matches.answered_hits) == (1, 0)
    assert b.matches.reviews == {"confirmed": 0, "false-match": 1}
    assert b.refusals.requests == {} and b.refusals.peer_data == {}
    assert sum(b.complaints.received.values()) == 0 and sum(b.subject_requests.received.values()) == 0

    before = node_report(network.node("chain-a"), str(scenario["started"].year - 1))
    assert before.entries.proposed == 0 and sum(before.queries.answered.values()) == 0


# -- the HTTP route and the CLI commands, in-process on the scenario's node directories ----------


def _require(request: web.Request, action: Any) -> Any:
    header = request.headers.get("Authorization", "")
    staff = request.app[CONTEXT].accounts.authenticate_token(
        header.removeprefix("Bearer ").strip(), datetime.now(UTC)
    )
    require_permission(staff.role, action)
    return staff


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except WatchnetError as e:
        return error_response(e)


def report_app(directory: Path) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app[CONTEXT] = NodeContext.load(directory)
    app[CLOCK] = lambda: datetime.now(UTC)
    app.router.add_get("/v1/node", node_info)
    add_report_routes(app, CONTEXT, CLOCK, _require)
    return app


def run_cli(*argv: str) -> tuple[int, str]:
    """``watchnet`` with the gov and report command groups, as ``node.cli.main.main`` runs them."""
    parser = argparse.ArgumentParser(prog="watchnet")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_gov.register(sub)
    cli_report.register(sub)
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = args.handler(args)
        except WatchnetError as e:
            print(f"watchnet: {e.code}: {e}")
            code = 1
    return code, out.getvalue()


def _no_external_content(page: str) -> None:
    assert "<script" not in page.lower() and "javascript:" not in page.lower()
    assert not re.search(r'(?:src|href)\s*=\s*"(?!#)', page), "the page loads something"
    assert "@import" not in page and "url(http" not in page


def test_the_route_and_the_commands_give_the_signed_report(scenario: dict[str, Any], tmp_path: Path) -> None:
    network, period = scenario["network"], scenario["period"]
    a, b = network.node("chain-a"), network.node("chain-b")
    manifest = network.current_manifest()

    async def run() -> None:
        async with TestClient(TestServer(report_app(a.directory))) as client:

            def get(query: str, user: str = "aud1") -> Awaitable[Any]:
                return client.get(f"/v1/report{query}", headers={"Authorization": f"Bearer {a.tokens[user]}"})

            for query, status, error in (
                ("", 400, "malformed"),
                ("?period=2026-Q9", 400, "malformed"),
                (f"?period={period}&format=xml", 400, "malformed"),
            ):
                response = await get(query)
                assert (response.status, (await response.json())["error"]) == (status, error)
            assert (await get(f"?period={period}", "reg1")).status == 403
            assert (await get(f"?period={period}", "op1")).status == 403
            for user in ("aud1", "off1", "adm1"):
                assert (await get(f"?period={period}", user)).status == 200
            response = await get(f"?period={period}")
            document = SignedDocument.from_bytes(await response.read(), TransparencyReport)
            member = manifest.member("chain-a")
            assert member is not None
            document.verify([member.signing_key])
            expected = node_report(a, period).to_dict()
            assert {**document.payload.to_dict(), "generated_at": None} == {**expected, "generated_at": None}
            page = await get(f"?period={period}&format=html")
            assert page.status == 200 and page.content_type == "text/html"
            assert page.headers["Content-Security-Policy"] == CSP
            html_text = await page.text()
            assert html_text.count("<svg") >= 5 and "A-Mart Co., Ltd." in html_text
            _no_external_content(html_text)

            url = str(client.make_url("")).rstrip("/")
            common = ("--period", period, "--url", url, "--token", a.tokens["aud1"])
            code, text = await asyncio.to_thread(run_cli, "report", *common)
            assert code == 0 and f"transparency report {period}" in text and "entries registered" in text
            assert "       4  entries registered" in text
            code, _ = await asyncio.to_thread(
                run_cli, "report", *common, "--json", "--out", str(tmp_path / "a.json")
            )
            assert code == 0
            code, _ = await asyncio.to_thread(
                run_cli, "report", *common, "--html", "--out", str(tmp_path / "a.html")
            )
            assert code == 0 and "<svg" in (tmp_path / "a.html").read_text()
            code, _ = await asyncio.to_thread(
                run_cli, "report", *common, "--html", "--lang", "ja", "--out", str(tmp_path / "a-ja.html")
            )
            japanese = (tmp_path / "a-ja.html").read_text()
            assert code == 0 and '<html lang="ja">' in japanese and "利用目的の達成状況" in japanese
            code, text = await asyncio.to_thread(
                run_cli, "report", "--period", period, "--url", url, "--token", a.tokens["op1"]
            )
            assert code == 1 and "forbidden" in text

    asyncio.run(run())
    context_b = NodeContext.load(b.directory)
    try:
        b_doc = signed_report(
            context_b.engine,
            context_b.signing_key,
            node_id="chain-b",
            group_id=manifest.group_id,
            manifest_version=manifest.version,
            period=parse_period(period),
            now=datetime.now(UTC),
        )
    finally:
        context_b.engine.dispose()
    (tmp_path / "b.json").write_bytes(b_doc.to_bytes())

    gov = ("gov", "report", "--period", period, "--manifest", str(network.manifest_path))
    code, out = run_cli(
        *gov,
        "--in",
        str(tmp_path / "a.json"),
        str(tmp_path / "b.json"),
        "--json",
        "--key",
        str(network.root / "org" / "org1.key"),
    )
    assert code == 0, out
    group_doc = SignedDocument.from_bytes(out.encode(), TransparencyReport)
    group_doc.verify(manifest.role_keys())
    group = group_doc.payload
    assert (group.scope, group.members) == (ReportScope.GROUP, ("chain-a", "chain-b"))
    assert group.queries.sent == {"crime-prevention": 2, "data-subject-request": 1, "marketing": 1}
    assert group.queries.answered == {"crime-prevention": 2, "data-subject-request": 1}
    assert group.entries.approved == 4 and group.matches.reviews["false-match"] == 1
    code, _ = run_cli(
        *gov,
        "--in",
        str(tmp_path / "a.json"),
        str(tmp_path / "b.json"),
        "--html",
        "--out",
        str(tmp_path / "g.html"),
    )
    group_page = (tmp_path / "g.html").read_text()
    assert code == 0 and "By member" in group_page and "B-Store Inc." in group_page
    _no_external_content(group_page)

    tampered = json.loads((tmp_path / "a.json").read_text())
    tampered["signed"]["entries"]["approved"] = 3
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    code, out = run_cli(*gov, "--in", str(tmp_path / "tampered.json"), str(tmp_path / "b.json"))
    assert code == 1 and "report_signature" in out and "tampered.json" in out
    outsider = SignedDocument(replace(node_report(b, period), issuer="outsider", members=("outsider",)))
    outsider.sign(SigningKey.generate())
    (tmp_path / "outsider.json").write_bytes(outsider.to_bytes())
    code, out = run_cli(*gov, "--in", str(tmp_path / "a.json"), str(tmp_path / "outsider.json"))
    assert code == 1 and "not_a_member" in out
    code, out = run_cli(*gov, "--in", str(tmp_path / "a.json"), str(tmp_path / "a.json"))
    assert code == 1 and "report_mismatch" in out
    code, out = run_cli(
        "gov",
        "report",
        "--period",
        "2025",
        "--manifest",
        str(network.manifest_path),
        "--in",
        str(tmp_path / "a.json"),
    )
    assert code == 1 and "report_mismatch" in out


def test_reading_the_database_while_counting_leaves_it_unchanged(scenario: dict[str, Any]) -> None:
    node = scenario["network"].node("chain-a")
    with node_sql(node.directory) as db:
        before = db.rows("select count(*), max(seq) from audit")
    node_report(node, scenario["period"])
    with node_sql(node.directory) as db:
        assert db.rows("select count(*), max(seq) from audit") == before


def test_every_code_the_report_tallies_has_its_japanese_name() -> None:
    from governance.requests import COMPLAINT_CATEGORIES, COMPLAINT_CHANNELS, COMPLAINT_OUTCOMES, RequestKind
    from node.console.pages_officer import REJECT_REASONS
    from node.reporting.report_html import _Page
    from protocol.events import EventReason

    codes = {r.value for r in EventReason} | set(REJECT_REASONS) | {k.value for k in RequestKind}
    codes |= COMPLAINT_CATEGORIES | COMPLAINT_CHANNELS | COMPLAINT_OUTCOMES
    ja = _Page("ja")
    assert not sorted(c for c in codes if ja.tr(c) == c), "add them to node/code_labels.py LABELS"
    assert ja.tr("deleted: error") == "削除: 誤登録"
