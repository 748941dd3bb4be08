"""Signed tree heads: round trips, signatures that catch tampering, invalid fields, and the
consistency check a peer or auditor runs between two heads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.errors import MalformedError, OversizedError, ProofError, RollbackError, ThresholdError
from protocol.keys import SigningKey
from protocol.merkle import EMPTY_ROOT, MerkleLog
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead, check_consistent

T0 = datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)
NODE_KEY = SigningKey(bytes(range(32)))
OTHER_KEY = SigningKey(bytes(range(1, 33)))


def log_of(n: int) -> MerkleLog:
    log = MerkleLog()
    for i in range(n):
        log.append(f"event-{i}".encode())
    return log


def head_of(log: MerkleLog, size: int, *, at: datetime = T0, log_id: str = "chain-a") -> TreeHead:
    return TreeHead(
        log_id=log_id, tree_size=size, root_hash=log.root(size), timestamp=at, audit_head=bytes([size]) * 32
    )


def signed(head: TreeHead) -> SignedDocument[TreeHead]:
    doc = SignedDocument(head)
    doc.sign(NODE_KEY)
    return doc


def test_round_trip_keeps_every_field_and_the_signature() -> None:
    head = head_of(log_of(5), 5)
    wire = signed(head).to_bytes()
    back = SignedDocument.from_bytes(wire, TreeHead)
    assert back.payload == head
    assert back.to_bytes() == wire
    back.verify([NODE_KEY.public])


def test_the_signed_form_is_the_documented_one() -> None:
    head = head_of(log_of(2), 2)
    assert head.to_dict() == {
        "type": "tree-head",
        "spec_version": "1.0",
        "log_id": "chain-a",
        "tree_size": 2,
        "root_hash": b64url_encode(log_of(2).root()),
        "timestamp": "2026-11-01T09:00:00Z",
        "audit_head": b64url_encode(b"\x02" * 32),
    }
    assert head.canonical() == canonical_bytes(head.to_dict())


def test_audit_head_absent_or_null_means_none() -> None:
    head = TreeHead(log_id="chain-a", tree_size=0, root_hash=EMPTY_ROOT, timestamp=T0)
    assert "audit_head" not in head.to_dict()
    assert TreeHead.from_dict(head.to_dict()) == head
    assert TreeHead.from_dict({**head.to_dict(), "audit_head": None}) == head


def test_unknown_fields_survive_and_stay_signed() -> None:
    data = {**head_of(log_of(3), 3).to_dict(), "witnessed_by": ["auditor-1"]}
    head = TreeHead.from_dict(data)
    assert head.unrecognized_fields == {"witnessed_by": ["auditor-1"]}
    doc = signed(head)
    back = SignedDocument.from_bytes(doc.to_bytes(), TreeHead)
    back.verify([NODE_KEY.public])
    tampered = parse_json(doc.to_bytes())
    tampered["signed"]["witnessed_by"] = ["auditor-2"]
    with pytest.raises(ThresholdError):
        SignedDocument.from_dict(tampered, TreeHead).verify([NODE_KEY.public])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tree_size", 6),
        ("root_hash", b64url_encode(b"\x01" * 32)),
        ("timestamp", "2026-11-01T09:00:01Z"),
        ("log_id", "chain-b"),
        ("audit_head", b64url_encode(b"\x09" * 32)),
    ],
)
def test_any_tampered_field_breaks_the_signature(field: str, value: Any) -> None:
    data = parse_json(signed(head_of(log_of(5), 5)).to_bytes())
    data["signed"][field] = value
    doc = SignedDocument.from_dict(data, TreeHead)
    with pytest.raises(ThresholdError, match="signed by 0/1 keys"):
        doc.verify([NODE_KEY.public])


def test_dropping_the_audit_head_breaks_the_signature() -> None:
    data = parse_json(signed(head_of(log_of(5), 5)).to_bytes())
    del data["signed"]["audit_head"]
    with pytest.raises(ThresholdError):
        SignedDocument.from_dict(data, TreeHead).verify([NODE_KEY.public])


def test_a_head_signed_by_another_key_is_refused() -> None:
    doc = SignedDocument(head_of(log_of(5), 5))
    doc.sign(OTHER_KEY)
    with pytest.raises(ThresholdError, match="signed by 0/1 keys"):
        doc.verify([NODE_KEY.public])


VALID = head_of(log_of(2), 2).to_dict()
INVALID: list[tuple[str, Any, type[Exception]]] = [
    ("wrong type", {**VALID, "type": "tree-head-v2"}, MalformedError),
    ("other major version", {**VALID, "spec_version": "2.0"}, MalformedError),
    ("missing log_id", {k: v for k, v in VALID.items() if k != "log_id"}, MalformedError),
    ("upper-case log_id", {**VALID, "log_id": "Chain-A"}, MalformedError),
    ("log_id too long", {**VALID, "log_id": "a" * 64}, OversizedError),
    ("negative tree_size", {**VALID, "tree_size": -1}, MalformedError),
    ("tree_size beyond 2^53-1", {**VALID, "tree_size": 2**53}, MalformedError),
    ("tree_size a string", {**VALID, "tree_size": "2"}, MalformedError),
    ("tree_size a bool", {**VALID, "tree_size": True}, MalformedError),
    ("tree_size a float", {**VALID, "tree_size": 2.0}, MalformedError),
    ("missing root_hash", {k: v for k, v in VALID.items() if k != "root_hash"}, MalformedError),
    ("short root_hash", {**VALID, "root_hash": "AAAA"}, MalformedError),
    ("padded root_hash", {**VALID, "root_hash": VALID["root_hash"] + "="}, MalformedError),
    ("standard base64 root_hash", {**VALID, "root_hash": "+" * 43}, MalformedError),
    ("empty tree with another root", {**VALID, "tree_size": 0}, MalformedError),
    ("timestamp with offset", {**VALID, "timestamp": "2026-11-01T09:00:00+09:00"}, MalformedError),
    ("timestamp with fraction", {**VALID, "timestamp": "2026-11-01T09:00:00.5Z"}, MalformedError),
    ("missing timestamp", {k: v for k, v in VALID.items() if k != "timestamp"}, MalformedError),
    ("short audit_head", {**VALID, "audit_head": "AAAA"}, MalformedError),
    ("audit_head a number", {**VALID, "audit_head": 7}, MalformedError),
    ("not an object", ["tree-head"], MalformedError),
]


@pytest.mark.parametrize(("data", "error"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_fields_are_refused(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        TreeHead.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"root_hash": b"\x00" * 31}, "expected 32 bytes, got 31"),
        ({"audit_head": b"\x00" * 33}, "expected 32 bytes, got 33"),
        ({"tree_size": -1}, "outside"),
        ({"log_id": "a b"}, "does not match"),
        ({"timestamp": T0.replace(tzinfo=None)}, "UTC-aware"),
        ({"timestamp": T0 + timedelta(microseconds=5)}, "whole seconds"),
    ],
)
def test_constructor_refuses_what_the_wire_cannot_carry(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "log_id": "chain-a",
        "tree_size": 2,
        "root_hash": b"\x07" * 32,
        "timestamp": T0,
        **changes,
    }
    with pytest.raises(MalformedError, match=message):
        TreeHead(**fields)


@given(
    size=st.integers(0, 2**53 - 1),
    root=st.binary(min_size=32, max_size=32),
    seconds=st.integers(0, 10**9),
    audit=st.none() | st.binary(min_size=32, max_size=32),
    extra=st.dictionaries(
        st.from_regex(r"x_[a-z]{1,8}", fullmatch=True),
        st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    ),
)
def test_round_trip_property(
    size: int, root: bytes, seconds: int, audit: bytes | None, extra: dict[str, Any]
) -> None:
    head = TreeHead(
        log_id="chain-a.tokyo",
        tree_size=size,
        root_hash=root if size else EMPTY_ROOT,
        timestamp=T0 + timedelta(seconds=seconds),
        audit_head=audit,
        unrecognized_fields=extra,
    )
    assert TreeHead.from_dict(parse_json(head.canonical())) == head


# check_consistent: what a peer or auditor runs between the head it kept and a new one.


def test_every_later_head_is_consistent_with_every_earlier_one() -> None:
    log = log_of(20)
    for new in range(21):
        for old in range(new + 1):
            proof = log.consistency_proof(old, new) if old else []
            check_consistent(head_of(log, old), head_of(log, new, at=T0 + timedelta(minutes=new)), proof)


def test_a_shrunk_tree_is_a_rollback() -> None:
    log = log_of(8)
    with pytest.raises(RollbackError, match="shrank from 8 to 5"):
        check_consistent(head_of(log, 8), head_of(log, 5), [])


def test_same_size_different_root_is_a_fork() -> None:
    honest, forked = log_of(6), MerkleLog()
    for i in range(6):
        forked.append(f"event-{i}".encode() if i != 4 else b"rewritten")
    with pytest.raises(ProofError, match="chain-a: two different roots for tree size 6"):
        check_consistent(head_of(honest, 6), head_of(forked, 6), [])


def test_a_rewritten_history_fails_the_proof() -> None:
    honest, forked = log_of(9), MerkleLog()
    for i in range(9):
        forked.append(f"event-{i}".encode() if i != 2 else b"rewritten")
    old = head_of(honest, 5)
    new = head_of(forked, 9)
    for proof in (honest.consistency_proof(5, 9), forked.consistency_proof(5, 9)):
        with pytest.raises(ProofError, match="chain-a"):
            check_consistent(old, new, proof)


def test_wrong_or_missing_proofs_fail() -> None:
    log = log_of(9)
    old, new = head_of(log, 5), head_of(log, 9)
    proof = log.consistency_proof(5, 9)
    with pytest.raises(ProofError):
        check_consistent(old, new, [])
    with pytest.raises(ProofError):
        check_consistent(old, new, proof[:-1])
    with pytest.raises(ProofError):
        check_consistent(old, new, log.consistency_proof(4, 9))
    with pytest.raises(ProofError, match="needs no proof"):
        check_consistent(head_of(log, 0), new, proof)
    with pytest.raises(ProofError, match="expected 0"):
        check_consistent(new, new, proof)


def test_heads_of_different_logs_are_not_compared() -> None:
    log = log_of(4)
    with pytest.raises(MalformedError, match="different logs"):
        check_consistent(head_of(log, 2), head_of(log, 4, log_id="chain-b"), log.consistency_proof(2, 4))
