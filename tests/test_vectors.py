"""The checked-in vectors are exactly what the builders produce, and each one verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol.canonical import canonical_bytes, sha256_hex
from protocol.keys import SigningKey
from protocol.signed import SignedDocument
from tests.vectors import builders
from tests.vectors.generate import render

VECTORS = Path(__file__).parent / "vectors"
NAMES = sorted(builders.VECTORS)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def test_every_builder_has_a_file_and_a_type() -> None:
    on_disk = {p.stem for p in VECTORS.glob("*.json")}
    assert set(NAMES) <= on_disk
    assert set(builders.PAYLOAD_TYPES) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_vector_file_is_unchanged(name: str) -> None:
    expected = render(builders.VECTORS[name]())
    assert (VECTORS / f"{name}.json").read_text(encoding="utf-8") == expected, (
        f"tests/vectors/{name}.json differs from what the builders make; "
        "if the format change is intended run: python tests/vectors/generate.py --docs"
    )


@pytest.mark.parametrize("name", NAMES)
def test_vector_verifies_and_round_trips(name: str) -> None:
    vector = load(name)
    doc = SignedDocument.from_dict(vector["document"], builders.PAYLOAD_TYPES[name])
    keys = [SigningKey(bytes.fromhex(seed)).public for seed in vector["signer_seeds_hex"]]
    assert [k.keyid for k in keys] == vector["keyids"]
    doc.verify(keys, threshold=len(keys))
    assert sha256_hex(doc.signed_bytes()) == vector["signed_sha256"]
    assert doc.to_bytes() == canonical_bytes(vector["document"])


@pytest.mark.parametrize("name", NAMES)
def test_vector_tampered_fails(name: str) -> None:
    vector = load(name)
    doc = SignedDocument.from_dict(vector["document"], builders.PAYLOAD_TYPES[name])
    keys = [SigningKey(bytes.fromhex(seed)).public for seed in vector["signer_seeds_hex"]]
    tampered = json.loads(json.dumps(vector["document"]))
    tampered["signed"]["spec_version"] = "1.1"
    with pytest.raises(Exception, match="threshold"):
        SignedDocument.from_dict(tampered, type(doc.payload)).verify(keys, threshold=len(keys))


def test_entry_vector_local_fields_open_the_commitment() -> None:
    from protocol.canonical import b64url_decode
    from protocol.embedding import Embedding
    from protocol.entry import WatchlistEntry
    from protocol.errors import CommitmentError

    vector = load("watchlist-entry")
    entry = SignedDocument.from_dict(vector["document"], WatchlistEntry).payload
    embedding = Embedding.from_str(vector["local"]["embedding"], dimension=512)
    salt = b64url_decode(vector["local"]["embedding_salt"], length=32)
    assert entry.with_embedding(embedding, salt).embedding == embedding
    with pytest.raises(CommitmentError):
        entry.with_embedding(embedding, bytes(32))


def vector_manifest() -> Any:
    from governance.manifest import Manifest

    doc = SignedDocument.from_dict(load("governance-manifest")["document"], Manifest)
    manifest = doc.payload
    doc.verify(list(manifest.role_keys().values()), threshold=manifest.manifest_role.threshold)
    return manifest


def _signer_keys(manifest: Any, signer: str) -> tuple[list[Any], int]:
    if signer == "organisation":
        return list(manifest.role_keys().values()), manifest.manifest_role.threshold
    if signer == "organisation-witness":  # the organisation's online key: complaint referrals
        return [manifest.policy.witness.organisation.key], 1
    member = manifest.member(signer)
    assert member is not None, f"the vector manifest has no member {signer!r}"
    return [member.signing_key], 1


@pytest.mark.parametrize("name", NAMES)
def test_vector_verifies_under_the_key_the_vector_manifest_gives_its_signer(name: str) -> None:
    """An implementation holding only the vector manifest can check every vector (no seeds needed)."""
    manifest = vector_manifest()
    vector = load(name)
    doc = SignedDocument.from_dict(vector["document"], builders.PAYLOAD_TYPES[name])
    keys, threshold = _signer_keys(manifest, vector["signer"])
    doc.verify(keys, threshold=threshold)
    if vector["signer"] != "organisation":
        assert len(vector["signer_seeds_hex"]) == 1
        assert SigningKey(bytes.fromhex(vector["signer_seeds_hex"][0])).public == keys[0]


def test_nested_documents_verify_under_the_vector_manifest() -> None:
    """The signed documents inside a page, a delivery and an answer are signed by the members they name."""
    from protocol.query import QueryResponse
    from protocol.sync import LogPage, ReceiptDelivery

    manifest = vector_manifest()

    def key(node_id: str) -> Any:
        return [manifest.member(node_id).signing_key]

    page = SignedDocument.from_dict(load("log-page")["document"], LogPage).payload
    page.head.verify(key(page.head.payload.log_id), threshold=1)
    for event in page.events:
        event.verify(key(event.payload.owner), threshold=1)
    delivery = SignedDocument.from_dict(load("receipt-delivery")["document"], ReceiptDelivery).payload
    for receipt in delivery.receipts:
        receipt.verify(key(receipt.payload.member), threshold=1)
    answer = SignedDocument.from_dict(load("query-response")["document"], QueryResponse).payload
    for match in answer.matches:
        match.entry.verify(key(match.entry.payload.owner), threshold=1)


def test_sealed_vector_opens_with_the_box_keys_of_the_vector_manifest() -> None:
    """The vector's box seeds are raw X25519 secret keys whose public halves the manifest lists."""
    from protocol.keys import EncryptionKey
    from protocol.message import SealedMessage, open_sealed

    manifest = vector_manifest()
    vector = load("peer-message")
    sealed = SealedMessage.from_dict(vector["sealed"])
    sender, recipient = manifest.member(sealed.sender), manifest.member(sealed.recipient)
    recipient_secret = EncryptionKey(bytes.fromhex(vector["recipient_box_seed_hex"]))
    assert recipient_secret.public == recipient.encryption_key
    assert EncryptionKey(bytes.fromhex(vector["sender_box_seed_hex"])).public == sender.encryption_key
    opened = open_sealed(
        sealed,
        recipient_id=recipient.node_id,
        recipient_key=recipient_secret,
        lookup_sender=lambda node_id: (sender.signing_key, sender.encryption_key)
        if node_id == sender.node_id
        else None,
    )
    assert opened.to_dict() == vector["document"]


def test_tree_head_vector_is_a_real_head_of_the_log_page_leaves() -> None:
    """One size, one root: the published head and the page's head agree, and both are the leaves' root."""
    from protocol.merkle import MerkleLog, leaf_hash
    from protocol.sync import LogPage
    from protocol.treehead import TreeHead

    page = SignedDocument.from_dict(load("log-page")["document"], LogPage).payload
    head = SignedDocument.from_dict(load("tree-head")["document"], TreeHead).payload
    log = MerkleLog()
    for event in page.events:
        log.append(event.to_bytes())
    assert [leaf_hash(e.to_bytes()).hex() for e in page.events] == load("log-page")["leaf_hashes_hex"]
    assert (head.log_id, head.tree_size) == (page.head.payload.log_id, page.head.payload.tree_size)
    assert head.root_hash == page.head.payload.root_hash == log.root()


def test_tree_head_audit_head_names_the_newest_record_of_a_valid_audit_chain() -> None:
    """``audit_head`` is the hex ``record_hash`` of the chain's newest record, carried as base64url bytes."""
    from node.records.auditlog import record_hash, verify_audit_chain
    from node.storage.models import AuditRecord
    from protocol.fields import parse_time
    from protocol.treehead import TreeHead

    vector = load("tree-head")
    records = [AuditRecord(**{**r, "at": parse_time(r["at"])}) for r in vector["audit_records"]]
    assert [record_hash(r) for r in records] == [r["record_hash"] for r in vector["audit_records"]]
    newest = verify_audit_chain(records)
    head = SignedDocument.from_dict(vector["document"], TreeHead).payload
    assert head.audit_head is not None and head.audit_head.hex() == newest


def test_deletion_event_commits_to_salt_and_null() -> None:
    """A deletion's payload commitment is SHA-256(salt || b"null"): the input is given in the vector."""
    import hashlib

    from protocol.canonical import b64url_decode
    from protocol.events import EntryEvent, EventPayload

    vector = load("entry-event-deletion")
    event = SignedDocument.from_dict(vector["document"], EntryEvent).payload
    payload = EventPayload.from_dict(vector["payload"])
    assert vector["payload"]["entry"] is None
    commitment_input = bytes.fromhex(vector["commitment_input_hex"])
    assert commitment_input == payload.salt + b"null"
    assert hashlib.sha256(commitment_input).digest() == event.payload_commitment
    assert event.payload_commitment == b64url_decode(vector["document"]["signed"]["payload_commitment"])
    payload.verify_against(event)
    registration = SignedDocument.from_dict(load("entry-event")["document"], EntryEvent).payload
    assert event.entry_version == registration.entry_version, "a deletion carries the current version"
