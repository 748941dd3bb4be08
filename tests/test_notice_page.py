"""The public notice page (R2, R3, R8): generated from the manifest and the node's settings, public, bilingual.

The page is served by the real handlers on a real ``NodeContext`` loaded from a node directory
made by ``watchnet init``; the manifest is changed the way a running node changes it (a signed
next version offered to its ``ManifestStore``), and the page follows.
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from governance.description import set_member_status
from governance.manifest import LocalizedText, Manifest, MemberStatus
from governance.notice import (
    JOINT_USE_SECTIONS,
    SiteSignage,
    choose_language,
    current_members,
    negotiate_language,
    render_notice,
)
from node.config import NodeConfig, NoticeSettings
from node.context import NodeContext
from node.http.notice import CACHE_CONTROL, NOTICE_PATHS, add_notice_routes
from node.org.server import build_gov_app
from node.reporting.notice_pages import node_notice
from protocol.errors import ConfigurationError
from tests.factories import KEYS, make_manifest, signed_manifest
from tests.nodeproc import cli

URL = "https://a-mart.example/notice"
SETTINGS = NoticeSettings(
    url=URL,
    operator=LocalizedText("株式会社Aマート", "A-Mart Co., Ltd."),
    address=LocalizedText("東京都渋谷区道玄坂1-2-3", "1-2-3 Dogenzaka, Shibuya-ku, Tokyo"),
    contact=LocalizedText("お客様相談室 privacy@a-mart.example", "Customer desk privacy@a-mart.example"),
    recording_retention=timedelta(days=30),
    sites=(
        SiteSignage("shibuya-01", LocalizedText("渋谷店", "Shibuya store"), ("entrance",), date(2026, 11, 1)),
        SiteSignage("ikebukuro-02", LocalizedText("池袋店", "Ikebukuro store")),
    ),
)
KEY: web.AppKey[NodeContext] = web.AppKey("notice-test-context", NodeContext)


def make_node(root: Path, notice: NoticeSettings = SETTINGS) -> NodeContext:
    """A node directory made by ``watchnet init`` (as ``NodeProcess.create`` does, without staff:
    the notice needs no account), with ``[notice]`` settings, loaded as a running node loads it."""
    manifest = root / "group-manifest.json"
    now = datetime.now(UTC).replace(microsecond=0)
    manifest.write_bytes(signed_manifest(make_manifest(now=now), KEYS[0], KEYS[1]).to_bytes())
    directory = root / "node"
    roots = [a for k in KEYS for a in ("--root-keyid", k.keyid)]
    cli("init", str(directory), "--node-id", "chain-a", "--manifest", str(manifest), *roots)
    config = NodeConfig.load(directory)
    (directory / "config.toml").write_text(replace(config, notice=notice).to_toml(), encoding="utf-8")
    return NodeContext.load(directory)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeContext]:
    context = make_node(tmp_path_factory.mktemp("notice"))
    yield context
    context.engine.dispose()


class Page(HTMLParser):
    """What a reader sees: the language, headings, links, and per section its list items, fields, paragraphs."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.lang = ""
        self.links: list[dict[str, str | None]] = []
        self.images: list[dict[str, str | None]] = []
        self.headings: list[str] = []
        self.sections: dict[str, dict[str, list[str]]] = {}
        self.order: list[str] = []
        self._stack: list[str] = []
        self._capture: str | None = None
        self._buffer = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang") or ""
        elif tag == "section":
            sid = a.get("id") or ""
            self._stack.append(sid)
            self.sections[sid] = {"li": [], "dt": [], "dd": [], "p": [], "h": []}
            self.order.append(sid)
        elif tag == "a":
            self.links.append(a)
        elif tag == "img":
            self.images.append(a)
        if tag in {"li", "dt", "dd", "p", "h1", "h2", "h3"}:
            self._capture, self._buffer = tag, ""

    def handle_data(self, data: str) -> None:
        if self._capture is not None:
            self._buffer += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._stack.pop()
        elif tag == self._capture:
            if tag.startswith("h"):
                self.headings.append(self._buffer)
            if self._stack:
                self.sections[self._stack[-1]]["h" if tag.startswith("h") else tag].append(self._buffer)
            self._capture = None


async def _with_client(
    app: web.Application, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]
) -> None:
    async with TestClient(TestServer(app)) as client:
        await scenario(client)


def node_app(context: NodeContext) -> web.Application:
    app = web.Application()
    app[KEY] = context
    add_notice_routes(app, KEY)
    return app


def fetch(
    context: NodeContext, path: str, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    result: list[Any] = []

    async def scenario(client: TestClient[Any, Any]) -> None:
        response = await client.get(path, headers=headers or {})
        result.extend([response.status, CIMultiDict(response.headers), await response.read()])

    asyncio.run(_with_client(node_app(context), scenario))
    return result[0], result[1], result[2]


def page(context: NodeContext, path: str = "/notice", headers: dict[str, str] | None = None) -> Page:
    status, _, body = fetch(context, path, headers)
    assert status == 200, body
    return Page(body.decode("utf-8"))


def assert_shows_exactly(p: Page, manifest: Manifest, lang: str) -> None:
    joint = manifest.joint_use
    admin = joint.administrator
    inside = [s for s in p.order if s.startswith("joint-use-")]
    assert inside == list(JOINT_USE_SECTIONS)
    assert p.sections["joint-use-fact"]["p"][0] == joint.statement.get(lang)
    assert p.sections["joint-use-items"]["li"] == [i.text.get(lang) for i in joint.items]
    assert p.sections["joint-use-members"]["li"] == [
        f"{name.get(lang)} ({node_id})" for node_id, name in current_members(manifest)
    ]
    assert p.sections["joint-use-purposes"]["li"] == [x.text.get(lang) for x in joint.purposes]
    assert p.sections["joint-use-administrator"]["dd"] == [
        admin.name.get(lang),
        admin.address.get(lang),
        admin.representative.get(lang),
    ]
    assert p.sections["purposes"]["li"] == [x.text.get(lang) for x in joint.purposes]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_page_shows_exactly_the_manifests_five_items_and_the_operator(
    context: NodeContext, lang: str
) -> None:
    p = page(context, f"/notice?lang={lang}")
    assert p.lang == lang
    assert_shows_exactly(p, context.manifest, lang)
    operator = dict(zip(p.sections["operator"]["dt"], p.sections["operator"]["dd"], strict=True))
    assert SETTINGS.operator is not None and SETTINGS.operator.get(lang) in operator.values()
    assert SETTINGS.contact is not None and SETTINGS.contact.get(lang) in operator.values()
    assert SETTINGS.address is not None and SETTINGS.address.get(lang) in operator.values()
    signage = p.sections["signage"]["li"]
    posted = "2026年11月1日" if lang == "ja" else "1 Nov 2026"
    assert len(signage) == 2 and posted in signage[0] and "(shibuya-01)" in signage[0]
    assert "2026" not in signage[1] and ("掲示準備中" if lang == "ja" else "not yet posted") in signage[1]
    retention = " ".join(p.sections["retention"]["li"])
    assert str(context.rules.retention_days) in retention and "30" in retention
    requests = p.sections["requests"]["dd"]
    assert requests == [
        SETTINGS.contact.get(lang),
        context.manifest.joint_use.administrator.contact.get(lang),
    ]
    acquired = " ".join(p.sections["acquired"]["li"])
    assert ("顔識別データ" if lang == "ja" else "Face-recognition data") in acquired
    assert [img["src"] for img in p.images] == ["notice/qr.svg"]
    assert any(link["href"] == URL for link in p.links)


def test_page_changes_when_the_manifest_changes(tmp_path: Path) -> None:
    context = make_node(tmp_path)
    try:
        v1 = context.manifest
        before = page(context, "/notice?lang=en")
        assert "B-Store Inc. (chain-b)" in before.sections["joint-use-members"]["li"]
        renamed = replace(
            v1.joint_use.administrator,
            name=LocalizedText("新・小売防犯機構", "New Retail Privacy Org"),
            representative=LocalizedText("代表理事 佐藤 花子", "Hanako Sato, Representative Director"),
        )
        v2 = set_member_status(v1, "chain-b", MemberStatus.SUSPENDED)
        v2 = replace(v2, joint_use=replace(v2.joint_use, administrator=renamed))
        now = datetime.now(UTC).replace(microsecond=0)
        assert (
            context.manifests.offer(signed_manifest(v2, KEYS[0], KEYS[1]), now, "test").outcome == "accepted"
        )
        for lang in ("ja", "en"):
            after = page(context, f"/notice?lang={lang}")
            assert_shows_exactly(after, context.manifest, lang)
            members = after.sections["joint-use-members"]["li"]
            assert not any("chain-b" in m for m in members) and any("chain-a" in m for m in members)
        assert "New Retail Privacy Org" in after.sections["joint-use-administrator"]["dd"]
        assert (
            "Retail Security Data Protection Organisation"
            not in after.sections["joint-use-administrator"]["dd"]
        )
        status, _, body = fetch(context, "/notice?lang=en")
        assert status == 200 and b"version 2 of the group manifest" in body
        # this node itself suspended: the page says it does not take part now
        v3 = set_member_status(context.manifest, "chain-a", MemberStatus.SUSPENDED)
        context.manifests.offer(signed_manifest(v3, KEYS[0], KEYS[1]), now, "test")
        fact = page(context, "/notice?lang=en").sections["joint-use-fact"]["p"]
        assert len(fact) == 2 and "does not currently take part" in fact[1] and "suspended" in fact[1]
    finally:
        context.engine.dispose()


@pytest.mark.parametrize(
    ("path", "accept", "expected"),
    [
        ("/notice", None, "ja"),
        ("/notice", "en-US,en;q=0.9", "en"),
        ("/notice", "ja-JP,ja;q=0.9,en;q=0.8", "ja"),
        ("/notice", "fr-FR, en;q=0.5", "en"),
        ("/notice", "fr, de", "ja"),
        ("/notice?lang=ja", "en", "ja"),
        ("/notice?lang=en", "ja", "en"),
    ],
)
def test_language_by_accept_language_and_switch(
    context: NodeContext, path: str, accept: str | None, expected: str
) -> None:
    status, headers, body = fetch(context, path, {"Accept-Language": accept} if accept else None)
    assert status == 200
    assert headers["Content-Language"] == expected and "Accept-Language" in headers["Vary"]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    p = Page(body.decode("utf-8"))
    assert p.lang == expected
    other = "en" if expected == "ja" else "ja"
    switch = [link for link in p.links if link.get("hreflang") == other]
    assert len(switch) == 1 and switch[0]["href"] == f"?lang={other}" and switch[0]["lang"] == other
    assert p.headings[0] == node_notice(context.manifest, context.config, expected).title


def test_unknown_lang_is_refused(context: NodeContext) -> None:
    status, _, body = fetch(context, "/notice?lang=fr")
    assert status == 400 and b"ja, en" in body


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "ja"),
        ("", "ja"),
        ("en", "en"),
        ("EN-gb", "en"),
        ("en;q=0.3, ja;q=0.7", "ja"),
        ("en;q=0.7, ja;q=0.7", "en"),
        ("ja;q=0, en;q=0", "ja"),
        ("ja;q=0", "en"),
        ("*", "ja"),
        ("en;q=2", "ja"),
        ("garbage;;;, en", "en"),
        ("x" * 2000, "ja"),
    ],
)
def test_negotiate_language(header: str | None, expected: str) -> None:
    assert negotiate_language(header) == expected


def test_choose_language_refuses_an_unsupported_query() -> None:
    assert choose_language("en", "ja") == "en"
    with pytest.raises(ValueError, match="'fr'"):
        choose_language("fr", None)


def test_public_cacheable_hardened_and_escaped(context: NodeContext) -> None:
    status, headers, body = fetch(context, "/notice")
    assert status == 200  # no Authorization header: the notice needs no login
    assert headers["Cache-Control"].startswith("public, max-age=")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script" not in body and b"http://" not in body.replace(b"http://www.w3.org", b"")
    assert (fetch(context, "/notice", {"If-None-Match": headers["ETag"]}))[0] == 304
    hostile = LocalizedText('A&B <script>alert("x")</script>', 'A&B <script>alert("x")</script>')
    evil = replace(context, config=replace(context.config, notice=replace(SETTINGS, operator=hostile)))
    _, _, body = fetch(evil, "/notice?lang=en")
    assert b"<script>" not in body and b"A&amp;B &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


def rasterize_segno_svg(svg: bytes, scale: int = 10) -> np.ndarray:
    """Draw segno's SVG path (``M``/``m`` moves, ``h`` runs of 1-module-wide strokes) into a bitmap."""
    root = ET.fromstring(svg)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    path = next(p for p in root.iterfind(".//svg:path", ns) if p.get("class") == "qrline")
    background = next(p for p in root.iterfind(".//svg:path", ns) if p.get("class") is None)
    size = int(re.fullmatch(r"M0 0h(\d+)v\d+h-\d+z", background.get("d", "")).group(1))  # type: ignore[union-attr]
    image = np.full((size * scale, size * scale), 255, np.uint8)
    x = y = 0.0
    for command, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?:\s(-?[\d.]+))?", path.get("d", "")):
        if command == "M":
            x, y = float(a), float(b)
        elif command == "m":
            x, y = x + float(a), y + float(b)
        else:
            row, start, end = int(y - 0.5), int(x), int(x + float(a))
            image[row * scale : (row + 1) * scale, start * scale : end * scale] = 0
            x += float(a)
    return image


def decode(image: np.ndarray) -> str:
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return str(text)


def decode_png(png: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "not a decodable image"
    return decode(image)


def test_qr_png_and_svg_decode_to_the_notice_url(context: NodeContext) -> None:
    status, headers, png = fetch(context, "/notice/qr.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and png.startswith(b"\x89PNG")
    assert decode_png(png) == URL
    status, headers, svg = fetch(context, "/notice/qr.svg")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find("{http://www.w3.org/2000/svg}title").text == URL  # type: ignore[union-attr]
    assert decode(rasterize_segno_svg(svg)) == URL


def test_qr_without_a_configured_url_points_at_this_server(context: NodeContext) -> None:
    bare = replace(context, config=replace(context.config, notice=NoticeSettings()))
    status, _, png = fetch(bare, "/notice/qr.png")
    found = decode_png(png)
    assert status == 200 and re.fullmatch(r"http://127\.0\.0\.1:\d+/notice", found), found


FORGED_HOST = {"Host": "evil.example"}


def test_a_forged_host_header_never_reaches_the_nodes_qr_code(context: NodeContext) -> None:
    status, headers, png = fetch(context, "/notice/qr.png", FORGED_HOST)
    assert status == 200 and decode_png(png) == URL
    bare = replace(context, config=replace(context.config, notice=NoticeSettings()))
    listen = f"http://{bare.config.host}:{bare.config.port}/notice"
    for path in ("/notice/qr.png", "/notice/qr.svg"):
        status, headers, body = fetch(bare, path, FORGED_HOST)
        found = decode_png(body) if path.endswith(".png") else decode(rasterize_segno_svg(body))
        assert status == 200 and found == listen, found  # the configured listen address, not evil.example
        assert b"evil.example" not in body
        # the same bytes whoever asks: publicly cacheable, and it varies by nothing
        assert headers["Cache-Control"] == CACHE_CONTROL and "Vary" not in headers
    _, headers, _ = fetch(bare, "/notice", {**FORGED_HOST, "Accept-Language": "en"})
    assert headers["Vary"] == "Accept-Language" and headers["Content-Language"] == "en"


def test_the_organisations_qr_code_ignores_a_forged_host(tmp_path: Path) -> None:
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_bytes(signed_manifest(make_manifest(), KEYS[0], KEYS[1]).to_bytes())
    results: dict[str | None, tuple[int, CIMultiDict[str], bytes, int]] = {}

    for configured in (None, "https://rsdpo.example/notice"):

        async def scenario(client: TestClient[Any, Any], configured: str | None = configured) -> None:
            response = await client.get("/notice/qr.png", headers=FORGED_HOST)
            port = client.server.port
            assert port is not None
            body = await response.read()
            results[configured] = (response.status, CIMultiDict(response.headers), body, port)

        app = build_gov_app(manifest_path, tmp_path / "reports", notice_url=configured)
        asyncio.run(_with_client(app, scenario))
    status, headers, png, port = results[None]
    assert status == 200 and decode_png(png) == f"http://127.0.0.1:{port}/notice"  # the socket, not Host
    assert headers["Cache-Control"].startswith("private")  # it depends on the connection
    status, headers, png, _ = results["https://rsdpo.example/notice"]
    assert decode_png(png) == "https://rsdpo.example/notice" and headers["Cache-Control"] == CACHE_CONTROL


def test_the_real_node_app_serves_the_notice_without_login(context: NodeContext) -> None:
    from node.app import server as service

    if not NOTICE_PATHS <= service.PUBLIC_PATHS:
        pytest.skip("node/app/server.py does not list notice_http.NOTICE_PATHS in PUBLIC_PATHS yet")
    app = service.build_app(context, sweep=False, federate=False)
    if not any(r.resource is not None and r.resource.canonical == "/notice" for r in app.router.routes()):
        add_notice_routes(app, service.CONTEXT)
    statuses: list[int] = []

    async def scenario(client: TestClient[Any, Any]) -> None:
        for path in sorted(NOTICE_PATHS):
            statuses.append((await client.get(path)).status)

    asyncio.run(_with_client(app, scenario))
    assert statuses == [200, 200, 200]


def test_group_notice_served_by_the_organisation(tmp_path: Path) -> None:
    manifest_path = tmp_path / "manifest.json"
    manifest = make_manifest()
    manifest_path.write_bytes(signed_manifest(manifest, KEYS[0], KEYS[1]).to_bytes())
    results: dict[str, Any] = {}

    async def scenario(client: TestClient[Any, Any]) -> None:
        for name, path, headers in [
            ("ja", "/notice", {}),
            ("en", "/notice", {"Accept-Language": "en-GB,en;q=0.8"}),
            ("text", "/notice.txt?lang=en", {}),
            ("bad", "/notice?lang=fr", {}),
            ("png", "/notice/qr.png", {}),
        ]:
            response = await client.get(path, headers=headers)
            results[name] = (response.status, CIMultiDict(response.headers), await response.read())

    app = build_gov_app(manifest_path, tmp_path / "reports", notice_url="https://rsdpo.example/notice")
    asyncio.run(_with_client(app, scenario))
    for lang in ("ja", "en"):
        status, headers, body = results[lang]
        assert status == 200 and headers["Content-Language"] == lang
        p = Page(body.decode("utf-8"))
        assert_shows_exactly(p, manifest, lang)
        assert "operator" not in p.sections and "signage" not in p.sections
    status, _, text = results["text"]
    assert status == 200 and text.decode("utf-8") == render_notice(manifest, "en")
    assert results["bad"][0] == 400
    png = results["png"][2]
    assert decode_png(png) == "https://rsdpo.example/notice"


def test_notice_settings_round_trip(tmp_path: Path) -> None:
    config = NodeConfig(directory=tmp_path, node_id="chain-a", notice=SETTINGS)
    text = config.to_toml()
    assert "[[notice.sites]]" in text and "signage_posted_on = 2026-11-01" in text
    assert NodeConfig.from_toml(text, tmp_path) == config
    as_string = text.replace("signage_posted_on = 2026-11-01", 'signage_posted_on = "2026-11-01"')
    assert NodeConfig.from_toml(as_string, tmp_path) == config
    assert "[notice]" not in NodeConfig(directory=tmp_path, node_id="chain-a").to_toml()


BASE = 'node_id = "chain-a"\n'
SITE = '[[notice.sites]]\nsite_id = "shibuya-01"\nname = { ja = "渋谷店", en = "Shibuya" }\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[notice]\nurl = "ftp://x.example/notice"\n', "notice.url"),
        ('[notice]\nurl = "https://x.example/a b"\n', "notice.url"),
        ('[notice]\noperator = { ja = "A" }\n', "notice.operator"),
        ('[notice]\ncontact = { ja = "", en = "x" }\n', "notice.contact"),
        (
            '[notice]\nrecording_retention = "12h"\n',
            "notice.recording_retention: 12h is not a whole number of days",
        ),
        (
            '[notice]\nrecording_retention = "3651d"\n',
            "notice.recording_retention: 3651d outside [1d, 3650d]",
        ),
        ('[notice]\nrecording_retention = "soon"\n', "notice.recording_retention"),
        ("[notice]\ncolour = 1\n", "notice: unknown fields ['colour']"),
        (SITE + "signage_posted_on = 2026-13-01\n", "not valid TOML"),
        (SITE + 'signage_posted_on = "yesterday"\n', "notice.sites[0].signage_posted_on"),
        (SITE + 'signage_posted_on = "2026-02-30"\n', "invalid date"),
        (SITE + "signage_posted_on = 2026-11-01T09:00:00\n", "notice.sites[0].signage_posted_on"),
        (SITE + 'cameras = [""]\n', "notice.sites[0].cameras"),
        (SITE + "posted = true\n", "notice.sites[0]: unknown fields ['posted']"),
        (SITE + SITE, "duplicate site_id ['shibuya-01']"),
        (
            '[[notice.sites]]\nsite_id = "Shibuya 01"\nname = { ja = "a", en = "b" }\n',
            "notice.sites[0].site_id",
        ),
    ],
)
def test_notice_settings_errors_name_the_field(toml: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        NodeConfig.from_toml(BASE + toml, tmp_path)


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_empty_sites_text_is_shown_only_without_sites(context: NodeContext, lang: str) -> None:
    """The demo configures its stores (``demo_notice``), so its notice lists them and never says
    that no site is recorded; a node without sites says so."""
    from governance.notice import _T as TEXT
    from node.demo.network import demo_notice

    none = TEXT[lang]["signage_none"]
    with_sites = replace(context.config, notice=demo_notice("chain-a", date(2026, 11, 1)))
    doc = node_notice(context.manifest, with_sites, lang)
    signage = next(s for s in doc.sections if s.id == "signage")
    assert none not in signage.paragraphs
    assert [b.split(" (")[0] for b in signage.bullets] == (
        ["新宿店", "渋谷店"] if lang == "ja" else ["Shinjuku store", "Shibuya store"]
    )
    without = node_notice(context.manifest, replace(context.config, notice=NoticeSettings()), lang)
    assert next(s for s in without.sections if s.id == "signage").paragraphs == (none,)


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_notice_says_how_to_make_a_data_subject_request(context: NodeContext, lang: str) -> None:
    """What may be asked, where, what identity document to bring and within how many days the
    answer comes: defaults, then the business's own words from ``[notice]``."""
    p = page(context, f"/notice?lang={lang}")
    how = " ".join(p.sections["requests-how"]["li"])
    for word in (
        ("開示", "訂正", "削除", "利用停止", "運転免許証", "14日以内")
        if lang == "ja"
        else ("disclosure", "correction", "deletion", "cessation of use", "driving licence", "within 14 days")
    ):
        assert word in how, word
    own = replace(
        context.config.notice,
        request_identity=LocalizedText("在留カード又は運転免許証", "a residence card or a driving licence"),
        request_response_days=10,
    )
    doc = node_notice(context.manifest, replace(context.config, notice=own), lang)
    requests = next(s for s in doc.sections if s.id == "requests")
    bullets = " ".join(requests.subsections[0].bullets)
    assert own.request_identity is not None and own.request_identity.get(lang) in bullets
    assert ("10日以内" if lang == "ja" else "within 10 days") in bullets
    assert ("旅券" if lang == "ja" else "passport") not in bullets


def test_request_settings_round_trip_and_bounds() -> None:
    settings = NoticeSettings(
        request_identity=LocalizedText("在留カード", "residence card"), request_response_days=30
    )
    assert NoticeSettings.from_dict(settings.to_dict()) == settings
    assert NoticeSettings.from_dict({}).request_response_days == 14
    for bad in (0, 61, "14"):
        with pytest.raises(Exception, match="request_response_days"):
            NoticeSettings.from_dict({"request_response_days": bad})
