"""Public HTTP routes for the notice: ``GET /notice`` and its QR code, with no login.

Anyone standing in front of a store's camera may read what is done with their face, so these
routes need no account and are not rate-limited per staff member; they are cheap (a page
rendered from the in-memory manifest, QR codes cached per URL). The language follows
``?lang=`` or else ``Accept-Language``; responses say so with ``Vary`` and carry a short public
cache lifetime and an ``ETag``, because the manifest can change while the node runs.

The QR code's target comes from configuration only (``[notice] url``, else the configured listen
address), never from the ``Host`` header: a forged header must not make a node, or a shared
cache in front of it, hand out a QR code to someone else's site. A QR code that does depend on
the connection (``request_base``) is cached privately only.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from aiohttp import web

from governance.notice import LANGUAGES, choose_language
from governance.requests import COMPLAINT_CATEGORIES
from governance.roles import Action, require_permission
from node.casework.registers import record_complaint
from node.http.api import AUDIT_TARGET, CLOCK, STAFF
from node.local_time import LocalTimes
from node.reporting.notice_pages import (
    COMPLAINT_TEXT,
    NOTICE_PATH,
    complaint_received_html,
    complaint_result_html,
    configured_base,
    node_notice_html,
    notice_url,
    qr_png,
    qr_svg,
)
from protocol.errors import MalformedError, WatchnetError

__all__ = [
    "CACHE_CONTROL",
    "COMPLAINT_ACTION",
    "COMPLAINT_PATH",
    "NOTICE_PATHS",
    "PRIVATE_CACHE_CONTROL",
    "QR_SRC",
    "ComplaintFormError",
    "add_notice_routes",
    "complaint_refusal",
    "html_response",
    "qr_response",
    "request_base",
    "request_language",
]

NOTICE_PATHS = frozenset({NOTICE_PATH, f"{NOTICE_PATH}/qr.png", f"{NOTICE_PATH}/qr.svg"})
"""Paths anyone may GET (the node's access middleware lists them as public)."""
CACHE_CONTROL = "public, max-age=300"
"""Five minutes: short enough that a new manifest version reaches readers quickly."""
PRIVATE_CACHE_CONTROL = "private, max-age=300"
"""For a response that depends on the connection: the browser may keep it, a shared cache may not."""
COMPLAINT_PATH = f"{NOTICE_PATH}/complaint"
"""The public complaint form's target (Art. 40): anyone may post, through the access middleware's
public door (no account, a few KiB at most, a few posts a minute per address)."""
COMPLAINT_ACTION = "notice/complaint"
"""Relative to ``/notice``, like ``QR_SRC``."""
_FROM_CONNECTION = web.RequestKey("notice_from_connection", bool)
"""Set on a request by ``request_base``: its QR code depends on the connection, not only on config."""
QR_SRC = "notice/qr.svg"
"""Relative to ``/notice`` (so it still works behind a path prefix)."""
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
}


def request_language(request: web.Request) -> str:
    """``?lang=`` (must be ``ja`` or ``en``: anything else is a 400) or ``Accept-Language``."""
    try:
        return choose_language(request.query.get("lang"), request.headers.get("Accept-Language"))
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"lang must be one of {', '.join(LANGUAGES)} / lang は {', '.join(LANGUAGES)} のいずれかです\n",
            content_type="text/plain",
        ) from None


def _cached(
    request: web.Request,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    charset: str | None = None,
    *,
    cache_control: str = CACHE_CONTROL,
) -> web.Response:
    """``body`` with cache headers (public by default) and an ``ETag``; 304 when the client has it."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**_SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": etag, **headers}
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, charset=charset, headers=headers)


def html_response(request: web.Request, page: str, lang: str) -> web.Response:
    """A public HTML page in ``lang`` with cache, language and hardening headers."""
    headers = {"Content-Language": lang, "Vary": "Accept-Language"}
    return _cached(request, page.encode("utf-8"), "text/html", headers, charset="utf-8")


@lru_cache(maxsize=16)
def _qr_bytes(url: str, kind: str) -> bytes:
    return qr_png(url) if kind == "png" else qr_svg(url)


def qr_response(request: web.Request, url: str, kind: str) -> web.Response:
    """The QR code to ``url`` as ``png`` or ``svg``; publicly cacheable unless ``url`` came from
    ``request_base`` (it then depends on the connection)."""
    content_type = "image/png" if kind == "png" else "image/svg+xml"
    cache = PRIVATE_CACHE_CONTROL if request.get(_FROM_CONNECTION) else CACHE_CONTROL
    return _cached(request, _qr_bytes(url, kind), content_type, {}, cache_control=cache)


def request_base(request: web.Request) -> str:
    """The address this server accepted the connection on: the QR target when no public notice URL
    is configured. Taken from the local socket, never from the ``Host`` header (which anyone may
    forge); a server bound to one address always gives the same, one bound to all addresses gives
    the interface the client reached, so the response is marked to be cached privately only."""
    request[_FROM_CONNECTION] = True
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return f"{request.scheme}://localhost"
    host, port = str(sockname[0]), int(sockname[1])
    return f"{request.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class ComplaintFormError(MalformedError):
    """A complaint form field that is missing or out of bounds: ``field`` picks the page's message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _form_language(request: web.Request, form: Any = None) -> str:
    lang = form.get("lang") if form is not None else request.query.get("lang")
    if isinstance(lang, str) and lang in LANGUAGES:
        return lang
    return choose_language(None, request.headers.get("Accept-Language"))


def complaint_refusal(request: web.Request, error: WatchnetError, status: int) -> web.Response:
    """A refused complaint post as the notice's own page in the reader's language, never JSON and
    never the API's English: the message comes from the field or the error code."""
    lang = _form_language(request)
    t = COMPLAINT_TEXT[lang]
    if isinstance(error, ComplaintFormError):
        line = t[f"error.{error.field}"]
    else:
        line = t.get(f"error.{error.code}", t["error.other"].format(code=error.code))
    page = complaint_result_html(lang, t["error_title"], [line], f"{NOTICE_PATH}?lang={lang}")
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        status=status,
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-store", "Content-Language": lang},
    )


def _form_text(form: Any, name: str, max_len: int, *, required: bool) -> str | None:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        if required:
            raise ComplaintFormError(name, f"complaint form: {name} is missing")
        return None
    value = value.strip()
    if len(value) > max_len:
        raise ComplaintFormError(
            name, f"complaint form: {name} has {len(value)} characters, at most {max_len}"
        )
    return value


def add_notice_routes(app: web.Application, context_key: web.AppKey[Any]) -> None:
    """Add ``GET /notice``, ``/notice/qr.png`` and ``/notice/qr.svg``, reading ``app[context_key]``.

    ``app[context_key]`` is the node's ``NodeContext``: its ``manifest`` is read on every
    request, so the page follows a newly accepted manifest at once.
    """

    async def page(request: web.Request) -> web.Response:
        lang = request_language(request)
        context = request.app[context_key]
        text = node_notice_html(
            context.manifest,
            context.config,
            lang,
            context.rules.retention_days,
            qr_src=QR_SRC,
            complaint_action=COMPLAINT_ACTION,
        )
        return html_response(request, text, lang)

    async def complaint(request: web.Request) -> web.Response:
        context = request.app[context_key]
        staff = request.get(STAFF)
        if staff is not None:  # a token makes it a staff post: the roles that take complaints
            require_permission(staff.role, Action.HANDLE_REQUESTS)
        form = await request.post()
        lang = _form_language(request, form)
        category = _form_text(form, "category", 48, required=True)
        if category not in COMPLAINT_CATEGORIES:
            raise ComplaintFormError("category", f"complaint form: category {category!r:.30} is not offered")
        summary = _form_text(form, "summary", 2000, required=True)
        contact = _form_text(form, "contact", 200, required=False)
        now = request.app[CLOCK]().replace(microsecond=0)
        view = await asyncio.to_thread(
            lambda: record_complaint(
                context.engine,
                context.registry.write_lock,
                channel="public",
                category=str(category),
                summary=str(summary),
                contact=contact,
                recorded_by=staff.id if staff is not None else "public",
                now=now,
            )
        )
        request[AUDIT_TARGET] = view["id"]
        when = LocalTimes(lang, context.config.console.zone).when(now)
        page = complaint_received_html(lang, view["id"], when)
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            headers={**_SECURITY_HEADERS, "Cache-Control": "no-store", "Content-Language": lang},
        )

    def qr(kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            config = request.app[context_key].config
            url = notice_url(config, request_base=configured_base(config))
            return qr_response(request, url, kind)

        return handler

    app.router.add_get(NOTICE_PATH, page)
    app.router.add_post(COMPLAINT_PATH, complaint)
    app.router.add_get(f"{NOTICE_PATH}/qr.png", qr("png"))
    app.router.add_get(f"{NOTICE_PATH}/qr.svg", qr("svg"))
