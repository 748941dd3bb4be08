"""The order of the peer gate's checks, and what a refusal does not consume (nonces, rate)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from governance.description import next_version
from governance.errors import MemberNotActive, ModelMismatch, NotAMember, PurposeNotAllowed
from governance.manifest import Manifest, MemberStatus
from node.federation.gate import PeerGate, PeerRateLimited
from node.records.manifests import ManifestStore
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from protocol.errors import ExpiredError, ReplayError
from protocol.message import PeerMessage, seal
from protocol.query import QueryRequest
from protocol.replay import ReplayGuard
from protocol.signed import Payload, SignedDocument
from protocol.sync import SYNC_PURPOSE, LogRequest
from tests.factories import (
    KEYS,
    NODE_A_ENCRYPTION,
    NODE_A_SIGNING,
    NODE_B_ENCRYPTION,
    NODE_B_SIGNING,
    T0,
    embedding,
    make_manifest,
    signed_manifest,
)

BODIES: dict[str, type[Payload]] = {QueryRequest.TYPE: QueryRequest, LogRequest.TYPE: LogRequest}
MODEL = "buffalo_s/w600k_mbf"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def gate_for(tmp_path: Path, manifest: Manifest, per_minute: int = 600) -> tuple[PeerGate, Clock]:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    document = signed_manifest(manifest, KEYS[0], KEYS[1])
    path = tmp_path / "manifest.json"
    path.write_bytes(document.to_bytes())
    clock = Clock()
    gate = PeerGate(
        node_id="chain-a",
        signing_key=NODE_A_SIGNING,
        encryption_key=NODE_A_ENCRYPTION,
        manifests=ManifestStore(path, engine, document, accepted_at=T0),
        replay=ReplayGuard(timedelta(seconds=60)),
        per_minute=per_minute,
        monotonic=clock,
    )
    return gate, clock


def message(
    body: Payload, *, purpose: str = "crime-prevention", at: datetime = T0, version: int = 1
) -> bytes:
    inner = PeerMessage(
        sender="chain-b",
        recipient="chain-a",
        manifest_version=version,
        purpose=purpose,
        issued_at=at,
        nonce=secrets.token_bytes(16),
        body_type=body.TYPE,
        body=body.to_dict(),
    )
    signed = SignedDocument(inner)
    signed.sign(NODE_B_SIGNING)
    return seal(signed, NODE_B_ENCRYPTION, NODE_A_ENCRYPTION.public).to_bytes()


def a_query(model: str = MODEL) -> QueryRequest:
    return QueryRequest(query_id=f"qry-{secrets.token_hex(6)}", model_id=model, embeddings=[embedding(1)])


def with_status(manifest: Manifest, status: MemberStatus) -> Manifest:
    members = tuple(
        replace(m, status=status) if m.node_id == "chain-b" else m for m in manifest.joint_use.members
    )
    return next_version(manifest, joint_use=replace(manifest.joint_use, members=members))


def test_an_admitted_query_carries_the_member_and_the_parsed_body(tmp_path: Path) -> None:
    gate, _ = gate_for(tmp_path, make_manifest(now=T0))
    admitted = gate.admit(message(a_query()), T0, BODIES)
    assert admitted.member.node_id == "chain-b" and isinstance(admitted.body, QueryRequest)
    assert gate.sender_of(message(a_query())) == "chain-b"


def test_a_refused_message_consumes_neither_its_nonce_nor_the_rate(tmp_path: Path) -> None:
    gate, _ = gate_for(tmp_path, make_manifest(now=T0), per_minute=2)
    bad = message(a_query(), purpose="marketing")
    for _ in range(5):
        with pytest.raises(PurposeNotAllowed):
            gate.admit(bad, T0, BODIES)
    gate.admit(message(a_query()), T0, BODIES)
    gate.admit(message(a_query()), T0, BODIES)
    with pytest.raises(PeerRateLimited):
        gate.admit(message(a_query()), T0, BODIES)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (lambda: message(a_query("other/model"), purpose="marketing"), PurposeNotAllowed),
        (lambda: message(a_query("other/model")), ModelMismatch),
        (lambda: message(LogRequest(after=0)), PurposeNotAllowed),
        (lambda: message(a_query(), purpose=SYNC_PURPOSE), PurposeNotAllowed),
    ],
    ids=["purpose-before-model", "model", "log-body-under-a-query-purpose", "query-under-the-sync-purpose"],
)
def test_checks_run_in_the_documented_order(tmp_path: Path, raw: Any, error: type[Exception]) -> None:
    gate, _ = gate_for(tmp_path, make_manifest(now=T0))
    with pytest.raises(error):
        gate.admit(raw(), T0, BODIES)


def test_a_replay_is_refused_before_the_rate_is_charged(tmp_path: Path) -> None:
    gate, clock = gate_for(tmp_path, make_manifest(now=T0), per_minute=1)
    raw = message(a_query())
    gate.admit(raw, T0, BODIES)
    with pytest.raises(ReplayError):
        gate.admit(raw, T0, BODIES)
    with pytest.raises(PeerRateLimited):
        gate.admit(message(a_query()), T0, BODIES)
    clock.t = 60.0
    gate.admit(message(a_query()), T0, BODIES)


def test_a_suspended_member_may_sync_but_not_query(tmp_path: Path) -> None:
    gate, _ = gate_for(tmp_path, with_status(make_manifest(now=T0), MemberStatus.SUSPENDED))
    with pytest.raises(MemberNotActive):
        gate.admit(message(a_query(), version=2), T0, BODIES)
    admitted = gate.admit(message(LogRequest(after=0), purpose=SYNC_PURPOSE, version=2), T0, BODIES)
    assert isinstance(admitted.body, LogRequest)


def test_a_removed_member_may_do_neither(tmp_path: Path) -> None:
    gate, _ = gate_for(tmp_path, with_status(make_manifest(now=T0), MemberStatus.REMOVED))
    for raw in (message(a_query(), version=2), message(LogRequest(after=0), purpose=SYNC_PURPOSE, version=2)):
        with pytest.raises(MemberNotActive):
            gate.admit(raw, T0, BODIES)


def test_a_sender_missing_from_the_manifest_is_not_a_member(tmp_path: Path) -> None:
    manifest = make_manifest(now=T0)
    without_b = next_version(
        manifest,
        joint_use=replace(
            manifest.joint_use, members=tuple(m for m in manifest.joint_use.members if m.node_id != "chain-b")
        ),
    )
    gate, _ = gate_for(tmp_path, without_b)
    with pytest.raises(Exception) as caught:
        gate.admit(message(a_query(), version=2), T0, BODIES)
    assert getattr(caught.value, "code", "") == "unknown_peer"
    assert not isinstance(caught.value, NotAMember)


def test_an_expired_manifest_stops_queries_but_not_log_sync(tmp_path: Path) -> None:
    manifest = replace(make_manifest(now=T0), expires=T0 + timedelta(seconds=30))
    gate, _ = gate_for(tmp_path, manifest)
    later = T0 + timedelta(seconds=40)
    with pytest.raises(ExpiredError, match="no queries until"):
        gate.admit(message(a_query(), at=later), later, BODIES)
    admitted = gate.admit(message(LogRequest(after=0), purpose=SYNC_PURPOSE, at=later), later, BODIES)
    assert isinstance(admitted.body, LogRequest)
