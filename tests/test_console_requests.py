"""Data-subject requests and complaints in the console: roles, CSRF, lifecycles, both languages.

Requests run on a real two-member network (``chain-a`` and ``chain-b`` as ``watchnet serve``
processes): an officer records a request from a sample photo in the browser's form, runs the
disclosure search (which asks the other member), is refused each closing the rules do not allow
and closes a deletion as granted once the other member's signed receipt is in, which the page
then shows. Complaints run on the node's application in this process with an injected clock, so
a complaint can be made overdue without waiting two weeks. Every body a browser received is
kept and checked for the counter photo and for any embedding.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.app.server import build_app
from node.casework.registers import COMPLAINT_DEADLINE
from node.context import NodeContext
from node.demo.network import LocalNetwork, LocalNode
from node.demo.story import photo_path
from node.local_time import LocalTimes
from protocol.canonical import b64url_encode
from tests.console_app import CSRF_RE, Clock, Page, loaded_node
from tests.nodedb import node_sql
from tests.nodeproc import PASSWORD

REQUEST_RE = re.compile(r"/console/requests/(req-[0-9a-f]+)\?lang=en")


def photo(name: str) -> bytes:
    """A sample photo from the installed model packages (``yaoming.jpg``, ``t1.jpg``)."""
    return photo_path(name).read_bytes()


@dataclass
class Browser:
    """One browser on one node's console over real HTTP, keeping every body and header it received."""

    session: aiohttp.ClientSession
    base: str
    password: str
    seen: list[tuple[str, bytes, Any]] = field(default_factory=list)

    async def _keep(self, path: str, response: aiohttp.ClientResponse) -> Page:
        body = await response.read()
        self.seen.append((path, body, response.headers))
        return Page(response.status, body.decode("utf-8", "replace"), response.headers)

    async def get(self, path: str) -> Page:
        async with self.session.get(f"{self.base}{path}", allow_redirects=False) as response:
            return await self._keep(path, response)

    async def post(self, path: str, data: Any) -> Page:
        async with self.session.post(f"{self.base}{path}", data=data, allow_redirects=False) as response:
            return await self._keep(path, response)

    async def csrf(self, path: str) -> str:
        page = await self.get(path)
        match = CSRF_RE.search(page.text)
        assert page.status == 200 and match, (path, page.status, page.text[:300])
        return match.group(1)

    async def login(self, username: str) -> None:
        self.session.cookie_jar.clear()
        token = await self.csrf("/console/login?lang=en")
        page = await self.post(
            "/console/login?lang=en", {"csrf": token, "username": username, "password": self.password}
        )
        assert page.status == 303, page.text[:300]

    async def form(self, page: str, action: str, **fields: str) -> Page:
        """Post ``fields`` with the CSRF token of ``page``, as the browser showing it would."""
        return await self.post(action, {"csrf": await self.csrf(page), **fields})

    async def record(self, kind: str, image: bytes, identity_check: str = "passport") -> str:
        """Record a request with the page's form (a photo upload); the new request's id."""
        data = aiohttp.FormData()
        data.add_field("csrf", await self.csrf("/console/requests?lang=en"))
        data.add_field("kind", kind)
        data.add_field("identity_check", identity_check)
        data.add_field("photo", image, filename="counter.jpg", content_type="image/jpeg")
        page = await self.post("/console/requests?lang=en", data)
        match = REQUEST_RE.fullmatch(page.headers.get("Location", ""))
        assert page.status == 303 and match, (page.status, page.text[:500])
        return match.group(1)


def browse(node: LocalNode, password: str, scenario: Callable[[Browser], Awaitable[None]]) -> Browser:
    """Run ``scenario`` with a fresh browser on ``node``; return the browser with what it saw."""

    async def go() -> Browser:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=60)) as session:
            browser = Browser(session, node.url, password)
            await scenario(browser)
            return browser

    return asyncio.run(go())


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(
        tmp_path_factory.mktemp("console-requests"), ["chain-a", "chain-b"], sync_interval="1s"
    ).running() as network:
        yield network


def register_photo(node: LocalNode, image: bytes) -> str:
    """A registrar proposes the photo's face and an officer approves it (JSON API)."""
    status, proposed = node.call(
        "POST",
        "/v1/entries",
        "reg1",
        {
            "image": b64url_encode(image),
            "category": "shoplifting",
            "evidence": {"kind": "police-report", "reference": "TKY-2026-004242"},
            "incident_date": "2026-11-01",
            "site": "shibuya-01",
        },
    )
    assert status == 201, proposed
    assert node.call("POST", f"/v1/entries/{proposed['entry_id']}/approve", "off1")[0] == 200
    return str(proposed["entry_id"])


def subject_row(node: LocalNode, request_id: str) -> tuple[Any, ...]:
    with node_sql(node.directory) as db:
        (row,) = db.rows(
            "select status, outcome, ground, photo_ct, embedding_ct from subject_request where id = :i",
            {"i": request_id},
        )
        return row


def check_nothing_personal(browser: Browser, images: list[bytes]) -> None:
    """No console response carries a counter photo or an embedding, and none may be cached."""
    for path, body, headers in browser.seen:
        assert b"embedding" not in body.lower(), path
        for image in images:
            assert image[:4096] not in body and b64url_encode(image)[:4096].encode() not in body, path
        assert headers.get("Cache-Control") == "no-store", path


def request_page(request_id: str, lang: str = "en") -> str:
    return f"/console/requests/{request_id}?lang={lang}"


ROLE_CASES = [
    ("off1", "/console/requests", 200),
    ("aud1", "/console/requests", 200),
    ("reg1", "/console/requests", 403),
    ("op1", "/console/requests", 403),
    ("adm1", "/console/requests", 403),
    ("aud1", "/console/complaints", 200),
    ("op1", "/console/complaints", 403),
    ("off1", "/console/requests/req-00000000000000000000", 404),
]


def test_request_pages_are_for_officers_and_read_only_for_auditors(net: LocalNetwork) -> None:
    """Officers act on requests; auditors read them and every action of theirs is refused."""
    a = net.node("chain-a")
    got: list[tuple[str, str, Page]] = []
    made = a.call(
        "POST",
        "/v1/requests",
        "off1",
        {"kind": "disclosure", "identity_check": "passport", "image": b64url_encode(photo("t1.jpg"))},
    )
    assert made[0] == 201, made
    request_id = made[1]["id"]

    async def scenario(b: Browser) -> None:
        for user, path, _ in ROLE_CASES:
            await b.login(user)
            got.append((user, path, await b.get(f"{path}?lang=en")))
        await b.login("aud1")
        got.append(("aud1", "detail", await b.get(request_page(request_id))))
        page = request_page(request_id)
        got.append(("aud1", "search", await b.form(page, f"/console/requests/{request_id}/search?lang=en")))
        got.append(
            (
                "aud1",
                "close",
                await b.form(page, f"/console/requests/{request_id}/close?lang=en", outcome="withdrawn"),
            )
        )

    browser = browse(a, net.password, scenario)
    for (user, path, expected), (_, _, page) in zip(ROLE_CASES, got[: len(ROLE_CASES)], strict=True):
        assert page.status == expected, (user, path, page.status, page.text[:300])
    assert 'data-code="forbidden"' in got[2][2].text and 'data-code="entry_not_found"' in got[7][2].text
    listing = got[1][2].text
    assert 'id="read-only"' in listing and 'id="record-form"' not in listing
    detail = got[-3][2].text
    assert f'data-request="{request_id}"' in listing and 'data-status="open"' in detail
    assert 'id="close-form"' not in detail and 'id="search-form"' not in detail
    assert [g[2].status for g in got[-2:]] == [403, 403]
    assert all('data-code="forbidden"' in g[2].text for g in got[-2:])
    assert subject_row(a, request_id)[:2] == ("open", None)
    check_nothing_personal(browser, [photo("t1.jpg")])


def test_every_request_form_needs_this_sessions_csrf_token(net: LocalNetwork) -> None:
    """Record, search and close without the token, or with another session's, are refused; nothing changes."""
    a = net.node("chain-a")
    made = a.call(
        "POST",
        "/v1/requests",
        "off1",
        {"kind": "deletion", "identity_check": "passport", "image": b64url_encode(photo("t1.jpg"))},
    )
    request_id = made[1]["id"]
    pages: dict[str, Page] = {}

    async def scenario(b: Browser) -> None:
        other = Browser(b.session, b.base, b.password)
        await other.login("off2")
        foreign = await other.csrf("/console/requests?lang=en")
        await b.login("off1")
        data = aiohttp.FormData()
        data.add_field("kind", "deletion")
        data.add_field("identity_check", "passport")
        data.add_field("photo", photo("t1.jpg"), filename="counter.jpg", content_type="image/jpeg")
        pages["record"] = await b.post("/console/requests?lang=en", data)
        pages["search"] = await b.post(f"/console/requests/{request_id}/search?lang=en", {})
        pages["close"] = await b.post(
            f"/console/requests/{request_id}/close?lang=en", {"csrf": foreign, "outcome": "withdrawn"}
        )
        pages["close-wrong"] = await b.post(
            f"/console/requests/{request_id}/close?lang=en", {"csrf": "x" * 43, "outcome": "withdrawn"}
        )

    before = len(a.call("GET", "/v1/requests", "off1")[1]["requests"])
    browse(a, net.password, scenario)
    for name, page in pages.items():
        assert page.status == 403 and 'data-code="csrf"' in page.text, (name, page.status, page.text[:300])
    assert len(a.call("GET", "/v1/requests", "off1")[1]["requests"]) == before
    assert subject_row(a, request_id)[0] == "open"
    assert a.call("GET", f"/v1/requests/{request_id}", "off1")[1]["searched_at"] is None


def test_a_deletion_request_is_searched_refused_where_the_law_says_and_closed_with_receipts(
    net: LocalNetwork,
) -> None:
    """From the counter to "granted": every closing the rules forbid is refused with its reason."""
    a = net.node("chain-a")
    entry_id = register_photo(a, photo("yaoming.jpg"))
    pages: dict[str, Page] = {}
    ids: dict[str, str] = {}

    async def scenario(b: Browser) -> None:
        await b.login("off1")
        request_id = await b.record("deletion", photo("yaoming.jpg"))
        ids["request"] = request_id
        page, base = request_page(request_id), f"/console/requests/{request_id}"
        pages["recorded"] = await b.get(page)
        pages["early"] = await b.form(page, f"{base}/close?lang=en", outcome="granted")
        pages["search"] = await b.form(page, f"{base}/search?lang=en")
        for name, fields in {
            "art-33-2": {"outcome": "refused", "ground": "art-33-2-i"},
            "no-ground": {"outcome": "refused", "ground": ""},
            "ground-on-withdrawal": {"outcome": "withdrawn", "ground": "cabinet-order-5-iv"},
            "not-yet": {"outcome": "granted", "ground": ""},
            "disclosed": {"outcome": "disclosed"},
        }.items():
            pages[name] = await b.form(page, f"{base}/close?lang=en", **fields)
        status, _ = a.call(
            "POST", f"/v1/entries/{entry_id}/delete", "off2", {"reason": "data-subject-request"}
        )
        assert status == 200
        for _ in range(60):
            pages["granted"] = await b.form(page, f"{base}/close?lang=en", outcome="granted", ground="")
            if pages["granted"].status == 303:
                break
            await asyncio.sleep(0.5)
        pages["closed"] = await b.get(page)
        pages["closed-ja"] = await b.get(request_page(request_id, "ja"))
        pages["list"] = await b.get("/console/requests?lang=en")

    browser = browse(a, net.password, scenario)
    request_id = ids["request"]
    recorded = pages["recorded"].text
    assert "Recorded. Next, run the disclosure search." in recorded
    assert (
        'data-status="open"' in recorded and "Held encrypted" in recorded and 'id="not-searched"' in recorded
    )
    options = re.findall(r'<option value="([a-z0-9-]*)"', recorded)
    assert options[:4] == ["granted", "nothing-held", "refused", "withdrawn"]
    assert "art-33-2-i" not in options and "cabinet-order-5-iv" in options
    assert pages["early"].status == 409 and "close as nothing-held instead" in pages["early"].text
    search = pages["search"].text
    assert pages["search"].status == 200, search[:500]
    assert f'<tr data-entry="{entry_id}" data-owner="chain-a">' in search
    assert '<tr data-member="chain-b" data-answer="ok">' in search and 'id="search-incomplete"' not in search
    refusals = {
        "art-33-2": (409, "request_outcome", "allows refusing a disclosure, not a deletion"),
        "no-ground": (409, "request_outcome", "a refusal must name its legal ground"),
        "ground-on-withdrawal": (409, "request_outcome", "is given only with the outcome &#39;refused&#39;"),
        "not-yet": (409, "wrong_state", f"entry {entry_id} is still active"),
        "disclosed": (409, "request_outcome", "a deletion request ends as one of"),
    }
    for name, (status, code, reason) in refusals.items():
        page = pages[name]
        assert (page.status, f'data-code="{code}"' in page.text, reason in page.text) == (
            status,
            True,
            True,
        ), (
            name,
            page.status,
            page.text[:800],
        )
        assert f'href="/console/requests/{request_id}?lang=en"' in page.text
    assert pages["granted"].status == 303, pages["granted"].text[:800]
    closed = pages["closed"].text
    assert "Closed: the photo and face data were erased." in closed
    assert 'data-status="closed"' in closed and 'data-outcome="granted"' in closed
    assert '<tr data-member="chain-b">' in closed and entry_id in closed and "Purged" in closed
    assert 'id="close-form"' not in closed and 'id="search-form"' not in closed and "Not held" in closed
    assert "対応済み（受領証で確認）" in pages["closed-ja"].text and "消去済み" in pages["closed-ja"].text
    assert f'<tr data-request="{request_id}" data-outcome="granted">' in pages["list"].text
    assert subject_row(a, request_id) == ("closed", "granted", None, None, None)
    check_nothing_personal(browser, [photo("yaoming.jpg")])


def test_a_disclosure_is_refused_only_on_a_legal_ground_shown_in_both_languages(net: LocalNetwork) -> None:
    """Art. 33-2 grounds are offered for a disclosure; the ground chosen is recorded and shown."""
    b_node = net.node("chain-b")
    pages: dict[str, Page] = {}
    ids: dict[str, str] = {}

    async def scenario(b: Browser) -> None:
        await b.login("off1")
        request_id = await b.record("disclosure", photo("t1.jpg"), identity_check="my-number-card")
        ids["request"] = request_id
        page, base = request_page(request_id), f"/console/requests/{request_id}"
        pages["recorded"] = await b.get(page)
        pages["unsearched"] = await b.form(page, f"{base}/close?lang=en", outcome="disclosed", ground="")
        pages["search"] = await b.form(page, f"{base}/search?lang=en")
        pages["no-ground"] = await b.form(page, f"{base}/close?lang=en", outcome="refused", ground="")
        pages["bad-ground"] = await b.form(page, f"{base}/close?lang=en", outcome="refused", ground="art-99")
        pages["refused"] = await b.form(
            page, f"{base}/close?lang=en", outcome="refused", ground="art-33-2-ii"
        )
        pages["again"] = await b.form(page, f"{base}/close?lang=en", outcome="refused", ground="art-33-2-ii")
        pages["en"] = await b.get(page)
        pages["ja"] = await b.get(request_page(request_id, "ja"))

    browser = browse(b_node, net.password, scenario)
    request_id = ids["request"]
    options = re.findall(r'<option value="([a-z0-9-]*)"', pages["recorded"].text)
    assert options[:4] == ["disclosed", "nothing-held", "refused", "withdrawn"] and "art-33-2-ii" in options
    assert "My Number card" in pages["recorded"].text
    assert pages["unsearched"].status == 409 and "run the disclosure search first" in pages["unsearched"].text
    search = pages["search"].text
    assert 'id="report-empty"' in search and '<tr data-member="chain-a" data-answer="ok">' in search
    assert pages["no-ground"].status == 409 and "legal ground" in pages["no-ground"].text
    assert pages["bad-ground"].status == 400 and 'data-code="malformed"' in pages["bad-ground"].text
    assert pages["refused"].status == 303
    assert pages["again"].status == 409 and 'data-code="wrong_state"' in pages["again"].text
    assert (
        "APPI Art. 33-2 (ii)" in pages["en"].text
        and "seriously hinder the proper conduct" in pages["en"].text
    )
    assert "法第33条第2項第2号" in pages["ja"].text and "業務の適正な実施に著しい支障" in pages["ja"].text
    assert subject_row(b_node, request_id) == ("closed", "refused", "art-33-2-ii", None, None)
    check_nothing_personal(browser, [photo("t1.jpg")])


def test_an_overdue_request_is_flagged_in_the_queue(net: LocalNetwork) -> None:
    """A request past its deadline is marked overdue in the queue and counted in its caption."""
    a = net.node("chain-a")
    now = datetime.now(UTC).replace(microsecond=0)
    status, made = a.call(
        "POST",
        "/v1/requests",
        "off1",
        {
            "kind": "correction",
            "identity_check": "drivers-licence",
            "image": b64url_encode(photo("t1.jpg")),
            "received_at": (now - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "deadline": (now - timedelta(days=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    assert status == 201, made
    pages: list[Page] = []

    async def scenario(b: Browser) -> None:
        await b.login("aud1")
        pages.append(await b.get("/console/requests?lang=en"))
        pages.append(await b.get("/console/requests?lang=ja"))

    browse(a, net.password, scenario)
    en, ja = pages
    assert f'<tr data-request="{made["id"]}" data-overdue="yes">' in en.text
    open_ids = re.findall(r'<tr data-request="(req-[0-9a-f]+)" data-overdue=', en.text)
    assert open_ids[0] == made["id"], "the queue is ordered by deadline, the overdue one first"
    overdue = len(re.findall(r'data-overdue="yes"', en.text))
    assert f"{len(open_ids)} open request(s), {overdue} overdue" in en.text and "⚠ Overdue" in en.text
    assert "期限超過" in ja.text and "<caption>対応中の請求" in ja.text


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeContext]:
    with loaded_node(tmp_path_factory.mktemp("console-complaints")) as made:
        yield made.context


def serve(context: NodeContext, clock: Clock, scenario: Callable[[Browser], Awaitable[None]]) -> Browser:
    """The node's application in this process, with ``clock``; one browser on it."""

    async def go() -> Browser:
        server = TestServer(build_app(context, clock=clock, sweep=False, federate=False))
        await server.start_server()
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        try:
            browser = Browser(client.session, str(server.make_url("")).rstrip("/"), PASSWORD)
            await scenario(browser)
            return browser
        finally:
            await client.close()
            await server.close()

    return asyncio.run(go())


def test_complaints_show_deadlines_turn_overdue_and_close_with_a_note(local: NodeContext) -> None:
    """A public complaint is due in 14 days, flagged after that, and closes only with a note."""
    clock = Clock()
    pages: dict[str, Page] = {}
    ids: list[str] = []

    async def scenario(b: Browser) -> None:
        for summary in ("Stopped at the entrance by mistake.", "Where is the notice <b>posted</b>?"):
            async with b.session.post(
                f"{b.base}/v1/complaints",
                json={"category": "misidentification", "summary": summary, "contact": "someone@example.jp"},
            ) as response:
                assert response.status == 201
                ids.append((await response.json())["reference"])
        await b.login("off1")
        pages["fresh"] = await b.get("/console/complaints?lang=en")
        clock.now += COMPLAINT_DEADLINE + timedelta(minutes=1)
        await b.login("off1")
        pages["late"] = await b.get("/console/complaints?lang=ja")
        close = f"/console/complaints/{ids[0]}/close?lang=en"
        pages["no-note"] = await b.form("/console/complaints?lang=en", close, outcome="resolved", note="  ")
        pages["bad-outcome"] = await b.form("/console/complaints?lang=en", close, outcome="ignored", note="x")
        pages["no-csrf"] = await b.post(close, {"outcome": "resolved", "note": "Apologised."})
        pages["closed"] = await b.form(
            "/console/complaints?lang=en", close, outcome="resolved", note="Apologised and checked the alert."
        )
        pages["after"] = await b.get("/console/complaints?lang=en")
        pages["twice"] = await b.form("/console/complaints?lang=en", close, outcome="resolved", note="Again.")
        await b.login("aud1")
        pages["auditor"] = await b.get("/console/complaints?lang=en")
        pages["auditor-close"] = await b.form(
            "/console/complaints?lang=en",
            f"/console/complaints/{ids[1]}/close?lang=en",
            outcome="resolved",
            note="x",
        )

    browser = serve(local, clock, scenario)
    fresh, late = pages["fresh"].text, pages["late"].text
    due = LocalTimes("en", ZoneInfo("Asia/Tokyo")).when(clock.now - timedelta(minutes=1))
    assert due.endswith("+0900"), "an English page shows the node's zone too"
    assert all(f'<tr data-complaint="{i}" data-overdue="no">' in fresh for i in ids)
    assert due in fresh and "someone@example.jp" in fresh
    assert "Where is the notice &lt;b&gt;posted&lt;/b&gt;?" in fresh and "<b>posted</b>" not in fresh
    assert all(f'<tr data-complaint="{i}" data-overdue="yes">' in late for i in ids)
    assert "対応中の苦情 2 件（うち期限超過 2 件）" in late
    assert pages["no-note"].status == 400 and "needs a note" in pages["no-note"].text
    assert pages["bad-outcome"].status == 400 and 'data-code="malformed"' in pages["bad-outcome"].text
    assert pages["no-csrf"].status == 403 and 'data-code="csrf"' in pages["no-csrf"].text
    assert pages["closed"].status == 303
    after = pages["after"].text
    assert "The complaint was closed." in after
    assert f'<tr data-complaint="{ids[0]}" data-outcome="resolved">' in after
    assert "Apologised and checked the alert." in after
    assert pages["twice"].status == 409 and 'data-code="wrong_state"' in pages["twice"].text
    auditor = pages["auditor"].text
    assert 'id="read-only"' in auditor and "someone@example.jp" not in auditor
    assert 'action="/console/complaints/' not in auditor
    assert pages["auditor-close"].status == 403
    for path, _, headers in browser.seen:
        if "/console/" in path:
            assert headers.get("Cache-Control") == "no-store", path


PAGES = ["/console/requests", "/console/complaints"]


def test_request_pages_render_in_both_languages_with_captioned_tables(net: LocalNetwork) -> None:
    """Each page fully in Japanese and English, with the switch link, captions and a token per form."""
    a = net.node("chain-a")
    pages: list[tuple[str, str, Page]] = []

    async def scenario(b: Browser) -> None:
        await b.login("off1")
        listing = await b.get("/console/requests?lang=en")
        ids = sorted(set(re.findall(r'data-request="(req-[0-9a-f]+)"', listing.text)))
        for path in [*PAGES, *(f"/console/requests/{i}" for i in ids[:2])]:
            for lang in ("ja", "en"):
                pages.append((path, lang, await b.get(f"{path}?lang={lang}")))

    browse(a, net.password, scenario)
    assert len(pages) >= 6
    for path, lang, page in pages:
        assert page.status == 200, (path, lang, page.text[:300])
        assert f'<html lang="{lang}">' in page.text
        other = "en" if lang == "ja" else "ja"
        assert f'href="{path}?lang={other}" hreflang="{other}"' in page.text
        assert page.text.count('method="post"') == page.text.count('name="csrf"')
        assert page.text.count("<table") == page.text.count("<caption>")
    assert any("本人からの請求" in p.text for _, lang, p in pages if lang == "ja")
    assert any("Open requests" in p.text for _, lang, p in pages if lang == "en")
