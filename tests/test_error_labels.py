"""Every stable error code of docs/protocol.md has a Japanese and an English label in the console.

A peer's error, a refusal at the console's door, a failed check: a page names it by its code's
label (``Translator.label("error", code)``), so a Japanese page says it in Japanese. Before this
list was complete, most protocol codes fell back to one generic sentence.
"""

from __future__ import annotations

import re

import pytest

from node.console.i18n import LABELS, Translator
from tests.test_error_codes import codes_in_source, documented_codes

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
ENGLISH = re.compile(r"\b[A-Za-z]{2,}(?:[ ,.'-]+[A-Za-z]{2,}){2,}")
"""Three or more English words in a row: what a Japanese label must not be."""
CODES = sorted(documented_codes() & set(codes_in_source()))
"""The documented codes the source sends or records (the section also quotes field names)."""


def test_the_documented_list_is_read() -> None:
    assert {"bad_signature", "purpose_not_allowed", "peer_unreachable", "circuit_open"} <= set(CODES)


@pytest.mark.parametrize("code", CODES)
def test_every_documented_code_has_both_labels(code: str) -> None:
    assert code in LABELS["error"], f"no console label for error code {code}"
    ja, en = LABELS["error"][code]
    assert JAPANESE.search(ja) and not ENGLISH.search(ja), ja
    assert en and not JAPANESE.search(en), en
    assert Translator("ja").label("error", code) == ja
    assert Translator("en").label("error", code) == en


def test_labels_are_distinct_enough_to_tell_codes_apart() -> None:
    ja = [LABELS["error"][c][0] for c in CODES if c != "error"]
    assert len(set(ja)) == len(ja), sorted(t for t in ja if ja.count(t) > 1)
