"""RFC 6962 / RFC 9162 conformance: every case of the reference implementation's vectors.

The vectors are transparency-dev/merkle's ``testdata/`` (see tests/vectors/conformance/README.md),
copied unchanged: valid proofs must verify, every mutated proof (``wantErr``) must raise
``ProofError``. Cases are collected by path so none can be skipped, and the folder's digest is
pinned so an edited vector fails here rather than passing quietly.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Callable
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
CASES = sorted(ROOT.rglob("*.json"))
FOLDER_DIGEST = "a11246295463b385740065b187468c941edd530619b1438dfc56adb7d43afa27"
"""SHA-256 over every file's relative path and SHA-256, as copied from transparency-dev/merkle."""


def b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def proof_of(case: dict[str, Any]) -> list[bytes]:
    return [b64(p) for p in case["proof"] or []]


def run_inclusion(c: dict[str, Any]) -> None:
    verify_inclusion(b64(c["leafHash"]), c["leafIdx"], c["treeSize"], proof_of(c), b64(c["root"]))


def run_consistency(c: dict[str, Any]) -> None:
    verify_consistency(c["size1"], c["size2"], b64(c["root1"]), b64(c["root2"]), proof_of(c))


def run_subtree_inclusion(c: dict[str, Any]) -> None:
    verify_subtree_inclusion(
        b64(c["leafHash"]), c["leafIdx"], c["start"], c["end"], proof_of(c), b64(c["root"])
    )


def run_subtree_consistency(c: dict[str, Any]) -> None:
    verify_subtree_consistency(c["start"], c["end"], c["size"], b64(c["root1"]), b64(c["root2"]), proof_of(c))


KINDS: dict[str, tuple[frozenset[str], Callable[[dict[str, Any]], None]]] = {
    "inclusion": (frozenset({"leafIdx", "treeSize", "root", "leafHash", "proof"}), run_inclusion),
    "consistency": (frozenset({"size1", "size2", "root1", "root2", "proof"}), run_consistency),
    "subtreeinclusion": (
        frozenset({"leafIdx", "start", "end", "root", "leafHash", "proof"}),
        run_subtree_inclusion,
    ),
    "subtreeconsistency": (
        frozenset({"start", "end", "size", "root1", "root2", "proof"}),
        run_subtree_consistency,
    ),
}


def test_every_vector_file_is_collected() -> None:
    on_disk = [p for p in ROOT.rglob("*") if p.is_file() and p.name != "LICENSE"]
    assert len(CASES) == len(on_disk) == 518
    per_kind = Counter(p.relative_to(ROOT).parts[0] for p in CASES)
    assert set(per_kind) == set(KINDS)
    assert per_kind == {
        "inclusion": 98,
        "consistency": 98,
        "subtreeinclusion": 204,
        "subtreeconsistency": 118,
    }


def test_vectors_are_unchanged() -> None:
    digest = hashlib.sha256()
    for path in sorted(p for p in ROOT.rglob("*") if p.is_file()):
        digest.update(
            path.relative_to(ROOT).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest()
        )
    assert digest.hexdigest() == FOLDER_DIGEST
    assert "Apache License" in (ROOT / "LICENSE").read_text()


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_case(path: Path) -> None:
    kind = path.relative_to(ROOT).parts[0]
    fields, run = KINDS[kind]
    case = json.loads(path.read_text())
    assert set(case) == fields | {"desc", "wantErr"}, f"{path.name}: unexpected case format {sorted(case)}"
    if case["wantErr"]:
        with pytest.raises(ProofError):
            run(case)
    else:
        run(case)
