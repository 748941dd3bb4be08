"""Canonical encoding and strict parsing: properties and refusals."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.canonical import b64url_decode, b64url_encode, canonical_bytes, parse_json
from protocol.errors import MalformedError, OversizedError
from protocol.fields import MAX_SAFE_INT, format_duration, parse_duration

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=("Cs",))), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_canonical_round_trip_is_stable(value: object) -> None:
    first = canonical_bytes(value)
    assert canonical_bytes(parse_json(first)) == first


@given(st.dictionaries(st.text(max_size=8), st.integers(-1000, 1000), max_size=8))
def test_key_order_does_not_change_bytes(d: dict[str, int]) -> None:
    reversed_d = dict(reversed(list(d.items())))
    assert canonical_bytes(d) == canonical_bytes(reversed_d)


@given(st.binary(max_size=200))
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (b'{"a": 1, "a": 2}', MalformedError),
        (b'{"a": NaN}', MalformedError),
        (b'{"a": Infinity}', MalformedError),
        (b'{"a": 1', MalformedError),
        (b"\xff\xfe", MalformedError),
        (b'"\\ud800"', MalformedError),
        (b"[" * 40 + b"]" * 40, MalformedError),
        (b" " * (1 << 20) + b"1", OversizedError),
    ],
    ids=[
        "duplicate-key",
        "nan",
        "infinity",
        "truncated",
        "not-utf8",
        "lone-surrogate",
        "too-deep",
        "oversized",
    ],
)
def test_parse_refuses(document: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_json(document)


@pytest.mark.parametrize(
    ("text", "length"),
    [("AA==", None), ("A+8", None), ("A/8", None), ("A", None), ("AAB", None), ("AAAA", 4), ("a b", None)],
    ids=["padded", "plus", "slash", "one-char", "non-canonical-tail", "wrong-length", "space"],
)
def test_b64url_refuses(text: str, length: int | None) -> None:
    with pytest.raises(MalformedError):
        b64url_decode(text, length=length)


def test_canonical_refuses_integers_beyond_ijson() -> None:
    with pytest.raises(MalformedError):
        canonical_bytes({"n": 2**60})


def test_canonical_differs_from_json_dumps() -> None:
    value = {"b": 1, "a": "é", "c": 1.0}
    assert canonical_bytes(value) == b'{"a":"\xc3\xa9","b":1,"c":1}'
    assert canonical_bytes(value) != json.dumps(value).encode()


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60), ("5m", 300), ("24h", 86400), ("30d", 2592000)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize("text", ["60", "-5s", "1w", "1.5h", "", 60])
def test_duration_refuses(text: object) -> None:
    with pytest.raises(MalformedError):
        parse_duration(text)


@pytest.mark.parametrize("year", [1, 999, 2026, 9999])
def test_times_of_any_year_round_trip(year: int) -> None:
    from datetime import UTC, datetime

    from protocol.fields import format_time, parse_time

    t = datetime(year, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert parse_time(format_time(t)) == t
