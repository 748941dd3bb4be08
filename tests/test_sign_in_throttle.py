"""Sign-in throttling (issue 14, section 2): wrong passwords slow and then lock one (account, source
address) pair for a while, and never disable the account.

The console tests drive the node's real application (``build_app`` with an injected clock)
through aiohttp's test server; each browser connects from its own loopback address
(127.0.0.x, bound with ``local_addr``), so the node sees a different ``request.remote`` per
browser exactly as it would for different machines. The throttle's own rules (windows, the
IPv6 /64, concurrent workers) are also checked on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

import node.records.accounts as accounts_module
from governance.roles import Role
from node.app.server import build_app
from node.cli.main import main
from node.records.accounts import (
    DELAY_AFTER,
    LOCK_AFTER,
    LOCK_DURATION,
    LOCK_WINDOW,
    AuthenticationFailed,
    SignInRefused,
    StaffAccounts,
    sign_in_source,
)
from node.storage.engine import make_engine
from node.storage.migrate import upgrade
from tests.console_app import CSRF_RE, Clock, Node, loaded_node
from tests.nodeproc import PASSWORD
from tests.test_console import audit, last_seq

WRONG = "not the right password"
FAILED = "Wrong username or password."
STEP = timedelta(seconds=31)
"""More than the longest delay, so every attempt after it checks the password."""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with loaded_node(tmp_path_factory.mktemp("throttle")) as made:
        yield made


@dataclass
class Browser:
    """One browser on one machine: its own cookie jar and source address."""

    client: TestClient[Any, Any]
    address: str
    bodies: list[str] = field(default_factory=list)

    async def csrf(self, path: str = "/console/login?lang=en") -> str:
        response = await self.client.get(path, allow_redirects=False)
        text = await response.text()
        assert response.status == 200, (path, response.status, text[:300])
        match = CSRF_RE.search(text)
        assert match, text[:300]
        return match.group(1)

    async def login(self, username: str, password: str = PASSWORD) -> tuple[int, str, float]:
        """Post the sign-in form; the status, the page and how long the answer took (seconds)."""
        token = await self.csrf()
        started = time.perf_counter()
        response = await self.client.post(
            "/console/login?lang=en",
            data={"csrf": token, "username": username, "password": password},
            allow_redirects=False,
        )
        text = await response.text()
        elapsed = time.perf_counter() - started
        self.bodies.append(text)
        return response.status, text, elapsed

    async def api(self, path: str, token: str) -> int:
        response = await self.client.get(path, headers={"Authorization": f"Bearer {token}"})
        await response.read()
        return response.status


Browsers = Callable[[str], Awaitable[Browser]]


def serve(node: Node, clock: Clock, scenario: Callable[[Browsers], Awaitable[None]]) -> None:
    """Serve the node's application and hand ``scenario`` a factory of browsers by source address."""

    async def go() -> None:
        app = build_app(node.context, clock=clock, sweep=False, federate=False)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        clients: list[TestClient[Any, Any]] = []

        async def browser(address: str) -> Browser:
            client: TestClient[Any, Any] = TestClient(
                server, connector=aiohttp.TCPConnector(local_addr=(address, 0))
            )
            await client.start_server()
            clients.append(client)
            return Browser(client, address)

        try:
            await scenario(browser)
        finally:
            for client in clients:
                await client.close()
            await server.close()

    asyncio.run(go())


def account_id(node: Node, username: str) -> str:
    return next(m.id for m, _ in node.context.accounts.list() if m.username == username)


def disabled(node: Node, username: str) -> bool:
    return dict((m.username, d) for m, d in node.context.accounts.list())[username]


def add_admin(node: Node, username: str) -> str:
    """A fresh admin account (each test locks its own) and its API token."""
    node.context.accounts.add(username, Role.ADMIN, PASSWORD, datetime.now(UTC))
    return node.context.accounts.issue_token(username, datetime.now(UTC))


async def lock_out(b: Browser, clock: Clock, username: str) -> list[int]:
    """Wrong passwords from ``b``, each after the delay, until the pair is locked."""
    statuses = []
    for _ in range(LOCK_AFTER):
        clock.now += STEP
        status, _, _ = await b.login(username, WRONG)
        statuses.append(status)
    return statuses


def cli(*argv: str) -> tuple[int, str]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(list(argv))
    return code, buffer.getvalue()


# (a) ---------------------------------------------------------------------------------------------


def test_thirty_wrong_passwords_lock_one_source_never_the_account(node: Node) -> None:
    """30 wrong passwords for an admin from one address lock that address only: the account stays
    enabled, its API token answers 200, and the right password works from another address."""
    token = add_admin(node, "adm-a")
    target = account_id(node, "adm-a")
    clock = Clock()
    start = last_seq(node.directory)
    seen: dict[str, Any] = {}

    async def scenario(browser: Browsers) -> None:
        attacker, owner = await browser("127.0.0.2"), await browser("127.0.0.3")
        statuses, pages = [], set()
        for _ in range(30):
            clock.now += STEP
            status, text, _ = await attacker.login("adm-a", WRONG)
            statuses.append(status)
            pages.add(CSRF_RE.sub("", text))
        seen["statuses"], seen["pages"] = statuses, pages
        seen["disabled"] = disabled(node, "adm-a")
        seen["api"] = await attacker.api(f"/v1/report?period={clock.now.year}", token)
        seen["right_from_attacker"] = (await attacker.login("adm-a"))[:2]
        status, _, _ = await owner.login("adm-a")
        seen["owner"] = status
        response = await owner.client.get("/console?lang=en", allow_redirects=False)
        seen["owner_home"] = (response.status, response.headers.get("Location"))

    serve(node, clock, scenario)
    assert seen["statuses"] == [401] * 30
    assert len(seen["pages"]) == 1 and FAILED in next(iter(seen["pages"]))
    assert seen["disabled"] is False and disabled(node, "adm-a") is False
    assert seen["api"] == 200
    status, text = seen["right_from_attacker"]
    assert status == 401 and FAILED in text
    assert seen["owner"] == 303 and seen["owner_home"] == (303, "/console/network?lang=en")
    logins = [r[1:] for r in audit(node.directory, start) if r[2].startswith("console.")]
    assert [r[3] for r in logins if r[1] == "console.login"][: LOCK_AFTER + 1] == [
        *["refused:unauthenticated"] * LOCK_AFTER,
        "refused:locked",
    ]
    assert ("public:127.0.0.2", "console.lockout", target, "locked") in logins
    assert ("public:127.0.0.2", "console.login", target, "refused:locked") in logins
    assert (target, "console.login", target, "ok") in logins
    locks = node.context.accounts.locks(clock.now)
    assert [(lock.username, lock.source, lock.failures) for lock in locks if lock.username == "adm-a"] == [
        ("adm-a", "127.0.0.2", LOCK_AFTER)
    ]


# (b) ---------------------------------------------------------------------------------------------


def test_the_lock_ends_by_itself(node: Node) -> None:
    """Once the lock period has passed the right password works again from the locked address."""
    add_admin(node, "adm-b")
    clock = Clock()
    results: list[tuple[str, int]] = []

    async def scenario(browser: Browsers) -> None:
        b = await browser("127.0.0.4")
        assert await lock_out(b, clock, "adm-b") == [401] * LOCK_AFTER
        locked_at = clock.now
        clock.now = locked_at + LOCK_DURATION - timedelta(seconds=1)
        results.append(("just before", (await b.login("adm-b"))[0]))
        clock.now = locked_at + LOCK_DURATION
        results.append(("after", (await b.login("adm-b"))[0]))

    serve(node, clock, scenario)
    assert results == [("just before", 401), ("after", 303)]
    assert not [lock for lock in node.context.accounts.locks(clock.now) if lock.username == "adm-b"]


# (c) ---------------------------------------------------------------------------------------------


def test_attempts_inside_the_growing_delay_are_refused_without_checking_the_password(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After 3 failures each attempt must wait 1 s, 2 s, 4 s ...; an attempt inside the delay is
    refused (the same page) and verifies only the dummy hash, never the account's."""
    add_admin(node, "adm-c")
    with node.context.engine.connect() as conn:
        real_hash = conn.exec_driver_sql(
            "select password_hash from account where username = 'adm-c'"
        ).scalar_one()
    checked: list[str] = []
    verify = accounts_module._verify

    def spy(password_hash: str, password: str) -> bool:
        checked.append("account" if password_hash == real_hash else "dummy")
        return verify(password_hash, password)

    monkeypatch.setattr(accounts_module, "_verify", spy)
    clock = Clock()
    start = last_seq(node.directory)
    steps: list[tuple[str, int, str]] = []

    async def attempt(b: Browser, label: str, password: str = WRONG) -> None:
        checked.clear()
        status, text, _ = await b.login("adm-c", password)
        steps.append((label, status, checked[0] if checked else "none"))
        assert len(checked) == 1, checked
        assert status == 303 or FAILED in text

    async def scenario(browser: Browsers) -> None:
        b = await browser("127.0.0.5")
        for i in range(DELAY_AFTER):
            await attempt(b, f"failure {i + 1}")
        await attempt(b, "right password inside 1 s", PASSWORD)
        for wait in (1, 2, 4, 8):
            clock.now += timedelta(seconds=wait) - timedelta(milliseconds=500)
            await attempt(b, f"{wait} s - 0.5 s")
            clock.now += timedelta(milliseconds=500)
            await attempt(b, f"{wait} s")
        clock.now += timedelta(seconds=16)
        await attempt(b, "right password after 16 s", PASSWORD)

    serve(node, clock, scenario)
    assert steps == [
        ("failure 1", 401, "account"),
        ("failure 2", 401, "account"),
        ("failure 3", 401, "account"),
        ("right password inside 1 s", 401, "dummy"),
        *[
            step
            for wait in (1, 2, 4, 8)
            for step in ((f"{wait} s - 0.5 s", 401, "dummy"), (f"{wait} s", 401, "account"))
        ],
        ("right password after 16 s", 303, "account"),
    ]
    target = account_id(node, "adm-c")
    outcomes = [r[4] for r in audit(node.directory, start) if r[2] == "console.login" and r[3] == target]
    assert outcomes == [
        *["refused:unauthenticated"] * 3,
        "refused:throttled",
        *["refused:throttled", "refused:unauthenticated"] * 4,
        "ok",
    ]
    assert disabled(node, "adm-c") is False


# (d) ---------------------------------------------------------------------------------------------


def test_unknown_locked_and_wrong_take_the_same_time_and_say_the_same_words(node: Node) -> None:
    """Medians of 15 attempts each (unknown account, locked pair, wrong password) are within 20% of
    each other, and every answer is the same page apart from its CSRF token."""
    add_admin(node, "adm-d")
    clock = Clock()
    times: dict[str, list[float]] = {"unknown": [], "locked": [], "wrong": []}
    pages: dict[str, set[tuple[int, str]]] = {k: set() for k in times}

    async def scenario(browser: Browsers) -> None:
        locked = await browser("127.0.0.6")
        await lock_out(locked, clock, "adm-d")
        unknown = await browser("127.0.0.7")
        wrong = [await browser(f"127.0.0.{10 + i}") for i in range(5)]  # 3 checked attempts each
        for b in (unknown, locked, wrong[0]):  # warm up connections, no timing
            await b.csrf()
        for i in range(15):
            for kind, b, username in (
                ("unknown", unknown, "nobody-like-this"),
                ("locked", locked, "adm-d"),
                ("wrong", wrong[i // DELAY_AFTER], "adm-d"),
            ):
                status, text, elapsed = await b.login(username, WRONG)
                times[kind].append(elapsed)
                pages[kind].add((status, CSRF_RE.sub('name="csrf" value=""', text)))

    serve(node, clock, scenario)
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    print("sign-in medians (ms):", {k: round(v * 1000, 1) for k, v in medians.items()})
    assert max(medians.values()) <= 1.2 * min(medians.values()), medians
    assert len(set.union(*pages.values())) == 1, {k: len(v) for k, v in pages.items()}
    status, text = next(iter(pages["unknown"]))
    assert status == 401 and FAILED in text
    outcomes = [
        r[4] for r in audit(node.directory) if r[2] == "console.login" and r[3] == account_id(node, "adm-d")
    ]
    assert outcomes.count("refused:locked") == 15 and outcomes.count("refused:unauthenticated") == 25


# (e) ---------------------------------------------------------------------------------------------


def test_admins_list_and_clear_locks_with_the_cli(node: Node) -> None:
    """``watchnet user locks --json`` lists the lock, ``watchnet user unlock`` clears it (audited),
    and the right password then works from the address that was locked."""
    add_admin(node, "adm-e")
    target = account_id(node, "adm-e")
    clock = Clock()
    seen: dict[str, Any] = {}

    async def lock(browser: Browsers) -> None:
        await lock_out(await browser("127.0.0.20"), clock, "adm-e")

    serve(node, clock, lock)
    directory = str(node.directory)
    code, out = cli("user", "locks", "--node", directory, "--json")
    assert code == 0
    listed = [item for item in json.loads(out) if item["username"] == "adm-e"]
    assert len(listed) == 1 and listed[0]["source"] == "127.0.0.20"
    assert listed[0]["failures"] == LOCK_AFTER and listed[0]["account_id"] == target
    assert datetime.fromisoformat(listed[0]["locked_until"]) > datetime.now(UTC)
    code, out = cli("user", "locks", "--node", directory)
    assert code == 0 and "adm-e" in out and "127.0.0.20" in out
    start = last_seq(node.directory)
    code, out = cli("user", "unlock", "--node", directory, "adm-e", "--source", "127.0.0.99", "--json")
    assert code == 0 and json.loads(out)["cleared"] == 0
    code, out = cli("user", "unlock", "--node", directory, "adm-e", "--json")
    assert code == 0 and json.loads(out) == {"username": "adm-e", "source": None, "cleared": 1}
    code, out = cli("user", "locks", "--node", directory, "--json")
    assert not [item for item in json.loads(out) if item["username"] == "adm-e"]
    records = [r[1:] for r in audit(node.directory, start)]
    assert [r[1:] for r in records] == [
        ("account.unlock", target, "cleared:127.0.0.99"),
        ("account.unlock", target, "cleared:all"),
    ]
    assert all(r[0].startswith("host") for r in records)
    assert cli("user", "unlock", "--node", directory, "no-such-user")[0] == 1

    async def sign_in(browser: Browsers) -> None:
        seen["status"] = (await (await browser("127.0.0.20")).login("adm-e"))[0]

    serve(node, clock, sign_in)
    assert seen["status"] == 303


def test_admins_see_and_clear_locks_on_the_console(node: Node) -> None:
    """The admin's network page lists each locked pair with a clear button (CSRF-checked, audited);
    other roles neither see the list nor may clear."""
    add_admin(node, "adm-f")
    target = account_id(node, "adm-f")
    clock = Clock()
    seen: dict[str, Any] = {}

    async def scenario(browser: Browsers) -> None:
        victim, admin, officer = (
            await browser("127.0.0.30"),
            await browser("127.0.0.31"),
            await browser("127.0.0.32"),
        )
        await lock_out(victim, clock, "adm-f")
        assert (await admin.login("adm1"))[0] == 303
        response = await admin.client.get("/console/network?lang=en")
        page = await response.text()
        seen["row"] = 'data-account="adm-f" data-source="127.0.0.30" data-locked="yes"' in page
        response = await admin.client.get("/console/network?lang=ja")
        seen["ja"] = "ログインの一時ロック" in await response.text()
        form = {"username": "adm-f", "source": "127.0.0.30"}
        response = await admin.client.post(
            "/console/network/locks/clear?lang=en", data=form, allow_redirects=False
        )
        seen["no_csrf"] = response.status
        assert (await officer.login("off1"))[0] == 303
        token = await officer.csrf("/console/officer?lang=en")
        response = await officer.client.post(
            "/console/network/locks/clear?lang=en", data={"csrf": token, **form}, allow_redirects=False
        )
        seen["officer"] = response.status
        response = await officer.client.get("/console/network?lang=en")
        seen["officer_sees"] = "sign-in-locks" in await response.text()
        token = await admin.csrf("/console/network?lang=en")
        start = last_seq(node.directory)
        response = await admin.client.post(
            "/console/network/locks/clear?lang=en", data={"csrf": token, **form}, allow_redirects=False
        )
        seen["clear"] = (response.status, response.headers.get("Location"))
        seen["audit"] = [r[1:] for r in audit(node.directory, start) if r[2] == "account.unlock"]
        response = await admin.client.get("/console/network?lang=en")
        page = await response.text()
        seen["after"] = ('data-account="adm-f"' in page, "The sign-in lock was cleared." in page)
        seen["victim"] = (await victim.login("adm-f"))[0]

    serve(node, clock, scenario)
    assert seen["row"] and seen["ja"]
    assert seen["no_csrf"] == 403 and seen["officer"] == 403 and seen["officer_sees"] is False
    assert seen["clear"] == (303, "/console/network?lang=en#sign-in-locks")
    admin_id = account_id(node, "adm1")
    assert seen["audit"] == [(admin_id, "account.unlock", target, "cleared:127.0.0.30")]
    assert seen["after"] == (False, True)
    assert seen["victim"] == 303


# the throttle itself, on SQLite and PostgreSQL -------------------------------------------------


T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _refusal(accounts: StaffAccounts, password: str, source: str, now: datetime) -> str:
    try:
        accounts.authenticate_password("pat", password, source=source, now=now)
    except SignInRefused as e:
        return e.reason + ("!" if e.locked_now else "")
    return "ok"


def test_the_throttle_counts_per_pair_and_forgets(database_url: str) -> None:
    """Failures count per (account, source) inside the window; the lock starts at the limit, ends by
    itself, never disables; a success forgets the pair; a window without failures starts again."""
    engine = make_engine(database_url)
    upgrade(engine)
    accounts = StaffAccounts(engine)
    accounts.add("pat", Role.ADMIN, PASSWORD, T0)
    now = T0
    outcomes = []
    for _ in range(LOCK_AFTER + 2):
        now += STEP
        outcomes.append(_refusal(accounts, WRONG, "198.51.100.7", now))
    assert outcomes == [*["wrong_password"] * (LOCK_AFTER - 1), "wrong_password!", "locked", "locked"]
    assert _refusal(accounts, PASSWORD, "198.51.100.7", now) == "locked"
    assert _refusal(accounts, PASSWORD, "198.51.100.8", now) == "ok"
    assert dict((m.username, d) for m, d in accounts.list())["pat"] is False
    [lock] = accounts.locks(now)
    assert (lock.source, lock.failures, lock.wait_until) == ("198.51.100.7", LOCK_AFTER, None)
    assert lock.locked_until is not None and lock.locked_until > now
    assert _refusal(accounts, PASSWORD, "198.51.100.7", lock.locked_until) == "ok"
    assert accounts.locks(lock.locked_until) == []
    # failures spread wider than the window never lock
    for _ in range(3 * LOCK_AFTER):
        now += LOCK_WINDOW / 4
        assert _refusal(accounts, WRONG, "198.51.100.9", now) == "wrong_password"
    # an admin clears one source, or all
    for source in ("198.51.100.10", "198.51.100.11"):
        for _ in range(DELAY_AFTER):
            _refusal(accounts, WRONG, source, now)
    assert {lock.source for lock in accounts.locks(now)} >= {"198.51.100.10", "198.51.100.11"}
    assert accounts.clear_locks("pat", "198.51.100.10", actor="test", now=now) == 1
    assert "198.51.100.10" not in {lock.source for lock in accounts.locks(now)}
    assert accounts.clear_locks("pat", actor="test", now=now) >= 1
    assert accounts.locks(now) == []
    with pytest.raises(AuthenticationFailed):
        accounts.clear_locks("nobody", actor="test", now=now)
    engine.dispose()


def test_concurrent_failures_are_all_counted(database_url: str) -> None:
    """Several workers counting failures of one pair at once lose none (one UPDATE each)."""
    engine = make_engine(database_url)
    upgrade(engine)
    accounts = StaffAccounts(engine)
    member = accounts.add("pat", Role.ADMIN, PASSWORD, T0)
    barrier = threading.Barrier(8)
    counts: list[int] = []

    def worker() -> None:
        barrier.wait()
        for _ in range(5):
            counts.append(accounts._record_failure(member.id, "203.0.113.5", T0))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == list(range(1, 41))
    [lock] = accounts.locks(T0)
    assert lock.failures == 40 and lock.locked_until == T0 + LOCK_DURATION
    engine.dispose()


def test_sources_are_addresses_and_ipv6_slash_64s() -> None:
    assert sign_in_source("192.0.2.1") == "192.0.2.1"
    assert sign_in_source("::ffff:192.0.2.1") == "192.0.2.1"
    assert sign_in_source("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert sign_in_source("2001:db8:1:2::1") == sign_in_source("2001:db8:1:2:ffff::9")
    assert sign_in_source("2001:db8:1:2::/64") == "2001:db8:1:2::/64"
    assert sign_in_source(None) == sign_in_source("") == "unknown"
