"""The operator's page: alerts as they are raised, pushed live, each marked confirmed or a false match.

An operator keeps this page open at the counter. It lists the newest alerts as
``GET /v1/alerts`` returns them (``alert_items``): whose entry matched (the member, its entry id
and version), the category, the band (match or strong match, never an exact score), the site and
the time. The list itself shows no face. The list is rendered on the server and pushed as server-sent events
(``/console/operator/events``) whenever it changes (``live.AlertFeed``), so a new alert appears
without a reload, and an alert whose entry the owner deleted leaves the open list at once (it
stays below as withdrawn, with no band or category; our own deleted entries take their alerts
with them). A small script, ``static/live.js``, swaps the list in; without script the page is
plain HTML and a reload shows the same. A verdict is a CSRF-protected form handled by
``review_and_report``, the function behind ``POST /v1/alerts/{id}/review``, which also tells
the entry's owner.

Each alert has a page of its own for the decision (``/console/operator/alerts/{id}``, roles that
review alerts only): the camera's face crop (kept sealed for the review window,
``node.records.alert_faces``) beside the registered one (from our record for our own entry, else
asked for sealed from its owner for this page, ``Federation.fetch_reference``, and kept nowhere),
every sighting's time (the node's zone) and place, and the group's response procedure
(``[alerts] procedure``) numbered beside the two buttons. Both faces are inline ``data:`` images
of a ``no-store`` page.

A stream lives only as long as its session: it ends when the session times out or is signed
out, or the account is disabled or loses the role, and listening is not activity, so an
unattended page does not keep a session open.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from governance.roles import Action, permitted
from node.console.csrf import CSRF_FIELD
from node.console.i18n import Translator
from node.console.live import AlertFeed, Listener, Snapshot
from node.console.pages import (
    HOST,
    JINJA,
    NO_STORE_HEADERS,
    PREFIX,
    SESSIONS,
    Visit,
    local_times,
    recheck_account,
    redirect,
    render,
    staff_page,
    url,
)
from node.context import NodeContext
from node.federation.client import PeerRefused
from node.http.api import AUDIT_TARGET, CLOCK, CONTEXT, FEDERATION, refuse_extra
from node.http.network import alert_item, alert_items, review_and_report
from node.records.alert_faces import CropErased
from node.records.registry import EntryNotFound
from protocol.errors import WatchnetError
from protocol.fields import CODE_RE

__all__ = ["ALERT_FEED", "AlertRow", "add_operator_routes", "server_sent_event"]

PAGE = f"{PREFIX}/operator"
EVENTS = f"{PAGE}/events"
SHOWN = 100
"""The newest alerts on the page (as ``GET /v1/alerts`` by default)."""
TICK_SECONDS = 1.0
"""How often an open stream checks that its session is still live and its browser still there."""
KEEPALIVE_SECONDS = 15.0
ALERT_FEED = web.AppKey("console_alert_feed", AlertFeed)
LIVE_CSP = f"{NO_STORE_HEADERS['Content-Security-Policy']}; script-src 'self'; connect-src 'self'"
"""The console's policy plus this page's own script and its event stream; nothing inline."""
FEEDBACK_NOTICES = {"recorded": "op.feedback_recorded", "sent": "op.feedback_sent"}


@dataclass(frozen=True)
class AlertRow:
    """One alert as the page shows it (owner named in the page's language, band and time formatted)."""

    alert_id: str
    owner: str
    owner_name: str
    entry_id: str
    version: int
    category: str | None
    band: str
    site: str
    status: str
    time: str
    camera: str = ""
    gate: str = ""


def alert_rows(context: NodeContext, items: Snapshot, lang: str) -> list[AlertRow]:
    """``alert_items`` as the page shows them: each owner by its name in the manifest in force."""
    manifest = context.manifest
    rows = []
    for a in items:
        member = manifest.member(a["owner"])
        rows.append(
            AlertRow(
                alert_id=a["alert_id"],
                owner=a["owner"],
                owner_name=a["owner"] if member is None else member.name.get(lang),
                entry_id=a["entry_id"],
                version=a["version"],
                category=a["category"],
                band=a["band"] or "",
                site=a["site"],
                status=a["status"],
                time=a["created_at"],
                camera=a.get("camera", ""),
                gate=a.get("gate", ""),
            )
        )
    return rows


def _alerts_context(request: web.Request, visit: Visit, items: Snapshot) -> dict[str, Any]:
    """What ``operator_alerts.html`` shows: open alerts to review, then the reviewed and withdrawn."""
    context = request.app[CONTEXT]
    rows = alert_rows(context, items, visit.lang)
    return {
        "open_alerts": [r for r in rows if r.status == "open"],
        "closed_alerts": [r for r in rows if r.status != "open"],
        "may_review": permitted(visit.staff.role, Action.REVIEW_ALERT),
    }


def _fragment(request: web.Request, visit: Visit, items: Snapshot) -> str:
    """The alert list alone, as pushed to an open page (the same template the page includes)."""
    tr = Translator(visit.lang)
    times = local_times(request, visit.lang)
    sites = request.app[HOST].site_names(visit.lang)
    return aiohttp_jinja2.render_string(
        "operator_alerts.html",
        request,
        {
            "lang": visit.lang,
            "t": tr.t,
            "label": tr.label,
            "when": times.when,
            "day": times.day,
            "site_name": lambda site: sites.get(site, site),
            "url": lambda path, **q: url(path, visit.lang, **q),
            "csrf_field": CSRF_FIELD,
            "csrf": visit.session.csrf,
            "prefix": PREFIX,
            **_alerts_context(request, visit, items),
        },
        app_key=JINJA,
    )


def server_sent_event(event: str, data: str) -> bytes:
    """One event in the ``text/event-stream`` format: every line of ``data`` as its own ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


@staff_page(Action.VIEW_ALERTS)
async def operator_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    context = request.app[CONTEXT]
    items = await asyncio.to_thread(alert_items, context.engine, SHOWN)
    response = render(
        request,
        "operator.html",
        visit.lang,
        session=visit.session,
        threshold=context.manifest.policy.match_threshold,
        **_alerts_context(request, visit, items),
    )
    response.headers["Content-Security-Policy"] = LIVE_CSP
    return response


def _still_allowed(request: web.Request, visit: Visit) -> bool:
    """The session is live (not touched), the account enabled, and its role still sees alerts."""
    now = request.app[CLOCK]()
    if not request.app[SESSIONS].alive(visit.session, now):
        return False
    staff = recheck_account(request, visit.session, visit.staff, now)
    return staff is not None and permitted(staff.role, Action.VIEW_ALERTS)


def _browser_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _updates(request: web.Request, visit: Visit, listener: Listener) -> AsyncGenerator[bytes, None]:
    """What to write: each changed list, a comment now and then, and ``end`` when the session ends."""
    yield b"retry: 3000\n\n"
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        items = await listener.next(TICK_SECONDS)
        if listener.ended or _browser_gone(request):
            return
        if not _still_allowed(request, visit):
            yield server_sent_event("end", "signed-out")
            return
        if items is not None:
            yield server_sent_event("alerts", _fragment(request, visit, items))
            quiet_since = loop.time()
        elif loop.time() - quiet_since >= KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            quiet_since = loop.time()


@staff_page(Action.VIEW_ALERTS)
async def alert_events(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The alert list as server-sent events: now, then on every change, until the session ends."""
    with request.app[ALERT_FEED].listen() as listener:
        response = web.StreamResponse(
            headers={
                **NO_STORE_HEADERS,
                "Content-Type": "text/event-stream; charset=utf-8",
                "Content-Language": visit.lang,
            }
        )
        await response.prepare(request)
        try:
            async with contextlib.aclosing(_updates(request, visit, listener)) as updates:
                async for chunk in updates:
                    await response.write(chunk)
        except ConnectionResetError:
            pass  # the browser went away between two checks
    return response


DETAIL_CSP = NO_STORE_HEADERS["Content-Security-Policy"].replace("img-src 'self'", "img-src 'self' data:")
"""The alert page carries its two faces inline (``data:`` images), fetched for this page only."""


@dataclass(frozen=True)
class SightingRow:
    """One sighting as the alert page lists it: when, where (the site's name from ``[notice]``)."""

    number: int
    sighting_id: str
    time: datetime
    site: str
    site_name: str
    gate: str
    crop: str | None
    """The camera's crop as a ``data:`` URI, or ``None`` when none is held."""


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _site_names(context: NodeContext, lang: str) -> dict[str, str]:
    return {s.site_id: s.name.get(lang) for s in context.config.notice.sites}


async def _reference(request: web.Request, alert: dict[str, Any]) -> tuple[str | None, str | None]:
    """The registered face for this alert: from our record for our own entry, else fetched
    sealed from its owner now (nothing kept); ``(data URI, None)`` or ``(None, refusal code)``."""
    context = request.app[CONTEXT]
    try:
        if alert["owner"] == context.config.node_id:
            _, jpeg = await asyncio.to_thread(context.registry.live_face_crop, alert["entry_id"])
        else:
            jpeg = await request.app[FEDERATION].fetch_reference(
                owner=alert["owner"],
                alert_id=alert["alert_id"],
                entry_id=alert["entry_id"],
                entry_version=alert["version"],
            )
    except PeerRefused as e:
        return None, e.peer_code
    except WatchnetError as e:
        return None, e.code
    return _data_uri(jpeg), None


@staff_page(Action.REVIEW_ALERT, back=PAGE)
async def alert_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """One alert for the operator's decision: the camera's face beside the registered one, each
    sighting's time and place, the group's response procedure, and the verdict buttons. Faces are
    shown only to roles that review alerts and sent ``no-store``; the member's face is asked for
    from its owner for this page and never stored here."""
    context = request.app[CONTEXT]
    alert_id = request.match_info["alert_id"]
    request[AUDIT_TARGET] = alert_id
    found = await asyncio.to_thread(alert_item, context.engine, alert_id)
    if found is None:
        raise EntryNotFound(f"no alert {alert_id!r} on this node")
    row = alert_rows(context, [found], visit.lang)[0]
    faces = context.alerts
    sightings = await asyncio.to_thread(faces.sightings, alert_id)
    names = _site_names(context, visit.lang)
    rows: list[SightingRow] = []
    for number, s in enumerate(sightings, 1):
        crop = None
        if s["has_crop"]:
            with contextlib.suppress(CropErased):
                crop = _data_uri(await asyncio.to_thread(faces.camera_crop, alert_id, s["sighting_id"]))
        rows.append(
            SightingRow(
                number,
                s["sighting_id"],
                s["seen_at"],
                s["site"],
                names.get(s["site"], s["site"]),
                s["gate"],
                crop,
            )
        )
    camera = next((r for r in rows if r.crop is not None), None)
    # the registered face is for the decision only: asked for while the alert is open
    reference, refused = await _reference(request, found) if row.status == "open" else (None, None)
    response = render(
        request,
        "operator_alert.html",
        visit.lang,
        session=visit.session,
        alert=row,
        sightings=rows,
        camera=camera,
        face=await asyncio.to_thread(faces.face_state, alert_id),
        reference=reference,
        reference_refused=refused,
        review_hours=round(faces.settings.review_window.total_seconds() / 3600),
        procedure=[step.get(visit.lang) for step in context.config.alerts.procedure],
        may_review=permitted(visit.staff.role, Action.REVIEW_ALERT) and row.status == "open",
    )
    response.headers["Content-Security-Policy"] = DETAIL_CSP
    return response


@staff_page(Action.REVIEW_ALERT, back=PAGE)
async def review(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Confirmed or false match, through the JSON API's own function (which also tells the owner)."""
    f = visit.fields()
    outcome = f.text("outcome", max_len=16, pattern=CODE_RE)
    refuse_extra(f)
    alert_id = request.match_info["alert_id"]
    request[AUDIT_TARGET] = alert_id
    result = await review_and_report(request.app, visit.staff.id, alert_id, outcome)
    visit.session.notices.append("op.confirmed_ok" if outcome == "confirmed" else "op.false_match_ok")
    visit.session.notices.append(FEEDBACK_NOTICES.get(result["feedback"], "op.feedback_failed"))
    return redirect(url(PAGE, visit.lang))


async def _end_streams(app: web.Application) -> None:
    await app[ALERT_FEED].close()


def add_operator_routes(app: web.Application) -> None:
    """The page, its event stream and the review form; open streams end when the node shuts down.

    They end in ``on_shutdown``, which aiohttp runs before it waits for open requests; the
    cleanup context runs only after that wait, too late for a stream that never ends by itself.
    """
    context = app[CONTEXT]
    app[ALERT_FEED] = AlertFeed(lambda: alert_items(context.engine, SHOWN))
    app.on_shutdown.append(_end_streams)
    app.router.add_get(PAGE, operator_page)
    app.router.add_get(EVENTS, alert_events)
    app.router.add_get(f"{PAGE}/alerts/{{alert_id}}", alert_page)
    app.router.add_post(f"{PAGE}/alerts/{{alert_id}}/review", review)
