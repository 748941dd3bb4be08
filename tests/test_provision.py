"""Third-party provision: the legal bases, the signed record, and a follower mirroring it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from governance.provision import LEGAL_BASES, NoLegalBasis, require_legal_basis
from node.federation.sync import apply_page, pending_receipts
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from protocol.canonical import canonical_bytes, parse_json
from protocol.errors import MalformedError
from protocol.events import log_leaf_bytes
from protocol.merkle import MerkleLog
from protocol.provision import ThirdPartyProvision
from protocol.signed import SignedDocument
from protocol.sync import LogPage, parse_log_event
from protocol.treehead import TreeHead
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0, make_manifest


def record(**changes: Any) -> ThirdPartyProvision:
    fields: dict[str, Any] = {
        "record_id": "prv-00000001",
        "owner": "chain-a",
        "legal_basis": "warrant",
        "requester_kind": "court",
        "occurred_at": T0,
        "actor": "acct-officer-1",
        "entry_count": 2,
        "items": ["incident-category", "face-image"],
        "details_commitment": bytes(32),
    }
    fields.update(changes)
    return ThirdPartyProvision(**fields)


@pytest.mark.parametrize("basis", sorted(LEGAL_BASES))
def test_every_listed_basis_is_accepted_with_its_article(basis: str) -> None:
    require_legal_basis(basis, "police", ["incident-category"])
    assert LEGAL_BASES[basis]["article"].startswith("法第27条第1項")


@pytest.mark.parametrize(
    ("basis", "kind", "items"),
    [
        ("", "police", ["incident-category"]),
        ("marketing-partner", "police", ["incident-category"]),
        ("warrant", "journalist", ["incident-category"]),
        ("warrant", "court", []),
        ("warrant", "court", ["face-embedding"]),
    ],
)
def test_anything_else_has_no_legal_basis(basis: str, kind: str, items: list[str]) -> None:
    with pytest.raises(NoLegalBasis):
        require_legal_basis(basis, kind, items)


def test_the_record_round_trips_and_refuses_malformed_fields() -> None:
    signed = SignedDocument(record())
    signed.sign(NODE_A_SIGNING)
    again = parse_log_event(parse_json(signed.to_bytes()))
    assert isinstance(again.payload, ThirdPartyProvision) and again.to_bytes() == signed.to_bytes()
    again.verify([NODE_A_SIGNING.public])
    for bad in (
        {"items": []},
        {"items": ["a b"]},
        {"entry_count": 0},
        {"details_commitment": b"x"},
        {"owner": "A"},
    ):
        with pytest.raises(MalformedError):
            record(**bad)
    with pytest.raises(MalformedError, match="expected one of"):
        parse_log_event({"signed": {"type": "watchlist-entry"}, "signatures": []})


def test_a_follower_mirrors_a_provision_leaf_and_owes_no_receipt(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(engine)
    signed = SignedDocument(record())
    signed.sign(NODE_A_SIGNING)
    log = MerkleLog()
    log.append(log_leaf_bytes(signed))
    head = SignedDocument(TreeHead(log_id="chain-a", tree_size=1, root_hash=log.root(), timestamp=T0))
    head.sign(NODE_A_SIGNING)
    page = LogPage.from_dict(
        parse_json(canonical_bytes(LogPage(first=0, events=[signed], head=head, latest_size=1).to_dict()))
    )
    member = make_manifest(now=T0).member("chain-a")
    assert member is not None
    result = apply_page(
        engine, node_id="chain-b", signing_key=NODE_B_SIGNING, member=member, page=page, after=0, now=T0
    )
    assert (result.applied, result.receipts) == (1, 0)
    assert pending_receipts(engine, "chain-a") == []
    engine.dispose()
