"""Plain-mode queries and answers: hard limits on the request, answers that cannot name too much."""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import b64url_encode, canonical_bytes, parse_json
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError, OversizedError
from protocol.query import MAX_QUERY_EMBEDDINGS, QueryMatch, QueryRequest, QueryResponse
from protocol.signed import SignedDocument
from tests.factories import NODE_A_SIGNING, embedding, make_entry, signed_entry
from tests.test_entry import (
    assert_any_byte_change_fails,
    embeddings,
    entries,
    ids,
    model_ids,
    node_ids,
    sign,
    unknown_fields,
)

MODEL = "buffalo_s/w600k_mbf"


@st.composite
def requests(draw: st.DrawFn) -> QueryRequest:
    dimension = draw(st.sampled_from([1, 3, 16, 128, 512]))
    count = draw(st.integers(1, MAX_QUERY_EMBEDDINGS))
    return QueryRequest(
        query_id=draw(ids),
        model_id=draw(model_ids),
        embeddings=draw(st.lists(embeddings(dimension=dimension), min_size=count, max_size=count)),
    )


scores = st.floats(-1.0, 1.0, allow_nan=False)


@st.composite
def responses(draw: st.DrawFn) -> QueryResponse:
    responder = draw(node_ids)
    threshold = draw(scores)
    count = draw(st.integers(0, 4))
    matches = []
    for i in range(count):
        entry = replace(draw(entries(owner=responder)), entry_id=f"ent-{i:08d}")
        matches.append(
            QueryMatch(
                query_index=draw(st.integers(0, MAX_QUERY_EMBEDDINGS - 1)),
                band=draw(st.sampled_from(["match", "strong"])),
                entry=sign(entry),
            )
        )
    return QueryResponse(query_id=draw(ids), responder=responder, threshold=threshold, matches=matches)


def request(count: int = 2) -> QueryRequest:
    return QueryRequest(
        query_id="qry-00000001", model_id=MODEL, embeddings=[embedding(i) for i in range(count)]
    )


def response(**overrides: Any) -> QueryResponse:
    fields: dict[str, Any] = {
        "query_id": "qry-00000001",
        "responder": "chain-a",
        "threshold": 0.45,
        "matches": [QueryMatch(query_index=1, band="strong", entry=signed_entry())],
    }
    fields.update(overrides)
    return QueryResponse(**fields)


@settings(max_examples=60, deadline=None)
@given(r=requests())
def test_request_round_trip_is_exact(r: QueryRequest) -> None:
    wire = canonical_bytes(r.to_dict())
    again = QueryRequest.from_dict(parse_json(wire))
    assert again == r
    assert canonical_bytes(again.to_dict()) == wire
    assert again.dimension == r.embeddings[0].dimension


@settings(max_examples=80, deadline=None)
@given(r=responses())
def test_response_round_trip_is_exact(r: QueryResponse) -> None:
    wire = canonical_bytes(r.to_dict())
    again = QueryResponse.from_dict(parse_json(wire))
    assert canonical_bytes(again.to_dict()) == wire
    assert [m.band for m in again.matches] == [m.band for m in r.matches]
    for m in again.matches:
        assert isinstance(m.entry.payload, WatchlistEntry)
        m.entry.verify([NODE_A_SIGNING.public])


@settings(max_examples=60, deadline=None)
@given(
    which=st.sampled_from(["request", "response"]),
    extra=unknown_fields(set(request().to_dict()) | set(response().to_dict())),
)
def test_unknown_fields_survive_byte_for_byte(which: str, extra: dict[str, Any]) -> None:
    payload_type: type[QueryRequest] | type[QueryResponse] = (
        QueryRequest if which == "request" else QueryResponse
    )
    d = {**(request() if which == "request" else response()).to_dict(), **extra}
    parsed = payload_type.from_dict(parse_json(canonical_bytes(d)))
    assert parsed.unrecognized_fields == extra
    assert canonical_bytes(parsed.to_dict()) == canonical_bytes(d)


@settings(max_examples=150, deadline=None)
@given(which=st.sampled_from(["request", "response"]), data=st.data())
def test_any_single_byte_change_fails(which: str, data: st.DataObject) -> None:
    payload = request() if which == "request" else response()
    assert_any_byte_change_fails(sign(payload), NODE_A_SIGNING, data)


def test_answer_is_checked_against_its_request() -> None:
    resp = response()
    resp.check_against(request())
    with pytest.raises(MalformedError, match="query_index 1 but the request had 1 embeddings"):
        resp.check_against(request(count=1))
    with pytest.raises(MalformedError, match="answers no request"):
        resp.check_against(replace(request(), query_id="qry-99999999"))
    with pytest.raises(MalformedError, match="made with model"):
        resp.check_against(replace(request(), model_id="other-model"))
    empty = response(matches=[])
    empty.check_against(request(count=1))


def test_request_dimension_is_pinned_by_the_caller() -> None:
    request().check_dimension(512)
    with pytest.raises(MalformedError, match="dimension 512, the model 'buffalo_s/w600k_mbf' makes 128"):
        request().check_dimension(128)


def test_match_limits_on_direct_construction() -> None:
    with pytest.raises(MalformedError, match="query_index"):
        QueryMatch(query_index=MAX_QUERY_EMBEDDINGS, band="match", entry=signed_entry())
    with pytest.raises(MalformedError, match="band"):
        QueryMatch(query_index=0, band="0.8125", entry=signed_entry())
    with pytest.raises(MalformedError, match="band"):
        QueryMatch(query_index=0, band="exact", entry=signed_entry())
    with pytest.raises(MalformedError, match="threshold"):
        response(threshold=float("nan"))
    with pytest.raises(MalformedError, match="65 items"):
        QueryRequest(query_id="qry-00000001", model_id=MODEL, embeddings=[embedding(0)] * 65)
    with pytest.raises(MalformedError, match="0 items"):
        QueryRequest(query_id="qry-00000001", model_id=MODEL, embeddings=[])


def test_exactly_the_hard_limit_is_accepted() -> None:
    full = QueryRequest(
        query_id="qry-00000001",
        model_id=MODEL,
        embeddings=[embedding(i, 8) for i in range(MAX_QUERY_EMBEDDINGS)],
    )
    assert QueryRequest.from_dict(full.to_dict()) == full


def _request(**overrides: Any) -> dict[str, Any]:
    d = request().to_dict()
    d.update(overrides)
    return d


def _response(**overrides: Any) -> dict[str, Any]:
    d = response().to_dict()
    d.update(overrides)
    return d


def _match(**overrides: Any) -> dict[str, Any]:
    m = response().matches[0].to_dict()
    m.update(overrides)
    return _response(matches=[m])


def _without(d: dict[str, Any], name: str) -> dict[str, Any]:
    d = dict(d)
    del d[name]
    return d


SECOND = signed_entry(entry_id="ent-00000002").to_dict()
UNNORMALISED = b64url_encode(struct.pack("<2f", 1.0, 1.0))

REQUEST_INVALID: list[tuple[str, Any, type[Exception]]] = [
    ("not-an-object", "query", MalformedError),
    ("wrong-type-tag", _request(type="query-response"), MalformedError),
    ("other-major-version", _request(spec_version="3.0"), MalformedError),
    ("missing-query-id", _without(_request(), "query_id"), MalformedError),
    ("missing-model-id", _without(_request(), "model_id"), MalformedError),
    ("missing-embeddings", _without(_request(), "embeddings"), MalformedError),
    ("query-id-bad", _request(query_id="q 1"), MalformedError),
    ("query-id-oversized", _request(query_id="q" * 65), OversizedError),
    ("model-id-oversized", _request(model_id="m" * 129), OversizedError),
    ("model-id-number", _request(model_id=7), MalformedError),
    ("embeddings-not-array", _request(embeddings=embedding(1).to_str()), MalformedError),
    ("no-embeddings", _request(embeddings=[]), MalformedError),
    ("too-many-embeddings", _request(embeddings=[embedding(1, 8).to_str()] * 65), OversizedError),
    ("embedding-not-string", _request(embeddings=[[0.6, 0.8]]), MalformedError),
    ("embedding-not-base64", _request(embeddings=["not base64!"]), MalformedError),
    ("embedding-not-normalised", _request(embeddings=[UNNORMALISED]), MalformedError),
    ("embedding-not-float32", _request(embeddings=[b64url_encode(b"\x00" * 6)]), MalformedError),
    (
        "mixed-dimensions",
        _request(embeddings=[embedding(1).to_str(), embedding(2, 128).to_str()]),
        MalformedError,
    ),
    ("embedding-oversized", _request(embeddings=["A" * 30_000]), MalformedError),
]

RESPONSE_INVALID: list[tuple[str, Any, type[Exception]]] = [
    ("not-an-object", [], MalformedError),
    ("wrong-type-tag", _response(type="query-request"), MalformedError),
    ("missing-matches", _without(_response(), "matches"), MalformedError),
    ("missing-threshold", _without(_response(), "threshold"), MalformedError),
    ("responder-bad", _response(responder="Chain-A"), MalformedError),
    ("threshold-string", _response(threshold="0.45"), MalformedError),
    ("threshold-above-one", _response(threshold=1.5), MalformedError),
    ("threshold-bool", _response(threshold=True), MalformedError),
    ("entry-of-another-owner", _response(responder="chain-b"), MalformedError),
    ("matches-not-array", _response(matches={}), MalformedError),
    ("too-many-matches", _response(matches=[response().matches[0].to_dict()] * 257), OversizedError),
    ("match-not-object", _response(matches=[1]), MalformedError),
    ("match-missing-entry", _response(matches=[{"query_index": 0, "band": "match"}]), MalformedError),
    ("match-index-negative", _match(query_index=-1), MalformedError),
    ("match-index-beyond-limit", _match(query_index=64), MalformedError),
    ("match-index-float", _match(query_index=1.0), MalformedError),
    ("match-band-number", _match(band=0.9), MalformedError),
    ("match-band-unknown", _match(band="exact"), MalformedError),
    ("match-unknown-field", _match(score=0.99), MalformedError),
    ("match-band-missing", {**_response(), "matches": [{"query_index": 0, "entry": SECOND}]}, MalformedError),
    ("match-entry-unsigned", _match(entry=make_entry().to_dict()), MalformedError),
    (
        "match-entry-with-embedding",
        _match(entry={**SECOND, "signed": {**SECOND["signed"], "embedding": "AAAA"}}),
        MalformedError,
    ),
    (
        "same-entry-twice",
        _response(matches=[response().matches[0].to_dict(), response().matches[0].to_dict()]),
        MalformedError,
    ),
]


@pytest.mark.parametrize(
    ("data", "error"), [c[1:] for c in REQUEST_INVALID], ids=[c[0] for c in REQUEST_INVALID]
)
def test_request_invalid_inputs(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        QueryRequest.from_dict(data)


@pytest.mark.parametrize(
    ("data", "error"), [c[1:] for c in RESPONSE_INVALID], ids=[c[0] for c in RESPONSE_INVALID]
)
def test_response_invalid_inputs(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        QueryResponse.from_dict(data)


def test_second_distinct_match_is_fine() -> None:
    two = _response(
        matches=[response().matches[0].to_dict(), {"query_index": 1, "band": "match", "entry": SECOND}]
    )
    parsed = QueryResponse.from_dict(two)
    assert [m.entry.payload.entry_id for m in parsed.matches] == ["ent-00000001", "ent-00000002"]
    assert isinstance(parsed.matches[1].entry, SignedDocument)
