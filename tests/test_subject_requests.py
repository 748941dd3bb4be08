"""Data-subject request rules (outcomes, legal grounds) and the forwarded-request format."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.requests import (
    RefusalGround,
    RequestKind,
    RequestOutcome,
    RequestRefused,
    check_outcome,
)
from protocol.canonical import canonical_bytes, parse_json
from protocol.errors import MalformedError
from protocol.subject import FORWARDABLE_KINDS, ForwardAck, ForwardedRequest

ids = st.from_regex(r"[a-z]{3}-[0-9a-f]{8,20}", fullmatch=True)
nodes = st.from_regex(r"[a-z][a-z0-9-]{2,20}", fullmatch=True)


@pytest.mark.parametrize("kind", list(RequestKind))
def test_every_kind_may_be_withdrawn_refused_with_a_ground_or_found_empty(kind: RequestKind) -> None:
    check_outcome(kind, RequestOutcome.WITHDRAWN, None)
    check_outcome(kind, RequestOutcome.NOTHING_HELD, None)
    check_outcome(kind, RequestOutcome.REFUSED, RefusalGround.ORDER_5_IV)


def test_a_disclosure_is_disclosed_not_granted_and_the_others_the_reverse() -> None:
    check_outcome(RequestKind.DISCLOSURE, RequestOutcome.DISCLOSED, None)
    with pytest.raises(RequestRefused, match="ends as one of"):
        check_outcome(RequestKind.DISCLOSURE, RequestOutcome.GRANTED, None)
    for kind in (RequestKind.CORRECTION, RequestKind.DELETION, RequestKind.CEASE_OF_USE):
        check_outcome(kind, RequestOutcome.GRANTED, None)
        with pytest.raises(RequestRefused):
            check_outcome(kind, RequestOutcome.DISCLOSED, None)


def test_a_refusal_needs_a_ground_and_only_a_refusal_has_one() -> None:
    with pytest.raises(RequestRefused, match="legal ground"):
        check_outcome(RequestKind.DISCLOSURE, RequestOutcome.REFUSED, None)
    with pytest.raises(RequestRefused, match="only with the outcome 'refused'"):
        check_outcome(RequestKind.DISCLOSURE, RequestOutcome.DISCLOSED, RefusalGround.ORDER_5_II)


@pytest.mark.parametrize("ground", [RefusalGround.ART_33_2_I, RefusalGround.ART_33_2_II, RefusalGround.ART_33_2_III])
def test_article_33_2_grounds_refuse_only_a_disclosure(ground: RefusalGround) -> None:
    check_outcome(RequestKind.DISCLOSURE, RequestOutcome.REFUSED, ground)
    with pytest.raises(RequestRefused, match=r"Art\. 33-2"):
        check_outcome(RequestKind.DELETION, RequestOutcome.REFUSED, ground)


def test_every_ground_names_its_article_in_japanese_and_english() -> None:
    for ground in RefusalGround:
        text = ground.text
        assert text["article"].startswith(("施行令第5条", "法第33条第2項"))
        assert text["ja"] and text["en"]


@given(
    origin=nodes,
    request_id=ids,
    kind=st.sampled_from(sorted(FORWARDABLE_KINDS)),
    entry_id=ids,
    version=st.integers(1, 2**53 - 1),
    extra=st.dictionaries(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8), max_size=2),
)
def test_a_forward_round_trips_and_keeps_unknown_fields(
    origin: str, request_id: str, kind: str, entry_id: str, version: int, extra: dict[str, Any]
) -> None:
    forward = ForwardedRequest(
        origin=origin,
        request_id=request_id,
        kind=kind,
        entry_id=entry_id,
        entry_version=version,
        identity_check="passport",
        unrecognized_fields=extra,
    )
    data = parse_json(canonical_bytes(forward.to_dict()))
    again = ForwardedRequest.from_dict(data)
    assert again == forward and canonical_bytes(again.to_dict()) == canonical_bytes(forward.to_dict())
    ack = ForwardAck(request_id=request_id, owner_request_id=entry_id)
    assert ForwardAck.from_dict(parse_json(canonical_bytes(ack.to_dict()))) == ack


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "disclosure"},
        {"kind": "marketing"},
        {"origin": "Chain A"},
        {"entry_id": "../etc"},
        {"entry_version": 0},
        {"identity_check": "My Number 1234"},
    ],
)
def test_a_malformed_forward_is_refused(change: dict[str, Any]) -> None:
    good = ForwardedRequest(
        origin="chain-b",
        request_id="req-00000001",
        kind="deletion",
        entry_id="ent-00000001",
        entry_version=1,
        identity_check="passport",
    ).to_dict()
    with pytest.raises(MalformedError):
        ForwardedRequest.from_dict({**good, **change})


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=10))
def test_arbitrary_json_is_refused_as_malformed_only(value: Any) -> None:
    for kind in (ForwardedRequest, ForwardAck):
        try:
            kind.from_dict(value)
        except MalformedError:
            pass
