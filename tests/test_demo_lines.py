"""The demo's step lines as a newcomer reads them: sentences, never a Python dict or list dump.

``spoken`` is what the steps put their values through; ``DUMP`` is the shape of a ``repr`` in a
line (braces, brackets, a quoted word). ``test_demo.py`` applies the same check to every line of a
real run; the process scan is checked against a process that exits while it is scanned.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from node.demo.story import Story, process_holds, spoken

DUMP = re.compile(r"[{}\[\]]|'[\w-]+'|\"[\w-]+\"|\w+=")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"chain-a": 1, "chain-b": 1}, "chain-a 1, chain-b 1"),
        (["chain-b"], "chain-b"),
        (["chain-b", "chain-c"], "chain-b and chain-c"),
        (["chain-a", "chain-b", "chain-c"], "chain-a, chain-b and chain-c"),
        ({"chain-b", "chain-a"}, "chain-a and chain-b"),
        ({"chain-a": "unknown_peer", "chain-b": None}, "chain-a unknown_peer, chain-b none"),
        ({"chain-a": ["x", "y"]}, "chain-a x and y"),
        ([], "none"),
        ({}, "none"),
        (None, "none"),
        ("replay", "replay"),
        (3, "3"),
    ],
)
def test_values_are_spoken_without_braces_or_quotes(value: Any, expected: str) -> None:
    assert spoken(value) == expected
    assert not DUMP.search(spoken(value))


def test_the_dump_check_catches_a_repr() -> None:
    for dumped in (str({"chain-a": 1}), str(["chain-b"]), repr("replay"), "status=200"):
        assert DUMP.search(dumped), dumped
    assert not DUMP.search("B's query sent twice (first answered 200): refused with replay (seen before)")


def test_a_step_line_is_a_sentence() -> None:
    said: list[str] = []
    story = Story(None, said.append)  # type: ignore[arg-type]
    story.record(
        "suspend", True, f"C's next query was refused (error per member: {spoken({'chain-a': 'x'})})"
    )
    assert said == ["[ok] suspend: C's next query was refused (error per member: chain-a x)"]
    assert not DUMP.search(said[0].split(": ", 1)[1])


def test_the_process_scan_skips_a_process_that_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    assert process_holds(child.pid, [b"anything"]) == []
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'pass']); time.sleep(0.5)",
        ]
    )
    try:
        for _ in range(20):
            assert process_holds(parent.pid, [b"\x00never-there\x00"]) == []
    finally:
        parent.wait(timeout=30)
