"""Shared builders for tests: fixed keys, a fixed clock and valid objects of every type."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from protocol.embedding import Embedding
from protocol.entry import Evidence, WatchlistEntry
from protocol.keys import EncryptionKey, SigningKey
from protocol.signed import SignedDocument

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
NODE_A_SIGNING = SigningKey(b"\xa1" * 32)
NODE_A_ENCRYPTION = EncryptionKey(b"\xa2" * 32)
NODE_B_SIGNING = SigningKey(b"\xb1" * 32)
NODE_B_ENCRYPTION = EncryptionKey(b"\xb2" * 32)


def embedding(seed: int = 0, dimension: int = 512) -> Embedding:
    return Embedding.from_vector(np.random.default_rng(seed).standard_normal(dimension))


def make_entry(**overrides: Any) -> WatchlistEntry:
    fields: dict[str, Any] = {
        "entry_id": "ent-00000001",
        "owner": "chain-a",
        "version": 1,
        "category": "shoplifting",
        "evidence": Evidence("police-report", "TKY-2026-0001"),
        "incident_date": date(2026, 10, 30),
        "site": "shibuya-01",
        "model_id": "buffalo_s/w600k_mbf",
        "registered_at": T0,
        "expires_at": T0 + timedelta(days=90),
        "registrar": "acct-registrar",
        "officer": "acct-officer1",
    }
    seed = overrides.pop("seed", 0)
    fields.update(overrides)
    return WatchlistEntry.create(embedding=embedding(seed), **fields)


def signed_entry(key: SigningKey = NODE_A_SIGNING, **overrides: Any) -> SignedDocument[WatchlistEntry]:
    doc = SignedDocument(make_entry(**overrides))
    doc.sign(key)
    return doc


def group_description() -> dict[str, Any]:
    import tomllib
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "docs" / "examples" / "group.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def make_manifest(threshold: int = 2, signers: list[SigningKey] | None = None, now: datetime = T0) -> Any:
    from governance.description import manifest_from_description

    signers = KEYS if signers is None else signers
    return manifest_from_description(group_description(), [k.public for k in signers], threshold, now)


def signed_manifest(manifest: Any, *keys: SigningKey) -> Any:
    doc = SignedDocument(manifest)
    for key in keys:
        doc.sign(key)
    return doc
