"""Regenerate the signed-format test vectors in tests/vectors/ from fixed seeds and a fixed clock.

Run ``python tests/vectors/generate.py`` after an intentional format change, review the diff,
and update docs/protocol.md with ``--docs``. ``tests/test_vectors.py`` fails if the files and
what this script produces ever differ, so a format cannot change by accident.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from tests.vectors import builders  # noqa: E402

DOCS = ROOT / "docs" / "protocol.md"
BEGIN = "<!-- vector:{name} -->"
END = "<!-- /vector:{name} -->"


def render(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def all_vectors() -> dict[str, Any]:
    makers: dict[str, Callable[[], Any]] = builders.VECTORS
    return {name: make() for name, make in makers.items()}


def docs_with_vectors(text: str, vectors: dict[str, Any]) -> str:
    for name, value in vectors.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        if begin not in text:
            continue
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n```json\n{render(value)}```\n{end}{tail}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", action="store_true", help="also rewrite the examples in docs/protocol.md")
    args = parser.parse_args()
    vectors = all_vectors()
    for name, value in vectors.items():
        (HERE / f"{name}.json").write_text(render(value), encoding="utf-8")
        print(f"wrote tests/vectors/{name}.json")
    if args.docs:
        DOCS.write_text(docs_with_vectors(DOCS.read_text(encoding="utf-8"), vectors), encoding="utf-8")
        print("updated docs/protocol.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
