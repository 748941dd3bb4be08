"""The responsible officer's page: the approval queue, and correcting or deleting active entries.

For each proposal the officer sees the face crop, the category, the evidence kind and
reference, the incident date, who proposed it, and the result of the registration rules
(``governance.rules.check_registration``, the check approval itself will apply) before deciding.
Every decision goes through the registry (``approve``, ``reject``, ``correct``, ``delete``),
which checks the role again, enforces the two-person rule and writes the signed event and the
audit record; a refusal comes back as the registry's typed error, shown with its reason. Each
decision takes a reason from a fixed list, never free text. Face crops are served only to
roles allowed to review entries, with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from governance.errors import RegistrationRefused
from governance.roles import Action
from governance.rules import check_registration
from node.console.pages import NO_STORE_HEADERS, PREFIX, Visit, redirect, render, staff_page, url
from node.context import NodeContext
from node.http.api import CLOCK, CONTEXT, audit_later, refuse_extra
from node.records.closures import ClosurePending
from node.records.registry import EntryFacts, EntryState
from node.records.restore import lost_entries
from protocol.entry import Evidence
from protocol.errors import MalformedError
from protocol.events import ALLOWED_REASONS, EventKind, EventReason
from protocol.fields import CODE_RE

__all__ = ["REJECT_REASONS", "add_officer_routes"]

PAGE = f"{PREFIX}/officer"
ENTRY = f"{PAGE}/entries/{{entry_id}}"
REJECT_REASONS = ("insufficient-evidence", "not-necessary", "poor-image", "duplicate", "error")
"""Why an officer turns a proposal down (counted by reason in the transparency report)."""
CORRECT_REASONS = tuple(sorted(r.value for r in ALLOWED_REASONS[EventKind.CORRECTED]))
DELETE_REASONS = tuple(sorted(r.value for r in ALLOWED_REASONS[EventKind.DELETED]))


@dataclass(frozen=True)
class Card:
    """One entry on the officer's page: its state, the facts to weigh and the rules' verdict."""

    state: EntryState
    facts: EntryFacts
    registrar: str
    violations: tuple[str, ...]


def rule_violations(
    context: NodeContext, state: EntryState, facts: EntryFacts, now: datetime
) -> tuple[str, ...]:
    """What the registration rules say about approving this entry now (empty: every rule is met)."""
    if facts.incident_date is None:
        return ()
    manifest = context.manifest
    try:
        check_registration(
            manifest,
            context.rules,
            category=state.category,
            evidence_kind=state.evidence_kind,
            incident_date=facts.incident_date,
            registered_at=now,
            expires_at=state.expires_at,
            model_id=manifest.policy.model.model_id,
            now=now,
        )
    except RegistrationRefused as e:
        return tuple(e.violations)
    return ()


def _cards(context: NodeContext, visit: Visit, status: str, now: datetime) -> list[Card]:
    names = {member.id: member.username for member, _ in context.accounts.list()}
    cards = []
    for state in context.registry.list(status):
        facts = context.registry.facts(visit.staff, state.entry_id)
        cards.append(
            Card(
                state,
                facts,
                names.get(state.registrar, state.registrar),
                rule_violations(context, state, facts, now),
            )
        )
    return cards


@staff_page(Action.REVIEW_ENTRY)
async def officer_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    context = request.app[CONTEXT]
    now = request.app[CLOCK]()
    return render(
        request,
        "officer.html",
        visit.lang,
        session=visit.session,
        queue=await asyncio.to_thread(_cards, context, visit, "proposed", now),
        active=await asyncio.to_thread(_cards, context, visit, "active", now),
        lost=await asyncio.to_thread(lost_entries, context.engine),
        rules=context.rules,
        reject_reasons=REJECT_REASONS,
        correct_reasons=CORRECT_REASONS,
        delete_reasons=DELETE_REASONS,
    )


@staff_page(Action.REVIEW_ENTRY)
async def entry_crop(request: web.Request, visit: Visit) -> web.StreamResponse:
    """An entry's face crop, only to roles that review entries, never cached."""
    crop = await asyncio.to_thread(
        request.app[CONTEXT].registry.face_crop, visit.staff, request.match_info["entry_id"]
    )
    return web.Response(body=crop, content_type="image/jpeg", headers=NO_STORE_HEADERS)


def _done(visit: Visit, notice: str) -> web.Response:
    visit.session.notices.append(notice)
    return redirect(url(PAGE, visit.lang))


@staff_page(Action.APPROVE_ENTRY, back=PAGE)
async def approve(request: web.Request, visit: Visit) -> web.StreamResponse:
    refuse_extra(visit.fields())
    context = request.app[CONTEXT]
    await asyncio.to_thread(
        context.registry.approve, visit.staff, request.match_info["entry_id"], request.app[CLOCK]()
    )
    return _done(visit, "off.approved")


@staff_page(Action.REJECT_ENTRY, back=PAGE)
async def reject(request: web.Request, visit: Visit) -> web.StreamResponse:
    f = visit.fields()
    reason = f.text("reason", max_len=48, pattern=CODE_RE)
    refuse_extra(f)
    if reason not in REJECT_REASONS:
        raise MalformedError(f"form.reason: {reason!r} is not one of {list(REJECT_REASONS)}")
    context = request.app[CONTEXT]
    await asyncio.to_thread(
        context.registry.reject, visit.staff, request.match_info["entry_id"], reason, request.app[CLOCK]()
    )
    return _done(visit, "off.rejected")


def _reason(value: EventReason, allowed: tuple[str, ...]) -> EventReason:
    if value.value not in allowed:
        raise MalformedError(f"form.reason: {value.value!r} is not one of {list(allowed)}")
    return value


@staff_page(Action.CORRECT_ENTRY, back=PAGE)
async def correct(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Issue a corrected version with what changed (category and/or evidence)."""
    f = visit.fields()
    reason = _reason(f.enum("reason", EventReason), CORRECT_REASONS)
    category = f.text("category", max_len=48, pattern=CODE_RE)
    evidence = Evidence.from_dict(
        {"kind": f.text("evidence_kind", max_len=48), "reference": f.text("evidence_reference", max_len=64)}
    )
    refuse_extra(f)
    context = request.app[CONTEXT]
    entry_id = request.match_info["entry_id"]
    state = context.registry.get(entry_id)
    facts = context.registry.facts(visit.staff, entry_id)
    new_category = None if category == state.category else category
    unchanged = evidence == Evidence(state.evidence_kind, facts.evidence_reference or "")
    if new_category is None and unchanged:
        raise MalformedError("form: nothing to correct, the category and the evidence are unchanged")
    await asyncio.to_thread(
        lambda: context.registry.correct(
            visit.staff,
            entry_id,
            reason=reason,
            now=request.app[CLOCK](),
            category=new_category,
            evidence=None if unchanged else evidence,
        )
    )
    return _done(visit, "off.corrected")


@staff_page(Action.DELETE_ENTRY, back=PAGE)
async def delete(request: web.Request, visit: Visit) -> web.StreamResponse:
    f = visit.fields()
    reason = _reason(f.enum("reason", EventReason), DELETE_REASONS)
    refuse_extra(f)
    context = request.app[CONTEXT]
    try:
        await asyncio.to_thread(
            context.registry.delete, visit.staff, request.match_info["entry_id"], reason, request.app[CLOCK]()
        )
    except ClosurePending:  # decided, no longer matching, written later (see records.deletion_pending)
        await audit_later(request, "ok:303")
        visit.session.notices.append("off.deletion_pending")
        raise web.HTTPSeeOther(url(PAGE, visit.lang), headers=NO_STORE_HEADERS) from None
    return _done(visit, "off.deleted")


def add_officer_routes(app: web.Application) -> None:
    app.router.add_get(PAGE, officer_page)
    app.router.add_get(f"{ENTRY}/crop.jpg", entry_crop)
    app.router.add_post(f"{ENTRY}/approve", approve)
    app.router.add_post(f"{ENTRY}/reject", reject)
    app.router.add_post(f"{ENTRY}/correct", correct)
    app.router.add_post(f"{ENTRY}/delete", delete)
