"""The node's front door: every request is sorted by door, bounded, authenticated, traced and audited.

Credentials come before bodies. A staff request is authenticated from its headers before one
byte of its body is read, and a request that declares (``Content-Length``) more than its door
allows is refused unread. Each door has its own ceiling: staff and signed-in console sessions
the node's ``max_body_bytes``, peers the sealed-message sizes of the protocol, everyone else
(the public complaint form, the sign-in form) a few KiB. Peer messages authenticate only with
their body, so bodies above ``MAX_SEALED_BYTES`` (evaluation keys, private queries) are read at
most ``BULK_BODY_BUDGET`` bytes at a time, and a body must arrive within ``connections.body_timeout``.

Requests without valid credentials are limited per source address; once an address has had its
refusals for the minute it is answered 429 unheard, and identical refusals are coalesced in the
audit log (``RefusalTally``): the first is written, the rest counted into one record a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from opentelemetry.trace import Status, StatusCode

from node.app.last_resort import DATABASE_UNAVAILABLE, INTERNAL, ThrottledLog, database_unavailable
from node.console import is_console_path
from node.console.pages import COOKIE, NO_STORE_HEADERS, PREFIX, SESSIONS, render
from node.http.api import (
    ACTOR,
    AUDIT_TARGET,
    AUDIT_WRITER,
    BODY_SLOT,
    CLOCK,
    CONTEXT,
    FEDERATION,
    LIMITER,
    METRICS,
    STAFF,
    TELEMETRY,
    BodyTimeout,
    PeerBodiesBusy,
    RateLimited,
    RateLimiter,
    error_response,
    status_for,
)
from node.http.notice import COMPLAINT_PATH, NOTICE_PATHS, complaint_refusal, request_language
from node.records.accounts import AuthenticationFailed, StaffMember
from node.records.auditlog import RefusalTally, record_audit
from node.telemetry import safe_attributes
from protocol.errors import OversizedError, WatchnetError
from protocol.message import MAX_BULK_SEALED_BYTES, MAX_SEALED_BYTES

__all__ = [
    "ANONYMOUS_LIMITER",
    "BULK_BODY_BUDGET",
    "BULK_READS",
    "FORM_BODY_BYTES",
    "OPEN_POSTS",
    "PEER_PREFIX",
    "PUBLIC_PATHS",
    "PUBLIC_POSTS",
    "READ_ONLY_ROUTES",
    "REFUSALS",
    "BodyBudget",
    "access_middleware",
]

LOG = logging.getLogger("watchnet.node")

READ_ONLY_ROUTES = frozenset({"/v1/match"})
PUBLIC_PATHS = (
    frozenset(
        {
            "/v1/health",
            "/v1/health/live",
            "/v1/health/ready",
            "/v1/log/head",
            "/v1/log/checkpoint",
            "/v1/witness/checkpoint",
            "/v1/node",
            "/v1/manifest",
            "/v1/openapi.json",
        }
    )
    | NOTICE_PATHS
)
PUBLIC_POSTS = frozenset({"/v1/complaints", COMPLAINT_PATH})
"""Anyone may file a complaint without an account (Art. 40); staff filing one are identified."""
OPEN_POSTS = frozenset({"/v1/witness/add-checkpoint", "/v1/org/complaint-referral"})
"""Bodies that carry their own credential, a member's signature on a checkpoint
(c2sp.org/tlog-witness) or the organisation's on a complaint referral: no token is asked or
used, the public door's bounds apply."""
PEER_PREFIX = "/v1/peer/"
"""Peer endpoints authenticate the sealed message itself, not a staff token."""
PRIVATE_PEER_PREFIX = "/v1/peer/private/"
"""Private-mode messages carry ciphertexts and evaluation keys: the bulk sealed size applies."""
FORM_BODY_BYTES = 64 << 10
"""The largest body from someone not signed in: a complaint or the sign-in form."""
BULK_BODY_BUDGET = MAX_BULK_SEALED_BYTES
"""Bytes of peer bodies above ``MAX_SEALED_BYTES`` read and held at once, before they are admitted."""
ANONYMOUS_PREFIXES = ("anonymous", "public:", "unverified:", "console")
"""Actors that have shown no valid credential: their identical refusals are coalesced."""

BULK_READS: web.AppKey[BodyBudget] = web.AppKey("bulk_reads")
ANONYMOUS_LIMITER = web.AppKey("anonymous_limiter", RateLimiter)
REFUSALS = web.AppKey("refusals", RefusalTally)


def _door(request: web.Request) -> str:
    if request.path.startswith(PEER_PREFIX):
        return "peer"
    if is_console_path(request.path):
        return "console"
    if request.method == "POST" and request.path in PUBLIC_POSTS and "Authorization" not in request.headers:
        return "public"
    if request.method == "POST" and request.path in OPEN_POSTS:
        return "public"
    if request.method in ("GET", "HEAD") and request.path in PUBLIC_PATHS:
        return "open"
    return "staff"


def _source(request: web.Request) -> str:
    return request.remote or "unknown"


def _body_limit(request: web.Request, door: str) -> int:
    """The most this request may send, by door (and, at the console, by whether it is signed in)."""
    configured = request.app[CONTEXT].config.limits.max_body_bytes
    if door == "peer":
        return MAX_BULK_SEALED_BYTES if request.path.startswith(PRIVATE_PEER_PREFIX) else MAX_SEALED_BYTES
    if door == "console":
        small = request.content_length is not None and request.content_length <= FORM_BODY_BYTES
        if not request.body_exists or small:
            return FORM_BODY_BYTES  # nothing to decide: no session lookup on page views and forms
        return configured if _signed_in(request) else FORM_BODY_BYTES
    if door in ("public", "open"):
        return FORM_BODY_BYTES
    return configured


def _signed_in(request: web.Request) -> bool:
    """Whether the console cookie names a live signed-in session (looked at, not touched)."""
    if request.path == PREFIX + "/login":
        return False
    return request.app[SESSIONS].signed_in(request.cookies.get(COOKIE), request.app[CLOCK]())


def _refuse_declared_size(request: web.Request, limit: int) -> None:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise OversizedError(f"request body declares {declared} bytes; this endpoint takes at most {limit}")


def _authenticate(request: web.Request) -> StaffMember:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise AuthenticationFailed(
            "missing 'Authorization: Bearer <token>'; issue one with 'watchnet user token'"
        )
    return request.app[CONTEXT].accounts.authenticate_token(
        header[len("Bearer ") :].strip(), request.app[CLOCK]()
    )


async def _read_body(request: web.Request) -> bytes:
    if not request.can_read_body:
        return b""
    timeout = request.app[CONTEXT].config.connections.body_timeout.total_seconds()
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError as e:
        raise BodyTimeout(f"the request body did not arrive within {timeout:.0f} s; send it at once") from e


def _is_anonymous(actor: str) -> bool:
    return actor.startswith(ANONYMOUS_PREFIXES)


def _audit_request(
    request: web.Request, actor: str, outcome: str, body_hash: str, *, batched: bool = False
) -> None:
    """Record the request; reads that succeeded go through the group-commit writer, and identical
    refusals of unauthenticated requests are coalesced (``RefusalTally``)."""
    resource = request.match_info.route.resource
    record: dict[str, Any] = {
        "actor": request.get(ACTOR, actor)[:64],
        "action": f"{request.method} {resource.canonical if resource else request.path}",
        "target": request.get(AUDIT_TARGET, request.match_info.get("entry_id", ""))[:128],
        "outcome": outcome,
        "request_hash": body_hash,
        "now": request.app[CLOCK](),
    }
    if outcome.startswith("refused:") and _is_anonymous(record["actor"]):
        record["actor"] = f"{record['actor'].split(':', 1)[0]}:{_source(request)}"[:64]
        if request.app[REFUSALS].first(record, time.monotonic()):
            request.app[AUDIT_WRITER].add(**record)
        return
    if batched:
        request.app[AUDIT_WRITER].add(**record)
        return
    context = request.app[CONTEXT]
    record_audit(context.engine, context.registry.write_lock, **record)


AUDIT_QUEUE_MAX = 10_000
"""Records held for the audit flusher when they cannot be written at once; past it, logged only."""
AUDIT_LOG = ThrottledLog(LOG)


def _audit_or_queue(
    request: web.Request, actor: str, outcome: str, body_hash: str, *, batched: bool = False
) -> None:
    """Record a request without changing its answer: a request that failed keeps its own error,
    one that succeeded (its change committed) keeps its success. When the record cannot be
    written (the database is gone) it waits in the audit writer's queue, which the flusher
    retries until the database is back; past ``AUDIT_QUEUE_MAX`` it is only logged."""
    try:
        _audit_request(request, actor, outcome, body_hash, batched=batched)
        return
    except Exception as e:
        writer = request.app[AUDIT_WRITER]
        queued = writer.pending < AUDIT_QUEUE_MAX
        if queued:
            _audit_request(request, actor, outcome, body_hash, batched=True)
        then = "queued for the audit flusher" if queued else "dropped: the flusher's queue is full"
        if not database_unavailable(e):
            LOG.exception(
                "audit record of %s %s (%s) not written; %s", request.method, request.path, outcome, then
            )
            return
        AUDIT_LOG.warning(
            "audit-write-failed",
            "audit record of %s %s (%s) not written (%s); %s",
            request.method,
            request.path,
            outcome,
            type(e).__name__,
            then,
        )


def _no_slot() -> None:
    """The request held no slot among the large peer bodies."""


def _flooding(request: web.Request) -> bool:
    """Whether this address has had all its refusals for the minute (``ANONYMOUS_LIMITER``)."""
    return request.app[ANONYMOUS_LIMITER].exhausted(_source(request), time.monotonic())


FLOODING = "too many refused requests from this address; try again in a minute"


async def _admit(request: web.Request, door: str, limit: int) -> tuple[str, bytes]:
    """The checks before the handler, in order: size declared, credentials, rate, body. Returns
    the actor and the body."""
    if door == "staff":
        flooding = _flooding(request)
        if flooding and "Authorization" not in request.headers:
            raise RateLimited(FLOODING)
        try:
            staff = _authenticate(request)
        except AuthenticationFailed as e:
            if flooding:
                raise RateLimited(FLOODING) from e
            raise
        request[STAFF] = staff
        request[ACTOR] = staff.id
        if not request.app[LIMITER].allow(staff.id, time.monotonic()):
            raise RateLimited(f"more than {request.app[LIMITER].capacity:.0f} requests a minute; slow down")
        _refuse_declared_size(request, limit)
        return staff.id, await _read_body(request)
    _refuse_declared_size(request, limit)
    if door == "public":
        if _flooding(request) or not request.app[LIMITER].allow(
            f"public:{_source(request)}", time.monotonic()
        ):
            raise RateLimited("too many submissions from this address; try again in a minute")
        return f"public:{_source(request)}", await _read_body(request)
    if door == "peer":
        body = await _read_peer_body(request, limit)
        return f"unverified:{request.app[FEDERATION].gate.sender_of(body)}", body
    return ("console" if door == "console" else "anonymous"), await _read_body(request)


class BodyBudget:
    """Bytes of large peer bodies held at once: a body waits until its declared size fits (one of
    unknown size counts as the largest allowed), so memory for unauthenticated bodies is bounded
    by the budget, not by the number of connections."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> int:
        size = min(size, self.total)
        async with self._changed:
            await self._changed.wait_for(lambda: self.held + size <= self.total)
            self.held += size
        return size

    def release(self, size: int) -> None:
        self.held -= size

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())


async def _read_peer_body(request: web.Request, limit: int) -> bytes:
    """A peer body; one above ``MAX_SEALED_BYTES`` (or of unknown size) waits for room in the
    budget, held until the message is admitted (``admit_peer``) or the request ends."""
    declared = request.content_length
    if declared is not None and declared <= MAX_SEALED_BYTES:
        return await _read_body(request)
    budget = request.app[BULK_READS]
    wait = request.app[CONTEXT].config.connections.body_timeout.total_seconds()
    try:
        async with asyncio.timeout(wait):
            size = await budget.acquire(limit if declared is None else declared)
    except TimeoutError as e:
        raise PeerBodiesBusy(
            f"{budget.held} bytes of large peer messages are being read; retry in a few seconds"
        ) from e
    held = [size]

    def give_back() -> None:
        if held:
            budget.release(held.pop())

    request[BODY_SLOT] = give_back
    return await _read_body(request)


@web.middleware
async def access_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate, bound, rate-limit, trace and audit every request; map typed errors to JSON.
    Any other exception is audited (``failed:database_unavailable`` or ``failed:internal``) and
    re-raised for ``node.app.last_resort`` to answer."""
    tracer = request.app[TELEMETRY].tracer("watchnet.node")
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    door = _door(request)
    limit = _body_limit(request, door)
    request = request.clone(client_max_size=limit)
    with tracer.start_as_current_span(
        f"{request.method} {route}", record_exception=False, set_status_on_exception=False
    ) as span:  # an exception's text may quote SQL: the span gets its type only
        span.set_attributes(safe_attributes({"http.request.method": request.method, "http.route": route}))
        actor = "anonymous"
        body_hash = ""
        try:
            try:
                actor, body = await _admit(request, door, limit)
                body_hash = hashlib.sha256(body).hexdigest() if body else ""
                response = await handler(request)
            finally:
                request.get(BODY_SLOT, _no_slot)()
        except web.HTTPRequestEntityTooLarge:
            error = OversizedError(f"request body is larger than this endpoint's limit of {limit} bytes")
            return _refused(request, span, route, actor, "", error, door)
        except WatchnetError as e:
            return _refused(request, span, route, actor, body_hash, e, door)
        except web.HTTPException:
            raise
        except Exception as e:
            failure = DATABASE_UNAVAILABLE if database_unavailable(e) else INTERNAL
            _audit_or_queue(request, actor, f"failed:{failure}", body_hash)
            span.set_attribute("watchnet.error", failure)
            span.set_status(Status(StatusCode.ERROR, type(e).__name__))
            request.app[METRICS].refusals.add(1, {"http.route": route, "watchnet.error": failure})
            raise  # answered (and logged) by the last-resort middleware
        span.set_attribute("http.response.status_code", response.status)
        request.app[METRICS].requests.add(
            1, {"http.route": route, "http.response.status_code": response.status}
        )
        if door != "open":
            batched = request.method == "GET" or route in READ_ONLY_ROUTES or door == "peer"
            _audit_or_queue(request, actor, f"ok:{response.status}", body_hash, batched=batched)
        return response


def _refused(
    request: web.Request, span: Any, route: str, actor: str, body_hash: str, error: WatchnetError, door: str
) -> web.Response:
    if _is_anonymous(request.get(ACTOR, actor)) and not isinstance(error, RateLimited):
        request.app[ANONYMOUS_LIMITER].allow(_source(request), time.monotonic())
    _audit_request(request, actor, f"refused:{error.code}", body_hash)
    span.set_attribute("watchnet.error", error.code)
    request.app[METRICS].refusals.add(1, {"http.route": route, "watchnet.error": error.code})
    span.set_status(Status(StatusCode.ERROR, error.code))
    if door == "console":
        response = _console_error(request, error)
    elif request.path == COMPLAINT_PATH and door == "public":  # the form's own page, in its language
        response = complaint_refusal(request, error, status_for(error))
    else:
        response = error_response(error)
    if isinstance(error, (RateLimited, PeerBodiesBusy)):
        response.headers["Retry-After"] = "60" if isinstance(error, RateLimited) else "5"
    return response


def _console_error(request: web.Request, error: WatchnetError) -> web.Response:
    """A refusal at the console's door is the console's own error page, never JSON."""
    page = render(
        request,
        "error.html",
        request_language(request),
        session=None,
        status=status_for(error),
        switch_path=PREFIX,
        code=error.code,
        details=[str(error)],
        back=PREFIX,
    )
    page.headers.update(NO_STORE_HEADERS)
    return page
