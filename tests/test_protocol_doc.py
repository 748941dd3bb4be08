"""docs/protocol.md shows every signed format, and each example is exactly its test vector."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vectors import builders
from tests.vectors.generate import BEGIN, DOCS, END, render

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"


@pytest.mark.parametrize("name", sorted(builders.VECTORS))
def test_doc_example_is_the_vector(name: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    begin, end = BEGIN.format(name=name), END.format(name=name)
    assert begin in text, f"docs/protocol.md has no example for {name}"
    block = text.split(begin, 1)[1].split(end, 1)[0]
    expected = f"\n```json\n{(VECTORS / f'{name}.json').read_text(encoding='utf-8')}```\n"
    assert block == expected, "run: python tests/vectors/generate.py --docs"
    assert block == f"\n```json\n{render(builders.VECTORS[name]())}```\n"
