"""RFC 8785 conformance: the reference implementation's vectors, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.canonical import canonical_bytes, parse_json

VECTORS = Path(__file__).parent / "vectors" / "conformance" / "rfc8785"
CASES = sorted(p.name for p in (VECTORS / "input").glob("*.json"))


def test_every_vector_is_collected() -> None:
    assert len(CASES) == len(list((VECTORS / "output").glob("*.json"))) == 6


@pytest.mark.parametrize("name", CASES)
def test_canonical_output_matches_reference(name: str) -> None:
    parsed = parse_json((VECTORS / "input" / name).read_bytes())
    expected = (VECTORS / "output" / name).read_bytes()
    assert canonical_bytes(parsed) == expected


@pytest.mark.parametrize("name", CASES)
def test_hex_form_matches_output(name: str) -> None:
    hex_text = (VECTORS / "outhex" / name.replace(".json", ".txt")).read_text()
    expected = bytes.fromhex("".join(hex_text.split()))
    assert canonical_bytes(parse_json((VECTORS / "input" / name).read_bytes())) == expected


@pytest.mark.parametrize("name", CASES)
def test_canonical_is_a_fixed_point(name: str) -> None:
    once = canonical_bytes(json.loads((VECTORS / "input" / name).read_bytes()))
    assert canonical_bytes(parse_json(once)) == once
