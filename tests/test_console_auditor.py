"""The auditor's console pages on the node's real application: roles, verification, tampering, report.

The application ``build_app`` makes is served by aiohttp's test server on a node directory made
by ``watchnet init`` with real staff accounts; entries are registered through the JSON API. The
verification a page shows is checked against what ``audit_node`` (the code of ``watchnet audit
verify``) says over HTTP about the same server, before and after a row of the node's SQLite
database is edited behind its back. The clock is injected, so the report a page shows can be
rebuilt byte for byte from the same signed document.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from governance.report import TransparencyReport, parse_period
from node.app.server import build_app
from node.http.report import member_names, node_report
from node.local_time import LocalTimes
from node.reporting.auditor import AuditReport, audit_node
from node.reporting.report_html import report_body_html
from protocol.canonical import parse_json
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead
from tests.console_app import CSRF_RE, Clock, Node, Page, loaded_node
from tests.factories import embedding
from tests.nodeproc import PASSWORD

SEEDS = (201, 202, 203)


@dataclass
class Browser:
    """One browser (its own cookie jar) on the console, keeping every body it received."""

    client: TestClient[Any, Any]
    seen: list[bytes] = field(default_factory=list)

    async def get(self, path: str) -> Page:
        response = await self.client.get(path, allow_redirects=False)
        body = await response.read()
        self.seen.append(body)
        return Page(response.status, body.decode("utf-8", "replace"), response.headers)

    async def post(self, path: str, data: Any) -> Page:
        response = await self.client.post(path, data=data, allow_redirects=False)
        body = await response.read()
        self.seen.append(body)
        return Page(response.status, body.decode("utf-8", "replace"), response.headers)

    async def login(self, username: str) -> None:
        self.client.session.cookie_jar.clear()
        page = await self.get("/console/login?lang=en")
        match = CSRF_RE.search(page.text)
        assert match, page.text[:300]
        done = await self.post(
            "/console/login?lang=en", {"csrf": match.group(1), "username": username, "password": PASSWORD}
        )
        assert done.status == 303, done.text[:300]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with loaded_node(tmp_path_factory.mktemp("console-auditor")) as made:
        yield made


Scenario = Callable[[Callable[[], Awaitable[Browser]], str], Awaitable[None]]


def run(node: Node, scenario: Scenario, clock: Clock | None = None) -> None:
    """Serve the node and hand ``scenario`` a factory of browsers and the server's base URL."""

    async def go() -> None:
        app = build_app(node.context, clock=clock or Clock(), sweep=False, federate=False)
        server = TestServer(app)
        await server.start_server()
        clients: list[TestClient[Any, Any]] = []

        async def browser() -> Browser:
            client: TestClient[Any, Any] = TestClient(server)
            await client.start_server()
            clients.append(client)
            return Browser(client)

        try:
            await scenario(browser, str(server.make_url("")).rstrip("/"))
        finally:
            for client in clients:
                await client.close()
            await server.close()

    asyncio.run(go())


async def register(b: Browser, node: Node, seed: int) -> str:
    """Propose and approve one entry through the JSON API (registrar, then officer)."""
    body = {
        "embedding": embedding(seed).to_str(),
        "category": "shoplifting",
        "evidence": {"kind": "police-report", "reference": f"TKY-2026-{seed:04d}"},
        "incident_date": "2026-11-01",
        "site": "shibuya-01",
    }
    response = await b.client.post(
        "/v1/entries", json=body, headers={"Authorization": f"Bearer {node.tokens['reg1']}"}
    )
    assert response.status == 201, await response.text()
    entry_id = str((await response.json())["entry_id"])
    response = await b.client.post(
        f"/v1/entries/{entry_id}/approve", headers={"Authorization": f"Bearer {node.tokens['off1']}"}
    )
    assert response.status == 200, await response.text()
    return entry_id


@pytest.fixture(scope="module")
def registered(node: Node) -> list[str]:
    """Three active entries, so that the event log has heads and leaves to check."""
    ids: list[str] = []

    async def scenario(browser: Callable[[], Awaitable[Browser]], base: str) -> None:
        b = await browser()
        for seed in SEEDS:
            ids.append(await register(b, node, seed))

    run(node, scenario)
    return ids


def sql(node: Node, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(node.directory / "watchnet.db", timeout=10)
    try:
        with db:
            return list(db.execute(statement, args).fetchall())
    finally:
        db.close()


def verdict(text: str) -> str:
    match = re.search(r'data-verification="(\w+)"', text)
    assert match, text[:500]
    return match.group(1)


ROLE_CASES = [
    ("aud1", "/console/audit", 200),
    ("off1", "/console/audit", 403),
    ("reg1", "/console/audit", 403),
    ("adm1", "/console/audit", 403),
    ("aud1", "/console/log", 200),
    ("off1", "/console/log", 200),
    ("reg1", "/console/log", 403),
    ("op1", "/console/log", 403),
    ("adm1", "/console/log", 403),
    ("aud1", "/console/report/2026-Q4", 200),
    ("off1", "/console/report/2026-Q4", 200),
    ("adm1", "/console/report/2026-Q4", 200),
    ("reg1", "/console/report/2026-Q4", 403),
    ("op1", "/console/report/2026-Q4/signed.json", 403),
]


def test_each_auditor_page_is_for_the_roles_that_may_read_it(node: Node) -> None:
    """The audit log is the auditor's alone; the event log also the officer's; the report also the admin's."""
    got: list[tuple[int, str, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Browser]], base: str) -> None:
        b = await browser()
        for path in ("/console/audit", "/console/log", "/console/report/2026-Q4"):
            page = await b.get(path)
            got.append((page.status, page.headers.get("Location", ""), ""))
        for user, path, _ in ROLE_CASES:
            await b.login(user)
            page = await b.get(f"{path}?lang=en")
            got.append((page.status, user, page.text))

    run(node, scenario)
    assert [g[:2] for g in got[:3]] == [(303, "/console/login?lang=ja")] * 3
    for (user, path, expected), (status, _, text) in zip(ROLE_CASES, got[3:], strict=True):
        assert status == expected, (user, path, status, text[:300])
        if expected == 403:
            assert 'data-code="forbidden"' in text
    aud1 = got[3][2]
    assert all(f'href="/console/{p}?lang=en"' in aud1 for p in ("audit", "log", "report", "requests"))
    assert 'href="/console/officer?lang=en"' not in aud1


def test_the_audit_page_fails_verification_when_a_stored_record_is_edited(node: Node) -> None:
    """An edited audit record turns the page to "failed", as ``watchnet audit verify`` does, and back."""
    seen: dict[str, Any] = {}
    target = 3
    original = sql(node, "select outcome from audit where seq = ?", target)[0][0]

    async def scenario(browser: Callable[[], Awaitable[Browser]], base: str) -> None:
        b = await browser()
        await b.login("aud1")
        seen["before"] = await b.get("/console/audit?lang=en")
        seen["cli-before"] = await audit_node(base, node.tokens["aud1"])
        seen["again"] = await b.get("/console/audit?lang=en")
        sql(node, "update audit set outcome = ? where seq = ?", "ok:299", target)
        try:
            seen["incremental"] = await b.get("/console/audit?lang=en")
            seen["after"] = await b.get("/console/audit?lang=en&verify=full")
            seen["row"] = await b.get(f"/console/audit?lang=ja&upto={target}")
            seen["cli-after"] = await audit_node(base, node.tokens["aud1"])
        finally:
            sql(node, "update audit set outcome = ? where seq = ?", original, target)
        seen["restored"] = await b.get("/console/audit?lang=en")
        seen["bad-upto"] = await b.get("/console/audit?lang=en&upto=-1")
        seen["bad-verify"] = await b.get("/console/audit?lang=en&verify=some")

    run(node, scenario)
    assert seen["bad-upto"].status == 400 and 'data-code="malformed"' in seen["bad-upto"].text
    assert seen["bad-verify"].status == 400 and 'data-code="malformed"' in seen["bad-verify"].text
    before, after, row, restored = (seen[k] for k in ("before", "after", "row", "restored"))
    assert before.status == 200 and verdict(before.text) == "verified", before.text[:2000]
    assert "audit chain of" in before.text and "is intact" in before.text
    total = int(re.search(r"(\d+) records match", before.text).group(1))  # type: ignore[union-attr]
    seqs = [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', before.text)]
    assert seqs == list(range(total - 1, total - 1 - min(50, total), -1))
    older = f'rel="next" href="/console/audit?lang=en&amp;routine=fold&amp;size=50&amp;upto={total - 51}"'
    assert (older in before.text) == (total > 50) and 'rel="prev"' not in before.text
    assert re.search(r'rel="prev" href="/console/audit\?lang=ja&amp;[^"]*upto=\d+"', row.text)
    cli_before: AuditReport = seen["cli-before"]
    assert cli_before.ok
    assert after.status == 200 and verdict(after.text) == "failed"
    assert f"audit chain: audit record {target} was altered" in after.text
    cli_after: AuditReport = seen["cli-after"]
    assert not cli_after.ok and f"audit chain: audit record {target} was altered" in cli_after.problems
    assert f'<tr data-seq="{target}" data-intact="no">' in row.text and "書き換えあり" in row.text
    assert row.text.count('data-intact="no"') == 1
    assert verdict(restored.text) == "verified"
    assert before.headers["Cache-Control"] == "no-store"
    # the first view verifies from the first record; the next only what was added since
    assert 'data-verified="full"' in before.text and 'id="audit-verify-all"' in before.text
    again, incremental = seen["again"].text, seen["incremental"].text
    assert verdict(again) == "verified" and 'data-verified="new"' in again, again[:3000]
    resumed = re.search(r"(\d+) records after record (\d+)", again)
    assert resumed and int(resumed.group(2)) >= total - 1 and 1 <= int(resumed.group(1)) < 10, again[:3000]
    assert f"audit chain of {int(resumed.group(2)) + 1 + int(resumed.group(1))} records is intact" in again
    # an edit before the last verified record waits for the full check the page links to
    assert verdict(incremental) == "verified" and 'data-verified="new"' in incremental
    assert 'href="/console/audit?lang=en&amp;routine=fold&amp;size=50&amp;verify=full"' in incremental
    assert 'data-verified="full"' in after.text and 'data-verified="full"' in restored.text  # after a failure


def test_the_event_log_page_checks_the_signed_head_root_and_consistency(
    node: Node, registered: list[str]
) -> None:
    """The root recomputed from the stored leaves must equal the signed head; an edited leaf fails it."""
    seen: dict[str, Any] = {}
    original_leaf = sql(node, "select leaf from log_leaf where idx = 0")[0][0]
    original_hash = sql(node, "select leaf_hash from log_leaf where idx = 1")[0][0]
    tampered = original_leaf.replace(b"registered", b"registerex")
    assert tampered != original_leaf

    async def scenario(browser: Callable[[], Awaitable[Browser]], base: str) -> None:
        b = await browser()
        await b.login("off1")
        seen["before"] = await b.get("/console/log?lang=en")
        seen["again"] = await b.get("/console/log?lang=en")
        sql(node, "update log_leaf set leaf = ? where idx = 0", tampered)
        try:
            seen["leaf"] = await b.get("/console/log?lang=en&verify=full")
            seen["cli"] = await audit_node(base, node.tokens["aud1"])
        finally:
            sql(node, "update log_leaf set leaf = ? where idx = 0", original_leaf)
        sql(node, "update log_leaf set leaf_hash = ? where idx = 1", bytes(32))
        try:
            seen["hash"] = await b.get("/console/log?lang=ja")
        finally:
            sql(node, "update log_leaf set leaf_hash = ? where idx = 1", original_hash)
        seen["restored"] = await b.get("/console/log?lang=en")

    run(node, scenario)
    size = sql(node, "select count(*) from log_leaf")[0][0]
    before = seen["before"].text
    assert verdict(before) == "verified", before[:3000]
    assert f"{size} signed events hash to the signed root" in before
    assert f"the log extends the head of size {size - 1} seen before" in before
    assert (
        f'id="tree-head" data-size="{size}"' in before
        and f'id="previous-head" data-size="{size - 1}"' in before
    )
    head = sql(node, "select signed from tree_head where tree_size = ?", size)[0][0]
    assert SignedDocument.from_dict(parse_json(head), TreeHead).payload.root_hash.hex() in before
    indexes = [int(i) for i in re.findall(r'<tr data-index="(\d+)"', before)]
    assert indexes == list(range(size - 1, -1, -1))
    assert all(entry_id in before for entry_id in registered)
    assert "It is not the key the group&#39;s manifest lists" in before

    leaf = seen["leaf"].text
    assert verdict(leaf) == "failed"
    assert "event 0:" in leaf and "the events do not hash to the signed root" in leaf
    assert '<tr data-index="0" data-readable="no">' in leaf
    cli: AuditReport = seen["cli"]
    assert not cli.ok and "the events do not hash to the signed root" in cli.problems

    hashed = seen["hash"].text
    assert verdict(hashed) == "failed" and "検証失敗" in hashed
    assert "イベント 1: 保存されたハッシュが保存されたイベントと一致しません" in hashed  # said from its code
    assert "stored leaf hash" not in hashed
    assert verdict(seen["restored"].text) == "verified"
    # the view after the first verifies what was added since (nothing here), with the same checks
    again = seen["again"].text
    assert verdict(again) == "verified" and 'data-verified="new"' in again, again[:3000]
    assert f"0 events after the {size} before" in again
    assert f"{size} signed events hash to the signed root" in again
    assert f"the log extends the head of size {size - 1} seen before" in again
    assert 'data-verified="full"' in seen["hash"].text  # the view after a failed one verifies everything


def test_a_new_audit_record_or_the_last_verified_one_edited_fails_the_next_view(node: Node) -> None:
    """What an incremental view reads is verified as a full one would: an edit there fails it."""
    seen: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Browser]], base: str) -> None:
        b = await browser()
        await b.login("aud1")
        await b.get("/console/audit?lang=en")
        last = sql(node, "select max(seq) from audit")[0][0]
        seen["new"] = (last, await b.get("/console/audit?lang=en"))
        newest = sql(node, "select max(seq) from audit")[0][0]
        original = sql(node, "select outcome from audit where seq = ?", newest)[0][0]
        sql(node, "update audit set outcome = ? where seq = ?", "ok:299", newest)
        try:
            seen["edited"] = (newest, await b.get("/console/audit?lang=en"))
        finally:
            sql(node, "update audit set outcome = ? where seq = ?", original, newest)
        seen["restored"] = await b.get("/console/audit?lang=en")

    run(node, scenario)
    last, new = seen["new"]
    assert verdict(new.text) == "verified" and 'data-verified="new"' in new.text
    newest, edited = seen["edited"]
    assert newest > last
    assert verdict(edited.text) == "failed", edited.text[:3000]
    assert f"audit record {newest}" in edited.text
    assert verdict(seen["restored"].text) == "verified" and 'data-verified="full"' in seen["restored"].text


def test_the_report_page_shows_the_signed_report_with_its_charts(node: Node, registered: list[str]) -> None:
    """The page embeds exactly what ``report_body_html`` draws for the signed report of the period."""
    clock = Clock()
    period = parse_period(f"{clock.now.year}-Q{(clock.now.month - 1) // 3 + 1}")
    seen: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Browser]], base: str) -> None:
        b = await browser()
        await b.login("aud1")
        seen["choice"] = await b.get("/console/report?lang=en")
        seen["picked"] = await b.get("/console/report?lang=ja&period=2025")
        seen["en"] = await b.get(f"/console/report/{period.label}?lang=en")
        document = await asyncio.to_thread(node_report, node.context, period, clock.now)
        names = member_names(node.context.manifest)
        when = LocalTimes("en", node.context.config.console.zone).when
        seen["body"] = await asyncio.to_thread(
            lambda: report_body_html(document.payload, names=names, lang="en", when=when)
        )
        seen["ja_body"] = await asyncio.to_thread(
            lambda: report_body_html(
                document.payload,
                names=names,
                lang="ja",
                when=LocalTimes("ja", node.context.config.console.zone).when,
            )
        )
        seen["print"] = await b.get(f"/console/report/{period.label}/print?lang=ja")
        seen["ja"] = await b.get(f"/console/report/{period.label}?lang=ja")
        seen["json"] = await b.get(f"/console/report/{period.label}/signed.json?lang=en")
        seen["bad"] = await b.get("/console/report/2026-Q5?lang=en")
        seen["bad-choice"] = await b.get("/console/report?lang=en&period=last-year")

    run(node, scenario, clock)
    assert seen["choice"].status == 303
    assert seen["choice"].headers["Location"] == f"/console/report/{period.label}?lang=en"
    assert seen["picked"].headers["Location"] == "/console/report/2025?lang=ja"
    en, ja = seen["en"], seen["ja"]
    assert en.status == 200 and seen["body"] in en.text
    assert en.text.count('<svg role="img"') >= 1 and "entries registered" in en.text
    assert "'unsafe-inline'" in en.headers["Content-Security-Policy"]
    assert (
        "script-src" not in en.headers["Content-Security-Policy"]
        and en.headers["Cache-Control"] == "no-store"
    )
    assert "透明性レポート" in ja.text and f'<option value="{period.label}" selected>' in ja.text
    assert (
        seen["ja_body"] in ja.text and "利用目的の達成状況" in ja.text and "entries registered" not in ja.text
    )
    printed = seen["print"]
    assert printed.status == 200 and seen["ja_body"] in printed.text and '<html lang="ja">' in printed.text
    assert "@page { size: A4" in printed.text and "<nav" not in printed.text
    signed = SignedDocument.from_dict(parse_json(seen["json"].text), TransparencyReport)
    signed.verify([node.context.signing_key.public])
    assert signed.payload.period.label == period.label and signed.payload.entries.approved >= len(SEEDS)
    assert seen["json"].headers["Cache-Control"] == "no-store"
    assert "attachment" in seen["json"].headers["Content-Disposition"]
    for bad in ("bad", "bad-choice"):
        assert seen[bad].status == 400 and 'data-code="malformed"' in seen[bad].text


PAGES = {"aud1": ["/console/audit", "/console/log", "/console/report/2026-Q4"], "off1": ["/console/log"]}


def test_auditor_pages_render_in_both_languages_and_hold_no_embedding(
    node: Node, registered: list[str]
) -> None:
    """Every page in Japanese and English with a switch link and captioned tables; nothing biometric."""
    pages: list[tuple[str, str, Page]] = []
    received: list[bytes] = []

    async def scenario(browser: Callable[[], Awaitable[Browser]], base: str) -> None:
        b = await browser()
        for user, paths in PAGES.items():
            await b.login(user)
            for path in paths:
                for lang in ("ja", "en"):
                    pages.append((path, lang, await b.get(f"{path}?lang={lang}")))
        received.extend(b.seen)

    run(node, scenario)
    for path, lang, page in pages:
        assert page.status == 200, (path, lang, page.text[:300])
        assert f'<html lang="{lang}">' in page.text and page.headers["Content-Language"] == lang
        other = "en" if lang == "ja" else "ja"
        assert f'href="{path}?lang={other}" hreflang="{other}"' in page.text
        assert page.text.count('method="post"') == page.text.count('name="csrf"')
        console_tables = re.sub(r'<article class="report".*</article>', "", page.text, flags=re.S)
        assert console_tables.count("<table") == console_tables.count("<caption>"), (path, lang)
        assert page.headers["Cache-Control"] == "no-store"
    assert any("監査ログ" in p.text for _, lang, p in pages if lang == "ja")
    assert any("Audit records" in p.text for _, lang, p in pages if lang == "en")
    vectors = [embedding(seed) for seed in SEEDS]
    for body in received:
        assert b"embedding" not in body.lower()
        for vector in vectors:
            assert vector.raw not in body and vector.to_str().encode() not in body
