"""docs/protocol.md's list of stable error codes names every code the node, the organisation's
server and the pure layers can put on the wire.

The codes are found in the source, not in a list kept by hand: a typed error's ``code`` class
attribute, a literal ``{"error": "..."}`` answer, a peer outcome's ``error="..."``, a pre-built
answer body and the last-resort codes of ``node.app.last_resort``. A code added anywhere without
its line in the spec fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from node.app.last_resort import MESSAGES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "governance", "node")
SECTION = "## Error codes"
CODE = re.compile(r"[a-z][a-z0-9_]*[a-z0-9]")
BODY_CODE = re.compile(rb'\{"error":\s*"([a-z_]+)"')


def _codes_in(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                target = value = None
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                    target, value = statement.targets[0], statement.value
                elif isinstance(statement, ast.AnnAssign):
                    target, value = statement.target, statement.value
                if (
                    isinstance(target, ast.Name)
                    and target.id == "code"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    found.add(value.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "error"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    found.add(value.value)
        elif isinstance(node, ast.keyword) and node.arg == "error" and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                found.add(node.value.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            found.update(m.decode() for m in BODY_CODE.findall(node.value))
    return found


def codes_in_source() -> dict[str, set[str]]:
    """Every wire error code, with the files that use it."""
    where: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for code in _codes_in(ast.parse(path.read_text(encoding="utf-8"))):
                where.setdefault(code, set()).add(str(path.relative_to(ROOT)))
    for code in MESSAGES:
        where.setdefault(code, set()).add("node/app/last_resort.py")
    return where


def documented_codes() -> set[str]:
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert SECTION in text, f"docs/protocol.md has no '{SECTION}' section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return {c for c in re.findall(r"`([^`]+)`", section) if CODE.fullmatch(c)}


def test_the_scan_finds_the_codes_it_must() -> None:
    """The scan itself works: codes of each kind of source are found."""
    found = codes_in_source()
    for code in (
        "malformed",
        "not_a_member",
        "unknown_eval_key",
        "empty_log",
        "circuit_open",
        "too_many_connections",
        "database_unavailable",
        "internal",
        "deletion_pending",
    ):
        assert code in found, code


def test_every_code_in_use_is_in_the_stable_list() -> None:
    missing = {
        code: sorted(files) for code, files in codes_in_source().items() if code not in documented_codes()
    }
    assert not missing, f"error codes used but not listed in docs/protocol.md '{SECTION}': {missing}"
