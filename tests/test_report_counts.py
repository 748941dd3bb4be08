"""The transparency report counts what its labels say, measured on real node processes over HTTP.

Each step does one thing to a two-member network and reads chain-a's signed report through
``GET /v1/report`` before and after: page loads before sign-in change no count, a refused request
changes refusals by exactly one, a member's query answered with a hit changes the hits answered
for members by exactly one (and the asking member's hits from members by one), and an operator's
verdict changes the effect-on-the-purpose counts by one. The report's HTML is then read in
Japanese and English, each key figure with its definition beside it, and as a printable page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from html import escape
from typing import Any

import pytest
import requests

from governance.report import TransparencyReport
from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.reporting.report_html import FIGURES
from protocol.signed import SignedDocument
from tests.test_report import ok, propose, unit

MEMBERS = ["chain-a", "chain-b"]
SETTLE = 1.5
"""Seconds to wait for reads the node audits in batches (well above its group-commit interval)."""


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    net = LocalNetwork(tmp_path_factory.mktemp("reportcounts"), MEMBERS, sync_interval="1s")
    net.create()
    try:
        net.start()
        yield net
    finally:
        net.stop()


def period() -> str:
    return str(datetime.now(UTC).year)


def report(node: LocalNode) -> TransparencyReport:
    status, body = node.call("GET", f"/v1/report?period={period()}", "aud1")
    assert status == 200, body
    return SignedDocument.from_bytes(json.dumps(body).encode(), TransparencyReport).payload


def refusals(r: TransparencyReport) -> int:
    return sum(r.refusals.requests.values()) + sum(r.refusals.peer_data.values())


def settle_then(node: LocalNode, measure: Callable[[TransparencyReport], Any], expected: Any) -> None:
    """Wait until ``measure`` of the report reaches ``expected``, then check it stays there."""
    wait_for(lambda: measure(report(node)) == expected, timeout=20, interval=0.3)
    time.sleep(SETTLE)
    assert measure(report(node)) == expected


def test_each_count_changes_by_exactly_what_was_done(network: LocalNetwork) -> None:
    a, b = network.node("chain-a"), network.node("chain-b")
    entry = propose(a, 11)
    ok(a.call("POST", f"/v1/entries/{entry}/approve", "off1"))
    time.sleep(SETTLE)
    before = report(a)

    # three page loads before sign-in, as a browser makes them: not refusals
    for path in ("/", "/favicon.ico", "/console/report"):
        response = requests.get(a.url + path, allow_redirects=False, timeout=10)
        assert response.status_code in (303, 401), (path, response.status_code)
    time.sleep(SETTLE)
    assert refusals(report(a)) == refusals(before)

    # one request refused by authorisation: exactly one refusal, coded forbidden
    assert a.call("POST", f"/v1/entries/{entry}/delete", "reg1", {"reason": "error"})[0] == 403
    settle_then(a, refusals, refusals(before) + 1)
    assert report(a).refusals.requests.get("forbidden", 0) == before.refusals.requests.get("forbidden", 0) + 1

    # one member's query answered with a hit: one hit answered for members, none found locally
    b_before = report(b)
    hit = ok(b.call("POST", "/v1/query", "op1", {"embeddings": [unit(11).to_str()], "site": "gate-1"}))
    assert [m["entry_id"] for m in hit["matches"]] == [entry]
    settle_then(a, lambda r: r.matches.answered_hits, before.matches.answered_hits + 1)
    after = report(a)
    assert after.matches.local_hits == before.matches.local_hits
    assert sum(after.queries.answered.values()) == sum(before.queries.answered.values()) + 1
    settle_then(b, lambda r: r.matches.network_hits, b_before.matches.network_hits + 1)

    # one operator's verdict: one confirmed match at b, one confirmation received by a
    ok(b.call("POST", f"/v1/alerts/{hit['matches'][0]['alert_id']}/review", "op1", {"outcome": "confirmed"}))
    settle_then(b, lambda r: r.matches.reviews.get("confirmed", 0), b_before.matches.reviews["confirmed"] + 1)
    assert report(b).matches.reviews.get("false-match", 0) == b_before.matches.reviews.get("false-match", 0)
    settle_then(
        a,
        lambda r: r.matches.feedback_received.get("confirmed", 0),
        before.matches.feedback_received.get("confirmed", 0) + 1,
    )


def _page(node: LocalNode, lang: str) -> str:
    response = requests.get(
        f"{node.url}/v1/report",
        params={"period": period(), "format": "html", "lang": lang},
        headers={"Authorization": f"Bearer {node.tokens['aud1']}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:200]
    return response.text


def test_the_report_page_defines_every_figure_in_japanese_and_english(network: LocalNetwork) -> None:
    a = network.node("chain-a")
    ja, en = _page(a, "ja"), _page(a, "en")
    assert '<html lang="ja">' in ja and '<html lang="en">' in en
    for _, label_en, label_ja, definition_en, definition_ja in FIGURES:
        assert escape(label_ja) in ja and escape(definition_ja) in ja
        assert escape(label_en) in en and escape(definition_en) in en
    assert "利用目的の達成状況" in ja and "Effect on the purpose" in en
    assert "@page { size: A4" in ja and "@media print" in en
    assert (
        requests.get(
            f"{a.url}/v1/report",
            params={"period": period(), "format": "html", "lang": "fr"},
            headers={"Authorization": f"Bearer {a.tokens['aud1']}"},
            timeout=30,
        ).status_code
        == 400
    )
