"""Deterministic builders for every signed format (fixed seeds, salts, nonces and clock).

Each vector holds the test-only key seed, the signed document, the SHA-256 of its canonical
signed bytes and whatever local data opens its commitments, so another implementation can
reproduce the bytes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from protocol.canonical import b64url_encode, sha256_hex
from protocol.commitment import commit
from protocol.embedding import Embedding
from protocol.entry import Evidence, WatchlistEntry
from protocol.keys import SigningKey
from protocol.signed import Payload, SignedDocument

CLOCK = datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)
NODE_SEED = bytes([0x11]) * 32
SALT = bytes([0x22]) * 32


def node_key() -> SigningKey:
    return SigningKey(NODE_SEED)


def sample_embedding(dimension: int = 512) -> Embedding:
    """Integer-derived values, normalised with correctly rounded Python arithmetic (portable bits)."""
    values = [float((i * 37) % 101 - 50) for i in range(dimension)]
    norm = math.sqrt(math.fsum(v * v for v in values))
    return Embedding(np.array([v / norm for v in values], dtype="<f4").tobytes())


def signed_vector(
    description: str, payload: Payload, keys: list[tuple[bytes, SigningKey]], **extra: Any
) -> dict[str, Any]:
    doc = SignedDocument(payload)
    for _, key in keys:
        doc.sign(key)
    return {
        "description": description,
        "signer_seeds_hex": [seed.hex() for seed, _ in keys],
        "keyids": [key.keyid for _, key in keys],
        "signed_sha256": sha256_hex(doc.signed_bytes()),
        "document": doc.to_dict(),
        **extra,
    }


def sample_entry() -> WatchlistEntry:
    embedding = sample_embedding()
    return WatchlistEntry(
        entry_id="ent-0000000000000001",
        owner="chain-a",
        version=1,
        category="shoplifting",
        evidence=Evidence("police-report", "TKY-2026-000123"),
        incident_date=date(2026, 10, 30),
        site="shibuya-01",
        model_id="buffalo_s/w600k_mbf",
        embedding_commitment=commit(SALT, embedding.raw),
        registered_at=CLOCK,
        expires_at=CLOCK + timedelta(days=180),
        registrar="acct-registrar-01",
        officer="acct-officer-01",
        embedding=embedding,
        embedding_salt=SALT,
    )


def entry_vector() -> dict[str, Any]:
    entry = sample_entry()
    assert entry.embedding is not None
    return signed_vector(
        "A watchlist entry signed by its owner node. The embedding and its salt are local fields: "
        "they open embedding_commitment and are never sent.",
        entry,
        [(NODE_SEED, node_key())],
        local={"embedding": entry.embedding.to_str(), "embedding_salt": b64url_encode(SALT)},
    )


VECTORS: dict[str, Callable[[], Any]] = {
    "watchlist-entry": entry_vector,
}

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    "watchlist-entry": WatchlistEntry,
}
