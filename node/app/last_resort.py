"""The outermost middleware: whatever escapes the handlers and the access middleware is answered
in the API's error shape, never as aiohttp's bare text 500 with a traceback.

A database that cannot be reached (PostgreSQL stopped or restarting, a connection cut, a pool
that has no connection to give, SQLite locked) is not the client's fault and not a bug: the
answer is ``503 {"error": "database_unavailable", ...}`` with ``Retry-After: 5``, and the log gets
one line per kind of failure every ``LOG_EVERY`` seconds with a count, so an outage under load
does not flood it. Anything else is ``500 {"error": "internal", ...}`` with a request id that
names the log line holding the traceback; neither answer carries the exception's text. Console
pages (``/console...``) get a small HTML page instead of JSON, made without templates or the
database, since either may be what failed.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable

import psycopg
from aiohttp import web
from sqlalchemy import exc as sqlalchemy_exc

from node.console import is_console_path

__all__ = [
    "DATABASE_RETRY_SECONDS",
    "DATABASE_UNAVAILABLE",
    "INTERNAL",
    "OUTAGE_LOG",
    "ThrottledLog",
    "database_unavailable",
    "last_resort_middleware",
]

LOG = logging.getLogger("watchnet.node")

DATABASE_UNAVAILABLE = "database_unavailable"
INTERNAL = "internal"
DATABASE_RETRY_SECONDS = 5
"""``Retry-After`` of a 503 while the database is away: about one reconnection attempt."""
LOG_EVERY = 10.0
"""Seconds between two log lines about the same kind of failure (the ones between are counted)."""

MESSAGES = {
    DATABASE_UNAVAILABLE: "the node's database cannot be reached; nothing was changed, retry shortly",
    INTERNAL: "internal error; the node's log has the details under this request id",
}
_TITLES = {
    DATABASE_UNAVAILABLE: ("一時的にご利用いただけません", "Temporarily unavailable"),
    INTERNAL: ("内部エラー", "Internal error"),
}
_EXPLANATIONS = {
    DATABASE_UNAVAILABLE: (
        "ノードのデータベースに接続できません。何も変更されていません。しばらくしてから再度お試しください。",
        "The node cannot reach its database. Nothing was changed; try again in a few seconds.",
    ),
    INTERNAL: (
        "ノードで予期しないエラーが発生しました。管理者にリクエストIDをお伝えください。",
        "Something unexpected failed in the node. Give the administrator the request id.",
    ),
}


UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")
"""PostgreSQL's codes (prefixes) for a server that cannot be reached or used now: connection
exceptions, insufficient resources (too many connections), shutting down or starting up."""


def _driver_says_unavailable(error: BaseException) -> bool | None:
    """The driver's verdict on its own error (``None``: not a driver error). A statement PostgreSQL
    refused (a serialization failure, a deadlock, a cancelled query) is not an outage."""
    if isinstance(error, psycopg.Error):
        if not isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
            return False
        return error.sqlstate is None or error.sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    if isinstance(error, sqlite3.OperationalError):
        return True  # locked, unreadable or unwritable file: the database cannot be used now
    return None


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) says the database cannot be reached now,
    as opposed to a statement the database refused (an integrity or programming error is a bug)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (sqlalchemy_exc.TimeoutError, sqlalchemy_exc.DisconnectionError)):
            return True  # the pool had no connection to give, or found its connection dead
        if isinstance(current, sqlalchemy_exc.DBAPIError):
            if current.connection_invalidated:
                return True
            verdict = _driver_says_unavailable(current.orig) if current.orig is not None else None
            if verdict is not None:
                return verdict
            if isinstance(current, (sqlalchemy_exc.OperationalError, sqlalchemy_exc.InterfaceError)):
                return True
        verdict = _driver_says_unavailable(current)
        if verdict is not None:
            return verdict
        current = current.__cause__ or current.__context__
    return False


class ThrottledLog:
    """Warnings at most once every ``every`` seconds per kind, each saying how many were held back."""

    def __init__(self, logger: logging.Logger, every: float = LOG_EVERY) -> None:
        self._logger = logger
        self._every = every
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last, held = self._last.get(kind, (float("-inf"), 0))
            if now - last < self._every:
                self._last[kind] = (last, held + 1)
                return
            self._last[kind] = (now, 0)
        suffix = f" ({held} more like it in the last {self._every:.0f} s)" if held else ""
        self._logger.warning(message + suffix, *args)


def _reason(error: BaseException) -> str:
    """The failure's type and the first line of the driver's own message (no SQL, no parameters)."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return f"{type(original).__name__}: {text[0][:200]}" if text else type(original).__name__


def _page(code: str, status: int, request_id: str) -> web.Response:
    (title_ja, title_en), (text_ja, text_en) = _TITLES[code], _EXPLANATIONS[code]
    body = (
        '<!doctype html>\n<html lang="ja"><head><meta charset="utf-8">'
        f"<title>{status} {html.escape(title_en)}</title></head><body>"
        f"<h1>{html.escape(title_ja)} / {html.escape(title_en)}</h1>"
        f'<p>{html.escape(text_ja)}</p><p lang="en">{html.escape(text_en)}</p>'
        f"<p><code>{code}</code> &middot; request id <code>{request_id}</code></p>"
        '<p><a href="/console">watchnet console</a></p></body></html>\n'
    )
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def _answer(request: web.Request, code: str, status: int, request_id: str) -> web.Response:
    if is_console_path(request.path):
        response = _page(code, status, request_id)
    else:
        body = {"error": code, "message": MESSAGES[code], "request_id": request_id}
        response = web.json_response(body, status=status, headers={"Cache-Control": "no-store"})
    response.headers["X-Request-Id"] = request_id
    if code == DATABASE_UNAVAILABLE:
        response.headers["Retry-After"] = str(DATABASE_RETRY_SECONDS)
    return response


OUTAGE_LOG = ThrottledLog(LOG)


@web.middleware
async def last_resort_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer what escapes everything inside it (outermost in ``build_app``)."""
    try:
        return await handler(request)
    except (web.HTTPException, asyncio.CancelledError):
        raise
    except Exception as e:
        request_id = secrets.token_hex(8)
        if database_unavailable(e):
            OUTAGE_LOG.warning(
                DATABASE_UNAVAILABLE,
                "database unavailable in %s %s (request %s): %s; answered 503",
                request.method,
                request.path,
                request_id,
                _reason(e),
            )
            return _answer(request, DATABASE_UNAVAILABLE, 503, request_id)
        LOG.exception("internal error in %s %s (request %s)", request.method, request.path, request_id)
        return _answer(request, INTERNAL, 500, request_id)
