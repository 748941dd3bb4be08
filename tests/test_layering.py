"""The pure layers stay pure: protocol/ and governance/ import no I/O frameworks and no node code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"aiohttp", "sqlmodel", "sqlalchemy", "faiss", "onnxruntime", "insightface", "node", "alembic"}
PURE_FILES = sorted(p for layer in ("protocol", "governance") for p in (ROOT / layer).rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_pure_layers_exist() -> None:
    assert len(PURE_FILES) >= 5


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_io_imports(path: Path) -> None:
    bad = imported_roots(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_governance_does_not_import_node_and_protocol_does_not_import_governance() -> None:
    for path in (ROOT / "protocol").rglob("*.py"):
        assert "governance" not in imported_roots(path), path
