"""RFC 6962 / RFC 9162 conformance: every case of the reference implementation's vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import ProofError
from protocol.merkle import (
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)

ROOT = Path(__file__).parent / "vectors" / "conformance" / "rfc6962"
KINDS = ("inclusion", "consistency", "subtreeinclusion", "subtreeconsistency")
CASES = sorted(p for kind in KINDS for p in (ROOT / kind).rglob("*.json"))


def b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def proof(case: dict[str, Any]) -> list[bytes]:
    return [b64(p) for p in case["proof"] or []]


def run(kind: str, case: dict[str, Any]) -> None:
    if kind == "inclusion":
        verify_inclusion(
            b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof(case), b64(case["root"])
        )
    elif kind == "consistency":
        verify_consistency(case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]), proof(case))
    elif kind == "subtreeinclusion":
        verify_subtree_inclusion(
            b64(case["leafHash"]), case["leafIdx"], case["start"], case["end"], proof(case), b64(case["root"])
        )
    else:
        verify_subtree_consistency(
            case["start"], case["end"], case["size"], b64(case["root1"]), b64(case["root2"]), proof(case)
        )


def test_all_vector_files_are_collected() -> None:
    assert len(CASES) == len(list(ROOT.rglob("*.json"))) > 400


@pytest.mark.parametrize("path", CASES, ids=lambda p: str(p.relative_to(ROOT)))
def test_case(path: Path) -> None:
    kind = path.relative_to(ROOT).parts[0]
    case = json.loads(path.read_text())
    if case["wantErr"]:
        with pytest.raises(ProofError):
            run(kind, case)
    else:
        run(kind, case)
