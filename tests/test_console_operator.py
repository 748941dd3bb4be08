"""The operator's live alert page and the network page of the console, on the node's real application.

Most tests drive the application ``build_app`` makes through aiohttp's test client, as
``test_console.py`` does: real accounts, the real face pipeline, alerts raised by a real
``POST /v1/match`` with a sample photo, and the server-sent event stream read line by line as a
browser's ``EventSource`` reads it. Two tests use real processes: a two-member group on
127.0.0.1, where a peer's alert and its withdrawal must reach the open stream, and a node that
must stop at once with a stream open.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.console.live import MAX_STREAMS
from node.context import NodeContext
from node.demo.network import LocalNetwork, LocalNode
from protocol.canonical import b64url_encode
from tests.nodeproc import PASSWORD, NodeProcess
from tests.test_console import (
    CSRF_RE,
    IDLE,
    Clock,
    Console,
    account_id,
    audit,
    last_seq,
    photo,
    propose,
    run,
)

EVENTS = "/console/operator/events?lang=en"
PAGE = "/console/operator?lang=en"
PAGE_OFFICER = "/console/officer?lang=en"
ROW_RE = re.compile(r'<tr id="alert-(alr-[0-9a-f]+)"[^>]*data-status="([a-z-]+)"[^>]*data-entry="([^"]+)"')


class Events:
    """A ``text/event-stream`` response read as ``EventSource`` reads it; keeps every byte received."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.received = bytearray()

    async def next(self, timeout: float = 5.0) -> tuple[str, str]:
        """The next dispatched event (name, data); raises ``EOFError`` when the server closes."""
        name, data = "message", []
        async with asyncio.timeout(timeout):
            while True:
                line = await self.response.content.readline()
                if not line:
                    raise EOFError(f"the stream closed after {len(self.received)} bytes")
                self.received += line
                text = line.decode("utf-8").rstrip("\r\n")
                if not text:
                    if data:
                        return name, "\n".join(data)
                    name = "message"
                    continue
                if text.startswith(":"):
                    continue
                field, _, value = text.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)

    async def alerts_until(
        self, check: Callable[[dict[str, tuple[str, str]]], bool], timeout: float = 8.0
    ) -> str:
        """Read ``alerts`` events until ``check`` holds for their rows {alert id: (status, entry)}."""
        deadline = time.monotonic() + timeout
        while True:
            name, data = await self.next(max(0.1, deadline - time.monotonic()))
            if name == "alerts" and check(rows(data)):
                return data


def rows(html: str) -> dict[str, tuple[str, str]]:
    return {m.group(1): (m.group(2), m.group(3)) for m in ROW_RE.finditer(html)}


def row_html(html: str, alert_id: str) -> str:
    return html.split(f'id="alert-{alert_id}"', 1)[1].split("</tr>", 1)[0]


@contextlib.asynccontextmanager
async def stream(client: Any, path: str = EVENTS) -> AsyncIterator[Events]:
    response = await client.get(path, allow_redirects=False)
    try:
        assert response.status == 200, (response.status, await response.text())
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-store"
        yield Events(response)
    finally:
        response.close()


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return NodeProcess.create(tmp_path_factory.mktemp("operator")).directory


@pytest.fixture(scope="module")
def context(node_dir: Path) -> Iterator[NodeContext]:
    context = NodeContext.load(node_dir)
    yield context
    context.engine.dispose()


async def active_entry(browser: Callable[[], Awaitable[Console]], reference: str) -> tuple[str, Console]:
    """An entry proposed by reg1 and approved by off1 through the console; returns it and off1's browser."""
    registrar, officer = await browser(), await browser()
    await registrar.login("reg1")
    entry_id = await propose(registrar, reference)
    await officer.login("off1")
    status, _, _ = await officer.form(PAGE_OFFICER, f"/console/officer/entries/{entry_id}/approve?lang=en")
    assert status == 303
    return entry_id, officer


async def match(console: Console, token: str, site: str) -> dict[str, Any]:
    """A camera's frame through the JSON API, as the operator's token (raises an alert per hit)."""
    response = await console.client.post(
        "/v1/match",
        json={"image": b64url_encode(photo()), "site": site},
        headers={"Authorization": f"Bearer {token}"},
    )
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


async def alert_on(console: Console, token: str, entry_id: str, site: str) -> str:
    """The alert a camera's frame raises on ``entry_id`` (other tests' entries of the same face may match too)."""
    hits = (await match(console, token, site))["matches"]
    assert entry_id in [m["entry_id"] for m in hits], hits
    return str(next(m["alert_id"] for m in hits if m["entry_id"] == entry_id))


def token(context: NodeContext, username: str) -> str:
    return context.accounts.issue_token(username, datetime.now(UTC))


ROLE_CASES = [
    ("op1", PAGE, 200),
    ("op1", EVENTS, 200),
    ("op1", "/console/network?lang=en", 403),
    ("reg1", PAGE, 403),
    ("reg1", EVENTS, 403),
    ("reg1", "/console/network?lang=en", 403),
    ("off1", PAGE, 403),
    ("off1", EVENTS, 403),
    ("off1", "/console/network?lang=en", 200),
    ("aud1", PAGE, 403),
    ("aud1", "/console/network?lang=en", 200),
    ("adm1", EVENTS, 403),
    ("adm1", "/console/network?lang=en", 200),
]


def test_each_role_sees_only_its_pages_and_links(context: NodeContext) -> None:
    """Alerts for the operator only; the network page for officers and auditors, its manifest for admins."""
    directory = context.config.directory
    start = last_seq(directory)
    got: list[tuple[int, str, Any]] = []
    homes: dict[str, str] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        got.append(await b.get(EVENTS))
        for user, path, _ in ROLE_CASES:
            await b.login(user)
            homes[user] = (await b.get("/console?lang=en"))[2].headers.get("Location", "")
            if path == EVENTS and user == "op1":
                async with stream(b.client) as events:
                    _, data = await events.next()
                    got.append((200, data, None))
                continue
            got.append(await b.get(path))

    run(context, scenario)
    assert (got[0][0], got[0][2].headers["Location"]) == (303, "/console/login?lang=en")
    for (user, path, expected), (status, text, _) in zip(ROLE_CASES, got[1:], strict=True):
        assert status == expected, (user, path, status, text[:300])
        if expected == 403:
            assert 'data-code="forbidden"' in text, (user, path)
    page = got[1][1]
    assert "Operator: match alerts" in page and 'id="live-alerts"' in page
    assert "script-src 'self'" in got[1][2].headers["Content-Security-Policy"]
    assert 'src="/console/static/live.js"' in page and "<script>" not in page
    assert 'id="open-alerts"' in got[2][1] or 'id="open-empty"' in got[2][1]
    officer, auditor, admin = got[9][1], got[11][1], got[13][1]
    for text in (officer, auditor):
        assert 'id="peer-states"' in text or "There are no other members." in text
        assert 'id="propagation"' in text and 'id="manifest-version"' in text
    assert 'id="manifest-version"' in admin and 'id="peers"' not in admin and 'id="propagation"' not in admin
    assert 'href="/console/network?lang=en"' in officer and 'href="/console/operator?lang=en"' not in officer
    assert homes["op1"] == "/console/operator?lang=en" and homes["adm1"] == "/console/network?lang=en"
    refusals = [r for r in audit(directory, start) if r[4] == "refused:forbidden"]
    assert len(refusals) == sum(1 for case in ROLE_CASES if case[2] == 403)


def test_a_new_alert_and_its_removal_reach_an_open_stream(context: NodeContext) -> None:
    """The stream sends the list at once, then each change: a camera's match, then the entry's deletion."""
    op_token = token(context, "op1")
    out: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        operator = await browser()
        await operator.login("op1")
        async with stream(operator.client) as events:
            name, first = await events.next()
            out["first"] = (name, first)
            entry_id, officer = await active_entry(browser, "TKY-2026-0901")
            alert_id = await alert_on(operator, op_token, entry_id, "gate-1")
            started = time.monotonic()
            out["new"] = await events.alerts_until(lambda r: r.get(alert_id) == ("open", entry_id))
            out["new-after"] = time.monotonic() - started
            status, _, _ = await officer.form(
                PAGE_OFFICER, f"/console/officer/entries/{entry_id}/delete?lang=en", reason="error"
            )
            assert status == 303
            out["gone"] = await events.alerts_until(lambda r: alert_id not in r)
            out["ids"] = (entry_id, alert_id)
            out["bytes"] = bytes(events.received)

    run(context, scenario)
    entry_id, alert_id = out["ids"]
    assert out["first"][0] == "alerts" and alert_id not in out["first"][1]
    assert out["new-after"] < 3
    new = out["new"]
    assert f'id="alert-{alert_id}"' in new and "Shoplifting" in new and "gate-1" in new
    assert re.search(rf'id="alert-{alert_id}".*?class="band">strong match<', new, re.S)
    assert 'name="csrf" value="' in new and 'value="false-match"' in new
    assert f'data-entry="{entry_id}"' not in out["gone"]
    received = out["bytes"]
    assert b"embedding" not in received.lower() and b"signed_entry" not in received
    assert received.startswith(b"retry: 3000\n\n")


def test_review_takes_the_forms_csrf_token_and_the_api_rules(context: NodeContext) -> None:
    """A verdict is the same review as the JSON API's: once per alert, two outcomes, owner told."""
    directory = context.config.directory
    op_token = token(context, "op1")
    start = last_seq(directory)
    out: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        entry_id, officer = await active_entry(browser, "TKY-2026-0902")
        operator, other = await browser(), await browser()
        await operator.login("op1")
        await other.login("op1")
        alert_id = await alert_on(operator, op_token, entry_id, "gate-2")
        action = f"/console/operator/alerts/{alert_id}/review?lang=en"
        out["without"] = (await operator.post(action, {"outcome": "confirmed"}))[:2]
        out["other-session"] = (
            await operator.post(action, {"csrf": await other.csrf(PAGE), "outcome": "confirmed"})
        )[:2]
        out["officer"] = (await officer.form(PAGE_OFFICER, action, outcome="confirmed"))[:2]
        out["free-text"] = (await operator.form(PAGE, action, outcome="probably him"))[:2]
        out["unknown"] = (await operator.form(PAGE, action, outcome="maybe"))[:2]
        out["extra"] = (await operator.form(PAGE, action, outcome="confirmed", note="tall"))[:2]
        status, _, response = await operator.form(PAGE, action, outcome="confirmed")
        out["ok"] = (status, response.headers["Location"])
        out["after"] = (await operator.get(PAGE))[1]
        out["again"] = (await operator.form(PAGE, action, outcome="false-match"))[:2]
        out["missing"] = (
            await operator.form(PAGE, "/console/operator/alerts/alr-0000/review?lang=en", outcome="confirmed")
        )[:2]
        out["ids"] = (entry_id, alert_id)

    run(context, scenario)
    entry_id, alert_id = out["ids"]
    for name in ("without", "other-session"):
        assert out[name][0] == 403 and 'data-code="csrf"' in out[name][1], name
    assert out["officer"][0] == 403 and 'data-code="forbidden"' in out["officer"][1]
    for name in ("free-text", "unknown", "extra"):
        assert out[name][0] == 400 and 'data-code="malformed"' in out[name][1], name
    assert "confirmed or false-match" in out["unknown"][1]
    assert 'href="/console/operator?lang=en"' in out["unknown"][1]
    assert out["ok"] == (303, PAGE)
    after = out["after"]
    assert "Recorded as confirmed." in after and "The entry is ours; the verdict was recorded here." in after
    assert rows(after)[alert_id] == ("confirmed", entry_id)
    assert out["again"][0] == 409 and 'data-code="wrong_state"' in out["again"][1]
    assert out["missing"][0] == 404
    db = sqlite3.connect(directory / "watchnet.db")
    try:
        assert db.execute("select status from alert where id = ?", (alert_id,)).fetchone() == ("confirmed",)
        feedback = db.execute("select outcome from match_feedback where alert_id = ?", (alert_id,)).fetchall()
    finally:
        db.close()
    assert feedback == [("confirmed",)]
    op1 = account_id(context, "op1")
    records = [r[1:] for r in audit(directory, start)]
    assert (op1, "alert.review", alert_id, "confirmed") in records
    assert (op1, "POST /console/operator/alerts/{alert_id}/review", alert_id, "ok:303") in records
    assert records.count((op1, "POST /console/operator/alerts/{alert_id}/review", "", "refused:csrf")) == 2


LANGUAGE_CASES = [
    (
        "op1",
        "/console/operator",
        ("照合アラート", "未確認のアラート", "本人と確認"),
        ("Match alerts", "Alerts to check"),
    ),
    ("off1", "/console/network", ("受領証", "利用目的", "同期"), ("signed receipts", "Purposes", "Sync")),
    ("adm1", "/console/network", ("マニフェスト", "管理責任者"), ("manifest", "Responsible administrator")),
]


def test_the_pages_and_the_pushed_list_render_in_japanese_and_english(context: NodeContext) -> None:
    """Every new text exists in both languages (a missing key would fail the page); forms carry the token."""
    op_token = token(context, "op1")
    pages: list[tuple[str, str, str, int, str]] = []
    pushed: dict[str, str] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        entry_id, _ = await active_entry(browser, "TKY-2026-0904")
        b = await browser()
        await b.login("op1")
        first = await alert_on(b, op_token, entry_id, "gate-4")
        await b.form(PAGE, f"/console/operator/alerts/{first}/review?lang=en", outcome="false-match")
        await match(b, op_token, "gate-5")
        for user, path, _, _ in LANGUAGE_CASES:
            await b.login(user)
            for lang in ("ja", "en"):
                status, text, _ = await b.get(f"{path}?lang={lang}")
                pages.append((user, path, lang, status, text))
        await b.login("op1")
        for lang in ("ja", "en"):
            async with stream(b.client, f"/console/operator/events?lang={lang}") as events:
                pushed[lang] = (await events.next())[1]

    run(context, scenario)
    for (user, path, lang, status, text), (_, _, ja, en) in zip(
        pages, [case for case in LANGUAGE_CASES for _ in range(2)], strict=True
    ):
        assert status == 200, (user, path, lang, text[:300])
        assert f'<html lang="{lang}">' in text
        other = "en" if lang == "ja" else "ja"
        assert f'href="{path}?lang={other}" hreflang="{other}"' in text
        assert all(word in text for word in (ja if lang == "ja" else en)), (user, path, lang)
        assert text.count('name="csrf"') == text.count('method="post"')
        assert "<caption>" in text
    operator_ja = pages[0][4]
    assert 'id="open-alerts"' in operator_ja and 'id="closed-alerts"' in operator_ja
    assert "誤検知" in operator_ja and "自動更新" in operator_ja
    assert "未確認のアラート" in pushed["ja"] and "Alerts to check" in pushed["en"]
    assert "<html" not in pushed["en"]
    assert pushed["en"].count('method="post"') == pushed["en"].count('name="csrf"') > 0
    for text in [pages[0][4], pages[1][4], *pushed.values()]:
        assert "embedding" not in text.lower() and "signed_entry" not in text


def test_a_stream_ends_with_its_session_and_does_not_keep_it_alive(context: NodeContext) -> None:
    """Signing out, or the idle timeout, ends the stream with an ``end`` event; listening is not activity."""
    clock = Clock()
    out: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("op1")
        async with stream(b.client) as events:
            await events.next()
            await b.form(PAGE, "/console/logout?lang=en")
            out["logout"] = await events.next(4)
            with pytest.raises(EOFError):
                await events.next(4)
        await b.login("op1")
        async with stream(b.client) as events:
            await events.next()
            clock.now += IDLE / 2
            await asyncio.sleep(1.5)  # the stream checks its session at least once at this time
            clock.now += IDLE / 2 + timedelta(seconds=1)
            out["idle"] = await events.next(4)
        out["after-idle"] = (await b.get(PAGE))[2].headers.get("Location")

    run(context, scenario, clock)
    assert out["logout"] == ("end", "signed-out") and out["idle"] == ("end", "signed-out")
    assert out["after-idle"] == "/console/login?lang=en&reason=expired"


def test_open_streams_are_bounded(context: NodeContext) -> None:
    """One stream more than ``MAX_STREAMS`` is refused (429); closing one makes room again."""
    out: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("op1")
        async with contextlib.AsyncExitStack() as stack:
            opened = [await stack.enter_async_context(stream(b.client)) for _ in range(MAX_STREAMS)]
            for events in opened:
                assert (await events.next())[0] == "alerts"
            out["full"] = (await b.get(EVENTS))[:2]
            opened[0].response.close()
            await asyncio.sleep(1.5)
            async with stream(b.client) as events:
                out["room"] = (await events.next())[0]

    run(context, scenario)
    assert out["full"][0] == 429 and 'data-code="rate_limited"' in out["full"][1]
    assert f"the limit is {MAX_STREAMS}" in out["full"][1]
    assert out["room"] == "alerts"


class Staff:
    """A browser's session on a real node's console over HTTP (cookies kept for 127.0.0.1)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(url, cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.seen: list[bytes] = []

    async def get(self, path: str) -> str:
        async with self.http.get(path) as response:
            body = await response.read()
            assert response.status == 200, (path, response.status, body[:300])
            self.seen.append(body)
            return body.decode()

    async def login(self, username: str, password: str) -> None:
        page = await self.get("/console/login?lang=en")
        csrf = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
        fields = {"csrf": csrf, "username": username, "password": password}
        async with self.http.post("/console/login?lang=en", data=fields) as response:
            assert response.status == 200 and "/console/login" not in str(response.url), response.url


def review_elsewhere(b: LocalNode, entry_id: str) -> tuple[str, str]:
    """A second camera's hit on the same entry, judged a false match through the JSON API
    (``review_and_report``, which the console's form calls too): chain-a must be told."""
    status, found = b.call("POST", "/v1/query", "op1", {"image": b64url_encode(photo()), "site": "gate-8"})
    assert status == 200, found
    hit = next(m for m in found["matches"] if m["entry_id"] == entry_id)
    status, reviewed = b.call(
        "POST", f"/v1/alerts/{hit['alert_id']}/review", "op1", {"outcome": "false-match"}
    )
    assert status == 200, reviewed
    return reviewed["status"], reviewed["feedback"]


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(
        tmp_path_factory.mktemp("group"), ["chain-a", "chain-b"], sync_interval="1s"
    ).running() as network:
        yield network


def test_a_peers_alert_and_its_withdrawal_reach_the_open_page(group: LocalNetwork) -> None:
    """chain-b's open stream shows chain-a's entry matching, then withdrawn with no score or category,
    and chain-a's network page lists the deletion with chain-b's signed receipt."""
    a, b = group.node("chain-a"), group.node("chain-b")
    status, proposed = a.call(
        "POST",
        "/v1/entries",
        "reg1",
        {
            "image": b64url_encode(photo()),
            "category": "theft",
            "evidence": {"kind": "police-report", "reference": "TKY-2026-0903"},
            "incident_date": "2026-11-01",
            "site": "store-01",
        },
    )
    assert status == 201, proposed
    entry_id = proposed["entry_id"]
    assert a.call("POST", f"/v1/entries/{entry_id}/approve", "off1")[0] == 200
    out: dict[str, Any] = {}

    async def scenario() -> None:
        operator, officer = Staff(b.url), Staff(a.url)
        try:
            await operator.login("op1", group.password)
            await officer.login("off1", group.password)
            async with stream(operator.http) as events:
                await events.next()
                found = await asyncio.to_thread(
                    b.call, "POST", "/v1/query", "op1", {"image": b64url_encode(photo()), "site": "gate-3"}
                )
                assert found[0] == 200 and [m["entry_id"] for m in found[1]["matches"]] == [entry_id], found
                alert_id = found[1]["matches"][0]["alert_id"]
                out["open"] = await events.alerts_until(lambda r: r.get(alert_id) == ("open", entry_id))
                out["reviewed"] = await asyncio.to_thread(review_elsewhere, b, entry_id)
                deleted = await asyncio.to_thread(
                    a.call,
                    "POST",
                    f"/v1/entries/{entry_id}/delete",
                    "off2",
                    {"reason": "data-subject-request"},
                )
                assert deleted[0] == 200
                out["withdrawn"] = await events.alerts_until(
                    lambda r: r.get(alert_id) == ("withdrawn", entry_id), 15
                )
                out["bytes"] = bytes(events.received)
            for _ in range(50):
                network = await officer.get("/console/network?lang=en")
                if f'data-entry="{entry_id}" data-kind="deleted" data-complete="yes"' in network:
                    break
                await asyncio.sleep(0.3)
            out["network"] = network
            out["operator"] = operator.seen
            out["alert"] = alert_id
        finally:
            await operator.http.close()
            await officer.http.close()

    asyncio.run(scenario())
    alert_id = out["alert"]
    assert out["reviewed"] == ("false-match", "sent")
    alerts = {x["alert_id"]: x for x in b.call("GET", "/v1/alerts", "op1")[1]["alerts"]}
    assert (alerts[alert_id]["status"], alerts[alert_id]["band"], alerts[alert_id]["category"]) == (
        "withdrawn",
        None,
        None,
    )
    peers = a.call("GET", "/v1/peers", "off1")[1]["peers"]
    assert [(p["node_id"], p["status"]) for p in peers] == [("chain-b", "ok")]
    opened = row_html(out["open"], alert_id)
    assert "A-Mart Co., Ltd." in opened and "Theft" in opened and "gate-3" in opened
    assert re.search(r'class="band">strong match<', opened)
    withdrawn = row_html(out["withdrawn"], alert_id)
    assert "Withdrawn (the entry was deleted)" in withdrawn
    assert '<td class="category">—</td>' in withdrawn and '<td class="band">—</td>' in withdrawn
    assert alert_id not in out["withdrawn"].split('id="closed-heading"', 1)[0]
    network = out["network"]
    row = network.split(f'data-entry="{entry_id}" data-kind="deleted"', 1)[1].split("</tr>", 1)[0]
    assert 'data-complete="yes"' in network and '<li data-member="chain-b" class="pass">' in row
    assert 'data-peer="chain-b" data-sync="ok"' in network
    for body in [out["bytes"], *out["operator"]]:
        assert b"embedding" not in body.lower()
    items = re.compile(r'<ul id="items">.*?</ul>', re.S)
    assert "embedding" not in items.sub("", network).lower()


def test_serve_stops_at_once_with_a_stream_open(tmp_path: Path) -> None:
    """SIGTERM ends open streams first; aiohttp would otherwise wait for them up to its 60 s timeout."""
    node = NodeProcess.create(tmp_path)
    node.start()
    out: dict[str, Any] = {}

    async def scenario() -> None:
        operator = Staff(node.url)
        try:
            await operator.login("op1", PASSWORD)
            async with stream(operator.http) as events:
                assert (await events.next())[0] == "alerts"
                started = time.monotonic()
                await asyncio.to_thread(node.stop)
                out["stopped-in"] = time.monotonic() - started
                with pytest.raises(EOFError):
                    await events.next(2)
        finally:
            await operator.http.close()

    try:
        asyncio.run(scenario())
    finally:
        node.stop()
    assert out["stopped-in"] < 5
    assert "Traceback" not in node.log_file.read_text()
