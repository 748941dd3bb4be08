"""The auditor's pages: the audit log and the event log with their verification, and the report.

A third-party auditor (R13) checks that the node keeps honest books without seeing biometric
data. The audit log page lists the hash-chained records newest first and says whether the whole
chain verifies; the event log page shows the newest signed tree head and whether its signature
holds, every stored event is signed by the node, the root recomputed from the stored leaves
equals the signed one and the head signed before it is a prefix of it. Both verdicts come from
``node.reporting.auditor``'s checks, the steps ``watchnet audit verify`` runs over HTTP, here run on the
node's own database at every view. A view verifies only what was added since the last view of
this process that verified (``Marks``: the audit chain's last record, the compact range of the
event log's leaves), as ``watchnet audit verify --state`` does, and says so, with when the rest
was verified and a link that verifies everything again (``?verify=full``). The first view of a
process, that link, and every view after one that failed verify from the first record, so a
failure never turns into "verified" by being skipped. A row edited behind the node's back in the
part already verified shows on the next full verification; one edited in the new part, or the
last record verified, on the next view. The report page shows this node's signed transparency report for a
chosen period as ``node.reporting.report_html`` draws it, charts included, and offers the signed JSON.
Who sees what is ``governance.roles``: the audit log is the auditor's, the event log also the
officer's, the report also the officer's and the admin's.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.report import parse_period
from governance.roles import Action
from node.console.audit_filter import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    OUTCOME_KINDS,
    AuditFilter,
    AuditPage,
    csv_rows,
    describe,
    read_page,
)
from node.console.i18n import Translator
from node.console.pages import (
    HOST,
    NO_STORE_HEADERS,
    PREFIX,
    Visit,
    local_times,
    redirect,
    render,
    staff_page,
    url,
)
from node.context import NodeContext
from node.http.api import CLOCK, CONTEXT
from node.http.report import member_names, node_report
from node.reporting.auditor import AuditReport, ChainMark, LogMark, audit_stored_chain, audit_stored_log
from node.reporting.report_html import PRINT_STYLE, STYLE, render_report_html, report_body_html
from node.storage.models import LogLeaf
from protocol.canonical import parse_json
from protocol.errors import MalformedError, WatchnetError
from protocol.events import EntryEvent
from protocol.provision import ThirdPartyProvision
from protocol.signed import SignedDocument
from protocol.sync import parse_log_event
from protocol.treehead import TreeHead

__all__ = [
    "AUDIT",
    "AUDIT_CSV",
    "PAGE_SIZE",
    "add_auditor_routes",
    "audit_csv_response",
    "audit_listing",
    "recent_periods",
]

AUDIT = f"{PREFIX}/audit"
AUDIT_CSV = f"{PREFIX}/audit.csv"
LOG = f"{PREFIX}/log"
REPORT = f"{PREFIX}/report"
PAGE_SIZE = 50
"""Records or events per page."""
REPORT_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
"""The report page's charts are inline SVG styled by attributes, so inline style is allowed there
(still no script, and nothing fetched from elsewhere)."""
UPTO_RE = re.compile(r"[0-9]{1,15}")
M = TypeVar("M")


def _upto(request: web.Request) -> int | None:
    """The newest row the page starts from (``?upto=``), or ``None`` for the newest there is."""
    text = request.query.get("upto")
    if text is None:
        return None
    if not UPTO_RE.fullmatch(text):
        raise MalformedError(f"query parameter 'upto': a record number, got {text!r:.20}")
    return int(text)


@dataclass(frozen=True)
class Window:
    """One page of a log read newest first: rows from ``top`` down, of ``total`` in all."""

    rows: list[Any]
    total: int
    top: int
    newer: int | None
    older: int | None

    @property
    def bottom(self) -> int:
        return self.top - len(self.rows) + 1


def _window(rows: list[Any], last: int, top: int) -> Window:
    bottom = top - len(rows) + 1
    return Window(
        rows=rows,
        total=last + 1,
        top=top,
        newer=min(top + PAGE_SIZE, last) if top < last else None,
        older=bottom - 1 if rows and bottom > 0 else None,
    )


def _names(context: NodeContext) -> dict[str, str]:
    """Account ids as their usernames (the logs record ids, staff know names)."""
    return {member.id: member.username for member, _ in context.accounts.list()}


def _audit_link(lang: str, wanted: AuditFilter, **change: str | None) -> str:
    """The audit page with ``wanted``'s filters, some changed (a value of None drops the parameter)."""
    params: dict[str, str] = {"lang": lang, **describe(wanted)}
    for key, value in change.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return f"{AUDIT}?{urlencode(params)}"


def _read_audit(engine: Engine, wanted: AuditFilter, names: dict[str, str]) -> AuditPage:
    with Session(engine) as session:
        return read_page(session, wanted, names)


@dataclass
class Verified(Generic[M]):
    """How far this console process verified one of its node's stored logs: the mark the next view
    resumes from, when that mark was reached and when everything was last verified from the start."""

    mark: M | None = None
    at: datetime | None = None
    full_at: datetime | None = None

    def advance(self, mark: M | None, full: bool, now: datetime) -> Progress:
        """Keep ``mark`` (``None``: the view failed, so the next one verifies everything again)."""
        progress = Progress(full=full, at=now, checked_at=self.at, full_at=now if full else self.full_at)
        if mark is None:
            self.mark, self.at, self.full_at = None, None, None
        else:
            self.mark, self.at = mark, now
            if full:
                self.full_at = now
        return progress


@dataclass(frozen=True)
class Progress:
    """What one view verified: everything from the start (``full``), or only what was added since
    the view of ``checked_at``; ``what`` says how much, ``full_url`` verifies everything again."""

    full: bool
    at: datetime
    checked_at: datetime | None
    full_at: datetime | None
    what: str = ""
    full_url: str = ""


@dataclass
class Marks:
    """The audit chain's and the event log's ``Verified``, per application (per console process)."""

    chain: Verified[ChainMark] = field(default_factory=Verified)
    log: Verified[LogMark] = field(default_factory=Verified)


MARKS = web.AppKey("auditor_marks", Marks)


def _full_asked(request: web.Request) -> bool:
    """``?verify=full``: verify from the first record, whatever was verified before."""
    text = request.query.get("verify")
    if text is not None and text != "full":
        raise MalformedError(f"query parameter 'verify': only 'full', got {text!r:.20}")
    return text == "full"


@staff_page(Action.READ_AUDIT)
async def audit_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The audit log, filtered and paged, routine polling folded unless ``routine=show``.

    The chain is verified from the last record an earlier view verified (``Marks``), or from the
    first with ``?verify=full``, on the first view of this process, or after a view that failed.
    """
    context = request.app[CONTEXT]
    verified = request.app[MARKS].chain
    resume = None if _full_asked(request) else verified.mark
    report = await asyncio.to_thread(
        partial(
            audit_stored_chain,
            context.engine,
            context.signing_key.public,
            context.config.node_id,
            resume=resume,
        )
    )
    progress = verified.advance(
        report.chain_mark if report.ok else None, resume is None, request.app[CLOCK]()
    )
    tr = Translator(visit.lang)
    wanted = AuditFilter.from_query(request.query, request.app[HOST].zone)
    progress = replace(
        progress,
        what=""
        if resume is None
        else tr.t("ver.incremental_audit", seq=resume.seq, new=report.new_audit_records),
        full_url=_audit_link(visit.lang, wanted, verify="full"),
    )
    return await audit_listing(
        request, visit, engine=context.engine, names=_names(context), report=report, progress=progress
    )


async def audit_listing(
    request: web.Request,
    visit: Visit,
    *,
    engine: Engine,
    names: dict[str, str],
    report: AuditReport,
    progress: Progress | None = None,
) -> web.Response:
    """The audit page of ``engine``'s log with the chain's ``report`` (a node's, or the organisation's)."""
    zone = request.app[HOST].zone
    wanted = AuditFilter.from_query(request.query, zone)
    listing = await asyncio.to_thread(_read_audit, engine, wanted, names)
    lang = visit.lang
    return render(
        request,
        "audit.html",
        lang,
        session=visit.session,
        listing=listing,
        wanted=wanted,
        report=report,
        progress=progress,
        page=AUDIT,
        outcome_kinds=OUTCOME_KINDS,
        zone_name=str(zone),
        page_sizes=(25, DEFAULT_PAGE_SIZE, 100, MAX_PAGE_SIZE),
        newer_url=None if listing.newer is None else _audit_link(lang, wanted, upto=str(listing.newer)),
        newest_url=None if wanted.upto is None else _audit_link(lang, wanted, upto=None),
        older_url=None if listing.older is None else _audit_link(lang, wanted, upto=str(listing.older)),
        toggle_url=_audit_link(lang, wanted, upto=None, routine="show" if wanted.fold else "fold"),
        csv_url=_audit_link(lang, wanted, upto=None).replace(AUDIT + "?", AUDIT_CSV + "?", 1),
    )


@staff_page(Action.READ_AUDIT, back=AUDIT)
async def audit_csv(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The records the filters select, as CSV (UTF-8 with a BOM, so spreadsheets read Japanese)."""
    context = request.app[CONTEXT]
    return await audit_csv_response(
        request, engine=context.engine, names=_names(context), who=context.config.node_id
    )


async def audit_csv_response(
    request: web.Request, *, engine: Engine, names: dict[str, str], who: str
) -> web.Response:
    zone = request.app[HOST].zone
    wanted = AuditFilter.from_query(request.query, zone)

    def build() -> bytes:
        with Session(engine) as session:
            return "".join(csv_rows(session, wanted, names, zone)).encode("utf-8-sig")

    body = await asyncio.to_thread(build)
    stamp = request.app[CLOCK]().strftime("%Y%m%dT%H%M%SZ")
    name = f"watchnet-audit-{who}-{stamp}.csv"
    return web.Response(
        body=body,
        content_type="text/csv",
        charset="utf-8",
        headers={
            **NO_STORE_HEADERS,
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@dataclass(frozen=True)
class EventRow:
    """One event log leaf as the page lists it: its header, never the salted payload."""

    index: int
    at: datetime
    kind: str
    subject: str
    version: int | None
    detail: str
    actor: str
    leaf_hash: str
    readable: bool


def _event_row(row: LogLeaf, names: dict[str, str]) -> EventRow:
    """One stored leaf as the page lists it; a leaf that no longer parses is shown as unreadable."""
    version, detail, actor, readable = None, "", "", True
    try:
        payload = parse_log_event(parse_json(row.leaf)).payload
    except WatchnetError:
        readable = False
    else:
        if isinstance(payload, EntryEvent):
            version, detail, actor = payload.entry_version, payload.reason.value, payload.actor
        elif isinstance(payload, ThirdPartyProvision):
            detail, actor = payload.legal_basis, payload.actor
    return EventRow(
        index=row.idx,
        at=row.created_at,
        kind=row.kind,
        subject=row.entry_id,
        version=version,
        detail=detail,
        actor=names.get(actor, actor),
        leaf_hash=row.leaf_hash.hex(),
        readable=readable,
    )


def _event_window(context: NodeContext, upto: int | None) -> Window:
    names = _names(context)
    with Session(context.engine) as session:
        last = session.exec(select(func.max(LogLeaf.idx))).one()
        if last is None:
            return Window([], 0, -1, None, None)
        top = last if upto is None else min(upto, last)
        leaves = session.exec(
            select(LogLeaf).where(col(LogLeaf.idx) <= top).order_by(col(LogLeaf.idx).desc()).limit(PAGE_SIZE)
        ).all()
        rows = [_event_row(leaf, names) for leaf in leaves]
    return _window(rows, int(last), top)


@dataclass(frozen=True)
class HeadView:
    """A signed tree head as the page shows it."""

    tree_size: int
    root_hash: str
    signed_at: datetime
    audit_head: str
    keyids: list[str]


def _head_view(doc: SignedDocument[TreeHead] | None) -> HeadView | None:
    if doc is None:
        return None
    head = doc.payload
    return HeadView(
        tree_size=head.tree_size,
        root_hash=head.root_hash.hex(),
        signed_at=head.timestamp,
        audit_head="" if head.audit_head is None else head.audit_head.hex(),
        keyids=sorted(doc.signatures),
    )


@staff_page(Action.READ_EVENT_LOG)
async def log_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    context = request.app[CONTEXT]
    upto = _upto(request)
    key = context.signing_key.public
    verified = request.app[MARKS].log
    resume = None if _full_asked(request) else verified.mark
    stored = await asyncio.to_thread(
        partial(audit_stored_log, context.engine, key, context.config.node_id, resume=resume)
    )
    progress = verified.advance(stored.mark, resume is None, request.app[CLOCK]())
    progress = replace(
        progress,
        what=""
        if resume is None
        else Translator(visit.lang).t("ver.incremental_log", size=resume.size, new=stored.report.new_events),
        full_url=url(LOG, visit.lang, verify="full"),
    )
    window = await asyncio.to_thread(_event_window, context, upto)
    member = context.manifest.member(context.config.node_id)
    return render(
        request,
        "eventlog.html",
        visit.lang,
        session=visit.session,
        report=stored.report,
        progress=progress,
        head=_head_view(stored.head),
        previous=_head_view(stored.previous),
        keyid=key.keyid,
        key_listed=member is not None and member.signing_key == key,
        window=window,
        page=LOG,
    )


def recent_periods(now: datetime) -> list[str]:
    """Periods to choose from, newest first: this quarter and the four before, this month and the
    last, this year and the last."""
    quarter = (now.month - 1) // 3
    quarters = [f"{now.year + (quarter - i) // 4}-Q{(quarter - i) % 4 + 1}" for i in range(5)]
    last_month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    months = [f"{now.year}-{now.month:02d}", f"{last_month[0]}-{last_month[1]:02d}"]
    return [*quarters, *months, str(now.year), str(now.year - 1)]


@staff_page(Action.READ_REPORT)
async def report_choice(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The period chooser's target: this quarter, or the period the form names, as a page of its own."""
    text = request.query.get("period") or recent_periods(request.app[CLOCK]())[0]
    period = parse_period(text)
    return redirect(url(f"{REPORT}/{period.label}", visit.lang))


@staff_page(Action.READ_REPORT, back=REPORT)
async def report_page(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The signed report for one period, drawn by ``report_body_html`` (the published page's body)."""
    context = request.app[CONTEXT]
    now = request.app[CLOCK]()
    period = parse_period(request.match_info["period"])
    document = await asyncio.to_thread(node_report, context, period, now)
    names = member_names(context.manifest)
    when = local_times(request, visit.lang).when
    body = await asyncio.to_thread(
        lambda: report_body_html(document.payload, names=names, lang=visit.lang, when=when)
    )
    periods = recent_periods(now)
    response = render(
        request,
        "report.html",
        visit.lang,
        session=visit.session,
        period=period,
        periods=periods if period.label in periods else [period.label, *periods],
        generated_at=document.payload.generated_at,
        keyid=context.signing_key.keyid,
        body=Markup(body),  # noqa: S704 - report_body_html escapes every text it takes from the report
        style=Markup(STYLE),  # noqa: S704 - a constant of node.reporting.report_html
        print_style=Markup(PRINT_STYLE),  # noqa: S704 - a constant of node.reporting.report_html
    )
    response.headers["Content-Security-Policy"] = REPORT_CSP
    return response


@staff_page(Action.READ_REPORT, back=REPORT)
async def report_print(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The report alone, for paper or to publish: no console frame or navigation, A4 print style."""
    context = request.app[CONTEXT]
    period = parse_period(request.match_info["period"])
    document = await asyncio.to_thread(node_report, context, period, request.app[CLOCK]())
    names = member_names(context.manifest)
    when = local_times(request, visit.lang).when
    page = await asyncio.to_thread(
        lambda: render_report_html(document.payload, names=names, lang=visit.lang, when=when)
    )
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        headers={
            **NO_STORE_HEADERS,
            "Content-Security-Policy": REPORT_CSP,
            "X-Content-Type-Options": "nosniff",
        },
    )


@staff_page(Action.READ_REPORT, back=REPORT)
async def report_json(request: web.Request, visit: Visit) -> web.StreamResponse:
    """The same report as the signed JSON document ``GET /v1/report`` gives, to keep or pass on."""
    context = request.app[CONTEXT]
    period = parse_period(request.match_info["period"])
    document = await asyncio.to_thread(node_report, context, period, request.app[CLOCK]())
    name = f"watchnet-report-{context.config.node_id}-{period.label}.json"
    return web.Response(
        body=document.to_bytes(),
        content_type="application/json",
        headers={**NO_STORE_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


def add_auditor_routes(app: web.Application) -> None:
    app[MARKS] = Marks()
    app.router.add_get(AUDIT, audit_page)
    app.router.add_get(AUDIT_CSV, audit_csv)
    app.router.add_get(LOG, log_page)
    app.router.add_get(REPORT, report_choice)
    app.router.add_get(f"{REPORT}/{{period}}", report_page)
    app.router.add_get(f"{REPORT}/{{period}}/signed.json", report_json)
    app.router.add_get(f"{REPORT}/{{period}}/print", report_print)
