"""The data-subject request and complaint queues (R11, R12): deadlines in view, decisions on record.

An officer records a request at the counter (its kind, the kind of identity document seen and
the person's photo), runs the disclosure search here and across the group, and closes the
request with an outcome; a refusal names its legal ground. An auditor reads the same queues and
cannot act. Every action calls what the JSON API calls (``record_request`` and
``search_request`` of ``node.http.casework``, ``SubjectRequests.close``, ``close_complaint``),
so the rules stay in one place: an outcome must fit the kind, a ground goes only with a refusal
and Art. 33-2 grounds only with a disclosure (``governance.requests.check_outcome``), and a
request closes as granted only once the change is confirmed by every member's signed receipt,
which the page then shows. The counter photo goes up once and never comes back: pages say only
whether the request still holds it (closing erases it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from governance.requests import (
    COMPLAINT_ANSWER_OUTCOMES,
    COMPLAINT_OUTCOMES,
    IDENTITY_CHECK_ORDER,
    RefusalGround,
    RequestKind,
    RequestOutcome,
    RequestRefused,
    check_outcome,
)
from governance.roles import Action, permitted
from node.casework.referrals import answer_referral, deliver_answers
from node.casework.registers import COMPLAINT_DEADLINE, close_complaint, complaint_due, list_complaints
from node.console.pages import PREFIX, Visit, redirect, refusal, render, staff_page, url
from node.http.api import CLOCK, CONTEXT, FEDERATION, refuse_extra
from node.http.casework import record_request, search_request
from node.records.registry import WrongState
from protocol.errors import MalformedError, WatchnetError
from protocol.fields import CODE_RE

__all__ = ["COMPLAINT_ORDER", "ComplaintCard", "add_request_routes", "grounds_for", "outcomes_for"]

REQUESTS = f"{PREFIX}/requests"
REQUEST = f"{REQUESTS}/{{request_id}}"
COMPLAINTS = f"{PREFIX}/complaints"
COMPLAINT_ORDER = ("resolved", "rejected", "referred")
"""How the outcome choices are listed: the usual one first."""


def outcomes_for(kind: RequestKind) -> list[RequestOutcome]:
    """The outcomes that may close a request of ``kind``, as ``check_outcome`` decides."""
    allowed = []
    for outcome in RequestOutcome:
        ground = RefusalGround.ORDER_5_IV if outcome is RequestOutcome.REFUSED else None
        try:
            check_outcome(kind, outcome, ground)
        except RequestRefused:
            continue
        allowed.append(outcome)
    return allowed


def grounds_for(kind: RequestKind) -> list[RefusalGround]:
    """The legal grounds on which a request of ``kind`` may be refused, as ``check_outcome`` decides."""
    allowed = []
    for ground in RefusalGround:
        try:
            check_outcome(kind, RequestOutcome.REFUSED, ground)
        except RequestRefused:
            continue
        allowed.append(ground)
    return allowed


def _can_handle(visit: Visit) -> bool:
    return permitted(visit.staff.role, Action.HANDLE_REQUESTS)


@staff_page(Action.READ_REQUESTS)
async def requests_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Open requests by deadline (overdue ones flagged), then closed ones, newest first."""
    context = request.app[CONTEXT]
    items = await asyncio.to_thread(context.subject_requests.all, request.app[CLOCK]())
    open_items = [i for i in items if i["status"] == "open"]
    closed = sorted(
        (i for i in items if i["status"] != "open"), key=lambda i: i["closed_at"] or "", reverse=True
    )
    return render(
        request,
        "requests.html",
        visit.lang,
        session=visit.session,
        open_items=open_items,
        overdue=sum(1 for i in open_items if i["overdue"]),
        closed=closed,
        can_handle=_can_handle(visit),
        kinds=[k.value for k in RequestKind],
        identity_checks=IDENTITY_CHECK_ORDER,
        max_photo_mb=context.config.limits.max_body_bytes // (1 << 20),
    )


@staff_page(Action.HANDLE_REQUESTS, back=REQUESTS)
async def record(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Record a request from the counter with the person's photo, through ``record_request``."""
    f = visit.fields()
    kind = f.enum("kind", RequestKind)
    identity_check = f.text("identity_check", max_len=48, pattern=CODE_RE)
    refuse_extra(f)
    files = dict(visit.posted.files)
    photo = files.pop("photo", None)
    if photo is None or files:
        raise MalformedError(f"form: one file, 'photo', is expected; got {sorted(visit.posted.files)}")
    clock = request.app[CLOCK]
    view = await record_request(
        request.app[CONTEXT],
        clock,
        staff=visit.staff,
        kind=kind,
        identity_check=identity_check,
        image=photo,
        received_at=clock().replace(microsecond=0),
        deadline=None,
    )
    visit.session.notices.append("req.recorded")
    return redirect(url(f"{REQUESTS}/{view['id']}", visit.lang))


@dataclass(frozen=True)
class Receipt:
    """A signed receipt attached to a request closed as granted, as the page lists it."""

    member: str
    entry_id: str
    action: str
    applied_at: str
    keyids: list[str]


def _receipts(view: dict[str, Any]) -> list[Receipt]:
    return [
        Receipt(
            member=r["signed"]["member"],
            entry_id=r["signed"]["entry_id"],
            action=r["signed"]["action"],
            applied_at=r["signed"]["applied_at"],
            keyids=sorted(s["keyid"] for s in r.get("signatures", [])),
        )
        for r in view["receipts"] or []
    ]


def _request_page(
    request: web.Request, visit: Visit, view: dict[str, Any], peers: list[dict[str, Any]] | None = None
) -> web.Response:
    kind = RequestKind(view["kind"])
    manifest = request.app[CONTEXT].manifest
    return render(
        request,
        "request.html",
        visit.lang,
        session=visit.session,
        switch_path=f"{REQUESTS}/{view['id']}",
        r=view,
        receipts=_receipts(view),
        peers=peers,
        names={m.node_id: m.name.get(visit.lang) for m in manifest.joint_use.members},
        staff_names={m.id: m.username for m, _ in request.app[CONTEXT].accounts.list()},
        can_handle=_can_handle(visit) and view["status"] == "open",
        outcomes=[o.value for o in outcomes_for(kind)],
        grounds=grounds_for(kind),
    )


@staff_page(Action.READ_REQUESTS, back=REQUESTS)
async def request_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    context = request.app[CONTEXT]
    view = await asyncio.to_thread(
        context.subject_requests.get, request.match_info["request_id"], request.app[CLOCK]()
    )
    return _request_page(request, visit, view)


def _refused(request: web.Request, visit: Visit, error: WatchnetError) -> web.HTTPException:
    """The refusal page, leading back to the request it came from."""
    back = f"{REQUESTS}/{request.match_info['request_id']}"
    return refusal(request, error, visit.lang, session=visit.session, actor=visit.staff.id, back=back)


@staff_page(Action.HANDLE_REQUESTS, back=REQUESTS)
async def search(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Run the disclosure search (``search_request``) and show the saved report with every member's answer."""
    refuse_extra(visit.fields())
    try:
        view = await search_request(
            request.app[CONTEXT],
            request.app[FEDERATION],
            request.app[CLOCK],
            visit.staff,
            request.match_info["request_id"],
        )
    except WatchnetError as e:
        raise _refused(request, visit, e) from e
    visit.session.notices.append("req.searched")
    peers = view.pop("peers")
    return _request_page(request, visit, view, peers)


def _ground(text: str) -> RefusalGround | None:
    if not text:
        return None
    try:
        return RefusalGround(text)
    except ValueError:
        allowed = ", ".join(g.value for g in RefusalGround)
        raise MalformedError(f"form.ground: {text!r:.40} is not one of {allowed}") from None


@staff_page(Action.HANDLE_REQUESTS, back=REQUESTS)
async def close(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Close with an outcome (and a ground for a refusal) through ``SubjectRequests.close``."""
    context = request.app[CONTEXT]
    request_id = request.match_info["request_id"]
    try:
        f = visit.fields()
        outcome = f.enum("outcome", RequestOutcome)
        ground = _ground(f.text("ground", max_len=32) if f.has("ground") else "")
        refuse_extra(f)
        await asyncio.to_thread(
            lambda: context.subject_requests.close(
                staff=visit.staff.id,
                request_id=request_id,
                outcome=outcome,
                ground=ground,
                manifest=context.manifest,
                now=request.app[CLOCK](),
            )
        )
    except WatchnetError as e:
        raise _refused(request, visit, e) from e
    visit.session.notices.append("req.closed")
    return redirect(url(f"{REQUESTS}/{request_id}", visit.lang))


@dataclass(frozen=True)
class ComplaintCard:
    """A complaint with its deadline, as the queue shows it."""

    view: dict[str, Any]
    deadline: datetime
    overdue: bool


@staff_page(Action.READ_REQUESTS)
async def complaints_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Open complaints oldest first with their deadlines, then closed ones, newest first."""
    now = request.app[CLOCK]()
    views = await asyncio.to_thread(list_complaints, request.app[CONTEXT].engine)
    cards = [ComplaintCard(v, *complaint_due(v, now)) for v in views]
    open_cards = [c for c in cards if c.view["status"] == "open"]
    closed = sorted(
        (c for c in cards if c.view["status"] != "open"),
        key=lambda c: c.view["closed_at"] or "",
        reverse=True,
    )
    return render(
        request,
        "complaints.html",
        visit.lang,
        session=visit.session,
        open_cards=open_cards,
        overdue=sum(1 for c in open_cards if c.overdue),
        closed=closed,
        can_handle=_can_handle(visit),
        outcomes=[
            *(o for o in COMPLAINT_ORDER if o in COMPLAINT_OUTCOMES),
            *sorted(COMPLAINT_OUTCOMES.difference(COMPLAINT_ORDER)),
        ],
        deadline_days=COMPLAINT_DEADLINE.days,
        about_members=None,
        answer_outcomes=[o for o in COMPLAINT_ORDER if o in COMPLAINT_ANSWER_OUTCOMES],
        can_refer=False,
        referral_days=0,
    )


@staff_page(Action.HANDLE_REQUESTS, back=COMPLAINTS)
async def close_complaint_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Close a complaint with an outcome and a note through ``close_complaint``."""
    f = visit.fields()
    outcome = f.text("outcome", max_len=16, pattern=CODE_RE)
    note = f.text("note", max_len=500)
    refuse_extra(f)
    context = request.app[CONTEXT]
    await asyncio.to_thread(
        lambda: close_complaint(
            context.engine,
            context.registry.write_lock,
            complaint_id=request.match_info["complaint_id"],
            outcome=outcome,
            note=note,
            staff=visit.staff.id,
            now=request.app[CLOCK](),
        )
    )
    visit.session.notices.append("cmp.closed")
    return redirect(url(COMPLAINTS, visit.lang))


@staff_page(Action.HANDLE_REQUESTS, back=COMPLAINTS)
async def answer_complaint_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Answer a complaint the organisation referred: signed, the complaint closed with it, sent at
    once (``answer_referral``, ``deliver_answers``); the ``complaint_answers`` duty retries."""
    f = visit.fields()
    outcome = f.text("outcome", max_len=16, pattern=CODE_RE)
    answer = f.text("answer", max_len=2000)
    refuse_extra(f)
    context = request.app[CONTEXT]
    complaint_id = request.match_info["complaint_id"]
    await asyncio.to_thread(
        lambda: answer_referral(
            context.engine,
            context.registry.write_lock,
            complaint_id=complaint_id,
            outcome=outcome,
            answer=answer,
            staff=visit.staff.id,
            key=context.signing_key,
            now=request.app[CLOCK](),
        )
    )
    sent = await deliver_answers(
        context.engine,
        context.registry.write_lock,
        context.config.manifest_url,
        request.app[CLOCK](),
        only=complaint_id,
    )
    visit.session.notices.append("cmp.answered" if sent.get(complaint_id) is None else "cmp.answered_pending")
    return redirect(url(COMPLAINTS, visit.lang))


@staff_page(Action.HANDLE_REQUESTS, back=COMPLAINTS)
async def deliver_answer_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Send an answer not yet delivered to the organisation again, now."""
    refuse_extra(visit.fields())
    context = request.app[CONTEXT]
    complaint_id = request.match_info["complaint_id"]
    sent = await deliver_answers(
        context.engine,
        context.registry.write_lock,
        context.config.manifest_url,
        request.app[CLOCK](),
        only=complaint_id,
    )
    if complaint_id not in sent:
        raise WrongState(f"complaint {complaint_id} has no answer waiting to be delivered")
    visit.session.notices.append("cmp.answer_sent" if sent[complaint_id] is None else "cmp.answered_pending")
    return redirect(url(COMPLAINTS, visit.lang))


def add_request_routes(app: web.Application) -> None:
    app.router.add_get(REQUESTS, requests_page)
    app.router.add_post(REQUESTS, record)
    app.router.add_get(REQUEST, request_page)
    app.router.add_post(f"{REQUEST}/search", search)
    app.router.add_post(f"{REQUEST}/close", close)
    app.router.add_get(COMPLAINTS, complaints_page)
    app.router.add_post(f"{COMPLAINTS}/{{complaint_id}}/close", close_complaint_page)
    app.router.add_post(f"{COMPLAINTS}/{{complaint_id}}/answer", answer_complaint_page)
    app.router.add_post(f"{COMPLAINTS}/{{complaint_id}}/deliver", deliver_answer_page)
