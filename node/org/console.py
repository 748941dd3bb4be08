"""The certified organisation's console, served by ``watchnet gov serve`` under ``/console``.

The organisation's staff sign in with the member console's machinery (``node.console``: the
sign-in form, argon2id passwords and throttling, server-side sessions, CSRF tokens, the ja/en
texts, the page frame), hosted here by a ``ConsoleHost`` built from the organisation's own
database (``node.org.staff``) instead of a member's node. Its pages:

- **Members** (``/console/members``): every member of the version in force with its status, the
  version it runs and whether it answered (``node.org.members``), its manifest fetches as far as
  they can be told apart, fork reports and clearances about it, complaints about it.
- **Complaints** (``/console/complaints``): the organisation's register (Art. 40; the public form
  of ``gov serve`` and ``gov complaints add``), open ones with their deadlines and the member
  each is about, closed ones with their outcome; the secretariat closes one with an outcome
  and a note (the member console's complaints page, on the organisation's register). With the
  organisation's online key (``gov serve --witness-key``) the secretariat refers a complaint to
  the member it is about (``org.complaint.refer``): a signed ``complaint-referral`` delivered and
  retried until the member takes it (``node.org.referrals``); the page shows "not yet delivered"
  until then, and the member's signed answer once it arrives.
- **Fork reports** (``/console/forks``): each kept report with both signed heads, verified again
  against the version in force on every view, and the decisions taken on it (dismissed, member
  asked to explain, suspension drafted: a suspension draft is made at once), each a record of the
  hash-chained decision log beside the reports (``node.org.clearances.record_decision``).
- **Group report** (``/console/report?period=2026-Q4``): the members' signed transparency
  reports received for a period (uploaded here), verified again, summed, the members missing;
  publishing makes ``/report/<period>`` public (``node.org.group_report``).
- **Accounts** (``/console/accounts``, admins): the member console's accounts page on the
  organisation's accounts (its roles only): add, disable, unlock, issue and revoke API tokens
  (a key holder's token for ``watchnet gov sign --post``).
- **Audit log** (``/console/audit``, auditors): the member console's audit page on the
  organisation's log, its hash chain checked record by record on every view.
- **Drafts** (``/console/drafts``): admission, suspension, reinstatement, removal and renewal
  (flagged when the version in force expires within 30 days) start as a draft of the next version (``node.org.drafts``); a draft's page says its changes in words
  (``governance.changes``), offers the file a key holder signs offline (``watchnet gov sign``),
  takes the signed file back, shows k of n collected and by whom, and publishes only when the
  rules every node applies accept it.

Every page and form is audited: the console's requests by the middleware here (``ok:<status>``),
refusals by the shared page wrapper (``refused:<code>``), and each decision by a record of its own
(``org.draft``, ``org.draft.download``, ``org.signature``, ``org.publish``, ``org.withdraw``,
``org.complaint.refer``, ``org.complaint.close``, ``org.fork.decision``, ``org.report.add``, ``org.report.publish``,
``org.members.check``) naming what it decided. ``POST /v1/org/drafts/<version>/signatures`` is
the one JSON door: ``watchnet gov sign --post`` with a key holder's API token.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlmodel import Session, col, select

from governance.changes import manifest_changes
from governance.manifest import LocalizedText, Manifest, Member
from governance.report import TransparencyReport, parse_period
from governance.requests import COMPLAINT_OUTCOMES, REFERRAL_DAYS
from governance.roles import Action, Role, permitted, require_permission
from governance.trust import assess
from node.casework.registers import COMPLAINT_DEADLINE, complaint_due
from node.config import ConsoleSettings
from node.console import add_static, is_console_path, setup_templates
from node.console.pages import (
    HOST,
    PREFIX,
    SESSIONS,
    ConsoleHost,
    Visit,
    audit,
    client,
    redirect,
    render,
    staff_page,
    url,
)
from node.console.pages_accounts import add_accounts_routes
from node.console.pages_auditor import AUDIT, AUDIT_CSV, audit_csv_response, audit_listing
from node.console.pages_login import add_sign_in_routes
from node.console.pages_requests import COMPLAINT_ORDER, ComplaintCard
from node.console.session import SessionStore
from node.http.api import ACTOR, CLOCK, LIMITER, RateLimited, RateLimiter, refuse_extra, status_for
from node.http.notice import html_response, request_language
from node.org.clearances import clearance_path, load_clearance, read_decisions, record_decision
from node.org.complaints import (
    NoReferralKey,
    NotReferred,
    close_complaint,
    list_complaints,
    read_complaint,
    refer_complaint,
)
from node.org.drafts import ACTIONS, MAX_DRAFT_BYTES, Draft, DraftStore, NoDraft
from node.org.group_report import ReportStore, group_report_html
from node.org.members import MemberWatch, endpoint_source
from node.org.referrals import ReferralSender
from node.org.staff import OrgStaff
from node.records.accounts import AuthenticationFailed, StaffMember
from node.reporting.auditor import AuditReport, check_audit_chain
from node.reporting.report_html import key_figures
from node.storage.models import AuditRecord
from protocol.canonical import b64url_encode
from protocol.complaint import ComplaintReferral
from protocol.errors import MalformedError, OversizedError, WatchnetError
from protocol.fields import NODE_ID_RE
from protocol.keys import PublicEncryptionKey, PublicSigningKey
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead

__all__ = ["ORG_PAGES", "OrgConsole", "add_org_console", "org_links"]

MEMBERS = f"{PREFIX}/members"
DRAFTS = f"{PREFIX}/drafts"
FORKS = f"{PREFIX}/forks"
REPORT = f"{PREFIX}/report"
COMPLAINTS = f"{PREFIX}/complaints"
ROLE_PAGES = {
    Role.SECRETARIAT: MEMBERS,
    Role.KEY_HOLDER: DRAFTS,
    Role.AUDITOR: MEMBERS,
    Role.ADMIN: MEMBERS,
}
ORG_PAGES: tuple[tuple[str, str, Action], ...] = (
    (MEMBERS, "nav.org_members", Action.ORG_READ_MEMBERS),
    (DRAFTS, "nav.org_drafts", Action.ORG_READ_DRAFTS),
    (FORKS, "nav.org_forks", Action.ORG_READ_MEMBERS),
    (COMPLAINTS, "nav.complaints", Action.ORG_READ_COMPLAINTS),
    (REPORT, "nav.org_report", Action.ORG_READ_MEMBERS),
    (f"{PREFIX}/accounts", "nav.accounts", Action.MANAGE_ACCOUNTS),
    (f"{PREFIX}/audit", "nav.audit", Action.READ_AUDIT),
)
FORK_DECISIONS = ("dismissed", "explain", "suspension-drafted")
"""What the organisation decides on a verified fork report."""
FORK_FIELDS = ("type", "peer", "reporter", "verified_head", "conflicting_head")
DAYS_RE = re.compile(r"[1-9][0-9]{0,2}")
RENEWAL_DAYS = 180
"""The renewal form's default validity (the CLI's ``gov bump`` default too)."""
EXPIRY_WARNING_DAYS = 30
"""A manifest expiring within this many days is flagged on every page that shows it."""
REQUESTS_PER_MINUTE = 120


def org_links(staff: StaffMember) -> list[tuple[str, str]]:
    return [(path, key) for path, key, action in ORG_PAGES if permitted(staff.role, action)]


@dataclass
class OrgConsole:
    """What the organisation's pages read: the version in force, drafts, members, registers.

    ``verify_fork`` checks a fork report against a manifest and raises, typed, if it proves
    nothing (``node.org.server.verify_fork_report``, handed in by the server that mounts us)."""

    current: Callable[[], Manifest]
    drafts: DraftStore
    watch: MemberWatch
    reports: Path
    complaints: Path
    verify_fork: Callable[[Any, Manifest], object]
    member_reports: ReportStore
    referrals: ReferralSender | None = None
    """Delivers referrals; ``None`` without the organisation's online key (no referring then)."""
    sign_referral: Callable[[ComplaintReferral], SignedDocument[ComplaintReferral]] | None = None


ORG = web.AppKey("org_console", OrgConsole)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _record(request: web.Request, visit: Visit, action: str, target: str, outcome: str = "ok") -> None:
    audit(request, actor=visit.staff.id, action=action, target=target, outcome=outcome)


async def _in_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(call, *args, **kwargs)


# ----- members ---------------------------------------------------------------------------------


def _fork_reports(reports: Path, member: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(reports.glob(f"fork-{member}-*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append(
            {
                "id": path.stem.rsplit("-", 1)[1],
                "received_at": report.get("received_at", ""),
                "tree_size": report.get("tree_size"),
            }
        )
    return found


def _cleared(reports: Path, member: str) -> bool:
    try:
        load_clearance(clearance_path(reports, member))
    except (WatchnetError, OSError):
        return False
    return True


def _member_rows(org: OrgConsole, manifest: Manifest) -> list[dict[str, Any]]:
    complaints = list_complaints(org.complaints) if org.complaints.exists() else []
    sources: dict[str, int] = {}
    for m in manifest.joint_use.members:
        source = endpoint_source(m.endpoint)
        if source is not None:
            sources[source] = sources.get(source, 0) + 1
    reports = org.member_reports.latest(manifest)
    rows = []
    for m in manifest.joint_use.members:
        source = endpoint_source(m.endpoint)
        if source is None:
            fetch_state, fetch = "hostname", None
        elif sources[source] > 1:
            fetch_state, fetch = "shared", org.watch.fetches.get(source)
        else:
            fetch = org.watch.fetches.get(source)
            fetch_state = "seen" if fetch is not None else "none"
        about = [c for c in complaints if c.get("about_member") == m.node_id]
        rows.append(
            {
                "member": m,
                "sighting": org.watch.sightings.get(m.node_id),
                "fetch_state": fetch_state,
                "fetch": fetch,
                "source": source,
                "sharing": sources.get(source or "", 0),
                "forks": _fork_reports(org.reports, m.node_id),
                "cleared": _cleared(org.reports, m.node_id),
                "complaints_open": sum(1 for c in about if c.get("status") == "open"),
                "complaints_closed": sum(1 for c in about if c.get("status") != "open"),
                "owes": _owes(reports, m.node_id),
            }
        )
    return rows


def _owes(reports: dict[str, TransparencyReport], member: str) -> list[dict[str, Any]]:
    """What ``member`` still owed each other member, in words of the owners' own signed reports
    (newest each): the owner, the count, when it said so. Owners whose report predates the field
    say nothing, rather than zero."""
    return [
        {"owner": owner, "count": report.entries.owed_receipts.get(member, 0), "at": report.generated_at}
        for owner, report in sorted(reports.items())
        if owner != member and report.entries.owed_receipts is not None
    ]


def _expiry(manifest: Manifest, now: datetime) -> dict[str, Any]:
    days = (manifest.expires - now).days
    return {"days_left": days, "expiring": days < EXPIRY_WARNING_DAYS, "expired": manifest.is_expired(now)}


@staff_page(Action.ORG_READ_MEMBERS)
async def members_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    manifest = org.current()
    rows = await _in_thread(_member_rows, org, manifest)
    return render(
        request,
        "org_members.html",
        visit.lang,
        session=visit.session,
        manifest=manifest,
        rows=rows,
        watch=org.watch,
        open_draft=org.drafts.open_draft(),
        **_expiry(manifest, request.app[CLOCK]()),
    )


@staff_page(Action.ORG_READ_MEMBERS, back=MEMBERS)
async def members_check(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Ask every member now which manifest it runs (the page shows the answers)."""
    refuse_extra(visit.fields())
    sightings = await request.app[ORG].watch.check()
    reachable = sum(1 for s in sightings.values() if s.outcome == "ok")
    _record(request, visit, "org.members.check", f"{reachable}/{len(sightings)} answered")
    visit.session.notices.append("org.members_checked")
    return redirect(url(MEMBERS, visit.lang))


# ----- complaints ------------------------------------------------------------------------------


@staff_page(Action.ORG_READ_COMPLAINTS)
async def complaints_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The organisation's register: open complaints oldest first with their deadlines, then closed ones."""
    org = request.app[ORG]
    now = request.app[CLOCK]()
    views = await _in_thread(lambda: list_complaints(org.complaints) if org.complaints.exists() else [])
    cards = [ComplaintCard(v, *complaint_due(v, now)) for v in views]
    open_cards = [c for c in cards if c.view["status"] == "open"]
    closed = sorted(
        (c for c in cards if c.view["status"] != "open"),
        key=lambda c: c.view["closed_at"] or "",
        reverse=True,
    )
    manifest = org.current()
    return render(
        request,
        "complaints.html",
        visit.lang,
        session=visit.session,
        open_cards=open_cards,
        overdue=sum(1 for c in open_cards if c.overdue),
        closed=closed,
        can_handle=permitted(visit.staff.role, Action.ORG_HANDLE_COMPLAINTS),
        outcomes=[
            *(o for o in COMPLAINT_ORDER if o in COMPLAINT_OUTCOMES),
            *sorted(COMPLAINT_OUTCOMES.difference(COMPLAINT_ORDER)),
        ],
        deadline_days=COMPLAINT_DEADLINE.days,
        about_members={m.node_id: m.name.get(visit.lang) for m in manifest.joint_use.members},
        can_refer=org.sign_referral is not None,
        referral_days=REFERRAL_DAYS,
        answer_outcomes=[],
    )


@staff_page(Action.ORG_HANDLE_COMPLAINTS, back=COMPLAINTS)
async def complaint_refer(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Refer an open complaint to the member it is about: sign the referral, keep it, try it now."""
    f = visit.fields()
    days_text = f.text("days", max_len=3, pattern=DAYS_RE)
    summary = f.opt_text("summary", max_len=2000)
    refuse_extra(f)
    org = request.app[ORG]
    if org.sign_referral is None or org.referrals is None:
        raise NoReferralKey(
            "gov serve holds no online key of the organisation (--witness-key): it cannot sign a referral"
        )
    complaint_id = request.match_info["complaint_id"]
    manifest = org.current()
    referred = await _in_thread(
        refer_complaint,
        org.complaints,
        complaint_id,
        group_id=manifest.group_id,
        manifest_version=manifest.version,
        summary=summary,
        days=int(days_text),
        staff=visit.staff.id,
        sign=org.sign_referral,
        now=request.app[CLOCK](),
    )
    _record(request, visit, "org.complaint.refer", complaint_id, f"ok:{referred['referral']['member']}")
    delivered = await org.referrals.deliver(referred)
    return _delivered(request, visit, complaint_id, delivered)


def _delivered(
    request: web.Request, visit: Visit, complaint_id: str, delivered: dict[str, Any]
) -> web.StreamResponse:
    """Audit a delivery attempt of a referral and say on the register whether it arrived."""
    error = delivered["referral"]["last_error"]
    outcome = "ok" if error is None else f"pending:{error}"[:64]
    _record(request, visit, "org.complaint.deliver", complaint_id, outcome)
    visit.session.notices.append("cmp.referred" if error is None else "cmp.referred_pending")
    return redirect(url(COMPLAINTS, visit.lang))


@staff_page(Action.ORG_HANDLE_COMPLAINTS, back=COMPLAINTS)
async def complaint_close(request: web.Request, visit: Visit) -> web.StreamResponse:
    f = visit.fields()
    outcome = f.text("outcome", max_len=16)
    note = f.text("note", max_len=500)
    refuse_extra(f)
    complaint_id = request.match_info["complaint_id"]
    org = request.app[ORG]
    closed = await _in_thread(
        close_complaint, org.complaints, complaint_id, outcome=outcome, note=note, now=request.app[CLOCK]()
    )
    _record(request, visit, "org.complaint.close", complaint_id, f"ok:{closed['outcome']}")
    visit.session.notices.append("cmp.closed")
    return redirect(url(COMPLAINTS, visit.lang))


@staff_page(Action.ORG_HANDLE_COMPLAINTS, back=COMPLAINTS)
async def complaint_deliver(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Try a referral not yet delivered again, now (the delivery loop retries it anyway)."""
    refuse_extra(visit.fields())
    org = request.app[ORG]
    complaint_id = request.match_info["complaint_id"]
    complaint = await _in_thread(read_complaint, org.complaints, complaint_id)
    referral = complaint.get("referral")
    if org.referrals is None or not referral or referral.get("delivered_at") is not None:
        raise NotReferred(f"complaint {complaint_id} has no referral waiting to be delivered")
    delivered = await org.referrals.deliver(complaint)
    return _delivered(request, visit, complaint_id, delivered)


# ----- fork reports ----------------------------------------------------------------------------


def _head_view(data: Any) -> dict[str, Any]:
    try:
        head = SignedDocument.from_dict(data, TreeHead)
    except WatchnetError as e:
        return {"error": e.code}
    return {
        "error": None,
        "tree_size": head.payload.tree_size,
        "root": b64url_encode(head.payload.root_hash),
        "timestamp": head.payload.timestamp,
        "keyids": [k[:16] for k in head.signatures],
    }


def _fork_views(org: OrgConsole, manifest: Manifest) -> list[dict[str, Any]]:
    decisions = [d for d in read_decisions(org.reports) if d.get("action") == "fork.decision"]
    views = []
    for path in sorted(org.reports.glob("fork-*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        report_id = path.stem.rsplit("-", 1)[1]
        try:  # checked again now, against the version in force
            org.verify_fork({k: report[k] for k in FORK_FIELDS if k in report}, manifest)
            check = "ok"
        except WatchnetError as e:
            check = e.code
        views.append(
            {
                "id": report_id,
                "member": report.get("peer", ""),
                "reporter": report.get("reporter"),
                "received_at": report.get("received_at", ""),
                "heads": [
                    _head_view(report.get("verified_head")),
                    _head_view(report.get("conflicting_head")),
                ],
                "check": check,
                "decisions": [d for d in decisions if d.get("detail", "").startswith(f"report {report_id}:")],
            }
        )
    return views


@staff_page(Action.ORG_READ_MEMBERS)
async def forks_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    manifest = org.current()
    views = await _in_thread(_fork_views, org, manifest)
    return render(
        request,
        "org_forks.html",
        visit.lang,
        session=visit.session,
        reports=views,
        names={m.node_id: m.name.get(visit.lang) for m in manifest.joint_use.members},
        decisions=FORK_DECISIONS,
        may_decide=permitted(visit.staff.role, Action.ORG_DECIDE_FORKS),
        accounts=_account_names(request),
    )


@staff_page(Action.ORG_DECIDE_FORKS, back=FORKS)
async def fork_decide(request: web.Request, visit: Visit) -> web.StreamResponse:
    """Record a decision on a fork report; ``suspension-drafted`` drafts the member's suspension too."""
    org = request.app[ORG]
    f = visit.fields()
    decision = f.text("decision", max_len=24)
    note = f.text("note", max_len=500)
    refuse_extra(f)
    if decision not in FORK_DECISIONS:
        raise MalformedError(f"form.decision: {decision!r:.24} is not one of {', '.join(FORK_DECISIONS)}")
    if not note.strip():
        raise MalformedError("form.note: say why (it goes into the decision log)")
    report_id = request.match_info["report_id"]
    matches = [p for p in org.reports.glob(f"fork-*-{report_id}.json")] if report_id.isalnum() else []
    if len(matches) != 1:
        raise NoDraft(f"no fork report {report_id[:40]!r}")
    member = json.loads(matches[0].read_text(encoding="utf-8")).get("peer", "")
    now = request.app[CLOCK]()
    detail = f"report {report_id}: {note.strip()}"
    if decision == "suspension-drafted":
        draft = await _in_thread(
            org.drafts.create, org.current(), "suspend", node_id=member, by=visit.staff.id, now=now
        )
        detail += f" (draft of version {draft.version})"
        _record(request, visit, "org.draft", f"v{draft.version}:suspend:{member}")
    await _in_thread(
        lambda: record_decision(
            org.reports,
            action="fork.decision",
            member=member,
            outcome=decision,
            now=now,
            detail=detail,
            actor=visit.staff.id,
        )
    )
    _record(request, visit, "org.fork.decision", f"{member}:{report_id}", f"ok:{decision}")
    visit.session.notices.append("org.fork_decided")
    return redirect(url(FORKS, visit.lang))


# ----- the group report ------------------------------------------------------------------------


def _period(text: str | None, now: datetime) -> str:
    """The period asked for, or the quarter before ``now`` (the one being reported on)."""
    if text:
        return parse_period(text[:16]).label
    quarter = (now.month - 1) // 3
    return f"{now.year - 1}-Q4" if quarter == 0 else f"{now.year}-Q{quarter}"


@staff_page(Action.ORG_READ_MEMBERS)
async def report_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    period = _period(request.query.get("period"), request.app[CLOCK]())
    manifest = org.current()
    held = await _in_thread(org.member_reports.read, period, manifest)
    group = held.group
    return render(
        request,
        "org_report.html",
        visit.lang,
        session=visit.session,
        period=period,
        held=held,
        totals=None if group is None else key_figures(group, visit.lang),
        names={m.node_id: m.name.get(visit.lang) for m in manifest.joint_use.members},
        may_manage=permitted(visit.staff.role, Action.ORG_MANAGE_REPORTS),
        accounts=_account_names(request),
    )


@staff_page(Action.ORG_MANAGE_REPORTS, back=REPORT)
async def report_upload(request: web.Request, visit: Visit) -> web.StreamResponse:
    form = visit.posted
    data = form.files.get("report")
    if not data or set(form.fields) - {"csrf"} or set(form.files) - {"report"}:
        raise MalformedError("form: a 'report' file (a member's signed transparency report) is needed")
    org = request.app[ORG]
    try:
        report = await _in_thread(org.member_reports.add, data, org.current())
    except WatchnetError as e:
        _record(request, visit, "org.report.add", "", f"refused:{e.code}")
        raise
    _record(request, visit, "org.report.add", f"{report.period.label}:{report.issuer}")
    visit.session.notices.append("org.report_added")
    return redirect(url(REPORT, visit.lang, period=report.period.label))


@staff_page(Action.ORG_MANAGE_REPORTS, back=REPORT)
async def report_publish(request: web.Request, visit: Visit) -> web.StreamResponse:
    refuse_extra(visit.fields())
    period = _period(request.match_info["period"], request.app[CLOCK]())
    org = request.app[ORG]
    held = await _in_thread(org.member_reports.read, period, org.current())
    if not held.verified:
        raise NoDraft(f"no verified member report for {period}: nothing to publish")
    await _in_thread(org.member_reports.publish, period, by=visit.staff.id, now=request.app[CLOCK]())
    _record(
        request,
        visit,
        "org.report.publish",
        period,
        f"ok:members={len(held.verified)},missing={len(held.missing)}",
    )
    visit.session.notices.append("org.report_published")
    return redirect(url(REPORT, visit.lang, period=period))


async def public_report(request: web.Request) -> web.Response:
    """``GET /report/<period>``: a published period's group report, for anyone (ja/en)."""
    lang = request_language(request)
    org = request.app[ORG]
    try:
        period = parse_period(request.match_info["period"][:16]).label
        manifest = org.current()
        held = await _in_thread(org.member_reports.read, period, manifest)
    except WatchnetError as e:
        return web.json_response({"error": e.code, "message": str(e)}, status=400)
    if held.published is None:
        return web.json_response(
            {"error": "no_report", "message": f"the group report for {period} is not published"}, status=404
        )
    return html_response(request, group_report_html(held, manifest, lang), lang)


# ----- drafts ----------------------------------------------------------------------------------


def _draft_view(draft: Draft, in_force: Manifest, now: datetime) -> dict[str, Any]:
    own, previous = draft.signatures(in_force)
    report = assess(draft.document, now=now, trusted=in_force)
    problems = [[*p.split(": ", 1), ""][:2] for p in report.problems]  # "code: detail"
    if draft.state == "open" and draft.base_version != in_force.version:
        stale = f"drafted on version {draft.base_version}, {in_force.version} is in force"
        problems.insert(0, ["draft_stale", stale])
    keyholders = []
    for keyid in draft.document.payload.manifest_role.keyids:
        keyholders.append(
            {
                "keyid": keyid,
                "signed": keyid in own.signed,
                "invalid": keyid in own.invalid,
                "by": draft.signers.get(keyid, {}).get("by", ""),
                "at": draft.signers.get(keyid, {}).get("at", ""),
            }
        )
    return {
        "draft": draft,
        "manifest": draft.document.payload,
        "changes": manifest_changes(in_force, draft.document.payload) if draft.state == "open" else None,
        "own": own,
        "previous": previous,
        "keyholders": keyholders,
        "publishable": draft.state == "open" and not problems,
        "problems": problems,
    }


def _account_names(request: web.Request) -> dict[str, str]:
    return {m.id: m.username for m, _ in request.app[HOST].accounts.list()}


@staff_page(Action.ORG_READ_DRAFTS)
async def drafts_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    in_force = org.current()
    drafts = await _in_thread(org.drafts.all)
    now = request.app[CLOCK]()
    return render(
        request,
        "org_drafts.html",
        visit.lang,
        session=visit.session,
        in_force=in_force,
        drafts=[(d, d.signatures(in_force)[0]) for d in drafts],
        open_draft=next((d for d in drafts if d.state == "open"), None),
        may_draft=permitted(visit.staff.role, Action.ORG_DRAFT_MANIFEST),
        actions=ACTIONS,
        renewal_days=RENEWAL_DAYS,
        node_pattern=NODE_ID_RE.pattern,
        accounts=_account_names(request),
        **_expiry(in_force, now),
    )


def _new_member(f: Any) -> Member:
    node_id = f.text("node_id", max_len=63, pattern=NODE_ID_RE)
    member = Member(
        node_id=node_id,
        name=LocalizedText(f.text("name_ja", max_len=120), f.text("name_en", max_len=120)),
        signing_key=PublicSigningKey.from_str(f.text("signing_key", max_len=64), field="signing_key"),
        encryption_key=PublicEncryptionKey.from_str(
            f.text("encryption_key", max_len=64), field="encryption_key"
        ),
        endpoint=f.text("endpoint", max_len=256),
    )
    return Member.from_dict(member.to_dict())  # the manifest's own checks (endpoint form ...)


@staff_page(Action.ORG_DRAFT_MANIFEST, back=DRAFTS)
async def draft_create(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    f = visit.fields()
    action = f.text("action", max_len=16)
    if action not in ACTIONS:
        raise MalformedError(f"form.action: {action!r:.20} is not one of {', '.join(ACTIONS)}")
    in_force = org.current()
    if action == "renew":
        days = int(f.text("days", max_len=3, pattern=DAYS_RE))
        refuse_extra(f)
        draft = await _in_thread(
            org.drafts.create,
            in_force,
            action,
            valid_for=timedelta(days=days),
            by=visit.staff.id,
            now=request.app[CLOCK](),
        )
    elif action == "admit":
        member = _new_member(f)
        refuse_extra(f)
        draft = await _in_thread(
            org.drafts.create, in_force, action, member=member, by=visit.staff.id, now=request.app[CLOCK]()
        )
    else:
        node_id = f.text("node_id", max_len=63, pattern=NODE_ID_RE)
        refuse_extra(f)
        draft = await _in_thread(
            org.drafts.create, in_force, action, node_id=node_id, by=visit.staff.id, now=request.app[CLOCK]()
        )
    _record(request, visit, "org.draft", f"v{draft.version}:{action}:{draft.member}")
    visit.session.notices.append("org.draft_created")
    return redirect(url(f"{DRAFTS}/{draft.version}", visit.lang))


def _version(request: web.Request) -> int:
    text = request.match_info["version"]
    if not text.isdigit() or len(text) > 9:
        raise MalformedError(f"{text[:12]!r} is not a manifest version")
    return int(text)


def _draft_path(version: int) -> str:
    return f"{DRAFTS}/{version}"


@staff_page(Action.ORG_READ_DRAFTS, back=DRAFTS)
async def draft_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    draft = await _in_thread(org.drafts.get, _version(request))
    in_force = org.current()
    return render(
        request,
        "org_draft.html",
        visit.lang,
        session=visit.session,
        in_force=in_force,
        may_sign=permitted(visit.staff.role, Action.ORG_SIGN_MANIFEST),
        may_publish=permitted(visit.staff.role, Action.ORG_PUBLISH_MANIFEST),
        may_withdraw=permitted(visit.staff.role, Action.ORG_DRAFT_MANIFEST),
        accounts=_account_names(request),
        path=_draft_path(draft.version),
        **_draft_view(draft, in_force, request.app[CLOCK]()),
        **_expiry(in_force, request.app[CLOCK]()),
    )


@staff_page(Action.ORG_READ_DRAFTS, back=DRAFTS)
async def draft_file(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The draft as a file, for a key holder to sign offline with ``watchnet gov sign``."""
    draft = await _in_thread(request.app[ORG].drafts.get, _version(request))
    body = (
        json.dumps(draft.document.to_dict(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    ).encode()
    _record(request, visit, "org.draft.download", f"v{draft.version}")
    return web.Response(
        body=body,
        content_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="manifest-v{draft.version}-draft.json"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _back_to_draft(request: web.Request) -> str:
    """A refused post about a draft links back to the draft's page (its version, if well formed)."""
    version = request.match_info.get("version", "")
    return _draft_path(int(version)) if version.isdigit() and len(version) <= 9 else DRAFTS


@staff_page(Action.ORG_SIGN_MANIFEST, back=_back_to_draft)
async def draft_sign(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    version = _version(request)
    form = visit.posted
    data = form.files.get("signature")
    if not data or set(form.fields) - {"csrf"} or set(form.files) - {"signature"}:
        raise MalformedError("form: a 'signature' file (the draft signed with 'watchnet gov sign') is needed")
    try:
        upload = await _in_thread(
            org.drafts.add_signatures,
            version,
            data,
            org.current(),
            by=visit.staff.id,
            now=request.app[CLOCK](),
        )
    except WatchnetError as e:
        _record(request, visit, "org.signature", f"v{version}", f"refused:{e.code}")
        raise
    target = f"v{version}:" + (",".join(k[:16] for k in upload.added) or "none-new")
    _record(request, visit, "org.signature", target, f"ok:added={len(upload.added)}")
    visit.session.notices.append("org.signature_added" if upload.added else "org.signature_already")
    return redirect(url(_draft_path(version), visit.lang))


@staff_page(Action.ORG_PUBLISH_MANIFEST, back=_back_to_draft)
async def draft_publish(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    version = _version(request)
    refuse_extra(visit.fields())
    try:
        draft = await _in_thread(
            org.drafts.publish, version, org.current(), by=visit.staff.id, now=request.app[CLOCK]()
        )
    except WatchnetError as e:
        _record(request, visit, "org.publish", f"v{version}", f"refused:{e.code}")
        raise
    _record(request, visit, "org.publish", f"v{draft.version}:{draft.action}:{draft.member}")
    visit.session.notices.append("org.published")
    org.watch.wake()
    return redirect(url(_draft_path(version), visit.lang))


@staff_page(Action.ORG_DRAFT_MANIFEST, back=_back_to_draft)
async def draft_withdraw(request: web.Request, visit: Visit) -> web.StreamResponse:
    org = request.app[ORG]
    version = _version(request)
    refuse_extra(visit.fields())
    await _in_thread(org.drafts.withdraw, version, by=visit.staff.id, now=request.app[CLOCK]())
    _record(request, visit, "org.withdraw", f"v{version}")
    visit.session.notices.append("org.withdrawn")
    return redirect(url(DRAFTS, visit.lang))


# ----- the CLI's door: a key holder's signed file posted with an API token ----------------------

MAX_BEARER = 128


def _api_refusal(request: web.Request, actor: str, version: str, e: WatchnetError) -> web.Response:
    audit(request, actor=actor, action="org.signature", target=f"v{version[:9]}", outcome=f"refused:{e.code}")
    return web.json_response({"error": e.code, "message": str(e)}, status=status_for(e))


async def api_sign(request: web.Request) -> web.Response:
    """``POST /v1/org/drafts/<version>/signatures`` (``watchnet gov sign --post``): the body is the
    draft signed offline, the caller a key holder's API token (``watchnet gov user token``)."""
    version_text = request.match_info["version"]
    actor = client(request)
    try:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or len(header) > MAX_BEARER:
            raise AuthenticationFailed("send the key holder's API token as 'Authorization: Bearer wnt_...'")
        now = request.app[CLOCK]()
        host = request.app[HOST]
        member = await _in_thread(host.accounts.authenticate_token, header[7:], now)
        actor = member.id
        request[ACTOR] = actor
        limiter = request.app[LIMITER]
        if not limiter.allow(member.id, time.monotonic()):
            raise RateLimited(f"more than {limiter.capacity:.0f} requests a minute; slow down")
        require_permission(member.role, Action.ORG_SIGN_MANIFEST)
        version = _version(request)
        if request.content_length is not None and request.content_length > MAX_DRAFT_BYTES:
            raise OversizedError(f"a signed draft of {request.content_length} bytes, limit {MAX_DRAFT_BYTES}")
        body = await request.read()
        org = request.app[ORG]
        upload = await _in_thread(
            org.drafts.add_signatures, version, body, org.current(), by=member.id, now=now
        )
        draft = await _in_thread(org.drafts.get, version)
    except WatchnetError as e:
        return _api_refusal(request, actor, version_text, e)
    own, _ = draft.signatures(request.app[ORG].current())
    target = f"v{version}:" + (",".join(k[:16] for k in upload.added) or "none-new")
    audit(
        request, actor=actor, action="org.signature", target=target, outcome=f"ok:added={len(upload.added)}"
    )
    return web.json_response(
        {
            "version": version,
            "added": list(upload.added),
            "already": list(upload.already),
            "signed": len(own.signed),
            "threshold": own.threshold,
        }
    )


# ----- the audit log ---------------------------------------------------------------------------


def _org_chain(engine: Any, group_id: str) -> AuditReport:
    """The organisation's audit chain checked record by record (it signs no tree heads: no head)."""
    report = AuditReport(node_id=group_id)
    with Session(engine) as session:
        records = session.exec(
            select(AuditRecord).order_by(col(AuditRecord.seq)).execution_options(yield_per=500)
        )
        check_audit_chain(records, None, report)
    return report


@staff_page(Action.READ_AUDIT)
async def org_audit_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    host = request.app[HOST]
    report = await _in_thread(_org_chain, host.engine, request.app[ORG].current().group_id)
    return await audit_listing(
        request, visit, engine=host.engine, names=_account_names(request), report=report
    )


@staff_page(Action.READ_AUDIT, back=AUDIT)
async def org_audit_csv(request: web.Request, visit: Visit) -> web.StreamResponse:
    host = request.app[HOST]
    who = f"org-{request.app[ORG].current().group_id}"
    return await audit_csv_response(request, engine=host.engine, names=_account_names(request), who=who)


# ----- assembly --------------------------------------------------------------------------------


@web.middleware
async def audit_console(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One audit record of every console request that was answered (refusals record themselves)."""
    if not is_console_path(request.path) or request.path.startswith(f"{PREFIX}/static/"):
        return await handler(request)
    response = await handler(request)
    resource = request.match_info.route.resource
    audit(
        request,
        actor=request.get(ACTOR, client(request)),
        action=f"{request.method} {resource.canonical if resource else request.path}",
        target=request.match_info.get("version", ""),
        outcome=f"ok:{response.status}",
    )
    return response


def add_org_console(
    app: web.Application,
    staff: OrgStaff,
    org: OrgConsole,
    *,
    settings: ConsoleSettings | None = None,
    zone: ZoneInfo | None = None,
    clock: Callable[[], datetime] = _now,
) -> None:
    """Mount the organisation's console on ``app`` (``gov serve``'s application)."""
    settings = settings or ConsoleSettings()

    def heading(lang: str) -> tuple[str, str]:
        manifest = org.current()
        return manifest.joint_use.administrator.name.get(lang), manifest.group_id

    app[HOST] = ConsoleHost(
        engine=staff.engine,
        write_lock=staff.write_lock,
        accounts=staff.accounts,
        zone=zone or settings.zone,
        heading=heading,
        role_pages=ROLE_PAGES,
        title="org.title",
        login_hint="org.login_hint",
    )
    app[ORG] = org
    app[SESSIONS] = SessionStore(settings)
    app[CLOCK] = clock
    app[LIMITER] = RateLimiter(REQUESTS_PER_MINUTE)
    app.middlewares.append(audit_console)
    setup_templates(app, org_links, packages=("node.org",))
    add_sign_in_routes(app)
    add_accounts_routes(app)
    app.router.add_get(AUDIT, org_audit_page)
    app.router.add_get(AUDIT_CSV, org_audit_csv)
    app.router.add_get(MEMBERS, members_page)
    app.router.add_post(f"{MEMBERS}/check", members_check)
    app.router.add_get(COMPLAINTS, complaints_page)
    app.router.add_post(f"{COMPLAINTS}/{{complaint_id}}/close", complaint_close)
    app.router.add_post(f"{COMPLAINTS}/{{complaint_id}}/refer", complaint_refer)
    app.router.add_post(f"{COMPLAINTS}/{{complaint_id}}/deliver", complaint_deliver)
    app.router.add_get(REPORT, report_page)
    app.router.add_post(f"{REPORT}/upload", report_upload)
    app.router.add_post(f"{REPORT}/{{period}}/publish", report_publish)
    app.router.add_get("/report/{period}", public_report)
    app.router.add_get(FORKS, forks_page)
    app.router.add_post(f"{FORKS}/{{report_id}}/decision", fork_decide)
    app.router.add_get(DRAFTS, drafts_page)
    app.router.add_post(DRAFTS, draft_create)
    app.router.add_get(f"{DRAFTS}/{{version}}", draft_page)
    app.router.add_get(f"{DRAFTS}/{{version}}/file", draft_file)
    app.router.add_post(f"{DRAFTS}/{{version}}/signatures", draft_sign)
    app.router.add_post(f"{DRAFTS}/{{version}}/publish", draft_publish)
    app.router.add_post(f"{DRAFTS}/{{version}}/withdraw", draft_withdraw)
    app.router.add_post("/v1/org/drafts/{version}/signatures", api_sign)
    add_static(app)
    app.cleanup_ctx.append(org.watch.start)
    if org.referrals is not None:
        app.cleanup_ctx.append(org.referrals.start)
