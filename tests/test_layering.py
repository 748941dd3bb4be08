"""The architecture, enforced: pure layers stay pure, node/'s subpackages import one way only
(the map in docs/architecture.md), no import circle anywhere, and the CLI's parser loads none of
the heavy libraries its commands use."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "aiohttp",
    "sqlmodel",
    "sqlalchemy",
    "faiss",
    "onnxruntime",
    "insightface",
    "node",
    "alembic",
    "tenseal",
}
PURE_FILES = sorted(p for layer in ("protocol", "governance") for p in (ROOT / layer).rglob("*.py"))
PURE_EXCEPTIONS = {"protocol/he.py": {"tenseal"}}
"""The CKKS arithmetic itself needs SEAL; everything else in protocol/ (he_params.py included) is pure."""

NODE_LAYERS: list[set[str]] = [
    {"cli"},
    {"demo"},
    {"camera"},
    {"app"},
    {"org"},
    {"console"},
    {"http"},
    {"private"},
    {"federation"},
    {"context"},
    {"casework", "reporting"},
    {"records"},
    {"face", "migrations", "telemetry"},
    {"storage"},
    {"clock", "code_labels", "config", "files", "jsonlog", "local_time", "scrub"},
]
"""Top to bottom: a unit may import its own modules and any unit below it, never one above it or
beside it. Keep in step with the diagram in docs/architecture.md."""

LAYER_OF = {unit: i for i, units in enumerate(NODE_LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function, resolved to a module
    of this project where it names one (``from node.cli import face`` is ``node.cli.face``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in MODULES else module)
    return found


PROJECT_FILES = sorted(
    p for layer in ("node", "protocol", "governance") for p in (ROOT / layer).rglob("*.py")
)
MODULES = {module_name(p): p for p in PROJECT_FILES}


def imported_roots(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imports_of(path)}


def node_unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "node" and len(parts) > 1 else None


def test_pure_layers_exist() -> None:
    assert len(PURE_FILES) >= 5


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_io_imports(path: Path) -> None:
    allowed = PURE_EXCEPTIONS.get(str(path.relative_to(ROOT)), set())
    bad = (imported_roots(path) & FORBIDDEN) - allowed
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_governance_does_not_import_node_and_protocol_does_not_import_governance() -> None:
    for path in (ROOT / "protocol").rglob("*.py"):
        assert "governance" not in imported_roots(path), path


def test_every_node_unit_has_a_layer() -> None:
    units = {node_unit(m) for m in MODULES if node_unit(m)}
    assert units <= set(LAYER_OF), f"give these a layer in NODE_LAYERS: {sorted(units - set(LAYER_OF))}"


@pytest.mark.parametrize(
    "path",
    [p for p in PROJECT_FILES if p.parts[len(ROOT.parts)] == "node"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_node_imports_run_one_way(path: Path) -> None:
    unit = node_unit(module_name(path))
    if unit is None:
        return
    wrong = sorted(
        target
        for target in imports_of(path)
        if (other := node_unit(target)) is not None and other != unit and LAYER_OF[other] <= LAYER_OF[unit]
    )
    assert not wrong, (
        f"{path.relative_to(ROOT)} ({unit}) imports {wrong}: upward or sideways (docs/architecture.md)"
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles_in_node_protocol_or_governance() -> None:
    graph = {
        name: {t for t in imports_of(path) if t in MODULES and t != name} for name, path in MODULES.items()
    }
    # a package's __init__ is imported on the way to any of its modules; it holds no imports of its own
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


HEAVY = [
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "argon2",
    "faiss",
    "onnxruntime",
    "cv2",
    "tenseal",
    "matplotlib",
    "aiohttp",
]


def test_help_of_every_command_imports_no_heavy_library() -> None:
    """``watchnet --help`` and ``watchnet COMMAND [SUBCOMMAND] --help`` build the parser only."""
    script = f"""
import argparse, contextlib, io, json, sys
from node.cli.main import build_parser
parser = build_parser()
def paths(p, prefix):
    yield prefix
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from paths(sub, [*prefix, name])
helped = []
for path in paths(parser, []):
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        build_parser().parse_args([*path, "--help"])
    assert "usage: watchnet" in out.getvalue(), path
    helped.append(" ".join(path))
print(json.dumps({{"helped": helped, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert len(result["helped"]) > 30, result["helped"]
    assert result["loaded"] == [], f"the CLI's help imported {result['loaded']}"
