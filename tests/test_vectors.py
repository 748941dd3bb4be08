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
