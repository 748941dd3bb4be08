"""What every console page shares: the session check, the role check, CSRF, forms, rendering, refusals.

A page handler is wrapped by ``staff_page(action)``: the wrapper finds the session from the
cookie (or sends the browser to sign in), checks the role may do ``action`` (the same
``governance.roles`` table the JSON API uses), checks the CSRF token of every POST, and turns
a typed refusal into an HTML page with the status the JSON API would give and a record in the
audit log (``refused:<code>``, like the API's). Successful requests are audited by the node's
access middleware, as every request is. Pages are rendered by Jinja2 with autoescaping on and
sent with ``Cache-Control: no-store`` and a content security policy that allows no script,
except the operator page's own same-origin live-alert script.

The machinery does not depend on a member's node: what it needs from the server it runs in (the
database its audit log, accounts and sessions live in, the time zone, the heading, each role's
landing page) is a ``ConsoleHost`` under ``HOST``. A member's node builds one from its context
(``node.console.add_console_routes``), the certified organisation's server from its own
directory (``node.org.console``), so both consoles sign in, time out, check CSRF and audit alike.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.base_protocol import BaseProtocol
from sqlalchemy.engine import Engine

from governance.roles import Action, Role, require_permission
from node.console.csrf import CSRF_FIELD, check_csrf
from node.console.i18n import Translator
from node.console.session import ConsoleSession, SessionExpired, SessionStore
from node.http.api import ACTOR, CLOCK, LIMITER, TOKEN_CACHE_SECONDS, RateLimited, status_for
from node.http.notice import request_language
from node.local_time import LocalTimes
from node.records.accounts import StaffAccounts, StaffMember
from node.records.auditlog import record_audit
from protocol.errors import MalformedError, WatchnetError
from protocol.fields import Fields

__all__ = [
    "COOKIE",
    "HOST",
    "JINJA",
    "NO_STORE_HEADERS",
    "PREFIX",
    "SESSIONS",
    "ConsoleHost",
    "Form",
    "Visit",
    "audit",
    "client",
    "html_pattern",
    "local_times",
    "read_form",
    "recheck_account",
    "redirect",
    "refusal",
    "render",
    "set_session_cookie",
    "staff_page",
    "url",
]

PREFIX = "/console"
COOKIE = "watchnet_console"
MAX_FORM_FIELDS = 16
SESSIONS = web.AppKey("console_sessions", SessionStore)
JINJA: web.AppKey[jinja2.Environment] = web.AppKey("console_jinja", jinja2.Environment)
NO_STORE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}
"""Sent with every console page and face crop: nothing is kept by the browser or a proxy."""


@dataclass(frozen=True)
class ConsoleHost:
    """What the console's sign-in, sessions, audit and page frame need from the server they run in.

    ``heading(lang)`` is the name and id shown beside the console's title (a member's business
    name from the manifest it trusts now; the organisation's own name); ``role_pages`` is where
    each role lands after signing in; ``title`` and ``login_hint`` are message keys.
    """

    engine: Engine
    write_lock: threading.RLock
    accounts: StaffAccounts
    zone: ZoneInfo
    heading: Callable[[str], tuple[str, str]]
    role_pages: Mapping[Role, str] = field(default_factory=dict)
    title: str = "app.title"
    login_hint: str = "login.hint"
    site_names: Callable[[str], Mapping[str, str]] = lambda _lang: {}
    """Site id -> the store's name in a language (a member's ``[notice] sites``), for the pages."""


HOST = web.AppKey("console_host", ConsoleHost)


def html_pattern(regex: re.Pattern[str]) -> str:
    """A Python pattern as an HTML ``pattern`` attribute, which browsers compile with JavaScript's
    ``v`` flag, where ``-`` and ``/`` inside a character class must be escaped."""
    return regex.pattern.replace("/", "\\/").replace("-]", "\\-]")


def url(path: str, lang: str, **query: str) -> str:
    """A console link that keeps the chosen language."""
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"{path}?lang={lang}{extra}"


def client(request: web.Request) -> str:
    """Who is on the other end before sign-in, for the audit log and rate limits."""
    return f"public:{request.remote or 'unknown'}"


def audit(request: web.Request, *, actor: str, action: str, outcome: str, target: str = "") -> None:
    """One audit record now (sign-ins, sign-outs, timeouts and refusals of the console)."""
    host = request.app[HOST]
    record_audit(
        host.engine,
        host.write_lock,
        actor=actor[:64],
        action=action[:64],
        target=target[:128],
        outcome=outcome[:48],
        now=request.app[CLOCK](),
    )


@dataclass(frozen=True)
class Form:
    """A posted form: text fields and uploaded files, each name at most once."""

    fields: dict[str, str]
    files: dict[str, bytes]


def _add(out: dict[str, Any], name: str | None, value: Any) -> None:
    if not name:
        raise MalformedError("form: a field has no name")
    if name in out:
        raise MalformedError(f"form: field {name!r} sent twice")
    if len(out) >= MAX_FORM_FIELDS:
        raise MalformedError(f"form: more than {MAX_FORM_FIELDS} fields")
    out[name] = value


async def read_form(request: web.Request) -> Form:
    """Parse the body the access middleware already read (URL-encoded or multipart)."""
    body = await request.read()
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
            )
        except (UnicodeDecodeError, ValueError) as e:
            raise MalformedError(f"form: not a valid URL-encoded UTF-8 form ({e})") from e
        for name, value in pairs:
            _add(fields, name, value)
        return Form(fields, files)
    if request.content_type != "multipart/form-data":
        raise MalformedError(
            f"form: content type {request.content_type!r}, expected application/x-www-form-urlencoded "
            "or multipart/form-data"
        )
    loop = asyncio.get_running_loop()
    # The body is already in memory (read, within its door's limit, by the access middleware): a
    # buffer limit above its size keeps the stream from asking the (absent) transport to pause,
    # which aiohttp asserts on past twice the limit (photos over 128 KiB used to fail here).
    stream = StreamReader(BaseProtocol(loop), max(1 << 16, len(body) + 1), loop=loop)
    stream.feed_data(body)
    stream.feed_eof()
    try:
        reader = MultipartReader(request.headers, stream)
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise MalformedError("form: nested multipart is not accepted")
            data = await part.read(decode=True)
            if part.filename is not None:
                _add(files, part.name, bytes(data))
                continue
            try:
                _add(fields, part.name, bytes(data).decode("utf-8"))
            except UnicodeDecodeError as e:
                raise MalformedError(f"form: field {part.name!r} is not UTF-8") from e
    except ValueError as e:
        raise MalformedError(f"form: not a valid multipart body ({e})") from e
    return Form(fields, files)


@dataclass
class Visit:
    """One signed-in request to a console page."""

    session: ConsoleSession
    staff: StaffMember
    lang: str
    form: Form | None = None

    @property
    def posted(self) -> Form:
        """The posted form (every POST page has one; the wrapper read it and checked its CSRF token)."""
        if self.form is None:
            raise MalformedError("this page takes a posted form")
        return self.form

    def fields(self) -> Fields:
        """The posted text fields, less the CSRF token, for typed reading and ``refuse_extra``."""
        return Fields({k: v for k, v in self.posted.fields.items() if k != CSRF_FIELD}, "form")


def set_session_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    """HttpOnly, SameSite=Strict, scoped to the console, Secure whenever the request came over TLS."""
    response.set_cookie(COOKIE, token, path=PREFIX, httponly=True, samesite="Strict", secure=request.secure)


def redirect(location: str) -> web.Response:
    """303 See Other (after a POST, the browser GETs the next page)."""
    return web.Response(status=303, headers={**NO_STORE_HEADERS, "Location": location})


def local_times(request: web.Request, lang: str) -> LocalTimes:
    """How this server's pages show times in ``lang`` (a node's ``[console] time_zone``)."""
    return LocalTimes(lang, request.app[HOST].zone)


def render(
    request: web.Request,
    template: str,
    lang: str,
    *,
    session: ConsoleSession | None,
    status: int = 200,
    switch_path: str | None = None,
    **context: Any,
) -> web.Response:
    """A page in ``lang``; ``switch_path`` is where the language switch leads (this page by default)."""
    tr = Translator(lang)
    times = local_times(request, lang)
    host = request.app[HOST]
    business, node_id = host.heading(lang)
    sites = host.site_names(lang)
    other = "en" if lang == "ja" else "ja"
    notices = [] if session is None else session.notices
    page = aiohttp_jinja2.render_string(
        template,
        request,
        {
            "lang": lang,
            "t": tr.t,
            "finding": tr.finding,
            "label": tr.label,
            "when": times.when,
            "day": times.day,
            "business": business,
            "node_id": node_id,
            "site_name": lambda site: sites.get(site, site),
            "app_title": host.title,
            "login_hint": host.login_hint,
            "url": lambda path, **q: url(path, lang, **q),
            "switch_url": url(switch_path or request.path, other),
            "other_lang": other,
            "staff": None if session is None else session.staff,
            "csrf_field": CSRF_FIELD,
            "csrf": "" if session is None else session.csrf,
            "notices": [tr.t(key) for key in notices],
            "prefix": PREFIX,
            **context,
        },
        app_key=JINJA,
    )
    if session is not None:
        session.notices.clear()
    return web.Response(
        text=page,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**NO_STORE_HEADERS, "Content-Language": lang, "Vary": "Accept-Language, Cookie"},
    )


class _PayloadTooLarge(web.HTTPClientError):
    """413 as an HTML page (the node's middleware turns aiohttp's own 413 into JSON)."""

    status_code = 413


_STATUS_EXCEPTIONS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    413: _PayloadTooLarge,
    429: web.HTTPTooManyRequests,
    500: web.HTTPInternalServerError,
}


def refusal(
    request: web.Request,
    error: WatchnetError,
    lang: str,
    *,
    session: ConsoleSession | None,
    actor: str,
    back: str | None = None,
) -> web.HTTPException:
    """Audit a typed refusal and build the HTML error page, with the JSON API's status for it.

    The page links ``back`` (the form the refused request came from), else the console's home.
    """
    resource = request.match_info.route.resource
    audit(
        request,
        actor=actor,
        action=f"{request.method} {resource.canonical if resource else request.path}",
        target=request.match_info.get("entry_id", ""),
        outcome=f"refused:{error.code}",
    )
    status = status_for(error)
    page = render(
        request,
        "error.html",
        lang,
        session=session,
        status=status,
        switch_path=back or PREFIX,
        code=error.code,
        details=getattr(error, "violations", None) or getattr(error, "failures", None) or [],
        technical=str(error),
        back=back or PREFIX,
    )
    exception = _STATUS_EXCEPTIONS.get(status, web.HTTPBadRequest)
    return exception(
        text=page.text, content_type="text/html", headers={**NO_STORE_HEADERS, "Content-Language": lang}
    )


def recheck_account(
    request: web.Request, session: ConsoleSession, staff: StaffMember, now: datetime
) -> StaffMember | None:
    """The session's account as it is now, read again every ``TOKEN_CACHE_SECONDS`` like API tokens.

    An account disabled by an admin loses its console sessions within that time (``None``;
    the session is dropped and audited), and a changed role takes effect.
    """
    if session.checked_at is not None and (now - session.checked_at).total_seconds() < TOKEN_CACHE_SECONDS:
        return staff
    current = next(
        ((m, disabled) for m, disabled in request.app[HOST].accounts.list() if m.id == staff.id), None
    )
    if current is None or current[1]:
        request.app[SESSIONS].drop(session)
        audit(request, actor=staff.id, action="console.session", target=staff.id, outcome="account_disabled")
        return None
    session.staff, session.checked_at = current[0], now
    return current[0]


PageHandler = Callable[[web.Request, Visit], Awaitable[web.StreamResponse]]


def staff_page(
    action: Action | None, *, back: str | Callable[[web.Request], str] | None = None
) -> Callable[[PageHandler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a page: signed-in staff only, ``action`` permitted to the role, CSRF on every POST.

    ``back`` is the page an error page links back to (or makes it from the request, for a page
    whose path holds an id). A browser without a live session is sent
    to the sign-in page; a session that timed out is audited (``console.session expired``).
    """

    def wrap(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def page(request: web.Request) -> web.StreamResponse:
            lang = request_language(request)
            store = request.app[SESSIONS]
            now = request.app[CLOCK]()
            try:
                session = store.find(request.cookies.get(COOKIE), now)
            except SessionExpired as e:
                if e.session.staff is not None:
                    audit(request, actor=e.session.staff.id, action="console.session", outcome="expired")
                response = redirect(url(f"{PREFIX}/login", lang, reason="expired"))
                response.del_cookie(COOKIE, path=PREFIX)
                return response
            if session is None or session.staff is None:
                return redirect(url(f"{PREFIX}/login", lang))
            staff = recheck_account(request, session, session.staff, now)
            if staff is None:
                response = redirect(url(f"{PREFIX}/login", lang))
                response.del_cookie(COOKIE, path=PREFIX)
                return response
            request[ACTOR] = staff.id
            visit = Visit(session, staff, lang)
            try:
                limiter = request.app[LIMITER]
                if not limiter.allow(staff.id, time.monotonic()):
                    raise RateLimited(f"more than {limiter.capacity:.0f} requests a minute; slow down")
                if action is not None:
                    require_permission(staff.role, action)
                if request.method == "POST":
                    visit.form = await read_form(request)
                    check_csrf(session, visit.form.fields.get(CSRF_FIELD))
                return await handler(request, visit)
            except WatchnetError as e:
                to = back(request) if callable(back) else back
                raise refusal(request, e, lang, session=session, actor=staff.id, back=to) from e

        return page

    return wrap
