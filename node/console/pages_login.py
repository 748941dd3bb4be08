"""Signing in and out of the console, and the landing page that sends each role to its page.

Sign-in checks the password with ``StaffAccounts.authenticate_password`` (argon2id), which
throttles failures per (account, client address): a growing delay, then a lock of that pair that
ends by itself; never a disabled account. Every refusal (unknown account, wrong password, inside
a delay, locked) gets the same page, the same status and, since each attempt runs one argon2
verification, the same time. Every sign-in, failure, lock, sign-out and timeout is an audit
record; a failure names the account it was aimed at (its id, never the typed name), the client
address and why it was refused. The form is also rate-limited per client address.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from governance.roles import Role
from node.console.csrf import CSRF_FIELD, CsrfRefused, check_csrf
from node.console.pages import (
    COOKIE,
    HOST,
    PREFIX,
    SESSIONS,
    Visit,
    audit,
    client,
    read_form,
    redirect,
    refusal,
    render,
    set_session_cookie,
    staff_page,
    url,
)
from node.console.session import ConsoleSession, SessionExpired
from node.http.api import ACTOR, CLOCK, LIMITER, RateLimited
from node.http.notice import request_language
from node.records.accounts import AccountDisabled, SignInRefused, sign_in_source
from protocol.errors import MalformedError, WatchnetError

__all__ = ["ROLE_PAGES", "add_sign_in_routes", "home", "login_form", "login_submit", "logout"]

ROLE_PAGES = {
    Role.REGISTRAR: f"{PREFIX}/registrar",
    Role.OFFICER: f"{PREFIX}/officer",
    Role.OPERATOR: f"{PREFIX}/operator",
    Role.ADMIN: f"{PREFIX}/network",
    Role.AUDITOR: f"{PREFIX}/audit",
}
"""The console page of each role that has one in this release."""
LOGIN_REASONS = {"expired": "login.expired", "logged_out": "login.logged_out"}
MAX_USERNAME = 64
MAX_PASSWORD = 1024


def _session(request: web.Request) -> ConsoleSession | None:
    """The browser's live session, or ``None`` (a timed-out one is simply gone here)."""
    try:
        return request.app[SESSIONS].find(request.cookies.get(COOKIE), request.app[CLOCK]())
    except SessionExpired:
        return None


def _limit(request: web.Request) -> None:
    limiter = request.app[LIMITER]
    if not limiter.allow(f"console-login:{request.remote or 'unknown'}", time.monotonic()):
        raise RateLimited(f"more than {limiter.capacity:.0f} sign-in requests a minute from this address")


def _login_page(
    request: web.Request, lang: str, session: ConsoleSession, *, message: str | None, status: int = 200
) -> web.Response:
    return render(
        request,
        "login.html",
        lang,
        session=session,
        status=status,
        message=message,
        switch_path=f"{PREFIX}/login",
    )


async def login_form(request: web.Request) -> web.StreamResponse:
    """The sign-in form, with a fresh anonymous session for its CSRF token if the browser has none."""
    lang = request_language(request)
    request[ACTOR] = client(request)
    session = _session(request)
    if session is not None and session.staff is not None:
        return redirect(url(PREFIX, lang))
    try:
        _limit(request)
    except RateLimited as e:
        raise refusal(request, e, lang, session=None, actor=client(request)) from e
    token = None
    if session is None:
        token, session = request.app[SESSIONS].create(request.app[CLOCK]())
    reason = LOGIN_REASONS.get(request.query.get("reason", ""))
    response = _login_page(request, lang, session, message=reason)
    if token is not None:
        set_session_cookie(response, request, token)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    """Check the password; on success replace the anonymous session with a signed-in one."""
    lang = request_language(request)
    actor = client(request)
    request[ACTOR] = actor
    store = request.app[SESSIONS]
    session = _session(request)
    try:
        _limit(request)
        form = await read_form(request)
        session = check_csrf(session, form.fields.get(CSRF_FIELD))
        username = form.fields.get("username", "")[:MAX_USERNAME]
        password = form.fields.get("password", "")
        if not username or not password or len(password) > MAX_PASSWORD:
            raise MalformedError(
                f"form: a username and a password of 1..{MAX_PASSWORD} characters are needed"
            )
    except CsrfRefused as e:
        audit(request, actor=actor, action="console.login", outcome=f"refused:{e.code}")
        token, fresh = store.create(request.app[CLOCK]())
        response = _login_page(request, lang, fresh, message="login.stale", status=403)
        set_session_cookie(response, request, token)
        return response
    except WatchnetError as e:
        raise refusal(request, e, lang, session=session, actor=actor, back=f"{PREFIX}/login") from e
    try:
        staff = await asyncio.to_thread(
            request.app[HOST].accounts.authenticate_password,
            username,
            password,
            source=sign_in_source(request.remote),
            now=request.app[CLOCK](),
        )
    except AccountDisabled as e:
        audit(request, actor=actor, action="console.login", target=e.account_id, outcome=f"refused:{e.code}")
        return _login_page(request, lang, session, message="login.disabled", status=401)
    except SignInRefused as e:
        outcome = (
            f"refused:{e.code}"
            if e.reason in ("unknown_account", "wrong_password")
            else f"refused:{e.reason}"
        )
        audit(request, actor=actor, action="console.login", target=e.account_id, outcome=outcome)
        if e.locked_now:
            audit(request, actor=actor, action="console.lockout", target=e.account_id, outcome="locked")
        return _login_page(request, lang, session, message="login.failed", status=401)
    store.drop(session)
    token, _ = store.create(request.app[CLOCK](), staff)
    request[ACTOR] = staff.id
    audit(request, actor=staff.id, action="console.login", target=staff.id, outcome="ok")
    response = redirect(url(PREFIX, lang))
    set_session_cookie(response, request, token)
    return response


@staff_page(None)
async def logout(request: web.Request, visit: Visit) -> web.StreamResponse:
    request.app[SESSIONS].drop(visit.session)
    audit(request, actor=visit.staff.id, action="console.logout", target=visit.staff.id, outcome="ok")
    response = redirect(url(f"{PREFIX}/login", visit.lang, reason="logged_out"))
    response.del_cookie(COOKIE, path=PREFIX)
    return response


@staff_page(None)
async def home(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Each role to its own page; roles without one yet are told so."""
    page = request.app[HOST].role_pages.get(visit.staff.role)
    if page is not None:
        return redirect(url(page, visit.lang))
    return render(request, "home.html", visit.lang, session=visit.session, role=visit.staff.role.value)


def add_sign_in_routes(app: web.Application) -> None:
    """The console's landing page, sign-in form, sign-in and sign-out (any server with a ``HOST``)."""
    app.router.add_get(PREFIX, home)
    app.router.add_get(f"{PREFIX}/login", login_form)
    app.router.add_post(f"{PREFIX}/login", login_submit)
    app.router.add_post(f"{PREFIX}/logout", logout)
