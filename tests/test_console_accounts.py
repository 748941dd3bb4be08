"""The admin's accounts page (issue #18): add, disable, clear a sign-in lock, issue and revoke
API tokens, on the node's real application, each change checked by its effect and its audit row.

The page calls the same ``StaffAccounts`` methods as ``watchnet user ...``; the tests check what
an admin's browser sees (status, HTML), what the rest of the node does next (the API refuses a
revoked or expired token, a disabled account's open session goes to the sign-in page on its
next request), and the audit record each change wrote (actor, action, target username, outcome),
and that neither a password nor a token reaches the audit log.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from governance.roles import Role
from node.context import NodeContext
from node.records.accounts import LOCK_AFTER, AccountProtected, SignInRefused, sign_in_source
from tests.nodeproc import PASSWORD, NodeProcess
from tests.test_console import CSRF_RE, Clock, Console, account_id, audit, last_seq, run

PAGE = "/console/accounts?lang=en"
NEW_TOKEN_RE = re.compile(r'<code id="new-token">(wnt_[^<]+)</code>')
NEW_PASSWORD = "another long password"


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeContext]:
    directory = NodeProcess.create(tmp_path_factory.mktemp("accounts")).directory
    context = NodeContext.load(directory)
    yield context
    context.engine.dispose()


def audit_text(directory: Path) -> str:
    db = sqlite3.connect(directory / "watchnet.db")
    try:
        return "\n".join(" ".join(str(c) for c in row) for row in db.execute("select * from audit"))
    finally:
        db.close()


def account_rows(directory: Path, start: int) -> list[tuple[str, str, str, str]]:
    return [r[1:] for r in audit(directory, start) if r[2].startswith("account.")]


def test_only_an_admin_opens_the_page_or_posts_its_forms(context: NodeContext) -> None:
    got: list[tuple[str, str, int]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        status, _, _ = await b.get(PAGE)
        got.append(("anonymous", "GET", status))
        for user in ("reg1", "off1", "op1", "aud1", "adm1"):
            await b.login(user)
            status, text, _ = await b.get(PAGE)
            got.append((user, "GET", status))
            match = CSRF_RE.search(text)  # the refusal page's sign-out form carries the session's token
            assert match, text[:500]
            token = match.group(1)
            status, _, _ = await b.post(
                "/console/accounts/disable?lang=en", {"csrf": token, "username": "off2", "enable": "0"}
            )
            got.append((user, "POST", status))

    start = last_seq(context.config.directory)
    run(context, scenario)
    assert got[0] == ("anonymous", "GET", 303)
    assert [g for g in got[1:] if g[0] != "adm1"] == [
        (u, m, 403) for u in ("reg1", "off1", "op1", "aud1") for m in ("GET", "POST")
    ]
    assert ("adm1", "GET", 200) in got and ("adm1", "POST", 303) in got
    # only the admin's post changed anything; the others were refused and audited as such
    assert account_rows(context.config.directory, start) == [
        (account_id(context, "adm1"), "account.disable", "off2", "ok:sessions=0")
    ]
    context.accounts.set_disabled("off2", False, actor="host:test", now=datetime.now(UTC))


def test_every_form_needs_this_sessions_csrf_token(context: NodeContext) -> None:
    statuses: list[int] = []
    start = last_seq(context.config.directory)

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("adm1")
        for action, fields in (
            (
                "add",
                {"username": "csrfless", "role": "officer", "password": PASSWORD, "password_again": PASSWORD},
            ),
            ("disable", {"username": "off1", "enable": "0"}),
            ("unlock", {"username": "off1"}),
            ("token", {"username": "off1", "days": "30"}),
            ("revoke", {"username": "off1", "token": "0" * 12}),
        ):
            for csrf in (None, "forged"):
                data = fields if csrf is None else {"csrf": csrf, **fields}
                status, text, _ = await b.post(f"/console/accounts/{action}?lang=en", data)
                statuses.append(status)
                assert 'data-code="csrf"' in text

    run(context, scenario)
    assert statuses == [403] * 10
    assert account_rows(context.config.directory, start) == []
    assert "csrfless" not in {m.username for m, _ in context.accounts.list()}


def test_an_admin_adds_an_account_with_the_cli_rules_and_it_signs_in(context: NodeContext) -> None:
    directory = context.config.directory
    start = last_seq(directory)
    seen: dict[str, tuple[int, str]] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("adm1")
        for name, fields in (
            (
                "short",
                {"username": "newbie", "role": "operator", "password": "short", "password_again": "short"},
            ),
            (
                "differ",
                {
                    "username": "newbie",
                    "role": "operator",
                    "password": PASSWORD,
                    "password_again": NEW_PASSWORD,
                },
            ),
            (
                "bad-name",
                {"username": "a b", "role": "operator", "password": PASSWORD, "password_again": PASSWORD},
            ),
            (
                "bad-role",
                {"username": "newbie", "role": "root", "password": PASSWORD, "password_again": PASSWORD},
            ),
            (
                "ok",
                {
                    "username": "newbie",
                    "role": "operator",
                    "password": NEW_PASSWORD,
                    "password_again": NEW_PASSWORD,
                },
            ),
            (
                "taken",
                {"username": "newbie", "role": "officer", "password": PASSWORD, "password_again": PASSWORD},
            ),
        ):
            status, text, _ = await b.form(PAGE, "/console/accounts/add?lang=en", **fields)
            seen[name] = (status, text)
        status, text, _ = await b.get(PAGE)
        seen["page"] = (status, text)
        other = await browser()
        status, _, response = await other.login("newbie", NEW_PASSWORD)
        seen["login"] = (status, response.headers.get("Location", ""))

    run(context, scenario)
    assert seen["short"][0] == 400 and "at least 12 needed" in seen["short"][1]
    assert seen["differ"][0] == 400 and "the two passwords differ" in seen["differ"][1]
    assert seen["bad-name"][0] == 400 and seen["bad-role"][0] == 400
    assert seen["ok"][0] == 303
    assert seen["taken"][0] == 403 and 'data-code="account_exists"' in seen["taken"][1]
    assert 'data-account="newbie" data-disabled="no"' in seen["page"][1]
    assert seen["login"] == (303, "/console?lang=en")
    admin = account_id(context, "adm1")
    assert account_rows(directory, start) == [(admin, "account.add", "newbie", "ok:operator")]
    assert NEW_PASSWORD not in audit_text(directory)


def test_disabling_ends_the_accounts_open_session_and_tokens_at_once(context: NodeContext) -> None:
    directory = context.config.directory
    context.accounts.add("leaving", Role.OFFICER, PASSWORD, datetime.now(UTC))
    token = context.accounts.issue_token("leaving", datetime.now(UTC), timedelta(days=1))
    clock = Clock()
    start = last_seq(directory)
    steps: list[tuple[str, int, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        leaver, admin = await browser(), await browser()
        await leaver.login("leaving")
        await admin.login("adm1")
        headers = {"Authorization": f"Bearer {token}"}
        status, _, _ = await leaver.get("/console/officer?lang=en")
        steps.append(("before", status, ""))
        status, _, _ = await leaver.get("/v1/peers", headers=headers)
        steps.append(("api before", status, ""))
        status, _, _ = await admin.form(
            PAGE, "/console/accounts/disable?lang=en", username="leaving", enable="0"
        )
        steps.append(("disable", status, ""))
        # the same instant: no recheck interval to wait out
        status, _, response = await leaver.get("/console/officer?lang=en")
        steps.append(("after", status, response.headers.get("Location", "")))
        status, _, _ = await leaver.get("/v1/peers", headers=headers)
        steps.append(("api after", status, ""))
        status, text, _ = await admin.get(PAGE)
        steps.append(
            ("listed", status, "yes" if 'data-account="leaving" data-disabled="yes"' in text else "no")
        )
        status, _, _ = await admin.form(
            PAGE, "/console/accounts/disable?lang=en", username="leaving", enable="1"
        )
        steps.append(("enable", status, ""))
        status, _, _ = await leaver.get("/v1/peers", headers=headers)
        steps.append(("api enabled", status, ""))

    run(context, scenario, clock)
    assert steps == [
        ("before", 200, ""),
        ("api before", 200, ""),
        ("disable", 303, ""),
        ("after", 303, "/console/login?lang=en"),
        ("api after", 401, ""),
        ("listed", 200, "yes"),
        ("enable", 303, ""),
        ("api enabled", 200, ""),
    ]
    admin = account_id(context, "adm1")
    assert account_rows(directory, start) == [
        (admin, "account.disable", "leaving", "ok:sessions=1"),
        (admin, "account.enable", "leaving", "ok"),
    ]


def test_an_admin_cannot_disable_themselves_or_the_last_admin(context: NodeContext) -> None:
    directory = context.config.directory
    start = last_seq(directory)
    seen: list[tuple[int, str]] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("adm1")
        status, text, _ = await b.get(PAGE)
        # no disable button beside one's own account
        row = re.search(r'<tr data-account="adm1".*?</tr>', text, re.S)
        assert row and "/console/accounts/disable" not in row.group(0)
        status, text, _ = await b.form(PAGE, "/console/accounts/disable?lang=en", username="adm1", enable="0")
        seen.append((status, text))

    run(context, scenario)
    assert seen[0][0] == 403 and 'data-code="account_protected"' in seen[0][1]
    assert "your own account" in seen[0][1]
    with pytest.raises(AccountProtected, match="only enabled admin"):
        context.accounts.set_disabled("adm1", True, actor="host:test", now=datetime.now(UTC))
    assert not dict((m.username, d) for m, d in context.accounts.list())["adm1"]
    admin = account_id(context, "adm1")
    assert account_rows(directory, start) == [
        (admin, "account.disable", "adm1", "refused:account_protected"),
        ("host:test", "account.disable", "adm1", "refused:account_protected"),
    ]


def test_a_token_is_shown_once_expires_on_the_clock_and_revocation_is_immediate(context: NodeContext) -> None:
    directory = context.config.directory
    clock = Clock()
    start = last_seq(directory)
    seen: dict[str, object] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        admin, api = await browser(), await browser()
        await admin.login("adm1")
        for days in ("0", "366", "x"):
            status, _, _ = await admin.form(
                PAGE, "/console/accounts/token?lang=en", username="off1", days=days
            )
            seen[f"days={days}"] = status
        tokens = []
        for days in ("1", "30"):
            status, text, _ = await admin.form(
                PAGE, "/console/accounts/token?lang=en", username="off1", days=days
            )
            match = NEW_TOKEN_RE.search(text)
            assert status == 200 and match, text[:800]
            tokens.append(match.group(1))
        status, text, _ = await admin.get(PAGE)
        seen["shown again"] = any(t in text for t in tokens)
        short, long = tokens
        seen["both work"] = [
            (await api.get("/v1/peers", headers={"Authorization": f"Bearer {t}"}))[0] for t in tokens
        ]
        clock.now += timedelta(days=1, seconds=1)
        seen["after a day"] = [
            (await api.get("/v1/peers", headers={"Authorization": f"Bearer {t}"}))[0] for t in tokens
        ]
        await admin.login("adm1")  # a day later the admin's session has timed out
        status, text, _ = await admin.get(PAGE)
        states = dict(re.findall(r'data-token="([0-9a-f]{12})" data-state="(\w+)"', text))
        seen["states"] = sorted(states.values())
        long_id = _token_id(long)
        assert states[long_id] == "valid" and states[_token_id(short)] == "expired"
        status, _, _ = await admin.form(
            PAGE, "/console/accounts/revoke?lang=en", username="off1", token=long_id
        )
        seen["revoke"] = status
        seen["revoked"] = (await api.get("/v1/peers", headers={"Authorization": f"Bearer {long}"}))[0]
        status, text, _ = await admin.form(
            PAGE, "/console/accounts/revoke?lang=en", username="reg1", token=long_id
        )
        seen["other account's"] = (status, 'data-code="token_not_found"' in text)
        seen["long_id"] = long_id

    run(context, scenario, clock)
    assert (seen["days=0"], seen["days=366"], seen["days=x"]) == (400, 400, 400)
    assert seen["shown again"] is False
    assert seen["both work"] == [200, 200]
    assert seen["after a day"] == [401, 200]
    assert "expired" in seen["states"]  # type: ignore[operator]
    assert seen["revoke"] == 303 and seen["revoked"] == 401
    assert seen["other account's"] == (404, True)
    admin = account_id(context, "adm1")
    rows = account_rows(directory, start)
    assert [r[:3] for r in rows] == [(admin, "account.token", "off1")] * 2 + [
        (admin, "account.revoke", "off1")
    ]
    assert rows[2][3] == f"ok:{seen['long_id']}"
    text = audit_text(directory)
    assert "wnt_" not in text


def _token_id(token: str) -> str:
    """The id the page shows for ``token`` (its hash's first hex digits), computed independently."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def test_an_admin_clears_a_sign_in_lock_from_the_list(context: NodeContext) -> None:
    directory = context.config.directory
    context.accounts.add("locked1", Role.REGISTRAR, PASSWORD, datetime.now(UTC))
    clock = Clock()
    source = sign_in_source("127.0.0.1")
    start = last_seq(directory)
    seen: list[str] = []

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        b = await browser()
        await b.login("adm1")
        _, text, _ = await b.get(PAGE)
        seen.append(text)
        status, _, _ = await b.form(PAGE, "/console/accounts/unlock?lang=en", username="locked1")
        assert status == 303
        _, text, _ = await b.get(PAGE)
        seen.append(text)

    _lock(context, "locked1", source, clock.now)
    run(context, scenario, clock)
    assert 'data-account="locked1" data-disabled="no" data-locked="yes"' in seen[0]
    assert 'data-account="locked1" data-disabled="no" data-locked="no"' in seen[1]
    assert [r[1:3] for r in account_rows(directory, start)] == [
        ("account.unlock", account_id(context, "locked1"))
    ]


def _lock(context: NodeContext, username: str, source: str, now: datetime) -> None:
    """Fail ``LOCK_AFTER`` sign-ins of ``username`` from ``source``, each after the delay before it."""
    when = now - timedelta(minutes=10)
    for _ in range(LOCK_AFTER):
        with pytest.raises(SignInRefused):
            context.accounts.authenticate_password(username, "wrong password!", source=source, now=when)
        when += timedelta(seconds=31)
    assert any(lock.username == username and lock.locked_until for lock in context.accounts.locks(now))


def test_disabling_ends_the_accounts_live_alert_stream_at_once(context: NodeContext) -> None:
    """An operator's open live-alert stream ends (``end`` event, then closed) within its next tick
    once an admin disables the account; no recheck interval is waited out."""
    from tests.test_console_operator import stream

    context.accounts.add("watcher", Role.OPERATOR, PASSWORD, datetime.now(UTC))
    out: dict[str, object] = {}

    async def scenario(browser: Callable[[], Awaitable[Console]]) -> None:
        operator, admin = await browser(), await browser()
        await operator.login("watcher")
        await admin.login("adm1")
        async with stream(operator.client) as events:
            assert (await events.next())[0] == "alerts"
            status, _, _ = await admin.form(
                PAGE, "/console/accounts/disable?lang=en", username="watcher", enable="0"
            )
            out["disable"] = status
            out["event"] = await events.next(3)
            with pytest.raises(EOFError):
                await events.next(3)

    run(context, scenario, Clock())
    assert out == {"disable": 303, "event": ("end", "signed-out")}
