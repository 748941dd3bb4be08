"""The TUF-style signed envelope: thresholds, diagnostics, unknown fields, tampering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import canonical_bytes, parse_json
from protocol.entry import WatchlistEntry
from protocol.errors import MalformedError, SignatureError, ThresholdError, WatchnetError
from protocol.keys import SigningKey
from protocol.signed import SignedDocument
from tests.factories import KEYS, make_entry


def signed_by(*keys: SigningKey) -> SignedDocument[WatchlistEntry]:
    doc = SignedDocument(make_entry())
    for key in keys:
        doc.sign(key)
    return doc


def test_threshold_met_and_not_met() -> None:
    doc = signed_by(KEYS[0], KEYS[1])
    assert doc.verify([k.public for k in KEYS], threshold=2).verified
    with pytest.raises(ThresholdError, match="signed by 2/3 keys, threshold 3"):
        doc.verify([k.public for k in KEYS], threshold=3)


def test_unknown_and_invalid_signatures_do_not_count() -> None:
    doc = signed_by(KEYS[0], KEYS[2])
    forged = SignedDocument(make_entry(version=2))
    forged.sign(KEYS[1])
    doc.signatures[KEYS[1].keyid] = forged.signatures[KEYS[1].keyid]
    result = doc.verification_result([KEYS[0].public, KEYS[1].public], threshold=2)
    assert result.signed == {KEYS[0].keyid}
    assert result.invalid == {KEYS[1].keyid}
    assert result.unknown == {KEYS[2].keyid}
    assert not result.verified
    assert "signed by 1/2 keys" in str(result) and "1 invalid" in str(result)


def test_key_map_must_match_key_ids() -> None:
    with pytest.raises(SignatureError):
        signed_by(KEYS[0]).verify({KEYS[1].keyid: KEYS[0].public})


def test_duplicate_signature_is_malformed() -> None:
    d = signed_by(KEYS[0]).to_dict()
    d["signatures"].append(dict(d["signatures"][0]))
    with pytest.raises(MalformedError, match="two signatures"):
        SignedDocument.from_dict(d, WatchlistEntry)


def test_unknown_fields_survive_and_stay_signed() -> None:
    d = signed_by(KEYS[0]).to_dict()
    d["signed"]["x_future"] = {"nested": [1, "two"]}
    d["x_envelope"] = "kept"
    resigned = SignedDocument.from_dict(d, WatchlistEntry)
    resigned.signatures.clear()
    resigned.sign(KEYS[0])
    wire = resigned.to_bytes()
    parsed = SignedDocument.from_bytes(wire, WatchlistEntry)
    assert parsed.to_bytes() == wire
    assert parsed.payload.unrecognized_fields == {"x_future": {"nested": [1, "two"]}}
    parsed.verify([KEYS[0].public])
    parsed.payload.unrecognized_fields["x_future"] = "changed"
    with pytest.raises(ThresholdError):
        parsed.verify([KEYS[0].public])


def test_local_fields_are_never_signed_or_sent() -> None:
    doc = signed_by(KEYS[0])
    assert doc.payload.embedding is not None
    assert b"embedding_salt" not in doc.to_bytes()
    assert doc.payload.embedding.to_str().encode() not in doc.to_bytes()
    d = doc.to_dict()
    d["signed"]["embedding"] = doc.payload.embedding.to_str()
    with pytest.raises(MalformedError, match="local field"):
        SignedDocument.from_dict(d, WatchlistEntry)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_single_byte_change_fails(data: st.DataObject) -> None:
    doc = signed_by(KEYS[0])
    wire = bytearray(doc.to_bytes())
    position = data.draw(st.integers(0, len(wire) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != wire[position]))
    wire[position] = replacement
    with pytest.raises(WatchnetError):
        tampered = SignedDocument.from_bytes(bytes(wire), WatchlistEntry)
        tampered.verify([KEYS[0].public])


def test_verification_covers_canonical_form_not_wire_form() -> None:
    doc = signed_by(KEYS[0])
    pretty = b"\n  " + canonical_bytes(parse_json(doc.to_bytes())).replace(b",", b", ")
    SignedDocument.from_bytes(pretty, WatchlistEntry).verify([KEYS[0].public])
