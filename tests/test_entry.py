"""WatchlistEntry and Embedding: round trips, local fields never sent, and every malformed input typed.

The strategies here (ids, times, embeddings, signed entries) are reused by the tests of the
formats that carry entries: events, queries and receipts.
"""

from __future__ import annotations

import copy
import struct
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.commitment import commit
from protocol.embedding import MAX_DIMENSION, Embedding
from protocol.entry import Evidence, WatchlistEntry
from protocol.errors import CommitmentError, MalformedError, OversizedError, WatchnetError
from protocol.fields import CODE_RE, ID_RE, NODE_ID_RE, REFERENCE_RE
from protocol.keys import SigningKey
from protocol.signed import SignedDocument
from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING, T0, embedding, make_entry, signed_entry

ids = st.from_regex(ID_RE, fullmatch=True)
node_ids = st.from_regex(NODE_ID_RE, fullmatch=True)
codes = st.from_regex(CODE_RE, fullmatch=True)
references = st.from_regex(REFERENCE_RE, fullmatch=True)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))
utf8_text = st.characters(codec="utf-8")
model_ids = st.text(utf8_text, min_size=1, max_size=128)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def embeddings(draw: st.DrawFn, dimension: int | None = None) -> Embedding:
    dim = dimension if dimension is not None else draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**32 - 1))
    vector = np.random.default_rng(seed).standard_normal(dim)
    if not np.any(vector):
        vector[0] = 1.0
    return Embedding.from_vector(vector)


def unknown_fields(known: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Extra fields a newer peer might add: any JSON values under names we do not use."""
    names = st.text(utf8_text, min_size=1, max_size=12)
    return st.dictionaries(names.filter(lambda n: n not in known), json_values, min_size=1, max_size=3)


@st.composite
def entries(draw: st.DrawFn, owner: str | None = None) -> WatchlistEntry:
    registered_at = draw(times)
    registrar, officer = draw(st.lists(ids, min_size=2, max_size=2, unique=True))
    return WatchlistEntry.create(
        embedding=draw(embeddings()),
        entry_id=draw(ids),
        owner=owner if owner is not None else draw(node_ids),
        version=draw(st.integers(1, 2**53 - 1)),
        category=draw(codes),
        evidence=Evidence(draw(codes), draw(references)),
        incident_date=draw(st.dates(date(2000, 1, 1), date(2100, 1, 1))),
        site=draw(node_ids),
        model_id=draw(model_ids),
        registered_at=registered_at,
        expires_at=registered_at + timedelta(seconds=draw(st.integers(1, 3650 * 86400))),
        registrar=registrar,
        officer=officer,
    )


def sign(payload: Any, key: SigningKey = NODE_A_SIGNING) -> SignedDocument[Any]:
    doc: SignedDocument[Any] = SignedDocument(payload)
    doc.sign(key)
    return doc


def assert_any_byte_change_fails(doc: SignedDocument[Any], key: SigningKey, data: st.DataObject) -> None:
    """Flip one byte (hypothesis picks where and to what) of the canonical signed document."""
    wire = bytearray(doc.to_bytes())
    position = data.draw(st.integers(0, len(wire) - 1), label="position")
    original = wire[position]
    wire[position] = data.draw(st.integers(0, 255).filter(lambda b: b != original), label="byte")
    with pytest.raises(WatchnetError):
        SignedDocument.from_bytes(bytes(wire), type(doc.payload)).verify([key.public])


@settings(max_examples=150, deadline=None)
@given(entry=entries())
def test_entry_round_trip_is_exact(entry: WatchlistEntry) -> None:
    wire = canonical_bytes(entry.to_dict())
    again = WatchlistEntry.from_dict(parse_json(wire))
    assert again == entry
    assert canonical_bytes(again.to_dict()) == wire
    assert again.embedding is None and again.embedding_salt is None


@settings(max_examples=100, deadline=None)
@given(entry=entries(), extra=unknown_fields(set(make_entry().to_dict())))
def test_entry_unknown_fields_survive_byte_for_byte(entry: WatchlistEntry, extra: dict[str, Any]) -> None:
    d = {**entry.to_dict(), **extra}
    parsed = WatchlistEntry.from_dict(parse_json(canonical_bytes(d)))
    assert parsed.unrecognized_fields == extra
    assert canonical_bytes(parsed.to_dict()) == canonical_bytes(d)


@settings(max_examples=150, deadline=None)
@given(entry=entries(), data=st.data())
def test_entry_any_single_byte_change_fails(entry: WatchlistEntry, data: st.DataObject) -> None:
    doc = sign(entry)
    SignedDocument.from_bytes(doc.to_bytes(), WatchlistEntry).verify([NODE_A_SIGNING.public])
    assert_any_byte_change_fails(doc, NODE_A_SIGNING, data)


def test_signed_entry_never_carries_the_embedding_or_salt() -> None:
    entry = make_entry()
    assert entry.embedding is not None and entry.embedding_salt is not None
    wire = sign(entry).to_bytes()
    assert entry.embedding.to_str().encode() not in wire
    assert b64url_encode(entry.embedding_salt).encode() not in wire
    assert b"embedding_salt" not in wire


def test_local_embedding_must_open_the_commitment() -> None:
    entry = make_entry()
    assert entry.embedding is not None and entry.embedding_salt is not None
    bare = entry.without_embedding()
    assert bare.embedding is None
    assert bare.with_embedding(entry.embedding, entry.embedding_salt).embedding == entry.embedding
    with pytest.raises(CommitmentError):
        bare.with_embedding(embedding(99), entry.embedding_salt)
    with pytest.raises(CommitmentError):
        bare.with_embedding(entry.embedding, bytes(32))
    with pytest.raises(CommitmentError):
        bare.with_embedding(entry.embedding, bytes(16))


def test_signature_by_another_node_does_not_verify() -> None:
    doc = signed_entry(NODE_B_SIGNING)
    with pytest.raises(WatchnetError, match="signed by 0/1"):
        doc.verify([NODE_A_SIGNING.public])


def _entry(**overrides: Any) -> dict[str, Any]:
    d = make_entry().to_dict()
    d.update(overrides)
    return d


def _without(name: str) -> dict[str, Any]:
    d = copy.deepcopy(_entry())
    del d[name]
    return d


ENTRY_INVALID: list[tuple[str, Any, type[Exception]]] = [
    ("not-an-object", ["watchlist-entry"], MalformedError),
    ("wrong-type-tag", _entry(type="watchlist-entri"), MalformedError),
    ("other-major-version", _entry(spec_version="2.0"), MalformedError),
    ("missing-entry-id", _without("entry_id"), MalformedError),
    ("missing-evidence", _without("evidence"), MalformedError),
    ("missing-expires", _without("expires_at"), MalformedError),
    ("version-zero", _entry(version=0), MalformedError),
    ("version-as-string", _entry(version="1"), MalformedError),
    ("version-as-bool", _entry(version=True), MalformedError),
    ("version-as-float", _entry(version=1.0), MalformedError),
    ("version-beyond-i-json", _entry(version=2**53), MalformedError),
    ("entry-id-short", _entry(entry_id="e1"), MalformedError),
    ("entry-id-with-space", _entry(entry_id="ent 00000001"), MalformedError),
    ("entry-id-oversized", _entry(entry_id="e" * 65), OversizedError),
    ("owner-upper-case", _entry(owner="Chain-A"), MalformedError),
    ("owner-oversized", _entry(owner="a" * 64), OversizedError),
    ("category-free-text", _entry(category="Shoplifting, arrested"), MalformedError),
    (
        "evidence-narrative",
        _entry(evidence={"kind": "police-report", "reference": "arrested on 1 Nov"}),
        MalformedError,
    ),
    (
        "evidence-extra-field",
        _entry(evidence={"kind": "police-report", "reference": "R-1", "note": "x"}),
        MalformedError,
    ),
    ("evidence-not-object", _entry(evidence="police-report"), MalformedError),
    ("incident-date-format", _entry(incident_date="2026/10/30"), MalformedError),
    ("incident-date-impossible", _entry(incident_date="2026-02-30"), MalformedError),
    ("time-without-zone", _entry(registered_at="2026-11-01T09:00:00"), MalformedError),
    ("time-with-fraction", _entry(registered_at="2026-11-01T09:00:00.5Z"), MalformedError),
    ("expires-before-registered", _entry(expires_at="2026-10-01T09:00:00Z"), MalformedError),
    ("expires-equals-registered", _entry(expires_at="2026-11-01T09:00:00Z"), MalformedError),
    ("same-registrar-and-officer", _entry(officer="acct-registrar"), MalformedError),
    ("commitment-short", _entry(embedding_commitment=b64url_encode(bytes(31))), MalformedError),
    ("commitment-padded", _entry(embedding_commitment=b64url_encode(bytes(32)) + "="), MalformedError),
    ("commitment-std-alphabet", _entry(embedding_commitment="+" * 43), MalformedError),
    ("commitment-oversized", _entry(embedding_commitment="A" * 100_000), OversizedError),
    ("model-id-oversized", _entry(model_id="m" * 129), OversizedError),
    ("local-embedding-sent", _entry(embedding=embedding(1).to_str()), MalformedError),
    ("local-salt-sent", _entry(embedding_salt=b64url_encode(bytes(32))), MalformedError),
]


@pytest.mark.parametrize(("data", "error"), [c[1:] for c in ENTRY_INVALID], ids=[c[0] for c in ENTRY_INVALID])
def test_entry_invalid_inputs(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        WatchlistEntry.from_dict(data)


def test_entry_refuses_times_the_wire_cannot_carry() -> None:
    with pytest.raises(MalformedError):
        make_entry(registered_at=T0, expires_at=T0 + timedelta(milliseconds=500))


def test_entry_parse_from_bytes_refuses_malformed_json() -> None:
    for raw in (b"{", b'{"type": "watchlist-entry", "type": "x"}', b"\xff", b"[NaN]"):
        with pytest.raises(MalformedError):
            SignedDocument.from_bytes(raw, WatchlistEntry)


# Embedding


magnitudes = st.just(0.0) | st.floats(1e-100, 1e100) | st.floats(-1e100, -1e-100)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(magnitudes, min_size=1, max_size=600))
def test_embedding_from_any_nonzero_vector_is_unit_and_round_trips(values: list[float]) -> None:
    vector = np.asarray(values)
    if not np.any(vector):
        with pytest.raises(MalformedError, match="zero vector"):
            Embedding.from_vector(vector)
        return
    e = Embedding.from_vector(vector)
    assert e.dimension == len(values)
    assert abs(float(np.linalg.norm(e.vector.astype(np.float64))) - 1.0) < 1e-3
    again = Embedding.from_str(e.to_str(), dimension=len(values))
    assert again == e and hash(again) == hash(e)
    assert again.raw == e.raw
    assert abs(e.similarity(again) - 1.0) < 1e-3


@settings(max_examples=100, deadline=None)
@given(a=embeddings(dimension=32), b=embeddings(dimension=32))
def test_similarity_is_symmetric_and_bounded(a: Embedding, b: Embedding) -> None:
    s = a.similarity(b)
    assert s == pytest.approx(b.similarity(a))
    assert -1.001 <= s <= 1.001


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_embedding_from_vector_scale_invariant(scale: float) -> None:
    assert Embedding.from_vector([3.0 * scale, 4.0 * scale]) == Embedding.from_vector([3.0, 4.0])


def _floats(*values: float) -> str:
    return b64url_encode(struct.pack(f"<{len(values)}f", *values))


EMBEDDING_INVALID: list[tuple[str, Any, int | None, type[Exception]]] = [
    ("not-a-string", 12, None, MalformedError),
    ("empty", "", None, MalformedError),
    ("not-base64", "not base64!", None, MalformedError),
    ("padded", embedding(1, 3).to_str() + "=", None, MalformedError),
    ("not-float32-multiple", b64url_encode(b"\x00\x00\x80"), None, MalformedError),
    ("not-normalised", _floats(1.0, 1.0), None, MalformedError),
    ("nearly-normalised", _floats(1.01, 0.0), None, MalformedError),
    ("zero-vector", _floats(0.0, 0.0), None, MalformedError),
    ("nan", _floats(float("nan"), 1.0), None, MalformedError),
    ("infinity", _floats(float("inf"), 0.0), None, MalformedError),
    ("wrong-dimension", embedding(1, 128).to_str(), 512, MalformedError),
    ("too-long", b64url_encode(bytes(4 * (MAX_DIMENSION + 1))), None, MalformedError),
]


@pytest.mark.parametrize(
    ("text", "dimension", "error"), [c[1:] for c in EMBEDDING_INVALID], ids=[c[0] for c in EMBEDDING_INVALID]
)
def test_embedding_invalid_inputs(text: Any, dimension: int | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        Embedding.from_str(text, dimension=dimension)


def test_embedding_edges() -> None:
    assert Embedding.from_str(_floats(1.0)).dimension == 1
    assert Embedding.from_str(_floats(1.0005, 0.0)).dimension == 2
    with pytest.raises(MalformedError, match="NaN"):
        Embedding.from_vector([1.0, float("nan")])
    with pytest.raises(MalformedError, match="dimension 128 does not match 512"):
        embedding(1).similarity(embedding(1, 128))
    e = embedding(5)
    assert repr(e) == "Embedding(dimension=512)"
    assert e != e.raw


def test_entry_commitment_is_over_the_raw_embedding() -> None:
    entry = make_entry()
    assert entry.embedding is not None and entry.embedding_salt is not None
    assert entry.embedding_commitment == commit(entry.embedding_salt, entry.embedding.raw)
    assert make_entry().embedding_commitment != entry.embedding_commitment
    assert make_entry(registered_at=T0).registered_at == T0
