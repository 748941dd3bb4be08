"""The audit log page: filters by actor, action, outcome and time, keyset pages, routine polling
folded (and shown on request), and a CSV export of exactly the filtered rows, formula-safe.

The node is served in this process (``tests.console_app``); the members' polls are appended to its
real hash-chained audit log as the node itself records them (``peer:<member>`` ``POST
/v1/peer/log`` ``ok:200``), so the chain still verifies and the page's verdict stays "verified".
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from node.console.audit_filter import MAX_PAGE_SIZE, AuditFilter, csv_cell
from node.records.auditlog import record_audit
from protocol.errors import MalformedError
from tests.console_app import Node, loaded_node
from tests.test_console_auditor import Browser, run

TOKYO = ZoneInfo("Asia/Tokyo")
POLLS = 120
BASE = datetime(2026, 12, 2, 1, 0, 0)  # naive UTC, 10:00 JST


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with loaded_node(tmp_path_factory.mktemp("audit-filter")) as made:
        audit = made.context
        add = lambda **r: record_audit(audit.engine, audit.registry.write_lock, **r)  # noqa: E731
        # 120 polls from two members every 2 s, with three staff actions among them
        for i in range(POLLS):
            at = (BASE + timedelta(seconds=2 * i)).replace(tzinfo=UTC)
            add(
                actor=f"peer:chain-{'b' if i % 2 else 'c'}",
                action="POST /v1/peer/log",
                outcome="ok:200",
                now=at,
            )
            if i in (30, 60, 90):
                add(
                    actor="=cmd|' /C calc'!A0",
                    action="POST /v1/entries/{entry_id}/approve",
                    target="@SUM(1+1)",
                    outcome="refused:forbidden" if i == 60 else "ok:200",
                    now=at,
                )
        yield made


def get(node: Node, *paths: str) -> list[Any]:
    seen: list[Any] = []

    async def scenario(browser: Any, base: str) -> None:
        b: Browser = await browser()
        await b.login("aud1")
        for path in paths:
            seen.append(await b.get(path))

    run(node, scenario)
    return seen


def seqs(text: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', text)]


def folded(text: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr class="folded" data-folded="(\d+)"', text)]


def test_routine_polls_fold_into_lines_between_staff_actions_and_show_on_request(node: Node) -> None:
    (fold, show) = get(
        node,
        "/console/audit?lang=en&from=2026-12-02T10:00&to=2026-12-02T11:00",
        f"/console/audit?lang=en&from=2026-12-02T10:00&to=2026-12-02T11:00&routine=show&size={MAX_PAGE_SIZE}",
    )
    assert fold.status == 200 and show.status == 200
    assert len(seqs(fold.text)) == 3  # the staff actions, nothing else in that hour
    assert sum(folded(fold.text)) == POLLS  # every poll is counted in a folded line, none lost
    assert "peer:chain-b polled 15 times between" in fold.text
    assert f"Members&#39; routine log polls ({POLLS} records)" in fold.text
    assert len(seqs(show.text)) == POLLS + 3 and folded(show.text) == []
    assert 'data-verification="verified"' in fold.text
    (only_polls,) = get(node, "/console/audit?lang=en&actor=peer:chain-b")
    assert seqs(only_polls.text) == [] and folded(only_polls.text) == [POLLS // 2]


def test_filters_by_actor_action_outcome_and_local_time(node: Node) -> None:
    by_outcome, by_action, by_actor, by_time, bad = get(
        node,
        "/console/audit?lang=en&outcome=refused&from=2026-12-02T10:00",
        "/console/audit?lang=en&action=POST+/v1/entries&from=2026-12-02T10:00",
        "/console/audit?lang=en&actor=peer:chain-b&routine=show&size=200",
        # 10:01:00 to 10:02:00 JST: polls 30..59 and the staff action at poll 30
        "/console/audit?lang=en&from=2026-12-02T10:01&to=2026-12-02T10:02&routine=show&size=200",
        "/console/audit?lang=en&from=2026-13-02T10:01",
    )
    assert len(seqs(by_outcome.text)) == 1 and "refused:forbidden" in by_outcome.text
    assert len(seqs(by_action.text)) == 3
    assert len(seqs(by_actor.text)) == POLLS // 2
    assert len(seqs(by_time.text)) == 30 + 1
    assert bad.status == 400 and 'data-code="malformed"' in bad.text


def test_pages_are_bounded_stable_and_cover_every_row_once(node: Node) -> None:
    first, huge = get(
        node, "/console/audit?lang=en&routine=show&size=25", "/console/audit?lang=en&size=100000"
    )
    assert len(seqs(first.text)) == 25
    assert len(seqs(huge.text)) <= MAX_PAGE_SIZE
    seen = seqs(first.text)
    link = re.search(r'rel="next" href="([^"]+)"', first.text)
    while link:
        (page,) = get(node, link.group(1).replace("&amp;", "&"))
        rows = seqs(page.text)
        assert rows and rows[0] < seen[-1]
        seen += rows
        link = re.search(r'rel="next" href="([^"]+)"', page.text)
    assert seen == sorted(set(seen), reverse=True) and seen[-1] == 0 and len(seen) == seen[0] + 1


def test_the_csv_holds_exactly_the_filtered_rows_with_safe_cells(node: Node) -> None:
    (staff,) = get(node, "/console/audit.csv?lang=en&action=POST+/v1/entries&from=2026-12-02T10:00")
    assert staff.status == 200 and staff.headers["Content-Type"].startswith("text/csv")
    assert re.fullmatch(
        r'attachment; filename="watchnet-audit-chain-a-\d{8}T\d{6}Z\.csv"',
        staff.headers["Content-Disposition"],
    )
    assert staff.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(staff.text.lstrip("\ufeff"))))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["seq", "at_utc", "at_local", "actor"] and len(body) == 3
    assert all(r[3] == "'=cmd|' /C calc'!A0" and r[6] == "'@SUM(1+1)" for r in body)
    assert all(r[2].endswith("+09:00") and r[1].endswith("Z") for r in body)
    assert all(r[10] == "yes" for r in body)
    (polls,) = get(node, "/console/audit.csv?lang=en&actor=peer:chain-c&routine=show")
    assert len(list(csv.reader(io.StringIO(polls.text.lstrip("\ufeff"))))) == 1 + POLLS // 2


@pytest.mark.parametrize(
    "query",
    [
        {"size": "ten"},
        {"upto": "-1"},
        {"routine": "hide"},
        {"from": "yesterday"},
        {"from": "2026-02-30T10:00"},
        {"from": "2026-12-02T10:00", "to": "2026-12-01T10:00"},
        {"actor": "<script>"},
    ],
)
def test_a_bad_filter_is_refused(query: dict[str, str]) -> None:
    with pytest.raises(MalformedError):
        AuditFilter.from_query(query, TOKYO)


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+81", "'+81"),
        ("-2", "'-2"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("ok:200", "ok:200"),
    ],
)
def test_cells_that_look_like_formulas_are_quoted(value: str, cell: str) -> None:
    assert csv_cell(value) == cell
